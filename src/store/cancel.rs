//! What cancelling an execution (SPEC 4.5) asks of a store: one atomic mark, and a query
//! by index of the marks made since a point, which every replica polls. Whether a delivery
//! is skipped or a running service stopped is the worker's decision, not the store's.

use chrono::{DateTime, Utc};

/// The execution's `error` once it is cancelled: its stages keep the earlier errors.
pub const CANCELLED_ERROR: &str = "cancelled through the API";

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// Marked cancelled now; `known` is false for an executionId the store had not seen
    /// (a message of it still waiting in a queue is cancelled when it arrives).
    Cancelled { known: bool },
    /// It was cancelled before: nothing changed.
    AlreadyCancelled,
    /// Done at the end of its chain: nothing changed, there is nothing left to stop.
    Finished,
}

/// One cancelled execution as the replicas poll it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub execution_id: String,
    pub cancelled_at: DateTime<Utc>,
}
