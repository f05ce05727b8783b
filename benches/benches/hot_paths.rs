//! Criterion micro-benchmarks of the daemon's hot paths, on the benchmark
//! trees' shapes:
//!
//! - `flist_encode`: a mirror-tree snapshot walked and encoded as a stock
//!   3.2.7 client gets it (`-a`: protocol 31, incremental recursion;
//!   `-aH`: one full list with hard links), entries/s;
//! - `rolling`: rsync's rolling checksum sliding over data; `matcher`: the
//!   sender's delta search over a file whose client basis differs in 3% of
//!   its blocks, and over unrelated data (no block matches), bytes/s;
//! - `strong`: block strong checksums (md4, md5, xxh64, xxh3, xxh128) of
//!   700-byte and 8 KiB blocks, and whole-file sums, bytes/s;
//! - `token`: the token encoder with no compression, zlib and zstd, over
//!   text and random literals and over a delta stream (matches and short
//!   literals), bytes/s;
//! - `snapshot`: lookups of random paths, a full iteration, one directory's
//!   listing, on a 50k-entry mirror snapshot.
//!
//! Run: `cargo bench -p benches --bench hot_paths` (quick:
//! `-- --warm-up-time 1 --measurement-time 2`); `benches/run.sh` runs it in
//! its `micro` section. Other crates keep narrower ones:
//! `protocol/benches/protocol.rs` (varints, list decode),
//! `filelist-cache/benches/{snapshot,live}.rs` (build, overlay reads).

use std::hint::black_box;

use benches::rng::Rng;
use benches::tree::{mirror, mixed};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use filelist_cache::{build_snapshot, BuildOptions, EntryRef, Snapshot, WalkControl};
use protocol::checksum::{block_checksum, ChecksumAlgo, FileHasher, Rolling, MAX_DIGEST_LEN};
use protocol::flist::encode::{FlistEncoder, FlistOptions, NoNames};
use protocol::flist::entry::FileEntry;
use protocol::matcher::{DeltaMatcher, DeltaOp};
use protocol::sums::{SumBlocks, SumHead};
use protocol::token::{Compression, TokenEncoder};

const SNAP_ENTRIES: u64 = 50_000;

struct Fixture {
    _tmp: tempfile::TempDir,
    snap: Snapshot,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("mirror");
    mirror::generate(&root, SNAP_ENTRIES, 1).expect("mirror tree");
    let file = tmp.path().join("tree.snap");
    build_snapshot(&root, &file, &BuildOptions::default()).expect("snapshot");
    let snap = Snapshot::open(&file).expect("open");
    Fixture { _tmp: tmp, snap }
}

/// The snapshot's entries in list order: full path and entry.
fn entries(snap: &Snapshot) -> Vec<(Vec<u8>, EntryRef<'_>)> {
    let mut idx = Vec::with_capacity(snap.len());
    snap.walk(snap.root(), &mut |p, e| {
        if !p.is_empty() {
            idx.push((p.to_vec(), e.index()));
        }
        WalkControl::Continue
    });
    idx.into_iter().filter_map(|(p, i)| Some((p, snap.entry(i)?))).collect()
}

fn to_file_entry<'a>(name: &'a [u8], e: &EntryRef<'a>) -> FileEntry<'a> {
    let mut f = FileEntry::new(name, e.mode());
    f.size = e.size() as i64;
    f.mtime = e.mtime();
    f.mtime_nsec = e.mtime_nsec();
    f.uid = e.uid();
    f.gid = e.gid();
    if e.is_symlink() {
        f.link_target = e.link_target();
        f.size = f.link_target.len() as i64;
    }
    if !e.is_dir() && e.nlink() > 1 {
        f.hardlink = Some((e.dev(), e.ino()));
    }
    f
}

fn bench_flist(c: &mut Criterion, fx: &Fixture) {
    let es = entries(&fx.snap);
    let base = FlistOptions { protocol: 31, varint_flags: true, preserve_uid: true, preserve_gid: true, preserve_links: true, ..FlistOptions::default() };
    let inc = FlistOptions { inc_recurse: true, id0_names: true, preserve_devices: true, preserve_specials: true, ..base.clone() };
    let full_h = FlistOptions { preserve_hard_links: true, preserve_devices: true, preserve_specials: true, ..base };
    let mut g = c.benchmark_group("flist_encode");
    g.throughput(Throughput::Elements(es.len() as u64));
    g.sample_size(20);
    for (label, opts) in [("a_inc_recurse", inc), ("aH_full_list", full_h)] {
        g.bench_function(BenchmarkId::new(label, es.len()), |b| {
            let mut out = Vec::with_capacity(es.len() * 40);
            b.iter(|| {
                out.clear();
                let mut enc = FlistEncoder::new(opts.clone());
                let start = if opts.inc_recurse_active() { 1 } else { 0 };
                for (i, (name, e)) in es.iter().enumerate() {
                    enc.encode_entry(&mut out, &to_file_entry(name, e), start + i as i32, start, &NoNames);
                }
                enc.encode_end(&mut out, 0);
                if opts.sends_id_lists() {
                    enc.encode_trailer(&mut out, 0, &NoNames);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

/// A basis and a new version differing in `pct` of their blocks.
fn delta_pair(len: usize, pct: f64, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let basis = mixed::sample(len, false, seed);
    let mut new = basis.clone();
    let bl = mixed::block_len(len as u64) as usize;
    let mut rng = Rng::new(seed + 1);
    for b in (0..len).step_by(bl) {
        if rng.chance(pct) {
            new[b + rng.below((len - b).min(bl) as u64) as usize] ^= 0xFF;
        }
    }
    (basis, new)
}

fn run_matcher(head: SumHead, blocks: &SumBlocks, algo: ChecksumAlgo, file: &[u8]) -> u64 {
    let mut m = DeltaMatcher::new(head, blocks.clone(), algo, 0x1234_5678, true);
    let mut literal = 0u64;
    let mut emit = |op: DeltaOp<'_>| {
        if let DeltaOp::Literal(d) = op {
            literal += d.len() as u64;
        }
    };
    for chunk in file.chunks(256 * 1024) {
        m.push(chunk, &mut emit);
    }
    m.finish(&mut emit);
    black_box(literal);
    m.matched_bytes()
}

fn bench_delta(c: &mut Criterion) {
    const LEN: usize = 8 << 20;
    let (basis, new) = delta_pair(LEN, 0.03, 5);
    let unrelated = mixed::sample(LEN, false, 99);
    let mut g = c.benchmark_group("rolling");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("roll_700", |b| {
        b.iter(|| {
            let win = 700;
            let mut r = Rolling::new(&basis[..win]);
            for i in win..LEN {
                r.roll(basis[i - win], basis[i]);
            }
            black_box(r.value())
        })
    });
    g.finish();
    let mut g = c.benchmark_group("matcher");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(10);
    for algo in [ChecksumAlgo::Xxh128, ChecksumAlgo::Md5] {
        let head = SumHead::for_basis_len(LEN as u64, 31, algo.digest_len(), 16, 0).expect("sane length");
        let blocks = SumBlocks::from_basis(&basis, &head, algo, 0x1234_5678, true);
        g.bench_function(BenchmarkId::new("3pct_changed", algo.name()), |b| b.iter(|| run_matcher(head, &blocks, algo, black_box(&new))));
        g.bench_function(BenchmarkId::new("unrelated", algo.name()), |b| b.iter(|| run_matcher(head, &blocks, algo, black_box(&unrelated))));
    }
    g.finish();
}

fn bench_strong(c: &mut Criterion) {
    let data = mixed::sample(1 << 20, false, 7);
    let algos = [ChecksumAlgo::Md4, ChecksumAlgo::Md5, ChecksumAlgo::Xxh64, ChecksumAlgo::Xxh3, ChecksumAlgo::Xxh128];
    let mut g = c.benchmark_group("strong");
    for bl in [700usize, 8192] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        for algo in algos {
            g.bench_function(BenchmarkId::new(format!("blocks_{bl}"), algo.name()), |b| {
                let mut out = [0u8; MAX_DIGEST_LEN];
                b.iter(|| {
                    let mut acc = 0u8;
                    for blk in data.chunks(bl) {
                        block_checksum(algo, 0x1234_5678, true, blk, &mut out);
                        acc ^= out[0];
                    }
                    black_box(acc)
                })
            });
        }
    }
    g.throughput(Throughput::Bytes(data.len() as u64));
    for algo in algos {
        g.bench_function(BenchmarkId::new("whole_file", algo.name()), |b| {
            b.iter(|| {
                let mut h = FileHasher::new(algo, 0x1234_5678);
                h.update(&data);
                black_box(h.finish())
            })
        });
    }
    g.finish();
}

fn bench_token(c: &mut Criterion) {
    const LEN: usize = 4 << 20;
    let text = mixed::sample(LEN, true, 11);
    let random = mixed::sample(LEN, false, 12);
    let mut g = c.benchmark_group("token");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(10);
    for comp in [Compression::None, Compression::Zlib, Compression::Zstd] {
        for (label, data) in [("text", &text), ("random", &random)] {
            g.bench_function(BenchmarkId::new(format!("literal_{label}"), comp.name()), |b| {
                let mut out = Vec::with_capacity(LEN + LEN / 8);
                b.iter(|| {
                    out.clear();
                    let mut enc = TokenEncoder::new(comp, None, 31).expect("encoder");
                    for chunk in data.chunks(256 << 10) {
                        enc.literal(&mut out, chunk).expect("literal");
                    }
                    enc.end_file(&mut out).expect("end");
                    black_box(out.len())
                })
            });
        }
        // A delta stream: 8 KiB blocks, 97% matched, the rest short literals.
        g.bench_function(BenchmarkId::new("delta_3pct", comp.name()), |b| {
            let mut out = Vec::with_capacity(LEN / 8);
            let mut rng = Rng::new(3);
            let plan: Vec<bool> = (0..LEN / 8192).map(|_| rng.chance(0.03)).collect();
            b.iter(|| {
                out.clear();
                let mut enc = TokenEncoder::new(comp, None, 31).expect("encoder");
                for (i, &lit) in plan.iter().enumerate() {
                    let blk = &text[i * 8192..(i + 1) * 8192];
                    if lit {
                        enc.literal(&mut out, blk).expect("literal");
                    } else {
                        enc.block_match(&mut out, i as u32, blk).expect("match");
                    }
                }
                enc.end_file(&mut out).expect("end");
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn bench_snapshot(c: &mut Criterion, fx: &Fixture) {
    let snap = &fx.snap;
    let all: Vec<Vec<u8>> = entries(snap).into_iter().map(|(p, _)| p).collect();
    let mut rng = Rng::new(9);
    let picks: Vec<&[u8]> = (0..10_000).map(|_| all[rng.below(all.len() as u64) as usize].as_slice()).collect();
    let big_dir = all
        .iter()
        .filter_map(|p| snap.lookup(p).filter(|e| e.is_dir()).map(|e| (e.children().len(), p.clone())))
        .max()
        .map(|(_, p)| p)
        .unwrap_or_default();
    let mut g = c.benchmark_group("snapshot");
    g.throughput(Throughput::Elements(picks.len() as u64));
    g.bench_function(BenchmarkId::new("lookup_random", snap.len()), |b| b.iter(|| picks.iter().filter(|p| snap.lookup(p).is_some()).count()));
    g.throughput(Throughput::Elements(snap.len() as u64));
    g.bench_function(BenchmarkId::new("iterate_all", snap.len()), |b| {
        b.iter(|| {
            let mut n = 0usize;
            snap.walk(snap.root(), &mut |p, e| {
                n += p.len() + e.size() as usize;
                WalkControl::Continue
            });
            black_box(n)
        })
    });
    let dir = snap.lookup(&big_dir).expect("largest directory");
    g.throughput(Throughput::Elements(dir.children().len() as u64));
    g.bench_function(BenchmarkId::new("list_largest_dir", dir.children().len()), |b| {
        b.iter(|| dir.children().map(|e| e.name().len() as u64 + e.mtime() as u64).sum::<u64>())
    });
    g.finish();
}

fn all(c: &mut Criterion) {
    let fx = fixture();
    bench_flist(c, &fx);
    bench_delta(c);
    bench_strong(c);
    bench_token(c);
    bench_snapshot(c, &fx);
}

criterion_group!(hot_paths, all);
criterion_main!(hot_paths);
