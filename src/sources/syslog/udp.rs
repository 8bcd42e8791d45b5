//! Syslog over UDP: datagrams read as fast as they come into a queue that never makes the
//! socket wait, and the kernel's drops for this socket counted beside weir's own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;

use super::framing::FramingError;
use super::{MAX_BATCH_BYTES, MAX_BATCH_EVENTS, Settings, UDP_QUEUE_BYTES, allow};
use crate::channel::{self, WhenFull};
use crate::component::SourceContext;
use crate::error::ComponentError;
use crate::event::Event;
use crate::internal_events::RateLimit;
use crate::sources::util::lines::Oversize;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

pub(super) async fn run(
    socket: UdpSocket,
    settings: Arc<Settings>,
    cx: SourceContext,
) -> Result<(), ComponentError> {
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
    cx.listeners.park_udp(settings.address, socket);
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
