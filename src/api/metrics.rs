//! `GET /metrics` (SPEC 8) in the Prometheus text format, encoded by the `prometheus` crate
//! from the supervisor's snapshot: the replicas count, the daemon adds them up, and each
//! scrape shows the totals (counters never go down: exited replicas' counts are kept).

use std::collections::BTreeMap;

use actix_web::{get, web, HttpResponse};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use super::{ApiError, State};
use crate::broker::QueueStats;
use crate::supervisor::WorkersSnapshot;
use crate::worker::{Histogram as Durations, BUCKETS};

/// The `collection` label's values: the two kinds of document, as the embedded store's tables
/// and MongoDB's default collections name them.
const JOB_STATE: &str = "job_state";
const FAILED: &str = "failed_messages";

#[get("/metrics")]
async fn scrape(state: web::Data<State>) -> Result<HttpResponse, ApiError> {
    let workers = state.workers.borrow().clone();
    let queues = state.queues.borrow().clone();
    let job_runs = state.scheduler.run_counts();
    let mut families = families(&workers, &queues, &job_runs);
    families.extend(store_families(&state.retention.borrow()));
    // Left out, not guessed, while the store cannot be read.
    if let Ok(paused) = state.store.paused_workers().await {
        families.push(paused_family(&workers, &paused));
    }
    encoded(families)
}

/// `dpsd_worker_paused`: 1 for a worker paused through the API (SPEC 4.5), else 0.
fn paused_family(workers: &WorkersSnapshot, paused: &[String]) -> MetricFamily {
    let samples = workers
        .keys()
        .map(|name| {
            metric(
                &[("worker", name)],
                f64::from(u8::from(paused.contains(name))),
            )
        })
        .collect();
    gauge(
        "dpsd_worker_paused",
        "1 while the worker is paused through the API (on every host), else 0.",
        samples,
    )
}

/// The families as a text-format answer.
pub(super) fn encoded(families: Vec<MetricFamily>) -> Result<HttpResponse, ApiError> {
    // The text format has no empty families (a worker or job not seen yet).
    let families: Vec<MetricFamily> = families
        .into_iter()
        .filter(|f| !f.get_metric().is_empty())
        .collect();
    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut text)
        .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(text))
}

/// Every family, from the workers' reports, their queues' figures and the job runs.
pub(super) fn families(
    workers: &WorkersSnapshot,
    queues: &BTreeMap<String, QueueStats>,
    job_runs: &BTreeMap<(String, String), u64>,
) -> Vec<MetricFamily> {
    let per_worker = |value: &dyn Fn(&crate::supervisor::WorkerReport) -> f64| -> Vec<Metric> {
        workers
            .iter()
            .map(|(name, w)| metric(&[("worker", name)], value(w)))
            .collect()
    };
    let mut durations: BTreeMap<(String, String), Durations> = BTreeMap::new();
    for (worker, report) in workers {
        for (service, histogram) in &report.counters.services {
            durations
                .entry((worker.clone(), service.clone()))
                .or_default()
                .add(histogram);
        }
    }
    let job_runs: Vec<Metric> = job_runs
        .iter()
        .map(|((job, status), runs)| metric(&[("job", job), ("status", status)], *runs as f64))
        .collect();
    let per_queue = |value: &dyn Fn(&QueueStats) -> u32| -> Vec<Metric> {
        queues
            .iter()
            .map(|(queue, s)| metric(&[("queue", queue)], value(s) as f64))
            .collect()
    };
    vec![
        counter(
            "dpsd_messages_processed_total",
            "Messages a worker completed.",
            per_worker(&|w| w.counters.processed as f64),
        ),
        counter(
            "dpsd_messages_failed_total",
            "Failed attempts: each retry and each parking counts (a malformed body too).",
            per_worker(&|w| w.counters.failed as f64),
        ),
        counter(
            "dpsd_messages_retried_total",
            "Failed messages sent to a delay queue for another attempt.",
            per_worker(&|w| w.counters.retried as f64),
        ),
        counter(
            "dpsd_messages_parked_total",
            "Messages parked in the failed-message store.",
            per_worker(&|w| w.counters.parked as f64),
        ),
        counter(
            "dpsd_messages_cancelled_total",
            "Deliveries of cancelled executions acked without (finishing) their services.",
            per_worker(&|w| w.counters.cancelled as f64),
        ),
        counter(
            "dpsd_rate_limit_wait_seconds_total",
            "Time messages waited for a turn of the worker's rate limit, summed over messages.",
            per_worker(&|w| w.counters.rate_limit_wait_seconds),
        ),
        gauge(
            "dpsd_messages_in_flight",
            "Messages being handled now.",
            per_worker(&|w| w.counters.in_flight as f64),
        ),
        gauge(
            "dpsd_replicas_running",
            "Replica processes running.",
            per_worker(&|w| f64::from(w.replicas_running)),
        ),
        gauge(
            "dpsd_replicas_wanted",
            "Replicas the worker file asks for.",
            per_worker(&|w| f64::from(w.replicas_wanted)),
        ),
        counter(
            "dpsd_replica_restarts_total",
            "Replicas restarted after they exited.",
            per_worker(&|w| w.restarts as f64),
        ),
        histogram(&durations),
        gauge(
            "dpsd_queue_messages",
            "Messages ready in a worker's queue.",
            per_queue(&|s| s.messages),
        ),
        gauge(
            "dpsd_queue_consumers",
            "Consumers of a worker's queue (all hosts).",
            per_queue(&|s| s.consumers),
        ),
        counter(
            "dpsd_job_runs_total",
            "Job runs on this host by outcome.",
            job_runs,
        ),
    ]
}

/// What the store holds (as of the last retention pass) and what this host pruned.
fn store_families(report: &crate::retention::Report) -> Vec<MetricFamily> {
    let per_collection = |executions: u64, failed: u64| {
        vec![
            metric(&[("collection", &JOB_STATE.to_string())], executions as f64),
            metric(&[("collection", &FAILED.to_string())], failed as f64),
        ]
    };
    let mut families = vec![counter(
        "dpsd_store_pruned_total",
        "Documents retention deleted on this host.",
        per_collection(report.pruned_executions, report.pruned_failed),
    )];
    let Some(sizes) = report.sizes else {
        return families;
    };
    families.push(gauge(
        "dpsd_store_documents",
        "Documents the store holds.",
        per_collection(sizes.executions, sizes.failed),
    ));
    if let Some(bytes) = sizes.file_bytes {
        families.push(gauge(
            "dpsd_store_file_bytes",
            "Size of the embedded store's file and its write-ahead log.",
            vec![metric(&[], bytes as f64)],
        ));
    }
    families
}

fn labels(pairs: &[(&str, &String)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(name, value)| {
            let mut label = LabelPair::default();
            label.set_name((*name).to_string());
            label.set_value((*value).clone());
            label
        })
        .collect()
}

/// One sample; the family's type decides whether it is read as a counter or a gauge.
fn metric(pairs: &[(&str, &String)], value: f64) -> Metric {
    let mut sample = Metric::from_label(labels(pairs));
    let mut counter = Counter::default();
    counter.set_value(value);
    sample.set_counter(counter);
    let mut gauge = Gauge::default();
    gauge.set_value(value);
    sample.set_gauge(gauge);
    sample
}

fn family(name: &str, help: &str, kind: MetricType, samples: Vec<Metric>) -> MetricFamily {
    let mut family = MetricFamily::default();
    family.set_name(name.to_string());
    family.set_help(help.to_string());
    family.set_field_type(kind);
    family.set_metric(samples);
    family
}

fn counter(name: &str, help: &str, samples: Vec<Metric>) -> MetricFamily {
    family(name, help, MetricType::COUNTER, samples)
}

fn gauge(name: &str, help: &str, samples: Vec<Metric>) -> MetricFamily {
    family(name, help, MetricType::GAUGE, samples)
}

fn histogram(durations: &BTreeMap<(String, String), Durations>) -> MetricFamily {
    let samples = durations
        .iter()
        .map(|((worker, service), d)| {
            let mut histogram = Histogram::default();
            histogram.set_sample_count(d.count);
            histogram.set_sample_sum(d.sum_seconds);
            let buckets = BUCKETS
                .iter()
                .zip(&d.buckets)
                .map(|(bound, count)| {
                    let mut bucket = Bucket::default();
                    bucket.set_upper_bound(*bound);
                    bucket.set_cumulative_count(*count);
                    bucket
                })
                .collect();
            histogram.set_bucket(buckets);
            let mut sample =
                Metric::from_label(labels(&[("worker", worker), ("service", service)]));
            sample.set_histogram(histogram);
            sample
        })
        .collect();
    family(
        "dpsd_service_call_duration_seconds",
        "How long service calls took.",
        MetricType::HISTOGRAM,
        samples,
    )
}

pub fn routes(config: &mut web::ServiceConfig) {
    config.service(scrape);
}
