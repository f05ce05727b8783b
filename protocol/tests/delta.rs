//! Delta transfer end to end inside the crate: sums -> matcher -> token
//! encoder -> token decoder (a port of the receiver) -> rebuilt file.
//!
//! The `#[ignore]`d tests at the bottom check our streams against stock
//! rsync (batch files and a captured remote-shell session); run them with
//! `cargo test -p protocol --test delta -- --ignored` on a host with rsync.

use protocol::checksum::{ChecksumAlgo, FileHasher};
use protocol::matcher::{DeltaMatcher, DeltaOp};
use protocol::sums::{SumBlocks, SumHead};
use protocol::token::{Compression, TokenDecoder, TokenEncoder, TokenError};

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Zlib,
    Compression::ZlibX,
    Compression::Zstd,
    Compression::Lz4,
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Text-like data (compressible, with repeats) so deflate back-references
/// are common.
fn texty(rng: &mut Rng, n: usize) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "rsync ",
        "mirror ",
        "delta ",
        "block ",
        "the ",
        "of ",
        "zlib ",
        "\n",
        "checksum ",
        "data ",
        "a ",
        "42 ",
    ];
    let mut v = Vec::with_capacity(n + 16);
    while v.len() < n {
        v.extend_from_slice(WORDS[rng.below(WORDS.len())].as_bytes());
    }
    v.truncate(n);
    v
}

fn edited(rng: &mut Rng, basis: &[u8]) -> Vec<u8> {
    let mut f = basis.to_vec();
    let n = f.len();
    f[n / 7] ^= 0x5A;
    let ins = texty(rng, 1234);
    f.splice(n / 3..n / 3, ins);
    f.drain(n / 2..n / 2 + 999);
    let p = 2 * n / 3;
    f[p..p + 50].copy_from_slice(&[0xEE; 50]);
    f.extend_from_slice(b"appended tail\n");
    f
}

struct Encoded {
    bytes: Vec<u8>,
    literal: u64,
    matched: u64,
    sum: Vec<u8>,
}

/// Run the sender side for one file: matcher + encoder + file checksum.
#[allow(clippy::too_many_arguments)]
fn send_file(
    enc: &mut TokenEncoder,
    head: SumHead,
    blocks: SumBlocks,
    algo: ChecksumAlgo,
    seed: i32,
    file: &[u8],
    chunks: &[usize],
) -> Encoded {
    let mut m = DeltaMatcher::new(head, blocks, algo, seed, true);
    let mut out = Vec::new();
    let mut err: Option<TokenError> = None;
    let mut hasher = FileHasher::new(algo, seed);
    let mut sink = |op: DeltaOp<'_>| {
        let r = match op {
            DeltaOp::Literal(d) => enc.literal(&mut out, d),
            DeltaOp::Match { block, data } => enc.block_match(&mut out, block, data),
        };
        if let Err(e) = r {
            err = Some(e);
        }
    };
    let mut pos = 0;
    let mut i = 0;
    while pos < file.len() {
        let n = chunks[i % chunks.len()].min(file.len() - pos);
        hasher.update(&file[pos..pos + n]);
        m.push(&file[pos..pos + n], &mut sink);
        pos += n;
        i += 1;
    }
    m.finish(&mut sink);
    assert!(err.is_none(), "{err:?}");
    enc.end_file(&mut out).unwrap();
    Encoded {
        bytes: out,
        literal: m.literal_bytes(),
        matched: m.matched_bytes(),
        sum: hasher.finish(),
    }
}

fn sums_for(
    basis: &[u8],
    protocol: u8,
    algo: ChecksumAlgo,
    seed: i32,
    block_size: i32,
) -> (SumHead, SumBlocks) {
    let head = SumHead::for_basis_len(
        basis.len() as u64,
        protocol,
        algo.digest_len(),
        2,
        block_size,
    )
    .unwrap();
    let blocks = SumBlocks::from_basis(basis, &head, algo, seed, true);
    (head, blocks)
}

#[test]
fn roundtrip_every_compression_and_protocol() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let basis_a = texty(&mut rng, 400_000);
    let file_a = edited(&mut rng, &basis_a);
    let basis_b = rng.bytes(150_000);
    let file_b = edited(&mut rng, &basis_b);
    let file_c = texty(&mut rng, 70_000);
    for protocol in [29u8, 30, 31] {
        let algo = ChecksumAlgo::default_for_protocol(protocol);
        for c in ALL {
            let mut enc = TokenEncoder::new(c, None, protocol).unwrap();
            let mut dec = TokenDecoder::new(c, protocol).unwrap();
            // Several files on one connection: zstd keeps its stream, zlib resets.
            let jobs: [(&[u8], &[u8]); 4] = [
                (&basis_a[..], &file_a[..]),
                (&basis_b[..], &file_b[..]),
                (&[][..], &file_c[..]),
                (&basis_a[..], &file_a[..]),
            ];
            let mut wire = Vec::new();
            let mut expect = Vec::new();
            for (basis, file) in jobs {
                let (head, blocks) = if basis.is_empty() {
                    (SumHead::default(), SumBlocks::default())
                } else {
                    sums_for(basis, protocol, algo, 0x1234_5678, 0)
                };
                let e = send_file(
                    &mut enc,
                    head,
                    blocks,
                    algo,
                    0x1234_5678,
                    file,
                    &[4096, 1, 65_537, 333],
                );
                assert_eq!(e.literal + e.matched, file.len() as u64);
                if !basis.is_empty() {
                    assert!(
                        e.literal < 6_000,
                        "{c:?} literal {} of {}",
                        e.literal,
                        file.len()
                    );
                }
                wire.push((e.bytes, head, basis, e.sum));
                expect.push(file);
            }
            for ((bytes, head, basis, sum), file) in wire.iter().zip(expect) {
                let mut got = Vec::new();
                let r = dec
                    .decode_file(bytes, head, basis, &mut got)
                    .unwrap_or_else(|e| panic!("{c:?}/{protocol}: {e}"));
                assert_eq!(r.consumed, bytes.len(), "{c:?}");
                assert!(got == file, "{c:?}/{protocol}: rebuilt file differs");
                let mut h = FileHasher::new(algo, 0x1234_5678);
                h.update(&got);
                assert_eq!(&h.finish(), sum);
            }
            // Compression actually compresses the literal parts of texty data.
            if c != Compression::None {
                let total: usize = wire.iter().map(|w| w.0.len()).sum();
                assert!(total < file_c.len(), "{c:?} wire {total}");
            }
        }
    }
}

/// Literal chunk limits on the wire: int32 runs <= 32 KiB uncompressed,
/// DEFLATED_DATA <= 16383 bytes.
#[test]
fn chunk_limits() {
    let mut rng = Rng(7);
    let data = rng.bytes(300_000); // incompressible
    for c in ALL {
        let mut enc = TokenEncoder::new(c, None, 31).unwrap();
        let mut out = Vec::new();
        enc.literal(&mut out, &data).unwrap();
        enc.end_file(&mut out).unwrap();
        let mut p = 0;
        let mut n_chunks = 0;
        if c == Compression::None {
            loop {
                let n = i32::from_le_bytes(out[p..p + 4].try_into().unwrap());
                p += 4;
                if n == 0 {
                    break;
                }
                assert!(n > 0 && n <= 32 * 1024);
                p += n as usize;
                n_chunks += 1;
            }
        } else {
            loop {
                let f = out[p];
                if f == 0 {
                    break;
                }
                assert_eq!(f & 0xC0, 0x40);
                let n = (((f & 0x3F) as usize) << 8) + out[p + 1] as usize;
                assert!(n > 0 && n <= 16383);
                p += 2 + n;
                n_chunks += 1;
            }
        }
        let end = if c == Compression::None { p } else { p + 1 };
        assert_eq!(end, out.len(), "{c:?}");
        assert!(n_chunks >= 10, "{c:?}");
        let mut got = Vec::new();
        TokenDecoder::new(c, 31)
            .unwrap()
            .decode_file(&out, &SumHead::default(), b"", &mut got)
            .unwrap();
        assert!(got == data);
    }
}

/// zlib history insertion matters, and the protocol < 31 quirk for blocks
/// longer than 0xFFFF is mirrored on both sides.
#[test]
fn zlib_history_and_large_block_quirk() {
    let mut rng = Rng(11);
    let basis = texty(&mut rng, 4 * 131_072);
    // File: block 0, then a slightly changed copy of bytes from the end of
    // block 0 (deflate will reference the inserted history), then block 1..
    let mut file = basis[..131_072].to_vec();
    let mut echo = basis[100_000..101_000].to_vec();
    echo[500] ^= 1;
    file.extend_from_slice(&echo);
    file.extend_from_slice(&basis[131_072..]);
    for protocol in [30u8, 31] {
        let (head, blocks) = sums_for(&basis, protocol, ChecksumAlgo::Md5, 5, 131_072);
        assert_eq!(head.blength, 131_072);
        let mut enc = TokenEncoder::new(Compression::Zlib, None, protocol).unwrap();
        let e = send_file(
            &mut enc,
            head,
            blocks,
            ChecksumAlgo::Md5,
            5,
            &file,
            &[100_000],
        );
        assert_eq!(e.matched, basis.len() as u64);
        let mut got = Vec::new();
        TokenDecoder::new(Compression::Zlib, protocol)
            .unwrap()
            .decode_file(&e.bytes, &head, &basis, &mut got)
            .unwrap();
        assert!(got == file, "proto {protocol}");
        if protocol == 31 {
            // The literal compresses to a back-reference into block 0: tiny.
            assert!(e.bytes.len() < 200, "wire {}", e.bytes.len());
            // A receiver that skips insertion (zlibx) or uses the < 31 quirk
            // cannot decode it.
            for (c, p) in [(Compression::ZlibX, 31u8), (Compression::Zlib, 30)] {
                let mut got = Vec::new();
                let r = TokenDecoder::new(c, p)
                    .unwrap()
                    .decode_file(&e.bytes, &head, &basis, &mut got);
                assert!(
                    r.is_err() || got != file,
                    "{c:?}/{p} decoded a proto-31 zlib stream"
                );
            }
        }
    }
}

/// 50 MiB through the matcher in odd chunk sizes: memory stays bounded and
/// every op is correct.
#[test]
fn bounded_memory_on_large_stream() {
    let mut rng = Rng(0xDEADBEEF);
    let basis = rng.bytes(8 << 20);
    let (head, blocks) = sums_for(&basis, 31, ChecksumAlgo::Xxh128, -77, 0);
    let bl = head.blength as usize;
    // 50 MiB: unaligned copies of basis regions interleaved with new bytes.
    let total = 50 << 20;
    let mut file = Vec::with_capacity(total);
    while file.len() < total {
        if rng.below(5) == 0 {
            let n = 1 + rng.below(40_000);
            file.extend_from_slice(&rng.bytes(n));
        } else {
            let start = rng.below(basis.len() - 600_000);
            let n = 1 + rng.below(500_000);
            file.extend_from_slice(&basis[start..start + n]);
        }
    }
    file.truncate(total);
    let mut m = DeltaMatcher::new(head, blocks, ChecksumAlgo::Xxh128, -77, true);
    let bound = 2 * bl + 64 * 1024;
    let mut pos = 0usize;
    let mut n_matches = 0u64;
    {
        let mut check = |op: DeltaOp<'_>| match op {
            DeltaOp::Literal(d) => {
                assert!(d == &file[pos..pos + d.len()]);
                pos += d.len();
            }
            DeltaOp::Match { block, data } => {
                let off = head.block_offset(block) as usize;
                assert!(data == &basis[off..off + head.block_len(block)]);
                assert!(data == &file[pos..pos + data.len()]);
                pos += data.len();
                n_matches += 1;
            }
        };
        let sizes = [1usize, 7, 65_537, 1_000_003, 13, 4096, 250_000];
        let mut p = 0;
        let mut i = 0;
        while p < file.len() {
            let n = sizes[i % sizes.len()].min(file.len() - p);
            m.push(&file[p..p + n], &mut check);
            assert!(
                m.buffer_capacity() <= bound,
                "buffer {} > {bound}",
                m.buffer_capacity()
            );
            p += n;
            i += 1;
        }
        m.finish(&mut check);
    }
    assert_eq!(pos, total);
    assert_eq!(m.matched_bytes() + m.literal_bytes(), total as u64);
    // Roughly 4/5 of the segments are basis copies; most of their bytes match.
    assert!(
        m.matched_bytes() > (total as u64) / 2,
        "matched {}",
        m.matched_bytes()
    );
    assert!(n_matches > 1000);
}

// ---------------------------------------------------------------------------
// Checks against stock rsync (ignored by default).

mod stock {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn workdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("delta-it-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("src")).unwrap();
        std::fs::create_dir_all(d.join("dst")).unwrap();
        d
    }

    fn find(hay: &[u8], needle: &[u8]) -> Vec<usize> {
        hay.windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i)
            .collect()
    }

    fn run(cmd: &mut Command) -> std::process::Output {
        cmd.output().expect("run rsync")
    }

    struct Case {
        protocol: u8,
        zlib: bool,
        block_size: i32,
    }

    /// Stock sender writes a batch; our decoder must rebuild it and agree on
    /// the file checksum. Then our own token stream is spliced into the batch
    /// and stock `rsync --read-batch` (the real receiver code) must accept it
    /// and produce the file.
    fn batch_case(case: &Case) {
        let name = format!("p{}-{}-{}", case.protocol, case.zlib, case.block_size);
        let dir = workdir(&name);
        let mut rng = Rng(case.protocol as u64 * 1000 + case.block_size as u64 + 1);
        let basis = texty(
            &mut rng,
            if case.block_size > 0 {
                2_500_000
            } else {
                600_000
            },
        );
        let file = edited(&mut rng, &basis);
        std::fs::write(dir.join("dst/f.txt"), &basis).unwrap();
        std::fs::write(dir.join("src/f.txt"), &file).unwrap();
        let seed = 12345;
        let mut cmd = Command::new("rsync");
        cmd.current_dir(&dir)
            .arg("-r")
            .arg(format!("--protocol={}", case.protocol));
        cmd.arg(format!("--checksum-seed={seed}"));
        let algo = if case.protocol >= 30 {
            cmd.arg("--checksum-choice=md5");
            ChecksumAlgo::Md5
        } else {
            ChecksumAlgo::Md4Legacy
        };
        let comp = if case.zlib {
            cmd.arg("-z").arg("--compress-choice=zlib");
            Compression::Zlib
        } else {
            Compression::None
        };
        if case.block_size > 0 {
            cmd.arg(format!("--block-size={}", case.block_size));
        }
        cmd.arg("--only-write-batch=batch").arg("src/").arg("dst/");
        let o = run(&mut cmd);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let batch = std::fs::read(dir.join("batch")).unwrap();

        let head =
            SumHead::for_basis_len(basis.len() as u64, case.protocol, 16, 2, case.block_size)
                .unwrap();
        let mut pat = Vec::new();
        protocol::sums::encode_sum_head(&mut pat, &head, case.protocol);
        let at = find(&batch, &pat);
        assert_eq!(
            at.len(),
            1,
            "{name}: sum head {head:?} found {} times",
            at.len()
        );
        let tok_start = at[0] + pat.len();

        // 1. Our receiver port decodes the stock sender's stream.
        let mut got = Vec::new();
        let r = TokenDecoder::new(comp, case.protocol)
            .unwrap()
            .decode_file(&batch[tok_start..], &head, &basis, &mut got)
            .unwrap_or_else(|e| panic!("{name}: decoding stock stream: {e}"));
        assert!(got == file, "{name}: stock stream rebuilt wrongly");
        let sum_at = tok_start + r.consumed;
        let mut h = FileHasher::new(algo, seed);
        h.update(&file);
        let our_sum = h.finish();
        assert_eq!(
            &batch[sum_at..sum_at + 16],
            our_sum.as_slice(),
            "{name}: file checksum"
        );
        let tail = &batch[sum_at + 16..];

        // 2. Stock receiver accepts our stream.
        let (_, blocks) = sums_for(&basis, case.protocol, algo, seed, case.block_size);
        let mut enc = TokenEncoder::new(comp, None, case.protocol).unwrap();
        let e = send_file(
            &mut enc,
            head,
            blocks,
            algo,
            seed,
            &file,
            &[10_000, 3, 77_777],
        );
        assert!(e.matched > 0, "{name}: nothing matched");
        let splice = |sum: &[u8]| {
            let mut b = batch[..tok_start].to_vec();
            b.extend_from_slice(&e.bytes);
            b.extend_from_slice(sum);
            b.extend_from_slice(tail);
            b
        };
        let read_batch = |b: &[u8], tag: &str| -> (bool, Vec<u8>, String) {
            let out = dir.join(format!("out-{tag}"));
            let _ = std::fs::remove_dir_all(&out);
            std::fs::create_dir_all(&out).unwrap();
            std::fs::write(out.join("f.txt"), &basis).unwrap();
            std::fs::write(dir.join(format!("batch-{tag}")), b).unwrap();
            // A failed verification makes read-batch wait for a redo that
            // never comes: bound it with coreutils `timeout`.
            let mut cmd = Command::new("timeout");
            cmd.current_dir(&dir)
                .args(["10", "rsync", "-r"])
                .arg(format!("--read-batch=batch-{tag}"));
            if case.zlib {
                cmd.arg("-z").arg("--compress-choice=zlib");
            }
            cmd.arg(format!("out-{tag}/"));
            let o = run(&mut cmd);
            let data = std::fs::read(out.join("f.txt")).unwrap_or_default();
            (
                o.status.success(),
                data,
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        };
        let (ok, data, err) = read_batch(&splice(&e.sum), "ours");
        assert!(ok, "{name}: stock receiver rejected our stream: {err}");
        assert!(
            data == file,
            "{name}: stock receiver rebuilt a different file"
        );
        // Negative control: a wrong file checksum must be noticed.
        let mut bad = e.sum.clone();
        bad[0] ^= 1;
        let (ok, data, _) = read_batch(&splice(&bad), "bad");
        // (Exit status varies: proto 29 exits 0 after discarding the update.)
        let _ = ok;
        assert!(data != file, "{name}: corrupted checksum went unnoticed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    #[ignore = "needs stock rsync in PATH"]
    fn stock_batch_interop() {
        for case in [
            Case {
                protocol: 31,
                zlib: false,
                block_size: 0,
            },
            Case {
                protocol: 31,
                zlib: true,
                block_size: 0,
            },
            Case {
                protocol: 30,
                zlib: true,
                block_size: 0,
            },
            Case {
                protocol: 29,
                zlib: false,
                block_size: 0,
            },
            Case {
                protocol: 29,
                zlib: true,
                block_size: 0,
            },
            Case {
                protocol: 27,
                zlib: true,
                block_size: 0,
            },
            Case {
                protocol: 31,
                zlib: true,
                block_size: 131_072,
            },
            Case {
                protocol: 30,
                zlib: true,
                block_size: 131_072,
            },
            Case {
                protocol: 29,
                zlib: true,
                block_size: 100_000,
            },
        ] {
            batch_case(&case);
        }
    }

    /// Capture a stock sender over a remote-shell session (`-e` wrapper that
    /// tees the server's stdout) and decode its zstd / lz4 / zlibx tokens with
    /// our receiver port (batch files only support zlib).
    #[test]
    #[ignore = "needs stock rsync in PATH"]
    fn stock_sender_capture_decodes() {
        for (c, name) in [
            (Compression::Zstd, "zstd"),
            (Compression::Lz4, "lz4"),
            (Compression::ZlibX, "zlibx"),
            (Compression::Zlib, "zlib"),
        ] {
            let dir = workdir(&format!("cap-{name}"));
            let mut rng = Rng(99);
            let basis = texty(&mut rng, 500_000);
            let file = edited(&mut rng, &basis);
            std::fs::write(dir.join("dst/f.txt"), &basis).unwrap();
            std::fs::write(dir.join("src/f.txt"), &file).unwrap();
            let cap = dir.join("capture");
            let rsh = dir.join("rsh.sh");
            std::fs::write(
                &rsh,
                format!("#!/bin/sh\nshift\n\"$@\" | tee {}\n", cap.display()),
            )
            .unwrap();
            let mut cmd = Command::new("rsync");
            cmd.current_dir(&dir)
                .args(["-r", "--checksum-seed=777", "--checksum-choice=md5", "-z"])
                .arg(format!("--compress-choice={name}"))
                .arg("--no-inc-recursive")
                .arg(format!("--rsh=sh {}", rsh.display()))
                .arg(format!("localhost:{}/", dir.join("src").display()))
                .arg("dst/");
            let o = run(&mut cmd);
            assert!(
                o.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(std::fs::read(dir.join("dst/f.txt")).unwrap() == file);
            let raw = std::fs::read(&cap).unwrap();
            // Server output: int protocol, varint compat flags, int seed, then
            // multiplexed frames (no negotiation strings: both choices given).
            let mut r = protocol::wire::Reader::new(&raw);
            let proto = r.i32().unwrap() as u8;
            let _compat = r.varint().unwrap();
            assert_eq!(r.i32().unwrap(), 777);
            let mut data = Vec::new();
            while r.remaining() > 0 {
                let h = r.u32().unwrap();
                let payload = r.bytes((h & 0xFF_FFFF) as usize).unwrap();
                if h >> 24 == 7 {
                    data.extend_from_slice(payload);
                }
            }
            let head = SumHead::for_basis_len(basis.len() as u64, proto, 16, 2, 0).unwrap();
            let mut pat = Vec::new();
            protocol::sums::encode_sum_head(&mut pat, &head, proto);
            let at = find(&data, &pat);
            assert_eq!(at.len(), 1, "{name}");
            let mut got = Vec::new();
            let res = TokenDecoder::new(c, proto)
                .unwrap()
                .decode_file(&data[at[0] + pat.len()..], &head, &basis, &mut got)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(got == file, "{name}: rebuilt wrongly");
            assert!(res.matched_bytes > 0);
            let _ = std::fs::remove_dir_all(&dir);
            let _: &Path = &dir;
        }
    }
}
