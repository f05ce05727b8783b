//! Module parameters that change what a pull sends: `munge symlinks`,
//! `use chroot`, `numeric ids`, `outgoing chmod`, `dont compress`,
//! `ignore errors`, `max verbosity` and `open noatime`, stock against ours
//! with the same `rsyncd.conf`.
//!
//! The harness's global `use chroot = no` is overridden per module where a
//! case needs `use chroot = yes` (stock then really chroots into the module).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use interop_tests::tree::{self, TreeBuilder, BASE_MTIME};
use interop_tests::{
    compare_case, differential, run_client, second_side, Case, Daemon, ModuleSpec, RunResult, StatsCompare, TreeSnapshot, Which,
};

use crate::common::{cases, shared_root, stat_num};

/// Files of the module tree (`mod`), next to `outside/marker` (which no pull
/// may reveal):
///
/// ```text
/// a.txt 0644  exec.sh 0755  private 0600  setuid 4755  big.txt 0644 (compressible, 400 KB)
/// owned 0644 (uid/gid 1 "daemon", when run as root)
/// dir/ 0755: f 0644, sub/ 0711: g 0640     pdir/ 0700: h 0600
/// munged -> /rsyncd-munged/etc/passwd      munged_rel -> /rsyncd-munged/x/y
/// munged_bare -> /rsyncd-munged/           abs -> /etc/passwd
/// esc -> ../../etc                         rel -> dir/f
/// dlink -> dir                             adlink -> /dir
/// escdir -> ../outside
/// etc/passwd, etc/group: uid and gid 1 are "chrootuser" / "chrootgrp" here
/// ```
fn params_tree() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        shared_root("mod", |root: &Path| {
            let outside = root.parent().expect("parent").join("outside");
            std::fs::create_dir(&outside).unwrap();
            std::fs::write(outside.join("marker"), b"OUTSIDE-SECRET\n").unwrap();
            let mut t = TreeBuilder::new(root, 0o755, BASE_MTIME - 100);
            t.file(b"a.txt", b"alpha\n", 0o644);
            t.file(b"exec.sh", b"#!/bin/sh\n", 0o755);
            t.file(b"private", b"p\n", 0o600);
            t.file(b"setuid", b"s\n", 0o4755);
            let big: Vec<u8> = (0..12_000).flat_map(|i| format!("line {i} of a compressible file\n").into_bytes()).collect();
            t.file(b"big.txt", &big, 0o644);
            let owned = t.file(b"owned", b"o\n", 0o644);
            if tree::is_root() {
                std::os::unix::fs::chown(&owned, Some(1), Some(1)).unwrap();
            }
            t.dir(b"dir", 0o755);
            t.file(b"dir/f", b"f\n", 0o644);
            t.dir(b"dir/sub", 0o711);
            t.file(b"dir/sub/g", b"g\n", 0o640);
            t.dir(b"etc", 0o755);
            t.file(b"etc/passwd", b"root:x:0:0::/:/bin/sh\nchrootuser:x:1:1::/:/bin/false\n", 0o644);
            t.file(b"etc/group", b"root:x:0:\nchrootgrp:x:1:\n", 0o644);
            t.dir(b"pdir", 0o700);
            t.file(b"pdir/h", b"h\n", 0o600);
            t.symlink(b"munged", b"/rsyncd-munged/etc/passwd");
            t.symlink(b"munged_rel", b"/rsyncd-munged/x/y");
            t.symlink(b"munged_bare", b"/rsyncd-munged/");
            t.symlink(b"abs", b"/etc/passwd");
            t.symlink(b"esc", b"../../etc");
            t.symlink(b"rel", b"dir/f");
            t.symlink(b"dlink", b"dir");
            t.symlink(b"adlink", b"/dir");
            t.symlink(b"escdir", b"../outside");
            t.finish();
        })
    })
    .clone()
}

/// The tree as module `mod` with `params`.
fn m(params: &[(&str, &str)]) -> ModuleSpec {
    params.iter().fold(ModuleSpec::new("mod", &params_tree()), |s, (k, v)| s.with(k, v))
}

/// The tree as module `mod` served through a `path` of the form
/// `outer/./mod` (stock chroots to `outer`), with `params`.
fn split_m(params: &[(&str, &str)]) -> ModuleSpec {
    let root = params_tree();
    let outer = root.parent().expect("parent").display().to_string();
    let spec = ModuleSpec::new("mod", Path::new(&format!("{outer}/./mod")));
    params.iter().fold(spec, |s, (k, v)| s.with(k, v))
}

/// A differential pull of `mod` with `params` and client `args`, expecting `code`.
fn pull(name: &str, params: &[(&str, &str)], args: &[&str], code: i32) -> (RunResult, RunResult) {
    differential(&Case::new(name, vec![m(params)]).args(args).expect_code(code))
}

/// [`pull`], returning the destination tree (the same on both sides).
fn pull_tree(name: &str, params: &[(&str, &str)], args: &[&str]) -> TreeSnapshot {
    let out = compare_case(&Case::new(name, vec![m(params)]).args(args).expect_code(0));
    assert!(out.mismatches.is_empty(), "{}", out.report(name));
    out.b.tree
}

/// The targets of the symlinks `names` after a differential `-a` pull.
fn link_targets(name: &str, params: &[(&str, &str)], names: &[&str]) -> Vec<String> {
    let t = pull_tree(name, params, &["-a", "{url}/", "{dest}/"]);
    names
        .iter()
        .map(|n| String::from_utf8_lossy(t.get(n.as_bytes()).and_then(|e| e.link_target.as_deref()).expect("a symlink")).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// munge symlinks / use chroot: the tree as sent
// ---------------------------------------------------------------------------

const MUNGED: &[&str] = &["munged", "munged_rel", "munged_bare", "abs", "esc"];

/// Default with `use chroot = no`: munging is on, the prefix is stripped
/// (only when something follows it).
#[test]
fn munge_default_without_chroot_strips_the_prefix() {
    interop_tests::require_rsync!();
    assert_eq!(link_targets("munge_default", &[], MUNGED), ["etc/passwd", "x/y", "/rsyncd-munged/", "/etc/passwd", "../../etc"]);
}

/// Munging shortens the file list by the stripped prefixes on both sides
/// alike, and the total size still counts a link's on-disk length (stock's
/// `st_size`).  (Byte counts compare loosely: this tree's file list is a few
/// bytes smaller from our daemon with or without munging.)
#[test]
fn munge_stats_match_stock() {
    interop_tests::require_rsync!();
    let run = |name: &str, params: &[(&str, &str)]| {
        let case = Case::new(name, vec![m(params)]).args(&["-a", "--stats", "{url}/", "{dest}/"]).stats(StatsCompare::Loose);
        differential(&case.expect_code(0))
    };
    let (sa, so) = run("munge_stats", &[]);
    let (na, no) = run("nomunge_stats", &[("munge symlinks", "no")]);
    let flist = |r: &RunResult| stat_num(&r.stdout, "File list size: ");
    let total = |r: &RunResult| stat_num(&r.stdout, "Total file size: ");
    // Two links lose the 15-byte prefix ("/rsyncd-munged/" alone is kept).
    assert_eq!(flist(&na) - flist(&sa), 30, "stock");
    assert_eq!(flist(&no) - flist(&so), 30, "ours");
    assert_eq!([total(&sa), total(&so), total(&na), total(&no)], [total(&sa); 4]);
}

/// `path = outer/./mod` with `use chroot = yes`: the inner dir is not `/`,
/// so munging defaults to on; numeric ids too (a chroot module).
#[test]
fn chroot_split_path_defaults() {
    interop_tests::require_rsync!();
    let spec = split_m(&[("use chroot", "yes")]);
    let out = compare_case(&Case::new("chroot_split", vec![spec]).args(&["-ai", "{url}/", "{dest}/"]).expect_code(0));
    assert!(out.mismatches.is_empty(), "{}", out.report("chroot_split"));
    let e = out.b.tree.get(b"munged").expect("munged");
    assert_eq!(e.link_target.as_deref(), Some(&b"etc/passwd"[..]));
    if tree::is_root() {
        let args = ["-a", "--usermap=daemon:4321,chrootuser:5432", "--groupmap=daemon:4321,chrootgrp:5432", "{url}/", "{dest}/"];
        let out = compare_case(&Case::new("chroot_split_ids", vec![split_m(&[("use chroot", "yes")])]).args(&args).expect_code(0));
        assert!(out.mismatches.is_empty(), "{}", out.report("chroot_split_ids"));
        assert_eq!(out.b.tree.get(b"owned").map(|e| e.uid), Some(1));
    }
}

cases! {
    // Module-level "unset": stock decides by trying chroot("/") (root: yes).
    chroot_unset_as_root => {
        if tree::is_root() {
            owner_case("ids_chroot_unset", &[("use chroot", "unset")], &[], 1);
            assert_eq!(link_targets("chroot_unset_links", &[("use chroot", "unset")], &["munged"]), ["/rsyncd-munged/etc/passwd"]);
        }
    };
    munge_explicit_no => {
        assert_eq!(link_targets("munge_no", &[("munge symlinks", "no")], &["munged"]), ["/rsyncd-munged/etc/passwd"]);
    };
    munge_itemized => { pull("munge_itemized", &[], &["-ai", "{url}/", "{dest}/"], 0); };
    munge_single_link_arg => { pull("munge_single", &[], &["-ai", "{url}/munged", "{dest}/"], 0); };
    munge_no_inc_recursive => { pull("munge_no_inc", &[], &["-a", "--no-inc-recursive", "{url}/", "{dest}/"], 0); };
    munge_protocol_29 => { pull("munge_p29", &[], &["-a", "--protocol=29", "{url}/", "{dest}/"], 0); };
    munge_with_safe_links => { pull("munge_safe_links", &[], &["-ai", "--safe-links", "{url}/", "{dest}/"], 0); };
    // `use chroot = yes`: munging defaults to off, targets go out as they are.
    chroot_yes_keeps_targets => {
        let p = [("use chroot", "yes")];
        pull("chroot_yes", &p, &["-ai", "{url}/", "{dest}/"], 0);
        assert_eq!(link_targets("chroot_yes_links", &p, &["munged"]), ["/rsyncd-munged/etc/passwd"]);
    };
    chroot_yes_munge_yes => {
        let p = [("use chroot", "yes"), ("munge symlinks", "yes")];
        assert_eq!(link_targets("chroot_yes_munge", &p, &["munged"]), ["etc/passwd"]);
    };
    // Without -l the links are skipped, by name, on both sides.
    chroot_yes_no_links => { pull("chroot_yes_no_links", &[("use chroot", "yes")], &["-rtv", "{url}/", "{dest}/"], 0); };
    chroot_no_no_links => { pull("chroot_no_no_links", &[], &["-rtv", "{url}/", "{dest}/"], 0); };
    // A leaf symlink named as the argument is sent as a symlink.
    chroot_yes_escaping_leaf => { pull("chroot_yes_leaf", &[("use chroot", "yes")], &["-ai", "{url}/escdir", "{url}/adlink", "{dest}/"], 0); };
    chroot_no_escaping_leaf => { pull("chroot_no_leaf", &[], &["-ai", "{url}/escdir", "{url}/adlink", "{dest}/"], 0); };
    // `..` in an argument stays in the module in both modes.
    #[ignore = "daemon differs: a stock chroot module without /./ does not sanitise paths (change_dir \"/etc\" failed, then a connection reset); ours always sanitises (change_dir \"etc\" failed)"]
    chroot_yes_dotdot => { pull("chroot_yes_dotdot", &[("use chroot", "yes")], &["-ai", "{url}/../../etc/", "{dest}/"], 23); };
}

// ---------------------------------------------------------------------------
// Arguments through symlinked directories
// ---------------------------------------------------------------------------

/// Whatever `use chroot` says, our daemon never lists or sends anything
/// from outside the module, through any argument form.
#[test]
fn arguments_through_links_never_leave_the_module() {
    interop_tests::require_rsync!();
    for chroot in ["yes", "no"] {
        let d = Daemon::start(second_side(), &[m(&[("use chroot", chroot)])], &[]);
        for arg in ["escdir/", "escdir/marker", "escdir/.", "adlink/", "dlink/../escdir/", "esc/", "dlink/../../outside/"] {
            let dest = tempfile::tempdir().unwrap();
            let r = run_client(&["-rlv", &format!("{}/{arg}", d.url("mod")), &format!("{}/", dest.path().display())]);
            assert!(!r.stdout.contains("marker") && !r.stderr.contains("OUTSIDE"), "chroot={chroot} {arg}: {r:?}");
            // Inside a chroot, `adlink` -> `/dir` is the module's own `dir`
            // and `esc` -> `../../etc` clamps to the module's own `etc` (stock
            // serves both too); every other argument leaves the module.
            if !(chroot == "yes" && (arg == "adlink/" || arg == "esc/")) {
                assert_ne!(r.code, 0, "chroot={chroot} {arg}: {r:?}");
            }
            let found = walkdir(dest.path());
            assert!(found.iter().all(|p| !p.ends_with("marker")), "chroot={chroot} {arg}: {found:?}");
        }
    }
}

fn walkdir(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            out.push(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walkdir(&e.path()));
            }
        }
    }
    out
}

cases! {
    // Stock follows symlinks in an argument's directory part: with `use
    // chroot = no` inside the module only (Debian's 3.2.7 change_dir() uses
    // openat2 RESOLVE_BENEATH: escapes fail with EXDEV), with `use chroot =
    // yes` inside the chroot (absolute targets start at the module root).
    // Ours resolves the directory part in the snapshot with
    // `session::modopts::resolve_dir` (flist.rs `BuildCtx::change_dir`).
    arg_through_in_module_link => { pull("arg_dlink", &[], &["-ai", "{url}/dlink/", "{dest}/"], 0); };
    arg_through_absolute_link_chroot => { pull("arg_adlink_chroot", &[("use chroot", "yes")], &["-ai", "{url}/adlink/", "{dest}/"], 0); };
    arg_through_escaping_link_no_chroot => { pull("arg_escdir", &[], &["-ai", "{url}/escdir/", "{dest}/"], 23); };
}

// ---------------------------------------------------------------------------
// numeric ids
// ---------------------------------------------------------------------------

/// Pulls `owned` (uid/gid 1) with name-based maps for both the system's
/// names of id 1 ("daemon", to 4321) and the module's `etc/passwd` and
/// `etc/group` ones ("chrootuser" / "chrootgrp", to 5432): which applies
/// shows which names the daemon sent (none: the ids stay 1).
fn owner_case(name: &str, params: &[(&str, &str)], extra: &[&str], want: u32) {
    if !tree::is_root() {
        eprintln!("{name}: skipped (needs root to own files as uid 1)");
        return;
    }
    let mut args = vec!["-a", "--usermap=daemon:4321,chrootuser:5432", "--groupmap=daemon:4321,chrootgrp:5432"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["{url}/", "{dest}/"]);
    let t = pull_tree(name, params, &args);
    let e = t.get(b"owned").expect("owned");
    assert_eq!((e.uid, e.gid), (want, want), "{name}");
}

cases! {
    names_sent_by_default_without_chroot => owner_case("ids_default", &[], &[], 4321);
    numeric_ids_yes => owner_case("ids_numeric", &[("numeric ids", "yes")], &[], 1);
    numeric_ids_yes_no_inc_recursive => owner_case("ids_numeric_flat", &[("numeric ids", "yes")], &["--no-inc-recursive"], 1);
    numeric_ids_yes_protocol_29 => owner_case("ids_numeric_p29", &[("numeric ids", "yes")], &["--protocol=29"], 1);
    numeric_ids_yes_client_numeric_too => owner_case("ids_both_numeric", &[("numeric ids", "yes")], &["--numeric-ids"], 1);
    numeric_ids_default_with_chroot => owner_case("ids_chroot", &[("use chroot", "yes")], &[], 1);
    numeric_ids_with_chroot_flat => owner_case("ids_chroot_flat", &[("use chroot", "yes")], &["--no-inc-recursive"], 1);
    // A chrooted stock sender names ids from the chroot's etc/passwd and etc/group.
    numeric_ids_no_with_chroot => owner_case("ids_chroot_names", &[("use chroot", "yes"), ("numeric ids", "no")], &[], 5432);
    numeric_ids_no_with_chroot_flat => owner_case("ids_chroot_names_flat", &[("use chroot", "yes"), ("numeric ids", "no")], &["--no-inc-recursive"], 5432);
    numeric_ids_no_with_chroot_p29 => owner_case("ids_chroot_names_p29", &[("use chroot", "yes"), ("numeric ids", "no")], &["--protocol=29"], 5432);
}

// ---------------------------------------------------------------------------
// outgoing chmod
// ---------------------------------------------------------------------------

cases! {
    chmod_symbolic => { pull("chmod_symbolic", &[("outgoing chmod", "Dg+s,ug+w,Fo-w,+X")], &["-ai", "{url}/", "{dest}/"], 0); };
    chmod_octal_d_f => { pull("chmod_octal", &[("outgoing chmod", "D755,F644")], &["-ai", "{url}/", "{dest}/"], 0); };
    chmod_equals_and_sticky => { pull("chmod_eq", &[("outgoing chmod", "a=rX,u+w,Dt,u-s")], &["-ai", "{url}/", "{dest}/"], 0); };
    chmod_no_who_uses_umask => { pull("chmod_umask", &[("outgoing chmod", "=rwx,F-x")], &["-ai", "{url}/", "{dest}/"], 0); };
    chmod_without_perms => { pull("chmod_no_p", &[("outgoing chmod", "go-rwx")], &["-rlti", "{url}/", "{dest}/"], 0); };
    chmod_flat_list => { pull("chmod_flat", &[("outgoing chmod", "Fo-r,Da-x")], &["-ai", "--no-inc-recursive", "{url}/", "{dest}/"], 0); };
    chmod_protocol_29 => { pull("chmod_p29", &[("outgoing chmod", "F600")], &["-ai", "--protocol=29", "{url}/", "{dest}/"], 0); };
    // An invalid directive is logged and ignored.
    chmod_invalid_ignored => { pull("chmod_invalid", &[("outgoing chmod", "u+q")], &["-ai", "{url}/", "{dest}/"], 0); };
}

/// `outgoing chmod` really changed the modes (not just equally on both sides).
#[test]
fn chmod_changes_sent_modes() {
    interop_tests::require_rsync!();
    let t = pull_tree("chmod_changes", &[("outgoing chmod", "D700,F600")], &["-a", "{url}/", "{dest}/"]);
    let mode = |p: &str| t.get(p.as_bytes()).expect(p).mode;
    assert_eq!((mode("exec.sh"), mode("setuid"), mode("dir"), mode("dir/sub/g")), (0o600, 0o600, 0o700, 0o600));
    assert_eq!(mode("rel"), 0o777, "symlinks keep their mode");
}

// ---------------------------------------------------------------------------
// dont compress
// ---------------------------------------------------------------------------

/// A `--stats` pull of `big.txt` with `comp`; compressed sizes differ
/// between zlib and our deflate, so byte counts compare loosely and each
/// side is checked on its own: `dont compress = *` stores deflate data
/// (more bytes than the file), anything else compresses it.
fn compress_case(name: &str, dont: Option<&str>, comp: &[&str], stored: bool) {
    let params: Vec<(&str, &str)> = dont.map(|d| vec![("dont compress", d)]).unwrap_or_default();
    let mut args = vec!["-a", "--stats"];
    args.extend_from_slice(comp);
    args.extend_from_slice(&["{url}/big.txt", "{dest}/"]);
    let (a, b) = differential(&Case::new(name, vec![m(&params)]).args(&args).stats(StatsCompare::Loose).expect_code(0));
    let size = std::fs::metadata(params_tree().join("big.txt")).unwrap().len();
    for (who, r) in [("stock", &a), ("ours", &b)] {
        let got = stat_num(&r.stdout, "Total bytes received: ");
        if stored {
            assert!(got > size, "{name} {who}: {got} <= {size}\n{}", r.stdout);
        } else {
            assert!(got < size / 3, "{name} {who}: {got} not compressed\n{}", r.stdout);
        }
    }
}

cases! {
    dont_compress_star_zlib => compress_case("dc_star_zlib", Some("*"), &["--zc=zlib"], true);
    dont_compress_star_zlibx => compress_case("dc_star_zlibx", Some("*"), &["--zc=zlibx"], true);
    dont_compress_star_among_others => compress_case("dc_star_list", Some("*.gz * *.iso"), &["--zc=zlib"], true);
    dont_compress_star_z_protocol_29 => compress_case("dc_star_z_p29", Some("*"), &["-z", "--protocol=29"], true);
    dont_compress_star_zz => compress_case("dc_star_zz", Some("*"), &["-zz"], true);
    // -z negotiates zstd with a 3.2.7 client.
    dont_compress_star_z_negotiated => compress_case("dc_star_z", Some("*"), &["-z"], false);
    // zstd ignores the per-file level (stock's send_zstd_token uses the session level).
    dont_compress_star_zstd => compress_case("dc_star_zstd", Some("*"), &["--zc=zstd"], false);
    // Only the bare word `*` counts: matching names are compressed all the same (token.c's per-file matching is compiled out).
    dont_compress_matching_name => compress_case("dc_txt", Some("*.txt"), &["--zc=zlib"], false);
    dont_compress_default_list => compress_case("dc_default", None, &["--zc=zlib"], false);
}

cases! {
    dont_compress_star_tree => { pull("dc_tree", &[("dont compress", "*")], &["-ai", "--zc=zlib", "{url}/", "{dest}/"], 0); };
    dont_compress_star_delta => {
        differential(&Case::new("dc_delta", vec![m(&[("dont compress", "*")])])
            .args(&["-ai", "--zc=zlib", "--no-whole-file", "--stats", "{url}/", "{dest}/"])
            .prepare_dest(|d| {
                std::fs::write(d.join("big.txt"), b"line 0 of a compressible file\n").unwrap();
            })
            .stats(StatsCompare::Loose)
            .expect_code(0));
    };
}

// ---------------------------------------------------------------------------
// ignore errors
// ---------------------------------------------------------------------------

/// An argument whose directory is a file gives an I/O error ("change_dir
/// ... Not a directory"): without `ignore errors` the client skips its
/// deletions, with it the extra file is deleted.  Exit 23 either way.
fn ignore_errors_case(name: &str, params: &[(&str, &str)], extra_kept: bool) {
    let prep = |d: &Path| {
        std::fs::create_dir(d.join("dir")).unwrap();
        std::fs::write(d.join("dir/extra"), b"x\n").unwrap();
    };
    let (a, b) = differential(
        &Case::new(name, vec![m(params)])
            .args(&["-r", "--delete", "{url}/dir", "{url}/a.txt/x", "{dest}/"])
            .prepare_dest(prep)
            .expect_code(23),
    );
    for r in [&a, &b] {
        assert_eq!(r.stdout.contains("IO error encountered -- skipping file deletion"), extra_kept, "{name}: {r:?}");
    }
}

cases! {
    io_error_blocks_deletion => ignore_errors_case("ie_default", &[], true);
    ignore_errors_lets_deletion_run => ignore_errors_case("ie_yes", &[("ignore errors", "yes")], false);
    ignore_errors_protocol_29 => {
        differential(&Case::new("ie_p29", vec![m(&[("ignore errors", "yes")])])
            .args(&["-r", "--delete", "--protocol=29", "{url}/dir", "{url}/a.txt/x", "{dest}/"])
            .prepare_dest(|d| { std::fs::create_dir(d.join("dir")).unwrap(); std::fs::write(d.join("dir/extra"), b"x\n").unwrap(); })
            .expect_code(23));
    };
    ignore_errors_protocol_30 => {
        differential(&Case::new("ie_p30", vec![m(&[("ignore errors", "yes")])])
            .args(&["-r", "--delete", "--protocol=30", "{url}/dir", "{url}/a.txt/x", "{dest}/"])
            .prepare_dest(|d| { std::fs::create_dir(d.join("dir")).unwrap(); std::fs::write(d.join("dir/extra"), b"x\n").unwrap(); })
            .expect_code(23));
    };
}

// ---------------------------------------------------------------------------
// max verbosity
// ---------------------------------------------------------------------------

/// Lines only a sender emits at high verbosity.
fn server_lines(out: &str) -> Vec<&str> {
    out.lines().filter(|l| ["[sender]", "server_sender", "send_file", "total: matches="].iter().any(|p| l.starts_with(p))).collect()
}

/// `-vvv` output carries pids and times, so only the sender's lines are
/// compared: none at `max verbosity` <= 2.
fn verbosity_case(name: &str, params: &[(&str, &str)]) {
    let out = compare_case(&Case::new(name, vec![m(params)]).args(&["-avvv", "{url}/dir/", "{dest}/"]).expect_code(0));
    assert_eq!(out.a.raw.code, 0, "{}", out.report(name));
    assert_eq!(out.b.raw.code, 0, "{}", out.report(name));
    let (a, b) = (server_lines(&out.a.raw.stdout), server_lines(&out.b.raw.stdout));
    assert_eq!(a, b, "{}", out.report(name));
}

/// A delta pull with `-vv` into a stale copy: stock's sender reports its
/// `match.c` totals (matches, hash_hits, false_alarms, literal data) when
/// `max verbosity` lets -vv through; ours must report the same numbers.
fn verbosity_delta_totals(name: &str, max: &str) {
    let case = Case::new(name, vec![crate::common::edge().with("max verbosity", max)])
        .args(&["-avv", "--no-whole-file", "{url}/", "{dest}/"])
        .prepare_dest(crate::common::stale_copy)
        .expect_code(0);
    let out = compare_case(&case);
    assert_eq!((out.a.raw.code, out.b.raw.code), (0, 0), "{}", out.report(name));
    let totals = |o: &str| o.lines().filter(|l| l.starts_with("total: matches=")).map(str::to_string).collect::<Vec<_>>();
    let (a, b) = (totals(&out.a.raw.stdout), totals(&out.b.raw.stdout));
    eprintln!("{name}: stock {a:?} ours {b:?}");
    assert_eq!(a, b, "{}", out.report(name));
    if max == "2" {
        assert_eq!(a.len(), 1, "{}", out.report(name));
        assert!(!a[0].starts_with("total: matches=0 "), "no block matched: {}", a[0]);
    } else {
        assert!(a.is_empty(), "{}", out.report(name));
    }
}

cases! {
    max_verbosity_two_delta_totals => verbosity_delta_totals("mv_two_delta", "2");
    max_verbosity_one_delta_totals => verbosity_delta_totals("mv_one_delta", "1");
    max_verbosity_default_vv => { pull("mv_default_vv", &[], &["-avv", "{url}/dir/", "{dest}/"], 0); };
    max_verbosity_zero_vv => { pull("mv_zero_vv", &[("max verbosity", "0")], &["-avv", "{url}/dir/", "{dest}/"], 0); };
    max_verbosity_high_vv => { pull("mv_high_vv", &[("max verbosity", "9")], &["-avv", "{url}/dir/", "{dest}/"], 0); };
    max_verbosity_default_vvv => verbosity_case("mv_default_vvv", &[]);
    max_verbosity_one_vvv => verbosity_case("mv_one_vvv", &[("max verbosity", "1")]);
    max_verbosity_two_vvv => verbosity_case("mv_two_vvv", &[("max verbosity", "2")]);
    #[ignore = "daemon differs: at max verbosity >= 3 stock's sender sends its debug lines ([sender] make_file(...), send_file_list done, ...); ours sends none"]
    max_verbosity_three_vvv => verbosity_case("mv_three_vvv", &[("max verbosity", "3")]);
}

// ---------------------------------------------------------------------------
// open noatime
// ---------------------------------------------------------------------------

/// A private tree for atime checks (reads by other tests would disturb it).
fn atime_tree() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        shared_root("atime", |root: &Path| {
            let mut t = TreeBuilder::new(root, 0o755, BASE_MTIME);
            t.file(b"data", b"read me\n", 0o644);
            t.finish();
        })
    })
    .clone()
}

/// An atime far older than the mtime, which a plain read updates (relatime).
const OLD_ATIME: i64 = 1_000_000;

fn set_old_atime(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let times = [libc::timespec { tv_sec: OLD_ATIME, tv_nsec: 0 }, libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }];
    // SAFETY: a valid NUL-terminated path and a two-element timespec array.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }, 0);
}

/// Pulls `data` from each daemon in turn with `params` and client `extra`
/// options; with our daemon the source's atime must stay old iff `kept`.
///
/// Stock is run for the transfer only: upstream 3.2.7 adds `O_NOATIME` in
/// `do_open()`, but Debian's patched 3.2.7 opens a sender's files through
/// `secure_relative_open()` / `do_open_nofollow()`, which never add it, so
/// the oracle updates the atime whatever `open noatime` says.
fn atime_case(params: &[(&str, &str)], extra: &[&str], kept: bool) {
    let src = atime_tree();
    let file = src.join("data");
    if std::fs::read_to_string("/proc/self/mounts").unwrap_or_default().contains("noatime") {
        eprintln!("skipped: a file system here is mounted noatime");
        return;
    }
    let spec = params.iter().fold(ModuleSpec::new("atime", &src), |s, (k, v)| s.with(k, v));
    for which in [Which::Stock, second_side()] {
        let d = Daemon::start(which, std::slice::from_ref(&spec), &[]);
        set_old_atime(&file);
        let dest = tempfile::tempdir().unwrap();
        let url = format!("{}/data", d.url("atime"));
        let dest_s = format!("{}/", dest.path().display());
        let mut args = vec!["-a"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[&url, &dest_s]);
        let r = run_client(&args);
        assert_eq!(r.code, 0, "{}: {r:?}", which.name());
        assert_eq!(std::fs::read(dest.path().join("data")).unwrap(), b"read me\n");
        let atime = std::fs::metadata(&file).unwrap().atime();
        if which == Which::Ours {
            assert_eq!(atime == OLD_ATIME, kept, "{params:?} {extra:?}: atime {atime}");
        }
    }
}

// One test: the cases share the file whose atime they watch.
#[test]
fn open_noatime() {
    interop_tests::require_rsync!();
    atime_case(&[], &[], false);
    atime_case(&[("open noatime", "yes")], &[], true);
    // Unset: the client's --open-noatime decides; a module setting wins.
    atime_case(&[], &["--open-noatime"], true);
    atime_case(&[("open noatime", "no")], &["--open-noatime"], false);
}
