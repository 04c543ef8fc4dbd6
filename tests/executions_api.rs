//! The dashboard's API (SPEC 6, 9) on a running daemon, on both stores: the list of recent
//! executions paged by cursor and filtered, the workers' history the daemon samples, and the
//! bulk delete of a worker's parked messages.

#[macro_use]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{wait_for, TestEnv};
use reqwest::blocking::Client;
use serde_json::Value;

on_both_backends!(a_chain_is_listed_filtered_charted_and_its_parked_messages_deleted);

fn call(env: &TestEnv, method: reqwest::Method, path: &str) -> (u16, Value) {
    let response = Client::new()
        .request(method, env.api(path))
        .send()
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

fn get(env: &TestEnv, path: &str) -> (u16, Value) {
    call(env, reqwest::Method::GET, path)
}

/// Every page of `/api/executions?QUERY` from the first: the ids of each, and each item.
fn pages(env: &TestEnv, query: &str) -> (Vec<Vec<String>>, Vec<Value>) {
    let (mut pages, mut items) = (Vec::new(), Vec::new());
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/executions?{query}&cursor={c}"),
            None => format!("/api/executions?{query}"),
        };
        let (status, page) = get(env, &path);
        assert_eq!(status, 200, "{path}: {page}");
        let listed = page["items"].as_array().expect("items").clone();
        pages.push(
            listed
                .iter()
                .map(|i| i["executionId"].as_str().unwrap_or_default().to_string())
                .collect(),
        );
        items.extend(listed);
        match page["next"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => {
                assert!(page["next"].is_null(), "{page}");
                return (pages, items);
            }
        }
        assert!(pages.len() < 50, "paging does not end");
    }
}

fn ids(env: &TestEnv, query: &str) -> BTreeSet<String> {
    pages(env, query).0.concat().into_iter().collect()
}

/// The sum of `field` over the worker's points in `/api/history`.
fn charted(env: &TestEnv, worker: &str, field: &str) -> u64 {
    let (status, history) = get(env, "/api/history?minutes=60");
    assert_eq!(status, 200, "{history}");
    assert_eq!(history["intervalSeconds"], 5, "{history}");
    let workers = history["workers"].as_array().cloned().unwrap_or_default();
    let Some(points) = workers.iter().find(|w| w["worker"] == worker) else {
        return 0;
    };
    let points = points["points"].as_array().cloned().unwrap_or_default();
    points.iter().filter_map(|p| p[field].as_u64()).sum()
}

fn a_chain_is_listed_filtered_charted_and_its_parked_messages_deleted(env: TestEnv) {
    env.write_main("");
    let (first, _) = env.write_two_stage_chain();
    let broken = env.queue("broken");
    env.write_worker(
        "broken",
        &format!("queue: {broken}\njob_state: 1\nservices: [{{builtin: fail, message: down}}]\n"),
    );
    env.start_daemon();
    env.wait_api();
    let done: BTreeSet<String> = env
        .send_count(&first, r#"{"mydata": {}}"#, 5)
        .into_iter()
        .collect();
    let stuck: BTreeSet<String> = (0..2).map(|_| env.send(&broken, "{}")).collect();
    env.wait_done(
        &done.iter().cloned().collect::<Vec<_>>(),
        2,
        Duration::from_secs(60),
    );
    wait_for("both parked", Duration::from_secs(30), || {
        env.parked_count() == 2
    });

    // Pages of two walk every execution once, newest first, and the last says so.
    let (walked, items) = pages(&env, "limit=2");
    assert_eq!(walked.len(), 4, "{walked:?}");
    let all: BTreeSet<String> = walked.concat().into_iter().collect();
    assert_eq!(all, &done | &stuck);
    assert_eq!(walked.concat().len(), 7);
    let created: Vec<&str> = items
        .iter()
        .map(|i| i["createdAt"].as_str().expect("createdAt"))
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "{created:?}");
    // An item's stages come without their results.
    let chained = items
        .iter()
        .find(|i| i["stages"].as_array().is_some_and(|s| s.len() == 2));
    let chained = chained.expect("an execution of the chain");
    assert!(chained["stages"][0].get("result").is_none(), "{chained}");
    assert_eq!(chained["stages"][0]["worker"], "first");

    // Filters: any stage's worker, the status, both.
    assert_eq!(ids(&env, "worker=first"), done);
    assert_eq!(ids(&env, "worker=last&limit=1"), done);
    assert_eq!(ids(&env, "status=parked"), stuck);
    assert_eq!(ids(&env, "status=parked&worker=broken"), stuck);
    assert!(ids(&env, "status=done&worker=broken").is_empty());
    assert!(ids(&env, "since=2100-01-01T00:00:00Z").is_empty());
    assert_eq!(ids(&env, "until=2100-01-01T00:00:00Z").len(), 7);

    for bad in [
        "limit=0",
        "limit=501",
        "cursor=nope",
        "status=lost",
        "since=yesterday",
        "worker=",
        "stats=done",
    ] {
        let (status, body) = get(&env, &format!("/api/executions?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }

    // The history shows what the chain did, within a few intervals.
    wait_for("the chain charted", Duration::from_secs(30), || {
        charted(&env, "last", "processed") == 5 && charted(&env, "broken", "parked") == 2
    });
    assert_eq!(charted(&env, "first", "processed"), 5);
    let (status, body) = get(&env, "/api/history?minutes=0");
    assert_eq!(status, 400, "{body}");

    // The broken worker's parked messages, discarded together and counted.
    let (status, body) = call(&env, reqwest::Method::DELETE, "/api/failed?worker=broken");
    assert_eq!((status, body["deleted"].as_u64()), (200, Some(2)), "{body}");
    assert_eq!(env.parked_count(), 0);
    let (_, again) = call(&env, reqwest::Method::DELETE, "/api/failed?worker=broken");
    assert_eq!(again["deleted"], 0, "{again}");
    let (status, body) = call(&env, reqwest::Method::DELETE, "/api/failed");
    assert_eq!(status, 400, "{body}");
}
