//! Options a daemon always refuses (or bounds), with a stock 3.2.7 client
//! end to end, compared with the stock daemon where it behaves as 3.5.0
//! (security-notes.md b.4 and its appendix).

use interop_tests::{run_client, Daemon, ModuleSpec, Which};

use crate::{assert_healthy, module_root, start};

/// (option given with `-M`, text the client must print, exit code, whether
/// the installed stock daemon gives the same exit code and text).
const CASES: &[(&str, Option<&str>, i32, bool)] = &[
    ("--log-file=X", Some("rsync: The server is configured to refuse --log-file\n"), 10, true),
    ("--log-file-format=X", Some("rsync: The server is configured to refuse --log-file-format\n"), 10, true),
    // 3.2.7 has no --insecure-links ("unknown option"); 3.5.0 refuses it on
    // every daemon, which we follow.
    ("--insecure-links", Some("rsync: The server is configured to refuse --insecure-links\n"), 10, false),
    ("--copy-devices", Some("rsync: The server is configured to refuse --copy-devices\n"), 10, true),
    ("--write-devices", Some("rsync: The server is configured to refuse --write-devices\n"), 10, true),
    // main.c: do_server_sender(); the client exits with the daemon's code 1.
    ("--remove-source-files", Some("ERROR: --remove-source-files cannot be used with a read-only module\n"), 1, true),
    // Stock only bounds its own allocations with it; harmless for us.
    ("--max-alloc=1P", None, 0, true),
    ("--block-size=1G", Some("rsync: --block-size=1G is too large (max: 128.00K)\n"), 10, true),
    // 3.2.7 does not know --compress-threads; 3.5.0 parses it. We accept and
    // ignore it (no compression threads), so 1000 costs nothing.
    ("--compress-threads=1000", None, 0, false),
];

#[test]
fn always_refused_options_end_to_end() {
    interop_tests::require_rsync!();
    let ours = start();
    let stock = Daemon::start(Which::Stock, &[ModuleSpec::new("mod", &module_root())], &[]);
    for &(opt, text, code, compare) in CASES {
        let m = format!("-M{opt}");
        let run = |d: &Daemon| {
            let dest = tempfile::tempdir().unwrap();
            let r = run_client(&["-a", &m, &d.url("mod/"), &format!("{}/", dest.path().display())]);
            (r, dest)
        };
        let (r, _dest) = run(&ours);
        assert_eq!(r.code, code, "{opt}: {r:?}\n{}", ours.log());
        if let Some(t) = text {
            assert!(r.stderr.contains(t), "{opt}: {:?}", r.stderr);
        }
        if compare {
            let (s, _d2) = run(&stock);
            assert_eq!(s.code, r.code, "{opt}: stock {s:?}");
            if let Some(t) = text {
                assert!(s.stderr.contains(t), "{opt}: stock says {:?}", s.stderr);
            }
        }
    }
    assert_healthy(&ours);
}
