//! Services: what a worker calls for each message. Three kinds behind one `call`:
//! a program (exec), an HTTP endpoint, or a compiled-in builtin. A service turns a JSON
//! input into a JSON result or fails with a [`ServiceError`].

mod builtin;
mod exec;
mod http;

use std::time::Duration;

use serde_json::Value;

use crate::config::ServiceDef;

/// What a service learns about the call besides its input (exec services get it as
/// `DPS_*` environment variables).
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub execution_id: &'a str,
    pub worker: &'a str,
    pub service: &'a str,
    pub attempt: u32,
}

/// Why a service call failed. All of them are the service's fault, not the message's:
/// the worker retries or parks the message, it never drops it.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("i/o with the service process failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("exited with {status}; stderr: {stderr_tail}")]
    Exit { status: String, stderr_tail: String },
    #[error("HTTP {status}: {body_start}")]
    HttpStatus { status: u16, body_start: String },
    #[error("HTTP request failed: {0}")]
    HttpTransport(String),
    #[error("{0}")]
    Failed(String),
}

/// Calls services; holds what is shared between calls (the HTTP connection pool).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    http: reqwest::Client,
}

impl Caller {
    pub async fn call(
        &self,
        def: &ServiceDef,
        input: &Value,
        ctx: CallContext<'_>,
    ) -> Result<Value, ServiceError> {
        match def {
            ServiceDef::Exec(spec) => exec::call(spec, input, ctx).await,
            ServiceDef::Http(spec) => http::call(&self.http, spec, input).await,
            ServiceDef::Builtin(builtin) => builtin::call(builtin, input).await,
        }
    }
}

/// A service's output as a result: JSON when it parses, else the trimmed text as a string.
fn parse_output(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).trim().to_string()))
}

/// At most `max` bytes of `text` from its start or end, cut on a character boundary.
fn clip(text: &str, max: usize, from_end: bool) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut cut = if from_end { text.len() - max } else { max };
    while !text.is_char_boundary(cut) {
        cut = if from_end { cut + 1 } else { cut - 1 };
    }
    if from_end {
        format!("…{}", &text[cut..])
    } else {
        format!("{}…", &text[..cut])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_json_or_trimmed_text() {
        assert_eq!(parse_output(b"{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(parse_output(b"hello \n"), Value::String("hello".into()));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("abc", 5, true), "abc");
        assert_eq!(clip("abcdef", 2, true), "…ef");
        assert_eq!(clip("abcdef", 2, false), "ab…");
        assert_eq!(clip("ééé", 3, false), "é…");
    }
}
