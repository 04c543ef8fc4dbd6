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

    // A cron read in another zone: 09:00 in Tokyo (UTC+9, no daylight saving) is 00:00 UTC.
    let (status, body) = post(
        &env,
        "/api/job/schedule/externalTestJob",
        json!({"interval": "0 9 * * *", "timezone": "Asia/Tokyo"}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, job) = get(&env, "/api/job/status/externalTestJob");
    assert_eq!(job["timezone"], json!("Asia/Tokyo"), "{job}");
    let next = job["nextRunAt"].as_str().expect("nextRunAt");
    assert!(next.ends_with("T00:00:00Z"), "{job}");
    // A later re-schedule without a zone keeps the job's.
    post(
        &env,
        "/api/job/schedule/externalTestJob",
        json!({"interval": "30 9 * * *"}),
    );
    let (_, job) = get(&env, "/api/job/status/externalTestJob");
    assert_eq!(job["timezone"], json!("Asia/Tokyo"), "{job}");
    assert!(
        job["nextRunAt"]
            .as_str()
            .is_some_and(|t| t.ends_with("T00:30:00Z")),
        "{job}"
    );
    let (status, body) = post(
        &env,
        "/api/job/schedule/externalTestJob",
        json!({"interval": "0 9 * * *", "timezone": "Mars/Olympus"}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown timezone"),
        "{body}"
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

/// A daemon on the embedded store with Basic auth (`admin:test`), one worker and the
/// original's jobs: enough for every route to find something.
fn embedded_daemon_with_auth(name: &str) -> TestEnv {
    let env = TestEnv::embedded(name);
    env.write_main_with_auth("{admin: {password: test}}", "");
    env.write_worker(
        "w1",
        &format!(
            "queue: {}\njob_state: 1\nservices: [integration_test_service1]\n",
            env.queue("s1")
        ),
    );
    daemon_with_jobs(&env);
    env
}

fn authed() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `GET /api/openapi.json` is served behind auth, is OpenAPI 3 JSON, and every operation in
/// it is routed: no "no route" 404 and no 405, with plausible path parameters, and a status
/// the document lists for that operation.
#[test]
fn openapi_document_is_served_and_every_operation_is_routed() {
    let env = embedded_daemon_with_auth("apiopenapi");
    let client = authed();
    let anonymous = client
        .get(env.api("/api/openapi.json"))
        .send()
        .expect("GET");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let response = client
        .get(env.api("/api/openapi.json"))
        .basic_auth("admin", Some("test"))
        .send()
        .expect("GET");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let doc: Value = response.json().expect("the document is JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["basicAuth"]["scheme"],
        json!("basic")
    );
    assert_eq!(doc["paths"]["/health"]["get"]["security"], json!([]));

    let plausible = |param: &str, path: &str| -> String {
        match param {
            "name" => "externalTestJob".into(),
            "queue" => env.queue("openapi"),
            "id" if path.starts_with("/api/executions") => "no-such-execution".into(),
            "id" => "w1:no-such-message".into(),
            "worker" => "no-such-worker".into(),
            other => panic!("no plausible value for {{{other}}} in {path}"),
        }
    };
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let mut url = path.clone();
            while let Some(start) = url.find('{') {
                let end = url[start..].find('}').expect("closing brace") + start;
                let value = plausible(&url[start + 1..end], path);
                url.replace_range(start..=end, &value);
            }
            let mut request = client
                .request(
                    method.to_uppercase().parse().expect("method"),
                    env.api(&url),
                )
                .basic_auth("admin", Some("test"));
            if path.starts_with("/api/job/schedule/") {
                request = request.json(&json!({"interval": "2 hours"}));
            } else if path.starts_with("/api/publish/") {
                request = request.json(&json!({"mydata": {"from": "openapi"}}));
            }
            let response = request.send().expect("request");
            let status = response.status();
            let body = response.text().unwrap_or_default();
            let what = format!("{} {url}: {status} {body}", method.to_uppercase());
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}");
            assert!(
                !(status == StatusCode::NOT_FOUND && body.contains("no route")),
                "documented but not routed: {what}"
            );
            assert!(
                operation["responses"].get(status.as_str()).is_some(),
                "status not in the document: {what}"
            );
        }
    }
    assert!(operations >= 20, "only {operations} operations documented");
}

/// Found by tools/api-fuzz.sh: `skip` over i64::MAX passed the query's u64 and made the
/// store fail (500). It is bad input: 400 naming the parameter.
#[test]
fn a_skip_too_large_for_the_store_is_a_400() {
    let env = embedded_daemon_with_auth("apiskip");
    let get = |query: &str| {
        let response = authed()
            .get(env.api(&format!("/api/failed{query}")))
            .basic_auth("admin", Some("test"))
            .send()
            .expect("GET");
        json(response)
    };
    let (status, body) = get("?skip=9223372036854775808");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("skip"),
        "{body}"
    );
    let (status, body) = get("?skip=18446744073709551615&limit=1");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = get("?skip=9223372036854775807");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"items": [], "total": 0}));
}

/// Found by tools/api-fuzz.sh: an interval whose next run is past the last date chrono can
/// represent panicked in the handler, and the client saw the connection closed without an
/// answer. It is a bad schedule: 400 naming it (intervals are at most 1000 years).
#[test]
fn an_interval_too_long_to_represent_is_a_400() {
    let env = embedded_daemon_with_auth("apilonginterval");
    let schedule = |interval: &str| {
        let response = authed()
            .post(env.api("/api/job/schedule/externalTestJob"))
            .basic_auth("admin", Some("test"))
            .json(&json!({ "interval": interval }))
            .send()
            .expect("an answer, not a closed connection");
        json(response)
    };
    for interval in ["300000 years", "2562047788015215h"] {
        let (status, body) = schedule(interval);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{interval}: {body}");
        assert_eq!(
            body["error"],
            json!(format!(
                "interval {interval:?} is too long: at most 1000 years"
            )),
            "{interval}: {body}"
        );
    }
    assert_eq!(
        schedule("1000 years"),
        (StatusCode::OK, json!({"ok": true}))
    );
    let response = authed()
        .get(env.api("/api/job/status/externalTestJob"))
        .basic_auth("admin", Some("test"))
        .send()
        .expect("GET");
    let (status, job) = json(response);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["schedule"], json!("1000 years"), "{job}");
    assert!(
        !env.daemon_log().contains("panicked"),
        "{}",
        env.daemon_log()
    );
}

/// Found by tools/api-fuzz.sh: publishing to a worker's delay queue (`QUEUE.retry.Nms`)
/// declares it without the arguments it has, which RabbitMQ refuses (PRECONDITION_FAILED):
/// the client got a 503 saying only "channel closed". It is bad input: 400 naming the
/// worker and the queue to publish to, and the worker is unharmed.
#[test]
fn publishing_to_a_delay_queue_is_a_400() {
    let env = TestEnv::embedded("apidelayq");
    env.write_main_with_auth("{admin: {password: test}}", "");
    let queue = env.queue("r");
    let delay_queue = env.queue("r.retry.1000ms");
    assert_eq!(delay_queue, format!("{queue}.retry.1000ms"));
    env.write_worker(
        "wr",
        &format!(
            "queue: {queue}\njob_state: 1\nservices: [integration_test_service1]\n\
             retry: {{max_attempts: 2, delay: 1s}}\n"
        ),
    );
    env.start_daemon();
    env.wait_api();
    let health = || {
        authed()
            .get(env.api("/health"))
            .send()
            .map(|r| r.status())
            .ok()
    };
    wait_for("the worker running", Duration::from_secs(30), || {
        health() == Some(StatusCode::OK)
    });
    let publish = |to: &str| {
        let response = authed()
            .post(env.api(&format!("/api/publish/{to}")))
            .basic_auth("admin", Some("test"))
            .json(&json!({"mydata": {}}))
            .send()
            .expect("POST");
        json(response)
    };
    let (status, body) = publish(&delay_queue);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("delay queue of worker \"wr\"") && error.contains(&queue),
        "{body}"
    );
    let (status, body) = publish(&queue);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(health(), Some(StatusCode::OK));
}

/// Found by API fuzzing: RabbitMQ closes the channel of a declare it refuses (406
/// PRECONDITION_FAILED for a queue that exists with other arguments), and the client got a
/// 503 saying only "channel closed". It is bad input: 400 naming the queue and the
/// broker's reason; the daemon then publishes to other queues as before.
#[test]
fn publishing_to_a_queue_with_other_arguments_is_a_400_with_the_reason() {
    let env = TestEnv::embedded("apirefused");
    let capped = env.queue("capped");
    let other = env.queue("other");
    env.declare_capped(&capped, 5);
    env.start_daemon();
    env.wait_api();
    for attempt in 0..2 {
        let (status, body) = post(&env, &format!("/api/publish/{capped}"), json!({"n": 1}));
        assert_eq!(status, StatusCode::BAD_REQUEST, "attempt {attempt}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        let expected = format!(
            "queue {capped:?} exists with other arguments: PRECONDITION_FAILED - inequivalent arg 'x-max-length'"
        );
        assert!(error.starts_with(&expected), "attempt {attempt}: {body}");
        // The outbox opens its channel again: publishing elsewhere works at once.
        let (status, body) = post(&env, &format!("/api/publish/{other}"), json!({"n": 2}));
        assert_eq!(status, StatusCode::OK, "attempt {attempt}: {body}");
        let got = env.get(&other).expect("the message in the other queue");
        assert_eq!(got["executionId"], body["executionId"], "{got}");
    }
    assert_eq!(env.depth(&capped), 0);
    let (_, health) = get(&env, "/health");
    assert_eq!(health["rabbitmq"], json!(true), "{health}");
    assert!(
        env.daemon_log()
            .contains("channel closed by RabbitMQ: '406: PRECONDITION_FAILED"),
        "{}",
        env.daemon_log()
    );
}

/// A message parked from a queue that was declared again with other arguments: RabbitMQ
/// refuses the replay's declare (406). It is bad input, not an outage: 400 naming the queue
/// and the broker's reason (it was a 503 saying only "channel closed"); the message stays
/// parked, a bulk replay counts it as failed, and the CLI gives the same reason.
#[test]
fn replaying_to_a_queue_with_other_arguments_is_a_400_with_the_reason() {
    use dpsd::store::{ParkedBody, ParkedMessage};
    let env = TestEnv::embedded("replayrefused");
    let capped = env.queue("capped");
    env.declare_capped(&capped, 5);
    let id = "w:replay-1".to_string();
    env.rt().block_on(async {
        let store = env.open_store().await;
        let now = chrono::Utc::now();
        let parked = ParkedMessage {
            id: id.clone(),
            body: ParkedBody::Json(json!({"executionId": "replay-1", "n": 1})),
            worker: "w".into(),
            queue: capped.clone(),
            execution_id: Some("replay-1".into()),
            attempts: 3,
            stages_passed: 0,
            error: "exit status 7".into(),
            first_failed_at: now,
            last_failed_at: now,
        };
        store.park(&parked).await.expect("park");
        store.close().await;
    });
    let daemon = env.start_daemon();
    env.wait_api();
    let expected = format!(
        "queue {capped:?} exists with other arguments: PRECONDITION_FAILED - inequivalent arg 'x-max-length'"
    );
    for attempt in 0..2 {
        let (status, body) = post(&env, &format!("/api/failed/{id}/replay"), json!({}));
        assert_eq!(status, StatusCode::BAD_REQUEST, "attempt {attempt}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.starts_with(&expected), "attempt {attempt}: {body}");
    }
    let (status, body) = post(&env, "/api/failed/replay", json!({}));
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"replayed": 0, "failed": 1}))
    );
    let (_, page) = get(&env, "/api/failed");
    assert_eq!(page["total"], json!(1), "the message stays parked: {page}");
    assert_eq!(env.depth(&capped), 0);
    assert!(
        env.daemon_log()
            .contains(&format!("replay failed: {expected}")),
        "{}",
        env.daemon_log()
    );

    // The CLI, with the daemon stopped (it holds the embedded store).
    let mut daemon = env.take_child(daemon);
    daemon.kill().expect("stop the daemon");
    daemon.wait().expect("wait for the daemon");
    let out = env.run(&["failed", "replay", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("dpsd: {expected}")), "{stderr}");
}

#[test]
fn preview_lists_next_fire_times_in_utc_and_the_jobs_zone() {
    let env = TestEnv::new("apipreview");
    daemon_with_jobs(&env);
    let (status, preview) = get(&env, "/api/job/preview/externalTestJob?n=3");
    assert_eq!(status, StatusCode::OK, "{preview}");
    let times = preview["times"].as_array().expect("times");
    assert_eq!(times.len(), 3, "{preview}");
    let (_, job) = get(&env, "/api/job/status/externalTestJob");
    let first: chrono::DateTime<chrono::Utc> = times[0]["utc"]
        .as_str()
        .expect("utc")
        .parse()
        .expect("date");
    let planned: chrono::DateTime<chrono::Utc> = job["nextRunAt"]
        .as_str()
        .expect("nextRunAt")
        .parse()
        .expect("date");
    assert_eq!(first, planned, "the first is the planned run");
    assert_eq!(preview["timezone"], json!("UTC"));

    // An unapplied schedule: the spring-forward night of Berlin shows the jump.
    let url = "/api/job/preview/externalTestJob?n=1000&schedule=30%202%20*%20*%20*&timezone=Europe/Berlin";
    let (status, preview) = get(&env, url);
    assert_eq!(status, StatusCode::OK, "{preview}");
    let times = preview["times"].as_array().expect("times");
    assert_eq!(times.len(), 1000);
    // 02:30 is skipped one night a year: it fires at the jump, 03:00 CEST (01:00 UTC).
    let jump = times
        .iter()
        .find(|t| {
            t["local"]
                .as_str()
                .is_some_and(|l| l.ends_with("T03:00:00+02:00"))
        })
        .expect("a spring-forward night");
    assert!(
        jump["utc"]
            .as_str()
            .is_some_and(|u| u.ends_with("T01:00:00Z")),
        "{jump}"
    );
    // Nothing was applied.
    let (_, after) = get(&env, "/api/job/status/externalTestJob");
    assert_eq!(after["schedule"], json!("90 minutes"));

    for bad in [
        "n=0",
        "n=1001",
        "n=ten",
        "schedule=whenever",
        "timezone=Mars/Olympus",
        "other=1",
    ] {
        let (status, body) = get(&env, &format!("/api/job/preview/externalTestJob?{bad}"));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    let (status, _) = get(&env, "/api/job/preview/nope");
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, manual) = get(&env, "/api/job/preview/testStage1");
    assert_eq!(
        (status, manual["times"].clone()),
        (StatusCode::OK, json!([]))
    );
}
