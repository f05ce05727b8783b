//! Change triggers (our extension): when a module's tree changed and then
//! stayed unchanged for `trigger quiet time` seconds, run `trigger exec`
//! and/or POST to `trigger url`, once for the whole burst of changes.
//!
//! The module stores report every publication (see
//! [`filelist_cache::SnapshotStore::observe`]); the observer only hands the
//! event to the trigger thread ([`Triggers`]), which works out which
//! top-level paths of the module changed (comparing the generation it saw
//! last with the new one, only where the store says it re-read something),
//! collects them until the tree has been quiet long enough, and then starts
//! the delivery on a thread of its own. A delivery is retried
//! `trigger retries` times with a doubling back-off ([`BACKOFF_BASE`]
//! first); a command is killed after [`EXEC_TIMEOUT`], an HTTP exchange
//! gives up after [`HTTP_TIMEOUT`] per step. Nothing here can block a
//! session or the store updates.
//!
//! What a delivery carries, for command and URL alike (see
//! docs/operations.md): the module name and path, the newest generation
//! number, and the changed top-level paths (`.` for the module root itself)
//! as a JSON document (the command's stdin, the POST body) and, for the
//! command, in `RSYNC_MODULE_NAME`, `RSYNC_MODULE_PATH`,
//! `RSYNC_TRIGGER_GENERATION` and `RSYNC_TRIGGER_PATHS`.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use filelist_cache::{EntryRef, Generation, PublishEvent, RefreshKind, Snapshot, Touched, WalkControl};

use crate::config::{Config, Module};

/// How long a `trigger exec` command may run before it is killed (with its
/// process group); a killed command counts as failed.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(300);
/// Timeout of each step of a `trigger url` POST (connect, send, answer).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before the first retry; each further retry waits twice as long, at
/// most [`BACKOFF_MAX`].
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between two attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Most changed paths a delivery lists (the rest is summarised by
/// `"truncated": true` / `RSYNC_TRIGGER_TRUNCATED=1`).
pub const MAX_PATHS: usize = 1000;
/// Most bytes of `RSYNC_TRIGGER_PATHS`.
pub const MAX_PATHS_ENV: usize = 64 * 1024;
/// The `path` standing for the module root itself (its own attributes).
pub const ROOT_PATH: &[u8] = b".";

/// A `trigger url`: plain HTTP only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// Host name or address (without brackets).
    pub host: String,
    /// Port (80 by default).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parses `http://host[:port][/path][?query]` (`[v6]` hosts allowed; no
    /// user info, no fragment).
    pub fn parse(s: &str) -> Result<HttpUrl, String> {
        let bad = |why: &str| format!("trigger url \"{s}\": {why}");
        let rest = match s.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("http://") => &s[7..],
            _ if s.len() >= 8 && s[..8].eq_ignore_ascii_case("https://") => {
                return Err(bad("https is not supported (post to a local relay)"))
            }
            _ => return Err(bad("not an http:// URL")),
        };
        if s.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces or control characters"));
        }
        let (authority, path) = match rest.find(['/', '?', '#']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if path.contains('#') {
            return Err(bad("a fragment is not allowed"));
        }
        let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
        if authority.contains('@') {
            return Err(bad("user info is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match &v6[end + 1..] {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (v6[..end].to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| bad("bad port"))?,
        };
        Ok(HttpUrl { host, port, path })
    }

    /// The `Host:` header value.
    fn host_header(&self) -> String {
        let h = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == 80 {
            h
        } else {
            format!("{h}:{}", self.port)
        }
    }
}

/// One module's trigger settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerSpec {
    /// Module name.
    pub module: String,
    /// Module path.
    pub path: PathBuf,
    /// `trigger quiet time`.
    pub quiet: Duration,
    /// `trigger exec`, as written.
    pub exec: Option<Vec<u8>>,
    /// `trigger url`.
    pub url: Option<HttpUrl>,
    /// `trigger retries`.
    pub retries: u32,
}

impl TriggerSpec {
    /// The settings of `m`; `None` when it has neither `trigger exec` nor
    /// `trigger url`; an error for a `trigger url` that cannot be used.
    pub fn from_module(m: &Module) -> Result<Option<TriggerSpec>, String> {
        let exec = m.trigger_exec.as_ref().filter(|c| !c.trim().is_empty()).map(|c| c.as_bytes().to_vec());
        let url = m.trigger_url.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(HttpUrl::parse).transpose()?;
        if exec.is_none() && url.is_none() {
            return Ok(None);
        }
        Ok(Some(TriggerSpec {
            module: m.name.clone(),
            path: m.path.clone(),
            quiet: Duration::from_secs(u64::from(m.trigger_quiet_time)),
            exec,
            url,
            retries: m.trigger_retries,
        }))
    }
}

/// The trigger settings of every module of `config` that has some, by
/// module name (the last definition of a name wins).
pub fn specs(config: &Config) -> Result<HashMap<String, TriggerSpec>, String> {
    let mut out = HashMap::new();
    for m in &config.modules {
        match TriggerSpec::from_module(m).map_err(|e| format!("module '{}': {e}", m.name))? {
            Some(s) => {
                out.insert(m.name.clone(), s);
            }
            None => {
                out.remove(&m.name);
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// What changed
// ---------------------------------------------------------------------------

/// Whether two entries have the same attributes (everything a transfer
/// could see, and the change time).
fn same_entry(a: &EntryRef<'_>, b: &EntryRef<'_>) -> bool {
    a.mode() == b.mode()
        && a.size() == b.size()
        && a.mtime() == b.mtime()
        && a.mtime_nsec() == b.mtime_nsec()
        && a.ctime() == b.ctime()
        && a.ctime_nsec() == b.ctime_nsec()
        && a.uid() == b.uid()
        && a.gid() == b.gid()
        && a.ino() == b.ino()
        && a.nlink() == b.nlink()
        && a.rdev_major() == b.rdev_major()
        && a.rdev_minor() == b.rdev_minor()
        && a.unreadable() == b.unreadable()
        && a.link_target() == b.link_target()
}

fn hash_entry(h: &mut impl Hasher, e: &EntryRef<'_>) {
    (e.mode(), e.size(), e.mtime(), e.mtime_nsec(), e.ctime(), e.ctime_nsec()).hash(h);
    (e.uid(), e.gid(), e.ino(), e.nlink(), e.rdev_major(), e.rdev_minor(), e.unreadable()).hash(h);
    e.link_target().hash(h);
}

/// A digest of the whole subtree below `dir` (paths and attributes in walk
/// order).
fn subtree_digest(snap: &Snapshot, dir: EntryRef<'_>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash_entry(&mut h, &dir);
    if dir.is_dir() {
        snap.walk(dir, &mut |path, e| {
            path.hash(&mut h);
            hash_entry(&mut h, &e);
            WalkControl::Continue
        });
    }
    h.finish()
}

/// Whether the subtree at `path` differs between the two views.
fn subtree_differs(prev: &Snapshot, cur: &Snapshot, path: &[u8]) -> bool {
    match (prev.lookup(path), cur.lookup(path)) {
        (None, None) => false,
        (Some(a), Some(b)) => !same_entry(&a, &b) || subtree_digest(prev, a) != subtree_digest(cur, b),
        _ => true,
    }
}

/// Whether the directory at `path` (its own attributes and its children's
/// names and attributes) differs between the two views.
fn listing_differs(prev: &Snapshot, cur: &Snapshot, path: &[u8]) -> bool {
    match (prev.lookup(path), cur.lookup(path)) {
        (None, None) => false,
        (Some(a), Some(b)) => {
            if !same_entry(&a, &b) || a.is_dir() != b.is_dir() {
                return true;
            }
            if !a.is_dir() {
                return false;
            }
            let (mut x, mut y) = (a.children(), b.children());
            loop {
                match (x.next(), y.next()) {
                    (None, None) => return false,
                    (Some(c), Some(d)) if c.name() == d.name() && same_entry(&c, &d) => {}
                    _ => return true,
                }
            }
        }
        _ => true,
    }
}

fn top_of(path: &[u8]) -> &[u8] {
    path.split(|&b| b == b'/').next().unwrap_or(path)
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The top-level names of the module root that differ between `prev` and
/// `cur`, plus [`ROOT_PATH`] when only the root's own attributes changed.
/// `touched` says where to look (`None`: anywhere); it is a superset of
/// the places that changed, so every hinted place is compared, not taken
/// on trust.
pub fn changed_top_level(prev: &Snapshot, cur: &Snapshot, touched: Option<&[Touched]>) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let root_level = |out: &mut BTreeSet<Vec<u8>>, deep: bool| {
        let names: BTreeSet<Vec<u8>> = prev.root().children().chain(cur.root().children()).map(|c| c.name().to_vec()).collect();
        for n in names {
            let differs = match (prev.root().child(&n), cur.root().child(&n)) {
                (Some(a), Some(b)) => !same_entry(&a, &b) || (deep && a.is_dir() && subtree_digest(prev, a) != subtree_digest(cur, b)),
                _ => true,
            };
            if differs {
                out.insert(n);
            }
        }
    };
    match touched {
        None => root_level(&mut out, true),
        Some(hints) => {
            let mut done: BTreeSet<Vec<u8>> = BTreeSet::new();
            for t in hints {
                match t {
                    Touched::Dir(p) if p.is_empty() => root_level(&mut out, false),
                    Touched::Subtree(p) if p.is_empty() => root_level(&mut out, true),
                    Touched::Entry { dir, name } if dir.is_empty() => {
                        if listing_differs(prev, cur, name) {
                            out.insert(name.clone());
                        }
                    }
                    Touched::Dir(p) => {
                        let top = top_of(p);
                        if !done.contains(top) && listing_differs(prev, cur, p) {
                            out.insert(top.to_vec());
                        }
                    }
                    Touched::Subtree(p) => {
                        let top = top_of(p);
                        if !done.contains(top) && subtree_differs(prev, cur, p) {
                            out.insert(top.to_vec());
                        }
                    }
                    Touched::Entry { dir, name } => {
                        let top = top_of(dir);
                        if !done.contains(top) && listing_differs(prev, cur, &join(dir, name)) {
                            out.insert(top.to_vec());
                        }
                    }
                }
                done.clone_from(&out);
            }
        }
    }
    if out.is_empty() && !same_entry(&prev.root(), &cur.root()) {
        out.insert(ROOT_PATH.to_vec());
    }
    out
}

// ---------------------------------------------------------------------------
// Deliveries
// ---------------------------------------------------------------------------

/// One delivery: what changed in a module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The newest generation of the burst.
    pub generation: u64,
    /// Changed top-level paths (at most [`MAX_PATHS`]), sorted.
    pub paths: Vec<Vec<u8>>,
    /// More paths changed than are listed.
    pub truncated: bool,
}

fn json_string(out: &mut String, b: &[u8]) {
    out.push('"');
    for c in String::from_utf8_lossy(b).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The JSON document of a delivery (POST body, the command's stdin):
/// `{"module":..,"path":..,"generation":N,"paths":[..],"truncated":bool}`.
/// Names that are not UTF-8 have their invalid bytes replaced by U+FFFD.
pub fn json_body(spec: &TriggerSpec, c: &Change) -> String {
    let mut s = String::from("{\"module\":");
    json_string(&mut s, spec.module.as_bytes());
    s.push_str(",\"path\":");
    json_string(&mut s, spec.path.as_os_str().as_encoded_bytes());
    s.push_str(&format!(",\"generation\":{},\"paths\":[", c.generation));
    for (i, p) in c.paths.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        json_string(&mut s, p);
    }
    s.push_str(&format!("],\"truncated\":{}}}", c.truncated));
    s
}

/// `RSYNC_TRIGGER_PATHS`: one path per line, `\` and newline written as
/// `\\` and `\n`; cut (whole lines) at [`MAX_PATHS_ENV`] bytes. Returns the
/// value and whether it was cut.
pub fn paths_env(paths: &[Vec<u8>]) -> (Vec<u8>, bool) {
    let mut v = Vec::new();
    for p in paths {
        let mut line = Vec::with_capacity(p.len() + 1);
        for &b in p {
            match b {
                b'\\' => line.extend_from_slice(b"\\\\"),
                b'\n' => line.extend_from_slice(b"\\n"),
                b => line.push(b),
            }
        }
        if v.len() + line.len() + 1 > MAX_PATHS_ENV {
            return (v, true);
        }
        v.extend_from_slice(&line);
        v.push(b'\n');
    }
    (v, false)
}

/// The back-off before retry `n` (0 for the first retry).
pub fn backoff(base: Duration, n: u32) -> Duration {
    base.saturating_mul(1u32.checked_shl(n.min(20)).unwrap_or(u32::MAX)).min(BACKOFF_MAX)
}

/// POSTs `body` to `url`; returns the HTTP status code. Each step (connect,
/// write, read the status line) is bounded by `timeout`.
pub fn http_post(url: &HttpUrl, body: &[u8], timeout: Duration) -> Result<u16, String> {
    let addrs: Vec<_> = (url.host.as_str(), url.port).to_socket_addrs().map_err(|e| format!("resolving {}: {e}", url.host))?.collect();
    let mut last = format!("{} resolves to nothing", url.host);
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connecting to {a}: {e}"),
        }
    }
    let mut s = stream.ok_or(last)?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let head = format!(
        "POST {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: rsyncd/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|()| s.write_all(body)).map_err(|e| format!("sending: {e}"))?;
    // The status line only (bounded); the rest is not needed.
    let mut line = Vec::with_capacity(64);
    let mut b = [0u8; 256];
    while !line.contains(&b'\n') && line.len() < 1024 {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(n) => line.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&line);
    let status = text.lines().next().unwrap_or("");
    let mut w = status.split_whitespace();
    match (w.next(), w.next().and_then(|c| c.parse::<u16>().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ => Err(format!("not an HTTP answer: {:?}", status.chars().take(80).collect::<String>())),
    }
}

/// Runs `attempt` up to `1 + retries` times, sleeping [`backoff`] between
/// attempts; true when one succeeded.
fn with_retries(what: &str, module: &str, retries: u32, base: Duration, mut attempt: impl FnMut() -> Result<(), String>) -> bool {
    for n in 0..=retries {
        match attempt() {
            Ok(()) => {
                tracing::info!(module = %module, attempt = n + 1, "trigger {what} delivered");
                return true;
            }
            Err(e) if n < retries => {
                let wait = backoff(base, n);
                tracing::warn!(module = %module, attempt = n + 1, "trigger {what} failed: {e}; retrying in {} ms", wait.as_millis());
                std::thread::sleep(wait);
            }
            Err(e) => tracing::warn!(module = %module, attempts = n + 1, "trigger {what} failed: {e}; giving up"),
        }
    }
    false
}

/// Delivers `change` of `spec`'s module: the command, then the POST (each
/// with its retries). Blocks; run it on a thread of its own.
pub fn deliver(spec: &TriggerSpec, change: &Change, base: Duration) {
    let body = json_body(spec, change);
    if let Some(cmd) = &spec.exec {
        let (paths, cut) = paths_env(&change.paths);
        let mut env: Vec<(Vec<u8>, Vec<u8>)> = vec![
            (b"RSYNC_MODULE_NAME".to_vec(), spec.module.as_bytes().to_vec()),
            (b"RSYNC_MODULE_PATH".to_vec(), spec.path.as_os_str().as_encoded_bytes().to_vec()),
            (b"RSYNC_TRIGGER_GENERATION".to_vec(), change.generation.to_string().into_bytes()),
            (b"RSYNC_TRIGGER_PATHS".to_vec(), paths),
        ];
        if cut || change.truncated {
            env.push((b"RSYNC_TRIGGER_TRUNCATED".to_vec(), b"1".to_vec()));
        }
        let ok = with_retries("exec", &spec.module, spec.retries, base, || {
            let o = crate::exec::run_hook(cmd, &env, body.as_bytes(), true, EXEC_TIMEOUT);
            match (&o.error, o.timed_out) {
                (Some(e), _) => Err(format!("cannot run the shell: {e}")),
                (None, true) => Err(format!("killed after {} s", EXEC_TIMEOUT.as_secs())),
                (None, false) if o.ok() => Ok(()),
                (None, false) => Err(format!(
                    "exit status {}{}",
                    o.status >> 8,
                    if o.output.is_empty() { String::new() } else { format!(": {}", String::from_utf8_lossy(&o.output).trim_end()) }
                )),
            }
        });
        crate::metrics::trigger(&spec.module, "exec", ok);
    }
    if let Some(url) = &spec.url {
        let ok = with_retries("url", &spec.module, spec.retries, base, || match http_post(url, body.as_bytes(), HTTP_TIMEOUT) {
            Ok(code) if (200..300).contains(&code) => Ok(()),
            Ok(code) => Err(format!("HTTP status {code}")),
            Err(e) => Err(e),
        });
        crate::metrics::trigger(&spec.module, "url", ok);
    }
}

// ---------------------------------------------------------------------------
// The trigger thread
// ---------------------------------------------------------------------------

enum Msg {
    /// The generation a module's observer started from.
    Baseline(String, Arc<Generation>),
    /// A publication of a module's store.
    Published(String, PublishEvent),
}

/// Per module: the generation last compared and the changes not delivered yet.
struct Track {
    last: Arc<Generation>,
    changed: BTreeSet<Vec<u8>>,
    /// When the last change was seen (the quiet time runs from here).
    last_change: Option<Instant>,
    generation: u64,
    /// Deliveries of this module still running.
    in_flight: Arc<AtomicUsize>,
}

/// The change triggers of the daemon: one thread that follows every
/// module's publications and starts deliveries.
pub struct Triggers {
    tx: Mutex<mpsc::Sender<Msg>>,
    specs: Arc<Mutex<HashMap<String, TriggerSpec>>>,
}

impl std::fmt::Debug for Triggers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Triggers").finish_non_exhaustive()
    }
}

impl Triggers {
    /// Starts the trigger thread with the settings of `config`; `base` is
    /// the first retry's back-off ([`BACKOFF_BASE`] in the daemon).
    pub fn start(config: &Config, base: Duration) -> Result<Arc<Triggers>, String> {
        let specs = Arc::new(Mutex::new(specs(config)?));
        let (tx, rx) = mpsc::channel();
        let s2 = specs.clone();
        std::thread::Builder::new()
            .name("triggers".into())
            .spawn(move || run(rx, s2, base))
            .map_err(|e| format!("cannot start the trigger thread: {e}"))?;
        Ok(Arc::new(Triggers { tx: Mutex::new(tx), specs }))
    }

    /// Replaces the settings (a reload); changes already collected are
    /// delivered with the new settings.
    pub fn configure(&self, config: &Config) -> Result<(), String> {
        let new = specs(config)?;
        *self.specs.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// The generation `module`'s observer starts from.
    pub fn baseline(&self, module: &str, g: Arc<Generation>) {
        let _ = self.tx.lock().unwrap_or_else(|p| p.into_inner()).send(Msg::Baseline(module.to_string(), g));
    }

    /// A publication of `module`'s store (called from its observer: only
    /// queues the event).
    pub fn published(&self, module: &str, ev: &PublishEvent) {
        let _ = self.tx.lock().unwrap_or_else(|p| p.into_inner()).send(Msg::Published(module.to_string(), ev.clone()));
    }
}

fn run(rx: mpsc::Receiver<Msg>, specs: Arc<Mutex<HashMap<String, TriggerSpec>>>, base: Duration) {
    let mut tracks: HashMap<String, Track> = HashMap::new();
    loop {
        // Sleep until the earliest quiet period ends (or a second, to re-check
        // modules held back by a delivery still running).
        let now = Instant::now();
        let wait = {
            let sp = specs.lock().unwrap_or_else(|p| p.into_inner());
            tracks
                .iter()
                .filter_map(|(m, t)| Some(t.last_change? + sp.get(m)?.quiet))
                .map(|due| due.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_secs(3600))
                .min(Duration::from_secs(1))
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::Baseline(m, g)) => {
                tracks.insert(
                    m,
                    Track { last: g, changed: BTreeSet::new(), last_change: None, generation: 0, in_flight: Arc::new(AtomicUsize::new(0)) },
                );
            }
            Ok(Msg::Published(m, ev)) => {
                let enabled = specs.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&m);
                let Some(t) = tracks.get_mut(&m) else { continue };
                if enabled && ev.kind != RefreshKind::Compaction {
                    let changed = changed_top_level(&t.last, &ev.current, ev.touched.as_deref());
                    if !changed.is_empty() {
                        t.changed.extend(changed);
                        t.last_change = Some(Instant::now());
                        t.generation = ev.generation;
                    }
                } else if !enabled {
                    t.changed.clear();
                    t.last_change = None;
                }
                t.last = ev.current;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Start the deliveries whose quiet time is over.
        let now = Instant::now();
        let sp = specs.lock().unwrap_or_else(|p| p.into_inner());
        for (m, t) in tracks.iter_mut() {
            let Some(since) = t.last_change else { continue };
            let Some(spec) = sp.get(m) else {
                t.changed.clear();
                t.last_change = None;
                continue;
            };
            if now < since + spec.quiet || t.in_flight.load(Ordering::Acquire) > 0 {
                continue;
            }
            let all = std::mem::take(&mut t.changed);
            t.last_change = None;
            let truncated = all.len() > MAX_PATHS;
            let change = Change { generation: t.generation, paths: all.into_iter().take(MAX_PATHS).collect(), truncated };
            tracing::info!(module = %m, generation = change.generation, paths = change.paths.len(), "tree quiet: firing change trigger");
            let spec = spec.clone();
            let flight = t.in_flight.clone();
            flight.fetch_add(1, Ordering::AcqRel);
            let spawned = std::thread::Builder::new().name(format!("trigger-{m}")).spawn({
                let flight = flight.clone();
                move || {
                    deliver(&spec, &change, base);
                    flight.fetch_sub(1, Ordering::AcqRel);
                }
            });
            if let Err(e) = spawned {
                flight.fetch_sub(1, Ordering::AcqRel);
                tracing::warn!(module = %m, "cannot start a trigger thread: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://example.org/hook?m=1").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("example.org", 80, "/hook?m=1"));
        assert_eq!(u.host_header(), "example.org");
        let u = HttpUrl::parse("HTTP://[::1]:8080").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 8080, "/"));
        assert_eq!(u.host_header(), "[::1]:8080");
        let u = HttpUrl::parse("http://127.0.0.1:9?x").unwrap();
        assert_eq!(u.path, "/?x");
        for bad in ["https://x/", "ftp://x", "http://", "http://u@x/", "http://x:0/", "http://x:99999/", "http://x/a b", "http://x/#f"] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn specs_from_config() {
        let c = crate::config::parse_str(
            "[a]\npath = /a\ntrigger exec = echo hi\n[b]\npath = /b\n[c]\npath = /c\ntrigger url = http://h:81/x\ntrigger quiet time = 5\ntrigger retries = 0\n",
            std::path::Path::new("t"),
        )
        .unwrap();
        let s = specs(&c).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s["a"].quiet, Duration::from_secs(30), "default quiet time");
        assert_eq!(s["a"].retries, 3, "default retries");
        assert_eq!(s["a"].exec.as_deref(), Some(&b"echo hi"[..]));
        assert_eq!(s["c"].quiet, Duration::from_secs(5));
        assert_eq!(s["c"].retries, 0);
        assert_eq!(s["c"].url.as_ref().unwrap().port, 81);
        let bad = crate::config::parse_str("[a]\npath = /a\ntrigger url = https://x/\n", std::path::Path::new("t")).unwrap();
        assert!(specs(&bad).unwrap_err().contains("module 'a'"));
    }

    #[test]
    fn json_and_env() {
        let spec = TriggerSpec { module: "m\"x".into(), path: "/srv/m".into(), quiet: Duration::ZERO, exec: None, url: None, retries: 0 };
        let c = Change { generation: 7, paths: vec![b"a\nb".to_vec(), b"\xffz".to_vec(), b"c\\d".to_vec()], truncated: false };
        assert_eq!(
            json_body(&spec, &c),
            "{\"module\":\"m\\\"x\",\"path\":\"/srv/m\",\"generation\":7,\"paths\":[\"a\\u000ab\",\"\u{fffd}z\",\"c\\\\d\"],\"truncated\":false}"
        );
        assert_eq!(paths_env(&c.paths), (b"a\\nb\n\xffz\nc\\\\d\n".to_vec(), false));
        let many: Vec<Vec<u8>> = (0..20_000).map(|i| format!("name-{i}").into_bytes()).collect();
        let (v, cut) = paths_env(&many);
        assert!(cut && v.len() <= MAX_PATHS_ENV && v.ends_with(b"\n"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 0), Duration::from_millis(100));
        assert_eq!(backoff(b, 3), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), BACKOFF_MAX);
    }

    /// A store over a temp tree, refreshed by hand.
    fn store(root: &std::path::Path, state: &std::path::Path) -> filelist_cache::SnapshotStore {
        let opts = filelist_cache::StoreOptions { watch: false, persist_after: None, ..Default::default() };
        filelist_cache::SnapshotStore::open_or_build_with(root, state, "m", opts).unwrap().0
    }

    #[test]
    fn changed_paths_follow_the_hints_and_the_trees() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("r");
        fs::create_dir_all(root.join("a/deep/er")).unwrap();
        fs::create_dir_all(root.join("b")).unwrap();
        fs::write(root.join("a/deep/er/f"), b"1").unwrap();
        fs::write(root.join("top"), b"1").unwrap();
        let st = store(&root, &t.path().join("s"));
        let events = Arc::new(Mutex::new(Vec::new()));
        let e2 = events.clone();
        let mut prev = st.observe(Box::new(move |ev| e2.lock().unwrap().push(ev.clone())));
        let mut step = |f: &dyn Fn()| -> BTreeSet<Vec<u8>> {
            f();
            let evs: Vec<PublishEvent> = std::mem::take(&mut *events.lock().unwrap());
            let mut out = BTreeSet::new();
            for ev in evs {
                out.extend(changed_top_level(&prev, &ev.current, ev.touched.as_deref()));
                prev = ev.current;
            }
            out
        };
        let set = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<BTreeSet<_>>();
        // A deep content change, seen through the refresh of its directory.
        let got = step(&|| {
            fs::write(root.join("a/deep/er/f"), b"22").unwrap();
            st.refresh(&[b"a/deep/er"]).unwrap();
        });
        assert_eq!(got, set(&["a"]));
        // A new top-level file, and a removed directory: the root listing.
        let got = step(&|| {
            fs::write(root.join("new"), b"n").unwrap();
            fs::remove_dir(root.join("b")).unwrap();
            st.refresh(&[b""]).unwrap();
        });
        assert_eq!(got, set(&["b", "new"]));
        // A hint with nothing behind it (and one real change) reports only the change.
        let got = step(&|| {
            fs::write(root.join("top"), b"changed").unwrap();
            st.refresh(&[b"a", b""]).unwrap();
        });
        assert_eq!(got, set(&["top"]));
        // A full rescan compares everything.
        let got = step(&|| {
            fs::write(root.join("a/deep/er/g"), b"g").unwrap();
            fs::write(root.join("new"), b"nn").unwrap();
            st.rescan().unwrap();
        });
        assert_eq!(got, set(&["a", "new"]));
        // Only the root's own attributes.
        let got = step(&|| {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&root, fs::Permissions::from_mode(0o750)).unwrap();
            st.rescan().unwrap();
        });
        assert_eq!(got, set(&["."]));
        // A compaction changes nothing.
        let got = step(&|| {
            st.compact().unwrap();
        });
        assert!(got.is_empty());
    }
}
