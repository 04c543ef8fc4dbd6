//! The list of recent executions in the embedded store (SPEC 6), by index at any size:
//! `job_state_by_creation` (`created_at`, `execution_id`) for the plain list, the time
//! range and `done`, `job_state_unfinished_by_status` (`status`, `created_at`,
//! `execution_id`, only rows not `done`) for any other status, and the side table
//! `execution_workers` for a worker. The status index leaves `done` out because nearly every
//! row is `done` and every stage rewrites the status: with them in, each stage write moved
//! an index entry; without them, a chain that succeeds never touches that index, and a page
//! of `done` is read down the creation index, where nearly every row read is one.
//!
//! A worker's stages are JSON lines in the row's `stages_log`, which no index can reach, so
//! each stage record also adds its (worker, created_at, execution_id) to the side table,
//! once per worker and execution (the key is the whole row; a retry adds nothing): the
//! entries of one worker sort by time and a new one goes at the end of its range, a cheap
//! B-tree append. A trigger removes an execution's entries with it, whatever deletes it.
//! Files from before get the table filled from their stages once, when it is created.
//!
//! `DPSD_BENCH_WITHOUT_LIST_INDEXES=1` leaves all of this but the creation index out of a
//! new file, for `make bench` to measure what it costs the chain; nothing else sets it.

use rusqlite::{Connection, OptionalExtension, ToSql};

use super::executions::{head_row, legacy_stages, RawHead, HEAD_COLUMNS};
use super::{ts, EmbeddedStore};
use crate::store::{Execution, ExecutionPage, ExecutionQuery, StoreError};

const WITHOUT: &str = "DPSD_BENCH_WITHOUT_LIST_INDEXES";

/// An execution's stage log as one JSON array (its lines joined with commas), for SQL.
macro_rules! log_as_array {
    ($log:literal) => {
        concat!(
            "'[' || replace(rtrim(COALESCE(",
            $log,
            ", ''), char(10)), char(10), ',') || ']'"
        )
    };
}

/// The rows the status index holds; repeated, literally, in the queries read by it (SQLite
/// uses a partial index only for a query whose WHERE implies the index's; should the two
/// part, `INDEXED BY` fails to plan and `each_plan_reads_by_index_in_order` with it).
const UNFINISHED: &str = "j.status <> 'done'";

/// `job_state_by_status` (every row, before the partial index) is dropped where found. The
/// creation index is the schema's (retention walks it too), so the bench's run without
/// these keeps it.
const INDEXES: &str = "
DROP INDEX IF EXISTS job_state_by_status;
CREATE INDEX IF NOT EXISTS job_state_unfinished_by_status ON job_state (status, created_at, execution_id)
    WHERE status <> 'done';";

const WORKERS_TABLE: &str = "
CREATE TABLE execution_workers (
    worker TEXT NOT NULL, created_at TEXT NOT NULL, execution_id TEXT NOT NULL,
    PRIMARY KEY (worker, created_at, execution_id)) WITHOUT ROWID;";

const FILL: &str = concat!(
    "INSERT OR IGNORE INTO execution_workers (worker, created_at, execution_id)
       SELECT json_extract(l.value, '$.worker'), j.created_at, j.execution_id
       FROM job_state j, json_each(",
    log_as_array!("j.stages_log"),
    ") l WHERE j.stages_log IS NOT NULL AND json_valid(",
    log_as_array!("j.stages_log"),
    ");
     INSERT OR IGNORE INTO execution_workers (worker, created_at, execution_id)
       SELECT s.worker, j.created_at, j.execution_id FROM stages s JOIN job_state j USING (execution_id);"
);

const TRIGGER: &str = concat!(
    "CREATE TRIGGER IF NOT EXISTS execution_workers_follow AFTER DELETE ON job_state BEGIN
       DELETE FROM execution_workers
       WHERE created_at = OLD.created_at AND execution_id = OLD.execution_id AND worker IN (
         SELECT json_extract(value, '$.worker') FROM json_each(CASE WHEN json_valid(",
    log_as_array!("OLD.stages_log"),
    ") THEN ",
    log_as_array!("OLD.stages_log"),
    " ELSE '[]' END)
         UNION SELECT worker FROM stages WHERE execution_id = OLD.execution_id);
     END;"
);

/// Whether this process keeps the list's indexes (always, but in the bench's comparison).
pub fn indexed() -> bool {
    std::env::var_os(WITHOUT).is_none_or(|v| v.is_empty())
}

/// Creates the indexes, the side table (filled from the stages already there) and its
/// trigger, where missing; called inside the schema's transaction.
pub fn create(c: &Connection) -> rusqlite::Result<()> {
    if !indexed() {
        return Ok(());
    }
    c.execute_batch(INDEXES)?;
    let present = c
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'execution_workers'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !present {
        c.execute_batch(WORKERS_TABLE)?;
        c.execute_batch(FILL)?;
    }
    c.execute_batch(TRIGGER)
}

/// The side-table entry of a stage just recorded, in the same transaction, with the
/// `created_at` its row's UPSERT returned (no second lookup of the row).
pub fn index_stage(
    c: &Connection,
    execution_id: &str,
    worker: &str,
    created_at: &str,
) -> rusqlite::Result<usize> {
    if !indexed() {
        return Ok(0);
    }
    c.prepare_cached(
        "INSERT OR IGNORE INTO execution_workers (worker, created_at, execution_id) VALUES (?1, ?2, ?3)",
    )?
    .execute([worker, created_at, execution_id])
}

/// How a page is read: which index leads, the others' conditions checked on its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Newest first over all executions; for `done` too, which nearly every row is.
    All,
    /// Down one status's range of the unfinished index. Taken for any status but `done`
    /// even with a worker: those are the rare ones, so few rows are read to find a page.
    Status,
    /// Down one worker's range in `execution_workers`; with `done` (the common status) too.
    Worker,
}

fn plan(query: &ExecutionQuery) -> Plan {
    match (query.status.as_deref(), query.worker.is_some()) {
        (None, false) | (Some("done"), false) => Plan::All,
        (Some("done"), true) => Plan::Worker,
        (Some(_), _) => Plan::Status,
        (None, true) => Plan::Worker,
    }
}

fn sql(plan: Plan, query: &ExecutionQuery) -> String {
    let head = HEAD_COLUMNS
        .split(", ")
        .map(|column| format!("j.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (from, key) = match plan {
        Plan::All => ("job_state j INDEXED BY job_state_by_creation", "j"),
        Plan::Status => ("job_state j INDEXED BY job_state_unfinished_by_status", "j"),
        Plan::Worker => (
            "execution_workers w CROSS JOIN job_state j ON j.execution_id = w.execution_id",
            "w",
        ),
    };
    let mut conditions = vec![
        format!("({key}.created_at, {key}.execution_id) < (:at, :id)"),
        format!("{key}.created_at >= :since"),
    ];
    if plan == Plan::Worker {
        conditions.push("w.worker = :worker".into());
    }
    if plan == Plan::Status {
        conditions.push(UNFINISHED.into());
    }
    if query.status.is_some() {
        conditions.push("j.status = :status".into());
    }
    if plan == Plan::Status && query.worker.is_some() {
        conditions.push(
            "EXISTS (SELECT 1 FROM execution_workers w WHERE w.worker = :worker
               AND w.created_at = j.created_at AND w.execution_id = j.execution_id)"
                .into(),
        );
    }
    format!(
        "SELECT {head} FROM {from} WHERE {} ORDER BY {key}.created_at DESC, {key}.execution_id DESC LIMIT :limit",
        conditions.join(" AND ")
    )
}

/// Where the page starts: before the cursor and before `until`, whichever comes first (as
/// a position, `until` is (until, ""): every id sorts after "").
fn upper_bound(query: &ExecutionQuery) -> (String, String) {
    // Above every stored time ('~' sorts after the digits).
    let mut bound = ("~".to_string(), String::new());
    if let Some(until) = query.until {
        bound = (ts(until), String::new());
    }
    if let Some(after) = &query.after {
        let cursor = (ts(after.created_at), after.execution_id.clone());
        bound = bound.min(cursor);
    }
    bound
}

pub async fn list(
    store: &EmbeddedStore,
    query: &ExecutionQuery,
) -> Result<ExecutionPage, StoreError> {
    let sql = sql(plan(query), query);
    let (at, id) = upper_bound(query);
    let since = query.since.map(ts).unwrap_or_default();
    let (status, worker) = (query.status.clone(), query.worker.clone());
    let (limit, read) = (query.limit, i64::from(query.limit) + 1);
    let rows = store
        .read(move |c| {
            let mut bound: Vec<(&str, &dyn ToSql)> = vec![
                (":at", &at),
                (":id", &id),
                (":since", &since),
                (":limit", &read),
            ];
            if let Some(status) = &status {
                bound.push((":status", status));
            }
            if let Some(worker) = &worker {
                bound.push((":worker", worker));
            }
            let mut statement = c.prepare_cached(&sql)?;
            let heads = statement
                .query_map(bound.as_slice(), head_row)?
                .collect::<rusqlite::Result<Vec<RawHead>>>()?;
            heads
                .into_iter()
                .map(|head| Ok((legacy_stages(c, &head.execution_id)?, head)))
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await?;
    let items = rows
        .into_iter()
        .map(|(legacy, head)| head.into_execution(legacy))
        .collect::<Result<Vec<Execution>, _>>()?;
    Ok(ExecutionPage::from_read(items, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every plan reads by its index, never by a scan of the table or a sort of the rows.
    #[test]
    fn each_plan_reads_by_index_in_order() {
        let c = Connection::open_in_memory().expect("open");
        super::super::schema::create(&c).expect("schema");
        let query = |status: Option<&str>, worker: Option<&str>| ExecutionQuery {
            status: status.map(str::to_string),
            worker: worker.map(str::to_string),
            limit: 50,
            ..ExecutionQuery::default()
        };
        for query in [
            query(None, None),
            query(Some("done"), None),
            query(Some("parked"), None),
            query(None, Some("w")),
            query(Some("done"), Some("w")),
            query(Some("parked"), Some("w")),
        ] {
            let sql = format!("EXPLAIN QUERY PLAN {}", sql(plan(&query), &query));
            let mut statement = c.prepare(&sql).expect("prepares");
            let steps = statement
                .query_map(
                    [
                        (":at", "~"),
                        (":id", ""),
                        (":since", ""),
                        (":limit", "51"),
                        (":status", "done"),
                        (":worker", "w"),
                    ]
                    .iter()
                    .filter(|(name, _)| sql.contains(name))
                    .map(|(name, value)| (*name, value as &dyn ToSql))
                    .collect::<Vec<_>>()
                    .as_slice(),
                    |r| r.get::<_, String>(3),
                )
                .expect("plans")
                .collect::<rusqlite::Result<Vec<_>>>()
                .expect("plan rows");
            let plan = steps.join("; ");
            assert!(!plan.contains("TEMP B-TREE"), "{query:?} sorts: {plan}");
            assert!(
                !steps
                    .iter()
                    .any(|s| s.starts_with("SCAN j") && !s.contains("INDEX")),
                "{query:?} scans the table: {plan}"
            );
            assert!(
                !steps
                    .iter()
                    .any(|s| s.contains("SCAN w") && !s.contains("USING")),
                "{query:?} scans the workers: {plan}"
            );
        }
    }

    /// A file with the status index of the first list (every row) has it replaced by the
    /// partial one when opened.
    #[test]
    fn a_file_with_the_full_status_index_gets_the_partial_one() {
        let c = Connection::open_in_memory().expect("open");
        super::super::schema::create(&c).expect("schema");
        c.execute_batch(
            "DROP INDEX job_state_unfinished_by_status;
             CREATE INDEX job_state_by_status ON job_state (status, created_at, execution_id);",
        )
        .expect("the earlier index");
        super::super::schema::create(&c).expect("schema again");
        let indexes: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%status%'")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("index names");
        assert_eq!(indexes, ["job_state_unfinished_by_status"]);
    }

    /// A file from before the side table (its stages in the log and in the legacy table)
    /// gets it filled when opened: its executions are found by worker.
    #[tokio::test]
    async fn a_file_from_before_finds_its_executions_by_worker() {
        use crate::store::{Stage, Status, Store};
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            EmbeddedStore::open(dir.path(), crate::config::StateSync::Normal).expect("open");
        let now = chrono::Utc::now();
        let stage = Stage {
            worker: "logged".into(),
            state: 1,
            status: Status::Done,
            attempts: 1,
            stages_passed: 0,
            started_at: now,
            finished_at: now,
            duration_ms: 0,
            error: None,
            result: Some(serde_json::json!("a\nb")),
        };
        store.record_stage("old", &stage).await.expect("write");
        drop(store);
        let file = dir.path().join(crate::store::EMBEDDED_FILE);
        let c = Connection::open(&file).expect("open");
        c.execute_batch(
            "DROP TRIGGER execution_workers_follow; DROP TABLE execution_workers;
             INSERT INTO stages (execution_id, worker, state, status, attempts, started_at,
               finished_at, duration_ms) VALUES ('old', 'legacy', 1, 'done', 1,
               '2026-11-29T03:11:35.838Z', '2026-11-29T03:11:35.838Z', 0);",
        )
        .expect("a file of before");
        drop(c);
        let store =
            EmbeddedStore::open(dir.path(), crate::config::StateSync::Normal).expect("migrated");
        for worker in ["logged", "legacy"] {
            let query = ExecutionQuery {
                worker: Some(worker.into()),
                limit: 10,
                ..ExecutionQuery::default()
            };
            let page = store.list_executions(&query).await.expect("list");
            let found: Vec<&str> = page.items.iter().map(|e| e.execution_id.as_str()).collect();
            assert_eq!(found, ["old"], "by {worker}");
        }
    }

    /// The side table holds no entry of a deleted execution (a join would hide it, but the
    /// table would only grow).
    #[tokio::test]
    async fn a_deleted_execution_takes_its_entries_with_it() {
        use crate::store::{Stage, Status, Store};
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            EmbeddedStore::open(dir.path(), crate::config::StateSync::Normal).expect("open");
        let now = chrono::Utc::now();
        for (worker, passed) in [("a", 0), ("b", 1), ("b", 1)] {
            let stage = Stage {
                worker: worker.into(),
                state: 1,
                status: Status::Done,
                attempts: 1,
                stages_passed: passed,
                started_at: now,
                finished_at: now,
                duration_ms: 0,
                error: None,
                result: None,
            };
            store.record_stage("x", &stage).await.expect("write");
        }
        let entries = |store: &EmbeddedStore| {
            let c = Connection::open(&store.path).expect("open");
            c.query_row("SELECT count(*) FROM execution_workers", [], |r| {
                r.get::<_, i64>(0)
            })
            .expect("count")
        };
        assert_eq!(entries(&store), 2);
        let far = now + chrono::Duration::hours(1);
        let aged = store.aged(None, far, 10).await.expect("scan");
        assert_eq!(store.delete_executions(&aged).await.expect("delete"), 1);
        assert_eq!(entries(&store), 0);
    }
}
