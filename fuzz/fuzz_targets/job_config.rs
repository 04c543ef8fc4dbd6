//! A `jobs.d/NAME.yaml` file through `load_job`, exactly as `dpsd` reads it: each input is
//! written to `$TMPDIR/dpsd-fuzz-job-PID/fuzz_job.yaml` (tools/fuzz.sh points TMPDIR at a
//! tmpfs). Any text must give Ok or Err(problems), never a panic; an accepted job must
//! satisfy what the scheduler relies on.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use dpsd::config::{load_job, queue_name_problem, JobAction, Zone};
use dpsd::config::Schedule;
use libfuzzer_sys::fuzz_target;

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("dpsd-fuzz-job-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("fuzz_job.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = file();
    std::fs::write(path, text).expect("write job file");
    let Ok(job) = load_job(path, Zone::UTC) else {
        return;
    };
    assert_eq!(job.name, "fuzz_job");
    match &job.action {
        JobAction::Publish { queue, count, .. } => {
            assert_eq!(queue_name_problem(queue), None);
            assert!(*count >= 1);
        }
        JobAction::Exec { .. } => {}
    }
    // The scheduler asks for the next occurrence as soon as the job is loaded, then after
    // each run; a fixed "now" keeps a finding reproducible. (An interval's second run is
    // `first + every`, reached only at `first`: not asked here, as `first` may be in 100000
    // years and dpsd's dates end in year 262143.)
    let now = chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("2026-01-01");
    let first = job.schedule.next(None, now, job.timezone);
    match &job.schedule {
        Schedule::Manual => assert_eq!(first, None),
        Schedule::Interval { .. } => assert!(first.is_some_and(|first| first > now)),
        Schedule::Cron { .. } => {
            if let Some(first) = first {
                assert!(first > now, "{first} is not after {now}");
                let _ = job.schedule.next(Some(first), first, job.timezone);
            }
        }
    }
});
