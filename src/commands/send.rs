//! `dpsd send QUEUE [JSON]`: publishes a message, persistently and confirmed.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::Context;
use futures::{stream, StreamExt};
use serde_json::{Map, Value};

use super::{Failure, Global};
use crate::broker::{self, Endpoint, Publisher};
use crate::config::queue_name_problem;
use crate::message::{Message, EXECUTION_ID};

/// How many publishes `--count` keeps awaiting their confirms at once.
const IN_FLIGHT: usize = 256;

/// Publishes `json` (or stdin when None or "-") to `queue` `count` times, adding an
/// executionId when missing (a fresh one per copy when there are several), and prints
/// each executionId.
pub async fn send(
    global: &Global,
    queue: &str,
    json: Option<&str>,
    count: u32,
) -> Result<(), Failure> {
    if let Some(problem) = queue_name_problem(queue) {
        return Err(Failure::Usage(format!("queue {queue:?}: {problem}")));
    }
    let body = read_object(json)?;
    let messages = copies(body, count)?;
    let config = global.config()?;
    let amqp = &config.settings.amqp;
    let connection = Endpoint::new(amqp)
        .connect("dpsd send")
        .await
        .context("send")?;
    let channel = connection
        .open_channel(None)
        .await
        .context("open a channel")?;
    let queue_type = config.queue_types().of(queue);
    broker::declare_queue(&channel, queue, queue_type)
        .await
        .with_context(|| format!("declare queue {queue}"))?;
    let publisher = Publisher::open(&connection)
        .await
        .context("open the publish channel")?;
    // Confirms are awaited in a window rather than one by one, so many copies go fast.
    let publishes = messages.iter().map(|message| {
        let publisher = &publisher;
        async move {
            let props = broker::properties(&BTreeMap::new());
            publisher
                .publish(queue, message.to_bytes(), props)
                .await
                .map(|()| message.execution_id())
        }
    });
    let mut confirmed = stream::iter(publishes).buffered(IN_FLIGHT);
    while let Some(result) = confirmed.next().await {
        let execution_id = result.with_context(|| format!("publish to {queue}"))?;
        println!("{execution_id}");
    }
    drop(confirmed);
    broker::close(vec![channel, publisher.channel().clone()], connection).await;
    Ok(())
}

/// `count` messages from one body, each with its own executionId (so a body that names
/// one can only be sent once).
fn copies(body: Map<String, Value>, count: u32) -> Result<Vec<Message>, Failure> {
    if count > 1 && body.contains_key(EXECUTION_ID) {
        return Err(Failure::Usage(
            "--count needs a message without executionId: each copy gets its own".into(),
        ));
    }
    (0..count.max(1))
        .map(|_| {
            Message::from_object(body.clone())
                .map_err(|e| Failure::Usage(format!("bad message: {e}")))
        })
        .collect()
}

fn read_object(json: Option<&str>) -> Result<Map<String, Value>, Failure> {
    let text = match json {
        Some(text) if text != "-" => text.to_string(),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Failure::Usage(format!("cannot read the message from stdin: {e}")))?;
            text
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(body)) => Ok(body),
        Ok(_) => Err(Failure::Usage(
            "the message must be a JSON object, like '{\"mydata\": {}}'".into(),
        )),
        Err(e) => Err(Failure::Usage(format!(
            "the message is not valid JSON: {e}"
        ))),
    }
}
