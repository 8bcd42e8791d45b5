//! A stand-in of the Kubernetes API for the pods of one node, written from the API's
//! published contract (<https://kubernetes.io/docs/reference/using-api/api-concepts/>):
//!
//! - `GET /api/v1/pods?fieldSelector=spec.nodeName=<node>`: a `PodList` whose
//!   `metadata.resourceVersion` is the version the list was read at;
//! - the same with `watch=1&resourceVersion=<v>`: a chunked stream of watch events, one JSON
//!   object a line (`{"type": "ADDED" | "MODIFIED" | "DELETED", "object": <Pod>}`), every
//!   change after `<v>` in order; with `allowWatchBookmarks=true`, `BOOKMARK` events that
//!   carry only a newer `metadata.resourceVersion`; ended by the server after
//!   `timeoutSeconds` (here, at most `watch_for`);
//! - a version older than the server keeps (after `compact`): `410 Gone`, as an `ERROR`
//!   watch event holding a `Status` with `code: 410` ("Efficient detection of changes");
//! - `Authorization: Bearer <token>` checked on every request; a token that is not the
//!   current one (it expired) gets `401` with a `Status` body;
//! - `down`: every request gets `503` (an API server that cannot serve).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Default)]
pub struct State {
    /// Every change, in order: (resource version, type, pod).
    pub changes: Vec<(u64, &'static str, Value)>,
    pub version: u64,
    /// Versions before this are gone (410).
    pub oldest: u64,
    pub token: String,
    pub down: bool,
    pub lists: usize,
    pub watches: usize,
    pub refused_tokens: usize,
    /// How long a watch is served before the server ends it.
    pub watch_for: Duration,
}

pub struct KubeApi {
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

/// A pod on `node` as the API returns it (the fields weir reads, and a few more).
pub fn pod(name: &str, uid: &str, node: &str, labels: Value) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": name, "namespace": "serving", "uid": uid, "labels": labels,
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{name}-rs"), "uid": "x", "controller": true}]
        },
        "spec": {"nodeName": node, "containers": [{"name": "server", "image": "nvcr.io/nvidia/tritonserver:24.05-py3"}]},
        "status": {"phase": "Running", "podIP": "10.1.2.3"}
    })
}

impl KubeApi {
    pub fn start(token: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            token: token.into(),
            version: 100,
            watch_for: Duration::from_secs(30),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (Arc::clone(&state), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let (st, sp) = (Arc::clone(&st), Arc::clone(&sp));
                        std::thread::spawn(move || serve(s, &st, &sp));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self { addr, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Records a change of a pod (`ADDED`, `MODIFIED`, `DELETED`) at the next version.
    pub fn change(&self, kind: &'static str, mut pod: Value) {
        let mut s = self.state();
        s.version += 1;
        let v = s.version;
        pod["metadata"]["resourceVersion"] = json!(v.to_string());
        s.changes.push((v, kind, pod));
    }

    /// Forgets every version before a new one: watches from them get 410 Gone; a list
    /// gives the new one.
    pub fn compact(&self) {
        let mut s = self.state();
        s.version += 1;
        s.oldest = s.version;
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The pods that exist at `version`: the last change of each, less the deleted.
fn pods_at(changes: &[(u64, &'static str, Value)], node: &str) -> Vec<Value> {
    let mut by_uid: Vec<(String, Value)> = Vec::new();
    for (_, kind, pod) in changes {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        by_uid.retain(|(u, _)| *u != uid);
        if *kind != "DELETED" && pod["spec"]["nodeName"] == node {
            by_uid.push((uid, pod.clone()));
        }
    }
    by_uid.into_iter().map(|(_, p)| p).collect()
}

fn query<'a>(target: &'a str, key: &str) -> Option<&'a str> {
    let q = target.split_once('?')?.1;
    q.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code})
}

fn respond(s: &mut TcpStream, code: u16, body: &Value) {
    let body = body.to_string();
    let _ = write!(
        s,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn chunk(s: &mut TcpStream, line: &Value) -> std::io::Result<()> {
    let text = format!("{line}\n");
    write!(s, "{:x}\r\n{text}\r\n", text.len())?;
    s.flush()
}

fn serve(mut s: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    s.set_nonblocking(false).unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut head = String::new();
    let mut auth = String::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap_or(0) == 0 {
            return;
        }
        if l == "\r\n" {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("authorization: bearer ") {
            auth = l[l.len() - v.len()..].trim().to_string();
        }
        if head.is_empty() {
            head = l;
        }
    }
    let target = head.split(' ').nth(1).unwrap_or_default().to_string();
    let node = query(&target, "fieldSelector")
        .and_then(|f| f.strip_prefix("spec.nodeName%3D"))
        .unwrap_or_default()
        .to_string();
    {
        let mut st = state.lock().unwrap();
        if st.down {
            return respond(&mut s, 503, &status(503, "ServiceUnavailable", "down"));
        }
        if auth != st.token {
            st.refused_tokens += 1;
            return respond(&mut s, 401, &status(401, "Unauthorized", "Unauthorized"));
        }
        if !target.starts_with("/api/v1/pods?") || node.is_empty() {
            return respond(&mut s, 400, &status(400, "BadRequest", "expected a node's pods"));
        }
        if query(&target, "watch") != Some("1") {
            st.lists += 1;
            let items = pods_at(&st.changes, &node);
            let list = json!({"kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": st.version.to_string()}, "items": items});
            return respond(&mut s, 200, &list);
        }
        st.watches += 1;
    }
    let from: u64 = query(&target, "resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    let bookmarks = query(&target, "allowWatchBookmarks") == Some("true");
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let started = Instant::now();
    let mut sent = from;
    let mut last_bookmark = Instant::now();
    loop {
        let (lines, end) = {
            let st = state.lock().unwrap();
            if sent < st.oldest {
                let gone = status(
                    410,
                    "Expired",
                    &format!("too old resource version: {sent} ({})", st.oldest),
                );
                (vec![json!({"type": "ERROR", "object": gone})], true)
            } else if st.down {
                (Vec::new(), true)
            } else {
                let mut lines = Vec::new();
                let from = sent;
                for (v, kind, pod) in st.changes.iter().filter(|(v, _, _)| *v > from) {
                    if pod["spec"]["nodeName"] == node.as_str() {
                        lines.push(json!({"type": kind, "object": pod}));
                    }
                    sent = *v;
                }
                if bookmarks && last_bookmark.elapsed() > Duration::from_millis(200) {
                    last_bookmark = Instant::now();
                    sent = sent.max(st.version);
                    lines.push(
                        json!({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                        "metadata": {"resourceVersion": sent.to_string()}}}),
                    );
                }
                (lines, started.elapsed() >= st.watch_for)
            }
        };
        for l in &lines {
            if chunk(&mut s, l).is_err() {
                return;
            }
        }
        if end || stop.load(Ordering::SeqCst) {
            let _ = write!(s, "0\r\n\r\n");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
