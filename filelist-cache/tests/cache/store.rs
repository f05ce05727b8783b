//! The live layer: incremental refreshes, generations, persistence and recovery.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use filelist_cache::{
    build_snapshot, BuildOptions, OpenSource, RefreshKind, Snapshot, SnapshotStore, StoreOptions,
    WalkControl,
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
        let g = got
            .lookup(p)
            .unwrap_or_else(|| panic!("lookup {:?}", p.escape_ascii().to_string()));
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
        assert_eq!(
            got.entry(g.index()).map(|x| x.name().to_vec()),
            Some(e.name().to_vec())
        );
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
            store
                .current()
                .first_difference(&fresh(&d.root()))
                .is_some(),
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
            assert_eq!(
                g.lookup(b"victim").map(|e| e.link_target().to_vec()),
                Some(b"pub/a.deb".to_vec())
            );
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
    store
        .refresh(&[b"pub/sub/deep", b"pub/zz/new/deeper"])
        .expect("refresh");
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
    // The explicit entry point by module name.
    let mut stores = filelist_cache::Stores::new();
    stores.insert("mod", store.clone());
    d.file(b"pub/sub/deep/by-script", b"s");
    let r = stores
        .refresh("mod", Some(b"pub"))
        .expect("module")
        .expect("refresh");
    assert!(r.published.is_some());
    assert!(store.current().lookup(b"pub/sub/deep/by-script").is_some());
    assert!(stores.refresh("nope", None).is_none());
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
    type Damage = Box<dyn Fn(&Path)>;
    let damage: Vec<(&str, Damage)> = vec![
        (
            "flip",
            Box::new(|p: &Path| {
                let mut b = fs::read(p).expect("read");
                let at = b.len() / 2;
                b[at] ^= 0x40;
                fs::write(p, b).expect("write");
            }),
        ),
        (
            "truncate",
            Box::new(|p: &Path| {
                let b = fs::read(p).expect("read");
                fs::write(p, &b[..b.len() - 7]).expect("write");
            }),
        ),
        (
            "version",
            Box::new(|p: &Path| {
                let mut b = fs::read(p).expect("read");
                b[8] = b[8].wrapping_add(1);
                fs::write(p, b).expect("write");
            }),
        ),
    ];
    for (what, f) in damage {
        let (store, _) = SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts())
            .expect("open");
        let file = store.current().base_path().expect("path").to_path_buf();
        drop(store);
        f(&file);
        fs::write(
            state.join(".mod.g00000000000000000099.snap.tmp.1.0"),
            b"partial",
        )
        .expect("temp");
        let (store, rep) =
            SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts())
                .expect("reopen");
        assert_eq!(rep.source, OpenSource::Built, "{what}");
        assert_eq!(rep.rejected.len(), 1, "{what}: {:?}", rep.rejected);
        assert_eq!(rep.rejected[0].0, file);
        assert!(!file.exists(), "{what}: damaged file kept");
        assert!(
            rep.removed
                .iter()
                .any(|p| p.to_string_lossy().contains(".tmp.")),
            "{what}"
        );
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

/// xorshift64*: deterministic pseudo-random numbers without a dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn parent_of(p: &[u8]) -> Vec<u8> {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => p[..i].to_vec(),
        None => Vec::new(),
    }
}

/// Every entry below the root as (relative path, is_dir), from the file system.
fn disk_entries(root: &Path) -> Vec<(Vec<u8>, bool)> {
    use std::os::unix::ffi::OsStrExt;
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .into_iter()
        .flatten()
        .map(|e| {
            let rel = e.path().strip_prefix(root).expect("prefix");
            (rel.as_os_str().as_bytes().to_vec(), e.file_type().is_dir())
        })
        .collect()
}

#[test]
fn random_mutations_with_refreshes_of_the_touched_directories() {
    // More seeds: FLC_RANDOM_SEEDS=100 cargo test ... random_mutations
    let seeds: u64 = std::env::var("FLC_RANDOM_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for seed in 0..seeds {
        let d = Dir::new();
        base_tree(&d);
        let state = d.tmp.path().join("state");
        let (store, _) = SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts())
            .expect("store");
        random_mutations(
            &d,
            &store,
            0x5eed_1234_abcd_0001 ^ (seed << 32 | seed),
            300,
            None,
        );
    }
}

/// Applies `steps` random mutations to the tree of `d`; after each, either refreshes the
/// touched directories explicitly (`watch` None) or waits for the watcher to publish
/// (recording the latency in `watch`); then compares with a fresh build.
pub fn random_mutations(
    d: &Dir,
    store: &SnapshotStore,
    seed: u64,
    steps: usize,
    mut watch: Option<&mut Vec<std::time::Duration>>,
) {
    use std::os::unix::ffi::OsStrExt;
    let mut rng = Rng(seed);
    let names: [&[u8]; 6] = [b"a", b"a.b", b"a-", b"b", b"zz\xff", b"new\nline"];
    for step in 0..steps {
        let all = disk_entries(&d.root());
        let dirs: Vec<Vec<u8>> = std::iter::once(Vec::new())
            .chain(all.iter().filter(|e| e.1).map(|e| e.0.clone()))
            .collect();
        let pick_dir = |rng: &mut Rng| dirs[rng.below(dirs.len())].clone();
        let join = |dir: &[u8], name: &[u8]| {
            let mut p = dir.to_vec();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(name);
            p
        };
        let mut touched: Vec<Vec<u8>> = Vec::new();
        let op = rng.below(9);
        let what;
        match op {
            0 | 1 => {
                let dir = pick_dir(&mut rng);
                let p = join(&dir, names[rng.below(names.len())]);
                what = "create file";
                if fs::symlink_metadata(d.path(&p)).is_err() {
                    d.file(&p, &vec![b'x'; rng.below(100)]);
                }
                touched.push(dir);
            }
            2 => {
                let dir = pick_dir(&mut rng);
                let p = join(&dir, names[rng.below(names.len())]);
                what = "mkdir with contents";
                if fs::symlink_metadata(d.path(&p)).is_err() {
                    d.file(&join(&p, b"inner"), b"i");
                }
                touched.push(dir);
            }
            3 => {
                what = "remove";
                if let Some((p, is_dir)) = all.get(rng.below(all.len())).cloned() {
                    if is_dir {
                        let _ = fs::remove_dir_all(d.path(&p));
                    } else {
                        let _ = fs::remove_file(d.path(&p));
                    }
                    touched.push(parent_of(&p));
                }
            }
            4 => {
                what = "rename";
                if let Some((p, _)) = all.get(rng.below(all.len())).cloned() {
                    let to_dir = pick_dir(&mut rng);
                    let to = join(&to_dir, names[rng.below(names.len())]);
                    if !to.starts_with(&p) && fs::symlink_metadata(d.path(&to)).is_err() {
                        let _ = fs::rename(d.path(&p), d.path(&to));
                    }
                    touched.push(parent_of(&p));
                    touched.push(to_dir);
                }
            }
            5 => {
                what = "chmod";
                if let Some((p, is_dir)) = all.get(rng.below(all.len())).cloned() {
                    if fs::symlink_metadata(d.path(&p)).is_ok_and(|m| !m.file_type().is_symlink()) {
                        let mode = if is_dir {
                            0o700 | rng.below(0o100) as u32
                        } else {
                            rng.below(0o1000) as u32
                        };
                        let _ = fs::set_permissions(d.path(&p), fs::Permissions::from_mode(mode));
                    }
                    touched.push(if is_dir { p.clone() } else { parent_of(&p) });
                }
            }
            6 => {
                what = "hard link";
                let files: Vec<_> = all.iter().filter(|e| !e.1).collect();
                if let Some((p, _)) = files.get(rng.below(files.len())).cloned() {
                    let to_dir = pick_dir(&mut rng);
                    let to = join(&to_dir, names[rng.below(names.len())]);
                    if fs::symlink_metadata(d.path(&to)).is_err() {
                        let _ = fs::hard_link(d.path(p), d.path(&to));
                    }
                    touched.push(to_dir);
                }
            }
            7 => {
                what = "replace by symlink";
                let files: Vec<_> = all.iter().filter(|e| !e.1).collect();
                if let Some((p, _)) = files.get(rng.below(files.len())).cloned() {
                    let _ = fs::remove_file(d.path(p));
                    d.symlink(p, &vec![b't'; 1 + rng.below(30)]);
                    touched.push(parent_of(p));
                }
            }
            _ => {
                what = "write";
                let files: Vec<_> = all.iter().filter(|e| !e.1).collect();
                if let Some((p, _)) = files.get(rng.below(files.len())).cloned() {
                    if fs::symlink_metadata(d.path(p)).is_ok_and(|m| m.is_file()) {
                        let _ = fs::write(d.path(p), vec![b'y'; rng.below(300)]);
                    }
                    touched.push(parent_of(p));
                }
            }
        }
        let t_mutated = std::time::Instant::now();
        let want = fresh(&d.root());
        match watch.as_deref_mut() {
            None => {
                let refs: Vec<&[u8]> = touched.iter().map(|p| p.as_slice()).collect();
                store.refresh(&refs).expect("refresh");
            }
            Some(lat) => {
                while store.current().first_difference(&want).is_some()
                    && t_mutated.elapsed() < std::time::Duration::from_secs(20)
                {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                lat.push(t_mutated.elapsed());
            }
        }
        if let Some(diff) = store.current().first_difference(&want) {
            panic!(
                "seed {seed:#x} step {step} ({what}, refreshed {:?}): {diff}",
                touched
                    .iter()
                    .map(|p| p.escape_ascii().to_string())
                    .collect::<Vec<_>>()
            );
        }
        if step % 50 == 49 {
            assert_same_tree(&store.current(), &d.root());
            store.compact().expect("compact");
            if watch.is_none() {
                assert_eq!(store.current().overlay_len(), 0);
            }
        }
        let _ = std::ffi::OsStr::from_bytes(b"");
    }
}

#[test]
fn refreshes_during_heavy_operations_are_not_lost() {
    let d = Dir::new();
    base_tree(&d);
    for k in 0..20 {
        for j in 0..200 {
            d.file(format!("bulk{k:02}/f{j:04}").as_bytes(), b"");
        }
    }
    let state = d.tmp.path().join("state");
    let (store, _) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("store");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let heavy = {
        let store = store.clone();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                if n % 2 == 0 {
                    store.compact().expect("compact");
                } else {
                    store.rescan().expect("rescan");
                }
                n += 1;
            }
            n
        })
    };
    for i in 0..150 {
        let dir = format!("bulk{:02}", i % 20);
        d.file(format!("{dir}/new{i}").as_bytes(), b"n");
        store.refresh(&[dir.as_bytes()]).expect("refresh");
        // Visible immediately after the refresh returns, heavy work or not.
        assert!(
            store
                .current()
                .lookup(format!("{dir}/new{i}").as_bytes())
                .is_some(),
            "lost new{i}"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let heavy_runs = heavy.join().expect("heavy thread");
    assert!(
        heavy_runs >= 2,
        "heavy operations did not overlap the refreshes"
    );
    assert_same_tree(&store.current(), &d.root());
}

#[test]
fn background_reconciles_a_snapshot_opened_from_disk_and_rescans_periodically() {
    let d = Dir::new();
    base_tree(&d);
    let state = d.tmp.path().join("state");
    drop(SnapshotStore::open_or_build_with(&d.root(), &state, "mod", quiet_opts()).expect("build"));
    // Changed while the daemon was down.
    d.file(b"pub/while-down", b"d");
    let opts = StoreOptions {
        rescan_interval: Some(std::time::Duration::from_millis(100)),
        ..quiet_opts()
    };
    let (store, rep) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", opts).expect("open");
    assert_eq!(rep.source, OpenSource::Opened);
    assert!(
        store.current().lookup(b"pub/while-down").is_none(),
        "served stale at once"
    );
    let _bg = store.start_background();
    let wait = |pred: &dyn Fn(&Snapshot) -> bool, what: &str| {
        let t0 = std::time::Instant::now();
        while !pred(&store.current()) {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(20),
                "{what}: timed out"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    wait(&|s| s.lookup(b"pub/while-down").is_some(), "reconcile");
    // No watcher: the periodic rescan picks up changes (as on NFS).
    d.file(b"other/by-nfs", b"n");
    wait(&|s| s.lookup(b"other/by-nfs").is_some(), "periodic rescan");
    assert_same_tree(&store.current(), &d.root());
}

#[test]
fn background_compacts_when_the_overlay_grows() {
    let d = Dir::new();
    base_tree(&d);
    let state = d.tmp.path().join("state");
    let opts = StoreOptions {
        compact_min_records: 20,
        compact_percent: 0,
        ..quiet_opts()
    };
    let (store, _) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", opts).expect("store");
    let _bg = store.start_background();
    let first_base = store.current().base_generation();
    for i in 0..40 {
        d.file(format!("pub/c{i}").as_bytes(), b"c");
        store.refresh(&[b"pub"]).expect("refresh");
    }
    let t0 = std::time::Instant::now();
    while store.current().base_generation() == first_base {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "no compaction"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(store.current().overlay_len() <= 40);
    assert_same_tree(&store.current(), &d.root());
}
