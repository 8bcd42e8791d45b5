//! The series every request-based sink reports, beside the component series of
//! [`crate::metrics`]: requests by status, retries, events rejected by reason, batch sizes,
//! request latency and the concurrency limit.
//!
//! Names (with the registry's `weir_` prefix): `weir_sink_requests_total{status}`,
//! `weir_sink_retries_total`, `weir_sink_rejected_events_total{reason}`,
//! `weir_sink_batch_events`, `weir_sink_batch_bytes`, `weir_sink_request_duration_seconds`,
//! `weir_sink_concurrency_limit`, `weir_sink_in_flight_requests`. Every series carries the
//! component labels (`component_id`, `component_kind`, `component_type`).
//!
//! Invariant: the families are registered once per process; a sink resolves its handles at
//! build time, and only the label values that vary (HTTP status, rejection reason) are looked
//! up per request.

use std::sync::OnceLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::metrics::{ComponentMetrics, Labels};

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

struct Families {
    requests: Family<Labels, Counter>,
    retries: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    batch_events: HistogramFamily,
    batch_bytes: HistogramFamily,
    latency: HistogramFamily,
    concurrency: Family<Labels, Gauge>,
    in_flight: Family<Labels, Gauge>,
}

fn count_histogram() -> Histogram {
    // 1 to about 500,000 events, or 1 KiB-ish to about 500 MiB for bytes when scaled.
    Histogram::new(exponential_buckets(1.0, 4.0, 10))
}

fn bytes_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1024.0, 4.0, 10))
}

fn latency_histogram() -> Histogram {
    // 5 ms to about 40 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

fn families() -> &'static Families {
    static FAMILIES: OnceLock<Families> = OnceLock::new();
    FAMILIES.get_or_init(|| {
        let f = Families {
            requests: Family::default(),
            retries: Family::default(),
            rejected: Family::default(),
            batch_events: Family::new_with_constructor(count_histogram),
            batch_bytes: Family::new_with_constructor(bytes_histogram),
            latency: Family::new_with_constructor(latency_histogram),
            concurrency: Family::default(),
            in_flight: Family::default(),
        };
        let t = crate::metrics::global();
        t.register(
            "sink_requests",
            "Requests a sink sent, by response status (an HTTP code, `timeout` or `error`)",
            f.requests.clone(),
        );
        t.register("sink_retries", "Requests or items a sink sent again", f.retries.clone());
        t.register(
            "sink_rejected_events",
            "Events the destination refused for good, by reason",
            f.rejected.clone(),
        );
        t.register("sink_batch_events", "Events per batch a sink sent", f.batch_events.clone());
        t.register(
            "sink_batch_bytes",
            "Encoded, uncompressed bytes per batch a sink sent",
            f.batch_bytes.clone(),
        );
        t.register(
            "sink_request_duration_seconds",
            "Round-trip time of a sink's requests",
            f.latency.clone(),
        );
        t.register(
            "sink_concurrency_limit",
            "How many requests a sink may have in flight now",
            f.concurrency.clone(),
        );
        t.register(
            "sink_in_flight_requests",
            "Requests a sink has in flight now",
            f.in_flight.clone(),
        );
        f
    })
}

/// Pre-resolved request metrics of one sink.
#[derive(Clone)]
pub struct SinkMetrics {
    labels: Labels,
    pub retries: Counter,
    pub batch_events: Histogram,
    pub batch_bytes: Histogram,
    pub latency: Histogram,
    pub concurrency_limit: Gauge,
    pub in_flight: Gauge,
}

impl SinkMetrics {
    pub fn new(component: &ComponentMetrics) -> Self {
        let f = families();
        let l = &component.labels;
        let labels: Labels = vec![
            ("component_id".into(), l.id.clone()),
            ("component_kind".into(), l.kind.into()),
            ("component_type".into(), l.type_name.clone()),
        ];
        Self {
            retries: f.retries.get_or_create_owned(&labels),
            batch_events: f.batch_events.get_or_create_owned(&labels),
            batch_bytes: f.batch_bytes.get_or_create_owned(&labels),
            latency: f.latency.get_or_create_owned(&labels),
            concurrency_limit: f.concurrency.get_or_create_owned(&labels),
            in_flight: f.in_flight.get_or_create_owned(&labels),
            labels,
        }
    }

    fn with(&self, key: &str, value: &str) -> Labels {
        let mut l = self.labels.clone();
        l.push((key.into(), value.into()));
        l
    }

    /// Counts one response (or failure to get one) by `status`.
    pub fn request(&self, status: &str) {
        families().requests.get_or_create(&self.with("status", status)).inc();
    }

    /// Registers the series of rejections for `reason` at 0.
    pub fn expect_rejections(&self, reason: &str) {
        families().rejected.get_or_create_owned(&self.with("reason", reason));
    }

    /// Counts `count` events the destination refused for good.
    pub fn rejected(&self, reason: &str, count: usize) {
        if count > 0 {
            families().rejected.get_or_create(&self.with("reason", reason)).inc_by(count as u64);
        }
    }
}
