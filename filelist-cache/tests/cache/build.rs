//! Build + open round trips on real trees.

use std::fs::{self, File, FileTimes};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use filelist_cache::{build_snapshot, BuildOptions, OpenError, Snapshot, WalkControl};
use rustix::fs::{FileType, Mode, CWD};

use crate::util::{assert_same_paths, is_root, reference_order, walk_all, Dir};

const NAME_255: [u8; 255] = [b'x'; 255];

fn set_mtime(path: &std::path::Path, t: SystemTime) {
    let f = File::options()
        .write(true)
        .open(path)
        .expect("open for times");
    f.set_times(FileTimes::new().set_modified(t))
        .expect("set_times");
}

/// The tree of the round-trip test; returns the names it made specially.
fn make_rich_tree(d: &Dir) {
    d.mkdir(b"");
    d.file(b"file.txt", b"hello\n");
    d.mkdir(b"empty_dir");
    d.mkdir(b"nested/a/b/c");
    d.file(b"nested/a/b/c/deep.txt", b"deep");
    d.file(b"nested/a/top", b"");
    d.symlink(b"link_ok", b"file.txt");
    d.symlink(b"link_dangling", b"does/not/exist");
    d.symlink(b"nested/link_to_dir", b"../nested/a");
    rustix::fs::mknodat(
        CWD,
        d.path(b"fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .expect("mkfifo");
    if is_root() {
        let dev = rustix::fs::makedev(1, 3);
        rustix::fs::mknodat(
            CWD,
            d.path(b"cdev"),
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            dev,
        )
        .expect("mknod c");
        let dev = rustix::fs::makedev(259, 70000); // minor beyond 8 bits and 16 bits
        rustix::fs::mknodat(
            CWD,
            d.path(b"bdev"),
            FileType::BlockDevice,
            Mode::from_raw_mode(0o600),
            dev,
        )
        .expect("mknod b");
    } else {
        eprintln!("not root: skipping device nodes");
    }
    d.file(b"hard1", b"linked");
    fs::hard_link(d.path(b"hard1"), d.path(b"nested/hard2")).expect("hard link");
    // Awkward names.
    d.file(b"with space", b"");
    d.file(b"new\nline", b"");
    d.file("ünïcødé".as_bytes(), b"");
    d.file(b"\xff\xfe-latin1", b"");
    d.file(b"-leading-dash", b"");
    d.file(&NAME_255, b"");
    d.mkdir(b"dir with space/\xc3\x28");
    // Ordering cases: directories compare as name + "/".
    for dir in [
        &b"ord/a"[..],
        b"ord/a.b",
        b"ord/a-",
        b"ord/a0",
        b"ord/ab",
        b"ord/A",
    ] {
        d.mkdir(dir);
        let mut f = dir.to_vec();
        f.extend_from_slice(b"/f");
        d.file(&f, b"");
    }
    d.file(b"ord/a.c", b"");
    d.file(b"ord/a,", b"");
    d.file(b"ord/zzz", b"");
    for f in [
        &b"ord2/a"[..],
        b"ord2/a.b",
        b"ord2/a-",
        b"ord2/a0",
        b"ord2/b",
    ] {
        d.mkdir(b"ord2");
        d.file(f, b"");
    }
    d.mkdir(b"ord2/0dir");
    // Times.
    d.file(b"times/nsec", b"");
    set_mtime(
        &d.path(b"times/nsec"),
        UNIX_EPOCH + Duration::new(1_600_000_000, 123_456_789),
    );
    d.file(b"times/negative", b"");
    set_mtime(
        &d.path(b"times/negative"),
        UNIX_EPOCH - Duration::from_millis(999_500),
    );
    // Sparse file larger than 4 GiB (no data written).
    let f = File::create(d.path(b"sparse")).expect("create sparse");
    f.set_len(5 << 30).expect("set_len");
    d.file(b"mode640", b"");
    fs::set_permissions(d.path(b"mode640"), fs::Permissions::from_mode(0o640)).expect("chmod");
}

#[test]
fn round_trip_rich_tree() {
    let d = Dir::new();
    make_rich_tree(&d);
    let opts = BuildOptions {
        generation: 42,
        ..BuildOptions::default()
    };
    let report = build_snapshot(&d.root(), &d.snap_path(), &opts).expect("build");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let snap = Snapshot::open(&d.snap_path()).expect("open");
    assert_eq!(snap.generation(), 42);
    assert_eq!(snap.len() as u64, report.entries);
    assert_eq!(snap.dir_count() as u64, report.dirs);

    // Storage order equals the independently computed rsync order.
    let want = reference_order(&d.root());
    let got = walk_all(&snap, snap.root());
    assert_eq!(got.len() + 1, snap.len());
    let got_paths: Vec<Vec<u8>> = got.iter().map(|g| g.0.clone()).collect();
    let want_paths: Vec<Vec<u8>> = want.iter().map(|w| w.0.clone()).collect();
    assert_same_paths(&got_paths, &want_paths);
    // Indices are consecutive: storage order is the walk order.
    for (k, g) in got.iter().enumerate() {
        assert_eq!(g.2 as usize, k + 1);
    }

    // Every path resolves, and every attribute matches lstat.
    for (path, is_dir, index) in &got {
        let e = snap
            .lookup(path)
            .unwrap_or_else(|| panic!("lookup {}", path.escape_ascii()));
        assert_eq!(e.index(), *index);
        assert_eq!(e.is_dir(), *is_dir);
        let base = path.rsplit(|&b| b == b'/').next().expect("basename");
        assert_eq!(e.name(), base);
        let md = fs::symlink_metadata(d.path(path)).expect("lstat");
        assert_eq!(e.mode(), md.mode(), "{}", path.escape_ascii());
        assert_eq!(e.uid(), md.uid());
        assert_eq!(e.gid(), md.gid());
        assert_eq!(e.size(), md.size());
        assert_eq!(e.mtime(), md.mtime());
        assert_eq!(i64::from(e.mtime_nsec()), md.mtime_nsec());
        assert_eq!(e.ctime(), md.ctime());
        assert_eq!(e.nlink(), md.nlink());
        assert_eq!(e.dev(), md.dev());
        assert_eq!(e.ino(), md.ino());
        assert_eq!(e.is_symlink(), md.file_type().is_symlink());
        assert_eq!(e.is_file(), md.file_type().is_file());
        if md.file_type().is_symlink() {
            let t = fs::read_link(d.path(path)).expect("readlink");
            assert_eq!(
                e.link_target(),
                std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str())
            );
        } else {
            assert_eq!(e.link_target(), b"");
        }
        assert!(!e.unreadable());
        assert!(!e.other_fs());
        assert_eq!(e.checksum(), None);
        // Parent link and lookup of the parent agree.
        let parent_path = match path.iter().rposition(|&b| b == b'/') {
            Some(k) => &path[..k],
            None => &b""[..],
        };
        let p = e.parent().expect("parent");
        assert_eq!(
            p.index(),
            snap.lookup(parent_path).expect("parent lookup").index()
        );
        assert!(p.children().any(|c| c.index() == e.index()));
        assert_eq!(p.child(base).map(|c| c.index()), Some(e.index()));
        if *is_dir {
            assert_eq!(e.scan_generation(), Some(42));
        }
    }

    // Root.
    let root = snap.root();
    assert_eq!(root.index(), 0);
    assert_eq!(root.name(), b"");
    assert!(root.is_dir());
    assert!(root.parent().is_none());
    assert_eq!(snap.lookup(b"").map(|e| e.index()), Some(0));
    assert_eq!(snap.lookup(b".").map(|e| e.index()), Some(0));
    assert_eq!(root.subtree_len() as usize, snap.len() - 1);

    // Specific values.
    let e = |p: &[u8]| {
        snap.lookup(p)
            .unwrap_or_else(|| panic!("{}", p.escape_ascii()))
    };
    assert_eq!(e(b"sparse").size(), 5 << 30);
    assert_eq!(e(b"times/nsec").mtime(), 1_600_000_000);
    assert_eq!(e(b"times/nsec").mtime_nsec(), 123_456_789);
    assert_eq!(e(b"times/negative").mtime(), -1000);
    assert_eq!(e(b"times/negative").mtime_nsec(), 500_000_000);
    assert_eq!(e(b"link_dangling").link_target(), b"does/not/exist");
    assert_eq!(e(b"link_ok").size(), 8);
    assert_eq!(e(b"fifo").mode() & 0o170000, 0o010000);
    assert_eq!(e(b"hard1").ino(), e(b"nested/hard2").ino());
    assert_eq!(e(b"hard1").nlink(), 2);
    assert_eq!(e(b"mode640").mode(), 0o100640);
    assert_eq!(e(&NAME_255).name().len(), 255);
    assert!(e(b"nested/link_to_dir").is_symlink());
    assert!(
        snap.lookup(b"nested/link_to_dir/b").is_none(),
        "symlinks are not followed"
    );
    if is_root() {
        assert_eq!((e(b"cdev").rdev_major(), e(b"cdev").rdev_minor()), (1, 3));
        assert_eq!(
            (e(b"bdev").rdev_major(), e(b"bdev").rdev_minor()),
            (259, 70000)
        );
        assert_eq!(e(b"bdev").mode() & 0o170000, 0o060000);
    }
    assert_eq!(e(b"file.txt").rdev_major(), 0);

    // Explicit ordering expectations (on top of the reference comparison).
    let names = |p: &[u8]| -> Vec<Vec<u8>> { e(p).children().map(|c| c.name().to_vec()).collect() };
    let ord: Vec<&[u8]> = vec![
        b"a,", b"a.c", b"zzz", b"A", b"a-", b"a.b", b"a", b"a0", b"ab",
    ];
    assert_eq!(
        names(b"ord"),
        ord.iter().map(|x| x.to_vec()).collect::<Vec<_>>()
    );
    let ord2: Vec<&[u8]> = vec![b"a", b"a-", b"a.b", b"a0", b"b", b"0dir"];
    assert_eq!(
        names(b"ord2"),
        ord2.iter().map(|x| x.to_vec()).collect::<Vec<_>>()
    );

    // Lookups that must fail.
    for p in [
        &b"nope"[..],
        b"file.txt/x",
        b"..",
        b"nested/../file.txt",
        b"ord/a/g",
        b"ORD",
    ] {
        assert!(snap.lookup(p).is_none(), "{}", p.escape_ascii());
    }
    // Lenient forms resolve.
    assert_eq!(
        snap.lookup(b"./nested//a/").map(|x| x.index()),
        Some(e(b"nested/a").index())
    );
    assert!(e(b"file.txt").child(b"x").is_none());
    assert_eq!(e(b"file.txt").children().count(), 0);
    assert_eq!(snap.entry(snap.len() as u32).map(|x| x.index()), None);
    assert_eq!(snap.entry(1).map(|x| x.index()), Some(1));
}

#[test]
fn walk_of_a_subdirectory_is_relative_and_matches_rsync_order() {
    let d = Dir::new();
    make_rich_tree(&d);
    build_snapshot(&d.root(), &d.snap_path(), &BuildOptions::default()).expect("build");
    let snap = Snapshot::open(&d.snap_path()).expect("open");
    for sub in [&b"nested"[..], b"ord", b"nested/a/b/c", b"empty_dir"] {
        let dir = snap.lookup(sub).expect("lookup");
        let got: Vec<Vec<u8>> = walk_all(&snap, dir).into_iter().map(|g| g.0).collect();
        let want: Vec<Vec<u8>> = reference_order(&d.path(sub))
            .into_iter()
            .map(|w| w.0)
            .collect();
        assert_same_paths(&got, &want);
        assert_eq!(got.len(), dir.subtree_len() as usize);
    }
    // Walking a non-directory visits nothing.
    let mut n = 0;
    snap.walk(snap.lookup(b"file.txt").expect("file"), &mut |_, _| {
        n += 1;
        WalkControl::Continue
    });
    assert_eq!(n, 0);
}

#[test]
fn walk_control_skip_and_stop() {
    let d = Dir::new();
    d.mkdir(b"a/x");
    d.file(b"a/x/1", b"");
    d.file(b"a/2", b"");
    d.mkdir(b"b");
    d.file(b"b/3", b"");
    d.file(b"c", b"");
    build_snapshot(&d.root(), &d.snap_path(), &BuildOptions::default()).expect("build");
    let snap = Snapshot::open(&d.snap_path()).expect("open");
    let mut seen = Vec::new();
    snap.walk(snap.root(), &mut |p, _| {
        seen.push(p.to_vec());
        if p == b"a" {
            WalkControl::SkipDir
        } else {
            WalkControl::Continue
        }
    });
    assert_eq!(
        seen,
        vec![b"c".to_vec(), b"a".to_vec(), b"b".to_vec(), b"b/3".to_vec()]
    );
    let mut seen = Vec::new();
    snap.walk(snap.root(), &mut |p, _| {
        seen.push(p.to_vec());
        if p == b"a/x" {
            WalkControl::Stop
        } else {
            WalkControl::Continue
        }
    });
    assert_eq!(
        seen,
        vec![
            b"c".to_vec(),
            b"a".to_vec(),
            b"a/2".to_vec(),
            b"a/x".to_vec()
        ]
    );
}

#[test]
fn rebuild_replaces_the_file_and_old_mapping_stays_valid() {
    let d = Dir::new();
    d.mkdir(b"");
    d.file(b"one", b"");
    build_snapshot(
        &d.root(),
        &d.snap_path(),
        &BuildOptions {
            generation: 1,
            ..Default::default()
        },
    )
    .expect("build 1");
    let old = Snapshot::open(&d.snap_path()).expect("open 1");
    d.file(b"two", b"");
    build_snapshot(
        &d.root(),
        &d.snap_path(),
        &BuildOptions {
            generation: 2,
            ..Default::default()
        },
    )
    .expect("build 2");
    let new = Snapshot::open(&d.snap_path()).expect("open 2");
    assert_eq!((old.generation(), old.len()), (1, 2));
    assert_eq!((new.generation(), new.len()), (2, 3));
    assert!(old.lookup(b"two").is_none());
    assert!(new.lookup(b"two").is_some());
    // No temp files left next to the snapshot.
    let leftovers: Vec<_> = fs::read_dir(d.tmp.path())
        .expect("readdir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn root_may_be_a_symlink_but_must_be_a_directory() {
    let d = Dir::new();
    d.mkdir(b"");
    d.file(b"f", b"");
    let link = d.tmp.path().join("rootlink");
    std::os::unix::fs::symlink(d.root(), &link).expect("symlink");
    build_snapshot(&link, &d.snap_path(), &BuildOptions::default()).expect("build via symlink");
    let snap = Snapshot::open(&d.snap_path()).expect("open");
    assert!(snap.lookup(b"f").is_some());
    let err = build_snapshot(&d.path(b"f"), &d.snap_path(), &BuildOptions::default())
        .expect_err("file as root");
    assert!(
        matches!(err, filelist_cache::ScanError::NotADirectory { .. }),
        "{err}"
    );
    let err = build_snapshot(
        &d.path(b"missing"),
        &d.snap_path(),
        &BuildOptions::default(),
    )
    .expect_err("missing root");
    assert!(
        matches!(err, filelist_cache::ScanError::Root { .. }),
        "{err}"
    );
}

#[test]
fn open_missing_file_is_io_error() {
    let d = Dir::new();
    let err = Snapshot::open(&d.tmp.path().join("none")).expect_err("missing");
    assert!(matches!(err, OpenError::Io { .. }), "{err}");
    let err = Snapshot::open(d.tmp.path()).expect_err("a directory");
    assert!(matches!(err, OpenError::Io { .. }), "{err}");
}

/// Real unreadable directory. As root, permissions do not stop reads, so the scan runs in
/// a child process (this test binary again) as `nobody`.
#[test]
fn unreadable_directory_is_flagged_and_scan_goes_on() {
    let d = Dir::new();
    d.mkdir(b"a/locked/inner");
    d.file(b"a/locked/secret", b"");
    d.file(b"a/z", b"");
    d.mkdir(b"b");
    d.file(b"b/f", b"");
    fs::set_permissions(d.path(b"a/locked"), fs::Permissions::from_mode(0o000)).expect("chmod");
    let out = if is_root() {
        use std::os::unix::process::CommandExt;
        for p in [d.tmp.path().to_path_buf(), d.root()] {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        for p in [&b"a"[..], b"b"] {
            fs::set_permissions(d.path(p), fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([
                "--ignored",
                "--exact",
                "build::unreadable_child_helper",
                "--nocapture",
            ])
            .env("FLC_CHILD_ROOT", d.root())
            .env("FLC_CHILD_OUT", d.snap_path())
            .uid(65534)
            .gid(65534)
            .status()
            .expect("spawn child as nobody");
        assert!(status.success(), "child scan failed: {status}");
        d.snap_path()
    } else {
        let report =
            build_snapshot(&d.root(), &d.snap_path(), &BuildOptions::default()).expect("build");
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert_eq!(report.errors[0].path, b"a/locked");
        assert_eq!(report.errors[0].errno, Some(13));
        d.snap_path()
    };
    fs::set_permissions(d.path(b"a/locked"), fs::Permissions::from_mode(0o755))
        .expect("chmod back");
    let snap = Snapshot::open(&out).expect("open");
    let locked = snap.lookup(b"a/locked").expect("locked dir is listed");
    assert!(locked.unreadable());
    assert_eq!(locked.read_errno(), Some(13));
    assert_eq!(locked.children().count(), 0);
    assert!(!snap.lookup(b"a").expect("a").unreadable());
    assert!(snap.lookup(b"a/z").is_some());
    assert!(
        snap.lookup(b"b/f").is_some(),
        "scan went on after the unreadable directory"
    );
    assert!(snap.lookup(b"a/locked/secret").is_none());
}

/// Helper for the test above: does the scan in the child process. Run only by it.
#[test]
#[ignore = "helper run by unreadable_directory_is_flagged_and_scan_goes_on as nobody"]
fn unreadable_child_helper() {
    let (Some(root), Some(out)) = (
        std::env::var_os("FLC_CHILD_ROOT"),
        std::env::var_os("FLC_CHILD_OUT"),
    ) else {
        eprintln!("helper only: nothing to do without FLC_CHILD_ROOT/FLC_CHILD_OUT");
        return;
    };
    let report = build_snapshot(root.as_ref(), out.as_ref(), &BuildOptions::default())
        .expect("build as nobody");
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert_eq!(report.errors[0].path, b"a/locked");
    assert_eq!(
        report.errors[0].message,
        "opendir failed: Permission denied (13)"
    );
}

/// A tmpfs mounted inside the tree: with one_file_system the mount point is listed,
/// flagged and empty; without it, its contents are scanned.
#[test]
fn one_file_system_stops_at_mount_points() {
    let d = Dir::new();
    d.mkdir(b"mnt");
    d.file(b"top", b"");
    if !is_root() {
        eprintln!("skipping: mounting a tmpfs needs root");
        return;
    }
    let mnt = d.path(b"mnt");
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "flc-test"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("skipping: cannot mount a tmpfs here");
        return;
    }
    struct Umount(std::path::PathBuf);
    impl Drop for Umount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Umount(mnt.clone());
    d.file(b"mnt/inside", b"");
    build_snapshot(&d.root(), &d.snap_path(), &BuildOptions::default()).expect("build -x");
    let snap = Snapshot::open(&d.snap_path()).expect("open");
    let m = snap.lookup(b"mnt").expect("mount point listed");
    assert!(m.other_fs());
    assert!(!m.unreadable());
    assert_eq!(m.children().count(), 0);
    assert_ne!(m.dev(), snap.root().dev());
    assert!(snap.lookup(b"mnt/inside").is_none());

    let opts = BuildOptions {
        one_file_system: false,
        ..Default::default()
    };
    build_snapshot(&d.root(), &d.snap_path(), &opts).expect("build");
    let snap = Snapshot::open(&d.snap_path()).expect("open");
    assert!(!snap.lookup(b"mnt").expect("mnt").other_fs());
    assert!(snap.lookup(b"mnt/inside").is_some());
}

/// Differential check against stock rsync: `rsync -r --no-inc-recursive --list-only`
/// prints the sorted file list, which must equal our storage order.
#[test]
fn storage_order_matches_stock_rsync_list_only() {
    let Ok(out) = std::process::Command::new("rsync")
        .arg("--version")
        .output()
    else {
        eprintln!("skipping: stock rsync not installed");
        return;
    };
    assert!(out.status.success());
    let d = Dir::new();
    for dir in [
        &b"ord/a"[..],
        b"ord/a.b",
        b"ord/a-",
        b"ord/a0",
        b"ord/ab",
        b"ord/A",
        b"x.y/z",
    ] {
        d.mkdir(dir);
        let mut f = dir.to_vec();
        f.extend_from_slice(b"/f");
        d.file(&f, b"");
    }
    for f in [
        &b"ord/a.c"[..],
        b"ord/a,",
        b"ord/zzz",
        b"a",
        b"a.b",
        b"a-",
        b"x",
        b"x.y.z",
        b"x-y/q",
    ] {
        d.file(f, b"");
    }
    d.mkdir(b"x.y/z/deeper.d/e");
    d.mkdir(b"x.y/z/deeper");
    build_snapshot(&d.root(), &d.snap_path(), &BuildOptions::default()).expect("build");
    let snap = Snapshot::open(&d.snap_path()).expect("open");
    let ours: Vec<Vec<u8>> = walk_all(&snap, snap.root())
        .into_iter()
        .map(|g| g.0)
        .collect();

    let mut src = d.root().into_os_string();
    src.push("/");
    let out = std::process::Command::new("rsync")
        .args(["-r", "--no-inc-recursive", "--list-only"])
        .arg(&src)
        .output()
        .expect("run rsync");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Lines: "drwxr-xr-x          4,096 2024/01/01 00:00:00 name" (names here are plain).
    let theirs: Vec<Vec<u8>> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let s = std::str::from_utf8(l).expect("utf8");
            s.split_whitespace()
                .skip(4)
                .collect::<Vec<_>>()
                .join(" ")
                .into_bytes()
        })
        .filter(|n| n != b".")
        .collect();
    assert_same_paths(&ours, &theirs);
}
