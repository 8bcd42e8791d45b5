//! Link options of the weir binary.
//!
//! `-z pack-relative-relocs` stores the executable's ~75,000 relative relocations (pointers
//! in `.data.rel.ro`, fixed up at every start of a position-independent executable) as a
//! compact bitmap (DT_RELR, glibc 2.36 and GNU ld 2.38 onwards): 1.8 MB of relocation
//! entries that every start read into memory become ~30 KB. `weir --version` peaks at 8.0
//! instead of 9.7 MB resident (BENCHMARKS.md). Older linkers ignore the option with a
//! warning.
//!
//! `-z max-page-size=65536` aligns the executable's segments to 64 KiB, and with them the
//! address the kernel loads it at (it honours the segments' alignment). The kernel maps a file
//! 64 KiB around every page fault, in blocks aligned in memory: with 4 KiB alignment a range of
//! code or data used together fell across a different pair of blocks at every start, and
//! raw shipping kept 4.9 to 5.2 MiB of file pages resident; aligned, 4.5 to 4.6 (BENCHMARKS.md,
//! 2026-12-05 (libm)). It costs the executable's load address 4 of its 28 random bits.
//!
//! `--symbol-ordering-file=layout/symbol-order.txt` (release builds linked by lld) lays out
//! the functions weir runs next to each other. The kernel maps an executable 64 KiB around
//! every page fault, so code spread over all of `.text` keeps most of it resident: 6 to
//! 8 MiB in benches/compare, against 1.7 to 2.6 MiB laid out (BENCHMARKS.md, 2026-12-04
//! (layout)). The file is written by `benches/layout.py`; names it lists that a build does
//! not have are skipped. GNU ld does not know the option, so it is passed only where rustc
//! links with lld: x86_64 Linux from Rust 1.90 on, with no linker of the user's choosing.
use std::env;
use std::path::Path;
use std::process::Command;

const ORDER_FILE: &str = "layout/symbol-order.txt";

fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!("cargo:rustc-link-arg-bins=-Wl,-z,max-page-size=65536");
    println!("cargo:rerun-if-changed={ORDER_FILE}");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if env::var("PROFILE").as_deref() == Ok("release") && links_with_lld() {
        let dir = env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let order = Path::new(&dir).join(ORDER_FILE);
        if order.is_file() {
            println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
            println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
        }
    }
}

/// Whether rustc links this build with its own lld: its default for
/// `x86_64-unknown-linux-gnu` since Rust 1.90, unless a linker or linker flavour is chosen.
fn links_with_lld() -> bool {
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
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("--version").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version.split_whitespace().nth(1).unwrap_or("").split('.');
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    major > 1 || (major == 1 && minor >= 90)
}
