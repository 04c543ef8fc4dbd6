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

#[get("/api/jobs")]
async fn list(state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.scheduler.list().await?))
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(start)
        .service(status)
        .service(schedule)
        .service(list);
}
