//! Build/open timings for a synthetic 200k-entry tree. Run with
//! `cargo test -p filelist-cache --test cache timing -- --ignored --nocapture`.

use std::time::Instant;

use filelist_cache::{build_snapshot, BuildOptions, Snapshot, WalkControl};

use crate::util::Dir;

#[test]
#[ignore = "slow: creates 200k files; prints timings"]
fn timing_200k_entries() {
    let (dirs, files_per_dir) = (2_000usize, 99usize); // 1 + 2000 + 198000 = 200001 entries
    let d = Dir::new();
    let t = Instant::now();
    d.mkdir(b"");
    for i in 0..dirs {
        let dir = format!("{:02}/dir{i:05}", i % 50);
        d.mkdir(dir.as_bytes());
        for j in 0..files_per_dir {
            std::fs::File::create(d.path(format!("{dir}/file-{j:03}.dat").as_bytes()))
                .expect("create");
        }
    }
    eprintln!("create tree: {:?}", t.elapsed());

    // Warm the dentry/inode caches once so the build measures the scan, not the disk.
    build_snapshot(&d.root(), &d.snap_path(), &BuildOptions::default()).expect("warm build");
    let t = Instant::now();
    let report =
        build_snapshot(&d.root(), &d.snap_path(), &BuildOptions::default()).expect("build");
    let build = t.elapsed();
    let t = Instant::now();
    let snap = Snapshot::open(&d.snap_path()).expect("open");
    let open = t.elapsed();
    let t = Instant::now();
    let mut paths = Vec::with_capacity(snap.len());
    snap.walk(snap.root(), &mut |p, _| {
        paths.push(p.to_vec());
        WalkControl::Continue
    });
    let walk = t.elapsed();
    let t = Instant::now();
    for p in &paths {
        assert!(snap.lookup(p).is_some());
    }
    let lookup = t.elapsed();
    assert_eq!(report.entries as usize, snap.len());
    assert_eq!(snap.len(), 1 + 50 + dirs + dirs * files_per_dir);
    eprintln!(
        "entries {} dirs {} file {} bytes ({:.1} B/entry)\n\
         build (scan+serialise+write+fsync) {:?}\nopen (map+hash+bytecheck+validate) {:?}\n\
         walk all {:?}\nlookup all {:?} ({:.0} ns/lookup)",
        snap.len(),
        snap.dir_count(),
        snap.file_len(),
        snap.file_len() as f64 / snap.len() as f64,
        build,
        open,
        walk,
        lookup,
        lookup.as_nanos() as f64 / paths.len() as f64
    );
}

/// Update cost and read cost with an overlay, interleaved and best-of-N to cut noise on
/// shared machines. Run with
/// `cargo test -p filelist-cache --release --test cache timing_live -- --ignored --nocapture`
/// (`FLC_TIMING_ENTRIES`, default 200000).
#[test]
#[ignore = "slow: creates a large tree; prints timings"]
fn timing_live_overlay() {
    use filelist_cache::{SnapshotStore, StoreOptions};
    let n: usize = std::env::var("FLC_TIMING_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dirs = n / 101;
    let d = Dir::new();
    d.mkdir(b"");
    let rels: Vec<String> = (0..dirs)
        .map(|i| format!("g{:03}/d{i:05}", i / 100))
        .collect();
    for rel in &rels {
        d.mkdir(rel.as_bytes());
        for j in 0..100 {
            std::fs::File::create(d.path(format!("{rel}/file-{j:03}.deb").as_bytes()))
                .expect("create");
        }
    }
    let opts = StoreOptions {
        watch: false,
        persist_after: None,
        ..StoreOptions::default()
    };
    let (store, _) =
        SnapshotStore::open_or_build_with(&d.root(), &d.tmp.path().join("state"), "t", opts)
            .expect("store");
    let clean = store.current();
    let best = |f: &mut dyn FnMut() -> usize| {
        let mut best = std::time::Duration::MAX;
        for _ in 0..15 {
            let t = Instant::now();
            std::hint::black_box(f());
            best = best.min(t.elapsed());
        }
        best
    };
    let mut updates = Vec::new();
    for i in 0..60 {
        let pick = [
            i % dirs,
            (i * 7 + dirs / 3) % dirs,
            (i * 13 + 2 * dirs / 3) % dirs,
        ];
        for k in pick {
            std::fs::write(d.path(format!("{}/new-{i}", rels[k]).as_bytes()), b"x").expect("write");
        }
        let refs: Vec<&[u8]> = pick.iter().map(|&k| rels[k].as_bytes()).collect();
        let t = Instant::now();
        store.refresh(&refs).expect("refresh");
        updates.push(t.elapsed());
    }
    updates.sort();
    let dirty = store.current();
    let walk = |s: &filelist_cache::Snapshot| {
        let mut k = 0usize;
        s.walk(s.root(), &mut |p, _| {
            k += p.len();
            WalkControl::Continue
        });
        k
    };
    let (mut wc, mut wd) = (std::time::Duration::MAX, std::time::Duration::MAX);
    for _ in 0..3 {
        wc = wc.min(best(&mut || walk(&clean)));
        wd = wd.min(best(&mut || walk(&dirty)));
    }
    let mut paths = Vec::new();
    dirty.walk(dirty.root(), &mut |p, _| {
        paths.push(p.to_vec());
        WalkControl::Continue
    });
    let hot: Vec<&Vec<u8>> = paths
        .iter()
        .filter(|p| p.ends_with(b".deb"))
        .take(20_000)
        .collect();
    let lc = best(&mut || hot.iter().filter(|p| clean.lookup(p).is_some()).count());
    let ld = best(&mut || hot.iter().filter(|p| dirty.lookup(p).is_some()).count());
    eprintln!(
        "{} entries; update of 3 dirs: median {:?} p90 {:?}; overlay {} records in {} listings\n\
         walk all: clean {:?}, with overlay {:?}\n\
         20k lookups: clean {:?}, with overlay {:?}",
        dirty.len(),
        updates[updates.len() / 2],
        updates[updates.len() * 9 / 10],
        dirty.overlay_len(),
        dirty.overlay_dirs(),
        wc,
        wd,
        lc,
        ld
    );
}
