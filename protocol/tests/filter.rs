//! Filter decisions compared with what stock rsync actually transfers.
//!
//! Each case builds the same small tree, asks the installed `rsync` which
//! names it would send (`--dry-run --out-format=%n`), and walks the tree
//! with our [`FilterList`] the way a sender does (first match wins, an
//! excluded directory is not descended into). Local transfers exercise the
//! client-rule parser; a throw-away `rsync --daemon` exercises rules as they
//! arrive over the wire (old protocols included) and the daemon's own
//! module parameters. Tests skip with a message when `rsync` is missing.

use std::collections::BTreeSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use protocol::filter::{name_is_excluded, FilterDecision, FilterList};

/// `(name, full_name, is_dir) -> excluded?`
type Excluded<'a> = dyn Fn(&[u8], &[u8], bool) -> bool + 'a;

/// One daemon case: name, client options, rules as they arrive on the
/// wire, protocol, module path.
type DaemonCase<'a> = (&'a str, Vec<&'a str>, Vec<&'a str>, u8, &'a str);

fn have_rsync() -> bool {
    match Command::new("rsync").arg("--version").output() {
        Ok(o) if o.status.success() => true,
        _ => {
            eprintln!("SKIP: stock rsync is not installed; filter comparison tests not run");
            false
        }
    }
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("protocol-filter-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const FILES: &[&str] = &[
    "a.o",
    "a.c",
    "b.c",
    "b.bak",
    "bar",
    "bang",
    "per",
    "core",
    "foo~",
    "top",
    "x",
    "file1",
    "junk2",
    "keep/x.o",
    "keep/y.c",
    "sub/top",
    "sub/deep/top/f",
    "sub/bar",
    "junk/j",
    "src/lib/x.rs",
    "src/lib/x.o",
    "src/main.rs",
    "src/lib/deeper/y.o",
    "doc/readme",
    "doc/sub/readme",
    "doc/sub/bar",
    ".git/config",
    "data/a/b/c.txt",
    "data/b/c.txt",
    "data/x/a/b/c.txt",
    "data/x/keep.iso",
    "dir.o/inner",
    "top.iso",
];

fn build_tree(root: &Path) {
    for f in FILES {
        let p = root.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, f.as_bytes()).unwrap();
    }
    std::fs::create_dir_all(root.join("emptydir")).unwrap();
}

/// Names stock rsync lists, without the transfer root and trailing slashes.
fn parse_out(out: &[u8]) -> BTreeSet<String> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != ".")
        .collect()
}

/// Walk `dir` as a sender would: `prefix` is the module-relative path of
/// the transfer root ("" at the module root).
fn our_walk(
    dir: &Path,
    rel: &str,
    prefix: &str,
    excluded: &Excluded<'_>,
    out: &mut BTreeSet<String>,
) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel_name = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let full = if prefix.is_empty() {
            rel_name.clone()
        } else {
            format!("{prefix}/{rel_name}")
        };
        let is_dir = e.file_type().unwrap().is_dir();
        if excluded(rel_name.as_bytes(), full.as_bytes(), is_dir) {
            continue;
        }
        out.insert(rel_name.clone());
        if is_dir {
            our_walk(&e.path(), &rel_name, prefix, excluded, out);
        }
    }
}

fn run_rsync_raw(args: &[String]) -> Vec<u8> {
    let out = Command::new("rsync")
        .args(args)
        .env("CVSIGNORE", "")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rsync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn run_rsync(args: &[String]) -> BTreeSet<String> {
    parse_out(&run_rsync_raw(args))
}

/// Names from `--list-only` lines (`perms size date time name`).
fn list_only_names(out: &[u8]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in String::from_utf8_lossy(out).lines() {
        let mut rest = line;
        for _ in 0..4 {
            rest = rest.trim_start();
            rest = &rest[rest.find(' ').unwrap_or(rest.len())..];
        }
        let name = rest.trim_start();
        if !name.is_empty() && name != "." {
            names.insert(name.to_string());
        }
    }
    names
}

fn diff(case: &str, stock: &BTreeSet<String>, ours: &BTreeSet<String>) -> Option<String> {
    if stock == ours {
        return None;
    }
    let only_stock: Vec<_> = stock.difference(ours).collect();
    let only_ours: Vec<_> = ours.difference(stock).collect();
    Some(format!(
        "{case}: only stock sends {only_stock:?}; only we send {only_ours:?}"
    ))
}

#[test]
fn client_rules_match_stock_local_transfer() {
    if !have_rsync() {
        return;
    }
    let base = scratch("local");
    let tree = base.join("tree");
    build_tree(&tree);
    let dst = base.join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    // The sender of a local transfer sees "/"-modifier rules against the
    // absolute path without its leading slash.
    let abs = tree.to_string_lossy().trim_start_matches('/').to_string();

    let abs_rule = format!("-/ /{abs}/data/a");
    let abs_rule2 = format!("-/ {}/b", abs.rsplit('/').next().unwrap());
    let cases: Vec<(&str, Vec<String>, bool)> = vec![
        ("exclude-wild", vec!["- *.o".into()], false),
        (
            "include-dir-then-exclude",
            vec!["+ keep/".into(), "- *.o".into()],
            false,
        ),
        ("anchored", vec!["- /top".into()], false),
        ("unanchored", vec!["- top".into()], false),
        ("inner-slash", vec!["- lib/*.o".into()], false),
        ("inner-slash-literal", vec!["- a/b/c.txt".into()], false),
        ("anchored-inner", vec!["- /data/a/b".into()], false),
        ("anchored-starstar", vec!["- /data/a/**".into()], false),
        ("triple-star", vec!["- data/***".into()], false),
        (
            "triple-star-include-only",
            vec!["+ /src/***".into(), "- *".into()],
            false,
        ),
        ("starstar-prefix", vec!["- **/top".into()], false),
        ("starstar-infix", vec!["- src/**/*.o".into()], false),
        ("starstar-suffix", vec!["- doc/**".into()], false),
        ("dir-only", vec!["- junk/".into(), "- top/".into()], false),
        ("negate-dir-only", vec!["-! */".into()], false),
        ("negate-include", vec!["+! *.c".into(), "- *".into()], false),
        (
            "hide-show",
            vec!["S /doc/sub/bar".into(), "H bar".into(), "H /doc/sub".into()],
            false,
        ),
        (
            "protect-is-receiver-only",
            vec!["P per".into(), "-r x".into(), "-sr bang".into()],
            false,
        ),
        (
            "clear",
            vec!["- a.c".into(), "!".into(), "- b.bak".into()],
            false,
        ),
        (
            "clear-word",
            vec!["- a.c".into(), "clear".into(), "exclude b.c".into()],
            false,
        ),
        ("perishable", vec!["-p per".into()], false),
        (
            "classes",
            vec!["- *[0-9]*".into(), "- ?.c".into(), "- [!a-z]*".into()],
            false,
        ),
        (
            "dir-named-like-file",
            vec!["- *.o".into(), "+ dir.o/".into()],
            false,
        ),
        (
            "include-only-c",
            vec!["+ */".into(), "+ *.c".into(), "- *".into()],
            false,
        ),
        (
            "long-names-and-commas",
            vec!["include,p keep/***".into(), "exclude,/ *".into()],
            false,
        ),
        (
            "underscore-separator",
            vec!["-_*.bak".into(), "+_/data/".into(), "-_/data/*".into()],
            false,
        ),
        (
            "abs-modifier",
            vec![abs_rule.clone(), abs_rule2.clone()],
            false,
        ),
        ("cvs", vec![], true),
        (
            "cvs-after-include",
            vec!["+ core".into(), "+ *.o".into()],
            true,
        ),
        ("trailing-space-pattern", vec!["- bar ".into()], false),
    ];

    let mut failures = Vec::new();
    for (case, rules, cvs) in &cases {
        let mut args: Vec<String> = vec!["-r".into(), "--dry-run".into(), "--out-format=%n".into()];
        if *cvs {
            args.push("-C".into());
        }
        for r in rules {
            args.push(format!("--filter={r}"));
        }
        args.push(format!("{}/", tree.display()));
        args.push(format!("{}/", dst.display()));
        let stock = run_rsync(&args);

        let wire: Vec<Vec<u8>> = rules.iter().map(|r| r.as_bytes().to_vec()).collect();
        let mut list =
            FilterList::from_client_rules(&wire, 31).unwrap_or_else(|e| panic!("{case}: {e}"));
        if *cvs {
            list.add_cvs_excludes(31);
        }
        let mut ours = BTreeSet::new();
        let excluded = |name: &[u8], _full: &[u8], is_dir: bool| {
            let full = format!("{abs}/{}", String::from_utf8_lossy(name));
            list.check(name, full.as_bytes(), is_dir) == FilterDecision::Exclude
        };
        our_walk(&tree, "", "", &excluded, &mut ours);
        assert!(
            !stock.is_empty() || rules.iter().any(|r| r.contains('*')),
            "{case}: stock listed nothing"
        );
        if let Some(d) = diff(case, &stock, &ours) {
            failures.push(d);
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A stock daemon on a free port, killed on drop.
struct Daemon {
    child: Child,
    port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_daemon(base: &Path, tree: &Path) -> Daemon {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = base.join("rsyncd.conf");
    let text = format!(
        "use chroot = no\nread only = yes\nuid = 0\ngid = 0\npid file = {pid}\n\
         [mod]\npath = {tree}\n\
         [dmod]\npath = {tree}\n\
         filter = - src/lib/ + /doc/sub/readme - readme -r *.c\n\
         include = /data/x/ keep.iso\n\
         exclude = junk/ *.bak /top a/b *.iso /data/x/*\n",
        pid = base.join("rsyncd.pid").display(),
        tree = tree.display()
    );
    std::fs::write(&conf, text).unwrap();
    let child = Command::new("rsync")
        .args(["--daemon", "--no-detach", "--address=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--log-file={}", base.join("rsyncd.log").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon { child, port }
}

#[test]
fn wire_rules_and_daemon_params_match_stock_daemon() {
    if !have_rsync() {
        return;
    }
    let base = scratch("daemon");
    let tree = base.join("tree");
    build_tree(&tree);
    let d = start_daemon(&base, &tree);

    // (case, client options, rules as they arrive on the wire, protocol, module path)
    let cases: Vec<DaemonCase<'_>> = vec![
        (
            "p31-filters",
            vec!["--filter=- /top", "--filter=-! */", "--filter=+ *.c"],
            vec!["- /top", "-! */", "+ *.c"],
            31,
            "mod/",
        ),
        (
            "p31-exclude-include",
            vec!["--exclude=*.o", "--include=keep/", "--exclude=/data/a"],
            vec!["- *.o", "+ keep/", "- /data/a"],
            31,
            "mod/",
        ),
        (
            "p29",
            vec!["--protocol=29", "--exclude=*.o", "--filter=-! */"],
            vec!["- *.o", "-! */"],
            29,
            "mod/",
        ),
        (
            "p28-old-form",
            vec![
                "--protocol=28",
                "--exclude=*.o",
                "--include=keep/",
                "--exclude=junk/",
            ],
            vec!["*.o", "+ keep/", "junk/"],
            28,
            "mod/",
        ),
        (
            "p27-old-form",
            vec!["--protocol=27", "--exclude=**/top", "--exclude=doc/"],
            vec!["**/top", "doc/"],
            27,
            "mod/",
        ),
        (
            "p31-subdir-anchored",
            vec!["--filter=- /a", "--filter=- b/c.txt"],
            vec!["- /a", "- b/c.txt"],
            31,
            "mod/data/",
        ),
        ("p31-cvs", vec!["-C"], vec![], 31, "mod/"),
        ("p29-cvs", vec!["--protocol=29", "-C"], vec![], 29, "mod/"),
        ("daemon-params", vec![], vec![], 31, "dmod/"),
        ("daemon-params-subdir", vec![], vec![], 31, "dmod/data/"),
        ("daemon-params-src", vec![], vec![], 31, "dmod/src/"),
        (
            "daemon-and-client",
            vec!["--filter=+ *.bak", "--filter=- doc/"],
            vec!["+ *.bak", "- doc/"],
            31,
            "dmod/",
        ),
    ];

    let daemon_list = FilterList::from_daemon_params(
        &[b"- src/lib/ + /doc/sub/readme - readme -r *.c".to_vec()],
        &[b"/data/x/ keep.iso".to_vec()],
        &[b"junk/ *.bak /top a/b *.iso /data/x/*".to_vec()],
    )
    .unwrap();
    let no_rules = FilterList::default();

    let mut failures = Vec::new();
    for (case, opts, wire, proto, path) in &cases {
        // --list-only shows exactly the sender's file list (a dry run's
        // %n output omits directories at protocol < 29).
        let mut args: Vec<String> = vec!["-r".into(), "--list-only".into()];
        args.extend(opts.iter().map(|s| s.to_string()));
        args.push(format!("rsync://127.0.0.1:{}/{path}", d.port));
        let stock = list_only_names(&run_rsync_raw(&args));

        let wire: Vec<Vec<u8>> = wire.iter().map(|r| r.as_bytes().to_vec()).collect();
        let mut client =
            FilterList::from_client_rules(&wire, *proto).unwrap_or_else(|e| panic!("{case}: {e}"));
        if opts.contains(&"-C") {
            client.add_cvs_excludes(*proto);
        }
        let (module, sub) = path.split_once('/').unwrap();
        let daemon = if module == "dmod" {
            &daemon_list
        } else {
            &no_rules
        };
        let prefix = sub.trim_end_matches('/');
        let mut ours = BTreeSet::new();
        let excluded = |name: &[u8], full: &[u8], is_dir: bool| {
            name_is_excluded(daemon, &client, name, full, is_dir)
        };
        our_walk(&tree.join(prefix), "", prefix, &excluded, &mut ours);
        assert!(!stock.is_empty(), "{case}: stock listed nothing");
        if let Some(dd) = diff(case, &stock, &ours) {
            failures.push(dd);
        }
    }
    drop(d);
    let _ = std::fs::remove_dir_all(&base);
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
