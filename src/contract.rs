//! The contract every component keeps, checked one way for all of them: what its counters
//! say (`weir_component_received_events_total`, `..._sent_events_total`, errors, discards)
//! and what the acknowledgement handles of the events it was given report.
//!
//! A component test runs the component with [`run_source`], [`run_transform`] or
//! [`run_sink`], which build it through its trait exactly as the topology does, with metrics
//! of an id of its own, then states what it expects in one [`Expect`] and calls
//! [`Expect::check`]. A new component gets its first test by writing one of these.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::channel::{self, Fanout, WhenFull};
use crate::component::{
    ShutdownSignal, SinkComponent, SinkContext, SourceComponent, SourceContext, SourceSender,
    TransformComponent,
};
use crate::dead_letter::DeadLetter;
use crate::error::ComponentError;
use crate::event::{BatchNotifier, BatchStatus, Event};
use crate::metrics::{ComponentLabels, ComponentMetrics, Stage};

/// How long a component under test may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(20);

/// Metrics under an id no other test uses, so that counters start at zero.
pub fn metrics(kind: &'static str, type_name: &str) -> ComponentMetrics {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let id = format!("contract-{type_name}-{}", NEXT.fetch_add(1, Ordering::Relaxed));
    ComponentMetrics::new(ComponentLabels::new(&id, kind, type_name))
}

/// The acknowledgement receivers of events made by [`events`], one per event.
pub struct Acks(Vec<oneshot::Receiver<BatchStatus>>);

impl Acks {
    /// Each event's status, once every copy of it has been dropped.
    pub async fn statuses(self) -> Vec<BatchStatus> {
        let mut out = Vec::new();
        for rx in self.0 {
            let status = tokio::time::timeout(PATIENCE, rx).await;
            out.push(status.expect("an event was never acknowledged").expect("notifier dropped"));
        }
        out
    }
}

/// Events with these messages, each with an acknowledgement handle of its own.
pub fn events(messages: &[&str]) -> (Vec<Event>, Acks) {
    let (events, acks) = messages
        .iter()
        .map(|m| {
            let (notifier, rx) = BatchNotifier::with_receiver();
            (Event::from_message(m.to_string()).with_notifier(&notifier), rx)
        })
        .unzip();
    (events, Acks(acks))
}

/// What a component did in a test run.
pub struct Run {
    pub metrics: ComponentMetrics,
    /// Its task; [`Expect::check`] waits for it once the outputs are dropped.
    pub task: JoinHandle<Result<(), ComponentError>>,
    /// What it sent downstream: a source's events, a transform's default output.
    pub out: Vec<Event>,
    /// A transform's named outputs, in the order of `outputs()`.
    pub named: Vec<Vec<Event>>,
    /// What a sink sent to its dead-letter destination.
    pub dead_letters: Vec<Event>,
}

/// What a test expects of a [`Run`]: counters, and the status of every acknowledgement.
#[derive(Debug, Default)]
pub struct Expect {
    /// `received_events`.
    pub received: u64,
    /// `sent_events` on the default output.
    pub sent: u64,
    /// `(error_type, stage, count)` of `weir_component_errors_total`.
    pub errors: Vec<(&'static str, Stage, u64)>,
    /// `(reason, count)` of `weir_component_discarded_events_total`.
    pub discarded: Vec<(&'static str, u64)>,
    /// The status every event's handle reports, when the test gave events.
    pub status: Option<BatchStatus>,
    /// Words the task's error must contain; `None`: the task ends well.
    pub error: Option<&'static str>,
}

impl Expect {
    /// Checks the run's counters, then waits for every acknowledgement and checks its status.
    /// The run's outputs are dropped first: an event still held downstream is not settled.
    pub async fn check(&self, run: Run, acks: Option<Acks>) {
        let m = &run.metrics;
        let id = m.id().to_string();
        assert_eq!(m.received_events(), self.received, "{id}: received events");
        assert_eq!(m.sent_events("_default"), self.sent, "{id}: sent events");
        for (error_type, stage, n) in &self.errors {
            assert_eq!(m.errors(error_type, *stage), *n, "{id}: errors {error_type}/{stage:?}");
        }
        for (reason, n) in &self.discarded {
            assert_eq!(m.discarded_events(reason), *n, "{id}: discarded ({reason})");
        }
        drop((run.out, run.named, run.dead_letters));
        if let (Some(acks), Some(status)) = (acks, self.status) {
            for (i, s) in acks.statuses().await.into_iter().enumerate() {
                assert_eq!(s, status, "{id}: status of event {i}");
            }
        }
        let result = tokio::time::timeout(PATIENCE, run.task).await;
        let result = result.expect("the task finished").expect("the task did not panic");
        match (&result, self.error) {
            (Ok(()), None) => {}
            (Err(e), Some(words)) => assert!(e.to_string().contains(words), "{id}: {e}"),
            (r, _) => panic!("{id}: the task ended with {r:?}, expected {:?}", self.error),
        }
    }
}

/// Checks `config`, builds the sink with `events` queued in its input, and runs it until its
/// input closes. Rejected events go to a dead-letter destination the run keeps.
pub async fn run_sink<S: SinkComponent>(config: &S, type_name: &str, events: Vec<Event>) -> Run {
    let checked = config.check().unwrap_or_else(|e| panic!("config does not check: {e:?}"));
    let metrics = metrics("sink", type_name);
    let (tx, input) = channel::channel(64 << 20, WhenFull::Block, None, None);
    let (dl_tx, mut dl_rx) = channel::channel(64 << 20, WhenFull::Block, None, None);
    let data_dir = tempfile::tempdir().expect("a temporary directory");
    let cx = SinkContext {
        id: metrics.id().to_string(),
        input,
        metrics: metrics.clone(),
        data_dir: data_dir.path().to_path_buf(),
        dead_letter: DeadLetter::new(&metrics, Some(dl_tx)),
        shutdown: ShutdownSignal::new(),
    };
    let task = config.build(checked, cx).expect("the sink builds");
    if !events.is_empty() {
        tx.send(events).await.unwrap_or_else(|_| panic!("the sink's input closed"));
    }
    drop(tx);
    let result = tokio::time::timeout(PATIENCE, task).await.expect("the sink finished");
    let mut dead_letters = Vec::new();
    while let Some(batch) = dl_rx.try_recv() {
        dead_letters.extend(batch);
    }
    let task = tokio::spawn(async move { result });
    Run { metrics, task, out: Vec::new(), named: Vec::new(), dead_letters }
}

/// Builds the transform and runs it in the topology's runner over `events`.
pub async fn run_transform<T: TransformComponent>(
    config: &T,
    type_name: &str,
    events: Vec<Event>,
) -> Run {
    let metrics = metrics("transform", type_name);
    // A concurrent transform runs as the topology runs it: on two instances at once, each
    // event its own batch, so that the outputs' order is checked too.
    let instances = if config.concurrent() { 2 } else { 1 };
    let transforms = (0..instances)
        .map(|_| -> Box<dyn crate::component::Transform> {
            Box::new(config.build(&metrics).unwrap_or_else(|e| panic!("does not build: {e}")))
        })
        .collect();
    let (tx, input) = channel::channel(64 << 20, WhenFull::Block, None, None);
    let mut receivers = Vec::new();
    let mut fanout = |name: &str| {
        let (tx, rx) = channel::channel(64 << 20, WhenFull::Block, None, None);
        receivers.push(rx);
        Fanout::new(vec![(name.to_string(), tx)])
    };
    let primary = fanout("out");
    let named = config
        .outputs()
        .into_iter()
        .map(|port| {
            let m = metrics.output(&port);
            (port.clone(), fanout(&port), m)
        })
        .collect();
    let task = crate::transforms::runner::run(transforms, input, primary, named, metrics.clone());
    let batches = if config.concurrent() {
        events.into_iter().map(|e| vec![e]).collect()
    } else {
        vec![events]
    };
    let sending = async move {
        for batch in batches {
            tx.send(batch).await.unwrap_or_else(|_| panic!("the transform's input closed"));
        }
    };
    let (result, ()) = tokio::time::timeout(PATIENCE, async { tokio::join!(task, sending) })
        .await
        .expect("the transform finished");
    let task = tokio::spawn(async move { result });
    let mut outputs = receivers.into_iter().map(|mut rx| {
        let mut events = Vec::new();
        while let Some(batch) = rx.try_recv() {
            events.extend(batch);
        }
        events
    });
    let out = outputs.next().unwrap_or_default();
    Run { metrics, task, out, named: outputs.collect(), dead_letters: Vec::new() }
}

/// Checks `config`, builds the source and runs it until it has sent `until` events or ended
/// on its own, then signals shutdown. The run holds the first `until` events (their handles
/// fire when [`Expect::check`] drops them); what the source sends while stopping is dropped.
pub async fn run_source<S: SourceComponent>(
    config: &S,
    type_name: &str,
    data_dir: &std::path::Path,
    until: usize,
) -> Run {
    let checked = config.check().unwrap_or_else(|e| panic!("config does not check: {e:?}"));
    let metrics = metrics("source", type_name);
    let (tx, mut rx) = channel::channel(64 << 20, WhenFull::Block, None, None);
    let shutdown = ShutdownSignal::new();
    let cx = SourceContext {
        id: metrics.id().to_string(),
        out: SourceSender::new(Fanout::new(vec![("test".into(), tx)]), metrics.output("_default")),
        shutdown: shutdown.clone(),
        data_dir: data_dir.to_path_buf(),
        metrics: metrics.clone(),
        listeners: Default::default(),
    };
    let task = tokio::spawn(config.build(checked, cx).expect("the source builds"));
    let mut out = Vec::new();
    let collect = async {
        while out.len() < until {
            match rx.recv().await {
                Some(batch) => out.extend(batch),
                None => break,
            }
        }
    };
    tokio::time::timeout(PATIENCE, collect).await.expect("the source sent its events");
    shutdown.trigger(PATIENCE);
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    Run { metrics, task, out, named: Vec::new(), dead_letters: Vec::new() }
}
