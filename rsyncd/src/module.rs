//! Runtime state of the served modules.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use filelist_cache::Snapshot;
use protocol::filter::FilterList;
use protocol::limits::Limits;

use crate::session::files::ModuleRoot;

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
    /// The module tree's snapshot. Sessions clone the `Arc` and keep it for
    /// their whole life (one generation per session).
    pub snapshot: Arc<Snapshot>,
    /// Held directory fd of the module root.
    pub root: ModuleRoot,
    /// Daemon-side filter rules (`filter`, `include`, `exclude`).
    pub daemon_filter: FilterList,
}

/// Settings every session uses.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Absolute deadline for greeting, module line, auth and arguments.
    pub handshake_timeout: Duration,
    /// Idle timeout once the transfer runs (0 = none).
    pub idle_timeout: Option<Duration>,
    /// Wire limits.
    pub limits: Limits,
    /// Fixed checksum seed (tests only); `None` draws from the OS CSPRNG.
    pub fixed_seed: Option<i32>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            handshake_timeout: Duration::from_secs(60),
            idle_timeout: Some(Duration::from_secs(600)),
            limits: Limits::default(),
            fixed_seed: None,
        }
    }
}

/// Everything a session needs from the server.
pub struct ServerState {
    /// Modules in configuration order.
    pub modules: Vec<Arc<ModuleRuntime>>,
    /// MOTD text, if configured.
    pub motd: Option<Vec<u8>>,
    /// Session settings.
    pub settings: SessionSettings,
}

impl ServerState {
    /// Find a module by name.
    pub fn module(&self, name: &[u8]) -> Option<&Arc<ModuleRuntime>> {
        self.modules.iter().find(|m| m.name.as_bytes() == name)
    }
}
