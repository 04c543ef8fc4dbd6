//! The command line's verbs, one file each. Each returns a [`Failure`] that knows its exit
//! code: 1 for a runtime failure, 2 for a usage or configuration error (SPEC 2).

mod cancel;
mod check;
mod failed;
mod health;
mod job;
mod run;
mod send;
mod worker;

pub use cancel::cancel;
pub use check::check;
pub use failed::{failed_delete, failed_list, failed_replay, Target};
pub use health::health;
pub use job::{job_preview, job_run};
pub use run::run;
pub use send::send;
pub use worker::worker;

use crate::config::{Config, Problems, Source};

#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("{0}")]
    Config(Problems),
    #[error("{0}")]
    Usage(String),
    #[error("{0:#}")]
    Runtime(#[from] anyhow::Error),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Runtime(_) => 1,
            Failure::Config(_) | Failure::Usage(_) => 2,
        }
    }
}

impl From<Problems> for Failure {
    fn from(problems: Problems) -> Self {
        Failure::Config(problems)
    }
}

/// Options every command shares.
#[derive(Debug, Clone, Default)]
pub struct Global {
    pub source: Source,
    pub verbose: bool,
}

impl Global {
    pub fn config(&self) -> Result<Config, Failure> {
        Ok(Config::load(&self.source)?)
    }
}
