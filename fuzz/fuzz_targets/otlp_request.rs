#![no_main]
// The target's body is `weir::fuzzing::otlp_request`, which the corpus replay test calls too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::otlp_request(data));
