//! Appending entry records to a snapshot model: the one place that lays out
//! an [`EntryRecord`] (and its [`DirRecord`]) from attributes, shared by the
//! scanner (attributes from `fstatat`) and compaction (attributes from a
//! merged view).

use crate::error::ScanError;
use crate::format::{DirRecord, EntryRecord, SnapshotV1, NO_INDEX};
use crate::model::Attrs;

/// What a new record carries besides its attributes.
pub(crate) struct RecordInput<'a> {
    /// Index of the parent entry.
    pub parent: u32,
    /// Basename.
    pub name: &'a [u8],
    /// Symlink target (empty otherwise).
    pub target: &'a [u8],
    /// `flags::*` bits to store.
    pub flags: u32,
    /// errno of a failed read of this directory (0: none).
    pub dir_error: u32,
    /// Generation of the scan that read this directory.
    pub scan_generation: u64,
}

impl SnapshotV1 {
    /// Append one entry (and a [`DirRecord`] for a directory); returns its
    /// index. Every count is checked against the format's 32-bit fields.
    pub(crate) fn push_record(&mut self, r: &RecordInput<'_>, a: &Attrs) -> Result<u32, ScanError> {
        let index = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i < NO_INDEX)
            .ok_or(ScanError::TooLarge { what: "more than 2^32-1 entries" })?;
        let name_off = blob_push(&mut self.names, r.name, "file names exceed 4 GiB")?;
        let target_off = blob_push(&mut self.targets, r.target, "symlink targets exceed 4 GiB")?;
        let dir = if a.is_dir() {
            let d = u32::try_from(self.dirs.len())
                .ok()
                .filter(|&d| d < NO_INDEX)
                .ok_or(ScanError::TooLarge { what: "more than 2^32-1 directories" })?;
            self.dirs.push(DirRecord {
                entry: index,
                error: r.dir_error,
                scan_generation: r.scan_generation,
                ..DirRecord::default()
            });
            d
        } else {
            NO_INDEX
        };
        self.entries.push(EntryRecord {
            parent: r.parent,
            name_off,
            name_len: r.name.len() as u32,
            mode: a.mode,
            uid: a.uid,
            gid: a.gid,
            flags: r.flags,
            mtime_nsec: a.mtime_nsec,
            ctime_nsec: a.ctime_nsec,
            rdev_major: a.rdev_major,
            rdev_minor: a.rdev_minor,
            dir,
            target_off,
            target_len: r.target.len() as u32,
            sum_off: 0,
            sum_len: 0,
            nlink: a.nlink,
            mtime: a.mtime,
            ctime: a.ctime,
            size: a.size,
            dev: a.dev,
            ino: a.ino,
        });
        Ok(index)
    }
}

/// Append `bytes` to a blob; its offset, or an error past 4 GiB.
pub(crate) fn blob_push(blob: &mut Vec<u8>, bytes: &[u8], what: &'static str) -> Result<u32, ScanError> {
    let off = blob.len();
    if u32::try_from(off + bytes.len()).is_err() {
        return Err(ScanError::TooLarge { what });
    }
    blob.extend_from_slice(bytes);
    Ok(off as u32)
}
