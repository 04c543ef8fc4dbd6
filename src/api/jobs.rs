//! The job routes: start, status, schedule and the list (SPEC 6).

use actix_web::{get, post, route, web, HttpResponse};
use serde::Deserialize;

use super::{ApiError, State};

#[route("/api/job/start/{name}", method = "GET", method = "POST")]
async fn start(state: web::Data<State>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.scheduler.start(&name).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"ok": true})))
}

#[get("/api/job/status/{name}")]
async fn status(
    state: web::Data<State>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.scheduler.status(&name).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSchedule {
    interval: String,
    /// An IANA zone for the cron fields; absent: the job's zone as it is.
    #[serde(default)]
    timezone: Option<String>,
}

#[post("/api/job/schedule/{name}")]
async fn schedule(
    state: web::Data<State>,
    name: web::Path<String>,
    body: web::Json<NewSchedule>,
) -> Result<HttpResponse, ApiError> {
    state
        .scheduler
        .reschedule(&name, &body.interval, body.timezone.as_deref())
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"ok": true})))
}

#[post("/api/job/pause/{name}")]
async fn pause(state: web::Data<State>, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    state.scheduler.pause(&name).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"ok": true})))
}

#[post("/api/job/resume/{name}")]
async fn resume(
    state: web::Data<State>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.scheduler.resume(&name).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"ok": true})))
}

/// The most fire times one preview lists.
const MAX_PREVIEW: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewQuery {
    n: Option<u32>,
    schedule: Option<String>,
    timezone: Option<String>,
}

#[get("/api/job/preview/{name}")]
async fn preview(
    state: web::Data<State>,
    name: web::Path<String>,
    query: web::Query<PreviewQuery>,
) -> Result<HttpResponse, ApiError> {
    let n = query.n.unwrap_or(10);
    if n == 0 || n > MAX_PREVIEW {
        return Err(ApiError::BadRequest(format!(
            "n must be between 1 and {MAX_PREVIEW}"
        )));
    }
    let preview = state
        .scheduler
        .preview(
            &name,
            n as usize,
            query.schedule.as_deref(),
            query.timezone.as_deref(),
        )
        .await?;
    Ok(HttpResponse::Ok().json(preview))
}

#[get("/api/jobs")]
async fn list(state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.scheduler.list().await?))
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(start)
        .service(status)
        .service(schedule)
        .service(preview)
        .service(pause)
        .service(resume)
        .service(list);
}
