//! The Prometheus endpoint (`metrics address`): after real client sessions
//! (two pulls, the second a null sync; a refused option; a failed login; an
//! unknown module; a listing) the counters have exactly the expected values,
//! the text is valid exposition format, and the HTTP side answers only
//! `GET`/`HEAD /metrics`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::Daemon;

/// Generous: a loaded 2-core machine and a debug build.
const DEADLINE: Duration = Duration::from_secs(60);

fn http(port: u16, request: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).expect("utf-8 answer")
}

fn scrape(port: u16) -> String {
    let r = http(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (head, body) = r.split_once("\r\n\r\n").expect("header end");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let len: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).expect("content length").parse().unwrap();
    assert_eq!(len, body.len());
    body.to_string()
}

fn is_name(s: &str, first_colon: bool) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || (first_colon && f == ':'))
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || (first_colon && x == ':'))
}

/// Checks the text exposition format (version 0.0.4) line by line and
/// returns the samples by series (`name{labels}` as written).
fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    assert!(text.ends_with('\n'), "ends with a newline");
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(is_name(name, true), "HELP name {name:?}");
            assert!(!helps.contains(&name.to_string()), "second HELP for {name}");
            helps.push(name.into());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE name type");
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty), "{line}");
            assert!(types.insert(name.into(), ty.into()).is_none(), "second TYPE for {name}");
            assert!(!samples.keys().any(|k: &String| k.starts_with(name)), "TYPE after samples of {name}");
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "stray line {line:?}");
        // name{k="v",...} value
        let name_end = line.find(['{', ' ']).expect("sample name end");
        let name = &line[..name_end];
        assert!(is_name(name, true), "sample name {name:?}");
        let mut rest = &line[name_end..];
        if let Some(r) = rest.strip_prefix('{') {
            let mut r = r;
            loop {
                let eq = r.find('=').expect("label =");
                assert!(is_name(&r[..eq], false), "label name {:?}", &r[..eq]);
                r = r[eq + 1..].strip_prefix('"').expect("label value quote");
                // The value: escapes \\ \" \n only.
                let mut i = 0;
                let b = r.as_bytes();
                loop {
                    match b[i] {
                        b'\\' => {
                            assert!(matches!(b[i + 1], b'\\' | b'"' | b'n'), "bad escape in {line}");
                            i += 2;
                        }
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                r = &r[i + 1..];
                if let Some(x) = r.strip_prefix(',') {
                    r = x;
                } else {
                    r = r.strip_prefix('}').expect("label list end");
                    break;
                }
            }
            rest = r;
        }
        let value = rest.strip_prefix(' ').expect("space before the value");
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?} in {line}")),
        };
        // Every sample belongs to a declared family.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| types.get(*b).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        let ty = types.get(family).unwrap_or_else(|| panic!("no TYPE for {name}"));
        if ty == "counter" {
            assert!(name.ends_with("_total") && v >= 0.0, "{line}");
        }
        let series = line[..line.len() - value.len() - 1].to_string();
        assert!(samples.insert(series, v).is_none(), "duplicate series in {line}");
    }
    samples
}

fn rsync(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("rsync");
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run rsync")
}

fn write_config(t: &Path) -> std::path::PathBuf {
    let pub_dir = t.join("pub");
    std::fs::create_dir_all(pub_dir.join("sub")).unwrap();
    std::fs::write(pub_dir.join("a"), b"alpha").unwrap();
    std::fs::write(pub_dir.join("b"), vec![7u8; 100_000]).unwrap();
    std::fs::write(pub_dir.join("sub/c"), b"gamma").unwrap();
    let priv_dir = t.join("priv");
    std::fs::create_dir_all(&priv_dir).unwrap();
    std::fs::write(priv_dir.join("secret"), b"s").unwrap();
    let secrets = t.join("secrets");
    std::fs::write(&secrets, "alice:right\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = t.join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "metrics address = 127.0.0.1:0\nuse chroot = no\nuid = 0\ngid = 0\n\
             [pub]\n  path = {}\n  refuse options = checksum\n\
             [priv]\n  path = {}\n  auth users = alice\n  secrets file = {}\n",
            pub_dir.display(),
            priv_dir.display(),
            secrets.display()
        ),
    )
    .unwrap();
    conf
}

#[test]
fn counters_after_real_sessions_in_valid_exposition_format() {
    let t = tempfile::tempdir().unwrap();
    let conf = write_config(t.path());
    let d = Daemon::start_config(&conf, &t.path().join("state"), &["--no-watch"]);
    let mport = d.metrics_port().unwrap_or_else(|| panic!("no metrics line:\n{}", d.log()));
    let url = |m: &str| format!("rsync://127.0.0.1:{}/{m}", d.port);
    let dest = |n: &str| t.path().join(n).display().to_string() + "/";

    // Before any session: the families are there, the counters empty.
    let before = parse_exposition(&scrape(mport));
    assert_eq!(before.get(&format!("rsyncd_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))).copied(), Some(1.0), "{before:#?}");
    assert!(!before.keys().any(|k| k.starts_with("rsyncd_transfers_total")));

    // 1. A pull of three files, 2. the same pull again: a null sync.
    for n in ["d1", "d1"] {
        let o = rsync(&["-a", &format!("{}/", url("pub")), &dest(n)], &[]);
        assert!(o.status.success(), "pull: {}\n{}", String::from_utf8_lossy(&o.stderr), d.log());
    }
    assert_eq!(std::fs::read(t.path().join("d1/sub/c")).unwrap(), b"gamma");
    // 3. A refused option.
    let o = rsync(&["-ac", &format!("{}/", url("pub")), &dest("d3")], &[]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("refuse --checksum"), "{}", String::from_utf8_lossy(&o.stderr));
    // 4. A failed login.
    let o = rsync(&["-a", &format!("rsync://alice@127.0.0.1:{}/priv/", d.port), &dest("d4")], &[("RSYNC_PASSWORD", "wrong")]);
    assert_eq!(o.status.code(), Some(5), "{}", String::from_utf8_lossy(&o.stderr));
    // 5. An unknown module, 6. a listing.
    let o = rsync(&["-a", &format!("{}/", url("nope")), &dest("d5")], &[]);
    assert_eq!(o.status.code(), Some(5));
    let o = rsync(&[&format!("rsync://127.0.0.1:{}/", d.port)], &[]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("pub"));

    let p = d.port.to_string();
    let want: Vec<(String, f64)> = vec![
        (format!("rsyncd_connections_total{{listener=\"{p}\"}}"), 6.0),
        (format!("rsyncd_module_connections_total{{module=\"pub\",listener=\"{p}\"}}"), 3.0),
        (format!("rsyncd_list_requests_total{{listener=\"{p}\"}}"), 1.0),
        ("rsyncd_transfers_total{module=\"pub\"}".into(), 2.0),
        ("rsyncd_null_syncs_total{module=\"pub\"}".into(), 1.0),
        ("rsyncd_files_sent_total{module=\"pub\"}".into(), 3.0),
        ("rsyncd_refusals_total{reason=\"refused_option\",module=\"pub\"}".into(), 1.0),
        ("rsyncd_refusals_total{reason=\"auth_failed\",module=\"priv\"}".into(), 1.0),
        ("rsyncd_refusals_total{reason=\"unknown_module\",module=\"\"}".into(), 1.0),
        ("rsyncd_auth_failures_total{module=\"priv\"}".into(), 1.0),
        ("rsyncd_flist_cache_lookups_total{result=\"hit\"}".into(), 1.0),
        ("rsyncd_flist_cache_lookups_total{result=\"miss\"}".into(), 1.0),
        ("rsyncd_snapshot_entries{module=\"pub\"}".into(), 5.0),
        ("rsyncd_snapshot_entries{module=\"priv\"}".into(), 2.0),
        (format!("rsyncd_sessions_active{{listener=\"{p}\"}}"), 0.0),
    ];
    // A session's last counters are written as it ends, which may be just
    // after the client exits: poll.
    let t0 = Instant::now();
    let samples = loop {
        let s = parse_exposition(&scrape(mport));
        let missing: Vec<_> = want.iter().filter(|(k, v)| s.get(k) != Some(v)).collect();
        if missing.is_empty() {
            break s;
        }
        if t0.elapsed() > DEADLINE {
            let got: Vec<_> = missing.iter().map(|(k, _)| (k, s.get(k))).collect();
            panic!("expected {missing:?}, got {got:?}\n{s:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // No other refusal reason, no transfer of the private module.
    let refusals: f64 = samples.iter().filter(|(k, _)| k.starts_with("rsyncd_refusals_total")).map(|(_, v)| v).sum();
    assert_eq!(refusals, 3.0);
    assert!(!samples.keys().any(|k| k.contains("module=\"priv\"") && k.starts_with("rsyncd_transfers_total")));
    // Bytes: the two pulls sent the 100 kB file once.
    let tb = samples["rsyncd_transfer_bytes_sent_total{module=\"pub\"}"];
    assert!(tb > 100_000.0, "{tb}");
    assert!(samples[&format!("rsyncd_bytes_sent_total{{listener=\"{p}\"}}")] >= tb);
    assert!(samples["rsyncd_snapshot_generation{module=\"pub\"}"] >= 1.0);
    assert!(samples["rsyncd_snapshot_age_seconds{module=\"pub\"}"] >= 0.0);
    assert!(samples.contains_key("rsyncd_flist_cache_bytes"));
}

#[test]
fn only_get_and_head_of_metrics_are_served() {
    let t = tempfile::tempdir().unwrap();
    let conf = write_config(t.path());
    let d = Daemon::start_config(&conf, &t.path().join("state"), &["--no-watch"]);
    let mport = d.metrics_port().unwrap_or_else(|| panic!("no metrics line:\n{}", d.log()));
    let head = http(mport, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    assert!(http(mport, b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404 "));
    let post = http(mport, b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.0 405 ") && post.contains("Allow: GET, HEAD"), "{post}");
    assert!(http(mport, b"junk\r\n\r\n").starts_with("HTTP/1.0 400 "));
    // An endless header is cut off at the size bound, not read for ever.
    let mut big = b"GET /metrics HTTP/1.0\r\nX: ".to_vec();
    big.extend(vec![b'a'; 9000]);
    let mut s = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let _ = s.write_all(&big);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.0 431 "), "{}", String::from_utf8_lossy(&out));
    // The daemon still serves scrapes.
    assert!(parse_exposition(&scrape(mport)).contains_key(&format!("rsyncd_build_info{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn watcher_publications_feed_the_update_latency_histogram() {
    let t = tempfile::tempdir().unwrap();
    let conf = write_config(t.path());
    let d = Daemon::start_config(&conf, &t.path().join("state"), &[]);
    if let Err(why) = d.watching() {
        println!("SKIPPED: fanotify watcher not available: {why}");
        return;
    }
    let mport = d.metrics_port().unwrap_or_else(|| panic!("no metrics line:\n{}", d.log()));
    std::fs::write(t.path().join("pub/new"), b"new").unwrap();
    let t0 = Instant::now();
    loop {
        let s = parse_exposition(&scrape(mport));
        let count = s.get("rsyncd_snapshot_update_latency_seconds_count{module=\"pub\"}").copied().unwrap_or(0.0);
        let published = s.get("rsyncd_snapshot_publications_total{module=\"pub\",kind=\"incremental\"}").copied().unwrap_or(0.0);
        if count >= 1.0 && published >= 1.0 {
            assert_eq!(s.get("rsyncd_snapshot_entries{module=\"pub\"}").copied(), Some(6.0));
            let inf = s["rsyncd_snapshot_update_latency_seconds_bucket{module=\"pub\",le=\"+Inf\"}"];
            assert_eq!(inf, count, "+Inf bucket holds every observation");
            break;
        }
        assert!(t0.elapsed() < DEADLINE, "no publication seen:\n{s:#?}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}
