//! The service kinds of SPEC 4.3 as a worker runs them: exec (timeout, non-zero exit,
//! non-JSON stdout) and http (2xx, 500), with failures parked and nothing lost.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{stage_results, wait_for_some, TestEnv};
use dpsd::store::Status;
use serde_json::json;

/// Starts a worker on a fresh queue with the given inline services (a YAML list).
fn worker_with(env: &TestEnv, services: &str) -> String {
    let queue = env.queue("in");
    env.run_worker(
        "w",
        &format!("queue: {queue}\njob_state: 1\nservices:\n{services}"),
    );
    queue
}

fn parked_error(env: &TestEnv, execution_id: &str) -> String {
    let parked = wait_for_some("the message parked", Duration::from_secs(30), || {
        env.parked()
            .into_iter()
            .find(|p| p.execution_id.as_deref() == Some(execution_id))
    });
    let state = env.execution(execution_id).expect("job state");
    assert_eq!(state.status, Status::Parked);
    parked.error
}

#[test]
fn exec_timeout_non_zero_exit_and_text_output() {
    let env = TestEnv::new("exec");
    let script = env.path("svc.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ninput=$(cat)\ncase \"$input\" in\n  *slow*) sleep 30 ;;\n  *bad*) echo 'broken input' >&2; exit 3 ;;\n  *) echo \"plain text for $DPS_EXECUTION_ID\" ;;\nesac\n",
    )
    .expect("write script");
    let queue = worker_with(
        &env,
        &format!("  - {{exec: [sh, {}], timeout: 1s}}\n", script.display()),
    );

    let slow = env.send(&queue, r#"{"mydata": "slow"}"#);
    let bad = env.send(&queue, r#"{"mydata": "bad"}"#);
    let text = env.send(&queue, r#"{"mydata": "fine"}"#);

    env.wait_done(std::slice::from_ref(&text), 1, Duration::from_secs(30));
    let (_, _, result) = stage_results(&env.execution(&text).expect("state"))[0].clone();
    assert_eq!(result, Some(json!(format!("plain text for {text}"))));

    let error = parked_error(&env, &bad);
    assert!(
        error.contains("exit status 3") && error.contains("broken input"),
        "{error}"
    );
    let error = parked_error(&env, &slow);
    assert!(error.contains("timed out after 1s"), "{error}");
    assert_eq!(env.depth(&queue), 0);
}

/// A tiny HTTP server: `/ok` answers 200 with `{"seen": BODY}`, `/fail` answers 500.
fn http_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    port
}

fn answer(mut stream: std::net::TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request_line = String::new();
    let _ = reader.read_line(&mut request_line);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let (status, reply) = if request_line.contains("/ok") {
        (
            "200 OK",
            format!(r#"{{"seen": {}}}"#, String::from_utf8_lossy(&body)),
        )
    } else {
        ("500 Internal Server Error", "internal boom".to_string())
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

#[test]
fn http_2xx_is_the_result_and_500_parks() {
    let env = TestEnv::new("http");
    let port = http_server();
    let ok_queue = env.queue("ok");
    env.write_worker(
        "ok",
        &format!(
            "queue: {ok_queue}\njob_state: 1\nservices: [{{http: 'http://127.0.0.1:{port}/ok'}}]\n"
        ),
    );
    let fail_queue = env.queue("fail");
    env.write_worker(
        "fail",
        &format!("queue: {fail_queue}\njob_state: 1\nservices: [{{http: 'http://127.0.0.1:{port}/fail'}}]\n"),
    );
    env.start_worker("ok");
    env.start_worker("fail");
    env.wait_consuming("ok", 1);
    env.wait_consuming("fail", 1);

    let good = env.send(&ok_queue, r#"{"mydata": {"x": 1}}"#);
    env.wait_done(std::slice::from_ref(&good), 1, Duration::from_secs(20));
    let (_, _, result) = stage_results(&env.execution(&good).expect("state"))[0].clone();
    let seen = result
        .as_ref()
        .and_then(|r| r.get("seen"))
        .filter(|seen| seen.is_object())
        .expect("the service's JSON reply is the result");
    assert_eq!(seen["executionId"], json!(good));
    assert_eq!(seen["mydata"], json!({"x": 1}));

    let bad = env.send(&fail_queue, r#"{"mydata": {}}"#);
    let error = parked_error(&env, &bad);
    assert!(
        error.contains("HTTP 500") && error.contains("internal boom"),
        "{error}"
    );
}
