//! Borrowed, read-only views of a [`Snapshot`]: the base file merged with its overlay.
//! The rkyv types never leave the crate: readers see [`EntryRef`] accessors only.
//!
//! Every accessor is total: the invariants checked at open time (and kept by the
//! overlay's construction) make the fallbacks (empty names, `None`) unreachable, but
//! nothing here can panic even if they were not.
//!
//! Reading cost: a base directory with nothing changed at or below it ("pristine", see
//! [`crate::overlay`]) is read exactly like a plain snapshot file (binary searches over
//! the file's sorted ranges, walks as a linear scan of its contiguous subtree). Only
//! directories whose listings were re-read, and their ancestors, consult the overlay's
//! maps (one persistent-hash-map probe per entry).

use std::ops::Range;

use crate::format::{flags, ArchivedDirRecord, ArchivedEntryRecord, ArchivedSnapshotV1, NO_INDEX};
use crate::model::{mode_is_dir, S_IFLNK, S_IFMT, S_IFREG};
use crate::order::{cmp_dir_names, cmp_file_names};
use crate::overlay::{ListChild, Listing, ORec};
use crate::snapshot::Snapshot;

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

#[derive(Clone, Copy)]
enum Rec<'a> {
    Base(&'a ArchivedEntryRecord),
    Over(&'a ORec),
}

/// One entry of a snapshot view: a cheap, copyable borrowed view.
#[derive(Clone, Copy)]
pub struct EntryRef<'a> {
    snap: &'a Snapshot,
    arch: &'a ArchivedSnapshotV1,
    rec: Rec<'a>,
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

/// Where a directory's children are listed.
#[derive(Clone, Copy)]
enum Kids<'a> {
    /// The base file's listing; `pristine` when nothing at or below it changed.
    Base {
        d: &'a ArchivedDirRecord,
        pristine: bool,
    },
    /// A listing re-read by the overlay.
    Over(&'a Listing),
    None,
}

impl Snapshot {
    /// The entry `index` as this view has it (overlay record first, then the base).
    #[inline]
    pub(crate) fn make(&self, index: u32) -> Option<EntryRef<'_>> {
        let arch = self.archived();
        if let Some(r) = self.ov.rec(index) {
            return Some(EntryRef {
                snap: self,
                arch,
                rec: Rec::Over(r),
                index,
            });
        }
        Self::make_base(self, arch, index)
    }

    /// The base file's entry `index`, without consulting the overlay (only for entries
    /// below a pristine directory).
    #[inline]
    fn make_base<'a>(
        snap: &'a Snapshot,
        arch: &'a ArchivedSnapshotV1,
        index: u32,
    ) -> Option<EntryRef<'a>> {
        let rec = arch.entries.as_slice().get(index as usize)?;
        Some(EntryRef {
            snap,
            arch,
            rec: Rec::Base(rec),
            index,
        })
    }
}

macro_rules! field {
    ($self:ident, $base:ident, $over:expr) => {
        match $self.rec {
            Rec::Base(r) => r.$base.to_native(),
            Rec::Over(o) => $over(o),
        }
    };
}

impl<'a> EntryRef<'a> {
    /// The base directory record of this entry when it is a base directory.
    fn base_dir_rec(&self) -> Option<&'a ArchivedDirRecord> {
        if self.index >= self.snap.ov.base_len() {
            return None;
        }
        let base = self.arch.entries.as_slice().get(self.index as usize)?;
        let d = base.dir.to_native();
        if d == NO_INDEX {
            return None;
        }
        self.arch.dirs.as_slice().get(d as usize)
    }

    fn kids(&self) -> Kids<'a> {
        if !self.is_dir() {
            return Kids::None;
        }
        if let Some(l) = self.snap.ov.listing(self.index) {
            return Kids::Over(l);
        }
        match self.base_dir_rec() {
            Some(d) => Kids::Base {
                d,
                pristine: !self.snap.ov.is_touched(self.index),
            },
            None => Kids::None,
        }
    }

    /// Whether this entry heads a subtree that is exactly the base file's (fast paths).
    fn pristine_dir(&self) -> Option<&'a ArchivedDirRecord> {
        match self.kids() {
            Kids::Base { d, pristine: true } => Some(d),
            _ => None,
        }
    }

    fn flags(&self) -> u32 {
        field!(self, flags, |o: &ORec| o.flags)
    }

    /// Index of the entry in this view: stable for the life of the view (the daemon's
    /// file-list items refer to entries by it). Within a view opened from a file it is the
    /// storage position (rsync order); entries added by an overlay have indices past the
    /// file's, so do not use indices to sort.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Basename (`b""` for the root). Any bytes except NUL and `/`.
    pub fn name(&self) -> &'a [u8] {
        match self.rec {
            Rec::Base(r) => blob(
                self.arch.names.as_slice(),
                r.name_off.to_native(),
                r.name_len.to_native(),
            ),
            Rec::Over(o) => &o.name,
        }
    }

    /// Full `st_mode` (file type and permission bits).
    pub fn mode(&self) -> u32 {
        field!(self, mode, |o: &ORec| o.attrs.mode)
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
        field!(self, size, |o: &ORec| o.attrs.size)
    }

    /// Modification time, seconds since the epoch (may be negative).
    pub fn mtime(&self) -> i64 {
        field!(self, mtime, |o: &ORec| o.attrs.mtime)
    }

    /// Nanoseconds part of the modification time.
    pub fn mtime_nsec(&self) -> u32 {
        field!(self, mtime_nsec, |o: &ORec| o.attrs.mtime_nsec)
    }

    /// Inode change time, seconds.
    pub fn ctime(&self) -> i64 {
        field!(self, ctime, |o: &ORec| o.attrs.ctime)
    }

    /// Nanoseconds part of the inode change time.
    pub fn ctime_nsec(&self) -> u32 {
        field!(self, ctime_nsec, |o: &ORec| o.attrs.ctime_nsec)
    }

    /// Owner user id.
    pub fn uid(&self) -> u32 {
        field!(self, uid, |o: &ORec| o.attrs.uid)
    }

    /// Owner group id.
    pub fn gid(&self) -> u32 {
        field!(self, gid, |o: &ORec| o.attrs.gid)
    }

    /// Hard-link count (saturated at `u32::MAX`).
    pub fn nlink(&self) -> u64 {
        u64::from(field!(self, nlink, |o: &ORec| o.attrs.nlink))
    }

    /// `st_dev` of the file system holding the entry.
    pub fn dev(&self) -> u64 {
        field!(self, dev, |o: &ORec| o.attrs.dev)
    }

    /// Inode number.
    pub fn ino(&self) -> u64 {
        field!(self, ino, |o: &ORec| o.attrs.ino)
    }

    /// `major(st_rdev)` for character and block devices, 0 otherwise.
    pub fn rdev_major(&self) -> u32 {
        field!(self, rdev_major, |o: &ORec| o.attrs.rdev_major)
    }

    /// `minor(st_rdev)` for character and block devices, 0 otherwise.
    pub fn rdev_minor(&self) -> u32 {
        field!(self, rdev_minor, |o: &ORec| o.attrs.rdev_minor)
    }

    /// Symlink target bytes (empty for other types).
    pub fn link_target(&self) -> &'a [u8] {
        match self.rec {
            Rec::Base(r) => blob(
                self.arch.targets.as_slice(),
                r.target_off.to_native(),
                r.target_len.to_native(),
            ),
            Rec::Over(o) => &o.target,
        }
    }

    /// A directory whose contents could not be (fully) read during the scan; the daemon
    /// reports it like rsync (`opendir "x" failed: Permission denied (13)`) and sets
    /// `IOERR_GENERAL`.
    pub fn unreadable(&self) -> bool {
        self.flags() & flags::UNREADABLE != 0
    }

    /// The errno of the failed `opendir`/`readdir` of an [`unreadable`](Self::unreadable)
    /// directory.
    pub fn read_errno(&self) -> Option<i32> {
        if !self.unreadable() {
            return None;
        }
        let e = match self.rec {
            Rec::Base(_) => self.base_dir_rec().map(|d| d.error.to_native())?,
            Rec::Over(o) => o.dir_error,
        };
        Some(e as i32).filter(|&e| e != 0)
    }

    /// A directory on another file system than the module root that was not descended
    /// into (one-file-system build); it has no children, like a mount point under
    /// `rsync -x`.
    pub fn other_fs(&self) -> bool {
        self.flags() & flags::OTHER_FS != 0
    }

    /// The generation at which this directory's listing was read (`None` for
    /// non-directories).
    pub fn scan_generation(&self) -> Option<u64> {
        if !self.is_dir() {
            return None;
        }
        match self.rec {
            Rec::Base(_) => self.base_dir_rec().map(|d| d.scan_generation.to_native()),
            Rec::Over(o) => Some(o.scan_generation),
        }
    }

    /// The parent directory (`None` for the root).
    pub fn parent(&self) -> Option<EntryRef<'a>> {
        let p = field!(self, parent, |o: &ORec| o.parent);
        if p == NO_INDEX {
            return None;
        }
        self.snap.make(p)
    }

    /// Number of entries below this directory (its whole subtree, excluding itself).
    /// O(1) for unchanged parts of the tree, O(subtree) where the overlay changed it.
    pub fn subtree_len(&self) -> u32 {
        if let Some(d) = self.pristine_dir() {
            return d.subtree_end.to_native().saturating_sub(self.index + 1);
        }
        if !self.is_dir() {
            return 0;
        }
        let mut n = 0u32;
        walk(*self, &mut |_, _| {
            n = n.saturating_add(1);
            WalkControl::Continue
        });
        n
    }

    /// Immediate children in rsync order: non-directories, then subdirectories.
    /// Empty for non-directories.
    pub fn children(&self) -> Children<'a> {
        let it = match self.kids() {
            Kids::Base { d, pristine } => {
                let start = self.index.saturating_add(1);
                let files = start..start.saturating_add(d.nfiles.to_native());
                let off = d.subdirs_off.to_native() as usize;
                let len = d.subdirs_len.to_native() as usize;
                let list = off
                    .checked_add(len)
                    .and_then(|end| self.arch.subdirs.as_slice().get(off..end))
                    .unwrap_or_default();
                KidsIter::Base {
                    files,
                    subdirs: list.iter(),
                    checked: !pristine,
                }
            }
            Kids::Over(l) => KidsIter::Over(l.kids.iter()),
            Kids::None => KidsIter::Empty,
        };
        Children {
            snap: self.snap,
            arch: self.arch,
            it,
        }
    }

    /// The child named `name` (binary search: non-directories bytewise, then
    /// subdirectories as `name/`).
    pub fn child(&self, name: &[u8]) -> Option<EntryRef<'a>> {
        match self.kids() {
            Kids::Over(l) => self.snap.make(l.find(name)?),
            Kids::Base { d, pristine } => {
                let index = base_child(self.arch, self.index, d, name)?;
                if pristine {
                    Snapshot::make_base(self.snap, self.arch, index)
                } else {
                    self.snap.make(index)
                }
            }
            Kids::None => None,
        }
    }

    /// Per-file checksum `(algorithm id, digest)`; none are stored yet.
    pub fn checksum(&self) -> Option<(u8, &'a [u8])> {
        let Rec::Base(r) = self.rec else {
            return None;
        };
        let len = r.sum_len.to_native();
        if len == 0 {
            return None;
        }
        let algo = (r.flags.to_native() & flags::SUM_ALGO_MASK) >> flags::SUM_ALGO_SHIFT;
        Some((
            algo as u8,
            blob(self.arch.sums.as_slice(), r.sum_off.to_native(), len),
        ))
    }

    /// The owned attributes (for the updater's comparisons and compaction).
    pub(crate) fn attrs(&self) -> crate::model::Attrs {
        crate::model::Attrs {
            mode: self.mode(),
            uid: self.uid(),
            gid: self.gid(),
            nlink: field!(self, nlink, |o: &ORec| o.attrs.nlink),
            size: self.size(),
            mtime: self.mtime(),
            mtime_nsec: self.mtime_nsec(),
            ctime: self.ctime(),
            ctime_nsec: self.ctime_nsec(),
            dev: self.dev(),
            ino: self.ino(),
            rdev_major: self.rdev_major(),
            rdev_minor: self.rdev_minor(),
        }
    }

    /// The raw flag word and directory errno (for compaction and updates).
    pub(crate) fn raw_flags(&self) -> (u32, u32) {
        let err = match self.rec {
            Rec::Base(_) => self
                .base_dir_rec()
                .map(|d| d.error.to_native())
                .unwrap_or(0),
            Rec::Over(o) => o.dir_error,
        };
        (self.flags(), err)
    }

    /// The raw parent index (`NO_INDEX` for the root).
    pub(crate) fn parent_index(&self) -> u32 {
        field!(self, parent, |o: &ORec| o.parent)
    }
}

/// Binary search of `name` among base directory `dir_index`'s children.
fn base_child(
    arch: &ArchivedSnapshotV1,
    dir_index: u32,
    d: &ArchivedDirRecord,
    name: &[u8],
) -> Option<u32> {
    let entries = arch.entries.as_slice();
    let start = dir_index as usize + 1;
    let files = entries.get(start..start.checked_add(d.nfiles.to_native() as usize)?)?;
    let names = arch.names.as_slice();
    let name_of =
        |e: &ArchivedEntryRecord| blob(names, e.name_off.to_native(), e.name_len.to_native());
    if let Ok(k) = files.binary_search_by(|e| cmp_file_names(name_of(e), name)) {
        return Some((start + k) as u32);
    }
    let off = d.subdirs_off.to_native() as usize;
    let list = arch
        .subdirs
        .as_slice()
        .get(off..off.checked_add(d.subdirs_len.to_native() as usize)?)?;
    let k = list
        .binary_search_by(|s| {
            let e = entries.get(s.to_native() as usize);
            cmp_dir_names(e.map(name_of).unwrap_or_default(), name)
        })
        .ok()?;
    Some(list[k].to_native())
}

#[derive(Clone)]
enum KidsIter<'a> {
    Base {
        files: Range<u32>,
        subdirs: std::slice::Iter<'a, rkyv::Archived<u32>>,
        /// Consult the overlay for each child (the directory is not pristine).
        checked: bool,
    },
    Over(std::slice::Iter<'a, ListChild>),
    Empty,
}

/// Iterator over the children of a directory, in rsync order.
#[derive(Clone)]
pub struct Children<'a> {
    snap: &'a Snapshot,
    arch: &'a ArchivedSnapshotV1,
    it: KidsIter<'a>,
}

impl<'a> Iterator for Children<'a> {
    type Item = EntryRef<'a>;

    fn next(&mut self) -> Option<EntryRef<'a>> {
        match &mut self.it {
            KidsIter::Base {
                files,
                subdirs,
                checked,
            } => {
                let i = match files.next() {
                    Some(i) => i,
                    None => subdirs.next()?.to_native(),
                };
                if *checked {
                    self.snap.make(i)
                } else {
                    Snapshot::make_base(self.snap, self.arch, i)
                }
            }
            KidsIter::Over(it) => {
                let k = it.next()?;
                self.snap.make(k.index)
            }
            KidsIter::Empty => None,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = match &self.it {
            KidsIter::Base { files, subdirs, .. } => files.len() + subdirs.len(),
            KidsIter::Over(it) => it.len(),
            KidsIter::Empty => 0,
        };
        (n, Some(n))
    }
}

impl ExactSizeIterator for Children<'_> {}

/// See [`Snapshot::walk`](crate::Snapshot::walk). Depth-first pre-order over the merged
/// tree: directories re-read by the overlay are visited through their listings; every
/// pristine base subtree is a linear scan of its contiguous index range.
pub(crate) fn walk(dir: EntryRef<'_>, f: &mut dyn FnMut(&[u8], EntryRef<'_>) -> WalkControl) {
    let mut path: Vec<u8> = Vec::with_capacity(256);
    if let Some(d) = dir.pristine_dir() {
        linear_scan(dir, d, &mut path, f);
        return;
    }
    // (children of a directory, length of that directory's path in `path`)
    let mut stack: Vec<(Children<'_>, usize)> = vec![(dir.children(), 0)];
    while let Some((it, dir_len)) = stack.last_mut() {
        let dir_len = *dir_len;
        let Some(entry) = it.next() else {
            stack.pop();
            continue;
        };
        path.truncate(dir_len);
        if dir_len > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(entry.name());
        match f(&path, entry) {
            WalkControl::Stop => return,
            WalkControl::Continue if entry.is_dir() => {
                if let Some(d) = entry.pristine_dir() {
                    if linear_scan(entry, d, &mut path, f) {
                        return;
                    }
                } else {
                    let len = path.len();
                    stack.push((entry.children(), len));
                }
            }
            _ => {}
        }
    }
}

/// Walks the pristine base subtree below `dir` (base directory record `d`), with `path`
/// holding `dir`'s relative path (restored on return). Returns true if the callback
/// asked to stop.
fn linear_scan(
    dir: EntryRef<'_>,
    d: &ArchivedDirRecord,
    path: &mut Vec<u8>,
    f: &mut dyn FnMut(&[u8], EntryRef<'_>) -> WalkControl,
) -> bool {
    let (snap, arch) = (dir.snap, dir.arch);
    let end = d.subtree_end.to_native();
    let base_len = path.len();
    // (subtree end, length of `path` before this directory's name was appended)
    let mut stack: Vec<(u32, usize)> = Vec::new();
    let mut i = dir.index + 1;
    let mut stopped = false;
    while i < end {
        while let Some(&(e, len)) = stack.last() {
            if i < e {
                break;
            }
            path.truncate(len);
            stack.pop();
        }
        let Some(entry) = Snapshot::make_base(snap, arch, i) else {
            break;
        };
        let prefix = path.len();
        if prefix > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(entry.name());
        let ctl = f(path, entry);
        let sub_end = entry
            .base_dir_rec()
            .map(|d| d.subtree_end.to_native())
            .unwrap_or(i + 1)
            .max(i + 1);
        match ctl {
            WalkControl::Stop => {
                stopped = true;
                break;
            }
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
    path.truncate(base_len);
    stopped
}

/// A pull-style pre-order iterator over a view (for comparing two views in step).
struct PreOrder<'a> {
    stack: Vec<(Children<'a>, usize)>,
    path: Vec<u8>,
}

impl<'a> PreOrder<'a> {
    fn new(snap: &'a Snapshot) -> PreOrder<'a> {
        PreOrder {
            stack: vec![(snap.root().children(), 0)],
            path: Vec::new(),
        }
    }

    fn next(&mut self) -> Option<EntryRef<'a>> {
        loop {
            let (it, dir_len) = self.stack.last_mut()?;
            let dir_len = *dir_len;
            let Some(e) = it.next() else {
                self.stack.pop();
                continue;
            };
            self.path.truncate(dir_len);
            if dir_len > 0 {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(e.name());
            if e.is_dir() {
                self.stack.push((e.children(), self.path.len()));
            }
            return Some(e);
        }
    }
}

/// Compares one entry of two views (everything but indices and scan generations).
fn entry_difference(a: EntryRef<'_>, b: EntryRef<'_>) -> Option<String> {
    let fields: [(&str, i128, i128); 15] = [
        ("mode", a.mode().into(), b.mode().into()),
        ("uid", a.uid().into(), b.uid().into()),
        ("gid", a.gid().into(), b.gid().into()),
        ("size", a.size().into(), b.size().into()),
        ("mtime", a.mtime().into(), b.mtime().into()),
        ("mtime_nsec", a.mtime_nsec().into(), b.mtime_nsec().into()),
        ("ctime", a.ctime().into(), b.ctime().into()),
        ("ctime_nsec", a.ctime_nsec().into(), b.ctime_nsec().into()),
        ("nlink", a.nlink().into(), b.nlink().into()),
        ("dev", a.dev().into(), b.dev().into()),
        ("ino", a.ino().into(), b.ino().into()),
        ("rdev_major", a.rdev_major().into(), b.rdev_major().into()),
        ("rdev_minor", a.rdev_minor().into(), b.rdev_minor().into()),
        ("flags", a.raw_flags().0.into(), b.raw_flags().0.into()),
        ("dir errno", a.raw_flags().1.into(), b.raw_flags().1.into()),
    ];
    for (what, x, y) in fields {
        if x != y {
            return Some(format!("{what} {x} != {y}"));
        }
    }
    if a.link_target() != b.link_target() {
        return Some(format!(
            "link target {:?} != {:?}",
            a.link_target().escape_ascii().to_string(),
            b.link_target().escape_ascii().to_string()
        ));
    }
    None
}

/// See [`Snapshot::first_difference`].
pub(crate) fn first_difference(a: &Snapshot, b: &Snapshot) -> Option<String> {
    if let Some(d) = entry_difference(a.root(), b.root()) {
        return Some(format!("root: {d}"));
    }
    let (mut x, mut y) = (PreOrder::new(a), PreOrder::new(b));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return None,
            (Some(e), None) => {
                return Some(format!(
                    "{:?} only in the first view ({:?})",
                    x.path.escape_ascii().to_string(),
                    e
                ))
            }
            (None, Some(e)) => {
                return Some(format!(
                    "{:?} only in the second view ({:?})",
                    y.path.escape_ascii().to_string(),
                    e
                ))
            }
            (Some(e), Some(f)) => {
                if x.path != y.path || e.is_dir() != f.is_dir() {
                    return Some(format!(
                        "paths differ: {:?} vs {:?}",
                        x.path.escape_ascii().to_string(),
                        y.path.escape_ascii().to_string()
                    ));
                }
                if let Some(d) = entry_difference(e, f) {
                    return Some(format!("{:?}: {d}", x.path.escape_ascii().to_string()));
                }
            }
        }
    }
}
