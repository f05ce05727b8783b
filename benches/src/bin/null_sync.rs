//! Null-sync benchmark: our `rsyncd` against stock `rsync --daemon` on the
//! same synthetic mirror tree, in the same run.
//!
//! What it does, in order:
//! 1. generates (or reuses) a seeded synthetic mirror tree (`--files N`);
//! 2. writes one rsyncd.conf that both daemons read;
//! 3. starts stock `rsync --daemon --no-detach` and our release `rsyncd`
//!    (our startup, i.e. the snapshot build, is timed separately);
//! 4. optionally times one full pull from each daemon;
//! 5. times `--runs` null pulls (`rsync -a --delete --stats`) against each
//!    daemon, alternating the order, then `--runs` pulls where one file of
//!    the client copy was altered (so exactly one file is sent);
//! 6. writes `raw.csv`, `summary.md` and `SETUP.md`.
//!
//! Per run it records wall time, daemon CPU time (stock: the daemon's own
//! plus its reaped children's; ours: the process's, all threads), client CPU
//! time, bytes on the wire as the client reports them, and memory.
//!
//! Linux only (reads `/proc`). Run as root so both daemons can serve
//! `uid = 0` trees; `--cold` needs write access to `/proc/sys/vm/drop_caches`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use benches::procstat::*;
use clap::Parser;

/// Compare a null sync against stock rsyncd and our rsyncd.
#[derive(Parser, Debug)]
#[command(name = "null_sync")]
struct Args {
    /// Regular files in the synthetic tree (directories: about N/100).
    #[arg(long, default_value_t = 200_000)]
    files: usize,
    /// Measured runs per daemon and scenario.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Seed for the tree generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Drop the page cache (`/proc/sys/vm/drop_caches`) before every measured run.
    #[arg(long)]
    cold: bool,
    /// Timed full pulls per daemon (alternating) into fresh directories
    /// under --full-dest; 0 skips them.
    #[arg(long, default_value_t = 2)]
    full_runs: usize,
    /// Scratch directory for the full pulls. Default /dev/shm (tmpfs): on a
    /// disk filesystem the client's inode allocation dominates and varies
    /// run to run (ext4 `recently_deleted` scans after the previous copy
    /// was removed), which says nothing about the daemons.
    #[arg(long, default_value = "/dev/shm/rsyncd-bench-full")]
    full_dest: PathBuf,
    /// Where the tree, the client copy and daemon state live
    /// (default /tmp/rsyncd-bench/n<FILES>-s<SEED>). A tree with a matching
    /// marker there is reused.
    #[arg(long)]
    work: Option<PathBuf>,
    /// Results directory (default <workspace>/benches/runs/<date>-<host>/n<FILES>-<warm|cold>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Our daemon (default $CARGO_TARGET_DIR/release/rsyncd, else <workspace>/target/release/rsyncd).
    #[arg(long)]
    rsyncd: Option<PathBuf>,
    /// The stock rsync binary (client and daemon).
    #[arg(long, default_value = "rsync")]
    rsync: PathBuf,
    /// Only generate the tree, then exit.
    #[arg(long)]
    generate_only: bool,
    /// Extra argument for our daemon (repeatable), e.g. `--ours-arg=--flist-cache-mb=0`
    /// to measure without the shared file-list cache.
    #[arg(long, allow_hyphen_values = true)]
    ours_arg: Vec<String>,
}

// ---------------------------------------------------------------------------
// Deterministic randomness (SplitMix64: tiny, seedable, good enough to shape
// a synthetic tree; nothing here needs cryptographic quality).

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

// ---------------------------------------------------------------------------
// Tree generation

/// Shape of a generated tree, written to the marker file and to SETUP.md.
#[derive(Debug, Clone, Default)]
struct Shape {
    files: u64,
    dirs: u64,
    symlinks: u64,
    bytes: u64,
    max_depth: u64,
    name_len_sum: u64,
    path_len_sum: u64,
    max_files_per_dir: u64,
    gen_secs: f64,
    seed: u64,
}

impl Shape {
    fn to_marker(&self) -> String {
        format!(
            "version=1\nfiles={}\ndirs={}\nsymlinks={}\nbytes={}\nmax_depth={}\nname_len_sum={}\npath_len_sum={}\nmax_files_per_dir={}\ngen_secs={:.3}\nseed={}\n",
            self.files,
            self.dirs,
            self.symlinks,
            self.bytes,
            self.max_depth,
            self.name_len_sum,
            self.path_len_sum,
            self.max_files_per_dir,
            self.gen_secs,
            self.seed
        )
    }

    fn from_marker(text: &str) -> Option<Shape> {
        let mut s = Shape::default();
        let mut version = 0;
        for line in text.lines() {
            let (k, v) = line.split_once('=')?;
            match k {
                "version" => version = v.parse().ok()?,
                "files" => s.files = v.parse().ok()?,
                "dirs" => s.dirs = v.parse().ok()?,
                "symlinks" => s.symlinks = v.parse().ok()?,
                "bytes" => s.bytes = v.parse().ok()?,
                "max_depth" => s.max_depth = v.parse().ok()?,
                "name_len_sum" => s.name_len_sum = v.parse().ok()?,
                "path_len_sum" => s.path_len_sum = v.parse().ok()?,
                "max_files_per_dir" => s.max_files_per_dir = v.parse().ok()?,
                "gen_secs" => s.gen_secs = v.parse().ok()?,
                "seed" => s.seed = v.parse().ok()?,
                _ => {}
            }
        }
        (version == 1).then_some(s)
    }

    fn describe(&self) -> String {
        let files = self.files.max(1) as f64;
        format!(
            "{} regular files, {} directories, {} symlinks, {:.1} MiB of data \
             (mean file {:.0} B); max depth {}, mean basename {:.1} B, mean path {:.1} B, \
             largest directory {} files; seed {}; generated in {:.1} s",
            self.files,
            self.dirs,
            self.symlinks,
            self.bytes as f64 / (1024.0 * 1024.0),
            self.bytes as f64 / files,
            self.max_depth,
            self.name_len_sum as f64 / files,
            self.path_len_sum as f64 / files,
            self.max_files_per_dir,
            self.seed,
            self.gen_secs
        )
    }
}

const SYLLABLES: &[&str] = &[
    "a", "ab", "al", "an", "ar", "at", "ba", "be", "bi", "bo", "ca", "co", "cu", "da", "de", "di",
    "do", "el", "en", "er", "ex", "fa", "fi", "fo", "ga", "ge", "gi", "go", "ha", "he", "hi", "in",
    "io", "ja", "ka", "ke", "ki", "la", "le", "li", "lo", "lu", "ma", "me", "mi", "mo", "mu", "na",
    "ne", "ni", "no", "nu", "ob", "on", "or", "pa", "pe", "pi", "po", "py", "qt", "ra", "re", "ri",
    "ro", "ru", "sa", "se", "si", "so", "su", "ta", "te", "ti", "to", "tu", "un", "ur", "va", "ve",
    "vi", "wa", "we", "xe", "xi", "ya", "yo", "za", "ze", "zo",
];
const SUFFIXES: &[&str] = &[
    "", "", "", "", "-dev", "-doc", "-common", "-utils", "-data", "-perl", "-java", "2", "3",
    "-dbg", "-tools", "-plugins", "-core",
];
const ARCHES: &[&str] = &["amd64", "arm64", "armhf", "i386", "ppc64el", "s390x", "all"];

/// A Debian-pool-like package name: syllables, optional "lib"/"python3-"
/// prefix and a suffix. 4-30 bytes.
fn package_name(rng: &mut Rng) -> String {
    let mut s = String::new();
    match rng.below(10) {
        0..=1 => s.push_str("lib"),
        2 => s.push_str("python3-"),
        _ => {}
    }
    let n = 2 + rng.below(4);
    for _ in 0..n {
        s.push_str(SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize]);
    }
    s.push_str(SUFFIXES[rng.below(SUFFIXES.len() as u64) as usize]);
    s
}

/// The pool prefix Debian uses: "libx" for lib packages, else the first letter.
fn pool_prefix(pkg: &str) -> String {
    if let Some(rest) = pkg.strip_prefix("lib") {
        format!("lib{}", rest.chars().next().unwrap_or('x'))
    } else {
        pkg.chars().next().unwrap_or('x').to_string()
    }
}

struct Gen {
    rng: Rng,
    shape: Shape,
    noise: Vec<u8>,
    dirs: Vec<(PathBuf, SystemTime)>,
    root: PathBuf,
}

impl Gen {
    fn mtime(&mut self) -> SystemTime {
        // Spread over ~5 years before 2023-11-14, whole seconds.
        let back = self.rng.below(5 * 365 * 86_400);
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 - back)
    }

    /// Create `rel` and any missing parents, recording each new directory
    /// so its mtime can be set once its entries exist.
    fn mkdir(&mut self, rel: &str) -> Result<PathBuf> {
        let mut p = self.root.clone();
        for (depth, comp) in rel.split('/').enumerate() {
            p.push(comp);
            if !p.exists() {
                fs::create_dir(&p).with_context(|| format!("mkdir {}", p.display()))?;
                let t = self.mtime();
                self.dirs.push((p.clone(), t));
            }
            // A file in this directory sits at depth + 2 (root entries: 1).
            self.shape.max_depth = self.shape.max_depth.max(depth as u64 + 2);
        }
        Ok(p)
    }

    fn file(&mut self, dir: &Path, rel_dir: &str, name: &str, max_size: u64) -> Result<()> {
        let size = self.rng.below(max_size + 1) as usize;
        let off = self.rng.below((self.noise.len() - size) as u64) as usize;
        let p = dir.join(name);
        let mut f = fs::File::create(&p).with_context(|| format!("create {}", p.display()))?;
        f.write_all(&self.noise[off..off + size])?;
        let t = self.mtime();
        f.set_modified(t)?;
        self.shape.files += 1;
        self.shape.bytes += size as u64;
        self.shape.name_len_sum += name.len() as u64;
        self.shape.path_len_sum += (rel_dir.len() + 1 + name.len()) as u64;
        Ok(())
    }
}

/// Generate the synthetic mirror under `root` (which must not exist).
///
/// Shape: `pool/<component>/<prefix>/<package>/` leaf directories (about
/// files/100 of them, skewed sizes) holding `.deb`/`.dsc`/`.tar.xz` names,
/// plus a `dists/` index area and three suite symlinks for trees of 10000+
/// files. File sizes are 0-1024 bytes of seeded noise; mtimes are whole
/// seconds spread over five years.
fn generate(root: &Path, n_files: usize, seed: u64) -> Result<Shape> {
    let t0 = Instant::now();
    fs::create_dir_all(root)?;
    let mut rng = Rng::new(seed);
    let mut noise = vec![0u8; 1 << 20];
    for chunk in noise.chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let mut g = Gen {
        rng,
        shape: Shape {
            seed,
            max_depth: 1,
            ..Shape::default()
        },
        noise,
        dirs: Vec::new(),
        root: root.to_path_buf(),
    };

    let mut budget = n_files;
    if n_files >= 10_000 {
        for suite in ["bookworm", "trixie", "sid"] {
            for comp in ["main", "contrib", "non-free"] {
                for arch in ARCHES
                    .iter()
                    .map(|a| format!("binary-{a}"))
                    .chain(["source".to_string()])
                {
                    let rel = format!("dists/{suite}/{comp}/{arch}");
                    let d = g.mkdir(&rel)?;
                    for name in ["Packages.xz", "Packages.gz", "Release"] {
                        if budget > n_files / 2 {
                            g.file(&d, &rel, name, 1024)?;
                            budget -= 1;
                        }
                    }
                }
            }
        }
        for (link, target) in [
            ("stable", "bookworm"),
            ("testing", "trixie"),
            ("unstable", "sid"),
        ] {
            symlink(target, root.join("dists").join(link))?;
            g.shape.symlinks += 1;
        }
    }

    // Leaf package directories with skewed file counts (mean ~100).
    let n_leaf = (n_files / 100).max(1);
    let weights: Vec<f64> = (0..n_leaf)
        .map(|_| {
            let u = g.rng.unit();
            0.05 + u * u * u * 4.0
        })
        .collect();
    let wsum: f64 = weights.iter().sum();
    let spread = budget.saturating_sub(n_leaf);
    let mut counts: Vec<usize> = weights
        .iter()
        .map(|w| 1 + (spread as f64 * w / wsum) as usize)
        .collect();
    let mut assigned: usize = counts.iter().sum();
    let mut i = 0;
    while assigned < budget {
        counts[i % n_leaf] += 1;
        assigned += 1;
        i += 1;
    }
    let mut used = HashSet::new();
    for &count in &counts {
        let mut pkg = package_name(&mut g.rng);
        while !used.insert(pkg.clone()) {
            pkg.push_str(&format!("{}", g.rng.below(10)));
        }
        let comp = match g.rng.below(20) {
            0 => "contrib",
            1 | 2 => "non-free",
            _ => "main",
        };
        let rel = format!("pool/{comp}/{}/{pkg}", pool_prefix(&pkg));
        let d = g.mkdir(&rel)?;
        g.shape.max_files_per_dir = g.shape.max_files_per_dir.max(count as u64);
        let (major, minor) = (g.rng.below(20), g.rng.below(40));
        for j in 0..count {
            let ver = format!("{major}.{minor}.{}-{}", j / 10, 1 + g.rng.below(3));
            let name = match j % 10 {
                k @ 0..=6 => format!("{pkg}_{ver}_{}.deb", ARCHES[k]),
                7 => format!("{pkg}_{ver}.dsc"),
                8 => format!("{pkg}_{ver}.debian.tar.xz"),
                _ => format!("{pkg}_{ver}.orig.tar.xz"),
            };
            g.file(&d, &rel, &name, 1024)?;
        }
    }
    // Directory mtimes last: creating entries bumps them.
    let dirs = std::mem::take(&mut g.dirs);
    for (p, t) in &dirs {
        fs::File::open(p)?.set_modified(*t)?;
    }
    let mut shape = g.shape;
    shape.dirs = count_dirs(root)?;
    shape.gen_secs = t0.elapsed().as_secs_f64();
    Ok(shape)
}

/// Directories under `root`, `root` included.
fn count_dirs(root: &Path) -> Result<u64> {
    let mut n = 1;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                n += 1;
                stack.push(e.path());
            }
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------------------
// Daemons

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
    /// Threads right after startup (ours) — the idle count to wait for.
    idle_threads: u64,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn cpu_ticks(&self) -> Result<u64> {
        cpu_ticks(self.pid(), self.kind == Kind::Stock)
    }

    /// Wait until the session that just ended has been torn down, so its CPU
    /// time is accounted: stock's child reaped, our session thread gone.
    fn wait_idle(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let idle = match self.kind {
                Kind::Stock => children(self.pid()).is_empty(),
                Kind::Ours => status_kb(self.pid(), "Threads").unwrap_or(0) <= self.idle_threads,
            };
            if idle {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{} daemon did not go idle",
                self.kind.name()
            );
            std::thread::sleep(Duration::from_millis(2));
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
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn start_stock(rsync: &Path, conf: &Path, log: &Path) -> Result<Daemon> {
    let port = free_port()?;
    let log_f = fs::File::create(log)?;
    let child = Command::new(rsync)
        .arg("--daemon")
        .arg("--no-detach")
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--port={port}"))
        .arg("--address=127.0.0.1")
        .stdin(Stdio::null())
        .stdout(log_f.try_clone()?)
        .stderr(log_f)
        .spawn()
        .context("starting stock rsync --daemon")?;
    let d = Daemon {
        kind: Kind::Stock,
        child,
        port,
        idle_threads: 1,
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "stock daemon did not start; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.wait_idle()?;
    Ok(d)
}

/// What our daemon's startup cost.
#[derive(Debug, Clone, Default)]
struct Startup {
    secs: f64,
    snapshot_line: String,
    hwm_kb: u64,
    rss_anon_kb: u64,
    rss_file_kb: u64,
    snapshot_bytes: u64,
}

fn start_ours(bin: &Path, conf: &Path, state: &Path, log: &Path, extra: &[String]) -> Result<(Daemon, Startup)> {
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .args(extra)
        .arg(format!("--config={}", conf.display()))
        .arg("--port=0")
        .arg("--address=127.0.0.1")
        .arg(format!("--state-dir={}", state.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let mut log_f = fs::File::create(log)?;
    let (tx, rx) = mpsc::channel::<(Option<u16>, String)>();
    std::thread::spawn(move || {
        let mut snapshot = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(log_f, "{line}");
            if line.contains("snapshot built") {
                snapshot = line.clone();
            }
            if let Some(addr) = line.strip_prefix("rsyncd: listening on ") {
                let port = addr.rsplit(':').next().and_then(|p| p.trim().parse().ok());
                let _ = tx.send((port, std::mem::take(&mut snapshot)));
            }
        }
        let _ = tx.send((None, String::new()));
    });
    let (port, snapshot_line) = rx
        .recv_timeout(Duration::from_secs(3600))
        .context("our daemon did not report its port")?;
    let secs = t0.elapsed().as_secs_f64();
    let mut d = Daemon {
        kind: Kind::Ours,
        child,
        port: 0,
        idle_threads: 1,
    };
    let Some(port) = port else {
        bail!("our daemon exited during startup; see {}", log.display());
    };
    d.port = port;
    d.idle_threads = status_kb(d.pid(), "Threads").unwrap_or(1);
    let pid = d.pid();
    let snapshot_bytes = fs::read_dir(state)
        .map(|it| {
            it.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    let st = Startup {
        secs,
        snapshot_line: strip_ansi(&snapshot_line),
        hwm_kb: status_kb(pid, "VmHWM").unwrap_or(0),
        rss_anon_kb: status_kb(pid, "RssAnon").unwrap_or(0),
        rss_file_kb: status_kb(pid, "RssFile").unwrap_or(0),
        snapshot_bytes,
    };
    Ok((d, st))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c2 in chars.by_ref() {
                if c2.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Measured pulls

#[derive(Debug, Clone)]
struct Row {
    iter: usize,
    daemon: Kind,
    scenario: &'static str,
    wall_s: f64,
    daemon_cpu_s: f64,
    client_cpu_s: f64,
    bytes_received: u64,
    bytes_sent: u64,
    files_transferred: u64,
    daemon_peak_rss_kb: u64,
    daemon_peak_anon_kb: u64,
    ours_vmhwm_kb: Option<u64>,
}

fn drop_caches() -> Result<()> {
    Command::new("sync").status()?;
    fs::write("/proc/sys/vm/drop_caches", b"3\n").context("writing /proc/sys/vm/drop_caches")?;
    Ok(())
}

/// A `--stats` number ("Total bytes received: 1,234").
fn stat_num(out: &str, key: &str) -> Option<u64> {
    let line = out.lines().find(|l| l.starts_with(key))?;
    let v = line[key.len()..].trim_start_matches(':').trim();
    let digits: String = v
        .split_whitespace()
        .next()?
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn pull(
    rsync: &Path,
    d: &Daemon,
    dest: &Path,
    iter: usize,
    scenario: &'static str,
    tck: f64,
) -> Result<Row> {
    let url = format!("rsync://127.0.0.1:{}/mod/", d.port);
    let cpu0 = d.cpu_ticks()?;
    let cl0 = self_children_ticks()?;
    let sampler = RssSampler::start(d.pid());
    let t0 = Instant::now();
    let out = Command::new(rsync)
        .args(["-a", "--delete", "--stats"])
        .arg(&url)
        .arg(format!("{}/", dest.display()))
        .stdin(Stdio::null())
        .output()
        .context("running the rsync client")?;
    let wall = t0.elapsed().as_secs_f64();
    let cl1 = self_children_ticks()?;
    d.wait_idle()?;
    let (peak, peak_anon) = sampler.finish();
    let cpu1 = d.cpu_ticks()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{} pull failed ({}): {}{}",
        d.kind.name(),
        out.status,
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let ours_vmhwm_kb = match d.kind {
        Kind::Ours => status_kb(d.pid(), "VmHWM"),
        Kind::Stock => None,
    };
    Ok(Row {
        iter,
        daemon: d.kind,
        scenario,
        wall_s: wall,
        daemon_cpu_s: (cpu1 - cpu0) as f64 / tck,
        client_cpu_s: (cl1 - cl0) as f64 / tck,
        bytes_received: stat_num(&stdout, "Total bytes received").unwrap_or(0),
        bytes_sent: stat_num(&stdout, "Total bytes sent").unwrap_or(0),
        files_transferred: stat_num(&stdout, "Number of regular files transferred").unwrap_or(0),
        daemon_peak_rss_kb: peak,
        daemon_peak_anon_kb: peak_anon,
        ours_vmhwm_kb,
    })
}

/// Make one file of the client copy differ (new content, new mtime) so the
/// next pull sends exactly that file back as a delta.
fn alter_client_file(path: &Path, iter: usize) -> Result<()> {
    let mut data = fs::read(path)?;
    if data.is_empty() {
        data.push(0);
    }
    let i = iter % data.len();
    data[i] = data[i].wrapping_add(1);
    let f = fs::File::create(path)?;
    (&f).write_all(&data)?;
    f.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000 + iter as u64))?;
    Ok(())
}

/// The largest file of the tree's largest leaf directory (deterministic).
fn pick_changed_file(tree: &Path) -> Result<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![tree.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&d)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                let len = e.metadata()?.len();
                let better = match &best {
                    None => true,
                    Some((l, _)) => len > *l,
                };
                if better {
                    best = Some((len, e.path()));
                }
            }
        }
    }
    let (_, p) = best.context("tree has no files")?;
    Ok(p.strip_prefix(tree)?.to_path_buf())
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

fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "iter,daemon,scenario,wall_s,daemon_cpu_s,client_cpu_s,bytes_received,bytes_sent,files_transferred,daemon_peak_rss_kb,daemon_peak_anon_kb,ours_vmhwm_kb\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{:.4},{:.3},{:.3},{},{},{},{},{},{}",
            r.iter,
            r.daemon.name(),
            r.scenario,
            r.wall_s,
            r.daemon_cpu_s,
            r.client_cpu_s,
            r.bytes_received,
            r.bytes_sent,
            r.files_transferred,
            r.daemon_peak_rss_kb,
            r.daemon_peak_anon_kb,
            r.ours_vmhwm_kb.map(|v| v.to_string()).unwrap_or_default()
        );
    }
    s
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.1}x", a / b)
    } else if a > 0.0 {
        "inf (ours below timer resolution)".into()
    } else {
        "-".into()
    }
}

fn summary(rows: &[Row], ctx: &RunContext) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Null sync: stock rsyncd vs ours ({} files, {})\n",
        ctx.shape.files,
        if ctx.cold { "cold cache" } else { "warm cache" }
    );
    let _ = writeln!(s, "Machine and tree: see SETUP.md. Raw numbers: raw.csv.\n");
    let _ = writeln!(
        s,
        "Medians over {} runs per daemon (alternating order). CPU times have \
         1/{} s resolution. \"stock/ours\" > 1 means ours is better.\n",
        ctx.runs, ctx.tck
    );
    for scenario in ["null", "1-changed", "full"] {
        let pick = |k: Kind| -> Vec<&Row> {
            rows.iter()
                .filter(|r| r.daemon == k && r.scenario == scenario)
                .collect()
        };
        let (st, us) = (pick(Kind::Stock), pick(Kind::Ours));
        if st.is_empty() || us.is_empty() {
            continue;
        }
        let title = match scenario {
            "null" => "Null sync (nothing changed)",
            "1-changed" => "One file changed (client copy altered, one file sent)",
            _ => "Full pull into an empty tmpfs directory",
        };
        let _ = writeln!(s, "## {title}\n");
        let _ = writeln!(s, "| metric | stock | ours | stock/ours |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        let m = |v: &[&Row], f: &dyn Fn(&Row) -> f64| median(v.iter().map(|r| f(r)).collect());
        type Metric<'a> = (&'a str, &'a dyn Fn(&Row) -> f64, usize);
        let metrics: [Metric; 8] = [
            ("wall time (s)", &|r| r.wall_s, 3),
            ("daemon CPU (s)", &|r| r.daemon_cpu_s, 2),
            ("client CPU (s)", &|r| r.client_cpu_s, 2),
            ("bytes received by client", &|r| r.bytes_received as f64, 0),
            ("bytes sent by client", &|r| r.bytes_sent as f64, 0),
            ("files transferred", &|r| r.files_transferred as f64, 0),
            (
                "daemon peak RSS during run (MiB, sampled)",
                &|r| r.daemon_peak_rss_kb as f64 / 1024.0,
                1,
            ),
            (
                "daemon peak RssAnon during run (MiB, sampled)",
                &|r| r.daemon_peak_anon_kb as f64 / 1024.0,
                1,
            ),
        ];
        for (name, f, prec) in metrics {
            let (a, b) = (m(&st, f), m(&us, f));
            let _ = writeln!(s, "| {name} | {a:.prec$} | {b:.prec$} | {} |", ratio(a, b));
        }
        let walls = |v: &[&Row]| {
            v.iter()
                .map(|r| format!("{:.3}", r.wall_s))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            s,
            "\nWall times, stock: {}; ours: {}\n",
            walls(&st),
            walls(&us)
        );
    }
    let st = &ctx.startup;
    let _ = writeln!(s, "## Our daemon's startup (not part of any sync)\n");
    let _ = writeln!(s, "| metric | value |\n|---|---:|");
    let _ = writeln!(
        s,
        "| spawn to listening (snapshot build) | {:.2} s |",
        st.secs
    );
    let _ = writeln!(
        s,
        "| snapshot file size | {:.1} MiB |",
        st.snapshot_bytes as f64 / 1048576.0
    );
    let _ = writeln!(
        s,
        "| VmHWM after startup | {:.1} MiB |",
        st.hwm_kb as f64 / 1024.0
    );
    let _ = writeln!(
        s,
        "| RssAnon / RssFile after startup | {:.1} / {:.1} MiB |",
        st.rss_anon_kb as f64 / 1024.0,
        st.rss_file_kb as f64 / 1024.0
    );
    if let Some(h) = rows.iter().filter_map(|r| r.ours_vmhwm_kb).max() {
        let _ = writeln!(s, "| VmHWM after all runs | {:.1} MiB |", h as f64 / 1024.0);
    }
    let _ = writeln!(s, "\nDaemon log line: `{}`", st.snapshot_line.trim());
    s
}

struct RunContext {
    shape: Shape,
    cold: bool,
    runs: usize,
    tck: f64,
    startup: Startup,
    load: String,
}

fn cmd_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("({cmd}: {e})"))
}

fn setup_md(
    ctx: &RunContext,
    a: &Args,
    rsyncd: &Path,
    work: &Path,
    changed: &Path,
    ws: &Path,
) -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo.lines().next().unwrap_or("").to_string();
    let rsync_version = cmd_line(&a.rsync.to_string_lossy(), &["--version"]);
    let mut s = String::new();
    let _ = writeln!(s, "# Benchmark setup\n");
    let _ = writeln!(
        s,
        "- CPU: {model}; cores online: {}",
        cmd_line("nproc", &[])
    );
    let _ = writeln!(
        s,
        "- RAM: {}",
        mem.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
    let _ = writeln!(s, "- kernel: {}", cmd_line("uname", &["-srm"]));
    let _ = writeln!(
        s,
        "- filesystem of the work dir: {}",
        cmd_line(
            "findmnt",
            &["-no", "FSTYPE,OPTIONS", "-T", &work.to_string_lossy()]
        )
    );
    let _ = writeln!(
        s,
        "- stock rsync: {}",
        rsync_version.lines().next().unwrap_or("")
    );
    let _ = writeln!(
        s,
        "- our rsyncd: {} (commit {}), release profile",
        rsyncd.display(),
        cmd_line(
            "git",
            &["-C", &ws.to_string_lossy(), "rev-parse", "--short", "HEAD"]
        )
    );
    let _ = writeln!(
        s,
        "- page cache: {}",
        if ctx.cold {
            "cold (sync; echo 3 > /proc/sys/vm/drop_caches before every measured run; pages our daemon has mapped are not dropped)"
        } else {
            "warm (one unmeasured null pull per daemon first)"
        }
    );
    let _ = writeln!(
        s,
        "- load: other people's builds may share these cores; runs alternate between the daemons so drift hits both ({})",
        ctx.load
    );
    let _ = writeln!(
        s,
        "- full pulls: {} per daemon into {}",
        a.full_runs,
        a.full_dest.display()
    );
    let _ = writeln!(s, "\n## Tree\n\n{}\n", ctx.shape.describe());
    let _ = writeln!(
        s,
        "Layout: `pool/<main|contrib|non-free>/<prefix>/<package>/<package>_<version>_<arch>.deb` \
         (+ `.dsc`, `.debian.tar.xz`, `.orig.tar.xz`), skewed files per package directory; \
         `dists/<suite>/<component>/binary-<arch>/` index files and three suite symlinks for \
         trees of 10000+ files.\n"
    );
    let _ = writeln!(
        s,
        "\"1 file changed\" alters `{}` in the client copy before each such run.\n",
        changed.display()
    );
    let _ = writeln!(s, "## Commands\n");
    let _ = writeln!(s, "```");
    let _ = writeln!(s, "cargo build --release -p rsyncd");
    let _ = writeln!(
        s,
        "cargo run --release -p benches --bin null_sync -- --files {} --runs {} --full-runs {} --seed {}{}",
        a.files,
        a.runs,
        a.full_runs,
        a.seed,
        if a.cold { " --cold" } else { "" }
    );
    let _ = writeln!(
        s,
        "# stock:  rsync --daemon --no-detach --config=rsyncd.conf --port=P --address=127.0.0.1"
    );
    let _ = writeln!(
        s,
        "# ours:   rsyncd --config=rsyncd.conf --port=0 --address=127.0.0.1 --state-dir=state"
    );
    let _ = writeln!(
        s,
        "# client: rsync -a --delete --stats rsync://127.0.0.1:P/mod/ copy/"
    );
    let _ = writeln!(s, "```");
    s
}

fn write_conf(path: &Path, tree: &Path, stock_log: &Path) -> Result<()> {
    let text = format!(
        "# shared by stock rsync --daemon and our rsyncd\n\
         use chroot = no\n\
         uid = 0\n\
         gid = 0\n\
         read only = yes\n\
         log file = {}\n\
         \n\
         [mod]\n    path = {}\n    comment = benchmark tree\n",
        stock_log.display(),
        tree.display()
    );
    fs::write(path, text)?;
    Ok(())
}

fn today() -> String {
    cmd_line("date", &["-u", "+%Y-%m-%d"])
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "host".into())
}

fn main() -> Result<()> {
    let a = Args::parse();
    let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let rsyncd = match &a.rsyncd {
        Some(p) => p.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| ws.join("target"))
            .join("release/rsyncd"),
    };
    let work = a
        .work
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/rsyncd-bench/n{}-s{}", a.files, a.seed)));
    let tree = work.join("tree");
    let marker = work.join("tree.done");

    // 1. Tree.
    let shape = match fs::read_to_string(&marker)
        .ok()
        .and_then(|t| Shape::from_marker(&t))
    {
        Some(s) if s.files == a.files as u64 && s.seed == a.seed => {
            eprintln!("reusing tree {} ({})", tree.display(), s.describe());
            s
        }
        _ => {
            let _ = fs::remove_file(&marker);
            if tree.exists() {
                fs::remove_dir_all(&tree)?;
            }
            eprintln!("generating {} files under {} ...", a.files, tree.display());
            let s = generate(&tree, a.files, a.seed)?;
            fs::write(&marker, s.to_marker())?;
            eprintln!("generated: {}", s.describe());
            s
        }
    };
    if a.generate_only {
        return Ok(());
    }
    ensure!(
        rsyncd.is_file(),
        "{} not found: cargo build --release -p rsyncd",
        rsyncd.display()
    );

    // 2. Daemons.
    let run = work.join("run");
    if run.exists() {
        fs::remove_dir_all(&run)?;
    }
    fs::create_dir_all(&run)?;
    let conf = run.join("rsyncd.conf");
    write_conf(&conf, &tree, &run.join("stock-rsyncd.log"))?;
    let stock = start_stock(&a.rsync, &conf, &run.join("stock-stderr.log"))?;
    eprintln!("stock daemon pid {} port {}", stock.pid(), stock.port);
    eprintln!("starting our daemon (snapshot build) ...");
    let (ours, startup) = start_ours(&rsyncd, &conf, &run.join("state"), &run.join("ours.log"), &a.ours_arg)?;
    eprintln!(
        "our daemon pid {} port {}: startup {:.2} s ({})",
        ours.pid(),
        ours.port,
        startup.secs,
        startup.snapshot_line.trim()
    );
    let tck = clk_tck();
    let mut rows = Vec::new();

    // 3. Timed full pulls into scratch directories, alternating.
    for i in 0..a.full_runs {
        let order = if i % 2 == 0 {
            [&stock, &ours]
        } else {
            [&ours, &stock]
        };
        for d in order {
            let dest = a
                .full_dest
                .join(format!("full-{}-{}", d.kind.name(), i + 1));
            if dest.exists() {
                fs::remove_dir_all(&dest)?;
            }
            fs::create_dir_all(&dest)?;
            if a.cold {
                drop_caches()?;
            }
            let r = pull(&a.rsync, d, &dest, i + 1, "full", tck)?;
            ensure!(
                r.files_transferred == shape.files,
                "{} full pull sent {} files, expected {}",
                d.kind.name(),
                r.files_transferred,
                shape.files
            );
            eprintln!(
                "full #{} {:5}: wall {:.2} s, daemon cpu {:.2} s, client cpu {:.2} s",
                i + 1,
                d.kind.name(),
                r.wall_s,
                r.daemon_cpu_s,
                r.client_cpu_s
            );
            rows.push(r);
            fs::remove_dir_all(&dest)?;
        }
    }
    if a.full_runs > 0 {
        let _ = fs::remove_dir(&a.full_dest);
    }

    // The client copy for the null syncs: made (or refreshed) by OUR daemon,
    // so the stock warm-up below doubles as a check that ours produced an
    // identical tree.
    let copy = work.join("copy");
    fs::create_dir_all(&copy)?;
    let t = Instant::now();
    let r = pull(&a.rsync, &ours, &copy, 0, "presync", tck)?;
    eprintln!(
        "client copy {} from ours: {} files in {:.1} s (untimed)",
        copy.display(),
        r.files_transferred,
        t.elapsed().as_secs_f64()
    );

    // Warm-up, and check both daemons see the copy as up to date.
    let load_before = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for d in [&stock, &ours] {
        let r = pull(&a.rsync, d, &copy, 0, "warmup", tck)?;
        ensure!(
            r.files_transferred == 0,
            "{} daemon transferred {} files on a null sync",
            d.kind.name(),
            r.files_transferred
        );
    }

    // 4. Null syncs, alternating.
    for i in 0..a.runs {
        let order = if i % 2 == 0 {
            [&stock, &ours]
        } else {
            [&ours, &stock]
        };
        for d in order {
            if a.cold {
                drop_caches()?;
            }
            let r = pull(&a.rsync, d, &copy, i + 1, "null", tck)?;
            eprintln!(
                "null #{} {:5}: wall {:.3} s, daemon cpu {:.2} s, received {} B",
                i + 1,
                d.kind.name(),
                r.wall_s,
                r.daemon_cpu_s,
                r.bytes_received
            );
            rows.push(r);
        }
    }

    // 5. One file changed.
    let changed = pick_changed_file(&copy)?;
    for i in 0..a.runs {
        let order = if i % 2 == 0 {
            [&stock, &ours]
        } else {
            [&ours, &stock]
        };
        for d in order {
            alter_client_file(&copy.join(&changed), i)?;
            if a.cold {
                drop_caches()?;
            }
            let r = pull(&a.rsync, d, &copy, i + 1, "1-changed", tck)?;
            ensure!(
                r.files_transferred == 1,
                "{} daemon transferred {} files, expected 1",
                d.kind.name(),
                r.files_transferred
            );
            eprintln!(
                "1-changed #{} {:5}: wall {:.3} s, daemon cpu {:.2} s",
                i + 1,
                d.kind.name(),
                r.wall_s,
                r.daemon_cpu_s
            );
            rows.push(r);
        }
    }

    // 6. Results.
    let ctx = RunContext {
        shape,
        cold: a.cold,
        runs: a.runs,
        tck,
        startup,
        load: format!(
            "load average before the null syncs: {}; after: {}",
            load_before.trim(),
            fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        ),
    };
    let out = a.out.clone().unwrap_or_else(|| {
        ws.join("benches/runs")
            .join(format!("{}-{}", today(), hostname()))
            .join(format!(
                "n{}-{}",
                a.files,
                if a.cold { "cold" } else { "warm" }
            ))
    });
    fs::create_dir_all(&out)?;
    fs::write(out.join("raw.csv"), csv(&rows))?;
    let sum = summary(&rows, &ctx);
    fs::write(out.join("summary.md"), &sum)?;
    fs::write(
        out.join("SETUP.md"),
        setup_md(&ctx, &a, &rsyncd, &work, &changed, &ws),
    )?;
    print!("{sum}");
    eprintln!("results in {}", out.display());
    drop(ours);
    drop(stock);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (path, size, mtime) of every entry; symlinks without mtime (the
    /// generator cannot set a symlink's own mtime, so it is creation time).
    fn listing(root: &Path) -> Vec<(String, u64, Option<SystemTime>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let md = fs::symlink_metadata(e.path()).unwrap();
                if md.is_dir() {
                    stack.push(e.path());
                }
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let mtime = (!md.is_symlink()).then(|| md.modified().unwrap());
                out.push((rel, md.len(), mtime));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn generator_is_exact_and_deterministic() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sa = generate(&a.path().join("t"), 10_050, 3).unwrap();
        generate(&b.path().join("t"), 10_050, 3).unwrap();
        assert_eq!(sa.files, 10_050);
        assert_eq!(sa.symlinks, 3);
        let la = listing(&a.path().join("t"));
        let lb = listing(&b.path().join("t"));
        let regular = la
            .iter()
            .filter(|(p, _, _)| {
                fs::symlink_metadata(a.path().join("t").join(p))
                    .unwrap()
                    .is_file()
            })
            .count();
        assert_eq!(regular, 10_050);
        assert_eq!(sa.dirs, count_dirs(&a.path().join("t")).unwrap());
        assert!(
            sa.dirs >= 100,
            "about files/100 leaf directories: {}",
            sa.dirs
        );
        // Same seed, same names, sizes and mtimes.
        assert!(la == lb, "same seed gave different trees");
        // A different seed gives a different tree.
        let c = tempfile::tempdir().unwrap();
        generate(&c.path().join("t"), 10_050, 4).unwrap();
        assert!(la != listing(&c.path().join("t")), "seed had no effect");
    }

    #[test]
    fn shape_marker_round_trips() {
        let s = Shape {
            files: 5,
            dirs: 2,
            symlinks: 1,
            bytes: 99,
            max_depth: 4,
            name_len_sum: 50,
            path_len_sum: 120,
            max_files_per_dir: 3,
            gen_secs: 1.5,
            seed: 9,
        };
        let back = Shape::from_marker(&s.to_marker()).unwrap();
        assert_eq!(back.to_marker(), s.to_marker());
        assert!(Shape::from_marker("files=5\n").is_none(), "no version line");
    }

    #[test]
    fn parses_client_stats() {
        let out = "Number of regular files transferred: 1,234\n\
                   Total bytes sent: 2,974\n\
                   Total bytes received: 4,701,054\n";
        assert_eq!(stat_num(out, "Total bytes received"), Some(4_701_054));
        assert_eq!(stat_num(out, "Total bytes sent"), Some(2_974));
        assert_eq!(
            stat_num(out, "Number of regular files transferred"),
            Some(1_234)
        );
        assert_eq!(stat_num(out, "Literal data"), None);
    }

    #[test]
    fn median_and_proc_fields() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(Vec::new()).is_nan());
        // Our own stat line parses: pid field is field 1, ppid is field 4.
        let f = stat_fields(std::process::id()).unwrap();
        let ppid = field(&f, 4) as u32;
        assert!(ppid > 0);
        assert!(status_kb(std::process::id(), "VmRSS").unwrap() > 0);
    }
}
