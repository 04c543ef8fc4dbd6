//! The embedded store's writes: one thread per process owns the writing connection and runs
//! every write that is waiting as one transaction (group commit). A caller hears "done"
//! only after the COMMIT, so nothing is acked before its state is on disk, while one fsync
//! serves many messages. A write the file refuses is rare, so the group carries no
//! savepoints (each cost about as much as the write itself): when one write fails, the whole
//! group is rolled back and each write is run again alone, so the one refused does not undo
//! the others.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::classify;
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

/// The handle to the writing thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Op>,
}

impl Writer {
    pub fn start(connection: Connection) -> Writer {
        let (queue, incoming) = mpsc::channel();
        std::thread::Builder::new()
            .name("dpsd-sqlite-writer".into())
            .spawn(move || run(connection, incoming))
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the store's writer thread: {e}"));
        Writer { queue }
    }

    /// Runs `work` in the next transaction; resolves after its COMMIT.
    pub async fn write(&self, work: Work) -> Result<usize, StoreError> {
        let (done, outcome) = oneshot::channel();
        let stopped = || StoreError::Unavailable("the embedded store's writer stopped".into());
        self.queue.send(Op { work, done }).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

fn run(connection: Connection, incoming: mpsc::Receiver<Op>) {
    while let Ok(first) = incoming.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match incoming.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit(&connection, batch);
    }
}

/// The group in one transaction; if a write in it fails, each again in one of its own.
fn commit(connection: &Connection, batch: Vec<Op>) {
    match group(connection, &batch) {
        Ok(changed) => {
            for (op, changed) in batch.into_iter().zip(changed) {
                let _ = op.done.send(Ok(changed));
            }
        }
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

    /// Twenty writes, the first slow so that the other nineteen wait and go in one group,
    /// in which the eighth is refused: the others are committed all the same.
    #[tokio::test]
    async fn a_refused_write_does_not_undo_the_others_of_its_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.sqlite");
        let connection = Connection::open(&path).expect("open");
        connection
            .execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .expect("table");
        let writer = Writer::start(connection);
        let writes = (0..20).map(|n: i64| {
            let writer = writer.clone();
            async move {
                let work: Work = Box::new(move |c| {
                    if n == 0 {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    let table = if n == 7 { "nowhere" } else { "t" };
                    c.execute(&format!("INSERT INTO {table} VALUES (?1)"), [n])
                });
                writer.write(work).await
            }
        });
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
        assert_eq!(count, 19);
    }
}
