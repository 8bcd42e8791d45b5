//! The HTTP server of sources that take requests (`http_server`; any source that receives
//! over HTTP/1.1 uses it): the listener with its connection cap, TLS, the header-read
//! timeout, authentication, bodies read within a limit and un-gzipped, and the hand-off of a
//! request's events to the pipeline with the answer a client can act on.
//!
//! Bounds, as on every weir server socket: at most `max_connections` connections are served
//! (further ones are closed at once and counted as `connection_refused`); a connection that
//! sends no request head within `header_read_timeout` (a half-sent request, or a kept-alive
//! connection with nothing more to ask) is closed, as is a TLS handshake that takes as long;
//! a body is read within [`BODY_READ_TIMEOUT`] and up to `max_body_bytes`, before and after
//! decompression.
//!
//! Answers ([`deliver`]): 200 once the events are acknowledged end to end (or at once when
//! the source does not wait for acknowledgements); 429 with `Retry-After` when the pipeline
//! stays full for [`FULL_WAIT`] (backpressure: the client keeps the events and retries);
//! 503 with `Retry-After` when a sink could not deliver them, they were not acknowledged in
//! time, or weir is stopping; 400 when a sink rejected them for good (they are in its dead
//! letters, and sending them again would not help).

use std::convert::Infallible;
use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::listeners::Listeners;
use super::tls::TlsServerConfig;
use crate::component::{ShutdownSignal, SourceContext, SourceSender};
use crate::error::{BuildError, ComponentError, ConfigIssue};
use crate::event::{BatchNotifier, BatchStatus, Event};
use crate::internal_events::RateLimit;
use crate::metrics::{ComponentMetrics, Labels, Stage, error_type};

/// How long a request's body may take to arrive once its head has.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request waits for room in a full pipeline before it is answered 429.
pub const FULL_WAIT: Duration = Duration::from_secs(5);
/// The `Retry-After` of 429 and 503 answers, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The bounds of a server socket.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Limits {
    /// The limits as every server source's options give them.
    pub fn new(max_connections: usize, header_read_timeout_secs: u64) -> Self {
        Self { max_connections, header_read_timeout: Duration::from_secs(header_read_timeout_secs) }
    }
}

/// `auth` of a source that takes requests: what a client must send in `Authorization`.
/// Use `${VAR}` for secrets kept in the environment.
#[derive(Clone, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerAuth {
    /// HTTP basic authentication (RFC 7617).
    Basic {
        /// The user name a client must send (no `:`). Required.
        user: String,
        /// The password a client must send. Required.
        password: String,
    },
    /// `Authorization: Bearer <token>` (RFC 6750).
    Bearer {
        /// The token a client must send. Required.
        token: String,
    },
}

impl std::fmt::Debug for ServerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { user, .. } => write!(f, "Basic {{ user: {user:?}, password: *** }}"),
            Self::Bearer { .. } => write!(f, "Bearer {{ token: *** }}"),
        }
    }
}

impl ServerAuth {
    pub fn check(&self) -> Vec<ConfigIssue> {
        match self {
            Self::Basic { user, .. } if user.contains(':') => {
                vec![ConfigIssue::field("auth.user", "a basic-auth user name cannot contain `:`")]
            }
            Self::Bearer { token } if token.is_empty() => {
                vec![ConfigIssue::field("auth.token", "the token is empty")]
            }
            _ => Vec::new(),
        }
    }

    /// Whether `headers` carry the expected credentials; a 401 answer otherwise.
    pub fn authorize(&self, headers: &HeaderMap) -> Result<(), Reply> {
        let given = headers.get(hyper::header::AUTHORIZATION).map(HeaderValue::as_bytes);
        let ok = match (self, given) {
            (_, None) => false,
            (Self::Bearer { token }, Some(v)) => {
                scheme_value(v, "bearer").is_some_and(|t| same(t, token.as_bytes()))
            }
            (Self::Basic { user, password }, Some(v)) => scheme_value(v, "basic")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .is_some_and(|pair| {
                    let expected = format!("{user}:{password}");
                    same(&pair, expected.as_bytes())
                }),
        };
        if ok {
            return Ok(());
        }
        let challenge = match self {
            Self::Basic { .. } => "Basic realm=\"weir\"",
            Self::Bearer { .. } => "Bearer realm=\"weir\"",
        };
        let mut reply = Reply::new(StatusCode::UNAUTHORIZED, "missing or wrong credentials");
        reply.challenge = Some(challenge);
        Err(reply)
    }
}

/// The value after `scheme ` in an `Authorization` header (the scheme in any case).
fn scheme_value<'a>(header: &'a [u8], scheme: &str) -> Option<&'a [u8]> {
    let n = scheme.len();
    let head = header.get(..n)?;
    (head.eq_ignore_ascii_case(scheme.as_bytes()) && header.get(n) == Some(&b' '))
        .then(|| header[n + 1..].trim_ascii())
}

/// Compares secrets in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An answer other than success, with the reason in its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for `Retry-After` (429, 503).
    pub retry_after: Option<u64>,
    /// `WWW-Authenticate` of a 401.
    pub challenge: Option<&'static str>,
}

impl Reply {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), retry_after: None, challenge: None }
    }

    /// An answer that tells the client to send the same request again later.
    pub fn retry(status: StatusCode, message: impl Into<String>) -> Self {
        Self { retry_after: Some(RETRY_AFTER_SECS), ..Self::new(status, message) }
    }

    /// The response: the message as plain text, and the headers the status calls for.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let mut r = text_response(self.status, format!("{}\n", self.message));
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(c) = self.challenge {
            r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        r
    }
}

/// A plain-text response.
pub fn text_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// Reads a request's body within `max` bytes and [`BODY_READ_TIMEOUT`], decompressed as its
/// `Content-Encoding` says (the decompressed body is held to `max` too).
pub async fn read_body(body: Incoming, headers: &HeaderMap, max: usize) -> Result<Bytes, Reply> {
    let too_large = || {
        Reply::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body exceeds max_body_bytes ({max})"),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let collected = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, max).collect())
        .await
        .map_err(|_| {
            Reply::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()),
            )
        })?;
    let raw = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(Reply::new(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")));
        }
    };
    let encoding = headers.get(CONTENT_ENCODING).map(|v| String::from_utf8_lossy(v.as_bytes()));
    decompress(encoding.as_deref(), raw, max)
}

/// Undoes a `Content-Encoding` (`gzip`, `x-gzip`, `deflate`, `identity`, or a list of them
/// in the order they were applied), holding the result to `max` bytes.
pub fn decompress(encoding: Option<&str>, body: Bytes, max: usize) -> Result<Bytes, Reply> {
    let mut body = body;
    // Codings are listed in the order they were applied: undo them from the last.
    for coding in encoding.unwrap_or("").rsplit(',').map(str::trim).filter(|c| !c.is_empty()) {
        let reader: Box<dyn Read + '_> = match coding.to_ascii_lowercase().as_str() {
            "identity" => continue,
            "gzip" | "x-gzip" => Box::new(flate2::read::MultiGzDecoder::new(&body[..])),
            "deflate" => Box::new(flate2::read::ZlibDecoder::new(&body[..])),
            other => {
                return Err(Reply::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "Content-Encoding `{other}` is not supported (gzip, deflate, identity)"
                    ),
                ));
            }
        };
        let mut out = Vec::new();
        reader.take(max as u64 + 1).read_to_end(&mut out).map_err(|e| {
            Reply::new(
                StatusCode::BAD_REQUEST,
                format!("cannot decompress the body ({coding}): {e}"),
            )
        })?;
        if out.len() > max {
            return Err(Reply::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the decompressed body exceeds max_body_bytes ({max})"),
            ));
        }
        body = Bytes::from(out);
    }
    Ok(body)
}

/// How a request's events are handed to the pipeline.
#[derive(Clone, Copy, Debug)]
pub struct Delivery {
    /// Answer only once the events are acknowledged end to end.
    pub wait_for_acks: bool,
    /// How long to wait for the acknowledgement before answering 503.
    pub ack_timeout: Duration,
}

/// Sends a request's events and waits for what `delivery` asks; `Err` is the answer to give.
pub async fn deliver(
    out: &mut SourceSender,
    events: Vec<Event>,
    delivery: Delivery,
    shutdown: &ShutdownSignal,
) -> Result<(), Reply> {
    refuse_when_stopping(shutdown)?;
    if events.is_empty() {
        return Ok(());
    }
    let (events, acked) = if delivery.wait_for_acks {
        let (notifier, rx) = BatchNotifier::with_receiver();
        (events.into_iter().map(|e| e.with_notifier(&notifier)).collect(), Some(rx))
    } else {
        (events, None)
    };
    send(out, events).await?;
    let Some(acked) = acked else { return Ok(()) };
    match tokio::time::timeout(delivery.ack_timeout, acked).await {
        Ok(Ok(BatchStatus::Delivered)) => Ok(()),
        Ok(Ok(BatchStatus::Rejected)) => Err(Reply::new(
            StatusCode::BAD_REQUEST,
            "a sink rejected the events for good (they are kept as its dead letters)",
        )),
        Ok(Ok(BatchStatus::Errored) | Err(_)) => Err(not_delivered()),
        Err(_) => Err(not_acknowledged(delivery.ack_timeout)),
    }
}

/// Like [`deliver`] (always waiting for the acknowledgement), for answers that report a
/// partial success: `Ok(n)` once every event was delivered or rejected for good by a sink,
/// `n` of them rejected (kept as its dead letters). Each event carries its own
/// acknowledgement handle, so `n` counts events, not batches.
pub async fn deliver_counting(
    out: &mut SourceSender,
    events: Vec<Event>,
    ack_timeout: Duration,
    shutdown: &ShutdownSignal,
) -> Result<usize, Reply> {
    refuse_when_stopping(shutdown)?;
    if events.is_empty() {
        return Ok(0);
    }
    let (tx, rx) = oneshot::channel();
    let tally = Arc::new(Tally {
        rejected: AtomicUsize::new(0),
        errored: AtomicBool::new(false),
        done: Some(tx),
    });
    let events = events
        .into_iter()
        .map(|e| {
            let tally = Arc::clone(&tally);
            e.with_notifier(&BatchNotifier::with_callback(move |status| tally.count(status)))
        })
        .collect();
    // Only the events hold the tally now: it reports once the last of them is settled.
    drop(tally);
    send(out, events).await?;
    match tokio::time::timeout(ack_timeout, rx).await {
        Ok(Ok(Settled { errored: false, rejected })) => Ok(rejected),
        Ok(Ok(_) | Err(_)) => Err(not_delivered()),
        Err(_) => Err(not_acknowledged(ack_timeout)),
    }
}

/// What became of a request's events, counted by each event's acknowledgement handle; sent
/// when the last handle is gone.
struct Tally {
    rejected: AtomicUsize,
    errored: AtomicBool,
    done: Option<oneshot::Sender<Settled>>,
}

struct Settled {
    rejected: usize,
    errored: bool,
}

impl Tally {
    fn count(&self, status: BatchStatus) {
        match status {
            BatchStatus::Delivered => {}
            BatchStatus::Rejected => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
            }
            BatchStatus::Errored => self.errored.store(true, Ordering::Relaxed),
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        let settled =
            Settled { rejected: *self.rejected.get_mut(), errored: *self.errored.get_mut() };
        if let Some(done) = self.done.take() {
            // The request may have stopped waiting (timed out); nothing to tell then.
            let _ = done.send(settled);
        }
    }
}

fn refuse_when_stopping(shutdown: &ShutdownSignal) -> Result<(), Reply> {
    if shutdown.is_cancelled() {
        return Err(Reply::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "weir is stopping, or a reload is replacing this source; send the request again",
        ));
    }
    Ok(())
}

/// Hands the events to the pipeline, waiting at most [`FULL_WAIT`] for room.
async fn send(out: &mut SourceSender, events: Vec<Event>) -> Result<(), Reply> {
    // A send cut off here drops the events it holds: the client is told to send them again.
    match tokio::time::timeout(FULL_WAIT, out.send(events)).await {
        Err(_) => Err(Reply::retry(
            StatusCode::TOO_MANY_REQUESTS,
            "the pipeline is full; send the request again later",
        )),
        Ok(false) => Err(Reply::retry(
            StatusCode::SERVICE_UNAVAILABLE,
            "no component downstream takes events",
        )),
        Ok(true) => Ok(()),
    }
}

fn not_delivered() -> Reply {
    Reply::retry(
        StatusCode::SERVICE_UNAVAILABLE,
        "the events could not be delivered; send the request again later",
    )
}

fn not_acknowledged(ack_timeout: Duration) -> Reply {
    let secs = ack_timeout.as_secs();
    Reply::retry(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the events were not acknowledged within {secs} s; send them again later"),
    )
}

/// The server's connection series and rate-limited log lines.
struct Telemetry {
    id: String,
    open: Gauge,
    header_timeout: Counter,
    refused: Counter,
    handshake_failed: Counter,
    refused_log: Mutex<RateLimit>,
    handshake_log: Mutex<RateLimit>,
}

impl Telemetry {
    fn new(metrics: &ComponentMetrics) -> Self {
        Self {
            id: metrics.id().to_string(),
            open: super::open_connections_family().get_or_create_owned(&metrics.labels.labels()),
            header_timeout: super::closed_connections_family()
                .get_or_create_owned(&metrics.labels.with("reason", "header_timeout")),
            refused: metrics.error_counter(error_type::CONNECTION_REFUSED, Stage::Receiving),
            handshake_failed: metrics
                .error_counter(error_type::TLS_HANDSHAKE_FAILED, Stage::Receiving),
            refused_log: Mutex::default(),
            handshake_log: Mutex::default(),
        }
    }
}

/// Counts an answer in `weir_component_http_responses_total{status}` (a bounded set: the
/// statuses this module and its sources give).
pub fn count_response(metrics: &ComponentMetrics, status: StatusCode) {
    static FAMILY: OnceLock<Family<Labels, Counter>> = OnceLock::new();
    let family = FAMILY.get_or_init(|| {
        let family = Family::<Labels, Counter>::default();
        crate::metrics::global().register(
            "component_http_responses",
            "Answers a source gave to HTTP requests, by status",
            family.clone(),
        );
        family
    });
    family.get_or_create(&metrics.labels.with("status", status.as_str())).inc();
}

fn allow(limit: &Mutex<RateLimit>) -> Option<u64> {
    limit.lock().unwrap_or_else(|e| e.into_inner()).allow()
}

/// A bound listening socket, ready to serve.
pub struct Server {
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    limits: Limits,
    telemetry: Arc<Telemetry>,
    /// The configured address, under which a reload hands the listener on.
    address: SocketAddr,
    listeners: Listeners,
}

impl Server {
    /// Binds `address` (or takes the listener a replaced instance left on it, see
    /// [`Listeners`]) and reads the TLS files (a build's I/O).
    pub fn bind(
        address: SocketAddr,
        tls: Option<&TlsServerConfig>,
        limits: Limits,
        cx: &SourceContext,
    ) -> Result<Self, BuildError> {
        Self::bind_alpn(address, tls, &[], limits, cx)
    }

    /// As [`Server::bind`], offering the application protocols `alpn` in TLS handshakes.
    pub fn bind_alpn(
        address: SocketAddr,
        tls: Option<&TlsServerConfig>,
        alpn: &[&[u8]],
        limits: Limits,
        cx: &SourceContext,
    ) -> Result<Self, BuildError> {
        let acceptor = match tls {
            Some(tls) => tls
                .acceptor_for(alpn)
                .map_err(|message| BuildError::Client { what: "TLS", message })?,
            None => None,
        };
        let listener =
            cx.listeners.tcp(address).map_err(|source| BuildError::Bind { address, source })?;
        Ok(Self {
            listener,
            acceptor,
            limits,
            telemetry: Arc::new(Telemetry::new(&cx.metrics)),
            address,
            listeners: cx.listeners.clone(),
        })
    }

    pub fn is_tls(&self) -> bool {
        self.acceptor.is_some()
    }

    /// Serves HTTP/1.1 connections until `shutdown`; then lets each finish the request it is
    /// on (until the shutdown deadline) and returns. `handler` answers one request.
    pub async fn serve<H, F>(
        self,
        shutdown: ShutdownSignal,
        handler: H,
    ) -> Result<(), ComponentError>
    where
        H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        self.serve_with(shutdown, Http1(handler)).await
    }

    /// Serves connections in `protocol` until `shutdown`, as [`Server::serve`] does.
    pub async fn serve_with<P: Protocol>(
        self,
        shutdown: ShutdownSignal,
        protocol: P,
    ) -> Result<(), ComponentError> {
        let Self { listener, acceptor, limits, telemetry: t, address, listeners } = self;
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let connections = TaskTracker::new();
        let mut accept_log = RateLimit::default();
        loop {
            let accepted = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    if let Some(suppressed) = accept_log.allow() {
                        tracing::error!(component = %t.id, error = %e, suppressed, "cannot accept connections");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                t.refused.inc();
                if let Some(suppressed) = allow(&t.refused_log) {
                    tracing::warn!(component = %t.id, %peer, suppressed, "max_connections reached; connection closed");
                }
                continue;
            };
            let (t, acceptor, protocol, shutdown) =
                (Arc::clone(&t), acceptor.clone(), protocol.clone(), shutdown.clone());
            connections.spawn(async move {
                let _permit = permit;
                t.open.inc();
                accepted_connection(stream, peer, acceptor, limits, &t, &shutdown, protocol).await;
                t.open.dec();
            });
        }
        // During a reload the replacement takes the listener: clients connecting meanwhile
        // wait in its accept queue instead of being refused.
        listeners.park_tcp(address, listener);
        connections.close();
        connections.wait().await;
        Ok(())
    }
}

async fn accepted_connection<P: Protocol>(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    limits: Limits,
    t: &Telemetry,
    shutdown: &ShutdownSignal,
    protocol: P,
) {
    let header_timeout = match acceptor {
        None => protocol.serve(stream, peer, limits, shutdown).await,
        Some(acceptor) => {
            let timeout = limits.header_read_timeout;
            let handshake = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = tokio::time::timeout(timeout, acceptor.accept(stream)) => match r {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no handshake within {} s", timeout.as_secs())),
                },
            };
            match handshake {
                Ok(tls) => protocol.serve(tls, peer, limits, shutdown).await,
                Err(e) => {
                    t.handshake_failed.inc();
                    if let Some(suppressed) = allow(&t.handshake_log) {
                        tracing::warn!(component = %t.id, %peer, error = %e, suppressed, "TLS handshake failed; connection closed");
                    }
                    return;
                }
            }
        }
    };
    if header_timeout {
        t.header_timeout.inc();
    }
}

/// What a [`Server`] speaks on each accepted connection (after the TLS handshake).
pub trait Protocol: Clone + Send + Sync + 'static {
    /// Serves `io` until the peer leaves, the connection times out, or `shutdown` (then lets
    /// the requests in progress finish until the shutdown deadline). True when it was closed
    /// because it asked nothing within `limits.header_read_timeout`.
    fn serve<S>(
        &self,
        io: S,
        peer: SocketAddr,
        limits: Limits,
        shutdown: &ShutdownSignal,
    ) -> impl Future<Output = bool> + Send
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static;
}

/// HTTP/1.1, each request answered by the handler.
#[derive(Clone)]
pub struct Http1<H>(pub H);

impl<H, F> Protocol for Http1<H>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    /// On shutdown, finishes the request in progress.
    async fn serve<S>(
        &self,
        io: S,
        peer: SocketAddr,
        limits: Limits,
        shutdown: &ShutdownSignal,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked_in = Arc::clone(&asked);
        let handler = self.0.clone();
        let service = service_fn(move |req| {
            asked_in.store(true, std::sync::atomic::Ordering::Relaxed);
            let answer = handler(req, peer);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let served = tokio::select! {
            r = conn.as_mut() => r,
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                match shutdown.deadline() {
                    Some(d) => tokio::time::timeout_at(d.into(), conn.as_mut()).await.unwrap_or(Ok(())),
                    None => conn.as_mut().await,
                }
            }
        };
        // A kept-alive connection that asked for something is closed by the same timeout as a
        // half-sent request, but that is the ordinary end of a client.
        matches!(served, Err(e) if e.is_timeout() && !asked.load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        Bytes::from(e.finish().unwrap())
    }

    #[test]
    fn decompress_undoes_gzip_within_the_limit() {
        let body = gzip(b"hello\nworld\n");
        assert_eq!(decompress(Some("gzip"), body.clone(), 100).unwrap(), "hello\nworld\n");
        assert_eq!(
            decompress(Some("identity, x-gzip"), body.clone(), 100).unwrap(),
            "hello\nworld\n"
        );
        let err = decompress(Some("gzip"), body, 5).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
        let err = decompress(Some("gzip"), Bytes::from_static(b"not gzip"), 100).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        let err = decompress(Some("br"), Bytes::from_static(b"x"), 100).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(decompress(None, Bytes::from_static(b"x"), 100).unwrap(), "x");
    }

    #[test]
    fn credentials_are_checked_by_scheme_and_value() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(hyper::header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        let basic = ServerAuth::Basic { user: "app".into(), password: "s3cret".into() };
        let good = base64::engine::general_purpose::STANDARD.encode("app:s3cret");
        assert!(basic.authorize(&headers(&format!("Basic {good}"))).is_ok());
        assert!(basic.authorize(&headers(&format!("basic  {good}"))).is_ok());
        let bad = base64::engine::general_purpose::STANDARD.encode("app:wrong");
        let err = basic.authorize(&headers(&format!("Basic {bad}"))).unwrap_err();
        assert_eq!(
            (err.status, err.challenge),
            (StatusCode::UNAUTHORIZED, Some("Basic realm=\"weir\""))
        );
        assert!(basic.authorize(&HeaderMap::new()).is_err());
        assert!(basic.authorize(&headers("Bearer s3cret")).is_err());
        let bearer = ServerAuth::Bearer { token: "t0ken".into() };
        assert!(bearer.authorize(&headers("Bearer t0ken")).is_ok());
        assert!(bearer.authorize(&headers("Bearer t0ke")).is_err());
        assert!(bearer.authorize(&headers("Bearert0ken")).is_err());
        assert!(!format!("{basic:?}{bearer:?}").contains("s3cret"));
        assert!(!format!("{bearer:?}").contains("t0ken"));
    }

    #[tokio::test]
    async fn deliver_answers_by_the_acknowledgement() {
        use crate::channel::{Fanout, WhenFull, channel};
        use crate::event::EventStatus;
        use crate::metrics::{ComponentLabels, ComponentMetrics};
        let metrics = ComponentMetrics::new(ComponentLabels::new("h", "source", "http_server"));
        let (tx, mut rx) = channel(1 << 20, WhenFull::Block, None, None);
        let mut out =
            SourceSender::new(Fanout::new(vec![("s".into(), tx)]), metrics.output("_default"));
        let shutdown = ShutdownSignal::new();
        let wait = Delivery { wait_for_acks: true, ack_timeout: Duration::from_secs(5) };
        // Each event's outcome, in the order the events come.
        let sink = tokio::spawn(async move {
            use EventStatus::{Delivered, Errored, Rejected};
            let mut statuses = [Delivered, Errored, Rejected, Rejected, Errored].into_iter();
            while let Some(batch) = rx.recv().await {
                for e in batch.iter() {
                    e.update_status(statuses.next().unwrap_or(Delivered));
                }
            }
        });
        let events = |n| (0..n).map(|_| Event::from_message("x")).collect::<Vec<_>>();
        assert_eq!(deliver(&mut out, events(1), wait, &shutdown).await, Ok(()));
        let errored = deliver(&mut out, events(1), wait, &shutdown).await.unwrap_err();
        assert_eq!(
            (errored.status, errored.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
        let rejected = deliver(&mut out, events(1), wait, &shutdown).await.unwrap_err();
        assert_eq!((rejected.status, rejected.retry_after), (StatusCode::BAD_REQUEST, None));
        // One event rejected, one not delivered: send again (503), not 400, after which the
        // client would drop the event never delivered.
        let both = deliver(&mut out, events(2), wait, &shutdown).await.unwrap_err();
        assert_eq!((both.status, both.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(1)));
        drop(out);
        sink.await.unwrap();
    }

    #[tokio::test]
    async fn deliver_counting_counts_rejected_events_one_by_one() {
        use crate::channel::{Fanout, WhenFull, channel};
        use crate::event::EventStatus;
        use crate::metrics::{ComponentLabels, ComponentMetrics};
        let metrics = ComponentMetrics::new(ComponentLabels::new("o", "source", "opentelemetry"));
        let (tx, mut rx) = channel(1 << 20, WhenFull::Block, None, None);
        let mut out =
            SourceSender::new(Fanout::new(vec![("s".into(), tx)]), metrics.output("_default"));
        let shutdown = ShutdownSignal::new();
        // The sink rejects events whose message starts with "bad", and errors on "lost".
        let sink = tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                for e in batch.iter() {
                    let message = String::from_utf8_lossy(e.message().unwrap()).into_owned();
                    let status = if message.contains("bad") {
                        EventStatus::Rejected
                    } else if message.contains("lost") {
                        EventStatus::Errored
                    } else {
                        EventStatus::Delivered
                    };
                    e.update_status(status);
                }
            }
        });
        let events =
            |m: &[&'static str]| m.iter().map(|m| Event::from_message(*m)).collect::<Vec<_>>();
        let wait = Duration::from_secs(30);
        let n = deliver_counting(&mut out, events(&["ok", "bad", "ok", "bad"]), wait, &shutdown);
        assert_eq!(n.await, Ok(2));
        let n = deliver_counting(&mut out, events(&["ok", "ok"]), wait, &shutdown);
        assert_eq!(n.await, Ok(0));
        let lost = deliver_counting(&mut out, events(&["bad", "lost"]), wait, &shutdown).await;
        assert_eq!(lost.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE, "sent again");
        drop(out);
        sink.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_pipeline_is_429_and_an_unacknowledged_batch_503() {
        use crate::channel::{Fanout, WhenFull, channel};
        use crate::metrics::{ComponentLabels, ComponentMetrics};
        let metrics = ComponentMetrics::new(ComponentLabels::new("h", "source", "http_server"));
        // Room for one batch: the second waits, nobody receives.
        let (tx, _rx) = channel(1, WhenFull::Block, None, None);
        let mut out =
            SourceSender::new(Fanout::new(vec![("s".into(), tx)]), metrics.output("_default"));
        let shutdown = ShutdownSignal::new();
        let wait = Delivery { wait_for_acks: true, ack_timeout: Duration::from_secs(30) };
        let first = deliver(&mut out, vec![Event::from_message("a")], wait, &shutdown).await;
        assert_eq!(first.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        let second = deliver(&mut out, vec![Event::from_message("b")], wait, &shutdown).await;
        let second = second.unwrap_err();
        assert_eq!((second.status, second.retry_after), (StatusCode::TOO_MANY_REQUESTS, Some(1)));
        shutdown.trigger(Duration::from_secs(1));
        let stopping = deliver(&mut out, vec![Event::from_message("c")], wait, &shutdown).await;
        assert_eq!(stopping.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
