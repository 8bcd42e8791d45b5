//! OTLP/gRPC: `opentelemetry.proto.collector.logs.v1.LogsService/Export` over HTTP/2, on the
//! listener the HTTP transport uses too (connection cap, TLS, handshake timeout).
//!
//! tonic's generated `LogsServiceServer` routes the call, decodes the protobuf message and
//! writes the answer with its status trailers. In front of it, [`Grpc::call`] does what the
//! generated server leaves to a transport, with the bounds of OTLP/HTTP: the credentials, the
//! request read whole within `max_body_bytes` and [`BODY_READ_TIMEOUT`], and gzip or deflate
//! message compression undone by [`http_server::decompress`], which holds the result to the
//! same limit (tonic 0.13 decompresses without one, so its compression stays off). A
//! connection is closed when it sends no request within `header_read_timeout_secs` of
//! connecting, or none for `idle_timeout_secs` after that (gracefully: a GOAWAY the client's
//! channel reconnects after).
//!
//! Answers: OK once every record's event is acknowledged end to end; UNAVAILABLE, with a
//! `google.rpc.RetryInfo` of [`RETRY_AFTER_SECS`] in the status details (and in the
//! `google.rpc.retryinfo-bin` trailer the Python SDK reads), when the pipeline stays full, the
//! events were not delivered in time or weir is stopping: the exporter backs off and sends
//! them again; OK with a partial success counting the records a sink rejected for good, one
//! by one (they are in its dead letters; sending them again would not help);
//! INVALID_ARGUMENT with the reason for a request that does not decode; RESOURCE_EXHAUSTED
//! (without RetryInfo: not to be retried) above `max_body_bytes`; UNAUTHENTICATED without the
//! credentials `auth` asks for; UNIMPLEMENTED for another service (traces, metrics).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tonic::Code;
use tonic::codegen::Service;
use tonic::metadata::{MetadataMap, MetadataValue};

use super::State;
use super::decode;
use crate::component::{ShutdownSignal, SourceSender};
use crate::sources::util::http_server::{
    self, BODY_READ_TIMEOUT, Limits, Protocol, RETRY_AFTER_SECS,
};

/// The path of the one method served.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
/// Streams (calls) one connection may have open at once: an SDK exports one at a time, a
/// Collector a few; each holds up to `max_body_bytes`.
pub const MAX_STREAMS: u32 = 16;
/// Largest header block a client may send (gRPC clients send well under 8 KiB).
const MAX_HEADER_LIST_BYTES: u32 = 64 << 10;

type GrpcResponse = Response<tonic::body::Body>;

/// The gRPC transport of an `opentelemetry` source.
#[derive(Clone)]
pub struct Grpc {
    service: LogsServiceServer<Handler>,
    state: Arc<State>,
    idle_timeout: Duration,
}

impl Grpc {
    pub(super) fn new(state: Arc<State>, out: SourceSender, idle_timeout: Duration) -> Self {
        let handler = Handler { state: Arc::clone(&state), out };
        // The body reaches tonic decompressed and within max_body_bytes; the frame's five
        // bytes of header are not part of the message.
        let service = LogsServiceServer::new(handler).max_decoding_message_size(usize::MAX);
        Self { service, state, idle_timeout }
    }

    /// One call: the checks and reading tonic's generated server leaves to a transport, then
    /// the call itself.
    async fn call(&self, req: Request<Incoming>, peer: SocketAddr) -> GrpcResponse {
        let state = &self.state;
        let t = &state.telemetry;
        let refuse = |status: tonic::Status, counter: Option<&Counter>| {
            if let Some(c) = counter {
                c.inc();
            }
            t.refused(&state.id, peer, &format!("{:?}", status.code()), status.message());
            status.into_http()
        };
        if let Some(auth) = &state.auth
            && auth.authorize(req.headers()).is_err()
        {
            return refuse(tonic::Status::unauthenticated("missing or wrong credentials"), None);
        }
        if req.uri().path() != EXPORT_PATH {
            let message = format!(
                "{} is not served: weir receives OTLP logs (LogsService/Export)",
                req.uri().path()
            );
            return tonic::Status::unimplemented(message).into_http();
        }
        let (mut parts, body) = req.into_parts();
        let max = state.max_body_bytes;
        let message = match read_message(body, &parts.headers, max).await {
            Ok(m) => m,
            Err(status) => {
                let counter = match status.code() {
                    Code::ResourceExhausted => &t.too_large,
                    _ => &t.parse_failed,
                };
                return refuse(status, Some(counter));
            }
        };
        parts.headers.remove("grpc-encoding");
        parts.extensions.insert(BodyLen(message.len()));
        let req = Request::from_parts(parts, Full::new(frame(&message)));
        let Ok(response) = self.service.clone().call(req).await;
        // tonic answers INTERNAL for a message it cannot decode (as gRPC's own servers do);
        // the handler never does. For OTLP that is the client's error, not to be retried.
        match tonic::Status::from_header_map(response.headers()) {
            Some(s) if s.code() == Code::Internal => refuse(
                tonic::Status::invalid_argument(format!(
                    "invalid OTLP protobuf logs request: {}",
                    s.message()
                )),
                Some(&t.parse_failed),
            ),
            _ => response,
        }
    }
}

/// The decompressed size of a call's message, for `received_bytes_total`.
#[derive(Clone, Copy)]
struct BodyLen(usize);

/// Reads a unary call's message: the length-prefixed frame, within `max` bytes and
/// [`BODY_READ_TIMEOUT`], decompressed as `grpc-encoding` says.
// tonic::Status is large, but it is the answer itself, built once per refused call.
#[allow(clippy::result_large_err)]
async fn read_message(
    body: Incoming,
    headers: &hyper::HeaderMap,
    max: usize,
) -> Result<Bytes, tonic::Status> {
    let too_large =
        || tonic::Status::resource_exhausted(format!("the message exceeds max_body_bytes ({max})"));
    let read = tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(body, max + 5).collect());
    let raw = match read.await {
        Err(_) => {
            let secs = BODY_READ_TIMEOUT.as_secs();
            return Err(tonic::Status::deadline_exceeded(format!(
                "the request did not arrive within {secs} s"
            )));
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Ok(Err(e)) => {
            return Err(tonic::Status::cancelled(format!("cannot read the request: {e}")));
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    unframe(raw, headers, max)
}

/// A unary call's one message out of its length-prefixed frame, decompressed as
/// `grpc-encoding` says and held to `max` bytes.
#[allow(clippy::result_large_err)]
pub fn unframe(raw: Bytes, headers: &hyper::HeaderMap, max: usize) -> Result<Bytes, tonic::Status> {
    let invalid = |m: &str| tonic::Status::invalid_argument(format!("not a gRPC message: {m}"));
    let Some((&[flag, a, b, c, d], rest)) = raw.split_first_chunk::<5>() else {
        return Err(invalid("shorter than the 5-byte frame header"));
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if rest.len() != len {
        return Err(invalid(&format!(
            "the frame declares {len} bytes and {} follow (a unary call carries one message)",
            rest.len()
        )));
    }
    let message = raw.slice(5..);
    match flag {
        0 => Ok(message),
        1 => {
            let coding =
                headers.get("grpc-encoding").map(|v| String::from_utf8_lossy(v.as_bytes()));
            let Some(coding) = coding.filter(|c| c != "identity") else {
                return Err(invalid("compressed, without a grpc-encoding"));
            };
            let too_large = || {
                tonic::Status::resource_exhausted(format!(
                    "the message exceeds max_body_bytes ({max}) once decompressed"
                ))
            };
            http_server::decompress(Some(&coding), message, max).map_err(|reply| {
                match reply.status {
                    StatusCode::PAYLOAD_TOO_LARGE => too_large(),
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => tonic::Status::unimplemented(format!(
                        "grpc-encoding `{coding}` is not supported (gzip, deflate)"
                    )),
                    _ => tonic::Status::invalid_argument(reply.message),
                }
            })
        }
        other => Err(invalid(&format!("compressed-flag {other}"))),
    }
}

/// An uncompressed gRPC frame of `message`.
fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// The generated service's handler: one export call's records to the pipeline.
struct Handler {
    state: Arc<State>,
    out: SourceSender,
}

#[tonic::async_trait]
impl LogsService for Handler {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let state = &self.state;
        let bytes = request.extensions().get::<BodyLen>().map_or(0, |b| b.0);
        let request = request.into_inner();
        let records = decode::records(&request);
        state.telemetry.metrics.received(records, bytes);
        let events = super::convert::events(request, chrono::Utc::now());
        let mut out = self.out.clone();
        let timeout = state.ack_timeout;
        match http_server::deliver_counting(&mut out, events, timeout, &state.shutdown).await {
            Ok(rejected) => Ok(tonic::Response::new(ExportLogsServiceResponse {
                partial_success: (rejected > 0).then(|| decode::rejected(rejected, records)),
            })),
            Err(reply) => Err(retry_later(&reply.message)),
        }
    }
}

/// UNAVAILABLE with a RetryInfo: the OTLP specification's answer for "back off, then send
/// the same data again".
pub fn retry_later(message: &str) -> tonic::Status {
    let retry_info = RetryInfo {
        retry_delay: Some(ProtoDuration { seconds: RETRY_AFTER_SECS as i64, nanos: 0 }),
    }
    .encode_to_vec();
    let details = decode::Status {
        code: Code::Unavailable as i32,
        message: message.to_owned(),
        details: vec![ProtoAny {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry_info.clone(),
        }],
    }
    .encode_to_vec();
    let mut metadata = MetadataMap::new();
    metadata.insert_bin("google.rpc.retryinfo-bin", MetadataValue::from_bytes(&retry_info));
    tonic::Status::with_details_and_metadata(Code::Unavailable, message, details.into(), metadata)
}

/// `google.rpc.RetryInfo`
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `google.protobuf.Any`
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

impl Protocol for Grpc {
    /// HTTP/2 until the peer leaves, it asks nothing for too long, or `shutdown` (then the
    /// calls in progress finish until the shutdown deadline).
    async fn serve<S>(
        &self,
        io: S,
        peer: SocketAddr,
        limits: Limits,
        shutdown: &ShutdownSignal,
    ) -> bool
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let (this, seen) = (self.clone(), Arc::clone(&activity));
        let service = service_fn(move |req| {
            let (this, busy) = (this.clone(), Activity::begin(&seen));
            async move {
                let response = this.call(req, peer).await;
                drop(busy);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let idle_limit = |a: &Activity| {
            if a.asked.load(Ordering::Relaxed) {
                self.idle_timeout
            } else {
                limits.header_read_timeout
            }
        };
        loop {
            let quiet_since = *activity.quiet_since.lock().unwrap_or_else(|e| e.into_inner());
            let check_at = quiet_since + idle_limit(&activity);
            tokio::select! {
                _ = conn.as_mut() => return false,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    match shutdown.deadline() {
                        Some(d) => { let _ = tokio::time::timeout_at(d.into(), conn.as_mut()).await; }
                        None => { let _ = conn.as_mut().await; }
                    }
                    return false;
                }
                _ = tokio::time::sleep_until(check_at) => {
                    if activity.active.load(Ordering::Relaxed) > 0
                        || activity.quiet_since.lock().unwrap_or_else(|e| e.into_inner()).elapsed() < idle_limit(&activity)
                    {
                        continue;
                    }
                    let asked = activity.asked.load(Ordering::Relaxed);
                    // GOAWAY: a call already under way still completes; the client's
                    // channel connects again for the next one.
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(limits.header_read_timeout, conn.as_mut()).await;
                    return !asked;
                }
            }
        }
    }
}

/// A connection's calls in progress and when it last had none.
struct Activity {
    active: AtomicUsize,
    asked: AtomicBool,
    quiet_since: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            active: AtomicUsize::new(0),
            asked: AtomicBool::new(false),
            quiet_since: Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    fn begin(this: &Arc<Self>) -> Busy {
        this.asked.store(true, Ordering::Relaxed);
        this.active.fetch_add(1, Ordering::Relaxed);
        Busy(Arc::clone(this))
    }
}

/// A call in progress; ends when dropped (answered, or reset by the client).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.quiet_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_later_carries_retry_info_both_ways() {
        let status = retry_later("full");
        assert_eq!(status.code(), Code::Unavailable);
        let details = decode::Status::decode(status.details()).unwrap();
        assert_eq!(details.details[0].type_url, "type.googleapis.com/google.rpc.RetryInfo");
        let info = RetryInfo::decode(&details.details[0].value[..]).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, RETRY_AFTER_SECS as i64);
        let bin = status.metadata().get_bin("google.rpc.retryinfo-bin").unwrap();
        let info = RetryInfo::decode(bin.to_bytes().unwrap()).unwrap();
        assert_eq!(info.retry_delay.unwrap().seconds, RETRY_AFTER_SECS as i64);
    }

    #[test]
    fn messages_come_out_of_frames_within_the_limit() {
        use std::io::Write;
        let none = hyper::HeaderMap::new();
        assert_eq!(&frame(b"abc")[..], b"\x00\x00\x00\x00\x03abc");
        assert_eq!(unframe(frame(b"abc"), &none, 10).unwrap(), "abc");
        let code = |r: Result<Bytes, tonic::Status>| r.unwrap_err().code();
        assert_eq!(
            code(unframe(Bytes::from_static(b"\x00\x00"), &none, 10)),
            Code::InvalidArgument
        );
        assert_eq!(
            code(unframe(Bytes::from_static(b"\x00\x00\x00\x00\x05abc"), &none, 10)),
            Code::InvalidArgument
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&[b'x'; 1000]).unwrap();
        let mut compressed = frame(&gz.finish().unwrap()).to_vec();
        compressed[0] = 1;
        let compressed = Bytes::from(compressed);
        let mut gzip = hyper::HeaderMap::new();
        gzip.insert("grpc-encoding", "gzip".parse().unwrap());
        assert_eq!(unframe(compressed.clone(), &gzip, 1000).unwrap().len(), 1000);
        // Held to the limit once decompressed: a small frame cannot grow past it.
        assert_eq!(code(unframe(compressed.clone(), &gzip, 999)), Code::ResourceExhausted);
        assert_eq!(code(unframe(compressed.clone(), &none, 1000)), Code::InvalidArgument);
        let mut zstd = hyper::HeaderMap::new();
        zstd.insert("grpc-encoding", "zstd".parse().unwrap());
        assert_eq!(code(unframe(compressed, &zstd, 1000)), Code::Unimplemented);
    }
}
