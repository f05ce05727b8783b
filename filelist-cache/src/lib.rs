//! Memory-mapped snapshots of one module tree, stored in rsync's file-list order.
//!
//! A snapshot lets the daemon serve file lists without a single `stat()` or `getdents()`
//! on the tree during a pull.
//!
//! # Lifecycle
//!
//! 1. **Scan** ([`build_snapshot`]): walk the module root with directory fds, never
//!    following symlinks below the root, optionally staying on one file system.
//!    Unreadable directories are recorded with a flag and the errno, and the scan goes on.
//! 2. **Write**: serialise with rkyv behind a fixed 64-byte header (magic,
//!    [`FORMAT_VERSION`], rkyv feature word, lengths, xxh3 hashes, generation), to a temp
//!    file in the destination directory, fsync, rename, fsync the directory. A published
//!    file is never written again.
//! 3. **Map** ([`Snapshot::open`]): map the file, check the header and hashes, validate the
//!    archive with bytecheck once, check the structural invariants; from then on reads are
//!    plain memory accesses through [`EntryRef`].
//! 4. **Live** ([`SnapshotStore`], one per module): opens the last good file at once
//!    (or builds one), publishes immutable [`Generation`]s through an `ArcSwap`
//!    ([`SnapshotStore::current`]); incremental refreshes re-read only the directories
//!    that changed and publish them as an *overlay* merged at read time, so an update
//!    costs what changed, not the tree; a full rescan or a compaction writes a new base
//!    file in the background. Changes come from a fanotify watcher, a periodic rescan
//!    and explicit refreshes. See `docs/live-updates.md`.
//!
//! # Order and invariants
//!
//! Entries are stored in depth-first pre-order: each directory, then its non-directories
//! sorted bytewise, then each subdirectory (sorted as `name/`) followed by its whole
//! subtree. Iterating a subtree in storage order therefore yields rsync's sorted
//! (protocol >= 29) file-list order for a recursive transfer of that directory; see
//! [`order`]. Every directory's subtree is a contiguous index range.
//!
//! # Views and indices
//!
//! A [`Snapshot`] is a view: a validated base file plus an (often empty) overlay.
//! Every read ([`Snapshot::lookup`], [`Snapshot::walk`], [`EntryRef::children`], ...)
//! presents the merged tree in rsync order. [`EntryRef::index`] is stable for the life of
//! a view; entries added by an overlay get indices past the base file's, so sort by
//! name, never by index.
//!
//! # Unsafe
//!
//! `snapshot.rs` maps the (immutable) file and accesses the archive without
//! re-validating it after it was validated once at open; `watch/fanotify.rs` makes the
//! fanotify, `name_to_handle_at` and `fstatfs` system calls. Each site has a `SAFETY`
//! comment. The fanotify event parser is safe code.
//!
//! The on-disk format is described in `docs/snapshot-format.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod compact;
mod error;
mod format;
mod links;
mod model;
pub mod order;
mod overlay;
mod records;
mod scan;
mod snapshot;
mod store;
mod update;
mod view;
mod virtual_file;
mod watch;
mod write;

use std::path::Path;

pub use error::{OpenError, ScanError, ScanIssue};
pub use format::FORMAT_VERSION;
pub use snapshot::Snapshot;
pub use store::{
    Background, Generation, OpenReport, OpenSource, PublishEvent, PublishObserver, RefreshKind,
    RefreshReport, ScanProgress, SnapshotStore, StoreError, StoreOptions, Stores, Touched,
    WatchStatus,
};
pub use view::{Children, EntryRef, WalkControl};
pub use virtual_file::{VirtualAttrs, VirtualFileError};

/// Options of [`build_snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Do not descend into directories on another file system than the root (like
    /// `rsync -x`); such directories are recorded, flagged [`EntryRef::other_fs`], with no
    /// contents. Default: true.
    pub one_file_system: bool,
    /// Generation number stored in the snapshot (header and every directory record).
    pub generation: u64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            one_file_system: true,
            generation: 0,
        }
    }
}

/// What [`build_snapshot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildReport {
    /// Entries stored, including the root.
    pub entries: u64,
    /// Directories stored, including the root.
    pub dirs: u64,
    /// Non-fatal problems (unreadable directories, entries that vanished or could not be
    /// examined), in scan order.
    pub errors: Vec<ScanIssue>,
}

/// Scans `root` (never following symlinks below it, `lstat` semantics) and writes a
/// snapshot to `out` atomically (temp file in the same directory, fsync, rename, fsync
/// of the directory).
///
/// The root path itself is resolved like any path (it may be a symlink to the real tree,
/// as with stock rsync's `chdir` to the module path). Unreadable directories are recorded
/// with a flag ([`EntryRef::unreadable`], [`EntryRef::read_errno`]) and the scan goes on;
/// entries that cannot be examined are left out. Both appear in
/// [`BuildReport::errors`].
pub fn build_snapshot(
    root: &Path,
    out: &Path,
    opts: &BuildOptions,
) -> Result<BuildReport, ScanError> {
    let (snap, report) = scan::scan(root, opts, &|_| None)?;
    let (header, archive) = snapshot::encode(&snap)?;
    drop(snap);
    write::write_atomic(out, &[&header.to_bytes(), archive.as_slice()])?;
    Ok(report)
}
