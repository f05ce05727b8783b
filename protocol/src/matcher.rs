//! Finding the client's blocks in the sender's file (§10.4).
//!
//! Mirrors `match.c: match_sums()`, `build_hash_table()` and
//! `hash_search()`, reshaped to work on a stream: the file is pushed in
//! chunks of any size and only a window of about `2 * blength + 64 KiB` is
//! buffered, so files of any size can be matched with bounded memory.
//!
//! Differences from stock, none of which a receiver can observe beyond
//! literal-run boundaries (any token stream that rebuilds the file is valid):
//! - pending literal data is handed out as soon as it reaches 32 KiB
//!   (`CHUNK_SIZE`), instead of stock's "`blength + 32 KiB` behind";
//! - `--inplace` only allows blocks at or after the current offset (stock
//!   additionally allows a block whose identical data sits at the same
//!   offset, and re-aligns runs of zeros).
//!
//! The whole-file checksum is not computed here: feed the same bytes to a
//! [`crate::checksum::FileHasher`].

use crate::checksum::{block_checksum, ChecksumAlgo, Rolling, MAX_DIGEST_LEN};
use crate::sums::{SumBlocks, SumHead};
use crate::token::CHUNK_SIZE;

/// `TRADITIONAL_TABLESIZE`.
const TRADITIONAL_TABLESIZE: u32 = 1 << 16;
/// `MAX_CHAIN_LEN` (3.5.0): candidates compared per offset at most.
const MAX_CHAIN_LEN: u32 = 1024;
/// Extra buffer room beyond two blocks.
const SLACK: usize = 64 * 1024;

/// One piece of the delta, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOp<'a> {
    /// Bytes the client does not have.
    Literal(&'a [u8]),
    /// The client's block `block` matches; `data` is the matched content
    /// (zlib needs it for its history).
    Match {
        /// Block index in the client's sums.
        block: u32,
        /// The sender's bytes that matched the block.
        data: &'a [u8],
    },
}

/// Streaming block matcher for one file.
pub struct DeltaMatcher {
    blocks: SumBlocks,
    count: u32,
    blength: usize,
    last_len: usize,
    algo: ChecksumAlgo,
    seed: i32,
    seed_fix: bool,
    /// Strong-sum bytes compared: `min(s2length, digest_len)`.
    cmp_len: usize,
    traditional: bool,
    tablesize: u32,
    table: Vec<i32>,
    chain: Vec<i32>,
    inplace: bool,

    /// File bytes `[buf_start, total_in)`.
    buf: Vec<u8>,
    cap: usize,
    buf_start: u64,
    total_in: u64,
    /// Start of the pending literal run.
    last_match: u64,
    /// Start of the current window.
    offset: u64,
    rolling: Option<Rolling>,
    want_i: u32,
    finished: bool,
    matched: u64,
    literal: u64,
    /// `match.c` counters: buckets with candidates looked at, weak-sum
    /// matches whose strong sums differed, blocks matched.
    hash_hits: u32,
    false_alarms: u32,
    matches: u32,
    /// Chain entries visited by `find` (bounded per offset).
    chain_steps: u64,
}

impl std::fmt::Debug for DeltaMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaMatcher")
            .field("count", &self.count)
            .field("blength", &self.blength)
            .field("cmp_len", &self.cmp_len)
            .field("offset", &self.offset)
            .field("matched", &self.matched)
            .field("literal", &self.literal)
            .finish_non_exhaustive()
    }
}

impl DeltaMatcher {
    /// A matcher for the sums of one request. `algo`, `seed` and `seed_fix`
    /// must be the connection's transfer checksum, checksum seed and
    /// `CF_CHKSUM_SEED_FIX`. With `head.count == 0` everything is literal.
    pub fn new(
        head: SumHead,
        blocks: SumBlocks,
        algo: ChecksumAlgo,
        seed: i32,
        seed_fix: bool,
    ) -> Self {
        let mut count = head.count.max(0) as usize;
        if head.blength <= 0 || blocks.len() != count {
            // Inconsistent input (cannot come from decode_sum_head +
            // decode_sum_blocks): use no sums at all, which is always correct.
            count = 0;
        }
        let blength = if count > 0 { head.blength as usize } else { 0 };
        let last_len = if count > 0 {
            head.block_len(count as u32 - 1)
        } else {
            0
        };
        let cmp_len = (head.s2length.max(0) as usize)
            .min(algo.digest_len())
            .min(blocks.s2length());
        let mut m = DeltaMatcher {
            blocks,
            count: count as u32,
            blength,
            last_len,
            algo,
            seed,
            seed_fix,
            cmp_len,
            traditional: true,
            tablesize: 0,
            table: Vec::new(),
            chain: Vec::new(),
            inplace: false,
            buf: Vec::new(),
            cap: 2 * blength + SLACK,
            buf_start: 0,
            total_in: 0,
            last_match: 0,
            offset: 0,
            rolling: None,
            want_i: 0,
            finished: false,
            matched: 0,
            literal: 0,
            hash_hits: 0,
            false_alarms: 0,
            matches: 0,
            chain_steps: 0,
        };
        if count > 0 {
            m.build_hash_table();
        }
        m
    }

    /// `--inplace` (`updating_basis_file`): only reference blocks at or
    /// after the current write position. Set before the first push.
    pub fn set_inplace(&mut self, on: bool) {
        self.inplace = on;
    }

    /// `match.c: build_hash_table()`.
    fn build_hash_table(&mut self) {
        let count = self.count;
        let mut tablesize = (count / 8) * 10 + 11;
        if tablesize < TRADITIONAL_TABLESIZE {
            tablesize = TRADITIONAL_TABLESIZE;
        }
        self.tablesize = tablesize;
        self.traditional = tablesize == TRADITIONAL_TABLESIZE;
        self.table = vec![-1; tablesize as usize];
        self.chain = vec![-1; count as usize];
        for i in 0..count {
            let t = self.bucket(self.blocks.sum1(i as usize)) as usize;
            self.chain[i as usize] = self.table[t];
            self.table[t] = i as i32;
        }
    }

    #[inline]
    fn bucket(&self, sum: u32) -> u32 {
        if self.traditional {
            ((sum & 0xFFFF) + (sum >> 16)) & 0xFFFF
        } else {
            sum % self.tablesize
        }
    }

    #[inline]
    fn block_len(&self, i: u32) -> usize {
        if i + 1 == self.count {
            self.last_len
        } else {
            self.blength
        }
    }

    /// `match.c` statistics so far: (matches, hash_hits, false_alarms), as
    /// stock's `match_report()` sums them.
    pub fn counters(&self) -> (u32, u32, u32) {
        (self.matches, self.hash_hits, self.false_alarms)
    }

    /// Hash-chain entries visited so far: at most `MAX_CHAIN_LEN + 1` per
    /// window offset, whatever the client's sums.
    pub fn chain_steps(&self) -> u64 {
        self.chain_steps
    }

    /// Bytes of the file reported as block matches so far.
    pub fn matched_bytes(&self) -> u64 {
        self.matched
    }

    /// Bytes of the file reported as literal data so far.
    pub fn literal_bytes(&self) -> u64 {
        self.literal
    }

    /// Bytes pushed so far.
    pub fn bytes_in(&self) -> u64 {
        self.total_in
    }

    /// Current capacity of the internal buffer (for memory accounting).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Push the next bytes of the file (any chunk size). `emit` receives
    /// the ops that became final, in file order.
    pub fn push(&mut self, data: &[u8], emit: &mut dyn FnMut(DeltaOp<'_>)) {
        if self.finished || data.is_empty() {
            return;
        }
        if self.count == 0 {
            self.total_in += data.len() as u64;
            self.literal += data.len() as u64;
            emit(DeltaOp::Literal(data));
            return;
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.cap);
        }
        let mut input = data;
        while !input.is_empty() {
            if self.buf.len() >= self.cap {
                self.compact();
            }
            let n = (self.cap - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..n]);
            input = &input[n..];
            self.total_in += n as u64;
            self.search(false, emit);
        }
    }

    /// The file is complete: emit the remaining ops. Further pushes are
    /// ignored.
    pub fn finish(&mut self, emit: &mut dyn FnMut(DeltaOp<'_>)) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.count == 0 {
            return;
        }
        self.search(true, emit);
        let end = self.total_in;
        self.emit_literal_to(end, emit);
        self.buf = Vec::new();
    }

    /// Drop bytes before the pending literal.
    fn compact(&mut self) {
        let drop = (self.last_match - self.buf_start) as usize;
        if drop > 0 {
            self.buf.drain(..drop);
            self.buf_start = self.last_match;
        }
    }

    #[inline]
    fn idx(&self, pos: u64) -> usize {
        (pos - self.buf_start) as usize
    }

    fn emit_literal_to(&mut self, end: u64, emit: &mut dyn FnMut(DeltaOp<'_>)) {
        if end > self.last_match {
            let (a, b) = (self.idx(self.last_match), self.idx(end));
            emit(DeltaOp::Literal(&self.buf[a..b]));
            self.literal += end - self.last_match;
            self.last_match = end;
        }
    }

    /// `match.c: hash_search()` over the offsets the buffered data allows.
    fn search(&mut self, at_eof: bool, emit: &mut dyn FnMut(DeltaOp<'_>)) {
        let len = self.total_in;
        let bl = self.blength as u64;
        loop {
            // Can the current offset be examined?
            let k: usize = if at_eof {
                // stock: `while (offset < end)`, end = len + 1 - last block length
                if self.offset + self.last_len as u64 > len {
                    break;
                }
                (len - self.offset).min(bl) as usize
            } else {
                // Need the full window plus the byte that rolls in.
                if self.offset + bl + 1 > len {
                    break;
                }
                self.blength
            };
            let start = self.idx(self.offset);
            let mut r = match self.rolling {
                Some(r) => r,
                None => Rolling::new(&self.buf[start..start + k]),
            };
            debug_assert_eq!(r.len(), k);

            if let Some(i) = self.find(r.value(), start, k) {
                let blen = self.block_len(i);
                self.emit_literal_to(self.offset, emit);
                let s = self.idx(self.offset);
                emit(DeltaOp::Match {
                    block: i,
                    data: &self.buf[s..s + blen],
                });
                self.matched += blen as u64;
                self.matches += 1;
                self.offset += blen as u64;
                self.last_match = self.offset;
                self.want_i = i + 1;
                self.rolling = None;
                continue;
            }

            // Trim off the first byte, add on the next one if there is one.
            let out_b = self.buf[start];
            if self.offset + (k as u64) < len {
                r.roll(out_b, self.buf[start + k]);
            } else {
                r.roll_out(out_b);
            }
            self.rolling = Some(r);
            self.offset += 1;
            if self.offset - self.last_match >= CHUNK_SIZE as u64 {
                let end = self.offset;
                self.emit_literal_to(end, emit);
            }
        }
    }

    /// Look up the window `buf[start..start+k]` with rolling sum `sum`;
    /// returns the block to use, preferring `want_i` (the block after the
    /// previous match) so matches form runs.
    fn find(&mut self, sum: u32, start: usize, k: usize) -> Option<u32> {
        let mut i = self.table[self.bucket(sum) as usize];
        if i < 0 {
            return None;
        }
        self.hash_hits += 1;
        let mut strong = [0u8; MAX_DIGEST_LEN];
        let mut have_strong = false;
        let mut chain_len = 0u32;
        let cmp = self.cmp_len;
        while i >= 0 {
            // Every entry visited counts, not only weak-sum hits: a client
            // can fill one bucket with distinct weak sums that never match
            // (`((s & 0xFFFF) + (s >> 16)) & 0xFFFF` collides freely), and
            // the walk must still be bounded per offset.
            chain_len += 1;
            self.chain_steps += 1;
            if chain_len > MAX_CHAIN_LEN {
                return None;
            }
            let iu = i as u32;
            i = self.chain[iu as usize];
            if self.inplace && self.block_offset(iu) < self.offset {
                continue;
            }
            if self.blocks.sum1(iu as usize) != sum {
                continue;
            }
            if self.block_len(iu) != k {
                continue;
            }
            if !have_strong {
                block_checksum(
                    self.algo,
                    self.seed,
                    self.seed_fix,
                    &self.buf[start..start + k],
                    &mut strong,
                );
                have_strong = true;
            }
            if strong[..cmp] != self.blocks.sum2(iu as usize)[..cmp] {
                self.false_alarms += 1;
                continue;
            }
            let w = self.want_i;
            if iu != w
                && w < self.count
                && (!self.inplace || self.block_offset(w) >= self.offset)
                && self.blocks.sum1(w as usize) == sum
                && self.block_len(w) == k
                && strong[..cmp] == self.blocks.sum2(w as usize)[..cmp]
            {
                return Some(w);
            }
            return Some(iu);
        }
        None
    }

    #[inline]
    fn block_offset(&self, i: u32) -> u64 {
        i as u64 * self.blength as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_bytes(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Op {
        Lit(Vec<u8>),
        Blk(u32),
    }

    fn run(basis: &[u8], file: &[u8], chunks: &[usize], s2: i32) -> (Vec<Op>, u64, u64) {
        let mut head = SumHead::for_basis_len(basis.len() as u64, 31, 16, 16, 0).unwrap();
        head.s2length = s2;
        let blocks = SumBlocks::from_basis(basis, &head, ChecksumAlgo::Md5, 7, true);
        let mut m = DeltaMatcher::new(head, blocks, ChecksumAlgo::Md5, 7, true);
        let mut ops: Vec<Op> = Vec::new();
        let mut sink = |op: DeltaOp<'_>| match op {
            DeltaOp::Literal(d) => match ops.last_mut() {
                Some(Op::Lit(v)) => v.extend_from_slice(d),
                _ => ops.push(Op::Lit(d.to_vec())),
            },
            DeltaOp::Match { block, data } => {
                assert_eq!(
                    data,
                    &basis[head.block_offset(block) as usize..][..head.block_len(block)]
                );
                ops.push(Op::Blk(block));
            }
        };
        let mut pos = 0;
        let mut ci = 0;
        while pos < file.len() {
            let n = chunks[ci % chunks.len()].min(file.len() - pos);
            m.push(&file[pos..pos + n], &mut sink);
            pos += n;
            ci += 1;
        }
        m.finish(&mut sink);
        (ops, m.matched_bytes(), m.literal_bytes())
    }

    fn rebuild(ops: &[Op], basis: &[u8], head: &SumHead) -> Vec<u8> {
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Lit(d) => out.extend_from_slice(d),
                Op::Blk(b) => out.extend_from_slice(
                    &basis[head.block_offset(*b) as usize..][..head.block_len(*b)],
                ),
            }
        }
        out
    }

    #[test]
    fn identical_file_with_short_last_block_is_all_matches() {
        let basis = rand_bytes(10_000, 1); // 14 x 700 + 200
        let (ops, matched, literal) = run(&basis, &basis, &[usize::MAX], 16);
        assert_eq!(literal, 0);
        assert_eq!(matched, 10_000);
        assert_eq!(ops, (0..15).map(Op::Blk).collect::<Vec<_>>());
    }

    #[test]
    fn edits_are_found_and_chunking_does_not_matter() {
        let basis = rand_bytes(300_000, 2);
        let mut file = basis.clone();
        file[1000] ^= 0xFF; // modify
        file.splice(50_000..50_000, rand_bytes(333, 3)); // insert
        file.drain(200_000..200_500); // delete
        file.extend_from_slice(b"tail");
        let head = SumHead::for_basis_len(basis.len() as u64, 31, 16, 16, 0).unwrap();
        let whole = run(&basis, &file, &[usize::MAX], 16);
        assert_eq!(rebuild(&whole.0, &basis, &head), file);
        assert!(whole.2 < 5_000, "literal {}", whole.2);
        assert_eq!(whole.1 + whole.2, file.len() as u64);
        for chunks in [
            &[1usize][..],
            &[3, 700, 1, 701, 65536],
            &[4096],
            &[699, 1401],
        ] {
            let part = run(&basis, &file, chunks, 16);
            assert_eq!(part, whole, "chunks {chunks:?}");
        }
    }

    #[test]
    fn strong_sum_mismatch_prevents_match() {
        let basis = rand_bytes(7000, 4);
        let head = SumHead::for_basis_len(7000, 31, 16, 16, 0).unwrap();
        let good = SumBlocks::from_basis(&basis, &head, ChecksumAlgo::Md5, 7, true);
        // Same weak sums, strong sums computed with another seed: no block matches.
        let bad = SumBlocks::from_basis(&basis, &head, ChecksumAlgo::Md5, 8, true);
        assert_eq!(good.sum1_all(), bad.sum1_all());
        let mut m = DeltaMatcher::new(head, bad, ChecksumAlgo::Md5, 7, true);
        let mut n_match = 0;
        m.push(&basis, &mut |op| {
            n_match += matches!(op, DeltaOp::Match { .. }) as usize
        });
        m.finish(&mut |op| n_match += matches!(op, DeltaOp::Match { .. }) as usize);
        assert_eq!(n_match, 0);
        assert_eq!(m.literal_bytes(), 7000);
    }

    #[test]
    fn short_s2length_compares_prefix_only() {
        // s2length 16 with an 8-byte digest (3.2.7-3.4.x redo): only 8 bytes matter.
        let basis = rand_bytes(7000, 5);
        let mut head = SumHead::for_basis_len(7000, 31, 8, 16, 0).unwrap();
        head.s2length = 16;
        let mut blocks_wire = Vec::new();
        let real = SumBlocks::from_basis(
            &basis,
            &SumHead {
                s2length: 8,
                ..head
            },
            ChecksumAlgo::Xxh3,
            9,
            false,
        );
        for i in 0..real.len() {
            blocks_wire.extend_from_slice(&real.sum1(i).to_le_bytes());
            blocks_wire.extend_from_slice(real.sum2(i));
            blocks_wire.extend_from_slice(&[0xA5; 8]); // junk the client leaked
        }
        let blocks =
            crate::sums::decode_sum_blocks(&mut crate::wire::Reader::new(&blocks_wire), &head)
                .unwrap();
        let mut m = DeltaMatcher::new(head, blocks, ChecksumAlgo::Xxh3, 9, false);
        m.push(&basis, &mut |_| {});
        m.finish(&mut |_| {});
        assert_eq!(m.matched_bytes(), 7000);
    }

    #[test]
    fn no_sums_means_all_literal() {
        let mut m = DeltaMatcher::new(
            SumHead::default(),
            SumBlocks::default(),
            ChecksumAlgo::Md5,
            0,
            true,
        );
        let mut got = Vec::new();
        m.push(b"hello ", &mut |op| {
            if let DeltaOp::Literal(d) = op {
                got.extend_from_slice(d)
            }
        });
        m.push(b"world\n", &mut |op| {
            if let DeltaOp::Literal(d) = op {
                got.extend_from_slice(d)
            }
        });
        m.finish(&mut |_| panic!("nothing left"));
        assert_eq!(got, b"hello world\n");
        assert_eq!(m.literal_bytes(), 12);
    }

    /// A bucket full of distinct weak sums that never equal the window's
    /// (all hashing like the sum of zeros) costs at most MAX_CHAIN_LEN + 1
    /// steps per offset, not the whole chain (CVE-2026-70453 class).
    #[test]
    fn chain_walk_is_bounded_per_offset() {
        let count = 20_000u32;
        let head = SumHead { count: count as i32, blength: 700, s2length: 16, remainder: 0 };
        let mut wire = Vec::new();
        for a in 1..=count {
            let sum1 = (a << 16) | ((0x1_0000 - a) & 0xFFFF);
            wire.extend_from_slice(&sum1.to_le_bytes());
            wire.extend_from_slice(&[0xA5; 16]);
        }
        let blocks = crate::sums::decode_sum_blocks(&mut crate::wire::Reader::new(&wire), &head).unwrap();
        let mut m = DeltaMatcher::new(head, blocks, ChecksumAlgo::Md5, 7, true);
        let file = vec![0u8; 8 * 1024];
        let mut literal = 0;
        m.push(&file, &mut |op| {
            if let DeltaOp::Literal(d) = op {
                literal += d.len();
            }
        });
        m.finish(&mut |op| {
            if let DeltaOp::Literal(d) = op {
                literal += d.len();
            }
        });
        assert_eq!(literal, file.len());
        let offsets = (file.len() - 700 + 1) as u64;
        assert!(m.chain_steps() <= offsets * (u64::from(MAX_CHAIN_LEN) + 1), "{} steps", m.chain_steps());
    }

    #[test]
    fn repeated_blocks_form_runs() {
        let basis = vec![0u8; 7000];
        let (ops, _, literal) = run(&basis, &basis, &[1000], 16);
        assert_eq!(literal, 0);
        assert_eq!(ops, (0..10).map(Op::Blk).collect::<Vec<_>>());
    }

    #[test]
    fn inplace_never_references_backwards() {
        let basis = rand_bytes(7000, 6);
        // File = basis with its two halves swapped.
        let mut file = basis[3500..].to_vec();
        file.extend_from_slice(&basis[..3500]);
        let head = SumHead::for_basis_len(7000, 31, 16, 16, 0).unwrap();
        let blocks = SumBlocks::from_basis(&basis, &head, ChecksumAlgo::Md5, 7, true);
        let mut m = DeltaMatcher::new(head, blocks, ChecksumAlgo::Md5, 7, true);
        m.set_inplace(true);
        let mut pos = 0u64;
        let mut sink = |op: DeltaOp<'_>| match op {
            DeltaOp::Literal(d) => pos += d.len() as u64,
            DeltaOp::Match { block, data } => {
                assert!(head.block_offset(block) >= pos, "block {block} at {pos}");
                pos += data.len() as u64;
            }
        };
        m.push(&file, &mut sink);
        m.finish(&mut sink);
        assert!(m.matched_bytes() > 0);
        assert_eq!(pos, 7000);
    }
}
