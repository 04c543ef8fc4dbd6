//! Job records in MongoDB (collection `jobs`, unique on `name`). Every change of a run's
//! ownership is one conditional update, so hosts sharing the database agree on who runs
//! what without any other coordination.

use chrono::{DateTime, Utc};
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use super::{classify, integer, time};
use crate::config::{CatchUp, JobKind};
use crate::store::{JobDefinition, JobRecord, RunOutcome, RunStatus, StoreError, StoredText};

pub async fn ensure_indexes(jobs: &Collection<Document>) -> Result<(), StoreError> {
    let unique = IndexOptions::builder().unique(true).build();
    let by_name = IndexModel::builder()
        .keys(doc! {"name": 1})
        .options(unique)
        .build();
    jobs.create_index(by_name).await.map(drop).map_err(classify)
}

pub async fn job(jobs: &Collection<Document>, name: &str) -> Result<Option<JobRecord>, StoreError> {
    let found = jobs.find_one(doc! {"name": name}).await.map_err(classify)?;
    found.map(|d| record(&d)).transpose()
}

pub async fn all(jobs: &Collection<Document>) -> Result<Vec<JobRecord>, StoreError> {
    use futures::TryStreamExt;
    let cursor = jobs
        .find(doc! {})
        .sort(doc! {"name": 1})
        .await
        .map_err(classify)?;
    let documents: Vec<Document> = cursor.try_collect().await.map_err(classify)?;
    documents.iter().map(record).collect()
}

pub async fn define(
    jobs: &Collection<Document>,
    definition: &JobDefinition,
) -> Result<(), StoreError> {
    let mut set = doc! {
        "schedule": definition.schedule.as_deref(),
        "type": definition.kind.as_str(),
        "timezone": &definition.timezone,
        "catchUp": definition.catch_up.as_str(),
        "active": definition.active,
    };
    let mut on_insert = doc! {"failCount": 0_i64};
    let planned = date(definition.next_run_at);
    if definition.keep_planned {
        on_insert.insert("nextRunAt", planned);
    } else {
        set.insert("nextRunAt", planned);
    }
    let update = doc! {"$set": set, "$setOnInsert": on_insert};
    jobs.update_one(doc! {"name": &definition.name}, update)
        .upsert(true)
        .await
        .map(drop)
        .map_err(classify)
}

pub async fn remove(jobs: &Collection<Document>, name: &str) -> Result<(), StoreError> {
    jobs.delete_one(doc! {"name": name})
        .await
        .map(drop)
        .map_err(classify)
}

/// Moves the plan from `planned` to `next` if it is still `planned` and the job's pause is
/// `paused` (a record without `paused` is not paused).
pub async fn advance(
    jobs: &Collection<Document>,
    name: &str,
    planned: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
    paused: bool,
) -> Result<bool, StoreError> {
    let mut filter = doc! {"name": name, "nextRunAt": bson::DateTime::from_chrono(planned)};
    if paused {
        filter.insert("paused", true);
    } else {
        filter.insert("paused", doc! {"$ne": true});
    }
    let update = doc! {"$set": {"nextRunAt": date(next)}};
    let result = jobs.update_one(filter, update).await.map_err(classify)?;
    Ok(result.modified_count == 1)
}

pub async fn set_paused(
    jobs: &Collection<Document>,
    name: &str,
    paused: bool,
) -> Result<bool, StoreError> {
    let update = doc! {"$set": {"paused": paused}};
    let result = jobs
        .update_one(doc! {"name": name}, update)
        .await
        .map_err(classify)?;
    Ok(result.matched_count == 1)
}

pub async fn lock(
    jobs: &Collection<Document>,
    name: &str,
    host: &str,
    now: DateTime<Utc>,
    stale_before: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let filter = doc! {
        "name": name,
        "$or": [{"lockedAt": Bson::Null}, {"lockedAt": {"$lt": bson::DateTime::from_chrono(stale_before)}}],
    };
    let now = bson::DateTime::from_chrono(now);
    let update = doc! {"$set": {"lockedAt": now, "lockedBy": host, "lastRunAt": now}};
    let result = jobs.update_one(filter, update).await.map_err(classify)?;
    Ok(result.modified_count == 1)
}

pub async fn finish(
    jobs: &Collection<Document>,
    name: &str,
    host: &str,
    outcome: &RunOutcome,
    finished_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut set = doc! {
        "lockedAt": Bson::Null,
        "lockedBy": Bson::Null,
        "lastFinishedAt": bson::DateTime::from_chrono(finished_at),
        "lastStatus": outcome.status().as_str(),
    };
    let mut update = Document::new();
    if let Some(reason) = outcome.failure() {
        set.insert("failReason", reason);
        update.insert("$inc", doc! {"failCount": 1_i64});
    }
    update.insert("$set", set);
    jobs.update_one(doc! {"name": name, "lockedBy": host}, update)
        .await
        .map(drop)
        .map_err(classify)
}

fn date(value: Option<DateTime<Utc>>) -> Bson {
    value.map_or(Bson::Null, |t| {
        Bson::DateTime(bson::DateTime::from_chrono(t))
    })
}

fn record(d: &Document) -> Result<JobRecord, StoreError> {
    let text = |key: &str| d.get_str(key).ok().map(str::to_string);
    let when = |key: &str| time(d, key).ok();
    Ok(JobRecord {
        name: text("name").ok_or_else(|| StoreError::Invalid("stored job lacks name".into()))?,
        schedule: text("schedule"),
        // A record without a `type` reads as a manual job, as it always has.
        kind: d
            .get_str("type")
            .map_or(Ok(JobKind::Manual), JobKind::from_stored)?,
        timezone: text("timezone").unwrap_or_else(|| "UTC".into()),
        catch_up: d
            .get_str("catchUp")
            .map_or(Ok(CatchUp::Once), CatchUp::from_stored)?,
        active: d.get_bool("active").unwrap_or(true),
        paused: d.get_bool("paused").unwrap_or(false),
        next_run_at: when("nextRunAt"),
        last_run_at: when("lastRunAt"),
        last_finished_at: when("lastFinishedAt"),
        last_status: d
            .get_str("lastStatus")
            .ok()
            .map(RunStatus::from_stored)
            .transpose()?,
        fail_count: integer(d, "failCount").unwrap_or(0) as u32,
        fail_reason: text("failReason"),
        locked_at: when("lockedAt"),
        locked_by: text("lockedBy"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(d: Document) -> Result<(JobKind, Option<RunStatus>), String> {
        match record(&d) {
            Ok(r) => Ok((r.kind, r.last_status)),
            Err(StoreError::Invalid(message)) => Err(message),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn types_and_statuses_read_back_and_unknown_ones_are_invalid() {
        let cron = read(doc! {"name": "a", "type": "cron", "lastStatus": "failed"});
        assert_eq!(cron, Ok((JobKind::Cron, Some(RunStatus::Failed))));
        assert_eq!(read(doc! {"name": "a"}), Ok((JobKind::Manual, None)));
        assert_eq!(
            read(doc! {"name": "a", "type": "weekly"}),
            Err(r#"stored job type "weekly""#.into())
        );
        assert_eq!(
            read(doc! {"name": "a", "type": "interval", "lastStatus": "maybe"}),
            Err(r#"stored job run status "maybe""#.into())
        );
    }
}
