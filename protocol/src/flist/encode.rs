//! The sender's file-list encoder. Mirrors `flist.c: send_file_entry()` and
//! `write_end_of_flist()`, plus the trailer of `send_file_list()` (id lists
//! from `uidlist.c: send_id_lists()` and the protocol < 30 io_error int).
//!
//! The encoder holds the connection-wide "previous entry" state (the statics
//! of `send_file_entry()`): it is never reset between lists, exactly as the
//! receiver's mirror state in `recv_file_entry()` is never reset.

use std::collections::HashMap;

use super::entry::*;
use super::idlist::{put_inline_name, IdList};
use crate::wire::{
    put_i32, put_longint, put_u16, put_u8, put_varint, put_varint30, put_varlong, put_varlong30,
};

/// Options that shape the file-list encoding of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlistOptions {
    /// Negotiated protocol version (27..=32).
    pub protocol: u8,
    /// `CF_VARINT_FLIST_FLAGS` negotiated (protocol >= 30 only).
    pub varint_flags: bool,
    /// `-o`.
    pub preserve_uid: bool,
    /// `-g`.
    pub preserve_gid: bool,
    /// `-l`.
    pub preserve_links: bool,
    /// `-D` (devices).
    pub preserve_devices: bool,
    /// `-D` (specials).
    pub preserve_specials: bool,
    /// `-H`.
    pub preserve_hard_links: bool,
    /// `Some(len)` with `-c`: whole-file checksum length (`flist_csum_len`).
    pub checksum_len: Option<usize>,
    /// Incremental recursion (protocol >= 30): names travel inline
    /// (`XMIT_USER_NAME_FOLLOWS`), no id lists.
    pub inc_recurse: bool,
    /// `CF_ID0_NAMES` (protocol >= 30): the id-list terminator carries id 0's name.
    pub id0_names: bool,
    /// Client `--numeric-ids`: no names at all, no id lists sent.
    pub numeric_ids: bool,
    /// `use_safe_inc_flist`: protocol >= 31 or `CF_SAFE_FLIST`; allows the
    /// io_error in the end marker.
    pub safe_flist: bool,
}

impl Default for FlistOptions {
    /// Protocol 31, legacy flags, nothing preserved.
    fn default() -> Self {
        FlistOptions {
            protocol: 31,
            varint_flags: false,
            preserve_uid: false,
            preserve_gid: false,
            preserve_links: false,
            preserve_devices: false,
            preserve_specials: false,
            preserve_hard_links: false,
            checksum_len: None,
            inc_recurse: false,
            id0_names: false,
            numeric_ids: false,
            safe_flist: false,
        }
    }
}

impl FlistOptions {
    /// Varint flag encoding in effect (needs protocol >= 30).
    pub fn varint_flags_active(&self) -> bool {
        self.varint_flags && self.protocol >= 30
    }

    /// Incremental recursion in effect (needs protocol >= 30).
    pub fn inc_recurse_active(&self) -> bool {
        self.inc_recurse && self.protocol >= 30
    }

    /// `CF_ID0_NAMES` in effect (compat flags exist from protocol 30).
    pub fn id0_names_active(&self) -> bool {
        self.id0_names && self.protocol >= 30
    }

    /// `use_safe_inc_flist` in effect (protocol >= 31, or 30 with `CF_SAFE_FLIST`).
    pub fn safe_flist_active(&self) -> bool {
        self.protocol >= 31 || (self.safe_flist && self.protocol >= 30)
    }

    /// Whether id lists follow a non-incremental list (`send_file_list()`:
    /// `numeric_ids <= 0 && !inc_recurse`).
    pub fn sends_id_lists(&self) -> bool {
        !self.numeric_ids && !self.inc_recurse_active()
    }
}

/// Maps ids to names for the id lists and inline names (`uidlist.c:
/// uid_to_user()` / `gid_to_group()`). Names longer than 255 bytes are cut.
pub trait IdNames {
    /// Name of user `uid`, if known.
    fn user_name(&self, uid: u32) -> Option<Vec<u8>>;
    /// Name of group `gid`, if known.
    fn group_name(&self, gid: u32) -> Option<Vec<u8>>;
}

/// An [`IdNames`] that knows no names (the client keeps numeric ids). Also
/// what a daemon module with `numeric ids = yes` should use.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNames;

impl IdNames for NoNames {
    fn user_name(&self, _uid: u32) -> Option<Vec<u8>> {
        None
    }
    fn group_name(&self, _gid: u32) -> Option<Vec<u8>> {
        None
    }
}

/// The attributes that feed the "same as previous" comparisons.
#[derive(Debug, Clone, Copy)]
struct Attrs {
    mode: u32,
    size: i64,
    mtime: i64,
    nsec: u32,
    uid: u32,
    gid: u32,
    rdev_major: u32,
    rdev_minor: u32,
}

impl Attrs {
    fn of(e: &FileEntry<'_>) -> Attrs {
        let size = if mode_is_device(e.mode) || mode_is_special(e.mode) {
            0
        } else {
            e.size
        };
        Attrs {
            mode: e.mode,
            size,
            mtime: e.mtime,
            nsec: e.mtime_nsec,
            uid: e.uid,
            gid: e.gid,
            rdev_major: e.rdev_major,
            rdev_minor: e.rdev_minor,
        }
    }
}

/// First occurrence of a hard-link group (protocol >= 30).
#[derive(Debug, Clone, Copy)]
struct HlinkFirst {
    ndx: i32,
    attrs: Attrs,
}

/// Stateful file-list encoder for one connection (all lists of it).
#[derive(Debug)]
pub struct FlistEncoder {
    opts: FlistOptions,
    // Statics of send_file_entry(): the previous entry sent.
    mode: u32,
    mtime: i64,
    uid: u32,
    gid: u32,
    /// Protocol 27: the full previous rdev (`dev_t`).
    rdev: u64,
    rdev_major: u32,
    /// Protocols 27-29: previous hard-link dev, stored as sent (dev + 1).
    hl_dev_wire: i64,
    lastname: Vec<u8>,
    /// Protocol >= 30: (dev, ino) -> first occurrence (`hlink.c: idev_find()`).
    hlinks: HashMap<(u64, u64), HlinkFirst>,
    /// Protocol 27 with `-H`: inode counter for regular files without links.
    synth_ino: i64,
    uids: IdList,
    gids: IdList,
}

impl FlistEncoder {
    /// A fresh encoder: previous mode/mtime/ids/rdev all zero, no previous name.
    pub fn new(opts: FlistOptions) -> Self {
        FlistEncoder {
            opts,
            mode: 0,
            mtime: 0,
            uid: 0,
            gid: 0,
            rdev: 0,
            rdev_major: 0,
            hl_dev_wire: 0,
            lastname: Vec::with_capacity(256),
            hlinks: HashMap::new(),
            synth_ino: 0,
            uids: IdList::new(),
            gids: IdList::new(),
        }
    }

    /// The options this encoder was built with.
    pub fn options(&self) -> &FlistOptions {
        &self.opts
    }

    /// Ids recorded so far (`uidlist.c: uidlist`).
    pub fn uid_list(&self) -> &IdList {
        &self.uids
    }

    /// Gids recorded so far (`uidlist.c: gidlist`).
    pub fn gid_list(&self) -> &IdList {
        &self.gids
    }

    /// Append one entry. Mirrors `flist.c: send_file_entry()`.
    ///
    /// `ndx` is the entry's global index in transmission order
    /// (`ndx_start` of its list + its position in that list), used for
    /// hard-link first-occurrence indexes at protocol >= 30.
    /// `list_ndx_start` is the `ndx_start` of the list being sent (0 without
    /// incremental recursion).
    ///
    /// Differences from stock, all invisible on a consistent tree: a
    /// hard-linked entry abbreviated to its index (first occurrence in the
    /// same list) updates the "previous" state from the first occurrence,
    /// as the receiver does; device/special sizes are sent as 0 like
    /// `make_file()`; with `-H` at protocol 27, regular files without links
    /// get a unique dev/ino pair (dev+1 = 0, running inode number).
    pub fn encode_entry(
        &mut self,
        out: &mut Vec<u8>,
        e: &FileEntry<'_>,
        ndx: i32,
        list_ndx_start: i32,
        names: &dyn IdNames,
    ) {
        let p = self.opts.protocol;

        // make_file(): which entries carry a (dev, ino).
        let hl: Option<(i64, i64)> = if !self.opts.preserve_hard_links {
            None
        } else if p >= 28 {
            if mode_is_dir(e.mode) {
                None
            } else {
                e.hardlink.map(|(d, i)| (d as i64, i as i64))
            }
        } else if mode_is_reg(e.mode) {
            Some(match e.hardlink {
                Some((d, i)) => (d as i64, i as i64),
                None => {
                    self.synth_ino += 1;
                    (-1, self.synth_ino)
                }
            })
        } else {
            None
        };

        let mut a = Attrs::of(e);
        let mut xflags: u32 = 0;
        let mut first_hlink_ndx: i32 = -1;
        if p >= 30 {
            if let (Some(_), Some(key)) = (hl, e.hardlink) {
                match self.hlinks.get(&key) {
                    Some(first) => {
                        first_hlink_ndx = first.ndx;
                        if first.ndx >= list_ndx_start {
                            // The receiver copies the first's attributes into
                            // its state; do the same so both stay in step.
                            a = first.attrs;
                        }
                    }
                    None => {
                        self.hlinks.insert(key, HlinkFirst { ndx, attrs: a });
                        xflags |= XMIT_HLINK_FIRST;
                    }
                }
            }
        }
        let abbreviated = first_hlink_ndx >= 0 && first_hlink_ndx >= list_ndx_start;

        let mode = a.mode;
        let is_dir = mode_is_dir(mode);
        let is_reg = mode_is_reg(mode);
        let is_dev = mode_is_device(mode);
        let is_special = mode_is_special(mode);

        if is_dir {
            if p >= 30 {
                xflags |= match (e.top_dir, e.no_content_dir) {
                    (true, false) => XMIT_TOP_DIR,
                    (false, false) => 0,
                    (true, true) => XMIT_TOP_DIR | XMIT_NO_CONTENT_DIR,
                    (false, true) => XMIT_NO_CONTENT_DIR,
                };
            } else if e.top_dir {
                xflags |= XMIT_TOP_DIR;
            }
        }

        if mode == self.mode {
            xflags |= XMIT_SAME_MODE;
        } else {
            self.mode = mode;
        }

        // rdev
        let mut rdev_out: Option<(u32, u32)> = None; // (major, minor) for proto >= 28
        if self.opts.preserve_devices && is_dev {
            if p < 28 {
                let rdev = linux_makedev(a.rdev_major, a.rdev_minor);
                if rdev == self.rdev {
                    xflags |= XMIT_SAME_RDEV_pre28;
                } else {
                    self.rdev = rdev;
                }
            } else {
                if a.rdev_major == self.rdev_major {
                    xflags |= XMIT_SAME_RDEV_MAJOR;
                } else {
                    self.rdev_major = a.rdev_major;
                }
                if p < 30 && a.rdev_minor <= 0xFF {
                    xflags |= XMIT_RDEV_MINOR_8_pre30;
                }
                rdev_out = Some((a.rdev_major, a.rdev_minor));
            }
        } else if self.opts.preserve_specials && is_special && p < 31 {
            if p < 28 {
                xflags |= XMIT_SAME_RDEV_pre28;
            } else {
                xflags |= XMIT_SAME_RDEV_MAJOR;
                if p < 30 {
                    xflags |= XMIT_RDEV_MINOR_8_pre30;
                }
                rdev_out = Some((self.rdev_major, 0));
            }
        } else if p < 28 {
            self.rdev = 0;
        }

        // uid / gid (the first entry always carries them: `*lastname`).
        let inc = self.opts.inc_recurse_active();
        let mut user_name: Option<&[u8]> = None;
        if !self.opts.preserve_uid || (a.uid == self.uid && !self.lastname.is_empty()) {
            xflags |= XMIT_SAME_UID;
        } else {
            self.uid = a.uid;
            if !self.opts.numeric_ids {
                let n = self.uids.add(a.uid, |id| names.user_name(id));
                if inc && n.is_some() {
                    xflags |= XMIT_USER_NAME_FOLLOWS;
                    user_name = n;
                }
            }
        }
        let mut group_name: Option<&[u8]> = None;
        if !self.opts.preserve_gid || (a.gid == self.gid && !self.lastname.is_empty()) {
            xflags |= XMIT_SAME_GID;
        } else {
            self.gid = a.gid;
            if !self.opts.numeric_ids {
                let n = self.gids.add(a.gid, |id| names.group_name(id));
                if inc && n.is_some() {
                    xflags |= XMIT_GROUP_NAME_FOLLOWS;
                    group_name = n;
                }
            }
        }

        if a.mtime == self.mtime {
            xflags |= XMIT_SAME_TIME;
        } else {
            self.mtime = a.mtime;
        }
        if p >= 31 && a.nsec != 0 && a.nsec <= MAX_WIRE_NSEC {
            xflags |= XMIT_MOD_NSEC;
        }

        // Hard links at protocol < 30: dev/ino after the attributes.
        let mut dev_ino_out: Option<(Option<i64>, i64)> = None;
        if let Some((dev, ino)) = hl {
            if p < 30 {
                let wire_dev = dev.wrapping_add(1);
                if p >= 28 && wire_dev == self.hl_dev_wire {
                    xflags |= XMIT_SAME_DEV_pre30;
                    dev_ino_out = Some((None, ino));
                } else {
                    self.hl_dev_wire = wire_dev;
                    dev_ino_out = Some((Some(wire_dev), ino));
                }
            }
            xflags |= XMIT_HLINKED;
        }

        // Name compression against the previous sent name.
        let name = e.name;
        let l1 = name
            .iter()
            .zip(self.lastname.iter())
            .take(255)
            .take_while(|(x, y)| x == y)
            .count();
        let l2 = name.len() - l1;
        if l1 > 0 {
            xflags |= XMIT_SAME_NAME;
        }
        if l2 > 255 {
            xflags |= XMIT_LONG_NAME;
        }

        // Flags, avoiding a value that reads as the end marker.
        if self.opts.varint_flags_active() {
            put_varint(
                out,
                if xflags != 0 {
                    xflags
                } else {
                    XMIT_EXTENDED_FLAGS
                } as i32,
            );
        } else if p >= 28 {
            if xflags == 0 && !is_dir {
                xflags |= XMIT_TOP_DIR;
            }
            if xflags & 0xFF00 != 0 || xflags == 0 {
                xflags |= XMIT_EXTENDED_FLAGS;
                put_u16(out, xflags as u16);
            } else {
                put_u8(out, xflags as u8);
            }
        } else {
            if xflags & 0xFF == 0 {
                xflags |= if is_dir { XMIT_LONG_NAME } else { XMIT_TOP_DIR };
            }
            put_u8(out, xflags as u8);
        }
        if xflags & XMIT_SAME_NAME != 0 {
            put_u8(out, l1 as u8);
        }
        if xflags & XMIT_LONG_NAME != 0 {
            put_varint30(out, l2 as i32, p);
        } else {
            put_u8(out, l2 as u8);
        }
        out.extend_from_slice(&name[l1..]);

        if first_hlink_ndx >= 0 {
            put_varint(out, first_hlink_ndx);
        }
        if !abbreviated {
            let rdev27 = self.rdev;
            put_attrs(
                &self.opts,
                out,
                AttrsOut {
                    xflags,
                    a: &a,
                    e,
                    user_name,
                    group_name,
                    rdev27,
                    rdev_out,
                    dev_ino_out,
                    is_reg,
                },
            );
        }

        self.lastname.clear();
        self.lastname.extend_from_slice(name);
    }

    /// End-of-list marker. Mirrors `flist.c: write_end_of_flist()` with the
    /// caller's decision folded in: `io_error` is reported in the marker only
    /// when it is non-zero and the safe flist is in effect. Pass 0 with
    /// `--ignore-errors`. Without the safe flist at protocol 30 the caller
    /// sends `MSG_IO_ERROR` itself; below 30 the error goes in
    /// [`encode_trailer`](Self::encode_trailer).
    pub fn encode_end(&mut self, out: &mut Vec<u8>, io_error: i32) {
        let send_io_error = io_error != 0 && self.opts.safe_flist_active();
        if self.opts.varint_flags_active() {
            put_varint(out, 0);
            put_varint(out, if send_io_error { io_error } else { 0 });
        } else if send_io_error {
            put_u16(out, (XMIT_EXTENDED_FLAGS | XMIT_IO_ERROR_ENDLIST) as u16);
            put_varint(out, io_error);
        } else {
            put_u8(out, 0);
        }
    }

    /// What follows the end marker of a non-incremental list
    /// (`send_file_list()`): the uid list (with `-o`), the gid list (with
    /// `-g`), both only without `--numeric-ids` and without incremental
    /// recursion, then for protocol < 30 the int32 io_error (pass 0 with
    /// `--ignore-errors`).
    pub fn encode_trailer(&mut self, out: &mut Vec<u8>, io_error: i32, names: &dyn IdNames) {
        let p = self.opts.protocol;
        if self.opts.sends_id_lists() {
            let id0 = self.opts.id0_names_active();
            if self.opts.preserve_uid {
                let n0 = if id0 { names.user_name(0) } else { None };
                self.uids.encode(out, p, id0, n0.as_deref());
            }
            if self.opts.preserve_gid {
                let n0 = if id0 { names.group_name(0) } else { None };
                self.gids.encode(out, p, id0, n0.as_deref());
            }
        }
        if p < 30 {
            put_i32(out, io_error);
        }
    }
}

/// Everything [`put_attrs`] writes for one entry.
struct AttrsOut<'x, 'e> {
    xflags: u32,
    a: &'x Attrs,
    e: &'x FileEntry<'e>,
    user_name: Option<&'x [u8]>,
    group_name: Option<&'x [u8]>,
    /// Protocol 27: the rdev to send.
    rdev27: u64,
    /// Protocol >= 28: (major, minor) to send.
    rdev_out: Option<(u32, u32)>,
    /// Protocol < 30 hard links: (dev + 1 unless same as before, ino).
    dev_ino_out: Option<(Option<i64>, i64)>,
    is_reg: bool,
}

/// Items 6-17 of the entry layout (size .. checksum), the part of
/// `send_file_entry()` after the name.
fn put_attrs(opts: &FlistOptions, out: &mut Vec<u8>, w: AttrsOut<'_, '_>) {
    let AttrsOut {
        xflags,
        a,
        e,
        user_name,
        group_name,
        rdev27,
        rdev_out,
        dev_ino_out,
        is_reg,
    } = w;
    let p = opts.protocol;
    put_varlong30(out, a.size, 3, p);
    if xflags & XMIT_SAME_TIME == 0 {
        if p >= 30 {
            put_varlong(out, a.mtime, 4);
        } else {
            put_i32(out, a.mtime as i32);
        }
    }
    if xflags & XMIT_MOD_NSEC != 0 {
        put_varint(out, a.nsec as i32);
    }
    if xflags & XMIT_SAME_MODE == 0 {
        put_i32(out, a.mode as i32);
    }
    if opts.preserve_uid && xflags & XMIT_SAME_UID == 0 {
        if p < 30 {
            put_i32(out, a.uid as i32);
        } else {
            put_varint(out, a.uid as i32);
            if xflags & XMIT_USER_NAME_FOLLOWS != 0 {
                put_inline_name(out, user_name.unwrap_or(b""));
            }
        }
    }
    if opts.preserve_gid && xflags & XMIT_SAME_GID == 0 {
        if p < 30 {
            put_i32(out, a.gid as i32);
        } else {
            put_varint(out, a.gid as i32);
            if xflags & XMIT_GROUP_NAME_FOLLOWS != 0 {
                put_inline_name(out, group_name.unwrap_or(b""));
            }
        }
    }
    let mode = a.mode;
    if (opts.preserve_devices && mode_is_device(mode))
        || (opts.preserve_specials && mode_is_special(mode) && p < 31)
    {
        if p < 28 {
            if xflags & XMIT_SAME_RDEV_pre28 == 0 {
                put_i32(out, rdev27 as i32);
            }
        } else if let Some((major, minor)) = rdev_out {
            if xflags & XMIT_SAME_RDEV_MAJOR == 0 {
                put_varint30(out, major as i32, p);
            }
            if p >= 30 {
                put_varint(out, minor as i32);
            } else if xflags & XMIT_RDEV_MINOR_8_pre30 != 0 {
                put_u8(out, minor as u8);
            } else {
                put_i32(out, minor as i32);
            }
        }
    }
    if opts.preserve_links && mode_is_lnk(mode) {
        put_varint30(out, e.link_target.len() as i32, p);
        out.extend_from_slice(e.link_target);
    }
    if let Some((dev, ino)) = dev_ino_out {
        if let Some(dev) = dev {
            put_longint(out, dev);
        }
        put_longint(out, ino);
    }
    if let Some(len) = opts.checksum_len {
        if is_reg || p < 28 {
            let sum = if is_reg {
                e.checksum.unwrap_or(b"")
            } else {
                b""
            };
            let n = sum.len().min(len);
            out.extend_from_slice(&sum[..n]);
            out.resize(out.len() + (len - n), 0);
        }
    }
}
