//! `fullfiletimelist` end to end: the daemon with an rsyncd.conf serving the
//! generated list of a tree with pre-bitflip (0750) content, pulled with the
//! stock client the way quick-fedora-mirror does (just the list, then a
//! checksum comparison with the previous copy).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sha1::{Digest, Sha1};

mod common;
use common::{Daemon, BIN};

fn rsync(args: &[&str], src: String, dest: &Path) -> String {
    let out = Command::new("rsync").args(args).arg(&src).arg(dest).output().expect("run rsync");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "rsync {args:?} {src} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

fn refresh(state: &Path, module: &str) -> String {
    let out =
        Command::new(BIN).arg("refresh").arg(format!("--state-dir={}", state.display())).arg(module).output().expect("run rsyncd refresh");
    assert!(out.status.success(), "refresh failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What quick-fedora-mirror keeps of a fetched list: its SHA1 and mtime.
fn fetched(dir: &Path, name: &str) -> (String, i64, String) {
    use std::os::unix::fs::MetadataExt;
    let p = dir.join(name);
    let bytes = std::fs::read(&p).unwrap();
    let mtime = std::fs::metadata(&p).unwrap().mtime();
    (format!("{:x}", Sha1::digest(&bytes)), mtime, String::from_utf8(bytes).unwrap())
}

/// `(type, path)` of every `[Files]` line.
fn files(list: &str) -> Vec<(String, String)> {
    let body = list.split("[Files]\n").nth(1).unwrap().split("\n\n").next().unwrap();
    body.lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 4, "{l:?}");
            assert!(f[0].parse::<i64>().is_ok() && f[2].parse::<u64>().is_ok(), "{l:?}");
            (f[1].to_string(), f[3].to_string())
        })
        .collect()
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn the_list_is_served_stable_and_tells_whether_anything_changed() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("tree");
    for d in ["pub/pool", "pub/repodata", "priv", "pub/.~tmp~"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for i in 0..300 {
        std::fs::write(root.join(format!("pub/pool/package-{i:04}.rpm")), format!("{i}\n")).unwrap();
    }
    std::fs::write(root.join("pub/repodata/repomd.xml"), "<repomd/>\n").unwrap();
    std::fs::write(root.join("priv/prerelease.iso"), "iso\n").unwrap();
    std::fs::write(root.join("g640"), "g\n").unwrap();
    std::fs::write(root.join("p600"), "p\n").unwrap();
    std::fs::write(root.join(".nfs0001"), "n\n").unwrap();
    std::fs::write(root.join("pub/.~tmp~/half"), "h\n").unwrap();
    std::os::unix::fs::symlink("pub/repodata", root.join("repodata")).unwrap();
    chmod(&root.join("priv"), 0o750);
    chmod(&root.join("g640"), 0o640);
    chmod(&root.join("p600"), 0o600);
    let root = root.canonicalize().unwrap();
    let conf = t.path().join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "[tier1]\npath = {p}\nuid = 0\ngid = 0\nfullfiletimelist = yes\n\
             [pub]\npath = {p}\nuid = nobody\ngid = nogroup\nfullfiletimelist name = fullfiletimelist-pub\n",
            p = root.display()
        ),
    )
    .unwrap();
    let state = t.path().join("state");
    let d = Daemon::start_config(&conf, &state, &["--no-watch"]);
    let url = |m: &str, f: &str| format!("rsync://127.0.0.1:{}/{m}/{f}", d.port);
    let lists = t.path().join("lists");
    std::fs::create_dir_all(&lists).unwrap();

    // It is in the module's top-level listing, as a regular file.
    let out = Command::new("rsync").arg(url("pub", "")).output().expect("run rsync");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(listing.lines().any(|l| l.starts_with("-rw-r--r--") && l.ends_with(" fullfiletimelist-pub")), "{listing}");

    // A stock pull of just that file, quick-fedora-mirror style.
    let ff = t.path().join("files-from");
    std::fs::write(&ff, "fullfiletimelist-tier1\n").unwrap();
    rsync(&["-a", "--no-dirs", "--relative", "--compress", &format!("--files-from={}", ff.display())], url("tier1", ""), &lists);
    rsync(&["-a"], url("pub", "fullfiletimelist-pub"), &lists);
    let (t1_sum, t1_mtime, t1) = fetched(&lists, "fullfiletimelist-tier1");
    let (pub_sum, pub_mtime, pubv) = fetched(&lists, "fullfiletimelist-pub");
    assert!(t1.starts_with("[Version]\n2\n\n[Files]\n") && t1.ends_with("\n\n[End]\n"), "{t1}");
    let sha = format!("{:x}", Sha1::digest(b"<repomd/>\n"));
    assert!(t1.contains(&format!("\n[Checksums SHA1]\n{sha}\tpub/repodata/repomd.xml\n\n[End]\n")), "{t1}");
    let t1_files = files(&t1);
    for want in [("d-", "priv"), ("f*", "priv/prerelease.iso"), ("f-", "g640"), ("l", "repodata"), ("d", "pub")] {
        assert!(t1_files.contains(&(want.0.to_string(), want.1.to_string())), "{want:?} not in\n{t1}");
    }
    assert_eq!(t1_files.len(), 300 + 8, "{t1}");
    for gone in ["p600", ".nfs0001", ".~tmp~", "fullfiletimelist"] {
        assert!(!t1_files.iter().any(|(_, p)| p.contains(gone)), "{gone} listed:\n{t1}");
    }
    // The public module lists no restricted entry at all.
    let pub_files = files(&pubv);
    assert!(pub_files.iter().all(|(ty, _)| ty == "f" || ty == "d" || ty == "l"), "{pubv}");
    assert!(!pub_files.iter().any(|(_, p)| p.contains("priv") || p == "g640"), "{pubv}");
    assert_eq!(pub_files.len(), 300 + 5, "{pubv}");
    // Its mtime is the newest timestamp listed.
    let newest =
        |l: &str| l.split("[Files]\n").nth(1).unwrap().lines().map_while(|x| x.split('\t').next()?.parse::<i64>().ok()).max().unwrap();
    assert!(pub_mtime >= newest(&pubv), "{pub_mtime} < {}", newest(&pubv));

    // A change only tier 1 sees: the tier-1 list changes (content and
    // mtime), the public list is byte-identical with the same mtime, so
    // quick-fedora-mirror skips the public module.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::write(root.join("priv/prerelease2.iso"), "iso2\n").unwrap();
    // (The two modules have stores of their own: both publish a new
    // generation.)
    for m in ["tier1", "pub"] {
        let r = refresh(&state, m);
        assert!(r.contains("generation") && !r.contains("unchanged"), "{m}: {r}");
    }
    let out = rsync(&["-a", "--itemize-changes"], url("pub", "fullfiletimelist-pub"), &lists);
    assert!(out.trim().is_empty(), "an unchanged list was transferred: {out}");
    assert_eq!(fetched(&lists, "fullfiletimelist-pub").0, pub_sum);
    assert_eq!(fetched(&lists, "fullfiletimelist-pub").1, pub_mtime);
    let log = d.log();
    let pub_builds: Vec<&str> = log.lines().filter(|l| l.contains("fullfiletimelist built") && l.contains("module=pub")).collect();
    assert_eq!(pub_builds.len(), 2, "{log}");
    assert!(pub_builds[1].contains("changed=false"), "{log}");
    // repomd.xml was read for the first build only.
    assert!(pub_builds[0].contains("sha1_reads=1") && pub_builds[1].contains("sha1_reads=0"), "{log}");
    rsync(&["-a", "-c"], url("tier1", "fullfiletimelist-tier1"), &lists);
    let (t1_sum2, t1_mtime2, t1b) = fetched(&lists, "fullfiletimelist-tier1");
    assert_ne!(t1_sum2, t1_sum);
    assert!(t1_mtime2 > t1_mtime, "{t1_mtime2} <= {t1_mtime}");
    assert!(files(&t1b).contains(&("f*".into(), "priv/prerelease2.iso".into())), "{t1b}");

    // A public change: the list is sent by the normal delta transfer
    // (most of the old copy matches) and its checksum tells the client.
    std::fs::write(root.join("pub/pool/package-new.rpm"), "new\n").unwrap();
    refresh(&state, "pub");
    let stats = rsync(&["-a", "--stats", "--no-whole-file"], url("pub", "fullfiletimelist-pub"), &lists);
    let matched: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("Matched data: "))
        .and_then(|v| v.split_whitespace().next())
        .map(|v| v.replace(',', "").parse().unwrap())
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(matched > 0, "no delta transfer: {stats}");
    let (pub_sum3, pub_mtime3, pub3) = fetched(&lists, "fullfiletimelist-pub");
    assert_ne!(pub_sum3, pub_sum);
    assert!(pub_mtime3 > pub_mtime);
    assert!(files(&pub3).contains(&("f".into(), "pub/pool/package-new.rpm".into())));
    // The served bytes equal the daemon's, and a whole-module pull carries it.
    let copy = t.path().join("copy");
    rsync(&["-a"], url("pub", ""), &copy);
    assert_eq!(std::fs::read(copy.join("fullfiletimelist-pub")).unwrap(), pub3.as_bytes());

    // A restart with nothing changed serves the same bytes and mtime.
    let log = d.stop(libc::SIGTERM);
    assert!(log.contains("fullfiletimelist built"), "{log}");
    let d = Daemon::start_config(&conf, &state, &["--no-watch"]);
    let again = t.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    rsync(&["-a"], format!("rsync://127.0.0.1:{}/pub/fullfiletimelist-pub", d.port), &again);
    let (s4, m4, _) = fetched(&again, "fullfiletimelist-pub");
    assert_eq!((s4, m4), (pub_sum3, pub_mtime3));
}
