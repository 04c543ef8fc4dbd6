//! What the API's list of recent executions (SPEC 6, 9) asks of a store: executions newest
//! first in the order of (`createdAt`, `executionId`), narrowed by filters, read on from a
//! position rather than skipped to, so that a page costs the same at the millionth execution
//! as at the first (each backend reads it by index). The position travels as an opaque
//! cursor: base64url of `MILLIS|EXECUTIONID`.

use base64::Engine;
use chrono::{DateTime, Utc};

use super::Execution;

/// The statuses a filter may name (SPEC 4.4). Text, not `Status`: the filter is passed on to
/// the store as the store keeps it, so a status the store does not hold yet just matches
/// nothing.
pub const STATUSES: [&str; 4] = ["done", "retrying", "parked", "cancelled"];

/// A place in the order (`createdAt`, `executionId`), newest first: a page read from it holds
/// what comes strictly after it (older, or as old with a smaller id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub created_at: DateTime<Utc>,
    pub execution_id: String,
}

const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

impl Position {
    /// Where a page that ends with `execution` goes on from.
    pub fn after(execution: &Execution) -> Position {
        Position {
            created_at: execution.created_at,
            execution_id: execution.execution_id.clone(),
        }
    }

    /// The opaque text the API hands out as `next`.
    pub fn to_cursor(&self) -> String {
        let text = format!(
            "{}|{}",
            self.created_at.timestamp_millis(),
            self.execution_id
        );
        ENGINE.encode(text)
    }

    /// Reads back what `to_cursor` made; anything else is refused with the reason.
    pub fn from_cursor(cursor: &str) -> Result<Position, String> {
        let bad = |why: &str| format!("bad cursor {cursor:?}: {why}");
        let bytes = ENGINE.decode(cursor).map_err(|_| bad("not base64url"))?;
        let text = String::from_utf8(bytes).map_err(|_| bad("not a cursor of this API"))?;
        let (millis, execution_id) = text
            .split_once('|')
            .ok_or_else(|| bad("not a cursor of this API"))?;
        let created_at = millis
            .parse::<i64>()
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .ok_or_else(|| bad("not a cursor of this API"))?;
        Ok(Position {
            created_at,
            execution_id: execution_id.to_string(),
        })
    }
}

/// One page's request: every filter given must hold (`worker` matches an execution with a
/// stage by that worker); `since` is inclusive, `until` exclusive, both on `createdAt`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExecutionQuery {
    pub status: Option<String>,
    pub worker: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The cursor's position: the page starts after it; None for the first page.
    pub after: Option<Position>,
    pub limit: u32,
}

/// A page of executions, newest first, each stage without its `result` (a list of 500 with
/// large results would be megabytes); `next` is where the following page starts, None when
/// this one holds the last.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionPage {
    pub items: Vec<Execution>,
    pub next: Option<Position>,
}

impl ExecutionPage {
    /// The page from what a store read for `limit`: it reads one more than asked, and that
    /// one tells whether there is a next page, so the last page never points at an empty one.
    pub fn from_read(mut items: Vec<Execution>, limit: u32) -> ExecutionPage {
        let limit = limit as usize;
        let more = items.len() > limit;
        items.truncate(limit);
        let next = items.last().filter(|_| more).map(Position::after);
        for stage in items.iter_mut().flat_map(|e| e.stages.iter_mut()) {
            stage.result = None;
        }
        ExecutionPage { items, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_its_position() {
        let position = Position {
            created_at: DateTime::from_timestamp_millis(1_796_000_000_123).expect("a time"),
            execution_id: "a|b/ü".into(),
        };
        let cursor = position.to_cursor();
        assert!(cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(Position::from_cursor(&cursor), Ok(position));
    }

    #[test]
    fn text_that_is_not_a_cursor_is_refused() {
        for bad in ["", "%%%", "bm9waXBl", "eHx5", "OTk5OTk5OTk5OTk5OTk5OTk5fHg"] {
            assert!(Position::from_cursor(bad).is_err(), "{bad:?} accepted");
        }
    }
}
