//! Rate-limited workers' starts (SPEC 4.5): a sliding log, one document per worker in
//! `rate_limits`, `{_id: WORKER, starts: [newest, ..., max-th newest]}`, shared by every host.
//! A start is logged by one conditional upsert: its filter lets it through only while the
//! `max`-th newest start is out of the window (or there are fewer than `max`), and the push
//! keeps the list sorted and `max` long. When the filter holds back an existing document the
//! upsert tries to insert a second one with the same `_id`, and the duplicate key is the
//! answer "full".

use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::Collection;

use super::{classify, is_duplicate_key};
use crate::config::RateLimit;
use crate::store::{RateSlot, StoreError};

pub const COLLECTION: &str = "rate_limits";

pub async fn take(
    rates: &Collection<Document>,
    worker: &str,
    limit: &RateLimit,
    now: DateTime<Utc>,
) -> Result<RateSlot, StoreError> {
    let per = chrono::Duration::from_std(limit.per).unwrap_or(chrono::Duration::MAX);
    let since = now
        .checked_sub_signed(per)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    // Sorted newest first, so this is the max-th newest however long an older, larger
    // `max` left the list.
    let filling = format!("starts.{}", limit.max.saturating_sub(1));
    let filter = doc! {
        "_id": worker,
        "$or": [
            {&filling: {"$exists": false}},
            {&filling: {"$lte": bson::DateTime::from_chrono(since)}},
        ],
    };
    let update = doc! {"$push": {"starts": {
        "$each": [bson::DateTime::from_chrono(now)],
        "$sort": -1,
        "$slice": i64::from(limit.max),
    }}};
    match rates.update_one(filter, update).upsert(true).await {
        Ok(_) => Ok(RateSlot::Taken),
        Err(e) if is_duplicate_key(&e) => full(rates, worker, limit, now).await,
        Err(e) => Err(classify(e)),
    }
}

/// When the window has room again: the max-th newest start plus `per` (now, when another
/// host's start moved the list on meanwhile and it is shorter than that).
async fn full(
    rates: &Collection<Document>,
    worker: &str,
    limit: &RateLimit,
    now: DateTime<Utc>,
) -> Result<RateSlot, StoreError> {
    let document = rates
        .find_one(doc! {"_id": worker})
        .await
        .map_err(classify)?;
    let filling = document
        .as_ref()
        .and_then(|d| d.get_array("starts").ok())
        .and_then(|starts| starts.get(limit.max.saturating_sub(1) as usize))
        .and_then(|at| match at {
            Bson::DateTime(at) => Some(at.to_chrono()),
            _ => None,
        });
    let per = chrono::Duration::from_std(limit.per).unwrap_or(chrono::Duration::MAX);
    let until = filling
        .and_then(|at| at.checked_add_signed(per))
        .unwrap_or(now);
    Ok(RateSlot::Full { until })
}
