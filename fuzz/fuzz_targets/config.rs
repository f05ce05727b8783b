//! Fuzz target: rsyncd.conf and the per-module rules compiled from it (rsyncd/src/config/).
//! The body lives in `rsyncd::fuzz_entry::config` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsyncd::fuzz_entry::config(data));
