//! What the supervisor tells the rest of the daemon (API, health) about its workers: a
//! snapshot published after every change, so readers never touch the supervisor's state.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerReport {
    pub queue: String,
    pub follow_queue: Option<String>,
    pub replicas_wanted: u32,
    pub replicas_running: u32,
    pub pids: Vec<u32>,
    pub restarts: u64,
    pub last_exit: Option<String>,
    /// The problem of the worker's file, while it is broken (the worker runs its last good
    /// definition meanwhile).
    pub config_error: Option<String>,
}

/// Every worker by name.
pub type WorkersSnapshot = BTreeMap<String, WorkerReport>;
