//! A session keeps the generation it started with: a stock client's pull
//! that is under way when the tree changes and the daemon publishes a new
//! snapshot still gets the old file list, whole and consistent — files
//! deleted since are listed and reported as vanished (exit 24), files added
//! since are absent, a directory closed to the module's identity since is
//! listed but none of its files are sent — while a pull started after the
//! refresh sees exactly the new tree.
//!
//! The running pull is held still without any timing assumption: the
//! client logs every item to `--log-file`, which is a FIFO with a one-page
//! buffer that this test reads. After the first large file arrives the test
//! stops reading, so the client blocks on its next log line; its socket
//! fills up behind the large files that come first in the transfer order,
//! and the daemon's session blocks too, long before the directories the
//! test then changes. Reading resumes once the second pull is checked.
//! While held the daemon sits in a blocked write, which it gives up after
//! its 30 s write timeout (`Output`): the work done meanwhile is one refresh
//! and one pull of a small tree, a few seconds even on a loaded machine.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::Daemon;

/// Generous: a loaded 2-core CI machine and a debug build.
const DEADLINE: Duration = Duration::from_secs(300);


/// Per relative path: type, permissions, ownership, mtime and content, as
/// the module's identity (`nobody` for a root daemon) sees the tree: a
/// directory it cannot read and search is left out with its subtree.
fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let p = root.join(rel);
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        if md.is_dir() && md.mode() & 0o005 != 0o005 {
            return;
        }
        let kind = if md.is_dir() { "dir" } else { "file" };
        let mut d = format!("{kind} {:o} {}:{} mtime {}", md.mode() & 0o7777, md.uid(), md.gid(), md.mtime());
        if md.is_file() {
            let data = std::fs::read(&p).expect("read");
            d.push_str(&format!(" {} bytes, sum {}", data.len(), data.iter().map(|&b| b as u64).sum::<u64>()));
        }
        out.insert(rel.to_path_buf(), d);
        if md.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir") {
                walk(root, &rel.join(e.expect("entry").file_name()), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn diff(got: &BTreeMap<PathBuf, String>, want: &BTreeMap<PathBuf, String>) -> String {
    let mut s = String::new();
    for (k, v) in got {
        match want.get(k) {
            Some(w) if w == v => {}
            Some(w) => s.push_str(&format!("~ {}: got {v} / want {w}\n", k.display())),
            None => s.push_str(&format!("+ {}: got {v}, not wanted\n", k.display())),
        }
    }
    for (k, w) in want {
        if !got.contains_key(k) {
            s.push_str(&format!("- {}: wanted {w}, missing\n", k.display()));
        }
    }
    s
}

/// A stock `rsync -a` pull of the whole module into `dest`.
fn pull(port: u16, dest: &Path) -> std::process::Output {
    Command::new("rsync")
        .args(["-a", "--timeout=120"])
        .arg(format!("rsync://127.0.0.1:{port}/mod/"))
        .arg(format!("{}/", dest.display()))
        .output()
        .expect("run rsync")
}

/// Large files first in the transfer order (the first sub-list), then 60
/// directories with a subdirectory each: 121 incremental sub-lists.
fn make_tree(base: &Path) -> PathBuf {
    let root = base.join("mod");
    std::fs::create_dir_all(root.join("a-big")).unwrap();
    for i in 0..16u8 {
        let data: Vec<u8> = (0..1u32 << 20).map(|k| (k as u8).wrapping_mul(31).wrapping_add(i)).collect();
        std::fs::write(root.join(format!("a-big/big{i:02}")), data).unwrap();
    }
    std::fs::write(root.join("top.txt"), b"top\n").unwrap();
    for d in 0..60 {
        let dir = root.join(format!("m{d:03}"));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in 0..10 {
            std::fs::write(dir.join(format!("f{f:02}")), format!("m{d:03}/f{f:02}\n")).unwrap();
        }
        for g in 0..5 {
            std::fs::write(dir.join(format!("sub/g{g}")), format!("m{d:03}/sub/g{g}\n")).unwrap();
        }
    }
    root
}

/// Files deleted, added and hidden by `change_tree`.
struct Changes {
    deleted: Vec<&'static str>,
    added: Vec<&'static str>,
    /// Readable before, closed to `nobody` after (None when not root: the
    /// daemon's identity is then the owner, and the chmod hides nothing).
    locked: Option<&'static str>,
}

fn change_tree(root: &Path) -> Changes {
    let deleted = vec!["m050/f00", "m050/f01", "m050/f02", "m050/f03", "m050/f04", "m055/sub/g0", "m059/f09"];
    for f in &deleted {
        std::fs::remove_file(root.join(f)).unwrap();
    }
    let added = vec!["m052/new-file", "m058/newdir/x", "top-new.txt"];
    std::fs::create_dir_all(root.join("m058/newdir")).unwrap();
    for f in &added {
        std::fs::write(root.join(f), b"new\n").unwrap();
    }
    // SAFETY: geteuid() has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    let locked = root_user.then_some("m057");
    if let Some(l) = locked {
        std::fs::set_permissions(root.join(l), std::fs::Permissions::from_mode(0o750)).unwrap();
    }
    Changes { deleted, added, locked }
}

/// The read end of a FIFO that the client logs into, read by a thread that
/// stops after the first line containing `hold_at` until released.
struct LogGate {
    release: mpsc::Sender<()>,
    held: mpsc::Receiver<Vec<String>>,
    done: std::thread::JoinHandle<Vec<String>>,
    writer: Option<OwnedFd>,
}

fn open_fifo(path: &Path, flags: i32) -> OwnedFd {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; the fd is checked and owned below.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {}: {}", path.display(), std::io::Error::last_os_error());
    // SAFETY: a fresh descriptor we own.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl LogGate {
    fn new(fifo: &Path, hold_at: &'static str) -> LogGate {
        let c = std::ffi::CString::new(fifo.as_os_str().to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        // Non-blocking open of the read end succeeds with no writer yet; our
        // own write end keeps the pipe from reporting EOF before the client
        // opens it, and is closed once the client has exited.
        let reader = open_fifo(fifo, libc::O_RDONLY | libc::O_NONBLOCK);
        let writer = open_fifo(fifo, libc::O_WRONLY);
        // SAFETY: fcntl on a descriptor we own: blocking reads, and the
        // smallest pipe buffer (one page), so the client blocks after a line
        // or two once we stop reading.
        unsafe {
            let fl = libc::fcntl(reader.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(reader.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
            libc::fcntl(reader.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
        }
        let (release, wait_release) = mpsc::channel::<()>();
        let (tell_held, held) = mpsc::channel::<Vec<String>>();
        let done = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut r = BufReader::new(std::fs::File::from(reader));
            let mut holding = true;
            loop {
                let mut l = Vec::new();
                match r.read_until(b'\n', &mut l) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let s = String::from_utf8_lossy(&l).into_owned();
                let hit = holding && s.contains(hold_at);
                lines.push(s);
                if hit {
                    holding = false;
                    let _ = tell_held.send(lines.clone());
                    let _ = wait_release.recv();
                }
            }
            lines
        });
        LogGate { release, held, done, writer: Some(writer) }
    }
}

/// The item name of a client log line (`DATE TIME [PID] NAME xxx…`).
fn logged_name(line: &str) -> Option<&str> {
    line.split_once("] ")?.1.split(' ').next()
}

/// `--log-file-format`: the name, then padding so one line fills a good
/// part of the one-page pipe.
fn log_format() -> String {
    format!("--log-file-format=%n {}", "x".repeat(1500))
}

fn run_pinned_session(watch: bool) {
    let t = tempfile::tempdir().unwrap();
    let root = make_tree(t.path());
    let state = t.path().join("state");
    let extra: &[&str] = if watch { &[] } else { &["--no-watch"] };
    let d = Daemon::start(&root, &state, extra);
    if watch && !d.log().contains("fanotify watcher active") {
        println!("SKIPPED: fanotify watcher not available:\n{}", d.log());
        return;
    }
    let old = describe(&root);

    // 1. A pull that will be held after its first large file.
    let fifo = t.path().join("client-log.fifo");
    let mut gate = LogGate::new(&fifo, "a-big/big");
    let dest1 = t.path().join("dest1");
    let mut first = Command::new("rsync")
        .args(["-a", "--timeout=0"])
        .arg(format!("--log-file={}", fifo.display()))
        .arg(log_format())
        .arg(format!("rsync://127.0.0.1:{}/mod/", d.port))
        .arg(format!("{}/", dest1.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rsync");
    let mut first_err = first.stderr.take().expect("piped");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = first_err.read_to_string(&mut s);
        s
    });
    let mut first_out = first.stdout.take().expect("piped");
    std::thread::spawn(move || std::io::copy(&mut first_out, &mut std::io::sink()));
    let seen = match gate.held.recv_timeout(DEADLINE) {
        Ok(l) => l,
        Err(e) => {
            let _ = first.kill();
            panic!("the first pull never logged a large file ({e}):\n{}", d.log());
        }
    };
    // Held before any file of the directories about to change arrived (the
    // large files come first in the transfer order).
    let received_m = |l: &String| logged_name(l).is_some_and(|n| n.starts_with("m0") && !n.ends_with('/'));
    assert!(!seen.iter().any(received_m), "{seen:?}");

    // 2. Change the tree and publish a new generation.
    let changes = change_tree(&root);
    let new = describe(&root);
    let dest2 = t.path().join("dest2");
    if watch {
        let t0 = Instant::now();
        loop {
            let _ = std::fs::remove_dir_all(&dest2);
            let out = pull(d.port, &dest2);
            assert!(out.status.success(), "second pull: {}", String::from_utf8_lossy(&out.stderr));
            let dd = diff(&describe(&dest2), &new);
            if dd.is_empty() {
                break;
            }
            assert!(t0.elapsed() < DEADLINE, "the watcher never published the change:\n{dd}\n{}", d.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    } else {
        let summary = d.refresh(&state, None);
        assert!(summary.starts_with("full-rescan generation "), "{summary}");
        // 3. A pull started after the refresh sees exactly the new tree.
        let out = pull(d.port, &dest2);
        assert!(out.status.success(), "second pull: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(diff(&describe(&dest2), &new), "", "second pull vs the new tree");
    }
    // The first pull is still held (it cannot have finished: its log is full).
    assert!(first.try_wait().unwrap().is_none(), "the first pull ended while held");

    // 4. Let the first pull finish.
    gate.release.send(()).unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = first.try_wait().unwrap() {
            break st;
        }
        if t0.elapsed() > DEADLINE {
            let _ = first.kill();
            panic!("the first pull did not finish after release:\n{}", d.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(gate.writer.take());
    let stderr = err_reader.join().unwrap();
    let logged = gate.done.join().unwrap();

    // Deleted files were in its list: reported vanished (exit 24), not sent.
    assert_eq!(status.code(), Some(24), "first pull: {stderr}\n{}", d.log());
    for f in &changes.deleted {
        assert!(stderr.contains(&format!("file has vanished: \"{f}\" (in mod)")), "{f} not reported vanished:\n{stderr}");
    }
    // Its list is the old generation's: nothing added later, the locked
    // directory listed (created by the client) but none of its files sent.
    let got = describe(&dest1);
    let mut want = old.clone();
    for f in &changes.deleted {
        want.remove(Path::new(f));
    }
    if let Some(l) = changes.locked {
        want.retain(|k, v| !(k.starts_with(l) && v.starts_with("file ")));
        for f in ["f00", "sub/g0"] {
            let p = format!("{l}/{f}");
            assert!(stderr.contains(&format!("file has vanished: \"{p}\" (in mod)")), "{p}:\n{stderr}");
        }
    }
    assert_eq!(diff(&got, &want), "", "first pull vs the old tree\n{stderr}");
    for f in &changes.added {
        assert!(!dest1.join(f).exists(), "{f} reached the pinned session");
        assert!(!logged.iter().any(|l| l.contains(f)), "{f} logged by the pinned session");
    }
    assert!(!dest1.join("m058/newdir").exists());
    if let Some(l) = changes.locked {
        assert!(dest1.join(l).is_dir(), "the locked directory is in the old list");
        assert!(!dest2.join(l).exists(), "the locked directory is hidden from the new list");
    }
}

#[test]
fn running_pull_keeps_its_generation_across_an_explicit_refresh() {
    run_pinned_session(false);
}

#[test]
fn running_pull_keeps_its_generation_while_the_watcher_publishes() {
    run_pinned_session(true);
}
