//! The loop every request-based sink runs, written once: encode each event, batch per
//! destination, send batches through the concurrency limit, classify each response, retry
//! what may be retried with backoff, and mark every event with its outcome.
//!
//! A sink supplies an [`Encoder`] (event to destination key and payload, a pure function
//! but for guards that keep state) and a [`Service`] (payloads to an HTTP request, and a
//! response to a [`Verdict`] per item).
//!
//! What happens to an event, by verdict:
//! - delivered (or already there): counted as sent, marked delivered;
//! - retry (429, 5xx, timeouts, broken connections): kept, and only the items still to go are
//!   sent again after a backoff ([`super::retry`]); while they wait they hold their request
//!   slot, so a destination that refuses work slows the source instead of filling memory;
//! - rejected for good (a 400 on one item): counted in
//!   `weir_sink_rejected_events_total{reason}`, logged with the destination's reason
//!   (rate-limited) and handed with its acknowledgement handles to the dead-letter destination
//!   ([`crate::dead_letter`]), so that its source moves past it only once that has it;
//! - too large (413): the request is split in halves; a single item still too large is
//!   rejected;
//! - the whole request refused for good (400, 404 and every other 4xx but 401, 403, 408, 413
//!   and 429): each of its events is rejected as above with reason `http_<status>` and the
//!   destination's words (bounded, [`MAX_DETAIL_BYTES`]), and the sink goes on with the next
//!   batch; one wrong request never stops a sink;
//! - credentials refused (401, 403): retried with capped backoff like a 503, for as long as
//!   weir runs (credentials get fixed, certificates rotate), with an ERROR at most every ten
//!   seconds and `weir_component_errors_total{error_type="credentials_refused"}`; the sink is
//!   unhealthy meanwhile. Once weir is stopping (the sink's input has closed) such a request
//!   waits no longer: its events are marked errored (read again after a restart) and the sink
//!   ends with an error, so weir exits non-zero.
//!
//! Health ([`crate::health`], `/health`): a sink is unhealthy once its last
//! [`UNHEALTHY_AFTER_FAILED_REQUESTS`] requests have failed (no response, 408, 429, 5xx, a
//! whole-request refusal), at once when its credentials are refused, and while its health
//! check fails (checked again every [`HEALTH_RECHECK`] until it passes) before any request got
//! through. A request the destination answers item by item makes it healthy again.
//!
//! Invariants: memory is bounded by the input buffer, the open batches
//! ([`super::batch`]: at most twice `batch.max_bytes`), at most one batch per request slot,
//! and per request the response body the service allows ([`Service::response_limit`]).
//! An [`Item`] that is dropped without an outcome (a stop, a task aborted at shutdown) marks
//! its event errored, never delivered.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, BatchSettings, Batcher, ByteSize};
use super::concurrency::{Concurrency, Limiter, Permit};
use super::http::{HttpClient, HttpRequest, HttpResponse, MAX_RESPONSE_BYTES, SendError};
use super::metrics::SinkMetrics;
use super::retry::{Backoff, SerialRequestConfig};
use crate::component::SinkContext;
use crate::dead_letter::{DeadLetter, Rejected, original_of};
use crate::error::ComponentError;
use crate::event::{Event, EventFinalizers, EventStatus, batch_size};
use crate::internal_events::RateLimit;
use crate::metrics::{ComponentMetrics, OutputMetrics};

/// One encoded event waiting to be sent: its payload and its acknowledgement handles (the
/// event's fields are gone once encoded).
pub struct Item<P> {
    pub payload: P,
    /// Encoded size in bytes (what batches are limited by).
    pub size: usize,
    finalizers: EventFinalizers,
}

impl<P> Item<P> {
    /// Takes `event`'s acknowledgement handles; the event can then be dropped freely.
    pub fn new(payload: P, size: usize, event: &mut Event) -> Self {
        Self { payload, size, finalizers: std::mem::take(event.finalizers_mut()) }
    }

    /// Settles the item's outcome and releases its handles.
    pub fn finish(mut self, status: EventStatus) {
        self.finalizers.update_status(status);
        drop(std::mem::take(&mut self.finalizers));
    }

    /// Takes the item's handles out (for its dead letter, which settles the outcome); the
    /// item can then be dropped without marking anything.
    pub fn take_finalizers(&mut self) -> EventFinalizers {
        std::mem::take(&mut self.finalizers)
    }
}

impl<P> Drop for Item<P> {
    fn drop(&mut self) {
        // Still holding handles means no outcome was settled: not delivered.
        self.finalizers.update_status(EventStatus::Errored);
    }
}

impl<P> ByteSize for Item<P> {
    fn byte_size(&self) -> usize {
        self.size
    }
}

/// Why an event cannot be sent at all (counted, logged, marked rejected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// A short machine reason for the metric label (`missing_field`, `too_many_labels`).
    pub reason: &'static str,
    pub detail: String,
}

/// Turns events into destination keys and payloads.
pub trait Encoder: Send + 'static {
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    type Payload: Send + Sync + 'static;

    /// The rejection reasons this sink gives most (its encoder's and its destination's
    /// usual ones), registered at 0 when it starts so that dashboards show 0, not "No data".
    const REJECTION_REASONS: &'static [&'static str] = &[];

    /// Encodes one event: its destination, its payload and the payload's size in bytes.
    fn encode(&mut self, event: &mut Event)
    -> Result<(Self::Key, Self::Payload, usize), Rejection>;

    /// Another encoder, for encoding batches in parallel with this one: `None` (the default)
    /// when encoding keeps state from one event to the next (a guard on streams).
    fn fork(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }
}

/// The reasons of whole requests refused for good, shared by every request sink.
pub const WHOLE_REQUEST_REASONS: &[&str] = &["http_400", "http_404"];

/// The outcome of one item of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    Delivered,
    Retry,
    /// Refused for good: `reason` is the destination's error type, `detail` its words.
    Rejected {
        reason: String,
        detail: String,
    },
}

/// What to do after a response (or a failure to get one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One outcome per item, in request order. `throttled` when the destination pushed back.
    Items { outcomes: Vec<ItemOutcome>, throttled: bool },
    /// Send every item again after a backoff.
    RetryAll { reason: String, throttled: bool },
    /// The request was too large: send it again in halves.
    Split,
    /// The destination refused the whole request for good (a 400, a 404): every item is
    /// rejected with `reason` (`http_404`) and `detail` (the destination's words).
    RejectAll { reason: String, detail: String },
    /// The destination refused the credentials (401, 403): send again after a backoff, and
    /// report the sink unhealthy until it takes them.
    Unauthorized(String),
}

impl Verdict {
    fn throttled(&self) -> bool {
        matches!(self, Self::Items { throttled: true, .. } | Self::RetryAll { throttled: true, .. })
    }
}

/// Builds requests and reads responses for one destination.
pub trait Service: Send + Sync + 'static {
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;
    type Payload: Send + Sync + 'static;

    /// The request carrying `items` to `key`'s destination. A service may point the items'
    /// payloads into the request it built, so that a batch in flight holds its bytes once; the
    /// payloads must encode the same as before.
    fn build(
        &self,
        key: &Self::Key,
        items: &mut [Item<Self::Payload>],
    ) -> Result<HttpRequest, String>;

    /// Classifies a response to the request built from `items`.
    fn classify(&self, response: &HttpResponse, items: &[Item<Self::Payload>]) -> Verdict;

    /// What a rejected item's dead letter records: where it was going (an index, a stream),
    /// and what was sent, as text.
    fn dead_letter(&self, key: &Self::Key, payload: &Self::Payload) -> (Option<String>, String);

    /// The most response bytes read for a request carrying `items` (a larger response is an
    /// error, and the request is sent again). Services bound it by what the items need.
    fn response_limit(&self, items: &[Item<Self::Payload>]) -> usize {
        let _ = items;
        MAX_RESPONSE_BYTES
    }
}

/// Consecutive failed requests after which a sink is reported unhealthy.
pub const UNHEALTHY_AFTER_FAILED_REQUESTS: u32 = 3;

/// How often a failed health check is made again (until it passes or a request gets through).
pub const HEALTH_RECHECK: Duration = Duration::from_secs(30);

/// Longest destination's reason kept in a dead letter of a whole-request refusal.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// `request` of a sink.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Requests in flight: a number, or `"adaptive"` (the default).
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Ceiling of the adaptive limit. Default 32.
    #[serde(default = "default_adaptive_max")]
    pub adaptive_max_concurrency: usize,
    /// Time allowed for one request, response included. Default 60.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// First backoff ceiling. Default 1.
    #[serde(default = "default_initial_backoff")]
    pub retry_initial_backoff_secs: f64,
    /// Largest backoff ceiling. Default 30.
    #[serde(default = "default_max_backoff")]
    pub retry_max_duration_secs: f64,
    /// Retries after the first attempt; unset (the default) retries as long as weir runs.
    pub retry_attempts: Option<u64>,
}

fn default_adaptive_max() -> usize {
    32
}
fn default_timeout() -> f64 {
    60.0
}
fn default_initial_backoff() -> f64 {
    1.0
}
fn default_max_backoff() -> f64 {
    30.0
}

impl Default for RequestConfig {
    fn default() -> Self {
        Self {
            concurrency: Concurrency::default(),
            adaptive_max_concurrency: default_adaptive_max(),
            timeout_secs: default_timeout(),
            retry_initial_backoff_secs: default_initial_backoff(),
            retry_max_duration_secs: default_max_backoff(),
            retry_attempts: None,
        }
    }
}

impl RequestConfig {
    /// The timing half, which the one-request-at-a-time sinks configure on its own.
    fn timing(&self) -> SerialRequestConfig {
        SerialRequestConfig {
            timeout_secs: self.timeout_secs,
            retry_initial_backoff_secs: self.retry_initial_backoff_secs,
            retry_max_duration_secs: self.retry_max_duration_secs,
            retry_attempts: self.retry_attempts,
        }
    }

    pub fn check(&self) -> Vec<crate::error::ConfigIssue> {
        let mut issues = self.timing().check();
        if self.adaptive_max_concurrency == 0 {
            issues.push(crate::error::ConfigIssue::field(
                "request.adaptive_max_concurrency",
                "request.adaptive_max_concurrency must be at least 1",
            ));
        }
        issues
    }

    pub fn timeout(&self) -> Duration {
        self.timing().timeout()
    }

    pub fn backoff(&self) -> Backoff {
        self.timing().backoff()
    }
}

/// A sink's health check (a request to the destination that says whether it can take events;
/// it logs what it found). The driver runs it beside the sink, never blocking sending, and
/// again every [`HEALTH_RECHECK`] while it fails.
pub type HealthCheck = Box<dyn Fn() -> HealthCheckRun + Send + Sync>;

/// One run of a [`HealthCheck`]: `Err` says why the destination cannot take events.
pub type HealthCheckRun = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Everything the driver needs besides the encoder and the service.
pub struct DriverSettings {
    pub batch: BatchSettings,
    pub request: RequestConfig,
    pub client: Arc<HttpClient>,
}

struct Shared<S: Service> {
    id: String,
    service: S,
    client: Arc<HttpClient>,
    backoff: Backoff,
    metrics: SinkMetrics,
    component: ComponentMetrics,
    out: OutputMetrics,
    /// Cancelled when the input has closed: weir is stopping (or every source ended).
    draining: CancellationToken,
    /// Set when events were given up while draining (the sink then ends with an error).
    gave_up: AtomicBool,
    health: SinkHealth,
    retry_log: Mutex<RateLimit>,
    reject_log: Mutex<RateLimit>,
    auth_log: Mutex<RateLimit>,
    dead_letter: DeadLetter,
}

/// What a sink tells `/health`, from its requests and its health check.
struct SinkHealth {
    handle: crate::health::Handle<'static>,
    inner: Mutex<HealthInner>,
}

#[derive(Default)]
struct HealthInner {
    /// Consecutive failed requests, and the last one's error.
    failed: u32,
    last_error: String,
    /// Why the credentials were refused, since the last request that got through.
    refused: Option<String>,
    /// A request got through (from then on requests, not the health check, tell).
    delivered: bool,
    check: Option<String>,
}

impl SinkHealth {
    fn update(&self, change: impl FnOnce(&mut HealthInner)) {
        let mut h = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut h);
        if let Some(refused) = &h.refused {
            self.handle.unhealthy(refused.clone());
        } else if h.failed >= UNHEALTHY_AFTER_FAILED_REQUESTS {
            self.handle.unhealthy(format!(
                "the last {} requests failed; last: {}",
                h.failed, h.last_error
            ));
        } else if let (false, Some(check)) = (h.delivered, &h.check) {
            self.handle.unhealthy(format!("health check failed: {check}"));
        } else {
            self.handle.healthy();
        }
    }

    fn succeeded(&self) {
        self.update(|h| {
            (h.failed, h.refused, h.delivered) = (0, None, true);
        });
    }

    fn failed(&self, error: &str, refused: bool) {
        self.update(|h| {
            h.failed = h.failed.saturating_add(1);
            h.last_error = error.to_string();
            if refused {
                h.refused = Some(error.to_string());
            }
        });
    }

    fn checked(&self, result: Result<(), String>) {
        self.update(|h| h.check = result.err());
    }

    fn delivered(&self) -> bool {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).delivered
    }
}

/// Runs a sink until its input ends, then flushes and waits for every request. Returns `Err`
/// when events had to be given up while stopping (credentials still refused).
pub async fn run<E, S>(
    mut cx: SinkContext,
    encoder: E,
    service: S,
    settings: DriverSettings,
    health_check: Option<HealthCheck>,
) -> Result<(), ComponentError>
where
    E: Encoder,
    S: Service<Key = E::Key, Payload = E::Payload>,
{
    let metrics = SinkMetrics::new(&cx.metrics);
    // The series of what can go wrong exist from the start, at 0.
    for reason in WHOLE_REQUEST_REASONS.iter().chain(E::REJECTION_REASONS) {
        metrics.expect_rejections(reason);
        cx.dead_letter.expect(reason);
    }
    for error in [
        crate::metrics::error_type::RETRIES_EXHAUSTED,
        crate::metrics::error_type::CREDENTIALS_REFUSED,
    ] {
        cx.metrics.error_counter(error, crate::metrics::Stage::Sending);
    }
    let limiter = Limiter::new(
        settings.request.concurrency,
        settings.request.adaptive_max_concurrency,
        metrics.concurrency_limit.clone(),
        metrics.in_flight.clone(),
    );
    let shared = Arc::new(Shared {
        id: cx.id.clone(),
        service,
        client: settings.client,
        backoff: settings.request.backoff(),
        metrics: metrics.clone(),
        out: cx.metrics.output("_default"),
        component: cx.metrics.clone(),
        draining: CancellationToken::new(),
        gave_up: AtomicBool::new(false),
        health: SinkHealth {
            handle: crate::health::global().handle(&cx.metrics.labels),
            inner: Mutex::default(),
        },
        retry_log: Mutex::new(RateLimit::default()),
        reject_log: Mutex::new(RateLimit::default()),
        auth_log: Mutex::new(RateLimit::default()),
        dead_letter: cx.dead_letter.clone(),
    });
    let checker = health_check.map(|check| {
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            loop {
                let result = check().await;
                let passed = result.is_ok();
                shared.health.checked(result);
                if passed || shared.health.delivered() {
                    break;
                }
                tokio::time::sleep(HEALTH_RECHECK).await;
            }
        })
    });
    let mut batcher: Batcher<E::Key, Item<E::Payload>> = Batcher::new(settings.batch);
    let mut ready: Vec<Batch<E::Key, Item<E::Payload>>> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut encoders = Encoders::new(encoder, crate::component::workers());
    let mut rejects = RejectLog::default();
    let mut input_open = true;
    let idle_timeout = settings.batch.idle_timeout;
    let mut last_input = Instant::now();

    loop {
        // Send what is ready; waiting for a slot here is what holds the input back.
        for batch in std::mem::take(&mut ready) {
            let permit = limiter.acquire().await;
            metrics.batch_events.observe(batch.items.len() as f64);
            metrics.batch_bytes.observe(batch.bytes as f64);
            tasks.spawn(deliver(Arc::clone(&shared), batch, permit));
        }
        while tasks.try_join_next().is_some() {}
        if !input_open && encoders.is_empty() {
            if !batcher.is_empty() {
                batcher.take_all(&mut ready);
                continue;
            }
            // Flushed: wait for the requests in flight.
            while tasks.join_next().await.is_some() {}
            break;
        }
        let deadline = batcher.next_deadline();
        // Open batches go at once when the input has been quiet for the idle timeout.
        let idle = (!batcher.is_empty()).then(|| last_input + idle_timeout);
        tokio::select! {
            biased;
            _ = sleep_until(deadline) => batcher.take_expired(Instant::now(), &mut ready),
            encoded = encoders.next(), if !encoders.is_empty() => {
                for (key, item) in encoded.items {
                    batcher.push(key, item, &mut ready);
                }
                let mut refused = Vec::with_capacity(encoded.refused.len());
                for (rejection, mut event) in encoded.refused {
                    metrics.rejected(rejection.reason, 1);
                    rejects.emit(&cx.id, &rejection);
                    refused.push(Rejected {
                        original: original_of(&event),
                        finalizers: std::mem::take(event.finalizers_mut()),
                        destination: None,
                        reason: rejection.reason.to_string(),
                        detail: rejection.detail,
                    });
                }
                // Waiting here for a full dead-letter destination holds the input back.
                cx.dead_letter.send(refused).await;
            }
            events = cx.input.recv(), if input_open && encoders.has_idle() => match events {
                None => {
                    input_open = false;
                    shared.draining.cancel();
                }
                Some(events) => {
                    last_input = Instant::now();
                    cx.metrics.received(events.len(), batch_size(&events));
                    encoders.start(events);
                }
            },
            _ = sleep_until(idle) => batcher.take_all(&mut ready),
        }
    }
    if let Some(checker) = checker {
        checker.abort();
    }
    if shared.gave_up.load(Ordering::Acquire) {
        let message = "events were given up while draining; they will be read again".into();
        return Err(ComponentError::Peer { what: "the destination did not take them", message });
    }
    Ok(())
}

/// One input batch encoded: its items in input order, and the events the encoder refused.
struct Encoded<E: Encoder> {
    items: Vec<(E::Key, Item<E::Payload>)>,
    refused: Vec<(Rejection, Event)>,
}

fn encode_batch<E: Encoder>(encoder: &mut E, events: Vec<Event>) -> Encoded<E> {
    let mut encoded = Encoded { items: Vec::with_capacity(events.len()), refused: Vec::new() };
    for mut event in events {
        match encoder.encode(&mut event) {
            Ok((key, payload, size)) => {
                encoded.items.push((key, Item::new(payload, size, &mut event)));
            }
            Err(rejection) => encoded.refused.push((rejection, event)),
        }
    }
    encoded
}

/// A sink's encoders: one, encoding in the sink's task, or, for an encoder that forks, one
/// per core, each encoding a whole input batch on a task of its own, so that encoding (and
/// dropping the encoded events) is not bound to one core. Batches come out in input order.
struct Encoders<E: Encoder> {
    idle: Vec<E>,
    /// Batches being encoded, oldest first.
    running: VecDeque<Encoding<E>>,
}

enum Encoding<E: Encoder> {
    Done(Encoded<E>),
    Running(JoinHandle<(E, Encoded<E>)>),
}

impl<E: Encoder> Encoders<E> {
    /// `encoder` and up to `workers - 1` forks of it.
    fn new(encoder: E, workers: usize) -> Self {
        let forks = workers.saturating_sub(1);
        let mut idle: Vec<E> = (0..forks).map_while(|_| encoder.fork()).collect();
        idle.push(encoder);
        Self { idle, running: VecDeque::new() }
    }

    fn has_idle(&self) -> bool {
        !self.idle.is_empty()
    }

    fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Starts encoding `events` with an idle encoder (there must be one).
    fn start(&mut self, events: Vec<Event>) {
        let Some(mut encoder) = self.idle.pop() else { return };
        if self.idle.is_empty() && self.running.is_empty() {
            // The only encoder there is (or the only one free with nothing running): spawning
            // would buy nothing.
            let encoded = encode_batch(&mut encoder, events);
            self.idle.push(encoder);
            self.running.push_back(Encoding::Done(encoded));
            return;
        }
        self.running.push_back(Encoding::Running(tokio::spawn(async move {
            let encoded = encode_batch(&mut encoder, events);
            (encoder, encoded)
        })));
    }

    /// The oldest batch's encoding, once done (never, when none is under way). Cancel-safe: a
    /// batch leaves the queue only when returned.
    async fn next(&mut self) -> Encoded<E> {
        if let Some(Encoding::Running(handle)) = self.running.front_mut() {
            let (encoder, encoded) = match handle.await {
                Ok(done) => done,
                // Panics as encoding in the sink's own task would.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            self.idle.push(encoder);
            self.running[0] = Encoding::Done(encoded);
        }
        match self.running.pop_front() {
            Some(Encoding::Done(encoded)) => encoded,
            _ => std::future::pending().await,
        }
    }
}

/// Rate-limited log of events the encoder refused, by reason.
#[derive(Default)]
struct RejectLog {
    limits: HashMap<&'static str, RateLimit>,
}

impl RejectLog {
    fn emit(&mut self, component: &str, r: &Rejection) {
        if let Some(suppressed) = self.limits.entry(r.reason).or_default().allow() {
            tracing::warn!(
                component,
                reason = r.reason,
                detail = %r.detail,
                suppressed,
                "event cannot be sent; rejected, counted and sent to the dead-letter destination"
            );
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Sends one batch until every item has an outcome; holds `permit` throughout.
async fn deliver<S: Service>(
    shared: Arc<Shared<S>>,
    batch: Batch<S::Key, Item<S::Payload>>,
    permit: Permit,
) {
    let key = batch.key;
    let mut rng = StdRng::from_os_rng();
    // Chunks still to send; a 413 splits one into two.
    let mut chunks: Vec<Vec<Item<S::Payload>>> = vec![batch.items];
    while let Some(mut items) = chunks.pop() {
        let mut retries: u32 = 0;
        loop {
            let (rest, failure) = match attempt(&shared, &key, items, &permit, &mut chunks).await {
                Next::Settled => break,
                Next::Retry(rest, failure) => (rest, failure),
            };
            items = rest;
            let go_on = wait_to_retry(&shared, &mut retries, &failure, items.len(), &mut rng);
            if !go_on.await {
                return;
            }
        }
    }
    drop(permit);
}

/// What an attempt at a chunk leaves to do.
enum Next<P> {
    /// Every item has an outcome, or the chunk was split into `chunks`.
    Settled,
    /// These items are to be sent again after a backoff.
    Retry(Vec<Item<P>>, Failure),
}

/// Why a chunk is sent again.
struct Failure {
    reason: String,
    /// The destination refused the credentials: wait as long as weir runs.
    credentials: bool,
}

impl Failure {
    fn other(reason: String) -> Self {
        Self { reason, credentials: false }
    }
}

/// Sends `items` once and settles what the answer settles.
async fn attempt<S: Service>(
    shared: &Shared<S>,
    key: &S::Key,
    mut items: Vec<Item<S::Payload>>,
    permit: &Permit,
    chunks: &mut Vec<Vec<Item<S::Payload>>>,
) -> Next<S::Payload> {
    let req = match shared.service.build(key, &mut items) {
        Ok(r) => r,
        Err(e) => {
            // A request that cannot be built will not build on retry either.
            shared.reject_all(key, items, "request_build_failed", &e).await;
            return Next::Settled;
        }
    };
    match send(shared, &req, &items, permit).await {
        Verdict::Items { outcomes, .. } => settle_items(shared, key, items, outcomes).await,
        Verdict::RetryAll { reason, .. } => {
            shared.health.failed(&reason, false);
            Next::Retry(items, Failure::other(reason))
        }
        Verdict::RejectAll { reason, detail } => {
            let detail = bounded(detail, MAX_DETAIL_BYTES);
            shared.health.failed(&detail, false);
            shared.reject_all(key, items, &reason, &detail).await;
            Next::Settled
        }
        Verdict::Unauthorized(message) => {
            shared.refused(&message);
            Next::Retry(items, Failure { reason: message, credentials: true })
        }
        Verdict::Split if items.len() <= 1 => {
            let why = "one event alone is larger than the destination accepts";
            shared.reject_all(key, items, "request_too_large", why).await;
            Next::Settled
        }
        Verdict::Split => {
            let second = items.split_off(items.len() / 2);
            chunks.push(second);
            chunks.push(items);
            Next::Settled
        }
    }
}

/// Sends one request and classifies the answer, counting it and feeding the concurrency limit.
async fn send<S: Service>(
    shared: &Shared<S>,
    req: &HttpRequest,
    items: &[Item<S::Payload>],
    permit: &Permit,
) -> Verdict {
    let endpoint = shared.client.endpoints.pick();
    let started = Instant::now();
    let limit = shared.service.response_limit(items);
    let response = shared.client.send_limited(endpoint, req, limit).await;
    let rtt = started.elapsed();
    let verdict = match &response {
        Ok(resp) => {
            shared.metrics.request(&resp.status.to_string());
            shared.metrics.latency.observe(rtt.as_secs_f64());
            shared.service.classify(resp, items)
        }
        Err(e) => {
            shared.metrics.request(match e {
                SendError::Timeout => "timeout",
                _ => "error",
            });
            Verdict::RetryAll { reason: e.to_string(), throttled: matches!(e, SendError::Timeout) }
        }
    };
    permit.record(rtt, verdict.throttled());
    verdict
}

/// Settles each item by its outcome; what is to be retried comes back.
async fn settle_items<S: Service>(
    shared: &Shared<S>,
    key: &S::Key,
    items: Vec<Item<S::Payload>>,
    outcomes: Vec<ItemOutcome>,
) -> Next<S::Payload> {
    shared.health.succeeded();
    if outcomes.len() != items.len() {
        // The service promises one outcome per item; resend rather than guess.
        let reason = format!("{} outcomes for {} items", outcomes.len(), items.len());
        return Next::Retry(items, Failure::other(reason));
    }
    let mut retry = Vec::new();
    let mut refused = Vec::new();
    let (mut sent, mut bytes) = (0, 0);
    for (item, outcome) in items.into_iter().zip(outcomes) {
        match outcome {
            ItemOutcome::Delivered => {
                sent += 1;
                bytes += item.size;
                item.finish(EventStatus::Delivered);
            }
            ItemOutcome::Retry => retry.push(item),
            ItemOutcome::Rejected { reason, detail } => {
                refused.push(shared.reject(key, item, reason, detail));
            }
        }
    }
    shared.out.sent(sent, bytes);
    shared.dead_letter.send(refused).await;
    if retry.is_empty() {
        return Next::Settled;
    }
    let reason = format!("{} items to send again", retry.len());
    Next::Retry(retry, Failure::other(reason))
}

/// Waits out the backoff before retry number `retries` (then counts it). False when the
/// events are given up: `request.retry_attempts` is spent, or weir is stopping while the
/// destination refuses the credentials.
async fn wait_to_retry<S: Service>(
    shared: &Shared<S>,
    retries: &mut u32,
    failure: &Failure,
    events: usize,
    rng: &mut StdRng,
) -> bool {
    let reason = &failure.reason;
    if !shared.backoff.allows(u64::from(*retries)) {
        shared
            .component
            .error(crate::metrics::error_type::RETRIES_EXHAUSTED, crate::metrics::Stage::Sending);
        tracing::error!(
            component = %shared.id,
            events,
            retries = *retries,
            last_error = %reason,
            "giving up after request.retry_attempts; these events are not delivered and \
             will be read again after a restart"
        );
        return false;
    }
    let delay = shared.backoff.delay(*retries, rng);
    *retries = retries.saturating_add(1);
    shared.metrics.retries.inc();
    if failure.credentials {
        // Logged as an ERROR by `refused`; weir stopping ends the wait.
        tokio::select! {
            _ = tokio::time::sleep(delay) => return true,
            _ = shared.draining.cancelled() => {}
        }
        shared.gave_up.store(true, Ordering::Release);
        tracing::error!(
            component = %shared.id,
            events,
            "weir is stopping and the destination still refuses the credentials: these \
             events are not delivered and will be read again after a restart"
        );
        return false;
    }
    if let Some(suppressed) = shared.retry_log.lock().unwrap_or_else(|e| e.into_inner()).allow() {
        tracing::warn!(
            component = %shared.id,
            reason = %reason,
            retry = *retries,
            delay_ms = delay.as_millis() as u64,
            suppressed,
            "request failed; retrying"
        );
    }
    tokio::time::sleep(delay).await;
    true
}

/// `text` cut to at most `max` bytes at a character boundary, marked when cut.
pub fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

impl<S: Service> Shared<S> {
    /// Counts, logs (at a bounded rate) and reports refused credentials.
    fn refused(&self, message: &str) {
        self.health.failed(message, true);
        self.component
            .error(crate::metrics::error_type::CREDENTIALS_REFUSED, crate::metrics::Stage::Sending);
        if let Some(suppressed) = self.auth_log.lock().unwrap_or_else(|e| e.into_inner()).allow() {
            tracing::error!(
                component = %self.id,
                suppressed,
                "{message}; the sink is unhealthy and sends again with backoff until the \
                 credentials are accepted"
            );
        }
    }

    /// Counts and logs a rejection; returns the item's dead letter.
    fn reject(
        &self,
        key: &S::Key,
        mut item: Item<S::Payload>,
        reason: String,
        detail: String,
    ) -> Rejected {
        self.metrics.rejected(&reason, 1);
        if let Some(suppressed) = self.reject_log.lock().unwrap_or_else(|e| e.into_inner()).allow()
        {
            tracing::error!(
                component = %self.id,
                "error.type" = %reason,
                "error.reason" = %detail,
                suppressed,
                "destination rejected an event for good; it is counted and sent to the \
                 dead-letter destination"
            );
        }
        let (destination, original) = self.service.dead_letter(key, &item.payload);
        Rejected { finalizers: item.take_finalizers(), original, destination, reason, detail }
    }

    async fn reject_all(
        &self,
        key: &S::Key,
        items: Vec<Item<S::Payload>>,
        reason: &str,
        detail: &str,
    ) {
        let refused = items
            .into_iter()
            .map(|item| self.reject(key, item, reason.to_string(), detail.to_string()))
            .collect();
        self.dead_letter.send(refused).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::BatchNotifier;

    #[test]
    fn an_item_dropped_without_outcome_is_errored() {
        let (n, mut rx) = BatchNotifier::with_receiver();
        let mut e = Event::from_message("x").with_notifier(&n);
        drop(n);
        let item = Item::new((), 1, &mut e);
        drop(e);
        assert!(rx.try_recv().is_err(), "fired while the item still held the handle");
        drop(item);
        assert_eq!(rx.try_recv().unwrap(), crate::event::BatchStatus::Errored);

        let (n, mut rx) = BatchNotifier::with_receiver();
        let mut e = Event::from_message("x").with_notifier(&n);
        drop(n);
        Item::new((), 1, &mut e).finish(EventStatus::Delivered);
        drop(e);
        assert_eq!(rx.try_recv().unwrap(), crate::event::BatchStatus::Delivered);
    }

    /// Encodes an event's message as its payload; the encoding of message `0` waits until
    /// `1` has been encoded, so that two batches can only both finish when encoded at once.
    struct Gate(Arc<(Mutex<Vec<String>>, std::sync::Condvar)>);

    impl Encoder for Gate {
        type Key = ();
        type Payload = String;

        fn encode(&mut self, event: &mut Event) -> Result<((), String, usize), Rejection> {
            let path = crate::event::parse_path("message").unwrap();
            let message = event.get(&path).and_then(|v| v.as_bytes()).unwrap().clone();
            let message = String::from_utf8(message.to_vec()).unwrap();
            let (lock, changed) = &*self.0;
            let mut done = lock.lock().unwrap();
            if message == "0" {
                // Bounded so that encoding one batch at a time fails instead of hanging.
                let (guard, wait) = changed
                    .wait_timeout_while(done, Duration::from_secs(60), |d| {
                        !d.contains(&"1".to_string())
                    })
                    .unwrap();
                assert!(!wait.timed_out(), "batch 1 was not encoded while batch 0 was");
                done = guard;
            }
            done.push(message.clone());
            changed.notify_all();
            Ok(((), message, 1))
        }

        fn fork(&self) -> Option<Self> {
            Some(Gate(Arc::clone(&self.0)))
        }
    }

    fn payloads(encoded: Encoded<Gate>) -> Vec<String> {
        encoded.items.into_iter().map(|(_, item)| item.payload.clone()).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_encoded_at_once_and_come_out_in_order() {
        let done = Arc::new((Mutex::new(Vec::new()), std::sync::Condvar::new()));
        let mut encoders = Encoders::new(Gate(Arc::clone(&done)), 2);
        for message in ["0", "1"] {
            assert!(encoders.has_idle());
            encoders.start(vec![Event::from_message(message)]);
        }
        assert!(!encoders.has_idle(), "two encoders, both busy");
        assert_eq!(payloads(encoders.next().await), ["0"]);
        assert_eq!(payloads(encoders.next().await), ["1"]);
        assert!(encoders.is_empty());
        assert_eq!(*done.0.lock().unwrap(), ["1", "0"], "batch 1 was encoded first");
    }

    #[tokio::test]
    async fn one_encoder_encodes_in_the_sinks_task() {
        let done = Arc::new((Mutex::new(Vec::new()), std::sync::Condvar::new()));
        let mut encoders = Encoders::new(Gate(Arc::clone(&done)), 1);
        encoders.start(vec![Event::from_message("1"), Event::from_message("2")]);
        // Encoded before `start` returned: no task was spawned.
        assert_eq!(*done.0.lock().unwrap(), ["1", "2"]);
        assert_eq!(payloads(encoders.next().await), ["1", "2"]);
        assert!(encoders.has_idle() && encoders.is_empty());
    }
}
