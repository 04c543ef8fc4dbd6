//! Exec services: a program run directly (never through a shell, so message content can't
//! become a command), the input on stdin, the result on stdout. The child gets its own
//! process group so a timeout kills everything it started, not just the first process.

use std::io::ErrorKind;
use std::process::{ExitStatus, Stdio};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;

use super::{clip, parse_output, CallContext, ServiceError};
use crate::config::ExecSpec;
use crate::process;

/// How much of stderr is kept in the error of a failed run.
const STDERR_TAIL: usize = 2000;

pub async fn call(
    spec: &ExecSpec,
    input: &Value,
    ctx: CallContext<'_>,
) -> Result<Value, ServiceError> {
    let input = serde_json::to_vec(input)
        .map_err(|e| ServiceError::Failed(format!("input not serialisable: {e}")))?;
    let mut child = spawn(spec, ctx)?;
    let group = Group::of(&child);
    let run = talk(&mut child, input);
    let ran = tokio::time::timeout(spec.timeout, run).await;
    // The child exited and was reaped (or is killed and reaped below): its group id may be
    // reused from here on, so the guard must not signal it any more.
    group.disarm();
    match ran {
        Ok(result) => {
            let (status, stdout, stderr) = result?;
            outcome(status, &stdout, &stderr)
        }
        Err(_) => {
            process::kill_group(&mut child).await;
            Err(ServiceError::Timeout(spec.timeout))
        }
    }
}

/// Kills the child's process group when the call is dropped before the child was reaped: a
/// cancelled execution (SPEC 4.5) stops its service by dropping the call, and `kill_on_drop`
/// alone would kill the first process only, not what it started.
struct Group(Option<u32>);

impl Group {
    fn of(child: &Child) -> Group {
        Group(child.id())
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            process::signal_group(pid);
        }
    }
}

fn spawn(spec: &ExecSpec, ctx: CallContext<'_>) -> Result<Child, ServiceError> {
    process::command(&spec.program, &spec.args)
        .envs(&spec.env)
        .env("DPS_EXECUTION_ID", ctx.execution_id)
        .env("DPS_WORKER", ctx.worker)
        .env("DPS_SERVICE", ctx.service)
        .env("DPS_ATTEMPT", ctx.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ServiceError::Spawn {
            program: spec.program.display().to_string(),
            source,
        })
}

/// Feeds stdin and drains stdout and stderr at the same time (a child blocked on a full
/// pipe would otherwise never exit), then waits for it.
async fn talk(
    child: &mut Child,
    input: Vec<u8>,
) -> Result<(ExitStatus, Vec<u8>, Vec<u8>), ServiceError> {
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let feed = async {
        if let Some(stdin) = stdin.as_mut() {
            match stdin.write_all(&input).await {
                // A program that does not read its input is allowed to exit early.
                Err(e) if e.kind() != ErrorKind::BrokenPipe => return Err(e),
                _ => {}
            }
        }
        drop(stdin.take());
        Ok(())
    };
    let (fed, out, err) = tokio::join!(feed, read_all(stdout.as_mut()), read_all(stderr.as_mut()));
    fed?;
    let status = child.wait().await?;
    Ok((status, out?, err?))
}

async fn read_all<R: AsyncReadExt + Unpin>(pipe: Option<&mut R>) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(pipe) = pipe {
        pipe.read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

fn outcome(status: ExitStatus, stdout: &[u8], stderr: &[u8]) -> Result<Value, ServiceError> {
    if status.success() {
        return Ok(parse_output(stdout));
    }
    Err(ServiceError::Exit {
        status: process::describe(status),
        stderr_tail: clip(String::from_utf8_lossy(stderr).trim(), STDERR_TAIL, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn spec(argv: &[&str], timeout_ms: u64) -> ExecSpec {
        ExecSpec {
            program: argv[0].into(),
            args: argv[1..].iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_millis(timeout_ms),
            env: Default::default(),
        }
    }

    const CTX: CallContext<'static> = CallContext {
        execution_id: "e1",
        worker: "w",
        service: "s",
        attempt: 1,
    };

    #[tokio::test]
    async fn stdin_in_json_out() {
        let out = call(&spec(&["cat"], 5000), &json!({"a": [1]}), CTX)
            .await
            .expect("ok");
        assert_eq!(out, json!({"a": [1]}));
    }

    #[tokio::test]
    async fn environment_names_the_call() {
        let out = call(
            &spec(
                &[
                    "sh",
                    "-c",
                    "echo $DPS_EXECUTION_ID-$DPS_WORKER-$DPS_SERVICE-$DPS_ATTEMPT",
                ],
                5000,
            ),
            &json!({}),
            CTX,
        )
        .await
        .expect("ok");
        assert_eq!(out, json!("e1-w-s-1"));
    }

    #[tokio::test]
    async fn non_zero_exit_carries_stderr() {
        let err = call(
            &spec(&["sh", "-c", "echo oops >&2; exit 3"], 5000),
            &json!({}),
            CTX,
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "exited with exit status 3; stderr: oops");
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let started = std::time::Instant::now();
        let err = call(
            &spec(&["sh", "-c", "sleep 30 & sleep 30"], 300),
            &json!({}),
            CTX,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ServiceError::Timeout(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Whether `pid` still runs: not gone, and not a zombie waiting for its reaper.
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.starts_with(" Z"))
        })
    }

    /// What a cancel does (SPEC 4.5): the call is dropped mid-run, and everything the
    /// program started goes with it.
    #[tokio::test]
    async fn a_dropped_call_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pids = dir.path().join("pids");
        let script = format!("sleep 30 & echo $$ $! > {}; wait", pids.display());
        let (spec, input) = (spec(&["sh", "-c", &script], 60_000), json!({}));
        let call = call(&spec, &input, CTX);
        let started = async {
            while !std::fs::read_to_string(&pids).is_ok_and(|p| p.ends_with('\n')) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            _ = call => panic!("the program ended by itself"),
            () = started => {}
        }
        let written = std::fs::read_to_string(&pids).expect("pids");
        let pids: Vec<&str> = written.split_whitespace().collect();
        assert_eq!(pids.len(), 2, "{written:?}");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while pids.iter().any(|pid| alive(pid)) {
            assert!(std::time::Instant::now() < deadline, "{pids:?} still run");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let err = call(&spec(&["/nonexistent/x"], 1000), &json!({}), CTX)
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::Spawn { .. }), "{err}");
    }
}
