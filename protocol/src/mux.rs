//! The multiplex envelope. Mirrors `io.c: send_msg()` / `read_a_msg()`.
//!
//! Each frame is a 4-byte little-endian header
//! `((MPLEX_BASE + code) << 24) | length` followed by `length` bytes.

use crate::error::{DecodeError, DecodeResult};

/// `rsync.h: MPLEX_BASE`.
pub const MPLEX_BASE: u8 = 7;
/// Largest payload a frame can carry (24-bit length).
pub const MAX_FRAME_PAYLOAD: usize = 0xFF_FFFF;

/// `rsync.h: enum msgcode` (the codes that may travel on a socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MsgCode {
    /// Stream data.
    Data,
    /// MSG_ERROR_XFER: error while transferring (client exit 23).
    ErrorXfer,
    /// MSG_INFO.
    Info,
    /// MSG_ERROR (proto >= 30).
    Error,
    /// MSG_WARNING (proto >= 30).
    Warning,
    /// MSG_ERROR_SOCKET (internal in stock).
    ErrorSocket,
    /// MSG_LOG (internal in stock).
    Log,
    /// MSG_CLIENT (internal in stock).
    Client,
    /// MSG_ERROR_UTF8 (internal in stock).
    ErrorUtf8,
    /// MSG_REDO (pipe only).
    Redo,
    /// MSG_STATS (pipe only).
    Stats,
    /// MSG_IO_ERROR.
    IoError,
    /// MSG_IO_TIMEOUT.
    IoTimeout,
    /// MSG_NOOP.
    Noop,
    /// MSG_ERROR_EXIT.
    ErrorExit,
    /// MSG_SUCCESS.
    Success,
    /// MSG_DELETED.
    Deleted,
    /// MSG_NO_SEND.
    NoSend,
}

impl MsgCode {
    /// The numeric code.
    pub fn code(self) -> u8 {
        match self {
            MsgCode::Data => 0,
            MsgCode::ErrorXfer => 1,
            MsgCode::Info => 2,
            MsgCode::Error => 3,
            MsgCode::Warning => 4,
            MsgCode::ErrorSocket => 5,
            MsgCode::Log => 6,
            MsgCode::Client => 7,
            MsgCode::ErrorUtf8 => 8,
            MsgCode::Redo => 9,
            MsgCode::Stats => 10,
            MsgCode::IoError => 22,
            MsgCode::IoTimeout => 33,
            MsgCode::Noop => 42,
            MsgCode::ErrorExit => 86,
            MsgCode::Success => 100,
            MsgCode::Deleted => 101,
            MsgCode::NoSend => 102,
        }
    }

    /// Inverse of [`MsgCode::code`].
    pub fn from_code(c: u8) -> Option<MsgCode> {
        Some(match c {
            0 => MsgCode::Data,
            1 => MsgCode::ErrorXfer,
            2 => MsgCode::Info,
            3 => MsgCode::Error,
            4 => MsgCode::Warning,
            5 => MsgCode::ErrorSocket,
            6 => MsgCode::Log,
            7 => MsgCode::Client,
            8 => MsgCode::ErrorUtf8,
            9 => MsgCode::Redo,
            10 => MsgCode::Stats,
            22 => MsgCode::IoError,
            33 => MsgCode::IoTimeout,
            42 => MsgCode::Noop,
            86 => MsgCode::ErrorExit,
            100 => MsgCode::Success,
            101 => MsgCode::Deleted,
            102 => MsgCode::NoSend,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message code.
    pub code: MsgCode,
    /// Payload length.
    pub len: usize,
}

/// Write a frame header into `out`.
pub fn put_header(out: &mut Vec<u8>, code: MsgCode, len: usize) {
    debug_assert!(len <= MAX_FRAME_PAYLOAD);
    let h = ((u32::from(MPLEX_BASE) + u32::from(code.code())) << 24) | (len as u32 & 0xFF_FFFF);
    out.extend_from_slice(&h.to_le_bytes());
}

/// Write a whole frame (header + payload). Payloads larger than
/// [`MAX_FRAME_PAYLOAD`] are split into several frames of the same code.
pub fn put_frame(out: &mut Vec<u8>, code: MsgCode, payload: &[u8]) {
    if payload.is_empty() {
        put_header(out, code, 0);
        return;
    }
    for chunk in payload.chunks(MAX_FRAME_PAYLOAD) {
        put_header(out, code, chunk.len());
        out.extend_from_slice(chunk);
    }
}

/// Decode a 4-byte header. `max_payload` bounds the accepted length for
/// non-data frames (text messages are capped far below 16 MiB).
pub fn decode_header(buf: &[u8], max_payload: usize) -> DecodeResult<FrameHeader> {
    if buf.len() < 4 {
        return Err(DecodeError::Incomplete { needed: 4 - buf.len() });
    }
    let h = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let tag = (h >> 24) as u8;
    let len = (h & 0xFF_FFFF) as usize;
    if tag < MPLEX_BASE {
        return Err(DecodeError::invalid("mux header", format!("unexpected tag {}", tag as i32 - MPLEX_BASE as i32)));
    }
    let code = MsgCode::from_code(tag - MPLEX_BASE)
        .ok_or_else(|| DecodeError::invalid("mux header", format!("unexpected tag {}", tag - MPLEX_BASE)))?;
    if code != MsgCode::Data && len > max_payload {
        return Err(DecodeError::invalid("mux header", format!("message too long ({len} > {max_payload})")));
    }
    Ok(FrameHeader { code, len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_bytes() {
        let mut o = Vec::new();
        put_header(&mut o, MsgCode::Data, 59);
        assert_eq!(o, [0x3B, 0, 0, 0x07]);
        o.clear();
        put_header(&mut o, MsgCode::Error, 0x3A);
        assert_eq!(o, [0x3A, 0, 0, 0x0A]);
    }

    #[test]
    fn decode_rejects_unknown_and_long() {
        assert_eq!(decode_header(&[4, 0, 0, 7], 100).unwrap(), FrameHeader { code: MsgCode::Data, len: 4 });
        assert!(decode_header(&[0, 0, 0, 7 + 50], 100).is_err());
        assert!(decode_header(&[0, 0, 0, 3], 100).is_err());
        assert!(decode_header(&[0, 1, 0, 7 + 3], 100).is_err());
        assert!(decode_header(&[0, 0], 100).unwrap_err().is_incomplete());
    }

    #[test]
    fn big_payload_is_split() {
        let p = vec![1u8; MAX_FRAME_PAYLOAD + 10];
        let mut o = Vec::new();
        put_frame(&mut o, MsgCode::Data, &p);
        assert_eq!(o.len(), p.len() + 8);
    }
}
