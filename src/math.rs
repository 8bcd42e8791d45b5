//! The C math functions weir's code and its dependencies call (Rust's `f64` methods, VRL's
//! functions, statrs' distributions), defined in the binary with the `libm` crate's pure-Rust
//! implementations, so that glibc's `libm.so` is not loaded.
//!
//! Why: a shared library is resident by the 64 KiB the kernel maps around every page fault
//! (its headers, the symbol tables the loader searches, every function whose address is
//! resolved at start-up). `libm.so` kept 0.5 MiB resident (raw shipping in benches/compare,
//! read page by page) for these nine functions, none of them on a hot path; the functions
//! below take a few KiB of weir's own code (BENCHMARKS.md, 2026-12-05 (libm)).
//!
//! The linker resolves the calls to these definitions and, with `--as-needed` (rustc's
//! default), records no dependency on `libm.so`. A call to a function not defined here (a new
//! dependency calling `tan`) would load `libm.so` again: the test below fails then, and the
//! function is to be added. Results agree with glibc's to within an ulp (musl's algorithms,
//! which the `libm` crate ports); `errno` is not set on domain errors, which Rust code does
//! not read.

/// Defines each C function `name(args) -> f64` as the `libm` crate's function of that name.
macro_rules! from_libm {
    ($($name:ident($($arg:ident),+);)+) => {$(
        #[unsafe(no_mangle)]
        extern "C" fn $name($($arg: f64),+) -> f64 {
            libm::$name($($arg),+)
        }
    )+};
}

from_libm! {
    asin(x);
    atan2(y, x);
    cos(x);
    exp(x);
    log(x);
    log2(x);
    pow(x, y);
    sin(x);
}

/// # Safety
/// `s` and `c` point to writable `f64`s (the C declaration's contract).
#[unsafe(no_mangle)]
unsafe extern "C" fn sincos(x: f64, s: *mut f64, c: *mut f64) {
    let (sin, cos) = libm::sincos(x);
    // SAFETY: the caller passes two valid pointers, as C's `sincos` requires.
    unsafe {
        s.write(sin);
        c.write(cos);
    }
}

#[cfg(test)]
mod tests {
    use std::hint::black_box;

    /// Every math function this binary calls is one of the above: `libm.so` is not mapped.
    #[test]
    fn libm_is_not_loaded() {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let loaded: Vec<&str> = maps.lines().filter(|l| l.contains("/libm.so")).collect();
        assert!(loaded.is_empty(), "libm.so is loaded: {loaded:?}");
    }

    /// Rust's `f64` methods (which reach these definitions: libm is not loaded) answer as
    /// glibc's would, to within a few ulps.
    #[test]
    fn the_functions_answer_right() {
        let close = |a: f64, b: f64| (a - b).abs() <= 4.0 * f64::EPSILON * b.abs().max(1.0);
        let x = black_box(0.5f64);
        assert!(close(x.asin(), std::f64::consts::FRAC_PI_6));
        assert!(close(black_box(1.0f64).atan2(1.0), std::f64::consts::FRAC_PI_4));
        assert!(close(black_box(std::f64::consts::PI).cos(), -1.0));
        assert!(close(black_box(1.0f64).exp(), std::f64::consts::E));
        assert!(close(black_box(std::f64::consts::E).ln(), 1.0));
        assert_eq!(black_box(1024.0f64).log2(), 10.0);
        assert_eq!(black_box(2.0f64).powf(10.0), 1024.0);
        assert!(close(black_box(std::f64::consts::FRAC_PI_2).sin(), 1.0));
        let (s, c) = black_box(std::f64::consts::FRAC_PI_3).sin_cos();
        assert!(close(s, 3f64.sqrt() / 2.0) && close(c, 0.5));
    }
}
