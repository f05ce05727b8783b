//! Snapshot figures on the mirror trees (filelist-cache API, in process):
//!
//! - build time (`build_snapshot`: scan, encode, write, fsync) against
//!   `find TREE -printf '%s %T@\n'` over the same tree, alternating, warm
//!   cache;
//! - bytes per entry of the snapshot file; open time (`Snapshot::open`:
//!   map, check hashes, validate); a full iteration and random lookups;
//! - the cost of a small change against tree size: a `SnapshotStore`
//!   (no watcher) on the tree, a file added to (then removed from) one
//!   `Packages/<x>` directory, `refresh` of that directory, timed. The
//!   directory's mtime is put back afterwards so the tree stays as
//!   generated.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use filelist_cache::{build_snapshot, BuildOptions, Snapshot, SnapshotStore, StoreOptions, WalkControl};

use super::{Ctx, Section};
use crate::procstat::{load1, self_children_ticks, self_ticks};
use crate::rng::Rng;

/// `Packages/<x>` directories of a snapshot (module-relative).
fn package_dirs(snap: &Snapshot) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    snap.walk(snap.root(), &mut |p, e| {
        if e.is_dir() && p.len() > 11 && p[..p.len() - 1].ends_with(b"/Packages/") {
            out.push(p.to_vec());
        }
        WalkControl::Continue
    });
    out
}

fn time_find(tree: &Path) -> Result<(f64, f64)> {
    let c0 = self_children_ticks()?;
    let t0 = Instant::now();
    let st = Command::new("find").arg(tree).args(["-printf", "%s %T@\n"]).stdout(Stdio::null()).status().context("find")?;
    let wall = t0.elapsed().as_secs_f64();
    ensure!(st.success(), "find failed");
    Ok((wall, (self_children_ticks()? - c0) as f64))
}

/// One small change and its refresh; returns (add ms, remove ms).
fn one_update(store: &SnapshotStore, tree: &Path, dir: &[u8], i: usize) -> Result<(f64, f64)> {
    let d: PathBuf = tree.join(std::str::from_utf8(dir)?);
    let mtime = std::fs::metadata(&d)?.modified()?;
    let f = d.join(format!("zz-bench-update-{i}.rpm"));
    std::fs::File::create(&f)?.set_len(1000 + i as u64)?;
    let t0 = Instant::now();
    let r = store.refresh(&[dir])?;
    let add = t0.elapsed().as_secs_f64() * 1e3;
    ensure!(r.published.is_some() && r.added == 1, "refresh after adding a file: {r:?}");
    std::fs::remove_file(&f)?;
    std::fs::File::open(&d)?.set_modified(mtime)?;
    let t0 = Instant::now();
    let r = store.refresh(&[dir])?;
    let rm = t0.elapsed().as_secs_f64() * 1e3;
    ensure!(r.removed == 1, "refresh after removing it: {r:?}");
    Ok((add, rm))
}

/// Runs the section.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let tck = ctx.tck;
    for entries in ctx.cfg.sizes.clone() {
        if ctx.over_budget(&format!("snapshot figures at {entries} entries")) {
            break;
        }
        let (tree, _) = ctx.mirror(entries)?;
        let dir = ctx.cfg.work.join(format!("snapshot-{entries}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let snap_path = dir.join("tree.snap");
        ctx.store.begin_unit(Section::Snapshot.name(), "snapshot", entries, "-", 1);
        let sec = Section::Snapshot;
        // Warm the inode cache once (unmeasured).
        time_find(&tree)?;
        let mut report = None;
        for run in 0..ctx.cfg.runs.max(3) {
            for first_find in [run % 2 == 0, run % 2 != 0] {
                let load = load1();
                if first_find {
                    let (wall, cpu) = time_find(&tree)?;
                    ctx.push(sec, "snapshot", entries, "-", 1, "find", "walk_s", run as u32 + 1, wall, load);
                    ctx.push(sec, "snapshot", entries, "-", 1, "find", "walk_cpu_s", run as u32 + 1, cpu / tck, load);
                } else {
                    let c0 = self_ticks()?;
                    let t0 = Instant::now();
                    let r = build_snapshot(&tree, &snap_path, &BuildOptions::default())?;
                    let wall = t0.elapsed().as_secs_f64();
                    let cpu = (self_ticks()? - c0) as f64 / tck;
                    ctx.push(sec, "snapshot", entries, "-", 1, "ours", "build_s", run as u32 + 1, wall, load);
                    ctx.push(sec, "snapshot", entries, "-", 1, "ours", "build_cpu_s", run as u32 + 1, cpu, load);
                    report = Some(r);
                }
            }
        }
        let report = report.context("no build")?;
        let bytes = std::fs::metadata(&snap_path)?.len();
        let load = load1();
        ctx.push(sec, "snapshot", entries, "-", 1, "ours", "snapshot_mib", 0, bytes as f64 / 1048576.0, load);
        ctx.push(sec, "snapshot", entries, "-", 1, "ours", "bytes_per_entry", 0, bytes as f64 / report.entries as f64, load);
        for run in 0..5u32 {
            let t0 = Instant::now();
            let s = Snapshot::open(&snap_path)?;
            let open_ms = t0.elapsed().as_secs_f64() * 1e3;
            let t0 = Instant::now();
            let mut n = 0u64;
            s.walk(s.root(), &mut |p, _| {
                n += p.len() as u64;
                WalkControl::Continue
            });
            let iter_ms = t0.elapsed().as_secs_f64() * 1e3;
            std::hint::black_box(n);
            ctx.push(sec, "snapshot", entries, "-", 1, "ours", "open_ms", run + 1, open_ms, load);
            ctx.push(sec, "snapshot", entries, "-", 1, "ours", "iterate_ms", run + 1, iter_ms, load);
        }
        {
            let s = Snapshot::open(&snap_path)?;
            let mut paths = Vec::with_capacity(s.len());
            s.walk(s.root(), &mut |p, _| {
                if !p.is_empty() {
                    paths.push(p.to_vec());
                }
                WalkControl::Continue
            });
            let mut rng = Rng::new(entries);
            let picks: Vec<&[u8]> = (0..100_000).map(|_| paths[rng.below(paths.len() as u64) as usize].as_slice()).collect();
            for run in 0..3u32 {
                let t0 = Instant::now();
                let found = picks.iter().filter(|p| s.lookup(p).is_some()).count();
                let us = t0.elapsed().as_secs_f64() * 1e6 / picks.len() as f64;
                ensure!(found == picks.len(), "lookup missed {} paths", picks.len() - found);
                ctx.push(sec, "snapshot", entries, "-", 1, "ours", "lookup_us", run + 1, us, load);
            }
        }
        // Small updates.
        let opts = StoreOptions { watch: false, persist_after: None, ..StoreOptions::default() };
        let (store, _) = SnapshotStore::open_or_build_with(&tree, &dir.join("state"), "bench", opts)?;
        let dirs = package_dirs(&store.current());
        ensure!(!dirs.is_empty(), "no Packages directories");
        for i in 0..ctx.cfg.updates {
            let d = &dirs[(i * 7919) % dirs.len()];
            let load = load1();
            let (add, rm) = one_update(&store, &tree, d, i)?;
            ctx.push(sec, "snapshot", entries, "-", 1, "ours", "update_add_ms", i as u32 + 1, add, load);
            ctx.push(sec, "snapshot", entries, "-", 1, "ours", "update_remove_ms", i as u32 + 1, rm, load);
        }
        eprintln!("snapshot {entries}: {bytes} bytes, {} entries; {} updates done", report.entries, ctx.cfg.updates);
        drop(store);
        std::fs::remove_dir_all(&dir)?;
        ctx.checkpoint()?;
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
