//! Group commit for job-state writes: stage updates from all in-flight messages of a replica
//! are sent as one `update` command with many statements. Nothing waits for a batch to fill:
//! a write goes out at once when the line is idle, and writes that arrive while a batch is
//! in flight ride together in the next one. Under load that is one round trip for many
//! messages (3x the throughput on SecantusDB); at low load it adds no latency.

use mongodb::bson::{doc, Bson, Document};
use mongodb::{Collection, Database};
use tokio::sync::{mpsc, oneshot};

use super::{classify, is_duplicate_key, DUPLICATE_KEY};
use crate::store::StoreError;

/// Statements per command; well under the server's limits.
const MAX_BATCH: usize = 200;
/// Bytes of statements per command; the server takes 16 MB per message, leave room.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Writes waiting for their turn; a full queue makes writers wait (back-pressure).
const QUEUE: usize = 1024;

/// One upsert of one job-state document (an update pipeline), and who waits for its outcome.
struct Write {
    filter: Document,
    update: Vec<Document>,
    size: usize,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The handle writers use; the batching task ends when the last handle is dropped.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Write>,
}

impl Batcher {
    pub fn start(db: Database, collection: Collection<Document>) -> Batcher {
        let (queue, incoming) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, collection, incoming));
        Batcher { queue }
    }

    /// Upserts the document matching `filter`; resolves once the server has applied it.
    pub async fn upsert(&self, filter: Document, update: Vec<Document>) -> Result<(), StoreError> {
        let size = update
            .iter()
            .map(|stage| mongodb::bson::to_vec(stage).map_or(0, |b| b.len()))
            .sum();
        let (done, outcome) = oneshot::channel();
        let write = Write {
            filter,
            update,
            size,
            done,
        };
        self.queue
            .send(write)
            .await
            .map_err(|_| StoreError::Unavailable("the job-state writer stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError::Unavailable("the job-state writer stopped".into()))?
    }
}

async fn run(db: Database, collection: Collection<Document>, mut incoming: mpsc::Receiver<Write>) {
    while let Some(first) = incoming.recv().await {
        let mut bytes = first.size;
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match incoming.try_recv() {
                Ok(write) => {
                    bytes += write.size;
                    batch.push(write);
                }
                Err(_) => break,
            }
        }
        execute(&db, &collection, batch).await;
    }
}

async fn execute(db: &Database, collection: &Collection<Document>, batch: Vec<Write>) {
    let statements: Vec<Document> = batch
        .iter()
        .map(|w| doc! {"q": &w.filter, "u": &w.update, "upsert": true})
        .collect();
    let command = doc! {"update": collection.name(), "updates": statements, "ordered": false};
    let reply = match db.run_command(command).await {
        Ok(reply) => reply,
        Err(e) => match classify(e) {
            unavailable @ StoreError::Unavailable(_) => return fail_all(batch, &unavailable),
            // The batch as a whole was refused (too large, say): each write on its own.
            StoreError::Invalid(_) => return one_by_one(collection, batch).await,
        },
    };
    let errors = write_errors(&reply);
    for (index, write) in batch.into_iter().enumerate() {
        let outcome = match errors.iter().find(|(i, _, _)| *i == index) {
            None => Ok(()),
            // Two upserts of a new executionId raced; the document exists now.
            Some((_, DUPLICATE_KEY, _)) => single(collection, &write).await,
            Some((_, _, message)) => Err(StoreError::Invalid(message.clone())),
        };
        let _ = write.done.send(outcome);
    }
}

async fn one_by_one(collection: &Collection<Document>, batch: Vec<Write>) {
    for write in batch {
        let outcome = single(collection, &write).await;
        let _ = write.done.send(outcome);
    }
}

async fn single(collection: &Collection<Document>, write: &Write) -> Result<(), StoreError> {
    let upsert = || {
        collection
            .update_one(write.filter.clone(), write.update.clone())
            .upsert(true)
    };
    match upsert().await {
        Err(e) if is_duplicate_key(&e) => upsert().await.map(drop).map_err(classify),
        other => other.map(drop).map_err(classify),
    }
}

fn fail_all(batch: Vec<Write>, error: &StoreError) {
    for write in batch {
        let copy = match error {
            StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
            StoreError::Invalid(m) => StoreError::Invalid(m.clone()),
        };
        let _ = write.done.send(Err(copy));
    }
}

/// `(index, code, message)` of each statement the server refused.
fn write_errors(reply: &Document) -> Vec<(usize, i32, String)> {
    let Ok(errors) = reply.get_array("writeErrors") else {
        return Vec::new();
    };
    errors
        .iter()
        .filter_map(Bson::as_document)
        .map(|e| {
            let number = |key| match e.get(key) {
                Some(Bson::Int32(n)) => *n as i64,
                Some(Bson::Int64(n)) => *n,
                _ => -1,
            };
            let message = e.get_str("errmsg").unwrap_or("write refused").to_string();
            (number("index") as usize, number("code") as i32, message)
        })
        .collect()
}
