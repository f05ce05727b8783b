//! The live layer: incremental refreshes, generations, persistence and recovery.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use filelist_cache::{
    build_snapshot, BuildOptions, OpenSource, RefreshKind, Snapshot, SnapshotStore,
    StoreOptions, WalkControl,
};

use crate::util::Dir;

/// Options without the watcher (explicit refreshes only) and without background work.
pub fn quiet_opts() -> StoreOptions {
    StoreOptions {
        watch: false,
        ..StoreOptions::default()
    }
}

/// A fresh full build of `root`, for comparison.
pub fn fresh(root: &Path) -> Snapshot {
    let t = tempfile::tempdir().expect("tempdir");
    let p = t.path().join("fresh.snap");
    build_snapshot(root, &p, &BuildOptions::default()).expect("fresh build");
    Snapshot::open(&p).expect("open fresh")
}

/// Every path with its index and a few attributes, in walk order.
pub fn listing(s: &Snapshot) -> Vec<(Vec<u8>, u32, u32, u64)> {
    let mut v = Vec::new();
    s.walk(s.root(), &mut |p, e| {
        v.push((p.to_vec(), e.index(), e.mode(), e.nlink()));
        WalkControl::Continue
    });
    v
}

pub fn assert_same_tree(got: &Snapshot, root: &Path) {
    let want = fresh(root);
    if let Some(d) = got.first_difference(&want) {
        panic!("merged view differs from a fresh build: {d}");
    }
    // Lookups of every path of the fresh build resolve in the view to the same kind.
    want.walk(want.root(), &mut |p, e| {
        let g = got.lookup(p).unwrap_or_else(|| panic!("lookup {:?}", p.escape_ascii().to_string()));
        assert_eq!(g.mode(), e.mode());
        assert_eq!(g.name(), e.name());
        // parent() of the looked-up entry leads back to the root with the same names.
        let mut names = Vec::new();
        let mut cur = g;
        while let Some(par) = cur.parent() {
            names.push(cur.name().to_vec());
            cur = par;
        }
        assert_eq!(cur.index(), 0);
        names.reverse();
        assert_eq!(names.join(&b'/'), p.to_vec());
        // entry(index) returns the same entry.
        assert_eq!(got.entry(g.index()).map(|x| x.name().to_vec()), Some(e.name().to_vec()));
        WalkControl::Continue
    });
    assert_eq!(got.len(), want.len(), "len");
    assert_eq!(got.dir_count(), want.dir_count(), "dir_count");
    // children() agrees with walk for every directory.
    got.walk(got.root(), &mut |_, e| {
        if e.is_dir() {
            let n = e.children().count();
            assert_eq!(n, e.children().len());
            for c in e.children() {
                assert_eq!(e.child(c.name()).map(|x| x.index()), Some(c.index()));
                assert_eq!(c.parent().map(|x| x.index()), Some(e.index()));
            }
        }
        WalkControl::Continue
    });
}

pub fn base_tree(d: &Dir) {
    d.mkdir(b"");
    d.file(b"top.txt", b"top");
    d.file(b"pub/a.deb", b"aaaa");
    d.file(b"pub/b.deb", b"bb");
    d.file(b"pub/sub/deep/x", b"x");
    d.file(b"pub/sub/deep/y", b"y");
    d.mkdir(b"pub/sub/empty");
    d.file(b"other/o1", b"o1");
    d.file(b"other/o2", b"o2");
    d.mkdir(b"perm");
    fs::set_permissions(d.path(b"perm"), fs::Permissions::from_mode(0o750)).expect("chmod");
    d.file(b"perm/p", b"p");
    d.file(b"victim", b"will become a symlink");
}

/// One mutation of the issue, with the directories a caller would name.
pub struct Mutation {
    pub what: &'static str,
    pub apply: fn(&Dir),
    pub dirs: &'static [&'static [u8]],
}

pub fn mutations() -> Vec<Mutation> {
    vec![
        Mutation {
            what: "create",
            apply: |d| d.file(b"pub/new.deb", b"new!"),
            dirs: &[b"pub"],
        },
        Mutation {
            what: "delete",
            apply: |d| fs::remove_file(d.path(b"pub/b.deb")).expect("rm"),
            dirs: &[b"pub"],
        },
        Mutation {
            what: "chmod 0750 -> 0755",
            apply: |d| {
                fs::set_permissions(d.path(b"perm"), fs::Permissions::from_mode(0o755))
                    .expect("chmod")
            },
            dirs: &[b"perm"],
        },
        Mutation {
            what: "rename a directory",
            apply: |d| fs::rename(d.path(b"pub/sub"), d.path(b"other/moved")).expect("mv"),
            dirs: &[b"pub", b"other"],
        },
        Mutation {
            what: "replace a file by a symlink",
            apply: |d| {
                fs::remove_file(d.path(b"victim")).expect("rm");
                d.symlink(b"victim", b"pub/a.deb");
            },
            dirs: &[b""],
        },
        Mutation {
            what: "hard link",
            apply: |d| {
                fs::hard_link(d.path(b"pub/a.deb"), d.path(b"other/a-link.deb")).expect("ln")
            },
            dirs: &[b"other"],
        },
        Mutation {
            what: "hard link to a file added since the base",
            apply: |d| {
                fs::hard_link(d.path(b"pub/new.deb"), d.path(b"other/new-link.deb")).expect("ln")
            },
            dirs: &[b"other"],
        },
        Mutation {
            what: "modify contents",
            apply: |d| fs::write(d.path(b"other/o1"), b"longer contents").expect("write"),
            dirs: &[b"other"],
        },
        Mutation {
            what: "remove a hard link",
            apply: |d| fs::remove_file(d.path(b"other/a-link.deb")).expect("rm"),
            dirs: &[b"other"],
        },
        Mutation {
            what: "new directory tree",
            apply: |d| {
                d.file(b"pub/fresh/dir/f1", b"1");
                d.file(b"pub/fresh/f0", b"0");
            },
            dirs: &[b"pub"],
        },
    ]
}

#[test]
fn explicit_refreshes_match_a_fresh_build_after_each_mutation() {
    let d = Dir::new();
    base_tree(&d);
    let state = d.tmp.path().join("state");
    let (store, report) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("store");
    assert_eq!(report.source, OpenSource::Built);
    let g0 = store.current();
    let g0_listing = listing(&g0);
    let original = fresh(&d.root());
    assert!(g0.first_difference(&original).is_none());
    let mut last = g0.number();
    for Mutation { what, apply, dirs } in mutations() {
        apply(&d);
        // Before the refresh the view is stale, and the comparison says so.
        assert!(
            store.current().first_difference(&fresh(&d.root())).is_some(),
            "{what}: change not visible to the comparison"
        );
        let r = store.refresh(dirs).expect("refresh");
        assert_eq!(r.kind, RefreshKind::Incremental);
        let g = store.current();
        assert!(r.published.is_some(), "{what}: nothing published");
        assert!(g.number() > last, "{what}: generation did not advance");
        last = g.number();
        assert!(g.overlay_len() > 0);
        let want = fresh(&d.root());
        if let Some(diff) = g.first_difference(&want) {
            panic!("after {what}: {diff}");
        }
        assert_same_tree(&g, &d.root());
        if what == "hard link" {
            // The other name's link count changed without any event naming it.
            assert_eq!(g.lookup(b"pub/a.deb").map(|e| e.nlink()), Some(2));
            assert_eq!(g.lookup(b"other/a-link.deb").map(|e| e.nlink()), Some(2));
        }
        if what == "chmod 0750 -> 0755" {
            assert_eq!(g.lookup(b"perm").map(|e| e.mode() & 0o7777), Some(0o755));
            assert_eq!(g0.lookup(b"perm").map(|e| e.mode() & 0o7777), Some(0o750));
        }
        if what == "rename a directory" {
            assert!(g.lookup(b"pub/sub").is_none());
            assert!(g.lookup(b"other/moved/deep/x").is_some_and(|e| e.is_file()));
        }
        if what == "replace a file by a symlink" {
            assert_eq!(g.lookup(b"victim").map(|e| e.link_target().to_vec()), Some(b"pub/a.deb".to_vec()));
        }
    }
    // The session that pinned the first generation still sees the original tree, with
    // the same indices.
    assert_eq!(listing(&g0), g0_listing);
    assert!(g0.first_difference(&original).is_none());
    // A refresh that finds nothing new publishes nothing.
    let r = store.refresh(&[b"pub", b"other"]).expect("refresh");
    assert_eq!(r.published, None);
}

#[test]
fn refreshing_a_vanished_or_unknown_directory_falls_back_to_its_parent() {
    let d = Dir::new();
    base_tree(&d);
    let state = d.tmp.path().join("state");
    let (store, _) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("store");
    fs::remove_dir_all(d.path(b"pub/sub")).expect("rm -r");
    d.file(b"pub/zz/new/deeper/f", b"f");
    // Name only directories that no longer exist or that the view does not know.
    store.refresh(&[b"pub/sub/deep", b"pub/zz/new/deeper"]).expect("refresh");
    assert_same_tree(&store.current(), &d.root());
    // Bad paths are refused.
    assert!(store.refresh(&[b"../etc"]).is_err());
}

#[test]
fn subtree_refresh_and_full_rescan() {
    let d = Dir::new();
    base_tree(&d);
    let state = d.tmp.path().join("state");
    let (store, _) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("store");
    // Changes deep below pub/sub, refreshed as one subtree.
    d.file(b"pub/sub/deep/z", b"zz");
    fs::write(d.path(b"pub/sub/deep/x"), b"changed x").expect("write");
    fs::remove_dir(d.path(b"pub/sub/empty")).expect("rmdir");
    let r = store.refresh_subtree(b"pub/sub").expect("subtree");
    assert_eq!(r.kind, RefreshKind::Incremental);
    assert!(r.dirs_listed >= 2);
    assert_same_tree(&store.current(), &d.root());
    // A full rescan with nothing new publishes nothing...
    let before = store.current().number();
    let r = store.refresh_path(None).expect("rescan");
    assert_eq!(r.kind, RefreshKind::FullRescan);
    assert_eq!(r.published, None);
    assert_eq!(store.current().number(), before);
    // ...and with a change, a new base file.
    d.file(b"other/o3", b"3");
    let r = store.rescan().expect("rescan");
    assert!(r.published.is_some());
    let g = store.current();
    assert_eq!(g.overlay_len(), 0);
    assert_same_tree(&g, &d.root());
}

#[test]
fn compaction_publishes_an_equal_tree_and_retires_the_old_file_when_the_last_reader_drops() {
    let d = Dir::new();
    base_tree(&d);
    let state = d.tmp.path().join("state");
    let (store, _) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("store");
    d.file(b"pub/c.deb", b"c");
    store.refresh(&[b"pub"]).expect("refresh");
    let session = store.current();
    let old_file = session.base_path().expect("file").to_path_buf();
    let before = listing(&session);
    let r = store.compact().expect("compact");
    assert_eq!(r.kind, RefreshKind::Compaction);
    let g = store.current();
    assert_eq!(g.overlay_len(), 0);
    assert_ne!(g.base_path(), Some(old_file.as_path()));
    assert_same_tree(&g, &d.root());
    // The pinned session still reads its file, which still exists...
    assert!(old_file.exists());
    assert_eq!(listing(&session), before);
    // ...until it is dropped.
    drop(session);
    assert!(!old_file.exists(), "retired file not removed");
    // Exactly one base file remains.
    let snaps: Vec<_> = fs::read_dir(&state)
        .expect("readdir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .collect();
    assert_eq!(snaps.len(), 1);
}

#[test]
fn reopen_serves_the_last_file_and_rejects_damaged_ones() {
    let d = Dir::new();
    base_tree(&d);
    let state = d.tmp.path().join("state");
    let (store, rep) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("store");
    assert_eq!(rep.source, OpenSource::Built);
    d.file(b"pub/c.deb", b"c");
    store.refresh(&[b"pub"]).expect("refresh");
    store.persist().expect("persist");
    let file = store.current().base_path().expect("path").to_path_buf();
    let number = store.current().base_generation();
    drop(store);

    // Reopen: served at once from the file, with the persisted change.
    let (store, rep) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("reopen");
    assert_eq!(rep.source, OpenSource::Opened);
    assert_eq!(rep.path, file);
    assert_eq!(rep.generation, number);
    assert!(rep.rejected.is_empty());
    assert!(store.current().lookup(b"pub/c.deb").is_some());
    assert!(store.current().number() >= number);
    // A second store on the same state is refused while the first lives.
    assert!(SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).is_err());
    drop(store);

    // Damage: flip a byte, truncate, foreign version, stray temp file.
    let damage: Vec<(&str, Box<dyn Fn(&Path)>)> = vec![
        ("flip", Box::new(|p: &Path| {
            let mut b = fs::read(p).expect("read");
            let at = b.len() / 2;
            b[at] ^= 0x40;
            fs::write(p, b).expect("write");
        })),
        ("truncate", Box::new(|p: &Path| {
            let b = fs::read(p).expect("read");
            fs::write(p, &b[..b.len() - 7]).expect("write");
        })),
        ("version", Box::new(|p: &Path| {
            let mut b = fs::read(p).expect("read");
            b[8] = b[8].wrapping_add(1);
            fs::write(p, b).expect("write");
        })),
    ];
    for (what, f) in damage {
        let (store, _) =
            SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("open");
        let file = store.current().base_path().expect("path").to_path_buf();
        drop(store);
        f(&file);
        fs::write(state.join(".mod.g00000000000000000099.snap.tmp.1.0"), b"partial").expect("temp");
        let (store, rep) =
            SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("reopen");
        assert_eq!(rep.source, OpenSource::Built, "{what}");
        assert_eq!(rep.rejected.len(), 1, "{what}: {:?}", rep.rejected);
        assert_eq!(rep.rejected[0].0, file);
        assert!(!file.exists(), "{what}: damaged file kept");
        assert!(rep.removed.iter().any(|p| p.to_string_lossy().contains(".tmp.")), "{what}");
        assert_same_tree(&store.current(), &d.root());
    }
}

#[test]
fn pinned_generation_stays_consistent_while_updates_publish() {
    let d = Dir::new();
    base_tree(&d);
    for i in 0..50 {
        d.file(format!("bulk/f{i:03}").as_bytes(), b"x");
    }
    let state = d.tmp.path().join("state");
    let (store, _) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("store");
    let pinned = store.current();
    let want = listing(&pinned);
    let reader = {
        let pinned = Arc::clone(&pinned);
        let want = want.clone();
        std::thread::spawn(move || {
            for _ in 0..200 {
                assert_eq!(listing(&pinned), want);
                for (p, idx, ..) in &want {
                    assert_eq!(pinned.lookup(p).map(|e| e.index()), Some(*idx));
                }
            }
        })
    };
    for round in 0..30 {
        d.file(format!("bulk/new{round}").as_bytes(), b"y");
        let _ = fs::remove_file(d.path(format!("bulk/f{round:03}").as_bytes()));
        store.refresh(&[b"bulk"]).expect("refresh");
        if round % 10 == 9 {
            store.compact().expect("compact");
        }
    }
    reader.join().expect("reader");
    assert_eq!(listing(&pinned), want);
    assert_same_tree(&store.current(), &d.root());
}
