//! The main configuration file (`dpsd.yaml`): its typed sections and their defaults.
//! Loading and layering live in `config::load`; this file is only the shape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::amqp::AmqpSettings;
use super::retention::RetentionSettings;
use super::service::ServiceSpec;
use super::zone::Zone;

/// Everything in the main file. Every section has defaults, so a file only states what it
/// changes; unknown keys are errors, so a typo never passes silently.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub amqp: AmqpSettings,
    pub mongodb: Option<MongoSettings>,
    pub state_dir: PathBuf,
    pub state_sync: StateSync,
    pub api: ApiSettings,
    pub log: LogSettings,
    pub scheduler: SchedulerSettings,
    pub supervisor: SupervisorSettings,
    pub retention: RetentionSettings,
    pub jobs_dir: PathBuf,
    pub workers_dir: PathBuf,
    pub services: BTreeMap<String, ServiceSpec>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            amqp: AmqpSettings::default(),
            mongodb: None,
            state_dir: PathBuf::from("/var/lib/dpsd"),
            state_sync: StateSync::default(),
            api: ApiSettings::default(),
            log: LogSettings::default(),
            scheduler: SchedulerSettings::default(),
            supervisor: SupervisorSettings::default(),
            retention: RetentionSettings::default(),
            jobs_dir: PathBuf::from("jobs.d"),
            workers_dir: PathBuf::from("workers.d"),
            services: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// Where state lives, as `store::open` takes it.
    pub fn store(&self) -> StoreSettings {
        StoreSettings {
            mongodb: self.mongodb.clone(),
            state_dir: self.state_dir.clone(),
            state_sync: self.state_sync,
        }
    }
}

/// Where state lives (SPEC 3.1): MongoDB when `mongodb.uri` is set, else the embedded store
/// in `state_dir`, committing with `state_sync`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreSettings {
    pub mongodb: Option<MongoSettings>,
    pub state_dir: PathBuf,
    pub state_sync: StateSync,
}

/// When the embedded store's commits reach the disk (SQLite's `synchronous` in WAL mode).
/// Either way a commit survives the death of the process that made it; they differ on a
/// crash of the whole machine.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StateSync {
    /// The log is synced at checkpoints, not at every commit: a power loss can undo the
    /// last commits, as it can undo MongoDB's last 100 ms with its default write concern.
    #[default]
    Normal,
    /// Every commit is synced before a message is acked: about a millisecond per commit, and
    /// replicas sharing the file wait for each other's.
    Full,
}

impl StateSync {
    /// The value of SQLite's `synchronous` pragma.
    pub fn pragma(self) -> &'static str {
        match self {
            StateSync::Normal => "NORMAL",
            StateSync::Full => "FULL",
        }
    }
}

/// The top-level keys, used to keep unrelated `DPSD_*` variables (DPSD_CONFIG, DPSD_ENV,
/// a test harness's own) out of the environment layer.
pub const SECTIONS: &[&str] = &[
    "amqp",
    "mongodb",
    "state_dir",
    "state_sync",
    "api",
    "log",
    "scheduler",
    "supervisor",
    "jobs_dir",
    "workers_dir",
    "services",
];

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MongoSettings {
    /// None selects the embedded store.
    pub uri: Option<String>,
    pub database: String,
    pub job_state_collection: String,
}

impl Default for MongoSettings {
    fn default() -> Self {
        MongoSettings {
            uri: None,
            database: "dps".into(),
            job_state_collection: "job_state".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    pub listen: String,
    /// user name -> credential; None leaves the API open (the development default).
    pub auth: Option<BTreeMap<String, Credential>>,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            listen: "127.0.0.1:3000".into(),
            auth: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

impl Credential {
    /// What makes this entry unusable: no secret, two secrets, or a hash that is not a PHC
    /// string (`$argon2id$...`).
    pub fn problem(&self) -> Option<String> {
        match (&self.password, &self.password_hash) {
            (Some(_), Some(_)) => Some("give either password or password_hash, not both".into()),
            (None, None) => Some("needs password or password_hash".into()),
            (None, Some(hash)) => argon2::PasswordHash::new(hash)
                .err()
                .map(|e| format!("password_hash is not an argon2 PHC string: {e}")),
            (Some(_), None) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// tracing's EnvFilter syntax: `info`, `dpsd=debug,amqprs=warn`.
    pub level: String,
    pub format: LogFormat,
    pub console: bool,
    /// Daily-rotated file; None logs to the console only.
    pub file: Option<PathBuf>,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
            format: LogFormat::Text,
            console: true,
            file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerSettings {
    pub active: bool,
    /// The IANA zone of jobs without a `timezone` of their own (SPEC 5.1); every host sharing
    /// a database must have the same. Checked by `Config::load` (on its line), read by `zone`.
    pub timezone: String,
}

impl SchedulerSettings {
    /// `timezone` as a zone; UTC for a name that `Config::load` would have refused.
    pub fn zone(&self) -> Zone {
        self.timezone.parse().unwrap_or_default()
    }
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            active: true,
            timezone: Zone::UTC.name().to_string(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SupervisorSettings {
    pub restart_backoff: BackoffSettings,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        SupervisorSettings {
            restart_backoff: BackoffSettings::default(),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackoffSettings {
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        BackoffSettings {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}
