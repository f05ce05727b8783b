//! The table of every parameter stock rsync's daemon knows.
//!
//! Mirrors `daemon-parm.txt` (which stock turns into `parm_table` in
//! `daemon-parm.h`) as of RsyncProject/rsync 3.5.0: the public label, whether
//! the parameter is global-only or a module ("local") parameter, its type and
//! its built-in default.  On top of stock's facts each entry records how far
//! our daemon supports it.

/// Where a parameter may appear (stock `parm_class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `P_GLOBAL`: only in the global section; in a module section stock
    /// ignores it with "Global parameter X found in module section!".
    Global,
    /// `P_LOCAL`: a module parameter; in the global section it sets the
    /// default for modules defined after it.
    Local,
}

/// The value type (stock `parm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `P_STRING`: kept verbatim; `%VAR%` expanded when first used.
    Str,
    /// `P_PATH`: like a string, but trailing slashes are stripped when read.
    Path,
    /// `P_INTEGER`: read with C `atoi()`.
    Int,
    /// `P_BOOL`: yes/no, true/false, 1/0.
    Bool,
    /// `P_BOOL3`: a boolean that may also be `unset` (or `-1`).
    Bool3,
    /// `P_ENUM`: one of a list of names (only `syslog facility`).
    Enum,
}

/// How far our daemon honours a parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Support {
    /// Implemented; no warning.
    Yes,
    /// Parsed into the typed structs, but the daemon ignores it: a warning.
    NotYet,
    /// Implemented, and a protection: stock silently drops a misspelt
    /// parameter name, which would serve the module without it, so a near
    /// miss of one of these names is a `ConfigProblem` rather than a warning.
    Protection,
}

/// A built-in default (stock's `Defaults` structure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultValue {
    /// A NULL string.  A module whose value is NULL falls back to the value
    /// of the defaults at the end of the parse (stock `FN_LOCAL_STRING`).
    Null,
    /// A non-NULL default string.
    Str(&'static str),
    Int(i32),
    Bool(bool),
    /// `None` is stock's `Unset`.
    Bool3(Option<bool>),
    /// An enum default, by name.
    Enum(&'static str),
}

/// Identifies one parameter; the discriminant indexes [`TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub(crate) enum P {
    // Globals
    Address,
    DaemonChroot,
    DaemonGid,
    DaemonUid,
    MotdFile,
    PidFile,
    ProxyProtocolHosts,
    SocketOptions,
    ListenBacklog,
    Port,
    ProxyProtocol,
    /// Our extension: sessions at once per listener.
    MaxSessions,
    /// Our extension: sessions at once per client host per listener.
    MaxSessionsPerHost,
    /// Our extension: `host:port` of the Prometheus metrics endpoint.
    MetricsAddress,
    /// Our extension: the absolute handshake deadline, in seconds.
    HandshakeTimeout,
    /// Our extension: connections in their handshake at once per listener.
    MaxHandshakes,
    /// Our extension: connections in their handshake at once per client host.
    MaxHandshakesPerHost,
    /// Our extension: how long SIGTERM waits for sessions in flight, in seconds.
    DrainTimeout,
    // Locals
    AuthDigest,
    AuthUsers,
    Charset,
    Comment,
    DontCompress,
    EarlyExec,
    Exclude,
    ExcludeFrom,
    Filter,
    Gid,
    HostsAllow,
    HostsDeny,
    Include,
    IncludeFrom,
    IncomingChmod,
    LockFile,
    LogFile,
    LogFormat,
    Name,
    NameConverter,
    OutgoingChmod,
    PostXferExec,
    PreXferExec,
    RefuseOptions,
    SecretsFile,
    SyslogTag,
    Uid,
    Path,
    TempDir,
    MaxConnections,
    MaxVerbosity,
    Timeout,
    SyslogFacility,
    FakeSuper,
    ForwardLookup,
    IgnoreErrors,
    IgnoreNonreadable,
    InsecureLinks,
    List,
    ReadOnly,
    ReverseLookup,
    StrictModes,
    TransferLogging,
    WriteOnly,
    MungeSymlinks,
    NumericIds,
    OpenNoatime,
    UseChroot,
    /// Our extension: seconds a changed tree must stay quiet before the
    /// module's change trigger fires.
    TriggerQuietTime,
    /// Our extension: command run when the module's tree changed.
    TriggerExec,
    /// Our extension: URL POSTed to when the module's tree changed.
    TriggerUrl,
    /// Our extension: how often a failed trigger is retried.
    TriggerRetries,
    /// Our extension: the port whose listener serves the module.
    DaemonPort,
    /// Our extension: seconds between background full rescans of the module's
    /// tree (-1: automatic, 0: off).
    RescanInterval,
    /// Our extension: serve a generated quick-fedora-mirror file list.
    Fullfiletimelist,
    /// Our extension: its file name (default `fullfiletimelist-<module>`).
    FullfiletimelistName,
    /// Our extension: basenames whose SHA1 the list carries.
    FullfiletimelistChecksums,
    /// Our extension: keep whole-file checksums for `-c`.
    ChecksumCache,
    /// Our extension: MiB per second the checksum cache may read (0: no limit).
    ChecksumCacheRate,
}

/// One row of [`TABLE`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Def {
    pub id: P,
    /// The public name, as stock spells it in `rsyncd.conf(5)`.
    pub label: &'static str,
    pub class: Class,
    pub kind: Kind,
    pub default: DefaultValue,
    pub support: Support,
}

/// Stock's `DEFAULT_DONT_COMPRESS` (generated from rsync.1.md's skip-compress list).
pub(crate) const DEFAULT_DONT_COMPRESS: &str = "*.3g2 *.3gp *.7z *.aac *.ace *.apk *.avi *.bz2 \
*.deb *.dmg *.ear *.f4v *.flac *.flv *.gpg *.gz *.iso *.jar *.jpeg *.jpg *.lrz *.lz *.lz4 *.lzma \
*.lzo *.m1a *.m1v *.m2a *.m2ts *.m2v *.m4a *.m4b *.m4p *.m4r *.m4v *.mka *.mkv *.mov *.mp1 *.mp2 \
*.mp3 *.mp4 *.mpa *.mpeg *.mpg *.mpv *.mts *.odb *.odf *.odg *.odi *.odm *.odp *.ods *.odt *.oga \
*.ogg *.ogm *.ogv *.ogx *.opus *.otg *.oth *.otp *.ots *.ott *.oxt *.png *.qt *.rar *.rpm *.rz \
*.rzip *.spx *.squashfs *.sxc *.sxd *.sxg *.sxm *.sxw *.sz *.tbz *.tbz2 *.tgz *.tlz *.ts *.txz \
*.tzo *.vob *.war *.webm *.webp *.xz *.z *.zip *.zst";

/// Stock's `DEFAULT_LOCK_FILE`.
pub(crate) const DEFAULT_LOCK_FILE: &str = "/var/run/rsyncd.lock";

/// Stock's default `log format`.
pub(crate) const DEFAULT_LOG_FORMAT: &str = "%o %h [%a] %m (%u) %f %l";

const fn def(
    id: P,
    label: &'static str,
    class: Class,
    kind: Kind,
    default: DefaultValue,
    support: Support,
) -> Def {
    Def {
        id,
        label,
        class,
        kind,
        default,
        support,
    }
}

use Class::{Global as G, Local as L};
use Support::{NotYet, Protection, Yes};

/// Every parameter, in [`P`] order (checked by a test).
pub(crate) const TABLE: &[Def] = &[
    def(P::Address, "address", G, Kind::Str, DefaultValue::Null, Yes),
    def(
        P::DaemonChroot,
        "daemon chroot",
        G,
        Kind::Str,
        DefaultValue::Null,
        NotYet,
    ),
    def(
        P::DaemonGid,
        "daemon gid",
        G,
        Kind::Str,
        DefaultValue::Null,
        NotYet,
    ),
    def(
        P::DaemonUid,
        "daemon uid",
        G,
        Kind::Str,
        DefaultValue::Null,
        NotYet,
    ),
    def(
        P::MotdFile,
        "motd file",
        G,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::PidFile,
        "pid file",
        G,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::ProxyProtocolHosts,
        "proxy protocol hosts",
        G,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::SocketOptions,
        "socket options",
        G,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::ListenBacklog,
        "listen backlog",
        G,
        Kind::Int,
        DefaultValue::Int(5),
        Yes,
    ),
    def(P::Port, "port", G, Kind::Int, DefaultValue::Int(0), Yes),
    def(
        P::ProxyProtocol,
        "proxy protocol",
        G,
        Kind::Bool,
        DefaultValue::Bool(false),
        Yes,
    ),
    // Our extensions (stock logs them as unknown parameters and ignores them).
    def(
        P::MaxSessions,
        "max sessions",
        G,
        Kind::Int,
        DefaultValue::Int(1024),
        Yes,
    ),
    def(
        P::MaxSessionsPerHost,
        "max sessions per host",
        G,
        Kind::Int,
        DefaultValue::Int(64),
        Yes,
    ),
    // Our extension: serve Prometheus metrics on this address (unset: off).
    // See docs/operations.md.
    def(
        P::MetricsAddress,
        "metrics address",
        G,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::HandshakeTimeout,
        "handshake timeout",
        G,
        Kind::Int,
        DefaultValue::Int(60),
        Yes,
    ),
    def(
        P::MaxHandshakes,
        "max handshakes",
        G,
        Kind::Int,
        DefaultValue::Int(256),
        Yes,
    ),
    def(
        P::MaxHandshakesPerHost,
        "max handshakes per host",
        G,
        Kind::Int,
        DefaultValue::Int(16),
        Yes,
    ),
    def(
        P::DrainTimeout,
        "drain timeout",
        G,
        Kind::Int,
        DefaultValue::Int(30),
        Yes,
    ),
    def(
        P::AuthDigest,
        "auth digest",
        L,
        Kind::Str,
        DefaultValue::Null,
        Protection,
    ),
    def(
        P::AuthUsers,
        "auth users",
        L,
        Kind::Str,
        DefaultValue::Null,
        Protection,
    ),
    def(
        P::Charset,
        "charset",
        L,
        Kind::Str,
        DefaultValue::Null,
        NotYet,
    ),
    def(P::Comment, "comment", L, Kind::Str, DefaultValue::Null, Yes),
    def(
        P::DontCompress,
        "dont compress",
        L,
        Kind::Str,
        DefaultValue::Str(DEFAULT_DONT_COMPRESS),
        Yes,
    ),
    def(
        P::EarlyExec,
        "early exec",
        L,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::Exclude,
        "exclude",
        L,
        Kind::Str,
        DefaultValue::Null,
        Protection,
    ),
    def(
        P::ExcludeFrom,
        "exclude from",
        L,
        Kind::Str,
        DefaultValue::Null,
        Protection,
    ),
    def(
        P::Filter,
        "filter",
        L,
        Kind::Str,
        DefaultValue::Null,
        Protection,
    ),
    def(P::Gid, "gid", L, Kind::Str, DefaultValue::Null, Yes),
    def(
        P::HostsAllow,
        "hosts allow",
        L,
        Kind::Str,
        DefaultValue::Null,
        Protection,
    ),
    def(
        P::HostsDeny,
        "hosts deny",
        L,
        Kind::Str,
        DefaultValue::Null,
        Protection,
    ),
    def(P::Include, "include", L, Kind::Str, DefaultValue::Null, Yes),
    def(
        P::IncludeFrom,
        "include from",
        L,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::IncomingChmod,
        "incoming chmod",
        L,
        Kind::Str,
        DefaultValue::Null,
        NotYet,
    ),
    def(
        P::LockFile,
        "lock file",
        L,
        Kind::Str,
        DefaultValue::Str(DEFAULT_LOCK_FILE),
        Yes,
    ),
    def(
        P::LogFile,
        "log file",
        L,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::LogFormat,
        "log format",
        L,
        Kind::Str,
        DefaultValue::Str(DEFAULT_LOG_FORMAT),
        Yes,
    ),
    def(P::Name, "name", L, Kind::Str, DefaultValue::Null, Yes),
    def(
        P::NameConverter,
        "name converter",
        L,
        Kind::Str,
        DefaultValue::Null,
        NotYet,
    ),
    def(
        P::OutgoingChmod,
        "outgoing chmod",
        L,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::PostXferExec,
        "post-xfer exec",
        L,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::PreXferExec,
        "pre-xfer exec",
        L,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::RefuseOptions,
        "refuse options",
        L,
        Kind::Str,
        DefaultValue::Null,
        Protection,
    ),
    def(
        P::SecretsFile,
        "secrets file",
        L,
        Kind::Str,
        DefaultValue::Null,
        Protection,
    ),
    def(
        P::SyslogTag,
        "syslog tag",
        L,
        Kind::Str,
        DefaultValue::Str("rsyncd"),
        Yes,
    ),
    def(P::Uid, "uid", L, Kind::Str, DefaultValue::Null, Yes),
    def(P::Path, "path", L, Kind::Path, DefaultValue::Null, Yes),
    def(
        P::TempDir,
        "temp dir",
        L,
        Kind::Path,
        DefaultValue::Null,
        NotYet,
    ),
    def(
        P::MaxConnections,
        "max connections",
        L,
        Kind::Int,
        DefaultValue::Int(0),
        Yes,
    ),
    def(
        P::MaxVerbosity,
        "max verbosity",
        L,
        Kind::Int,
        DefaultValue::Int(1),
        Yes,
    ),
    def(
        P::Timeout,
        "timeout",
        L,
        Kind::Int,
        DefaultValue::Int(0),
        Yes,
    ),
    def(
        P::SyslogFacility,
        "syslog facility",
        L,
        Kind::Enum,
        DefaultValue::Enum("daemon"),
        Yes,
    ),
    def(
        P::FakeSuper,
        "fake super",
        L,
        Kind::Bool,
        DefaultValue::Bool(false),
        NotYet,
    ),
    def(
        P::ForwardLookup,
        "forward lookup",
        L,
        Kind::Bool,
        DefaultValue::Bool(true),
        Yes,
    ),
    def(
        P::IgnoreErrors,
        "ignore errors",
        L,
        Kind::Bool,
        DefaultValue::Bool(false),
        Yes,
    ),
    def(
        P::IgnoreNonreadable,
        "ignore nonreadable",
        L,
        Kind::Bool,
        DefaultValue::Bool(false),
        Yes,
    ),
    def(
        P::InsecureLinks,
        "insecure links",
        L,
        Kind::Bool,
        DefaultValue::Bool(false),
        NotYet,
    ),
    def(
        P::List,
        "list",
        L,
        Kind::Bool,
        DefaultValue::Bool(true),
        Yes,
    ),
    def(
        P::ReadOnly,
        "read only",
        L,
        Kind::Bool,
        DefaultValue::Bool(true),
        Yes,
    ),
    def(
        P::ReverseLookup,
        "reverse lookup",
        L,
        Kind::Bool,
        DefaultValue::Bool(true),
        Yes,
    ),
    def(
        P::StrictModes,
        "strict modes",
        L,
        Kind::Bool,
        DefaultValue::Bool(true),
        Yes,
    ),
    def(
        P::TransferLogging,
        "transfer logging",
        L,
        Kind::Bool,
        DefaultValue::Bool(false),
        Yes,
    ),
    def(
        P::WriteOnly,
        "write only",
        L,
        Kind::Bool,
        DefaultValue::Bool(false),
        Protection,
    ),
    def(
        P::MungeSymlinks,
        "munge symlinks",
        L,
        Kind::Bool3,
        DefaultValue::Bool3(None),
        Yes,
    ),
    def(
        P::NumericIds,
        "numeric ids",
        L,
        Kind::Bool3,
        DefaultValue::Bool3(None),
        Yes,
    ),
    def(
        P::OpenNoatime,
        "open noatime",
        L,
        Kind::Bool3,
        DefaultValue::Bool3(None),
        Yes,
    ),
    def(
        P::UseChroot,
        "use chroot",
        L,
        Kind::Bool3,
        DefaultValue::Bool3(None),
        Yes,
    ),
    // Our extension: change triggers (see docs/operations.md, `crate::triggers`).
    def(
        P::TriggerQuietTime,
        "trigger quiet time",
        L,
        Kind::Int,
        DefaultValue::Int(30),
        Yes,
    ),
    def(
        P::TriggerExec,
        "trigger exec",
        L,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::TriggerUrl,
        "trigger url",
        L,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::TriggerRetries,
        "trigger retries",
        L,
        Kind::Int,
        DefaultValue::Int(3),
        Yes,
    ),
    // Our extension: serve the module only on the listener of this port
    // (0: the main listener).  See docs/operations.md.
    def(
        P::DaemonPort,
        "daemon port",
        L,
        Kind::Int,
        DefaultValue::Int(0),
        Yes,
    ),
    // Our extension: background full rescan every N seconds (0: off; unset:
    // off when the fanotify watcher works, 300 when it does not).  See
    // docs/operations.md.
    def(
        P::RescanInterval,
        "rescan interval",
        L,
        Kind::Int,
        DefaultValue::Int(-1),
        Yes,
    ),
    // Our extensions: a generated quick-fedora-mirror `fullfiletimelist` per
    // module, and cached whole-file checksums for `-c`.  See
    // docs/operations.md.
    def(
        P::Fullfiletimelist,
        "fullfiletimelist",
        L,
        Kind::Bool3,
        DefaultValue::Bool3(None),
        Yes,
    ),
    def(
        P::FullfiletimelistName,
        "fullfiletimelist name",
        L,
        Kind::Str,
        DefaultValue::Null,
        Yes,
    ),
    def(
        P::FullfiletimelistChecksums,
        "fullfiletimelist checksums",
        L,
        Kind::Str,
        DefaultValue::Str("repomd.xml"),
        Yes,
    ),
    def(
        P::ChecksumCache,
        "checksum cache",
        L,
        Kind::Bool,
        DefaultValue::Bool(false),
        Yes,
    ),
    def(
        P::ChecksumCacheRate,
        "checksum cache rate",
        L,
        Kind::Int,
        DefaultValue::Int(32),
        Yes,
    ),
];

/// Stock's syslog facility names (`enum_syslog_facility` in loadparm.c), with
/// the Linux values of the `LOG_*` constants.
pub(crate) const SYSLOG_FACILITIES: &[(&str, i32)] = &[
    ("auth", 4 << 3),
    ("authpriv", 10 << 3),
    ("cron", 9 << 3),
    ("daemon", 3 << 3),
    ("ftp", 11 << 3),
    ("kern", 0),
    ("lpr", 6 << 3),
    ("mail", 2 << 3),
    ("news", 7 << 3),
    ("security", 4 << 3),
    ("syslog", 5 << 3),
    ("user", 1 << 3),
    ("uucp", 8 << 3),
    ("local0", 16 << 3),
    ("local1", 17 << 3),
    ("local2", 18 << 3),
    ("local3", 19 << 3),
    ("local4", 20 << 3),
    ("local5", 21 << 3),
    ("local6", 22 << 3),
    ("local7", 23 << 3),
];

impl P {
    /// This parameter's row of [`TABLE`].
    pub(crate) fn def(self) -> &'static Def {
        &TABLE[self as usize]
    }

    /// The public name, e.g. `"read only"`.
    pub(crate) fn label(self) -> &'static str {
        self.def().label
    }
}

/// C `isspace()` in the C locale.
pub(crate) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Case-insensitive comparison that ignores all whitespace.
///
/// Mirrors loadparm.c `strwiEQ`: "Read Only", "readonly" and "read  only"
/// are equal; underscores and dashes are NOT ignored ("read_only" differs).
pub(crate) fn str_wi_eq(a: &[u8], b: &[u8]) -> bool {
    let mut x = a.iter().copied().filter(|&c| !is_space(c));
    let mut y = b.iter().copied().filter(|&c| !is_space(c));
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(c), Some(d)) if c.eq_ignore_ascii_case(&d) => {}
            _ => return false,
        }
    }
}

/// Finds a parameter by name.  Mirrors loadparm.c `map_parameter`, except that
/// the caller handles the leading-dash case.
pub(crate) fn lookup(name: &[u8]) -> Option<P> {
    TABLE
        .iter()
        .find(|d| str_wi_eq(d.label.as_bytes(), name))
        .map(|d| d.id)
}

/// A near miss: a name that stock does not know but that names a known
/// parameter once whitespace, `_` and `-` are ignored (e.g. `hosts_allow`).
pub(crate) fn near_miss(name: &[u8]) -> Option<P> {
    fn squash(s: &[u8]) -> Vec<u8> {
        s.iter()
            .filter(|&&c| !is_space(c) && c != b'_' && c != b'-')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    }
    let n = squash(name);
    TABLE
        .iter()
        .find(|d| squash(d.label.as_bytes()) == n)
        .map(|d| d.id)
}
