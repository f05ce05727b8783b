//! Fuzz target: the client's server argument lists (protocol/src/args.rs).
//! The body lives in `protocol::fuzz_entry::args` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzz_entry::args(data));
