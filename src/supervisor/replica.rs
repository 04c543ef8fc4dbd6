//! Starting and signalling replica processes: `dpsd worker NAME --replica I`, children of
//! the daemon that die with it.

use std::io;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{getpid, getppid, Pid};
use tokio::process::{Child, Command};

use crate::config::WorkerDef;
use crate::worker::REPORT_ENV;

/// The environment variable through which a replica receives its worker's definition.
pub const WORKER_YAML: &str = "DPSD_WORKER_YAML";

/// How to start a replica: this very binary, with the daemon's configuration.
#[derive(Debug, Clone)]
pub struct Spawner {
    pub exe: PathBuf,
    pub config: PathBuf,
    pub env: Option<String>,
    pub verbose: bool,
}

impl Spawner {
    /// Starts replica `replica` of `worker`. The definition travels in the environment
    /// (`DPSD_WORKER_YAML`) so the replica runs what the supervisor validated, even if the
    /// file has been broken since.
    pub fn spawn(&self, worker: &WorkerDef, replica: u32) -> io::Result<Child> {
        let mut command = Command::new(&self.exe);
        command.arg("--config").arg(&self.config);
        if let Some(env) = &self.env {
            command.arg("--env").arg(env);
        }
        if self.verbose {
            command.arg("--verbose");
        }
        command
            .args(["worker", &worker.name, "--replica", &replica.to_string()])
            .env(WORKER_YAML, &worker.text)
            // Its stdout carries its counts to us (see worker::counters).
            .env(REPORT_ENV, "1")
            .stdout(Stdio::piped())
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            // Its own process group: a Ctrl-C in the daemon's terminal reaches the daemon
            // only, which then stops the replicas once (a second signal would hard-stop them).
            .process_group(0)
            .kill_on_drop(false);
        let supervisor = getpid();
        // SAFETY: the closure runs between fork and exec and only makes two syscalls.
        unsafe {
            command.pre_exec(move || {
                // The kernel kills the replica when the daemon dies, even by SIGKILL.
                set_pdeathsig(Signal::SIGKILL)?;
                // ...unless the daemon died before that line: then stop here.
                if getppid() != supervisor {
                    return Err(io::Error::other("the supervisor exited during spawn"));
                }
                Ok(())
            });
        }
        command.spawn()
    }
}

/// Sends `signal` to a process; a process that is already gone is not an error.
pub fn signal(pid: u32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}
