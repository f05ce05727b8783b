//! Throughput of the protocol crate's hot paths, on synthetic input:
//! - file-list encoding (`FlistEncoder`) and decoding, entries/s;
//! - varint/varlong encode and decode, values/s;
//! - the rolling checksum and the streaming delta matcher (`DeltaMatcher`),
//!   bytes/s, for a file identical to the client's basis (every block
//!   matches), an unrelated file (no block matches: the rolling checksum
//!   and hash probe run at every byte) and a file with sparse edits.
//!
//! Run: `cargo bench -p protocol --bench protocol`
//! (quick: `-- --warm-up-time 1 --measurement-time 2`).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use protocol::checksum::{rolling_checksum, ChecksumAlgo, Rolling};
use protocol::flist::decode::FlistDecoder;
use protocol::flist::encode::{FlistEncoder, FlistOptions, NoNames};
use protocol::flist::entry::FileEntry;
use protocol::matcher::{DeltaMatcher, DeltaOp};
use protocol::sums::{SumBlocks, SumHead};
use protocol::wire::{put_varint, put_varlong, Reader};

/// SplitMix64, to make the synthetic data reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

const ARCHES: &[&str] = &["amd64", "arm64", "armhf", "i386", "ppc64el", "s390x", "all"];

/// Names and attributes of a mirror-like file list in rsync's sorted order:
/// `pool/main/<p>/<pkg>/` directories of about 100 files each.
struct SyntheticList {
    names: Vec<Vec<u8>>,
    modes: Vec<u32>,
    sizes: Vec<i64>,
    mtimes: Vec<i64>,
}

fn synthetic_list(n: usize) -> SyntheticList {
    let mut rng = Rng(7);
    let mut l = SyntheticList {
        names: Vec::with_capacity(n),
        modes: Vec::with_capacity(n),
        sizes: Vec::with_capacity(n),
        mtimes: Vec::with_capacity(n),
    };
    let mut pkg_no = 0;
    while l.names.len() < n {
        let pkg = format!("libpkg{pkg_no:05}-utils");
        let dir = format!("pool/main/{}/{pkg}", &pkg[..4]);
        l.names.push(dir.clone().into_bytes());
        l.modes.push(0o040755);
        l.sizes.push(4096);
        l.mtimes.push(1_700_000_000 - (rng.next() % 100_000_000) as i64);
        let mut files: Vec<String> = (0..100)
            .map(|j| {
                format!(
                    "{dir}/{pkg}_{}.{}-{}_{}.deb",
                    j / 7,
                    rng.next() % 20,
                    1 + rng.next() % 3,
                    ARCHES[j % ARCHES.len()]
                )
            })
            .collect();
        files.sort();
        files.dedup();
        for f in files {
            if l.names.len() >= n {
                break;
            }
            l.names.push(f.into_bytes());
            l.modes.push(0o100644);
            l.sizes.push((rng.next() % (64 << 20)) as i64);
            l.mtimes.push(1_700_000_000 - (rng.next() % 100_000_000) as i64);
        }
        pkg_no += 1;
    }
    l
}

fn entries(l: &SyntheticList) -> Vec<FileEntry<'_>> {
    (0..l.names.len())
        .map(|i| {
            let mut e = FileEntry::new(&l.names[i], l.modes[i]);
            e.size = l.sizes[i];
            e.mtime = l.mtimes[i];
            e.uid = 1000;
            e.gid = 1000;
            e
        })
        .collect()
}

/// What a stock 3.2.7 client pulling with `-a` negotiates at protocol 31
/// (varint flags; incremental recursion: names inline, no id lists).
fn opts_p31() -> FlistOptions {
    FlistOptions {
        protocol: 31,
        varint_flags: true,
        preserve_uid: true,
        preserve_gid: true,
        preserve_links: true,
        preserve_devices: true,
        preserve_specials: true,
        inc_recurse: true,
        id0_names: true,
        ..FlistOptions::default()
    }
}

/// Protocol 29 (old clients): fixed-width ints, id lists at the end.
fn opts_p29() -> FlistOptions {
    FlistOptions {
        protocol: 29,
        preserve_uid: true,
        preserve_gid: true,
        preserve_links: true,
        ..FlistOptions::default()
    }
}

fn encode_all(opts: &FlistOptions, es: &[FileEntry<'_>], out: &mut Vec<u8>) {
    let mut enc = FlistEncoder::new(opts.clone());
    let start = if opts.inc_recurse_active() { 1 } else { 0 };
    for (i, e) in es.iter().enumerate() {
        enc.encode_entry(out, e, start + i as i32, start, &NoNames);
    }
    enc.encode_end(out, 0);
    if opts.sends_id_lists() {
        enc.encode_trailer(out, 0, &NoNames);
    }
}

fn bench_flist(c: &mut Criterion) {
    const N: usize = 10_000;
    let list = synthetic_list(N);
    let es = entries(&list);
    let mut g = c.benchmark_group("flist");
    g.throughput(Throughput::Elements(N as u64));
    for (label, opts) in [("p31", opts_p31()), ("p29", opts_p29())] {
        let mut out = Vec::new();
        encode_all(&opts, &es, &mut out);
        let wire_len = out.len();
        g.bench_function(BenchmarkId::new("encode", label), |b| {
            let mut out = Vec::with_capacity(wire_len);
            b.iter(|| {
                out.clear();
                encode_all(&opts, black_box(&es), &mut out);
                black_box(out.len())
            })
        });
        g.bench_function(BenchmarkId::new("decode", label), |b| {
            b.iter(|| {
                let mut dec = FlistDecoder::new(opts.clone());
                let mut r = Reader::new(black_box(&out));
                let mut n = 0;
                while let Some(e) = dec.decode_entry(&mut r).expect("valid list") {
                    black_box(&e);
                    n += 1;
                }
                assert_eq!(n, N);
            })
        });
    }
    g.finish();
}

fn bench_varint(c: &mut Criterion) {
    const N: usize = 100_000;
    let mut rng = Rng(11);
    // Mixed magnitudes, as on the wire: small flags/lengths, mid-size
    // sizes, large mtimes.
    let ints: Vec<i32> = (0..N)
        .map(|i| match i % 4 {
            0 => (rng.next() % 128) as i32,
            1 => (rng.next() % 70_000) as i32,
            2 => (rng.next() % (1 << 24)) as i32,
            _ => rng.next() as i32,
        })
        .collect();
    let longs: Vec<i64> = (0..N)
        .map(|i| match i % 3 {
            0 => (rng.next() % 1_000_000) as i64,
            1 => 1_700_000_000 - (rng.next() % 100_000_000) as i64,
            _ => (rng.next() >> 20) as i64,
        })
        .collect();
    let mut enc_i = Vec::new();
    for &v in &ints {
        put_varint(&mut enc_i, v);
    }
    let mut enc_l = Vec::new();
    for &v in &longs {
        put_varlong(&mut enc_l, v, 3);
    }

    let mut g = c.benchmark_group("varint");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("encode_varint", |b| {
        let mut out = Vec::with_capacity(enc_i.len());
        b.iter(|| {
            out.clear();
            for &v in black_box(&ints) {
                put_varint(&mut out, v);
            }
            black_box(out.len())
        })
    });
    g.bench_function("decode_varint", |b| {
        b.iter(|| {
            let mut r = Reader::new(black_box(&enc_i));
            let mut acc = 0i64;
            for _ in 0..N {
                acc = acc.wrapping_add(r.varint().expect("valid") as i64);
            }
            black_box(acc)
        })
    });
    g.bench_function("encode_varlong3", |b| {
        let mut out = Vec::with_capacity(enc_l.len());
        b.iter(|| {
            out.clear();
            for &v in black_box(&longs) {
                put_varlong(&mut out, v, 3);
            }
            black_box(out.len())
        })
    });
    g.bench_function("decode_varlong3", |b| {
        b.iter(|| {
            let mut r = Reader::new(black_box(&enc_l));
            let mut acc = 0i64;
            for _ in 0..N {
                acc = acc.wrapping_add(r.varlong(3).expect("valid"));
            }
            black_box(acc)
        })
    });
    g.finish();
}

/// Run the matcher over `file` against sums of `basis`; returns matched bytes.
fn run_matcher(basis_sums: &(SumHead, SumBlocks), algo: ChecksumAlgo, file: &[u8]) -> u64 {
    let (head, blocks) = basis_sums;
    let mut m = DeltaMatcher::new(*head, blocks.clone(), algo, 0x1234_5678, true);
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

fn sums_for(basis: &[u8], algo: ChecksumAlgo) -> (SumHead, SumBlocks) {
    let head = SumHead::for_basis_len(basis.len() as u64, 31, algo.digest_len(), 16, 0)
        .expect("sane length");
    let blocks = SumBlocks::from_basis(basis, &head, algo, 0x1234_5678, true);
    (head, blocks)
}

fn bench_matcher(c: &mut Criterion) {
    const LEN: usize = 8 << 20;
    let mut rng = Rng(3);
    let basis = rng.bytes(LEN);
    let unrelated = rng.bytes(LEN);
    // Sparse edits: one changed byte every 64 KiB.
    let mut edited = basis.clone();
    for i in (1000..LEN).step_by(64 * 1024) {
        edited[i] ^= 0x5A;
    }

    let mut g = c.benchmark_group("rolling");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("checksum1_whole", |b| {
        b.iter(|| black_box(rolling_checksum(black_box(&basis))))
    });
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
        let sums = sums_for(&basis, algo);
        let name = algo.name();
        g.bench_function(BenchmarkId::new("identical", name), |b| {
            b.iter(|| assert_eq!(run_matcher(&sums, algo, black_box(&basis)), LEN as u64))
        });
        g.bench_function(BenchmarkId::new("sparse_edits", name), |b| {
            b.iter(|| run_matcher(&sums, algo, black_box(&edited)))
        });
        g.bench_function(BenchmarkId::new("unrelated", name), |b| {
            b.iter(|| assert_eq!(run_matcher(&sums, algo, black_box(&unrelated)), 0))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_flist, bench_varint, bench_matcher);
criterion_main!(benches);
