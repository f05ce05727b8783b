//! Integration tests of filelist-cache: build real trees, open the snapshots, compare
//! with the file system; damage snapshot files and check that opening fails cleanly.

mod build;
mod corrupt;
mod crash;
mod store;
mod timing;
mod util;
mod watch;
