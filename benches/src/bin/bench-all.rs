//! `bench-all`: every benchmark of our rsyncd against stock `rsync --daemon`,
//! in bounded time, into one results directory (summary.md, SETUP.md,
//! results.csv/json, raw.csv, SVG plots). Normally started by
//! `benches/run.sh`, which installs rsync/strace and builds first.
//!
//! ```text
//! benches/run.sh --quick                      # minutes: small trees, 1 run
//! benches/run.sh                              # hours: 10k/100k/1M, 1/4/16 clients, 3 runs, 2 GiB pulls
//! benches/run.sh --sections null-sync,strace  # some sections (others' results are kept)
//! benches/run.sh --report-only                # regenerate summary and plots from raw.csv
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use benches::machine::{hostname, today};
use benches::sections::{self, Config, Ctx, Section};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "bench-all", about = "Benchmarks: our rsyncd vs stock rsync --daemon")]
struct Args {
    /// Small and fast (minutes): 10k/30k-entry trees, 1 and 4 clients, one
    /// run, 256 MiB pulls, 20k names, short criterion runs.
    #[arg(long)]
    quick: bool,
    /// Sections to run, comma-separated (null-sync, strace, pull,
    /// files-from, snapshot, micro). Default: all.
    #[arg(long, value_delimiter = ',')]
    sections: Vec<String>,
    /// Mirror tree sizes in entries (default 10000,100000,1000000; quick 10000,30000).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<u64>,
    /// Concurrent clients (default 1,4,16; quick 1,4).
    #[arg(long, value_delimiter = ',')]
    conc: Vec<usize>,
    /// Runs per daemon and configuration (default 3; quick 1).
    #[arg(long)]
    runs: Option<usize>,
    /// Size of the mixed tree for full/delta pulls, MiB (default 2048; quick 256).
    #[arg(long)]
    pull_mib: Option<u64>,
    /// Runs per daemon of each pull (default 3; quick 1).
    #[arg(long)]
    pull_runs: Option<usize>,
    /// Fraction of blocks the delta basis differs in.
    #[arg(long, default_value_t = 0.03)]
    delta_pct: f64,
    /// `--files-from` list lengths (default 100000,1000000; quick 20000).
    #[arg(long, value_delimiter = ',')]
    ff_names: Vec<u64>,
    /// Timeout of a plain-client `--files-from` pull, seconds (default 600; quick 120).
    #[arg(long)]
    plain_timeout: Option<u64>,
    /// Timeout of other clients, seconds.
    #[arg(long, default_value_t = 1800)]
    client_timeout: u64,
    /// Snapshot refreshes measured per tree size (default 30; quick 10).
    #[arg(long)]
    updates: Option<usize>,
    /// Per-section time budget, `SECTION=MINUTES` (repeatable). Defaults:
    /// null-sync 240, strace 60, pull 90, files-from 90, snapshot 40, micro
    /// 40 (quick: 10 each). What does not fit is skipped and noted.
    #[arg(long, value_parser = parse_budget)]
    budget: Vec<(Section, f64)>,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Trees and daemon state (default /tmp/rsyncd-bench).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Pull destinations, ideally tmpfs (default /dev/shm/rsyncd-bench).
    #[arg(long)]
    shm: Option<PathBuf>,
    /// Results directory (default benches/runs/<date>-<host>[-quick]).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Our daemon (default: rsyncd next to this binary).
    #[arg(long)]
    rsyncd: Option<PathBuf>,
    /// Stock rsync (daemon and client).
    #[arg(long, default_value = "rsync")]
    rsync: PathBuf,
    /// Only regenerate summary.md, SETUP.md, results.* and plots from raw.csv.
    #[arg(long)]
    report_only: bool,
    /// Remove the generated trees (and the tmpfs directory) at the end.
    #[arg(long)]
    clean: bool,
}

fn parse_budget(s: &str) -> Result<(Section, f64), String> {
    let (n, m) = s.split_once('=').ok_or("expected SECTION=MINUTES")?;
    let sec = Section::parse(n).ok_or_else(|| format!("unknown section {n}"))?;
    Ok((sec, m.parse().map_err(|e| format!("{e}"))?))
}

fn or<T: Clone>(v: &[T], full: &[T], quick: &[T], q: bool) -> Vec<T> {
    if !v.is_empty() {
        v.to_vec()
    } else if q {
        quick.to_vec()
    } else {
        full.to_vec()
    }
}

fn config(a: &Args) -> Result<Config> {
    let q = a.quick;
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_path_buf();
    let exe_dir = std::env::current_exe()?.parent().context("exe dir")?.to_path_buf();
    let mut sections = Vec::new();
    for s in &a.sections {
        match Section::parse(s) {
            Some(x) => sections.push(x),
            None => bail!("unknown section {s}; known: {}", Section::ALL.map(|s| s.name()).join(", ")),
        }
    }
    if sections.is_empty() {
        sections = Section::ALL.to_vec();
    }
    sections.sort();
    let mut budget_min: Vec<(Section, f64)> = Section::ALL
        .iter()
        .map(|&s| {
            let m = match (q, s) {
                (true, _) => 10.0,
                (false, Section::NullSync) => 240.0,
                (false, Section::Strace) => 60.0,
                (false, Section::Pull) => 90.0,
                (false, Section::FilesFrom) => 90.0,
                (false, Section::Snapshot) => 40.0,
                (false, Section::Micro) => 40.0,
            };
            (s, m)
        })
        .collect();
    for &(s, m) in &a.budget {
        budget_min.retain(|(x, _)| *x != s);
        budget_min.push((s, m));
    }
    let out = a.out.clone().unwrap_or_else(|| ws.join("benches/runs").join(format!("{}-{}{}", today(), hostname(), if q { "-quick" } else { "" })));
    Ok(Config {
        quick: q,
        sections,
        sizes: or(&a.sizes, &[10_000, 100_000, 1_000_000], &[10_000, 30_000], q),
        conc: or(&a.conc, &[1, 4, 16], &[1, 4], q),
        runs: a.runs.unwrap_or(if q { 1 } else { 3 }),
        pull_bytes: a.pull_mib.unwrap_or(if q { 256 } else { 2048 }) << 20,
        pull_runs: a.pull_runs.unwrap_or(if q { 1 } else { 3 }),
        delta_pct: a.delta_pct,
        ff_names: or(&a.ff_names, &[100_000, 1_000_000], &[20_000], q),
        plain_timeout: a.plain_timeout.unwrap_or(if q { 120 } else { 600 }),
        client_timeout: a.client_timeout,
        updates: a.updates.unwrap_or(if q { 10 } else { 30 }),
        criterion_secs: if q { (0.3, 1.0) } else { (1.0, 3.0) },
        budget_min,
        seed: a.seed,
        work: a.work.clone().unwrap_or_else(|| PathBuf::from("/tmp/rsyncd-bench")),
        shm: a.shm.clone().unwrap_or_else(|| PathBuf::from("/dev/shm/rsyncd-bench")),
        out,
        rsync: a.rsync.clone(),
        rsyncd: a.rsyncd.clone().unwrap_or_else(|| exe_dir.join("rsyncd")),
        ws,
    })
}

fn main() -> Result<()> {
    let a = Args::parse();
    let cfg = config(&a)?;
    std::fs::create_dir_all(&cfg.out)?;
    if a.report_only {
        let ctx = Ctx::new(cfg)?;
        ctx.checkpoint()?;
        eprintln!("regenerated {}", ctx.cfg.out.join("summary.md").display());
        return Ok(());
    }
    ensure!(cfg.rsyncd.is_file(), "{} not found: cargo build --release -p rsyncd (benches/run.sh does)", cfg.rsyncd.display());
    for tool in ["strace", "find", "cp"] {
        ensure!(std::process::Command::new("which").arg(tool).output().map(|o| o.status.success()).unwrap_or(false), "{tool} not found (benches/run.sh installs it)");
    }
    std::fs::create_dir_all(&cfg.work)?;
    {
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(cfg.out.join("commands.txt"))?;
        let args: Vec<String> = std::env::args().skip(1).collect();
        writeln!(f, "# {} UTC, workspace {}", benches::machine::cmd_line("date", &["-u", "+%F %T"]), benches::machine::cmd_line("git", &["-C", &cfg.ws.to_string_lossy(), "rev-parse", "--short", "HEAD"]))?;
        writeln!(f, "benches/run.sh {}", args.join(" "))?;
    }
    let mut ctx = Ctx::new(cfg.clone())?;
    let t0 = std::time::Instant::now();
    let mut failed = Vec::new();
    for &s in &cfg.sections {
        ctx.begin(s);
        let r = match s {
            Section::NullSync => sections::null_sync::run(&mut ctx),
            Section::Strace => sections::strace::run(&mut ctx),
            Section::Pull => sections::pull::run(&mut ctx),
            Section::FilesFrom => sections::files_from::run(&mut ctx),
            Section::Snapshot => sections::snapshot::run(&mut ctx),
            Section::Micro => sections::micro::run(&mut ctx),
        };
        if let Err(e) = r {
            ctx.store.note(s.name(), format!("section failed: {e:#}"));
            failed.push(s.name());
        }
        ctx.checkpoint()?;
        eprintln!("=== section {} done after {:.1} min in total", s.name(), t0.elapsed().as_secs_f64() / 60.0);
    }
    if a.clean {
        eprintln!("removing {} and {}", cfg.work.display(), cfg.shm.display());
        let _ = std::fs::remove_dir_all(&cfg.work);
        let _ = std::fs::remove_dir_all(&cfg.shm);
    }
    eprintln!("results: {}", cfg.out.join("summary.md").display());
    ensure!(failed.is_empty(), "sections failed: {}", failed.join(", "));
    Ok(())
}
