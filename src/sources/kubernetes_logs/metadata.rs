//! Pod metadata from the Kubernetes API, for the events of this node's pods.
//!
//! One list and one watch of the pods on this node (`fieldSelector=spec.nodeName=<node>`),
//! as the API's contract for efficient change detection says
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes>):
//! the list gives the pods and a `resourceVersion`; the watch, from that version with
//! `allowWatchBookmarks=true`, streams `ADDED`, `MODIFIED`, `DELETED` and `BOOKMARK` events,
//! one JSON object a line, each moving the version on. A watch that ends is resumed from the
//! last version; `410 Gone` (as the response's status or as an `ERROR` event) means that
//! version is too old, and the pods are listed again.
//!
//! The cache is read by the log path and never waited on: a pod whose metadata is not (yet)
//! known gets the fields of its path alone. A deleted pod stays `delay_deletion_secs`, so
//! the last lines of its files are still enriched. The token file is read before every
//! request (the kubelet rotates bound service account tokens); a refused token is retried
//! with capped backoff, as is an API that is down.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use vrl::value::{KeyString, ObjectMap, Value};

use super::{object, text};
use crate::component::ShutdownSignal;
use crate::event::SharedFields;

/// Largest watch event (one pod) read; a larger one ends the watch (it is resumed).
const MAX_EVENT_BYTES: usize = 4 << 20;
/// Largest list response read.
const MAX_LIST_BYTES: usize = 64 << 20;
/// A watch that sends nothing, not even a bookmark, for this long is started again.
const WATCH_IDLE: Duration = Duration::from_secs(330);
/// The server ends a watch after this long; the client resumes it.
const WATCH_SECONDS: u64 = 290;

/// What weir keeps of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMeta {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_name: Option<String>,
    pub pod_ip: Option<String>,
    /// Container name to image.
    pub images: BTreeMap<String, String>,
    /// The controller that owns the pod: kind and name.
    pub owner: Option<(String, String)>,
}

impl PodMeta {
    /// `weir.io/exclude: "true"` as a label or an annotation.
    pub fn excluded(&self) -> bool {
        let yes =
            |m: &BTreeMap<String, String>| m.get("weir.io/exclude").is_some_and(|v| v == "true");
        yes(&self.labels) || yes(&self.annotations)
    }
}

struct Entry {
    meta: Arc<PodMeta>,
    deleted: Option<Instant>,
}

/// Pods by UID, shared by the watch task (writer) and the files' decoders (readers).
#[derive(Default)]
pub struct PodCache {
    pods: Mutex<HashMap<String, Entry>>,
    /// Moves on at every change, so that a reader checks for one with an atomic load.
    generation: AtomicU64,
    grace: Duration,
    max_pods: usize,
}

impl PodCache {
    pub fn new(grace: Duration, max_pods: usize) -> Self {
        Self { grace, max_pods, ..Self::default() }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn get(&self, uid: &str) -> Option<Arc<PodMeta>> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        pods.get(uid).map(|e| Arc::clone(&e.meta))
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn upsert(&self, uid: String, meta: PodMeta) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        if !pods.contains_key(&uid) && pods.len() >= self.max_pods {
            tracing::warn!(
                uid,
                max_pods = self.max_pods,
                "pod metadata cache full; pod not enriched"
            );
            return;
        }
        pods.insert(uid, Entry { meta: Arc::new(meta), deleted: None });
        drop(pods);
        self.changed();
    }

    fn delete(&self, uid: &str, now: Instant) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = pods.get_mut(uid) {
            e.deleted.get_or_insert(now);
        }
    }

    /// A fresh list: pods not in it are deleted (kept for the grace period).
    fn replace(&self, listed: Vec<(String, PodMeta)>, now: Instant) {
        let keep: std::collections::HashSet<&String> = listed.iter().map(|(u, _)| u).collect();
        let gone: Vec<String> = {
            let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
            pods.keys().filter(|u| !keep.contains(u)).cloned().collect()
        };
        for u in gone {
            self.delete(&u, now);
        }
        for (uid, meta) in listed {
            self.upsert(uid, meta);
        }
    }

    /// Forgets pods deleted longer than the grace period ago.
    fn expire(&self, now: Instant) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let before = pods.len();
        pods.retain(|_, e| e.deleted.is_none_or(|d| now.duration_since(d) < self.grace));
        if pods.len() != before {
            drop(pods);
            self.changed();
        }
    }
}

/// Where and how to reach the API.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub endpoint: String,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub node_name: String,
}

// The parts of the API's objects weir reads (core/v1 Pod, PodList, WatchEvent, Status).
#[derive(Deserialize)]
struct PodList {
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    #[serde(default)]
    resource_version: String,
}

#[derive(Deserialize)]
struct Pod {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ObjectMeta {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    resource_version: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize)]
struct OwnerReference {
    kind: String,
    name: String,
    #[serde(default)]
    controller: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    containers: Vec<Container>,
    #[serde(default)]
    init_containers: Vec<Container>,
}

#[derive(Deserialize)]
struct Container {
    name: String,
    #[serde(default)]
    image: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default, rename = "podIP")]
    pod_ip: Option<String>,
}

#[derive(Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    object: serde_json::Value,
}

impl Pod {
    fn into_meta(self) -> (String, PodMeta) {
        let owner = self.metadata.owner_references.iter().find(|o| o.controller);
        let owner = owner.map(|o| (o.kind.clone(), o.name.clone()));
        let images = self.spec.containers.iter().chain(&self.spec.init_containers);
        let meta = PodMeta {
            labels: self.metadata.labels,
            annotations: self.metadata.annotations,
            node_name: self.spec.node_name,
            pod_ip: self.status.pod_ip,
            images: images.map(|c| (c.name.clone(), c.image.clone())).collect(),
            owner,
        };
        (self.metadata.uid, meta)
    }
}

/// Why a list or a watch ended.
#[derive(Debug)]
enum WatchEnd {
    /// The version is too old: list again.
    Gone,
    /// The server ended the watch (its `timeoutSeconds`): resume at once.
    Ended,
    /// Anything else: wait, then resume (or list, without a version).
    Failed(String),
    Stopped,
}

/// The task that keeps `cache` up to date until `shutdown`.
pub struct Watcher {
    client: reqwest::Client,
    settings: ApiSettings,
    cache: Arc<PodCache>,
    shutdown: ShutdownSignal,
    component: String,
}

impl Watcher {
    pub fn new(
        settings: ApiSettings,
        cache: Arc<PodCache>,
        shutdown: ShutdownSignal,
        component: String,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10));
        if let Some(ca) = &settings.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("cannot read {}: {e}", ca.display()))?;
            for c in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: {e}", ca.display()))?
            {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client, settings, cache, shutdown, component })
    }

    /// Lists, then watches, for as long as weir runs; never returns an error (the log path
    /// goes on without metadata while the API cannot be reached).
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(500);
        let mut version: Option<String> = None;
        loop {
            let end = match version.clone() {
                None => match self.list().await {
                    Ok(v) => {
                        version = Some(v);
                        backoff = Duration::from_millis(500);
                        continue;
                    }
                    Err(e) => e,
                },
                Some(v) => {
                    let started = Instant::now();
                    match self.watch(v, &mut version).await {
                        // A watch ended at once is not resumed at once (a loop otherwise).
                        WatchEnd::Ended if started.elapsed() < Duration::from_secs(1) => {
                            WatchEnd::Failed("the watch ended at once".into())
                        }
                        end => end,
                    }
                }
            };
            match end {
                WatchEnd::Stopped => return,
                WatchEnd::Ended => continue,
                WatchEnd::Gone => {
                    tracing::info!(component = %self.component, "pod watch expired (410 Gone); listing pods again");
                    version = None;
                    continue;
                }
                WatchEnd::Failed(why) => {
                    tracing::warn!(component = %self.component, error = %why, retry_in = ?backoff,
                        "cannot read pods from the Kubernetes API; logs go on without their metadata");
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    fn request(&self, query: &str) -> Result<reqwest::RequestBuilder, WatchEnd> {
        let selector = format!("spec.nodeName={}", self.settings.node_name);
        let url = format!(
            "{}/api/v1/pods?fieldSelector={}{query}",
            self.settings.endpoint.trim_end_matches('/'),
            url_escape(&selector)
        );
        let mut req = self.client.get(url);
        if let Some(path) = &self.settings.token_file {
            let token = std::fs::read_to_string(path)
                .map_err(|e| WatchEnd::Failed(format!("cannot read {}: {e}", path.display())))?;
            req = req.bearer_auth(token.trim());
        }
        Ok(req)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, WatchEnd> {
        let sent = tokio::select! {
            _ = self.shutdown.cancelled() => return Err(WatchEnd::Stopped),
            r = req.send() => r,
        };
        let resp = sent.map_err(|e| {
            WatchEnd::Failed(crate::redact::credentials(&e.to_string()).into_owned())
        })?;
        match resp.status().as_u16() {
            200 => Ok(resp),
            410 => Err(WatchEnd::Gone),
            s => Err(WatchEnd::Failed(format!("the API answered {s}"))),
        }
    }

    /// Lists the node's pods into the cache; returns the list's version.
    async fn list(&self) -> Result<String, WatchEnd> {
        let req = self.request("")?.timeout(Duration::from_secs(60));
        let mut resp = self.send(req).await?;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| WatchEnd::Failed(e.to_string()))? {
            if body.len() + chunk.len() > MAX_LIST_BYTES {
                return Err(WatchEnd::Failed(format!("pod list over {MAX_LIST_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let list: PodList = serde_json::from_slice(&body)
            .map_err(|e| WatchEnd::Failed(format!("not a PodList: {e}")))?;
        let now = Instant::now();
        self.cache.replace(list.items.into_iter().map(Pod::into_meta).collect(), now);
        self.cache.expire(now);
        tracing::info!(component = %self.component, pods = self.cache.pods.lock().map(|p| p.len()).unwrap_or(0),
            "listed this node's pods");
        Ok(list.metadata.resource_version)
    }

    /// Watches from `from`, moving `version` on with every event, until the watch ends.
    async fn watch(&self, from: String, version: &mut Option<String>) -> WatchEnd {
        let query = format!(
            "&watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={}",
            url_escape(&from)
        );
        let req = match self.request(&query) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut resp = match self.send(req).await {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = tokio::select! {
                _ = self.shutdown.cancelled() => return WatchEnd::Stopped,
                c = tokio::time::timeout(WATCH_IDLE, resp.chunk()) => c,
            };
            let chunk = match chunk {
                Err(_) => return WatchEnd::Failed("the watch sent nothing for 330 s".into()),
                Ok(Err(e)) => return WatchEnd::Failed(e.to_string()),
                // The server ended the watch (its timeout): resume from the last version.
                Ok(Ok(None)) => return WatchEnd::Ended,
                Ok(Ok(Some(c))) => c,
            };
            buf.extend_from_slice(&chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                if let Err(end) = self.apply(&line, version) {
                    return end;
                }
            }
            if buf.len() > MAX_EVENT_BYTES {
                return WatchEnd::Failed(format!("a watch event over {MAX_EVENT_BYTES} bytes"));
            }
        }
    }

    /// Applies one watch event line to the cache.
    fn apply(&self, line: &[u8], version: &mut Option<String>) -> Result<(), WatchEnd> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let event: WatchEvent = serde_json::from_slice(line)
            .map_err(|e| WatchEnd::Failed(format!("not a watch event: {e}")))?;
        let now = Instant::now();
        match event.kind.as_str() {
            "ERROR" => {
                let code = event.object.get("code").and_then(serde_json::Value::as_u64);
                return Err(if code == Some(410) {
                    WatchEnd::Gone
                } else {
                    WatchEnd::Failed(format!("watch error: {}", event.object))
                });
            }
            "ADDED" | "MODIFIED" | "DELETED" => {
                let pod: Pod = serde_json::from_value(event.object)
                    .map_err(|e| WatchEnd::Failed(format!("not a pod: {e}")))?;
                let rv = pod.metadata.resource_version.clone();
                let (uid, meta) = pod.into_meta();
                if event.kind == "DELETED" {
                    self.cache.delete(&uid, now);
                } else {
                    self.cache.upsert(uid, meta);
                }
                *version = Some(rv);
            }
            "BOOKMARK" => {
                let rv = event.object.pointer("/metadata/resourceVersion").and_then(|v| v.as_str());
                if let Some(rv) = rv {
                    *version = Some(rv.to_string());
                }
            }
            _ => {}
        }
        self.cache.expire(now);
        Ok(())
    }
}

/// Percent-encodes a query value.
fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The fields of one container's events, with its pod's metadata once the cache has it.
pub struct Enricher {
    cache: Arc<PodCache>,
    uid: String,
    container: String,
    /// The fields from the path alone.
    base: ObjectMap,
    annotations: bool,
    seen: u64,
    meta: Option<Arc<PodMeta>>,
    fields: Option<Arc<SharedFields>>,
}

impl Enricher {
    pub fn new(
        cache: Arc<PodCache>,
        uid: &str,
        container: &str,
        base: ObjectMap,
        annotations: bool,
    ) -> Self {
        let (uid, container) = (uid.to_string(), container.to_string());
        Self { cache, uid, container, base, annotations, seen: u64::MAX, meta: None, fields: None }
    }

    /// The fields to use now (`None`: the path's, the pod is not known), and whether the pod
    /// asked not to be read (`weir.io/exclude: "true"`). A pod that left the cache keeps
    /// the last fields it had.
    pub fn current(&mut self) -> (Option<&Arc<SharedFields>>, bool) {
        let generation = self.cache.generation();
        if generation != self.seen {
            self.seen = generation;
            if let Some(meta) = self.cache.get(&self.uid)
                && self.meta.as_ref().is_none_or(|m| !Arc::ptr_eq(m, &meta))
            {
                self.fields = Some(SharedFields::new(self.enriched(&meta)));
                self.meta = Some(meta);
            }
        }
        (self.fields.as_ref(), self.meta.as_ref().is_some_and(|m| m.excluded()))
    }

    /// The path's fields with `kubernetes.*` from the pod's metadata. Keys of labels and
    /// annotations have their dots made `_` (as Filebeat does), so that Elasticsearch does
    /// not read `app.kubernetes.io/name` as objects that clash with a label `app`.
    fn enriched(&self, meta: &PodMeta) -> ObjectMap {
        let mut map = self.base.clone();
        let Some(Value::Object(k8s)) = map.get_mut("kubernetes") else { return map };
        let dedot = |m: &BTreeMap<String, String>| {
            let entries = m.iter().map(|(k, v)| (KeyString::from(k.replace('.', "_")), text(v)));
            Value::Object(entries.collect())
        };
        if !meta.labels.is_empty() {
            k8s.insert("labels".into(), dedot(&meta.labels));
        }
        if self.annotations && !meta.annotations.is_empty() {
            k8s.insert("annotations".into(), dedot(&meta.annotations));
        }
        if let Some(node) = &meta.node_name {
            k8s.insert("node".into(), object([("name", text(node))]));
        }
        if let (Some(Value::Object(pod)), Some(ip)) = (k8s.get_mut("pod"), &meta.pod_ip) {
            pod.insert("ip".into(), text(ip));
        }
        if let (Some(image), Some(Value::Object(c))) =
            (meta.images.get(&self.container), k8s.get_mut("container"))
        {
            c.insert("image".into(), text(image));
        }
        if let Some((kind, name)) = &meta.owner {
            k8s.insert("owner".into(), object([("kind", text(kind)), ("name", text(name))]));
            let hash = meta.labels.get("pod-template-hash").map(String::as_str);
            for (field, name) in workloads(kind, name, hash) {
                k8s.insert(field.into(), object([("name", text(name))]));
            }
        }
        map
    }
}

/// The workloads a pod's controller stands for, as Filebeat's `kubernetes.deployment.name`
/// and the OpenTelemetry Collector's `k8s.deployment.name` name them: a ReplicaSet
/// `<deployment>-<pod-template-hash>` is its Deployment's, a Job `<cronjob>-<minutes>` is
/// its CronJob's (both names are made so by their controllers).
fn workloads<'a>(kind: &str, name: &'a str, hash: Option<&str>) -> Vec<(&'static str, &'a str)> {
    let field = match kind {
        "ReplicaSet" => "replicaset",
        "StatefulSet" => "statefulset",
        "DaemonSet" => "daemonset",
        "Job" => "job",
        _ => return Vec::new(),
    };
    let mut found = vec![(field, name)];
    let trimmed =
        name.rsplit_once('-').filter(|(prefix, suffix)| !prefix.is_empty() && !suffix.is_empty());
    match (kind, trimmed) {
        // The label says which suffix is the hash; without it, an alphanumeric last part.
        ("ReplicaSet", Some((deployment, suffix)))
            if hash.map_or(suffix.bytes().all(|b| b.is_ascii_alphanumeric()), |h| h == suffix) =>
        {
            found.push(("deployment", deployment));
        }
        ("Job", Some((cronjob, suffix))) if suffix.bytes().all(|b| b.is_ascii_digit()) => {
            found.push(("cronjob", cronjob));
        }
        _ => {}
    }
    found
}

/// Feeds watch event lines to a watcher's cache (the `kubernetes_watch` fuzz target); returns
/// the version reached and the pods known, or where the watch would have ended.
pub fn apply_watch_lines(lines: &[&[u8]]) -> Result<(Option<String>, usize), String> {
    let settings = ApiSettings {
        endpoint: "http://127.0.0.1:1".into(),
        token_file: None,
        ca_file: None,
        node_name: "node".into(),
    };
    let cache = Arc::new(PodCache::new(Duration::from_secs(60), 100));
    let w = Watcher::new(settings, Arc::clone(&cache), ShutdownSignal::new(), "fuzz".into())?;
    let mut version = None;
    for line in lines {
        w.apply(line, &mut version).map_err(|e| format!("{e:?}"))?;
    }
    let known = cache.pods.lock().map(|p| p.len()).unwrap_or(0);
    Ok((version, known))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, rv: &str, labels: &str) -> String {
        format!(
            r#"{{"metadata":{{"uid":"{uid}","resourceVersion":"{rv}","labels":{labels},"annotations":{{"weir.io/exclude":"false"}},"ownerReferences":[{{"kind":"StatefulSet","name":"s","controller":true}},{{"kind":"Other","name":"o"}}]}},"spec":{{"nodeName":"node","containers":[{{"name":"c","image":"i:1"}}]}},"status":{{"podIP":"10.0.0.9"}}}}"#
        )
    }

    #[test]
    fn a_replicaset_is_its_deployments_and_a_job_its_cronjobs() {
        let rs = workloads("ReplicaSet", "vllm-llama-7d9f8c6b5", Some("7d9f8c6b5"));
        assert_eq!(rs, [("replicaset", "vllm-llama-7d9f8c6b5"), ("deployment", "vllm-llama")]);
        // Without the label: the alphanumeric last part is taken for the hash.
        let rs = workloads("ReplicaSet", "triton-5f4b", None);
        assert_eq!(rs, [("replicaset", "triton-5f4b"), ("deployment", "triton")]);
        // A ReplicaSet not made by a Deployment (its name does not end in the hash).
        assert_eq!(workloads("ReplicaSet", "mine", Some("abc")), [("replicaset", "mine")]);
        assert_eq!(workloads("ReplicaSet", "a-b", Some("c")), [("replicaset", "a-b")]);
        let job = workloads("Job", "retrain-29123400", None);
        assert_eq!(job, [("job", "retrain-29123400"), ("cronjob", "retrain")]);
        assert_eq!(workloads("Job", "backfill-once", None), [("job", "backfill-once")]);
        assert_eq!(workloads("StatefulSet", "s", None), [("statefulset", "s")]);
        assert_eq!(workloads("DaemonSet", "weir", None), [("daemonset", "weir")]);
        assert!(workloads("InferenceService", "x", None).is_empty());
        assert!(workloads("ReplicaSet", "-", None) == [("replicaset", "-")]);
    }

    #[test]
    fn watch_events_move_the_version_and_the_cache() {
        let added = format!(r#"{{"type":"ADDED","object":{}}}"#, pod("u1", "5", "{}"));
        let modified =
            format!(r#"{{"type":"MODIFIED","object":{}}}"#, pod("u1", "6", r#"{"a":"b"}"#));
        let bookmark =
            r#"{"type":"BOOKMARK","object":{"kind":"Pod","metadata":{"resourceVersion":"9"}}}"#;
        let lines: Vec<&[u8]> =
            vec![added.as_bytes(), b"\n", modified.as_bytes(), bookmark.as_bytes()];
        assert_eq!(apply_watch_lines(&lines).unwrap(), (Some("9".into()), 1));
        let gone = br#"{"type":"ERROR","object":{"kind":"Status","code":410,"reason":"Expired"}}"#;
        assert_eq!(apply_watch_lines(&[gone.as_slice()]).unwrap_err(), "Gone");
        assert!(
            apply_watch_lines(&[b"{not json".as_slice()])
                .unwrap_err()
                .contains("not a watch event")
        );
    }

    #[test]
    fn a_pod_is_kept_for_the_grace_period_after_its_deletion() {
        let cache = PodCache::new(Duration::from_secs(60), 10);
        let meta: Pod =
            serde_json::from_str(&pod("u1", "1", r#"{"weir.io/exclude":"true"}"#)).unwrap();
        let (uid, meta) = meta.into_meta();
        assert_eq!(meta.owner, Some(("StatefulSet".into(), "s".into())));
        assert!(meta.excluded(), "by label, though the annotation says false");
        cache.upsert(uid, meta);
        let t0 = Instant::now();
        cache.replace(Vec::new(), t0);
        cache.expire(t0 + Duration::from_secs(59));
        assert!(cache.get("u1").is_some());
        cache.expire(t0 + Duration::from_secs(61));
        assert!(cache.get("u1").is_none());
    }
}
