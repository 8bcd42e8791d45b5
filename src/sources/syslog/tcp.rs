//! Syslog over TCP and TLS: one task per connection, an idle timeout, and a table of the open
//! connections from which the longest idle one is closed when `max_connections` is reached.
//!
//! A sender that opens connections and sends nothing would otherwise hold every slot: closing
//! the longest idle connection for a newcomer keeps a legitimate sender's messages flowing
//! during such a flood, while the number of connections served stays bounded. A connection
//! waiting for the pipeline (backpressure) counts as busy and is never chosen.
//!
//! Memory does not grow with the number of connections: an idle connection holds no read
//! buffer (it waits for its socket to become readable first; a TLS connection keeps its read
//! buffer and rustls's), and the connections of one source share a budget of
//! [`READ_BUDGET_BYTES`] for the messages they have read and not yet handed to the pipeline.
//! A connection takes a share of [`GRANT_BYTES`] for each batch after its first message has
//! arrived and gives it back once the batch is queued, so at most a few batches are being
//! gathered at once, however many senders are busy; the others wait with their data in the
//! kernel, and their senders' TCP windows close (backpressure, nothing is dropped).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::framing::{Frame, SyslogDecoder};
use super::{MAX_BATCH_EVENTS, OpenConnection, Settings, allow};
use crate::component::{ShutdownSignal, SourceContext, SourceSender};
use crate::error::ComponentError;
use crate::event::Event;
use crate::internal_events::RateLimit;
use crate::sources::util::listeners::{Connection, Listeners};

/// How long a TLS handshake may take when `read_timeout_secs` is 0 (no idle timeout).
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// `last_active` of a connection that is waiting for the pipeline: never the idlest.
const BUSY: u64 = u64::MAX;

/// Message bytes the connections of one source may hold at once between reading them and
/// queueing them downstream. Sixteen batches keep the pipeline as busy as one busy sender
/// does; more only held memory (1,000 busy senders held a batch each, about 500 MiB).
pub(super) const READ_BUDGET_BYTES: usize = 1024 * 1024;
/// A connection's share of the budget for one batch: the most message bytes it gathers before
/// sending (the last message may go past it, by at most `max_message_bytes`).
pub(super) const GRANT_BYTES: usize = 64 * 1024;
/// Bytes read from a socket at a time (tokio-util's default for a codec).
const READ_BYTES: usize = 8 * 1024;

/// The open connections of one source.
pub(super) struct Connections {
    max: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Slot>>>,
    /// [`READ_BUDGET_BYTES`], in permits of one byte, shared by the connections (fair: first
    /// come, first served).
    budget: Semaphore,
}

/// One open connection as the table sees it.
struct Slot {
    /// Milliseconds since `epoch` of its last message ([`BUSY`] while it waits to send).
    last_active: AtomicU64,
    /// Cancelled when the connection is closed to make room for another.
    evict: CancellationToken,
}

/// A connection's place in the table; leaving it (drop) frees the place.
pub(super) struct Registration {
    table: Arc<Connections>,
    id: u64,
    slot: Arc<Slot>,
}

/// What admitting a connection took.
pub(super) enum Admission {
    /// A free place.
    Free(Registration),
    /// The place of a connection idle for this long, which is being closed.
    Evicted(Registration, Duration),
    /// Every connection is busy sending: the newcomer is refused.
    Full,
}

impl Connections {
    pub(super) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            budget: Semaphore::new(READ_BUDGET_BYTES),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A place for a new connection, closing the longest idle one when the table is full.
    pub(super) fn admit(self: &Arc<Self>) -> Admission {
        let now = self.now_ms();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut evicted = None;
        if open.len() >= self.max {
            let idlest = open
                .iter()
                .map(|(id, s)| (*id, s.last_active.load(Ordering::Relaxed)))
                .filter(|&(_, t)| t != BUSY)
                .min_by_key(|&(_, t)| t);
            let Some((id, since)) = idlest else { return Admission::Full };
            if let Some(victim) = open.remove(&id) {
                victim.evict.cancel();
            }
            evicted = Some(Duration::from_millis(now.saturating_sub(since)));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let slot =
            Arc::new(Slot { last_active: AtomicU64::new(now), evict: CancellationToken::new() });
        open.insert(id, Arc::clone(&slot));
        let registration = Registration { table: Arc::clone(self), id, slot };
        match evicted {
            Some(idle) => Admission::Evicted(registration, idle),
            None => Admission::Free(registration),
        }
    }
}

impl Registration {
    fn active(&self) {
        self.slot.last_active.store(self.table.now_ms(), Ordering::Relaxed);
    }

    fn busy(&self) {
        self.slot.last_active.store(BUSY, Ordering::Relaxed);
    }

    fn evicted(&self) -> &CancellationToken {
        &self.slot.evict
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        // An evicted connection's place already belongs to another.
        if open.get(&self.id).is_some_and(|s| Arc::ptr_eq(s, &self.slot)) {
            open.remove(&self.id);
        }
    }
}

pub(super) async fn run(
    listener: TcpListener,
    handed: Vec<Connection>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    table: Arc<Connections>,
    settings: Arc<Settings>,
    cx: SourceContext,
) -> Result<(), ComponentError> {
    let connections = TaskTracker::new();
    let mut accept_log = RateLimit::default();
    let spawn = |peer: SocketAddr, registration: Registration, stream: Accepted| {
        let settings = Arc::clone(&settings);
        let out = cx.out.clone();
        let shutdown = cx.shutdown.clone();
        let listeners = cx.listeners.clone();
        let acceptor = acceptor.clone();
        connections.spawn(async move {
            let _open = OpenConnection::new(&settings.telemetry.open_connections);
            let conn = Conn {
                peer,
                settings: &settings,
                registration,
                shutdown: &shutdown,
                listeners: &listeners,
            };
            let decoder = || SyslogDecoder::new(settings.max, settings.oversize);
            match (stream, acceptor) {
                (Accepted::New(s), None) => conn.serve(FramedRead::new(s, decoder()), out).await,
                (Accepted::New(s), Some(a)) => conn.serve_tls(&a, s, out).await,
                (Accepted::Plain(frames), _) => conn.serve(frames, out).await,
                (Accepted::Tls(frames), _) => conn.serve(*frames, out).await,
            }
        });
    };
    // The connections the instance this one replaces was reading, first.
    for handed in handed {
        let Some((peer, stream)) = Accepted::handed(handed, &settings) else { continue };
        // One made under other terms (TLS turned on or off) is closed: its sender connects
        // again under the new ones.
        if matches!(stream, Accepted::Plain(_)) == acceptor.is_some() {
            tracing::info!(component = %cx.id, peer = %peer, "connection closed: the reload turned TLS on or off");
            continue;
        }
        if let Some(registration) = admit(&table, &settings, peer) {
            spawn(peer, registration, stream);
        }
    }
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
        if let Some(registration) = admit(&table, &settings, peer) {
            spawn(peer, registration, Accepted::New(stream));
        }
    }
    // During a reload the replacement takes the listener: senders connecting meanwhile wait
    // in its accept queue instead of being refused.
    cx.listeners.park_tcp(settings.address, listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A place in the table for a connection from `peer`, or none (it is closed) when every
/// connection is busy.
fn admit(table: &Arc<Connections>, settings: &Settings, peer: SocketAddr) -> Option<Registration> {
    let t = &settings.telemetry;
    match table.admit() {
        Admission::Free(r) => Some(r),
        Admission::Evicted(r, idle) => {
            t.evicted.inc();
            if let Some(suppressed) = allow(&t.evicted_log) {
                tracing::warn!(
                    component = %settings.id,
                    peer = %peer,
                    idle_secs = idle.as_secs(),
                    suppressed,
                    "max_connections reached; the longest idle connection was closed to \
                     serve a new one"
                );
            }
            Some(r)
        }
        Admission::Full => {
            t.refused.inc();
            if let Some(suppressed) = allow(&t.refused_log) {
                tracing::warn!(
                    component = %settings.id,
                    peer = %peer,
                    suppressed,
                    "max_connections reached and every connection is busy; new connection \
                     closed"
                );
            }
            None
        }
    }
}

/// A connection to serve: accepted now, or handed over by the instance this one replaces
/// (read on from where it stopped, in whatever it negotiated then).
enum Accepted {
    New(TcpStream),
    Plain(FramedRead<TcpStream, SyslogDecoder>),
    Tls(Box<FramedRead<tokio_rustls::server::TlsStream<TcpStream>, SyslogDecoder>>),
}

/// What a stopped instance leaves in [`crate::sources::util::listeners::Listeners`] for each
/// connection it was reading.
struct Handed<S> {
    peer: SocketAddr,
    frames: FramedRead<S, SyslogDecoder>,
}

impl Accepted {
    fn handed(handed: Connection, settings: &Settings) -> Option<(SocketAddr, Self)> {
        let (peer, mut accepted) = match handed.downcast::<Handed<TcpStream>>() {
            Ok(h) => (h.peer, Self::Plain(h.frames)),
            Err(other) => {
                let h = other.downcast::<Handed<tokio_rustls::server::TlsStream<TcpStream>>>();
                let h = h.ok()?;
                (h.peer, Self::Tls(Box::new(h.frames)))
            }
        };
        let (max, oversize) = (settings.max, settings.oversize);
        match &mut accepted {
            Self::Plain(f) => f.decoder_mut().set_limits(max, oversize),
            Self::Tls(f) => f.decoder_mut().set_limits(max, oversize),
            Self::New(_) => {}
        }
        Some((peer, accepted))
    }
}

/// One connection and what it shares with the source.
struct Conn<'a> {
    peer: SocketAddr,
    settings: &'a Settings,
    registration: Registration,
    shutdown: &'a ShutdownSignal,
    listeners: &'a Listeners,
}

/// What ended the reading of a connection.
enum End {
    /// The sender closed it, or it was closed for another.
    Closed,
    /// The source instance is stopping (weir stops, or a reload replaces it).
    Stopping,
    /// No consumer is left downstream.
    NoConsumer,
}

impl Conn<'_> {
    async fn serve_tls(
        self,
        acceptor: &tokio_rustls::TlsAcceptor,
        stream: TcpStream,
        out: SourceSender,
    ) {
        let settings = self.settings;
        let timeout = settings.read_timeout.unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
        let handshake = tokio::select! {
            _ = self.shutdown.cancelled() => return,
            _ = self.registration.evicted().cancelled() => return,
            r = tokio::time::timeout(timeout, acceptor.accept(stream)) => match r {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no handshake within {} s", timeout.as_secs())),
            },
        };
        match handshake {
            Ok(tls) => {
                let decoder = SyslogDecoder::new(settings.max, settings.oversize);
                self.serve(FramedRead::new(tls, decoder), out).await;
            }
            Err(e) => {
                settings.telemetry.handshake_failed.inc();
                if let Some(suppressed) = allow(&settings.telemetry.handshake_log) {
                    tracing::warn!(
                        component = %settings.id,
                        peer = %self.peer,
                        error = %e,
                        suppressed,
                        "TLS handshake failed; connection closed"
                    );
                }
            }
        }
    }

    /// Reads the connection until it ends: frames become events, gathered into batches of
    /// what is already readable, each sent before the next read (that wait is the
    /// backpressure).
    async fn serve<S: Stream + Send + 'static>(
        self,
        mut frames: FramedRead<S, SyslogDecoder>,
        mut out: SourceSender,
    ) {
        let Self { peer, settings, registration, shutdown, listeners } = self;
        let t = &settings.telemetry;
        let mut logged = false;
        let mut batch: Vec<Event> = Vec::new();
        tracing::debug!(component = %settings.id, peer = %peer, "connection opened");
        let end = 'conn: loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break 'conn End::Stopping,
                _ = registration.evicted().cancelled() => break 'conn End::Closed,
                r = next_frame(&mut frames, settings.read_timeout) => r,
            };
            // A share of the budget before reading on; waiting for it is waiting for the
            // pipeline, so the connection counts as busy meanwhile.
            registration.busy();
            let Ok(_grant) = registration.table.budget.acquire_many(GRANT_BYTES as u32).await
            else {
                break End::Closed;
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
                        t.idle_closed.inc();
                        if let Some(suppressed) = allow(&t.idle_log) {
                            tracing::info!(
                                component = %settings.id,
                                peer = %peer,
                                suppressed,
                                "idle connection closed (read_timeout_secs)"
                            );
                        }
                        ended = true;
                    }
                    Read::Failed(e) => {
                        t.read_failed.inc();
                        tracing::debug!(component = %settings.id, peer = %peer, error = %e, "connection read failed");
                        ended = true;
                    }
                }
                if ended || batch.len() >= MAX_BATCH_EVENTS || bytes >= GRANT_BYTES {
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
            registration.active();
            if ended {
                break End::Closed;
            }
        };
        // A reload hands the connection, with what it has read of the next frame, to the
        // instance that replaces this one: the sender goes on as if nothing happened.
        if matches!(end, End::Stopping) && listeners.handing_over() {
            drop(registration);
            let handed = Box::new(Handed { peer, frames });
            if listeners.park_connection(settings.address, handed).is_ok() {
                tracing::debug!(component = %settings.id, peer = %peer, "connection handed to the replacement");
            }
            return;
        }
        if matches!(end, End::NoConsumer) {
            tracing::debug!(component = %settings.id, peer = %peer, "no consumer left; connection closed");
        }
        // Close politely (a TLS close_notify, then FIN), but never wait on a peer for long.
        let mut stream = frames.into_inner();
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
        tracing::debug!(component = %settings.id, peer = %peer, "connection closed");
    }
}

/// One read from a connection.
enum Read {
    Frame(Frame),
    Eof,
    Idle,
    Failed(std::io::Error),
}

/// A connection's stream, which can tell when it has bytes to read without a buffer to read
/// them into.
trait Stream: AsyncRead + AsyncWrite + Unpin {
    /// Waits until a read would not wait (bytes, the end, or an error have come).
    async fn readable(&self) -> std::io::Result<()>;
}

impl Stream for TcpStream {
    async fn readable(&self) -> std::io::Result<()> {
        TcpStream::readable(self).await
    }
}

impl Stream for tokio_rustls::server::TlsStream<TcpStream> {
    /// rustls may hold decrypted bytes the socket no longer shows, so a TLS connection reads
    /// (into its buffer) at once.
    async fn readable(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The next frame, waiting at most `timeout` for it. A connection with nothing buffered gives
/// its read buffer back while it waits, so an idle connection holds none.
async fn next_frame<S: Stream>(
    frames: &mut FramedRead<S, SyslogDecoder>,
    timeout: Option<Duration>,
) -> Read {
    let next = async {
        if frames.read_buffer().is_empty() {
            *frames.read_buffer_mut() = BytesMut::new();
            if let Err(e) = frames.get_ref().readable().await {
                return Some(Err(e));
            }
            // With a capacity, so that a frame cut at its end is carried over into a buffer
            // of this size again rather than one just big enough for it.
            *frames.read_buffer_mut() = BytesMut::with_capacity(READ_BYTES);
        }
        frames.next().await
    };
    let next = match timeout {
        Some(t) => match tokio::time::timeout(t, next).await {
            Ok(n) => n,
            Err(_) => return Read::Idle,
        },
        None => next.await,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(a: Admission) -> Registration {
        match a {
            Admission::Free(r) | Admission::Evicted(r, _) => r,
            Admission::Full => panic!("refused"),
        }
    }

    #[test]
    fn a_full_table_closes_its_longest_idle_connection_never_a_busy_one() {
        let table = Connections::new(2);
        let a = registration(table.admit());
        let b = registration(table.admit());
        a.slot.last_active.store(10, Ordering::Relaxed);
        b.slot.last_active.store(5, Ordering::Relaxed);
        let c = match table.admit() {
            Admission::Evicted(r, _) => r,
            _ => panic!("a full table must evict"),
        };
        assert!(b.evicted().is_cancelled() && !a.evicted().is_cancelled());
        // The evicted connection leaving does not free the newcomer's place.
        drop(b);
        assert_eq!(table.open.lock().unwrap().len(), 2);
        a.busy();
        c.busy();
        assert!(matches!(table.admit(), Admission::Full));
        c.active();
        let d = registration(table.admit());
        assert!(c.evicted().is_cancelled());
        drop((a, c));
        assert_eq!(table.open.lock().unwrap().len(), 1, "the newcomer holds its place");
        drop(d);
        assert!(table.open.lock().unwrap().is_empty());
    }
}
