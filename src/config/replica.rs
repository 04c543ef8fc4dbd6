//! What a replica runs on (SPEC 10): its worker's validated definition and the settings a
//! replica reads. The supervisor hands a replica this, as JSON on its stdin, rather than
//! letting it read the files: a replica restarted while a file is broken then runs the last
//! good configuration, and every replica of one worker runs the same one.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::amqp::AmqpSettings;
use super::settings::{LogSettings, StoreSettings};
use super::worker::WorkerDef;
use super::Config;

/// One replica's whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSpec {
    pub worker: WorkerDef,
    pub runtime: ReplicaRuntime,
    /// How long the replica's drain may take before it gives up on the messages in hand.
    pub shutdown_timeout: Duration,
}

/// The settings a replica reads once, when it starts: a change of any of them restarts the
/// replicas (a change of `supervisor` or `api` does not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaRuntime {
    pub amqp: AmqpSettings,
    pub store: StoreSettings,
    pub log: LogSettings,
}

impl Config {
    /// What every replica reads from the main configuration.
    pub fn replica_runtime(&self) -> ReplicaRuntime {
        ReplicaRuntime {
            amqp: self.settings.amqp.clone(),
            store: self.settings.store(),
            log: self.settings.log.clone(),
        }
    }

    /// The whole configuration of a replica of `worker`.
    pub fn replica(&self, worker: WorkerDef) -> ReplicaSpec {
        ReplicaSpec {
            worker,
            runtime: self.replica_runtime(),
            shutdown_timeout: self.settings.supervisor.shutdown_timeout,
        }
    }
}

impl ReplicaSpec {
    /// Reads the spec the supervisor wrote; `name` is the worker the command line names.
    pub fn from_json(json: &str, name: &str) -> Result<ReplicaSpec, String> {
        let spec: ReplicaSpec = serde_json::from_str(json)
            .map_err(|e| format!("the replica's configuration from the supervisor: {e}"))?;
        if spec.worker.name != name {
            return Err(format!(
                "the supervisor sent the configuration of worker {:?}, not {name:?}",
                spec.worker.name
            ));
        }
        Ok(spec)
    }

    pub fn to_json(&self) -> String {
        // A spec is plain data (strings, numbers, maps with string keys): it always encodes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::config::{
        Builtin, ExecSpec, HttpSpec, NamedService, QueueType, RetryPolicy, ServiceDef, Settings,
    };

    fn spec() -> ReplicaSpec {
        let service = |id: &str, def| NamedService {
            id: id.into(),
            def: Arc::new(def),
        };
        let worker = WorkerDef {
            name: "w".into(),
            file: "/etc/dpsd/workers.d/w.yaml".into(),
            queue: "in".into(),
            follow_queue: Some("out".into()),
            job_state: 2,
            services: vec![
                service(
                    "exec",
                    ServiceDef::Exec(ExecSpec {
                        program: "/bin/cat".into(),
                        args: vec!["-u".into()],
                        timeout: Duration::from_millis(1500),
                        env: BTreeMap::from([("A".into(), "1".into())]),
                    }),
                ),
                service(
                    "http",
                    ServiceDef::Http(HttpSpec {
                        url: "http://127.0.0.1:9/x?y=1".parse().expect("url"),
                        method: reqwest::Method::PUT,
                        timeout: Duration::from_secs(10),
                        headers: BTreeMap::from([("X-A".into(), "b".into())]),
                    }),
                ),
                service(
                    "c",
                    ServiceDef::Builtin(Builtin::Constant(serde_json::json!({"a": [1.5]}))),
                ),
                service(
                    "s",
                    ServiceDef::Builtin(Builtin::Sleep(Duration::from_millis(3))),
                ),
            ],
            replicas: 3,
            prefetch: 7,
            retry: Some(RetryPolicy {
                max_attempts: 4,
                delay: Duration::from_millis(250),
                backoff: 1.5,
                max_delay: Duration::from_secs(9),
            }),
            queue_type: QueueType::Quorum,
            follow_queue_type: QueueType::Classic,
            rate_limit: Some(crate::config::RateLimit {
                max: 5,
                per: Duration::from_millis(1500),
            }),
        };
        let settings = Settings::default();
        ReplicaSpec {
            worker,
            runtime: ReplicaRuntime {
                amqp: settings.amqp.clone(),
                store: settings.store(),
                log: settings.log.clone(),
            },
            shutdown_timeout: Duration::from_secs(30),
        }
    }

    #[test]
    fn a_spec_arrives_as_it_was_sent() {
        let sent = spec();
        assert_eq!(ReplicaSpec::from_json(&sent.to_json(), "w"), Ok(sent));
    }

    #[test]
    fn a_spec_for_another_worker_or_garbage_is_refused() {
        let err = ReplicaSpec::from_json(&spec().to_json(), "v").unwrap_err();
        assert!(err.contains("worker \"w\", not \"v\""), "{err}");
        let err = ReplicaSpec::from_json("{", "w").unwrap_err();
        assert!(err.starts_with("the replica's configuration"), "{err}");
    }
}
