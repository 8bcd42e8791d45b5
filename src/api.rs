//! The HTTP API: `GET /metrics` (OpenMetrics, or the Prometheus text format when `Accept`
//! prefers `text/plain`), `GET /health` (readiness) and `GET /health/live` (liveness).
//!
//! HTTP/1.1 only, served by hyper on the address of `[api]`.
//!
//! - `/health/live` answers 200 `{"status":"alive"}` whenever the API answers at all: the
//!   process runs and its runtime is not stuck. It reads nothing else, so a liveness probe
//!   never restarts weir for a destination's outage (restarting would not fix it).
//! - `/health` (and its alias `/health/ready`) answers 200 when every component is healthy,
//!   with each component's state:
//!   `{"status":"ok","components":{"sinks.es":{"type":"elasticsearch","state":"healthy"},...}}`;
//!   503 naming the components that are not, `{"status":"unhealthy","unhealthy":["sinks.es"],
//!   "components":{"sinks.es":{...,"state":"unhealthy","reason":"..."}}}`, when a sink's last
//!   requests failed or its health check did, a source cannot read, or a component failed
//!   (see [`crate::health`] and [`crate::sinks::util::driver`]); 503 `"starting"` until the
//!   pipeline has started, 503 `"stopping"` once weir is shutting down.
//! - `POST /reload`, when `reload = true`: reloads the pipeline files as SIGHUP does, and
//!   answers once it is done: 200 `{"status":"reloaded","changes":"..."}`, or 400
//!   `{"status":"failed","error":"..."}` when the new configuration is invalid (weir runs on
//!   with the old one). Off by default: it changes what weir runs.
//!
//! - `GET /tap?outputs_of=ID&inputs_of=ID&limit=N&interval_ms=MS`, when `tap = true`: streams
//!   copies of the events leaving the named outputs as NDJSON (chunked), for `weir tap`; see
//!   [`crate::tap`]. Off by default: it shows the events' contents.
//!
//! ```toml
//! [api]
//! address = "127.0.0.1:9598"
//! max_connections = 256              # further connections are closed at once
//! header_read_timeout_secs = 10      # to send a request's headers, or to start the next one
//! reload = false                     # POST /reload
//! tap = false                        # GET /tap
//! ```
//!
//! Connections are bounded so that clients cannot hold weir's file descriptors and memory:
//! at most `max_connections` are served, and one that has not sent a whole request head
//! within `header_read_timeout_secs` (a half-sent request, or a kept-alive connection with
//! nothing more to ask) is closed. `weir_api_open_connections` counts the connections served;
//! `weir_api_connections_closed_total{reason="header_timeout"|"max_connections"}` the
//! connections closed before a first request and those refused, each logged at most every
//! ten seconds with the number left out.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::ApiConfig;
use crate::internal_events::RateLimit;
use crate::metrics::Labels;

/// A request to reload the pipeline files, and where to answer how it went (the changes,
/// or why nothing changed).
pub struct ReloadRequest {
    /// What asked for it, for the log: `SIGHUP`, `file change`, `API`.
    pub cause: &'static str,
    pub reply: Option<tokio::sync::oneshot::Sender<Result<String, String>>>,
}

/// Where `POST /reload` sends its requests (`None`: reloading through the API is off).
pub type Reloader = Option<tokio::sync::mpsc::Sender<ReloadRequest>>;

/// Whether the pipeline is up, as `/health` reports it: starting, running, stopping.
#[derive(Clone, Default)]
pub struct Health {
    up: Arc<AtomicBool>,
    started: Arc<AtomicBool>,
}

impl Health {
    pub fn set(&self, up: bool) {
        if up {
            self.started.store(true, Ordering::Release);
        }
        self.up.store(up, Ordering::Release);
    }

    fn phase(&self) -> Phase {
        match (self.up.load(Ordering::Acquire), self.started.load(Ordering::Acquire)) {
            (true, _) => Phase::Running,
            (false, false) => Phase::Starting,
            (false, true) => Phase::Stopping,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Starting,
    Running,
    Stopping,
}

/// The API's connection series and rate-limited log lines.
struct Telemetry {
    open: Gauge,
    header_timeout: Counter,
    refused: Counter,
    timeout_log: Mutex<RateLimit>,
    refused_log: Mutex<RateLimit>,
}

impl Telemetry {
    fn get() -> &'static Self {
        static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
        TELEMETRY.get_or_init(|| {
            let registry = crate::metrics::global();
            let open = Gauge::default();
            registry.register(
                "api_open_connections",
                "Connections the API serves now",
                open.clone(),
            );
            let closed = Family::<Labels, Counter>::default();
            registry.register(
                "api_connections_closed",
                "Connections the API closed on its own, by reason",
                closed.clone(),
            );
            let reason = |r: &str| closed.get_or_create_owned(&vec![("reason".into(), r.into())]);
            Self {
                open,
                header_timeout: reason("header_timeout"),
                refused: reason("max_connections"),
                timeout_log: Mutex::default(),
                refused_log: Mutex::default(),
            }
        })
    }
}

/// `Some(suppressed)` when the line limited by `limit` may be logged now.
fn allow(limit: &Mutex<RateLimit>) -> Option<u64> {
    limit.lock().unwrap_or_else(|e| e.into_inner()).allow()
}

/// Binds the API address; the returned future serves until `stop` is cancelled.
pub async fn serve(
    api: &ApiConfig,
    health: Health,
    reloader: Reloader,
    stop: CancellationToken,
) -> Result<impl std::future::Future<Output = ()> + use<>, String> {
    let address = api.address;
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| format!("cannot listen on {address} for the API: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let extra = match (api.reload, api.tap) {
        (true, true) => ", POST /reload, GET /tap",
        (true, false) => ", POST /reload",
        (false, true) => ", GET /tap",
        (false, false) => "",
    };
    tracing::info!(
        address = %local,
        "API listening: GET /metrics, GET /health, GET /health/live{extra}"
    );
    let limit = Arc::new(Semaphore::new(api.max_connections.get()));
    let header_timeout = Duration::from_secs(api.header_read_timeout_secs.get());
    let tap = api.tap;
    let t = Telemetry::get();
    Ok(async move {
        let mut accept_log = RateLimit::default();
        loop {
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors, most likely: wait instead of spinning.
                        if let Some(suppressed) = accept_log.allow() {
                            tracing::warn!(error = %e, suppressed, "API accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                t.refused.inc();
                if let Some(suppressed) = allow(&t.refused_log) {
                    tracing::warn!(%peer, suppressed, "API max_connections reached; connection closed");
                }
                continue;
            };
            let health = health.clone();
            let reloader = reloader.clone();
            tokio::spawn(async move {
                let _permit = permit;
                t.open.inc();
                // A kept-alive connection that asked for something is closed by the same
                // timeout as a half-sent request, but that is the ordinary end of a client.
                let asked = Arc::new(AtomicBool::new(false));
                let asked_in = Arc::clone(&asked);
                let service = service_fn(move |req| {
                    asked_in.store(true, Ordering::Relaxed);
                    handle(req, health.clone(), reloader.clone(), tap)
                });
                let served = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                t.open.dec();
                if let Err(e) = served
                    && e.is_timeout()
                    && !asked.load(Ordering::Relaxed)
                {
                    t.header_timeout.inc();
                    if let Some(suppressed) = allow(&t.timeout_log) {
                        tracing::info!(
                            %peer,
                            suppressed,
                            "API connection closed: no request within header_read_timeout_secs"
                        );
                    }
                }
            });
        }
    })
}

/// The readiness answer: 200 when weir runs and every component is healthy, else 503.
fn readiness(phase: Phase, report: &crate::health::Report) -> (StatusCode, Bytes) {
    let (status, code) = match (phase, report.ready) {
        (Phase::Starting, _) => ("starting", StatusCode::SERVICE_UNAVAILABLE),
        (Phase::Stopping, _) => ("stopping", StatusCode::SERVICE_UNAVAILABLE),
        (Phase::Running, true) => ("ok", StatusCode::OK),
        (Phase::Running, false) => ("unhealthy", StatusCode::SERVICE_UNAVAILABLE),
    };
    let mut body = serde_json::json!({ "status": status });
    if !report.faults.is_empty() {
        body["unhealthy"] = serde_json::Value::from(report.faults.clone());
    }
    body["components"] = report.components.clone();
    let mut text = body.to_string();
    text.push('\n');
    (code, Bytes::from(text))
}

/// `POST /reload`: asks the running pipeline to reload and waits for the outcome.
async fn reload(reloader: Reloader) -> (StatusCode, Bytes) {
    let answer = |code, body: serde_json::Value| (code, Bytes::from(format!("{body}\n")));
    let Some(reloader) = reloader else {
        let error = "reloading through the API is off: set reload = true in [api]";
        return answer(StatusCode::NOT_FOUND, serde_json::json!({ "error": error }));
    };
    let (reply, outcome) = tokio::sync::oneshot::channel();
    let request = ReloadRequest { cause: "API", reply: Some(reply) };
    let outcome = match reloader.send(request).await {
        Ok(()) => outcome.await.unwrap_or_else(|_| Err("weir is stopping".into())),
        Err(_) => Err("weir is stopping".into()),
    };
    match outcome {
        Ok(changes) => {
            answer(StatusCode::OK, serde_json::json!({ "status": "reloaded", "changes": changes }))
        }
        Err(error) => answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "status": "failed", "error": error }),
        ),
    }
}

/// `GET /tap`: the stream of a new tap, or why there is none.
fn tap(enabled: bool, query: Option<&str>) -> Result<crate::tap::TapStream, (StatusCode, Bytes)> {
    let refuse = |code, error: String| {
        (code, Bytes::from(format!("{}\n", serde_json::json!({ "error": error }))))
    };
    if !enabled {
        let error = "tapping is off: set tap = true in [api] and restart weir";
        return Err(refuse(StatusCode::NOT_FOUND, error.into()));
    }
    let request = crate::tap::TapRequest::from_query(query.unwrap_or(""))
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, e))?;
    crate::tap::global().attach(request).map_err(|e| {
        let code = if e == crate::tap::STOPPING {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        };
        refuse(code, e)
    })
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(
    req: Request<Incoming>,
    health: Health,
    reloader: Reloader,
    tap_enabled: bool,
) -> Result<Response<Body>, Infallible> {
    let response = |status: StatusCode, content_type: &str, body: Bytes| {
        let mut r = Response::new(Full::new(body).boxed());
        *r.status_mut() = status;
        if let Ok(v) = content_type.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        r
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let accept = req.headers().get(hyper::header::ACCEPT).and_then(|v| v.to_str().ok());
            let format = crate::metrics::Format::negotiate(accept);
            let (text, content_type) = crate::metrics::global().encode_as(format);
            response(StatusCode::OK, content_type, Bytes::from(text))
        }
        (&Method::GET, "/health/live") => response(
            StatusCode::OK,
            "application/json",
            Bytes::from_static(b"{\"status\":\"alive\"}\n"),
        ),
        (&Method::GET, "/health" | "/health/ready") => {
            let (status, body) = readiness(health.phase(), &crate::health::global().report());
            response(status, "application/json", body)
        }
        (&Method::POST, "/reload") => {
            let (status, body) = reload(reloader).await;
            response(status, "application/json", body)
        }
        (&Method::GET, "/tap") => match tap(tap_enabled, req.uri().query()) {
            Ok(stream) => {
                let mut r = response(StatusCode::OK, "application/x-ndjson", Bytes::new());
                *r.body_mut() = stream.into_body().boxed();
                r
            }
            Err((status, body)) => response(status, "application/json", body),
        },
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found: try /metrics, /health, /health/live or /tap\n"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Registry;
    use crate::metrics::ComponentLabels;

    #[test]
    fn readiness_names_the_unhealthy_components() {
        let r = Registry::default();
        let es = r.register(&ComponentLabels::new("es", "sink", "elasticsearch"));
        r.register(&ComponentLabels::new("in", "source", "file"));
        let (code, body) = readiness(Phase::Running, &r.report());
        assert_eq!(code, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "ok");
        assert_eq!(v["components"]["sources.in"]["state"], "healthy");
        assert!(v.get("unhealthy").is_none());
        es.unhealthy("credentials refused");
        let (code, body) = readiness(Phase::Running, &r.report());
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (v["status"].as_str(), &v["unhealthy"]),
            (Some("unhealthy"), &serde_json::json!(["sinks.es"]))
        );
        assert_eq!(v["components"]["sinks.es"]["reason"], "credentials refused");
        es.healthy();
        let (code, body) = readiness(Phase::Stopping, &r.report());
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(String::from_utf8_lossy(&body).contains("\"stopping\""));
        let health = Health::default();
        assert_eq!(health.phase(), Phase::Starting);
        health.set(true);
        assert_eq!(health.phase(), Phase::Running);
        health.set(false);
        assert_eq!(health.phase(), Phase::Stopping);
    }
}
