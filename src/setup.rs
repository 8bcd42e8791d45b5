//! `weir setup --config FILE`: installs what Elasticsearch and Kibana need for the pipeline's
//! `elasticsearch` sinks, and reports, object by object, what it created, updated or left as
//! it was.
//!
//! For each `elasticsearch` sink:
//! - an ILM policy `weir-<sink id>` (`PUT _ilm/policy/...`): data streams roll over at 50 GB
//!   or one day and are deleted after 30 days; time-named indices are deleted after 30 days;
//! - a composable index template `weir-<sink id>` (`PUT _index_template/...`) over the
//!   sink's indices (`logs-<dataset>-*` for data streams, the `index` template with its
//!   fields and dates as `*` otherwise) at priority 200, above Elasticsearch's built-in
//!   `logs` template, with Elastic Common Schema mappings for the fields weir writes
//!   (`@timestamp`, `message`, `log.level`, `host.name`, `service.name`, HTTP and model fields)
//!   and other strings as keywords.
//!
//! In Kibana (`--kibana URL`, or `KIBANA_ENDPOINT`), through the saved-objects API: a data view
//! over the sink's indices and a "Model serving" dashboard with request rate, error rate,
//! latency percentiles and top errors. Grafana is provisioned from files instead
//! (`deploy/grafana/`): data sources for Loki and Prometheus and a dashboard of weir's metrics.
//!
//! Invariant: setup is idempotent. Every object carries a `weir` hash of its desired content
//! (`_meta.weir_hash` in Elasticsearch, the description in Kibana); an object whose hash
//! matches is left alone, so a second run changes nothing and says so.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use crate::sinks::SinkConfig;
use crate::sinks::elasticsearch::{ElasticsearchConfig, Mode};
use crate::sinks::util::http::{HttpClient, HttpRequest, HttpResponse};

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

/// `weir setup`: returns the exit code.
pub async fn run(paths: &[PathBuf], kibana: Option<String>) -> i32 {
    let config = match crate::app::load(paths) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                println!("error: {e}");
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
        println!("nothing to set up: the pipeline has no elasticsearch sink");
        return 0;
    }
    let kibana = kibana.or_else(|| std::env::var("KIBANA_ENDPOINT").ok()).filter(|k| !k.is_empty());
    let mut failed = false;
    for (id, sink) in sinks {
        match setup_sink(id, sink, kibana.as_deref()).await {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
            }
            Err(e) => {
                println!("error: sinks.{id}: {e}");
                failed = true;
            }
        }
    }
    if failed { 1 } else { 0 }
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
            "event": {"properties": {"duration": {"type": "long"}, "duration_ms": {"type": "long"}}},
            "model": {"properties": {"name": kw(), "version": kw()}},
            "error": {"properties": {"message": {"type": "text"}, "type": kw()}},
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
    Sha1::digest(v.to_string().as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The ILM policy and index template of a sink, each with its `_meta.weir_hash`.
pub fn desired(id: &str, sink: &ElasticsearchConfig) -> (String, Value, String, Value) {
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
        "priority": 200,
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
    let req = HttpRequest {
        method,
        path: path.to_string(),
        headers,
        body: body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string())),
    };
    let i = client.endpoints.pick();
    client.send(i, &req).await.map_err(|e| format!("{path}: {e}"))
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
        s => return Err(format!("GET {path} answered {s}: {}", body_text(&got))),
    };
    let put = request(client, reqwest::Method::PUT, path, Some(desired), &[]).await?;
    if !(200..300).contains(&put.status) {
        return Err(format!("PUT {path} answered {}: {}", put.status, body_text(&put)));
    }
    Ok(outcome)
}

async fn setup_sink(
    id: &str,
    sink: &ElasticsearchConfig,
    kibana: Option<&str>,
) -> Result<Vec<String>, String> {
    let client = sink.client()?;
    let mut lines = Vec::new();
    let root = request(&client, reqwest::Method::GET, "/", None, &[]).await?;
    if root.status != 200 {
        return Err(format!("GET / answered {}: {}", root.status, body_text(&root)));
    }
    let info = crate::sinks::elasticsearch::node_info(&root.headers, &root.body)?;
    lines.push(format!(
        "sinks.{id}: Elasticsearch {} at {}",
        info.version,
        client.endpoints.url(0)
    ));
    let (policy_name, policy, template_name, template) = desired(id, sink);
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
    lines.push(format!(
        "sinks.{id}: index template {template_name} for {}: {}",
        index_pattern(sink),
        o.word()
    ));
    match kibana {
        None => {
            lines.push(format!("sinks.{id}: Kibana skipped (give --kibana URL or KIBANA_ENDPOINT)"))
        }
        Some(url) => {
            let kb = HttpClient::new(
                vec![url.to_string()],
                sink.tls.as_ref(),
                sink.auth.as_ref(),
                Duration::from_secs(30),
            )?;
            for (kind, obj_id, title, attributes, references) in kibana_objects(id, sink) {
                let o = ensure_kibana(&kb, kind, &obj_id, attributes, references).await?;
                lines.push(format!("sinks.{id}: Kibana {kind} \"{title}\": {}", o.word()));
            }
        }
    }
    Ok(lines)
}

type KibanaObject = (&'static str, String, String, Value, Value);

/// The data view and the dashboard with its visualizations.
pub fn kibana_objects(id: &str, sink: &ElasticsearchConfig) -> Vec<KibanaObject> {
    let view_id = format!("weir-{id}");
    let pattern = index_pattern(sink);
    let search = |query: &str| {
        json!({"searchSourceJSON": json!({
            "query": {"query": query, "language": "kuery"},
            "filter": [],
            "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"
        }).to_string()})
    };
    let view_ref = json!([{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": view_id}]);
    let vis = |title: &str, kind: &str, aggs: Value, params: Value, query: &str| {
        json!({
            "title": title,
            "visState": json!({"title": title, "type": kind, "aggs": aggs, "params": params}).to_string(),
            "uiStateJSON": "{}",
            "description": "",
            "kibanaSavedObjectMeta": search(query)
        })
    };
    let histogram = json!({"id": "2", "enabled": true, "type": "date_histogram", "schema": "segment",
        "params": {"field": "@timestamp", "interval": "auto", "min_doc_count": 1}});
    let count =
        json!({"id": "1", "enabled": true, "type": "count", "schema": "metric", "params": {}});
    let line = json!({"type": "line", "addLegend": true, "legendPosition": "right"});
    let visualizations = [
        (
            format!("weir-{id}-request-rate"),
            "Model serving: request rate",
            vis(
                "Model serving: request rate",
                "line",
                json!([count, histogram]),
                line.clone(),
                "http.request.method:*",
            ),
        ),
        (
            format!("weir-{id}-error-rate"),
            "Model serving: error rate",
            vis(
                "Model serving: error rate",
                "line",
                json!([count, histogram]),
                line.clone(),
                "http.response.status_code >= 500 or log.level:(error or ERROR or critical or CRITICAL)",
            ),
        ),
        (
            format!("weir-{id}-latency"),
            "Model serving: latency percentiles",
            vis(
                "Model serving: latency percentiles",
                "line",
                json!([{"id": "1", "enabled": true, "type": "percentiles", "schema": "metric",
                     "params": {"field": "event.duration_ms", "percents": [50, 95, 99]}}, histogram]),
                line,
                "event.duration_ms:*",
            ),
        ),
        (
            format!("weir-{id}-top-errors"),
            "Model serving: top errors",
            vis(
                "Model serving: top errors",
                "table",
                json!([count, {"id": "3", "enabled": true, "type": "terms", "schema": "bucket",
                            "params": {"field": "log.logger", "size": 10, "order": "desc", "orderBy": "1"}}]),
                json!({"perPage": 10}),
                "log.level:(error or ERROR or critical or CRITICAL)",
            ),
        ),
    ];
    let mut objects: Vec<KibanaObject> = vec![(
        "index-pattern",
        view_id.clone(),
        pattern.clone(),
        json!({"title": pattern, "timeFieldName": "@timestamp"}),
        json!([]),
    )];
    let mut panels = Vec::new();
    let mut dash_refs = Vec::new();
    for (i, (vid, title, attrs)) in visualizations.into_iter().enumerate() {
        panels.push(json!({
            "panelIndex": format!("{}", i + 1),
            "gridData": {"x": (i % 2) * 24, "y": (i / 2) * 15, "w": 24, "h": 15, "i": format!("{}", i + 1)},
            "version": "8.15.0",
            "panelRefName": format!("panel_{i}"),
            "embeddableConfig": {}
        }));
        dash_refs.push(json!({"name": format!("panel_{i}"), "type": "visualization", "id": vid}));
        objects.push(("visualization", vid, title.to_string(), attrs, view_ref.clone()));
    }
    objects.push((
        "dashboard",
        format!("weir-{id}-model-serving"),
        "Model serving".to_string(),
        json!({
            "title": "Model serving",
            "description": "Request rate, error rate, latency percentiles and top errors of the model servers weir ships.",
            "panelsJSON": Value::Array(panels).to_string(),
            "optionsJSON": "{\"useMargins\":true}",
            "timeRestore": false,
            "kibanaSavedObjectMeta": {"searchSourceJSON": "{\"query\":{\"query\":\"\",\"language\":\"kuery\"},\"filter\":[]}"}
        }),
        Value::Array(dash_refs),
    ));
    objects
}

/// Creates or updates one saved object; its attributes carry a hash in a `weir:` marker of
/// `description` (data views, which have none, are compared by attributes).
async fn ensure_kibana(
    kb: &HttpClient,
    kind: &str,
    id: &str,
    mut attributes: Value,
    references: Value,
) -> Result<Outcome, String> {
    let h = hash(&json!([attributes, references]));
    if attributes.get("description").is_some() {
        let d = attributes["description"].as_str().unwrap_or_default().to_string();
        attributes["description"] = json!(format!("{d} (weir:{h})").trim().to_string());
    }
    let path = format!("/api/saved_objects/{kind}/{id}");
    let got = request(kb, reqwest::Method::GET, &path, None, &[]).await?;
    let body = json!({"attributes": attributes, "references": references});
    let xsrf = [("kbn-xsrf", "weir")];
    let (method, outcome) = match got.status {
        404 => (reqwest::Method::POST, Outcome::Created),
        200 => {
            let v: Value = serde_json::from_slice(&got.body).unwrap_or(Value::Null);
            let same = if attributes.get("description").is_some() {
                v.pointer("/attributes/description")
                    .and_then(Value::as_str)
                    .is_some_and(|d| d.contains(&format!("weir:{h}")))
            } else {
                attributes
                    .as_object()
                    .is_some_and(|a| a.iter().all(|(k, val)| v["attributes"].get(k) == Some(val)))
            };
            if same {
                return Ok(Outcome::Unchanged);
            }
            (reqwest::Method::PUT, Outcome::Updated)
        }
        s => return Err(format!("Kibana GET {path} answered {s}: {}", body_text(&got))),
    };
    let resp = request(kb, method, &path, Some(&body), &xsrf).await?;
    if !(200..300).contains(&resp.status) {
        return Err(format!("Kibana {path} answered {}: {}", resp.status, body_text(&resp)));
    }
    Ok(outcome)
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
        let (p1, policy, t1, template) = desired("es", &s);
        assert_eq!((p1.as_str(), t1.as_str()), ("weir-es", "weir-es"));
        assert_eq!(desired("es", &s).3, template, "setup must be deterministic");
        assert!(template.pointer("/_meta/weir_hash").is_some());
        assert_eq!(template["data_stream"], json!({}));
        assert_eq!(
            template.pointer("/template/mappings/properties/@timestamp/type"),
            Some(&json!("date"))
        );
        assert!(policy.pointer("/policy/phases/hot/actions/rollover").is_some());
        let objects = kibana_objects("es", &s);
        assert_eq!(
            objects.iter().map(|o| o.0).collect::<Vec<_>>(),
            [
                "index-pattern",
                "visualization",
                "visualization",
                "visualization",
                "visualization",
                "dashboard"
            ]
        );
    }
}
