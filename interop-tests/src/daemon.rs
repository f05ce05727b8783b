//! Starting the stock daemon (`rsync --daemon`) or ours from a generated
//! `rsyncd.conf`, and tearing them down on `Drop`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{kill_group, pin_env};

/// How long a daemon may take to start listening.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One `[module]` section of the generated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    /// The module name (`[name]`).
    pub name: String,
    /// The module's `path`.
    pub path: PathBuf,
    /// Further `key = value` lines. A key given here replaces the harness's
    /// default for it (`uid`, `gid`, `read only`).
    pub extra: Vec<(String, String)>,
}

impl ModuleSpec {
    /// A module with the harness defaults and no extra parameters.
    pub fn new(name: &str, path: &Path) -> ModuleSpec {
        ModuleSpec {
            name: name.to_string(),
            path: path.to_path_buf(),
            extra: Vec::new(),
        }
    }

    /// Adds a `key = value` line to the module section.
    pub fn with(mut self, key: &str, value: &str) -> ModuleSpec {
        self.extra.push((key.to_string(), value.to_string()));
        self
    }
}

/// Which daemon implementation to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Which {
    /// `rsync --daemon`.
    Stock,
    /// Our `rsyncd` binary.
    Ours,
}

impl Which {
    /// A short lowercase name (`stock` / `ours`).
    pub fn name(self) -> &'static str {
        match self {
            Which::Stock => "stock",
            Which::Ours => "ours",
        }
    }
}

/// Where our daemon binary is: env `RSYNCD_BIN`, else `$CARGO_TARGET_DIR/debug/rsyncd`
/// when that variable is set, else `<workspace>/target/debug/rsyncd`.
/// Returns the candidate path and whether it exists.
pub fn ours_binary() -> (PathBuf, bool) {
    let path = if let Some(p) = std::env::var_os("RSYNCD_BIN") {
        PathBuf::from(p)
    } else if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        let t = PathBuf::from(t);
        let t = if t.is_relative() {
            workspace_dir().join(t)
        } else {
            t
        };
        t.join("debug").join("rsyncd")
    } else {
        workspace_dir().join("target").join("debug").join("rsyncd")
    };
    let exists = path.is_file();
    (path, exists)
}

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate dir has a parent")
        .to_path_buf()
}

/// Which daemon the differential tests compare against stock.
///
/// - `INTEROP_SECOND=stock` or `INTEROP_SECOND=ours` decides outright.
/// - `INTEROP_OURS=1` means ours (a missing binary then fails the test).
/// - Otherwise ours when its binary exists; when it is missing, stock if
///   `INTEROP_SELFTEST=1` (a harness self-test), else a panic telling how to build it.
pub fn second_side() -> Which {
    let flag = |v: &str| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0");
    match std::env::var("INTEROP_SECOND").as_deref() {
        Ok("stock") => return Which::Stock,
        Ok("ours") => return Which::Ours,
        Ok(other) if !other.is_empty() => {
            panic!("INTEROP_SECOND must be stock or ours, not {other:?}")
        }
        _ => {}
    }
    if flag("INTEROP_OURS") {
        return Which::Ours;
    }
    let (path, exists) = ours_binary();
    if exists {
        Which::Ours
    } else if flag("INTEROP_SELFTEST") {
        eprintln!(
            "note: {} missing; INTEROP_SELFTEST=1, so comparing stock against stock",
            path.display()
        );
        Which::Stock
    } else {
        panic!(
            "our daemon binary {} is missing; build it first: cargo build -p rsyncd \
             (or set RSYNCD_BIN, or INTEROP_SELFTEST=1 for a stock-vs-stock self-test)",
            path.display()
        )
    }
}

/// Writes `key = value` lines, letting `extra` replace a default with the same key.
fn push_params(
    out: &mut String,
    defaults: &[(&str, String)],
    extra: &[(String, String)],
    indent: &str,
) {
    let norm = |k: &str| k.to_ascii_lowercase().replace([' ', '_'], "");
    for (k, v) in defaults {
        if extra.iter().any(|(ek, _)| norm(ek) == norm(k)) {
            continue;
        }
        let _ = writeln!(out, "{indent}{k} = {v}");
    }
    for (k, v) in extra {
        assert!(
            !k.contains('\n') && !v.contains('\n'),
            "config line with a newline: {k:?} = {v:?}"
        );
        let _ = writeln!(out, "{indent}{k} = {v}");
    }
}

fn path_text(p: &Path) -> String {
    let s = std::str::from_utf8(p.as_os_str().as_bytes())
        .unwrap_or_else(|_| panic!("config path is not UTF-8: {}", p.display()));
    assert!(!s.contains('\n'), "config path with a newline: {s:?}");
    s.to_string()
}

/// The `rsyncd.conf` text the harness gives both daemons. `state_dir` holds the
/// pid and lock files.
pub fn render_config(
    state_dir: &Path,
    modules: &[ModuleSpec],
    global_extra: &[(String, String)],
) -> String {
    let mut out = String::from("# generated by interop-tests\n");
    let globals = [
        ("use chroot", "no".to_string()),
        ("pid file", path_text(&state_dir.join("rsyncd.pid"))),
        ("lock file", path_text(&state_dir.join("rsyncd.lock"))),
    ];
    push_params(&mut out, &globals, global_extra, "");
    for m in modules {
        assert!(
            !m.name.is_empty() && !m.name.contains([']', '\n', '/']),
            "bad module name {:?}",
            m.name
        );
        let _ = writeln!(out, "\n[{}]", m.name);
        // Stock rsyncd running as root switches to `nobody` by default; run the
        // module as root so it reads everything, as ours does.
        let defaults = [
            ("path", path_text(&m.path)),
            ("uid", "0".to_string()),
            ("gid", "0".to_string()),
        ];
        push_params(&mut out, &defaults, &m.extra, "    ");
    }
    out
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A running daemon; killed (with its whole process group) and reaped on `Drop`.
pub struct Daemon {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Which implementation this is.
    pub which: Which,
    child: Child,
    dir: tempfile::TempDir,
    config: PathBuf,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("which", &self.which)
            .field("port", &self.port)
            .field("pid", &self.child.id())
            .finish()
    }
}

/// Copies `r` into `buf` line by line, sending each line to `tx` as well.
fn tee_lines<R: Read + Send + 'static>(
    r: R,
    buf: Arc<Mutex<Vec<u8>>>,
    tx: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if let Ok(mut b) = buf.lock() {
                        b.extend_from_slice(&line);
                    }
                    if let Some(tx) = &tx {
                        let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                    }
                }
            }
        }
    });
}

impl Daemon {
    /// Starts `which` serving `modules`, and waits until it accepts connections.
    /// Panics (with the daemon's output) when it does not start.
    pub fn start(
        which: Which,
        modules: &[ModuleSpec],
        global_extra: &[(String, String)],
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix(&format!("interop-{}-", which.name()))
            .tempdir()
            .expect("daemon temp dir");
        let config = dir.path().join("rsyncd.conf");
        std::fs::write(&config, render_config(dir.path(), modules, global_extra))
            .expect("write rsyncd.conf");
        match which {
            Which::Stock => Self::start_stock(dir, config),
            Which::Ours => Self::start_ours(dir, config),
        }
    }

    fn start_stock(dir: tempfile::TempDir, config: PathBuf) -> Daemon {
        let log = dir.path().join("rsyncd.log");
        let mut last_err = String::new();
        // Another process may take the port between free_port() and rsync's bind;
        // rsync then exits at once, and we try another port.
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("rsync");
            cmd.arg("--daemon")
                .arg("--no-detach")
                .arg(format!("--config={}", config.display()))
                .arg(format!("--port={port}"))
                .arg("--address=127.0.0.1")
                .arg(format!("--log-file={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .process_group(0);
            pin_env(&mut cmd);
            let mut child = cmd.spawn().expect("spawn rsync --daemon");
            let stderr = Arc::new(Mutex::new(Vec::new()));
            tee_lines(child.stderr.take().expect("piped"), stderr.clone(), None);
            let deadline = Instant::now() + START_TIMEOUT;
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            loop {
                if let Ok(Some(st)) = child.try_wait() {
                    last_err = format!(
                        "stock daemon exited with {st} on port {port}; stderr: {}; log: {}",
                        String::from_utf8_lossy(
                            &stderr.lock().map(|b| b.clone()).unwrap_or_default()
                        ),
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Daemon {
                        port,
                        which: Which::Stock,
                        child,
                        dir,
                        config,
                        stderr,
                    };
                }
                if Instant::now() >= deadline {
                    kill_group(&child, libc::SIGKILL);
                    let _ = child.wait();
                    panic!("stock daemon did not listen on {port} within {START_TIMEOUT:?}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("stock daemon would not start: {last_err}");
    }

    fn start_ours(dir: tempfile::TempDir, config: PathBuf) -> Daemon {
        let (bin, exists) = ours_binary();
        assert!(
            exists,
            "{} is missing; build it first: cargo build -p rsyncd",
            bin.display()
        );
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--config={}", config.display()))
            .arg(format!("--state-dir={}", dir.path().join("snapshots").display()))
            .arg("--port=0")
            .arg("--address=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        pin_env(&mut cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        tee_lines(
            child.stderr.take().expect("piped"),
            stderr.clone(),
            Some(tx),
        );
        let deadline = Instant::now() + START_TIMEOUT;
        let fail = |child: &mut Child, why: String| -> ! {
            kill_group(child, libc::SIGKILL);
            let _ = child.wait();
            let out =
                String::from_utf8_lossy(&stderr.lock().map(|b| b.clone()).unwrap_or_default())
                    .into_owned();
            panic!(
                "our daemon {} did not start: {why}; stderr:\n{out}",
                bin.display()
            );
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(port) = parse_listening_line(&line) {
                        return Daemon {
                            port,
                            which: Which::Ours,
                            child,
                            dir,
                            config,
                            stderr,
                        };
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        fail(&mut child, format!("exited with {st}"));
                    }
                    if left.is_zero() {
                        fail(
                            &mut child,
                            format!("no 'listening on' line within {START_TIMEOUT:?}"),
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let st = child.wait().map(|s| s.to_string()).unwrap_or_default();
                    fail(
                        &mut child,
                        format!("closed stderr without a 'listening on' line (exit {st})"),
                    );
                }
            }
        }
    }

    /// The daemon's process id (for /proc inspection).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `rsync://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("rsync://127.0.0.1:{}/{}", self.port, path)
    }

    /// The config file both daemons were given.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The daemon's private directory (config, pid, lock and log files).
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the daemon logged so far: stock's `--log-file` plus its stderr, or
    /// ours's stderr.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if self.which == Which::Stock {
            s.push_str(
                &std::fs::read_to_string(self.dir.path().join("rsyncd.log")).unwrap_or_default(),
            );
        }
        if let Ok(b) = self.stderr.lock() {
            s.push_str(&String::from_utf8_lossy(&b));
        }
        s
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        kill_group(&self.child, libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Parses our daemon's readiness line `rsyncd: listening on 127.0.0.1:PORT`.
pub fn parse_listening_line(line: &str) -> Option<u16> {
    let rest = line.trim_end().strip_prefix("rsyncd: listening on ")?;
    let (_, port) = rest.rsplit_once(':')?;
    port.parse().ok().filter(|p| *p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line() {
        assert_eq!(
            parse_listening_line("rsyncd: listening on 127.0.0.1:40123\n"),
            Some(40123)
        );
        assert_eq!(
            parse_listening_line("rsyncd: listening on [::1]:873"),
            Some(873)
        );
        assert_eq!(
            parse_listening_line("rsyncd: listening on 127.0.0.1:0"),
            None
        );
        assert_eq!(parse_listening_line("warning: something"), None);
    }

    #[test]
    fn config_defaults_and_overrides() {
        let m = ModuleSpec::new("m", Path::new("/srv/m"))
            .with("uid", "nobody")
            .with("comment", "hi");
        let text = render_config(
            Path::new("/st"),
            &[m],
            &[("max connections".into(), "3".into())],
        );
        assert!(text.contains("use chroot = no\n"));
        assert!(text.contains("pid file = /st/rsyncd.pid\n"));
        assert!(text.contains("max connections = 3\n"));
        assert!(text.contains("[m]\n    path = /srv/m\n"));
        assert!(text.contains("    uid = nobody\n"));
        assert!(!text.contains("uid = 0"));
        assert!(text.contains("    gid = 0\n"));
        assert!(text.contains("    comment = hi\n"));
        let text = render_config(
            Path::new("/st"),
            &[],
            &[("use_chroot".into(), "yes".into())],
        );
        assert!(!text.contains("use chroot = no"));
    }
}
