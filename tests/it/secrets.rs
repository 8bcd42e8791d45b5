//! Secrets never leave weir: a pipeline whose sinks fail in every way a test can make them
//! (connection refused, 401, 500, documents rejected into the dead-letter file), with
//! passwords in the endpoint URLs, then `weir validate` of invalid configurations and `weir
//! setup` against the failing endpoints. No password appears in weir's standard output or
//! error, its dead-letter files or its `/metrics`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::es_server::{EsServer, EsState, Fault};
use crate::support::{Weir, free_port, read_lines, wait_for, weir_bin};

/// Wide: weir starts, fails at each sink and logs it within a second or two when the machine
/// is idle; a loaded CI machine can be many times slower.
const WAIT: Duration = Duration::from_secs(120);

const SECRETS: [&str; 7] = [
    "pw-refused-4c1f",
    "pw-unauthorized-8d2e",
    "pw-failing-3b7a",
    "pw-rejected-9e5c",
    "pw-loki-1a6d",
    "pw-noscheme-5f2b",
    "pw-alerts-7c3e",
];

/// `http://weir:SECRET@host:port` for the base URL `url` of a stand-in.
fn with_password(url: &str, secret: &str) -> String {
    url.replacen("http://", &format!("http://weir:{secret}@"), 1)
}

fn es_sink(id: &str, url: &str) -> String {
    format!(
        "[sinks.{id}]\ntype = \"elasticsearch\"\ninputs = [\"in\"]\nendpoints = [\"{url}\"]\n\
         index = \"weir\"\nbatch.timeout_secs = 0.2\nrequest.retry_initial_backoff_secs = 0.05\n\
         request.retry_max_duration_secs = 0.5\nrequest.timeout_secs = 2\n\n"
    )
}

fn all_files(dir: &Path) -> String {
    let mut text = String::new();
    for e in walk(dir) {
        text.push_str(&String::from_utf8_lossy(&std::fs::read(e).unwrap_or_default()));
    }
    text
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() { walk(&p) } else { vec![p] }
        })
        .collect()
}

#[test]
fn passwords_in_urls_appear_in_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let unauthorized = EsServer::start_with(EsState {
        credentials: Some("Basic bm9ib2R5Om5vdGhpbmc=".into()),
        ..EsState::default()
    });
    let failing =
        EsServer::start_with(EsState { always: Some(Fault::Status(500)), ..EsState::default() });
    let rejecting = EsServer::start_with(EsState {
        poison_field: Some("message".into()),
        ..EsState::default()
    });
    let refused = format!("http://weir:{}@127.0.0.1:{}", SECRETS[0], free_port());
    let pipeline = format!(
        "shutdown_timeout_secs = 2\n\n[sources.in]\ntype = \"demo\"\ninterval_ms = 5\n\n{}{}{}{}\
         [sinks.loki]\ntype = \"loki\"\ninputs = [\"in\"]\nendpoint = \"http://weir:{}@127.0.0.1:{}\"\n\
         labels.job = \"weir\"\n",
        es_sink("es_refused", &refused),
        es_sink("es_unauthorized", &with_password(&unauthorized.url(), SECRETS[1])),
        es_sink("es_failing", &with_password(&failing.url(), SECRETS[2])),
        es_sink("es_rejecting", &with_password(&rejecting.url(), SECRETS[3])),
        SECRETS[4],
        free_port(),
    );
    let weir = Weir::start(dir.path(), &pipeline);
    // Every failure has happened (and been logged) before the output is read.
    let failed = wait_for(WAIT, || {
        let err = weir.stderr();
        let complained = |id: &str| {
            err.lines().any(|l| (l.contains("ERROR") || l.contains("WARN")) && l.contains(id))
        };
        ["es_refused", "es_unauthorized", "es_failing", "loki"].into_iter().all(complained)
            && failing.state().bulk_requests >= 2
            && !walk(&dir.path().join("data/dead_letter")).is_empty()
    });
    let metrics = weir.metrics();
    weir.stop();

    // `weir setup` against the refused and the unauthorized endpoints.
    let setup = |url: &str| {
        let file = dir.path().join(format!("setup-{}.toml", free_port()));
        std::fs::write(&file, format!("[sources.in]\ntype = \"stdin\"\n\n{}", es_sink("es", url)))
            .unwrap();
        // Long enough to print its "waiting for" progress and then the error, both of which
        // name the endpoint; the default (180 s) would only make the test slow.
        let out = Command::new(weir_bin())
            .args(["setup", "--config"])
            .arg(&file)
            .env("WEIR_SETUP_WAIT_SECS", "4")
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    let setup_output = setup(&refused) + &setup(&with_password(&unauthorized.url(), SECRETS[1]));

    // `weir validate` of configurations that quote the endpoints they reject.
    let invalid = dir.path().join("invalid.toml");
    std::fs::write(
        &invalid,
        format!(
            "[sources.in]\ntype = \"stdin\"\n\n{}[sinks.alerts]\ntype = \"alertmanager\"\n\
             inputs = [\"in\"]\nendpoint = \"http://weir:{}@127.0.0.1:9093\"\n",
            es_sink("es", &format!("weir:{}@es:9200", SECRETS[5])),
            SECRETS[6],
        ),
    )
    .unwrap();
    let validated = Command::new(weir_bin()).arg("validate").arg(&invalid).output().unwrap();
    let validate_output = format!(
        "{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    let outputs = [
        ("stderr", std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()),
        ("stdout", std::fs::read_to_string(dir.path().join("stdout")).unwrap_or_default()),
        ("dead letters", all_files(&dir.path().join("data/dead_letter"))),
        ("/metrics", metrics),
        ("weir setup", setup_output.clone()),
        ("weir validate", validate_output.clone()),
    ];
    for (name, text) in &outputs {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} in {name}:\n{text}");
        }
    }
    // The tests above saw the failures they were meant to see.
    assert!(failed, "not every sink failed; stderr:\n{}", outputs[0].1);
    assert!(outputs[0].1.contains("weir:***@127.0.0.1"), "{}", outputs[0].1);
    assert!(!read_lines(&walk(&dir.path().join("data/dead_letter"))[0]).is_empty());
    assert!(validate_output.contains("weir:***@es:9200"), "{validate_output}");
    assert!(!validated.status.success());
    // Setup waited for the refused endpoint, then gave up, naming it (redacted) both times.
    assert!(
        setup_output.contains("waiting for Elasticsearch at http://weir:***@"),
        "{setup_output}"
    );
    assert!(setup_output.contains("was not ready within 4s"), "{setup_output}");
}
