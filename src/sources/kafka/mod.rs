//! `kafka`: consumes topics as a member of a consumer group (librdkafka, through `rdkafka`),
//! one event per record, committing offsets only for what has left weir.
//!
//! ```toml
//! [sources.model_logs]
//! type = "kafka"
//! bootstrap_servers = "kafka-1:9092,kafka-2:9092"
//! group_id = "weir"
//! topics = ["model-server-logs", "^inference-.*"]   # names, or regexes starting with ^
//! auto_offset_reset = "earliest"                     # where a group without offsets starts
//! librdkafka_options = { "fetch.min.bytes" = "1024" }
//! sasl = { mechanism = "SCRAM-SHA-512", username = "weir", password = "${KAFKA_PASSWORD}" }
//! tls = { ca_file = "/etc/weir/kafka-ca.pem" }
//! ```
//!
//! **Scaling out.** Every weir instance with the same `group_id` shares the partitions of the
//! topics; when one stops (or is lost), the group gives its partitions to the others.
//!
//! **At-least-once.** Each batch of records carries a [`BatchNotifier`]; the offset of a
//! partition is committed only up to the contiguous position whose events have all been
//! delivered by their sinks or rejected permanently ([`offsets`]). A record that could not
//! be delivered holds its partition's offset until the partition is read again (after a
//! restart, or by its next owner), so the committed offset never passes an event that failed.
//! Commits are asynchronous every `commit_interval_ms`, and synchronous when partitions are
//! revoked and when weir stops. On a rebalance, the revoked partitions' in-flight events get
//! up to `drain_timeout_ms` to be acknowledged; what was delivered is committed, what was not
//! is read again by the new owner (it may then be delivered twice, never lost).
//!
//! **Backpressure.** The consumer is polled on its own thread, which waits while the pipeline
//! is full; librdkafka's prefetch queue is bounded by `queued.max.messages.kbytes` (weir sets
//! 16 MiB; a `librdkafka_options` entry overrides it). Waiting longer than
//! `max.poll.interval.ms` (5 minutes) makes the group move the partitions elsewhere.
//!
//! **Events.** `message` is the record's value (bytes as they are; parse them downstream);
//! `@timestamp` the record's timestamp (else when weir read it); `kafka.topic`,
//! `kafka.partition`, `kafka.offset`, `kafka.key`, `kafka.headers` (name to value; a
//! repeated name gives an array) carry the rest. A record without value has no `message`.
//!
//! **Metrics.** Besides the component series (records and their value and key bytes):
//! `weir_kafka_consumer_lag{topic,partition}` (records between the committed offset and the
//! end of the partition, from librdkafka's statistics every `statistics.interval.ms`, 10 s by
//! default), `weir_kafka_assigned_partitions`, and `weir_component_errors_total` with
//! `error_type` `commit_failed` and `consume_failed`.
//!
//! Invariant: an offset is committed only when every event at or before it has been
//! acknowledged as delivered or rejected.

pub mod offsets;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Deserialize;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::component::{ShutdownSignal, SourceComponent, SourceContext, SourceSender};
use crate::error::ConfigIssue;
use crate::error::{BuildError, ComponentError, Task};
use crate::event::{BatchNotifier, Event};
use crate::internal_events::RateLimit;
use crate::metrics::{ComponentMetrics, Labels};
use offsets::{Key, Range, Tracker};

/// Most records in one batch.
const MAX_BATCH_EVENTS: usize = 1000;
/// Most value and key bytes in one batch.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// How long one poll waits for a record (and how soon a shutdown is noticed).
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// librdkafka settings weir makes itself; setting them in `librdkafka_options` is an error.
const RESERVED_OPTIONS: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `bootstrap_servers`"),
    ("group.id", "use `group_id`"),
    ("auto.offset.reset", "use `auto_offset_reset`"),
    ("enable.auto.commit", "weir commits the offsets of delivered events itself"),
    ("enable.auto.offset.store", "weir commits the offsets of delivered events itself"),
    ("session.timeout.ms", "use `session_timeout_ms`"),
];

/// `[sources.<id>] type = "kafka"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers, comma-separated.
    pub bootstrap_servers: String,
    /// The consumer group; instances with the same group share the partitions.
    pub group_id: String,
    /// Topic names, or regular expressions that start with `^`.
    pub topics: Vec<String>,
    /// Where a partition without a committed offset starts: `earliest` or `latest` (the
    /// default), or `error`. librdkafka's synonyms (`smallest`, `beginning`, `largest`,
    /// `end`) are accepted.
    #[serde(default = "default_auto_offset_reset")]
    pub auto_offset_reset: String,
    /// How long the group waits for a silent member before moving its partitions. Default
    /// 10000.
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// How often delivered positions are committed. Default 1000.
    #[serde(default = "default_commit_interval_ms")]
    pub commit_interval_ms: u64,
    /// How long a revoked partition's in-flight events may take to be acknowledged before
    /// its offset is committed without them (they are then read again by the new owner).
    /// Default 2500.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Any other librdkafka consumer setting, passed through.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
    /// SASL authentication to the brokers; none by default.
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// TLS to the brokers; none by default (plaintext).
    #[serde(default)]
    pub tls: Option<KafkaTlsConfig>,
}

/// `sasl`: authentication to the brokers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// Default true when the table is present.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: String,
    /// The SASL user name.
    pub username: String,
    /// The SASL password; use `${VAR}` to take it from the environment.
    pub password: String,
}

/// `tls`: TLS to the brokers (librdkafka's OpenSSL).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTlsConfig {
    /// Default true when the table is present.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// CA certificates to verify the brokers with (PEM); default: the system's (found in the
    /// standard places: librdkafka's `probe`).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// A client certificate (PEM), for brokers that require one.
    #[serde(default)]
    pub crt_file: Option<String>,
    /// The client certificate's key (PEM).
    #[serde(default)]
    pub key_file: Option<String>,
    /// Passphrase of an encrypted `key_file`; none by default.
    #[serde(default)]
    pub key_pass: Option<String>,
    /// Verify the brokers' certificates. Default true.
    #[serde(default = "yes")]
    pub verify_certificate: bool,
    /// Check that a broker's certificate names its host. Default true.
    #[serde(default = "yes")]
    pub verify_hostname: bool,
}

fn yes() -> bool {
    true
}
fn default_auto_offset_reset() -> String {
    "latest".to_string()
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_commit_interval_ms() -> u64 {
    1000
}
fn default_drain_timeout_ms() -> u64 {
    2500
}

const OFFSET_RESETS: &[&str] =
    &["earliest", "smallest", "beginning", "latest", "largest", "end", "error"];
const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

impl SourceComponent for KafkaConfig {
    /// Nothing compiled: librdkafka takes the settings as text.
    type Checked = ();

    fn check(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            issues.push(ConfigIssue::field("bootstrap_servers", "give at least one broker"));
        }
        if self.group_id.trim().is_empty() {
            issues.push(ConfigIssue::field("group_id", "must not be empty"));
        }
        if self.topics.is_empty() {
            issues.push(ConfigIssue::field("topics", "give at least one topic"));
        }
        for t in &self.topics {
            if t.starts_with('^') {
                if let Err(e) = regex::Regex::new(t) {
                    issues.push(ConfigIssue::field("topics", format!("invalid regex `{t}`: {e}")));
                }
            } else if t.is_empty() || t.contains(char::is_whitespace) {
                issues.push(ConfigIssue::field("topics", format!("invalid topic name `{t}`")));
            }
        }
        if !OFFSET_RESETS.contains(&self.auto_offset_reset.as_str()) {
            issues.push(ConfigIssue::field(
                "auto_offset_reset",
                format!("`{}` is not one of {}", self.auto_offset_reset, OFFSET_RESETS.join(", ")),
            ));
        }
        for (field, v) in [
            ("session_timeout_ms", self.session_timeout_ms),
            ("commit_interval_ms", self.commit_interval_ms),
        ] {
            if v == 0 {
                issues.push(ConfigIssue::field(field, "must be at least 1"));
            }
        }
        for key in self.librdkafka_options.keys() {
            if let Some((_, why)) = RESERVED_OPTIONS.iter().find(|(k, _)| k == key) {
                issues.push(ConfigIssue::field(
                    "librdkafka_options",
                    format!("`{key}` cannot be set here: {why}"),
                ));
            }
        }
        check_security(self.sasl.as_ref(), self.tls.as_ref(), &mut issues);
        if issues.is_empty() { Ok(()) } else { Err(issues) }
    }

    fn build(&self, (): (), cx: SourceContext) -> Result<Task, BuildError> {
        let telemetry = Arc::new(Telemetry::new(&cx.metrics));
        let tracker = Arc::new(Tracker::default());
        let context = KafkaContext {
            id: cx.id.clone(),
            tracker: Arc::clone(&tracker),
            telemetry: Arc::clone(&telemetry),
            drain_timeout: Duration::from_millis(self.drain_timeout_ms),
        };
        let client = |message: String| BuildError::Client { what: "Kafka consumer", message };
        let consumer: BaseConsumer<KafkaContext> = self
            .client_config(&cx.id)
            .create_with_context(context)
            .map_err(|e| client(format!("cannot create it: {e}")))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| client(format!("cannot subscribe to {topics:?}: {e}")))?;
        tracing::info!(
            component = %cx.id,
            group_id = %self.group_id,
            topics = ?self.topics,
            "consuming from Kafka"
        );
        let reader = Reader {
            consumer,
            tracker,
            telemetry,
            out: cx.out,
            shutdown: cx.shutdown,
            id: cx.id,
            commit_interval: Duration::from_millis(self.commit_interval_ms),
            handle: tokio::runtime::Handle::current(),
        };
        Ok(Box::pin(async move {
            match tokio::task::spawn_blocking(move || reader.run()).await {
                Ok(r) => r,
                Err(e) => Err(ComponentError::Thread(e.to_string())),
            }
        }))
    }

    /// Offsets are committed only up to what was acknowledged.
    fn acknowledges(&self) -> bool {
        true
    }
}

impl KafkaConfig {
    /// The librdkafka configuration: weir's settings, then `librdkafka_options`.
    pub fn client_config(&self, id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("group.id", &self.group_id)
            .set("client.id", format!("weir-{id}"))
            .set("auto.offset.reset", &self.auto_offset_reset)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("statistics.interval.ms", "10000")
            .set("queued.max.messages.kbytes", "16384")
            .set_log_level(RDKafkaLogLevel::Warning);
        security(&mut c, self.sasl.as_ref(), self.tls.as_ref());
        for (k, v) in &self.librdkafka_options {
            c.set(k, v);
        }
        c
    }
}

/// The security settings of a Kafka client (the source's and the sink's): the protocol from
/// which of `sasl` and `tls` are enabled, then their options.
pub fn security(c: &mut ClientConfig, sasl: Option<&SaslConfig>, tls: Option<&KafkaTlsConfig>) {
    let tls = tls.filter(|t| t.enabled);
    let sasl = sasl.filter(|s| s.enabled);
    let protocol = match (tls.is_some(), sasl.is_some()) {
        (false, false) => "plaintext",
        (true, false) => "ssl",
        (false, true) => "sasl_plaintext",
        (true, true) => "sasl_ssl",
    };
    c.set("security.protocol", protocol);
    if let Some(t) = tls {
        // OpenSSL is linked statically (built from source, Cargo.toml): its own default
        // CA path is the build's, not the system's. `probe` has librdkafka look in the
        // standard places (Debian's /etc/ssl/certs/ca-certificates.crt, Red Hat's bundle,
        // ...) instead, as the system's OpenSSL would have.
        c.set("ssl.ca.location", "probe");
        let pairs = [
            ("ssl.ca.location", &t.ca_file),
            ("ssl.certificate.location", &t.crt_file),
            ("ssl.key.location", &t.key_file),
            ("ssl.key.password", &t.key_pass),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                c.set(k, v);
            }
        }
        c.set("enable.ssl.certificate.verification", t.verify_certificate.to_string());
        c.set(
            "ssl.endpoint.identification.algorithm",
            if t.verify_hostname { "https" } else { "none" },
        );
    }
    if let Some(s) = sasl {
        c.set("sasl.mechanism", &s.mechanism)
            .set("sasl.username", &s.username)
            .set("sasl.password", &s.password);
    }
}

/// The checks of `sasl` and `tls` the source and the sink share.
pub fn check_security(
    sasl: Option<&SaslConfig>,
    tls: Option<&KafkaTlsConfig>,
    issues: &mut Vec<ConfigIssue>,
) {
    if let Some(sasl) = sasl
        && sasl.enabled
        && !SASL_MECHANISMS.contains(&sasl.mechanism.as_str())
    {
        issues.push(ConfigIssue::field(
            "sasl.mechanism",
            format!("`{}` is not one of {}", sasl.mechanism, SASL_MECHANISMS.join(", ")),
        ));
    }
    if let Some(tls) = tls
        && tls.crt_file.is_some() != tls.key_file.is_some()
    {
        issues.push(ConfigIssue::field("tls", "`crt_file` and `key_file` go together"));
    }
}

/// The source's own series and log limits.
struct Telemetry {
    metrics: ComponentMetrics,
    commit_failed: Counter,
    consume_failed: Counter,
    assigned: Gauge,
    commit_log: Mutex<RateLimit>,
    consume_log: Mutex<RateLimit>,
}

fn lag_family() -> &'static Family<Labels, Gauge> {
    static FAMILY: OnceLock<Family<Labels, Gauge>> = OnceLock::new();
    FAMILY.get_or_init(|| {
        let family = Family::<Labels, Gauge>::default();
        crate::metrics::global().register(
            "kafka_consumer_lag",
            "Records between a partition's committed offset and its end",
            family.clone(),
        );
        family
    })
}

fn assigned_family() -> &'static Family<Labels, Gauge> {
    static FAMILY: OnceLock<Family<Labels, Gauge>> = OnceLock::new();
    FAMILY.get_or_init(|| {
        let family = Family::<Labels, Gauge>::default();
        crate::metrics::global().register(
            "kafka_assigned_partitions",
            "Partitions assigned to a Kafka source by its consumer group",
            family.clone(),
        );
        family
    })
}

impl Telemetry {
    fn new(metrics: &ComponentMetrics) -> Self {
        Self {
            commit_failed: metrics.error_counter(
                crate::metrics::error_type::COMMIT_FAILED,
                crate::metrics::Stage::Receiving,
            ),
            consume_failed: metrics.error_counter(
                crate::metrics::error_type::CONSUME_FAILED,
                crate::metrics::Stage::Receiving,
            ),
            assigned: assigned_family().get_or_create_owned(&metrics.labels.labels()),
            commit_log: Mutex::default(),
            consume_log: Mutex::default(),
            metrics: metrics.clone(),
        }
    }

    fn lag_labels(&self, topic: &str, partition: i32) -> Labels {
        let mut l = self.metrics.labels.with("topic", topic);
        l.push(("partition".into(), partition.to_string()));
        l
    }
}

fn allow(limit: &Mutex<RateLimit>) -> Option<u64> {
    limit.lock().unwrap_or_else(|e| e.into_inner()).allow()
}

/// librdkafka's callbacks: logs, statistics, rebalances, commit results. They run on the
/// polling thread (inside `poll`), except logs and errors, which may come from librdkafka's
/// own threads.
struct KafkaContext {
    id: String,
    tracker: Arc<Tracker>,
    telemetry: Arc<Telemetry>,
    drain_timeout: Duration,
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let message = crate::redact::credentials(message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(component = %self.id, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(component = %self.id, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(component = %self.id, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(component = %self.id, facility = fac, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let error = crate::redact::credentials(&error.to_string()).into_owned();
        let reason = crate::redact::credentials(reason);
        tracing::warn!(component = %self.id, error = %error, "kafka client error: {reason}");
    }

    fn stats(&self, stats: Statistics) {
        let family = lag_family();
        let assigned = self.tracker.assigned();
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's "unknown"; the partition -1 is its internal "unassigned".
                if *partition < 0 || p.consumer_lag < 0 {
                    continue;
                }
                if !assigned.iter().any(|(at, ap)| &**at == topic.as_str() && ap == partition) {
                    continue;
                }
                family
                    .get_or_create(&self.telemetry.lag_labels(topic, *partition))
                    .set(p.consumer_lag);
            }
        }
    }
}

fn keys_of(tpl: &TopicPartitionList) -> Vec<Key> {
    tpl.elements().iter().map(|e| (Arc::from(e.topic()), e.partition())).collect()
}

impl KafkaContext {
    /// Commits `positions` synchronously (a rebalance or the end); failures are logged here
    /// and counted by `commit_callback`, which librdkafka also calls for these commits.
    fn commit_sync(&self, consumer: &BaseConsumer<Self>, positions: &[(Key, i64)], why: &str) {
        if positions.is_empty() {
            return;
        }
        let tpl = commit_list(positions);
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => tracing::debug!(component = %self.id, ?positions, why, "offsets committed"),
            Err(e) => {
                self.tracker.commit_failed(positions);
                tracing::error!(
                    component = %self.id,
                    error = %e,
                    why,
                    "cannot commit offsets; their events will be read again"
                );
            }
        }
    }
}

fn commit_list(positions: &[(Key, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for ((topic, partition), offset) in positions {
        // Adding a partition with a plain offset cannot fail.
        let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
    }
    tpl
}

impl ConsumerContext for KafkaContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let keys = keys_of(tpl);
                tracing::info!(component = %self.id, partitions = ?keys, "partitions assigned");
                self.tracker.assign(keys);
            }
            Rebalance::Revoke(tpl) => {
                let keys = keys_of(tpl);
                let deadline = Instant::now() + self.drain_timeout;
                let drained = self.tracker.wait_drained(Some(&keys), deadline);
                if !drained {
                    tracing::warn!(
                        component = %self.id,
                        pending_batches = self.tracker.in_flight(Some(&keys)),
                        "partitions revoked before all their events were acknowledged; the \
                         new owner reads the rest again"
                    );
                }
                let positions = self.tracker.take_commits(Some(&keys));
                self.commit_sync(consumer, &positions, "partitions revoked");
                self.tracker.revoke(&keys);
                for (topic, partition) in &keys {
                    lag_family().remove(&self.telemetry.lag_labels(topic, *partition));
                }
                tracing::info!(component = %self.id, partitions = ?keys, "partitions revoked");
            }
            Rebalance::Error(e) => {
                tracing::error!(component = %self.id, error = %e, "consumer group rebalance failed");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {
        self.telemetry.assigned.set(self.tracker.assigned().len() as i64);
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            self.telemetry.commit_failed.inc();
            let positions: Vec<(Key, i64)> = offsets
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some(((Arc::from(e.topic()), e.partition()), o)),
                    _ => None,
                })
                .collect();
            self.tracker.commit_failed(&positions);
            if let Some(suppressed) = allow(&self.telemetry.commit_log) {
                tracing::warn!(
                    component = %self.id,
                    error = %e,
                    suppressed,
                    "offset commit failed; it is tried again"
                );
            }
        }
    }
}

/// The polling thread.
struct Reader {
    consumer: BaseConsumer<KafkaContext>,
    tracker: Arc<Tracker>,
    telemetry: Arc<Telemetry>,
    out: SourceSender,
    shutdown: ShutdownSignal,
    id: String,
    commit_interval: Duration,
    handle: tokio::runtime::Handle,
}

/// A batch being gathered.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    ranges: Vec<Range>,
    bytes: usize,
}

impl Batch {
    fn add(&mut self, m: &BorrowedMessage<'_>, now: chrono::DateTime<chrono::Utc>) {
        let (event, bytes) = record_event(m, now);
        self.bytes += bytes;
        self.events.push(event);
        let offset = m.offset();
        match self.ranges.iter_mut().find(|r| &*r.key.0 == m.topic() && r.key.1 == m.partition()) {
            Some(r) => r.next = offset + 1,
            None => self.ranges.push(Range {
                key: (Arc::from(m.topic()), m.partition()),
                first: offset,
                next: offset + 1,
            }),
        }
    }

    fn full(&self) -> bool {
        self.events.len() >= MAX_BATCH_EVENTS || self.bytes >= MAX_BATCH_BYTES
    }
}

impl Reader {
    fn run(mut self) -> Result<(), ComponentError> {
        let mut last_commit = Instant::now();
        let mut stopped_by_pipeline = false;
        while !self.shutdown.is_cancelled() {
            let mut batch = Batch::default();
            let mut wait = POLL_TIMEOUT;
            while !batch.full() {
                match self.consumer.poll(wait) {
                    None => break,
                    Some(Ok(m)) => batch.add(&m, chrono::Utc::now()),
                    Some(Err(e)) => {
                        self.telemetry.consume_failed.inc();
                        if let Some(suppressed) = allow(&self.telemetry.consume_log) {
                            tracing::warn!(component = %self.id, error = %e, suppressed, "kafka consume error");
                        }
                        break;
                    }
                }
                // Only what is already fetched joins the batch.
                wait = Duration::ZERO;
            }
            if !batch.events.is_empty() && !self.send(batch) {
                stopped_by_pipeline = true;
                break;
            }
            if last_commit.elapsed() >= self.commit_interval {
                last_commit = Instant::now();
                self.commit_async();
            }
        }
        self.finish(stopped_by_pipeline);
        Ok(())
    }

    /// Registers the batch's offsets, attaches its notifier and sends it; `false` when no
    /// consumer is left downstream.
    fn send(&mut self, batch: Batch) -> bool {
        let count = batch.events.len();
        self.telemetry.metrics.received(count, batch.bytes);
        let id = self.tracker.register(&batch.ranges);
        let tracker = Arc::clone(&self.tracker);
        let component = self.id.clone();
        let notifier = BatchNotifier::with_callback(move |status| {
            for held in tracker.ack(id, status) {
                tracing::error!(
                    component = %component,
                    topic = %held.key.0,
                    partition = held.key.1,
                    offset = held.offset,
                    "events were not delivered; this partition's offset stays before them \
                     until it is read again (restart or rebalance)"
                );
            }
        });
        let events: Vec<Event> =
            batch.events.into_iter().map(|e| e.with_notifier(&notifier)).collect();
        drop(notifier);
        self.handle.block_on(self.out.send(events))
    }

    fn commit_async(&self) {
        let positions = self.tracker.take_commits(None);
        if positions.is_empty() {
            return;
        }
        if let Err(e) = self.consumer.commit(&commit_list(&positions), CommitMode::Async) {
            self.tracker.commit_failed(&positions);
            self.telemetry.commit_failed.inc();
            if let Some(suppressed) = allow(&self.telemetry.commit_log) {
                tracing::warn!(component = %self.id, error = %e, suppressed, "cannot commit offsets; tried again later");
            }
        }
    }

    /// Stops: the pipeline is released so that it can drain, every in-flight event gets
    /// until the shutdown deadline to be acknowledged, and the delivered positions are
    /// committed before the consumer leaves its group.
    fn finish(self, stopped_by_pipeline: bool) {
        let Reader { consumer, tracker, out, shutdown, id, .. } = self;
        drop(out);
        let deadline = shutdown
            .deadline()
            .map(|d| d.checked_sub(Duration::from_secs(1)).unwrap_or(d))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(5));
        if !stopped_by_pipeline && !tracker.wait_drained(None, deadline) {
            tracing::warn!(
                component = %id,
                pending_batches = tracker.in_flight(None),
                "stopping before every event was acknowledged; they will be read again"
            );
        }
        let positions = tracker.take_commits(None);
        consumer.context().commit_sync(&consumer, &positions, "stopping");
        // Dropping the consumer leaves the group (the revoke callback finds nothing left).
        drop(consumer);
        tracing::info!(component = %id, "kafka consumer closed");
    }
}

/// The event of one record, and the bytes it counts (value and key).
fn record_event(m: &BorrowedMessage<'_>, now: chrono::DateTime<chrono::Utc>) -> (Event, usize) {
    let mut map = ObjectMap::new();
    let mut bytes = 0;
    if let Some(payload) = m.payload() {
        bytes += payload.len();
        map.insert(KeyString::from("message"), Value::Bytes(Bytes::copy_from_slice(payload)));
    }
    let ts = m
        .timestamp()
        .to_millis()
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .unwrap_or(now);
    map.insert(KeyString::from("@timestamp"), Value::Timestamp(ts));
    let mut kafka = ObjectMap::new();
    kafka.insert(KeyString::from("topic"), Value::from(m.topic()));
    kafka.insert(KeyString::from("partition"), Value::from(i64::from(m.partition())));
    kafka.insert(KeyString::from("offset"), Value::from(m.offset()));
    if let Some(key) = m.key() {
        bytes += key.len();
        kafka.insert(KeyString::from("key"), Value::Bytes(Bytes::copy_from_slice(key)));
    }
    if let Some(headers) = m.headers() {
        let mut h = ObjectMap::new();
        for header in headers.iter() {
            let value =
                header.value.map_or(Value::Null, |v| Value::Bytes(Bytes::copy_from_slice(v)));
            let name = KeyString::from(header.key);
            match h.remove(&name) {
                None => h.insert(name, value),
                Some(Value::Array(mut values)) => {
                    values.push(value);
                    h.insert(name, Value::Array(values))
                }
                Some(first) => h.insert(name, Value::Array(vec![first, value])),
            };
        }
        if !h.is_empty() {
            kafka.insert(KeyString::from("headers"), Value::Object(h));
        }
    }
    map.insert(KeyString::from("kafka"), Value::Object(kafka));
    (Event::from_value(Value::Object(map)), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> KafkaConfig {
        let topics = if extra.contains("topics") { "" } else { "topics = [\"logs\"]" };
        let text =
            format!("bootstrap_servers = \"127.0.0.1:9092\"\ngroup_id = \"g\"\n{topics}\n{extra}");
        toml_edit::de::from_str(&text).unwrap()
    }

    #[test]
    fn checks_reserved_options_offsets_and_topics() {
        assert!(config("").check().is_ok());
        let issues = config(
            "auto_offset_reset = \"oldest\"\ntopics = [\"^(\", \"a b\"]\n\
             librdkafka_options = { \"enable.auto.commit\" = \"true\", \"fetch.min.bytes\" = \"1\" }\n\
             sasl = { mechanism = \"GSSAPI\", username = \"u\", password = \"p\" }",
        )
        .check()
        .unwrap_err();
        let text: Vec<String> = issues
            .iter()
            .map(|i| format!("{}: {}", i.field.clone().unwrap_or_default(), i.message))
            .collect();
        assert_eq!(text.len(), 5, "{text:#?}");
        assert!(text[0].starts_with("topics: invalid regex `^(`"), "{text:#?}");
        assert!(text[1].starts_with("topics: invalid topic name `a b`"));
        assert!(text[2].starts_with("auto_offset_reset: `oldest` is not one of"));
        assert!(text[3].contains("`enable.auto.commit` cannot be set here"));
        assert!(text[4].starts_with("sasl.mechanism: `GSSAPI`"));
    }

    #[test]
    fn security_settings_become_librdkafka_options() {
        let c = config(
            "sasl = { mechanism = \"SCRAM-SHA-512\", username = \"weir\", password = \"s\" }\n\
             tls = { ca_file = \"/ca.pem\", verify_hostname = false }\n\
             librdkafka_options = { \"queued.max.messages.kbytes\" = \"4096\" }",
        )
        .client_config("logs");
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), Some("none"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("4096"), "the user's value wins");
        assert_eq!(c.get("client.id"), Some("weir-logs"));

        // Without a CA file, the system's certificates are looked for where systems keep them.
        let c = config("tls = {}").client_config("logs");
        assert_eq!(c.get("security.protocol"), Some("ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("probe"));
        assert_eq!(config("").client_config("logs").get("ssl.ca.location"), None);
    }
}
