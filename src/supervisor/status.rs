//! What the supervisor tells the rest of the daemon (API, health) about its workers: a
//! snapshot published after every change, so readers never touch the supervisor's state.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::worker::Totals;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    pub queue: String,
    pub follow_queue: Option<String>,
    pub job_state: i64,
    /// Service ids, in calling order.
    pub services: Vec<String>,
    pub prefetch: u16,
    /// `{maxAttempts, delaySeconds, backoff, maxDelaySeconds}`, or null without retries.
    pub retry: Option<serde_json::Value>,
    pub replicas_wanted: u32,
    pub replicas_running: u32,
    pub pids: Vec<u32>,
    pub restarts: u64,
    pub last_exit: Option<String>,
    /// The problem of the worker's file, while it is broken (the worker runs its last good
    /// definition meanwhile).
    pub config_error: Option<String>,
    /// Messages processed, failed, retried, parked, in flight; service durations.
    pub counters: Totals,
}

/// Every worker by name.
pub type WorkersSnapshot = BTreeMap<String, WorkerReport>;
