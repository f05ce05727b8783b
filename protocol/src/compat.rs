//! Compat flags and checksum/compression negotiation.
//! Mirrors `compat.c: setup_protocol()`, `negotiate_the_strings()`.

use crate::error::DecodeResult;
use crate::wire::{put_vstring, Reader};

/// `CF_INC_RECURSE`
pub const CF_INC_RECURSE: u32 = 1 << 0;
/// `CF_SYMLINK_TIMES`
pub const CF_SYMLINK_TIMES: u32 = 1 << 1;
/// `CF_SYMLINK_ICONV`
pub const CF_SYMLINK_ICONV: u32 = 1 << 2;
/// `CF_SAFE_FLIST`
pub const CF_SAFE_FLIST: u32 = 1 << 3;
/// `CF_AVOID_XATTR_OPTIM`
pub const CF_AVOID_XATTR_OPTIM: u32 = 1 << 4;
/// `CF_CHKSUM_SEED_FIX`
pub const CF_CHKSUM_SEED_FIX: u32 = 1 << 5;
/// `CF_INPLACE_PARTIAL_DIR`
pub const CF_INPLACE_PARTIAL_DIR: u32 = 1 << 6;
/// `CF_VARINT_FLIST_FLAGS`
pub const CF_VARINT_FLIST_FLAGS: u32 = 1 << 7;
/// `CF_ID0_NAMES`
pub const CF_ID0_NAMES: u32 = 1 << 8;

/// Checksum names we offer, strongest first (`valid_checksums_items[]`),
/// plus `none` as a server does.
pub const OUR_CHECKSUMS: &str = "xxh128 xxh3 xxh64 md5 md4 sha1 none";
/// Compression names we offer (`valid_compressions_items[]`), plus `none`.
pub const OUR_COMPRESSIONS: &str = "zstd lz4 zlibx zlib none";

/// Compute the compat flags a server sends, mirroring `compat.c:
/// setup_protocol()` (am_server branch): `CF_SYMLINK_TIMES` and
/// `CF_SYMLINK_ICONV` describe the server build and are always set (a
/// stock Linux build has both); every other bit needs the client's letter
/// in its `-e` capability string. `allow_inc_recurse` lets the caller
/// refuse incremental recursion (it also needs the client's `i`).
pub fn server_compat_flags(capabilities: &[u8], allow_inc_recurse: bool) -> u32 {
    let has = |c: u8| capabilities.contains(&c);
    let mut f = CF_SYMLINK_TIMES | CF_SYMLINK_ICONV;
    if allow_inc_recurse && has(b'i') {
        f |= CF_INC_RECURSE;
    }
    if has(b'f') {
        f |= CF_SAFE_FLIST;
    }
    if has(b'x') {
        f |= CF_AVOID_XATTR_OPTIM;
    }
    if has(b'C') {
        f |= CF_CHKSUM_SEED_FIX;
    }
    if has(b'I') {
        f |= CF_INPLACE_PARTIAL_DIR;
    }
    if has(b'v') {
        f |= CF_VARINT_FLIST_FLAGS;
    }
    if has(b'u') {
        f |= CF_ID0_NAMES;
    }
    f
}

/// Compat flags stock sends when the client's arguments were refused:
/// `setup_protocol()` runs before the capability string was parsed, so only
/// the build bits are set (observed `06` on the wire).
pub const REFUSED_ARGS_COMPAT_FLAGS: u32 = CF_SYMLINK_TIMES | CF_SYMLINK_ICONV;

/// Encode our negotiation list as a vstring.
pub fn put_name_list(out: &mut Vec<u8>, list: &str) {
    put_vstring(out, list.as_bytes());
}

/// Read a peer's negotiation list (vstring of space-separated names).
pub fn read_name_list(r: &mut Reader<'_>, max_len: usize) -> DecodeResult<Vec<String>> {
    let s = r.vstring(max_len)?;
    Ok(s.split(|&b| b == b' ')
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).to_ascii_lowercase())
        .collect())
}

/// Pick the first name in the client's list that `supported` accepts
/// (the 3.2.7 rule: it can never disagree with the client's own choice,
/// which is its most-preferred name present in our list).
pub fn choose<'a>(client: &'a [String], ours: &str) -> Option<&'a str> {
    let ours: Vec<&str> = ours.split(' ').collect();
    client.iter().map(String::as_str).find(|c| *c != "none" && ours.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_match_observed_stock_values() {
        assert_eq!(server_compat_flags(b".iLsfxCIvu", true), 0x1FF);
        assert_eq!(server_compat_flags(b".LsfxCIvu", true), 0x1FE);
        assert_eq!(server_compat_flags(b".iLsfxCIvu", false), 0x1FE);
        // 3.0.x client: single-byte flags, no seed fix.
        assert_eq!(server_compat_flags(b".iLsf", false), CF_SYMLINK_TIMES | CF_SYMLINK_ICONV | CF_SAFE_FLIST);
        assert!(server_compat_flags(b".iLsfxC", true) < 0x80);
        assert_eq!(REFUSED_ARGS_COMPAT_FLAGS, 0x06);
    }

    #[test]
    fn choose_first_client_name_we_know() {
        let c: Vec<String> = ["xxh128", "xxh3", "md5"].iter().map(|s| s.to_string()).collect();
        assert_eq!(choose(&c, OUR_CHECKSUMS), Some("xxh128"));
        let c: Vec<String> = ["blake9", "md5"].iter().map(|s| s.to_string()).collect();
        assert_eq!(choose(&c, OUR_CHECKSUMS), Some("md5"));
        let c: Vec<String> = ["blake9"].iter().map(|s| s.to_string()).collect();
        assert_eq!(choose(&c, OUR_CHECKSUMS), None);
    }

    #[test]
    fn list_roundtrip() {
        let mut o = Vec::new();
        put_name_list(&mut o, OUR_CHECKSUMS);
        assert_eq!(o[0] as usize, OUR_CHECKSUMS.len());
        let names = read_name_list(&mut Reader::new(&o), 4095).unwrap();
        assert_eq!(names.len(), 7);
    }
}
