//! A Kibana stand-in for the saved-objects API `weir setup` uses:
//! `GET /api/saved_objects/{type}/{id}` (404 with Kibana's error body when absent),
//! `POST /api/saved_objects/{type}/{id}` (create; 409 when it exists) and
//! `PUT /api/saved_objects/{type}/{id}` (update; 404 when absent). Writes without the
//! `kbn-xsrf` header are refused with 400, as Kibana does.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

use crate::stand_in::StandIn;

#[derive(Debug, Default)]
pub struct KibanaState {
    /// (type, id) -> {attributes, references}.
    pub objects: BTreeMap<(String, String), Value>,
    pub writes: usize,
}

/// A running stand-in on a loopback port; stops when dropped.
pub type KibanaServer = StandIn<KibanaState>;

impl KibanaServer {
    pub fn start() -> Self {
        StandIn::serve(KibanaState::default(), handle)
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", "application/json; charset=utf-8".parse().unwrap());
    r
}

fn error(status: u16, error: &str, message: String) -> Response<Full<Bytes>> {
    reply(status, json!({"statusCode": status, "error": error, "message": message}))
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<KibanaState>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let segs: Vec<String> =
        parts.uri.path().trim_matches('/').split('/').map(str::to_string).collect();
    let ["api", "saved_objects", kind, id] =
        segs.iter().map(String::as_str).collect::<Vec<_>>()[..]
    else {
        return Ok(error(404, "Not Found", "Not Found".into()));
    };
    let key = (kind.to_string(), id.to_string());
    let method = parts.method.as_str();
    if method != "GET" && parts.headers.get("kbn-xsrf").is_none() {
        return Ok(error(400, "Bad Request", "Request must contain a kbn-xsrf header.".into()));
    }
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let not_found = || error(404, "Not Found", format!("Saved object [{kind}/{id}] not found"));
    Ok(match method {
        "GET" => match st.objects.get(&key) {
            Some(o) => reply(
                200,
                json!({"id": id, "type": kind, "attributes": o["attributes"], "references": o["references"], "version": "WzEsMV0="}),
            ),
            None => not_found(),
        },
        "POST" | "PUT" => {
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                return Ok(error(400, "Bad Request", "[request body]: expected an object".into()));
            };
            if v.get("attributes").is_none_or(|a| !a.is_object()) {
                return Ok(error(
                    400,
                    "Bad Request",
                    "[request body.attributes]: expected value of type [object]".into(),
                ));
            }
            let exists = st.objects.contains_key(&key);
            if method == "POST" && exists {
                return Ok(error(409, "Conflict", format!("Saved object [{kind}/{id}] conflict")));
            }
            if method == "PUT" && !exists {
                return Ok(not_found());
            }
            st.writes += 1;
            let stored = json!({"attributes": v["attributes"], "references": v.get("references").cloned().unwrap_or(json!([]))});
            st.objects.insert(key, stored);
            reply(200, json!({"id": id, "type": kind, "attributes": v["attributes"]}))
        }
        _ => error(405, "Method Not Allowed", "method not allowed".into()),
    })
}
