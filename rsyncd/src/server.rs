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
        opts: crate::session::modopts::ModuleOpts::for_module(m),
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
