//! Service-manager integration, as systemd drives it: readiness and reload
//! notifications on `$NOTIFY_SOCKET` (`Type=notify`), and socket activation
//! (a listening socket passed as fd 3 with `LISTEN_FDS` / `LISTEN_PID`).

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

mod common;
use common::{Daemon, BIN};

/// Generous: a loaded 2-core machine and a debug build.
const DEADLINE: Duration = Duration::from_secs(60);

fn recv(sock: &UnixDatagram) -> String {
    let mut b = vec![0u8; 4096];
    let n = sock.recv(&mut b).expect("a notification within the deadline");
    String::from_utf8(b[..n].to_vec()).unwrap()
}

#[test]
fn ready_after_start_and_reloading_then_ready_on_sighup() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("mod");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f"), b"f").unwrap();
    let conf = t.path().join("rsyncd.conf");
    std::fs::write(&conf, format!("uid = 0\ngid = 0\n[mod]\n  path = {}\n", root.display())).unwrap();
    let sock_path = t.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg(format!("--config={}", conf.display()))
        .args(["--port=0", "--address=127.0.0.1", "--no-watch"])
        .arg(format!("--state-dir={}", t.path().join("state").display()))
        .env("NOTIFY_SOCKET", &sock_path);
    let d = Daemon::start_cmd(cmd);
    let ready = recv(&sock);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=serving 1 module(s) on 1 listener(s)"), "{ready:?}");
    // The daemon is serving by then.
    let o = Command::new("rsync").arg(format!("rsync://127.0.0.1:{}/", d.port)).output().unwrap();
    assert!(o.status.success());

    d.signal(libc::SIGHUP);
    let reloading = recv(&sock);
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading:?}");
    let usec: u64 = reloading.lines().nth(1).unwrap().strip_prefix("MONOTONIC_USEC=").unwrap().parse().unwrap();
    assert!(usec > 0);
    let ready = recv(&sock);
    assert!(ready.starts_with("READY=1\nSTATUS=serving 1 module(s); configuration reloaded"), "{ready:?}");
}

#[test]
fn a_socket_passed_as_fd_3_is_served_without_binding() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("mod");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello"), b"activated").unwrap();
    // The test holds the listening socket, so the daemon could not bind
    // this port itself: serving it proves the passed socket is used.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let conf = t.path().join("rsyncd.conf");
    let hook_out = t.path().join("hook-env");
    std::fs::write(
        &conf,
        format!(
            "port = {port}\nuid = 0\ngid = 0\n[mod]\n  path = {}\n  pre-xfer exec = {{ env; grep SigBlk /proc/self/status; }} > {}\n",
            root.display(),
            hook_out.display()
        ),
    )
    .unwrap();
    // systemd's protocol: the socket at fd 3, LISTEN_FDS=1 and LISTEN_PID =
    // the daemon's pid, which only the process itself knows before exec:
    // a shell sets it to its own pid ($$) and execs the daemon.
    let fd = listener.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
        .arg(BIN)
        .arg(format!("--config={}", conf.display()))
        .arg(format!("--state-dir={}", t.path().join("state").display()))
        .arg("--no-watch")
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "rsync");
    // SAFETY: between fork and exec the closure only calls dup2 and fcntl
    // (async-signal-safe) on descriptors that exist.
    unsafe {
        cmd.pre_exec(move || {
            if fd != 3 && libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Inherited across exec (a dup2 to the same number keeps CLOEXEC).
            if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let d = Daemon::start_cmd(cmd);
    assert_eq!(d.port, port, "{}", d.log());
    assert!(d.log().contains("listening socket from systemd"), "{}", d.log());
    let dest = t.path().join("dest");
    let o =
        Command::new("rsync").args(["-a", &format!("rsync://127.0.0.1:{port}/mod/"), &format!("{}/", dest.display())]).output().unwrap();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stderr), d.log());
    assert_eq!(std::fs::read(dest.join("hello")).unwrap(), b"activated");
    // Hooks do not see the activation variables, and start with no signal
    // blocked (the daemon blocks the ones it waits for).
    let env = std::fs::read_to_string(&hook_out).unwrap();
    assert!(env.contains("RSYNC_MODULE_NAME=mod"), "{env}");
    assert!(!env.contains("LISTEN_"), "{env}");
    assert!(env.contains("SigBlk:\t0000000000000000"), "{env}");
}

#[test]
fn a_listen_pid_of_another_process_is_ignored() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("mod");
    std::fs::create_dir_all(&root).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg(&root)
        .args(["--port=0", "--address=127.0.0.1", "--no-watch"])
        .arg(format!("--state-dir={}", t.path().join("state").display()))
        .env("LISTEN_FDS", "1")
        .env("LISTEN_PID", "1");
    // Not ours: fd 3 is not touched (it may not even exist) and the daemon binds.
    let d = Daemon::start_cmd(cmd);
    assert_ne!(d.port, 0);
    assert!(!d.log().contains("listening socket from systemd"));
}
