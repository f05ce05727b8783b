//! Checksums: rsync's rolling checksum, block strong sums, whole-file sums,
//! `-c` file-list sums and the daemon-auth digest.
//!
//! Mirrors `checksum.c`: `get_checksum1()` (rolling), `get_checksum2()`
//! (block strong sum), `sum_init()/sum_update()/sum_end()` (whole-file
//! transfer checksum), `file_checksum()` (`-c`), and
//! `authenticate.c: generate_hash()` (daemon auth). See
//! `docs/rsync-wire-protocol.md` §3.3, §5.3, §8.10 and §10.3.
//!
//! Seed rules in one place (the wire seed is the 4-byte little-endian
//! checksum seed of §5.3):
//!
//! | algo | block sum (`get_checksum2`) | whole-file sum (`sum_init`) |
//! |---|---|---|
//! | legacy MD4 (proto < 30) | MD4(block ‖ seed), seed omitted if 0 | MD4(seed ‖ data), seed always prepended |
//! | md4 (negotiated) | MD4(block ‖ seed), seed omitted if 0 | MD4(data) |
//! | md5 + `CF_CHKSUM_SEED_FIX` | MD5(seed ‖ block), seed omitted if 0 | MD5(data) |
//! | md5 without it | MD5(block ‖ seed), seed omitted if 0 | MD5(data) |
//! | sha1 | SHA1(seed ‖ block), seed omitted if 0 | SHA1(data) |
//! | xxh64 / xxh3 / xxh128 | seeded with the seed sign-extended to 64 bits | seed 0 |

use base64::Engine as _;
use md4::Digest as _;

/// Largest digest any transfer checksum produces (`MAX_DIGEST_LEN` in
/// rsync is 64 to fit SHA-512; our transfer digests stop at 20).
pub const MAX_DIGEST_LEN: usize = 64;

/// `SUM_LENGTH`: the full strong-sum length the generator asks for in the
/// redo phase.
pub const SUM_LENGTH: usize = 16;

/// A transfer (and `-c` file-list) checksum algorithm.
///
/// Mirrors the `CSUM_*` values of `lib/md-defines.h` that a protocol 27-32
/// peer can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgo {
    /// `CSUM_MD4_OLD`: the default for protocols 27-29 (never negotiated
    /// by name). The whole-file sum prepends the 4 seed bytes.
    Md4Legacy,
    /// `CSUM_MD4`: "md4" chosen by negotiation. Avoid offering it: the
    /// block-sum seed placement depends on the client's OpenSSL build
    /// (§10.3); this implementation uses the built-in order (block ‖ seed).
    Md4,
    /// `CSUM_MD5`.
    Md5,
    /// `CSUM_SHA1`.
    Sha1,
    /// `CSUM_XXH64` ("xxh64", alias "xxhash").
    Xxh64,
    /// `CSUM_XXH3_64` ("xxh3").
    Xxh3,
    /// `CSUM_XXH3_128` ("xxh128").
    Xxh128,
}

impl ChecksumAlgo {
    /// Parse a negotiation name (`checksum.c: valid_checksums_items[]`),
    /// case-insensitively. `"xxhash"` is an alias of `"xxh64"`. Returns
    /// `None` for unknown names and for `"none"` (a sender cannot use it).
    pub fn from_name(name: &[u8]) -> Option<Self> {
        crate::wire::lookup_name(
            name,
            &[
                ("md4", ChecksumAlgo::Md4),
                ("md5", ChecksumAlgo::Md5),
                ("sha1", ChecksumAlgo::Sha1),
                ("xxh64", ChecksumAlgo::Xxh64),
                ("xxhash", ChecksumAlgo::Xxh64),
                ("xxh3", ChecksumAlgo::Xxh3),
                ("xxh128", ChecksumAlgo::Xxh128),
            ],
        )
    }

    /// The canonical negotiation name (legacy MD4 reports `"md4"`).
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgo::Md4Legacy | ChecksumAlgo::Md4 => "md4",
            ChecksumAlgo::Md5 => "md5",
            ChecksumAlgo::Sha1 => "sha1",
            ChecksumAlgo::Xxh64 => "xxh64",
            ChecksumAlgo::Xxh3 => "xxh3",
            ChecksumAlgo::Xxh128 => "xxh128",
        }
    }

    /// Digest length in bytes (`checksum.c: csum_len_for_type()`).
    pub fn digest_len(self) -> usize {
        match self {
            ChecksumAlgo::Md4Legacy | ChecksumAlgo::Md4 | ChecksumAlgo::Md5 => 16,
            ChecksumAlgo::Sha1 => 20,
            ChecksumAlgo::Xxh64 | ChecksumAlgo::Xxh3 => 8,
            ChecksumAlgo::Xxh128 => 16,
        }
    }

    /// The default transfer checksum when nothing was negotiated
    /// (`checksum.c: parse_csum_name(NULL)`): md5 for protocol >= 30,
    /// legacy MD4 below.
    pub fn default_for_protocol(protocol: u8) -> Self {
        if protocol >= 30 {
            ChecksumAlgo::Md5
        } else {
            ChecksumAlgo::Md4Legacy
        }
    }
}

/// The seed as xxhash wants it: the C `int` converted to 64 bits with sign
/// extension (§5.3).
fn xxh_seed(seed: i32) -> u64 {
    seed as i64 as u64
}

/// `get_checksum1()`: rsync's rolling checksum of `block`, bytes taken as
/// signed chars, `CHAR_OFFSET` 0. Returns `(s1 & 0xFFFF) | (s2 << 16)`.
pub fn rolling_checksum(block: &[u8]) -> u32 {
    Rolling::new(block).value()
}

/// Incremental form of [`rolling_checksum`] for a sliding window.
///
/// Mirrors the update arithmetic in `match.c: hash_search()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rolling {
    s1: u32,
    s2: u32,
    len: u32,
}

#[inline]
fn sc(b: u8) -> u32 {
    b as i8 as i32 as u32
}

impl Rolling {
    /// Checksum of a whole window.
    pub fn new(block: &[u8]) -> Self {
        let mut s1: u32 = 0;
        let mut s2: u32 = 0;
        for &b in block {
            s1 = s1.wrapping_add(sc(b));
            s2 = s2.wrapping_add(s1);
        }
        Rolling {
            s1,
            s2,
            len: block.len() as u32,
        }
    }

    /// Slide the window by one byte: drop `out_byte` (the first byte of the
    /// window) and append `in_byte`. The window length is unchanged.
    #[inline]
    pub fn roll(&mut self, out_byte: u8, in_byte: u8) {
        let a = sc(out_byte);
        self.s1 = self.s1.wrapping_sub(a).wrapping_add(sc(in_byte));
        self.s2 = self
            .s2
            .wrapping_sub(self.len.wrapping_mul(a))
            .wrapping_add(self.s1);
    }

    /// Drop `out_byte` (the first byte of the window) without appending
    /// anything: the window shrinks by one (used at end of file).
    #[inline]
    pub fn roll_out(&mut self, out_byte: u8) {
        let a = sc(out_byte);
        self.s1 = self.s1.wrapping_sub(a);
        self.s2 = self.s2.wrapping_sub(self.len.wrapping_mul(a));
        self.len = self.len.saturating_sub(1);
    }

    /// Current window length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the window is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The checksum value `(s1 & 0xFFFF) | (s2 << 16)`.
    #[inline]
    pub fn value(&self) -> u32 {
        (self.s1 & 0xFFFF) | (self.s2 << 16)
    }
}

/// `get_checksum2()`: the strong checksum of one block into `out`; returns
/// the number of bytes written (the algorithm's digest length). The caller
/// compares only the first `min(s2length, digest_len)` bytes.
///
/// `seed` is the connection's checksum seed; `seed_fix` is
/// `CF_CHKSUM_SEED_FIX` (`proper_seed_order`), which only matters for MD5.
pub fn block_checksum(
    algo: ChecksumAlgo,
    seed: i32,
    seed_fix: bool,
    data: &[u8],
    out: &mut [u8; MAX_DIGEST_LEN],
) -> usize {
    let seed_bytes = seed.to_le_bytes();
    match algo {
        ChecksumAlgo::Md4Legacy | ChecksumAlgo::Md4 => {
            // Built-in mdfour path: the seed is appended (and omitted when 0).
            let mut h = md4::Md4::new();
            h.update(data);
            if seed != 0 {
                h.update(seed_bytes);
            }
            out[..16].copy_from_slice(&h.finalize());
            16
        }
        ChecksumAlgo::Md5 => {
            let mut h = md5::Md5::new();
            if seed != 0 && seed_fix {
                h.update(seed_bytes);
            }
            h.update(data);
            if seed != 0 && !seed_fix {
                h.update(seed_bytes);
            }
            out[..16].copy_from_slice(&h.finalize());
            16
        }
        ChecksumAlgo::Sha1 => {
            // Only available through OpenSSL EVP in stock: seed first.
            let mut h = sha1::Sha1::new();
            if seed != 0 {
                h.update(seed_bytes);
            }
            h.update(data);
            out[..20].copy_from_slice(&h.finalize());
            20
        }
        ChecksumAlgo::Xxh64 => {
            let v = xxhash_rust::xxh64::xxh64(data, xxh_seed(seed));
            out[..8].copy_from_slice(&v.to_le_bytes());
            8
        }
        ChecksumAlgo::Xxh3 => {
            let v = xxhash_rust::xxh3::xxh3_64_with_seed(data, xxh_seed(seed));
            out[..8].copy_from_slice(&v.to_le_bytes());
            8
        }
        ChecksumAlgo::Xxh128 => {
            // low 64 bits LE then high 64 bits LE == u128 little-endian.
            let v = xxhash_rust::xxh3::xxh3_128_with_seed(data, xxh_seed(seed));
            out[..16].copy_from_slice(&v.to_le_bytes());
            16
        }
    }
}

#[derive(Clone)]
enum HashState {
    Md4(md4::Md4),
    Md5(md5::Md5),
    Sha1(sha1::Sha1),
    Xxh64(Box<xxhash_rust::xxh64::Xxh64>),
    Xxh3(Box<xxhash_rust::xxh3::Xxh3>),
    Xxh128(Box<xxhash_rust::xxh3::Xxh3>),
}

/// The whole-file checksum sent after a file's tokens
/// (`checksum.c: sum_init()/sum_update()/sum_end()` as driven by
/// `match.c: match_sums()`).
///
/// Legacy MD4 prepends the 4 seed bytes (even when the seed is 0);
/// negotiated md4, md5 and sha1 are plain digests; xxh* use seed 0.
#[derive(Clone)]
pub struct FileHasher {
    state: HashState,
}

impl std::fmt::Debug for FileHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileHasher").finish_non_exhaustive()
    }
}

impl FileHasher {
    /// Start a transfer checksum for `algo` with the connection seed.
    pub fn new(algo: ChecksumAlgo, seed: i32) -> Self {
        let state = match algo {
            ChecksumAlgo::Md4Legacy => {
                let mut h = md4::Md4::new();
                h.update(seed.to_le_bytes());
                HashState::Md4(h)
            }
            ChecksumAlgo::Md4 => HashState::Md4(md4::Md4::new()),
            ChecksumAlgo::Md5 => HashState::Md5(md5::Md5::new()),
            ChecksumAlgo::Sha1 => HashState::Sha1(sha1::Sha1::new()),
            ChecksumAlgo::Xxh64 => HashState::Xxh64(Box::new(xxhash_rust::xxh64::Xxh64::new(0))),
            ChecksumAlgo::Xxh3 => HashState::Xxh3(Box::new(xxhash_rust::xxh3::Xxh3::with_seed(0))),
            ChecksumAlgo::Xxh128 => {
                HashState::Xxh128(Box::new(xxhash_rust::xxh3::Xxh3::with_seed(0)))
            }
        };
        FileHasher { state }
    }

    /// Feed file bytes.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            HashState::Md4(h) => h.update(data),
            HashState::Md5(h) => h.update(data),
            HashState::Sha1(h) => h.update(data),
            HashState::Xxh64(h) => h.update(data),
            HashState::Xxh3(h) | HashState::Xxh128(h) => h.update(data),
        }
    }

    /// The digest, full length (xxh values little-endian; xxh128 low half
    /// first).
    pub fn finish(self) -> Vec<u8> {
        match self.state {
            HashState::Md4(h) => h.finalize().to_vec(),
            HashState::Md5(h) => h.finalize().to_vec(),
            HashState::Sha1(h) => h.finalize().to_vec(),
            HashState::Xxh64(h) => h.digest().to_le_bytes().to_vec(),
            HashState::Xxh3(h) => h.digest().to_le_bytes().to_vec(),
            HashState::Xxh128(h) => h.digest128().to_le_bytes().to_vec(),
        }
    }
}

/// Hasher for the `-c` file-list checksum (`checksum.c: file_checksum()`):
/// unseeded in every case; legacy MD4 is plain MD4 here (§8.10).
pub fn file_list_checksum_hasher(algo: ChecksumAlgo) -> FileHasher {
    match algo {
        ChecksumAlgo::Md4Legacy => FileHasher::new(ChecksumAlgo::Md4, 0),
        other => FileHasher::new(other, 0),
    }
}

/// The sender's deliberately wrong whole-file checksum after a read error
/// (`match.c: match_sums()`): all zero bytes, or, if the real sum was all
/// zeros, zeros with the last byte set to 1.
pub fn poison_file_checksum(sum: &mut [u8]) {
    let all_zero = sum.iter().all(|&b| b == 0);
    sum.fill(0);
    if all_zero {
        if let Some(last) = sum.last_mut() {
            *last = 1;
        }
    }
}

/// Digest used for daemon authentication (`checksum.c:
/// valid_auth_checksums_items[]`, `authenticate.c: generate_hash()`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthDigest {
    /// Client sent no digest list and protocol < 30: MD4 over
    /// `00 00 00 00 ‖ password ‖ challenge` (`CSUM_MD4_OLD`, seed 0).
    Md4Legacy,
    /// "md4" by negotiation: plain MD4.
    Md4,
    /// "md5" (also the default for protocol >= 30 without a list).
    Md5,
    /// "sha1".
    Sha1,
    /// "sha256".
    Sha256,
    /// "sha512".
    Sha512,
}

impl AuthDigest {
    /// Parse a name from a greeting digest list, case-insensitively
    /// (never yields [`AuthDigest::Md4Legacy`]).
    pub fn from_name(name: &[u8]) -> Option<Self> {
        crate::wire::lookup_name(
            name,
            &[
                ("md4", AuthDigest::Md4),
                ("md5", AuthDigest::Md5),
                ("sha1", AuthDigest::Sha1),
                ("sha256", AuthDigest::Sha256),
                ("sha512", AuthDigest::Sha512),
            ],
        )
    }

    /// The name as it appears in digest lists (legacy MD4 reports "md4").
    pub fn name(self) -> &'static str {
        match self {
            AuthDigest::Md4Legacy | AuthDigest::Md4 => "md4",
            AuthDigest::Md5 => "md5",
            AuthDigest::Sha1 => "sha1",
            AuthDigest::Sha256 => "sha256",
            AuthDigest::Sha512 => "sha512",
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            AuthDigest::Md4Legacy | AuthDigest::Md4 | AuthDigest::Md5 => 16,
            AuthDigest::Sha1 => 20,
            AuthDigest::Sha256 => 32,
            AuthDigest::Sha512 => 64,
        }
    }

    /// Raw digest of the concatenation of `parts`.
    pub fn digest(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: md4::Digest>(mut h: D, parts: &[&[u8]]) -> Vec<u8> {
            for p in parts {
                h.update(p);
            }
            h.finalize().to_vec()
        }
        match self {
            AuthDigest::Md4Legacy => {
                let mut h = md4::Md4::new();
                h.update([0u8; 4]);
                run(h, parts)
            }
            AuthDigest::Md4 => run(md4::Md4::new(), parts),
            AuthDigest::Md5 => run(md5::Md5::new(), parts),
            AuthDigest::Sha1 => run(sha1::Sha1::new(), parts),
            AuthDigest::Sha256 => run(sha2::Sha256::new(), parts),
            AuthDigest::Sha512 => run(sha2::Sha512::new(), parts),
        }
    }
}

/// The expected daemon-auth response (`authenticate.c: generate_hash()`):
/// base64 without padding of `DIGEST(password ‖ challenge)` (§3.3).
pub fn auth_response(digest: AuthDigest, password: &[u8], challenge: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.digest(&[password, challenge]))
}

/// Base64 without padding, as rsync's `base64_encode(..., pad=0)`; useful
/// for building challenges from random bytes.
pub fn base64_nopad(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    /// Straight transcription of the definition in §10.3 (no unrolling).
    fn naive_sum1(b: &[u8]) -> u32 {
        let n = b.len() as i64;
        let mut s1: i64 = 0;
        let mut s2: i64 = 0;
        for (i, &x) in b.iter().enumerate() {
            let v = x as i8 as i64;
            s1 += v;
            s2 += (n - i as i64) * v;
        }
        ((s1 as u32) & 0xFFFF) | ((s2 as u32) << 16)
    }

    fn pseudo_random(n: usize, mut x: u32) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 3) as u8
            })
            .collect()
    }

    #[test]
    fn rolling_matches_naive_including_high_bytes() {
        let data = pseudo_random(5000, 0x1234_5678);
        assert!(data.iter().any(|&b| b >= 0x80));
        for len in [0usize, 1, 2, 3, 4, 5, 7, 64, 700, 1000] {
            assert_eq!(
                rolling_checksum(&data[..len]),
                naive_sum1(&data[..len]),
                "len {len}"
            );
        }
        // All-0xFF block: signed chars make s1 negative.
        let ff = vec![0xFFu8; 700];
        assert_eq!(rolling_checksum(&ff), naive_sum1(&ff));
        let s1 = (-700i32) as u32 & 0xFFFF;
        assert_eq!(rolling_checksum(&ff) & 0xFFFF, s1);
        // Slide a 700-byte window across, compare at each step.
        let w = 700;
        let mut r = Rolling::new(&data[..w]);
        for off in 1..(data.len() - w) {
            r.roll(data[off - 1], data[off + w - 1]);
            assert_eq!(r.value(), naive_sum1(&data[off..off + w]), "offset {off}");
        }
        // Shrinking window at EOF.
        let start = data.len() - w;
        let mut r = Rolling::new(&data[start..]);
        for off in start + 1..data.len() {
            r.roll_out(data[off - 1]);
            assert_eq!(r.len(), data.len() - off);
            assert_eq!(r.value(), naive_sum1(&data[off..]), "tail offset {off}");
        }
    }

    #[test]
    fn known_answer_file_sums() {
        let data = b"hello world\n";
        let digest = |algo, seed| {
            let mut h = FileHasher::new(algo, seed);
            h.update(&data[..5]);
            h.update(&data[5..]);
            h.finish()
        };
        assert_eq!(
            digest(ChecksumAlgo::Xxh128, 12345),
            hex("25 44 48 a5 33 e7 b2 36 13 cd 00 71 d8 c9 fa ee")
        );
        assert_eq!(
            digest(ChecksumAlgo::Md5, 0x6B10611A),
            hex("6f 59 02 ac 23 70 24 bd d0 c1 76 cb 93 06 3d c4")
        );
        // §12.3: seed bytes on the wire 1a 61 10 6b => seed 0x6B10611A.
        assert_eq!(i32::from_le_bytes([0x1a, 0x61, 0x10, 0x6b]), 0x6B10611A);
        assert_eq!(
            digest(ChecksumAlgo::Md4Legacy, 0x6B10611A),
            hex("49 86 2b 45 37 6d 78 3e b4 c1 a3 44 eb a1 44 db")
        );
        // Legacy MD4 prepends the seed even when it is zero: differs from plain MD4.
        assert_ne!(
            digest(ChecksumAlgo::Md4Legacy, 0),
            digest(ChecksumAlgo::Md4, 0)
        );
        // Plain MD4 of "hello world\n" (RFC 1320 MD4, cross-checked with openssl).
        let plain_md4 = hex("97 66 8a b2 f2 9d 01 15 bd 0d 11 61 b9 be c5 20");
        assert_eq!(digest(ChecksumAlgo::Md4, 99), plain_md4);
        // xxh64/xxh3 unseeded file sums, little-endian.
        assert_eq!(
            digest(ChecksumAlgo::Xxh64, 7),
            xxhash_rust::xxh64::xxh64(data, 0).to_le_bytes().to_vec()
        );
        assert_eq!(
            digest(ChecksumAlgo::Xxh3, 7),
            xxhash_rust::xxh3::xxh3_64(data).to_le_bytes().to_vec()
        );
        assert_eq!(
            digest(ChecksumAlgo::Sha1, 7),
            hex("22 59 63 63 b3 de 40 b0 6f 98 1f b8 5d 82 31 2e 8c 0e d5 11")
        );
        for algo in [
            ChecksumAlgo::Md4Legacy,
            ChecksumAlgo::Md4,
            ChecksumAlgo::Md5,
            ChecksumAlgo::Sha1,
            ChecksumAlgo::Xxh64,
            ChecksumAlgo::Xxh3,
            ChecksumAlgo::Xxh128,
        ] {
            assert_eq!(digest(algo, 1).len(), algo.digest_len());
        }
    }

    #[test]
    fn file_list_checksum_is_unseeded_plain_md4_for_legacy() {
        let mut h = file_list_checksum_hasher(ChecksumAlgo::Md4Legacy);
        h.update(b"hello world\n");
        assert_eq!(
            h.finish(),
            hex("97 66 8a b2 f2 9d 01 15 bd 0d 11 61 b9 be c5 20")
        );
        let mut h = file_list_checksum_hasher(ChecksumAlgo::Xxh128);
        h.update(b"hello world\n");
        assert_eq!(
            h.finish(),
            hex("25 44 48 a5 33 e7 b2 36 13 cd 00 71 d8 c9 fa ee")
        );
    }

    #[test]
    fn block_checksum_seed_rules() {
        let data = b"some block data";
        let seed: i32 = 0x6B10611A;
        let sb = seed.to_le_bytes();
        let mut out = [0u8; MAX_DIGEST_LEN];
        let cat = |a: &[u8], b: &[u8]| [a, b].concat();

        // MD5: seed first with seed_fix, last without; omitted when 0.
        let n = block_checksum(ChecksumAlgo::Md5, seed, true, data, &mut out);
        assert_eq!(&out[..n], md5::Md5::digest(cat(&sb, data)).as_slice());
        let n = block_checksum(ChecksumAlgo::Md5, seed, false, data, &mut out);
        assert_eq!(&out[..n], md5::Md5::digest(cat(data, &sb)).as_slice());
        let n = block_checksum(ChecksumAlgo::Md5, 0, true, data, &mut out);
        assert_eq!(&out[..n], md5::Md5::digest(data).as_slice());

        // MD4 (legacy and negotiated): seed appended, omitted when 0.
        for algo in [ChecksumAlgo::Md4Legacy, ChecksumAlgo::Md4] {
            let n = block_checksum(algo, seed, true, data, &mut out);
            assert_eq!(&out[..n], md4::Md4::digest(cat(data, &sb)).as_slice());
            let n = block_checksum(algo, 0, false, data, &mut out);
            assert_eq!(&out[..n], md4::Md4::digest(data).as_slice());
        }

        // SHA1: seed first.
        let n = block_checksum(ChecksumAlgo::Sha1, seed, false, data, &mut out);
        assert_eq!(n, 20);
        assert_eq!(&out[..n], sha1::Sha1::digest(cat(&sb, data)).as_slice());

        // xxh: seed sign-extended to 64 bits.
        let neg: i32 = -5;
        let n = block_checksum(ChecksumAlgo::Xxh64, neg, false, data, &mut out);
        assert_eq!(
            &out[..n],
            &xxhash_rust::xxh64::xxh64(data, 0xFFFF_FFFF_FFFF_FFFB).to_le_bytes()
        );
        assert_ne!(
            &out[..n],
            &xxhash_rust::xxh64::xxh64(data, 0xFFFF_FFFB).to_le_bytes()
        );
        let n = block_checksum(ChecksumAlgo::Xxh3, neg, false, data, &mut out);
        assert_eq!(
            &out[..n],
            &xxhash_rust::xxh3::xxh3_64_with_seed(data, neg as i64 as u64).to_le_bytes()
        );
        let n = block_checksum(ChecksumAlgo::Xxh128, seed, false, data, &mut out);
        let v = xxhash_rust::xxh3::xxh3_128_with_seed(data, seed as u64);
        assert_eq!(&out[..8], &(v as u64).to_le_bytes());
        assert_eq!(&out[8..n], &((v >> 64) as u64).to_le_bytes());
        // Seed 0 xxh128 of "hello world\n" equals the known file-list value.
        let n = block_checksum(ChecksumAlgo::Xxh128, 0, false, b"hello world\n", &mut out);
        assert_eq!(
            &out[..n],
            hex("25 44 48 a5 33 e7 b2 36 13 cd 00 71 d8 c9 fa ee").as_slice()
        );
    }

    #[test]
    fn names_roundtrip() {
        assert_eq!(
            ChecksumAlgo::from_name(b"XXHASH"),
            Some(ChecksumAlgo::Xxh64)
        );
        assert_eq!(
            ChecksumAlgo::from_name(b"Xxh128"),
            Some(ChecksumAlgo::Xxh128)
        );
        assert_eq!(ChecksumAlgo::from_name(b"none"), None);
        assert_eq!(ChecksumAlgo::from_name(b"sha256"), None);
        for a in [
            ChecksumAlgo::Md4,
            ChecksumAlgo::Md5,
            ChecksumAlgo::Sha1,
            ChecksumAlgo::Xxh64,
            ChecksumAlgo::Xxh3,
            ChecksumAlgo::Xxh128,
        ] {
            assert_eq!(ChecksumAlgo::from_name(a.name().as_bytes()), Some(a));
        }
        assert_eq!(
            ChecksumAlgo::default_for_protocol(29),
            ChecksumAlgo::Md4Legacy
        );
        assert_eq!(ChecksumAlgo::default_for_protocol(30), ChecksumAlgo::Md5);
        assert_eq!(AuthDigest::from_name(b"SHA512"), Some(AuthDigest::Sha512));
        assert_eq!(AuthDigest::from_name(b"xxh64"), None);
    }

    #[test]
    fn auth_response_matches_capture_12_4() {
        let challenge = b"d9nJMlOgOYsceREmZNtCKE4bi4+gJcEitXUWNyMNaGzlFeWR+nf5WKClppan18v8db9EMZdxjFj/+kuLaqHh1A";
        let expect = "v7MHfGp2PC1I2vqwPL51tsgXpYUiEsix5S+uYxpiQLqWSzBKZ6zjv1L6YtL3e4SBkCmOu1wWdyk5QCiwk7wBsA";
        assert_eq!(
            auth_response(AuthDigest::Sha512, b"s3cret", challenge),
            expect
        );
        assert_ne!(
            auth_response(AuthDigest::Sha512, b"s3creT", challenge),
            expect
        );
    }

    #[test]
    fn auth_response_other_digests() {
        let c = b"abcdefghijklmnopqrstuv";
        let md5 = auth_response(AuthDigest::Md5, b"pw", c);
        assert_eq!(md5.len(), 22);
        assert!(!md5.contains('='));
        assert_eq!(
            md5,
            base64_nopad(&md5::Md5::digest(b"pwabcdefghijklmnopqrstuv"))
        );
        let legacy = auth_response(AuthDigest::Md4Legacy, b"pw", c);
        let mut h = md4::Md4::new();
        h.update([0u8; 4]);
        h.update(b"pw");
        h.update(c);
        assert_eq!(legacy, base64_nopad(&h.finalize()));
        assert_ne!(legacy, auth_response(AuthDigest::Md4, b"pw", c));
        assert_eq!(auth_response(AuthDigest::Sha1, b"pw", c).len(), 27);
        assert_eq!(auth_response(AuthDigest::Sha256, b"pw", c).len(), 43);
        assert_eq!(auth_response(AuthDigest::Sha512, b"pw", c).len(), 86);
    }

    #[test]
    fn poison_checksum() {
        let mut s = vec![1, 2, 3];
        poison_file_checksum(&mut s);
        assert_eq!(s, [0, 0, 0]);
        poison_file_checksum(&mut s);
        assert_eq!(s, [0, 0, 1]);
    }
}
