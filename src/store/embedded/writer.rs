//! The embedded store's writes, in groups: every write waiting is run in one transaction
//! (group commit), and a caller hears "done" only after the COMMIT, so nothing is acked
//! before its state is on disk, while one commit serves many messages.
//!
//! A group is committed on the runtime's own thread when the file's lock is free at once:
//! the writes made in one turn of the runtime are collected and committed together before
//! it goes on, with no thread to hand them to and to be woken by (that hand-off cost the
//! chain about a tenth of its CPU, docs/BENCHMARKS.md). When the lock is held by
//! another process, a group goes to this process's writer thread, which waits for the lock
//! (`lock`), so the runtime never waits for another process. With `state_sync: full`
//! every commit waits for the disk, so every group goes to the thread.
//!
//! A write the file refuses is rare, so a group carries no savepoints (each cost about as
//! much as the write itself): when one write fails, the whole group is rolled back and each
//! write is run again alone, on the thread, so the one refused does not undo the others.

use std::sync::{mpsc, Arc, Mutex, TryLockError};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::checkpoint::Writing;
use super::{classify, lock};
use crate::store::StoreError;

/// Writes per transaction at most.
const MAX_BATCH: usize = 256;

/// A write: SQL run on the writing connection; its result is the number of rows it changed.
/// It may run twice (a group rolled back, then alone), so it only reads what it captured.
pub type Work = Box<dyn Fn(&Connection) -> rusqlite::Result<usize> + Send>;

struct Op {
    work: Work,
    done: oneshot::Sender<Result<usize, StoreError>>,
}

/// The handle to the writing connection; its thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    shared: Arc<Shared>,
}

struct Shared {
    connection: Arc<Mutex<Writing>>,
    /// The writes of this turn of the runtime, committed together by one `flush`.
    pending: Mutex<Vec<Op>>,
    /// Groups for the thread: those that found the file locked, or all of them.
    thread: mpsc::Sender<Vec<Op>>,
    on_runtime: bool,
}

impl Writer {
    /// `on_runtime`: whether groups are tried on the caller's thread first.
    pub fn start(connection: impl Into<Writing>, on_runtime: bool) -> Writer {
        let connection = Arc::new(Mutex::new(connection.into()));
        let (thread, incoming) = mpsc::channel();
        let writing = connection.clone();
        std::thread::Builder::new()
            .name("dpsd-sqlite-writer".into())
            .spawn(move || run(&writing, incoming))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the store's writer thread: {e}"));
        let pending = Mutex::new(Vec::new());
        Writer {
            shared: Arc::new(Shared {
                connection,
                pending,
                thread,
                on_runtime,
            }),
        }
    }

    /// Runs `work` in the next transaction; resolves after its COMMIT.
    pub async fn write(&self, work: Work) -> Result<usize, StoreError> {
        let (done, outcome) = oneshot::channel();
        let op = Op { work, done };
        if self.shared.on_runtime {
            let first = {
                let mut pending = lock_ignoring_poison(&self.shared.pending);
                pending.push(op);
                pending.len() == 1
            };
            if first {
                tokio::spawn(flush(self.shared.clone()));
            }
        } else {
            self.shared.to_thread(vec![op]);
        }
        let stopped = || StoreError::Unavailable("the embedded store's writer stopped".into());
        outcome.await.map_err(|_| stopped())?
    }
}

impl Shared {
    /// A closed channel drops the ops, and their callers hear that the writer stopped.
    fn to_thread(&self, batch: Vec<Op>) {
        let _ = self.thread.send(batch);
    }
}

/// Commits the writes of this turn of the runtime: it first lets the other tasks ready in
/// this turn add theirs, then tries the file's lock without waiting.
async fn flush(shared: Arc<Shared>) {
    tokio::task::yield_now().await;
    let batch = std::mem::take(&mut *lock_ignoring_poison(&shared.pending));
    // Held by the thread, which is waiting for another process: the group joins its queue.
    let connection = match shared.connection.try_lock() {
        Ok(connection) => connection,
        Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(TryLockError::WouldBlock) => return shared.to_thread(batch),
    };
    let mut left = Vec::new();
    for batch in groups(batch) {
        match lock::without_waiting(|| group(&connection, &batch)) {
            Ok(changed) => answer(batch, changed),
            // Busy, or a write refused: the thread waits for the lock or runs each alone.
            Err(_) => left.extend(batch),
        }
    }
    drop(connection);
    if !left.is_empty() {
        shared.to_thread(left);
    }
}

fn run(connection: &Mutex<Writing>, incoming: mpsc::Receiver<Vec<Op>>) {
    while let Ok(mut batch) = incoming.recv() {
        while let Ok(more) = incoming.try_recv() {
            batch.extend(more);
        }
        let connection = lock_ignoring_poison(connection);
        for batch in groups(batch) {
            commit(&connection, batch);
        }
    }
}

/// The writes in transactions of at most `MAX_BATCH`.
fn groups(ops: Vec<Op>) -> impl Iterator<Item = Vec<Op>> {
    let mut ops = ops.into_iter().peekable();
    std::iter::from_fn(move || {
        ops.peek()?;
        Some(ops.by_ref().take(MAX_BATCH).collect())
    })
}

/// A panic in a write leaves the connection as SQLite left it (a rolled-back transaction at
/// worst), so the lock is taken again rather than every later write failing.
fn lock_ignoring_poison<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn answer(batch: Vec<Op>, changed: Vec<usize>) {
    for (op, changed) in batch.into_iter().zip(changed) {
        let _ = op.done.send(Ok(changed));
    }
}

/// The group in one transaction; if a write in it fails, each again in one of its own.
fn commit(connection: &Connection, batch: Vec<Op>) {
    match group(connection, &batch) {
        Ok(changed) => answer(batch, changed),
        Err(Failed::Commit(error)) => {
            for op in batch {
                let _ = op.done.send(Err(copy(&error)));
            }
        }
        Err(Failed::Write) => {
            for op in batch {
                let outcome = alone(connection, &op.work);
                let _ = op.done.send(outcome);
            }
        }
    }
}

/// Why a group did not commit.
enum Failed {
    /// The transaction itself failed (busy, I/O): every write of it gets this error.
    Commit(StoreError),
    /// A write of it failed; the group was rolled back.
    Write,
}

fn group(connection: &Connection, batch: &[Op]) -> Result<Vec<usize>, Failed> {
    execute(connection, "BEGIN IMMEDIATE").map_err(|e| Failed::Commit(classify(e)))?;
    let mut changed = Vec::with_capacity(batch.len());
    for op in batch {
        match (op.work)(connection) {
            Ok(rows) => changed.push(rows),
            Err(_) => {
                let _ = execute(connection, "ROLLBACK");
                return Err(Failed::Write);
            }
        }
    }
    if let Err(e) = execute(connection, "COMMIT") {
        let _ = execute(connection, "ROLLBACK");
        return Err(Failed::Commit(classify(e)));
    }
    Ok(changed)
}

/// One write in a transaction of its own: committed, or rolled back with its error.
fn alone(connection: &Connection, work: &Work) -> Result<usize, StoreError> {
    execute(connection, "BEGIN IMMEDIATE").map_err(classify)?;
    match work(connection) {
        Ok(changed) => match execute(connection, "COMMIT") {
            Ok(()) => Ok(changed),
            Err(e) => {
                let _ = execute(connection, "ROLLBACK");
                Err(classify(e))
            }
        },
        Err(e) => {
            let _ = execute(connection, "ROLLBACK");
            Err(classify(e))
        }
    }
}

/// One statement without parameters, parsed once per connection rather than per write.
fn execute(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute([]).map(drop)
}

fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Invalid(m) => StoreError::Invalid(m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StateSync;
    use std::time::Duration;

    fn file_with_table(dir: &std::path::Path) -> (std::path::PathBuf, Connection) {
        let path = dir.join("t.sqlite");
        let connection = lock::connect(&path, StateSync::Normal).expect("open");
        connection
            .execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .expect("table");
        (path, connection)
    }

    fn insert(n: i64) -> Work {
        Box::new(move |c| {
            if n == 0 {
                std::thread::sleep(Duration::from_millis(50));
            }
            let table = if n == 7 { "nowhere" } else { "t" };
            c.execute(&format!("INSERT INTO {table} VALUES (?1)"), [n])
        })
    }

    /// Twenty writes, the first slow so that the other nineteen wait and go in one group,
    /// in which the eighth is refused: the others are committed all the same, whether the
    /// group was tried on the runtime's thread first or went to the writer thread.
    #[tokio::test]
    async fn a_refused_write_does_not_undo_the_others_of_its_group() {
        for on_runtime in [false, true] {
            let dir = tempfile::tempdir().expect("temp dir");
            let (path, connection) = file_with_table(dir.path());
            let writer = Writer::start(connection, on_runtime);
            let writes = (0..20).map(|n| writer.write(insert(n)));
            let outcomes = futures::future::join_all(writes).await;
            for (n, outcome) in outcomes.iter().enumerate() {
                match (n, outcome) {
                    (7, Err(StoreError::Invalid(message))) => assert!(message.contains("nowhere")),
                    (7, other) => panic!("the refused write answered {other:?}"),
                    (_, outcome) => assert_eq!(outcome.as_ref().ok(), Some(&1), "write {n}"),
                }
            }
            let reader = Connection::open(&path).expect("open");
            let count: i64 = reader
                .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .expect("count");
            assert_eq!(count, 19, "on_runtime {on_runtime}");
        }
    }

    /// Another process holding the file's lock: the write waits for it on the writer
    /// thread, and the runtime's one thread goes on meanwhile (its timer ticks).
    #[tokio::test]
    async fn a_locked_file_makes_the_write_wait_on_the_thread_not_the_runtime() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, connection) = file_with_table(dir.path());
        let writer = Writer::start(connection, true);
        let holder = Connection::open(&path).expect("open");
        holder.execute_batch("BEGIN IMMEDIATE").expect("the lock");
        let write = tokio::spawn({
            let writer = writer.clone();
            async move { writer.write(insert(1)).await }
        });
        let mut ticks = 0;
        let mut timer = tokio::time::interval(Duration::from_millis(2));
        while ticks < 50 {
            timer.tick().await;
            ticks += 1;
        }
        assert!(!write.is_finished(), "the write went through a held lock");
        holder.execute_batch("COMMIT").expect("released");
        let written = tokio::time::timeout(Duration::from_secs(5), write)
            .await
            .expect("the write once the lock is free")
            .expect("the write task");
        assert_eq!(written.ok(), Some(1));
        assert_eq!(
            writer.write(insert(2)).await.ok(),
            Some(1),
            "on the runtime again"
        );
    }
}
