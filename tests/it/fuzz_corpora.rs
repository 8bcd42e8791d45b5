//! Replays the committed fuzz corpora (`fuzz/corpus/<target>/`) and the inputs that once
//! broke a target (`fuzz/regressions/<target>/`) through the same entry functions the fuzz
//! targets call (`weir::fuzzing`), so that a regression fails `cargo test` without cargo-fuzz
//! or a nightly compiler. fuzz/README.md says how the corpora are made.

use std::path::{Path, PathBuf};

use weir::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// Feeds every file to `run`; returns the files that panicked, with the panic's message.
fn replay(run: fn(&[u8]), inputs: &[PathBuf]) -> Vec<String> {
    let mut failed = Vec::new();
    for path in inputs {
        let data = std::fs::read(path).unwrap();
        if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{}: {message}", path.display()));
        }
    }
    failed
}

#[test]
fn every_fuzz_target_has_an_entry_function_and_a_corpus() {
    let dir = fuzz_dir();
    let mut declared: Vec<String> = files(&dir.join("fuzz_targets"))
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    declared.sort();
    let mut entries: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    entries.sort();
    assert_eq!(declared, entries, "fuzz/fuzz_targets/*.rs and weir::fuzzing::TARGETS differ");
    for (name, _) in TARGETS {
        let corpus = files(&dir.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name}/ is empty");
    }
}

#[test]
fn fuzz_corpora_replay_without_a_failure() {
    let dir = fuzz_dir();
    let mut failed = Vec::new();
    let mut replayed = 0;
    for (name, run) in TARGETS {
        let mut inputs = files(&dir.join("corpus").join(name));
        inputs.extend(files(&dir.join("regressions").join(name)));
        replayed += inputs.len();
        failed.extend(replay(*run, &inputs));
    }
    assert!(replayed > 0, "no corpus found under {}", dir.display());
    assert!(
        failed.is_empty(),
        "{} of {replayed} inputs failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
