//! `dpsd send QUEUE [JSON]`: publishes one message, persistently and confirmed.

use std::collections::BTreeMap;
use std::io::Read;

use anyhow::Context;
use serde_json::Value;

use super::{Failure, Global};
use crate::broker::{self, Publisher};
use crate::config::queue_name_problem;
use crate::message::Message;

/// Publishes `json` (or stdin when None or "-") to `queue`, adding an executionId when
/// missing, and prints the executionId.
pub async fn send(global: &Global, queue: &str, json: Option<&str>) -> Result<(), Failure> {
    if let Some(problem) = queue_name_problem(queue) {
        return Err(Failure::Usage(format!("queue {queue:?}: {problem}")));
    }
    let message = read_message(json)?;
    let config = global.config()?;
    let connection = broker::connect(&config.settings.amqp.url, "dpsd send")
        .await
        .context("send")?;
    let channel = connection
        .open_channel(None)
        .await
        .context("open a channel")?;
    broker::declare_queue(&channel, queue)
        .await
        .with_context(|| format!("declare queue {queue}"))?;
    let publisher = Publisher::open(&connection)
        .await
        .context("open the publish channel")?;
    publisher
        .publish(
            queue,
            message.to_bytes(),
            broker::properties(&BTreeMap::new()),
        )
        .await
        .with_context(|| format!("publish to {queue}"))?;
    println!("{}", message.execution_id());
    broker::close(vec![channel, publisher.channel().clone()], connection).await;
    Ok(())
}

fn read_message(json: Option<&str>) -> Result<Message, Failure> {
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
        Ok(Value::Object(body)) => {
            Message::from_object(body).map_err(|e| Failure::Usage(format!("bad message: {e}")))
        }
        Ok(_) => Err(Failure::Usage(
            "the message must be a JSON object, like '{\"mydata\": {}}'".into(),
        )),
        Err(e) => Err(Failure::Usage(format!(
            "the message is not valid JSON: {e}"
        ))),
    }
}
