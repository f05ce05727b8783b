//! From samples to results: `results.csv` / `results.json` (medians with
//! min/max), `summary.md` (tables, the targets and whether they are met),
//! `SETUP.md` (machine, commands, trees) and SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use anyhow::Result;
use serde_json::json;

use crate::results::{Agg, Key, Store};
use crate::sections::{scenario_text, Config, NULL_SCENARIOS};
use crate::svg::{self, Chart, Point, Series};
use crate::tree;

/// Read access to the aggregated results.
pub struct View {
    /// Aggregates per key.
    pub agg: BTreeMap<Key, Agg>,
}

impl View {
    /// Of a store.
    pub fn new(store: &Store) -> View {
        View { agg: store.aggregate() }
    }

    /// The aggregate of one key.
    #[allow(clippy::too_many_arguments)]
    pub fn get(&self, section: &str, scenario: &str, tree: u64, variant: &str, conc: u32, daemon: &str, metric: &str) -> Option<Agg> {
        let k = Key {
            section: section.into(),
            scenario: scenario.into(),
            tree,
            variant: variant.into(),
            conc,
            daemon: daemon.into(),
            metric: metric.into(),
        };
        self.agg.get(&k).copied()
    }

    /// Median of one key, NaN if absent.
    #[allow(clippy::too_many_arguments)]
    pub fn med(&self, section: &str, scenario: &str, tree: u64, variant: &str, conc: u32, daemon: &str, metric: &str) -> f64 {
        self.get(section, scenario, tree, variant, conc, daemon, metric).map(|a| a.median).unwrap_or(f64::NAN)
    }

    /// Tree sizes with results in `section` (optionally one scenario).
    pub fn trees(&self, section: &str, scenario: Option<&str>) -> Vec<u64> {
        let mut v: Vec<u64> = self.agg.keys().filter(|k| k.section == section && scenario.is_none_or(|s| k.scenario == s)).map(|k| k.tree).collect();
        v.dedup();
        v.sort();
        v.dedup();
        v
    }

    /// Client counts with results for a scenario and tree.
    pub fn concs(&self, section: &str, scenario: &str, tree: u64) -> Vec<u32> {
        let mut v: Vec<u32> = self.agg.keys().filter(|k| k.section == section && k.scenario == scenario && k.tree == tree).map(|k| k.conc).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Keys of a section matching a predicate, deduplicated by (scenario, tree, variant, conc).
    fn units(&self, section: &str) -> Vec<(String, u64, String, u32)> {
        let mut v: Vec<(String, u64, String, u32)> =
            self.agg.keys().filter(|k| k.section == section).map(|k| (k.scenario.clone(), k.tree, k.variant.clone(), k.conc)).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Smallest and largest load average over a section's runs.
    pub fn load_range(&self, section: &str) -> (f64, f64) {
        self.agg
            .iter()
            .filter(|(k, _)| k.section == section)
            .fold((f64::NAN, f64::NAN), |(lo, hi), (_, a)| (lo.min(a.load_min), hi.max(a.load_max)))
    }
}

/// A number with about three significant digits.
pub fn num(v: f64) -> String {
    if v.is_nan() {
        return "–".into();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e9 {
        format!("{:.2}e9", v / 1e9)
    } else if a >= 100.0 {
        let s = format!("{v:.0}");
        // Thousands separators for readability.
        let (sign, digits) = s.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", &s));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        format!("{v:.4}")
    }
}

/// "median (min–max)" when there is more than one value.
pub fn mm(a: Option<Agg>) -> String {
    match a {
        None => "–".into(),
        Some(a) if a.n > 1 && a.max > a.min => format!("{} ({}–{})", num(a.median), num(a.min), num(a.max)),
        Some(a) => num(a.median),
    }
}

/// `a / b` as "12.3x" (`–` when undefined).
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        if a > 0.0 && b == 0.0 {
            return "∞ (below timer resolution)".into();
        }
        return "–".into();
    }
    let r = a / b;
    if r >= 10.0 {
        format!("{r:.0}x")
    } else {
        format!("{r:.2}x")
    }
}

/// Entries as "10k", "1M".
pub fn size(n: u64) -> String {
    svg::fmt_num(n as f64)
}

/// Verdict of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Measured and met.
    Met,
    /// Measured and missed.
    Missed,
    /// Not measured (section not run, or skipped).
    NotMeasured,
}

impl Verdict {
    fn text(self) -> &'static str {
        match self {
            Verdict::Met => "**met**",
            Verdict::Missed => "**missed**",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// One target row.
#[derive(Debug, Clone)]
pub struct TargetRow {
    /// The target.
    pub target: String,
    /// Where it was evaluated.
    pub at: String,
    /// What was measured.
    pub measured: String,
    /// Verdict.
    pub verdict: Verdict,
    /// How far off when missed (or the margin when met).
    pub margin: String,
}

fn largest(v: &[u64]) -> Option<u64> {
    v.iter().copied().max()
}

/// Evaluates the issue's targets against the results.
pub fn targets(v: &View, tck: f64) -> Vec<TargetRow> {
    let mut out = Vec::new();
    let na = |target: &str| TargetRow { target: target.into(), at: "–".into(), measured: "–".into(), verdict: Verdict::NotMeasured, margin: "".into() };
    // 1. Null sync server CPU.
    let t1 = "null sync, 1M entries: server CPU ≤ 1/100 of stock's";
    match largest(&v.trees("null-sync", None)) {
        None => out.push(na(t1)),
        Some(n) => {
            for (sc, _) in NULL_SCENARIOS {
                let (s, o) = (v.med("null-sync", sc, n, "-", 1, "stock", "server_cpu_s"), v.med("null-sync", sc, n, "-", 1, "ours", "server_cpu_s"));
                if s.is_nan() || o.is_nan() {
                    continue;
                }
                // Ours below the tick resolution is bounded by one tick.
                let o_b = if o == 0.0 { 1.0 / tck } else { o };
                let r = o_b / s;
                let met = r <= 0.01;
                let cmax = v.concs("null-sync", sc, n).into_iter().max().unwrap_or(1);
                let per = |d: &str| v.med("null-sync", sc, n, "-", cmax, d, "server_cpu_per_client_s");
                out.push(TargetRow {
                    target: t1.into(),
                    at: format!("{} entries, {}, 1 client", size(n), scenario_text(sc)),
                    measured: format!(
                        "ours {}{} s vs stock {} s = 1/{:.0} (at {cmax} clients, per client: ours {} s, stock {} s)",
                        if o == 0.0 { "< " } else { "" },
                        num(o_b),
                        num(s),
                        1.0 / r,
                        num(per("ours")),
                        num(per("stock"))
                    ),
                    verdict: if met { Verdict::Met } else { Verdict::Missed },
                    margin: if met { format!("{:.1}x better than needed", 0.01 / r) } else { format!("{:.1}x too much CPU", r / 0.01) },
                });
            }
        }
    }
    // 2. Zero syscalls on the tree.
    let t2 = "null sync: zero syscalls on the tree";
    match largest(&v.trees("strace", None)) {
        None => out.push(na(t2)),
        Some(n) => {
            for (sc, _) in NULL_SCENARIOS {
                let o = v.med("strace", sc, n, "-", 1, "ours", "syscalls_on_tree");
                if o.is_nan() {
                    continue;
                }
                let s = v.med("strace", sc, n, "-", 1, "stock", "syscalls_on_tree");
                out.push(TargetRow {
                    target: t2.into(),
                    at: format!("{} entries, {}", size(n), scenario_text(sc)),
                    measured: format!("ours {} (stock {})", num(o), num(s)),
                    verdict: if o == 0.0 { Verdict::Met } else { Verdict::Missed },
                    margin: if o == 0.0 { String::new() } else { format!("{} calls on the tree", num(o)) },
                });
            }
        }
    }
    // 3. Memory per extra client.
    let t3 = "null sync: server memory per extra concurrent client ≤ 1/4 of stock's";
    let mut any3 = false;
    if let Some(n) = largest(&v.trees("null-sync", None)) {
        for (sc, _) in NULL_SCENARIOS {
            let cs = v.concs("null-sync", sc, n);
            let (Some(&c1), Some(&cmax)) = (cs.first(), cs.last()) else { continue };
            if cmax <= c1 {
                continue;
            }
            let per = |d: &str, m: &str| (v.med("null-sync", sc, n, "-", cmax, d, m) - v.med("null-sync", sc, n, "-", c1, d, m)) / (cmax - c1) as f64;
            let (sa, oa) = (per("stock", "server_peak_anon_mib"), per("ours", "server_peak_anon_mib"));
            let (st, ot) = (per("stock", "server_peak_total_mib"), per("ours", "server_peak_total_mib"));
            if sa.is_nan() || oa.is_nan() || sa <= 0.0 {
                continue;
            }
            any3 = true;
            let r = oa.max(0.0) / sa;
            out.push(TargetRow {
                target: t3.into(),
                at: format!("{} entries, {}, {c1} → {cmax} clients, RssAnon", size(n), scenario_text(sc)),
                measured: format!(
                    "ours {} MiB vs stock {} MiB per extra client = {:.3}x (anon + file: ours {} vs stock {} MiB)",
                    num(oa),
                    num(sa),
                    r,
                    num(ot),
                    num(st)
                ),
                verdict: if r <= 0.25 { Verdict::Met } else { Verdict::Missed },
                margin: if r <= 0.25 { format!("{:.1}x better than needed", 0.25 / r.max(1e-9)) } else { format!("{:.1}x too much", r / 0.25) },
            });
        }
    }
    if !any3 {
        out.push(na(t3));
    }
    // 4. --files-from.
    let t4 = "--files-from with 1M names: under 5 s server time";
    match largest(&v.trees("files-from", Some("trusted"))) {
        None => out.push(na(t4)),
        Some(n) => {
            let o = v.med("files-from", "trusted", n, "-", 1, "ours", "server_cpu_s");
            let g = v.med("files-from", "trusted", n, "-", 1, "ours", "flist_gen_s");
            let s = v.med("files-from", "trusted", n, "-", 1, "stock", "server_cpu_s");
            let w = v.med("files-from", "trusted", n, "-", 1, "ours", "wall_s");
            out.push(TargetRow {
                target: t4.into(),
                at: format!("{} names, `--trust-sender`", size(n)),
                measured: format!("ours {} s CPU, list generation {} s, wall {} s (stock {} s CPU)", num(o), num(g), num(w), num(s)),
                verdict: if o < 5.0 { Verdict::Met } else { Verdict::Missed },
                margin: if o < 5.0 { format!("{} s to spare", num(5.0 - o)) } else { format!("{} s over", num(o - 5.0)) },
            });
        }
    }
    // 5, 6. Pulls.
    let t5 = "full pull throughput ≥ 1.2x stock";
    let t6 = "delta pull server CPU per GB ≤ 0.8x stock";
    let pulls = v.trees("pull", None);
    match largest(&pulls) {
        None => {
            out.push(na(t5));
            out.push(na(t6));
        }
        Some(n) => {
            for (comp, _) in crate::sections::pull::COMPRESSIONS {
                let (s, o) = (v.med("pull", "full", n, comp, 1, "stock", "throughput_mib_s"), v.med("pull", "full", n, comp, 1, "ours", "throughput_mib_s"));
                if !(s.is_nan() || o.is_nan()) {
                    let r = o / s;
                    out.push(TargetRow {
                        target: t5.into(),
                        at: format!("{:.1} GiB, compression {comp}", n as f64 / (1u64 << 30) as f64),
                        measured: format!("ours {} vs stock {} MiB/s = {:.2}x", num(o), num(s), r),
                        verdict: if r >= 1.2 { Verdict::Met } else { Verdict::Missed },
                        margin: if r >= 1.2 { String::new() } else { format!("{:.0}% short", (1.2 - r) / 1.2 * 100.0) },
                    });
                }
            }
            for (comp, _) in crate::sections::pull::COMPRESSIONS {
                let (s, o) =
                    (v.med("pull", "delta", n, comp, 1, "stock", "server_cpu_per_gib_s"), v.med("pull", "delta", n, comp, 1, "ours", "server_cpu_per_gib_s"));
                if !(s.is_nan() || o.is_nan()) {
                    let r = o / s;
                    out.push(TargetRow {
                        target: t6.into(),
                        at: format!("{:.1} GiB, compression {comp}", n as f64 / (1u64 << 30) as f64),
                        measured: format!("ours {} vs stock {} CPU-s/GiB = {:.2}x", num(o), num(s), r),
                        verdict: if r <= 0.8 { Verdict::Met } else { Verdict::Missed },
                        margin: if r <= 0.8 { String::new() } else { format!("{:.0}% over", (r - 0.8) / 0.8 * 100.0) },
                    });
                }
            }
        }
    }
    // 7, 8. Snapshot.
    let t7 = "snapshot build no slower than `find -printf '%s %T@'`";
    let t8 = "small update cost flat in tree size";
    let snaps = v.trees("snapshot", None);
    if snaps.is_empty() {
        out.push(na(t7));
        out.push(na(t8));
    } else {
        for &n in &snaps {
            let (b, f) = (v.med("snapshot", "snapshot", n, "-", 1, "ours", "build_s"), v.med("snapshot", "snapshot", n, "-", 1, "find", "walk_s"));
            if b.is_nan() || f.is_nan() {
                continue;
            }
            out.push(TargetRow {
                target: t7.into(),
                at: format!("{} entries", size(n)),
                measured: format!("build {} s vs find {} s = {:.2}x", num(b), num(f), b / f),
                verdict: if b <= f { Verdict::Met } else { Verdict::Missed },
                margin: if b <= f { String::new() } else { format!("{:.0}% slower", (b / f - 1.0) * 100.0) },
            });
        }
        let (lo, hi) = (snaps[0], snaps[snaps.len() - 1]);
        let u = |n| v.med("snapshot", "snapshot", n, "-", 1, "ours", "update_add_ms");
        let (a, b) = (u(lo), u(hi));
        if lo < hi && !a.is_nan() && !b.is_nan() {
            let r = b / a;
            out.push(TargetRow {
                target: t8.into(),
                at: format!("{} → {} entries (criterion: ≤ 2x over that range)", size(lo), size(hi)),
                measured: format!(
                    "{} ms → {} ms per one-file refresh ({:.2}x); {}",
                    num(a),
                    num(b),
                    r,
                    snaps.iter().map(|&n| format!("{}: {} ms", size(n), num(u(n)))).collect::<Vec<_>>().join(", ")
                ),
                verdict: if r <= 2.0 { Verdict::Met } else { Verdict::Missed },
                margin: if r <= 2.0 { String::new() } else { format!("grows {r:.1}x") },
            });
        } else {
            out.push(na(t8));
        }
    }
    out
}

fn color(daemon: &str) -> &'static str {
    if daemon == "stock" {
        "#d62728"
    } else {
        "#1f77b4"
    }
}

fn point(x: f64, a: Option<Agg>) -> Option<Point> {
    a.map(|a| Point { x, y: a.median, lo: a.min, hi: a.max })
}

/// The null-sync plots: (file name, chart).
pub fn plots(v: &View, subtitle: &str) -> Vec<(String, Chart)> {
    let mut out = Vec::new();
    let trees = v.trees("null-sync", None);
    if trees.is_empty() {
        return out;
    }
    let series_vs_size = |metric: &str| -> Vec<Series> {
        let mut s = Vec::new();
        for (sc, _) in NULL_SCENARIOS {
            for d in ["stock", "ours"] {
                let pts: Vec<Point> = trees.iter().filter_map(|&n| point(n as f64, v.get("null-sync", sc, n, "-", 1, d, metric))).collect();
                if !pts.is_empty() {
                    s.push(Series { label: format!("{d} {}", scenario_text(sc).trim_matches('`')), color: color(d).into(), dashed: *sc != "a", points: pts });
                }
            }
        }
        s
    };
    out.push((
        "null-sync-server-cpu-vs-size.svg".into(),
        Chart {
            title: "Null sync: server CPU vs tree size (1 client)".into(),
            subtitle: subtitle.into(),
            x_label: "tree entries".into(),
            y_label: "server CPU per pull (s)".into(),
            x_log: true,
            y_log: true,
            series: series_vs_size("server_cpu_s"),
        },
    ));
    out.push((
        "null-sync-client-wall-vs-size.svg".into(),
        Chart {
            title: "Null sync: client wall time vs tree size (1 client)".into(),
            subtitle: subtitle.into(),
            x_label: "tree entries".into(),
            y_label: "client wall time (s)".into(),
            x_log: true,
            y_log: true,
            series: series_vs_size("client_wall_s"),
        },
    ));
    let n = trees[trees.len() - 1];
    let series_vs_conc = |metric: &str| -> Vec<Series> {
        let mut s = Vec::new();
        for (sc, _) in NULL_SCENARIOS {
            for d in ["stock", "ours"] {
                let pts: Vec<Point> =
                    v.concs("null-sync", sc, n).into_iter().filter_map(|c| point(c as f64, v.get("null-sync", sc, n, "-", c, d, metric))).collect();
                if !pts.is_empty() {
                    s.push(Series { label: format!("{d} {}", scenario_text(sc).trim_matches('`')), color: color(d).into(), dashed: *sc != "a", points: pts });
                }
            }
        }
        s
    };
    for (file, title, ylabel, metric, ylog) in [
        ("null-sync-server-cpu-vs-clients.svg", "server CPU vs concurrent clients", "server CPU per round, all clients (s)", "server_cpu_s", true),
        ("null-sync-client-wall-vs-clients.svg", "client wall time vs concurrent clients", "client wall time, median client (s)", "client_wall_s", false),
        ("null-sync-server-anon-vs-clients.svg", "server memory vs concurrent clients", "peak server RssAnon (MiB)", "server_peak_anon_mib", false),
    ] {
        out.push((
            file.into(),
            Chart {
                title: format!("Null sync, {} entries: {title}", size(n)),
                subtitle: subtitle.into(),
                x_label: "concurrent clients".into(),
                y_label: ylabel.into(),
                x_log: false,
                y_log: ylog,
                series: series_vs_conc(metric),
            },
        ));
    }
    out
}

fn load_text(v: &View, section: &str) -> String {
    let (lo, hi) = v.load_range(section);
    if lo.is_nan() {
        String::new()
    } else {
        format!("load average {lo:.1}–{hi:.1} during the runs")
    }
}

/// The Markdown summary.
pub fn summary(v: &View, store: &Store, cfg: &Config, tck: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmarks: stock rsync daemon vs our rsyncd\n");
    let _ = writeln!(
        s,
        "Generated by `benches/run.sh` (`bench-all`); machine, commands and trees in [SETUP.md](SETUP.md), \
         medians with min/max per configuration in [results.csv](results.csv) / [results.json](results.json), \
         every run in [raw.csv](raw.csv). Each configuration alternates between the daemons (stock first on odd runs, \
         ours first on even ones). \"x\" ratios are stock/ours unless a column says otherwise; CPU times have a \
         resolution of 1/{tck} s.\n"
    );
    // Targets.
    let _ = writeln!(s, "## Targets\n");
    let _ = writeln!(s, "| target | where | measured | verdict | margin |\n|---|---|---|---|---|");
    for t in targets(v, tck) {
        let _ = writeln!(s, "| {} | {} | {} | {} | {} |", t.target, t.at, t.measured, t.verdict.text(), t.margin);
    }
    let _ = writeln!(s);
    // Null sync.
    let trees = v.trees("null-sync", None);
    if !trees.is_empty() {
        let _ = writeln!(s, "## Null sync\n");
        let _ = writeln!(
            s,
            "A client whose copy is current pulls the mirror tree again; N clients start at once. Server CPU: stock, the \
             daemon plus its reaped per-connection children; ours, the daemon process. Memory: peak `RssAnon` / `RssFile` \
             during the round (stock: summed over its children). Bytes: received by one client. {}.\n",
            load_text(v, "null-sync")
        );
        for (sc, _) in NULL_SCENARIOS {
            let _ = writeln!(s, "### {}\n", scenario_text(sc));
            let _ = writeln!(
                s,
                "| entries | clients | client wall stock (s) | ours (s) | server CPU stock (s) | ours (s) | CPU stock/ours | peak anon stock / ours (MiB) | peak file stock / ours (MiB) | bytes to client stock / ours |"
            );
            let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for &n in &trees {
                for c in v.concs("null-sync", sc, n) {
                    let g = |d: &str, m: &str| v.get("null-sync", sc, n, "-", c, d, m);
                    let m = |d: &str, m: &str| v.med("null-sync", sc, n, "-", c, d, m);
                    let _ = writeln!(
                        s,
                        "| {} | {c} | {} | {} | {} | {} | {} | {} / {} | {} / {} | {} / {} |",
                        size(n),
                        mm(g("stock", "client_wall_s")),
                        mm(g("ours", "client_wall_s")),
                        mm(g("stock", "server_cpu_s")),
                        mm(g("ours", "server_cpu_s")),
                        ratio(m("stock", "server_cpu_s"), m("ours", "server_cpu_s")),
                        num(m("stock", "server_peak_anon_mib")),
                        num(m("ours", "server_peak_anon_mib")),
                        num(m("stock", "server_peak_file_mib")),
                        num(m("ours", "server_peak_file_mib")),
                        num(m("stock", "bytes_received")),
                        num(m("ours", "bytes_received")),
                    );
                }
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s, "Memory per extra concurrent client (peak at the most clients minus peak at one, divided by the extra clients):\n");
        let _ = writeln!(s, "| entries | options | clients | RssAnon stock / ours (MiB per client) | anon + file stock / ours (MiB per client) |\n|---:|---|---|---:|---:|");
        for &n in &trees {
            for (sc, _) in NULL_SCENARIOS {
                let cs = v.concs("null-sync", sc, n);
                let (Some(&c1), Some(&cmax)) = (cs.first(), cs.last()) else { continue };
                if cmax <= c1 {
                    continue;
                }
                let per = |d: &str, m: &str| (v.med("null-sync", sc, n, "-", cmax, d, m) - v.med("null-sync", sc, n, "-", c1, d, m)) / (cmax - c1) as f64;
                let _ = writeln!(
                    s,
                    "| {} | {} | {c1} → {cmax} | {} / {} | {} / {} |",
                    size(n),
                    scenario_text(sc),
                    num(per("stock", "server_peak_anon_mib")),
                    num(per("ours", "server_peak_anon_mib")),
                    num(per("stock", "server_peak_total_mib")),
                    num(per("ours", "server_peak_total_mib"))
                );
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "![server CPU vs size](null-sync-server-cpu-vs-size.svg)\n![client wall vs size](null-sync-client-wall-vs-size.svg)\n");
        let _ = writeln!(s, "![server CPU vs clients](null-sync-server-cpu-vs-clients.svg)\n![client wall vs clients](null-sync-client-wall-vs-clients.svg)\n![server memory vs clients](null-sync-server-anon-vs-clients.svg)\n");
        let st = v.trees("setup", Some("ours-startup"));
        if !st.is_empty() {
            let _ = writeln!(s, "Our daemon's start-up (snapshot build of the module, not part of any pull):\n");
            let _ = writeln!(s, "| entries | spawn → listening (s) | snapshot file (MiB) | RssAnon / RssFile after start-up (MiB) | VmHWM (MiB) |\n|---:|---:|---:|---:|---:|");
            for n in st {
                let m = |k: &str| v.med("setup", "ours-startup", n, "-", 0, "ours", k);
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} / {} | {} |",
                    size(n),
                    num(m("startup_s")),
                    num(m("snapshot_mib")),
                    num(m("rss_anon_mib")),
                    num(m("rss_file_mib")),
                    num(m("vmhwm_mib"))
                );
            }
            let _ = writeln!(s);
        }
    }
    // strace.
    let st_trees = v.trees("strace", None);
    if !st_trees.is_empty() {
        let _ = writeln!(s, "## Syscalls during one null sync (strace)\n");
        let _ = writeln!(
            s,
            "`strace -f -y` attached to the daemon for one pull; \"on the tree\" = calls whose arguments name the module tree \
             (a path, or a descriptor open on it) or pass a path relative to a module directory.\n"
        );
        let _ = writeln!(s, "| entries | options | stock: all / on the tree | ours: all / on the tree | stock's calls on the tree | ours |\n|---:|---|---:|---:|---|---|");
        for &n in &st_trees {
            for (sc, _) in NULL_SCENARIOS {
                let m = |d: &str, k: &str| v.med("strace", sc, n, "-", 1, d, k);
                if m("stock", "syscalls_total").is_nan() && m("ours", "syscalls_total").is_nan() {
                    continue;
                }
                let top = |d: &str| {
                    let mut calls: Vec<(String, f64)> = v
                        .agg
                        .iter()
                        .filter(|(k, _)| k.section == "strace" && k.scenario == *sc && k.tree == n && k.daemon == d && k.metric.starts_with("on_tree:"))
                        .map(|(k, a)| (k.metric["on_tree:".len()..].to_string(), a.median))
                        .collect();
                    calls.sort_by(|a, b| b.1.total_cmp(&a.1));
                    calls.iter().take(5).map(|(k, c)| format!("{k} {}", num(*c))).collect::<Vec<_>>().join(", ")
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} / {} | {} / {} | {} | {} |",
                    size(n),
                    scenario_text(sc),
                    num(m("stock", "syscalls_total")),
                    num(m("stock", "syscalls_on_tree")),
                    num(m("ours", "syscalls_total")),
                    num(m("ours", "syscalls_on_tree")),
                    top("stock"),
                    top("ours")
                );
            }
        }
        let _ = writeln!(s);
    }
    // Pulls.
    let pulls = v.trees("pull", None);
    if !pulls.is_empty() {
        let _ = writeln!(s, "## Full and delta pulls of real data\n");
        let _ = writeln!(
            s,
            "`rsync -a [-z --compress-choice=C]` of the mixed tree into tmpfs; `delta`: into a copy that differs in a few \
             percent of its blocks, every file's mtime older. Throughput = tree bytes / client wall time. {}.\n",
            load_text(v, "pull")
        );
        let _ = writeln!(
            s,
            "| data | pull | compression | throughput stock / ours (MiB/s) | ours/stock | server CPU per GiB stock / ours (s) | ours/stock | client CPU stock / ours (s) | bytes to client stock / ours | literal data stock / ours |"
        );
        let _ = writeln!(s, "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for &n in &pulls {
            for pk in ["full", "delta"] {
                for (comp, _) in crate::sections::pull::COMPRESSIONS {
                    let g = |d: &str, m: &str| v.get("pull", pk, n, comp, 1, d, m);
                    let m = |d: &str, m: &str| v.med("pull", pk, n, comp, 1, d, m);
                    if g("stock", "wall_s").is_none() && g("ours", "wall_s").is_none() {
                        continue;
                    }
                    let _ = writeln!(
                        s,
                        "| {:.2} GiB | {pk} | {comp} | {} / {} | {} | {} / {} | {} | {} / {} | {} / {} | {} / {} |",
                        n as f64 / (1u64 << 30) as f64,
                        mm(g("stock", "throughput_mib_s")),
                        mm(g("ours", "throughput_mib_s")),
                        ratio(m("ours", "throughput_mib_s"), m("stock", "throughput_mib_s")),
                        mm(g("stock", "server_cpu_per_gib_s")),
                        mm(g("ours", "server_cpu_per_gib_s")),
                        ratio(m("ours", "server_cpu_per_gib_s"), m("stock", "server_cpu_per_gib_s")),
                        num(m("stock", "client_cpu_s")),
                        num(m("ours", "client_cpu_s")),
                        num(m("stock", "bytes_received")),
                        num(m("ours", "bytes_received")),
                        num(m("stock", "literal_bytes")),
                        num(m("ours", "literal_bytes")),
                    );
                }
            }
        }
        let _ = writeln!(s);
    }
    // --files-from.
    let ff = v.trees("files-from", None);
    if !ff.is_empty() {
        let _ = writeln!(s, "## `--files-from`\n");
        let _ = writeln!(
            s,
            "`rsync -a -n --stats [--trust-sender] --files-from=LIST rsync://…/mirror/ TREE/` (a null sync of N named files); \
             `plain` is without `--trust-sender`, one run per daemon with a timeout. {}.\n",
            load_text(v, "files-from")
        );
        let _ = writeln!(
            s,
            "| names | client | wall stock / ours (s) | server CPU stock / ours (s) | CPU stock/ours | list generation, server-reported, stock / ours (s) | client CPU stock / ours (s) | peak anon stock / ours (MiB) |"
        );
        let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|");
        for &n in &ff {
            for sc in ["trusted", "plain"] {
                let g = |d: &str, m: &str| v.get("files-from", sc, n, "-", 1, d, m);
                let m = |d: &str, m: &str| v.med("files-from", sc, n, "-", 1, d, m);
                if g("stock", "server_cpu_s").is_none() && g("ours", "server_cpu_s").is_none() {
                    continue;
                }
                let wall = |d: &str| if m(d, "timed_out") >= 0.5 { "killed at timeout".to_string() } else { mm(g(d, "wall_s")) };
                let _ = writeln!(
                    s,
                    "| {} | {sc} | {} / {} | {} / {} | {} | {} / {} | {} / {} | {} / {} |",
                    size(n),
                    wall("stock"),
                    wall("ours"),
                    mm(g("stock", "server_cpu_s")),
                    mm(g("ours", "server_cpu_s")),
                    ratio(m("stock", "server_cpu_s"), m("ours", "server_cpu_s")),
                    num(m("stock", "flist_gen_s")),
                    num(m("ours", "flist_gen_s")),
                    num(m("stock", "client_cpu_s")),
                    num(m("ours", "client_cpu_s")),
                    num(m("stock", "server_peak_anon_mib")),
                    num(m("ours", "server_peak_anon_mib")),
                );
            }
        }
        let _ = writeln!(s);
    }
    // Snapshot.
    let sn = v.trees("snapshot", None);
    if !sn.is_empty() {
        let _ = writeln!(s, "## Snapshot\n");
        let _ = writeln!(
            s,
            "In process, warm cache: `build_snapshot` (scan, encode, write, fsync) vs `find TREE -printf '%s %T@\\n'`; open = map + \
             validate; iterate = walk of every entry; lookup = random paths; update = one file added to (or removed from) one \
             `Packages/<x>` directory, then `SnapshotStore::refresh` of that directory. {}.\n",
            load_text(v, "snapshot")
        );
        let _ = writeln!(
            s,
            "| entries | find (s) | build (s) | build/find | build CPU (s) | file (MiB) | bytes/entry | open (ms) | iterate (ms) | lookup (µs) | update: add / remove (ms) |"
        );
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for &n in &sn {
            let g = |d: &str, m: &str| v.get("snapshot", "snapshot", n, "-", 1, d, m);
            let m = |d: &str, m: &str| v.med("snapshot", "snapshot", n, "-", 1, d, m);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} / {} |",
                size(n),
                mm(g("find", "walk_s")),
                mm(g("ours", "build_s")),
                m("ours", "build_s") / m("find", "walk_s"),
                num(m("ours", "build_cpu_s")),
                num(m("ours", "snapshot_mib")),
                num(m("ours", "bytes_per_entry")),
                mm(g("ours", "open_ms")),
                mm(g("ours", "iterate_ms")),
                num(m("ours", "lookup_us")),
                mm(g("ours", "update_add_ms")),
                mm(g("ours", "update_remove_ms")),
            );
        }
        let _ = writeln!(s);
    }
    // Micro.
    let micro = v.units("micro");
    if !micro.is_empty() {
        let _ = writeln!(s, "## Micro-benchmarks (criterion, `benches/benches/hot_paths.rs`)\n");
        let _ = writeln!(s, "Short runs (warm-up {} s, measurement {} s per benchmark) on the shared machine: treat as ±20%.\n", cfg.criterion_secs.0, cfg.criterion_secs.1);
        let _ = writeln!(s, "| benchmark | median time | 95% interval | throughput |\n|---|---:|---:|---:|");
        for (id, _, variant, _) in micro {
            let m = |k: &str| v.med("micro", &id, 0, &variant, 1, "ours", k);
            let t = |ns: f64| {
                if ns >= 1e6 {
                    format!("{} ms", num(ns / 1e6))
                } else if ns >= 1e3 {
                    format!("{} µs", num(ns / 1e3))
                } else {
                    format!("{} ns", num(ns))
                }
            };
            let tp = match variant.as_str() {
                "bytes" => format!("{} MiB/s", num(m("per_second") / 1048576.0)),
                "elements" => format!("{} M/s", num(m("per_second") / 1e6)),
                _ => "–".into(),
            };
            let _ = writeln!(s, "| `{id}` | {} | {} – {} | {tp} |", t(m("median_ns")), t(m("median_ns_lo")), t(m("median_ns_hi")));
        }
        let _ = writeln!(s);
    }
    if !store.notes.is_empty() {
        let _ = writeln!(s, "## Notes from the runs\n");
        for (sec, notes) in &store.notes {
            for n in notes {
                let _ = writeln!(s, "- {sec}: {n}");
            }
        }
        let _ = writeln!(s);
    }
    s
}

/// SETUP.md: machine, commands, trees.
pub fn setup(cfg: &Config) -> String {
    let mut s = String::from("# Setup\n\n## Machine\n\n");
    s.push_str(&crate::machine::describe(&cfg.work, &cfg.shm, &cfg.rsync, &cfg.rsyncd, &cfg.ws));
    s.push_str("\n\n## Commands\n\n```sh\n");
    s.push_str(&fs::read_to_string(cfg.out.join("commands.txt")).unwrap_or_default());
    s.push_str(
        "```\n\nEach invocation above ran its sections and replaced their earlier samples in this directory.\n\
         Daemons: `rsync --daemon --no-detach --config=rsyncd.conf --port=P --address=127.0.0.1` and \
         `rsyncd --config=rsyncd.conf --port=0 --address=127.0.0.1 --no-watch --state-dir=STATE` on one config:\n\n```\n",
    );
    s.push_str(&crate::daemon::conf_text(&[crate::daemon::Module { name: "mirror".into(), path: "TREE".into() }], Path::new("LOG")));
    s.push_str("```\n\n## Trees\n\n");
    let mut trees = Vec::new();
    if let Ok(rd) = fs::read_dir(&cfg.work) {
        for e in rd.flatten() {
            for sub in ["tree", "copy", "basis"] {
                let p = e.path().join(sub);
                if let Some(t) = tree::read_marker(&p) {
                    trees.push(format!("- `{}`: {} tree, {}", p.display(), t.kind, t.describe()));
                }
            }
        }
    }
    trees.sort();
    s.push_str(&trees.join("\n"));
    s.push_str(
        "\n\nThe mirror trees are sparse (sizes without data blocks); see `benches/src/tree/mirror.rs` for the layout. \
         The mixed tree holds real data; see `benches/src/tree/mixed.rs`.\n",
    );
    s
}

/// Writes every output file of the results directory.
pub fn write_all(store: &Store, cfg: &Config) -> Result<()> {
    let v = View::new(store);
    let tck = crate::procstat::clk_tck();
    fs::create_dir_all(&cfg.out)?;
    let mut csv = String::from("section,scenario,tree,variant,conc,daemon,metric,median,min,max,n,load_min,load_max\n");
    let mut rows = Vec::new();
    for (k, a) in &v.agg {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{}",
            k.section, k.scenario, k.tree, k.variant, k.conc, k.daemon, k.metric, a.median, a.min, a.max, a.n, a.load_min, a.load_max
        );
        let f = |x: f64| if x.is_finite() { json!(x) } else { json!(null) };
        rows.push(json!({
            "section": k.section, "scenario": k.scenario, "tree": k.tree, "variant": k.variant, "conc": k.conc,
            "daemon": k.daemon, "metric": k.metric, "median": f(a.median), "min": f(a.min), "max": f(a.max), "n": a.n,
            "load_min": f(a.load_min), "load_max": f(a.load_max),
        }));
    }
    fs::write(cfg.out.join("results.csv"), csv)?;
    let tg: Vec<_> = targets(&v, tck)
        .into_iter()
        .map(|t| json!({"target": t.target, "where": t.at, "measured": t.measured, "verdict": format!("{:?}", t.verdict), "margin": t.margin}))
        .collect();
    let notes: BTreeMap<_, _> = store.notes.clone();
    fs::write(cfg.out.join("results.json"), serde_json::to_string_pretty(&json!({"results": rows, "targets": tg, "notes": notes}))?)?;
    let (lo, hi) = v.load_range("null-sync");
    let sub = format!(
        "{} ({}), medians of the runs{}",
        crate::machine::hostname(),
        crate::machine::cpu_model(),
        if lo.is_nan() { String::new() } else { format!("; load average {lo:.1}–{hi:.1}") }
    );
    for (file, chart) in plots(&v, &sub) {
        fs::write(cfg.out.join(file), svg::render(&chart))?;
    }
    fs::write(cfg.out.join("summary.md"), summary(&v, store, cfg, tck))?;
    fs::write(cfg.out.join("SETUP.md"), setup(cfg))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Key;

    #[allow(clippy::too_many_arguments)]
    fn push(st: &mut Store, section: &str, scenario: &str, tree: u64, variant: &str, conc: u32, daemon: &str, metric: &str, vals: &[f64]) {
        for (i, &v) in vals.iter().enumerate() {
            st.push(
                Key {
                    section: section.into(),
                    scenario: scenario.into(),
                    tree,
                    variant: variant.into(),
                    conc,
                    daemon: daemon.into(),
                    metric: metric.into(),
                },
                i as u32 + 1,
                v,
                1.0,
            );
        }
    }

    #[test]
    fn targets_are_judged_from_medians() {
        let mut st = Store::default();
        push(&mut st, "null-sync", "a", 1_000_000, "-", 1, "stock", "server_cpu_s", &[6.0, 7.0, 8.0]);
        push(&mut st, "null-sync", "a", 1_000_000, "-", 1, "ours", "server_cpu_s", &[0.05, 0.06, 0.5]);
        push(&mut st, "null-sync", "mirror", 1_000_000, "-", 1, "stock", "server_cpu_s", &[10.0]);
        push(&mut st, "null-sync", "mirror", 1_000_000, "-", 1, "ours", "server_cpu_s", &[0.0]);
        for (c, s_anon, o_anon) in [(1, 10.0, 50.0), (16, 160.0, 80.0)] {
            push(&mut st, "null-sync", "a", 1_000_000, "-", c, "stock", "server_peak_anon_mib", &[s_anon]);
            push(&mut st, "null-sync", "a", 1_000_000, "-", c, "ours", "server_peak_anon_mib", &[o_anon]);
        }
        push(&mut st, "strace", "a", 1_000_000, "-", 1, "ours", "syscalls_on_tree", &[0.0]);
        push(&mut st, "strace", "mirror", 1_000_000, "-", 1, "ours", "syscalls_on_tree", &[12.0]);
        push(&mut st, "pull", "full", 1 << 31, "none", 1, "stock", "throughput_mib_s", &[100.0]);
        push(&mut st, "pull", "full", 1 << 31, "none", 1, "ours", "throughput_mib_s", &[130.0]);
        push(&mut st, "snapshot", "snapshot", 10_000, "-", 1, "ours", "update_add_ms", &[1.0]);
        push(&mut st, "snapshot", "snapshot", 1_000_000, "-", 1, "ours", "update_add_ms", &[3.0]);
        let v = View::new(&st);
        let t = targets(&v, 100.0);
        let find = |name: &str, at: &str| t.iter().find(|r| r.target.starts_with(name) && r.at.contains(at)).unwrap_or_else(|| panic!("{name} {at}: {t:?}"));
        // 0.06 / 7 = 1/117: met.
        assert_eq!(find("null sync, 1M", "`-a`").verdict, Verdict::Met);
        // 0 → bounded by one tick: 0.01 / 10 = 1/1000: met.
        let m = find("null sync, 1M", "--delete");
        assert_eq!(m.verdict, Verdict::Met, "{m:?}");
        assert!(m.measured.contains("< 0.010"), "{m:?}");
        assert_eq!(find("null sync: zero", "`-a`").verdict, Verdict::Met);
        assert_eq!(find("null sync: zero", "--delete").verdict, Verdict::Missed);
        // Memory: stock 150/15 = 10 MiB per client, ours 30/15 = 2: 0.2x, met.
        let mem = find("null sync: server memory", "`-a`");
        assert_eq!(mem.verdict, Verdict::Met, "{mem:?}");
        assert!(mem.measured.contains("0.200x"), "{mem:?}");
        assert_eq!(find("full pull", "none").verdict, Verdict::Met);
        let upd = find("small update", "10k");
        assert_eq!(upd.verdict, Verdict::Missed, "3x growth: {upd:?}");
        assert!(t.iter().any(|r| r.target.starts_with("--files-from") && r.verdict == Verdict::NotMeasured));
        // Summary and plots render from the same view.
        let cfg = crate::sections::Config {
            quick: true,
            sections: vec![],
            sizes: vec![],
            conc: vec![],
            runs: 1,
            pull_bytes: 0,
            pull_runs: 1,
            delta_pct: 0.03,
            ff_names: vec![],
            plain_timeout: 1,
            client_timeout: 1,
            updates: 1,
            criterion_secs: (0.1, 0.1),
            budget_min: vec![],
            seed: 1,
            work: "/nonexistent".into(),
            shm: "/nonexistent".into(),
            out: "/nonexistent".into(),
            rsync: "rsync".into(),
            rsyncd: "rsyncd".into(),
            ws: ".".into(),
        };
        let md = summary(&v, &st, &cfg, 100.0);
        assert!(md.contains("## Targets") && md.contains("### `-a`") && md.contains("**missed**"), "{md}");
        let p = plots(&v, "test");
        assert_eq!(p.len(), 5);
        assert!(svg::render(&p[0].1).contains("stock -a"));
    }

    #[test]
    fn number_formats() {
        assert_eq!(num(1234567.0), "1,234,567");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(0.0123), "0.012");
        assert_eq!(num(f64::NAN), "–");
        assert_eq!(ratio(6.0, 0.05), "120x");
        assert_eq!(ratio(1.0, 0.0), "∞ (below timer resolution)");
        assert_eq!(ratio(1.0, 2.0), "0.50x");
        assert_eq!(size(100_000), "100k");
    }
}
