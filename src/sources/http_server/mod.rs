//! `http_server`: events from HTTP `POST` requests: JSON documents, arrays or NDJSON, plain
//! lines, or the form Python's `logging.handlers.HTTPHandler` sends.
//!
//! ```toml
//! [sources.http]
//! type = "http_server"
//! address = "0.0.0.0:8080"
//! path = "/"                      # requests to other paths get 404
//! decoding.codec = "auto"         # or "json", "text", "form"
//! headers = ["X-Request-Id"]      # copied to http.request.header.<lower-case name>
//! query_parameters = ["env"]      # copied to http.request.query.<name>
//! wait_for_acks = true            # answer 200 only once the events are delivered
//! ack_timeout_secs = 30           # then 503 with Retry-After
//! max_body_bytes = 10485760       # larger bodies get 413 (also after decompression)
//! max_connections = 256           # further connections are closed at once
//! header_read_timeout_secs = 10   # to send a request's head, or to start the next one
//! auth.strategy = "bearer"        # or "basic" with auth.user and auth.password
//! auth.token = "${WEIR_HTTP_TOKEN}"
//! # [sources.http.tls] crt_file, key_file, ca_file, verify_certificate as for syslog
//! ```
//!
//! A `GET` whose query string holds a form with `msg` is taken as a `LogRecord` too (with the `auto` and
//! `form` codecs): Python's `HTTPHandler` sends GET unless given `method="POST"`.
//!
//! Each event carries `@timestamp` (the time weir received it, unless the body gave one),
//! `source.ip` (the client), and the chosen headers and query parameters; fields the body set
//! itself are never overwritten. What each codec reads is in [`decode`].
//!
//! Answers: 200 when the events are acknowledged end to end (at once with
//! `wait_for_acks = false`); 400 with the reason when the body does not decode (none of it
//! is sent on) or a sink rejected the events for good; 401 without the credentials; 404, 405
//! for another path or method; 413 above `max_body_bytes`; 415 for an unknown
//! `Content-Encoding`; 429 with `Retry-After` when the pipeline stays full (backpressure:
//! the client keeps its events); 503 with `Retry-After` when they could not be delivered in
//! `ack_timeout_secs` or weir is stopping (or a reload replacing the source has begun: the
//! new instance answers the request sent again). Sending the same request again after a 429
//! or 503 may deliver some events twice (at-least-once), never lose them.
//!
//! Beside Vector's `http_server`: a request a sink rejected gets 400 there too. Where its
//! events were not delivered (a sink failed), Vector answers 500; weir answers 503 with
//! `Retry-After`, which clients and OTLP exporters retry. And when a request's events were in
//! part rejected and in part not delivered, Vector answers 400 (rejection wins) and weir 503
//! (not delivered wins): after a 400 a client drops the request, and the events never
//! delivered, which are not dead letters, would be lost.
//!
//! Metrics, besides the common component series: `weir_component_http_responses_total`
//! by `status`; `weir_component_open_connections`;
//! `weir_component_connections_closed_total{reason="header_timeout"}`;
//! `weir_component_errors_total` with `error_type` `parse_failed` (bodies refused with 400),
//! `message_too_long` (413), `credentials_refused` (401), `connection_refused` (at
//! `max_connections`), `tls_handshake_failed`.

pub mod decode;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;

use super::util::http_server::{self, Delivery, Limits, Reply, Server, ServerAuth};
use super::util::tls::TlsServerConfig;
use crate::component::{ShutdownSignal, SourceComponent, SourceContext, SourceSender};
use crate::error::{BuildError, ConfigIssue, Task};
use crate::event::Event;
use crate::internal_events::RateLimit;
use crate::metrics::{ComponentMetrics, Stage, error_type};
use decode::{Codec, RequestFacts};

/// `[sources.<id>] type = "http_server"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Where to listen, e.g. `0.0.0.0:8080`.
    pub address: SocketAddr,
    /// The path requests are posted to; others get 404. Default `/`.
    #[serde(default = "default_path")]
    pub path: String,
    /// How bodies are read.
    #[serde(default)]
    pub decoding: Decoding,
    /// Request headers copied into `http.request.header.<lower-case name>`.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Query parameters copied into `http.request.query.<name>`.
    #[serde(default)]
    pub query_parameters: Vec<String>,
    /// Answer 200 only once every event of the request is acknowledged by the sinks. Default
    /// true; false answers as soon as the events are in the pipeline.
    #[serde(default = "default_true")]
    pub wait_for_acks: bool,
    /// How long to wait for the acknowledgement before answering 503. Default 30.
    #[serde(default = "default_ack_timeout_secs")]
    pub ack_timeout_secs: u64,
    /// Largest body accepted, before and after decompression. Default 10 MiB.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Most connections served at once. Default 256.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Close a connection that sends no request head for this long. Default 10.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Credentials every request must carry.
    #[serde(default)]
    pub auth: Option<ServerAuth>,
    /// HTTPS.
    #[serde(default)]
    pub tls: Option<TlsServerConfig>,
}

/// `decoding` of an `http_server` source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decoding {
    /// `auto` (by `Content-Type`, the default), `json`, `text` or `form`.
    #[serde(default)]
    pub codec: Codec,
}

fn default_path() -> String {
    "/".into()
}
fn default_true() -> bool {
    true
}
fn default_ack_timeout_secs() -> u64 {
    30
}
fn default_max_body_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_max_connections() -> usize {
    256
}
fn default_header_read_timeout_secs() -> u64 {
    10
}

impl SourceComponent for HttpServerConfig {
    type Checked = ();

    fn check(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if !self.path.starts_with('/') {
            issues.push(ConfigIssue::field("path", "must begin with `/`"));
        }
        for (field, n) in [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("max_connections", self.max_connections as u64),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("ack_timeout_secs", self.ack_timeout_secs),
        ] {
            if n == 0 {
                issues.push(ConfigIssue::field(field, "must be at least 1"));
            }
        }
        for h in &self.headers {
            if hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                issues.push(ConfigIssue::field("headers", format!("`{h}` is not a header name")));
            }
        }
        if let Some(auth) = &self.auth {
            issues.extend(auth.check());
        }
        if let Some(tls) = &self.tls {
            issues.extend(tls.check());
        }
        if issues.is_empty() { Ok(()) } else { Err(issues) }
    }

    fn build(&self, (): (), cx: SourceContext) -> Result<Task, BuildError> {
        let limits = Limits::new(self.max_connections, self.header_read_timeout_secs);
        let server = Server::bind(self.address, self.tls.as_ref(), limits, &cx)?;
        tracing::info!(
            component = %cx.id,
            address = %self.address,
            path = %self.path,
            tls = server.is_tls(),
            "listening for HTTP requests"
        );
        let state = Arc::new(State {
            path: self.path.clone(),
            codec: self.decoding.codec,
            headers: self.headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            query: self.query_parameters.clone(),
            max_body_bytes: self.max_body_bytes,
            auth: self.auth.clone(),
            delivery: Delivery {
                wait_for_acks: self.wait_for_acks,
                ack_timeout: Duration::from_secs(self.ack_timeout_secs),
            },
            telemetry: Telemetry::new(&cx.metrics),
            out: cx.out,
            shutdown: cx.shutdown.clone(),
        });
        let shutdown = cx.shutdown;
        Ok(Box::pin(server.serve(shutdown, move |req, peer| {
            let state = Arc::clone(&state);
            async move { state.handle(req, peer).await }
        })))
    }

    fn acknowledges(&self) -> bool {
        self.wait_for_acks
    }
}

/// What every request of a source shares.
struct State {
    path: String,
    codec: Codec,
    headers: Vec<String>,
    query: Vec<String>,
    max_body_bytes: usize,
    auth: Option<ServerAuth>,
    delivery: Delivery,
    telemetry: Telemetry,
    out: SourceSender,
    shutdown: ShutdownSignal,
}

struct Telemetry {
    metrics: ComponentMetrics,
    bad_body: Counter,
    too_large: Counter,
    unauthorized: Counter,
    refused_log: Mutex<RateLimit>,
    full_log: Mutex<RateLimit>,
}

impl Telemetry {
    fn new(metrics: &ComponentMetrics) -> Self {
        Self {
            bad_body: metrics.error_counter(error_type::PARSE_FAILED, Stage::Receiving),
            too_large: metrics.error_counter(error_type::MESSAGE_TOO_LONG, Stage::Receiving),
            unauthorized: metrics.error_counter(error_type::CREDENTIALS_REFUSED, Stage::Receiving),
            refused_log: Mutex::default(),
            full_log: Mutex::default(),
            metrics: metrics.clone(),
        }
    }

    /// Counts and logs (rate-limited) a request answered with an error.
    fn refused(&self, peer: SocketAddr, reply: &Reply) {
        let counter = match reply.status {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => Some(&self.bad_body),
            StatusCode::PAYLOAD_TOO_LARGE => Some(&self.too_large),
            StatusCode::UNAUTHORIZED => Some(&self.unauthorized),
            _ => None,
        };
        if let Some(c) = counter {
            c.inc();
        }
        let (limit, busy) = match reply.status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                (&self.full_log, true)
            }
            _ => (&self.refused_log, false),
        };
        let Some(suppressed) = limit.lock().unwrap_or_else(|e| e.into_inner()).allow() else {
            return;
        };
        let id = self.metrics.id();
        let status = reply.status.as_u16();
        if busy {
            tracing::warn!(component = %id, %peer, status, reason = %reply.message, suppressed, "request answered with retry later");
        } else {
            tracing::warn!(component = %id, %peer, status, reason = %reply.message, suppressed, "request refused");
        }
    }
}

impl State {
    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let response = match self.accept(req, peer).await {
            Ok(()) => http_server::text_response(StatusCode::OK, ""),
            Err(reply) => {
                self.telemetry.refused(peer, &reply);
                reply.into_response()
            }
        };
        http_server::count_response(&self.telemetry.metrics, response.status());
        response
    }

    async fn accept(&self, req: Request<Incoming>, peer: SocketAddr) -> Result<(), Reply> {
        if req.uri().path() != self.path {
            return Err(Reply::new(
                StatusCode::NOT_FOUND,
                format!("not found: POST events to {}", self.path),
            ));
        }
        // Python's `HTTPHandler` sends GET unless told otherwise, the record in the query.
        let record_in_query = req.method() == Method::GET
            && matches!(self.codec, Codec::Auto | Codec::Form)
            && req.uri().query().is_some_and(|q| {
                form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "msg" || k == "message")
            });
        if req.method() != Method::POST && !record_in_query {
            return Err(Reply::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "only POST is accepted (or GET with a Python LogRecord, `msg` and all, in the query)",
            ));
        }
        if let Some(auth) = &self.auth {
            auth.authorize(req.headers())?;
        }
        let (parts, body) = req.into_parts();
        let (codec, body) = if record_in_query {
            let query = parts.uri.query().unwrap_or("");
            (Codec::Form, Bytes::copy_from_slice(query.as_bytes()))
        } else {
            (self.codec, http_server::read_body(body, &parts.headers, self.max_body_bytes).await?)
        };
        let facts = RequestFacts {
            peer_ip: Some(peer.ip().to_string()),
            headers: self
                .headers
                .iter()
                .filter_map(|name| {
                    let values: Vec<_> = parts
                        .headers
                        .get_all(name.as_str())
                        .iter()
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .collect();
                    (!values.is_empty()).then(|| (name.clone(), values.join(", ")))
                })
                .collect(),
            query: form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .filter(|(k, _)| self.query.iter().any(|q| q == k))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        };
        let content_type = parts
            .headers
            .get(hyper::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let values =
            decode::decode(codec, content_type.as_deref(), &body, &facts, chrono::Utc::now())
                .map_err(|e| Reply::new(StatusCode::BAD_REQUEST, e))?;
        self.telemetry.metrics.received(values.len(), body.len());
        let events: Vec<Event> = values.into_iter().map(Event::from_value).collect();
        let mut out = self.out.clone();
        http_server::deliver(&mut out, events, self.delivery, &self.shutdown).await
    }
}
