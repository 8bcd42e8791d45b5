//! `loki` sink: events into Grafana Loki through `POST /loki/api/v1/push`.
//!
//! ```toml
//! [sinks.loki]
//! type = "loki"
//! inputs = ["parsed"]
//! endpoint = "http://loki:3100"
//! tenant_id = "ml-platform"                        # X-Scope-OrgID; may be a template
//! labels.job = "weir"                              # static
//! labels.service = "{{ service.name }}"            # from a field
//! labels."pod_*" = "{{ kubernetes.pod_labels }}"   # one label per key of a map
//! structured_metadata.request_id = "{{ http.request.id }}"   # high-cardinality fields
//! structured_metadata.model_version = "{{ model.version }}"
//! remove_label_fields = true                       # drop label fields from the line
//! encoding.codec = "json"                          # or "text" (encoding.field, default message)
//! format = "protobuf"                              # snappy protobuf (default) or "json"
//! max_streams = 10000                              # cardinality guard, per hour
//! auth.strategy = "basic"                          # or "bearer"
//! batch.max_bytes = 1000000                        # defaults: 1 MB, 10,000 events, 1 s
//! ```
//!
//! Labels are for what selects a stream (service, environment, level); anything with many
//! values (request ids, model versions, user ids) belongs in `structured_metadata` (Loki 3).
//! The [`encoder`] checks Loki's label rules before sending and guards against label sets that
//! explode; the [`service`] builds snappy-compressed protobuf `PushRequest`s ([`proto`]) or
//! JSON, entries sorted by time within each stream, and reads Loki's answers: 2xx delivered,
//! 429/5xx retried with backoff (events hold their place and backpressure reaches the source),
//! 400 is partial acceptance (the ignored entries are counted by reason in
//! `weir_sink_rejected_events_total` and logged, never resent), 401/403 are sent again with
//! backoff while the sink reports itself unhealthy, and other 4xx (404: a wrong `endpoint`)
//! send the request's events to the dead-letter destination.
//!
//! Batches are per tenant, as Vector and Promtail do: one request carries many streams, which
//! keeps requests large when label sets are many.
//!
//! Invariant: an event leaves this sink delivered, rejected with a reason (counted, logged),
//! or errored (read again after a restart); never silently.

pub mod encoder;
pub mod proto;
pub mod service;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{SinkComponent, SinkContext};
use crate::error::{BuildError, Task};
use crate::error::{ConfigIssue, keep};
use crate::event::{Event, parse_path};
use crate::sinks::util::batch::{BatchConfig, BatchSettings};
use crate::sinks::util::driver::{self, DriverSettings, Encoder, Rejection, RequestConfig};
use crate::sinks::util::encoding::Codec;
use crate::sinks::util::http::{AuthConfig, HttpClient, TlsConfig};
use crate::sinks::util::metrics::SinkMetrics;
use crate::template::Template;
use encoder::{LineFormat, LokiEncoder, LokiEntry, compile_pairs};
use service::{PushFormat, PushService};

/// `encoding` of the Loki sink: the line is the event as JSON, or one field as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiEncodingConfig {
    /// `json` (the event as JSON, the default) or `text` (the field named by `field`).
    #[serde(default)]
    pub codec: Codec,
    /// The field written as the line with `codec = "text"`. Default `message`.
    #[serde(default = "default_text_field")]
    pub field: String,
}

fn default_text_field() -> String {
    "message".into()
}

impl Default for LokiEncodingConfig {
    fn default() -> Self {
        Self { codec: Codec::Json, field: default_text_field() }
    }
}

/// `[sinks.<id>] type = "loki"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiConfig {
    /// Base URL of Loki (the push path is added).
    pub endpoint: String,
    /// `X-Scope-OrgID`, a template.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Stream labels: name to template; a name ending in `*` expands a map.
    pub labels: BTreeMap<String, String>,
    /// Structured metadata per entry, the same way.
    #[serde(default)]
    pub structured_metadata: BTreeMap<String, String>,
    /// Remove the fields read by `labels` from the line (they are in the stream's labels).
    /// Default false.
    #[serde(default)]
    pub remove_label_fields: bool,
    /// Remove the fields read by `structured_metadata` from the line. Default false.
    #[serde(default)]
    pub remove_structured_metadata_fields: bool,
    /// How an event becomes the entry's line. Default JSON.
    #[serde(default)]
    pub encoding: LokiEncodingConfig,
    /// The push body: `protobuf` (snappy-compressed, as Promtail sends; the default) or
    /// `json`.
    #[serde(default)]
    pub format: PushFormat,
    /// Most distinct label sets per hour before new ones are capped. Default 10,000.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Credentials sent with every request; none by default.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// TLS settings for an `https` endpoint; by default the system's roots are trusted.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Size and age of a push request. Defaults: 10,000 events, 1 MB, 1 s.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Concurrency, timeout and retry backoff of the requests.
    #[serde(default)]
    pub request: RequestConfig,
    /// Check Loki's `/ready` at start-up (never blocks the pipeline). Default true.
    #[serde(default = "yes")]
    pub healthcheck: bool,
}

fn default_max_streams() -> usize {
    10_000
}

fn yes() -> bool {
    true
}

/// Batch defaults: Loki's default `grpc_server_max_recv_msg_size` is 4 MB; 1 MB leaves room.
pub const DEFAULT_BATCH: BatchSettings = BatchSettings {
    max_events: 10_000,
    max_bytes: 1_000_000,
    timeout: Duration::from_secs(1),
    idle_timeout: crate::sinks::util::batch::DEFAULT_IDLE_TIMEOUT,
};

impl SinkComponent for LokiConfig {
    /// The encoder: label and metadata templates, the line's field, the tenant.
    type Checked = LokiEncoder;

    fn check(&self) -> Result<LokiEncoder, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://")) {
            issues.push(ConfigIssue::field("endpoint", "an http:// or https:// URL"));
        }
        if self.endpoint.contains("/loki/api/v1/push") {
            issues.push(ConfigIssue::field(
                "endpoint",
                "give Loki's base URL; weir adds /loki/api/v1/push",
            ));
        }
        if self.labels.is_empty() {
            issues.push(ConfigIssue::field("labels", "Loki needs at least one label per stream"));
        }
        let fixed = self.labels.keys().filter(|k| !k.ends_with('*')).count();
        if fixed > encoder::MAX_LABELS {
            issues.push(ConfigIssue::field(
                "labels",
                format!("{fixed} labels; Loki takes at most {} per stream", encoder::MAX_LABELS),
            ));
        }
        let labels = keep(&mut issues, "labels", compile_pairs(&self.labels, "label"));
        let metadata = keep(
            &mut issues,
            "structured_metadata",
            compile_pairs(&self.structured_metadata, "structured_metadata"),
        );
        let tenant = keep(
            &mut issues,
            "tenant_id",
            self.tenant_id.as_deref().map(Template::parse).transpose(),
        );
        let field = keep(&mut issues, "encoding.field", parse_path(&self.encoding.field));
        if self.max_streams == 0 {
            issues.push(ConfigIssue::field("max_streams", "max_streams must be at least 1"));
        }
        if let Some(a) = &self.auth {
            if matches!(a, AuthConfig::ApiKey { .. }) {
                issues.push(ConfigIssue::field(
                    "auth.strategy",
                    "Loki takes \"basic\" or \"bearer\"",
                ));
            }
            issues.extend(a.check());
        }
        issues.extend(self.tls.iter().flat_map(TlsConfig::check));
        issues.extend(self.batch.check());
        issues.extend(self.request.check());
        let (Some(labels), Some(metadata), Some(tenant), Some(field), true) =
            (labels, metadata, tenant, field, issues.is_empty())
        else {
            return Err(issues);
        };
        let line = match self.encoding.codec {
            Codec::Json => LineFormat::Json,
            Codec::Text => LineFormat::Text(field, self.encoding.field.clone()),
        };
        let mut enc = LokiEncoder::new(labels, metadata, line, tenant, self.max_streams);
        enc.remove_label_fields = self.remove_label_fields;
        enc.remove_metadata_fields = self.remove_structured_metadata_fields;
        Ok(enc)
    }

    fn build(&self, mut inner: LokiEncoder, cx: SinkContext) -> Result<Task, BuildError> {
        let capped = cx.metrics.error_counter(
            crate::metrics::error_type::STREAM_CARDINALITY_CAPPED,
            crate::metrics::Stage::Processing,
        );
        inner.on_capped = Box::new(move |_| {
            capped.inc();
        });
        let client = HttpClient::new(
            vec![self.endpoint.clone()],
            self.tls.as_ref(),
            self.auth.as_ref(),
            self.request.timeout(),
        )
        .map_err(|message| BuildError::Client { what: "HTTP client", message })?;
        let client = Arc::new(client);
        let service = PushService { format: self.format, metrics: SinkMetrics::new(&cx.metrics) };
        let settings = DriverSettings {
            batch: self.batch.settings(DEFAULT_BATCH),
            request: self.request.clone(),
            client: Arc::clone(&client),
        };
        let check: Option<driver::HealthCheck> = self.healthcheck.then(|| {
            let id = cx.id.clone();
            Box::new(move || {
                let (id, client) = (id.clone(), Arc::clone(&client));
                Box::pin(async move { healthcheck(&id, &client).await }) as driver::HealthCheckRun
            }) as driver::HealthCheck
        });
        Ok(Box::pin(driver::run(cx, LokiSinkEncoder { inner }, service, settings, check)))
    }
}

struct LokiSinkEncoder {
    inner: LokiEncoder,
}

impl Encoder for LokiSinkEncoder {
    type Key = Option<String>;
    type Payload = LokiEntry;

    const REJECTION_REASONS: &'static [&'static str] =
        &["missing_field", "too_many_labels", "entry_out_of_order", "greater_than_max_sample_age"];

    fn encode(
        &mut self,
        event: &mut Event,
    ) -> Result<(Option<String>, LokiEntry, usize), Rejection> {
        let (tenant, entry) = self.inner.encode(event, chrono::Utc::now())?;
        let size = entry.line.len()
            + entry.metadata.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            + 16;
        Ok((tenant, entry, size))
    }
}

/// `GET /ready` once; logs what it found. Never fails the sink; `Err` (the sink is reported
/// unhealthy) when Loki is not ready. The log names no URL: it may carry credentials.
async fn healthcheck(id: &str, client: &HttpClient) -> Result<(), String> {
    match client.get_small(0, "/ready").await {
        Ok(r) if r.status == 200 => {
            tracing::info!(component = id, "health check: Loki is ready");
            Ok(())
        }
        Ok(r) => {
            let body = String::from_utf8_lossy(&r.body[..r.body.len().min(200)]).trim().to_string();
            tracing::error!(
                component = id, status = r.status, body = %body,
                "health check: Loki is not ready; events wait and are retried"
            );
            Err(format!("Loki is not ready (HTTP {}: {body})", r.status))
        }
        Err(e) => {
            tracing::error!(
                component = id, error = %e,
                "health check: Loki unreachable; events wait and are retried"
            );
            Err(format!("Loki unreachable: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks() {
        let parse = |s: &str| toml_edit::de::from_str::<LokiConfig>(s);
        let ok = parse(
            "endpoint = \"http://loki:3100\"\nlabels.job = \"weir\"\nlabels.\"pod_*\" = \"{{ k8s.labels }}\"",
        )
        .unwrap();
        assert!(ok.check().is_ok(), "{:?}", ok.check().err());
        let bad = parse(
            "endpoint = \"http://loki:3100/loki/api/v1/push\"\nlabels = {}\nmax_streams = 0\n\
             structured_metadata.\"bad-name\" = \"x\"",
        )
        .unwrap();
        let fields: Vec<_> =
            bad.check().err().unwrap().into_iter().filter_map(|i| i.field).collect();
        assert_eq!(fields, ["endpoint", "labels", "structured_metadata", "max_streams"]);
        assert!(parse("endpoint = \"http://l\"\nlabels.a = \"b\"\nlabel.c = \"d\"").is_err());
    }
}
