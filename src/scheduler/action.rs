//! Running a job's action once: publish messages, or run a program.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing::{info, warn};

use crate::broker::Outbox;
use crate::config::JobAction;
use crate::message::Message;
use crate::process;
use crate::store::RunOutcome;

/// Runs `action` once. A failure carries the reason recorded as the job's `failReason`; the
/// steps below return it as `Err` so that `?` ends the run at the first one.
pub async fn run(action: &JobAction, outbox: &Outbox) -> RunOutcome {
    let ran = match action {
        JobAction::Publish {
            queue,
            message,
            count,
        } => publish(outbox, queue, message, *count).await,
        JobAction::Exec {
            program,
            args,
            timeout,
        } => exec(program, args, *timeout).await,
    };
    RunOutcome::from(ran)
}

async fn publish(
    outbox: &Outbox,
    queue: &str,
    message: &serde_json::Map<String, serde_json::Value>,
    count: u32,
) -> Result<(), String> {
    for _ in 0..count {
        let mut body = message.clone();
        body.remove(crate::message::EXECUTION_ID);
        let message = Message::from_object(body).map_err(|e| e.to_string())?;
        outbox
            .publish(queue, message.to_bytes())
            .await
            .map_err(|e| format!("publish to {queue}: {e}"))?;
        info!(queue, executionId = message.execution_id(), "published");
    }
    Ok(())
}

async fn exec(
    program: &std::path::Path,
    args: &[String],
    timeout: std::time::Duration,
) -> Result<(), String> {
    let mut child = process::command(program, args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let run = async {
        tokio::join!(log_lines(stdout, "stdout"), log_lines(stderr, "stderr"));
        child.wait().await
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(process::describe(status)),
        Ok(Err(e)) => Err(format!("waiting for {}: {e}", program.display())),
        Err(_) => {
            process::kill_group(&mut child).await;
            Err(format!(
                "timed out after {}",
                humantime::format_duration(timeout)
            ))
        }
    }
}

/// Each line the program writes goes to the log as it comes.
async fn log_lines<R: AsyncRead + Unpin>(pipe: Option<R>, stream: &'static str) {
    let Some(pipe) = pipe else { return };
    let mut lines = BufReader::new(pipe).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) if stream == "stderr" => warn!(stream, "{line}"),
            Ok(Some(line)) => info!(stream, "{line}"),
            Ok(None) => return,
            Err(e) => {
                warn!(stream, "unreadable output: {e}");
                return;
            }
        }
    }
}
