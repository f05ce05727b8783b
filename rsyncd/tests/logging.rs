//! `log file`, `transfer logging` and `log format` end to end: the daemon
//! binary with an rsyncd.conf, pulled from by the stock rsync client; the
//! log files must hold stock's connect, request and per-file lines.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(conf: &Path, state: &Path) -> Daemon {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rsyncd"))
        .arg(format!("--config={}", conf.display()))
        .args(["--port=0", "--address=127.0.0.1", "--state-dir"])
        .arg(state)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let l = lines.next().expect("daemon exited early").unwrap();
        if let Some(a) = l.strip_prefix("rsyncd: listening on ") {
            break a.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Daemon { child, port }
}

fn pull(d: &Daemon, src: &str, dest: &Path) {
    let out = Command::new("rsync")
        .env("RSYNC_PASSWORD", "sekrit")
        .args([
            "-a",
            &format!(
                "rsync://{src}",
                src = src.replace("HOST", &format!("127.0.0.1:{}", d.port))
            ),
        ])
        .arg(dest)
        .output()
        .expect("run rsync");
    assert!(
        out.status.success(),
        "rsync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The log's lines without the "YYYY/MM/DD HH:MM:SS [pid] " prefix, once
/// `want` lines are there (the daemon writes after the client may exit).
fn log_lines(p: &Path, want: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                // "2026/11/22 06:10:05 [123] rest"
                let (stamp, rest) = l.split_at(20);
                assert_eq!(stamp.as_bytes()[4], b'/', "{l:?}");
                assert_eq!(stamp.as_bytes()[19], b' ', "{l:?}");
                let rest = rest.strip_prefix('[').expect("pid");
                let (pid, rest) = rest.split_once("] ").expect("pid end");
                assert!(pid.parse::<u32>().is_ok(), "{l:?}");
                summary(rest)
            })
            .filter(|l| !l.starts_with("rsyncd version "))
            .collect();
        if lines.len() >= want || Instant::now() > until {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// "sent N bytes  received N bytes  total size N" with the byte counts
/// checked for plausibility and masked.
fn summary(line: &str) -> String {
    let Some(rest) = line.strip_prefix("sent ") else {
        return line.to_string();
    };
    let w: Vec<&str> = rest.split(' ').collect();
    assert_eq!(w.len(), 10, "{line:?}");
    assert!(
        w[0].parse::<u64>().unwrap() > 0 && w[4].parse::<u64>().unwrap() > 0,
        "{line:?}"
    );
    assert_eq!(w[1..4], ["bytes", "", "received"], "{line:?}");
    assert_eq!(w[5..9], ["bytes", "", "total", "size"], "{line:?}");
    format!("sent * total size {}", w[9])
}

#[test]
fn transfer_log_lines_match_stock_format() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), b"hello").unwrap();
    std::fs::write(root.join("sub/b.bin"), vec![1u8; 3000]).unwrap();
    std::fs::write(root.join("bad\nname"), b"xy").unwrap();
    std::os::unix::fs::symlink("b.bin", root.join("sub/lnk")).unwrap();
    std::fs::set_permissions(
        root.join("sub/b.bin"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let global_log = dir.path().join("rsyncd.log");
    let custom_log = dir.path().join("custom.log");
    let conf = dir.path().join("rsyncd.conf");
    let secrets = dir.path().join("secrets");
    std::fs::write(&secrets, "alice:sekrit\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        &conf,
        format!(
            "log file = {}\nreverse lookup = no\nuid = root\ngid = root\n\n\
             [plain]\n    path = {root}\n    transfer logging = yes\n\n\
             [custom]\n    path = {root}\n    transfer logging = yes\n    log file = {}\n\
             \x20   log format = %o|%i|%n|%f|%l|%b|%c|%B|%10l|%-4m|%P|%u|%a|%h|%L|%%\n\n\
             [quiet]\n    path = {root}\n\n\
             [auth]\n    path = {root}\n    transfer logging = yes\n    auth users = alice\n\
             \x20   secrets file = {secrets}\n",
            global_log.display(),
            custom_log.display(),
            root = root.display(),
            secrets = secrets.display()
        ),
    )
    .unwrap();
    let d = start(&conf, &dir.path().join("state"));

    pull(&d, "HOST/plain/", &dir.path().join("out1"));
    // clientserver.c daemon_main()'s start-up line comes first (and is
    // left out of the session lines below).
    let text = std::fs::read_to_string(&global_log).unwrap();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.ends_with(&format!("] rsyncd version {} starting, listening on port {}", env!("CARGO_PKG_VERSION"), d.port)),
        "{first:?}"
    );
    let lines = log_lines(&global_log, 8);
    assert_eq!(
        lines,
        [
            "connect from UNDETERMINED (127.0.0.1)",
            "rsync allowed access on module plain from UNDETERMINED (127.0.0.1)",
            "rsync on plain/ from UNDETERMINED (127.0.0.1)",
            "building file list",
            "send UNDETERMINED [127.0.0.1] plain () a.txt 5",
            "send UNDETERMINED [127.0.0.1] plain () bad\\#012name 2",
            "send UNDETERMINED [127.0.0.1] plain () sub/b.bin 3000",
            "sent * total size 3012",
        ]
    );

    // A sub-path pull into a module with its own log file and format: the
    // connect line stays in the global log, the rest goes to the module's.
    pull(&d, "HOST/custom/sub", &dir.path().join("out2"));
    let lines = log_lines(&global_log, 9);
    assert_eq!(lines.len(), 9, "{lines:?}");
    assert_eq!(lines[8], "connect from UNDETERMINED (127.0.0.1)");
    let lines = log_lines(&custom_log, 7);
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert_eq!(
        lines[0],
        "rsync allowed access on module custom from UNDETERMINED (127.0.0.1)"
    );
    assert_eq!(
        lines[1],
        "rsync on custom/sub from UNDETERMINED (127.0.0.1)"
    );
    assert_eq!(lines[2], "building file list");
    // With %i in the format, items without data are logged too (maybe_log_item).
    let dir_line: Vec<&str> = lines[3].split('|').collect();
    let dir_len = std::fs::metadata(root.join("sub"))
        .unwrap()
        .len()
        .to_string();
    assert_eq!(
        dir_line[..5],
        ["send", "cd+++++++++", "sub/", "sub", dir_len.as_str()],
        "{lines:?}"
    );
    assert_eq!(dir_line[5..7], ["0", "0"], "no data for a directory");
    let link_line: Vec<&str> = lines[5].split('|').collect();
    assert_eq!(
        link_line[..3],
        ["send", "cL+++++++++", "sub/lnk"],
        "{lines:?}"
    );
    assert_eq!(link_line[14], " -> b.bin");
    assert_eq!(lines[6], "sent * total size 3005");
    let f: Vec<&str> = lines[4].split('|').collect();
    assert_eq!(f[0], "send");
    assert_eq!(f[1], "<f+++++++++");
    assert_eq!(f[2], "sub/b.bin");
    assert_eq!(f[3], "sub/b.bin");
    assert_eq!(f[4], "3000");
    let sent: u64 = f[5].parse().unwrap();
    assert!((3000..3200).contains(&sent), "%b {sent}");
    assert_eq!(f[6], "16", "%c: a sum head and no blocks for a new file");
    assert_eq!(f[7], "rw-r-----");
    assert_eq!(f[8], "      3000");
    assert_eq!(f[9], "custom");
    assert_eq!(f[10], root.display().to_string());
    assert_eq!(f[11], "");
    assert_eq!(f[12], "127.0.0.1");
    assert_eq!(f[13], "UNDETERMINED");
    assert_eq!(f[14], "");
    assert_eq!(f[15], "%");

    // An unchanged file is not transferred and not logged; a module without
    // transfer logging logs only the session lines.
    pull(&d, "HOST/custom/sub", &dir.path().join("out2"));
    pull(&d, "HOST/quiet/", &dir.path().join("out3"));
    let lines = log_lines(&global_log, 15);
    assert_eq!(lines.len(), 15, "{lines:?}");
    assert_eq!(
        lines[10..],
        [
            "connect from UNDETERMINED (127.0.0.1)",
            "rsync allowed access on module quiet from UNDETERMINED (127.0.0.1)",
            "rsync on quiet/ from UNDETERMINED (127.0.0.1)",
            "building file list",
            "sent * total size 3012",
        ]
    );
    std::thread::sleep(Duration::from_millis(200));
    let lines = log_lines(&custom_log, 11);
    assert_eq!(lines.len(), 11, "{lines:?}");
    assert_eq!(
        lines[7..],
        [
            "rsync allowed access on module custom from UNDETERMINED (127.0.0.1)",
            "rsync on custom/sub from UNDETERMINED (127.0.0.1)",
            "building file list",
            "sent * total size 3005",
        ]
    );

    // An authenticated pull shows the user in the request line and as %u;
    // -s (secluded arguments) still logs the real request.
    pull(&d, "alice@HOST/auth/a.txt", &dir.path().join("out4"));
    let out = Command::new("rsync")
        .env("RSYNC_PASSWORD", "sekrit")
        .args([
            "-as",
            &format!("rsync://alice@127.0.0.1:{}/auth/sub/b.bin", d.port),
        ])
        .arg(dir.path().join("out5"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = log_lines(&global_log, 27);
    assert_eq!(
        lines[15..],
        [
            "connect from UNDETERMINED (127.0.0.1)",
            "rsync allowed access on module auth from UNDETERMINED (127.0.0.1)",
            "rsync on auth/a.txt from alice@UNDETERMINED (127.0.0.1)",
            "building file list",
            "send UNDETERMINED [127.0.0.1] auth (alice) a.txt 5",
            "sent * total size 5",
            "connect from UNDETERMINED (127.0.0.1)",
            "rsync allowed access on module auth from UNDETERMINED (127.0.0.1)",
            "rsync on auth/sub/b.bin from alice@UNDETERMINED (127.0.0.1)",
            "building file list",
            "send UNDETERMINED [127.0.0.1] auth (alice) sub/b.bin 3000",
            "sent * total size 3000",
        ]
    );
}
