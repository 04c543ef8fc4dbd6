//! The list of recent executions in MongoDB (SPEC 6), by index at any size: `{createdAt,
//! executionId}` for the plain list and the time range, `{status, createdAt, executionId}`
//! for a status, and the multikey `{stages.worker, createdAt, executionId}` for a worker
//! (an entry per worker of an execution, not per stage record). Stages come without their
//! `result` (projected out on the server).

use futures::TryStreamExt;
use mongodb::bson::{self, doc, Document};
use mongodb::{Collection, IndexModel};

use super::{classify, execution_from};
use crate::store::{ExecutionPage, ExecutionQuery, StoreError};

/// Ascending, read backwards for the newest first (the same to MongoDB; SecantusDB, the
/// tests' server, mis-bounds a range on a descending key of a compound index).
pub async fn ensure_indexes(job_state: &Collection<Document>) -> Result<(), StoreError> {
    let indexes = [
        doc! {"createdAt": 1, "executionId": 1},
        doc! {"status": 1, "createdAt": 1, "executionId": 1},
        doc! {"stages.worker": 1, "createdAt": 1, "executionId": 1},
    ];
    for keys in indexes {
        let index = IndexModel::builder().keys(keys).build();
        job_state.create_index(index).await.map_err(classify)?;
    }
    Ok(())
}

pub async fn list(
    job_state: &Collection<Document>,
    query: &ExecutionQuery,
) -> Result<ExecutionPage, StoreError> {
    let found: Vec<Document> = job_state
        .find(filter(query))
        .sort(doc! {"createdAt": -1, "executionId": -1})
        .projection(doc! {"stages.result": 0})
        .limit(i64::from(query.limit) + 1)
        .await
        .map_err(classify)?
        .try_collect()
        .await
        .map_err(classify)?;
    let items = found
        .iter()
        .map(execution_from)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ExecutionPage::from_read(items, query.limit))
}

/// Every condition of the query; the cursor as "older, or as old with a smaller id".
fn filter(query: &ExecutionQuery) -> Document {
    let mut filter = Document::new();
    if let Some(status) = &query.status {
        filter.insert("status", status);
    }
    if let Some(worker) = &query.worker {
        filter.insert("stages.worker", worker);
    }
    let mut created = Document::new();
    if let Some(since) = query.since {
        created.insert("$gte", bson::DateTime::from_chrono(since));
    }
    if let Some(until) = query.until {
        created.insert("$lt", bson::DateTime::from_chrono(until));
    }
    if let Some(after) = &query.after {
        let at = bson::DateTime::from_chrono(after.created_at);
        // Bounds the index scan; the `$or` then drops the cursor's own millisecond's later ids.
        created.insert("$lte", at);
        filter.insert(
            "$or",
            vec![
                doc! {"createdAt": {"$lt": at}},
                doc! {"executionId": {"$lt": &after.execution_id}},
            ],
        );
    }
    if !created.is_empty() {
        filter.insert("createdAt", created);
    }
    filter
}
