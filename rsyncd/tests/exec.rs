//! `early exec`, `pre-xfer exec`, `post-xfer exec`, `pid file` and the
//! daemon's access log lines, end to end: the daemon binary with an
//! rsyncd.conf, pulled from by the stock rsync client.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

fn start_with(conf: &Path, state: &Path, env: &[(&str, &str)]) -> Daemon {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rsyncd"));
    cmd.arg(format!("--config={}", conf.display()))
        .args(["--port=0", "--address=127.0.0.1", "--no-watch", "--state-dir"])
        .arg(state)
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let l = lines.next().expect("daemon exited early").unwrap();
        if let Some(a) = l.strip_prefix("rsyncd: listening on ") {
            break a.rsplit(':').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Daemon { child, port }
}

fn rsync(d: &Daemon, args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.replace("HOST", &format!("127.0.0.1:{}", d.port))).collect();
    Command::new("rsync").args(&args).stdin(Stdio::null()).output().expect("run rsync")
}

/// Waits until `p` exists with a complete content (hooks write after the
/// client may have exited).
fn wait_file(p: &Path) -> String {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(t) = std::fs::read_to_string(p) {
            if t.ends_with("END\n") {
                return t;
            }
        }
        assert!(Instant::now() < until, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `NAME=VALUE` lines of the RSYNC_* variables a hook wrote with `env`.
fn vars(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| l.starts_with("RSYNC_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Fixture {
    dir: tempfile::TempDir,
    root: PathBuf,
    out: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("tree");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("a.txt"), b"hello").unwrap();
    std::fs::write(root.join("sub/b.txt"), b"world").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    Fixture { dir, root, out }
}

/// A hook that records its environment, stdin and whether RSYNC_PID names a
/// thread of the daemon, into OUT/NAME.
fn recorder(out: &Path, name: &str) -> String {
    let f = out.join(name);
    format!(
        "{{ env; echo STDIN=$(cat); test -d /proc/$PPID/task/$RSYNC_PID && echo TASK=yes; echo END; }} > {}.tmp; mv {}.tmp {}",
        f.display(),
        f.display(),
        f.display()
    )
}

#[test]
fn hooks_get_stock_environment_and_pid_file_is_kept() {
    let fx = fixture();
    let (root, out) = (&fx.root, &fx.out);
    let log = fx.dir.path().join("rsyncd.log");
    let pid_file = fx.dir.path().join("rsyncd.pid");
    let conf = fx.dir.path().join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "pid file = {pid}\nlog file = {log}\nreverse lookup = no\n\n\
             [hooked]\n    path = {root}/\n    early exec = {early}\n    pre-xfer exec = {pre}\n    post-xfer exec = {post}\n\n\
             [fail]\n    path = {root}\n    pre-xfer exec = echo \"denied: $RSYNC_REQUEST\"; printf 'two\\r\\n'; exit 3\n    post-xfer exec = {postfail}\n\n\
             [early]\n    path = {root}\n    early exec = exit 1\n    post-xfer exec = {postearly}\n\n\
             [quoted]\n    path = {root}\n    pre-xfer exec = echo %RSYNC_MODULE_NAME% '%RSYNC_HOST_ADDR%' %HOME% %RSYNC_PID% > {out}/quoted; echo END >> {out}/quoted\n\n\
             [bad name]\n    path = {root}\n    pre-xfer exec = echo %RSYNC_MODULE_NAME% > {out}/never\n\n\
             [private]\n    path = {root}\n    hosts allow = 192.0.2.1\n",
            pid = pid_file.display(),
            log = log.display(),
            root = root.display(),
            early = recorder(out, "early"),
            pre = recorder(out, "pre"),
            post = recorder(out, "post"),
            postfail = recorder(out, "post-fail"),
            postearly = recorder(out, "post-early"),
            out = out.display(),
        ),
    )
    .unwrap();
    let d = start_with(&conf, &fx.dir.path().join("state"), &[("HOME", "/home/x")]);
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), format!("{}\n", d.child.id()));

    // A pull with early input: all three hooks run, with stock's variables.
    let early_input = fx.dir.path().join("early-input");
    std::fs::write(&early_input, b"secret-token").unwrap();
    let early_arg = format!("--early-input={}", early_input.display());
    let dest = fx.dir.path().join("dest");
    let r = rsync(&d, &["-a", &early_arg, "rsync://HOST/hooked/sub", "rsync://HOST/hooked/a*", dest.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let early = wait_file(&out.join("early"));
    let pre = wait_file(&out.join("pre"));
    let post = wait_file(&out.join("post"));
    let (e, p, q) = (vars(&early), vars(&pre), vars(&post));
    let common = |m: &BTreeMap<String, String>| {
        assert_eq!(m["RSYNC_MODULE_NAME"], "hooked");
        assert_eq!(m["RSYNC_MODULE_PATH"], root.display().to_string());
        assert_eq!(m["RSYNC_HOST_ADDR"], "127.0.0.1");
        assert_eq!(m["RSYNC_HOST_NAME"], "UNDETERMINED");
        assert_eq!(m["RSYNC_USER_NAME"], "");
    };
    common(&e);
    common(&p);
    common(&q);
    // One RSYNC_PID for the session: the thread serving it.
    assert_eq!(e["RSYNC_PID"], p["RSYNC_PID"]);
    assert_eq!(p["RSYNC_PID"], q["RSYNC_PID"]);
    assert!(early.contains("TASK=yes") && pre.contains("TASK=yes") && post.contains("TASK=yes"));
    assert_eq!(e["RSYNC_REQUEST"], "(NONE)");
    assert!(early.contains("STDIN=secret-token"), "{early}");
    assert!(!e.contains_key("RSYNC_ARG0") && !e.contains_key("RSYNC_EXIT_STATUS"));
    assert_eq!(p["RSYNC_REQUEST"], "hooked/sub hooked/a*");
    let args: Vec<&str> = (0..).map_while(|i| p.get(&format!("RSYNC_ARG{i}")).map(String::as_str)).collect();
    assert_eq!(args[..3], ["rsyncd", "--server", "--sender"]);
    assert_eq!(args[args.len() - 3..], [".", "sub", "a.txt"], "{args:?}");
    assert!(pre.contains("STDIN=\n"), "{pre}");
    assert!(!p.contains_key("RSYNC_EXIT_STATUS"));
    assert_eq!((q["RSYNC_EXIT_STATUS"].as_str(), q["RSYNC_RAW_STATUS"].as_str()), ("0", "0"));
    assert!(!q.contains_key("RSYNC_REQUEST") && !q.contains_key("RSYNC_ARG0"));

    // A failing pre-xfer exec: its output reaches the client as stock's
    // message, the transfer is refused, and the post-xfer exec sees exit 4.
    let r = rsync(&d, &["-a", "rsync://HOST/fail/", fx.dir.path().join("d2").to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(10));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.starts_with("pre-xfer exec returned failure (768):\ndenied: fail/\ntwo\n"), "{err}");
    assert!(!fx.dir.path().join("d2").exists());
    let pf = vars(&wait_file(&out.join("post-fail")));
    assert_eq!((pf["RSYNC_EXIT_STATUS"].as_str(), pf["RSYNC_RAW_STATUS"].as_str()), ("4", "1024"));

    // A failing early exec: "@ERROR: early exec failed"; post-xfer sees 255.
    let r = rsync(&d, &["rsync://HOST/early/"]);
    assert_eq!(r.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&r.stderr).starts_with("@ERROR: early exec failed\n"));
    let pe = vars(&wait_file(&out.join("post-early")));
    assert_eq!((pe["RSYNC_EXIT_STATUS"].as_str(), pe["RSYNC_RAW_STATUS"].as_str()), ("255", "65280"));

    // %VAR%: connection values quoted, the daemon's own variables verbatim,
    // RSYNC_PID (set only after expansion) left alone.
    let r = rsync(&d, &["rsync://HOST/quoted/"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(wait_file(&out.join("quoted")), "quoted 127.0.0.1 /home/x %RSYNC_PID%\nEND\n");

    // A value with shell syntax (here a space) refuses the session before any
    // hook runs.
    let r = rsync(&d, &["rsync://HOST/bad name/"]);
    assert_ne!(r.status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!out.join("never").exists());

    // Denials, unknown modules and listings are logged as stock logs them.
    let _ = rsync(&d, &["rsync://HOST/private/"]);
    let _ = rsync(&d, &["rsync://HOST/nonesuch/"]);
    let _ = rsync(&d, &["rsync://HOST/"]);
    let until = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.contains("module-list request") || Instant::now() > until {
            break t;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for want in [
        "] refusing to run shell hook: %RSYNC_MODULE_NAME% holds a shell metacharacter\n",
        "] pre-xfer exec returned failure (768):\n",
        "] rsync denied on module private from UNDETERMINED (127.0.0.1)\n",
        "] unknown module 'nonesuch' tried from UNDETERMINED (127.0.0.1)\n",
        "] module-list request from UNDETERMINED (127.0.0.1)\n",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }

    // A second daemon cannot take the locked pid file (stock: exit 11).
    let st = Command::new(env!("CARGO_BIN_EXE_rsyncd"))
        .arg(format!("--config={}", conf.display()))
        .args(["--port=0", "--address=127.0.0.1", "--no-watch", "--state-dir"])
        .arg(fx.dir.path().join("state2"))
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(11));
    assert!(
        String::from_utf8_lossy(&st.stderr)
            .contains(&format!("failed to lock pid file {}: Resource temporarily unavailable", pid_file.display())),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    // SIGTERM: the pid file goes.
    // SAFETY: kill() on our own child process; no memory effects.
    unsafe { libc::kill(d.child.id() as libc::pid_t, libc::SIGTERM) };
    let until = Instant::now() + Duration::from_secs(10);
    while pid_file.exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_file.exists(), "pid file removed on exit");
}

#[test]
fn no_xfer_exec_in_the_environment_skips_every_hook() {
    let fx = fixture();
    let conf = fx.dir.path().join("rsyncd.conf");
    std::fs::write(
        &conf,
        format!(
            "[m]\n    path = {}\n    pre-xfer exec = exit 1\n    post-xfer exec = touch {}/post\n",
            fx.root.display(),
            fx.out.display()
        ),
    )
    .unwrap();
    let d = start_with(&conf, &fx.dir.path().join("state"), &[("RSYNC_NO_XFER_EXEC", "1")]);
    let r = rsync(&d, &["-a", "rsync://HOST/m/", fx.dir.path().join("dest").to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!fx.out.join("post").exists());
}
