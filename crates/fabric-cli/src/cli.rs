//! The command line: every command, flag and default of the `fabric` binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Fabric: a durable job engine and its operator console.
#[derive(Debug, Parser)]
#[command(name = "fabric", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// Configuration file (default: $FABRIC_HOME/config/fabric.yaml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// How data is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the daemon (in the background unless --foreground).
    Start {
        /// Run in this process instead of detaching.
        #[arg(long)]
        foreground: bool,
    },
    /// Stop the daemon: stop claiming, wait for in-flight jobs, exit.
    Stop {
        /// Seconds the daemon waits for its in-flight jobs (default:
        /// workers.shutdown_timeout_seconds); those still running then go back to pending.
        #[arg(long)]
        timeout: Option<u64>,
        /// Stop the daemon of this node id (needed when several run from this home).
        #[arg(long, value_name = "ID", conflicts_with = "all")]
        node: Option<String>,
        /// Stop every daemon of this home.
        #[arg(long)]
        all: bool,
        /// Kill the daemon at once (SIGKILL); its running jobs are rescued on the next start.
        #[arg(long)]
        force: bool,
    },
    /// Is the daemon running, and what is the queue doing.
    Status {
        /// Also every worker slot (job, kind, elapsed time), each shard's depth and levers,
        /// and the last hour's throughput as a rate.
        #[arg(long)]
        verbose: bool,
    },
    /// Submit, list, inspect, cancel and retry jobs.
    #[command(subcommand)]
    Jobs(JobsCmd),
    /// Batches of jobs with dependencies: submit, show, list, retry, cancel.
    #[command(subcommand)]
    Batch(crate::commands::batch::BatchCmd),
    /// Cron schedules: add, list, show, pause, resume, remove, trigger.
    #[command(subcommand)]
    Schedules(crate::commands::schedules::SchedulesCmd),
    /// Jobs that failed for good: list, inspect, retry, purge.
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// Ingestion sources: add, list, show, pause, resume, remove, trigger.
    #[command(subcommand)]
    Sources(SourcesCmd),
    /// Ingestion telemetry: summary, throughput, failures, per source; clean old samples.
    #[command(subcommand)]
    Telemetry(TelemetryCmd),
    /// Field reports: the daemons' append-only log of job outcomes and risk events.
    #[command(subcommand)]
    Reports(ReportsCmd),
    /// Alerts: firing alerts, rules, delivery history, silences, acknowledgements, test
    /// notifications.
    #[command(subcommand)]
    Alerts(AlertsCmd),
    /// The message bus: consumer groups, counters, streams, publishing, tailing, dead letters.
    #[command(subcommand)]
    Bus(BusCmd),
    /// Workloads that show Fabric's parts working together.
    #[command(subcommand)]
    Demo(DemoCmd),
    /// Drive breaching samples, then a clearing one, through the real alert rules and routes
    /// (on a scratch store), and show the alert fire and clear and what each receiver got.
    Drill {
        /// Which alert to drill.
        #[arg(value_enum)]
        kind: DrillKind,
        /// Build and show the messages, but send nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate or show the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Store maintenance: integrity check, backups, restore, vacuum.
    #[command(subcommand)]
    Db(DbCmd),
    /// Health checks: store, disk, config, workers, api, docs, and each source by name.
    Health {
        /// Show every check's detail.
        #[arg(long)]
        verbose: bool,
        #[command(subcommand)]
        one: Option<HealthCmd>,
    },
    /// The audit log of operator actions.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Shards and their owner levers: pause, resume, spillover limit, latency budget.
    #[command(subcommand)]
    Shards(ShardsCmd),
    /// Conservative mode: dispatch only high-priority work, on every shard.
    Conservative {
        /// on or off.
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// The fleet: every daemon (node) with its heartbeat, health, load and leader flag.
    #[command(subcommand)]
    Nodes(NodesCmd),
    /// Documents of the ingestion layer: full-text search, one document, stats.
    #[command(subcommand)]
    Docs(DocsCmd),
    /// The last crash-recovery report.
    Recovery,
    /// Measure enqueue, drain and latency on a fresh embedded store (`bench ingest`: the
    /// ingestion layer on a generated corpus).
    Bench(BenchArgs),
    /// The isolated extractor child that the daemon's extractor pool spawns (internal).
    #[command(name = "__extractor", hide = true)]
    Extractor {
        /// Address-space cap (RLIMIT_AS) in bytes; 0 for none.
        #[arg(long)]
        memory_bytes: u64,
        /// Largest answer in bytes.
        #[arg(long)]
        output_cap_bytes: u64,
    },
    /// Checkpoints of scenario runs: save one now, load one (continue its run), show one.
    #[command(subcommand)]
    Checkpoint(CheckpointCmd),
    /// Run a scenario on a simulated fleet (virtual clock, durable store), with a live
    /// scoreboard, a checkpoint and a JSON report.
    Run(RunArgs),
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCmd {
    /// Ask the running `fabric run` to write its checkpoint now.
    Save {
        #[arg(long, default_value = "reports/planetary-fabric/checkpoint.json")]
        checkpoint: PathBuf,
    },
    /// Continue the run saved in the checkpoint (= `fabric run --resume`).
    Load {
        #[arg(long, default_value = "reports/planetary-fabric/checkpoint.json")]
        checkpoint: PathBuf,
        #[arg(long)]
        quiet: bool,
    },
    /// Check a checkpoint and show what it holds.
    Show {
        #[arg(long, default_value = "reports/planetary-fabric/checkpoint.json")]
        checkpoint: PathBuf,
    },
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// edge-relief (alias humanitarian-surge, the default), k2-benchmark, resilience-drill.
    pub scenario: Option<String>,
    /// Number of jobs (overrides the scenario's).
    #[arg(long)]
    pub jobs: Option<u64>,
    /// Probability that an attempt succeeds, 0..1.
    #[arg(long)]
    pub completion: Option<f64>,
    /// Stop after this many virtual seconds even with jobs left (exit code 3 then).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write the JSON report here.
    #[arg(long, value_name = "PATH")]
    pub export: Option<PathBuf>,
    /// Continue the run saved in the checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// A custom scenario: JSON {name, description, job_count, completion_probability, shards,
    /// duration_seconds}.
    #[arg(long, value_name = "FILE")]
    pub custom: Option<PathBuf>,
    /// Random seed: the same seed gives the same report.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The checkpoint file.
    #[arg(long, default_value = "reports/planetary-fabric/checkpoint.json")]
    pub checkpoint: PathBuf,
    /// Virtual tick in milliseconds (1..60000).
    #[arg(long, default_value_t = fabric_sim::runner::DEFAULT_TICK_MS)]
    pub tick_ms: u64,
    /// Pace virtual time at X times the wall clock (0.01..10000), e.g. 1 to watch the
    /// scoreboard and pull levers as the run goes; without it the run goes as fast as it can.
    #[arg(long, value_name = "X")]
    pub speed: Option<f64>,
    /// No scoreboard.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// Submit a job (prints its id), or many from a file in one durable write.
    Submit {
        /// Handler kind: noop, sleep, shell, record.
        #[arg(long, required_unless_present = "file", conflicts_with = "file")]
        kind: Option<String>,
        /// Handler input as JSON, e.g. '{"ms": 100}', or @FILE to read it from a file.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Submit every job of a JSON-lines file (one job object per line:
        /// {"kind": .., "payload": .., "shard": .., "priority": .., ...}); all or nothing.
        #[arg(long, value_name = "FILE")]
        file: Option<std::path::PathBuf>,
        #[arg(long)]
        shard: Option<String>,
        /// low, normal, high (or 0..9).
        #[arg(long)]
        priority: Option<String>,
        /// Earliest start: RFC 3339 time or a delay like 10m.
        #[arg(long)]
        run_at: Option<String>,
        /// Idempotency key: resubmitting returns the existing job.
        #[arg(long)]
        unique_key: Option<String>,
        #[arg(long)]
        max_attempts: Option<u32>,
        #[arg(long)]
        source: Option<String>,
    },
    /// List jobs, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        shard: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        /// Only jobs updated since: 30m, 24h, 7d or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One job: payload, attempts and their errors, timestamps, lease.
    Show { id: String },
    /// Cancel a pending, running or quarantined job.
    Cancel {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Send a quarantined job back to the queue.
    Retry {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourcesCmd {
    /// Define a source (its path must exist; the name must be new).
    Add {
        name: String,
        /// local_files, markdown_vault, maildir, mbox or git.
        #[arg(long = "type")]
        source_type: String,
        /// Absolute path of the root (relative paths are made absolute).
        #[arg(long)]
        path: std::path::PathBuf,
        /// Files to read (glob, repeatable); all when none.
        #[arg(long)]
        include: Vec<String>,
        /// Files to skip (glob, repeatable).
        #[arg(long)]
        exclude: Vec<String>,
        /// `every 15m` or a 5- or 6-field cron expression (UTC).
        #[arg(long)]
        schedule: Option<String>,
        /// low, normal (default) or high.
        #[arg(long, default_value = "normal")]
        priority: String,
        /// The retry policy of its jobs (`retry_policies.<name>`).
        #[arg(long)]
        retry_policy: Option<String>,
    },
    /// Every source: type, path, state, schedule, last scan, counts.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// One source in full.
    Show { name: String },
    /// Stop scheduling a source's scans (audited).
    Pause {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Schedule a paused source again.
    Resume { name: String },
    /// Forget a source (its definition and state; its jobs stay).
    Remove {
        name: String,
        /// Also delete its documents from the search index.
        #[arg(long)]
        purge_docs: bool,
    },
    /// Scan a source now: new and changed files are ingested, vanished ones removed.
    Trigger {
        name: String,
        /// Wait until the scan and its ingest jobs end; exit 1 if any failed.
        #[arg(long)]
        wait: bool,
        /// Re-read every file, changed or not.
        #[arg(long)]
        full: bool,
        /// low, normal or high (default: the source's).
        #[arg(long)]
        priority: Option<String>,
    },
}

/// The window and source of a telemetry report.
#[derive(Debug, clap::Args)]
pub struct TelemetryWindow {
    /// From this long ago (`30m`, `24h`, `7d`) or an RFC 3339 time.
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// One source only.
    #[arg(long)]
    pub source: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ReportsCmd {
    /// The newest reports, oldest first; with -f, then every new one as it is written.
    Tail {
        /// Keep printing reports as daemons write them (Ctrl-C to stop).
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only reports since: 30m, 24h, 7d or an RFC 3339 time (default: all kept).
        #[arg(long)]
        since: Option<String>,
        /// The newest this many (1..100000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertsCmd {
    /// Pending and firing alerts: value, since, routes, and whether silenced, inhibited or
    /// acknowledged.
    List,
    /// The rules in force (the defaults and the config's), with their firing alerts.
    Rules,
    /// Every delivery attempt and its outcome, newest first.
    History {
        /// Only attempts since: 30m, 24h, 7d or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only this route's.
        #[arg(long)]
        route: Option<String>,
        /// At most this many (1..100000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Silence alerts matching every --matcher (or --rule); without either, list the
    /// silences in force.
    Silence {
        /// label=value or label!=value (repeatable), e.g. alertname=queue_depth_high.
        #[arg(long = "matcher", value_name = "LABEL=VALUE")]
        matchers: Vec<String>,
        /// Shorthand for --matcher alertname=NAME.
        #[arg(long)]
        rule: Option<String>,
        /// How long: 30m, 2h, 1d (1m..90d).
        #[arg(long, default_value = "2h")]
        duration: String,
        /// Who silences (default: the user running the command).
        #[arg(long)]
        author: Option<String>,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// Listing: also the silences that are over.
        #[arg(long)]
        all: bool,
    },
    /// End a silence now.
    Unsilence {
        /// The silence's id (see `alerts silence`).
        id: String,
    },
    /// Acknowledge a firing alert (no repeats until it resolves): a rule name (all its
    /// alerts) or a fingerprint (or its first 6+ digits).
    Ack {
        alert: String,
        /// Why, or what is being done.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Send a test notification through ROUTE now and report the outcome (exit 1 when it
    /// failed).
    Test {
        /// A route of alerts.routes, or log.
        route: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCmd {
    /// Esper's control loop: a training job streams telemetry over the bus, a risk engine
    /// pauses training (conservative mode) and quarantines a blueprint, training_latency_high
    /// fires and clears, field reports are written; in a demo home of its own.
    ControlLoop {
        /// The bus: inproc (default) or redis (at bus.url, under a fresh key prefix).
        #[arg(long, value_enum, default_value = "inproc")]
        bus: DemoBus,
        /// Training epochs (6..1000; latency is high in epochs 3 to 5).
        #[arg(long, default_value_t = 6)]
        epochs: u32,
        /// Time between epochs, in ms (0..60000).
        #[arg(long, default_value_t = 300)]
        epoch_ms: u64,
        /// The demo home (default: a new directory under the system's temp directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The bus of `fabric demo control-loop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoBus {
    Inproc,
    Redis,
}

/// The alerts `fabric drill` can drive, by the metric they watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DrillKind {
    /// queue_depth (rule queue_depth_high).
    QueueDepth,
    /// job_latency_ms (rule job_latency_high).
    Latency,
    /// retries (rule retry_high).
    Retry,
    /// quarantined (rule quarantine_spike).
    Quarantine,
}

#[derive(Debug, Subcommand)]
pub enum BusCmd {
    /// Create a consumer group on every stream (idempotent; a new group starts at each
    /// stream's beginning).
    Init {
        /// The group (default: `fabric`, the daemon's).
        #[arg(long, default_value = "fabric")]
        group: String,
    },
    /// The bus counters (publish_total, publish_rerouted, publish_dropped, queue depths, …).
    Snapshot,
    /// Every stream: its length, and per consumer group the pending entries and the lag.
    Streams,
    /// Publish one message. To normal it goes through the thresholds (rerouted or dropped
    /// when normal is deep); `--emergency` (or `--stream emergency`) skips them.
    Publish {
        /// normal, emergency, telemetry or policy (or a configured stream name).
        #[arg(long, default_value = "normal")]
        stream: String,
        /// The message: a JSON document.
        #[arg(long)]
        payload: String,
        /// Flag the message as an emergency: it goes to the emergency stream at once.
        #[arg(long)]
        emergency: bool,
    },
    /// Entries of a stream, read without consuming them: the newest, or with --group those
    /// not yet delivered to that group; -f keeps printing new ones.
    Tail {
        /// normal, emergency, telemetry, policy or dead_letter (or a configured name).
        #[arg(long, default_value = "normal")]
        stream: String,
        /// Show the entries this consumer group has yet to be delivered.
        #[arg(long)]
        group: Option<String>,
        /// At most this many (1..100000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Keep printing entries as they are published (Ctrl-C to stop).
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Entries delivered too often, moved aside with their origin.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCmd),
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCmd {
    /// The dead letters, oldest first.
    List {
        /// At most this many (1..100000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish dead letters again to the stream they came from, and remove them.
    Replay {
        /// Dead-letter ids (as `list` shows them).
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete dead letters for good.
    Purge {
        /// Dead-letter ids (as `list` shows them).
        ids: Vec<String>,
        /// Every dead letter.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TelemetryCmd {
    /// Ingest jobs, files and bytes by outcome, and the throughput.
    Summary(TelemetryWindow),
    /// files_processed, bytes_processed, duration_seconds and the rates (MiB/s as
    /// throughput_mbps).
    Throughput(TelemetryWindow),
    /// Failed and quarantined ingest jobs by source and reason.
    Failures(TelemetryWindow),
    /// Outcomes and throughput per source.
    BySource(TelemetryWindow),
    /// Delete samples older than N days (audited).
    Clean {
        #[arg(long)]
        older_than_days: u32,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DocsCmd {
    /// Best-ranked passages containing every word (a "quoted phrase" as a phrase), with the
    /// matched words in [brackets].
    Search {
        query: String,
        /// Only documents of this source.
        #[arg(long)]
        source: Option<String>,
        /// Only documents with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// At most this many hits (1 to 1000).
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// One document: metadata, chunks, links out and in.
    Show { id: String },
    /// Documents, chunks and bytes, by type and by source.
    Stats,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// Quarantined jobs, newest first.
    List {
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One quarantined job with its payload, reason, error and notes.
    Show { id: String },
    /// Retry a quarantined job with fresh attempts.
    Retry {
        id: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Delete quarantined jobs older than N days.
    Purge {
        #[arg(long)]
        older_than_days: u32,
        #[arg(long)]
        reason: Option<String>,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Totals by reason.
    Stats,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Check the configuration; every error with its path (exit 2).
    Validate,
    /// The effective configuration, secrets masked.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum DbCmd {
    /// Integrity check of the store.
    Check,
    /// Online, consistent backup (default: $FABRIC_HOME/backups/queue-<time>.db).
    Backup {
        #[arg(long)]
        to: Option<PathBuf>,
    },
    /// Backups in $FABRIC_HOME/backups.
    ListBackups,
    /// Replace the store with a backup, migrated to this fabric's schema (refused while any
    /// daemon of this home runs).
    Restore { file: PathBuf },
    /// Compact the store.
    Vacuum,
    /// Bring the store's schema to this fabric's version (take a backup first).
    Migrate,
}

#[derive(Debug, Subcommand)]
pub enum ShardsCmd {
    /// Every shard: paused, spillover limit, latency budget.
    List,
    /// Add a shard (default levers).
    Add {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Remove a shard (its queued jobs stay, and run if it is added back).
    Remove {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Pause a shard: nothing of it is dispatched until it is resumed.
    Pause {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused shard.
    Resume {
        name: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume every shard.
    ResumeAll {
        #[arg(long)]
        reason: Option<String>,
    },
    /// Queue depth above which a shard without a free node spills to other shards.
    SetSpillover {
        name: String,
        limit: u32,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Latency budget (ms) that spilled work of the shard must fit.
    SetLatencyBudget {
        name: String,
        ms: u64,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodesCmd {
    /// Every node: shard, capacity, load, health, last heartbeat, leader.
    List,
    /// Take a node offline: it claims nothing and its running jobs are reassigned.
    Offline {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Bring a node back online (also ends a drain).
    Online {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Drain a node: it finishes what it holds and claims nothing new.
    Drain {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HealthCmd {
    /// Run one check by name (store, disk, config, workers, api, docs, or a source's name).
    Check { name: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Operator actions, newest first.
    List {
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Debug, Args, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Option<BenchCmd>,
    /// Jobs per phase.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Worker slots for the drain, and concurrent submitters for one-by-one enqueue.
    #[arg(long, default_value_t = 10)]
    pub workers: usize,
    /// Jobs per second in the latency run.
    #[arg(long, default_value_t = 500)]
    pub trickle_rate: u32,
    /// Jobs in the latency run.
    #[arg(long, default_value_t = 1_000)]
    pub trickle_jobs: usize,
    /// Orphaned running jobs in the crash-recovery run (0 skips it).
    #[arg(long, default_value_t = 100_000)]
    pub recovery_jobs: usize,
    /// normal or full. SQLite: its `synchronous` pragma. PostgreSQL: `full` makes claims,
    /// completions and heartbeats wait for the WAL flush too.
    #[arg(long, default_value = "normal")]
    pub synchronous: String,
    /// Store to measure: sqlite (a temporary file) or postgres (temporary schemas in the
    /// database of store.url / FABRIC__STORE__URL, dropped at the end).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    pub backend: String,
    /// Write field reports of every job outcome during the drain, as a daemon does (the
    /// cost of `reports.enabled`).
    #[arg(long)]
    pub reports: bool,
    /// Instead of the phases above: job throughput (bulk enqueue, then drain) with job
    /// lifecycle events published through the outbox to the in-process bus (the cost of
    /// `bus.events: true`) against without, best of 3 rounds each on fresh stores.
    #[arg(long, conflicts_with = "reports")]
    pub events: bool,
}

#[derive(Debug, Subcommand, Clone)]
pub enum BenchCmd {
    /// Ingest generated corpora end to end (scan, extract, index commit) through the job
    /// engine on a fresh store: small notes, mixed text-like files, an unchanged re-scan, and
    /// search latency on a large index.
    Ingest(BenchIngestArgs),
    /// The message bus: publish and end-to-end rates (publish → read → ack) and the latency
    /// of a 1,000 msg/s trickle, on the in-process bus or on Redis (throw-away streams).
    Bus(BenchBusArgs),
    /// Alert latency: the breaching sample that fires a rule → a real webhook receiver has
    /// the notification, through the daemon's evaluator and delivery worker.
    Alerts(BenchAlertsArgs),
    /// Batches: submit N items with dependencies (a chain every --chain items) and drain
    /// them, against the same items without dependencies.
    Batch(crate::commands::bench_batch::BenchBatchArgs),
    /// External workers over HTTP: W workers claim --batch jobs at a time from a real API
    /// server and complete each with its own call.
    Workers(crate::commands::bench_workers::BenchWorkersArgs),
}

#[derive(Debug, Args, Clone)]
pub struct BenchAlertsArgs {
    /// Rounds, each on a fresh store (1..1000).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// The rule's group_wait in ms (0..600000; Alertmanager's default is 30000).
    #[arg(long, default_value_t = 2000)]
    pub group_wait_ms: u64,
}

#[derive(Debug, Args, Clone)]
pub struct BenchBusArgs {
    /// Bus to measure: inproc, or redis (streams under a throw-away prefix, deleted after).
    #[arg(long, default_value = "inproc", value_parser = ["inproc", "redis"])]
    pub backend: String,
    /// Messages in the throughput run.
    #[arg(long, default_value_t = 200_000)]
    pub messages: usize,
    /// Concurrent publishers.
    #[arg(long, default_value_t = 16)]
    pub publishers: usize,
    /// Messages per publish call (one round trip on Redis: a pipelined publish).
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Entries read (and acknowledged) per read.
    #[arg(long, default_value_t = 1_000)]
    pub batch: usize,
    /// Normal entries waiting while the emergency lane's latency is measured.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: usize,
    /// Redis URL for --backend redis (default: FABRIC__BUS__URL, else redis://127.0.0.1:6379).
    #[arg(long)]
    pub url: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct BenchIngestArgs {
    /// Small notes (1–4 KB markdown) in the notes run.
    #[arg(long, default_value_t = 20_000)]
    pub files: usize,
    /// Megabytes of mixed text-like files (markdown, code, text, HTML, JSON, CSV) in the
    /// mixed run; 0 skips it.
    #[arg(long, default_value_t = 200)]
    pub mixed_mb: u64,
    /// Mail messages (in 4 mbox files, mixed charsets) in the mail run; 0 skips it.
    #[arg(long, default_value_t = 20_000)]
    pub mail_messages: usize,
    /// PDFs of two pages with a text layer in the PDF run; 0 skips it.
    #[arg(long, default_value_t = 1_000)]
    pub pdfs: usize,
    /// Files of the unchanged tree the re-scan run walks; 0 skips it.
    #[arg(long, default_value_t = 100_000)]
    pub rescan_files: usize,
    /// Chunks the index holds for the search run (synthetic documents are added to reach
    /// it); 0 skips it.
    #[arg(long, default_value_t = 1_000_000)]
    pub search_chunks: u64,
    /// Searches in the search run.
    #[arg(long, default_value_t = 1_000)]
    pub queries: usize,
    /// Worker slots of the engine.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Where the corpora are generated (default: a temporary directory, removed after).
    #[arg(long)]
    pub dir: Option<std::path::PathBuf>,
    /// Store to measure: sqlite (a temporary file) or postgres (a temporary schema in the
    /// database of store.url / FABRIC__STORE__URL, dropped at the end).
    #[arg(long, default_value = "sqlite", value_parser = ["sqlite", "postgres"])]
    pub backend: String,
}
