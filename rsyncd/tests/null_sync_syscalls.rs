//! A null sync costs the daemon no file-system syscall on the module tree.
//!
//! `strace -f -y` is attached to the running daemon (all threads) while a
//! stock client pulls a module it already has, with the trace limited to the
//! file-system calls (`%file`, `getdents64`, the stat family, `openat`).
//! `-y` prints the path behind every descriptor, so a `getdents64(fd)` or an
//! `openat2(rootfd, "relative")` beneath the module also names the module
//! path. The null syncs must produce no such line; a pull after one file of
//! the copy was altered must (the file's `openat2`), which shows the filter
//! sees our tree accesses at all.
//!
//! Needs `strace` (`.ci/run` installs it) and ptrace rights over our own
//! child (root, or `kernel.yama.ptrace_scope` 0/1 with a child process).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::Daemon;

const TRACE_SET: &str = "trace=%file,getdents64,statx,newfstatat,lstat,stat,openat,openat2";


/// Waits until `n` sessions have sent their lists and a moment more for
/// their last calls (the client has already exited when this is called).
fn wait_sessions_ended(d: &Daemon, n: usize) {
    let t0 = Instant::now();
    while d.log().matches("file list sent").count() < n {
        if t0.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
}

/// An attached `strace`; `finish` detaches and returns the trace.
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
        // strace reports each attached thread on stderr before tracing.
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
        // Give strace time to attach to every thread of the daemon.
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

fn pull(port: u16, dest: &Path, extra: &[&str]) -> String {
    let out = Command::new("rsync")
        .args(["-a", "--delete", "--stats", "--timeout=60"])
        .args(extra)
        .arg(format!("rsync://127.0.0.1:{port}/mod/"))
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

#[test]
fn null_sync_makes_no_filesystem_syscall_on_the_tree() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("tree/mod");
    for d in 0..20 {
        let dir = root.join(format!("pool/d{d:02}"));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in 0..15 {
            std::fs::write(dir.join(format!("p{f}.deb")), format!("{d} {f}\n")).unwrap();
            std::fs::write(dir.join(format!("sub/s{f}")), format!("{f}\n")).unwrap();
        }
    }
    let root = root.canonicalize().unwrap();
    let copy = t.path().join("copy");
    let state = t.path().join("state");
    let d = Daemon::start(&root, &state, &[]);
    // Bring the copy up to date (this pull reads every file).
    pull(d.port, &copy, &[]);
    wait_sessions_ended(&d, 1);

    let trace = Trace::attach(d.child.id(), &t.path().join("null.trace"));
    // Incremental recursion, then the whole-list form, each twice (the
    // repeat replays the shared encoded list).
    let mut sessions = 1;
    for extra in [&[][..], &[][..], &["--no-inc-recursive"][..], &["--no-inc-recursive"][..]] {
        let stats = pull(d.port, &copy, extra);
        assert_eq!(transferred(&stats), 0, "not a null sync: {stats}");
        sessions += 1;
        wait_sessions_ended(&d, sessions);
    }
    let text = trace.finish();
    let module = root.to_str().unwrap();
    let on_tree: Vec<&str> = text.lines().filter(|l| l.contains(module)).collect();
    assert!(
        on_tree.is_empty(),
        "{} file-system syscalls on the tree during null syncs:\n{}",
        on_tree.len(),
        on_tree.iter().take(20).copied().collect::<Vec<_>>().join("\n")
    );
    // The tracer followed the sessions: each ran on threads of its own
    // (session, request reader) that strace saw exit.
    let exits = text.lines().filter(|l| l.contains("+++ exited")).count();
    assert!(exits >= 4, "strace did not follow the session threads ({exits} exits):\n{text}");

    // Control: one altered file in the copy is sent back, and its open
    // beneath the module root is in the trace.
    std::fs::write(copy.join("pool/d07/p3.deb"), b"altered\n").unwrap();
    let trace = Trace::attach(d.child.id(), &t.path().join("control.trace"));
    let stats = pull(d.port, &copy, &[]);
    assert_eq!(transferred(&stats), 1, "{stats}");
    sessions += 1;
    wait_sessions_ended(&d, sessions);
    let text = trace.finish();
    let opens: Vec<&str> = text.lines().filter(|l| l.contains(module) && l.contains("p3.deb")).collect();
    assert!(!opens.is_empty(), "the altered file's open was not traced:\n{text}");
    // Besides the file: the access re-check of the directories above it
    // (an O_PATH open and a statx each) and, per opened file, one stat of
    // the module path (is it still the directory we hold? `ModuleRoot`),
    // nothing else of the tree.
    let root_stat = format!("\"{module}\", AT_STATX");
    let ancestors = ["\".\"", "\"pool\"", "\"pool/d07\"", "\"\", AT_", root_stat.as_str()];
    let others: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(module) && !l.contains("p3.deb") && !ancestors.iter().any(|a| l.contains(a)))
        .collect();
    assert!(others.is_empty(), "tree syscalls beyond the one file and its directories:\n{}", others.join("\n"));
    assert!(d.log().contains("cached=true"), "the repeated pulls were not replayed from the cache\n{}", d.log());
}
