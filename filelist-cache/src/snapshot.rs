//! Opening a snapshot: map the file, check the header and the content hash, validate the
//! archive with bytecheck once, then check the structural invariants the readers rely on.
//!
//! The two `unsafe` sites of the crate live here: mapping the file, and reading the
//! already-validated archive without re-validating it (astral-sh/uv's `OwnedArchive`
//! pattern).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use memmap2::Mmap;
use rkyv::util::AlignedVec;
use xxhash_rust::xxh3::xxh3_64;

use crate::error::OpenError;
use crate::format::{
    flags, ArchivedEntryRecord, ArchivedSnapshotV1, Header, HeaderError, SnapshotV1, ARCHIVE_ALIGN,
    HEADER_LEN, NO_INDEX,
};
use crate::model::mode_is_dir;
use crate::order::{cmp_dir_names, cmp_file_names};
use crate::overlay::Overlay;
use crate::view::{EntryRef, WalkControl};

/// Where the snapshot's bytes live.
enum Backing {
    Map(Mmap),
    Owned(AlignedVec<16>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v.as_slice(),
        }
    }
}

/// One validated, immutable snapshot file (or in-memory image): the base of a
/// [`Snapshot`] view. Shared between generations behind an `Arc`.
pub(crate) struct BaseFile {
    backing: Backing,
    header: Header,
    /// The file the bytes were mapped from (none for in-memory images).
    path: Option<PathBuf>,
    /// Set when a newer base has been published: the file is removed when the last
    /// reference (the last session pinning a generation built on it) drops.
    retired: AtomicBool,
}

impl Drop for BaseFile {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            if let Some(p) = &self.path {
                // Unlinking a mapped file is fine: the mapping is dropped right after.
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

impl BaseFile {
    /// Maps and validates the file at `path` (see [`Snapshot::open`]).
    pub(crate) fn open(path: &Path) -> Result<BaseFile, OpenError> {
        let io_err = |source| OpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        // O_NONBLOCK: a FIFO at the path must not block the daemon; it is rejected below.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(io_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let len = meta.len();
        if len < HEADER_LEN as u64 {
            // Too short to be valid; read it so that the header check names the problem.
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io_err)?;
            return Self::from_vec(bytes, path);
        }
        // SAFETY: the mapping is read-only and private to this process. Snapshot files are
        // immutable once published: the writer creates a new file (new inode) and renames
        // it into place, and never writes to or truncates a published file, so the bytes
        // cannot change under the mapping. An outside process violating that rule could
        // at worst cause SIGBUS on a truncated page, not memory unsafety in safe readers
        // of already-validated data that is still present.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        let header = check(&map, path)?;
        Ok(BaseFile {
            backing: Backing::Map(map),
            header,
            path: Some(path.to_path_buf()),
            retired: AtomicBool::new(false),
        })
    }

    pub(crate) fn from_vec(bytes: Vec<u8>, path: &Path) -> Result<BaseFile, OpenError> {
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(&bytes);
        drop(bytes);
        let header = check(aligned.as_slice(), path)?;
        Ok(BaseFile {
            backing: Backing::Owned(aligned),
            header,
            path: None,
            retired: AtomicBool::new(false),
        })
    }

    /// The archive root. Validated at construction.
    pub(crate) fn archived(&self) -> &ArchivedSnapshotV1 {
        let bytes = self.backing.bytes();
        let archive = bytes.get(HEADER_LEN..).unwrap_or_default();
        // SAFETY: `check` ran `rkyv::access` (full bytecheck validation) on exactly these
        // bytes when `self` was constructed and returned Ok, and the bytes are immutable
        // for the life of `self` (an owned buffer, or a read-only mapping of an immutable
        // file, see `open`). The archive starts at offset 64 of a page-aligned mapping or a
        // 16-aligned buffer, satisfying its alignment (ARCHIVE_ALIGN = 8).
        unsafe { rkyv::access_unchecked::<ArchivedSnapshotV1>(archive) }
    }

    pub(crate) fn header(&self) -> &Header {
        &self.header
    }

    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub(crate) fn file_len(&self) -> usize {
        self.backing.bytes().len()
    }

    /// Number of entries of the file.
    pub(crate) fn len(&self) -> u32 {
        // Validation bounds the count below NO_INDEX.
        self.archived().entries.len() as u32
    }

    /// Marks the file for removal when the last reference drops.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }
}

/// A consistent, immutable view of one module tree: a validated snapshot file,
/// possibly with an overlay of directory listings re-read since it was written.
///
/// Cheap to share behind an `Arc` (and cheap to clone); all readers borrow from it.
/// Entry indices ([`EntryRef::index`]) are stable for the life of the view. In a view
/// without overlay (a freshly opened file) indices are the storage order, which is
/// rsync's sorted file-list order (see [`crate::order`]); entries added by an overlay get
/// indices past the file's, so callers must sort by name, not by index, when order matters.
/// Every walk, `children()` and lookup presents the merged tree in rsync order.
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) base: Arc<BaseFile>,
    pub(crate) ov: Overlay,
    pub(crate) generation: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("generation", &self.generation)
            .field("entries", &self.len())
            .field("overlay_records", &self.ov.record_count())
            .field("bytes", &self.base.file_len())
            .finish()
    }
}

impl Snapshot {
    /// Maps the snapshot file at `path` and fully validates it: the fixed header (magic,
    /// [`FORMAT_VERSION`](crate::FORMAT_VERSION), rkyv feature word, archive length,
    /// header hash), the xxh3 content hash, the rkyv archive (bytecheck), and the
    /// structural invariants (ranges, parent links, order). Never panics on bad input.
    ///
    /// The file must not be modified while mapped; snapshot files are immutable once
    /// published (see `docs/snapshot-format.md`).
    pub fn open(path: &Path) -> Result<Snapshot, OpenError> {
        Ok(Self::from_base(Arc::new(BaseFile::open(path)?)))
    }

    /// Validates an in-memory snapshot file image with exactly the checks of
    /// [`open`](Self::open) (for tests and fuzzing). The bytes are copied into an aligned
    /// buffer.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Snapshot, OpenError> {
        Ok(Self::from_base(Arc::new(BaseFile::from_vec(
            bytes,
            Path::new(""),
        )?)))
    }

    pub(crate) fn from_base(base: Arc<BaseFile>) -> Snapshot {
        let generation = base.header().generation;
        let ov = Overlay::new(base.len());
        Snapshot {
            base,
            ov,
            generation,
        }
    }

    /// The archive root of the base file.
    #[inline]
    pub(crate) fn archived(&self) -> &ArchivedSnapshotV1 {
        self.base.archived()
    }

    /// The generation number of this view (the file's for a plain opened file).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation number stored in the base snapshot file.
    pub fn base_generation(&self) -> u64 {
        self.base.header().generation
    }

    /// `st_dev` of the module root at scan time.
    pub fn root_dev(&self) -> u64 {
        self.base.header().root_dev
    }

    /// `st_ino` of the module root at scan time.
    pub fn root_ino(&self) -> u64 {
        self.base.header().root_ino
    }

    /// Number of entries in the (merged) tree, including the root.
    pub fn len(&self) -> usize {
        (i64::from(self.base.len()) + self.ov.entry_delta()).max(1) as usize
    }

    /// Always false: a valid snapshot contains at least its root.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of directories in the (merged) tree, including the root.
    pub fn dir_count(&self) -> usize {
        (self.archived().dirs.len() as i64 + self.ov.dir_delta()).max(1) as usize
    }

    /// One past the largest entry index of this view (indices of entries that were
    /// replaced by the overlay are not reused, so this can exceed [`len`](Self::len)).
    pub fn index_bound(&self) -> u32 {
        self.ov.next_index()
    }

    /// Size of the base snapshot file in bytes.
    pub fn file_len(&self) -> usize {
        self.base.file_len()
    }

    /// Number of records the overlay holds on top of the base file (0 for a plain file);
    /// a measure of how much a compaction would fold in.
    pub fn overlay_len(&self) -> usize {
        self.ov.record_count()
    }

    /// Number of directory listings the overlay replaces or adds.
    pub fn overlay_dirs(&self) -> usize {
        self.ov.listing_count()
    }

    /// The module root directory itself (entry 0, empty name).
    pub fn root(&self) -> EntryRef<'_> {
        match self.make(0) {
            Some(e) => e,
            None => unreachable_root(),
        }
    }

    /// The entry with index `index`, if any. Indices obtained from this view (lookups,
    /// walks, children) always resolve to the entry as this view has it.
    pub fn entry(&self, index: u32) -> Option<EntryRef<'_>> {
        self.make(index)
    }

    /// Resolves a module-relative path (`b""` or `b"."` is the root; components separated
    /// by `/`; empty and `.` components are ignored) without touching the file system,
    /// by a binary search per directory. `..` never matches: callers sanitise first.
    pub fn lookup(&self, rel: &[u8]) -> Option<EntryRef<'_>> {
        let mut cur = self.root();
        for comp in rel.split(|&b| b == b'/') {
            if comp.is_empty() || comp == b"." {
                continue;
            }
            cur = cur.child(comp)?;
        }
        Some(cur)
    }

    /// Depth-first walk of the subtree below `dir` in storage (= rsync) order. The
    /// callback gets the path relative to `dir` (`b"sub/file"`) and the entry; returning
    /// [`WalkControl::SkipDir`] on a directory skips its contents and
    /// [`WalkControl::Stop`] ends the walk. `dir` itself is not visited; a non-directory
    /// has nothing below it.
    pub fn walk(&self, dir: EntryRef<'_>, f: &mut dyn FnMut(&[u8], EntryRef<'_>) -> WalkControl) {
        crate::view::walk(dir, f)
    }

    /// The first difference between the trees of two views, comparing every entry's
    /// path and attributes in walk order (not indices, generations or file sizes), or
    /// `None` if they present identical trees. Used to check an overlay against a fresh
    /// scan and to skip publishing a rescan that found nothing new.
    pub fn first_difference(&self, other: &Snapshot) -> Option<String> {
        crate::view::first_difference(self, other)
    }
}

#[cold]
fn unreachable_root() -> ! {
    // Construction rejects archives without entry 0, and overlays never remove it.
    panic!("validated snapshot has no root entry")
}

/// Runs every check on a whole snapshot file image; returns its header.
fn check(file: &[u8], path: &Path) -> Result<Header, OpenError> {
    let path_buf = || -> PathBuf { path.to_path_buf() };
    let corrupt = |reason: String| OpenError::Corrupt {
        path: path_buf(),
        reason,
    };
    let header = Header::parse(file).map_err(|e| match e {
        HeaderError::BadMagic => OpenError::BadMagic { path: path_buf() },
        HeaderError::UnsupportedVersion { found, features } => OpenError::UnsupportedVersion {
            path: path_buf(),
            found,
            features,
        },
        HeaderError::Corrupt(r) => corrupt(r.to_string()),
    })?;
    let archive = &file[HEADER_LEN..];
    if xxh3_64(archive) != header.content_hash {
        return Err(corrupt("content hash mismatch".into()));
    }
    if archive.as_ptr().align_offset(ARCHIVE_ALIGN) != 0 {
        return Err(corrupt("archive is not aligned in memory".into()));
    }
    let snap = rkyv::access::<ArchivedSnapshotV1, rkyv::rancor::Error>(archive)
        .map_err(|e| corrupt(format!("archive validation failed: {e}")))?;
    validate(snap, &header).map_err(corrupt)?;
    Ok(header)
}

/// Checks the invariants the readers rely on (beyond rkyv's memory-safety checks), so
/// that lookups find what is there and walks see a well-formed tree:
/// - entry 0 is the root: a directory with no parent and no name;
/// - every other entry has an earlier directory as parent and a name that is non-empty,
///   not `.`/`..`, and free of `/` and NUL;
/// - blob ranges are in bounds; unknown flag bits are zero;
/// - directories and dir records correspond one to one;
/// - names are unique within a directory;
/// - each directory's non-directories follow it directly, sorted strictly bytewise, and
///   its subdirectories follow them, each directly after the previous one's subtree,
///   sorted strictly as `name/`, ending exactly at the directory's `subtree_end`.
fn validate(s: &ArchivedSnapshotV1, h: &Header) -> Result<(), String> {
    if s.generation.to_native() != h.generation
        || s.root_dev.to_native() != h.root_dev
        || s.root_ino.to_native() != h.root_ino
    {
        return Err("header and archive disagree".into());
    }
    let entries = s.entries.as_slice();
    let dirs = s.dirs.as_slice();
    let subdirs = s.subdirs.as_slice();
    let names = s.names.as_slice();
    let n = entries.len();
    if n == 0 {
        return Err("no root entry".into());
    }
    if n >= NO_INDEX as usize {
        return Err("too many entries".into());
    }
    let range_ok = |blob: &[u8], off: u32, len: u32| {
        (off as usize)
            .checked_add(len as usize)
            .is_some_and(|end| end <= blob.len())
    };
    let name_of = |i: usize| -> &[u8] {
        let e = &entries[i];
        let (off, len) = (
            e.name_off.to_native() as usize,
            e.name_len.to_native() as usize,
        );
        names.get(off..off + len).unwrap_or_default()
    };
    let name_of_rec = |e: &ArchivedEntryRecord| -> &[u8] {
        let (off, len) = (
            e.name_off.to_native() as usize,
            e.name_len.to_native() as usize,
        );
        names.get(off..off + len).unwrap_or_default()
    };
    let is_dir = |i: usize| mode_is_dir(entries[i].mode.to_native());

    for (i, e) in entries.iter().enumerate() {
        let bad = |what: &str| Err(format!("entry {i}: {what}"));
        if !range_ok(names, e.name_off.to_native(), e.name_len.to_native()) {
            return bad("name out of range");
        }
        if !range_ok(
            s.targets.as_slice(),
            e.target_off.to_native(),
            e.target_len.to_native(),
        ) {
            return bad("symlink target out of range");
        }
        if !range_ok(
            s.sums.as_slice(),
            e.sum_off.to_native(),
            e.sum_len.to_native(),
        ) {
            return bad("checksum out of range");
        }
        let fl = e.flags.to_native();
        if fl & !flags::KNOWN != 0 {
            return bad("unknown flags");
        }
        let parent = e.parent.to_native();
        let name = name_of(i);
        if i == 0 {
            if parent != NO_INDEX || !name.is_empty() || !is_dir(0) {
                return bad("malformed root");
            }
        } else {
            if parent as usize >= i || !is_dir(parent as usize) {
                return bad("bad parent");
            }
            if name.is_empty()
                || name == b"."
                || name == b".."
                || name.iter().any(|&b| b == b'/' || b == 0)
            {
                return bad("invalid name");
            }
        }
        let dir = e.dir.to_native();
        if is_dir(i) {
            if dirs.get(dir as usize).map(|d| d.entry.to_native() as usize) != Some(i) {
                return bad("directory without its dir record");
            }
        } else if dir != NO_INDEX || fl & (flags::UNREADABLE | flags::OTHER_FS) != 0 {
            return bad("directory data on a non-directory");
        }
    }

    for (d, r) in dirs.iter().enumerate() {
        let bad = |what: &str| Err(format!("dir record {d}: {what}"));
        let e = r.entry.to_native() as usize;
        if e >= n || entries[e].dir.to_native() as usize != d {
            return bad("entry link broken");
        }
        let end = r.subtree_end.to_native() as usize;
        if end <= e || end > n {
            return bad("subtree end out of range");
        }
        let nfiles = r.nfiles.to_native() as usize;
        let files_end = match (e + 1).checked_add(nfiles) {
            Some(x) if x <= end => x,
            _ => return bad("file range out of range"),
        };
        let mut prev_name: Option<&[u8]> = None;
        for f in &entries[e + 1..files_end] {
            if mode_is_dir(f.mode.to_native()) || f.parent.to_native() as usize != e {
                return bad("file range holds a foreign entry");
            }
            let name = name_of_rec(f);
            if prev_name.is_some_and(|p| cmp_file_names(p, name).is_ge()) {
                return bad("files not strictly sorted");
            }
            prev_name = Some(name);
        }
        let off = r.subdirs_off.to_native() as usize;
        let len = r.subdirs_len.to_native() as usize;
        let Some(list) = off.checked_add(len).and_then(|x| subdirs.get(off..x)) else {
            return bad("subdir list out of range");
        };
        let mut cursor = files_end;
        let mut prev: Option<usize> = None;
        for sd in list {
            let sd = sd.to_native() as usize;
            if sd != cursor
                || sd >= n
                || !is_dir(sd)
                || entries[sd].parent.to_native() as usize != e
            {
                return bad("subdir out of place");
            }
            if let Some(p) = prev {
                if cmp_dir_names(name_of(p), name_of(sd)).is_ge() {
                    return bad("subdirs not strictly sorted");
                }
            }
            // A name is unique in its directory, across files and subdirectories.
            let files = &entries[e + 1..files_end];
            if files
                .binary_search_by(|f| cmp_file_names(name_of_rec(f), name_of(sd)))
                .is_ok()
            {
                return bad("file and subdirectory share a name");
            }
            prev = Some(sd);
            let sub = entries[sd].dir.to_native() as usize;
            let Some(sub_end) = dirs.get(sub).map(|x| x.subtree_end.to_native() as usize) else {
                return bad("subdir without dir record");
            };
            if sub_end <= sd {
                return bad("subdir subtree end out of range");
            }
            cursor = sub_end;
        }
        if cursor != end {
            return bad("subtree does not end where recorded");
        }
        if entries[e].flags.to_native() & flags::OTHER_FS != 0 && end != e + 1 {
            return bad("other-file-system directory has contents");
        }
    }
    let root_dir = entries[0].dir.to_native() as usize;
    if dirs
        .get(root_dir)
        .map(|r| r.subtree_end.to_native() as usize)
        != Some(n)
    {
        return Err("root subtree does not cover the snapshot".into());
    }
    Ok(())
}

/// Serialises a snapshot model into a complete file image (header + archive).
pub(crate) fn encode(snap: &SnapshotV1) -> Result<(Header, AlignedVec), crate::ScanError> {
    let archive =
        rkyv::to_bytes::<rkyv::rancor::Error>(snap).map_err(|e| crate::ScanError::Serialize {
            message: e.to_string(),
        })?;
    let header = Header::for_archive(&archive, snap.generation, snap.root_dev, snap.root_ino);
    Ok((header, archive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Snapshot>();
    }

    #[test]
    fn fifo_and_directory_paths_are_io_errors_without_blocking() {
        let t = tempfile::tempdir().expect("tempdir");
        let fifo = t.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        assert!(matches!(Snapshot::open(&fifo), Err(OpenError::Io { .. })));
        assert!(matches!(
            Snapshot::open(t.path()),
            Err(OpenError::Io { .. })
        ));
    }
}
