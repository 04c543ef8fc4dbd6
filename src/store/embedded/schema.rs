//! The embedded store's tables, one per kind of record, and their creation. Files written by
//! earlier versions open unchanged: creation only adds what is missing (`IF NOT EXISTS`), and
//! the text below is what SQLite keeps in `sqlite_master` for a new file, so a changed
//! column is a migration of its own, never an edit here.

use rusqlite::Connection;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS job_state (
    execution_id TEXT PRIMARY KEY, state INTEGER, status TEXT NOT NULL, worker TEXT NOT NULL,
    attempts INTEGER NOT NULL, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, execution_id TEXT NOT NULL, worker TEXT NOT NULL,
    state INTEGER NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL, duration_ms INTEGER NOT NULL, error TEXT, result TEXT);
CREATE INDEX IF NOT EXISTS stages_by_execution ON stages (execution_id, seq);
CREATE TABLE IF NOT EXISTS failed_messages (
    id TEXT PRIMARY KEY, encoding TEXT NOT NULL, body TEXT NOT NULL, worker TEXT NOT NULL,
    queue TEXT NOT NULL, execution_id TEXT, attempts INTEGER NOT NULL, error TEXT NOT NULL,
    first_failed_at TEXT NOT NULL, last_failed_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS failed_by_worker ON failed_messages (worker, first_failed_at);
CREATE INDEX IF NOT EXISTS failed_by_time ON failed_messages (first_failed_at);
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY, schedule TEXT, type TEXT NOT NULL, active INTEGER NOT NULL,
    next_run_at TEXT, last_run_at TEXT, last_finished_at TEXT, last_status TEXT,
    fail_count INTEGER NOT NULL DEFAULT 0, fail_reason TEXT, locked_at TEXT, locked_by TEXT);
CREATE INDEX IF NOT EXISTS job_state_by_age ON job_state (updated_at, execution_id);
CREATE INDEX IF NOT EXISTS failed_by_execution ON failed_messages (execution_id);
CREATE INDEX IF NOT EXISTS failed_by_last_failure ON failed_messages (last_failed_at);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until TEXT NOT NULL);
";

/// Creates what is missing in one write transaction: processes opening a fresh file at once
/// take turns (the busy handler waits) instead of racing to create the same tables.
pub fn create(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))
}
