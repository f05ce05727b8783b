//! The delta token stream: literal data and block matches, uncompressed or
//! compressed with zlib, zlibx, zstd or lz4 (§10.5, §10.6).
//!
//! Mirrors `token.c`: [`TokenEncoder`] follows `simple_send_token()`,
//! `send_deflated_token()`, `send_zstd_token()` and
//! `send_compressed_token()`; [`TokenDecoder`] follows the receiver side,
//! `simple_recv_token()`, `recv_deflated_token()`, `see_deflate_token()`,
//! `recv_zstd_token()` and `recv_compressed_token()`, and exists so the
//! encoder can be round-tripped and interop captures checked.
//!
//! Call pattern (the sender's `match.c: matched()` split in two): for each
//! file, any sequence of [`TokenEncoder::literal`] and
//! [`TokenEncoder::block_match`] calls, then [`TokenEncoder::end_file`].
//!
//! Compressed streams use flag bytes:
//!
//! | byte | meaning |
//! |---|---|
//! | `0x00` | END_FLAG |
//! | `0x20` + int32 | TOKEN_LONG: block t |
//! | `0x21` + int32 + u16 | TOKENRUN_LONG: blocks t..=t+n |
//! | `0x40`-`0x7F` + byte | DEFLATED_DATA, 14-bit length (<= 16383) |
//! | `0x80`-`0xBF` | TOKEN_REL: block `last + (flag & 0x3F)` |
//! | `0xC0`-`0xFF` + u16 | TOKENRUN_REL |
//!
//! Protocol < 31 zlib quirk (`token.c`, "data-duplicating bug"): when a
//! matched block is longer than 0xFFFF bytes, both sides insert it into the
//! deflate history in 0xFFFF-byte pieces *without advancing*, i.e. the first
//! 64 KiB of the block is inserted again instead of the rest. Only reachable
//! with block lengths above 65535 (protocol 30 allows up to 128 KiB, below 30
//! our `Limits` decide). We replicate it on both sides.

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};
use zstd::stream::raw::{InBuffer, Operation, OutBuffer};

use crate::sums::SumHead;
use crate::wire::put_i32;

/// `CHUNK_SIZE`: the largest literal run in one uncompressed token (clients
/// from 3.4.3 reject larger ones).
pub const CHUNK_SIZE: usize = 32 * 1024;
/// `MAX_DATA_COUNT`: the largest DEFLATED_DATA payload.
pub const MAX_DATA_COUNT: usize = 16383;

const END_FLAG: u8 = 0x00;
const TOKEN_LONG: u8 = 0x20;
const TOKENRUN_LONG: u8 = 0x21;
const DEFLATED_DATA: u8 = 0x40;
const TOKEN_REL: u8 = 0x80;
const TOKENRUN_REL: u8 = 0xC0;
/// `MAX_TOKEN_INDEX` in the receiver.
const MAX_TOKEN_INDEX: i64 = 0x7fff_fffe;
/// The 4 bytes a zlib sync flush ends with; stripped on the wire.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];
/// `AVAIL_OUT_SIZE(CHUNK_SIZE)`: the receiver's inflate output buffer.
const AVAIL_OUT_SIZE_CHUNK: usize = CHUNK_SIZE * 1001 / 1000 + 16;
/// `MAX(LZ4_compressBound(CHUNK_SIZE), MAX_DATA_COUNT+2)`: the receiver's
/// lz4 output buffer.
const LZ4_DBUF_SIZE: usize = CHUNK_SIZE + CHUNK_SIZE / 255 + 16;

/// Errors from the token encoder and decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The compression level turns compression off (stock
    /// `init_compression_level()`: zlib level 0).
    #[error("compression level {0} disables compression")]
    LevelOff(i32),
    /// The compression library failed (should not happen).
    #[error("compressor failed: {0}")]
    Compress(String),
    /// A received token stream is malformed.
    #[error("invalid token stream: {0}")]
    Invalid(String),
    /// A received token stream ends before END_FLAG.
    #[error("token stream truncated")]
    Truncated,
}

/// Compression of the token stream (`compat.c: valid_compressions_items[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No compression (`simple_send_token`).
    None,
    /// "zlib": deflate with matched-block history insertion.
    Zlib,
    /// "zlibx": deflate without history insertion.
    ZlibX,
    /// "zstd": one stream for the whole connection.
    Zstd,
    /// "lz4": independent blocks per chunk.
    Lz4,
}

impl Compression {
    /// Parse a negotiation name, case-insensitively ("none" included).
    pub fn from_name(name: &[u8]) -> Option<Self> {
        crate::wire::lookup_name(
            name,
            &[
                ("none", Compression::None),
                ("zlib", Compression::Zlib),
                ("zlibx", Compression::ZlibX),
                ("zstd", Compression::Zstd),
                ("lz4", Compression::Lz4),
            ],
        )
    }

    /// The negotiation name.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
            Compression::ZlibX => "zlibx",
            Compression::Zstd => "zstd",
            Compression::Lz4 => "lz4",
        }
    }

    /// The effective level (`token.c: init_compression_level()`): `None`
    /// when the level turns compression off (zlib/zlibx level 0), else the
    /// default for an unspecified level, clamped to the library's range.
    /// `level` is the client's `--compress-level` if it sent one.
    pub fn effective_level(self, level: Option<i32>) -> Option<i32> {
        match self {
            Compression::None => Some(0),
            Compression::Zlib | Compression::ZlibX => match level {
                None | Some(-1) => Some(6),
                Some(0) => None,
                Some(l) => Some(l.clamp(1, 9)),
            },
            Compression::Zstd => match level {
                None | Some(0) => Some(zstd::DEFAULT_COMPRESSION_LEVEL),
                Some(l) => Some(l.clamp(
                    zstd::zstd_safe::min_c_level(),
                    zstd::zstd_safe::max_c_level(),
                )),
            },
            Compression::Lz4 => Some(0),
        }
    }
}

/// Append DEFLATED_DATA chunks carrying `data` (each <= 16383 bytes).
fn put_data_chunks(out: &mut Vec<u8>, data: &[u8]) {
    for c in data.chunks(MAX_DATA_COUNT) {
        out.push(DEFLATED_DATA | (c.len() >> 8) as u8);
        out.push(c.len() as u8);
        out.extend_from_slice(c);
    }
}

/// Emit the full-size chunks of `pending` and keep the tail.
fn drain_full_chunks(out: &mut Vec<u8>, pending: &mut Vec<u8>) {
    let full = pending.len() / MAX_DATA_COUNT * MAX_DATA_COUNT;
    if full > 0 {
        put_data_chunks(out, &pending[..full]);
        pending.drain(..full);
    }
}

/// Run a raw deflate stream over `input` with `flush` until the input is
/// consumed and the output drained; appends the output to `sink` unless
/// `sink` is `None` (history insertion discards it).
fn deflate_all(
    c: &mut Compress,
    scratch: &mut [u8],
    mut input: &[u8],
    flush: FlushCompress,
    mut sink: Option<&mut Vec<u8>>,
) -> Result<(), TokenError> {
    loop {
        let (in0, out0) = (c.total_in(), c.total_out());
        c.compress(input, scratch, flush)
            .map_err(|e| TokenError::Compress(e.to_string()))?;
        let used = (c.total_in() - in0) as usize;
        let produced = (c.total_out() - out0) as usize;
        input = &input[used..];
        if let Some(s) = sink.as_deref_mut() {
            s.extend_from_slice(&scratch[..produced]);
        }
        if input.is_empty() && produced < scratch.len() {
            return Ok(());
        }
        if used == 0 && produced == 0 {
            return Err(TokenError::Compress("deflate made no progress".into()));
        }
    }
}

/// The sender's token encoder; one per connection.
///
/// zlib/zlibx streams are reset at the start of every file, the zstd stream
/// lives for the whole connection, lz4 chunks are independent.
pub struct TokenEncoder {
    comp: Compression,
    protocol: u8,
    level: i32,
    /// -1: at the start of a file; -2: after literal data; else last block.
    last_token: i64,
    run_start: i64,
    last_run_end: i64,
    flush_pending: bool,
    /// Deflate files at level 0 from the next file start (see
    /// [`TokenEncoder::set_skip_compress`]).
    skip: bool,
    deflate: Option<Box<Compress>>,
    /// The level `deflate` was created with.
    deflate_level: i32,
    zstd: Option<zstd::stream::raw::Encoder<'static>>,
    pending: Vec<u8>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for TokenEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEncoder")
            .field("comp", &self.comp)
            .field("protocol", &self.protocol)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl TokenEncoder {
    /// A new encoder. `level` is the client's `--compress-level`, if any
    /// (see [`Compression::effective_level`]); `protocol` selects the
    /// protocol < 31 zlib quirk.
    pub fn new(c: Compression, level: Option<i32>, protocol: u8) -> Result<Self, TokenError> {
        let level = c
            .effective_level(level)
            .ok_or(TokenError::LevelOff(level.unwrap_or(0)))?;
        Ok(TokenEncoder {
            comp: c,
            protocol,
            level,
            last_token: -1,
            run_start: 0,
            last_run_end: 0,
            flush_pending: false,
            skip: false,
            deflate: None,
            deflate_level: 0,
            zstd: None,
            pending: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The compression in use.
    pub fn compression(&self) -> Compression {
        self.comp
    }

    /// Compress the following files with stock's `skip_compression_level`
    /// (`skip = true`) or the session level again (`false`), from the next
    /// file start on; a file already under way keeps its level.
    ///
    /// Mirrors `token.c`: `init_set_compression()` gives every file
    /// `per_file_default_level`, which a daemon's `dont compress` list
    /// holding the word `*` turns into `skip_compression_level`; only the
    /// deflate senders use it (`deflateInit2(.., per_file_default_level ..)`),
    /// at level 0 (`Z_NO_COMPRESSION`: stored blocks, still deflate framing).
    /// zstd and lz4 streams, and uncompressed ones, are unaffected (stock's
    /// `send_zstd_token()` uses the session level).
    pub fn set_skip_compress(&mut self, skip: bool) {
        self.skip = skip;
    }

    /// The deflate level the next file starts with.
    fn file_level(&self) -> i32 {
        if self.skip {
            0
        } else {
            self.level
        }
    }

    /// Literal bytes of the file (any length; chunked as the wire requires).
    ///
    /// Errors only if the compression library itself fails (never for
    /// uncompressed streams); the connection is then unusable.
    pub fn literal(&mut self, out: &mut Vec<u8>, data: &[u8]) -> Result<(), TokenError> {
        if data.is_empty() {
            return Ok(());
        }
        if self.comp == Compression::None {
            // simple_send_token(): int32 length chunks of at most CHUNK_SIZE.
            for c in data.chunks(CHUNK_SIZE) {
                put_i32(out, c.len() as i32);
                out.extend_from_slice(c);
            }
            return Ok(());
        }
        self.bookkeeping(out, -2, true);
        self.flush_pending = true;
        self.compress_literal(out, data)
    }

    /// A match of the client's block `block`; `block_data` is its content
    /// (zlib inserts it into the compression history).
    pub fn block_match(
        &mut self,
        out: &mut Vec<u8>,
        block: u32,
        block_data: &[u8],
    ) -> Result<(), TokenError> {
        if self.comp == Compression::None {
            put_i32(out, (-(block as i64) - 1) as i32);
            return Ok(());
        }
        self.bookkeeping(out, block as i64, false);
        self.flush(out)?;
        if self.comp == Compression::Zlib {
            self.insert_history(block_data)?;
        }
        Ok(())
    }

    /// End of this file's tokens: pending run, pending data, END token.
    /// Resets the per-file state.
    pub fn end_file(&mut self, out: &mut Vec<u8>) -> Result<(), TokenError> {
        if self.comp == Compression::None {
            put_i32(out, 0);
            return Ok(());
        }
        self.bookkeeping(out, -1, false);
        self.flush(out)?;
        out.push(END_FLAG);
        Ok(())
    }

    /// The run-coding prologue shared by the three compressed senders.
    fn bookkeeping(&mut self, out: &mut Vec<u8>, token: i64, has_data: bool) {
        if self.last_token == -1 {
            // Start of a file.
            self.last_run_end = 0;
            self.run_start = token;
            self.flush_pending = false;
            self.pending.clear();
            if matches!(self.comp, Compression::Zlib | Compression::ZlibX) {
                let level = self.file_level();
                match &mut self.deflate {
                    Some(d) if self.deflate_level == level => d.reset(),
                    _ => {
                        self.deflate = Some(Box::new(Compress::new(
                            flate2::Compression::new(level as u32),
                            false,
                        )));
                        self.deflate_level = level;
                        self.scratch = vec![0u8; 2 * AVAIL_OUT_SIZE_CHUNK];
                    }
                }
            }
        } else if self.last_token == -2 {
            self.run_start = token;
        } else if has_data || token != self.last_token + 1 || token >= self.run_start + 65536 {
            // Output the previous run.
            let r = self.run_start - self.last_run_end;
            let n = self.last_token - self.run_start;
            if (0..=63).contains(&r) {
                out.push(if n == 0 { TOKEN_REL } else { TOKENRUN_REL } + r as u8);
            } else {
                out.push(if n == 0 { TOKEN_LONG } else { TOKENRUN_LONG });
                put_i32(out, self.run_start as i32);
            }
            if n != 0 {
                out.push(n as u8);
                out.push((n >> 8) as u8);
            }
            self.last_run_end = self.last_token;
            self.run_start = token;
        }
        self.last_token = token;
    }

    fn compress_literal(&mut self, out: &mut Vec<u8>, data: &[u8]) -> Result<(), TokenError> {
        match self.comp {
            Compression::None => unreachable!("handled by literal()"),
            Compression::Zlib | Compression::ZlibX => {
                let d = self
                    .deflate
                    .as_mut()
                    .ok_or_else(|| TokenError::Compress("no deflate".into()))?;
                for piece in data.chunks(CHUNK_SIZE) {
                    deflate_all(
                        d,
                        &mut self.scratch,
                        piece,
                        FlushCompress::None,
                        Some(&mut self.pending),
                    )?;
                    // Keep at least 4 bytes back so a later sync flush tail
                    // can always be stripped from `pending`.
                    if self.pending.len() > MAX_DATA_COUNT + 4 {
                        let full = (self.pending.len() - 4) / MAX_DATA_COUNT * MAX_DATA_COUNT;
                        put_data_chunks(out, &self.pending[..full]);
                        self.pending.drain(..full);
                    }
                }
            }
            Compression::Zstd => {
                let level = self.level;
                if self.zstd.is_none() {
                    let enc = zstd::stream::raw::Encoder::new(level)
                        .map_err(|e| TokenError::Compress(e.to_string()))?;
                    self.zstd = Some(enc);
                    self.scratch = vec![0u8; MAX_DATA_COUNT];
                }
                let enc = self
                    .zstd
                    .as_mut()
                    .ok_or_else(|| TokenError::Compress("no zstd".into()))?;
                let mut input = InBuffer::around(data);
                while input.pos() < data.len() {
                    let mut output = OutBuffer::around(&mut self.scratch[..]);
                    enc.run(&mut input, &mut output)
                        .map_err(|e| TokenError::Compress(e.to_string()))?;
                    let n = output.pos();
                    self.pending.extend_from_slice(&self.scratch[..n]);
                    drain_full_chunks(out, &mut self.pending);
                }
            }
            Compression::Lz4 => {
                // send_compressed_token(): at most MAX_DATA_COUNT input per
                // block, halved until the compressed block fits.
                let need = lz4_flex::block::get_maximum_output_size(MAX_DATA_COUNT);
                if self.scratch.len() < need {
                    self.scratch = vec![0u8; need];
                }
                let buf = &mut self.scratch[..need];
                let mut rest = data;
                while !rest.is_empty() {
                    let mut n = rest.len().min(MAX_DATA_COUNT);
                    loop {
                        let m = lz4_flex::block::compress_into(&rest[..n], buf)
                            .map_err(|e| TokenError::Compress(e.to_string()))?;
                        if m <= MAX_DATA_COUNT {
                            put_data_chunks(out, &buf[..m]);
                            break;
                        }
                        n /= 2;
                    }
                    rest = &rest[n..];
                }
            }
        }
        Ok(())
    }

    /// Flush compressed literal data before a token or END.
    fn flush(&mut self, out: &mut Vec<u8>) -> Result<(), TokenError> {
        if !self.flush_pending {
            return Ok(());
        }
        self.flush_pending = false;
        match self.comp {
            Compression::None | Compression::Lz4 => {}
            Compression::Zlib | Compression::ZlibX => {
                let d = self
                    .deflate
                    .as_mut()
                    .ok_or_else(|| TokenError::Compress("no deflate".into()))?;
                deflate_all(
                    d,
                    &mut self.scratch,
                    &[],
                    FlushCompress::Sync,
                    Some(&mut self.pending),
                )?;
                if !self.pending.ends_with(&SYNC_TAIL) {
                    return Err(TokenError::Compress(
                        "sync flush did not end with 00 00 FF FF".into(),
                    ));
                }
                let keep = self.pending.len() - SYNC_TAIL.len();
                put_data_chunks(out, &self.pending[..keep]);
                self.pending.clear();
            }
            Compression::Zstd => {
                let enc = self
                    .zstd
                    .as_mut()
                    .ok_or_else(|| TokenError::Compress("no zstd".into()))?;
                loop {
                    let mut output = OutBuffer::around(&mut self.scratch[..]);
                    let left = enc
                        .flush(&mut output)
                        .map_err(|e| TokenError::Compress(e.to_string()))?;
                    let n = output.pos();
                    self.pending.extend_from_slice(&self.scratch[..n]);
                    if left == 0 {
                        break;
                    }
                }
                put_data_chunks(out, &self.pending);
                self.pending.clear();
            }
        }
        Ok(())
    }

    /// zlib only: add a matched block to the deflate history without
    /// sending anything (stock `Z_INSERT_ONLY`; here a sync flush into a
    /// scratch buffer that is discarded), in the same 0xFFFF-byte pieces
    /// the receiver's `see_deflate_token()` uses.
    fn insert_history(&mut self, block: &[u8]) -> Result<(), TokenError> {
        debug_assert!(self.pending.is_empty());
        let d = self
            .deflate
            .as_mut()
            .ok_or_else(|| TokenError::Compress("no deflate".into()))?;
        let mut left = block.len();
        let mut off = 0usize;
        loop {
            let n1 = left.min(0xFFFF);
            left -= n1;
            deflate_all(
                d,
                &mut self.scratch,
                &block[off..off + n1],
                FlushCompress::Sync,
                None,
            )?;
            if self.protocol >= 31 {
                off += n1;
            }
            if left == 0 {
                return Ok(());
            }
        }
    }
}

/// A cursor over a received token stream.
struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.buf.len() - self.pos < n {
            return Err(TokenError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, TokenError> {
        Ok(self.take(1)?[0])
    }
    fn i32(&mut self) -> Result<i32, TokenError> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The receiver's side of the token stream, for round-trip tests and for
/// checking captures. One per connection, like the stock receiver state.
pub struct TokenDecoder {
    comp: Compression,
    protocol: u8,
    inflate: Option<Box<Decompress>>,
    zstd: Option<zstd::stream::raw::Decoder<'static>>,
    dbuf: Vec<u8>,
}

impl std::fmt::Debug for TokenDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenDecoder")
            .field("comp", &self.comp)
            .finish_non_exhaustive()
    }
}

/// What a decoded token stream contained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodedFile {
    /// Bytes of the input consumed, up to and including the END token.
    pub consumed: usize,
    /// Literal bytes reconstructed.
    pub literal_bytes: u64,
    /// Bytes copied from basis blocks.
    pub matched_bytes: u64,
}

impl TokenDecoder {
    /// A decoder for `c` at `protocol`.
    pub fn new(c: Compression, protocol: u8) -> Result<Self, TokenError> {
        let mut d = TokenDecoder {
            comp: c,
            protocol,
            inflate: None,
            zstd: None,
            dbuf: Vec::new(),
        };
        match c {
            Compression::Zlib | Compression::ZlibX => d.dbuf = vec![0u8; AVAIL_OUT_SIZE_CHUNK],
            Compression::Zstd => {
                d.zstd = Some(
                    zstd::stream::raw::Decoder::new()
                        .map_err(|e| TokenError::Compress(e.to_string()))?,
                );
                d.dbuf = vec![0u8; zstd::zstd_safe::DCtx::out_size() * 2];
            }
            Compression::Lz4 => d.dbuf = vec![0u8; LZ4_DBUF_SIZE],
            Compression::None => {}
        }
        Ok(d)
    }

    /// Decode one file's token stream from the start of `input`, appending
    /// the reconstructed file to `out`. Matched blocks are taken from
    /// `basis` as described by `head` (`receiver.c: receive_data()`). The
    /// whole stream up to END must be present; the file checksum that
    /// follows it is not read.
    pub fn decode_file(
        &mut self,
        input: &[u8],
        head: &SumHead,
        basis: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<DecodedFile, TokenError> {
        let mut cur = Cur { buf: input, pos: 0 };
        let mut res = DecodedFile::default();
        if self.comp == Compression::None {
            // simple_recv_token()
            loop {
                let i = cur.i32()?;
                if i == 0 {
                    break;
                }
                if i > 0 {
                    out.extend_from_slice(cur.take(i as usize)?);
                    res.literal_bytes += i as u64;
                } else {
                    let b = -(i as i64 + 1);
                    res.matched_bytes += self.copy_block(b, head, basis, out)? as u64;
                }
            }
            res.consumed = cur.pos;
            return Ok(res);
        }

        // recv_deflated_token() / recv_zstd_token() / recv_compressed_token()
        let zlib = matches!(self.comp, Compression::Zlib | Compression::ZlibX);
        if zlib {
            match &mut self.inflate {
                Some(d) => d.reset(false),
                None => self.inflate = Some(Box::new(Decompress::new(false))),
            }
        }
        let mut rx_token: i64 = 0;
        let mut inflated = false;
        loop {
            let flag = cur.u8()?;
            if flag & 0xC0 == DEFLATED_DATA {
                let n = (((flag & 0x3F) as usize) << 8) + cur.u8()? as usize;
                let data = cur.take(n)?;
                res.literal_bytes += self.decompress_chunk(data, out)? as u64;
                inflated = zlib;
                continue;
            }
            if inflated {
                res.literal_bytes += self.resync(out)? as u64;
                inflated = false;
            }
            if flag == END_FLAG {
                break;
            }
            // recv_compressed_token_num()
            let run_flag;
            if flag & TOKEN_REL != 0 {
                let incr = (flag & 0x3F) as i64;
                if rx_token > MAX_TOKEN_INDEX - incr {
                    return Err(TokenError::Invalid(
                        "invalid token number in compressed stream".into(),
                    ));
                }
                rx_token += incr;
                run_flag = flag >> 6;
            } else {
                rx_token = cur.i32()? as i64;
                if !(0..=MAX_TOKEN_INDEX).contains(&rx_token) {
                    return Err(TokenError::Invalid(
                        "invalid token number in compressed stream".into(),
                    ));
                }
                run_flag = flag;
            }
            let mut run: i64 = 0;
            if run_flag & 1 != 0 {
                let lo = cur.u8()? as i64;
                let hi = cur.u8()? as i64;
                run = lo + (hi << 8);
                if run <= 0 || rx_token > MAX_TOKEN_INDEX - run {
                    return Err(TokenError::Invalid(
                        "invalid token number in compressed stream".into(),
                    ));
                }
            }
            for k in 0..=run {
                let b = rx_token + k;
                res.matched_bytes += self.copy_block(b, head, basis, out)? as u64;
            }
            rx_token += run;
        }
        res.consumed = cur.pos;
        Ok(res)
    }

    /// Append basis block `b` and, for zlib, feed it to the inflater's
    /// history (`see_deflate_token()`).
    fn copy_block(
        &mut self,
        b: i64,
        head: &SumHead,
        basis: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, TokenError> {
        if b < 0 || b >= head.count as i64 {
            return Err(TokenError::Invalid(format!(
                "Invalid block index {b} (count={})",
                head.count
            )));
        }
        let off = head.block_offset(b as u32) as usize;
        let len = head.block_len(b as u32);
        let block = basis
            .get(off..off.saturating_add(len))
            .ok_or_else(|| TokenError::Invalid(format!("block {b} beyond the basis")))?;
        out.extend_from_slice(block);
        if self.comp == Compression::Zlib {
            self.see_deflate_token(block)?;
        }
        Ok(len)
    }

    fn see_deflate_token(&mut self, block: &[u8]) -> Result<(), TokenError> {
        let d = self
            .inflate
            .as_mut()
            .ok_or_else(|| TokenError::Compress("no inflate".into()))?;
        let mut left = block.len();
        let mut off = 0usize;
        while left > 0 {
            let blklen = left.min(0xFFFF);
            let hdr = [
                0u8,
                blklen as u8,
                (blklen >> 8) as u8,
                !(blklen as u8),
                !((blklen >> 8) as u8),
            ];
            let piece = &block[off..off + blklen];
            let mut produced = 0usize;
            for part in [&hdr[..], piece] {
                let mut rest = part;
                loop {
                    let (i0, o0) = (d.total_in(), d.total_out());
                    let st = d
                        .decompress(rest, &mut self.dbuf, FlushDecompress::Sync)
                        .map_err(|e| {
                            TokenError::Invalid(format!("inflate (token) returned {e}"))
                        })?;
                    let used = (d.total_in() - i0) as usize;
                    let n = (d.total_out() - o0) as usize;
                    produced += n;
                    rest = &rest[used..];
                    if st == Status::StreamEnd {
                        return Err(TokenError::Invalid(
                            "inflate (token) hit end of stream".into(),
                        ));
                    }
                    if rest.is_empty() && n < self.dbuf.len() {
                        break;
                    }
                    if used == 0 && n == 0 {
                        return Err(TokenError::Invalid(
                            "inflate (token) made no progress".into(),
                        ));
                    }
                }
            }
            if produced != blklen {
                return Err(TokenError::Invalid("inflate (token) lost sync".into()));
            }
            if self.protocol >= 31 {
                off += blklen;
            }
            left -= blklen;
        }
        Ok(())
    }

    /// One DEFLATED_DATA chunk; returns the bytes it decoded to.
    fn decompress_chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, TokenError> {
        let start = out.len();
        match self.comp {
            Compression::None => unreachable!("not a compressed stream"),
            Compression::Zlib | Compression::ZlibX => {
                // r_inflating: inflate(Z_NO_FLUSH) until the chunk is used up.
                let d = self
                    .inflate
                    .as_mut()
                    .ok_or_else(|| TokenError::Compress("no inflate".into()))?;
                let mut rest = data;
                loop {
                    let (i0, o0) = (d.total_in(), d.total_out());
                    let st = d
                        .decompress(rest, &mut self.dbuf, FlushDecompress::None)
                        .map_err(|e| TokenError::Invalid(format!("inflate returned {e}")))?;
                    let used = (d.total_in() - i0) as usize;
                    let n = (d.total_out() - o0) as usize;
                    if st != Status::Ok {
                        return Err(TokenError::Invalid(format!(
                            "inflate returned {st:?} ({n} bytes)"
                        )));
                    }
                    out.extend_from_slice(&self.dbuf[..n]);
                    rest = &rest[used..];
                    if rest.is_empty() {
                        break;
                    }
                }
            }
            Compression::Zstd => {
                let dec = self
                    .zstd
                    .as_mut()
                    .ok_or_else(|| TokenError::Compress("no zstd".into()))?;
                let mut input = InBuffer::around(data);
                loop {
                    let mut output = OutBuffer::around(&mut self.dbuf[..]);
                    dec.run(&mut input, &mut output)
                        .map_err(|e| TokenError::Invalid(format!("ZSTD decomp returned {e}")))?;
                    let n = output.pos();
                    out.extend_from_slice(&self.dbuf[..n]);
                    if input.pos() == data.len() && n < self.dbuf.len() {
                        break;
                    }
                }
            }
            Compression::Lz4 => {
                let n = lz4_flex::block::decompress_into(data, &mut self.dbuf)
                    .map_err(|e| TokenError::Invalid(format!("uncompress failed: {e}")))?;
                out.extend_from_slice(&self.dbuf[..n]);
            }
        }
        Ok(out.len() - start)
    }

    /// zlib receiver at a non-data flag after data (`r_inflated`): drain
    /// pending output, then feed the stripped `00 00 FF FF`, which must
    /// complete the empty stored block (stock checks `inflateSyncPoint()`).
    fn resync(&mut self, out: &mut Vec<u8>) -> Result<usize, TokenError> {
        let d = self
            .inflate
            .as_mut()
            .ok_or_else(|| TokenError::Compress("no inflate".into()))?;
        let start = out.len();
        loop {
            let o0 = d.total_out();
            d.decompress(&[], &mut self.dbuf, FlushDecompress::Sync)
                .map_err(|e| TokenError::Invalid(format!("inflate flush returned {e}")))?;
            let n = (d.total_out() - o0) as usize;
            out.extend_from_slice(&self.dbuf[..n]);
            if n == 0 {
                break;
            }
        }
        let (i0, o0) = (d.total_in(), d.total_out());
        let st = d
            .decompress(&SYNC_TAIL, &mut self.dbuf, FlushDecompress::Sync)
            .map_err(|_| TokenError::Invalid("decompressor lost sync!".into()))?;
        if d.total_in() - i0 != 4 || d.total_out() != o0 || st == Status::StreamEnd {
            return Err(TokenError::Invalid("decompressor lost sync!".into()));
        }
        Ok(out.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn names() {
        for c in [
            Compression::None,
            Compression::Zlib,
            Compression::ZlibX,
            Compression::Zstd,
            Compression::Lz4,
        ] {
            assert_eq!(Compression::from_name(c.name().as_bytes()), Some(c));
        }
        assert_eq!(Compression::from_name(b"ZSTD"), Some(Compression::Zstd));
        assert_eq!(Compression::from_name(b"gzip"), None);
        assert_eq!(Compression::Zlib.effective_level(None), Some(6));
        assert_eq!(Compression::Zlib.effective_level(Some(0)), None);
        assert_eq!(Compression::ZlibX.effective_level(Some(42)), Some(9));
        assert_eq!(Compression::Zstd.effective_level(Some(0)), Some(3));
        assert!(TokenEncoder::new(Compression::Zlib, Some(0), 31).is_err());
    }

    /// `dont compress = *`: deflate streams switch to stored blocks from the
    /// next file on (decodable, larger than the input), zstd is unchanged.
    #[test]
    fn skip_compress_stores_deflate_files() {
        let text: Vec<u8> = (0..4000)
            .flat_map(|i| format!("line {i} of text\n").into_bytes())
            .collect();
        let encode = |e: &mut TokenEncoder| {
            let mut out = Vec::new();
            e.literal(&mut out, &text).unwrap();
            e.end_file(&mut out).unwrap();
            out
        };
        for c in [Compression::Zlib, Compression::ZlibX] {
            let mut e = TokenEncoder::new(c, Some(9), 31).unwrap();
            let packed = encode(&mut e);
            assert!(packed.len() < text.len() / 3, "{c:?}: {}", packed.len());
            e.set_skip_compress(true);
            let stored = encode(&mut e);
            assert!(
                stored.len() > text.len(),
                "{c:?}: {} <= {}",
                stored.len(),
                text.len()
            );
            e.set_skip_compress(false);
            assert_eq!(encode(&mut e), packed, "{c:?}: back to the session level");
            for out in [&packed, &stored] {
                let mut file = Vec::new();
                TokenDecoder::new(c, 31)
                    .unwrap()
                    .decode_file(out, &SumHead::default(), b"", &mut file)
                    .unwrap();
                assert_eq!(file, text, "{c:?}");
            }
        }
        let mut z = TokenEncoder::new(Compression::Zstd, None, 31).unwrap();
        z.set_skip_compress(true);
        assert!(encode(&mut z).len() < text.len() / 3);
    }

    #[test]
    fn golden_uncompressed_hello() {
        let mut e = TokenEncoder::new(Compression::None, None, 31).unwrap();
        let mut out = Vec::new();
        e.literal(&mut out, b"hello world\n").unwrap();
        e.end_file(&mut out).unwrap();
        let mut expect = hex("0c 00 00 00");
        expect.extend_from_slice(b"hello world\n");
        expect.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(out, expect);
    }

    #[test]
    fn uncompressed_chunks_and_tokens() {
        let mut e = TokenEncoder::new(Compression::None, None, 31).unwrap();
        let mut out = Vec::new();
        let data = vec![7u8; 200_000];
        e.literal(&mut out, &data).unwrap();
        e.block_match(&mut out, 0, b"").unwrap();
        e.block_match(&mut out, 5, b"").unwrap();
        e.end_file(&mut out).unwrap();
        // Runs of 32768 x6 + 3392 as observed from stock.
        let mut r = crate::wire::Reader::new(&out);
        let mut lens = Vec::new();
        loop {
            let n = r.i32().unwrap();
            if n <= 0 {
                assert_eq!(n, -1);
                break;
            }
            lens.push(n);
            r.bytes(n as usize).unwrap();
        }
        assert_eq!(lens, [32768, 32768, 32768, 32768, 32768, 32768, 3392]);
        assert_eq!(r.i32().unwrap(), -6);
        assert_eq!(r.i32().unwrap(), 0);
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn golden_zlib_hello() {
        for c in [Compression::Zlib, Compression::ZlibX] {
            let mut e = TokenEncoder::new(c, None, 31).unwrap();
            let mut out = Vec::new();
            e.literal(&mut out, b"hello world\n").unwrap();
            e.end_file(&mut out).unwrap();
            assert_eq!(
                out,
                hex("40 0E CA 48 CD C9 C9 57 28 CF 2F CA 49 E1 02 00 00")
            );
            // Second file: stream was reset, same bytes again.
            let mut out2 = Vec::new();
            e.literal(&mut out2, b"hello world\n").unwrap();
            e.end_file(&mut out2).unwrap();
            assert_eq!(out2, out);
            let mut d = TokenDecoder::new(c, 31).unwrap();
            let mut file = Vec::new();
            let r = d
                .decode_file(&out, &SumHead::default(), b"", &mut file)
                .unwrap();
            assert_eq!(file, b"hello world\n");
            assert_eq!(r.consumed, out.len());
        }
    }

    /// Encoder run coding, checked on the flag bytes alone (uncompressible
    /// literal-free streams): mirrors §12.6.
    #[test]
    fn run_coding_matches_capture_12_6() {
        let mut e = TokenEncoder::new(Compression::ZlibX, None, 31).unwrap();
        let mut out = Vec::new();
        for b in 0..=27 {
            e.block_match(&mut out, b, b"").unwrap();
        }
        e.literal(&mut out, b"x").unwrap();
        for b in 29..=70 {
            e.block_match(&mut out, b, b"").unwrap();
        }
        e.end_file(&mut out).unwrap();
        assert_eq!(&out[..3], &[0xC0, 27, 0]);
        // data chunk, then C2 29 00, then END.
        assert_eq!(out[3] & 0xC0, 0x40);
        let n = (((out[3] & 0x3F) as usize) << 8) + out[4] as usize;
        assert_eq!(&out[5 + n..], &[0xC2, 41, 0, 0x00]);
    }

    #[test]
    fn long_and_rel_tokens() {
        let mut e = TokenEncoder::new(Compression::Lz4, None, 31).unwrap();
        let mut out = Vec::new();
        e.block_match(&mut out, 100, b"").unwrap(); // r = 100 > 63: TOKEN_LONG
        e.block_match(&mut out, 101, b"").unwrap(); // extends the run
        e.block_match(&mut out, 90, b"").unwrap(); // r = 90 - 101 < 0: long
        e.block_match(&mut out, 95, b"").unwrap(); // r = 95 - 90 = 5: REL
        e.end_file(&mut out).unwrap();
        assert_eq!(out, hex("21 64 00 00 00 01 00  20 5a 00 00 00  85  00"));
        // Runs longer than 65536 blocks split.
        let mut out = Vec::new();
        for b in 0..70_000 {
            e.block_match(&mut out, b, b"").unwrap();
        }
        e.end_file(&mut out).unwrap();
        assert_eq!(out, hex("c0 ff ff  c1 6f 11  00"));
        let head = SumHead {
            count: 70_000,
            blength: 1,
            s2length: 0,
            remainder: 0,
        };
        let basis: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        let mut file = Vec::new();
        TokenDecoder::new(Compression::Lz4, 31)
            .unwrap()
            .decode_file(&out, &head, &basis, &mut file)
            .unwrap();
        assert_eq!(file, basis);
    }

    #[test]
    fn decoder_rejects_bad_streams() {
        let head = SumHead {
            count: 2,
            blength: 4,
            s2length: 2,
            remainder: 0,
        };
        let basis = b"abcdefgh";
        for c in [Compression::Zlib, Compression::Zstd, Compression::Lz4] {
            let mut d = TokenDecoder::new(c, 31).unwrap();
            let mut out = Vec::new();
            assert!(matches!(
                d.decode_file(&[0x82, 0x00], &head, basis, &mut out),
                Err(TokenError::Invalid(_))
            ));
            assert_eq!(
                d.decode_file(&[0x80, 0x81], &head, basis, &mut out),
                Err(TokenError::Truncated)
            );
            assert!(matches!(
                d.decode_file(&[0x20, 0xff, 0xff, 0xff, 0xff, 0], &head, basis, &mut out),
                Err(TokenError::Invalid(_))
            ));
            assert!(matches!(
                d.decode_file(&[0xC0, 0x00, 0x00, 0x00], &head, basis, &mut out),
                Err(TokenError::Invalid(_))
            ));
        }
        let mut d = TokenDecoder::new(Compression::None, 31).unwrap();
        let mut out = Vec::new();
        assert!(d
            .decode_file(&hex("fd ff ff ff 00 00 00 00"), &head, basis, &mut out)
            .is_err());
        let r = d
            .decode_file(&hex("fe ff ff ff 00 00 00 00"), &head, basis, &mut out)
            .unwrap();
        assert_eq!(out, b"efgh");
        assert_eq!(r.matched_bytes, 4);
    }
}
