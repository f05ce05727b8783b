//! Recording stock-rsync protocol fixtures through the `record_fixture` tee
//! proxy, and checking the committed ones are still what stock rsync sends.
//!
//! Regenerate the committed fixtures with
//! `INTEROP_RECORD=1 cargo test -p interop-tests --test interop record_stock_fixtures -- --ignored`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interop_tests::daemon::workspace_dir;
use interop_tests::stock::stock_version;
use interop_tests::tree::{build_hello_tree, HELLO_MTIME};
use interop_tests::{run_client, Daemon, ModuleSpec, Which};

/// A running `record_fixture` process.
pub struct Proxy {
    /// The port it listens on.
    pub port: u16,
    child: Child,
}

impl Proxy {
    /// Starts the proxy in front of 127.0.0.1:`upstream`, recording into `out`.
    pub fn start(upstream: u16, out: &Path) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_record_fixture"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--upstream")
            .arg(format!("127.0.0.1:{upstream}"))
            .arg("--out")
            .arg(out)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn record_fixture");
        let mut line = String::new();
        BufReader::new(child.stderr.as_mut().expect("piped"))
            .read_line(&mut line)
            .expect("read proxy stderr");
        let port = line
            .trim()
            .strip_prefix("record_fixture: listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected proxy output {line:?}"));
        Proxy { port, child }
    }

    /// Waits for the proxy to finish its one connection; panics if it failed.
    pub fn finish(mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait proxy") {
                assert!(st.success(), "record_fixture failed: {st}");
                return;
            }
            assert!(Instant::now() < deadline, "record_fixture did not finish");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The client options of the recorded pulls (before `--protocol` and the URLs).
const PULL_OPTS: [&str; 4] = [
    "-a",
    "--no-inc-recursive",
    "--checksum-seed=1",
    "--numeric-ids",
];

/// The committed fixtures: directory name and protocol.
const FIXTURES: [(&str, u32); 2] = [("pull-hello-p31", 31), ("pull-hello-p29", 29)];

fn fixture_dir(name: &str) -> PathBuf {
    workspace_dir()
        .join("protocol/tests/fixtures/stock")
        .join(name)
}

/// Records one pull of the hello tree at `protocol` into `out` (c2s.bin, s2c.bin).
fn record(protocol: u32, out: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mod");
    build_hello_tree(&root);
    let daemon = Daemon::start(Which::Stock, &[ModuleSpec::new("mod", &root)], &[]);
    let proxy = Proxy::start(daemon.port, out);
    let dest = tmp.path().join("dst");
    let mut args: Vec<String> = PULL_OPTS.iter().map(|s| s.to_string()).collect();
    args.push(format!("--protocol={protocol}"));
    args.push(format!("rsync://127.0.0.1:{}/mod/", proxy.port));
    args.push(format!("{}/", dest.display()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run_client(&argv);
    proxy.finish();
    assert_eq!(r.code, 0, "{r:?}\n{}", daemon.log());
    assert_eq!(
        std::fs::read(dest.join("hello.txt")).unwrap(),
        b"hello world\n"
    );
}

fn read_pair(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let r = |n: &str| {
        std::fs::read(dir.join(n)).unwrap_or_else(|e| panic!("{}/{n}: {e}", dir.display()))
    };
    (r("c2s.bin"), r("s2c.bin"))
}

fn meta(name: &str, protocol: u32) -> String {
    let v = stock_version().expect("stock rsync");
    format!(
        "scenario: {name}\n\
         recorded by: interop-tests/tests/interop/fixtures.rs (record_stock_fixtures) via src/bin/record_fixture.rs\n\
         stock rsync: {banner} (Debian package), both client and daemon\n\
         client command: rsync {opts} --protocol={protocol} rsync://127.0.0.1:PORT/mod/ dst/\n\
         daemon: rsync --daemon --no-detach --config=rsyncd.conf --port=PORT --address=127.0.0.1\n\
         rsyncd.conf: use chroot = no; [mod] path = <tmp>/mod, uid = 0, gid = 0 (defaults otherwise: read only)\n\
         tree: mod/ (dir 0755, mtime {HELLO_MTIME}) holding hello.txt (0644, 12 bytes \"hello world\\n\", mtime {HELLO_MTIME} = 2024-01-02T03:04:05Z), owner 0:0\n\
         pinned: mtimes as above, checksum seed 1 (--checksum-seed=1), --numeric-ids (no uid/gid name lists), \
         --no-inc-recursive (one file list); the run is deterministic: re-recording gives identical bytes\n\
         files: c2s.bin = raw bytes client -> daemon, s2c.bin = raw bytes daemon -> client (from the TCP connect to the close)\n",
        banner = v.banner,
        opts = PULL_OPTS.join(" "),
    )
}

/// Writes the committed fixtures (ignored: run with INTEROP_RECORD=1).
#[test]
#[ignore = "writes protocol/tests/fixtures/stock; run with INTEROP_RECORD=1"]
fn record_stock_fixtures() {
    interop_tests::require_rsync!();
    assert!(
        std::env::var_os("INTEROP_RECORD").is_some(),
        "set INTEROP_RECORD=1 to overwrite the fixtures"
    );
    for (name, protocol) in FIXTURES {
        let dir = fixture_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        record(protocol, &dir);
        std::fs::write(dir.join("meta.txt"), meta(name, protocol)).unwrap();
    }
}

/// Two recordings are byte-identical, and (with the rsync version that made
/// them) equal to the committed fixtures.
#[test]
fn stock_recordings_are_deterministic_and_match_committed() {
    interop_tests::require_rsync!();
    for (name, protocol) in FIXTURES {
        let tmp = tempfile::tempdir().unwrap();
        let (one, two) = (tmp.path().join("1"), tmp.path().join("2"));
        record(protocol, &one);
        record(protocol, &two);
        let first = read_pair(&one);
        assert!(
            first.0.starts_with(b"@RSYNCD: "),
            "{name}: c2s starts with the greeting"
        );
        assert!(
            first.1.starts_with(b"@RSYNCD: "),
            "{name}: s2c starts with the greeting"
        );
        assert_eq!(first, read_pair(&two), "{name}: two recordings differ");
        let committed = fixture_dir(name);
        let made_with = std::fs::read_to_string(committed.join("meta.txt")).unwrap_or_default();
        let banner = stock_version().expect("stock rsync").banner;
        if made_with.contains(&banner) {
            assert!(
                first == read_pair(&committed),
                "{name}: stock rsync no longer produces the committed bytes"
            );
        } else {
            eprintln!("note: {name} was recorded with another rsync than {banner:?}; not compared");
        }
    }
}
