//! The HTTP side of the sinks: one keep-alive connection pool per sink (reqwest over hyper,
//! HTTP/1.1, rustls), TLS settings, authentication, endpoints with round-robin and failover,
//! and request-body compression.
//!
//! ```toml
//! auth.strategy = "basic"            # or "bearer", "api_key" (Elasticsearch)
//! auth.user = "weir"
//! auth.password = "${ES_PASSWORD}"   # or auth.password_file = "/run/secrets/es"
//! tls.ca_file = "/etc/weir/ca.pem"
//! tls.crt_file = "/etc/weir/client.pem"
//! tls.key_file = "/etc/weir/client.key"
//! tls.verify_certificate = true      # false only by explicit choice, logged at start-up
//! ```
//!
//! Bodies are compressed here (gzip with flate2, snappy with snap) rather than by the client
//! library, which only decompresses responses. The driver builds a request again for every
//! attempt (a retry may carry only the items still to go), so a retried body is compressed
//! again.
//!
//! Invariant: a response body is read up to the limit its request allows
//! ([`HttpClient::send_limited`]: what a sink's service computes from the items it sent, at
//! most [`MAX_RESPONSE_BYTES`]); a larger one is an error naming the limit, never an unbounded
//! allocation.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use tokio::time::Instant;

use crate::error::ConfigIssue;

/// Largest response body read for any request.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Largest response body read for a health check or another small request.
pub const SMALL_RESPONSE_BYTES: usize = 64 * 1024;

/// How long an endpoint that refused connections is passed over.
const ENDPOINT_DOWN_FOR: Duration = Duration::from_secs(5);

/// `tls` of a sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the certificate authorities to trust (in addition to the built-in roots).
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (with `key_file`).
    pub crt_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// Check the server's certificate. Default true; false only by explicit choice.
    #[serde(default = "yes")]
    pub verify_certificate: bool,
}

fn yes() -> bool {
    true
}

impl TlsConfig {
    pub fn check(&self) -> Vec<ConfigIssue> {
        if self.crt_file.is_some() != self.key_file.is_some() {
            return vec![ConfigIssue::field(
                "tls",
                "tls.crt_file and tls.key_file go together: give both or neither",
            )];
        }
        Vec::new()
    }
}

/// `auth` of a sink. Secrets come from the config (use `${VAR}` for the environment) or from
/// a file (`*_file`, trailing newline ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// HTTP basic authentication.
    Basic {
        /// The user name. Required.
        user: String,
        /// The password (or `password_file`).
        password: Option<String>,
        /// A file holding the password (a trailing newline is ignored).
        password_file: Option<PathBuf>,
    },
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token (or `token_file`).
        token: Option<String>,
        /// A file holding the token (a trailing newline is ignored).
        token_file: Option<PathBuf>,
    },
    /// Elasticsearch API key: `Authorization: ApiKey <api_key>`, the key as Elasticsearch
    /// returns it in `encoded` (base64 of `id:key`).
    ApiKey {
        /// The `encoded` key (or `api_key_file`).
        api_key: Option<String>,
        /// A file holding the key (a trailing newline is ignored).
        api_key_file: Option<PathBuf>,
    },
}

impl AuthConfig {
    pub fn strategy(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer",
            Self::ApiKey { .. } => "api_key",
        }
    }

    pub fn check(&self) -> Vec<ConfigIssue> {
        let (value, file, name) = match self {
            Self::Basic { password, password_file, .. } => (password, password_file, "password"),
            Self::Bearer { token, token_file } => (token, token_file, "token"),
            Self::ApiKey { api_key, api_key_file } => (api_key, api_key_file, "api_key"),
        };
        match (value, file) {
            (Some(_), Some(_)) => vec![ConfigIssue::field(
                &format!("auth.{name}"),
                format!("give auth.{name} or auth.{name}_file, not both"),
            )],
            (None, None) => vec![ConfigIssue::field(
                "auth",
                format!(
                    "auth.strategy = \"{}\" needs auth.{name} or auth.{name}_file",
                    self.strategy()
                ),
            )],
            _ => Vec::new(),
        }
    }

    /// The `Authorization` header value (reads secret files).
    pub fn header(&self) -> Result<HeaderValue, String> {
        fn secret(value: &Option<String>, file: &Option<PathBuf>) -> Result<String, String> {
            match (value, file) {
                (Some(v), _) => Ok(v.clone()),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display())),
                (None, None) => Err("no secret given".into()),
            }
        }
        let text = match self {
            Self::Basic { user, password, password_file } => {
                use base64::Engine as _;
                let pw = secret(password, password_file)?;
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
                format!("Basic {encoded}")
            }
            Self::Bearer { token, token_file } => {
                format!("Bearer {}", secret(token, token_file)?)
            }
            Self::ApiKey { api_key, api_key_file } => {
                format!("ApiKey {}", secret(api_key, api_key_file)?)
            }
        };
        let mut v = HeaderValue::from_str(&text).map_err(|_| {
            "the credentials contain characters not allowed in a header".to_string()
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// The `url` crate's parse error, as reqwest's `Url` gives it.
type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// Why an endpoint is not usable. Each holds the URL as it may be shown (password masked).
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("`{shown}` is not a URL: {source}")]
    NotAUrl {
        shown: String,
        #[source]
        source: UrlParseError,
    },
    #[error("`{0}` is not an http:// or https:// URL")]
    NotHttp(String),
    #[error("`{0}` has no host")]
    NoHost(String),
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host (for `check`);
/// errors show it with any password masked.
pub fn check_url(url: &str) -> Result<(), UrlError> {
    let shown = || crate::redact::credentials(url).into_owned();
    let parsed =
        reqwest::Url::parse(url).map_err(|source| UrlError::NotAUrl { shown: shown(), source })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlError::NotHttp(shown()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost(shown()));
    }
    Ok(())
}

/// Several base URLs used in turn; one that fails to connect is passed over for a while.
///
/// A URL may hold credentials (`http://user:password@host`): [`Endpoints::url`] and
/// [`Endpoints::all`] give the URLs as they may be shown (password masked, see
/// [`crate::redact`]); only [`HttpClient::send`] uses them whole.
pub struct Endpoints {
    urls: Vec<String>,
    shown: Vec<String>,
    next: AtomicUsize,
    down_until: Mutex<Vec<Option<Instant>>>,
}

impl Endpoints {
    pub fn new(urls: Vec<String>) -> Self {
        let urls: Vec<String> =
            urls.into_iter().map(|u| u.trim_end_matches('/').to_string()).collect();
        let n = urls.len();
        let shown = urls.iter().map(|u| crate::redact::credentials(u).into_owned()).collect();
        Self { urls, shown, next: AtomicUsize::new(0), down_until: Mutex::new(vec![None; n]) }
    }

    /// The next endpoint in turn that is not marked down (or the next in turn when all are).
    pub fn pick(&self) -> usize {
        let n = self.urls.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| down.get(i).copied().flatten().is_none_or(|t| t <= now))
            .unwrap_or(start % n)
    }

    /// Endpoint `i` as it may be shown (its password masked).
    pub fn url(&self, i: usize) -> &str {
        self.shown.get(i).map_or("", String::as_str)
    }

    /// Endpoint `i` whole, credentials included: for requests only, never for display.
    fn target(&self, i: usize) -> &str {
        self.urls.get(i).map_or("", String::as_str)
    }

    pub fn mark_down(&self, i: usize) {
        let mut down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = down.get_mut(i) {
            *slot = Some(Instant::now() + ENDPOINT_DOWN_FOR);
        }
    }

    /// Every endpoint as it may be shown (passwords masked).
    pub fn all(&self) -> &[String] {
        &self.shown
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    Timeout,
    /// Could not connect (the endpoint is passed over for a while).
    Connect(String),
    /// The connection broke, or the response could not be read.
    Other(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("request timed out"),
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Other(e) => f.write_str(e),
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A request of a sink, relative to an endpoint.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: reqwest::Method,
    /// Path and query appended to the endpoint, e.g. `/_bulk?filter_path=...`.
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// A sink's client: connection pool, credentials and endpoints.
pub struct HttpClient {
    client: reqwest::Client,
    auth: Option<HeaderValue>,
    pub endpoints: Endpoints,
    timeout: Duration,
}

impl HttpClient {
    /// Builds the client (reads TLS and secret files: call from `build`, not from `check`).
    pub fn new(
        endpoints: Vec<String>,
        tls: Option<&TlsConfig>,
        auth: Option<&AuthConfig>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .tcp_nodelay(true)
            .tcp_keepalive(Duration::from_secs(60));
        if let Some(tls) = tls {
            if let Some(ca) = &tls.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("cannot read tls.ca_file {}: {e}", ca.display()))?;
                let certs = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|e| format!("tls.ca_file {}: {e}", ca.display()))?;
                for c in certs {
                    builder = builder.add_root_certificate(c);
                }
            }
            if let (Some(crt), Some(key)) = (&tls.crt_file, &tls.key_file) {
                let mut pem = std::fs::read(crt)
                    .map_err(|e| format!("cannot read tls.crt_file {}: {e}", crt.display()))?;
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(key)
                        .map_err(|e| format!("cannot read tls.key_file {}: {e}", key.display()))?,
                );
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| format!("tls client certificate: {e}"))?;
                builder = builder.identity(identity);
            }
            if !tls.verify_certificate {
                tracing::warn!(
                    "tls.verify_certificate = false: server certificates are not checked"
                );
                builder = builder.danger_accept_invalid_certs(true);
            }
        }
        let client = builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let auth = auth.map(AuthConfig::header).transpose()?;
        Ok(Self { client, auth, endpoints: Endpoints::new(endpoints), timeout })
    }

    /// Sends `req` to endpoint `i` and reads the whole response (up to
    /// [`MAX_RESPONSE_BYTES`]).
    pub async fn send(&self, i: usize, req: &HttpRequest) -> Result<HttpResponse, SendError> {
        self.send_limited(i, req, MAX_RESPONSE_BYTES).await
    }

    /// Sends `req` to endpoint `i` and reads the whole response if it holds at most `limit`
    /// bytes (and at most [`MAX_RESPONSE_BYTES`]); a larger one is an error, read no further.
    pub async fn send_limited(
        &self,
        i: usize,
        req: &HttpRequest,
        limit: usize,
    ) -> Result<HttpResponse, SendError> {
        let limit = limit.min(MAX_RESPONSE_BYTES);
        let url = format!("{}{}", self.endpoints.target(i), req.path);
        let mut rb = self.client.request(req.method.clone(), url).timeout(self.timeout);
        if let Some(auth) = &self.auth {
            rb = rb.header(reqwest::header::AUTHORIZATION, auth.clone());
        }
        for (k, v) in &req.headers {
            rb = rb.header(k.clone(), v.clone());
        }
        if !req.body.is_empty() {
            rb = rb.body(req.body.clone());
        }
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                SendError::Timeout
            } else if e.is_connect() {
                SendError::Connect(error_chain(&e))
            } else {
                SendError::Other(error_chain(&e))
            }
        };
        let mut resp = rb.send().await.map_err(|e| {
            let err = classify(e);
            if matches!(err, SendError::Connect(_)) {
                self.endpoints.mark_down(i);
            }
            err
        })?;
        let status = resp.status().as_u16();
        let headers = std::mem::take(resp.headers_mut());
        let too_large = || {
            SendError::Other(format!(
                "HTTP {status} response body larger than the {limit} bytes weir reads for this \
                 request; not read"
            ))
        };
        let declared = headers
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse { status, headers, body: Bytes::from(body) })
    }

    /// A GET on endpoint `i` (health checks, set-up).
    pub async fn get(&self, i: usize, path: &str) -> Result<HttpResponse, SendError> {
        let req = HttpRequest {
            method: reqwest::Method::GET,
            path: path.to_string(),
            headers: Vec::new(),
            body: Bytes::new(),
        };
        self.send(i, &req).await
    }

    /// A GET on endpoint `i` whose answer is small (a health check): read up to
    /// [`SMALL_RESPONSE_BYTES`].
    pub async fn get_small(&self, i: usize, path: &str) -> Result<HttpResponse, SendError> {
        let req = HttpRequest {
            method: reqwest::Method::GET,
            path: path.to_string(),
            headers: Vec::new(),
            body: Bytes::new(),
        };
        self.send_limited(i, &req, SMALL_RESPONSE_BYTES).await
    }
}

/// The error and its causes in one line ("error sending request: connection refused"), any
/// URL in it with its password masked.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cause = c.source();
    }
    crate::redact::credentials(&s).into_owned()
}

/// gzip of `data`. Level 1 ("fast"): on log lines it compresses about as well as the
/// default level at a fraction of the CPU, which matters more on small machines.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    let mut out = enc.finish().unwrap_or_default();
    // The vector grew by doubling; the body is held until its response (or its retries).
    out.shrink_to_fit();
    out
}

/// Snappy block format (what Loki expects for protobuf pushes; not the framed format).
pub fn snappy(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out =
        snap::raw::Encoder::new().compress_vec(data).map_err(|e| format!("snappy: {e}"))?;
    // `compress_vec` allocates the worst case (the input's size and a sixth) and truncates:
    // a request held until its response kept that whole allocation, several times its
    // compressed size (1.1 MiB of the 6 MiB peak heap of `benches/compare`'s Loki scenario).
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_headers() {
        let basic = AuthConfig::Basic {
            user: "elastic".into(),
            password: Some("changeme".into()),
            password_file: None,
        };
        assert_eq!(basic.header().unwrap(), "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret\n").unwrap();
        let bearer = AuthConfig::Bearer { token: None, token_file: Some(f) };
        assert_eq!(bearer.header().unwrap(), "Bearer s3cret");
        assert_eq!(bearer.check().len(), 0);
        let neither = AuthConfig::ApiKey { api_key: None, api_key_file: None };
        assert!(neither.check()[0].message.contains("api_key_file"));
    }

    #[test]
    fn tls_settings_are_read_at_build_with_clear_errors() {
        let tls = |ca: Option<&str>, verify: bool| TlsConfig {
            ca_file: ca.map(PathBuf::from),
            crt_file: None,
            key_file: None,
            verify_certificate: verify,
        };
        let t = Duration::from_secs(1);
        let err = HttpClient::new(vec![], Some(&tls(Some("/nonexistent/ca.pem"), true)), None, t)
            .err()
            .unwrap();
        assert!(err.contains("cannot read tls.ca_file /nonexistent/ca.pem"), "{err}");
        assert!(HttpClient::new(vec![], Some(&tls(None, false)), None, t).is_ok());
        let half = TlsConfig { crt_file: Some("c.pem".into()), ..tls(None, true) };
        assert!(half.check()[0].message.contains("go together"));
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9093").is_ok());
        assert!(check_url("https://hooks.example.com/base/").is_ok());
        assert!(matches!(check_url("ftp://x"), Err(UrlError::NotHttp(_))));
        assert!(check_url("ftp://x").unwrap_err().to_string().contains("http://"));
        assert!(check_url("http://x:notaport").is_err());
        assert!(check_url("127.0.0.1:9093").is_err());
        let e = check_url("ftp://u:pw@h:1").unwrap_err().to_string();
        assert!(e.contains("u:***@h") && !e.contains("pw"), "{e}");
    }

    #[test]
    fn endpoints_rotate_and_skip_the_down() {
        let e = Endpoints::new(vec!["http://a/".into(), "http://b".into(), "http://c".into()]);
        let picks: Vec<usize> = (0..6).map(|_| e.pick()).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(e.url(0), "http://a");
        e.mark_down(1);
        let secret = Endpoints::new(vec!["https://u:pw@es:9200/".into()]);
        assert_eq!(
            (secret.url(0), secret.target(0)),
            ("https://u:***@es:9200", "https://u:pw@es:9200")
        );
        assert_eq!(secret.all(), ["https://u:***@es:9200"]);
        assert!((0..6).all(|_| e.pick() != 1));
    }

    /// Serves each raw response once, on its own connection, from a loopback port.
    async fn serve_raw(responses: Vec<Vec<u8>>) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            for response in responses {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).await.unwrap() == 1 {
                    head.push(byte[0]);
                }
                let _ = conn.write_all(&response).await;
                let _ = conn.shutdown().await;
            }
        });
        url
    }

    #[tokio::test]
    async fn a_response_larger_than_its_request_allows_is_an_error_not_an_allocation() {
        let body = vec![b'x'; 100_000];
        let mut declared = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec();
        declared.extend_from_slice(&body);
        // No length given: read in chunks until the limit is passed.
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in body.chunks(10_000) {
            chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            chunked.extend_from_slice(part);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let small = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec();
        let url = serve_raw(vec![declared, chunked, small]).await;
        let client = HttpClient::new(vec![url], None, None, Duration::from_secs(5)).unwrap();
        let req = HttpRequest {
            method: reqwest::Method::POST,
            path: "/_bulk".into(),
            headers: Vec::new(),
            body: Bytes::from_static(b"{}\n"),
        };
        for _ in 0..2 {
            match client.send_limited(0, &req, 50_000).await {
                Err(SendError::Other(e)) => assert_eq!(
                    e,
                    "HTTP 200 response body larger than the 50000 bytes weir reads for this \
                     request; not read"
                ),
                other => panic!("{other:?}"),
            }
        }
        let ok = client.send_limited(0, &req, 50_000).await.unwrap();
        assert_eq!((ok.status, &ok.body[..]), (200, &b"{}"[..]));
    }

    #[test]
    fn compression_round_trips() {
        let data = b"{\"message\":\"hello\"}\n".repeat(100);
        let gz = gzip(&data);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut back).unwrap();
        assert_eq!(back, data);
        let sn = snappy(&data).unwrap();
        assert_eq!(snap::raw::Decoder::new().decompress_vec(&sn).unwrap(), data);
        // Bodies wait for their responses holding no more than they are.
        assert!(sn.capacity() < data.len() / 4, "{} of {}", sn.capacity(), data.len());
        assert!(gz.capacity() < data.len() / 4, "{} of {}", gz.capacity(), data.len());
    }
}
