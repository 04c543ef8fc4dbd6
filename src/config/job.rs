//! `jobs.d/NAME.yaml`: one scheduled (or manual) job and its single action.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::problem::{Problem, Problems};
use super::schedule::{CatchUp, Schedule};
use super::worker::{file_stem_name, queue_name_problem};
use super::zone::Zone;

const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobFile {
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    catch_up: CatchUp,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    publish: Option<PublishFile>,
    #[serde(default)]
    exec: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFile {
    queue: String,
    #[serde(default)]
    message: Map<String, Value>,
    #[serde(default = "one")]
    count: u32,
}

fn one() -> u32 {
    1
}

/// A validated job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDef {
    pub name: String,
    pub file: PathBuf,
    pub schedule: Schedule,
    /// The zone its cron fields are read in: its `timezone`, else `scheduler.timezone`.
    pub timezone: Zone,
    /// What to do about occurrences missed while no daemon ran or the job was paused.
    pub catch_up: CatchUp,
    pub active: bool,
    pub action: JobAction,
}

/// What a run of the job does: exactly one of these.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    /// Puts `count` copies of `message` on `queue`, each with a fresh executionId.
    Publish {
        queue: String,
        message: Map<String, Value>,
        count: u32,
    },
    /// Runs a program (no shell); its output lines go to the log.
    Exec {
        program: PathBuf,
        args: Vec<String>,
        timeout: Duration,
    },
}

/// Loads and validates one job file; `default_zone` is `scheduler.timezone`.
pub fn load_job(path: &Path, default_zone: Zone) -> Result<JobDef, Problems> {
    let name = file_stem_name(path, "job")?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| Problem::new(path, None, format!("cannot read: {e}")))?;
    let file: JobFile = serde_yaml::from_str(&text).map_err(|e| Problem::from_yaml(path, &e))?;
    let mut problems = Problems::default();
    let schedule = match file.schedule.as_deref().map(Schedule::parse) {
        None => Schedule::Manual,
        Some(Ok(schedule)) => schedule,
        Some(Err(message)) => {
            problems.push(Problem::near(path, &text, "schedule", message));
            Schedule::Manual
        }
    };
    let timezone = match file.timezone.as_deref().map(str::parse::<Zone>) {
        None => default_zone,
        Some(Ok(zone)) => zone,
        Some(Err(message)) => {
            problems.push(Problem::near(path, &text, "timezone", message));
            default_zone
        }
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let action = match action(file.publish, file.exec, file.timeout, base) {
        Ok(action) => Some(action),
        Err((needle, message)) => {
            problems.push(Problem::near(path, &text, needle, message));
            None
        }
    };
    match action {
        Some(action) if problems.is_empty() => Ok(JobDef {
            name,
            file: path.to_path_buf(),
            schedule,
            timezone,
            catch_up: file.catch_up,
            active: file.active,
            action,
        }),
        _ => Err(problems),
    }
}

fn action(
    publish: Option<PublishFile>,
    exec: Option<Vec<String>>,
    timeout: Option<Duration>,
    base: &Path,
) -> Result<JobAction, (&'static str, String)> {
    match (publish, exec) {
        (Some(publish), None) => {
            if timeout.is_some() {
                return Err(("timeout", "timeout applies to exec jobs only".into()));
            }
            if let Some(problem) = queue_name_problem(&publish.queue) {
                return Err(("queue", format!("publish.queue: {problem}")));
            }
            if publish.count == 0 {
                return Err(("count", "publish.count must be at least 1".into()));
            }
            Ok(JobAction::Publish {
                queue: publish.queue,
                message: publish.message,
                count: publish.count,
            })
        }
        (None, Some(argv)) => {
            let (program, args) = argv
                .split_first()
                .ok_or(("exec", "exec needs at least the program to run".to_string()))?;
            let program = Path::new(program);
            let program = if program.is_relative() && program.components().count() > 1 {
                base.join(program)
            } else {
                program.to_path_buf()
            };
            Ok(JobAction::Exec {
                program,
                args: args.to_vec(),
                timeout: timeout.unwrap_or(DEFAULT_EXEC_TIMEOUT),
            })
        }
        _ => Err((
            "",
            "a job needs exactly one action: `publish` or `exec`".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<JobDef, Problems> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.yaml");
        std::fs::write(&path, yaml).expect("write");
        load_job(&path, Zone::UTC)
    }

    #[test]
    fn the_shipped_kinds_of_job() {
        let job = load("schedule: 90 minutes\nexec: [echo, hi]\n").expect("valid");
        assert_eq!(
            (job.schedule.kind(), job.active),
            (crate::config::JobKind::Interval, true)
        );
        assert!(
            matches!(job.action, JobAction::Exec { timeout, .. } if timeout == DEFAULT_EXEC_TIMEOUT)
        );
        let job = load("schedule: '00 02,10 * * *'\nactive: false\npublish: {queue: task_queue, message: {mydata: {}}}\n")
            .expect("valid");
        assert_eq!(
            (job.schedule.kind(), job.active),
            (crate::config::JobKind::Cron, false)
        );
        let job = load("publish: {queue: stage1_test, count: 3}\n").expect("valid");
        assert_eq!(job.schedule, Schedule::Manual);
        assert!(matches!(job.action, JobAction::Publish { count: 3, .. }));
    }

    #[test]
    fn a_timezone_of_its_own_or_the_default() {
        let job =
            load("schedule: '0 9 * * *'\ntimezone: Europe/Berlin\nexec: [x]\n").expect("valid");
        assert_eq!(job.timezone.name(), "Europe/Berlin");
        assert_eq!(job.catch_up, CatchUp::Once);
        let job = load("schedule: 1h\ncatch_up: skip\nexec: [x]\n").expect("valid");
        assert_eq!(job.catch_up, CatchUp::Skip);
        let err = load("schedule: 1h\nexec: [x]\ncatch_up: twice\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(3), "{err}");
        assert!(err.to_string().contains("unknown variant `twice`"), "{err}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.yaml");
        std::fs::write(&path, "schedule: '0 9 * * *'\nexec: [x]\n").expect("write");
        let tokyo: Zone = "Asia/Tokyo".parse().expect("zone");
        assert_eq!(load_job(&path, tokyo).expect("valid").timezone, tokyo);
        let err = load("exec: [x]\nschedule: '0 9 * * *'\ntimezone: Mars/Olympus\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(3), "{err}");
        assert!(
            err.to_string()
                .contains("unknown timezone \"Mars/Olympus\""),
            "{err}"
        );
    }

    #[test]
    fn mistakes_are_reported_on_their_line() {
        let err = load("exec: [x]\nschedule: whenever\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(2), "{err}");
        let err = load("exec: [x]\npublish: {queue: q}\n").unwrap_err();
        assert!(err.to_string().contains("exactly one action"), "{err}");
        let err = load("publish: {queue: q}\ntimeout: 5s\n").unwrap_err();
        assert_eq!(err.0[0].line, Some(2), "{err}");
        let err = load("publish: {queue: q, cont: 2}\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `cont`"), "{err}");
    }

    #[test]
    fn an_interval_past_the_last_representable_date_is_a_problem() {
        // Caught by fuzz/fuzz_targets/job_config.rs: such a job loaded, then the scheduler
        // panicked adding the interval to now. Schedule::parse refuses it now.
        for every in ["300000 years", "1000000000 years"] {
            let err = load(&format!("schedule: {every}\nexec: [x]\n")).unwrap_err();
            assert_eq!(err.0[0].line, Some(1), "{err}");
            assert!(err.to_string().contains("too long"), "{err}");
        }
        let job = load("schedule: 1000 years\nexec: [x]\n").expect("valid");
        assert!(job
            .schedule
            .next(None, chrono::Utc::now(), job.timezone)
            .is_some());
    }
}
