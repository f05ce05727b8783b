//! Fuzz target: the fanotify event parser (filelist-cache/src/watch/parse.rs).
//! The body lives in `filelist_cache::fuzz_entry::fanotify` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| filelist_cache::fuzz_entry::fanotify(data));
