//! The two write APIs the comparison benchmark's endpoint accepts, as pure functions of a
//! request body: Elasticsearch's `POST /_bulk` (NDJSON action and source lines, one result per
//! action in request order) and Loki's `POST /loki/api/v1/push` (snappy-compressed protobuf
//! `PushRequest`, or JSON). The integration tests include this file too (`#[path]`), so the
//! answers are checked against weir's own response classification.
//!
//! The contract followed: Elasticsearch's bulk API reference (an NDJSON body that ends with a
//! newline; actions `index`, `create`, `update`, `delete`; `_index` from the action or the
//! path; `filter_path` applied to the response) and Loki's push API reference (`streams` of
//! label sets, each with entries of a nanosecond timestamp string and a line).
//!
//! Invariant: a request is either counted whole or refused whole with the status and body the
//! real server sends for that mistake; source documents are not parsed (the endpoint must cost
//! little), but each is found, counted and searched for the marker field.

use std::fmt::Write as _;

/// What an accepted `_bulk` request held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// `index` and `create` actions: documents written.
    pub docs: u64,
    /// Documents whose source holds `"<marker>":` (a parsed field, not an escaped string).
    pub marked: u64,
    /// `update` and `delete` actions.
    pub other_actions: u64,
    /// The response body (`application/json`).
    pub response: Vec<u8>,
}

/// A refused request: HTTP status and body.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub body: String,
}

/// Elasticsearch's error body for a refused request.
fn es_error(status: u16, kind: &str, reason: &str) -> Refusal {
    let reason = serde_json::Value::from(reason).to_string();
    Refusal {
        status,
        body: format!(
            r#"{{"error":{{"root_cause":[{{"type":"{kind}","reason":{reason}}}],"type":"{kind}","reason":{reason}}},"status":{status}}}"#
        ),
    }
}

/// Which parts of the response `filter_path` keeps.
struct Filter {
    took: bool,
    errors: bool,
    /// Keep the items at all.
    items: bool,
    /// Per item: `None` keeps every field, else only those named.
    item_fields: Option<Vec<String>>,
}

impl Filter {
    fn parse(query: Option<&str>) -> Self {
        let Some(paths) = query.and_then(|q| {
            q.split('&').find_map(|kv| kv.strip_prefix("filter_path=")).map(percent_decode)
        }) else {
            return Self { took: true, errors: true, items: true, item_fields: None };
        };
        let mut f = Self { took: false, errors: false, items: false, item_fields: Some(vec![]) };
        for p in paths.split(',') {
            match p {
                "took" => f.took = true,
                "errors" => f.errors = true,
                "items" | "items.*" | "items.**" => {
                    f.items = true;
                    f.item_fields = None;
                }
                other => {
                    if let Some(field) = other.strip_prefix("items.*.") {
                        f.items = true;
                        if let Some(fields) = &mut f.item_fields {
                            fields.push(field.to_string());
                        }
                    }
                }
            }
        }
        f
    }

    fn keeps(&self, field: &str) -> bool {
        self.item_fields.as_ref().is_none_or(|f| f.iter().any(|x| x == field))
    }
}

/// Decodes `%2C`-style escapes (clients may encode the commas of `filter_path`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One action line: `{"index":{"_index":"x","_id":"y"}}`. Exactly one of the four is set.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Action<'a> {
    #[serde(default, borrow)]
    index: Option<ActionMeta<'a>>,
    #[serde(default, borrow)]
    create: Option<ActionMeta<'a>>,
    #[serde(default, borrow)]
    update: Option<ActionMeta<'a>>,
    #[serde(default, borrow)]
    delete: Option<ActionMeta<'a>>,
}

/// The metadata of an action; other keys (`pipeline`, `routing`, ...) are accepted and ignored.
#[derive(serde::Deserialize)]
struct ActionMeta<'a> {
    #[serde(default, borrow, rename = "_index")]
    index: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow, rename = "_id")]
    id: Option<std::borrow::Cow<'a, str>>,
}

impl<'a> Action<'a> {
    /// The one operation and its metadata.
    fn single(self) -> Option<(&'static str, ActionMeta<'a>)> {
        let all = [
            ("index", self.index),
            ("create", self.create),
            ("update", self.update),
            ("delete", self.delete),
        ];
        let mut set = all.into_iter().filter_map(|(op, m)| m.map(|m| (op, m)));
        match (set.next(), set.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }
}

/// Handles one `_bulk` request. `path_index` is the `{index}` of `/{index}/_bulk`; `query` is
/// the query string; `next_id` numbers documents that come without an `_id`.
pub fn bulk(
    body: &[u8],
    path_index: Option<&str>,
    query: Option<&str>,
    marker: Option<&[u8]>,
    next_id: &mut u64,
) -> Result<BulkOutcome, Refusal> {
    if body.is_empty() {
        return Err(es_error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        ));
    }
    if body.last() != Some(&b'\n') {
        return Err(es_error(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let filter = Filter::parse(query);
    let finder = marker.map(memchr::memmem::Finder::new);
    let mut out = BulkOutcome::default();
    let mut items = String::with_capacity(body.len() / 8);
    let mut lines = body.split(|&b| b == b'\n').enumerate().filter(|(_, l)| !l.is_empty());
    let mut count = 0u64;
    while let Some((n, line)) = lines.next() {
        let malformed = || {
            es_error(
                400,
                "illegal_argument_exception",
                &format!(
                    "Malformed action/metadata line [{}], expected one of [create, delete, \
                     index, update]",
                    n + 1
                ),
            )
        };
        let action: Action<'_> = serde_json::from_slice(line).map_err(|_| malformed())?;
        let (op, meta) = action.single().ok_or_else(malformed)?;
        let (status, result) = match op {
            "index" | "create" => (201, "created"),
            "update" => (200, "updated"),
            _ => (200, "deleted"),
        };
        let Some(index) = meta.index.as_deref().or(path_index) else {
            return Err(es_error(
                400,
                "action_request_validation_exception",
                "Validation Failed: 1: index is missing;",
            ));
        };
        if op != "delete" {
            let Some((_, source)) = lines.next() else {
                return Err(es_error(
                    400,
                    "illegal_argument_exception",
                    &format!(
                        "The bulk request must be terminated by a newline [\\n] (action on line {} has no source)",
                        n + 1
                    ),
                ));
            };
            if op == "update" {
                out.other_actions += 1;
            } else {
                out.docs += 1;
                if finder.as_ref().is_some_and(|f| f.find(source).is_some()) {
                    out.marked += 1;
                }
            }
        } else {
            out.other_actions += 1;
        }
        if filter.items {
            if count > 0 {
                items.push(',');
            }
            let _ = write!(items, r#"{{"{op}":{{"#);
            let mut first = true;
            let mut field = |items: &mut String, name: &str, value: &str| {
                if filter.keeps(name) {
                    if !first {
                        items.push(',');
                    }
                    first = false;
                    let _ = write!(items, r#""{name}":{value}"#);
                }
            };
            field(&mut items, "_index", &serde_json::Value::from(index).to_string());
            let id = match meta.id.as_deref() {
                Some(id) => serde_json::Value::from(id).to_string(),
                None => {
                    *next_id += 1;
                    format!("\"bench{:015}\"", *next_id)
                }
            };
            field(&mut items, "_id", &id);
            field(&mut items, "_version", "1");
            field(&mut items, "result", &format!("\"{result}\""));
            field(&mut items, "_shards", r#"{"total":1,"successful":1,"failed":0}"#);
            field(&mut items, "_seq_no", &count.to_string());
            field(&mut items, "_primary_term", "1");
            field(&mut items, "status", &status.to_string());
            items.push_str("}}");
        }
        count += 1;
    }
    let mut response = String::with_capacity(items.len() + 40);
    response.push('{');
    let mut parts = Vec::new();
    if filter.took {
        parts.push("\"took\":1".to_string());
    }
    if filter.errors {
        parts.push("\"errors\":false".to_string());
    }
    response.push_str(&parts.join(","));
    if filter.items && count > 0 {
        if !parts.is_empty() {
            response.push(',');
        }
        response.push_str("\"items\":[");
        response.push_str(&items);
        response.push(']');
    }
    response.push('}');
    out.response = response.into_bytes();
    Ok(out)
}

/// What an accepted Loki push held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PushOutcome {
    pub streams: u64,
    pub entries: u64,
    /// Bytes of the entries' lines.
    pub line_bytes: u64,
    /// Entries whose line is empty (a shipper that lost the message).
    pub empty_lines: u64,
}

/// Loki's answer to a malformed push: 400 with a plain-text reason.
fn loki_error(reason: impl Into<String>) -> Refusal {
    Refusal { status: 400, body: reason.into() + "\n" }
}

/// A label set as Loki reads it in a protobuf push: `{name="value", ...}`, at least one label.
fn check_labels(labels: &str) -> Result<(), Refusal> {
    let inner = labels
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .ok_or_else(|| loki_error(format!("error parsing labels '{labels}'")))?;
    if !inner.contains("=\"") {
        return Err(loki_error(format!(
            "error at least one label pair is required per stream: '{labels}'"
        )));
    }
    Ok(())
}

/// A snappy-compressed (block format) protobuf `PushRequest`.
pub fn loki_protobuf(body: &[u8]) -> Result<PushOutcome, Refusal> {
    use prost::Message;
    use weir::sinks::loki::proto::PushRequest;
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| loki_error(format!("snappy: {e}")))?;
    let push = PushRequest::decode(&raw[..])
        .map_err(|e| loki_error(format!("failed to decode protobuf push request: {e}")))?;
    let mut out = PushOutcome::default();
    for s in &push.streams {
        check_labels(&s.labels)?;
        out.streams += 1;
        for e in &s.entries {
            if e.timestamp.is_none() {
                return Err(loki_error("entry without a timestamp"));
            }
            out.entries += 1;
            out.line_bytes += e.line.len() as u64;
            out.empty_lines += u64::from(e.line.is_empty());
        }
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
struct JsonPush<'a> {
    #[serde(borrow)]
    streams: Vec<JsonStream<'a>>,
}

#[derive(serde::Deserialize)]
struct JsonStream<'a> {
    stream: std::collections::BTreeMap<std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    values: Vec<Vec<&'a serde_json::value::RawValue>>,
}

/// A JSON push: `{"streams":[{"stream":{...},"values":[["<ns>","<line>"(, {metadata})?]]}]}`.
pub fn loki_json(body: &[u8]) -> Result<PushOutcome, Refusal> {
    let push: JsonPush<'_> = serde_json::from_slice(body)
        .map_err(|e| loki_error(format!("loghttp.PushRequest: {e}")))?;
    let mut out = PushOutcome::default();
    for s in &push.streams {
        if s.stream.is_empty() {
            return Err(loki_error("error at least one label pair is required per stream"));
        }
        out.streams += 1;
        for v in &s.values {
            if !(2..=3).contains(&v.len()) {
                return Err(loki_error("each value must hold a timestamp and a line"));
            }
            let ts = v[0].get();
            let digits = ts.strip_prefix('"').and_then(|t| t.strip_suffix('"'));
            if !digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
                return Err(loki_error(format!("timestamp {ts} is not a string of nanoseconds")));
            }
            // The raw value is valid JSON already, so a leading quote makes it a string. Its
            // bytes are counted unescaped, as Loki stores the line (and as a protobuf push
            // counts them); only a line with an escape is decoded.
            let raw = v[1].get();
            if !raw.starts_with('"') {
                return Err(loki_error(format!("line {raw} is not a string")));
            }
            let len = if raw.contains('\\') {
                serde_json::from_str::<String>(raw)
                    .map_err(|e| loki_error(format!("line {raw}: {e}")))?
                    .len()
            } else {
                raw.len() - 2
            };
            out.entries += 1;
            out.line_bytes += len as u64;
            out.empty_lines += u64::from(len == 0);
        }
    }
    Ok(out)
}
