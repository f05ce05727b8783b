//! Connection floods against a listening daemon (issue 6): slowloris
//! connections end at the absolute handshake deadline, a flood of idle
//! connections costs a bounded number of threads and descriptors and does
//! not keep stock clients (or the private listener) out, one client gets
//! only its share of the handshake pool, and running out of descriptors
//! sheds connections instead of spinning.  Loopback only; every connection
//! plays its own client host (127.x.y.z).

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{connect_from, cpu_ticks, fd_count, proc_status, raise_nofile, rsync, same_files, Daemon};

/// A small module tree (world-readable: a root daemon reads it as `nobody`).
fn tree(dir: &Path) -> PathBuf {
    let root = dir.join("pub");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    for i in 0..8 {
        std::fs::write(root.join(format!("f{i}.txt")), format!("file {i}\n").repeat(50 + i * 100)).unwrap();
    }
    std::fs::write(root.join("sub/deep.bin"), vec![7u8; 70_000]).unwrap();
    for p in [dir, &root, &root.join("sub")] {
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    root
}

fn write_conf(dir: &Path, global: &str, modules: &str) -> PathBuf {
    let p = dir.join("rsyncd.conf");
    std::fs::write(&p, format!("{global}\n{modules}")).unwrap();
    p
}

/// 127.`a`.`b`.`c` for the n-th simulated client host of a test.
fn host(net: u8, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, net, (n / 250) as u8, (n % 250 + 1) as u8)
}

/// Reads what the server has sent without blocking; `None` once the
/// connection is closed (EOF or reset).
fn poll_open(s: &mut TcpStream, seen: &mut Vec<u8>) -> Option<()> {
    s.set_nonblocking(true).ok()?;
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return None,
            Ok(n) => seen.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// Polls `cond` every 100 ms until it holds or `limit` passes.
fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

/// Slowloris: idle connections and connections that trickle one byte every
/// 300 ms — in the greeting, in the module name, in the arguments after
/// `@RSYNCD: OK` — are all closed once the 3 s handshake deadline passes
/// (a per-read timeout would keep the tricklers alive for ever), their
/// threads go away, and a pull still works.
#[test]
fn idle_and_trickling_connections_end_at_the_handshake_deadline() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    raise_nofile();
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    let conf = write_conf(t.path(), "handshake timeout = 3\nuse chroot = no", &format!("[mod]\npath = {}\n", root.display()));
    let d = Daemon::start_config(&conf, &t.path().join("state"), &["--no-watch"]);
    let threads_before = proc_status(d.pid(), "Threads");

    struct Conn {
        s: TcpStream,
        /// The byte sent every 300 ms for ever (`None`: idle).
        trickle: Option<u8>,
        seen: Vec<u8>,
        open: bool,
        sent: usize,
    }
    // What each kind sends at once, then the byte it trickles.
    let kinds: [(&[u8], Option<u8>); 4] = [
        (b"", None),                               // idle
        (b"@RSYNCD: 31.0", Some(b'0')),            // a greeting without end
        (b"@RSYNCD: 31.0 md5\n", Some(b'm')),      // a module name without end
        (b"@RSYNCD: 31.0 md5\nmod\n", Some(b'a')), // an argument without end, after OK
    ];
    let mut conns = Vec::new();
    for i in 0..80 {
        let s = connect_from(host(20, i / 8), d.port).unwrap();
        let (now, trickle) = kinds[i % 4];
        (&s).write_all(now).unwrap();
        conns.push(Conn { s, trickle, seen: Vec::new(), open: true, sent: 0 });
    }
    let t0 = Instant::now();
    while conns.iter().any(|c| c.open) && t0.elapsed() < Duration::from_secs(45) {
        for c in conns.iter_mut().filter(|c| c.open) {
            if poll_open(&mut c.s, &mut c.seen).is_none() {
                c.open = false;
            } else if let Some(b) = c.trickle {
                if (&c.s).write_all(&[b]).is_err() {
                    c.open = false;
                }
                c.sent += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let still: Vec<usize> = conns.iter().enumerate().filter(|(_, c)| c.open).map(|(i, _)| i).collect();
    assert!(still.is_empty(), "connections {still:?} outlived the 3 s handshake deadline\n{}", d.log());
    // Every one got the greeting first; the ones that reached the module got OK.
    for (i, c) in conns.iter().enumerate() {
        assert!(c.seen.starts_with(b"@RSYNCD: "), "{i}: {:?}", String::from_utf8_lossy(&c.seen));
        if i % 4 == 3 {
            assert!(String::from_utf8_lossy(&c.seen).contains("@RSYNCD: OK"), "{i}: {:?}", String::from_utf8_lossy(&c.seen));
        }
    }
    // The tricklers did trickle past the deadline's start: more bytes than a
    // 3 s window at one per 300 ms would allow if each read reset a timer.
    assert!(conns.iter().filter(|c| c.trickle.is_some()).all(|c| c.sent > 3), "tricklers never trickled");
    assert!(
        eventually(Duration::from_secs(20), || common::threads_named(d.pid(), "session-") == 0),
        "session threads linger: {} (threads before: {threads_before}, now {})",
        common::threads_named(d.pid(), "session-"),
        proc_status(d.pid(), "Threads")
    );
    let dest = t.path().join("copy");
    let out = rsync(&["-a", &format!("rsync://127.0.0.1:{}/mod/", d.port), dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    same_files(&root, &dest).unwrap();
}

/// 1000 idle connections from 100 client hosts: the handshake pool (256)
/// bounds what they cost — the rest are closed early — while 50 stock
/// clients pulling at the same time all complete (each pushes out the
/// longest-waiting idle connection), and the private listener (`daemon
/// port`) serves as if nothing happened.
#[test]
fn a_flood_of_idle_connections_is_bounded_and_pulls_still_complete() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    raise_nofile();
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    let private = common::free_port();
    let conf = write_conf(
        t.path(),
        "handshake timeout = 40\nuse chroot = no",
        &format!("[pub]\npath = {r}\n[priv]\npath = {r}\ndaemon port = {private}\nlist = no\n", r = root.display()),
    );
    let d = Daemon::start_config_listeners(&conf, &t.path().join("state"), 2, &["--no-watch"]);
    assert_eq!(d.ports[1], private);
    let pid = d.pid();
    let (threads0, fds0, rss0) = (proc_status(pid, "Threads"), fd_count(pid), proc_status(pid, "VmRSS"));

    let mut idle = Vec::new();
    for i in 0..1000 {
        idle.push(connect_from(host(30, i / 10), d.port).unwrap());
    }
    // Past the eviction grace, and the accept loop has seen every one.
    std::thread::sleep(Duration::from_millis(1500));
    let mut open = 0;
    for s in &mut idle {
        let mut seen = Vec::new();
        if poll_open(s, &mut seen).is_some() {
            open += 1;
        }
    }
    let (threads1, fds1, rss1) = (proc_status(pid, "Threads"), fd_count(pid), proc_status(pid, "VmRSS"));
    eprintln!(
        "1000 idle connections: {open} still open; daemon threads {threads0} -> {threads1}, fds {fds0} -> {fds1}, VmRSS {rss0} -> {rss1} kB"
    );
    assert!(open <= 256, "{open} idle connections kept (pool of 256)");
    assert!(open >= 100, "only {open} idle connections were served at all");
    // Sessions in the pool, plus at most 64 reverse-DNS lookups in flight
    // (`reverse lookup` resolves each client at connect time, as stock).
    assert!(threads1 <= threads0 + 256 + 64 + 8, "threads {threads0} -> {threads1}");
    assert!(fds1 <= fds0 + 3 * 256 + 64 + 16, "descriptors {fds0} -> {fds1}");
    assert!(rss1 <= rss0 + 64 * 1024, "VmRSS {rss0} -> {rss1} kB");

    // 50 stock clients at once, from 25 hosts, while the idle ones wait.
    let pulls: Vec<_> = (0..50)
        .map(|i| {
            let dest = t.path().join(format!("copy{i}"));
            let port = d.port;
            let src = host(40, i / 2).to_string();
            std::thread::spawn(move || {
                let out = rsync(&["-a", &format!("--address={src}"), &format!("rsync://127.0.0.1:{port}/pub/"), dest.to_str().unwrap()]);
                (out, dest)
            })
        })
        .collect();
    let dest = t.path().join("private-copy");
    let out = rsync(&["-a", &format!("rsync://127.0.0.1:{private}/priv/"), dest.to_str().unwrap()]);
    assert!(out.status.success(), "private listener: {}\n{}", String::from_utf8_lossy(&out.stderr), d.log());
    same_files(&root, &dest).unwrap();
    for p in pulls {
        let (out, dest) = p.join().unwrap();
        assert!(out.status.success(), "pull: {}", String::from_utf8_lossy(&out.stderr));
        same_files(&root, &dest).unwrap();
    }
    drop(idle);
    assert!(
        eventually(Duration::from_secs(20), || common::threads_named(pid, "session-") == 0),
        "session threads linger: {}",
        common::threads_named(pid, "session-")
    );
}

/// One client host gets at most `max handshakes per host` connections in
/// their handshake; a further one is told `max connections` at once (it
/// cannot push anyone out), and other hosts are not affected.
#[test]
fn one_host_gets_only_its_share_of_the_handshake_pool() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    let conf = write_conf(
        t.path(),
        "handshake timeout = 40\nmax handshakes per host = 4\nuse chroot = no",
        &format!("[mod]\npath = {}\n", root.display()),
    );
    let d = Daemon::start_config(&conf, &t.path().join("state"), &["--no-watch"]);
    let greedy = Ipv4Addr::new(127, 0, 50, 1);
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect_from(greedy, d.port).unwrap();
        let mut line = [0u8; 9];
        s.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"@RSYNCD: ");
        held.push(s);
    }
    for _ in 0..6 {
        let mut s = connect_from(greedy, d.port).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut got = String::new();
        let _ = s.read_to_string(&mut got);
        assert!(got.contains("@ERROR: max connections (4) reached -- try again later"), "{got:?}");
    }
    for s in &mut held {
        let mut seen = Vec::new();
        assert!(poll_open(s, &mut seen).is_some(), "a held connection was closed");
    }
    let dest = t.path().join("copy");
    let url = format!("rsync://127.0.0.1:{}/mod/", d.port);
    let out = rsync(&["-a", &url, dest.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The greedy host is over its share until it lets go.
    let out = rsync(&["-a", "--address=127.0.50.1", &url, t.path().join("x").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    drop(held);
    let ok = eventually(Duration::from_secs(20), || {
        rsync(&["-a", "--address=127.0.50.1", &url, t.path().join("y").to_str().unwrap()]).status.success()
    });
    assert!(ok, "{}", d.log());
}

/// With the open-file limit exhausted, connections the daemon cannot take
/// are accepted and closed at once (none waits in the accept queue), the
/// accept loop neither spins nor floods the log, and service resumes when
/// descriptors are free again.  Also: the daemon raises its soft limit to
/// the hard one at start-up.
#[test]
fn out_of_descriptors_sheds_connections_and_recovers() {
    if !common::have_rsync() {
        eprintln!("skipped: no rsync client");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = tree(t.path());
    // No reverse lookups: a resolver that does not answer holds a descriptor
    // per lookup for many seconds, which would race the accept loop for
    // the last free descriptor.
    let conf = write_conf(
        t.path(),
        "handshake timeout = 40\nreverse lookup = no\nuse chroot = no",
        &format!("[mod]\npath = {}\n", root.display()),
    );
    // Each daemon builds its snapshot at start-up (a snapshot opened from
    // disk is reconciled by a background rescan, which must not run while
    // the descriptors are exhausted: see the report on scans under EMFILE).
    let limit = |soft: u64, hard: u64| {
        let mut cmd = std::process::Command::new(common::BIN);
        cmd.arg(format!("--config={}", conf.display()))
            .args(["--port=0", "--address=127.0.0.1", "--no-watch"])
            .arg(format!("--state-dir={}", t.path().join(format!("state-{soft}")).display()));
        // SAFETY: the pre-exec hook only calls setrlimit (async-signal-safe).
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
                let r = libc::rlimit { rlim_cur: soft, rlim_max: hard };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Daemon::start_cmd(cmd)
    };
    // Soft limit raised to the hard one.
    let d = limit(200, 3000);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_string();
    assert_eq!(line.split_whitespace().skip(3).take(2).collect::<Vec<_>>(), ["3000", "3000"], "{line}");
    drop(d);

    let d = limit(40, 40);
    let pid = d.pid();
    let mut conns: Vec<(TcpStream, Vec<u8>, bool)> =
        (0..60).map(|i| (connect_from(host(60, i / 4), d.port).unwrap(), Vec::new(), true)).collect();
    // Every connection is answered: a greeting, or closed. None hangs.
    let answered = eventually(Duration::from_secs(20), || {
        for (s, seen, open) in conns.iter_mut() {
            if *open && poll_open(s, seen).is_none() {
                *open = false;
            }
        }
        conns.iter().all(|(_, seen, open)| !*open || !seen.is_empty())
    });
    let served = conns.iter().filter(|(_, seen, _)| !seen.is_empty()).count();
    let shed = conns.iter().filter(|(_, seen, open)| !*open && seen.is_empty()).count();
    assert!(answered, "connections left waiting: {served} served, {shed} shed\n{}", d.log());
    assert!(shed > 0 && served > 0, "{served} served, {shed} shed");
    // Quiet while the descriptors stay exhausted: no spinning, one report.
    let c0 = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(pid) - c0;
    assert!(spent < 100, "the daemon used {spent} ticks of CPU in 2 s while idle");
    // (Connections may also be shed because a session's second descriptor
    // cannot be had, without any accept() failing.)
    let reports = d.log().matches("accept failed").count();
    assert!(reports <= 2, "{reports} accept failure reports\n{}", d.log());
    drop(conns);
    let dest = t.path().join("copy");
    let url = format!("rsync://127.0.0.1:{}/mod/", d.port);
    let mut last = String::new();
    let ok = eventually(Duration::from_secs(20), || {
        let out = rsync(&["-a", &url, dest.to_str().unwrap()]);
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        out.status.success()
    });
    assert!(ok, "{last}\n{}", d.log());
    same_files(&root, &dest).unwrap();
}
