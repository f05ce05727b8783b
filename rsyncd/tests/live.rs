//! The live snapshot end to end, with the real daemon binary and the stock
//! rsync client: changes to the served tree reach the next pull (through
//! `rsyncd refresh`, through the fanotify watcher), a restart serves the last
//! snapshot at once and reconciles, a corrupt snapshot file is rebuilt and
//! never served.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{Daemon, BIN};

/// What a tree looks like to the module's identity: per relative path, the
/// type, permissions, ownership, mtime (not for symlinks) and content or link
/// target.
fn describe(root: &Path) -> BTreeMap<PathBuf, String> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let p = root.join(rel);
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        let ft = md.file_type();
        // The module identity of a root daemon is `nobody`: a directory it
        // cannot read and search is hidden with its subtree (all files here
        // are world-readable).
        if ft.is_dir() && md.mode() & 0o005 != 0o005 {
            return;
        }
        let d = if ft.is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(&p).expect("readlink").display()
            )
        } else {
            let kind = if ft.is_dir() { "dir" } else { "file" };
            let mut d = format!(
                "{kind} {:o} {}:{} mtime {}",
                md.mode() & 0o7777,
                md.uid(),
                md.gid(),
                md.mtime()
            );
            if ft.is_file() {
                d.push_str(&format!(
                    " {:?}",
                    String::from_utf8_lossy(&std::fs::read(&p).expect("read"))
                ));
            }
            d
        };
        out.insert(rel.to_path_buf(), d);
        if ft.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir") {
                let e = e.expect("entry");
                walk(root, &rel.join(e.file_name()), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// A stock `rsync -a` pull of the whole module into a fresh directory.
fn pull(port: u16) -> BTreeMap<PathBuf, String> {
    let dest = tempfile::tempdir().expect("tempdir");
    let out = Command::new("rsync")
        .args(["-a", "--timeout=30"])
        .arg(format!("rsync://127.0.0.1:{port}/mod/"))
        .arg(format!("{}/", dest.path().display()))
        .output()
        .expect("run rsync");
    assert!(
        out.status.success(),
        "rsync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    describe(dest.path())
}

fn diff(a: &BTreeMap<PathBuf, String>, b: &BTreeMap<PathBuf, String>) -> String {
    let mut s = String::new();
    for (k, v) in a {
        match b.get(k) {
            Some(w) if w == v => {}
            Some(w) => s.push_str(&format!("~ {}: pulled {v} / disk {w}\n", k.display())),
            None => s.push_str(&format!("+ {}: pulled {v}, not on disk\n", k.display())),
        }
    }
    for (k, w) in b {
        if !a.contains_key(k) {
            s.push_str(&format!("- {}: on disk {w}, not pulled\n", k.display()));
        }
    }
    s
}

/// Polls pulls until one equals the tree on disk (up to `within`); returns
/// the time it took, or the last difference.
fn pull_until_equal(port: u16, root: &Path, within: Duration) -> Result<Duration, String> {
    let t0 = Instant::now();
    loop {
        let d = diff(&pull(port), &describe(root));
        if d.is_empty() {
            return Ok(t0.elapsed());
        }
        if t0.elapsed() > within {
            return Err(d);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The starting tree.
fn make_tree(dir: &Path) -> PathBuf {
    let root = dir.join("mod");
    std::fs::create_dir_all(root.join("locked/inner")).unwrap();
    std::fs::create_dir_all(root.join("olddir/deep")).unwrap();
    std::fs::write(root.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(root.join("locked/secret"), b"s\n").unwrap();
    std::fs::write(root.join("locked/inner/x"), b"x\n").unwrap();
    std::fs::write(root.join("olddir/f"), b"f\n").unwrap();
    std::fs::write(root.join("olddir/deep/g"), b"g\n").unwrap();
    std::fs::write(root.join("becomes-link"), b"plain file\n").unwrap();
    std::fs::set_permissions(root.join("locked"), std::fs::Permissions::from_mode(0o750)).unwrap();
    root
}

/// Create a file, chmod a dir 0750 -> 0755, rename a dir, replace a file by
/// a symlink, delete a file, hard-link one.
fn mutate(root: &Path, round: u32) {
    std::fs::write(
        root.join(format!("new-{round}.txt")),
        format!("new {round}\n"),
    )
    .unwrap();
    let locked = root.join("locked");
    let mode = if round.is_multiple_of(2) {
        0o755
    } else {
        0o750
    };
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(mode)).unwrap();
    let (from, to) = if round.is_multiple_of(2) {
        ("olddir", "newdir")
    } else {
        ("newdir", "olddir")
    };
    std::fs::rename(root.join(from), root.join(to)).unwrap();
    let link = root.join("becomes-link");
    if std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink()
    {
        std::fs::remove_file(&link).unwrap();
        std::fs::write(&link, format!("file again {round}\n")).unwrap();
    } else {
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("a.txt", &link).unwrap();
    }
    if round > 0 {
        std::fs::remove_file(root.join(format!("new-{}.txt", round - 1))).unwrap();
    }
    let hl = root.join(format!("hard-{round}"));
    std::fs::hard_link(root.join("a.txt"), hl).unwrap();
}

#[test]
fn explicit_refresh_makes_the_next_pull_see_the_new_tree() {
    let t = tempfile::tempdir().unwrap();
    let root = make_tree(t.path());
    let state = t.path().join("state");
    // No watcher: only the explicit refresh can bring the changes in.
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    let mut served = describe(&root);
    assert_eq!(diff(&pull(d.port), &served), "", "initial pull");
    for round in 0..3 {
        // A change the old snapshot does not know of: not served before the
        // refresh. (A stale snapshot whose files vanished is another matter:
        // see `stale_snapshot_vanished_file_then_subdir`.)
        std::fs::write(root.join(format!("pending-{round}")), b"p\n").unwrap();
        assert_eq!(
            diff(&pull(d.port), &served),
            "",
            "round {round}: without a refresh the old snapshot is served"
        );
        mutate(&root, round);
        let summary = d.refresh(&state, None);
        assert!(summary.starts_with("full-rescan generation "), "{summary}");
        served = describe(&root);
        assert_eq!(
            diff(&pull(d.port), &served),
            "",
            "round {round}, after refresh"
        );
    }
    // A subtree refresh: only that subtree is re-read.
    let sub = if root.join("olddir").exists() {
        "olddir"
    } else {
        "newdir"
    };
    std::fs::write(root.join(sub).join("deep/h"), b"h\n").unwrap();
    let summary = d.refresh(&state, Some(&format!("{sub}/deep")));
    assert!(summary.starts_with("incremental generation "), "{summary}");
    assert_eq!(
        diff(&pull(d.port), &describe(&root)),
        "",
        "after subtree refresh"
    );
    // Unknown module and a path leaving the module are refused.
    for (module, path) in [("nope", None), ("mod", Some("../etc"))] {
        let out = Command::new(BIN)
            .arg("refresh")
            .arg(format!("--state-dir={}", state.display()))
            .arg(module)
            .args(path)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "refresh {module} {path:?} should fail"
        );
    }
    let mode = std::fs::metadata(state.join("control.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn fanotify_brings_changes_to_the_next_pull() {
    let t = tempfile::tempdir().unwrap();
    let root = make_tree(t.path());
    let state = t.path().join("state");
    let d = Daemon::start(&root, &state, &[]);
    if let Err(why) = d.watching() {
        println!("SKIPPED: fanotify watcher not available: {why}");
        return;
    }
    assert_eq!(diff(&pull(d.port), &describe(&root)), "", "initial pull");
    for round in 0..3 {
        mutate(&root, round);
        match pull_until_equal(d.port, &root, Duration::from_secs(5)) {
            Ok(took) => println!("round {round}: pull matched after {took:?}"),
            Err(diff) => panic!("round {round}: no match within 5 s:\n{diff}\n{}", d.log()),
        }
    }
}

#[test]
fn restart_serves_the_last_snapshot_at_once_and_reconciles() {
    let t = tempfile::tempdir().unwrap();
    let root = make_tree(t.path());
    let state = t.path().join("state");
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    assert!(d.log().contains("snapshot built"), "{}", d.log());
    mutate(&root, 0);
    d.refresh(&state, None);
    let served = describe(&root);
    assert_eq!(diff(&pull(d.port), &served), "");
    d.stop(libc::SIGTERM);

    // Changed while the daemon was down.
    mutate(&root, 1);
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    let log = d.log();
    assert!(log.contains("snapshot opened from disk"), "{log}");
    println!("restart to listening: {:?}", d.started);
    match pull_until_equal(d.port, &root, Duration::from_secs(5)) {
        Ok(took) => println!("reconciled after {took:?}"),
        Err(diff) => panic!("no reconcile within 5 s:\n{diff}\n{}", d.log()),
    }

    // A kill -9 leaves the last good file usable.
    d.stop(libc::SIGKILL);
    mutate(&root, 2);
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    assert!(d.log().contains("snapshot opened from disk"), "{}", d.log());
    pull_until_equal(d.port, &root, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("after kill -9:\n{e}"));
}

#[test]
fn corrupt_snapshot_files_are_rebuilt_never_served() {
    let t = tempfile::tempdir().unwrap();
    let root = make_tree(t.path());
    let state = t.path().join("state");
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    d.stop(libc::SIGTERM);
    for (round, damage) in ["flip", "truncate", "foreign"].into_iter().enumerate() {
        let snaps: Vec<PathBuf> = std::fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "snap"))
            .collect();
        assert_eq!(snaps.len(), 1, "{snaps:?}");
        let mut bytes = std::fs::read(&snaps[0]).unwrap();
        match damage {
            "flip" => {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x5a;
                bytes[mid + 1] ^= 0xff;
            }
            "truncate" => bytes.truncate(bytes.len() * 2 / 3),
            _ => bytes[..8].copy_from_slice(b"NOTASNAP"),
        }
        std::fs::write(&snaps[0], &bytes).unwrap();
        // The tree changed too: a served stale file would show at once.
        mutate(&root, round as u32);
        let d = Daemon::start(&root, &state, &["--no-watch"]);
        let log = d.log();
        assert!(
            log.contains("rejected") && log.contains("snapshot built"),
            "{damage}: {log}"
        );
        // Rebuilt from the tree before serving: the very first pull matches.
        assert_eq!(diff(&pull(d.port), &describe(&root)), "", "{damage}");
        d.stop(libc::SIGTERM);
    }
}

/// Known bug (session code, not the live layer): a pull from a stale
/// snapshot in which a file was replaced by a symlink, with a subdirectory
/// after it, must end with exit 24 ("file has vanished"). Regression: the
/// sender advanced its delta-encoded ndx state for the echo it then dropped
/// (the open failed), so the client misread the next index and aborted with
/// "received request to transfer non-regular file".
#[test]
fn stale_snapshot_vanished_file_then_subdir() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("mod");
    std::fs::create_dir_all(root.join("olddir/deep")).unwrap();
    std::fs::write(root.join("a.txt"), b"a\n").unwrap();
    std::fs::write(root.join("olddir/f"), b"f\n").unwrap();
    std::fs::write(root.join("olddir/deep/g"), b"g\n").unwrap();
    std::fs::write(root.join("becomes-link"), b"p\n").unwrap();
    let state = t.path().join("state");
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    std::fs::remove_file(root.join("becomes-link")).unwrap();
    std::os::unix::fs::symlink("a.txt", root.join("becomes-link")).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new("rsync")
        .args(["-a", "--timeout=30"])
        .arg(format!("rsync://127.0.0.1:{}/mod/", d.port))
        .arg(format!("{}/", dest.path().display()))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(24),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stock pull of the module into a fresh directory with extra client
/// options: (exit code, itemized stdout, pulled tree).
fn pull_with(port: u16, opts: &[&str]) -> (Option<i32>, String, BTreeMap<PathBuf, String>) {
    let dest = tempfile::tempdir().expect("tempdir");
    let out = Command::new("rsync")
        .args(["-a", "-i", "--timeout=30"])
        .args(opts)
        .arg(format!("rsync://127.0.0.1:{port}/mod/"))
        .arg(format!("{}/", dest.path().display()))
        .output()
        .expect("run rsync");
    // The client's generator and receiver both itemize: their lines
    // interleave differently from run to run, so they are compared sorted.
    // The line of the destination root itself depends on when the fresh
    // destination was made (same second as the module root or not): left out.
    let mut lines: Vec<&str> = std::str::from_utf8(&out.stdout)
        .expect("utf-8 output")
        .lines()
        .filter(|l| !l.ends_with(" ./"))
        .collect();
    lines.sort_unstable();
    (out.status.code(), lines.join("\n"), describe(dest.path()))
}

/// The `cached=` and `peak_live=` fields of the daemon's "file list sent"
/// lines, in order.
fn list_lines(log: &str) -> Vec<(bool, usize)> {
    log.lines()
        .filter(|l| l.contains("file list sent"))
        .map(|l| {
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .unwrap_or_else(|| panic!("no {name} in {l}"))
                    .to_string()
            };
            (
                field("cached=") == "true",
                field("peak_live=").parse().expect("peak_live"),
            )
        })
        .collect()
}

fn wait_list_lines(d: &Daemon, n: usize) -> Vec<(bool, usize)> {
    let t0 = Instant::now();
    loop {
        let l = list_lines(&d.log());
        if l.len() >= n || t0.elapsed() > Duration::from_secs(20) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Identical pulls share one encoded list: the second is replayed from the
/// cache and gives the client exactly what the first gave (output and
/// tree); other options, filters or protocols get their own lists; a new
/// generation is never answered from an older one's list.
#[test]
fn identical_pulls_replay_the_cached_list_and_changes_invalidate_it() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("mod");
    for d in 0..12 {
        let dir = root.join(format!("d{d:02}/sub"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..40 {
            std::fs::write(root.join(format!("d{d:02}/f{f}.txt")), format!("{d}/{f}\n")).unwrap();
            std::fs::write(dir.join(format!("g{f}.c")), format!("{d}/{f}\n")).unwrap();
        }
    }
    std::fs::hard_link(root.join("d00/f0.txt"), root.join("d11/hl")).unwrap();
    let state = t.path().join("state");
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    let want = describe(&root);
    let mut expected_lines = Vec::new();
    for (opts, label) in [
        (&[][..], "inc"),
        (&["--no-inc-recursive"][..], "flat"),
        (&["--protocol=29"][..], "proto29"),
        (&["-H"][..], "hardlinks"),
    ] {
        let first = pull_with(d.port, opts);
        let second = pull_with(d.port, opts);
        assert_eq!(first.0, Some(0), "{label}: first pull failed");
        assert_eq!(first.2, want, "{label}: first pull");
        assert_eq!(second.0, first.0, "{label}: exit code of the replayed list");
        assert_eq!(
            diff(&second.2, &first.2),
            "",
            "{label}: tree from the replayed list"
        );
        if second.1 != first.1 {
            let a: std::collections::BTreeSet<&str> = first.1.lines().collect();
            let b: std::collections::BTreeSet<&str> = second.1.lines().collect();
            panic!(
                "{label}: itemized output differs: only first {:?}, only second {:?}",
                a.difference(&b).collect::<Vec<_>>(),
                b.difference(&a).collect::<Vec<_>>()
            );
        }
        expected_lines.extend([false, true]);
    }
    // A filter changes the list: not answered from the unfiltered one.
    let (code, _, tree) = pull_with(d.port, &["--exclude=*.c"]);
    assert_eq!(code, Some(0));
    assert!(
        tree.keys().all(|k| k.extension().is_none_or(|e| e != "c")),
        "excluded files were sent"
    );
    assert!(tree.keys().any(|k| k.ends_with("f3.txt")));
    expected_lines.push(false);
    let got: Vec<bool> = wait_list_lines(&d, expected_lines.len())
        .iter()
        .map(|l| l.0)
        .collect();
    assert_eq!(got, expected_lines, "cache use per pull\n{}", d.log());

    // A change published as a new generation is what the next pull sees.
    std::fs::write(root.join("d03/new-file"), b"new\n").unwrap();
    std::fs::remove_file(root.join("d05/f7.txt")).unwrap();
    std::fs::set_permissions(root.join("d07"), std::fs::Permissions::from_mode(0o750)).unwrap();
    d.refresh(&state, None);
    let (code, _, tree) = pull_with(d.port, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(diff(&tree, &describe(&root)), "", "pull after the refresh");
    expected_lines.push(false);
    let got: Vec<bool> = wait_list_lines(&d, expected_lines.len())
        .iter()
        .map(|l| l.0)
        .collect();
    assert_eq!(got, expected_lines, "cache use per pull\n{}", d.log());
}

/// With incremental recursion the daemon sends directory sub-lists as the
/// client works through them, keeping a bounded window of unfinished lists
/// (stock's MIN/MAX_FILECNT_LOOKAHEAD), never the whole tree at once.
#[test]
fn incremental_lists_stream_in_a_bounded_window() {
    const DIRS: usize = 30;
    const PER_DIR: usize = 800;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("mod");
    for d in 0..DIRS {
        let dir = root.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..PER_DIR {
            std::fs::File::create(dir.join(format!("{f}"))).unwrap();
        }
    }
    let state = t.path().join("state");
    let d = Daemon::start(&root, &state, &["--no-watch"]);
    for opts in [&["-n"][..], &[][..]] {
        let (code, _, _) = pull_with(d.port, opts);
        assert_eq!(code, Some(0), "pull {opts:?}");
    }
    let lines = wait_list_lines(&d, 2);
    let total = DIRS * (PER_DIR + 1) + 1;
    for (cached, peak) in &lines {
        // At most MAX_FILECNT_LOOKAHEAD (10000) files, plus one list that
        // crossed it, are out before the client retires some.
        assert!(
            *peak <= 10_000 + PER_DIR,
            "peak window {peak} (cached {cached})\n{}",
            d.log()
        );
        assert!(
            *peak < total / 2,
            "whole list sent at once: {peak} of {total}"
        );
    }
}
