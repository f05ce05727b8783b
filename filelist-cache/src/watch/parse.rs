//! Bounds-checked parser of the fanotify event buffer (`read(2)` on a fanotify fd
//! initialised with `FAN_REPORT_DFID_NAME`).
//!
//! Layout (include/uapi/linux/fanotify.h): each event starts with
//! `struct fanotify_event_metadata` (24 bytes: `event_len` u32, `vers` u8, reserved u8,
//! `metadata_len` u16, `mask` u64, `fd` i32, `pid` i32), followed, up to `event_len`, by
//! info records. Each info record starts with a 4-byte header (`info_type` u8, pad u8,
//! `len` u16, `len` including the header and padding). The file-handle records
//! (`FAN_EVENT_INFO_TYPE_FID`, `DFID`, `DFID_NAME`, `OLD_DFID_NAME`, `NEW_DFID_NAME`)
//! continue with the 8-byte fsid and a `struct file_handle` (`handle_bytes` u32,
//! `handle_type` i32, `handle_bytes` bytes of handle); the `*_NAME` kinds then carry a
//! NUL-terminated name. Events are walked by `event_len` and records by `len`, never by
//! fixed sizes; every length is checked against what is left before it is used. The
//! parser never panics and never reads outside the buffer: a malformed event ends the
//! parse with an error (its `event_len` cannot be trusted to find the next one).

/// `FANOTIFY_METADATA_VERSION`.
pub(crate) const METADATA_VERSION: u8 = 3;
/// Size of `struct fanotify_event_metadata`.
pub(crate) const METADATA_LEN: usize = 24;
/// Info record types (`FAN_EVENT_INFO_TYPE_*`).
pub(crate) const INFO_FID: u8 = 1;
pub(crate) const INFO_DFID_NAME: u8 = 2;
pub(crate) const INFO_DFID: u8 = 3;
pub(crate) const INFO_OLD_DFID_NAME: u8 = 10;
pub(crate) const INFO_NEW_DFID_NAME: u8 = 12;

/// One file-handle info record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fid<'a> {
    /// `FAN_EVENT_INFO_TYPE_*`.
    pub kind: u8,
    /// `__kernel_fsid_t` as raw bytes.
    pub fsid: [u8; 8],
    pub handle_type: i32,
    pub handle: &'a [u8],
    /// The entry name (for the `*_NAME` kinds); `.` for events on the directory itself.
    pub name: Option<&'a [u8]>,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event<'a> {
    pub mask: u64,
    pub fd: i32,
    pub pid: i32,
    pub fids: Vec<Fid<'a>>,
}

/// Why the buffer could not be parsed further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("event at offset {offset}: {what}")]
    Bad { offset: usize, what: &'static str },
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Iterator over the events of one buffer.
pub(crate) struct Events<'a> {
    buf: &'a [u8],
    offset: usize,
    failed: bool,
}

/// Parses the events in `buf` (the bytes one `read` returned).
pub(crate) fn events(buf: &[u8]) -> Events<'_> {
    Events {
        buf,
        offset: 0,
        failed: false,
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = Result<Event<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.offset >= self.buf.len() {
            return None;
        }
        let r = parse_one(self.buf, self.offset);
        match &r {
            Ok((_, len)) => self.offset += len,
            Err(_) => self.failed = true,
        }
        Some(r.map(|(e, _)| e))
    }
}

fn parse_one(buf: &[u8], offset: usize) -> Result<(Event<'_>, usize), ParseError> {
    let bad = |what| ParseError::Bad { offset, what };
    let rest = buf.get(offset..).ok_or(bad("offset out of range"))?;
    if rest.len() < METADATA_LEN {
        return Err(bad("truncated metadata"));
    }
    let event_len = u32_at(rest, 0).ok_or(bad("truncated metadata"))? as usize;
    let vers = rest[4];
    let metadata_len = u16_at(rest, 6).ok_or(bad("truncated metadata"))? as usize;
    if vers != METADATA_VERSION {
        return Err(bad("unknown metadata version"));
    }
    if event_len < METADATA_LEN || event_len > rest.len() {
        return Err(bad("event length out of range"));
    }
    if metadata_len < METADATA_LEN || metadata_len > event_len {
        return Err(bad("metadata length out of range"));
    }
    let ev = &rest[..event_len];
    let mask = u64_at(ev, 8).ok_or(bad("truncated metadata"))?;
    let fd = i32_at(ev, 16).ok_or(bad("truncated metadata"))?;
    let pid = i32_at(ev, 20).ok_or(bad("truncated metadata"))?;
    let mut fids = Vec::new();
    let mut p = metadata_len;
    while p < event_len {
        let rec_rest = &ev[p..];
        if rec_rest.len() < 4 {
            return Err(bad("truncated info header"));
        }
        let kind = rec_rest[0];
        let len = u16_at(rec_rest, 2).ok_or(bad("truncated info header"))? as usize;
        if len < 4 || len > rec_rest.len() {
            return Err(bad("info length out of range"));
        }
        let rec = &rec_rest[..len];
        match kind {
            INFO_FID | INFO_DFID | INFO_DFID_NAME | INFO_OLD_DFID_NAME | INFO_NEW_DFID_NAME => {
                if rec.len() < 4 + 8 + 8 {
                    return Err(bad("truncated file handle record"));
                }
                let mut fsid = [0u8; 8];
                fsid.copy_from_slice(&rec[4..12]);
                let hb = u32_at(rec, 12).ok_or(bad("truncated file handle"))? as usize;
                let handle_type = i32_at(rec, 16).ok_or(bad("truncated file handle"))?;
                let handle = rec
                    .get(20..)
                    .and_then(|r| r.get(..hb))
                    .ok_or(bad("file handle longer than its record"))?;
                let after = &rec[20 + handle.len()..];
                let name = match kind {
                    INFO_DFID_NAME | INFO_OLD_DFID_NAME | INFO_NEW_DFID_NAME => {
                        let nul = after
                            .iter()
                            .position(|&b| b == 0)
                            .ok_or(bad("name without terminating NUL"))?;
                        Some(&after[..nul])
                    }
                    _ => None,
                };
                fids.push(Fid {
                    kind,
                    fsid,
                    handle_type,
                    handle,
                    name,
                });
            }
            _ => {} // other info (pidfd, error, ...): known length, not needed
        }
        p += len;
    }
    Ok((
        Event {
            mask,
            fd,
            pid,
            fids,
        },
        event_len,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// (kind, fsid, handle type, handle, name) of one info record.
    pub(crate) type FidSpec<'a> = (u8, [u8; 8], i32, &'a [u8], Option<&'a [u8]>);

    /// Encodes one event the way the kernel lays it out (test helper).
    pub(crate) fn encode(out: &mut Vec<u8>, mask: u64, fids: &[FidSpec<'_>]) {
        let start = out.len();
        out.extend_from_slice(&0u32.to_ne_bytes());
        out.push(METADATA_VERSION);
        out.push(0);
        out.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        out.extend_from_slice(&mask.to_ne_bytes());
        out.extend_from_slice(&(-1i32).to_ne_bytes());
        out.extend_from_slice(&1234i32.to_ne_bytes());
        for (kind, fsid, ht, handle, name) in fids {
            let rs = out.len();
            out.push(*kind);
            out.push(0);
            out.extend_from_slice(&0u16.to_ne_bytes());
            out.extend_from_slice(fsid);
            out.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
            out.extend_from_slice(&ht.to_ne_bytes());
            out.extend_from_slice(handle);
            if let Some(n) = name {
                out.extend_from_slice(n);
                out.push(0);
            }
            #[allow(clippy::manual_is_multiple_of)] // is_multiple_of needs Rust 1.87
            while (out.len() - rs) % 4 != 0 {
                out.push(0);
            }
            let l = (out.len() - rs) as u16;
            out[rs + 2..rs + 4].copy_from_slice(&l.to_ne_bytes());
        }
        let l = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&l.to_ne_bytes());
    }

    /// xorshift64*: deterministic pseudo-random bytes without a dependency.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                self.next() % n
            }
        }
    }

    #[test]
    fn round_trip_of_kernel_layout() {
        let mut buf = Vec::new();
        let fsid = [1, 2, 3, 4, 5, 6, 7, 8];
        encode(
            &mut buf,
            0x100,
            &[(INFO_DFID_NAME, fsid, 1, &[9; 8], Some(b"new\xfffile"))],
        );
        encode(
            &mut buf,
            0x4000_0004,
            &[(INFO_DFID_NAME, fsid, 1, &[7; 8], Some(b"."))],
        );
        encode(&mut buf, 0x4000, &[]);
        encode(
            &mut buf,
            0x2,
            &[
                (INFO_DFID, fsid, 2, &[1; 12], None),
                (INFO_FID, fsid, 2, &[2; 12], None),
            ],
        );
        let evs: Vec<_> = events(&buf).collect::<Result<_, _>>().expect("parse");
        assert_eq!(evs.len(), 4);
        assert_eq!(evs[0].mask, 0x100);
        assert_eq!(evs[0].fids[0].name, Some(&b"new\xfffile"[..]));
        assert_eq!(evs[0].fids[0].handle, &[9; 8]);
        assert_eq!(evs[0].fids[0].fsid, fsid);
        assert_eq!(evs[1].fids[0].name, Some(&b"."[..]));
        assert!(evs[2].fids.is_empty());
        assert_eq!(evs[3].fids.len(), 2);
        assert_eq!(evs[3].fids[1].kind, INFO_FID);
        assert_eq!(evs[3].fids[1].name, None);
        assert_eq!(evs[0].pid, 1234);
        assert_eq!(evs[0].fd, -1);
    }

    #[test]
    fn malformed_lengths_are_errors_not_panics() {
        let mut good = Vec::new();
        encode(
            &mut good,
            0x100,
            &[(INFO_DFID_NAME, [0; 8], 1, &[9; 8], Some(b"x"))],
        );
        // event_len larger than the buffer
        let mut b = good.clone();
        b[0..4].copy_from_slice(&(good.len() as u32 + 4).to_ne_bytes());
        assert!(matches!(events(&b).next(), Some(Err(_))));
        // event_len smaller than the metadata
        let mut b = good.clone();
        b[0..4].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(events(&b).next(), Some(Err(_))));
        // wrong version
        let mut b = good.clone();
        b[4] = 2;
        assert!(matches!(events(&b).next(), Some(Err(_))));
        // handle_bytes beyond the record
        let mut b = good.clone();
        b[24 + 12..24 + 16].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(matches!(events(&b).next(), Some(Err(_))));
        // info len 0 (would loop forever if trusted)
        let mut b = good.clone();
        b[24 + 2..24 + 4].copy_from_slice(&0u16.to_ne_bytes());
        assert!(matches!(events(&b).next(), Some(Err(_))));
        // name without NUL: cut the record right after the name
        let mut b = Vec::new();
        encode(
            &mut b,
            0x100,
            &[(INFO_DFID_NAME, [0; 8], 1, &[9; 8], Some(b"abc"))],
        );
        let name_end = 24 + 20 + 8 + 3;
        b.truncate(name_end);
        let l = b.len() as u32;
        b[0..4].copy_from_slice(&l.to_ne_bytes());
        let il = (b.len() - 24) as u16;
        b[26..28].copy_from_slice(&il.to_ne_bytes());
        assert!(matches!(events(&b).next(), Some(Err(_))));
        // truncated buffer: every prefix parses the complete events and then errs or ends
        let mut two = good.clone();
        two.extend_from_slice(&good);
        for cut in 0..two.len() {
            let results: Vec<_> = events(&two[..cut]).collect();
            let oks = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(oks, cut / good.len(), "cut {cut}");
        }
    }

    #[test]
    fn random_buffers_never_panic_and_stay_in_bounds() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut valid = Vec::new();
        for i in 0..20u8 {
            encode(
                &mut valid,
                1 << (i % 16),
                &[(INFO_DFID_NAME, [i; 8], 1, &[i; 8], Some(&[b'a' + i; 3][..]))],
            );
        }
        for round in 0..20_000 {
            let mut buf: Vec<u8> = if round % 2 == 0 {
                // mutate a valid buffer
                let mut b = valid.clone();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(b.len() as u64) as usize;
                    b[at] = rng.next() as u8;
                }
                let cut = rng.below(b.len() as u64 + 1) as usize;
                b.truncate(cut);
                b
            } else {
                let n = rng.below(512) as usize;
                (0..n).map(|_| rng.next() as u8).collect()
            };
            if round % 7 == 0 && buf.len() >= 8 {
                buf[4] = METADATA_VERSION; // reach deeper into the parser
            }
            let range = buf.as_ptr_range();
            for r in events(&buf) {
                let Ok(e) = r else { break };
                for f in &e.fids {
                    let hr = f.handle.as_ptr_range();
                    assert!(range.start <= hr.start && hr.end <= range.end);
                    if let Some(n) = f.name {
                        let nr = n.as_ptr_range();
                        assert!(range.start <= nr.start && nr.end <= range.end);
                        assert!(!n.contains(&0));
                    }
                }
            }
        }
    }
}
