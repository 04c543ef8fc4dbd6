//! Configuration: the main file, its `--env` overlay, `DPSD_*` variables and the worker
//! files, parsed into typed structs and validated once, so the rest of the program never
//! sees a half-valid configuration. Every problem carries its file and line.

mod amqp;
mod job;
mod problem;
mod rate;
mod replica;
mod retention;
mod retry;
mod schedule;
mod service;
mod settings;
mod snapshot;
mod watch;
mod worker;
mod zone;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::providers::{Env, Format, Serialized, Yaml};
use figment::Figment;

pub use amqp::{
    check_amqp_url, AmqpSettings, Nodes, Pem, QueueType, QueueTypes, TlsSettings,
    DEFAULT_DELIVERY_LIMIT, MAX_DELIVERY_LIMIT,
};
pub use job::{load_job, JobAction, JobDef};
pub use problem::{line_of, Problem, Problems};
pub use rate::{RateLimit, MAX_RATE};
pub use replica::{ReplicaRuntime, ReplicaSpec};
pub use retention::RetentionSettings;
pub use retry::{delay_queue, RetryPolicy};
pub use schedule::{CatchUp, JobKind, Schedule};
pub use service::{Builtin, ExecSpec, HttpSpec, ServiceDef, ServiceSpec};
pub use settings::*;
pub use snapshot::{Loaded, Snapshot};
pub use watch::FileWatch;
pub use worker::{
    last_stages, load_worker, parse_worker, queue_name_problem, resolve_follow_types, yaml_files,
    NamedService, WorkerDef,
};
pub use zone::Zone;

/// Where the configuration comes from: the command line's `--config` and `--env`.
#[derive(Debug, Clone, Default)]
pub struct Source {
    pub config: Option<PathBuf>,
    pub env: Option<String>,
}

impl Source {
    /// `--config`, else `./etc/dpsd.yaml` when it exists, else the installed path.
    /// (`$DPSD_CONFIG` arrives through clap as `--config`.)
    pub fn main_file(&self) -> PathBuf {
        if let Some(path) = &self.config {
            return path.clone();
        }
        let local = PathBuf::from("etc/dpsd.yaml");
        if local.exists() {
            local
        } else {
            PathBuf::from("/etc/dpsd/dpsd.yaml")
        }
    }
}

impl Source {
    /// The main file, its overlay, and every YAML file of `dirs`: what a reload re-reads.
    pub fn files_with(&self, dirs: &[&Path]) -> Vec<PathBuf> {
        let main = self.main_file();
        let mut paths = vec![main.clone()];
        if let Some(env) = &self.env {
            paths.push(overlay_path(&main, env));
        }
        for dir in dirs {
            paths.extend(yaml_files(dir).unwrap_or_default());
        }
        paths
    }
}

/// The validated main configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub settings: Settings,
    /// The main file, as found.
    pub path: PathBuf,
    /// Services of the main file, validated, by id.
    pub services: BTreeMap<String, Arc<ServiceDef>>,
    /// What is allowed but probably not meant (`dpsd check` prints it, the daemon logs it).
    pub warnings: Vec<Problem>,
}

impl Config {
    /// Loads the main file, the overlay and the environment, and validates the services.
    pub fn load(source: &Source) -> Result<Config, Problems> {
        let path = source.main_file();
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Problem::new(
                &path,
                None,
                format!("cannot read the main configuration: {e}"),
            )
        })?;
        let mut problems = Problems::default();
        lint_yaml(&path, &text, &mut problems);
        let overlay = source.env.as_ref().map(|env| overlay_path(&path, env));
        if let Some(overlay) = &overlay {
            match std::fs::read_to_string(overlay) {
                Ok(text) => lint_yaml(overlay, &text, &mut problems),
                Err(e) => problems.push(Problem::new(
                    overlay,
                    None,
                    format!("cannot read the overlay: {e}"),
                )),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut settings = layered(&path, overlay.as_deref())?;
        resolve_paths(&mut settings, path.parent().unwrap_or(Path::new(".")));
        validate_settings(&path, &text, &settings, &mut problems);
        let services = validate_services(&path, &text, &settings, &mut problems);
        let warnings = warnings(&path, &text, &settings);
        problems.into_result(Config {
            settings,
            path,
            services,
            warnings,
        })
    }

    /// The worker file `workers_dir/NAME.yaml`, validated.
    pub fn worker(&self, name: &str) -> Result<WorkerDef, Problems> {
        let dir = &self.settings.workers_dir;
        let path = ["yaml", "yml"]
            .iter()
            .map(|ext| dir.join(format!("{name}.{ext}")))
            .find(|p| p.exists())
            .ok_or_else(|| {
                Problem::new(
                    dir,
                    None,
                    format!("no worker file {name}.yaml in this folder"),
                )
            })?;
        let mut worker = load_worker(&path, &self.services, &self.settings.amqp)?;
        // Its follow queue's type is its consumer's: the other files decide it.
        if let Some(follow) = &worker.follow_queue {
            worker.follow_queue_type = self.queue_types().of(follow);
        }
        Ok(worker)
    }

    /// Every worker file, each validated on its own: one broken file does not hide the others.
    pub fn workers(&self) -> (BTreeMap<String, WorkerDef>, Problems) {
        let (services, amqp) = (&self.services, &self.settings.amqp);
        let (mut workers, problems) = load_dir(
            &self.settings.workers_dir,
            "worker",
            |file| load_worker(file, services, amqp),
            |w| &w.name,
        );
        resolve_follow_types(&mut workers, amqp.queue_type);
        (workers, problems)
    }

    /// The type of every queue, as the worker files that validate decide it (SPEC 3.3).
    pub fn queue_types(&self) -> QueueTypes {
        QueueTypes::new(self.settings.amqp.queue_type, self.workers().0.values())
    }

    /// Every job file, each validated on its own.
    pub fn jobs(&self) -> (BTreeMap<String, JobDef>, Problems) {
        let zone = self.settings.scheduler.zone();
        load_dir(
            &self.settings.jobs_dir,
            "job",
            |file| load_job(file, zone),
            |j| &j.name,
        )
    }
}

/// Loads every YAML file of `dir` with `load`, keyed by name; problems of all files at once.
fn load_dir<T>(
    dir: &Path,
    what: &str,
    load: impl Fn(&Path) -> Result<T, Problems>,
    name: impl Fn(&T) -> &String,
) -> (BTreeMap<String, T>, Problems) {
    let mut loaded = BTreeMap::new();
    let mut problems = Problems::default();
    let files = match yaml_files(dir) {
        Ok(files) => files,
        Err(problem) => return (loaded, problem.into()),
    };
    for file in files {
        match load(&file) {
            Ok(item) if loaded.contains_key(name(&item)) => {
                let message = format!(
                    "a second file for {what} {:?}: keep either .yaml or .yml",
                    name(&item)
                );
                problems.push(Problem::new(&file, None, message));
            }
            Ok(item) => {
                loaded.insert(name(&item).clone(), item);
            }
            Err(found) => problems.0.extend(found.0),
        }
    }
    (loaded, problems)
}

/// `dpsd.<env>.yaml` beside the main file.
pub fn overlay_path(main: &Path, env: &str) -> PathBuf {
    let stem = main.file_stem().and_then(|s| s.to_str()).unwrap_or("dpsd");
    main.with_file_name(format!("{stem}.{env}.yaml"))
}

/// Parses one file on its own with serde_yaml, which knows lines and columns: unknown keys,
/// type errors and syntax errors are reported precisely before figment merges the layers.
fn lint_yaml(path: &Path, text: &str, problems: &mut Problems) {
    if text.trim().is_empty() {
        return;
    }
    if let Err(e) = serde_yaml::from_str::<Settings>(text) {
        problems.push(Problem::from_yaml(path, &e));
    }
}

/// Defaults, then the main file, then the overlay, then `DPSD_SECTION__KEY` variables.
fn layered(path: &Path, overlay: Option<&Path>) -> Result<Settings, Problem> {
    let mut figment =
        Figment::from(Serialized::defaults(Settings::default())).merge(Yaml::file(path));
    if let Some(overlay) = overlay {
        figment = figment.merge(Yaml::file(overlay));
    }
    // The filter sees the key split but not yet lowercased: `AMQP.PREFETCH`.
    let env = Env::prefixed("DPSD_").split("__").filter(|key| {
        let section = key.as_str().split('.').next().unwrap_or_default();
        SECTIONS.iter().any(|s| section.eq_ignore_ascii_case(s))
    });
    if let Some(problem) = unknown_env_section() {
        return Err(problem);
    }
    figment
        .merge(env)
        .extract()
        .map_err(|e| figment_problem(path, e))
}

/// `DPSD_AMPQ__URL` (a typo) would otherwise be ignored: a `DPSD_X__Y` variable must name a
/// known section. Variables without `__` (DPSD_CONFIG, DPSD_ENV, ...) are not configuration.
fn unknown_env_section() -> Option<Problem> {
    std::env::vars_os().find_map(|(key, _)| {
        let key = key.to_str()?.strip_prefix("DPSD_")?;
        let (section, _) = key.split_once("__")?;
        let known = SECTIONS.iter().any(|s| section.eq_ignore_ascii_case(s));
        (!known).then(|| {
            let known = SECTIONS.join(", ");
            Problem::new(
                Path::new("environment"),
                None,
                format!("DPSD_{key}: unknown section {section:?} (known: {known})"),
            )
        })
    })
}

/// Names the variable when the environment layer is at fault (`DPSD_AMQP__PREFETCH: ...`),
/// else the main file; figment knows keys, not lines, but the files were linted already.
fn figment_problem(path: &Path, error: figment::Error) -> Problem {
    let from_env = error
        .metadata
        .as_ref()
        .is_some_and(|m| m.name.contains("environment"));
    if from_env {
        let variable = format!("DPSD_{}", error.path.join("__").to_uppercase());
        Problem::new(
            Path::new("environment"),
            None,
            format!("{variable}: {}", error.kind),
        )
    } else {
        Problem::new(path, None, error.to_string())
    }
}

/// Relative paths in the main file are relative to that file, not to the working directory,
/// so `dpsd --config /etc/dpsd/dpsd.yaml` behaves the same from anywhere.
fn resolve_paths(settings: &mut Settings, base: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    resolve(&mut settings.state_dir);
    let tls = &mut settings.amqp.tls;
    for file in [&mut tls.ca_file, &mut tls.cert_file, &mut tls.key_file] {
        if let Some(file) = file.as_mut() {
            resolve(file);
        }
    }
    resolve(&mut settings.jobs_dir);
    resolve(&mut settings.workers_dir);
    if let Some(file) = settings.log.file.as_mut() {
        resolve(file);
    }
}

/// Checks the values serde cannot: URLs, the log filter, limits. A mistake here is reported
/// by `dpsd check` instead of surfacing as a replica that never connects.
fn validate_settings(path: &Path, text: &str, settings: &Settings, problems: &mut Problems) {
    let mut report =
        |key: &str, message: String| problems.push(Problem::near(path, text, key, message));
    if let Err(message) = settings.scheduler.timezone.parse::<Zone>() {
        report("timezone:", format!("scheduler.timezone: {message}"));
    }
    let amqp = &settings.amqp;
    if amqp.url.0.is_empty() {
        report("url:", "amqp.url lists no node".into());
    }
    let several = amqp.url.0.len() > 1;
    for (i, url) in amqp.url.iter().enumerate() {
        if let Err(reason) = check_amqp_url(url) {
            // By position, not by text: a URL may hold a password.
            let which = if several {
                format!(" (node {})", i + 1)
            } else {
                String::new()
            };
            report("url:", format!("amqp.url{which}: {reason}"));
        }
    }
    if amqp.prefetch == 0 {
        report("prefetch:", "amqp.prefetch must be at least 1".into());
    }
    if amqp.delivery_limit == 0 {
        report(
            "delivery_limit:",
            "amqp.delivery_limit must be at least 1".into(),
        );
    }
    for (key, message) in amqp.tls.problems() {
        report(&format!("{key}:"), message);
    }
    for (key, message) in settings.retention.problems() {
        report(&format!("{key}:"), message);
    }
    let uri = settings.mongodb.as_ref().and_then(|m| m.uri.as_deref());
    if uri.is_some_and(|uri| !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")))
    {
        report(
            "uri:",
            "mongodb.uri must start with mongodb:// or mongodb+srv://".into(),
        );
    }
    if !valid_listen(&settings.api.listen) {
        let message = format!("api.listen {:?} is not HOST:PORT", settings.api.listen);
        report("listen:", message);
    }
    for (user, credential) in settings.api.auth.iter().flatten() {
        if let Some(problem) = credential.problem() {
            report(&format!("{user}:"), format!("api.auth.{user}: {problem}"));
        }
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&settings.log.level) {
        report("level:", format!("log.level {:?}: {e}", settings.log.level));
    }
}

/// Settings that are valid but do nothing as written.
fn warnings(path: &Path, text: &str, settings: &Settings) -> Vec<Problem> {
    let mut warnings = Vec::new();
    if settings.amqp.tls.is_set() && !settings.amqp.url.any_tls() {
        let message = "amqp.tls is set, but no amqp.url is amqps://: it is not used";
        warnings.push(Problem::near(path, text, "tls:", message));
    }
    warnings
}

/// `127.0.0.1:3000`, `[::1]:3000`, `localhost:3000`: a host and a port.
fn valid_listen(listen: &str) -> bool {
    listen.parse::<std::net::SocketAddr>().is_ok()
        || listen
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn validate_services(
    path: &Path,
    text: &str,
    settings: &Settings,
    problems: &mut Problems,
) -> BTreeMap<String, Arc<ServiceDef>> {
    let base = path.parent().unwrap_or(Path::new("."));
    let mut services = BTreeMap::new();
    for (id, spec) in &settings.services {
        match spec.validate(base) {
            Ok(def) => {
                services.insert(id.clone(), Arc::new(def));
            }
            Err(message) => problems.push(Problem::near(
                path,
                text,
                &format!("{id}:"),
                format!("service {id}: {message}"),
            )),
        }
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "mongodb: {uri: 'mongodb://127.0.0.1:1'}\n";

    struct Files(tempfile::TempDir);

    impl Files {
        /// A main file with `main`, plus a MongoDB URI unless `main` has its own section.
        fn new(main: &str) -> Files {
            let dir = tempfile::tempdir().expect("tempdir");
            let text = if main.contains("mongodb") || main.trim() == "{}" {
                main.to_string()
            } else {
                format!("{main}{MINIMAL}")
            };
            std::fs::write(dir.path().join("dpsd.yaml"), text).expect("write");
            Files(dir)
        }
        fn add(&self, name: &str, text: &str) -> &Files {
            let path = self.0.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
            self
        }
        fn load(&self, env: Option<&str>) -> Result<Config, Problems> {
            Config::load(&Source {
                config: Some(self.0.path().join("dpsd.yaml")),
                env: env.map(str::to_string),
            })
        }
    }

    #[test]
    fn defaults_apply_and_paths_resolve_against_the_file() {
        let files = Files::new("amqp: {prefetch: 3}\nworkers_dir: w\n");
        let config = files.load(None).expect("valid");
        assert_eq!(config.settings.amqp.prefetch, 3);
        assert_eq!(config.settings.amqp.url, AmqpSettings::default().url);
        assert_eq!(config.settings.workers_dir, files.0.path().join("w"));
        assert_eq!(config.settings.supervisor.shutdown_timeout.as_secs(), 30);
    }

    #[test]
    fn the_scheduler_timezone_is_the_default_of_jobs_and_an_unknown_one_is_on_its_line() {
        let files = Files::new("scheduler:\n  timezone: America/New_York\n");
        files.add("jobs.d/a.yaml", "schedule: '0 9 * * *'\nexec: [x]\n");
        files.add(
            "jobs.d/b.yaml",
            "schedule: '0 9 * * *'\ntimezone: UTC\nexec: [x]\n",
        );
        let config = files.load(None).expect("valid");
        let (jobs, problems) = config.jobs();
        assert!(problems.is_empty(), "{problems}");
        assert_eq!(jobs["a"].timezone.name(), "America/New_York");
        assert_eq!(jobs["b"].timezone, Zone::UTC);
        let files = Files::new("scheduler:\n  active: true\n  timezone: Europe/Atlantis\n");
        let err = files.load(None).unwrap_err();
        assert_eq!(err.0[0].line, Some(3), "{err}");
        assert!(err.to_string().contains("unknown timezone"), "{err}");
    }

    #[test]
    fn the_overlay_wins_over_the_main_file() {
        let files = Files::new("amqp: {prefetch: 3}\nlog: {level: debug}\n");
        files.add("dpsd.test.yaml", "amqp: {prefetch: 5}\n");
        let config = files.load(Some("test")).expect("valid");
        assert_eq!(config.settings.amqp.prefetch, 5);
        assert_eq!(config.settings.log.level, "debug");
    }

    #[test]
    fn unknown_keys_are_reported_with_file_and_line() {
        let files = Files::new("amqp:\n  url: amqp://x\n  prefetchh: 3\n");
        let err = files.load(None).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        assert_eq!(err.0[0].line, Some(3), "{err}");
        assert!(err.0[0].message.contains("prefetchh"), "{err}");
    }

    #[test]
    fn bad_durations_and_services_are_reported() {
        let files = Files::new("supervisor: {shutdown_timeout: forever}\n");
        let err = files.load(None).unwrap_err();
        assert!(err.to_string().contains(":1:"), "{err}");
        let files =
            Files::new("services:\n  a: {builtin: constant, value: 1}\n  b: {builtin: nope}\n");
        let err = files.load(None).unwrap_err();
        assert_eq!(err.0[0].line, Some(3), "{err}");
    }

    #[test]
    fn values_serde_accepts_but_dpsd_cannot_use_are_problems() {
        let files = Files::new(
            "amqp:\n  url: http://x\n  prefetch: 0\nmongodb:\n  uri: postgres://x\nlog:\n  level: 'dpsd=loud'\n",
        );
        let err = files.load(None).unwrap_err();
        let lines: Vec<Option<usize>> = err.0.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(2), Some(3), Some(5), Some(7)], "{err}");
    }

    #[test]
    fn a_retention_of_zero_or_below_is_a_problem_with_its_line() {
        let files = Files::new("retention:\n  executions: 0s\n  failed: 2d\n");
        let err = files.load(None).unwrap_err();
        assert_eq!(err.0[0].line, Some(2), "{err}");
        assert!(err.0[0]
            .message
            .contains("retention.executions must be longer than zero"));
        let files = Files::new("retention:\n  unfinished: -3d\n");
        let err = files.load(None).unwrap_err();
        assert!(err.to_string().contains("unfinished"), "{err}");
        let files = Files::new("retention: {executions: 1h, failed: 90d}\n");
        let retention = files.load(None).expect("valid").settings.retention;
        assert_eq!(
            retention.failed,
            Some(std::time::Duration::from_secs(90 * 24 * 3600))
        );
    }

    #[test]
    fn a_worker_with_both_yaml_and_yml_is_reported() {
        let files = Files::new(MINIMAL);
        files.add(
            "workers.d/w.yaml",
            "queue: q\njob_state: 1\nfollow_queue: f\nservices: []\n",
        );
        files.add(
            "workers.d/w.yml",
            "queue: q\njob_state: 1\nfollow_queue: f\nservices: []\n",
        );
        let (workers, problems) = files.load(None).expect("valid").workers();
        assert_eq!(workers.len(), 1);
        assert!(
            problems
                .to_string()
                .contains("a second file for worker \"w\""),
            "{problems}"
        );
    }

    #[test]
    fn a_missing_overlay_is_a_problem() {
        let err = Files::new("{}\n").load(Some("prod")).unwrap_err();
        assert!(err.to_string().contains("dpsd.prod.yaml"), "{err}");
    }

    #[test]
    fn workers_are_validated_one_by_one() {
        let files = Files::new("services: {s: {builtin: echo}}\n");
        files.add(
            "workers.d/good.yaml",
            "queue: q\njob_state: 1\nservices: [s]\n",
        );
        files.add(
            "workers.d/bad.yaml",
            "queue: q\njob_state: 1\nservices: [t]\n",
        );
        let config = files.load(None).expect("valid main");
        let (workers, problems) = config.workers();
        assert!(workers.contains_key("good"));
        assert_eq!(problems.0.len(), 1);
        assert!(problems.0[0].file.ends_with("workers.d/bad.yaml"));
        assert!(config.worker("good").is_ok());
        assert!(config.worker("absent").is_err());
    }
}
