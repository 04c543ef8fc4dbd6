//! dpsd as PID 1, as in a container (SPEC 13), in a PID namespace of the test's own
//! (`unshare --pid --fork`): the init it leaves behind adopts and reaps orphans (no zombie),
//! the supervisor still gets its replicas' exit statuses, and SIGTERM to PID 1 drains and
//! ends with exit status 0.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{children_of, dpsd_binary, replicas_of, wait_for, wait_for_some, TestEnv};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::Value;

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(pid as i32), signal).expect("signal");
}

fn get(env: &TestEnv, path: &str) -> Option<(StatusCode, Value)> {
    let response = Client::new().get(env.api(path)).send().ok()?;
    let status = response.status();
    Some((status, response.json().unwrap_or(Value::Null)))
}

#[test]
fn as_pid_1_dpsd_reaps_orphans_keeps_replica_statuses_and_drains_on_sigterm() {
    if !Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        panic!("`unshare --pid --fork` does not work here (needs root and util-linux)");
    }
    let env = TestEnv::embedded("pid1");
    env.write_worker(
        "w",
        &format!(
            "queue: {}\njob_state: 1\nservices: [integration_test_service1]\n",
            env.queue("in")
        ),
    );
    // The shell exits at once; its `sleep` is orphaned and adopted by PID 1.
    env.write_job("orphan", "exec: [sh, -c, 'sleep 1 & echo started']\n");
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", dpsd_binary(), "--config"])
        .arg(env.config_path())
        .arg("run");
    let unshare = env.start_logged(&mut command, "daemon.log");
    env.wait_api();
    wait_for("/readyz 200", Duration::from_secs(30), || {
        get(&env, "/readyz").is_some_and(|(s, _)| s == StatusCode::OK)
    });
    let init = wait_for_some("PID 1 of the namespace", Duration::from_secs(5), || {
        children_of(unshare).first().map(|(pid, _, _)| *pid)
    });
    let daemons = children_of(init);
    assert_eq!(daemons.len(), 1, "PID 1's children: {daemons:?}");
    let daemon = daemons[0].0;
    assert!(daemons[0].2.ends_with(" run"), "{daemons:?}");

    let started = Client::new()
        .post(env.api("/api/job/start/orphan"))
        .send()
        .expect("POST start");
    assert_eq!(started.status(), StatusCode::OK);
    wait_for(
        "the orphan adopted by PID 1",
        Duration::from_secs(10),
        || {
            children_of(init)
                .iter()
                .any(|(_, _, args)| args == "sleep 1")
        },
    );
    wait_for(
        "the orphan reaped: PID 1 has the daemon alone",
        Duration::from_secs(10),
        || {
            children_of(init)
                .iter()
                .map(|(pid, _, _)| *pid)
                .eq([daemon])
        },
    );

    // A replica's exit status is the supervisor's, not taken by PID 1's reaping.
    let (replica, _) = wait_for_some("the replica", Duration::from_secs(10), || {
        replicas_of(daemon, "w").first().copied()
    });
    signal(replica, Signal::SIGKILL);
    wait_for("lastExit signal SIGKILL", Duration::from_secs(10), || {
        get(&env, "/api/workers")
            .is_some_and(|(_, w)| w[0]["lastExit"] == "signal SIGKILL" && w[0]["restarts"] == 1)
    });
    wait_for("the replica restarted", Duration::from_secs(10), || {
        get(&env, "/readyz").is_some_and(|(s, _)| s == StatusCode::OK)
    });

    signal(init, Signal::SIGTERM);
    let mut child = env.take_child(unshare);
    let status = wait_for_some("dpsd to exit", Duration::from_secs(15), || {
        child.try_wait().expect("try_wait")
    });
    assert!(status.success(), "exit {status}: {}", env.daemon_log());
    assert!(env.daemon_log().contains("replica stopped (exit status 0)"));
}
