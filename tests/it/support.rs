//! What every integration test needs: a `weir` process started on a pipeline, its API, and
//! waiting for conditions (never for a fixed time).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `weir` binary built for these tests, or the one named by `WEIR_BIN` (for worktrees
/// that share a target directory, where the last build of any of them owns `target/debug/weir`).
pub fn weir_bin() -> PathBuf {
    std::env::var_os("WEIR_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_weir")), PathBuf::from)
}

/// The test data kept in the repository (`tests/data`, see its README).
pub fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A free loopback port (bound then released; the race with other processes is accepted).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `check` every 20 ms until it holds or `timeout` passes. Returns whether it held.
pub fn wait_for(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Runs `weir validate` on files; (exit code, standard error then standard output: errors
/// and warnings, then "Configuration OK").
pub fn validate(files: &[&Path]) -> (i32, String) {
    let out = Command::new(weir_bin()).arg("validate").args(files).output().expect("run weir");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

/// A running `weir run` process with its own directory and API port.
pub struct Weir {
    pub child: Child,
    pub api: SocketAddr,
    pub dir: PathBuf,
    pub config: PathBuf,
}

impl Weir {
    /// Starts weir on `pipeline` (TOML text). `{{dir}}` in the text becomes `dir`, and an
    /// `[api]` table on a free port and a `data_dir` inside `dir` are added.
    /// Standard output goes to `dir/stdout`, standard error to `dir/stderr`.
    pub fn start(dir: &Path, pipeline: &str) -> Self {
        Self::start_with(
            dir,
            pipeline,
            Stdio::from(std::fs::File::create(dir.join("stdout")).expect("stdout file")),
        )
    }

    /// As [`Weir::start`], with these environment variables set for weir.
    pub fn start_env(dir: &Path, pipeline: &str, env: &[(&str, &str)]) -> Self {
        let stdout = Stdio::from(std::fs::File::create(dir.join("stdout")).expect("stdout file"));
        Self::spawn(dir, pipeline, stdout, env)
    }

    /// As [`Weir::start`], with standard output given by the caller (a pipe, say).
    pub fn start_with(dir: &Path, pipeline: &str, stdout: Stdio) -> Self {
        Self::spawn(dir, pipeline, stdout, &[])
    }

    fn spawn(dir: &Path, pipeline: &str, stdout: Stdio, env: &[(&str, &str)]) -> Self {
        let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
        // Top-level keys of `pipeline` must come before any table: the API table goes last.
        let text = format!(
            "data_dir = \"{}\"\n{}\n\n[api]\naddress = \"{api}\"\n",
            dir.join("data").display(),
            pipeline.replace("{{dir}}", &dir.display().to_string())
        );
        let config = dir.join("pipeline.toml");
        std::fs::write(&config, text).expect("write pipeline");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("stderr"))
            .expect("stderr file");
        let child = Command::new(weir_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("WEIR_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn weir");
        let weir = Self { child, api, dir: dir.to_path_buf(), config };
        weir.wait_healthy();
        weir
    }

    /// Waits until weir's pipeline has started (alive, and `/health` no longer "starting"; a
    /// 200 from `/health` for builds without `/health/live`). Not until it is ready: a test
    /// may start weir against a destination that is down on purpose.
    fn wait_healthy(&self) {
        // Wide: a debug build starting on a loaded machine (CI runs every test at once).
        let ok = wait_for(Duration::from_secs(120), || {
            let started = matches!(http_get(self.api, "/health/live"), Ok((200, _)))
                && self.health().1["status"] != "starting";
            started || matches!(http_get(self.api, "/health"), Ok((200, _)))
        });
        assert!(ok, "weir did not start; stderr:\n{}", self.stderr());
    }

    /// `/health`: (status, body as JSON; null when it is not JSON).
    pub fn health(&self) -> (u16, serde_json::Value) {
        match http_get(self.api, "/health") {
            Ok((status, body)) => (status, serde_json::from_str(&body).unwrap_or_default()),
            Err(_) => (0, serde_json::Value::Null),
        }
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http_get(self.api, "/metrics").map(|(_, b)| b).unwrap_or_default()
    }

    /// Sum of the samples of `name` whose labels include every `key="value"` in `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_sum(&self.metrics(), name, labels)
    }

    /// SIGTERM, then waits for exit.
    pub fn stop(mut self) -> ExitStatus {
        signal(self.child.id(), "TERM");
        self.wait(Duration::from_secs(60))
    }

    /// SIGKILL, then waits for exit.
    pub fn kill9(mut self) -> ExitStatus {
        let _ = self.child.kill();
        self.wait(Duration::from_secs(10))
    }

    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("weir did not exit within {timeout:?}; stderr:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the process in bytes (Linux `/proc`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal by name to a process.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
}

/// Sum of the samples of `name` in Prometheus text whose labels include all of `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = match series.find('{') {
                Some(i) => (&series[..i], &series[i..]),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            if !labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))) {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

/// The whole (newline-terminated) lines of a file, invalid UTF-8 replaced (empty when it does
/// not exist yet).
pub fn read_lines(path: &Path) -> Vec<String> {
    // A file being written may end in the middle of a line: only whole lines count.
    std::fs::read(path)
        .map(|b| {
            let whole = b.iter().rposition(|c| *c == b'\n').map_or(0, |i| i + 1);
            String::from_utf8_lossy(&b[..whole]).lines().map(str::to_string).collect()
        })
        .unwrap_or_default()
}

/// The whole lines of a JSON-lines file, each parsed (panics on a line that is not JSON).
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    read_lines(path).iter().map(|l| serde_json::from_str(l).expect("JSON lines")).collect()
}

/// The Python of the test environment (`.venv`, made by `scripts/test.sh`, with SciPy and
/// MLflow), or `WEIR_TEST_PYTHON`. Panics with the way to get it when it is missing: the tests
/// that need it compare against real reference implementations and cannot run without them.
pub fn test_python() -> PathBuf {
    let path = std::env::var_os("WEIR_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test.sh once (it creates .venv with scipy and mlflow)",
        path.display()
    );
    path
}

/// A command found on PATH, or a panic naming the script that installs it.
pub fn require_command(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: ./scripts/test.sh installs it"))
}

/// A child process killed when the test ends, its output in `dir/<name>.log`.
pub struct Peer {
    pub child: Child,
    pub log: PathBuf,
}

impl Peer {
    pub fn start(dir: &Path, name: &str, command: &mut Command) -> Self {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("peer log");
        let err = out.try_clone().expect("peer log");
        // Its own process group, so that the workers a peer forks (MLflow's server starts
        // several) go with it.
        let child = std::os::unix::process::CommandExt::process_group(
            command.stdin(Stdio::null()).stdout(Stdio::from(out)).stderr(Stdio::from(err)),
            0,
        )
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self { child, log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 POST of a JSON body on loopback: (status, body).
pub fn http_post_json(addr: SocketAddr, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, dechunk(&body)))
}

/// Undoes `Transfer-Encoding: chunked` when the body looks chunked.
pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else { return body.to_string() };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { return body.to_string() };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_string();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// Percent-encodes a query parameter value.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Creates a named pipe: a file sink writing to it blocks until the test reads it, which
/// fills weir's buffers the way a stalled destination would.
pub fn fifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().expect("mkfifo").success();
    assert!(ok, "mkfifo {}", path.display());
}
