//! Kibana's part of `weir setup`, on the APIs Kibana 8.x and 9.x document as current: the
//! Data Views API for the data view, and the saved objects import and export APIs for the
//! dashboards (the per-object saved objects API is deprecated since 8.7).
//!
//! The objects are those of `deploy/kibana/weir-dashboards.ndjson` (written by
//! `deploy/kibana/generate.py`), compiled in; its data view is created through the Data Views
//! API instead, with the title of the sinks' index patterns, so that its line is left out of
//! the import.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{NotReady, Outcome, answered, body_text, request, send, transient, wait_ready};
use crate::sinks::elasticsearch::ElasticsearchConfig;
use crate::sinks::util::http::{HttpClient, HttpRequest};

/// The saved objects, as shipped for manual import.
pub const NDJSON: &str = include_str!("../../deploy/kibana/weir-dashboards.ndjson");

/// The id of the data view every object reads.
pub const DATA_VIEW_ID: &str = "weir-logs";

/// What marks the dashboards of this NDJSON's content (in their description).
const MARKER: &str = "weir-objects:";

/// Kibana refuses writes without it (cross-site request forgery protection).
const XSRF: (&str, &str) = ("kbn-xsrf", "weir");

/// The shipped objects, each with its NDJSON line.
fn objects() -> Vec<(Value, &'static str)> {
    NDJSON
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| (serde_json::from_str(l).unwrap_or(Value::Null), l))
        .collect()
}

/// The marker of this content, read from the first dashboard's description.
fn marker() -> Option<String> {
    let start = NDJSON.find(MARKER)?;
    let hex: String =
        NDJSON[start + MARKER.len()..].chars().take_while(char::is_ascii_hexdigit).collect();
    Some(format!("{MARKER}{hex}"))
}

/// Waits for Kibana, then installs the data view and the dashboards; the report's lines.
pub async fn setup(
    url: &str,
    sink: &ElasticsearchConfig,
    patterns: &[String],
    limit: Duration,
) -> Result<Vec<String>, String> {
    let kb = HttpClient::new(
        vec![url.to_string()],
        sink.tls.as_ref(),
        sink.auth.as_ref(),
        Duration::from_secs(30),
    )?;
    let shown = kb.endpoints.url(0).to_string();
    let version = wait_for_kibana(&kb, limit).await?;
    let mut lines = vec![format!("Kibana {version} at {shown}")];
    let title = patterns.join(",");
    let o = ensure_data_view(&kb, &title).await?;
    lines.push(format!("Kibana data view {DATA_VIEW_ID} ({title}): {}", o.word()));
    let (o, count) = ensure_objects(&kb).await?;
    lines.push(format!(
        "Kibana dashboards, Lens visualizations and saved searches ({count} objects): {}",
        o.word()
    ));
    let public = std::env::var("KIBANA_PUBLIC_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| crate::redact::credentials(u.trim_end_matches('/')).into_owned())
        .unwrap_or(shown);
    for (o, _) in objects().iter().filter(|(o, _)| o["type"] == "dashboard") {
        lines.push(format!(
            "dashboard \"{}\": {public}/app/dashboards#/view/{}",
            o["attributes"]["title"].as_str().unwrap_or_default(),
            o["id"].as_str().unwrap_or_default()
        ));
    }
    Ok(lines)
}

/// Waits until `GET /api/status` answers 200 (Kibana answers 503 while it starts); its
/// version.
async fn wait_for_kibana(kb: &HttpClient, limit: Duration) -> Result<String, String> {
    let what = format!("Kibana at {}", kb.endpoints.url(0));
    wait_ready(&what, limit, || async {
        let r = request(kb, reqwest::Method::GET, "/api/status", None, &[])
            .await
            .map_err(NotReady::Retry)?;
        match r.status {
            200 => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                Ok(v["version"]["number"].as_str().unwrap_or("(version unknown)").to_string())
            }
            s if transient(s) => {
                Err(NotReady::Retry(format!("GET /api/status answered {s}: {}", body_text(&r))))
            }
            _ => Err(NotReady::Fatal(answered(kb, "GET", "/api/status", &r))),
        }
    })
    .await
}

/// The data view over the sinks' indices, through the Data Views API.
async fn ensure_data_view(kb: &HttpClient, title: &str) -> Result<Outcome, String> {
    // Durations are ECS nanoseconds; shown as milliseconds.
    let view = json!({
        "title": title,
        "name": "weir: model serving",
        "timeFieldName": "@timestamp",
        "fieldFormats": {"event.duration": {"id": "duration", "params": {
            "inputFormat": "nanoseconds", "outputFormat": "asMilliseconds", "outputPrecision": 1}}}
    });
    let path = format!("/api/data_views/data_view/{DATA_VIEW_ID}");
    let got = request(kb, reqwest::Method::GET, &path, None, &[]).await?;
    let (path, body, outcome) = match got.status {
        404 => {
            let mut create = view.clone();
            create["id"] = json!(DATA_VIEW_ID);
            let body = json!({"data_view": create, "override": false});
            ("/api/data_views/data_view".to_string(), body, Outcome::Created)
        }
        200 => {
            let have: Value = serde_json::from_slice(&got.body).unwrap_or(Value::Null);
            let same =
                ["title", "name", "timeFieldName"].iter().all(|k| have["data_view"][k] == view[k]);
            if same {
                return Ok(Outcome::Unchanged);
            }
            (path, json!({"data_view": view, "refresh_fields": true}), Outcome::Updated)
        }
        _ => return Err(answered(kb, "GET", &path, &got)),
    };
    let r = request(kb, reqwest::Method::POST, &path, Some(&body), &[XSRF]).await?;
    if r.status != 200 {
        return Err(answered(kb, "POST", &path, &r));
    }
    Ok(outcome)
}

/// Imports the dashboards and what they show unless Kibana has this content already (every
/// dashboard exported with this content's marker); the outcome and the number of objects.
async fn ensure_objects(kb: &HttpClient) -> Result<(Outcome, usize), String> {
    let all = objects();
    let imported: Vec<&(Value, &str)> =
        all.iter().filter(|(o, _)| o["type"] != "index-pattern").collect();
    let dashboards: Vec<Value> = imported
        .iter()
        .filter(|(o, _)| o["type"] == "dashboard")
        .map(|(o, _)| json!({"type": "dashboard", "id": o["id"]}))
        .collect();
    let present = exported_markers(kb, &dashboards).await?;
    let marker = marker().unwrap_or_default();
    if present.len() == dashboards.len() && present.iter().all(|d| d.contains(&marker)) {
        return Ok((Outcome::Unchanged, imported.len()));
    }
    let ndjson: String = imported.iter().map(|(_, line)| format!("{line}\n")).collect();
    import(kb, &ndjson).await?;
    let outcome = if present.is_empty() { Outcome::Created } else { Outcome::Updated };
    Ok((outcome, imported.len()))
}

/// The descriptions of those of `objects` Kibana has, through `POST
/// /api/saved_objects/_export` (Kibana answers 400 naming the missing ones when any is
/// missing: then none counts as present).
async fn exported_markers(kb: &HttpClient, objects: &[Value]) -> Result<Vec<String>, String> {
    let path = "/api/saved_objects/_export";
    let body =
        json!({"objects": objects, "includeReferencesDeep": false, "excludeExportDetails": true});
    let r = request(kb, reqwest::Method::POST, path, Some(&body), &[XSRF]).await?;
    match r.status {
        200 => Ok(String::from_utf8_lossy(&r.body)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|o| o["attributes"]["description"].as_str().map(str::to_string))
            .collect()),
        400 | 404 => Ok(Vec::new()),
        _ => Err(answered(kb, "POST", path, &r)),
    }
}

/// `POST /api/saved_objects/_import?overwrite=true` of `ndjson`, as the one file of a
/// multipart form (the API's only input). Written here rather than through reqwest's
/// `multipart` feature: one fixed part does not need its dependencies.
async fn import(kb: &HttpClient, ndjson: &str) -> Result<(), String> {
    let boundary = "weir-kibana-import-3f1c9a";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"weir-dashboards.ndjson\"\r\nContent-Type: application/ndjson\r\n\r\n{ndjson}\r\n--{boundary}--\r\n"
    );
    let content_type = HeaderValue::from_str(&format!("multipart/form-data; boundary={boundary}"))
        .map_err(|e| e.to_string())?;
    let path = "/api/saved_objects/_import?overwrite=true";
    let req = HttpRequest {
        method: reqwest::Method::POST,
        path: path.to_string(),
        headers: vec![
            (CONTENT_TYPE, content_type),
            (HeaderName::from_static(XSRF.0), HeaderValue::from_static(XSRF.1)),
        ],
        body: Bytes::from(body),
    };
    let r = send(kb, req).await?;
    if r.status != 200 {
        return Err(answered(kb, "POST", path, &r));
    }
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if v["success"] != true {
        let errors: Vec<String> = v["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{}/{}: {}", e["type"], e["id"], e["error"]))
            .collect();
        return Err(format!(
            "POST {}{path} did not import everything: {}",
            kb.endpoints.url(0),
            if errors.is_empty() { body_text(&r) } else { errors.join("; ") }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_objects_read_the_data_view_and_carry_the_marker() {
        let all = objects();
        assert!(all.iter().all(|(o, _)| o.is_object()), "every line is a JSON object");
        let marker = marker().unwrap();
        assert!(marker.len() > MARKER.len() + 8, "{marker}");
        let ids: Vec<&str> = all.iter().filter_map(|(o, _)| o["id"].as_str()).collect();
        for (o, _) in &all {
            for r in o["references"].as_array().unwrap() {
                let id = r["id"].as_str().unwrap();
                assert!(ids.contains(&id), "{} refers to {id}, which is not shipped", o["id"]);
                if r["type"] == "index-pattern" {
                    assert_eq!(id, DATA_VIEW_ID);
                }
            }
            if o["type"] == "dashboard" {
                let d = o["attributes"]["description"].as_str().unwrap();
                assert!(d.contains(&marker), "{d}");
            }
        }
        let kinds: std::collections::BTreeSet<&str> =
            all.iter().filter_map(|(o, _)| o["type"].as_str()).collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["dashboard", "index-pattern", "lens", "search"]
        );
    }
}
