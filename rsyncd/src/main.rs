//! `rsyncd` command line: a drop-in for `rsync --daemon`.

use std::ffi::OsString;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use rsyncd::config;
use rsyncd::module::SessionSettings;

mod hardening;

/// Serve rsync modules to stock rsync clients, with file lists from a snapshot.
#[derive(Parser, Debug)]
#[command(name = "rsyncd", version, about)]
struct Cli {
    /// rsyncd.conf to read (stock syntax). Default /etc/rsyncd.conf when no DIR is given.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Port to listen on (overrides the config's `port`; 0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// Address to bind (overrides the config's `address`).
    #[arg(long)]
    address: Option<String>,
    /// Run as a daemon. When stdin is a socket (inetd, `RSYNC_CONNECT_PROG`)
    /// serve that one connection and exit; otherwise listen.
    #[arg(long)]
    daemon: bool,
    /// With --daemon: rsh daemon mode (`rsync --server --daemon .`, as run by
    /// `rsync -e ssh host::module`): serve one session on stdin/stdout.
    #[arg(long)]
    server: bool,
    /// Accepted for compatibility; the daemon always runs in the foreground.
    #[arg(long)]
    no_detach: bool,
    /// Validate the config file and exit.
    #[arg(long)]
    check_config: bool,
    /// Where snapshots and the control socket are kept (default:
    /// /var/lib/rsyncd when running as root and writable, else
    /// $TMPDIR/rsyncd-<uid>). A restart with the same directory serves the
    /// last snapshot at once and reconciles in the background.
    #[arg(long, value_name = "DIR", global = true)]
    state_dir: Option<PathBuf>,
    /// Do not set up fanotify watchers: changes reach the file lists only by
    /// `rescan interval` rescans and `rsyncd refresh`.
    #[arg(long)]
    no_watch: bool,
    /// Memory for encoded file lists shared between sessions, in MiB (0
    /// turns the cache off). Identical pulls of one snapshot generation
    /// replay the cached bytes instead of encoding the list again.
    #[arg(long, value_name = "MIB", default_value_t = (rsyncd::module::DEFAULT_FLIST_CACHE_BYTES >> 20) as u64)]
    flist_cache_mb: u64,
    /// Serve Prometheus metrics on ADDR (`host:port`, or a port on
    /// 127.0.0.1); overrides the config's `metrics address`.
    #[arg(long, value_name = "ADDR")]
    metrics_address: Option<String>,
    /// Keep every privilege the daemon started with.  By default a daemon
    /// started as root drops all capabilities but reading any file
    /// (`cap_dac_read_search`) once its sockets are bound and its watchers
    /// set up, and sets no_new_privs (hooks run with the same limits).
    #[arg(long)]
    keep_privileges: bool,
    /// More logging (repeat for debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Serve this directory read-only as one module, without a config file.
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Ask the running daemon (same --state-dir) to re-read MODULE now, or
    /// only the subtree PATH of it (call after publishing changes).
    Refresh {
        /// Module name.
        module: String,
        /// Module-relative directory to re-read (default: the whole module).
        path: Option<OsString>,
    },
}

/// The state directory to use when `--state-dir` is not given:
/// `/var/lib/rsyncd` for root when it can be created and written, else a
/// private `$TMPDIR/rsyncd-<uid>` (created 0700; refused if it is not a
/// directory of ours that others cannot write).
fn default_state_dir(create: bool) -> anyhow::Result<PathBuf> {
    // SAFETY: geteuid() has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        let p = PathBuf::from("/var/lib/rsyncd");
        let ok = if create {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&p).is_ok() && writable(&p)
        } else {
            p.join(rsyncd::control::SOCKET_NAME).exists()
        };
        if ok {
            return Ok(p);
        }
    }
    let p = std::env::temp_dir().join(format!("rsyncd-{uid}"));
    if create {
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating state dir {}", p.display())),
        }
    }
    if p.exists() {
        let md = std::fs::symlink_metadata(&p).with_context(|| format!("state dir {}", p.display()))?;
        if !md.is_dir() || md.uid() != uid || md.mode() & 0o022 != 0 {
            bail!("state dir {} is not a private directory of uid {uid}; give --state-dir", p.display());
        }
    }
    Ok(p)
}

fn writable(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// The served state and state dir, once start-up has built them.
type ShutdownSlot = Arc<Mutex<Option<(Arc<rsyncd::module::ServerState>, PathBuf)>>>;

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

/// Work to run on the signal thread itself (per-thread state: capabilities).
type SignalJob = (Box<dyn FnOnce() + Send>, std::sync::mpsc::Sender<()>);

/// Handle on the thread started by [`handle_signals`].
struct SignalThread {
    jobs: std::sync::mpsc::Sender<SignalJob>,
}

impl SignalThread {
    /// Runs `f` on the signal thread and waits (at most 5 s) until it has;
    /// false if it did not.
    fn run_on(&self, f: impl FnOnce() + Send + 'static) -> bool {
        let (done, ran) = std::sync::mpsc::channel();
        self.jobs.send((Box::new(f), done)).is_ok() && ran.recv_timeout(Duration::from_secs(5)).is_ok()
    }
}

/// `sigtimedwait` for one of `set`, at most `t`.
fn wait_signal(set: &libc::sigset_t, t: Duration) -> Option<libc::c_int> {
    let ts = libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos() as libc::c_long };
    // SAFETY: `set` is an initialised sigset_t and `ts` a valid timespec for
    // the call; a null siginfo pointer is allowed.
    let r = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (r > 0).then_some(r)
}

/// The exit status after `sig`: 0 for SIGTERM, 130 for SIGINT.
fn exit_status(sig: libc::c_int) -> i32 {
    if sig == libc::SIGINT {
        130
    } else {
        0
    }
}

/// Writes every module's current state to a snapshot file, so a restart
/// serves it at once.
fn persist_all(st: &rsyncd::module::ServerState) {
    let mut done: Vec<&str> = Vec::new();
    for m in &st.modules {
        let Some(store) = m.store.if_open() else { continue };
        if done.contains(&store.name()) {
            continue;
        }
        done.push(store.name());
        match store.persist() {
            Ok(Some(r)) => tracing::info!(module = %m.name, generation = ?r.published, "snapshot persisted"),
            Ok(None) => {}
            Err(e) => tracing::warn!(module = %m.name, "persisting the snapshot failed: {e}"),
        }
    }
    for c in st.modules.iter().filter_map(|m| m.sum_cache.as_ref()) {
        if let Err(e) = c.persist_if_dirty() {
            tracing::warn!("writing the checksum cache failed: {e}");
        }
    }
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread started
/// later) and handles them on a thread of its own:
///
/// * before start-up is complete, a signal ends the process at once;
/// * afterwards the first one **drains**: every listener stops accepting
///   (new connections are refused), connections still in their handshake
///   are closed, and the sessions in flight get up to `drain_timeout` to
///   finish; then every module's snapshot is persisted, the control socket
///   and pid file removed, and the process exits (0 after SIGTERM, 130
///   after SIGINT);
/// * a second SIGTERM/SIGINT during the drain exits at once (no persist).
fn handle_signals(state: ShutdownSlot, drain_timeout: Duration) -> anyhow::Result<SignalThread> {
    // SAFETY: `set` is a plain sigset_t initialised by sigemptyset before use;
    // pthread_sigmask only changes this thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            bail!("cannot block SIGTERM/SIGINT");
        }
        set
    };
    let (jobs, job_rx) = std::sync::mpsc::channel::<SignalJob>();
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let first = loop {
            while let Ok((job, done)) = job_rx.try_recv() {
                job();
                let _ = done.send(());
            }
            if let Some(sig) = wait_signal(&set, Duration::from_millis(200)) {
                break sig;
            }
        };
        let served = state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some((st, dir)) = served else {
            tracing::info!(signal = first, "shutting down (start-up not complete)");
            rsyncd::server::remove_pid_file();
            std::process::exit(exit_status(first));
        };
        let finish = |code: i32| -> ! {
            let _ = std::fs::remove_file(dir.join(rsyncd::control::SOCKET_NAME));
            rsyncd::server::remove_pid_file();
            std::process::exit(code);
        };
        let n = rsyncd::server::begin_drain();
        tracing::info!(
            signal = first,
            sessions = n,
            drain_timeout_s = drain_timeout.as_secs(),
            "draining: no longer accepting connections; waiting for the sessions in flight (signal again to exit at once)"
        );
        let deadline = std::time::Instant::now() + drain_timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let running = rsyncd::server::wait_for_sessions(left.min(Duration::from_millis(200)));
            if running == 0 {
                tracing::info!("drained: every session has finished");
                break;
            }
            if left.is_zero() {
                tracing::warn!(sessions = running, "drain timeout reached: exiting with sessions still running");
                break;
            }
            if let Some(again) = wait_signal(&set, Duration::from_millis(1)) {
                tracing::warn!(signal = again, sessions = running, "second signal: exiting at once");
                finish(exit_status(again));
            }
        }
        persist_all(&st);
        finish(exit_status(first));
    })?;
    Ok(SignalThread { jobs })
}

// ---------------------------------------------------------------------------

/// Drops the privileges a listening daemon no longer needs once its sockets
/// are bound and its fanotify watchers set up (see [`hardening::restrict`]
/// and docs/security.md), in this thread and in the signal thread (the only
/// other thread at this point).
fn drop_privileges(cfg: &config::Config, metrics_port: Option<u16>, signals: &SignalThread) -> anyhow::Result<()> {
    use hardening::{CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_NET_BIND_SERVICE};
    // Reading every module tree whatever its modes (the module identity's
    // permissions are applied by the daemon itself); O_NOATIME on files of
    // other users when a module asks for `open noatime`; binding the
    // metrics endpoint if it is on a privileged port (it is bound after
    // this, so that its thread starts restricted).  The listeners are
    // bound once: a reload cannot change them.
    let mut keep = vec![CAP_DAC_READ_SEARCH];
    if cfg.modules.iter().any(|m| m.open_noatime == Some(true)) {
        keep.push(CAP_FOWNER);
    }
    if metrics_port.is_some_and(|p| p != 0 && p < 1024) {
        keep.push(CAP_NET_BIND_SERVICE);
    }
    let r = hardening::restrict(&keep).context("dropping privileges (--keep-privileges skips this)")?;
    let keep2 = keep.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    if !signals.run_on(move || {
        let _ = tx.send(hardening::restrict(&keep2).map(|_| ()));
    }) {
        bail!("dropping privileges: the signal thread did not answer");
    }
    rx.recv().context("dropping privileges in the signal thread")?.context("dropping privileges in the signal thread")?;
    let names: Vec<String> = r.kept.iter().map(|&c| hardening::cap_name(c)).collect();
    if !r.bounding_kept.is_empty() {
        tracing::warn!(
            "the capability bounding set could not be reduced ({} capabilities kept there); no_new_privs still applies",
            r.bounding_kept.len()
        );
    }
    tracing::info!(capabilities = %names.join(" "), "privileges dropped (no_new_privs set)");
    Ok(())
}

/// Port used by the embedded default (non-privileged).
const DEFAULT_DIR_PORT: u16 = 8873;

/// How this process serves sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Bind listeners and serve until terminated.
    Listen,
    /// One session on the standard descriptors, then exit.
    Stdio(rsyncd::session::io::StdioMode),
}

/// Mirrors stock `main.c`: `--server --daemon` is rsh daemon mode
/// (`start_daemon(STDIN_FILENO, STDOUT_FILENO)`), and `--daemon` with a
/// socket on stdin is inetd mode (`clientserver.c: daemon_main()`).
fn mode_of(cli: &Cli) -> anyhow::Result<Mode> {
    use rsyncd::session::io::{stdin_is_socket, StdioMode};
    if cli.server {
        if !cli.daemon {
            bail!("--server is only supported with --daemon (rsh daemon mode)");
        }
        return Ok(Mode::Stdio(StdioMode::Rsh));
    }
    if cli.daemon && cli.command.is_none() && stdin_is_socket() {
        return Ok(Mode::Stdio(StdioMode::Inetd));
    }
    Ok(Mode::Listen)
}

/// Serve one session on stdin/stdout with `cfg` and return the process exit
/// code (the session's rsync exit class). The requested module's snapshot
/// is built fresh, when the client is admitted to it, in a private temporary
/// state dir (a listening daemon holds the locks of its own state dir, and a
/// one-shot session must not serve a stale snapshot); other modules are
/// never scanned.
fn serve_stdio(cfg: &config::Config, mode: rsyncd::session::io::StdioMode) -> anyhow::Result<i32> {
    use protocol::exit::Rerr;
    use rsyncd::session::{io::take_stdio, serve_conns, SessionError};
    // Take the descriptors first, so nothing printed later reaches the client.
    let (input, output, socket_peer) = take_stdio(mode).context("taking over stdin/stdout")?;
    let peer = match mode {
        rsyncd::session::io::StdioMode::Inetd => socket_peer,
        rsyncd::session::io::StdioMode::Rsh => rsh_peer(),
    };
    let peer = match proxied_peer(cfg, mode, &input, peer)? {
        Some(p) => p,
        // Mirrors clientserver.c start_daemon(): a rejected or bad PROXY
        // header ends the connection without a greeting, and main() returns
        // its -1 (exit status 255).
        None => return Ok(255),
    };
    let tmp = tempfile::Builder::new().prefix("rsyncd-stdio-").tempdir().context("creating a temporary state dir")?;
    let port = cfg.global.port.unwrap_or(873);
    // Only the module the client asks for is scanned (lazily, at admission).
    let settings = SessionSettings { handshake_timeout: cfg.global.handshake_timeout, ..SessionSettings::default() };
    let state = Arc::new(rsyncd::server::build_state_with(cfg, tmp.path(), settings, port, false, true)?);
    let code = match serve_conns(input, output, peer, state, 0) {
        Ok(()) => 0,
        Err(SessionError::Exit { code, .. }) => code.code(),
        Err(SessionError::Input(rsyncd::session::io::InputError::Timeout)) => Rerr::Timeout.code(),
        Err(_) => Rerr::StreamIo.code(),
    };
    drop(tmp);
    Ok(code)
}

/// With `proxy protocol = yes`, the client's address from the PROXY header
/// a trusted peer sends first (mirrors clientserver.c start_daemon(), which
/// reads it in inetd mode as on a listener); `Ok(None)` when the peer is not
/// trusted or the header is bad (logged; the caller closes without a word).
/// Without the option, `peer` as it is. In rsh mode the input is a pipe
/// whose far end is sshd, not a proxy: fail closed.
fn proxied_peer(
    cfg: &config::Config,
    mode: rsyncd::session::io::StdioMode,
    input: &rsyncd::session::io::Conn,
    peer: Option<std::net::SocketAddr>,
) -> anyhow::Result<Option<Option<std::net::SocketAddr>>> {
    use rsyncd::session::io::Conn;
    let net = rsyncd::server::NetSettings::from_global(&cfg.global)?;
    let Some(policy) = &net.proxy else {
        return Ok(Some(peer));
    };
    let (rsyncd::session::io::StdioMode::Inetd, Conn::Socket(stream), Some(socket_peer)) = (mode, input, peer) else {
        rsyncd::logging::log_global("proxy protocol is not supported on this connection (rsh mode or not a TCP socket); closed");
        return Ok(None);
    };
    if !policy.trusts(&socket_peer) {
        let addr = rsyncd::access::hosts::Peer::from_socket(&socket_peer).addr;
        rsyncd::logging::log_global(&format!("proxy protocol rejected from untrusted peer UNDETERMINED ({addr})"));
        return Ok(None);
    }
    let deadline = std::time::Instant::now() + cfg.global.handshake_timeout;
    match rsyncd::server::read_proxy_header(stream, deadline) {
        Ok(h) => Ok(Some(Some(h.source.unwrap_or(socket_peer)))),
        Err(e) => {
            tracing::info!(peer = %socket_peer, "{e}; connection closed");
            Ok(None)
        }
    }
}

/// The client's address in rsh daemon mode, mirroring stock
/// `clientname.c: client_addr()`: the first word of `SSH_CONNECTION`
/// (then `SSH_CLIENT`, `SSH2_CLIENT`), with its port when given. `None`
/// (unknown, host ACLs deny) when unset or not an address.
fn rsh_peer() -> Option<std::net::SocketAddr> {
    let v = ["SSH_CONNECTION", "SSH_CLIENT", "SSH2_CLIENT"].iter().find_map(|k| std::env::var(k).ok())?;
    let mut words = v.split_whitespace();
    let ip: IpAddr = words.next()?.parse().ok()?;
    let port = words.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some(std::net::SocketAddr::new(ip, port))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mode = mode_of(&cli)?;
    // Sockets passed by systemd (socket activation): taken before any
    // thread starts, as taking them clears the LISTEN_* variables.
    let activated = if mode == Mode::Listen && cli.command.is_none() { rsyncd::systemd::take_listen_fds()? } else { Vec::new() };
    let level = match cli.verbose {
        // A one-shot session shares stderr with the client's terminal (ssh,
        // RSYNC_CONNECT_PROG): only warnings by default.
        0 if mode != Mode::Listen => "warn",
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("RSYNCD_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    if let Some(Command::Refresh { module, path }) = &cli.command {
        let dir = match &cli.state_dir {
            Some(d) => d.clone(),
            None => default_state_dir(false)?,
        };
        let path = path.as_ref().map(|p| p.as_bytes());
        match rsyncd::control::request_refresh(&dir, module, path) {
            Ok(summary) => {
                println!("{summary}");
                return Ok(());
            }
            Err(e) => {
                eprintln!("rsyncd: refresh {module}: {e}");
                std::process::exit(1);
            }
        }
    }

    // In rsh daemon mode the positional argument is the "." placeholder.
    let dir = if mode == Mode::Stdio(rsyncd::session::io::StdioMode::Rsh) { None } else { cli.dir.clone() };
    let (cfg, default_port, embedded) = match (&cli.config, &dir) {
        (Some(_), Some(_)) => bail!("give either --config=FILE or a directory, not both"),
        (None, Some(dir)) => {
            let dir = dir.canonicalize().with_context(|| format!("cannot serve {}", dir.display()))?;
            if !dir.is_dir() {
                bail!("{} is not a directory", dir.display());
            }
            let name = dir
                .file_name()
                .map(|n| {
                    n.to_string_lossy()
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                        .collect::<String>()
                })
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "files".to_string());
            let text = format!("[{name}]\n    path = {}\n    comment = {}\n    read only = yes\n", dir.display(), dir.display());
            let cfg = config::parse_str(&text, std::path::Path::new("<embedded>")).map_err(|e| anyhow::anyhow!("{e}"))?;
            (cfg, DEFAULT_DIR_PORT, Some(name))
        }
        (c, None) => {
            // Stock's default in rsh daemon mode for non-root is ./rsyncd.conf
            // (RSYNCD_USERCONF).
            // SAFETY: geteuid() has no preconditions and cannot fail.
            let user_rsh = mode == Mode::Stdio(rsyncd::session::io::StdioMode::Rsh) && unsafe { libc::geteuid() } != 0;
            let default = if user_rsh { "rsyncd.conf" } else { "/etc/rsyncd.conf" };
            let path = c.clone().unwrap_or_else(|| PathBuf::from(default));
            let cfg = config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            (cfg, 873, None)
        }
    };
    for w in &cfg.warnings {
        tracing::warn!("{}", w.message);
    }
    if cli.check_config {
        // What start-up would check beyond the syntax: identities, ACLs.
        let daemon = rsyncd::access::identity::process_identity();
        let mut bad = 0;
        if let Err(e) = rsyncd::triggers::specs(&cfg) {
            eprintln!("{e}");
            bad += 1;
        }
        if let Some(a) = cli.metrics_address.as_ref().or(cfg.global.metrics_address.as_ref()) {
            if let Err(e) = rsyncd::metrics::parse_address(a) {
                eprintln!("{e}");
                bad += 1;
            }
        }
        for m in &cfg.modules {
            if !m.path.is_dir() {
                eprintln!("module {}: path {} is not a directory", m.name, m.path.display());
                bad += 1;
            } else if let Err(e) = rsyncd::server::module_rules(m, cfg.global.reverse_lookup, &daemon) {
                eprintln!("module {}: {e}", m.name);
                bad += 1;
            }
        }
        if bad > 0 {
            bail!("{bad} module(s) cannot be served");
        }
        println!("config OK: {} module(s)", cfg.modules.len());
        return Ok(());
    }
    rsyncd::logging::install(&cfg);
    rsyncd::exec::install(&cfg);
    if let Mode::Stdio(m) = mode {
        let code = serve_stdio(&cfg, m)?;
        std::process::exit(code);
    }
    let port = cli.port.or(cfg.global.port).unwrap_or(default_port);
    let address = cli.address.clone().or_else(|| cfg.global.address.clone());
    let ip: IpAddr = match &address {
        Some(a) => match a.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => (a.as_str(), port).to_socket_addrs()?.next().context("address resolves to nothing")?.ip(),
        },
        None => IpAddr::from([0, 0, 0, 0]),
    };
    match hardening::raise_fd_limit() {
        Ok((old, new)) if new != old => tracing::info!(from = old, to = new, "raised the open-file limit"),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let shutdown = Arc::new(Mutex::new(None));
    // SIGHUP reloads the configuration (see rsyncd::reload); blocked here,
    // before any thread starts, and waited for once serving.
    let hangup = rsyncd::reload::block_sighup()?;
    let signals = handle_signals(shutdown.clone(), cfg.global.drain_timeout)?;
    // Stock writes the pid file of a listening daemon right after reading its
    // configuration, and removes it when it exits (clientserver.c
    // create_pid_file(), cleanup.c); a failure is fatal (exit 11).
    let _pid_file = match &cfg.global.pid_file {
        Some(p) => match rsyncd::server::write_pid_file(p) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("{e}");
                rsyncd::logging::log_global(&e.to_string());
                std::process::exit(protocol::exit::Rerr::FileIo.code());
            }
        },
        None => None,
    };
    let state_dir = match &cli.state_dir {
        Some(d) => d.clone(),
        None => default_state_dir(true)?,
    };
    let settings = SessionSettings {
        flist_cache_bytes: usize::try_from(cli.flist_cache_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
        handshake_timeout: cfg.global.handshake_timeout,
        ..SessionSettings::default()
    };
    let state = Arc::new(rsyncd::server::build_state(&cfg, &state_dir, settings, port, !cli.no_watch)?);
    *shutdown.lock().unwrap_or_else(|p| p.into_inner()) = Some((state.clone(), state_dir.clone()));
    // Sockets first (the listeners, the control socket), while root.
    let control = match rsyncd::control::bind(&state_dir) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!("control socket in {}: {e}; `rsyncd refresh` will not work", state_dir.display());
            None
        }
    };
    let net = rsyncd::server::NetSettings::from_global(&cfg.global)?;
    let listeners = bind_or_take(&state, ip, &net, activated)?;
    rsyncd::metrics::set_listener_ports(listeners.iter().map(|l| l.local_addr().map(|a| a.port()).unwrap_or(0)).collect());
    let metrics_addr = match cli.metrics_address.as_ref().or(cfg.global.metrics_address.as_ref()) {
        Some(a) => Some(rsyncd::metrics::parse_address(a).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    // Everything that needs root is done (sockets bound, fanotify marks
    // set, snapshots, pid file and logs open); no other thread than the
    // signal thread runs yet.
    if !cli.keep_privileges {
        drop_privileges(&cfg, metrics_addr.map(|a| a.port()), &signals)?;
    }
    // Watchers, maintenance and change triggers run for the life of the
    // process; a reload updates them.
    let triggers = rsyncd::triggers::Triggers::start(&cfg, rsyncd::triggers::BACKOFF_BASE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let backgrounds = rsyncd::server::start_background_set(&state, Some(triggers.clone()));
    let shared = rsyncd::reload::SharedState::new(state.clone());
    if let Some(l) = control {
        let sh = shared.clone();
        rsyncd::control::spawn_server_with(l, Arc::new(move || Arc::new(sh.load().stores.clone())))?
    }
    if let Some(addr) = metrics_addr {
        let sh = shared.clone();
        let bound =
            rsyncd::metrics::spawn_server(addr, Arc::new(move || sh.load())).with_context(|| format!("cannot serve metrics on {addr}"))?;
        eprintln!("rsyncd: metrics on http://{bound}/metrics");
    }
    let reloader = rsyncd::reload::Reloader {
        shared: shared.clone(),
        config_path: if embedded.is_some() { None } else { Some(cli.config.clone().unwrap_or_else(|| PathBuf::from("/etc/rsyncd.conf"))) },
        state_dir: state_dir.clone(),
        settings: state.settings.clone(),
        cli_port: cli.port,
        default_port,
        watch: !cli.no_watch,
        backgrounds,
        triggers: Some(triggers),
        global: cfg.global.clone(),
        on_reload: Some({
            let (slot, dir) = (shutdown.clone(), state_dir.clone());
            Box::new(move |st| *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((st.clone(), dir.clone())))
        }),
    };
    rsyncd::reload::spawn_sighup_handler(hangup, reloader)?;
    for (l, spec) in listeners.iter().zip(&state.listeners) {
        let local = l.local_addr()?;
        let names: Vec<&str> =
            state.modules.iter().filter(|m| std::ptr::eq(&state.listeners[m.listener], spec)).map(|m| m.name.as_str()).collect();
        eprintln!("rsyncd: listening on {local}");
        // clientserver.c daemon_main(): the global log's start-up line.
        rsyncd::logging::log_global(&format!(
            "rsyncd version {} starting, listening on port {}",
            env!("CARGO_PKG_VERSION"),
            local.port()
        ));
        tracing::info!(address = %local, modules = %names.join(" "), "listener ready");
    }
    if let Some(name) = embedded {
        let local = listeners[0].local_addr()?;
        let host = if local.ip().is_unspecified() { "127.0.0.1".to_string() } else { local.ip().to_string() };
        eprintln!("rsyncd: try: rsync -av rsync://{host}:{}/{name}/ /tmp/{name}-copy/", local.port());
    }
    rsyncd::systemd::notify_or_log(&format!(
        "READY=1\nSTATUS=serving {} module(s) on {} listener(s)",
        state.modules.len(),
        listeners.len()
    ));
    drop(state);
    rsyncd::server::serve_all_shared(listeners, shared, net)?;
    Ok(())
}

/// The listeners of `state`: the sockets systemd passed (socket activation,
/// matched by port, see [`rsyncd::systemd::assign`]) and, for the others,
/// sockets bound on `ip` as without activation.
fn bind_or_take(
    state: &rsyncd::module::ServerState,
    ip: IpAddr,
    net: &rsyncd::server::NetSettings,
    activated: Vec<rsyncd::systemd::PassedSocket>,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    if activated.is_empty() {
        return Ok(rsyncd::server::bind_all(state, ip, net)?);
    }
    let ports: Vec<u16> = state.listeners.iter().map(|l| l.port).collect();
    let (slots, unused) = rsyncd::systemd::assign(&ports, activated);
    for u in unused {
        tracing::warn!(address = ?u.listener.local_addr().ok(), name = ?u.name, "socket from systemd matches no listener port; closed");
    }
    let mut out = Vec::with_capacity(slots.len());
    for (slot, port) in slots.into_iter().zip(ports) {
        match slot {
            Some(l) => {
                for (name, e) in rsyncd::server::apply_socket_options(&l, &net.socket_options) {
                    tracing::warn!("failed to set socket option {}: {e}", name.name());
                }
                tracing::info!(address = ?l.local_addr().ok(), "listening socket from systemd");
                rsyncd::server::keep_open_on_drain(&l);
                out.push(l);
            }
            None => {
                let addr = std::net::SocketAddr::new(ip, port);
                let l = rsyncd::server::bind_listener(addr, net).with_context(|| format!("cannot bind {addr}"))?;
                out.push(l);
            }
        }
    }
    Ok(out)
}
