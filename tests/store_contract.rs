//! One contract, two backends (SPEC 3.1): every store operation the project uses behaves
//! the same on MongoDB and on the embedded SQLite store.

use std::sync::Arc;

use chrono::{Duration, DurationRound, Utc};
use dpsd::config::{CatchUp, JobKind, MongoSettings, RateLimit};
use dpsd::store::{
    Cancel, EmbeddedStore, Execution, ExecutionQuery, JobDefinition, MongoStore, ParkedBody,
    ParkedMessage, RateSlot, RunOutcome, RunStatus, Stage, Status, Store,
};

/// A pause that moves the stores' millisecond clocks on.
async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}
use serde_json::json;

/// A store of each kind, with a database or folder of its own, and what removes it after.
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
    database: Option<String>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let (Some(database), Ok(uri)) = (&self.database, std::env::var("DPSD_TEST_MONGODB_URI"))
        {
            let database = database.clone();
            let _ = std::thread::spawn(move || {
                if let Ok(client) = mongodb::sync::Client::with_uri_str(uri) {
                    let _ = client.database(&database).drop().run();
                }
            })
            .join();
        }
    }
}

async fn mongo() -> Backend {
    let uri = std::env::var("DPSD_TEST_MONGODB_URI")
        .expect("DPSD_TEST_MONGODB_URI: run with `make test`");
    let database = format!(
        "dpsdcontract_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let settings = MongoSettings {
        uri: Some(uri.clone()),
        database: database.clone(),
        job_state_collection: "job_state".into(),
    };
    let store = MongoStore::connect(&uri, &settings).await.expect("connect");
    Backend {
        store: Arc::new(store),
        _dir: None,
        database: Some(database),
    }
}

/// Databases made before issue 16 have `{updatedAt, executionId}`, which every stage moved;
/// retention walks the creation index now, and opening the store drops the old one.
#[tokio::test]
async fn mongodb_drops_the_update_time_index_of_earlier_versions() {
    let backend = mongo().await;
    let uri = std::env::var("DPSD_TEST_MONGODB_URI").expect("uri");
    let database = backend.database.clone().expect("a database");
    let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
    let job_state = client
        .database(&database)
        .collection::<mongodb::bson::Document>("job_state");
    let old = mongodb::IndexModel::builder()
        .keys(mongodb::bson::doc! {"updatedAt": 1, "executionId": 1})
        .build();
    job_state.create_index(old).await.expect("the old index");
    let settings = MongoSettings {
        uri: Some(uri.clone()),
        database: database.clone(),
        job_state_collection: "job_state".into(),
    };
    MongoStore::connect(&uri, &settings)
        .await
        .expect("open again");
    let names = job_state.list_index_names().await.expect("indexes");
    assert!(
        !names.iter().any(|n| n == "updatedAt_1_executionId_1"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "createdAt_1_executionId_1"),
        "{names:?}"
    );
}

async fn embedded() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path(), dpsd::config::StateSync::Full).expect("open");
    Backend {
        store: Arc::new(store),
        _dir: Some(dir),
        database: None,
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc::now()
        .duration_trunc(Duration::milliseconds(1))
        .expect("truncate")
}

fn stage(
    worker: &str,
    state: i64,
    status: Status,
    attempts: u32,
    result: Option<serde_json::Value>,
) -> Stage {
    let at = now();
    Stage {
        worker: worker.into(),
        state,
        status,
        attempts,
        stages_passed: 0,
        started_at: at,
        finished_at: at,
        duration_ms: 3,
        error: None,
        result,
    }
}

fn parked(id: &str, worker: &str, body: ParkedBody, at: chrono::DateTime<Utc>) -> ParkedMessage {
    ParkedMessage {
        id: id.into(),
        body,
        worker: worker.into(),
        queue: format!("{worker}_queue"),
        execution_id: Some(format!("exec-{id}")),
        attempts: 1,
        stages_passed: 0,
        error: "boom".into(),
        first_failed_at: at,
        last_failed_at: at,
    }
}

/// The stage as a worker `n` stages down the chain records it.
fn passed(n: u32, stage: Stage) -> Stage {
    Stage {
        stages_passed: n,
        ..stage
    }
}

/// (state, status, worker, attempts) of the execution's summary.
async fn summary(store: &dyn Store, id: &str) -> (Option<i64>, Status, String, u32) {
    let e = store.execution(id).await.expect("read").expect("exists");
    (e.state, e.status, e.worker, e.attempts)
}

async fn a_late_record_of_an_earlier_stage_does_not_move_the_state_back(store: &dyn Store) {
    // Side by side, the second worker's record can land before the first one's.
    let second = passed(1, stage("w2", 2, Status::Done, 1, Some(json!("test2"))));
    store.record_stage("late", &second).await.expect("write");
    let first = stage("w1", 1, Status::Done, 1, Some(json!("test1")));
    store.record_stage("late", &first).await.expect("write");
    assert_eq!(
        summary(store, "late").await,
        (Some(2), Status::Done, "w2".into(), 1)
    );
    let e = store
        .execution("late")
        .await
        .expect("read")
        .expect("exists");
    let stages: Vec<(&str, u32)> = e
        .stages
        .iter()
        .map(|s| (s.worker.as_str(), s.stages_passed))
        .collect();
    assert_eq!(
        stages,
        [("w1", 0), ("w2", 1)],
        "the late stage is kept, and read back in the chain's order"
    );
    assert_eq!(
        e.done_by("w1").and_then(|s| s.result.clone()),
        Some(json!("test1"))
    );

    // The state is that of the furthest stage that is done, even when a stage further
    // along is only retrying.
    let mut retrying = passed(1, stage("w2", 2, Status::Retrying, 1, None));
    retrying.error = Some("flaky".into());
    store
        .record_stage("behind", &retrying)
        .await
        .expect("write");
    store.record_stage("behind", &first).await.expect("write");
    let e = store
        .execution("behind")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (e.state, e.status, e.worker.as_str(), e.error.as_deref()),
        (Some(1), Status::Retrying, "w2", Some("flaky"))
    );
    store
        .record_stage("behind", &passed(1, stage("w2", 2, Status::Done, 2, None)))
        .await
        .expect("write");
    let e = store
        .execution("behind")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (
            e.state,
            e.status,
            e.worker.as_str(),
            e.attempts,
            e.error.as_deref()
        ),
        (Some(2), Status::Done, "w2", 2, None)
    );
    // A parked stage further on keeps the state of the furthest done one.
    store
        .record_stage(
            "behind",
            &passed(2, stage("w3", 3, Status::Parked, 1, None)),
        )
        .await
        .expect("write");
    store.record_stage("behind", &first).await.expect("write");
    assert_eq!(
        summary(store, "behind").await,
        (Some(2), Status::Parked, "w3".into(), 1)
    );
}

async fn within_a_stage_the_newest_record_wins(store: &dyn Store) {
    let at = |n| passed(1, stage("w2", 2, Status::Retrying, n, None));
    store.record_stage("again", &at(1)).await.expect("write");
    store
        .record_stage("again", &passed(1, stage("w2", 2, Status::Done, 2, None)))
        .await
        .expect("write");
    assert_eq!(
        summary(store, "again").await,
        (Some(2), Status::Done, "w2".into(), 2)
    );

    // Parked at attempt 3; the replay starts again at attempt 1 and its record wins.
    store.record_stage("replayed", &at(1)).await.expect("write");
    store.record_stage("replayed", &at(2)).await.expect("write");
    let parked = passed(1, stage("w2", 2, Status::Parked, 3, None));
    store
        .record_stage("replayed", &parked)
        .await
        .expect("write");
    assert_eq!(
        summary(store, "replayed").await,
        (None, Status::Parked, "w2".into(), 3)
    );
    let replay = passed(1, stage("w2", 2, Status::Done, 1, None));
    store
        .record_stage("replayed", &replay)
        .await
        .expect("write");
    assert_eq!(
        summary(store, "replayed").await,
        (Some(2), Status::Done, "w2".into(), 1)
    );
}

async fn stages_are_appended_and_state_follows_done(store: &dyn Store) {
    assert!(store.execution("e1").await.expect("read").is_none());
    let mut retrying = stage("w1", 1, Status::Retrying, 1, None);
    retrying.error = Some("flaky".into());
    store.record_stage("e1", &retrying).await.expect("write");
    let e = store.execution("e1").await.expect("read").expect("exists");
    assert_eq!(
        (e.state, e.status, e.attempts, e.error.as_deref()),
        (None, Status::Retrying, 1, Some("flaky"))
    );
    store
        .record_stage("e1", &stage("w1", 1, Status::Done, 2, Some(json!("test1"))))
        .await
        .expect("write");
    store
        .record_stage(
            "e1",
            &passed(
                1,
                stage("w2", 2, Status::Done, 1, Some(json!({"a": [1, 2]}))),
            ),
        )
        .await
        .expect("write");
    let e = store.execution("e1").await.expect("read").expect("exists");
    assert_eq!(
        (e.state, e.status, e.worker.as_str(), e.error.as_deref()),
        (Some(2), Status::Done, "w2", None)
    );
    let workers: Vec<(&str, Status)> = e
        .stages
        .iter()
        .map(|s| (s.worker.as_str(), s.status))
        .collect();
    assert_eq!(
        workers,
        [
            ("w1", Status::Retrying),
            ("w1", Status::Done),
            ("w2", Status::Done)
        ]
    );
    assert_eq!(
        e.done_by("w1").and_then(|s| s.result.clone()),
        Some(json!("test1"))
    );
    assert_eq!(e.stages[2].result, Some(json!({"a": [1, 2]})));
    assert!(e.done_by("w3").is_none());
    // A later parked stage keeps the state the last completed worker set.
    store
        .record_stage("e1", &passed(2, stage("w3", 3, Status::Parked, 1, None)))
        .await
        .expect("write");
    assert_eq!(
        store
            .execution("e1")
            .await
            .expect("read")
            .expect("exists")
            .state,
        Some(2)
    );
}

async fn concurrent_first_writes_of_one_execution_both_land(store: &dyn Store) {
    let (a, b) = (
        stage("w1", 1, Status::Done, 1, None),
        stage("w2", 2, Status::Done, 1, None),
    );
    let (ra, rb) = tokio::join!(
        store.record_stage("race", &a),
        store.record_stage("race", &b)
    );
    ra.expect("first");
    rb.expect("second");
    assert_eq!(
        store
            .execution("race")
            .await
            .expect("read")
            .expect("exists")
            .stages
            .len(),
        2
    );
}

async fn parked_messages_upsert_list_page_and_delete(store: &dyn Store) {
    let t0 = now();
    let bodies = [
        ParkedBody::Json(json!({"executionId": "x", "mydata": {}})),
        ParkedBody::Text("not json".into()),
        ParkedBody::Base64("//4=".into()),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let at = t0 + Duration::seconds(i as i64);
        store
            .park(&parked(&format!("p{i}"), "a", body.clone(), at))
            .await
            .expect("park");
    }
    store
        .park(&parked(
            "q0",
            "b",
            ParkedBody::Text("b".into()),
            t0 + Duration::seconds(10),
        ))
        .await
        .expect("park");
    // Parking the same id again updates it and keeps its first failure time.
    let mut again = parked("p0", "a", bodies[0].clone(), t0 + Duration::seconds(20));
    again.attempts = 3;
    again.stages_passed = 2;
    store.park(&again).await.expect("park again");
    let p0 = store.failed("p0").await.expect("read").expect("exists");
    assert_eq!(
        (
            p0.attempts,
            p0.stages_passed,
            p0.first_failed_at,
            p0.last_failed_at
        ),
        (3, 2, t0, t0 + Duration::seconds(20))
    );
    assert_eq!(p0.execution_id.as_deref(), Some("exec-p0"));

    let all = store.list_failed(None, 10, 0).await.expect("list");
    assert_eq!(all.total, 4);
    let ids: Vec<&str> = all.items.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["p0", "p1", "p2", "q0"], "oldest first failure first");
    let bodies_back: Vec<ParkedBody> = all.items[..3].iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies_back, bodies);
    let page = store.list_failed(Some("a"), 2, 1).await.expect("list");
    assert_eq!(
        (page.total, page.items.len(), page.items[0].id.as_str()),
        (3, 2, "p1")
    );
    assert!(store.delete_failed("p1", None).await.expect("delete"));
    assert!(!store.delete_failed("p1", None).await.expect("delete"));
    assert!(store.failed("p1").await.expect("read").is_none());
    // A replay's delete leaves an entry that failed again meanwhile.
    assert!(
        !store.delete_failed("p2", Some(t0)).await.expect("delete"),
        "p2 failed at t0+2s"
    );
    assert!(store
        .delete_failed("p2", Some(t0 + Duration::seconds(2)))
        .await
        .expect("delete"));
    assert_eq!(
        store
            .list_failed(Some("a"), 10, 0)
            .await
            .expect("list")
            .total,
        1
    );
}

async fn jobs_are_defined_claimed_once_locked_and_finished(store: &dyn Store) {
    let planned = now() + Duration::seconds(5);
    let definition = |next| JobDefinition {
        name: "tick".into(),
        schedule: Some("5s".into()),
        kind: JobKind::Interval,
        timezone: "Europe/Berlin".into(),
        catch_up: CatchUp::Skip,
        active: true,
        next_run_at: next,
        keep_planned: false,
    };
    store
        .define_job(&definition(Some(planned)))
        .await
        .expect("define");
    let job = store.job("tick").await.expect("read").expect("exists");
    assert_eq!(
        (job.next_run_at, job.fail_count, job.locked_by),
        (Some(planned), 0, None)
    );
    assert_eq!(job.timezone, "Europe/Berlin");
    assert_eq!(job.catch_up, CatchUp::Skip);

    // Two hosts race for the occurrence: exactly one wins.
    let next = planned + Duration::seconds(5);
    let (a, b) = tokio::join!(
        store.advance_job("tick", planned, Some(next)),
        store.advance_job("tick", planned, Some(next))
    );
    assert_eq!(
        [a.expect("a"), b.expect("b")]
            .iter()
            .filter(|won| **won)
            .count(),
        1
    );
    assert_eq!(
        store
            .job("tick")
            .await
            .expect("read")
            .expect("exists")
            .next_run_at,
        Some(next)
    );

    // A paused job's occurrence is taken by no host; its plan is moved only as a paused
    // job's; the pause outlives a definition and ends with resume. Unknown jobs: false.
    assert!(!job.paused);
    assert!(store.set_job_paused("tick", true).await.expect("pause"));
    assert!(store
        .set_job_paused("tick", true)
        .await
        .expect("pause again"));
    let later = next + Duration::seconds(5);
    assert!(!store
        .advance_job("tick", next, Some(later))
        .await
        .expect("advance"));
    store
        .define_job(&JobDefinition {
            keep_planned: true,
            ..definition(Some(next))
        })
        .await
        .expect("redefine");
    assert!(
        store
            .job("tick")
            .await
            .expect("read")
            .expect("exists")
            .paused
    );
    assert!(store
        .replan_paused_job("tick", next, Some(later))
        .await
        .expect("replan"));
    assert!(!store
        .replan_paused_job("tick", next, Some(later))
        .await
        .expect("replan"));
    assert!(store.set_job_paused("tick", false).await.expect("resume"));
    assert!(
        !store
            .job("tick")
            .await
            .expect("read")
            .expect("exists")
            .paused
    );
    assert!(!store
        .replan_paused_job("tick", later, Some(next))
        .await
        .expect("replan"));
    assert!(store
        .advance_job("tick", later, Some(next))
        .await
        .expect("advance"));
    assert!(!store.set_job_paused("nope", true).await.expect("unknown"));

    let t = now();
    assert!(store
        .lock_job("tick", "host-a", t, t - Duration::minutes(10))
        .await
        .expect("lock"));
    assert!(
        !store
            .lock_job("tick", "host-b", t, t - Duration::minutes(10))
            .await
            .expect("lock"),
        "no overlap"
    );
    let locked = store.job("tick").await.expect("read").expect("exists");
    assert_eq!(
        (locked.locked_by.as_deref(), locked.last_run_at),
        (Some("host-a"), Some(t))
    );
    // A lock older than the stale limit is taken over.
    assert!(store
        .lock_job("tick", "host-b", t, t + Duration::seconds(1))
        .await
        .expect("lock"));
    // Only the holder finishes it.
    store
        .finish_job("tick", "host-a", &RunOutcome::Failed("late".into()), t)
        .await
        .expect("finish");
    assert_eq!(
        store
            .job("tick")
            .await
            .expect("read")
            .expect("exists")
            .locked_by
            .as_deref(),
        Some("host-b")
    );
    store
        .finish_job(
            "tick",
            "host-b",
            &RunOutcome::Failed("exit status 3".into()),
            t,
        )
        .await
        .expect("finish");
    let failed = store.job("tick").await.expect("read").expect("exists");
    assert_eq!(
        (
            failed.last_status,
            failed.fail_count,
            failed.fail_reason.as_deref(),
            failed.locked_at
        ),
        (Some(RunStatus::Failed), 1, Some("exit status 3"), None)
    );
    store
        .lock_job("tick", "host-a", t, t - Duration::minutes(10))
        .await
        .expect("lock");
    store
        .finish_job("tick", "host-a", &RunOutcome::Ok, t)
        .await
        .expect("finish");
    let ok = store.job("tick").await.expect("read").expect("exists");
    assert_eq!(
        (ok.last_status, ok.fail_count, ok.last_finished_at),
        (Some(RunStatus::Ok), 1, Some(t))
    );

    // A definition that keeps the plan leaves the stored nextRunAt as another host left it.
    let kept = store
        .job("tick")
        .await
        .expect("read")
        .expect("exists")
        .next_run_at;
    store
        .define_job(&JobDefinition {
            keep_planned: true,
            ..definition(Some(now() + Duration::hours(1)))
        })
        .await
        .expect("redefine keeping the plan");
    let job = store.job("tick").await.expect("read").expect("exists");
    assert_eq!(job.next_run_at, kept);
    // Redefining keeps the run record; a manual job has no next run.
    store.define_job(&definition(None)).await.expect("redefine");
    let redefined = store.job("tick").await.expect("read").expect("exists");
    assert_eq!((redefined.next_run_at, redefined.fail_count), (None, 1));
    store
        .define_job(&JobDefinition {
            name: "other".into(),
            schedule: None,
            kind: JobKind::Manual,
            timezone: "UTC".into(),
            catch_up: CatchUp::Once,
            active: false,
            next_run_at: None,
            keep_planned: false,
        })
        .await
        .expect("define");
    let names: Vec<String> = store
        .jobs()
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.name)
        .collect();
    assert_eq!(names, ["other", "tick"]);
    store.remove_job("tick").await.expect("remove");
    assert!(store.job("tick").await.expect("read").is_none());
    store.ping().await.expect("ping");
}

async fn old_executions_are_walked_in_creation_order_and_deleted_only_unchanged(store: &dyn Store) {
    let far = now() + Duration::hours(1);
    for id in ["r1", "r2", "r3"] {
        store
            .record_stage(id, &stage("w1", 1, Status::Done, 1, None))
            .await
            .expect("write");
        tick().await;
    }
    let ids = |aged: &[dpsd::store::Aged]| -> Vec<String> {
        aged.iter().map(|a| a.execution_id.clone()).collect()
    };
    let first = store.aged(None, far, 2).await.expect("scan");
    assert_eq!(ids(&first), ["r1", "r2"]);
    assert_eq!(
        (first[0].status, first[0].worker.as_str()),
        (Status::Done, "w1")
    );
    let rest = store
        .aged(Some(&first[1].cursor()), far, 2)
        .await
        .expect("scan on");
    assert_eq!(ids(&rest), ["r3"]);
    // Only what was updated before the cut-off.
    let before_r2 = store
        .aged(None, first[1].updated_at, 10)
        .await
        .expect("scan");
    assert_eq!(ids(&before_r2), ["r1"]);

    // r2 gets a stage after it was read: the walk keeps it in creation order, a cut-off
    // before its new update skips it, and the delete leaves it.
    tick().await;
    store
        .record_stage("r2", &stage("w2", 2, Status::Done, 1, None))
        .await
        .expect("write");
    let all = store.aged(None, far, 10).await.expect("scan");
    assert_eq!(ids(&all), ["r1", "r2", "r3"]);
    assert!(all[1].updated_at > all[2].updated_at, "r2 was updated last");
    let before_r2_again = store.aged(None, all[1].updated_at, 10).await.expect("scan");
    assert_eq!(ids(&before_r2_again), ["r1", "r3"]);
    let deleted = store.delete_executions(&first).await.expect("delete");
    assert_eq!(deleted, 1);
    assert!(store.execution("r1").await.expect("read").is_none());
    let r2 = store.execution("r2").await.expect("read").expect("kept");
    assert_eq!(r2.stages.len(), 2);
    assert_eq!(store.sizes().await.expect("sizes").executions, 2);
}

async fn old_parked_messages_are_pruned_and_found_by_execution(store: &dyn Store) {
    let at = now();
    let old = parked(
        "old",
        "w",
        ParkedBody::Text("x".into()),
        at - Duration::hours(2),
    );
    let new = parked("new", "w", ParkedBody::Text("y".into()), at);
    store.park(&old).await.expect("park");
    store.park(&new).await.expect("park");
    let among = vec!["exec-old".to_string(), "exec-none".to_string()];
    assert_eq!(
        store.parked_among(&among).await.expect("find"),
        ["exec-old"]
    );
    let deleted = store
        .prune_failed(at - Duration::hours(1), 10)
        .await
        .expect("prune");
    assert_eq!(deleted, 1);
    assert!(store.failed("old").await.expect("read").is_none());
    assert!(store.failed("new").await.expect("read").is_some());
    assert_eq!(store.sizes().await.expect("sizes").failed, 1);
}

async fn a_lease_is_held_by_one_holder_until_it_expires(store: &dyn Store) {
    let at = now();
    let until = at + Duration::seconds(60);
    assert!(store
        .claim("retention", "a", at, until)
        .await
        .expect("claim"));
    assert!(!store
        .claim("retention", "b", at, until)
        .await
        .expect("claim"));
    assert!(store
        .claim("retention", "a", at, until)
        .await
        .expect("renew"));
    // Another name is another lease.
    assert!(store.claim("other", "b", at, until).await.expect("claim"));
    let later = until + Duration::seconds(1);
    let next = later + Duration::seconds(60);
    assert!(store
        .claim("retention", "b", later, next)
        .await
        .expect("take over"));
    assert!(!store
        .claim("retention", "a", later, next)
        .await
        .expect("claim"));
}

async fn a_worker_pause_is_kept_idempotent_and_resumed(store: &dyn Store) {
    let paused = || async { store.paused_workers().await.expect("list") };
    assert!(paused().await.is_empty());
    store.set_worker_paused("b", true).await.expect("pause");
    store.set_worker_paused("a", true).await.expect("pause");
    store
        .set_worker_paused("a", true)
        .await
        .expect("pause twice");
    assert_eq!(paused().await, ["a", "b"]);
    store.set_worker_paused("a", false).await.expect("resume");
    store
        .set_worker_paused("a", false)
        .await
        .expect("resume twice");
    store
        .set_worker_paused("never", false)
        .await
        .expect("resume one never paused");
    assert_eq!(paused().await, ["b"]);
}

fn last_stages() -> std::collections::BTreeSet<String> {
    ["w2".to_string()].into()
}

async fn a_cancel_marks_known_and_unknown_executions_once(store: &dyn Store) {
    let started = now();
    store
        .record_stage("running", &stage("w1", 1, Status::Retrying, 1, None))
        .await
        .expect("record");
    let cancel = |id: &'static str| async move { store.cancel(id, &last_stages()).await };
    assert_eq!(
        cancel("running").await.expect("cancel"),
        Cancel::Cancelled { known: true }
    );
    tick().await;
    assert_eq!(
        cancel("queued").await.expect("cancel"),
        Cancel::Cancelled { known: false }
    );
    assert_eq!(
        cancel("queued").await.expect("twice"),
        Cancel::AlreadyCancelled
    );
    let queued = store
        .execution("queued")
        .await
        .expect("read")
        .expect("made");
    assert_eq!(
        (queued.status, queued.state, queued.stages.len()),
        (Status::Cancelled, None, 0)
    );
    assert_eq!(summary(store, "running").await.1, Status::Cancelled);
    let all = store.cancelled_since(None).await.expect("poll");
    let ids: Vec<&str> = all.iter().map(|c| c.execution_id.as_str()).collect();
    assert_eq!(ids, ["running", "queued"]);
    assert!(all.iter().all(|c| c.cancelled_at >= started));
    let later = store
        .cancelled_since(Some(now() + Duration::seconds(1)))
        .await
        .expect("poll");
    assert!(later.is_empty(), "{later:?}");
}

async fn a_finished_execution_is_not_cancelled_and_a_middle_one_is(store: &dyn Store) {
    let last = passed(1, stage("w2", 2, Status::Done, 1, None));
    store.record_stage("end", &last).await.expect("record");
    let middle = stage("w1", 1, Status::Done, 1, None);
    store.record_stage("middle", &middle).await.expect("record");
    let cancel = |id: &'static str| async move { store.cancel(id, &last_stages()).await };
    assert_eq!(cancel("end").await.expect("cancel"), Cancel::Finished);
    assert_eq!(
        summary(store, "end").await,
        (Some(2), Status::Done, "w2".into(), 1)
    );
    assert_eq!(
        cancel("middle").await.expect("cancel"),
        Cancel::Cancelled { known: true }
    );
    let ids: Vec<String> = store
        .cancelled_since(None)
        .await
        .expect("poll")
        .into_iter()
        .map(|c| c.execution_id)
        .collect();
    assert_eq!(ids, ["middle"]);
}

async fn cancelled_is_final_whatever_is_recorded_after(store: &dyn Store) {
    store
        .record_stage("c", &stage("w1", 1, Status::Retrying, 1, None))
        .await
        .expect("record");
    store.cancel("c", &last_stages()).await.expect("cancel");
    tick().await;
    // A later attempt, the next stage done, then the replica's own cancelled stage.
    for late in [
        stage("w1", 1, Status::Done, 2, None),
        passed(1, stage("w2", 2, Status::Done, 1, None)),
        passed(1, stage("w2", 2, Status::Cancelled, 1, None)),
    ] {
        store.record_stage("c", &late).await.expect("record");
    }
    let e = store.execution("c").await.expect("read").expect("kept");
    assert_eq!(
        (e.state, e.status, e.worker.as_str(), e.attempts),
        (None, Status::Cancelled, "w1", 1)
    );
    assert_eq!(e.error.as_deref(), Some(dpsd::store::CANCELLED_ERROR));
    assert_eq!(e.stages.len(), 4, "stages are still kept");
    assert_eq!(
        store.cancel("c", &last_stages()).await.expect("again"),
        Cancel::AlreadyCancelled,
        "a done last stage recorded after the cancel does not make it finished"
    );
}

/// Six executions, newest last: e0..e5 by w1 (even) and w2 (odd), e3 parked; e0 and e1 went
/// on to w3, so their summary names w3.
async fn six_executions(store: &dyn Store) -> Vec<Execution> {
    let mut made = Vec::new();
    for n in 0..6 {
        let (id, worker) = (format!("e{n}"), ["w1", "w2"][n % 2]);
        let status = if n == 3 { Status::Parked } else { Status::Done };
        let first = stage(worker, 1, status, 1, Some(json!({"big": "result"})));
        store.record_stage(&id, &first).await.expect("write");
        if n < 2 {
            let next = passed(1, stage("w3", 2, Status::Done, 1, Some(json!("r3"))));
            store.record_stage(&id, &next).await.expect("write");
        }
        made.push(store.execution(&id).await.expect("read").expect("exists"));
        tick().await;
    }
    made
}

/// Every page of `query` from the first, in order: the ids of each.
async fn pages(store: &dyn Store, query: ExecutionQuery) -> Vec<Vec<String>> {
    let mut query = query;
    let mut pages = Vec::new();
    loop {
        let page = store.list_executions(&query).await.expect("list");
        assert!(page.items.len() <= query.limit as usize);
        pages.push(page.items.iter().map(|e| e.execution_id.clone()).collect());
        match page.next {
            Some(next) => query.after = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 20, "paging does not end");
    }
}

fn listing(limit: u32) -> ExecutionQuery {
    ExecutionQuery {
        limit,
        ..ExecutionQuery::default()
    }
}

async fn ids(store: &dyn Store, query: ExecutionQuery) -> Vec<String> {
    pages(store, query).await.concat()
}

async fn executions_are_listed_newest_first_and_paged_by_cursor(store: &dyn Store) {
    let made = six_executions(store).await;
    let newest_first = ["e5", "e4", "e3", "e2", "e1", "e0"];
    assert_eq!(
        pages(store, listing(2)).await,
        [["e5", "e4"], ["e3", "e2"], ["e1", "e0"]]
    );
    assert_eq!(pages(store, listing(4)).await.concat(), newest_first);
    assert_eq!(pages(store, listing(500)).await, [newest_first]);
    // An item is the execution as GET /api/executions/{id} has it, its stages' results left out.
    let page = store.list_executions(&listing(6)).await.expect("list");
    let e0 = page.items.last().expect("e0");
    let mut expected = made[0].clone();
    expected.stages.iter_mut().for_each(|s| s.result = None);
    assert_eq!(e0, &expected);
    assert_eq!(e0.created_at, made[0].created_at);
    assert!(made[0].created_at < made[5].created_at);
    assert!(made[0].stages.iter().all(|s| s.result.is_some()));
}

async fn executions_are_filtered_by_status_worker_and_time(store: &dyn Store) {
    let made = six_executions(store).await;
    let with = |status: Option<&str>, worker: Option<&str>| ExecutionQuery {
        status: status.map(str::to_string),
        worker: worker.map(str::to_string),
        ..listing(1)
    };
    assert_eq!(ids(store, with(Some("parked"), None)).await, ["e3"]);
    assert_eq!(
        ids(store, with(Some("done"), None)).await,
        ["e5", "e4", "e2", "e1", "e0"]
    );
    assert!(ids(store, with(Some("cancelled"), None)).await.is_empty());
    // Any stage by the worker, not only the summary's: e0 is w3's now, and w1's too.
    assert_eq!(ids(store, with(None, Some("w1"))).await, ["e4", "e2", "e0"]);
    assert_eq!(ids(store, with(None, Some("w3"))).await, ["e1", "e0"]);
    assert!(ids(store, with(None, Some("nobody"))).await.is_empty());
    assert_eq!(
        ids(store, with(Some("done"), Some("w2"))).await,
        ["e5", "e1"]
    );
    assert_eq!(ids(store, with(Some("parked"), Some("w2"))).await, ["e3"]);
    assert!(ids(store, with(Some("parked"), Some("w1")))
        .await
        .is_empty());
    // since is inclusive, until exclusive.
    let window = ExecutionQuery {
        since: Some(made[2].created_at),
        until: Some(made[5].created_at),
        ..listing(2)
    };
    assert_eq!(
        pages(store, window.clone()).await,
        vec![vec!["e4", "e3"], vec!["e2"]]
    );
    let w1_window = ExecutionQuery {
        worker: Some("w1".into()),
        ..window
    };
    assert_eq!(ids(store, w1_window).await, ["e4", "e2"]);
}

async fn a_deleted_execution_leaves_every_list(store: &dyn Store) {
    six_executions(store).await;
    let far = now() + Duration::hours(1);
    let aged = store.aged(None, far, 10).await.expect("scan");
    let e0: Vec<_> = aged
        .into_iter()
        .filter(|a| a.execution_id == "e0")
        .collect();
    assert_eq!(store.delete_executions(&e0).await.expect("delete"), 1);
    let by = |worker: &str| ExecutionQuery {
        worker: Some(worker.into()),
        ..listing(10)
    };
    assert_eq!(ids(store, by("w1")).await, ["e4", "e2"]);
    assert_eq!(ids(store, by("w3")).await, ["e1"]);
    assert_eq!(ids(store, listing(10)).await.len(), 5);
}

async fn a_workers_parked_messages_are_deleted_together(store: &dyn Store) {
    let at = now();
    for (id, worker) in [("a", "w1"), ("b", "w1"), ("c", "w1"), ("d", "w2")] {
        let message = parked(id, worker, ParkedBody::Text(id.into()), at);
        store.park(&message).await.expect("park");
    }
    assert_eq!(store.delete_failed_of("w1").await.expect("delete"), 3);
    assert_eq!(
        store
            .list_failed(Some("w1"), 10, 0)
            .await
            .expect("list")
            .total,
        0
    );
    assert_eq!(
        store
            .list_failed(Some("w2"), 10, 0)
            .await
            .expect("list")
            .total,
        1
    );
    assert_eq!(store.delete_failed_of("w1").await.expect("again"), 0);
}

fn per_second(max: u32) -> RateLimit {
    RateLimit {
        max,
        per: std::time::Duration::from_secs(1),
    }
}

async fn a_rate_limit_admits_max_starts_per_window_and_says_when_there_is_room(store: &dyn Store) {
    let t0 = now();
    let ms = Duration::milliseconds;
    let limit = per_second(3);
    let take = |worker: &'static str, at| async move {
        store
            .take_rate_slot(worker, &limit, at)
            .await
            .expect("take")
    };
    for at in [t0, t0 + ms(100), t0 + ms(200)] {
        assert_eq!(take("w", at).await, RateSlot::Taken);
    }
    let full_until = |at| RateSlot::Full { until: at };
    assert_eq!(take("w", t0 + ms(300)).await, full_until(t0 + ms(1000)));
    assert_eq!(take("w", t0 + ms(999)).await, full_until(t0 + ms(1000)));
    assert_eq!(
        take("other", t0 + ms(300)).await,
        RateSlot::Taken,
        "each worker has its own"
    );
    // The window is (now - per, now]: the first start leaves it a full second after.
    assert_eq!(take("w", t0 + ms(1000)).await, RateSlot::Taken);
    assert_eq!(take("w", t0 + ms(1050)).await, full_until(t0 + ms(1100)));
    // A start whose clock is behind (another host's) counts the newer ones too.
    assert_eq!(take("w", t0 + ms(500)).await, full_until(t0 + ms(1100)));
}

async fn a_rate_limit_edited_counts_from_the_newest_starts(store: &dyn Store) {
    let t0 = now();
    let ms = Duration::milliseconds;
    for i in 0..5 {
        let taken = store.take_rate_slot("w", &per_second(5), t0 + ms(i)).await;
        assert_eq!(taken.expect("take"), RateSlot::Taken);
    }
    let smaller = store.take_rate_slot("w", &per_second(2), t0 + ms(10)).await;
    assert_eq!(
        smaller.expect("take"),
        RateSlot::Full {
            until: t0 + ms(1003)
        }
    );
    let larger = store.take_rate_slot("w", &per_second(8), t0 + ms(10)).await;
    assert_eq!(larger.expect("take"), RateSlot::Taken);
}

/// Twenty starts at once for five places: five are taken. (A full answer whose window has
/// room already, as when two first starts race to create the log, is asked again.)
async fn concurrent_starts_never_overfill_a_window(store: &dyn Store) {
    let at = now();
    let limit = per_second(5);
    let one = || async {
        loop {
            match store.take_rate_slot("w", &limit, at).await.expect("take") {
                RateSlot::Taken => return true,
                RateSlot::Full { until } if until <= at => continue,
                RateSlot::Full { .. } => return false,
            }
        }
    };
    let outcomes = futures::future::join_all((0..20).map(|_| one())).await;
    assert_eq!(outcomes.iter().filter(|taken| **taken).count(), 5);
}

/// One caller taking starts back to back, as one replica does: every one of `max` is taken,
/// the next is not. Prints the rate (docs/configuration.md quotes it).
async fn starts_back_to_back_are_all_taken_up_to_max(store: &dyn Store) {
    let limit = RateLimit {
        max: 300,
        per: std::time::Duration::from_secs(600),
    };
    let began = std::time::Instant::now();
    for i in 0..limit.max {
        let taken = store.take_rate_slot("w", &limit, Utc::now()).await;
        assert_eq!(taken.expect("take"), RateSlot::Taken, "start {i}");
    }
    let rate = f64::from(limit.max) / began.elapsed().as_secs_f64();
    eprintln!(
        "rate limit: {rate:.0} starts/s back to back, {} in the log",
        limit.max
    );
    let next = store.take_rate_slot("w", &limit, Utc::now()).await;
    assert!(matches!(next.expect("take"), RateSlot::Full { .. }));
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod on_mongodb {
            $(#[tokio::test]
            async fn $case() {
                let backend = super::mongo().await;
                super::$case(backend.store.as_ref()).await;
            })*
        }
        mod on_embedded {
            $(#[tokio::test]
            async fn $case() {
                let backend = super::embedded().await;
                super::$case(backend.store.as_ref()).await;
            })*
        }
    };
}

contract!(
    stages_are_appended_and_state_follows_done,
    a_late_record_of_an_earlier_stage_does_not_move_the_state_back,
    within_a_stage_the_newest_record_wins,
    concurrent_first_writes_of_one_execution_both_land,
    parked_messages_upsert_list_page_and_delete,
    jobs_are_defined_claimed_once_locked_and_finished,
    old_executions_are_walked_in_creation_order_and_deleted_only_unchanged,
    old_parked_messages_are_pruned_and_found_by_execution,
    a_lease_is_held_by_one_holder_until_it_expires,
    a_worker_pause_is_kept_idempotent_and_resumed,
    a_cancel_marks_known_and_unknown_executions_once,
    a_finished_execution_is_not_cancelled_and_a_middle_one_is,
    cancelled_is_final_whatever_is_recorded_after,
    executions_are_listed_newest_first_and_paged_by_cursor,
    executions_are_filtered_by_status_worker_and_time,
    a_deleted_execution_leaves_every_list,
    a_workers_parked_messages_are_deleted_together,
    a_rate_limit_admits_max_starts_per_window_and_says_when_there_is_room,
    a_rate_limit_edited_counts_from_the_newest_starts,
    concurrent_starts_never_overfill_a_window,
    starts_back_to_back_are_all_taken_up_to_max,
);
