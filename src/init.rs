//! dpsd as PID 1, a container's entry point (SPEC 13). PID 1 inherits every orphaned
//! process of its namespace and must reap them, or zombies pile up; and the kernel gives it
//! only the signals it asked for.
//!
//! Reaping orphans inside the daemon would race tokio, which waits for each child it spawned
//! by its pid: a `waitpid(-1)` there steals the exit status of a replica the supervisor
//! waits for, and a registry of our own pids leaves a window between a spawn and its
//! registration. So, as tini does, PID 1 splits in two before anything else starts: the
//! parent stays a small init that forwards signals to its one child and reaps whatever
//! process ends; the child goes on as dpsd with nothing changed (it is not PID 1, so tokio's
//! child handling and every exit status are its own). The init exits with the child's
//! status: `docker stop`'s SIGTERM reaches dpsd, dpsd drains, and its 0 is the container's.

use std::process::ExitCode;

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpgrp, getpid, setpgid, tcsetpgrp, ForkResult, Pid};

/// What the init passes on to dpsd; every other signal but SIGCHLD leaves it untouched.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// When this process is PID 1, splits it: returns the exit code in the init once dpsd has
/// exited, and None in dpsd itself (and whenever this process is not PID 1, or cannot fork,
/// when it simply goes on). Must run before any thread is started.
pub fn split_if_pid_1() -> Option<ExitCode> {
    if getpid() != Pid::from_raw(1) {
        return None;
    }
    let mut waited = SigSet::empty();
    for signal in FORWARDED {
        waited.add(signal);
    }
    waited.add(Signal::SIGCHLD);
    // Blocked, not ignored: the kernel keeps a blocked signal pending even for PID 1, and
    // the child keeps SIGTTOU blocked until it has taken the terminal (below).
    let mut blocked = waited;
    blocked.add(Signal::SIGTTIN);
    blocked.add(Signal::SIGTTOU);
    let before = blocked.thread_swap_mask(SigmaskHow::SIG_BLOCK).ok()?;
    // SAFETY: no thread exists yet (main calls this first), so the child is a full copy of
    // a single-threaded process and may do anything.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            take_the_terminal();
            let _ = before.thread_set_mask();
            None
        }
        Ok(ForkResult::Parent { child }) => Some(init(child, &waited)),
        Err(e) => {
            eprintln!(
                "dpsd: as PID 1, cannot fork an init to reap orphans ({e}); going on without"
            );
            let _ = before.thread_set_mask();
            None
        }
    }
}

/// In the child: a process group of its own, in the terminal's foreground if there is one,
/// so that a Ctrl-C of `docker run -it` reaches dpsd once (from the terminal) and not twice
/// (the terminal's and the init's forward): a second signal would stop it hard.
fn take_the_terminal() {
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    // No terminal (ENOTTY) is the usual case in a container; nothing to do then.
    let _ = tcsetpgrp(std::io::stdin(), getpgrp());
}

/// The init's loop: forwards signals to `child`, reaps every process that ends, and returns
/// the child's exit code once it has exited (128 + N for a child killed by signal N).
fn init(child: Pid, waited: &SigSet) -> ExitCode {
    loop {
        let Ok(signal) = waited.wait() else { continue };
        if signal != Signal::SIGCHLD {
            let _ = kill(child, signal);
            continue;
        }
        if let Some(code) = reap(child) {
            return ExitCode::from(code);
        }
    }
}

/// Reaps every process that has ended (SIGCHLD may stand for several); the child's exit
/// code when it was among them.
fn reap(child: Pid) -> Option<u8> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, status)) if pid == child => code = Some(status as u8),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                code = Some(128u8.saturating_add(signal as u8));
            }
            // An orphan, reaped; or a stop or continue reported: look for more.
            Ok(WaitStatus::StillAlive) | Err(_) => return code,
            Ok(_) => {}
        }
    }
}
