//! Prometheus metrics: process-wide counters, the text exposition format,
//! and a minimal HTTP/1.0 endpoint on its own address.
//!
//! Counters are incremented where the daemon already logs the event (the
//! stock log lines of [`crate::logging`], the refusals in the session code,
//! the accept loop); gauges about the modules' snapshots and the file-list
//! cache are read from the served state when a scrape arrives. Nothing here
//! is enabled unless `metrics address` (or `--metrics-address`) is set: the
//! counters still count (a few atomic operations per session), but no
//! socket is opened.
//!
//! Label values come from the configuration (module names), listener ports
//! and fixed reason names, never from what a client sends, so a client
//! cannot grow the number of series.
//!
//! The endpoint answers `GET /metrics` (and `HEAD`) only. It reads at most
//! [`MAX_REQUEST`] bytes of request head within [`READ_TIMEOUT`], serves at
//! most [`MAX_CONNECTIONS`] scrapes at once (more are closed at once), and
//! runs on threads of its own, so a slow or hostile scraper cannot hold up
//! the daemon.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use filelist_cache::{PublishEvent, RefreshKind};

use crate::module::ServerState;

/// Whether a family is a counter or a gauge (the `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One metric family with labels: values by label values.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl Family {
    const fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
        Family { name, help, kind: Kind::Counter, labels, values: Mutex::new(BTreeMap::new()) }
    }

    fn add(&self, label_values: &[&str], n: u64) {
        debug_assert_eq!(label_values.len(), self.labels.len());
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        let mut g = self.values.lock().unwrap_or_else(|p| p.into_inner());
        let v = g.entry(key).or_insert(0);
        *v = v.saturating_add(n);
    }

    fn inc(&self, label_values: &[&str]) {
        self.add(label_values, 1);
    }

    fn get(&self, label_values: &[&str]) -> u64 {
        let key: Vec<String> = label_values.iter().map(|s| s.to_string()).collect();
        self.values.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied().unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let g = self.values.lock().unwrap_or_else(|p| p.into_inner());
        header(out, self.name, self.help, self.kind);
        for (lv, v) in g.iter() {
            sample(out, self.name, &self.labels.iter().copied().zip(lv.iter().map(String::as_str)).collect::<Vec<_>>(), *v as f64);
        }
    }
}

static CONNECTIONS: Family = Family::new("rsyncd_connections_total", "TCP connections accepted, by listener port.", &["listener"]);
static MODULE_CONNECTIONS: Family = Family::new(
    "rsyncd_module_connections_total",
    "Connections admitted to a module (host rules, max connections and authentication passed), by module and listener port.",
    &["module", "listener"],
);
static LIST_REQUESTS: Family = Family::new("rsyncd_list_requests_total", "Module-list requests, by listener port.", &["listener"]);
static REFUSALS: Family = Family::new(
    "rsyncd_refusals_total",
    "Connections or requests turned away, by reason (see docs/operations.md) and module (empty when none was chosen).",
    &["reason", "module"],
);
static AUTH_FAILURES: Family = Family::new("rsyncd_auth_failures_total", "Failed logins, by module.", &["module"]);
static TRANSFERS: Family =
    Family::new("rsyncd_transfers_total", "Transfers that reached their end-of-transfer statistics, by module.", &["module"]);
static NULL_SYNCS: Family = Family::new(
    "rsyncd_null_syncs_total",
    "Completed transfers that sent no file data (the client was already up to date, or --dry-run), by module.",
    &["module"],
);
static FILES_SENT: Family = Family::new("rsyncd_files_sent_total", "Files whose data was sent (whole or delta), by module.", &["module"]);
static TRANSFER_BYTES: Family = Family::new(
    "rsyncd_transfer_bytes_sent_total",
    "Bytes sent by completed transfers after the protocol setup (stock's \"sent N bytes\"), by module.",
    &["module"],
);
static BYTES_SENT: Family = Family::new(
    "rsyncd_bytes_sent_total",
    "Every byte written to clients (greetings, errors, lists, data), by listener port.",
    &["listener"],
);
static FLIST_CACHE: Family = Family::new(
    "rsyncd_flist_cache_lookups_total",
    "Lookups of the shared encoded file-list cache, by result (hit: the list was replayed).",
    &["result"],
);
static PUBLICATIONS: Family = Family::new(
    "rsyncd_snapshot_publications_total",
    "Snapshot generations published, by module and kind (incremental, rescan, compaction).",
    &["module", "kind"],
);
static RELOADS: Family = Family::new("rsyncd_config_reloads_total", "Configuration reloads (SIGHUP), by result.", &["result"]);
static TRIGGERS: Family = Family::new(
    "rsyncd_triggers_total",
    "Change-trigger deliveries, by module, action (exec, url) and result (ok, failed: after the last retry).",
    &["module", "action", "result"],
);

/// Why a client was turned away (the `reason` label of `rsyncd_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `hosts allow` / `hosts deny`.
    HostDenied,
    /// Authentication failed (any reason).
    AuthFailed,
    /// The module's `max connections` is reached.
    MaxConnections,
    /// The module's `lock file` cannot be opened.
    LockFile,
    /// A listener's `max sessions` / `max sessions per host` is reached.
    MaxSessions,
    /// The client asked for a module this listener does not serve.
    UnknownModule,
    /// An option the module refuses (`refuse options`, or one we never serve).
    RefusedOption,
    /// Arguments that do not parse.
    BadArguments,
    /// A push to a read-only module.
    ReadOnly,
    /// A pull from a `write only` module.
    WriteOnly,
    /// `pre-xfer exec` or `early exec` failed.
    HookFailed,
    /// A PROXY header from a peer not in `proxy protocol hosts`.
    ProxyUntrusted,
    /// The module's tree cannot be opened (stock's `chdir failed`).
    ChdirFailed,
}

impl Refusal {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::HostDenied => "host_denied",
            Refusal::AuthFailed => "auth_failed",
            Refusal::MaxConnections => "max_connections",
            Refusal::LockFile => "lock_file",
            Refusal::MaxSessions => "max_sessions",
            Refusal::UnknownModule => "unknown_module",
            Refusal::RefusedOption => "refused_option",
            Refusal::BadArguments => "bad_arguments",
            Refusal::ReadOnly => "read_only",
            Refusal::WriteOnly => "write_only",
            Refusal::HookFailed => "hook_failed",
            Refusal::ProxyUntrusted => "proxy_untrusted",
            Refusal::ChdirFailed => "chdir_failed",
        }
    }
}

/// Listener ports by listener index, for the `listener` label (the bound
/// ports: with `--port=0` the one the OS chose).
static LISTENER_PORTS: RwLock<Vec<u16>> = RwLock::new(Vec::new());

/// Records the ports the listeners are bound to, by listener index.
pub fn set_listener_ports(ports: Vec<u16>) {
    *LISTENER_PORTS.write().unwrap_or_else(|p| p.into_inner()) = ports;
}

/// The `listener` label of listener `index`: its bound port, else the index.
fn listener_label(index: usize) -> String {
    match LISTENER_PORTS.read().unwrap_or_else(|p| p.into_inner()).get(index) {
        Some(p) => p.to_string(),
        None => format!("#{index}"),
    }
}

/// A connection was accepted on listener `index`.
pub fn connection_accepted(index: usize) {
    CONNECTIONS.inc(&[&listener_label(index)]);
}

/// A client was admitted to `module` on listener `index`.
pub fn module_connection(module: &str, index: usize) {
    MODULE_CONNECTIONS.inc(&[module, &listener_label(index)]);
}

/// A module-list request on listener `index`.
pub fn list_request(index: usize) {
    LIST_REQUESTS.inc(&[&listener_label(index)]);
}

/// A client was turned away; `module` when one was chosen.
pub fn refused(why: Refusal, module: Option<&str>) {
    REFUSALS.inc(&[why.label(), module.unwrap_or("")]);
    if why == Refusal::AuthFailed {
        AUTH_FAILURES.inc(&[module.unwrap_or("")]);
    }
}

thread_local! {
    /// Files whose data the current session's transfer has sent (a session
    /// runs its transfer on one thread).
    static SESSION_FILES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A transfer starts on this thread (its arguments were accepted).
pub fn transfer_started() {
    SESSION_FILES.with(|c| c.set(0));
}

/// One file's data was sent for `module`.
pub fn file_sent(module: &str) {
    FILES_SENT.inc(&[module]);
    SESSION_FILES.with(|c| c.set(c.get() + 1));
}

/// A transfer of `module` reached its end-of-transfer statistics having
/// written `bytes` after the setup. It is a *null sync* when no file's data
/// was sent since [`transfer_started`] on this thread.
pub fn transfer_completed(module: &str, bytes: u64) {
    TRANSFERS.inc(&[module]);
    TRANSFER_BYTES.add(&[module], bytes);
    if SESSION_FILES.with(|c| c.get()) == 0 {
        NULL_SYNCS.inc(&[module]);
    }
}

/// A session on listener `index` ended having written `bytes` in all.
pub fn session_bytes(index: usize, bytes: u64) {
    BYTES_SENT.add(&[&listener_label(index)], bytes);
}

/// A lookup in the shared file-list cache.
pub fn flist_cache_lookup(hit: bool) {
    FLIST_CACHE.inc(&[if hit { "hit" } else { "miss" }]);
}

/// A configuration reload finished (`ok`) or was refused.
pub fn reload(ok: bool) {
    RELOADS.inc(&[if ok { "ok" } else { "failed" }]);
}

/// A change trigger of `module` was delivered (`ok`) or gave up.
pub fn trigger(module: &str, action: &str, ok: bool) {
    TRIGGERS.inc(&[module, action, if ok { "ok" } else { "failed" }]);
}

/// The value of a counter, for tests: `name` is the family's name.
pub fn counter_value(name: &str, label_values: &[&str]) -> Option<u64> {
    FAMILIES.iter().find(|f| f.name == name).map(|f| f.get(label_values))
}

/// Every counter family, in exposition order.
static FAMILIES: [&Family; 14] = [
    &CONNECTIONS,
    &MODULE_CONNECTIONS,
    &LIST_REQUESTS,
    &REFUSALS,
    &AUTH_FAILURES,
    &TRANSFERS,
    &NULL_SYNCS,
    &FILES_SENT,
    &TRANSFER_BYTES,
    &BYTES_SENT,
    &FLIST_CACHE,
    &PUBLICATIONS,
    &RELOADS,
    &TRIGGERS,
];

// ---------------------------------------------------------------------------
// Snapshot update latency
// ---------------------------------------------------------------------------

/// Upper bounds (seconds) of the update-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A Prometheus histogram (cumulative buckets are computed when rendered).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket of [`LATENCY_BUCKETS`] (not cumulative), plus
    /// the overflow bucket last.
    counts: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Records one observation of `secs` seconds.
    pub fn observe(&mut self, secs: f64) {
        let i = LATENCY_BUCKETS.iter().position(|&b| secs <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    fn render(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let mut cum = 0;
        let bucket = format!("{name}_bucket");
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += self.counts[i];
            let le = b.to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le));
            sample(out, &bucket, &l, cum as f64);
        }
        cum += self.counts[LATENCY_BUCKETS.len()];
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        sample(out, &bucket, &l, cum as f64);
        sample(out, &format!("{name}_sum"), labels, self.sum);
        sample(out, &format!("{name}_count"), labels, self.count as f64);
    }
}

const LATENCY_NAME: &str = "rsyncd_snapshot_update_latency_seconds";

/// Update latency by module: from the watcher reading a file-system event to
/// the publication of the generation that contains the change.
static LATENCY: Mutex<BTreeMap<String, Histogram>> = Mutex::new(BTreeMap::new());

/// Records a publication of `module`'s store (called from the store's
/// publication observer, see [`crate::reload::Backgrounds`]).
pub fn publication(module: &str, ev: &PublishEvent) {
    let kind = match ev.kind {
        RefreshKind::Incremental => "incremental",
        RefreshKind::FullRescan => "rescan",
        RefreshKind::Compaction => "compaction",
    };
    PUBLICATIONS.inc(&[module, kind]);
    if let Some(seen) = ev.event_seen {
        let secs = ev.current.published_at().saturating_duration_since(seen).as_secs_f64();
        LATENCY.lock().unwrap_or_else(|p| p.into_inner()).entry(module.to_string()).or_default().observe(secs);
    }
}

/// The update-latency histogram of `module`, for tests.
pub fn latency_histogram(module: &str) -> Option<Histogram> {
    LATENCY.lock().unwrap_or_else(|p| p.into_inner()).get(module).cloned()
}

// ---------------------------------------------------------------------------
// Exposition format
// ---------------------------------------------------------------------------

/// Escapes a label value (backslash, double quote, newline).
fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: Kind) {
    let _ = writeln!(out, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
    let _ = writeln!(out, "# TYPE {name} {}", kind.name());
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], v: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label(val, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
    out.push('\n');
}

fn gauge(out: &mut String, name: &str, help: &str, samples: &[(Vec<(&str, &str)>, f64)]) {
    header(out, name, help, Kind::Gauge);
    for (l, v) in samples {
        sample(out, name, l, *v);
    }
}

/// The whole exposition: every counter, then the gauges read from `state`
/// (the state new connections are served with) at `now`.
pub fn render(state: Option<&ServerState>, now: Instant) -> String {
    let mut out = String::with_capacity(8192);
    header(&mut out, "rsyncd_build_info", "Version of the running daemon (always 1).", Kind::Gauge);
    sample(&mut out, "rsyncd_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    for f in FAMILIES {
        f.render(&mut out);
    }
    {
        let g = LATENCY.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str(&format!(
            "# HELP {LATENCY_NAME} Seconds from the watcher reading a file-system event to the publication of the generation with the change, by module.\n# TYPE {LATENCY_NAME} histogram\n"
        ));
        for (m, h) in g.iter() {
            h.render(&mut out, LATENCY_NAME, &[("module", m)]);
        }
    }
    let Some(state) = state else { return out };
    // Per module (the last definition of a name on a listener wins, as for
    // sessions; a store serves one module name).
    let mut seen: Vec<&str> = Vec::new();
    let (mut generation, mut age, mut entries, mut overlay) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for m in state.modules.iter().rev() {
        let Some(store) = m.store.if_open() else { continue };
        if seen.contains(&m.name.as_str()) {
            continue;
        }
        seen.push(&m.name);
        let g = store.current();
        let l = vec![("module", m.name.as_str())];
        generation.push((l.clone(), g.number() as f64));
        age.push((l.clone(), now.saturating_duration_since(g.published_at()).as_secs_f64()));
        entries.push((l.clone(), g.len() as f64));
        overlay.push((l, g.overlay_len() as f64));
    }
    generation.reverse();
    age.reverse();
    entries.reverse();
    overlay.reverse();
    gauge(&mut out, "rsyncd_snapshot_generation", "Generation number of the snapshot new sessions are served, by module.", &generation);
    gauge(&mut out, "rsyncd_snapshot_age_seconds", "Seconds since that generation was published, by module.", &age);
    gauge(&mut out, "rsyncd_snapshot_entries", "Entries in that generation (root included), by module.", &entries);
    gauge(
        &mut out,
        "rsyncd_snapshot_overlay_records",
        "Records in that generation's overlay (folded into a new base file by compaction), by module.",
        &overlay,
    );
    let ports: Vec<String> = (0..state.listeners.len()).map(listener_label).collect();
    let active: Vec<(Vec<(&str, &str)>, f64)> =
        state.listeners.iter().zip(&ports).map(|(l, p)| (vec![("listener", p.as_str())], l.caps.active() as f64)).collect();
    gauge(&mut out, "rsyncd_sessions_active", "Sessions being served now, by listener port.", &active);
    let c = state.flist_cache.stats();
    gauge(&mut out, "rsyncd_flist_cache_entries", "Encoded file lists held by the shared cache.", &[(vec![], c.entries as f64)]);
    gauge(&mut out, "rsyncd_flist_cache_bytes", "Bytes held by the shared file-list cache.", &[(vec![], c.bytes as f64)]);
    out
}

// ---------------------------------------------------------------------------
// HTTP endpoint
// ---------------------------------------------------------------------------

/// Most bytes of request head read (request line and headers).
pub const MAX_REQUEST: usize = 8192;
/// How long a scraper may take to send its request, and to read the answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Most scrapes served at once; more connections are closed at once.
pub const MAX_CONNECTIONS: usize = 8;

/// What a request head asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (`head`: `HEAD /metrics`).
    Metrics {
        /// Only the headers are wanted.
        head: bool,
    },
    /// Another path.
    NotFound,
    /// Another method.
    BadMethod,
}

/// Why a request head cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// More bytes are needed (no blank line yet).
    #[error("incomplete request")]
    Incomplete,
    /// The request head is longer than [`MAX_REQUEST`].
    #[error("request head too long")]
    TooLong,
    /// Not an HTTP request line.
    #[error("malformed request")]
    Malformed,
}

/// Parses a request head from the bytes read so far. Pure: no IO.
pub fn parse_request(buf: &[u8]) -> Result<Request, RequestError> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").or_else(|| buf.windows(2).position(|w| w == b"\n\n"));
    if end.is_none() {
        return Err(if buf.len() >= MAX_REQUEST { RequestError::TooLong } else { RequestError::Incomplete });
    }
    let line_end = buf.iter().position(|&b| b == b'\n').ok_or(RequestError::Malformed)?;
    let line = buf[..line_end].strip_suffix(b"\r").unwrap_or(&buf[..line_end]);
    let line = std::str::from_utf8(line).map_err(|_| RequestError::Malformed)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(RequestError::Malformed);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(RequestError::Malformed);
    }
    let path = target.split('?').next().unwrap_or(target);
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Ok(Request::BadMethod),
    };
    if path != "/metrics" {
        return Ok(Request::NotFound);
    }
    Ok(Request::Metrics { head })
}

/// The full HTTP/1.0 response (status line, headers, body unless `head`).
pub fn response(status: &str, content_type: &str, body: &str, head: bool, extra: &str) -> Vec<u8> {
    let mut r =
        format!("HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n", body.len())
            .into_bytes();
    if !head {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

/// Where a scrape reads the served state from.
pub type StateSource = Arc<dyn Fn() -> Arc<ServerState> + Send + Sync>;

fn handle(mut s: TcpStream, source: &StateSource) {
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let _ = s.set_write_timeout(Some(READ_TIMEOUT));
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let req = loop {
        match parse_request(&buf) {
            Err(RequestError::Incomplete) => {}
            other => break other,
        }
        if Instant::now() >= deadline {
            return;
        }
        let want = (MAX_REQUEST - buf.len()).min(chunk.len());
        match s.read(&mut chunk[..want]) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    };
    let text = "text/plain; charset=utf-8";
    let reply = match req {
        Ok(Request::Metrics { head }) => {
            let state = source();
            let body = render(Some(&state), Instant::now());
            response("200 OK", "text/plain; version=0.0.4; charset=utf-8", &body, head, "")
        }
        Ok(Request::NotFound) => response("404 Not Found", text, "only /metrics is served here\n", false, ""),
        Ok(Request::BadMethod) => response("405 Method Not Allowed", text, "GET or HEAD only\n", false, "Allow: GET, HEAD\r\n"),
        Err(RequestError::TooLong) => response("431 Request Header Fields Too Large", text, "request too long\n", false, ""),
        Err(_) => response("400 Bad Request", text, "bad request\n", false, ""),
    };
    let _ = s.write_all(&reply);
    let _ = s.shutdown(std::net::Shutdown::Write);
    // Read (and drop) what the client still sends, briefly and bounded, so
    // that closing with unread input does not reset the connection before
    // the client has read the answer.
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// Binds the metrics endpoint on `addr` and serves it on threads of its
/// own for the life of the process; returns the bound address.
pub fn spawn_server(addr: SocketAddr, source: StateSource) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for conn in listener.incoming() {
            let s = match conn {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("metrics: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::AcqRel);
                continue; // dropped: closed at once
            }
            let (src, act) = (source.clone(), active.clone());
            let spawned = std::thread::Builder::new().name("metrics-req".into()).spawn(move || {
                handle(s, &src);
                act.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                active.fetch_sub(1, Ordering::AcqRel);
            }
        }
    })?;
    Ok(local)
}

/// Parses a `metrics address` value: `host:port`, `[v6]:port`, or a bare
/// port (loopback).
pub fn parse_address(v: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let v = v.trim();
    if let Ok(port) = v.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    v.to_socket_addrs()
        .map_err(|e| format!("metrics address \"{v}\": {e}"))?
        .next()
        .ok_or_else(|| format!("metrics address \"{v}\" resolves to nothing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads() {
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(Request::Metrics { head: false }));
        assert_eq!(parse_request(b"HEAD /metrics?x=1 HTTP/1.0\n\n"), Ok(Request::Metrics { head: true }));
        assert_eq!(parse_request(b"GET / HTTP/1.0\r\n\r\n"), Ok(Request::NotFound));
        assert_eq!(parse_request(b"POST /metrics HTTP/1.0\r\n\r\n"), Ok(Request::BadMethod));
        assert_eq!(parse_request(b"GET /metrics HTTP/1.0\r\n"), Err(RequestError::Incomplete));
        assert_eq!(parse_request(b"GET /metrics\r\n\r\n"), Err(RequestError::Malformed));
        assert_eq!(parse_request(b"\x16\x03\x01 x y\r\n\r\n"), Err(RequestError::Malformed));
        assert_eq!(parse_request(&vec![b'a'; MAX_REQUEST]), Err(RequestError::TooLong));
    }

    #[test]
    fn exposition_escapes_and_counts() {
        let m = "we\"ird\\mod\nx";
        refused(Refusal::AuthFailed, Some(m));
        refused(Refusal::AuthFailed, Some(m));
        let text = render(None, Instant::now());
        assert!(text.contains("rsyncd_refusals_total{reason=\"auth_failed\",module=\"we\\\"ird\\\\mod\\nx\"} 2\n"), "{text}");
        assert!(text.contains("rsyncd_auth_failures_total{module=\"we\\\"ird\\\\mod\\nx\"} 2\n"));
        assert!(text.contains("# TYPE rsyncd_refusals_total counter\n"));
        assert_eq!(counter_value("rsyncd_auth_failures_total", &[m]), Some(2));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(0.001);
        h.observe(0.3);
        h.observe(100.0);
        let mut out = String::new();
        h.render(&mut out, "x", &[("module", "m")]);
        assert!(out.contains("x_bucket{module=\"m\",le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{module=\"m\",le=\"0.25\"} 1\n"));
        assert!(out.contains("x_bucket{module=\"m\",le=\"0.5\"} 2\n"));
        assert!(out.contains("x_bucket{module=\"m\",le=\"30\"} 2\n"));
        assert!(out.contains("x_bucket{module=\"m\",le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count{module=\"m\"} 3\n"));
        assert!(out.contains("x_sum{module=\"m\"} 100.301\n"));
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address("9873"), Ok("127.0.0.1:9873".parse().unwrap()));
        assert_eq!(parse_address("[::1]:9"), Ok("[::1]:9".parse().unwrap()));
        assert_eq!(parse_address("0.0.0.0:9873"), Ok("0.0.0.0:9873".parse().unwrap()));
        assert!(parse_address("nonsense").is_err());
    }
}
