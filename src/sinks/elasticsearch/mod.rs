//! `elasticsearch` sink: events into Elasticsearch (7.x to 9.x) through the `_bulk` API,
//! into indices or data streams.
//!
//! ```toml
//! [sinks.es]
//! type = "elasticsearch"
//! inputs = ["parsed"]
//! endpoints = ["https://es1:9200", "https://es2:9200"]   # round-robin, failover
//! mode = "bulk"                                         # or "data_stream"
//! index = "logs-model-%Y.%m.%d"                         # {{ field }} and strftime of @timestamp
//! # data_stream.type = "logs"; data_stream.dataset = "{{ service.name }}"; data_stream.namespace = "prod"
//! id_key = "http.request.id"                            # or id_from_content = true
//! pipeline = "model-logs"                               # an ingest pipeline (optional)
//! compression = "gzip"                                  # default; or "none"
//! auth.strategy = "basic"                               # or "api_key"
//! auth.user = "weir"
//! auth.password = "${ES_PASSWORD}"
//! batch.max_bytes = 5000000                             # defaults: 5 MB, 1,000 events, 1 s
//! request.concurrency = "adaptive"                      # or a number
//! ```
//!
//! How events are delivered: [`encoder`] writes each event's two NDJSON lines once; batches
//! per index go through the shared driver ([`crate::sinks::util::driver`]); [`service`] reads
//! the response item by item: 429 and 5xx items are sent again alone with backoff, 409 on
//! `create` counts as delivered, 400/404 items are rejected with Elasticsearch's `error.type`
//! and `error.reason` (counted in `weir_sink_rejected_events_total{reason}`, logged, and
//! sent to the dead-letter destination), 413 splits the batch. Whole-request answers: a 400 or
//! 404 (and any other 4xx but 401, 403, 408, 413 and 429) sends the request's events to the
//! dead-letter destination with the status and Elasticsearch's reason, and the sink goes on;
//! 401/403 are sent again with backoff until the credentials are accepted, the sink reported
//! unhealthy on `/health` meanwhile (the table in [`service`]). Give documents an `_id`
//! (`id_key` or `id_from_content`) and retries never duplicate; without one, a retry after a
//! broken connection may index a document twice (never zero times).
//!
//! At start-up a health check (`GET /` on each endpoint) reads `version.number` and the
//! `X-elastic-product` header and logs what it found; it never holds the pipeline back: events
//! wait in batches and retries while Elasticsearch is unreachable. While no endpoint answers
//! as Elasticsearch (and no request has got through) the sink is unhealthy on `/health`, and
//! the check is made again every 30 seconds.
//!
//! Why not the official `elasticsearch` crate: it is published only as alpha releases
//! (9.1.0-alpha.1 when this was written); it enables reqwest's response decompression and
//! JSON features, which weir does not need; and per-item retries need weir's own reading of
//! the response anyway (a retry sends only the items still to go, in a request built and
//! compressed again). The bulk path therefore speaks HTTP directly through the shared client.
//!
//! Invariant: an event leaves this sink delivered, rejected with a reason (counted, logged),
//! or errored (read again after a restart); never silently.

pub mod encoder;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::component::{SinkComponent, SinkContext};
use crate::error::{BuildError, Task};
use crate::error::{ConfigIssue, keep};
use crate::event::{Event, parse_path};
use crate::sinks::util::batch::{BatchConfig, BatchSettings};
use crate::sinks::util::driver::{self, DriverSettings, Encoder, Rejection, RequestConfig};
use crate::sinks::util::http::{AuthConfig, HttpClient, TlsConfig};
use crate::template::Template;
use encoder::{BulkEncoder, BulkItem, IdSource, Target};
use service::BulkService;

/// `mode` of the sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Bulk,
    DataStream,
}

/// `compression` of the request bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    Gzip,
    None,
}

/// `data_stream`: the three parts of a data stream's name, each a template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStreamConfig {
    /// The first part, a template. Default `logs`.
    #[serde(default = "default_ds_type", rename = "type")]
    pub kind: String,
    /// The second part, a template (`{{ service.name }}`). Default `generic`.
    #[serde(default = "default_ds_dataset")]
    pub dataset: String,
    /// The third part, a template. Default `default`.
    #[serde(default = "default_ds_namespace")]
    pub namespace: String,
}

fn default_ds_type() -> String {
    "logs".into()
}
fn default_ds_dataset() -> String {
    "generic".into()
}
fn default_ds_namespace() -> String {
    "default".into()
}

impl Default for DataStreamConfig {
    fn default() -> Self {
        Self {
            kind: default_ds_type(),
            dataset: default_ds_dataset(),
            namespace: default_ds_namespace(),
        }
    }
}

/// `[sinks.<id>] type = "elasticsearch"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URLs of the cluster's nodes, used in turn.
    pub endpoints: Vec<String>,
    /// `bulk` (the default: documents into `index`) or `data_stream` (appended with `create`
    /// into the data stream `type-dataset-namespace`, see `data_stream`).
    #[serde(default)]
    pub mode: Mode,
    /// Index name template (bulk mode). Default `weir-%Y.%m.%d`.
    #[serde(default)]
    pub index: Option<String>,
    /// With `mode = "data_stream"`: the parts of the stream's name. Default
    /// `logs-generic-default`.
    #[serde(default)]
    pub data_stream: Option<DataStreamConfig>,
    /// An ingest pipeline to run on every document.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// A field whose value becomes the document's `_id`.
    #[serde(default)]
    pub id_key: Option<String>,
    /// Derive `_id` from the document's content (SHA-1), for idempotent retries.
    #[serde(default)]
    pub id_from_content: bool,
    /// Compression of the request bodies: `gzip` (the default) or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Credentials sent with every request; none by default.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// TLS settings for `https` endpoints; by default the system's roots are trusted.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Size and age of a bulk request. Defaults: 1,000 events, 5 MB, 1 s.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Concurrency, timeout and retry backoff of the requests.
    #[serde(default)]
    pub request: RequestConfig,
    /// Check the endpoints at start-up (never blocks the pipeline). Default true.
    #[serde(default = "yes")]
    pub healthcheck: bool,
}

fn yes() -> bool {
    true
}

/// Batch defaults. Elastic recommends bulk requests of a few thousand documents and a few
/// megabytes (Filebeat sends 1,600 events a request, Logstash 125 per worker); 1,000 events
/// of model-server logs make requests of about half a megabyte, as fast as larger ones for
/// less memory. Larger documents reach `max_bytes` first.
pub const DEFAULT_BATCH: BatchSettings = BatchSettings {
    max_events: 1_000,
    max_bytes: 5_000_000,
    timeout: Duration::from_secs(1),
    idle_timeout: crate::sinks::util::batch::DEFAULT_IDLE_TIMEOUT,
};

impl ElasticsearchConfig {
    /// The index template (bulk mode).
    pub fn index_template(&self) -> &str {
        self.index.as_deref().unwrap_or("weir-%Y.%m.%d")
    }

    /// The HTTP client of this sink (reads TLS and secret files).
    pub fn client(&self) -> Result<HttpClient, String> {
        HttpClient::new(
            self.endpoints.clone(),
            self.tls.as_ref(),
            self.auth.as_ref(),
            self.request.timeout(),
        )
    }
}

impl SinkComponent for ElasticsearchConfig {
    /// The bulk encoder: the index or data stream templates, where an `_id` comes from.
    type Checked = BulkEncoder;

    fn check(&self) -> Result<BulkEncoder, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.endpoints.is_empty() {
            issues.push(ConfigIssue::field("endpoints", "give at least one endpoint URL"));
        }
        for e in &self.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                issues.push(ConfigIssue::field(
                    "endpoints",
                    format!("`{}` is not an http:// or https:// URL", crate::redact::url(e)),
                ));
            }
        }
        let target = match self.mode {
            Mode::Bulk => {
                if self.data_stream.is_some() {
                    issues.push(ConfigIssue::field(
                        "data_stream",
                        "data_stream is for mode = \"data_stream\"; in bulk mode use `index`",
                    ));
                }
                keep(&mut issues, "index", Template::parse(self.index_template()))
                    .map(Target::Index)
            }
            Mode::DataStream => {
                if self.index.is_some() {
                    issues.push(ConfigIssue::field(
                        "index",
                        "in data_stream mode the name comes from data_stream.type, .dataset and \
                         .namespace",
                    ));
                }
                let ds = self.data_stream.clone().unwrap_or_default();
                let kind = keep(&mut issues, "data_stream.type", Template::parse(&ds.kind));
                let dataset =
                    keep(&mut issues, "data_stream.dataset", Template::parse(&ds.dataset));
                let namespace =
                    keep(&mut issues, "data_stream.namespace", Template::parse(&ds.namespace));
                match (kind, dataset, namespace) {
                    (Some(kind), Some(dataset), Some(namespace)) => {
                        Some(Target::DataStream { kind, dataset, namespace })
                    }
                    _ => None,
                }
            }
        };
        if let Some(p) = &self.pipeline
            && (p.is_empty()
                || !p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            issues.push(ConfigIssue::field(
                "pipeline",
                "an ingest pipeline name of letters, digits, '-', '_' and '.'",
            ));
        }
        let id = match (&self.id_key, self.id_from_content) {
            (Some(k), _) => keep(&mut issues, "id_key", parse_path(k)).map(IdSource::Field),
            (None, true) => Some(IdSource::Content),
            (None, false) => Some(IdSource::Auto),
        };
        if self.id_key.is_some() && self.id_from_content {
            issues.push(ConfigIssue::field(
                "id_from_content",
                "choose id_key or id_from_content, not both",
            ));
        }
        if let Some(a) = &self.auth {
            if matches!(a, AuthConfig::Bearer { .. }) {
                issues.push(ConfigIssue::field(
                    "auth.strategy",
                    "Elasticsearch takes \"basic\" or \"api_key\"",
                ));
            }
            issues.extend(a.check());
        }
        issues.extend(self.tls.iter().flat_map(TlsConfig::check));
        issues.extend(self.batch.check());
        issues.extend(self.request.check());
        match (target, id) {
            (Some(target), Some(id)) if issues.is_empty() => Ok(BulkEncoder { target, id }),
            _ => Err(issues),
        }
    }

    fn build(&self, encoder: BulkEncoder, cx: SinkContext) -> Result<Task, BuildError> {
        let encoder = EsEncoder { inner: encoder, scratch: Vec::new() };
        let client =
            self.client().map_err(|message| BuildError::Client { what: "HTTP client", message })?;
        let client = Arc::new(client);
        let service =
            BulkService::new(self.pipeline.as_deref(), self.compression == Compression::Gzip);
        let settings = DriverSettings {
            batch: self.batch.settings(DEFAULT_BATCH),
            request: self.request.clone(),
            client: Arc::clone(&client),
        };
        let check: Option<driver::HealthCheck> = self.healthcheck.then(|| {
            let id = cx.id.clone();
            let data_stream = self.mode == Mode::DataStream;
            Box::new(move || {
                let (id, client) = (id.clone(), Arc::clone(&client));
                Box::pin(async move { healthcheck(&id, &client, data_stream).await })
                    as driver::HealthCheckRun
            }) as driver::HealthCheck
        });
        Ok(Box::pin(driver::run(cx, encoder, service, settings, check)))
    }
}

struct EsEncoder {
    inner: BulkEncoder,
    scratch: Vec<u8>,
}

impl Encoder for EsEncoder {
    type Key = String;
    type Payload = BulkItem;

    // Mapping conflicts are the usual item refusals (8.x and 7.x names).
    const REJECTION_REASONS: &'static [&'static str] =
        &["missing_field", "document_parsing_exception", "mapper_parsing_exception"];

    fn encode(&mut self, event: &mut Event) -> Result<(String, BulkItem, usize), Rejection> {
        let (index, item) = self.inner.encode(event, chrono::Utc::now(), &mut self.scratch)?;
        let size = item.lines.len();
        Ok((index, item, size))
    }

    /// Encoding keeps nothing from one event to the next but its scratch space.
    fn fork(&self) -> Option<Self> {
        Some(Self { inner: self.inner.clone(), scratch: Vec::new() })
    }
}

/// What `GET /` says about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub version: String,
    pub major: u32,
    pub minor: u32,
    /// The `X-elastic-product` header, when sent (7.14 and later).
    pub product: Option<String>,
}

/// Reads `version.number` and the product header of a `GET /` response.
pub fn node_info(headers: &reqwest::header::HeaderMap, body: &[u8]) -> Result<NodeInfo, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("`GET /` is not JSON: {e}"))?;
    let version = v
        .pointer("/version/number")
        .and_then(|n| n.as_str())
        .ok_or("`GET /` has no version.number")?
        .to_string();
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    let major = parts.next().flatten().ok_or_else(|| format!("unreadable version {version}"))?;
    let minor = parts.next().flatten().unwrap_or(0);
    let product =
        headers.get("x-elastic-product").and_then(|h| h.to_str().ok()).map(str::to_string);
    Ok(NodeInfo { version, major, minor, product })
}

/// Checks every endpoint once and logs what it found. Never fails the sink; `Err` (the sink
/// is reported unhealthy) when no endpoint answered as a usable Elasticsearch.
async fn healthcheck(id: &str, client: &HttpClient, data_stream: bool) -> Result<(), String> {
    let mut failures = Vec::new();
    let mut usable = false;
    for (i, endpoint) in client.endpoints.all().iter().enumerate() {
        // As it may be shown: a password in the URL is masked.
        let endpoint = endpoint.as_str();
        match client.get_small(i, "/").await {
            Err(e) => {
                tracing::error!(
                    component = id, endpoint = %endpoint, error = %e,
                    "health check: Elasticsearch unreachable; events wait and are retried"
                );
                failures.push(format!("{endpoint} unreachable: {e}"));
            }
            Ok(r) if r.status == 401 || r.status == 403 => {
                tracing::error!(
                    component = id,
                    endpoint,
                    status = r.status,
                    "health check: Elasticsearch refused the credentials; check `auth`"
                );
                failures.push(format!("{endpoint} refused the credentials (HTTP {})", r.status));
            }
            Ok(r) if r.status != 200 => {
                tracing::error!(
                    component = id,
                    endpoint,
                    status = r.status,
                    "health check: unexpected answer to GET /"
                );
                failures.push(format!("{endpoint} answered HTTP {} to GET /", r.status));
            }
            Ok(r) => match node_info(&r.headers, &r.body) {
                Err(e) => {
                    tracing::error!(component = id, endpoint = %endpoint, error = %e, "health check");
                    failures.push(format!("{endpoint}: {e}"));
                }
                Ok(info) => {
                    let supported = (7..=9).contains(&info.major);
                    let genuine = match &info.product {
                        Some(p) => p == "Elasticsearch",
                        // The header exists from 7.14 on; older 7.x do not send it.
                        None => info.major == 7 && info.minor < 14,
                    };
                    if !genuine {
                        tracing::error!(
                            component = id, endpoint = %endpoint, version = %info.version,
                            product = info.product.as_deref().unwrap_or("none"),
                            "health check: this server does not say it is Elasticsearch \
                             (X-elastic-product); bulk responses may differ"
                        );
                    } else if !supported {
                        tracing::warn!(
                            component = id, endpoint = %endpoint, version = %info.version,
                            "health check: weir supports Elasticsearch 7.x to 9.x"
                        );
                    } else if data_stream && info.major == 7 && info.minor < 9 {
                        tracing::error!(
                            component = id, endpoint = %endpoint, version = %info.version,
                            "health check: data streams need Elasticsearch 7.9 or later"
                        );
                    } else {
                        tracing::info!(
                            component = id, endpoint = %endpoint, version = %info.version,
                            "health check: Elasticsearch is reachable"
                        );
                    }
                    // A server that answers is usable; what it lacks was logged above.
                    usable = true;
                }
            },
        }
    }
    if usable { Ok(()) } else { Err(failures.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_info_from_get_root() {
        let body = br#"{"name":"es01","cluster_name":"docker-cluster","cluster_uuid":"p3oLLsSXQy2KUGOYL0ZDIQ","version":{"number":"8.15.0","build_flavor":"default","build_type":"docker","build_hash":"1a77947f34deddb41af25e6f0ddb8e830159c179","build_date":"2024-08-05T10:05:34.233336849Z","build_snapshot":false,"lucene_version":"9.11.1","minimum_wire_compatibility_version":"7.17.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}"#;
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-elastic-product", "Elasticsearch".parse().unwrap());
        let info = node_info(&h, body).unwrap();
        assert_eq!(
            (info.major, info.minor, info.product.as_deref()),
            (8, 15, Some("Elasticsearch"))
        );
        assert!(node_info(&h, b"{}").unwrap_err().contains("version.number"));
    }

    #[test]
    fn config_checks() {
        let parse = |s: &str| toml_edit::de::from_str::<ElasticsearchConfig>(s);
        let ok = parse("endpoints = [\"http://localhost:9200\"]\nindex = \"logs-%Y\"").unwrap();
        assert!(ok.check().is_ok());
        let bad = parse(
            "endpoints = [\"localhost:9200\"]\nmode = \"data_stream\"\nindex = \"x\"\n\
             id_key = \"a\"\nid_from_content = true\nauth.strategy = \"bearer\"\nauth.token = \"t\"",
        )
        .unwrap();
        let fields: Vec<_> =
            bad.check().err().unwrap().into_iter().filter_map(|i| i.field).collect();
        assert_eq!(fields, ["endpoints", "index", "id_from_content", "auth.strategy"]);
        assert!(
            parse("endpoints = []\nendpiont = 1").unwrap_err().to_string().contains("endpiont")
        );
        assert!(parse("endpoints = [\"http://a\"]\nauth.strategy = \"basic\"\nauth.user = \"u\"\nauth.pasword = \"x\"").is_err());
    }
}
