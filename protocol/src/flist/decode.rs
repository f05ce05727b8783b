//! The receiver's side of the file list, for tests, golden fixtures and
//! fuzzing. Mirrors `flist.c: recv_file_entry()` and the end-marker and
//! trailer handling of `recv_file_list()` / `uidlist.c: recv_id_list()`.
//!
//! Every length is checked against the bytes left and a limit before use;
//! a decoder call either consumes one complete item or leaves both the
//! reader and the decoder state untouched.

use super::encode::FlistOptions;
use super::entry::*;
use super::idlist::{decode_id_list, read_inline_name, DecodedIdList};
use crate::error::{DecodeError, DecodeResult};
use crate::limits::Limits;
use crate::wire::Reader;

/// Largest id list accepted by [`FlistDecoder::decode_trailer`].
pub const MAX_ID_LIST_ENTRIES: usize = 1 << 20;

/// One decoded entry, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedEntry {
    /// Full name.
    pub name: Vec<u8>,
    /// `st_mode` as sent.
    pub mode: u32,
    /// Size (0 for devices and specials whose rdev was read, like the receiver).
    pub size: i64,
    /// mtime seconds (read unsigned below protocol 30, as 3.2.7+ clients do).
    pub mtime: i64,
    /// mtime nanoseconds (`XMIT_MOD_NSEC`).
    pub mtime_nsec: u32,
    /// uid (the previous entry's when `XMIT_SAME_UID`).
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Device major (as decoded; specials carry the dummy value).
    pub rdev_major: u32,
    /// Device minor.
    pub rdev_minor: u32,
    /// Symlink target (with `-l`).
    pub link_target: Vec<u8>,
    /// The flags as received (after the second legacy byte is merged).
    pub flags: u32,
    /// Protocol >= 30: global index of the first entry of the hard-link
    /// group, for non-first members.
    pub hardlink_ref: Option<i32>,
    /// Protocol < 30 with `-H`: `(dev + 1, ino)` as sent.
    pub dev_ino: Option<(i64, i64)>,
    /// `-c` checksum bytes (also the zero filler of non-regular entries
    /// below protocol 28).
    pub checksum: Vec<u8>,
    /// Inline user name (`XMIT_USER_NAME_FOLLOWS`).
    pub user_name: Option<Vec<u8>>,
    /// Inline group name (`XMIT_GROUP_NAME_FOLLOWS`).
    pub group_name: Option<Vec<u8>>,
}

/// What follows the end marker of a non-incremental list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FlistTrailer {
    /// uid list, wire order (id 0 last when `CF_ID0_NAMES`).
    pub uid_names: DecodedIdList,
    /// gid list.
    pub gid_names: DecodedIdList,
    /// Protocol < 30: the int32 io_error (0 otherwise).
    pub io_error: i32,
}

/// The statics of `recv_file_entry()`.
#[derive(Debug, Clone, Default)]
struct RecvState {
    mode: u32,
    mtime: i64,
    uid: u32,
    gid: u32,
    rdev_major: u32,
    /// Protocol 27: full previous rdev.
    rdev: u64,
    /// Protocols 27-29: previous hard-link dev as sent.
    dev: i64,
    lastname: Vec<u8>,
}

enum Item {
    End(i32),
    Entry(OwnedEntry),
}

/// Stateful decoder for the file lists of one connection.
#[derive(Debug)]
pub struct FlistDecoder {
    opts: FlistOptions,
    limits: Limits,
    st: RecvState,
    ndx_start: i32,
    list: Vec<OwnedEntry>,
    io_error: i32,
}

impl FlistDecoder {
    /// A fresh decoder with default [`Limits`]. The first list starts at
    /// index 1 with incremental recursion, 0 otherwise.
    pub fn new(opts: FlistOptions) -> Self {
        FlistDecoder::with_limits(opts, Limits::default())
    }

    /// A fresh decoder with the given limits (`max_path_len` bounds names
    /// and symlink targets, like MAXPATHLEN).
    pub fn with_limits(opts: FlistOptions, limits: Limits) -> Self {
        let ndx_start = if opts.inc_recurse_active() { 1 } else { 0 };
        FlistDecoder {
            opts,
            limits,
            st: RecvState::default(),
            ndx_start,
            list: Vec::new(),
            io_error: 0,
        }
    }

    /// Begin a new list with the given `ndx_start` (incremental recursion).
    /// The "previous entry" state carries over, as in rsync.
    pub fn start_list(&mut self, ndx_start: i32) {
        self.ndx_start = ndx_start;
        self.list.clear();
    }

    /// `ndx_start` of the current list.
    pub fn ndx_start(&self) -> i32 {
        self.ndx_start
    }

    /// Entries decoded so far in the current list, in transmission order.
    pub fn entries(&self) -> &[OwnedEntry] {
        &self.list
    }

    /// io_error bits reported by end markers so far (masked with
    /// `IOERR_VALID_MASK`).
    pub fn io_error(&self) -> i32 {
        self.io_error
    }

    /// Decode the next entry; `Ok(None)` is the end-of-list marker (its
    /// io_error, if any, is merged into [`io_error`](Self::io_error)).
    pub fn decode_entry(&mut self, r: &mut Reader) -> DecodeResult<Option<OwnedEntry>> {
        let mut rr = r.clone();
        let mut st = self.st.clone();
        let item = self.decode_item(&mut rr, &mut st)?;
        *r = rr;
        self.st = st;
        match item {
            Item::End(err) => {
                self.io_error |= err & (IOERR_GENERAL | IOERR_VANISHED | IOERR_DEL_LIMIT);
                Ok(None)
            }
            Item::Entry(e) => {
                self.list.push(e.clone());
                Ok(Some(e))
            }
        }
    }

    /// Decode what follows the end marker of a non-incremental list: id
    /// lists (when the options say they are sent) and, below protocol 30,
    /// the io_error int.
    pub fn decode_trailer(&mut self, r: &mut Reader) -> DecodeResult<FlistTrailer> {
        let mut rr = r.clone();
        let p = self.opts.protocol;
        let mut t = FlistTrailer::default();
        if self.opts.sends_id_lists() {
            let id0 = self.opts.id0_names_active();
            if self.opts.preserve_uid {
                t.uid_names = decode_id_list(&mut rr, p, id0, MAX_ID_LIST_ENTRIES)?;
            }
            if self.opts.preserve_gid {
                t.gid_names = decode_id_list(&mut rr, p, id0, MAX_ID_LIST_ENTRIES)?;
            }
        }
        if p < 30 {
            t.io_error = rr.i32()?;
        }
        *r = rr;
        Ok(t)
    }

    /// Flags and end marker (`recv_file_list()`), then the entry.
    fn decode_item(&self, r: &mut Reader, st: &mut RecvState) -> DecodeResult<Item> {
        let p = self.opts.protocol;
        let flags: u32 = if self.opts.varint_flags_active() {
            let f = r.varint()?;
            if f == 0 {
                return Ok(Item::End(r.varint()?));
            }
            f as u32
        } else {
            let b = r.u8()?;
            if b == 0 {
                return Ok(Item::End(0));
            }
            let mut f = b as u32;
            if p >= 28 && f & XMIT_EXTENDED_FLAGS != 0 {
                f |= (r.u8()? as u32) << 8;
            }
            if f == XMIT_EXTENDED_FLAGS | XMIT_IO_ERROR_ENDLIST {
                if !self.opts.safe_flist_active() {
                    return Err(DecodeError::invalid(
                        "flist flags",
                        format!("invalid flist flag: {f:#x}"),
                    ));
                }
                return Ok(Item::End(r.varint()?));
            }
            f
        };
        self.decode_body(r, st, flags).map(Item::Entry)
    }

    /// Mirrors `flist.c: recv_file_entry()`.
    fn decode_body(
        &self,
        r: &mut Reader,
        st: &mut RecvState,
        flags: u32,
    ) -> DecodeResult<OwnedEntry> {
        let p = self.opts.protocol;
        let o = &self.opts;
        let max_path = self.limits.max_path_len;

        // Name.
        let l1 = if flags & XMIT_SAME_NAME != 0 {
            r.u8()? as usize
        } else {
            0
        };
        let l2 = if flags & XMIT_LONG_NAME != 0 {
            let v = r.varint30(p)?;
            usize::try_from(v)
                .map_err(|_| DecodeError::invalid("flist name", "negative name length"))?
        } else {
            r.u8()? as usize
        };
        if l1 > st.lastname.len() {
            return Err(DecodeError::invalid(
                "flist name",
                "prefix longer than previous name",
            ));
        }
        if l2 >= max_path.saturating_sub(l1) {
            return Err(DecodeError::invalid(
                "flist name",
                format!("overflow: l1={l1} l2={l2}"),
            ));
        }
        let suffix = r.bytes(l2)?;
        let mut name = Vec::with_capacity(l1 + l2);
        name.extend_from_slice(&st.lastname[..l1]);
        name.extend_from_slice(suffix);
        check_name(&name)?;
        st.lastname.clear();
        st.lastname.extend_from_slice(&name);

        let mut e = OwnedEntry {
            name,
            flags,
            ..OwnedEntry::default()
        };

        // Hard-link reference (protocol >= 30).
        if p >= 30 && flags & XMIT_HLINKED != 0 && flags & XMIT_HLINK_FIRST == 0 {
            let idx = r.varint()?;
            let end = self.ndx_start.saturating_add(self.list.len() as i32);
            if idx < 0 || idx >= end {
                return Err(DecodeError::invalid(
                    "flist hard link",
                    format!("hard-link reference out of range: {idx} ({end})"),
                ));
            }
            e.hardlink_ref = Some(idx);
            if idx >= self.ndx_start {
                let first = &self.list[(idx - self.ndx_start) as usize];
                e.size = first.size;
                e.mtime = first.mtime;
                e.mtime_nsec = first.mtime_nsec;
                e.mode = first.mode;
                st.mtime = first.mtime;
                st.mode = first.mode;
                if o.preserve_uid {
                    st.uid = first.uid;
                }
                if o.preserve_gid {
                    st.gid = first.gid;
                }
                e.uid = st.uid;
                e.gid = st.gid;
                if o.preserve_devices && mode_is_device(e.mode) {
                    st.rdev_major = first.rdev_major;
                    e.rdev_major = first.rdev_major;
                    e.rdev_minor = first.rdev_minor;
                }
                if o.preserve_links && mode_is_lnk(e.mode) {
                    e.link_target = first.link_target.clone();
                }
                if o.checksum_len.is_some() && mode_is_reg(e.mode) {
                    e.checksum = first.checksum.clone();
                }
                check_entry(&e)?;
                return Ok(e);
            }
        }

        e.size = r.varlong30(3, p)?;
        if flags & XMIT_SAME_TIME == 0 {
            st.mtime = if p >= 30 {
                r.varlong(4)?
            } else {
                r.u32()? as i64
            };
        }
        e.mtime = st.mtime;
        if flags & XMIT_MOD_NSEC != 0 {
            let ns = r.varint()?;
            if ns < 0 || ns as u32 > MAX_WIRE_NSEC {
                return Err(DecodeError::invalid(
                    "flist mtime",
                    format!("nsec out of range: {ns}"),
                ));
            }
            e.mtime_nsec = ns as u32;
        }
        if flags & XMIT_SAME_MODE == 0 {
            st.mode = r.i32()? as u32;
            if FileType::from_mode(st.mode).is_none() {
                return Err(DecodeError::invalid(
                    "flist mode",
                    format!("invalid file mode {:#o}", st.mode),
                ));
            }
        }
        e.mode = st.mode;

        if o.preserve_uid && flags & XMIT_SAME_UID == 0 {
            if p < 30 {
                st.uid = r.i32()? as u32;
            } else {
                st.uid = r.varint()? as u32;
                if flags & XMIT_USER_NAME_FOLLOWS != 0 {
                    e.user_name = Some(read_inline_name(r)?);
                }
            }
        }
        e.uid = st.uid;
        if o.preserve_gid && flags & XMIT_SAME_GID == 0 {
            if p < 30 {
                st.gid = r.i32()? as u32;
            } else {
                st.gid = r.varint()? as u32;
                if flags & XMIT_GROUP_NAME_FOLLOWS != 0 {
                    e.group_name = Some(read_inline_name(r)?);
                }
            }
        }
        e.gid = st.gid;

        let mode = e.mode;
        if (o.preserve_devices && mode_is_device(mode))
            || (o.preserve_specials && mode_is_special(mode) && p < 31)
        {
            if p < 28 {
                if flags & XMIT_SAME_RDEV_pre28 == 0 {
                    // (dev_t)read_int(): sign-extended.
                    st.rdev = r.i32()? as i64 as u64;
                }
                e.rdev_major = linux_major(st.rdev);
                e.rdev_minor = linux_minor(st.rdev);
            } else {
                if flags & XMIT_SAME_RDEV_MAJOR == 0 {
                    st.rdev_major = r.varint30(p)? as u32;
                }
                let minor = if p >= 30 {
                    r.varint()? as u32
                } else if flags & XMIT_RDEV_MINOR_8_pre30 != 0 {
                    r.u8()? as u32
                } else {
                    r.i32()? as u32
                };
                e.rdev_major = st.rdev_major;
                e.rdev_minor = minor;
            }
            e.size = 0;
        } else if mode_is_device(mode) {
            e.size = 0;
        } else if p < 28 {
            st.rdev = 0;
        }

        if o.preserve_links && mode_is_lnk(mode) {
            let len = r.varint30(p)?;
            if len < 0 || len as usize >= max_path {
                return Err(DecodeError::invalid(
                    "flist symlink",
                    format!("overflow: linkname_len={len}"),
                ));
            }
            e.link_target = r.bytes(len as usize)?.to_vec();
        }

        let mut hl_flags = flags;
        if o.preserve_hard_links {
            if p < 28 && mode_is_reg(mode) {
                hl_flags |= XMIT_HLINKED;
            }
            if p < 30 && hl_flags & XMIT_HLINKED != 0 {
                if p < 28 || hl_flags & XMIT_SAME_DEV_pre30 == 0 {
                    st.dev = r.longint()?;
                }
                let ino = r.longint()?;
                e.dev_ino = Some((st.dev, ino));
            }
        }

        if let Some(len) = o.checksum_len {
            if mode_is_reg(mode) || p < 28 {
                e.checksum = r.bytes(len)?.to_vec();
            }
        }

        check_entry(&e)?;
        Ok(e)
    }
}

/// Name checks of `recv_file_entry()` (`clean_fname(...,
/// CFN_REFUSE_DOT_DOT_DIRS)`, no absolute names): no NUL, no `..`
/// component, no leading `/`.
fn check_name(name: &[u8]) -> DecodeResult<()> {
    if name.contains(&0) {
        return Err(DecodeError::invalid("flist name", "NUL byte in name"));
    }
    if name.first() == Some(&b'/') {
        return Err(DecodeError::invalid("flist name", "absolute name"));
    }
    if name.split(|&c| c == b'/').any(|c| c == b"..") {
        return Err(DecodeError::invalid("flist name", "unsafe pathname (..)"));
    }
    Ok(())
}

/// Whole-entry checks of `recv_file_entry()`.
fn check_entry(e: &OwnedEntry) -> DecodeResult<()> {
    if e.size < 0 {
        return Err(DecodeError::invalid(
            "flist size",
            "file-length is negative",
        ));
    }
    if e.name == b"." && !mode_is_dir(e.mode) {
        return Err(DecodeError::invalid(
            "flist entry",
            "non-directory transfer-root entry",
        ));
    }
    Ok(())
}
