//! Configuration reload on SIGHUP, and the module stores' background work
//! as a set that a reload can change.
//!
//! A reload reads the configuration file again and builds a new
//! [`ServerState`] ([`crate::server::build_state_reusing`]): modules whose
//! name and path are unchanged keep their open snapshot store (no rescan,
//! the watcher and background work go on), new modules are opened (built)
//! before the switch, removed modules' background work stops. New
//! connections then get the new state from the [`SharedState`]; sessions
//! in flight keep the `Arc` of the state they started with, so they finish
//! with the old configuration. The logging and hook registries
//! ([`crate::logging::reload`], [`crate::exec::reload`]) and the change
//! triggers are switched at the same time.
//!
//! What a reload cannot change (the listeners are bound once): the set of
//! listener ports (`port`, `--port`, `daemon port` values) — a reload that
//! would change it is refused and the old configuration kept — and
//! `address`, `socket options`, `listen backlog`, `proxy protocol`,
//! `proxy protocol hosts`, `max sessions`, `max sessions per host`,
//! `handshake timeout`, `max handshakes`, `max handshakes per host`, `drain
//! timeout`, `pid file` and `metrics address`, which are logged as needing a
//! restart. A
//! configuration that does not load or whose modules cannot be served is
//! logged and the old one stays in force.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, RwLock};
use std::time::Duration;

use filelist_cache::{Background, SnapshotStore};

use crate::config::Global;
use crate::module::{ServerState, SessionSettings};
use crate::server::FALLBACK_RESCAN_INTERVAL;
use crate::triggers::Triggers;

/// The state new connections are served with; replaced by a reload.
pub struct SharedState {
    cur: RwLock<Arc<ServerState>>,
}

impl SharedState {
    /// Holds `state`.
    pub fn new(state: Arc<ServerState>) -> Arc<SharedState> {
        Arc::new(SharedState { cur: RwLock::new(state) })
    }

    /// The current state.
    pub fn load(&self) -> Arc<ServerState> {
        self.cur.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the state; returns the previous one.
    pub fn replace(&self, state: Arc<ServerState>) -> Arc<ServerState> {
        std::mem::replace(&mut *self.cur.write().unwrap_or_else(|p| p.into_inner()), state)
    }
}

/// One store's background work.
struct Running {
    /// Kept so the store outlives its background threads.
    _store: SnapshotStore,
    _background: Background,
    /// The periodic rescan in force, and the handle that stops its thread
    /// when dropped.
    rescan: Option<(Duration, mpsc::Sender<()>)>,
    /// The store's `checksum cache` filler, if a module wants one.
    _sums: Option<crate::sumcache::Filler>,
}

/// The background work of every served store: fanotify watcher,
/// maintenance, periodic rescans, and the publication observer that feeds
/// the metrics and the change triggers. [`Backgrounds::sync`] starts what a
/// state needs and stops what it no longer has.
pub struct Backgrounds {
    running: HashMap<String, Running>,
    triggers: Option<Arc<Triggers>>,
}

impl std::fmt::Debug for Backgrounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backgrounds").field("stores", &self.running.len()).finish()
    }
}

/// The periodic rescan a module wants: `rescan interval` seconds; unset:
/// none while its watcher works, [`FALLBACK_RESCAN_INTERVAL`] when not; 0:
/// none.
fn rescan_every(setting: Option<u32>, watching: bool) -> Option<Duration> {
    match setting {
        Some(0) => None,
        Some(n) => Some(Duration::from_secs(u64::from(n))),
        None if watching => None,
        None => Some(FALLBACK_RESCAN_INTERVAL),
    }
}

fn spawn_rescan(store: &SnapshotStore, module: &str, every: Duration) -> Option<mpsc::Sender<()>> {
    let (tx, rx) = mpsc::channel::<()>();
    let (store, name) = (store.clone(), module.to_string());
    let spawned = std::thread::Builder::new().name(format!("rescan-{}", store.name())).spawn(move || {
        // Any message, or the sender dropped, ends the thread.
        while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
            match store.rescan() {
                Ok(r) => tracing::debug!(module = %name, published = ?r.published, "periodic rescan"),
                Err(e) => tracing::warn!(module = %name, "periodic rescan failed: {e}"),
            }
        }
    });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(module = %module, "cannot start the rescan thread: {e}");
            None
        }
    }
}

impl Backgrounds {
    /// No stores yet; publications go to `triggers` (and the metrics).
    pub fn new(triggers: Option<Arc<Triggers>>) -> Backgrounds {
        Backgrounds { running: HashMap::new(), triggers }
    }

    /// Starts the background work of `state`'s open stores that have none
    /// yet, adjusts periodic rescans to the current settings, and stops the
    /// work of stores `state` no longer serves.
    pub fn sync(&mut self, state: &ServerState) {
        let mut keep: Vec<String> = Vec::new();
        for m in &state.modules {
            let Some(store) = m.store.if_open() else { continue };
            let key = store.name().to_string();
            if keep.contains(&key) {
                continue;
            }
            keep.push(key.clone());
            let every = rescan_every(m.rescan_interval, m.store.watching());
            if let Some(r) = self.running.get_mut(&key) {
                if r.rescan.as_ref().map(|(d, _)| *d) != every {
                    r.rescan = every.and_then(|d| {
                        tracing::info!(module = %m.name, seconds = d.as_secs(), "periodic rescan");
                        spawn_rescan(store, &m.name, d).map(|tx| (d, tx))
                    });
                }
                continue;
            }
            // The observer goes first: the background's first rescan may publish.
            let (name, trig) = (m.name.clone(), self.triggers.clone());
            let first = store.observe(Box::new(move |ev| {
                crate::metrics::publication(&name, ev);
                if let Some(t) = &trig {
                    t.published(&name, ev);
                }
            }));
            if let Some(t) = &self.triggers {
                t.baseline(&m.name, first);
            }
            let background = store.start_background();
            let rescan = every.and_then(|d| {
                tracing::info!(module = %m.name, seconds = d.as_secs(), "periodic rescan");
                spawn_rescan(store, &m.name, d).map(|tx| (d, tx))
            });
            // The first module on this store that keeps a checksum cache fills it.
            let sums = state
                .modules
                .iter()
                .filter(|o| o.store.if_open().is_some_and(|s| s.name() == store.name()))
                .find_map(|o| crate::server::start_sum_filler(o, store));
            self.running.insert(key, Running { _store: store.clone(), _background: background, rescan, _sums: sums });
        }
        self.running.retain(|k, _| keep.contains(k));
    }

    /// Names of the stores with background work (for tests and logs).
    pub fn stores(&self) -> Vec<String> {
        let mut v: Vec<String> = self.running.keys().cloned().collect();
        v.sort();
        v
    }
}

/// Called with each new state once it serves.
pub type OnReload = Box<dyn Fn(&Arc<ServerState>) + Send>;

/// Everything a reload needs to rebuild the state as start-up did.
pub struct Reloader {
    /// Where new connections find the state.
    pub shared: Arc<SharedState>,
    /// The configuration file (`None`: a directory given on the command
    /// line is served, there is nothing to read again).
    pub config_path: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: PathBuf,
    /// Session settings (from the command line; unchanged by a reload).
    pub settings: SessionSettings,
    /// `--port`, which overrides the configuration's `port`.
    pub cli_port: Option<u16>,
    /// The main port when neither `--port` nor `port` is set.
    pub default_port: u16,
    /// Set up fanotify watchers for new modules.
    pub watch: bool,
    /// The stores' background work.
    pub backgrounds: Backgrounds,
    /// The change triggers, if running.
    pub triggers: Option<Arc<Triggers>>,
    /// The global section in force (to tell which restart-only settings changed).
    pub global: Global,
    /// Called with each new state once it serves (the daemon keeps it for
    /// the shutdown path).
    pub on_reload: Option<OnReload>,
}

/// Global settings a reload cannot apply, with whether they differ.
pub fn restart_only_changes(old: &Global, new: &Global) -> Vec<&'static str> {
    let mut v = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            v.push(name);
        }
    };
    check("address", old.address != new.address);
    check("socket options", old.socket_options != new.socket_options);
    check("listen backlog", old.listen_backlog != new.listen_backlog);
    check("proxy protocol", old.proxy_protocol != new.proxy_protocol);
    check("proxy protocol hosts", old.proxy_protocol_hosts != new.proxy_protocol_hosts);
    check("max sessions", old.max_sessions != new.max_sessions);
    check("max sessions per host", old.max_sessions_per_host != new.max_sessions_per_host);
    check("handshake timeout", old.handshake_timeout != new.handshake_timeout);
    check("max handshakes", old.max_handshakes != new.max_handshakes);
    check("max handshakes per host", old.max_handshakes_per_host != new.max_handshakes_per_host);
    check("drain timeout", old.drain_timeout != new.drain_timeout);
    check("pid file", old.pid_file != new.pid_file);
    check("metrics address", old.metrics_address != new.metrics_address);
    v
}

impl Reloader {
    /// Reads the configuration again and, if it loads and every module can
    /// be served, switches new connections to it. On error nothing changes.
    /// Returns the number of modules now served.
    pub fn reload(&mut self) -> Result<usize, String> {
        let Some(path) = &self.config_path else {
            return Err("no configuration file to reload (serving a directory given on the command line)".into());
        };
        let cfg = crate::config::load(path).map_err(|e| e.to_string())?;
        for w in &cfg.warnings {
            tracing::warn!("{}", w.message);
        }
        let main_port = self.cli_port.or(cfg.global.port).unwrap_or(self.default_port);
        let old = self.shared.load();
        let new_ports = crate::server::listener_ports(&cfg, main_port);
        let old_ports: Vec<u16> = old.listeners.iter().map(|l| l.port).collect();
        if new_ports != old_ports {
            return Err(format!(
                "the listener ports would change ({old_ports:?} -> {new_ports:?}); restart the daemon to change listeners"
            ));
        }
        for name in restart_only_changes(&self.global, &cfg.global) {
            tracing::warn!("reload: \"{name}\" changed; it takes effect at the next restart");
        }
        // Check what can fail before anything is switched.
        crate::triggers::specs(&cfg)?;
        let _ = crate::server::NetSettings::from_global(&cfg.global).map_err(|e| e.to_string())?;
        let state = crate::server::build_state_reusing(&cfg, &self.state_dir, self.settings.clone(), main_port, self.watch, &old)
            .map_err(|e| e.to_string())?;
        let state = Arc::new(state);
        crate::logging::reload(&cfg);
        crate::exec::reload(&cfg);
        if let Some(t) = &self.triggers {
            t.configure(&cfg)?;
        }
        self.backgrounds.sync(&state);
        self.shared.replace(state.clone());
        if let Some(f) = &self.on_reload {
            f(&state);
        }
        self.global = cfg.global.clone();
        Ok(state.modules.len())
    }
}

/// The blocked SIGHUP, to be waited for by [`spawn_sighup_handler`].
pub struct HangupSignal(libc::sigset_t);

/// Blocks SIGHUP in this thread and every thread started after it (call
/// before any other thread starts, or a thread with SIGHUP unblocked would
/// let it kill the process).
pub fn block_sighup() -> std::io::Result<HangupSignal> {
    // SAFETY: `set` is a plain sigset_t initialised by sigemptyset before
    // use; pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGHUP);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(HangupSignal(set))
    }
}

/// Waits for SIGHUP on a thread of its own and reloads with `reloader`
/// each time (signals that arrive during a reload are merged into one
/// more reload). Tells the service manager (`RELOADING=1`, then
/// `READY=1` with a `STATUS=`).
pub fn spawn_sighup_handler(sig: HangupSignal, mut reloader: Reloader) -> std::io::Result<()> {
    std::thread::Builder::new().name("sighup".into()).spawn(move || loop {
        let mut n: libc::c_int = 0;
        // SAFETY: `sig.0` is an initialised sigset_t; `n` is valid for writes.
        if unsafe { libc::sigwait(&sig.0, &mut n) } != 0 {
            continue;
        }
        match &reloader.config_path {
            Some(p) => tracing::info!("SIGHUP: reloading {}", p.display()),
            None => tracing::info!("SIGHUP"),
        }
        crate::systemd::notify_or_log(&format!("RELOADING=1\nMONOTONIC_USEC={}", crate::systemd::monotonic_usec()));
        let status = match reloader.reload() {
            Ok(n) => {
                crate::metrics::reload(true);
                crate::logging::log_global(&format!("configuration reloaded: {n} module(s)"));
                format!("serving {n} module(s); configuration reloaded")
            }
            Err(e) => {
                crate::metrics::reload(false);
                crate::logging::log_global(&format!("configuration reload failed, keeping the old one: {e}"));
                format!("reload failed, old configuration kept: {e}")
            }
        };
        crate::systemd::notify_or_log(&format!("READY=1\nSTATUS={}", status.replace('\n', " ")));
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescan_intervals() {
        assert_eq!(rescan_every(None, true), None);
        assert_eq!(rescan_every(None, false), Some(FALLBACK_RESCAN_INTERVAL));
        assert_eq!(rescan_every(Some(0), false), None);
        assert_eq!(rescan_every(Some(7), true), Some(Duration::from_secs(7)));
    }

    #[test]
    fn restart_only_settings() {
        let g = |t: &str| crate::config::parse_str(&format!("{t}\n[m]\npath = /x\n"), std::path::Path::new("t")).unwrap().global;
        assert!(restart_only_changes(&g(""), &g("")).is_empty());
        assert_eq!(restart_only_changes(&g(""), &g("max sessions = 5\nmotd file = /etc/motd")), vec!["max sessions"]);
        assert_eq!(restart_only_changes(&g("metrics address = 1"), &g("")), vec!["metrics address"]);
    }
}
