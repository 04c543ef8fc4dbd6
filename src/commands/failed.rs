//! `dpsd failed list|replay|delete`: the failed-message store from the terminal, with the
//! API's semantics (SPEC 7).

use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Failure, Global};
use crate::broker::Outbox;
use crate::config::Config;
use crate::replay::{self, ReplayError};
use crate::store::{self, Store};

/// What to replay.
pub enum Target {
    One(String),
    Worker(String),
    All,
}

pub async fn failed_list(
    global: &Global,
    worker: Option<&str>,
    limit: u32,
    skip: u64,
    json: bool,
) -> Result<(), Failure> {
    if !(1..=1000).contains(&limit) {
        return Err(Failure::Usage("--limit must be between 1 and 1000".into()));
    }
    let (config, store) = open(global).await?;
    let page = store
        .list_failed(worker, limit, skip)
        .await
        .map_err(anyhow::Error::from);
    store.close().await;
    let page = page?;
    drop(config);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&page).map_err(anyhow::Error::from)?
        );
        return Ok(());
    }
    for item in &page.items {
        let error: String = item.error.chars().take(80).collect();
        println!(
            "{}  {}  attempts {}  {}  {}",
            item.id,
            item.worker,
            item.attempts,
            item.last_failed_at.format("%Y-%m-%d %H:%M:%S"),
            error
        );
    }
    eprintln!("{} of {} parked message(s)", page.items.len(), page.total);
    Ok(())
}

pub async fn failed_replay(global: &Global, target: Target) -> Result<(), Failure> {
    let (config, store) = open(global).await?;
    let outbox = Arc::new(Outbox::new(
        &config.settings.amqp,
        config.queue_types(),
        "dpsd failed replay",
    ));
    let result = replay(store.as_ref(), &outbox, target).await;
    outbox.close().await;
    store.close().await;
    result
}

async fn replay(store: &dyn Store, outbox: &Outbox, target: Target) -> Result<(), Failure> {
    let worker = match target {
        Target::One(id) => {
            return replay::replay_one(store, outbox, &id)
                .await
                .map_err(replay_failure)
                .map(|()| {
                    println!("replayed {id}");
                })
        }
        Target::Worker(worker) => Some(worker),
        Target::All => None,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} replayed ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let done = replay::replay_all(store, outbox, worker.as_deref(), |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await
    .map_err(replay_failure)?;
    bar.finish_and_clear();
    println!("replayed {}, failed {}", done.replayed, done.failed);
    if done.failed > 0 {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{} message(s) could not be replayed and stay parked",
            done.failed
        )));
    }
    Ok(())
}

pub async fn failed_delete(global: &Global, id: &str) -> Result<(), Failure> {
    let (_, store) = open(global).await?;
    let deleted = store
        .delete_failed(id, None)
        .await
        .map_err(anyhow::Error::from);
    store.close().await;
    if deleted? {
        println!("deleted {id}");
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!(
            "no parked message {id:?}"
        )))
    }
}

async fn open(global: &Global) -> Result<(Config, Arc<dyn Store>), Failure> {
    let config = global.config()?;
    let store = store::open(&config.settings.store()).await?;
    Ok((config, store))
}

fn replay_failure(e: ReplayError) -> Failure {
    Failure::Runtime(e.into())
}
