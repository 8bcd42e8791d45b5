//! Reloading a running pipeline with a new configuration: only what changed is rebuilt.
//!
//! A component is kept when its table (after `${VAR}` expansion) is the same in both
//! configurations; kept components go on running with their buffers, checkpoints and
//! connections, and only the consumers of their outputs are replaced. A removed or changed
//! component is retired before its replacement is built:
//! - a source is told to stop: it stops reading, waits for the acknowledgements of what it
//!   sent and writes its checkpoint, as at shutdown (its replacement starts from there);
//!   a listening socket it leaves goes to whatever is built on the same address (see
//!   [`crate::sources::util::listeners`]), so it is never closed in between;
//! - a transform or a sink is taken out of its upstream outputs, so its input closes once
//!   the batches already on their way are in; it handles what it holds and ends (a sink
//!   sends its in-flight batches). A sink with a disk buffer is stopped as at shutdown: what
//!   it has not sent stays in the buffer, which its replacement opens and reads on;
//! - all within `shutdown_timeout_secs`, after which what is left is stopped, and its
//!   unacknowledged events are read again after a restart.
//!
//! The replacements' inputs exist from the start of the reload: kept components send into
//! them at once and wait when they are full, so nothing is dropped while the old instances
//! finish. Events on unchanged paths are neither lost nor repeated; on a changed path the
//! events in flight are handled by the old instance, the rest by the new one.
//!
//! A replacement that cannot be built once its old instance has stopped (a port another
//! process holds, a disk buffer that cannot be opened) rolls the reload back: the components
//! the reload started are retired in turn and the previous ones built again, from their
//! checkpoints and disk buffers, and the reload counts as failed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Instance, RunningTopology, StartError, compile_transforms};
use crate::config::{ComponentKind, Config};

/// What a reload changed, by component name (`transforms.parse`).
#[derive(Debug, Default)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Changes {
    /// The components in which the two configurations differ.
    fn between(old: &Config, new: &Config) -> Self {
        let (old, new) = (fingerprints(old), fingerprints(new));
        let mut changes = Self::default();
        for (id, (kind, print)) in &old {
            match new.get(id) {
                None => changes.removed.push(name(*kind, id)),
                Some((k, p)) if k != kind || p != print => changes.changed.push(name(*k, id)),
                Some(_) => {}
            }
        }
        for (id, (kind, _)) in &new {
            if !old.contains_key(id) {
                changes.added.push(name(*kind, id));
            }
        }
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }

    /// Ids of the components whose running instance goes.
    fn retired(&self) -> BTreeSet<String> {
        self.changed.iter().chain(&self.removed).map(|n| id_of(n).to_string()).collect()
    }

    /// Ids of the components built anew.
    fn built(&self) -> BTreeSet<String> {
        self.changed.iter().chain(&self.added).map(|n| id_of(n).to_string()).collect()
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing changed");
        }
        let mut parts = Vec::new();
        for (what, names) in
            [("added", &self.added), ("changed", &self.changed), ("removed", &self.removed)]
        {
            if !names.is_empty() {
                parts.push(format!("{what} {}", names.join(", ")));
            }
        }
        f.write_str(&parts.join("; "))
    }
}

fn name(kind: ComponentKind, id: &str) -> String {
    format!("{}.{id}", kind.table())
}

fn id_of(name: &str) -> &str {
    name.split_once('.').map_or(name, |(_, id)| id)
}

fn fingerprints(config: &Config) -> BTreeMap<&str, (ComponentKind, &str)> {
    let sources = config.sources.iter().map(|(id, d)| (id, ComponentKind::Source, &d.fingerprint));
    let transforms =
        config.transforms.iter().map(|(id, d)| (id, ComponentKind::Transform, &d.fingerprint));
    let sinks = config.sinks.iter().map(|(id, d)| (id, ComponentKind::Sink, &d.fingerprint));
    sources
        .chain(transforms)
        .chain(sinks)
        .map(|(id, k, p)| (id.as_str(), (k, p.as_str())))
        .collect()
}

/// What [`RunningTopology::apply`] did.
enum Applied {
    Done(Changes),
    /// These components could not be built; the others run.
    BuildFailed(Vec<StartError>),
}

/// Why a reload was refused; the running pipeline is left as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0} cannot change while weir runs; restart weir to apply it")]
    NeedsRestart(String),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Build(Vec<StartError>),
}

impl RunningTopology {
    /// Replaces the running configuration with `new` (validated), rebuilding only the
    /// components that changed. An error leaves the previous configuration running: when a
    /// replacement fails to build once its old instance has stopped, the reload is rolled
    /// back. Only when that fails too is it a failed component, and weir stops (see
    /// [`RunningTopology::component_failed`]).
    pub async fn reload(&mut self, new: Config) -> Result<Changes, ReloadError> {
        let previous = self.config.clone();
        // Held through a rollback too: the old sources take their sockets back then.
        let _handover = self.listeners.reloading();
        let errors = match self.apply(new).await? {
            Applied::Done(changes) => return Ok(changes),
            Applied::BuildFailed(errors) => errors,
        };
        for e in &errors {
            tracing::error!(
                component = %e.component,
                error = %e.error,
                "cannot start the component after a reload; going back to the previous configuration"
            );
        }
        let back = match self.apply(previous).await {
            Ok(Applied::Done(changes)) => Ok(changes),
            Ok(Applied::BuildFailed(errors)) => Err(ReloadError::Build(errors)),
            Err(e) => Err(e),
        };
        match back {
            Ok(changes) => tracing::warn!(%changes, "the previous configuration runs again"),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the previous configuration again; weir stops");
                self.failed.cancel();
            }
        }
        Err(ReloadError::Build(errors))
    }

    /// One step of [`RunningTopology::reload`]: retires what changed and builds its
    /// replacements. The components that did build run; those that did not are returned.
    async fn apply(&mut self, new: Config) -> Result<Applied, ReloadError> {
        let old = &self.config;
        if new.data_dir != old.data_dir {
            return Err(ReloadError::NeedsRestart("data_dir".into()));
        }
        if format!("{:?}", new.dead_letter) != format!("{:?}", old.dead_letter) {
            return Err(ReloadError::NeedsRestart("[dead_letter]".into()));
        }
        let changes = Changes::between(old, &new);
        let (retired, built) = (changes.retired(), changes.built());
        if let Some(dl) = old.dead_letter.sink.as_ref().filter(|dl| retired.contains(*dl)) {
            return Err(ReloadError::NeedsRestart(format!("sinks.{dl}, the dead-letter sink,")));
        }
        // Transforms compile first: one that does not leaves everything as it was.
        let transforms = compile_transforms(&new, &built).map_err(ReloadError::Build)?;
        self.config = new;
        if changes.is_empty() {
            return Ok(Applied::Done(changes));
        }
        for id in &retired {
            self.inputs.remove(id);
        }
        self.outputs.retain(|out, _| !retired.contains(&out.component));
        let receivers = self.open_inputs(&built);
        let wiring = self.wiring();
        for (out, fanout) in &self.outputs {
            fanout.set(wiring.get(out).cloned().unwrap_or_default());
        }
        // Taps on the changed components follow their replacements (same points).
        let rebuilt: Vec<String> = built.intersection(&retired).cloned().collect();
        crate::tap::global().set_graph(&self.config, &rebuilt);
        let old: Vec<(String, Instance)> =
            retired.iter().filter_map(|id| self.instances.remove_entry(id)).collect();
        self.retire(&old).await;
        let result = self.build(&built, receivers, transforms);
        self.spawn(result.components);
        if result.errors.is_empty() {
            Ok(Applied::Done(changes))
        } else {
            Ok(Applied::BuildFailed(result.errors))
        }
    }

    /// Stops the old instances of replaced and removed components and waits for them.
    async fn retire(&self, old: &[(String, Instance)]) {
        let timeout = self.config.shutdown_timeout;
        for (id, instance) in old {
            instance.replaced.store(true, Ordering::Release);
            match instance.kind {
                ComponentKind::Source => {
                    self.live_sources.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
                    instance.shutdown.trigger(timeout);
                }
                ComponentKind::Sink if instance.disk_buffer => instance.shutdown.trigger(timeout),
                _ => {}
            }
        }
        let all = async {
            for (_, instance) in old {
                instance.wait().await;
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            let stuck: Vec<&str> =
                old.iter().filter(|(_, i)| !i.ended()).map(|(id, _)| id.as_str()).collect();
            tracing::error!(
                components = %stuck.join(", "),
                timeout_secs = timeout.as_secs(),
                "replaced components did not finish within the shutdown timeout; they are \
                 stopped, and the events they held will be read again after a restart"
            );
            for (_, instance) in old {
                instance.shutdown.trigger(Duration::ZERO);
                for t in &instance.tasks {
                    t.abort.abort();
                }
            }
        }
        for (_, instance) in old {
            for labels in &instance.labels {
                crate::health::global().forget(labels);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        crate::config::load_from_str("test.toml", text).unwrap()
    }

    #[test]
    fn only_components_whose_table_changed_are_rebuilt() {
        let old = load(
            r#"
            [sources.in]
            type = "stdin"
            [transforms.parse]
            type = "parse_json"
            inputs = ["in"]
            [sinks.out]
            type = "console"
            inputs = ["parse"]
            [sinks.gone]
            type = "blackhole"
            inputs = ["in"]
            "#,
        );
        // The same tables written otherwise (key order, layout, comments) are the same.
        let new = load(
            r#"
            [sources.in]
            type = "stdin"   # unchanged
            [transforms.parse]
            inputs = ["in"]
            type = "parse_json"
            drop_on_error = true
            [sinks.out]
            inputs = [ "parse" ]
            type = "console"
            [sinks.new]
            type = "blackhole"
            inputs = ["parse"]
            "#,
        );
        let changes = Changes::between(&old, &new);
        assert_eq!(changes.changed, ["transforms.parse"]);
        assert_eq!(changes.added, ["sinks.new"]);
        assert_eq!(changes.removed, ["sinks.gone"]);
        assert_eq!(changes.retired(), BTreeSet::from(["parse".into(), "gone".into()]));
        assert_eq!(changes.built(), BTreeSet::from(["parse".into(), "new".into()]));
        assert!(Changes::between(&old, &old).is_empty());
        assert_eq!(
            changes.to_string(),
            "added sinks.new; changed transforms.parse; removed sinks.gone"
        );
    }
}
