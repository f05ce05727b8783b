//! `checksum cache = yes` end to end with the stock client: a `-c` pull with
//! a warm cache reads no file of the tree (strace on the daemon, as in
//! `null_sync_syscalls.rs`), a file rewritten with the same size and mtime
//! is still detected, and a cold cache falls back to reading the files.
//!
//! Needs `strace` (`.ci/run` installs it) and ptrace rights over our own
//! child (root, or `kernel.yama.ptrace_scope` 0/1 with a child process).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Daemon, BIN};

const TRACE_SET: &str = "trace=%file,getdents64,statx,newfstatat,lstat,stat,openat,openat2";

/// An attached `strace -f -y`; `finish` detaches and returns the trace.
struct Trace {
    child: Child,
    out: PathBuf,
}

impl Trace {
    fn attach(pid: u32, out: &Path) -> Trace {
        let mut child = Command::new("strace")
            .args(["-f", "-y", "-e", TRACE_SET, "-o"])
            .arg(out)
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strace is needed for this test (.ci/run installs it)");
        let mut err = child.stderr.take().expect("piped");
        let mut seen = Vec::new();
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("attached") {
            match err.read(&mut buf) {
                Ok(0) | Err(_) => panic!("strace could not attach: {}", String::from_utf8_lossy(&seen)),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "strace did not attach");
        }
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = err.read_to_end(&mut sink);
        });
        std::thread::sleep(Duration::from_millis(500));
        Trace { child, out: out.to_path_buf() }
    }

    fn finish(mut self) -> String {
        // SAFETY: kill() on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        std::fs::read_to_string(&self.out).expect("trace file")
    }
}

fn wait_log(d: &Daemon, what: &str, n: usize) {
    let t0 = Instant::now();
    while d.log().matches(what).count() < n {
        assert!(t0.elapsed() < Duration::from_secs(60), "no {n}x {what:?} in the log:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn pull(port: u16, module: &str, dest: &Path, extra: &[&str]) -> String {
    let out = Command::new("rsync")
        .args(["-a", "--stats", "--timeout=60"])
        .args(extra)
        .arg(format!("rsync://127.0.0.1:{port}/{module}/"))
        .arg(format!("{}/", dest.display()))
        .output()
        .expect("run rsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "rsync failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn transferred(stats: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix("Number of regular files transferred: "))
        .map(|n| n.replace(',', "").trim().parse().expect("count"))
        .unwrap_or_else(|| panic!("no transfer count in {stats}"))
}

fn tree(root: &Path, big: usize) {
    for d in 0..6 {
        let dir = root.join(format!("pool/d{d}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..8 {
            std::fs::write(dir.join(format!("p{f}.rpm")), format!("{d}-{f}\n").repeat(100 + f * 37)).unwrap();
        }
    }
    let data: Vec<u8> = (0..big as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(root.join("aaa-big.iso"), data).unwrap();
}

/// Rewrites `p` with other bytes of the same length and puts its mtime back:
/// only the ctime (and the content) tells.
fn rewrite_keeping_size_and_mtime(p: &Path) {
    let md = std::fs::metadata(p).unwrap();
    let mut b = std::fs::read(p).unwrap();
    for x in b.iter_mut().take(16) {
        *x = x.wrapping_add(1);
    }
    std::fs::write(p, &b).unwrap();
    let t = libc::timespec { tv_sec: md.mtime(), tv_nsec: md.mtime_nsec() };
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a two-element timespec array.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), [t, t].as_ptr(), 0) }, 0);
    let after = std::fs::metadata(p).unwrap();
    assert_eq!((after.len(), after.mtime(), after.mtime_nsec()), (md.len(), md.mtime(), md.mtime_nsec()));
}

fn same_tree(a: &Path, b: &Path) {
    for e in walk(a) {
        let rel = e.strip_prefix(a).unwrap();
        if e.is_file() {
            assert_eq!(std::fs::read(&e).unwrap(), std::fs::read(b.join(rel)).unwrap(), "{}", rel.display());
        }
    }
    assert_eq!(walk(a).len(), walk(b).len());
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![p.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                todo.push(e.clone());
            }
            out.push(e);
        }
    }
    out
}

fn conf(t: &Path, root: &Path, rate: u32) -> PathBuf {
    let conf = t.join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!("[mod]\npath = {}\nuid = 0\ngid = 0\nchecksum cache = yes\nchecksum cache rate = {rate}\n", root.display()),
    )
    .unwrap();
    conf
}

#[test]
fn a_warm_checksum_pull_reads_no_file_and_changes_are_still_seen() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("tree/mod");
    tree(&root, 3 << 20);
    let root = root.canonicalize().unwrap();
    let state = t.path().join("state");
    let conf = conf(t.path(), &root, 0);
    let d = Daemon::start_config(&conf, &state, &["--no-watch"]);
    wait_log(&d, "checksum cache pass done", 1);
    assert!(d.log().contains("files=49"), "{}", d.log());
    let copy = t.path().join("copy");
    pull(d.port, "mod", &copy, &[]);
    wait_log(&d, "file list sent", 1);

    // Warm: -c pulls (xxh128 as 3.2.3+ negotiates, md5 as older clients do,
    // with and without incremental recursion) open nothing of the tree.
    let trace = Trace::attach(d.child.id(), &t.path().join("warm.trace"));
    let mut sessions = 1;
    for extra in [&["-c"][..], &["-c", "--no-inc-recursive"], &["-c", "--checksum-choice=md5"]] {
        let stats = pull(d.port, "mod", &copy, extra);
        assert_eq!(transferred(&stats), 0, "{extra:?}: {stats}");
        sessions += 1;
        wait_log(&d, "file list sent", sessions);
    }
    std::thread::sleep(Duration::from_millis(300));
    let text = trace.finish();
    let module = root.to_str().unwrap();
    let on_tree: Vec<&str> = text.lines().filter(|l| l.contains(module)).collect();
    assert!(on_tree.is_empty(), "{} syscalls on the tree during warm -c pulls:\n{}", on_tree.len(), on_tree.join("\n"));
    assert!(text.lines().filter(|l| l.contains("+++ exited")).count() >= 3, "strace did not follow the sessions:\n{text}");

    // Control: md4 (protocol 29) is not cached; that pull reads the files,
    // and the trace sees it.
    let trace = Trace::attach(d.child.id(), &t.path().join("md4.trace"));
    let stats = pull(d.port, "mod", &copy, &["-c", "--protocol=29"]);
    assert_eq!(transferred(&stats), 0, "{stats}");
    sessions += 1;
    wait_log(&d, "file list sent", sessions);
    let text = trace.finish();
    assert!(text.lines().any(|l| l.contains(module) && l.contains("p3.rpm")), "the md4 fallback read nothing:\n{text}");

    // A file rewritten with the same size and mtime: only -c can tell, and
    // the cached checksum must not hide it.
    rewrite_keeping_size_and_mtime(&root.join("pool/d2/p5.rpm"));
    let out = Command::new(BIN).arg("refresh").arg(format!("--state-dir={}", state.display())).arg("mod").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stats = pull(d.port, "mod", &copy, &[]);
    assert_eq!(transferred(&stats), 0, "quick check cannot see it: {stats}");
    let stats = pull(d.port, "mod", &copy, &["-c"]);
    assert_eq!(transferred(&stats), 1, "{stats}");
    same_tree(&root, &copy);

    // The cache is written to the state dir and survives a restart (nothing
    // is read again).
    let log = d.stop(libc::SIGTERM);
    assert!(log.contains("checksum cache pass done"), "{log}");
    assert!(state.join("mod.sums").is_file());
    let d = Daemon::start_config(&conf, &state, &["--no-watch"]);
    wait_log(&d, "checksum cache pass done", 1);
    let log = d.log();
    assert!(log.contains("checksum cache loaded") && log.contains("entries=49"), "{log}");
    // At most the rewritten file is read again (the filler walks a new
    // generation at most every 10 s, so it may not have got to it).
    let queued: u64 = log
        .split("queued=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(queued <= 1, "{log}");
}

#[test]
fn a_cold_cache_falls_back_to_reading() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("tree/mod");
    // 16 MiB at 1 MiB/s: the filler is still on the first file (the big one
    // sorts first) while the pulls run.
    tree(&root, 16 << 20);
    let root = root.canonicalize().unwrap();
    let copy = t.path().join("copy");
    // A copy whose files differ from the tree in content only.
    let out = Command::new("cp").arg("-a").arg(&root).arg(&copy).output().unwrap();
    assert!(out.status.success());
    let changed = ["pool/d0/p1.rpm", "pool/d3/p7.rpm", "pool/d5/p0.rpm"];
    for c in changed {
        rewrite_keeping_size_and_mtime(&copy.join(c));
    }
    let state = t.path().join("state");
    let d = Daemon::start_config(&conf(t.path(), &root, 1), &state, &["--no-watch"]);
    let stats = pull(d.port, "mod", &copy, &[]);
    assert_eq!(transferred(&stats), 0, "{stats}");
    // Exactly the three files: checksums read from the files are right
    // (wrong ones would resend everything, stale ones would miss some).
    let stats = pull(d.port, "mod", &copy, &["-c"]);
    assert_eq!(transferred(&stats), changed.len() as u64, "{stats}");
    same_tree(&root, &copy);
    assert!(!d.log().contains("checksum cache pass done"), "the cache was not cold:\n{}", d.log());
}
