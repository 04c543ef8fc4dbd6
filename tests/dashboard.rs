//! The dashboard in a real browser (SPEC 9): headless Chromium driven by Playwright
//! (`tests/dashboard/drive.py`, installed by `scripts/ensure-browser.sh`) against a
//! running daemon.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{wait_for, TestEnv};
use dpsd::store::Status;
use serde_json::Value;

/// Runs one step of drive.py; panics with its output unless it printed "ok".
fn drive(env: &TestEnv, step: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/dashboard/drive.py"))
        .arg(env.api(""))
        .args(step)
        .output()
        .expect("run tests/dashboard/drive.py (scripts/ensure-browser.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "dashboard step {step:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dashboard_drives_jobs_failed_messages_and_shows_workers() {
    let env = TestEnv::new("dashboard");
    let (stage1, broken) = (env.queue("stage1_test"), env.queue("broken"));
    let flag = env.path("mended");
    env.write_job(
        "testStage1",
        &format!("publish: {{queue: {stage1}, message: {{mydata: {{}}}}}}\n"),
    );
    env.write_job(
        "externalTestJob",
        "schedule: 90 minutes\nexec: [echo, external]\n",
    );
    env.write_worker(
        "w",
        &format!(
            "queue: {stage1}\njob_state: 1\nreplicas: 2\nservices: [integration_test_service1]\n"
        ),
    );
    env.write_worker(
        "fragile",
        &format!("queue: {broken}\njob_state: 1\nservices: [{{exec: [sh, -c, 'test -f {} && echo ok || exit 4']}}]\n", flag.display()),
    );
    env.start_daemon();
    env.wait_api();

    drive(&env, &["jobs", "testStage1", "externalTestJob"]);
    drive(&env, &["pause", "externalTestJob"]);
    drive(&env, &["resume", "externalTestJob"]);
    // Tokyo keeps no daylight saving: 02:30 there is always 17:30 UTC the day before.
    drive(
        &env,
        &[
            "preview",
            "externalTestJob",
            "30 2 * * *",
            "Asia/Tokyo",
            "T02:30:00+09:00",
        ],
    );
    drive(&env, &["run", "testStage1"]);
    wait_for(
        "the job's message processed",
        Duration::from_secs(20),
        || env.daemon_log().contains("published") && env.daemon_log().matches(" done").count() >= 1,
    );

    let id = env.send(&broken, "{}");
    wait_for("the message parked", Duration::from_secs(20), || {
        env.parked().len() == 1
    });
    std::fs::write(&flag, "").expect("mend");
    drive(&env, &["replay", &format!("fragile:{id}")]);
    env.wait_done(std::slice::from_ref(&id), 1, Duration::from_secs(20));

    drive(&env, &["replicas", "w", "2"]);
    env.write_worker(
        "w",
        &format!(
            "queue: {stage1}\njob_state: 1\nreplicas: 3\nservices: [integration_test_service1]\n"
        ),
    );
    drive(&env, &["replicas", "w", "3"]);
}

/// `GET path` of the daemon's API as JSON.
fn get(env: &TestEnv, path: &str) -> Value {
    reqwest::blocking::get(env.api(path))
        .and_then(|r| r.json())
        .unwrap_or(Value::Null)
}

/// The sum of one counter over every worker, as `/api/workers` reports it.
fn counted(env: &TestEnv, counter: &str) -> u64 {
    get(env, "/api/workers")
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter_map(|w| w["counters"][counter].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// The pages of issue 21 against a daemon with data in it: a two-stage chain that ran, parked
/// messages (of a worker that fails until mended, and of one that always fails), an
/// execution waiting for its retry, and a job whose last run failed.
#[test]
fn the_dashboard_pages_show_what_the_api_reports_and_act_on_it() {
    let env = TestEnv::new("dashpages");
    let (first, _) = env.write_two_stage_chain();
    let (fragile, broken, flaky) = (
        env.queue("fragile"),
        env.queue("broken"),
        env.queue("flaky"),
    );
    let mended = env.path("mended");
    env.write_worker(
        "fragile",
        &format!(
            "queue: {fragile}\njob_state: 1\nservices: [{{exec: [sh, -c, 'test -f {} && echo ok || exit 4']}}]\n",
            mended.display()
        ),
    );
    env.write_worker(
        "broken",
        &format!("queue: {broken}\njob_state: 1\nservices: [{{exec: [sh, -c, 'exit 3']}}]\n"),
    );
    env.write_worker(
        "flaky",
        &format!(
            "queue: {flaky}\njob_state: 1\nretry: {{max_attempts: 5, delay: 10m}}\n\
             services: [{{exec: [sh, -c, 'exit 5']}}]\n"
        ),
    );
    env.write_job("failingJob", "exec: [sh, -c, 'exit 7']\n");
    env.start_daemon();
    env.wait_api();

    let chain = env.send_count(&first, r#"{"mydata": {}}"#, 2);
    env.wait_done(&chain, 2, Duration::from_secs(30));
    let repaired = env.send_count(&fragile, "{}", 3);
    env.send_count(&broken, "{}", 2);
    let waiting = env.send(&flaky, "{}");
    wait_for("five parked", Duration::from_secs(30), || {
        env.parked_count() == 5
    });
    env.wait_status(&waiting, Status::Retrying);
    // The counters reach the API within a second or so: the overview compares against them.
    wait_for("the counters reported", Duration::from_secs(20), || {
        counted(&env, "processed") == 4 && counted(&env, "parked") == 5
    });

    drive(&env, &["run", "failingJob"]);
    wait_for("the job's run failed", Duration::from_secs(20), || {
        get(&env, "/api/job/status/failingJob")["lastStatus"] == "failed"
    });

    drive(
        &env,
        &[
            "overview",
            "+",
            "filters",
            "parked",
            "first",
            "+",
            "timeline",
            &chain[0],
            "+",
            "timeline",
            &waiting,
            "+",
            "charts",
            "first",
            "+",
            "axe",
            "overview",
            "executions",
            &format!("execution/{}", chain[0]),
            "workers",
            "jobs",
            "failed",
        ],
    );

    // Screenshots for docs/: kept only when asked for (DPSD_SCREENSHOTS=folder).
    // Before them, a minute of traffic through the chain, so the charts have a shape.
    if let Ok(folder) = std::env::var("DPSD_SCREENSHOTS") {
        for i in 0..60 {
            if i % 4 > 0 {
                env.send_count(&first, r#"{"mydata": {}}"#, i % 4);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let mut steps: Vec<String> = Vec::new();
        let execution = format!("execution/{}", chain[0]);
        for (view, name) in [
            ("overview", "overview"),
            ("executions", "executions"),
            (execution.as_str(), "execution"),
            ("workers", "workers"),
            ("jobs", "jobs"),
            ("failed", "failed"),
        ] {
            let path = format!("{folder}/dashboard-{name}.png");
            steps.extend(["screenshot".into(), view.into(), path, "+".into()]);
        }
        let steps: Vec<&str> = steps.iter().map(String::as_str).collect();
        drive(&env, &steps);
    }

    std::fs::write(&mended, "").expect("mend the fragile worker");
    drive(
        &env,
        &[
            "worker-pause",
            "first",
            "+",
            "worker-resume",
            "first",
            "+",
            "cancel",
            &waiting,
            "+",
            "replay-execution",
            &repaired[0],
            "+",
            "bulk",
            "replay",
            "fragile",
            "2",
            "+",
            "bulk",
            "delete",
            "broken",
            "2",
        ],
    );
    env.wait_done(&repaired, 1, Duration::from_secs(30));
    assert_eq!(
        env.parked_count(),
        0,
        "every parked message replayed or deleted"
    );
}
