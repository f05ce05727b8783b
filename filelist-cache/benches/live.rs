//! Criterion benchmarks of the live layer: the cost of an incremental update (three
//! directories touched) against the size of the tree, the read cost of a view with an
//! overlay, and store start-up from an existing file.
//!
//! Trees: directories of 100 empty files, grouped 100 directories per top-level group;
//! sizes from `FLC_BENCH_SIZES` (default `10000,200000,1000000` entries). The trees are
//! created once under `$CARGO_TARGET_DIR/flc-bench-trees/` (or `target/`) and reused.
//! Machines here have two shared cores: treat the numbers as rough.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use filelist_cache::{SnapshotStore, StoreOptions, WalkControl};

const FILES_PER_DIR: usize = 100;
const DIRS_PER_GROUP: usize = 100;

fn sizes() -> Vec<usize> {
    std::env::var("FLC_BENCH_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 200_000, 1_000_000])
}

fn bench_root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("flc-bench-trees")
}

/// Creates (once) a tree of about `n` entries; returns its root and directory paths.
fn tree(n: usize) -> (PathBuf, Vec<Vec<u8>>) {
    let dirs = (n / (FILES_PER_DIR + 1)).max(1);
    let root = bench_root().join(format!("t{n}"));
    let done = bench_root().join(format!("t{n}.done"));
    let mut rels = Vec::with_capacity(dirs);
    for d in 0..dirs {
        rels.push(format!("g{:03}/d{:05}", d / DIRS_PER_GROUP, d).into_bytes());
    }
    if !done.exists() {
        let _ = fs::remove_dir_all(&root);
        for rel in &rels {
            let dir = root.join(std::str::from_utf8(rel).expect("ascii"));
            fs::create_dir_all(&dir).expect("mkdir");
            for f in 0..FILES_PER_DIR {
                fs::File::create(dir.join(format!("file-{f:03}.deb"))).expect("create");
            }
        }
        fs::write(&done, b"").expect("marker");
    }
    (root, rels)
}

fn opts() -> StoreOptions {
    StoreOptions {
        watch: false,
        persist_after: None,
        ..StoreOptions::default()
    }
}

fn open_store(root: &Path, state: &Path) -> SnapshotStore {
    SnapshotStore::open_or_build_with(root, state, "bench", opts())
        .expect("store")
        .0
}

/// Flips a marker file in each of three directories: spread over the whole tree
/// (`spread`, so most directories read are cold in the inode cache of a large tree), or
/// rotating among the same 30 directories (hot: the cost of our code plus cached
/// syscalls).
fn touch3(root: &Path, rels: &[Vec<u8>], i: usize, spread: bool) -> [Vec<u8>; 3] {
    let n = rels.len();
    let pick = if spread {
        [i % n, (i * 7 + n / 3) % n, (i * 13 + 2 * n / 3) % n]
    } else {
        let k = (i * 3) % 30;
        [k % n, (k + 1 + n / 3) % n, (k + 2 + 2 * n / 3) % n]
    };
    pick.map(|k| {
        let rel = rels[k].clone();
        let p = root
            .join(std::str::from_utf8(&rel).expect("ascii"))
            .join("bench-marker");
        if p.exists() {
            fs::remove_file(&p).expect("rm");
        } else {
            fs::write(&p, b"m").expect("write");
        }
        rel
    })
}

fn update_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("live/update_3_dirs");
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(5));
    for n in sizes() {
        let (root, rels) = tree(n);
        let state = tempfile::tempdir().expect("tempdir");
        let store = open_store(&root, state.path());
        let entries = store.current().len();
        let mut i = 0usize;
        // The refresh alone (the tree change is made outside the timing).
        for (label, spread) in [("refresh_hot", false), ("refresh_spread", true)] {
            g.bench_function(BenchmarkId::new(label, entries), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let dirs = touch3(&root, &rels, i, spread);
                        i += 1;
                        let refs: Vec<&[u8]> = dirs.iter().map(|d| d.as_slice()).collect();
                        let t = std::time::Instant::now();
                        let r = store.refresh(&refs).expect("refresh");
                        total += t.elapsed();
                        assert!(r.published.is_some());
                    }
                    total
                })
            });
        }
        // Leave the tree as it was.
        for rel in &rels {
            let p = root
                .join(std::str::from_utf8(rel).expect("ascii"))
                .join("bench-marker");
            let _ = fs::remove_file(p);
        }
        eprintln!(
            "  tree {entries} entries: overlay after the run: {} records, {} listings",
            store.current().overlay_len(),
            store.current().overlay_dirs()
        );
    }
    g.finish();
}

fn reads_with_overlay(c: &mut Criterion) {
    let mut g = c.benchmark_group("live/read");
    g.sample_size(10);
    for n in sizes() {
        let (root, rels) = tree(n);
        let state = tempfile::tempdir().expect("tempdir");
        let store = open_store(&root, state.path());
        let clean = store.current();
        // 3 dirty directories, as after one update.
        let dirs = touch3(&root, &rels, 1, true);
        let refs: Vec<&[u8]> = dirs.iter().map(|d| d.as_slice()).collect();
        store.refresh(&refs).expect("refresh");
        let dirty = store.current();
        for (label, snap) in [("clean", &clean), ("overlay3", &dirty)] {
            let mut paths = Vec::new();
            snap.walk(snap.root(), &mut |p, _| {
                paths.push(p.to_vec());
                WalkControl::Continue
            });
            let len = snap.len();
            g.bench_function(BenchmarkId::new(format!("walk/{label}"), len), |b| {
                b.iter(|| {
                    let mut k = 0usize;
                    snap.walk(snap.root(), &mut |p, _| {
                        k += p.len();
                        WalkControl::Continue
                    });
                    k
                })
            });
            // Lookups inside the touched directories (overlay listings for `overlay3`).
            let hot: Vec<Vec<u8>> = paths
                .iter()
                .filter(|p| dirs.iter().any(|d| p.starts_with(d)))
                .cloned()
                .collect();
            g.bench_function(BenchmarkId::new(format!("lookup_hot/{label}"), len), |b| {
                b.iter(|| hot.iter().filter(|p| snap.lookup(p).is_some()).count())
            });
        }
        for d in &dirs {
            let p = root
                .join(std::str::from_utf8(d).expect("ascii"))
                .join("bench-marker");
            let _ = fs::remove_file(p);
        }
    }
    g.finish();
}

fn heavy_ops(c: &mut Criterion) {
    let mut g = c.benchmark_group("live/heavy");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for n in sizes() {
        let (root, _rels) = tree(n);
        let state = tempfile::tempdir().expect("tempdir");
        let store = open_store(&root, state.path());
        let len = store.current().len();
        // Start-up of a store from its existing file (serve at once).
        drop(store);
        g.bench_function(BenchmarkId::new("open_existing", len), |b| {
            b.iter(|| open_store(&root, state.path()).current().len())
        });
        let store = open_store(&root, state.path());
        g.bench_function(BenchmarkId::new("full_rescan_unchanged", len), |b| {
            b.iter(|| store.rescan().expect("rescan").published)
        });
        g.bench_function(BenchmarkId::new("compact", len), |b| {
            b.iter(|| store.compact().expect("compact").published)
        });
    }
    g.finish();
}

criterion_group!(live, update_cost, reads_with_overlay, heavy_ops);
criterion_main!(live);
