//! RabbitMQ as a test sees it, beside dpsd rather than through it: publishing bodies dpsd
//! would refuse, taking and counting messages, deleting or pre-declaring queues, and the
//! private broker node that tests may stop and start. Each call is one round trip on a
//! connection of its own, so a test never shares a channel with the code under test.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use amqprs::channel::{
    BasicGetArguments, BasicPublishArguments, Channel, QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{BasicProperties, FieldTable, FieldValue};
use serde_json::Value;

use super::TestEnv;

const DEFAULT_AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The shared broker: `DPSD_TEST_AMQP_URL`, else the local one.
pub fn amqp_url() -> String {
    std::env::var("DPSD_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP.into())
}

impl TestEnv {
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

    /// How many consumers `queue` has, on all hosts (0 when it does not exist).
    pub fn consumers(&self, queue: &str) -> u32 {
        self.on_channel(|channel| async move {
            let declared = channel
                .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish())
                .await;
            declared
                .ok()
                .flatten()
                .map_or(0, |(_, _, consumers)| consumers)
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
}

/// Deletes `queues` on the broker at `url`, as far as it answers (for the clean-up, which
/// must not panic).
pub(super) fn delete_queues(url: &str, queues: Vec<String>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async move {
        let Ok(connection) = try_connect(url).await else {
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

/// A variable `scripts/test-services.sh` exports for one of its private RabbitMQ nodes (as
/// root only), which the test cannot do without.
fn bench_var(name: &str, what: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!("{name} is not set: run the tests with `make test` as root, which starts {what}")
        })
}

/// The private broker node that `make test` starts for the tests that restart it (the shared
/// broker must not restart under the tests running beside them): its URL and node name.
pub fn restartable_broker() -> (String, String) {
    let what = "a private broker node";
    (
        bench_var("DPSD_TEST_RESTARTABLE_AMQP_URL", what),
        bench_var("DPSD_TEST_RESTARTABLE_NODE", what),
    )
}

/// The private node with only a TLS listener that `make test` starts: its
/// `amqps://guest:guest@localhost:PORT/%2f` URL (`localhost`, the name its certificate is
/// for; `127.0.0.1` is in it too) and the folder of the certificates `scripts/test-certs.sh`
/// made: `ca.pem` signed the node's `server.pem` and `client.pem`/`client.key` (mutual TLS),
/// `other-ca.pem` signed nothing the node knows, and `other-client.pem`/`.key` (which the
/// node refuses). The node verifies a client certificate when one is presented
/// (`verify_peer`) and takes clients without one.
pub fn tls_broker() -> (String, PathBuf) {
    let what = "a broker node with a TLS listener";
    (
        bench_var("DPSD_TEST_TLS_AMQP_URL", what),
        PathBuf::from(bench_var("DPSD_TEST_TLS_DIR", what)),
    )
}

/// The three-node cluster `make test` starts, shared by the tests (one that stops a node
/// starts a `PrivateCluster`): the nodes' `amqp://guest:guest@127.0.0.1:PORT/%2f` URLs and
/// their names, in the same order.
pub fn cluster_broker() -> (Vec<String>, Vec<String>) {
    let what = "a three-node RabbitMQ cluster";
    let list = |name| {
        bench_var(name, what)
            .split(',')
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    (
        list("DPSD_TEST_CLUSTER_URLS"),
        list("DPSD_TEST_CLUSTER_NODES"),
    )
}

/// Closes the connections of `node` that their client named `name` (dpsd names each one,
/// "dpsd worker W #N"), as RabbitMQ closing them under a client would; how many it closed.
pub fn close_connections_named(node: &str, name: &str) -> usize {
    let out = Command::new("rabbitmqctl")
        .args([
            "-q",
            "-n",
            node,
            "list_connections",
            "pid",
            "client_properties",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run rabbitmqctl");
    assert!(out.status.success(), "rabbitmqctl list_connections failed");
    let quoted = format!("\"{name}\"");
    let pids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains(&quoted))
        .filter_map(|line| line.split('\t').next().map(str::to_string))
        .collect();
    for pid in &pids {
        let status = Command::new("rabbitmqctl")
            .args([
                "-q",
                "-n",
                node,
                "close_connection",
                pid,
                "closed by a test",
            ])
            .stdin(Stdio::null())
            .status()
            .expect("run rabbitmqctl");
        assert!(
            status.success(),
            "rabbitmqctl close_connection {pid} failed"
        );
    }
    pids.len()
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
