//! `syslog`: receives syslog messages over UDP, TCP or TLS (RFC 5424 and RFC 3164 messages;
//! RFC 5426 UDP, RFC 6587 TCP, RFC 5425 TLS).
//!
//! ```toml
//! [sources.syslog]
//! type = "syslog"
//! mode = "tcp"                 # or "udp"
//! address = "0.0.0.0:514"
//! max_message_bytes = 102400   # longer messages are cut (oversize = "truncate") or dropped
//! max_connections = 1024       # further connections are closed at once, counted and logged
//! read_timeout_secs = 300      # close a connection that sends nothing for this long
//! timezone = "local"           # zone of RFC 3164 timestamps (an IANA name, or "local")
//! ```
//!
//! Each message becomes one event (fields in [`parse`]). On TCP, octet-counted and
//! newline-terminated messages are told apart per message ([`framing`]), so rsyslog's
//! octet-counted forwarding and `logger`'s lines can share a port. A message that does not
//! parse as syslog still becomes an event: its raw bytes in `message`, the sender in
//! `source.ip`, the reason in `error.message`; it is counted as a parse error.
//!
//! Backpressure: each TCP connection is read by its own task, which stops reading while the
//! pipeline is full, so the sender's TCP window closes and the sender slows down. UDP has no
//! way to slow a sender: datagrams are read as fast as they come into a queue of
//! [`UDP_QUEUE_BYTES`]; when the queue is full, datagrams are dropped and counted
//! (`weir_component_discarded_events_total{reason="buffer_full"}`) and a warning is logged.
//! Datagrams the kernel drops before weir reads them (its socket buffer was full) are
//! counted too, from Linux's per-socket counter, as `reason="kernel_buffer_full"`.
//!
//! Metrics, besides the common component series (messages and message bytes received):
//! `weir_component_open_connections` (gauge); `weir_component_errors_total` with
//! `error_type` `parse_failed`, `message_too_long`, `malformed_frame`, `connection_refused`
//! (over `max_connections`), `tls_handshake_failed`, `read_failed`.
//!
//! Syslog has no acknowledgements: a message is delivered once weir has read it, and what a
//! sender wrote but weir had not read when it stopped is lost (as with any syslog server).
//!
//! Invariant: memory per connection is bounded by `max_message_bytes` plus one batch of
//! [`MAX_BATCH_BYTES`]; at most `max_connections` connections are served.

pub mod framing;
pub mod parse;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use tokio_util::task::TaskTracker;

use super::util::lines::Oversize;
use super::util::tls::TlsServerConfig;
use crate::config::ConfigIssue;
use crate::event::Event;
use crate::internal_events::RateLimit;
use crate::metrics::{ComponentMetrics, Labels};
use crate::topology::channel::{self, WhenFull};
use crate::topology::{ShutdownSignal, SourceContext, SourceSender, Task};
use framing::{Frame, FramingError, SyslogDecoder};
use parse::Zone;

/// Most events a connection hands to the pipeline in one batch. A connection's batch, the
/// one queued and the one a sink is taking apart are alive at once: 1,024 kept about 3,000
/// events (5 MiB) in flight in `benches/compare`'s Loki scenario; 256 lowered its peak by a
/// few MiB at the same speed (BENCHMARKS.md, 2026-12-05).
const MAX_BATCH_EVENTS: usize = 256;
/// Most message bytes a connection gathers into one batch.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Capacity of the queue between the UDP socket and the pipeline, in estimated event bytes.
pub const UDP_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;
/// How long a TLS handshake may take when no `read_timeout_secs` is set.
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `mode` of a syslog source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Udp,
    Tcp,
}

/// `[sources.<id>] type = "syslog"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `udp` or `tcp` (TCP with a `tls` table is syslog over TLS).
    pub mode: Mode,
    /// Where to listen, e.g. `0.0.0.0:514`.
    pub address: SocketAddr,
    /// Longest message kept whole, in bytes. Default 102400.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// `truncate` (default) keeps the first `max_message_bytes` of a longer message and notes
    /// it in `error.message`; `drop` discards it. Either way it is counted and logged.
    #[serde(default)]
    pub oversize: Oversize,
    /// Most TCP connections served at once. Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Close a TCP connection that sends nothing for this long. Default: never.
    #[serde(default)]
    pub read_timeout_secs: Option<u64>,
    /// TLS on TCP (RFC 5425).
    #[serde(default)]
    pub tls: Option<TlsServerConfig>,
    /// Zone of RFC 3164 timestamps, which carry none: an IANA name or `local` (the default).
    #[serde(default)]
    pub timezone: Option<String>,
}

fn default_max_message_bytes() -> usize {
    100 * 1024
}

fn default_max_connections() -> usize {
    1024
}

impl SyslogConfig {
    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.max_message_bytes == 0 {
            issues.push(ConfigIssue::field("max_message_bytes", "must be at least 1"));
        }
        if self.max_connections == 0 {
            issues.push(ConfigIssue::field("max_connections", "must be at least 1"));
        }
        if self.read_timeout_secs == Some(0) {
            issues.push(ConfigIssue::field(
                "read_timeout_secs",
                "must be at least 1 (leave it out for no timeout)",
            ));
        }
        if let Err(e) = Zone::parse(self.timezone.as_deref()) {
            issues.push(ConfigIssue::field("timezone", e));
        }
        if let Some(tls) = &self.tls {
            if self.mode == Mode::Udp {
                issues.push(ConfigIssue::field("tls", "TLS needs `mode = \"tcp\"`"));
            }
            issues.extend(tls.check());
        }
        if self.mode == Mode::Udp && self.read_timeout_secs.is_some() {
            issues
                .push(ConfigIssue::field("read_timeout_secs", "applies to `mode = \"tcp\"` only"));
        }
        issues
    }

    pub fn build(&self, cx: SourceContext) -> Result<Task, String> {
        let zone = Zone::parse(self.timezone.as_deref())?;
        let acceptor = match &self.tls {
            Some(tls) => tls.acceptor()?,
            None => None,
        };
        let settings = Arc::new(Settings {
            max: self.max_message_bytes,
            oversize: self.oversize,
            zone,
            read_timeout: self.read_timeout_secs.map(Duration::from_secs),
            telemetry: Telemetry::new(&cx.metrics),
            id: cx.id.clone(),
        });
        match self.mode {
            Mode::Udp => {
                let socket = std::net::UdpSocket::bind(self.address)
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    .and_then(UdpSocket::from_std)
                    .map_err(|e| format!("cannot listen on udp {}: {e}", self.address))?;
                tracing::info!(component = %cx.id, address = %self.address, "listening for syslog over udp");
                Ok(Box::pin(run_udp(socket, settings, cx)))
            }
            Mode::Tcp => {
                let listener = std::net::TcpListener::bind(self.address)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .and_then(TcpListener::from_std)
                    .map_err(|e| format!("cannot listen on tcp {}: {e}", self.address))?;
                tracing::info!(
                    component = %cx.id,
                    address = %self.address,
                    tls = acceptor.is_some(),
                    "listening for syslog over tcp"
                );
                let limit = Arc::new(Semaphore::new(self.max_connections));
                Ok(Box::pin(run_tcp(listener, acceptor, limit, settings, cx)))
            }
        }
    }
}

/// What every connection of a source shares.
struct Settings {
    max: usize,
    oversize: Oversize,
    zone: Zone,
    read_timeout: Option<Duration>,
    telemetry: Telemetry,
    id: String,
}

/// The source's own series and rate-limited log lines.
struct Telemetry {
    metrics: ComponentMetrics,
    open_connections: Gauge,
    parse_failed: Counter,
    too_long: Counter,
    malformed: Counter,
    dropped_too_long: Counter,
    refused: Counter,
    handshake_failed: Counter,
    read_failed: Counter,
    udp_dropped: Counter,
    kernel_dropped: Counter,
    /// One limit per kind of log line, shared by all connections.
    parse_log: Mutex<RateLimit>,
    refused_log: Mutex<RateLimit>,
    handshake_log: Mutex<RateLimit>,
    udp_log: Mutex<RateLimit>,
    kernel_log: Mutex<RateLimit>,
}

fn open_connections_family() -> &'static Family<Labels, Gauge> {
    static FAMILY: OnceLock<Family<Labels, Gauge>> = OnceLock::new();
    FAMILY.get_or_init(|| {
        let family = Family::<Labels, Gauge>::default();
        crate::metrics::global().register(
            "component_open_connections",
            "Connections a source is serving now",
            family.clone(),
        );
        family
    })
}

impl Telemetry {
    fn new(metrics: &ComponentMetrics) -> Self {
        Self {
            open_connections: open_connections_family()
                .get_or_create_owned(&metrics.labels.labels()),
            parse_failed: metrics.error_counter("parse_failed", "processing"),
            too_long: metrics.error_counter("message_too_long", "receiving"),
            malformed: metrics.error_counter("malformed_frame", "receiving"),
            dropped_too_long: metrics.discarded_counter("message_too_long"),
            refused: metrics.error_counter("connection_refused", "receiving"),
            handshake_failed: metrics.error_counter("tls_handshake_failed", "receiving"),
            read_failed: metrics.error_counter("read_failed", "receiving"),
            udp_dropped: metrics.discarded_counter("buffer_full"),
            kernel_dropped: metrics.discarded_counter("kernel_buffer_full"),
            parse_log: Mutex::default(),
            refused_log: Mutex::default(),
            handshake_log: Mutex::default(),
            udp_log: Mutex::default(),
            kernel_log: Mutex::default(),
            metrics: metrics.clone(),
        }
    }
}

/// `Some(suppressed)` when the line limited by `limit` may be logged now.
fn allow(limit: &Mutex<RateLimit>) -> Option<u64> {
    limit.lock().unwrap_or_else(|e| e.into_inner()).allow()
}

/// Counts an open connection for as long as it lives.
struct OpenConnection(Gauge);

impl OpenConnection {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Settings {
    /// Turns one frame into an event (or none, for a dropped over-long message), counting
    /// what went wrong. `logged` is the connection's "framing problem already logged" flag.
    fn frame_event(
        &self,
        frame: Frame,
        peer: SocketAddr,
        logged: &mut bool,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Event> {
        let t = &self.telemetry;
        let (raw, problem) = match frame {
            Frame::Message(raw) => (raw, None),
            Frame::Error { error, kept } => {
                match error {
                    FramingError::TooLong { .. } => t.too_long.inc(),
                    FramingError::BadOctetCount | FramingError::Incomplete { .. } => {
                        t.malformed.inc()
                    }
                };
                let text = error.describe(self.max, self.oversize);
                if !*logged {
                    *logged = true;
                    tracing::warn!(
                        component = %self.id,
                        peer = %peer,
                        problem = %text,
                        "syslog framing problem on this connection (further ones on it are \
                         counted, not logged)"
                    );
                }
                match kept {
                    Some(raw) => (raw, Some(text)),
                    None => {
                        t.dropped_too_long.inc();
                        return None;
                    }
                }
            }
        };
        Some(self.event(raw, Some(peer), now, problem))
    }

    fn event(
        &self,
        raw: bytes::Bytes,
        peer: Option<SocketAddr>,
        now: chrono::DateTime<chrono::Utc>,
        problem: Option<String>,
    ) -> Event {
        let (event, parsed) = parse::to_event(raw, peer, now, self.zone, problem);
        if !parsed {
            self.telemetry.parse_failed.inc();
            if let Some(suppressed) = allow(&self.telemetry.parse_log) {
                tracing::warn!(
                    component = %self.id,
                    peer = ?peer,
                    suppressed,
                    "message is not syslog; it continues with its raw text and an error.message field"
                );
            }
        }
        event
    }
}

async fn run_tcp(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    limit: Arc<Semaphore>,
    settings: Arc<Settings>,
    cx: SourceContext,
) -> Result<(), ()> {
    let connections = TaskTracker::new();
    let mut accept_log = RateLimit::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cx.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: wait a little instead of spinning.
                if let Some(suppressed) = accept_log.allow() {
                    tracing::error!(component = %cx.id, error = %e, suppressed, "cannot accept connections");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            settings.telemetry.refused.inc();
            if let Some(suppressed) = allow(&settings.telemetry.refused_log) {
                tracing::warn!(
                    component = %cx.id,
                    peer = %peer,
                    suppressed,
                    "max_connections reached; connection closed"
                );
            }
            drop(stream);
            continue;
        };
        let settings = Arc::clone(&settings);
        let out = cx.out.clone();
        let shutdown = cx.shutdown.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _open = OpenConnection::new(&settings.telemetry.open_connections);
            match acceptor {
                None => serve(stream, peer, &settings, out, &shutdown).await,
                Some(acceptor) => {
                    let timeout = settings.read_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
                    match handshake(&acceptor, stream, timeout, &shutdown).await {
                        Ok(Some(tls)) => serve(tls, peer, &settings, out, &shutdown).await,
                        Ok(None) => {}
                        Err(e) => {
                            settings.telemetry.handshake_failed.inc();
                            if let Some(suppressed) = allow(&settings.telemetry.handshake_log) {
                                tracing::warn!(
                                    component = %settings.id,
                                    peer = %peer,
                                    error = %e,
                                    suppressed,
                                    "TLS handshake failed; connection closed"
                                );
                            }
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// `Ok(None)` when shutdown came first.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    shutdown: &ShutdownSignal,
) -> Result<Option<tokio_rustls::server::TlsStream<TcpStream>>, String> {
    tokio::select! {
        _ = shutdown.cancelled() => Ok(None),
        r = tokio::time::timeout(timeout, acceptor.accept(stream)) => match r {
            Ok(Ok(s)) => Ok(Some(s)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no handshake within {} s", timeout.as_secs())),
        },
    }
}

/// What ended the reading of a connection.
enum End {
    /// The sender closed it, weir is stopping, or it was idle too long.
    Closed,
    /// No consumer is left downstream.
    NoConsumer,
}

/// Reads one connection until it ends: frames become events, gathered into batches of what
/// is already readable, each sent before the next read (that wait is the backpressure).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    settings: &Settings,
    mut out: SourceSender,
    shutdown: &ShutdownSignal,
) {
    let t = &settings.telemetry;
    let mut frames = FramedRead::new(stream, SyslogDecoder::new(settings.max, settings.oversize));
    let mut logged = false;
    let mut batch: Vec<Event> = Vec::new();
    tracing::debug!(component = %settings.id, peer = %peer, "connection opened");
    let end = 'conn: loop {
        let first = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break 'conn End::Closed,
            r = next_frame(&mut frames, settings.read_timeout) => r,
        };
        let mut ended = false;
        let mut pending = Some(first);
        let mut bytes = 0usize;
        while let Some(next) = pending.take() {
            match next {
                Read::Frame(frame) => {
                    let len = frame_len(&frame);
                    bytes += len;
                    t.metrics.received(0, len);
                    let now = chrono::Utc::now();
                    if let Some(e) = settings.frame_event(frame, peer, &mut logged, now) {
                        batch.push(e);
                    }
                }
                Read::Eof => ended = true,
                Read::Idle => {
                    tracing::debug!(component = %settings.id, peer = %peer, "idle connection closed (read_timeout_secs)");
                    ended = true;
                }
                Read::Failed(e) => {
                    t.read_failed.inc();
                    tracing::debug!(component = %settings.id, peer = %peer, error = %e, "connection read failed");
                    ended = true;
                }
            }
            if ended || batch.len() >= MAX_BATCH_EVENTS || bytes >= MAX_BATCH_BYTES {
                break;
            }
            // Whatever is already readable joins this batch; nothing waits for more.
            pending = match frames.next().now_or_never() {
                Some(Some(Ok(f))) => Some(Read::Frame(f)),
                Some(Some(Err(e))) => Some(Read::Failed(e)),
                Some(None) => Some(Read::Eof),
                None => None,
            };
        }
        let events = std::mem::take(&mut batch);
        t.metrics.received(events.len(), 0);
        if !out.send(events).await {
            break End::NoConsumer;
        }
        if ended {
            break End::Closed;
        }
    };
    if matches!(end, End::NoConsumer) {
        tracing::debug!(component = %settings.id, peer = %peer, "no consumer left; connection closed");
    }
    // Close politely (a TLS close_notify, then FIN), but never wait on a peer for long.
    let mut stream = frames.into_inner();
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
    tracing::debug!(component = %settings.id, peer = %peer, "connection closed");
}

/// One read from a connection.
enum Read {
    Frame(Frame),
    Eof,
    Idle,
    Failed(std::io::Error),
}

async fn next_frame<S: AsyncRead + Unpin>(
    frames: &mut FramedRead<S, SyslogDecoder>,
    timeout: Option<Duration>,
) -> Read {
    let next = match timeout {
        Some(t) => match tokio::time::timeout(t, frames.next()).await {
            Ok(n) => n,
            Err(_) => return Read::Idle,
        },
        None => frames.next().await,
    };
    match next {
        Some(Ok(f)) => Read::Frame(f),
        Some(Err(e)) => Read::Failed(e),
        None => Read::Eof,
    }
}

fn frame_len(frame: &Frame) -> usize {
    match frame {
        Frame::Message(b) => b.len(),
        Frame::Error { kept, .. } => kept.as_ref().map_or(0, |b| b.len()),
    }
}

async fn run_udp(socket: UdpSocket, settings: Arc<Settings>, cx: SourceContext) -> Result<(), ()> {
    let t = &settings.telemetry;
    // The queue never makes the socket wait: when it is full the batch is dropped, counted in
    // `udp_dropped` (reason `buffer_full`), and logged below.
    let (queue, mut pending) =
        channel::channel(UDP_QUEUE_BYTES, WhenFull::DropNewest, None, Some(t.udp_dropped.clone()));
    let mut out = cx.out;
    let forwarder = tokio::spawn(async move {
        while let Some(events) = pending.recv().await {
            if !out.send(events).await {
                break;
            }
        }
    });
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut read_log = RateLimit::default();
    let mut kernel = KernelDrops::new(&socket);
    let mut check_kernel = tokio::time::interval(Duration::from_secs(1));
    check_kernel.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            biased;
            _ = cx.shutdown.cancelled() => break,
            _ = check_kernel.tick() => {
                let dropped = kernel.as_mut().map_or(0, KernelDrops::poll);
                if dropped > 0 {
                    t.kernel_dropped.inc_by(dropped);
                    if let Some(suppressed) = allow(&t.kernel_log) {
                        tracing::warn!(
                            component = %cx.id,
                            count = dropped,
                            suppressed,
                            "the kernel dropped udp messages: weir did not read them fast enough \
                             (raise net.core.rmem_default, or add weir instances)"
                        );
                    }
                }
                continue;
            }
            r = socket.recv_from(&mut buf) => r,
        };
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        let mut next = Some(first);
        while let Some(received) = next.take() {
            match received {
                Ok((n, peer)) => {
                    bytes += n;
                    t.metrics.received(0, n);
                    if let Some(e) = datagram_event(&settings, &buf[..n], peer) {
                        batch.push(e);
                    }
                }
                Err(e) => {
                    // A previous send's ICMP error and the like: nothing was lost here.
                    t.read_failed.inc();
                    if let Some(suppressed) = read_log.allow() {
                        tracing::warn!(component = %cx.id, error = %e, suppressed, "udp receive failed");
                    }
                }
            }
            if batch.len() >= MAX_BATCH_EVENTS || bytes >= MAX_BATCH_BYTES {
                break;
            }
            next = match socket.try_recv_from(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                r => Some(r),
            };
        }
        t.metrics.received(batch.len(), 0);
        let count = batch.len();
        let dropped_before = t.udp_dropped.get();
        if queue.send(batch).await.is_err() {
            break;
        }
        if t.udp_dropped.get() > dropped_before
            && let Some(suppressed) = allow(&t.udp_log)
        {
            tracing::warn!(
                component = %cx.id,
                count,
                suppressed,
                "pipeline is full; udp messages dropped"
            );
        }
    }
    drop(queue);
    let _ = forwarder.await;
    Ok(())
}

/// Datagrams the kernel dropped for one socket because its receive buffer was full, which
/// weir cannot see in what it reads. Linux reports them per socket in the `drops` column of
/// `/proc/net/udp` and `/proc/net/udp6`, where the socket is known by its inode; elsewhere
/// they are not counted.
struct KernelDrops {
    inode: u64,
    last: u64,
}

impl KernelDrops {
    fn new(socket: &UdpSocket) -> Option<Self> {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
        let inode = link.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()?;
        let mut drops = Self { inode, last: 0 };
        drops.last = drops.read()?;
        Some(drops)
    }

    fn read(&self) -> Option<u64> {
        ["/proc/net/udp", "/proc/net/udp6"]
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .find_map(|table| socket_drops(&table, self.inode))
    }

    /// Drops since the last call.
    fn poll(&mut self) -> u64 {
        let Some(now) = self.read() else { return 0 };
        let new = now.saturating_sub(self.last);
        self.last = now;
        new
    }
}

/// The `drops` column of the line of socket `inode` in a `/proc/net/udp` table.
fn socket_drops(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        cols.get(12)?.parse().ok()
    })
}

/// The event of one datagram (one message; a trailing line feed or NUL is removed).
fn datagram_event(settings: &Settings, data: &[u8], peer: SocketAddr) -> Option<Event> {
    let mut data = data;
    while let [rest @ .., b'\n' | b'\r' | b'\0'] = data {
        data = rest;
    }
    if data.is_empty() {
        return None;
    }
    let t = &settings.telemetry;
    let now = chrono::Utc::now();
    if data.len() > settings.max {
        t.too_long.inc();
        let problem = FramingError::TooLong { length: Some(data.len() as u64) }
            .describe(settings.max, settings.oversize)
            .replace("octet-counted frame", "datagram");
        if let Some(suppressed) = allow(&t.parse_log) {
            tracing::warn!(component = %settings.id, peer = %peer, problem = %problem, suppressed, "syslog datagram too long");
        }
        return match settings.oversize {
            Oversize::Truncate => Some(settings.event(
                bytes::Bytes::copy_from_slice(&data[..settings.max]),
                Some(peer),
                now,
                Some(problem),
            )),
            Oversize::Drop => {
                t.dropped_too_long.inc();
                None
            }
        };
    }
    Some(settings.event(bytes::Bytes::copy_from_slice(data), Some(peer), now, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_drops_of_this_socket_are_read_from_proc() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  120: 0100007F:D431 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17
  121: 0100007F:D432 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 5
";
        assert_eq!(socket_drops(table, 4243), Some(5));
        assert_eq!(socket_drops(table, 4242), Some(17));
        assert_eq!(socket_drops(table, 1), None);
    }

    #[tokio::test]
    async fn this_machines_proc_table_knows_a_fresh_socket() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if !std::path::Path::new("/proc/net/udp").exists() {
            return;
        }
        let mut drops = KernelDrops::new(&socket).expect("the socket is in /proc/net/udp");
        assert_eq!(drops.poll(), 0);
    }
}
