//! Test helpers: a tree builder and an independent reference for rsync's order.

use std::cmp::Ordering;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use filelist_cache::{EntryRef, Snapshot, WalkControl};

/// A temporary directory tree (BurntSushi's `Dir` helper idea).
pub struct Dir {
    pub tmp: tempfile::TempDir,
}

impl Dir {
    pub fn new() -> Dir {
        Dir {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    /// Absolute path of a module-relative byte path.
    pub fn path(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            return self.root();
        }
        self.root().join(OsStr::from_bytes(rel))
    }

    pub fn mkdir(&self, rel: &[u8]) {
        std::fs::create_dir_all(self.path(rel)).expect("mkdir");
    }

    pub fn file(&self, rel: &[u8], contents: &[u8]) {
        if let Some(parent) = self.path(rel).parent() {
            std::fs::create_dir_all(parent).expect("mkdir parent");
        }
        std::fs::write(self.path(rel), contents).expect("write file");
    }

    pub fn symlink(&self, rel: &[u8], target: &[u8]) {
        std::os::unix::fs::symlink(OsStr::from_bytes(target), self.path(rel)).expect("symlink");
    }

    pub fn snap_path(&self) -> PathBuf {
        self.tmp.path().join("snapshot.bin")
    }
}

/// Whether the tests run as root (the owner of a freshly created file is the fsuid).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::NamedTempFile::new().expect("temp file");
    f.as_file().metadata().expect("fstat").uid() == 0
}

/// Compares two module-relative paths the way rsync's `f_name_cmp()` orders a file list
/// for protocol >= 29, written from the rule (not from the crate's code): split into
/// components; every component but the last, and the last of a directory, is a *path*
/// component compared as `name/`; the last component of a non-directory is an *item*.
/// At the first component that differs, an item sorts before a path; components of the
/// same kind compare bytewise (shorter first). A prefix sorts first.
pub fn rsync_cmp(a: &[u8], a_dir: bool, b: &[u8], b_dir: bool) -> Ordering {
    let ac: Vec<&[u8]> = a.split(|&c| c == b'/').collect();
    let bc: Vec<&[u8]> = b.split(|&c| c == b'/').collect();
    for k in 0..ac.len().min(bc.len()) {
        let a_path = k + 1 < ac.len() || a_dir;
        let b_path = k + 1 < bc.len() || b_dir;
        if ac[k] == bc[k] && a_path == b_path {
            continue;
        }
        if a_path != b_path {
            return if a_path {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let mut x = ac[k].to_vec();
        let mut y = bc[k].to_vec();
        if a_path {
            x.push(b'/');
            y.push(b'/');
        }
        return x.cmp(&y);
    }
    ac.len().cmp(&bc.len())
}

/// Every path below `root` (relative, as bytes) with "is a directory" per lstat, listed
/// with walkdir independently of the crate's scanner, then sorted with [`rsync_cmp`].
pub fn reference_order(root: &Path) -> Vec<(Vec<u8>, bool)> {
    let mut v: Vec<(Vec<u8>, bool)> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .map(|e| {
            let e = e.expect("walkdir");
            let rel = e.path().strip_prefix(root).expect("prefix");
            (rel.as_os_str().as_bytes().to_vec(), e.file_type().is_dir())
        })
        .collect();
    v.sort_by(|x, y| rsync_cmp(&x.0, x.1, &y.0, y.1));
    v
}

/// The snapshot's walk below `dir` as (relative path, is_dir, index).
pub fn walk_all(snap: &Snapshot, dir: EntryRef<'_>) -> Vec<(Vec<u8>, bool, u32)> {
    let mut out = Vec::new();
    snap.walk(dir, &mut |p, e| {
        out.push((p.to_vec(), e.is_dir(), e.index()));
        WalkControl::Continue
    });
    out
}

/// Prints the first difference of two path lists readably.
pub fn assert_same_paths(got: &[Vec<u8>], want: &[Vec<u8>]) {
    if got != want {
        let show = |v: &[Vec<u8>]| -> Vec<String> {
            v.iter().map(|p| p.escape_ascii().to_string()).collect()
        };
        let (g, w) = (show(got), show(want));
        let first = g
            .iter()
            .zip(&w)
            .position(|(a, b)| a != b)
            .unwrap_or(g.len().min(w.len()));
        panic!(
            "order differs at position {first}\n got: {:?}\nwant: {:?}",
            &g[first.saturating_sub(2)..(first + 3).min(g.len())],
            &w[first.saturating_sub(2)..(first + 3).min(w.len())]
        );
    }
}
