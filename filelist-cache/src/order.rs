//! Canonical order of the children of one directory.
//!
//! This is the order rsync's `f_name_cmp()` (flist.c) gives the entries of one directory
//! for protocol >= 29: all non-directories first, compared bytewise (`memcmp`, shorter
//! first), then all subdirectories, compared as if each name had a `/` appended (so
//! `a.b` sorts before `a`, because `.` < `/`). Combined with the depth-first pre-order
//! storage (each directory, then its non-directories, then each subdirectory followed by
//! its whole subtree) iterating a subtree in storage order yields rsync's sorted file-list
//! order for a recursive transfer of that directory.
//!
//! The protocol crate owns the wire comparator; a test in `interop-tests` checks that the
//! two agree. This crate does not depend on the protocol crate.

use std::cmp::Ordering;

/// Compares two names of non-directories of one directory (bytewise, shorter first).
#[inline]
pub fn cmp_file_names(a: &[u8], b: &[u8]) -> Ordering {
    a.cmp(b)
}

/// Compares two names of subdirectories of one directory as `name + "/"`.
#[inline]
pub fn cmp_dir_names(a: &[u8], b: &[u8]) -> Ordering {
    a.iter().chain(b"/").cmp(b.iter().chain(b"/"))
}

/// Compares two children of one directory in canonical order (non-directories first).
pub fn cmp_children(a: &[u8], a_is_dir: bool, b: &[u8], b_is_dir: bool) -> Ordering {
    match (a_is_dir, b_is_dir) {
        (false, false) => cmp_file_names(a, b),
        (true, true) => cmp_dir_names(a, b),
        (false, true) => Ordering::Less,
        (true, false) => Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_compare_with_trailing_slash() {
        assert_eq!(cmp_dir_names(b"a.b", b"a"), Ordering::Less);
        assert_eq!(cmp_dir_names(b"a-", b"a"), Ordering::Less);
        assert_eq!(cmp_dir_names(b"a", b"a0"), Ordering::Less);
        assert_eq!(cmp_dir_names(b"a", b"a"), Ordering::Equal);
        // Files compare plainly: the shorter name first.
        assert_eq!(cmp_file_names(b"a", b"a.b"), Ordering::Less);
        assert_eq!(cmp_file_names(b"\xff", b"a"), Ordering::Greater);
    }

    #[test]
    fn files_before_dirs() {
        assert_eq!(cmp_children(b"zzz", false, b"a", true), Ordering::Less);
        assert_eq!(cmp_children(b"a", true, b"zzz", false), Ordering::Greater);
        let mut v: Vec<(&[u8], bool)> = vec![
            (b"a", true),
            (b"a.b", true),
            (b"a-", true),
            (b"a0", true),
            (b"a", false),
            (b"a.b", false),
            (b"b", false),
        ];
        v.sort_by(|x, y| cmp_children(x.0, x.1, y.0, y.1));
        let got: Vec<(&[u8], bool)> = v;
        let want: Vec<(&[u8], bool)> = vec![
            (b"a", false),
            (b"a.b", false),
            (b"b", false),
            (b"a-", true),
            (b"a.b", true),
            (b"a", true),
            (b"a0", true),
        ];
        assert_eq!(got, want);
    }
}
