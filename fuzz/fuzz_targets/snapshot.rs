//! Fuzz target: snapshot open: Snapshot::from_bytes (filelist-cache/src/snapshot.rs).
//! The body lives in `filelist_cache::fuzz_entry::snapshot` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| filelist_cache::fuzz_entry::snapshot(data));
