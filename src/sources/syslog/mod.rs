//! `syslog`: receives syslog messages over UDP, TCP or TLS (RFC 5424 and RFC 3164 messages;
//! RFC 5426 UDP, RFC 6587 TCP, RFC 5425 TLS).
//!
//! ```toml
//! [sources.syslog]
//! type = "syslog"
//! mode = "tcp"                 # or "udp"
//! address = "0.0.0.0:514"
//! max_message_bytes = 102400   # longer messages are cut (oversize = "truncate") or dropped
//! max_connections = 1024       # at the limit, the longest idle connection makes room
//! read_timeout_secs = 300      # close a connection that sends nothing for this long (0: never)
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
//! Connections (`tcp.rs`): a connection that sends nothing for `read_timeout_secs` (default
//! 300) is closed, as is a TLS handshake that takes as long (10 s when the timeout is off).
//! When `max_connections` (default 1024) are open, a new connection takes the place of the
//! one idle the longest, which is closed; only when every connection is busy sending is the
//! newcomer refused. So idle connections cannot lock senders out, and a sender that keeps
//! sending keeps its connection.
//!
//! Metrics, besides the common component series (messages and message bytes received):
//! `weir_component_open_connections` (gauge); `weir_component_connections_closed_total` by
//! `reason`: `idle_timeout` (`read_timeout_secs`), `evicted` (closed for a newcomer at
//! `max_connections`); `weir_component_errors_total` with `error_type` `parse_failed`,
//! `message_too_long`, `malformed_frame`, `connection_refused` (at `max_connections` with
//! every connection busy), `tls_handshake_failed`, `read_failed`. Closing and refusing
//! connections is logged at most every ten seconds per kind, with the number left out.
//!
//! Syslog has no acknowledgements: a message is delivered once weir has read it, and what a
//! sender wrote but weir had not read when it stopped is lost (as with any syslog server).
//!
//! Invariant: the messages that TCP connections have read and not yet queued downstream are
//! bounded for the whole source, not per connection: a budget of 1 MiB shared in shares of
//! 64 KiB (`tcp.rs`), each share overrun by at most one message of `max_message_bytes`. Besides
//! that, a connection holds at most one read (8 KiB) and one unfinished message; an idle one
//! holds no read buffer. At most `max_connections` connections are served (plus those being
//! closed for newcomers, which stop reading at once).

pub mod framing;
pub mod parse;
mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;

use super::util::lines::Oversize;
use super::util::tls::TlsServerConfig;
use crate::component::{SourceComponent, SourceContext};
use crate::error::{BuildError, Task};
use crate::error::{ConfigIssue, keep};
use crate::event::Event;
use crate::internal_events::RateLimit;
use crate::metrics::ComponentMetrics;
use framing::{Frame, FramingError};
use parse::Zone;

/// Most events a connection hands to the pipeline in one batch. A connection's batch, the
/// one queued and the one a sink is taking apart are alive at once, so larger batches hold
/// more memory without being faster.
const MAX_BATCH_EVENTS: usize = 256;
/// Most message bytes the UDP socket gathers into one batch.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Capacity of the queue between the UDP socket and the pipeline, in estimated event bytes.
pub const UDP_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// How long a TCP connection may send nothing before it is closed, unless
/// `read_timeout_secs` says otherwise.
pub const DEFAULT_READ_TIMEOUT_SECS: u64 = 300;

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
    /// Most TCP connections served at once; at the limit the longest idle one is closed for
    /// a newcomer. Default 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Close a TCP connection that sends nothing for this long; 0 never closes it. Default
    /// [`DEFAULT_READ_TIMEOUT_SECS`] (300).
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

impl SourceComponent for SyslogConfig {
    /// The time zone of timestamps that carry none.
    type Checked = Zone;

    fn check(&self) -> Result<Zone, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.max_message_bytes == 0 {
            issues.push(ConfigIssue::field("max_message_bytes", "must be at least 1"));
        }
        if self.max_connections == 0 {
            issues.push(ConfigIssue::field("max_connections", "must be at least 1"));
        }
        let zone = keep(&mut issues, "timezone", Zone::parse(self.timezone.as_deref()));
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
        zone.filter(|_| issues.is_empty()).ok_or(issues)
    }

    fn build(&self, zone: Zone, cx: SourceContext) -> Result<Task, BuildError> {
        let tls_error = |message| BuildError::Client { what: "TLS", message };
        let acceptor = match &self.tls {
            Some(tls) => tls.acceptor().map_err(tls_error)?,
            None => None,
        };
        let settings = Arc::new(Settings {
            max: self.max_message_bytes,
            oversize: self.oversize,
            zone,
            read_timeout: match self.read_timeout_secs.unwrap_or(DEFAULT_READ_TIMEOUT_SECS) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            telemetry: Telemetry::new(&cx.metrics),
            id: cx.id.clone(),
            address: self.address,
        });
        match self.mode {
            Mode::Udp => {
                let socket = (cx.listeners.udp(self.address))
                    .map_err(|source| BuildError::Bind { address: self.address, source })?;
                tracing::info!(component = %cx.id, address = %self.address, "listening for syslog over udp");
                Ok(Box::pin(udp::run(socket, settings, cx)))
            }
            Mode::Tcp => {
                let listener = (cx.listeners.tcp(self.address))
                    .map_err(|source| BuildError::Bind { address: self.address, source })?;
                tracing::info!(
                    component = %cx.id,
                    address = %self.address,
                    tls = acceptor.is_some(),
                    "listening for syslog over tcp"
                );
                let table = tcp::Connections::new(self.max_connections);
                // Taken now: what the reload does not hand out by its end is closed.
                let handed = cx.listeners.take_connections(self.address);
                Ok(Box::pin(tcp::run(listener, handed, acceptor, table, settings, cx)))
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
    /// The configured address: the key its sockets are handed on under during a reload.
    address: SocketAddr,
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
    evicted: Counter,
    idle_closed: Counter,
    handshake_failed: Counter,
    read_failed: Counter,
    udp_dropped: Counter,
    kernel_dropped: Counter,
    /// One limit per kind of log line, shared by all connections.
    parse_log: Mutex<RateLimit>,
    refused_log: Mutex<RateLimit>,
    evicted_log: Mutex<RateLimit>,
    idle_log: Mutex<RateLimit>,
    handshake_log: Mutex<RateLimit>,
    udp_log: Mutex<RateLimit>,
    kernel_log: Mutex<RateLimit>,
}

impl Telemetry {
    fn new(metrics: &ComponentMetrics) -> Self {
        Self {
            open_connections: super::util::open_connections_family()
                .get_or_create_owned(&metrics.labels.labels()),
            parse_failed: metrics.error_counter(
                crate::metrics::error_type::PARSE_FAILED,
                crate::metrics::Stage::Processing,
            ),
            too_long: metrics.error_counter(
                crate::metrics::error_type::MESSAGE_TOO_LONG,
                crate::metrics::Stage::Receiving,
            ),
            malformed: metrics.error_counter(
                crate::metrics::error_type::MALFORMED_FRAME,
                crate::metrics::Stage::Receiving,
            ),
            dropped_too_long: metrics
                .discarded_counter(crate::metrics::discard_reason::MESSAGE_TOO_LONG),
            refused: metrics.error_counter(
                crate::metrics::error_type::CONNECTION_REFUSED,
                crate::metrics::Stage::Receiving,
            ),
            evicted: super::util::closed_connections_family()
                .get_or_create_owned(&metrics.labels.with("reason", "evicted")),
            idle_closed: super::util::closed_connections_family()
                .get_or_create_owned(&metrics.labels.with("reason", "idle_timeout")),
            handshake_failed: metrics.error_counter(
                crate::metrics::error_type::TLS_HANDSHAKE_FAILED,
                crate::metrics::Stage::Receiving,
            ),
            read_failed: metrics.error_counter(
                crate::metrics::error_type::READ_FAILED,
                crate::metrics::Stage::Receiving,
            ),
            udp_dropped: metrics.discarded_counter(crate::metrics::discard_reason::BUFFER_FULL),
            kernel_dropped: metrics
                .discarded_counter(crate::metrics::discard_reason::KERNEL_BUFFER_FULL),
            parse_log: Mutex::default(),
            refused_log: Mutex::default(),
            evicted_log: Mutex::default(),
            idle_log: Mutex::default(),
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
