//! weir's own metrics, exported on the API's `GET /metrics`: in OpenMetrics (encoded by
//! `prometheus-client`), or in the Prometheus text format 0.0.4 when the scraper's `Accept`
//! prefers it ([`Format::negotiate`]), beside the standard `process_*` series
//! ([`process`]).
//!
//! Every component gets a [`ComponentMetrics`] with the same series, labelled by
//! `component_id`, `component_kind` and `component_type`, so a dashboard can follow events
//! through any pipeline. Names follow Prometheus conventions: a `weir_` prefix, base units,
//! `_total` on counters (added by the encoder), `_bytes` and `_seconds` suffixes.
//!
//! Invariant: the hot path only touches pre-resolved counter handles (one atomic add per
//! batch); label look-ups happen at build time or on rare paths (errors, discards).

use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

pub mod process;
pub mod text;

/// Label pairs of a series.
pub type Labels = Vec<(String, String)>;

type CounterFamily = Family<Labels, Counter>;
type GaugeFamily = Family<Labels, Gauge>;

/// The families every component reports into.
pub struct Telemetry {
    registry: Mutex<Registry>,
    /// Series without weir's prefix: `process_*`.
    unprefixed: Registry,
    received_events: CounterFamily,
    received_bytes: CounterFamily,
    sent_events: CounterFamily,
    sent_bytes: CounterFamily,
    errors: CounterFamily,
    discarded: CounterFamily,
    buffer_events: GaugeFamily,
    buffer_bytes: GaugeFamily,
    buffer_max_bytes: GaugeFamily,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// The process-wide telemetry.
pub fn global() -> &'static Telemetry {
    TELEMETRY.get_or_init(Telemetry::new)
}

impl Telemetry {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("weir");
        let t = Self {
            received_events: CounterFamily::default(),
            received_bytes: CounterFamily::default(),
            sent_events: CounterFamily::default(),
            sent_bytes: CounterFamily::default(),
            errors: CounterFamily::default(),
            discarded: CounterFamily::default(),
            buffer_events: GaugeFamily::default(),
            buffer_bytes: GaugeFamily::default(),
            buffer_max_bytes: GaugeFamily::default(),
            registry: Mutex::new(Registry::default()),
            unprefixed: {
                let mut r = Registry::default();
                r.register_collector(Box::new(process::ProcessCollector));
                r
            },
        };
        registry.register(
            "component_received_events",
            "Events that entered a component",
            t.received_events.clone(),
        );
        registry.register(
            "component_received_bytes",
            "Bytes that entered a component (raw bytes for sources, estimated size elsewhere)",
            t.received_bytes.clone(),
        );
        registry.register(
            "component_sent_events",
            "Events a component emitted, by output",
            t.sent_events.clone(),
        );
        registry.register(
            "component_sent_bytes",
            "Bytes a component emitted (written bytes for sinks, estimated size elsewhere)",
            t.sent_bytes.clone(),
        );
        registry.register(
            "component_errors",
            "Errors in a component, by error type and stage",
            t.errors.clone(),
        );
        registry.register(
            "component_discarded_events",
            "Events a component discarded, by reason",
            t.discarded.clone(),
        );
        registry.register(
            "buffer_events",
            "Events waiting in a component's input buffer",
            t.buffer_events.clone(),
        );
        registry.register(
            "buffer_size_bytes",
            "Estimated bytes waiting in a component's input buffer",
            t.buffer_bytes.clone(),
        );
        registry.register(
            "buffer_max_size_bytes",
            "Capacity of a component's input buffer in bytes",
            t.buffer_max_bytes.clone(),
        );
        let build_info = Family::<Labels, Gauge>::default();
        build_info
            .get_or_create(&vec![("version".into(), env!("CARGO_PKG_VERSION").into())])
            .set(1);
        registry.register("build_info", "weir's version", build_info);
        *t.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        t
    }

    /// Registers a further metric (a component's own series) under the `weir_` prefix.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let mut registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        registry.register(name, help, metric);
    }

    /// The exposition text in OpenMetrics.
    pub fn encode(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &registry);
        let _ = encode_registry(&mut out, &self.unprefixed);
        let _ = encode_eof(&mut out);
        out
    }

    /// The exposition in `format`, with its `Content-Type`.
    pub fn encode_as(&self, format: Format) -> (String, &'static str) {
        match format {
            Format::OpenMetrics => (self.encode(), OPENMETRICS_CONTENT_TYPE),
            Format::Prometheus => (text::from_openmetrics(&self.encode()), PROMETHEUS_CONTENT_TYPE),
        }
    }
}

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition formats of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Prometheus,
}

impl Format {
    /// The format an `Accept` header prefers: the Prometheus text format when it ranks
    /// `text/plain` above `application/openmetrics-text` (by `q`, then by order), as
    /// Prometheus does with `scrape_protocols` and as `curl -H 'Accept: text/plain'` does;
    /// OpenMetrics otherwise (no header, `*/*`, OpenMetrics first).
    pub fn negotiate(accept: Option<&str>) -> Self {
        let mut best: Option<(f32, Self)> = None;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let format = match media.as_str() {
                "application/openmetrics-text" => Self::OpenMetrics,
                "text/plain" => Self::Prometheus,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, format));
            }
        }
        best.map_or(Self::OpenMetrics, |(_, f)| f)
    }
}

/// Identifies a component in metrics and logs.
#[derive(Clone, Debug)]
pub struct ComponentLabels {
    pub id: String,
    pub kind: &'static str,
    pub type_name: String,
}

impl ComponentLabels {
    pub fn new(id: &str, kind: &'static str, type_name: &str) -> Self {
        Self { id: id.to_string(), kind, type_name: type_name.to_string() }
    }

    /// The component's label pairs (for series a component registers itself).
    pub fn labels(&self) -> Labels {
        vec![
            ("component_id".into(), self.id.clone()),
            ("component_kind".into(), self.kind.into()),
            ("component_type".into(), self.type_name.clone()),
        ]
    }

    /// The component's label pairs plus one more.
    pub fn with(&self, key: &str, value: &str) -> Labels {
        let mut l = self.labels();
        l.push((key.into(), value.into()));
        l
    }
}

/// Pre-resolved series of one component.
#[derive(Clone)]
pub struct ComponentMetrics {
    pub labels: ComponentLabels,
    received_events: Counter,
    received_bytes: Counter,
}

impl ComponentMetrics {
    pub fn new(labels: ComponentLabels) -> Self {
        let t = global();
        let l = labels.labels();
        Self {
            received_events: t.received_events.get_or_create_owned(&l),
            received_bytes: t.received_bytes.get_or_create_owned(&l),
            labels,
        }
    }

    pub fn id(&self) -> &str {
        &self.labels.id
    }

    pub fn received(&self, events: usize, bytes: usize) {
        self.received_events.inc_by(events as u64);
        self.received_bytes.inc_by(bytes as u64);
    }

    /// Counters for events sent on `output` (`"_default"` for the main output).
    pub fn output(&self, output: &str) -> OutputMetrics {
        let t = global();
        let l = self.labels.with("output", output);
        OutputMetrics {
            events: t.sent_events.get_or_create_owned(&l),
            bytes: t.sent_bytes.get_or_create_owned(&l),
        }
    }

    pub fn error(&self, error_type: &str, stage: Stage) {
        let mut l = self.labels.with("error_type", error_type);
        l.push(("stage".into(), stage.as_str().into()));
        global().errors.get_or_create(&l).inc();
    }

    /// A handle for an error series that is hit often (resolved once).
    pub fn error_counter(&self, error_type: &str, stage: Stage) -> Counter {
        let mut l = self.labels.with("error_type", error_type);
        l.push(("stage".into(), stage.as_str().into()));
        global().errors.get_or_create_owned(&l)
    }

    pub fn discarded(&self, reason: &str, count: usize) {
        if count > 0 {
            self.discarded_counter(reason).inc_by(count as u64);
        }
    }

    pub fn discarded_counter(&self, reason: &str) -> Counter {
        global().discarded.get_or_create_owned(&self.labels.with("reason", reason))
    }

    pub fn buffer_gauges(&self) -> BufferGauges {
        let t = global();
        let l = self.labels.labels();
        BufferGauges {
            events: t.buffer_events.get_or_create_owned(&l),
            bytes: t.buffer_bytes.get_or_create_owned(&l),
            max_bytes: t.buffer_max_bytes.get_or_create_owned(&l),
        }
    }
}

/// What a component's counters say, read back (for the contract tests, [`crate::contract`]).
#[cfg(test)]
impl ComponentMetrics {
    pub fn received_events(&self) -> u64 {
        self.received_events.get()
    }

    pub fn sent_events(&self, output: &str) -> u64 {
        global().sent_events.get_or_create(&self.labels.with("output", output)).get()
    }

    pub fn errors(&self, error_type: &str, stage: Stage) -> u64 {
        self.error_counter(error_type, stage).get()
    }

    pub fn discarded_events(&self, reason: &str) -> u64 {
        self.discarded_counter(reason).get()
    }
}

/// Sent-events counters of one output.
#[derive(Clone)]
pub struct OutputMetrics {
    events: Counter,
    bytes: Counter,
}

impl OutputMetrics {
    pub fn sent(&self, events: usize, bytes: usize) {
        self.events.inc_by(events as u64);
        self.bytes.inc_by(bytes as u64);
    }
}

/// Fill level of a component's input buffer.
#[derive(Clone)]
pub struct BufferGauges {
    pub events: Gauge,
    pub bytes: Gauge,
    pub max_bytes: Gauge,
}

/// Where in a component an error happened: the `stage` label of
/// `weir_component_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Receiving,
    Processing,
    Sending,
    Buffering,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receiving => "receiving",
            Self::Processing => "processing",
            Self::Sending => "sending",
            Self::Buffering => "buffering",
        }
    }
}

/// The `error_type` values of `weir_component_errors_total`: one list for dashboards and
/// alerts to read.
pub mod error_type {
    /// An alert receiver refused a notification for good.
    pub const ALERT_REJECTED: &str = "alert_rejected";
    /// An alert notification could not be sent (it is retried).
    pub const ALERT_SEND_FAILED: &str = "alert_send_failed";
    /// A disk buffer could not write or sync a segment.
    pub const BUFFER_WRITE_FAILED: &str = "buffer_write_failed";
    /// A file checkpoint could not be written.
    pub const CHECKPOINT_WRITE_FAILED: &str = "checkpoint_write_failed";
    /// Kafka offsets could not be committed.
    pub const COMMIT_FAILED: &str = "commit_failed";
    /// A connection over the limit was refused.
    pub const CONNECTION_REFUSED: &str = "connection_refused";
    /// Kafka reported an error while consuming.
    pub const CONSUME_FAILED: &str = "consume_failed";
    /// A destination refused a sink's credentials (401, 403); the request is sent again.
    pub const CREDENTIALS_REFUSED: &str = "credentials_refused";
    /// A Kafka record the broker did not take (it is produced again).
    pub const DELIVERY_FAILED: &str = "delivery_failed";
    /// A line longer than `max_line_bytes` was cut.
    pub const LINE_TRUNCATED: &str = "line_truncated";
    /// A syslog frame could not be read.
    pub const MALFORMED_FRAME: &str = "malformed_frame";
    /// A syslog message was longer than the limit.
    pub const MESSAGE_TOO_LONG: &str = "message_too_long";
    /// A parser could not read an event or a message.
    pub const PARSE_FAILED: &str = "parse_failed";
    /// A VRL program failed on an event.
    pub const PROGRAM_FAILED: &str = "program_failed";
    /// Reading a file or a connection failed.
    pub const READ_FAILED: &str = "read_failed";
    /// A request was given up after `request.retry_attempts`.
    pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";
    /// A Loki stream over the cap of streams was folded.
    pub const STREAM_CARDINALITY_CAPPED: &str = "stream_cardinality_capped";
    /// A path template could not be rendered for an event.
    pub const TEMPLATE_FAILED: &str = "template_failed";
    /// A TLS handshake failed.
    pub const TLS_HANDSHAKE_FAILED: &str = "tls_handshake_failed";
    /// A metric value was not a number.
    pub const VALUE_NOT_NUMERIC: &str = "value_not_numeric";
    /// Writing to a file or the console failed.
    pub const WRITE_FAILED: &str = "write_failed";
}

/// The `reason` values of `weir_component_discarded_events_total`.
pub mod discard_reason {
    /// A VRL program aborted on the event.
    pub const ABORTED: &str = "aborted";
    /// The oldest undelivered alert notification made room for a newer one.
    pub const ALERT_QUEUE_FULL: &str = "alert_queue_full";
    /// A full buffer with `when_full = "drop_newest"` (or UDP) refused the event.
    pub const BUFFER_FULL: &str = "buffer_full";
    /// A disk buffer whose file system is full dropped the event (`drop_newest`).
    pub const DISK_FULL: &str = "disk_full";
    /// The drift transform had too many open windows for another model.
    pub const DRIFT_WINDOW_REFUSED: &str = "drift_window_refused";
    /// An event larger than a disk buffer can hold.
    pub const EVENT_TOO_LARGE: &str = "event_too_large";
    /// A filter condition did not match.
    pub const FILTERED: &str = "filtered";
    /// The kernel dropped UDP datagrams before weir read them.
    pub const KERNEL_BUFFER_FULL: &str = "kernel_buffer_full";
    /// A line longer than `max_line_bytes` was skipped.
    pub const LINE_TOO_LONG: &str = "line_too_long";
    /// A syslog message longer than the limit was dropped.
    pub const MESSAGE_TOO_LONG: &str = "message_too_long";
    /// A transform output that nothing reads.
    pub const OUTPUT_NOT_CONSUMED: &str = "output_not_consumed";
    /// The accuracy transform had too many open windows for another model.
    pub const QUALITY_WINDOW_REFUSED: &str = "quality_window_refused";
    /// Left out by sampling.
    pub const SAMPLED: &str = "sampled";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_of_scrapers_and_tools() {
        // Prometheus 2.x's default scrape header.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        // Prometheus with `scrape_protocols: [PrometheusText0.0.4]`, and agents that ask so.
        assert_eq!(
            Format::negotiate(Some("text/plain;version=0.0.4;q=1,*/*;q=0.1")),
            Format::Prometheus
        );
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.2, text/plain;q=0.5")),
            Format::Prometheus
        );
        assert_eq!(Format::negotiate(Some("text/plain;q=0")), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::OpenMetrics);
        assert_eq!(Format::negotiate(None), Format::OpenMetrics);
    }

    #[test]
    fn both_formats_carry_the_process_series() {
        let (om, ct) = global().encode_as(Format::OpenMetrics);
        assert!(ct.starts_with("application/openmetrics-text"));
        assert!(om.ends_with("# EOF\n") && om.matches("# EOF").count() == 1, "{om}");
        assert!(om.contains("\nprocess_cpu_seconds_total "), "{om}");
        assert!(om.contains("\nprocess_resident_memory_bytes "), "{om}");
        let (text, ct) = global().encode_as(Format::Prometheus);
        assert!(ct.starts_with("text/plain; version=0.0.4"));
        assert!(!text.contains("# EOF"));
        assert!(text.contains("# TYPE process_cpu_seconds_total counter\n"), "{text}");
        assert!(text.contains("# TYPE weir_component_received_events_total counter\n"), "{text}");
    }
}
