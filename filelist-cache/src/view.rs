//! Borrowed, read-only views of a validated snapshot. The rkyv types never leave the
//! crate: readers see [`EntryRef`] accessors only.
//!
//! Every accessor is total: the invariants checked at open time make the fallbacks
//! (empty names, `None`) unreachable, but nothing here can panic even if they were not.

use std::ops::Range;

use crate::format::{flags, ArchivedDirRecord, ArchivedEntryRecord, ArchivedSnapshotV1, NO_INDEX};
use crate::model::{mode_is_dir, S_IFLNK, S_IFMT, S_IFREG};
use crate::order::{cmp_dir_names, cmp_file_names};

/// What a [`Snapshot::walk`](crate::Snapshot::walk) callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkControl {
    /// Go on (into the entry's contents if it is a directory).
    Continue,
    /// Do not descend into this directory (same as `Continue` for non-directories).
    SkipDir,
    /// End the walk now.
    Stop,
}

/// One entry of a snapshot: a cheap, copyable borrowed view.
#[derive(Clone, Copy)]
pub struct EntryRef<'a> {
    snap: &'a ArchivedSnapshotV1,
    rec: &'a ArchivedEntryRecord,
    index: u32,
}

impl std::fmt::Debug for EntryRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryRef")
            .field("index", &self.index)
            .field("name", &self.name().escape_ascii().to_string())
            .field("mode", &format_args!("{:o}", self.mode()))
            .finish()
    }
}

fn blob(b: &[u8], off: u32, len: u32) -> &[u8] {
    let off = off as usize;
    off.checked_add(len as usize)
        .and_then(|end| b.get(off..end))
        .unwrap_or_default()
}

impl<'a> EntryRef<'a> {
    pub(crate) fn new(snap: &'a ArchivedSnapshotV1, index: u32) -> Option<EntryRef<'a>> {
        let rec = snap.entries.as_slice().get(index as usize)?;
        Some(EntryRef { snap, rec, index })
    }

    /// Entry 0. Validation guarantees it exists; the fallback only keeps this total.
    pub(crate) fn root(snap: &'a ArchivedSnapshotV1) -> EntryRef<'a> {
        match Self::new(snap, 0) {
            Some(e) => e,
            None => unreachable_root(),
        }
    }

    fn dir_rec(&self) -> Option<&'a ArchivedDirRecord> {
        let d = self.rec.dir.to_native();
        if d == NO_INDEX {
            return None;
        }
        self.snap.dirs.as_slice().get(d as usize)
    }

    /// Storage index (position in rsync order within the whole module).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Basename (`b""` for the root). Any bytes except NUL and `/`.
    pub fn name(&self) -> &'a [u8] {
        blob(
            self.snap.names.as_slice(),
            self.rec.name_off.to_native(),
            self.rec.name_len.to_native(),
        )
    }

    /// Full `st_mode` (file type and permission bits).
    pub fn mode(&self) -> u32 {
        self.rec.mode.to_native()
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        mode_is_dir(self.mode())
    }

    /// Whether this is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode() & S_IFMT == S_IFLNK
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.mode() & S_IFMT == S_IFREG
    }

    /// `st_size` as seen by `lstat` (symlinks: target length; devices/FIFOs: 0).
    pub fn size(&self) -> u64 {
        self.rec.size.to_native()
    }

    /// Modification time, seconds since the epoch (may be negative).
    pub fn mtime(&self) -> i64 {
        self.rec.mtime.to_native()
    }

    /// Nanoseconds part of the modification time.
    pub fn mtime_nsec(&self) -> u32 {
        self.rec.mtime_nsec.to_native()
    }

    /// Inode change time, seconds.
    pub fn ctime(&self) -> i64 {
        self.rec.ctime.to_native()
    }

    /// Nanoseconds part of the inode change time.
    pub fn ctime_nsec(&self) -> u32 {
        self.rec.ctime_nsec.to_native()
    }

    /// Owner user id.
    pub fn uid(&self) -> u32 {
        self.rec.uid.to_native()
    }

    /// Owner group id.
    pub fn gid(&self) -> u32 {
        self.rec.gid.to_native()
    }

    /// Hard-link count (saturated at `u32::MAX`).
    pub fn nlink(&self) -> u64 {
        u64::from(self.rec.nlink.to_native())
    }

    /// `st_dev` of the file system holding the entry.
    pub fn dev(&self) -> u64 {
        self.rec.dev.to_native()
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        self.rec.ino.to_native()
    }

    /// `major(st_rdev)` for character and block devices, 0 otherwise.
    pub fn rdev_major(&self) -> u32 {
        self.rec.rdev_major.to_native()
    }

    /// `minor(st_rdev)` for character and block devices, 0 otherwise.
    pub fn rdev_minor(&self) -> u32 {
        self.rec.rdev_minor.to_native()
    }

    /// Symlink target bytes (empty for other types).
    pub fn link_target(&self) -> &'a [u8] {
        blob(
            self.snap.targets.as_slice(),
            self.rec.target_off.to_native(),
            self.rec.target_len.to_native(),
        )
    }

    /// A directory whose contents could not be (fully) read during the scan; the daemon
    /// reports it like rsync (`opendir "x" failed: Permission denied (13)`) and sets
    /// `IOERR_GENERAL`.
    pub fn unreadable(&self) -> bool {
        self.rec.flags.to_native() & flags::UNREADABLE != 0
    }

    /// The errno of the failed `opendir`/`readdir` of an [`unreadable`](Self::unreadable)
    /// directory.
    pub fn read_errno(&self) -> Option<i32> {
        if !self.unreadable() {
            return None;
        }
        self.dir_rec()
            .map(|d| d.error.to_native() as i32)
            .filter(|&e| e != 0)
    }

    /// A directory on another file system than the module root that was not descended
    /// into (one-file-system build); it has no children, like a mount point under
    /// `rsync -x`.
    pub fn other_fs(&self) -> bool {
        self.rec.flags.to_native() & flags::OTHER_FS != 0
    }

    /// The generation at which this directory's listing was read (`None` for
    /// non-directories).
    pub fn scan_generation(&self) -> Option<u64> {
        self.dir_rec().map(|d| d.scan_generation.to_native())
    }

    /// The parent directory (`None` for the root).
    pub fn parent(&self) -> Option<EntryRef<'a>> {
        let p = self.rec.parent.to_native();
        if p == NO_INDEX {
            return None;
        }
        EntryRef::new(self.snap, p)
    }

    /// Number of entries below this directory (its whole subtree, excluding itself).
    pub fn subtree_len(&self) -> u32 {
        self.dir_rec()
            .map(|d| d.subtree_end.to_native().saturating_sub(self.index + 1))
            .unwrap_or(0)
    }

    /// Immediate children in rsync order: non-directories, then subdirectories.
    /// Empty for non-directories.
    pub fn children(&self) -> Children<'a> {
        let (files, subdirs) = match self.dir_rec() {
            Some(d) => {
                let start = self.index.saturating_add(1);
                let files = start..start.saturating_add(d.nfiles.to_native());
                let off = d.subdirs_off.to_native() as usize;
                let len = d.subdirs_len.to_native() as usize;
                let list = off
                    .checked_add(len)
                    .and_then(|end| self.snap.subdirs.as_slice().get(off..end))
                    .unwrap_or_default();
                (files, list)
            }
            None => (0..0, &[][..]),
        };
        Children {
            snap: self.snap,
            files,
            subdirs: subdirs.iter(),
        }
    }

    /// The child named `name` (binary search: non-directories bytewise, then
    /// subdirectories as `name/`).
    pub fn child(&self, name: &[u8]) -> Option<EntryRef<'a>> {
        let d = self.dir_rec()?;
        let entries = self.snap.entries.as_slice();
        let start = self.index as usize + 1;
        let files = entries.get(start..start + d.nfiles.to_native() as usize)?;
        let names = self.snap.names.as_slice();
        let name_of =
            |e: &ArchivedEntryRecord| blob(names, e.name_off.to_native(), e.name_len.to_native());
        if let Ok(k) = files.binary_search_by(|e| cmp_file_names(name_of(e), name)) {
            return EntryRef::new(self.snap, (start + k) as u32);
        }
        let off = d.subdirs_off.to_native() as usize;
        let list = self
            .snap
            .subdirs
            .as_slice()
            .get(off..off + d.subdirs_len.to_native() as usize)?;
        let k = list
            .binary_search_by(|s| {
                let e = entries.get(s.to_native() as usize);
                cmp_dir_names(e.map(name_of).unwrap_or_default(), name)
            })
            .ok()?;
        EntryRef::new(self.snap, list[k].to_native())
    }

    /// Per-file checksum `(algorithm id, digest)`; none are stored yet.
    pub fn checksum(&self) -> Option<(u8, &'a [u8])> {
        let len = self.rec.sum_len.to_native();
        if len == 0 {
            return None;
        }
        let algo = (self.rec.flags.to_native() & flags::SUM_ALGO_MASK) >> flags::SUM_ALGO_SHIFT;
        Some((
            algo as u8,
            blob(self.snap.sums.as_slice(), self.rec.sum_off.to_native(), len),
        ))
    }

    fn subtree_end(&self) -> u32 {
        self.dir_rec()
            .map(|d| d.subtree_end.to_native())
            .unwrap_or(self.index + 1)
    }
}

#[cold]
fn unreachable_root() -> ! {
    // Snapshot construction rejects archives without entry 0.
    panic!("validated snapshot has no root entry")
}

/// Iterator over the children of a directory, in rsync order.
#[derive(Clone)]
pub struct Children<'a> {
    snap: &'a ArchivedSnapshotV1,
    files: Range<u32>,
    subdirs: std::slice::Iter<'a, rkyv::Archived<u32>>,
}

impl<'a> Iterator for Children<'a> {
    type Item = EntryRef<'a>;

    fn next(&mut self) -> Option<EntryRef<'a>> {
        if let Some(i) = self.files.next() {
            return EntryRef::new(self.snap, i);
        }
        let s = self.subdirs.next()?;
        EntryRef::new(self.snap, s.to_native())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.files.len() + self.subdirs.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Children<'_> {}

/// See [`Snapshot::walk`](crate::Snapshot::walk). Storage order is depth-first pre-order,
/// so the walk is a linear scan of the subtree's index range with a stack of open
/// directories for building the relative paths.
pub(crate) fn walk(dir: EntryRef<'_>, f: &mut dyn FnMut(&[u8], EntryRef<'_>) -> WalkControl) {
    let snap = dir.snap;
    let end = dir.subtree_end();
    let mut path: Vec<u8> = Vec::with_capacity(256);
    // (subtree end, length of `path` before this directory's name was appended)
    let mut stack: Vec<(u32, usize)> = Vec::new();
    let mut i = dir.index + 1;
    while i < end {
        while let Some(&(e, len)) = stack.last() {
            if i < e {
                break;
            }
            path.truncate(len);
            stack.pop();
        }
        let Some(entry) = EntryRef::new(snap, i) else {
            return;
        };
        let prefix = path.len();
        if prefix > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(entry.name());
        let ctl = f(&path, entry);
        let sub_end = entry.subtree_end().max(i + 1);
        match ctl {
            WalkControl::Stop => return,
            WalkControl::Continue if entry.is_dir() && sub_end > i + 1 => {
                stack.push((sub_end, prefix));
                i += 1;
            }
            _ => {
                path.truncate(prefix);
                i = sub_end;
            }
        }
    }
}
