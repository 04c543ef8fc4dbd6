//! The integration-test harness: a private configuration folder, queues and database per
//! test (so tests run in parallel and leave nothing behind), the real `dpsd` binary, and
//! the real RabbitMQ and MongoDB-wire servers that `make test` starts.
//!
//! One module per thing a test touches: `env` (the test's world and its files), `broker`
//! (RabbitMQ round trips, and the bench's private nodes: restartable, TLS, the shared
//! cluster), `cluster` (what a cluster node sees, and a cluster of a test's own whose nodes
//! it kills), `store` (state as dpsd wrote it, read through the store trait, on either
//! backend), `processes` (dpsd processes and what /proc says of them), `peer` (a second
//! daemon sharing the test's store, as another host would).

// Each test file uses a part of the harness: what one leaves unused is not dead.
#![allow(dead_code, unused_imports)]

mod broker;
mod cluster;
mod env;
mod peer;
mod processes;
mod store;

use std::time::{Duration, Instant};

pub use broker::{
    amqp_url, close_connections_named, cluster_broker, rabbitmqctl, restartable_broker, tls_broker,
};
pub use cluster::{running_nodes, PrivateCluster};
pub use env::{free_port, TestEnv};
pub use peer::Peer;
pub use processes::{children_of, dpsd_binary, listed_worker, replicas_of, workers_using};
pub use store::{mongo_uri, stage_results, PrivateMongo};

/// Generates a test per backend from functions `fn case(env: TestEnv)`: the same checks in
/// `on_mongodb::case` (a database of the test's own) and `on_embedded::case` (an SQLite
/// file in the test's folder), as `tests/store_contract.rs` does for the store alone.
/// Invoke it in a test file that has `#[macro_use] mod common;`.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod on_mongodb {
            $(#[test]
            fn $case() {
                super::$case($crate::common::TestEnv::new(stringify!($case)));
            })*
        }
        mod on_embedded {
            $(#[test]
            fn $case() {
                super::$case($crate::common::TestEnv::embedded(stringify!($case)));
            })*
        }
    };
}

/// Polls `condition` every 100 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    wait_for_some(what, timeout, || condition().then_some(()));
}

/// Polls `probe` every 100 ms until it finds something, and returns that; panics naming
/// `what` after `timeout`.
pub fn wait_for_some<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    wait_for_some_showing(what, timeout, probe, String::new)
}

/// `wait_for`, and a timeout's panic also shows `context()` (a log's tail, say): a wait
/// that fails only on a loaded CI run can then be read from that run.
pub fn wait_for_showing(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) {
    wait_for_some_showing(what, timeout, || condition().then_some(()), context);
}

fn wait_for_some_showing<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last `max` bytes of `text` (from a line's start), for a failure message.
pub fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    match text[start..].find('\n') {
        Some(newline) if start > 0 => &text[start + newline + 1..],
        _ => &text[start..],
    }
}
