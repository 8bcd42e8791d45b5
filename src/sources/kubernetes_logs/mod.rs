//! `kubernetes_logs`: the logs of a node's pods, read from the files the kubelet keeps
//! (`pods_dir`, `<namespace>_<pod>_<uid>/<container>/<restart count>.log`), as a DaemonSet
//! runs it.
//!
//! The files are read by the file source's reader ([`crate::sources::file::run_reader`]):
//! checkpoints, rotation and acknowledgements are the file source's. The kubelet rotates a
//! container's log by renaming `0.log` to `0.log.<time>` (then compressing older ones to
//! `.gz`): only `*.log` names are matched, so a rotated file is finished through the handle
//! already open and never read again as new, and compressed files are never opened. Each
//! line is decoded by [`decode`] (CRI or Docker `json-file`, detected per file, parts of long
//! lines joined); the event's `kubernetes.*` fields come from the path alone, so no API access
//! is needed.

pub mod decode;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use vrl::value::{KeyString, ObjectMap, Value};

use super::file::{self, FileFormat, LineDecoder, ReadFrom};
use super::util::host_name;
use crate::component::{SourceComponent, SourceContext};
use crate::error::{BuildError, ConfigIssue, Task};
use crate::event::SharedFields;

/// `[sources.<id>] type = "kubernetes_logs"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesLogsConfig {
    /// Where the kubelet keeps pod logs. Default `/var/log/pods`.
    #[serde(default = "default_pods_dir")]
    pub pods_dir: String,
    /// Namespaces whose pods are not read (glob patterns: `kube-*`).
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// Containers that are not read, by container name (glob patterns).
    #[serde(default)]
    pub exclude_containers: Vec<String>,
    /// Longest line of a log file kept whole, as the runtime wrote it (the runtimes split
    /// lines at 16 KiB; Docker's JSON escapes can make one several times longer).
    /// Default 128 KiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Longest message joined from the parts of a long line; the rest is cut (the event is
    /// marked `log.flags = ["truncated"]`). Default 1 MiB.
    #[serde(default = "default_max_merged_line_bytes")]
    pub max_merged_line_bytes: usize,
    /// For files found at start-up without a checkpoint: `beginning` (default) or `end`.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Files not modified for this long when found at start-up are skipped.
    #[serde(default)]
    pub ignore_older_secs: Option<u64>,
    /// How often `pods_dir` is listed again. Default 1000.
    #[serde(default = "default_glob_interval_ms")]
    pub glob_interval_ms: u64,
    /// How long a rotated or deleted file is still read after it stops growing. Default 5000.
    #[serde(default = "default_rotate_wait_ms")]
    pub rotate_wait_ms: u64,
}

fn default_pods_dir() -> String {
    "/var/log/pods".into()
}
fn default_max_line_bytes() -> usize {
    128 * 1024
}
fn default_max_merged_line_bytes() -> usize {
    1024 * 1024
}
fn default_glob_interval_ms() -> u64 {
    1000
}
fn default_rotate_wait_ms() -> u64 {
    5000
}

/// A `kubernetes_logs` source, checked: the file source it runs.
pub struct Checked {
    file: file::FileConfig,
    file_checked: file::Checked,
}

impl KubernetesLogsConfig {
    /// The file source that reads `pods_dir`: every container's `*.log`, less the excluded.
    fn file_config(&self) -> Result<file::FileConfig, String> {
        let dir = self.pods_dir.trim_end_matches('/');
        let escaped = glob::Pattern::escape(dir);
        let mut exclude: Vec<String> = Vec::new();
        exclude.extend(self.exclude_namespaces.iter().map(|ns| format!("{escaped}/{ns}_*/*/*")));
        exclude.extend(self.exclude_containers.iter().map(|c| format!("{escaped}/*/{c}/*")));
        let value = serde_json::json!({
            "include": [format!("{escaped}/*/*/*.log")],
            "exclude": exclude,
            "read_from": match self.read_from { ReadFrom::Beginning => "beginning", ReadFrom::End => "end" },
            "ignore_older_secs": self.ignore_older_secs,
            "glob_interval_ms": self.glob_interval_ms,
            "rotate_wait_ms": self.rotate_wait_ms,
            "max_line_bytes": self.max_line_bytes,
        });
        serde_json::from_value(value).map_err(|e| e.to_string())
    }
}

impl SourceComponent for KubernetesLogsConfig {
    type Checked = Checked;

    fn check(&self) -> Result<Checked, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        for (key, patterns) in [
            ("exclude_namespaces", &self.exclude_namespaces),
            ("exclude_containers", &self.exclude_containers),
        ] {
            for p in patterns {
                if let Err(e) = glob::Pattern::new(p) {
                    issues
                        .push(ConfigIssue::field(key, format!("invalid glob pattern `{p}`: {e}")));
                } else if p.contains('/') || p.is_empty() {
                    issues.push(ConfigIssue::field(key, format!("`{p}` is not a name pattern")));
                }
            }
        }
        if self.pods_dir.is_empty() {
            issues.push(ConfigIssue::field("pods_dir", "must not be empty"));
        }
        if self.max_merged_line_bytes == 0 {
            issues.push(ConfigIssue::field("max_merged_line_bytes", "must be at least 1"));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let file = self.file_config().map_err(|e| vec![ConfigIssue::field("pods_dir", e)])?;
        let file_checked = file.check()?;
        Ok(Checked { file, file_checked })
    }

    fn build(&self, checked: Checked, cx: SourceContext) -> Result<Task, BuildError> {
        let format = PodLogs {
            pods_dir: self.pods_dir.trim_end_matches('/').to_string(),
            host: host_name(),
            max_line_bytes: self.max_line_bytes,
            max_merged_line_bytes: self.max_merged_line_bytes,
        };
        file::run_reader(checked.file, checked.file_checked, Some(Arc::new(format)), cx)
    }

    /// Checkpoints advance only over acknowledged lines.
    fn acknowledges(&self) -> bool {
        true
    }
}

/// The files of `pods_dir`: decoded by [`decode::Decoder`], with fields from their path.
struct PodLogs {
    pods_dir: String,
    host: Bytes,
    max_line_bytes: usize,
    max_merged_line_bytes: usize,
}

impl FileFormat for PodLogs {
    fn open(&self, path: &str) -> (Box<dyn LineDecoder>, Arc<SharedFields>) {
        let decoder = decode::Decoder::new(self.max_line_bytes, self.max_merged_line_bytes);
        (Box::new(decoder), SharedFields::new(self.fields(path)))
    }
}

/// What a pod log's path says: `<namespace>_<pod>_<uid>/<container>/<n>.log`.
#[derive(Debug, PartialEq, Eq)]
pub struct PodPath<'a> {
    pub namespace: &'a str,
    pub pod: &'a str,
    pub uid: &'a str,
    pub container: &'a str,
}

impl<'a> PodPath<'a> {
    /// Parses the part of a path under `pods_dir`. Namespace and pod names cannot hold `_`
    /// (they are DNS labels and subdomains), so the directory splits in three exactly.
    pub fn parse(relative: &'a Path) -> Option<Self> {
        let mut parts = relative.iter().map(|p| p.to_str());
        let (Some(Some(pod_dir)), Some(Some(container)), Some(Some(_)), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let mut names = pod_dir.splitn(3, '_');
        let (Some(namespace), Some(pod), Some(uid)) = (names.next(), names.next(), names.next())
        else {
            return None;
        };
        Some(Self { namespace, pod, uid, container })
    }
}

fn object(entries: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    Value::Object(entries.into_iter().map(|(k, v)| (KeyString::from(k), v)).collect())
}

fn text(s: &str) -> Value {
    Value::Bytes(Bytes::from(s.to_owned()))
}

impl PodLogs {
    /// `host.name`, `log.file.path` and, when the path is a pod log's, `kubernetes.*`.
    fn fields(&self, path: &str) -> ObjectMap {
        let mut map = ObjectMap::new();
        map.insert("host".into(), object([("name", Value::Bytes(self.host.clone()))]));
        map.insert("log".into(), object([("file", object([("path", text(path))]))]));
        let relative = Path::new(path).strip_prefix(&self.pods_dir).ok();
        if let Some(p) = relative.and_then(PodPath::parse) {
            let k8s = object([
                ("namespace", text(p.namespace)),
                ("pod", object([("name", text(p.pod)), ("uid", text(p.uid))])),
                ("container", object([("name", text(p.container))])),
            ]);
            map.insert("kubernetes".into(), k8s);
        }
        map
    }
}

#[cfg(test)]
mod tests;
