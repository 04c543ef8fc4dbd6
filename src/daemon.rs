//! `dpsd run`: the daemon ties the parts together — the store and a broker connection, the
//! scheduler, the API and the supervisor — and takes them down in order: the API stops
//! taking requests, replicas drain, connections close.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::api::{self, State};
use crate::broker::{Outbox, QueueStats};
use crate::config::{Config, FileWatch, Source};
use crate::reload::Reload;
use crate::scheduler::Scheduler;
use crate::shutdown::Shutdown;
use crate::store;
use crate::supervisor::{Links, Spawner, Supervisor, WorkersSnapshot};

/// How often jobs.d is compared with what runs.
const POLL: Duration = Duration::from_secs(1);
/// How often the workers' queue depths are read.
const QUEUE_POLL: Duration = Duration::from_secs(5);

/// Runs the daemon until SIGTERM or SIGINT. `source` names the main file by absolute path.
pub async fn run(
    source: Source,
    config: Config,
    spawner: Spawner,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let settings = config.settings.clone();
    let store = store::open(&settings).await?;
    let outbox = Arc::new(Outbox::new(&settings.amqp.url, "dpsd daemon"));
    let scheduler = Scheduler::new(store.clone(), outbox.clone(), settings.scheduler.active);
    if !settings.scheduler.active {
        info!("scheduler.active is false: no job fires on this host (API start still works)");
    }
    let synced = sync_jobs(&scheduler, &config).await;
    let reload = Reload::new();
    let (status, workers) = watch::channel(WorkersSnapshot::default());
    let (queue_stats, queues) = watch::channel(BTreeMap::new());
    tokio::spawn(poll_queues(
        outbox.clone(),
        workers.clone(),
        queue_stats,
        shutdown.graceful.clone(),
    ));
    let state = State {
        scheduler: scheduler.clone(),
        store: store.clone(),
        outbox: outbox.clone(),
        reload: reload.clone(),
        workers,
        queues,
    };
    let api = api::serve(&settings.api, state)?;

    let jobs = JobsWatch {
        source: source.clone(),
        config: config.clone(),
        scheduler,
        synced,
    };
    tokio::spawn(keep_jobs(
        jobs,
        reload.subscribe(),
        shutdown.graceful.clone(),
    ));
    tokio::spawn(forward_hangups(reload.clone()));
    let (started, replicas_started) = oneshot::channel();
    let links = Links {
        shutdown: shutdown.clone(),
        reloads: reload.subscribe(),
        status,
        started,
    };
    let supervisor = tokio::spawn(Supervisor::run(source, config, spawner, links));
    if replicas_started.await.is_ok() {
        notify(NotifyState::Ready);
    }

    shutdown.graceful.cancelled().await;
    notify(NotifyState::Stopping);
    let api_stopped = api.stop(true);
    let (_, supervised) = tokio::join!(api_stopped, supervisor);
    if let Err(e) = supervised {
        error!("the supervisor failed: {e}");
    }
    outbox.close().await;
    store.close().await;
    Ok(())
}

/// Reads the depth and consumers of every worker's queue every few seconds, for
/// `/api/workers` and `/metrics` (a passive declare each; no management plugin needed).
async fn poll_queues(
    outbox: Arc<Outbox>,
    workers: watch::Receiver<WorkersSnapshot>,
    stats: watch::Sender<BTreeMap<String, QueueStats>>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(QUEUE_POLL);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let queues: Vec<String> = workers.borrow().values().map(|w| w.queue.clone()).collect();
        match outbox.queue_stats(&queues).await {
            Ok(now) => {
                stats.send_replace(now);
            }
            Err(e) => {
                warn!("cannot read queue depths: {e}");
                stats.send_replace(BTreeMap::new());
            }
        }
    }
}

/// SIGHUP (`systemctl reload dpsd`) re-reads everything at once.
async fn forward_hangups(reload: Reload) {
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP: reloads come from the file poll and the API only");
        return;
    };
    while hangups.recv().await.is_some() {
        info!("SIGHUP: reloading");
        notify(NotifyState::Reloading);
        reload.request();
        notify(NotifyState::Ready);
    }
}

/// What keeps jobs.d applied.
struct JobsWatch {
    source: Source,
    config: Config,
    scheduler: Arc<Scheduler>,
    /// Whether the first sync reached the store; if not, the first poll tries again.
    synced: bool,
}

/// Applies jobs.d edits: polled each second, at once on a reload request.
async fn keep_jobs(jobs: JobsWatch, mut reloads: watch::Receiver<u64>, stop: CancellationToken) {
    let JobsWatch {
        source,
        mut config,
        scheduler,
        synced,
    } = jobs;
    let mut files = FileWatch::default();
    if synced {
        files.changed(source.files_with(&config.settings.jobs_dir));
    }
    let mut poll = tokio::time::interval(POLL);
    loop {
        let forced = tokio::select! {
            _ = stop.cancelled() => return,
            _ = poll.tick() => false,
            Ok(()) = reloads.changed() => true,
        };
        if !files.changed(source.files_with(&config.settings.jobs_dir)) && !forced {
            continue;
        }
        match Config::load(&source) {
            Ok(loaded) => config = loaded,
            Err(problems) => {
                error!("configuration invalid, jobs keep running as they are:\n{problems}");
                continue;
            }
        }
        if !sync_jobs(&scheduler, &config).await {
            // Try again at the next poll, as if the files had changed again.
            files = FileWatch::default();
        }
    }
}

/// Applies the job files; false when the store could not take them.
async fn sync_jobs(scheduler: &Arc<Scheduler>, config: &Config) -> bool {
    let (jobs, problems) = config.jobs();
    let mut broken = Vec::new();
    for problem in &problems.0 {
        error!("{problem} (the job keeps its last good definition)");
        broken.extend(stem(&problem.file));
    }
    match scheduler.sync(jobs, &broken).await {
        Ok(()) => true,
        Err(e) => {
            error!("cannot record the jobs in the store (retrying): {e}");
            false
        }
    }
}

fn stem(path: &Path) -> Option<String> {
    path.file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_string)
}

/// Tells systemd (when it started us with `Type=notify`) what state we are in.
fn notify(state: NotifyState) {
    if let Err(e) = sd_notify::notify(false, &[state]) {
        warn!("cannot notify systemd: {e}");
    }
}
