//! `dpsd health [--url URL] [--ready]`: probes a running daemon's `/livez` (or `/readyz`),
//! for a container's HEALTHCHECK in an image that has no curl. It exits 0 when the probe
//! answers 200 and 1 otherwise, never 2: Docker reserves that code.

use std::time::Duration;

use super::{Failure, Global};

/// The whole probe (connect, request, answer) gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Probes `url` (by default the configured `api.listen`) and fails unless it answers 200.
pub async fn health(global: &Global, url: Option<&str>, ready: bool) -> Result<(), Failure> {
    let path = if ready { "/readyz" } else { "/livez" };
    let base = match url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => configured_base(global)?,
    };
    let url = format!("{base}{path}");
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot make an HTTP client: {e}"))?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {}", with_causes(&e)))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        println!("{url}: {status} {body}");
        Ok(())
    } else {
        Err(anyhow::anyhow!("{url}: {status} {body}").into())
    }
}

/// "error sending request: connection refused": reqwest's own text names the step only.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text = format!("{text}: {e}");
        cause = e.source();
    }
    text
}

/// `http://` and `api.listen`, with a wildcard address (`0.0.0.0`, `[::]`) asked on
/// loopback. A configuration that does not load is a failed probe (exit 1), not a usage
/// error: the HEALTHCHECK must never exit 2.
fn configured_base(global: &Global) -> Result<String, Failure> {
    let config = global
        .config()
        .map_err(|e| anyhow::anyhow!("cannot find api.listen: {e}"))?;
    Ok(format!(
        "http://{}",
        probe_address(&config.settings.api.listen)
    ))
}

fn probe_address(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::probe_address;

    #[test]
    fn a_wildcard_listen_address_is_probed_on_loopback() {
        assert_eq!(probe_address("0.0.0.0:3000"), "127.0.0.1:3000");
        assert_eq!(probe_address("[::]:3000"), "[::1]:3000");
        assert_eq!(probe_address("127.0.0.1:3001"), "127.0.0.1:3001");
        assert_eq!(probe_address("localhost:3000"), "localhost:3000");
    }
}
