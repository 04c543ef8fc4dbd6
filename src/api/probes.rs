//! The probes (SPEC 6, 13), open without credentials: `/livez` says the process's event
//! loop answers and checks nothing else, so a broker outage never gets dpsd restarted;
//! `/readyz` says it can do its work (RabbitMQ and the store answer, every worker has its
//! replicas) and names in `notReady` each thing that is missing; `/health` answers as
//! `/readyz`, for the probes written before the other two existed.

use std::time::Duration;

use actix_web::{get, web, HttpResponse};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::State;
use crate::broker::BrokerError;
use crate::store::Store;

/// A probe answers within about this long even when a server or the event loop does not.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The paths that need no credentials, whatever `api.auth` says.
pub const OPEN_PATHS: [&str; 3] = ["/health", "/livez", "/readyz"];

/// Whether the event loop of the process answers. actix serves requests on threads and
/// runtimes of its own, so a handler that merely returned 200 would prove only that actix
/// runs: each ping is answered by a task on the runtime that made the `Liveness` (the
/// daemon's, or a replica's single thread), and a loop that is stuck does not answer.
#[derive(Clone)]
pub struct Liveness {
    pings: mpsc::Sender<oneshot::Sender<()>>,
}

impl Liveness {
    /// Starts the answering task on the current runtime; it ends when every handle is dropped.
    pub fn spawn() -> Liveness {
        let (pings, mut incoming) = mpsc::channel::<oneshot::Sender<()>>(64);
        tokio::spawn(async move {
            while let Some(reply) = incoming.recv().await {
                let _ = reply.send(());
            }
        });
        Liveness { pings }
    }

    /// True when the loop answered within [`PROBE_TIMEOUT`].
    pub async fn alive(&self) -> bool {
        let (reply, answered) = oneshot::channel();
        let round_trip = async {
            self.pings.send(reply).await.ok()?;
            answered.await.ok()
        };
        matches!(
            tokio::time::timeout(PROBE_TIMEOUT, round_trip).await,
            Ok(Some(()))
        )
    }
}

/// `/livez`: 200 `{"status":"ok"}` while the event loop answers, else 503.
pub async fn livez_response(liveness: &Liveness) -> HttpResponse {
    if liveness.alive().await {
        HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
    } else {
        HttpResponse::ServiceUnavailable().json(serde_json::json!({"status": "stalled"}))
    }
}

/// The daemon's readiness, as `/readyz` and `/health` show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub status: &'static str,
    pub rabbitmq: bool,
    /// Why RabbitMQ cannot be reached (every node tried, without passwords).
    pub rabbitmq_error: Option<String>,
    pub store: bool,
    pub workers_short_of_replicas: Vec<String>,
    /// Each thing not ready, by name: `rabbitmq URL`, `store`, `worker NAME: ...`.
    pub not_ready: Vec<String>,
}

impl Readiness {
    /// 200 when nothing is missing, else 503; the same body either way.
    pub fn response(&self) -> HttpResponse {
        if self.not_ready.is_empty() {
            HttpResponse::Ok().json(self)
        } else {
            HttpResponse::ServiceUnavailable().json(self)
        }
    }
}

/// `rabbitmq NODES` as `notReady` names the broker: its URLs without their passwords.
pub fn broker_not_ready(shown: &str) -> String {
    format!("rabbitmq {shown}")
}

/// Whether the store answered a ping within [`PROBE_TIMEOUT`].
pub async fn store_answers(store: &dyn Store) -> bool {
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    )
}

async fn readiness(state: &State) -> Readiness {
    let reach = tokio::time::timeout(PROBE_TIMEOUT, state.outbox.check());
    let (rabbitmq, store) = tokio::join!(reach, store_answers(state.store.as_ref()));
    let rabbitmq = rabbitmq.unwrap_or(Err(BrokerError::Lost("no answer within 2s")));
    let mut not_ready = Vec::new();
    if rabbitmq.is_err() {
        not_ready.push(broker_not_ready(&state.outbox.shown()));
    }
    if !store {
        not_ready.push("store".to_string());
    }
    let mut short = Vec::new();
    for (name, w) in state.workers.borrow().iter() {
        if w.replicas_running < w.replicas_wanted {
            short.push(name.clone());
            not_ready.push(format!(
                "worker {name}: {} of {} replicas running",
                w.replicas_running, w.replicas_wanted
            ));
        }
    }
    Readiness {
        status: if not_ready.is_empty() {
            "ok"
        } else {
            "degraded"
        },
        rabbitmq: rabbitmq.is_ok(),
        rabbitmq_error: rabbitmq.err().map(|e| e.to_string()),
        store,
        workers_short_of_replicas: short,
        not_ready,
    }
}

#[get("/livez")]
async fn livez(liveness: web::Data<Liveness>) -> HttpResponse {
    livez_response(&liveness).await
}

#[get("/readyz")]
async fn readyz(state: web::Data<State>) -> HttpResponse {
    readiness(&state).await.response()
}

#[get("/health")]
async fn health(state: web::Data<State>) -> HttpResponse {
    readiness(&state).await.response()
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(livez).service(readyz).service(health);
}
