//! Listeners, module start-up and the accept loop.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use filelist_cache::{build_snapshot, BuildOptions, Snapshot};
use protocol::filter::FilterList;

use crate::config::{Config, Module};
use crate::module::{ModuleRuntime, ServerState, SessionSettings};
use crate::session::files::ModuleRoot;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A module's tree could not be scanned or its snapshot written/opened.
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

fn module_runtime(m: &Module, state_dir: &Path, generation: u64) -> Result<ModuleRuntime, StartError> {
    let err = |message: String| StartError::Module { module: m.name.clone(), message };
    let snap_path = state_dir.join(format!("{}.snap", sanitize_file_name(&m.name)));
    let report = build_snapshot(&m.path, &snap_path, &BuildOptions { one_file_system: true, generation })
        .map_err(|e| err(format!("scanning {}: {e}", m.path.display())))?;
    for issue in &report.errors {
        tracing::warn!(module = %m.name, path = %String::from_utf8_lossy(&issue.path), "{}", issue.message);
    }
    let snapshot = Snapshot::open(&snap_path).map_err(|e| err(format!("opening snapshot {}: {e}", snap_path.display())))?;
    tracing::info!(module = %m.name, entries = report.entries, dirs = report.dirs, "snapshot built");
    let root = ModuleRoot::open(&m.path).map_err(|e| err(format!("opening {}: {e}", m.path.display())))?;
    let daemon_filter =
        FilterList::from_daemon_params(&m.filter, &m.include, &m.exclude).map_err(|e| err(format!("filter rules: {e}")))?;
    Ok(ModuleRuntime {
        name: m.name.clone(),
        comment: m.comment.clone(),
        path: m.path.clone(),
        list: m.list,
        read_only: m.read_only,
        snapshot: Arc::new(snapshot),
        root,
        daemon_filter,
    })
}

fn sanitize_file_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' }).collect()
}

/// Build every module's snapshot and the shared server state.
pub fn build_state(config: &Config, state_dir: &Path, settings: SessionSettings) -> Result<ServerState, StartError> {
    std::fs::create_dir_all(state_dir).map_err(|e| StartError::Module {
        module: "*".into(),
        message: format!("creating state dir {}: {e}", state_dir.display()),
    })?;
    let generation = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1);
    let mut modules = Vec::new();
    for m in &config.modules {
        modules.push(Arc::new(module_runtime(m, state_dir, generation)?));
    }
    let motd = match &config.global.motd_file {
        Some(p) => Some(std::fs::read(p).map_err(|err| StartError::Motd { path: p.clone(), err })?),
        None => None,
    };
    Ok(ServerState { modules, motd, settings })
}

/// Most sessions served at once; more connections get a stock-style error.
pub const DEFAULT_MAX_SESSIONS: usize = 1024;

/// Accept connections forever, one thread per session.
pub fn serve(listener: TcpListener, state: Arc<ServerState>, max_sessions: usize) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= max_sessions {
            use std::io::Write;
            let mut s = stream;
            let _ = s.write_all(&protocol::greeting::server_greeting());
            let _ = s.write_all(&protocol::greeting::error_line(&format!(
                "max connections ({max_sessions}) reached -- try again later"
            )));
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let st = state.clone();
        let act = active.clone();
        let spawned = std::thread::Builder::new().name(format!("session-{peer}")).spawn(move || {
            let _guard = Guard(act);
            let _ = crate::session::serve_connection(stream, peer, st);
        });
        if let Err(e) = spawned {
            active.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("cannot start session thread: {e}");
        }
    }
}

struct Guard(Arc<AtomicUsize>);
impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Bind a listener on `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
}
