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
    log: Arc<Mutex<String>>,
    pub started: Duration,
}

impl Daemon {
    /// Starts `rsyncd ROOT` (module `mod`) with `state` as its state dir.
    pub fn start(root: &Path, state: &Path, extra: &[&str]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.arg(root)
            .args(["--port=0", "--address=127.0.0.1"])
            .arg(format!("--state-dir={}", state.display()))
            .args(extra);
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

    /// Starts `cmd` (an rsyncd command line, or a wrapper that execs one)
    /// with its log captured, once it reports its first listener.
    pub fn start_cmd(mut cmd: Command) -> Daemon {
        let t0 = Instant::now();
        let mut child = cmd
            .env("RSYNCD_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn rsyncd");
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        let port = loop {
            let Some(Ok(l)) = lines.next() else {
                let _ = child.kill();
                panic!("daemon exited early:\n{}", log.lock().unwrap());
            };
            log.lock().unwrap().push_str(&format!("{l}\n"));
            if let Some(a) = l.strip_prefix("rsyncd: listening on ") {
                break a.rsplit(':').next().expect("port").parse().expect("port");
            }
        };
        let started = t0.elapsed();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(Result::ok) {
                l2.lock().unwrap().push_str(&format!("{l}\n"));
            }
        });
        Daemon { child, port, log, started }
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
