//! `weir validate`: every error at once, each with its component and position.

use crate::support::validate;

/// Validates `text` as a file named `pipeline.toml`; returns (exit code, stdout).
fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    let (code, out) = validate(&[&path]);
    (code, out.replace(&format!("{}", path.display()), "pipeline.toml"))
}

#[test]
fn a_valid_pipeline_is_ok() {
    let (code, out) = check(
        r#"
[sources.in]
type = "stdin"
[sinks.out]
type = "console"
inputs = ["in"]
"#,
    );
    assert_eq!((code, out.as_str()), (0, "Configuration OK\n"));
}
