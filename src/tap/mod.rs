//! Taps: copies of the events leaving chosen outputs, streamed to `weir tap` through the
//! API (`GET /tap`, when `tap = true` in `[api]`).
//!
//! Every output of a source or transform sends through one [`Fanout`](crate::channel::Fanout),
//! and every fan-out holds the [`TapPoint`] of its output. With no tap attached, the only
//! cost is one relaxed atomic load per batch. With one attached, the fan-out offers each batch
//! to the point's taps before sending it on: a tap takes at most `limit` events per
//! `interval_ms` window (Vector's sampling), serialises them to JSON at once (the copy holds
//! no acknowledgement, so it never delays a source's checkpoint), and puts them on its own
//! bounded queue with `try_send`. A reader slower than that loses its own copies, counted and
//! reported on the stream; the pipeline never waits for a tap.
//!
//! Points are kept by output id in one [`Hub`], so the replacement of a component that a
//! reload rebuilds gets the same point: a tap follows it. After every start and reload the
//! hub resolves each tap's patterns again: a tap whose outputs were all removed ends with a
//! notice, one that lost some of them is told which.
//!
//! `inputs_of = X` taps the outputs that X lists among its inputs: what reaches X.

pub mod client;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, mpsc};

use crate::channel::Batch;
use crate::config::graph::{OutputId, parse_input};
use crate::config::{ComponentKind, Config};
use crate::event::Event;

/// Events sampled per interval unless the request says otherwise (Vector's default).
pub const DEFAULT_LIMIT: u32 = 100;
/// The sampling interval unless the request says otherwise (Vector's default).
pub const DEFAULT_INTERVAL_MS: u64 = 500;
/// The most events a tap may sample per interval.
pub const MAX_LIMIT: u32 = 100_000;
/// The most a tap's queue holds, in lines and in bytes: what a slow reader costs weir.
const QUEUE_LINES: usize = 10_000;
const QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// How often a quiet stream checks for notices and drops to report.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Why every tap ends, and a new one is refused (503), while weir stops: a `weir tap` that
/// reconnects waits for the next weir instead of exiting.
pub const STOPPING: &str = "weir is stopping";

/// The taps on one output. Cheap to hold: every fan-out of the output keeps one.
#[derive(Default)]
pub struct TapPoint {
    /// Whether any tap is attached: the one check on the data path.
    active: AtomicBool,
    output: String,
    taps: Mutex<Vec<Arc<Tap>>>,
}

impl TapPoint {
    /// Whether a tap is attached (a relaxed load: a tap attached a moment ago may miss the
    /// batch being sent, which a sampler does anyway).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Gives each attached tap its sample of `batch`. Never waits on a reader.
    pub fn offer(&self, batch: &Batch) {
        match batch {
            Batch::Events(events) => self.offer_events(events),
            // Only while tapped: the block's lines become events to be shown.
            Batch::Lines(block) => self.offer_events(&block.clone().into_events()),
        }
    }

    /// Gives each attached tap its sample of `events`. Never waits on a reader.
    pub fn offer_events(&self, events: &[Event]) {
        let taps: Vec<Arc<Tap>> = lock(&self.taps).clone();
        let now = Instant::now();
        for tap in taps {
            let n = tap.quota(events.len(), now);
            events.iter().take(n).for_each(|e| tap.push(&self.output, e));
        }
    }

    fn set_taps(&self, taps: Vec<Arc<Tap>>) {
        let mut held = lock(&self.taps);
        self.active.store(!taps.is_empty(), Ordering::Relaxed);
        *held = taps;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a client asks to see: component id patterns (globs), and how much.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TapRequest {
    pub outputs_of: Vec<String>,
    pub inputs_of: Vec<String>,
    /// At most this many events per interval.
    pub limit: u32,
    pub interval: Duration,
}

impl TapRequest {
    /// Reads `GET /tap`'s query: `outputs_of` and `inputs_of` (repeated or comma-separated),
    /// `limit`, `interval_ms`.
    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut request = Self {
            outputs_of: Vec::new(),
            inputs_of: Vec::new(),
            limit: DEFAULT_LIMIT,
            interval: Duration::from_millis(DEFAULT_INTERVAL_MS),
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let list = || value.split(',').map(str::trim).filter(|p| !p.is_empty());
            match key.as_ref() {
                "outputs_of" => request.outputs_of.extend(list().map(String::from)),
                "inputs_of" => request.inputs_of.extend(list().map(String::from)),
                "limit" => {
                    request.limit = value
                        .parse()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or(format!("limit must be a number from 1 to {MAX_LIMIT}"))?;
                }
                "interval_ms" => {
                    let ms: u64 = value
                        .parse()
                        .ok()
                        .filter(|ms| *ms >= 1)
                        .ok_or("interval_ms must be a number of milliseconds, at least 1")?;
                    request.interval = Duration::from_millis(ms);
                }
                other => return Err(format!("unknown parameter {other:?}")),
            }
        }
        if request.outputs_of.is_empty() && request.inputs_of.is_empty() {
            return Err(
                "name components to tap: outputs_of=ID or inputs_of=ID (globs allowed)".into()
            );
        }
        Ok(request)
    }
}

/// One attached tap.
struct Tap {
    id: u64,
    request: TapRequest,
    /// Its sampling window: when it began and how many events it took.
    window: Mutex<(Instant, u32)>,
    queue: mpsc::Sender<Bytes>,
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
    /// `weir_tap_dropped_events_total`, over every tap.
    dropped_total: Counter,
    /// What the hub has to tell the reader (outputs matched, lost, the end).
    notices: Mutex<VecDeque<String>>,
    /// The last notice, once the tap has ended.
    ended: Mutex<Option<String>>,
    wake: Notify,
}

impl Tap {
    /// How many of `n` events the tap takes now, at most `limit` per window.
    fn quota(&self, n: usize, now: Instant) -> usize {
        let mut window = lock(&self.window);
        if now.duration_since(window.0) >= self.request.interval {
            *window = (now, 0);
        }
        let take = (self.request.limit - window.1).min(u32::try_from(n).unwrap_or(u32::MAX));
        window.1 += take;
        take as usize
    }

    /// Queues one event's line, or counts it dropped when the queue is full.
    fn push(&self, output: &str, event: &Event) {
        let line = event_line(output, event);
        let size = line.len();
        let full = self.queued_bytes.load(Ordering::Relaxed) + size > QUEUE_BYTES;
        if !full && self.queue.try_send(line).is_ok() {
            self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.inc();
        }
    }

    fn notify(&self, notice: String) {
        let mut notices = lock(&self.notices);
        if notices.len() < 64 {
            notices.push_back(notice);
        }
        drop(notices);
        self.wake.notify_one();
    }

    fn end(&self, notice: String) {
        lock(&self.ended).get_or_insert(notice);
        self.wake.notify_one();
    }
}

/// `{"output":"parse","event":{...}}` and a newline.
fn event_line(output: &str, event: &Event) -> Bytes {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(b"{\"output\":");
    // Writing JSON into memory cannot fail: keys are strings and floats are never NaN.
    let _ = serde_json::to_writer(&mut line, output);
    line.extend_from_slice(b",\"event\":");
    let _ = serde_json::to_writer(&mut line, &event.view());
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn message_line(key: &str, value: serde_json::Value) -> Bytes {
    Bytes::from(format!("{}\n", serde_json::json!({ key: value })))
}

/// A component as taps see it: its kind, its outputs and the outputs it reads.
#[derive(Clone, Debug)]
struct Node {
    kind: ComponentKind,
    outputs: Vec<OutputId>,
    inputs: Vec<OutputId>,
}

/// The pipeline's components, with what a tap can attach to.
#[derive(Clone, Debug, Default)]
struct Graph(BTreeMap<String, Node>);

impl Graph {
    fn of(config: &Config) -> Self {
        let mut nodes = BTreeMap::new();
        let out = |id: &str, port: Option<String>| OutputId { component: id.into(), port };
        for id in config.sources.keys() {
            let node =
                Node { kind: ComponentKind::Source, outputs: vec![out(id, None)], inputs: vec![] };
            nodes.insert(id.clone(), node);
        }
        for (id, def) in &config.transforms {
            let mut outputs = vec![out(id, None)];
            outputs.extend(def.inner.outputs().into_iter().map(|p| out(id, Some(p))));
            let inputs = def.inputs.iter().map(|i| parse_input(i)).collect();
            nodes.insert(id.clone(), Node { kind: ComponentKind::Transform, outputs, inputs });
        }
        for (id, def) in &config.sinks {
            let inputs = def.inputs.iter().map(|i| parse_input(i)).collect();
            nodes.insert(id.clone(), Node { kind: ComponentKind::Sink, outputs: vec![], inputs });
        }
        Self(nodes)
    }

    /// The outputs a request taps, or why it taps none.
    fn resolve(&self, request: &TapRequest) -> Result<BTreeSet<OutputId>, String> {
        let mut taken = BTreeSet::new();
        for pattern in &request.outputs_of {
            taken.extend(self.matching(pattern, "outputs_of", |n| &n.outputs)?);
        }
        for pattern in &request.inputs_of {
            taken.extend(self.matching(pattern, "inputs_of", |n| &n.inputs)?);
        }
        Ok(taken)
    }

    /// The outputs (or inputs) of the components `pattern` names.
    fn matching(
        &self,
        pattern: &str,
        what: &str,
        edges: impl Fn(&Node) -> &Vec<OutputId>,
    ) -> Result<Vec<OutputId>, String> {
        let glob = glob::Pattern::new(pattern)
            .map_err(|e| format!("{what}: {pattern:?} is not a valid pattern: {e}"))?;
        let named: Vec<(&String, &Node)> = (self.0.iter())
            .filter(|(id, n)| {
                glob.matches(id) || n.outputs.iter().any(|o| glob.matches(&o.to_string()))
            })
            .collect();
        if named.is_empty() {
            let known: Vec<&str> = self.0.keys().map(String::as_str).collect();
            return Err(format!(
                "{what}: no component matches {pattern:?} (components: {})",
                known.join(", ")
            ));
        }
        let mut found = Vec::new();
        for (id, node) in &named {
            let edges = edges(node);
            if edges.is_empty() && named.len() == 1 {
                let hint = match node.kind {
                    ComponentKind::Sink => "a sink has no outputs: use inputs_of",
                    _ => "a source has no inputs: use outputs_of",
                };
                return Err(format!(
                    "{what}: {}.{id} cannot be tapped so ({hint})",
                    node.kind.table()
                ));
            }
            // A port pattern (`route.errors`) takes that output alone.
            found.extend(
                edges
                    .iter()
                    .filter(|o| {
                        what == "inputs_of" || glob.matches(id) || glob.matches(&o.to_string())
                    })
                    .cloned(),
            );
        }
        if found.is_empty() {
            return Err(format!("{what}: the components {pattern:?} matches have none"));
        }
        Ok(found)
    }
}

/// Every tap and tap point of the process.
#[derive(Default)]
pub struct Hub {
    inner: Mutex<HubInner>,
    /// `weir_tap_attached`.
    attached: Gauge,
    /// `weir_tap_dropped_events_total`.
    dropped: Counter,
}

#[derive(Default)]
struct HubInner {
    graph: Graph,
    points: BTreeMap<OutputId, Arc<TapPoint>>,
    /// Each tap with the outputs it takes now.
    taps: Vec<(Arc<Tap>, BTreeSet<OutputId>)>,
    next_id: u64,
    stopping: bool,
}

impl HubInner {
    /// Gives every point the taps that take its output.
    fn rewire(&self) {
        for (out, point) in &self.points {
            let taps = (self.taps.iter())
                .filter(|(_, outs)| outs.contains(out))
                .map(|(t, _)| Arc::clone(t))
                .collect();
            point.set_taps(taps);
        }
    }
}

/// The hub of the process (weir runs one pipeline).
pub fn global() -> &'static Hub {
    static HUB: OnceLock<Hub> = OnceLock::new();
    HUB.get_or_init(|| {
        let hub = Hub::default();
        let registry = crate::metrics::global();
        registry.register("tap_attached", "Taps attached now (weir tap)", hub.attached.clone());
        registry.register(
            "tap_dropped_events",
            "Copies of events taps dropped because their readers were slower than the pipeline",
            hub.dropped.clone(),
        );
        hub
    })
}

impl Hub {
    fn lock(&self) -> MutexGuard<'_, HubInner> {
        lock(&self.inner)
    }

    fn rewire(&self, inner: &HubInner) {
        inner.rewire();
        self.attached.set(i64::try_from(inner.taps.len()).unwrap_or(i64::MAX));
    }

    /// The point of `out`, made on first use; what a fan-out of that output holds.
    pub fn point(&self, out: &OutputId) -> Arc<TapPoint> {
        let mut inner = self.lock();
        if let Some(p) = inner.points.get(out) {
            return Arc::clone(p);
        }
        let point = Arc::new(TapPoint { output: out.to_string(), ..TapPoint::default() });
        inner.points.insert(out.clone(), Arc::clone(&point));
        self.rewire(&inner);
        point
    }

    /// Takes the running configuration (at start and after each reload): every tap's
    /// patterns are resolved again against it. `replaced`: ids of the components a reload
    /// rebuilt, whose taps now follow the new instance.
    pub fn set_graph(&self, config: &Config, replaced: &[String]) {
        let mut inner = self.lock();
        let graph = Graph::of(config);
        let outputs: BTreeSet<OutputId> =
            graph.0.values().flat_map(|n| n.outputs.iter().cloned()).collect();
        inner.points.retain(|out, point| {
            let keep = outputs.contains(out);
            if !keep {
                point.set_taps(Vec::new());
            }
            keep
        });
        let mut kept = Vec::new();
        for (tap, old) in std::mem::take(&mut inner.taps) {
            let new = graph.resolve(&tap.request).unwrap_or_default();
            for gone in old.difference(&new) {
                tap.notify(format!("{gone} was removed by a reload; no longer tapped"));
            }
            for added in new.difference(&old) {
                tap.notify(format!("{added} was added by a reload; tapped"));
            }
            for out in old.intersection(&new).filter(|o| replaced.contains(&o.component)) {
                tap.notify(format!("{out} was rebuilt by a reload; the tap follows the new one"));
            }
            if new.is_empty() {
                tap.end("nothing this tap named runs any more (removed by a reload)".into());
            } else {
                kept.push((tap, new));
            }
        }
        inner.taps = kept;
        inner.graph = graph;
        inner.stopping = false;
        self.rewire(&inner);
    }

    /// Attaches a tap; its events and notices come from the returned stream.
    pub fn attach(&'static self, request: TapRequest) -> Result<TapStream, String> {
        let mut inner = self.lock();
        if inner.stopping {
            return Err(STOPPING.into());
        }
        let outputs = inner.graph.resolve(&request)?;
        let (queue, rx) = mpsc::channel(QUEUE_LINES);
        inner.next_id += 1;
        let tap = Arc::new(Tap {
            id: inner.next_id,
            request,
            window: Mutex::new((Instant::now(), 0)),
            queue,
            queued_bytes: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            dropped_total: self.dropped.clone(),
            notices: Mutex::default(),
            ended: Mutex::new(None),
            wake: Notify::new(),
        });
        let names: Vec<String> = outputs.iter().map(ToString::to_string).collect();
        inner.taps.push((Arc::clone(&tap), outputs));
        self.rewire(&inner);
        Ok(TapStream {
            tap,
            rx,
            hub: self,
            first: Some(message_line("tapping", names.into())),
            reported_dropped: 0,
            done: false,
        })
    }

    fn detach(&self, id: u64) {
        let mut inner = self.lock();
        inner.taps.retain(|(t, _)| t.id != id);
        self.rewire(&inner);
    }

    /// Ends every tap: weir is stopping.
    pub fn stop_all(&self) {
        let mut inner = self.lock();
        inner.stopping = true;
        for (tap, _) in inner.taps.drain(..) {
            tap.end(STOPPING.into());
        }
        self.rewire(&inner);
    }
}

/// The lines of one tap, as `GET /tap` streams them (NDJSON):
/// `{"tapping":["parse"]}` first, then `{"output":"parse","event":{...}}` per event,
/// `{"dropped":N}` (the total so far) when the reader fell behind, `{"notice":"..."}` on a
/// reload, and `{"end":"why"}` last when weir ends the tap. Detaches the tap when dropped (the client
/// went away).
pub struct TapStream {
    tap: Arc<Tap>,
    rx: mpsc::Receiver<Bytes>,
    hub: &'static Hub,
    first: Option<Bytes>,
    reported_dropped: u64,
    done: bool,
}

impl Drop for TapStream {
    fn drop(&mut self) {
        self.hub.detach(self.tap.id);
    }
}

impl TapStream {
    /// The next line, or `None` once the tap has ended and everything was given out.
    pub async fn next_line(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            if self.done {
                return None;
            }
            let dropped = self.tap.dropped.load(Ordering::Relaxed);
            if dropped > self.reported_dropped {
                self.reported_dropped = dropped;
                return Some(message_line("dropped", dropped.into()));
            }
            let notice = lock(&self.tap.notices).pop_front();
            if let Some(notice) = notice {
                return Some(message_line("notice", notice.into()));
            }
            // An ended tap gives out what it had queued, then its last notice.
            let last = lock(&self.tap.ended).clone();
            if let Some(last) = last {
                if let Ok(line) = self.rx.try_recv() {
                    return Some(self.taken(line));
                }
                self.done = true;
                return Some(message_line("end", last.into()));
            }
            tokio::select! {
                line = self.rx.recv() => match line {
                    Some(line) => return Some(self.taken(line)),
                    None => self.done = true,
                },
                _ = self.tap.wake.notified() => {}
                _ = tokio::time::sleep(REPORT_EVERY) => {}
            }
        }
    }

    fn taken(&self, line: Bytes) -> Bytes {
        self.tap.queued_bytes.fetch_sub(line.len(), Ordering::Relaxed);
        line
    }

    /// The stream as an HTTP body.
    pub fn into_body(
        self,
    ) -> http_body_util::StreamBody<
        impl futures_util::Stream<Item = Result<hyper::body::Frame<Bytes>, Infallible>>,
    > {
        let stream = futures_util::stream::unfold(self, |mut s| async move {
            let line = s.next_line().await?;
            Some((Ok(hyper::body::Frame::data(line)), s))
        });
        http_body_util::StreamBody::new(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        crate::config::load_from_str("test.toml", text).unwrap()
    }

    const PIPELINE: &str = r#"
        [sources.in]
        type = "stdin"
        [sources.in2]
        type = "stdin"
        [transforms.parse]
        type = "parse_json"
        inputs = ["in", "in2"]
        [sinks.out]
        type = "blackhole"
        inputs = ["parse"]
    "#;

    fn request(outputs_of: &[&str], inputs_of: &[&str]) -> TapRequest {
        TapRequest {
            outputs_of: outputs_of.iter().map(|s| s.to_string()).collect(),
            inputs_of: inputs_of.iter().map(|s| s.to_string()).collect(),
            limit: 10,
            interval: Duration::from_secs(1),
        }
    }

    fn names(set: BTreeSet<OutputId>) -> Vec<String> {
        set.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn patterns_resolve_to_outputs_or_say_what_is_wrong() {
        let g = Graph::of(&config(PIPELINE));
        // A transform's named outputs come with it (`parse_json` has `errors`).
        let parse = ["parse", "parse.errors"];
        assert_eq!(names(g.resolve(&request(&["parse"], &[])).unwrap()), parse);
        assert_eq!(names(g.resolve(&request(&["parse.errors"], &[])).unwrap()), ["parse.errors"]);
        assert_eq!(names(g.resolve(&request(&["in*"], &[])).unwrap()), ["in", "in2"]);
        assert_eq!(names(g.resolve(&request(&[], &["parse"])).unwrap()), ["in", "in2"]);
        assert_eq!(names(g.resolve(&request(&[], &["out"])).unwrap()), ["parse"]);
        let e = g.resolve(&request(&["nope"], &[])).unwrap_err();
        assert!(
            e.contains("no component matches \"nope\"") && e.contains("in, in2, out, parse"),
            "{e}"
        );
        let e = g.resolve(&request(&["out"], &[])).unwrap_err();
        assert!(e.contains("sinks.out") && e.contains("use inputs_of"), "{e}");
        let e = g.resolve(&request(&[], &["in"])).unwrap_err();
        assert!(e.contains("sources.in") && e.contains("use outputs_of"), "{e}");
        // A glob over kinds takes what has outputs.
        let all = ["in", "in2", "parse", "parse.errors"];
        assert_eq!(names(g.resolve(&request(&["*"], &[])).unwrap()), all);
    }

    #[test]
    fn queries_are_read_and_checked() {
        let r =
            TapRequest::from_query("outputs_of=a,b*&inputs_of=c&limit=5&interval_ms=20").unwrap();
        assert_eq!(r.outputs_of, ["a", "b*"]);
        assert_eq!(r.inputs_of, ["c"]);
        assert_eq!((r.limit, r.interval), (5, Duration::from_millis(20)));
        assert!(TapRequest::from_query("").unwrap_err().contains("outputs_of=ID"));
        assert!(TapRequest::from_query("outputs_of=a&limit=0").unwrap_err().contains("limit"));
        assert!(TapRequest::from_query("outputs_of=a&x=1").unwrap_err().contains("\"x\""));
    }

    #[tokio::test]
    async fn a_tap_samples_per_interval_and_counts_what_its_reader_left() {
        let hub: &'static Hub = Box::leak(Box::default());
        hub.set_graph(&config(PIPELINE), &[]);
        let point = hub.point(&parse_input("parse"));
        assert!(!point.is_active());
        let mut req = request(&["parse"], &[]);
        req.limit = 3;
        req.interval = Duration::from_secs(3600);
        let mut stream = hub.attach(req).unwrap();
        assert!(point.is_active());
        let batch =
            || Batch::Events((0..5).map(|i| Event::from_message(format!("m{i}"))).collect());
        point.offer(&batch());
        point.offer(&batch());
        let first = stream.next_line().await.unwrap();
        assert_eq!(first, "{\"tapping\":[\"parse\",\"parse.errors\"]}\n");
        for i in 0..3 {
            let line = stream.next_line().await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(v["output"], "parse");
            assert_eq!(v["event"]["message"], format!("m{i}"));
        }
        // The window's limit is reached: nothing more until it ends.
        assert!(stream.rx.try_recv().is_err());
        // A full queue drops the tap's copies and says how many.
        let tap = Arc::clone(&stream.tap);
        for _ in 0..QUEUE_LINES + 7 {
            tap.push("parse", &Event::from_message("x"));
        }
        assert_eq!(stream.next_line().await.unwrap(), "{\"dropped\":7}\n");
        // A reload that removes the component ends the tap after what it queued.
        hub.set_graph(
            &config(
                r#"
            [sources.in]
            type = "stdin"
            [sinks.out]
            type = "blackhole"
            inputs = ["in"]
        "#,
            ),
            &[],
        );
        assert!(!point.is_active());
        let mut lines = Vec::new();
        while let Some(line) = stream.next_line().await {
            lines.push(String::from_utf8(line.to_vec()).unwrap());
        }
        assert_eq!(lines.len(), QUEUE_LINES + 3);
        assert!(lines[0].contains("parse was removed by a reload"), "{}", lines[0]);
        assert!(lines[1].contains("parse.errors was removed by a reload"), "{}", lines[1]);
        assert!(lines[QUEUE_LINES + 1].contains("\"event\":{\"message\":\"x\"}"));
        assert!(lines[QUEUE_LINES + 2].contains("\"end\":\"nothing this tap named runs"));
        drop(stream);
        assert!(lock(&hub.inner).taps.is_empty());
    }

    #[test]
    fn a_tap_follows_a_rebuilt_component_and_detaches_when_dropped() {
        let hub: &'static Hub = Box::leak(Box::default());
        let c = config(PIPELINE);
        hub.set_graph(&c, &[]);
        let stream = hub.attach(request(&[], &["out"])).unwrap();
        hub.set_graph(&c, &["parse".to_string()]);
        // The rebuilt transform's new fan-out takes the same point.
        let point = hub.point(&parse_input("parse"));
        assert!(point.is_active());
        let notices = lock(&stream.tap.notices).clone();
        assert_eq!(notices, ["parse was rebuilt by a reload; the tap follows the new one"]);
        drop(stream);
        assert!(!point.is_active());
    }
}
