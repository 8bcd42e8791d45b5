//! `socket` sink: writes events to a TCP (optionally TLS), UDP or Unix stream socket: to an
//! rsyslog, syslog-ng or SIEM receiver, or anything that reads lines.
//!
//! ```toml
//! [sinks.siem]
//! type = "socket"
//! inputs = ["parsed"]
//! mode = "tcp"                       # "tcp", "udp" or "unix"
//! address = "siem.example.com:6514"  # "host:port"; `path` for unix
//! framing = "octet_counting"         # or "newline" (the default); not for udp
//! encoding.codec = "syslog"          # "json" (the default), "text" (the message) or "syslog"
//! encoding.syslog.facility = "local0"
//! encoding.syslog.structured_data = { "model@32473" = { name = "model.name" } }
//! tls = { ca_file = "/etc/weir/siem-ca.pem" }
//! ```
//!
//! **Syslog.** RFC 5424: PRI from `encoding.syslog.facility` (or `facility_field`) and the
//! severity read from `severity_field` (`log.level` by default: `error`, `warning`, `info`
//! ... or 0-7); HOSTNAME, APP-NAME, PROCID and MSGID from fields (`host.name`,
//! `service.name`, `process.pid`, none); structured data mapped from fields; the event's
//! time with microseconds; then the message. Use octet counting for messages that hold line
//! feeds.
//!
//! **Delivery.** A socket gives no receipt: an event counts as delivered (and is acknowledged
//! upstream) once its bytes were written to the socket, which means the kernel took them, not
//! that the receiver processed them. A failed write or connection is tried again on a new
//! connection with capped exponential backoff (1 s to 30 s) for as long as weir runs, so a
//! dead receiver holds the pipeline (backpressure) instead of losing events; a batch whose
//! write failed may reach the receiver twice. Before each write to a TCP or Unix stream the
//! sink checks whether the receiver has closed the connection, so a restarted receiver costs
//! no write into a dead connection. Over TLS 1.3 a new connection is used only once the
//! receiver has accepted it: the client's side of that handshake ends before the receiver has
//! checked the client (its certificate, when it requires one), and a refusal comes after, as
//! an alert; bytes written before it would count as delivered and be lost. The sink waits for
//! the receiver's session ticket (which OpenSSL, Go and rustls servers send once they accept a
//! client) or its alert; a receiver that sends no ticket is taken as accepting at the end of
//! `connect_timeout_secs`. Once weir begins to stop, a failed write is not retried:
//! its events are marked errored (read again by their sources after a restart).
//!
//! **UDP** sends one event per datagram, unframed (RFC 5426; what rsyslog's omfwd and Vector
//! send): no line feed is added, and `framing` is refused for it. A datagram too large for
//! the network is rejected (dead letter). UDP gives no signal of loss: a receiver that is
//! down or overrun drops datagrams silently.
//!
//! Invariant: an event is released as delivered only after its bytes were written whole.

pub mod encode;

use std::io::ErrorKind;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket, UnixStream};
use tokio::sync::Notify;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, Resumption, Tls12ClientSessionValue,
    Tls13ClientSessionValue,
};
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, NamedGroup, ProtocolVersion, RootCertStore};

use super::util::retry::Backoff;
use crate::component::{SinkComponent, SinkContext};
use crate::dead_letter::Rejected;
use crate::error::{BuildError, ComponentError, ConfigIssue, Task};
use crate::event::{EventFinalizers, EventStatus, batch_size};
use crate::internal_events::RateLimit;
use crate::metrics::{Stage, error_type};
use encode::{Encoder, Framing, SocketEncoding, frame};

/// Backoff between connection attempts and writes tried again.
const BACKOFF: Backoff =
    Backoff { initial: Duration::from_secs(1), max: Duration::from_secs(30), max_retries: None };
/// Encoded bytes gathered from queued batches into one write.
const WRITE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Tcp,
    Udp,
    Unix,
}

/// `[sinks.<id>] type = "socket"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSinkConfig {
    /// `tcp`, `udp` (one datagram per event) or `unix` (a Unix stream socket at `path`).
    /// Required.
    pub mode: Mode,
    /// `host:port` of the receiver (tcp, udp).
    #[serde(default)]
    pub address: Option<String>,
    /// The socket's path (unix).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// How messages are delimited on a stream (tcp, unix): `newline` (the default) or
    /// `octet_counting` (RFC 6587 `LEN SP MSG`, for messages holding line feeds). Not for
    /// udp, which sends one event per datagram, unframed.
    #[serde(default)]
    pub framing: Option<Framing>,
    /// How an event becomes a message. Default JSON.
    #[serde(default)]
    pub encoding: SocketEncoding,
    /// TLS over TCP.
    #[serde(default)]
    pub tls: Option<TlsClientConfig>,
    /// How long a connection may take. Default 10.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// How long one write may wait on a receiver that does not read before the connection is
    /// given up (and the write tried again on a new one). Default 60.
    #[serde(default = "default_write_timeout")]
    pub write_timeout_secs: u64,
}

/// `tls` of the socket sink (rustls).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsClientConfig {
    /// Default true when the table is present.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// CA certificates the receiver is verified with (PEM); default: the Mozilla roots built
    /// into weir.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its chain (PEM), for receivers that require one.
    #[serde(default)]
    pub crt_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name the receiver's certificate must carry; default the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
}

fn yes() -> bool {
    true
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_write_timeout() -> u64 {
    60
}

impl SinkComponent for SocketSinkConfig {
    type Checked = Encoder;

    fn check(&self) -> Result<Encoder, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        match (self.mode, &self.address, &self.path) {
            (Mode::Tcp | Mode::Udp, Some(a), None) => {
                if a.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()) {
                    issues.push(ConfigIssue::field("address", format!("`{a}` is not host:port")));
                }
            }
            (Mode::Tcp | Mode::Udp, _, _) => {
                issues.push(ConfigIssue::field("address", "tcp and udp take `address`, not `path`"))
            }
            (Mode::Unix, None, Some(_)) => {}
            (Mode::Unix, _, _) => {
                issues.push(ConfigIssue::field("path", "unix takes `path`, not `address`"))
            }
        }
        if self.mode == Mode::Udp && self.framing.is_some() {
            issues.push(ConfigIssue::field(
                "framing",
                "udp sends one event per datagram, unframed (RFC 5426); `framing` is for tcp and unix",
            ));
        }
        if let Some(tls) = &self.tls {
            if self.mode != Mode::Tcp && tls.enabled {
                issues.push(ConfigIssue::field("tls", "TLS is for mode tcp"));
            }
            if tls.crt_file.is_some() != tls.key_file.is_some() {
                issues.push(ConfigIssue::field("tls", "`crt_file` and `key_file` go together"));
            }
        }
        for (field, v) in [
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("write_timeout_secs", self.write_timeout_secs),
        ] {
            if v == 0 {
                issues.push(ConfigIssue::field(field, "must be at least 1"));
            }
        }
        let encoder = Encoder::new(&self.encoding).map_err(|e| issues.extend(e)).ok();
        match encoder {
            Some(e) if issues.is_empty() => Ok(e),
            _ => Err(issues),
        }
    }

    fn build(&self, encoder: Encoder, cx: SinkContext) -> Result<Task, BuildError> {
        let tls = match self.tls.as_ref().filter(|t| t.enabled) {
            Some(t) => Some(t.connector(self.address.as_deref().unwrap_or_default())?),
            None => None,
        };
        let target = match self.mode {
            Mode::Unix => Target::Unix(self.path.clone().unwrap_or_default()),
            Mode::Tcp => Target::Tcp(self.address.clone().unwrap_or_default(), tls),
            Mode::Udp => Target::Udp(self.address.clone().unwrap_or_default()),
        };
        let sink = SocketSink {
            encoder,
            framing: (self.mode != Mode::Udp).then(|| self.framing.unwrap_or_default()),
            target,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            write_timeout: Duration::from_secs(self.write_timeout_secs),
            cx,
            conn: None,
            log: RateLimit::default(),
        };
        Ok(Box::pin(sink.run()))
    }
}

impl TlsClientConfig {
    /// Reads the files; every failure names its field and file.
    fn connector(&self, address: &str) -> Result<TlsTarget, BuildError> {
        use crate::sources::util::tls::read_certs;
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        let err = |message: String| BuildError::Client { what: "TLS", message };
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(ca) => {
                for c in read_certs(ca, "tls.ca_file").map_err(err)? {
                    roots.add(c).map_err(|e| err(format!("tls.ca_file {}: {e}", ca.display())))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match (&self.crt_file, &self.key_file) {
            (Some(crt), Some(key)) => {
                let certs = read_certs(crt, "tls.crt_file").map_err(err)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| err(format!("tls.key_file {}: {e}", key.display())))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| err(e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        let host = match &self.server_name {
            Some(n) => n.clone(),
            None => address
                .rsplit_once(':')
                .map_or(address, |(h, _)| h)
                .trim_matches(['[', ']'])
                .to_string(),
        };
        let name = ServerName::try_from(host.clone())
            .map_err(|e| err(format!("`{host}` is not a server name: {e}")))?;
        let tickets = Arc::new(Tickets::default());
        config.resumption = Resumption::store(tickets.clone());
        Ok((TlsConnector::from(Arc::new(config)), name, tickets))
    }
}

type TlsTarget = (TlsConnector, tokio_rustls::rustls::pki_types::ServerName<'static>, Arc<Tickets>);

enum Target {
    Tcp(String, Option<TlsTarget>),
    Udp(String),
    Unix(PathBuf),
}

enum Conn {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
    Udp(UdpSocket),
}

impl Conn {
    /// Whether the receiver has closed a stream (a read returns end of file). Data it sent
    /// is read and ignored.
    fn closed_by_peer(&self) -> bool {
        let mut scratch = [0u8; 512];
        let read = match self {
            Self::Tcp(s) => s.try_read(&mut scratch),
            Self::Unix(s) => s.try_read(&mut scratch),
            Self::Tls(_) | Self::Udp(_) => return false,
        };
        match read {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != ErrorKind::WouldBlock,
        }
    }
}

/// Encoded events waiting to be written: their frames and acknowledgement handles.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Where each event's frame ends in `bytes` (datagrams are sent one by one).
    ends: Vec<usize>,
    finalizers: Vec<EventFinalizers>,
}

struct SocketSink {
    encoder: Encoder,
    /// None for datagrams, which carry one message each as it is.
    framing: Option<Framing>,
    target: Target,
    connect_timeout: Duration,
    write_timeout: Duration,
    cx: SinkContext,
    conn: Option<Conn>,
    log: RateLimit,
}

impl SocketSink {
    async fn run(mut self) -> Result<(), ComponentError> {
        let out = self.cx.metrics.output("_default");
        while let Some(first) = self.cx.input.recv().await {
            let mut pending = Pending::default();
            let mut next = Some(first);
            while let Some(events) = next.take() {
                self.cx.metrics.received(events.len(), batch_size(&events));
                let now = chrono::Utc::now();
                let mut message = Vec::new();
                for mut e in events {
                    message.clear();
                    self.encoder.encode(&e, now, &mut message);
                    match self.framing {
                        Some(framing) => frame(framing, &message, &mut pending.bytes),
                        None => pending.bytes.extend_from_slice(&message),
                    }
                    pending.ends.push(pending.bytes.len());
                    pending.finalizers.push(std::mem::take(e.finalizers_mut()));
                    drop(e);
                }
                if pending.bytes.len() < WRITE_BYTES {
                    next = self.cx.input.try_recv();
                }
            }
            let (events, bytes) = (pending.ends.len(), pending.bytes.len());
            if self.deliver(pending).await {
                out.sent(events, bytes);
            }
        }
        Ok(())
    }

    /// Writes `pending` whole, connecting and retrying as needed; `false` when it was given up
    /// (weir is stopping), its events then marked errored.
    async fn deliver(&mut self, mut pending: Pending) -> bool {
        let mut attempt = 0u32;
        loop {
            let result = match self.connected().await {
                Ok(()) => self.write(&mut pending).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return true,
                Err(e) => {
                    self.conn = None;
                    self.cx.metrics.error(error_type::WRITE_FAILED, Stage::Sending);
                    if self.cx.shutdown.is_cancelled() {
                        tracing::error!(component = %self.cx.id, error = %e,
                            "cannot write while stopping; these events will be read again");
                        for f in pending.finalizers {
                            f.update_status(EventStatus::Errored);
                        }
                        return false;
                    }
                    let delay = BACKOFF.delay(attempt, &mut rand::rng());
                    if let Some(suppressed) = self.log.allow() {
                        tracing::warn!(component = %self.cx.id, error = %e, suppressed,
                            retry_in_ms = delay.as_millis() as u64, "cannot write to the socket; trying again");
                    }
                    attempt = attempt.saturating_add(1);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.cx.shutdown.cancelled() => {}
                    }
                }
            }
        }
    }

    /// Makes sure there is an open connection (a stream the receiver closed is dropped).
    async fn connected(&mut self) -> std::io::Result<()> {
        if self.conn.as_ref().is_some_and(Conn::closed_by_peer) {
            tracing::info!(component = %self.cx.id, "the receiver closed the connection; reconnecting");
            self.conn = None;
        }
        if self.conn.is_some() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let tickets_before = match &self.target {
            Target::Tcp(_, Some((_, _, tickets))) => tickets.received(),
            _ => 0,
        };
        let connect = async {
            Ok::<_, std::io::Error>(match &self.target {
                Target::Tcp(address, tls) => {
                    let stream = TcpStream::connect(address.as_str()).await?;
                    let _ = stream.set_nodelay(true);
                    match tls {
                        None => Conn::Tcp(stream),
                        Some((connector, name, _)) => {
                            let s = connector.connect(name.clone(), stream).await?;
                            Conn::Tls(Box::new(s))
                        }
                    }
                }
                Target::Unix(path) => Conn::Unix(UnixStream::connect(path).await?),
                Target::Udp(address) => {
                    let bind = if address.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
                    let socket = UdpSocket::bind(bind).await?;
                    socket.connect(address.as_str()).await?;
                    Conn::Udp(socket)
                }
            })
        };
        let mut conn = tokio::time::timeout_at(deadline, connect)
            .await
            .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "connecting timed out"))??;
        if let (Conn::Tls(stream), Target::Tcp(_, Some((_, _, tickets)))) =
            (&mut conn, &self.target)
        {
            accepted(stream, tickets, tickets_before, deadline).await?;
        }
        tracing::info!(component = %self.cx.id, "connected");
        self.conn = Some(conn);
        Ok(())
    }

    /// Writes what is pending; on success the events are released as delivered.
    async fn write(&mut self, pending: &mut Pending) -> std::io::Result<()> {
        let cx = &self.cx;
        let Some(conn) = self.conn.as_mut() else {
            return Err(std::io::Error::new(ErrorKind::NotConnected, "not connected"));
        };
        let write = async {
            match conn {
                Conn::Tcp(s) => s.write_all(&pending.bytes).await,
                Conn::Unix(s) => s.write_all(&pending.bytes).await,
                Conn::Tls(s) => {
                    s.write_all(&pending.bytes).await?;
                    s.flush().await
                }
                Conn::Udp(s) => send_datagrams(s, pending, cx).await,
            }
        };
        tokio::time::timeout(self.write_timeout, write)
            .await
            .map_err(|_| std::io::Error::new(ErrorKind::TimedOut, "the receiver did not read"))??;
        // Written whole: every event is released as delivered.
        pending.finalizers.clear();
        Ok(())
    }
}

/// Waits for a TLS 1.3 receiver's verdict on the client: its first session ticket (counted
/// by `tickets` beyond `before`) or any bytes mean accepted; an alert (a required client
/// certificate missing or refused) or a close is the error. Without either by `deadline` the
/// connection is taken as accepted (a receiver that sends no tickets). TLS 1.2 needs no wait:
/// its handshake ends with the receiver's Finished, sent after its checks.
async fn accepted(
    stream: &mut TlsStream<TcpStream>,
    tickets: &Tickets,
    before: u64,
    deadline: tokio::time::Instant,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt;
    if stream.get_ref().1.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return Ok(());
    }
    // A syslog receiver sends nothing: bytes read here are not anyone's data.
    let mut scratch = [0u8; 256];
    loop {
        if tickets.received() > before {
            return Ok(());
        }
        tokio::select! {
            read = stream.read(&mut scratch) => return match read {
                Ok(0) => Err(std::io::Error::new(
                    ErrorKind::ConnectionAborted,
                    "the receiver closed the connection after the TLS handshake",
                )),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            () = tickets.arrived.notified() => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::debug!("no session ticket from the receiver; taking the connection as accepted");
                return Ok(());
            }
        }
    }
}

/// The session store of a sink's TLS connections: rustls's in-memory cache, counting the TLS
/// 1.3 tickets receivers send, which tell `accepted` that the receiver took the client.
#[derive(Debug)]
struct Tickets {
    cache: ClientSessionMemoryCache,
    count: AtomicU64,
    arrived: Notify,
}

impl Default for Tickets {
    fn default() -> Self {
        Self {
            cache: ClientSessionMemoryCache::new(32),
            count: AtomicU64::new(0),
            arrived: Notify::new(),
        }
    }
}

impl Tickets {
    fn received(&self) -> u64 {
        self.count.load(Ordering::Acquire)
    }
}

impl ClientSessionStore for Tickets {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.cache.set_kx_hint(server_name, group);
    }
    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.cache.kx_hint(server_name)
    }
    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.cache.set_tls12_session(server_name, value);
    }
    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.cache.tls12_session(server_name)
    }
    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.cache.remove_tls12_session(server_name);
    }
    fn insert_tls13_ticket(
        &self,
        server_name: ServerName<'static>,
        value: Tls13ClientSessionValue,
    ) {
        self.cache.insert_tls13_ticket(server_name, value);
        self.count.fetch_add(1, Ordering::Release);
        self.arrived.notify_one();
    }
    fn take_tls13_ticket(
        &self,
        server_name: &ServerName<'static>,
    ) -> Option<Tls13ClientSessionValue> {
        self.cache.take_tls13_ticket(server_name)
    }
}

/// Sends each event's frame as a datagram. Sent datagrams leave `pending` (a retry sends only
/// the rest); one too large to send is a dead letter.
async fn send_datagrams(
    socket: &UdpSocket,
    pending: &mut Pending,
    cx: &SinkContext,
) -> std::io::Result<()> {
    let mut start = 0;
    let mut refused = Vec::new();
    let mut sent = 0;
    let result = async {
        for (i, end) in pending.ends.iter().enumerate() {
            let datagram = &pending.bytes[start..*end];
            match socket.send(datagram).await {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(EMSGSIZE) => {
                    cx.metrics.error(error_type::MESSAGE_TOO_LONG, Stage::Sending);
                    refused.push(Rejected {
                        finalizers: std::mem::take(&mut pending.finalizers[i]),
                        original: String::from_utf8_lossy(datagram).into_owned(),
                        destination: None,
                        reason: "message_too_long".into(),
                        detail: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
            start = *end;
            sent = i + 1;
        }
        Ok(())
    }
    .await;
    // What was sent (or refused) is settled now.
    pending.finalizers.drain(..sent);
    pending.bytes.drain(..start);
    pending.ends = pending.ends[sent..].iter().map(|e| e - start).collect();
    cx.dead_letter.send(refused).await;
    result
}

/// `EMSGSIZE` on Linux: a datagram larger than the socket can send (std has no kind for it).
const EMSGSIZE: i32 = 90;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Expect, events, run_sink};
    use crate::event::BatchStatus;
    use tokio::io::AsyncReadExt;

    fn config(text: &str) -> SocketSinkConfig {
        toml_edit::de::from_str(text).unwrap()
    }

    #[test]
    fn checks_addresses_tls_and_syslog_options() {
        let issues = |t: &str| config(t).check().err().unwrap_or_default().len();
        assert_eq!(issues("mode = \"tcp\"\naddress = \"127.0.0.1:514\""), 0);
        assert_eq!(issues("mode = \"tcp\"\npath = \"/run/x\""), 1);
        assert_eq!(issues("mode = \"unix\"\naddress = \"a:1\""), 1);
        assert_eq!(issues("mode = \"udp\"\naddress = \"nohost\""), 1);
        assert_eq!(issues("mode = \"udp\"\naddress = \"h:1\"\ntls = {}"), 1);
        assert_eq!(issues("mode = \"udp\"\naddress = \"h:1\"\nframing = \"newline\""), 1);
        assert_eq!(issues("mode = \"unix\"\npath = \"/run/x\"\nframing = \"newline\""), 0);
        let t = "mode = \"tcp\"\naddress = \"h:1\"\nencoding = { codec = \"syslog\", syslog = { facility = \"nope\" } }";
        assert_eq!(issues(t), 1);
    }

    #[tokio::test]
    async fn writes_octet_counted_frames_to_a_tcp_receiver() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            all
        });
        let c = config(&format!(
            "mode = \"tcp\"\naddress = \"{address}\"\nframing = \"octet_counting\"\nencoding.codec = \"text\""
        ));
        let (input, acks) = events(&["one", "two\nlines"]);
        let run = run_sink(&c, "socket", input).await;
        let expect = Expect {
            received: 2,
            sent: 2,
            status: Some(BatchStatus::Delivered),
            ..Expect::default()
        };
        expect.check(run, Some(acks)).await;
        assert_eq!(reader.await.unwrap(), b"3 one9 two\nlines");
    }

    #[tokio::test]
    async fn sends_each_event_as_one_unframed_datagram() {
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = receiver.local_addr().unwrap();
        let c =
            config(&format!("mode = \"udp\"\naddress = \"{address}\"\nencoding.codec = \"text\""));
        let (input, acks) = events(&["one", "two\nlines"]);
        let run = run_sink(&c, "socket", input).await;
        let expect = Expect {
            received: 2,
            sent: 2,
            status: Some(BatchStatus::Delivered),
            ..Expect::default()
        };
        expect.check(run, Some(acks)).await;
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        for _ in 0..2 {
            let n = receiver.recv(&mut buf).await.unwrap();
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, [b"one".to_vec(), b"two\nlines".to_vec()], "no line feed added");
    }
}
