//! HTTP services: the input as a JSON body; a 2xx body is the result.

use serde_json::Value;

use super::{clip, parse_output, ServiceError};
use crate::config::HttpSpec;

/// How much of an error response's body is kept in the error.
const BODY_START: usize = 500;

pub async fn call(
    client: &reqwest::Client,
    spec: &HttpSpec,
    input: &Value,
) -> Result<Value, ServiceError> {
    let mut request = client
        .request(spec.method.clone(), spec.url.clone())
        .timeout(spec.timeout)
        .json(input);
    for (name, value) in &spec.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| transport_error(e, spec))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| transport_error(e, spec))?;
    if status.is_success() {
        Ok(parse_output(&body))
    } else {
        Err(ServiceError::HttpStatus {
            status: status.as_u16(),
            body_start: clip(&String::from_utf8_lossy(&body), BODY_START, false),
        })
    }
}

fn transport_error(error: reqwest::Error, spec: &HttpSpec) -> ServiceError {
    if error.is_timeout() {
        ServiceError::Timeout(spec.timeout)
    } else {
        // reqwest's Display includes the URL; strip any user:password from it.
        ServiceError::HttpTransport(
            error.without_url().to_string() + &format!(" ({})", redacted(&spec.url)),
        )
    }
}

fn redacted(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}
