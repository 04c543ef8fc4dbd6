//! `dpsd worker NAME`: one replica of a worker. In the foreground (for debugging) it reads
//! the configuration files itself; started by the supervisor (`--supervised`) it reads only
//! the [`ReplicaSpec`] the supervisor writes on its stdin, and reports its counts on stdout.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use tracing::Instrument;

use super::{Failure, Global};
use crate::api::{serve_replica, ReplicaState};
use crate::broker::Endpoint;
use crate::config::{Credential, QueueType, ReplicaSpec};
use crate::logging;
use crate::services::Caller;
use crate::shutdown::Shutdown;
use crate::store;
use crate::worker::{cancel, pause, report, report_once, Counters, Handler, InHand, Worker};

/// How the replica was started, beyond its spec.
struct Mode {
    replica: u32,
    supervised: bool,
    /// `--listen ADDR`: serve /livez, /readyz and /metrics there, with `api.auth`'s users.
    listen: Option<(String, Option<BTreeMap<String, Credential>>)>,
}

/// Runs until SIGINT or SIGTERM, then drains the messages in hand and returns.
pub async fn worker(
    global: &Global,
    name: &str,
    replica: u32,
    supervised: bool,
    listen: Option<&str>,
) -> Result<(), Failure> {
    let (spec, auth) = if supervised {
        (from_supervisor(name)?, None)
    } else {
        let config = global.config()?;
        let def = config.worker(name)?;
        (config.replica(def), config.settings.api.auth.clone())
    };
    let _log = logging::init(&spec.runtime.log, global.verbose)?;
    let span = tracing::info_span!("worker", worker = %spec.worker.name, replica);
    let mode = Mode {
        replica,
        supervised,
        listen: listen.map(|addr| (addr.to_string(), auth)),
    };
    run(spec, mode).instrument(span).await
}

/// The spec on stdin, as the supervisor wrote it.
fn from_supervisor(name: &str) -> Result<ReplicaSpec, Failure> {
    let mut json = String::new();
    std::io::stdin()
        .read_to_string(&mut json)
        .map_err(|e| Failure::Usage(format!("cannot read the configuration on stdin: {e}")))?;
    ReplicaSpec::from_json(&json, name).map_err(Failure::Usage)
}

async fn run(spec: ReplicaSpec, mode: Mode) -> Result<(), Failure> {
    let Mode {
        replica,
        supervised,
        listen,
    } = mode;
    let shutdown = Shutdown::on_signals(spec.shutdown_timeout)
        .map_err(|e| anyhow::anyhow!("cannot install signal handlers: {e}"))?;
    let store = store::open(&spec.runtime.store).await?;
    let quorum = spec.worker.queue_type == QueueType::Quorum;
    let park_after = quorum.then_some(spec.runtime.amqp.delivery_limit);
    let handler = Handler {
        def: spec.worker,
        store: store.clone(),
        caller: Caller::default(),
        hard_stop: shutdown.hard.clone(),
        counters: Arc::new(Counters::default()),
        park_after,
        cancels: cancel::watch(store.clone()).await,
        in_hand: InHand::default(),
    };
    if supervised {
        tokio::spawn(report(handler.counters.clone()));
    }
    let paused = pause::watch(store.clone(), handler.def.name.clone()).await;
    let endpoint = Endpoint::new(&spec.runtime.amqp);
    let consuming = Arc::new(AtomicBool::new(false));
    let listener = match listen {
        Some((addr, auth)) => {
            let state = ReplicaState {
                worker: handler.def.name.clone(),
                queue: handler.def.queue.clone(),
                broker: endpoint.shown(),
                consuming: consuming.clone(),
                store: store.clone(),
                counters: handler.counters.clone(),
            };
            Some(serve_replica(&addr, auth.as_ref(), state)?)
        }
        None => None,
    };
    let worker = Worker {
        handler: Arc::new(handler),
        endpoint,
        replica,
        consuming,
        paused,
    };
    worker.run(&shutdown).await;
    if let Some(listener) = listener {
        listener.stop(true).await;
    }
    if supervised {
        // The last counts, with what the drain finished, before stdout closes.
        report_once(&worker.handler.counters.totals());
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
