//! Reads the operators' existing `rsyncd.conf`, exactly as stock rsync does.
//!
//! The lexer mirrors rsync's params.c (`Parse`, `Section`, `Parameter`,
//! `Continuation`, `include_config`) and the semantics mirror loadparm.c
//! (`do_section`, `do_parameter`, `set_boolean`, `expand_vars`, the
//! `]push`/`]pop`/`]reset` handling of `&include`).  Facts worth knowing:
//!
//! * A line whose first non-blank character is `#` or `;` is a comment; a `#`
//!   anywhere else is part of the value.  A `\` at the end of a line (trailing
//!   whitespace allowed) continues it; the next line is appended verbatim.
//! * Names compare case-insensitively with *all* whitespace ignored
//!   (`strwiEQ`): `Read Only`, `readonly` and `read  only` are one parameter,
//!   but `read_only` is unknown (stock ignores it with a log line).
//! * Module parameters before the first `[module]` (or in a `[global]`
//!   section) are defaults for the modules defined *after* them.  String
//!   parameters that a module never got are the exception: they fall back to
//!   the defaults as they stand at the end of the file (`FN_LOCAL_STRING`).
//! * A repeated module name (compared with `strwiEQ`) continues the earlier
//!   module.
//! * `&include FILE|DIR` parses the file(s) starting from the global context
//!   and restores the defaults afterwards; the parent then continues in the
//!   global context.  `&merge FILE|DIR` splices the text in place.  A directory
//!   means its `*.conf` (include) or `*.inc` (merge) files in byte order.
//!   Relative names are relative to the current directory.
//! * `%VAR%` (VAR starting with an upper-case letter) is replaced by the
//!   environment variable when it exists; anything else is left as written.
//!   Non-string parameters are expanded while reading, strings when built
//!   here.  Variables that stock sets per connection (`RSYNC_USER_NAME`, ...)
//!   are left unexpanded, with a warning (or a problem where that would be
//!   unsafe); `%RSYNC_MODULE_NAME%` becomes the module's name.
//!
//! Where stock merely logs a mistake and carries on with a different meaning
//! (a badly formed boolean, a line without `=`), we report a
//! [`ConfigProblem`] instead, and we collect every problem rather than
//! stopping at the first.  Parameters our daemon does not implement yet give a
//! [`ConfigWarning`].  Access parameters are parsed here too (host tokens,
//! `auth digest`), so a malformed one stops the daemon at start-up instead of
//! quietly failing to match; a misspelt protection (`hosts_allow`) is a
//! problem, since stock would drop it silently.

mod params;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use params::{
    is_space, str_wi_eq, Class, DefaultValue, Kind, Support, P, SYSLOG_FACILITIES, TABLE,
};

/// How deeply `&include`/`&merge` may nest (stock has no limit and would
/// recurse until it runs out of file descriptors or stack).
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// stock `expand_vars` gives each value this much room to grow.
const EXPAND_HEADROOM: usize = 2048;

/// Environment variables that stock's daemon sets for each connection, before
/// it reads the module's string parameters.  We cannot expand them at load time.
const PER_CONNECTION_VARS: &[&str] = &[
    "RSYNC_HOST_NAME",
    "RSYNC_HOST_ADDR",
    "RSYNC_USER_NAME",
    "RSYNC_MODULE_PATH",
    "RSYNC_PID",
    "RSYNC_REQUEST",
    "RSYNC_EXIT_STATUS",
    "RSYNC_RAW_STATUS",
];

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// A parsed configuration: the global settings, the modules in file order,
/// and everything worth telling the operator that did not stop us.
#[derive(Debug, Clone)]
pub struct Config {
    /// Daemon-wide settings.
    pub global: Global,
    /// The modules, in the order they were first defined (stock's list order).
    pub modules: Vec<Module>,
    /// Non-fatal findings (unsupported or unknown parameters, ...).
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// The module a client asks for by `name`.  Exact, case-sensitive match,
    /// like stock's `lp_number` (the last definition wins if two share a name).
    pub fn module(&self, name: &str) -> Option<&Module> {
        self.modules.iter().rev().find(|m| m.name == name)
    }
}

/// The global (daemon-wide) parameters, plus the module defaults that stock
/// also uses outside any module (log file, syslog settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// `port`; `None` when unset or 0 (stock then uses 873).
    pub port: Option<u16>,
    /// `address` to listen on.
    pub address: Option<String>,
    /// `motd file`, sent to every client before the module list/choice.
    pub motd_file: Option<PathBuf>,
    /// `pid file`: written when the daemon listens (see `server::write_pid_file`).
    pub pid_file: Option<PathBuf>,
    /// `log file` as set in the global context.
    pub log_file: Option<PathBuf>,
    /// `syslog facility` as set in the global context.
    pub syslog_facility: String,
    /// `syslog tag` as set in the global context.
    pub syslog_tag: String,
    /// `socket options`, set on each listening and each accepted socket.
    /// Names stock does not know were dropped with a warning, as stock does.
    pub socket_options: Vec<SocketOption>,
    /// `listen backlog`; `None` when unset (stock then uses 5, we use
    /// `server::UNSET_LISTEN_BACKLOG`).
    pub listen_backlog: Option<u32>,
    /// `proxy protocol`: every connection must start with a PROXY header
    /// from a peer in `proxy protocol hosts`.
    pub proxy_protocol: bool,
    /// `proxy protocol hosts` tokens (syntax of `hosts allow`), lower-cased
    /// and split on space, comma and tab: the peers trusted to send a PROXY
    /// header.  Empty: none is (stock 3.5.0 then rejects every connection).
    pub proxy_protocol_hosts: Vec<String>,
    /// `daemon chroot` (not yet supported).
    pub daemon_chroot: Option<PathBuf>,
    /// `daemon uid` (not yet supported).
    pub daemon_uid: Option<String>,
    /// `daemon gid` (not yet supported).
    pub daemon_gid: Option<String>,
    /// `reverse lookup` as set in the global context (default yes): stock
    /// resolves the client's name at connect time when it is on, whatever
    /// the module says.
    pub reverse_lookup: bool,
    /// `metrics address` (our extension): `host:port` of the Prometheus
    /// metrics endpoint; `None`: no endpoint (see `crate::metrics`).
    pub metrics_address: Option<String>,
    /// `max sessions` (our extension): sessions at once on each listener.
    pub max_sessions: usize,
    /// `max sessions per host` (our extension): sessions at once from one
    /// client (an IPv4 address or an IPv6 /64) on each listener.
    pub max_sessions_per_host: usize,
    /// `handshake timeout` (our extension): the absolute deadline from the
    /// accept to the end of the client's arguments.
    pub handshake_timeout: std::time::Duration,
    /// `max handshakes` (our extension): connections in their handshake at
    /// once on each listener (the oldest is closed to make room).
    pub max_handshakes: usize,
    /// `max handshakes per host` (our extension): connections in their
    /// handshake at once from one client on each listener.
    pub max_handshakes_per_host: usize,
    /// `drain timeout` (our extension): how long SIGTERM/SIGINT waits for the
    /// sessions in flight (0: exit at once).
    pub drain_timeout: std::time::Duration,
    /// Every parameter set in the global context, as written:
    /// (canonical name, raw unexpanded value, line).
    pub raw: Vec<(String, String, usize)>,
}

/// The options stock's `socket options` knows (mirrors socket.c
/// `socket_options[]` on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketOptionName {
    /// `SO_KEEPALIVE` (boolean).
    KeepAlive,
    /// `SO_REUSEADDR` (boolean).
    ReuseAddr,
    /// `SO_BROADCAST` (boolean).
    Broadcast,
    /// `TCP_NODELAY` (boolean).
    TcpNoDelay,
    /// `IPTOS_LOWDELAY`: sets `IP_TOS` to 0x10; takes no value.
    IpTosLowDelay,
    /// `IPTOS_THROUGHPUT`: sets `IP_TOS` to 0x08; takes no value.
    IpTosThroughput,
    /// `SO_SNDBUF=n`.
    SndBuf,
    /// `SO_RCVBUF=n`.
    RcvBuf,
    /// `SO_SNDLOWAT=n`.
    SndLowat,
    /// `SO_RCVLOWAT=n`.
    RcvLowat,
    /// `SO_SNDTIMEO=n`: known, but never set (see [`SocketOptionName::applied`]).
    SndTimeo,
    /// `SO_RCVTIMEO=n`: known, but never set.
    RcvTimeo,
}

impl SocketOptionName {
    const ALL: [SocketOptionName; 12] = [
        Self::KeepAlive,
        Self::ReuseAddr,
        Self::Broadcast,
        Self::TcpNoDelay,
        Self::IpTosLowDelay,
        Self::IpTosThroughput,
        Self::SndBuf,
        Self::RcvBuf,
        Self::SndLowat,
        Self::RcvLowat,
        Self::SndTimeo,
        Self::RcvTimeo,
    ];

    /// The name as written in `socket options` (case-sensitive, as stock).
    pub fn name(self) -> &'static str {
        match self {
            Self::KeepAlive => "SO_KEEPALIVE",
            Self::ReuseAddr => "SO_REUSEADDR",
            Self::Broadcast => "SO_BROADCAST",
            Self::TcpNoDelay => "TCP_NODELAY",
            Self::IpTosLowDelay => "IPTOS_LOWDELAY",
            Self::IpTosThroughput => "IPTOS_THROUGHPUT",
            Self::SndBuf => "SO_SNDBUF",
            Self::RcvBuf => "SO_RCVBUF",
            Self::SndLowat => "SO_SNDLOWAT",
            Self::RcvLowat => "SO_RCVLOWAT",
            Self::SndTimeo => "SO_SNDTIMEO",
            Self::RcvTimeo => "SO_RCVTIMEO",
        }
    }

    /// Looks up a name (exact, case-sensitive match like stock's `strcmp`).
    pub fn from_name(name: &str) -> Option<SocketOptionName> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Stock's `OPT_ON` options: a fixed value, `=n` is a syntax error.
    pub fn takes_value(self) -> bool {
        !matches!(self, Self::IpTosLowDelay | Self::IpTosThroughput)
    }

    /// Whether the daemon sets it.  The timeouts are not set: Linux wants a
    /// `struct timeval` where stock passes an `int` (its setsockopt fails
    /// with EINVAL), and the daemon's own `timeout` handling owns them.
    pub fn applied(self) -> bool {
        !matches!(self, Self::SndTimeo | Self::RcvTimeo)
    }
}

/// One entry of `socket options`: a name and its `int` value (1 when no
/// `=n` was given, as stock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOption {
    /// Which option.
    pub name: SocketOptionName,
    /// The value passed to setsockopt (for the `IPTOS_*` options, ignored).
    pub value: i32,
}

/// Parses `socket options` like socket.c `set_socket_options()`: tokens
/// split on space, tab and comma, `NAME` or `NAME=n` (`n` read with
/// `atoi`).  Returns the options and stock's complaints (`Unknown socket
/// option X`, `syntax error -- X does not take a value`) plus ours.
pub fn parse_socket_options(text: &str) -> (Vec<SocketOption>, Vec<String>) {
    let mut out = Vec::new();
    let mut complaints = Vec::new();
    for tok in text.split([' ', '\t', ',']).filter(|t| !t.is_empty()) {
        let (name, value) = match tok.split_once('=') {
            Some((n, v)) => (n, Some(atoi(v.as_bytes()).0.unwrap_or(-1))),
            None => (tok, None),
        };
        let Some(opt) = SocketOptionName::from_name(name) else {
            complaints.push(format!("Unknown socket option {name}"));
            continue;
        };
        if value.is_some() && !opt.takes_value() {
            complaints.push(format!("syntax error -- {name} does not take a value"));
        }
        if !opt.applied() {
            complaints.push(format!(
                "socket option {name} is ignored: the daemon's timeouts (\"timeout\") apply instead"
            ));
            continue;
        }
        out.push(SocketOption {
            name: opt,
            value: value.unwrap_or(1),
        });
    }
    (out, complaints)
}

/// One `[module]`.  Every stock module parameter, typed.  Fields documented as
/// "not yet supported" were reported as warnings and are not acted upon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// The name clients ask for (whitespace runs compressed to one space).
    pub name: String,
    /// `path`: the directory served (trailing slashes stripped, like stock).
    pub path: PathBuf,
    /// `comment`, shown in the module list.
    pub comment: String,
    /// `read only` (default yes).
    pub read_only: bool,
    /// `write only`: pulls are refused (`ERROR: module is write only`).
    pub write_only: bool,
    /// `list` (default yes): whether the module appears in the module list.
    pub list: bool,
    /// `uid`: the identity whose permissions decide what the module shows.
    pub uid: Option<String>,
    /// `gid`, split like stock's `conf_strtok`: the identity's groups.
    pub gid: Vec<String>,
    /// `use chroot`; `None` is stock's "unset" (we never chroot; see
    /// `session::modopts` for what the setting changes).
    pub use_chroot: Option<bool>,
    /// `numeric ids`; `None` is stock's "unset" (default: on for chroot modules).
    pub numeric_ids: Option<bool>,
    /// `munge symlinks`; `None` is stock's "unset" (default: off for chroot
    /// modules without a `/./` inner dir): `/rsyncd-munged/` is stripped from
    /// the link targets sent.
    pub munge_symlinks: Option<bool>,
    /// `open noatime`; `None` is stock's "unset" (the client's `--open-noatime` decides).
    pub open_noatime: Option<bool>,
    /// `max connections`; 0 means no limit, negative disables the module.
    pub max_connections: i32,
    /// `lock file`: where `max connections` slots are locked.
    pub lock_file: PathBuf,
    /// `hosts allow` tokens, lower-cased and split on space, comma and tab
    /// like stock's `access_match`.
    pub hosts_allow: Vec<String>,
    /// `hosts deny` tokens.
    pub hosts_deny: Vec<String>,
    /// `auth users` rules, split like `conf_strtok`.
    pub auth_users: Vec<String>,
    /// `auth digest`: the weakest digest accepted for a login.
    pub auth_digest: Option<String>,
    /// `secrets file`.
    pub secrets_file: Option<PathBuf>,
    /// `strict modes` (default yes).
    pub strict_modes: bool,
    /// `refuse options`, split on spaces like stock.
    pub refuse_options: Vec<String>,
    /// `filter`: one entry per daemon filter rule, split like stock's
    /// word-splitting filter parser (e.g. `- /foo` stays one rule).
    pub filter: Vec<Vec<u8>>,
    /// `include`: one entry per rule; a bare pattern is an include, an
    /// optional `- ` / `+ ` prefix overrides that (stock's old prefixes).
    pub include: Vec<Vec<u8>>,
    /// `exclude`: one entry per rule; a bare pattern is an exclude, an
    /// optional `- ` / `+ ` prefix overrides that (stock's old prefixes).
    pub exclude: Vec<Vec<u8>>,
    /// `include from`: read at start-up.
    pub include_from: Option<PathBuf>,
    /// `exclude from`: read at start-up.
    pub exclude_from: Option<PathBuf>,
    /// `ignore nonreadable` (entries the module's identity cannot read are
    /// always hidden; see `access::identity`).
    pub ignore_nonreadable: bool,
    /// `ignore errors`: I/O errors are not reported to the client's generator.
    pub ignore_errors: bool,
    /// `dont compress` patterns; like stock 3.2.7 only the word `*` has an
    /// effect (zlib/zlibx files are stored at level 0).
    pub dont_compress: Vec<String>,
    /// `timeout` in seconds, 0 = none: bounds the handshake and idle I/O.
    pub timeout: u32,
    /// `transfer logging`.
    pub transfer_logging: bool,
    /// `log format`.
    pub log_format: String,
    /// `log file`.
    pub log_file: Option<PathBuf>,
    /// `syslog facility`.
    pub syslog_facility: String,
    /// `syslog tag`.
    pub syslog_tag: String,
    /// `max verbosity` (default 1): caps the client's `-v` count.
    pub max_verbosity: i32,
    /// `reverse lookup` (default yes).
    pub reverse_lookup: bool,
    /// `forward lookup` (default yes).
    pub forward_lookup: bool,
    /// `fake super` (not yet supported).
    pub fake_super: bool,
    /// `insecure links` (not yet supported).
    pub insecure_links: bool,
    /// `charset` (not yet supported).
    pub charset: Option<String>,
    /// `incoming chmod` (not yet supported).
    pub incoming_chmod: Option<String>,
    /// `outgoing chmod`: applied to the modes in the sent file list.
    pub outgoing_chmod: Option<String>,
    /// `pre-xfer exec`, as written: its `%VAR%` references are expanded for
    /// each connection, shell-quoted (see `crate::exec`).
    pub pre_xfer_exec: Option<String>,
    /// `post-xfer exec`, as written (see `pre_xfer_exec`).
    pub post_xfer_exec: Option<String>,
    /// `early exec`, as written (see `pre_xfer_exec`).
    pub early_exec: Option<String>,
    /// `name converter` (not yet supported).
    pub name_converter: Option<String>,
    /// `temp dir` (not yet supported).
    pub temp_dir: Option<PathBuf>,
    /// `daemon port` (our extension): the port of the listener that serves
    /// this module; `None` means the main listener.
    pub daemon_port: Option<u16>,
    /// `rescan interval` (our extension): seconds between background full
    /// rescans of the tree.  `None` (unset or negative): automatic, i.e. off
    /// while the fanotify watcher works and 300 s when it does not; `Some(0)`:
    /// off.
    pub rescan_interval: Option<u32>,
    /// `trigger quiet time` (our extension): seconds the tree must stay
    /// unchanged after a change before the triggers fire (default 30).
    pub trigger_quiet_time: u32,
    /// `trigger exec` (our extension), as written: run with `/bin/sh -c`
    /// when the tree changed (see `crate::triggers`).
    pub trigger_exec: Option<String>,
    /// `trigger url` (our extension): `http://` URL POSTed to when the
    /// tree changed.
    pub trigger_url: Option<String>,
    /// `trigger retries` (our extension): further attempts after a failed
    /// trigger (default 3).
    pub trigger_retries: u32,
    /// `fullfiletimelist` / `fullfiletimelist name` (our extension): the
    /// file name of the generated quick-fedora-mirror list served at the top
    /// of the module, or `None` when off (see `crate::ffl`).
    pub fullfiletimelist: Option<Vec<u8>>,
    /// `fullfiletimelist checksums` (our extension): basenames whose SHA1
    /// goes into the list's `[Checksums SHA1]` section (default `repomd.xml`).
    pub fullfiletimelist_checksums: Vec<Vec<u8>>,
    /// `checksum cache` (our extension): keep whole-file checksums so `-c`
    /// costs no file reads (see `crate::sumcache`).
    pub checksum_cache: bool,
    /// `checksum cache rate` (our extension): MiB per second the background
    /// hashing may read; 0 is no limit.  Default 32.
    pub checksum_cache_rate: u32,
    /// Every parameter in effect for this module that was set somewhere
    /// (in the module or as a default), as written:
    /// (canonical name, raw unexpanded value, line).
    pub raw: Vec<(String, String, usize)>,
}

/// A finding that does not stop the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file the line is in (as named by the operator or an `&include`).
    pub file: PathBuf,
    /// 1-based line number (0 for `--dparam` values).
    pub line: usize,
    /// What is wrong, e.g. `parameter "uid" is not yet supported; it is ignored`.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {}: {}",
            self.file.display(),
            self.line,
            self.message
        )
    }
}

/// A finding that stops the daemon from starting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file the line is in.
    pub file: PathBuf,
    /// 1-based line number (0 for `--dparam` values or a file that could not be read).
    pub line: usize,
    /// The canonical parameter name involved, if any (e.g. `"hosts allow"`).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} line {}: {}",
            self.file.display(),
            self.line,
            self.message
        )
    }
}

/// Every problem found in a configuration (never just the first).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_problems(.problems))]
pub struct ConfigError {
    /// All problems, in the order found.
    pub problems: Vec<ConfigProblem>,
    /// The warnings gathered on the way, for `--check-config` style output.
    pub warnings: Vec<ConfigWarning>,
}

fn render_problems(problems: &[ConfigProblem]) -> String {
    let mut s = format!(
        "{} problem{} in the configuration:",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s
}

/// Looks up an environment variable by name (bytes in, bytes out).
pub type EnvLookup<'a> = &'a dyn Fn(&[u8]) -> Option<Vec<u8>>;

/// What varies between loads: the environment used for `%VAR%` and the
/// daemon's `--dparam=NAME=VALUE` overrides.
#[derive(Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Environment lookup for `%VAR%` expansion.
    pub env: EnvLookup<'a>,
    /// `--dparam` values (`"name=value"`), applied like stock at the end of
    /// the global section (before the first module).
    pub dparams: &'a [String],
}

impl LoadOptions<'static> {
    /// The process environment and no `--dparam` values.
    pub fn process() -> Self {
        LoadOptions {
            env: &process_env,
            dparams: &[],
        }
    }
}

impl fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field("dparams", &self.dparams)
            .finish_non_exhaustive()
    }
}

/// Reads a variable from the process environment (like C `getenv`).
pub fn process_env(name: &[u8]) -> Option<Vec<u8>> {
    if name.is_empty() || name.contains(&b'=') || name.contains(&0) {
        return None;
    }
    std::env::var_os(OsStr::from_bytes(name)).map(|v| v.as_bytes().to_vec())
}

/// Parses configuration text; `source` names it in diagnostics.  `&include`
/// and `&merge` paths are resolved relative to the current directory, like
/// stock.  Uses the process environment for `%VAR%`.
pub fn parse_str(text: &str, source: &Path) -> Result<Config, ConfigError> {
    parse_bytes_with(text.as_bytes(), source, &LoadOptions::process())
}

/// Like [`parse_str`] for raw bytes (values need not be UTF-8), with an
/// injected environment and `--dparam` values.
pub fn parse_bytes_with(
    text: &[u8],
    source: &Path,
    opts: &LoadOptions<'_>,
) -> Result<Config, ConfigError> {
    let mut loader = Loader::new(opts, source);
    loader.depth = 1;
    loader.process_text(text, source);
    loader.finish()
}

/// Reads and parses the configuration file at `path` using the process
/// environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with(path, &LoadOptions::process())
}

/// Reads and parses the configuration file at `path`.
pub fn load_with(path: &Path, opts: &LoadOptions<'_>) -> Result<Config, ConfigError> {
    let mut loader = Loader::new(opts, path);
    loader.load_file(path, None);
    loader.finish()
}

// ---------------------------------------------------------------------------
// %VAR% expansion
// ---------------------------------------------------------------------------

/// A value grew beyond what stock's `expand_vars` allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Overflowed buf in expand_vars() trying to expand: {}", String::from_utf8_lossy(.0))]
pub struct ExpandOverflow(pub Vec<u8>);

/// Expands `%VAR%` references.  Mirrors loadparm.c `expand_vars` (without the
/// shell quoting it applies to exec hooks): a `%` followed by an upper-case
/// ASCII letter, up to the next `%`, names a variable; if `lookup` knows it,
/// the whole reference is replaced, otherwise the characters stay as written
/// (and scanning resumes right after that first `%`).  `%%` is not special.
/// The result may be at most 2048 bytes longer than the input.
pub fn expand_vars(
    value: &[u8],
    lookup: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, ExpandOverflow> {
    if !value.contains(&b'%') {
        return Ok(value.to_vec());
    }
    let limit = value.len() + EXPAND_HEADROOM;
    let mut out = Vec::with_capacity(value.len());
    let mut f = 0;
    while f < value.len() {
        if value[f] == b'%' && value.get(f + 1).is_some_and(u8::is_ascii_uppercase) {
            if let Some(rel) = value[f + 1..].iter().position(|&c| c == b'%') {
                let name = &value[f + 1..f + 1 + rel];
                if let Some(val) = lookup(name) {
                    out.extend_from_slice(&val);
                    if out.len() > limit {
                        return Err(ExpandOverflow(value.to_vec()));
                    }
                    f += rel + 2;
                    continue;
                }
            }
        }
        out.push(value[f]);
        f += 1;
        if out.len() > limit {
            return Err(ExpandOverflow(value.to_vec()));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Filter rule splitting
// ---------------------------------------------------------------------------

/// Which daemon filter parameter a rule string comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleList {
    /// `filter`: full filter-rule syntax (`- pat`, `+ pat`, `exclude pat`,
    /// `merge file`, modifiers, `!`).
    Filter,
    /// `include` / `exclude`: patterns with the optional old `- ` / `+ `
    /// prefixes only (stock's `XFLG_OLD_PREFIXES`).
    OldPrefixes,
}

/// Splits a daemon `filter`, `include` or `exclude` value into one string per
/// rule, the way stock's `parse_rule_tok` does with `FILTRULE_WORD_SPLIT`:
/// whitespace separates rules, but a rule's prefix and its pattern stay
/// together (`"- /foo  - /bar"` is two rules).  Returns stock's complaint for
/// a malformed rule.  Each rule keeps its prefix and modifiers as written;
/// the filter code parses them.
pub fn split_filter_rules(value: &[u8], list: RuleList) -> Result<Vec<Vec<u8>>, String> {
    let mut rules = Vec::new();
    let mut p = 0;
    loop {
        while p < value.len() && is_space(value[p]) {
            p += 1;
        }
        if p >= value.len() {
            return Ok(rules);
        }
        let start = p;
        let end = match list {
            RuleList::OldPrefixes => old_prefix_rule_end(value, start)?,
            RuleList::Filter => filter_rule_end(value, start)?,
        };
        rules.push(value[start..end].to_vec());
        p = end;
    }
}

fn token_end(value: &[u8], mut s: usize) -> usize {
    while s < value.len() && !is_space(value[s]) {
        s += 1;
    }
    s
}

fn rule_text(value: &[u8], start: usize) -> String {
    String::from_utf8_lossy(&value[start..token_end(value, start)]).into_owned()
}

/// Mirrors the `XFLG_OLD_PREFIXES` branch of exclude.c `parse_rule_tok`.
fn old_prefix_rule_end(value: &[u8], start: usize) -> Result<usize, String> {
    let mut s = start;
    let mut clear = false;
    match (value[s], value.get(s + 1)) {
        (b'-' | b'+', Some(b' ')) => s += 2,
        (b'!', _) => clear = true,
        _ => {}
    }
    let end = token_end(value, s);
    if !clear && end == s {
        return Err(format!(
            "unexpected end of filter rule: {}",
            String::from_utf8_lossy(&value[start..end])
        ));
    }
    Ok(end)
}

/// Mirrors exclude.c `rule_strcmp`: the keyword must be followed by
/// whitespace, `_`, `,` or the end.  Returns the index of the keyword's last
/// character (or of the comma).
fn rule_keyword(value: &[u8], s: usize, word: &[u8]) -> Option<usize> {
    if !value[s..].starts_with(word) {
        return None;
    }
    let after = s + word.len();
    match value.get(after) {
        None => Some(after - 1),
        Some(&c) if is_space(c) || c == b'_' => Some(after - 1),
        Some(b',') => Some(after),
        Some(_) => None,
    }
}

/// Mirrors the full-syntax branch of exclude.c `parse_rule_tok` with
/// `FILTRULE_WORD_SPLIT`, as far as it decides where a rule ends.
fn filter_rule_end(value: &[u8], start: usize) -> Result<usize, String> {
    const KEYWORDS: &[(u8, &[u8], u8)] = &[
        (b'c', b"clear", b'!'),
        (b'd', b"dir-merge", b':'),
        (b'e', b"exclude", b'-'),
        (b'h', b"hide", b'H'),
        (b'i', b"include", b'+'),
        (b'm', b"merge", b'.'),
        (b'p', b"protect", b'P'),
        (b'r', b"risk", b'R'),
        (b's', b"show", b'S'),
    ];
    let unknown = || format!("Unknown filter rule: `{}'", rule_text(value, start));
    let mut s = start;
    let ch = match KEYWORDS.iter().find(|k| k.0 == value[s]) {
        Some(&(_, word, ch)) => {
            s = rule_keyword(value, s, word).ok_or_else(unknown)?;
            ch
        }
        None => {
            let ch = value[s];
            if value.get(s + 1) == Some(&b',') {
                s += 1;
            }
            ch
        }
    };
    if !matches!(
        ch,
        b':' | b'.' | b'+' | b'-' | b'S' | b'H' | b'R' | b'P' | b'!'
    ) {
        return Err(unknown());
    }
    let mut cvs_ignore = false;
    if ch != b'!' {
        loop {
            s += 1;
            match value.get(s) {
                None | Some(b' ') | Some(b'_') => break,
                Some(&c) if is_space(c) => {
                    s -= 1;
                    break;
                }
                Some(&c) => {
                    if !b"-+/!Cenprswx".contains(&c) {
                        return Err(format!(
                            "invalid modifier '{}' at position {} in filter rule: {}",
                            c as char,
                            s - start,
                            rule_text(value, start)
                        ));
                    }
                    cvs_ignore |= c == b'C';
                }
            }
        }
    }
    if s < value.len() {
        s += 1;
    }
    let end = token_end(value, s);
    if ch == b'!' {
        if end > s {
            return Err(format!(
                "'!' rule has trailing characters: {}",
                rule_text(value, start)
            ));
        }
    } else if end == s && !cvs_ignore {
        return Err(format!(
            "unexpected end of filter rule: {}",
            rule_text(value, start)
        ));
    }
    Ok(end)
}

// ---------------------------------------------------------------------------
// The lexer (mirrors params.c)
// ---------------------------------------------------------------------------

/// One thing the lexer found.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    /// `[name]`, whitespace compressed.
    Section(Vec<u8>),
    /// `name = value`.
    Param { name: Vec<u8>, value: Vec<u8> },
    /// `&name value`.
    Directive { name: Vec<u8>, value: Vec<u8> },
    /// `[]`: stock "Empty section name in config file." (fatal).
    EmptySection,
    /// A newline before `]`: stock "Badly formed line in config file" (fatal).
    BadSectionLine(Vec<u8>),
    /// EOF before `]`: stock "Unexpected EOF in the config file" (fatal).
    SectionEof(Vec<u8>),
    /// A parameter line without `=`: stock ignores it with a log line.
    BadLine(Vec<u8>),
    /// EOF inside a parameter name: stock ignores it with a log line.
    EofInName(Vec<u8>),
    /// `= value` with no name: stock "Invalid parameter name" (fatal).
    InvalidName,
}

struct Lexer<'t> {
    text: &'t [u8],
    pos: usize,
    /// Line of the next character to be read.
    line: usize,
    /// Stock `Parse`'s look-ahead character.
    c: Option<u8>,
}

/// Mirrors params.c `Continuation`: the index of a trailing `\` (trailing
/// whitespace allowed) in `buf`, if any.
fn continuation(buf: &[u8]) -> Option<usize> {
    let mut p = buf.len();
    while p > 0 && is_space(buf[p - 1]) {
        p -= 1;
    }
    (p > 0 && buf[p - 1] == b'\\').then(|| p - 1)
}

impl<'t> Lexer<'t> {
    fn new(text: &'t [u8]) -> Self {
        let mut lx = Lexer {
            text,
            pos: 0,
            line: 1,
            c: None,
        };
        lx.c = lx.eat_whitespace();
        lx
    }

    fn getc(&mut self) -> Option<u8> {
        let c = *self.text.get(self.pos)?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Mirrors `EatWhitespace`: skips whitespace other than newline.
    fn eat_whitespace(&mut self) -> Option<u8> {
        loop {
            match self.getc() {
                Some(c) if is_space(c) && c != b'\n' => {}
                other => return other,
            }
        }
    }

    /// Mirrors `EatComment`: skips to the end of the line.
    fn eat_comment(&mut self) -> Option<u8> {
        loop {
            match self.getc() {
                Some(b'\n') => return Some(b'\n'),
                None => return None,
                Some(_) => {}
            }
        }
    }

    /// Mirrors `Parse`: returns the next item and the line it starts on.
    fn next_item(&mut self) -> Option<(usize, Item)> {
        loop {
            let c = self.c?;
            let line = self.line;
            match c {
                b'\n' | b'\\' => self.c = self.eat_whitespace(),
                b';' | b'#' => self.c = self.eat_comment(),
                b'[' => {
                    let item = self.section();
                    self.c = self.eat_whitespace();
                    return Some((line, item));
                }
                _ => {
                    let item = self.parameter(c);
                    self.c = self.eat_whitespace();
                    return Some((line, item));
                }
            }
        }
    }

    /// Mirrors `Section`; the `[` has been read.
    fn section(&mut self) -> Item {
        let mut buf: Vec<u8> = Vec::new();
        let (mut i, mut end) = (0usize, 0usize);
        let mut c = self.eat_whitespace();
        while let Some(ch) = c {
            match ch {
                b']' => {
                    buf.truncate(end);
                    self.eat_comment();
                    return if end == 0 {
                        Item::EmptySection
                    } else {
                        Item::Section(buf)
                    };
                }
                b'\n' => match continuation(&buf[..i]) {
                    None => {
                        buf.truncate(end);
                        return Item::BadSectionLine(buf);
                    }
                    Some(p) => {
                        i = p;
                        end = if i > 0 && buf[i - 1] == b' ' {
                            i - 1
                        } else {
                            i
                        };
                        c = self.getc();
                    }
                },
                _ if is_space(ch) => {
                    buf.truncate(end);
                    buf.push(b' ');
                    i = end + 1;
                    c = self.eat_whitespace();
                }
                _ => {
                    buf.truncate(i);
                    buf.push(ch);
                    i += 1;
                    end = i;
                    c = self.getc();
                }
            }
        }
        buf.truncate(end);
        Item::SectionEof(buf)
    }

    /// Mirrors `Parameter`; `first` is the name's first character.
    fn parameter(&mut self, first: u8) -> Item {
        let mut buf: Vec<u8> = Vec::new();
        let (mut i, mut end) = (0usize, 0usize);
        let mut vstart = 0usize;
        let mut invalid_name = false;
        let mut c = Some(first);
        // The name.
        while vstart == 0 {
            match c {
                Some(b'=') => {
                    invalid_name = end == 0;
                    buf.truncate(end);
                    buf.push(0);
                    end += 1;
                    i = end;
                    vstart = end;
                    c = self.eat_whitespace();
                }
                Some(b'\n') => match continuation(&buf[..i]) {
                    None => {
                        buf.truncate(end);
                        return Item::BadLine(buf);
                    }
                    Some(p) => {
                        i = p;
                        end = if i > 0 && buf[i - 1] == b' ' {
                            i - 1
                        } else {
                            i
                        };
                        c = self.getc();
                    }
                },
                None => {
                    buf.truncate(i);
                    return Item::EofInName(buf);
                }
                // A directive's name ends at the first space or tab.
                Some(b' ' | b'\t') if buf.first() == Some(&b'&') => {
                    buf.truncate(end);
                    buf.push(0);
                    end += 1;
                    i = end;
                    vstart = end;
                    c = self.eat_whitespace();
                    if c == Some(b'=') {
                        c = self.eat_whitespace();
                    }
                }
                Some(ch) if is_space(ch) => {
                    buf.truncate(end);
                    buf.push(b' ');
                    i = end + 1;
                    c = self.eat_whitespace();
                }
                Some(ch) => {
                    buf.truncate(i);
                    buf.push(ch);
                    i += 1;
                    end = i;
                    c = self.getc();
                }
            }
        }
        // The value.
        while let Some(ch) = c {
            match ch {
                b'\r' => c = self.getc(),
                b'\n' => match continuation(&buf[..i]) {
                    None => c = None,
                    Some(p) => {
                        i = p;
                        end = i;
                        c = self.getc();
                    }
                },
                _ => {
                    buf.truncate(i);
                    buf.push(ch);
                    i += 1;
                    if !is_space(ch) {
                        end = i;
                    }
                    c = self.getc();
                }
            }
        }
        if invalid_name {
            return Item::InvalidName;
        }
        let name = buf[..vstart - 1].to_vec();
        let value = buf[vstart..end].to_vec();
        if name.first() == Some(&b'&') {
            Item::Directive { name, value }
        } else {
            Item::Param { name, value }
        }
    }
}

// ---------------------------------------------------------------------------
// The loader (mirrors loadparm.c)
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Origin {
    file: PathBuf,
    line: usize,
}

#[derive(Debug, Clone)]
enum Value {
    /// String or path, unexpanded (paths already without trailing slashes).
    Str(Vec<u8>),
    Int(i32),
    Bool(bool),
    Bool3(Option<bool>),
    /// A syslog facility: a known name (lower case) or a positive number.
    Enum(String),
}

#[derive(Debug, Clone)]
struct Setting {
    value: Value,
    /// As written (unexpanded).
    raw: Vec<u8>,
    origin: Origin,
}

/// One value slot per parameter (stock's `all_vars`); `None` = built-in default.
type Vars = Vec<Option<Setting>>;

struct Section {
    /// Current name (a `name` parameter renames the module, as in stock).
    name: Vec<u8>,
    origin: Origin,
    vals: Vars,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// Parameters set globals and module defaults.
    Global,
    /// Parameters set this module (index into `sections`).
    Module(usize),
    /// After a bad section header: stock would have stopped reading; we skip
    /// parameters until the next header so that we can report more problems.
    Poisoned,
}

struct Loader<'o> {
    opts: &'o LoadOptions<'o>,
    vars: Vars,
    stack: Vec<Vars>,
    sections: Vec<Section>,
    ctx: Ctx,
    dparams_done: bool,
    depth: usize,
    /// The top-level file, for findings about the whole configuration.
    source: PathBuf,
    warnings: Vec<ConfigWarning>,
    problems: Vec<ConfigProblem>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn os_path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(b))
}

/// Mirrors C `atoi()`: leading whitespace, an optional sign, then digits;
/// anything after is ignored.  Returns the value (None if it does not fit an
/// `i32`) and whether the text was exactly an integer.
fn atoi(s: &[u8]) -> (Option<i32>, bool) {
    let mut p = 0;
    while p < s.len() && is_space(s[p]) {
        p += 1;
    }
    let neg = s.get(p) == Some(&b'-');
    if matches!(s.get(p), Some(b'-' | b'+')) {
        p += 1;
    }
    let digits_start = p;
    let mut v: i64 = 0;
    while p < s.len() && s[p].is_ascii_digit() {
        v = (v * 10 + i64::from(s[p] - b'0')).min(i64::from(u32::MAX) + 1);
        p += 1;
    }
    let clean = p > digits_start && p == s.len();
    let v = if neg { -v } else { v };
    (i32::try_from(v).ok(), clean)
}

/// Mirrors loadparm.c `set_boolean`.
fn parse_bool(v: &[u8], allow_unset: bool) -> Option<Option<bool>> {
    let is = |w: &str| str_wi_eq(v, w.as_bytes());
    if is("yes") || is("true") || is("1") {
        Some(Some(true))
    } else if is("no") || is("false") || is("0") {
        Some(Some(false))
    } else if allow_unset && (is("unset") || is("-1")) {
        Some(None)
    } else {
        None
    }
}

/// Splits like stock's `conf_strtok` (util1.c): on spaces, tabs, commas and
/// newlines, or only on commas if the value starts with a comma.
fn conf_strtok(v: &str) -> Vec<String> {
    let t = v.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
    if let Some(rest) = t.strip_prefix(',') {
        rest.split(',')
            .map(|s| s.trim_matches(|c: char| c.is_ascii() && is_space(c as u8)))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    } else {
        t.split([' ', ',', '\t', '\r', '\n'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl<'o> Loader<'o> {
    fn new(opts: &'o LoadOptions<'o>, source: &Path) -> Self {
        Loader {
            source: source.to_path_buf(),
            opts,
            vars: vec![None; TABLE.len()],
            stack: Vec::new(),
            sections: Vec::new(),
            ctx: Ctx::Global,
            dparams_done: false,
            depth: 0,
            warnings: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn warn(&mut self, origin: &Origin, message: String) {
        self.warnings.push(ConfigWarning {
            file: origin.file.clone(),
            line: origin.line,
            message,
        });
    }

    fn problem(&mut self, origin: &Origin, key: Option<P>, message: String) {
        self.problems.push(ConfigProblem {
            file: origin.file.clone(),
            line: origin.line,
            key: key.map(|p| p.label().to_owned()),
            message,
        });
    }

    /// Reads one file (mirrors `pm_process`).
    fn load_file(&mut self, path: &Path, from: Option<&Origin>) {
        let origin = from.cloned().unwrap_or_else(|| Origin {
            file: path.to_path_buf(),
            line: 0,
        });
        if path.as_os_str().is_empty() {
            self.problem(&origin, None, "No config filename specified.".into());
            return;
        }
        if self.depth >= MAX_INCLUDE_DEPTH {
            self.problem(
                &origin,
                None,
                format!(
                    "config files nested more than {MAX_INCLUDE_DEPTH} deep at \"{}\" (an include loop?)",
                    path.display()
                ),
            );
            return;
        }
        match std::fs::read(path) {
            Ok(text) => {
                self.depth += 1;
                self.process_text(&text, path);
                self.depth -= 1;
            }
            Err(e) => self.problem(
                &origin,
                None,
                format!("unable to open config file \"{}\": {e}", path.display()),
            ),
        }
    }

    fn process_text(&mut self, text: &[u8], file: &Path) {
        let text = match text.iter().position(|&c| c == 0) {
            Some(n) => {
                let line = 1 + text[..n].iter().filter(|&&c| c == b'\n').count();
                self.problem(
                    &Origin {
                        file: file.to_path_buf(),
                        line,
                    },
                    None,
                    "config file contains a NUL byte (stock rsync stops reading there)".into(),
                );
                &text[..n]
            }
            None => text,
        };
        let mut lx = Lexer::new(text);
        while let Some((line, item)) = lx.next_item() {
            let origin = Origin {
                file: file.to_path_buf(),
                line,
            };
            match item {
                Item::Section(name) => self.do_section(name, origin),
                Item::Param { name, value } => self.do_parameter(&name, &value, &origin),
                Item::Directive { name, value } => self.do_directive(&name, &value, &origin),
                Item::EmptySection => {
                    self.problem(&origin, None, "Empty section name in config file.".into());
                    self.ctx = Ctx::Poisoned;
                }
                Item::BadSectionLine(buf) => {
                    self.problem(
                        &origin,
                        None,
                        format!("Badly formed line in config file: [{}", lossy(&buf)),
                    );
                    self.ctx = Ctx::Poisoned;
                }
                Item::SectionEof(buf) => {
                    self.problem(
                        &origin,
                        None,
                        format!("Unexpected EOF in the config file: [{}", lossy(&buf)),
                    );
                    self.ctx = Ctx::Poisoned;
                }
                Item::BadLine(buf) => self.problem(
                    &origin,
                    None,
                    format!(
                        "badly formed line in config file (no \"=\"): {} (stock rsync ignores it)",
                        lossy(&buf)
                    ),
                ),
                Item::EofInName(buf) => self.problem(
                    &origin,
                    None,
                    format!("Unexpected end-of-file at: {}", lossy(&buf)),
                ),
                Item::InvalidName => self.problem(
                    &origin,
                    None,
                    "Invalid parameter name in config file.".into(),
                ),
            }
        }
    }

    /// Mirrors params.c `parse_directives` / `include_config`.
    fn do_directive(&mut self, name: &[u8], value: &[u8], origin: &Origin) {
        let manage_globals = if name.eq_ignore_ascii_case(b"&include") {
            true
        } else if name.eq_ignore_ascii_case(b"&merge") {
            false
        } else {
            self.problem(origin, None, format!("Unknown directive: {}.", lossy(name)));
            return;
        };
        let path = os_path(value);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                self.problem(
                    origin,
                    None,
                    format!("unable to stat config file \"{}\": {e}", path.display()),
                );
                return;
            }
        };
        if meta.is_file() {
            if manage_globals {
                self.push();
            }
            self.load_file(&path, Some(origin));
            if manage_globals {
                self.pop();
            }
        } else if meta.is_dir() {
            let suffix: &[u8] = if manage_globals { b".conf" } else { b".inc" };
            let entries = match std::fs::read_dir(&path) {
                Ok(rd) => rd,
                Err(e) => {
                    self.problem(
                        origin,
                        None,
                        format!("unable to open config dir \"{}\": {e}", path.display()),
                    );
                    return;
                }
            };
            let mut files: Vec<PathBuf> = Vec::new();
            for entry in entries {
                match entry {
                    Ok(e) if e.file_name().as_bytes().ends_with(suffix) => {
                        files.push(path.join(e.file_name()))
                    }
                    Ok(_) => {}
                    Err(e) => self.problem(
                        origin,
                        None,
                        format!("unable to read config dir \"{}\": {e}", path.display()),
                    ),
                }
            }
            files.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
            for (j, f) in files.iter().enumerate() {
                if manage_globals {
                    if j == 0 {
                        self.push();
                    } else {
                        self.reset();
                    }
                }
                self.load_file(f, Some(origin));
            }
            if manage_globals && !files.is_empty() {
                self.pop();
            }
        } else {
            self.problem(
                origin,
                None,
                format!(
                    "config path \"{}\" is neither a file nor a directory",
                    path.display()
                ),
            );
        }
    }

    /// `]push`: save the globals and defaults, continue in the global context.
    fn push(&mut self) {
        self.stack.push(self.vars.clone());
        self.ctx = Ctx::Global;
    }

    /// `]reset`: restore the saved globals and defaults.
    fn reset(&mut self) {
        if let Some(v) = self.stack.last() {
            self.vars = v.clone();
        }
        self.ctx = Ctx::Global;
    }

    /// `]pop`: restore and drop the saved globals and defaults.
    fn pop(&mut self) {
        if let Some(v) = self.stack.pop() {
            self.vars = v;
        }
        self.ctx = Ctx::Global;
    }

    /// Mirrors loadparm.c `do_section`.
    fn do_section(&mut self, name: Vec<u8>, origin: Origin) {
        let is_global = str_wi_eq(&name, b"global");
        if !is_global && self.sections.is_empty() {
            self.apply_dparams();
        }
        if is_global {
            self.ctx = Ctx::Global;
            return;
        }
        if name.contains(&b'/') {
            self.problem(
                &origin,
                None,
                format!(
                    "invalid section name in configuration file: {} (a module name cannot contain '/')",
                    lossy(&name)
                ),
            );
            self.ctx = Ctx::Poisoned;
            return;
        }
        // Mirrors add_a_section/getsectionbyname: a known name continues that module.
        if let Some(idx) = self
            .sections
            .iter()
            .rposition(|s| str_wi_eq(&s.name, &name))
        {
            let first = &self.sections[idx];
            let msg = format!(
                "module [{}] is defined again; like stock rsync, its parameters are added to the [{}] first defined at {} line {}",
                lossy(&name),
                lossy(&first.name),
                first.origin.file.display(),
                first.origin.line
            );
            self.warn(&origin, msg);
            self.ctx = Ctx::Module(idx);
            return;
        }
        self.sections.push(Section {
            name,
            origin,
            vals: self.vars.clone(),
        });
        self.ctx = Ctx::Module(self.sections.len() - 1);
    }

    /// Mirrors loadparm.c `set_dparams`: applies `--dparam` values once, in
    /// the global context.
    fn apply_dparams(&mut self) {
        if self.dparams_done {
            return;
        }
        self.dparams_done = true;
        let saved = self.ctx;
        self.ctx = Ctx::Global;
        let origin = Origin {
            file: PathBuf::from("--dparam"),
            line: 0,
        };
        for dp in self.opts.dparams {
            let Some((name, value)) = dp.split_once('=') else {
                self.problem(
                    &origin,
                    None,
                    format!("--dparam value \"{dp}\" has no \"=\""),
                );
                continue;
            };
            if name.starts_with('-') || params::lookup(name.as_bytes()).is_none() {
                self.problem(&origin, None, format!("Unknown parameter \"{name}\""));
                continue;
            }
            let value = value.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
            self.do_parameter(name.as_bytes(), value.as_bytes(), &origin);
        }
        self.ctx = saved;
    }

    /// Mirrors loadparm.c `do_parameter` (+ `map_parameter`).
    fn do_parameter(&mut self, name: &[u8], value: &[u8], origin: &Origin) {
        if self.ctx == Ctx::Poisoned {
            return;
        }
        if name.first() == Some(&b'-') {
            let msg = format!("IGNORING unknown parameter \"{}\"", lossy(name));
            self.warn(origin, msg);
            return;
        }
        let Some(p) = params::lookup(name) else {
            self.unknown_parameter(name, origin);
            return;
        };
        let def = p.def();
        let target = match self.ctx {
            Ctx::Global | Ctx::Poisoned => None,
            Ctx::Module(i) => {
                if def.class == Class::Global {
                    let msg = format!("Global parameter {} found in module section!", lossy(name));
                    self.warn(origin, msg);
                    return;
                }
                Some(i)
            }
        };
        let typed = match def.kind {
            Kind::Str => Value::Str(value.to_vec()),
            Kind::Path => {
                let mut len = value.len();
                while len > 1 && value[len - 1] == b'/' {
                    len -= 1;
                }
                Value::Str(value[..len].to_vec())
            }
            _ => {
                // Non-string values are expanded while reading, like stock.
                let expanded = match expand_vars(value, self.opts.env) {
                    Ok(v) => v,
                    Err(e) => {
                        self.problem(origin, Some(p), e.to_string());
                        return;
                    }
                };
                match self.typed_scalar(p, &expanded, origin) {
                    Some(v) => v,
                    None => return,
                }
            }
        };
        match def.support {
            Support::NotYet => {
                let msg = format!(
                    "parameter \"{}\" is not yet supported; it is ignored",
                    def.label
                );
                self.warn(origin, msg);
            }
            Support::Yes | Support::Protection => {}
        }
        let setting = Setting {
            value: typed,
            raw: value.to_vec(),
            origin: origin.clone(),
        };
        match target {
            None => self.vars[p as usize] = Some(setting),
            Some(i) => {
                if p == P::Name {
                    self.sections[i].name = value.to_vec();
                }
                self.sections[i].vals[p as usize] = Some(setting);
            }
        }
    }

    /// Converts an expanded non-string value; `None` if it was rejected.
    fn typed_scalar(&mut self, p: P, v: &[u8], origin: &Origin) -> Option<Value> {
        match p.def().kind {
            Kind::Bool | Kind::Bool3 => {
                let bool3 = p.def().kind == Kind::Bool3;
                match parse_bool(v, bool3) {
                    Some(b) if bool3 => Some(Value::Bool3(b)),
                    Some(b) => Some(Value::Bool(b.unwrap_or(false))),
                    None => {
                        self.problem(
                            origin,
                            Some(p),
                            format!(
                                "Badly formed boolean in configuration file: \"{}\". (parameter \"{}\"; use yes/no, true/false or 1/0)",
                                lossy(v),
                                p.label()
                            ),
                        );
                        None
                    }
                }
            }
            Kind::Int => {
                let (n, clean) = atoi(v);
                let Some(n) = n else {
                    self.problem(
                        origin,
                        Some(p),
                        format!(
                            "value \"{}\" of parameter \"{}\" is out of range",
                            lossy(v),
                            p.label()
                        ),
                    );
                    return None;
                };
                if !clean {
                    let msg = format!(
                        "value \"{}\" of parameter \"{}\" is not a plain integer; it is read as {n}, as stock rsync's atoi() does",
                        lossy(v),
                        p.label()
                    );
                    self.warn(origin, msg);
                }
                Some(Value::Int(n))
            }
            Kind::Enum => {
                if let Some((fac, _)) = SYSLOG_FACILITIES
                    .iter()
                    .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(v))
                {
                    return Some(Value::Enum((*fac).to_owned()));
                }
                match atoi(v).0 {
                    Some(n) if n > 0 => Some(Value::Enum(n.to_string())),
                    _ => {
                        let msg = format!(
                            "unknown {} \"{}\"; like stock rsync, the previous value is kept",
                            p.label(),
                            lossy(v)
                        );
                        self.warn(origin, msg);
                        None
                    }
                }
            }
            Kind::Str | Kind::Path => Some(Value::Str(v.to_vec())),
        }
    }

    fn unknown_parameter(&mut self, name: &[u8], origin: &Origin) {
        let n = lossy(name);
        let mut msg =
            format!("Unknown Parameter encountered: \"{n}\"; IGNORING unknown parameter \"{n}\"");
        if let Some(p) = params::near_miss(name) {
            if p.def().support == Support::Protection {
                self.problem(
                    origin,
                    Some(p),
                    format!(
                        "unknown parameter \"{n}\" looks like \"{}\", a protection that stock rsync would silently drop; spell it \"{}\"",
                        p.label(),
                        p.label()
                    ),
                );
                return;
            }
            msg.push_str(&format!(" (did you mean \"{}\"?)", p.label()));
        }
        self.warn(origin, msg);
    }

    // -- building the typed result ------------------------------------------

    /// The setting in effect for module `sec` (mirrors the `FN_LOCAL_*`
    /// accessors: a NULL string falls back to the final defaults).
    fn effective(&self, sec: usize, p: P) -> Option<&Setting> {
        match &self.sections[sec].vals[p as usize] {
            Some(s) => Some(s),
            None if p.def().default == DefaultValue::Null => self.vars[p as usize].as_ref(),
            None => None,
        }
    }

    fn finish(mut self) -> Result<Config, ConfigError> {
        self.apply_dparams();
        let global = self.build_global();
        let modules: Vec<Module> = (0..self.sections.len())
            .filter_map(|i| self.build_module(i))
            .collect();
        if modules.is_empty() && self.problems.is_empty() {
            let origin = Origin {
                file: self.source.clone(),
                line: 0,
            };
            self.warn(&origin, "no modules are defined".into());
        }
        if self.problems.is_empty() {
            Ok(Config {
                global,
                modules,
                warnings: self.warnings,
            })
        } else {
            Err(ConfigError {
                problems: self.problems,
                warnings: self.warnings,
            })
        }
    }

    /// A global string, expanded with the daemon's environment.
    fn global_str(&mut self, p: P) -> Option<Vec<u8>> {
        let s = self.vars[p as usize].clone();
        let (raw, origin) = match s {
            Some(Setting {
                value: Value::Str(v),
                origin,
                ..
            }) => (v, origin),
            _ => match p.def().default {
                DefaultValue::Str(d) => return Some(d.as_bytes().to_vec()),
                _ => return None,
            },
        };
        match expand_vars(&raw, self.opts.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(&origin, Some(p), e.to_string());
                None
            }
        }
    }

    fn text(&mut self, bytes: Vec<u8>, p: P, origin: Option<&Origin>) -> String {
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => {
                if let Some(o) = origin {
                    let msg = format!(
                        "value of parameter \"{}\" is not valid UTF-8; invalid bytes are replaced",
                        p.label()
                    );
                    self.warn(o, msg);
                }
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        }
    }

    fn build_global(&mut self) -> Global {
        let int = |l: &Self, p: P| match &l.vars[p as usize] {
            Some(Setting {
                value: Value::Int(n),
                origin,
                ..
            }) => Some((*n, origin.clone())),
            _ => None,
        };
        let port = match int(self, P::Port) {
            None | Some((0, _)) => None,
            Some((n, origin)) => match u16::try_from(n) {
                Ok(v) => Some(v),
                Err(_) => {
                    self.problem(&origin, Some(P::Port), format!("port {n} is out of range"));
                    None
                }
            },
        };
        let listen_backlog = match int(self, P::ListenBacklog) {
            None => None,
            Some((n, origin)) => match u32::try_from(n) {
                Ok(v) => Some(v),
                Err(_) => {
                    let msg = format!("listen backlog {n} is negative");
                    self.problem(&origin, Some(P::ListenBacklog), msg);
                    None
                }
            },
        };
        let nonempty = |v: Option<Vec<u8>>| v.filter(|v| !v.is_empty());
        let opt_text = |l: &mut Self, p: P| {
            let origin = l.vars[p as usize].as_ref().map(|s| s.origin.clone());
            nonempty(l.global_str(p)).map(|v| l.text(v, p, origin.as_ref()))
        };
        let opt_path = |l: &mut Self, p: P| nonempty(l.global_str(p)).map(|v| os_path(&v));
        let address = opt_text(self, P::Address);
        let motd_file = opt_path(self, P::MotdFile);
        let pid_file = opt_path(self, P::PidFile);
        let log_file = opt_path(self, P::LogFile);
        let socket_options = match opt_text(self, P::SocketOptions) {
            None => Vec::new(),
            Some(t) => {
                let (opts, complaints) = parse_socket_options(&t);
                if let Some(o) = self.vars[P::SocketOptions as usize].as_ref().map(|s| s.origin.clone()) {
                    for c in complaints {
                        self.warn(&o, c);
                    }
                }
                opts
            }
        };
        let proxy_protocol_hosts: Vec<String> = opt_text(self, P::ProxyProtocolHosts)
            .map(|t| {
                t.to_lowercase()
                    .split([' ', ',', '\t'])
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(o) = self.vars[P::ProxyProtocolHosts as usize].as_ref().map(|s| s.origin.clone()) {
            for t in &proxy_protocol_hosts {
                if let Err(e) = crate::access::hosts::parse_token(t) {
                    self.problem(&o, Some(P::ProxyProtocolHosts), format!("proxy protocol hosts: {e}"));
                }
            }
        }
        let daemon_chroot = opt_path(self, P::DaemonChroot);
        let daemon_uid = opt_text(self, P::DaemonUid);
        let daemon_gid = opt_text(self, P::DaemonGid);
        let syslog_tag = opt_text(self, P::SyslogTag).unwrap_or_default();
        let syslog_facility = match &self.vars[P::SyslogFacility as usize] {
            Some(Setting {
                value: Value::Enum(s),
                ..
            }) => s.clone(),
            _ => "daemon".to_owned(),
        };
        let proxy_protocol = matches!(
            self.vars[P::ProxyProtocol as usize],
            Some(Setting {
                value: Value::Bool(true),
                ..
            })
        );
        let proxy_origin = self.vars[P::ProxyProtocol as usize].as_ref().map(|s| s.origin.clone());
        if let Some(o) = proxy_origin.filter(|_| proxy_protocol && proxy_protocol_hosts.is_empty()) {
            // Stock 3.5.0's start-up warning (clientserver.c start_daemon).
            self.warn(
                &o,
                "\"proxy protocol = true\" but \"proxy protocol hosts\" is unset: all connections will be \
                 rejected as untrusted proxy peers.  Set \"proxy protocol hosts\" to your trusted proxy's address."
                    .to_owned(),
            );
        }
        let raw = TABLE
            .iter()
            .filter_map(|d| {
                self.vars[d.id as usize]
                    .as_ref()
                    .map(|s| (d.label.to_owned(), lossy(&s.raw), s.origin.line))
            })
            .collect();
        let count = |l: &mut Self, p: P, default: usize| match int(l, p) {
            None => default,
            Some((n, origin)) => match usize::try_from(n) {
                Ok(v) if v > 0 => v,
                _ => {
                    let msg = format!("{} {n} must be at least 1", p.label());
                    l.problem(&origin, Some(p), msg);
                    default
                }
            },
        };
        let metrics_address = opt_text(self, P::MetricsAddress);
        let max_sessions = count(self, P::MaxSessions, 1024);
        let max_sessions_per_host = count(self, P::MaxSessionsPerHost, 64);
        use crate::access::limits as lim;
        let secs = |d: std::time::Duration| d.as_secs() as usize;
        let handshake_timeout =
            std::time::Duration::from_secs(count(self, P::HandshakeTimeout, secs(lim::DEFAULT_HANDSHAKE_TIMEOUT)) as u64);
        let max_handshakes = count(self, P::MaxHandshakes, lim::DEFAULT_MAX_HANDSHAKES);
        let max_handshakes_per_host = count(self, P::MaxHandshakesPerHost, lim::DEFAULT_MAX_HANDSHAKES_PER_HOST);
        let drain_timeout = match int(self, P::DrainTimeout) {
            None => lim::DEFAULT_DRAIN_TIMEOUT,
            Some((n, origin)) => match u64::try_from(n) {
                Ok(v) => std::time::Duration::from_secs(v),
                Err(_) => {
                    self.problem(&origin, Some(P::DrainTimeout), format!("drain timeout {n} is negative"));
                    lim::DEFAULT_DRAIN_TIMEOUT
                }
            },
        };
        let reverse_lookup = !matches!(
            self.vars[P::ReverseLookup as usize],
            Some(Setting {
                value: Value::Bool(false),
                ..
            })
        );
        Global {
            reverse_lookup,
            metrics_address,
            max_sessions,
            max_sessions_per_host,
            handshake_timeout,
            max_handshakes,
            max_handshakes_per_host,
            drain_timeout,
            port,
            address,
            motd_file,
            pid_file,
            log_file,
            syslog_facility,
            syslog_tag,
            socket_options,
            listen_backlog,
            proxy_protocol,
            proxy_protocol_hosts,
            daemon_chroot,
            daemon_uid,
            daemon_gid,
            raw,
        }
    }

    /// A module string in effect, expanded: `None` when NULL.  Per-connection
    /// variables stay unexpanded; referring to one is a warning, or a problem
    /// for the parameters where a wrong value would expose files.
    fn module_str(&mut self, sec: usize, p: P, module_name: &str) -> Option<Vec<u8>> {
        let Some(s) = self.effective(sec, p).cloned() else {
            return match p.def().default {
                DefaultValue::Str(d) => Some(d.as_bytes().to_vec()),
                _ => None,
            };
        };
        let Value::Str(raw) = &s.value else {
            return None;
        };
        let deferred: RefCell<Vec<String>> = RefCell::new(Vec::new());
        let env = self.opts.env;
        let lookup = |name: &[u8]| -> Option<Vec<u8>> {
            if name == b"RSYNC_MODULE_NAME" {
                return Some(module_name.as_bytes().to_vec());
            }
            let per_conn = PER_CONNECTION_VARS.iter().any(|v| v.as_bytes() == name)
                || name.starts_with(b"RSYNC_ARG");
            if per_conn {
                deferred.borrow_mut().push(lossy(name));
                return None;
            }
            env(name)
        };
        let out = match expand_vars(raw, &lookup) {
            Ok(v) => v,
            Err(e) => {
                self.problem(&s.origin, Some(p), e.to_string());
                return None;
            }
        };
        for var in deferred.into_inner() {
            if matches!(p, P::Path | P::Filter | P::Exclude | P::ExcludeFrom) {
                self.problem(
                    &s.origin,
                    Some(p),
                    format!(
                        "\"{}\" of module {module_name} refers to %{var}%, which stock rsync sets for each connection; that is not supported yet",
                        p.label()
                    ),
                );
            } else {
                let msg = format!(
                    "\"{}\" of module {module_name} refers to %{var}%, which stock rsync sets for each connection; it is left unexpanded (not yet supported)",
                    p.label()
                );
                self.warn(&s.origin, msg);
            }
        }
        Some(out)
    }

    fn module_scalar(&self, sec: usize, p: P) -> Value {
        if let Some(s) = &self.sections[sec].vals[p as usize] {
            return s.value.clone();
        }
        match p.def().default {
            DefaultValue::Int(n) => Value::Int(n),
            DefaultValue::Bool(b) => Value::Bool(b),
            DefaultValue::Bool3(b) => Value::Bool3(b),
            DefaultValue::Enum(e) => Value::Enum(e.to_owned()),
            DefaultValue::Str(s) => Value::Str(s.as_bytes().to_vec()),
            DefaultValue::Null => Value::Str(Vec::new()),
        }
    }

    /// A module string as text (`None` when NULL or empty).
    fn module_text(&mut self, sec: usize, p: P, module_name: &str) -> Option<String> {
        let v = self
            .module_str(sec, p, module_name)
            .filter(|v| !v.is_empty())?;
        let origin = self.effective(sec, p).map(|s| s.origin.clone());
        Some(self.text(v, p, origin.as_ref()))
    }

    /// A hook command as written (`None` when NULL or empty).  Stock
    /// expands a hook's `%VAR%` references for each connection, shell-quoted
    /// (loadparm.c `FN_LOCAL_STRING_SHELL`), so none is expanded here; see
    /// `crate::exec::expand_hook`.
    fn module_hook(&mut self, sec: usize, p: P) -> Option<String> {
        let s = self.effective(sec, p).cloned()?;
        match s.value {
            Value::Str(raw) if !raw.is_empty() => Some(self.text(raw, p, Some(&s.origin))),
            _ => None,
        }
    }

    /// A module path (`None` when NULL or empty).
    fn module_path(&mut self, sec: usize, p: P, module_name: &str) -> Option<PathBuf> {
        self.module_str(sec, p, module_name)
            .filter(|v| !v.is_empty())
            .map(|v| os_path(&v))
    }

    fn module_int(&self, sec: usize, p: P) -> i32 {
        match self.module_scalar(sec, p) {
            Value::Int(n) => n,
            _ => 0,
        }
    }

    fn module_bool(&self, sec: usize, p: P) -> bool {
        matches!(self.module_scalar(sec, p), Value::Bool(true))
    }

    /// `fullfiletimelist`, `fullfiletimelist name` and `fullfiletimelist
    /// checksums`: the list's file name when it is served (on with `yes`, or
    /// when a name is given and the switch is not `no`), and the checksummed
    /// basenames.  A name must be one path component.
    fn module_ffl(&mut self, sec: usize, module_name: &str) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
        let switch = self.module_bool3(sec, P::Fullfiletimelist);
        let name = self.module_text(sec, P::FullfiletimelistName, module_name);
        let sums = self
            .module_text(sec, P::FullfiletimelistChecksums, module_name)
            .map(|t| {
                t.split(|c: char| c.is_ascii_whitespace() || c == ',')
                    .filter(|w| !w.is_empty())
                    .map(|w| w.as_bytes().to_vec())
                    .collect()
            })
            .unwrap_or_default();
        let on = match switch {
            Some(b) => b,
            None => name.is_some(),
        };
        if !on {
            return (None, sums);
        }
        let name = name.unwrap_or_else(|| format!("fullfiletimelist-{module_name}"));
        if name == "." || name == ".." || name.contains(['/', '\0']) {
            let o = self.origin_or(sec, P::FullfiletimelistName);
            self.problem(
                &o,
                Some(P::FullfiletimelistName),
                format!("fullfiletimelist name {name:?} must be a plain file name"),
            );
            return (None, sums);
        }
        (Some(name.into_bytes()), sums)
    }

    fn module_bool3(&self, sec: usize, p: P) -> Option<bool> {
        match self.module_scalar(sec, p) {
            Value::Bool3(b) => b,
            _ => None,
        }
    }

    /// Where the setting in effect for `p` was made (the module header if
    /// it is a built-in default).
    fn origin_or(&self, sec: usize, p: P) -> Origin {
        self.effective(sec, p)
            .map(|s| s.origin.clone())
            .unwrap_or_else(|| self.sections[sec].origin.clone())
    }

    fn module_rules(&mut self, sec: usize, p: P, list: RuleList, name: &str) -> Vec<Vec<u8>> {
        let v = self.module_str(sec, p, name).unwrap_or_default();
        match split_filter_rules(&v, list) {
            Ok(r) => r,
            Err(e) => {
                let o = self.origin_or(sec, p);
                self.problem(
                    &o,
                    Some(p),
                    format!("{e} (in \"{}\" of module {name})", p.label()),
                );
                Vec::new()
            }
        }
    }

    /// Parse what the access layer will need, so that a mistake is reported
    /// when the configuration is loaded rather than when a client connects.
    #[allow(clippy::too_many_arguments)]
    fn check_access(
        &mut self,
        sec: usize,
        n: &str,
        allow: &[String],
        deny: &[String],
        auth_users: &[String],
        has_secrets: bool,
        auth_digest: Option<&str>,
        refuse: &[String],
        has_charset: bool,
    ) {
        use crate::access::{auth, hosts, refuse as rf};
        for (list, p) in [(allow, P::HostsAllow), (deny, P::HostsDeny)] {
            for t in list {
                if let Err(e) = hosts::parse_token(t) {
                    let o = self.origin_or(sec, p);
                    self.problem(&o, Some(p), format!("module {n}: {}: {e}", p.label()));
                }
            }
        }
        if let Ok(acl) = hosts::HostAcl::from_tokens(
            allow,
            deny,
            self.module_bool(sec, P::ReverseLookup),
            self.module_bool(sec, P::ForwardLookup),
        ) {
            for w in acl.warnings() {
                let o = self.origin_or(
                    sec,
                    if w.starts_with("hosts deny") {
                        P::HostsDeny
                    } else {
                        P::HostsAllow
                    },
                );
                self.warn(&o, format!("module {n}: {w}"));
            }
        }
        if let Some(d) = auth_digest.filter(|d| !d.trim().is_empty()) {
            if auth::parse_digest_floor(d).is_none() {
                let o = self.origin_or(sec, P::AuthDigest);
                self.problem(
                    &o,
                    Some(P::AuthDigest),
                    format!("module {n}: auth digest \"{d}\" is not one of sha512, sha256, sha1, md5, md4"),
                );
            }
        }
        if !auth_users.is_empty() && !has_secrets {
            let o = self.origin_or(sec, P::AuthUsers);
            self.warn(
                &o,
                format!(
                    "module {n} has \"auth users\" but no \"secrets file\": every login will fail"
                ),
            );
        }
        let rules = rf::RefuseRules::new(refuse, has_charset);
        for t in &rules.unmatched {
            let o = self.origin_or(sec, P::RefuseOptions);
            self.warn(&o, format!("No match for refuse-options string \"{t}\""));
        }
    }

    fn build_module(&mut self, sec: usize) -> Option<Module> {
        let header = self.sections[sec].origin.clone();
        let raw_name = self.sections[sec].name.clone();
        let name = match expand_vars(&raw_name, self.opts.env) {
            Ok(n) => n,
            Err(e) => {
                self.problem(&header, None, e.to_string());
                return None;
            }
        };
        let name = match String::from_utf8(name) {
            Ok(n) if !n.is_empty() => n,
            Ok(_) => {
                self.problem(&header, Some(P::Name), "a module name is empty".into());
                return None;
            }
            Err(_) => {
                self.problem(
                    &header,
                    None,
                    format!("module name [{}] is not valid UTF-8", lossy(&raw_name)),
                );
                return None;
            }
        };
        let before = self.problems.len();
        let n = name.as_str();

        let auth_users = self.module_text(sec, P::AuthUsers, n);
        let secrets_file = self.module_path(sec, P::SecretsFile, n);
        let hosts_allow = self.module_text(sec, P::HostsAllow, n);
        let hosts_deny = self.module_text(sec, P::HostsDeny, n);
        let write_only = self.module_bool(sec, P::WriteOnly);
        let exclude_from = self.module_path(sec, P::ExcludeFrom, n);

        let path = self.module_path(sec, P::Path, n);
        if path.is_none() {
            self.problem(
                &header,
                Some(P::Path),
                format!("No path specified for module {n}"),
            );
        }
        let filter = self.module_rules(sec, P::Filter, RuleList::Filter, n);
        let include = self.module_rules(sec, P::Include, RuleList::OldPrefixes, n);
        let exclude = self.module_rules(sec, P::Exclude, RuleList::OldPrefixes, n);

        let timeout = self.module_int(sec, P::Timeout);
        let timeout = u32::try_from(timeout).unwrap_or_else(|_| {
            let o = self.origin_or(sec, P::Timeout);
            self.problem(
                &o,
                Some(P::Timeout),
                format!("timeout {timeout} is negative"),
            );
            0
        });
        // Mirrors access.c access_match: lower-cased, split on " ,\t".
        let hosts = |v: Option<String>| -> Vec<String> {
            v.map(|t| {
                t.to_lowercase()
                    .split([' ', ',', '\t'])
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
        };
        let words = |v: Option<String>, sep: &[char]| -> Vec<String> {
            v.map(|t| {
                t.split(sep)
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
        };
        let comment = self.module_text(sec, P::Comment, n).unwrap_or_default();
        let uid = self.module_text(sec, P::Uid, n);
        let gid = self
            .module_text(sec, P::Gid, n)
            .map(|t| conf_strtok(&t))
            .unwrap_or_default();
        // Mirrors options.c set_refuse_options: split on spaces only.
        let refuse_options = words(self.module_text(sec, P::RefuseOptions, n), &[' ']);
        let dont_compress = words(
            self.module_text(sec, P::DontCompress, n),
            &[' ', '\t', '\n', '\r', '\x0b', '\x0c'],
        );
        let lock_file = self.module_path(sec, P::LockFile, n).unwrap_or_default();
        let include_from = self.module_path(sec, P::IncludeFrom, n);
        let log_file = self.module_path(sec, P::LogFile, n);
        let temp_dir = self.module_path(sec, P::TempDir, n);
        let log_format = self.module_text(sec, P::LogFormat, n).unwrap_or_default();
        let syslog_tag = self.module_text(sec, P::SyslogTag, n).unwrap_or_default();
        let auth_digest = self.module_text(sec, P::AuthDigest, n);
        let charset = self.module_text(sec, P::Charset, n);
        let incoming_chmod = self.module_text(sec, P::IncomingChmod, n);
        let outgoing_chmod = self.module_text(sec, P::OutgoingChmod, n);
        let pre_xfer_exec = self.module_hook(sec, P::PreXferExec);
        let post_xfer_exec = self.module_hook(sec, P::PostXferExec);
        let early_exec = self.module_hook(sec, P::EarlyExec);
        let name_converter = self.module_text(sec, P::NameConverter, n);
        let syslog_facility = match self.module_scalar(sec, P::SyslogFacility) {
            Value::Enum(e) => e,
            _ => "daemon".to_owned(),
        };
        let raw = TABLE
            .iter()
            .filter(|d| d.class == Class::Local)
            .filter_map(|d| {
                self.effective(sec, d.id)
                    .map(|s| (d.label.to_owned(), lossy(&s.raw), s.origin.line))
            })
            .collect();

        let hosts_allow = hosts(hosts_allow);
        let hosts_deny = hosts(hosts_deny);
        let auth_users = auth_users.map(|t| conf_strtok(&t)).unwrap_or_default();
        self.check_access(
            sec,
            n,
            &hosts_allow,
            &hosts_deny,
            &auth_users,
            secrets_file.is_some(),
            auth_digest.as_deref(),
            &refuse_options,
            charset.is_some(),
        );
        let daemon_port = match self.module_int(sec, P::DaemonPort) {
            0 => None,
            v => match u16::try_from(v) {
                Ok(p) => Some(p),
                Err(_) => {
                    let o = self.origin_or(sec, P::DaemonPort);
                    self.problem(
                        &o,
                        Some(P::DaemonPort),
                        format!("daemon port {v} is out of range"),
                    );
                    None
                }
            },
        };

        let rescan_interval = u32::try_from(self.module_int(sec, P::RescanInterval)).ok();
        let trigger_quiet_time = u32::try_from(self.module_int(sec, P::TriggerQuietTime)).unwrap_or(0);
        let trigger_exec = self.module_hook(sec, P::TriggerExec);
        let trigger_url = self.module_text(sec, P::TriggerUrl, n);
        let trigger_retries = u32::try_from(self.module_int(sec, P::TriggerRetries)).unwrap_or(0);
        let (fullfiletimelist, fullfiletimelist_checksums) = self.module_ffl(sec, n);
        let checksum_cache_rate = u32::try_from(self.module_int(sec, P::ChecksumCacheRate))
            .unwrap_or_else(|_| {
                let o = self.origin_or(sec, P::ChecksumCacheRate);
                self.problem(
                    &o,
                    Some(P::ChecksumCacheRate),
                    "checksum cache rate must not be negative".to_string(),
                );
                0
            });

        let module = Module {
            daemon_port,
            rescan_interval,
            trigger_quiet_time,
            trigger_exec,
            trigger_url,
            trigger_retries,
            fullfiletimelist,
            fullfiletimelist_checksums,
            checksum_cache: self.module_bool(sec, P::ChecksumCache),
            checksum_cache_rate,
            path: path.unwrap_or_default(),
            comment,
            read_only: self.module_bool(sec, P::ReadOnly),
            write_only,
            list: self.module_bool(sec, P::List),
            uid,
            gid,
            use_chroot: self.module_bool3(sec, P::UseChroot),
            numeric_ids: self.module_bool3(sec, P::NumericIds),
            munge_symlinks: self.module_bool3(sec, P::MungeSymlinks),
            open_noatime: self.module_bool3(sec, P::OpenNoatime),
            max_connections: self.module_int(sec, P::MaxConnections),
            lock_file,
            hosts_allow,
            hosts_deny,
            auth_users,
            auth_digest,
            secrets_file,
            strict_modes: self.module_bool(sec, P::StrictModes),
            refuse_options,
            filter,
            include,
            exclude,
            include_from,
            exclude_from,
            ignore_nonreadable: self.module_bool(sec, P::IgnoreNonreadable),
            ignore_errors: self.module_bool(sec, P::IgnoreErrors),
            dont_compress,
            timeout,
            transfer_logging: self.module_bool(sec, P::TransferLogging),
            log_format,
            log_file,
            syslog_facility,
            syslog_tag,
            max_verbosity: self.module_int(sec, P::MaxVerbosity),
            reverse_lookup: self.module_bool(sec, P::ReverseLookup),
            forward_lookup: self.module_bool(sec, P::ForwardLookup),
            fake_super: self.module_bool(sec, P::FakeSuper),
            insecure_links: self.module_bool(sec, P::InsecureLinks),
            charset,
            incoming_chmod,
            outgoing_chmod,
            pre_xfer_exec,
            post_xfer_exec,
            early_exec,
            name_converter,
            temp_dir,
            raw,
            name,
        };
        (self.problems.len() == before).then_some(module)
    }
}
