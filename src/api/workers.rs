//! `GET /api/workers` (SPEC 6): each worker's definition, replicas and counts as the
//! supervisor reports them, with its queue's depth and consumers as RabbitMQ reports them.

use actix_web::{get, web, HttpResponse};
use serde::Serialize;

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
}

#[get("/api/workers")]
async fn workers(state: web::Data<State>) -> HttpResponse {
    let queues = state.queues.borrow().clone();
    let views: Vec<WorkerView> = state
        .workers
        .borrow()
        .iter()
        .map(|(name, report)| WorkerView {
            name: name.clone(),
            queue_stats: queues.get(&report.queue).copied(),
            report: report.clone(),
        })
        .collect();
    HttpResponse::Ok().json(views)
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(workers);
}
