//! The running pipeline: channels between components, one task per component, shutdown.
//!
//! Building goes from the sinks upstream: every transform and sink gets a bounded input
//! [`channel`], every output gets a [`Fanout`] over the inputs that name it, then the tasks are
//! spawned on a [`TaskTracker`]. Data flows in batches (`Vec<Event>`), so a hop costs one
//! channel operation per batch, not per event.
//!
//! Shutdown, in order: sources are cancelled and stop reading; each source drops its output,
//! which closes the channels downstream once they are drained; transforms and sinks finish
//! when their input closes, sinks flush; sources wait for the acknowledgements of what they
//! emitted and write their checkpoints last. All of it within `shutdown_timeout_secs`.
//!
//! Invariant: no component holds a sender to its own input, so inputs close exactly when every
//! upstream has finished.

pub mod channel;
pub mod fanout;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffers::disk;
use crate::config::graph::{OutputId, parse_input};
use crate::config::{BufferType, ComponentKind, Config};
use crate::dead_letter::{self, DeadLetter};
use crate::event::{Event, batch_size};
use crate::metrics::{ComponentLabels, ComponentMetrics, OutputMetrics};
use crate::transforms::{Transform, TransformOutput};
use channel::{BatchReceiver, BatchSender, DEFAULT_BUFFER_BYTES, WhenFull};
pub use fanout::Fanout;

/// A component's task. `Err(())` means it failed; it has logged why.
pub type Task = Pin<Box<dyn Future<Output = Result<(), ()>> + Send + 'static>>;

/// Tells a source to stop, and by when everything must be done.
#[derive(Clone)]
pub struct ShutdownSignal {
    token: CancellationToken,
    deadline: Arc<OnceLock<Instant>>,
}

impl ShutdownSignal {
    pub fn new() -> Self {
        Self { token: CancellationToken::new(), deadline: Arc::new(OnceLock::new()) }
    }

    /// Resolves when the source must stop reading.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// When the graceful shutdown gives up (known once shutdown has begun).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.get().copied()
    }

    pub(crate) fn trigger(&self, timeout: Duration) {
        let _ = self.deadline.set(Instant::now() + timeout);
        self.token.cancel();
    }
}

impl Default for ShutdownSignal {
    fn default() -> Self {
        Self::new()
    }
}

/// The output of a source. Clones share the same consumers: a source that reads several
/// connections at once gives each its own clone, and each clone waits on its own when the
/// consumers are full.
#[derive(Clone)]
pub struct SourceSender {
    fanout: Fanout,
    metrics: OutputMetrics,
}

impl SourceSender {
    pub fn new(fanout: Fanout, metrics: OutputMetrics) -> Self {
        Self { fanout, metrics }
    }

    /// Sends a batch downstream, waiting while the consumers' buffers are full.
    /// Returns `false` when no consumer is left (the source should stop).
    pub async fn send(&mut self, events: Vec<Event>) -> bool {
        self.send_batch(channel::Batch::Events(events)).await
    }

    /// Do all consumers take blocks of lines as they are ([`crate::event::LineBlock`])?
    pub fn accepts_lines(&self) -> bool {
        self.fanout.accepts_lines()
    }

    /// Sends events or a block of lines downstream, as [`SourceSender::send`]. A block is
    /// for sources that checked [`SourceSender::accepts_lines`]; a consumer that does not
    /// take blocks would still get its events.
    pub async fn send_batch(&mut self, batch: channel::Batch) -> bool {
        if batch.is_empty() {
            return true;
        }
        self.metrics.sent(batch.len(), batch.size());
        self.fanout.send_batch(batch).await
    }
}

/// What a source is given when it is built.
pub struct SourceContext {
    pub id: String,
    pub out: SourceSender,
    pub shutdown: ShutdownSignal,
    pub data_dir: PathBuf,
    pub metrics: ComponentMetrics,
}

/// What a sink is given when it is built.
pub struct SinkContext {
    pub id: String,
    pub input: BatchReceiver,
    pub metrics: ComponentMetrics,
    pub data_dir: PathBuf,
    /// Where the events the sink rejects for good go (see [`crate::dead_letter`]).
    pub dead_letter: DeadLetter,
    /// Fires when weir begins to stop: a sink that retries outside the request driver stops
    /// retrying then, so that a dead destination does not hold the stop until its timeout.
    pub shutdown: ShutdownSignal,
}

/// A started pipeline.
pub struct RunningTopology {
    tracker: TaskTracker,
    shutdown: ShutdownSignal,
    sources_done: CancellationToken,
    /// Cancelled when a component's task ends with an error.
    failed: CancellationToken,
    running: Arc<Mutex<BTreeMap<String, &'static str>>>,
    timeout: Duration,
}

/// Builds every component and starts its task. Errors are build failures (a directory that
/// cannot be created, a port in use), one line each.
pub fn start(config: &Config) -> Result<RunningTopology, Vec<String>> {
    let mut errors = Vec::new();
    let mut inputs: BTreeMap<OutputId, Vec<(String, BatchSender)>> = BTreeMap::new();
    let mut receivers: BTreeMap<String, BatchReceiver> = BTreeMap::new();

    let mut connect = |id: &str,
                       kind: &'static str,
                       type_name: &str,
                       buffer_bytes: usize,
                       when_full: WhenFull,
                       gauges: bool,
                       lines: bool,
                       from: &[String]| {
        let metrics = ComponentMetrics::new(ComponentLabels::new(id, kind, type_name));
        let (tx, rx) = channel::channel(
            buffer_bytes,
            when_full,
            gauges.then(|| metrics.buffer_gauges()),
            Some(metrics.discarded_counter(crate::metrics::discard_reason::BUFFER_FULL)),
        );
        let tx = tx.with_lines(lines);
        for input in from {
            inputs.entry(parse_input(input)).or_default().push((id.to_string(), tx.clone()));
        }
        receivers.insert(id.to_string(), rx);
        tx
    };
    // The input of the dead-letter destination: a configured sink's, or the default file's.
    let mut dead_letter_input = None;
    for (id, def) in &config.sinks {
        // A disk buffer puts its writer behind a small memory channel and reports the
        // buffer's own fill level.
        let tx = match def.buffer.kind {
            BufferType::Memory => connect(
                id,
                "sink",
                def.inner.type_name(),
                def.buffer.max_bytes(),
                def.buffer.when_full,
                true,
                def.inner.writes_lines_as_read(),
                &def.inputs,
            ),
            BufferType::Disk => connect(
                id,
                "sink",
                def.inner.type_name(),
                disk::WRITER_INPUT_BYTES,
                WhenFull::Block,
                false,
                false,
                &def.inputs,
            ),
        };
        if config.dead_letter.sink.as_deref() == Some(id.as_str()) {
            dead_letter_input = Some(tx);
        }
    }
    for (id, def) in &config.transforms {
        connect(
            id,
            "transform",
            def.inner.type_name(),
            channel::TRANSFORM_BUFFER_BYTES,
            WhenFull::Block,
            true,
            false,
            &def.inputs,
        );
    }
    let fanout_for = |out: OutputId| Fanout::new(inputs.get(&out).cloned().unwrap_or_default());

    let tracker = TaskTracker::new();
    let shutdown = ShutdownSignal::new();
    let sources_done = CancellationToken::new();
    let running: Arc<Mutex<BTreeMap<String, &'static str>>> = Arc::default();
    let mut tasks: Vec<(String, ComponentKind, Task)> = Vec::new();

    if config.dead_letter.sink.is_none() {
        let id = dead_letter::FILE_WRITER_ID;
        let metrics = ComponentMetrics::new(ComponentLabels::new(id, "sink", "dead_letter_file"));
        let (tx, rx) = channel::channel(
            DEFAULT_BUFFER_BYTES,
            WhenFull::Block,
            Some(metrics.buffer_gauges()),
            None,
        );
        let dir = config.data_dir.join("dead_letter");
        tasks.push((
            id.to_string(),
            ComponentKind::Sink,
            dead_letter::file_writer(dir, rx, metrics),
        ));
        dead_letter_input = Some(tx);
    }
    for (id, def) in &config.sinks {
        let metrics =
            ComponentMetrics::new(ComponentLabels::new(id, "sink", def.inner.type_name()));
        let Some(mut input) = receivers.remove(id) else { continue };
        if def.buffer.kind == BufferType::Disk {
            let settings = disk::Settings {
                id: id.clone(),
                dir: disk::dir_for(&config.data_dir, id),
                max_bytes: def.buffer.max_bytes() as u64,
                when_full: def.buffer.when_full,
                shutdown_timeout: config.shutdown_timeout,
            };
            match disk::start(settings, input, &metrics, shutdown.clone()) {
                Ok((sink_input, buffer_tasks)) => {
                    input = sink_input;
                    tasks
                        .extend(buffer_tasks.into_iter().map(|(n, t)| (n, ComponentKind::Sink, t)));
                }
                Err(e) => {
                    errors.push(format!("sinks.{id}: {e}"));
                    continue;
                }
            }
        }
        // The dead-letter sink does not send to itself (its input would never close).
        let is_destination = config.dead_letter.sink.as_deref() == Some(id.as_str());
        let dead_letter = DeadLetter::new(
            &metrics,
            if is_destination { None } else { dead_letter_input.clone() },
        );
        let cx = SinkContext {
            id: id.clone(),
            input,
            metrics,
            data_dir: config.data_dir.clone(),
            dead_letter,
            shutdown: shutdown.clone(),
        };
        match def.inner.build(cx) {
            Ok(task) => tasks.push((id.clone(), ComponentKind::Sink, task)),
            Err(e) => errors.push(format!("sinks.{id}: {e}")),
        }
    }
    drop(dead_letter_input);
    for (id, def) in &config.transforms {
        let metrics =
            ComponentMetrics::new(ComponentLabels::new(id, "transform", def.inner.type_name()));
        let Some(input) = receivers.remove(id) else { continue };
        let transform = match def.inner.build(id, &metrics) {
            Ok(t) => t,
            Err(issue) => {
                errors.push(format!("transforms.{id}: {}", issue.message));
                continue;
            }
        };
        let primary = fanout_for(OutputId { component: id.clone(), port: None });
        let named = def
            .inner
            .outputs()
            .into_iter()
            .map(|port| {
                let m = metrics.output(&port);
                (port.clone(), fanout_for(OutputId { component: id.clone(), port: Some(port) }), m)
            })
            .collect();
        let task = run_transform(transform, input, primary, named, metrics);
        tasks.push((id.clone(), ComponentKind::Transform, Box::pin(task)));
    }
    for (id, def) in &config.sources {
        let metrics =
            ComponentMetrics::new(ComponentLabels::new(id, "source", def.inner.type_name()));
        let out = SourceSender::new(
            fanout_for(OutputId { component: id.clone(), port: None }),
            metrics.output("_default"),
        );
        let cx = SourceContext {
            id: id.clone(),
            out,
            shutdown: shutdown.clone(),
            data_dir: config.data_dir.clone(),
            metrics,
        };
        match def.inner.build(cx) {
            Ok(task) => tasks.push((id.clone(), ComponentKind::Source, task)),
            Err(e) => errors.push(format!("sources.{id}: {e}")),
        }
    }
    // The builder's own senders must go, or inputs would never close.
    drop(inputs);
    if !errors.is_empty() {
        return Err(errors);
    }

    let source_count = tasks.iter().filter(|t| t.1 == ComponentKind::Source).count();
    let remaining_sources = Arc::new(std::sync::atomic::AtomicUsize::new(source_count));
    let failed = CancellationToken::new();
    // The states `/health` reports, by the names the log uses (`sinks.es`).
    let type_names: BTreeMap<String, &str> = (config.sources.iter())
        .map(|(id, d)| (format!("sources.{id}"), d.inner.type_name()))
        .chain(
            config
                .transforms
                .iter()
                .map(|(id, d)| (format!("transforms.{id}"), d.inner.type_name())),
        )
        .chain(config.sinks.iter().map(|(id, d)| (format!("sinks.{id}"), d.inner.type_name())))
        .collect();
    for (id, kind, task) in tasks {
        let name = format!("{}.{id}", kind.table());
        running.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone(), kind.name());
        let type_name = type_names.get(&name).copied().unwrap_or("internal");
        let health =
            crate::health::global().register(&ComponentLabels::new(&id, kind.name(), type_name));
        let running = Arc::clone(&running);
        let remaining = Arc::clone(&remaining_sources);
        let sources_done = sources_done.clone();
        let failed = failed.clone();
        tracker.spawn(async move {
            let result = task.await;
            if result.is_err() {
                tracing::error!(component = %name, "component failed");
                health.failed();
                failed.cancel();
            } else {
                tracing::debug!(component = %name, "component finished");
                health.finished();
            }
            running.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
            if kind == ComponentKind::Source
                && remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1
            {
                sources_done.cancel();
            }
        });
    }
    tracker.close();
    Ok(RunningTopology {
        tracker,
        shutdown,
        sources_done,
        failed,
        running,
        timeout: config.shutdown_timeout,
    })
}

impl RunningTopology {
    /// Resolves when every source has finished on its own (e.g. stdin reached its end).
    pub async fn sources_finished(&self) {
        self.sources_done.cancelled().await;
    }

    /// Resolves when a component has failed (its task ended with an error): it will not run
    /// again, so weir should stop and exit non-zero for its supervisor to restart it.
    pub async fn component_failed(&self) {
        self.failed.cancelled().await;
    }

    /// Resolves when every task has finished.
    pub async fn finished(&self) {
        self.tracker.wait().await;
    }

    /// Stops the sources and waits for the pipeline to drain, up to the shutdown timeout.
    /// Returns `false` if components were still running when time ran out, or if a
    /// component failed (then or before): weir's exit code says so.
    pub async fn stop(self) -> bool {
        self.shutdown.trigger(self.timeout);
        match tokio::time::timeout(self.timeout, self.tracker.wait()).await {
            Ok(()) => !self.failed.is_cancelled(),
            Err(_) => {
                let still: Vec<String> = self
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .cloned()
                    .collect();
                tracing::error!(
                    components = %still.join(", "),
                    timeout_secs = self.timeout.as_secs(),
                    "shutdown timed out; events still in these components were not delivered \
                     and will be read again from the last checkpoint"
                );
                false
            }
        }
    }
}

/// The task of a synchronous transform: read a batch, transform it, send each output on.
async fn run_transform(
    mut transform: Box<dyn Transform>,
    mut input: BatchReceiver,
    mut primary: Fanout,
    mut named: Vec<(String, Fanout, OutputMetrics)>,
    metrics: ComponentMetrics,
) -> Result<(), ()> {
    let primary_metrics = metrics.output("_default");
    let mut out = TransformOutput::new(named.len());
    let unconsumed = metrics.discarded_counter(crate::metrics::discard_reason::OUTPUT_NOT_CONSUMED);
    while let Some(batch) = input.recv().await {
        metrics.received(batch.len(), batch_size(&batch));
        transform.transform(batch, &mut out);
        let events = std::mem::take(&mut out.primary);
        if !events.is_empty() {
            primary_metrics.sent(events.len(), batch_size(&events));
            if primary.is_empty() {
                unconsumed.inc_by(events.len() as u64);
            } else {
                primary.send(events).await;
            }
        }
        for (i, (_, fanout, m)) in named.iter_mut().enumerate() {
            let events = std::mem::take(&mut out.named[i]);
            if events.is_empty() {
                continue;
            }
            m.sent(events.len(), batch_size(&events));
            if fanout.is_empty() {
                unconsumed.inc_by(events.len() as u64);
            } else {
                fanout.send(events).await;
            }
        }
    }
    Ok(())
}
