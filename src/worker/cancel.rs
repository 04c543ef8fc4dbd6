//! Obeying a cancel (SPEC 4.5). The mark lives in the store, so that every replica on every
//! host, and one started later, sees it. Each replica keeps the cancelled executionIds in
//! memory, loaded at start and refreshed by polling the store's index of marks every
//! [`POLL`]: the handler's check before a message's services start is a set lookup, no
//! store round trip per message, and a running service is raced against the arrival of its
//! executionId in the set.

use std::collections::HashSet;
use std::future::pending;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::{Cancellation, Store};

/// How often a replica reads the marks: half the second SPEC 4.5 gives a running service.
pub const POLL: Duration = Duration::from_millis(500);

/// How far back each poll reads before the newest mark it has seen. A mark is timed by the
/// clock of the host that made it, before its write commits: a slower commit, or another
/// host's clock a little behind, can land a mark older than one already read. Re-reading
/// the last half minute (a handful of marks) catches those.
const OVERLAP: chrono::Duration = chrono::Duration::seconds(30);

/// The executionIds cancelled so far, as this replica knows them. Shared by the handler
/// (lookups) and the poller (additions). It only grows: a mark is final, and marks are rare
/// (an operator's act), so the set stays small beside the replica's other memory.
#[derive(Debug)]
pub struct Cancels {
    ids: RwLock<HashSet<String>>,
    /// Bumped whenever ids are added: what a running service's race waits on.
    grown: watch::Sender<u64>,
}

impl Default for Cancels {
    fn default() -> Self {
        Cancels {
            ids: RwLock::new(HashSet::new()),
            grown: watch::channel(0).0,
        }
    }
}

impl Cancels {
    /// Whether the execution is cancelled, as far as this replica knows now.
    pub fn contains(&self, execution_id: &str) -> bool {
        let ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
        ids.contains(execution_id)
    }

    /// Resolves once the execution is known to be cancelled (at once if it is already).
    pub async fn cancelled(&self, execution_id: &str) {
        // Subscribed before the lookup: an addition after the lookup is a change we see.
        let mut grown = self.grown.subscribe();
        loop {
            if self.contains(execution_id) {
                return;
            }
            if grown.changed().await.is_err() {
                pending::<()>().await;
            }
        }
    }

    /// Adds what a poll read; returns how many were new.
    pub fn add(&self, marks: &[Cancellation]) -> usize {
        let added = {
            let mut ids = self.ids.write().unwrap_or_else(|p| p.into_inner());
            marks
                .iter()
                .filter(|mark| ids.insert(mark.execution_id.clone()))
                .count()
        };
        if added > 0 {
            self.grown.send_modify(|n| *n += 1);
        }
        added
    }
}

/// When the handler found the execution cancelled: what its `cancelled` stage says.
#[derive(Debug, Clone, Copy)]
pub enum Cancelled {
    Before,
    Stopped,
    After,
}

impl Cancelled {
    pub fn reason(self) -> &'static str {
        match self {
            Cancelled::Before => "cancelled: services not called",
            Cancelled::Stopped => "cancelled: the running service was stopped",
            Cancelled::After => "cancelled while the services ran: their outcome was dropped",
        }
    }
}

/// The cancelled executions, loaded before returning (so a replica started after a cancel
/// never runs it) and kept up to date from the store every [`POLL`] for as long as the
/// returned handle lives. A store that cannot be read keeps what is known and is read again
/// at the next poll (the message's own stage write waits for the store anyway).
pub async fn watch(store: Arc<dyn Store>) -> Arc<Cancels> {
    let cancels = Arc::new(Cancels::default());
    let since = refresh(store.as_ref(), &cancels, None).await;
    tokio::spawn(poll(store, Arc::downgrade(&cancels), since));
    cancels
}

async fn poll(store: Arc<dyn Store>, cancels: Weak<Cancels>, mut since: Option<DateTime<Utc>>) {
    let mut ticks = tokio::time::interval(POLL);
    loop {
        ticks.tick().await;
        let Some(cancels) = cancels.upgrade() else {
            return;
        };
        since = refresh(store.as_ref(), &cancels, since).await;
    }
}

/// One read of the marks from `since` on; returns where the next one starts.
async fn refresh(
    store: &dyn Store,
    cancels: &Cancels,
    since: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    match store.cancelled_since(since).await {
        Ok(marks) => {
            let added = cancels.add(&marks);
            if added > 0 {
                info!(added, "cancelled executions learnt from the store");
            }
            next_since(since, &marks)
        }
        Err(e) => {
            warn!("cannot read the cancelled executions: {e}");
            since
        }
    }
}

/// The newest mark read, less the overlap; never earlier than where this read started.
fn next_since(since: Option<DateTime<Utc>>, marks: &[Cancellation]) -> Option<DateTime<Utc>> {
    let newest = marks.iter().map(|m| m.cancelled_at).max();
    let next = newest.and_then(|at| at.checked_sub_signed(OVERLAP));
    match (since, next) {
        (Some(since), Some(next)) => Some(since.max(next)),
        (since, next) => next.or(since),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mark(id: &str, at: DateTime<Utc>) -> Cancellation {
        Cancellation {
            execution_id: id.into(),
            cancelled_at: at,
        }
    }

    #[test]
    fn the_next_poll_starts_half_a_minute_before_the_newest_mark_and_never_goes_back() {
        let t = Utc::now();
        assert_eq!(
            next_since(None, &[]),
            None,
            "nothing cancelled: read all again"
        );
        assert_eq!(next_since(None, &[mark("a", t)]), Some(t - OVERLAP));
        let later = t + chrono::Duration::minutes(5);
        assert_eq!(
            next_since(Some(later), &[mark("a", t)]),
            Some(later),
            "an old mark read again does not move the start back"
        );
        assert_eq!(next_since(Some(t), &[]), Some(t));
    }

    #[tokio::test]
    async fn a_wait_ends_when_its_execution_is_added_not_another() {
        let cancels = Arc::new(Cancels::default());
        let waiting = tokio::spawn({
            let cancels = cancels.clone();
            async move { cancels.cancelled("e1").await }
        });
        assert_eq!(cancels.add(&[mark("other", Utc::now())]), 1);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "another execution's cancel");
        assert_eq!(
            cancels.add(&[mark("e1", Utc::now()), mark("other", Utc::now())]),
            1
        );
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("ends")
            .expect("joins");
        assert!(cancels.contains("e1") && !cancels.contains("e2"));
    }
}
