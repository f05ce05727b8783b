//! Damaged, truncated, foreign and other-version snapshot files: `open` must return an
//! error and never panic. Where damage is resealed (hashes recomputed, as an attacker or a
//! buggy writer could), the structural validation must reject it or the result must be
//! safe to read completely.

use filelist_cache::{build_snapshot, BuildOptions, OpenError, Snapshot, WalkControl};
use xxhash_rust::xxh3::xxh3_64;

use crate::util::Dir;

const HEADER_LEN: usize = 64;

/// A small snapshot file image with a bit of everything.
fn small_snapshot() -> Vec<u8> {
    let d = Dir::new();
    d.mkdir(b"d/e");
    d.file(b"d/e/f", b"x");
    d.file(b"d/g", b"");
    d.mkdir(b"d.x");
    d.file(b"a", b"");
    d.symlink(b"l", b"a");
    build_snapshot(
        &d.root(),
        &d.snap_path(),
        &BuildOptions {
            generation: 9,
            ..Default::default()
        },
    )
    .expect("build");
    std::fs::read(d.snap_path()).expect("read snapshot")
}

/// Recomputes both hashes of a file image after it was edited, per the documented layout:
/// content hash (offset 24) = xxh3-64 of bytes 64..; header hash (offset 56) = xxh3-64 of
/// bytes 0..56; archive length at offset 16.
fn reseal(file: &mut [u8]) {
    let len = (file.len() - HEADER_LEN) as u64;
    file[16..24].copy_from_slice(&len.to_le_bytes());
    let content = xxh3_64(&file[HEADER_LEN..]);
    file[24..32].copy_from_slice(&content.to_le_bytes());
    let header = xxh3_64(&file[..56]);
    file[56..64].copy_from_slice(&header.to_le_bytes());
}

/// Reads everything reachable from a snapshot that was accepted, through every accessor.
fn exercise(snap: &Snapshot) {
    let mut paths = Vec::new();
    snap.walk(snap.root(), &mut |p, e| {
        paths.push(p.to_vec());
        let _ = (
            e.name(),
            e.mode(),
            e.size(),
            e.mtime(),
            e.link_target(),
            e.checksum(),
        );
        let _ = (
            e.parent().map(|p| p.index()),
            e.read_errno(),
            e.subtree_len(),
        );
        for c in e.children() {
            let _ = e.child(c.name());
        }
        WalkControl::Continue
    });
    for p in &paths {
        assert!(
            snap.lookup(p).is_some(),
            "accepted snapshot cannot resolve its own path"
        );
    }
    for i in 0..=snap.len() as u32 {
        let _ = snap.entry(i).map(|e| e.children().count());
    }
}

#[test]
fn pristine_small_snapshot_opens() {
    let file = small_snapshot();
    let snap = Snapshot::from_bytes(file).expect("valid");
    assert_eq!(snap.generation(), 9);
    exercise(&snap);
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let file = small_snapshot();
    for i in 0..file.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = file.clone();
            bad[i] ^= mask;
            let r = Snapshot::from_bytes(bad);
            assert!(r.is_err(), "flip {mask:#x} at byte {i} was accepted");
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let file = small_snapshot();
    for len in 0..file.len() {
        let r = Snapshot::from_bytes(file[..len].to_vec());
        assert!(r.is_err(), "truncation to {len} bytes was accepted");
    }
    let mut longer = file.clone();
    longer.push(0);
    assert!(matches!(
        Snapshot::from_bytes(longer),
        Err(OpenError::Corrupt { .. })
    ));
}

#[test]
fn truncated_file_on_disk_is_rejected_by_open() {
    let file = small_snapshot();
    let d = Dir::new();
    let p = d.tmp.path().join("trunc");
    for len in [0, 7, 8, 63, 64, 65, file.len() / 2, file.len() - 1] {
        std::fs::write(&p, &file[..len]).expect("write");
        let err = Snapshot::open(&p).expect_err("truncated");
        assert!(matches!(err, OpenError::Corrupt { .. }), "len {len}: {err}");
        assert_eq!(err.path(), p);
    }
}

#[test]
fn resealed_byte_flips_are_rejected_or_safe() {
    let file = small_snapshot();
    let (mut rejected, mut accepted) = (0, 0);
    for i in HEADER_LEN..file.len() {
        for mask in [0x01u8, 0x10, 0x80, 0xff] {
            let mut bad = file.clone();
            bad[i] ^= mask;
            reseal(&mut bad);
            match Snapshot::from_bytes(bad) {
                Ok(snap) => {
                    accepted += 1;
                    exercise(&snap);
                }
                Err(OpenError::Corrupt { .. }) => rejected += 1,
                Err(e) => panic!("unexpected error kind at {i}: {e}"),
            }
        }
    }
    // Flips in mtimes/sizes are legitimately accepted; flips in offsets, lengths, names,
    // parents and order must be caught by bytecheck or the structural validation.
    assert!(
        rejected > 0 && accepted > 0,
        "rejected {rejected}, accepted {accepted}"
    );
    eprintln!("resealed single flips: {rejected} rejected, {accepted} accepted");
}

#[test]
fn resealed_random_damage_never_panics() {
    let file = small_snapshot();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let body = file.len() - HEADER_LEN;
    for _ in 0..3000 {
        let mut bad = file.clone();
        for _ in 0..(next() % 8 + 1) {
            let i = HEADER_LEN + (next() as usize) % body;
            bad[i] = next() as u8;
        }
        reseal(&mut bad);
        if let Ok(snap) = Snapshot::from_bytes(bad) {
            exercise(&snap);
        }
    }
}

#[test]
fn foreign_and_other_version_files_get_specific_errors() {
    let file = small_snapshot();

    let mut bad = file.clone();
    bad[0] = b'X';
    assert!(matches!(
        Snapshot::from_bytes(bad),
        Err(OpenError::BadMagic { .. })
    ));
    assert!(matches!(
        Snapshot::from_bytes(b"#!/bin/sh\necho not a snapshot\n".to_vec()),
        Err(OpenError::BadMagic { .. })
    ));
    assert!(matches!(
        Snapshot::from_bytes(b"x".to_vec()),
        Err(OpenError::BadMagic { .. })
    ));
    assert!(matches!(
        Snapshot::from_bytes(Vec::new()),
        Err(OpenError::Corrupt { .. })
    ));

    // A newer format version, properly sealed.
    let mut newer = file.clone();
    newer[8..12].copy_from_slice(&(filelist_cache::FORMAT_VERSION + 1).to_le_bytes());
    reseal(&mut newer);
    match Snapshot::from_bytes(newer) {
        Err(OpenError::UnsupportedVersion { found, .. }) => {
            assert_eq!(found, filelist_cache::FORMAT_VERSION + 1)
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    // Same version, other rkyv layout features (e.g. 64-bit pointers).
    let mut other_layout = file.clone();
    other_layout[12] ^= 0x04;
    reseal(&mut other_layout);
    assert!(matches!(
        Snapshot::from_bytes(other_layout),
        Err(OpenError::UnsupportedVersion { .. })
    ));
    // A header whose generation disagrees with the archive.
    let mut gen = file.clone();
    gen[32] ^= 1;
    reseal(&mut gen);
    assert!(matches!(
        Snapshot::from_bytes(gen),
        Err(OpenError::Corrupt { .. })
    ));
}
