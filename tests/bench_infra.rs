//! The test bench itself (issue 15): the TLS node and the certificates it was made with,
//! the shared three-node cluster, and a private cluster losing a node and getting it back.
//! What dpsd does on them is for the tests of SPEC 3.3; this only proves the servers are
//! what the harness says they are. TLS is checked with `openssl s_client` (dpsd's
//! dev-dependencies have no TLS-enabled AMQP client): a handshake, then the AMQP protocol
//! header, to which RabbitMQ answers with Connection.Start (naming itself "RabbitMQ").

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{cluster_broker, running_nodes, tls_broker, PrivateCluster, TestEnv};

/// Opens a TLS connection to `localhost:port` with `openssl s_client`, verifying the
/// broker's certificate against `ca` and the host name `localhost`, presenting `client`
/// (certificate, key) if given, and sends the AMQP header. Ok when RabbitMQ answers with
/// Connection.Start; otherwise what openssl said.
fn amqps_handshake(port: u16, ca: &Path, client: Option<(&Path, &Path)>) -> Result<(), String> {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-quiet", "-verify_return_error"])
        .args(["-connect", &format!("localhost:{port}")])
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .arg("-CAfile")
        .arg(ca);
    if let Some((cert, key)) = client {
        command.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    // stdin stays open: s_client would otherwise hang up before the broker answers
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"AMQP\x00\x00\x09\x01")
        .expect("send the AMQP header");
    let mut stdout = child.stdout.take().expect("stdout");
    let (answered, answer) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if seen.windows(8).any(|w| w == b"RabbitMQ") {
                let _ = answered.send(true);
                return;
            }
        }
        let _ = answered.send(false);
    });
    // A refused handshake ends s_client at once; a broker that answers keeps the
    // connection open (it waits for Connection.StartOk): 20 s is a broken bench.
    let started = answer.recv_timeout(Duration::from_secs(20)) == Ok(true);
    let _ = child.kill();
    drop(stdin);
    let out = child.wait_with_output().expect("openssl s_client output");
    if started {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

#[test]
fn the_tls_node_is_verified_with_the_test_ca_and_checks_client_certificates() {
    let (url, certs) = tls_broker();
    assert!(
        url.starts_with("amqps://guest:guest@localhost:"),
        "the TLS URL is {url}"
    );
    let port = url::Url::parse(&url)
        .expect("TLS URL")
        .port()
        .expect("a port");
    let file = |name: &str| certs.join(name);
    let expect_ok = |what: &str, result: Result<(), String>| {
        if let Err(e) = result {
            panic!("{what}: the TLS handshake with {url} failed:\n{e}");
        }
    };
    let expect_refused = |what: &str, result: Result<(), String>, reason: &str| match result {
        Ok(()) => panic!("{what}: the TLS handshake with {url} succeeded"),
        Err(e) => assert!(e.contains(reason), "{what}: expected {reason:?}, got:\n{e}"),
    };

    expect_ok(
        "without a client certificate",
        amqps_handshake(port, &file("ca.pem"), None),
    );
    expect_refused(
        "verifying the broker with the other CA",
        amqps_handshake(port, &file("other-ca.pem"), None),
        "certificate verify failed",
    );
    expect_ok(
        "with the client certificate the test CA signed",
        amqps_handshake(
            port,
            &file("ca.pem"),
            Some((&file("client.pem"), &file("client.key"))),
        ),
    );
    expect_refused(
        "with a client certificate the other CA signed",
        amqps_handshake(
            port,
            &file("ca.pem"),
            Some((&file("other-client.pem"), &file("other-client.key"))),
        ),
        "unknown ca",
    );
}

#[test]
fn the_shared_cluster_has_three_running_nodes_that_take_connections() {
    let (urls, nodes) = cluster_broker();
    assert_eq!(urls.len(), 3, "DPSD_TEST_CLUSTER_URLS: {urls:?}");
    let mut expected = nodes.clone();
    expected.sort();
    for node in &nodes {
        assert_eq!(
            running_nodes(node),
            expected,
            "rabbitmqctl -n {node} cluster_status: running nodes"
        );
    }
    for url in &urls {
        // an AMQP connection of its own on each node (a passive declare of a missing queue)
        let env = TestEnv::with_servers("clusternode", url, "");
        assert_eq!(env.depth(&env.queue("none")), 0, "a queue on {url}");
    }
}

#[test]
fn a_private_cluster_loses_a_node_and_gets_it_back() {
    let cluster = PrivateCluster::start();
    let nodes: Vec<&str> = cluster.nodes().iter().map(String::as_str).collect();
    cluster.wait_running(0, &nodes, Duration::from_secs(10));

    let pid = cluster.kill_node(1);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid),
        "node {} (pid {pid}) still runs after kill_node",
        nodes[1]
    );
    cluster.wait_running(0, &[nodes[0], nodes[2]], Duration::from_secs(30));
    let killed_port = url::Url::parse(&cluster.urls()[1]).unwrap().port().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", killed_port)).is_err(),
        "the killed node's AMQP port still takes connections"
    );

    cluster.start_node(1);
    cluster.wait_running(0, &nodes, Duration::from_secs(30));
    cluster.wait_running(1, &nodes, Duration::from_secs(30));
    let env = TestEnv::with_servers("restartednode", &cluster.urls()[1], "");
    assert_eq!(
        env.depth(&env.queue("none")),
        0,
        "a queue on the restarted node"
    );
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}
