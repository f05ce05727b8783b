//! Listeners, module start-up and the accept loops.
//!
//! One process may listen on several ports (our `daemon port` module
//! parameter; see docs/operations.md): each module is served only on its
//! listener, and each listener has its own session caps, so a flood of
//! public clients cannot use up the capacity of a private listener.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use filelist_cache::{Background, OpenSource, SnapshotStore, StoreOptions, Stores, WatchStatus};
use protocol::filter::{DaemonFilterParams, FilterList};

use crate::access::auth::{self, AuthConfig};
use crate::access::hosts::HostAcl;
use crate::access::identity::{self, Identity, ModuleAccess};
use crate::access::limits::{CapExceeded, SessionCaps};
use crate::access::refuse::RefuseRules;
use crate::config::{Config, Module};
use crate::module::{ListenerSpec, ModuleRules, ModuleRuntime, ServerState, SessionSettings};
use crate::session::files::ModuleRoot;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A module's tree could not be scanned or its snapshot written/opened,
    /// or its access settings could not be applied.
    #[error("module '{module}': {message}")]
    Module {
        /// Module name.
        module: String,
        /// What went wrong.
        message: String,
    },
    /// Reading the motd file failed.
    #[error("motd file {path}: {err}")]
    Motd {
        /// The file.
        path: PathBuf,
        /// The error.
        err: std::io::Error,
    },
}

/// Compile a module's access rules (everything but the snapshot), checking
/// what can be checked before any client connects: the identity resolves,
/// the host tokens parse, the secrets file passes `strict modes`.
/// `global_reverse` is the global `reverse lookup` (stock resolves the
/// client's name at connect time when it is on, whatever the module says).
pub fn module_rules(m: &Module, global_reverse: bool, daemon: &Identity) -> Result<ModuleRules, String> {
    let reverse = global_reverse || m.reverse_lookup;
    let hosts = HostAcl::from_tokens(&m.hosts_allow, &m.hosts_deny, reverse, m.forward_lookup).map_err(|e| e.to_string())?;
    let floor = match m.auth_digest.as_deref().map(str::trim).filter(|d| !d.is_empty()) {
        Some(d) => Some(auth::parse_digest_floor(d).ok_or_else(|| format!("auth digest \"{d}\" is not supported"))?),
        None => None,
    };
    let auth = AuthConfig {
        rules: auth::parse_auth_users(&m.auth_users),
        secrets_file: m.secrets_file.clone(),
        strict_modes: m.strict_modes,
        floor,
    };
    if auth.required() {
        if let Some(p) = &auth.secrets_file {
            // Stock only finds out at the first login; say it now as well
            // (logins keep failing with stock's log text until it is fixed).
            match std::fs::metadata(p) {
                Ok(md) => {
                    if let Some(why) = m.strict_modes.then(|| auth::strict_modes_problem(&md, daemon.is_root())).flatten() {
                        tracing::warn!(module = %m.name, "{}: {why}", p.display());
                    }
                }
                Err(e) => tracing::warn!(module = %m.name, "secrets file {}: {e}", p.display()),
            }
        }
    }
    let refuse = RefuseRules::new(&m.refuse_options, m.charset.is_some());
    let id = identity::module_identity(m.uid.as_deref(), &m.gid, daemon).map_err(|e| e.to_string())?;
    let access = ModuleAccess::new(id, &m.path).map_err(|e| format!("opening {}: {e}", m.path.display()))?;
    Ok(ModuleRules {
        hosts,
        auth,
        refuse,
        access: Arc::new(access),
        max_connections: m.max_connections,
        lock_file: m.lock_file.clone(),
        timeout: (m.timeout > 0).then(|| Duration::from_secs(u64::from(m.timeout))),
        write_only: m.write_only,
    })
}

fn read_rules_file(p: &Path) -> Result<Vec<u8>, String> {
    auth::check_symlinks(p)?;
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

#[allow(clippy::too_many_arguments)]
fn module_runtime(
    m: &Module,
    global_reverse: bool,
    state_dir: &Path,
    store_name: &str,
    listener: usize,
    daemon: &Identity,
    watch: bool,
    opened: &mut Vec<(String, PathBuf, SnapshotStore, bool)>,
) -> Result<ModuleRuntime, StartError> {
    let err = |message: String| StartError::Module { module: m.name.clone(), message };
    let rules = module_rules(m, global_reverse, daemon).map_err(err)?;
    let include_from =
        m.include_from.as_deref().map(read_rules_file).transpose().map_err(|e| err(format!("include from: {e}")))?;
    let exclude_from =
        m.exclude_from.as_deref().map(read_rules_file).transpose().map_err(|e| err(format!("exclude from: {e}")))?;
    let daemon_filter = FilterList::from_daemon_config(&DaemonFilterParams {
        filter: &m.filter,
        include_from: include_from.as_deref(),
        include: &m.include,
        exclude_from: exclude_from.as_deref(),
        exclude: &m.exclude,
    })
    .map_err(|e| err(format!("filter rules: {e}")))?;
    // A module defined twice (same name, e.g. on two listeners) with the
    // same path shares one store: a store holds an exclusive lock.
    let (store, watching) = match opened.iter().find(|(n, p, _, _)| n == store_name && *p == m.path) {
        Some((_, _, st, w)) => (st.clone(), *w),
        None => {
            let (store, report) = SnapshotStore::open_or_build_with(&m.path, state_dir, store_name, StoreOptions { watch, ..StoreOptions::default() })
                .map_err(|e| err(format!("snapshot of {}: {e}", m.path.display())))?;
            for (path, why) in &report.rejected {
                tracing::warn!(module = %m.name, file = %path.display(), "snapshot file rejected (rebuilt): {why}");
            }
            if let Some(b) = &report.build {
                for issue in &b.errors {
                    tracing::warn!(module = %m.name, path = %String::from_utf8_lossy(&issue.path), "{}", issue.message);
                }
            }
            let how = match report.source {
                OpenSource::Opened => "snapshot opened from disk (reconciling in the background)",
                OpenSource::Built => "snapshot built",
            };
            tracing::info!(module = %m.name, entries = report.entries, generation = report.generation,
                elapsed_ms = report.elapsed.as_millis() as u64, "{how}");
            match &report.watch {
                WatchStatus::Active => tracing::info!(module = %m.name, "fanotify watcher active"),
                WatchStatus::Unavailable(why) => {
                    tracing::warn!(module = %m.name, "fanotify watcher unavailable ({why}); relying on rescans and `rsyncd refresh`")
                }
                WatchStatus::Disabled => {}
            }
            let watching = report.watch == WatchStatus::Active;
            opened.push((store_name.to_string(), m.path.clone(), store.clone(), watching));
            (store, watching)
        }
    };
    let root = ModuleRoot::open(&m.path).map_err(|e| err(format!("opening {}: {e}", m.path.display())))?;
    Ok(ModuleRuntime {
        name: m.name.clone(),
        comment: m.comment.clone(),
        path: m.path.clone(),
        list: m.list,
        read_only: m.read_only,
        store,
        rescan_interval: m.rescan_interval,
        watching,
        root,
        daemon_filter,
        listener,
        rules,
    })
}

/// The store (file) name of a module: its name with every byte outside
/// `[A-Za-z0-9._-]` replaced by `_`, never starting with `.`.
fn sanitize_file_name(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect();
    match s.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if s.is_empty() => "_".to_string(),
        None => s,
    }
}

/// Store names for the modules of `config`, in order: the sanitized module
/// name; modules whose names sanitize alike but differ (or serve another
/// path) get a `~N` suffix (stable while the config keeps its order).
fn store_names(config: &Config) -> Vec<String> {
    let mut seen: Vec<(String, String, PathBuf)> = Vec::new();
    let mut out = Vec::new();
    for m in &config.modules {
        let base = sanitize_file_name(&m.name);
        let mut key = base.clone();
        let mut n = 1;
        loop {
            match seen.iter().find(|(k, _, _)| *k == key) {
                None => {
                    seen.push((key.clone(), m.name.clone(), m.path.clone()));
                    break;
                }
                Some((_, name, path)) if *name == m.name && *path == m.path => break,
                Some(_) => {
                    n += 1;
                    key = format!("{base}~{n}");
                }
            }
        }
        out.push(key);
    }
    out
}

/// Rescan interval when `rescan interval` is unset and the watcher is not
/// available.
pub const FALLBACK_RESCAN_INTERVAL: Duration = Duration::from_secs(300);

/// Background work of the served modules; dropping it stops the watchers
/// and maintenance threads.
pub struct ModuleBackground {
    _stores: Vec<Background>,
}

/// Starts every module store's background work (fanotify watcher and
/// maintenance) and, where wanted, a periodic full rescan: every
/// `rescan interval` seconds, or [`FALLBACK_RESCAN_INTERVAL`] when unset and
/// the watcher could not be set up.  Keep the handle alive while serving.
pub fn start_background(state: &ServerState) -> ModuleBackground {
    let mut bgs = Vec::new();
    let mut started: Vec<SnapshotStore> = Vec::new();
    for m in &state.modules {
        if started.iter().any(|s| s.name() == m.store.name()) {
            continue;
        }
        started.push(m.store.clone());
        bgs.push(m.store.start_background());
        let watching = m.watching;
        let interval = match m.rescan_interval {
            Some(0) => None,
            Some(n) => Some(Duration::from_secs(u64::from(n))),
            None if watching => None,
            None => Some(FALLBACK_RESCAN_INTERVAL),
        };
        if let Some(every) = interval {
            tracing::info!(module = %m.name, seconds = every.as_secs(), "periodic rescan");
            let store = m.store.clone();
            let name = m.name.clone();
            let spawned = std::thread::Builder::new().name(format!("rescan-{}", m.store.name())).spawn(move || loop {
                std::thread::sleep(every);
                match store.rescan() {
                    Ok(r) => tracing::debug!(module = %name, published = ?r.published, "periodic rescan"),
                    Err(e) => tracing::warn!(module = %name, "periodic rescan failed: {e}"),
                }
            });
            if let Err(e) = spawned {
                tracing::warn!(module = %m.name, "cannot start the rescan thread: {e}");
            }
        }
    }
    ModuleBackground { _stores: bgs }
}

/// The listener ports a configuration needs: the main port first, then each
/// distinct `daemon port` of a module (in order of first use).
pub fn listener_ports(config: &Config, main_port: u16) -> Vec<u16> {
    let mut ports = vec![main_port];
    for m in &config.modules {
        if let Some(p) = m.daemon_port {
            if p != main_port && !ports.contains(&p) {
                ports.push(p);
            }
        }
    }
    ports
}

/// Open (or build) every module's snapshot store in `state_dir` and the
/// shared server state.  `main_port` is the port of the main listener
/// (modules without a `daemon port`); `watch` sets up the stores' fanotify
/// watchers (call this before dropping privileges).  Start the stores'
/// background work with [`start_background`] before serving.
pub fn build_state(
    config: &Config,
    state_dir: &Path,
    settings: SessionSettings,
    main_port: u16,
    watch: bool,
) -> Result<ServerState, StartError> {
    std::fs::create_dir_all(state_dir).map_err(|e| StartError::Module {
        module: "*".into(),
        message: format!("creating state dir {}: {e}", state_dir.display()),
    })?;
    let daemon = identity::process_identity();
    let ports = listener_ports(config, main_port);
    let names = store_names(config);
    let mut opened = Vec::new();
    let mut modules = Vec::new();
    for (m, store_name) in config.modules.iter().zip(&names) {
        let listener = m.daemon_port.and_then(|p| ports.iter().position(|&q| q == p)).unwrap_or(0);
        modules.push(Arc::new(module_runtime(
            m,
            config.global.reverse_lookup,
            state_dir,
            store_name,
            listener,
            &daemon,
            watch,
            &mut opened,
        )?));
    }
    // Like session lookups, the last definition of a name wins.
    let mut stores = Stores::new();
    for m in &modules {
        stores.insert(&m.name, m.store.clone());
    }
    let motd = match &config.global.motd_file {
        Some(p) => Some(std::fs::read(p).map_err(|err| StartError::Motd { path: p.clone(), err })?),
        None => None,
    };
    let listeners = ports
        .iter()
        .map(|&port| ListenerSpec {
            port,
            caps: SessionCaps::new(config.global.max_sessions, config.global.max_sessions_per_host),
        })
        .collect();
    Ok(ServerState { modules, stores, listeners, motd, settings, daemon_is_root: daemon.is_root() })
}

/// Most sessions served at once per listener by default (`max sessions`).
pub const DEFAULT_MAX_SESSIONS: usize = 1024;

/// Bind one socket per listener of `state`, on `address`.
pub fn bind_all(state: &ServerState, address: IpAddr) -> std::io::Result<Vec<TcpListener>> {
    state
        .listeners
        .iter()
        .map(|l| {
            let addr = SocketAddr::new(address, l.port);
            TcpListener::bind(addr).map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))
        })
        .collect()
}

/// Accept connections on every listener, one thread per session; returns
/// only if an accept thread cannot be started.
pub fn serve_all(listeners: Vec<TcpListener>, state: Arc<ServerState>) -> std::io::Result<()> {
    let mut handles = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let st = state.clone();
        handles.push(std::thread::Builder::new().name(format!("accept-{i}")).spawn(move || serve(l, st, i))?);
    }
    for h in handles {
        let _ = h.join();
    }
    Ok(())
}

/// Accept connections on listener `index` forever.
pub fn serve(listener: TcpListener, state: Arc<ServerState>, index: usize) {
    let caps = match state.listeners.get(index) {
        Some(l) => l.caps.clone(),
        None => return,
    };
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let guard = match caps.try_enter(peer.ip()) {
            Ok(g) => g,
            Err(why) => {
                use std::io::Write;
                let n = match why {
                    CapExceeded::Total(n) | CapExceeded::PerHost(n) => n,
                };
                tracing::info!(peer = %peer, "session refused: {why:?}");
                let mut s = stream;
                let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                let _ = s.write_all(&protocol::greeting::server_greeting());
                let _ =
                    s.write_all(&protocol::greeting::error_line(&format!("max connections ({n}) reached -- try again later")));
                continue;
            }
        };
        let st = state.clone();
        let spawned = std::thread::Builder::new().name(format!("session-{peer}")).spawn(move || {
            let _guard = guard;
            let _ = crate::session::serve_connection(stream, peer, st, index);
        });
        if let Err(e) = spawned {
            tracing::warn!("cannot start session thread: {e}");
        }
    }
}

/// Bind a listener on `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}

// ---------------------------------------------------------------------------
// pid file
// ---------------------------------------------------------------------------

/// Why the `pid file` could not be written; the text is stock's ("failed to
/// STEP pid file PATH: REASON"), and stock then exits with code 11.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PidFileError {
    /// The whole message.
    pub message: String,
}

/// The daemon's `pid file`: written and locked at start-up, removed when
/// dropped (if it is still the file we wrote).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// Held open for the lock (a second daemon with the same file fails).
    _file: std::fs::File,
    dev: u64,
    ino: u64,
}

/// `strerror()` text of an OS error (without std's "(os error N)").
fn strerror(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn cstring(b: &[u8]) -> Result<std::ffi::CString, std::io::Error> {
    std::ffi::CString::new(b).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
fn lstat_at(dir: &std::fs::File, name: &std::ffi::CStr) -> std::io::Result<libc::stat> {
    use std::os::fd::AsRawFd;
    // SAFETY: `st` is plain old data that fstatat fills on success; `name`
    // is NUL-terminated and `dir` an open directory for the call.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st)
    }
}

impl PidFile {
    /// Writes `pid` into `path`.  Mirrors clientserver.c `create_pid_file()`
    /// (rsync 3.5.0): the leaf is resolved in its directory, opened
    /// without following a symlink; a leaf that is not a regular file is
    /// removed first; the file is locked (bytes 0-3, so a second daemon with
    /// the same pid file fails with "failed to lock"), must be at most 32
    /// bytes (so a wrong path cannot clobber a real file), must still be the
    /// file at `path`, and is truncated and given "PID\n" (mode 0664 less the
    /// umask when created).
    pub fn create(path: &Path, pid: u32) -> Result<PidFile, PidFileError> {
        use std::os::fd::{AsRawFd, FromRawFd};
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::OpenOptionsExt;
        let shown = path.display().to_string();
        let fail = |step: &str, e: &std::io::Error| PidFileError {
            message: format!("failed to {step} pid file {shown}: {}", strerror(e)),
        };
        let bytes = path.as_os_str().as_bytes();
        let (dir, base) = match bytes.iter().rposition(|&b| b == b'/') {
            Some(0) => (&b"/"[..], &bytes[1..]),
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => (&b"."[..], bytes),
        };
        let dir_shown = String::from_utf8_lossy(dir).into_owned();
        let dirf = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(std::ffi::OsStr::from_bytes(dir))
            .map_err(|e| PidFileError {
                message: format!("failed to open pid-file directory \"{dir_shown}\": {}", strerror(&e)),
            })?;
        let name = cstring(base).map_err(|e| fail("create", &e))?;
        let before = lstat_at(&dirf, &name).ok();
        let existed_regular = before.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG);
        if before.is_some() && !existed_regular {
            // SAFETY: unlinkat with an open directory fd and a NUL-terminated name.
            if unsafe { libc::unlinkat(dirf.as_raw_fd(), name.as_ptr(), 0) } < 0 {
                return Err(fail("unlink", &std::io::Error::last_os_error()));
            }
        }
        // SAFETY: openat with an open directory fd and a NUL-terminated name;
        // the result is checked and then owned by `file`.
        let fd = unsafe {
            libc::openat(
                dirf.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o664 as libc::c_uint,
            )
        };
        if fd < 0 {
            let step = if existed_regular { "open" } else { "create" };
            return Err(fail(step, &std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
        // SAFETY: `lock` is plain old data describing bytes 0-3; F_SETLK only
        // reads it.
        let locked = unsafe {
            let mut lock: libc::flock = std::mem::zeroed();
            lock.l_type = libc::F_WRLCK as libc::c_short;
            lock.l_whence = libc::SEEK_SET as libc::c_short;
            lock.l_start = 0;
            lock.l_len = 4;
            libc::fcntl(fd, libc::F_SETLK, &lock) == 0
        };
        if !locked {
            return Err(fail("lock", &std::io::Error::last_os_error()));
        }
        let md = file.metadata().map_err(|e| fail("fstat opened", &e))?;
        let ok = std::io::Error::from_raw_os_error(0);
        if md.len() > 32 {
            return Err(fail("find small", &ok));
        }
        let again = lstat_at(&dirf, &name).map_err(|e| fail("lstat", &e))?;
        use std::os::unix::fs::MetadataExt;
        if !md.is_file() {
            return Err(fail("avoid file overwrite race for", &ok));
        }
        if again.st_dev != md.dev() || again.st_ino != md.ino() {
            return Err(fail("verify stat info for", &ok));
        }
        file.set_len(0).map_err(|e| fail("truncate", &e))?;
        use std::io::Write;
        let written = file.write_all(format!("{pid}\n").as_bytes());
        // Removed on exit even if the write failed (cleanup_set_pid()).  The
        // one descriptor stays open: closing any descriptor of the file
        // would drop the process's lock.
        let pid_file = PidFile { path: path.to_path_buf(), _file: file, dev: md.dev(), ino: md.ino() };
        written.map_err(|e| fail("write", &e))?;
        Ok(pid_file)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt;
        // Only our file: never one a later daemon wrote after ours was replaced.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The listening daemon's pid file (see [`write_pid_file`]).
static PID_FILE: std::sync::Mutex<Option<PidFile>> = std::sync::Mutex::new(None);

/// Removes the pid file (if any) when dropped; see [`write_pid_file`].
#[derive(Debug)]
pub struct PidFileGuard(());

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        remove_pid_file();
    }
}

/// Writes this process's pid to `path` (see [`PidFile::create`]) and keeps
/// it until the returned guard is dropped or [`remove_pid_file`] is called
/// (the signal handler's way out).
pub fn write_pid_file(path: &Path) -> Result<PidFileGuard, PidFileError> {
    let f = PidFile::create(path, std::process::id())?;
    *PID_FILE.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    Ok(PidFileGuard(()))
}

/// Removes the pid file written by [`write_pid_file`], if any.
pub fn remove_pid_file() {
    let f = PID_FILE.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(f);
}

#[cfg(test)]
mod pid_file_tests {
    use super::*;

    #[test]
    fn written_locked_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rsyncd.pid");
        let f = PidFile::create(&p, 4242).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "4242\n");
        // A small existing file is overwritten (stale pid of a dead daemon).
        drop(f);
        assert!(!p.exists(), "removed when dropped");
        std::fs::write(&p, "999999\n\n").unwrap();
        let f = PidFile::create(&p, 7).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "7\n");
        drop(f);
    }

    #[test]
    fn refuses_what_stock_refuses() {
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'x'; 33]).unwrap();
        let e = PidFile::create(&big, 1).unwrap_err();
        assert_eq!(e.message, format!("failed to find small pid file {}: Success", big.display()));
        assert_eq!(std::fs::read(&big).unwrap().len(), 33, "left alone");
        let e = PidFile::create(&d.path().join("no/such/x.pid"), 1).unwrap_err();
        assert_eq!(
            e.message,
            format!("failed to open pid-file directory \"{}\": No such file or directory", d.path().join("no/such").display())
        );
        // A symlink at the path is replaced, never followed.
        let target = d.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = d.path().join("link.pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let f = PidFile::create(&link, 5).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
        drop(f);
    }

    #[test]
    fn a_second_daemon_cannot_take_a_locked_pid_file() {
        // fcntl locks belong to a process: probe from a forked child.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("rsyncd.pid");
        let _f = PidFile::create(&p, 1).unwrap();
        let c = cstring(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: the child only calls async-signal-safe functions (open,
        // fcntl, _exit) on data prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: see above; `lock` is plain old data.
            unsafe {
                let fd = libc::open(c.as_ptr(), libc::O_RDWR);
                let mut lock: libc::flock = std::mem::zeroed();
                lock.l_type = libc::F_WRLCK as libc::c_short;
                lock.l_whence = libc::SEEK_SET as libc::c_short;
                lock.l_len = 4;
                let got = fd >= 0 && libc::fcntl(fd, libc::F_SETLK, &lock) == 0;
                libc::_exit(if got { 0 } else { 3 });
            }
        }
        assert!(pid > 0);
        let mut status = 0;
        // SAFETY: waiting for our own child; `status` is valid for writes.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(libc::WEXITSTATUS(status), 3, "the lock is held");
    }
}
