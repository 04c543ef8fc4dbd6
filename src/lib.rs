//! dpsd: data-processing chains on RabbitMQ and MongoDB.
//!
//! A worker consumes a queue, calls its services in order, records the outcome per
//! executionId in the store and forwards the message to its follow-up queue. The modules
//! follow that path: `config` (what to run), `broker` (RabbitMQ), `services` (what is
//! called), `store` (where state lives), `worker` (the loop tying them together), `supervisor`
//! (replicas of every worker kept running) and `commands` (the command line's verbs).

pub mod api;
pub mod backoff;
pub mod broker;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod history;
pub mod init;
pub mod logging;
pub mod message;
pub mod process;
pub mod redact;
pub mod reload;
pub mod replay;
pub mod retention;
pub mod scheduler;
pub mod services;
pub mod shutdown;
pub mod store;
pub mod supervisor;
pub mod worker;
