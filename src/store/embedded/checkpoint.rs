//! Folding the write-ahead log back into the file (a checkpoint), and writing the log out
//! to disk as it grows, on a thread of its own rather than in a commit.
//!
//! SQLite's automatic checkpoint ran inside the commit that found the log at 10,000 pages,
//! and began by flushing the whole log: 40 MB written to the disk at once (25–35 ms here).
//! While it went out, RabbitMQ's own flushes (its publisher confirms) and the other
//! processes' writes queued behind it on the same disk, and that commit's runtime held every
//! message behind it: at 2,000 msg/s the chain's p99 was 30 ms, against 7.5 ms with no
//! checkpoint at all (docs/BENCHMARKS.md). Moving the checkpoint to a thread alone did not
//! help (24 ms): the burst of writes is what hurt, not where it waited.
//!
//! So the writing connection gets SQLite's WAL hook in place of the automatic checkpoint.
//! After each commit the hook learns how many pages the log holds and wakes this process's
//! thread: each time the log passes another `FLUSH_PAGES`, to have the kernel write those
//! pages out (4 MB at a time), and at `lock::WAL_PAGES`, to run a `PASSIVE` checkpoint on a
//! connection of its own, which then finds little left to flush. A passive checkpoint takes
//! no lock a writer needs, so commits here and in the other processes go on meanwhile; the
//! log starts again from its beginning at the first commit after it caught up. Every process
//! that writes the file has its thread, so the log stays bounded with or without the daemon.
//! A kill -9 at any point is SQLite's usual case: the log is the truth until checkpointed.

use std::ffi::{c_char, c_int, c_void};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};

use rusqlite::{ffi, Connection};

use super::lock;
use crate::config::StateSync;

/// The writing connection, with the hook that wakes the checkpoint thread.
pub struct Writing {
    // Declared first, so dropped first: SQLite calls the hook with `wake` until the
    // connection is closed.
    connection: Connection,
    /// Where the hook's argument points; boxed so that its address stays put.
    _wake: Option<Box<Wake>>,
}

/// What the hook needs: the log's sizes that wake the thread, and how to wake it.
struct Wake {
    /// A checkpoint is due at this many pages.
    pages: c_int,
    /// The pages in the log after the last commit, to see it pass a multiple of FLUSH_PAGES.
    last: AtomicI32,
    thread: SyncSender<Due>,
}

/// What the thread is woken for; a checkpoint flushes the log too, so it ranks above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    /// The log grew by FLUSH_PAGES: have the kernel write it out now, a little at a time,
    /// rather than all of it at the checkpoint.
    Flush,
    Checkpoint,
}

/// Pages of log between two flushes of it: 4 MB, the burst of writes that SQLite's own
/// default checkpoint interval makes, without its ten times as many checkpoints.
const FLUSH_PAGES: c_int = 1_000;

impl Deref for Writing {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.connection
    }
}

impl From<Connection> for Writing {
    /// A connection that keeps SQLite's automatic checkpoint.
    fn from(connection: Connection) -> Writing {
        Writing {
            connection,
            _wake: None,
        }
    }
}

/// Starts the checkpoint thread for the file at `path` and hooks `connection` to it. When
/// the thread cannot start, the connection keeps SQLite's automatic checkpoint (commits
/// then wait for checkpoints, as before) and the reason is logged.
pub fn hand_over(connection: Connection, path: &Path, sync: StateSync) -> Writing {
    match start(path, sync) {
        Ok(thread) => hook(connection, lock::WAL_PAGES, thread),
        Err(e) => {
            tracing::warn!(
                "no checkpoint thread for {}, commits will checkpoint the log themselves: {e}",
                path.display()
            );
            Writing::from(connection)
        }
    }
}

/// Opens the thread's own connection and starts it; it ends when the hooked connection is
/// dropped (the channel's one sender goes with it).
fn start(path: &Path, sync: StateSync) -> anyhow::Result<SyncSender<Due>> {
    let connection = lock::connect(path, sync)?;
    // One wake-up pending is enough: those arriving while it runs ask for the same work.
    let (thread, wakes) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("dpsd-sqlite-ckpt".into())
        .spawn({
            let log = log_of(path);
            move || run(&connection, &log, &wakes)
        })?;
    Ok(thread)
}

/// The write-ahead log's file beside `path`.
fn log_of(path: &Path) -> PathBuf {
    let mut log = path.as_os_str().to_owned();
    log.push("-wal");
    PathBuf::from(log)
}

fn run(connection: &Connection, log: &Path, wakes: &Receiver<Due>) {
    while let Ok(first) = wakes.recv() {
        // Wake-ups already waiting ask for the same work, and one run serves them all; one
        // sent while it runs stays in the channel and runs it again after, for the pages
        // committed meanwhile (drained after the run, those were left until the next commit).
        match wakes.try_iter().fold(first, Due::max) {
            Due::Flush => flush(log),
            Due::Checkpoint => checkpoint(connection),
        }
    }
}

/// Writes the log's pages out to disk (they are in the kernel's cache until then). It does
/// not make a commit durable sooner in any way that matters: that is the checkpoint's.
fn flush(log: &Path) {
    if let Err(e) = std::fs::File::open(log).and_then(|file| file.sync_data()) {
        tracing::debug!("flushing the write-ahead log {}: {e}", log.display());
    }
}

fn checkpoint(connection: &Connection) {
    // (busy, pages in the log, pages checkpointed); busy means another process's
    // checkpoint was running, which does the same work.
    let checkpointed = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(2)
    });
    match checkpointed {
        Ok(pages) => tracing::debug!(pages, "write-ahead log checkpointed"),
        Err(e) => tracing::warn!("checkpoint of the write-ahead log failed: {e}"),
    }
}

/// Replaces `connection`'s automatic checkpoint by a wake-up of `thread` once a commit leaves
/// `pages` or more in the log.
fn hook(connection: Connection, pages: c_int, thread: SyncSender<Due>) -> Writing {
    let wake = Box::new(Wake {
        pages,
        last: AtomicI32::new(0),
        thread,
    });
    let argument = std::ptr::from_ref::<Wake>(&wake)
        .cast_mut()
        .cast::<c_void>();
    // SAFETY: the handle is the open connection's; `argument` points into the box `Writing`
    // keeps, which is dropped after the connection (field order), so it outlives every call
    // of the hook. Installing a WAL hook replaces SQLite's automatic checkpoint.
    unsafe {
        ffi::sqlite3_wal_hook(connection.handle(), Some(committed), argument);
    }
    Writing {
        connection,
        _wake: Some(wake),
    }
}

/// SQLite's WAL hook, called after each commit with the pages now in the log. It must not
/// unwind into SQLite: nothing in it panics, and a full channel is ignored (a wake-up is
/// already pending).
unsafe extern "C" fn committed(
    argument: *mut c_void,
    _db: *mut ffi::sqlite3,
    _schema: *const c_char,
    pages: c_int,
) -> c_int {
    // SAFETY: `argument` is the `Wake` installed with this hook (see `hook`).
    let wake = unsafe { &*argument.cast::<Wake>() };
    let before = wake.last.swap(pages, Ordering::Relaxed);
    let due = if pages >= wake.pages {
        Some(Due::Checkpoint)
    } else {
        (pages / FLUSH_PAGES > before / FLUSH_PAGES).then_some(Due::Flush)
    };
    if let Some(due) = due {
        let _ = wake.thread.try_send(due);
    }
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn table(dir: &Path) -> (std::path::PathBuf, Connection) {
        let path = dir.join("t.sqlite");
        let connection = lock::connect(&path, StateSync::Normal).expect("open");
        connection
            .execute_batch("CREATE TABLE t (b BLOB); PRAGMA wal_checkpoint(TRUNCATE)")
            .expect("table");
        (path, connection)
    }

    /// Twenty commits of a page each: the file itself is only written by a checkpoint.
    fn fill(writing: &Writing) {
        for _ in 0..20 {
            writing
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .expect("insert");
        }
    }

    fn file_size(path: &Path) -> u64 {
        std::fs::metadata(path).expect("the file").len()
    }

    /// The commits that take the log past the threshold wake the thread and do not
    /// checkpoint themselves: the file is untouched while no thread answers.
    #[test]
    fn a_commit_past_the_threshold_wakes_the_thread_instead_of_checkpointing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, connection) = table(dir.path());
        let before = file_size(&path);
        let (thread, wakes) = mpsc::sync_channel(1);
        let writing = hook(connection, 8, thread);
        fill(&writing);
        assert_eq!(
            wakes.try_recv().ok(),
            Some(Due::Checkpoint),
            "20 pages in the log"
        );
        assert_eq!(file_size(&path), before, "a commit checkpointed the log");
    }

    /// Below the checkpoint's threshold, each `FLUSH_PAGES` more in the log wakes the thread
    /// once, to flush it: a thousand commits of a few pages each (the row's leaf, the pages
    /// above it, the file's header) wake it a few times, not a thousand.
    #[test]
    fn a_growing_log_wakes_the_thread_to_flush_it_once_per_flush_pages() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_path, connection) = table(dir.path());
        let (thread, wakes) = mpsc::sync_channel(16);
        let writing = hook(connection, 10 * FLUSH_PAGES, thread);
        for _ in 0..FLUSH_PAGES / 20 {
            fill(&writing);
        }
        let woken: Vec<Due> = wakes.try_iter().collect();
        assert!(
            (1..=8).contains(&woken.len()) && woken.iter().all(|due| *due == Due::Flush),
            "{woken:?}"
        );
    }

    /// With the thread running, the log's pages reach the file, and writes go on.
    #[test]
    fn the_thread_folds_the_log_into_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (path, connection) = table(dir.path());
        let before = file_size(&path);
        let writing = hook(
            connection,
            8,
            start(&path, StateSync::Normal).expect("thread"),
        );
        fill(&writing);
        let deadline = Instant::now() + Duration::from_secs(10);
        while file_size(&path) < before + 8 * 4096 {
            assert!(Instant::now() < deadline, "the log was not checkpointed");
            std::thread::sleep(Duration::from_millis(10));
        }
        fill(&writing);
        let rows: i64 = writing
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 40);
    }
}
