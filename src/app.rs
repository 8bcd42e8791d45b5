//! What the commands do: `run` a pipeline until it ends or is stopped, `validate` files.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::{self, Health};
use crate::config::{self, Config, ConfigError};

/// Loads the pipeline: the given files, or the embedded default pipeline when there are none.
pub fn load(paths: &[PathBuf]) -> Result<Config, Vec<ConfigError>> {
    if paths.is_empty() {
        config::load_from_str("<embedded default pipeline>", config::DEFAULT_PIPELINE)
    } else {
        config::load_from_paths(paths)
    }
}

/// `weir validate`: every error, or "Configuration OK". Returns the exit code.
pub fn validate(paths: &[PathBuf]) -> i32 {
    match load(paths) {
        Ok(config) => {
            for w in &config.warnings {
                println!("warning: {w}");
            }
            println!("Configuration OK");
            0
        }
        Err(errors) => {
            for e in &errors {
                println!("error: {e}");
            }
            println!("{} error{} found", errors.len(), if errors.len() == 1 { "" } else { "s" });
            1
        }
    }
}

/// `weir profile`: builds a reference profile and writes it. Returns the exit code.
pub fn profile(req: &crate::monitoring::profile::ProfileRequest<'_>, out: &std::path::Path) -> i32 {
    let profile = match crate::monitoring::profile::build(req) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let text = match serde_json::to_string(&profile) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot encode the profile: {e}");
            return 1;
        }
    };
    // Written beside the target, then renamed: a reader never sees half a profile.
    let tmp = out.with_extension("json.tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, out)) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return 1;
    }
    println!(
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
}

/// `weir run`: starts the pipeline and runs it until a signal or until every source has
/// finished, then drains it. Returns the exit code.
pub async fn run(config: Config) -> i32 {
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let health = Health::default();
    let api_stop = CancellationToken::new();
    let mut api_task = None;
    if let Some(api) = config.api.as_ref().filter(|a| a.enabled) {
        match api::serve(api, health.clone(), api_stop.clone()).await {
            Ok(server) => api_task = Some(tokio::spawn(server)),
            Err(e) => {
                tracing::error!("{e}");
                return 78;
            }
        }
    }
    let topology = match crate::topology::start(&config) {
        Ok(t) => t,
        Err(errors) => {
            for e in errors {
                tracing::error!("cannot start: {e}");
            }
            return 78;
        }
    };
    health.set(true);
    tracing::info!(
        sources = config.sources.len(),
        transforms = config.transforms.len(),
        sinks = config.sinks.len(),
        "weir is running"
    );
    let ending = tokio::select! {
        _ = shutdown_signal() => Ending::Signal,
        _ = topology.sources_finished() => Ending::SourcesFinished,
        _ = topology.component_failed() => Ending::ComponentFailed,
    };
    health.set(false);
    match ending {
        Ending::Signal => {
            tracing::info!(
                timeout_secs = config.shutdown_timeout.as_secs(),
                "stopping: draining in-flight events (a second signal exits at once)"
            );
        }
        Ending::SourcesFinished => tracing::info!("all sources finished; draining"),
        Ending::ComponentFailed => tracing::error!(
            "a component failed and will not run again; stopping, and exiting non-zero so \
             that a supervisor restarts weir"
        ),
    }
    if !matches!(ending, Ending::SourcesFinished) {
        tokio::spawn(async {
            shutdown_signal().await;
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

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
