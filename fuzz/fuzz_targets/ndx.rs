//! Fuzz target: file indexes (protocol/src/ndx.rs).
//! The body lives in `protocol::fuzz_entry::ndx` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzz_entry::ndx(data));
