//! The benchmark's baseline (`make bench`): the broker work of a two-stage chain and nothing
//! else. N persistent messages go to stage 1; a consumer (manual ack, prefetch P) publishes
//! each to stage 2 with a publisher confirm, then acks; a stage-2 consumer acks. Prints the
//! messages per second from the first publish to the last stage-2 ack.
//!
//! usage: relay AMQP_URL N PREFETCH
//!        relay AMQP_URL pace QUEUE RATE SECONDS   (the paced publisher of the latency run:
//!        RATE messages a second, each with executionId "SEQ-SENT_UNIX_MS")

use std::collections::BTreeMap;
use std::time::Instant;

use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicQosArguments, QueueDeleteArguments,
};
use dpsd::broker::{self, Endpoint, Publisher};
use dpsd::config::{AmqpSettings, Nodes, QueueType};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (url, n, prefetch) = match args.as_slice() {
        [_, url, mode, queue, rate, seconds] if mode == "pace" => {
            return pace(url, queue, rate.parse()?, seconds.parse()?).await
        }
        [_, url, n, p] => (url.clone(), n.parse::<u64>()?, p.parse::<u16>()?),
        _ => anyhow::bail!(
            "usage: relay AMQP_URL N PREFETCH | relay AMQP_URL pace QUEUE RATE SECONDS"
        ),
    };
    let run = uuid::Uuid::new_v4().simple().to_string();
    let (stage1, stage2) = (format!("relay_{run}.stage1"), format!("relay_{run}.stage2"));
    let connection = connect(&url, "dpsd bench relay").await?;
    let setup = connection.open_channel(None).await?;
    broker::declare_queue(&setup, &stage1, CLASSIC).await?;
    broker::declare_queue(&setup, &stage2, CLASSIC).await?;

    // Publish all N first, confirmed, as `dpsd send --count` does for the chain.
    let publisher = Publisher::open(&connection).await?;
    let started = Instant::now();
    let body = br#"{"mydata": {}}"#.to_vec();
    let publishes = (0..n)
        .map(|_| publisher.publish(&stage1, body.clone(), broker::properties(&BTreeMap::new())));
    futures::future::try_join_all(publishes).await?;

    // Stage 1: forward with a confirm, then ack; each message in its own task (prefetch bounds them).
    let relay = connection.open_channel(None).await?;
    relay
        .basic_qos(BasicQosArguments::new(0, prefetch, false))
        .await?;
    let forward = Publisher::open(&connection).await?;
    let (_, mut first) = relay
        .basic_consume_rx(
            BasicConsumeArguments::new(&stage1, "")
                .manual_ack(true)
                .finish(),
        )
        .await?;
    let stage2_name = stage2.clone();
    tokio::spawn(async move {
        while let Some(message) = first.recv().await {
            let (Some(deliver), Some(content)) = (message.deliver, message.content) else {
                continue;
            };
            let (forward, relay, stage2) = (forward.clone(), relay.clone(), stage2_name.clone());
            tokio::spawn(async move {
                if forward
                    .publish(&stage2, content, broker::properties(&BTreeMap::new()))
                    .await
                    .is_ok()
                {
                    let _ = relay
                        .basic_ack(BasicAckArguments::new(deliver.delivery_tag(), false))
                        .await;
                }
            });
        }
    });

    // Stage 2: ack.
    let sink = connection.open_channel(None).await?;
    sink.basic_qos(BasicQosArguments::new(0, prefetch, false))
        .await?;
    let (_, mut second) = sink
        .basic_consume_rx(
            BasicConsumeArguments::new(&stage2, "")
                .manual_ack(true)
                .finish(),
        )
        .await?;
    let mut done = 0;
    while done < n {
        let Some(message) = second.recv().await else {
            anyhow::bail!("stage-2 consumer closed")
        };
        if let Some(deliver) = message.deliver {
            sink.basic_ack(BasicAckArguments::new(deliver.delivery_tag(), false))
                .await?;
            done += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"messages\": {n}, \"seconds\": {seconds:.3}, \"per_second\": {:.0}}}",
        n as f64 / seconds
    );
    for queue in [&stage1, &stage2] {
        setup.queue_delete(QueueDeleteArguments::new(queue)).await?;
    }
    Ok(())
}

/// The queues the relay uses: classic, as the example chain's.
const CLASSIC: QueueType = QueueType::Classic;

/// A connection to the one node `url`, as dpsd makes them.
async fn connect(url: &str, name: &str) -> anyhow::Result<amqprs::connection::Connection> {
    let settings = AmqpSettings {
        url: Nodes(vec![url.to_string()]),
        ..AmqpSettings::default()
    };
    Ok(Endpoint::new(&settings).connect(name).await?)
}

/// Publishes `rate` messages a second for `seconds` to `queue`, on a fixed clock (a late
/// tick does not shift the ones after it).
async fn pace(url: &str, queue: &str, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let connection = connect(url, "dpsd bench pace").await?;
    let channel = connection.open_channel(None).await?;
    broker::declare_queue(&channel, queue, CLASSIC).await?;
    let publisher = Publisher::open(&connection).await?;
    let mut tick = tokio::time::interval(std::time::Duration::from_secs_f64(1.0 / rate as f64));
    let mut confirms = Vec::new();
    for seq in 0..rate * seconds {
        tick.tick().await;
        let sent = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        let body = format!(r#"{{"executionId": "{seq}-{sent}", "mydata": {{}}}}"#).into_bytes();
        let publisher = publisher.clone();
        let queue = queue.to_string();
        confirms.push(tokio::spawn(async move {
            publisher
                .publish(&queue, body, broker::properties(&BTreeMap::new()))
                .await
        }));
    }
    for confirm in confirms {
        confirm.await??;
    }
    Ok(())
}
