//! Fuzz target: the PROXY protocol header (rsyncd/src/proxy.rs).
//! The body lives in `rsyncd::fuzz_entry::proxy` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsyncd::fuzz_entry::proxy(data));
