//! On-disk layout: a fixed 64-byte header followed by one rkyv archive.
//!
//! The rkyv-derived types here are private to the crate; readers see them only through
//! [`EntryRef`](crate::EntryRef). See `docs/snapshot-format.md` for the full description,
//! the version policy and the crash-safety rules.

use rkyv::{Archive, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// Version of the snapshot format. Bump it on *any* change of the header, of the
/// archived types below, of their meaning, or of the pinned rkyv features.
///
/// History:
/// - 1: first format (header v1, `SnapshotV1`).
pub const FORMAT_VERSION: u32 = 1;

/// The first eight bytes of every snapshot file. Like PNG's signature: a non-ASCII first
/// byte and CR/LF/^Z catch text-mode mangling.
pub(crate) const MAGIC: [u8; 8] = [0x89, b'R', b'S', b'N', b'P', b'\r', b'\n', 0x1a];

/// Size of the fixed header; the archive starts right after it (64 keeps it aligned).
pub(crate) const HEADER_LEN: usize = 64;

/// rkyv layout features the archive was written with (pinned in the workspace
/// Cargo.toml); a build with other features must not read the file.
pub(crate) const FEATURE_LITTLE_ENDIAN: u32 = 1 << 0;
pub(crate) const FEATURE_ALIGNED: u32 = 1 << 1;
pub(crate) const FEATURE_POINTER_WIDTH_32: u32 = 1 << 2;
/// The feature word of this build.
pub(crate) const FEATURES: u32 = FEATURE_LITTLE_ENDIAN | FEATURE_ALIGNED | FEATURE_POINTER_WIDTH_32;

// Compile-time guards: if the workspace's rkyv feature pins change, these fail, and
// whoever changes them must bump FORMAT_VERSION and FEATURES.
const _: () = assert!(core::mem::size_of::<rkyv::vec::ArchivedVec<u8>>() == 8); // 32-bit pointers
const _: () = assert!(core::mem::align_of::<rkyv::Archived<u64>>() == 8); // aligned

// Archived record sizes are part of the format: a change here needs a FORMAT_VERSION bump.
const _: () = assert!(core::mem::size_of::<ArchivedEntryRecord>() == 112);
const _: () = assert!(core::mem::size_of::<ArchivedDirRecord>() == 32);
const _: () = assert!(core::mem::size_of::<ArchivedSnapshotV1>() == 72);

/// Alignment the archive needs in memory (the largest field alignment, u64).
pub(crate) const ARCHIVE_ALIGN: usize = 8;

/// Index value meaning "none" (the root's parent, a non-directory's dir record).
pub(crate) const NO_INDEX: u32 = u32::MAX;

/// `EntryRecord::flags` bits.
pub(crate) mod flags {
    /// Directory whose contents could not be (fully) read; `DirRecord::error` holds errno.
    pub const UNREADABLE: u32 = 1 << 0;
    /// Directory on another file system than the root, not descended into
    /// (one-file-system build). Its listing is empty.
    pub const OTHER_FS: u32 = 1 << 1;
    /// All flag bits defined by this version; others must be zero.
    pub const KNOWN: u32 = UNREADABLE | OTHER_FS | CLASS_MASK | SUM_ALGO_MASK;
    /// Bits 8..16: readability class (0 = unknown; reserved for later versions).
    pub const CLASS_SHIFT: u32 = 8;
    pub const CLASS_MASK: u32 = 0xff << CLASS_SHIFT;
    /// Bits 16..24: checksum algorithm id of the bytes at `sum_off/sum_len`.
    pub const SUM_ALGO_SHIFT: u32 = 16;
    pub const SUM_ALGO_MASK: u32 = 0xff << SUM_ALGO_SHIFT;
}

/// One file-system object. Entries are stored in depth-first pre-order, each directory
/// followed by its non-directories (sorted) and then by each subdirectory with its subtree.
#[derive(Archive, Serialize, Debug, Clone, Default)]
pub(crate) struct EntryRecord {
    /// Index of the parent directory's entry; `NO_INDEX` for the root.
    pub parent: u32,
    /// Basename: `names[name_off .. name_off + name_len]` (empty for the root).
    pub name_off: u32,
    pub name_len: u32,
    /// Full `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// See [`flags`].
    pub flags: u32,
    pub mtime_nsec: u32,
    pub ctime_nsec: u32,
    /// `major(st_rdev)` / `minor(st_rdev)` (glibc semantics); 0 for non-devices.
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// Index into `dirs` for a directory, `NO_INDEX` otherwise.
    pub dir: u32,
    /// Symlink target: `targets[target_off .. target_off + target_len]`.
    pub target_off: u32,
    pub target_len: u32,
    /// Per-file checksum: `sums[sum_off .. sum_off + sum_len]` (len 0 = none).
    pub sum_off: u32,
    pub sum_len: u32,
    /// `st_nlink`, saturated to u32.
    pub nlink: u32,
    pub mtime: i64,
    pub ctime: i64,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
}

/// One directory's listing.
#[derive(Archive, Serialize, Debug, Clone, Default)]
pub(crate) struct DirRecord {
    /// The directory's entry index.
    pub entry: u32,
    /// Number of non-directory children; they are entries `entry+1 ..= entry+nfiles`.
    pub nfiles: u32,
    /// Subdirectory entry indices, sorted: `subdirs[subdirs_off .. subdirs_off + subdirs_len]`.
    pub subdirs_off: u32,
    pub subdirs_len: u32,
    /// One past the last entry of this directory's subtree.
    pub subtree_end: u32,
    /// errno of the failed opendir/readdir when the entry is flagged UNREADABLE, else 0.
    pub error: u32,
    /// Generation at which this listing was read (room for incremental updates).
    pub scan_generation: u64,
}

/// The archive root.
#[derive(Archive, Serialize, Debug, Default)]
pub(crate) struct SnapshotV1 {
    /// Equals the header's generation.
    pub generation: u64,
    /// Identity of the root directory at scan time (equals the header's).
    pub root_dev: u64,
    pub root_ino: u64,
    pub entries: Vec<EntryRecord>,
    pub dirs: Vec<DirRecord>,
    pub subdirs: Vec<u32>,
    pub names: Vec<u8>,
    pub targets: Vec<u8>,
    pub sums: Vec<u8>,
}

/// The fixed header, all integers little-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 8 | magic |
/// | 8 | 4 | format version |
/// | 12 | 4 | rkyv feature word |
/// | 16 | 8 | archive length in bytes (file length = 64 + this) |
/// | 24 | 8 | xxh3-64 of the archive bytes |
/// | 32 | 8 | generation |
/// | 40 | 8 | root st_dev |
/// | 48 | 8 | root st_ino |
/// | 56 | 8 | xxh3-64 of header bytes 0..56 |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub version: u32,
    pub features: u32,
    pub archive_len: u64,
    pub content_hash: u64,
    pub generation: u64,
    pub root_dev: u64,
    pub root_ino: u64,
}

/// Why a header was rejected (mapped to [`OpenError`](crate::OpenError) by the caller).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    BadMagic,
    UnsupportedVersion { found: u32, features: u32 },
    Corrupt(&'static str),
}

impl Header {
    /// A header for `archive` written by this build.
    pub fn for_archive(archive: &[u8], generation: u64, root_dev: u64, root_ino: u64) -> Header {
        Header {
            version: FORMAT_VERSION,
            features: FEATURES,
            archive_len: archive.len() as u64,
            content_hash: xxh3_64(archive),
            generation,
            root_dev,
            root_ino,
        }
    }

    /// Serialises the header including its own hash.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.features.to_le_bytes());
        b[16..24].copy_from_slice(&self.archive_len.to_le_bytes());
        b[24..32].copy_from_slice(&self.content_hash.to_le_bytes());
        b[32..40].copy_from_slice(&self.generation.to_le_bytes());
        b[40..48].copy_from_slice(&self.root_dev.to_le_bytes());
        b[48..56].copy_from_slice(&self.root_ino.to_le_bytes());
        let h = xxh3_64(&b[0..56]);
        b[56..64].copy_from_slice(&h.to_le_bytes());
        b
    }

    /// Parses and checks the header at the start of `file` (the whole file's bytes):
    /// magic, version, header hash, feature word and archive length against the file
    /// length. The content hash is checked by the caller.
    pub fn parse(file: &[u8]) -> Result<Header, HeaderError> {
        if file.len() < MAGIC.len() {
            return if MAGIC.starts_with(file) {
                Err(HeaderError::Corrupt("truncated header"))
            } else {
                Err(HeaderError::BadMagic)
            };
        }
        if file[0..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = match file.get(8..12) {
            Some(v) => le_u32(v),
            None => return Err(HeaderError::Corrupt("truncated header")),
        };
        if version != FORMAT_VERSION {
            let features = file.get(12..16).map(le_u32).unwrap_or(0);
            return Err(HeaderError::UnsupportedVersion {
                found: version,
                features,
            });
        }
        let Some(b) = file.get(0..HEADER_LEN) else {
            return Err(HeaderError::Corrupt("truncated header"));
        };
        if xxh3_64(&b[0..56]) != le_u64(&b[56..64]) {
            return Err(HeaderError::Corrupt("header checksum mismatch"));
        }
        let features = le_u32(&b[12..16]);
        if features != FEATURES {
            return Err(HeaderError::UnsupportedVersion {
                found: version,
                features,
            });
        }
        let h = Header {
            version,
            features,
            archive_len: le_u64(&b[16..24]),
            content_hash: le_u64(&b[24..32]),
            generation: le_u64(&b[32..40]),
            root_dev: le_u64(&b[40..48]),
            root_ino: le_u64(&b[48..56]),
        };
        let actual = (file.len() - HEADER_LEN) as u64;
        if h.archive_len != actual {
            return Err(if h.archive_len > actual {
                HeaderError::Corrupt("file truncated (shorter than the header says)")
            } else {
                HeaderError::Corrupt("trailing bytes after the archive")
            });
        }
        Ok(h)
    }
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let archive = b"0123456789abcdef";
        let h = Header::for_archive(archive, 7, 8, 9);
        let mut file = h.to_bytes().to_vec();
        file.extend_from_slice(archive);
        assert_eq!(Header::parse(&file), Ok(h));
        // The length check catches a truncated archive.
        assert!(matches!(
            Header::parse(&file[..file.len() - 1]),
            Err(HeaderError::Corrupt(_))
        ));
    }

    #[test]
    fn archived_integers_are_little_endian() {
        // FEATURE_LITTLE_ENDIAN is only honest if rkyv really writes little-endian.
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&0x0102_0304u32).expect("serialise u32");
        assert_eq!(&bytes[..], &[4, 3, 2, 1]);
    }
}
