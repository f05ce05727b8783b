//! Views with one extra, synthetic regular file at the top of the tree.
//!
//! The daemon serves generated files (a quick-fedora-mirror `fullfiletimelist-<module>`)
//! through the normal list and transfer path. [`Snapshot::with_virtual_file`] derives a
//! view of a generation in which such a file is an ordinary entry of the root directory:
//! lookups, walks, `children()` and every index-based access see it, while the base file
//! and the generation it came from are untouched (the overlay is persistent, so the
//! derived view costs one record and one replaced root listing).

use crate::model::{Attrs, S_IFMT, S_IFREG};
use crate::order::cmp_file_names;
use crate::overlay::{Listing, ORec};
use crate::Snapshot;

/// Attributes of a file added by [`Snapshot::with_virtual_file`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualAttrs {
    /// Permission bits (the file type is always "regular file").
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Length of the content in bytes.
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Inode change time, seconds.
    pub ctime: i64,
    /// `st_dev` to report (use the root's).
    pub dev: u64,
    /// `st_ino` to report (pick one no real file of the tree has).
    pub ino: u64,
}

/// Why [`Snapshot::with_virtual_file`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VirtualFileError {
    /// The name is empty, `.`, `..`, or contains `/` or NUL.
    #[error("invalid file name")]
    InvalidName,
    /// A directory of that name exists at the top of the tree.
    #[error("a directory of that name exists")]
    DirectoryExists,
    /// The view has no index left.
    #[error("no entry index left")]
    TooLarge,
}

impl Snapshot {
    /// A view equal to this one plus a regular file `name` in the root directory, with
    /// attributes `attrs`; returns the view and the new entry's index.
    ///
    /// A non-directory of the same name at the top of the tree is hidden by the new
    /// entry (it no longer appears in the root's listing or in lookups); a directory of
    /// that name makes this fail. The result is a separate view: `self` is unchanged, and
    /// the derived view shares the base file (it keeps it mapped while it lives).
    /// Deterministic: the same view and arguments give the same index.
    pub fn with_virtual_file(&self, name: &[u8], attrs: &VirtualAttrs) -> Result<(Snapshot, u32), VirtualFileError> {
        if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0) {
            return Err(VirtualFileError::InvalidName);
        }
        let root = self.root();
        let mut files: Vec<(u32, &[u8])> = Vec::new();
        let mut dirs: Vec<(u32, &[u8])> = Vec::new();
        let mut replaced = false;
        for c in root.children() {
            if c.name() == name {
                if c.is_dir() {
                    return Err(VirtualFileError::DirectoryExists);
                }
                replaced = true;
                continue;
            }
            if c.is_dir() {
                dirs.push((c.index(), c.name()));
            } else {
                files.push((c.index(), c.name()));
            }
        }
        let mut view = self.clone();
        let index = view.ov.alloc().ok_or(VirtualFileError::TooLarge)?;
        let at = files.partition_point(|(_, n)| cmp_file_names(n, name).is_lt());
        files.insert(at, (index, name));
        let listing = Listing::new(&files, &dirs);
        view.ov.set_rec(
            index,
            ORec {
                parent: 0,
                name: name.into(),
                target: Box::default(),
                attrs: Attrs {
                    mode: S_IFREG | (attrs.perm & !S_IFMT & 0o7777),
                    uid: attrs.uid,
                    gid: attrs.gid,
                    nlink: 1,
                    size: attrs.size,
                    mtime: attrs.mtime,
                    mtime_nsec: 0,
                    ctime: attrs.ctime,
                    ctime_nsec: 0,
                    dev: attrs.dev,
                    ino: attrs.ino,
                    rdev_major: 0,
                    rdev_minor: 0,
                },
                flags: 0,
                dir_error: 0,
                scan_generation: 0,
            },
        );
        view.ov.set_listing(0, listing);
        view.ov.touch(0);
        if !replaced {
            view.ov.add_counts(1, 0);
        }
        Ok((view, index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{build_snapshot, BuildOptions, WalkControl};

    fn attrs(size: u64) -> VirtualAttrs {
        VirtualAttrs { perm: 0o644, uid: 0, gid: 0, size, mtime: 1_700_000_000, ctime: 1_700_000_000, dev: 1, ino: u64::MAX }
    }

    fn snap(dir: &std::path::Path) -> Snapshot {
        let root = dir.join("m");
        std::fs::create_dir_all(root.join("sub/deep")).unwrap();
        std::fs::create_dir_all(root.join("zdir")).unwrap();
        for f in ["a", "ff", "zz", "sub/x", "sub/deep/y", "ffl-old"] {
            std::fs::write(root.join(f), b"data").unwrap();
        }
        let out = dir.join("s.snap");
        build_snapshot(&root, &out, &BuildOptions::default()).unwrap();
        Snapshot::open(&out).unwrap()
    }

    fn paths(s: &Snapshot) -> Vec<String> {
        let mut v = Vec::new();
        s.walk(s.root(), &mut |p, _| {
            v.push(String::from_utf8_lossy(p).into_owned());
            WalkControl::Continue
        });
        v
    }

    #[test]
    fn the_file_is_an_ordinary_root_entry_of_the_derived_view_only() {
        let d = tempfile::tempdir().unwrap();
        let s = snap(d.path());
        let before = paths(&s);
        let (v, idx) = s.with_virtual_file(b"fl", &attrs(42)).unwrap();
        // The original view is unchanged.
        assert_eq!(paths(&s), before);
        assert!(s.lookup(b"fl").is_none());
        // The derived view lists it in canonical order, among the root's files.
        let got = paths(&v);
        let names: Vec<&str> = v.root().children().map(|c| std::str::from_utf8(c.name()).unwrap()).collect();
        assert_eq!(names, ["a", "ff", "ffl-old", "fl", "zz", "sub", "zdir"]);
        assert_eq!(got.len(), before.len() + 1);
        assert_eq!(v.len(), s.len() + 1);
        let e = v.lookup(b"fl").unwrap();
        assert_eq!(e.index(), idx);
        assert!(e.is_file());
        assert_eq!((e.size(), e.mtime(), e.mode() & 0o7777, e.nlink()), (42, 1_700_000_000, 0o644, 1));
        assert_eq!(e.parent().unwrap().index(), 0);
        assert_eq!(v.entry(idx).unwrap().name(), b"fl");
        // Everything else still resolves to the same entries.
        for p in &before {
            let a = s.lookup(p.as_bytes()).unwrap();
            let b = v.lookup(p.as_bytes()).unwrap();
            assert_eq!((a.index(), a.size()), (b.index(), b.size()), "{p}");
        }
        // Deterministic index.
        assert_eq!(s.with_virtual_file(b"fl", &attrs(42)).unwrap().1, idx);
    }

    #[test]
    fn a_file_of_the_same_name_is_hidden_and_a_directory_refuses() {
        let d = tempfile::tempdir().unwrap();
        let s = snap(d.path());
        let old = s.lookup(b"ffl-old").unwrap().index();
        let (v, idx) = s.with_virtual_file(b"ffl-old", &attrs(7)).unwrap();
        assert_ne!(idx, old);
        assert_eq!(v.lookup(b"ffl-old").unwrap().index(), idx);
        assert_eq!(v.lookup(b"ffl-old").unwrap().size(), 7);
        assert_eq!(v.len(), s.len());
        assert_eq!(paths(&v).len(), paths(&s).len());
        assert_eq!(s.with_virtual_file(b"sub", &attrs(1)).unwrap_err(), VirtualFileError::DirectoryExists);
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
            assert_eq!(s.with_virtual_file(bad, &attrs(1)).unwrap_err(), VirtualFileError::InvalidName);
        }
    }
}
