//! The embedded store alone (`make bench`): how fast one process records stages, with as many
//! writes in flight as a replica has messages (the prefetch), on a file other processes may
//! share. The chain's stages wait for these writes in series with the broker's confirms, so
//! this bounds what the store adds to each stage.
//!
//! usage: store_bench STATE_DIR WRITES IN_FLIGHT WORKER[,WORKER...]
//! With several workers, each execution gets one stage per worker, in chain order (the
//! first write makes the row, the others update it, as a chain's stages do); WRITES counts
//! every stage. Prints `{"writes": N, "seconds": S, "per_second": R}`.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use dpsd::config::StateSync;
use dpsd::store::{EmbeddedStore, Stage, Status, Store};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, writes, in_flight, worker] = args.as_slice() else {
        anyhow::bail!("usage: store_bench STATE_DIR WRITES IN_FLIGHT WORKER[,WORKER...]");
    };
    let (writes, in_flight): (usize, usize) = (writes.parse()?, in_flight.parse()?);
    let workers: Vec<String> = worker.split(',').map(str::to_string).collect();
    // Whole executions: WRITES rounded up to a multiple of the chain's length.
    let executions = writes.div_ceil(workers.len());
    let writes = executions * workers.len();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.as_ref(), StateSync::Normal)?);
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut running = JoinSet::new();
    let started = Instant::now();
    for _ in 0..executions {
        let slot = slots.clone().acquire_owned().await?;
        let (store, workers) = (store.clone(), workers.clone());
        running.spawn(async move {
            let id = dpsd::message::new_id();
            for (passed, worker) in workers.iter().enumerate() {
                store.record_stage(&id, &stage(worker, passed)).await?;
            }
            drop(slot);
            anyhow::Ok(())
        });
        while let Some(done) = running.try_join_next() {
            done??;
        }
    }
    while let Some(done) = running.join_next().await {
        done??;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"writes\": {writes}, \"seconds\": {seconds:.3}, \"per_second\": {:.0}}}",
        writes as f64 / seconds
    );
    Ok(())
}

/// What the example chain's stage number `passed` (from 0) records for each message.
fn stage(worker: &str, passed: usize) -> Stage {
    let now = Utc::now();
    Stage {
        worker: worker.to_string(),
        state: passed as i64 + 1,
        status: Status::Done,
        attempts: 1,
        stages_passed: passed as u32,
        started_at: now,
        finished_at: now,
        duration_ms: 0,
        error: None,
        result: Some(serde_json::json!(format!("test{}", passed + 1))),
    }
}
