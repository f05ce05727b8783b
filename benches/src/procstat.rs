//! `/proc` readers: CPU ticks, RSS (anonymous and file-backed apart), process
//! trees, and a sampler of a process tree's peak memory.

use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// Fields of /proc/<pid>/stat after the command name; read one with [`field`].
pub fn stat_fields(pid: u32) -> Result<Vec<u64>> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')').context("bad stat")? + 2..];
    // Field 3 (state) is a letter; report it as 0.
    Ok(rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

/// Field `n` (1-based, as numbered in proc(5)) of [`stat_fields`]' output.
pub fn field(v: &[u64], n: usize) -> u64 {
    v.get(n - 3).copied().unwrap_or(0)
}

/// utime+stime (and with `children`, cutime+cstime: reaped children) of
/// `pid`, in clock ticks. For a multi-threaded process this includes the
/// threads that have exited.
pub fn cpu_ticks(pid: u32, children: bool) -> Result<u64> {
    let f = stat_fields(pid)?;
    let mut t = field(&f, 14) + field(&f, 15);
    if children {
        t += field(&f, 16) + field(&f, 17);
    }
    Ok(t)
}

/// CPU ticks of this process (all threads).
pub fn self_ticks() -> Result<u64> {
    cpu_ticks(std::process::id(), false)
}

/// CPU ticks of this process's reaped children (the clients it ran).
pub fn self_children_ticks() -> Result<u64> {
    let f = stat_fields(std::process::id())?;
    Ok(field(&f, 16) + field(&f, 17))
}

/// A `kB` value from /proc/<pid>/status (`VmRSS`, `RssAnon`, `RssFile`, …);
/// for `Threads` the plain number.
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_value(&s, key)
}

/// The number after `key:` in a /proc/<pid>/status text.
pub fn status_value(status: &str, key: &str) -> Option<u64> {
    for line in status.lines() {
        if let Some(v) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            return v.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// Resident memory of one process, kB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mem {
    /// `RssAnon`: private anonymous pages (heap, stacks).
    pub anon_kb: u64,
    /// `RssFile`: file-backed pages mapped (binary, libraries, a mapped
    /// snapshot); shared with the page cache and other processes.
    pub file_kb: u64,
}

impl Mem {
    /// Of `pid` (zero if it is gone).
    pub fn of(pid: u32) -> Mem {
        let Ok(s) = fs::read_to_string(format!("/proc/{pid}/status")) else { return Mem::default() };
        Mem { anon_kb: status_value(&s, "RssAnon").unwrap_or(0), file_kb: status_value(&s, "RssFile").unwrap_or(0) }
    }

    /// Summed over `pid` and its descendants (stock: the daemon and its
    /// per-connection children).
    pub fn of_tree(pid: u32) -> Mem {
        descendants(pid).into_iter().map(Mem::of).fold(Mem::default(), |a, m| Mem { anon_kb: a.anon_kb + m.anon_kb, file_kb: a.file_kb + m.file_kb })
    }

    /// Anonymous plus file-backed.
    pub fn total_kb(&self) -> u64 {
        self.anon_kb + self.file_kb
    }
}

/// Direct children of a process (all its threads' children).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|x| x.parse::<u32>().ok()));
        }
    }
    out
}

/// `pid` and all its descendants.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let c = children(all[i]);
        all.extend(c);
        i += 1;
    }
    all
}

/// Clock ticks per second (`getconf CLK_TCK`, normally 100).
pub fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The 1-minute load average.
pub fn load1() -> f64 {
    fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(f64::NAN)
}

/// Peak memory of a process tree while something runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peak {
    /// Largest summed `RssAnon` seen.
    pub anon_kb: u64,
    /// Largest summed `RssFile` seen.
    pub file_kb: u64,
    /// Largest summed `RssAnon + RssFile` seen in one sample.
    pub total_kb: u64,
    /// Most processes seen in the tree at once.
    pub procs: u64,
}

/// Samples a process tree's memory every few milliseconds until stopped.
pub struct MemSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Peak>,
}

impl MemSampler {
    /// Start sampling `pid` and its descendants every `every`.
    pub fn start(pid: u32, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut p = Peak::default();
            loop {
                let pids = descendants(pid);
                let m = pids.iter().map(|&q| Mem::of(q)).fold(Mem::default(), |a, m| Mem {
                    anon_kb: a.anon_kb + m.anon_kb,
                    file_kb: a.file_kb + m.file_kb,
                });
                p.anon_kb = p.anon_kb.max(m.anon_kb);
                p.file_kb = p.file_kb.max(m.file_kb);
                p.total_kb = p.total_kb.max(m.total_kb());
                p.procs = p.procs.max(pids.len() as u64);
                if s.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(every);
            }
            p
        });
        MemSampler { stop, handle }
    }

    /// Stop and return the peaks.
    pub fn finish(self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        let f = stat_fields(me).unwrap();
        assert!(field(&f, 4) > 0, "ppid");
        let m = Mem::of(me);
        assert!(m.anon_kb > 0 && m.file_kb > 0, "{m:?}");
        assert!(status_kb(me, "Threads").unwrap() >= 1);
        assert!(descendants(me).contains(&me));
        assert!(clk_tck() >= 1.0);
        assert_eq!(status_value("Name:\tx\nRssAnon:\t  123 kB\n", "RssAnon"), Some(123));
        assert_eq!(status_value("RssAnonX: 1 kB\n", "RssAnon"), None);
    }

    #[test]
    fn sampler_sees_a_child() {
        let mut child = Command::new("sleep").arg("1").spawn().unwrap();
        let s = MemSampler::start(std::process::id(), Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(100));
        let p = s.finish();
        let _ = child.kill();
        let _ = child.wait();
        assert!(p.procs >= 2, "{p:?}");
        assert!(p.total_kb >= p.anon_kb && p.total_kb >= p.file_kb);
    }
}
