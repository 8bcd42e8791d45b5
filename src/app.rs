//! What the commands do: `run` a pipeline until it ends or is stopped, `validate` files.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{self, Health, ReloadRequest};
use crate::config::{self, Config, ConfigError};
use crate::metrics::Labels;

/// Loads the pipeline: the given files, or the embedded default pipeline when there are none.
pub fn load(paths: &[PathBuf]) -> Result<Config, Vec<ConfigError>> {
    if paths.is_empty() {
        config::load_from_str("<embedded default pipeline>", config::DEFAULT_PIPELINE)
    } else {
        config::load_from_paths(paths)
    }
}

/// `weir validate`: every error and warning on standard error, or "Configuration OK" on
/// standard output. Returns the exit code.
pub fn validate(paths: &[PathBuf]) -> i32 {
    let config = load(paths).and_then(|config| {
        let errors = config::unit_test::check(&config);
        if errors.is_empty() { Ok(config) } else { Err(errors) }
    });
    match config {
        Ok(config) => {
            for w in &config.warnings {
                crate::say_err!("warning: {w}");
            }
            crate::say!("Configuration OK");
            0
        }
        Err(errors) => {
            for e in &errors {
                crate::say_err!("error: {e}");
            }
            crate::say_err!(
                "{} error{} found",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            );
            1
        }
    }
}

/// `weir profile`: builds a reference profile and writes it. Returns the exit code.
pub fn profile(req: &crate::monitoring::profile::ProfileRequest<'_>, out: &std::path::Path) -> i32 {
    let profile = match crate::monitoring::profile::build(req) {
        Ok(p) => p,
        Err(e) => {
            crate::say_err!("error: {e}");
            return 1;
        }
    };
    let text = match serde_json::to_string(&profile) {
        Ok(t) => t,
        Err(e) => {
            crate::say_err!("error: cannot encode the profile: {e}");
            return 1;
        }
    };
    // Written beside the target, then renamed: a reader never sees half a profile.
    let tmp = out.with_extension("json.tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, out)) {
        crate::say_err!("error: cannot write {}: {e}", out.display());
        return 1;
    }
    crate::say!(
        "profiled {} rows, {} features -> {}",
        profile.rows,
        profile.features.len(),
        out.display()
    );
    0
}

/// Why a run ended.
pub enum Ending {
    /// A signal asked for it.
    Signal,
    /// Every source finished on its own (stdin reached its end, demo `count` reached).
    SourcesFinished,
    /// A component ended with an error and will not run again.
    ComponentFailed,
    /// A sink's output was closed by its reader (`weir run | head`).
    OutputClosed,
}

/// How `weir run` was asked to run, beside the configuration itself.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// The pipeline files (none: the embedded default pipeline), read again on a reload.
    pub paths: Vec<PathBuf>,
    /// Reload when the files change (`--watch-config`).
    pub watch_config: bool,
}

/// `weir run`: starts the pipeline and runs it until a signal or until every source has
/// finished, then drains it; SIGHUP, a change of the files (`--watch-config`) and `POST
/// /reload` reload it. Returns the exit code.
pub async fn run(config: Config, options: RunOptions) -> i32 {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let health = Health::default();
    // Both results on /metrics at 0 from the start, so dashboards show 0, not "No data".
    reload_counter(RELOAD_SUCCEEDED);
    reload_counter(RELOAD_FAILED);
    let api_stop = CancellationToken::new();
    let mut api_task = None;
    let (reload_tx, mut reloads) = mpsc::channel::<ReloadRequest>(4);
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot handle signals: {e}");
            return 71;
        }
    };
    if let Some(api) = config.api.as_ref().filter(|a| a.enabled) {
        let reloader = api.reload.then(|| reload_tx.clone());
        match api::serve(api, health.clone(), reloader, api_stop.clone()).await {
            Ok(server) => api_task = Some(tokio::spawn(server)),
            Err(e) => {
                tracing::error!("{e}");
                return 78;
            }
        }
    }
    let mut topology = match crate::topology::start(&config) {
        Ok(t) => t,
        Err(errors) => {
            for e in errors {
                tracing::error!("cannot start: {e}");
            }
            return 78;
        }
    };
    health.set(true);
    reload_counter(RELOAD_FAILED);
    reload_counter(RELOAD_SUCCEEDED);
    if options.watch_config {
        if options.paths.is_empty() {
            tracing::warn!(
                "--watch-config: weir runs the embedded default pipeline, no file to watch"
            );
        } else {
            tokio::spawn(watch(options.paths.clone(), reload_tx.clone(), api_stop.clone()));
        }
    }
    tracing::info!(
        sources = config.sources.len(),
        transforms = config.transforms.len(),
        sinks = config.sinks.len(),
        "weir is running"
    );
    let ending = loop {
        tokio::select! {
            signal = signals.next() => match signal {
                Signal::Stop => break Ending::Signal,
                Signal::Reload => {
                    let _ = reload(&options.paths, &mut topology, "SIGHUP").await;
                }
            },
            Some(request) = reloads.recv() => {
                let outcome = reload(&options.paths, &mut topology, request.cause).await;
                if let Some(reply) = request.reply {
                    let _ = reply.send(outcome);
                }
            }
            _ = topology.sources_finished() => break Ending::SourcesFinished,
            _ = topology.component_failed() => break Ending::ComponentFailed,
            _ = topology.output_closed() => break Ending::OutputClosed,
        }
    };
    drop(reloads);
    health.set(false);
    let timeout = topology.config().shutdown_timeout;
    match ending {
        Ending::Signal => {
            tracing::info!(
                timeout_secs = timeout.as_secs(),
                "stopping: draining in-flight events (a second signal exits at once)"
            );
        }
        Ending::SourcesFinished => tracing::info!("all sources finished; draining"),
        Ending::OutputClosed => tracing::info!("stopping: draining in-flight events"),
        Ending::ComponentFailed => tracing::error!(
            "a component failed and will not run again; stopping, and exiting non-zero so \
             that a supervisor restarts weir"
        ),
    }
    if !matches!(ending, Ending::SourcesFinished) {
        tokio::spawn(async move {
            loop {
                if let Signal::Stop = signals.next().await {
                    break;
                }
            }
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
    }
    let clean = topology.stop().await;
    api_stop.cancel();
    if let Some(t) = api_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
    }
    tracing::info!("weir stopped");
    if clean { 0 } else { 1 }
}

const RELOAD_SUCCEEDED: &str = "success";
const RELOAD_FAILED: &str = "failed";

/// `weir_config_reloads_total{result}`.
fn reload_counter(result: &str) -> Counter {
    static FAMILY: OnceLock<Family<Labels, Counter>> = OnceLock::new();
    let family = FAMILY.get_or_init(|| {
        let family = Family::<Labels, Counter>::default();
        crate::metrics::global().register(
            "config_reloads",
            "Configuration reloads, by result (failed: invalid or refused, the old one runs on)",
            family.clone(),
        );
        family
    });
    family.get_or_create_owned(&vec![("result".into(), result.into())])
}

/// Loads the pipeline files again and applies them: every error is logged and the running
/// pipeline is left as it was when they are invalid. Returns the changes, or why none.
async fn reload(
    paths: &[PathBuf],
    topology: &mut crate::topology::RunningTopology,
    cause: &str,
) -> Result<String, String> {
    tracing::info!(cause, "reloading the configuration");
    let new = match load(paths) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                tracing::error!("{e}");
            }
            reload_counter(RELOAD_FAILED).inc();
            let n = errors.len();
            tracing::error!(
                errors = n,
                "the new configuration is invalid; weir runs on with the old one"
            );
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(all.join("\n"));
        }
    };
    for w in &new.warnings {
        tracing::warn!("{w}");
    }
    if format!("{:?}", new.api) != format!("{:?}", topology.config().api) {
        tracing::warn!(
            "[api] cannot change while weir runs; the API keeps its settings until a restart"
        );
    }
    match topology.reload(new).await {
        Ok(changes) => {
            reload_counter(RELOAD_SUCCEEDED).inc();
            tracing::info!(%changes, "configuration reloaded");
            Ok(changes.to_string())
        }
        Err(e) => {
            reload_counter(RELOAD_FAILED).inc();
            tracing::error!(error = %e, "configuration not reloaded; weir runs on with the old one");
            Err(e.to_string())
        }
    }
}

/// How often `--watch-config` looks at the files, and how long they must stay the same
/// before a reload (an editor or a ConfigMap update writes in several steps).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
const WATCH_SETTLE: Duration = Duration::from_millis(500);

/// `--watch-config`: asks for a reload when the files' contents change. The files are read
/// and compared, not watched with inotify: a Kubernetes ConfigMap is updated by swapping a
/// symbolic link, which a watch on the file does not see, and a few small files read once a
/// second cost nothing.
async fn watch(paths: Vec<PathBuf>, reloads: mpsc::Sender<ReloadRequest>, stop: CancellationToken) {
    let mut seen = contents(&paths);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(WATCH_INTERVAL) => {}
        }
        let mut now = contents(&paths);
        if now == seen {
            continue;
        }
        loop {
            tokio::time::sleep(WATCH_SETTLE).await;
            let again = contents(&paths);
            if again == now {
                break;
            }
            now = again;
        }
        seen = now;
        tracing::info!("configuration files changed");
        if reloads.send(ReloadRequest { cause: "file change", reply: None }).await.is_err() {
            return;
        }
    }
}

/// A hash of each file's contents (`None` for a file that cannot be read now).
fn contents(paths: &[PathBuf]) -> Vec<Option<u64>> {
    use std::hash::{DefaultHasher, Hash, Hasher};
    (paths.iter())
        .map(|p| {
            std::fs::read(p).ok().map(|bytes| {
                let mut h = DefaultHasher::new();
                bytes.hash(&mut h);
                h.finish()
            })
        })
        .collect()
}

/// What a signal asks for.
enum Signal {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The signals weir handles, registered once so that none arriving during a reload is lost.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => Signal::Stop,
                _ = self.term.recv() => Signal::Stop,
                _ = self.hup.recv() => Signal::Reload,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop
        }
    }
}
