//! Fuzz target: multiplexed frame headers (protocol/src/mux.rs).
//! The body lives in `protocol::fuzz_entry::mux` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzz_entry::mux(data));
