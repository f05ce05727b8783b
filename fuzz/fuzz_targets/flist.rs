//! Fuzz target: file-list entries and trailer (protocol/src/flist/decode.rs).
//! The body lives in `protocol::fuzz_entry::flist` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| protocol::fuzz_entry::flist(data));
