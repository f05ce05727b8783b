//! Fuzz target: the auth response line and secrets file (rsyncd/src/access/auth.rs).
//! The body lives in `rsyncd::fuzz_entry::auth` so the corpus replay test runs the same code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsyncd::fuzz_entry::auth(data));
