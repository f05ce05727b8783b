//! Listeners, module start-up and the accept loops.
//!
//! One process may listen on several ports (our `daemon port` module
//! parameter; see docs/operations.md): each module is served only on its
//! listener, and each listener has its own session caps, so a flood of
//! public clients cannot use up the capacity of a private listener.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use filelist_cache::{OpenSource, SnapshotStore, StoreOptions, Stores, WatchStatus};
use protocol::error::DecodeError;
use protocol::filter::{DaemonFilterParams, FilterList};

use crate::access::auth::{self, AuthConfig};
use crate::access::hosts::{HostAcl, HostName, HostTokenError, Peer, PeerInfo, SystemResolver};
use crate::access::identity::{self, Identity, ModuleAccess};
use crate::access::limits::{CapExceeded, CapGuard, HandshakePool, HandshakeRefused, HandshakeTicket, SessionCaps};
use crate::access::refuse::RefuseRules;
use crate::config::{Config, Global, Module, SocketOption, SocketOptionName};
use crate::module::{ModuleStore, ListenerSpec, ModuleRules, ModuleRuntime, ServerState, SessionSettings};
use crate::proxy::{self, ProxyHeader};
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
    /// A `proxy protocol hosts` token does not parse.
    #[error("proxy protocol hosts: {0}")]
    ProxyHosts(#[from] HostTokenError),
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
    lazy: bool,
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
    let store = if lazy {
        let (path, state_dir, store_name, name) = (m.path.clone(), state_dir.to_path_buf(), store_name.to_string(), m.name.clone());
        ModuleStore::lazy(Box::new(move || open_store(&name, &path, &state_dir, &store_name, watch)))
    } else {
        // A module defined twice (same name, e.g. on two listeners) with the
        // same path shares one store: a store holds an exclusive lock.
        match opened.iter().find(|(n, p, _, _)| n == store_name && *p == m.path) {
            Some((_, _, st, w)) => ModuleStore::ready(st.clone(), *w),
            None => {
                let (store, watching) = open_store(&m.name, &m.path, state_dir, store_name, watch).map_err(err)?;
                opened.push((store_name.to_string(), m.path.clone(), store.clone(), watching));
                ModuleStore::ready(store, watching)
            }
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
        root,
        daemon_filter,
        listener,
        rules,
        opts: crate::session::modopts::ModuleOpts::for_module(m),
        ffl: m.fullfiletimelist.clone().map(|n| crate::ffl::Ffl::new(n, m.fullfiletimelist_checksums.clone())),
        sum_cache: m.checksum_cache.then(|| crate::sumcache::SumCache::shared(state_dir, store_name, m.checksum_cache_rate)),
    })
}

/// Open (or build) one module's snapshot store; logs how, and whether its
/// fanotify watcher is active. Returns the store and that flag.
fn open_store(module: &str, path: &Path, state_dir: &Path, store_name: &str, watch: bool) -> Result<(SnapshotStore, bool), String> {
    open_store_locked(module, path, state_dir, store_name, watch).map_err(|(e, _)| e)
}

/// [`open_store`]; the error says whether the store's lock is held (by
/// another process, or by a store of this one still in use).
fn open_store_locked(
    module: &str,
    path: &Path,
    state_dir: &Path,
    store_name: &str,
    watch: bool,
) -> Result<(SnapshotStore, bool), (String, bool)> {
    // A first build of a large tree on a terminal shows its progress.
    let progress = filelist_cache::ScanProgress::new();
    let display = crate::progress::start(module, progress.clone());
    let opts = StoreOptions { watch, progress: Some(progress), ..StoreOptions::default() };
    let opened = SnapshotStore::open_or_build_with(path, state_dir, store_name, opts);
    drop(display);
    let (store, report) = opened.map_err(|e| {
        let locked = matches!(e, filelist_cache::StoreError::Locked { .. });
        (format!("snapshot of {}: {e}", path.display()), locked)
    })?;
    for (file, why) in &report.rejected {
        tracing::warn!(module = %module, file = %file.display(), "snapshot file rejected (rebuilt): {why}");
    }
    if let Some(b) = &report.build {
        for issue in &b.errors {
            tracing::warn!(module = %module, path = %String::from_utf8_lossy(&issue.path), "{}", issue.message);
        }
    }
    let how = match report.source {
        OpenSource::Opened => "snapshot opened from disk (reconciling in the background)",
        OpenSource::Built => "snapshot built",
    };
    tracing::info!(module = %module, entries = report.entries, generation = report.generation,
        elapsed_ms = report.elapsed.as_millis() as u64, "{how}");
    match &report.watch {
        WatchStatus::Active => tracing::info!(module = %module, "fanotify watcher active"),
        WatchStatus::Unavailable(why) => {
            tracing::warn!(module = %module, "fanotify watcher unavailable ({why}); relying on rescans and `rsyncd refresh`")
        }
        WatchStatus::Disabled => {}
    }
    Ok((store, report.watch == WatchStatus::Active))
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

/// Starts module `m`'s `checksum cache` filler on `store`, when it has one
/// (modules sharing a store share its cache and its one filler).
pub(crate) fn start_sum_filler(m: &ModuleRuntime, store: &SnapshotStore) -> Option<crate::sumcache::Filler> {
    let cache = m.sum_cache.as_ref()?;
    match cache.start(store.clone(), &m.path, &m.name) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(module = %m.name, "cannot start the checksum cache: {e}");
            None
        }
    }
}

/// Starts every module store's background work (fanotify watcher and
/// maintenance, periodic rescans, `checksum cache` fillers) as a
/// [`crate::reload::Backgrounds`] set that a configuration reload can update, with the stores' publications reported
/// to the metrics and to `triggers`.
pub fn start_background_set(state: &ServerState, triggers: Option<Arc<crate::triggers::Triggers>>) -> crate::reload::Backgrounds {
    let mut set = crate::reload::Backgrounds::new(triggers);
    set.sync(state);
    set
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
/// background work with [`start_background_set`] before serving.
pub fn build_state(
    config: &Config,
    state_dir: &Path,
    settings: SessionSettings,
    main_port: u16,
    watch: bool,
) -> Result<ServerState, StartError> {
    build_state_with(config, state_dir, settings, main_port, watch, false)
}

/// [`build_state`] for one connection (inetd, rsh): `lazy` opens a module's
/// store only when a session asks for that module.
pub fn build_state_with(
    config: &Config,
    state_dir: &Path,
    settings: SessionSettings,
    main_port: u16,
    watch: bool,
    lazy: bool,
) -> Result<ServerState, StartError> {
    build_state_from(config, state_dir, settings, main_port, watch, lazy, None)
}

/// [`build_state`] for a configuration reload: modules of `old` with the
/// same name and path keep their open store (snapshot, watcher, background
/// work); the others are opened (or built) now, under another store name
/// when theirs is still held by a store of `old` (`NAME~rN`); the listeners
/// keep `old`'s session caps when the ports are the same.
pub fn build_state_reusing(
    config: &Config,
    state_dir: &Path,
    settings: SessionSettings,
    main_port: u16,
    watch: bool,
    old: &ServerState,
) -> Result<ServerState, StartError> {
    build_state_from(config, state_dir, settings, main_port, watch, false, Some(old))
}

#[allow(clippy::too_many_arguments)]
fn build_state_from(
    config: &Config,
    state_dir: &Path,
    settings: SessionSettings,
    main_port: u16,
    watch: bool,
    lazy: bool,
    reuse: Option<&ServerState>,
) -> Result<ServerState, StartError> {
    std::fs::create_dir_all(state_dir).map_err(|e| StartError::Module {
        module: "*".into(),
        message: format!("creating state dir {}: {e}", state_dir.display()),
    })?;
    let daemon = identity::process_identity();
    let ports = listener_ports(config, main_port);
    let mut names = store_names(config);
    let mut opened = Vec::new();
    if let Some(old) = reuse {
        reuse_stores(config, state_dir, watch, old, &mut names, &mut opened)?;
    }
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
            lazy,
            &mut opened,
        )?));
    }
    // Like session lookups, the last definition of a name wins.
    let mut stores = Stores::new();
    for m in &modules {
        if let Some(store) = m.store.if_open() {
            stores.insert(&m.name, store.clone());
        }
    }
    let motd = match &config.global.motd_file {
        Some(p) => Some(std::fs::read(p).map_err(|err| StartError::Motd { path: p.clone(), err })?),
        None => None,
    };
    let same_ports = reuse.is_some_and(|old| old.listeners.iter().map(|l| l.port).eq(ports.iter().copied()));
    let listeners = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| ListenerSpec {
            port,
            caps: match reuse {
                Some(old) if same_ports => old.listeners[i].caps.clone(),
                _ => SessionCaps::new(config.global.max_sessions, config.global.max_sessions_per_host),
            },
        })
        .collect();
    let flist_cache = crate::session::liststream::FlistCache::new(settings.flist_cache_bytes);
    Ok(ServerState { modules, stores, listeners, motd, settings, daemon_is_root: daemon.is_root(), flist_cache })
}

/// Opens the stores of a reloaded configuration ahead of
/// [`module_runtime`]: a module of `old` with the same name and path keeps
/// its store; another module's store is opened now, under `NAME~rN` when
/// its name is held by a store still in use. Sets `names` to the store
/// names used and records the stores in `opened`.
fn reuse_stores(
    config: &Config,
    state_dir: &Path,
    watch: bool,
    old: &ServerState,
    names: &mut [String],
    opened: &mut Vec<(String, PathBuf, SnapshotStore, bool)>,
) -> Result<(), StartError> {
    let held: Vec<String> = old.modules.iter().filter_map(|m| m.store.if_open().map(|s| s.name().to_string())).collect();
    for (i, m) in config.modules.iter().enumerate() {
        let same = old.modules.iter().rev().find(|o| o.name == m.name && o.path == m.path && o.store.if_open().is_some());
        if let Some(o) = same {
            let store = o.store.if_open().cloned().ok_or_else(|| StartError::Module {
                module: m.name.clone(),
                message: "store vanished".into(),
            })?;
            names[i] = store.name().to_string();
            if !opened.iter().any(|(n, p, _, _)| *n == names[i] && *p == m.path) {
                opened.push((names[i].clone(), m.path.clone(), store, o.store.watching()));
            }
            continue;
        }
        // A second definition of a module opened above shares its store.
        if let Some(j) = (0..i).find(|&j| config.modules[j].name == m.name && config.modules[j].path == m.path) {
            names[i] = names[j].clone();
            continue;
        }
        let base = names[i].clone();
        let mut candidate = base.clone();
        let mut n = 0;
        loop {
            let taken = held.contains(&candidate) || names[..i].contains(&candidate) || opened.iter().any(|(x, _, _, _)| *x == candidate);
            if !taken {
                match open_store_locked(&m.name, &m.path, state_dir, &candidate, watch) {
                    Ok((store, watching)) => {
                        opened.push((candidate.clone(), m.path.clone(), store, watching));
                        names[i] = candidate;
                        break;
                    }
                    Err((_, true)) if n < 16 => {}
                    Err((message, _)) => return Err(StartError::Module { module: m.name.clone(), message }),
                }
            }
            n += 1;
            if n > 16 {
                return Err(StartError::Module { module: m.name.clone(), message: format!("no free store name near {base}") });
            }
            candidate = format!("{base}~r{n}");
        }
    }
    Ok(())
}

/// Most sessions served at once per listener by default (`max sessions`).
pub const DEFAULT_MAX_SESSIONS: usize = 1024;

/// How the listeners treat sockets and connections: the global
/// `listen backlog`, `socket options` and `proxy protocol` settings.
#[derive(Debug, Clone)]
pub struct NetSettings {
    /// `listen backlog`.
    pub listen_backlog: u32,
    /// `socket options`, set on each listening and each accepted socket.
    pub socket_options: Vec<SocketOption>,
    /// `proxy protocol`: `None` when off.
    pub proxy: Option<ProxyPolicy>,
    /// `max handshakes`: connections per listener in their handshake at once.
    pub max_handshakes: usize,
    /// `max handshakes per host`.
    pub max_handshakes_per_host: usize,
}

/// The backlog when `listen backlog` is unset: std's `TcpListener`'s, what
/// the daemon always used.  Stock's default of 5 drops SYNs as soon as a
/// handful of clients connect at once (measured: 20 s stalls in our hostile
/// tests from SYN retransmits), so it applies only when written out.
pub const UNSET_LISTEN_BACKLOG: u32 = 128;

impl Default for NetSettings {
    fn default() -> Self {
        NetSettings {
            listen_backlog: UNSET_LISTEN_BACKLOG,
            socket_options: Vec::new(),
            proxy: None,
            max_handshakes: crate::access::limits::DEFAULT_MAX_HANDSHAKES,
            max_handshakes_per_host: crate::access::limits::DEFAULT_MAX_HANDSHAKES_PER_HOST,
        }
    }
}

impl NetSettings {
    /// From the global section.
    pub fn from_global(g: &Global) -> Result<NetSettings, StartError> {
        let proxy = if g.proxy_protocol {
            let trusted = if g.proxy_protocol_hosts.is_empty() {
                None
            } else {
                Some(HostAcl::from_tokens(&g.proxy_protocol_hosts, &[], false, false)?)
            };
            Some(ProxyPolicy { trusted })
        } else {
            None
        };
        Ok(NetSettings {
            listen_backlog: g.listen_backlog.unwrap_or(UNSET_LISTEN_BACKLOG),
            socket_options: g.socket_options.clone(),
            proxy,
            max_handshakes: g.max_handshakes,
            max_handshakes_per_host: g.max_handshakes_per_host,
        })
    }
}

/// `proxy protocol = yes`: every connection must start with a PROXY header
/// (V1 or V2), and only from a trusted peer.
#[derive(Debug, Clone)]
pub struct ProxyPolicy {
    /// `proxy protocol hosts`; `None` (unset) trusts no peer, as stock 3.5.0.
    pub trusted: Option<HostAcl>,
}

impl ProxyPolicy {
    /// May the socket peer `peer` send a PROXY header?  Mirrors access.c
    /// `allow_proxy_protocol_peer()`: the list's address tokens, no DNS (a
    /// host-name pattern is matched against `UNDETERMINED`, so only `*`
    /// style patterns can match).
    pub fn trusts(&self, peer: &SocketAddr) -> bool {
        let Some(acl) = &self.trusted else {
            return false;
        };
        let resolver = SystemResolver::default();
        let mut who = PeerInfo::new(Peer::from_socket(peer), &resolver);
        acl.allows(&mut who)
    }
}

/// The `IP_TOS` values of stock's `IPTOS_*` options.
const IPTOS_LOWDELAY: libc::c_int = 0x10;
const IPTOS_THROUGHPUT: libc::c_int = 0x08;

/// Set `opts` on a socket, each as an `int` like socket.c
/// `set_socket_options()`; returns the options that failed and why.
pub fn apply_socket_options(sock: &impl AsFd, opts: &[SocketOption]) -> Vec<(SocketOptionName, std::io::Error)> {
    let fd = sock.as_fd().as_raw_fd();
    let mut failed = Vec::new();
    for o in opts {
        use SocketOptionName as N;
        let (level, name, value) = match o.name {
            N::KeepAlive => (libc::SOL_SOCKET, libc::SO_KEEPALIVE, o.value),
            N::ReuseAddr => (libc::SOL_SOCKET, libc::SO_REUSEADDR, o.value),
            N::Broadcast => (libc::SOL_SOCKET, libc::SO_BROADCAST, o.value),
            N::TcpNoDelay => (libc::IPPROTO_TCP, libc::TCP_NODELAY, o.value),
            N::IpTosLowDelay => (libc::IPPROTO_IP, libc::IP_TOS, IPTOS_LOWDELAY),
            N::IpTosThroughput => (libc::IPPROTO_IP, libc::IP_TOS, IPTOS_THROUGHPUT),
            N::SndBuf => (libc::SOL_SOCKET, libc::SO_SNDBUF, o.value),
            N::RcvBuf => (libc::SOL_SOCKET, libc::SO_RCVBUF, o.value),
            N::SndLowat => (libc::SOL_SOCKET, libc::SO_SNDLOWAT, o.value),
            N::RcvLowat => (libc::SOL_SOCKET, libc::SO_RCVLOWAT, o.value),
            N::SndTimeo | N::RcvTimeo => continue,
        };
        // SAFETY: `fd` is borrowed from a live socket for the call; the
        // option value is a c_int on our stack and the length is its size.
        let r = unsafe {
            libc::setsockopt(fd, level, name, (&value as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
        };
        if r != 0 {
            failed.push((o.name, std::io::Error::last_os_error()));
        }
    }
    failed
}

/// Bind a listener on `addr` with `SO_REUSEADDR`, the `socket options`
/// and the `listen backlog` (mirrors socket.c `open_socket_in()` and
/// `start_accept_loop()`'s `listen()`).  An option that cannot be set is
/// logged with stock's text and does not stop the listener.
pub fn bind_listener(addr: SocketAddr, net: &NetSettings) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    for (name, e) in apply_socket_options(&s, &net.socket_options) {
        tracing::warn!("failed to set socket option {}: {e}", name.name());
    }
    s.bind(&addr.into())?;
    s.listen(i32::try_from(net.listen_backlog).unwrap_or(i32::MAX))?;
    Ok(s.into())
}

/// Bind one socket per listener of `state`, on `address`.
pub fn bind_all(state: &ServerState, address: IpAddr, net: &NetSettings) -> std::io::Result<Vec<TcpListener>> {
    state
        .listeners
        .iter()
        .map(|l| {
            let addr = SocketAddr::new(address, l.port);
            bind_listener(addr, net).map_err(|e| std::io::Error::new(e.kind(), format!("cannot bind {addr}: {e}")))
        })
        .collect()
}

/// Accept connections on every listener, one thread per session; returns
/// only if an accept thread cannot be started.  Once a drain has begun (see
/// [`begin_drain`]) the accept loops end and this waits for the process to
/// exit (the signal handler ends it when the sessions are done).
pub fn serve_all(listeners: Vec<TcpListener>, state: Arc<ServerState>, net: NetSettings) -> std::io::Result<()> {
    serve_all_shared(listeners, crate::reload::SharedState::new(state), net)
}

/// [`serve_all`] where each new connection is served with the state
/// `shared` holds when it is accepted (a reload replaces it; sessions keep
/// the one they started with).
pub fn serve_all_shared(listeners: Vec<TcpListener>, shared: Arc<crate::reload::SharedState>, net: NetSettings) -> std::io::Result<()> {
    let net = Arc::new(net);
    let mut handles = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let st = shared.clone();
        let net = net.clone();
        handles.push(std::thread::Builder::new().name(format!("accept-{i}")).spawn(move || serve_shared(l, st, i, net))?);
    }
    for h in handles {
        let _ = h.join();
    }
    while draining() {
        std::thread::park();
    }
    Ok(())
}

/// Count a session from `peer`, or turn the client away with stock's
/// `max connections` text when a cap is full.
fn enter(caps: &Arc<SessionCaps>, stream: &TcpStream, peer: SocketAddr) -> Option<CapGuard> {
    match caps.try_enter(peer.ip()) {
        Ok(g) => Some(g),
        Err(why) => {
            let n = match why {
                CapExceeded::Total(n) | CapExceeded::PerHost(n) => n,
            };
            tracing::info!(peer = %peer, "session refused: {why:?}");
            crate::metrics::refused(crate::metrics::Refusal::MaxSessions, None);
            send_busy(stream, n);
            None
        }
    }
}

/// Turn a client away before its handshake: our greeting, stock's `@ERROR:
/// max connections (N) reached -- try again later`, and our side shut.
/// Keep the socket open a moment longer (see [`Lingering`]) so the client's
/// next write does not fail before it has read the error.
fn send_busy(mut stream: &TcpStream, n: usize) {
    use std::io::Write;
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let mut b = protocol::greeting::server_greeting();
    b.extend_from_slice(&protocol::greeting::error_line(&format!("max connections ({n}) reached -- try again later")));
    let _ = stream.write_all(&b);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Connections turned away by the accept loop ([`send_busy`]), kept open
/// for [`Lingering::FOR`] so that the client, which writes its greeting and
/// module name before it reads our answer, reads the error (stock client:
/// exit 5) instead of failing on a reset connection (exit 12).  At most
/// [`Lingering::MAX`]; the oldest goes first.
struct Lingering(std::collections::VecDeque<(Instant, TcpStream)>);

impl Lingering {
    const FOR: Duration = Duration::from_secs(2);
    const MAX: usize = 256;

    fn push(&mut self, s: TcpStream) {
        self.purge();
        if self.0.len() >= Self::MAX {
            self.0.pop_front();
        }
        self.0.push_back((Instant::now(), s));
    }

    fn purge(&mut self) {
        while self.0.front().is_some_and(|(t, _)| t.elapsed() >= Self::FOR) {
            self.0.pop_front();
        }
    }

    /// Wait up to `t` for a connection to accept (so lingering sockets are
    /// closed on time when no connection comes); true if one is waiting (or
    /// the socket was shut: `accept()` then reports it).
    fn wait_for(listener: &TcpListener, t: Duration) -> bool {
        let mut p = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for the duration of the call.
        let r = unsafe { libc::poll(&mut p, 1, t.as_millis() as libc::c_int) };
        r > 0
    }
}

/// Why a PROXY header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProxyReadError {
    /// The bytes are not a PROXY header (or not a valid one).
    #[error(transparent)]
    Invalid(DecodeError),
    /// The peer closed the connection first.
    #[error("connection closed before the end of the PROXY header")]
    Eof,
    /// The deadline passed.
    #[error("timed out waiting for the PROXY header")]
    Timeout,
    /// A socket error.
    #[error("reading the PROXY header: {0}")]
    Io(std::io::Error),
}

/// Read the PROXY header at the start of `stream` by `deadline`, taking no
/// byte past it (mirrors clientname.c `read_proxy_protocol_header()`; the
/// decoding is [`proxy::parse`]).
pub fn read_proxy_header(stream: &TcpStream, deadline: Instant) -> Result<ProxyHeader, ProxyReadError> {
    let r = read_proxy_header_inner(stream, deadline);
    let _ = stream.set_read_timeout(None);
    r
}

fn read_proxy_header_inner(mut stream: &TcpStream, deadline: Instant) -> Result<ProxyHeader, ProxyReadError> {
    let mut buf = Vec::with_capacity(64);
    loop {
        let needed = match proxy::parse(&buf) {
            // `parse` asks for no byte past a valid header, so all of `buf` is header.
            Ok(c) if c.consumed == buf.len() => return Ok(c.header),
            Ok(_) => return Err(ProxyReadError::Invalid(DecodeError::invalid("PROXY header", "read past the header"))),
            Err(DecodeError::Incomplete { needed }) => needed,
            Err(e) => return Err(ProxyReadError::Invalid(e)),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProxyReadError::Timeout);
        }
        stream.set_read_timeout(Some(left)).map_err(ProxyReadError::Io)?;
        let start = buf.len();
        buf.resize(start + needed, 0);
        match stream.read(&mut buf[start..]) {
            Ok(0) => return Err(ProxyReadError::Eof),
            Ok(n) => buf.truncate(start + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => buf.truncate(start),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(ProxyReadError::Timeout)
            }
            Err(e) => return Err(ProxyReadError::Io(e)),
        }
    }
}

/// Admit a connection to its listener's handshake pool (closing the oldest
/// waiting connection when the pool is full), or turn it away: a client
/// over its share gets stock's `max connections` text.
fn admit_handshake(pool: &Arc<HandshakePool>, stream: &TcpStream, client: SocketAddr) -> Option<HandshakeTicket> {
    // A second handle, for the pool to shut the connection down.
    let handle = match stream.try_clone() {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(peer = %client, "connection closed: {e}");
            return None;
        }
    };
    match pool.try_enter(client.ip(), handle) {
        Ok(a) => {
            if let Some(ip) = a.evicted {
                tracing::debug!(evicted = %ip, "handshake pool full ({}): closed the connection waiting longest", pool.max_total);
            }
            Some(a.ticket)
        }
        Err(why @ (HandshakeRefused::PerHost(n) | HandshakeRefused::Full(n))) => {
            tracing::info!(peer = %client, "session refused: too many connections in their handshake ({why:?})");
            crate::metrics::refused(crate::metrics::Refusal::MaxSessions, None);
            send_busy(stream, n);
            None
        }
        Err(HandshakeRefused::Closed) => None,
    }
}

/// Logs a recurring problem of an accept loop at most once per interval,
/// with the number of occurrences in between.
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    const EVERY: Duration = Duration::from_secs(10);

    fn new() -> Throttled {
        Throttled { last: None, suppressed: 0 }
    }

    fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        if self.last.is_some_and(|t| t.elapsed() < Self::EVERY) {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            tracing::warn!("{what} ({} more since the last report)", self.suppressed);
        } else {
            tracing::warn!("{what}");
        }
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

/// The accept loop's way out of descriptor exhaustion: a descriptor held in
/// reserve (a duplicate of the listening socket).  When `accept()` fails
/// with EMFILE/ENFILE the pending connection stays queued and the next
/// `accept()` fails again at once; giving up the reserve lets us accept
/// that connection and close it (shedding load) instead of spinning.  The
/// accepted descriptor then becomes the new reserve in one step (`dup2`
/// over it closes the connection), so no other thread can take the slot.
struct FdReserve(Option<std::os::fd::OwnedFd>);

impl FdReserve {
    fn new(listener: &TcpListener) -> FdReserve {
        FdReserve(listener.as_fd().try_clone_to_owned().ok())
    }

    /// Accept one connection and close it at once; false when there was no
    /// reserve to give up (the caller then waits a little).
    fn shed_one(&mut self, listener: &TcpListener) -> bool {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let Some(fd) = self.0.take() else {
            self.0 = listener.as_fd().try_clone_to_owned().ok();
            return false;
        };
        drop(fd);
        match listener.accept() {
            Ok((stream, _)) => {
                let raw = stream.into_raw_fd();
                // SAFETY: `raw` is the descriptor we just took out of the
                // stream (so we own it) and the listener's descriptor is
                // open; dup2 closes the connection and leaves `raw` a
                // duplicate of the listener, which we own from here on.
                self.0 = unsafe {
                    if libc::dup2(listener.as_raw_fd(), raw) == raw {
                        Some(std::os::fd::OwnedFd::from_raw_fd(raw))
                    } else {
                        drop(TcpStream::from_raw_fd(raw));
                        None
                    }
                };
                true
            }
            Err(_) => {
                self.0 = listener.as_fd().try_clone_to_owned().ok();
                false
            }
        }
    }
}

fn is_out_of_fds(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Accept connections on listener `index` until the daemon drains.
pub fn serve(listener: TcpListener, state: Arc<ServerState>, index: usize, net: Arc<NetSettings>) {
    serve_shared(listener, crate::reload::SharedState::new(state), index, net)
}

/// [`serve`] with the state `shared` holds when each connection arrives.
pub fn serve_shared(listener: TcpListener, shared: Arc<crate::reload::SharedState>, index: usize, net: Arc<NetSettings>) {
    let caps = match shared.load().listeners.get(index) {
        Some(l) => l.caps.clone(),
        None => return,
    };
    // Connections from trusted proxies whose header is still being read:
    // no more of them than sessions.
    let pending = SessionCaps::new(caps.max_total, caps.max_total);
    // Connections in their handshake (greeting to arguments).
    let pool = HandshakePool::new(net.max_handshakes, net.max_handshakes_per_host, crate::access::limits::EVICT_AFTER);
    register_for_drain(&listener, &pool);
    let mut reserve = FdReserve::new(&listener);
    let mut accept_trouble = Throttled::new();
    let mut spawn_trouble = Throttled::new();
    let mut lingering = Lingering(Default::default());
    loop {
        // Wait in poll(), not in accept(): lingering sockets are closed on
        // time, and a drain is seen even on a socket that is not shut
        // (one systemd passed, which must stay open for the next start).
        let ready = Lingering::wait_for(&listener, Duration::from_millis(250));
        lingering.purge();
        if draining() {
            return;
        }
        if !ready {
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(_) if draining() => return,
            Err(e) if is_out_of_fds(&e) => {
                accept_trouble.warn(format_args!("accept failed: {e}; closing new connections until descriptors are free"));
                if !reserve.shed_one(&listener) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED) | Some(libc::EINTR)) => continue,
            Err(e) => {
                accept_trouble.warn(format_args!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if draining() {
            return;
        }
        let state = shared.load();
        crate::metrics::connection_accepted(index);
        for (name, e) in apply_socket_options(&stream, &net.socket_options) {
            tracing::debug!(peer = %peer, "failed to set socket option {}: {e}", name.name());
        }
        // Stock's daemon turns keepalive on for every connection (start_daemon).
        let _ = socket2::SockRef::from(&stream).set_keepalive(true);
        let Some(policy) = &net.proxy else {
            let Some(guard) = enter(&caps, &stream, peer) else {
                lingering.push(stream);
                continue;
            };
            let Some(ticket) = admit_handshake(&pool, &stream, peer) else {
                lingering.push(stream);
                continue;
            };
            // Every descriptor the session starts with is made here, in
            // turn with the accept loop's reserve (see `FdReserve`).
            let Ok(read_half) = stream.try_clone() else {
                continue;
            };
            let st = state.clone();
            let counted = InFlight::new();
            let spawned = std::thread::Builder::new().name(format!("session-{peer}")).spawn(move || {
                let _counted = counted;
                let _guard = guard;
                let _ = crate::session::serve_connection_pooled(stream, read_half, peer, st, index, Some(ticket));
            });
            if let Err(e) = spawned {
                spawn_trouble.warn(format_args!("cannot start session thread: {e}"));
            }
            continue;
        };
        if !policy.trusts(&peer) {
            // Mirrors clientserver.c proxy_peer_allowed(): closed without a word.
            let addr = Peer::from_socket(&peer).addr;
            crate::logging::log_global(&format!(
                "proxy protocol rejected from untrusted peer {} ({addr})",
                HostName::Undetermined.shown()
            ));
            crate::metrics::refused(crate::metrics::Refusal::ProxyUntrusted, None);
            continue;
        }
        let Ok(waiting) = pending.try_enter(peer.ip()) else {
            tracing::info!(peer = %peer, "too many connections waiting for their PROXY header; closed");
            continue;
        };
        let st = state.clone();
        let caps = caps.clone();
        let pool = pool.clone();
        let deadline = Instant::now() + st.settings.handshake_timeout;
        let counted = InFlight::new();
        let spawned = std::thread::Builder::new().name(format!("session-{peer}")).spawn(move || {
            let _counted = counted;
            let header = match read_proxy_header(&stream, deadline) {
                Ok(h) => h,
                Err(e) => {
                    // Stock's start_daemon() returns at once: no greeting.
                    tracing::info!(peer = %peer, "{e}; connection closed");
                    return;
                }
            };
            drop(waiting);
            let client = header.source.unwrap_or(peer);
            tracing::debug!(proxy = %peer, client = %client, version = ?header.version, "PROXY header");
            let Some(_guard) = enter(&caps, &stream, client) else {
                std::thread::sleep(Lingering::FOR);
                return;
            };
            let Some(ticket) = admit_handshake(&pool, &stream, client) else {
                std::thread::sleep(Lingering::FOR);
                return;
            };
            let Ok(read_half) = stream.try_clone() else {
                return;
            };
            let _ = crate::session::serve_connection_pooled(stream, read_half, client, st, index, Some(ticket));
        });
        if let Err(e) = spawned {
            spawn_trouble.warn(format_args!("cannot start session thread: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------
// Graceful stop (drain)
// ---------------------------------------------------------------------------

/// What a drain acts on: the listening sockets (to stop accepting), the
/// handshake pools (to close connections that have not finished their
/// handshake) and the number of session threads alive.
struct Lifecycle {
    draining: AtomicBool,
    listeners: Mutex<Vec<TcpListener>>,
    /// (device, inode) of listening sockets a drain must leave open.
    keep_open: Mutex<Vec<(u64, u64)>>,
    pools: Mutex<Vec<Arc<HandshakePool>>>,
    sessions: Mutex<usize>,
    idle: Condvar,
}

static LIFECYCLE: Lifecycle = Lifecycle {
    draining: AtomicBool::new(false),
    listeners: Mutex::new(Vec::new()),
    keep_open: Mutex::new(Vec::new()),
    pools: Mutex::new(Vec::new()),
    sessions: Mutex::new(0),
    idle: Condvar::new(),
};

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Shut a listening socket: a blocked `accept()` returns (EINVAL) and
/// connections queued but not accepted are reset; new ones are refused.
fn shut_listener(l: &TcpListener) {
    let _ = socket2::SockRef::from(l).shutdown(std::net::Shutdown::Both);
}

fn socket_id(l: &TcpListener) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let f = std::fs::File::from(l.as_fd().try_clone_to_owned().ok()?);
    f.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// A drain leaves `listener` open (not shut): a socket systemd passed
/// (socket activation) is shared with systemd, which keeps queueing
/// connections on it for the next start.
pub fn keep_open_on_drain(listener: &TcpListener) {
    if let Some(id) = socket_id(listener) {
        locked(&LIFECYCLE.keep_open).push(id);
    }
}

fn register_for_drain(listener: &TcpListener, pool: &Arc<HandshakePool>) {
    locked(&LIFECYCLE.pools).push(pool.clone());
    let keep = socket_id(listener).is_some_and(|id| locked(&LIFECYCLE.keep_open).contains(&id));
    if !keep {
        if let Ok(c) = listener.try_clone() {
            locked(&LIFECYCLE.listeners).push(c);
        }
        // A drain that began before this listener was registered.
        if draining() {
            shut_listener(listener);
        }
    }
    if draining() {
        pool.close_all();
    }
}

/// One session thread alive (from before its spawn to its end, `post-xfer
/// exec` included).
struct InFlight(());

impl InFlight {
    fn new() -> InFlight {
        *locked(&LIFECYCLE.sessions) += 1;
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut n = locked(&LIFECYCLE.sessions);
        *n = n.saturating_sub(1);
        if *n == 0 {
            LIFECYCLE.idle.notify_all();
        }
    }
}

/// Start a graceful stop: every listener stops accepting (its socket is
/// shut, so new connections are refused; a socket from systemd is left
/// open, see [`keep_open_on_drain`]), connections still in their handshake
/// are closed, and sessions past it go on.  Returns the number of
/// session threads still running.  Idempotent.
pub fn begin_drain() -> usize {
    LIFECYCLE.draining.store(true, Ordering::SeqCst);
    for l in locked(&LIFECYCLE.listeners).drain(..) {
        shut_listener(&l);
    }
    for p in locked(&LIFECYCLE.pools).iter() {
        p.close_all();
    }
    sessions_in_flight()
}

/// A drain has begun.
pub fn draining() -> bool {
    LIFECYCLE.draining.load(Ordering::SeqCst)
}

/// Session threads running now (including connections in their handshake).
pub fn sessions_in_flight() -> usize {
    *locked(&LIFECYCLE.sessions)
}

/// Wait until no session thread runs, at most `timeout`; returns how many
/// still run.
pub fn wait_for_sessions(timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    let mut n = locked(&LIFECYCLE.sessions);
    while *n > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        n = LIFECYCLE.idle.wait_timeout(n, left).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
    }
    *n
}

/// Bind a listener on `addr` (default backlog, no socket options).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    bind_listener(addr, &NetSettings::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpStream;

    fn getsockopt_int(sock: &impl AsFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the fd is live for the call; `v` and `len` are valid for writes of their sizes.
        let r = unsafe { libc::getsockopt(sock.as_fd().as_raw_fd(), level, name, (&mut v as *mut libc::c_int).cast(), &mut len) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
        v
    }

    fn opts(text: &str) -> Vec<SocketOption> {
        crate::config::parse_socket_options(text).0
    }

    fn loopback(net: &NetSettings) -> TcpListener {
        bind_listener("127.0.0.1:0".parse().unwrap(), net).unwrap()
    }

    #[test]
    fn socket_options_reach_listener_and_accepted_sockets() {
        let net = NetSettings {
            socket_options: opts("SO_KEEPALIVE TCP_NODELAY SO_SNDBUF=65536 SO_RCVBUF=32768 IPTOS_THROUGHPUT"),
            ..NetSettings::default()
        };
        let l = loopback(&net);
        assert_eq!(getsockopt_int(&l, libc::SOL_SOCKET, libc::SO_REUSEADDR), 1);
        assert_eq!(getsockopt_int(&l, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        let _c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(apply_socket_options(&s, &net.socket_options).is_empty());
        assert_eq!(getsockopt_int(&s, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(getsockopt_int(&s, libc::IPPROTO_TCP, libc::TCP_NODELAY), 1);
        // Linux doubles the buffer sizes it is given.
        assert!(getsockopt_int(&s, libc::SOL_SOCKET, libc::SO_SNDBUF) >= 65536);
        let rcv = getsockopt_int(&s, libc::SOL_SOCKET, libc::SO_RCVBUF);
        assert!((32768..=2 * 32768).contains(&rcv), "{rcv}");
        assert_eq!(getsockopt_int(&s, libc::IPPROTO_IP, libc::IP_TOS) & 0xfc, IPTOS_THROUGHPUT);
        // A value of 0 turns a boolean off.
        assert!(apply_socket_options(&s, &opts("TCP_NODELAY=0")).is_empty());
        assert_eq!(getsockopt_int(&s, libc::IPPROTO_TCP, libc::TCP_NODELAY), 0);
    }

    #[test]
    fn socket_option_failures_are_reported_not_fatal() {
        // Linux has no settable SO_SNDLOWAT (ENOPROTOOPT), as stock finds too.
        let net = NetSettings { socket_options: opts("SO_SNDLOWAT=10 SO_KEEPALIVE"), ..NetSettings::default() };
        let l = loopback(&net);
        let failed = apply_socket_options(&l, &net.socket_options);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, SocketOptionName::SndLowat);
        assert_eq!(getsockopt_int(&l, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
    }

    /// The accept queue holds `backlog + 1` connections on Linux; past
    /// that the listener drops SYNs and a connect times out.
    #[test]
    fn listen_backlog_bounds_the_accept_queue() {
        for backlog in [0u32, 3] {
            let l = loopback(&NetSettings { listen_backlog: backlog, ..NetSettings::default() });
            let addr = l.local_addr().unwrap();
            let mut held = Vec::new();
            for i in 0..=backlog {
                held.push(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap_or_else(|e| panic!("{i}: {e}")));
            }
            let over = TcpStream::connect_timeout(&addr, Duration::from_millis(400));
            assert!(over.is_err(), "backlog {backlog}: connection {} was queued", backlog + 2);
            drop(l);
        }
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn proxy_header_is_read_and_nothing_after_it() {
        for v2 in [false, true] {
            let (mut c, s) = pair();
            let src: SocketAddr = "203.0.113.9:41000".parse().unwrap();
            let mut b = Vec::new();
            if v2 {
                proxy::encode_v2(src, "10.1.1.1:873".parse().unwrap(), &mut b);
            } else {
                proxy::encode_v1(src, "10.1.1.1:873".parse().unwrap(), &mut b);
            }
            b.extend_from_slice(b"@RSYNCD: 32.0\n");
            // In pieces, as a slow proxy might send it.
            let t = std::thread::spawn(move || {
                for chunk in b.chunks(5) {
                    c.write_all(chunk).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
                c
            });
            let h = read_proxy_header(&s, soon()).unwrap();
            assert_eq!(h.source, Some(src));
            let _c = t.join().unwrap();
            let mut rest = [0u8; 14];
            (&s).read_exact(&mut rest).unwrap();
            assert_eq!(&rest, b"@RSYNCD: 32.0\n");
        }
    }

    #[test]
    fn proxy_header_failures() {
        // No header: the client's greeting is rejected at once.
        let (mut c, s) = pair();
        c.write_all(b"@RSYNCD: 32.0 sha512\n").unwrap();
        assert!(matches!(read_proxy_header(&s, soon()), Err(ProxyReadError::Invalid(_))));
        // Closed half way.
        let (mut c, s) = pair();
        c.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
        drop(c);
        assert!(matches!(read_proxy_header(&s, soon()), Err(ProxyReadError::Eof)));
        // Silent past the deadline.
        let (mut c, s) = pair();
        c.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
        let t0 = Instant::now();
        let r = read_proxy_header(&s, Instant::now() + Duration::from_millis(200));
        assert!(matches!(r, Err(ProxyReadError::Timeout)), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        // An endless line stops at 107 bytes.
        let (mut c, s) = pair();
        c.write_all(&[b"PROXY ".as_slice(), &[b'1'; 500]].concat()).unwrap();
        assert!(matches!(read_proxy_header(&s, soon()), Err(ProxyReadError::Invalid(_))));
    }

    #[test]
    fn proxy_policy_trusts_listed_peers_only() {
        let sa = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let g = |hosts: &[&str]| {
            let mut c = crate::config::parse_str("[m]\npath = /x\n", Path::new("t")).unwrap().global;
            c.proxy_protocol = true;
            c.proxy_protocol_hosts = hosts.iter().map(|h| h.to_string()).collect();
            NetSettings::from_global(&c).unwrap().proxy.unwrap()
        };
        let p = g(&["127.0.0.1", "10.0.0.0/8", "proxy.example.org"]);
        assert!(p.trusts(&sa("127.0.0.1:5")));
        assert!(p.trusts(&sa("10.200.0.1:5")));
        assert!(p.trusts(&sa("[::ffff:127.0.0.1]:5")));
        assert!(!p.trusts(&sa("127.0.0.2:5")));
        assert!(!p.trusts(&sa("[::1]:5")));
        // Unset: nobody (stock 3.5.0 fails closed).
        assert!(!g(&[]).trusts(&sa("127.0.0.1:5")));
        assert!(g(&["*"]).trusts(&sa("192.0.2.1:5")));
        let mut off = crate::config::parse_str("[m]\npath = /x\n", Path::new("t")).unwrap().global;
        off.proxy_protocol_hosts = vec!["127.0.0.1".into()];
        assert!(NetSettings::from_global(&off).unwrap().proxy.is_none());
    }
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
