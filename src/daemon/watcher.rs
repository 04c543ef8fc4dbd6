//! The one configuration watcher (SPEC 4.1): it compares the files once a second, and reads
//! them at once on SIGHUP (`systemctl reload dpsd`) and on `POST /api/reload`; after each
//! change it loads the whole configuration once and hands the [`Snapshot`] to whoever
//! subscribed (the supervisor, the scheduler). A main file that fails validation changes
//! nothing: everything keeps running on the last good one.
//!
//! Files are compared by content, not watched with inotify: editors that replace files,
//! network filesystems and deleted folders all just work, and a handful of small files costs
//! nothing to read.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::notify;
use crate::config::{FileWatch, Snapshot, Source};
use crate::reload::Reload;

/// How often the files are compared with the last snapshot's.
const POLL: Duration = Duration::from_secs(1);

/// Watches the files of `first` and publishes every valid configuration they hold.
pub fn spawn(
    source: Source,
    first: Snapshot,
    reload: &Reload,
    stop: CancellationToken,
) -> watch::Receiver<Arc<Snapshot>> {
    let mut files = FileWatch::default();
    files.changed(first.files(&source));
    let (publish, snapshots) = watch::channel(Arc::new(first));
    let watcher = Watcher {
        source,
        files,
        publish,
    };
    tokio::spawn(watcher.run(reload.subscribe(), stop));
    tokio::spawn(forward_hangups(reload.clone()));
    snapshots
}

struct Watcher {
    source: Source,
    files: FileWatch,
    publish: watch::Sender<Arc<Snapshot>>,
}

impl Watcher {
    async fn run(mut self, mut reloads: watch::Receiver<u64>, stop: CancellationToken) {
        let mut poll = tokio::time::interval(POLL);
        loop {
            let forced = tokio::select! {
                _ = stop.cancelled() => return,
                _ = poll.tick() => false,
                Ok(()) = reloads.changed() => true,
            };
            let files = self.publish.borrow().files(&self.source);
            if self.files.changed(files) || forced {
                self.load();
            }
        }
    }

    /// Loads everything once; a valid main file makes a new snapshot, whose broken worker
    /// and job files are reported here, once per change.
    fn load(&mut self) {
        match Snapshot::load(&self.source) {
            Ok(snapshot) => {
                report(&snapshot);
                // The folders may have moved with the main file.
                self.files.changed(snapshot.files(&self.source));
                self.publish.send_replace(Arc::new(snapshot));
            }
            Err(problems) => {
                error!("configuration invalid, keeping the running one:\n{problems}");
            }
        }
    }
}

/// Logs the problems of a snapshot's worker and job files.
pub fn report(snapshot: &Snapshot) {
    for problem in &snapshot.workers.problems.0 {
        error!("{problem} (the worker keeps its last good definition)");
    }
    for problem in &snapshot.jobs.problems.0 {
        error!("{problem} (the job keeps its last good definition)");
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
