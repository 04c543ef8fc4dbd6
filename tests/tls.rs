//! RabbitMQ over TLS (SPEC 3.3) against the bench's TLS node and certificates: the chain
//! over amqps, a broker certificate from another CA or for another host name refused with a
//! clear error that names the node without its password, mutual TLS, and a cluster given as
//! a list of nodes.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{cluster_broker, free_port, tls_broker, wait_for, TestEnv};

/// A test world whose broker is the TLS node, with `tls` as the `amqp.tls` section.
fn over_tls(name: &str, tls: &str) -> TestEnv {
    let (url, _) = tls_broker();
    let env = TestEnv::new(name);
    env.edit_main(
        &format!("  url: {}\n", env.amqp_url),
        &format!("  url: {url}\n  tls: {tls}\n"),
    );
    env
}

fn cert(file: &str) -> String {
    tls_broker().1.join(file).display().to_string()
}

fn worker(queue: &str) -> String {
    format!("queue: {queue}\njob_state: 1\nservices: [integration_test_service1]\n")
}

#[test]
fn the_chain_runs_over_amqps_with_the_brokers_ca() {
    let env = over_tls("tls_chain", &format!("{{ca_file: {}}}", cert("ca.pem")));
    let queue = env.queue("in");
    env.run_worker("w", &worker(&queue));
    let id = env.send(&queue, r#"{"mydata": {}}"#);
    env.wait_done(&[id], 1, Duration::from_secs(20));
    let out = env.run(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_broker_certificate_from_another_ca_is_refused_naming_the_node() {
    let env = over_tls(
        "tls_wrong_ca",
        &format!("{{ca_file: {}}}", cert("other-ca.pem")),
    );
    let queue = env.queue("in");
    env.write_worker("w", &worker(&queue));
    env.start_worker("w");
    let (url, _) = tls_broker();
    let shown = url.replace("guest:guest@", "guest:***@");
    wait_for("the refusal logged", Duration::from_secs(20), || {
        let log = env.worker_log("w");
        log.contains(&format!("cannot connect to RabbitMQ at {shown}"))
            && log.contains("invalid peer certificate")
            && log.contains("reconnecting in")
    });
    let log = env.worker_log("w");
    assert!(
        !log.contains("guest:guest@"),
        "the password is shown: {log}"
    );
    assert!(!log.contains("consuming"), "{log}");

    // The daemon keeps running and says why in /health.
    env.remove_worker("w");
    env.start_daemon();
    env.wait_api();
    let health: serde_json::Value = reqwest::blocking::get(env.api("/health"))
        .and_then(|r| r.json())
        .expect("/health");
    assert_eq!(health["rabbitmq"], serde_json::json!(false), "{health}");
    let why = health["rabbitmqError"].as_str().unwrap_or_default();
    assert!(
        why.contains("invalid peer certificate") && why.contains(&shown),
        "{health}"
    );
}

/// A TLS server with a certificate signed by the test CA for another host name
/// (`wrong-host.pem`): the handshake is refused before any AMQP is spoken.
struct WrongHost {
    port: u16,
    server: Child,
}

impl WrongHost {
    fn start() -> WrongHost {
        let port = free_port();
        let server = Command::new("openssl")
            .args(["s_server", "-quiet", "-accept", &port.to_string()])
            .args([
                "-cert",
                &cert("wrong-host.pem"),
                "-key",
                &cert("wrong-host.key"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server");
        wait_for("the TLS server listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        WrongHost { port, server }
    }
}

impl Drop for WrongHost {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

#[test]
fn a_broker_certificate_for_another_host_name_is_refused() {
    let wrong = WrongHost::start();
    let env = TestEnv::new("tls_wrong_host");
    let url = format!("amqps://guest:guest@localhost:{}/%2f", wrong.port);
    env.edit_main(
        &format!("  url: {}\n", env.amqp_url),
        &format!("  url: {url}\n  tls: {{ca_file: {}}}\n", cert("ca.pem")),
    );
    let out = env.run(&["send", "anywhere", "{}"]);
    let error = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{error}");
    assert!(error.contains("invalid peer certificate"), "{error}");
    assert!(
        error.contains("not valid for name \"localhost\""),
        "{error}"
    );
    assert!(
        error.contains(&format!("amqps://guest:***@localhost:{}", wrong.port)),
        "{error}"
    );
}

#[test]
fn mutual_tls_presents_the_client_certificate_and_a_foreign_one_is_refused() {
    let tls = |client: &str| {
        format!(
            "{{ca_file: {}, cert_file: {}, key_file: {}}}",
            cert("ca.pem"),
            cert(&format!("{client}.pem")),
            cert(&format!("{client}.key"))
        )
    };
    let env = over_tls("tls_mutual", &tls("client"));
    let queue = env.queue("in");
    env.run_worker("w", &worker(&queue));
    let id = env.send(&queue, "{}");
    env.wait_done(&[id], 1, Duration::from_secs(20));

    let foreign = over_tls("tls_foreign", &tls("other-client"));
    let out = foreign.run(&["send", &queue, "{}"]);
    let error = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{error}");
    assert!(
        error.contains("cannot connect to RabbitMQ at amqps://"),
        "{error}"
    );
}

#[test]
fn a_cluster_given_as_a_list_serves_the_chain_from_any_node() {
    let (urls, _) = cluster_broker();
    let env = TestEnv::with_amqp("cluster_list", &urls[1]);
    env.edit_main(
        &format!("  url: {}\n", env.amqp_url),
        &format!("  url: [{}]\n  queue_type: quorum\n", urls.join(", ")),
    );
    let queue = env.queue("in");
    env.run_worker("w", &worker(&queue));
    let id = env.send(&queue, "{}");
    env.wait_done(&[id], 1, Duration::from_secs(30));
}
