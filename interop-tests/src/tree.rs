//! Deterministic fixture trees: fixed names, contents, modes, owners and
//! mtimes, so that two builds (or two transfers of one build) compare equal.

use std::ffi::{CString, OsStr};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Whole-second base mtime for most fixture files (2023-11-14T22:13:20Z).
pub const BASE_MTIME: i64 = 1_700_000_000;
/// 1960-01-01T00:00:00Z: a negative mtime.
pub const MTIME_1960: i64 = -315_619_200;
/// 2100-01-01T00:00:00Z: beyond 2038.
pub const MTIME_2100: i64 = 4_102_444_800;
/// 2038-01-19T03:14:08Z: the first second that does not fit an i32.
pub const MTIME_Y2038: i64 = 2_147_483_648;
/// The mtime of the tiny "hello" fixture tree (2024-01-02T03:04:05Z).
pub const HELLO_MTIME: i64 = 1_704_164_645;
/// The size of [`build_sparse_big`]'s file: 4 GiB + 1 MiB.
pub const SPARSE_BIG_LEN: u64 = (4 << 30) + (1 << 20);

/// What [`build_edge_tree`] could create besides the always-present entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeTree {
    /// Character and block devices were created (needs root and `CAP_MKNOD`).
    pub devices: bool,
    /// Files owned by other users were created (needs root).
    pub owners: bool,
}

/// Deterministic pseudo-random bytes (splitmix64 seeded from `seed`).
pub fn pseudo_random(seed: &[u8], len: usize) -> Vec<u8> {
    // FNV-1a of the seed, then splitmix64.
    let mut state = seed.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Sets atime and mtime of `path` (not following a symlink) to `sec.nsec`.
pub fn set_mtime(path: &Path, sec: i64, nsec: i64) {
    let c = cpath(path);
    let ts = libc::timespec {
        tv_sec: sec as libc::time_t,
        tv_nsec: nsec as _,
    };
    let times = [ts, ts];
    // SAFETY: `c` is a valid NUL-terminated string and `times` points to two
    // initialised timespecs, both living across the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        panic!(
            "utimensat {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// Creates a FIFO at `path` with `mode`.
pub fn mkfifo(path: &Path, mode: u32) {
    let c = cpath(path);
    // SAFETY: `c` is a valid NUL-terminated path living across the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    if rc != 0 {
        panic!(
            "mkfifo {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    chmod(path, mode);
}

/// Creates a device node; `kind` is `libc::S_IFCHR` or `libc::S_IFBLK`.
/// Returns the OS error instead of panicking (containers often forbid it).
pub fn mknod(
    path: &Path,
    kind: libc::mode_t,
    mode: u32,
    major: u32,
    minor: u32,
) -> std::io::Result<()> {
    let c = cpath(path);
    let dev = libc::makedev(major, minor);
    // SAFETY: `c` is a valid NUL-terminated path living across the call; mknod
    // has no other memory-safety preconditions.
    let rc = unsafe { libc::mknod(c.as_ptr(), kind | mode as libc::mode_t, dev) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    chmod(path, mode);
    Ok(())
}

/// True when running as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Builds a tree under `root`, remembering directory mtimes so they can be set
/// last (creating entries changes a directory's mtime).
pub struct TreeBuilder {
    root: PathBuf,
    dirs: Vec<(PathBuf, u32, i64, i64)>,
    next_mtime: i64,
}

impl TreeBuilder {
    /// Starts a tree at `root` (created if missing), which gets `mode` and `mtime`.
    pub fn new(root: &Path, mode: u32, mtime: i64) -> TreeBuilder {
        std::fs::create_dir_all(root).unwrap_or_else(|e| panic!("mkdir {}: {e}", root.display()));
        TreeBuilder {
            root: root.to_path_buf(),
            dirs: vec![(root.to_path_buf(), mode, mtime, 0)],
            next_mtime: BASE_MTIME,
        }
    }

    /// The absolute path of `rel` (bytes, may be non-UTF-8).
    pub fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    fn tick(&mut self) -> i64 {
        self.next_mtime += 1;
        self.next_mtime
    }

    /// A directory with `mode`; its mtime is the next whole-second tick.
    pub fn dir(&mut self, rel: &[u8], mode: u32) -> PathBuf {
        let t = self.tick();
        self.dir_at(rel, mode, t, 0)
    }

    /// A directory with `mode` and mtime `sec.nsec`.
    pub fn dir_at(&mut self, rel: &[u8], mode: u32, sec: i64, nsec: i64) -> PathBuf {
        let p = self.path(rel);
        std::fs::create_dir(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        chmod(&p, mode);
        self.dirs.push((p.clone(), mode, sec, nsec));
        p
    }

    /// A regular file with `content`, `mode`, and the next whole-second mtime.
    pub fn file(&mut self, rel: &[u8], content: &[u8], mode: u32) -> PathBuf {
        let t = self.tick();
        self.file_at(rel, content, mode, t, 0)
    }

    /// A regular file with `content`, `mode` and mtime `sec.nsec`.
    pub fn file_at(
        &mut self,
        rel: &[u8],
        content: &[u8],
        mode: u32,
        sec: i64,
        nsec: i64,
    ) -> PathBuf {
        let p = self.path(rel);
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        chmod(&p, mode);
        set_mtime(&p, sec, nsec);
        p
    }

    /// A symlink to `target` with the next whole-second mtime.
    pub fn symlink(&mut self, rel: &[u8], target: &[u8]) -> PathBuf {
        let p = self.path(rel);
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &p)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", p.display()));
        let t = self.tick();
        set_mtime(&p, t, 0);
        p
    }

    /// A hard link `rel` to the existing `existing`.
    pub fn hard_link(&mut self, existing: &[u8], rel: &[u8]) -> PathBuf {
        let p = self.path(rel);
        std::fs::hard_link(self.path(existing), &p)
            .unwrap_or_else(|e| panic!("link {}: {e}", p.display()));
        p
    }

    /// Sets the directories' modes and mtimes, deepest (latest created) first.
    pub fn finish(self) {
        for (p, mode, sec, nsec) in self.dirs.iter().rev() {
            chmod(p, *mode);
            set_mtime(p, *sec, *nsec);
        }
    }
}

/// The 255-byte file name used by [`build_edge_tree`].
pub fn long_name() -> Vec<u8> {
    let mut n = vec![b'L'; 251];
    n.extend_from_slice(b".txt");
    n
}

/// Builds the edge-case tree under `root` (created if missing; must be empty).
///
/// Contents (paths relative to `root`):
/// - `size-N` for N in 0, 1, 700, 701, 32768, 32769, 200000, 1048576 (pseudo-random);
/// - `empty/`; `nested/l1/l2/l3/l4/l5/deep.txt`;
/// - odd names: `with space.txt`, `ü.txt`, `日本/語.txt`, `new\nline`, `-rf`, a
///   255-byte name, `bad\xffname\xfe` (not UTF-8);
/// - ordering stressers: dir `a/` (with `inner`) among files `a-`, `a.b`, `a0`,
///   `a_b`, `ab`; and `order/` with file `b`, dir `b-/`, file `b.c`, dir `b0/`;
/// - `links/`: `rel -> ../size-700`, `abs -> /etc/hostname`,
///   `dangling -> no/such/target`, `todir -> ../nested`;
/// - `fifo`; as root, `dev/char` (1:3) and `dev/block` (7:200) if mknod works;
/// - `hardlinks/one`, `hardlinks/two`, `hl-other/three`: one inode;
/// - `times/`: `old-1960`, `future-2100`, `y2038`, `epoch` (0), `nsec`
///   (1700000000.123456789), and dir `nsec-dir/` (…987654321);
/// - `perms/`: `secret` 0600, `private/` 0700 (with `inside`), `exec` 0755,
///   `suid` 04755, `sticky/` 01777;
/// - as root, `owners/uid1234` (1234:5678) and `owners/daemon` (1:1).
///
/// Everything else has mode 0644 (files) or 0755 (dirs) and whole-second mtimes.
pub fn build_edge_tree(root: &Path) -> EdgeTree {
    let mut t = TreeBuilder::new(root, 0o755, BASE_MTIME - 1000);
    for size in [0usize, 1, 700, 701, 32768, 32769, 200_000, 1 << 20] {
        let name = format!("size-{size}");
        t.file(
            name.as_bytes(),
            &pseudo_random(name.as_bytes(), size),
            0o644,
        );
    }

    t.dir(b"empty", 0o755);
    let mut deep = b"nested".to_vec();
    t.dir(&deep, 0o755);
    for level in 1..=5 {
        deep.extend_from_slice(format!("/l{level}").as_bytes());
        t.dir(&deep, 0o755);
    }
    deep.extend_from_slice(b"/deep.txt");
    t.file(&deep, b"five levels down\n", 0o644);

    t.file(b"with space.txt", b"space\n", 0o644);
    t.file("ü.txt".as_bytes(), "ü\n".as_bytes(), 0o644);
    t.dir("日本".as_bytes(), 0o755);
    t.file("日本/語.txt".as_bytes(), "日本語\n".as_bytes(), 0o644);
    t.file(b"new\nline", b"newline in name\n", 0o644);
    t.file(b"-rf", b"not an option\n", 0o644);
    t.file(&long_name(), b"long name\n", 0o644);
    t.file(b"bad\xffname\xfe", b"not utf-8\n", 0o644);

    t.dir(b"a", 0o755);
    t.file(b"a/inner", b"inside a\n", 0o644);
    for n in [&b"a-"[..], b"a.b", b"a0", b"a_b", b"ab"] {
        t.file(n, n, 0o644);
    }
    t.dir(b"order", 0o755);
    t.file(b"order/b", b"b\n", 0o644);
    t.dir(b"order/b-", 0o755);
    t.file(b"order/b-/x", b"x\n", 0o644);
    t.file(b"order/b.c", b"b.c\n", 0o644);
    t.dir(b"order/b0", 0o755);
    t.file(b"order/b0/y", b"y\n", 0o644);

    t.dir(b"links", 0o755);
    t.symlink(b"links/rel", b"../size-700");
    t.symlink(b"links/abs", b"/etc/hostname");
    t.symlink(b"links/dangling", b"no/such/target");
    t.symlink(b"links/todir", b"../nested");

    let fifo = t.path(b"fifo");
    mkfifo(&fifo, 0o644);
    let tk = t.tick();
    set_mtime(&fifo, tk, 0);

    let root_user = is_root();
    let mut devices = false;
    if root_user {
        t.dir(b"dev", 0o755);
        let (c, b) = (t.path(b"dev/char"), t.path(b"dev/block"));
        match mknod(&c, libc::S_IFCHR, 0o644, 1, 3)
            .and_then(|()| mknod(&b, libc::S_IFBLK, 0o640, 7, 200))
        {
            Ok(()) => {
                devices = true;
                let tk = t.tick();
                set_mtime(&c, tk, 0);
                set_mtime(&b, tk, 0);
            }
            Err(e) => {
                eprintln!("note: no device nodes in the edge tree: {e}");
                let _ = std::fs::remove_file(&c);
            }
        }
    }

    t.dir(b"hardlinks", 0o755);
    t.dir(b"hl-other", 0o755);
    t.file(b"hardlinks/one", &pseudo_random(b"hardlinks", 5000), 0o644);
    t.hard_link(b"hardlinks/one", b"hardlinks/two");
    t.hard_link(b"hardlinks/one", b"hl-other/three");

    t.dir(b"times", 0o755);
    t.file_at(b"times/old-1960", b"1960\n", 0o644, MTIME_1960, 0);
    t.file_at(b"times/future-2100", b"2100\n", 0o644, MTIME_2100, 0);
    t.file_at(b"times/y2038", b"2038\n", 0o644, MTIME_Y2038, 0);
    t.file_at(b"times/epoch", b"1970\n", 0o644, 0, 0);
    t.file_at(
        b"times/nsec",
        b"nanoseconds\n",
        0o644,
        BASE_MTIME,
        123_456_789,
    );
    t.dir_at(b"times/nsec-dir", 0o755, BASE_MTIME, 987_654_321);

    t.dir(b"perms", 0o755);
    t.file(b"perms/secret", b"secret\n", 0o600);
    t.dir(b"perms/private", 0o700);
    t.file(b"perms/private/inside", b"inside\n", 0o644);
    t.file(b"perms/exec", b"#!/bin/sh\necho hi\n", 0o755);
    t.file(b"perms/suid", b"setuid\n", 0o4755);
    t.dir(b"perms/sticky", 0o1777);

    let mut owners = false;
    if root_user {
        t.dir(b"owners", 0o755);
        let a = t.file(b"owners/uid1234", b"1234\n", 0o644);
        let b = t.file(b"owners/daemon", b"daemon\n", 0o644);
        std::os::unix::fs::lchown(&a, Some(1234), Some(5678)).expect("chown uid1234");
        std::os::unix::fs::lchown(&b, Some(1), Some(1)).expect("chown daemon");
        // chown clears setuid bits only; modes stay 0644.
        owners = true;
    }
    t.finish();
    EdgeTree { devices, owners }
}

/// Builds `root/sparse-big`: a sparse file of [`SPARSE_BIG_LEN`] bytes whose
/// last 16 bytes are `b"end of the file\n"`, mode 0644, mtime `BASE_MTIME`.
/// Returns its path.
pub fn build_sparse_big(root: &Path) -> PathBuf {
    std::fs::create_dir_all(root).expect("mkdir sparse root");
    let p = root.join("sparse-big");
    let mut f = std::fs::File::create(&p).expect("create sparse-big");
    f.set_len(SPARSE_BIG_LEN).expect("set_len");
    let tail = b"end of the file\n";
    f.seek(SeekFrom::Start(SPARSE_BIG_LEN - tail.len() as u64))
        .expect("seek");
    f.write_all(tail).expect("write tail");
    drop(f);
    chmod(&p, 0o644);
    set_mtime(&p, BASE_MTIME, 0);
    p
}

/// Builds the tiny tree used for the recorded protocol fixtures: `root/`
/// (0755) holding `hello.txt` (0644, `b"hello world\n"`), both with mtime
/// [`HELLO_MTIME`].
pub fn build_hello_tree(root: &Path) {
    let mut t = TreeBuilder::new(root, 0o755, HELLO_MTIME);
    t.file_at(b"hello.txt", b"hello world\n", 0o644, HELLO_MTIME, 0);
    t.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{diff_trees, snapshot_tree, Kind};

    #[test]
    fn pseudo_random_is_deterministic() {
        assert_eq!(pseudo_random(b"x", 100), pseudo_random(b"x", 100));
        assert_ne!(pseudo_random(b"x", 100), pseudo_random(b"y", 100));
        assert_eq!(pseudo_random(b"x", 13).len(), 13);
        assert_eq!(
            &pseudo_random(b"x", 100)[..13],
            &pseudo_random(b"x", 13)[..]
        );
    }

    #[test]
    fn edge_tree_is_reproducible_and_has_its_edges() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let ea = build_edge_tree(&a);
        let eb = build_edge_tree(&b);
        assert_eq!(ea, eb);
        let (sa, sb) = (snapshot_tree(&a), snapshot_tree(&b));
        assert_eq!(diff_trees(&sa, &sb), Vec::<String>::new());

        let e = |p: &[u8]| {
            sa.get(p)
                .unwrap_or_else(|| panic!("missing {}", String::from_utf8_lossy(p)))
        };
        assert_eq!(e(b"size-1048576").size, 1 << 20);
        assert_eq!(e(b"size-701").size, 701);
        assert_eq!(e(b"times/old-1960").mtime_sec, MTIME_1960);
        assert_eq!(e(b"times/future-2100").mtime_sec, MTIME_2100);
        assert_eq!(e(b"times/nsec").mtime_nsec, 123_456_789);
        assert_eq!(e(b"times/nsec-dir").mtime_nsec, 987_654_321);
        assert_eq!(e(b"perms/secret").mode, 0o600);
        assert_eq!(e(b"perms/private").mode, 0o700);
        assert_eq!(e(b"perms/suid").mode, 0o4755);
        assert_eq!(e(b"perms/sticky").mode, 0o1777);
        assert_eq!(
            e(b"links/dangling").link_target.as_deref(),
            Some(&b"no/such/target"[..])
        );
        assert_eq!(e(b"links/todir").kind, Kind::Symlink);
        assert_eq!(e(b"fifo").kind, Kind::Fifo);
        assert_eq!(e(b"bad\xffname\xfe").kind, Kind::File);
        assert_eq!(e(&long_name()).kind, Kind::File);
        assert_eq!(long_name().len(), 255);
        assert_eq!(e(b"nested/l1/l2/l3/l4/l5/deep.txt").kind, Kind::File);
        assert_eq!(e(b"empty").kind, Kind::Dir);
        let g = e(b"hardlinks/one").link_group;
        assert!(g.is_some());
        assert_eq!(e(b"hardlinks/two").link_group, g);
        assert_eq!(e(b"hl-other/three").link_group, g);
        assert_eq!(e(b".").mtime_sec, BASE_MTIME - 1000);
        // Directory mtimes survive the creation of their contents.
        assert_eq!(e(b"nested/l1").mtime_nsec, 0);
        assert!(e(b"nested/l1").mtime_sec > BASE_MTIME);
        if ea.devices {
            assert_eq!(e(b"dev/char").kind, Kind::CharDev);
            assert_eq!(e(b"dev/block").rdev, libc::makedev(7, 200));
        }
        if ea.owners {
            assert_eq!(
                (e(b"owners/uid1234").uid, e(b"owners/uid1234").gid),
                (1234, 5678)
            );
        }
    }

    #[test]
    fn hello_tree() {
        let t = tempfile::tempdir().unwrap();
        build_hello_tree(t.path());
        let s = snapshot_tree(t.path());
        assert_eq!(s.len(), 2);
        let h = s.get(b"hello.txt").unwrap();
        assert_eq!((h.size, h.mtime_sec, h.mode), (12, HELLO_MTIME, 0o644));
        assert_eq!(s.get(b".").unwrap().mtime_sec, HELLO_MTIME);
    }
}
