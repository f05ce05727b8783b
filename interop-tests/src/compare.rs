//! Snapshots of a directory tree's metadata and content, and readable diffs
//! between two snapshots.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// The kind of a tree entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A Unix-domain socket.
    Socket,
    /// A character device.
    CharDev,
    /// A block device.
    BlockDev,
}

/// What a snapshot records for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's kind.
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 07777`).
    pub mode: u32,
    /// Size in bytes for files and symlinks; 0 for directories and specials
    /// (a directory's size is a filesystem detail).
    pub size: u64,
    /// Modification time, seconds since the epoch (may be negative).
    pub mtime_sec: i64,
    /// Modification time, nanoseconds part.
    pub mtime_nsec: i64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// A symlink's target bytes.
    pub link_target: Option<Vec<u8>>,
    /// xxh3-128 of a regular file's content.
    pub hash: Option<u128>,
    /// Device number for character and block devices; 0 otherwise.
    pub rdev: u64,
    /// For non-directories with more than one link: a group number, assigned
    /// in path order, shared by all paths of the tree that are the same inode.
    pub link_group: Option<u32>,
    /// 512-byte blocks allocated (compared only when asked: see [`DiffOptions`]).
    pub blocks: u64,
}

/// A whole tree: relative path bytes (`.` for the root) to entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeSnapshot {
    /// Entries by relative path (`b"."` is the root; `b"a/b"` below it).
    pub entries: BTreeMap<Vec<u8>, Entry>,
}

impl TreeSnapshot {
    /// The entry at `rel` (bytes relative to the root, `.` for the root).
    pub fn get(&self, rel: &[u8]) -> Option<&Entry> {
        self.entries.get(rel)
    }

    /// Number of entries, the root included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when not even the root exists.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn hash_file(path: &Path) -> std::io::Result<u128> {
    let mut f = File::open(path)?;
    let mut h = xxhash_rust::xxh3::Xxh3Default::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.digest128())
}

/// Snapshots `dir` recursively without following symlinks. A missing `dir`
/// gives an empty snapshot. Panics on IO errors (it is test code).
pub fn snapshot_tree(dir: &Path) -> TreeSnapshot {
    let mut snap = TreeSnapshot::default();
    if std::fs::symlink_metadata(dir).is_err() {
        return snap;
    }
    let mut inodes: HashMap<(u64, u64), u32> = HashMap::new();
    walk(dir, b".".to_vec(), &mut snap, &mut inodes);
    snap
}

fn walk(path: &Path, rel: Vec<u8>, snap: &mut TreeSnapshot, inodes: &mut HashMap<(u64, u64), u32>) {
    let md =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
    let ft = md.file_type();
    let kind = if ft.is_file() {
        Kind::File
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else if ft.is_char_device() {
        Kind::CharDev
    } else {
        Kind::BlockDev
    };
    let link_group = if kind != Kind::Dir && md.nlink() > 1 {
        let next = u32::try_from(inodes.len()).expect("fewer than 2^32 inodes");
        Some(*inodes.entry((md.dev(), md.ino())).or_insert(next))
    } else {
        None
    };
    let entry = Entry {
        kind,
        mode: md.mode() & 0o7777,
        size: if matches!(kind, Kind::File | Kind::Symlink) {
            md.size()
        } else {
            0
        },
        mtime_sec: md.mtime(),
        mtime_nsec: md.mtime_nsec(),
        uid: md.uid(),
        gid: md.gid(),
        link_target: (kind == Kind::Symlink).then(|| {
            std::fs::read_link(path)
                .unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()))
                .as_os_str()
                .as_bytes()
                .to_vec()
        }),
        hash: (kind == Kind::File)
            .then(|| hash_file(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))),
        rdev: if matches!(kind, Kind::CharDev | Kind::BlockDev) {
            md.rdev()
        } else {
            0
        },
        link_group,
        blocks: md.blocks(),
    };
    snap.entries.insert(rel.clone(), entry);
    if kind == Kind::Dir {
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(path)
            .unwrap_or_else(|e| panic!("readdir {}: {e}", path.display()))
            .map(|d| d.expect("dirent").file_name().as_bytes().to_vec())
            .collect();
        names.sort();
        for name in names {
            let child_rel = if rel == b"." {
                name.clone()
            } else {
                let mut r = rel.clone();
                r.push(b'/');
                r.extend_from_slice(&name);
                r
            };
            walk(
                &path.join(std::ffi::OsStr::from_bytes(&name)),
                child_rel,
                snap,
                inodes,
            );
        }
    }
}

/// What [`diff_trees_with`] compares beyond the defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffOptions {
    /// Compare allocated blocks (for `--sparse`/`--preallocate` cases).
    pub blocks: bool,
    /// Ignore directory mtimes.
    pub ignore_dir_mtime: bool,
}

/// Shows path bytes readably (non-UTF-8 and control bytes escaped).
pub fn show_path(p: &[u8]) -> String {
    p.escape_ascii().to_string()
}

/// A readable diff of two snapshots, one line per difference; empty when equal.
pub fn diff_trees(a: &TreeSnapshot, b: &TreeSnapshot) -> Vec<String> {
    diff_trees_with(a, b, DiffOptions::default())
}

/// How close to the current time an mtime must be to count as "set by the
/// clock" (see [`diff_trees_with`]).
pub const NOW_ISH: i64 = 86_400;

/// True when both mtimes are within [`NOW_ISH`] of `now`: neither run set
/// them (a destination root that only received files, a directory created
/// implicitly, a file written without `-t`), so they are wall-clock times
/// that legitimately differ. Fixture mtimes are all far from now.
fn both_now_ish(a: &Entry, b: &Entry, now: i64) -> bool {
    (a.mtime_sec - now).abs() < NOW_ISH && (b.mtime_sec - now).abs() < NOW_ISH
}

/// [`diff_trees`] with options.
///
/// Modification times that are "now-ish" (within [`NOW_ISH`] of the current
/// time) on both sides compare equal: they are wall-clock times, not set by
/// rsync on either side. One side now-ish and the other not is a difference.
pub fn diff_trees_with(a: &TreeSnapshot, b: &TreeSnapshot, opts: DiffOptions) -> Vec<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut out = Vec::new();
    for (path, ea) in &a.entries {
        let p = show_path(path);
        let Some(eb) = b.entries.get(path) else {
            out.push(format!("only in A: {p} ({:?})", ea.kind));
            continue;
        };
        let mut field = |name: &str, x: String, y: String| {
            if x != y {
                out.push(format!("{p}: {name} A={x} B={y}"));
            }
        };
        field("kind", format!("{:?}", ea.kind), format!("{:?}", eb.kind));
        if ea.kind != eb.kind {
            continue;
        }
        field(
            "mode",
            format!("{:04o}", ea.mode),
            format!("{:04o}", eb.mode),
        );
        field("size", ea.size.to_string(), eb.size.to_string());
        let skip_mtime =
            (opts.ignore_dir_mtime && ea.kind == Kind::Dir) || both_now_ish(ea, eb, now);
        if !skip_mtime {
            field(
                "mtime",
                format!("{}.{:09}", ea.mtime_sec, ea.mtime_nsec),
                format!("{}.{:09}", eb.mtime_sec, eb.mtime_nsec),
            );
        }
        field("uid", ea.uid.to_string(), eb.uid.to_string());
        field("gid", ea.gid.to_string(), eb.gid.to_string());
        field(
            "link target",
            ea.link_target.as_deref().map(show_path).unwrap_or_default(),
            eb.link_target.as_deref().map(show_path).unwrap_or_default(),
        );
        field(
            "content",
            ea.hash.map(|h| format!("{h:032x}")).unwrap_or_default(),
            eb.hash.map(|h| format!("{h:032x}")).unwrap_or_default(),
        );
        field("rdev", format!("{:#x}", ea.rdev), format!("{:#x}", eb.rdev));
        field(
            "hard-link group",
            format!("{:?}", ea.link_group),
            format!("{:?}", eb.link_group),
        );
        if opts.blocks {
            field("blocks", ea.blocks.to_string(), eb.blocks.to_string());
        }
    }
    for (path, eb) in &b.entries {
        if !a.entries.contains_key(path) {
            out.push(format!("only in B: {} ({:?})", show_path(path), eb.kind));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn equal_trees_and_each_kind_of_difference() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d.join("sub")).unwrap();
            std::fs::write(d.join("sub/f"), b"same").unwrap();
            std::fs::write(d.join("g"), b"one").unwrap();
            std::os::unix::fs::symlink("sub/f", d.join("l")).unwrap();
            std::fs::hard_link(d.join("g"), d.join("sub/g2")).unwrap();
            std::fs::set_permissions(d.join("g"), std::fs::Permissions::from_mode(0o640)).unwrap();
        }
        let mt = std::fs::FileTimes::new()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000));
        for d in [&a, &b] {
            for f in ["sub/f", "g", "sub", "."] {
                File::open(d.join(f)).unwrap().set_times(mt).unwrap();
            }
            // The symlink's own mtime too (else it is "now" and may differ).
            crate::tree::set_mtime(&d.join("l"), 1000, 0);
        }
        let (sa, sb) = (snapshot_tree(&a), snapshot_tree(&b));
        assert_eq!(diff_trees(&sa, &sb), Vec::<String>::new());
        assert_eq!(sa.get(b"g").unwrap().link_group, Some(0));
        assert_eq!(sa.get(b"sub/g2").unwrap().link_group, Some(0));
        assert_eq!(
            sa.get(b"l").unwrap().link_target.as_deref(),
            Some(&b"sub/f"[..])
        );

        std::fs::write(b.join("sub/f"), b"diff").unwrap();
        std::fs::set_permissions(b.join("g"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::remove_file(b.join("l")).unwrap();
        std::fs::write(b.join("new"), b"").unwrap();
        let d = diff_trees(&sa, &snapshot_tree(&b));
        assert!(d.iter().any(|l| l.starts_with("sub/f: content")), "{d:?}");
        assert!(d.iter().any(|l| l == "g: mode A=0640 B=0600"), "{d:?}");
        assert!(d.iter().any(|l| l == "only in A: l (Symlink)"), "{d:?}");
        assert!(d.iter().any(|l| l == "only in B: new (File)"), "{d:?}");
    }

    #[test]
    fn now_ish_mtimes_compare_equal_only_on_both_sides() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir_all(d).unwrap();
            std::fs::write(d.join("f"), b"x").unwrap();
            crate::tree::set_mtime(d, 1000, 0);
        }
        // Both written "now", a few ns apart: equal.
        assert_eq!(
            diff_trees(&snapshot_tree(&a), &snapshot_tree(&b)),
            Vec::<String>::new()
        );
        // One pinned, one now: a difference.
        crate::tree::set_mtime(&b.join("f"), 1000, 0);
        let d = diff_trees(&snapshot_tree(&a), &snapshot_tree(&b));
        assert!(d.iter().any(|l| l.starts_with("f: mtime")), "{d:?}");
    }

    #[test]
    fn missing_root_is_empty() {
        assert!(snapshot_tree(Path::new("/nonexistent/interop/x")).is_empty());
    }
}
