//! The real `dpsd` binary as the tests run it: one-shot commands (`send`, `check`, ...),
//! workers and daemons started in the background with their logs in the test folder (and
//! killed when the test ends), waits on what those logs say, and what /proc says about the
//! processes a daemon supervises.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{wait_for, TestEnv};

impl TestEnv {
    /// `dpsd --config <this test's main file>`, with no env overlay.
    pub fn dpsd(&self) -> Command {
        dpsd_at(&self.config_path())
    }

    /// Runs `dpsd ARGS...` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.dpsd().args(args).output().expect("run dpsd")
    }

    /// Sends a JSON message with `dpsd send`; returns the executionId it printed.
    pub fn send(&self, queue: &str, json: &str) -> String {
        let out = self.run(&["send", queue, json]);
        assert!(
            out.status.success(),
            "dpsd send failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Sends `json` `n` times in one `dpsd send --count` (one process, one connection, so
    /// the messages arrive together even on a busy machine); returns their executionIds.
    pub fn send_count(&self, queue: &str, json: &str, n: usize) -> Vec<String> {
        let out = self.run(&["send", queue, json, "--count", &n.to_string()]);
        assert!(
            out.status.success(),
            "dpsd send --count {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Starts `dpsd worker NAME`, its log in the test folder; killed when the test ends.
    pub fn start_worker(&self, name: &str) -> u32 {
        self.start_worker_with(name, &[])
    }

    /// Starts `dpsd worker NAME ARGS...`, its log in the test folder.
    pub fn start_worker_with(&self, name: &str, args: &[&str]) -> u32 {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("{name}.log")))
            .expect("log file");
        self.spawn(self.dpsd().args(["worker", name]).args(args), log)
    }

    /// Writes worker NAME, starts one replica of it and waits until it consumes.
    pub fn run_worker(&self, name: &str, yaml: &str) {
        self.write_worker(name, yaml);
        self.start_worker(name);
        self.wait_consuming(name, 1);
    }

    /// Starts `dpsd run` with this test's configuration, its log in `daemon.log`.
    pub fn start_daemon(&self) -> u32 {
        self.start_daemon_at(&self.config_path(), "daemon.log")
    }

    /// Starts `dpsd ARGS...` (e.g. `run --no-workers`), its log in `daemon.log`.
    pub fn start_daemon_with(&self, args: &[&str]) -> u32 {
        let log = std::fs::File::create(self.path("daemon.log")).expect("log file");
        self.spawn(self.dpsd().args(args), log)
    }

    /// Starts `dpsd run` with the main file `config`, its log in `log`.
    pub fn start_daemon_at(&self, config: &Path, log: &str) -> u32 {
        let log = std::fs::File::create(self.path(log)).expect("log file");
        self.spawn(dpsd_at(config).arg("run"), log)
    }

    /// Starts `command` (dpsd under a wrapper, say), its stderr in `log` of the test folder;
    /// killed when the test ends.
    pub fn start_logged(&self, command: &mut Command, log: &str) -> u32 {
        let log = std::fs::File::create(self.path(log)).expect("log file");
        self.spawn(command, log)
    }

    /// Spawns `command` with stderr to `log`; it is killed when the test ends.
    fn spawn(&self, command: &mut Command, log: std::fs::File) -> u32 {
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dpsd");
        let pid = child.id();
        self.children.lock().expect("lock").push(child);
        pid
    }

    /// Takes the daemon's Child back (to wait for its exit status).
    pub fn take_child(&self, pid: u32) -> Child {
        let mut children = self.children.lock().expect("lock");
        let index = children
            .iter()
            .position(|c| c.id() == pid)
            .expect("a child of this test");
        children.remove(index)
    }

    /// Kills every process this test started, and reaps them.
    pub fn kill_workers(&self) {
        for mut child in self.children.lock().expect("lock").drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    pub fn worker_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// Waits until the worker's log says it consumes (its queue is declared by then).
    pub fn wait_consuming(&self, name: &str, times: usize) {
        wait_for(
            &format!("worker {name} consuming"),
            Duration::from_secs(20),
            || self.worker_log(name).matches("consuming").count() >= times,
        );
    }

    /// Writes the two-stage example chain, `first` (state 1) forwarding to `last` (state 2),
    /// with the example services; returns the two queues.
    pub fn write_two_stage_chain(&self) -> (String, String) {
        let (first, last) = (self.queue("first"), self.queue("last"));
        self.write_worker(
            "first",
            &format!("queue: {first}\nfollow_queue: {last}\njob_state: 1\nservices: [integration_test_service1]\n"),
        );
        self.write_worker(
            "last",
            &format!("queue: {last}\njob_state: 2\nservices: [integration_test_service2]\n"),
        );
        (first, last)
    }

    /// The daemon's `/metrics` text.
    pub fn metrics(&self) -> String {
        reqwest::blocking::get(self.api("/metrics"))
            .and_then(|r| r.text())
            .expect("GET /metrics")
    }

    /// Waits until the daemon's API answers `/health` (whatever the status).
    pub fn wait_api(&self) {
        let url = self.api("/health");
        wait_for("the API listening", Duration::from_secs(30), || {
            reqwest::blocking::get(&url).is_ok()
        });
    }
}

/// The path of the dpsd binary under test.
pub fn dpsd_binary() -> &'static str {
    env!("CARGO_BIN_EXE_dpsd")
}

/// The children of `parent`, as (pid, state letter, command line).
pub fn children_of(parent: u32) -> Vec<(u32, char, String)> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            (parent_of(pid)? == parent).then_some(())?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat[stat.rfind(')')? + 2..].chars().next()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            Some((pid, state, args.trim().to_string()))
        })
        .collect()
}

fn dpsd_at(config: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dpsd"));
    command.arg("--config").arg(config).env_remove("DPSD_ENV");
    command
}

/// `dpsd worker NAME` processes whose parent is `parent`, as (pid, replica number).
pub fn replicas_of(parent: u32, worker: &str) -> Vec<(u32, u32)> {
    let mut found: Vec<(u32, u32)> = dpsd_workers()
        .filter(|(pid, _)| parent_of(*pid) == Some(parent))
        .filter_map(|(pid, args)| {
            let at = args.iter().position(|a| a == "worker")?;
            (args.get(at + 1).map(String::as_str) == Some(worker)).then_some(())?;
            let replica = args
                .iter()
                .position(|a| a == "--replica")
                .and_then(|i| args.get(i + 1)?.parse().ok());
            Some((pid, replica.unwrap_or(0)))
        })
        .collect();
    found.sort_by_key(|(_, replica)| *replica);
    found
}

/// Every live `dpsd worker` process that names this test's configuration file.
pub fn workers_using(config: &Path) -> Vec<u32> {
    let config = config.to_string_lossy().to_string();
    dpsd_workers()
        .filter(|(pid, args)| args.contains(&config) && !is_zombie(*pid))
        .map(|(pid, _)| pid)
        .collect()
}

/// Every process with `worker` among its arguments, as (pid, arguments).
fn dpsd_workers() -> impl Iterator<Item = (u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect();
            args.iter().any(|a| a == "worker").then_some((pid, args))
        })
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Worker `name` as the `/api/workers` at `url` lists it (a daemon's, or a peer's).
pub fn listed_worker(url: &str, name: &str) -> serde_json::Value {
    let all: serde_json::Value = reqwest::blocking::get(url)
        .and_then(|r| r.json())
        .expect("GET /api/workers");
    all.as_array()
        .and_then(|a| a.iter().find(|w| w["name"] == name).cloned())
        .unwrap_or_else(|| panic!("worker {name} not listed at {url}: {all}"))
}
