//! Child processes dpsd runs for others (exec services, exec jobs): started without a shell
//! in a process group of their own, so a timeout kills everything they started.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// `program args...`, ready for stdio settings; never a shell.
pub fn command(program: &Path, args: &[String]) -> Command {
    let mut command = Command::new(program);
    command.args(args).process_group(0).kill_on_drop(true);
    // SAFETY: one syscall between fork and exec. The program dies with the dpsd process
    // that started it, even one killed with SIGKILL.
    let parent = nix::unistd::getpid();
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // dpsd may have died before that line: then do not start an orphan.
            if nix::unistd::getppid() != parent {
                return Err(std::io::Error::other(
                    "dpsd exited while starting the program",
                ));
            }
            Ok(())
        });
    }
    command
}

/// Kills the child's whole process group and reaps the child.
pub async fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        signal_group(pid);
    }
    let _ = child.wait().await;
}

/// Sends SIGKILL to the process group `leader` leads (a child started by [`command`]).
pub fn signal_group(leader: u32) {
    // The group may be gone already; nothing to do then.
    let _ = killpg(Pid::from_raw(leader as i32), Signal::SIGKILL);
}

/// "exit status 3" or "signal SIGKILL", for logs and errors.
pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("signal {}", signal.as_str()),
            Err(_) => format!("signal {signal}"),
        },
        _ => status.to_string(),
    }
}

/// This machine's name, as leases and job locks record their holder (`HOST:PID`).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}
