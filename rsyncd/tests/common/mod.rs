//! What the daemon integration tests share: starting `rsyncd DIR` on a
//! free port with its log captured, `rsyncd refresh`, stopping it.
#![allow(dead_code)] // each test crate uses a different part

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_rsyncd");

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    /// Every listener's port, main first (as many as the start waited for).
    pub ports: Vec<u16>,
    log: Arc<Mutex<String>>,
    pub started: Duration,
}

impl Daemon {
    /// Starts `rsyncd ROOT` (module `mod`) with `state` as its state dir.
    pub fn start(root: &Path, state: &Path, extra: &[&str]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg(root).args(["--port=0", "--address=127.0.0.1"]).arg(format!("--state-dir={}", state.display())).args(extra);
        Daemon::start_cmd(cmd)
    }

    /// Starts `rsyncd --config=CONFIG --port=0 --address=127.0.0.1` with
    /// `state` as its state dir.
    pub fn start_config(config: &Path, state: &Path, extra: &[&str]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg(format!("--config={}", config.display()))
            .args(["--port=0", "--address=127.0.0.1"])
            .arg(format!("--state-dir={}", state.display()))
            .args(extra);
        Daemon::start_cmd(cmd)
    }

    /// [`Daemon::start_config`] for a daemon with `listeners` ports (`daemon
    /// port` modules): waits until it reports all of them.
    pub fn start_config_listeners(config: &Path, state: &Path, listeners: usize, extra: &[&str]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg(format!("--config={}", config.display()))
            .args(["--port=0", "--address=127.0.0.1"])
            .arg(format!("--state-dir={}", state.display()))
            .args(extra);
        Daemon::start_cmd_listeners(cmd, listeners)
    }

    /// Starts `cmd` (an rsyncd command line, or a wrapper that execs one)
    /// with its log captured, once it reports its first listener.
    pub fn start_cmd(cmd: Command) -> Daemon {
        Daemon::start_cmd_listeners(cmd, 1)
    }

    /// [`Daemon::start_cmd`], waiting for `listeners` "listening on" lines.
    pub fn start_cmd_listeners(mut cmd: Command, listeners: usize) -> Daemon {
        let t0 = Instant::now();
        let mut child =
            cmd.env("RSYNCD_LOG", "info").env("NO_COLOR", "1").stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn rsyncd");
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let mut ports = Vec::new();
        while ports.len() < listeners.max(1) {
            let Some(Ok(l)) = lines.next() else {
                let _ = child.kill();
                panic!("daemon exited early:\n{}", log.lock().unwrap());
            };
            log.lock().unwrap().push_str(&format!("{l}\n"));
            if let Some(a) = l.strip_prefix("rsyncd: listening on ") {
                ports.push(a.rsplit(':').next().expect("port").parse().expect("port"));
            }
        }
        let port = ports[0];
        let started = t0.elapsed();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                l2.lock().unwrap().push_str(&format!("{l}\n"));
            }
        });
        Daemon { child, port, ports, log, started }
    }

    /// The daemon's process id.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, limit: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log().contains(needle)
    }

    /// The port of the metrics endpoint, from the start-up line.
    pub fn metrics_port(&self) -> Option<u16> {
        let log = self.log();
        let line = log.lines().find_map(|l| l.strip_prefix("rsyncd: metrics on http://"))?;
        line.trim_end_matches("/metrics").rsplit(':').next()?.parse().ok()
    }

    /// Sends `sig` to the daemon without waiting for it.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill() on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub fn watching(&self) -> Result<(), String> {
        let log = self.log();
        if log.contains("fanotify watcher active") {
            Ok(())
        } else {
            Err(log.lines().find(|l| l.contains("fanotify")).unwrap_or("no watcher line").to_string())
        }
    }

    /// `rsyncd refresh mod [path]` against this daemon.
    pub fn refresh(&self, state: &Path, path: Option<&str>) -> String {
        self.refresh_module(state, "mod", path)
    }

    /// `rsyncd refresh MODULE [path]` against this daemon.
    pub fn refresh_module(&self, state: &Path, module: &str, path: Option<&str>) -> String {
        let out = Command::new(BIN)
            .arg("refresh")
            .arg(format!("--state-dir={}", state.display()))
            .arg(module)
            .args(path)
            .output()
            .expect("run rsyncd refresh");
        assert!(out.status.success(), "refresh failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the daemon with `sig` and waits for it.
    pub fn stop(mut self, sig: i32) -> String {
        // SAFETY: kill() on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let status = self.child.wait().expect("wait");
        if sig == libc::SIGTERM {
            assert!(status.success(), "SIGTERM should end the daemon cleanly: {status:?}\n{}", self.log());
        }
        // The reader thread may still be draining.
        std::thread::sleep(Duration::from_millis(50));
        self.log()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of /proc/PID/status as a number (the first word; kB for Vm*).
pub fn proc_status(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Open descriptors of process `pid`.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// User plus system CPU time of process `pid`, in clock ticks.
pub fn cpu_ticks(pid: i32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the ")" that ends the command name: state is field 3,
    // utime 14 and stime 15.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Raises this process's soft open-file limit to its hard limit (tests
/// that hold many connections).
pub fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on a plain struct we own.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// A TCP connection to 127.0.0.1:`port` from the loopback address `src`
/// (any 127.x.y.z works on Linux), so tests can play many client hosts.
pub fn connect_from(src: std::net::Ipv4Addr, port: u16) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&std::net::SocketAddr::from((src, 0)).into())?;
    s.connect_timeout(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into(), Duration::from_secs(10))?;
    Ok(s.into())
}

/// `rsync ARGS` (the stock client), with its output.
pub fn rsync(args: &[&str]) -> std::process::Output {
    Command::new("rsync").args(args).stdin(Stdio::null()).output().expect("run rsync")
}

/// Whether the stock `rsync` client is installed.
pub fn have_rsync() -> bool {
    Command::new("rsync").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Whether two trees hold the same regular files (names and bytes).
pub fn same_files(a: &Path, b: &Path) -> Result<(), String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
        let mut ents: Vec<_> = std::fs::read_dir(dir).map(|d| d.filter_map(Result::ok).collect()).unwrap_or_default();
        ents.sort_by_key(|e| e.file_name());
        for e in ents {
            let p = e.path();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                walk(root, &p, out);
            } else if ft.is_file() {
                out.push((p.strip_prefix(root).expect("prefix").to_path_buf(), std::fs::read(&p).expect("read")));
            }
        }
    }
    let (mut x, mut y) = (Vec::new(), Vec::new());
    walk(a, a, &mut x);
    walk(b, b, &mut y);
    let names = |v: &[(std::path::PathBuf, Vec<u8>)]| v.iter().map(|(p, _)| p.display().to_string()).collect::<Vec<_>>();
    if names(&x) != names(&y) {
        return Err(format!("different names: {:?} vs {:?}", names(&x), names(&y)));
    }
    for ((p, d1), (_, d2)) in x.iter().zip(&y) {
        if d1 != d2 {
            return Err(format!("{} differs ({} vs {} bytes)", p.display(), d1.len(), d2.len()));
        }
    }
    Ok(())
}

/// Threads of process `pid` whose name starts with `prefix` (the daemon
/// names session threads `session-PEER`).
pub fn threads_named(pid: i32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(Result::ok).filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))).count()
        })
        .unwrap_or(0)
}
