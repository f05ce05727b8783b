//! File-index ("ndx") encoding. Mirrors `io.c: write_ndx()` / `read_ndx()`.
//!
//! Protocol < 30 sends a plain int32. Protocol >= 30 delta-encodes against
//! per-direction state that lives for the whole connection.

use crate::error::{DecodeError, DecodeResult};
use crate::wire::{put_i32, Reader};

/// `rsync.h: NDX_DONE`.
pub const NDX_DONE: i32 = -1;
/// `rsync.h: NDX_FLIST_EOF`.
pub const NDX_FLIST_EOF: i32 = -2;
/// `rsync.h: NDX_DEL_STATS`.
pub const NDX_DEL_STATS: i32 = -3;
/// `rsync.h: NDX_FLIST_OFFSET`.
pub const NDX_FLIST_OFFSET: i32 = -101;

/// Delta state for one direction of one connection.
#[derive(Debug, Clone)]
pub struct NdxState {
    protocol: u8,
    prev_positive: i32,
    prev_negative: i32,
}

impl NdxState {
    /// Fresh state (`prev_positive = -1`, `prev_negative = 1`).
    pub fn new(protocol: u8) -> Self {
        NdxState { protocol, prev_positive: -1, prev_negative: 1 }
    }

    /// `io.c: write_ndx()`.
    pub fn encode(&mut self, out: &mut Vec<u8>, ndx: i32) {
        if self.protocol < 30 {
            put_i32(out, ndx);
            return;
        }
        let (diff, num) = if ndx >= 0 {
            let d = ndx.wrapping_sub(self.prev_positive);
            self.prev_positive = ndx;
            (d, ndx)
        } else if ndx == NDX_DONE {
            out.push(0);
            return;
        } else {
            out.push(0xFF);
            let n = ndx.wrapping_neg();
            let d = n.wrapping_sub(self.prev_negative);
            self.prev_negative = n;
            (d, n)
        };
        if (1..0xFE).contains(&diff) {
            out.push(diff as u8);
        } else if !(0..=0x7FFF).contains(&diff) {
            out.push(0xFE);
            out.push(((num >> 24) as u8) | 0x80);
            out.push(num as u8);
            out.push((num >> 8) as u8);
            out.push((num >> 16) as u8);
        } else {
            out.push(0xFE);
            out.push((diff >> 8) as u8);
            out.push(diff as u8);
        }
    }

    /// `io.c: read_ndx()`. On `Incomplete` the state is unchanged, so the
    /// caller may retry with more bytes.
    pub fn decode(&mut self, r: &mut Reader<'_>) -> DecodeResult<i32> {
        if self.protocol < 30 {
            return r.i32();
        }
        let mut probe = r.clone();
        let mut b0 = probe.u8()?;
        let negative = if b0 == 0xFF {
            b0 = probe.u8()?;
            true
        } else if b0 == 0 {
            *r = probe;
            return Ok(NDX_DONE);
        } else {
            false
        };
        let prev = if negative { self.prev_negative } else { self.prev_positive };
        let num = if b0 == 0xFE {
            let b1 = probe.u8()?;
            let b2 = probe.u8()?;
            if b1 & 0x80 != 0 {
                let b3 = probe.u8()?;
                let b4 = probe.u8()?;
                let v = (((b1 & 0x7F) as u32) << 24) | ((b4 as u32) << 16) | ((b3 as u32) << 8) | b2 as u32;
                v as i32
            } else {
                let d = ((b1 as i32) << 8) | b2 as i32;
                prev.wrapping_add(d)
            }
        } else {
            prev.wrapping_add(b0 as i32)
        };
        if num < 0 {
            return Err(DecodeError::invalid("ndx", format!("index out of range ({num})")));
        }
        *r = probe;
        if negative {
            self.prev_negative = num;
            Ok(-num)
        } else {
            self.prev_positive = num;
            Ok(num)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(seq: &[i32]) -> Vec<u8> {
        let mut s = NdxState::new(31);
        let mut o = Vec::new();
        for &n in seq {
            s.encode(&mut o, n);
        }
        o
    }

    #[test]
    fn examples_from_notes() {
        assert_eq!(enc(&[0, 1, 2]), [1, 1, 1]);
        assert_eq!(enc(&[-102]), [0xFF, 0x65]);
        assert_eq!(enc(&[-102, -2]), [0xFF, 0x65, 0xFF, 0xFE, 0x80, 0x02, 0, 0]);
        assert_eq!(enc(&[-3]), [0xFF, 0x02]);
        assert_eq!(enc(&[NDX_DONE]), [0]);
    }

    #[test]
    fn roundtrip_sequences() {
        let seq = [0, 1, 5, 300, 299, 40000, 40001, NDX_DONE, -102, -103, -2, 7, 100_000_000, -3, 0, NDX_DONE];
        let bytes = enc(&seq);
        let mut s = NdxState::new(31);
        let mut r = Reader::new(&bytes);
        for &n in &seq {
            assert_eq!(s.decode(&mut r).unwrap(), n);
        }
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn legacy_is_int32() {
        let mut s = NdxState::new(29);
        let mut o = Vec::new();
        s.encode(&mut o, NDX_DONE);
        s.encode(&mut o, 2);
        assert_eq!(o, [0xFF, 0xFF, 0xFF, 0xFF, 2, 0, 0, 0]);
    }

    #[test]
    fn incomplete_keeps_state() {
        let mut s = NdxState::new(31);
        let mut r = Reader::new(&[0xFE, 0x01]);
        assert!(s.decode(&mut r).unwrap_err().is_incomplete());
        let mut r = Reader::new(&[0xFE, 0x01, 0x00]);
        assert_eq!(s.decode(&mut r).unwrap(), 255);
    }
}
