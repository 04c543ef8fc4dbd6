//! One test's world: a folder with the main file, workers.d and jobs.d, queue names and a
//! database of its own, and an API port. It exists so that tests run in parallel against
//! shared servers without seeing each other, and leave nothing behind: dropping it kills
//! the test's processes, deletes its queues and drops its database.

use std::path::PathBuf;
use std::process::Child;
use std::sync::{Mutex, OnceLock};

use super::broker::{amqp_url, delete_queues};
use super::store::{mongo_uri, OpenStore};

pub struct TestEnv {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub amqp_url: String,
    /// Empty for a world on the embedded store.
    pub mongo_uri: String,
    /// The API's port for this test's daemon.
    pub api_port: u16,
    pub database: String,
    queues: Mutex<Vec<String>>,
    /// The dpsd processes this test started (see `processes`).
    pub(super) children: Mutex<Vec<Child>>,
    /// The store as the test reads it, opened at the first read (see `store`).
    pub(super) store: OnceLock<OpenStore>,
}

impl TestEnv {
    /// A test world on MongoDB: a database of its own on the server `make test` started.
    pub fn new(name: &str) -> TestEnv {
        TestEnv::with_amqp(name, &amqp_url())
    }

    pub fn with_amqp(name: &str, amqp_url: &str) -> TestEnv {
        TestEnv::with_servers(name, amqp_url, &mongo_uri())
    }

    /// A test world on the embedded store (no MongoDB): state in `state/` of its folder.
    pub fn embedded(name: &str) -> TestEnv {
        TestEnv::with_servers(name, &amqp_url(), "")
    }

    /// A test world on these servers; an empty `mongo_uri` means the embedded store.
    pub fn with_servers(name: &str, amqp_url: &str, mongo_uri: &str) -> TestEnv {
        let short = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let id = format!("{name}_{short}");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("workers.d")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("jobs.d")).expect("mkdir");
        let env = TestEnv {
            database: format!("dpsdtest_{short}"),
            id,
            dir,
            amqp_url: amqp_url.to_string(),
            mongo_uri: mongo_uri.to_string(),
            api_port: free_port(),
            queues: Default::default(),
            children: Default::default(),
            store: OnceLock::new(),
        };
        env.write_main("");
        env
    }

    /// Whether this world keeps its state in the embedded file rather than MongoDB.
    pub fn is_embedded(&self) -> bool {
        self.mongo_uri.is_empty()
    }

    /// A queue name private to this test (and remembered for deletion).
    pub fn queue(&self, name: &str) -> String {
        let queue = format!("{}.{name}", self.id);
        let mut queues = self.queues.lock().expect("lock");
        if !queues.contains(&queue) {
            queues.push(queue.clone());
        }
        queue
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("dpsd.yaml")
    }

    /// Writes the main file: this test's servers, the example services, then `extra`.
    pub fn write_main(&self, extra: &str) {
        self.write_main_with_auth("null", extra);
    }

    /// As `write_main`, with `api.auth` set to `auth` (YAML flow style).
    pub fn write_main_with_auth(&self, auth: &str, extra: &str) {
        let text = format!(
            "amqp:\n  url: {}\n  prefetch: 10\n{}api:\n  listen: 127.0.0.1:{}\n  auth: {auth}\n\
             log:\n  level: info,dpsd=debug\nworkers_dir: workers.d\nsupervisor:\n  shutdown_timeout: 10s\n\
             services:\n  integration_test_service1: {{builtin: constant, value: test1}}\n\
             \x20 integration_test_service2: {{builtin: constant, value: test2_0}}\n\
             \x20 integration_test_service2_1: {{builtin: constant, value: test2_1}}\n{extra}",
            self.amqp_url, self.store_section(), self.api_port
        );
        std::fs::write(self.config_path(), text).expect("write main config");
    }

    /// The main file's lines choosing the store: this test's MongoDB database, or the
    /// embedded store in `state/`.
    fn store_section(&self) -> String {
        if self.is_embedded() {
            "state_dir: state\n".to_string()
        } else {
            format!(
                "mongodb:\n  uri: {}\n  database: {}\n",
                self.mongo_uri, self.database
            )
        }
    }

    /// Replaces `from` with `to` in the main file (e.g. to add a key to a section).
    pub fn edit_main(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config_path()).expect("read main config");
        assert!(text.contains(from), "{from:?} is not in the main config");
        std::fs::write(self.config_path(), text.replace(from, to)).expect("write main config");
    }

    pub fn write_worker(&self, name: &str, yaml: &str) {
        std::fs::write(self.worker_file(name), yaml).expect("write worker");
    }

    pub fn remove_worker(&self, name: &str) {
        std::fs::remove_file(self.worker_file(name)).expect("remove worker");
    }

    fn worker_file(&self, name: &str) -> PathBuf {
        self.path("workers.d").join(format!("{name}.yaml"))
    }

    pub fn write_job(&self, name: &str, yaml: &str) {
        std::fs::write(self.path("jobs.d").join(format!("{name}.yaml")), yaml).expect("write job");
    }

    /// The API's base URL for this test's daemon.
    pub fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    /// A current-thread runtime for one async round trip from a (sync) test.
    pub fn rt(&self) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }
}

impl Drop for TestEnv {
    /// Leaves nothing behind: processes killed, store closed, queues deleted, database
    /// dropped. On a thread of its own, as a runtime may not be dropped (nor blocked on)
    /// inside the async context a test might drop its world in.
    fn drop(&mut self) {
        self.kill_workers();
        let store = self.store.take();
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        let url = self.amqp_url.clone();
        let database =
            (!self.is_embedded()).then(|| (self.mongo_uri.clone(), self.database.clone()));
        let cleanup = std::thread::spawn(move || {
            if let Some(store) = store {
                store.close();
            }
            if let Some((uri, database)) = database {
                super::store::drop_database(&uri, &database);
            }
            delete_queues(&url, queues);
        });
        let _ = cleanup.join();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}
