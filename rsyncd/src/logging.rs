//! The daemon's own log: `log file`, `syslog facility` / `syslog tag`,
//! `transfer logging` with `log format`, and the connection lines stock
//! writes ("connect from HOST (ADDR)", "rsync on REQUEST from HOST (ADDR)").
//!
//! [`format_line`] is a pure function (mirrors log.c `log_formatted()`);
//! the sinks ([`FileSink`], syslog) and the process-wide registry
//! ([`install`]) do the IO.  Operational diagnostics still go to `tracing`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::access::hosts::{HostName, Peer, PeerInfo, SystemResolver, DNS_TIMEOUT};
use crate::config::Config;

/// Stock's default `log format`.
pub const DEFAULT_LOG_FORMAT: &str = "%o %h [%a] %m (%u) %f %l";

// rsync.h ITEM_* bits used by `%i`.
const ITEM_REPORT_ATIME: u32 = 1 << 0;
const ITEM_REPORT_CHANGE: u32 = 1 << 1;
const ITEM_REPORT_SIZE: u32 = 1 << 2;
const ITEM_REPORT_TIME: u32 = 1 << 3;
const ITEM_REPORT_PERMS: u32 = 1 << 4;
const ITEM_REPORT_OWNER: u32 = 1 << 5;
const ITEM_REPORT_GROUP: u32 = 1 << 6;
const ITEM_REPORT_ACL: u32 = 1 << 7;
const ITEM_REPORT_XATTR: u32 = 1 << 8;
const ITEM_REPORT_CRTIME: u32 = 1 << 10;
const ITEM_BASIS_TYPE_FOLLOWS: u32 = 1 << 11;
const ITEM_XNAME_FOLLOWS: u32 = 1 << 12;
const ITEM_IS_NEW: u32 = 1 << 13;
const ITEM_LOCAL_CHANGE: u32 = 1 << 14;
const ITEM_TRANSFER: u32 = 1 << 15;
const ITEM_MISSING_DATA: u32 = 1 << 16;
const ITEM_DELETED: u32 = 1 << 17;

const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFIFO: u32 = 0o010000;
const S_IFSOCK: u32 = 0o140000;

/// What a log line knows about the session.
#[derive(Debug, Clone, Default)]
pub struct SessionFacts<'a> {
    /// `%h`: the client's host name as stock shows it (`UNDETERMINED`, `UNKNOWN` or a name).
    pub host: &'a str,
    /// `%a`: the client's address.
    pub addr: &'a str,
    /// `%m`: module name.
    pub module: &'a str,
    /// `%P`: module path.
    pub module_path: &'a [u8],
    /// `%u`: authenticated user ("" when the module has no auth).
    pub user: &'a [u8],
    /// `%o`: operation ("send").
    pub op: &'a str,
    /// `%p`: process id.
    pub pid: u32,
    /// `%t`: the time now, already formatted as stock's `timestring()`.
    pub now: &'a str,
    /// The transfer preserves modification times (`%i` 't' vs 'T').
    pub preserve_times: bool,
    /// The transfer preserves owners (`%U`; else 0).
    pub preserve_uid: bool,
    /// The transfer preserves groups (`%G`; else "DEFAULT").
    pub preserve_gid: bool,
}

/// What a log line knows about one file.
#[derive(Debug, Clone, Default)]
pub struct FileFacts<'a> {
    /// `%n`: the name as in the file list.
    pub name: &'a [u8],
    /// `%f`: the module-relative path.
    pub path: &'a [u8],
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// `%l`: file length.
    pub len: u64,
    /// `%M`: the modification time, already formatted as `timestring()`.
    pub mtime: &'a str,
    /// `%U`.
    pub uid: u32,
    /// `%G`.
    pub gid: u32,
    /// `%L`: symlink target.
    pub link: Option<&'a [u8]>,
    /// `%L`: hard-link target (the xname the client sent), shown with ` => `.
    pub hlink: Option<&'a [u8]>,
    /// `%i`: the item flags (rsync.h ITEM_*).
    pub iflags: u32,
    /// `%b`: bytes sent for this file.
    pub bytes_sent: u64,
    /// `%c`: bytes of block checksums received for this file.
    pub sum_bytes: u64,
}

/// Expand a `log format` (mirrors log.c `log_formatted()`): `%[-][width]X`
/// with stock's escapes; unknown escapes stay as written.  Returns the line
/// without its newline and without control-character escaping (see
/// [`escape_controls`]).
pub fn format_line(format: &[u8], s: &SessionFacts<'_>, f: &FileFacts<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(format.len() + 64);
    let mut i = 0;
    while i < format.len() {
        let c = format[i];
        if c != b'%' {
            out.push(c);
            i += 1;
            continue;
        }
        let start = i;
        i += 1;
        let mut humanize = 0;
        while format.get(i) == Some(&b'\'') {
            humanize += 1;
            i += 1;
        }
        let left = format.get(i) == Some(&b'-');
        if left {
            i += 1;
        }
        let wstart = i;
        while i < format.len() && format[i].is_ascii_digit() && i - wstart < 20 {
            i += 1;
        }
        let width: Option<usize> = std::str::from_utf8(&format[wstart..i])
            .ok()
            .and_then(|w| w.parse().ok());
        while format.get(i) == Some(&b'\'') {
            humanize += 1;
            i += 1;
        }
        let Some(&esc) = format.get(i) else {
            out.extend_from_slice(&format[start..]);
            break;
        };
        i += 1;
        let has_width = left || width.is_some();
        let pad = |v: &[u8], out: &mut Vec<u8>| {
            let w = width.unwrap_or(0);
            let fill = w.saturating_sub(v.len());
            if left {
                out.extend_from_slice(v);
                out.resize(out.len() + fill, b' ');
            } else {
                out.resize(out.len() + fill, b' ');
                out.extend_from_slice(v);
            }
        };
        let num = |n: u64| big_num(n, humanize).into_bytes();
        let value: Vec<u8> = match esc {
            b'h' => s.host.as_bytes().to_vec(),
            b'a' => s.addr.as_bytes().to_vec(),
            b'l' => num(f.len),
            b'U' => (if s.preserve_uid { f.uid } else { 0 })
                .to_string()
                .into_bytes(),
            b'G' if s.preserve_gid => f.gid.to_string().into_bytes(),
            b'G' => b"DEFAULT".to_vec(),
            b'p' => s.pid.to_string().into_bytes(),
            b'M' => f.mtime.replace(' ', "-").into_bytes(),
            b'B' => permstring(f.mode)[1..].to_vec(),
            b'o' => s.op.as_bytes().to_vec(),
            b'f' => {
                let p = clean_fname(f.path);
                p.strip_prefix(b"/").unwrap_or(&p).to_vec()
            }
            b'n' => {
                let mut n = f.name.to_vec();
                if f.mode & S_IFMT == S_IFDIR {
                    n.push(b'/');
                }
                n
            }
            b'L' => {
                // The arrow and a padded target form one value; no second padding.
                let (arrow, target): (&[u8], &[u8]) = match (f.hlink, f.link) {
                    (Some(h), _) if !h.is_empty() => (b" => ", h),
                    (_, Some(t)) if f.mode & S_IFMT == S_IFLNK => (b" -> ", t),
                    _ if !has_width => continue,
                    _ => (b"    ", b""),
                };
                out.extend_from_slice(arrow);
                pad(target, &mut out);
                continue;
            }
            b'm' => s.module.as_bytes().to_vec(),
            b't' => s.now.as_bytes().to_vec(),
            b'P' => s.module_path.to_vec(),
            b'u' => s.user.to_vec(),
            b'b' | b'c' => {
                let n = if f.iflags & ITEM_TRANSFER == 0 {
                    0
                } else if esc == b'b' {
                    f.bytes_sent
                } else {
                    f.sum_bytes
                };
                num(n)
            }
            // The whole-file checksum is not kept for the log: stock prints
            // blanks of the checksum's width (MD5: 32) when it has none.
            b'C' => vec![b' '; 32],
            b'i' => itemize(f.iflags, f.mode, s.op, s.preserve_times).into_bytes(),
            b'%' => b"%".to_vec(),
            _ => {
                out.extend_from_slice(&format[start..i]);
                continue;
            }
        };
        if has_width {
            pad(&value, &mut out);
        } else {
            out.extend_from_slice(&value);
        }
    }
    out
}

/// Numbers as stock's `do_big_num()`: plain, or with `'` thousands separated
/// by commas.  (Stock's `''` unit suffixes are shown as `'`.)
fn big_num(n: u64, humanize: u32) -> String {
    let plain = n.to_string();
    if humanize == 0 || plain.len() <= 3 {
        return plain;
    }
    let mut s = String::with_capacity(plain.len() + plain.len() / 3);
    for (k, ch) in plain.chars().enumerate() {
        if k > 0 && (plain.len() - k).is_multiple_of(3) {
            s.push(',');
        }
        s.push(ch);
    }
    s
}

/// `ls -l` style permissions (mirrors lib/permstring.c `permstring()`), with the type char.
pub fn permstring(mode: u32) -> [u8; 10] {
    let map = b"rwxrwxrwx";
    let mut p = *b"----------";
    for i in 0..9 {
        if mode & (1 << i) != 0 {
            p[9 - i] = map[8 - i];
        }
    }
    if mode & 0o4000 != 0 {
        p[3] = if mode & 0o100 != 0 { b's' } else { b'S' };
    }
    if mode & 0o2000 != 0 {
        p[6] = if mode & 0o010 != 0 { b's' } else { b'S' };
    }
    if mode & 0o1000 != 0 {
        p[9] = if mode & 0o001 != 0 { b't' } else { b'T' };
    }
    p[0] = match mode & S_IFMT {
        S_IFDIR => b'd',
        S_IFLNK => b'l',
        S_IFBLK => b'b',
        S_IFCHR => b'c',
        S_IFSOCK => b's',
        S_IFIFO => b'p',
        _ => b'-',
    };
    p
}

/// The `%i` string (mirrors the `'i'` case of log.c `log_formatted()`).
pub fn itemize(iflags: u32, mode: u32, op: &str, preserve_times: bool) -> String {
    if iflags & ITEM_DELETED != 0 {
        return "*deleting  ".into();
    }
    let bit = |b: u32, yes: u8| if iflags & b != 0 { yes } else { b'.' };
    let mut c = [b'.'; 11];
    c[0] = if iflags & ITEM_LOCAL_CHANGE != 0 {
        if iflags & ITEM_XNAME_FOLLOWS != 0 {
            b'h'
        } else {
            b'c'
        }
    } else if iflags & ITEM_TRANSFER == 0 {
        b'.'
    } else if op.starts_with('s') {
        b'<'
    } else {
        b'>'
    };
    let ty = mode & S_IFMT;
    if ty == S_IFLNK {
        c[1] = b'L';
        c[3] = b'.';
        // Stock: 't' only when symlink times are preserved on the receiver;
        // as a sender we cannot know, and the wire flags say TIMEFAIL.
        c[4] = if iflags & ITEM_REPORT_TIME == 0 {
            b'.'
        } else if !preserve_times || iflags & ITEM_REPORT_SIZE != 0 {
            b'T'
        } else {
            b't'
        };
    } else {
        c[1] = match ty {
            S_IFDIR => b'd',
            S_IFIFO | S_IFSOCK => b'S',
            S_IFCHR | S_IFBLK => b'D',
            _ => b'f',
        };
        c[3] = bit(ITEM_REPORT_SIZE, b's');
        c[4] = if iflags & ITEM_REPORT_TIME == 0 {
            b'.'
        } else if !preserve_times {
            b'T'
        } else {
            b't'
        };
    }
    c[2] = bit(ITEM_REPORT_CHANGE, b'c');
    c[5] = bit(ITEM_REPORT_PERMS, b'p');
    c[6] = bit(ITEM_REPORT_OWNER, b'o');
    c[7] = bit(ITEM_REPORT_GROUP, b'g');
    let both = ITEM_REPORT_ATIME | ITEM_REPORT_CRTIME;
    c[8] = if iflags & both == 0 {
        b'.'
    } else if iflags & both == both {
        b'b'
    } else if iflags & ITEM_REPORT_ATIME != 0 {
        b'u'
    } else {
        b'n'
    };
    c[9] = bit(ITEM_REPORT_ACL, b'a');
    c[10] = bit(ITEM_REPORT_XATTR, b'x');
    if iflags & (ITEM_IS_NEW | ITEM_MISSING_DATA) != 0 {
        let ch = if iflags & ITEM_IS_NEW != 0 {
            b'+'
        } else {
            b'?'
        };
        c[2..].fill(ch);
    } else if matches!(c[0], b'.' | b'h' | b'c') && c[2..].iter().all(|&b| b == b'.') {
        c[2..].fill(b' ');
    }
    String::from_utf8_lossy(&c).into_owned()
}

/// Remove `.` components, duplicate slashes and a trailing slash (mirrors
/// util1.c `clean_fname()` without `..` collapsing, which our module paths never contain).
fn clean_fname(p: &[u8]) -> Vec<u8> {
    let abs = p.first() == Some(&b'/');
    let parts: Vec<&[u8]> = p
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let mut out = Vec::with_capacity(p.len());
    if abs {
        out.push(b'/');
    }
    for (k, c) in parts.iter().enumerate() {
        if k > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Escape control characters as stock writes a log file (mirrors log.c
/// `filtered_fwrite()` with C1 escaping): bytes below 0x20 except tab,
/// bytes 0x80-0x9f, and a backslash that would start a literal `\#ooo`,
/// become `\#ooo` (octal).
pub fn escape_controls(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    for (k, &b) in line.iter().enumerate() {
        let fake = b == b'\\'
            && k + 4 < line.len()
            && line[k + 1] == b'#'
            && line[k + 2..k + 5].iter().all(u8::is_ascii_digit);
        if fake || (b != b'\t' && (b < 0x20 || (0x80..=0x9f).contains(&b))) {
            out.extend_from_slice(format!("\\#{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Stock's `timestring()`: local time as `YYYY/MM/DD HH:MM:SS`.
pub fn timestring(t: i64) -> String {
    let tt = t as libc::time_t;
    // SAFETY: `tm` is plain old data, fully written by localtime_r on success;
    // both pointers are valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    if unsafe { libc::localtime_r(&tt, &mut tm) }.is_null() {
        return "(time out of range)".into();
    }
    format!(
        "{:4}/{:02}/{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A log file, appended to under a mutex.  Reopened when the path no
/// longer names the open file (log rotation), as stock's per-connection
/// processes effectively do.
#[derive(Debug)]
pub struct FileSink {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl FileSink {
    /// Open (create) `path` for appending; mode 0644 like stock's umask 022.
    pub fn open(path: &Path) -> std::io::Result<FileSink> {
        let f = Self::open_file(path)?;
        Ok(FileSink {
            path: path.to_path_buf(),
            file: Mutex::new(Some(f)),
        })
    }

    fn open_file(path: &Path) -> std::io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .open(path)
    }

    /// Append `YYYY/MM/DD HH:MM:SS [pid] LINE\n`, LINE with controls escaped.
    pub fn write_line(&self, line: &[u8]) -> std::io::Result<()> {
        let mut rec = format!("{} [{}] ", timestring(now_secs()), std::process::id()).into_bytes();
        rec.extend_from_slice(&escape_controls(line));
        rec.push(b'\n');
        let mut g = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let stale = match (&*g, std::fs::metadata(&self.path)) {
            (Some(f), Ok(now)) => f
                .metadata()
                .map(|m| m.ino() != now.ino() || m.dev() != now.dev())
                .unwrap_or(true),
            _ => true,
        };
        if stale {
            *g = Some(Self::open_file(&self.path)?);
        }
        match g.as_mut() {
            Some(f) => f.write_all(&rec),
            None => Ok(()),
        }
    }
}

/// Where a log line goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// `log file`.
    File(Arc<FileSink>),
    /// syslog, with the tag and facility of the module (or the global ones).
    Syslog(Arc<SyslogSink>),
}

impl Target {
    /// Write one line (without newline).
    pub fn write(&self, line: &[u8]) {
        match self {
            Target::File(f) => {
                if let Err(e) = f.write_line(line) {
                    tracing::warn!("writing log file {}: {e}", f.path.display());
                }
            }
            Target::Syslog(s) => s.write_line(line),
        }
    }
}

/// The socket the system logger reads (glibc's `_PATH_LOG`).
pub const SYSLOG_SOCKET: &str = "/dev/log";

/// Messages to the system logger with one tag and facility.  Stock calls
/// `openlog()` with the module's `syslog tag` and `syslog facility` in each
/// connection's process; one process serving every module cannot use
/// `openlog()`, so this writes the records glibc's `syslog()` would
/// ([`syslog_record`]) to the logger's socket itself.
#[derive(Debug)]
pub struct SyslogSink {
    tag: String,
    facility: libc::c_int,
    path: PathBuf,
    conn: Mutex<Option<SyslogConn>>,
}

#[derive(Debug)]
enum SyslogConn {
    Dgram(std::os::unix::net::UnixDatagram),
    /// A stream socket: records end with a NUL, as glibc sends them.
    Stream(std::os::unix::net::UnixStream),
}

impl SyslogConn {
    fn connect(path: &Path) -> std::io::Result<SyslogConn> {
        let d = std::os::unix::net::UnixDatagram::unbound()?;
        match d.connect(path) {
            Ok(()) => Ok(SyslogConn::Dgram(d)),
            Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => Ok(SyslogConn::Stream(
                std::os::unix::net::UnixStream::connect(path)?,
            )),
            Err(e) => Err(e),
        }
    }

    fn send(&mut self, rec: &[u8]) -> std::io::Result<()> {
        match self {
            SyslogConn::Dgram(d) => d.send(rec).map(drop),
            SyslogConn::Stream(s) => {
                s.write_all(rec)?;
                s.write_all(b"\0")
            }
        }
    }
}

impl SyslogSink {
    /// A sink for `tag` (empty: stock's default "rsyncd") and `facility`
    /// (a `LOG_*` value), writing to `path` (normally [`SYSLOG_SOCKET`]).
    pub fn new(tag: &str, facility: libc::c_int, path: &Path) -> SyslogSink {
        SyslogSink {
            tag: if tag.is_empty() { "rsyncd" } else { tag }.to_string(),
            facility,
            path: path.to_path_buf(),
            conn: Mutex::new(None),
        }
    }

    /// Send one line (priority `LOG_INFO`), controls escaped.  Like
    /// `syslog()`, a logger that is not there loses the line; a logger that
    /// restarted is reconnected to once.
    pub fn write_line(&self, line: &[u8]) {
        let rec = syslog_record(
            self.facility | libc::LOG_INFO,
            &self.tag,
            std::process::id(),
            now_secs(),
            &escape_controls(line),
        );
        let mut g = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..2 {
            if g.is_none() {
                *g = SyslogConn::connect(&self.path).ok();
            }
            let Some(c) = g.as_mut() else { return };
            if c.send(&rec).is_ok() {
                return;
            }
            *g = None;
        }
    }
}

/// One record as glibc's `syslog()` sends it to the local logger:
/// `<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE` (local time, C-locale month).
pub fn syslog_record(pri: libc::c_int, tag: &str, pid: u32, t: i64, msg: &[u8]) -> Vec<u8> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let tt = t as libc::time_t;
    // SAFETY: `tm` is plain old data, fully written by localtime_r on success;
    // both pointers are valid for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: see above.
    let ok = !unsafe { libc::localtime_r(&tt, &mut tm) }.is_null();
    let stamp = if ok {
        format!(
            "{} {:2} {:02}:{:02}:{:02}",
            MONTHS[tm.tm_mon.clamp(0, 11) as usize],
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        )
    } else {
        "Jan  1 00:00:00".to_string()
    };
    let mut rec = format!("<{pri}>{stamp} {tag}[{pid}]: ").into_bytes();
    rec.extend_from_slice(msg);
    rec
}

/// A syslog facility name (or number) as `LOG_*`.
pub fn facility(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "auth" => libc::LOG_AUTH,
        "authpriv" => libc::LOG_AUTHPRIV,
        "cron" => libc::LOG_CRON,
        "daemon" => libc::LOG_DAEMON,
        "ftp" => libc::LOG_FTP,
        "kern" => libc::LOG_KERN,
        "lpr" => libc::LOG_LPR,
        "mail" => libc::LOG_MAIL,
        "news" => libc::LOG_NEWS,
        "security" => libc::LOG_AUTH,
        "syslog" => libc::LOG_SYSLOG,
        "user" => libc::LOG_USER,
        "uucp" => libc::LOG_UUCP,
        "local0" => libc::LOG_LOCAL0,
        "local1" => libc::LOG_LOCAL1,
        "local2" => libc::LOG_LOCAL2,
        "local3" => libc::LOG_LOCAL3,
        "local4" => libc::LOG_LOCAL4,
        "local5" => libc::LOG_LOCAL5,
        "local6" => libc::LOG_LOCAL6,
        "local7" => libc::LOG_LOCAL7,
        n => return n.parse::<libc::c_int>().ok().map(|v| v << 3),
    })
}

/// Per-module log settings.
#[derive(Debug, Clone)]
pub struct ModuleLog {
    /// Where the module's lines go.
    pub target: Target,
    /// `transfer logging`.
    pub transfer_logging: bool,
    /// `log format`.
    pub format: Vec<u8>,
    /// `reverse lookup` of the module (`%h`).
    pub reverse_lookup: bool,
    /// The module's name (finds its settings after a reload).
    pub module: String,
}

/// The process-wide log configuration.
#[derive(Debug)]
pub struct Logger {
    /// Global target (the connect line).
    pub global: Target,
    /// `reverse lookup` in the global section.
    pub reverse_lookup: bool,
    /// Per module, in configuration order (the order of `ServerState::modules`).
    pub modules: Vec<ModuleLog>,
}

/// The log configuration in force ([`install`], replaced by [`reload`]).
static LOGGER: RwLock<Option<Arc<Logger>>> = RwLock::new(None);

fn logger() -> Option<Arc<Logger>> {
    LOGGER.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One module's settings in a [`Logger`] (derefs to its [`ModuleLog`]).
pub struct ModuleLogRef {
    logger: Arc<Logger>,
    index: usize,
}

impl std::ops::Deref for ModuleLogRef {
    type Target = ModuleLog;
    fn deref(&self) -> &ModuleLog {
        &self.logger.modules[self.index]
    }
}

/// The sinks opened so far, shared between modules that name the same.
#[derive(Default)]
struct Sinks {
    files: HashMap<PathBuf, Arc<FileSink>>,
    syslog: HashMap<(String, libc::c_int), Arc<SyslogSink>>,
}

fn target_for(
    file: &Option<PathBuf>,
    fac: &str,
    tag: &str,
    sinks: &mut Sinks,
    syslog_fallback: libc::c_int,
) -> Target {
    let files = &mut sinks.files;
    if let Some(p) = file.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        if let Some(s) = files.get(p) {
            return Target::File(s.clone());
        }
        match FileSink::open(p) {
            Ok(s) => {
                let s = Arc::new(s);
                files.insert(p.clone(), s.clone());
                return Target::File(s);
            }
            // Stock falls back to syslog when the log file cannot be opened.
            Err(e) => tracing::warn!(
                "failed to open log-file {}: {e}; Ignoring \"log file\" setting.",
                p.display()
            ),
        }
    }
    let fac = facility(fac).unwrap_or(syslog_fallback);
    let s = sinks
        .syslog
        .entry((tag.to_string(), fac))
        .or_insert_with(|| Arc::new(SyslogSink::new(tag, fac, Path::new(SYSLOG_SOCKET))));
    Target::Syslog(s.clone())
}

/// Set up logging from the configuration (once per process; later calls
/// are ignored).  Opens the log files now so errors show at start-up.
pub fn install(config: &Config) {
    if logger().is_some() {
        return;
    }
    let l = Arc::new(build(config));
    let mut g = LOGGER.write().unwrap_or_else(|p| p.into_inner());
    if g.is_none() {
        *g = Some(l);
    }
}

/// Replaces the log configuration (a configuration reload): the log files
/// are opened again (so a rotated file is followed), lines from then on use
/// the new settings; a module's lines are found by its name.
pub fn reload(config: &Config) {
    let l = Arc::new(build(config));
    *LOGGER.write().unwrap_or_else(|p| p.into_inner()) = Some(l);
}

fn build(config: &Config) -> Logger {
    let mut sinks = Sinks::default();
    let g = &config.global;
    let gfac = facility(&g.syslog_facility).unwrap_or(libc::LOG_DAEMON);
    let global = target_for(
        &g.log_file,
        &g.syslog_facility,
        &g.syslog_tag,
        &mut sinks,
        gfac,
    );
    let modules: Vec<ModuleLog> = config
        .modules
        .iter()
        .map(|m| ModuleLog {
            target: target_for(
                &m.log_file,
                &m.syslog_facility,
                &m.syslog_tag,
                &mut sinks,
                gfac,
            ),
            transfer_logging: m.transfer_logging,
            format: if m.log_format.is_empty() {
                DEFAULT_LOG_FORMAT
            } else {
                &m.log_format
            }
            .as_bytes()
            .to_vec(),
            // Stock resolves the name at connect time when the global
            // `reverse lookup` is on, whatever the module says.
            reverse_lookup: g.reverse_lookup || m.reverse_lookup,
            module: m.name.clone(),
        })
        .collect();
    Logger {
        global,
        reverse_lookup: g.reverse_lookup,
        modules,
    }
}

thread_local! {
    /// The current session's peer and its resolved name (one lookup per session).
    static HOST: std::cell::RefCell<Option<(IpAddr, HostName)>> = const { std::cell::RefCell::new(None) };
}

/// The client's name as stock shows it, resolved at most once per session thread.
fn host_name(peer: &SocketAddr, reverse: bool) -> String {
    if !reverse {
        return HostName::Undetermined.shown().to_string();
    }
    let p = Peer::from_socket(peer);
    if let Some(n) = HOST.with(|h| {
        h.borrow()
            .as_ref()
            .filter(|(a, _)| *a == p.addr)
            .map(|(_, n)| n.clone())
    }) {
        return n.shown().to_string();
    }
    let resolver = SystemResolver {
        timeout: DNS_TIMEOUT,
    };
    let n = PeerInfo::new(p, &resolver).host(true).0;
    HOST.with(|h| *h.borrow_mut() = Some((p.addr, n.clone())));
    n.shown().to_string()
}

fn module_log(
    state: &crate::module::ServerState,
    module: &crate::module::ModuleRuntime,
) -> Option<ModuleLogRef> {
    let i = state
        .modules
        .iter()
        .position(|m| std::ptr::eq(&**m, module))?;
    let logger = logger()?;
    // After a reload the state of an older session may order its modules
    // differently: then the module's settings are found by name.
    let index = match logger.modules.get(i) {
        Some(ml) if ml.module == module.name => i,
        _ => logger.modules.iter().rposition(|ml| ml.module == module.name)?,
    };
    Some(ModuleLogRef { logger, index })
}

/// "connect from HOST (ADDR)" (mirrors clientserver.c `start_daemon()`).
/// The address logged when the peer is unknown (stdio modes without
/// `SSH_CONNECTION`), as stock's `0.0.0.0`.
pub fn unknown_peer() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

pub fn log_connect(peer: &SocketAddr) {
    let Some(l) = logger() else { return };
    let addr = Peer::from_socket(peer).addr.to_string();
    let host = host_name(peer, l.reverse_lookup);
    l.global
        .write(format!("connect from {host} ({addr})").as_bytes());
}

/// "rsync on REQUEST from [USER@]HOST (ADDR)" (mirrors clientserver.c
/// `rsync_module()`); REQUEST is the arguments after the `.` joined by spaces.
pub fn log_request(
    state: &crate::module::ServerState,
    module: &crate::module::ModuleRuntime,
    peer: &SocketAddr,
    user: Option<&[u8]>,
    args: &[Vec<u8>],
) {
    crate::metrics::transfer_started();
    let Some(ml) = module_log(state, module) else {
        return;
    };
    log_request_line(state, module, peer, user, args);
    // flist.c send_file_list() logs this as it starts, which follows at once.
    ml.target.write(b"building file list");
}

/// Only the "rsync on REQUEST from [USER@]HOST (ADDR)" line of
/// [`log_request`] (for a session refused after its arguments).
pub fn log_request_line(
    state: &crate::module::ServerState,
    module: &crate::module::ModuleRuntime,
    peer: &SocketAddr,
    user: Option<&[u8]>,
    args: &[Vec<u8>],
) {
    let Some(ml) = module_log(state, module) else {
        return;
    };
    let dot = args
        .iter()
        .position(|a| a.as_slice() == b".")
        .map(|p| p + 1)
        .unwrap_or(args.len());
    let request = args[dot..].join(&b' ');
    let addr = Peer::from_socket(peer).addr.to_string();
    let host = host_name(peer, ml.reverse_lookup);
    let mut line = b"rsync on ".to_vec();
    line.extend_from_slice(&request);
    line.extend_from_slice(b" from ");
    if let Some(u) = user.filter(|u| !u.is_empty()) {
        line.extend_from_slice(u);
        line.push(b'@');
    }
    line.extend_from_slice(format!("{host} ({addr})").as_bytes());
    ml.target.write(&line);
}

/// One line into a module's log (stock's `FLOG` once the module's logging
/// is set up, `log_init(1)` in `rsync_module()`).
pub fn log_module(
    state: &crate::module::ServerState,
    module: &crate::module::ModuleRuntime,
    line: &[u8],
) {
    tracing::info!(module = %module.name, "{}", String::from_utf8_lossy(&escape_controls(line)));
    if let Some(ml) = module_log(state, module) {
        ml.target.write(line);
    }
}

/// One line into the daemon's global log (stock's `FLOG` before a module's
/// logging is set up: connection, access and authentication lines).
pub fn log_global(line: &str) {
    tracing::info!(
        "{}",
        String::from_utf8_lossy(&escape_controls(line.as_bytes()))
    );
    if let Some(l) = logger() {
        l.global.write(line.as_bytes());
    }
}

/// The client's address and host name for lines logged before a module is
/// chosen (stock's `start_daemon()`: names only with the global `reverse
/// lookup`).
fn global_names(peer: Option<SocketAddr>) -> (String, String) {
    peer_names(peer, logger().is_none_or(|l| l.reverse_lookup))
}

/// "module-list request from HOST (ADDR)" (mirrors clientserver.c
/// `start_daemon()`).
pub fn log_list_request(peer: Option<SocketAddr>) {
    let (addr, host) = global_names(peer);
    log_global(&format!("module-list request from {host} ({addr})"));
}

/// "unknown module 'NAME' tried from HOST (ADDR)" (mirrors clientserver.c
/// `start_daemon()`); the name with control characters escaped.
pub fn log_unknown_module(peer: Option<SocketAddr>, name: &[u8]) {
    crate::metrics::refused(crate::metrics::Refusal::UnknownModule, None);
    let (addr, host) = global_names(peer);
    let name = String::from_utf8_lossy(name);
    log_global(&format!(
        "unknown module '{name}' tried from {host} ({addr})"
    ));
}

/// The client's address and host name as stock shows them, for a session
/// whose peer is `peer` (`None`: unknown, shown as 0.0.0.0) when names are
/// looked up (`reverse`) or not.
pub fn peer_names(peer: Option<SocketAddr>, reverse: bool) -> (String, String) {
    match peer {
        Some(p) => (
            Peer::from_socket(&p).addr.to_string(),
            host_name(&p, reverse),
        ),
        None if reverse => ("0.0.0.0".into(), HostName::Unknown.shown().into()),
        None => ("0.0.0.0".into(), HostName::Undetermined.shown().into()),
    }
}

/// "rsync allowed access on module M from HOST (ADDR)" after the host ACL
/// passed (mirrors clientserver.c `rsync_module()`).
pub fn log_allowed(
    state: &crate::module::ServerState,
    module: &crate::module::ModuleRuntime,
    peer: &SocketAddr,
) {
    let Some(ml) = module_log(state, module) else {
        return;
    };
    let addr = Peer::from_socket(peer).addr.to_string();
    let host = host_name(peer, ml.reverse_lookup);
    ml.target.write(
        format!(
            "rsync allowed access on module {} from {host} ({addr})",
            module.name
        )
        .as_bytes(),
    );
}

/// The end-of-session line (mirrors log.c `log_exit()` for a successful run):
/// "sent N bytes  received N bytes  total size N".
pub fn log_summary(
    s: &crate::session::Session,
    module: &crate::module::ModuleRuntime,
    stats: &protocol::stats::Stats,
) {
    crate::metrics::transfer_completed(&module.name, u64::try_from(stats.total_written).unwrap_or(0));
    let Some(ml) = module_log(&s.state, module) else {
        return;
    };
    let line = format!(
        "sent {} bytes  received {} bytes  total size {}",
        stats.total_written, stats.total_read, stats.total_size
    );
    ml.target.write(line.as_bytes());
}

/// One transferred file (mirrors log.c `log_item()` for the daemon's FLOG).
pub fn log_transfer(
    state: &crate::module::ServerState,
    module: &crate::module::ModuleRuntime,
    peer: &SocketAddr,
    user: Option<&[u8]>,
    opts: (bool, bool, bool),
    file: &FileFacts<'_>,
) {
    let Some(ml) = module_log(state, module).filter(|m| m.transfer_logging) else {
        return;
    };
    let addr = Peer::from_socket(peer).addr.to_string();
    let host = host_name(peer, ml.reverse_lookup);
    let now = timestring(now_secs());
    let mpath = module.path.as_os_str().as_encoded_bytes();
    let s = SessionFacts {
        host: &host,
        addr: &addr,
        module: &module.name,
        module_path: mpath,
        user: user.unwrap_or(b""),
        op: "send",
        pid: std::process::id(),
        now: &now,
        preserve_times: opts.0,
        preserve_uid: opts.1,
        preserve_gid: opts.2,
    };
    ml.target.write(&format_line(&ml.format, &s, file));
}

/// Bytes queued so far on a session's output (socket plus pending), for `%b`.
pub(crate) fn queued(s: &crate::session::Session) -> u64 {
    s.out.total_written() + s.out.pending_len() as u64
}

/// Log a file whose data was just sent (the sender's `log_item()` after
/// `match_sums()`).  `queued_before` is [`queued`] before the file's echo.
#[allow(clippy::too_many_arguments)]
pub(crate) fn log_sent(
    s: &crate::session::Session,
    module: &crate::module::ModuleRuntime,
    list: &crate::session::flist::FileList,
    it: &crate::session::flist::ListItem,
    entry: &filelist_cache::EntryRef<'_>,
    iflags: u16,
    head: &protocol::sums::SumHead,
    queued_before: u64,
    o: &protocol::args::ServerOptions,
) {
    crate::metrics::file_sent(&module.name);
    if !module_log(&s.state, module).is_some_and(|m| m.transfer_logging) {
        return;
    }
    let mtime = timestring(entry.mtime());
    let name = list.name(it, entry);
    let path = crate::session::flist::join(&list.roots[it.root as usize], &name);
    // %c: the sum head (4 ints) and one weak + strong sum per block, as read.
    let sum_bytes = 16
        + u64::try_from(head.count).unwrap_or(0) * (4 + u64::try_from(head.s2length).unwrap_or(0));
    let f = FileFacts {
        name: &name,
        path: &path,
        mode: entry.mode(),
        len: entry.size(),
        mtime: &mtime,
        uid: entry.uid(),
        gid: entry.gid(),
        link: None,
        hlink: None,
        iflags: u32::from(iflags),
        bytes_sent: queued(s).saturating_sub(queued_before),
        sum_bytes,
    };
    log_transfer(
        &s.state,
        module,
        &s.peer.unwrap_or_else(unknown_peer),
        s.user.as_deref(),
        (o.times, o.owner, o.group),
        &f,
    );
}

/// Log an item the client did not ask data for (mirrors log.c
/// `maybe_log_item()` for a daemon): only when the `log format` has `%i`,
/// not for `--dry-run`, and only for items with significant flags or an xname.
#[allow(clippy::too_many_arguments)]
pub(crate) fn log_unsent(
    s: &crate::session::Session,
    module: &crate::module::ModuleRuntime,
    list: &crate::session::flist::FileList,
    it: &crate::session::flist::ListItem,
    snap: &filelist_cache::Snapshot,
    iflags: u16,
    xname: Option<&[u8]>,
    o: &protocol::args::ServerOptions,
) {
    let Some(ml) = module_log(&s.state, module) else {
        return;
    };
    let significant =
        u32::from(iflags) & !(ITEM_BASIS_TYPE_FOLLOWS | ITEM_XNAME_FOLLOWS | ITEM_LOCAL_CHANGE);
    let has_xname = xname.is_some_and(|x| !x.is_empty());
    if !ml.transfer_logging
        || o.dry_run
        || !format_has(&ml.format, b'i')
        || (significant == 0 && !has_xname)
    {
        return;
    }
    let Some(entry) = snap.entry(it.entry) else {
        return;
    };
    let mtime = timestring(entry.mtime());
    let name = list.name(it, &entry);
    let path = crate::session::flist::join(&list.roots[it.root as usize], &name);
    let is_link = entry.mode() & S_IFMT == S_IFLNK;
    let f = FileFacts {
        name: &name,
        path: &path,
        mode: entry.mode(),
        len: entry.size(),
        mtime: &mtime,
        uid: entry.uid(),
        gid: entry.gid(),
        link: is_link.then(|| entry.link_target()),
        hlink: xname,
        iflags: u32::from(iflags),
        bytes_sent: 0,
        sum_bytes: 0,
    };
    log_transfer(
        &s.state,
        module,
        &s.peer.unwrap_or_else(unknown_peer),
        s.user.as_deref(),
        (o.times, o.owner, o.group),
        &f,
    );
}

/// Whether a format uses escape `esc` (mirrors log.c `log_format_has()`).
pub fn format_has(format: &[u8], esc: u8) -> bool {
    let mut i = 0;
    while let Some(p) = format[i..].iter().position(|&b| b == b'%') {
        i += p + 1;
        while matches!(format.get(i), Some(b'\'') | Some(b'-'))
            || format.get(i).is_some_and(u8::is_ascii_digit)
        {
            i += 1;
        }
        match format.get(i) {
            None => return false,
            Some(&c) if c == esc => return true,
            Some(_) => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sess() -> SessionFacts<'static> {
        SessionFacts {
            host: "client.example",
            addr: "192.0.2.7",
            module: "pub",
            module_path: b"/srv/pub",
            user: b"alice",
            op: "send",
            pid: 4242,
            now: "2026/11/22 06:10:05",
            preserve_times: true,
            preserve_uid: true,
            preserve_gid: true,
        }
    }

    fn file() -> FileFacts<'static> {
        FileFacts {
            name: b"sub/a.txt",
            path: b"dir/./sub/a.txt",
            mode: 0o100644,
            len: 1234567,
            mtime: "2025/01/02 03:04:05",
            uid: 1000,
            gid: 100,
            link: None,
            hlink: None,
            iflags: ITEM_TRANSFER | ITEM_IS_NEW,
            bytes_sent: 2048,
            sum_bytes: 16,
        }
    }

    fn fmt(f: &str) -> String {
        String::from_utf8(format_line(f.as_bytes(), &sess(), &file())).unwrap()
    }

    #[test]
    fn default_format() {
        assert_eq!(
            fmt(DEFAULT_LOG_FORMAT),
            "send client.example [192.0.2.7] pub (alice) dir/sub/a.txt 1234567"
        );
    }

    #[test]
    fn each_escape() {
        assert_eq!(fmt("%a"), "192.0.2.7");
        assert_eq!(fmt("%h"), "client.example");
        assert_eq!(fmt("%m"), "pub");
        assert_eq!(fmt("%u"), "alice");
        assert_eq!(fmt("%f"), "dir/sub/a.txt");
        assert_eq!(fmt("%n"), "sub/a.txt");
        assert_eq!(fmt("%l"), "1234567");
        assert_eq!(fmt("%'l"), "1,234,567");
        assert_eq!(fmt("%b"), "2048");
        assert_eq!(fmt("%c"), "16");
        assert_eq!(fmt("%o"), "send");
        assert_eq!(fmt("%i"), "<f+++++++++");
        assert_eq!(fmt("%t"), "2026/11/22 06:10:05");
        assert_eq!(fmt("%p"), "4242");
        assert_eq!(fmt("%P"), "/srv/pub");
        assert_eq!(fmt("%M"), "2025/01/02-03:04:05");
        assert_eq!(fmt("%B"), "rw-r--r--");
        assert_eq!(fmt("%U"), "1000");
        assert_eq!(fmt("%G"), "100");
        assert_eq!(fmt("%L"), "");
        assert_eq!(fmt("%C"), " ".repeat(32));
        assert_eq!(fmt("100%%"), "100%");
        assert_eq!(fmt("%z %"), "%z %");
    }

    #[test]
    fn widths() {
        assert_eq!(fmt("[%10l]"), "[   1234567]");
        assert_eq!(fmt("[%-10l]"), "[1234567   ]");
        assert_eq!(fmt("[%5m]"), "[  pub]");
        assert_eq!(fmt("[%-5m]"), "[pub  ]");
        assert_eq!(fmt("[%2l]"), "[1234567]");
        assert_eq!(fmt("[%6L]"), "[          ]");
    }

    #[test]
    fn without_owner_group_and_b_c_untransferred() {
        let mut s = sess();
        s.preserve_uid = false;
        s.preserve_gid = false;
        let mut f = file();
        f.iflags = 0;
        assert_eq!(format_line(b"%U %G %b %c", &s, &f), b"0 DEFAULT 0 0");
    }

    #[test]
    fn dir_and_link() {
        let s = sess();
        let mut f = file();
        f.mode = 0o040755;
        f.name = b"sub";
        assert_eq!(format_line(b"%n %B", &s, &f), b"sub/ rwxr-xr-x");
        f.mode = 0o120777;
        f.name = b"l";
        f.link = Some(b"target");
        assert_eq!(format_line(b"%n%L", &s, &f), b"l -> target");
        assert_eq!(format_line(b"%n%8L|", &s, &f), b"l ->   target|");
        f.mode = 0o100644;
        f.hlink = Some(b"first");
        assert_eq!(format_line(b"%n%L", &s, &f), b"l => first");
    }

    #[test]
    fn itemize_strings() {
        assert_eq!(
            itemize(
                ITEM_TRANSFER | ITEM_REPORT_SIZE | ITEM_REPORT_TIME,
                0o100644,
                "send",
                true
            ),
            "<f.st......"
        );
        assert_eq!(
            itemize(ITEM_TRANSFER | ITEM_REPORT_TIME, 0o100644, "send", false),
            "<f..T......"
        );
        assert_eq!(itemize(0, 0o040755, "send", true), ".d         ");
        assert_eq!(itemize(ITEM_DELETED, 0o100644, "del.", true), "*deleting  ");
        assert_eq!(
            itemize(ITEM_TRANSFER | ITEM_MISSING_DATA, 0o100644, "recv", true),
            ">f?????????"
        );
        assert_eq!(
            itemize(
                ITEM_LOCAL_CHANGE | ITEM_XNAME_FOLLOWS,
                0o120777,
                "send",
                true
            ),
            "hL         "
        );
        assert_eq!(
            itemize(
                ITEM_REPORT_PERMS | ITEM_REPORT_OWNER | ITEM_REPORT_GROUP,
                0o020644,
                "send",
                true
            ),
            ".D...pog..."
        );
        assert_eq!(
            itemize(
                ITEM_REPORT_ATIME
                    | ITEM_REPORT_CRTIME
                    | ITEM_REPORT_ACL
                    | ITEM_REPORT_XATTR
                    | ITEM_REPORT_CHANGE,
                0o100644,
                "send",
                true
            ),
            ".fc.....bax"
        );
    }

    #[test]
    fn permstrings() {
        assert_eq!(&permstring(0o104755), b"-rwsr-xr-x");
        assert_eq!(&permstring(0o102644), b"-rw-r-Sr--");
        assert_eq!(&permstring(0o041777), b"drwxrwxrwt");
        assert_eq!(&permstring(0o041776), b"drwxrwxrwT");
    }

    #[test]
    fn control_characters_escaped() {
        assert_eq!(escape_controls(b"a\nb\tc\x1b[0m"), b"a\\#012b\tc\\#033[0m");
        assert_eq!(escape_controls(b"\x85\xc3\xa9"), b"\\#205\xc3\xa9");
        assert_eq!(escape_controls(b"x\\#123"), b"x\\#134#123");
        assert_eq!(escape_controls(b"x\\#12"), b"x\\#12");
    }

    #[test]
    fn format_has_finds_escapes() {
        assert!(format_has(b"%o %i %n", b'i'));
        assert!(format_has(b"%-10i", b'i'));
        assert!(!format_has(DEFAULT_LOG_FORMAT.as_bytes(), b'i'));
        assert!(!format_has(b"i %", b'i'));
    }

    #[test]
    fn humanized_numbers() {
        assert_eq!(big_num(999, 1), "999");
        assert_eq!(big_num(1000, 1), "1,000");
        assert_eq!(big_num(1234567890, 1), "1,234,567,890");
        assert_eq!(big_num(1234, 0), "1234");
    }

    #[test]
    fn facilities() {
        assert_eq!(facility("daemon"), Some(libc::LOG_DAEMON));
        assert_eq!(facility("local5"), Some(libc::LOG_LOCAL5));
        assert_eq!(facility("3"), Some(3 << 3));
        assert_eq!(facility("bogus"), None);
    }

    #[test]
    fn syslog_records_as_glibc_sends_them() {
        let r = syslog_record(libc::LOG_LOCAL3 | libc::LOG_INFO, "mirror", 77, 0, b"hi");
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("<158>"), "{r}");
        assert!(r.ends_with(" mirror[77]: hi"), "{r}");
        // "Mmm dd hh:mm:ss": the day is space-padded to two columns.
        let stamp = &r[5..r.len() - " mirror[77]: hi".len()];
        assert_eq!(stamp.len(), 15, "{stamp:?}");
        assert_eq!(&stamp[6..7], " ");
        assert_eq!((&stamp[9..10], &stamp[12..13]), (":", ":"));
    }

    #[test]
    fn syslog_sinks_carry_their_own_tag_and_facility() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let a = SyslogSink::new("mod-a", libc::LOG_LOCAL5, &path);
        let b = SyslogSink::new("", libc::LOG_DAEMON, &path);
        a.write_line(b"one\nline");
        b.write_line(b"two");
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let one = String::from_utf8_lossy(&buf[..n]).into_owned();
        let n = server.recv(&mut buf).unwrap();
        let two = String::from_utf8_lossy(&buf[..n]).into_owned();
        let pid = std::process::id();
        assert!(one.starts_with("<174>"), "{one}");
        assert!(
            one.ends_with(&format!(" mod-a[{pid}]: one\\#012line")),
            "{one}"
        );
        assert!(two.starts_with("<30>"), "{two}");
        assert!(two.ends_with(&format!(" rsyncd[{pid}]: two")), "{two}");
        // A logger that went away loses lines without an error; one that
        // comes back is reconnected to.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        a.write_line(b"lost");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        a.write_line(b"back");
        let n = server.recv(&mut buf).unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).ends_with("]: back"));
    }

    #[test]
    fn file_sink_appends_and_reopens() {
        let dir = std::env::temp_dir().join(format!("rsyncd-logtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("log");
        let _ = std::fs::remove_file(&p);
        let s = FileSink::open(&p).unwrap();
        s.write_line(b"one\x01").unwrap();
        std::fs::rename(&p, dir.join("log.1")).unwrap();
        s.write_line(b"two").unwrap();
        let a = std::fs::read_to_string(dir.join("log.1")).unwrap();
        let b = std::fs::read_to_string(&p).unwrap();
        assert!(
            a.ends_with(&format!(" [{}] one\\#001\n", std::process::id())),
            "{a:?}"
        );
        assert!(b.ends_with("] two\n") && b.lines().count() == 1, "{b:?}");
        assert_eq!(&a[4..5], "/");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
