//! Paused workers (SPEC 4.5): the `worker_pauses` collection, one document per paused
//! worker keyed by its name, so that every host sharing the database sees the pause.

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Collection;

use super::{classify, text};
use crate::store::StoreError;

/// Pausing upserts the document (a second pause keeps the first time), resuming deletes
/// it: both are idempotent, as the API promises.
pub async fn set(
    pauses: &Collection<Document>,
    worker: &str,
    paused: bool,
) -> Result<(), StoreError> {
    let filter = doc! {"_id": worker};
    if paused {
        let now = mongodb::bson::DateTime::now();
        pauses
            .update_one(filter, doc! {"$setOnInsert": {"pausedAt": now}})
            .upsert(true)
            .await
            .map_err(classify)?;
    } else {
        pauses.delete_one(filter).await.map_err(classify)?;
    }
    Ok(())
}

/// The names of the paused workers, sorted.
pub async fn list(pauses: &Collection<Document>) -> Result<Vec<String>, StoreError> {
    let documents: Vec<Document> = pauses
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .map_err(classify)?
        .try_collect()
        .await
        .map_err(classify)?;
    documents.iter().map(|d| text(d, "_id")).collect()
}
