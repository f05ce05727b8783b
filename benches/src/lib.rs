//! What the benchmark programs share: /proc readers for daemon CPU, RSS
//! and process trees (Linux).

/// `/proc` readers and an RSS sampler.
pub mod procstat {
    use std::fs;
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use anyhow::{Context, Result};


    /// Fields of /proc/<pid>/stat after the command name; `n` is the 1-based
    /// field number from proc(5).
    pub fn stat_fields(pid: u32) -> Result<Vec<u64>> {
        let s = fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let rest = &s[s.rfind(')').context("bad stat")? + 2..];
        // Field 3 (state) is a letter; report it as 0.
        Ok(rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect())
    }

    pub fn field(v: &[u64], n: usize) -> u64 {
        v.get(n - 3).copied().unwrap_or(0)
    }

    /// utime+stime (and with `children`, cutime+cstime) of `pid`, in ticks.
    pub fn cpu_ticks(pid: u32, children: bool) -> Result<u64> {
        let f = stat_fields(pid)?;
        let mut t = field(&f, 14) + field(&f, 15);
        if children {
            t += field(&f, 16) + field(&f, 17);
        }
        Ok(t)
    }

    /// A `kB` value from /proc/<pid>/status.
    pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
        let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        for line in s.lines() {
            if let Some(v) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
                return v.split_whitespace().next()?.parse().ok();
            }
        }
        None
    }

    /// Direct children of a single-threaded process.
    pub fn children(pid: u32) -> Vec<u32> {
        fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
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

    pub fn clk_tck() -> f64 {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    }

    /// Samples the largest VmRSS and RssAnon (kB), each summed over a process
    /// tree, until stopped.
    pub struct RssSampler {
        stop: Arc<AtomicBool>,
        handle: std::thread::JoinHandle<(u64, u64)>,
    }

    impl RssSampler {
        pub fn start(pid: u32) -> Self {
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let handle = std::thread::spawn(move || {
                let (mut peak, mut peak_anon) = (0, 0);
                while !s.load(Ordering::Relaxed) {
                    let (mut rss, mut anon) = (0, 0);
                    for p in descendants(pid) {
                        rss += status_kb(p, "VmRSS").unwrap_or(0);
                        anon += status_kb(p, "RssAnon").unwrap_or(0);
                    }
                    peak = peak.max(rss);
                    peak_anon = peak_anon.max(anon);
                    std::thread::sleep(Duration::from_millis(5));
                }
                (peak, peak_anon)
            });
            RssSampler { stop, handle }
        }
        pub fn finish(self) -> (u64, u64) {
            self.stop.store(true, Ordering::Relaxed);
            self.handle.join().unwrap_or((0, 0))
        }
    }


    pub fn self_children_ticks() -> Result<u64> {
        let f = stat_fields(std::process::id())?;
        Ok(field(&f, 16) + field(&f, 17))
    }
}
