//! Cancelled executions in MongoDB (SPEC 4.5): the job-state document's `status` becomes
//! `cancelled` and `cancelledAt` is set, which puts it in the sparse `{cancelledAt}` index
//! that the replicas poll.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{Collection, IndexModel};

use super::{classify, is_duplicate_key, text, time};
use crate::store::{Cancel, Cancellation, Status, StoreError, CANCELLED_ERROR};

pub async fn ensure_index(job_state: &Collection<Document>) -> Result<(), StoreError> {
    let sparse = IndexOptions::builder().sparse(true).build();
    let by_cancel = IndexModel::builder()
        .keys(doc! {"cancelledAt": 1})
        .options(sparse)
        .build();
    job_state.create_index(by_cancel).await.map_err(classify)?;
    Ok(())
}

/// One find-and-modify with an update pipeline: the condition (finished, or cancelled
/// already) is read from the document in the same step that writes it, and the document as
/// it was before says which of the outcomes happened. An executionId not seen yet is
/// upserted as cancelled.
pub async fn cancel(
    job_state: &Collection<Document>,
    execution_id: &str,
    last_stages: &BTreeSet<String>,
) -> Result<Cancel, StoreError> {
    let update = mark(last_stages);
    let attempt = || {
        job_state
            .find_one_and_update(doc! {"executionId": execution_id}, update.clone())
            .upsert(true)
            .return_document(ReturnDocument::Before)
    };
    let before = match attempt().await {
        // Two upserts of a new executionId raced; the document exists now.
        Err(e) if is_duplicate_key(&e) => attempt().await.map_err(classify)?,
        other => other.map_err(classify)?,
    };
    let Some(before) = before else {
        return Ok(Cancel::Cancelled { known: false });
    };
    let status = before.get_str("status").unwrap_or_default();
    let worker = before.get_str("worker").unwrap_or_default();
    Ok(if status == Status::Cancelled.as_str() {
        Cancel::AlreadyCancelled
    } else if status == Status::Done.as_str() && last_stages.contains(worker) {
        Cancel::Finished
    } else {
        Cancel::Cancelled { known: true }
    })
}

/// The pipeline: a finished or already cancelled document keeps every field; any other
/// (a new one included) becomes cancelled now.
fn mark(last_stages: &BTreeSet<String>) -> Vec<Document> {
    let now = bson::DateTime::now();
    let last: Vec<Bson> = last_stages.iter().map(|w| Bson::from(w.as_str())).collect();
    let finished = doc! {"$and": [
        {"$eq": ["$status", Status::Done.as_str()]},
        {"$in": [{"$ifNull": ["$worker", ""]}, {"$literal": last}]},
    ]};
    let stays = doc! {"$or": [finished, {"$eq": ["$status", Status::Cancelled.as_str()]}]};
    let unless_stays = |field: &str, value: Bson| {
        doc! {"$cond": [stays.clone(), field, {"$literal": value}]}
    };
    vec![doc! {"$set": {
        "status": unless_stays("$status", Status::Cancelled.as_str().into()),
        "error": unless_stays("$error", CANCELLED_ERROR.into()),
        "updatedAt": unless_stays("$updatedAt", now.into()),
        "cancelledAt": unless_stays("$cancelledAt", now.into()),
        "createdAt": {"$ifNull": ["$createdAt", {"$literal": now}]},
        "worker": {"$ifNull": ["$worker", ""]},
        "attempts": {"$ifNull": ["$attempts", {"$literal": 0_i64}]},
        "stages": {"$ifNull": ["$stages", []]},
    }}]
}

pub async fn since(
    job_state: &Collection<Document>,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Cancellation>, StoreError> {
    // The epoch, not `DateTime::MIN`: some MongoDB-wire servers cannot read years that far.
    let from = since.map_or(bson::DateTime::from_millis(0), bson::DateTime::from_chrono);
    let found: Vec<Document> = job_state
        .find(doc! {"cancelledAt": {"$gte": from}})
        .sort(doc! {"cancelledAt": 1})
        .projection(doc! {"executionId": 1, "cancelledAt": 1})
        .await
        .map_err(classify)?
        .try_collect()
        .await
        .map_err(classify)?;
    found
        .iter()
        .map(|d| {
            Ok(Cancellation {
                execution_id: text(d, "executionId")?,
                cancelled_at: time(d, "cancelledAt")?,
            })
        })
        .collect()
}
