#![no_main]
// The target's body is `weir::fuzzing::kubernetes_watch`, which the corpus replay test calls too.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weir::fuzzing::kubernetes_watch(data));
