//! Running stock rsync clients (one or several at once) against a daemon
//! and measuring the round: client wall times, server CPU and memory,
//! client CPU, `--stats`.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::daemon::Daemon;
use crate::procstat::{load1, self_children_ticks, Mem, MemSampler, Peak};

/// A stock client command: `rsync ARGS --stats SRC DEST`, in its own process
/// group (so a timeout kills the client and its forked receiver).
pub fn rsync_cmd(rsync: &std::path::Path, args: &[String], src: &str, dest: &str) -> Command {
    let mut c = Command::new(rsync);
    c.args(args).arg("--stats").arg(src).arg(dest).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    c
}

/// What one client did.
#[derive(Debug, Clone, Default)]
pub struct ClientOut {
    /// Wall time; `None` when it was killed at the timeout.
    pub wall_s: Option<f64>,
    /// Exit status 0.
    pub ok: bool,
    /// Exit status as text.
    pub status: String,
    /// Standard output (`--stats`).
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut b = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut b);
        }
        String::from_utf8_lossy(&b).into_owned()
    })
}

/// Starts all `cmds` at once and waits for each (killing those still
/// running after `timeout`).
pub fn run_many(cmds: Vec<Command>, timeout: Duration) -> Result<Vec<ClientOut>> {
    let t0 = Instant::now();
    let mut running = Vec::new();
    for mut c in cmds {
        let mut child = c.spawn().context("running the rsync client")?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        running.push((child, out, err, None::<(f64, std::process::ExitStatus)>, false));
    }
    loop {
        let mut pending = 0;
        for (child, _, _, done, killed) in running.iter_mut() {
            if done.is_some() {
                continue;
            }
            if let Some(st) = child.try_wait()? {
                *done = Some((t0.elapsed().as_secs_f64(), st));
            } else if t0.elapsed() > timeout {
                // SAFETY: kill(2) on the process group we created for this client.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let st = child.wait()?;
                *done = Some((t0.elapsed().as_secs_f64(), st));
                *killed = true;
            } else {
                pending += 1;
            }
        }
        if pending == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(running
        .into_iter()
        .map(|(_, out, err, done, killed)| {
            let (wall, st) = done.expect("all done");
            ClientOut {
                wall_s: (!killed).then_some(wall),
                ok: st.success() && !killed,
                status: if killed { "killed at timeout".into() } else { st.to_string() },
                stdout: out.join().unwrap_or_default(),
                stderr: err.join().unwrap_or_default(),
            }
        })
        .collect())
}

/// A `--stats` number: "Total bytes received: 1,234", "File list
/// generation time: 0.001 seconds", "Number of files: 1,010 (reg: …)".
pub fn stat_num(out: &str, key: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with(key))?;
    let v = line[key.len()..].trim_start_matches(':').trim();
    let tok: String = v.split_whitespace().next()?.chars().filter(|c| c.is_ascii_digit() || *c == '.').collect();
    tok.parse().ok()
}

/// The `--stats` lines the benchmarks use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    /// Number of files (all entries in the list).
    pub files: f64,
    /// Number of regular files transferred.
    pub transferred: f64,
    /// Number of deleted files.
    pub deleted: f64,
    /// Literal data.
    pub literal: f64,
    /// Matched data.
    pub matched: f64,
    /// Total bytes sent (client to server).
    pub bytes_sent: f64,
    /// Total bytes received (server to client).
    pub bytes_received: f64,
    /// File list generation time, server-reported (s).
    pub flist_gen_s: Option<f64>,
    /// File list transfer time, server-reported (s).
    pub flist_xfer_s: Option<f64>,
}

impl Stats {
    /// Parses a client's `--stats` output.
    pub fn parse(out: &str) -> Stats {
        let n = |k: &str| stat_num(out, k).unwrap_or(0.0);
        Stats {
            files: n("Number of files"),
            transferred: n("Number of regular files transferred"),
            deleted: n("Number of deleted files"),
            literal: n("Literal data"),
            matched: n("Matched data"),
            bytes_sent: n("Total bytes sent"),
            bytes_received: n("Total bytes received"),
            flist_gen_s: stat_num(out, "File list generation time"),
            flist_xfer_s: stat_num(out, "File list transfer time"),
        }
    }
}

/// One measured round: `N` clients started at once against one daemon.
#[derive(Debug, Clone, Default)]
pub struct Round {
    /// Each client.
    pub clients: Vec<ClientOut>,
    /// Their parsed `--stats`.
    pub stats: Vec<Stats>,
    /// First start to last exit.
    pub round_wall_s: f64,
    /// Server CPU over the round (see [`Daemon::cpu_ticks`]), seconds.
    pub server_cpu_s: f64,
    /// CPU of all clients, seconds.
    pub client_cpu_s: f64,
    /// Peak server memory during the round.
    pub peak: Peak,
    /// Server memory right before.
    pub idle: Mem,
    /// 1-minute load average at the start.
    pub load1: f64,
    /// The daemon went idle after the round (its CPU is fully accounted).
    pub idle_after: bool,
}

impl Round {
    /// Client wall times of the clients that finished.
    pub fn walls(&self) -> Vec<f64> {
        self.clients.iter().filter_map(|c| c.wall_s).collect()
    }

    /// All clients exited 0.
    pub fn all_ok(&self) -> bool {
        self.clients.iter().all(|c| c.ok)
    }

    /// The first failure, for messages.
    pub fn failure(&self) -> Option<String> {
        self.clients.iter().find(|c| !c.ok).map(|c| format!("{}: {}{}", c.status, c.stderr.trim(), c.stdout.lines().last().unwrap_or("")))
    }
}

/// Runs `cmds` at once against `d` and measures the round.
pub fn measure_round(d: &mut Daemon, cmds: Vec<Command>, timeout: Duration, tck: f64) -> Result<Round> {
    let load = load1();
    let idle = d.mem();
    let cpu0 = d.cpu_ticks()?;
    let cl0 = self_children_ticks()?;
    let sampler = MemSampler::start(d.pid(), Duration::from_millis(10));
    let t0 = Instant::now();
    let clients = run_many(cmds, timeout)?;
    let round_wall_s = t0.elapsed().as_secs_f64();
    let cl1 = self_children_ticks()?;
    let idle_after = d.wait_idle(Duration::from_secs(120));
    let peak = sampler.finish();
    let cpu1 = d.cpu_ticks()?;
    let stats = clients.iter().map(|c| Stats::parse(&c.stdout)).collect();
    Ok(Round {
        clients,
        stats,
        round_wall_s,
        server_cpu_s: cpu1.saturating_sub(cpu0) as f64 / tck,
        client_cpu_s: cl1.saturating_sub(cl0) as f64 / tck,
        peak,
        idle,
        load1: load,
        idle_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stats() {
        let out = "Number of files: 1,010,243 (reg: 1,000,000, dir: 10,243)\n\
                   Number of regular files transferred: 12\n\
                   Number of deleted files: 0\n\
                   Literal data: 61,322,000 bytes\n\
                   Matched data: 2,000,000,000 bytes\n\
                   File list generation time: 1.414 seconds\n\
                   File list transfer time: 0.000 seconds\n\
                   Total bytes sent: 2,974\n\
                   Total bytes received: 20,192,181\n";
        let s = Stats::parse(out);
        assert_eq!(s.files, 1_010_243.0);
        assert_eq!(s.transferred, 12.0);
        assert_eq!(s.literal, 61_322_000.0);
        assert_eq!(s.matched, 2e9);
        assert_eq!(s.bytes_received, 20_192_181.0);
        assert_eq!(s.bytes_sent, 2974.0);
        assert_eq!(s.flist_gen_s, Some(1.414));
        assert_eq!(s.flist_xfer_s, Some(0.0));
        assert_eq!(stat_num(out, "Total transferred file size"), None);
    }

    #[test]
    fn run_many_times_out_and_reports() {
        let mk = |secs: &str| {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("echo hi; sleep {secs}")]).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
            c
        };
        let r = run_many(vec![mk("0"), mk("30")], Duration::from_millis(500)).unwrap();
        assert!(r[0].ok && r[0].wall_s.is_some() && r[0].stdout == "hi\n", "{:?}", r[0]);
        assert!(!r[1].ok && r[1].wall_s.is_none(), "{:?}", r[1]);
    }
}
