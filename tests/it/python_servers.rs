//! Real Python servers write the logs: a FastAPI app under uvicorn, a Flask app under
//! gunicorn and under werkzeug's development server (`tests/python/apps/`), each with its
//! default logging, get a success, a 4xx, a 404 and a request that raises; what they wrote
//! goes through `parse_model_log` (`auto`), and every request line and the exception must be
//! read with the fields the request had.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::model_lines::parse_model_lines_multiline;
use crate::support::{Peer, free_port, http_get, http_post_json, test_python, wait_for};

fn apps() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/apps")
}

/// Sends the four requests every server gets (waiting for the server first); returns the
/// status of the invalid one (FastAPI answers 422, Flask 400).
fn exercise(port: u16) -> i64 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let up =
        wait_for(Duration::from_secs(60), || matches!(http_get(addr, "/health"), Ok((200, _))));
    assert!(up, "the server did not answer on {addr}");
    let ok = http_post_json(addr, "/predict", r#"{"tenure_months": 3, "monthly_charges": 20.5}"#);
    assert_eq!(ok.unwrap().0, 200);
    let bad = http_post_json(addr, "/predict", r#"{"monthly_charges": -1}"#).unwrap().0;
    assert!((400..500).contains(&bad), "{bad}");
    assert_eq!(http_get(addr, "/missing").unwrap().0, 404);
    let failed =
        http_post_json(addr, "/predict?fail=1", r#"{"tenure_months": 3, "monthly_charges": 1}"#);
    assert_eq!(failed.unwrap().0, 500);
    i64::from(bad)
}

/// Stops the server and returns what it wrote, once the last request is in it.
fn written(peer: Peer, last: &str) -> String {
    let done = wait_for(Duration::from_secs(60), || peer.output().contains(last));
    let text = peer.output();
    drop(peer);
    assert!(done, "the server's log lacks {last:?}:\n{text}");
    text
}

fn find(events: &[Value], what: impl Fn(&Value) -> bool) -> &Value {
    events.iter().find(|e| what(e)).unwrap_or_else(|| {
        panic!("no such event in {}", serde_json::to_string_pretty(events).unwrap())
    })
}

/// The access event of `method path` with `status`, checked field by field.
fn request<'a>(events: &'a [Value], method: &str, path: &str, status: i64) -> &'a Value {
    let e = find(events, |e| {
        e["http"]["request"]["method"] == method
            && e["url"]["path"] == path
            && e["http"]["response"]["status_code"] == status
    });
    assert_eq!(e["client"]["ip"], "127.0.0.1", "{e}");
    assert_eq!(e["event"]["action"], "request", "{e}");
    let outcome = if status < 400 { "success" } else { "failure" };
    assert_eq!(e["event"]["outcome"], outcome, "{e}");
    e
}

fn no_failures(events: &[Value], text: &str) {
    for e in events {
        assert!(
            e["event"]["dataset"].is_string(),
            "a line of the server's log was not read: {e}\nlog:\n{text}"
        );
    }
}

#[test]
fn fastapi_under_uvicorn() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = Peer::start(
        dir.path(),
        "uvicorn",
        Command::new(test_python())
            .args(["-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .current_dir(apps())
            .env("PYTHONUNBUFFERED", "1"),
    );
    let bad = exercise(port);
    let text = written(peer, "/predict?fail=1");
    let events = parse_model_lines_multiline(dir.path(), &text, r"^[A-Z]+: ");
    no_failures(&events, &text);
    let e = request(&events, "POST", "/predict", 200);
    assert_eq!(e["event"]["dataset"], "uvicorn");
    request(&events, "POST", "/predict", bad);
    request(&events, "GET", "/missing", 404);
    request(&events, "POST", "/predict", 500);
    let crash = find(&events, |e| e["error"]["type"].is_string());
    assert_eq!(crash["log"]["level"], "ERROR");
    assert_eq!(crash["error"]["type"], "ValueError", "{crash}");
    assert!(crash["error"]["stack_trace"].as_str().unwrap().contains("model returned NaN"));
    find(&events, |e| e["message"].as_str().is_some_and(|m| m.starts_with("Uvicorn running on")));
}

#[test]
fn flask_under_gunicorn() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = Peer::start(
        dir.path(),
        "gunicorn",
        Command::new(test_python())
            .args(["-m", "gunicorn", "--access-logfile", "-", "--workers", "1", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("flask_app:app")
            .current_dir(apps())
            .env("PYTHONUNBUFFERED", "1"),
    );
    let bad = exercise(port);
    let text = written(peer, "/predict?fail=1");
    // gunicorn's error log lines start with `[`, its access lines with the client address.
    let events = parse_model_lines_multiline(dir.path(), &text, r"^(\[\d{4}-|\d+\.\d+\.\d+\.\d+ )");
    no_failures(&events, &text);
    let e = request(&events, "POST", "/predict", 200);
    assert_eq!(e["event"]["dataset"], "gunicorn");
    assert!(e["user_agent"]["original"].is_null() || e["user_agent"]["original"].is_string());
    request(&events, "POST", "/predict", bad);
    request(&events, "GET", "/missing", 404);
    request(&events, "POST", "/predict", 500);
    let crash = find(&events, |e| e["error"]["type"].is_string());
    assert_eq!(crash["error"]["type"], "ValueError", "{crash}");
    find(&events, |e| e["message"].as_str().is_some_and(|m| m.starts_with("Starting gunicorn")));
}

#[test]
fn flask_development_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let peer = Peer::start(
        dir.path(),
        "flask",
        Command::new(test_python())
            .arg("flask_app.py")
            .arg(port.to_string())
            .current_dir(apps())
            .env("PYTHONUNBUFFERED", "1"),
    );
    let bad = exercise(port);
    let text = written(peer, "/predict?fail=1");
    // Flask's app log starts `[date]`, werkzeug's access lines with the address, its banner
    // lines with ` * ` (read as part of the event before them, or alone).
    let events =
        parse_model_lines_multiline(dir.path(), &text, r"^(\[\d{4}-|\d+\.\d+\.\d+\.\d+ - - )");
    let e = request(&events, "POST", "/predict", 200);
    assert_eq!(e["event"]["dataset"], "flask");
    request(&events, "POST", "/predict", bad);
    request(&events, "GET", "/missing", 404);
    request(&events, "POST", "/predict", 500);
    let crash = find(&events, |e| e["error"]["type"].is_string());
    assert_eq!(crash["log"]["level"], "ERROR");
    assert_eq!(crash["log"]["origin"]["module"], "app", "{crash}");
    assert_eq!(crash["error"]["type"], "ValueError", "{crash}");
}
