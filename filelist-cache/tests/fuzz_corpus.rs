//! Replays the committed fuzz corpus and regression inputs of the snapshot
//! and fanotify decoders (`fuzz/corpus/{snapshot,fanotify}/`,
//! `fuzz/regressions/...`) through the bodies the cargo-fuzz targets run
//! (`filelist_cache::fuzz_entry`), plus seeds built below: snapshots of
//! small trees written by `build_snapshot`, and fanotify buffers in the
//! kernel's layout. Needs neither nightly nor cargo-fuzz.
//!
//! `cargo test -p filelist-cache --test fuzz_corpus -- --ignored write_seeds`
//! rewrites the `seed-*` files.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use filelist_cache::fuzz_entry as fe;
use filelist_cache::{build_snapshot, BuildOptions};
use protocol::fuzz_entry::replay::{fuzz_dir, replay, write_seeds};

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn dir() -> PathBuf {
    fuzz_dir(env!("CARGO_MANIFEST_DIR"))
}

/// A snapshot file image of the tree `make` builds.
fn image(make: impl FnOnce(&Path)) -> Vec<u8> {
    let t = tempfile::tempdir().expect("tempdir");
    let root = t.path().join("root");
    std::fs::create_dir(&root).expect("mkdir root");
    make(&root);
    let out = t.path().join("snap");
    build_snapshot(&root, &out, &BuildOptions { one_file_system: true, generation: 7 }).expect("build");
    std::fs::read(&out).expect("read snapshot")
}

fn snapshot_seeds() -> Seeds {
    let small = image(|r| {
        std::fs::write(r.join("hello.txt"), b"hello world\n").expect("write");
        std::fs::create_dir_all(r.join("dir/sub")).expect("mkdir");
        std::fs::write(r.join("dir/a"), b"a").expect("write");
        std::fs::write(r.join("dir/sub/b"), b"").expect("write");
        std::fs::create_dir(r.join("dir.x")).expect("mkdir");
        symlink("../hello.txt", r.join("dir/link")).expect("symlink");
    });
    let empty = image(|_| {});
    let odd = image(|r| {
        std::fs::write(r.join("new\nline"), b"x").expect("write");
        std::fs::write(r.join(std::ffi::OsStr::new("caf\u{e9}")), b"y").expect("write");
        std::fs::create_dir(r.join("d")).expect("mkdir");
        std::fs::write(r.join("d-"), b"").expect("write");
        std::fs::write(r.join("d0"), b"").expect("write");
    });
    let with_mode = |m: u8, b: &[u8]| [&[m][..], b].concat();
    vec![
        ("small", with_mode(0, &small)),
        ("small-resealed", with_mode(1, &small[64..])),
        ("empty-root", with_mode(0, &empty)),
        ("empty-root-resealed", with_mode(1, &empty[64..])),
        ("odd-names-resealed", with_mode(1, &odd[64..])),
        ("header-only", with_mode(0, &small[..64])),
        ("truncated", with_mode(0, &small[..small.len() - 1])),
    ]
}

/// (info type, file handle, name) of one info record.
type Rec<'a> = (u8, &'a [u8], Option<&'a [u8]>);

/// One fanotify event in the kernel's layout (metadata, then file-handle
/// info records padded to 4 bytes).
fn event(out: &mut Vec<u8>, mask: u64, recs: &[Rec<'_>]) {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[3, 0]);
    out.extend_from_slice(&24u16.to_ne_bytes());
    out.extend_from_slice(&mask.to_ne_bytes());
    out.extend_from_slice(&(-1i32).to_ne_bytes());
    out.extend_from_slice(&4242i32.to_ne_bytes());
    for (kind, handle, name) in recs {
        let rs = out.len();
        out.extend_from_slice(&[*kind, 0, 0, 0]);
        out.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        out.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        out.extend_from_slice(&1i32.to_ne_bytes());
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

fn fanotify_seeds() -> Seeds {
    let h = [9u8; 8];
    let mut create = Vec::new();
    event(&mut create, 0x100, &[(2, &h, Some(b"new\xfffile"))]);
    let mut several = create.clone();
    event(&mut several, 0x4000_0004, &[(2, &h, Some(b"."))]);
    event(&mut several, 0x4000, &[]);
    event(&mut several, 0x2, &[(3, &[1; 12], None), (1, &[2; 12], None)]);
    let mut rename = Vec::new();
    event(&mut rename, 0x800, &[(10, &h, Some(b"old")), (12, &h, Some(b"new"))]);
    let mut other_info = Vec::new();
    event(&mut other_info, 0x8, &[]);
    let mut bad_len = create.clone();
    bad_len[0..4].copy_from_slice(&1000u32.to_ne_bytes());
    vec![("create", create), ("several", several), ("rename", rename), ("no-records", other_info), ("event-len-past-end", bad_len)]
}

#[test]
fn snapshot_corpus() {
    assert!(replay(&dir(), "snapshot", &snapshot_seeds(), fe::snapshot) > 0);
}

#[test]
fn fanotify_corpus() {
    assert!(replay(&dir(), "fanotify", &fanotify_seeds(), fe::fanotify) > 0);
}

/// Rewrites `fuzz/corpus/{snapshot,fanotify}/seed-*` from the builders above.
#[test]
#[ignore = "writes the committed seed files; run by hand"]
fn write_seeds_filelist_cache() {
    let d = dir();
    write_seeds(&d, "snapshot", &snapshot_seeds());
    write_seeds(&d, "fanotify", &fanotify_seeds());
}
