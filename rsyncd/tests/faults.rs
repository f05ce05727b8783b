//! Faults around a running daemon (issue 6), each ending with the daemon
//! serving correct data and nothing on disk damaged: SIGTERM drains the
//! sessions in flight (a second signal, or the drain timeout, ends it at
//! once); files deleted, grown or truncated during a transfer (compared
//! with stock `rsync --daemon` in the same situation); the module root
//! renamed away and back; the disk holding the snapshots full; SIGKILL
//! while a snapshot is written.  (Corrupt snapshot files at start-up are
//! covered by live.rs.)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{rsync, same_files, Daemon, BIN};

const BIG: u64 = 64 << 20;

/// A module tree: `a.big` (64 MiB, sparse), then `b.txt`, `c.txt`, all
/// readable by `nobody` (the module identity of a root daemon).
fn tree(dir: &Path) -> PathBuf {
    let root = dir.join("mod");
    std::fs::create_dir_all(&root).unwrap();
    let f = std::fs::File::create(root.join("a.big")).unwrap();
    f.set_len(BIG).unwrap();
    std::fs::write(root.join("b.txt"), "bee\n".repeat(1000)).unwrap();
    std::fs::write(root.join("c.txt"), "sea\n").unwrap();
    for p in [dir, &root] {
        std::fs::set_permissions(p, PermissionsExt::from_mode(0o755)).unwrap();
    }
    root
}

fn conf(dir: &Path, root: &Path, global: &str) -> PathBuf {
    let p = dir.join("rsyncd.conf");
    std::fs::write(&p, format!("use chroot = no\nreverse lookup = no\n{global}\n[mod]\npath = {}\nread only = yes\n", root.display()))
        .unwrap();
    p
}

fn wait_timeout(c: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(s) = c.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill() on a process (group) we started; no memory involved.
    unsafe { libc::kill(pid, sig) };
}

/// The read position of the descriptor `pid` or one of its children has
/// open on `file`, if any (the sender of a session).
fn sender_pos(pid: i32, file: &Path) -> Option<u64> {
    let mut pids = vec![pid];
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.filter_map(Result::ok) {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            pids.extend(kids.split_whitespace().filter_map(|k| k.parse::<i32>().ok()));
        }
    }
    for p in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{p}/fd")) else { continue };
        for e in fds.filter_map(Result::ok) {
            if std::fs::read_link(e.path()).is_ok_and(|l| l == file) {
                let info = std::fs::read_to_string(format!("/proc/{p}/fdinfo/{}", e.file_name().to_string_lossy())).unwrap_or_default();
                return info.lines().find_map(|l| l.strip_prefix("pos:")).and_then(|v| v.trim().parse().ok());
            }
        }
    }
    None
}

/// A stock client pulling `url` into `dest`, in a process group of its own.
fn start_pull(url: &str, dest: &Path) -> Child {
    Command::new("rsync")
        .args(["-aS", url, dest.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("rsync")
}

/// Starts a pull and stops the client (SIGSTOP to its group) as soon as the
/// daemon `pid` (or a child of it) has `file` open: the sender then blocks
/// with most of the file unread.  Returns the client and the sender's read
/// position once it stopped moving.
fn pull_stopped_in(pid: i32, url: &str, dest: &Path, file: &Path) -> (Child, u64) {
    let client = start_pull(url, dest);
    let t0 = Instant::now();
    while sender_pos(pid, file).is_none() {
        assert!(t0.elapsed() < Duration::from_secs(30), "the sender never opened {}", file.display());
        std::thread::sleep(Duration::from_millis(1));
    }
    signal(-(client.id() as i32), libc::SIGSTOP);
    let mut pos = sender_pos(pid, file).unwrap_or(0);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = sender_pos(pid, file).unwrap_or(pos);
        if now == pos {
            break;
        }
        pos = now;
    }
    (client, pos)
}

fn finish(mut client: Child) -> (Option<i32>, String) {
    signal(-(client.id() as i32), libc::SIGCONT);
    let status = wait_timeout(&mut client, Duration::from_secs(60)).expect("the client finished");
    let mut err = String::new();
    std::io::Read::read_to_string(client.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status.code(), err)
}

// ---------------------------------------------------------------------------
// SIGTERM drains
// ---------------------------------------------------------------------------

/// SIGTERM with a session in flight: the daemon stops accepting at once
/// (new connections are refused), lets the session finish, then persists
/// and exits 0.
#[test]
fn sigterm_lets_sessions_in_flight_finish() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    let mut d = Daemon::start(&root, &t.path().join("state"), &["--no-watch"]);
    let dest = t.path().join("copy");
    let url = format!("rsync://127.0.0.1:{}/mod/", d.port);
    let (client, _) = pull_stopped_in(d.pid(), &url, &dest, &root.join("a.big"));
    signal(d.pid(), libc::SIGTERM);
    let refused = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(("127.0.0.1", d.port)).is_err()
    });
    assert!(refused, "still accepting after SIGTERM\n{}", d.log());
    assert!(d.child.try_wait().unwrap().is_none(), "exited with a session in flight\n{}", d.log());
    let (code, err) = finish(client);
    assert_eq!(code, Some(0), "{err}");
    same_files(&root, &dest).unwrap();
    let status = wait_timeout(&mut d.child, Duration::from_secs(30)).expect("the daemon exits once drained");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.log().contains("drained: every session has finished"), "{}", d.log());
}

/// A second signal during the drain ends the daemon at once (the stalled
/// session is cut); a restart serves correct data.  With `drain timeout`
/// the wait is bounded without a second signal.
#[test]
fn a_second_signal_or_the_drain_timeout_ends_the_drain() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    let state = t.path().join("state");
    let url = |d: &Daemon| format!("rsync://127.0.0.1:{}/mod/", d.port);

    let mut d = Daemon::start(&root, &state, &["--no-watch"]);
    let (client, _) = pull_stopped_in(d.pid(), &url(&d), &t.path().join("c1"), &root.join("a.big"));
    signal(d.pid(), libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.child.try_wait().unwrap().is_none(), "exited with a session in flight");
    signal(d.pid(), libc::SIGINT);
    let status = wait_timeout(&mut d.child, Duration::from_secs(20)).expect("a second signal exits at once");
    assert_eq!(status.code(), Some(130), "{}", d.log());
    let (code, _) = finish(client);
    assert_ne!(code, Some(0), "the cut session cannot have succeeded");
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.log().contains("second signal: exiting at once"), "{}", d.log());
    drop(d);

    // drain timeout = 1: SIGTERM alone ends it although the session stalls.
    let cfg = conf(t.path(), &root, "drain timeout = 1");
    let mut d = Daemon::start_config(&cfg, &state, &["--no-watch"]);
    let (client, _) = pull_stopped_in(d.pid(), &url(&d), &t.path().join("c2"), &root.join("a.big"));
    signal(d.pid(), libc::SIGTERM);
    let status = wait_timeout(&mut d.child, Duration::from_secs(30)).expect("the drain timeout ends the wait");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    let _ = finish(client);
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.log().contains("drain timeout reached"), "{}", d.log());
    drop(d);

    let d = Daemon::start(&root, &state, &["--no-watch"]);
    let dest = t.path().join("c3");
    let out = rsync(&["-aS", &url(&d), dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    same_files(&root, &dest).unwrap();
}

/// With socket activation the listening socket belongs to systemd too: a
/// drain stops accepting on it but leaves it open, so connections queue for
/// the next start instead of being refused.
#[test]
fn a_drain_leaves_a_socket_from_systemd_listening() {
    use std::os::fd::AsRawFd;
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    std::fs::remove_file(root.join("a.big")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = t.path().join("rsyncd.conf");
    std::fs::write(&cfg, format!("port = {port}\nuse chroot = no\n[mod]\npath = {}\n", root.display())).unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg(format!("--config={}", cfg.display()))
        .arg(format!("--state-dir={}", t.path().join("state").display()))
        .arg("--no-watch")
        .env("LISTEN_FDS", "1");
    // SAFETY: between fork and exec the closure only calls dup2 and fcntl
    // (async-signal-safe) on descriptors that exist.
    unsafe {
        cmd.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut d = Daemon::start_cmd(cmd);
    assert!(d.log().contains("listening socket from systemd"), "{}", d.log());
    // Serving (the accept loop runs) before the signal.
    let mut greeting = [0u8; 9];
    let mut probe = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Read::read_exact(&mut probe, &mut greeting).unwrap();
    assert_eq!(&greeting, b"@RSYNCD: ");
    drop(probe);
    signal(d.pid(), libc::SIGTERM);
    let status = wait_timeout(&mut d.child, Duration::from_secs(30)).expect("the daemon exits");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    // Still listening: a connection is queued, and the next owner accepts it.
    let c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("the socket from systemd still listens");
    listener.set_nonblocking(true).unwrap();
    let got = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        listener.accept().is_ok()
    });
    assert!(got, "the queued connection could not be accepted");
    drop(c);
}

// ---------------------------------------------------------------------------
// Files changing under a transfer, compared with stock
// ---------------------------------------------------------------------------

/// A stock `rsync --daemon` serving `cfg` on a free port.
struct Stock {
    child: Child,
    port: u16,
}

impl Stock {
    fn start(cfg: &Path) -> Option<Stock> {
        let port = common::free_port();
        let child = Command::new("rsync")
            .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(format!("--config={}", cfg.display()))
            .arg(format!("--log-file={}", cfg.with_extension("log").display()))
            .stdin(Stdio::null())
            .spawn()
            .ok()?;
        let up = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        up.then_some(Stock { child, port })
    }
}

impl Drop for Stock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    /// `b.txt` (after `a.big` in the list) deleted.
    Vanish,
    /// `a.big` grown by 1 MiB.
    Grow,
    /// `a.big` truncated to 1 MiB of new bytes.
    Truncate,
}

fn apply(root: &Path, c: Change) {
    use std::io::Write;
    match c {
        Change::Vanish => std::fs::remove_file(root.join("b.txt")).unwrap(),
        Change::Grow => {
            let mut f = std::fs::OpenOptions::new().append(true).open(root.join("a.big")).unwrap();
            f.write_all(&vec![b'g'; 1 << 20]).unwrap();
        }
        Change::Truncate => {
            let f = std::fs::OpenOptions::new().write(true).open(root.join("a.big")).unwrap();
            f.set_len(0).unwrap();
            (&f).write_all(&vec![b't'; 1 << 20]).unwrap();
        }
    }
}

/// Runs `change` while a pull from `pid`/`port` is half way through
/// `a.big`; returns the client's exit code and messages, after checking
/// that the sender really was in the middle of the file.
fn faulted_pull(pid: i32, port: u16, root: &Path, dest: &Path, change: Change) -> (Option<i32>, String) {
    let url = format!("rsync://127.0.0.1:{port}/mod/");
    let (client, pos) = pull_stopped_in(pid, &url, dest, &root.join("a.big"));
    assert!(pos < BIG - (1 << 20), "the sender read {pos} bytes before the client stopped");
    apply(root, change);
    finish(client)
}

/// Deleted, grown and truncated during a transfer: the same client result
/// as from stock `rsync --daemon` (vanished file: exit 24; grown: the size
/// at open is sent, exit 0; shrunk: "read errors mapping", the file is
/// retried, exit 23), and the next pull gets the current tree exactly.
#[test]
fn files_changing_during_a_transfer_end_as_with_stock() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    for change in [Change::Vanish, Change::Grow, Change::Truncate] {
        let mut codes = Vec::new();
        for stock in [false, true] {
            let t = tempfile::tempdir().unwrap();
            let root = tree(t.path());
            let cfg = conf(t.path(), &root, "");
            let dest = t.path().join("copy");
            let (code, err, again) = if stock {
                let Some(s) = Stock::start(&cfg) else {
                    eprintln!("no stock daemon: comparison skipped");
                    continue;
                };
                let (code, err) = faulted_pull(s.child.id() as i32, s.port, &root, &dest, change);
                let again = rsync(&["-aS", "--delete", &format!("rsync://127.0.0.1:{}/mod/", s.port), dest.to_str().unwrap()]);
                (code, err, again)
            } else {
                let d = Daemon::start_config(&cfg, &t.path().join("state"), &["--no-watch"]);
                let (code, err) = faulted_pull(d.pid(), d.port, &root, &dest, change);
                d.refresh(&t.path().join("state"), None);
                let again = rsync(&["-aS", "--delete", &format!("rsync://127.0.0.1:{}/mod/", d.port), dest.to_str().unwrap()]);
                (code, err, again)
            };
            let who = if stock { "stock" } else { "rsyncd" };
            let want: &[&str] = match change {
                Change::Vanish => &["file has vanished: ", "b.txt"],
                Change::Grow => &[],
                Change::Truncate => &["read errors mapping ", "a.big", "No data available (61)"],
            };
            assert!(want.iter().all(|w| err.contains(w)), "{who} {change:?}: {err}");
            assert!(again.status.success(), "{who} {change:?}: {}", String::from_utf8_lossy(&again.stderr));
            same_files(&root, &dest).unwrap_or_else(|e| panic!("{who} {change:?}: {e}"));
            codes.push((who, code));
        }
        eprintln!("{change:?}: {codes:?}");
        let want = match change {
            Change::Vanish => 24,
            Change::Grow => 0,
            Change::Truncate => 23,
        };
        for (who, code) in &codes {
            assert_eq!(*code, Some(want), "{who} {change:?}: {codes:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// The module root goes away
// ---------------------------------------------------------------------------

/// The module directory renamed away while the daemon serves, then put
/// back: pulls meanwhile fail cleanly or serve the old tree, a full rescan
/// fails and is reported (the last snapshot stays), and once the directory
/// is back everything is served as before.
#[test]
fn module_root_renamed_away_and_back() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    std::fs::remove_file(root.join("a.big")).unwrap();
    let state = t.path().join("state");
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    let url = format!("rsync://127.0.0.1:{}/mod/", d.port);
    let away = t.path().join("moved-away");
    std::fs::rename(&root, &away).unwrap();
    let out = rsync(&["-a", &url, t.path().join("during").to_str().unwrap()]);
    eprintln!("pull while the root is away: {:?} {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    // A full rescan cannot run without the root: an error, not a new
    // (empty) snapshot.
    let r = Command::new(BIN).arg("refresh").arg(format!("--state-dir={}", state.display())).arg("mod").output().unwrap();
    assert!(!r.status.success(), "refresh with the root gone: {}", String::from_utf8_lossy(&r.stdout));
    std::fs::rename(&away, &root).unwrap();
    std::fs::write(root.join("new.txt"), "back\n").unwrap();
    d.refresh(&state, None);
    let dest = t.path().join("after");
    let out = rsync(&["-a", &url, dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    same_files(&root, &dest).unwrap();
}

/// The module directory replaced by a new one (the "mv new current"
/// publishing pattern): after a refresh the new tree is listed and its
/// contents are read from the new directory (`ModuleRoot` reopens the path
/// when it names another directory; `ModuleAccess`'s real tree likewise), as
/// stock, which opens the path per connection.
#[test]
fn module_root_replaced_by_a_new_directory() {
    if !common::have_rsync() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    std::fs::remove_file(root.join("a.big")).unwrap();
    let state = t.path().join("state");
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    std::fs::rename(&root, t.path().join("old")).unwrap();
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(root.join("b.txt"), "new bee\n").unwrap();
    std::fs::write(root.join("n.txt"), "new file\n").unwrap();
    d.refresh(&state, None);
    let dest = t.path().join("copy");
    let out = rsync(&["-a", &format!("rsync://127.0.0.1:{}/mod/", d.port), dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    same_files(&root, &dest).unwrap();
}

// ---------------------------------------------------------------------------
// Snapshot storage faults
// ---------------------------------------------------------------------------

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` with a file `dir/filler`.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0xa5u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    while f.write_all(&block[..512]).is_ok() {}
    let _ = f.sync_all();
}

fn snap_files(state: &Path) -> (Vec<String>, Vec<String>) {
    let names: Vec<String> = std::fs::read_dir(state).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let snaps = names.iter().filter(|n| n.ends_with(".snap")).cloned().collect();
    let temps = names.iter().filter(|n| n.contains(".tmp.")).cloned().collect();
    (snaps, temps)
}

/// The state directory's file system full (a 1 MiB tmpfs): a full rescan
/// fails and says so, the daemon keeps serving the last good snapshot (plus
/// what incremental refreshes add in memory), persisting at SIGTERM fails
/// and is logged, a restart serves the last complete file (never a
/// truncated one, no temporary file left), and once there is room again
/// the next refresh writes and serves the current tree.
#[test]
fn a_full_disk_under_the_snapshots_keeps_the_last_good_one() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    std::fs::remove_file(root.join("a.big")).unwrap();
    for i in 0..200 {
        std::fs::write(root.join(format!("f{i:03}.txt")), format!("{i}\n")).unwrap();
    }
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::set_permissions(root.join("sub"), PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(root.join("sub/old.txt"), "old\n").unwrap();
    let state = t.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"]).arg(&state).status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: cannot mount a tmpfs (not root?)");
        return;
    }
    let _mount = Mount(state.clone());
    let url = |d: &Daemon| format!("rsync://127.0.0.1:{}/mod/", d.port);
    let pull = |d: &Daemon, name: &str| {
        let dest = t.path().join(name);
        let out = rsync(&["-a", &url(d), dest.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
        dest
    };

    let d = Daemon::start(&root, &state, &["--no-watch"]);
    let good = t.path().join("good");
    common::rsync(&["-a", &format!("{}/", root.display()), good.to_str().unwrap()]);
    fill(&state);
    std::fs::write(root.join("sub/added.txt"), "added while the disk was full\n").unwrap();
    // A full rescan must write a new file: it fails, and says why.
    let r = Command::new(BIN).arg("refresh").arg(format!("--state-dir={}", state.display())).arg("mod").output().unwrap();
    let said = String::from_utf8_lossy(&r.stderr).into_owned() + &String::from_utf8_lossy(&r.stdout);
    assert!(!r.status.success() && said.contains("No space left on device"), "refresh on a full disk: {said}");
    same_files(&good, &pull(&d, "p1")).unwrap();
    // An incremental refresh needs no disk: served from memory.
    d.refresh(&state, Some("sub"));
    same_files(&root, &pull(&d, "p2")).unwrap();
    // Persisting at SIGTERM fails on the full disk: logged, clean exit.
    let log = d.stop(libc::SIGTERM);
    assert!(log.contains("persisting the snapshot failed") && log.contains("No space left on device"), "{log}");
    let (snaps, temps) = snap_files(&state);
    assert_eq!((snaps.len(), temps.len()), (1, 0), "{snaps:?} {temps:?}");

    // Restart with the disk still full: the last complete file is served.
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    assert!(d.log().contains("snapshot opened from disk"), "{}", d.log());
    same_files(&good, &pull(&d, "p3")).unwrap();
    // Room again: the next full refresh writes and serves the current tree.
    std::fs::remove_file(state.join("filler")).unwrap();
    d.refresh(&state, None);
    same_files(&root, &pull(&d, "p4")).unwrap();
    let (snaps, temps) = snap_files(&state);
    assert_eq!((snaps.len(), temps.len()), (1, 0), "{snaps:?} {temps:?}");
}

/// SIGKILL at random moments of a full rescan that writes a new snapshot
/// file: every restart serves the current tree, and temporary files of the
/// killed writers are removed (never more than the last one's).
#[test]
fn sigkill_while_a_snapshot_is_written() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    std::fs::remove_file(root.join("a.big")).unwrap();
    for d in 0..20 {
        let dir = root.join(format!("d{d:02}"));
        std::fs::create_dir(&dir).unwrap();
        for i in 0..400 {
            std::fs::write(dir.join(format!("file-with-a-longish-name-{i:04}")), "").unwrap();
        }
    }
    let state = t.path().join("state");
    let mut killed_mid_write = 0;
    let rounds = 4u64;
    for round in 0..rounds {
        let mut d = Daemon::start(&root, &state, &["--no-watch"]);
        // After the start-up reconciliation, change the tree so the next
        // rescan writes a new file, then kill it somewhere in the middle.
        d.refresh(&state, None);
        let (_, temps) = snap_files(&state);
        assert!(temps.is_empty(), "round {round}: temporary files left after start-up: {temps:?}");
        std::fs::write(root.join(format!("round{round}.txt")), format!("{round}\n")).unwrap();
        let mut refresh = Command::new(BIN)
            .arg("refresh")
            .arg(format!("--state-dir={}", state.display()))
            .arg("mod")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Odd rounds: kill as soon as the temporary file shows; even
        // rounds: at some moment of the rescan.
        let t0 = Instant::now();
        if round > 0 {
            while snap_files(&state).1.is_empty() && refresh.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(20) {
                std::hint::spin_loop();
            }
        } else {
            std::thread::sleep(Duration::from_millis(10 + round * 30));
        }
        killed_mid_write += usize::from(!snap_files(&state).1.is_empty());
        let _ = d.child.kill();
        let _ = d.child.wait();
        let _ = refresh.wait();
        let (snaps, temps) = snap_files(&state);
        assert!(temps.len() <= 1 && !snaps.is_empty(), "round {round}: {snaps:?} {temps:?}");
        let d = Daemon::start(&root, &state, &["--no-watch"]);
        // The snapshot opened may predate the kill; a refresh reconciles.
        d.refresh(&state, None);
        // Every round: the listing names exactly the tree; the last round:
        // a full copy.
        let url = format!("rsync://127.0.0.1:{}/mod/", d.port);
        let out = rsync(&["-r", "--list-only", &url]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let listed = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('-')).count();
        let files = std::fs::read_dir(&root).unwrap().count() - 20 + 20 * 400;
        assert_eq!(listed, files, "round {round}");
        if round == rounds - 1 {
            let dest = t.path().join("copy");
            let out = rsync(&["-a", &url, dest.to_str().unwrap()]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            same_files(&root, &dest).unwrap();
        }
        let (_, temps) = snap_files(&state);
        assert!(temps.is_empty(), "round {round}: {temps:?}");
        drop(d);
    }
    eprintln!("killed while a temporary file existed in {killed_mid_write} of {rounds} rounds");
    assert!(killed_mid_write > 0, "no round killed the daemon while it wrote a snapshot");
}
