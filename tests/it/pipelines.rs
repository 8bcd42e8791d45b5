//! Every pipeline shipped in `pipelines/` passes `weir validate`.

use std::path::Path;

use crate::support::validate;

#[test]
fn every_shipped_pipeline_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let (code, out) = validate(&[&path]);
            assert_eq!(code, 0, "{} does not validate:\n{out}", path.display());
            assert!(out.ends_with("Configuration OK\n"), "{out}");
            checked += 1;
        }
    }
    assert!(checked >= 1, "no pipelines found in {}", dir.display());
}
