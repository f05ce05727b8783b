//! More error paths: pushes to a read-only module, refused options, access
//! control, and bogus greetings from a raw TCP client (compared byte for byte).
//! The `-A`/`-X` checks are ours-only: stock supports them, ours refuses them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use interop_tests::{differential, run_client, second_side, Case, Daemon, ModuleSpec, Which};

use crate::common::{cases, edge};

fn push(name: &str, module: ModuleSpec, opts: &[&str], code: i32) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("pushed"), b"data\n").unwrap();
    let from = format!("{}/", src.path().display());
    let mut args: Vec<&str> = opts.to_vec();
    args.extend_from_slice(&[&from, "{url}/"]);
    let (a, _) = differential(&Case::new(name, vec![module]).args(&args).expect_code(code));
    assert!(
        a.stderr.contains("ERROR: module is read only"),
        "{}",
        a.stderr
    );
    assert!(!a.stderr.is_empty());
    // Nothing may have been written into the module.
    assert!(!edge().path.join("pushed").exists());
}

/// What a daemon sends when a raw client connects, reads the greeting,
/// sends `bytes`, and reads until the daemon closes (or 10 s pass).
fn raw(which: Which, modules: &[ModuleSpec], bytes: &[u8]) -> (String, String) {
    let d = Daemon::start(which, modules, &[]);
    let s = TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut greeting = String::new();
    r.read_line(&mut greeting).expect("greeting");
    (&s).write_all(bytes).expect("send");
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            // A reset after the daemon's reply (it closed with unread input)
            // or the timeout ends the exchange; what arrived is compared.
            Err(_) => break,
        }
    }
    (greeting, String::from_utf8_lossy(&rest).into_owned())
}

fn raw_differential(bytes: &[u8], want: &str) {
    let modules = vec![edge()];
    let (ga, ra) = raw(Which::Stock, &modules, bytes);
    let (gb, rb) = raw(second_side(), &modules, bytes);
    assert_eq!(ra, want, "stock's reply to {bytes:?}");
    assert_eq!(
        rb,
        ra,
        "reply to {:?}: stock vs ours",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(gb, ga, "greeting: stock vs ours");
}

/// Ours only: `opt` is refused with a message naming `option` and a non-zero exit.
fn ours_refuses(opt: &str, option: &str) {
    if second_side() != Which::Ours {
        eprintln!("SKIP: ours-only check without our daemon");
        return;
    }
    let d = Daemon::start(Which::Ours, &[edge()], &[]);
    let dest = tempfile::tempdir().unwrap();
    let r = run_client(&[opt, &d.url("mod/"), &format!("{}/", dest.path().display())]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains(option),
        "no mention of {option:?}: {r:?}\n{}",
        d.log()
    );
    assert!(
        std::fs::read_dir(dest.path()).unwrap().next().is_none(),
        "files were written"
    );
}

cases! {
    push_read_only => push("push_ro", edge(), &["-a"], 1);
    push_read_only_p29 => push("push_ro_p29", edge(), &["-a", "--protocol=29"], 10);
    push_write_only_module_read_only => push("push_ro_explicit", edge().with("read only", "yes"), &["-av"], 1);
    ours_refuses_acls => ours_refuses("-aA", "acls");
    ours_refuses_xattrs => ours_refuses("-aX", "xattrs");
    raw_missing_subprotocol => raw_differential(b"@RSYNCD: 30\n", "@ERROR: your client omitted the subprotocol value: @RSYNCD: 30\n");
    raw_http_get => raw_differential(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "@ERROR: protocol startup error\n");
    raw_unknown_module => raw_differential(b"@RSYNCD: 31.0\nnosuch\n", "@ERROR: Unknown module 'nosuch'\n");
    raw_not_a_greeting => raw_differential(b"hello\n", "@ERROR: protocol startup error\n");
    #[ignore = "daemon differs: a protocol-20 client gets '@ERROR: protocol version mismatch -- client speaks 20, this server speaks 27-32'; stock lists the modules"]
    raw_list_modules_protocol_20 => raw_differential(b"@RSYNCD: 20.0\n#list\n", "mod            \t\n");
    raw_list_modules => raw_differential(b"@RSYNCD: 31.0\n#list\n", "mod            \t\n@RSYNCD: EXIT\n");
    raw_empty_module_line => raw_differential(b"@RSYNCD: 31.0\n\n", "mod            \t\n@RSYNCD: EXIT\n");
    refuse_options_compress => {
        let (a, _) = differential(
            &Case::new("refuse_compress", vec![edge().with("refuse options", "compress")])
                .args(&["-az", "{url}/order/", "{dest}/"])
                .expect_code(10),
        );
        assert!(a.stderr.contains("compress"), "{}", a.stderr);
    };
    refuse_options_delete_allows_plain_pull => {
        differential(
            &Case::new("refuse_delete_plain", vec![edge().with("refuse options", "delete")])
                .args(&["-ai", "{url}/order/", "{dest}/"])
                .expect_code(0),
        );
    };
    refuse_options_delete => {
        differential(
            &Case::new("refuse_delete", vec![edge().with("refuse options", "delete")])
                .args(&["-ai", "--delete", "{url}/order/", "{dest}/"])
                .expect_code(0),
        );
    };
    hosts_deny => {
        let (a, _) = differential(
            &Case::new("hosts_deny", vec![edge().with("hosts deny", "127.0.0.1")])
                .args(&["-a", "{url}/", "{dest}/"])
                .expect_code(5),
        );
        assert!(a.stderr.contains("@ERROR: access denied to mod from"), "{}", a.stderr);
    };
    unknown_module_listing => {
        differential(&Case::new("unknown_module_list", vec![edge()]).module("nosuch").args(&["--list-only", "{url}/"]).expect_code(5));
    };
    #[ignore = "daemon differs: ours refuses to start when a module path does not exist; stock starts and fails that module's connections (exit 5)"]
    missing_module_path => {
        let m = ModuleSpec::new("mod", std::path::Path::new("/nonexistent/interop/module"));
        differential(&Case::new("missing_module_path", vec![m]).args(&["-a", "{url}/", "{dest}/"]).expect_code(5));
    };
}
