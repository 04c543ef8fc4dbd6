//! What retention (SPEC 3.2) asks of a store: the executions last updated before a cut-off,
//! walked in the order they were created, from a cursor, so the pruner can take the old ones
//! in small steps and never scan the same rows twice in one pass; and the sizes `/metrics`
//! shows. The decisions (which of them go) are the pruner's, not the store's.
//!
//! Creation order, not update order: an execution is created no later than it was last
//! updated, so the ones updated before the cut-off are all among those created before it,
//! and the walk can go down the list's creation index. An index on the update time would
//! be rewritten by every stage, which records one (issue 16 measured that entry as a
//! share of each stage write); the creation index is written once per execution.

use chrono::{DateTime, Utc};

use super::Status;

/// An execution as the pruner sees it: enough to apply the rules, and to delete it only if
/// nothing updated it since it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Aged {
    pub execution_id: String,
    pub status: Status,
    pub worker: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Aged {
    /// Where a scan that read this one goes on from.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            created_at: self.created_at,
            execution_id: self.execution_id.clone(),
        }
    }
}

/// A position in the order of (`createdAt`, `executionId`): a scan returns what comes after.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub execution_id: String,
}

/// How much a store holds, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub executions: u64,
    pub failed: u64,
    /// The embedded file's size on disk (with its write-ahead log); None for MongoDB.
    pub file_bytes: Option<u64>,
}
