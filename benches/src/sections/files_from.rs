//! `--files-from` with long lists: a stock client pulls N named files.
//!
//! The tree is a mirror tree sized so that it holds more than N visible
//! regular files; the list takes N of them evenly spread over the sorted
//! list of all (sorted bytewise, as `LC_ALL=C sort` would), skipping what
//! `uid = nobody` cannot see (below 0750 directories). The pull is
//! `rsync -a -n --stats [--trust-sender] --files-from=LIST rsync://…/mirror/ TREE/`:
//! the destination is the served tree itself and `-n` writes nothing, so
//! it is a null sync of N names.
//!
//! - `trusted` (`--trust-sender`, `runs` per daemon, alternating): the
//!   daemon's work; the client does not check received names against the
//!   ones it sent.
//! - `plain` (once per daemon, with a timeout): as users run it. A 3.2.5+
//!   client checks every received entry against the names it forwarded
//!   (`exclude.c: add_implied_include()`), which costs client CPU depending
//!   on how far the daemon's list lags behind the names.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};

use super::{Ctx, Section};
use crate::client::{measure_round, rsync_cmd};
use crate::daemon::{Kind, Module, Pair};
use crate::tree;

/// Regular files `uid = nobody` can see (not below a directory closed to
/// others), relative, sorted bytewise.
pub fn visible_files(root: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    tree::walk(root, &mut |rel, md| {
        if md.is_dir() {
            return md.permissions().mode() & 0o005 == 0o005;
        }
        if md.is_file() {
            out.push(rel.as_os_str().as_bytes().to_vec());
        }
        false
    })?;
    out.sort();
    Ok(out)
}

/// `k` names spread evenly over the sorted list (keeps it sorted).
pub fn spread(all: &[Vec<u8>], k: usize) -> Vec<&[u8]> {
    let k = k.min(all.len());
    (0..k).map(|i| all[i * all.len() / k].as_slice()).collect()
}

/// Tree entries that give more than `names` visible regular files.
pub fn tree_entries_for(names: u64) -> u64 {
    names + names / 25 + 2_000
}

/// Runs the section.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    for names in ctx.cfg.ff_names.clone() {
        if ctx.over_budget(&format!("--files-from with {names} names")) {
            break;
        }
        let entries = tree_entries_for(names);
        let (tree, _) = ctx.mirror(entries)?;
        let all = visible_files(&tree)?;
        ensure!(all.len() as u64 >= names, "tree of {entries} entries has only {} visible files for {names} names", all.len());
        let list_path = ctx.cfg.work.join(format!("files-from-{names}.list"));
        {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&list_path)?);
            for n in spread(&all, names as usize) {
                w.write_all(n)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
        drop(all);
        let mut pair = Pair::start(&ctx.run_dir(&format!("files-from-{names}")), &ctx.cfg.rsync, &ctx.cfg.rsyncd, &[Module { name: "mirror".into(), path: tree.clone() }], &[])?;
        let list_arg = format!("--files-from={}", list_path.display());
        let dest = format!("{}/", tree.display());
        let runs = ctx.cfg.runs;
        for (scenario, trusted, n_runs, timeout) in
            [("trusted", true, runs, ctx.cfg.client_timeout), ("plain", false, 1, ctx.cfg.plain_timeout)]
        {
            if ctx.over_budget(&format!("--files-from {scenario} with {names} names")) {
                break;
            }
            ctx.store.begin_unit(Section::FilesFrom.name(), scenario, names, "-", 1);
            let mut args: Vec<String> = vec!["-a".into(), "-n".into()];
            if trusted {
                args.push("--trust-sender".into());
            }
            args.push(list_arg.clone());
            // One unmeasured trusted pull per daemon first (page cache, our list cache).
            if trusted {
                for kind in Kind::order(0) {
                    let d = pair.get(kind);
                    let r = measure_round(d, vec![rsync_cmd(&ctx.cfg.rsync, &args, &d.url("mirror"), &dest)], Duration::from_secs(timeout), ctx.tck)?;
                    ensure!(r.all_ok(), "{} --files-from warm-up failed: {}", kind.name(), r.failure().unwrap_or_default());
                }
            }
            for run in 0..n_runs {
                for kind in Kind::order(run) {
                    let d = pair.get(kind);
                    let r = measure_round(d, vec![rsync_cmd(&ctx.cfg.rsync, &args, &d.url("mirror"), &dest)], Duration::from_secs(timeout), ctx.tck)?;
                    let c = &r.clients[0];
                    let s = r.stats[0];
                    let timed_out = c.wall_s.is_none();
                    if !timed_out && !c.ok {
                        ctx.store.note("files-from", format!("{} {scenario} {names}: client failed: {}", kind.name(), r.failure().unwrap_or_default()));
                        continue;
                    }
                    if timed_out {
                        ctx.store.note("files-from", format!("{} {scenario} {names}: client killed after {timeout} s", kind.name()));
                    } else if s.transferred != 0.0 {
                        ctx.store.note("files-from", format!("{} {scenario} {names}: not a null sync ({} files)", kind.name(), s.transferred));
                    }
                    eprintln!(
                        "files-from {scenario:7} {names:>8} #{} {:5}: wall {} s, server cpu {:.2} s, list generation {:?} s, client cpu {:.2} s",
                        run + 1,
                        kind.name(),
                        c.wall_s.map(|w| format!("{w:.2}")).unwrap_or_else(|| format!("> {timeout}")),
                        r.server_cpu_s,
                        s.flist_gen_s,
                        r.client_cpu_s
                    );
                    for (m, v) in [
                        ("wall_s", c.wall_s.unwrap_or(f64::NAN)),
                        ("timed_out", if timed_out { 1.0 } else { 0.0 }),
                        ("server_cpu_s", r.server_cpu_s),
                        ("flist_gen_s", s.flist_gen_s.unwrap_or(f64::NAN)),
                        ("flist_xfer_s", s.flist_xfer_s.unwrap_or(f64::NAN)),
                        ("client_cpu_s", r.client_cpu_s),
                        ("entries_in_list", s.files),
                        ("bytes_received", s.bytes_received),
                        ("server_peak_anon_mib", r.peak.anon_kb as f64 / 1024.0),
                        ("server_peak_file_mib", r.peak.file_kb as f64 / 1024.0),
                    ] {
                        ctx.push(Section::FilesFrom, scenario, names, "-", 1, kind.name(), m, run as u32 + 1, v, r.load1);
                    }
                }
            }
            ctx.checkpoint()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keeps_order_and_count() {
        let all: Vec<Vec<u8>> = (0..1000u32).map(|i| format!("{i:04}").into_bytes()).collect();
        let s = spread(&all, 10);
        assert_eq!(s.len(), 10);
        assert_eq!(s[1], b"0100");
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(spread(&all, 5000).len(), 1000);
    }

    #[test]
    fn visible_files_skip_closed_dirs_and_suffice() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("m");
        let names = 2_000;
        let info = tree::mirror::generate(&root, tree_entries_for(names), 1).unwrap();
        let v = visible_files(&root).unwrap();
        assert!(v.len() as u64 >= names, "{} visible of {info:?}", v.len());
        assert!(v.windows(2).all(|w| w[0] < w[1]), "sorted bytewise");
        assert!(!v.iter().any(|p| p.windows(5).any(|w| w == b"/iso/") && p.starts_with(b"releases/41")), "0750 iso dirs hidden");
        assert!(v.iter().any(|p| p.ends_with(b".rpm")));
    }
}
