//! The rsync wire protocol (versions 27-32) as pure code.
//!
//! Bytes in, typed values out, and back. Nothing in this crate performs IO,
//! reads a clock or draws randomness: decoders take byte slices and answer
//! "value", "incomplete" or "invalid"; encoders append to a caller's buffer.
//! The daemon (`rsyncd`) drives these pieces over its sockets.
//!
//! Module map, in the order a pull session uses them:
//! - [`greeting`]: the text phase (`@RSYNCD:` lines, module names, errors).
//! - [`args`]: the client's server argument vector, parsed into typed options.
//! - [`compat`]: compat flags and checksum/compression negotiation.
//! - [`mux`]: the multiplex envelope.
//! - [`filter`], [`wildmatch`]: client filter rules and rsync's wildcard matcher.
//! - [`flist`]: file-list entries, ordering, encoding, id lists.
//! - [`ndx`], [`sums`]: requests from the client's generator.
//! - [`checksum`], [`matcher`], [`token`]: delta transfer and compression.
//! - [`stats`], [`exit`]: end of run.
//! - [`wire`], [`error`]: primitive encodings and decoder errors.
#![forbid(unsafe_code)]

pub mod args;
pub mod checksum;
pub mod compat;
pub mod error;
pub mod exit;
pub mod filter;
pub mod flist;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod greeting;
pub mod limits;
pub mod matcher;
pub mod mux;
pub mod ndx;
pub mod stats;
pub mod sums;
pub mod token;
pub mod wildmatch;
pub mod wire;

pub use error::{DecodeError, DecodeResult};
