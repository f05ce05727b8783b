//! Starting stock `rsync --daemon` and our `rsyncd` on one rsyncd.conf, and
//! reading what each costs.
//!
//! The config is a public mirror module as `docs/operations.md` recommends
//! (`uid = nobody`, `gid = nogroup`, `ignore nonreadable = yes`, read
//! only); `use chroot = no` so stock needs no name lookups inside a
//! chroot. Both daemons listen on 127.0.0.1. Ours runs with `--no-watch`:
//! the trees live on the same file system as other people's builds, and a
//! file-system-wide fanotify mark would charge their events to our daemon's
//! CPU; no benchmark here changes a served tree while a daemon runs. Both
//! start in `/`, so a relative path in a trace is one inside a module.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::procstat::{children, cpu_ticks, status_kb, Mem};

/// Which daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `rsync --daemon` (Debian's rsync 3.2.7).
    Stock,
    /// Our `rsyncd`.
    Ours,
}

impl Kind {
    /// `stock` / `ours`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Stock => "stock",
            Kind::Ours => "ours",
        }
    }

    /// Run `i`'s order: stock first on even runs, ours first on odd ones,
    /// so drift of the shared machine hits both.
    pub fn order(i: usize) -> [Kind; 2] {
        if i.is_multiple_of(2) {
            [Kind::Stock, Kind::Ours]
        } else {
            [Kind::Ours, Kind::Stock]
        }
    }
}

/// A module of the shared config.
#[derive(Debug, Clone)]
pub struct Module {
    /// Module name.
    pub name: String,
    /// Served directory.
    pub path: PathBuf,
}

/// The rsyncd.conf text both daemons read.
pub fn conf_text(modules: &[Module], stock_log: &Path) -> String {
    let mut s = String::from(
        "# shared by stock rsync --daemon and our rsyncd (a public mirror module)\n\
         use chroot = no\nuid = nobody\ngid = nogroup\nignore nonreadable = yes\nread only = yes\n",
    );
    let _ = writeln!(s, "log file = {}", stock_log.display());
    for m in modules {
        let _ = write!(s, "\n[{}]\n    path = {}\n", m.name, m.path.display());
    }
    s
}

/// One running daemon.
pub struct Daemon {
    /// Which one.
    pub kind: Kind,
    child: Child,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// Ours: threads when idle.
    idle_threads: u64,
}

impl Daemon {
    /// Process id (stock: the listening parent).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `rsync://127.0.0.1:PORT/MODULE/`
    pub fn url(&self, module: &str) -> String {
        format!("rsync://127.0.0.1:{}/{module}/", self.port)
    }

    /// Server CPU so far, in ticks: stock, the daemon plus its reaped
    /// per-connection children; ours, the process (all threads, including
    /// finished session threads).
    pub fn cpu_ticks(&self) -> Result<u64> {
        cpu_ticks(self.pid(), self.kind == Kind::Stock)
    }

    /// Resident memory now (stock: summed over the daemon and its children).
    pub fn mem(&self) -> Mem {
        Mem::of_tree(self.pid())
    }

    fn session_threads(&self) -> usize {
        let Ok(tasks) = fs::read_dir(format!("/proc/{}/task", self.pid())) else { return 0 };
        tasks.flatten().filter(|t| fs::read_to_string(t.path().join("comm")).map(|c| c.starts_with("session-")).unwrap_or(false)).count()
    }

    /// Waits until the sessions that ran have been torn down, so their CPU
    /// time is accounted: stock's children reaped, our session threads gone.
    /// Returns false if that did not happen `within`.
    pub fn wait_idle(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut since_no_sessions: Option<Instant> = None;
        loop {
            let idle = match self.kind {
                Kind::Stock => children(self.pid()).is_empty(),
                Kind::Ours => {
                    let sessions = self.session_threads();
                    let threads = status_kb(self.pid(), "Threads").unwrap_or(0);
                    if sessions == 0 {
                        let t = *since_no_sessions.get_or_insert_with(Instant::now);
                        // A long-lived helper thread started since the
                        // baseline was taken: re-baseline.
                        if threads > self.idle_threads && t.elapsed() > Duration::from_secs(5) {
                            self.idle_threads = threads;
                        }
                    } else {
                        since_no_sessions = None;
                    }
                    sessions == 0 && threads <= self.idle_threads
                }
            };
            if idle {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
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
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `rsync --daemon --no-detach` on `conf` and waits until it accepts.
pub fn start_stock(rsync: &Path, conf: &Path, log: &Path) -> Result<Daemon> {
    let port = free_port()?;
    let log_f = fs::File::create(log)?;
    let child = Command::new(rsync)
        .args(["--daemon", "--no-detach"])
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--port={port}"))
        .arg("--address=127.0.0.1")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log_f.try_clone()?)
        .stderr(log_f)
        .spawn()
        .context("starting stock rsync --daemon")?;
    let mut d = Daemon { kind: Kind::Stock, child, port, idle_threads: 1 };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        ensure!(Instant::now() < deadline, "stock daemon did not start; see {}", log.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    d.wait_idle(Duration::from_secs(30));
    Ok(d)
}

/// What our daemon's start-up cost.
#[derive(Debug, Clone, Default)]
pub struct Startup {
    /// Spawn to "listening" (the snapshot build of every module).
    pub secs: f64,
    /// The daemon's snapshot log line.
    pub snapshot_line: String,
    /// Memory right after start-up.
    pub mem: Mem,
    /// `VmHWM` right after start-up, kB.
    pub hwm_kb: u64,
    /// Bytes of snapshot files in the state directory.
    pub snapshot_bytes: u64,
}

/// Starts our daemon (fresh `state` directory, so it builds its snapshots)
/// and waits until it listens.
pub fn start_ours(bin: &Path, conf: &Path, state: &Path, log: &Path, extra: &[String]) -> Result<(Daemon, Startup)> {
    if state.exists() {
        fs::remove_dir_all(state)?;
    }
    fs::create_dir_all(state)?;
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .args(extra)
        .arg(format!("--config={}", conf.display()))
        .args(["--port=0", "--address=127.0.0.1", "--no-watch"])
        .arg(format!("--state-dir={}", state.display()))
        .env("NO_COLOR", "1")
        .current_dir("/")
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
            if line.contains("snapshot built") || line.contains("snapshot opened") {
                snapshot = strip_ansi(&line);
            }
            if let Some(addr) = line.strip_prefix("rsyncd: listening on ") {
                let port = addr.rsplit(':').next().and_then(|p| p.trim().parse().ok());
                let _ = tx.send((port, std::mem::take(&mut snapshot)));
            }
        }
        let _ = tx.send((None, String::new()));
    });
    let (port, snapshot_line) = rx.recv_timeout(Duration::from_secs(3600)).context("our daemon did not report its port")?;
    let secs = t0.elapsed().as_secs_f64();
    let mut d = Daemon { kind: Kind::Ours, child, port: 0, idle_threads: 1 };
    let Some(port) = port else {
        bail!("our daemon exited during startup; see {}", log.display());
    };
    d.port = port;
    // Let start-up threads finish, then take the idle thread count.
    std::thread::sleep(Duration::from_millis(300));
    d.idle_threads = (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            status_kb(d.pid(), "Threads").unwrap_or(1)
        })
        .min()
        .unwrap_or(1);
    let snapshot_bytes = fs::read_dir(state)
        .map(|it| it.filter_map(|e| e.ok()?.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum())
        .unwrap_or(0);
    let st = Startup { secs, snapshot_line, mem: Mem::of(d.pid()), hwm_kb: status_kb(d.pid(), "VmHWM").unwrap_or(0), snapshot_bytes };
    Ok((d, st))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
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

/// Both daemons on one config, in a run directory.
pub struct Pair {
    /// Stock.
    pub stock: Daemon,
    /// Ours.
    pub ours: Daemon,
    /// Our start-up.
    pub startup: Startup,
    /// The run directory (config, logs, our state).
    pub dir: PathBuf,
}

impl Pair {
    /// Writes the config for `modules` into `dir` (recreated) and starts both.
    pub fn start(dir: &Path, rsync: &Path, rsyncd: &Path, modules: &[Module], ours_extra: &[String]) -> Result<Pair> {
        if dir.exists() {
            fs::remove_dir_all(dir)?;
        }
        fs::create_dir_all(dir)?;
        let conf = dir.join("rsyncd.conf");
        fs::write(&conf, conf_text(modules, &dir.join("stock-rsyncd.log")))?;
        let stock = start_stock(rsync, &conf, &dir.join("stock-stderr.log"))?;
        let (ours, startup) = start_ours(rsyncd, &conf, &dir.join("state"), &dir.join("ours.log"), ours_extra)?;
        eprintln!(
            "daemons: stock pid {} port {}; ours pid {} port {} (start-up {:.2} s: {})",
            stock.pid(),
            stock.port,
            ours.pid(),
            ours.port,
            startup.secs,
            startup.snapshot_line.trim()
        );
        Ok(Pair { stock, ours, startup, dir: dir.to_path_buf() })
    }

    /// The daemon of `kind`.
    pub fn get(&mut self, kind: Kind) -> &mut Daemon {
        match kind {
            Kind::Stock => &mut self.stock,
            Kind::Ours => &mut self.ours,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_alternates_and_conf_names_modules() {
        assert_eq!(Kind::order(0), [Kind::Stock, Kind::Ours]);
        assert_eq!(Kind::order(3), [Kind::Ours, Kind::Stock]);
        let c = conf_text(&[Module { name: "mirror".into(), path: "/t/m".into() }], Path::new("/l"));
        assert!(c.contains("[mirror]\n    path = /t/m\n"), "{c}");
        assert!(c.contains("uid = nobody") && c.contains("ignore nonreadable = yes") && c.contains("log file = /l"));
        assert_eq!(strip_ansi("\u{1b}[2mrsyncd\u{1b}[0m: x"), "rsyncd: x");
    }
}
