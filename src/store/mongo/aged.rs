//! Retention's reads and deletes in MongoDB (SPEC 3.2), each by index: the walk goes down
//! the list's `{createdAt, executionId}` on job state, which a stage write leaves alone,
//! skipping what was updated since the cut-off; `{executionId}` and `{lastFailedAt}` on
//! parked messages. A delete repeats the `updatedAt` it read, so a stage recorded since
//! keeps its execution. Leases live in `leases`, one document per name.

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::error::ErrorKind;
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use super::{classify, is_duplicate_key, status, text, time};
use crate::store::{Aged, Cursor, Sizes, StoreError};

/// The index the walk went down before issue 16, on the time every stage rewrites: its
/// entry moved with each stage write. Dropped where found.
const BY_UPDATE: &str = "updatedAt_1_executionId_1";
/// The server's code for dropping an index that is not there (another replica just did).
const INDEX_NOT_FOUND: i32 = 27;

pub async fn ensure_indexes(
    job_state: &Collection<Document>,
    failed: &Collection<Document>,
) -> Result<(), StoreError> {
    let index = |keys: Document| IndexModel::builder().keys(keys).build();
    drop_update_index(job_state).await?;
    let sparse = IndexOptions::builder().sparse(true).build();
    let by_execution = IndexModel::builder()
        .keys(doc! {"executionId": 1})
        .options(sparse)
        .build();
    failed.create_index(by_execution).await.map_err(classify)?;
    failed
        .create_index(index(doc! {"lastFailedAt": 1}))
        .await
        .map_err(classify)?;
    Ok(())
}

async fn drop_update_index(job_state: &Collection<Document>) -> Result<(), StoreError> {
    let names = job_state.list_index_names().await.map_err(classify)?;
    if !names.iter().any(|name| name == BY_UPDATE) {
        return Ok(());
    }
    match job_state.drop_index(BY_UPDATE).await {
        Err(e) if !matches!(&*e.kind, ErrorKind::Command(c) if c.code == INDEX_NOT_FOUND) => {
            Err(classify(e))
        }
        _ => Ok(()),
    }
}

pub async fn aged(
    job_state: &Collection<Document>,
    after: Option<&Cursor>,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<Aged>, StoreError> {
    let before = bson::DateTime::from_chrono(before);
    let filter = match after {
        None => doc! {"createdAt": {"$lt": before}, "updatedAt": {"$lt": before}},
        Some(c) => {
            let at = bson::DateTime::from_chrono(c.created_at);
            doc! {
                "createdAt": {"$lt": before, "$gte": at},
                "updatedAt": {"$lt": before},
                "$or": [
                    {"createdAt": {"$gt": at}},
                    {"executionId": {"$gt": &c.execution_id}},
                ],
            }
        }
    };
    let found: Vec<Document> = job_state
        .find(filter)
        .sort(doc! {"createdAt": 1, "executionId": 1})
        .projection(
            doc! {"executionId": 1, "status": 1, "worker": 1, "createdAt": 1, "updatedAt": 1},
        )
        .limit(i64::from(limit))
        .await
        .map_err(classify)?
        .try_collect()
        .await
        .map_err(classify)?;
    found
        .iter()
        .map(|d| {
            Ok(Aged {
                execution_id: text(d, "executionId")?,
                status: status(d)?,
                worker: text(d, "worker")?,
                created_at: time(d, "createdAt")?,
                updated_at: time(d, "updatedAt")?,
            })
        })
        .collect()
}

pub async fn parked_among(
    failed: &Collection<Document>,
    execution_ids: &[String],
) -> Result<Vec<String>, StoreError> {
    let found = failed
        .distinct("executionId", doc! {"executionId": {"$in": execution_ids}})
        .await
        .map_err(classify)?;
    Ok(found
        .into_iter()
        .filter_map(|id| match id {
            Bson::String(id) => Some(id),
            _ => None,
        })
        .collect())
}

pub async fn delete_executions(
    job_state: &Collection<Document>,
    aged: &[Aged],
) -> Result<u64, StoreError> {
    if aged.is_empty() {
        return Ok(0);
    }
    let each: Vec<Document> = aged
        .iter()
        .map(|a| {
            doc! {
                "executionId": &a.execution_id,
                "updatedAt": bson::DateTime::from_chrono(a.updated_at),
            }
        })
        .collect();
    job_state
        .delete_many(doc! {"$or": each})
        .await
        .map(|r| r.deleted_count)
        .map_err(classify)
}

pub async fn prune_failed(
    failed: &Collection<Document>,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<u64, StoreError> {
    let before = bson::DateTime::from_chrono(before);
    let old = doc! {"lastFailedAt": {"$lt": before}};
    let ids: Vec<Bson> = failed
        .find(old.clone())
        .sort(doc! {"lastFailedAt": 1})
        .projection(doc! {"_id": 1})
        .limit(i64::from(limit))
        .await
        .map_err(classify)?
        .try_collect::<Vec<Document>>()
        .await
        .map_err(classify)?
        .into_iter()
        .filter_map(|d| d.get("_id").cloned())
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    // The age again: a message parked anew since it was read stays.
    let mut filter = old;
    filter.insert("_id", doc! {"$in": ids});
    failed
        .delete_many(filter)
        .await
        .map(|r| r.deleted_count)
        .map_err(classify)
}

pub async fn sizes(
    job_state: &Collection<Document>,
    failed: &Collection<Document>,
) -> Result<Sizes, StoreError> {
    // From the collections' metadata: exact enough for a gauge, and O(1).
    let executions = job_state
        .estimated_document_count()
        .await
        .map_err(classify)?;
    let failed = failed.estimated_document_count().await.map_err(classify)?;
    Ok(Sizes {
        executions,
        failed,
        file_bytes: None,
    })
}

/// The lease is free, expired or already `holder`'s: the update matches and takes it. Held
/// by another, it matches nothing, and the upsert's insert hits the unique `_id`.
pub async fn claim(
    leases: &Collection<Document>,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let filter = doc! {
        "_id": name,
        "$or": [{"holder": holder}, {"until": {"$lt": bson::DateTime::from_chrono(now)}}],
    };
    let update = doc! {"$set": {"holder": holder, "until": bson::DateTime::from_chrono(until)}};
    match leases.update_one(filter, update).upsert(true).await {
        Ok(_) => Ok(true),
        Err(e) if is_duplicate_key(&e) => Ok(false),
        Err(e) => Err(classify(e)),
    }
}
