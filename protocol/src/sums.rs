//! The sum head and block checksums a client's generator sends with each
//! transfer request (§10.2).
//!
//! Mirrors `io.c: read_sum_head()` / `write_sum_head()`,
//! `sender.c: receive_sums()` and, for tests and interop tooling, the
//! generator side `generator.c: sum_sizes_sqroot()` /
//! `generate_and_send_sums()`.
//!
//! Security (CVE-2024-12084 / CVE-2024-12085): the strong-sum length is
//! bounded before anything is allocated. We accept `s2length` up to
//! `max(digest_len, 16)`: 3.2.7-3.4.x clients send 16 in the redo phase even
//! when the negotiated digest is 8 bytes (xxh64/xxh3). The matcher then
//! compares only `min(s2length, digest_len)` bytes of a fully initialised
//! digest, so the extra bytes the client sent are ignored and nothing
//! uninitialised is ever compared. Larger values, negative values and the
//! old 64-byte bound are rejected with "Invalid checksum length N".

use crate::checksum::{self, ChecksumAlgo, MAX_DIGEST_LEN, SUM_LENGTH};
use crate::error::{DecodeError, DecodeResult};
use crate::limits::Limits;
use crate::wire::{put_i32, put_u32, Reader};

/// `MAX_BLOCK_SIZE`: the largest block length for protocol >= 30.
pub const MAX_BLOCK_SIZE: i32 = 1 << 17;
/// `OLD_MAX_BLOCK_SIZE`: the largest block length below protocol 30.
pub const OLD_MAX_BLOCK_SIZE: i32 = 1 << 29;
/// `BLOCK_SIZE`: the generator's minimum/default block length.
pub const BLOCK_SIZE: i32 = 700;

/// The sum head (`struct sum_struct` as sent on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SumHead {
    /// Number of blocks (0 = no basis: everything is sent literally).
    pub count: i32,
    /// Block length.
    pub blength: i32,
    /// Strong-sum bytes per block, as the client sent it.
    pub s2length: i32,
    /// Length of the last block (0 = all blocks full).
    pub remainder: i32,
}

impl SumHead {
    /// Length of block `i` (`receiver.c: receive_data()`): `blength`, or
    /// `remainder` for the last block when it is non-zero.
    pub fn block_len(&self, i: u32) -> usize {
        if self.remainder != 0 && i as i64 == self.count as i64 - 1 {
            self.remainder as usize
        } else {
            self.blength as usize
        }
    }

    /// Byte offset of block `i` in the client's basis file.
    pub fn block_offset(&self, i: u32) -> u64 {
        i as u64 * self.blength.max(0) as u64
    }

    /// Length of the basis the sums describe (`flength` in append mode):
    /// `count * blength`, minus `blength - remainder` when the remainder is
    /// non-zero. 0 for an empty head.
    pub fn basis_len(&self) -> u64 {
        if self.count <= 0 {
            return 0;
        }
        let full = self.count as u64 * self.blength as u64;
        if self.remainder != 0 {
            full - (self.blength - self.remainder) as u64
        } else {
            full
        }
    }

    /// Generator-side sizing (`generator.c: sum_sizes_sqroot()`), for tests
    /// and interop tools. `xfer_sum_len` is the transfer digest length;
    /// `csum_length` is 2 (`SHORT_SUM_LENGTH`) in the first pass and 16
    /// (`SUM_LENGTH`) in the redo pass. `block_size` is the client's
    /// `--block-size` (0 = automatic). Returns `None` if the block count
    /// overflows an `i32`.
    pub fn for_basis_len(
        len: u64,
        protocol: u8,
        xfer_sum_len: usize,
        csum_length: usize,
        block_size: i32,
    ) -> Option<SumHead> {
        let len = i64::try_from(len).ok()?;
        let max_s2 = SUM_LENGTH.min(xfer_sum_len) as i32;
        let max_blength = if protocol < 30 {
            OLD_MAX_BLOCK_SIZE
        } else {
            MAX_BLOCK_SIZE
        };
        let blength: i32 = if block_size > 0 {
            block_size
        } else if len <= (BLOCK_SIZE as i64) * (BLOCK_SIZE as i64) {
            BLOCK_SIZE
        } else {
            let mut c: i64 = 1;
            let mut l = len;
            loop {
                l >>= 2;
                if l == 0 {
                    break;
                }
                c <<= 1;
            }
            if c >= max_blength as i64 {
                max_blength
            } else {
                let mut b: i64 = 0;
                loop {
                    b |= c;
                    if len < b * b {
                        b &= !c;
                    }
                    c >>= 1;
                    if c < 8 {
                        break;
                    }
                }
                (b as i32).max(BLOCK_SIZE)
            }
        };
        let s2length = if csum_length == SUM_LENGTH {
            max_s2
        } else {
            let mut b: i32 = 10; // BLOCKSUM_BIAS
            let mut l = len;
            loop {
                l >>= 1;
                if l == 0 {
                    break;
                }
                b += 2;
            }
            let mut c = blength;
            loop {
                c >>= 1;
                if c == 0 || b == 0 {
                    break;
                }
                b -= 1;
            }
            let s2 = (b + 1 - 32 + 7) / 8;
            s2.max(csum_length as i32).min(max_s2)
        };
        let remainder = (len % blength as i64) as i32;
        let count = len / blength as i64 + i64::from(remainder != 0);
        Some(SumHead {
            count: i32::try_from(count).ok()?,
            blength,
            s2length,
            remainder,
        })
    }
}

fn invalid(detail: String) -> DecodeError {
    DecodeError::invalid("sum head", detail)
}

/// Largest `s2length` accepted for a transfer digest of `digest_len` bytes:
/// the digest length, raised to 16 for shorter digests (see module docs).
pub fn max_s2length(digest_len: usize) -> usize {
    digest_len.clamp(SUM_LENGTH, MAX_DIGEST_LEN)
}

/// `io.c: read_sum_head()`: decode and validate a sum head.
///
/// Checks, in stock order: `0 <= count <= limits.max_sum_blocks`;
/// `0 <= blength <= min(131072 (proto >= 30) or 1<<29, limits.max_block_len)`;
/// `blength > 0` when `count > 0`; `0 <= s2length <= max(digest_len, 16)`;
/// `0 <= remainder <= blength`. Protocols below 27 (no `s2length` field)
/// are rejected. Nothing is consumed unless the whole head is present.
pub fn decode_sum_head(
    r: &mut Reader<'_>,
    protocol: u8,
    digest_len: usize,
    limits: &Limits,
) -> DecodeResult<SumHead> {
    if protocol < 27 {
        return Err(invalid(format!(
            "protocol {protocol} sum heads are not supported"
        )));
    }
    if r.remaining() < 16 {
        return Err(DecodeError::Incomplete {
            needed: 16 - r.remaining(),
        });
    }
    let count = r.i32()?;
    if count < 0 {
        return Err(invalid(format!("Invalid checksum count {count}")));
    }
    if count as u64 > limits.max_sum_blocks as u64 {
        return Err(invalid(format!(
            "Invalid checksum count {count} (too large)"
        )));
    }
    let blength = r.i32()?;
    let stock_max = if protocol < 30 {
        OLD_MAX_BLOCK_SIZE
    } else {
        MAX_BLOCK_SIZE
    };
    let max_blength = (stock_max as i64).min(limits.max_block_len as i64);
    if blength < 0 || blength as i64 > max_blength {
        return Err(invalid(format!("Invalid block length {blength}")));
    }
    if count > 0 && blength == 0 {
        return Err(invalid("Invalid zero block length".to_string()));
    }
    let s2length = r.i32()?;
    if s2length < 0 || s2length as i64 > max_s2length(digest_len) as i64 {
        return Err(invalid(format!("Invalid checksum length {s2length}")));
    }
    let remainder = r.i32()?;
    if remainder < 0 || remainder > blength {
        return Err(invalid(format!("Invalid remainder length {remainder}")));
    }
    Ok(SumHead {
        count,
        blength,
        s2length,
        remainder,
    })
}

/// `io.c: write_sum_head()`: the head as 4 ints (3 below protocol 27).
/// The sender echoes the head exactly as received.
pub fn encode_sum_head(out: &mut Vec<u8>, h: &SumHead, protocol: u8) {
    put_i32(out, h.count);
    put_i32(out, h.blength);
    if protocol >= 27 {
        put_i32(out, h.s2length);
    }
    put_i32(out, h.remainder);
}

/// The per-block checksums of one request (`sender.c: receive_sums()`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SumBlocks {
    s2length: usize,
    sum1: Vec<u32>,
    sum2: Vec<u8>,
}

impl SumBlocks {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.sum1.len()
    }

    /// True when there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.sum1.is_empty()
    }

    /// Strong-sum bytes stored per block (the head's `s2length`).
    pub fn s2length(&self) -> usize {
        self.s2length
    }

    /// Rolling checksum of block `i`. Panics if `i >= len()`.
    pub fn sum1(&self, i: usize) -> u32 {
        self.sum1[i]
    }

    /// All rolling checksums.
    pub fn sum1_all(&self) -> &[u32] {
        &self.sum1
    }

    /// Strong sum of block `i` (`s2length` bytes). Panics if `i >= len()`.
    pub fn sum2(&self, i: usize) -> &[u8] {
        &self.sum2[i * self.s2length..(i + 1) * self.s2length]
    }

    /// Generator side (`generator.c: generate_and_send_sums()`): the sums of
    /// `basis` for `head` (as made by [`SumHead::for_basis_len`]). For tests
    /// and interop tools.
    pub fn from_basis(
        basis: &[u8],
        head: &SumHead,
        algo: ChecksumAlgo,
        seed: i32,
        seed_fix: bool,
    ) -> SumBlocks {
        let s2length = head.s2length.max(0) as usize;
        let count = head.count.max(0) as usize;
        let mut sum1 = Vec::with_capacity(count);
        let mut sum2 = Vec::with_capacity(count * s2length);
        let mut buf = [0u8; MAX_DIGEST_LEN];
        for i in 0..count {
            let off = head.block_offset(i as u32) as usize;
            let end = (off + head.block_len(i as u32)).min(basis.len());
            let block = &basis[off.min(end)..end];
            sum1.push(checksum::rolling_checksum(block));
            let n = checksum::block_checksum(algo, seed, seed_fix, block, &mut buf);
            // Like the generator: the digest, zero-padded if s2length exceeds it.
            let mut tmp = [0u8; MAX_DIGEST_LEN];
            tmp[..n].copy_from_slice(&buf[..n]);
            sum2.extend_from_slice(&tmp[..s2length.min(MAX_DIGEST_LEN)]);
        }
        SumBlocks {
            s2length,
            sum1,
            sum2,
        }
    }
}

/// Encode block sums as the generator does: per block a 4-byte LE `sum1`
/// and `s2length` bytes of strong sum. For tests and interop tools.
pub fn encode_sum_blocks(out: &mut Vec<u8>, blocks: &SumBlocks) {
    for i in 0..blocks.len() {
        put_u32(out, blocks.sum1(i));
        out.extend_from_slice(blocks.sum2(i));
    }
}

/// Decode `head.count` block sums (`sender.c: receive_sums()`).
///
/// Needs exactly `count * (4 + s2length)` bytes; if fewer are available it
/// returns [`DecodeError::Incomplete`] with the exact shortfall and consumes
/// nothing. Allocation happens only once all bytes are present. Call only
/// for heads that came from [`decode_sum_head`] (the head is re-checked for
/// sanity, not against [`Limits`]).
pub fn decode_sum_blocks(r: &mut Reader<'_>, head: &SumHead) -> DecodeResult<SumBlocks> {
    if head.count < 0 || head.s2length < 0 || head.s2length as usize > MAX_DIGEST_LEN {
        return Err(invalid(format!(
            "bad sum head (count {}, s2length {})",
            head.count, head.s2length
        )));
    }
    let count = head.count as usize;
    let s2length = head.s2length as usize;
    let total = count
        .checked_mul(4 + s2length)
        .ok_or_else(|| invalid(format!("Invalid checksum count {count} (too large)")))?;
    if r.remaining() < total {
        return Err(DecodeError::Incomplete {
            needed: total - r.remaining(),
        });
    }
    let raw = r.bytes(total)?;
    let mut sum1 = Vec::with_capacity(count);
    let mut sum2 = Vec::with_capacity(count * s2length);
    for rec in raw.chunks_exact(4 + s2length) {
        sum1.push(u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]));
        sum2.extend_from_slice(&rec[4..]);
    }
    Ok(SumBlocks {
        s2length,
        sum1,
        sum2,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_bytes(count: i32, blength: i32, s2: i32, rem: i32) -> Vec<u8> {
        let mut o = Vec::new();
        encode_sum_head(
            &mut o,
            &SumHead {
                count,
                blength,
                s2length: s2,
                remainder: rem,
            },
            31,
        );
        o
    }

    fn decode(b: &[u8], proto: u8, digest: usize) -> DecodeResult<SumHead> {
        decode_sum_head(&mut Reader::new(b), proto, digest, &Limits::default())
    }

    fn detail(e: DecodeError) -> String {
        match e {
            DecodeError::Invalid { detail, .. } => detail,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn accepts_observed_head() {
        let b = head_bytes(143, 700, 2, 630);
        let h = decode(&b, 31, 16).unwrap();
        assert_eq!(
            h,
            SumHead {
                count: 143,
                blength: 700,
                s2length: 2,
                remainder: 630
            }
        );
        assert_eq!(h.basis_len(), 100030);
        assert_eq!(h.block_len(142), 630);
        assert_eq!(h.block_len(141), 700);
        let mut again = Vec::new();
        encode_sum_head(&mut again, &h, 31);
        assert_eq!(again, b);
        // Empty head (no basis).
        assert_eq!(decode(&[0u8; 16], 31, 16).unwrap(), SumHead::default());
    }

    #[test]
    fn s2length_rules() {
        // md5 (16): 0..=16 ok, 17..=64 rejected with stock's message.
        for s2 in 0..=16 {
            assert!(
                decode(&head_bytes(1, 700, s2, 0), 31, 16).is_ok(),
                "s2 {s2}"
            );
        }
        for s2 in 17..=64 {
            let e = decode(&head_bytes(1, 700, s2, 0), 31, 16).unwrap_err();
            assert_eq!(detail(e), format!("Invalid checksum length {s2}"));
        }
        // xxh64 (8): up to 16 accepted (3.2.7-3.4.x redo phase), 17+ rejected.
        assert!(decode(&head_bytes(1, 700, 16, 0), 31, 8).is_ok());
        assert!(decode(&head_bytes(1, 700, 17, 0), 31, 8).is_err());
        // sha1 (20): up to 20.
        assert!(decode(&head_bytes(1, 700, 20, 0), 31, 20).is_ok());
        assert!(decode(&head_bytes(1, 700, 21, 0), 31, 20).is_err());
        for s2 in [-1, i32::MIN, i32::MAX, 65, 0x1000] {
            let e = decode(&head_bytes(1, 700, s2, 0), 31, 16).unwrap_err();
            assert_eq!(detail(e), format!("Invalid checksum length {s2}"));
        }
    }

    #[test]
    fn rejection_table() {
        let cases: &[(i32, i32, i32, i32, &str)] = &[
            (-1, 700, 16, 0, "Invalid checksum count -1"),
            (i32::MIN, 700, 16, 0, "Invalid checksum count -2147483648"),
            (
                (1 << 24) + 1,
                700,
                16,
                0,
                "Invalid checksum count 16777217 (too large)",
            ),
            (
                i32::MAX,
                700,
                16,
                0,
                "Invalid checksum count 2147483647 (too large)",
            ),
            (1, 0, 16, 0, "Invalid zero block length"),
            (1, -700, 16, 0, "Invalid block length -700"),
            (1, 131073, 16, 0, "Invalid block length 131073"),
            (1, 700, 16, 701, "Invalid remainder length 701"),
            (1, 700, 16, -1, "Invalid remainder length -1"),
            (0, 0, 16, 1, "Invalid remainder length 1"),
        ];
        for &(c, b, s, r, msg) in cases {
            let e = decode(&head_bytes(c, b, s, r), 31, 16).unwrap_err();
            assert_eq!(detail(e), msg, "case {c} {b} {s} {r}");
        }
        // Below protocol 30 the stock limit is 1<<29, but our Limits cap at 128 KiB.
        assert!(decode(&head_bytes(1, 131073, 16, 0), 29, 16).is_err());
        let big = Limits {
            max_block_len: 1 << 29,
            ..Limits::default()
        };
        let b = head_bytes(1, 131073, 16, 0);
        assert!(decode_sum_head(&mut Reader::new(&b), 29, 16, &big).is_ok());
        assert!(decode_sum_head(&mut Reader::new(&b), 30, 16, &big).is_err());
        // remainder == blength is legal (stock check is `>`).
        assert!(decode(&head_bytes(1, 700, 16, 700), 31, 16).is_ok());
        // Protocol 26 is not supported.
        assert!(decode(&head_bytes(0, 0, 0, 0), 26, 16).is_err());
    }

    #[test]
    fn incomplete_head_consumes_nothing() {
        let b = head_bytes(143, 700, 2, 630);
        for n in 0..16 {
            let mut r = Reader::new(&b[..n]);
            assert_eq!(
                decode_sum_head(&mut r, 31, 16, &Limits::default()),
                Err(DecodeError::Incomplete { needed: 16 - n })
            );
            assert_eq!(r.consumed(), 0);
        }
    }

    #[test]
    fn blocks_roundtrip_and_incomplete() {
        let basis: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let head = SumHead::for_basis_len(basis.len() as u64, 31, 16, 2, 0).unwrap();
        assert_eq!(head.blength, 700);
        assert_eq!(head.count, 15);
        assert_eq!(head.remainder, 10_000 - 14 * 700);
        assert_eq!(head.basis_len(), 10_000);
        let blocks = SumBlocks::from_basis(&basis, &head, ChecksumAlgo::Md5, 42, true);
        let mut wire = Vec::new();
        encode_sum_blocks(&mut wire, &blocks);
        let per = 4 + head.s2length as usize;
        assert_eq!(wire.len(), 15 * per);
        let mut r = Reader::new(&wire);
        assert_eq!(decode_sum_blocks(&mut r, &head).unwrap(), blocks);
        assert_eq!(r.remaining(), 0);
        for cut in [0, 1, per, wire.len() - 1] {
            let mut r = Reader::new(&wire[..cut]);
            assert_eq!(
                decode_sum_blocks(&mut r, &head),
                Err(DecodeError::Incomplete {
                    needed: wire.len() - cut
                })
            );
            assert_eq!(r.consumed(), 0);
        }
        // A forged head with a huge count asks for the bytes, allocates nothing.
        let forged = SumHead {
            count: i32::MAX,
            blength: 700,
            s2length: 16,
            remainder: 0,
        };
        let e = decode_sum_blocks(&mut Reader::new(&wire), &forged).unwrap_err();
        assert!(e.is_incomplete());
        let forged = SumHead {
            count: 1,
            blength: 700,
            s2length: 65,
            remainder: 0,
        };
        assert!(!decode_sum_blocks(&mut Reader::new(&wire), &forged)
            .unwrap_err()
            .is_incomplete());
    }

    #[test]
    fn generator_sizing_matches_stock() {
        // Observed: 100030-byte basis, first pass => 143 x 700, s2length 2, remainder 630.
        let h = SumHead::for_basis_len(100_030, 31, 16, 2, 0).unwrap();
        assert_eq!(
            h,
            SumHead {
                count: 143,
                blength: 700,
                s2length: 2,
                remainder: 630
            }
        );
        // Redo pass: s2length = min(16, digest).
        assert_eq!(
            SumHead::for_basis_len(100_030, 31, 16, 16, 0)
                .unwrap()
                .s2length,
            16
        );
        assert_eq!(
            SumHead::for_basis_len(100_030, 31, 8, 16, 0)
                .unwrap()
                .s2length,
            8
        );
        // Large file: about sqrt(len), multiple of 8, capped at 128 KiB for proto >= 30.
        let h = SumHead::for_basis_len(1 << 30, 31, 16, 2, 0).unwrap();
        assert_eq!(h.blength, 32768);
        let h = SumHead::for_basis_len(1 << 40, 31, 16, 2, 0).unwrap();
        assert_eq!(h.blength, MAX_BLOCK_SIZE);
        let h = SumHead::for_basis_len(1 << 40, 29, 16, 2, 0).unwrap();
        assert_eq!(h.blength, 1 << 20);
        assert_eq!(SumHead::for_basis_len(0, 31, 16, 2, 0).unwrap().count, 0);
    }
}
