//! Change sources: the fanotify watcher (filesystem-wide mark, directory file handles
//! and names) and the directory-handle map that turns its events into module paths.
//!
//! The `unsafe` of the crate's watcher lives in `fanotify.rs` (the syscalls without a
//! safe wrapper: `fanotify_init`, `fanotify_mark`, `name_to_handle_at`, `fstatfs`);
//! the event parser (`parse.rs`) is safe, bounds-checked code.

pub(crate) mod fanotify;
pub(crate) mod parse;

use std::collections::HashMap;

/// Key of a directory in the handle map: `handle_type` (4 bytes, native endian)
/// followed by the handle bytes.
pub(crate) type HandleKey = Box<[u8]>;

/// Builds the lookup key of a handle.
pub(crate) fn handle_key(handle_type: i32, handle: &[u8]) -> HandleKey {
    let mut k = Vec::with_capacity(4 + handle.len());
    k.extend_from_slice(&handle_type.to_ne_bytes());
    k.extend_from_slice(handle);
    k.into_boxed_slice()
}

/// Directory file handle -> module-relative path, for every directory the store has
/// read (built with `name_to_handle_at` during scans, updated as directories come and
/// go). Lets events be resolved without `open_by_handle_at` (which needs
/// `CAP_DAC_READ_SEARCH`).
#[derive(Debug, Default)]
pub(crate) struct HandleMap {
    map: HashMap<HandleKey, Box<[u8]>>,
    /// True when every directory of the current base was registered (a scan in which no
    /// `name_to_handle_at` failed); then an unknown handle belongs to a directory outside
    /// the module and is ignored, instead of forcing a full rescan.
    pub complete: bool,
    /// Registrations that failed since the last full scan.
    pub failures: u64,
}

impl HandleMap {
    pub(crate) fn insert(&mut self, key: HandleKey, path: &[u8]) {
        match self.map.get_mut(&key) {
            Some(p) if **p == *path => {}
            Some(p) => *p = path.into(),
            None => {
                self.map.insert(key, path.into());
            }
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.map.get(key).map(|p| &**p)
    }

    pub(crate) fn remove(&mut self, key: &[u8]) {
        self.map.remove(key);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Registers the directory open as `fd` at module-relative `path`.
    pub(crate) fn register(&mut self, path: &[u8], fd: std::os::fd::BorrowedFd<'_>) {
        match fanotify::dir_handle(fd) {
            Ok((ht, h)) => self.insert(handle_key(ht, &h), path),
            Err(_) => {
                self.failures += 1;
                self.complete = false;
            }
        }
    }
}
