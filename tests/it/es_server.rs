//! An Elasticsearch stand-in, faithful to the published contracts weir relies on: `GET /`
//! (`version.number`, `X-elastic-product`), `POST /_bulk` and `/{index}/_bulk` (NDJSON that
//! must end with a newline, gzip bodies, one result per action in request order, `create`
//! answering 409 on an existing `_id`, data streams taking only `create` and requiring
//! `@timestamp`, compact JSON responses with Elasticsearch's error types), authentication,
//! `http.max_content_length` (413), and the set-up APIs `weir setup` uses
//! (`_index_template`, `_component_template`, `_ilm/policy`).
//!
//! Faults are injected per bulk request from a queue, or for every request, and everything
//! indexed is kept for assertions.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};

use crate::stand_in::{Reset, Resp, StandIn};

/// What one bulk request suffers.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The whole request answers this status (with an Elasticsearch error body: its type and
    /// reason as Elasticsearch words them for 400, 401, 403, 404, 413, 429 and 503).
    Status(u16),
    /// Every `every`-th item (0, every, 2*every, ...) answers `status` and is not indexed.
    Items { every: usize, status: u16 },
    /// The connection is closed without a response, before anything is indexed.
    Reset,
    /// The documents are indexed, then the connection is closed without a response.
    ResetAfterIndexing,
    /// The response comes after this long.
    Delay(Duration),
}

#[derive(Debug, Default)]
pub struct Index {
    /// Documents in the order they were indexed, with their ids.
    pub docs: Vec<(String, Value)>,
    ids: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct EsState {
    pub indices: BTreeMap<String, Index>,
    /// Faults taken one per bulk request, before `always`.
    pub faults: VecDeque<Fault>,
    /// Applied to every bulk request while set.
    pub always: Option<Fault>,
    /// Documents with this top-level field are refused with a 400 mapping error.
    pub poison_field: Option<String>,
    /// `http.max_content_length`: larger bodies (decompressed) answer 413.
    pub max_content_length: usize,
    /// The `Authorization` header every request must carry, when set.
    pub credentials: Option<String>,
    /// Answer 403 to authenticated requests (a user without the right privileges).
    pub forbid: bool,
    pub version: String,
    /// Bulk requests seen, and the actions they carried.
    pub bulk_requests: usize,
    pub bulk_actions: usize,
    /// Bodies that arrived gzip-compressed.
    pub gzip_requests: usize,
    /// Index names matching `logs-*-*` are data streams, as with Elasticsearch's built-in
    /// `logs` template.
    pub data_stream_patterns: bool,
    pub index_templates: BTreeMap<String, Value>,
    /// Component templates (`GET _component_template/{name}`): by default the built-in ones
    /// of 8.15 that its `logs` template is composed of (`logs@custom` is not built in).
    pub component_templates: BTreeMap<String, Value>,
    pub ilm_policies: BTreeMap<String, Value>,
    /// Keep the documents (tests); benchmarks only count them, to keep memory flat.
    pub keep_docs: bool,
    /// Documents indexed (kept or not).
    pub indexed: usize,
    /// Counts indexed documents by the value of this top-level field, with the time each
    /// value was first indexed (for tests that ship more documents than they should keep).
    pub track_field: Option<String>,
    pub tracked: HashMap<String, (usize, std::time::Instant)>,
    /// Digests of the bulk bodies (decompressed) received since [`EsState::new_sender`]. A
    /// sender builds each batch once from what it reads, so a body it sends twice is a
    /// request it sent again (after a timeout or a lost response): at-least-once delivery.
    pub bodies: HashSet<u64>,
    /// Bulk requests whose body had already arrived from the same sender, their actions, and
    /// the documents indexed (again) from them.
    pub resent_requests: usize,
    pub resent_actions: usize,
    pub resent_indexed: usize,
    /// Requests being handled now (a request whose client went away is still finished if its
    /// body had arrived).
    pub active: usize,
    pub seq_no: u64,
    pub auto_id: u64,
}

impl Default for EsState {
    fn default() -> Self {
        Self {
            indices: BTreeMap::new(),
            faults: VecDeque::new(),
            always: None,
            poison_field: None,
            max_content_length: 100 * 1024 * 1024,
            credentials: None,
            forbid: false,
            version: "8.15.0".into(),
            bulk_requests: 0,
            bulk_actions: 0,
            gzip_requests: 0,
            data_stream_patterns: true,
            index_templates: BTreeMap::new(),
            component_templates: ["logs@mappings", "logs@settings", "ecs@mappings"]
                .into_iter()
                .map(|n| (n.to_string(), json!({"template": {}, "_meta": {"managed": true}})))
                .collect(),
            ilm_policies: BTreeMap::new(),
            keep_docs: true,
            indexed: 0,
            track_field: None,
            tracked: HashMap::new(),
            bodies: HashSet::new(),
            resent_requests: 0,
            resent_actions: 0,
            resent_indexed: 0,
            active: 0,
            seq_no: 0,
            auto_id: 0,
        }
    }
}

impl EsState {
    /// Requests from here on come from a new sender (a restarted weir): a body it sends that
    /// an earlier one sent too is what it read again, not a request sent again.
    pub fn new_sender(&mut self) {
        self.bodies.clear();
    }

    /// Every document of every index.
    pub fn all_docs(&self) -> Vec<&Value> {
        self.indices.values().flat_map(|i| i.docs.iter().map(|(_, d)| d)).collect()
    }

    /// How many documents carry each value of the top-level string field `field`.
    pub fn count_by(&self, field: &str) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.all_docs() {
            if let Some(v) = d.get(field).and_then(Value::as_str) {
                *counts.entry(v.to_string()).or_insert(0) += 1;
            }
        }
        counts
    }

    pub fn doc_count(&self) -> usize {
        self.indices.values().map(|i| i.docs.len()).sum()
    }
}

/// A running stand-in on a loopback port; stops when dropped.
pub type EsServer = StandIn<EsState>;

impl EsServer {
    pub fn start() -> Self {
        Self::start_with(EsState::default())
    }

    pub fn start_with(state: EsState) -> Self {
        StandIn::serve(state, handle)
    }
}

fn json_response(status: u16, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert("x-elastic-product", "Elasticsearch".parse().unwrap());
    r
}

/// An error body as Elasticsearch writes it.
fn error_body(status: u16, kind: &str, reason: &str) -> Value {
    json!({
        "error": {
            "root_cause": [{"type": kind, "reason": reason}],
            "type": kind,
            "reason": reason
        },
        "status": status
    })
}

fn status_error(status: u16) -> Resp {
    let (kind, reason) = match status {
        429 => ("es_rejected_execution_exception", "rejected execution of coordinating operation"),
        413 => ("content_too_long_exception", "request body is too large"),
        401 => {
            ("security_exception", "unable to authenticate user [weir] for REST request [/_bulk]")
        }
        403 => (
            "security_exception",
            "action [indices:data/write/bulk] is unauthorized for user [weir]",
        ),
        503 => ("cluster_block_exception", "blocked by: [SERVICE_UNAVAILABLE/2/no master];"),
        // A request Elasticsearch refuses whole: an unknown query parameter, a missing index
        // (with `action.auto_create_index` off), as the REST layer words them.
        400 => (
            "illegal_argument_exception",
            "request [/_bulk] contains unrecognized parameter: [pipline]",
        ),
        404 => (
            "index_not_found_exception",
            "no such index [weir] and [action.auto_create_index] is [false]",
        ),
        _ => ("internal_server_error", "injected failure"),
    };
    json_response(status, &error_body(status, kind, reason))
}

/// Counts a request as active for as long as it lives (dropped futures included).
struct Active(Arc<Mutex<EsState>>);

impl Active {
    fn new(state: &Arc<Mutex<EsState>>) -> Self {
        state.lock().unwrap_or_else(|e| e.into_inner()).active += 1;
        Self(Arc::clone(state))
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).active -= 1;
    }
}

async fn handle(req: Request<Incoming>, state: Arc<Mutex<EsState>>) -> Result<Resp, Reset> {
    let _active = Active::new(&state);
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Reset),
    };
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    {
        let st = lock();
        if let Some(expected) = &st.credentials {
            let got = parts.headers.get("authorization").and_then(|h| h.to_str().ok());
            if got != Some(expected.as_str()) {
                let mut r = status_error(401);
                r.headers_mut().insert(
                    "www-authenticate",
                    "Basic realm=\"security\" charset=\"UTF-8\"".parse().unwrap(),
                );
                return Ok(r);
            }
            if st.forbid {
                return Ok(status_error(403));
            }
        }
    }
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", []) => {
            let version = lock().version.clone();
            Ok(json_response(
                200,
                &json!({
                    "name": "standin-0",
                    "cluster_name": "weir-test",
                    "cluster_uuid": "p3oLLsSXQy2KUGOYL0ZDIQ",
                    "version": {
                        "number": version,
                        "build_flavor": "default",
                        "build_type": "docker",
                        "lucene_version": "9.11.1",
                        "minimum_wire_compatibility_version": "7.17.0",
                        "minimum_index_compatibility_version": "7.0.0"
                    },
                    "tagline": "You Know, for Search"
                }),
            ))
        }
        ("POST" | "PUT", ["_bulk"]) => bulk(&parts.headers, body, None, &state).await,
        ("POST" | "PUT", [index, "_bulk"]) => {
            bulk(&parts.headers, body, Some(index.to_string()), &state).await
        }
        ("PUT", ["_index_template", name]) => {
            put_object(&state, body, |s| &mut s.index_templates, name)
        }
        ("GET", ["_index_template", name]) => {
            let st = lock();
            Ok(match st.index_templates.get(*name) {
                Some(t) => json_response(
                    200,
                    &json!({"index_templates": [{"name": name, "index_template": t}]}),
                ),
                None => json_response(
                    404,
                    &error_body(
                        404,
                        "resource_not_found_exception",
                        &format!("index template matching [{name}] not found"),
                    ),
                ),
            })
        }
        ("GET", ["_component_template", name]) => {
            let st = lock();
            Ok(match st.component_templates.get(*name) {
                Some(t) => json_response(
                    200,
                    &json!({"component_templates": [{"name": name, "component_template": t}]}),
                ),
                None => json_response(
                    404,
                    &error_body(
                        404,
                        "resource_not_found_exception",
                        &format!("component template matching [{name}] not found"),
                    ),
                ),
            })
        }
        ("PUT", ["_ilm", "policy", name]) => {
            put_object(&state, body, |s| &mut s.ilm_policies, name)
        }
        ("GET", ["_ilm", "policy", name]) => {
            let st = lock();
            Ok(match st.ilm_policies.get(*name) {
                Some(p) => {
                    json_response(200, &json!({ *name: {"version": 1, "policy": p["policy"]} }))
                }
                None => json_response(
                    404,
                    &error_body(
                        404,
                        "resource_not_found_exception",
                        &format!("Lifecycle policy not found: {name}"),
                    ),
                ),
            })
        }
        _ => Ok(json_response(
            405,
            &error_body(
                405,
                "illegal_argument_exception",
                &format!("Incorrect HTTP method for uri [{path}] and method [{method}]"),
            ),
        )),
    }
}

fn put_object(
    state: &Arc<Mutex<EsState>>,
    body: Bytes,
    map: impl Fn(&mut EsState) -> &mut BTreeMap<String, Value>,
    name: &str,
) -> Result<Resp, Reset> {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return Ok(json_response(
            400,
            &error_body(400, "x_content_parse_exception", "request body is not JSON"),
        ));
    };
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    map(&mut st).insert(name.to_string(), v);
    Ok(json_response(200, &json!({"acknowledged": true})))
}

/// Counts an indexed document under its `track_field` value.
fn track(st: &mut EsState, doc: &Value) {
    if let Some(f) = &st.track_field
        && let Some(v) = doc.get(f).and_then(Value::as_str)
    {
        let v = v.to_string();
        st.tracked.entry(v).or_insert((0, std::time::Instant::now())).0 += 1;
    }
}

async fn bulk(
    headers: &hyper::HeaderMap,
    body: Bytes,
    path_index: Option<String>,
    state: &Arc<Mutex<EsState>>,
) -> Result<Resp, Reset> {
    let body = if headers.get("content-encoding").and_then(|h| h.to_str().ok()) == Some("gzip") {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out).is_err() {
            return Ok(json_response(
                400,
                &error_body(400, "illegal_argument_exception", "invalid gzip body"),
            ));
        }
        state.lock().unwrap_or_else(|e| e.into_inner()).gzip_requests += 1;
        out
    } else {
        body.to_vec()
    };
    let digest = {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut h);
        h.finish()
    };
    let fault = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.bulk_requests += 1;
        if body.len() > st.max_content_length {
            return Ok(status_error(413));
        }
        st.faults.pop_front().or_else(|| st.always.clone())
    };
    match &fault {
        Some(Fault::Status(s)) => return Ok(status_error(*s)),
        Some(Fault::Reset) => return Err(Reset),
        Some(Fault::Delay(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }
    if !body.is_empty() && !body.ends_with(b"\n") {
        return Ok(json_response(
            400,
            &error_body(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            ),
        ));
    }
    let text = String::from_utf8_lossy(&body);
    let mut lines = text.split('\n').filter(|l| !l.is_empty()).enumerate();
    let mut items = Vec::new();
    let mut errors = false;
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    // Counted when the request is handled (not when it arrives): a resend that is refused
    // whole indexes nothing again.
    let resent = !st.bodies.insert(digest);
    st.resent_requests += usize::from(resent);
    let mut position = 0usize;
    while let Some((n, action_line)) = lines.next() {
        let action: Value = match serde_json::from_str(action_line) {
            Ok(Value::Object(m)) if m.len() == 1 => Value::Object(m),
            _ => {
                return Ok(json_response(
                    400,
                    &error_body(
                        400,
                        "illegal_argument_exception",
                        &format!(
                            "Malformed action/metadata line [{}], expected START_OBJECT",
                            n + 1
                        ),
                    ),
                ));
            }
        };
        let Some((op, meta)) = action.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let op = op.clone();
        if !matches!(op.as_str(), "index" | "create") {
            return Ok(json_response(
                400,
                &error_body(
                    400,
                    "illegal_argument_exception",
                    &format!("Unsupported action: [{op}]"),
                ),
            ));
        }
        let Some((_, source_line)) = lines.next() else {
            return Ok(json_response(
                400,
                &error_body(
                    400,
                    "action_request_validation_exception",
                    "Validation Failed: 1: source is missing;",
                ),
            ));
        };
        st.bulk_actions += 1;
        st.resent_actions += usize::from(resent);
        let index =
            meta.get("_index").and_then(Value::as_str).map(str::to_string).or(path_index.clone());
        let id = meta.get("_id").and_then(Value::as_str).map(str::to_string);
        let this = position;
        position += 1;
        let item = |status: u16, extra: Value| {
            let mut m = serde_json::Map::new();
            m.insert("_index".into(), json!(index.clone().unwrap_or_default()));
            if let Some(id) = &id {
                m.insert("_id".into(), json!(id));
            }
            m.insert("status".into(), json!(status));
            if let Value::Object(e) = extra {
                m.extend(e);
            }
            json!({ op.clone(): Value::Object(m) })
        };
        let err = |status: u16, kind: &str, reason: String| {
            item(status, json!({"error": {"type": kind, "reason": reason}}))
        };
        if let Some(Fault::Items { every, status }) = &fault
            && this.is_multiple_of(*every.max(&1))
        {
            errors = true;
            let (kind, reason) = if *status == 429 {
                ("es_rejected_execution_exception", "rejected execution of primary operation")
            } else {
                ("unavailable_shards_exception", "primary shard is not active")
            };
            items.push(err(*status, kind, reason.into()));
            continue;
        }
        let Some(index) = index.clone() else {
            errors = true;
            items.push(err(400, "action_request_validation_exception", "index is missing".into()));
            continue;
        };
        if index.chars().any(|c| c.is_ascii_uppercase()) {
            errors = true;
            items.push(err(
                400,
                "invalid_index_name_exception",
                format!("Invalid index name [{index}], must be lowercase"),
            ));
            continue;
        }
        let doc: Value = match serde_json::from_str(source_line) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                errors = true;
                items.push(err(
                    400,
                    "document_parsing_exception",
                    "[1:1] failed to parse: not a JSON object".into(),
                ));
                continue;
            }
        };
        if let Some(p) = &st.poison_field
            && doc.get(p).is_some()
        {
            errors = true;
            items.push(err(
                400,
                "document_parsing_exception",
                format!("[1:2] failed to parse field [{p}] of type [long] in document"),
            ));
            continue;
        }
        // Elasticsearch's built-in `logs` template: index pattern `logs-*-*`.
        let is_data_stream = st.data_stream_patterns
            && index.strip_prefix("logs-").is_some_and(|rest| rest.contains('-'));
        if is_data_stream {
            if op != "create" {
                errors = true;
                items.push(err(
                    400,
                    "illegal_argument_exception",
                    "only write ops with an op_type of create are allowed in data streams"
                        .to_string(),
                ));
                continue;
            }
            if doc.get("@timestamp").is_none() {
                errors = true;
                items.push(err(
                    400,
                    "document_parsing_exception",
                    "[1:1] failed to parse: data stream timestamp field [@timestamp] is missing"
                        .into(),
                ));
                continue;
            }
        }
        st.seq_no += 1;
        st.indexed += 1;
        st.resent_indexed += usize::from(resent);
        let seq_no = st.seq_no;
        if !st.keep_docs && id.is_none() {
            track(&mut st, &doc);
            items.push(json!({ op.clone(): {"_index": index, "status": 201, "result": "created"}}));
            continue;
        }
        let id = match &id {
            Some(id) => id.clone(),
            None => {
                st.auto_id += 1;
                format!("auto-{}", st.auto_id)
            }
        };
        let idx = st.indices.entry(index.clone()).or_default();
        if let Some(&at) = idx.ids.get(&id) {
            if op == "create" {
                errors = true;
                items.push(err(
                    409,
                    "version_conflict_engine_exception",
                    format!(
                        "[{id}]: version conflict, document already exists (current version [1])"
                    ),
                ));
                continue;
            }
            track(&mut st, &doc);
            let idx = st.indices.entry(index.clone()).or_default();
            idx.docs[at].1 = doc;
        } else {
            idx.ids.insert(id.clone(), idx.docs.len());
            let kept = if st.keep_docs { doc.clone() } else { Value::Null };
            let idx = st.indices.entry(index.clone()).or_default();
            idx.docs.push((id.clone(), kept));
            track(&mut st, &doc);
        }
        items.push(json!({ op.clone(): {
            "_index": index, "_id": id, "_version": 1, "result": "created",
            "_shards": {"total": 2, "successful": 1, "failed": 0},
            "_seq_no": seq_no, "_primary_term": 1, "status": 201
        }}));
    }
    drop(st);
    if matches!(fault, Some(Fault::ResetAfterIndexing)) {
        return Err(Reset);
    }
    Ok(json_response(200, &json!({"took": 3, "errors": errors, "items": items})))
}
