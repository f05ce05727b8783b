//! Runtime state of the served modules.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use filelist_cache::{SnapshotStore, Stores};
use protocol::filter::FilterList;
use protocol::limits::Limits;

use crate::access::auth::AuthConfig;
use crate::access::hosts::HostAcl;
use crate::access::identity::ModuleAccess;
use crate::access::limits::SessionCaps;
use crate::access::refuse::RefuseRules;
use crate::session::files::ModuleRoot;

/// Who may use a module and what they may ask for, compiled at start-up.
pub struct ModuleRules {
    /// `hosts allow` / `hosts deny`, `reverse lookup`, `forward lookup`.
    pub hosts: HostAcl,
    /// `auth users`, `secrets file`, `strict modes`, `auth digest`.
    pub auth: AuthConfig,
    /// `refuse options`.
    pub refuse: RefuseRules,
    /// `uid` / `gid`: what the module's identity may read.
    pub access: Arc<ModuleAccess>,
    /// `max connections` (0: no limit; negative: module disabled).
    pub max_connections: i32,
    /// `lock file`.
    pub lock_file: PathBuf,
    /// `timeout` (None when 0).
    pub timeout: Option<Duration>,
    /// `write only`.
    pub write_only: bool,
}

/// One module as the sessions see it.
pub struct ModuleRuntime {
    /// Module name.
    pub name: String,
    /// `comment`.
    pub comment: String,
    /// `path`.
    pub path: PathBuf,
    /// `list`.
    pub list: bool,
    /// `read only`.
    pub read_only: bool,
    /// The module tree's live snapshot. A session pins `store.get()?.current()`
    /// (one generation) once and reads only that for its whole life.
    pub store: ModuleStore,
    /// `rescan interval` as configured (`None`: automatic).
    pub rescan_interval: Option<u32>,
    /// Held directory fd of the module root.
    pub root: ModuleRoot,
    /// Daemon-side filter rules (`filter`, `include from`, `include`,
    /// `exclude from`, `exclude`).
    pub daemon_filter: FilterList,
    /// Index of the listener that serves this module (see [`ServerState::listeners`]).
    pub listener: usize,
    /// Access rules.
    pub rules: ModuleRules,
    /// `use chroot`, `munge symlinks`, `numeric ids`, `ignore errors`, `dont compress`,
    /// `open noatime`, `outgoing chmod`, `max verbosity` (see [`crate::session::modopts`]).
    pub opts: crate::session::modopts::ModuleOpts,
    /// `fullfiletimelist`: the generated list served at the top, if any.
    pub ffl: Option<crate::ffl::Ffl>,
    /// `checksum cache`: stored `-c` checksums (shared per store).
    pub sum_cache: Option<Arc<crate::sumcache::SumCache>>,
}

/// Default budget of the shared file-list cache: 256 MiB (a 1M-entry
/// module's list takes about 60 MB).
pub const DEFAULT_FLIST_CACHE_BYTES: usize = 256 << 20;

/// How a module's store is opened when first needed.
pub type StoreOpener = Box<dyn Fn() -> Result<(SnapshotStore, bool), String> + Send + Sync>;

/// A module's snapshot store. A listening daemon opens every store at
/// start-up ([`ModuleStore::ready`]); a one-connection daemon (inetd, rsh)
/// opens only the store of the module the client asks for
/// ([`ModuleStore::lazy`]), so a connection never walks the other modules.
pub struct ModuleStore {
    cell: std::sync::OnceLock<Result<(SnapshotStore, bool), String>>,
    opener: Option<StoreOpener>,
}

impl ModuleStore {
    /// An opened store; `watching`: its fanotify watcher was set up.
    pub fn ready(store: SnapshotStore, watching: bool) -> ModuleStore {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(Ok((store, watching)));
        ModuleStore { cell, opener: None }
    }

    /// A store opened by `opener` on first use.
    pub fn lazy(opener: StoreOpener) -> ModuleStore {
        ModuleStore { cell: std::sync::OnceLock::new(), opener: Some(opener) }
    }

    fn opened(&self) -> &Result<(SnapshotStore, bool), String> {
        self.cell.get_or_init(|| match &self.opener {
            Some(open) => open(),
            None => Err("no store".to_string()),
        })
    }

    /// The store, opening it if needed; the error says why it cannot be.
    pub fn get(&self) -> Result<&SnapshotStore, &str> {
        match self.opened() {
            Ok((s, _)) => Ok(s),
            Err(e) => Err(e.as_str()),
        }
    }

    /// The store if it is open (never opens it).
    pub fn if_open(&self) -> Option<&SnapshotStore> {
        match self.cell.get() {
            Some(Ok((s, _))) => Some(s),
            _ => None,
        }
    }

    /// The store's fanotify watcher was set up (false until opened).
    pub fn watching(&self) -> bool {
        matches!(self.cell.get(), Some(Ok((_, true))))
    }
}

/// Settings every session uses.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Absolute deadline for greeting, module line, auth and arguments.
    pub handshake_timeout: Duration,
    /// Idle timeout once the transfer runs (0 = none); a module `timeout` or
    /// the client's `--timeout` replaces it when set.
    pub idle_timeout: Option<Duration>,
    /// Wire limits.
    pub limits: Limits,
    /// Fixed checksum seed (tests only); `None` draws from the OS CSPRNG.
    pub fixed_seed: Option<i32>,
    /// Memory budget of the shared encoded file-list cache, in bytes (0
    /// disables it).
    pub flist_cache_bytes: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            handshake_timeout: Duration::from_secs(60),
            idle_timeout: Some(Duration::from_secs(600)),
            limits: Limits::default(),
            fixed_seed: None,
            flist_cache_bytes: DEFAULT_FLIST_CACHE_BYTES,
        }
    }
}

/// One listening port and the modules bound to it.
#[derive(Debug)]
pub struct ListenerSpec {
    /// The configured port (0 lets the OS choose, for the main listener in tests).
    pub port: u16,
    /// Session caps of this listener (a flood on one listener cannot use
    /// another's capacity).
    pub caps: Arc<SessionCaps>,
}

/// Everything a session needs from the server.
pub struct ServerState {
    /// Modules in configuration order.
    pub modules: Vec<Arc<ModuleRuntime>>,
    /// The modules' stores by name (the explicit refresh entry point).
    pub stores: Stores,
    /// Listeners; index 0 is the main one.
    pub listeners: Vec<ListenerSpec>,
    /// MOTD text, if configured.
    pub motd: Option<Vec<u8>>,
    /// Session settings.
    pub settings: SessionSettings,
    /// The daemon runs as root (secrets-file ownership rule).
    pub daemon_is_root: bool,
    /// Encoded file lists shared between sessions.
    pub flist_cache: crate::session::liststream::FlistCache,
}

impl ServerState {
    /// Find a module by name among those served on `listener`.  Like stock's
    /// `lp_number()`, the last definition of a name wins.
    pub fn module(&self, name: &[u8], listener: usize) -> Option<&Arc<ModuleRuntime>> {
        self.modules.iter().rev().find(|m| m.listener == listener && m.name.as_bytes() == name)
    }

    /// The modules a listing on `listener` shows (`list = yes`), in order.
    pub fn listed(&self, listener: usize) -> impl Iterator<Item = &Arc<ModuleRuntime>> {
        self.modules.iter().filter(move |m| m.list && m.listener == listener)
    }
}
