//! The embedded store's writes: one thread per process owns the writing connection and runs
//! every write that is waiting as one transaction (group commit). A caller hears "done"
//! only after the COMMIT, so nothing is acked before its state is on disk, while one fsync
//! serves many messages. Each write sits in a savepoint of its own, so one refused write
//! does not undo the others.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::classify;
use crate::store::StoreError;

/// Writes per transaction at most.
const MAX_BATCH: usize = 256;

/// A write: SQL run on the writing connection; its result is the number of rows it changed.
pub type Work = Box<dyn FnOnce(&Connection) -> rusqlite::Result<usize> + Send>;

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

fn commit(connection: &Connection, batch: Vec<Op>) {
    if let Err(e) = execute(connection, "BEGIN IMMEDIATE") {
        let error = classify(e);
        return batch
            .into_iter()
            .for_each(|op| drop(op.done.send(Err(copy(&error)))));
    }
    let mut results = Vec::with_capacity(batch.len());
    let mut waiters = Vec::with_capacity(batch.len());
    for op in batch {
        results.push(in_savepoint(connection, op.work));
        waiters.push(op.done);
    }
    if let Err(e) = execute(connection, "COMMIT") {
        let _ = execute(connection, "ROLLBACK");
        let error = classify(e);
        return waiters
            .into_iter()
            .for_each(|done| drop(done.send(Err(copy(&error)))));
    }
    for (done, result) in waiters.into_iter().zip(results) {
        let _ = done.send(result.map_err(classify));
    }
}

fn in_savepoint(connection: &Connection, work: Work) -> rusqlite::Result<usize> {
    execute(connection, "SAVEPOINT op")?;
    match work(connection) {
        Ok(changed) => {
            execute(connection, "RELEASE op")?;
            Ok(changed)
        }
        Err(e) => {
            execute(connection, "ROLLBACK TO op")?;
            execute(connection, "RELEASE op")?;
            Err(e)
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
