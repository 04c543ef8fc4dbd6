//! `GET /api/executions` (SPEC 6, 9): recent executions, newest first, filtered and paged by
//! cursor. The parameters are read here into a store query, each refused with a 400 that
//! names it (an empty one too: leave out what does not filter).

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, State};
use crate::store::{ExecutionPage, ExecutionQuery, Position, STATUSES};

/// Items per page when `limit` is not given, and the most a page may hold.
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    status: Option<String>,
    worker: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[get("/api/executions")]
async fn list(
    state: web::Data<State>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let query = query(params.into_inner()).map_err(ApiError::BadRequest)?;
    let page = state.store.list_executions(&query).await?;
    Ok(HttpResponse::Ok().json(answer(page)))
}

/// The parameter's value, refused when empty.
fn given(name: &str, value: Option<String>) -> Result<Option<String>, String> {
    match value {
        Some(v) if v.is_empty() => Err(format!("{name} must not be empty (leave it out)")),
        other => Ok(other),
    }
}

fn query(params: ListParams) -> Result<ExecutionQuery, String> {
    let status = given("status", params.status)?;
    if let Some(status) = &status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(format!(
                "status {status:?} is none of {}",
                STATUSES.join(", ")
            ));
        }
    }
    let since = given("since", params.since)?;
    let since = since.map(|t| time("since", &t)).transpose()?;
    let until = given("until", params.until)?;
    let until = until.map(|t| time("until", &t)).transpose()?;
    if let (Some(since), Some(until)) = (since, until) {
        if since > until {
            return Err("since must not be after until".into());
        }
    }
    Ok(ExecutionQuery {
        status,
        worker: given("worker", params.worker)?,
        since,
        until,
        after: given("cursor", params.cursor)?
            .map(|c| Position::from_cursor(&c))
            .transpose()?,
        limit: limit(given("limit", params.limit)?)?,
    })
}

fn limit(text: Option<String>) -> Result<u32, String> {
    let Some(text) = text else {
        return Ok(DEFAULT_LIMIT);
    };
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "limit must be a whole number between 1 and {MAX_LIMIT}, not {text:?}"
        )),
    }
}

/// An RFC 3339 time with its zone (`2026-12-02T10:00:00Z`, `...+01:00`). A `+` left
/// unencoded in a URL arrives as a space: an offset after a space is read as one.
fn time(name: &str, text: &str) -> Result<DateTime<Utc>, String> {
    let parse = |t: &str| DateTime::parse_from_rfc3339(t).map(|t| t.with_timezone(&Utc));
    parse(text)
        .or_else(|e| match text.rsplit_once(' ') {
            Some((at, offset)) => parse(&format!("{at}+{offset}")).map_err(|_| e),
            None => Err(e),
        })
        .map_err(|e| format!("{name} {text:?} is not an RFC 3339 time ({e})"))
}

/// `{"items": [...], "next": cursor or null}`; each stage without `result`.
fn answer(page: ExecutionPage) -> Value {
    let items: Vec<Value> = page
        .items
        .iter()
        .map(|execution| {
            let mut item = serde_json::to_value(execution).unwrap_or(Value::Null);
            if let Some(stages) = item.get_mut("stages").and_then(Value::as_array_mut) {
                for stage in stages.iter_mut().filter_map(Value::as_object_mut) {
                    stage.remove("result");
                }
            }
            item
        })
        .collect();
    serde_json::json!({
        "items": items,
        "next": page.next.map(|p| p.to_cursor()),
    })
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(list);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> ListParams {
        let text: Vec<String> = pairs
            .iter()
            .map(|(name, value)| format!("{name}={}", value.replace(' ', "+")))
            .collect();
        web::Query::<ListParams>::from_query(&text.join("&"))
            .expect("known parameters")
            .into_inner()
    }

    #[test]
    fn no_parameters_is_the_newest_fifty() {
        assert_eq!(
            query(params(&[])),
            Ok(ExecutionQuery {
                limit: 50,
                ..ExecutionQuery::default()
            })
        );
    }

    #[test]
    fn each_bad_parameter_is_named() {
        let refused = |pairs: &[(&str, &str)]| query(params(pairs)).err().unwrap_or_default();
        assert!(refused(&[("limit", "0")]).starts_with("limit must be"));
        assert!(refused(&[("limit", "501")]).starts_with("limit must be"));
        assert!(refused(&[("limit", "-1")]).starts_with("limit must be"));
        assert!(refused(&[("status", "lost")]).starts_with("status \"lost\" is none of"));
        assert!(refused(&[("since", "yesterday")]).starts_with("since \"yesterday\""));
        assert!(refused(&[("until", "2026-13-01T00:00:00Z")]).starts_with("until"));
        assert!(refused(&[("cursor", "nope")]).starts_with("bad cursor"));
        assert!(refused(&[("worker", "")]).starts_with("worker must not be empty"));
        let backwards = [
            ("since", "2026-12-02T10:00:00Z"),
            ("until", "2026-12-02T09:00:00Z"),
        ];
        assert_eq!(refused(&backwards), "since must not be after until");
    }

    #[test]
    fn good_parameters_become_the_query() {
        let q = query(params(&[
            ("status", "cancelled"),
            ("worker", "geo"),
            ("since", "2026-12-02T11:00:00 01:00"),
            ("limit", "500"),
        ]))
        .expect("a good query");
        assert_eq!(q.status.as_deref(), Some("cancelled"));
        assert_eq!(q.worker.as_deref(), Some("geo"));
        assert_eq!(
            q.since.map(|t| t.to_rfc3339()),
            Some("2026-12-02T10:00:00+00:00".into())
        );
        assert_eq!(q.limit, 500);
    }
}
