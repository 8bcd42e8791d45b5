//! An accept-all HTTP endpoint for the comparison benchmark (`benches/compare/`): it answers
//! Elasticsearch's `_bulk` and Loki's push API as the real servers do, counts what arrives, and
//! keeps nothing, so that it costs the machine little next to the shipper being measured.
//!
//! ```sh
//! cargo run --release --example bench_endpoint -- [--listen 127.0.0.1:0] [--marker FIELD]
//! ```
//!
//! It prints `listening on ADDR` on its first line of standard output, then serves:
//! - `GET /` (Elasticsearch's root document, with `X-elastic-product`), `GET /_cat/health`,
//!   `GET /ready` (Loki's readiness), so shippers' health checks pass;
//! - `POST /_bulk`, `POST /{index}/_bulk`: one result per action, `filter_path` honoured
//!   ([`protocol::bulk`]); `Content-Encoding: gzip` bodies are decompressed;
//! - `POST /loki/api/v1/push`: snappy protobuf or JSON (gzip accepted), answered `204`;
//! - `GET /_bench/stats`: the counters as one JSON object, for the harness to poll.
//!
//! With `--marker FIELD`, documents whose source holds `"FIELD":` are counted apart: a shipper
//! that parsed the JSON line writes the field; one that shipped the line as a string writes
//! it escaped, and is caught.
//!
//! Why hyper on one thread: the endpoint must not compete with the shipper for the machine's
//! cores; one thread bounds it to one core at most, and the harness reports its CPU time so a
//! reader can see it was not the bottleneck.

mod protocol;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;

/// Counters of everything received.
#[derive(Default)]
struct Stats {
    es_requests: AtomicU64,
    es_docs: AtomicU64,
    es_marked: AtomicU64,
    es_other_actions: AtomicU64,
    es_body_bytes: AtomicU64,
    loki_requests: AtomicU64,
    loki_streams: AtomicU64,
    loki_entries: AtomicU64,
    loki_line_bytes: AtomicU64,
    loki_empty_lines: AtomicU64,
    loki_body_bytes: AtomicU64,
    refused: AtomicU64,
    next_id: AtomicU64,
}

impl Stats {
    fn json(&self) -> String {
        let fields = [
            ("es_requests", &self.es_requests),
            ("es_docs", &self.es_docs),
            ("es_marked", &self.es_marked),
            ("es_other_actions", &self.es_other_actions),
            ("es_body_bytes", &self.es_body_bytes),
            ("loki_requests", &self.loki_requests),
            ("loki_streams", &self.loki_streams),
            ("loki_entries", &self.loki_entries),
            ("loki_line_bytes", &self.loki_line_bytes),
            ("loki_empty_lines", &self.loki_empty_lines),
            ("loki_body_bytes", &self.loki_body_bytes),
            ("refused", &self.refused),
        ];
        let body: Vec<String> =
            fields.iter().map(|(k, v)| format!("\"{k}\":{}", v.load(Relaxed))).collect();
        format!("{{{}}}", body.join(","))
    }
}

struct Options {
    listen: SocketAddr,
    marker: Option<Vec<u8>>,
}

fn options() -> Result<Options, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut marker = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => {
                listen = value()?.parse().map_err(|e| format!("--listen: {e}"))?;
            }
            "--marker" => marker = Some(format!("\"{}\":", value()?).into_bytes()),
            other => return Err(format!("unknown argument {other}; see the module docs")),
        }
    }
    Ok(Options { listen, marker })
}

fn main() {
    let opts = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench_endpoint: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_endpoint: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(serve(opts)) {
        eprintln!("bench_endpoint: {e}");
        std::process::exit(1);
    }
}

async fn serve(opts: Options) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let stats = Arc::new(Stats::default());
    let marker: Arc<Option<Vec<u8>>> = Arc::new(opts.marker);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("bench_endpoint: accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stats = Arc::clone(&stats);
        let marker = Arc::clone(&marker);
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, Arc::clone(&stats), Arc::clone(&marker)));
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await
            {
                eprintln!("bench_endpoint: connection ended with an error: {e}");
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r.headers_mut()
        .insert("x-elastic-product", hyper::header::HeaderValue::from_static("Elasticsearch"));
    r
}

const ES_ROOT: &str = r#"{"name":"bench","cluster_name":"bench","cluster_uuid":"bench","version":{"number":"8.15.0","build_flavor":"default","lucene_version":"9.11.1","minimum_wire_compatibility_version":"7.17.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"You Know, for Search"}"#;

async fn handle(
    req: Request<Incoming>,
    stats: Arc<Stats>,
    marker: Arc<Option<Vec<u8>>>,
) -> Result<Reply, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let gzip = req
        .headers()
        .get(hyper::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(reply(400, "text/plain", format!("cannot read the body: {e}\n"))),
    };
    let wire_len = body.len() as u64;
    let body = if gzip {
        let mut out = Vec::with_capacity(body.len() * 4);
        if let Err(e) = flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out) {
            stats.refused.fetch_add(1, Relaxed);
            return Ok(reply(400, "text/plain", format!("invalid gzip body: {e}\n")));
        }
        Bytes::from(out)
    } else {
        body
    };
    let bulk_index = path.strip_suffix("/_bulk").map(|p| p.trim_start_matches('/'));
    Ok(match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/") => reply(200, "application/json", ES_ROOT),
        (&Method::GET, "/_cat/health") => {
            reply(200, "text/plain", "1700000000 00:00:00 bench green 1 1 0 0 0 0 0 0 - 100.0%\n")
        }
        (&Method::GET, "/ready") => reply(200, "text/plain", "ready\n"),
        (&Method::GET, "/_bench/stats") => reply(200, "application/json", stats.json()),
        (&Method::POST | &Method::PUT, _) if bulk_index.is_some() => {
            let index = bulk_index.filter(|i| !i.is_empty());
            let mut next_id = stats.next_id.load(Relaxed);
            let m = marker.as_deref();
            match protocol::bulk(&body, index, query.as_deref(), m, &mut next_id) {
                Ok(out) => {
                    stats.next_id.store(next_id, Relaxed);
                    stats.es_requests.fetch_add(1, Relaxed);
                    stats.es_docs.fetch_add(out.docs, Relaxed);
                    stats.es_marked.fetch_add(out.marked, Relaxed);
                    stats.es_other_actions.fetch_add(out.other_actions, Relaxed);
                    stats.es_body_bytes.fetch_add(wire_len, Relaxed);
                    reply(200, "application/json", out.response)
                }
                Err(r) => {
                    stats.refused.fetch_add(1, Relaxed);
                    eprintln!("bench_endpoint: refused a bulk request: {}", r.body);
                    reply(r.status, "application/json", r.body)
                }
            }
        }
        (&Method::POST, "/loki/api/v1/push") => {
            let result = if content_type.starts_with("application/json") {
                protocol::loki_json(&body)
            } else {
                protocol::loki_protobuf(&body)
            };
            match result {
                Ok(out) => {
                    stats.loki_requests.fetch_add(1, Relaxed);
                    stats.loki_streams.fetch_add(out.streams, Relaxed);
                    stats.loki_entries.fetch_add(out.entries, Relaxed);
                    stats.loki_line_bytes.fetch_add(out.line_bytes, Relaxed);
                    stats.loki_empty_lines.fetch_add(out.empty_lines, Relaxed);
                    stats.loki_body_bytes.fetch_add(wire_len, Relaxed);
                    let mut r = Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                    r
                }
                Err(r) => {
                    stats.refused.fetch_add(1, Relaxed);
                    eprintln!("bench_endpoint: refused a push: {}", r.body.trim_end());
                    reply(r.status, "text/plain", r.body)
                }
            }
        }
        _ => reply(
            404,
            "application/json",
            format!(r#"{{"error":"no handler for [{method} {path}]","status":404}}"#),
        ),
    })
}
