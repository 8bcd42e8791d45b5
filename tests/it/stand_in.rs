//! What the HTTP stand-ins (Elasticsearch, Loki, Kibana) share: a hyper HTTP/1 server on a
//! loopback port, run by a thread of its own, that hands every request and the stand-in's
//! shared state to the stand-in's handler; stopped and joined when dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub type Resp = Response<Full<Bytes>>;

/// A handler's error: hyper drops the connection without a response.
#[derive(Debug)]
pub struct Reset;
impl std::fmt::Display for Reset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection reset")
    }
}
impl std::error::Error for Reset {}

/// A running stand-in on a loopback port.
pub struct StandIn<S> {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<S>>,
    conns: Arc<Connections>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Connections the server has accepted and not finished serving, and the peers of the last
/// ones it accepted (for [`StandIn::settle`]).
#[derive(Default)]
struct Connections {
    open: AtomicUsize,
    recent: Mutex<Vec<SocketAddr>>,
}

/// Counts a connection as open for as long as its task lives.
struct Open(Arc<Connections>);
impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<S: Send + 'static> StandIn<S> {
    /// Serves `handle` over `state` until dropped.
    pub fn serve<H, F, E>(state: S, handle: H) -> Self
    where
        H: Fn(Request<Incoming>, Arc<Mutex<S>>) -> F + Copy + Send + 'static,
        F: Future<Output = Result<Resp, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(state));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let st = Arc::clone(&state);
        let conns = Arc::new(Connections::default());
        let cs = Arc::clone(&conns);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (stream, peer) = tokio::select! {
                        _ = &mut stop_rx => break,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    cs.open.fetch_add(1, Ordering::SeqCst);
                    let open = Open(Arc::clone(&cs));
                    {
                        let mut recent = cs.recent.lock().unwrap_or_else(|e| e.into_inner());
                        if recent.len() >= 256 {
                            recent.remove(0);
                        }
                        recent.push(peer);
                    }
                    let st = Arc::clone(&st);
                    tokio::spawn(async move {
                        let _open = open;
                        let svc = service_fn(move |req| handle(req, Arc::clone(&st)));
                        let _ =
                            http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                    });
                }
            });
        });
        Self { addr, state, conns, stop: Some(stop_tx), thread: Some(thread) }
    }
}

impl<S> StandIn<S> {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until every connection made before this call has been accepted and served to
    /// its end: requests a killed client left in the server's socket buffers are handled
    /// before this returns `true`. Connections are accepted in the order they were made, so
    /// once a connection of our own has been accepted every earlier one has been too.
    pub fn settle(&self, timeout: Duration) -> bool {
        let Ok(barrier) = std::net::TcpStream::connect(self.addr) else { return false };
        let Ok(me) = barrier.local_addr() else { return false };
        let accepted = crate::support::wait_for(timeout, || {
            self.conns.recent.lock().unwrap_or_else(|e| e.into_inner()).contains(&me)
        });
        drop(barrier);
        accepted
            && crate::support::wait_for(timeout, || self.conns.open.load(Ordering::SeqCst) == 0)
    }
}

impl<S> Drop for StandIn<S> {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
