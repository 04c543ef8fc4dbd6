//! State as dpsd wrote it, read through `dpsd::store::Store` (the trait the daemon and its
//! workers write through), so that one test body asserts the same on MongoDB and on the
//! embedded file. Also the MongoDB-wire servers: the shared one `make test` starts, and a
//! private one a test may stop and start.

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dpsd::store::{Execution, FailedPage, ParkedMessage, Status, Store, StoreError};
use serde_json::Value;

use super::{env::free_port, wait_for, wait_for_some, TestEnv};

/// The shared MongoDB-wire server `make test` started.
pub fn mongo_uri() -> String {
    std::env::var("DPSD_TEST_MONGODB_URI")
        .expect("DPSD_TEST_MONGODB_URI is not set: run the tests with `make test`, which starts the servers")
}

/// More parked messages than any test makes: `parked()` reads them all in one page.
const ALL: u32 = 1000;

/// The test's store, opened once and kept: opening builds indexes on MongoDB (writes, slow
/// on SecantusDB) and runs a schema transaction on the embedded file, too much for every
/// poll of a wait. Its runtime has a thread of its own so the driver's background tasks go
/// on between reads. The embedded file is the one the test's dpsd processes share; a
/// reader beside them is what WAL mode is for.
pub struct OpenStore {
    runtime: tokio::runtime::Runtime,
    store: Box<dyn Store>,
}

impl OpenStore {
    fn open(env: &TestEnv) -> OpenStore {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let store = runtime.block_on(env.open_store());
        OpenStore { runtime, store }
    }

    /// Runs one store call to its end; a store that fails it fails the test.
    fn run<T>(&self, what: &str, call: impl Future<Output = Result<T, StoreError>>) -> T {
        self.runtime
            .block_on(call)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Closes the store's connections, then its runtime.
    pub(super) fn close(self) {
        self.runtime.block_on(self.store.close());
    }
}

impl TestEnv {
    /// This test's store, opened as dpsd opens it: its MongoDB database, or the embedded
    /// file in `state/`.
    pub async fn open_store(&self) -> Box<dyn Store> {
        if self.is_embedded() {
            let store = dpsd::store::EmbeddedStore::open(&self.path("state"), Default::default());
            return Box::new(store.expect("open the embedded store"));
        }
        let settings = dpsd::config::MongoSettings {
            uri: Some(self.mongo_uri.clone()),
            database: self.database.clone(),
            job_state_collection: "job_state".into(),
        };
        let store = dpsd::store::MongoStore::connect(&self.mongo_uri, &settings).await;
        Box::new(store.expect("connect to MongoDB"))
    }

    fn store(&self) -> &OpenStore {
        self.store.get_or_init(|| OpenStore::open(self))
    }

    /// The execution as the store has it, with its stages.
    pub fn execution(&self, execution_id: &str) -> Option<Execution> {
        let open = self.store();
        open.run("read an execution", open.store.execution(execution_id))
    }

    /// A page of parked messages, of one worker or all, oldest failure first.
    pub fn list_failed(&self, worker: Option<&str>, limit: u32, skip: u64) -> FailedPage {
        let open = self.store();
        open.run(
            "list parked messages",
            open.store.list_failed(worker, limit, skip),
        )
    }

    /// Every parked message, oldest failure first.
    pub fn parked(&self) -> Vec<ParkedMessage> {
        let page = self.list_failed(None, ALL, 0);
        // Not against `total`: a backend may count and list in two reads, with a message
        // parked between them.
        assert!(page.items.len() < ALL as usize, "more parked than one page");
        page.items
    }

    /// How many messages are parked (without reading their bodies).
    pub fn parked_count(&self) -> u64 {
        self.list_failed(None, 1, 0).total
    }

    /// Whether the execution is done with `state` (its furthest done stage's job_state).
    pub fn is_done_at(&self, execution_id: &str, state: i64) -> bool {
        self.execution(execution_id)
            .is_some_and(|e| e.status == Status::Done && e.state == Some(state))
    }

    /// How many of `ids` are done with `state`.
    pub fn count_done(&self, ids: &[String], state: i64) -> usize {
        ids.iter().filter(|id| self.is_done_at(id, state)).count()
    }

    /// Waits until every execution has reached `state` with status done (each one is read
    /// until it has, not again after).
    pub fn wait_done(&self, ids: &[String], state: i64, timeout: Duration) {
        let mut pending: Vec<&String> = ids.iter().collect();
        wait_for(
            &format!("{} executions in state {state}", ids.len()),
            timeout,
            || {
                pending.retain(|id| !self.is_done_at(id, state));
                pending.is_empty()
            },
        );
    }

    /// Waits (up to a minute) until the execution's status is `status`; returns it then.
    pub fn wait_status(&self, execution_id: &str, status: Status) -> Execution {
        wait_for_some(
            &format!("{execution_id} {}", status.as_str()),
            Duration::from_secs(60),
            || self.execution(execution_id).filter(|e| e.status == status),
        )
    }
}

/// An execution's stages as (worker, status, result), in the chain's order: by the stages
/// passed, then as recorded. (Recorded side by side with the forward, the next worker's
/// stage can land first.)
pub fn stage_results(execution: &Execution) -> Vec<(String, Status, Option<Value>)> {
    let mut stages: Vec<_> = execution.stages.iter().collect();
    stages.sort_by_key(|s| s.stages_passed);
    stages
        .into_iter()
        .map(|s| (s.worker.clone(), s.status, s.result.clone()))
        .collect()
}

/// Drops a test's database (for the clean-up, which must not panic).
pub(super) fn drop_database(uri: &str, database: &str) {
    if let Ok(client) = mongodb::sync::Client::with_uri_str(uri) {
        let _ = client.database(database).drop().run();
    }
}

/// A MongoDB-wire server of one test's own, which the test may stop and start again:
/// `mongod` when installed, else SecantusDB from the project's .venv (see scripts/).
pub struct PrivateMongo {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateMongo {
    pub fn start() -> PrivateMongo {
        let mut mongo = PrivateMongo {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        mongo.restart();
        mongo
    }

    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on the same port and data folder; waits until it listens.
    pub fn restart(&mut self) {
        self.stop();
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        self.child = Some(
            self.command()
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start the private MongoDB-wire server"),
        );
        let port = self.port;
        wait_for(
            "the private MongoDB-wire server",
            Duration::from_secs(30),
            || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
    }

    /// `mongod` on this port and data folder when installed, else SecantusDB.
    fn command(&self) -> Command {
        let data = self.dir.path().join("data");
        let port = self.port.to_string();
        if which("mongod") {
            std::fs::create_dir_all(&data).expect("mkdir");
            let mut c = Command::new("mongod");
            c.args(["--bind_ip", "127.0.0.1", "--port", &port, "--dbpath"])
                .arg(&data);
            return c;
        }
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        std::fs::write(self.dir.path().join("secantusd.toml"), "").expect("toml");
        let mut c = Command::new(python);
        c.args(["-m", "secantus", "--config", "secantusd.toml"])
            .args(["--host", "127.0.0.1", "--port", &port, "--storage-path"])
            .arg(&data)
            .current_dir(self.dir.path());
        c
    }

    /// Stops the server cleanly (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateMongo {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).exists()))
}
