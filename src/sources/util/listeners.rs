//! Listening sockets (and the connections open on them) handed from a source's old instance
//! to its replacement during a reload, so that a changed source that keeps its address never
//! closes its socket: a sender connecting meanwhile waits in the kernel's accept queue instead
//! of being refused, datagrams wait in the socket's receive buffer, and a syslog connection
//! goes on with the new instance where the old one stopped reading.
//!
//! While a reload runs (see [`Listeners::reloading`]), a source instance that stops puts its
//! sockets here, keyed by the address in its configuration and the protocol; the instances the
//! reload builds take them instead of binding. What no instance took when the reload ends (a
//! source removed, or moved to another address) is closed then. Outside a reload, a socket
//! given here is closed at once, as before. An address with port 0 asks for any free port, so
//! its socket is never handed on: each instance binds its own.

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A connection that a stopped instance hands to its replacement; the source that parked it
/// knows its type.
pub type Connection = Box<dyn Any + Send>;

/// The sockets of one running topology that outlive a source instance during a reload.
#[derive(Clone, Default)]
pub struct Listeners(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// Reloads under way (more than one only in tests sharing a topology).
    reloads: usize,
    tcp: HashMap<SocketAddr, std::net::TcpListener>,
    udp: HashMap<SocketAddr, std::net::UdpSocket>,
    connections: HashMap<SocketAddr, Vec<Connection>>,
}

/// Held for the length of a reload; closes what was not taken when dropped.
pub struct Reloading(Listeners);

impl Drop for Reloading {
    fn drop(&mut self) {
        let unclaimed = {
            let mut state = self.0.lock();
            state.reloads -= 1;
            if state.reloads > 0 {
                return;
            }
            std::mem::take(&mut *state)
        };
        for address in unclaimed.tcp.keys().chain(unclaimed.udp.keys()) {
            tracing::debug!(%address, "no source took this listening socket after the reload; closed");
        }
        drop(unclaimed);
    }
}

impl Listeners {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks a reload under way until the returned guard is dropped.
    pub fn reloading(&self) -> Reloading {
        self.lock().reloads += 1;
        Reloading(self.clone())
    }

    /// Whether a stopping instance should hand its sockets on (a reload is under way).
    pub fn handing_over(&self) -> bool {
        self.lock().reloads > 0
    }

    /// A TCP listener on `address`: the one a previous instance left, or a new one.
    pub fn tcp(&self, address: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
        let listener = match self.lock().tcp.remove(&address) {
            Some(l) => l,
            None => std::net::TcpListener::bind(address)?,
        };
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }

    /// A UDP socket on `address`: the one a previous instance left, or a new one.
    pub fn udp(&self, address: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
        let socket = match self.lock().udp.remove(&address) {
            Some(s) => s,
            None => std::net::UdpSocket::bind(address)?,
        };
        socket.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(socket)
    }

    /// Keeps a stopping instance's listener for its replacement during a reload; otherwise
    /// closes it.
    pub fn park_tcp(&self, address: SocketAddr, listener: tokio::net::TcpListener) {
        let mut state = self.lock();
        if state.reloads > 0 && address.port() != 0 {
            match listener.into_std() {
                Ok(l) => {
                    state.tcp.insert(address, l);
                }
                Err(e) => tracing::warn!(%address, error = %e, "cannot keep the listening socket"),
            }
        }
    }

    /// As [`Listeners::park_tcp`], for a UDP socket.
    pub fn park_udp(&self, address: SocketAddr, socket: tokio::net::UdpSocket) {
        let mut state = self.lock();
        if state.reloads > 0 && address.port() != 0 {
            match socket.into_std() {
                Ok(s) => {
                    state.udp.insert(address, s);
                }
                Err(e) => tracing::warn!(%address, error = %e, "cannot keep the udp socket"),
            }
        }
    }

    /// Keeps an open connection of the listener on `address` for the replacement during a
    /// reload; gives it back (to be closed) otherwise.
    pub fn park_connection(
        &self,
        address: SocketAddr,
        connection: Connection,
    ) -> Result<(), Connection> {
        let mut state = self.lock();
        if state.reloads == 0 || address.port() == 0 {
            return Err(connection);
        }
        state.connections.entry(address).or_default().push(connection);
        Ok(())
    }

    /// The connections a previous instance on `address` left open.
    pub fn take_connections(&self, address: SocketAddr) -> Vec<Connection> {
        self.lock().connections.remove(&address).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[tokio::test]
    async fn a_listener_parked_during_a_reload_is_the_one_taken_after_it() {
        let listeners = Listeners::default();
        let address = free();
        let first = listeners.tcp(address).unwrap();
        let reload = listeners.reloading();
        listeners.park_tcp(address, first);
        // Not closed: a client connects while no instance accepts.
        let client = std::net::TcpStream::connect(address).unwrap();
        let second = listeners.tcp(address).unwrap();
        let (_, peer) = second.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        drop(reload);
        drop(second);
        // Outside a reload a parked listener is closed at once.
        let third = listeners.tcp(address).unwrap();
        listeners.park_tcp(address, third);
        assert!(std::net::TcpStream::connect(address).is_err(), "refused: nothing listens");
    }

    #[tokio::test]
    async fn datagrams_sent_while_a_udp_socket_is_parked_wait_for_the_next_instance() {
        let listeners = Listeners::default();
        let address = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let first = listeners.udp(address).unwrap();
        let reload = listeners.reloading();
        listeners.park_udp(address, first);
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"between instances", address).unwrap();
        let second = listeners.udp(address).unwrap();
        drop(reload);
        let mut buf = [0u8; 64];
        let (n, _) = second.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"between instances");
    }

    #[tokio::test]
    async fn what_no_instance_took_is_closed_when_the_reload_ends() {
        let listeners = Listeners::default();
        let (tcp, udp) = (free(), free());
        let reload = listeners.reloading();
        listeners.park_tcp(tcp, listeners.tcp(tcp).unwrap());
        listeners.park_udp(udp, listeners.udp(udp).unwrap());
        assert!(listeners.park_connection(tcp, Box::new(1u8)).is_ok());
        drop(reload);
        assert!(std::net::TcpStream::connect(tcp).is_err(), "the listener was closed");
        // Both addresses are free again.
        drop(std::net::TcpListener::bind(tcp).unwrap());
        drop(std::net::UdpSocket::bind(udp).unwrap());
        assert!(listeners.take_connections(tcp).is_empty());
        assert!(listeners.park_connection(tcp, Box::new(1u8)).is_err(), "no reload: closed");
    }
}
