//! The dashboard in a real browser (SPEC 9): headless Chromium driven by Playwright
//! (`tests/dashboard/drive.py`, installed by `scripts/ensure-browser.sh`) against a
//! running daemon.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{wait_for, TestEnv};

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

    // Screenshots for docs/: kept only when asked for (DPSD_SCREENSHOTS=folder).
    if let Ok(folder) = std::env::var("DPSD_SCREENSHOTS") {
        for view in ["workers", "jobs"] {
            drive(
                &env,
                &[
                    "screenshot",
                    view,
                    &format!("{folder}/dashboard-{view}.png"),
                ],
            );
        }
    }
}
