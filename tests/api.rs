//! The HTTP API against a running daemon (SPEC 6), including the ports of the original's
//! mocha suites `int_api.js` and `int_api_auth.js` (404 where the original answered 400 for
//! unknown or inactive jobs).

mod common;

use std::time::Duration;

use common::{wait_for, TestEnv};
use reqwest::blocking::{Client, Response};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A daemon with the original's jobs: externalTestJob (exec, 90 minutes), testQueueJob
/// (cron, inactive) and testStage1 (manual publish), on this test's queues.
fn daemon_with_jobs(env: &TestEnv) {
    env.write_job(
        "externalTestJob",
        "schedule: 90 minutes\nexec: [echo, external]\n",
    );
    env.write_job(
        "testQueueJob",
        &format!(
            "schedule: '00 02,10 * * *'\nactive: false\npublish: {{queue: {}}}\n",
            env.queue("task_queue")
        ),
    );
    env.write_job(
        "testStage1",
        &format!(
            "publish: {{queue: {}, message: {{mydata: {{}}}}}}\n",
            env.queue("stage1_test")
        ),
    );
    env.start_daemon();
    env.wait_api();
}

fn json(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().unwrap_or(Value::Null))
}

fn get(env: &TestEnv, path: &str) -> (StatusCode, Value) {
    json(Client::new().get(env.api(path)).send().expect("GET"))
}

fn post(env: &TestEnv, path: &str, body: Value) -> (StatusCode, Value) {
    json(
        Client::new()
            .post(env.api(path))
            .json(&body)
            .send()
            .expect("POST"),
    )
}

#[test]
fn status_of_external_test_job() {
    let env = TestEnv::new("apistatus");
    daemon_with_jobs(&env);
    let (status, job) = get(&env, "/api/job/status/externalTestJob");
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["name"], json!("externalTestJob"));
    assert_eq!(job["type"], json!("interval"));
    assert_eq!(job["schedule"], json!("90 minutes"));
    assert_eq!(job["isRunning"], json!(false));
    assert!(job["nextRunAt"].is_string(), "{job}");
    assert_eq!(job["failCount"], json!(0));
}

#[test]
fn unknown_and_inactive_jobs_are_404() {
    let env = TestEnv::new("api404");
    daemon_with_jobs(&env);
    for path in [
        "/api/job/status/nope",
        "/api/job/status/testQueueJob",
        "/api/job/start/nope",
        "/api/job/start/testQueueJob",
    ] {
        let (status, body) = get(&env, path);
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, _) = post(
        &env,
        "/api/job/schedule/nope",
        json!({"interval": "5 minutes"}),
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get(&env, "/no/such/route");
    assert_eq!(
        (status, body["error"].is_string()),
        (StatusCode::NOT_FOUND, true)
    );
}

#[test]
fn reschedule_shows_in_the_status() {
    let env = TestEnv::new("apischedule");
    daemon_with_jobs(&env);
    let (status, body) = post(
        &env,
        "/api/job/schedule/externalTestJob",
        json!({"interval": "30 minutes"}),
    );
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true})));
    let (_, job) = get(&env, "/api/job/status/externalTestJob");
    assert_eq!(job["schedule"], json!("30 minutes"));
    let next: chrono::DateTime<chrono::Utc> = job["nextRunAt"]
        .as_str()
        .expect("nextRunAt")
        .parse()
        .expect("date");
    let ahead = next - chrono::Utc::now();
    assert!(
        ahead > chrono::Duration::minutes(29) && ahead <= chrono::Duration::minutes(30),
        "{job}"
    );

    let (status, _) = post(
        &env,
        "/api/job/schedule/externalTestJob",
        json!({"interval": "00 02,10 * * *"}),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        get(&env, "/api/job/status/externalTestJob").1["type"],
        json!("cron")
    );
}

#[test]
fn bad_input_is_a_400_or_413_never_a_500() {
    let env = TestEnv::new("apibad");
    daemon_with_jobs(&env);
    let (status, body) = post(
        &env,
        "/api/job/schedule/externalTestJob",
        json!({"interval": "every now and then"}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("neither an interval"),
        "{body}"
    );
    for bad in [
        json!({}),
        json!({"interval": 5}),
        json!([1]),
        json!({"interval": "5m", "extra": 1}),
    ] {
        let (status, body) = post(&env, "/api/job/schedule/externalTestJob", bad.clone());
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let client = Client::new();
    let response = client
        .post(env.api("/api/job/schedule/externalTestJob"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .expect("POST");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let huge = json!({"mydata": "x".repeat(2 * 1024 * 1024)});
    let (status, body) = post(&env, &format!("/api/publish/{}", env.queue("big")), huge);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, _) = post(&env, "/api/publish/q", json!([1, 2]));
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(&env, "/api/publish/amq.reserved", json!({}));
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn start_of_a_publish_job_puts_its_message_on_the_queue() {
    let env = TestEnv::new("apistart");
    daemon_with_jobs(&env);
    let queue = env.queue("stage1_test");
    let (status, body) = get(&env, "/api/job/start/testStage1");
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true})));
    wait_for("the job's message", Duration::from_secs(20), || {
        env.depth(&queue) == 1
    });
    let message = env.get(&queue).expect("message");
    assert_eq!(message["mydata"], json!({}));
    assert!(message["executionId"].is_string());
    wait_for("the run recorded", Duration::from_secs(10), || {
        get(&env, "/api/job/status/testStage1").1["lastStatus"] == json!("ok")
    });
    // POST starts it too.
    let (status, _) = post(&env, "/api/job/start/testStage1", json!({}));
    assert_eq!(status, StatusCode::OK);
    wait_for("the second message", Duration::from_secs(20), || {
        env.depth(&queue) == 1
    });
}

#[test]
fn publish_executions_jobs_and_reload() {
    let env = TestEnv::new("apimisc");
    let (stage1, stage2) = (env.queue("s1"), env.queue("s2"));
    env.write_worker("w1", &format!("queue: {stage1}\nfollow_queue: {stage2}\njob_state: 1\nservices: [integration_test_service1]\n"));
    env.write_worker(
        "w2",
        &format!("queue: {stage2}\njob_state: 2\nservices: [integration_test_service2]\n"),
    );
    daemon_with_jobs(&env);
    let (status, body) = post(
        &env,
        &format!("/api/publish/{stage1}"),
        json!({"mydata": {"via": "api"}}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["executionId"]
        .as_str()
        .expect("executionId")
        .to_string();
    wait_for("state 2", Duration::from_secs(30), || {
        get(&env, &format!("/api/executions/{id}")).1["state"] == json!(2)
    });
    let (_, execution) = get(&env, &format!("/api/executions/{id}"));
    assert_eq!(execution["executionId"], json!(id));
    assert_eq!(
        execution["stages"].as_array().map(Vec::len),
        Some(2),
        "{execution}"
    );
    assert_eq!(execution["stages"][0]["worker"], json!("w1"));
    assert!(execution["stages"][1]["durationMs"].is_number());
    assert_eq!(get(&env, "/api/executions/nope").0, StatusCode::NOT_FOUND);

    let (status, jobs) = get(&env, "/api/jobs");
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = jobs
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    assert_eq!(names, ["externalTestJob", "testQueueJob", "testStage1"]);

    let (status, health) = get(&env, "/health");
    assert_eq!(status, StatusCode::OK, "{health}");
    assert_eq!(health["status"], json!("ok"));

    // A new job file shows after POST /api/reload.
    env.write_job("lateJob", "publish: {queue: late}\n");
    assert_eq!(post(&env, "/api/reload", json!({})).0, StatusCode::OK);
    wait_for("the new job listed", Duration::from_secs(10), || {
        get(&env, "/api/job/status/lateJob").0 == StatusCode::OK
    });
}

/// `int_api_auth.js`: with api.auth set, every route but /health needs the right user.
#[test]
fn basic_auth_guards_every_route_but_health() {
    let env = TestEnv::new("apiauth");
    let hash = {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(b"test salt 16byte").expect("salt");
        argon2::Argon2::default()
            .hash_password(b"h4shed", &salt)
            .expect("hash")
            .to_string()
    };
    env.write_main_with_auth(
        &format!("{{admin: {{password: test}}, ops: {{password_hash: '{hash}'}}}}"),
        "",
    );
    daemon_with_jobs(&env);
    let client = Client::new();
    let status_url = env.api("/api/job/status/externalTestJob");

    let anonymous = client.get(&status_url).send().expect("GET");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some(r#"Basic realm="dpsd""#)
    );
    for (user, password) in [
        ("admin", "wrong"),
        ("nobody", "test"),
        ("admin", ""),
        ("ops", "test"),
    ] {
        let response = client
            .get(&status_url)
            .basic_auth(user, Some(password))
            .send()
            .expect("GET");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{user}:{password}"
        );
    }
    for (user, password) in [("admin", "test"), ("ops", "h4shed")] {
        let response = client
            .get(&status_url)
            .basic_auth(user, Some(password))
            .send()
            .expect("GET");
        assert_eq!(response.status(), StatusCode::OK, "{user}:{password}");
    }
    for path in [
        "/api/jobs",
        "/api/workers",
        "/api/failed",
        "/metrics",
        "/dashboard/",
        "/dashboard/app.js",
        "/agendash/",
    ] {
        let response = client.get(env.api(path)).send().expect("GET");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without credentials"
        );
    }
    let unknown = client.get(env.api("/api/nothing")).send().expect("GET");
    assert_eq!(
        unknown.status(),
        StatusCode::UNAUTHORIZED,
        "auth comes before routing"
    );
    let start = client
        .post(env.api("/api/job/start/testStage1"))
        .send()
        .expect("POST");
    assert_eq!(start.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        client.get(env.api("/health")).send().expect("GET").status(),
        StatusCode::OK
    );
}
