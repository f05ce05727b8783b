//! Running the stock `rsync` client with a deadline.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The default deadline for one client run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

/// What one client run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The exit code; -1 when the client was killed by a signal (or by the deadline).
    pub code: i32,
    /// Everything the client wrote to stdout (lossily decoded as UTF-8).
    pub stdout: String,
    /// Everything the client wrote to stderr (lossily decoded as UTF-8).
    pub stderr: String,
    /// True when the harness killed the client at its deadline.
    pub timed_out: bool,
}

/// The environment every client (and stock daemon) runs with, so output does
/// not depend on the caller's locale or time zone.
pub(crate) fn pin_env(cmd: &mut Command) {
    for var in [
        "RSYNC_PASSWORD",
        "RSYNC_CONNECT_PROG",
        "RSYNC_PROXY",
        "RSYNC_RSH",
        "RSYNC_PORT",
        "RSYNC_ICONV",
        "RSYNC_CHECKSUM_LIST",
        "RSYNC_COMPRESS_LIST",
        "RSYNC_MAX_ALLOC",
        "RSYNC_OLD_ARGS",
        "RSYNC_PROTECT_ARGS",
        "USER",
        "LOGNAME",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("LC_ALL", "C").env("TZ", "UTC");
}

/// Spawns a thread that reads `r` to its end.
pub(crate) fn drain<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Sends `sig` to the process group led by `child` (it was started as a group leader).
pub(crate) fn kill_group(child: &Child, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) has no memory-safety preconditions; the negative pid names
    // the process group this harness created for its own child (process_group(0)).
    unsafe {
        libc::kill(-pid, sig);
    }
}

/// Runs `cmd` (stdin closed) to completion or until `timeout`, capturing its output.
///
/// The command runs in its own process group, and on timeout the whole group
/// (rsync forks a receiver/generator pair) is killed.
pub fn run_command(cmd: &mut Command, timeout: Duration) -> RunResult {
    run_command_input(cmd, timeout, None)
}

/// [`run_command`] feeding `input` (when given) to the command's stdin, which
/// is closed after it; `None` gives a closed (null) stdin.
pub fn run_command_input(cmd: &mut Command, timeout: Duration, input: Option<&[u8]>) -> RunResult {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let feeder = input.map(|data| {
        let mut w = child.stdin.take().expect("piped stdin");
        let data = data.to_vec();
        std::thread::spawn(move || {
            use std::io::Write as _;
            // The client may exit without reading it all (an error case).
            let _ = w.write_all(&data);
        })
    });
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let mut stray = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                kill_group(&child, libc::SIGKILL);
                break child.wait().expect("wait after kill");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    // A child of the client (rsync forks a receiver) that outlived it keeps
    // the pipes open: give it a moment, then kill the rest of the group, so
    // a client that died leaving a stuck child cannot hang the test until
    // the daemon's I/O timeout. rsync's own children exit with it normally.
    let linger = Instant::now() + Duration::from_secs(5).min(timeout);
    while !(out.is_finished() && err.is_finished()) {
        if Instant::now() >= linger {
            kill_group(&child, libc::SIGKILL);
            stray = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(f) = feeder {
        let _ = f.join();
    }
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let mut stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if timed_out {
        stderr.push_str(&format!("[harness: killed after {timeout:?}]\n"));
    }
    if stray {
        stderr.push_str("[harness: killed a child left running after the client exited]\n");
    }
    RunResult {
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        timed_out,
    }
}

/// Runs the stock `rsync` client with `args`, with the default deadline.
pub fn run_client(args: &[&str]) -> RunResult {
    run_client_timeout(args, CLIENT_TIMEOUT)
}

/// Runs the stock `rsync` client with `args` and a deadline.
pub fn run_client_timeout<S: AsRef<std::ffi::OsStr>>(args: &[S], timeout: Duration) -> RunResult {
    run_client_input(args, timeout, None)
}

/// Runs the stock `rsync` client with `args`, a deadline, and `input` (when
/// given) as its stdin (for `--files-from=-`).
pub fn run_client_input<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    timeout: Duration,
    input: Option<&[u8]>,
) -> RunResult {
    let mut cmd = Command::new("rsync");
    cmd.args(args);
    pin_env(&mut cmd);
    run_command_input(&mut cmd, timeout, input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_code_and_streams() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 7"]);
        let r = run_command(&mut cmd, Duration::from_secs(10));
        assert_eq!(r.code, 7);
        assert_eq!(r.stdout, "out\n");
        assert_eq!(r.stderr, "err\n");
        assert!(!r.timed_out);
    }

    #[test]
    fn feeds_stdin() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "tr a-z A-Z"]);
        let r = run_command_input(&mut cmd, Duration::from_secs(10), Some(b"abc\n"));
        assert_eq!(r.code, 0);
        assert_eq!(r.stdout, "ABC\n");
    }

    #[test]
    fn kills_at_deadline() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30"]);
        let t = Instant::now();
        let r = run_command(&mut cmd, Duration::from_millis(200));
        assert!(r.timed_out);
        assert_eq!(r.code, -1);
        assert!(t.elapsed() < Duration::from_secs(10));
    }
}
