//! Full initial pull and delta pull of the mixed tree of real data, without
//! compression, with zlib and with zstd.
//!
//! - `full`: `rsync -a [-z --compress-choice=C] rsync://…/mixed/ DEST/` into
//!   an empty directory on tmpfs (a disk destination measures the client's
//!   file system, not the daemons).
//! - `delta`: the same into a copy of the altered basis (see
//!   [`crate::tree::mixed::make_basis`]), copied to tmpfs before each run
//!   (untimed): every file goes through the delta algorithm, a few percent of
//!   blocks travel as literals.
//!
//! Both daemons serve the tree from the page cache (it is read once
//! before the runs). Throughput = tree bytes / client wall time; server
//! CPU per GiB = server CPU / tree GiB.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};

use super::{free_bytes, Ctx, Section};
use crate::client::{measure_round, rsync_cmd};
use crate::daemon::{Kind, Module, Pair};
use crate::tree::{self, mixed};

/// Compression variants: name and client flags.
pub const COMPRESSIONS: &[(&str, &[&str])] = &[("none", &[]), ("zlib", &["-z", "--compress-choice=zlib"]), ("zstd", &["-z", "--compress-choice=zstd"])];

fn read_all(root: &Path) -> Result<u64> {
    let mut n = 0;
    let mut buf = vec![0u8; 1 << 20];
    tree::walk(root, &mut |rel, md| {
        if md.is_file() {
            if let Ok(mut f) = std::fs::File::open(root.join(rel)) {
                use std::io::Read;
                while let Ok(k) = f.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
            }
        }
        true
    })?;
    Ok(n)
}

/// Runs the section.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let bytes = ctx.cfg.pull_bytes;
    let seed = ctx.cfg.seed;
    let pct = ctx.cfg.delta_pct;
    let base = ctx.cfg.work.join(format!("mixed-{bytes}"));
    let tree_root = base.join("tree");
    let basis = base.join("basis");
    let info = tree::ensure(&tree_root, "mixed", bytes, seed, |r| mixed::generate(r, bytes, seed))?;
    // The basis' target encodes the alteration rate, so another rate regenerates it.
    let b_target = bytes ^ (((pct * 1e6) as u64) << 48);
    let binfo = tree::ensure(&basis, "mixed-basis", b_target, seed, |r| mixed::make_basis(r, bytes, seed, pct))?;
    let shm = ctx.cfg.shm.clone();
    std::fs::create_dir_all(&shm)?;
    ensure!(
        free_bytes(&shm) > info.data_bytes + info.data_bytes / 5,
        "{} has {} bytes free; a pull of {} bytes needs more",
        shm.display(),
        free_bytes(&shm),
        info.data_bytes
    );
    eprintln!("reading the trees into the page cache ...");
    read_all(&tree_root)?;
    read_all(&basis)?;
    let mut pair = Pair::start(&ctx.run_dir("pull"), &ctx.cfg.rsync, &ctx.cfg.rsyncd, &[Module { name: "mixed".into(), path: tree_root.clone() }], &[])?;
    let timeout = Duration::from_secs(ctx.cfg.client_timeout);
    let gib = info.data_bytes as f64 / (1u64 << 30) as f64;
    let dest = shm.join("dest");
    'outer: for (comp, flags) in COMPRESSIONS {
        for kind_of_pull in ["full", "delta"] {
            if ctx.over_budget(&format!("{kind_of_pull} pulls with {comp} and the rest")) {
                break 'outer;
            }
            ctx.store.begin_unit(Section::Pull.name(), kind_of_pull, bytes, comp, 1);
            for run in 0..ctx.cfg.pull_runs {
                for kind in Kind::order(run) {
                    if dest.exists() {
                        std::fs::remove_dir_all(&dest)?;
                    }
                    if kind_of_pull == "delta" {
                        let st = Command::new("cp").arg("-a").arg(&basis).arg(&dest).status().context("cp -a")?;
                        ensure!(st.success(), "cp -a {} {} failed", basis.display(), dest.display());
                    } else {
                        std::fs::create_dir_all(&dest)?;
                    }
                    let mut args: Vec<String> = vec!["-a".into()];
                    args.extend(flags.iter().map(|s| s.to_string()));
                    let d = pair.get(kind);
                    let r = measure_round(d, vec![rsync_cmd(&ctx.cfg.rsync, &args, &d.url("mixed"), &format!("{}/", dest.display()))], timeout, ctx.tck)?;
                    std::fs::remove_dir_all(&dest)?;
                    if !r.all_ok() {
                        ctx.store.note("pull", format!("{} {kind_of_pull} {comp}: client failed: {}", kind.name(), r.failure().unwrap_or_default()));
                        continue;
                    }
                    let s = r.stats[0];
                    if s.transferred != info.files as f64 {
                        ctx.store.note("pull", format!("{} {kind_of_pull} {comp}: {} files transferred, expected {}", kind.name(), s.transferred, info.files));
                    }
                    let wall = r.clients[0].wall_s.unwrap_or(f64::NAN);
                    eprintln!(
                        "pull {kind_of_pull:5} {comp:4} #{} {:5}: wall {wall:.1} s ({:.0} MiB/s), server cpu {:.2} s, client cpu {:.2} s, literal {:.0} MiB, received {:.0} MiB, load {:.1}",
                        run + 1,
                        kind.name(),
                        info.data_bytes as f64 / 1048576.0 / wall,
                        r.server_cpu_s,
                        r.client_cpu_s,
                        s.literal / 1048576.0,
                        s.bytes_received / 1048576.0,
                        r.load1
                    );
                    for (m, v) in [
                        ("wall_s", wall),
                        ("throughput_mib_s", info.data_bytes as f64 / 1048576.0 / wall),
                        ("server_cpu_s", r.server_cpu_s),
                        ("server_cpu_per_gib_s", r.server_cpu_s / gib),
                        ("client_cpu_s", r.client_cpu_s),
                        ("bytes_received", s.bytes_received),
                        ("bytes_sent", s.bytes_sent),
                        ("literal_bytes", s.literal),
                        ("matched_bytes", s.matched),
                        ("server_peak_anon_mib", r.peak.anon_kb as f64 / 1024.0),
                    ] {
                        ctx.push(Section::Pull, kind_of_pull, bytes, comp, 1, kind.name(), m, run as u32 + 1, v, r.load1);
                    }
                }
            }
            ctx.checkpoint()?;
        }
    }
    let _ = std::fs::remove_dir_all(&dest);
    eprintln!("delta basis: {}", binfo.describe());
    Ok(())
}
