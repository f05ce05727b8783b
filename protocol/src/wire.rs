//! Primitive encodings: int32, longint, varint, varlong, vstring.
//!
//! Mirrors `io.c`: `write_int()`, `write_longint()`, `write_varint()`,
//! `write_varlong()`, `write_vstring()` and their readers. All fixed-width
//! integers are little-endian. Encoders append to a caller-owned `Vec<u8>`;
//! decoding goes through [`Reader`], a bounds-checked cursor over a byte
//! slice that reports [`DecodeError::Incomplete`] when the input runs out.

use crate::error::{DecodeError, DecodeResult};

/// `io.c: int_byte_extra[]`: number of extra bytes announced by the high
/// bits of the first byte of a varint/varlong, indexed by `first >> 2`.
const INT_BYTE_EXTRA: [u8; 64] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // (00 - 3F)/4
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // (40 - 7F)/4
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, // (80 - BF)/4
    2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 6, // (C0 - FF)/4
];

/// Maximum length of a vstring (`io.c: read_vstring()`, 15-bit length).
pub const MAX_VSTRING_LEN: usize = 0x7FFF;

/// Append a single byte.
pub fn put_u8(out: &mut Vec<u8>, v: u8) {
    out.push(v);
}

/// Append a 16-bit little-endian value (`write_shortint`).
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Append a 32-bit little-endian value (`write_int`).
pub fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Append a 32-bit little-endian unsigned value.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// `io.c: write_longint()`: 4 bytes when `0 <= v <= 0x7FFFFFFF`, otherwise
/// `FF FF FF FF` followed by the 64-bit value.
pub fn put_longint(out: &mut Vec<u8>, v: i64) {
    if (0..=0x7FFF_FFFF).contains(&v) {
        put_i32(out, v as i32);
    } else {
        put_i32(out, -1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// `io.c: write_varint()`.
pub fn put_varint(out: &mut Vec<u8>, v: i32) {
    let b = (v as u32).to_le_bytes();
    let mut cnt = 4usize;
    while cnt > 1 && b[cnt - 1] == 0 {
        cnt -= 1;
    }
    let bit: u32 = 1 << (7 - cnt + 1);
    let top = b[cnt - 1] as u32;
    if top >= bit {
        out.push(!((bit - 1) as u8));
        out.extend_from_slice(&b[..cnt]);
    } else if cnt > 1 {
        out.push(top as u8 | !((bit * 2 - 1) as u8));
        out.extend_from_slice(&b[..cnt - 1]);
    } else {
        out.push(top as u8);
    }
}

/// `io.c: write_varlong()` with `min_bytes` (3 for sizes, 4 for times).
pub fn put_varlong(out: &mut Vec<u8>, v: i64, min_bytes: usize) {
    debug_assert!((1..=8).contains(&min_bytes));
    let b = (v as u64).to_le_bytes();
    let mut cnt = 8usize;
    while cnt > min_bytes && b[cnt - 1] == 0 {
        cnt -= 1;
    }
    let bit: u32 = 1 << (7 + min_bytes - cnt);
    let top = b[cnt - 1] as u32;
    if top >= bit {
        out.push(!((bit - 1) as u8));
        out.extend_from_slice(&b[..cnt]);
    } else if cnt > min_bytes {
        out.push(top as u8 | !((bit * 2 - 1) as u8));
        out.extend_from_slice(&b[..cnt - 1]);
    } else {
        out.push(top as u8);
        out.extend_from_slice(&b[..cnt - 1]);
    }
}

/// `varint30`: varint for protocol >= 30, int32 otherwise.
pub fn put_varint30(out: &mut Vec<u8>, v: i32, protocol: u8) {
    if protocol >= 30 {
        put_varint(out, v)
    } else {
        put_i32(out, v)
    }
}

/// `varlong30`: varlong for protocol >= 30, longint otherwise.
pub fn put_varlong30(out: &mut Vec<u8>, v: i64, min_bytes: usize, protocol: u8) {
    if protocol >= 30 {
        put_varlong(out, v, min_bytes)
    } else {
        put_longint(out, v)
    }
}

/// `io.c: write_vstring()`. Panics in debug builds if `s` exceeds
/// [`MAX_VSTRING_LEN`]; callers only pass bounded strings.
pub fn put_vstring(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len().min(MAX_VSTRING_LEN);
    debug_assert_eq!(len, s.len(), "vstring too long");
    if len > 0x7F {
        out.push(0x80 | (len >> 8) as u8);
        out.push((len & 0xFF) as u8);
    } else {
        out.push(len as u8);
    }
    out.extend_from_slice(&s[..len]);
}

/// A bounds-checked cursor over received bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Start reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The unread tail.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn need(&self, n: usize) -> DecodeResult<()> {
        if self.remaining() < n {
            Err(DecodeError::Incomplete { needed: n - self.remaining() })
        } else {
            Ok(())
        }
    }

    /// Take `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> DecodeResult<&'a [u8]> {
        self.need(n)?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Read one byte.
    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// Read a little-endian u16 (`read_shortint`).
    pub fn u16(&mut self) -> DecodeResult<u16> {
        let b = self.bytes(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Read a little-endian i32 (`read_int`).
    pub fn i32(&mut self) -> DecodeResult<i32> {
        let b = self.bytes(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Read a little-endian u32.
    pub fn u32(&mut self) -> DecodeResult<u32> {
        Ok(self.i32()? as u32)
    }

    /// `io.c: read_longint()`.
    pub fn longint(&mut self) -> DecodeResult<i64> {
        let v = self.i32()?;
        if v != -1 {
            return Ok(v as i64);
        }
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    /// `io.c: read_varint()`.
    pub fn varint(&mut self) -> DecodeResult<i32> {
        let first = self.u8()?;
        let extra = INT_BYTE_EXTRA[(first / 4) as usize] as usize;
        if extra > 4 {
            return Err(DecodeError::invalid("varint", "overflow in read_varint()"));
        }
        let mut b = [0u8; 5];
        if extra > 0 {
            let bit = 1u8 << (8 - extra);
            b[..extra].copy_from_slice(self.bytes(extra)?);
            b[extra] = first & (bit.wrapping_sub(1));
        } else {
            b[0] = first;
        }
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// `io.c: read_varlong()`.
    pub fn varlong(&mut self, min_bytes: usize) -> DecodeResult<i64> {
        debug_assert!((1..=8).contains(&min_bytes));
        let head = self.bytes(min_bytes)?;
        let first = head[0];
        let extra = INT_BYTE_EXTRA[(first / 4) as usize] as usize;
        if min_bytes + extra > 9 {
            return Err(DecodeError::invalid("varlong", "overflow in read_varlong()"));
        }
        let mut b = [0u8; 9];
        b[..min_bytes - 1].copy_from_slice(&head[1..]);
        if extra > 0 {
            let bit = 1u8 << (8 - extra);
            let more = self.bytes(extra)?;
            b[min_bytes - 1..min_bytes - 1 + extra].copy_from_slice(more);
            b[min_bytes + extra - 1] = first & (bit.wrapping_sub(1));
        } else {
            b[min_bytes - 1] = first;
        }
        if b[8] != 0 {
            return Err(DecodeError::invalid("varlong", "overflow in read_varlong()"));
        }
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        Ok(i64::from_le_bytes(a))
    }

    /// `varint30`.
    pub fn varint30(&mut self, protocol: u8) -> DecodeResult<i32> {
        if protocol >= 30 {
            self.varint()
        } else {
            self.i32()
        }
    }

    /// `varlong30`.
    pub fn varlong30(&mut self, min_bytes: usize, protocol: u8) -> DecodeResult<i64> {
        if protocol >= 30 {
            self.varlong(min_bytes)
        } else {
            self.longint()
        }
    }

    /// `io.c: read_vstring()` with a caller-supplied cap (stock uses about 4 KiB).
    pub fn vstring(&mut self, max_len: usize) -> DecodeResult<&'a [u8]> {
        let first = self.u8()? as usize;
        let len = if first & 0x80 != 0 { ((first & 0x7F) << 8) | self.u8()? as usize } else { first };
        if len > max_len {
            return Err(DecodeError::invalid("vstring", format!("over-long vstring received ({len} > {max_len})")));
        }
        self.bytes(len)
    }
}

/// Look a negotiation name up in `table` (name, value), ASCII
/// case-insensitively, as rsync's `parse_csum_name()` /
/// `parse_compress_choice()` compare names.
pub fn lookup_name<T: Copy>(name: &[u8], table: &[(&str, T)]) -> Option<T> {
    table.iter().find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name)).map(|&(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint_bytes(v: i32) -> Vec<u8> {
        let mut o = Vec::new();
        put_varint(&mut o, v);
        o
    }

    fn varlong_bytes(v: i64, m: usize) -> Vec<u8> {
        let mut o = Vec::new();
        put_varlong(&mut o, v, m);
        o
    }

    #[test]
    fn varint_examples_from_notes() {
        assert_eq!(varint_bytes(0), [0x00]);
        assert_eq!(varint_bytes(0x7F), [0x7F]);
        assert_eq!(varint_bytes(0x80), [0x80, 0x80]);
        assert_eq!(varint_bytes(0x9A), [0x80, 0x9A]);
        assert_eq!(varint_bytes(0x1234), [0x92, 0x34]);
        assert_eq!(varint_bytes(0x1FF), [0x81, 0xFF]);
        assert_eq!(varint_bytes(0x0C01), [0x8C, 0x01]);
        assert_eq!(varint_bytes(0x1FE), [0x81, 0xFE]);
        assert_eq!(varint_bytes(729142905), [0xF0, 0x79, 0xD6, 0x75, 0x2B]);
        assert_eq!(varint_bytes(-1).len(), 5);
    }

    #[test]
    fn varlong_examples_from_notes() {
        assert_eq!(varlong_bytes(0, 3), [0, 0, 0]);
        assert_eq!(varlong_bytes(12, 3), [0x00, 0x0C, 0x00]);
        assert_eq!(varlong_bytes(4096, 3), [0x00, 0x00, 0x10]);
        assert_eq!(varlong_bytes(200000, 3), [0x03, 0x40, 0x0D]);
        assert_eq!(varlong_bytes(1704164645, 4), [0x65, 0x25, 0x7D, 0x93]);
        assert_eq!(varlong_bytes(1795315249, 4), [0x6B, 0x31, 0x56, 0x02]);
        let neg = varlong_bytes(-5, 4);
        assert_eq!(neg.len(), 9);
        assert_eq!(neg[0], 0xF8);
    }

    #[test]
    fn varint_roundtrip_edges() {
        for v in
            [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x3FFF, 0x4000, 0x1F_FFFF, 0x20_0000, 0x0FFF_FFFF, 0x1000_0000, i32::MAX, -1, i32::MIN, -102]
        {
            let b = varint_bytes(v);
            let mut r = Reader::new(&b);
            assert_eq!(r.varint().unwrap(), v, "value {v:#x} bytes {b:02x?}");
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn varlong_roundtrip_edges() {
        for m in [3usize, 4] {
            for v in [
                0i64,
                1,
                0xFF,
                0xFFFF,
                0xFF_FFFF,
                0x100_0000,
                0xFFFF_FFFF,
                0x1_0000_0000,
                4_400_000_000,
                i64::MAX,
                -1,
                -2_000_000_000,
                i64::MIN,
                253402300799,
            ] {
                let b = varlong_bytes(v, m);
                let mut r = Reader::new(&b);
                assert_eq!(r.varlong(m).unwrap(), v, "value {v:#x} min {m} bytes {b:02x?}");
                assert_eq!(r.remaining(), 0);
            }
        }
    }

    #[test]
    fn longint_forms() {
        let mut o = Vec::new();
        put_longint(&mut o, 4096);
        assert_eq!(o, [0x00, 0x10, 0, 0]);
        o.clear();
        put_longint(&mut o, 0x1_0000_0001);
        assert_eq!(o, [0xFF, 0xFF, 0xFF, 0xFF, 1, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(Reader::new(&o).longint().unwrap(), 0x1_0000_0001);
    }

    #[test]
    fn incomplete_reports_need() {
        assert_eq!(Reader::new(&[0x80]).varint(), Err(DecodeError::Incomplete { needed: 1 }));
        assert_eq!(Reader::new(&[1, 2]).i32(), Err(DecodeError::Incomplete { needed: 2 }));
        assert!(Reader::new(&[0xF8, 0, 0, 0, 0, 0]).varint().is_err());
    }

    #[test]
    fn vstring_forms_and_cap() {
        let mut o = Vec::new();
        put_vstring(&mut o, b"md5 md4");
        assert_eq!(o[0], 7);
        let long = vec![b'x'; 300];
        o.clear();
        put_vstring(&mut o, &long);
        assert_eq!(&o[..2], &[0x81, 0x2C]);
        assert_eq!(Reader::new(&o).vstring(4095).unwrap(), &long[..]);
        assert!(matches!(Reader::new(&o).vstring(100), Err(DecodeError::Invalid { .. })));
    }
}
