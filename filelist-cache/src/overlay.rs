//! The overlay of a [`Snapshot`](crate::Snapshot) view: directory listings re-read since
//! the base file was written, merged with the base at read time.
//!
//! Model:
//! - Every entry has an index. Entries of the base file keep their file index; entries
//!   the overlay adds get indices from `base_len` upwards, never reused within the life
//!   of one base (so indices are stable within a view, and an index that survives an
//!   update names the same object).
//! - `recs` holds the record of every entry the overlay adds, and an override record for
//!   base entries whose attributes changed (same name, same inode, new `lstat` values).
//! - `listings` holds the replaced listing of every directory that was re-read (base or
//!   overlay directory), keyed by the directory's index. Directories without an entry
//!   here use their base listing.
//! - `touched` holds every base directory that has a replaced listing or any changed
//!   entry strictly below it. A base directory not in `touched` is *pristine*: its whole
//!   subtree is exactly the base file's contiguous range, so walks and lookups below it
//!   run at base-file speed without consulting any map.
//!
//! All maps are persistent (`imbl`): a new generation clones the previous overlay in
//! O(1) and applies its change in O(change * log n); the old view stays untouched.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use imbl::shared_ptr::DefaultSharedPtr;

use crate::model::Attrs;

/// Hash of entry indices: the splitmix64 finaliser (a fixed bijective mixer; indices
/// are allocated by us, not chosen by anyone, so no keyed hash is needed). Several times
/// faster than the default SipHash on the read path.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct IndexHash;

/// See [`IndexHash`].
#[derive(Debug, Default)]
pub(crate) struct IndexHasher(u64);

impl BuildHasher for IndexHash {
    type Hasher = IndexHasher;
    fn build_hasher(&self) -> IndexHasher {
        IndexHasher(0)
    }
}

impl Hasher for IndexHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = self.0.rotate_left(32) ^ u64::from(n);
    }
    fn finish(&self) -> u64 {
        let mut z = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

type Map<V> = imbl::GenericHashMap<u32, V, IndexHash, DefaultSharedPtr>;
type Set = imbl::GenericHashSet<u32, IndexHash, DefaultSharedPtr>;
use crate::order::{cmp_dir_names, cmp_file_names};

/// Record of an entry added or changed by the overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ORec {
    /// Index of the parent directory (`NO_INDEX` for the root).
    pub parent: u32,
    pub name: Box<[u8]>,
    /// Symlink target (empty for other types).
    pub target: Box<[u8]>,
    pub attrs: Attrs,
    /// `format::flags` bits: UNREADABLE, OTHER_FS.
    pub flags: u32,
    /// errno of a failed opendir/readdir (directories flagged UNREADABLE), else 0.
    pub dir_error: u32,
    /// Generation at which a directory's listing was read.
    pub scan_generation: u64,
}

/// One child in a replaced listing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ListChild {
    pub index: u32,
    pub name_off: u32,
    pub name_len: u32,
}

/// A replaced directory listing: non-directories sorted bytewise, then directories
/// sorted as `name/` (the canonical order of [`crate::order`]).
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub nfiles: u32,
    pub kids: Box<[ListChild]>,
    pub names: Box<[u8]>,
}

impl Listing {
    /// Builds a listing from (index, name) pairs already in canonical order.
    pub(crate) fn new(files: &[(u32, &[u8])], dirs: &[(u32, &[u8])]) -> Listing {
        let total: usize = files.iter().chain(dirs).map(|(_, n)| n.len()).sum();
        let mut names = Vec::with_capacity(total);
        let mut kids = Vec::with_capacity(files.len() + dirs.len());
        for (index, name) in files.iter().chain(dirs) {
            kids.push(ListChild {
                index: *index,
                name_off: names.len() as u32,
                name_len: name.len() as u32,
            });
            names.extend_from_slice(name);
        }
        Listing {
            nfiles: files.len() as u32,
            kids: kids.into_boxed_slice(),
            names: names.into_boxed_slice(),
        }
    }

    #[inline]
    pub(crate) fn name(&self, k: &ListChild) -> &[u8] {
        let off = k.name_off as usize;
        self.names
            .get(off..off + k.name_len as usize)
            .unwrap_or_default()
    }

    fn split(&self) -> (&[ListChild], &[ListChild]) {
        let n = (self.nfiles as usize).min(self.kids.len());
        self.kids.split_at(n)
    }

    /// Index of the child named `name` (binary search: files bytewise, then dirs as
    /// `name/`).
    pub(crate) fn find(&self, name: &[u8]) -> Option<u32> {
        let (files, dirs) = self.split();
        if let Ok(k) = files.binary_search_by(|c| cmp_file_names(self.name(c), name)) {
            return Some(files[k].index);
        }
        dirs.binary_search_by(|c| cmp_dir_names(self.name(c), name))
            .ok()
            .map(|k| dirs[k].index)
    }
}

/// The overlay part of a view. See the module documentation.
#[derive(Clone)]
pub(crate) struct Overlay {
    recs: Map<Arc<ORec>>,
    listings: Map<Arc<Listing>>,
    touched: Set,
    base_len: u32,
    next_index: u32,
    entry_delta: i64,
    dir_delta: i64,
}

impl Overlay {
    /// The empty overlay of a base with `base_len` entries.
    pub(crate) fn new(base_len: u32) -> Overlay {
        Overlay {
            recs: Map::with_hasher(IndexHash),
            listings: Map::with_hasher(IndexHash),
            touched: Set::with_hasher(IndexHash),
            base_len,
            next_index: base_len,
            entry_delta: 0,
            dir_delta: 0,
        }
    }

    /// The overlay record of `index` (an added entry, or an override of a base entry).
    #[inline]
    pub(crate) fn rec(&self, index: u32) -> Option<&ORec> {
        if self.recs.is_empty() {
            return None;
        }
        self.recs.get(&index).map(|r| &**r)
    }

    /// The replaced listing of directory `index`, if any.
    #[inline]
    pub(crate) fn listing(&self, index: u32) -> Option<&Listing> {
        if self.listings.is_empty() {
            return None;
        }
        self.listings.get(&index).map(|l| &**l)
    }

    /// Whether base directory `index` has anything changed at or below it.
    #[inline]
    pub(crate) fn is_touched(&self, index: u32) -> bool {
        !self.touched.is_empty() && self.touched.contains(&index)
    }

    pub(crate) fn base_len(&self) -> u32 {
        self.base_len
    }

    pub(crate) fn next_index(&self) -> u32 {
        self.next_index
    }

    pub(crate) fn entry_delta(&self) -> i64 {
        self.entry_delta
    }

    pub(crate) fn dir_delta(&self) -> i64 {
        self.dir_delta
    }

    pub(crate) fn record_count(&self) -> usize {
        self.recs.len()
    }

    pub(crate) fn listing_count(&self) -> usize {
        self.listings.len()
    }

    /// Allocates a fresh index for an added entry.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        let i = self.next_index;
        if i >= crate::format::NO_INDEX - 1 {
            return None;
        }
        self.next_index += 1;
        Some(i)
    }

    pub(crate) fn set_rec(&mut self, index: u32, rec: ORec) {
        self.recs.insert(index, Arc::new(rec));
    }

    pub(crate) fn set_listing(&mut self, index: u32, listing: Listing) {
        self.listings.insert(index, Arc::new(listing));
    }

    /// Marks base directory `index` touched; returns false if it already was.
    pub(crate) fn touch(&mut self, index: u32) -> bool {
        if index >= self.base_len {
            return true; // overlay directories are never walked from the base
        }
        self.touched.insert(index).is_none()
    }

    pub(crate) fn add_counts(&mut self, entries: i64, dirs: i64) {
        self.entry_delta += entries;
        self.dir_delta += dirs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_find_uses_canonical_order() {
        let l = Listing::new(
            &[(5, b"a"), (6, b"a.b"), (7, b"b")],
            &[(8, b"a-"), (9, b"a.b"), (10, b"a"), (11, b"a0")],
        );
        assert_eq!(l.find(b"a"), Some(5));
        assert_eq!(l.find(b"b"), Some(7));
        assert_eq!(l.find(b"a-"), Some(8));
        assert_eq!(l.find(b"a0"), Some(11));
        assert_eq!(l.find(b"zz"), None);
        assert_eq!(l.kids.len(), 7);
        assert_eq!(l.name(&l.kids[6]), b"a0");
    }

    #[test]
    fn clones_are_independent() {
        let mut a = Overlay::new(10);
        let idx = a.alloc().expect("index");
        assert_eq!(idx, 10);
        let b = a.clone();
        a.touch(3);
        a.set_listing(3, Listing::default());
        assert!(a.is_touched(3) && a.listing(3).is_some());
        assert!(!b.is_touched(3) && b.listing(3).is_none());
        assert_eq!(b.next_index(), 11);
    }
}
