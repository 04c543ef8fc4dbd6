//! Executions, publish and reload (SPEC 6); the probes are in `probes`.

use actix_web::{get, post, web, HttpResponse};
use serde_json::Value;

use super::{ApiError, State};
use crate::broker::BrokerError;
use crate::config::queue_name_problem;
use crate::message::Message;

#[get("/api/executions/{id}")]
async fn execution(
    state: web::Data<State>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    match state.store.execution(&id).await? {
        Some(execution) => Ok(HttpResponse::Ok().json(execution)),
        None => Err(ApiError::NotFound(format!(
            "no execution {:?}",
            id.as_str()
        ))),
    }
}

/// Publishes the body as `dpsd send` would: persistent, confirmed, with an executionId.
#[post("/api/publish/{queue}")]
async fn publish(
    state: web::Data<State>,
    queue: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    if let Some(problem) = queue_name_problem(&queue) {
        return Err(ApiError::BadRequest(format!(
            "queue {:?}: {problem}",
            queue.as_str()
        )));
    }
    if let Some((worker, its_queue)) = delay_queue_owner(&state, &queue) {
        return Err(ApiError::BadRequest(format!(
            "queue {:?} is a delay queue of worker {worker:?}, declared with arguments a publish \
             cannot match: publish to {its_queue:?} instead",
            queue.as_str()
        )));
    }
    let Value::Object(body) = body.into_inner() else {
        return Err(ApiError::BadRequest(
            "the message must be a JSON object".into(),
        ));
    };
    let message = Message::from_object(body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .outbox
        .publish(&queue, message.to_bytes())
        .await
        .map_err(|e| refused(&queue, e))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"executionId": message.execution_id()})))
}

/// A publish RabbitMQ refused (it closed the channel with a reply code) is bad input: 400
/// naming the queue and the broker's reason. Other broker errors stay 503.
fn refused(queue: &str, error: BrokerError) -> ApiError {
    error
        .refusal_of(queue)
        .map_or_else(|| error.into(), ApiError::from)
}

/// The worker (and its queue) whose delay queue `queue` is (`<queue>.retry.<N>ms`, see
/// config/retry.rs). RabbitMQ refuses a plain declare of such a queue (PRECONDITION_FAILED:
/// it has a TTL and a dead-letter target); and declared by a publish before the worker
/// declares it, it would make the worker's own declare fail instead. A worker's own queue
/// is never refused.
fn delay_queue_owner(state: &State, queue: &str) -> Option<(String, String)> {
    let workers = state.workers.borrow();
    if workers.values().any(|report| report.queue == queue) {
        return None;
    }
    workers.iter().find_map(|(name, report)| {
        let delay = queue
            .strip_prefix(report.queue.as_str())?
            .strip_prefix(".retry.")?
            .strip_suffix("ms")?;
        (!delay.is_empty() && delay.bytes().all(|b| b.is_ascii_digit()))
            .then(|| (name.clone(), report.queue.clone()))
    })
}

#[post("/api/reload")]
async fn reload(state: web::Data<State>) -> HttpResponse {
    state.reload.request();
    HttpResponse::Ok().json(serde_json::json!({"ok": true}))
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(execution).service(publish).service(reload);
}
