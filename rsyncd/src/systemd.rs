//! Service-manager integration without libsystemd: readiness and status
//! notifications (`sd_notify(3)`, a datagram to `$NOTIFY_SOCKET`) and socket
//! activation (`sd_listen_fds(3)`: listening sockets passed as fds 3.. with
//! `LISTEN_PID` / `LISTEN_FDS` / `LISTEN_FDNAMES`).
//!
//! Both follow the documented protocols (systemd's `sd_notify(3)` and
//! `sd_listen_fds(3)` man pages); nothing here is needed when the daemon is
//! started by hand: without the variables every function is a no-op.

use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first passed descriptor (`SD_LISTEN_FDS_START`).
pub const LISTEN_FDS_START: RawFd = 3;

/// Most descriptors accepted from the service manager (a sanity bound on
/// `LISTEN_FDS`).
pub const MAX_LISTEN_FDS: usize = 64;

/// Sends `state` (newline-separated `KEY=VALUE` assignments, e.g.
/// `READY=1\nSTATUS=serving`) to the service manager. Returns `Ok(false)`
/// when `$NOTIFY_SOCKET` is unset (not run by systemd with `Type=notify`).
pub fn notify(state: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let path = path.as_encoded_bytes();
    let sock = UnixDatagram::unbound()?;
    match path.first() {
        Some(b'/') => {
            use std::os::unix::ffi::OsStrExt;
            sock.send_to(state.as_bytes(), std::ffi::OsStr::from_bytes(path))?;
        }
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&path[1..])?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "NOTIFY_SOCKET is not a path or @abstract name")),
    }
    Ok(true)
}

/// [`notify`], logging a failure instead of returning it.
pub fn notify_or_log(state: &str) {
    if let Err(e) = notify(state) {
        tracing::warn!("sd_notify: {e}");
    }
}

/// `MONOTONIC_USEC=` for a `RELOADING=1` notification: `CLOCK_MONOTONIC` now.
pub fn monotonic_usec() -> u64 {
    // SAFETY: `ts` is plain old data that clock_gettime fills.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    (ts.tv_sec as u64).saturating_mul(1_000_000).saturating_add(ts.tv_nsec as u64 / 1000)
}

/// One socket passed by the service manager.
#[derive(Debug)]
pub struct PassedSocket {
    /// The listening socket.
    pub listener: TcpListener,
    /// Its name from `LISTEN_FDNAMES` (the socket unit's `FileDescriptorName=`).
    pub name: Option<String>,
}

/// Why a passed descriptor cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListenFdError {
    /// `LISTEN_FDS` is not a number or too large.
    #[error("LISTEN_FDS={0:?} is not a usable count")]
    BadCount(String),
    /// A descriptor is not a listening TCP socket.
    #[error("descriptor {fd} from the service manager is not a listening TCP socket ({why})")]
    NotTcpListener {
        /// The descriptor.
        fd: RawFd,
        /// What it is instead.
        why: String,
    },
    /// A system call failed.
    #[error("descriptor {fd}: {err}")]
    Io {
        /// The descriptor.
        fd: RawFd,
        /// The error.
        err: std::io::Error,
    },
}

static TAKEN: AtomicBool = AtomicBool::new(false);

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> std::io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of their sizes; a bad fd
    // only makes the call fail.
    let r = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut libc::c_int).cast(), &mut len) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(v)
}

/// Takes the listening sockets the service manager passed to this process
/// (`sd_listen_fds(1)`): only when `LISTEN_PID` is our pid; the variables
/// are removed from the environment (so hooks do not see them) and the
/// descriptors made close-on-exec. Empty when none were passed. Call once,
/// early in `main` (before other threads start: it changes the environment).
pub fn take_listen_fds() -> Result<Vec<PassedSocket>, ListenFdError> {
    let pid = std::env::var("LISTEN_PID").ok();
    let fds = std::env::var("LISTEN_FDS").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(k);
    }
    let ours = pid.and_then(|p| p.trim().parse::<u32>().ok()) == Some(std::process::id());
    let Some(fds) = fds.filter(|_| ours) else {
        return Ok(Vec::new());
    };
    let n: usize = fds.trim().parse().map_err(|_| ListenFdError::BadCount(fds.clone()))?;
    if n > MAX_LISTEN_FDS {
        return Err(ListenFdError::BadCount(fds));
    }
    if n == 0 || TAKEN.swap(true, Ordering::AcqRel) {
        return Ok(Vec::new());
    }
    let names: Vec<String> = names.map(|s| s.split(':').map(str::to_owned).collect()).unwrap_or_default();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let fd = LISTEN_FDS_START + i as RawFd;
        // SAFETY: the service manager passed descriptors 3..3+n to this
        // process (LISTEN_PID is ours) and nothing else in the process owns
        // them: they are taken once (TAKEN) and owned from here on.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: fcntl on a descriptor we own; no memory is involved.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
            return Err(ListenFdError::Io { fd, err: std::io::Error::last_os_error() });
        }
        let io = |err| ListenFdError::Io { fd, err };
        let ty = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE).map_err(io)?;
        let domain = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN).map_err(io)?;
        let listening = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).map_err(io)?;
        let why = if ty != libc::SOCK_STREAM {
            Some("not a stream socket")
        } else if domain != libc::AF_INET && domain != libc::AF_INET6 {
            Some("not an IP socket")
        } else if listening == 0 {
            Some("not listening")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(ListenFdError::NotTcpListener { fd, why: why.into() });
        }
        let listener = TcpListener::from(owned);
        listener.set_nonblocking(false).map_err(|err| ListenFdError::Io { fd: listener.as_raw_fd(), err })?;
        out.push(PassedSocket { listener, name: names.get(i).cloned().filter(|s| !s.is_empty()) });
    }
    Ok(out)
}

/// Matches passed sockets to the daemon's listener ports: a socket serves
/// the listener whose configured port it is bound to; when there is
/// exactly one socket and one listener, they go together whatever the
/// ports. Returns one slot per listener (`None`: not passed, bind it) and
/// the sockets that match no listener.
pub fn assign(ports: &[u16], passed: Vec<PassedSocket>) -> (Vec<Option<TcpListener>>, Vec<PassedSocket>) {
    let mut slots: Vec<Option<TcpListener>> = ports.iter().map(|_| None).collect();
    if ports.len() == 1 && passed.len() == 1 {
        let mut passed = passed;
        slots[0] = passed.pop().map(|p| p.listener);
        return (slots, Vec::new());
    }
    let mut unused = Vec::new();
    for p in passed {
        let port = p.listener.local_addr().map(|a| a.port()).ok();
        match ports.iter().position(|&q| Some(q) == port).filter(|&i| slots[i].is_none()) {
            Some(i) => slots[i] = Some(p.listener),
            None => unused.push(p),
        }
    }
    (slots, unused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_reaches_a_path_socket_and_an_abstract_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let server = UnixDatagram::bind(&p).unwrap();
        server.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        // Only this test touches NOTIFY_SOCKET in this test binary.
        std::env::set_var("NOTIFY_SOCKET", &p);
        assert!(notify("READY=1\nSTATUS=x").unwrap());
        let mut b = [0u8; 64];
        let n = server.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"READY=1\nSTATUS=x");
        use std::os::linux::net::SocketAddrExt;
        let name = format!("rsyncd-test-{}", std::process::id());
        let abs = UnixDatagram::bind_addr(&std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        abs.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
        assert!(notify("STOPPING=1").unwrap());
        let n = abs.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"STOPPING=1");
        std::env::remove_var("NOTIFY_SOCKET");
        assert!(!notify("READY=1").unwrap());
    }

    #[test]
    fn sockets_go_to_the_listener_of_their_port() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let (pa, pb) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
        let passed = vec![PassedSocket { listener: b, name: None }, PassedSocket { listener: a, name: None }];
        let (slots, unused) = assign(&[pa, 1, pb], passed);
        assert_eq!(slots[0].as_ref().unwrap().local_addr().unwrap().port(), pa);
        assert!(slots[1].is_none());
        assert_eq!(slots[2].as_ref().unwrap().local_addr().unwrap().port(), pb);
        assert!(unused.is_empty());
        // One and one: together whatever the port.
        let c = TcpListener::bind("127.0.0.1:0").unwrap();
        let (slots, _) = assign(&[873], vec![PassedSocket { listener: c, name: None }]);
        assert!(slots[0].is_some());
    }
}
