//! `weir setup --config FILE`: installs what Elasticsearch and Kibana need for the pipeline's
//! `elasticsearch` sinks, and reports, object by object, what it created, updated or left as
//! it was.
//!
//! It first waits for each peer, with visible progress, for at most `WEIR_SETUP_WAIT_SECS`
//! (default 180; 0 tries once): Elasticsearch until `GET /` answers, Kibana until `GET
//! /api/status` answers 200. A refused connection, a timeout, 429 and 5xx are waited out;
//! any other answer is an error at once. Every error names the request, the endpoint and the
//! status.
//!
//! For each `elasticsearch` sink:
//! - an ILM policy `weir-<sink id>` (`PUT _ilm/policy/...`): data streams roll over at 50 GB
//!   or one day and are deleted after 30 days; time-named indices are deleted after 30 days;
//! - a composable index template `weir-<sink id>` (`PUT _index_template/...`) over the
//!   sink's indices (`logs-<dataset>-*` for data streams, the `index` template with its
//!   fields and dates as `*` otherwise). For a data stream it takes the place of
//!   Elasticsearch's built-in `logs` template (priority 100) for that dataset as Fleet's
//!   integrations do, at priority 200, and keeps what that template gives: it is composed of
//!   the same component templates where the cluster has them (`logs@mappings`,
//!   `logs@settings`, `logs@custom`, `ecs@mappings`; 8.11 and later), so the ECS dynamic
//!   mappings and the default ingest pipeline still apply. Its own mappings name the fields
//!   weir writes (ECS `event.duration` in nanoseconds, `error.message` searchable and, as
//!   `error.message.keyword`, aggregatable) and map other strings as keywords.
//!
//! In Kibana (`--kibana URL`, or `KIBANA_ENDPOINT`; 8.9 or later, or 9.x) through its current
//! APIs: the data view `weir-logs` over every sink's indices through the Data Views API
//! (`/api/data_views/data_view`), then the dashboards "Model serving", "Model drift" and
//! "weir delivery", with their Lens visualizations and saved searches, through the saved
//! objects import API (`POST /api/saved_objects/_import`) of
//! `deploy/kibana/weir-dashboards.ndjson`, the same file users can import by hand. At the
//! end it prints each dashboard's URL (on `KIBANA_PUBLIC_URL` when Kibana is reached by
//! another name than the browser's). Grafana is provisioned from files instead
//! (`deploy/grafana/`).
//!
//! Invariant: setup is idempotent. Every Elasticsearch object carries a `weir` hash of its
//! desired content (`_meta.weir_hash`), the dashboards the marker of the NDJSON's content;
//! an object found with the same hash is left alone, so a second run changes nothing and
//! says so.

mod kibana;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use crate::sinks::SinkConfig;
use crate::sinks::elasticsearch::{ElasticsearchConfig, Mode};
use crate::sinks::util::http::{HttpClient, HttpRequest, HttpResponse, SendError};

pub use kibana::{DATA_VIEW_ID, NDJSON};

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        }
    }
}

/// How long setup waits for a peer to be ready, from `WEIR_SETUP_WAIT_SECS`.
fn wait_limit() -> Duration {
    let secs = std::env::var("WEIR_SETUP_WAIT_SECS").ok().and_then(|s| s.trim().parse().ok());
    Duration::from_secs(secs.unwrap_or(180))
}

/// Why a readiness probe failed: worth waiting out, or not.
enum NotReady {
    Retry(String),
    Fatal(String),
}

/// Whether an answer means "not up yet": 429 and 5xx (a starting Kibana answers 503).
fn transient(status: u16) -> bool {
    status == 429 || status >= 500
}

/// Runs `probe` until it succeeds, printing what it waits for, for at most `limit`.
async fn wait_ready<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, NotReady>>,
{
    let start = Instant::now();
    let mut waited = false;
    loop {
        match probe().await {
            Ok(v) => {
                if waited {
                    crate::say!("{what} is ready after {}s", start.elapsed().as_secs());
                }
                return Ok(v);
            }
            Err(NotReady::Fatal(e)) => return Err(e),
            Err(NotReady::Retry(e)) => {
                let elapsed = start.elapsed();
                if elapsed >= limit {
                    return Err(format!(
                        "{what} was not ready within {}s (WEIR_SETUP_WAIT_SECS): {e}",
                        limit.as_secs()
                    ));
                }
                crate::say!(
                    "waiting for {what}: {e} ({}s of at most {}s)",
                    elapsed.as_secs(),
                    limit.as_secs()
                );
                waited = true;
                tokio::time::sleep(Duration::from_secs(3).min(limit - elapsed)).await;
            }
        }
    }
}

/// `weir setup`: returns the exit code.
pub async fn run(paths: &[PathBuf], kibana: Option<String>) -> i32 {
    let config = match crate::app::load(paths) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                crate::say_err!("error: {e}");
            }
            return 78;
        }
    };
    let sinks: Vec<(&String, &ElasticsearchConfig)> = config
        .sinks
        .iter()
        .filter_map(|(id, def)| match &def.inner {
            SinkConfig::Elasticsearch(c) => Some((id, c.as_ref())),
            _ => None,
        })
        .collect();
    if sinks.is_empty() {
        crate::say!("nothing to set up: the pipeline has no elasticsearch sink");
        return 0;
    }
    let kibana = kibana.or_else(|| std::env::var("KIBANA_ENDPOINT").ok()).filter(|k| !k.is_empty());
    let limit = wait_limit();
    let mut failed = false;
    for (id, sink) in &sinks {
        match setup_sink(id, sink, limit).await {
            Ok(lines) => lines.iter().for_each(|l| crate::say!("{l}")),
            Err(e) => {
                crate::say_err!("error: sinks.{id}: {e}");
                failed = true;
            }
        }
    }
    let Some(url) = kibana else {
        crate::say!("Kibana skipped (give --kibana URL or KIBANA_ENDPOINT)");
        return i32::from(failed);
    };
    let mut patterns: Vec<String> = sinks.iter().map(|(_, s)| index_pattern(s)).collect();
    patterns.dedup();
    // Kibana is reached with the first sink's TLS settings and credentials (the stack's).
    let (_, first) = sinks[0];
    match kibana::setup(&url, first, &patterns, limit).await {
        Ok(lines) => lines.iter().for_each(|l| crate::say!("{l}")),
        Err(e) => {
            crate::say_err!("error: Kibana: {e}");
            failed = true;
        }
    }
    i32::from(failed)
}

/// The index pattern a sink writes to.
pub fn index_pattern(sink: &ElasticsearchConfig) -> String {
    match sink.mode {
        Mode::DataStream => {
            let ds = sink.data_stream.clone().unwrap_or_default();
            let part = |s: &str| {
                if s.contains("{{") || s.contains('%') { "*".to_string() } else { s.to_string() }
            };
            format!("{}-{}-*", part(&ds.kind), part(&ds.dataset))
        }
        Mode::Bulk => {
            // Fields and strftime sequences become `*`; runs of `*` collapse.
            let mut out = String::new();
            let mut rest = sink.index_template();
            while !rest.is_empty() {
                if let Some(after) = rest.strip_prefix("{{") {
                    rest = after.split_once("}}").map_or("", |(_, r)| r);
                    out.push('*');
                } else if rest.starts_with('%') {
                    rest = rest.get(2..).unwrap_or("");
                    out.push('*');
                } else {
                    let c = rest.chars().next().unwrap_or('*');
                    out.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
            let mut collapsed = String::new();
            for c in out.chars() {
                if !(c == '*' && collapsed.ends_with('*')) {
                    collapsed.push(c);
                }
            }
            // "*.*.*" after a date: one star is enough.
            while collapsed.contains("*.*") {
                collapsed = collapsed.replace("*.*", "*");
            }
            collapsed
        }
    }
}

/// The ECS mappings of the fields weir writes.
pub fn ecs_mappings() -> Value {
    let kw = || json!({"type": "keyword", "ignore_above": 1024});
    json!({
        "dynamic_templates": [
            {"strings_as_keyword": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}}
        ],
        "properties": {
            "@timestamp": {"type": "date"},
            "message": {"type": "text"},
            "log": {"properties": {"level": kw(), "logger": kw(), "file": {"properties": {"path": kw()}}}},
            "host": {"properties": {"name": kw(), "hostname": kw()}},
            "service": {"properties": {"name": kw(), "version": kw()}},
            "deployment": {"properties": {"environment": kw()}},
            "client": {"properties": {"ip": {"type": "ip"}, "port": {"type": "long"}}},
            "http": {"properties": {
                "request": {"properties": {"method": kw(), "id": kw()}},
                "response": {"properties": {"status_code": {"type": "long"}}}
            }},
            // ECS: nanoseconds.
            "event": {"properties": {"duration": {"type": "long"}, "action": kw(), "outcome": kw(), "dataset": kw()}},
            "model": {"properties": {"name": kw(), "version": kw()}},
            "error": {"properties": {
                "message": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}},
                "type": kw(),
                "stack_trace": {"type": "text"}
            }},
            "process": {"properties": {"name": kw(), "pid": {"type": "long"}}},
            "data_stream": {"properties": {
                "type": {"type": "constant_keyword"},
                "dataset": {"type": "constant_keyword"},
                "namespace": {"type": "constant_keyword"}
            }}
        }
    })
}

fn hash(v: &Value) -> String {
    crate::hex::lower_hex(&Sha1::digest(v.to_string().as_bytes())[..8])
}

/// The component templates of Elasticsearch's built-in `logs` template, in its order: a
/// template that takes its place for a dataset is composed of those the cluster has.
pub const LOGS_COMPONENTS: [&str; 4] =
    ["logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"];

/// The ILM policy and index template of a sink, each with its `_meta.weir_hash`;
/// `components` are the component templates to compose the index template of.
pub fn desired(
    id: &str,
    sink: &ElasticsearchConfig,
    components: &[String],
) -> (String, Value, String, Value) {
    let policy_name = format!("weir-{id}");
    let hot = if sink.mode == Mode::DataStream {
        json!({"actions": {"rollover": {"max_primary_shard_size": "50gb", "max_age": "1d"}}})
    } else {
        json!({"actions": {}})
    };
    let mut policy = json!({"policy": {
        "phases": {"hot": hot, "delete": {"min_age": "30d", "actions": {"delete": {}}}},
        "_meta": {"managed_by": "weir"}
    }});
    let h = hash(&policy);
    policy["policy"]["_meta"]["weir_hash"] = json!(h);

    let mut template = json!({
        "index_patterns": [index_pattern(sink)],
        // Above the built-in `logs` template (100), as Fleet's dataset templates are.
        "priority": 200,
        "composed_of": components,
        "template": {
            "settings": {"index.lifecycle.name": policy_name},
            "mappings": ecs_mappings()
        },
        "_meta": {"managed_by": "weir", "sink": id}
    });
    if sink.mode == Mode::DataStream {
        template["data_stream"] = json!({});
    }
    let h = hash(&template);
    template["_meta"]["weir_hash"] = json!(h);
    (policy_name.clone(), policy, policy_name, template)
}

/// One request to the first endpoint of `client`; an error names the request and endpoint.
async fn request(
    client: &HttpClient,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    extra: &[(&'static str, &'static str)],
) -> Result<HttpResponse, String> {
    let mut headers = Vec::new();
    if body.is_some() {
        headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    }
    for (k, v) in extra {
        headers.push((HeaderName::from_static(k), HeaderValue::from_static(v)));
    }
    let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    send(client, HttpRequest { method, path: path.to_string(), headers, body }).await
}

async fn send(client: &HttpClient, req: HttpRequest) -> Result<HttpResponse, String> {
    client.send(0, &req).await.map_err(|e| describe(client, &req, &e))
}

/// "GET http://es:9200/_ilm/policy/x: cannot connect: ...".
fn describe(client: &HttpClient, req: &HttpRequest, e: &SendError) -> String {
    format!("{} {}{}: {e}", req.method, client.endpoints.url(0), req.path)
}

/// "PUT http://es:9200/_index_template/x answered 400: {...}".
fn answered(client: &HttpClient, method: &str, path: &str, r: &HttpResponse) -> String {
    format!("{method} {}{path} answered {}: {}", client.endpoints.url(0), r.status, body_text(r))
}

fn body_text(r: &HttpResponse) -> String {
    String::from_utf8_lossy(&r.body[..r.body.len().min(500)]).trim().to_string()
}

/// Puts `desired` at `path` unless what is there carries the same hash (read at `pointer` of
/// the GET answer).
async fn ensure_es(
    client: &HttpClient,
    path: &str,
    pointer: &str,
    desired: &Value,
    hash_pointer: &str,
) -> Result<Outcome, String> {
    let want = desired.pointer(hash_pointer).cloned();
    let got = request(client, reqwest::Method::GET, path, None, &[]).await?;
    let outcome = match got.status {
        404 => Outcome::Created,
        200 => {
            let v: Value = serde_json::from_slice(&got.body).unwrap_or(Value::Null);
            let have = v.pointer(pointer).cloned();
            if have.is_some() && have == want {
                return Ok(Outcome::Unchanged);
            }
            Outcome::Updated
        }
        _ => return Err(answered(client, "GET", path, &got)),
    };
    let put = request(client, reqwest::Method::PUT, path, Some(desired), &[]).await?;
    if !(200..300).contains(&put.status) {
        return Err(answered(client, "PUT", path, &put));
    }
    Ok(outcome)
}

/// Waits until Elasticsearch answers `GET /`; its version.
async fn wait_for_elasticsearch(client: &HttpClient, limit: Duration) -> Result<String, String> {
    let what = format!("Elasticsearch at {}", client.endpoints.url(0));
    wait_ready(&what, limit, || async {
        let root =
            request(client, reqwest::Method::GET, "/", None, &[]).await.map_err(NotReady::Retry)?;
        match root.status {
            200 => crate::sinks::elasticsearch::node_info(&root.headers, &root.body)
                .map(|i| i.version)
                .map_err(NotReady::Fatal),
            s if transient(s) => Err(NotReady::Retry(format!("GET / answered {s}"))),
            _ => Err(NotReady::Fatal(answered(client, "GET", "/", &root))),
        }
    })
    .await
}

/// Those of [`LOGS_COMPONENTS`] the cluster has.
async fn logs_components(client: &HttpClient) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for name in LOGS_COMPONENTS {
        let path = format!("/_component_template/{name}");
        let r = request(client, reqwest::Method::GET, &path, None, &[]).await?;
        match r.status {
            200 => found.push(name.to_string()),
            404 => {}
            _ => return Err(answered(client, "GET", &path, &r)),
        }
    }
    Ok(found)
}

async fn setup_sink(
    id: &str,
    sink: &ElasticsearchConfig,
    limit: Duration,
) -> Result<Vec<String>, String> {
    let client = sink.client()?;
    let mut lines = Vec::new();
    let version = wait_for_elasticsearch(&client, limit).await?;
    lines.push(format!("sinks.{id}: Elasticsearch {version} at {}", client.endpoints.url(0)));
    let components =
        if sink.mode == Mode::DataStream { logs_components(&client).await? } else { Vec::new() };
    let (policy_name, policy, template_name, template) = desired(id, sink, &components);
    let o = ensure_es(
        &client,
        &format!("/_ilm/policy/{policy_name}"),
        &format!("/{policy_name}/policy/_meta/weir_hash"),
        &policy,
        "/policy/_meta/weir_hash",
    )
    .await?;
    lines.push(format!("sinks.{id}: ILM policy {policy_name}: {}", o.word()));
    let o = ensure_es(
        &client,
        &format!("/_index_template/{template_name}"),
        "/index_templates/0/index_template/_meta/weir_hash",
        &template,
        "/_meta/weir_hash",
    )
    .await?;
    let composed = if components.is_empty() {
        String::new()
    } else {
        format!(" (composed of {})", components.join(", "))
    };
    lines.push(format!(
        "sinks.{id}: index template {template_name} for {}{composed}: {}",
        index_pattern(sink),
        o.word()
    ));
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(toml: &str) -> ElasticsearchConfig {
        toml_edit::de::from_str(toml).unwrap()
    }

    #[test]
    fn index_patterns_from_sink_settings() {
        assert_eq!(
            index_pattern(&sink("endpoints = []\nindex = \"logs-model-%Y.%m.%d\"")),
            "logs-model-*"
        );
        assert_eq!(
            index_pattern(&sink("endpoints = []\nindex = \"weir-{{ service.name }}-%Y\"")),
            "weir-*-*"
        );
        assert_eq!(index_pattern(&sink("endpoints = []")), "weir-*");
        assert_eq!(
            index_pattern(&sink(
                "endpoints = []\nmode = \"data_stream\"\ndata_stream.dataset = \"model_serving\""
            )),
            "logs-model_serving-*"
        );
    }

    #[test]
    fn desired_objects_are_stable_and_hashed() {
        let s = sink("endpoints = []\nmode = \"data_stream\"");
        let components = vec!["logs@mappings".to_string(), "ecs@mappings".to_string()];
        let (p1, policy, t1, template) = desired("es", &s, &components);
        assert_eq!((p1.as_str(), t1.as_str()), ("weir-es", "weir-es"));
        assert_eq!(desired("es", &s, &components).3, template, "setup must be deterministic");
        assert!(template.pointer("/_meta/weir_hash").is_some());
        assert_eq!(template["data_stream"], json!({}));
        assert_eq!(template["composed_of"], json!(["logs@mappings", "ecs@mappings"]));
        assert_eq!(
            template.pointer("/template/mappings/properties/@timestamp/type"),
            Some(&json!("date"))
        );
        let event = &template["template"]["mappings"]["properties"]["event"]["properties"];
        assert_eq!(event["duration"]["type"], "long");
        assert!(event.get("duration_ms").is_none(), "ECS has no event.duration_ms");
        assert!(policy.pointer("/policy/phases/hot/actions/rollover").is_some());
        assert_ne!(desired("es", &s, &[]).3["_meta"]["weir_hash"], template["_meta"]["weir_hash"]);
    }
}
