//! Syscalls of one null sync, per daemon: `strace -f -y` attached to the
//! daemon (stock: following the per-connection fork) for one pull, every
//! syscall traced.
//!
//! A call is "on the tree" when its decoded arguments name the tree (a path
//! under it, or with `-y` a descriptor open on it), or when it passes a
//! relative path (both daemons are started in `/`, so a relative path is
//! relative to a module directory the process changed into, as stock's
//! per-connection child does). Under strace a pull runs many times slower;
//! these runs are not timed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{scenario_flags, Ctx, Section, NULL_SCENARIOS};
use crate::client::{measure_round, rsync_cmd};
use crate::daemon::Kind;

/// Syscalls whose string argument is a path.
const PATH_CALLS: &[&str] = &[
    "open", "openat", "openat2", "stat", "lstat", "newfstatat", "statx", "access", "faccessat", "faccessat2", "readlink", "readlinkat", "chdir",
    "getxattr", "lgetxattr", "listxattr", "llistxattr", "utimensat", "mkdir", "mkdirat", "unlink", "unlinkat", "rename", "renameat", "renameat2",
    "chmod", "fchmodat", "chown", "lchown", "fchownat", "name_to_handle_at",
];

/// Counts of one trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Syscalls seen.
    pub total: u64,
    /// Of those, on the tree.
    pub on_tree: u64,
    /// On-tree calls per syscall name.
    pub by_name: BTreeMap<String, u64>,
}

impl Counts {
    /// Classifies one `strace -f -y` output line.
    pub fn add_line(&mut self, line: &str, tree: &str) {
        // "PID name(args) = ret" or "PID name(args <unfinished ...>";
        // resumptions ("PID <... name resumed>"), signals and exits are not calls.
        let rest = line.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
        let Some(paren) = rest.find('(') else { return };
        let name = &rest[..paren];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            return;
        }
        self.total += 1;
        let args = &rest[paren + 1..];
        let relative = PATH_CALLS.contains(&name) && relative_path_arg(args);
        if args.contains(tree) || relative {
            self.on_tree += 1;
            *self.by_name.entry(name.to_string()).or_default() += 1;
        }
    }

    /// "openat2 1234, newfstatat 99" (largest first, at most `n`).
    pub fn top(&self, n: usize) -> String {
        let mut v: Vec<(&String, &u64)> = self.by_name.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        v.iter().take(n).map(|(k, c)| format!("{k} {c}")).collect::<Vec<_>>().join(", ")
    }
}

/// The first string argument is a relative path (`"x/y"`, `AT_FDCWD, "x"`).
fn relative_path_arg(args: &str) -> bool {
    let s = args.trim_start();
    let s = s.strip_prefix("AT_FDCWD,").map(str::trim_start).unwrap_or(s);
    match s.strip_prefix('"') {
        Some(p) => !p.starts_with('/') && !p.starts_with('"'),
        None => false,
    }
}

/// Attaches strace to `pid`, runs `during`, detaches; returns the counts.
fn traced(pid: u32, tree: &str, during: impl FnOnce() -> Result<()>) -> Result<Counts> {
    let mut child = Command::new("strace")
        .args(["-f", "-y", "-s", "256", "-o", "/dev/stdout", "-p"])
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("strace (apt-get install strace)")?;
    let counts = Arc::new(Mutex::new(Counts::default()));
    let out = child.stdout.take().context("stdout")?;
    let (c2, t2) = (counts.clone(), tree.to_string());
    let reader = std::thread::spawn(move || {
        for line in BufReader::with_capacity(1 << 20, out).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut c) = c2.lock() {
                c.add_line(&line, &t2);
            }
        }
    });
    // strace reports each attached thread on stderr before tracing it.
    let mut err = child.stderr.take().context("stderr")?;
    let mut seen = Vec::new();
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("attached") {
        match err.read(&mut buf) {
            Ok(0) | Err(_) => bail!("strace could not attach: {}", String::from_utf8_lossy(&seen)),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("strace did not attach");
        }
    }
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = err.read_to_end(&mut sink);
    });
    std::thread::sleep(Duration::from_millis(500));
    let res = during();
    // SAFETY: kill(2) on our own strace child; it detaches on SIGINT.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    let _ = reader.join();
    res?;
    let c = counts.lock().map(|c| c.clone()).unwrap_or_default();
    Ok(c)
}

/// Runs the section.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let timeout = Duration::from_secs(ctx.cfg.client_timeout * 10);
    for entries in ctx.cfg.sizes.clone() {
        if ctx.over_budget(&format!("strace at {entries} entries")) {
            break;
        }
        let (mut pair, copy) = super::null_sync::prepare(ctx, entries, Section::Strace)?;
        let (tree, _) = ctx.mirror(entries)?;
        let tree_s = tree.to_string_lossy().into_owned();
        let dest = format!("{}/", copy.display());
        for (scenario, _) in NULL_SCENARIOS {
            if ctx.over_budget(&format!("strace {scenario} at {entries} entries")) {
                break;
            }
            ctx.store.begin_unit(Section::Strace.name(), scenario, entries, "-", 1);
            for kind in Kind::order(0) {
                let tck = ctx.tck;
                let rsync = ctx.cfg.rsync.clone();
                let d = pair.get(kind);
                let pid = d.pid();
                let url = d.url("mirror");
                let load = crate::procstat::load1();
                let t0 = Instant::now();
                let mut files = 0.0;
                let counts = traced(pid, &tree_s, || {
                    let r = measure_round(d, vec![rsync_cmd(&rsync, &scenario_flags(scenario), &url, &dest)], timeout, tck)?;
                    anyhow::ensure!(r.all_ok(), "traced pull failed: {}", r.failure().unwrap_or_default());
                    files = r.stats[0].files;
                    Ok(())
                })?;
                let wall = t0.elapsed().as_secs_f64();
                eprintln!(
                    "strace {scenario:6} {entries:>8} {:5}: {} syscalls, {} on the tree ({}) in {wall:.0} s",
                    kind.name(),
                    counts.total,
                    counts.on_tree,
                    counts.top(4)
                );
                for (m, v) in [("syscalls_total", counts.total as f64), ("syscalls_on_tree", counts.on_tree as f64), ("entries_in_list", files), ("traced_wall_s", wall)] {
                    ctx.push(Section::Strace, scenario, entries, "-", 1, kind.name(), m, 1, v, load);
                }
                for (name, n) in &counts.by_name {
                    ctx.push(Section::Strace, scenario, entries, "-", 1, kind.name(), &format!("on_tree:{name}"), 1, *n as f64, load);
                }
            }
            ctx.checkpoint()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_trace_lines() {
        let t = "/tmp/b/tree";
        let mut c = Counts::default();
        for l in [
            "123 openat2(5</tmp/b/tree/releases>, \"41\", {flags=O_RDONLY}, 24) = 6</tmp/b/tree/releases/41>",
            "123 newfstatat(AT_FDCWD, \"releases/41/x.rpm\", {st_mode=S_IFREG|0644}, AT_SYMLINK_NOFOLLOW) = 0",
            "123 getdents64(7</tmp/b/tree/releases/41/os>, 0x55 /* 12 entries */, 32768) = 480",
            "124 write(3<socket:[1234]>, \"\\0\\0\", 2) = 2",
            "124 openat(AT_FDCWD, \"/etc/passwd\", O_RDONLY) = 3</etc/passwd>",
            "124 futex(0x7f, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>",
            "124 <... futex resumed>) = 0",
            "--- SIGCHLD {si_signo=SIGCHLD} ---",
            "125 +++ exited with 0 +++",
        ] {
            c.add_line(l, t);
        }
        assert_eq!(c.total, 6);
        assert_eq!(c.on_tree, 3);
        assert_eq!(c.by_name["newfstatat"], 1);
        assert_eq!(c.top(1), "getdents64 1");
        assert!(relative_path_arg("\"a/b\", 0"));
        assert!(!relative_path_arg("\"/a\", 0"));
        assert!(!relative_path_arg("3, 0"));
    }
}
