//! A broker for the worker's unit tests: what the handler and the rate limit's turns
//! publish is kept to be looked at, or every publish fails when the broker is down.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use super::handler::{Forward, Headers};
use crate::broker::BrokerError;

/// Records what is published (queue, body as JSON, headers); fails every publish when
/// `broken`; refuses (nacks) the first `nacks` publishes; says its connection is lost when
/// `gone`.
#[derive(Default)]
pub struct FakeBroker {
    sent: Mutex<Vec<(String, Value, Headers)>>,
    broken: bool,
    /// The connection is gone (`Forward::connected` says so); publishes still work.
    gone: bool,
    nacks: u32,
    nacked: Mutex<u32>,
}

#[async_trait]
impl Forward for FakeBroker {
    async fn publish(
        &self,
        queue: &str,
        body: Vec<u8>,
        headers: &Headers,
    ) -> Result<(), BrokerError> {
        if self.broken {
            return Err(BrokerError::Lost("the fake broker is down"));
        }
        {
            let mut nacked = self.nacked.lock().expect("lock");
            if *nacked < self.nacks {
                *nacked += 1;
                return Err(BrokerError::Nacked);
            }
        }
        let body = serde_json::from_slice(&body).expect("dpsd sends JSON");
        let sent = (queue.to_string(), body, headers.clone());
        self.sent.lock().expect("lock").push(sent);
        Ok(())
    }

    fn connected(&self) -> bool {
        !self.gone
    }
}

impl FakeBroker {
    pub fn down() -> FakeBroker {
        FakeBroker {
            broken: true,
            ..FakeBroker::default()
        }
    }

    pub fn disconnected() -> FakeBroker {
        FakeBroker {
            gone: true,
            ..FakeBroker::default()
        }
    }

    pub fn nacking(nacks: u32) -> FakeBroker {
        FakeBroker {
            nacks,
            ..FakeBroker::default()
        }
    }

    pub fn nacked(&self) -> u32 {
        *self.nacked.lock().expect("lock")
    }

    pub fn sent(&self) -> Vec<(String, Value, Headers)> {
        self.sent.lock().expect("lock").clone()
    }
}
