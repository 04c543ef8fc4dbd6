//! A `workers.d/NAME.yaml` file's text through `parse_worker` (what `load_worker` runs after
//! reading the file).
//! Any UTF-8 text must give Ok or Err(problems), never a panic; an accepted worker must
//! satisfy what the rest of dpsd relies on.
#![no_main]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use dpsd::config::{parse_worker, queue_name_problem, Config, ServiceSpec, Settings};
use dpsd::config::delay_queue;
use libfuzzer_sys::fuzz_target;

const NAME: &str = "fuzz_worker";

/// A configuration whose catalog holds the shipped example's services plus one of each kind,
/// so that service ids in the corpus resolve.
fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let specs = "
integration_test_service1: {builtin: constant, value: test1}
integration_test_service2: {builtin: constant, value: test2_0}
integration_test_service2_1: {builtin: constant, value: test2_1}
svc1: {builtin: echo}
slow: {builtin: sleep, duration: 1s}
ext: {exec: [./bin/svc, -v], timeout: 5s}
web: {http: 'http://127.0.0.1:1/x', method: put}
";
        let specs: BTreeMap<String, ServiceSpec> =
            serde_yaml::from_str(specs).expect("catalog parses");
        let base = PathBuf::from("/etc/dpsd");
        let services = specs
            .iter()
            .map(|(id, spec)| (id.clone(), Arc::new(spec.validate(&base).expect("valid"))))
            .collect();
        let mut settings = Settings::default();
        settings.workers_dir = base.join("workers.d");
        Config {
            settings,
            path: base.join("dpsd.yaml"),
            services,
            warnings: Vec::new(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = config();
    let path = config.settings.workers_dir.join(format!("{NAME}.yaml"));
    let Ok(worker) = parse_worker(&path, text, &config.services, &config.settings.amqp) else {
        return;
    };
    assert_eq!(worker.name, NAME);
    assert_eq!(queue_name_problem(&worker.queue), None);
    if let Some(follow) = &worker.follow_queue {
        assert_eq!(queue_name_problem(follow), None);
        assert_ne!(follow, &worker.queue);
    }
    assert!(worker.prefetch >= 1);
    assert!(!worker.services.is_empty() || worker.follow_queue.is_some());
    if let Some(retry) = &worker.retry {
        assert!((1..=100).contains(&retry.max_attempts));
        assert!(retry.backoff.is_finite() && retry.backoff >= 1.0);
        assert!(retry.delay <= retry.max_delay);
        // What the worker declares at start: one delay queue per distinct delay. Each must
        // be a valid AMQP queue name (amqprs panics on a name over 255 bytes).
        for delay in retry.delays() {
            assert!(delay >= std::time::Duration::from_millis(1), "{delay:?}");
            let queue = delay_queue(&worker.queue, delay);
            assert_eq!(queue_name_problem(&queue), None, "delay queue {queue:?}");
        }
    }
});
