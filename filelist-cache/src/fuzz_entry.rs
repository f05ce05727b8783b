//! Fuzz-target bodies for the crate's two decoders of untrusted bytes: a
//! snapshot file image ([`Snapshot::from_bytes`], the checks of
//! [`Snapshot::open`]) and the fanotify event buffer (`watch/parse.rs`).
//! Shared by the cargo-fuzz targets in `fuzz/` and the corpus replay test
//! (`tests/fuzz_corpus.rs`). Each function panics only when an invariant
//! breaks. Not part of the crate's API.

use crate::format::{Header, HEADER_LEN};
use crate::view::WalkControl;
use crate::watch::parse::{events, METADATA_LEN};
use crate::Snapshot;

/// Size of the archived root object (`ArchivedSnapshotV1`) that rkyv puts
/// at the end of the archive; its first three fields are generation,
/// root_dev and root_ino.
const ROOT_LEN: usize = 72;

/// Snapshot open. Input: `[mode] bytes`. Mode bit 0 clear: `bytes` is a
/// whole file image. Set: `bytes` is an archive, sealed here with a valid
/// header (hashes and the generation/root identity the archive's root
/// claims), so the fuzzer gets past the hash checks into bytecheck and the
/// structural validation. A snapshot that opens must be a well-formed tree:
/// every entry reached by a walk is found again by `lookup` of its path,
/// and `entry()` resolves every index below `index_bound()`.
pub fn snapshot(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let image = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let le = |at: usize| -> u64 {
            rest.len()
                .checked_sub(ROOT_LEN - at)
                .and_then(|s| rest.get(s..s + 8))
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
        };
        let header = Header::for_archive(rest, le(0), le(8), le(16));
        let mut image = header.to_bytes().to_vec();
        image.extend_from_slice(rest);
        image
    };
    let Ok(snap) = Snapshot::from_bytes(image) else {
        return;
    };
    assert!(snap.file_len() >= HEADER_LEN);
    let root = snap.root();
    assert!(root.is_dir() && root.name().is_empty() && root.parent().is_none());
    let mut seen = 0usize;
    snap.walk(root, &mut |path, e| {
        seen += 1;
        assert!(seen <= snap.len(), "walk visits more entries than the snapshot holds");
        let found = snap.lookup(path).unwrap_or_else(|| panic!("walked path {:?} not found by lookup", String::from_utf8_lossy(path)));
        assert_eq!(found.index(), e.index(), "lookup finds another entry");
        assert!(e.parent().is_some());
        let _ = (e.link_target(), e.checksum(), e.read_errno(), e.scan_generation(), e.subtree_len());
        WalkControl::Continue
    });
    assert_eq!(seen + 1, snap.len(), "walk does not visit every entry once");
    for i in 0..snap.index_bound() {
        if let Some(e) = snap.entry(i) {
            assert_eq!(e.index(), i);
            let n = e.children().count();
            assert!(n <= snap.len());
        }
    }
    assert_eq!(snap.first_difference(&snap), None);
}

/// The fanotify event parser. Every event it returns lies within the
/// buffer, the events' lengths add up to no more than the buffer, and
/// parsing stops at the first error.
pub fn fanotify(data: &[u8]) {
    let range = data.as_ptr_range();
    let mut count = 0usize;
    let mut after_error = false;
    for r in events(data) {
        assert!(!after_error, "event after an error");
        match r {
            Ok(e) => {
                count += 1;
                assert!(count * METADATA_LEN <= data.len(), "more events than the buffer holds");
                for f in &e.fids {
                    let hr = f.handle.as_ptr_range();
                    assert!(range.start <= hr.start && hr.end <= range.end, "handle outside the buffer");
                    if let Some(n) = f.name {
                        let nr = n.as_ptr_range();
                        assert!(range.start <= nr.start && nr.end <= range.end, "name outside the buffer");
                        assert!(!n.contains(&0));
                    }
                }
            }
            Err(_) => after_error = true,
        }
    }
}
