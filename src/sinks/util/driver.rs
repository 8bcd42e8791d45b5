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
//! - fatal (401, 403, a request the destination cannot accept whatever it holds): the sink
//!   stops with an ERROR naming the cause; every event it holds is marked errored, so the
//!   source reads it again after a restart.
//!
//! Invariants: memory is bounded by the input buffer, the open batches
//! ([`super::batch`]: at most twice `batch.max_bytes`) and at most one batch per request slot.
//! An [`Item`] that is dropped without an outcome (a stop, a task aborted at shutdown) marks
//! its event errored, never delivered.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, BatchSettings, Batcher, ByteSize};
use super::concurrency::{Concurrency, Limiter, Permit};
use super::http::{HttpClient, HttpRequest, HttpResponse, SendError};
use super::metrics::SinkMetrics;
use super::retry::Backoff;
use crate::dead_letter::{DeadLetter, Rejected, original_of};
use crate::event::{Event, EventFinalizers, EventStatus, batch_size};
use crate::internal_events::RateLimit;
use crate::metrics::{ComponentMetrics, OutputMetrics};
use crate::topology::SinkContext;

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

    /// Encodes one event: its destination, its payload and the payload's size in bytes.
    fn encode(&mut self, event: &mut Event)
    -> Result<(Self::Key, Self::Payload, usize), Rejection>;
}

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
    /// The sink cannot go on (credentials refused, a request the destination will never take).
    Fatal(String),
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
}

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
    pub fn check(&self) -> Vec<crate::config::ConfigIssue> {
        use crate::config::ConfigIssue;
        let mut issues = Vec::new();
        let secs_ok = |v: f64| v.is_finite() && v > 0.0 && v <= 86_400.0;
        for (name, v) in [
            ("request.timeout_secs", self.timeout_secs),
            ("request.retry_initial_backoff_secs", self.retry_initial_backoff_secs),
            ("request.retry_max_duration_secs", self.retry_max_duration_secs),
        ] {
            if !secs_ok(v) {
                issues.push(ConfigIssue::field(
                    name,
                    format!("{name} must be a number of seconds above 0"),
                ));
            }
        }
        if self.adaptive_max_concurrency == 0 {
            issues.push(ConfigIssue::field(
                "request.adaptive_max_concurrency",
                "request.adaptive_max_concurrency must be at least 1",
            ));
        }
        issues
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.clamp(0.001, 86_400.0))
    }

    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: Duration::from_secs_f64(self.retry_initial_backoff_secs.clamp(0.0, 86_400.0)),
            max: Duration::from_secs_f64(self.retry_max_duration_secs.clamp(0.0, 86_400.0)),
            max_retries: self.retry_attempts,
        }
    }
}

/// A task the driver starts beside the sink (a health check): it must not block sending.
pub type SideTask = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

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
    /// Cancelled when the sink must stop (a fatal response).
    stop: CancellationToken,
    retry_log: Mutex<RateLimit>,
    reject_log: Mutex<RateLimit>,
    dead_letter: DeadLetter,
}

/// Runs a sink until its input ends (then flushes and waits for every request) or a fatal
/// response stops it (then returns `Err`).
pub async fn run<E, S>(
    mut cx: SinkContext,
    mut encoder: E,
    service: S,
    settings: DriverSettings,
    side: Option<SideTask>,
) -> Result<(), ()>
where
    E: Encoder,
    S: Service<Key = E::Key, Payload = E::Payload>,
{
    let metrics = SinkMetrics::new(&cx.metrics);
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
        stop: CancellationToken::new(),
        retry_log: Mutex::new(RateLimit::default()),
        reject_log: Mutex::new(RateLimit::default()),
        dead_letter: cx.dead_letter.clone(),
    });
    let side = side.map(|task| {
        let stop = shared.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = task => {}
                _ = stop.cancelled() => {}
            }
        })
    });
    let mut batcher: Batcher<E::Key, Item<E::Payload>> = Batcher::new(settings.batch);
    let mut ready: Vec<Batch<E::Key, Item<E::Payload>>> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut rejects = RejectLog::default();
    let mut input_open = true;
    let idle_timeout = settings.batch.idle_timeout;
    let mut last_input = Instant::now();

    let result = loop {
        // Send what is ready; waiting for a slot here is what holds the input back.
        let mut stopped = false;
        for batch in std::mem::take(&mut ready) {
            let permit = tokio::select! {
                p = limiter.acquire() => p,
                _ = shared.stop.cancelled() => { stopped = true; break; }
            };
            metrics.batch_events.observe(batch.items.len() as f64);
            metrics.batch_bytes.observe(batch.bytes as f64);
            tasks.spawn(deliver(Arc::clone(&shared), batch, permit));
        }
        while tasks.try_join_next().is_some() {}
        if stopped || shared.stop.is_cancelled() {
            break Err(());
        }
        if !input_open {
            // Flushed: wait for the requests in flight.
            let all_done = async { while tasks.join_next().await.is_some() {} };
            tokio::select! {
                _ = all_done => break if shared.stop.is_cancelled() { Err(()) } else { Ok(()) },
                _ = shared.stop.cancelled() => break Err(()),
            }
        }
        let deadline = batcher.next_deadline();
        // Open batches go at once when the input has been quiet for the idle timeout.
        let idle = (!batcher.is_empty()).then(|| last_input + idle_timeout);
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break Err(()),
            _ = sleep_until(deadline) => batcher.take_expired(Instant::now(), &mut ready),
            events = cx.input.recv() => match events {
                None => {
                    input_open = false;
                    batcher.take_all(&mut ready);
                }
                Some(events) => {
                    last_input = Instant::now();
                    cx.metrics.received(events.len(), batch_size(&events));
                    let mut refused = Vec::new();
                    for mut event in events {
                        match encoder.encode(&mut event) {
                            Ok((key, payload, size)) => {
                                let item = Item::new(payload, size, &mut event);
                                batcher.push(key, item, &mut ready);
                            }
                            Err(rejection) => {
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
                        }
                    }
                    // Waiting here for a full dead-letter destination holds the input back.
                    cx.dead_letter.send(refused).await;
                }
            },
            _ = sleep_until(idle) => batcher.take_all(&mut ready),
        }
    };
    if result.is_err() {
        // Whatever is still held is marked errored as it is dropped (see `Item`).
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        let mut held = Vec::new();
        batcher.take_all(&mut held);
        let count: usize = held.iter().chain(ready.iter()).map(|b| b.items.len()).sum::<usize>();
        tracing::error!(
            component = %cx.id,
            held_events = count,
            "sink stopped; the events it held are not delivered and will be read again after a restart"
        );
    }
    if let Some(side) = side {
        side.abort();
    }
    result
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
    'chunks: while let Some(mut items) = chunks.pop() {
        let mut retries: u32 = 0;
        loop {
            if shared.stop.is_cancelled() {
                return;
            }
            let req = match shared.service.build(&key, &mut items) {
                Ok(r) => r,
                Err(e) => {
                    // A request that cannot be built will not build on retry either.
                    shared.reject_all(&key, items, "request_build_failed", &e).await;
                    continue 'chunks;
                }
            };
            let endpoint = shared.client.endpoints.pick();
            let started = Instant::now();
            let response = shared.client.send(endpoint, &req).await;
            let rtt = started.elapsed();
            let verdict = match &response {
                Ok(resp) => {
                    shared.metrics.request(&resp.status.to_string());
                    shared.metrics.latency.observe(rtt.as_secs_f64());
                    shared.service.classify(resp, &items)
                }
                Err(e) => {
                    shared.metrics.request(match e {
                        SendError::Timeout => "timeout",
                        _ => "error",
                    });
                    Verdict::RetryAll {
                        reason: e.to_string(),
                        throttled: matches!(e, SendError::Timeout),
                    }
                }
            };
            permit.record(rtt, verdict.throttled());
            let reason = match verdict {
                Verdict::Items { outcomes, .. } => {
                    if outcomes.len() != items.len() {
                        // The service promises one outcome per item; resend rather than guess.
                        format!("{} outcomes for {} items", outcomes.len(), items.len())
                    } else {
                        let mut retry = Vec::new();
                        let mut refused = Vec::new();
                        let (mut sent, mut bytes) = (0, 0);
                        let mut first_retry_reason = None;
                        for (item, outcome) in items.into_iter().zip(outcomes) {
                            match outcome {
                                ItemOutcome::Delivered => {
                                    sent += 1;
                                    bytes += item.size;
                                    item.finish(EventStatus::Delivered);
                                }
                                ItemOutcome::Retry => {
                                    first_retry_reason.get_or_insert("items to retry");
                                    retry.push(item);
                                }
                                ItemOutcome::Rejected { reason, detail } => {
                                    refused.push(shared.reject(&key, item, reason, detail));
                                }
                            }
                        }
                        shared.out.sent(sent, bytes);
                        shared.dead_letter.send(refused).await;
                        if retry.is_empty() {
                            continue 'chunks;
                        }
                        items = retry;
                        format!("{} items to send again", items.len())
                    }
                }
                Verdict::RetryAll { reason, .. } => reason,
                Verdict::Split => {
                    if items.len() <= 1 {
                        shared
                            .reject_all(
                                &key,
                                items,
                                "request_too_large",
                                "one event alone is larger than the destination accepts",
                            )
                            .await;
                    } else {
                        let second = items.split_off(items.len() / 2);
                        chunks.push(second);
                        chunks.push(items);
                    }
                    continue 'chunks;
                }
                Verdict::Fatal(message) => {
                    shared.component.error(
                        crate::metrics::error_type::FATAL_RESPONSE,
                        crate::metrics::Stage::Sending,
                    );
                    tracing::error!(component = %shared.id, "{message}; the sink stops");
                    shared.stop.cancel();
                    return;
                }
            };
            if !shared.backoff.allows(u64::from(retries)) {
                shared.component.error(
                    crate::metrics::error_type::RETRIES_EXHAUSTED,
                    crate::metrics::Stage::Sending,
                );
                tracing::error!(
                    component = %shared.id,
                    events = items.len(),
                    retries,
                    last_error = %reason,
                    "giving up after request.retry_attempts; these events are not delivered and \
                     will be read again after a restart"
                );
                return;
            }
            let delay = shared.backoff.delay(retries, &mut rng);
            retries = retries.saturating_add(1);
            shared.metrics.retries.inc();
            if let Some(suppressed) =
                shared.retry_log.lock().unwrap_or_else(|e| e.into_inner()).allow()
            {
                tracing::warn!(
                    component = %shared.id,
                    reason = %reason,
                    retry = retries,
                    delay_ms = delay.as_millis() as u64,
                    suppressed,
                    "request failed; retrying"
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shared.stop.cancelled() => return,
            }
        }
    }
    drop(permit);
}

impl<S: Service> Shared<S> {
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
}
