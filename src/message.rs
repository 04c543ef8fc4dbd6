//! The message envelope: a JSON object with `executionId`, optional `simulate`, and `_last`
//! (the previous service's result). Everything else in it belongs to the user and travels
//! untouched.

use serde_json::{Map, Value};

pub const EXECUTION_ID: &str = "executionId";
pub const SIMULATE: &str = "simulate";
pub const LAST: &str = "_last";

/// The AMQP headers dpsd sets and reads on the messages it moves between queues, in one
/// place (docs/topology.md lists them for other producers and consumers).
pub mod headers {
    /// The attempt a message is on (1 when absent); it travels through the delay queues.
    pub const ATTEMPT: &str = "x-dpsd-attempt";
    /// Marks a message forwarded while its sender handled a redelivery: the next worker
    /// checks the store before running it, as it would for a redelivery of its own.
    pub const REFORWARD: &str = "x-dpsd-reforward";
    /// How many stages of the chain the message has passed (0 when absent): the first
    /// worker's stage is stage 0. Job state only moves forward by it (SPEC 4.2).
    pub const STAGES: &str = "x-dpsd-stages";
    /// RabbitMQ's own count of unsettled hand-outs of a quorum queue's message.
    pub const DELIVERY_COUNT: &str = "x-delivery-count";
}

/// A parsed message body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Always a JSON object; kept as a `Value` so services can borrow it without a copy.
    body: Value,
    execution_id: String,
}

/// Why a body can't be processed. Such a message is parked with this reason, never retried:
/// no attempt can make it valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("body is JSON but not an object (it is {0})")]
    NotAnObject(&'static str),
    #[error("executionId must be a string or a number, not {0}")]
    BadExecutionId(&'static str),
}

impl Message {
    /// Parses a body; a missing (or null or empty) executionId gets a fresh one.
    pub fn parse(bytes: &[u8]) -> Result<Message, Malformed> {
        let text = std::str::from_utf8(bytes).map_err(|_| Malformed::NotUtf8)?;
        let value: Value =
            serde_json::from_str(text).map_err(|e| Malformed::NotJson(e.to_string()))?;
        match value {
            Value::Object(body) => Message::from_object(body),
            other => Err(Malformed::NotAnObject(kind(&other))),
        }
    }

    /// Wraps an object, assigning an executionId when it has none.
    pub fn from_object(mut body: Map<String, Value>) -> Result<Message, Malformed> {
        let execution_id = match body.get(EXECUTION_ID) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                let id = new_id();
                body.insert(EXECUTION_ID.into(), Value::String(id.clone()));
                id
            }
            Some(other) => return Err(Malformed::BadExecutionId(kind(other))),
        };
        Ok(Message {
            body: Value::Object(body),
            execution_id,
        })
    }

    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }

    /// `simulate: true` runs the chain without calling services.
    pub fn simulate(&self) -> bool {
        self.body
            .get(SIMULATE)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub fn last(&self) -> Option<&Value> {
        self.body.get(LAST)
    }

    pub fn set_last(&mut self, result: Value) {
        if let Value::Object(map) = &mut self.body {
            map.insert(LAST.into(), result);
        }
    }

    /// The body (an object), as a service sees it.
    pub fn body(&self) -> &Value {
        &self.body
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a Map of Values cannot fail (keys are strings).
        serde_json::to_vec(&self.body).unwrap_or_default()
    }
}

/// A new id for an execution or a parked message: a UUID v7, whose leading 48 bits are the
/// time in milliseconds. Ids made later sort later, so each new row's entry goes at the end
/// of the store's id index, on the few pages already in the cache; a random v4 landed on a
/// random leaf of an index far larger than the cache, and that page then had to be read,
/// written to the WAL and checkpointed (docs/BENCHMARKS.md, Retention). The bits after the
/// time (uuid's counter, started at random each millisecond, then random bits) keep ids made
/// in the same millisecond apart, in this process and on any other host.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Found by fuzz/fuzz_targets/message_parse.rs: without serde_json's float_roundtrip,
    /// some numbers came out of the first hop one ULP off.
    #[test]
    fn numbers_travel_untouched() {
        let message =
            Message::parse(br#"{"executionId": 3e50, "n": [-3e50, 99574e166]}"#).expect("valid");
        let again = Message::parse(&message.to_bytes()).expect("round trip");
        assert_eq!(again.body(), message.body());
        assert_eq!(message.body()["n"][0].as_f64(), Some(-3e50));
        assert_eq!(message.body()["n"][1].as_f64(), Some(99574e166));
    }

    #[test]
    fn keeps_an_execution_id_and_assigns_a_missing_one() {
        let m = Message::parse(br#"{"mydata": {}, "executionId": "abc"}"#).expect("valid");
        assert_eq!(m.execution_id(), "abc");
        let m = Message::parse(br#"{"mydata": {}}"#).expect("valid");
        assert_eq!(m.execution_id().len(), 36);
        assert_eq!(m.body()[EXECUTION_ID], json!(m.execution_id()));
        let m = Message::parse(br#"{"executionId": 42}"#).expect("valid");
        assert_eq!(m.execution_id(), "42");
    }

    /// The store's id index stays an append only while ids made later sort later, as text.
    #[test]
    fn assigned_ids_sort_in_the_order_they_were_made() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
        let version = uuid::Uuid::parse_str(&ids[0]).map(|u| u.get_version_num());
        assert_eq!(version, Ok(7));
    }

    #[test]
    fn rejects_what_is_not_an_object() {
        assert_eq!(Message::parse(b"\xff\xfe"), Err(Malformed::NotUtf8));
        assert!(matches!(
            Message::parse(b"{not json"),
            Err(Malformed::NotJson(_))
        ));
        assert_eq!(
            Message::parse(b"[1,2]"),
            Err(Malformed::NotAnObject("an array"))
        );
        assert_eq!(
            Message::parse(b"\"x\""),
            Err(Malformed::NotAnObject("a string"))
        );
        assert_eq!(
            Message::parse(br#"{"executionId": {}}"#),
            Err(Malformed::BadExecutionId("an object"))
        );
    }

    #[test]
    fn simulate_and_last() {
        let mut m = Message::parse(br#"{"simulate": true}"#).expect("valid");
        assert!(m.simulate());
        assert_eq!(m.last(), None);
        m.set_last(json!("r"));
        let again = Message::parse(&m.to_bytes()).expect("round trip");
        assert_eq!(again.last(), Some(&json!("r")));
        assert!(!Message::parse(br#"{"simulate": "yes"}"#)
            .expect("valid")
            .simulate());
    }
}
