//! Hostile and broken clients against the real daemon binary: each must end
//! only its own session, with an error in rsync's form where the stream
//! still allows one, and the daemon must keep serving everyone else.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use protocol::mux::{decode_header, MsgCode};

struct Daemon {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mod");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("file.txt"), b"hello world\n").unwrap();
    std::fs::write(root.join("sub/big"), vec![7u8; 100_000]).unwrap();
    let state = dir.path().join("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsyncd"))
        .arg(&root)
        .args(["--port=0", "--address=127.0.0.1", "--state-dir"])
        .arg(&state)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let port = loop {
        let l = lines.next().expect("daemon exited early").unwrap();
        if let Some(a) = l.strip_prefix("rsyncd: listening on ") {
            break a.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Daemon { child, port, _dir: dir }
}

fn connect(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = s.read_to_end(&mut v);
    v
}

fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap_or(0) == 1 {
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// A well-behaved pull must still work (the daemon survived).
fn assert_serving(d: &Daemon) {
    let mut s = connect(d);
    assert!(read_line(&mut s).starts_with("@RSYNCD: 32.0"));
    s.write_all(b"@RSYNCD: 31.0\n\n").unwrap();
    let listing = String::from_utf8_lossy(&read_all(s)).into_owned();
    assert!(listing.contains("@RSYNCD: EXIT"), "{listing}");
}

#[test]
fn garbage_greeting_gets_startup_error() {
    let d = start();
    let mut s = connect(&d);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let out = String::from_utf8_lossy(&read_all(s)).into_owned();
    assert!(out.starts_with("@RSYNCD: 32.0 "), "{out}");
    assert!(out.contains("@ERROR: protocol startup error\n"), "{out}");
    assert_serving(&d);
}

#[test]
fn greeting_rules_match_stock_texts() {
    let d = start();
    for (hello, want) in [
        ("@RSYNCD: 30\n", "@ERROR: your client omitted the subprotocol value: @RSYNCD: 30\n"),
        ("@RSYNCD: 32.0\n", "@ERROR: your client omitted the digest name list: @RSYNCD: 32.0\n"),
        ("@RSYNCD: 31.0\n#frob\n", "@ERROR: Unknown command '#frob'\n"),
        ("@RSYNCD: 31.0\nnosuch\n", "@ERROR: Unknown module 'nosuch'\n"),
    ] {
        let mut s = connect(&d);
        s.write_all(hello.as_bytes()).unwrap();
        let out = String::from_utf8_lossy(&read_all(s)).into_owned();
        assert!(out.ends_with(want), "{hello:?} -> {out:?}");
    }
    assert_serving(&d);
}

#[test]
fn overlong_line_and_nul_are_rejected() {
    let d = start();
    let mut s = connect(&d);
    let mut junk = b"@RSYNCD: ".to_vec();
    junk.extend(std::iter::repeat_n(b'9', 100_000));
    let _ = s.write_all(&junk);
    let out = String::from_utf8_lossy(&read_all(s)).into_owned();
    assert!(out.contains("@ERROR: protocol startup error"), "{out}");
    let mut s = connect(&d);
    s.write_all(b"@RSYNCD: 31.0\nmo\0d\n").unwrap();
    let out = read_all(s);
    assert!(!String::from_utf8_lossy(&out).contains("@RSYNCD: OK"));
    assert_serving(&d);
}

/// Start a protocol-29 pull by hand (client-to-server stays raw below 30)
/// up to the file list; returns the stream and the demultiplexed data read.
fn start_pull29(d: &Daemon) -> (TcpStream, Vec<u8>) {
    let mut s = connect(d);
    read_line(&mut s);
    s.write_all(b"@RSYNCD: 29\nmod\n").unwrap();
    assert_eq!(read_line(&mut s), "@RSYNCD: OK");
    s.write_all(b"--server\n--sender\n-r\n.\nmod/\n\n").unwrap();
    let mut seed = [0u8; 4];
    s.read_exact(&mut seed).unwrap();
    s.write_all(&[0, 0, 0, 0]).unwrap(); // empty filter list
    // Read frames until the list, id lists and io_error have arrived: the
    // tree has 4 entries; just collect what comes within a short while.
    let mut data = Vec::new();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    loop {
        let mut h = [0u8; 4];
        if s.read_exact(&mut h).is_err() {
            break;
        }
        let hdr = decode_header(&h, 1 << 20).unwrap();
        let mut p = vec![0u8; hdr.len];
        s.read_exact(&mut p).unwrap();
        if hdr.code == MsgCode::Data {
            data.extend_from_slice(&p);
        }
    }
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    (s, data)
}

fn messages(mut s: TcpStream) -> String {
    let mut text = String::new();
    loop {
        let mut h = [0u8; 4];
        if s.read_exact(&mut h).is_err() {
            break;
        }
        let Ok(hdr) = decode_header(&h, 1 << 20) else { break };
        let mut p = vec![0u8; hdr.len];
        if s.read_exact(&mut p).is_err() {
            break;
        }
        if hdr.code != MsgCode::Data {
            text.push_str(&String::from_utf8_lossy(&p));
        }
    }
    text
}

/// CVE-2024-12084 class: a sum header whose strong-checksum length exceeds
/// the negotiated digest (legacy MD4, 16 bytes) ends that session cleanly.
#[test]
fn oversized_s2length_is_rejected() {
    let d = start();
    for s2 in [17i32, 64, -1, i32::MAX] {
        let (mut s, list) = start_pull29(&d);
        assert!(!list.is_empty());
        let mut req = Vec::new();
        req.extend_from_slice(&1i32.to_le_bytes()); // ndx 1 = "file.txt"
        req.extend_from_slice(&0x8000u16.to_le_bytes()); // ITEM_TRANSFER
        for v in [1i32, 700, s2, 0] {
            req.extend_from_slice(&v.to_le_bytes());
        }
        req.extend(std::iter::repeat_n(0u8, 4 + 64));
        s.write_all(&req).unwrap();
        let text = messages(s);
        assert!(text.contains("Invalid checksum length"), "s2length {s2}: {text:?}");
    }
    assert_serving(&d);
}

/// Absurd block counts and lengths are refused before any allocation.
#[test]
fn absurd_sum_heads_are_rejected() {
    let d = start();
    for head in [[i32::MAX, 700, 16, 0], [1, 1 << 30, 16, 0], [-5, 700, 16, 0], [3, 0, 16, 0], [1, 700, 16, 701]] {
        let (mut s, _) = start_pull29(&d);
        let mut req = Vec::new();
        req.extend_from_slice(&1i32.to_le_bytes());
        req.extend_from_slice(&0x8000u16.to_le_bytes());
        for v in head {
            req.extend_from_slice(&v.to_le_bytes());
        }
        s.write_all(&req).unwrap();
        let text = messages(s);
        assert!(!text.is_empty(), "head {head:?} produced no error");
    }
    assert_serving(&d);
}

#[test]
fn out_of_range_index_is_a_protocol_error() {
    let d = start();
    let (mut s, _) = start_pull29(&d);
    let mut req = Vec::new();
    req.extend_from_slice(&999i32.to_le_bytes());
    req.extend_from_slice(&0u16.to_le_bytes());
    s.write_all(&req).unwrap();
    let text = messages(s);
    assert!(text.contains("File-list index 999 not in -1 - "), "{text:?}");
    assert_serving(&d);
}

#[test]
fn transfer_of_a_directory_is_refused() {
    let d = start();
    let (mut s, _) = start_pull29(&d);
    let mut req = Vec::new();
    req.extend_from_slice(&0i32.to_le_bytes()); // "." is a directory
    req.extend_from_slice(&0x8000u16.to_le_bytes());
    for v in [0i32, 0, 0, 0] {
        req.extend_from_slice(&v.to_le_bytes());
    }
    s.write_all(&req).unwrap();
    let text = messages(s);
    assert!(text.contains("non-regular file"), "{text:?}");
    assert_serving(&d);
}

#[test]
fn disconnects_at_every_point_leave_the_daemon_serving() {
    let d = start();
    let script: &[&[u8]] = &[b"@RSYNCD: 31.0\n", b"mod\n", b"--server\0--sender\0-r", b"e.LsfxCIvu\0.\0mod/\0\0"];
    for cut in 0..=script.len() {
        let mut s = connect(&d);
        for part in &script[..cut] {
            let _ = s.write_all(part);
        }
        drop(s);
    }
    // A client that stops reading while we send: ends on its own.
    let (s, _) = start_pull29(&d);
    drop(s);
    assert_serving(&d);
}

#[test]
fn many_parallel_sessions() {
    let d = start();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let port = d.port;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                read_line(&mut s);
                s.write_all(b"@RSYNCD: 31.0\n\n").unwrap();
                let mut v = Vec::new();
                let _ = s.read_to_end(&mut v);
                String::from_utf8_lossy(&v).contains("@RSYNCD: EXIT")
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap());
    }
}
