//! `early exec`, `pre-xfer exec` and `post-xfer exec` against stock: what
//! the client sees (message, exit code, tree) and the environment the hooks
//! get.
//!
//! Hook commands here use `%RSYNC_*%` only unquoted, where stock 3.2.7
//! (plain substitution) and our daemon (rsync 3.5.0's shell quoting, see
//! `rsyncd::exec`) give the shell the same words.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use interop_tests::{
    differential, run_client_timeout, Case, Daemon, ModuleSpec, Which, CLIENT_TIMEOUT,
};

use crate::common::edge;

/// A module on the shared edge tree with extra parameters.
fn hooked(params: &[(&str, &str)]) -> ModuleSpec {
    let mut m = edge();
    for (k, v) in params {
        m = m.with(k, v);
    }
    m
}

#[test]
fn pre_xfer_exec_success_transfers() {
    interop_tests::require_rsync!();
    differential(
        &Case::new(
            "pre_xfer_exec_success",
            vec![hooked(&[(
                "pre-xfer exec",
                "echo ignored output %RSYNC_MODULE_NAME%; test \"$RSYNC_ARG0\" = rsyncd",
            )])],
        )
        .args(&["-a", "{url}/", "{dest}/"])
        .expect_code(0),
    );
}

#[test]
fn pre_xfer_exec_failure_is_shown_to_the_client() {
    interop_tests::require_rsync!();
    let hook =
        "echo denied %RSYNC_MODULE_NAME% \"$RSYNC_REQUEST\" \"$RSYNC_ARG0\" \"$RSYNC_HOST_ADDR\"; \
                printf 'crlf\\r\\nlast line without newline'; exit 3";
    let (a, _) = differential(
        &Case::new(
            "pre_xfer_exec_failure",
            vec![hooked(&[("pre-xfer exec", hook)])],
        )
        .args(&["-a", "{url}/", "{dest}/"])
        .expect_code(10),
    );
    assert!(
        a.stderr.starts_with(
            "pre-xfer exec returned failure (768):\ndenied mod mod/ rsyncd 127.0.0.1\ncrlf\nlast line without newline\n"
        ),
        "{}",
        a.stderr
    );
}

#[test]
fn pre_xfer_exec_failure_without_output_and_refused_options() {
    interop_tests::require_rsync!();
    // No output: no colon.  The hook runs (and wins) even when the
    // arguments would be refused.
    differential(
        &Case::new(
            "pre_xfer_exec_silent_failure",
            vec![hooked(&[("pre-xfer exec", "exit 1")])],
        )
        .args(&["-a", "{url}/", "{dest}/"])
        .expect_code(10),
    );
    differential(
        &Case::new(
            "pre_xfer_exec_failure_refused_option",
            vec![hooked(&[
                ("pre-xfer exec", "echo no; exit 2"),
                ("refuse options", "checksum"),
            ])],
        )
        .args(&["-a", "--checksum", "{url}/", "{dest}/"])
        .expect_code(10),
    );
}

#[test]
fn early_exec_failure_is_an_error_line() {
    interop_tests::require_rsync!();
    differential(
        &Case::new(
            "early_exec_failure",
            vec![hooked(&[("early exec", "exit 1")])],
        )
        .args(&["-a", "{url}/", "{dest}/"])
        .expect_code(5),
    );
    differential(
        &Case::new(
            "early_exec_success",
            vec![hooked(&[("early exec", "true")])],
        )
        .args(&["-a", "{url}/", "{dest}/"])
        .expect_code(0),
    );
}

/// Waits for a hook to have written `p` (it ends with a line `END`).
fn wait_for(p: &Path) -> String {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(t) = std::fs::read_to_string(p) {
            if t.ends_with("END\n") {
                return t;
            }
        }
        assert!(Instant::now() < until, "{} never written", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The RSYNC_* variables a hook recorded, with the values that differ by
/// nature (pids, ports, the destination) masked.
fn recorded(text: &str, port: u16) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("RSYNC_"))
        .map(|(k, v)| {
            let v = if k == "RSYNC_PID" {
                "<PID>".to_string()
            } else {
                v.replace(&port.to_string(), "<PORT>")
            };
            (k.to_string(), v)
        })
        .collect()
}

/// Runs one pull per daemon with hooks that record their environment.
fn hook_envs(
    which: Which,
    args: &[&str],
) -> (BTreeMap<String, String>, BTreeMap<String, String>, i32) {
    let out = tempfile::tempdir().expect("hook output dir");
    let rec = |name: &str| {
        let f = out.path().join(name);
        format!(
            "{{ env | grep ^RSYNC_ | sort; echo END; }} > {f}.tmp; mv {f}.tmp {f}",
            f = f.display()
        )
    };
    let module = hooked(&[
        ("pre-xfer exec", &rec("pre")),
        ("post-xfer exec", &rec("post")),
    ]);
    let daemon = Daemon::start(which, &[module], &[]);
    let dest = tempfile::tempdir().expect("dest");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("{url}", &daemon.url("mod"))
                .replace("{dest}", dest.path().to_str().expect("utf-8"))
        })
        .collect();
    let r = run_client_timeout(&args, CLIENT_TIMEOUT);
    let pre = recorded(&wait_for(&out.path().join("pre")), daemon.port);
    // The post-xfer exec runs after the connection closed: wait for it
    // before the daemon is stopped.
    let post = recorded(&wait_for(&out.path().join("post")), daemon.port);
    drop(daemon);
    (pre, post, r.code)
}

#[test]
fn hooks_get_the_same_environment_as_stock() {
    interop_tests::require_rsync!();
    let second = interop_tests::second_side();
    // Globs that match one name each: stock lists a glob's matches in
    // readdir() order (filesystem dependent), ours in name order.
    for args in [
        &[
            "-a",
            "{url}/nested",
            "{url}/size-3276[8]",
            "{url}/with space.txt",
            "{dest}/",
        ][..],
        &["-rtv", "--exclude=*.tmp", "{url}/", "{dest}/"][..],
        &["-a", "-s", "{url}/order/", "{url}/a.?", "{dest}/"][..],
        &["-a", "{url}/nonexistent", "{dest}/"][..],
    ] {
        let (pre_a, post_a, code_a) = hook_envs(Which::Stock, args);
        let (pre_b, post_b, code_b) = hook_envs(second, args);
        assert_eq!(code_a, code_b, "exit codes for {args:?}");
        assert_eq!(pre_a, pre_b, "pre-xfer exec environment for {args:?}");
        assert_eq!(post_a, post_b, "post-xfer exec environment for {args:?}");
        assert!(
            pre_a.contains_key("RSYNC_ARG0") && post_a.contains_key("RSYNC_EXIT_STATUS"),
            "{pre_a:?} {post_a:?}"
        );
    }
}
