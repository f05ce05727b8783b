//! Hostile paths and argument vectors. With the stock 3.2.7 client, each
//! case runs against the stock daemon and ours (`differential`: same exit
//! code, same tree, same normalised output), without --trust-sender, so what
//! we send also passes the client's own checks. With the hand client:
//! argument floods and overlong arguments.

use std::time::Duration;

use interop_tests::hostile_client::{encode_args, open_module, pull_args, HostileClient};
use interop_tests::{differential, Case, ModuleSpec};

use crate::{assert_healthy, module_root, start};

fn case(name: &str, args: &[&str]) -> Case {
    Case::new(name, vec![ModuleSpec::new("mod", &module_root())]).args(args)
}

/// `..`, absolute and `//` paths in the arguments never leave the module;
/// exit codes and messages match stock.
#[test]
fn escaping_path_arguments_match_stock() {
    interop_tests::require_rsync!();
    for (i, path) in
        ["{url}/../../etc/passwd", "{url}/..", "{url}//etc/passwd", "{url}/sub/../../../etc", "{url}/./../mod/file.txt"].iter().enumerate()
    {
        differential(&case(&format!("escape{i}"), &["-a", path, "{dest}/"]));
    }
    // -R keeps the path as given; the dots must still not escape.
    differential(&case("escape-R", &["-aR", "{url}/sub/../../../etc/passwd", "{dest}/"]));
}

/// The same names in a `--files-from` list (client stdin, forwarded to the
/// daemon).
#[test]
fn escaping_files_from_names_match_stock() {
    interop_tests::require_rsync!();
    let list = b"../../etc/passwd\n/etc/passwd\n//etc/passwd\nsub/../../etc/hostname\nfile.txt\n./a1\n";
    differential(&case("files-from-escape", &["-a", "--files-from=-", "{url}/", "{dest}/"]).stdin(list));
    let list0 = b"../../etc/passwd\0/etc/passwd\0file.txt\0";
    differential(&case("files-from-escape0", &["-a", "--from0", "--files-from=-", "{url}/", "{dest}/"]).stdin(list0));
}

/// Globs, -R and overlapping arguments: the client accepts what we send
/// (no --trust-sender) and builds the same tree as from stock.
#[test]
fn globs_relative_and_overlaps_match_stock() {
    interop_tests::require_rsync!();
    differential(&case("glob", &["-a", "{url}/a*", "{dest}/"]));
    differential(&case("glob-R", &["-aR", "{url}/a*", "{dest}/"]));
    differential(&case("overlap", &["-a", "{url}/adir", "{url}/adir/b", "{url}/adir", "{dest}/"]));
    differential(&case("overlap-R", &["-aR", "{url}/adir", "{url}/adir/b", "{url}/adir", "{dest}/"]));
    // Same-named directories from different places (FLAG_DUPLICATE): one
    // merged sub-list with incremental recursion.
    differential(&case("dup-dirs", &["-a", "{url}/adir/b", "{url}/xdir/b", "{dest}/"]));
    differential(&case("dup-dirs-3", &["-a", "{url}/xdir/b", "{url}/adir/b", "{url}/xdir/b", "{dest}/"]));
    differential(&case("dup-dirs-noinc", &["-a", "--no-inc-recursive", "{url}/adir/b", "{url}/xdir/b", "{dest}/"]));
    differential(&case("files-from-overlap", &["-a", "--files-from=-", "{url}/", "{dest}/"]).stdin(b"adir\nadir/b\nadir/b/inner\nadir\n"));
}

/// More arguments than allowed, and one argument longer than stock's
/// per-line buffer: the daemon ends that session (no panic) and serves on.
#[test]
fn argument_floods_end_the_session() {
    interop_tests::require_rsync!();
    let d = start();
    let mut floods: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut many = pull_args(&["mod/"]);
    many.extend(std::iter::repeat_n(b"mod/".to_vec(), 20_000));
    floods.push(many);
    let mut long = pull_args(&[]);
    long.push([b"mod/".to_vec(), vec![b'a'; 100_000]].concat());
    floods.push(long);
    for args in floods {
        let mut s = open_module(d.port, "mod").expect("module");
        let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let _ = std::io::Write::write_all(&mut s, &encode_args(&refs));
        let e = interop_tests::hostile_client::drain(s, Duration::from_secs(30));
        assert!(e.closed, "{e:?}");
    }
    // An argument vector that never ends (no empty argument) is cut off too.
    let mut s = open_module(d.port, "mod").expect("module");
    let _ = std::io::Write::write_all(&mut s, &vec![b'x'; 1 << 20]);
    let e = interop_tests::hostile_client::drain(s, Duration::from_secs(30));
    assert!(e.closed, "{e:?}");
    // A normal hand-driven pull still works on this daemon.
    let c = HostileClient::pull(d.port, "mod", &pull_args(&["mod/"])).expect("pull");
    assert!(c.names().iter().any(|n| n == "file.txt"), "{:?}", c.names());
    assert_healthy(&d);
}
