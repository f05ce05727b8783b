//! The local control socket: `rsyncd refresh MODULE [PATH]` asks the running
//! daemon to re-read a module (or one subtree of it) now.
//!
//! The socket is `<state dir>/control.sock`, created with mode 0600, and the
//! daemon also checks the peer's credentials (`SO_PEERCRED`): only root and
//! the daemon's own user may use it.
//!
//! Protocol: one request line per connection, `refresh MODULE [PATH]\n`; the
//! answer is one line, `ok <summary>\n` or `error <text>\n`. `MODULE` and
//! `PATH` are bytes with `%`, space, CR, LF, NUL and other control bytes
//! written as `%XX` (so plain names stay readable: `echo 'refresh debian
//! pool/main' | socat - UNIX:/var/lib/rsyncd/control.sock` works). A request
//! longer than [`MAX_REQUEST`] bytes is refused.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use filelist_cache::{RefreshKind, RefreshReport, Stores};

/// Longest request line accepted (a 4 KiB path fully escaped, and then some).
pub const MAX_REQUEST: usize = 16 * 1024;

/// How long the daemon waits for a request line.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The control socket's file name inside the state directory.
pub const SOCKET_NAME: &str = "control.sock";

/// Errors of the control client.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The socket could not be reached or the exchange failed.
    #[error("{path}: {err}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
    /// The daemon answered `error <text>` (or something unexpected).
    #[error("{0}")]
    Refused(String),
}

/// `%XX`-escapes `%`, space and control bytes.
pub fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c == b'%' || c <= b' ' || c == 0x7f || c >= 0x80 {
            s.push_str(&format!("%{c:02X}"));
        } else {
            s.push(char::from(c));
        }
    }
    s
}

/// Reverses [`escape`]; `None` on a malformed escape.
pub fn unescape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// Module name.
    pub module: String,
    /// Module-relative path (`None`: the whole module).
    pub path: Option<Vec<u8>>,
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    match words.next() {
        Some(b"refresh") => {}
        Some(w) => return Err(format!("unknown command {:?}", String::from_utf8_lossy(w))),
        None => return Err("empty request".into()),
    }
    let module = words.next().ok_or("usage: refresh MODULE [PATH]")?;
    let module = unescape(module).ok_or("bad %-escape in module name")?;
    let module = String::from_utf8(module).map_err(|_| "module name is not UTF-8")?;
    let path = match words.next() {
        Some(p) => Some(unescape(p).ok_or("bad %-escape in path")?),
        None => None,
    };
    if words.next().is_some() {
        return Err("usage: refresh MODULE [PATH]".into());
    }
    Ok(Request { module, path })
}

/// One line summing up a refresh.
pub fn summary(r: &RefreshReport) -> String {
    let kind = match r.kind {
        RefreshKind::Incremental => "incremental",
        RefreshKind::FullRescan => "full-rescan",
        RefreshKind::Compaction => "compaction",
    };
    let published = match r.published {
        Some(g) => format!("generation {g}"),
        None => "unchanged".to_string(),
    };
    format!(
        "{kind} {published} added {} removed {} changed {} dirs {} in {} ms",
        r.added,
        r.removed,
        r.changed,
        r.dirs_listed,
        r.elapsed.as_millis()
    )
}

/// Answers one request against `stores`: the answer line, newline included.
pub fn answer(stores: &Stores, line: &[u8]) -> String {
    let req = match parse_request(line) {
        Ok(r) => r,
        Err(e) => return format!("error {e}\n"),
    };
    match stores.refresh(&req.module, req.path.as_deref()) {
        None => format!("error unknown module {}\n", escape(req.module.as_bytes())),
        Some(Ok(r)) => format!("ok {}\n", summary(&r)),
        Some(Err(e)) => format!("error {}\n", e.to_string().replace('\n', " ")),
    }
}

/// Binds the control socket in `state_dir` (replacing a stale one; the
/// caller holds the module stores' locks, so no other daemon uses this
/// directory), mode 0600.
pub fn bind(state_dir: &Path) -> std::io::Result<UnixListener> {
    let path = state_dir.join(SOCKET_NAME);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // SAFETY: umask() only swaps the process's file-creation mask; it cannot
    // fail. The restrictive mask closes the window between bind() and
    // chmod() in which the socket would have the default mode.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(&path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let l = l?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// The peer's uid (`SO_PEERCRED`).
fn peer_uid(s: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes and `len` holds the size
    // of `cred`; the fd is a live Unix socket owned by `s`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn handle(mut s: UnixStream, stores: &Stores) {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    match peer_uid(&s) {
        Ok(uid) if uid == 0 || uid == me => {}
        Ok(uid) => {
            tracing::warn!(uid, "control socket: request from another user refused");
            let _ = s.write_all(b"error permission denied\n");
            return;
        }
        Err(e) => {
            tracing::warn!("control socket: cannot read peer credentials: {e}");
            return;
        }
    }
    let _ = s.set_read_timeout(Some(REQUEST_TIMEOUT));
    let mut line = Vec::new();
    let reader = match s.try_clone() {
        Ok(r) => r,
        Err(_) => return,
    };
    let mut r = BufReader::new(reader.take(MAX_REQUEST as u64 + 1));
    let reply = match r.read_until(b'\n', &mut line) {
        Ok(_) if line.last() != Some(&b'\n') => {
            if line.len() > MAX_REQUEST {
                "error request too long\n".to_string()
            } else {
                "error incomplete request\n".to_string()
            }
        }
        Ok(_) => {
            line.pop();
            let a = answer(stores, &line);
            tracing::info!(request = %String::from_utf8_lossy(&line), reply = %a.trim_end(), "control request");
            a
        }
        Err(e) => format!("error {e}\n"),
    };
    let _ = s.write_all(reply.as_bytes());
}

/// Serves the control socket on a thread; each connection is handled on a
/// thread of its own.
pub fn spawn_server(listener: UnixListener, stores: Arc<Stores>) -> std::io::Result<()> {
    spawn_server_with(listener, Arc::new(move || Arc::clone(&stores)))
}

/// [`spawn_server`] that asks `stores` for the modules' stores at each
/// request (a configuration reload changes them).
pub fn spawn_server_with(listener: UnixListener, stores: Arc<dyn Fn() -> Arc<Stores> + Send + Sync>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(s) => {
                        let st = stores();
                        if let Err(e) = std::thread::Builder::new()
                            .name("control-req".into())
                            .spawn(move || handle(s, &st))
                        {
                            tracing::warn!("control socket: cannot start a thread: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("control socket: accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
    Ok(())
}

/// The client side: sends `refresh MODULE [PATH]` to the daemon whose state
/// directory is `state_dir` and returns the `ok` summary.
pub fn request_refresh(
    state_dir: &Path,
    module: &str,
    path: Option<&[u8]>,
) -> Result<String, ControlError> {
    let sock = state_dir.join(SOCKET_NAME);
    let io = |err| ControlError::Io {
        path: sock.clone(),
        err,
    };
    let mut s = UnixStream::connect(&sock).map_err(io)?;
    let mut req = format!("refresh {}", escape(module.as_bytes()));
    if let Some(p) = path {
        req.push(' ');
        req.push_str(&escape(p));
    }
    req.push('\n');
    s.write_all(req.as_bytes()).map_err(io)?;
    let mut line = Vec::new();
    BufReader::new(s.take(MAX_REQUEST as u64))
        .read_until(b'\n', &mut line)
        .map_err(io)?;
    let line = String::from_utf8_lossy(&line).trim_end().to_string();
    match line.strip_prefix("ok") {
        Some(rest) => Ok(rest.trim_start().to_string()),
        None => Err(ControlError::Refused(
            line.strip_prefix("error ").unwrap_or(&line).to_string(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_round_trips_and_keeps_plain_names() {
        assert_eq!(escape(b"pool/main"), "pool/main");
        assert_eq!(escape(b"a b%\n\xff"), "a%20b%25%0A%FF");
        for b in [&b"a b%\n\xff\0"[..], b"", b"%%", b"x/y z"] {
            assert_eq!(unescape(escape(b).as_bytes()).as_deref(), Some(b));
        }
        assert_eq!(unescape(b"%4"), None);
        assert_eq!(unescape(b"%zz"), None);
    }

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(b"refresh debian"),
            Ok(Request {
                module: "debian".into(),
                path: None
            })
        );
        assert_eq!(
            parse_request(b"refresh my%20mod pool/a%20b\r"),
            Ok(Request {
                module: "my mod".into(),
                path: Some(b"pool/a b".to_vec())
            })
        );
        assert!(parse_request(b"").is_err());
        assert!(parse_request(b"refresh").is_err());
        assert!(parse_request(b"refresh a b c").is_err());
        assert!(parse_request(b"rescan a").is_err());
        assert!(parse_request(b"refresh a%2").is_err());
    }

    #[test]
    fn answers_refresh_requests() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        let opts = filelist_cache::StoreOptions {
            watch: false,
            ..Default::default()
        };
        let (store, _) = filelist_cache::SnapshotStore::open_or_build_with(
            &root,
            &t.path().join("state"),
            "m",
            opts,
        )
        .expect("store");
        let mut stores = Stores::new();
        stores.insert("m", store.clone());
        std::fs::write(root.join("sub/new"), b"x").expect("write");
        assert!(store.current().lookup(b"sub/new").is_none());
        let a = answer(&stores, b"refresh m sub");
        assert!(a.starts_with("ok incremental generation "), "{a}");
        assert!(store.current().lookup(b"sub/new").is_some());
        std::fs::write(root.join("top"), b"x").expect("write");
        let a = answer(&stores, b"refresh m");
        assert!(a.starts_with("ok full-rescan generation "), "{a}");
        assert!(store.current().lookup(b"top").is_some());
        assert!(answer(&stores, b"refresh m").contains("unchanged"));
        assert_eq!(
            answer(&stores, b"refresh nope"),
            "error unknown module nope\n"
        );
        assert!(answer(&stores, b"refresh m ../etc").starts_with("error invalid module path"));

        // Over the socket.
        let state = t.path().join("ctl");
        std::fs::create_dir_all(&state).expect("mkdir");
        let l = bind(&state).expect("bind");
        let mode = std::fs::metadata(state.join(SOCKET_NAME))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        spawn_server(l, Arc::new(stores)).expect("serve");
        std::fs::write(root.join("sub/new2"), b"x").expect("write");
        let ok = request_refresh(&state, "m", Some(b"sub")).expect("refresh");
        assert!(ok.starts_with("incremental generation"), "{ok}");
        assert!(store.current().lookup(b"sub/new2").is_some());
        match request_refresh(&state, "zz", None) {
            Err(ControlError::Refused(e)) => assert_eq!(e, "unknown module zz"),
            other => panic!("{other:?}"),
        }
        let mut s = UnixStream::connect(state.join(SOCKET_NAME)).expect("connect");
        let _ = s.write_all(&vec![b'a'; MAX_REQUEST + 10]);
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert_eq!(reply, "error request too long\n");
    }
}
