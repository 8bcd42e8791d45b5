#![no_main]
// The target's body is `weir::fuzzing::disk_buffer_recovery`, which the corpus replay test calls too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::disk_buffer_recovery(data));
