//! RabbitMQ clusters on this machine, for the tests of SPEC 3.3 (a list of nodes, quorum
//! queues, losing a node): what a node of one sees, and `PrivateCluster`, a three-node
//! cluster of a test's own whose nodes it may kill and start again (the shared cluster of
//! `cluster_broker()` must stay whole for the tests beside it). Both go through
//! `scripts/rabbit-cluster.sh`, the script `make test` starts the shared cluster with.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::wait_for;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rabbit-cluster.sh");

/// The nodes that `node` sees running in its cluster (itself included), from
/// `rabbitmqctl cluster_status`; empty when it does not answer.
pub fn running_nodes(node: &str) -> Vec<String> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-n", node, "cluster_status", "--formatter", "json"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("run rabbitmqctl");
    if !out.status.success() {
        return Vec::new();
    }
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cluster_status --formatter json is JSON");
    let mut running: Vec<String> = status["running_nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    running.sort();
    running
}

/// A three-node RabbitMQ cluster of the test's own (nodes `dpsd-pc<pid>n<k>-1@localhost`
/// ..`-3`, AMQP on 127.0.0.1 and distribution on free ports, data in
/// `$DPSD_TEST_RABBIT_DIR`), stopped and removed on Drop. Starting it takes ~20 s on 2
/// cores: one test per cluster, and few of them. Root only, under `make test` (which also
/// stops what a killed test left). Nodes are numbered from 0 here (the script counts from 1).
pub struct PrivateCluster {
    dir: PathBuf,
    nodes: Vec<String>,
    urls: Vec<String>,
}

impl PrivateCluster {
    /// Starts the three nodes and joins them; returns once every node is running in the
    /// cluster (the script gives up after 60 s a step, naming the node and its log).
    pub fn start() -> PrivateCluster {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::var("DPSD_TEST_RABBIT_DIR")
            .ok()
            .filter(|d| !d.is_empty());
        let base = base.unwrap_or_else(|| {
            panic!(
                "DPSD_TEST_RABBIT_DIR is not set: run the tests with `make test` as root, \
                 which gives private RabbitMQ clusters a folder the rabbitmq user can reach"
            )
        });
        let name = format!(
            "pc{}n{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        );
        let ports = free_ports(6);
        let nodes: Vec<String> = (1..=3)
            .map(|i| format!("dpsd-{name}-{i}@localhost"))
            .collect();
        let urls = (0..3)
            .map(|i| format!("amqp://guest:guest@127.0.0.1:{}/%2f", ports[2 * i]))
            .collect();
        let specs: Vec<String> = (0..3)
            .map(|i| format!("{}:{}:{}", nodes[i], ports[2 * i], ports[2 * i + 1]))
            .collect();
        // Built first, so that a start that fails half-way is stopped by Drop.
        let cluster = PrivateCluster {
            dir: PathBuf::from(base).join(&name),
            nodes,
            urls,
        };
        let dir = cluster.dir.to_string_lossy().to_string();
        let mut args = vec!["start", &dir];
        args.extend(specs.iter().map(String::as_str));
        script(&args, "start a private RabbitMQ cluster");
        cluster
    }

    /// The nodes' `amqp://guest:guest@127.0.0.1:PORT/%2f` URLs, in node order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The URLs comma-separated, as `amqp.url` takes a cluster in `DPSD_AMQP__URL`.
    pub fn url_list(&self) -> String {
        self.urls.join(",")
    }

    /// The node names (`rabbitmqctl -n` takes them), in node order.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Where node `i` logs (copied to `$DPSD_TEST_RABBIT_LOGS` when the cluster stops).
    pub fn node_log(&self, i: usize) -> PathBuf {
        self.dir
            .join((i + 1).to_string())
            .join("log")
            .join(format!("{}.log", self.nodes[i]))
    }

    /// Kills node `i` with SIGKILL (its beam process, found by the node name in its
    /// environment), as a machine dying would; returns once the process is gone and epmd
    /// has forgotten the node. Returns the pid it killed.
    pub fn kill_node(&self, i: usize) -> u32 {
        let out = script(
            &["kill-node", &self.dir_arg(), &(i + 1).to_string()],
            &format!("kill node {}", self.nodes[i]),
        );
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("kill-node printed {out:?}, not a pid"))
    }

    /// Starts node `i` again on its data and ports; it rejoins the cluster on its own.
    /// Returns once another node sees all three running (60 s at most).
    pub fn start_node(&self, i: usize) {
        script(
            &["start-node", &self.dir_arg(), &(i + 1).to_string()],
            &format!(
                "start node {} again (log: {})",
                self.nodes[i],
                self.node_log(i).display()
            ),
        );
    }

    /// The nodes that node `via` sees running, sorted; empty when it does not answer.
    pub fn running_nodes(&self, via: usize) -> Vec<String> {
        running_nodes(&self.nodes[via])
    }

    /// Waits until node `via` sees exactly `expected` running (a killed node drops out
    /// once the others have noticed its connections close).
    pub fn wait_running(&self, via: usize, expected: &[&str], timeout: Duration) {
        let mut expected: Vec<String> = expected.iter().map(|n| n.to_string()).collect();
        expected.sort();
        wait_for(
            &format!("node {} to see running {expected:?}", self.nodes[via]),
            timeout,
            || self.running_nodes(via) == expected,
        );
    }

    fn dir_arg(&self) -> String {
        self.dir.to_string_lossy().to_string()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let out = Command::new(SCRIPT)
            .args(["stop", &self.dir_arg()])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "stopping the private cluster in {} failed: {}",
                self.dir.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("could not run {SCRIPT}: {e}"),
        }
    }
}

/// Runs `scripts/rabbit-cluster.sh ARGS...`, which must succeed; returns its stdout.
fn script(args: &[&str], what: &str) -> String {
    let out = Command::new(SCRIPT)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("could not run {SCRIPT}: {e}"));
    assert!(
        out.status.success(),
        "could not {what}: {SCRIPT} {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `n` distinct free ports, none in 35672-35682 (rabbitmqctl's own distribution takes
/// those): all bound at once, so none is handed out twice.
fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new();
    while held.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").expect("free port");
        let port = listener.local_addr().expect("addr").port();
        if !(35672..=35682).contains(&port) {
            held.push(listener);
        }
    }
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}
