//! The `check` and `send` commands as an operator types them (SPEC 2).

mod common;

use common::TestEnv;

fn check(env: &TestEnv) -> (i32, String) {
    let out = env.run(&["check"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_accepts_a_valid_configuration() {
    let env = TestEnv::new("checkok");
    env.write_worker(
        "w",
        "queue: a\nfollow_queue: b\njob_state: 1\nservices: [integration_test_service1]\n",
    );
    let (code, text) = check(&env);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("ok") && text.contains("1 worker(s): w"),
        "{text}"
    );
}

#[test]
fn check_reports_every_problem_with_file_and_line() {
    let env = TestEnv::new("checkbad");
    env.write_worker(
        "typo",
        "queue: a\njob_state: 1\nservices: [integration_test_service1]\nreplicaz: 2\n",
    );
    env.write_worker(
        "unknown",
        "queue: a\njob_state: 1\nservices:\n  - integration_test_service1\n  - no_such_service\n",
    );
    env.write_worker("syntax", "queue: a\njob_state: [1\n");
    env.write_worker(
        "duration",
        "queue: a\njob_state: 1\nservices: [{builtin: sleep, duration: a while}]\n",
    );
    let (code, text) = check(&env);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("typo.yaml:4: unknown field `replicaz`"),
        "{text}"
    );
    assert!(
        text.contains("unknown.yaml:5: unknown service id \"no_such_service\""),
        "{text}"
    );
    assert!(text.contains("syntax.yaml:"), "{text}");
    assert!(text.contains("duration.yaml:3:"), "{text}");
}

#[test]
fn check_reports_main_file_problems() {
    let env = TestEnv::new("checkmain");
    env.write_main("supervisor_typo: 1\n");
    let (code, text) = check(&env);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("dpsd.yaml:") && text.contains("supervisor_typo"),
        "{text}"
    );

    env.write_main("bad_service_section: [\n");
    let (code, text) = check(&env);
    assert_eq!(code, 1, "{text}");
}

#[test]
fn check_reports_tls_files_that_are_missing_or_not_pem_and_warns_of_tls_unused() {
    let env = TestEnv::new("checktls");
    std::fs::write(env.path("garbage.pem"), "not a certificate\n").expect("write");
    let amqps = env.amqp_url.replacen("amqp://", "amqps://", 1);
    env.edit_main(
        &format!("  url: {}\n", env.amqp_url),
        &format!("  url: {amqps}\n  tls:\n    ca_file: missing.pem\n    cert_file: garbage.pem\n"),
    );
    let (code, text) = check(&env);
    assert_eq!(code, 1, "{text}");
    let line = |needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_default()
            .to_string()
    };
    assert!(line("amqp.tls.ca_file").contains("dpsd.yaml:4:"), "{text}");
    assert!(line("amqp.tls.ca_file").contains("missing.pem"), "{text}");
    assert!(
        line("amqp.tls.cert_file").contains("no PEM certificate"),
        "{text}"
    );
    assert!(
        text.contains("cert_file and key_file go together"),
        "{text}"
    );

    // Valid files, and no amqps:// node: a warning, not an error.
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=dpsd-test",
        ])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(env.path(""))
        .output()
        .expect("run openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    env.write_main("");
    env.edit_main(
        &format!("  url: {}\n", env.amqp_url),
        &format!(
            "  url: {}\n  tls: {{ca_file: cert.pem, cert_file: cert.pem, key_file: key.pem}}\n",
            env.amqp_url
        ),
    );
    let out = env.run(&["check"]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("warning:") && text.contains("no amqp.url is amqps://"),
        "{text}"
    );
}

#[test]
fn check_refuses_an_empty_node_list_and_names_a_bad_node_by_position() {
    let env = TestEnv::new("checknodes");
    env.edit_main(&format!("  url: {}\n", env.amqp_url), "  url: []\n");
    let (code, text) = check(&env);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("amqp.url lists no node"), "{text}");
    env.write_main("");
    env.edit_main(
        &format!("  url: {}\n", env.amqp_url),
        &format!("  url: [{}, 'http://u:s3cret@h']\n", env.amqp_url),
    );
    let (code, text) = check(&env);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("amqp.url (node 2): scheme must be amqp or amqps"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn environment_variables_override_the_file_and_are_checked() {
    let env = TestEnv::new("checkenv");
    let out = env
        .dpsd()
        .arg("check")
        .env("DPSD_AMQP__PREFETCH", "lots")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("DPSD_AMQP__PREFETCH: invalid type"), "{text}");
    let out = env
        .dpsd()
        .arg("check")
        .env("DPSD_AMQP__PREFETCH", "3")
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env
        .dpsd()
        .arg("check")
        .env("DPSD_AMPQ__URL", "amqp://x")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DPSD_AMPQ__URL: unknown section"));
}

#[test]
fn send_reads_stdin_and_adds_an_execution_id() {
    use std::io::Write;
    let env = TestEnv::new("send");
    let queue = env.queue("q");
    let mut child = env
        .dpsd()
        .args(["send", &queue])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"mydata": {"from": "stdin"}}"#)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success());
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let message = env.get(&queue).expect("published");
    assert_eq!(message["executionId"], serde_json::json!(id));
    assert_eq!(message["mydata"]["from"], serde_json::json!("stdin"));

    let kept = env.send(&queue, r#"{"executionId": "mine"}"#);
    assert_eq!(kept, "mine");
}

#[test]
fn send_count_publishes_copies_with_their_own_ids() {
    let env = TestEnv::new("sendcount");
    let queue = env.queue("q");
    let out = env.run(&["send", &queue, r#"{"mydata": {}}"#, "--count", "5"]);
    assert!(out.status.success());
    let ids: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(env.depth(&queue), 5);
    let out = env.run(&["send", &queue, r#"{"executionId": "x"}"#, "--count", "2"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn send_refuses_what_is_not_a_json_object() {
    let env = TestEnv::new("sendbad");
    let queue = env.queue("q");
    for bad in ["[1]", "{oops", "42"] {
        let out = env.run(&["send", &queue, bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    }
}

#[test]
fn worker_for_an_unknown_name_is_a_configuration_error() {
    let env = TestEnv::new("noworker");
    let out = env.run(&["worker", "ghost"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost.yaml"));
}

/// Found by API fuzzing: an interval of `300000 years` has no next run that can be
/// represented, and the scheduler panicked adding it to now. `check` reports it at its line.
#[test]
fn check_reports_an_interval_too_long() {
    let env = TestEnv::embedded("checklong");
    env.write_job("ages", "exec: [echo, hi]\nschedule: 300000 years\n");
    let (code, text) = check(&env);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("ages.yaml:2: interval \"300000 years\" is too long: at most 1000 years"),
        "{text}"
    );
}

/// SPEC 5.1: an unknown timezone, in a job or as `scheduler.timezone`, is a configuration
/// error naming the file and line.
#[test]
fn check_reports_an_unknown_timezone_with_file_and_line() {
    let env = TestEnv::embedded("checkzone");
    env.write_job(
        "berlin",
        "exec: [echo, hi]\nschedule: '0 9 * * *'\ntimezone: Europe/Berlin\n",
    );
    env.write_job(
        "mars",
        "exec: [echo, hi]\nschedule: '0 9 * * *'\ntimezone: Mars/Olympus\n",
    );
    let (code, text) = check(&env);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("mars.yaml:3: unknown timezone \"Mars/Olympus\""),
        "{text}"
    );
    assert!(!text.contains("berlin.yaml"), "{text}");

    env.write_main("scheduler:\n  timezone: Europe/Atlantis\n");
    let (code, text) = check(&env);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("dpsd.yaml:") && text.contains("unknown timezone \"Europe/Atlantis\""),
        "{text}"
    );
}

#[test]
fn job_preview_prints_fire_times_in_utc_and_the_jobs_zone() {
    let env = TestEnv::embedded("jobpreview");
    env.write_job(
        "nightly",
        "exec: [echo, hi]\nschedule: '30 2 * * *'\ntimezone: Europe/Berlin\n",
    );
    let out = env.run(&["job", "preview", "nightly", "-n", "400"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "job nightly: 30 2 * * * in Europe/Berlin");
    assert_eq!(lines.len(), 401, "{text}");
    // Within 400 days there is a spring-forward night: 02:30 then fires at 03:00 CEST.
    assert!(
        lines.iter().any(|l| l.ends_with("T03:00:00+02:00")),
        "{text}"
    );
    assert!(lines[1..].iter().all(|l| l.contains("Z  ")), "{text}");
    let out = env.run(&["job", "preview", "nightly", "-n", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let out = env.run(&["job", "preview", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}
