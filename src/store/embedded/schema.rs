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
CREATE INDEX IF NOT EXISTS failed_by_execution ON failed_messages (execution_id);
CREATE INDEX IF NOT EXISTS failed_by_last_failure ON failed_messages (last_failed_at);
CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS worker_pauses (worker TEXT PRIMARY KEY, paused_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rate_starts (worker TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS rate_starts_by_worker ON rate_starts (worker, at);
";

/// Columns added after a table was first shipped, in the order they came: (table, column,
/// its type and default). A file without one gets it by `ALTER TABLE ... ADD COLUMN`, so a
/// file written by an earlier version opens with its rows kept and the new fields at their
/// defaults.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    // Issue 19: the zone cron fields are read in; NULL reads as UTC.
    ("jobs", "timezone", "TEXT"),
    // Issue 19: what to do about missed occurrences; NULL reads as `once`.
    ("jobs", "catch_up", "TEXT"),
    // Issue 19: paused through the API, on every host sharing the file.
    ("jobs", "paused", "INTEGER NOT NULL DEFAULT 0"),
    // Issue 16: how far along the chain each record is (SPEC 4.2: job state only moves
    // forward). `stages_passed` of job_state is that of the stage its summary comes from,
    // and `state_stages_passed` that of the done stage its `state` comes from; NULL in rows
    // written before, which any new record then overrides.
    ("job_state", "stages_passed", "INTEGER"),
    ("job_state", "state_stages_passed", "INTEGER"),
    ("stages", "stages_passed", "INTEGER NOT NULL DEFAULT 0"),
    (
        "failed_messages",
        "stages_passed",
        "INTEGER NOT NULL DEFAULT 0",
    ),
    // Issue 16: the stages of an execution as JSON lines in its own row (a stage write is
    // then one row, not a row in `stages` and its index entry besides); `stages` is still
    // read for the stages recorded before.
    ("job_state", "stages_log", "TEXT"),
    // Issue 20: when the execution was cancelled (SPEC 4.5); NULL for one that was not.
    ("job_state", "cancelled_at", "TEXT"),
];

/// Indexes added after their tables shipped, made after the columns exist, so an old file
/// gets them too. The partial index holds the cancelled executions only, so the replicas'
/// poll of it reads a handful of entries whatever the table's size. The creation index
/// serves the list and the pruner's walk (which used `job_state_by_age` before issue 16:
/// every stage moved that entry, so files that have it lose it).
const ADDED_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS job_state_by_cancel ON job_state (cancelled_at)
    WHERE cancelled_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS job_state_by_creation ON job_state (created_at, execution_id);
DROP INDEX IF EXISTS job_state_by_age;
";

/// Creates what is missing in one write transaction: processes opening a fresh file at once
/// take turns (the busy handler waits) instead of racing to create the same tables or add
/// the same columns.
pub fn create(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA}"))?;
    match add_columns(connection)
        .and_then(|()| connection.execute_batch(ADDED_INDEXES))
        .and_then(|()| super::list::create(connection))
    {
        Ok(()) => connection.execute_batch("COMMIT;"),
        Err(e) => {
            let _ = connection.execute_batch("ROLLBACK;");
            Err(e)
        }
    }
}

fn add_columns(connection: &Connection) -> rusqlite::Result<()> {
    for (table, column, kind) in ADDED_COLUMNS {
        let mut columns = connection.prepare(&format!("PRAGMA table_info({table})"))?;
        let present = columns
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .iter()
            .any(|name| name == column);
        if !present {
            connection
                .execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {kind};"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_an_earlier_version_gets_the_new_columns_and_keeps_its_rows() {
        let connection = Connection::open_in_memory().expect("open");
        connection
            .execute_batch(
                "CREATE TABLE jobs (
                    name TEXT PRIMARY KEY, schedule TEXT, type TEXT NOT NULL, active INTEGER NOT NULL,
                    next_run_at TEXT, last_run_at TEXT, last_finished_at TEXT, last_status TEXT,
                    fail_count INTEGER NOT NULL DEFAULT 0, fail_reason TEXT, locked_at TEXT, locked_by TEXT);
                 INSERT INTO jobs (name, type, active) VALUES ('old', 'manual', 1);",
            )
            .expect("an old file");
        create(&connection).expect("migrated");
        create(&connection).expect("a second open changes nothing");
        let (name, zone): (String, Option<String>) = connection
            .query_row("SELECT name, timezone FROM jobs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("the old row");
        assert_eq!((name.as_str(), zone), ("old", None));
    }

    #[test]
    fn a_file_with_the_update_time_index_loses_it_and_gets_the_creation_index() {
        let connection = Connection::open_in_memory().expect("open");
        create(&connection).expect("a new file");
        connection
            .execute_batch(
                "DROP INDEX job_state_by_creation;
                 CREATE INDEX job_state_by_age ON job_state (updated_at, execution_id);",
            )
            .expect("the indexes of a file from before issue 16");
        create(&connection).expect("migrated");
        let indexes: Vec<String> = connection
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'job_state_by_%' ORDER BY name")
            .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
            .expect("the indexes");
        assert_eq!(indexes, ["job_state_by_cancel", "job_state_by_creation"]);
    }
}
