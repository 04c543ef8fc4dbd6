//! What `dpsd worker NAME --listen ADDR` serves (SPEC 13): that one replica's `/livez`,
//! `/readyz` and `/metrics`, so that in the Kubernetes layout (a Deployment per worker, no
//! supervisor) each pod has its probes and a scrape target. `/metrics` needs credentials
//! when `api.auth` names users, like the daemon's; the probes never do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use actix_web::{get, middleware, web, App, HttpResponse, HttpServer};
use prometheus::proto::MetricFamily;
use serde::Serialize;

use super::probes::{self, Liveness};
use super::{auth, metrics, ApiError, Users};
use crate::config::Credential;
use crate::store::Store;
use crate::supervisor::{WorkerReport, WorkersSnapshot};
use crate::worker::Counters;

/// What the replica's routes read.
pub struct ReplicaState {
    pub worker: String,
    pub queue: String,
    /// The broker's nodes without their passwords, as `notReady` names them.
    pub broker: String,
    /// True while the replica consumes its queue (set by the worker's session).
    pub consuming: Arc<AtomicBool>,
    pub store: Arc<dyn Store>,
    pub counters: Arc<Counters>,
}

/// The replica's readiness: it consumes its queue and the store answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ReplicaReadiness {
    status: &'static str,
    worker: String,
    rabbitmq: bool,
    store: bool,
    not_ready: Vec<String>,
}

/// Binds `listen` and serves in the background; the handle stops it.
pub fn serve_replica(
    listen: &str,
    auth: Option<&BTreeMap<String, Credential>>,
    state: ReplicaState,
) -> anyhow::Result<ServerHandle> {
    let users = web::Data::new(Users::new(auth));
    let state = web::Data::new(state);
    let liveness = web::Data::new(Liveness::spawn());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(users.clone())
            .app_data(liveness.clone())
            .wrap(middleware::from_fn(auth::require_user))
            .service(livez)
            .service(readyz)
            .service(scrape)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(2)
    .bind(listen)
    .map_err(|e| anyhow::anyhow!("cannot listen on --listen {listen}: {e}"))?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    tracing::info!(listen, "probes and metrics listening");
    Ok(handle)
}

#[get("/livez")]
async fn livez(liveness: web::Data<Liveness>) -> HttpResponse {
    probes::livez_response(&liveness).await
}

#[get("/readyz")]
async fn readyz(state: web::Data<ReplicaState>) -> HttpResponse {
    let rabbitmq = state.consuming.load(Ordering::Relaxed);
    let store = probes::store_answers(state.store.as_ref()).await;
    let mut not_ready = Vec::new();
    if !rabbitmq {
        not_ready.push(probes::broker_not_ready(&state.broker));
    }
    if !store {
        not_ready.push("store".to_string());
    }
    let ready = not_ready.is_empty();
    let body = ReplicaReadiness {
        status: if ready { "ok" } else { "degraded" },
        worker: state.worker.clone(),
        rabbitmq,
        store,
        not_ready,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// The daemon's metric families for this one worker, without the supervisor's (replicas
/// wanted and running, restarts): a lone replica has no supervisor, and its pod's own
/// restarts are Kubernetes's to count.
#[get("/metrics")]
async fn scrape(state: web::Data<ReplicaState>) -> Result<HttpResponse, ApiError> {
    let report = WorkerReport {
        queue: state.queue.clone(),
        counters: state.counters.totals(),
        ..WorkerReport::default()
    };
    let workers: WorkersSnapshot = [(state.worker.clone(), report)].into();
    let families: Vec<MetricFamily> =
        metrics::families(&workers, &BTreeMap::new(), &BTreeMap::new())
            .into_iter()
            .filter(|f| !f.name().starts_with("dpsd_replica"))
            .collect();
    metrics::encoded(families)
}
