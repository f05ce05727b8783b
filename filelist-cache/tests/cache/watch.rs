//! The fanotify watcher end to end: live mutations become visible to new readers
//! without any explicit refresh. Needs CAP_SYS_ADMIN (run as root); skips with a
//! printed reason otherwise.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use filelist_cache::{SnapshotStore, StoreOptions, WatchStatus};

use crate::store::{base_tree, fresh, mutations, Mutation};
use crate::util::Dir;

fn watched_store(d: &Dir) -> Option<SnapshotStore> {
    let opts = StoreOptions {
        persist_after: None,
        ..StoreOptions::default()
    };
    let state = d.tmp.path().join("state");
    let (store, rep) =
        SnapshotStore::open_or_build_with(&d.root(), &state, "mod", opts).expect("store");
    match rep.watch {
        WatchStatus::Active => Some(store),
        other => {
            eprintln!("skipping fanotify test: watcher not available: {other:?}");
            None
        }
    }
}

/// Polls `current()` until it equals a fresh build of the tree; returns the latency.
fn wait_visible(store: &SnapshotStore, d: &Dir, what: &str) -> Duration {
    let t0 = Instant::now();
    let want = fresh(&d.root());
    loop {
        let g = store.current();
        let diff = g.first_difference(&want);
        if diff.is_none() {
            return t0.elapsed();
        }
        if t0.elapsed() > Duration::from_secs(20) {
            panic!(
                "{what}: not visible after 20 s: {}",
                diff.unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

#[test]
fn fanotify_mutations_reach_new_readers() {
    let d = Dir::new();
    base_tree(&d);
    let Some(store) = watched_store(&d) else {
        return;
    };
    let (dirs, complete) = store.watched_dirs();
    assert!(complete, "handle map incomplete");
    assert_eq!(
        dirs, 7,
        "root, pub, pub/sub, pub/sub/deep, pub/sub/empty, other, perm"
    );
    let _bg = store.start_background();
    let first = store.current();
    let first_listing = crate::store::listing(&first);
    let mut lat = Vec::new();
    for Mutation { what, apply, .. } in mutations() {
        apply(&d);
        lat.push(wait_visible(&store, &d, what));
    }
    // Repeated rounds of every kind of change, for a latency distribution.
    for r in 0..25 {
        let f = format!("pub/r{r}.deb");
        d.file(f.as_bytes(), b"1");
        lat.push(wait_visible(&store, &d, "create"));
        fs::set_permissions(d.path(f.as_bytes()), fs::Permissions::from_mode(0o600))
            .expect("chmod");
        lat.push(wait_visible(&store, &d, "chmod"));
        fs::write(d.path(f.as_bytes()), b"grown file").expect("write");
        lat.push(wait_visible(&store, &d, "modify"));
        let l = format!("other/r{r}.link");
        fs::hard_link(d.path(f.as_bytes()), d.path(l.as_bytes())).expect("ln");
        lat.push(wait_visible(&store, &d, "hard link"));
        let s = format!("other/r{r}.sym");
        d.symlink(s.as_bytes(), f.as_bytes());
        lat.push(wait_visible(&store, &d, "symlink"));
        let m = format!("other/r{r}.moved");
        fs::rename(d.path(f.as_bytes()), d.path(m.as_bytes())).expect("mv");
        lat.push(wait_visible(&store, &d, "rename"));
        let dir = format!("pub/dir{r}");
        d.file(format!("{dir}/inner/x").as_bytes(), b"x");
        lat.push(wait_visible(&store, &d, "mkdir -p"));
        let dir2 = format!("other/dir{r}");
        fs::rename(d.path(dir.as_bytes()), d.path(dir2.as_bytes())).expect("mv dir");
        lat.push(wait_visible(&store, &d, "rename dir"));
        fs::remove_file(d.path(m.as_bytes())).expect("rm");
        lat.push(wait_visible(&store, &d, "delete"));
    }
    // The first generation, pinned all along, is unchanged.
    assert_eq!(crate::store::listing(&first), first_listing);
    let n = lat.len();
    let p50 = percentile(&mut lat, 0.50);
    let p99 = percentile(&mut lat, 0.99);
    let max = percentile(&mut lat, 1.0);
    eprintln!("fanotify visibility latency over {n} changes: p50 {p50:?} p99 {p99:?} max {max:?}");
}

#[test]
fn events_outside_the_module_are_ignored() {
    let d = Dir::new();
    base_tree(&d);
    let Some(store) = watched_store(&d) else {
        return;
    };
    let _bg = store.start_background();
    let before = store.current().number();
    // Same file system, not below the module root.
    let outside = d.tmp.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    for i in 0..100 {
        fs::write(outside.join(format!("f{i}")), b"x").expect("write");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        store.current().number(),
        before,
        "outside changes published a generation"
    );
    // A change inside still arrives.
    d.file(b"pub/inside", b"y");
    wait_visible(&store, &d, "inside after outside noise");
}

#[test]
fn fanotify_random_mutations_match_a_fresh_build() {
    let d = Dir::new();
    base_tree(&d);
    let Some(store) = watched_store(&d) else {
        return;
    };
    let _bg = store.start_background();
    let mut lat = Vec::new();
    crate::store::random_mutations(&d, &store, 0xfa_0001, 200, Some(&mut lat));
    let n = lat.len();
    let p50 = percentile(&mut lat, 0.50);
    let p99 = percentile(&mut lat, 0.99);
    let max = percentile(&mut lat, 1.0);
    eprintln!(
        "fanotify random mutations: {n} steps, visibility p50 {p50:?} p99 {p99:?} max {max:?}"
    );
}
