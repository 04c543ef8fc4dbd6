//! Starting and signalling replica processes: `dpsd worker NAME --replica I --supervised`,
//! children of the daemon that die with it. A replica receives its whole configuration
//! ([`ReplicaSpec`]) as JSON on its stdin and writes its counts on its stdout.

use std::io;
use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{kill, Signal};
use nix::unistd::{getpid, getppid, Pid};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::config::ReplicaSpec;

/// How to start a replica: this very binary.
#[derive(Debug, Clone)]
pub struct Spawner {
    pub exe: PathBuf,
    /// The daemon's main file: shown in the replica's command line (`ps` tells whose it is);
    /// the replica itself does not read it.
    pub config: PathBuf,
    pub verbose: bool,
}

impl Spawner {
    /// Starts replica `replica` of `spec.worker`, and writes `spec` to its stdin.
    pub fn spawn(&self, spec: &ReplicaSpec, replica: u32) -> io::Result<Child> {
        let mut command = Command::new(&self.exe);
        command.arg("--config").arg(&self.config);
        if self.verbose {
            command.arg("--verbose");
        }
        command
            .args([
                "worker",
                &spec.worker.name,
                "--replica",
                &replica.to_string(),
            ])
            .arg("--supervised")
            .stdin(Stdio::piped())
            // Its stdout carries its counts to us (see worker::counters).
            .stdout(Stdio::piped())
            .env_remove("NOTIFY_SOCKET")
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
        let mut child = command.spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            let json = spec.to_json();
            // A replica that dies before reading it exits, and that exit is what counts.
            tokio::spawn(async move {
                let _ = stdin.write_all(json.as_bytes()).await;
            });
        }
        Ok(child)
    }
}

/// Sends `signal` to a process; a process that is already gone is not an error.
pub fn signal(pid: u32, signal: Signal) {
    let _ = kill(Pid::from_raw(pid as i32), signal);
}
