//! The integration-test harness: a private configuration folder, queues and database per
//! test (so tests run in parallel and leave nothing behind), the real `dpsd` binary, and
//! the real RabbitMQ and MongoDB-wire servers that `make test` starts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use amqprs::channel::Channel;
use amqprs::channel::{
    BasicGetArguments, BasicPublishArguments, QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{BasicProperties, FieldTable, FieldValue};
use mongodb::bson::{doc, Document};
use serde_json::Value;

pub const DEFAULT_AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn amqp_url() -> String {
    std::env::var("DPSD_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP.into())
}

pub fn mongo_uri() -> String {
    std::env::var("DPSD_TEST_MONGODB_URI")
        .expect("DPSD_TEST_MONGODB_URI is not set: run the tests with `make test`, which starts the servers")
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
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut mongo = PrivateMongo {
            port,
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
        let data = self.dir.path().join("data");
        let log = std::fs::File::create(self.dir.path().join("server.log")).expect("log");
        let mut command = if which("mongod") {
            std::fs::create_dir_all(&data).expect("mkdir");
            let mut c = Command::new("mongod");
            c.args([
                "--bind_ip",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--dbpath",
            ])
            .arg(&data);
            c
        } else {
            let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
            std::fs::write(self.dir.path().join("secantusd.toml"), "").expect("toml");
            let mut c = Command::new(python);
            c.args([
                "-m",
                "secantus",
                "--config",
                "secantusd.toml",
                "--host",
                "127.0.0.1",
            ])
            .args(["--port", &self.port.to_string(), "--storage-path"])
            .arg(&data)
            .current_dir(self.dir.path());
            c
        };
        self.child = Some(
            command
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

/// One test's world: a config folder, a database and a queue prefix of its own.
pub struct TestEnv {
    pub id: String,
    pub dir: tempfile::TempDir,
    pub amqp_url: String,
    pub mongo_uri: String,
    /// The API's port for this test's daemon.
    pub api_port: u16,
    pub database: String,
    queues: std::sync::Mutex<Vec<String>>,
    children: std::sync::Mutex<Vec<Child>>,
}

impl TestEnv {
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
        };
        env.write_main("");
        env
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

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("dpsd.yaml")
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
        if self.mongo_uri.is_empty() {
            "state_dir: state\n".to_string()
        } else {
            format!(
                "mongodb:\n  uri: {}\n  database: {}\n",
                self.mongo_uri, self.database
            )
        }
    }

    /// The execution as the configured store has it (either backend).
    pub fn stored_execution(&self, execution_id: &str) -> Option<dpsd::store::Execution> {
        self.rt().block_on(async {
            let store = self.open_store().await;
            let found = store.execution(execution_id).await.expect("read execution");
            store.close().await;
            found
        })
    }

    /// This test's store, opened as dpsd opens it: its MongoDB database, or the embedded
    /// file in `state/`.
    pub async fn open_store(&self) -> Box<dyn dpsd::store::Store> {
        if self.mongo_uri.is_empty() {
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

    pub fn write_job(&self, name: &str, yaml: &str) {
        std::fs::write(
            self.dir.path().join("jobs.d").join(format!("{name}.yaml")),
            yaml,
        )
        .expect("write job");
    }

    /// The API's base URL for this test's daemon.
    pub fn api(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    /// Waits until the daemon's API answers `/health` (whatever the status).
    pub fn wait_api(&self) {
        let url = self.api("/health");
        wait_for("the API listening", Duration::from_secs(30), || {
            reqwest::blocking::get(&url).is_ok()
        });
    }

    /// Writes worker NAME, starts one replica of it and waits until it consumes.
    pub fn run_worker(&self, name: &str, yaml: &str) {
        self.write_worker(name, yaml);
        self.start_worker(name);
        self.wait_consuming(name, 1);
    }

    /// Replaces `from` with `to` in the main file (e.g. to add a key to a section).
    pub fn edit_main(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config_path()).expect("read main config");
        assert!(text.contains(from), "{from:?} is not in the main config");
        std::fs::write(self.config_path(), text.replace(from, to)).expect("write main config");
    }

    pub fn write_worker(&self, name: &str, yaml: &str) {
        std::fs::write(
            self.dir
                .path()
                .join("workers.d")
                .join(format!("{name}.yaml")),
            yaml,
        )
        .expect("write worker");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dpsd(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_dpsd"));
        command
            .arg("--config")
            .arg(self.config_path())
            .env_remove("DPSD_ENV");
        command
    }

    /// Starts `dpsd worker NAME`, its log in the test folder; killed when the test ends.
    pub fn start_worker(&self, name: &str) -> u32 {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("{name}.log")))
            .expect("log file");
        self.spawn(self.dpsd().args(["worker", name]), log)
    }

    /// Spawns `command` with stderr to `log`; it is killed when the test ends.
    fn spawn(&self, command: &mut Command, log: std::fs::File) -> u32 {
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dpsd");
        let pid = child.id();
        self.children.lock().expect("lock").push(child);
        pid
    }

    /// Starts `dpsd run` with this test's configuration, its log in `daemon.log`.
    pub fn start_daemon(&self) -> u32 {
        self.start_daemon_at(&self.config_path(), "daemon.log")
    }

    /// Starts `dpsd run` with the main file `config`, its log in `log`.
    pub fn start_daemon_at(&self, config: &Path, log: &str) -> u32 {
        let log = std::fs::File::create(self.path(log)).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_dpsd"));
        command
            .arg("--config")
            .arg(config)
            .arg("run")
            .env_remove("DPSD_ENV");
        self.spawn(&mut command, log)
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    /// Takes the daemon's Child back (to wait for its exit status).
    pub fn take_child(&self, pid: u32) -> Child {
        let mut children = self.children.lock().expect("lock");
        let index = children
            .iter()
            .position(|c| c.id() == pid)
            .expect("a child of this test");
        children.remove(index)
    }

    pub fn remove_worker(&self, name: &str) {
        std::fs::remove_file(
            self.dir
                .path()
                .join("workers.d")
                .join(format!("{name}.yaml")),
        )
        .expect("remove worker");
    }

    pub fn worker_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// Waits until the worker's log says it consumes (its queue is declared by then).
    pub fn wait_consuming(&self, name: &str, times: usize) {
        wait_for(
            &format!("worker {name} consuming"),
            Duration::from_secs(20),
            || self.worker_log(name).matches("consuming").count() >= times,
        );
    }

    /// Sends a JSON message with `dpsd send`; returns the executionId it printed.
    pub fn send(&self, queue: &str, json: &str) -> String {
        let out = self
            .dpsd()
            .args(["send", queue, json])
            .output()
            .expect("run dpsd send");
        assert!(
            out.status.success(),
            "dpsd send failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.dpsd().args(args).output().expect("run dpsd")
    }

    pub fn rt(&self) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    pub fn db(&self) -> mongodb::sync::Database {
        mongodb::sync::Client::with_uri_str(&self.mongo_uri)
            .expect("mongo client")
            .database(&self.database)
    }

    pub fn execution(&self, execution_id: &str) -> Option<Document> {
        self.db()
            .collection::<Document>("job_state")
            .find_one(doc! {"executionId": execution_id})
            .run()
            .expect("query job_state")
    }

    pub fn parked(&self) -> Vec<Document> {
        let cursor = self
            .db()
            .collection::<Document>("failed_messages")
            .find(doc! {})
            .run()
            .expect("query");
        cursor
            .collect::<Result<Vec<_>, _>>()
            .expect("read failed_messages")
    }

    /// Waits until every execution has reached `state` with status done.
    pub fn wait_done(&self, ids: &[String], state: i32, timeout: Duration) {
        wait_for(
            &format!("{} executions in state {state}", ids.len()),
            timeout,
            || {
                let states = self.db().collection::<Document>("job_state");
                let filter = doc! {"executionId": {"$in": ids}, "state": state, "status": "done"};
                states.count_documents(filter).run().expect("count") as usize == ids.len()
            },
        );
    }

    /// Publishes raw bytes (for bodies `dpsd send` would refuse), persistently.
    pub fn publish_raw(&self, queue: &str, body: &[u8], headers: &[(&str, &str)]) {
        let mut props = BasicProperties::default();
        props.with_persistence(true);
        if !headers.is_empty() {
            let mut table = FieldTable::new();
            for (k, v) in headers {
                table.insert(
                    k.to_string().try_into().expect("header name"),
                    FieldValue::S(v.to_string().try_into().expect("header value")),
                );
            }
            props.with_headers(table);
        }
        self.on_channel(|channel| async move {
            channel
                .queue_declare(QueueDeclareArguments::durable_client_named(queue))
                .await
                .expect("declare");
            channel
                .basic_publish(
                    props.finish(),
                    body.to_vec(),
                    BasicPublishArguments::new("", queue),
                )
                .await
                .expect("publish");
        });
    }

    /// Takes one message from a queue (acked), if there is one.
    pub fn get(&self, queue: &str) -> Option<Value> {
        let got = self.on_channel(|channel| async move {
            channel
                .queue_declare(QueueDeclareArguments::durable_client_named(queue))
                .await
                .expect("declare");
            channel
                .basic_get(BasicGetArguments::new(queue).no_ack(true).finish())
                .await
                .expect("get")
        });
        got.map(|(_, _, body)| serde_json::from_slice(&body).expect("JSON body"))
    }

    /// Deletes a queue (as an operator might, by mistake).
    pub fn delete_queue(&self, queue: &str) {
        self.on_channel(|channel| async move {
            channel
                .queue_delete(QueueDeleteArguments::new(queue))
                .await
                .expect("delete queue");
        });
    }

    /// Messages ready in a queue; 0 when it does not exist (yet).
    pub fn depth(&self, queue: &str) -> u32 {
        self.on_channel(|channel| async move {
            // Passive: a delay queue has arguments a plain declare would clash with.
            let declared = channel
                .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish())
                .await;
            declared.ok().flatten().map_or(0, |(_, count, _)| count)
        })
    }

    /// Declares `queue` with `x-max-length`, as another program might: a plain declare of
    /// it (dpsd's) is then refused by RabbitMQ with PRECONDITION_FAILED.
    pub fn declare_capped(&self, queue: &str, max_length: i64) {
        let mut arguments = FieldTable::new();
        arguments.insert(
            "x-max-length".try_into().expect("name"),
            FieldValue::l(max_length),
        );
        let mut declare = QueueDeclareArguments::durable_client_named(queue);
        declare.arguments(arguments);
        self.on_channel(|channel| async move {
            channel.queue_declare(declare).await.expect("declare");
        });
    }

    /// Runs `work` on a channel of a connection of its own to this test's broker, then
    /// closes both (a channel the broker already closed, after a refused passive declare
    /// say, is fine).
    fn on_channel<T, F>(&self, work: impl FnOnce(Channel) -> F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        self.rt().block_on(async {
            let connection = connect(&self.amqp_url).await;
            let channel = connection.open_channel(None).await.expect("channel");
            let result = work(channel.clone()).await;
            let _ = channel.close().await;
            connection.close().await.expect("close connection");
            result
        })
    }

    pub fn kill_workers(&self) {
        for mut child in self.children.lock().expect("lock").drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestEnv {
    /// Leaves nothing behind: workers killed, queues deleted, database dropped.
    fn drop(&mut self) {
        self.kill_workers();
        let queues = self.queues.lock().map(|q| q.clone()).unwrap_or_default();
        let url = self.amqp_url.clone();
        let db = (!self.mongo_uri.is_empty()).then(|| self.db());
        let cleanup = std::thread::spawn(move || {
            if let Some(db) = db {
                let _ = db.drop().run();
            }
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(connection) = try_connect(&url).await else {
                    return;
                };
                if let Ok(channel) = connection.open_channel(None).await {
                    for queue in queues {
                        let _ = channel
                            .queue_delete(QueueDeleteArguments::new(&queue))
                            .await;
                    }
                    let _ = channel.close().await;
                }
                let _ = connection.close().await;
            });
        });
        let _ = cleanup.join();
    }
}

async fn try_connect(url: &str) -> Result<Connection, amqprs::error::Error> {
    let parsed = url::Url::parse(url).expect("amqp url");
    let args = OpenConnectionArguments::new(
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5672),
        "guest",
        "guest",
    );
    Connection::open(&args).await
}

async fn connect(url: &str) -> Connection {
    try_connect(url).await.expect("connect to RabbitMQ")
}

/// The private broker node that `make test` starts for the tests that restart it (the shared
/// broker must not restart under the tests running beside them): its URL and node name.
pub fn restartable_broker() -> (String, String) {
    let var = |name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| panic!("{name} is not set: run the tests with `make test`, which starts a private broker node"))
    };
    (
        var("DPSD_TEST_RESTARTABLE_AMQP_URL"),
        var("DPSD_TEST_RESTARTABLE_NODE"),
    )
}

/// `rabbitmqctl -n NODE VERB`, which must succeed.
pub fn rabbitmqctl(node: &str, verb: &str) {
    let status = Command::new("rabbitmqctl")
        .args(["-q", "-n", node, verb])
        .stdin(Stdio::null())
        .status()
        .expect("run rabbitmqctl");
    assert!(status.success(), "rabbitmqctl {verb} failed");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Polls `condition` every 100 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn stage_results(execution: &Document) -> Vec<(String, String, Option<mongodb::bson::Bson>)> {
    execution
        .get_array("stages")
        .expect("stages")
        .iter()
        .filter_map(|s| s.as_document())
        .map(|s| {
            (
                s.get_str("worker").unwrap_or_default().to_string(),
                s.get_str("status").unwrap_or_default().to_string(),
                s.get("result").cloned(),
            )
        })
        .collect()
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// `dpsd worker NAME` processes whose parent is `parent`, as (pid, replica number).
pub fn replicas_of(parent: u32, worker: &str) -> Vec<(u32, u32)> {
    let mut found: Vec<(u32, u32)> = dpsd_workers()
        .filter(|(pid, _)| parent_of(*pid) == Some(parent))
        .filter_map(|(pid, args)| {
            let at = args.iter().position(|a| a == "worker")?;
            (args.get(at + 1).map(String::as_str) == Some(worker)).then_some(())?;
            let replica = args
                .iter()
                .position(|a| a == "--replica")
                .and_then(|i| args.get(i + 1)?.parse().ok());
            Some((pid, replica.unwrap_or(0)))
        })
        .collect();
    found.sort_by_key(|(_, replica)| *replica);
    found
}

/// Every live `dpsd worker` process that names this test's configuration file.
pub fn workers_using(config: &Path) -> Vec<u32> {
    let config = config.to_string_lossy().to_string();
    dpsd_workers()
        .filter(|(pid, args)| args.contains(&config) && !is_zombie(*pid))
        .map(|(pid, _)| pid)
        .collect()
}

/// Every process with `worker` among its arguments, as (pid, arguments).
fn dpsd_workers() -> impl Iterator<Item = (u32, Vec<String>)> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect();
            args.iter().any(|a| a == "worker").then_some((pid, args))
        })
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}
