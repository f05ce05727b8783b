//! `hosts allow` / `hosts deny`.
//!
//! Mirrors `access.c: allow_access()`, `access_match()`, `match_address()`
//! and `match_hostname()`, and `clientname.c: client_name()` (reverse lookup
//! with forward confirmation), with these differences:
//!
//! * Every token is parsed when the configuration is loaded; a token stock
//!   would quietly fail to match (a malformed mask, a short IPv4 form such as
//!   `10.1`, a netgroup we cannot evaluate) is a configuration error.
//! * A name-based token whose evaluation needs DNS data we could not get
//!   (no PTR record, a failed or timed-out lookup, a deny hostname that does
//!   not resolve) never matches in `hosts allow` and always matches in
//!   `hosts deny`: deny rules fail closed.
//! * Lookups run on the session's own thread (through a helper thread with a
//!   deadline), so a slow resolver never stalls other sessions.
//! * Forward lookups of a hostname token match IPv6 peers too (stock's
//!   `gethostbyname()` is IPv4-only).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use protocol::wildmatch::iwildmatch;

/// One parsed token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `*`: every client.
    Any,
    /// An address, optionally with a prefix length or a mask (`a.b.c.d`,
    /// `a.b.c.d/n`, `a.b.c.d/m.m.m.m`, `v6/n`, `v6%scope`).
    Addr {
        /// The address (v4-mapped v6 is folded to v4).
        addr: IpAddr,
        /// Mask bytes (4 or 16), all ones for an exact address.
        mask: Vec<u8>,
        /// IPv6 scope id that must match, if given.
        scope: Option<u32>,
    },
    /// A hostname pattern with `*`, `?` or `[`: matched case-insensitively
    /// against the client's reverse-DNS name.
    NameWild(String),
    /// A plain hostname: matched against the reverse name, or by a forward
    /// lookup of the token when `forward lookup` is on.
    Name(String),
}

impl HostPattern {
    /// Needs DNS to be evaluated.
    pub fn needs_dns(&self) -> bool {
        matches!(self, HostPattern::NameWild(_) | HostPattern::Name(_))
    }
}

/// A malformed token (a configuration error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad host token \"{token}\": {why}")]
pub struct HostTokenError {
    /// The token.
    pub token: String,
    /// Why.
    pub why: String,
}

fn terr(token: &str, why: &str) -> HostTokenError {
    HostTokenError {
        token: token.to_string(),
        why: why.to_string(),
    }
}

fn fold_mapped(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn addr_bytes(a: &IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(v) => v.octets().to_vec(),
        IpAddr::V6(v) => v.octets().to_vec(),
    }
}

fn prefix_mask(bits: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            let start = (i * 8) as u32;
            if bits >= start + 8 {
                0xff
            } else if bits <= start {
                0
            } else {
                0xffu8 << (8 - (bits - start))
            }
        })
        .collect()
}

/// Strict dotted-quad (four decimal parts): glibc's `inet_aton` forms such
/// as `10.1` or `0x7f.1` are rejected as ambiguous.
fn parse_v4_strict(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() != 4
        || parts
            .iter()
            .any(|p| p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    s.parse().ok()
}

fn parse_addr(s: &str, token: &str) -> Result<(IpAddr, Option<u32>), HostTokenError> {
    if s.contains(':') {
        let (a, scope) = match s.split_once('%') {
            Some((a, sc)) => (a, Some(sc)),
            None => (s, None),
        };
        let v6: Ipv6Addr = a.parse().map_err(|_| terr(token, "not an IPv6 address"))?;
        let scope = match scope {
            None => None,
            Some(sc) if sc.bytes().all(|c| c.is_ascii_digit()) && !sc.is_empty() => {
                Some(sc.parse().map_err(|_| terr(token, "bad IPv6 scope"))?)
            }
            Some(sc) => {
                let c = std::ffi::CString::new(sc).map_err(|_| terr(token, "bad IPv6 scope"))?;
                // SAFETY: `c` is a valid NUL-terminated string.
                let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
                if idx == 0 {
                    return Err(terr(token, "unknown interface in IPv6 scope"));
                }
                Some(idx)
            }
        };
        Ok((fold_mapped(IpAddr::V6(v6)), scope))
    } else {
        let v4 = parse_v4_strict(s).ok_or_else(|| {
            terr(
                token,
                "not a full dotted-quad IPv4 address (write all four parts)",
            )
        })?;
        Ok((IpAddr::V4(v4), None))
    }
}

fn is_hostname_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_')
}

/// Parse one (already lower-cased) token.
pub fn parse_token(token: &str) -> Result<HostPattern, HostTokenError> {
    if token == "*" {
        return Ok(HostPattern::Any);
    }
    if token.starts_with('@') {
        return Err(terr(token, "netgroups are not supported"));
    }
    let all_numeric = token.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    if let Some((a, m)) = token.split_once('/') {
        let (addr, scope) = parse_addr(a, token)?;
        let len = addr_bytes(&addr).len();
        let mask = if m.contains(':') || m.contains('.') {
            let mask = if len == 4 {
                parse_v4_strict(m).map(|v| v.octets().to_vec())
            } else {
                m.parse::<Ipv6Addr>().ok().map(|v| v.octets().to_vec())
            };
            mask.ok_or_else(|| terr(token, "malformed mask"))?
        } else {
            let bits: u32 = m.parse().map_err(|_| terr(token, "malformed mask"))?;
            let family_bits = if a.contains(':') { 128 } else { 32 };
            if bits > family_bits || m.is_empty() {
                return Err(terr(token, "malformed mask"));
            }
            // A v4-mapped v6 prefix folded to v4 keeps its meaning.
            let bits = if len == 4 && a.contains(':') {
                bits.checked_sub(96)
                    .ok_or_else(|| terr(token, "prefix shorter than the v4-mapped part"))?
            } else {
                bits
            };
            prefix_mask(bits, len)
        };
        return Ok(HostPattern::Addr { addr, mask, scope });
    }
    if token.contains(':') || all_numeric {
        let (addr, scope) = parse_addr(token, token)?;
        let len = addr_bytes(&addr).len();
        return Ok(HostPattern::Addr {
            addr,
            mask: vec![0xff; len],
            scope,
        });
    }
    let wild = token.bytes().any(|c| matches!(c, b'*' | b'?' | b'['));
    if wild {
        if !token.bytes().all(|c| {
            is_hostname_char(c) || matches!(c, b'*' | b'?' | b'[' | b']' | b'!' | b'^' | b'\\')
        }) {
            return Err(terr(token, "unexpected character in a hostname pattern"));
        }
        return Ok(HostPattern::NameWild(token.to_string()));
    }
    if !token.bytes().all(is_hostname_char) || token.starts_with('.') || token.starts_with('-') {
        return Err(terr(token, "not an address, a network or a hostname"));
    }
    Ok(HostPattern::Name(token.to_string()))
}

/// Parse a whole list (tokens already split and lower-cased).
pub fn parse_list(tokens: &[String]) -> Result<Vec<HostPattern>, HostTokenError> {
    tokens.iter().map(|t| parse_token(t)).collect()
}

/// The result of a DNS question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// An answer.
    Found(T),
    /// A definite "no such name / no PTR".
    NotFound,
    /// No answer in time, or a resolver failure.
    Failed,
}

/// DNS, injected so tests need no network.
pub trait Resolver {
    /// Reverse lookup with forward confirmation: the name whose addresses
    /// include `ip`.  A PTR name that does not resolve back is `NotFound`
    /// (stock: "UNKNOWN").
    fn reverse(&self, ip: IpAddr) -> Lookup<String>;
    /// Forward lookup of a hostname.
    fn forward(&self, name: &str) -> Lookup<Vec<IpAddr>>;
}

/// The connecting client, as the ACL sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Address (v4-mapped v6 folded to v4, as stock's `client_addr()`).
    pub addr: IpAddr,
    /// IPv6 scope id (0 when none).
    pub scope: u32,
}

impl Peer {
    /// From a socket address.
    pub fn from_socket(sa: &SocketAddr) -> Peer {
        let scope = match sa {
            SocketAddr::V6(v6) => v6.scope_id(),
            SocketAddr::V4(_) => 0,
        };
        Peer {
            addr: fold_mapped(sa.ip()),
            scope,
        }
    }
}

/// The client's host name as stock reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostName {
    /// A confirmed reverse name.
    Name(String),
    /// Lookup failed or was not confirmed (`UNKNOWN`).
    Unknown,
    /// Reverse lookup is off (`UNDETERMINED`).
    Undetermined,
}

impl HostName {
    /// The text stock shows.
    pub fn shown(&self) -> &str {
        match self {
            HostName::Name(n) => n,
            HostName::Unknown => "UNKNOWN",
            HostName::Undetermined => "UNDETERMINED",
        }
    }
}

/// Per-session lazy host-name state.
pub struct PeerInfo<'r> {
    /// The peer.
    pub peer: Peer,
    resolver: &'r dyn Resolver,
    name: Option<(HostName, bool)>,
}

impl<'r> PeerInfo<'r> {
    /// A peer whose name is resolved on first use.
    pub fn new(peer: Peer, resolver: &'r dyn Resolver) -> Self {
        PeerInfo {
            peer,
            resolver,
            name: None,
        }
    }

    /// The host name (reverse lookup only when `reverse` is on); the bool
    /// says whether the lookup failed rather than gave a definite answer.
    pub fn host(&mut self, reverse: bool) -> (HostName, bool) {
        if !reverse {
            return (HostName::Undetermined, false);
        }
        if let Some(n) = &self.name {
            return n.clone();
        }
        let n = match self.resolver.reverse(self.peer.addr) {
            Lookup::Found(n) => (HostName::Name(n), false),
            Lookup::NotFound => (HostName::Unknown, false),
            Lookup::Failed => (HostName::Unknown, true),
        };
        self.name = Some(n.clone());
        n
    }
}

/// How one token evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eval {
    Match,
    NoMatch,
    /// Could not be decided (DNS unavailable): no match in allow, match in deny.
    Unknown,
}

fn addr_match(p: &HostPattern, peer: &Peer) -> bool {
    let HostPattern::Addr { addr, mask, scope } = p else {
        return false;
    };
    let a = addr_bytes(addr);
    let b = addr_bytes(&peer.addr);
    if a.len() != b.len() {
        return false;
    }
    if let Some(s) = scope {
        if *s != peer.scope {
            return false;
        }
    }
    a.iter()
        .zip(&b)
        .zip(mask)
        .all(|((x, y), m)| (x ^ y) & m == 0)
}

/// Module ACL settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAcl {
    /// `hosts allow` (None when unset or empty).
    pub allow: Option<Vec<HostPattern>>,
    /// `hosts deny`.
    pub deny: Option<Vec<HostPattern>>,
    /// `reverse lookup`.
    pub reverse_lookup: bool,
    /// `forward lookup`.
    pub forward_lookup: bool,
}

impl HostAcl {
    /// Build from the config's token lists.
    pub fn from_tokens(
        allow: &[String],
        deny: &[String],
        reverse_lookup: bool,
        forward_lookup: bool,
    ) -> Result<HostAcl, HostTokenError> {
        let l = |t: &[String]| -> Result<Option<Vec<HostPattern>>, HostTokenError> {
            if t.is_empty() {
                Ok(None)
            } else {
                parse_list(t).map(Some)
            }
        };
        Ok(HostAcl {
            allow: l(allow)?,
            deny: l(deny)?,
            reverse_lookup,
            forward_lookup,
        })
    }

    /// True when no list is set.
    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_none()
    }

    /// Tokens that can never match as written (warnings for the operator).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for (list, what) in [(&self.allow, "hosts allow"), (&self.deny, "hosts deny")] {
            for p in list.iter().flatten() {
                let dead = match p {
                    HostPattern::NameWild(_) => !self.reverse_lookup,
                    HostPattern::Name(_) => !self.reverse_lookup && !self.forward_lookup,
                    _ => false,
                };
                if dead {
                    let t = match p {
                        HostPattern::NameWild(t) | HostPattern::Name(t) => t.as_str(),
                        _ => "",
                    };
                    if what == "hosts deny" {
                        w.push(format!("{what} token \"{t}\" needs a host name but reverse lookup is off: it denies every client (deny rules fail closed)"));
                    } else {
                        w.push(format!("{what} token \"{t}\" needs a host name but reverse lookup is off: it never matches"));
                    }
                }
            }
        }
        w
    }

    fn eval(&self, p: &HostPattern, who: &mut PeerInfo<'_>) -> Eval {
        match p {
            HostPattern::Any => Eval::Match,
            HostPattern::Addr { .. } => {
                if addr_match(p, &who.peer) {
                    Eval::Match
                } else {
                    Eval::NoMatch
                }
            }
            HostPattern::NameWild(pat) => match who.host(self.reverse_lookup) {
                (HostName::Name(n), _) => {
                    if iwildmatch(pat.as_bytes(), n.as_bytes()) {
                        Eval::Match
                    } else {
                        Eval::NoMatch
                    }
                }
                _ => Eval::Unknown,
            },
            HostPattern::Name(name) => {
                let (host, _) = who.host(self.reverse_lookup);
                if let HostName::Name(n) = &host {
                    if iwildmatch(name.as_bytes(), n.as_bytes()) {
                        return Eval::Match;
                    }
                }
                if self.forward_lookup {
                    match who.resolver.forward(name) {
                        Lookup::Found(addrs) => {
                            if addrs.iter().any(|a| fold_mapped(*a) == who.peer.addr) {
                                Eval::Match
                            } else {
                                Eval::NoMatch
                            }
                        }
                        Lookup::NotFound | Lookup::Failed => Eval::Unknown,
                    }
                } else if matches!(host, HostName::Name(_)) {
                    Eval::NoMatch
                } else {
                    Eval::Unknown
                }
            }
        }
    }

    /// Does any token of `list` match?  Address tokens are tried first so
    /// that DNS is only consulted when they do not decide.  `unknown_is_match`
    /// is the fail-closed rule for deny lists.
    fn list_matches(
        &self,
        list: &[HostPattern],
        who: &mut PeerInfo<'_>,
        unknown_is_match: bool,
    ) -> bool {
        let (cheap, dns): (Vec<&HostPattern>, Vec<&HostPattern>) =
            list.iter().partition(|p| !p.needs_dns());
        if cheap.iter().any(|p| self.eval(p, who) == Eval::Match) {
            return true;
        }
        dns.iter().any(|p| match self.eval(p, who) {
            Eval::Match => true,
            Eval::NoMatch => false,
            Eval::Unknown => unknown_is_match,
        })
    }

    /// `allow_access()`: an allow match admits at once; an allow list with
    /// no match and no deny list refuses; a deny match refuses; otherwise
    /// the client is admitted.
    pub fn allows(&self, who: &mut PeerInfo<'_>) -> bool {
        if let Some(allow) = &self.allow {
            if self.list_matches(allow, who, false) {
                return true;
            }
            if self.deny.is_none() {
                return false;
            }
        }
        if let Some(deny) = &self.deny {
            if self.list_matches(deny, who, true) {
                return false;
            }
        }
        true
    }
}

/// How long one lookup may take.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Most lookups in flight at once (abandoned, timed-out ones included);
/// beyond that a lookup fails at once instead of piling up threads.
pub const MAX_LOOKUPS_IN_FLIGHT: usize = 64;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// The system resolver (`getnameinfo` / `getaddrinfo`), each call on a
/// helper thread with a deadline so the calling session can give up.
#[derive(Debug, Clone, Copy)]
pub struct SystemResolver {
    /// Per-lookup deadline.
    pub timeout: Duration,
}

impl Default for SystemResolver {
    fn default() -> Self {
        SystemResolver {
            timeout: DNS_TIMEOUT,
        }
    }
}

fn with_deadline<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> Lookup<T> + Send + 'static,
) -> Lookup<T> {
    if IN_FLIGHT.fetch_add(1, Ordering::SeqCst) >= MAX_LOOKUPS_IN_FLIGHT {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return Lookup::Failed;
    }
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("rsyncd-dns".into())
        .spawn(move || {
            let r = f();
            IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(r);
        });
    if spawned.is_err() {
        IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
        return Lookup::Failed;
    }
    rx.recv_timeout(timeout).unwrap_or(Lookup::Failed)
}

fn getnameinfo_ptr(ip: IpAddr) -> Lookup<String> {
    let sa: SocketAddr = SocketAddr::new(ip, 0);
    // SAFETY: sockaddr_storage is plain old data.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match sa {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in, sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write(&mut ss as *mut _ as *mut libc::sockaddr_in6, sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `ss` holds a valid sockaddr of `len` bytes; `host` is a
    // writable buffer of the size passed.
    let rc = unsafe {
        libc::getnameinfo(
            &ss as *const _ as *const libc::sockaddr,
            len as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    match rc {
        0 => {
            // SAFETY: getnameinfo NUL-terminates `host` on success.
            let s = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
            Lookup::Found(s.to_string_lossy().into_owned())
        }
        libc::EAI_NONAME => Lookup::NotFound,
        _ => Lookup::Failed,
    }
}

fn forward_lookup(name: &str) -> Lookup<Vec<IpAddr>> {
    match (name, 0u16).to_socket_addrs() {
        Ok(it) => {
            let v: Vec<IpAddr> = it.map(|s| s.ip()).collect();
            if v.is_empty() {
                Lookup::NotFound
            } else {
                Lookup::Found(v)
            }
        }
        Err(e) => {
            // std maps EAI_NONAME / EAI_NODATA to "failed to lookup address
            // information: Name or service not known" (kind Uncategorized);
            // we cannot tell definite from transient reliably, and either way
            // the caller treats it as "could not decide".
            let _ = e;
            Lookup::NotFound
        }
    }
}

impl Resolver for SystemResolver {
    fn reverse(&self, ip: IpAddr) -> Lookup<String> {
        let t = self.timeout;
        with_deadline(t, move || match getnameinfo_ptr(ip) {
            Lookup::Found(name) => {
                // check_name(): the name must resolve back to the peer.
                match forward_lookup(&name) {
                    Lookup::Found(addrs) if addrs.iter().any(|a| fold_mapped(*a) == ip) => {
                        Lookup::Found(name)
                    }
                    Lookup::Found(_) | Lookup::NotFound => {
                        tracing::info!(
                            "{ip} is not a known address for \"{name}\": spoofed address?"
                        );
                        Lookup::NotFound
                    }
                    Lookup::Failed => Lookup::Failed,
                }
            }
            other => other,
        })
    }

    fn forward(&self, name: &str) -> Lookup<Vec<IpAddr>> {
        let n = name.to_string();
        with_deadline(self.timeout, move || forward_lookup(&n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeDns {
        ptr: HashMap<IpAddr, Lookup<String>>,
        a: HashMap<String, Lookup<Vec<IpAddr>>>,
    }

    impl Resolver for FakeDns {
        fn reverse(&self, ip: IpAddr) -> Lookup<String> {
            self.ptr.get(&ip).cloned().unwrap_or(Lookup::NotFound)
        }
        fn forward(&self, name: &str) -> Lookup<Vec<IpAddr>> {
            self.a.get(name).cloned().unwrap_or(Lookup::NotFound)
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn dns() -> FakeDns {
        let mut ptr = HashMap::new();
        ptr.insert(
            ip("192.0.2.10"),
            Lookup::Found("Mirror.Example.org".to_string()),
        );
        ptr.insert(
            ip("192.0.2.66"),
            Lookup::Found("host.bad.example".to_string()),
        );
        ptr.insert(ip("192.0.2.99"), Lookup::Failed);
        let mut a = HashMap::new();
        a.insert(
            "tier1.example.net".to_string(),
            Lookup::Found(vec![ip("198.51.100.7"), ip("2001:db8::7")]),
        );
        a.insert("slow.example.net".to_string(), Lookup::Failed);
        FakeDns { ptr, a }
    }

    fn acl(allow: &str, deny: &str) -> HostAcl {
        let t = |s: &str| {
            s.split([' ', ',', '\t'])
                .filter(|x| !x.is_empty())
                .map(|x| x.to_lowercase())
                .collect::<Vec<_>>()
        };
        HostAcl::from_tokens(&t(allow), &t(deny), true, true).unwrap()
    }

    fn allowed(a: &HostAcl, who: &str) -> bool {
        let d = dns();
        let mut p = PeerInfo::new(
            Peer {
                addr: fold_mapped(ip(who)),
                scope: 0,
            },
            &d,
        );
        a.allows(&mut p)
    }

    #[test]
    fn token_forms() {
        assert_eq!(parse_token("*"), Ok(HostPattern::Any));
        assert_eq!(
            parse_token("10.0.0.0/8"),
            Ok(HostPattern::Addr {
                addr: ip("10.0.0.0"),
                mask: vec![255, 0, 0, 0],
                scope: None
            })
        );
        assert_eq!(
            parse_token("10.1.0.0/255.255.0.0"),
            Ok(HostPattern::Addr {
                addr: ip("10.1.0.0"),
                mask: vec![255, 255, 0, 0],
                scope: None
            })
        );
        assert_eq!(
            parse_token("::ffff:10.0.0.1"),
            Ok(HostPattern::Addr {
                addr: ip("10.0.0.1"),
                mask: vec![255; 4],
                scope: None
            })
        );
        assert_eq!(
            parse_token("::ffff:10.0.0.0/104"),
            Ok(HostPattern::Addr {
                addr: ip("10.0.0.0"),
                mask: vec![255, 0, 0, 0],
                scope: None
            })
        );
        assert!(matches!(
            parse_token("2001:db8::/32"),
            Ok(HostPattern::Addr { .. })
        ));
        assert!(matches!(
            parse_token("fe80::1%1"),
            Ok(HostPattern::Addr { scope: Some(1), .. })
        ));
        assert_eq!(
            parse_token("*.example.org"),
            Ok(HostPattern::NameWild("*.example.org".into()))
        );
        assert_eq!(
            parse_token("192.168.1.*"),
            Ok(HostPattern::NameWild("192.168.1.*".into()))
        );
        assert_eq!(
            parse_token("mirror.example.org"),
            Ok(HostPattern::Name("mirror.example.org".into()))
        );
        for bad in [
            "10.1",
            "10.0.0.0/33",
            "10.0.0.0/x",
            "10.0.0.0/",
            "10.0.0.0/255.0",
            "2001:db8::/129",
            "1.2.3.4.5",
            "@netgroup",
            "a b",
            "fe80::1%nosuchif0",
            "::1/24/1",
            "host/8",
            "-x",
        ] {
            assert!(parse_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allow_deny_order() {
        // Only an allow list: non-matches are refused.
        let a = acl("127.0.0.1 10.0.0.0/8", "");
        assert!(allowed(&a, "127.0.0.1"));
        assert!(allowed(&a, "10.200.3.4"));
        assert!(!allowed(&a, "11.0.0.1"));
        assert!(
            allowed(&a, "::ffff:10.1.1.1"),
            "v4-mapped peers match v4 rules"
        );
        assert!(!allowed(&a, "::1"), "families never cross-match");
        // Allow wins over deny; otherwise deny; otherwise admit.
        let a = acl("10.0.0.1", "10.0.0.0/8");
        assert!(allowed(&a, "10.0.0.1"));
        assert!(!allowed(&a, "10.0.0.2"));
        assert!(allowed(&a, "192.0.2.1"));
        let a = acl("", "*");
        assert!(!allowed(&a, "192.0.2.1"));
        let a = acl("2001:db8::/32", "*");
        assert!(allowed(&a, "2001:db8:1::5"));
        assert!(!allowed(&a, "2001:db9::5"));
        let a = acl("10.1.0.0/255.255.0.0", "");
        assert!(allowed(&a, "10.1.200.1"));
        assert!(!allowed(&a, "10.2.0.1"));
        let a = acl("0.0.0.0/0", "");
        assert!(allowed(&a, "203.0.113.9"));
        assert!(!allowed(&a, "2001:db8::1"));
    }

    #[test]
    fn names_and_fail_closed() {
        // Reverse names match wildcards case-insensitively.
        let a = acl("*.example.org", "");
        assert!(allowed(&a, "192.0.2.10"));
        assert!(!allowed(&a, "192.0.2.66"));
        assert!(!allowed(&a, "192.0.2.99"), "failed lookup never allows");
        // Plain names: reverse name, or a forward lookup of the token.
        let a = acl("tier1.example.net", "");
        assert!(allowed(&a, "198.51.100.7"));
        assert!(allowed(&a, "2001:db8::7"));
        assert!(!allowed(&a, "198.51.100.8"));
        let a = acl("mirror.example.org", "");
        assert!(allowed(&a, "192.0.2.10"));
        // Deny wildcards: a match denies, no PTR or a failed lookup denies too.
        let a = acl("", "*.bad.example");
        assert!(!allowed(&a, "192.0.2.66"));
        assert!(allowed(&a, "192.0.2.10"));
        assert!(
            !allowed(&a, "192.0.2.99"),
            "deny fails closed when DNS fails"
        );
        assert!(
            !allowed(&a, "203.0.113.1"),
            "deny fails closed without a PTR name"
        );
        // A deny hostname that does not resolve denies (CVE-2026-70452).
        let a = acl("", "does-not-resolve.invalid");
        assert!(!allowed(&a, "192.0.2.10"));
        let a = acl("", "slow.example.net");
        assert!(!allowed(&a, "192.0.2.10"));
        // A resolvable deny name denies only its addresses.
        let a = acl("", "tier1.example.net");
        assert!(!allowed(&a, "198.51.100.7"));
        assert!(allowed(&a, "192.0.2.10"));
        // An address allow decides before any DNS is needed.
        let a = acl("192.0.2.99", "*.bad.example");
        assert!(allowed(&a, "192.0.2.99"));
    }

    #[test]
    fn no_reverse_lookup() {
        let t = |s: &str| vec![s.to_string()];
        let a = HostAcl::from_tokens(&t("*.example.org"), &[], false, true).unwrap();
        assert!(!a.warnings().is_empty());
        let d = dns();
        let mut p = PeerInfo::new(
            Peer {
                addr: ip("192.0.2.10"),
                scope: 0,
            },
            &d,
        );
        assert!(!a.allows(&mut p));
        assert_eq!(p.host(false).0.shown(), "UNDETERMINED");
        assert_eq!(p.host(true).0.shown(), "Mirror.Example.org", "shown as resolved; matched case-insensitively");
        let mut q = PeerInfo::new(
            Peer {
                addr: ip("203.0.113.5"),
                scope: 0,
            },
            &d,
        );
        assert_eq!(q.host(true).0.shown(), "UNKNOWN");
    }

    #[test]
    fn system_resolver_localhost() {
        // Loopback resolves without a network on any sane host.
        let r = SystemResolver::default();
        match r.reverse(ip("127.0.0.1")) {
            Lookup::Found(n) => assert!(n.starts_with("localhost"), "{n}"),
            other => panic!("reverse 127.0.0.1: {other:?}"),
        }
        assert!(matches!(r.forward("localhost"), Lookup::Found(v) if v.contains(&ip("127.0.0.1"))));
    }
}
