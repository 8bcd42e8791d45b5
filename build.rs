//! Link options of the weir binary.
//!
//! `-z pack-relative-relocs` stores the executable's ~75,000 relative relocations (pointers
//! in `.data.rel.ro`, fixed up at every start of a position-independent executable) as a
//! compact bitmap (DT_RELR, glibc 2.36 and GNU ld 2.38 onwards): 1.8 MB of relocation
//! entries that every start read into memory become ~30 KB. `weir --version` peaks at 8.0
//! instead of 9.7 MB resident (BENCHMARKS.md). Older linkers ignore the option with a
//! warning.
fn main() {
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
