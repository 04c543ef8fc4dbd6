//! The whole configuration at one moment: the main file with its layers, and every worker
//! and job file, read in one pass. The daemon's watcher loads one after each change and
//! hands it to the supervisor and the scheduler, so neither reads files itself and both see
//! the same files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::amqp::QueueTypes;
use super::job::JobDef;
use super::problem::{Problem, Problems};
use super::worker::WorkerDef;
use super::{Config, Source};

/// The main configuration, its workers and its jobs.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub config: Config,
    pub workers: Loaded<WorkerDef>,
    pub jobs: Loaded<JobDef>,
}

/// The files of one folder (workers.d or jobs.d), each validated on its own: one broken file
/// does not hide the others.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    /// The files that passed, by name (the file's stem).
    pub valid: BTreeMap<String, T>,
    /// What is wrong with the others. A name whose file is broken keeps its last good
    /// definition wherever it runs.
    pub problems: Problems,
}

impl<T> Loaded<T> {
    /// The names whose file failed validation.
    pub fn broken(&self) -> Vec<String> {
        let mut names: Vec<String> = self.problems.0.iter().filter_map(Problem::name).collect();
        names.dedup();
        names
    }

    /// The first problem of `name`'s file, while it is broken.
    pub fn problem(&self, name: &str) -> Option<&Problem> {
        self.problems
            .0
            .iter()
            .find(|p| p.name().as_deref() == Some(name))
    }
}

impl Snapshot {
    /// Loads everything; `Err` when the main configuration itself is invalid (then nothing
    /// else can be judged: the services and folders come from it).
    pub fn load(source: &Source) -> Result<Snapshot, Problems> {
        Config::load(source).map(Snapshot::of)
    }

    /// The worker and job files of a loaded main configuration.
    pub fn of(config: Config) -> Snapshot {
        let (valid, problems) = config.workers();
        let workers = Loaded { valid, problems };
        let (valid, problems) = config.jobs();
        let jobs = Loaded { valid, problems };
        Snapshot {
            config,
            workers,
            jobs,
        }
    }

    /// The type of every queue, as this snapshot's valid worker files decide it (SPEC 3.3).
    pub fn queue_types(&self) -> QueueTypes {
        let default = self.config.settings.amqp.queue_type;
        QueueTypes::new(default, self.workers.valid.values())
    }

    /// The files whose edits make a new snapshot: the main file, its overlay, and the YAML
    /// files of the two folders this snapshot names.
    pub fn files(&self, source: &Source) -> Vec<PathBuf> {
        let settings = &self.config.settings;
        source.files_with(&[&settings.workers_dir, &settings.jobs_dir])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_files_are_named_once_each_with_their_first_problem() {
        let problem = |file: &str, message: &str| Problem::new(file.as_ref(), Some(1), message);
        let loaded: Loaded<()> = Loaded {
            valid: BTreeMap::new(),
            problems: Problems(vec![
                problem("workers.d/a.yaml", "first"),
                problem("workers.d/a.yaml", "second"),
                problem("workers.d/b.yml", "third"),
            ]),
        };
        assert_eq!(loaded.broken(), ["a", "b"]);
        assert_eq!(
            loaded.problem("a").map(|p| p.message.as_str()),
            Some("first")
        );
        assert_eq!(loaded.problem("c"), None);
    }

    #[test]
    fn a_snapshot_holds_every_file_of_both_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write(
            "dpsd.yaml",
            "services: {s: {builtin: echo}}\nmongodb: {uri: 'mongodb://127.0.0.1:1'}\n",
        );
        write(
            "workers.d/w.yaml",
            "queue: q\njob_state: 1\nservices: [s]\n",
        );
        write(
            "workers.d/bad.yaml",
            "queue: q\njob_state: 1\nservices: [t]\n",
        );
        write("jobs.d/j.yaml", "publish: {queue: q}\n");
        let source = Source {
            config: Some(dir.path().join("dpsd.yaml")),
            env: None,
        };
        let snapshot = Snapshot::load(&source).expect("valid main file");
        assert!(snapshot.workers.valid.contains_key("w"));
        assert_eq!(snapshot.workers.broken(), ["bad"]);
        assert!(snapshot.jobs.valid.contains_key("j"));
        let files = snapshot.files(&source);
        assert_eq!(files.len(), 4, "{files:?}");
    }
}
