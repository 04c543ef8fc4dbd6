//! `GET /api/workers` (SPEC 6): each worker's definition, replicas and counts as the
//! supervisor reports them, with its queue's depth and consumers as RabbitMQ reports them,
//! and whether it is paused; `POST /api/workers/{name}/pause|resume` (SPEC 4.5).

use actix_web::{get, post, web, HttpResponse};
use serde::Serialize;

use super::error::ApiError;
use super::State;
use crate::broker::QueueStats;
use crate::supervisor::WorkerReport;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkerView {
    name: String,
    #[serde(flatten)]
    report: WorkerReport,
    /// None until the queue has been seen (or when RabbitMQ is unreachable).
    queue_stats: Option<QueueStats>,
    /// As the store has it; None when the store cannot be read.
    paused: Option<bool>,
}

#[get("/api/workers")]
async fn workers(state: web::Data<State>) -> HttpResponse {
    let paused = state.store.paused_workers().await.ok();
    let queues = state.queues.borrow().clone();
    let views: Vec<WorkerView> = state
        .workers
        .borrow()
        .iter()
        .map(|(name, report)| WorkerView {
            name: name.clone(),
            queue_stats: queues.get(&report.queue).copied(),
            report: report.clone(),
            paused: paused.as_ref().map(|p| p.contains(name)),
        })
        .collect();
    HttpResponse::Ok().json(views)
}

#[post("/api/workers/{worker}/pause")]
async fn pause(state: web::Data<State>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, true).await
}

#[post("/api/workers/{worker}/resume")]
async fn resume(
    state: web::Data<State>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&state, &name, false).await
}

/// Only a worker of this daemon's configuration can be paused (404 otherwise); setting the
/// state it has already is 200 again. The replicas obey within `pause::POLL`.
async fn set_paused(state: &State, name: &str, paused: bool) -> Result<HttpResponse, ApiError> {
    if !state.workers.borrow().contains_key(name) {
        return Err(ApiError::NotFound(format!("no worker {name:?}")));
    }
    state.store.set_worker_paused(name, paused).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"worker": name, "paused": paused})))
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(workers).service(pause).service(resume);
}
