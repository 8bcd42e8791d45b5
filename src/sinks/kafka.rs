//! `kafka` sink: produces one record per event (librdkafka, through `rdkafka`), acknowledging
//! an event only once the broker has confirmed its record.
//!
//! ```toml
//! [sinks.to_kafka]
//! type = "kafka"
//! inputs = ["model_logs"]
//! bootstrap_servers = "kafka-1:9092,kafka-2:9092"
//! topic = "model-logs-{{ service.name }}"   # templated from fields, like the file sink's path
//! key_field = "host.name"                   # the record key; same key, same partition
//! headers_key = "kafka.headers"             # an object of fields that become headers
//! headers = { "trace-id" = "trace.id" }     # header name = field path
//! encoding.codec = "json"                   # or "text": the bare `message`
//! compression = "lz4"                       # none (default), gzip, snappy, lz4, zstd
//! ```
//!
//! **Delivery.** The producer is idempotent with `acks=all` by default (`idempotent`,
//! `acks`). Records wait in librdkafka's own queue, which batches them per partition
//! (`linger_ms`) and is bounded in bytes (`queue_max_bytes`): a full queue makes the sink wait,
//! and that wait reaches the source; it is never a drop. An event is acknowledged upstream
//! when its delivery report says the broker has the record. librdkafka retries a broker it
//! cannot reach for up to `message_timeout_ms`; a record that still fails then is produced
//! again, with capped backoff, for as long as weir runs. A record that cannot succeed (too
//! large for the broker, a topic that does not exist where topics are not created on demand,
//! a record the broker calls invalid, a topic the template made invalid) is rejected: counted,
//! logged and sent to the dead-letter destination. When weir stops, the queue gets until the
//! shutdown deadline to be delivered; what is left is marked errored (read again by its
//! source after a restart).
//!
//! **Metrics.** The component series (sent = confirmed by the broker) and
//! `weir_component_errors_total{error_type}`: `delivery_failed` (a record produced again),
//! `template_failed`, and rejections by reason in `weir_dead_letter_events_total`.
//!
//! Invariant: an event's acknowledgement handles are released as delivered only from a
//! successful delivery report; every other path marks them errored or hands them to the
//! dead-letter destination.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use serde::Deserialize;
use tokio::sync::{Notify, mpsc};
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::util::encoding::EncodingConfig;
use super::util::retry::Backoff;
use crate::component::{SinkComponent, SinkContext};
use crate::dead_letter::Rejected;
use crate::error::{BuildError, ComponentError, ConfigIssue, Task};
use crate::event::{Event, EventFinalizers, EventStatus, batch_size, parse_path};
use crate::internal_events::RateLimit;
use crate::metrics::{ComponentMetrics, OutputMetrics, Stage, error_type};
use crate::sources::kafka::{KafkaTlsConfig, SaslConfig, check_security, security};
use crate::template::Template;

/// librdkafka settings weir makes itself; setting them in `librdkafka_options` is an error.
const RESERVED_OPTIONS: &[(&str, &str)] = &[
    ("bootstrap.servers", "use `bootstrap_servers`"),
    ("acks", "use `acks`"),
    ("request.required.acks", "use `acks`"),
    ("enable.idempotence", "use `idempotent`"),
    ("compression.type", "use `compression`"),
    ("compression.codec", "use `compression`"),
    ("queue.buffering.max.kbytes", "use `queue_max_bytes`"),
    ("message.timeout.ms", "use `message_timeout_ms`"),
    ("linger.ms", "use `linger_ms`"),
    ("queue.buffering.max.ms", "use `linger_ms`"),
];

/// Backoff of records produced again after librdkafka gave up on them.
const RETRY: Backoff =
    Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30), max_retries: None };

/// `[sinks.<id>] type = "kafka"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port` of one or more brokers, comma-separated.
    pub bootstrap_servers: String,
    /// The topic, a template: `{{ field }}` and strftime `%` sequences of the event time.
    pub topic: String,
    /// The field whose value is the record key (text as is, other values as JSON). Without
    /// it, or when an event lacks the field, records have no key.
    #[serde(default)]
    pub key_field: Option<String>,
    /// A field holding an object whose entries become headers (an array value gives the
    /// header once per element), as the `kafka` source writes `kafka.headers`.
    #[serde(default)]
    pub headers_key: Option<String>,
    /// Headers from single fields: header name = field path. A missing field adds no header.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How an event becomes a record's value. Default JSON.
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// Compression of the record batches (librdkafka's `compression.type`). Default none.
    #[serde(default)]
    pub compression: Compression,
    /// `all` (the default: every in-sync replica has the record) or `1` (the leader has it).
    /// `0` is refused: without a broker's answer nothing could be acknowledged.
    #[serde(default = "default_acks")]
    pub acks: String,
    /// The idempotent producer: a record retried by librdkafka is written once, in order.
    /// Default true.
    #[serde(default = "yes")]
    pub idempotent: bool,
    /// Bytes librdkafka's queue may hold (records waiting and in flight). Default 16 MiB.
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: u64,
    /// How long librdkafka waits to fill a batch. Default 5.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u64,
    /// How long librdkafka tries one record before reporting it failed (weir then produces
    /// it again). Default 300000.
    #[serde(default = "default_message_timeout_ms")]
    pub message_timeout_ms: u64,
    /// Any other librdkafka producer setting, passed through.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
    /// SASL authentication to the brokers; none by default.
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// TLS to the brokers; none by default (plaintext).
    #[serde(default)]
    pub tls: Option<KafkaTlsConfig>,
}

/// `compression`: librdkafka's codecs built into weir.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

fn yes() -> bool {
    true
}
fn default_acks() -> String {
    "all".to_string()
}
fn default_queue_max_bytes() -> u64 {
    16 << 20
}
fn default_linger_ms() -> u64 {
    5
}
fn default_message_timeout_ms() -> u64 {
    300_000
}

/// What `check` compiles.
#[derive(Debug, Clone)]
pub struct Checked {
    topic: Template,
    key: Option<OwnedValuePath>,
    headers_key: Option<OwnedValuePath>,
    headers: Vec<(String, OwnedValuePath)>,
}

impl SinkComponent for KafkaSinkConfig {
    type Checked = Checked;

    fn check(&self) -> Result<Checked, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            issues.push(ConfigIssue::field("bootstrap_servers", "give at least one broker"));
        }
        let topic = Template::parse(&self.topic)
            .map_err(|e| issues.push(ConfigIssue::field("topic", e)))
            .ok();
        if self.topic.trim().is_empty() {
            issues.push(ConfigIssue::field("topic", "must not be empty"));
        }
        let mut path = |field: &str, p: &Option<String>| {
            p.as_deref().and_then(|p| {
                parse_path(p).map_err(|e| issues.push(ConfigIssue::field(field, e))).ok()
            })
        };
        let key = path("key_field", &self.key_field);
        let headers_key = path("headers_key", &self.headers_key);
        let mut headers = Vec::new();
        for (name, field) in &self.headers {
            match parse_path(field) {
                Ok(p) => headers.push((name.clone(), p)),
                Err(e) => issues.push(ConfigIssue::field("headers", format!("{name}: {e}"))),
            }
        }
        if !matches!(self.acks.as_str(), "all" | "-1" | "1") {
            issues.push(ConfigIssue::field(
                "acks",
                format!(
                    "`{}` is not `all` or `1` (with `0` no delivery could be acknowledged)",
                    self.acks
                ),
            ));
        }
        if self.idempotent && self.acks == "1" {
            issues.push(ConfigIssue::field("acks", "the idempotent producer needs `all`"));
        }
        if self.queue_max_bytes < 1024 {
            issues.push(ConfigIssue::field("queue_max_bytes", "must be at least 1024"));
        }
        if self.message_timeout_ms == 0 {
            issues.push(ConfigIssue::field("message_timeout_ms", "must be at least 1"));
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
        match topic {
            Some(topic) if issues.is_empty() => Ok(Checked { topic, key, headers_key, headers }),
            _ => Err(issues),
        }
    }

    fn build(&self, checked: Checked, cx: SinkContext) -> Result<Task, BuildError> {
        let (returned_tx, returned) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            id: cx.id.clone(),
            out: cx.metrics.output("_default"),
            metrics: cx.metrics.clone(),
            returned: Mutex::new(Some(returned_tx)),
            outstanding: AtomicUsize::new(0),
            settled: Notify::new(),
            log: Mutex::new(RateLimit::default()),
        });
        let config = self.client_config(&cx.id);
        let producer =
            ThreadedProducer::from_config_and_context(&config, Context(Arc::clone(&shared)))
                .map_err(|e| BuildError::Client {
                    what: "Kafka producer",
                    message: crate::redact::credentials(&format!("cannot create it: {e}"))
                        .into_owned(),
                })?;
        tracing::info!(component = %cx.id, topic = %self.topic, "producing to Kafka");
        let sink = KafkaSink {
            checked,
            encoding: self.encoding,
            producer,
            shared,
            returned,
            cx,
            log: RateLimit::default(),
            config,
            idempotent: self.idempotent,
            message_timeout: Duration::from_millis(self.message_timeout_ms),
            rebuilt: Instant::now(),
        };
        Ok(Box::pin(sink.run()))
    }
}

impl KafkaSinkConfig {
    /// The librdkafka configuration: weir's settings, then `librdkafka_options`.
    pub fn client_config(&self, id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", format!("weir-{id}"))
            .set("acks", if self.acks == "1" { "1" } else { "all" })
            .set("enable.idempotence", self.idempotent.to_string())
            .set("compression.type", self.compression.as_str())
            .set("queue.buffering.max.kbytes", (self.queue_max_bytes / 1024).max(1).to_string())
            // The queue is bounded in bytes; librdkafka's message count limit is lifted so
            // that it does not bind first.
            .set("queue.buffering.max.messages", "2147483647")
            .set("linger.ms", self.linger_ms.to_string())
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set_log_level(RDKafkaLogLevel::Warning);
        security(&mut c, self.sasl.as_ref(), self.tls.as_ref());
        for (k, v) in &self.librdkafka_options {
            c.set(k, v);
        }
        c
    }
}

/// What the sink and librdkafka's delivery callbacks share.
struct Shared {
    id: String,
    out: OutputMetrics,
    metrics: ComponentMetrics,
    /// Records handed back to the sink task: to produce again, or rejected. `None` once the
    /// sink has stopped taking them (a record returned then is marked errored).
    returned: Mutex<Option<mpsc::UnboundedSender<Returned>>>,
    /// Events taken from the input and not yet settled (delivered, rejected or errored).
    outstanding: AtomicUsize,
    /// Signalled on every delivery report: room in the queue, or maybe nothing left.
    settled: Notify,
    log: Mutex<RateLimit>,
}

impl Shared {
    fn hand_back(&self, r: Returned) {
        // When the sink has stopped, `r` is dropped here, which marks its event errored.
        if let Some(tx) = &*self.returned.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.send(r);
        }
    }

    fn allow_log(&self) -> Option<u64> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).allow()
    }
}

/// One event on its way: its acknowledgement handles and size. Dropped without being
/// settled, it marks the event errored.
struct Pending {
    finalizers: EventFinalizers,
    bytes: usize,
    attempts: u32,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.finalizers.update_status(EventStatus::Errored);
    }
}

/// A record as the sink builds it, kept to be produced again.
struct Record {
    topic: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
    pending: Box<Pending>,
}

enum Returned {
    Retry(Record),
    Reject(Rejected),
}

/// librdkafka's callbacks, on the producer's polling thread.
struct Context(Arc<Shared>);

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let message = crate::redact::credentials(message);
        let id = &self.0.id;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(component = %id, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(component = %id, facility = fac, "librdkafka: {message}")
            }
            _ => tracing::debug!(component = %id, facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(suppressed) = self.0.allow_log() {
            let error = crate::redact::credentials(&error.to_string()).into_owned();
            let reason = crate::redact::credentials(reason);
            tracing::warn!(component = %self.0.id, error = %error, suppressed, "kafka client error: {reason}");
        }
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<Pending>;

    fn delivery(&self, result: &DeliveryResult<'_>, mut pending: Box<Pending>) {
        let shared = &self.0;
        match result {
            Ok(_) => {
                shared.out.sent(1, pending.bytes);
                // Released as delivered: the broker has the record.
                drop(std::mem::take(&mut pending.finalizers));
                shared.outstanding.fetch_sub(1, Ordering::AcqRel);
            }
            Err((e, m)) => {
                let code = e.rdkafka_error_code();
                if let Some(reason) = code.and_then(permanent) {
                    let detail = e.to_string();
                    let rejected = reject(&mut pending, m.payload(), m.topic(), reason, detail);
                    shared.hand_back(Returned::Reject(rejected));
                } else {
                    shared.metrics.error(error_type::DELIVERY_FAILED, Stage::Sending);
                    if let Some(suppressed) = shared.allow_log() {
                        tracing::warn!(component = %shared.id, error = %e, topic = m.topic(),
                            suppressed, "record not delivered; it is produced again");
                    }
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                                .collect()
                        })
                        .unwrap_or_default();
                    pending.attempts += 1;
                    shared.hand_back(Returned::Retry(Record {
                        topic: m.topic().to_string(),
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        headers,
                        timestamp: m.timestamp().to_millis(),
                        pending,
                    }));
                }
            }
        }
        shared.settled.notify_waiters();
    }
}

/// The dead-letter reason of an error that producing again cannot cure, `None` otherwise.
fn permanent(code: RDKafkaErrorCode) -> Option<&'static str> {
    use RDKafkaErrorCode as C;
    Some(match code {
        C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge => {
            "message_too_large"
        }
        C::UnknownTopic | C::UnknownTopicOrPartition | C::UnknownPartition => "unknown_topic",
        C::InvalidTopic => "invalid_topic",
        C::InvalidMessage | C::InvalidRecord => "invalid_record",
        _ => return None,
    })
}

/// A rejected record's dead letter; its handles travel with it.
fn reject(
    pending: &mut Pending,
    payload: Option<&[u8]>,
    topic: &str,
    reason: &str,
    detail: String,
) -> Rejected {
    Rejected {
        finalizers: std::mem::take(&mut pending.finalizers),
        original: String::from_utf8_lossy(payload.unwrap_or_default()).into_owned(),
        destination: Some(topic.to_string()),
        reason: reason.to_string(),
        detail,
    }
}

/// The running sink.
struct KafkaSink {
    checked: Checked,
    encoding: EncodingConfig,
    producer: ThreadedProducer<Context>,
    shared: Arc<Shared>,
    returned: mpsc::UnboundedReceiver<Returned>,
    cx: SinkContext,
    log: RateLimit,
    /// What a new producer is made from (see [`KafkaSink::renew_producer`]).
    config: ClientConfig,
    idempotent: bool,
    message_timeout: Duration,
    rebuilt: Instant,
}

impl KafkaSink {
    async fn run(mut self) -> Result<(), ComponentError> {
        loop {
            tokio::select! {
                biased;
                Some(r) = self.returned.recv() => self.take_back(r).await,
                batch = self.cx.input.recv() => match batch {
                    Some(events) => self.produce_events(events).await,
                    None => break,
                },
            }
        }
        self.finish().await;
        Ok(())
    }

    async fn produce_events(&mut self, events: Vec<Event>) {
        self.cx.metrics.received(events.len(), batch_size(&events));
        self.shared.outstanding.fetch_add(events.len(), Ordering::AcqRel);
        let now = chrono::Utc::now();
        let mut refused = Vec::new();
        for e in events {
            match self.record(e, now) {
                Ok(record) => {
                    if let Some(r) = self.produce(record).await {
                        refused.push(r);
                    }
                }
                Err(r) => refused.push(r),
            }
        }
        self.dead_letters(refused).await;
    }

    /// The record of `e`, or its dead letter when the topic template cannot be rendered.
    fn record(
        &mut self,
        mut e: Event,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Record, Rejected> {
        let mut payload = Vec::new();
        self.encoding.encode_line(&e, &mut payload);
        payload.pop();
        let pending = Box::new(Pending {
            finalizers: std::mem::take(e.finalizers_mut()),
            bytes: payload.len(),
            attempts: 0,
        });
        let topic = match self.checked.topic.render(&e, now) {
            Ok(t) => t,
            Err(missing) => {
                self.cx.metrics.error(error_type::TEMPLATE_FAILED, Stage::Processing);
                let mut pending = pending;
                let detail = format!("the topic template needs the field `{}`", missing.0);
                return Err(reject(&mut pending, Some(&payload), "", "missing_field", detail));
            }
        };
        let key = self.checked.key.as_ref().and_then(|p| e.get(p)).and_then(value_bytes);
        let mut headers = Vec::new();
        if let Some(Value::Object(map)) = self.checked.headers_key.as_ref().and_then(|p| e.get(p)) {
            for (name, v) in map {
                match v {
                    Value::Array(values) => {
                        headers.extend(values.iter().map(|v| (name.to_string(), value_bytes(v))))
                    }
                    v => headers.push((name.to_string(), value_bytes(v))),
                }
            }
        }
        for (name, path) in &self.checked.headers {
            if let Some(v) = e.get(path) {
                headers.push((name.clone(), value_bytes(v)));
            }
        }
        let timestamp = e.timestamp().map(|t| t.timestamp_millis());
        Ok(Record { topic, key, payload, headers, timestamp, pending })
    }

    /// Hands `record` to librdkafka, waiting while its queue is full. Returns the dead letter
    /// of a record refused for good; a record refused for now is produced again later.
    async fn produce(&mut self, record: Record) -> Option<Rejected> {
        let Record { topic, key, payload, headers, timestamp, mut pending } = record;
        loop {
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in &headers {
                owned = owned.insert(Header { key: k, value: v.as_deref() });
            }
            let mut r =
                BaseRecord::with_opaque_to(&topic, pending).payload(&payload).headers(owned);
            if let Some(k) = &key {
                r = r.key(k);
            }
            if let Some(t) = timestamp {
                r = r.timestamp(t);
            }
            // Registered before the send, so that a report arriving at once is not missed.
            let settled = self.shared.settled.notified();
            let (e, back) = match self.producer.send(r) {
                Ok(()) => return None,
                Err((e, back)) => (e, back),
            };
            pending = back.delivery_opaque;
            match e.rdkafka_error_code() {
                Some(RDKafkaErrorCode::QueueFull) => {
                    // Backpressure: wait for delivery reports to make room.
                    let _ = tokio::time::timeout(Duration::from_millis(100), settled).await;
                }
                Some(code) if let Some(reason) = permanent(code) => {
                    return Some(reject(
                        &mut pending,
                        Some(&payload),
                        &topic,
                        reason,
                        e.to_string(),
                    ));
                }
                _ => {
                    self.cx.metrics.error(error_type::DELIVERY_FAILED, Stage::Sending);
                    if let Some(suppressed) = self.log.allow() {
                        tracing::warn!(component = %self.cx.id, error = %e, topic = %topic,
                            suppressed, "cannot queue a record; it is produced again");
                    }
                    pending.attempts += 1;
                    let record = Record { topic, key, payload, headers, timestamp, pending };
                    self.shared.hand_back(Returned::Retry(record));
                    return None;
                }
            }
        }
    }

    /// A record handed back by a delivery report: produced again after a backoff (other
    /// records handed back meanwhile go with it), or sent to the dead-letter destination.
    async fn take_back(&mut self, first: Returned) {
        let mut retries = Vec::new();
        let mut refused = Vec::new();
        let mut next = Some(first);
        while let Some(r) = next.take() {
            match r {
                Returned::Retry(record) => retries.push(record),
                Returned::Reject(rejected) => refused.push(rejected),
            }
            next = self.returned.try_recv().ok();
        }
        self.dead_letters(refused).await;
        if let Some(fewest) = retries.iter().map(|r| r.pending.attempts).min() {
            if fewest >= 2 {
                self.renew_producer().await;
            }
            let delay = RETRY.delay(fewest.saturating_sub(1), &mut rand::rng());
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cx.shutdown.cancelled() => {}
            }
            for record in retries {
                if let Some(r) = self.produce(record).await {
                    self.dead_letters(vec![r]).await;
                }
            }
        }
    }

    /// Replaces an idempotent producer whose records keep failing: a broker that lost its
    /// state (an in-memory or rebuilt cluster) answers `UNKNOWN_PRODUCER_ID` to the old
    /// producer id for ever, and librdkafka does not ask for a new one. At most once per
    /// `message_timeout_ms`; the old producer's queue comes back through the delivery
    /// callback and is produced again on the new one.
    async fn renew_producer(&mut self) {
        if !self.idempotent || self.rebuilt.elapsed() < self.message_timeout {
            return;
        }
        self.rebuilt = Instant::now();
        let context = Context(Arc::clone(&self.shared));
        match ThreadedProducer::from_config_and_context(&self.config, context) {
            Ok(fresh) => {
                tracing::warn!(component = %self.cx.id,
                    "records keep failing; starting a new producer (a new producer id)");
                let old = std::mem::replace(&mut self.producer, fresh);
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
            }
            Err(e) => tracing::error!(component = %self.cx.id, error = %e,
                "cannot start a new producer; the old one goes on"),
        }
    }

    /// Counts, logs and hands over rejected events.
    async fn dead_letters(&mut self, refused: Vec<Rejected>) {
        if refused.is_empty() {
            return;
        }
        if let Some(suppressed) = self.log.allow() {
            let r = &refused[0];
            tracing::error!(component = %self.cx.id, reason = %r.reason, detail = %r.detail,
                count = refused.len(), suppressed,
                "records refused for good; sent to the dead-letter destination");
        }
        self.shared.outstanding.fetch_sub(refused.len(), Ordering::AcqRel);
        self.cx.dead_letter.send(refused).await;
    }

    /// The input is closed: what is queued gets until the shutdown deadline to be delivered,
    /// then whatever is left is marked errored.
    async fn finish(mut self) {
        let deadline = self
            .cx
            .shutdown
            .deadline()
            .map(|d| d.checked_sub(Duration::from_secs(1)).unwrap_or(d))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(30));
        while self.shared.outstanding.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            let settled = self.shared.settled.notified();
            tokio::select! {
                Some(r) = self.returned.recv() => self.take_back(r).await,
                _ = tokio::time::timeout(Duration::from_millis(100), settled) => {}
            }
        }
        let left = self.shared.outstanding.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(component = %self.cx.id, records = left,
                "stopping before the broker confirmed every record; they will be read again");
        }
        // From here, a record handed back is dropped, which marks its event errored; dropping
        // the producer purges its queue through the delivery callback.
        self.shared.returned.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(self.returned);
        let producer = self.producer;
        let _ = tokio::task::spawn_blocking(move || drop(producer)).await;
    }
}

/// A field's value as record bytes: text as it is, other values as JSON; null is no value.
fn value_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Null => None,
        Value::Bytes(b) => Some(b.to_vec()),
        Value::String(_) => v.to_str_lossy().map(|s| s.as_bytes().to_vec()),
        v => Some(serde_json::to_vec(v).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> KafkaSinkConfig {
        let topic = if extra.contains("topic =") { "" } else { "topic = \"logs\"" };
        let text = format!("bootstrap_servers = \"127.0.0.1:9092\"\n{topic}\n{extra}");
        toml_edit::de::from_str(&text).unwrap()
    }

    fn issues(extra: &str) -> Vec<String> {
        config(extra)
            .check()
            .unwrap_err()
            .iter()
            .map(|i| format!("{}: {}", i.field.clone().unwrap_or_default(), i.message))
            .collect()
    }

    #[test]
    fn checks_acks_options_and_paths() {
        assert!(config("").check().is_ok());
        let text = issues(
            "acks = \"0\"\ntopic = \"{{ unterminated\"\n\
             librdkafka_options = { \"linger.ms\" = \"1\", \"batch.size\" = \"1000\" }",
        );
        assert_eq!(text.len(), 3, "{text:#?}");
        assert!(text[0].starts_with("topic: unterminated"), "{text:#?}");
        assert!(text[1].starts_with("acks: `0` is not"), "{text:#?}");
        assert!(text[2].contains("`linger.ms` cannot be set here: use `linger_ms`"));
        let text = issues("acks = \"1\"");
        assert_eq!(text, vec!["acks: the idempotent producer needs `all`"]);
        assert!(config("acks = \"1\"\nidempotent = false").check().is_ok());
    }

    #[test]
    fn settings_become_librdkafka_options() {
        let c = config(
            "compression = \"lz4\"\nqueue_max_bytes = 1048576\n\
             tls = { ca_file = \"/ca.pem\" }\n\
             librdkafka_options = { \"batch.size\" = \"65536\" }",
        )
        .client_config("out");
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("queue.buffering.max.kbytes"), Some("1024"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("security.protocol"), Some("ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(c.get("batch.size"), Some("65536"));
    }

    #[test]
    fn field_values_become_record_bytes() {
        assert_eq!(value_bytes(&Value::from("model-a")), Some(b"model-a".to_vec()));
        assert_eq!(value_bytes(&Value::from(7)), Some(b"7".to_vec()));
        assert_eq!(value_bytes(&Value::Null), None);
    }

    #[test]
    fn permanent_errors_are_told_from_passing_ones() {
        assert_eq!(permanent(RDKafkaErrorCode::MessageSizeTooLarge), Some("message_too_large"));
        assert_eq!(permanent(RDKafkaErrorCode::UnknownTopicOrPartition), Some("unknown_topic"));
        assert_eq!(permanent(RDKafkaErrorCode::MessageTimedOut), None);
        assert_eq!(permanent(RDKafkaErrorCode::BrokerTransportFailure), None);
        assert_eq!(permanent(RDKafkaErrorCode::NotEnoughReplicas), None);
    }
}
