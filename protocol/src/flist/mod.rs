//! File-list model: entries, ordering, encoding and id lists.
//!
//! The sender describes the tree as a sequence of entries (`flist.c:
//! send_file_entry()`), each introduced by a flags word (`XMIT_*`) that says
//! which attributes equal the previous entry's and are therefore left out.
//! That "previous entry" state lives for the whole connection: it is not
//! reset between the sub-lists of incremental recursion, and the receiver
//! mirrors it exactly, so a sender must encode every entry it sends, in
//! order, through one [`FlistEncoder`].
//!
//! A list ends with a marker (`write_end_of_flist()`): a zero flags value
//! (varint `0` + varint io_error, or a zero byte, or `04 10` + varint
//! io_error in the legacy encoding with a safe flist). A non-incremental list
//! is followed by the uid/gid name lists and, below protocol 30, an int32
//! io_error ([`FlistEncoder::encode_trailer`]).
//!
//! Both sides sort each list with [`order::f_name_cmp`]; file indexes refer
//! to sorted positions (`ndx_start` + position). Hard-link references at
//! protocol >= 30 instead use the *transmission* index.
//!
//! Under incremental recursion (protocol >= 30) the first list has
//! `ndx_start` 1 and holds the top-level entries; each later list holds the
//! children of one directory, is announced by `NDX_FLIST_OFFSET - dir_index`
//! and has `ndx_start` = previous `ndx_start` + previous length + 1. Names
//! travel inline (`XMIT_USER_NAME_FOLLOWS`) instead of in id lists.
//!
//! Modules: [`entry`] (the entry view, file types, `XMIT_*`), [`order`]
//! (sorting), [`encode`] (sender), [`decode`] (receiver, for tests and
//! fuzzing), [`idlist`] (uid/gid names).

pub mod decode;
pub mod encode;
pub mod entry;
pub mod idlist;
pub mod order;

pub use decode::{FlistDecoder, FlistTrailer, OwnedEntry};
pub use encode::{FlistEncoder, FlistOptions, IdNames, NoNames};
pub use entry::*;
pub use idlist::IdList;
pub use order::{child_cmp, f_name_cmp};
