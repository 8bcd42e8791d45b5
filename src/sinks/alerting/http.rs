//! A minimal HTTP/1.1 client for the alerting and MLflow sinks: one request per connection,
//! plain `http://` only, a deadline on every request and a cap on the response body.
//!
//! Kept small and local on purpose: these sinks send a few requests a minute. When the shared
//! HTTP sink machinery (batching, retries, TLS, connection pooling) lands in `sinks/util`, they
//! move onto it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The largest response body read; longer ones are an error.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Where requests go: `http://host:port/base`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    host: String,
    port: u16,
    /// The path prefix, without a trailing `/`.
    base: String,
}

impl Endpoint {
    /// Parses `http://host[:port][/base]`. Errors show the URL with any password masked.
    pub fn parse(url: &str) -> Result<Self, String> {
        let shown = crate::redact::url(url);
        let url = shown.as_ref();
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("`{url}`: https is not supported yet by this sink; use http://")
            } else {
                format!("`{url}` is not an http:// URL")
            }
        })?;
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!("`{url}`: credentials in the URL are not supported by this sink"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>().map_err(|_| format!("`{url}`: bad port `{p}`"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        Ok(Self { host: host.to_string(), port, base: base.to_string() })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{}{path}", self.host, self.port, self.base)
    }

    /// Sends one request; `(status, body)` or why it failed.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), String> {
        tokio::time::timeout(timeout, self.request_inner(method, path, body))
            .await
            .map_err(|_| format!("{} timed out after {timeout:?}", self.url(path)))?
    }

    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), String> {
        let url = self.url(path);
        let stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let driver = tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(hyper::header::HOST, format!("{}:{}", self.host, self.port))
            .header(hyper::header::USER_AGENT, concat!("weir/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("{url}: {e}"))?;
        let result = async {
            let response = sender.send_request(request).await.map_err(|e| format!("{url}: {e}"))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| format!("{url}: reading the response: {e}"))?
                .to_bytes();
            Ok((status, body))
        }
        .await;
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:9093").unwrap();
        assert_eq!(e.url("/api/v2/alerts"), "http://127.0.0.1:9093/api/v2/alerts");
        let e = Endpoint::parse("http://hooks.local/base/").unwrap();
        assert_eq!(e.url("/x"), "http://hooks.local:80/base/x");
        assert!(Endpoint::parse("https://x").unwrap_err().contains("https"));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://x:notaport").is_err());
        assert!(Endpoint::parse("http://:80").is_err());
        let e = Endpoint::parse("http://u:pw@h:1").unwrap_err();
        assert!(e.contains("u:***@h") && !e.contains("pw"), "{e}");
    }
}
