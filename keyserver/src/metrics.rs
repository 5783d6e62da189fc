//! Prometheus metrics: requests and latencies by route, key fetches by
//! outcome, denials by reason, and the audit writer's batches.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    key_fetches: IntCounterVec,
    denials: IntCounterVec,
    audit_batch: Histogram,
    audit_commit: Histogram,
    integrity: prometheus::IntCounter,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("medseal_keyserver".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let key_fetches = IntCounterVec::new(
            Opts::new("key_fetches_total", "Key fetches by outcome"),
            &["outcome"],
        )?;
        let denials = IntCounterVec::new(
            Opts::new("denials_total", "Refused requests by reason"),
            &["reason"],
        )?;
        let audit_batch = Histogram::with_opts(
            HistogramOpts::new("audit_batch_events", "Events per audit commit").buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0,
            ]),
        )?;
        let audit_commit = Histogram::with_opts(
            HistogramOpts::new("audit_commit_seconds", "Time to commit one audit batch")
                .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let integrity = prometheus::IntCounter::new(
            "integrity_violations_total",
            "Rows refused because their state does not match its keyed MAC",
        )?;
        registry.register(Box::new(integrity.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(key_fetches.clone()))?;
        registry.register(Box::new(denials.clone()))?;
        registry.register(Box::new(audit_batch.clone()))?;
        registry.register(Box::new(audit_commit.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            key_fetches,
            denials,
            audit_batch,
            audit_commit,
            integrity,
        })
    }

    /// Records one finished HTTP request.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// Records a key fetch outcome (`released`, `denied`, `gone`, `unknown`).
    pub fn key_fetch(&self, outcome: &str) {
        self.key_fetches.with_label_values(&[outcome]).inc();
    }

    /// Records a denial.
    pub fn denial(&self, reason: &str) {
        self.denials.with_label_values(&[reason]).inc();
    }

    /// Records one audit commit.
    pub fn audit_commit(&self, events: usize, took: Duration) {
        self.audit_batch.observe(events as f64);
        self.audit_commit.observe(took.as_secs_f64());
    }

    /// Records a row refused because it was edited outside the server.
    pub fn integrity_violation(&self) {
        self.integrity.inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}
