//! `GET /api/history?minutes=` (SPEC 6, 9): each worker's points of the last minutes, from
//! the ring the daemon keeps (`crate::history`), for the dashboard's charts.

use actix_web::{get, web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;

use super::{ApiError, State};
use crate::history::{CAPACITY, INTERVAL};

/// The most that is kept, and what is shown when `minutes` is not given.
const MAX_MINUTES: u32 = (CAPACITY as u32 * INTERVAL.as_secs() as u32) / 60;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    minutes: Option<String>,
}

#[get("/api/history")]
async fn history(
    state: web::Data<State>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let minutes = minutes(query.minutes.as_deref()).map_err(ApiError::BadRequest)?;
    let after = Utc::now() - chrono::Duration::minutes(i64::from(minutes));
    let workers = state
        .history
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .since(after);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "intervalSeconds": INTERVAL.as_secs(),
        "workers": workers,
    })))
}

fn minutes(text: Option<&str>) -> Result<u32, String> {
    let Some(text) = text else {
        return Ok(MAX_MINUTES);
    };
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_MINUTES).contains(&n) => Ok(n),
        _ => Err(format!(
            "minutes must be a whole number between 1 and {MAX_MINUTES}, not {text:?}"
        )),
    }
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(history);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_are_one_to_sixty_and_sixty_by_default() {
        assert_eq!(minutes(None), Ok(60));
        assert_eq!(minutes(Some("1")), Ok(1));
        for bad in ["0", "61", "-1", "", "1.5", "ten"] {
            assert!(minutes(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
