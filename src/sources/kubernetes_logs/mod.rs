//! `kubernetes_logs`: the logs of a node's pods, read from the files the kubelet keeps
//! (`pods_dir`, `<namespace>_<pod>_<uid>/<container>/<restart count>.log`), as a DaemonSet
//! runs it.
//!
//! The files are read by the file source's reader ([`crate::sources::file::run_reader`]):
//! checkpoints, rotation and acknowledgements are the file source's. The kubelet rotates a
//! container's log by renaming `0.log` to `0.log.<time>` (then compressing older ones to
//! `.gz`): only `*.log` names are matched, so a rotated file is finished through the handle
//! already open and never read again as new, and compressed files are never opened. A file
//! rotated while weir was stopped is found at start by its checkpoint and read to its end. Each
//! line is decoded by [`decode`] (CRI or Docker `json-file`, detected per file, parts of long
//! lines joined); the event's `kubernetes.*` fields come from the path alone, so no API access
//! is needed.

pub mod decode;
pub mod metadata;

use std::path::{Path, PathBuf};
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
    /// How long the checkpoint of a file that is gone (its pod deleted, a rotated file
    /// finished) is kept. A pod's files never come back under a new pod (its UID is in the
    /// path), so an hour is plenty. Default 3600.
    #[serde(default = "default_forget_after_secs")]
    pub forget_after_secs: u64,
    /// Enrich events from the Kubernetes API. With `false`, only the fields of the path are
    /// set and no API is contacted. Default true.
    #[serde(default = "default_use_api")]
    pub use_api: bool,
    /// The Kubernetes API, for pod metadata. Default: in a pod, the cluster's
    /// (`KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`, the service account's token and
    /// CA); elsewhere none (the fields of the path only).
    #[serde(default)]
    pub kube_api_endpoint: Option<String>,
    /// Bearer token file, read again before every request (tokens are rotated).
    #[serde(default)]
    pub kube_token_file: Option<PathBuf>,
    /// PEM file of the API's certificate authority.
    #[serde(default)]
    pub kube_ca_file: Option<PathBuf>,
    /// The node whose pods are watched. Default: the `NODE_NAME` environment variable (the
    /// DaemonSet sets it from `spec.nodeName`).
    #[serde(default)]
    pub self_node_name: Option<String>,
    /// Also add `kubernetes.annotations.*`. Default false.
    #[serde(default)]
    pub include_annotations: bool,
    /// How long a deleted pod's metadata is kept, for the last lines of its files. Default 60.
    #[serde(default = "default_delay_deletion_secs")]
    pub delay_deletion_secs: u64,
}

fn default_forget_after_secs() -> u64 {
    3600
}

fn default_use_api() -> bool {
    true
}

fn default_delay_deletion_secs() -> u64 {
    60
}

/// In-cluster credentials of a pod's service account.
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

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
    fn pods_dir(&self) -> &str {
        self.pods_dir.trim_end_matches('/')
    }

    /// The file source that reads `pods_dir`: every container's `*.log`, less the excluded.
    fn file_config(&self) -> Result<file::FileConfig, String> {
        let escaped = glob::Pattern::escape(self.pods_dir());
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
            "forget_after_secs": self.forget_after_secs,
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
        if let Some(e) = &self.kube_api_endpoint
            && let Err(why) = crate::sinks::util::http::check_url(e)
        {
            issues.push(ConfigIssue::field("kube_api_endpoint", why.to_string()));
        }
        if self.max_merged_line_bytes == 0 {
            issues.push(ConfigIssue::field("max_merged_line_bytes", "must be at least 1"));
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        let file = self.file_config().map_err(|e| vec![ConfigIssue::field("pods_dir", e)])?;
        // `0.log.20240501-100000`, not `.gz` nor the `.tmp` of a compression under way.
        let rotated = format!("{}/*/*/*.log.[0-9]*[0-9]", glob::Pattern::escape(self.pods_dir()));
        let file_checked = file.check()?.resume_rotated(vec![rotated]);
        Ok(Checked { file, file_checked })
    }

    fn build(&self, checked: Checked, cx: SourceContext) -> Result<Task, BuildError> {
        let pods = match self.api_settings(&cx.id)? {
            Some(settings) => {
                let grace = std::time::Duration::from_secs(self.delay_deletion_secs);
                let cache = Arc::new(metadata::PodCache::new(grace, MAX_PODS));
                let watcher = metadata::Watcher::new(
                    settings,
                    Arc::clone(&cache),
                    cx.shutdown.clone(),
                    cx.id.clone(),
                )
                .map_err(|message| BuildError::Client { what: "Kubernetes API", message })?;
                tokio::spawn(watcher.run());
                Some(cache)
            }
            None => None,
        };
        let format = PodLogs {
            pods_dir: self.pods_dir.trim_end_matches('/').to_string(),
            host: host_name(),
            max_line_bytes: self.max_line_bytes,
            max_merged_line_bytes: self.max_merged_line_bytes,
            pods,
            annotations: self.include_annotations,
            metrics: cx.metrics.clone(),
        };
        file::run_reader(checked.file, checked.file_checked, Some(Arc::new(format)), cx)
    }

    /// Checkpoints advance only over acknowledged lines.
    fn acknowledges(&self) -> bool {
        true
    }
}

/// Most pods whose metadata is kept (a node runs at most a few hundred).
const MAX_PODS: usize = 5000;

impl KubernetesLogsConfig {
    /// Where the API is, when there is one to use. In a pod without the service account's
    /// token or `NODE_NAME`, weir says so once and runs without metadata; with an explicit
    /// `kube_api_endpoint`, a node name is required.
    fn api_settings(&self, id: &str) -> Result<Option<metadata::ApiSettings>, BuildError> {
        if !self.use_api {
            return Ok(None);
        }
        let in_cluster = std::env::var("KUBERNETES_SERVICE_HOST").ok().map(|host| {
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            let host = if host.contains(':') { format!("[{host}]") } else { host };
            format!("https://{host}:{port}")
        });
        let (endpoint, defaults) = match (&self.kube_api_endpoint, in_cluster) {
            (Some(e), _) => (e.clone(), false),
            (None, Some(e)) => (e, true),
            (None, None) => return Ok(None),
        };
        let account = |file: &str| defaults.then(|| Path::new(SERVICE_ACCOUNT).join(file));
        let node_name = self.self_node_name.clone().or_else(|| std::env::var("NODE_NAME").ok());
        let without_metadata = |why: &str| {
            tracing::warn!(component = %id, "{why}; pod metadata from the Kubernetes API is not \
                added (only the fields of the path); set use_api = false to silence this");
        };
        let token = self.kube_token_file.clone().or_else(|| account("token"));
        if defaults && self.kube_token_file.is_none() && token.as_ref().is_some_and(|t| !t.exists())
        {
            without_metadata("in a pod, but the service account's token is not mounted");
            return Ok(None);
        }
        let Some(node_name) = node_name.filter(|n| !n.is_empty()) else {
            if defaults {
                without_metadata("this node's name is not known (NODE_NAME is not set)");
                return Ok(None);
            }
            return Err(ConfigIssue::field(
                "self_node_name",
                "the Kubernetes API is in use but this node's name is not known: set \
                 self_node_name, or NODE_NAME from spec.nodeName",
            )
            .into());
        };
        Ok(Some(metadata::ApiSettings {
            endpoint,
            token_file: token,
            ca_file: self.kube_ca_file.clone().or_else(|| account("ca.crt")),
            node_name,
        }))
    }
}

/// The files of `pods_dir`: decoded by [`decode::Decoder`], with fields from their path and,
/// with the API, their pod's metadata.
struct PodLogs {
    pods_dir: String,
    host: Bytes,
    max_line_bytes: usize,
    max_merged_line_bytes: usize,
    pods: Option<Arc<metadata::PodCache>>,
    annotations: bool,
    metrics: crate::metrics::ComponentMetrics,
}

impl FileFormat for PodLogs {
    fn open(&self, path: &str) -> (Box<dyn LineDecoder>, Arc<SharedFields>) {
        let mut decoder = decode::Decoder::new(self.max_line_bytes, self.max_merged_line_bytes)
            .with_metrics(self.metrics.clone());
        let fields = self.fields(path);
        let relative = Path::new(path).strip_prefix(&self.pods_dir).ok();
        if let (Some(cache), Some(p)) = (&self.pods, relative.and_then(PodPath::parse)) {
            let enricher = metadata::Enricher::new(
                Arc::clone(cache),
                p.uid,
                p.container,
                fields.clone(),
                self.annotations,
            );
            decoder = decoder.with_enricher(enricher);
        }
        (Box::new(decoder), SharedFields::new(fields))
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
