//! Access control: authentication, host ACLs, refused options, connection
//! limits, several listeners and module identities (pre-bitflip content).
//!
//! Where stock can run the same configuration the tests are differential;
//! what stock cannot do (our `daemon port`, per-host caps, the identity rule
//! on every route) is tested against our daemon alone, and where stock leaks
//! the test says so and asserts that we do not.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interop_tests::daemon::free_port;
use interop_tests::tree::{TreeBuilder, BASE_MTIME};
use interop_tests::{compare_case, differential, run_client, second_side, Case, Daemon, ModuleSpec, RunResult, Which};
use protocol::checksum::{auth_response, AuthDigest};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A small module tree, plus a directory for secrets and password files.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    etc: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::Builder::new().prefix("interop-access-").tempdir().expect("temp dir");
    let root = tmp.path().join("mod");
    let mut t = TreeBuilder::new(&root, 0o755, BASE_MTIME);
    t.file(b"a.txt", b"alpha\n", 0o644);
    t.dir(b"sub", 0o755);
    t.file(b"sub/b.txt", b"beta\n", 0o644);
    t.finish();
    let etc = tmp.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    Fixture { _tmp: tmp, root, etc }
}

impl Fixture {
    /// A file under `etc` with `mode` (root-owned, as the tests run as root).
    fn file(&self, name: &str, text: &str, mode: u32) -> String {
        let p = self.etc.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn module(&self, name: &str) -> ModuleSpec {
        ModuleSpec::new(name, &self.root)
    }
}

fn auth_module(f: &Fixture, secrets_mode: u32) -> ModuleSpec {
    let secrets = f.file("secrets", "# users\nalice:wonderland\nbob:builder\n@root:grouppw\n", secrets_mode);
    f.module("auth").with("auth users", "alice, bob:ro, carol:deny, @root").with("secrets file", &secrets)
}

/// Both sides must report the same exit code and `text` in stderr.
fn both_fail_with(case: &Case, code: i32, text: &str) {
    let (a, b) = differential(case);
    for r in [&a, &b] {
        assert_eq!(r.code, code, "{}", r.stderr);
        assert!(r.stderr.contains(text), "want {text:?} in {}", r.stderr);
    }
}

/// A raw daemon connection that has exchanged greetings.
struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn connect(port: u16, greeting: &str) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut raw = Raw { r: BufReader::new(s.try_clone().unwrap()), w: s };
        let hello = raw.line();
        assert!(hello.starts_with("@RSYNCD: "), "{hello:?}");
        raw.send(&format!("{greeting}\n"));
        raw
    }

    fn send(&mut self, s: &str) {
        self.w.write_all(s.as_bytes()).unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let _ = self.r.read_line(&mut l);
        l.trim_end_matches('\n').to_string()
    }

    /// Asks for `module`; returns the first line that is not motd text.
    fn module(&mut self, module: &str) -> String {
        self.send(&format!("{module}\n"));
        loop {
            let l = self.line();
            if l.is_empty() || l.starts_with('@') {
                return l;
            }
        }
    }

    /// Reads until EOF (or error); returns what was read.
    fn rest(&mut self) -> String {
        let mut v = Vec::new();
        let _ = self.r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
}

/// Log in with a hand-made greeting (digest list or none) and return the
/// daemon's answer to the response.
fn raw_login(port: u16, greeting: &str, user: &str, password: &str, digest: AuthDigest) -> String {
    let mut c = Raw::connect(port, greeting);
    let l = c.module("auth");
    let Some(challenge) = l.strip_prefix("@RSYNCD: AUTHREQD ") else { return l };
    let resp = auth_response(digest, password.as_bytes(), challenge.as_bytes());
    c.send(&format!("{user} {resp}\n"));
    c.line()
}

fn stock_daemon(modules: &[ModuleSpec], globals: &[(&str, &str)]) -> Daemon {
    let g: Vec<(String, String)> = globals.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Daemon::start(Which::Stock, modules, &g)
}

fn our_daemon(modules: &[ModuleSpec], globals: &[(&str, &str)]) -> Daemon {
    let g: Vec<(String, String)> = globals.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Daemon::start(Which::Ours, modules, &g)
}

// ---------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------

fn login_case(name: &str, f: &Fixture, module: ModuleSpec, user: &str, pwfile: &str, extra: &[&str]) -> Case {
    let url = format!("rsync://{user}@127.0.0.1:{{port}}/auth/");
    let pw = format!("--password-file={pwfile}");
    let mut args: Vec<&str> = vec!["-a", &pw];
    args.extend_from_slice(extra);
    args.push(&url);
    args.push("{dest}/");
    let _ = f;
    Case::new(name, vec![module]).args(&args)
}

#[test]
fn auth_right_password() {
    interop_tests::require_rsync!();
    let f = fixture();
    let pw = f.file("pw", "wonderland\n", 0o600);
    for (name, extra) in [("auth_ok", &[][..]), ("auth_ok_p30", &["--protocol=30"][..]), ("auth_ok_p29", &["--protocol=29"][..])]
    {
        let (a, _) = differential(&login_case(name, &f, auth_module(&f, 0o600), "alice", &pw, extra).expect_code(0));
        assert!(a.stderr.is_empty(), "{}", a.stderr);
    }
    // A group rule: root is a system user in group root; the @root line's password.
    let gpw = f.file("gpw", "grouppw\n", 0o600);
    differential(&login_case("auth_group", &f, auth_module(&f, 0o600), "root", &gpw, &[]).expect_code(0));
    // bob's rule is ":ro"; a pull works.
    let bpw = f.file("bpw", "builder\n", 0o600);
    differential(&login_case("auth_ro", &f, auth_module(&f, 0o600), "bob", &bpw, &[]).expect_code(0));
}

#[test]
fn auth_failures_look_alike() {
    interop_tests::require_rsync!();
    let f = fixture();
    let good = f.file("pw", "wonderland\n", 0o600);
    let bad = f.file("bad", "Wonderland\n", 0o600);
    let text = "@ERROR: auth failed on module auth\n";
    // Wrong password, unknown user, a :deny rule, the legacy digest with a wrong password.
    both_fail_with(&login_case("auth_wrong_pw", &f, auth_module(&f, 0o600), "alice", &bad, &[]), 5, text);
    both_fail_with(&login_case("auth_unknown_user", &f, auth_module(&f, 0o600), "mallory", &good, &[]), 5, text);
    both_fail_with(&login_case("auth_denied_user", &f, auth_module(&f, 0o600), "carol", &good, &[]), 5, text);
    both_fail_with(&login_case("auth_wrong_p29", &f, auth_module(&f, 0o600), "alice", &bad, &["--protocol=29"]), 5, text);
    // strict modes: an other-readable secrets file fails every login...
    both_fail_with(&login_case("auth_strict_modes", &f, auth_module(&f, 0o644), "alice", &good, &[]), 5, text);
    // ... and the daemon says why, in stock's words.
    let d = our_daemon(&[auth_module(&f, 0o644)], &[]);
    let r = run_client(&[
        "-a",
        &format!("--password-file={good}"),
        &format!("rsync://alice@127.0.0.1:{}/auth/", d.port),
        "/nonexistent-dest/",
    ]);
    assert_eq!(r.code, 5);
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.log().contains("secrets file must not be other-accessible (see strict modes option)"), "{}", d.log());
    // ... unless strict modes is off.
    let m = auth_module(&f, 0o644).with("strict modes", "no");
    differential(&login_case("auth_lax_modes", &f, m, "alice", &good, &[]).expect_code(0));
}

/// Every digest a client can choose, by hand-made greetings (the stock 3.2.7
/// client always offers its full list, so only sha512 is reachable with it):
/// stock and ours must accept the right answer and refuse a wrong one alike.
#[test]
fn auth_every_digest_raw() {
    interop_tests::require_rsync!();
    let f = fixture();
    let m = auth_module(&f, 0o600);
    let stock = stock_daemon(std::slice::from_ref(&m), &[]);
    let ours = Daemon::start(second_side(), std::slice::from_ref(&m), &[]);
    let cases: &[(&str, AuthDigest)] = &[
        ("@RSYNCD: 31.0 sha512 sha256 sha1 md5 md4", AuthDigest::Sha512),
        ("@RSYNCD: 31.0 sha256", AuthDigest::Sha256),
        ("@RSYNCD: 31.0 sha1 md5", AuthDigest::Sha1),
        ("@RSYNCD: 32.0 xxh128 md5", AuthDigest::Md5),
        ("@RSYNCD: 31.0 md4", AuthDigest::Md4),
        ("@RSYNCD: 30.0", AuthDigest::Md5),
        ("@RSYNCD: 29", AuthDigest::Md4Legacy),
        ("@RSYNCD: 27", AuthDigest::Md4Legacy),
    ];
    for &(greeting, digest) in cases {
        for d in [&stock, &ours] {
            let ok = raw_login(d.port, greeting, "alice", "wonderland", digest);
            assert_eq!(ok, "@RSYNCD: OK", "{} {greeting:?} {digest:?}", d.which.name());
            let bad = raw_login(d.port, greeting, "alice", "wonderlan", digest);
            assert_eq!(bad, "@ERROR: auth failed on module auth", "{} {greeting:?}", d.which.name());
        }
    }
    // Nothing in common.
    let a = raw_login(stock.port, "@RSYNCD: 31.0 blake3", "alice", "x", AuthDigest::Md5);
    let b = raw_login(ours.port, "@RSYNCD: 31.0 blake3", "alice", "x", AuthDigest::Md5);
    assert_eq!(a, b);
    assert!(b.starts_with("@ERROR: your client does not support one of our daemon-auth checksums:"), "{b}");
    // A response line without a space.
    for d in [&stock, &ours] {
        let mut c = Raw::connect(d.port, "@RSYNCD: 31.0 md5");
        assert!(c.module("auth").starts_with("@RSYNCD: AUTHREQD "));
        c.send("alice\n");
        assert_eq!(c.line(), "@ERROR: auth failed on module auth", "{}", d.which.name());
    }
}

/// Challenges are fresh per connection (stock's are hashed from time and
/// pid; ours come from the OS CSPRNG).
#[test]
fn auth_challenges_are_fresh() {
    let f = fixture();
    let d = our_daemon(&[auth_module(&f, 0o600)], &[]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let mut c = Raw::connect(d.port, "@RSYNCD: 31.0 md5");
        let l = c.module("auth");
        let ch = l.strip_prefix("@RSYNCD: AUTHREQD ").expect("challenge").to_string();
        assert_eq!(ch.len(), 22, "{ch}");
        assert!(seen.insert(ch), "challenge repeated");
    }
}

/// `auth digest` (3.5.0; stock 3.2.7 ignores it): a weaker negotiated digest
/// fails before any challenge is sent.
#[test]
fn auth_digest_floor() {
    let f = fixture();
    let d = our_daemon(&[auth_module(&f, 0o600).with("auth digest", "sha256")], &[]);
    let mut c = Raw::connect(d.port, "@RSYNCD: 31.0 md5 md4");
    assert_eq!(c.module("auth"), "@ERROR: auth failed on module auth");
    let mut c = Raw::connect(d.port, "@RSYNCD: 29");
    assert_eq!(c.module("auth"), "@ERROR: auth failed on module auth");
    assert_eq!(raw_login(d.port, "@RSYNCD: 31.0 sha256 md5", "alice", "wonderland", AuthDigest::Sha256), "@RSYNCD: OK");
    assert_eq!(raw_login(d.port, "@RSYNCD: 31.0 sha512", "alice", "wonderland", AuthDigest::Sha512), "@RSYNCD: OK");
    std::thread::sleep(Duration::from_millis(100));
    assert!(d.log().contains("is weaker than the required 'auth digest = sha256'"), "{}", d.log());
}

// ---------------------------------------------------------------------------
// hosts allow / hosts deny
// ---------------------------------------------------------------------------

fn acl_case(name: &str, f: &Fixture, params: &[(&str, &str)]) -> Case {
    let mut m = f.module("m");
    for (k, v) in params {
        m = m.with(k, v);
    }
    Case::new(name, vec![m]).args(&["-a", "{url}/", "{dest}/"])
}

#[test]
fn hosts_denials_use_stock_texts() {
    interop_tests::require_rsync!();
    let f = fixture();
    let denied = "@ERROR: access denied to m from localhost (127.0.0.1)\n";
    both_fail_with(&acl_case("allow_other_net", &f, &[("hosts allow", "10.0.0.0/8")]), 5, denied);
    both_fail_with(&acl_case("deny_me", &f, &[("hosts deny", "127.0.0.1")]), 5, denied);
    both_fail_with(&acl_case("deny_all", &f, &[("hosts deny", "*")]), 5, denied);
    both_fail_with(&acl_case("allow_v6_only", &f, &[("hosts allow", "::1")]), 5, denied);
    both_fail_with(&acl_case("allow_mismatch_deny_all", &f, &[("hosts allow", "10.0.0.1"), ("hosts deny", "*")]), 5, denied);
    // An unlisted module hides that it exists.
    both_fail_with(
        &acl_case("denied_unlisted", &f, &[("hosts allow", "10.0.0.0/8"), ("list", "no")]),
        5,
        "@ERROR: Unknown module 'm'\n",
    );
    // Without reverse lookups the host is UNDETERMINED; a module cannot turn
    // them off once the global setting has resolved the name at connect time.
    both_fail_with(
        &acl_case("denied_no_reverse", &f, &[("hosts deny", "127.0.0.0/8")]).global("reverse lookup", "no"),
        5,
        "@ERROR: access denied to m from UNDETERMINED (127.0.0.1)\n",
    );
    both_fail_with(
        &acl_case("denied_module_no_reverse", &f, &[("hosts deny", "127.0.0.0/8"), ("reverse lookup", "no")]),
        5,
        denied,
    );
}

#[test]
fn hosts_allowed_forms() {
    interop_tests::require_rsync!();
    let f = fixture();
    for (name, params) in [
        ("allow_exact", &[("hosts allow", "127.0.0.1")][..]),
        ("allow_cidr", &[("hosts allow", "10.0.0.0/8, 127.0.0.0/8")][..]),
        ("allow_netmask", &[("hosts allow", "127.0.0.0/255.0.0.0")][..]),
        ("allow_name", &[("hosts allow", "localhost")][..]),
        ("allow_name_wild", &[("hosts allow", "LOCAL*")][..]),
        ("allow_wins_over_deny", &[("hosts allow", "127.0.0.1"), ("hosts deny", "*")][..]),
        ("deny_other", &[("hosts deny", "10.0.0.0/8 192.0.2.1")][..]),
    ] {
        differential(&acl_case(name, &f, params).expect_code(0));
    }
}

/// Forms stock gets wrong or fails open on: ours only.
#[test]
fn hosts_better_than_stock() {
    let f = fixture();
    let mods = [
        f.module("mapped").with("hosts allow", "::ffff:127.0.0.1"),
        f.module("baddns").with("hosts deny", "does-not-resolve.invalid"),
        f.module("wild_deny").with("hosts deny", "*.invalid"),
    ];
    let d = our_daemon(&mods, &[]);
    // A v4-mapped rule matches the v4 client (stock compares families and fails).
    assert_eq!(Raw::connect(d.port, "@RSYNCD: 31.0 md5").module("mapped"), "@RSYNCD: OK");
    // A deny hostname that does not resolve denies (fails closed; CVE-2026-70452).
    assert_eq!(
        Raw::connect(d.port, "@RSYNCD: 31.0 md5").module("baddns"),
        "@ERROR: access denied to baddns from localhost (127.0.0.1)"
    );
    // A deny wildcard that does not match the confirmed name admits.
    assert_eq!(Raw::connect(d.port, "@RSYNCD: 31.0 md5").module("wild_deny"), "@RSYNCD: OK");
}

#[test]
fn malformed_host_tokens_stop_our_daemon() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    for bad in ["10.1", "10.0.0.0/33", "10.0.0.0/255.0", "@netgroup"] {
        let conf = dir.path().join("bad.conf");
        std::fs::write(&conf, format!("[m]\npath = {}\nhosts deny = {bad}\n", f.root.display())).unwrap();
        let (bin, _) = interop_tests::ours_binary();
        let out =
            std::process::Command::new(bin).arg(format!("--config={}", conf.display())).arg("--check-config").output().unwrap();
        assert!(!out.status.success(), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("hosts deny") && err.contains(bad), "{bad}: {err}");
    }
}

#[test]
fn listing_shows_listable_modules_regardless_of_acls() {
    interop_tests::require_rsync!();
    let f = fixture();
    let modules = vec![
        f.module("open").with("comment", "open"),
        f.module("fenced").with("comment", "fenced").with("hosts allow", "10.0.0.0/8"),
        f.module("secret").with("hosts allow", "10.0.0.0/8").with("list", "no"),
    ];
    let (a, _) = differential(&Case::new("acl_listing", modules).args(&["{root}"]).expect_code(0));
    assert!(a.stdout.contains("fenced         \tfenced\n"), "{}", a.stdout);
    assert!(!a.stdout.contains("secret"), "{}", a.stdout);
}

// ---------------------------------------------------------------------------
// refuse options
// ---------------------------------------------------------------------------

fn refuse_case(name: &str, f: &Fixture, refuse: &str, args: &[&str]) -> Case {
    let mut all: Vec<&str> = args.to_vec();
    all.push("{url}/");
    all.push("{dest}/");
    Case::new(name, vec![f.module("m").with("refuse options", refuse)]).args(&all)
}

#[test]
fn refuse_checksum_everywhere() {
    interop_tests::require_rsync!();
    let f = fixture();
    let c = "rsync: The server is configured to refuse --checksum (-c)\n";
    // Stock 3.2.7: the daemon exits after the message; the client's unread
    // data makes the connection reset, and the client exits 10.
    both_fail_with(&refuse_case("refuse_ac", &f, "checksum", &["-ac"]), 10, c);
    both_fail_with(&refuse_case("refuse_long", &f, "checksum", &["-r", "--checksum"]), 10, c);
    both_fail_with(&refuse_case("refuse_secluded", &f, "checksum", &["-s", "-rc"]), 10, c);
    both_fail_with(&refuse_case("refuse_short_name", &f, "c", &["-ac"]), 10, c);
    both_fail_with(
        &refuse_case("refuse_cc_wild", &f, "checksum*", &["-a", "--cc=md5"]),
        10,
        "rsync: The server is configured to refuse --checksum-choice\n",
    );
    both_fail_with(
        &refuse_case("refuse_archive_part", &f, "a", &["-a"]),
        10,
        "rsync: The server is configured to refuse --links (-l)\n",
    );
    both_fail_with(
        &refuse_case("refuse_compress", &f, "compress", &["-az"]),
        10,
        "rsync: The server is configured to refuse --compress (-z)\n",
    );
    both_fail_with(
        &refuse_case("refuse_no_long_name", &f, "D", &["-rD"]),
        10,
        "rsync: The server is configured to refuse --(null) (-D)\n",
    );
    // Exact "checksum" does not refuse --checksum-choice; never --checksum-seed.
    differential(&refuse_case("refuse_cc_exact", &f, "checksum", &["-a", "--cc=md5"]).expect_code(0));
    differential(&refuse_case("refuse_seed", &f, "checksum*", &["-a", "--checksum-seed=1"]).expect_code(0));
    differential(&refuse_case("refuse_allow_list", &f, "* !a !v !e", &["-av"]).expect_code(0));
}

// ---------------------------------------------------------------------------
// max connections, lock file, caps, timeouts
// ---------------------------------------------------------------------------

#[test]
fn max_connections_slot_held_by_a_stalled_client() {
    interop_tests::require_rsync!();
    let f = fixture();
    let m = f.module("one").with("max connections", "1");
    let mut results: Vec<RunResult> = Vec::new();
    for which in [Which::Stock, second_side()] {
        let d = Daemon::start(which, std::slice::from_ref(&m), &[]);
        let mut holder = Raw::connect(d.port, "@RSYNCD: 31.0 md5");
        assert_eq!(holder.module("one"), "@RSYNCD: OK");
        let dest = tempfile::tempdir().unwrap();
        let r = run_client(&["-a", &format!("rsync://127.0.0.1:{}/one/", d.port), dest.path().to_str().unwrap()]);
        assert_eq!(r.code, 5, "{}: {}", which.name(), r.stderr);
        assert!(r.stderr.contains("@ERROR: max connections (1) reached -- try again later\n"), "{}", r.stderr);
        drop(holder);
        results.push(r);
        // The slot comes back when the holder goes away.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = run_client(&["-a", &format!("rsync://127.0.0.1:{}/one/", d.port), dest.path().to_str().unwrap()]);
            if r.code == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "slot never freed: {}", r.stderr);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // A negative limit disables the module, with the same text.
    let m = f.module("off").with("max connections", "-1");
    let case = Case::new("max_conn_negative", vec![m]).args(&["-a", "{url}/", "{dest}/"]);
    both_fail_with(&case, 5, "@ERROR: max connections (-1) reached -- try again later\n");
}

#[test]
fn per_host_cap_and_separate_listener_capacity() {
    let f = fixture();
    let private_port = free_port();
    let mods = [f.module("pub"), f.module("priv").with("daemon port", &private_port.to_string())];
    let d = our_daemon(&mods, &[("max sessions per host", "2"), ("max sessions", "2")]);
    // Two stalled public clients fill the main listener...
    let _h1 = Raw::connect(d.port, "@RSYNCD: 31.0 md5");
    let _h2 = Raw::connect(d.port, "@RSYNCD: 31.0 md5");
    std::thread::sleep(Duration::from_millis(100));
    let mut third = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = String::new();
    let _ = third.read_to_string(&mut got);
    assert!(got.ends_with("@ERROR: max connections (2) reached -- try again later\n"), "{got:?}");
    // ... but the private listener has its own capacity.
    let mut p = Raw::connect(private_port, "@RSYNCD: 31.0 md5");
    assert_eq!(p.module("priv"), "@RSYNCD: OK");
}

/// A module `timeout` bounds the handshake: a client that stalls after
/// `@RSYNCD: OK` is dropped (3.5.0 does the same; 3.2.7 waits forever).
#[test]
fn module_timeout_bounds_a_stalled_handshake() {
    let f = fixture();
    let d = our_daemon(&[f.module("m").with("timeout", "2")], &[]);
    let mut c = Raw::connect(d.port, "@RSYNCD: 31.0 md5");
    assert_eq!(c.module("m"), "@RSYNCD: OK");
    let t = Instant::now();
    c.send("--server\0--sen");
    let _ = c.rest();
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(8), "{took:?}");
}

// ---------------------------------------------------------------------------
// Several listeners; module identity (pre-bitflip content)
// ---------------------------------------------------------------------------

/// The pre-bitflip tree: a public file, a 0640 file next to a public one,
/// and a 0750 pre-release directory.
fn bitflip_tree(root: &Path) {
    let mut t = TreeBuilder::new(root, 0o755, BASE_MTIME);
    t.file(b"README", b"public\n", 0o644);
    t.dir(b"rel", 0o755);
    t.file(b"rel/visible.txt", b"visible\n", 0o644);
    t.file(b"rel/hidden.iso", b"not yet\n", 0o640);
    t.dir(b"pre", 0o750);
    t.file(b"pre/f40.iso", b"release candidate\n", 0o644);
    t.dir(b"pre/sub", 0o755);
    t.file(b"pre/sub/notes.txt", b"notes\n", 0o644);
    t.finish();
}

fn public_module(root: &Path) -> ModuleSpec {
    ModuleSpec::new("pub", root)
        .with("uid", "nobody")
        .with("gid", "nogroup")
        .with("ignore nonreadable", "yes")
        .with("refuse options", "checksum")
}

fn secret_names(s: &str) -> Vec<&'static str> {
    ["hidden.iso", "f40.iso", "notes.txt", " pre\n", " pre/", "not yet", "release candidate"]
        .into_iter()
        .filter(|n| s.contains(n))
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    fn walk(base: &Path, d: &Path, v: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            v.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, v);
            }
        }
    }
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// Every way a name can reach a client, on a public module.
fn public_routes(port: u16, etc: &Path) -> Vec<(String, RunResult, Vec<String>)> {
    let url = |p: &str| format!("rsync://127.0.0.1:{port}/pub/{p}");
    let ff = etc.join("files-from");
    std::fs::write(&ff, "rel/hidden.iso\npre/f40.iso\npre/sub/notes.txt\nrel/visible.txt\n").unwrap();
    let ff = format!("--files-from={}", ff.display());
    let runs: Vec<(&str, Vec<String>)> = vec![
        ("recursive listing", vec!["-r".into(), "--list-only".into(), url("")]),
        ("direct file", vec!["--list-only".into(), url("rel/hidden.iso")]),
        ("direct dir", vec!["-r".into(), "--list-only".into(), url("pre/")]),
        ("direct below", vec!["--list-only".into(), url("pre/sub/notes.txt")]),
        ("glob", vec!["--list-only".into(), url("rel/*")]),
        ("glob top", vec!["-d".into(), "--list-only".into(), url("p*")]),
        ("relative", vec!["-R".into(), "--list-only".into(), url("pre/sub/notes.txt")]),
        ("pull", vec!["-a".into(), url("")]),
        ("files-from", vec!["-a".into(), ff.clone(), url("")]),
    ];
    let mut out = Vec::new();
    for (name, mut args) in runs {
        let dest = tempfile::tempdir().unwrap();
        let pull = args.iter().any(|a| a == "-a");
        if pull {
            args.push(format!("{}/", dest.path().display()));
        }
        let r = interop_tests::run_client_timeout(&args, interop_tests::CLIENT_TIMEOUT);
        let got = if pull { files_in(dest.path()) } else { Vec::new() };
        out.push((name.to_string(), r, got));
    }
    out
}

#[test]
fn public_and_private_modules_before_and_after_bitflip() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    bitflip_tree(&root);
    let etc = tmp.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let secrets = etc.join("secrets");
    std::fs::write(&secrets, "tier1:mirrorpw\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pw = etc.join("pw");
    std::fs::write(&pw, "mirrorpw\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let private_port = free_port();
    let private = ModuleSpec::new("pub0", &root)
        .with("daemon port", &private_port.to_string())
        .with("list", "no")
        .with("auth users", "tier1")
        .with("secrets file", secrets.to_str().unwrap())
        .with("hosts allow", "127.0.0.1");
    let d = our_daemon(&[public_module(&root), private], &[]);

    // Public: nothing of the 0640 file or the 0750 dir, by any route; the
    // public content still arrives by each route that names it.
    for (name, r, got) in public_routes(d.port, &etc) {
        let shows_visible = r.stdout.contains("visible.txt") || got.iter().any(|g| g.ends_with("visible.txt"));
        let names_public = !matches!(name.as_str(), "direct file" | "direct dir" | "direct below" | "relative" | "glob top");
        assert_eq!(shows_visible, names_public, "{name}: stdout {} files {got:?} stderr {}", r.stdout, r.stderr);
        // The client's own request may be echoed in an error; nothing else.
        let stderr = ["rel/hidden.iso", "pre/f40.iso", "pre/sub/notes.txt", "\"/pre\"", "\"pre\""]
            .iter()
            .fold(r.stderr.clone(), |t, echo| t.replace(echo, ""));
        let files: String = got.iter().map(|g| format!(" {g}\n")).collect();
        let leaks = secret_names(&format!("{}{}{}", r.stdout, stderr, files));
        assert!(leaks.is_empty(), "{name}: leaked {leaks:?}\nstdout: {}\nstderr: {}\nfiles: {got:?}", r.stdout, r.stderr);
    }
    // A name that exists but is hidden answers exactly like one that does not.
    let hidden = run_client(&["--list-only", &format!("rsync://127.0.0.1:{}/pub/rel/hidden.iso", d.port)]);
    let missing = run_client(&["--list-only", &format!("rsync://127.0.0.1:{}/pub/rel/missing.iso", d.port)]);
    assert_eq!(hidden.code, missing.code);
    assert_eq!(hidden.stderr.replace("hidden.iso", "X"), missing.stderr.replace("missing.iso", "X"));
    // The private module is not on the public port, nor the public one on the private port.
    assert_eq!(Raw::connect(d.port, "@RSYNCD: 31.0 md5").module("pub0"), "@ERROR: Unknown module 'pub0'");
    assert_eq!(Raw::connect(private_port, "@RSYNCD: 31.0 md5").module("pub"), "@ERROR: Unknown module 'pub'");
    let list = run_client(&[&format!("rsync://127.0.0.1:{private_port}/")]);
    assert!(!list.stdout.contains("pub"), "{}", list.stdout);

    // Private (authenticated, host-restricted, its own port): everything.
    let dest = tempfile::tempdir().unwrap();
    let r = run_client(&[
        "-a",
        &format!("--password-file={}", pw.display()),
        &format!("rsync://tier1@127.0.0.1:{private_port}/pub0/"),
        &format!("{}/", dest.path().display()),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(dest.path().join("pre/f40.iso")).unwrap(), b"release candidate\n");
    assert_eq!(std::fs::read(dest.path().join("rel/hidden.iso")).unwrap(), b"not yet\n");
    assert!(dest.path().join("pre/sub/notes.txt").exists());

    // Bitflip: the master opens the permissions; the next public connection
    // sees the content, without a restart.
    std::fs::set_permissions(root.join("pre"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(root.join("rel/hidden.iso"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let r = run_client(&["-a", &format!("rsync://127.0.0.1:{}/pub/", d.port), &format!("{}/", dest.path().display())]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(std::fs::read(dest.path().join("pre/f40.iso")).unwrap(), b"release candidate\n");
    assert_eq!(std::fs::read(dest.path().join("rel/hidden.iso")).unwrap(), b"not yet\n");
    assert_eq!(std::fs::read(dest.path().join("pre/sub/notes.txt")).unwrap(), b"notes\n");
    let r = run_client(&["--list-only", &format!("rsync://127.0.0.1:{}/pub/rel/*", d.port)]);
    assert!(r.stdout.contains("hidden.iso"), "{}", r.stdout);

    // Closing again hides content at once (open-time re-check), even where
    // the snapshot still says "readable".
    std::fs::set_permissions(root.join("pre"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let r = run_client(&["-a", &format!("rsync://127.0.0.1:{}/pub/pre/f40.iso", d.port), &format!("{}/", dest.path().display())]);
    assert!(!dest.path().join("f40.iso").exists(), "served content of a closed directory: {}", r.stderr);
}

/// Stock 3.2.7 with `ignore nonreadable = yes` still lists a 0640 file named
/// directly or by a glob (name, size, mtime leak); we do not.
#[test]
fn stock_leaks_by_direct_path_and_glob_we_do_not() {
    interop_tests::require_rsync!();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("tree");
    bitflip_tree(&root);
    let m = public_module(&root);
    let stock = stock_daemon(std::slice::from_ref(&m), &[]);
    let ours = our_daemon(std::slice::from_ref(&m), &[]);
    for path in ["rel/hidden.iso", "rel/*"] {
        let s = run_client(&["--list-only", &format!("rsync://127.0.0.1:{}/pub/{path}", stock.port)]);
        let o = run_client(&["--list-only", &format!("rsync://127.0.0.1:{}/pub/{path}", ours.port)]);
        assert!(s.stdout.contains("hidden.iso"), "stock no longer leaks {path}? {}", s.stdout);
        assert!(!o.stdout.contains("hidden.iso"), "{path}: {}", o.stdout);
    }
    // Recursion agrees with stock: both omit what nobody cannot read.
    let case = Case::new("ignore_nonreadable_recursive", vec![m]).args(&["-a", "{url}/", "{dest}/"]).expect_code(0);
    let out = compare_case(&case);
    assert!(out.mismatches.is_empty(), "{}", out.report("ignore_nonreadable_recursive"));
    let names: Vec<String> = out.b.tree.entries.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    assert!(!names.iter().any(|k| k.contains("pre") || k.contains("hidden")), "{names:?}");
}

#[test]
fn write_only_module_refuses_pulls() {
    let f = fixture();
    let d = our_daemon(&[f.module("drop").with("write only", "yes")], &[]);
    let dest = tempfile::tempdir().unwrap();
    let r = run_client(&["-a", &format!("rsync://127.0.0.1:{}/drop/", d.port), dest.path().to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("ERROR: module is write only\n"), "{}", r.stderr);
}

/// Implied refusals agree with stock, whatever the outcome.
#[test]
fn refuse_implied_options_like_stock() {
    interop_tests::require_rsync!();
    let f = fixture();
    for (name, refuse, args) in [
        ("refuse_delete", "delete", &["-r", "--delete"][..]),
        ("refuse_delete_excluded", "delete", &["-r", "--delete-excluded"][..]),
        ("refuse_partial_P", "partial", &["-rP"][..]),
        ("refuse_progress_P", "progress", &["-rP"][..]),
        ("refuse_inplace", "inplace", &["-r", "--inplace"][..]),
        ("refuse_partial_by_inplace", "partial", &["-r", "--inplace"][..]),
        ("refuse_times_by_a", "times", &["-a"][..]),
        ("refuse_wild_perms", "p*", &["-a"][..]),
        ("refuse_negated", "* !a !v !e", &["-av"][..]),
        ("refuse_negated_c", "* !a !v !e", &["-avc"][..]),
        ("refuse_compress_level", "compress", &["-r", "--compress-level=3"][..]),
        ("refuse_zc", "compress", &["-r", "--zc=zstd"][..]),
        ("refuse_dry_run_exact", "n", &["-rn"][..]),
        ("refuse_dry_run_wild", "*", &["-rn"][..]),
    ] {
        let mut args = args.to_vec();
        args.push("-t");
        let out = compare_case(&refuse_case(name, &f, refuse, &args));
        assert!(out.mismatches.is_empty(), "{}", out.report(name));
    }
}
