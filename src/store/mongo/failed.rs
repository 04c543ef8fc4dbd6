//! Parked messages in MongoDB (collection `failed_messages`, keyed by `_id`).

use futures::TryStreamExt;
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::Collection;

use super::{classify, integer, time, to_bson};
use crate::store::{FailedPage, ParkedBody, ParkedMessage, StoreError};

pub async fn park(
    failed: &Collection<Document>,
    message: &ParkedMessage,
) -> Result<(), StoreError> {
    let set = doc! {
        "body": body_document(&message.body)?,
        "worker": &message.worker,
        "queue": &message.queue,
        "executionId": message.execution_id.as_deref(),
        "attempts": message.attempts as i64,
        "stagesPassed": i64::from(message.stages_passed),
        "error": &message.error,
        "lastFailedAt": bson::DateTime::from_chrono(message.last_failed_at),
    };
    let update = doc! {
        "$set": set,
        "$setOnInsert": {"firstFailedAt": bson::DateTime::from_chrono(message.first_failed_at)},
    };
    // Keyed by id, so parking the same execution again (a redelivery after a crash, or a
    // replay that failed again) updates one entry instead of adding another.
    failed
        .update_one(doc! {"_id": &message.id}, update)
        .upsert(true)
        .await
        .map(drop)
        .map_err(classify)
}

pub async fn get(
    failed: &Collection<Document>,
    id: &str,
) -> Result<Option<ParkedMessage>, StoreError> {
    let found = failed.find_one(doc! {"_id": id}).await.map_err(classify)?;
    found.map(|d| message(&d)).transpose()
}

pub async fn list(
    failed: &Collection<Document>,
    worker: Option<&str>,
    limit: u32,
    skip: u64,
) -> Result<FailedPage, StoreError> {
    let filter = worker.map_or_else(Document::new, |w| doc! {"worker": w});
    let total = failed
        .count_documents(filter.clone())
        .await
        .map_err(classify)?;
    let cursor = failed
        .find(filter)
        .sort(doc! {"firstFailedAt": 1, "_id": 1})
        .skip(skip)
        .limit(i64::from(limit))
        .await
        .map_err(classify)?;
    let documents: Vec<Document> = cursor.try_collect().await.map_err(classify)?;
    let items = documents.iter().map(message).collect::<Result<_, _>>()?;
    Ok(FailedPage::new(items, total, skip))
}

pub async fn delete(
    failed: &Collection<Document>,
    id: &str,
    if_failed_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<bool, StoreError> {
    let mut filter = doc! {"_id": id};
    if let Some(at) = if_failed_at {
        filter.insert("lastFailedAt", bson::DateTime::from_chrono(at));
    }
    let result = failed.delete_one(filter).await.map_err(classify)?;
    Ok(result.deleted_count == 1)
}

pub async fn delete_of(failed: &Collection<Document>, worker: &str) -> Result<u64, StoreError> {
    let result = failed
        .delete_many(doc! {"worker": worker})
        .await
        .map_err(classify)?;
    Ok(result.deleted_count)
}

fn body_document(body: &ParkedBody) -> Result<Document, StoreError> {
    Ok(match body {
        ParkedBody::Json(value) => doc! {"encoding": "json", "data": to_bson(value)?},
        ParkedBody::Text(text) => doc! {"encoding": "text", "data": text},
        ParkedBody::Base64(data) => doc! {"encoding": "base64", "data": data},
    })
}

fn message(d: &Document) -> Result<ParkedMessage, StoreError> {
    let text = |key: &str| d.get_str(key).ok().map(str::to_string);
    let body = d
        .get_document("body")
        .map_err(|_| StoreError::Invalid("parked message lacks its body".into()))?;
    let data = body.get("data").cloned().unwrap_or(Bson::Null);
    let body = match (body.get_str("encoding").unwrap_or("json"), data) {
        ("text", Bson::String(text)) => ParkedBody::Text(text),
        ("base64", Bson::String(data)) => ParkedBody::Base64(data),
        (_, data) => ParkedBody::Json(data.into_relaxed_extjson()),
    };
    Ok(ParkedMessage {
        id: text("_id").ok_or_else(|| StoreError::Invalid("parked message lacks _id".into()))?,
        body,
        worker: text("worker").unwrap_or_default(),
        queue: text("queue").unwrap_or_default(),
        execution_id: text("executionId"),
        attempts: integer(d, "attempts").unwrap_or(1) as u32,
        stages_passed: integer(d, "stagesPassed").unwrap_or(0) as u32,
        error: text("error").unwrap_or_default(),
        first_failed_at: time(d, "firstFailedAt")?,
        last_failed_at: time(d, "lastFailedAt")?,
    })
}
