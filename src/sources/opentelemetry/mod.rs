//! `opentelemetry`: receives logs over OTLP/gRPC and OTLP/HTTP, as the OpenTelemetry SDKs
//! and the Collector export them.
//!
//! ```toml
//! [sources.otel]
//! type = "opentelemetry"
//! ack_timeout_secs = 4                  # answer "retry later" if not delivered by then
//! # auth = { strategy = "bearer", token = "${OTLP_TOKEN}" }  # or "basic": user, password
//!
//! [sources.otel.grpc]
//! address = "0.0.0.0:4317"              # LogsService/Export
//! max_body_bytes = 10485760             # a message, also once decompressed
//! max_connections = 256                 # further connections are closed at once
//! header_read_timeout_secs = 10         # to send a first call (and a TLS handshake)
//! idle_timeout_secs = 60                # a connection with no call for this long is closed
//! # tls = { crt_file = "...", key_file = "..." }   # as the syslog source's
//!
//! [sources.otel.http]
//! address = "0.0.0.0:4318"              # POST /v1/logs
//! max_body_bytes = 10485760             # on the wire and once decompressed: 413 above
//! max_connections = 256                 # further connections are closed at once
//! header_read_timeout_secs = 10         # to send a request head (and a TLS handshake)
//! # tls = { crt_file = "...", key_file = "..." }
//! ```
//!
//! With neither table, both transports are served on their default ports; with one, only
//! that one. [`grpc`] has the gRPC transport and its answers.
//!
//! `POST /v1/logs` takes an `ExportLogsServiceRequest` as protobuf (`application/x-protobuf`)
//! or OTLP/JSON (`application/json`), optionally `Content-Encoding: gzip` (or `deflate`),
//! and answers in the same encoding. Each log record becomes one event ([`convert`] has the
//! mapping to ECS fields). The answer waits until every event of the request has been
//! delivered by the pipeline's sinks (weir's at-least-once, through
//! [`http_server::deliver`]): 200 then; 429 with `Retry-After` when the pipeline stays full
//! for 5 s; 503 with `Retry-After` when the events were not delivered within
//! `ack_timeout_secs` (or weir is stopping), so that the exporter backs off and sends them
//! again (a record can then arrive twice, never not at all). When a sink rejected some
//! records for good (an Elasticsearch mapping error, say: they are in its dead letters) and
//! delivered the rest, the answer is 200 with a `partial_success` counting exactly the
//! rejected records (`rejected_log_records`, and an `error_message`), as the OTLP
//! specification asks: the exporter logs it and does not send them again. 400 with the
//! reason for a body that is not an OTLP logs request; 401 without the credentials `auth` asks for; 413 above
//! `max_body_bytes`; 415 for another content type or encoding; 404 for another path. Error
//! bodies are `google.rpc.Status` messages in the request's encoding, as the OTLP
//! specification asks.
//!
//! Metrics, besides the common source series: `weir_component_received_events_total` counts
//! log records, `..._received_bytes_total` request body bytes (decompressed);
//! `weir_component_errors_total` with `error_type` `parse_failed` (a request that does not
//! decode), `message_too_long` (over `max_body_bytes`), `connection_refused` (over
//! `max_connections`), `tls_handshake_failed`.

pub mod convert;
pub mod decode;
pub mod grpc;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;

use super::util::http_server::{self, Limits, Reply, Server, ServerAuth};
use super::util::tls::TlsServerConfig;
use crate::component::{ShutdownSignal, SourceComponent, SourceContext, SourceSender};
use crate::error::{BuildError, ConfigIssue, Task};
use crate::internal_events::RateLimit;
use crate::metrics::{ComponentMetrics, Stage, error_type};
use decode::{Encoding, code};

/// The path of log exports, as the OTLP specification fixes it.
pub const LOGS_PATH: &str = "/v1/logs";

/// `[sources.<id>] type = "opentelemetry"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpentelemetryConfig {
    /// OTLP/gRPC. Served with its defaults when neither `grpc` nor `http` is given.
    #[serde(default)]
    pub grpc: Option<GrpcConfig>,
    /// OTLP/HTTP. Served with its defaults when neither `grpc` nor `http` is given.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// Longest a request waits, once the pipeline has taken its events, for them to be
    /// delivered before it is answered 503 (retry later). Default 4: with the wait for a
    /// full pipeline (5 s, then 429) it stays under the SDKs' export timeout of 10 s.
    #[serde(default = "default_ack_timeout_secs")]
    pub ack_timeout_secs: u64,
    /// What a client must send in `Authorization`: `strategy = "bearer"` with `token`, or
    /// `"basic"` with `user` and `password`. Use `${VAR}` for the secret.
    #[serde(default)]
    pub auth: Option<ServerAuth>,
}

/// `[sources.<id>.http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where to listen. Default `0.0.0.0:4318`, the OTLP/HTTP port.
    pub address: SocketAddr,
    /// Largest request body, compressed and decompressed. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Most connections served at once. Default 256.
    pub max_connections: usize,
    /// Time for a client to send a request head (or a TLS handshake). Default 10.
    pub header_read_timeout_secs: u64,
    /// TLS (HTTPS), as the other server sources take it.
    pub tls: Option<TlsServerConfig>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([0, 0, 0, 0], 4318)),
            max_body_bytes: 10 << 20,
            max_connections: 256,
            header_read_timeout_secs: 10,
            tls: None,
        }
    }
}

/// `[sources.<id>.grpc]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Where to listen. Default `0.0.0.0:4317`, the OTLP/gRPC port.
    pub address: SocketAddr,
    /// Largest message, compressed and decompressed. Default 10 MiB.
    pub max_body_bytes: usize,
    /// Most connections served at once. Default 256.
    pub max_connections: usize,
    /// Time for a client to make its first call (or a TLS handshake). Default 10.
    pub header_read_timeout_secs: u64,
    /// A connection with no call in progress for this long is closed (the client connects
    /// again for its next export). Default 60.
    pub idle_timeout_secs: u64,
    /// TLS, as the other server sources take it.
    pub tls: Option<TlsServerConfig>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            address: SocketAddr::from(([0, 0, 0, 0], 4317)),
            max_body_bytes: 10 << 20,
            max_connections: 256,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            tls: None,
        }
    }
}

fn default_ack_timeout_secs() -> u64 {
    4
}

impl OpentelemetryConfig {
    /// The transports to serve: those given, or both with their defaults.
    fn transports(&self) -> (Option<GrpcConfig>, Option<HttpConfig>) {
        match (&self.grpc, &self.http) {
            (None, None) => (Some(GrpcConfig::default()), Some(HttpConfig::default())),
            (grpc, http) => (grpc.clone(), http.clone()),
        }
    }

    fn state(&self, max_body_bytes: usize, cx: &SourceContext) -> Arc<State> {
        Arc::new(State {
            max_body_bytes,
            ack_timeout: Duration::from_secs(self.ack_timeout_secs),
            auth: self.auth.clone(),
            telemetry: Telemetry::new(&cx.metrics),
            id: cx.id.clone(),
            shutdown: cx.shutdown.clone(),
        })
    }
}

impl SourceComponent for OpentelemetryConfig {
    type Checked = ();

    fn check(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let (grpc, http) = self.transports();
        let mut at_least_1 = vec![("ack_timeout_secs", self.ack_timeout_secs)];
        let mut tls = Vec::new();
        if let Some(g) = &grpc {
            at_least_1.extend([
                ("grpc.max_body_bytes", g.max_body_bytes as u64),
                ("grpc.max_connections", g.max_connections as u64),
                ("grpc.header_read_timeout_secs", g.header_read_timeout_secs),
                ("grpc.idle_timeout_secs", g.idle_timeout_secs),
            ]);
            tls.extend(g.tls.as_ref().map(|t| ("grpc", t)));
        }
        if let Some(h) = &http {
            at_least_1.extend([
                ("http.max_body_bytes", h.max_body_bytes as u64),
                ("http.max_connections", h.max_connections as u64),
                ("http.header_read_timeout_secs", h.header_read_timeout_secs),
            ]);
            tls.extend(h.tls.as_ref().map(|t| ("http", t)));
        }
        for (field, value) in at_least_1 {
            if value == 0 {
                issues.push(ConfigIssue::field(field, "must be at least 1"));
            }
        }
        if let (Some(g), Some(h)) = (&grpc, &http)
            && g.address == h.address
        {
            issues.push(ConfigIssue::field(
                "grpc.address",
                format!("{} is http.address too: give each transport its own port", g.address),
            ));
        }
        for (transport, tls) in tls {
            issues.extend(tls.check().into_iter().map(|i| ConfigIssue {
                field: i.field.map(|f| format!("{transport}.{f}")),
                message: i.message,
            }));
        }
        if let Some(auth) = &self.auth {
            issues.extend(auth.check());
        }
        if issues.is_empty() { Ok(()) } else { Err(issues) }
    }

    fn build(&self, (): (), cx: SourceContext) -> Result<Task, BuildError> {
        let (grpc, http) = self.transports();
        let grpc_task = match grpc {
            None => None,
            Some(g) => {
                let limits = Limits::new(g.max_connections, g.header_read_timeout_secs);
                // gRPC clients require HTTP/2 chosen by ALPN in a TLS handshake.
                let alpn: &[&[u8]] = &[b"h2"];
                let server = Server::bind_alpn(g.address, g.tls.as_ref(), alpn, limits, &cx)?;
                tracing::info!(
                    component = %cx.id,
                    address = %g.address,
                    tls = server.is_tls(),
                    "listening for OTLP/gRPC logs (LogsService/Export)"
                );
                let state = self.state(g.max_body_bytes, &cx);
                let idle = Duration::from_secs(g.idle_timeout_secs);
                let protocol = grpc::Grpc::new(state, cx.out.clone(), idle);
                Some(server.serve_with(cx.shutdown.clone(), protocol))
            }
        };
        let http_task = match http {
            None => None,
            Some(h) => {
                let limits = Limits::new(h.max_connections, h.header_read_timeout_secs);
                let server = Server::bind(h.address, h.tls.as_ref(), limits, &cx)?;
                tracing::info!(
                    component = %cx.id,
                    address = %h.address,
                    tls = server.is_tls(),
                    "listening for OTLP/HTTP logs (POST /v1/logs)"
                );
                let state = self.state(h.max_body_bytes, &cx);
                let out = cx.out.clone();
                let handler = move |req, peer| handle(req, peer, Arc::clone(&state), out.clone());
                Some(server.serve(cx.shutdown.clone(), handler))
            }
        };
        Ok(Box::pin(async move {
            match (grpc_task, http_task) {
                (Some(g), Some(h)) => tokio::try_join!(g, h).map(|_| ()),
                (Some(g), None) => g.await,
                (None, Some(h)) => h.await,
                (None, None) => Ok(()),
            }
        }))
    }

    /// A request is answered only once its events are acknowledged.
    fn acknowledges(&self) -> bool {
        true
    }
}

/// What every request of a source shares.
struct State {
    max_body_bytes: usize,
    /// Answers wait this long for the events' acknowledgement.
    ack_timeout: Duration,
    auth: Option<ServerAuth>,
    telemetry: Telemetry,
    id: String,
    shutdown: ShutdownSignal,
}

struct Telemetry {
    metrics: ComponentMetrics,
    parse_failed: Counter,
    too_large: Counter,
    refused_log: Mutex<RateLimit>,
}

impl Telemetry {
    fn new(metrics: &ComponentMetrics) -> Self {
        Self {
            parse_failed: metrics.error_counter(error_type::PARSE_FAILED, Stage::Receiving),
            too_large: metrics.error_counter(error_type::MESSAGE_TOO_LONG, Stage::Receiving),
            refused_log: Mutex::default(),
            metrics: metrics.clone(),
        }
    }

    /// Logs a refused request, at most every ten seconds.
    fn refused(&self, id: &str, peer: SocketAddr, status: &dyn std::fmt::Display, reason: &str) {
        let allowed = self.refused_log.lock().unwrap_or_else(|e| e.into_inner()).allow();
        if let Some(suppressed) = allowed {
            tracing::warn!(
                component = %id,
                %peer,
                %status,
                %reason,
                suppressed,
                "OTLP request refused"
            );
        }
    }
}

/// A response with a body in `encoding`.
fn respond(status: StatusCode, encoding: Encoding, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    r
}

/// An answer other than success: a `google.rpc.Status` body in the request's encoding, with
/// `Retry-After` (429, 503) and `WWW-Authenticate` (401) as the reply asks.
fn refusal(reply: Reply, encoding: Encoding) -> Response<Full<Bytes>> {
    let grpc_code = match reply.status {
        StatusCode::TOO_MANY_REQUESTS => code::RESOURCE_EXHAUSTED,
        StatusCode::SERVICE_UNAVAILABLE => code::UNAVAILABLE,
        StatusCode::UNAUTHORIZED => code::UNAUTHENTICATED,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => code::UNIMPLEMENTED,
        _ => code::INVALID_ARGUMENT,
    };
    let body = decode::status(encoding, grpc_code, &reply.message);
    let mut r = respond(reply.status, encoding, body);
    if let Some(secs) = reply.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(challenge) = reply.challenge {
        r.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    }
    r
}

async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: Arc<State>,
    mut out: SourceSender,
) -> Response<Full<Bytes>> {
    let t = &state.telemetry;
    let content_type = req.headers().get(CONTENT_TYPE).map(|v| v.as_bytes());
    let encoding = Encoding::from_content_type(content_type);
    let reply_encoding = *encoding.as_ref().unwrap_or(&Encoding::Protobuf);
    let refuse = |reply: Reply, counter: Option<&Counter>| {
        if let Some(c) = counter {
            c.inc();
        }
        t.refused(&state.id, peer, &reply.status.as_u16(), &reply.message);
        refusal(reply, reply_encoding)
    };
    if let Some(auth) = &state.auth
        && let Err(reply) = auth.authorize(req.headers())
    {
        return refuse(reply, None);
    }
    if req.uri().path() != LOGS_PATH {
        let message = format!("not found: OTLP logs are received at POST {LOGS_PATH}");
        return refusal(Reply::new(StatusCode::NOT_FOUND, message), reply_encoding);
    }
    if req.method() != Method::POST {
        let message = format!("{} not allowed: use POST {LOGS_PATH}", req.method());
        return refusal(Reply::new(StatusCode::METHOD_NOT_ALLOWED, message), reply_encoding);
    }
    let encoding = match encoding {
        Ok(e) => e,
        Err(message) => {
            return refuse(Reply::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message), None);
        }
    };
    let (parts, body) = req.into_parts();
    let body = match http_server::read_body(body, &parts.headers, state.max_body_bytes).await {
        Ok(b) => b,
        Err(reply) => {
            let counter = match reply.status {
                StatusCode::PAYLOAD_TOO_LARGE => &t.too_large,
                _ => &t.parse_failed,
            };
            return refuse(reply, Some(counter));
        }
    };
    let request = match decode::request(encoding, &body) {
        Ok(r) => r,
        Err(message) => {
            return refuse(Reply::new(StatusCode::BAD_REQUEST, message), Some(&t.parse_failed));
        }
    };
    let records = decode::records(&request);
    t.metrics.received(records, body.len());
    let events = convert::events(request, chrono::Utc::now());
    let timeout = state.ack_timeout;
    match http_server::deliver_counting(&mut out, events, timeout, &state.shutdown).await {
        Ok(0) => respond(StatusCode::OK, encoding, decode::response(encoding, None)),
        Ok(n) => {
            let partial = decode::rejected(n, records);
            respond(StatusCode::OK, encoding, decode::response(encoding, Some(partial)))
        }
        Err(reply) => refusal(reply, encoding),
    }
}
