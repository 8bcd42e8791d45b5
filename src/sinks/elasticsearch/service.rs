//! `POST /_bulk` requests and the reading of their responses, item by item.
//!
//! Classification (after the bulk API reference, Logstash's elasticsearch output and Vector's
//! `retry.rs`):
//!
//! | response | outcome |
//! |---|---|
//! | 200, `errors: false` | every item delivered |
//! | 200, `errors: true` | each item in request order: 2xx delivered; 409 on `create` delivered (the document is already there); 429 and 5xx sent again alone; any other status rejected with its `error.type` and `error.reason` |
//! | 413 | the request is split in halves |
//! | 408, 429, 5xx, no response, an unreadable or too large body | the whole request again after a backoff |
//! | 401, 403 | credentials refused: the whole request again after a backoff, for as long as weir runs; the sink is unhealthy and says so in an ERROR at a bounded rate |
//! | any other 4xx (400, 404: a missing ingest pipeline, a wrong path, a body refused) | every event of the request to the dead-letter destination, reason `http_<status>`, the body's `error.type: error.reason` as the message; the sink goes on |
//! | 1xx, 3xx | the whole request again after a backoff |
//!
//! A response is read up to [`response_limit`] bytes: [`RESPONSE_BASE_BYTES`] and
//! [`RESPONSE_BYTES_PER_ITEM`] for each action of the request (with `filter_path` an item
//! answers with its status, and its error when it failed).
//!
//! Invariant: an `errors: true` response whose item count differs from the request's is not
//! guessed at: the whole request is sent again (ids make that safe; without ids it may
//! duplicate, never lose).

use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::encoder::{BulkItem, Op};
use crate::sinks::util::driver::{Item, ItemOutcome, Service, Verdict};
use crate::sinks::util::http::{HttpRequest, HttpResponse, gzip};

/// What any `_bulk` response may hold besides its items (an error body, the envelope).
pub const RESPONSE_BASE_BYTES: usize = 64 * 1024;

/// What one item of a `_bulk` response may hold: its status and, when it failed, an error
/// (type, reason with a preview of the field's value, `caused_by`), a few hundred bytes in
/// practice.
pub const RESPONSE_BYTES_PER_ITEM: usize = 4 * 1024;

/// The most bytes read of the response to a request of `items` actions.
pub fn response_limit(items: usize) -> usize {
    RESPONSE_BASE_BYTES.saturating_add(items.saturating_mul(RESPONSE_BYTES_PER_ITEM))
}

/// Builds `_bulk` requests.
pub struct BulkService {
    /// `/_bulk?...`, fixed for the sink.
    pub path: String,
    pub gzip: bool,
}

impl BulkService {
    pub fn new(pipeline: Option<&str>, gzip: bool) -> Self {
        // Only what weir reads comes back: smaller responses for large batches.
        let mut path = String::from("/_bulk?filter_path=errors,items.*.status,items.*.error");
        if let Some(p) = pipeline {
            path.push_str("&pipeline=");
            path.push_str(p);
        }
        Self { path, gzip }
    }
}

/// The request body of `items`: their lines, concatenated. Every item's lines then point at
/// its part of the body: the items' own allocations are freed, and a batch waiting for its
/// response or a retry holds its bytes once (a retry of some items builds a smaller body from
/// these parts).
fn shared_body(items: &mut [Item<BulkItem>]) -> Bytes {
    let len = items.iter().map(|i| i.payload.lines.len()).sum();
    let mut body = Vec::with_capacity(len);
    for i in items.iter() {
        body.extend_from_slice(&i.payload.lines);
    }
    let body = Bytes::from(body);
    let mut start = 0;
    for i in items {
        let end = start + i.payload.lines.len();
        i.payload.lines = body.slice(start..end);
        start = end;
    }
    body
}

impl Service for BulkService {
    type Key = String;
    type Payload = BulkItem;

    fn build(&self, _index: &String, items: &mut [Item<BulkItem>]) -> Result<HttpRequest, String> {
        let body = shared_body(items);
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"))];
        let body = if self.gzip {
            headers.push((CONTENT_ENCODING, HeaderValue::from_static("gzip")));
            Bytes::from(gzip(&body))
        } else {
            body
        };
        Ok(HttpRequest { method: reqwest::Method::POST, path: self.path.clone(), headers, body })
    }

    fn classify(&self, response: &HttpResponse, items: &[Item<BulkItem>]) -> Verdict {
        let ops: Vec<Op> = items.iter().map(|i| i.payload.op).collect();
        classify(response.status, &response.body, &ops)
    }

    fn response_limit(&self, items: &[Item<BulkItem>]) -> usize {
        response_limit(items.len())
    }

    /// The index, and the document line (the action line is left out).
    fn dead_letter(&self, index: &String, item: &BulkItem) -> (Option<String>, String) {
        let doc = match memchr::memchr(b'\n', &item.lines) {
            Some(i) => &item.lines[i + 1..],
            None => &item.lines[..],
        };
        let doc = doc.strip_suffix(b"\n").unwrap_or(doc);
        (Some(index.clone()), String::from_utf8_lossy(doc).into_owned())
    }
}

/// What a `_bulk` response is read as first: only `errors`. Its items (one per action) are
/// skipped without being built, so a response whose every item succeeded costs no allocation
/// per item.
#[derive(Deserialize)]
struct BulkSummary {
    #[serde(default)]
    errors: bool,
}

/// A response with `errors: true`, read again with its items.
#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, ItemResult>>,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error: ErrorField,
}

/// A whole-request error: an object with `type` and `reason`, or (old versions) a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField {
    Object(ErrorBody),
    Text(String),
}

/// `error.type: error.reason` of a whole-request error body, or the body's start.
fn request_error(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(ErrorResponse { error: ErrorField::Object(e) }) => format!("{}: {}", e.kind, e.reason),
        Ok(ErrorResponse { error: ErrorField::Text(t) }) => t,
        Err(_) => {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            if text.is_empty() { "empty body".into() } else { text }
        }
    }
}

/// Classifies a `_bulk` response to a request whose items had operations `ops`.
pub fn classify(status: u16, body: &[u8], ops: &[Op]) -> Verdict {
    match status {
        200..=299 => {}
        413 => return Verdict::Split,
        401 | 403 => {
            return Verdict::Unauthorized(format!(
                "Elasticsearch refused the credentials (HTTP {status}: {}); check `auth`",
                request_error(body)
            ));
        }
        408 | 429 | 502..=504 => {
            return Verdict::RetryAll {
                reason: format!("HTTP {status}: {}", request_error(body)),
                throttled: status == 429 || status == 503,
            };
        }
        500..=599 => {
            return Verdict::RetryAll {
                reason: format!("HTTP {status}: {}", request_error(body)),
                throttled: false,
            };
        }
        400..=499 => {
            return Verdict::RejectAll {
                reason: format!("http_{status}"),
                detail: format!("HTTP {status}: {}", request_error(body)),
            };
        }
        _ => {
            return Verdict::RetryAll {
                reason: format!("unexpected HTTP {status} to _bulk: {}", request_error(body)),
                throttled: false,
            };
        }
    }
    let unreadable = |e: serde_json::Error| Verdict::RetryAll {
        reason: format!("unreadable _bulk response: {e}"),
        throttled: false,
    };
    match serde_json::from_slice::<BulkSummary>(body) {
        Ok(BulkSummary { errors: false }) => {
            return Verdict::Items {
                outcomes: vec![ItemOutcome::Delivered; ops.len()],
                throttled: false,
            };
        }
        Ok(BulkSummary { errors: true }) => {}
        Err(e) => return unreadable(e),
    }
    let parsed: BulkResponse = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return unreadable(e),
    };
    if parsed.items.len() != ops.len() {
        return Verdict::RetryAll {
            reason: format!(
                "_bulk response has {} items for {} actions",
                parsed.items.len(),
                ops.len()
            ),
            throttled: false,
        };
    }
    let mut throttled = false;
    let outcomes = parsed
        .items
        .into_iter()
        .zip(ops)
        .map(|(item, op)| {
            // One key per item: the operation's name.
            let Some(result) = item.into_values().next() else {
                return ItemOutcome::Retry;
            };
            match result.status {
                200..=299 => ItemOutcome::Delivered,
                409 if *op == Op::Create => ItemOutcome::Delivered,
                429 => {
                    throttled = true;
                    ItemOutcome::Retry
                }
                500..=599 => ItemOutcome::Retry,
                status => {
                    let e = result.error.unwrap_or_default();
                    ItemOutcome::Rejected {
                        reason: if e.kind.is_empty() { format!("http_{status}") } else { e.kind },
                        detail: e.reason,
                    }
                }
            }
        })
        .collect();
    Verdict::Items { outcomes, throttled }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Response bodies as Elasticsearch 8 writes them (the bulk API reference's examples and
    // what clusters answer under load), whitespace removed.
    const ALL_CREATED: &str = r#"{"took":30,"errors":false,"items":[{"index":{"_index":"test","_id":"1","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"status":201,"_seq_no":0,"_primary_term":1}},{"create":{"_index":"test","_id":"3","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"status":201,"_seq_no":1,"_primary_term":1}}]}"#;

    const MIXED: &str = r#"{"took":486,"errors":true,"items":[{"create":{"_index":"logs-model-2026.11.27","_id":"a1","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}},{"create":{"_index":"logs-model-2026.11.27","_id":"a2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[a2]: version conflict, document already exists (current version [1])","index_uuid":"aAsFqTI0Tc2W0LCWgPNrOA","shard":"0","index":"logs-model-2026.11.27"}}},{"create":{"_index":"logs-model-2026.11.27","_id":"a3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation [coordinating_and_primary_bytes=0, replica_bytes=0, all_bytes=0, coordinating_operation_bytes=104857600, max_coordinating_and_primary_bytes=107374182]"}}},{"create":{"_index":"logs-model-2026.11.27","_id":"a4","status":400,"error":{"type":"document_parsing_exception","reason":"[1:52] failed to parse field [http.response.status_code] of type [long] in document with id 'a4'. Preview of field's value: 'OK'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"OK\""}}}},{"create":{"_index":"logs-model-2026.11.27","_id":"a5","status":503,"error":{"type":"unavailable_shards_exception","reason":"[logs-model-2026.11.27][0] primary shard is not active Timeout: [1m], request: [BulkShardRequest [[logs-model-2026.11.27][0]] containing [5] requests]"}}},{"index":{"_index":"Logs","status":400,"error":{"type":"invalid_index_name_exception","reason":"Invalid index name [Logs], must be lowercase","index_uuid":"_na_","index":"Logs"}}}]}"#;

    const FILTERED_OK: &str = r#"{"errors":false}"#;

    const UNAUTHORIZED: &str = r#"{"error":{"root_cause":[{"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]","header":{"WWW-Authenticate":["Basic realm=\"security\" charset=\"UTF-8\"","ApiKey"]}}],"type":"security_exception","reason":"missing authentication credentials for REST request [/_bulk]","header":{"WWW-Authenticate":["Basic realm=\"security\" charset=\"UTF-8\"","ApiKey"]}},"status":401}"#;

    const NO_NEWLINE: &str = r#"{"error":{"root_cause":[{"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"}],"type":"illegal_argument_exception","reason":"The bulk request must be terminated by a newline [\\n]"},"status":400}"#;

    const TOO_MANY: &str = r#"{"error":{"root_cause":[{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}],"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"},"status":429}"#;

    fn item(lines: &str) -> Item<BulkItem> {
        let payload = BulkItem { lines: Bytes::copy_from_slice(lines.as_bytes()), op: Op::Index };
        Item::new(payload, lines.len(), &mut crate::event::Event::from_message("x"))
    }

    #[test]
    fn items_point_into_the_body_they_were_sent_in_and_build_the_same_again() {
        let service = BulkService::new(None, false);
        let lines =
            ["{\"index\":{}}\n{\"a\":1}\n", "{\"index\":{}}\n{\"b\":22}\n", "{\"index\":{}}\n{}\n"];
        let mut items: Vec<_> = lines.iter().map(|l| item(l)).collect();
        let req = service.build(&"i".to_string(), &mut items).unwrap();
        assert_eq!(req.body, lines.concat().as_bytes());
        for (i, l) in items.iter().zip(lines) {
            assert_eq!(i.payload.lines, l.as_bytes());
            // A slice of the body, not a copy of its own.
            let range = req.body.as_ptr_range();
            assert!(range.contains(&i.payload.lines.as_ptr()));
        }
        // A retry of some of them sends exactly their lines.
        let mut retry = items.split_off(1);
        let again = service.build(&"i".to_string(), &mut retry).unwrap();
        assert_eq!(again.body, lines[1..].concat().as_bytes());
        assert_eq!(retry[1].payload.lines, lines[2].as_bytes());
        for i in items.into_iter().chain(retry) {
            i.finish(crate::event::EventStatus::Delivered);
        }
    }

    #[test]
    fn all_created() {
        assert_eq!(
            classify(200, ALL_CREATED.as_bytes(), &[Op::Index, Op::Create]),
            Verdict::Items {
                outcomes: vec![ItemOutcome::Delivered, ItemOutcome::Delivered],
                throttled: false
            }
        );
        assert_eq!(
            classify(200, FILTERED_OK.as_bytes(), &[Op::Index; 3]),
            Verdict::Items { outcomes: vec![ItemOutcome::Delivered; 3], throttled: false }
        );
    }

    #[test]
    fn mixed_items_in_request_order() {
        let ops = [Op::Create, Op::Create, Op::Create, Op::Create, Op::Create, Op::Index];
        let Verdict::Items { outcomes, throttled } = classify(200, MIXED.as_bytes(), &ops) else {
            panic!("not per item");
        };
        assert!(throttled, "a 429 item is pushback");
        assert_eq!(outcomes[0], ItemOutcome::Delivered);
        assert_eq!(outcomes[1], ItemOutcome::Delivered, "409 on create: already there");
        assert_eq!(outcomes[2], ItemOutcome::Retry);
        match &outcomes[3] {
            ItemOutcome::Rejected { reason, detail } => {
                assert_eq!(reason, "document_parsing_exception");
                assert!(detail.contains("http.response.status_code"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(outcomes[4], ItemOutcome::Retry);
        assert!(
            matches!(&outcomes[5], ItemOutcome::Rejected { reason, .. } if reason == "invalid_index_name_exception")
        );
    }

    #[test]
    fn conflict_on_index_is_not_success() {
        let body = r#"{"errors":true,"items":[{"index":{"status":409,"error":{"type":"version_conflict_engine_exception","reason":"[x]: version conflict"}}}]}"#;
        assert!(matches!(
            classify(200, body.as_bytes(), &[Op::Index]),
            Verdict::Items { outcomes, .. } if matches!(outcomes[0], ItemOutcome::Rejected { .. })
        ));
    }

    #[test]
    fn whole_request_statuses() {
        assert_eq!(classify(413, b"", &[Op::Index]), Verdict::Split);
        match classify(401, UNAUTHORIZED.as_bytes(), &[Op::Index]) {
            Verdict::Unauthorized(m) => {
                assert!(m.contains("missing authentication credentials"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(403, b"{}", &[Op::Index]), Verdict::Unauthorized(_)));
        assert!(matches!(classify(408, b"", &[Op::Index]), Verdict::RetryAll { .. }));
        match classify(429, TOO_MANY.as_bytes(), &[Op::Index]) {
            Verdict::RetryAll { reason, throttled: true } => {
                assert!(reason.contains("es_rejected_execution_exception"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(500, b"oops", &[Op::Index]),
            Verdict::RetryAll { throttled: false, .. }
        ));
        assert!(matches!(
            classify(503, b"", &[Op::Index]),
            Verdict::RetryAll { throttled: true, .. }
        ));
        match classify(400, NO_NEWLINE.as_bytes(), &[Op::Index]) {
            Verdict::RejectAll { reason, detail } => {
                assert_eq!(reason, "http_400");
                assert_eq!(
                    detail,
                    "HTTP 400: illegal_argument_exception: The bulk request must be terminated \
                     by a newline [\\n]"
                );
            }
            other => panic!("{other:?}"),
        }
        let missing = r#"{"error":{"root_cause":[{"type":"index_not_found_exception","reason":"no such index [x]"}],"type":"index_not_found_exception","reason":"no such index [x]"},"status":404}"#;
        assert_eq!(
            classify(404, missing.as_bytes(), &[Op::Index]),
            Verdict::RejectAll {
                reason: "http_404".into(),
                detail: "HTTP 404: index_not_found_exception: no such index [x]".into()
            }
        );
        // Not Elasticsearch's JSON (a proxy's page): the start of the body, as text.
        assert!(matches!(
            classify(404, b"<html>404 Not Found</html>", &[Op::Index]),
            Verdict::RejectAll { detail, .. } if detail == "HTTP 404: <html>404 Not Found</html>"
        ));
        assert!(matches!(classify(302, b"", &[Op::Index]), Verdict::RetryAll { .. }));
    }

    #[test]
    fn responses_are_bounded_by_the_items_of_the_request() {
        assert_eq!(response_limit(0), RESPONSE_BASE_BYTES);
        assert_eq!(response_limit(1000), 64 * 1024 + 1000 * 4 * 1024);
        assert_eq!(response_limit(usize::MAX), usize::MAX);
        // Elasticsearch's answer to a thousand failed items fits with room to spare.
        let item = r#"{"create":{"status":400,"error":{"type":"document_parsing_exception","reason":"[1:52] failed to parse field [http.response.status_code] of type [long] in document with id 'a4'. Preview of field's value: 'OK'","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"OK\""}}}}"#;
        let body = format!("{{\"errors\":true,\"items\":[{}]}}", vec![item; 1000].join(","));
        assert!(body.len() * 4 < response_limit(1000), "{}", body.len());
    }

    #[test]
    fn unreadable_or_mismatched_responses_are_resent() {
        assert!(matches!(classify(200, b"<html>", &[Op::Index]), Verdict::RetryAll { .. }));
        // Items are skipped unread when `errors` is false, but a cut-off body is still seen.
        let cut = r#"{"errors":false,"items":[{"index":{"status":201}}"#;
        assert!(matches!(classify(200, cut.as_bytes(), &[Op::Index]), Verdict::RetryAll { .. }));
        let one_item = r#"{"errors":true,"items":[{"index":{"status":429}}]}"#;
        assert!(matches!(
            classify(200, one_item.as_bytes(), &[Op::Index, Op::Index]),
            Verdict::RetryAll { .. }
        ));
    }
}
