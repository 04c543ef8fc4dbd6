//! Connecting to the file, and waiting for its lock. Every process on the host shares one
//! SQLite file and a write holds its lock for about a millisecond (one group commit), so a
//! process that finds the file busy sleeps briefly and tries again, for at most
//! `BUSY_TIMEOUT` by the clock, rather than fail. Opening the file waits the same way, by
//! hand, where SQLite itself would not wait.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::config::StateSync;

/// How long a process waits for another's write transaction before reporting the store
/// unavailable (the message in hand then waits and tries again; nothing is lost).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a process sleeps between tries for the write lock. SQLite's own busy timeout
/// backs off to sleeps of 100 ms, far longer than a transaction holds the lock here (one
/// group commit, about a millisecond), so replicas sharing the file would mostly sleep.
const BUSY_RETRY: Duration = Duration::from_micros(200);

/// Pages the write-ahead log grows to before it is folded back into the file: by the
/// checkpoint thread (`checkpoint`), or by the commit itself on a connection without one.
pub const WAL_PAGES: i32 = 10_000;

/// A connection to the file with the busy handler, WAL and the configured `synchronous`.
pub fn connect(path: &Path, sync: StateSync) -> anyhow::Result<Connection> {
    let open = || -> rusqlite::Result<Connection> {
        let connection = Connection::open(path)?;
        connection.busy_handler(Some(wait_for_lock))?;
        // Freed pages can be handed back (SPEC 3.2). Only a new file takes this (SQLite
        // ignores it once a table exists); an older one is converted by hand (operations.md).
        connection.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        // WAL: readers never wait for the writer.
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", sync.pragma())?;
        // Fold the log back into the file every 10,000 pages (about 40 MB) rather than
        // SQLite's 1,000: each checkpoint rewrites the pages of the writes since the last,
        // and fewer of them cut a stage write's CPU by a quarter. `close` folds the rest.
        connection.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)?;
        Ok(connection)
    };
    // Turning a new file to WAL takes a lock SQLite answers "busy" for at once, without its
    // busy handler, to the other processes opening the file at that moment: the same wait
    // is applied here by hand.
    let mut tries = 0;
    loop {
        match open() {
            Err(e) if is_busy(&e) && wait_for_lock(tries) => tries += 1,
            opened => {
                return opened.map_err(|e| {
                    anyhow::anyhow!("cannot open the embedded store {}: {e}", path.display())
                })
            }
        }
    }
}

fn is_busy(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
}

thread_local! {
    /// Set while a write runs on an async runtime's thread, which must not sleep.
    static NO_WAIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `attempt` with the busy handler answering "busy" at once instead of waiting: for
/// writes tried on the runtime's thread, which go to the writer thread when the file is
/// locked.
pub fn without_waiting<T>(attempt: impl FnOnce() -> T) -> T {
    /// Clears the mark however `attempt` ends, a panic included.
    struct Waiting;
    impl Drop for Waiting {
        fn drop(&mut self) {
            NO_WAIT.set(false);
        }
    }
    NO_WAIT.set(true);
    let _restore = Waiting;
    attempt()
}

/// SQLite's busy handler: `tries` is how many times it has already been called for this
/// lock; false gives up (SQLITE_BUSY, reported as the store being unavailable). The wait is
/// bounded by the clock, not by counting tries: a sleep lasts longer than asked.
fn wait_for_lock(tries: i32) -> bool {
    thread_local! {
        static WAITING_SINCE: std::cell::Cell<Instant> = std::cell::Cell::new(Instant::now());
    }
    if NO_WAIT.get() {
        return false;
    }
    let waited = WAITING_SINCE.with(|since| {
        if tries == 0 {
            since.set(Instant::now());
        }
        since.get().elapsed()
    });
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(BUSY_RETRY);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EmbeddedStore;
    use std::sync::Arc;

    /// `dpsd run` and a `dpsd worker` started together on a fresh state_dir open the file
    /// at once; SQLite answers "busy" to one of them, without waiting, while the other turns
    /// the new file to WAL.
    #[test]
    fn connections_opening_a_fresh_file_at_once_all_succeed() {
        for round in 0..30 {
            let dir = tempfile::tempdir().expect("temp dir");
            let start = Arc::new(std::sync::Barrier::new(6));
            let openers: Vec<_> = (0..6)
                .map(|_| {
                    let (dir, start) = (dir.path().to_path_buf(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        EmbeddedStore::open(&dir, StateSync::Normal).map(drop)
                    })
                })
                .collect();
            for opener in openers {
                let opened = opener.join().expect("opener thread");
                assert!(opened.is_ok(), "round {round}: {opened:?}");
            }
        }
    }
}
