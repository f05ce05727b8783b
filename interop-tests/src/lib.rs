//! Differential interop harness: the stock `rsync` client against the stock
//! daemon (`rsync --daemon`) and against ours, with the same `rsyncd.conf`,
//! comparing exit codes, destination trees and normalised client output.
//!
//! - [`stock`]: is a usable stock rsync installed ([`rsync_available`])?
//! - [`daemon`]: [`Daemon::start`] for [`Which::Stock`] or [`Which::Ours`].
//! - [`client`]: [`run_client`] with a deadline.
//! - [`compare`]: [`snapshot_tree`] / [`diff_trees`].
//! - [`normalise`]: masking ports, temp paths, timings and rates.
//! - [`tree`]: deterministic fixture trees.
//! - [`differential`]: one [`Case`] against both daemons.
//!
//! Which daemon is the second side is decided by [`second_side`] (see there for
//! `INTEROP_SECOND`, `INTEROP_OURS` and `INTEROP_SELFTEST`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub mod client;
pub mod compare;
pub mod daemon;
pub mod hostile_client;
pub mod normalise;
pub mod stock;
pub mod tree;

pub use client::{run_client, run_client_input, run_client_timeout, RunResult, CLIENT_TIMEOUT};
pub use compare::{diff_trees, diff_trees_with, snapshot_tree, DiffOptions, TreeSnapshot};
pub use daemon::{ours_binary, second_side, Daemon, ModuleSpec, Which};
pub use normalise::{normalise, NormaliseCtx, StatsCompare};
pub use stock::rsync_available;

/// Returns from the calling test (a skip) when stock rsync is unavailable
/// (and fails it under `CI`; see [`rsync_available`]).
#[macro_export]
macro_rules! require_rsync {
    () => {
        if !$crate::rsync_available() {
            return;
        }
    };
}

/// Prepares a destination directory before the client runs.
pub type PrepareFn = Box<dyn Fn(&Path) + Send + Sync>;

/// One differential test case.
///
/// Placeholders in `args`: `{url}` is `rsync://127.0.0.1:PORT/<module>`,
/// `{root}` is `rsync://127.0.0.1:PORT/`, `{port}` the port, and `{dest}` the
/// side's destination directory (created empty with mode 0755 and mtime
/// [`DEST_MTIME`], then given to `prepare_dest`; a root mtime that the
/// preparation left "now-ish" is pinned back to [`DEST_MTIME`]).
/// `{%XX}` (two hex digits) stands for the raw byte `0xXX`, for arguments
/// that are not UTF-8.
pub struct Case {
    /// A name for messages and temp dirs.
    pub name: String,
    /// The modules both daemons serve (the same paths: serving is read-only).
    pub modules: Vec<ModuleSpec>,
    /// Extra global `key = value` config lines.
    pub global_extra: Vec<(String, String)>,
    /// The module `{url}` names; defaults to the first module's name.
    pub module: Option<String>,
    /// The client's arguments, with placeholders.
    pub args: Vec<String>,
    /// Fills `{dest}` before the run (e.g. an older copy, for delta transfers).
    pub prepare_dest: Option<PrepareFn>,
    /// When set, both runs must exit with this code.
    pub expect_code: Option<i32>,
    /// How `--stats` numbers are compared.
    pub stats: StatsCompare,
    /// Tree comparison options.
    pub diff: DiffOptions,
    /// Compare the destination trees (on by default).
    pub compare_tree: bool,
    /// The first daemon (stock unless a test says otherwise).
    pub first: Which,
    /// The second daemon; `None` means [`second_side`].
    pub second: Option<Which>,
    /// The client's deadline.
    pub timeout: Duration,
    /// Bytes fed to the client's stdin (for `--files-from=-`); `None`: closed.
    pub stdin: Option<Vec<u8>>,
    /// A client run against the same daemon before the compared one (same
    /// placeholders; it must exit 0), e.g. a first pull for a null-sync case.
    pub pre_args: Option<Vec<String>>,
    /// Compare stdout as a sorted list of lines: for runs whose output lines
    /// come from two client processes and interleave nondeterministically
    /// (`-i` before protocol 29: the receiver itemizes transferred files, the
    /// generator everything else).
    pub unordered_stdout: bool,
}

impl Case {
    /// A case named `name` serving `modules`, with default settings.
    pub fn new(name: &str, modules: Vec<ModuleSpec>) -> Case {
        Case {
            name: name.to_string(),
            modules,
            global_extra: Vec::new(),
            module: None,
            args: Vec::new(),
            prepare_dest: None,
            expect_code: None,
            stats: StatsCompare::default(),
            diff: DiffOptions::default(),
            compare_tree: true,
            first: Which::Stock,
            second: None,
            timeout: CLIENT_TIMEOUT,
            stdin: None,
            pre_args: None,
            unordered_stdout: false,
        }
    }

    /// Sets the client arguments.
    pub fn args(mut self, args: &[&str]) -> Case {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Sets the module `{url}` points at (it need not exist: error cases).
    pub fn module(mut self, name: &str) -> Case {
        self.module = Some(name.to_string());
        self
    }

    /// Adds a global config line.
    pub fn global(mut self, key: &str, value: &str) -> Case {
        self.global_extra.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets the destination preparation.
    pub fn prepare_dest(mut self, f: impl Fn(&Path) + Send + Sync + 'static) -> Case {
        self.prepare_dest = Some(Box::new(f));
        self
    }

    /// Requires both runs to exit with `code`.
    pub fn expect_code(mut self, code: i32) -> Case {
        self.expect_code = Some(code);
        self
    }

    /// Sets how `--stats` numbers compare.
    pub fn stats(mut self, s: StatsCompare) -> Case {
        self.stats = s;
        self
    }

    /// Sets the tree-diff options.
    pub fn diff_options(mut self, d: DiffOptions) -> Case {
        self.diff = d;
        self
    }

    /// Fixes both sides (instead of stock vs [`second_side`]).
    pub fn sides(mut self, first: Which, second: Which) -> Case {
        self.first = first;
        self.second = Some(second);
        self
    }

    /// Sets the client's deadline.
    pub fn timeout(mut self, t: Duration) -> Case {
        self.timeout = t;
        self
    }

    /// Feeds `input` to the client's stdin.
    pub fn stdin(mut self, input: &[u8]) -> Case {
        self.stdin = Some(input.to_vec());
        self
    }

    /// Compares stdout as sorted lines (see [`Case::unordered_stdout`]).
    pub fn unordered_stdout(mut self) -> Case {
        self.unordered_stdout = true;
        self
    }

    /// Runs the client with `args` against the same daemon first (must exit 0).
    pub fn pre_run(mut self, args: &[&str]) -> Case {
        self.pre_args = Some(args.iter().map(|s| s.to_string()).collect());
        self
    }
}

/// One side's run of a case.
#[derive(Debug, Clone)]
pub struct SideRun {
    /// Which daemon served it.
    pub which: Which,
    /// The expanded client arguments.
    pub args: Vec<String>,
    /// The raw client result.
    pub raw: RunResult,
    /// stdout after [`normalise`].
    pub stdout: String,
    /// stderr after [`normalise`].
    pub stderr: String,
    /// The destination tree afterwards.
    pub tree: TreeSnapshot,
    /// The daemon's log (for failure reports).
    pub daemon_log: String,
}

/// Both runs of a case and every mismatch found (empty: the sides agree).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The first side (normally stock).
    pub a: SideRun,
    /// The second side (ours, or stock in a self-test).
    pub b: SideRun,
    /// Readable mismatch descriptions.
    pub mismatches: Vec<String>,
}

impl Outcome {
    /// A full report for a failure message.
    pub fn report(&self, name: &str) -> String {
        let mut s = format!(
            "differential case {name:?}: {} mismatch(es)\n",
            self.mismatches.len()
        );
        for m in &self.mismatches {
            let _ = writeln!(s, "* {m}");
        }
        for side in [&self.a, &self.b] {
            let _ = writeln!(
                s,
                "--- {} run: rsync {:?}\n    exit {}\n    stdout:\n{}\n    stderr:\n{}\n    daemon log:\n{}",
                side.which.name(),
                side.args,
                side.raw.code,
                indent(&side.raw.stdout),
                indent(&side.raw.stderr),
                indent(&side.daemon_log)
            );
        }
        s
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("      | {l}\n")).collect()
}

/// The mtime the harness gives `{dest}` (2023-11-14T21:13:20Z) so that the
/// two sides' destination roots compare equal when rsync does not set it.
pub const DEST_MTIME: i64 = tree::BASE_MTIME - 3600;

/// Gives the destination root mode 0755 and [`DEST_MTIME`] unless its mtime
/// is already pinned (more than a day from now), as after a `prepare_dest` that
/// built a fixture tree into it.
fn pin_dest_root(dest: &Path) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(dest).expect("stat dest");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if (md.mtime() - now).abs() < 86_400 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o755)).expect("chmod dest");
        tree::set_mtime(dest, DEST_MTIME, 0);
    }
}

fn expand(args: &[String], daemon: &Daemon, module: &str, dest: &Path) -> Vec<std::ffi::OsString> {
    let dest = dest.to_str().expect("temp path is UTF-8");
    args.iter()
        .map(|a| {
            let s = a
                .replace("{url}", &daemon.url(module))
                .replace("{root}", &daemon.url(""))
                .replace("{port}", &daemon.port.to_string())
                .replace("{dest}", dest);
            std::os::unix::ffi::OsStringExt::from_vec(raw_bytes(&s))
        })
        .collect()
}

/// Replaces each `{%XX}` in `s` by the byte `0xXX`.
fn raw_bytes(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"{%") && b.len() >= i + 5 && b[i + 4] == b'}' {
            if let Some(v) = std::str::from_utf8(&b[i + 2..i + 4])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 5;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn run_side(case: &Case, which: Which, work: &Path, tmp: &Path) -> SideRun {
    std::fs::create_dir_all(work).expect("side work dir");
    let dest = work.join("dest");
    std::fs::create_dir(&dest).expect("dest dir");
    pin_dest_root(&dest);
    if let Some(prep) = &case.prepare_dest {
        prep(&dest);
        pin_dest_root(&dest);
    }
    let daemon = Daemon::start(which, &case.modules, &case.global_extra);
    let module = case
        .module
        .clone()
        .or_else(|| case.modules.first().map(|m| m.name.clone()))
        .unwrap_or_default();
    if let Some(pre) = &case.pre_args {
        let pre = expand(pre, &daemon, &module, &dest);
        let r = run_client_input(&pre, case.timeout, case.stdin.as_deref());
        assert!(
            r.code == 0,
            "case {:?}: the pre-run {pre:?} against {} failed: {r:?}\ndaemon log:\n{}",
            case.name,
            which.name(),
            daemon.log()
        );
    }
    let os_args = expand(&case.args, &daemon, &module, &dest);
    let raw = run_client_input(&os_args, case.timeout, case.stdin.as_deref());
    let args: Vec<String> = os_args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let tree = snapshot_tree(&dest);
    let ctx = NormaliseCtx {
        port: daemon.port,
        replace: vec![
            (work.display().to_string(), "<WORK>".to_string()),
            (tmp.display().to_string(), "<TMP>".to_string()),
            (
                daemon.state_dir().display().to_string(),
                "<STATE>".to_string(),
            ),
        ],
        stats: case.stats,
    };
    let stdout = normalise(&raw.stdout, &ctx);
    let stderr = normalise(&raw.stderr, &ctx);
    // Let the daemon's per-connection process finish logging before reading it.
    std::thread::sleep(Duration::from_millis(20));
    let daemon_log = daemon.log();
    drop(daemon);
    SideRun {
        which,
        args,
        raw,
        stdout,
        stderr,
        tree,
        daemon_log,
    }
}

/// Runs `case` against both daemons and lists every mismatch; does not panic
/// on mismatches (see [`differential`] for the asserting form).
pub fn compare_case(case: &Case) -> Outcome {
    let second = case.second.unwrap_or_else(second_side);
    let tmp = tempfile::Builder::new()
        .prefix(&format!("interop-case-{}-", sanitize(&case.name)))
        .tempdir()
        .expect("case temp dir");
    // Equal-length side directory names keep any width-dependent output equal.
    let a = run_side(case, case.first, &tmp.path().join("side-a"), tmp.path());
    let b = run_side(case, second, &tmp.path().join("side-b"), tmp.path());
    let mut mismatches = Vec::new();
    if a.raw.code != b.raw.code {
        mismatches.push(format!(
            "exit code: {}={} {}={}",
            a.which.name(),
            a.raw.code,
            b.which.name(),
            b.raw.code
        ));
    }
    if let Some(want) = case.expect_code {
        for side in [&a, &b] {
            if side.raw.code != want {
                mismatches.push(format!(
                    "{} exit code {} (expected {want})",
                    side.which.name(),
                    side.raw.code
                ));
            }
        }
    }
    for side in [&a, &b] {
        if side.raw.timed_out {
            mismatches.push(format!("{} run timed out", side.which.name()));
        }
    }
    if case.compare_tree {
        let d = diff_trees_with(&a.tree, &b.tree, case.diff);
        if !d.is_empty() {
            mismatches.push(format!(
                "destination trees differ (A={}, B={}):\n    {}",
                a.which.name(),
                b.which.name(),
                d.join("\n    ")
            ));
        }
    }
    let sorted = |s: &str| {
        let mut l: Vec<&str> = s.lines().collect();
        l.sort_unstable();
        l.join("\n")
    };
    let (out_a, out_b) = if case.unordered_stdout {
        (sorted(&a.stdout), sorted(&b.stdout))
    } else {
        (a.stdout.clone(), b.stdout.clone())
    };
    if let Some(d) = normalise::text_diff(&out_a, &out_b) {
        mismatches.push(format!(
            "normalised stdout differs (- {}, + {}):\n{d}",
            a.which.name(),
            b.which.name()
        ));
    }
    if let Some(d) = normalise::text_diff(&a.stderr, &b.stderr) {
        mismatches.push(format!(
            "normalised stderr differs (- {}, + {}):\n{d}",
            a.which.name(),
            b.which.name()
        ));
    }
    if std::env::var_os("INTEROP_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!(
            "INTEROP_KEEP: case {:?} left in {}",
            case.name,
            kept.display()
        );
    }
    Outcome { a, b, mismatches }
}

/// The main entry: runs `case` against the first daemon (stock) and the second
/// (ours by default; see [`second_side`]), asserts equal exit codes, equal
/// destination trees and equal normalised stdout/stderr (and the expected exit
/// code, if any), and returns both raw results.
pub fn differential(case: &Case) -> (RunResult, RunResult) {
    let out = compare_case(case);
    if !out.mismatches.is_empty() {
        panic!("{}", out.report(&case.name));
    }
    (out.a.raw, out.b.raw)
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect()
}

/// A fresh temp dir holding a module tree built by `build`, plus a
/// [`ModuleSpec`] named `name` for it. Keep the `TempDir` alive for the test.
pub fn module_with(name: &str, build: impl FnOnce(&Path)) -> (tempfile::TempDir, ModuleSpec) {
    let dir = tempfile::Builder::new()
        .prefix("interop-src-")
        .tempdir()
        .expect("source temp dir");
    let root: PathBuf = dir.path().join(name);
    build(&root);
    let spec = ModuleSpec::new(name, &root);
    (dir, spec)
}

#[cfg(test)]
mod tests {
    use super::raw_bytes;

    #[test]
    fn byte_escapes() {
        assert_eq!(raw_bytes("a{%ff}b{%FE}"), b"a\xffb\xfe".to_vec());
        assert_eq!(raw_bytes("{%zz}{%4}{url}"), b"{%zz}{%4}{url}".to_vec());
        assert_eq!(raw_bytes("ü"), "ü".as_bytes().to_vec());
    }
}
