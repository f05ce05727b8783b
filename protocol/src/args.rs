//! The client's server argument vector, parsed into typed options.
//!
//! Mirrors the daemon side of `io.c: read_args()` (framing, backslash
//! unescaping of option arguments) and `options.c: parse_arguments()` as
//! popt drives it over `long_options[]` for a server (`--server --sender
//! ...`). The set of options a pull client sends comes from
//! `options.c: server_options()`; every other rsync option is still
//! recognised (stock daemons accept them, e.g. through `-M`) and either
//! recorded, ignored, or refused with [`ArgError::Unsupported`].

use crate::error::{DecodeError, DecodeResult};
use crate::filter::CmdlineFilter;
use crate::limits::Limits;

/// Read one argument list (`io.c: read_args()` with `read_line()`):
/// protocol >= 30 (and every secluded-args second list) terminates each
/// argument with a NUL byte, older protocols with `\n` (a `\r` also ends a
/// line, as in rsync). An empty argument ends the list.
///
/// Returns the arguments and the number of bytes consumed, or
/// [`DecodeError::Incomplete`] when the terminator has not arrived yet.
/// An argument longer than `limits.max_arg_len`, more than
/// `limits.max_args` arguments, or a NUL inside an LF-terminated argument
/// is [`DecodeError::Invalid`] (stock silently truncates; we refuse).
pub fn decode_arg_list(
    buf: &[u8],
    nul_separated: bool,
    limits: &Limits,
) -> DecodeResult<(Vec<Vec<u8>>, usize)> {
    let mut args = Vec::new();
    let mut pos = 0usize;
    loop {
        let rest = &buf[pos..];
        let end = if nul_separated {
            rest.iter().position(|&c| c == 0)
        } else {
            rest.iter()
                .position(|&c| c == b'\n' || c == b'\r' || c == 0)
        };
        let Some(end) = end else {
            if rest.len() > limits.max_arg_len {
                return Err(DecodeError::invalid(
                    "argument",
                    format!("argument longer than {} bytes", limits.max_arg_len),
                ));
            }
            return Err(DecodeError::Incomplete { needed: 1 });
        };
        if !nul_separated && rest[end] == 0 {
            return Err(DecodeError::invalid(
                "argument",
                "NUL byte inside a line-terminated argument",
            ));
        }
        if end > limits.max_arg_len {
            return Err(DecodeError::invalid(
                "argument",
                format!("argument longer than {} bytes", limits.max_arg_len),
            ));
        }
        let arg = &rest[..end];
        pos += end + 1;
        if arg.is_empty() {
            return Ok((args, pos));
        }
        if args.len() >= limits.max_args {
            return Err(DecodeError::invalid(
                "argument list",
                format!("more than {} arguments", limits.max_args),
            ));
        }
        args.push(arg.to_vec());
    }
}

/// `io.c: unbackslash_arg()`: drop each backslash that has a byte after it
/// (that byte is kept literally).
pub fn unbackslash_arg(arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arg.len());
    let mut i = 0;
    while i < arg.len() {
        if arg[i] == b'\\' && i + 1 < arg.len() {
            i += 1;
        }
        out.push(arg[i]);
        i += 1;
    }
    out
}

/// The options a client asked the server for. Defaults are rsync's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// `--sender`: the client pulls (the daemon sends).
    pub sender: bool,
    /// `--server`.
    pub server: bool,
    /// `-s` / `--secluded-args` / `--protect-args`: a second list follows.
    pub secluded_args: bool,
    /// Count of `-v`.
    pub verbose: u8,
    /// `-q`.
    pub quiet: bool,
    /// `-n`: answer requests without sending data.
    pub dry_run: bool,
    /// `-r`.
    pub recursive: bool,
    /// `-d` (also `--old-dirs`).
    pub dirs: bool,
    /// `-R`.
    pub relative: bool,
    /// Default true; `--no-implied-dirs` clears it.
    pub implied_dirs: bool,
    /// `-l`.
    pub links: bool,
    /// `-L`.
    pub copy_links: bool,
    /// `-k`.
    pub copy_dirlinks: bool,
    /// `--copy-unsafe-links`.
    pub copy_unsafe_links: bool,
    /// `--safe-links`.
    pub safe_links: bool,
    /// `-H` (once or twice).
    pub hard_links: bool,
    /// `-p`.
    pub perms: bool,
    /// `-t`.
    pub times: bool,
    /// `-o`.
    pub owner: bool,
    /// `-g`.
    pub group: bool,
    /// `-D` / `--devices`.
    pub devices: bool,
    /// `-D` / `--specials` (cleared by `--no-specials`).
    pub specials: bool,
    /// `--numeric-ids`.
    pub numeric_ids: bool,
    /// `-c`.
    pub checksum: bool,
    /// `-W`.
    pub whole_file: bool,
    /// `-S`.
    pub sparse: bool,
    /// Count of `-x`.
    pub one_file_system: u8,
    /// `-C`: the sender adds the CVS default excludes.
    pub cvs_exclude: bool,
    /// `-z` (zlib unless negotiated otherwise).
    pub compress: bool,
    /// `--compress-level=N` / `--zl=N`.
    pub compress_level: Option<i32>,
    /// `--compress-choice=NAME` / `--zc=NAME`.
    pub compress_choice: Option<Vec<u8>>,
    /// `--old-compress` (= `--zc=zlib`).
    pub old_compress: bool,
    /// `--new-compress` (= `--zc=zlibx`); also set by `-zz`.
    pub new_compress: bool,
    /// `--checksum-choice=X[,Y]` / `--cc`.
    pub checksum_choice: Option<Vec<u8>>,
    /// `--checksum-seed=N`.
    pub checksum_seed: Option<i32>,
    /// `-B SIZE` / `--block-size=SIZE` in bytes (at most 128 KiB, as stock
    /// checks at option-parse time).
    pub block_size: Option<u32>,
    /// `--list-only`.
    pub list_only: bool,
    /// `--files-from=FILE` (`-` means the client sends the names).
    pub files_from: Option<Vec<u8>>,
    /// `--from0`.
    pub from0: bool,
    /// `--ignore-errors`.
    pub ignore_errors: bool,
    /// `--delete-missing-args`.
    pub delete_missing_args: bool,
    /// `--ignore-missing-args`.
    pub ignore_missing_args: bool,
    /// `--timeout=N` (seconds; 0 means none).
    pub timeout: Option<u32>,
    /// `--bwlimit=RATE` as sent.
    pub bwlimit: Option<String>,
    /// Count of `--append` (refused by [`parse_server_args`]; kept for
    /// completeness).
    pub append: u8,
    /// `--inplace`.
    pub inplace: bool,
    /// `--max-alloc=SIZE` as sent.
    pub max_alloc: Option<String>,
    /// `-I`.
    pub ignore_times: bool,
    /// `-u`.
    pub update: bool,
    /// `-b`.
    pub backup: bool,
    /// The `-e` value: the capability string, e.g. `.iLsfxCIvu`.
    pub capabilities: Option<Vec<u8>>,
    /// `--protocol=N`.
    pub protocol_override: Option<u8>,
    /// `--info=...` values, in order.
    pub info: Vec<Vec<u8>>,
    /// `--debug=...` values, in order.
    pub debug: Vec<Vec<u8>>,
    /// `--no-inc-recursive` (false) / `--inc-recursive` (true).
    pub inc_recursive: Option<bool>,
    /// `--log-format=FMT` / `--out-format=FMT` (the client sends `%i`,
    /// `%i%I`, `%o` or `X` to say what it logs).
    pub log_format: Option<Vec<u8>>,
    /// `--msgs2stderr` (true) / `--no-msgs2stderr` (false).
    pub msgs2stderr: Option<bool>,
    /// `--skip-compress=LIST`.
    pub skip_compress: Option<Vec<u8>>,
    /// `--backup-dir=DIR`.
    pub backup_dir: Option<Vec<u8>>,
    /// `--suffix=SUFFIX`.
    pub suffix: Option<Vec<u8>>,
    /// `--open-noatime`.
    pub open_noatime: bool,
    /// `--qsort` (clients send `--use-qsort`).
    pub use_qsort: bool,
    /// `--filter`/`--exclude`/`--include` values given as server options
    /// (only via `-M`); stock applies them before the received list.
    pub filter_options: Vec<(CmdlineFilter, Vec<u8>)>,
    /// popt rows that were used, in order, for `refuse options` matching.
    sent: Vec<(&'static str, Option<char>)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            sender: false,
            server: false,
            secluded_args: false,
            verbose: 0,
            quiet: false,
            dry_run: false,
            recursive: false,
            dirs: false,
            relative: false,
            implied_dirs: true,
            links: false,
            copy_links: false,
            copy_dirlinks: false,
            copy_unsafe_links: false,
            safe_links: false,
            hard_links: false,
            perms: false,
            times: false,
            owner: false,
            group: false,
            devices: false,
            specials: false,
            numeric_ids: false,
            checksum: false,
            whole_file: false,
            sparse: false,
            one_file_system: 0,
            cvs_exclude: false,
            compress: false,
            compress_level: None,
            compress_choice: None,
            old_compress: false,
            new_compress: false,
            checksum_choice: None,
            checksum_seed: None,
            block_size: None,
            list_only: false,
            files_from: None,
            from0: false,
            ignore_errors: false,
            delete_missing_args: false,
            ignore_missing_args: false,
            timeout: None,
            bwlimit: None,
            append: 0,
            inplace: false,
            max_alloc: None,
            ignore_times: false,
            update: false,
            backup: false,
            capabilities: None,
            protocol_override: None,
            info: Vec::new(),
            debug: Vec::new(),
            inc_recursive: None,
            log_format: None,
            msgs2stderr: None,
            skip_compress: None,
            backup_dir: None,
            suffix: None,
            open_noatime: false,
            use_qsort: false,
            filter_options: Vec::new(),
            sent: Vec::new(),
        }
    }
}

impl ServerOptions {
    /// True when any form of compression was asked for: `-z`, `-zz`,
    /// `--old-compress`, `--new-compress` or `--compress-choice` (a client
    /// sends `-z` only for plain zlib; other choices arrive without it).
    /// `--compress-choice=none` is not compression.
    pub fn wants_compression(&self) -> bool {
        let choice = match self.compress_choice.as_deref() {
            Some(c) => !c.eq_ignore_ascii_case(b"none"),
            None => false,
        };
        self.compress || self.old_compress || self.new_compress || choice
    }

    /// Each option the client sent, as rsync's option-table row: (long
    /// name, short letter). A row without a long name (only `-D`, `-F`,
    /// `-P`) has `""`. Listed once each, in the order first seen; options
    /// implied by others (e.g. by `-a`) are not added.
    pub fn requested_options(&self) -> Vec<(&'static str, Option<char>)> {
        let mut out: Vec<(&'static str, Option<char>)> = Vec::new();
        for &row in &self.sent {
            if !out.contains(&row) {
                out.push(row);
            }
        }
        out
    }
}

/// The parsed argument vector(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedArgs {
    /// The options.
    pub options: ServerOptions,
    /// Everything after the lone `.`, as sent (module name still in front,
    /// no unescaping).
    pub paths: Vec<Vec<u8>>,
    /// The option arguments as parsed (after unbackslashing), both lists.
    pub raw_options: Vec<Vec<u8>>,
}

/// Why the argument vector was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// An option rsync knows that this server does not support. `message`
    /// is in rsync's refusal form, e.g. `The server is configured to refuse
    /// --acls (-A)`; `option` is the long name.
    #[error("{message}")]
    Unsupported {
        /// Long option name (or the letter for rows without one).
        option: String,
        /// Message for the client.
        message: String,
    },
    /// An option no rsync knows; `message` as popt words it, e.g.
    /// `--frobnicate: unknown option` (stock prefixes `on remote machine: `).
    #[error("{message}")]
    Unknown {
        /// Message for the client.
        message: String,
    },
    /// No `--sender`: the client wants to push. Stock daemons answer
    /// `ERROR: module is read only` for read-only modules.
    #[error("ERROR: module is read only")]
    Push,
    /// Anything else: missing or bad values, missing `--server`, stray
    /// arguments, a missing secluded-args list.
    #[error("{message}")]
    Syntax {
        /// Message for the client.
        message: String,
    },
}

fn syntax(message: impl Into<String>) -> ArgError {
    ArgError::Syntax {
        message: message.into(),
    }
}

/// Whether an option takes a value (popt's `argInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Takes {
    Nothing,
    Str,
    Int,
}

/// What the parser does with a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    /// Accepted; nothing a sender needs.
    Ignore,
    /// Refused with the "configured to refuse" message.
    Refuse,
    /// Daemon-mode options: stock answers "Attempt to hack rsync thwarted!".
    Hack,
    /// Handled by [`apply`].
    Set,
}

/// One row of rsync's `long_options[]`.
struct Row {
    long: &'static str,
    short: Option<char>,
    takes: Takes,
    act: Act,
}

const fn row(long: &'static str, short: Option<char>, takes: Takes, act: Act) -> Row {
    Row {
        long,
        short,
        takes,
        act,
    }
}

use Act::{Hack, Ignore, Refuse, Set};
use Takes::{Int, Nothing as N, Str};

/// rsync's option table (3.2.7 plus later additions), as the server sees it.
const ROWS: &[Row] = &[
    row("help", None, N, Hack),
    row("version", Some('V'), N, Hack),
    row("verbose", Some('v'), N, Set),
    row("no-verbose", None, N, Set),
    row("no-v", None, N, Set),
    row("info", None, Str, Set),
    row("debug", None, Str, Set),
    row("stderr", None, Str, Ignore),
    row("msgs2stderr", None, N, Set),
    row("no-msgs2stderr", None, N, Set),
    row("quiet", Some('q'), N, Set),
    row("motd", None, N, Ignore),
    row("no-motd", None, N, Ignore),
    row("stats", None, N, Ignore),
    row("human-readable", Some('h'), N, Ignore),
    row("no-human-readable", None, N, Ignore),
    row("no-h", None, N, Ignore),
    row("dry-run", Some('n'), N, Set),
    row("archive", Some('a'), N, Set),
    row("recursive", Some('r'), N, Set),
    row("no-recursive", None, N, Set),
    row("no-r", None, N, Set),
    row("inc-recursive", None, N, Set),
    row("no-inc-recursive", None, N, Set),
    row("i-r", None, N, Set),
    row("no-i-r", None, N, Set),
    row("dirs", Some('d'), N, Set),
    row("no-dirs", None, N, Set),
    row("no-d", None, N, Set),
    row("old-dirs", None, N, Set),
    row("old-d", None, N, Set),
    row("perms", Some('p'), N, Set),
    row("no-perms", None, N, Set),
    row("no-p", None, N, Set),
    row("executability", Some('E'), N, Ignore),
    row("acls", Some('A'), N, Refuse),
    row("no-acls", None, N, Ignore),
    row("no-A", None, N, Ignore),
    row("xattrs", Some('X'), N, Refuse),
    row("no-xattrs", None, N, Ignore),
    row("no-X", None, N, Ignore),
    row("times", Some('t'), N, Set),
    row("no-times", None, N, Set),
    row("no-t", None, N, Set),
    row("atimes", Some('U'), N, Refuse),
    row("no-atimes", None, N, Ignore),
    row("no-U", None, N, Ignore),
    row("open-noatime", None, N, Set),
    row("no-open-noatime", None, N, Set),
    row("crtimes", Some('N'), N, Refuse),
    row("no-crtimes", None, N, Ignore),
    row("no-N", None, N, Ignore),
    row("omit-dir-times", Some('O'), N, Ignore),
    row("no-omit-dir-times", None, N, Ignore),
    row("no-O", None, N, Ignore),
    row("omit-link-times", Some('J'), N, Ignore),
    row("no-omit-link-times", None, N, Ignore),
    row("no-J", None, N, Ignore),
    row("modify-window", Some('@'), Int, Ignore),
    row("super", None, N, Ignore),
    row("no-super", None, N, Ignore),
    row("fake-super", None, N, Ignore),
    row("owner", Some('o'), N, Set),
    row("no-owner", None, N, Set),
    row("no-o", None, N, Set),
    row("group", Some('g'), N, Set),
    row("no-group", None, N, Set),
    row("no-g", None, N, Set),
    row("", Some('D'), N, Set),
    row("no-D", None, N, Set),
    row("devices", None, N, Set),
    row("no-devices", None, N, Set),
    row("copy-devices", None, N, Refuse),
    row("write-devices", None, N, Refuse),
    row("no-write-devices", None, N, Ignore),
    row("specials", None, N, Set),
    row("no-specials", None, N, Set),
    row("drop-D", None, N, Ignore),
    row("no-drop-D", None, N, Ignore),
    row("confine-root", None, Str, Refuse),
    row("links", Some('l'), N, Set),
    row("no-links", None, N, Set),
    row("no-l", None, N, Set),
    row("copy-links", Some('L'), N, Set),
    row("copy-unsafe-links", None, N, Set),
    row("safe-links", None, N, Set),
    row("insecure-links", None, N, Refuse),
    row("no-insecure-links", None, N, Ignore),
    row("munge-links", None, N, Ignore),
    row("no-munge-links", None, N, Ignore),
    row("copy-dirlinks", Some('k'), N, Set),
    row("keep-dirlinks", Some('K'), N, Ignore),
    row("hard-links", Some('H'), N, Set),
    row("no-hard-links", None, N, Set),
    row("no-H", None, N, Set),
    row("relative", Some('R'), N, Set),
    row("no-relative", None, N, Set),
    row("no-R", None, N, Set),
    row("implied-dirs", None, N, Set),
    row("no-implied-dirs", None, N, Set),
    row("i-d", None, N, Set),
    row("no-i-d", None, N, Set),
    row("chmod", None, Str, Ignore),
    row("ignore-times", Some('I'), N, Set),
    row("size-only", None, N, Ignore),
    row("one-file-system", Some('x'), N, Set),
    row("no-one-file-system", None, N, Set),
    row("no-x", None, N, Set),
    row("update", Some('u'), N, Set),
    row("existing", None, N, Ignore),
    row("ignore-non-existing", None, N, Ignore),
    row("ignore-existing", None, N, Ignore),
    row("max-size", None, Str, Ignore),
    row("min-size", None, Str, Ignore),
    row("max-alloc", None, Str, Set),
    row("sparse", Some('S'), N, Set),
    row("no-sparse", None, N, Set),
    row("no-S", None, N, Set),
    row("preallocate", None, N, Ignore),
    row("inplace", None, N, Set),
    row("no-inplace", None, N, Set),
    row("append", None, N, Refuse),
    row("append-verify", None, N, Refuse),
    row("no-append", None, N, Set),
    row("del", None, N, Ignore),
    row("delete", None, N, Ignore),
    row("delete-before", None, N, Ignore),
    row("delete-during", None, N, Ignore),
    row("delete-delay", None, N, Ignore),
    row("delete-after", None, N, Ignore),
    row("delete-excluded", None, N, Ignore),
    row("delete-missing-args", None, N, Set),
    row("ignore-missing-args", None, N, Set),
    row("remove-sent-files", None, N, Refuse),
    row("remove-source-files", None, N, Refuse),
    row("force", None, N, Ignore),
    row("no-force", None, N, Ignore),
    row("ignore-errors", None, N, Set),
    row("no-ignore-errors", None, N, Set),
    row("max-delete", None, Int, Ignore),
    row("", Some('F'), N, Refuse),
    row("filter", Some('f'), Str, Set),
    row("exclude", None, Str, Set),
    row("include", None, Str, Set),
    row("exclude-from", None, Str, Refuse),
    row("include-from", None, Str, Refuse),
    row("cvs-exclude", Some('C'), N, Set),
    row("whole-file", Some('W'), N, Set),
    row("no-whole-file", None, N, Set),
    row("no-W", None, N, Set),
    row("checksum", Some('c'), N, Set),
    row("no-checksum", None, N, Set),
    row("no-c", None, N, Set),
    row("checksum-choice", None, Str, Set),
    row("cc", None, Str, Set),
    row("block-size", Some('B'), Str, Set),
    row("compare-dest", None, Str, Ignore),
    row("copy-dest", None, Str, Ignore),
    row("link-dest", None, Str, Ignore),
    row("fuzzy", Some('y'), N, Ignore),
    row("no-fuzzy", None, N, Ignore),
    row("no-y", None, N, Ignore),
    row("compress", Some('z'), N, Set),
    row("old-compress", None, N, Set),
    row("new-compress", None, N, Set),
    row("no-compress", None, N, Set),
    row("no-z", None, N, Set),
    row("compress-choice", None, Str, Set),
    row("zc", None, Str, Set),
    row("skip-compress", None, Str, Set),
    row("compress-level", None, Int, Set),
    row("zl", None, Int, Set),
    row("compress-threads", None, Int, Ignore),
    row("zt", None, Int, Ignore),
    row("", Some('P'), N, Ignore),
    row("progress", None, N, Ignore),
    row("no-progress", None, N, Ignore),
    row("partial", None, N, Ignore),
    row("no-partial", None, N, Ignore),
    row("partial-dir", None, Str, Ignore),
    row("delay-updates", None, N, Ignore),
    row("no-delay-updates", None, N, Ignore),
    row("prune-empty-dirs", Some('m'), N, Ignore),
    row("no-prune-empty-dirs", None, N, Ignore),
    row("no-m", None, N, Ignore),
    row("log-file", None, Str, Refuse),
    row("log-file-format", None, Str, Refuse),
    row("out-format", None, Str, Set),
    row("log-format", None, Str, Set),
    row("itemize-changes", Some('i'), N, Ignore),
    row("no-itemize-changes", None, N, Ignore),
    row("no-i", None, N, Ignore),
    row("bwlimit", None, Str, Set),
    row("no-bwlimit", None, N, Set),
    row("backup", Some('b'), N, Set),
    row("no-backup", None, N, Set),
    row("backup-dir", None, Str, Set),
    row("suffix", None, Str, Set),
    row("list-only", None, N, Set),
    row("read-batch", None, Str, Refuse),
    row("write-batch", None, Str, Refuse),
    row("only-write-batch", None, Str, Refuse),
    row("files-from", None, Str, Set),
    row("from0", Some('0'), N, Set),
    row("no-from0", None, N, Set),
    row("old-args", None, N, Ignore),
    row("no-old-args", None, N, Ignore),
    row("secluded-args", Some('s'), N, Set),
    row("no-secluded-args", None, N, Set),
    row("protect-args", None, N, Set),
    row("no-protect-args", None, N, Set),
    row("no-s", None, N, Set),
    row("trust-sender", None, N, Ignore),
    row("numeric-ids", None, N, Set),
    row("no-numeric-ids", None, N, Set),
    row("usermap", None, Str, Ignore),
    row("groupmap", None, Str, Ignore),
    row("chown", None, Str, Ignore),
    row("timeout", None, Int, Set),
    row("no-timeout", None, N, Set),
    row("contimeout", None, Int, Ignore),
    row("no-contimeout", None, N, Ignore),
    row("fsync", None, N, Ignore),
    row("stop-after", None, Str, Ignore),
    row("time-limit", None, Str, Ignore),
    row("stop-at", None, Str, Ignore),
    row("rsh", Some('e'), Str, Set),
    row("rsync-path", None, Str, Ignore),
    row("temp-dir", Some('T'), Str, Ignore),
    row("iconv", None, Str, Refuse),
    row("no-iconv", None, N, Ignore),
    row("ipv4", Some('4'), N, Ignore),
    row("ipv6", Some('6'), N, Ignore),
    row("8-bit-output", Some('8'), N, Ignore),
    row("no-8-bit-output", None, N, Ignore),
    row("no-8", None, N, Ignore),
    row("mkpath", None, N, Ignore),
    row("no-mkpath", None, N, Ignore),
    row("qsort", None, N, Set),
    // Not in rsync's table, but what `server_options()` sends for --qsort.
    row("use-qsort", None, N, Set),
    row("copy-as", None, Str, Refuse),
    row("address", None, Str, Ignore),
    row("port", None, Int, Ignore),
    row("sockopts", None, Str, Ignore),
    row("password-file", None, Str, Ignore),
    row("early-input", None, Str, Ignore),
    row("blocking-io", None, N, Ignore),
    row("no-blocking-io", None, N, Ignore),
    row("outbuf", None, Str, Ignore),
    row("remote-option", Some('M'), Str, Set),
    row("protocol", None, Int, Set),
    row("checksum-seed", None, Int, Set),
    row("server", None, N, Set),
    row("sender", None, N, Set),
    row("config", None, Str, Hack),
    row("daemon", None, N, Hack),
    row("dparam", None, Str, Hack),
    row("detach", None, N, Hack),
    row("no-detach", None, N, Hack),
];

fn find_long(name: &[u8]) -> Option<&'static Row> {
    ROWS.iter()
        .find(|r| !r.long.is_empty() && r.long.as_bytes() == name)
}

fn find_short(c: u8) -> Option<&'static Row> {
    ROWS.iter().find(|r| r.short == Some(char::from(c)))
}

/// popt's integer parsing (`strtol(..., 0)`): decimal, `0x` hex or
/// leading-`0` octal, optional sign, within `i32`.
fn parse_int(v: &[u8]) -> Option<i32> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mag = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        i64::from_str_radix(&s[1..], 8).ok()?
    } else {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse::<i64>().ok()?
    };
    i32::try_from(if neg { -mag } else { mag }).ok()
}

/// `options.c: parse_size_arg()` for `-B`: a number with an optional
/// fraction and a `b`/`k`/`m`/`g` suffix (default unit bytes, powers of
/// 1024; `kb`-style suffixes mean powers of 1000).
fn parse_block_size(v: &[u8]) -> Option<u32> {
    let s = std::str::from_utf8(v).ok()?;
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "." {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let lower = suffix.to_ascii_lowercase();
    let mut chars = lower.chars();
    let unit_ch = chars.next().unwrap_or('b');
    let rest = chars.as_str();
    let base: f64 = match rest {
        "" | "ib" => 1024.0,
        "b" => 1000.0,
        _ => return None,
    };
    let mult = match unit_ch {
        'b' if rest.is_empty() => 1.0,
        'k' => base,
        'm' => base * base,
        'g' => base * base * base,
        _ => return None,
    };
    let bytes = n * mult;
    if !(0.0..=f64::from(u32::MAX)).contains(&bytes) {
        return None;
    }
    Some(bytes as u32)
}

/// Parser state across the two lists.
struct Parser {
    o: ServerOptions,
    compress_count: u8,
    raw: Vec<Vec<u8>>,
}

fn refusal(r: &Row) -> ArgError {
    let (option, message) = if r.long.is_empty() {
        let c = r.short.unwrap_or('?');
        (
            c.to_string(),
            format!("The server is configured to refuse -{c}"),
        )
    } else {
        let mut m = format!("The server is configured to refuse --{}", r.long);
        if let Some(c) = r.short {
            m.push_str(&format!(" (-{c})"));
        }
        (r.long.to_string(), m)
    };
    ArgError::Unsupported { option, message }
}

fn lossy(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

impl Parser {
    /// Apply one option occurrence. `shown` is the argument text popt
    /// would name in an error (`--timeout=abc`, `-vQ`).
    fn apply(
        &mut self,
        r: &'static Row,
        value: Option<&[u8]>,
        shown: &[u8],
    ) -> Result<(), ArgError> {
        match r.act {
            Act::Refuse => return Err(refusal(r)),
            Act::Hack => return Err(syntax("Attempt to hack rsync thwarted!")),
            Act::Ignore | Act::Set => {}
        }
        let int = || -> Result<i32, ArgError> {
            parse_int(value.unwrap_or_default())
                .ok_or_else(|| syntax(format!("{}: invalid numeric value", lossy(shown))))
        };
        if r.takes == Takes::Int {
            int()?;
        }
        self.o.sent.push((r.long, r.short));
        if r.act == Act::Ignore {
            return Ok(());
        }
        let v = value.map(|v| v.to_vec());
        let o = &mut self.o;
        match (r.long, r.short) {
            (_, Some('v')) => o.verbose = o.verbose.saturating_add(1),
            ("no-verbose" | "no-v", _) => o.verbose = 0,
            ("info", _) => o.info.extend(v),
            ("debug", _) => o.debug.extend(v),
            ("msgs2stderr", _) => o.msgs2stderr = Some(true),
            ("no-msgs2stderr", _) => o.msgs2stderr = Some(false),
            (_, Some('q')) => o.quiet = true,
            (_, Some('n')) => o.dry_run = true,
            (_, Some('a')) => {
                o.recursive = true;
                o.links = true;
                o.perms = true;
                o.times = true;
                o.group = true;
                o.owner = true;
                o.devices = true;
                o.specials = true;
            }
            (_, Some('r')) => o.recursive = true,
            ("no-recursive" | "no-r", _) => o.recursive = false,
            ("inc-recursive" | "i-r", _) => o.inc_recursive = Some(true),
            ("no-inc-recursive" | "no-i-r", _) => o.inc_recursive = Some(false),
            (_, Some('d')) | ("old-dirs" | "old-d", _) => o.dirs = true,
            ("no-dirs" | "no-d", _) => o.dirs = false,
            (_, Some('p')) => o.perms = true,
            ("no-perms" | "no-p", _) => o.perms = false,
            (_, Some('t')) => o.times = true,
            ("no-times" | "no-t", _) => o.times = false,
            ("open-noatime", _) => o.open_noatime = true,
            ("no-open-noatime", _) => o.open_noatime = false,
            (_, Some('o')) => o.owner = true,
            ("no-owner" | "no-o", _) => o.owner = false,
            (_, Some('g')) => o.group = true,
            ("no-group" | "no-g", _) => o.group = false,
            (_, Some('D')) => {
                o.devices = true;
                o.specials = true;
            }
            ("no-D", _) => {
                o.devices = false;
                o.specials = false;
            }
            ("devices", _) => o.devices = true,
            ("no-devices", _) => o.devices = false,
            ("specials", _) => o.specials = true,
            ("no-specials", _) => o.specials = false,
            (_, Some('l')) => o.links = true,
            ("no-links" | "no-l", _) => o.links = false,
            (_, Some('L')) => o.copy_links = true,
            ("copy-unsafe-links", _) => o.copy_unsafe_links = true,
            ("safe-links", _) => o.safe_links = true,
            (_, Some('k')) => o.copy_dirlinks = true,
            (_, Some('H')) => o.hard_links = true,
            ("no-hard-links" | "no-H", _) => o.hard_links = false,
            (_, Some('R')) => o.relative = true,
            ("no-relative" | "no-R", _) => o.relative = false,
            ("implied-dirs" | "i-d", _) => o.implied_dirs = true,
            ("no-implied-dirs" | "no-i-d", _) => o.implied_dirs = false,
            (_, Some('I')) => o.ignore_times = true,
            (_, Some('x')) => o.one_file_system = o.one_file_system.saturating_add(1),
            ("no-one-file-system" | "no-x", _) => o.one_file_system = 0,
            (_, Some('u')) => o.update = true,
            ("max-alloc", _) => o.max_alloc = v.as_deref().map(lossy),
            (_, Some('S')) => o.sparse = true,
            ("no-sparse" | "no-S", _) => o.sparse = false,
            ("inplace", _) => o.inplace = true,
            ("no-inplace", _) => o.inplace = false,
            ("no-append", _) => o.append = 0,
            ("delete-missing-args", _) => o.delete_missing_args = true,
            ("ignore-missing-args", _) => o.ignore_missing_args = true,
            ("ignore-errors", _) => o.ignore_errors = true,
            ("no-ignore-errors", _) => o.ignore_errors = false,
            (_, Some('f')) => o
                .filter_options
                .extend(v.map(|v| (CmdlineFilter::Filter, v))),
            ("exclude", _) => o
                .filter_options
                .extend(v.map(|v| (CmdlineFilter::Exclude, v))),
            ("include", _) => o
                .filter_options
                .extend(v.map(|v| (CmdlineFilter::Include, v))),
            (_, Some('C')) => o.cvs_exclude = true,
            (_, Some('W')) => o.whole_file = true,
            ("no-whole-file" | "no-W", _) => o.whole_file = false,
            (_, Some('c')) => o.checksum = true,
            ("no-checksum" | "no-c", _) => o.checksum = false,
            ("checksum-choice" | "cc", _) => o.checksum_choice = v,
            (_, Some('B')) => {
                let size = parse_block_size(value.unwrap_or_default()).ok_or_else(|| {
                    syntax(format!(
                        "--block-size value is invalid: {}",
                        lossy(value.unwrap_or_default())
                    ))
                })?;
                // options.c: parse_size_arg(.., max_blength) with the
                // default protocol's MAX_BLOCK_SIZE (128 KiB), as stock
                // 3.2.7 words it: `--block-size=1G is too large (max: 128.00K)`.
                if size > 1 << 17 {
                    return Err(syntax(format!(
                        "--block-size={} is too large (max: 128.00K)",
                        lossy(value.unwrap_or_default())
                    )));
                }
                o.block_size = (size != 0).then_some(size);
            }
            (_, Some('z')) => {
                self.compress_count = self.compress_count.saturating_add(1);
                o.compress = true;
            }
            ("old-compress", _) => o.old_compress = true,
            ("new-compress", _) => o.new_compress = true,
            ("no-compress" | "no-z", _) => {
                o.compress = false;
                o.compress_choice = None;
                o.old_compress = false;
                o.new_compress = false;
                self.compress_count = 0;
            }
            ("compress-choice" | "zc", _) => o.compress_choice = v,
            ("skip-compress", _) => o.skip_compress = v,
            ("compress-level" | "zl", _) => o.compress_level = Some(int()?),
            ("out-format" | "log-format", _) => o.log_format = v,
            ("bwlimit", _) => o.bwlimit = v.as_deref().map(lossy),
            ("no-bwlimit", _) => o.bwlimit = None,
            (_, Some('b')) => o.backup = true,
            ("no-backup", _) => o.backup = false,
            ("backup-dir", _) => o.backup_dir = v,
            ("suffix", _) => o.suffix = v,
            ("list-only", _) => o.list_only = true,
            ("files-from", _) => o.files_from = v,
            (_, Some('0')) => o.from0 = true,
            ("no-from0", _) => o.from0 = false,
            (_, Some('s')) | ("protect-args", _) => o.secluded_args = true,
            ("no-secluded-args" | "no-protect-args" | "no-s", _) => o.secluded_args = false,
            ("numeric-ids", _) => o.numeric_ids = true,
            ("no-numeric-ids", _) => o.numeric_ids = false,
            ("timeout", _) => {
                let t = int()?;
                o.timeout = Some(
                    u32::try_from(t)
                        .map_err(|_| syntax(format!("{}: invalid numeric value", lossy(shown))))?,
                );
            }
            ("no-timeout", _) => o.timeout = None,
            (_, Some('e')) => o.capabilities = v,
            ("qsort" | "use-qsort", _) => o.use_qsort = true,
            // options.c: a remote option must itself be an option.
            (_, Some('M')) if value.unwrap_or_default().first() != Some(&b'-') => {
                return Err(syntax(format!(
                    "Remote option must start with a dash: {}",
                    lossy(value.unwrap_or_default())
                )));
            }
            ("protocol", _) => {
                let p = int()?;
                o.protocol_override = Some(
                    u8::try_from(p)
                        .map_err(|_| syntax(format!("{}: invalid numeric value", lossy(shown))))?,
                );
            }
            ("checksum-seed", _) => o.checksum_seed = Some(int()?),
            ("server", _) => o.server = true,
            ("sender", _) => o.sender = true,
            _ => {}
        }
        Ok(())
    }

    /// Parse options from `args` until the lone `.`; returns the index of
    /// the first path (after the `.`) or `None` when no `.` was found.
    /// `stop_at_null` handles the proto < 30 secluded first list, which
    /// carries a literal `(null)` where the real list was cut.
    fn parse_options(
        &mut self,
        args: &[Vec<u8>],
        unescape: bool,
        first_list: bool,
    ) -> Result<Option<usize>, ArgError> {
        let mut i = 0;
        while i < args.len() {
            let raw = &args[i];
            i += 1;
            if raw.as_slice() == b"." {
                return Ok(Some(i));
            }
            let arg = if unescape {
                unbackslash_arg(raw)
            } else {
                raw.clone()
            };
            if first_list && self.o.secluded_args && raw.as_slice() == b"(null)" {
                // Everything after the cut is repeated in the second list.
                return Ok(None);
            }
            if let Some(body) = arg.strip_prefix(b"--") {
                if body.is_empty() {
                    return Err(syntax("unexpected \"--\" before the \".\" separator"));
                }
                let (name, inline) = match body.iter().position(|&c| c == b'=') {
                    Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                    None => (body, None),
                };
                let Some(r) = find_long(name) else {
                    return Err(ArgError::Unknown {
                        message: format!("{}: unknown option", lossy(&arg)),
                    });
                };
                let value: Option<Vec<u8>> = match (r.takes, inline) {
                    (Takes::Nothing, Some(_)) => {
                        return Err(syntax(format!(
                            "{}: option does not take an argument",
                            lossy(&arg)
                        )))
                    }
                    (Takes::Nothing, None) => None,
                    (_, Some(v)) => Some(v.to_vec()),
                    (_, None) => {
                        let Some(next) = args.get(i) else {
                            return Err(syntax(format!("{}: missing argument", lossy(&arg))));
                        };
                        i += 1;
                        self.raw.push(arg.clone());
                        Some(if unescape {
                            unbackslash_arg(next)
                        } else {
                            next.clone()
                        })
                    }
                };
                let shown = match (&value, inline) {
                    (Some(v), None) => [&arg[..], b"=", v].concat(),
                    _ => arg.clone(),
                };
                self.raw.push(match (&value, inline) {
                    (Some(v), None) => v.clone(),
                    _ => arg.clone(),
                });
                self.apply(r, value.as_deref(), &shown)?;
            } else if arg.len() > 1 && arg[0] == b'-' {
                self.raw.push(arg.clone());
                let mut j = 1;
                while j < arg.len() {
                    let Some(r) = find_short(arg[j]) else {
                        return Err(ArgError::Unknown {
                            message: format!("{}: unknown option", lossy(&arg)),
                        });
                    };
                    j += 1;
                    if r.takes == Takes::Nothing {
                        self.apply(r, None, &arg)?;
                        continue;
                    }
                    // The rest of the bundle is the value (this is how `e`
                    // swallows the capability string), else the next arg.
                    let value = if j < arg.len() {
                        arg[j..].to_vec()
                    } else {
                        let Some(next) = args.get(i) else {
                            return Err(syntax(format!("{}: missing argument", lossy(&arg))));
                        };
                        i += 1;
                        let v = if unescape {
                            unbackslash_arg(next)
                        } else {
                            next.clone()
                        };
                        self.raw.push(v.clone());
                        v
                    };
                    self.apply(r, Some(&value), &arg)?;
                    break;
                }
            } else {
                return Err(syntax(format!(
                    "unexpected argument before \".\": {}",
                    lossy(&arg)
                )));
            }
        }
        Ok(None)
    }
}

/// Parse the argument vector(s) (`clientserver.c: rsync_module()` calling
/// `parse_arguments()` once or, with `-s`, twice).
///
/// `first` is the list read right after `@RSYNCD: OK`; `second` is the
/// secluded-args list (starting with `rsync`), required when `first`
/// enables `-s`. Option arguments of the first list are un-backslashed
/// (clients escape them with `safe_arg()`); paths and the second list are
/// taken as sent. With `-s`, options and paths come from the second list;
/// the first list's `(null)`, `.` and paths (protocol < 30 clients) are
/// ignored, as stock does.
pub fn parse_server_args(
    first: &[Vec<u8>],
    second: Option<&[Vec<u8>]>,
) -> Result<ParsedArgs, ArgError> {
    let mut p = Parser {
        o: ServerOptions::default(),
        compress_count: 0,
        raw: Vec::new(),
    };
    let mut paths_from: Option<(&[Vec<u8>], usize)> = None;
    let dot = p.parse_options(first, true, true)?;
    if p.o.secluded_args {
        let second = second.ok_or_else(|| syntax("missing secluded-args (-s) argument list"))?;
        match second.split_first() {
            Some((arg0, rest)) if arg0.as_slice() == b"rsync" => {
                if let Some(d) = p.parse_options(rest, false, false)? {
                    paths_from = Some((rest, d));
                }
            }
            _ => return Err(syntax("secluded-args list does not start with \"rsync\"")),
        }
        // The second list cannot switch secluded mode back off.
        p.o.secluded_args = true;
    } else {
        if second.is_some() {
            return Err(syntax("unexpected second argument list without -s"));
        }
        if let Some(d) = dot {
            paths_from = Some((first, d));
        }
    }
    if !p.o.server {
        return Err(syntax("missing --server"));
    }
    let Some((list, start)) = paths_from else {
        return Err(syntax("missing \".\" before the path arguments"));
    };
    if !p.o.sender {
        return Err(ArgError::Push);
    }
    if p.compress_count > 1 && p.o.compress_choice.is_none() && !p.o.old_compress {
        p.o.new_compress = true; // "-zz": options.c picks zlibx
    }
    Ok(ParsedArgs {
        options: p.o,
        paths: list[start..].to_vec(),
        raw_options: p.raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn decode_framing() {
        let l = Limits::default();
        let buf = b"--server\0--sender\0-logDtpre.iLsfxCIvu\0.\0mod/\0\0rest";
        let (args, used) = decode_arg_list(buf, true, &l).unwrap();
        assert_eq!(
            args,
            v(&["--server", "--sender", "-logDtpre.iLsfxCIvu", ".", "mod/"])
        );
        assert_eq!(&buf[used..], b"rest");
        for cut in 0..used {
            assert!(
                decode_arg_list(&buf[..cut], true, &l)
                    .unwrap_err()
                    .is_incomplete(),
                "cut {cut}"
            );
        }
        let (args, used) =
            decode_arg_list(b"--server\n--sender\n-r\n.\nmod/\n\n", false, &l).unwrap();
        assert_eq!(args.len(), 5);
        assert_eq!(used, 29);
        // '\r' ends a line too (read_line()), so CRLF ends the list early.
        let (args, _) = decode_arg_list(b"--server\r\n--sender\n\n", false, &l).unwrap();
        assert_eq!(args, v(&["--server"]));
        assert!(matches!(
            decode_arg_list(b"a\0b\n\n", false, &l),
            Err(DecodeError::Invalid { .. })
        ));
        let small = Limits {
            max_arg_len: 4,
            max_args: 2,
            ..Limits::default()
        };
        assert!(matches!(
            decode_arg_list(b"12345\0\0", true, &small),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            decode_arg_list(b"12345", true, &small),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(decode_arg_list(b"1234", true, &small)
            .unwrap_err()
            .is_incomplete());
        assert!(matches!(
            decode_arg_list(b"a\0b\0c\0\0", true, &small),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn unbackslash() {
        assert_eq!(unbackslash_arg(br"a\ b\\c\*"), b"a b\\c*");
        assert_eq!(unbackslash_arg(br"end\"), br"end\");
    }

    #[test]
    fn bundle_e_swallows_rest() {
        let p = parse_server_args(
            &v(&["--server", "--sender", "-vlogDtprze.iLsfxCIvu", ".", "mod/"]),
            None,
        )
        .unwrap();
        let o = &p.options;
        assert!(o.compress && o.recursive && o.links && o.devices && o.specials);
        assert!(
            !o.checksum && !o.cvs_exclude && !o.ignore_times && !o.sparse,
            "capability letters are not options"
        );
        assert_eq!(o.capabilities.as_deref(), Some(&b".iLsfxCIvu"[..]));
        assert_eq!(o.verbose, 1);
        assert_eq!(p.paths, v(&["mod/"]));
        let req = o.requested_options();
        assert!(!req.contains(&("checksum", Some('c'))));
        assert!(req.contains(&("compress", Some('z'))));
        assert!(req.contains(&("rsh", Some('e'))));
        // 'c' anywhere before 'e' is the checksum option.
        for bundle in ["-clogDtpre.iLsfxCIvu", "-logDtprce.x", "-logDtpre.C", "-c"] {
            let p =
                parse_server_args(&v(&["--server", "--sender", bundle, ".", "m/"]), None).unwrap();
            assert_eq!(p.options.checksum, !bundle.ends_with(".C"), "{bundle}");
        }
    }

    #[test]
    fn errors() {
        let e = |a: &[&str]| parse_server_args(&v(a), None).unwrap_err();
        assert_eq!(
            e(&["--server", "--sender", "--frobnicate", ".", "m/"]),
            ArgError::Unknown {
                message: "--frobnicate: unknown option".into()
            }
        );
        assert_eq!(
            e(&["--server", "--sender", "-vQ", ".", "m/"]),
            ArgError::Unknown {
                message: "-vQ: unknown option".into()
            }
        );
        assert_eq!(
            e(&["--server", "--sender", "-logDtpAre.iLsfxCIvu", ".", "m/"]),
            ArgError::Unsupported {
                option: "acls".into(),
                message: "The server is configured to refuse --acls (-A)".into()
            }
        );
        assert_eq!(
            e(&["--server", "--sender", "--iconv=utf8", ".", "m/"]),
            ArgError::Unsupported {
                option: "iconv".into(),
                message: "The server is configured to refuse --iconv".into()
            }
        );
        assert!(matches!(
            e(&["--server", "--sender", "-F", ".", "m/"]),
            ArgError::Unsupported { .. }
        ));
        assert_eq!(e(&["--server", "-r", ".", "m/"]), ArgError::Push);
        assert!(matches!(
            e(&["--sender", "-r", ".", "m/"]),
            ArgError::Syntax { .. }
        ));
        assert!(matches!(
            e(&["--server", "--sender", "-r"]),
            ArgError::Syntax { .. }
        ));
        assert_eq!(
            e(&["--server", "--sender", "--timeout=abc", ".", "m/"]),
            ArgError::Syntax {
                message: "--timeout=abc: invalid numeric value".into()
            }
        );
        assert_eq!(
            e(&["--server", "--sender", "--recursive=1", ".", "m/"]),
            ArgError::Syntax {
                message: "--recursive=1: option does not take an argument".into()
            }
        );
        assert_eq!(
            e(&["--server", "--sender", "--timeout"]),
            ArgError::Syntax {
                message: "--timeout: missing argument".into()
            }
        );
        assert!(matches!(
            e(&["--server", "--sender", "stray", ".", "m/"]),
            ArgError::Syntax { .. }
        ));
        assert!(matches!(
            e(&["--server", "--sender", "--daemon", ".", "m/"]),
            ArgError::Syntax { .. }
        ));
        assert!(matches!(
            e(&["--server", "--sender", "-M", "x", ".", "m/"]),
            ArgError::Syntax { .. }
        ));
        assert!(matches!(
            e(&["--server", "--sender", "-s", ".", "m/"]),
            ArgError::Syntax { .. }
        ));
    }

    #[test]
    fn values_and_unescape() {
        let p = parse_server_args(
            &v(&[
                "--server",
                "--sender",
                "-rB8k",
                "--backup-dir",
                "b\\ k",
                "--suffix=a\\ b",
                "--timeout",
                "0x10",
                "--cc",
                "xxh3",
                ".",
                "m/a\\ b",
            ]),
            None,
        )
        .unwrap();
        let o = &p.options;
        assert_eq!(o.block_size, Some(8192));
        assert_eq!(o.backup_dir.as_deref(), Some(&b"b k"[..]));
        assert_eq!(o.suffix.as_deref(), Some(&b"a b"[..]));
        assert_eq!(o.timeout, Some(16));
        assert_eq!(o.checksum_choice.as_deref(), Some(&b"xxh3"[..]));
        assert_eq!(p.paths, v(&["m/a\\ b"]), "paths are not unescaped");
        let p = parse_server_args(&v(&["--server", "--sender", "-zz", ".", "m/"]), None).unwrap();
        assert!(p.options.new_compress);
        let p = parse_server_args(
            &v(&[
                "--server",
                "--sender",
                "-r",
                "--exclude=*.o",
                "-f",
                "+ x",
                ".",
                "m/",
            ]),
            None,
        )
        .unwrap();
        assert_eq!(
            p.options.filter_options,
            vec![
                (CmdlineFilter::Exclude, b"*.o".to_vec()),
                (CmdlineFilter::Filter, b"+ x".to_vec())
            ]
        );
    }

    #[test]
    fn secluded_lists() {
        let first = v(&["--server", "--sender", "-slogDtpre.iLsfxCIvu"]);
        let second = v(&["rsync", "--timeout=5", "-c", "--iconv=x", ".", "m/"]);
        // Refusals apply to the second list too.
        assert!(matches!(
            parse_server_args(&first, Some(&second)),
            Err(ArgError::Unsupported { .. })
        ));
        let second = v(&[
            "rsync",
            "--timeout=5",
            "-c",
            "--no-s",
            ".",
            "m/a b",
            "m/\\x",
        ]);
        let p = parse_server_args(&first, Some(&second)).unwrap();
        assert!(p.options.secluded_args && p.options.checksum);
        assert_eq!(p.options.timeout, Some(5));
        assert_eq!(p.paths, v(&["m/a b", "m/\\x"]));
        assert!(matches!(
            parse_server_args(&first, Some(&v(&["rsinc", ".", "m/"]))),
            Err(ArgError::Syntax { .. })
        ));
        // Protocol 29 form with the "(null)" marker.
        let first = v(&[
            "--server",
            "--sender",
            "-slogDtpr",
            "(null)",
            ".",
            "ignored/",
        ]);
        let p = parse_server_args(&first, Some(&v(&["rsync", ".", "mod/"]))).unwrap();
        assert_eq!(p.paths, v(&["mod/"]));
    }

    /// Deterministic pseudo-random argument vectors: never a panic.
    #[test]
    fn random_vectors_do_not_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces: &[&[u8]] = &[
            b"--server",
            b"--sender",
            b"-",
            b"--",
            b".",
            b"(null)",
            b"-s",
            b"-e",
            b"-B",
            b"-M",
            b"--timeout",
            b"=",
            b"\\",
            b"\xff",
            b"\xc3\xa9",
            b"rsync",
            b"-vvvvz",
            b"--block-size=",
            b"k",
            b"\\",
            b"0x",
            b"-1",
        ];
        for _ in 0..20_000 {
            let n = (next() % 8) as usize;
            let mut list = Vec::new();
            for _ in 0..n {
                let mut arg = Vec::new();
                for _ in 0..(next() % 4) {
                    arg.extend_from_slice(pieces[(next() as usize) % pieces.len()]);
                }
                list.push(arg);
            }
            let second = list.split_off(list.len() / 2);
            let _ = parse_server_args(&list, Some(&second));
            let _ = parse_server_args(&list, None);
            let mut wire = Vec::new();
            for a in &list {
                wire.extend_from_slice(a);
                wire.push((next() % 3) as u8 * 5);
            }
            let _ = decode_arg_list(&wire, next() % 2 == 0, &Limits::default());
        }
        assert_eq!(parse_block_size("1é".as_bytes()), None);
        assert_eq!(parse_block_size(b"1kb"), Some(1000));
        assert_eq!(parse_block_size(b"1.5k"), Some(1536));
    }
}
