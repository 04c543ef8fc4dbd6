//! `workers.d/NAME.yaml`: one generic worker's queue, services and scale, and its validation
//! against the services of the main file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::amqp::{AmqpSettings, QueueType, QueueTypes};
use super::problem::{Problem, Problems};
use super::rate::{RateLimit, RateLimitFile};
use super::retry::{delay_queue, RetryPolicy};
use super::service::{ServiceDef, ServiceSpec};

/// AMQP short strings (queue names) are at most 255 bytes.
const MAX_QUEUE_NAME: usize = 255;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerFile {
    queue: String,
    #[serde(default)]
    follow_queue: Option<String>,
    job_state: i64,
    services: Vec<ServiceRef>,
    #[serde(default = "one")]
    replicas: u32,
    #[serde(default)]
    prefetch: Option<u16>,
    #[serde(default)]
    retry: Option<RetryFile>,
    #[serde(default)]
    queue_type: Option<QueueType>,
    #[serde(default)]
    rate_limit: Option<RateLimitFile>,
}

fn one() -> u32 {
    1
}

/// More attempts than this is a typo, not a policy (each distinct delay is a queue).
const MAX_ATTEMPTS: u32 = 100;

/// `retry:` as written; the defaults are SPEC 4.1's example.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFile {
    max_attempts: u32,
    #[serde(default = "ten_seconds", with = "humantime_serde")]
    delay: Duration,
    #[serde(default = "two")]
    backoff: f64,
    #[serde(default = "ten_minutes", with = "humantime_serde")]
    max_delay: Duration,
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}

fn two() -> f64 {
    2.0
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

impl RetryFile {
    fn validate(&self) -> Result<RetryPolicy, String> {
        if self.max_attempts == 0 {
            return Err("retry.max_attempts must be at least 1 (the first attempt counts)".into());
        }
        if self.max_attempts > MAX_ATTEMPTS {
            return Err(format!("retry.max_attempts must be at most {MAX_ATTEMPTS}"));
        }
        if self.delay < Duration::from_millis(1) {
            return Err("retry.delay must be at least 1ms".into());
        }
        if !(self.backoff.is_finite() && self.backoff >= 1.0) {
            return Err(format!(
                "retry.backoff must be 1.0 or more, not {}",
                self.backoff
            ));
        }
        if self.max_delay < self.delay {
            return Err("retry.max_delay must not be shorter than retry.delay".into());
        }
        Ok(RetryPolicy {
            max_attempts: self.max_attempts,
            delay: self.delay,
            backoff: self.backoff,
            max_delay: self.max_delay,
        })
    }
}

/// A worker's service: an id from the main file's `services`, or a definition in place.
#[derive(Debug)]
enum ServiceRef {
    Id(String),
    Inline(Box<ServiceSpec>),
}

impl<'de> Deserialize<'de> for ServiceRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefVisitor;
        impl<'de> Visitor<'de> for RefVisitor {
            type Value = ServiceRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a service id or an inline service definition")
            }
            fn visit_str<E: de::Error>(self, id: &str) -> Result<ServiceRef, E> {
                Ok(ServiceRef::Id(id.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServiceRef, A::Error> {
                let spec = ServiceSpec::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ServiceRef::Inline(Box::new(spec)))
            }
        }
        deserializer.deserialize_any(RefVisitor)
    }
}

/// A validated worker, ready to run. Serde round-trips it: the supervisor hands it to the
/// replicas it starts (`config::ReplicaSpec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerDef {
    pub name: String,
    pub file: PathBuf,
    pub queue: String,
    pub follow_queue: Option<String>,
    pub job_state: i64,
    pub services: Vec<NamedService>,
    pub replicas: u32,
    pub prefetch: u16,
    /// None: a failed message is parked at once.
    pub retry: Option<RetryPolicy>,
    /// The type of `queue` and of its delay queues: the file's, else `amqp.queue_type`.
    pub queue_type: QueueType,
    /// The type of `follow_queue`: its consumer's (SPEC 3.3), set by [`resolve_follow_types`].
    pub follow_queue_type: QueueType,
    /// None: messages start as fast as they come (SPEC 4.5).
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// The workers whose `done` ends a chain (no follow queue): what retention and a cancel
/// call finished (SPEC 3.2, 4.5).
pub fn last_stages(workers: &BTreeMap<String, WorkerDef>) -> BTreeSet<String> {
    workers
        .iter()
        .filter(|(_, def)| def.follow_queue.is_none())
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
impl WorkerDef {
    /// Worker `name` consuming `queue`: no services, no follow queue, one replica. Tests
    /// change what they are about.
    pub fn example(name: &str, queue: &str) -> WorkerDef {
        WorkerDef {
            name: name.into(),
            file: format!("workers.d/{name}.yaml").into(),
            queue: queue.into(),
            follow_queue: None,
            job_state: 1,
            services: Vec::new(),
            replicas: 1,
            prefetch: 10,
            retry: None,
            queue_type: QueueType::Classic,
            follow_queue_type: QueueType::Classic,
            rate_limit: None,
        }
    }
}

/// A service with the id it is known by in logs, metrics and `DPS_SERVICE`
/// (`WORKER.services[I]` for inline ones).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedService {
    pub id: String,
    pub def: Arc<ServiceDef>,
}

/// Parses and validates one worker file. `catalog` holds the main file's services; `amqp`
/// gives the defaults of `prefetch` and `queue_type`.
pub fn load_worker(
    path: &Path,
    catalog: &BTreeMap<String, Arc<ServiceDef>>,
    amqp: &AmqpSettings,
) -> Result<WorkerDef, Problems> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::new(path, None, format!("cannot read: {e}")))?;
    parse_worker(path, &text, catalog, amqp)
}

/// Validates worker-file `text` as if read from `path` (whose stem names the worker). Its
/// follow queue's type is the default until [`resolve_follow_types`] sees every worker.
pub fn parse_worker(
    path: &Path,
    text: &str,
    catalog: &BTreeMap<String, Arc<ServiceDef>>,
    amqp: &AmqpSettings,
) -> Result<WorkerDef, Problems> {
    let name = file_stem_name(path, "worker")?;
    let file: WorkerFile = serde_yaml::from_str(text).map_err(|e| Problem::from_yaml(path, &e))?;

    let mut problems = Problems::default();
    for (key, queue) in [
        ("queue", Some(&file.queue)),
        ("follow_queue", file.follow_queue.as_ref()),
    ] {
        if let Some(message) = queue.and_then(|q| queue_name_problem(q)) {
            problems.push(Problem::near(path, text, key, format!("{key}: {message}")));
        }
    }
    if file.follow_queue.as_ref() == Some(&file.queue) {
        let message = "follow_queue is the worker's own queue: messages would circle forever";
        problems.push(Problem::near(path, text, "follow_queue", message));
    }
    if file.prefetch == Some(0) {
        problems.push(Problem::near(
            path,
            text,
            "prefetch",
            "prefetch must be at least 1",
        ));
    }
    if file.services.is_empty() && file.follow_queue.is_none() {
        problems.push(Problem::near(
            path,
            text,
            "services",
            "a worker without services must at least have a follow_queue",
        ));
    }
    let retry = match file.retry.as_ref().map(RetryFile::validate).transpose() {
        Ok(retry) => retry,
        Err(message) => {
            problems.push(Problem::near(path, text, "retry", message));
            None
        }
    };
    if let Some(message) = retry
        .as_ref()
        .and_then(|retry| delay_queue_problem(&file.queue, retry))
    {
        problems.push(Problem::near(path, text, "retry", message));
    }
    let rate_limit = match file.rate_limit.as_ref().map(RateLimitFile::validate) {
        Some(Err(message)) => {
            problems.push(Problem::near(path, text, "rate_limit", message));
            None
        }
        valid => valid.and_then(Result::ok),
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut services = Vec::new();
    for (i, service) in file.services.iter().enumerate() {
        match resolve(&name, i, service, catalog, base) {
            Ok(named) => services.push(named),
            Err((needle, message)) => problems.push(Problem::near(path, text, &needle, message)),
        }
    }
    problems.into_result(WorkerDef {
        name,
        file: path.to_path_buf(),
        queue: file.queue,
        follow_queue: file.follow_queue,
        job_state: file.job_state,
        services,
        replicas: file.replicas,
        prefetch: file.prefetch.unwrap_or(amqp.prefetch),
        retry,
        queue_type: file.queue_type.unwrap_or(amqp.queue_type),
        follow_queue_type: amqp.queue_type,
        rate_limit,
    })
}

/// A worker's or job's name is its file's stem; it shows in process titles, logs and
/// metrics, so it is kept to a safe alphabet.
pub fn file_stem_name(path: &Path, what: &str) -> Result<String, Problem> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let ok = !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(stem.to_string())
    } else {
        Err(Problem::new(
            path,
            None,
            format!(
                "a {what} file's name must be letters, digits, '_', '-' or '.' followed by .yaml"
            ),
        ))
    }
}

fn resolve(
    worker: &str,
    index: usize,
    service: &ServiceRef,
    catalog: &BTreeMap<String, Arc<ServiceDef>>,
    base: &Path,
) -> Result<NamedService, (String, String)> {
    match service {
        ServiceRef::Id(id) => catalog
            .get(id)
            .map(|def| NamedService {
                id: id.clone(),
                def: def.clone(),
            })
            .ok_or_else(|| {
                let known: Vec<&str> = catalog.keys().map(String::as_str).collect();
                (
                    id.clone(),
                    format!("unknown service id {id:?} (defined: {})", known.join(", ")),
                )
            }),
        ServiceRef::Inline(spec) => spec
            .validate(base)
            .map(|def| NamedService {
                id: format!("{worker}.services[{index}]"),
                def: Arc::new(def),
            })
            .map_err(|e| ("services".to_string(), format!("services[{index}]: {e}"))),
    }
}

pub fn queue_name_problem(queue: &str) -> Option<String> {
    if queue.is_empty() {
        Some("must not be empty".into())
    } else if queue.len() > MAX_QUEUE_NAME {
        Some(format!("longer than {MAX_QUEUE_NAME} bytes"))
    } else if queue.starts_with("amq.") {
        Some("names starting with \"amq.\" are reserved by RabbitMQ".into())
    } else {
        None
    }
}

/// The delay queues of `retry` are named after the worker's queue (`QUEUE.retry.10000ms`)
/// and must be valid queue names too: a name over 255 bytes made the AMQP client panic when
/// the worker declared it at start, so each replica crashed and was restarted, forever.
fn delay_queue_problem(queue: &str, retry: &RetryPolicy) -> Option<String> {
    if queue_name_problem(queue).is_some() {
        return None; // reported for `queue` already
    }
    let longest = retry
        .delays()
        .into_iter()
        .map(|delay| delay_queue(queue, delay))
        .max_by_key(String::len)?;
    queue_name_problem(&longest).map(|problem| {
        format!(
            "retry: delay queue {longest:?} would be {problem}: shorten the queue name ({} bytes)",
            queue.len()
        )
    })
}

/// Gives every worker's follow queue the type of the worker that consumes it (SPEC 3.3).
pub fn resolve_follow_types(workers: &mut BTreeMap<String, WorkerDef>, default: QueueType) {
    let types = QueueTypes::new(default, workers.values());
    for worker in workers.values_mut() {
        if let Some(follow) = &worker.follow_queue {
            worker.follow_queue_type = types.of(follow);
        }
    }
}

/// Every `*.yaml` / `*.yml` file of a folder, sorted, so output is stable.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, Problem> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Problem::new(dir, None, format!("cannot read folder: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Builtin;

    fn catalog() -> BTreeMap<String, Arc<ServiceDef>> {
        let mut c = BTreeMap::new();
        c.insert(
            "svc1".to_string(),
            Arc::new(ServiceDef::Builtin(Builtin::Constant("test1".into()))),
        );
        c
    }

    fn load(yaml: &str) -> Result<WorkerDef, Problems> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w1.yaml");
        std::fs::write(&path, yaml).expect("write");
        load_worker(
            &path,
            &catalog(),
            &AmqpSettings {
                prefetch: 7,
                ..AmqpSettings::default()
            },
        )
    }

    #[test]
    fn a_full_worker() {
        let w = load("queue: a\nfollow_queue: b\njob_state: 1\nservices: [svc1, {builtin: echo}]\nreplicas: 3\n")
            .expect("valid");
        assert_eq!(w.name, "w1");
        assert_eq!(
            (w.queue.as_str(), w.follow_queue.as_deref()),
            ("a", Some("b"))
        );
        assert_eq!((w.replicas, w.prefetch), (3, 7));
        let ids: Vec<&str> = w.services.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["svc1", "w1.services[1]"]);
    }

    #[test]
    fn unknown_service_id_is_reported_on_its_line() {
        let err = load("queue: a\njob_state: 1\nservices:\n  - svc1\n  - nope\n").unwrap_err();
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].line, Some(5));
        assert!(
            err.0[0].message.contains("unknown service id \"nope\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_syntax_errors_have_lines() {
        let err = load("queue: a\njob_state: 1\nservices: [svc1]\nreplica: 2\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(4));
        assert!(
            err.0[0].message.contains("unknown field `replica`"),
            "{err}"
        );
        let err = load("queue: a\njob_state: [1\n").unwrap_err();
        assert!(err.0[0].line.is_some(), "{err}");
    }

    #[test]
    fn retry_takes_defaults_and_rejects_nonsense() {
        let w = load("queue: a\njob_state: 1\nservices: [svc1]\nretry: {max_attempts: 5}\n")
            .expect("valid");
        let retry = w.retry.expect("retry");
        assert_eq!(
            (
                retry.max_attempts,
                retry.delay.as_secs(),
                retry.max_delay.as_secs()
            ),
            (5, 10, 600)
        );
        for bad in [
            "{max_attempts: 0}",
            "{max_attempts: 3, backoff: 0.5}",
            "{max_attempts: 3, delay: 1m, max_delay: 10s}",
        ] {
            let err = load(&format!(
                "queue: a\njob_state: 1\nservices: [svc1]\nretry: {bad}\n"
            ))
            .unwrap_err();
            assert_eq!(err.0[0].line, Some(4), "{bad}: {err}");
        }
    }

    #[test]
    fn a_worker_must_not_forward_to_its_own_queue() {
        let err = load("queue: a\nfollow_queue: a\njob_state: 1\nservices: [svc1]\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(2), "{err}");
    }

    #[test]
    fn delay_queue_names_must_fit_like_queue_names() {
        // Caught by fuzz/fuzz_targets/worker_config.rs: a 250-byte queue is valid, but its
        // delay queue `QUEUE.retry.10000ms` is 264 bytes, on which the AMQP client panicked.
        let worker = |queue: &str, retry: &str| {
            load(&format!(
                "queue: {queue}\njob_state: 1\nservices: [svc1]\n{retry}"
            ))
        };
        let long = "q".repeat(250);
        let err = worker(&long, "retry: {max_attempts: 3}\n").unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].line, Some(4), "{err}");
        assert!(err.0[0].message.contains("longer than 255 bytes"), "{err}");
        // Without retries there is no delay queue; 241 bytes and `.retry.20000ms` make 255.
        assert!(worker(&long, "").is_ok());
        let queue = "q".repeat(241);
        assert!(worker(&queue, "retry: {max_attempts: 3}\n").is_ok());
        // The longest delay counts: `.retry.600000ms` (15 bytes) once the cap is reached.
        let err = worker(&queue, "retry: {max_attempts: 20}\n").unwrap_err();
        assert!(err.0[0].message.contains("600000ms"), "{err}");
    }

    #[test]
    fn a_rate_limit_is_read_and_a_bad_one_reported_on_its_line() {
        let w = load("queue: a\njob_state: 1\nservices: [svc1]\nrate_limit: {max: 100, per: 1m}\n")
            .expect("valid");
        let limit = w.rate_limit.expect("rate limit");
        assert_eq!((limit.max, limit.per.as_secs()), (100, 60));
        for bad in [
            "{max: 0, per: 1s}",
            "{max: 5, per: 0s}",
            "{max: 5, per: often}",
        ] {
            let err = load(&format!(
                "queue: a\njob_state: 1\nservices: [svc1]\nrate_limit: {bad}\n"
            ))
            .unwrap_err();
            assert_eq!(err.0.len(), 1, "{bad}: {err}");
            assert_eq!(err.0[0].line, Some(4), "{bad}: {err}");
            assert!(
                err.0[0].message.contains("rate_limit") || err.0[0].message.contains("per"),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            load("queue: a\njob_state: 1\nservices: [svc1]\n")
                .map(|w| w.rate_limit)
                .ok(),
            Some(None)
        );
    }

    #[test]
    fn several_problems_at_once() {
        let err = load("queue: ''\njob_state: 1\nservices: [x, {builtin: nah}]\nprefetch: 0\n")
            .unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
    }
}
