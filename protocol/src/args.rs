//! The client's server argument vector, parsed once into typed options.
//!
//! Mirrors `io.c: read_args()` (framing), `options.c: server_options()`
//! (what a pull client sends) and `parse_arguments()` (how a daemon reads
//! it). Everything after the `e` of the short-option bundle is the
//! capability string (`options.c: maybe_add_e_option()`), not options.

use crate::error::{DecodeError, DecodeResult};
use crate::limits::Limits;

/// Decode one argument list from the start of `buf`: NUL-terminated args
/// (protocol >= 30, and always for the secluded second list) or
/// LF-terminated (protocol < 30); an empty argument ends the list.
/// Returns the args and the bytes consumed, or `Incomplete`.
pub fn decode_arg_list(buf: &[u8], nul_separated: bool, limits: &Limits) -> DecodeResult<(Vec<Vec<u8>>, usize)> {
    let sep = if nul_separated { 0u8 } else { b'\n' };
    let mut args = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &buf[pos..];
        let Some(i) = rest.iter().position(|&b| b == sep) else {
            if rest.len() > limits.max_arg_len {
                return Err(DecodeError::invalid("args", format!("argument too long (> {})", limits.max_arg_len)));
            }
            return Err(DecodeError::Incomplete { needed: 1 });
        };
        if i > limits.max_arg_len {
            return Err(DecodeError::invalid("args", format!("argument too long ({i} > {})", limits.max_arg_len)));
        }
        let mut arg = &rest[..i];
        pos += i + 1;
        if !nul_separated {
            arg = arg.strip_suffix(b"\r").unwrap_or(arg);
        }
        if arg.is_empty() {
            return Ok((args, pos));
        }
        if args.len() >= limits.max_args {
            return Err(DecodeError::invalid("args", "too many daemon arguments"));
        }
        args.push(arg.to_vec());
    }
}

/// The options a pull client can send, as the sender needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ServerOptions {
    pub sender: bool,
    pub server: bool,
    /// `-s` / `--secluded-args`
    pub secluded_args: bool,
    pub verbose: u8,
    pub quiet: bool,
    pub dry_run: bool,
    pub recursive: bool,
    pub dirs: bool,
    pub relative: bool,
    /// default true; `--no-implied-dirs` clears it
    pub implied_dirs: bool,
    pub links: bool,
    pub copy_links: bool,
    pub copy_dirlinks: bool,
    pub copy_unsafe_links: bool,
    pub safe_links: bool,
    pub hard_links: bool,
    pub perms: bool,
    pub executability: bool,
    pub times: bool,
    pub owner: bool,
    pub group: bool,
    pub devices: bool,
    pub specials: bool,
    pub numeric_ids: bool,
    pub checksum: bool,
    pub whole_file: bool,
    pub sparse: bool,
    pub one_file_system: u8,
    pub cvs_exclude: bool,
    pub compress: bool,
    pub compress_level: Option<i32>,
    pub compress_choice: Option<Vec<u8>>,
    pub old_compress: bool,
    pub new_compress: bool,
    pub checksum_choice: Option<Vec<u8>>,
    pub checksum_seed: Option<i32>,
    pub block_size: Option<u32>,
    pub list_only: bool,
    pub files_from: Option<Vec<u8>>,
    pub from0: bool,
    pub ignore_errors: bool,
    pub delete_missing_args: bool,
    pub ignore_missing_args: bool,
    pub timeout: Option<u32>,
    pub bwlimit: Option<String>,
    pub append: u8,
    pub inplace: bool,
    pub max_alloc: Option<String>,
    pub ignore_times: bool,
    pub update: bool,
    pub backup: bool,
    /// The `-e` value, e.g. `.iLsfxCIvu`.
    pub capabilities: Option<Vec<u8>>,
    pub protocol_override: Option<u8>,
    pub info: Vec<Vec<u8>>,
    pub debug: Vec<Vec<u8>>,
    pub acls: bool,
    pub xattrs: u8,
    pub atimes: u8,
    pub crtimes: bool,
    pub iconv: Option<Vec<u8>>,
    pub remove_source_files: bool,
    pub copy_devices: bool,
    pub write_devices: bool,
    pub use_qsort: bool,
    pub log_format: Option<Vec<u8>>,
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
            executability: false,
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
            acls: false,
            xattrs: 0,
            atimes: 0,
            crtimes: false,
            iconv: None,
            remove_source_files: false,
            copy_devices: false,
            write_devices: false,
            use_qsort: false,
            log_format: None,
        }
    }
}

/// The parsed argument vector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedArgs {
    /// Typed options.
    pub options: ServerOptions,
    /// Path arguments: everything after the lone `.`.
    pub paths: Vec<Vec<u8>>,
    /// The option arguments as received (for logging and `refuse options`).
    pub raw_options: Vec<Vec<u8>>,
}

/// Why an argument vector is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// An option rsync knows but this server does not serve; `message` is
    /// in stock's refusal form, e.g. "The server is configured to refuse --acls (-A)".
    #[error("{message}")]
    Unsupported {
        /// Long option name.
        option: String,
        /// Text to send (without the "rsync: " prefix).
        message: String,
    },
    /// An option no rsync knows (popt's wording).
    #[error("{message}")]
    Unknown {
        /// Text to send.
        message: String,
    },
    /// The client wants to push (no `--sender`): this server is read-only.
    #[error("ERROR: module is read only")]
    Push,
    /// Malformed arguments.
    #[error("{message}")]
    Syntax {
        /// Text to send.
        message: String,
    },
}

fn refuse(long: &str, short: Option<char>) -> ArgError {
    let message = match short {
        Some(c) => format!("The server is configured to refuse --{long} (-{c})"),
        None => format!("The server is configured to refuse --{long}"),
    };
    ArgError::Unsupported { option: long.to_string(), message }
}

/// `io.c: unbackslash_arg()`-style unescaping for option values: `\\x`
/// becomes `x` (clients >= 3.2.4 escape some characters with `safe_arg()`).
fn unbackslash(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'\\' && i + 1 < v.len() {
            out.push(v[i + 1]);
            i += 2;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

fn parse_num<T: std::str::FromStr>(opt: &str, v: &[u8]) -> Result<T, ArgError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse::<T>().ok())
        .ok_or_else(|| ArgError::Syntax { message: format!("--{opt}: invalid numeric value \"{}\"", String::from_utf8_lossy(v)) })
}

/// Long options that take a value (given as `--opt=value` or as the next arg).
const VALUE_OPTS: &[&str] = &[
    "compress-level", "zl", "compress-choice", "zc", "checksum-choice", "cc", "checksum-seed", "block-size",
    "timeout", "bwlimit", "files-from", "max-alloc", "info", "debug", "log-format", "out-format", "iconv",
    "backup-dir", "suffix", "skip-compress", "max-delete", "min-size", "max-size", "modify-window", "partial-dir",
    "temp-dir", "compare-dest", "copy-dest", "link-dest", "usermap", "groupmap", "chown", "chmod", "protocol",
    "filter", "exclude", "include", "exclude-from", "include-from", "remote-option", "contimeout", "port",
    "sockopts", "outbuf", "stop-after", "stop-at", "time-limit", "write-batch", "only-write-batch", "read-batch",
    "early-input", "password-file", "log-file", "log-file-format", "address", "rsync-path", "config", "dparam",
];

/// Long options without a value that a sender can ignore (receiver-side or
/// informational), mirroring what `server_options()` may send.
const IGNORED_FLAGS: &[&str] = &[
    "delete", "delete-before", "delete-during", "delete-delay", "delete-after", "delete-excluded", "force",
    "super", "no-super", "size-only", "stats", "partial", "delay-updates", "ignore-existing", "existing",
    "ignore-non-existing", "fsync", "msgs2stderr", "no-msgs2stderr", "no-r", "no-recursive", "no-W",
    "no-whole-file", "prune-empty-dirs", "fake-super", "omit-dir-times", "omit-link-times", "keep-dirlinks",
    "mkpath", "human-readable", "progress", "itemize-changes", "list-only", "no-inc-recursive", "inc-recursive",
    "no-i-r", "i-r", "preallocate", "trust-sender", "old-args", "no-motd",
];

/// Parse the argument vector(s). `second` is the secluded-args list (its
/// first element is `rsync`) when `-s` was present in the first list.
pub fn parse_server_args(first: &[Vec<u8>], second: Option<&[Vec<u8>]>) -> Result<ParsedArgs, ArgError> {
    let mut args: Vec<Vec<u8>> = Vec::new();
    match second {
        Some(sec) => {
            // First list: --server, --sender, the bundle and maybe --iconv;
            // a "(null)" line at protocol < 30 and anything after it is junk.
            for a in first {
                if a.as_slice() == b"(null)" || a.as_slice() == b"." {
                    break;
                }
                args.push(a.clone());
            }
            let mut it = sec.iter();
            match it.next() {
                Some(r) if r.as_slice() == b"rsync" => {}
                _ => return Err(ArgError::Syntax { message: "secluded args list does not start with \"rsync\"".into() }),
            }
            args.extend(it.cloned());
        }
        None => args.extend(first.iter().cloned()),
    }
    let mut o = ServerOptions::default();
    let mut raw_options = Vec::new();
    let mut paths = Vec::new();
    let mut i = 0;
    let mut seen_dot = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if seen_dot {
            paths.push(a.clone());
            continue;
        }
        if a.as_slice() == b"." {
            seen_dot = true;
            continue;
        }
        raw_options.push(a.clone());
        if let Some(long) = a.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(p) => (&long[..p], Some(&long[p + 1..])),
                None => (long, None),
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let takes = VALUE_OPTS.contains(&name.as_str());
            let value = if takes {
                match inline {
                    Some(v) => Some(unbackslash(v)),
                    None => {
                        let Some(v) = args.get(i) else {
                            return Err(ArgError::Syntax { message: format!("--{name}: missing argument") });
                        };
                        i += 1;
                        raw_options.push(v.clone());
                        Some(unbackslash(v))
                    }
                }
            } else {
                if inline.is_some() {
                    return Err(ArgError::Syntax { message: format!("--{name}: option does not take an argument") });
                }
                None
            };
            long_option(&mut o, &name, value)?;
            continue;
        }
        if a.len() > 1 && a[0] == b'-' {
            short_bundle(&mut o, &a[1..], &args, &mut i, &mut raw_options)?;
            continue;
        }
        // A path before the "." separator: tolerate like stock (it is a path).
        paths.push(a.clone());
        seen_dot = true;
    }
    if !o.server {
        return Err(ArgError::Syntax { message: "--server is required".into() });
    }
    if !o.sender {
        return Err(ArgError::Push);
    }
    Ok(ParsedArgs { options: o, paths, raw_options })
}

fn short_bundle(o: &mut ServerOptions, b: &[u8], args: &[Vec<u8>], i: &mut usize, raw: &mut Vec<Vec<u8>>) -> Result<(), ArgError> {
    let mut k = 0;
    while k < b.len() {
        let c = b[k];
        k += 1;
        match c {
            b'e' => {
                o.capabilities = Some(b[k..].to_vec());
                return Ok(());
            }
            b'B' | b'M' | b'T' => {
                let v = if k < b.len() {
                    b[k..].to_vec()
                } else {
                    let Some(v) = args.get(*i) else {
                        return Err(ArgError::Syntax { message: format!("-{}: missing argument", c as char) });
                    };
                    *i += 1;
                    raw.push(v.clone());
                    v.clone()
                };
                match c {
                    b'B' => o.block_size = Some(parse_num("block-size", &v)?),
                    b'M' => {
                        // A remote option: parse it as if it had been sent directly.
                        let inner = vec![v];
                        let mut j = 0;
                        let mut sink = Vec::new();
                        if let Some(long) = inner[0].strip_prefix(b"--") {
                            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                                Some(p) => (&long[..p], Some(long[p + 1..].to_vec())),
                                None => (long, None),
                            };
                            long_option(o, &String::from_utf8_lossy(name), inline)?;
                        } else if inner[0].len() > 1 && inner[0][0] == b'-' {
                            short_bundle(o, &inner[0][1..], &inner, &mut j, &mut sink)?;
                        }
                    }
                    _ => {
                        return Err(refuse("temp-dir", Some('T')));
                    }
                }
                return Ok(());
            }
            _ => short_flag(o, c)?,
        }
    }
    Ok(())
}

fn short_flag(o: &mut ServerOptions, c: u8) -> Result<(), ArgError> {
    match c {
        b's' => o.secluded_args = true,
        b'v' => o.verbose = o.verbose.saturating_add(1),
        b'q' => o.quiet = true,
        b'b' => o.backup = true,
        b'u' => o.update = true,
        b'n' => o.dry_run = true,
        b'l' => o.links = true,
        b'd' => o.dirs = true,
        b'L' => o.copy_links = true,
        b'k' => o.copy_dirlinks = true,
        b'K' | b'm' | b'O' | b'J' | b'y' | b'i' | b'P' | b'h' | b'F' => {}
        b'W' => o.whole_file = true,
        b'H' => o.hard_links = true,
        b'o' => o.owner = true,
        b'g' => o.group = true,
        b'D' => {
            o.devices = true;
            o.specials = true;
        }
        b't' => o.times = true,
        b'U' => o.atimes = o.atimes.saturating_add(1),
        b'N' => o.crtimes = true,
        b'p' => o.perms = true,
        b'E' => o.executability = true,
        b'A' => o.acls = true,
        b'X' => o.xattrs = o.xattrs.saturating_add(1),
        b'r' => o.recursive = true,
        b'c' => o.checksum = true,
        b'C' => o.cvs_exclude = true,
        b'I' => o.ignore_times = true,
        b'R' => o.relative = true,
        b'x' => o.one_file_system = o.one_file_system.saturating_add(1),
        b'S' => o.sparse = true,
        b'z' => o.compress = true,
        b'a' => {
            o.recursive = true;
            o.links = true;
            o.perms = true;
            o.times = true;
            o.group = true;
            o.owner = true;
            o.devices = true;
            o.specials = true;
        }
        b'0' => o.from0 = true,
        other => {
            return Err(ArgError::Unknown { message: format!("-{}: unknown option", other as char) });
        }
    }
    Ok(())
}

fn long_option(o: &mut ServerOptions, name: &str, value: Option<Vec<u8>>) -> Result<(), ArgError> {
    let v = || value.clone().unwrap_or_default();
    match name {
        "server" => o.server = true,
        "sender" => o.sender = true,
        "secluded-args" | "protect-args" => o.secluded_args = true,
        "dry-run" => o.dry_run = true,
        "recursive" => o.recursive = true,
        "dirs" => o.dirs = true,
        "relative" => o.relative = true,
        "no-relative" | "no-R" => o.relative = false,
        "implied-dirs" => o.implied_dirs = true,
        "no-implied-dirs" => o.implied_dirs = false,
        "links" => o.links = true,
        "copy-links" => o.copy_links = true,
        "copy-dirlinks" => o.copy_dirlinks = true,
        "copy-unsafe-links" => o.copy_unsafe_links = true,
        "safe-links" => o.safe_links = true,
        "hard-links" => o.hard_links = true,
        "perms" => o.perms = true,
        "times" => o.times = true,
        "owner" => o.owner = true,
        "group" => o.group = true,
        "devices" => o.devices = true,
        "specials" => o.specials = true,
        "no-specials" => o.specials = false,
        "no-devices" => o.devices = false,
        "numeric-ids" => o.numeric_ids = true,
        "checksum" => o.checksum = true,
        "whole-file" => o.whole_file = true,
        "sparse" => o.sparse = true,
        "one-file-system" => o.one_file_system = o.one_file_system.saturating_add(1),
        "cvs-exclude" => o.cvs_exclude = true,
        "compress" => o.compress = true,
        "compress-level" | "zl" => o.compress_level = Some(parse_num("compress-level", &v())?),
        "compress-choice" | "zc" => o.compress_choice = Some(v()),
        "old-compress" => o.old_compress = true,
        "new-compress" => o.new_compress = true,
        "checksum-choice" | "cc" => o.checksum_choice = Some(v()),
        "checksum-seed" => o.checksum_seed = Some(parse_num("checksum-seed", &v())?),
        "block-size" => o.block_size = Some(parse_num("block-size", &v())?),
        "list-only" => o.list_only = true,
        "files-from" => o.files_from = Some(v()),
        "from0" => o.from0 = true,
        "ignore-errors" => o.ignore_errors = true,
        "delete-missing-args" => o.delete_missing_args = true,
        "ignore-missing-args" => o.ignore_missing_args = true,
        "timeout" => o.timeout = Some(parse_num("timeout", &v())?),
        "bwlimit" => o.bwlimit = Some(String::from_utf8_lossy(&v()).into_owned()),
        "append" => o.append = o.append.saturating_add(1),
        "append-verify" => o.append = 2,
        "inplace" => o.inplace = true,
        "max-alloc" => o.max_alloc = Some(String::from_utf8_lossy(&v()).into_owned()),
        "ignore-times" => o.ignore_times = true,
        "update" => o.update = true,
        "backup" => o.backup = true,
        "info" => o.info.push(v()),
        "debug" => o.debug.push(v()),
        "log-format" | "out-format" => o.log_format = Some(v()),
        "use-qsort" => o.use_qsort = true,
        "verbose" => o.verbose = o.verbose.saturating_add(1),
        "quiet" => o.quiet = true,
        "protocol" => o.protocol_override = Some(parse_num("protocol", &v())?),
        "backup-dir" | "suffix" | "skip-compress" | "max-delete" | "min-size" | "max-size" | "modify-window"
        | "partial-dir" | "temp-dir" | "compare-dest" | "copy-dest" | "link-dest" | "usermap" | "groupmap" => {}
        "acls" => return Err(refuse("acls", Some('A'))),
        "xattrs" => return Err(refuse("xattrs", Some('X'))),
        "atimes" => return Err(refuse("atimes", Some('U'))),
        "crtimes" => return Err(refuse("crtimes", Some('N'))),
        "iconv" => return Err(refuse("iconv", None)),
        "remove-source-files" | "remove-sent-files" => return Err(refuse("remove-source-files", None)),
        "copy-devices" => return Err(refuse("copy-devices", None)),
        "write-devices" => return Err(refuse("write-devices", None)),
        "log-file" | "log-file-format" => return Err(refuse(name, None)),
        "insecure-links" => return Err(refuse("insecure-links", None)),
        n if IGNORED_FLAGS.contains(&n) => {}
        n if VALUE_OPTS.contains(&n) => {}
        n => return Err(ArgError::Unknown { message: format!("--{n}: unknown option") }),
    }
    Ok(())
}

impl ServerOptions {
    /// Refuse what the file list or transfer cannot express yet
    /// (ACLs, xattrs, atimes, crtimes): those change the wire format.
    pub fn check_wire_support(&self) -> Result<(), ArgError> {
        if self.acls {
            return Err(refuse("acls", Some('A')));
        }
        if self.xattrs > 0 {
            return Err(refuse("xattrs", Some('X')));
        }
        if self.atimes > 0 {
            return Err(refuse("atimes", Some('U')));
        }
        if self.crtimes {
            return Err(refuse("crtimes", Some('N')));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<Vec<u8>> {
        s.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn framing_nul_and_lf() {
        let l = Limits::default();
        let (a, n) = decode_arg_list(b"--server\0--sender\0-logDtpre.LsfxCIvu\0.\0mod/\0\0rest", true, &l).unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(n, 44);
        let (a, _) = decode_arg_list(b"--server\n--sender\n-logDtpr\n.\nmod/\n\n", false, &l).unwrap();
        assert_eq!(a[2], b"-logDtpr");
        assert!(decode_arg_list(b"--server\0--sen", true, &l).unwrap_err().is_incomplete());
        let small = Limits { max_args: 2, ..Limits::default() };
        assert!(matches!(decode_arg_list(b"a\0b\0c\0\0", true, &small), Err(DecodeError::Invalid { .. })));
    }

    #[test]
    fn archive_bundle_with_caps() {
        let p = parse_server_args(&v(&["--server", "--sender", "-vlogDtprcze.iLsfxCIvu", ".", "mod/"]), None).unwrap();
        let o = &p.options;
        assert!(o.links && o.owner && o.group && o.devices && o.specials && o.times && o.perms && o.recursive);
        assert!(o.checksum && o.compress);
        assert_eq!(o.verbose, 1);
        assert_eq!(o.capabilities.as_deref(), Some(&b".iLsfxCIvu"[..]));
        assert_eq!(p.paths, v(&["mod/"]));
    }

    #[test]
    fn caps_letters_are_not_options() {
        // 'C' and 'I' after 'e' must not set cvs_exclude / ignore_times.
        let p = parse_server_args(&v(&["--server", "--sender", "-re.iLsfxCIvu", ".", "m/"]), None).unwrap();
        assert!(!p.options.cvs_exclude && !p.options.ignore_times);
    }

    #[test]
    fn secluded_second_list() {
        let first = v(&["--server", "--sender", "-slogDtpre.iLsfxCIvu"]);
        let second = v(&["rsync", "--bwlimit=1000", ".", "mod/a b"]);
        let p = parse_server_args(&first, Some(&second)).unwrap();
        assert!(p.options.secluded_args);
        assert_eq!(p.options.bwlimit.as_deref(), Some("1000"));
        assert_eq!(p.paths, v(&["mod/a b"]));
        // proto < 30 quirk: "(null)" then junk in the first list.
        let first = v(&["--server", "--sender", "-slogDtpr", "(null)", ".", "mod/"]);
        let second = v(&["rsync", ".", "mod/"]);
        assert_eq!(parse_server_args(&first, Some(&second)).unwrap().paths, v(&["mod/"]));
    }

    #[test]
    fn values_and_refusals() {
        let p = parse_server_args(
            &v(&["--server", "--sender", "-re.iLsfxCIvu", "--compress-level=3", "-B4096", "--checksum-seed=7", "--timeout=5", "--zc=zstd", ".", "m/"]),
            None,
        )
        .unwrap();
        assert_eq!(p.options.compress_level, Some(3));
        assert_eq!(p.options.block_size, Some(4096));
        assert_eq!(p.options.checksum_seed, Some(7));
        assert_eq!(p.options.compress_choice.as_deref(), Some(&b"zstd"[..]));
        let e = parse_server_args(&v(&["--server", "--sender", "-rA", ".", "m/"]), None);
        assert!(parse_server_args(&v(&["--server", "--sender", "--frob", ".", "m/"]), None).is_err());
        let _ = e;
        assert_eq!(parse_server_args(&v(&["--server", "-r", ".", "m/"]), None), Err(ArgError::Push));
        assert!(matches!(
            parse_server_args(&v(&["--server", "--sender", "--iconv=utf8", ".", "m/"]), None),
            Err(ArgError::Unsupported { .. })
        ));
        let p = parse_server_args(&v(&["--server", "--sender", "-rA", ".", "m/"]), None).unwrap();
        assert_eq!(
            p.options.check_wire_support().unwrap_err().to_string(),
            "The server is configured to refuse --acls (-A)"
        );
    }
}
