//! Error types of the crate.
//!
//! `ScanError` is fatal for a build (the snapshot could not be produced at all); problems
//! with single entries are collected as [`ScanIssue`]s in the [`BuildReport`](crate::BuildReport)
//! instead. `OpenError` separates "not ours or too new" (rebuild) from "damaged"
//! (rebuild and warn) from plain IO errors.

use std::io;
use std::path::PathBuf;

/// A problem with one entry met during a scan; the scan went on without it (or, for an
/// unreadable directory, with the directory recorded but its contents missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanIssue {
    /// Module-relative path of the entry concerned (b"" for the root).
    pub path: Vec<u8>,
    /// Human-readable description in rsync's style, e.g.
    /// `opendir failed: Permission denied (13)`.
    pub message: String,
    /// The OS error number, when the problem came from a system call.
    pub errno: Option<i32>,
}

/// A fatal error of [`build_snapshot`](crate::build_snapshot).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The module root could not be examined (`stat` failed).
    #[error("cannot stat module root {}: {source}", path.display())]
    Root {
        /// The root path given to the build.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The module root exists but is not a directory.
    #[error("module root {} is not a directory", path.display())]
    NotADirectory {
        /// The root path given to the build.
        path: PathBuf,
    },
    /// The tree does not fit the format's limits (u32 entry indices, 32-bit relative
    /// pointers, so roughly 2 GiB of archive).
    #[error("tree too large for the snapshot format: {what}")]
    TooLarge {
        /// Which limit was hit.
        what: &'static str,
    },
    /// Serialising the archive failed.
    #[error("cannot serialise snapshot: {message}")]
    Serialize {
        /// rkyv's description of the failure.
        message: String,
    },
    /// The scan ran out of a process or system resource (descriptors,
    /// memory) part-way: the tree read so far is incomplete and must not be
    /// published as if unreadable directories were empty.
    #[error("scan aborted at '{path}': {source} (a resource limit, not a property of the tree)")]
    Resource {
        /// Module-relative path being read (lossy UTF-8).
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Writing, syncing or renaming the output file failed.
    #[error("cannot write snapshot {}: {source}", path.display())]
    Write {
        /// The file being written (the temporary file or the final path).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Why a snapshot could not be opened.
///
/// `BadMagic` and `UnsupportedVersion` mean "not a file of this build": rebuild it.
/// `Corrupt` means the file is ours but damaged: rebuild and warn. `Io` is an error of the
/// underlying file system.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file does not start with the snapshot magic.
    #[error("{}: not a snapshot file (bad magic)", path.display())]
    BadMagic {
        /// The file opened (empty for [`Snapshot::from_bytes`](crate::Snapshot::from_bytes)).
        path: PathBuf,
    },
    /// The file is a snapshot of another format version, or was written with other rkyv
    /// layout features (endianness, alignment, pointer width).
    #[error(
        "{}: snapshot format version {found} (layout features {features:#x}) is not supported; \
         this build reads version {} (features {:#x})",
        path.display(), crate::FORMAT_VERSION, crate::format::FEATURES
    )]
    UnsupportedVersion {
        /// The file opened.
        path: PathBuf,
        /// The format version stored in the file.
        found: u32,
        /// The layout feature word stored in the file (0 if the header was too short).
        features: u32,
    },
    /// The file is truncated, has a bad checksum or fails structural validation.
    #[error("{}: corrupt snapshot: {reason}", path.display())]
    Corrupt {
        /// The file opened.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// Reading or mapping the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file opened.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl OpenError {
    /// The file this error concerns (empty for in-memory snapshots).
    pub fn path(&self) -> &std::path::Path {
        match self {
            OpenError::BadMagic { path }
            | OpenError::UnsupportedVersion { path, .. }
            | OpenError::Corrupt { path, .. }
            | OpenError::Io { path, .. } => path,
        }
    }
}

/// Formats an OS error number the way rsync prints it: `Permission denied (13)`.
pub(crate) fn errno_text(errno: i32) -> String {
    let full = io::Error::from_raw_os_error(errno).to_string();
    let suffix = format!(" (os error {errno})");
    let text = full.strip_suffix(&suffix).unwrap_or(&full);
    format!("{text} ({errno})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_text_matches_rsync_style() {
        assert_eq!(errno_text(13), "Permission denied (13)");
        assert_eq!(errno_text(2), "No such file or directory (2)");
    }
}
