//! Pruning (SPEC 3.2): the daemon deletes old state in small steps beside the workers.
//!
//! Each pass walks the executions last updated before the later of the two cut-offs, the
//! oldest created first, a batch at a time from a cursor (so rows it keeps are not read
//! again in that pass), and deletes those the rules doom; then old parked messages when
//! `retention.failed` is set; then hands freed pages back. A pause between batches lets the
//! workers' writes through.
//! With several hosts on one store a lease makes one of them the pruner; the others only
//! report sizes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{last_stages, RetentionSettings, Snapshot};
use crate::store::{Aged, Cursor, Sizes, Status, Store, StoreError};

/// Executions read, and at most deleted, per batch.
const BATCH: u32 = 500;
/// The pause between batches.
const PAUSE: Duration = Duration::from_millis(20);
/// The lease's name in the store.
const LEASE: &str = "retention";

/// What `/metrics` shows of retention: what this host pruned, and what the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    pub pruned_executions: u64,
    pub pruned_failed: u64,
    /// None until the store first answered.
    pub sizes: Option<Sizes>,
}

/// The rules of one pass, as instants.
#[derive(Debug, Clone)]
pub struct Rules {
    finished_before: DateTime<Utc>,
    unfinished_before: DateTime<Utc>,
    failed_before: Option<DateTime<Utc>>,
    /// The workers without a follow queue: `done` there is the end of the chain.
    last_stages: BTreeSet<String>,
}

/// What a pass does with one execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Delete,
    /// Deleted unless a parked message of it is kept.
    DeleteUnlessParked,
    Keep,
}

impl Rules {
    pub fn at(
        now: DateTime<Utc>,
        retention: &RetentionSettings,
        last_stages: BTreeSet<String>,
    ) -> Rules {
        let ago = |d: Duration| {
            chrono::Duration::from_std(d)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        };
        Rules {
            finished_before: ago(retention.executions),
            unfinished_before: ago(retention.unfinished),
            failed_before: retention.failed.map(ago),
            last_stages,
        }
    }

    /// Nothing updated at or after this instant can go.
    pub fn scan_before(&self) -> DateTime<Utc> {
        self.finished_before.max(self.unfinished_before)
    }

    pub fn fate(&self, aged: &Aged) -> Fate {
        // Cancelled is finished too (SPEC 3.2), at whichever stage it was stopped.
        let finished = match aged.status {
            Status::Done => self.last_stages.contains(&aged.worker),
            Status::Cancelled => true,
            Status::Retrying | Status::Parked => false,
        };
        if finished && aged.updated_at < self.finished_before {
            Fate::Delete
        } else if !finished && aged.updated_at < self.unfinished_before {
            Fate::DeleteUnlessParked
        } else {
            Fate::Keep
        }
    }
}

/// Prunes every `retention.interval()` until `stop`, publishing what it did on `report`.
pub async fn keep_pruning(
    store: Arc<dyn Store>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    report: watch::Sender<Report>,
    stop: CancellationToken,
) {
    let holder = format!("{}:{}", crate::process::hostname(), std::process::id());
    loop {
        let snapshot = snapshots.borrow().clone();
        let retention = snapshot.config.settings.retention.clone();
        let interval = retention.interval();
        let lease = chrono::Duration::from_std(interval * 2 + Duration::from_secs(30))
            .unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        match store.claim(LEASE, &holder, now, now + lease).await {
            Ok(true) => {
                let rules = Rules::at(now, &retention, last_stages(&snapshot.workers.valid));
                match prune(store.as_ref(), &rules, &stop).await {
                    Ok(pruned) => report.send_modify(|r| pruned.add_to(r)),
                    Err(e) => warn!("pruning stopped for this pass: {e}"),
                }
            }
            Ok(false) => {} // another host prunes
            Err(e) => warn!("cannot take the retention lease: {e}"),
        }
        if let Ok(sizes) = store.sizes().await {
            report.send_modify(|r| r.sizes = Some(sizes));
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub executions: u64,
    pub failed: u64,
}

impl Pruned {
    fn add_to(self, report: &mut Report) {
        report.pruned_executions += self.executions;
        report.pruned_failed += self.failed;
    }
}

/// One pass of the rules over the store.
pub async fn prune(
    store: &dyn Store,
    rules: &Rules,
    stop: &CancellationToken,
) -> Result<Pruned, StoreError> {
    let started = Instant::now();
    let mut pruned = Pruned::default();
    let mut cursor: Option<Cursor> = None;
    while !stop.is_cancelled() {
        let batch = store
            .aged(cursor.as_ref(), rules.scan_before(), BATCH)
            .await?;
        let Some(last) = batch.last() else { break };
        cursor = Some(last.cursor());
        pruned.executions += delete_doomed(store, rules, batch).await?;
        tokio::time::sleep(PAUSE).await;
    }
    if let Some(before) = rules.failed_before {
        loop {
            let deleted = store.prune_failed(before, BATCH).await?;
            pruned.failed += deleted;
            if deleted < u64::from(BATCH) || stop.is_cancelled() {
                break;
            }
            tokio::time::sleep(PAUSE).await;
        }
    }
    if pruned != Pruned::default() {
        store.give_space_back().await?;
        info!(
            executions = pruned.executions,
            failed = pruned.failed,
            "pruned {} executions and {} parked messages in {} ms",
            pruned.executions,
            pruned.failed,
            started.elapsed().as_millis()
        );
    }
    Ok(pruned)
}

async fn delete_doomed(
    store: &dyn Store,
    rules: &Rules,
    batch: Vec<Aged>,
) -> Result<u64, StoreError> {
    let (mut doomed, maybe): (Vec<Aged>, Vec<Aged>) = batch
        .into_iter()
        .filter(|a| rules.fate(a) != Fate::Keep)
        .partition(|a| rules.fate(a) == Fate::Delete);
    if !maybe.is_empty() {
        let ids: Vec<String> = maybe.iter().map(|a| a.execution_id.clone()).collect();
        let parked: BTreeSet<String> = store.parked_among(&ids).await?.into_iter().collect();
        doomed.extend(
            maybe
                .into_iter()
                .filter(|a| !parked.contains(&a.execution_id)),
        );
    }
    if doomed.is_empty() {
        return Ok(0);
    }
    store.delete_executions(&doomed).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(now: DateTime<Utc>) -> Rules {
        let retention = RetentionSettings {
            executions: Duration::from_secs(60),
            unfinished: Duration::from_secs(600),
            failed: None,
        };
        Rules::at(now, &retention, BTreeSet::from(["last".to_string()]))
    }

    fn aged(worker: &str, status: Status, seconds_ago: i64, now: DateTime<Utc>) -> Aged {
        Aged {
            execution_id: "e".into(),
            status,
            worker: worker.into(),
            created_at: now - chrono::Duration::seconds(seconds_ago),
            updated_at: now - chrono::Duration::seconds(seconds_ago),
        }
    }

    #[test]
    fn done_at_the_end_of_the_chain_goes_after_the_short_retention() {
        let now = Utc::now();
        let rules = rules(now);
        assert_eq!(
            rules.fate(&aged("last", Status::Done, 61, now)),
            Fate::Delete
        );
        assert_eq!(rules.fate(&aged("last", Status::Done, 59, now)), Fate::Keep);
        assert_eq!(rules.scan_before(), now - chrono::Duration::seconds(60));
    }

    #[test]
    fn cancelled_anywhere_in_the_chain_goes_after_the_short_retention() {
        let now = Utc::now();
        let rules = rules(now);
        for worker in ["first", "last", ""] {
            let cancelled = |ago| rules.fate(&aged(worker, Status::Cancelled, ago, now));
            assert_eq!((cancelled(61), cancelled(59)), (Fate::Delete, Fate::Keep));
        }
    }

    #[test]
    fn anything_else_waits_for_the_long_one_and_a_parked_message() {
        let now = Utc::now();
        let rules = rules(now);
        // Done in a middle stage: on its way, or waiting at a paused stage.
        assert_eq!(
            rules.fate(&aged("first", Status::Done, 61, now)),
            Fate::Keep
        );
        assert_eq!(
            rules.fate(&aged("first", Status::Done, 601, now)),
            Fate::DeleteUnlessParked
        );
        assert_eq!(
            rules.fate(&aged("last", Status::Parked, 300, now)),
            Fate::Keep
        );
        assert_eq!(
            rules.fate(&aged("last", Status::Retrying, 601, now)),
            Fate::DeleteUnlessParked
        );
    }

    #[test]
    fn a_retention_longer_than_time_itself_keeps_everything() {
        let retention = RetentionSettings {
            executions: Duration::from_secs(u64::MAX / 4),
            ..RetentionSettings::default()
        };
        let now = Utc::now();
        let rules = Rules::at(now, &retention, BTreeSet::new());
        assert_eq!(
            rules.fate(&aged("w", Status::Done, 1_000_000, now)),
            Fate::Keep
        );
    }
}
