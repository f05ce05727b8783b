//! Criterion benchmarks of snapshot build, open, walk and lookup.
//!
//! Tree shapes (after gix-index's from_tree bench): flat (one directory of N files),
//! wide (100 directories of N/100 files), deep (10 chains of N/10 nested directories,
//! one file each). N defaults to 100_000; set `FLC_BENCH_ENTRIES` to change it.
//! Machines here have two shared cores: treat the numbers as rough.

use std::fs;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use filelist_cache::{build_snapshot, BuildOptions, Snapshot, WalkControl};

fn entries() -> usize {
    std::env::var("FLC_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

struct Tree {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    snap: PathBuf,
}

fn make_tree(shape: &str, n: usize) -> Tree {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    fs::create_dir(&root).expect("mkdir");
    let touch = |p: &Path| drop(fs::File::create(p).expect("create"));
    match shape {
        "flat" => (0..n).for_each(|i| touch(&root.join(format!("f{i:07}")))),
        "wide" => {
            for d in 0..100 {
                let dir = root.join(format!("d{d:03}"));
                fs::create_dir(&dir).expect("mkdir");
                (0..n / 100).for_each(|i| touch(&dir.join(format!("f{i:06}"))));
            }
        }
        "deep" => {
            // Ten chains; each level holds one directory and one file.
            for c in 0..10 {
                let mut dir = root.join(format!("c{c}"));
                for _ in 0..(n / 20).min(1_000) {
                    fs::create_dir(&dir).expect("mkdir");
                    touch(&dir.join("f"));
                    dir.push("d");
                }
            }
        }
        _ => unreachable!("unknown shape"),
    }
    let snap = tmp.path().join("snapshot.bin");
    build_snapshot(&root, &snap, &BuildOptions::default()).expect("build");
    Tree {
        _tmp: tmp,
        root,
        snap,
    }
}

fn benches(c: &mut Criterion) {
    let n = entries();
    for shape in ["flat", "wide", "deep"] {
        let tree = make_tree(shape, n);
        let snap = Snapshot::open(&tree.snap).expect("open");
        let len = snap.len() as u64;
        let mut paths = Vec::with_capacity(snap.len());
        snap.walk(snap.root(), &mut |p, _| {
            paths.push(p.to_vec());
            WalkControl::Continue
        });

        let mut g = c.benchmark_group(format!("snapshot/{shape}"));
        g.throughput(Throughput::Elements(len));
        g.sample_size(10);
        g.bench_function(BenchmarkId::new("build", len), |b| {
            b.iter(|| {
                build_snapshot(&tree.root, &tree.snap, &BuildOptions::default()).expect("build")
            })
        });
        g.bench_function(BenchmarkId::new("open", len), |b| {
            b.iter(|| Snapshot::open(&tree.snap).expect("open").len())
        });
        g.bench_function(BenchmarkId::new("walk", len), |b| {
            b.iter(|| {
                let mut bytes = 0usize;
                snap.walk(snap.root(), &mut |p, _| {
                    bytes += p.len();
                    WalkControl::Continue
                });
                bytes
            })
        });
        g.bench_function(BenchmarkId::new("lookup", len), |b| {
            b.iter(|| paths.iter().filter(|p| snap.lookup(p).is_some()).count())
        });
        g.finish();
    }
}

criterion_group!(snapshot_benches, benches);
criterion_main!(snapshot_benches);
