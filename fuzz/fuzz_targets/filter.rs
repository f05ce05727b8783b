//! Fuzz target: the client's filter list and rule parsing/matching (protocol/src/filter.rs).
//! The body lives in `protocol::fuzz_entry::filter` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzz_entry::filter(data));
