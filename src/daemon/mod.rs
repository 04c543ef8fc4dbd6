//! `dpsd run`: the daemon ties the parts together — the store and a broker connection, the
//! configuration watcher, the scheduler, the API and the supervisor — and takes them down in
//! order: the API stops taking requests, replicas drain, connections close.

mod jobs;
mod queues;
mod watcher;

use std::collections::BTreeMap;
use std::sync::Arc;

use sd_notify::NotifyState;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{self, State};
use crate::broker::Outbox;
use crate::config::{Snapshot, Source};
use crate::reload::Reload;
use crate::retention;
use crate::scheduler::Scheduler;
use crate::shutdown::Shutdown;
use crate::store;
use crate::supervisor::{Links, Spawner, Supervisor, WorkersSnapshot};

/// Runs the daemon until SIGTERM or SIGINT. `source` names the main file by absolute path;
/// `first` is the configuration it was started with. Without a `spawner` (`--no-workers`)
/// there is no supervisor: the API and the scheduler only.
pub async fn run(
    source: Source,
    first: Snapshot,
    spawner: Option<Spawner>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let settings = first.config.settings.clone();
    let store = store::open(&settings.store()).await?;
    let outbox = Outbox::new(&settings.amqp, first.queue_types(), "dpsd daemon");
    let outbox = Arc::new(outbox);
    let scheduler = Scheduler::new(store.clone(), outbox.clone(), settings.scheduler.active);
    if !settings.scheduler.active {
        info!("scheduler.active is false: no job fires on this host (API start still works)");
    }
    watcher::report(&first);
    let jobs_applied = jobs::apply(&scheduler, &first).await;
    let reload = Reload::new();
    let stop = shutdown.graceful.clone();
    let snapshots = watcher::spawn(source, first, &reload, stop.clone());
    let (status, workers) = watch::channel(WorkersSnapshot::default());
    let (queue_stats, queues) = watch::channel(BTreeMap::new());
    let polled = queues::poll(outbox.clone(), workers.clone(), queue_stats, stop.clone());
    tokio::spawn(polled);
    let (pruned, retention) = watch::channel(retention::Report::default());
    let pruning = retention::keep_pruning(store.clone(), snapshots.clone(), pruned, stop.clone());
    tokio::spawn(pruning);
    let history = crate::history::Shared::default();
    let sampled = crate::history::keep(
        history.clone(),
        workers.clone(),
        queues.clone(),
        stop.clone(),
    );
    tokio::spawn(sampled);
    let state = State {
        scheduler: scheduler.clone(),
        store: store.clone(),
        outbox: outbox.clone(),
        reload,
        workers,
        queues,
        retention,
        snapshots: snapshots.clone(),
        history,
    };
    let api = api::serve(&settings.api, state)?;
    let kept = jobs::keep(scheduler, snapshots.clone(), jobs_applied, stop.clone());
    tokio::spawn(kept);
    tokio::spawn(keep_queue_types(outbox.clone(), snapshots.clone(), stop));
    let (supervisor, started) = match spawner {
        Some(spawner) => {
            let (supervisor, started) = supervise(spawner, &shutdown, snapshots, status).await;
            (Some(supervisor), started)
        }
        None => {
            info!("--no-workers: no replicas are started here");
            if settings.mongodb.as_ref().is_none_or(|m| m.uri.is_none()) {
                // Workers in other pods cannot reach an embedded file (SPEC 13).
                warn!(
                    "--no-workers on the embedded store: workers started elsewhere cannot share \
                     its file; the Kubernetes layout needs MongoDB (mongodb.uri)"
                );
            }
            (None, true)
        }
    };
    if started {
        notify(NotifyState::Ready);
    }

    shutdown.graceful.cancelled().await;
    notify(NotifyState::Stopping);
    let api_stopped = api.stop(true);
    let supervised = async {
        match supervisor {
            Some(supervisor) => supervisor.await,
            None => Ok(()),
        }
    };
    let (_, supervised) = tokio::join!(api_stopped, supervised);
    if let Err(e) = supervised {
        error!("the supervisor failed: {e}");
    }
    outbox.close().await;
    store.close().await;
    Ok(())
}

/// Starts the supervisor and returns once the first configuration's replicas are started
/// (true), or the supervisor ended before that (false: systemd is then not told READY).
async fn supervise(
    spawner: Spawner,
    shutdown: &Shutdown,
    config: watch::Receiver<Arc<Snapshot>>,
    status: watch::Sender<WorkersSnapshot>,
) -> (JoinHandle<()>, bool) {
    let (started, replicas_started) = oneshot::channel();
    let links = Links {
        shutdown: shutdown.clone(),
        config,
        status,
        started,
    };
    let supervisor = tokio::spawn(Supervisor::run(spawner, links));
    let started = replicas_started.await.is_ok();
    (supervisor, started)
}

/// Keeps the daemon's publisher declaring each queue with the type the newest configuration
/// gives it (SPEC 3.3).
async fn keep_queue_types(
    outbox: Arc<Outbox>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return },
        }
        let types = snapshots.borrow_and_update().queue_types();
        outbox.set_queue_types(types);
    }
}

/// Tells systemd (when it started us with `Type=notify`) what state we are in.
fn notify(state: NotifyState) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        warn!("cannot notify systemd: {e}");
    }
}
