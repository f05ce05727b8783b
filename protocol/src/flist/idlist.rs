//! uid/gid name lists. Mirrors `uidlist.c`: `add_uid()`/`add_gid()` on the
//! sending side, `send_one_list()`/`send_one_name()` for the lists that
//! follow a non-incremental file list, and `recv_id_list()` for decoding.
//!
//! Wire form of one list: for every non-zero id that was seen and has a
//! name, `varint30 id, byte len, name`; then the terminator `varint30 0`,
//! followed (with `CF_ID0_NAMES`) by `byte len, name` of id 0.

use crate::error::{DecodeError, DecodeResult};
use crate::wire::{put_u8, put_varint30, Reader};

/// Longest name a list or an inline name can carry (one length byte).
pub const MAX_ID_NAME_LEN: usize = 255;

/// Ids seen by the sender, in the order rsync keeps them, with the name
/// looked up when each id was first seen.
#[derive(Debug, Clone, Default)]
pub struct IdList {
    /// `(id, name)` in first-seen order (the wire order is the reverse,
    /// because `uidlist.c: add_to_list()` prepends).
    seen: Vec<(u32, Option<Vec<u8>>)>,
    /// Membership index for `seen`.
    index: std::collections::HashSet<u32>,
}

impl IdList {
    /// An empty list.
    pub fn new() -> Self {
        IdList::default()
    }

    /// Record `id`. Mirrors `add_uid()`/`add_gid()`: if the id is new, look
    /// up its name with `lookup`, remember it, and return the name (capped at
    /// 255 bytes) so the caller can send it inline; for an id seen before,
    /// or one without a name, return `None`.
    pub fn add(&mut self, id: u32, lookup: impl FnOnce(u32) -> Option<Vec<u8>>) -> Option<&[u8]> {
        if !self.index.insert(id) {
            return None;
        }
        let name = lookup(id).map(|mut n| {
            n.truncate(MAX_ID_NAME_LEN);
            n
        });
        self.seen.push((id, name));
        self.seen.last().and_then(|(_, n)| n.as_deref())
    }

    /// True if `id` was recorded.
    pub fn contains(&self, id: u32) -> bool {
        self.index.contains(&id)
    }

    /// Number of distinct ids recorded (named or not, including 0).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no id was recorded.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Append the list. Mirrors `uidlist.c: send_one_list()`: the named
    /// non-zero ids (most recently added first), then the terminator, which
    /// with `id0_names` (`CF_ID0_NAMES`) carries the name of id 0
    /// (`id0_name`, empty when unknown).
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        protocol: u8,
        id0_names: bool,
        id0_name: Option<&[u8]>,
    ) {
        for (id, name) in self.seen.iter().rev() {
            if let (true, Some(name)) = (*id != 0, name) {
                put_one_name(out, *id, name, protocol);
            }
        }
        if id0_names {
            put_one_name(out, 0, id0_name.unwrap_or(b""), protocol);
        } else {
            put_varint30(out, 0, protocol);
        }
    }
}

/// `uidlist.c: send_one_name()`: varint30 id, byte length, name (capped at
/// 255 bytes).
fn put_one_name(out: &mut Vec<u8>, id: u32, name: &[u8], protocol: u8) {
    let name = &name[..name.len().min(MAX_ID_NAME_LEN)];
    put_varint30(out, id as i32, protocol);
    put_u8(out, name.len() as u8);
    out.extend_from_slice(name);
}

/// Append an inline name (`XMIT_USER_NAME_FOLLOWS` / `XMIT_GROUP_NAME_FOLLOWS`):
/// byte length then the name, capped at 255 bytes.
pub fn put_inline_name(out: &mut Vec<u8>, name: &[u8]) {
    let name = &name[..name.len().min(MAX_ID_NAME_LEN)];
    put_u8(out, name.len() as u8);
    out.extend_from_slice(name);
}

/// Read an inline name: byte length then bytes (`uidlist.c: recv_user_name()`).
pub fn read_inline_name(r: &mut Reader<'_>) -> DecodeResult<Vec<u8>> {
    let len = r.u8()? as usize;
    Ok(r.bytes(len)?.to_vec())
}

/// One decoded id list: `(id, name)` pairs in wire order, the id-0 entry
/// (only with `CF_ID0_NAMES`) included last.
pub type DecodedIdList = Vec<(u32, Vec<u8>)>;

/// Decode one id list. Mirrors the loop in `uidlist.c: recv_id_list()`.
/// `max_entries` bounds the number of pairs accepted.
pub fn decode_id_list(
    r: &mut Reader<'_>,
    protocol: u8,
    id0_names: bool,
    max_entries: usize,
) -> DecodeResult<DecodedIdList> {
    let mut list = Vec::new();
    loop {
        let id = r.varint30(protocol)? as u32;
        if id == 0 {
            break;
        }
        if list.len() >= max_entries {
            return Err(DecodeError::invalid("id list", "too many ids"));
        }
        let name = read_inline_name(r)?;
        list.push((id, name));
    }
    if id0_names {
        let name = read_inline_name(r)?;
        list.push((0, name));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(id: u32) -> Option<Vec<u8>> {
        match id {
            0 => Some(b"root".to_vec()),
            1000 => Some(b"alice".to_vec()),
            1001 => Some(b"bob".to_vec()),
            _ => None,
        }
    }

    #[test]
    fn add_returns_name_once() {
        let mut l = IdList::new();
        assert_eq!(l.add(1000, names), Some(&b"alice"[..]));
        assert_eq!(l.add(1000, names), None);
        assert_eq!(l.add(5, names), None);
        assert!(l.contains(5));
        assert_eq!(l.len(), 2);
    }

    #[test]
    fn encode_reverse_order_and_terminators() {
        let mut l = IdList::new();
        for id in [0, 1000, 7, 1001, 1000] {
            l.add(id, names);
        }
        let mut out = Vec::new();
        l.encode(&mut out, 31, true, Some(b"root"));
        let mut want = vec![0x83, 0xE9, 3];
        want.extend_from_slice(b"bob");
        want.extend_from_slice(&[0x83, 0xE8, 5]);
        want.extend_from_slice(b"alice");
        want.extend_from_slice(&[0, 4]);
        want.extend_from_slice(b"root");
        assert_eq!(out, want);
        let dec = decode_id_list(&mut Reader::new(&out), 31, true, 100).unwrap();
        assert_eq!(
            dec,
            vec![
                (1001, b"bob".to_vec()),
                (1000, b"alice".to_vec()),
                (0, b"root".to_vec())
            ]
        );

        out.clear();
        l.encode(&mut out, 29, false, None);
        assert_eq!(&out[..4], &1001i32.to_le_bytes());
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 0]);
        let dec = decode_id_list(&mut Reader::new(&out), 29, false, 100).unwrap();
        assert_eq!(dec.len(), 2);
    }

    #[test]
    fn long_names_are_capped() {
        let mut l = IdList::new();
        let long = vec![b'n'; 300];
        assert_eq!(l.add(9, |_| Some(long.clone())).map(|n| n.len()), Some(255));
        let mut out = Vec::new();
        put_inline_name(&mut out, &long);
        assert_eq!(out.len(), 256);
        assert_eq!(out[0], 255);
    }

    #[test]
    fn decode_limits_and_incomplete() {
        let mut out = Vec::new();
        let mut l = IdList::new();
        l.add(1000, names);
        l.add(1001, names);
        l.encode(&mut out, 31, false, None);
        assert!(decode_id_list(&mut Reader::new(&out), 31, false, 1).is_err());
        for cut in 0..out.len() {
            assert!(decode_id_list(&mut Reader::new(&out[..cut]), 31, false, 10)
                .unwrap_err()
                .is_incomplete());
        }
    }
}
