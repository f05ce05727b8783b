//! Fuzz target: sum heads and block sums (protocol/src/sums.rs).
//! The body lives in `protocol::fuzz_entry::sums` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzz_entry::sums(data));
