//! The HTTP API (SPEC 6) on actix-web: JSON in and out, camelCase, errors as
//! `{"error": ...}`, Basic auth on everything but the probes (`/health`, `/livez`, `/readyz`).

mod auth;
mod cancel;
mod dashboard;
mod error;
mod executions;
mod failed;
mod history;
mod jobs;
mod metrics;
mod openapi;
mod probes;
mod replica;
mod system;
mod workers;

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::{middleware, web, App, HttpRequest, HttpResponse, HttpServer};
use tokio::sync::watch;

pub use auth::Users;
pub use error::ApiError;
pub use probes::Liveness;
pub use replica::{serve_replica, ReplicaState};

use crate::broker::{Outbox, QueueStats};
use crate::config::ApiSettings;
use crate::reload::Reload;
use crate::scheduler::Scheduler;
use crate::store::Store;
use crate::supervisor::WorkersSnapshot;

/// Largest request body accepted; larger ones get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// What the routes work with.
pub struct State {
    pub scheduler: Arc<Scheduler>,
    pub store: Arc<dyn Store>,
    pub outbox: Arc<Outbox>,
    pub reload: Reload,
    pub workers: watch::Receiver<WorkersSnapshot>,
    /// Depth and consumers of the workers' queues, refreshed every few seconds.
    pub queues: watch::Receiver<BTreeMap<String, QueueStats>>,
    /// What retention pruned and what the store holds, refreshed every pass.
    pub retention: watch::Receiver<crate::retention::Report>,
    /// The newest configuration: which workers end a chain (a cancel's "finished").
    pub snapshots: watch::Receiver<Arc<crate::config::Snapshot>>,
    /// Each worker's last hour, sampled every few seconds (`crate::history`).
    pub history: crate::history::Shared,
}

/// Binds `api.listen` and starts serving in the background; the handle stops it.
pub fn serve(settings: &ApiSettings, state: State) -> anyhow::Result<ServerHandle> {
    let users = web::Data::new(Users::new(settings.auth.as_ref()));
    warn_if_exposed(&settings.listen, &users);
    let auth = !users.is_open();
    let state = web::Data::new(state);
    let liveness = web::Data::new(Liveness::spawn());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(users.clone())
            .app_data(liveness.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(BODY_LIMIT)
                    .error_handler(json_error),
            )
            .app_data(web::PathConfig::default().error_handler(path_error))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .wrap(middleware::from_fn(auth::require_user))
            .configure(jobs::routes)
            .configure(executions::routes)
            .configure(failed::routes)
            .configure(history::routes)
            .configure(workers::routes)
            .configure(metrics::routes)
            .configure(dashboard::routes)
            .configure(openapi::routes)
            .configure(system::routes)
            .configure(cancel::routes)
            .configure(probes::routes)
            .default_service(web::to(not_found))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(&settings.listen)
    .map_err(|e| anyhow::anyhow!("cannot listen on api.listen {}: {e}", settings.listen))?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    tracing::info!(listen = %settings.listen, auth, "API listening");
    Ok(handle)
}

/// An API without auth on a non-loopback address lets anyone start jobs: say so loudly.
fn warn_if_exposed(listen: &str, users: &Users) {
    let loopback = listen
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip().is_loopback())
        .unwrap_or_else(|_| listen.starts_with("localhost:"));
    if !loopback && users.is_open() {
        tracing::warn!(
            "THE API LISTENS ON {listen} WITHOUT AUTHENTICATION: anyone who can reach it can start jobs \
             and publish messages. Set api.auth, or listen on 127.0.0.1."
        );
    }
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route {} {}",
        request.method(),
        request.path()
    )))
}

fn json_error(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    match error {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::TooLarge(BODY_LIMIT).into()
        }
        other => ApiError::BadRequest(format!("bad JSON body: {other}")).into(),
    }
}

fn path_error(error: PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(error.to_string()).into()
}

fn query_error(error: QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::BadRequest(error.to_string()).into()
}
