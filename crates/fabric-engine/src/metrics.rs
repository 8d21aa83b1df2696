//! Prometheus metrics of the engine: counters and histograms updated by the runtime, and the
//! store-derived gauges refreshed when `/metrics` is scraped.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use fabric_store::StateCounts;

/// Every metric Fabric exports, all prefixed `fabric_`: one shared set, cheap to clone (every
/// API request clones the state that holds it).
#[derive(Clone)]
pub struct Metrics(std::sync::Arc<MetricSet>);

impl std::ops::Deref for Metrics {
    type Target = MetricSet;
    fn deref(&self) -> &MetricSet {
        &self.0
    }
}

/// The metrics behind [`Metrics`].
pub struct MetricSet {
    registry: Registry,
    pub enqueued: IntCounter,
    pub completed: IntCounter,
    pub failed: IntCounter,
    pub quarantined: IntCounter,
    pub rescued: IntCounter,
    pub late_completions: IntCounter,
    pub duration: Histogram,
    pub latency: Histogram,
    pub workers_busy: IntGauge,
    pub workers_max: IntGauge,
    /// 1 while this daemon is the fleet's maintenance leader.
    pub leader: IntGauge,
    /// 1 while conservative mode is on (as this daemon last read it from the store).
    pub conservative: IntGauge,
    /// Messages waiting in the store's outbox (all daemons count them).
    pub outbox_pending: IntGauge,
    /// Lifecycle events in them.
    pub outbox_pending_events: IntGauge,
    /// Lifecycle events the bus took.
    pub outbox_events: IntCounter,
    /// Age of the oldest waiting outbox row, in seconds.
    pub outbox_oldest_age: Gauge,
    /// Outbox rows the bus took, by stream (normal, emergency, telemetry).
    pub outbox_published: IntCounterVec,
    /// Publish attempts of the outbox that failed (the bus away).
    pub outbox_errors: IntCounter,
    /// Outbox rows the bus refused for backpressure (kept and tried again).
    pub outbox_refused: IntCounter,
    /// Unsent outbox rows deleted past `bus.outbox_retention_days`.
    pub outbox_pruned: IntCounter,
    /// 1 while the last publish of the outbox reached the bus (on the publishing leader).
    pub bus_up: IntGauge,
    jobs: IntGaugeVec,
    queue_depth: IntGauge,
    ingest_files: IntCounterVec,
    ingest_bytes: IntCounterVec,
    ingest_duration: HistogramVec,
    slo_burn_rate: GaugeVec,
    alerts_firing: IntGaugeVec,
    bus_depth: IntGaugeVec,
    bus_counts: IntCounterVec,
    /// The bus counters last exported, to turn snapshots into counter increments.
    bus_seen: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric name");
    r.register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn histogram(r: &Registry, name: &str, help: &str) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
        .expect("valid metric name");
    r.register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric name");
    r.register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn registered<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: M) -> M {
    r.register(Box::new(m.clone()))
        .expect("metric registered once");
    m
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let r = Registry::new();
        let jobs = IntGaugeVec::new(Opts::new("fabric_jobs", "Jobs by state."), &["state"])
            .expect("valid metric name");
        r.register(Box::new(jobs.clone()))
            .expect("metric registered once");
        Self(std::sync::Arc::new(MetricSet {
            enqueued: counter(&r, "fabric_jobs_enqueued_total", "Jobs enqueued."),
            completed: counter(&r, "fabric_jobs_completed_total", "Jobs that succeeded."),
            failed: counter(&r, "fabric_jobs_failed_total", "Failed attempts."),
            quarantined: counter(&r, "fabric_jobs_quarantined_total", "Jobs quarantined."),
            rescued: counter(
                &r,
                "fabric_jobs_rescued_total",
                "Jobs whose lease expired and were reassigned.",
            ),
            late_completions: counter(
                &r,
                "fabric_late_completions_total",
                "Completions rejected because the attempt had been rescued or cancelled.",
            ),
            duration: histogram(&r, "fabric_job_duration_seconds", "Handler run time."),
            latency: histogram(
                &r,
                "fabric_job_latency_seconds",
                "Time from due (enqueue or run_at) to start.",
            ),
            workers_busy: gauge(&r, "fabric_workers_busy", "Worker slots running a job."),
            leader: gauge(
                &r,
                "fabric_leader",
                "1 while this daemon holds the maintenance leader's lease.",
            ),
            workers_max: gauge(&r, "fabric_workers_max", "Worker slots."),
            conservative: gauge(
                &r,
                "fabric_conservative_mode",
                "1 while conservative mode is on (the owner lever), else 0.",
            ),
            outbox_pending: gauge(
                &r,
                "fabric_outbox_pending",
                "Messages (lifecycle events, telemetry samples) waiting in the store's outbox \
                 for the bus.",
            ),
            outbox_pending_events: gauge(
                &r,
                "fabric_outbox_pending_events",
                "Job lifecycle events in the messages waiting in the outbox.",
            ),
            outbox_events: counter(
                &r,
                "fabric_outbox_events_published_total",
                "Job lifecycle events the bus took (in messages of up to 1,000).",
            ),
            outbox_oldest_age: registered(
                &r,
                Gauge::new(
                    "fabric_outbox_oldest_age_seconds",
                    "Age of the oldest message waiting in the outbox.",
                )
                .expect("valid metric name"),
            ),
            outbox_published: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "fabric_outbox_published_total",
                        "Outbox messages the bus took, by stream.",
                    ),
                    &["stream"],
                )
                .expect("valid metric name"),
            ),
            outbox_errors: counter(
                &r,
                "fabric_outbox_publish_errors_total",
                "Outbox publishes that failed (the bus unreachable); retried with backoff.",
            ),
            outbox_refused: counter(
                &r,
                "fabric_outbox_refused_total",
                "Outbox messages the bus dropped for backpressure; kept and tried again.",
            ),
            outbox_pruned: counter(
                &r,
                "fabric_outbox_pruned_total",
                "Unsent outbox messages deleted past bus.outbox_retention_days (lost).",
            ),
            bus_up: gauge(
                &r,
                "fabric_bus_up",
                "1 while the last publish of the outbox reached the bus (the leader publishes).",
            ),
            queue_depth: gauge(
                &r,
                "fabric_queue_depth",
                "Jobs waiting to run: pending, and failed ones waiting for their retry.",
            ),
            ingest_files: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "fabric_ingest_files_total",
                        "Files ingested by this daemon, by source and outcome (ok, skipped, \
                         failed, quarantined).",
                    ),
                    &["source", "outcome"],
                )
                .expect("valid metric name"),
            ),
            ingest_bytes: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "fabric_ingest_bytes_total",
                        "Bytes of the files this daemon ingested, by source.",
                    ),
                    &["source"],
                )
                .expect("valid metric name"),
            ),
            ingest_duration: registered(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "fabric_ingest_duration_seconds",
                        "Run time of ingest jobs (a file, or a batch of files), by source.",
                    )
                    .buckets(BUCKETS.to_vec()),
                    &["source"],
                )
                .expect("valid metric name"),
            ),
            slo_burn_rate: registered(
                &r,
                GaugeVec::new(
                    Opts::new(
                        "fabric_slo_burn_rate",
                        "Error-budget burn rate of each SLO over each window (1 spends the \
                         budget exactly over the SLO's window).",
                    ),
                    &["slo", "window"],
                )
                .expect("valid metric name"),
            ),
            alerts_firing: registered(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "fabric_alerts_firing",
                        "1 for each alert rule firing now (fabric alerts list).",
                    ),
                    &["alert"],
                )
                .expect("valid metric name"),
            ),
            bus_depth: registered(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "fabric_bus_queue_depth",
                        "Backlog of a bus stream: what its slowest consumer group has yet to \
                         acknowledge (the length without groups).",
                    ),
                    &["lane"],
                )
                .expect("valid metric name"),
            ),
            bus_counts: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "fabric_bus_messages_total",
                        "Bus counters by event (published, rerouted, dropped, consumed, acked, \
                         reclaimed, dead_lettered, lost, rejected); on Redis the whole bus's.",
                    ),
                    &["event"],
                )
                .expect("valid metric name"),
            ),
            bus_seen: Default::default(),
            jobs,
            registry: r,
        }))
    }

    /// Exports a bus snapshot: the depths as gauges, the counters as counter increments.
    pub fn set_bus(&self, snapshot: &fabric_bus::MetricsSnapshot) {
        self.bus_depth
            .with_label_values(&["normal"])
            .set(snapshot.get("queue_depth_normal") as i64);
        self.bus_depth
            .with_label_values(&["emergency"])
            .set(snapshot.get("queue_depth_emergency") as i64);
        let mut seen = self.bus_seen.lock().unwrap_or_else(|p| p.into_inner());
        for (key, event) in [
            ("publish_total", "published"),
            ("publish_rerouted", "rerouted"),
            ("publish_dropped", "dropped"),
            ("consumed", "consumed"),
            ("acked", "acked"),
            ("reclaimed", "reclaimed"),
            ("dead_lettered", "dead_lettered"),
            ("lost", "lost"),
            ("rejected", "rejected"),
        ] {
            let now = snapshot.get(key);
            let before = seen.insert(key.to_string(), now).unwrap_or(0);
            // A smaller value means the counters started again (a flushed Redis).
            let add = if now >= before { now - before } else { now };
            self.bus_counts.with_label_values(&[event]).inc_by(add);
        }
    }

    /// Sets `fabric_alerts_firing` to 1 for each of `firing` (rule names), dropping the rest.
    pub fn set_alerts_firing<'a>(&self, firing: impl IntoIterator<Item = &'a str>) {
        self.alerts_firing.reset();
        for name in firing {
            self.alerts_firing.with_label_values(&[name]).set(1);
        }
    }

    /// Sets `fabric_slo_burn_rate` from a report.
    pub fn set_slo(&self, report: &std::collections::BTreeMap<String, crate::slo::SloStatus>) {
        self.slo_burn_rate.reset();
        for (name, s) in report {
            for (window, rate) in &s.burn_rates {
                self.slo_burn_rate
                    .with_label_values(&[name.as_str(), window.as_str()])
                    .set(*rate);
            }
        }
    }

    /// Counts `files` files of `source` with `outcome` and their `bytes`.
    pub fn ingested(&self, source: &str, outcome: &str, files: u64, bytes: u64) {
        self.ingest_files
            .with_label_values(&[source, outcome])
            .inc_by(files);
        if bytes > 0 {
            self.ingest_bytes.with_label_values(&[source]).inc_by(bytes);
        }
    }

    /// Records the run time of one ingest job of `source`.
    pub fn ingest_job(&self, source: &str, seconds: f64) {
        self.ingest_duration
            .with_label_values(&[source])
            .observe(seconds);
    }

    /// Sets the store-derived gauges.
    pub fn set_counts(&self, counts: &StateCounts) {
        for state in fabric_core::JobState::ALL {
            self.jobs
                .with_label_values(&[state.as_str()])
                .set(counts.get(state) as i64);
        }
        self.queue_depth
            .set((counts.pending + counts.failed) as i64);
    }

    /// Busy slots / max slots.
    pub fn utilization(&self) -> f64 {
        let max = self.workers_max.get();
        if max <= 0 {
            0.0
        } else {
            self.workers_busy.get() as f64 / max as f64
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let util = format!(
            "# HELP fabric_worker_utilization Busy worker slots over all slots.\n\
             # TYPE fabric_worker_utilization gauge\nfabric_worker_utilization {}\n",
            self.utilization()
        );
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return util;
        }
        let mut text = String::from_utf8_lossy(&buf).into_owned();
        text.push_str(&util);
        text
    }
}
