//! The HTTP API: `GET /metrics` (Prometheus text format) and `GET /health`.
//!
//! HTTP/1.1 only, served by hyper on the address of `[api]`. `/health` answers 200 with
//! `{"status":"ok"}` while the pipeline runs, 503 once it is shutting down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Whether the pipeline is up, as `/health` reports it.
#[derive(Clone, Default)]
pub struct Health(Arc<AtomicBool>);

impl Health {
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::Release);
    }

    fn is_up(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Binds the API address; the returned future serves until `stop` is cancelled.
pub async fn serve(
    address: SocketAddr,
    health: Health,
    stop: CancellationToken,
) -> Result<impl std::future::Future<Output = ()>, String> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address} for the API: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(address = %local, "API listening: GET /metrics, GET /health");
    Ok(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "API accept failed");
                        continue;
                    }
                },
            };
            let health = health.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, health.clone()));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })
}

async fn handle(
    req: Request<Incoming>,
    health: Health,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = |status: StatusCode, content_type: &str, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => response(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(crate::metrics::global().encode()),
        ),
        (&Method::GET, "/health") if health.is_up() => response(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(b"{\"status\":\"ok\"}\n"),
        ),
        (&Method::GET, "/health") => response(
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            Bytes::from_static(b"{\"status\":\"stopping\"}\n"),
        ),
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found: try /metrics or /health\n"),
        ),
    })
}
