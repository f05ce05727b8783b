//! `--files-from` benchmark: a stock client pulls a long list of named
//! files from our `rsyncd` and from stock `rsync --daemon`, same tree, same
//! run.
//!
//! Why: a mirror that feeds a million-line transfer list to a stock daemon
//! waits a very long time (RsyncProject/rsync issue 695). Our daemon answers
//! every name from the snapshot instead of stat()ing the tree.
//!
//! What it does, in order:
//! 1. generates (or reuses) the seeded synthetic mirror tree of
//!    `null_sync` (it runs `null_sync --generate-only`, so both benchmarks
//!    share one tree and its shape);
//! 2. writes the list: every regular file of the tree, sorted bytewise (as
//!    `LC_ALL=C sort` would, like the list in issue 695), plus evenly spaced
//!    sub-lists for the scaling runs;
//! 3. starts both daemons on one rsyncd.conf (as `null_sync` does);
//! 4. `trusted`: `--runs` pulls per daemon, alternating, of
//!    `rsync -a -n --stats --trust-sender --files-from=LIST rsync://…/mod/ TREE/`.
//!    The destination is the served tree itself and `-n` makes it a null
//!    sync that writes nothing, so the time is the daemon's file-list time
//!    plus the client's lstat() of its copy. `--trust-sender` switches off
//!    the client's own check of every received name against the names it
//!    sent (see below), which is client CPU, not daemon time;
//! 5. `plain`: the same pull without `--trust-sender`, as users run it, on
//!    the sub-lists (`--plain-sizes`) and on the whole list, each once per
//!    daemon, with a timeout (`--plain-timeout`): a client still running
//!    then is killed and the run recorded as timed out;
//! 6. writes `raw.csv`, `summary.md` and `SETUP.md`.
//!
//! The client's check (rsync >= 3.2.5, `exclude.c: add_implied_include()`
//! and the `check_filter(&implied_filter_list, …)` call in `flist.c:
//! recv_file_entry()`): every forwarded name becomes a rule prepended to a
//! linked list, and every received entry is matched against that list from
//! its head until its own rule. The cost of an entry is the number of names
//! forwarded after it by the time it arrives, so it depends on how far the
//! daemon's list lags behind the names it reads: a daemon that answers each
//! name as it arrives keeps the lag short; one that reads all names before
//! sending any entry makes the client quadratic in the list length.
//!
//! Linux only (reads `/proc`). Run as root so both daemons serve `uid = 0`.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use benches::procstat::*;
use clap::Parser;

/// Compare `--files-from` pulls against stock rsyncd and our rsyncd.
#[derive(Parser, Debug, Clone)]
#[command(name = "files_from")]
struct Args {
    /// Regular files in the synthetic tree; the full list names all of them.
    #[arg(long, default_value_t = 1_000_000)]
    files: usize,
    /// Quick mode: 20,000 files, at most 2 runs, timeout at most 300 s.
    #[arg(long)]
    quick: bool,
    /// Measured `--trust-sender` pulls of the full list per daemon.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Sub-list sizes for the plain-client runs (default: files/100,
    /// files/50, files/20, files/10; quick: files/10, files/4, files/2).
    #[arg(long, value_delimiter = ',')]
    plain_sizes: Vec<usize>,
    /// Skip the plain-client run of the full list.
    #[arg(long)]
    no_plain_full: bool,
    /// Seconds before a plain-client pull is killed and recorded as timed out.
    #[arg(long, default_value_t = 600)]
    plain_timeout: u64,
    /// Seed for the tree generator (as null_sync's --seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Work directory (default /tmp/rsyncd-bench/n<FILES>-s<SEED>, shared
    /// with null_sync).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Results directory (default <workspace>/benches/runs/<date>-<host>/files-from-n<FILES>[-<LABEL>]).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Suffix for the default results directory.
    #[arg(long)]
    label: Option<String>,
    /// Free text recorded in SETUP.md (e.g. what was patched).
    #[arg(long)]
    note: Option<String>,
    /// Our daemon (default: rsyncd next to this binary, i.e. the same
    /// target directory and profile).
    #[arg(long)]
    rsyncd: Option<PathBuf>,
    /// The tree generator (default: null_sync next to this binary).
    #[arg(long)]
    null_sync: Option<PathBuf>,
    /// The stock rsync binary (client and daemon).
    #[arg(long, default_value = "rsync")]
    rsync: PathBuf,
}

// ---------------------------------------------------------------------------
// Daemons (as in null_sync)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stock,
    Ours,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Stock => "stock",
            Kind::Ours => "ours",
        }
    }
}

struct Daemon {
    kind: Kind,
    child: Child,
    port: u16,
    idle_threads: u64,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stock: the daemon plus its reaped per-connection children; ours: the
    /// process (all threads).
    fn cpu_ticks(&self) -> Result<u64> {
        cpu_ticks(self.pid(), self.kind == Kind::Stock)
    }

    /// Wait until the last session is torn down so its CPU is accounted.
    fn wait_idle(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let idle = match self.kind {
                Kind::Stock => children(self.pid()).is_empty(),
                Kind::Ours => status_kb(self.pid(), "Threads").unwrap_or(0) <= self.idle_threads,
            };
            if idle {
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "{} daemon did not go idle", self.kind.name());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start_stock(rsync: &Path, conf: &Path, log: &Path) -> Result<Daemon> {
    let port = free_port()?;
    let log_f = fs::File::create(log)?;
    let child = Command::new(rsync)
        .args(["--daemon", "--no-detach"])
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--port={port}"))
        .arg("--address=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(log_f.try_clone()?)
        .stderr(log_f)
        .spawn()
        .context("starting stock rsync --daemon")?;
    let d = Daemon { kind: Kind::Stock, child, port, idle_threads: 1 };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        ensure!(Instant::now() < deadline, "stock daemon did not start; see {}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    d.wait_idle(Duration::from_secs(30))?;
    Ok(d)
}

/// Starts ours; returns the daemon and the seconds from spawn to listening.
fn start_ours(bin: &Path, conf: &Path, state: &Path, log: &Path) -> Result<(Daemon, f64)> {
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .arg(format!("--config={}", conf.display()))
        .args(["--port=0", "--address=127.0.0.1", "--no-watch"])
        .arg(format!("--state-dir={}", state.display()))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut log_f = fs::File::create(log)?;
    let (tx, rx) = mpsc::channel::<Option<u16>>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log_f, "{line}");
            if let Some(addr) = line.strip_prefix("rsyncd: listening on ") {
                let _ = tx.send(addr.rsplit(':').next().and_then(|p| p.trim().parse().ok()));
            }
        }
        let _ = tx.send(None);
    });
    let port = rx.recv_timeout(Duration::from_secs(3600)).context("our daemon did not report its port")?;
    let secs = t0.elapsed().as_secs_f64();
    let mut d = Daemon { kind: Kind::Ours, child, port: 0, idle_threads: 1 };
    let Some(port) = port else {
        bail!("our daemon exited during startup; see {}", log.display());
    };
    d.port = port;
    d.idle_threads = status_kb(d.pid(), "Threads").unwrap_or(1);
    Ok((d, secs))
}

// ---------------------------------------------------------------------------
// Lists

/// Every regular file under `tree`, relative, sorted bytewise.
fn all_files(tree: &Path) -> Result<Vec<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path().strip_prefix(tree)?.as_os_str().as_bytes().to_vec());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `k` names spread evenly over the sorted list (keeps it sorted).
fn spread(all: &[Vec<u8>], k: usize) -> Vec<&[u8]> {
    let k = k.min(all.len());
    (0..k).map(|i| all[i * all.len() / k].as_slice()).collect()
}

fn write_list(path: &Path, names: &[&[u8]]) -> Result<()> {
    let mut w = std::io::BufWriter::new(fs::File::create(path)?);
    for n in names {
        w.write_all(n)?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Measured pulls

#[derive(Debug, Clone)]
struct Row {
    iter: usize,
    daemon: Kind,
    scenario: &'static str,
    names: usize,
    /// None: killed after the timeout.
    wall_s: Option<f64>,
    daemon_cpu_s: f64,
    client_cpu_s: f64,
    /// Server-reported "File list generation time" (stats), seconds.
    flist_gen_s: Option<f64>,
    /// Server-reported "File list transfer time", seconds.
    flist_xfer_s: Option<f64>,
    files_in_list: u64,
    bytes_received: u64,
    bytes_sent: u64,
    daemon_peak_rss_kb: u64,
    daemon_peak_anon_kb: u64,
}

/// A `--stats` line's number ("Total bytes received: 1,234" or
/// "File list generation time: 0.001 seconds").
fn stat_num(out: &str, key: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with(key))?;
    let v = line[key.len()..].trim_start_matches(':').trim();
    let tok: String = v.split_whitespace().next()?.chars().filter(|c| c.is_ascii_digit() || *c == '.').collect();
    tok.parse().ok()
}

struct Pull<'a> {
    rsync: &'a Path,
    tree: &'a Path,
    tck: f64,
}

impl Pull<'_> {
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        d: &Daemon,
        list: &Path,
        names: usize,
        trusted: bool,
        timeout: Duration,
        iter: usize,
        scenario: &'static str,
    ) -> Result<Row> {
        let url = format!("rsync://127.0.0.1:{}/mod/", d.port);
        let mut cmd = Command::new(self.rsync);
        cmd.args(["-a", "-n", "--stats"]);
        if trusted {
            cmd.arg("--trust-sender");
        }
        cmd.arg(format!("--files-from={}", list.display()))
            .arg(&url)
            .arg(format!("{}/", self.tree.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let cpu0 = d.cpu_ticks()?;
        let cl0 = self_children_ticks()?;
        let sampler = RssSampler::start(d.pid());
        let t0 = Instant::now();
        let mut child = cmd.spawn().context("running the rsync client")?;
        let out_h = drain(child.stdout.take());
        let err_h = drain(child.stderr.take());
        let mut killed = false;
        let status = loop {
            if let Some(st) = child.try_wait()? {
                break st;
            }
            if t0.elapsed() > timeout {
                // The client and its forked receiver share the group.
                // SAFETY: kill(2) on the process group we created for the client.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                killed = true;
                break child.wait()?;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let wall = t0.elapsed().as_secs_f64();
        let stdout = out_h.join().unwrap_or_default();
        let stderr = err_h.join().unwrap_or_default();
        let cl1 = self_children_ticks()?;
        d.wait_idle(Duration::from_secs(600))?;
        let (peak, peak_anon) = sampler.finish();
        let cpu1 = d.cpu_ticks()?;
        if !killed {
            ensure!(status.success(), "{} pull failed ({status}): {stdout}{stderr}", d.kind.name());
            let moved = stat_num(&stdout, "Number of regular files transferred").unwrap_or(-1.0);
            ensure!(moved == 0.0, "{} pull was not a null sync ({moved} files):\n{stdout}", d.kind.name());
        }
        Ok(Row {
            iter,
            daemon: d.kind,
            scenario,
            names,
            wall_s: (!killed).then_some(wall),
            daemon_cpu_s: (cpu1 - cpu0) as f64 / self.tck,
            client_cpu_s: (cl1 - cl0) as f64 / self.tck,
            flist_gen_s: stat_num(&stdout, "File list generation time"),
            flist_xfer_s: stat_num(&stdout, "File list transfer time"),
            files_in_list: stat_num(&stdout, "Number of files").unwrap_or(0.0) as u64,
            bytes_received: stat_num(&stdout, "Total bytes received").unwrap_or(0.0) as u64,
            bytes_sent: stat_num(&stdout, "Total bytes sent").unwrap_or(0.0) as u64,
            daemon_peak_rss_kb: peak,
            daemon_peak_anon_kb: peak_anon,
        })
    }
}

fn drain<R: std::io::Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let mut b = Vec::new();
            let _ = r.read_to_end(&mut b);
            s = String::from_utf8_lossy(&b).into_owned();
        }
        s
    })
}

// ---------------------------------------------------------------------------
// Output

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}")).unwrap_or_default()
}

fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "iter,daemon,scenario,names,wall_s,timed_out,daemon_cpu_s,client_cpu_s,flist_gen_s,flist_xfer_s,files_in_list,bytes_received,bytes_sent,daemon_peak_rss_kb,daemon_peak_anon_kb\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{:.2},{:.2},{},{},{},{},{},{},{}",
            r.iter,
            r.daemon.name(),
            r.scenario,
            r.names,
            opt(r.wall_s, 3),
            r.wall_s.is_none(),
            r.daemon_cpu_s,
            r.client_cpu_s,
            opt(r.flist_gen_s, 3),
            opt(r.flist_xfer_s, 3),
            r.files_in_list,
            r.bytes_received,
            r.bytes_sent,
            r.daemon_peak_rss_kb,
            r.daemon_peak_anon_kb
        );
    }
    s
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() {
        "-".into()
    } else if b > 0.0 {
        format!("{:.1}x", a / b)
    } else if a > 0.0 {
        "inf (ours below timer resolution)".into()
    } else {
        "-".into()
    }
}

fn wall_text(r: &Row, timeout: u64) -> String {
    match r.wall_s {
        Some(w) => format!("{w:.2}"),
        None => format!("> {timeout} (killed)"),
    }
}

fn summary(rows: &[Row], ctx: &RunContext) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# --files-from: stock rsyncd vs ours ({} names, tree of {} files)\n", ctx.full_names, ctx.tree_files);
    let _ = writeln!(s, "Machine, tree and commands: see SETUP.md. Raw numbers: raw.csv. \"stock/ours\" > 1 means ours is better.\n");
    let pick =
        |k: Kind, sc: &str, n: usize| -> Vec<&Row> { rows.iter().filter(|r| r.daemon == k && r.scenario == sc && r.names == n).collect() };
    let (st, us) = (pick(Kind::Stock, "trusted", ctx.full_names), pick(Kind::Ours, "trusted", ctx.full_names));
    if !st.is_empty() && !us.is_empty() {
        let _ = writeln!(
            s,
            "## Full list, `--trust-sender` (daemon file-list time)\n\nMedians over {} runs per daemon, alternating. CPU times have 1/{} s resolution.\n",
            ctx.runs, ctx.tck
        );
        let _ = writeln!(s, "| metric | stock | ours | stock/ours |\n|---|---:|---:|---:|");
        type Metric<'a> = (&'a str, &'a dyn Fn(&Row) -> f64, usize);
        let metrics: [Metric; 9] = [
            ("wall time (s)", &|r| r.wall_s.unwrap_or(f64::NAN), 2),
            ("daemon CPU (s)", &|r| r.daemon_cpu_s, 2),
            ("File list generation time, server-reported (s)", &|r| r.flist_gen_s.unwrap_or(f64::NAN), 3),
            ("File list transfer time, server-reported (s)", &|r| r.flist_xfer_s.unwrap_or(f64::NAN), 3),
            ("client CPU (s)", &|r| r.client_cpu_s, 2),
            ("entries in the list", &|r| r.files_in_list as f64, 0),
            ("bytes received by client", &|r| r.bytes_received as f64, 0),
            ("daemon peak RSS (MiB, sampled)", &|r| r.daemon_peak_rss_kb as f64 / 1024.0, 1),
            ("daemon peak RssAnon (MiB, sampled)", &|r| r.daemon_peak_anon_kb as f64 / 1024.0, 1),
        ];
        for (name, f, prec) in metrics {
            let (a, b) = (median(st.iter().map(|r| f(r)).collect()), median(us.iter().map(|r| f(r)).collect()));
            let _ = writeln!(s, "| {name} | {a:.prec$} | {b:.prec$} | {} |", ratio(a, b));
        }
        let walls = |v: &[&Row]| v.iter().map(|r| wall_text(r, ctx.plain_timeout)).collect::<Vec<_>>().join(", ");
        let _ = writeln!(s, "\nWall times (s), stock: {}; ours: {}\n", walls(&st), walls(&us));
    }
    let mut sizes: Vec<usize> = rows.iter().filter(|r| r.scenario == "plain").map(|r| r.names).collect();
    sizes.sort();
    sizes.dedup();
    if !sizes.is_empty() {
        let _ = writeln!(
            s,
            "## Plain client (no `--trust-sender`), one run per daemon and list size\n\n\
             Timeout {} s. The client checks every received name against the names it sent \
             (cost: names forwarded after it before it arrives).\n",
            ctx.plain_timeout
        );
        let _ = writeln!(
            s,
            "| names | wall stock (s) | wall ours (s) | daemon CPU stock / ours (s) | client CPU stock / ours (s) | server-reported list generation stock / ours (s) |\n|---:|---:|---:|---:|---:|---:|"
        );
        for n in sizes {
            let (a, b) = (pick(Kind::Stock, "plain", n), pick(Kind::Ours, "plain", n));
            let (Some(a), Some(b)) = (a.first(), b.first()) else { continue };
            let _ = writeln!(
                s,
                "| {n} | {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {} / {} |",
                wall_text(a, ctx.plain_timeout),
                wall_text(b, ctx.plain_timeout),
                a.daemon_cpu_s,
                b.daemon_cpu_s,
                a.client_cpu_s,
                b.client_cpu_s,
                opt(a.flist_gen_s, 3),
                opt(b.flist_gen_s, 3)
            );
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s, "Our daemon: spawn to listening (snapshot build) {:.2} s.", ctx.ours_startup_s);
    s
}

struct RunContext {
    full_names: usize,
    tree_files: u64,
    runs: usize,
    tck: f64,
    plain_timeout: u64,
    ours_startup_s: f64,
}

fn cmd_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("({cmd}: {e})"))
}

fn setup_md(a: &Args, rsyncd: &Path, work: &Path, ws: &Path, tree_desc: &str, load: &str) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim()).unwrap_or("");
    let mem = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = mem.lines().next().unwrap_or("").split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark setup\n");
    let _ = writeln!(s, "- CPU: {model}; cores online: {}", cmd_line("nproc", &[]));
    let _ = writeln!(s, "- RAM: {mem}");
    let _ = writeln!(s, "- kernel: {}", cmd_line("uname", &["-srm"]));
    let _ = writeln!(s, "- filesystem of the work dir: {}", cmd_line("findmnt", &["-no", "FSTYPE,OPTIONS", "-T", &work.to_string_lossy()]));
    let v = cmd_line(&a.rsync.to_string_lossy(), &["--version"]);
    let _ = writeln!(s, "- stock rsync (daemon and client): {}", v.lines().next().unwrap_or(""));
    let _ = writeln!(
        s,
        "- our rsyncd: {} (workspace commit {}{})",
        rsyncd.display(),
        cmd_line("git", &["-C", &ws.to_string_lossy(), "rev-parse", "--short", "HEAD"]),
        if cmd_line("git", &["-C", &ws.to_string_lossy(), "status", "--porcelain", "--untracked-files=no"]).is_empty() {
            ""
        } else {
            ", work tree modified"
        }
    );
    if let Some(n) = &a.note {
        let _ = writeln!(s, "- note: {n}");
    }
    let _ = writeln!(s, "- page cache: warm (one unmeasured pull per daemon first)");
    let _ = writeln!(s, "- load: shared cores; runs alternate between the daemons ({load})");
    let _ = writeln!(s, "\n## Tree\n\n{tree_desc}\n");
    let _ = writeln!(
        s,
        "The list names every regular file of the tree, sorted bytewise, one per line. The scaling \
         lists take names evenly spaced over it (still sorted).\n"
    );
    let _ = writeln!(s, "## Commands\n\n```");
    let _ = writeln!(s, "cargo build --release -p rsyncd -p benches");
    let mut cmd =
        format!("target/release/files_from --files {} --runs {} --plain-timeout {} --seed {}", a.files, a.runs, a.plain_timeout, a.seed);
    if !a.plain_sizes.is_empty() {
        let _ = write!(cmd, " --plain-sizes {}", a.plain_sizes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","));
    }
    if a.no_plain_full {
        cmd.push_str(" --no-plain-full");
    }
    let _ = writeln!(s, "{cmd}");
    let _ = writeln!(s, "# stock:  rsync --daemon --no-detach --config=rsyncd.conf --port=P --address=127.0.0.1");
    let _ = writeln!(s, "# ours:   rsyncd --config=rsyncd.conf --port=0 --address=127.0.0.1 --no-watch --state-dir=state");
    let _ = writeln!(s, "# client: rsync -a -n --stats [--trust-sender] --files-from=LIST rsync://127.0.0.1:P/mod/ TREE/");
    let _ = writeln!(s, "```");
    s
}

fn write_conf(path: &Path, tree: &Path, stock_log: &Path) -> Result<()> {
    let text = format!(
        "# shared by stock rsync --daemon and our rsyncd\nuse chroot = no\nuid = 0\ngid = 0\nread only = yes\nlog file = {}\n\n[mod]\n    path = {}\n",
        stock_log.display(),
        tree.display()
    );
    fs::write(path, text)?;
    Ok(())
}

fn main() -> Result<()> {
    let mut a = Args::parse();
    if a.quick {
        a.files = 20_000;
        a.runs = a.runs.min(2);
        a.plain_timeout = a.plain_timeout.min(300);
    }
    if a.plain_sizes.is_empty() {
        let divisors: &[usize] = if a.quick { &[10, 4, 2] } else { &[100, 50, 20, 10] };
        a.plain_sizes = divisors.iter().map(|d| (a.files / d).max(1)).collect();
    }
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("workspace root")?.to_path_buf();
    let exe_dir = std::env::current_exe()?.parent().context("exe dir")?.to_path_buf();
    let rsyncd = a.rsyncd.clone().unwrap_or_else(|| exe_dir.join("rsyncd"));
    ensure!(rsyncd.is_file(), "{} not found: cargo build --release -p rsyncd", rsyncd.display());
    let null_sync = match &a.null_sync {
        Some(p) => p.clone(),
        None => exe_dir.join("null_sync"),
    };
    let work = a.work.clone().unwrap_or_else(|| PathBuf::from(format!("/tmp/rsyncd-bench/n{}-s{}", a.files, a.seed)));
    let tree = work.join("tree");

    // 1. Tree (null_sync's generator; reused when its marker matches).
    let st = Command::new(&null_sync)
        .args(["--generate-only", "--files", &a.files.to_string(), "--seed", &a.seed.to_string()])
        .arg("--work")
        .arg(&work)
        .status()
        .with_context(|| format!("running {} (cargo build --release -p benches)", null_sync.display()))?;
    ensure!(st.success(), "tree generation failed");
    let marker = fs::read_to_string(work.join("tree.done")).context("tree marker")?;
    let mval = |k: &str| marker.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix('=')).unwrap_or("?").to_string();
    let tree_files: u64 = mval("files").parse().unwrap_or(0);
    let tree_desc = format!(
        "null_sync's generator: {} regular files, {} directories, {} symlinks, {} bytes; max depth {}; \
         largest directory {} files; seed {}. Layout `pool/<component>/<prefix>/<package>/<files>` plus `dists/`.",
        mval("files"),
        mval("dirs"),
        mval("symlinks"),
        mval("bytes"),
        mval("max_depth"),
        mval("max_files_per_dir"),
        mval("seed")
    );

    // 2. Lists.
    let run = work.join("run-files-from");
    if run.exists() {
        fs::remove_dir_all(&run)?;
    }
    fs::create_dir_all(&run)?;
    let all = all_files(&tree)?;
    let full_list = run.join(format!("list-{}", all.len()));
    write_list(&full_list, &all.iter().map(|n| n.as_slice()).collect::<Vec<_>>())?;
    let mut sub_lists = Vec::new();
    for &k in &a.plain_sizes {
        if k >= all.len() {
            continue;
        }
        let p = run.join(format!("list-{k}"));
        write_list(&p, &spread(&all, k))?;
        sub_lists.push((k, p));
    }
    eprintln!("list of {} names in {}", all.len(), full_list.display());

    // 3. Daemons.
    let conf = run.join("rsyncd.conf");
    write_conf(&conf, &tree, &run.join("stock-rsyncd.log"))?;
    let stock = start_stock(&a.rsync, &conf, &run.join("stock-stderr.log"))?;
    let (ours, ours_startup_s) = start_ours(&rsyncd, &conf, &run.join("state"), &run.join("ours.log"))?;
    eprintln!(
        "stock pid {} port {}; ours pid {} port {} (startup {:.2} s)",
        stock.pid(),
        stock.port,
        ours.pid(),
        ours.port,
        ours_startup_s
    );
    let tck = clk_tck();
    let p = Pull { rsync: &a.rsync, tree: &tree, tck };
    let long = Duration::from_secs(24 * 3600);
    let mut rows = Vec::new();

    // Warm-up (unmeasured): a small trusted pull from each.
    if let Some((k, l)) = sub_lists.first() {
        for d in [&stock, &ours] {
            p.run(d, l, *k, true, long, 0, "warmup")?;
        }
    }
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // 4. Full list, --trust-sender, alternating.
    for i in 0..a.runs {
        let order = if i % 2 == 0 { [&stock, &ours] } else { [&ours, &stock] };
        for d in order {
            let r = p.run(d, &full_list, all.len(), true, long, i + 1, "trusted")?;
            eprintln!(
                "trusted #{} {:5}: wall {} s, daemon cpu {:.2} s, server flist gen {} s, client cpu {:.2} s",
                i + 1,
                d.kind.name(),
                wall_text(&r, 0),
                r.daemon_cpu_s,
                opt(r.flist_gen_s, 3),
                r.client_cpu_s
            );
            rows.push(r);
        }
    }

    // 5. Plain client: the scaling lists, then the full list.
    let timeout = Duration::from_secs(a.plain_timeout);
    let mut plain: Vec<(usize, &Path)> = sub_lists.iter().map(|(k, l)| (*k, l.as_path())).collect();
    if !a.no_plain_full {
        plain.push((all.len(), full_list.as_path()));
    }
    for (i, (k, l)) in plain.iter().enumerate() {
        let order = if i % 2 == 0 { [&stock, &ours] } else { [&ours, &stock] };
        for d in order {
            let r = p.run(d, l, *k, false, timeout, 1, "plain")?;
            eprintln!(
                "plain {:>8} {:5}: wall {} s, daemon cpu {:.2} s, client cpu {:.2} s",
                k,
                d.kind.name(),
                wall_text(&r, a.plain_timeout),
                r.daemon_cpu_s,
                r.client_cpu_s
            );
            rows.push(r);
        }
    }

    // 6. Results.
    let load = format!(
        "load average before the measured runs: {}; after: {}",
        load_before.trim(),
        fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let ctx = RunContext { full_names: all.len(), tree_files, runs: a.runs, tck, plain_timeout: a.plain_timeout, ours_startup_s };
    let out = a.out.clone().unwrap_or_else(|| {
        let host = fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "host".into());
        let mut leaf = format!("files-from-n{}", a.files);
        if let Some(l) = &a.label {
            leaf.push('-');
            leaf.push_str(l);
        }
        ws.join("benches/runs").join(format!("{}-{host}", cmd_line("date", &["-u", "+%Y-%m-%d"]))).join(leaf)
    });
    fs::create_dir_all(&out)?;
    fs::write(out.join("raw.csv"), csv(&rows))?;
    let sum = summary(&rows, &ctx);
    fs::write(out.join("summary.md"), &sum)?;
    fs::write(out.join("SETUP.md"), setup_md(&a, &rsyncd, &work, &ws, &tree_desc, &load))?;
    print!("{sum}");
    eprintln!("results in {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_numbers_parse() {
        let out = "Number of files: 1,010,243 (reg: 1,000,000, dir: 10,243)\n\
                   File list generation time: 1.414 seconds\n\
                   File list transfer time: 0.000 seconds\n\
                   Total bytes received: 20,192,181\n";
        assert_eq!(stat_num(out, "Number of files"), Some(1_010_243.0));
        assert_eq!(stat_num(out, "File list generation time"), Some(1.414));
        assert_eq!(stat_num(out, "File list transfer time"), Some(0.0));
        assert_eq!(stat_num(out, "Total bytes received"), Some(20_192_181.0));
        assert_eq!(stat_num(out, "Literal data"), None);
    }

    #[test]
    fn spread_keeps_order_and_count() {
        let all: Vec<Vec<u8>> = (0..1000u32).map(|i| format!("{i:04}").into_bytes()).collect();
        let s = spread(&all, 10);
        assert_eq!(s.len(), 10);
        assert_eq!(s[0], b"0000");
        assert_eq!(s[1], b"0100");
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(spread(&all, 5000).len(), 1000);
    }

    #[test]
    fn median_and_ratio() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert!(median(Vec::new()).is_nan());
        assert_eq!(ratio(10.0, 2.0), "5.0x");
        assert_eq!(ratio(f64::NAN, 2.0), "-");
    }
}
