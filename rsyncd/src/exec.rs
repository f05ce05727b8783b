//! The module hooks `early exec`, `pre-xfer exec` and `post-xfer exec`.
//!
//! Mirrors clientserver.c `rsync_module()`, `start_pre_exec()`,
//! `write_pre_exec_args()` and `finish_pre_exec()`, main.c `shell_exec()`,
//! and for `%VAR%` loadparm.c `expand_vars()` as stock applies it to the
//! hook parameters (`FN_LOCAL_STRING_SHELL`, rsync 3.5.0):
//!
//! * Once a client is admitted to a module (host ACL, `max connections`,
//!   authentication) and before `@RSYNCD: OK`, the hooks' commands are
//!   expanded.  `%RSYNC_MODULE_NAME%`, `%RSYNC_MODULE_PATH%`,
//!   `%RSYNC_HOST_ADDR%`, `%RSYNC_HOST_NAME%` and `%RSYNC_USER_NAME%` are the
//!   connection's values; any other `%NAME%` is the daemon's environment
//!   variable, and an unknown one stays as written (so `%RSYNC_PID%`,
//!   `%RSYNC_REQUEST%` and `%RSYNC_EXIT_STATUS%`, which stock sets only after
//!   expanding, stay literal).  A `RSYNC_*` value is quoted for the shell
//!   context it lands in, and one holding a shell metacharacter (or a space
//!   or control character) refuses the session before any hook runs
//!   ("refusing to run shell hook: ...", exit 4, nothing sent to the client).
//! * `early exec` then runs and must succeed ("@ERROR: early exec failed"
//!   otherwise); its stdin is the client's `--early-input` data.
//! * `pre-xfer exec` runs once the arguments are read, whether or not they
//!   are acceptable, with `RSYNC_REQUEST` and `RSYNC_ARG0`.. (the arguments
//!   as stock's `read_args()` leaves them: `rsyncd` first, options, `.`, then
//!   the file arguments without the module name and glob-expanded).  If it
//!   fails, its stdout (at most [`MAX_HOOK_OUTPUT`] bytes, `\r\n` made `\n`)
//!   follows "pre-xfer exec returned failure (STATUS)" to the client as
//!   error messages and the transfer is refused (the client sees the
//!   connection reset, exit 10, as with stock).  On success its output is
//!   discarded.
//! * `post-xfer exec` runs once the session has ended and its connection is
//!   closed, with `RSYNC_EXIT_STATUS` (the exit code stock's per-connection
//!   process would have had; 255 after a failed `early exec`) and
//!   `RSYNC_RAW_STATUS` (that code as a wait status, i.e. shifted left by 8).
//!
//! Every hook runs as `/bin/sh -c COMMAND` (or `$RSYNC_SHELL -c COMMAND`),
//! as the daemon's user, in the daemon's working directory, with the
//! daemon's environment plus the `RSYNC_*` variables, in a process group of
//! its own.  Hooks are skipped entirely when the daemon's environment has
//! `RSYNC_NO_XFER_EXEC`.
//!
//! Differences from stock, forced by one process serving every session on
//! threads (docs/decisions/0001-threads-per-session.md):
//!
//! * `RSYNC_PID` is the Linux thread id of the session's thread (the
//!   process id in the one-session stdio modes): unique among running
//!   sessions and processes, the same for every hook of a session, and the
//!   `pid` of no other live process while the session lasts, which is what
//!   hooks use stock's per-connection pid for.
//! * Stock lets a hook run for ever.  Here `early exec` and `pre-xfer exec`
//!   are killed (their whole process group) after [`PRE_EXEC_TIMEOUT`] and
//!   count as failed (status 256, as for a hook killed by a signal);
//!   `post-xfer exec` is killed after [`POST_EXEC_TIMEOUT`].  A hook only
//!   ever holds up its own session's thread.
//! * The `%VAR%` refusal is checked for all three hooks before any runs
//!   (stock expands each one when it first reads it).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

use protocol::args::{ParsedArgs, ServerOptions};
use protocol::compat;
use protocol::exit::Rerr;
use protocol::filter::FilterList;
use protocol::mux::MsgCode;
use protocol::wire::{put_i32, put_varint};

use crate::config::{Config, Module};
use crate::module::{ModuleRuntime, ServerState};
use crate::session::{Session, SessionError};

/// Most bytes of a failed `pre-xfer exec`'s output passed on to the client
/// (stock reads into a `BIGPATHBUFLEN` buffer, one byte kept for the NUL).
pub const MAX_HOOK_OUTPUT: usize = 5119;

/// How long an `early exec` or `pre-xfer exec` may run (stock: no limit).
pub const PRE_EXEC_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a `post-xfer exec` may run (stock: no limit).
pub const POST_EXEC_TIMEOUT: Duration = Duration::from_secs(3600);

/// stock `expand_vars` gives each value this much room to grow.
const EXPAND_HEADROOM: usize = 2048;

/// `RSYNC_REQUEST` stops growing once it is this long (io.c `read_args()`).
const REQUEST_SOFT_LIMIT: usize = 1024;

/// The status `finish_pre_exec()` sees for a hook that did not exit
/// normally: stock's pre-exec child `_exit(1)`s then.
const STATUS_ABNORMAL: i32 = 1 << 8;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// One module's hook commands, as written in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `early exec`.
    pub early: Option<Vec<u8>>,
    /// `pre-xfer exec`.
    pub pre_xfer: Option<Vec<u8>>,
    /// `post-xfer exec`.
    pub post_xfer: Option<Vec<u8>>,
}

impl Hooks {
    /// The hooks a configured module sets (empty commands count as unset,
    /// as stock's `*lp_early_exec(i)` tests do).
    pub fn from_module(m: &Module) -> Hooks {
        let cmd = |c: &Option<String>| c.as_ref().filter(|c| !c.is_empty()).map(|c| c.as_bytes().to_vec());
        Hooks { early: cmd(&m.early_exec), pre_xfer: cmd(&m.pre_xfer_exec), post_xfer: cmd(&m.post_xfer_exec) }
    }

    /// No hook is set.
    pub fn is_empty(&self) -> bool {
        self.early.is_none() && self.pre_xfer.is_none() && self.post_xfer.is_none()
    }
}

/// Per module (name and hooks), in configuration order (the order of
/// `ServerState::modules`); replaced by a configuration reload.
static HOOKS: RwLock<Option<Arc<HookRegistry>>> = RwLock::new(None);

/// Module names and their hooks, in configuration order.
type HookRegistry = Vec<(String, Hooks)>;

fn registry(config: &Config) -> Arc<HookRegistry> {
    Arc::new(config.modules.iter().map(|m| (m.name.clone(), Hooks::from_module(m))).collect())
}

/// Registers the modules' hooks (once per process; later calls are ignored).
/// Call with the configuration the server state is built from.
pub fn install(config: &Config) {
    let mut g = HOOKS.write().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        *g = Some(registry(config));
    }
}

/// Replaces the modules' hooks (a configuration reload); sessions admitted
/// from then on use the new ones, found by module name.
pub fn reload(config: &Config) {
    *HOOKS.write().unwrap_or_else(|p| p.into_inner()) = Some(registry(config));
}

/// The hooks of `module`, when it has any.
fn hooks_for(state: &ServerState, module: &ModuleRuntime) -> Option<Hooks> {
    let i = state.modules.iter().position(|m| std::ptr::eq(&**m, module))?;
    let reg = HOOKS.read().unwrap_or_else(|p| p.into_inner()).clone()?;
    // After a reload an older session's state may order modules differently.
    let (_, h) = match reg.get(i) {
        Some(e) if e.0 == module.name => e,
        _ => reg.iter().rev().find(|e| e.0 == module.name)?,
    };
    Some(h.clone()).filter(|h| !h.is_empty())
}

// ---------------------------------------------------------------------------
// %VAR% expansion with shell quoting
// ---------------------------------------------------------------------------

/// Why a hook command could not be expanded (the session is refused).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// A `%RSYNC_*%` value holds shell syntax (stock 3.5.0 refuses it).
    #[error("refusing to run shell hook: %{0}% holds a shell metacharacter")]
    Unsafe(String),
    /// The result grew more than 2048 bytes beyond the command.
    #[error("Overflowed buf in expand_vars() trying to expand: {0}")]
    Overflow(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// Whether a substituted value could turn into shell syntax rather than
/// data.  Mirrors loadparm.c `shell_unsafe_value()`.
pub fn shell_unsafe_value(v: &[u8]) -> bool {
    v.iter().any(|&c| b"'\"`$\\;&|<>()*?[]# !~{}".contains(&c) || c < 0x20 || c == 0x7f)
}

/// Quotes a value for the shell context it is substituted into.  Mirrors
/// loadparm.c `expand_vars_shell_escape()`: inside `'...'` only quotes are
/// escaped; elsewhere the value is wrapped in single quotes (inside `"..."`
/// too, where the quotes stay visible, protecting it in a second shell).
fn shell_escape(v: &[u8], q: Quote) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() + 2);
    if q != Quote::Single {
        out.push(b'\'');
    }
    for &c in v {
        if q == Quote::Double && b"\\\"`$".contains(&c) {
            out.extend_from_slice(&[b'\\', c]);
        } else if c == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(c);
        }
    }
    if q != Quote::Single {
        out.push(b'\'');
    }
    out
}

/// Expands a hook command's `%VAR%` references.  Mirrors loadparm.c
/// `expand_vars(str, 1)`: a `%` followed by an upper-case ASCII letter, up
/// to the next `%`, names a variable; a known one is replaced (a `RSYNC_*`
/// value refused if [`shell_unsafe_value`], else quoted for the shell
/// context the command's own quotes put it in), an unknown one stays as
/// written.
pub fn expand_hook(cmd: &[u8], lookup: &dyn Fn(&[u8]) -> Option<Vec<u8>>) -> Result<Vec<u8>, ExpandError> {
    let overflow = || ExpandError::Overflow(String::from_utf8_lossy(cmd).into_owned());
    if !cmd.contains(&b'%') {
        return Ok(cmd.to_vec());
    }
    let limit = cmd.len() + EXPAND_HEADROOM;
    let mut out = Vec::with_capacity(cmd.len());
    let (mut q, mut escaped) = (Quote::None, false);
    let mut f = 0;
    while f < cmd.len() {
        let c = cmd[f];
        if c == b'%' && cmd.get(f + 1).is_some_and(u8::is_ascii_uppercase) {
            if let Some(rel) = cmd[f + 1..].iter().position(|&b| b == b'%') {
                let name = &cmd[f + 1..f + 1 + rel];
                if let Some(val) = lookup(name) {
                    let val = if name.starts_with(b"RSYNC_") {
                        if shell_unsafe_value(&val) {
                            return Err(ExpandError::Unsafe(String::from_utf8_lossy(name).into_owned()));
                        }
                        shell_escape(&val, q)
                    } else {
                        val
                    };
                    out.extend_from_slice(&val);
                    if out.len() > limit {
                        return Err(overflow());
                    }
                    f += rel + 2;
                    continue;
                }
            }
        }
        // Track the command's own quoting (literal characters only).
        match q {
            Quote::Single => {
                if c == b'\'' {
                    q = Quote::None;
                }
            }
            _ if escaped => escaped = false,
            _ if c == b'\\' => escaped = true,
            Quote::Double => {
                if c == b'"' {
                    q = Quote::None;
                }
            }
            Quote::None => {
                if c == b'\'' {
                    q = Quote::Single;
                } else if c == b'"' {
                    q = Quote::Double;
                }
            }
        }
        out.push(c);
        f += 1;
        if out.len() > limit {
            return Err(overflow());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// The environment
// ---------------------------------------------------------------------------

/// The `RSYNC_*` values of one connection, as stock sets them in
/// `rsync_module()` before any hook runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnEnv {
    /// `RSYNC_MODULE_NAME`.
    pub module_name: Vec<u8>,
    /// `RSYNC_MODULE_PATH`: the module's path, absolute and cleaned (stock's
    /// `full_module_path`).
    pub module_path: Vec<u8>,
    /// `RSYNC_HOST_ADDR`.
    pub host_addr: Vec<u8>,
    /// `RSYNC_HOST_NAME`: the name, `UNKNOWN` or `UNDETERMINED`.
    pub host_name: Vec<u8>,
    /// `RSYNC_USER_NAME`: the authenticated user, empty without `auth users`.
    pub user_name: Vec<u8>,
    /// `RSYNC_PID` (see the module documentation).
    pub pid: u32,
}

impl ConnEnv {
    /// The connection's variables that `%VAR%` can name (stock sets
    /// `RSYNC_PID` only after expanding the hooks).
    fn lookup(&self, name: &[u8]) -> Option<Vec<u8>> {
        Some(
            match name {
                b"RSYNC_MODULE_NAME" => &self.module_name,
                b"RSYNC_MODULE_PATH" => &self.module_path,
                b"RSYNC_HOST_ADDR" => &self.host_addr,
                b"RSYNC_HOST_NAME" => &self.host_name,
                b"RSYNC_USER_NAME" => &self.user_name,
                _ => return None,
            }
            .clone(),
        )
    }

    /// Every hook's `RSYNC_*` variables.
    pub fn vars(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        vec![
            (b"RSYNC_MODULE_NAME".to_vec(), self.module_name.clone()),
            (b"RSYNC_HOST_NAME".to_vec(), self.host_name.clone()),
            (b"RSYNC_HOST_ADDR".to_vec(), self.host_addr.clone()),
            (b"RSYNC_USER_NAME".to_vec(), self.user_name.clone()),
            (b"RSYNC_MODULE_PATH".to_vec(), self.module_path.clone()),
            (b"RSYNC_PID".to_vec(), self.pid.to_string().into_bytes()),
        ]
    }
}

/// The variables an `early exec` / `pre-xfer exec` gets on top of
/// [`ConnEnv::vars`]: `RSYNC_REQUEST` (`(NONE)` when there is no request)
/// and `RSYNC_ARG0`... (mirrors `start_pre_exec()`).
pub fn pre_exec_vars(request: Option<&[u8]>, args: &[Vec<u8>]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v = vec![(b"RSYNC_REQUEST".to_vec(), request.unwrap_or(b"(NONE)").to_vec())];
    for (j, a) in args.iter().enumerate() {
        v.push((format!("RSYNC_ARG{j}").into_bytes(), a.clone()));
    }
    v
}

/// The variables a `post-xfer exec` gets on top of [`ConnEnv::vars`] for
/// a session that ended with exit code `code`.
pub fn post_exec_vars(code: i32) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (b"RSYNC_RAW_STATUS".to_vec(), ((code & 0xff) << 8).to_string().into_bytes()),
        (b"RSYNC_EXIT_STATUS".to_vec(), (code & 0xff).to_string().into_bytes()),
    ]
}

/// The module path as stock's `normalize_path()` leaves it: absolute
/// (relative to `cwd`), without `.` components, repeated slashes or a
/// trailing slash, `..` collapsed.
pub fn full_module_path(path: &Path, cwd: &Path) -> Vec<u8> {
    let joined = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    let mut parts: Vec<&OsStr> = Vec::new();
    for c in joined.components() {
        match c {
            Component::Normal(n) => parts.push(n),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if parts.is_empty() {
        return b"/".to_vec();
    }
    let mut out = Vec::new();
    for p in parts {
        out.push(b'/');
        out.extend_from_slice(p.as_bytes());
    }
    out
}

/// `RSYNC_REQUEST` (`None`: no file argument) and the `RSYNC_ARG` values.
pub type RequestArgs = (Option<Vec<u8>>, Vec<Vec<u8>>);

/// Expands one file argument (`glob_expand_module()`); the flag says it
/// comes from the `-s` list.
pub type ArgExpander<'a> = dyn Fn(&[u8], bool) -> Vec<Vec<u8>> + 'a;

/// `RSYNC_REQUEST` and the `RSYNC_ARG` values of a pre-xfer exec.  Mirrors
/// io.c `read_args()` (as rsync 3.5.0: option arguments of the first list
/// unbackslashed) and `write_pre_exec_args()`: the first list gets `rsyncd`
/// in front; arguments after the lone `.` are passed through `expand`
/// (stock's `glob_expand_module()`; its flag is "secluded", i.e. from the
/// `-s` list) and joined by spaces into the request (which stops growing at
/// 1024 bytes).  With a second (`-s`) list, the arguments are the first
/// list's followed by the second's without its first word, and the request
/// is the second list's.
pub fn pre_xfer_args(first: &[Vec<u8>], second: Option<&[Vec<u8>]>, expand: &ArgExpander<'_>) -> RequestArgs {
    let read = |list: &[Vec<u8>], daemon_first: bool| -> RequestArgs {
        let mut argv: Vec<Vec<u8>> = Vec::new();
        if daemon_first {
            argv.push(b"rsyncd".to_vec());
        }
        let mut request: Option<Vec<u8>> = None;
        let mut dot = false;
        for item in list {
            if dot {
                let r = request.get_or_insert_with(Vec::new);
                if r.len() < REQUEST_SOFT_LIMIT {
                    if !r.is_empty() {
                        r.push(b' ');
                    }
                    r.extend_from_slice(item);
                }
                argv.extend(expand(item, !daemon_first));
            } else {
                let a = if daemon_first { protocol::args::unbackslash_arg(item) } else { item.clone() };
                dot = a == b".";
                argv.push(a);
            }
        }
        (request, argv)
    };
    let (request, mut argv) = read(first, true);
    match second {
        None => (request, argv),
        Some(list) => {
            let (request, more) = read(list, false);
            argv.extend(more.into_iter().skip(1));
            (request, argv)
        }
    }
}

// ---------------------------------------------------------------------------
// Running a hook
// ---------------------------------------------------------------------------

/// How a hook run ended.
#[derive(Debug)]
pub struct HookOutcome {
    /// The wait status stock's `finish_pre_exec()` sees: the exit code
    /// shifted left by 8, or 256 when the hook did not exit normally (a
    /// signal, our time limit, or it could not be started).
    pub status: i32,
    /// Its stdout when captured: at most [`MAX_HOOK_OUTPUT`] bytes, `\r\n`
    /// turned into `\n`, cut at a NUL byte.
    pub output: Vec<u8>,
    /// It was killed after its time limit.
    pub timed_out: bool,
    /// It could not be started.
    pub error: Option<std::io::Error>,
}

impl HookOutcome {
    /// The hook succeeded (exit code 0).
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

/// Reads a hook's stdout as `finish_pre_exec()` does: `\r\n` becomes `\n`,
/// reading stops once `cap` bytes are kept, and the text ends at a NUL.
pub fn read_hook_output(mut r: impl Read, cap: usize) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    let mut pending_cr = false;
    let mut buf = [0u8; 4096];
    while out.len() < cap {
        let want = (cap - out.len()).min(buf.len());
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &c in &buf[..n] {
            if pending_cr && c == b'\n' {
                out.pop();
            }
            out.push(c);
            pending_cr = c == b'\r';
        }
    }
    out.truncate(cap);
    if let Some(z) = out.iter().position(|&b| b == 0) {
        out.truncate(z);
    }
    out
}

/// Runs `cmd` with `sh -c` (main.c `shell_exec()`; `$RSYNC_SHELL` replaces
/// `/bin/sh` when set) with `env` added to the daemon's environment, `stdin`
/// as its input, its stdout captured when `capture` (else inherited), in a
/// process group of its own that is killed after `limit`.
pub fn run_hook(cmd: &[u8], env: &[(Vec<u8>, Vec<u8>)], stdin: &[u8], capture: bool, limit: Duration) -> HookOutcome {
    let shell = std::env::var_os("RSYNC_SHELL").unwrap_or_else(|| OsString::from("/bin/sh"));
    let mut c = Command::new(shell);
    c.arg("-c").arg(OsStr::from_bytes(cmd));
    for (k, v) in env {
        c.env(OsStr::from_bytes(k), OsStr::from_bytes(v));
    }
    c.stdin(if stdin.is_empty() { Stdio::null() } else { Stdio::piped() });
    c.stdout(if capture { Stdio::piped() } else { Stdio::inherit() });
    c.process_group(0);
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls sigemptyset and sigprocmask (async-signal-safe) on a local set.
    unsafe {
        c.pre_exec(|| {
            // The daemon blocks the signals it waits for with sigwait
            // (SIGTERM, SIGINT, SIGHUP); a hook starts with none blocked.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return HookOutcome { status: STATUS_ABNORMAL, output: Vec::new(), timed_out: false, error: Some(e) },
    };
    if let Some(mut w) = child.stdin.take() {
        // A hook that does not read its input must not hold us up.
        let data = stdin.to_vec();
        let _ = std::thread::Builder::new().name("hook-input".into()).spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let output = child.stdout.take().map(|out| {
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("hook-output".into()).spawn(move || {
            let _ = tx.send(read_hook_output(out, MAX_HOOK_OUTPUT));
        });
        spawned.ok().map(|_| rx)
    });
    let deadline = Instant::now() + limit;
    let pgid = child.id() as libc::pid_t;
    let kill_group = || {
        // SAFETY: kill() has no memory effects; the negative pid names the
        // hook's own process group (it was started with process_group(0)).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    };
    let mut nap = Duration::from_millis(2);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) => {}
            Err(_) => break None,
        }
        let now = Instant::now();
        if now >= deadline {
            kill_group();
            timed_out = true;
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(100));
    };
    let status = match status.and_then(|s| s.code()) {
        Some(code) => (code & 0xff) << 8,
        None => STATUS_ABNORMAL,
    };
    let output = match output.flatten() {
        None => Vec::new(),
        Some(rx) => match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(o) => o,
            Err(_) => {
                // Something the hook left running still holds its stdout.
                kill_group();
                timed_out = true;
                rx.recv_timeout(Duration::from_millis(200)).unwrap_or_default()
            }
        },
    };
    HookOutcome { status: if timed_out { STATUS_ABNORMAL } else { status }, output, timed_out, error: None }
}

/// The text a failed pre-exec hook gives the client (mirrors
/// `finish_pre_exec()`): "DESC returned failure (STATUS)", a `:` when there
/// is output, a newline, then the output.
pub fn failure_message(desc: &str, status: i32, output: &[u8]) -> Vec<u8> {
    let mut m = format!("{desc} returned failure ({status}){}\n", if output.is_empty() { "" } else { ":" }).into_bytes();
    m.extend_from_slice(output);
    m
}

/// Splits a failure message into the error messages stock sends: each
/// line with its newline, and a last unterminated part with one added.
pub fn message_lines(msg: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = msg.split_inclusive(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if let Some(last) = lines.last_mut() {
        if !last.ends_with(b"\n") {
            last.push(b'\n');
        }
    }
    lines
}

// ---------------------------------------------------------------------------
// A session's hooks
// ---------------------------------------------------------------------------

/// The hooks of one admitted session, expanded for its connection.
#[derive(Debug)]
pub struct SessionHooks {
    vars: Vec<(Vec<u8>, Vec<u8>)>,
    early: Option<Vec<u8>>,
    pre_xfer: Option<Vec<u8>>,
    post_xfer: Option<Vec<u8>>,
    /// The session failed before `@RSYNCD: OK` (stock's `rsync_module()`
    /// returned -1: the process exits 255).
    failed_early: bool,
}

impl SessionHooks {
    /// Expands `hooks` for a connection; `env` looks up the daemon's own
    /// environment variables.
    pub fn prepare(hooks: &Hooks, conn: &ConnEnv, env: &dyn Fn(&[u8]) -> Option<Vec<u8>>) -> Result<SessionHooks, ExpandError> {
        let lookup = |name: &[u8]| conn.lookup(name).or_else(|| env(name));
        let expand = |c: &Option<Vec<u8>>| c.as_deref().map(|c| expand_hook(c, &lookup)).transpose();
        Ok(SessionHooks {
            vars: conn.vars(),
            early: expand(&hooks.early)?,
            pre_xfer: expand(&hooks.pre_xfer)?,
            post_xfer: expand(&hooks.post_xfer)?,
            failed_early: false,
        })
    }

    /// The expanded `early exec`, `pre-xfer exec` and `post-xfer exec`.
    pub fn commands(&self) -> [Option<&[u8]>; 3] {
        [self.early.as_deref(), self.pre_xfer.as_deref(), self.post_xfer.as_deref()]
    }

    /// Runs `early exec` (if set) with the client's early input on stdin.
    pub fn run_early(&self, early_input: &[u8]) -> Option<HookOutcome> {
        let cmd = self.early.as_deref()?;
        let mut env = self.vars.clone();
        env.extend(pre_exec_vars(None, &[]));
        Some(run_hook(cmd, &env, early_input, false, PRE_EXEC_TIMEOUT))
    }

    /// Runs `pre-xfer exec` (if set) with the request and arguments.
    pub fn run_pre_xfer(&self, request: Option<&[u8]>, args: &[Vec<u8>]) -> Option<HookOutcome> {
        let cmd = self.pre_xfer.as_deref()?;
        let mut env = self.vars.clone();
        env.extend(pre_exec_vars(request, args));
        Some(run_hook(cmd, &env, b"", true, PRE_EXEC_TIMEOUT))
    }

    /// Runs `post-xfer exec` (if set) for a session that ended with `code`.
    pub fn run_post_xfer(&self, code: i32) -> Option<HookOutcome> {
        let cmd = self.post_xfer.as_deref()?;
        let mut env = self.vars.clone();
        env.extend(post_exec_vars(code));
        Some(run_hook(cmd, &env, b"", false, POST_EXEC_TIMEOUT))
    }
}

/// `RSYNC_PID` for hooks started from the current thread.
pub fn session_pid() -> u32 {
    // SAFETY: gettid() has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).unwrap_or_else(|_| std::process::id())
}

/// The exit code stock's per-connection process would have had for a
/// session that ended with `r`.
pub fn exit_code(r: &Result<(), SessionError>, hooks: &SessionHooks) -> i32 {
    use crate::session::io::InputError;
    if hooks.failed_early {
        return 255;
    }
    match r {
        Ok(()) => 0,
        Err(SessionError::Exit { code, .. }) => code.code(),
        Err(SessionError::Input(InputError::Timeout)) => Rerr::Timeout.code(),
        Err(SessionError::Input(InputError::ClientErrorExit(Some(c)))) => *c,
        Err(_) => Rerr::StreamIo.code(),
    }
}

// ---------------------------------------------------------------------------
// Session integration
// ---------------------------------------------------------------------------

/// After admission, before `@RSYNCD: OK` (mirrors the hook block of
/// `rsync_module()`): expand the module's hooks, arm `post-xfer exec` (it
/// is kept on the session), run `early exec`.
pub(crate) fn before_ok(s: &mut Session, module: &ModuleRuntime, early_input: &[u8]) -> Result<(), SessionError> {
    let Some(hooks) = hooks_for(&s.state, module) else { return Ok(()) };
    if std::env::var_os("RSYNC_NO_XFER_EXEC").is_some() {
        return Ok(());
    }
    let (host_addr, host_name) = crate::logging::peer_names(s.peer, module.rules.hosts.reverse_lookup);
    let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let conn = ConnEnv {
        module_name: module.name.as_bytes().to_vec(),
        module_path: full_module_path(&module.path, &cwd),
        host_addr: host_addr.into_bytes(),
        host_name: host_name.into_bytes(),
        user_name: s.user.clone().unwrap_or_default(),
        pid: session_pid(),
    };
    let mut h = match SessionHooks::prepare(&hooks, &conn, &crate::config::process_env) {
        Ok(h) => h,
        Err(e) => {
            // Stock exits in expand_vars() before any hook runs; the
            // client only sees the connection close.
            crate::logging::log_module(&s.state, module, e.to_string().as_bytes());
            return Err(SessionError::Exit { code: Rerr::Unsupported, message: e.to_string() });
        }
    };
    let failed = h.run_early(early_input).filter(|o| !o.ok());
    h.failed_early = failed.is_some();
    // Armed even when early exec failed: stock forks the post-xfer waiter first.
    s.hooks = Some(h);
    if let Some(o) = failed {
        let why = describe(&o, "early exec");
        crate::logging::log_module(&s.state, module, format!("early exec failed: {why}").as_bytes());
        s.out.raw(&protocol::greeting::error_line("early exec failed"))?;
        return Err(SessionError::Exit { code: Rerr::StartClient, message: format!("early exec failed: {why}") });
    }
    Ok(())
}

fn describe(o: &HookOutcome, desc: &str) -> String {
    if let Some(e) = &o.error {
        return format!("cannot run /bin/sh: {e}");
    }
    if o.timed_out {
        return format!("killed after {} s", PRE_EXEC_TIMEOUT.as_secs());
    }
    format!("{desc} returned failure ({})", o.status)
}

/// Runs the session's `pre-xfer exec` once the arguments are read; the
/// message for the client when it failed.  `parsed` is the parse of the
/// arguments when it succeeded (for the glob expansion's options).
pub(crate) fn pre_xfer(
    s: &Session,
    module: &ModuleRuntime,
    first: &[Vec<u8>],
    second: Option<&[Vec<u8>]>,
    parsed: Option<&ParsedArgs>,
) -> Option<Vec<u8>> {
    let h = s.hooks.as_ref()?;
    h.pre_xfer.as_ref()?;
    // The file arguments as stock's read_args() leaves them: glob-expanded
    // in the module (sanitize_path() with SP_KEEP_DOT_DIRS: `relative`).
    // admit() opened the store (or refused the module).
    let snap = module.store.get().ok()?.current();
    let visibility = module.rules.access.view();
    let mut opts = parsed.map(|p| p.options.clone()).unwrap_or_default();
    opts.relative = true;
    let empty = FilterList::default();
    let ctx = crate::session::flist::BuildCtx {
        inc_first: false,
        snap: snap.snapshot(),
        module: &module.name,
        opts: &opts,
        client_filter: &empty,
        daemon_filter: &module.daemon_filter,
        protocol: s.protocol,
        visible: &|e| visibility.visible(e),
        cvs: None,
        confinement: module.opts.confinement,
    };
    let expand = |arg: &[u8], secluded: bool| {
        let mut out = Vec::new();
        ctx.expand_arg(arg, secluded, &mut out);
        out
    };
    let (request, args) = pre_xfer_args(first, second, &expand);
    let o = h.run_pre_xfer(request.as_deref(), &args)?;
    if o.ok() {
        return None;
    }
    if o.error.is_some() || o.timed_out {
        tracing::warn!(module = %module.name, "pre-xfer exec: {}", describe(&o, "pre-xfer exec"));
    }
    let msg = failure_message("pre-xfer exec", o.status, &o.output);
    let peer = s.peer.unwrap_or_else(crate::logging::unknown_peer);
    crate::logging::log_request_line(&s.state, module, &peer, s.user.as_deref(), second.unwrap_or(first));
    for line in message_lines(&msg) {
        crate::logging::log_module(&s.state, module, line.strip_suffix(b"\n").unwrap_or(&line));
    }
    Some(msg)
}

/// A failed `pre-xfer exec` (the `err_msg` path of `rsync_module()`): the
/// binary setup (`setup_protocol()` for the parsed arguments, or as for
/// refused ones), the message line by line as MSG_ERROR, a pause, and an
/// abortive close (exit 4; the client reports the reset).
pub(crate) fn refuse_pre_xfer(s: &mut Session, parsed: Option<&ParsedArgs>, msg: &[u8]) -> Result<(), SessionError> {
    match parsed {
        Some(p) => full_setup(s, p)?,
        None => s.refused_setup()?,
    }
    for line in message_lines(msg) {
        s.out.msg(MsgCode::Error, &line)?;
    }
    s.out.flush()?;
    std::thread::sleep(Duration::from_millis(400));
    s.abortive_close = true;
    Err(SessionError::Exit { code: Rerr::Unsupported, message: "pre-xfer exec failed".into() })
}

/// compat.c `setup_protocol()` for accepted arguments (compat flags from
/// the client's capabilities, negotiation strings, seed; for a push the
/// `--files-from` placeholder byte), then multiplexing.
fn full_setup(s: &mut Session, p: &ParsedArgs) -> Result<(), SessionError> {
    let o: &ServerOptions = &p.options;
    let mut varint = false;
    if s.protocol >= 30 {
        let caps = o.capabilities.clone().unwrap_or_default();
        // compat.c set_allow_inc_recurse(), as in transfer::run_sender.
        let allow_inc = o.recursive && (!o.sender || (!o.relative && o.files_from.is_none() && !o.use_qsort));
        let flags = compat::server_compat_flags(&caps, allow_inc);
        varint = flags & compat::CF_VARINT_FLIST_FLAGS != 0;
        let mut b = Vec::new();
        put_varint(&mut b, flags as i32);
        s.out.raw(&b)?;
    }
    let _ = crate::session::transfer::negotiate(s, p, varint)?;
    let seed = match o.checksum_seed {
        Some(v) if v != 0 => v,
        _ => s.new_seed(),
    };
    let mut b = Vec::new();
    put_i32(&mut b, seed);
    if !o.sender && o.files_from.is_some() {
        b.push(0);
    }
    s.out.raw(&b)?;
    s.out.start_mux()?;
    Ok(())
}

/// Runs the session's `post-xfer exec` (if any) for a session that ended
/// with `r`; call once its connection is closed.
pub(crate) fn after_session(hooks: &SessionHooks, r: &Result<(), SessionError>) {
    let code = exit_code(r, hooks);
    if let Some(o) = hooks.run_post_xfer(code) {
        if o.error.is_some() || o.timed_out {
            let why = match &o.error {
                Some(e) => format!("cannot run: {e}"),
                None => format!("killed after {} s", POST_EXEC_TIMEOUT.as_secs()),
            };
            tracing::warn!("post-xfer exec: {why}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &[u8]) -> Option<Vec<u8>> {
        match name {
            b"HOME" => Some(b"/root".to_vec()),
            b"RSYNC_OTHER" => Some(b"x;y".to_vec()),
            _ => None,
        }
    }

    fn conn() -> ConnEnv {
        ConnEnv {
            module_name: b"pub".to_vec(),
            module_path: b"/srv/pub".to_vec(),
            host_addr: b"192.0.2.7".to_vec(),
            host_name: b"client.example".to_vec(),
            user_name: Vec::new(),
            pid: 4242,
        }
    }

    fn exp(cmd: &str) -> Result<String, ExpandError> {
        let c = conn();
        let lookup = |n: &[u8]| c.lookup(n).or_else(|| env(n));
        expand_hook(cmd.as_bytes(), &lookup).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn expansion_quotes_connection_values_by_context() {
        assert_eq!(exp("log %RSYNC_MODULE_NAME% %HOME%").unwrap(), "log 'pub' /root");
        assert_eq!(exp("echo \"[%RSYNC_HOST_NAME%]\"").unwrap(), "echo \"['client.example']\"");
        assert_eq!(exp("echo '%RSYNC_HOST_ADDR%'").unwrap(), "echo '192.0.2.7'");
        assert_eq!(exp("echo \\'%RSYNC_MODULE_NAME%").unwrap(), "echo \\''pub'");
        assert_eq!(exp("a \"x'y\" %RSYNC_MODULE_NAME%").unwrap(), "a \"x'y\" 'pub'");
        // An empty user name is still one (empty) shell word.
        assert_eq!(exp("check %RSYNC_USER_NAME% end").unwrap(), "check '' end");
        // Stock sets these only after expanding: they stay as written.
        assert_eq!(
            exp("%RSYNC_PID% %RSYNC_REQUEST% %RSYNC_EXIT_STATUS% %NOPE% %lower% 100%").unwrap(),
            "%RSYNC_PID% %RSYNC_REQUEST% %RSYNC_EXIT_STATUS% %NOPE% %lower% 100%"
        );
        assert_eq!(exp("%NOPE%HOME%").unwrap(), "%NOPE/root");
    }

    #[test]
    fn expansion_refuses_shell_syntax_in_rsync_values() {
        assert_eq!(exp("x %RSYNC_OTHER%"), Err(ExpandError::Unsafe("RSYNC_OTHER".into())));
        for bad in ["a b", "a;b", "$(id)", "`id`", "a'b", "a\"b", "x\ny", "!", "~", "{a,b}", "a*", "\x7f"] {
            assert!(shell_unsafe_value(bad.as_bytes()), "{bad:?}");
        }
        for good in ["client.example", "2001:db8::1", "alice", "/srv/pub-1_x", "a=b", "a@b", "a%b", "a,b"] {
            assert!(!shell_unsafe_value(good.as_bytes()), "{good:?}");
        }
        // Values that are not RSYNC_* come from the operator: verbatim.
        let lookup = |n: &[u8]| (n == b"CMD").then(|| b"a; b $c".to_vec());
        assert_eq!(expand_hook(b"%CMD%", &lookup).unwrap(), b"a; b $c");
    }

    #[test]
    fn expansion_overflow_is_reported() {
        let big = vec![b'a'; 3000];
        let lookup = |n: &[u8]| (n == b"BIG").then(|| big.clone());
        assert!(matches!(expand_hook(b"%BIG%", &lookup), Err(ExpandError::Overflow(_))));
        assert!(expand_hook(b"%BIG%", &|_| Some(vec![b'b'; 2000])).is_ok());
    }

    #[test]
    fn environment_variables() {
        let mut v = conn().vars();
        v.extend(pre_exec_vars(Some(b"pub/dir"), &[b"rsyncd".to_vec(), b"--server".to_vec()]));
        let text: Vec<String> = v.iter().map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), String::from_utf8_lossy(v))).collect();
        assert_eq!(
            text,
            [
                "RSYNC_MODULE_NAME=pub",
                "RSYNC_HOST_NAME=client.example",
                "RSYNC_HOST_ADDR=192.0.2.7",
                "RSYNC_USER_NAME=",
                "RSYNC_MODULE_PATH=/srv/pub",
                "RSYNC_PID=4242",
                "RSYNC_REQUEST=pub/dir",
                "RSYNC_ARG0=rsyncd",
                "RSYNC_ARG1=--server",
            ]
        );
        assert_eq!(pre_exec_vars(None, &[]), [(b"RSYNC_REQUEST".to_vec(), b"(NONE)".to_vec())]);
        assert_eq!(post_exec_vars(4), [(b"RSYNC_RAW_STATUS".to_vec(), b"1024".to_vec()), (b"RSYNC_EXIT_STATUS".to_vec(), b"4".to_vec())]);
        assert_eq!(post_exec_vars(-1)[1].1, b"255");
        assert_eq!(post_exec_vars(-1)[0].1, b"65280");
    }

    #[test]
    fn module_paths_are_absolute_and_clean() {
        let cwd = Path::new("/etc/rsync");
        assert_eq!(full_module_path(Path::new("/srv//pub/./x/"), cwd), b"/srv/pub/x");
        assert_eq!(full_module_path(Path::new("/var/ftp/./pub"), cwd), b"/var/ftp/pub");
        assert_eq!(full_module_path(Path::new("data/../pub"), cwd), b"/etc/rsync/pub");
        assert_eq!(full_module_path(Path::new("/"), cwd), b"/");
    }

    fn list(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// A stand-in for glob_expand_module(): strip "pub", split on " pub/".
    fn fake_expand(arg: &[u8], secluded: bool) -> Vec<Vec<u8>> {
        let a = arg.strip_prefix(b"pub").unwrap_or(arg);
        let parts: Vec<&[u8]> = if secluded { vec![a] } else { a.split(|&b| b == b' ').collect() };
        parts
            .into_iter()
            .map(|p| {
                let p = p.strip_prefix(b"pub").unwrap_or(p);
                let p = p.strip_prefix(b"/").unwrap_or(p);
                if p.is_empty() {
                    b".".to_vec()
                } else {
                    p.to_vec()
                }
            })
            .collect()
    }

    #[test]
    fn pre_xfer_arguments_as_read_args_leaves_them() {
        let (req, args) = pre_xfer_args(&list(&["--server", "--sender", "-vlogDtpre.iLsfxCIvu", ".", "pub/"]), None, &fake_expand);
        assert_eq!(req.as_deref(), Some(&b"pub/"[..]));
        assert_eq!(args, list(&["rsyncd", "--server", "--sender", "-vlogDtpre.iLsfxCIvu", ".", "."]));
        // Several file arguments; option arguments lose their backslashes.
        let (req, args) = pre_xfer_args(&list(&["--server", "--sender", "--exclude=a\\*", ".", "pub/a", "pub/b c"]), None, &fake_expand);
        assert_eq!(req.as_deref(), Some(&b"pub/a pub/b c"[..]));
        assert_eq!(args, list(&["rsyncd", "--server", "--sender", "--exclude=a*", ".", "a", "b", "c"]));
        // No file argument: no request.
        let (req, args) = pre_xfer_args(&list(&["--server", "."]), None, &fake_expand);
        assert_eq!((req, args), (None, list(&["rsyncd", "--server", "."])));
        // -s: the second list follows without its first word; its request.
        let (req, args) = pre_xfer_args(
            &list(&["--server", "--sender", "-s", "."]),
            Some(&list(&["rsync", "--server", "--sender", "-vl", ".", "pub/x y"])),
            &fake_expand,
        );
        assert_eq!(req.as_deref(), Some(&b"pub/x y"[..]));
        assert_eq!(args, list(&["rsyncd", "--server", "--sender", "-s", ".", "--server", "--sender", "-vl", ".", "x y"]));
        // The request stops growing past 1024 bytes.
        let long = "p".repeat(1020);
        let (req, _) = pre_xfer_args(&list(&["--server", ".", &long, "pub/a", "pub/b"]), None, &fake_expand);
        assert_eq!(req.unwrap().len(), 1020 + 1 + 5);
    }

    #[test]
    fn hook_output_is_read_as_stock_reads_it() {
        assert_eq!(read_hook_output(&b"a\r\nb\rc\r\n"[..], 100), b"a\nb\rc\n");
        assert_eq!(read_hook_output(&b"abc\0def"[..], 100), b"abc");
        assert_eq!(read_hook_output(&vec![b'x'; 9000][..], MAX_HOOK_OUTPUT).len(), MAX_HOOK_OUTPUT);
        // A \r\n split across reads is still one newline.
        let r = std::io::Read::chain(&b"a\r"[..], &b"\nb"[..]);
        assert_eq!(read_hook_output(r, 100), b"a\nb");
    }

    #[test]
    fn failure_messages() {
        assert_eq!(failure_message("pre-xfer exec", 256, b""), b"pre-xfer exec returned failure (256)\n");
        let m = failure_message("pre-xfer exec", 768, b"no\nway");
        assert_eq!(m, b"pre-xfer exec returned failure (768):\nno\nway");
        assert_eq!(message_lines(&m), list(&["pre-xfer exec returned failure (768):\n", "no\n", "way\n"]));
    }

    #[test]
    fn hooks_run_with_their_environment_input_and_status() {
        let env = vec![(b"RSYNC_ARG0".to_vec(), b"rsyncd".to_vec())];
        let o = run_hook(b"cat; echo \"[$RSYNC_ARG0]\"; exit 3", &env, b"early\n", true, Duration::from_secs(10));
        assert_eq!((o.status, o.timed_out), (3 << 8, false));
        assert_eq!(o.output, b"early\n[rsyncd]\n");
        let o = run_hook(b"kill -9 $$", &[], b"", true, Duration::from_secs(10));
        assert_eq!(o.status, 256, "a signal counts as exit code 1");
        let o = run_hook(b"true", &[], b"", false, Duration::from_secs(10));
        assert!(o.ok());
    }

    #[test]
    fn hooks_are_killed_after_their_time_limit() {
        let t = Instant::now();
        let o = run_hook(b"sleep 30; echo late", &[], b"", true, Duration::from_millis(300));
        assert!(o.timed_out && o.status == 256 && o.output.is_empty(), "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
        // A background child holding stdout does not hold us up for ever.
        let t = Instant::now();
        let o = run_hook(b"echo hi; sleep 30 & exit 0", &[], b"", true, Duration::from_millis(500));
        assert!(o.timed_out, "{o:?}");
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn prepared_hooks_expand_every_command() {
        let hooks =
            Hooks { early: Some(b"e %RSYNC_MODULE_NAME%".to_vec()), pre_xfer: None, post_xfer: Some(b"p %RSYNC_USER_NAME%".to_vec()) };
        let h = SessionHooks::prepare(&hooks, &conn(), &env).unwrap();
        assert_eq!(h.commands(), [Some(&b"e 'pub'"[..]), None, Some(&b"p ''"[..])]);
        let mut c = conn();
        c.host_name = b"evil;name".to_vec();
        let hooks = Hooks { pre_xfer: Some(b"x %RSYNC_HOST_NAME%".to_vec()), ..Hooks::default() };
        assert_eq!(SessionHooks::prepare(&hooks, &c, &env).unwrap_err(), ExpandError::Unsafe("RSYNC_HOST_NAME".into()));
    }
}
