//! The scheduler against a running daemon (SPEC 5): intervals firing, outcomes recorded,
//! one run per occurrence across daemons sharing a database, and `scheduler.active`.

#[macro_use]
mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{free_port, wait_for, wait_for_some, TestEnv};
use reqwest::blocking::Client;
use serde_json::Value;

fn status(env: &TestEnv, job: &str) -> Value {
    Client::new()
        .get(env.api(&format!("/api/job/status/{job}")))
        .send()
        .and_then(|r| r.json())
        .unwrap_or(Value::Null)
}

/// The job's planned next run, once the daemon has defined it.
fn next_run_at(env: &TestEnv, job: &str) -> Option<DateTime<Utc>> {
    let planned = status(env, job)["nextRunAt"].as_str()?.to_string();
    let planned = DateTime::parse_from_rfc3339(&planned).expect("nextRunAt in RFC 3339");
    Some(planned.with_timezone(&Utc))
}

/// A job that appends the time of each run (ns since the epoch) to `file`.
fn stamping_job(schedule: &str, file: &Path) -> String {
    format!(
        "schedule: {schedule}\nexec: [sh, -c, 'date +%s%N >> {}']\n",
        file.display()
    )
}

fn stamps(file: &Path) -> Vec<i128> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut stamps: Vec<i128> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    stamps.sort();
    stamps
}

#[test]
fn a_two_second_job_fires_repeatedly_on_time() {
    let env = TestEnv::new("every2s");
    let file = env.path("runs");
    env.write_job("tick", &stamping_job("2 seconds", &file));
    env.start_daemon();
    wait_for("four runs", Duration::from_secs(20), || {
        stamps(&file).len() >= 4
    });
    let runs = stamps(&file);
    for pair in runs.windows(2) {
        let gap_ms = (pair[1] - pair[0]) / 1_000_000;
        assert!(
            (1500..=2500).contains(&gap_ms),
            "runs {gap_ms} ms apart: {runs:?}"
        );
    }
    let job = status(&env, "tick");
    assert_eq!(job["lastStatus"], "ok", "{job}");
}

#[test]
fn an_exec_jobs_outcome_is_recorded() {
    let env = TestEnv::new("execjob");
    env.write_job(
        "broken",
        "exec: [sh, -c, 'echo half done; echo oh no >&2; exit 3']\n",
    );
    env.write_job("fine", "exec: [sh, -c, 'echo all good']\n");
    env.start_daemon();
    env.wait_api();
    for job in ["broken", "fine"] {
        let response = Client::new()
            .post(env.api(&format!("/api/job/start/{job}")))
            .send()
            .expect("start");
        assert!(response.status().is_success(), "{job}");
    }
    wait_for("both runs recorded", Duration::from_secs(20), || {
        status(&env, "broken")["lastFinishedAt"].is_string()
            && status(&env, "fine")["lastFinishedAt"].is_string()
    });
    let broken = status(&env, "broken");
    assert_eq!(broken["lastStatus"], "failed", "{broken}");
    assert_eq!(broken["failCount"], 1);
    assert_eq!(broken["failReason"], "exit status 3");
    assert_eq!(status(&env, "fine")["lastStatus"], "ok");
    let log = env.daemon_log();
    assert!(
        log.contains("half done") && log.contains("oh no") && log.contains("all good"),
        "output lines are logged"
    );
}

#[test]
fn two_daemons_on_one_database_run_each_occurrence_once() {
    let env = TestEnv::new("twohosts");
    let file = env.path("runs");
    env.write_job("tick", &stamping_job("1 second", &file));
    let second = env.path("second.yaml");
    let main = std::fs::read_to_string(env.config_path()).expect("main file");
    let other = main.replace(
        &format!("127.0.0.1:{}", env.api_port),
        &format!("127.0.0.1:{}", free_port()),
    );
    std::fs::write(&second, other).expect("second main file");
    env.start_daemon();
    env.start_daemon_at(&second, "daemon2.log");
    wait_for("both daemons scheduling", Duration::from_secs(20), || {
        env.daemon_log().contains("job defined")
            && std::fs::read_to_string(env.path("daemon2.log"))
                .unwrap_or_default()
                .contains("job defined")
    });
    let start = stamps(&file).len();
    std::thread::sleep(Duration::from_secs(10));
    let runs = stamps(&file)[start..].to_vec();
    assert!(
        (8..=11).contains(&runs.len()),
        "{} runs in 10 s: {runs:?}",
        runs.len()
    );
    for pair in runs.windows(2) {
        let gap_ms = (pair[1] - pair[0]) / 1_000_000;
        assert!(
            gap_ms >= 500,
            "two runs {gap_ms} ms apart: an occurrence ran twice ({runs:?})"
        );
    }
}

#[test]
fn scheduler_inactive_fires_nothing_but_start_works() {
    let env = TestEnv::new("inactive");
    env.write_main("scheduler: {active: false}\n");
    let file = env.path("runs");
    env.write_job("tick", &stamping_job("1 second", &file));
    env.start_daemon();
    env.wait_api();
    // Waited for: the planned run gone by two seconds. A host firing the job would have
    // taken the occurrence (moving `nextRunAt` on) and run it by then.
    let planned = wait_for_some("the job planned", Duration::from_secs(10), || {
        next_run_at(&env, "tick")
    });
    wait_for(
        "two seconds past the planned run",
        Duration::from_secs(10),
        || Utc::now() > planned + chrono::Duration::seconds(2),
    );
    assert!(
        stamps(&file).is_empty(),
        "a job fired with scheduler.active false"
    );
    assert_eq!(
        next_run_at(&env, "tick"),
        Some(planned),
        "the occurrence was taken"
    );
    let response = Client::new()
        .post(env.api("/api/job/start/tick"))
        .send()
        .expect("start");
    assert!(response.status().is_success());
    wait_for("the started run", Duration::from_secs(10), || {
        stamps(&file).len() == 1
    });
}

#[test]
fn job_run_runs_one_job_in_the_foreground() {
    let env = TestEnv::new("jobrun");
    let queue = env.queue("out");
    env.write_job(
        "testStage1",
        &format!("publish: {{queue: {queue}, message: {{mydata: {{}}}}, count: 3}}\n"),
    );
    let out = env.run(&["job", "run", "testStage1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(env.depth(&queue), 3);
    let out = env.run(&["job", "run", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Stops a daemon as SIGTERM does and waits for it to exit.
fn stop(env: &TestEnv, daemon: u32) {
    let pid = nix::unistd::Pid::from_raw(daemon as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = env.take_child(daemon).wait();
}

/// Starts a daemon with two 6-second jobs, one `catch_up: once` and one `skip`, and stops
/// it before their first occurrence; returns once that occurrence went by unrun.
fn stop_across_an_occurrence(env: &TestEnv) -> DateTime<Utc> {
    for (job, catch_up) in [("once", "once"), ("skip", "skip")] {
        let file = env.path(job);
        let yaml = stamping_job("6 seconds", &file);
        env.write_job(job, &format!("{yaml}catch_up: {catch_up}\n"));
    }
    let daemon = env.start_daemon();
    env.wait_api();
    let planned = wait_for_some("the job planned", Duration::from_secs(10), || {
        next_run_at(env, "once")
    });
    stop(env, daemon);
    wait_for("the occurrence gone by", Duration::from_secs(10), || {
        Utc::now() > planned + chrono::Duration::seconds(1)
    });
    assert!(stamps(&env.path("once")).is_empty(), "ran while stopped");
    planned
}

fn catch_up_once_runs_a_missed_occurrence_at_start_and_skip_does_not(env: TestEnv) {
    stop_across_an_occurrence(&env);
    let restart = Utc::now();
    env.start_daemon();
    let ran = wait_for_some("the catch-up run", Duration::from_secs(10), || {
        stamps(&env.path("once")).first().copied()
    });
    let ran_at = DateTime::from_timestamp_nanos(ran as i64);
    assert!(
        ran_at - restart < chrono::Duration::seconds(4),
        "caught up {} after the restart",
        ran_at - restart
    );
    // The skipping job plans its next occurrence from the restart, one interval on.
    let skip_next = wait_for_some("the skipping job planned", Duration::from_secs(5), || {
        next_run_at(&env, "skip").filter(|t| *t > restart)
    });
    assert!(
        stamps(&env.path("skip")).is_empty(),
        "catch_up: skip ran a missed occurrence"
    );
    assert!(
        skip_next - restart >= chrono::Duration::seconds(5),
        "{skip_next}"
    );
    // The interval counts again from the catch-up run.
    let second = wait_for_some(
        "the run after the catch-up",
        Duration::from_secs(12),
        || stamps(&env.path("once")).get(1).copied(),
    );
    let gap_ms = (second - ran) / 1_000_000;
    assert!(
        (5500..=7000).contains(&gap_ms),
        "{gap_ms} ms after the catch-up run"
    );
    assert!(env
        .daemon_log()
        .contains("catching up on the occurrence missed at"));
}

#[test]
fn two_daemons_starting_together_run_the_catch_up_once() {
    let env = TestEnv::new("catchuptwo");
    stop_across_an_occurrence(&env);
    let second = env.path("second.yaml");
    let main = std::fs::read_to_string(env.config_path()).expect("main file");
    let other = main.replace(
        &format!("127.0.0.1:{}", env.api_port),
        &format!("127.0.0.1:{}", free_port()),
    );
    std::fs::write(&second, other).expect("second main file");
    env.start_daemon();
    env.start_daemon_at(&second, "daemon2.log");
    wait_for("the catch-up run", Duration::from_secs(10), || {
        !stamps(&env.path("once")).is_empty()
    });
    // The next occurrence is 6 s on: anything within 3 s would be a second catch-up.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stamps(&env.path("once")).len(), 1, "the catch-up ran twice");
}

fn post(env: &TestEnv, path: &str) -> u16 {
    Client::new()
        .post(env.api(path))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Waits `seconds` (a span in which a 1-second job would fire), then returns the runs.
fn runs_after(file: &Path, seconds: i64) -> usize {
    let until = Utc::now() + chrono::Duration::seconds(seconds);
    wait_for("the span to pass", Duration::from_secs(30), || {
        Utc::now() > until
    });
    stamps(file).len()
}

fn a_pause_holds_across_a_restart_and_a_file_edit_until_resumed(env: TestEnv) {
    let file = env.path("runs");
    env.write_job("tick", &stamping_job("1 second", &file));
    let daemon = env.start_daemon();
    wait_for("a run", Duration::from_secs(15), || {
        !stamps(&file).is_empty()
    });
    assert_eq!(post(&env, "/api/job/pause/tick"), 200);
    assert_eq!(post(&env, "/api/job/pause/tick"), 200, "idempotent");
    assert_eq!(status(&env, "tick")["paused"], true);
    // A run taken just before the pause may still finish; none starts after it.
    let paused = runs_after(&file, 1);
    assert_eq!(runs_after(&file, 3), paused, "a paused job fired");

    stop(&env, daemon);
    env.start_daemon();
    env.wait_api();
    assert_eq!(
        status(&env, "tick")["paused"],
        true,
        "the pause outlives a restart"
    );
    env.write_job("tick", &stamping_job("2 seconds", &file));
    wait_for("the edit applied", Duration::from_secs(10), || {
        status(&env, "tick")["schedule"] == "2 seconds"
    });
    assert_eq!(
        status(&env, "tick")["paused"],
        true,
        "the pause outlives an edit"
    );
    assert_eq!(runs_after(&file, 3), paused, "a paused job fired");

    // An explicit start still runs it.
    assert_eq!(post(&env, "/api/job/start/tick"), 200);
    wait_for("the started run", Duration::from_secs(10), || {
        stamps(&file).len() == paused + 1
    });
    // Resumed, it catches up on the occurrence missed meanwhile at once, then fires on.
    assert_eq!(post(&env, "/api/job/resume/tick"), 200);
    assert_eq!(post(&env, "/api/job/resume/tick"), 200, "idempotent");
    assert_eq!(status(&env, "tick")["paused"], false);
    wait_for("runs again", Duration::from_secs(10), || {
        stamps(&file).len() >= paused + 3
    });
    for path in ["/api/job/pause/nope", "/api/job/resume/nope"] {
        assert_eq!(post(&env, path), 404, "{path}");
    }

    // Deleting the file removes the job and its pause.
    assert_eq!(post(&env, "/api/job/pause/tick"), 200);
    std::fs::remove_file(env.path("jobs.d/tick.yaml")).expect("remove the job file");
    wait_for("the job gone", Duration::from_secs(10), || {
        status(&env, "tick")["name"].is_null()
    });
    env.write_job("tick", &stamping_job("1 second", &file));
    wait_for("the job back", Duration::from_secs(10), || {
        status(&env, "tick")["paused"] == false
    });
}

on_both_backends!(
    catch_up_once_runs_a_missed_occurrence_at_start_and_skip_does_not,
    a_pause_holds_across_a_restart_and_a_file_edit_until_resumed,
);
