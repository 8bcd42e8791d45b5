//! `weir top` in a real terminal: tmux runs it against a running weir, and the test reads the
//! screen (`capture-pane`) and types keys (`send-keys`), as a user over SSH would.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{Weir, require_command, wait_for, weir_bin};

/// Generous: CI is a loaded 2-core machine running the whole suite at once.
const WAIT: Duration = Duration::from_secs(120);

/// Two sources of very different rates into one sink.
const PIPELINE: &str = r#"
[sources.a_slow]
type = "demo"
interval_ms = 50

[sources.z_fast]
type = "demo"
interval_ms = 1

[sinks.out]
type = "blackhole"
inputs = ["a_slow", "z_fast"]
"#;

/// A tmux server of the test's own (its own socket), killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux").arg("-L").arg(&self.socket).args(args).output().expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// The screen's table rows by component id: (row index, events in/s, events out/s).
fn rows(screen: &str) -> Vec<(String, f64, f64)> {
    let number = |t: &str| {
        let (n, scale) = match t.strip_suffix('k') {
            Some(n) => (n, 1e3),
            None => (t.strip_suffix('M').unwrap_or(t), if t.ends_with('M') { 1e6 } else { 1.0 }),
        };
        n.parse::<f64>().map(|v| v * scale).unwrap_or(0.0)
    };
    (screen.lines())
        .filter_map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let id = *t.first()?;
            ["a_slow", "z_fast", "out"].contains(&id).then(|| {
                (id.to_string(), number(t.get(3).unwrap_or(&"")), number(t.get(4).unwrap_or(&"")))
            })
        })
        .collect()
}

fn position(rows: &[(String, f64, f64)], id: &str) -> Option<usize> {
    rows.iter().position(|r| r.0 == id)
}

#[test]
fn top_shows_live_rates_sorts_and_restores_the_terminal() {
    require_command("tmux");
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), PIPELINE);
    let tmux = Tmux { socket: format!("weir-top-test-{}", std::process::id()) };
    let started = tmux.cmd(&["new-session", "-d", "-s", "top", "-x", "160", "-y", "40", "sh"]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let command =
        format!("{} top --url http://{}; echo top-exited-$?", weir_bin().display(), weir.api);
    tmux.keys(&[&command, "Enter"]);

    // Every component, with events flowing out of both sources, sorted by id.
    let live = wait_for(WAIT, || {
        let r = rows(&tmux.screen());
        r.len() == 3 && r.iter().filter(|x| x.0 != "out").all(|x| x.2 > 0.0)
    });
    assert!(live, "screen:\n{}\nweir:\n{}", tmux.screen(), weir.stderr());
    let r = rows(&tmux.screen());
    assert!(position(&r, "a_slow") < position(&r, "z_fast"), "{r:?}");
    let alternate = |on: &str| {
        let out = tmux.cmd(&["display-message", "-p", "-t", "top", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == on
    };
    assert!(alternate("1"), "top does not use the alternate screen");

    // `5`: by events out per second, largest first.
    tmux.keys(&["5"]);
    let sorted = wait_for(WAIT, || {
        let screen = tmux.screen();
        let r = rows(&screen);
        screen.contains("EVENTS OUT/s▼")
            && position(&r, "z_fast").is_some()
            && position(&r, "z_fast") < position(&r, "a_slow")
    });
    assert!(sorted, "screen:\n{}", tmux.screen());

    // A narrow terminal keeps the id and the rates.
    tmux.cmd(&["resize-window", "-t", "top", "-x", "44", "-y", "20"]);
    let narrow = wait_for(WAIT, || {
        let screen = tmux.screen();
        screen.contains("EVENTS OUT/s") && !screen.contains("BYTES") && rows(&screen).len() == 3
    });
    assert!(narrow, "screen:\n{}", tmux.screen());

    // `q` quits and gives the shell its screen back.
    tmux.keys(&["q"]);
    let quit = wait_for(WAIT, || tmux.screen().contains("top-exited-0") && alternate("0"));
    assert!(quit, "screen:\n{}", tmux.screen());
    assert!(weir.stop().success());
}

#[test]
fn top_says_when_weir_cannot_be_reached() {
    let port = crate::support::free_port();
    let out = Command::new(weir_bin())
        .args(["top", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach weir's API") && err.contains("is weir running"), "{err}");
}
