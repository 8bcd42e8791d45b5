#![no_main]
// The target's body is `weir::fuzzing::line_framer`, which the corpus replay test calls too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::line_framer(data));
