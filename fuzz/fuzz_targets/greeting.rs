//! Fuzz target: the text phase: lines, client greeting, module line (protocol/src/greeting.rs).
//! The body lives in `protocol::fuzz_entry::greeting` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzz_entry::greeting(data));
