//! The interop suite: one test binary (modules below).
//!
//! Each differential test runs the same stock `rsync` client command against
//! the stock daemon and against a second daemon: ours by default, or stock
//! again for a harness self-test (`INTEROP_SECOND=stock`, or
//! `INTEROP_SELFTEST=1` when our binary is missing). See
//! `interop_tests::second_side`.

mod access;
mod common;

mod checksums;
mod compression;
mod errors;
mod errors_matrix;
mod exec_hooks;
mod files_from;
mod filters;
mod fixtures;
mod harness;
mod listing;
mod listings;
mod mirror;
mod modes;
mod module_params;
mod odd_names;
mod paths;
mod protocols;
mod pull;
