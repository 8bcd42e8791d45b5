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
//! upstream has finished and the topology has let go of its own sender (kept for components
//! a reload builds later; dropped when the component is replaced or weir stops).
//!
//! Reload ([`RunningTopology::reload`], in `reload.rs`) rebuilds only the components whose
//! configuration changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::buffers::disk;
use crate::channel::{self, BatchReceiver, BatchSender, DEFAULT_BUFFER_BYTES, Fanout, WhenFull};
use crate::component::{ShutdownSignal, SinkContext, SourceContext, SourceSender, Transform};
use crate::config::graph::{OutputId, parse_input};
use crate::config::{BufferType, ComponentDef, ComponentKind, Config};
use crate::dead_letter::{self, DeadLetter};
use crate::error::{BuildError, ComponentError, Task};
use crate::metrics::{ComponentLabels, ComponentMetrics};
use crate::sinks::SinkConfig;
use crate::sources::util::listeners::Listeners;

mod reload;

pub use reload::{Changes, ReloadError};

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
    /// The configuration running now.
    config: Config,
    tracker: TaskTracker,
    /// The running instance of each component, by id (ids are unique across kinds).
    instances: BTreeMap<String, Instance>,
    /// A sender into the input of each running transform and sink: what a rebuilt upstream
    /// component is connected to. Dropped when the component is replaced or weir stops, or
    /// its input would never close.
    inputs: BTreeMap<String, BatchSender>,
    /// The output of each running component; a reload replaces the consumers of those it
    /// keeps.
    outputs: BTreeMap<OutputId, Fanout>,
    /// The dead-letter destination's input, for sinks built by a reload.
    dead_letter_input: Option<BatchSender>,
    /// Sources that have not finished on their own.
    live_sources: Arc<Mutex<BTreeSet<String>>>,
    sources_done: CancellationToken,
    /// Cancelled when a component's task ends with an error.
    failed: CancellationToken,
    /// Cancelled when a sink's output was closed by its reader (`weir run | head`).
    output_closed: CancellationToken,
    running: Arc<Mutex<BTreeMap<String, &'static str>>>,
    /// Sockets a replaced source hands to its replacement during a reload.
    listeners: Listeners,
}

/// One running component: its tasks (a sink with a disk buffer has four) and its signal.
struct Instance {
    kind: ComponentKind,
    shutdown: ShutdownSignal,
    /// Set when a reload stops it: its end is not the end of the pipeline's sources.
    replaced: Arc<AtomicBool>,
    /// Whether it keeps its events on disk (a sink with a disk buffer): stopped at once by
    /// a reload rather than drained.
    disk_buffer: bool,
    tasks: Vec<Spawned>,
    /// Its tasks as `/health` knows them.
    labels: Vec<ComponentLabels>,
}

struct Spawned {
    ended: CancellationToken,
    abort: AbortHandle,
}

impl Instance {
    fn ended(&self) -> bool {
        self.tasks.iter().all(|t| t.ended.is_cancelled())
    }

    async fn wait(&self) {
        for t in &self.tasks {
            t.ended.cancelled().await;
        }
    }
}

/// Builds every component and starts its task. Errors are build failures (a directory that
/// cannot be created, a port in use), one per component.
pub fn start(config: &Config) -> Result<RunningTopology, Vec<StartError>> {
    let mut topology = RunningTopology::empty(config.clone());
    if config.dead_letter.sink.is_none() {
        topology.start_dead_letter_file();
    }
    let build: BTreeSet<String> = component_ids(config).collect();
    let transforms = compile_transforms(config, &build)?;
    let receivers = topology.open_inputs(&build);
    if let Some(dl) = &config.dead_letter.sink {
        topology.dead_letter_input = topology.inputs.get(dl).cloned();
    }
    let built = topology.build(&build, receivers, transforms);
    if !built.errors.is_empty() {
        return Err(built.errors);
    }
    topology.spawn(built.components);
    crate::tap::global().set_graph(config, &[]);
    Ok(topology)
}

/// Every component id of a configuration.
fn component_ids(config: &Config) -> impl Iterator<Item = String> + '_ {
    (config.sources.keys()).chain(config.transforms.keys()).chain(config.sinks.keys()).cloned()
}

/// A transform's instances: one, or one per worker for a concurrent transform.
type Instances = Vec<Box<dyn Transform>>;

/// Compiles the transforms among `build` (no I/O: a transform's build is its check).
fn compile_transforms(
    config: &Config,
    build: &BTreeSet<String>,
) -> Result<BTreeMap<String, Instances>, Vec<StartError>> {
    let mut compiled = BTreeMap::new();
    let mut errors = Vec::new();
    for (id, def) in config.transforms.iter().filter(|(id, _)| build.contains(*id)) {
        let metrics = metrics_of(id, ComponentKind::Transform, def.inner.type_name());
        let workers = crate::transforms::runner::instances(def.inner.concurrent());
        match (0..workers).map(|_| def.inner.build(&metrics)).collect() {
            Ok(instances) => {
                compiled.insert(id.clone(), instances);
            }
            Err(issue) => errors
                .push(StartError { component: format!("transforms.{id}"), error: issue.into() }),
        }
    }
    if errors.is_empty() { Ok(compiled) } else { Err(errors) }
}

/// Components built and ready to spawn, or why they could not be.
struct Built {
    components: Vec<BuiltComponent>,
    errors: Vec<StartError>,
}

struct BuiltComponent {
    id: String,
    kind: ComponentKind,
    shutdown: ShutdownSignal,
    disk_buffer: bool,
    /// The component's own task first, then its helpers (a disk buffer's), by name.
    tasks: Vec<(String, Task)>,
}

impl RunningTopology {
    fn empty(config: Config) -> Self {
        Self {
            config,
            tracker: TaskTracker::new(),
            instances: BTreeMap::new(),
            inputs: BTreeMap::new(),
            outputs: BTreeMap::new(),
            dead_letter_input: None,
            live_sources: Arc::default(),
            sources_done: CancellationToken::new(),
            failed: CancellationToken::new(),
            output_closed: CancellationToken::new(),
            running: Arc::default(),
            listeners: Listeners::default(),
        }
    }

    /// Makes the bounded input channel of every sink and transform in `build`, keeps a
    /// sender into it and returns the receivers.
    fn open_inputs(&mut self, build: &BTreeSet<String>) -> BTreeMap<String, BatchReceiver> {
        let config = &self.config;
        let mut receivers = BTreeMap::new();
        for (id, def) in config.sinks.iter().filter(|(id, _)| build.contains(*id)) {
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
            let (tx, rx) = input_channel(&metrics, bytes, when_full, gauges);
            self.inputs.insert(id.clone(), tx.with_lines(lines));
            receivers.insert(id.clone(), rx);
        }
        for (id, def) in config.transforms.iter().filter(|(id, _)| build.contains(*id)) {
            let metrics = metrics_of(id, ComponentKind::Transform, def.inner.type_name());
            let bytes = channel::TRANSFORM_BUFFER_BYTES;
            let (tx, rx) = input_channel(&metrics, bytes, WhenFull::Block, true);
            self.inputs.insert(id.clone(), tx.with_reads(def.inner.reads()));
            receivers.insert(id.clone(), rx);
        }
        receivers
    }

    /// The consumers of every output of the configuration, from the inputs they list.
    fn wiring(&self) -> BTreeMap<OutputId, Vec<(String, BatchSender)>> {
        let config = &self.config;
        let consumers = (config.transforms.iter().map(|(id, d)| (id, &d.inputs)))
            .chain(config.sinks.iter().map(|(id, d)| (id, &d.inputs)));
        let mut wiring: BTreeMap<OutputId, Vec<(String, BatchSender)>> = BTreeMap::new();
        for (id, inputs) in consumers {
            let Some(tx) = self.inputs.get(id) else { continue };
            for input in inputs {
                wiring.entry(parse_input(input)).or_default().push((id.clone(), tx.clone()));
            }
        }
        wiring
    }

    /// A new output of `component`, registered so that a reload can rewire it.
    fn fanout(
        &mut self,
        wiring: &BTreeMap<OutputId, Vec<(String, BatchSender)>>,
        component: &str,
        port: Option<String>,
    ) -> Fanout {
        let out = OutputId { component: component.to_string(), port };
        let fanout = Fanout::new(wiring.get(&out).cloned().unwrap_or_default())
            .tapped(crate::tap::global().point(&out));
        self.outputs.insert(out, fanout.clone());
        fanout
    }

    /// Starts the default dead-letter file writer (when no sink takes its place).
    fn start_dead_letter_file(&mut self) {
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
        self.dead_letter_input = Some(tx);
        self.spawn(vec![BuiltComponent {
            id: id.to_string(),
            kind: ComponentKind::Sink,
            shutdown: ShutdownSignal::new(),
            disk_buffer: false,
            tasks: vec![(id.to_string(), task)],
        }]);
    }

    /// Builds the components in `build`: sinks, transforms, then sources, each connected to
    /// the inputs that name its outputs.
    fn build(
        &mut self,
        build: &BTreeSet<String>,
        mut receivers: BTreeMap<String, BatchReceiver>,
        mut transforms: BTreeMap<String, Instances>,
    ) -> Built {
        let mut built = Built { components: Vec::new(), errors: Vec::new() };
        let wiring = self.wiring();
        let config = self.config.clone();
        for (id, def) in config.sinks.iter().filter(|(id, _)| build.contains(*id)) {
            let Some(input) = receivers.remove(id) else { continue };
            match self.build_sink(id, def, input) {
                Ok(c) => built.components.push(c),
                Err(error) => {
                    built.errors.push(StartError { component: format!("sinks.{id}"), error })
                }
            }
        }
        for (id, def) in config.transforms.iter().filter(|(id, _)| build.contains(*id)) {
            let (Some(input), Some(transform)) = (receivers.remove(id), transforms.remove(id))
            else {
                continue;
            };
            let metrics = metrics_of(id, ComponentKind::Transform, def.inner.type_name());
            let primary = self.fanout(&wiring, id, None);
            let named = (def.inner.outputs().into_iter())
                .map(|port| {
                    let m = metrics.output(&port);
                    (port.clone(), self.fanout(&wiring, id, Some(port)), m)
                })
                .collect();
            let task = crate::transforms::runner::run(transform, input, primary, named, metrics);
            built.components.push(BuiltComponent {
                id: id.clone(),
                kind: ComponentKind::Transform,
                shutdown: ShutdownSignal::new(),
                disk_buffer: false,
                tasks: vec![(id.clone(), Box::pin(task))],
            });
        }
        for (id, def) in config.sources.iter().filter(|(id, _)| build.contains(*id)) {
            let metrics = metrics_of(id, ComponentKind::Source, def.inner.type_name());
            let out = SourceSender::new(self.fanout(&wiring, id, None), metrics.output("_default"));
            let shutdown = ShutdownSignal::new();
            let cx = SourceContext {
                id: id.clone(),
                out,
                shutdown: shutdown.clone(),
                data_dir: config.data_dir.clone(),
                metrics,
                listeners: self.listeners.clone(),
            };
            match def.inner.build(cx) {
                Ok(task) => built.components.push(BuiltComponent {
                    id: id.clone(),
                    kind: ComponentKind::Source,
                    shutdown,
                    disk_buffer: false,
                    tasks: vec![(id.clone(), task)],
                }),
                Err(error) => {
                    self.outputs.remove(&OutputId { component: id.clone(), port: None });
                    built.errors.push(StartError { component: format!("sources.{id}"), error });
                }
            }
        }
        built
    }

    fn build_sink(
        &mut self,
        id: &str,
        def: &ComponentDef<SinkConfig>,
        mut input: BatchReceiver,
    ) -> Result<BuiltComponent, BuildError> {
        let config = &self.config;
        let metrics = metrics_of(id, ComponentKind::Sink, def.inner.type_name());
        let shutdown = ShutdownSignal::new();
        let mut helpers = Vec::new();
        let disk_buffer = def.buffer.kind == BufferType::Disk;
        if disk_buffer {
            let settings = disk::Settings {
                id: id.to_string(),
                dir: disk::dir_for(&config.data_dir, id),
                max_bytes: def.buffer.max_bytes() as u64,
                when_full: def.buffer.when_full,
                shutdown_timeout: config.shutdown_timeout,
            };
            let (sink_input, buffer_tasks) =
                disk::start(settings, input, &metrics, shutdown.clone())?;
            input = sink_input;
            helpers = buffer_tasks;
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
            shutdown: shutdown.clone(),
        };
        let task = def.inner.build(cx)?;
        let mut tasks = vec![(id.to_string(), task)];
        tasks.extend(helpers);
        Ok(BuiltComponent {
            id: id.to_string(),
            kind: ComponentKind::Sink,
            shutdown,
            disk_buffer,
            tasks,
        })
    }

    /// Spawns the tasks of built components and records them as running.
    fn spawn(&mut self, components: Vec<BuiltComponent>) {
        for c in components {
            let replaced = Arc::new(AtomicBool::new(false));
            if c.kind == ComponentKind::Source {
                self.live_sources.lock().unwrap_or_else(|e| e.into_inner()).insert(c.id.clone());
            }
            let type_name = self.type_name(&c.id);
            let mut tasks = Vec::new();
            let mut labels = Vec::new();
            for (i, (task_id, task)) in c.tasks.into_iter().enumerate() {
                // A disk buffer's tasks report as internal components of the sink.
                let type_name = if i == 0 { type_name } else { "internal" };
                let l = ComponentLabels::new(&task_id, c.kind.name(), type_name);
                tasks.push(self.spawn_task(&c.id, &l, c.kind, task, &replaced));
                labels.push(l);
            }
            let instance = Instance {
                kind: c.kind,
                shutdown: c.shutdown,
                replaced,
                disk_buffer: c.disk_buffer,
                tasks,
                labels,
            };
            self.instances.insert(c.id, instance);
        }
    }

    fn type_name(&self, id: &str) -> &'static str {
        let c = &self.config;
        (c.sources.get(id).map(|d| d.inner.type_name()))
            .or_else(|| c.transforms.get(id).map(|d| d.inner.type_name()))
            .or_else(|| c.sinks.get(id).map(|d| d.inner.type_name()))
            .unwrap_or("internal")
    }

    fn spawn_task(
        &self,
        component: &str,
        labels: &ComponentLabels,
        kind: ComponentKind,
        task: Task,
        replaced: &Arc<AtomicBool>,
    ) -> Spawned {
        // The name the log uses, `sinks.es`, which `/health` reports too.
        let name = format!("{}.{}", kind.table(), labels.id);
        let running = Arc::clone(&self.running);
        running.lock().unwrap_or_else(|e| e.into_inner()).insert(name.clone(), kind.name());
        let health = crate::health::global().register(labels);
        let live_sources = Arc::clone(&self.live_sources);
        let sources_done = self.sources_done.clone();
        let failed = self.failed.clone();
        let output_closed = self.output_closed.clone();
        let replaced = Arc::clone(replaced);
        let component = component.to_string();
        let ended = CancellationToken::new();
        let end = ended.clone();
        let handle = self.tracker.spawn(async move {
            // Cancelled however the task ends, aborted included.
            let _ended = end.drop_guard();
            match task.await {
                Ok(()) => {
                    tracing::debug!(component = %name, "{} finished", kind.name());
                    health.finished();
                }
                Err(ComponentError::OutputClosed(what)) => {
                    tracing::info!(component = %name, "{what} was closed by its reader; weir stops");
                    health.finished();
                    output_closed.cancel();
                }
                Err(error) => {
                    report_failure(&name, kind, &error);
                    health.failed();
                    failed.cancel();
                }
            }
            running.lock().unwrap_or_else(|e| e.into_inner()).remove(&name);
            if kind == ComponentKind::Source && !replaced.load(Ordering::Acquire) {
                let mut live = live_sources.lock().unwrap_or_else(|e| e.into_inner());
                live.remove(&component);
                if live.is_empty() {
                    sources_done.cancel();
                }
            }
        });
        Spawned { ended, abort: handle.abort_handle() }
    }
}

fn input_channel(
    metrics: &ComponentMetrics,
    bytes: usize,
    when_full: WhenFull,
    gauges: bool,
) -> (BatchSender, BatchReceiver) {
    channel::channel(
        bytes,
        when_full,
        gauges.then(|| metrics.buffer_gauges()),
        Some(metrics.discarded_counter(crate::metrics::discard_reason::BUFFER_FULL)),
    )
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
    /// The configuration running now.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Resolves when every source has finished on its own (e.g. stdin reached its end).
    pub async fn sources_finished(&self) {
        self.sources_done.cancelled().await;
    }

    /// Resolves when a sink's output was closed by its reader: weir stops, exiting 0.
    pub async fn output_closed(&self) {
        self.output_closed.cancelled().await;
    }

    /// Resolves when a component has failed (its task ended with an error): it will not run
    /// again, so weir should stop and exit non-zero for its supervisor to restart it.
    pub async fn component_failed(&self) {
        self.failed.cancelled().await;
    }

    /// Stops the sources and waits for the pipeline to drain, up to the shutdown timeout.
    /// Returns `false` if components were still running when time ran out, or if a
    /// component failed (then or before): weir's exit code says so.
    pub async fn stop(mut self) -> bool {
        let timeout = self.config.shutdown_timeout;
        crate::tap::global().stop_all();
        for instance in self.instances.values() {
            instance.shutdown.trigger(timeout);
        }
        // What the topology holds of the channels goes, so that inputs close as their
        // upstream components finish.
        self.inputs.clear();
        self.outputs.clear();
        self.dead_letter_input = None;
        self.tracker.close();
        match tokio::time::timeout(timeout, self.tracker.wait()).await {
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
                    timeout_secs = timeout.as_secs(),
                    "shutdown timed out; events still in these components were not delivered \
                     and will be read again from the last checkpoint"
                );
                false
            }
        }
    }
}
