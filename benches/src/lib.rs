//! The benchmark suite: our `rsyncd` against stock `rsync --daemon`, on
//! generated trees, driven by one command (`benches/run.sh`, i.e. the
//! `bench-all` binary).
//!
//! Layout:
//! - [`rng`], [`tree`]: deterministic tree generators (a sparse
//!   distribution mirror of 10k-1M entries, a mixed tree of real data and
//!   its altered copy for delta pulls);
//! - [`procstat`]: `/proc` readers (CPU ticks, RSS anon/file samplers,
//!   process trees);
//! - [`daemon`], [`client`]: starting both daemons on one rsyncd.conf,
//!   running stock clients (one or many at once) and reading their
//!   `--stats`;
//! - [`results`], [`report`], [`svg`], [`machine`]: raw samples, medians,
//!   targets, the Markdown summary, CSV/JSON and SVG plots;
//! - [`sections`]: the measured sections (null sync, strace, full and
//!   delta pulls, `--files-from`, snapshot figures, criterion
//!   micro-benchmarks).
//!
//! Linux only (reads `/proc`); run as root (both daemons serve trees as
//! `uid = nobody` from a root daemon, strace attaches to them).

pub mod client;
pub mod daemon;
pub mod machine;
pub mod procstat;
pub mod report;
pub mod results;
pub mod rng;
pub mod sections;
pub mod svg;
pub mod tree;
