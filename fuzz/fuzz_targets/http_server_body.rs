#![no_main]
// The target's body is `weir::fuzzing::http_server_body`, which the corpus replay test calls too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::http_server_body(data));
