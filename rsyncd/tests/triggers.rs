//! Change triggers: a change fires `trigger exec` and `trigger url` once,
//! after the tree stayed quiet for `trigger quiet time`, with the module,
//! the generation and the changed top-level paths (environment, stdin, POST
//! body); changes within the quiet time are delivered together; a failing
//! URL is retried exactly `trigger retries` times.
//!
//! Changes are published with `rsyncd refresh` (the daemon runs with
//! `--no-watch`), so what is published when does not depend on timing.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;
use common::Daemon;

/// Generous: a loaded 2-core machine and a debug build.
const DEADLINE: Duration = Duration::from_secs(60);

/// One HTTP request as the test listener received it.
struct Received {
    head: String,
    body: Vec<u8>,
}

/// An HTTP listener on 127.0.0.1 that answers every request with `status`
/// and reports each request.
fn http_listener(status: &'static str) -> (u16, mpsc::Receiver<Received>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut buf = Vec::new();
            let mut b = [0u8; 4096];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break 0,
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                }
            };
            if head_end == 0 {
                continue;
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            while buf.len() < head_end + len {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&b[..n]),
                }
            }
            let body = buf[head_end..].to_vec();
            let _ = s.write_all(format!("HTTP/1.0 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
            let _ = tx.send(Received { head, body });
        }
    });
    (port, rx)
}

/// A tree, a hook script that records each run in `out`, and a config.
fn setup(t: &Path, module_extra: &str) -> (PathBuf, PathBuf, PathBuf) {
    let root = t.join("m");
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::fs::create_dir_all(root.join("b")).unwrap();
    std::fs::write(root.join("a/x"), b"x").unwrap();
    std::fs::write(root.join("top.txt"), b"1").unwrap();
    let out = t.join("fired");
    std::fs::create_dir_all(&out).unwrap();
    let hook = t.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nf={}/fire.$(date +%s%N).$$\n\
             {{ echo \"name=$RSYNC_MODULE_NAME\"; echo \"path=$RSYNC_MODULE_PATH\"; echo \"gen=$RSYNC_TRIGGER_GENERATION\"; \
             printf 'paths=%s' \"$RSYNC_TRIGGER_PATHS\"; echo '---'; cat; }} > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\n",
            out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let conf = t.join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "metrics address = 127.0.0.1:0\nuid = 0\ngid = 0\n[m]\n  path = {}\n  trigger exec = {}\n{module_extra}",
            root.display(),
            hook.display()
        ),
    )
    .unwrap();
    (root, out, conf)
}

/// The hook runs recorded so far, oldest first.
fn fired(out: &Path) -> Vec<String> {
    let mut names: Vec<_> =
        std::fs::read_dir(out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| !n.ends_with(".tmp")).collect();
    names.sort();
    names.iter().map(|n| std::fs::read_to_string(out.join(n)).unwrap()).collect()
}

fn wait_fired(out: &Path, n: usize, d: &Daemon) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let f = fired(out);
        if f.len() >= n {
            return f;
        }
        assert!(t0.elapsed() < DEADLINE, "{} of {n} trigger runs:\n{}", f.len(), d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `generation N` from a refresh summary.
fn generation(summary: &str) -> u64 {
    let w: Vec<&str> = summary.split_whitespace().collect();
    let i = w.iter().position(|&x| x == "generation").unwrap_or_else(|| panic!("{summary}"));
    w[i + 1].parse().unwrap()
}

#[test]
fn a_change_fires_once_after_the_quiet_period_with_env_stdin_and_post() {
    let t = tempfile::tempdir().unwrap();
    let (port, posts) = http_listener("204 No Content");
    let quiet = 3;
    let (root, out, conf) = setup(
        t.path(),
        &format!("  trigger quiet time = {quiet}\n  trigger url = http://127.0.0.1:{port}/hook?x=1\n  trigger retries = 0\n"),
    );
    let state = t.path().join("state");
    let d = Daemon::start_config(&conf, &state, &["--no-watch"]);

    // 1. One publication with two changed top-level paths.
    std::fs::write(root.join("a/new"), b"n").unwrap();
    std::fs::write(root.join("top.txt"), b"22").unwrap();
    let t_before = Instant::now();
    let g1 = generation(&d.refresh_module(&state, "m", None));
    let runs = wait_fired(&out, 1, &d);
    assert!(t_before.elapsed() >= Duration::from_secs(quiet), "fired before the quiet time was over");
    let expected_json = format!(
        "{{\"module\":\"m\",\"path\":\"{}\",\"generation\":{g1},\"paths\":[\"a\",\"top.txt\"],\"truncated\":false}}",
        root.display()
    );
    assert_eq!(runs[0], format!("name=m\npath={}\ngen={g1}\npaths=a\ntop.txt\n---\n{expected_json}", root.display()));
    let post = posts.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("no POST:\n{}", d.log()));
    assert!(post.head.starts_with("POST /hook?x=1 HTTP/1.0\r\n"), "{}", post.head);
    assert!(post.head.contains(&format!("Host: 127.0.0.1:{port}\r\n")), "{}", post.head);
    assert!(post.head.contains("Content-Type: application/json\r\n"), "{}", post.head);
    assert_eq!(String::from_utf8(post.body).unwrap(), expected_json);

    // Exactly once: nothing more after two more quiet periods.
    std::thread::sleep(Duration::from_secs(2 * quiet));
    assert_eq!(fired(&out).len(), 1);
    assert!(posts.try_recv().is_err(), "a second POST");

    // 2. Two publications within the quiet time: one delivery with both.
    std::fs::write(root.join("b/y"), b"y").unwrap();
    let _ = d.refresh_module(&state, "m", Some("b"));
    std::fs::write(root.join("top.txt"), b"333").unwrap();
    let g2 = generation(&d.refresh_module(&state, "m", None));
    let runs = wait_fired(&out, 2, &d);
    assert!(runs[1].contains(&format!("gen={g2}\npaths=b\ntop.txt\n")), "{}", runs[1]);
    let post = posts.recv_timeout(DEADLINE).unwrap();
    assert!(String::from_utf8(post.body).unwrap().contains("\"paths\":[\"b\",\"top.txt\"]"));
    std::thread::sleep(Duration::from_secs(quiet + 1));
    assert_eq!(fired(&out).len(), 2, "{}", d.log());

    // 3. A refresh that finds nothing new fires nothing.
    let s = d.refresh_module(&state, "m", None);
    assert!(s.contains("unchanged"), "{s}");
    std::thread::sleep(Duration::from_secs(quiet + 1));
    assert_eq!(fired(&out).len(), 2);
}

#[test]
fn a_failing_url_is_retried_a_bounded_number_of_times() {
    let t = tempfile::tempdir().unwrap();
    let (port, posts) = http_listener("500 Internal Server Error");
    let (root, out, conf) =
        setup(t.path(), &format!("  trigger quiet time = 1\n  trigger url = http://127.0.0.1:{port}/\n  trigger retries = 2\n"));
    let state = t.path().join("state");
    let d = Daemon::start_config(&conf, &state, &["--no-watch"]);
    let mport = d.metrics_port().expect("metrics port");
    std::fs::write(root.join("top.txt"), b"changed").unwrap();
    let _ = d.refresh_module(&state, "m", None);
    // The command succeeds once; the URL is tried 1 + 2 times (back-off 1 s, 2 s).
    wait_fired(&out, 1, &d);
    for i in 0..3 {
        let p = posts.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("attempt {} never came:\n{}", i + 1, d.log()));
        assert!(String::from_utf8(p.body).unwrap().contains("\"paths\":[\"top.txt\"]"));
    }
    assert!(d.wait_log("giving up", DEADLINE), "{}", d.log());
    // No fourth attempt (the next back-off would have been 4 s).
    std::thread::sleep(Duration::from_secs(6));
    assert!(posts.try_recv().is_err(), "more attempts than 1 + trigger retries");
    assert_eq!(fired(&out).len(), 1);
    // Counted once as failed, the command once as delivered.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", mport)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.contains("rsyncd_triggers_total{module=\"m\",action=\"url\",result=\"failed\"} 1\n"), "{text}");
    assert!(text.contains("rsyncd_triggers_total{module=\"m\",action=\"exec\",result=\"ok\"} 1\n"), "{text}");
}
