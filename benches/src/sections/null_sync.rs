//! Null sync: a client whose copy is already current pulls again.
//!
//! For each mirror tree size, both daemons serve the tree as module
//! `mirror`; the client copy is the same tree generated again, made exact
//! by one unmeasured `-aH --delete` pull (it deletes the 0750 directories
//! both daemons hide). Then, for each client option set
//! ([`super::NULL_SCENARIOS`]: `-a`, incremental recursion; `-aH --delete
//! --delay-updates`, the mirror form, one full file list) and each number of
//! concurrent clients, `runs` rounds per daemon, alternating: N clients
//! start at once, all pulling into the same copy (a null sync writes
//! nothing).
//!
//! Per round: client wall times, server CPU (stock: the daemon plus its
//! reaped per-connection children; ours: the process), client CPU, peak
//! server memory (`RssAnon` and `RssFile`, summed over stock's children),
//! bytes on the wire (client `--stats`).

use std::time::Duration;

use anyhow::{ensure, Result};

use super::{scenario_flags, Ctx, Section, NULL_SCENARIOS};
use crate::client::{measure_round, rsync_cmd, Round};
use crate::daemon::{Kind, Module, Pair};
use crate::results::median;

const MIB: f64 = 1024.0;

/// Starts both daemons on the mirror tree of `entries` and makes the
/// client copy current; checks that each daemon then sees a null sync for
/// every scenario (which also fills our file-list cache, the steady state of
/// a busy mirror). Returns the pair and the copy's path.
pub fn prepare(ctx: &mut Ctx, entries: u64, section: Section) -> Result<(Pair, std::path::PathBuf)> {
    let (tree, _) = ctx.mirror(entries)?;
    let copy = ctx.mirror_copy(entries)?;
    let mut pair = Pair::start(&ctx.run_dir(&format!("{}-{entries}", section.name())), &ctx.cfg.rsync, &ctx.cfg.rsyncd, &[Module { name: "mirror".into(), path: tree }], &[])?;
    let timeout = Duration::from_secs(ctx.cfg.client_timeout);
    let dest = format!("{}/", copy.display());
    let pull = |pair: &mut Pair, kind: Kind, name: &str| -> Result<Round> {
        let d = pair.get(kind);
        let r = measure_round(d, vec![rsync_cmd(&ctx.cfg.rsync, &scenario_flags(name), &d.url("mirror"), &dest)], timeout, ctx.tck)?;
        ensure!(r.all_ok(), "{} warm-up pull ({name}) failed: {}", kind.name(), r.failure().unwrap_or_default());
        Ok(r)
    };
    // Stock, mirror form: the copy becomes exact (deletes what both daemons hide).
    pull(&mut pair, Kind::Stock, "mirror")?;
    for (i, (name, _)) in NULL_SCENARIOS.iter().enumerate() {
        for kind in Kind::order(i) {
            let r = pull(&mut pair, kind, name)?;
            ensure!(
                r.stats[0].transferred == 0.0 && r.stats[0].deleted == 0.0,
                "{} pull {name} of a current copy transferred {} files and deleted {}: the daemons disagree about the tree",
                kind.name(),
                r.stats[0].transferred,
                r.stats[0].deleted
            );
        }
    }
    Ok((pair, copy))
}

/// Records one round's metrics.
fn record(ctx: &mut Ctx, scenario: &str, entries: u64, conc: usize, kind: Kind, run: usize, r: &Round) {
    let c = conc as u32;
    let walls = r.walls();
    let st = |f: &dyn Fn(&crate::client::Stats) -> f64| median(r.stats.iter().map(f).collect());
    let vals: Vec<(&str, f64)> = vec![
        ("client_wall_s", median(walls.clone())),
        ("client_wall_max_s", walls.iter().cloned().fold(f64::NAN, f64::max)),
        ("round_wall_s", r.round_wall_s),
        ("server_cpu_s", r.server_cpu_s),
        ("server_cpu_per_client_s", r.server_cpu_s / conc as f64),
        ("client_cpu_per_client_s", r.client_cpu_s / conc as f64),
        ("server_peak_anon_mib", r.peak.anon_kb as f64 / MIB),
        ("server_peak_file_mib", r.peak.file_kb as f64 / MIB),
        ("server_peak_total_mib", r.peak.total_kb as f64 / MIB),
        ("server_idle_anon_mib", r.idle.anon_kb as f64 / MIB),
        ("server_idle_file_mib", r.idle.file_kb as f64 / MIB),
        ("server_procs_peak", r.peak.procs as f64),
        ("bytes_received", st(&|s| s.bytes_received)),
        ("bytes_sent", st(&|s| s.bytes_sent)),
        ("entries_in_list", st(&|s| s.files)),
    ];
    for (m, v) in vals {
        ctx.push(Section::NullSync, scenario, entries, "-", c, kind.name(), m, run as u32, v, r.load1);
    }
}

/// Runs the section.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let sizes = ctx.cfg.sizes.clone();
    let concs = ctx.cfg.conc.clone();
    let runs = ctx.cfg.runs;
    let timeout = Duration::from_secs(ctx.cfg.client_timeout);
    for &entries in &sizes {
        if ctx.over_budget(&format!("null syncs of {entries} entries")) {
            break;
        }
        let (mut pair, copy) = prepare(ctx, entries, Section::NullSync)?;
        let dest = format!("{}/", copy.display());
        ctx.store.begin_unit("setup", "ours-startup", entries, "-", 0);
        let s = pair.startup.clone();
        for (m, v) in [
            ("startup_s", s.secs),
            ("snapshot_mib", s.snapshot_bytes as f64 / 1048576.0),
            ("rss_anon_mib", s.mem.anon_kb as f64 / MIB),
            ("rss_file_mib", s.mem.file_kb as f64 / MIB),
            ("vmhwm_mib", s.hwm_kb as f64 / MIB),
        ] {
            ctx.store.push(
                crate::results::Key {
                    section: "setup".into(),
                    scenario: "ours-startup".into(),
                    tree: entries,
                    variant: "-".into(),
                    conc: 0,
                    daemon: "ours".into(),
                    metric: m.into(),
                },
                0,
                v,
                crate::procstat::load1(),
            );
        }
        'outer: for (scenario, _) in NULL_SCENARIOS {
            for &conc in &concs {
                if ctx.over_budget(&format!("{scenario} x{conc} at {entries} entries and the rest of this size")) {
                    break 'outer;
                }
                ctx.store.begin_unit(Section::NullSync.name(), scenario, entries, "-", conc as u32);
                for run in 0..runs {
                    for kind in Kind::order(run) {
                        let d = pair.get(kind);
                        let cmds = (0..conc).map(|_| rsync_cmd(&ctx.cfg.rsync, &scenario_flags(scenario), &d.url("mirror"), &dest)).collect();
                        let r = measure_round(d, cmds, timeout, ctx.tck)?;
                        if !r.all_ok() {
                            ctx.store.note("null-sync", format!("{} {scenario} x{conc} {entries}: client failed: {}", kind.name(), r.failure().unwrap_or_default()));
                            continue;
                        }
                        if r.stats.iter().any(|s| s.transferred != 0.0) {
                            ctx.store.note("null-sync", format!("{} {scenario} x{conc} {entries}: a null sync transferred files", kind.name()));
                        }
                        if !r.idle_after {
                            ctx.store.note("null-sync", format!("{} {scenario} x{conc} {entries} run {}: daemon not idle 120 s after the clients", kind.name(), run + 1));
                        }
                        eprintln!(
                            "null {scenario:6} {entries:>8} x{conc:<2} #{} {:5}: client wall {:.2} s (max {:.2}), server cpu {:.2} s, peak anon {:.1} MiB file {:.1} MiB, load {:.1}",
                            run + 1,
                            kind.name(),
                            median(r.walls()),
                            r.walls().iter().cloned().fold(0.0, f64::max),
                            r.server_cpu_s,
                            r.peak.anon_kb as f64 / MIB,
                            r.peak.file_kb as f64 / MIB,
                            r.load1
                        );
                        record(ctx, scenario, entries, conc, kind, run + 1, &r);
                    }
                }
                ctx.checkpoint()?;
            }
        }
        drop(pair);
        ctx.checkpoint()?;
    }
    Ok(())
}
