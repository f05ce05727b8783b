//! SIGHUP reloads the configuration for new connections: a session that
//! started before the reload finishes with the old configuration (its
//! module is gone from the new one), while a new connection sees the new
//! module list; an unchanged module keeps its snapshot store; a broken
//! configuration, or one that would change the listeners, is logged and
//! the old one stays in force.
//!
//! The old session is held without timing assumptions: the client talks
//! to the daemon through a relay in this test, which passes the greeting
//! and the module line, waits for the daemon's `@RSYNCD: OK` (the session
//! has chosen its module), and holds the client's arguments until the
//! reload is checked.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

mod common;
use common::Daemon;

/// Generous: a loaded 2-core machine and a debug build.
const DEADLINE: Duration = Duration::from_secs(60);

/// A relay for one connection to `upstream` (see the module comment).
struct HeldRelay {
    port: u16,
    release: mpsc::Sender<()>,
    ok_seen: mpsc::Receiver<()>,
}

fn held_relay(upstream: u16) -> HeldRelay {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (release, wait_release) = mpsc::channel::<()>();
    let (tell_ok, ok_seen) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (client, _) = l.accept().unwrap();
        let server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (mut s_read, mut c_write) = (server, client);
        // Daemon to client, watching for the module's OK.
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut told = false;
            let mut b = [0u8; 16384];
            loop {
                let n = match s_read.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if !told {
                    seen.extend_from_slice(&b[..n]);
                    if seen.windows(12).any(|w| w == b"@RSYNCD: OK\n") {
                        told = true;
                        let _ = tell_ok.send(());
                    }
                }
                if c_write.write_all(&b[..n]).is_err() {
                    break;
                }
            }
            let _ = c_write.shutdown(Shutdown::Write);
        });
        // Client to daemon: two lines, then hold.
        let mut lines = 0;
        let mut held = Vec::new();
        let mut b = [0u8; 16384];
        while lines < 2 {
            let n = match c_read.read(&mut b) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let mut cut = n;
            for (i, &x) in b[..n].iter().enumerate() {
                if x == b'\n' {
                    lines += 1;
                    if lines == 2 {
                        cut = i + 1;
                        break;
                    }
                }
            }
            s_write.write_all(&b[..cut]).unwrap();
            held.extend_from_slice(&b[cut..n]);
        }
        let _ = wait_release.recv();
        s_write.write_all(&held).unwrap();
        loop {
            let n = match c_read.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if s_write.write_all(&b[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    HeldRelay { port, release, ok_seen }
}

fn tree(root: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(root).unwrap();
    for (n, c) in files {
        std::fs::write(root.join(n), c).unwrap();
    }
}

fn config(path: &Path, modules: &[(&str, &Path)], extra: &str) {
    let mut s = format!("uid = 0\ngid = 0\n{extra}");
    for (name, p) in modules {
        s.push_str(&format!("[{name}]\n  path = {}\n", p.display()));
    }
    std::fs::write(path, s).unwrap();
}

fn listing(port: u16) -> Vec<String> {
    let o = Command::new("rsync").arg(format!("rsync://127.0.0.1:{port}/")).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).lines().map(|l| l.split_whitespace().next().unwrap_or("").to_string()).collect()
}

fn pull(port: u16, module: &str, dest: &Path) -> std::process::Output {
    Command::new("rsync").args(["-a", &format!("rsync://127.0.0.1:{port}/{module}/"), &format!("{}/", dest.display())]).output().unwrap()
}

/// Sends SIGHUP and waits for the outcome line (`needle`) to appear one more time.
fn reload(d: &Daemon, needle: &str) {
    let before = d.log().matches(needle).count();
    d.signal(libc::SIGHUP);
    let t0 = std::time::Instant::now();
    while d.log().matches(needle).count() <= before {
        assert!(t0.elapsed() < DEADLINE, "no \"{needle}\" after SIGHUP:\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_session_in_flight_keeps_the_old_config_new_connections_get_the_new_one() {
    let t = tempfile::tempdir().unwrap();
    let (one, keep, two) = (t.path().join("one"), t.path().join("keep"), t.path().join("two"));
    tree(&one, &[("one.txt", "from module one")]);
    tree(&keep, &[("k", "kept")]);
    tree(&two, &[("two.txt", "from module two")]);
    let conf = t.path().join("rsyncd.conf");
    config(&conf, &[("one", &one), ("keep", &keep)], "");
    let state = t.path().join("state");
    let d = Daemon::start_config(&conf, &state, &["--no-watch"]);
    assert_eq!(listing(d.port), ["one", "keep"]);

    // A pull of `one`, held once the daemon has admitted it.
    let relay = held_relay(d.port);
    let dest1 = t.path().join("dest1");
    let held = Command::new("rsync")
        .args(["-a", &format!("rsync://127.0.0.1:{}/one/", relay.port), &format!("{}/", dest1.display())])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    relay.ok_seen.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("the held pull was never admitted:\n{}", d.log()));

    // The new configuration drops `one` and adds `two`.
    config(&conf, &[("keep", &keep), ("two", &two)], "");
    reload(&d, "configuration reloaded");
    assert_eq!(listing(d.port), ["keep", "two"]);
    let o = pull(d.port, "one", &t.path().join("dest-one"));
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("Unknown module 'one'"));
    let o = pull(d.port, "two", &t.path().join("dest-two"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read_to_string(t.path().join("dest-two/two.txt")).unwrap(), "from module two");
    let o = pull(d.port, "keep", &t.path().join("dest-keep"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // `keep` kept its store: built once, at start-up.
    let log = d.log();
    let built = |m: &str| log.lines().filter(|l| l.contains("snapshot built") && l.contains(&format!("module={m} "))).count();
    assert_eq!((built("keep"), built("two")), (1, 1), "{log}");

    // The held session finishes with the old configuration.
    relay.release.send(()).unwrap();
    let out = held.wait_with_output().unwrap();
    assert!(out.status.success(), "held pull: {}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    assert_eq!(std::fs::read_to_string(dest1.join("one.txt")).unwrap(), "from module one");

    // A clean stop persists the new state.
    let _ = d.stop(libc::SIGTERM);
}

#[test]
fn a_broken_config_or_a_listener_change_keeps_the_old_one() {
    let t = tempfile::tempdir().unwrap();
    let (one, two) = (t.path().join("one"), t.path().join("two"));
    tree(&one, &[("a", "a")]);
    tree(&two, &[("b", "b")]);
    let conf = t.path().join("rsyncd.conf");
    config(&conf, &[("one", &one)], "");
    let state = t.path().join("state");
    let d = Daemon::start_config(&conf, &state, &["--no-watch"]);

    // A malformed host token is a configuration problem.
    config(&conf, &[("two", &two)], "hosts allow = 10.1\n");
    reload(&d, "configuration reload failed");
    assert_eq!(listing(d.port), ["one"]);
    // A module path that does not exist cannot be served.
    config(&conf, &[("two", &t.path().join("missing"))], "");
    reload(&d, "configuration reload failed");
    assert_eq!(listing(d.port), ["one"]);
    // A second listener needs a restart.
    let free = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&conf, format!("uid = 0\ngid = 0\n[one]\n  path = {}\n  daemon port = {free}\n", one.display())).unwrap();
    reload(&d, "configuration reload failed");
    assert!(d.log().contains("restart the daemon to change listeners"), "{}", d.log());
    assert_eq!(listing(d.port), ["one"]);
    let o = pull(d.port, "one", &t.path().join("dest"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Fixed again: the reload goes through.
    config(&conf, &[("one", &one), ("two", &two)], "");
    reload(&d, "configuration reloaded");
    assert_eq!(listing(d.port), ["one", "two"]);
}
