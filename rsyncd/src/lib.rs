//! `rsyncd`: a drop-in rsync daemon that serves file lists from a
//! memory-mapped snapshot of each module's tree.
//!
//! The binary (`main.rs`) parses the command line and the operators'
//! rsyncd.conf ([`config`]), builds the modules' snapshots ([`server`]),
//! and runs one [`session`] per connection.

pub mod access;
pub mod config;
pub mod control;
pub mod exec;
pub mod ffl;
pub mod logging;
pub mod metrics;
pub mod module;
pub mod progress;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod session;
pub mod systemd;
pub mod triggers;
pub mod sumcache;
