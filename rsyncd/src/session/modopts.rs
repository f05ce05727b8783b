//! Module parameters that shape what a pull sends, with stock rsync 3.2.7
//! semantics: `use chroot`, `munge symlinks`, `numeric ids`,
//! `ignore errors`, `dont compress`, `open noatime`, `outgoing chmod` and
//! `max verbosity`.
//!
//! Mirrors `clientserver.c: rsync_module()` (defaults and the order in
//! which module settings override the client's options), `flist.c:
//! readlink_stat()` (munged link targets), `chmod.c: parse_chmod()` /
//! `tweak_mode()` (`outgoing chmod`) and `token.c: init_set_compression()`
//! (`dont compress`).
//!
//! [`ModuleOpts`] is computed once per module at start-up
//! ([`ModuleOpts::for_module`]). A session applies it with [`enter`], which
//! rewrites the client's options and installs the per-session switches that
//! the file-list and transfer hooks read ([`outgoing_mode`],
//! [`outgoing_link`], [`user_name_override`] / [`group_name_override`],
//! [`open_noatime`]) for as long as
//! the returned [`SessionGuard`] lives on the session's thread.
//!
//! # `use chroot` without chroot(2)
//!
//! Sessions are threads of one process, so we never chroot.  Every open is
//! confined beneath the held module-root fd with `openat2(2)`
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` (see `files.rs`), whatever the
//! setting: nothing outside the module's `path` is ever opened.  What a
//! client can see of the setting is:
//!
//! 1. Defaults.  `munge symlinks` defaults to `!use_chroot || inner dir`
//!    and `numeric ids` to on for chroot modules (unless `numeric ids = no`
//!    or a `name converter` is set), off otherwise.  `use chroot` itself
//!    defaults (when unset) to yes if the path holds `/./` or the daemon
//!    could chroot (stock tries `chroot("/")`; we check `CAP_SYS_CHROOT`).
//! 2. User and group names.  A chrooted stock sender looks names up inside
//!    the chroot, i.e. in `<chroot>/etc/passwd` and `<chroot>/etc/group`
//!    (none there: no names).  A chroot module with `numeric ids = no`
//!    therefore takes its names from those two files, read beneath the
//!    chroot directory without following symlinks ([`chroot_names`]).
//! 3. Symlinks in the directory part of a pull argument (`mod/link/`,
//!    `mod/link/file`), the only place a `-L`-free sender follows links.
//!    [`resolve_dir`] gives the stock answer for each mode:
//!    [`Confinement::Beneath`] for `use chroot = no` (as Debian's patched
//!    3.2.7 `change_dir()`, i.e. `openat2(RESOLVE_BENEATH)`: links inside
//!    the module are followed, absolute targets and `..` above the module
//!    root fail with EXDEV) and [`Confinement::InRoot`] for `use chroot =
//!    yes` (a walk inside `chroot(path)`: absolute targets start at the
//!    module root, `..` stops there).  With a `path` of the form
//!    `outer/./inner`, stock chroots to `outer`, so an absolute target
//!    would start there; we start it at the module directory instead, so
//!    that nothing outside `path` is reachable (a deliberate difference).
//!
//! Stock also turns path sanitising off for a chroot module whose `path`
//! has no `/./`; we always sanitise (paths never climb above the module).

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use protocol::args::{ParsedArgs, ServerOptions};
use protocol::token::TokenEncoder;

use crate::config::Module;

/// `SYMLINK_PREFIX` (rsync.h): what a receiving daemon prepends to the
/// targets of symlinks it creates when munging.
pub const SYMLINK_PREFIX: &[u8] = b"/rsyncd-munged/";

/// `CHMOD_BITS`: setuid, setgid, sticky and the permission bits.
const CHMOD_BITS: u32 = 0o7777;

/// Facts about the daemon's process that module defaults depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFacts {
    /// Whether `chroot("/")` would succeed (stock's test for an unset
    /// `use chroot`): the process has `CAP_SYS_CHROOT`.
    pub can_chroot: bool,
    /// The process umask (stock's `orig_umask`, used by `outgoing chmod`
    /// clauses without a `u`/`g`/`o`/`a` part).
    pub umask: u32,
}

impl HostFacts {
    /// Reads `/proc/self/status` (`CapEff`, `Umask`); falls back to
    /// "root can chroot" and umask 022 when it cannot.
    pub fn probe() -> HostFacts {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        // CAP_SYS_CHROOT is capability 18.
        let can_chroot = match field("CapEff:").and_then(|v| u64::from_str_radix(v, 16).ok()) {
            Some(caps) => caps & (1 << 18) != 0,
            // SAFETY: geteuid has no preconditions.
            None => (unsafe { libc::geteuid() }) == 0,
        };
        let umask = field("Umask:").and_then(|v| u32::from_str_radix(v, 8).ok()).unwrap_or(0o022);
        HostFacts { can_chroot, umask }
    }
}

/// How symlinks in the directory part of a pull argument resolve (see the
/// module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// `use chroot = no`: like `openat2(RESOLVE_BENEATH)` from the module
    /// root.
    Beneath,
    /// `use chroot = yes`: like `openat2(RESOLVE_IN_ROOT)` at the module
    /// root.
    InRoot,
}

/// The effective module parameters of one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleOpts {
    /// `use chroot`, resolved as stock resolves "unset".
    pub use_chroot: bool,
    /// How argument directories resolve symlinks (from `use_chroot`).
    pub confinement: Confinement,
    /// `munge symlinks` with its default: targets starting with
    /// [`SYMLINK_PREFIX`] are sent without it.
    pub munge_symlinks: bool,
    /// `numeric ids` with its default: user and group names are not sent
    /// (stock's `numeric_ids = -1`: the id lists still go out, empty).
    pub numeric_ids: bool,
    /// `ignore errors`: I/O errors are not reported to the client's
    /// generator (which then still deletes with `--delete`).
    pub ignore_errors: bool,
    /// `dont compress` holds the word `*`: deflate runs at level 0.
    pub skip_compress: bool,
    /// `open noatime` (`None`: the client's `--open-noatime` decides).
    pub open_noatime: Option<bool>,
    /// `outgoing chmod`, parsed (`None` when unset or invalid).
    pub outgoing_chmod: Option<ChmodRules>,
    /// `max verbosity`.
    pub max_verbosity: i32,
    /// The directory stock would chroot to (`path`, or its part before
    /// `/./`) when `use chroot` is on: where user and group names come from.
    pub chroot_dir: Option<std::path::PathBuf>,
}

/// Whether a path names the root once empty and `.` components are
/// dropped (stock's `normalize_path()` leaving "/").
fn is_root_path(p: &[u8]) -> bool {
    p.split(|&b| b == b'/').all(|c| c.is_empty() || c == b".")
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

impl ModuleOpts {
    /// The effective parameters of `m` on a host described by `host`, and
    /// the warnings to log (stock logs them per connection).
    ///
    /// Mirrors `clientserver.c: rsync_module()`: an unset `use chroot` is
    /// yes when the path holds `/./` or the daemon can chroot; the module
    /// dir length (`module_dirlen`) is non-zero for a chroot path with an
    /// inner part other than `/`, and for any other path but `/`.
    pub fn from_config(m: &Module, host: HostFacts) -> (ModuleOpts, Vec<String>) {
        let mut warnings = Vec::new();
        let path = m.path.as_os_str().as_bytes();
        let split = find(path, b"/./");
        let use_chroot = m.use_chroot.unwrap_or(split.is_some() || host.can_chroot);
        let module_dirlen = if use_chroot { split.is_some_and(|i| !is_root_path(&path[i + 2..])) } else { !is_root_path(path) };
        let munge_symlinks = m.munge_symlinks.unwrap_or(!use_chroot || module_dirlen);
        let numeric_ids = if use_chroot {
            m.numeric_ids != Some(false) && m.name_converter.as_deref().unwrap_or("").is_empty()
        } else {
            m.numeric_ids == Some(true)
        };
        let outgoing_chmod = match m.outgoing_chmod.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(text) => match ChmodRules::parse(text.as_bytes(), host.umask) {
                Ok(r) => Some(r),
                Err(_) => {
                    warnings.push(format!("Invalid \"outgoing chmod\" directive: {text}"));
                    None
                }
            },
        };
        let opts = ModuleOpts {
            use_chroot,
            confinement: if use_chroot { Confinement::InRoot } else { Confinement::Beneath },
            munge_symlinks,
            numeric_ids,
            ignore_errors: m.ignore_errors,
            // token.c: init_set_compression() stops at the word "*".
            skip_compress: m.dont_compress.iter().any(|w| w == "*"),
            open_noatime: m.open_noatime,
            outgoing_chmod,
            max_verbosity: m.max_verbosity,
            chroot_dir: use_chroot.then(|| match split {
                Some(i) => std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&path[..i.max(1)])),
                None => m.path.clone(),
            }),
        };
        (opts, warnings)
    }

    /// [`Self::from_config`] for this process ([`HostFacts::probe`], once),
    /// logging the warnings.
    pub fn for_module(m: &Module) -> ModuleOpts {
        static HOST: OnceLock<HostFacts> = OnceLock::new();
        let (opts, warnings) = Self::from_config(m, *HOST.get_or_init(HostFacts::probe));
        for w in warnings {
            tracing::warn!(module = %m.name, "{w}");
        }
        opts
    }

    /// Module settings that override the client's options, in stock's
    /// order (`rsync_module()` after `parse_arguments()`): `open noatime`
    /// when set replaces `--open-noatime`, `ignore errors` turns
    /// `--ignore-errors` on, and the verbosity is capped at `max verbosity`
    /// (`limit_output_verbosity()`).  `numeric ids` is not an option
    /// change: see [`enter`].
    pub fn apply(&self, o: &mut ServerOptions) {
        if let Some(v) = self.open_noatime {
            o.open_noatime = v;
        }
        if self.ignore_errors {
            o.ignore_errors = true;
        }
        let max = self.max_verbosity.clamp(0, i32::from(u8::MAX)) as u8;
        o.verbose = o.verbose.min(max);
    }

    /// Applies `dont compress` to the session's token encoder.
    pub fn tune_tokens(&self, mut t: TokenEncoder) -> TokenEncoder {
        t.set_skip_compress(self.skip_compress);
        t
    }
}

/// Where a session's user and group names come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NameSource {
    /// The system's (NSS) names.
    #[default]
    System,
    /// None at all (`numeric ids`).
    Suppressed,
    /// A chroot's `etc/passwd` and `etc/group` (see [`chroot_names`]).
    Files {
        /// uid to user name.
        users: HashMap<u32, Vec<u8>>,
        /// gid to group name.
        groups: HashMap<u32, Vec<u8>>,
    },
}

/// The per-session switches the hooks read.
#[derive(Debug, Clone)]
struct Active {
    munge: bool,
    names: NameSource,
    noatime: bool,
    chmod: Option<ChmodRules>,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// Keeps a session's module settings active on this thread; dropping it
/// clears them.
#[derive(Debug)]
pub struct SessionGuard {
    /// Bound to the thread that installed it.
    _not_send: PhantomData<*const ()>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        ACTIVE.with(|a| *a.borrow_mut() = None);
    }
}

/// Start a session on this thread with `opts`: returns the client's
/// arguments with the module's overrides applied ([`ModuleOpts::apply`])
/// and a guard that keeps the module's file-list switches active.
///
/// `numeric ids` mirrors stock's `numeric_ids = -1` ("set --numeric-ids
/// w/o breaking protocol"): unless the client asked for `--numeric-ids`
/// itself, the options stay as they are (so the uid/gid lists the client
/// expects still go out) and every name lookup comes back empty
/// ([`user_name_override`]).  A chroot module that does send names reads
/// them from the chroot ([`chroot_names`]), once per session.
pub fn enter(opts: &ModuleOpts, mut parsed: ParsedArgs) -> (ParsedArgs, SessionGuard) {
    opts.apply(&mut parsed.options);
    let o = &parsed.options;
    let names = if o.numeric_ids || !(o.owner || o.group) {
        // No names are sent at all; nothing to look up.
        NameSource::System
    } else if opts.numeric_ids {
        NameSource::Suppressed
    } else if let Some(dir) = &opts.chroot_dir {
        let (users, groups) = chroot_names(dir);
        NameSource::Files { users, groups }
    } else {
        NameSource::System
    };
    let active = Active { munge: opts.munge_symlinks, names, noatime: o.open_noatime, chmod: opts.outgoing_chmod.clone() };
    ACTIVE.with(|a| *a.borrow_mut() = Some(active));
    (parsed, SessionGuard { _not_send: PhantomData })
}

fn with_active<T>(f: impl FnOnce(&Active) -> T, none: T) -> T {
    ACTIVE.with(|a| a.borrow().as_ref().map_or(none, f))
}

/// The mode a file-list entry is sent with: `outgoing chmod` applied to
/// everything but symlinks and mode-0 placeholders (mirrors flist.c
/// `send_file_name()`).
pub fn outgoing_mode(mode: u32) -> u32 {
    if mode == 0 || mode & libc::S_IFMT == libc::S_IFLNK {
        return mode;
    }
    with_active(|a| a.chmod.as_ref().map_or(mode, |c| c.tweak(mode)), mode)
}

/// The symlink target a file-list entry is sent with: unmunged when the
/// module munges symlinks.
pub fn outgoing_link(target: &[u8]) -> &[u8] {
    if with_active(|a| a.munge, false) {
        unmunge(target)
    } else {
        target
    }
}

/// The name to send for `uid` when the module decides it (`Some`: the
/// answer, possibly "no name"), `None` when the system's names apply.
pub fn user_name_override(uid: u32) -> Option<Option<Vec<u8>>> {
    with_active(
        |a| match &a.names {
            NameSource::System => None,
            NameSource::Suppressed => Some(None),
            NameSource::Files { users, .. } => Some(users.get(&uid).cloned()),
        },
        None,
    )
}

/// [`user_name_override`] for groups.
pub fn group_name_override(gid: u32) -> Option<Option<Vec<u8>>> {
    with_active(
        |a| match &a.names {
            NameSource::System => None,
            NameSource::Suppressed => Some(None),
            NameSource::Files { groups, .. } => Some(groups.get(&gid).cloned()),
        },
        None,
    )
}

/// The largest `etc/passwd` or `etc/group` read from a chroot.
const MAX_ID_FILE: u64 = 4 << 20;

/// User and group names as a process chrooted to `dir` sees them with
/// glibc's `files` backend: `dir/etc/passwd` and `dir/etc/group`, opened
/// beneath `dir` without following symlinks (a missing or unreadable file
/// gives no names, as in a bare chroot).
pub fn chroot_names(dir: &std::path::Path) -> (HashMap<u32, Vec<u8>>, HashMap<u32, Vec<u8>>) {
    let read = |rel: &[u8]| -> Vec<u8> {
        let mut text = Vec::new();
        if let Ok(f) = super::files::ModuleRoot::open(dir).and_then(|r| r.open_file(rel)) {
            let _ = std::io::Read::read_to_end(&mut std::io::Read::take(f, MAX_ID_FILE), &mut text);
        }
        text
    };
    (parse_id_file(&read(b"etc/passwd")), parse_id_file(&read(b"etc/group")))
}

/// `name:password:id:...` lines (passwd and group alike) to an id-to-name
/// map; the first line for an id wins, as `getpwuid()` returns the first.
/// Comments, NIS `+`/`-` lines and malformed lines are skipped.
pub fn parse_id_file(text: &[u8]) -> HashMap<u32, Vec<u8>> {
    let mut map = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        if line.is_empty() || matches!(line[0], b'#' | b'+' | b'-') {
            continue;
        }
        let mut f = line.split(|&b| b == b':');
        let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) else { continue };
        let Some(id) = std::str::from_utf8(id).ok().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if !name.is_empty() {
            map.entry(id).or_insert_with(|| name.to_vec());
        }
    }
    map
}

/// Whether the session opens files with `O_NOATIME` (`open noatime`, or
/// the client's `--open-noatime` when the module leaves it unset).
pub fn open_noatime() -> bool {
    with_active(|a| a.noatime, false)
}

/// A symlink target as a munging sender sends it (mirrors flist.c
/// `readlink_stat()`): without a leading [`SYMLINK_PREFIX`], provided
/// something follows it.
pub fn unmunge(target: &[u8]) -> &[u8] {
    if target.len() > SYMLINK_PREFIX.len() && target.starts_with(SYMLINK_PREFIX) {
        &target[SYMLINK_PREFIX.len()..]
    } else {
        target
    }
}

/// One clause of a chmod directive (`struct chmod_mode_struct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChmodRule {
    and: u32,
    or: u32,
    /// `X`: execute bits only for directories and already-executable files.
    x_keep: bool,
    /// `D`: directories only.
    dirs_only: bool,
    /// `F`: non-directories only.
    files_only: bool,
}

/// A parsed `--chmod`-style directive, e.g. `Dg+s,ug+w,Fo-w,+X` or `D755,F644`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChmodRules(Vec<ChmodRule>);

/// A chmod directive stock would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid chmod directive")]
pub struct ChmodError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChmodOp {
    Add,
    Sub,
    Eq,
    Set,
}

impl ChmodRules {
    /// Parses comma-separated clauses (mirrors chmod.c `parse_chmod()`):
    /// `[D|F][ugoa...](+|-|=)[rwxXst...]` or `[D|F]octal`.  A clause without
    /// `ugoa` applies to all, minus `umask`.  Empty clauses (a trailing
    /// comma) are errors, as in stock.
    pub fn parse(s: &[u8], umask: u32) -> Result<ChmodRules, ChmodError> {
        s.split(|&b| b == b',').map(|c| parse_clause(c, umask)).collect::<Result<Vec<_>, _>>().map(ChmodRules)
    }

    /// The mode after the directive (mirrors chmod.c `tweak_mode()`): the
    /// file type bits are kept, clauses apply in order.
    pub fn tweak(&self, mode: u32) -> u32 {
        let was_x = mode & 0o111 != 0;
        let non_perm = mode & !CHMOD_BITS;
        let is_dir = non_perm & libc::S_IFMT == libc::S_IFDIR;
        let mut m = mode;
        for r in &self.0 {
            if (r.dirs_only && !is_dir) || (r.files_only && is_dir) {
                continue;
            }
            m &= r.and;
            if r.x_keep && !was_x && !is_dir {
                m |= r.or & !0o111;
            } else {
                m |= r.or;
            }
        }
        m | non_perm
    }
}

fn parse_clause(c: &[u8], umask: u32) -> Result<ChmodRule, ChmodError> {
    #[derive(PartialEq)]
    enum State {
        Who,
        Perms,
        Octal,
    }
    let mut state = State::Who;
    let (mut who, mut what, mut topbits, mut topoct) = (0u32, 0u32, 0u32, 0u32);
    let mut op = None;
    let (mut x_keep, mut dirs_only, mut files_only) = (false, false, false);
    for &ch in c {
        match state {
            State::Who => match ch {
                b'D' if !files_only => dirs_only = true,
                b'F' if !dirs_only => files_only = true,
                b'u' => {
                    who |= 0o100;
                    topbits |= 0o4000;
                }
                b'g' => {
                    who |= 0o010;
                    topbits |= 0o2000;
                }
                b'o' => who |= 0o001,
                b'a' => who |= 0o111,
                b'+' | b'-' | b'=' => {
                    op = Some(match ch {
                        b'+' => ChmodOp::Add,
                        b'-' => ChmodOp::Sub,
                        _ => ChmodOp::Eq,
                    });
                    state = State::Perms;
                }
                b'0'..=b'7' if who == 0 => {
                    op = Some(ChmodOp::Set);
                    state = State::Octal;
                    who = 1;
                    what = u32::from(ch - b'0');
                }
                _ => return Err(ChmodError),
            },
            State::Perms => match ch {
                b'r' => what |= 4,
                b'w' => what |= 2,
                b'X' => {
                    x_keep = true;
                    what |= 1;
                }
                b'x' => what |= 1,
                b's' => {
                    if topbits != 0 {
                        topoct |= topbits;
                    } else {
                        topoct = 0o4000;
                    }
                }
                b't' => topoct |= 0o1000,
                _ => return Err(ChmodError),
            },
            State::Octal => match ch {
                b'0'..=b'7' => {
                    what = what * 8 + u32::from(ch - b'0');
                    if what > CHMOD_BITS {
                        return Err(ChmodError);
                    }
                }
                _ => return Err(ChmodError),
            },
        }
    }
    let op = op.ok_or(ChmodError)?;
    let bits = if who != 0 {
        who * what
    } else {
        who = 0o111;
        (who * what) & !umask
    };
    let (and, or) = match op {
        ChmodOp::Add => (CHMOD_BITS, bits | topoct),
        ChmodOp::Sub => (CHMOD_BITS & !(bits | topoct), 0),
        ChmodOp::Eq => (CHMOD_BITS & !(who * 7) & !(if topoct != 0 { topbits } else { 0 }), bits | topoct),
        ChmodOp::Set => (0, bits),
    };
    Ok(ChmodRule { and, or, x_keep, dirs_only, files_only })
}

/// What a module-relative path names, for [`resolve_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A symlink with this target.
    Symlink(Vec<u8>),
    /// Anything else.
    Other,
}

/// Linux `MAXSYMLINKS`: links followed in one resolution.
const MAX_SYMLINKS: usize = 40;

/// Resolves the module-relative directory `path` (an argument's directory
/// part) to the module-relative path of the real directory it names,
/// following symlinks as the kernel would with `how` (see the module
/// documentation), or returns the errno the stock sender's `change_dir()`
/// would report: ENOENT (missing), ENOTDIR (not a directory), EXDEV
/// (escapes under [`Confinement::Beneath`]), ELOOP.  `lookup` tells what a
/// module-relative path (never empty) names, `None` if nothing (the
/// caller hides what the client may not see there).
pub fn resolve_dir(path: &[u8], how: Confinement, lookup: impl Fn(&[u8]) -> Option<Node>) -> Result<Vec<u8>, i32> {
    fn push_front(todo: &mut std::collections::VecDeque<Vec<u8>>, p: &[u8]) {
        for c in p.split(|&b| b == b'/').rev().filter(|c| !c.is_empty() && *c != b".") {
            todo.push_front(c.to_vec());
        }
    }
    let mut todo = std::collections::VecDeque::new();
    push_front(&mut todo, path);
    let mut cur: Vec<Vec<u8>> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == b".." {
            if cur.pop().is_none() && how == Confinement::Beneath {
                return Err(libc::EXDEV);
            }
            continue;
        }
        let mut candidate = cur.join(&b'/');
        if !candidate.is_empty() {
            candidate.push(b'/');
        }
        candidate.extend_from_slice(&c);
        match lookup(&candidate) {
            None => return Err(libc::ENOENT),
            Some(Node::Other) => return Err(libc::ENOTDIR),
            Some(Node::Dir) => cur.push(c),
            Some(Node::Symlink(target)) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(libc::ELOOP);
                }
                if target.is_empty() {
                    return Err(libc::ENOENT);
                }
                if target.starts_with(b"/") {
                    if how == Confinement::Beneath {
                        return Err(libc::EXDEV);
                    }
                    cur.clear();
                }
                push_front(&mut todo, &target);
            }
        }
    }
    Ok(cur.join(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(extra: &str) -> Module {
        let text = format!("[m]\npath = /srv/m\n{extra}\n");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rsyncd.conf");
        std::fs::write(&p, text).unwrap();
        let c = crate::config::load(&p).unwrap();
        c.modules[0].clone()
    }

    const ROOT: HostFacts = HostFacts { can_chroot: true, umask: 0o022 };
    const USER: HostFacts = HostFacts { can_chroot: false, umask: 0o022 };

    fn opts(extra: &str, host: HostFacts) -> ModuleOpts {
        ModuleOpts::from_config(&module(extra), host).0
    }

    #[test]
    fn chroot_defaults_follow_stock() {
        // Unset: yes when the daemon can chroot.
        let o = opts("", ROOT);
        assert!(o.use_chroot && !o.munge_symlinks && o.numeric_ids);
        assert_eq!(o.confinement, Confinement::InRoot);
        let o = opts("", USER);
        assert!(!o.use_chroot && o.munge_symlinks && !o.numeric_ids);
        assert_eq!(o.confinement, Confinement::Beneath);
        // "/./" forces chroot; a non-root inner dir keeps munging on.
        let o = opts("path = /srv/./m", USER);
        assert!(o.use_chroot && o.munge_symlinks && o.numeric_ids);
        let o = opts("path = /srv/./", ROOT);
        assert!(o.use_chroot);
        // Explicit settings win.
        let o = opts("use chroot = yes\nnumeric ids = no\nmunge symlinks = yes", USER);
        assert!(o.use_chroot && !o.numeric_ids && o.munge_symlinks);
        let o = opts("use chroot = no\nnumeric ids = yes\nmunge symlinks = no", ROOT);
        assert!(!o.use_chroot && o.numeric_ids && !o.munge_symlinks);
        // A name converter keeps names for a chroot module.
        let o = opts("use chroot = yes\nname converter = /bin/nc", ROOT);
        assert!(!o.numeric_ids);
        // Not chrooted and serving "/": module_dirlen is 0, munging stays on.
        let o = opts("path = /\nuse chroot = no", ROOT);
        assert!(o.munge_symlinks);
    }

    #[test]
    fn other_parameters() {
        let o = opts("ignore errors = yes\ndont compress = *.gz *\nopen noatime = yes\nmax verbosity = 3", ROOT);
        assert!(o.ignore_errors && o.skip_compress);
        assert_eq!((o.open_noatime, o.max_verbosity), (Some(true), 3));
        let o = opts("dont compress = *.gz *.*", ROOT);
        assert!(!o.skip_compress && !o.ignore_errors && o.open_noatime.is_none());
        assert!(!opts("", ROOT).skip_compress, "the default list has no bare *");
        let (o, w) = ModuleOpts::from_config(&module("outgoing chmod = u+q"), ROOT);
        assert!(o.outgoing_chmod.is_none());
        assert_eq!(w, ["Invalid \"outgoing chmod\" directive: u+q"]);
        assert!(opts("outgoing chmod = D755,F644", ROOT).outgoing_chmod.is_some());
    }

    #[test]
    fn overrides_client_options() {
        let mut o = ServerOptions::default();
        (o.verbose, o.open_noatime) = (4, true);
        let m = opts("ignore errors = yes\nopen noatime = no\nmax verbosity = 2", ROOT);
        m.apply(&mut o);
        assert!(o.ignore_errors && !o.open_noatime);
        assert_eq!(o.verbose, 2);
        let mut o = ServerOptions::default();
        (o.verbose, o.open_noatime) = (1, true);
        opts("max verbosity = -1", ROOT).apply(&mut o);
        assert!(o.open_noatime && !o.ignore_errors, "unset open noatime keeps the client's");
        assert_eq!(o.verbose, 0);
    }

    #[test]
    fn session_switches_are_per_thread_and_scoped() {
        let m = opts("use chroot = no\nnumeric ids = yes\noutgoing chmod = o-r\nopen noatime = yes", ROOT);
        let mut parsed = ParsedArgs { options: ServerOptions::default(), paths: Vec::new(), raw_options: Vec::new() };
        (parsed.options.owner, parsed.options.group) = (true, true);
        assert_eq!(outgoing_mode(0o100644), 0o100644);
        {
            let (p, _g) = enter(&m, parsed.clone());
            assert!(p.options.open_noatime && open_noatime());
            assert_eq!(user_name_override(0), Some(None));
            assert_eq!(group_name_override(1), Some(None));
            assert_eq!(outgoing_mode(0o100644), 0o100640);
            assert_eq!(outgoing_mode(0o120777), 0o120777, "symlinks keep their mode");
            assert_eq!(outgoing_mode(0), 0);
            assert_eq!(outgoing_link(b"/rsyncd-munged/etc/x"), b"etc/x");
            std::thread::spawn(|| assert_eq!(user_name_override(0), None)).join().unwrap();
        }
        assert!(user_name_override(0).is_none() && !open_noatime());
        assert_eq!(outgoing_link(b"/rsyncd-munged/etc/x"), b"/rsyncd-munged/etc/x");
        // A client asking for --numeric-ids itself gets no lists at all
        // (the encoder's business), not the suppressed-names form.
        let mut p = parsed;
        p.options.numeric_ids = true;
        let (_p, _g) = enter(&m, p);
        assert!(user_name_override(0).is_none());
    }

    #[test]
    fn chroot_modules_name_ids_from_the_chroot() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("m");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n+nis\n#c\nalice:x:1:7::/:/bin/false\nbob:x:1:7::/:x\nbad\n")
            .unwrap();
        std::os::unix::fs::symlink("/etc/group", root.join("etc/group")).unwrap();
        let mut m = module("use chroot = yes\nnumeric ids = no");
        m.path = root.clone();
        let o = ModuleOpts::from_config(&m, ROOT).0;
        assert_eq!(o.chroot_dir.as_deref(), Some(root.as_path()));
        let mut parsed = ParsedArgs { options: ServerOptions::default(), paths: Vec::new(), raw_options: Vec::new() };
        (parsed.options.owner, parsed.options.group) = (true, true);
        let (_p, _g) = enter(&o, parsed);
        assert_eq!(user_name_override(1), Some(Some(b"alice".to_vec())), "the first line wins");
        assert_eq!(user_name_override(0), Some(Some(b"root".to_vec())));
        assert_eq!(user_name_override(2), Some(None));
        assert_eq!(group_name_override(0), Some(None), "a symlinked etc/group is not followed");
        // "/./": the part before it is the chroot.
        let mut m2 = module("");
        m2.path = std::path::PathBuf::from("/srv/./inner");
        assert_eq!(ModuleOpts::from_config(&m2, USER).0.chroot_dir, Some("/srv".into()));
        m2.path = std::path::PathBuf::from("/./inner");
        assert_eq!(ModuleOpts::from_config(&m2, USER).0.chroot_dir, Some("/".into()));
        assert_eq!(ModuleOpts::from_config(&module("use chroot = no"), ROOT).0.chroot_dir, None);
    }

    #[test]
    fn unmunge_strips_only_a_full_prefix() {
        assert_eq!(unmunge(b"/rsyncd-munged/a"), b"a");
        assert_eq!(unmunge(b"/rsyncd-munged//etc"), b"/etc");
        assert_eq!(unmunge(b"/rsyncd-munged/"), b"/rsyncd-munged/");
        assert_eq!(unmunge(b"/rsyncd-munged"), b"/rsyncd-munged");
        assert_eq!(unmunge(b"rsyncd-munged/a"), b"rsyncd-munged/a");
        assert_eq!(unmunge(b"/etc/passwd"), b"/etc/passwd");
    }

    fn tw(directive: &str, mode: u32) -> u32 {
        ChmodRules::parse(directive.as_bytes(), 0o022).unwrap().tweak(mode)
    }

    const F: u32 = libc::S_IFREG;
    const D: u32 = libc::S_IFDIR;

    #[test]
    fn chmod_symbolic_clauses() {
        assert_eq!(tw("u+x", F | 0o644), F | 0o744);
        assert_eq!(tw("go-rwx", F | 0o755), F | 0o700);
        assert_eq!(tw("a=r", F | 0o755), F | 0o444);
        assert_eq!(tw("ug=rw,o=", F | 0o777), F | 0o660);
        // No who: all, minus the umask.
        assert_eq!(tw("+w", F | 0o444), F | 0o644);
        assert_eq!(tw("=rwx", F), F | 0o755);
        assert_eq!(tw("-w", F | 0o666), F | 0o466, "bits in the umask are not affected");
        // D / F restrict a clause.
        assert_eq!(tw("Dg+s,Fo-r", D | 0o755), D | 0o2755);
        assert_eq!(tw("Dg+s,Fo-r", F | 0o644), F | 0o640);
        assert_eq!(tw("Da+x,Fa-x", F | 0o755), F | 0o644);
        // X: execute only for directories and files executable by someone.
        assert_eq!(tw("a+X", F | 0o644), F | 0o644);
        assert_eq!(tw("a+X", F | 0o744), F | 0o755);
        assert_eq!(tw("a+X", D | 0o600), D | 0o711);
        // s / t.
        assert_eq!(tw("u+s", F | 0o755), F | 0o4755);
        assert_eq!(tw("g+s", F | 0o755), F | 0o2755);
        assert_eq!(tw("ug+s", F | 0o755), F | 0o6755);
        assert_eq!(tw("+t", D | 0o777), D | 0o1777);
        assert_eq!(tw("o+s", F | 0o755), F | 0o4755, "s without u/g means setuid");
        assert_eq!(tw("u-s", F | 0o4755), F | 0o755);
        // "=" keeps set-id bits unless the clause sets one.
        assert_eq!(tw("u=rwx", F | 0o4644), F | 0o4744);
        assert_eq!(tw("u=rwxs", F | 0o644), F | 0o4744);
        assert_eq!(tw("g=s", F | 0o2775), F | 0o2705);
        // Clauses apply in order.
        assert_eq!(tw("a-rwx,u+r", F | 0o777), F | 0o400);
    }

    #[test]
    fn chmod_octal_clauses() {
        assert_eq!(tw("644", F | 0o4777), F | 0o644);
        assert_eq!(tw("D755,F644", D | 0o700), D | 0o755);
        assert_eq!(tw("D755,F644", F | 0o700), F | 0o644);
        assert_eq!(tw("F2755", F | 0o600), F | 0o2755);
        assert_eq!(tw("0", F | 0o777), F);
        assert_eq!(tw("7777", F), F | 0o7777);
    }

    #[test]
    fn chmod_umask_is_injected() {
        let r = ChmodRules::parse(b"+rwx", 0o077).unwrap();
        assert_eq!(r.tweak(F), F | 0o700);
        let r = ChmodRules::parse(b"+rwx", 0).unwrap();
        assert_eq!(r.tweak(F), F | 0o777);
    }

    #[test]
    fn chmod_rejects_what_stock_rejects() {
        for bad in
            ["", ",", "u+x,", ",u+x", "u+x,,g+x", "u", "ug", "DF+x", "FD+x", "u+q", "u+x+w", "8", "u644", "77777", "64a", "+ r", "U+x"]
        {
            assert_eq!(ChmodRules::parse(bad.as_bytes(), 0o022), Err(ChmodError), "{bad:?}");
        }
        for good in ["u+", "a-", "D+X", "F644", "go=", "D0"] {
            assert!(ChmodRules::parse(good.as_bytes(), 0o022).is_ok(), "{good:?}");
        }
    }

    fn tree(p: &[u8]) -> Option<Node> {
        let t: &[(&str, Node)] = &[
            ("pub", Node::Dir),
            ("pub/sub", Node::Dir),
            ("pub/file", Node::Other),
            ("rel", Node::Symlink(b"pub/sub".to_vec())),
            ("up", Node::Symlink(b"../pub".to_vec())),
            ("abs", Node::Symlink(b"/pub/sub".to_vec())),
            ("pub/back", Node::Symlink(b"../pub".to_vec())),
            ("pub/flink", Node::Symlink(b"file".to_vec())),
            ("loop", Node::Symlink(b"loop".to_vec())),
            ("empty", Node::Symlink(Vec::new())),
            ("escape", Node::Symlink(b"../../etc".to_vec())),
        ];
        t.iter().find(|(n, _)| n.as_bytes() == p).map(|(_, k)| k.clone())
    }

    #[test]
    fn resolve_dir_beneath_is_openat2_resolve_beneath() {
        let r = |p: &str| resolve_dir(p.as_bytes(), Confinement::Beneath, tree).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(r("pub/sub"), Ok("pub/sub".into()));
        assert_eq!(r("rel"), Ok("pub/sub".into()));
        assert_eq!(r("pub/back/sub"), Ok("pub/sub".into()));
        assert_eq!(r("./pub//sub/"), Ok("pub/sub".into()));
        assert_eq!(r("pub/sub/../.."), Ok("".into()));
        assert_eq!(r("abs"), Err(libc::EXDEV));
        assert_eq!(r("up"), Err(libc::EXDEV), "../ from the root escapes");
        assert_eq!(r("escape"), Err(libc::EXDEV));
        assert_eq!(r(".."), Err(libc::EXDEV));
        assert_eq!(r("pub/file"), Err(libc::ENOTDIR));
        assert_eq!(r("pub/flink"), Err(libc::ENOTDIR));
        assert_eq!(r("pub/missing"), Err(libc::ENOENT));
        assert_eq!(r("empty"), Err(libc::ENOENT));
        assert_eq!(r("loop"), Err(libc::ELOOP));
    }

    #[test]
    fn resolve_dir_in_root_is_a_walk_inside_chroot() {
        let r = |p: &str| resolve_dir(p.as_bytes(), Confinement::InRoot, tree).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(r("abs"), Ok("pub/sub".into()));
        assert_eq!(r("up"), Ok("pub".into()), ".. stops at the root");
        assert_eq!(r("../../pub"), Ok("pub".into()));
        assert_eq!(r("escape"), Err(libc::ENOENT), "../../etc is <root>/etc");
        assert_eq!(r("rel"), Ok("pub/sub".into()));
        assert_eq!(r("loop"), Err(libc::ELOOP));
    }
}
