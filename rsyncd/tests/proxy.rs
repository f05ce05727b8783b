//! `proxy protocol` end to end: the daemon binary behind a small in-test
//! TCP forwarder that prepends a PROXY header (V1 or V2), driven by the
//! stock rsync client and by raw connections.  The address in the header
//! must be the one hosts deny, the log and the per-host cap see; a bad or
//! missing header, or a header from a peer not in `proxy protocol hosts`,
//! closes the connection without a word, as stock does.  The last test
//! gives the same bytes to stock `rsync --daemon` and compares answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rsyncd::proxy;

/// The client address the forwarder claims (TEST-NET-2).
const DENIED: &str = "198.51.100.7:5000";
/// Another claimed client, not denied.
const ALLOWED: &str = "198.51.100.8:5001";

struct Daemon {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn stderr_has(&self, needle: &str) -> bool {
        self.stderr.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

/// A module tree and an rsyncd.conf whose global section starts with `globals`.
struct Setup {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

fn setup(globals: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("a.txt"), b"through the proxy\n").unwrap();
    let log = dir.path().join("rsyncd.log");
    let conf = dir.path().join("rsyncd.conf");
    let text = format!(
        "{globals}reverse lookup = no\nuse chroot = no\nlog file = {log}\n\
         [pub]\npath = {root}\ncomment = public\n\
         [priv]\npath = {root}\nhosts deny = 198.51.100.7\n",
        log = log.display(),
        root = root.display()
    );
    std::fs::write(&conf, text).unwrap();
    Setup { dir, conf }
}

fn start(s: &Setup) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsyncd"))
        .arg(format!("--config={}", s.conf.display()))
        .args(["--port=0", "--address=127.0.0.1", "--no-watch", "--state-dir"])
        .arg(s.dir.path().join("state"))
        .env("RSYNCD_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let port = loop {
        let l = lines.next().expect("daemon exited early").unwrap();
        stderr.lock().unwrap().push(l.clone());
        if let Some(a) = l.strip_prefix("rsyncd: listening on ") {
            break a.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(l);
        }
    });
    Daemon { child, port, stderr }
}

/// Which header the forwarder sends.
#[derive(Clone, Copy, Debug)]
enum Hdr {
    V1,
    V2,
}

fn header(h: Hdr, source: &str) -> Vec<u8> {
    let src: SocketAddr = source.parse().unwrap();
    let dst: SocketAddr = "127.0.0.1:873".parse().unwrap();
    let mut b = Vec::new();
    match h {
        Hdr::V1 => proxy::encode_v1(src, dst, &mut b),
        Hdr::V2 => proxy::encode_v2(src, dst, &mut b),
    }
    b
}

/// A TCP forwarder on loopback: each connection to it is connected on to
/// the daemon, after the PROXY header for `source`.  Stops when dropped.
struct Forwarder {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn forwarder(daemon_port: u16, h: Hdr, source: &str) -> Forwarder {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let hdr = header(h, source);
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::SeqCst) {
            let (client, _) = match l.accept() {
                Ok(x) => x,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            client.set_nonblocking(false).unwrap();
            let mut up = TcpStream::connect(("127.0.0.1", daemon_port)).unwrap();
            up.write_all(&hdr).unwrap();
            let pump = |mut from: TcpStream, mut to: TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                })
            };
            pump(client.try_clone().unwrap(), up.try_clone().unwrap());
            pump(up, client);
        }
    });
    Forwarder { port, stop }
}

/// Run the stock client; (success, stdout, stderr).
fn rsync(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("rsync").args(["--timeout=30"]).args(args).output().expect("run rsync");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Send `bytes` on a fresh connection to `port` and collect the answer
/// until the daemon closes (a reset counts as a close).
fn exchange(port: u16, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("no close after {:?}", String::from_utf8_lossy(&out))
            }
            Err(_) => return out,
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const GREETING: &str = "@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4\n";

fn log_has(s: &Setup, needle: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let t = std::fs::read_to_string(s.dir.path().join("rsyncd.log")).unwrap_or_default();
        if t.contains(needle) {
            return true;
        }
        if Instant::now() > until {
            eprintln!("log file:\n{t}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const TRUSTED: &str = "proxy protocol = yes\nproxy protocol hosts = 127.0.0.1\n";

#[test]
fn listing_and_pull_through_v1_and_v2_headers() {
    let s = setup(TRUSTED);
    let d = start(&s);
    for h in [Hdr::V1, Hdr::V2] {
        let f = forwarder(d.port, h, ALLOWED);
        let (ok, out, err) = rsync(&[&format!("rsync://127.0.0.1:{}/", f.port)]);
        assert!(ok, "{h:?}: {err}");
        assert!(out.contains("pub            \tpublic"), "{h:?}: {out:?}");
        let dest = s.dir.path().join(format!("copy-{h:?}"));
        let (ok, _, err) = rsync(&["-a", &format!("rsync://127.0.0.1:{}/pub/", f.port), dest.to_str().unwrap()]);
        assert!(ok, "{h:?}: {err}");
        assert_eq!(std::fs::read(dest.join("a.txt")).unwrap(), b"through the proxy\n");
    }
    // The log names the client from the header, not the proxy.
    assert!(log_has(&s, "connect from UNDETERMINED (198.51.100.8)"));
    assert!(log_has(&s, "rsync on pub/ from UNDETERMINED (198.51.100.8)"));
    assert!(!log_has_quick(&s, "(127.0.0.1)"));
    assert!(!unsupported_warning(&d));
}

/// A "not yet supported" warning about one of the parameters here.
fn unsupported_warning(d: &Daemon) -> bool {
    ["proxy protocol", "proxy protocol hosts", "socket options", "listen backlog"]
        .iter()
        .any(|p| d.stderr_has(&format!("parameter \"{p}\" is not yet supported")))
}

fn log_has_quick(s: &Setup, needle: &str) -> bool {
    std::fs::read_to_string(s.dir.path().join("rsyncd.log")).unwrap_or_default().contains(needle)
}

#[test]
fn hosts_deny_sees_the_proxied_address() {
    let s = setup(TRUSTED);
    let d = start(&s);
    for h in [Hdr::V1, Hdr::V2] {
        let denied = forwarder(d.port, h, DENIED);
        let (ok, _, err) = rsync(&[&format!("rsync://127.0.0.1:{}/priv/", denied.port)]);
        assert!(!ok);
        assert!(err.contains("@ERROR: access denied to priv from UNDETERMINED (198.51.100.7)"), "{h:?}: {err}");
        // Same proxy socket, another client: admitted.
        let allowed = forwarder(d.port, h, ALLOWED);
        let (ok, out, err) = rsync(&[&format!("rsync://127.0.0.1:{}/priv/", allowed.port)]);
        assert!(ok, "{h:?}: {err}");
        assert!(out.contains("a.txt"), "{out}");
    }
}

#[test]
fn malformed_headers_close_without_a_word() {
    let s = setup(TRUSTED);
    let d = start(&s);
    let mut v2_bad_version = header(Hdr::V2, ALLOWED);
    v2_bad_version[12] = 0x11;
    let mut v2_too_long = header(Hdr::V2, ALLOWED);
    v2_too_long[14..16].copy_from_slice(&0xfff0u16.to_be_bytes());
    let mut v2_short_block = header(Hdr::V2, ALLOWED);
    v2_short_block[15] = 8;
    v2_short_block.truncate(24);
    let cases: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 garbage\r\n".to_vec(),
        b"PROXY TCP4 198.51.100.7 127.0.0.1 5000 873\n".to_vec(),
        b"PROXY TCP4 198.51.100.7 127.0.0.1 0 873\r\n".to_vec(),
        [&b"PROXY UNKNOWN "[..], &[b'x'; 300]].concat(),
        v2_bad_version,
        v2_too_long,
        v2_short_block,
    ];
    for c in cases {
        let mut msg = c.clone();
        msg.extend_from_slice(b"@RSYNCD: 31.0\n\n");
        assert_eq!(text(&exchange(d.port, &msg)), "", "after {:?}", text(&c));
    }
    // Still serving.
    let mut good = header(Hdr::V1, ALLOWED);
    good.extend_from_slice(b"@RSYNCD: 31.0\n\n");
    assert!(text(&exchange(d.port, &good)).starts_with(GREETING));
}

#[test]
fn missing_header_is_rejected_like_stock() {
    let s = setup(TRUSTED);
    let d = start(&s);
    assert_eq!(text(&exchange(d.port, b"@RSYNCD: 31.0\n\n")), "");
    // The stock client straight to the daemon: no greeting, no listing.
    let (ok, out, err) = rsync(&[&format!("rsync://127.0.0.1:{}/", d.port)]);
    assert!(!ok);
    assert!(!out.contains("pub"), "{out}");
    assert!(err.contains("Connection reset by peer") || err.contains("unexpectedly closed"), "{err}");
    // A LOCAL V2 header (a proxy's health check) is a header: served with
    // the socket's address.
    let mut local = proxy::V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    local.extend_from_slice(b"@RSYNCD: 31.0\n\n");
    let a = text(&exchange(d.port, &local));
    assert!(a.starts_with(GREETING) && a.contains("pub"), "{a}");
    assert!(log_has(&s, "connect from UNDETERMINED (127.0.0.1)"));
}

#[test]
fn peers_not_trusted_may_not_send_a_header() {
    let mut good = header(Hdr::V1, ALLOWED);
    good.extend_from_slice(b"@RSYNCD: 31.0\n\n");
    // Listed: another loopback address.
    let s = setup("proxy protocol = yes\nproxy protocol hosts = 127.0.0.2\n");
    let d = start(&s);
    assert_eq!(text(&exchange(d.port, &good)), "");
    let until = Instant::now() + Duration::from_secs(10);
    while !d.stderr_has("proxy protocol rejected from untrusted peer UNDETERMINED (127.0.0.1)") {
        assert!(Instant::now() < until, "no rejection logged");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(d);
    // Unset: stock 3.5.0 trusts nobody, and says so at start-up.
    let s = setup("proxy protocol = yes\n");
    let d = start(&s);
    assert!(d.stderr_has("\"proxy protocol = true\" but \"proxy protocol hosts\" is unset"));
    assert_eq!(text(&exchange(d.port, &good)), "");
    // Off: a header is just bad input to the greeting parser, as with stock.
    let s = setup("proxy protocol hosts = 127.0.0.1\n");
    let d = start(&s);
    let a = text(&exchange(d.port, b"@RSYNCD: 31.0\n\n"));
    assert!(a.starts_with(GREETING) && a.contains("pub"), "{a}");
}

/// Read one line (greeting or `@ERROR`) from a raw session.
fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap_or(0) == 1 {
        line.push(b[0]);
        if b[0] == b'\n' {
            break;
        }
    }
    text(&line)
}

#[test]
fn per_host_cap_counts_the_proxied_client() {
    let s = setup(&format!("{TRUSTED}max sessions per host = 1\n"));
    let d = start(&s);
    let open = |src: &str| {
        let mut c = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut b = header(Hdr::V2, src);
        b.extend_from_slice(b"@RSYNCD: 31.0\n");
        c.write_all(&b).unwrap();
        c
    };
    // One session held open from the denied client's address...
    let mut first = open(DENIED);
    assert_eq!(read_line(&mut first), GREETING);
    // ...so a second from it is refused, though another client behind the
    // same proxy is served.
    let mut second = open("198.51.100.7:6000");
    assert_eq!(read_line(&mut second), GREETING);
    assert_eq!(read_line(&mut second), "@ERROR: max connections (1) reached -- try again later\n");
    let mut other = open(ALLOWED);
    assert_eq!(read_line(&mut other), GREETING);
    other.write_all(b"\n").unwrap();
    assert!(read_line(&mut other).starts_with("pub"));
}

#[test]
fn socket_options_and_backlog_are_accepted() {
    let s = setup(&format!("{TRUSTED}socket options = SO_KEEPALIVE TCP_NODELAY SO_SNDBUF=262144 SO_FROB\nlisten backlog = 64\n"));
    let d = start(&s);
    assert!(d.stderr_has("Unknown socket option SO_FROB"));
    assert!(!unsupported_warning(&d));
    let f = forwarder(d.port, Hdr::V1, ALLOWED);
    let (ok, out, err) = rsync(&[&format!("rsync://127.0.0.1:{}/", f.port)]);
    assert!(ok && out.contains("pub"), "{err}");
}

// --- The same bytes against stock `rsync --daemon` -------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_stock(s: &Setup) -> Option<Daemon> {
    Command::new("rsync").arg("--version").output().ok().filter(|o| o.status.success())?;
    let port = free_port();
    let child = Command::new("rsync")
        .args(["--daemon", "--no-detach", &format!("--config={}", s.conf.display())])
        .args([&format!("--port={port}"), "--address=127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let d = Daemon { child, port, stderr: Arc::new(Mutex::new(Vec::new())) };
    let until = Instant::now() + Duration::from_secs(10);
    // Probe with a valid V1 header so the probe itself is a clean session.
    let mut probe = header(Hdr::V1, ALLOWED);
    probe.extend_from_slice(b"@RSYNCD: 31.0\n\n");
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && text(&exchange(port, &probe)).starts_with("@RSYNCD:") {
            return Some(d);
        }
        if Instant::now() > until {
            eprintln!("stock daemon did not come up on port {port}; skipping the comparison");
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the daemon answers, with a close and no bytes shown as "<closed>".
fn answer(port: u16, bytes: &[u8]) -> String {
    let a = text(&exchange(port, bytes));
    if a.is_empty() {
        "<closed>".to_owned()
    } else {
        a
    }
}

#[test]
fn stock_daemon_gives_the_same_answers() {
    // Stock 3.2.7 has no `proxy protocol hosts` (it ignores the line) and
    // trusts every peer; ours trusts the listed loopback address.
    let s = setup(TRUSTED);
    let Some(stock) = start_stock(&s) else {
        return;
    };
    let ours = start(&s);
    let with = |h: Hdr, src: &str, rest: &[u8]| [header(h, src), rest.to_vec()].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("v1 listing", with(Hdr::V1, ALLOWED, b"@RSYNCD: 31.0\n\n")),
        ("v2 listing", with(Hdr::V2, ALLOWED, b"@RSYNCD: 31.0\n\n")),
        ("v1 denied", with(Hdr::V1, DENIED, b"@RSYNCD: 31.0\npriv\n")),
        ("v2 denied", with(Hdr::V2, DENIED, b"@RSYNCD: 31.0\npriv\n")),
        ("v1 unknown", b"PROXY UNKNOWN\r\n@RSYNCD: 31.0\n\n".to_vec()),
        ("no header", b"@RSYNCD: 31.0\n\n".to_vec()),
        ("bad v1", b"PROXY TCP4 garbage\r\n@RSYNCD: 31.0\n\n".to_vec()),
        ("v1 no CR", b"PROXY TCP4 198.51.100.7 127.0.0.1 5000 873\n@RSYNCD: 31.0\n\n".to_vec()),
        ("v1 too long", [&b"PROXY UNKNOWN "[..], &[b'x'; 200], b"\r\n@RSYNCD: 31.0\n\n"].concat()),
        ("bad v2 version", {
            let mut b = with(Hdr::V2, ALLOWED, b"@RSYNCD: 31.0\n\n");
            b[12] = 0x31;
            b
        }),
    ];
    let mut diffs = Vec::new();
    for (name, bytes) in &cases {
        let (a, b) = (answer(stock.port, bytes), answer(ours.port, bytes));
        if a != b {
            diffs.push(format!("{name}: stock {a:?}, ours {b:?}"));
        }
    }
    assert!(diffs.is_empty(), "{diffs:#?}");
    // Both really served (the comparison is not of two silent daemons).
    assert!(answer(stock.port, &cases[0].1).contains("pub            \tpublic"));
    // And the deny text names the header's address in both.
    assert!(answer(ours.port, &cases[2].1).contains("@ERROR: access denied to priv from UNDETERMINED (198.51.100.7)"));
}
