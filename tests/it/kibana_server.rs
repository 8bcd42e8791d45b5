//! A Kibana stand-in for the APIs `weir setup` uses, written from Kibana's API reference
//! (https://www.elastic.co/docs/api/doc/kibana): `GET /api/status` (503 while "starting",
//! then 200 with `version.number` and `status.overall.level`); the Data Views API, `GET
//! /api/data_views/data_view/{id}` (404 when absent, else `{"data_view": {...}}`), `POST
//! /api/data_views/data_view` (create: body `{"data_view": {"title", "id", ...}, "override"}`,
//! `title` required, 400 on a duplicate id) and `POST /api/data_views/data_view/{id}`
//! (partial update, 404 when absent); and the saved objects `POST
//! /api/saved_objects/_import` (multipart/form-data with one NDJSON `file` part;
//! `overwrite`; each object's references must exist in the file or in Kibana, else a
//! `missing_references` error and `success: false`; an existing object without `overwrite` is
//! a `conflict`) and `POST /api/saved_objects/_export` (`objects` by type and id; NDJSON of
//! those, 400 naming them when any is missing). Writes without the `kbn-xsrf` header are
//! refused with 400, as Kibana does; the per-object saved objects API (deprecated in 8.7) is
//! not served. Every request is recorded.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

use crate::stand_in::StandIn;

/// One request as Kibana saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub xsrf: bool,
    pub content_type: String,
    pub body: Bytes,
}

#[derive(Debug, Default)]
pub struct KibanaState {
    /// Data views by id.
    pub data_views: BTreeMap<String, Value>,
    /// (type, id) -> the object as imported.
    pub objects: BTreeMap<(String, String), Value>,
    /// Answers 503 "starting" to this many status requests first.
    pub starting: usize,
    pub requests: Vec<Seen>,
    pub writes: usize,
}

/// A running stand-in on a loopback port; stops when dropped.
pub type KibanaServer = StandIn<KibanaState>;

impl KibanaServer {
    pub fn start() -> Self {
        Self::start_with(KibanaState::default())
    }

    pub fn start_with(state: KibanaState) -> Self {
        StandIn::serve(state, handle)
    }
}

type Resp = Response<Full<Bytes>>;

fn reply(status: u16, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", "application/json; charset=utf-8".parse().unwrap());
    r
}

fn error(status: u16, error: &str, message: String) -> Resp {
    reply(status, json!({"statusCode": status, "error": error, "message": message}))
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<KibanaState>>,
) -> Result<Resp, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let header = |k: &str| {
        parts.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
    };
    let method = parts.method.as_str().to_string();
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    st.requests.push(Seen {
        method: method.clone(),
        target: parts.uri.to_string(),
        xsrf: parts.headers.contains_key("kbn-xsrf"),
        content_type: header("content-type"),
        body: body.clone(),
    });
    if method != "GET" && !parts.headers.contains_key("kbn-xsrf") {
        return Ok(error(400, "Bad Request", "Request must contain a kbn-xsrf header.".into()));
    }
    let query = parts.uri.query().unwrap_or_default().to_string();
    let segs: Vec<&str> = parts.uri.path().trim_matches('/').split('/').collect();
    Ok(match (method.as_str(), segs.as_slice()) {
        ("GET", ["api", "status"]) => status(&mut st),
        ("GET", ["api", "data_views", "data_view", id]) => match st.data_views.get(*id) {
            Some(v) => reply(200, json!({"data_view": v})),
            None => error(404, "Not Found", format!("Saved object [index-pattern/{id}] not found")),
        },
        ("POST", ["api", "data_views", "data_view"]) => create_view(&mut st, &body),
        ("POST", ["api", "data_views", "data_view", id]) => update_view(&mut st, id, &body),
        ("POST", ["api", "saved_objects", "_import"]) => {
            import(&mut st, &header("content-type"), &body, query.contains("overwrite=true"))
        }
        ("POST", ["api", "saved_objects", "_export"]) => export(&st, &body),
        _ => error(404, "Not Found", "Not Found".into()),
    })
}

fn status(st: &mut KibanaState) -> Resp {
    if st.starting > 0 {
        st.starting -= 1;
        return reply(
            503,
            json!({"status": {"overall": {"level": "unavailable", "summary": "Kibana is starting"}}}),
        );
    }
    reply(
        200,
        json!({"name": "kibana", "version": {"number": "8.15.0", "build_flavor": "default"},
               "status": {"overall": {"level": "available", "summary": "All services are available"}}}),
    )
}

fn create_view(st: &mut KibanaState, body: &[u8]) -> Resp {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(400, "Bad Request", "[request body]: expected an object".into());
    };
    let view = &v["data_view"];
    if !view["title"].is_string() {
        return error(
            400,
            "Bad Request",
            "[request body.data_view.title]: expected value of type [string]".into(),
        );
    }
    let id = view["id"].as_str().unwrap_or("generated-id").to_string();
    if st.data_views.contains_key(&id) && v["override"] != true {
        return error(400, "Bad Request", format!("Duplicate data view: {id}"));
    }
    st.writes += 1;
    let mut stored = view.clone();
    stored["id"] = json!(id);
    st.data_views.insert(id, stored.clone());
    reply(200, json!({"data_view": stored}))
}

fn update_view(st: &mut KibanaState, id: &str, body: &[u8]) -> Resp {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(400, "Bad Request", "[request body]: expected an object".into());
    };
    let Some(stored) = st.data_views.get_mut(id) else {
        return error(404, "Not Found", format!("Saved object [index-pattern/{id}] not found"));
    };
    for (k, val) in v["data_view"].as_object().into_iter().flatten() {
        stored[k] = val.clone();
    }
    let out = stored.clone();
    st.writes += 1;
    reply(200, json!({"data_view": out}))
}

/// The content of the multipart part named `file`.
fn file_part<'a>(content_type: &str, body: &'a str) -> Option<&'a str> {
    let boundary = content_type.split("boundary=").nth(1)?.trim_matches('"');
    let delimiter = format!("--{boundary}");
    body.split(delimiter.as_str()).find_map(|part| {
        let (head, content) = part.split_once("\r\n\r\n")?;
        head.contains("name=\"file\"").then(|| content.strip_suffix("\r\n").unwrap_or(content))
    })
}

fn import(st: &mut KibanaState, content_type: &str, body: &[u8], overwrite: bool) -> Resp {
    if !content_type.starts_with("multipart/form-data") {
        return error(415, "Unsupported Media Type", "Unsupported Media Type".into());
    }
    let text = String::from_utf8_lossy(body);
    let Some(file) = file_part(content_type, &text) else {
        return error(
            400,
            "Bad Request",
            "[request body.file]: expected value of type [Stream]".into(),
        );
    };
    let mut objects = Vec::new();
    for line in file.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(line) {
            Ok(o) => objects.push(o),
            Err(_) => return error(400, "Bad Request", "Unexpected token in JSON".into()),
        }
    }
    let key = |o: &Value| {
        (o["type"].as_str().unwrap_or("").to_string(), o["id"].as_str().unwrap_or("").to_string())
    };
    let in_file: Vec<(String, String)> = objects.iter().map(key).collect();
    let exists = |st: &KibanaState, t: &str, id: &str| {
        in_file.contains(&(t.to_string(), id.to_string()))
            || st.objects.contains_key(&(t.to_string(), id.to_string()))
            || (t == "index-pattern" && st.data_views.contains_key(id))
    };
    let mut errors = Vec::new();
    let mut results = Vec::new();
    for o in &objects {
        let (t, id) = key(o);
        let missing: Vec<Value> = o["references"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                !exists(st, r["type"].as_str().unwrap_or(""), r["id"].as_str().unwrap_or(""))
            })
            .map(|r| json!({"type": r["type"], "id": r["id"]}))
            .collect();
        if !missing.is_empty() {
            errors.push(json!({"type": t, "id": id, "error": {"type": "missing_references", "references": missing}}));
        } else if st.objects.contains_key(&(t.clone(), id.clone())) && !overwrite {
            errors.push(json!({"type": t, "id": id, "error": {"type": "conflict"}}));
        } else {
            results.push(json!({"type": t, "id": id, "meta": {"title": o["attributes"]["title"]}}));
        }
    }
    if errors.is_empty() {
        for o in objects {
            st.writes += 1;
            st.objects.insert(key(&o), o);
        }
    }
    let success = errors.is_empty();
    reply(
        200,
        json!({"success": success, "successCount": if success { results.len() } else { 0 },
                      "successResults": if success { json!(results) } else { json!([]) }, "errors": errors}),
    )
}

fn export(st: &KibanaState, body: &[u8]) -> Resp {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(400, "Bad Request", "[request body]: expected an object".into());
    };
    let mut out = String::new();
    let mut missing = Vec::new();
    for o in v["objects"].as_array().into_iter().flatten() {
        let key = (
            o["type"].as_str().unwrap_or("").to_string(),
            o["id"].as_str().unwrap_or("").to_string(),
        );
        match st.objects.get(&key) {
            Some(found) => {
                out.push_str(&found.to_string());
                out.push('\n');
            }
            None => missing.push(json!({"type": key.0, "id": key.1, "error": {"statusCode": 404}})),
        }
    }
    if !missing.is_empty() {
        return reply(
            400,
            json!({"statusCode": 400, "error": "Bad Request", "message": "Error fetching objects to export",
                   "attributes": {"objects": missing}}),
        );
    }
    let mut r = Response::new(Full::new(Bytes::from(out)));
    r.headers_mut().insert("content-type", "application/ndjson".parse().unwrap());
    r
}
