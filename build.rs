//! Link options of the weir binary.
//!
//! `-z pack-relative-relocs` stores the executable's relative relocations (pointers fixed up at
//! every start of a position-independent executable) as a compact bitmap (DT_RELR, glibc 2.36
//! and GNU ld 2.38 onwards), so a start reads kilobytes of them instead of megabytes. Older
//! linkers ignore the option with a warning.
//!
//! `-z max-page-size=65536` aligns the executable's segments to 64 KiB, the block the kernel
//! maps around a page fault, so the same blocks of code are resident at every start. It costs
//! the executable's load address 4 of its 28 random bits.
//!
//! `WEIR_SYMBOL_ORDER=1` (opt-in, release builds linked by rustc's lld) also passes
//! `--symbol-ordering-file=layout/symbol-order.txt`, which lays out the functions weir runs
//! next to each other so that fewer pages of code are resident. The file names functions as
//! one compiler and one set of dependencies mangle them, so it goes stale on any change of
//! either: the linker then skips the names it does not find, which costs memory, never
//! correctness. The build warns when the file was written by another compiler;
//! `python3 benches/layout.py --check` counts the names a built binary resolves, and
//! `python3 benches/layout.py` writes the file again.
use std::env;
use std::path::Path;
use std::process::Command;

const ORDER_FILE: &str = "layout/symbol-order.txt";
const ORDER_SWITCH: &str = "WEIR_SYMBOL_ORDER";

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rustc-link-arg-bins=-Wl,-z,max-page-size=65536");
    println!("cargo:rerun-if-env-changed={ORDER_SWITCH}");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var(ORDER_SWITCH).as_deref() == Ok("1") {
        symbol_order();
    }
}

/// Passes the symbol order to the linker where it can take it, and warns where it cannot or
/// where the file is likely stale.
fn symbol_order() {
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    if env::var("PROFILE").as_deref() != Ok("release") {
        return;
    }
    let Some(rustc) = rustc_version() else {
        println!("cargo:warning={ORDER_SWITCH}=1: cannot run rustc; no symbol order applied");
        return;
    };
    if !links_with_lld(&rustc) {
        println!(
            "cargo:warning={ORDER_SWITCH}=1 needs rustc's own lld (x86_64 Linux, Rust 1.90 \
             or later, no linker chosen); no symbol order applied"
        );
        return;
    }
    let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = Path::new(&dir).join(ORDER_FILE);
    let Ok(text) = std::fs::read_to_string(&order) else {
        println!("cargo:warning={ORDER_SWITCH}=1: cannot read {ORDER_FILE}; no order applied");
        return;
    };
    // The names carry hashes of the compiler and the dependencies: with another compiler
    // most of them no longer resolve.
    let written_by = text.lines().find_map(|l| l.strip_prefix("# written by: "));
    if written_by != Some(rustc.as_str()) {
        println!(
            "cargo:warning={ORDER_FILE} was written by {} and this build uses {rustc}: most of \
             its names will not resolve; run `python3 benches/layout.py` to write it again",
            written_by.unwrap_or("an unrecorded compiler")
        );
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// `rustc --version`, e.g. "rustc 1.95.0 (59807616e 2026-04-14)".
fn rustc_version() -> Option<String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc).arg("--version").output().ok()?;
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether rustc links this build with its own lld: its default for
/// `x86_64-unknown-linux-gnu` since Rust 1.90, unless a linker or linker flavour is chosen.
fn links_with_lld(rustc_version: &str) -> bool {
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu") {
        return false;
    }
    if env::var_os("RUSTC_LINKER").is_some() {
        return false;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker") || flags.contains("link-self-contained") {
        return false;
    }
    let mut parts = rustc_version.split_whitespace().nth(1).unwrap_or("").split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    major > 1 || (major == 1 && minor >= 90)
}
