//! The command line as a user meets it: `--help`, `validate --config`, errors on standard
//! error, colour only on a terminal (a real pseudo-terminal from util-linux `script`), and the
//! warning for an include pattern that matches nothing.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Weir, require_command, wait_for, weir_bin};

const STDIN_TO_CONSOLE: &str =
    "[sources.in]\ntype = \"stdin\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"in\"]\n";

#[test]
fn help_lists_commands_examples_types_and_environment() {
    let out = Command::new(weir_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "validate",
        "weir run --config pipeline.toml",
        "--watch-config",
        "weir buffer check",
        "kubernetes_logs",
        "parse_model_log",
        "elasticsearch",
        "WEIR_LOG",
        "MALLOC_CONF",
        "NO_COLOR",
        "--color <COLOR>",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn validate_takes_config_like_run_and_reports_errors_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, STDIN_TO_CONSOLE).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sources.in]\ntype = \"stdn\"\n").unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new(weir_bin()).arg("validate").args(args).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, stdout, stderr) = run(&["--config".as_ref(), ok.as_os_str()]);
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (Some(0), "Configuration OK\n", ""));
    let (code, stdout, stderr) = run(&["-c".as_ref(), bad.as_os_str()]);
    assert_eq!((code, stdout.as_str()), (Some(1), ""), "{stderr}");
    assert!(stderr.contains("bad.toml:2:8: sources.in: unknown source type `stdn`"), "{stderr}");
    assert!(stderr.contains("2 errors found"), "{stderr}");
    // Positional files still work, with --config beside them.
    let (code, _, stderr) = run(&[ok.as_os_str(), "--config".as_ref(), bad.as_os_str()]);
    assert_eq!(code, Some(1), "{stderr}");
}

/// weir's log on a terminal: `script` gives it a pseudo-terminal for standard error.
fn log_on_a_terminal(extra: &str, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(&config, STDIN_TO_CONSOLE).unwrap();
    let command =
        format!("{} run --config {} {extra} < /dev/null", weir_bin().display(), config.display());
    let out = Command::new(require_command("script"))
        .args(["-qec", &command, "/dev/null"])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_only_on_a_terminal_unless_told() {
    const ESC: &str = "\u{1b}[";
    let terminal = log_on_a_terminal("", &[]);
    assert!(terminal.contains("weir is running") && terminal.contains(ESC), "{terminal:?}");
    let no_color = log_on_a_terminal("", &[("NO_COLOR", "1")]);
    assert!(no_color.contains("weir is running") && !no_color.contains(ESC), "{no_color:?}");
    let never = log_on_a_terminal("--color never", &[]);
    assert!(never.contains("weir is running") && !never.contains(ESC), "{never:?}");
    // Written to a file: plain, unless asked.
    let run = |args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("p.toml");
        std::fs::write(&config, STDIN_TO_CONSOLE).unwrap();
        let out = Command::new(weir_bin())
            .args(["run", "--config"])
            .arg(&config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let plain = run(&[]);
    assert!(plain.contains("weir is running") && !plain.contains(ESC), "{plain:?}");
    let always = run(&["--color", "always"]);
    assert!(always.contains(ESC), "{always:?}");
}

#[test]
fn an_include_pattern_matching_nothing_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(
        dir.path(),
        "[sources.in]\ntype = \"file\"\ninclude = [\"{{dir}}/model-*.log\"]\n\n\
         [sinks.out]\ntype = \"blackhole\"\ninputs = [\"in\"]\n",
    );
    let warned = wait_for(Duration::from_secs(30), || {
        weir.stderr().contains("include pattern matches no file yet")
    });
    assert!(warned, "{}", weir.stderr());
    assert!(weir.stderr().contains("model-*.log"));
}

/// `weir completions` scripts parse in their shells (bash, zsh, fish) and bash completes
/// the commands from its script; `weir man` pages render with `man` and name every
/// command, each of which has its own page.
#[test]
fn completions_and_man_pages() {
    let run = |args: &[&str]| {
        let out = Command::new(weir_bin()).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    for (shell, check) in [("bash", "-n"), ("zsh", "-n"), ("fish", "--no-execute")] {
        let script = run(&["completions", shell]);
        for command in ["validate", "test", "completions", "setup"] {
            assert!(script.contains(command), "{shell} completions lack {command}");
        }
        let path = dir.path().join(format!("weir.{shell}"));
        std::fs::write(&path, &script).unwrap();
        let out = Command::new(require_command(shell)).arg(check).arg(&path).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // bash completes the commands from the script.
    let path = dir.path().join("weir.bash");
    let complete = format!(
        "source {}; COMP_WORDS=(weir va); COMP_CWORD=1; _weir weir va weir; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display()
    );
    let out = Command::new("bash").args(["-c", &complete]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "validate\n");

    let man = require_command("man");
    let page = dir.path().join("weir.1");
    std::fs::write(&page, run(&["man"])).unwrap();
    let out = Command::new(&man)
        .arg("-l")
        .arg(&page)
        .env("MANWIDTH", "100")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for needle in ["weir-run(1)", "weir-test(1)", "weir-validate(1)", "WEIR_LOG", "Component types"]
    {
        assert!(text.contains(needle), "weir(1) lacks {needle:?}:\n{text}");
    }
    let page = dir.path().join("weir-test.1");
    std::fs::write(&page, run(&["man", "test"])).unwrap();
    let out = Command::new(&man).arg("-l").arg(&page).env("MANWIDTH", "100").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("weir test [-c|--config]"), "{text}");
    let out = Command::new(weir_bin()).args(["man", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Every command that prints on standard output, with standard output a pipe whose reader has
/// gone (`weir validate | head` once `head` has exited): the read end is closed before weir
/// starts, so every write fails, deterministically. Each exits with its own status, not
/// Rust's panic status 101, and says nothing of a panic.
#[test]
fn a_closed_standard_output_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, STDIN_TO_CONSOLE).unwrap();
    let training = dir.path().join("training.csv");
    std::fs::write(&training, "latency_ms,region\n12,eu\n15,us\n11,eu\n").unwrap();
    let profile = dir.path().join("profile.json");
    let ok = ok.to_str().unwrap();
    let cases: [&[&str]; 10] = [
        &["validate", ok],
        &["test"],
        &["completions", "bash"],
        &["man"],
        &["man", "run"],
        &["setup", "--config", ok],
        &["buffer", "check", dir.path().to_str().unwrap()],
        &["profile", "--input", training.to_str().unwrap(), "--out", profile.to_str().unwrap()],
        &["--help"],
        &["--version"],
    ];
    for args in cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(weir_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "weir {}: {stderr}", args.join(" "));
        assert!(!stderr.contains("panicked"), "weir {}: {stderr}", args.join(" "));
    }
    assert!(profile.is_file(), "weir profile wrote nothing");
}

/// The commands that write to standard error, with standard error a pipe whose reader has
/// gone (`weir run 2>&1 | head` once `head` has exited; the read end is closed before weir
/// starts): each exits with its own status, never Rust's panic status 101. `weir run` logs
/// into the closed pipe (its logger's own complaint about a failed write would have
/// panicked) and still does its work.
#[test]
fn a_closed_standard_error_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, STDIN_TO_CONSOLE).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sources.in]\ntype = \"nope\"\n").unwrap();
    let (ok, bad) = (ok.to_str().unwrap(), bad.to_str().unwrap());
    let cases: [(&[&str], i32); 6] = [
        (&["validate", bad], 1),
        (&["test", bad], 78),
        (&["test", ok], 0),
        (&["run", "--config", bad], 78),
        (&["tap"], 2),
        (&["top", "--url", "http://127.0.0.1:1"], 1),
    ];
    for (args, code) in cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(weir_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "weir {}", args.join(" "));
    }
    let run = dir.path().join("run.toml");
    let data_dir = format!("data_dir = \"{}\"\n", dir.path().display());
    std::fs::write(&run, data_dir + STDIN_TO_CONSOLE).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&run)
        .env("WEIR_LOG", "debug")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(writer)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"{\"level\":\"INFO\"}\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("INFO"));
}

/// `weir run | head`: once the reader of the console sink's standard output has gone, weir
/// says so, stops as at the end of its sources, and exits 0 (Vector stops too, with errors
/// logged and a failed exit).
#[test]
fn weir_run_into_head_stops_cleanly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("demo.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[sources.in]\ntype = \"demo\"\n[sinks.out]\ntype = \"console\"\n\
             inputs = [\"in\"]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("WEIR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    // What `head -2` does: read two lines, then leave.
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let line = lines.next().expect("a line").unwrap();
        assert!(line.starts_with('{'), "{line}");
    }
    drop(lines);
    let mut status = None;
    let ended = wait_for(Duration::from_secs(60), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    let log = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    if !ended {
        let _ = child.kill();
    }
    assert!(ended, "weir went on after its reader left:\n{log}");
    assert_eq!(status.unwrap().code(), Some(0), "{log}");
    assert!(log.contains("standard output was closed by its reader; weir stops"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}
