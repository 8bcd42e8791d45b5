//! Machinery shared by sinks, written once: encoding of lines ([`encoding`]); and for the
//! sinks that send requests (Elasticsearch, Loki): batching per destination ([`batch`]), the
//! request concurrency limit, fixed or adaptive ([`concurrency`]), retries with capped
//! exponential backoff and full jitter ([`retry`]), the HTTP client with TLS, authentication,
//! endpoints and compression ([`http`]), the per-sink request metrics ([`metrics`]) and the
//! loop that ties them together and settles every event's outcome ([`driver`]).

pub mod batch;
pub mod concurrency;
pub mod driver;
pub mod encoding;
pub mod http;
pub mod metrics;
pub mod retry;
