//! inetd/stdio mode with the stock rsync client: `RSYNC_CONNECT_PROG`
//! (inetd mode: one socket on fd 0) and `rsync -e WRAPPER host::module`
//! (rsh daemon mode: `rsync --server --daemon .` on a descriptor pair, also
//! through plain pipes). Each run serves exactly one session and exits.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_rsyncd");

/// What `rsync -a` must reproduce of one entry.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    File { mode: u32, mtime: i64, len: usize, fnv: u64 },
    Dir { mode: u32 },
    Link(std::path::PathBuf),
}

/// FNV-1a, to compare contents without printing them.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3))
}

fn tree(root: &Path) -> BTreeMap<String, Entry> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Entry>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            let rel = p.strip_prefix(root).expect("prefix").to_string_lossy().into_owned();
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            if md.file_type().is_symlink() {
                out.insert(rel, Entry::Link(std::fs::read_link(&p).expect("readlink")));
            } else if md.is_dir() {
                out.insert(rel, Entry::Dir { mode: md.mode() & 0o7777 });
                walk(root, &p, out);
            } else {
                out.insert(rel, {
                    let data = std::fs::read(&p).expect("read");
                    Entry::File { mode: md.mode() & 0o7777, mtime: md.mtime(), len: data.len(), fnv: fnv(&data) }
                });
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(root, root, &mut m);
    m
}

/// A served tree, a config with a public module `mod` (and a hidden one),
/// a host-restricted module `priv`, and wrapper scripts for `-e`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("sub/deeper")).unwrap();
        std::fs::write(src.join("a.txt"), b"hello\n").unwrap();
        std::fs::write(src.join("empty"), b"").unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(src.join("sub/big.bin"), &big).unwrap();
        std::fs::write(src.join("sub/deeper/c"), b"c").unwrap();
        std::fs::set_permissions(src.join("sub/deeper/c"), std::fs::Permissions::from_mode(0o604)).unwrap();
        std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
        let conf = format!(
            "use chroot = no\n\
             [mod]\n    path = {p}\n    comment = stdio test\n    read only = yes\n    refuse options = copy-links\n\
             [hidden]\n    path = {p}\n    list = no\n\
             [priv]\n    path = {p}\n    comment = private\n    hosts allow = 127.0.0.1\n",
            p = src.display()
        );
        std::fs::write(dir.path().join("rsyncd.conf"), conf).unwrap();
        let cfg = dir.path().join("rsyncd.conf");
        // rsync runs `WRAPPER host rsync --server --daemon .`.
        let wrap = format!("#!/bin/sh\nshift; shift\nexec {BIN} \"$@\" --config={}\n", cfg.display());
        std::fs::write(dir.path().join("wrap.sh"), wrap).unwrap();
        // The same through plain pipes on both sides (as sshd gives). The
        // input forwarder is a process substitution, so the wrapper does not
        // wait for it (it blocks reading the client until the client exits);
        // the output forwarder makes the client's (non-blocking) end blocking.
        let copy = "import os\nos.set_blocking(1, True)\nwhile True:\n    b = os.read(0, 65536)\n    if not b:\n        break\n    while b:\n        b = b[os.write(1, b):]\n";
        std::fs::write(dir.path().join("copy.py"), copy).unwrap();
        let piped = format!(
            "#!/bin/bash\nshift; shift\n{BIN} \"$@\" --config={} < <(cat) | python3 {}\n",
            cfg.display(),
            dir.path().join("copy.py").display()
        );
        std::fs::write(dir.path().join("piped.sh"), piped).unwrap();
        // Stock rsync in the same roles, for differential checks.
        let stock = format!("#!/bin/sh\nshift; shift\nexec rsync \"$@\" --config={}\n", cfg.display());
        std::fs::write(dir.path().join("stock.sh"), stock).unwrap();
        for w in ["wrap.sh", "piped.sh", "stock.sh"] {
            std::fs::set_permissions(dir.path().join(w), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Fixture { dir }
    }

    fn src(&self) -> std::path::PathBuf {
        self.dir.path().join("src")
    }

    fn connect_prog(&self) -> String {
        format!("{BIN} --daemon --config={}", self.dir.path().join("rsyncd.conf").display())
    }

    /// Stock rsync (bounded by `timeout`, so a session that never ends fails).
    fn rsync(&self, envs: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = Command::new("timeout");
        c.arg("60").arg("rsync").args(args).current_dir(self.dir.path());
        for k in ["SSH_CONNECTION", "SSH_CLIENT", "SSH2_CLIENT", "RSYNC_CONNECT_PROG"] {
            c.env_remove(k);
        }
        c.envs(envs.iter().copied());
        c.output().expect("run rsync")
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn connect_prog_pulls_a_tree() {
    let f = Fixture::new();
    let prog = f.connect_prog();
    let dest = f.dir.path().join("dest");
    let o = f.rsync(&[("RSYNC_CONNECT_PROG", &prog)], &["-a", "rsync://localhost/mod/", dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let want = tree(&f.src());
    assert_eq!(want.len(), 7);
    assert_eq!(tree(&dest), want);
}

#[test]
fn connect_prog_lists_modules() {
    let f = Fixture::new();
    let prog = f.connect_prog();
    let o = f.rsync(&[("RSYNC_CONNECT_PROG", &prog)], &["rsync://localhost/"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let names: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(names, ["mod", "priv"], "{}", text(&o));
    assert!(out.contains("stdio test"), "{}", text(&o));
}

#[test]
fn connect_prog_unknown_module_is_refused() {
    let f = Fixture::new();
    let prog = f.connect_prog();
    let o = f.rsync(&[("RSYNC_CONNECT_PROG", &prog)], &["-a", "rsync://localhost/nope/", "d"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("@ERROR: Unknown module 'nope'"), "{}", text(&o));
}

#[test]
fn rsh_mode_pulls_a_tree_over_socketpairs_and_pipes() {
    let f = Fixture::new();
    let want = tree(&f.src());
    for wrapper in ["./wrap.sh", "./piped.sh"] {
        let dest = f.dir.path().join(format!("dest-{}", &wrapper[2..]));
        let o = f.rsync(&[], &["-a", "-e", wrapper, "host::mod/", dest.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{wrapper}: {}", text(&o));
        assert_eq!(tree(&dest), want, "{wrapper}");
    }
    let o = f.rsync(&[], &["-e", "./wrap.sh", "host::"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("mod "), "{}", text(&o));
}

#[test]
fn rsh_mode_host_acl_uses_ssh_connection_and_fails_closed() {
    let f = Fixture::new();
    // No SSH_CONNECTION: the peer is unknown and `hosts allow` denies.
    let dest = f.dir.path().join("d1");
    let o = f.rsync(&[], &["-a", "-e", "./wrap.sh", "host::priv/", dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("@ERROR: access denied to priv from UNKNOWN"), "{}", text(&o));
    assert!(!dest.exists());
    // An allowed address.
    let o =
        f.rsync(&[("SSH_CONNECTION", "127.0.0.1 40000 127.0.0.1 22")], &["-a", "-e", "./wrap.sh", "host::priv/", dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(tree(&dest), tree(&f.src()));
    // Another address.
    let d2 = f.dir.path().join("d2");
    let o = f.rsync(&[("SSH_CONNECTION", "192.0.2.7 40000 127.0.0.1 22")], &["-a", "-e", "./wrap.sh", "host::priv/", d2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("access denied to priv"), "{}", text(&o));
    assert!(!d2.exists());
}

/// Refusals and denials end with the same client exit code as with stock
/// rsync in the same role (rsh daemon mode and RSYNC_CONNECT_PROG).
#[test]
fn refusals_match_stock_exit_codes() {
    let f = Fixture::new();
    let cfg = f.dir.path().join("rsyncd.conf");
    let ours_prog = f.connect_prog();
    let stock_prog = format!("rsync --daemon --config={}", cfg.display());
    let src = format!("{}/", f.src().display());
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("refused option", vec!["-aL", "host::mod/", "out/"]),
        ("push", vec!["-a", &src, "host::mod/"]),
        ("unknown module", vec!["-a", "host::nope/", "out/"]),
        ("unlisted module pull", vec!["-a", "host::hidden/", "out/"]),
        ("host ACL", vec!["-a", "host::priv/", "out/"]),
    ];
    for (what, args) in &cases {
        let run = |wrapper: &str| {
            let _ = std::fs::remove_dir_all(f.dir.path().join("out"));
            let mut a = vec!["-e", wrapper];
            a.extend(args.iter().copied());
            f.rsync(&[], &a)
        };
        let (ours, stock) = (run("./wrap.sh"), run("./stock.sh"));
        assert_eq!(ours.status.code(), stock.status.code(), "rsh {what}: ours {}\nstock {}", text(&ours), text(&stock));
        let url: Vec<String> = args.iter().map(|a| a.replace("host::", "rsync://localhost/")).collect();
        let url: Vec<&str> = url.iter().map(String::as_str).collect();
        let run = |prog: &str| {
            let _ = std::fs::remove_dir_all(f.dir.path().join("out"));
            f.rsync(&[("RSYNC_CONNECT_PROG", prog)], &url)
        };
        let (ours, stock) = (run(&ours_prog), run(&stock_prog));
        assert_eq!(ours.status.code(), stock.status.code(), "connect prog {what}: ours {}\nstock {}", text(&ours), text(&stock));
    }
}

/// Runs the daemon as inetd does: one accepted connection on fds 0 and 1.
fn spawn_inetd(f: &Fixture, conn: std::os::fd::OwnedFd) -> std::process::Child {
    let out = conn.try_clone().expect("dup");
    Command::new(BIN)
        .arg("--daemon")
        .arg(format!("--config={}", f.dir.path().join("rsyncd.conf").display()))
        .stdin(std::process::Stdio::from(conn))
        .stdout(std::process::Stdio::from(out))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn rsyncd")
}

#[test]
fn inetd_tcp_socket_serves_one_session_with_the_real_peer() {
    let f = Fixture::new();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dest = f.dir.path().join("dest");
    let url = format!("rsync://127.0.0.1:{port}/priv/");
    let client = {
        let dest = dest.clone();
        std::thread::spawn(move || Command::new("timeout").args(["60", "rsync", "-a", &url]).arg(&dest).output().expect("rsync"))
    };
    let (s, _) = l.accept().unwrap();
    let mut child = spawn_inetd(&f, s.into());
    let o = client.join().unwrap();
    // `hosts allow = 127.0.0.1` admits the socket's real peer.
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(tree(&dest), tree(&f.src()));
    // Exactly one session: the process ends by itself.
    let t0 = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{st:?}");
            break;
        }
        assert!(t0.elapsed() < std::time::Duration::from_secs(10), "daemon did not exit after its session");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn inetd_unix_socket_peer_is_unknown_and_host_acls_deny() {
    use std::io::{BufRead, BufReader, Write};
    let f = Fixture::new();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut child = spawn_inetd(&f, theirs.into());
    ours.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(ours.try_clone().unwrap());
    let mut w = ours;
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("@RSYNCD: "), "{line:?}");
    w.write_all(b"@RSYNCD: 31.0\npriv\n").unwrap();
    line.clear();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "@ERROR: access denied to priv from UNKNOWN (0.0.0.0)\n");
    drop((r, w));
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(5));
}

/// A one-connection daemon scans only the module the client asks for (at
/// admission), never the other modules of the config.
#[test]
fn connect_prog_scans_only_the_requested_module() {
    let f = Fixture::new();
    let log = f.dir.path().join("daemon.log");
    let prog = format!("RSYNCD_LOG=info NO_COLOR=1 {} 2>>{}", f.connect_prog(), log.display());
    let dest = f.dir.path().join("dest");
    let o = f.rsync(&[("RSYNC_CONNECT_PROG", &prog)], &["-a", "rsync://localhost/mod/", dest.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(tree(&dest), tree(&f.src()));
    let logged = std::fs::read_to_string(&log).unwrap();
    let built: Vec<&str> = logged.lines().filter(|l| l.contains("snapshot built")).collect();
    assert_eq!(built.len(), 1, "{logged}");
    assert!(built[0].contains("module=mod"), "{logged}");
    // A listing scans nothing.
    let o = f.rsync(&[("RSYNC_CONNECT_PROG", &prog)], &["rsync://localhost/"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let after = std::fs::read_to_string(&log).unwrap();
    assert_eq!(after.matches("snapshot built").count(), 1, "{after}");
}

/// inetd mode reads the PROXY header like a listener does (stock
/// start_daemon()): a trusted proxy's header names the client the host ACLs
/// judge; an untrusted peer is closed without a greeting, exit status 255.
#[test]
fn inetd_reads_the_proxy_header_from_trusted_peers_only() {
    use std::io::{BufRead, BufReader, Write};
    let f = Fixture::new();
    let conf = f.dir.path().join("proxy.conf");
    let run = |hosts: &str, header: &[u8]| -> (String, Option<i32>) {
        std::fs::write(
            &conf,
            format!(
                "use chroot = no\nproxy protocol = yes\nproxy protocol hosts = {hosts}\n[only]\n    path = {}\n    hosts allow = 10.1.2.3\n",
                f.src().display()
            ),
        )
        .unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let out = s.try_clone().unwrap();
        let mut child = Command::new(BIN)
            .arg("--daemon")
            .arg(format!("--config={}", conf.display()))
            .stdin(std::process::Stdio::from(std::os::fd::OwnedFd::from(s)))
            .stdout(std::process::Stdio::from(std::os::fd::OwnedFd::from(out)))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn rsyncd");
        c.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
        // A refused peer may be closed before these writes: ignore their errors.
        let _ = c.write_all(header).and_then(|()| c.write_all(b"@RSYNCD: 31.0\nonly\n"));
        let mut r = BufReader::new(c);
        let mut text = String::new();
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            text.push_str(&line);
            if line.starts_with("@RSYNCD: OK") || line.starts_with("@ERROR") {
                break;
            }
            line.clear();
        }
        drop(r);
        (text, child.wait().unwrap().code())
    };
    let header = b"PROXY TCP4 10.1.2.3 127.0.0.1 40000 873\r\n";
    let (text, _) = run("127.0.0.1", header);
    assert!(text.starts_with("@RSYNCD: ") && text.ends_with("@RSYNCD: OK\n"), "{text:?}");
    let (text, _) = run("127.0.0.1", b"PROXY TCP4 10.9.9.9 127.0.0.1 40000 873\r\n");
    assert!(text.ends_with("@ERROR: access denied to only from UNKNOWN (10.9.9.9)\n"), "{text:?}");
    let (text, code) = run("10.0.0.5", header);
    assert_eq!(text, "", "untrusted peer gets no greeting");
    assert_eq!(code, Some(255));
    let (text, code) = run("127.0.0.1", b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(text, "", "bad header gets no greeting");
    assert_eq!(code, Some(255));
}
