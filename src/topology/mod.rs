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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffers::disk;
use crate::channel::{self, BatchReceiver, BatchSender, DEFAULT_BUFFER_BYTES, Fanout, WhenFull};
use crate::component::{ShutdownSignal, SinkContext, SourceContext, SourceSender};
use crate::config::graph::{OutputId, parse_input};
use crate::config::{BufferType, ComponentDef, ComponentKind, Config};
use crate::dead_letter::{self, DeadLetter};
use crate::error::{BuildError, ComponentError, Task};
use crate::metrics::{ComponentLabels, ComponentMetrics};
use crate::sinks::SinkConfig;

/// A component that could not be built, and why.
#[derive(Debug, thiserror::Error)]
#[error("{component}: {error}")]
pub struct StartError {
    /// `sources.<id>`, `transforms.<id>` or `sinks.<id>`.
    pub component: String,
    #[source]
    pub error: BuildError,
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
/// cannot be created, a port in use), one per component.
pub fn start(config: &Config) -> Result<RunningTopology, Vec<StartError>> {
    let mut builder = Builder::new(config);
    builder.connect_inputs();
    builder.build_sinks();
    builder.build_transforms();
    builder.build_sources();
    builder.spawn()
}

/// The state of a start: the channels made so far, the tasks built and the errors met.
struct Builder<'a> {
    config: &'a Config,
    /// The senders into each input that names an output; dropped before the tasks run, or
    /// inputs would never close.
    inputs: BTreeMap<OutputId, Vec<(String, BatchSender)>>,
    /// The input of each transform and sink, taken when it is built.
    receivers: BTreeMap<String, BatchReceiver>,
    /// The input of the dead-letter destination: a configured sink's, or the default file's.
    dead_letter_input: Option<BatchSender>,
    shutdown: ShutdownSignal,
    tasks: Vec<(String, ComponentKind, Task)>,
    errors: Vec<StartError>,
}

impl<'a> Builder<'a> {
    fn new(config: &'a Config) -> Self {
        Self {
            config,
            inputs: BTreeMap::new(),
            receivers: BTreeMap::new(),
            dead_letter_input: None,
            shutdown: ShutdownSignal::new(),
            tasks: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn failed(&mut self, kind: ComponentKind, id: &str, error: impl Into<BuildError>) {
        let component = format!("{}.{id}", kind.table());
        self.errors.push(StartError { component, error: error.into() });
    }

    /// Makes the bounded input channel of every sink and transform and registers it with the
    /// outputs it reads.
    fn connect_inputs(&mut self) {
        let config = self.config;
        for (id, def) in &config.sinks {
            // A disk buffer puts its writer behind a small memory channel and reports the
            // buffer's own fill level.
            let (bytes, when_full, gauges, lines) = match def.buffer.kind {
                BufferType::Memory => (
                    def.buffer.max_bytes(),
                    def.buffer.when_full,
                    true,
                    def.inner.writes_lines_as_read(),
                ),
                BufferType::Disk => (disk::WRITER_INPUT_BYTES, WhenFull::Block, false, false),
            };
            let metrics = metrics_of(id, ComponentKind::Sink, def.inner.type_name());
            let tx = self.connect(id, &def.inputs, &metrics, bytes, when_full, gauges, lines);
            if config.dead_letter.sink.as_deref() == Some(id.as_str()) {
                self.dead_letter_input = Some(tx);
            }
        }
        for (id, def) in &config.transforms {
            let metrics = metrics_of(id, ComponentKind::Transform, def.inner.type_name());
            let bytes = channel::TRANSFORM_BUFFER_BYTES;
            self.connect(id, &def.inputs, &metrics, bytes, WhenFull::Block, true, false);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn connect(
        &mut self,
        id: &str,
        from: &[String],
        metrics: &ComponentMetrics,
        buffer_bytes: usize,
        when_full: WhenFull,
        gauges: bool,
        lines: bool,
    ) -> BatchSender {
        let (tx, rx) = channel::channel(
            buffer_bytes,
            when_full,
            gauges.then(|| metrics.buffer_gauges()),
            Some(metrics.discarded_counter(crate::metrics::discard_reason::BUFFER_FULL)),
        );
        let tx = tx.with_lines(lines);
        for input in from {
            let senders = self.inputs.entry(parse_input(input)).or_default();
            senders.push((id.to_string(), tx.clone()));
        }
        self.receivers.insert(id.to_string(), rx);
        tx
    }

    /// The fan-out of one output over the inputs that name it.
    fn fanout(&self, component: &str, port: Option<String>) -> Fanout {
        let out = OutputId { component: component.to_string(), port };
        Fanout::new(self.inputs.get(&out).cloned().unwrap_or_default())
    }

    /// Builds the sinks, and the default dead-letter file writer unless a sink takes its
    /// place.
    fn build_sinks(&mut self) {
        let config = self.config;
        if config.dead_letter.sink.is_none() {
            self.build_dead_letter_file();
        }
        for (id, def) in &config.sinks {
            let Some(input) = self.receivers.remove(id) else { continue };
            if let Err(error) = self.build_sink(id, def, input) {
                self.failed(ComponentKind::Sink, id, error);
            }
        }
        // Only the sinks' contexts hold it now: the destination's input closes after them.
        self.dead_letter_input = None;
    }

    fn build_dead_letter_file(&mut self) {
        let id = dead_letter::FILE_WRITER_ID;
        let metrics = ComponentMetrics::new(ComponentLabels::new(id, "sink", "dead_letter_file"));
        let (tx, rx) = channel::channel(
            DEFAULT_BUFFER_BYTES,
            WhenFull::Block,
            Some(metrics.buffer_gauges()),
            None,
        );
        let dir = self.config.data_dir.join("dead_letter");
        let task = dead_letter::file_writer(dir, rx, metrics);
        self.tasks.push((id.to_string(), ComponentKind::Sink, task));
        self.dead_letter_input = Some(tx);
    }

    fn build_sink(
        &mut self,
        id: &str,
        def: &ComponentDef<SinkConfig>,
        mut input: BatchReceiver,
    ) -> Result<(), BuildError> {
        let config = self.config;
        let metrics = metrics_of(id, ComponentKind::Sink, def.inner.type_name());
        if def.buffer.kind == BufferType::Disk {
            let settings = disk::Settings {
                id: id.to_string(),
                dir: disk::dir_for(&config.data_dir, id),
                max_bytes: def.buffer.max_bytes() as u64,
                when_full: def.buffer.when_full,
                shutdown_timeout: config.shutdown_timeout,
            };
            let (sink_input, buffer_tasks) =
                disk::start(settings, input, &metrics, self.shutdown.clone())?;
            input = sink_input;
            self.tasks.extend(buffer_tasks.into_iter().map(|(n, t)| (n, ComponentKind::Sink, t)));
        }
        // The dead-letter sink does not send to itself (its input would never close).
        let is_destination = config.dead_letter.sink.as_deref() == Some(id);
        let destination = if is_destination { None } else { self.dead_letter_input.clone() };
        let dead_letter = DeadLetter::new(&metrics, destination);
        let cx = SinkContext {
            id: id.to_string(),
            input,
            metrics,
            data_dir: config.data_dir.clone(),
            dead_letter,
            shutdown: self.shutdown.clone(),
        };
        let task = def.inner.build(cx)?;
        self.tasks.push((id.to_string(), ComponentKind::Sink, task));
        Ok(())
    }

    fn build_transforms(&mut self) {
        let config = self.config;
        for (id, def) in &config.transforms {
            let metrics = metrics_of(id, ComponentKind::Transform, def.inner.type_name());
            let Some(input) = self.receivers.remove(id) else { continue };
            let transform = match def.inner.build(&metrics) {
                Ok(t) => t,
                Err(issue) => {
                    self.failed(ComponentKind::Transform, id, issue);
                    continue;
                }
            };
            let primary = self.fanout(id, None);
            let named = def
                .inner
                .outputs()
                .into_iter()
                .map(|port| {
                    let m = metrics.output(&port);
                    (port.clone(), self.fanout(id, Some(port)), m)
                })
                .collect();
            let task = crate::transforms::runner::run(transform, input, primary, named, metrics);
            self.tasks.push((id.clone(), ComponentKind::Transform, Box::pin(task)));
        }
    }

    fn build_sources(&mut self) {
        let config = self.config;
        for (id, def) in &config.sources {
            let metrics = metrics_of(id, ComponentKind::Source, def.inner.type_name());
            let out = SourceSender::new(self.fanout(id, None), metrics.output("_default"));
            let cx = SourceContext {
                id: id.clone(),
                out,
                shutdown: self.shutdown.clone(),
                data_dir: config.data_dir.clone(),
                metrics,
            };
            match def.inner.build(cx) {
                Ok(task) => self.tasks.push((id.clone(), ComponentKind::Source, task)),
                Err(e) => self.failed(ComponentKind::Source, id, e),
            }
        }
    }

    /// Spawns every task, or returns the errors if any component failed to build.
    fn spawn(self) -> Result<RunningTopology, Vec<StartError>> {
        // The builder's own senders must go, or inputs would never close.
        drop(self.inputs);
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let tracker = TaskTracker::new();
        let sources_done = CancellationToken::new();
        let failed = CancellationToken::new();
        // The states `/health` reports, by the names the log uses (`sinks.es`).
        let config = self.config;
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
        let running: Arc<Mutex<BTreeMap<String, &'static str>>> = Arc::default();
        let source_count = self.tasks.iter().filter(|t| t.1 == ComponentKind::Source).count();
        let remaining_sources = Arc::new(AtomicUsize::new(source_count));
        for (id, kind, task) in self.tasks {
            let name = format!("{}.{id}", kind.table());
            running.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone(), kind.name());
            let type_name = type_names.get(&name).copied().unwrap_or("internal");
            let labels = ComponentLabels::new(&id, kind.name(), type_name);
            let health = crate::health::global().register(&labels);
            let running = Arc::clone(&running);
            let remaining = Arc::clone(&remaining_sources);
            let sources_done = sources_done.clone();
            let failed = failed.clone();
            tracker.spawn(async move {
                match task.await {
                    Ok(()) => {
                        tracing::debug!(component = %name, "{} finished", kind.name());
                        health.finished();
                    }
                    Err(error) => {
                        report_failure(&name, kind, &error);
                        health.failed();
                        failed.cancel();
                    }
                }
                running.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
                if kind == ComponentKind::Source && remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                    sources_done.cancel();
                }
            });
        }
        tracker.close();
        Ok(RunningTopology {
            tracker,
            shutdown: self.shutdown,
            sources_done,
            failed,
            running,
            timeout: self.config.shutdown_timeout,
        })
    }
}

fn metrics_of(id: &str, kind: ComponentKind, type_name: &str) -> ComponentMetrics {
    ComponentMetrics::new(ComponentLabels::new(id, kind.name(), type_name))
}

/// Logs why a component's task failed: the one place a component's failure is reported.
fn report_failure(component: &str, kind: ComponentKind, error: &ComponentError) {
    let kind = kind.name();
    tracing::error!(component, error = %error, "{kind} failed; the {kind} stops");
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
