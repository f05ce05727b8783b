//! `rsyncd` command line: a drop-in for `rsync --daemon`.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;

use rsyncd::config;
use rsyncd::module::SessionSettings;

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
    /// Accepted for compatibility with `rsync --daemon` scripts; no effect.
    #[arg(long)]
    daemon: bool,
    /// Accepted for compatibility; the daemon always runs in the foreground.
    #[arg(long)]
    no_detach: bool,
    /// Validate the config file and exit.
    #[arg(long)]
    check_config: bool,
    /// Where snapshots are kept (default: a per-process directory under $TMPDIR).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// More logging (repeat for debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Serve this directory read-only as one module, without a config file.
    dir: Option<PathBuf>,
}

/// Port used by the embedded default (non-privileged).
const DEFAULT_DIR_PORT: u16 = 8873;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("RSYNCD_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let (cfg, default_port, embedded) = match (&cli.config, &cli.dir) {
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
            let path = c.clone().unwrap_or_else(|| PathBuf::from("/etc/rsyncd.conf"));
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
    let port = cli.port.or(cfg.global.port).unwrap_or(default_port);
    let address = cli.address.clone().or_else(|| cfg.global.address.clone());
    let ip: IpAddr = match &address {
        Some(a) => match a.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => (a.as_str(), port).to_socket_addrs()?.next().context("address resolves to nothing")?.ip(),
        },
        None => IpAddr::from([0, 0, 0, 0]),
    };
    let state_dir = cli.state_dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("rsyncd-{}", std::process::id())));
    let state = rsyncd::server::build_state(&cfg, &state_dir, SessionSettings::default(), port)?;
    let listeners = rsyncd::server::bind_all(&state, ip)?;
    for (l, spec) in listeners.iter().zip(&state.listeners) {
        let local = l.local_addr()?;
        let names: Vec<&str> =
            state.modules.iter().filter(|m| std::ptr::eq(&state.listeners[m.listener], spec)).map(|m| m.name.as_str()).collect();
        eprintln!("rsyncd: listening on {local}");
        tracing::info!(address = %local, modules = %names.join(" "), "listener ready");
    }
    if let Some(name) = embedded {
        let local = listeners[0].local_addr()?;
        let host = if local.ip().is_unspecified() { "127.0.0.1".to_string() } else { local.ip().to_string() };
        eprintln!("rsyncd: try: rsync -av rsync://{host}:{}/{name}/ /tmp/{name}-copy/", local.port());
    }
    rsyncd::server::serve_all(listeners, Arc::new(state))?;
    Ok(())
}
