//! Build/open timings for a synthetic 200k-entry tree. Run with
//! `cargo test -p filelist-cache --test cache timing -- --ignored --nocapture`.

use std::time::Instant;

use filelist_cache::{build_snapshot, BuildOptions, Snapshot, WalkControl};

use crate::util::Dir;

#[test]
#[ignore = "slow: creates 200k files; prints timings"]
fn timing_200k_entries() {
    let (dirs, files_per_dir) = (2_000usize, 99usize); // 1 + 2000 + 198000 = 200001 entries
    let d = Dir::new();
    let t = Instant::now();
    d.mkdir(b"");
    for i in 0..dirs {
        let dir = format!("{:02}/dir{i:05}", i % 50);
        d.mkdir(dir.as_bytes());
        for j in 0..files_per_dir {
            std::fs::File::create(d.path(format!("{dir}/file-{j:03}.dat").as_bytes()))
                .expect("create");
        }
    }
    eprintln!("create tree: {:?}", t.elapsed());

    // Warm the dentry/inode caches once so the build measures the scan, not the disk.
    build_snapshot(&d.root(), &d.snap_path(), &BuildOptions::default()).expect("warm build");
    let t = Instant::now();
    let report =
        build_snapshot(&d.root(), &d.snap_path(), &BuildOptions::default()).expect("build");
    let build = t.elapsed();
    let t = Instant::now();
    let snap = Snapshot::open(&d.snap_path()).expect("open");
    let open = t.elapsed();
    let t = Instant::now();
    let mut paths = Vec::with_capacity(snap.len());
    snap.walk(snap.root(), &mut |p, _| {
        paths.push(p.to_vec());
        WalkControl::Continue
    });
    let walk = t.elapsed();
    let t = Instant::now();
    for p in &paths {
        assert!(snap.lookup(p).is_some());
    }
    let lookup = t.elapsed();
    assert_eq!(report.entries as usize, snap.len());
    assert_eq!(snap.len(), 1 + 50 + dirs + dirs * files_per_dir);
    eprintln!(
        "entries {} dirs {} file {} bytes ({:.1} B/entry)\n\
         build (scan+serialise+write+fsync) {:?}\nopen (map+hash+bytecheck+validate) {:?}\n\
         walk all {:?}\nlookup all {:?} ({:.0} ns/lookup)",
        snap.len(),
        snap.dir_count(),
        snap.file_len(),
        snap.file_len() as f64 / snap.len() as f64,
        build,
        open,
        walk,
        lookup,
        lookup.as_nanos() as f64 / paths.len() as f64
    );
}
