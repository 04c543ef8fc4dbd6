//! The failed-message routes (SPEC 6, 7): list, replay one or many, delete.

use actix_web::{delete, get, post, web, HttpResponse};
use serde::Deserialize;

use super::{ApiError, State};
use crate::replay::{self, ReplayError};

/// Items per page when `limit` is not given, and the most a page may hold.
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;
/// The most `skip` may be: the stores count in signed 64 bits (SQLite's OFFSET, MongoDB's
/// skip), and a larger value made them fail with a 500.
const MAX_SKIP: u64 = i64::MAX as u64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    worker: Option<String>,
    limit: Option<u32>,
    skip: Option<u64>,
}

#[get("/api/failed")]
async fn list(
    state: web::Data<State>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let skip = query.skip.unwrap_or(0);
    if skip > MAX_SKIP {
        return Err(ApiError::BadRequest(format!(
            "skip must be at most {MAX_SKIP}"
        )));
    }
    let page = state
        .store
        .list_failed(query.worker.as_deref(), limit, skip)
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

#[post("/api/failed/{id}/replay")]
async fn replay_one(
    state: web::Data<State>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    replay::replay_one(state.store.as_ref(), &state.outbox, &id).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"ok": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    worker: Option<String>,
}

/// Replays every parked message of `worker`, or of all workers without it.
#[post("/api/failed/replay")]
async fn replay_many(
    state: web::Data<State>,
    query: web::Query<ReplayQuery>,
) -> Result<HttpResponse, ApiError> {
    let done = replay::replay_all(
        state.store.as_ref(),
        &state.outbox,
        query.worker.as_deref(),
        |_, _| {},
    )
    .await?;
    Ok(HttpResponse::Ok().json(done))
}

#[delete("/api/failed/{id}")]
async fn remove(state: web::Data<State>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if state.store.delete_failed(&id, None).await? {
        Ok(HttpResponse::Ok().json(serde_json::json!({"ok": true})))
    } else {
        Err(ApiError::NotFound(format!(
            "no parked message {:?}",
            id.as_str()
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    worker: Option<String>,
}

/// Discards every parked message of `worker` (required: there is no "delete all"); the
/// answer counts them, 0 for a worker with none.
#[delete("/api/failed")]
async fn remove_many(
    state: web::Data<State>,
    query: web::Query<DeleteQuery>,
) -> Result<HttpResponse, ApiError> {
    let Some(worker) = query.worker.as_deref().filter(|w| !w.is_empty()) else {
        return Err(ApiError::BadRequest(
            "worker is required: DELETE /api/failed?worker=W".into(),
        ));
    };
    let deleted = state.store.delete_failed_of(worker).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"worker": worker, "deleted": deleted})))
}

impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::NotFound(_) => ApiError::NotFound(e.to_string()),
            ReplayError::Refused(refusal) => refusal.into(),
            ReplayError::Publish { .. } => ApiError::Unavailable(e.to_string()),
            ReplayError::Body { .. } => ApiError::Internal(e.to_string()),
            ReplayError::Store(e) => e.into(),
        }
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    // `/api/failed/replay` before `/api/failed/{id}/...` so "replay" is never taken for an id.
    config
        .service(replay_many)
        .service(list)
        .service(replay_one)
        .service(remove_many)
        .service(remove);
}
