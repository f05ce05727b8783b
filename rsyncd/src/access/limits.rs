//! Connection limits: stock's `max connections` slots in the `lock file`,
//! our per-listener session caps (total and per client address), and the
//! pool of connections still in their handshake ([`HandshakePool`]).
//!
//! The daemon's own defaults for these limits live here
//! ([`DEFAULT_HANDSHAKE_TIMEOUT`], [`DEFAULT_MAX_HANDSHAKES`],
//! [`DEFAULT_MAX_HANDSHAKES_PER_HOST`], [`DEFAULT_DRAIN_TIMEOUT`]; `max
//! sessions` and `max sessions per host` default to 1024 and 64); the
//! protocol's wire limits are `protocol::limits::Limits`.
//!
//! `claim_connection()` mirrors `connection.c`: slot `i` is a write lock on
//! bytes `4i..4i+4` of the lock file, tried in order; the slot is held for
//! the whole session.  Stock uses classic POSIX record locks, which belong
//! to a process; our sessions are threads of one process, so we take
//! open-file-description locks (`F_OFD_SETLK`) instead.  Those conflict with
//! each other per open file and with classic locks, so a lock file shared
//! with a stock daemon (or a second rsyncd) still counts correctly.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default `handshake timeout`: one absolute deadline from the accept to the
/// end of the client's arguments (greeting, module line, authentication,
/// arguments), however the client trickles its bytes.  Stock's is 60 s too;
/// a module `timeout` can only shorten it.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default `max handshakes`: connections per listener that may be in their
/// handshake at once.  When the pool is full the connection that has been
/// waiting longest is closed to make room (if it has waited at least
/// [`EVICT_AFTER`]), so a flood of idle connections costs at most this many
/// threads (each about 35 KiB resident) and cannot lock out clients that
/// complete their handshake promptly.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// A connection in its handshake is safe from eviction for this long (an
/// honest client needs a few round trips); when every connection in a full
/// pool is younger, a new one is refused instead.
pub const EVICT_AFTER: Duration = Duration::from_secs(1);

/// Default `max handshakes per host`: connections in their handshake at once
/// from one client (an IPv4 address or an IPv6 /64) per listener; a further
/// one is refused at once (it cannot push other clients out of the pool).
pub const DEFAULT_MAX_HANDSHAKES_PER_HOST: usize = 16;

/// Default `drain timeout`: after SIGTERM/SIGINT the daemon stops accepting
/// and waits this long for the sessions in flight before it exits anyway.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A held `max connections` slot; released when dropped (the file closes).
#[derive(Debug)]
pub struct Slot {
    _file: File,
    /// Slot number (0-based).
    pub index: i32,
}

/// Why no slot was given.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Every slot is taken (or `max connections` is negative).
    #[error("max connections ({0}) reached")]
    Full(i32),
    /// The lock file could not be opened.
    #[error("failed to open lock file: {0}")]
    LockFile(io::Error),
}

impl ClaimError {
    /// The client's `@ERROR:` text (stock's).
    pub fn client_text(&self) -> String {
        match self {
            ClaimError::Full(n) => format!("max connections ({n}) reached -- try again later"),
            ClaimError::LockFile(_) => "failed to open lock file".to_string(),
        }
    }
}

fn ofd_lock(f: &File, start: i64, len: i64) -> bool {
    // SAFETY: flock is plain old data.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = libc::F_WRLCK as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l.l_start = start;
    l.l_len = len;
    l.l_pid = 0;
    // SAFETY: fcntl with a valid fd and a pointer to a flock struct.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &l) == 0 }
}

/// `claim_connection()`: `Ok(None)` when `max` is 0 (no limit).
pub fn claim_connection(lock_file: &Path, max: i32) -> Result<Option<Slot>, ClaimError> {
    use std::os::unix::fs::OpenOptionsExt;
    if max == 0 {
        return Ok(None);
    }
    if let Err(why) = super::auth::check_symlinks(lock_file) {
        return Err(ClaimError::LockFile(io::Error::new(
            io::ErrorKind::PermissionDenied,
            why,
        )));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(lock_file)
        .map_err(ClaimError::LockFile)?;
    for i in 0..max.max(0) {
        if ofd_lock(&f, i64::from(i) * 4, 4) {
            return Ok(Some(Slot { _file: f, index: i }));
        }
    }
    Err(ClaimError::Full(max))
}

/// Per-listener session caps: at most `max_total` sessions, and at most
/// `max_per_host` from one client (one IPv4 address, or one IPv6 /64).
#[derive(Debug)]
pub struct SessionCaps {
    /// Sessions at once on this listener.
    pub max_total: usize,
    /// Sessions at once from one client.
    pub max_per_host: usize,
    inner: Mutex<CapsInner>,
}

#[derive(Debug, Default)]
struct CapsInner {
    total: usize,
    per_host: HashMap<IpAddr, usize>,
}

/// Why a connection was turned away before the greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapExceeded {
    /// The listener is full.
    Total(usize),
    /// That client already has its share.
    PerHost(usize),
}

/// The key a client is counted under.
pub fn host_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
        v4 => v4,
    }
}

/// A counted session; uncounted when dropped.
#[derive(Debug)]
pub struct CapGuard {
    caps: Arc<SessionCaps>,
    key: IpAddr,
}

impl Drop for CapGuard {
    fn drop(&mut self) {
        let mut g = self.caps.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.total = g.total.saturating_sub(1);
        if let Some(n) = g.per_host.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.per_host.remove(&self.key);
            }
        }
    }
}

impl SessionCaps {
    /// New caps.
    pub fn new(max_total: usize, max_per_host: usize) -> Arc<SessionCaps> {
        Arc::new(SessionCaps {
            max_total,
            max_per_host,
            inner: Mutex::new(CapsInner::default()),
        })
    }

    /// Count a new session from `ip`, or say which cap it hits.
    pub fn try_enter(self: &Arc<Self>, ip: IpAddr) -> Result<CapGuard, CapExceeded> {
        let key = host_key(ip);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.total >= self.max_total {
            return Err(CapExceeded::Total(self.max_total));
        }
        let n = g.per_host.get(&key).copied().unwrap_or(0);
        if n >= self.max_per_host {
            return Err(CapExceeded::PerHost(self.max_per_host));
        }
        g.total += 1;
        *g.per_host.entry(key).or_insert(0) += 1;
        Ok(CapGuard {
            caps: self.clone(),
            key,
        })
    }

    /// Sessions counted now.
    pub fn active(&self) -> usize {
        self.inner.lock().map(|g| g.total).unwrap_or(0)
    }
}

/// Connections of one listener that are still in their handshake (from the
/// accept until the client's arguments are read): at most `max_total`, and at
/// most `max_per_host` from one client.
///
/// Each entry keeps a second handle to its socket so that the pool can close
/// it from outside the session's thread: when the pool is full, a new
/// connection evicts the oldest one (its blocked read returns at once and its
/// thread ends), and [`HandshakePool::close_all`] ends every one of them when
/// the daemon drains.
#[derive(Debug)]
pub struct HandshakePool {
    /// Connections in their handshake at once.
    pub max_total: usize,
    /// Connections in their handshake at once from one client.
    pub max_per_host: usize,
    /// How long a connection is safe from eviction.
    pub evict_after: Duration,
    inner: Mutex<PoolInner>,
}

#[derive(Debug, Default)]
struct PoolInner {
    /// Entry ids increase with arrival: the first entry is the oldest.
    live: BTreeMap<u64, Pending>,
    per_host: HashMap<IpAddr, usize>,
    next_id: u64,
    evicted: u64,
    closed: bool,
}

#[derive(Debug)]
struct Pending {
    key: IpAddr,
    conn: TcpStream,
    since: Instant,
}

impl PoolInner {
    fn remove(&mut self, id: u64) -> Option<Pending> {
        let p = self.live.remove(&id)?;
        if let Some(n) = self.per_host.get_mut(&p.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_host.remove(&p.key);
            }
        }
        Some(p)
    }
}

/// Why a connection may not start its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefused {
    /// That client already has `max handshakes per host` connections in
    /// their handshake.
    PerHost(usize),
    /// The pool is full of connections too young to evict.
    Full(usize),
    /// The daemon is draining: no new connection is served.
    Closed,
}

/// A connection admitted to a [`HandshakePool`].
#[derive(Debug)]
pub struct Admitted {
    /// Leaves the pool when dropped (at the end of the handshake).
    pub ticket: HandshakeTicket,
    /// The client whose oldest waiting connection was closed to make room.
    pub evicted: Option<IpAddr>,
}

/// A place in a [`HandshakePool`]; dropping it (once the handshake is over,
/// or when the session ends) frees the place.
#[derive(Debug)]
pub struct HandshakeTicket {
    pool: Arc<HandshakePool>,
    id: u64,
}

impl Drop for HandshakeTicket {
    fn drop(&mut self) {
        let mut g = self.pool.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Already gone when it was evicted or closed.
        g.remove(self.id);
    }
}

impl HandshakePool {
    /// A new, empty pool (each cap at least 1); a connection may be evicted
    /// once it has waited `evict_after` ([`EVICT_AFTER`] in the daemon).
    pub fn new(max_total: usize, max_per_host: usize, evict_after: Duration) -> Arc<HandshakePool> {
        Arc::new(HandshakePool {
            max_total: max_total.max(1),
            max_per_host: max_per_host.max(1),
            evict_after,
            inner: Mutex::new(PoolInner::default()),
        })
    }

    /// Admit a connection from `ip` now; see [`Self::try_enter_at`].
    pub fn try_enter(self: &Arc<Self>, ip: IpAddr, conn: TcpStream) -> Result<Admitted, HandshakeRefused> {
        self.try_enter_at(ip, conn, Instant::now())
    }

    /// Admit a connection from `ip` arriving at `now`; `conn` is a second
    /// handle to its socket (kept to shut the connection down if it is
    /// evicted or the daemon drains).  A full pool makes room by closing its
    /// oldest connection if that one has waited `evict_after`; otherwise the
    /// newcomer is refused.
    pub fn try_enter_at(self: &Arc<Self>, ip: IpAddr, conn: TcpStream, now: Instant) -> Result<Admitted, HandshakeRefused> {
        let key = host_key(ip);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.closed {
            return Err(HandshakeRefused::Closed);
        }
        if g.per_host.get(&key).copied().unwrap_or(0) >= self.max_per_host {
            return Err(HandshakeRefused::PerHost(self.max_per_host));
        }
        let mut evicted = None;
        while g.live.len() >= self.max_total {
            let Some((&oldest, p)) = g.live.iter().next() else { break };
            if now.saturating_duration_since(p.since) < self.evict_after {
                return Err(HandshakeRefused::Full(self.max_total));
            }
            if let Some(p) = g.remove(oldest) {
                let _ = p.conn.shutdown(Shutdown::Both);
                g.evicted += 1;
                evicted = Some(p.key);
            }
        }
        let id = g.next_id;
        g.next_id += 1;
        g.live.insert(id, Pending { key, conn, since: now });
        *g.per_host.entry(key).or_insert(0) += 1;
        Ok(Admitted { ticket: HandshakeTicket { pool: self.clone(), id }, evicted })
    }

    /// Close every connection still in its handshake and refuse new ones
    /// (the daemon is draining).
    pub fn close_all(&self) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.closed = true;
        let ids: Vec<u64> = g.live.keys().copied().collect();
        for id in ids {
            if let Some(p) = g.remove(id) {
                let _ = p.conn.shutdown(Shutdown::Both);
            }
        }
    }

    /// Connections in their handshake now.
    pub fn pending(&self) -> usize {
        self.inner.lock().map(|g| g.live.len()).unwrap_or(0)
    }

    /// Connections closed so far to make room for newer ones.
    pub fn evicted(&self) -> u64 {
        self.inner.lock().map(|g| g.evicted).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    /// A connected pair: (client end, server end).
    fn pair(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    fn closed(c: &mut TcpStream) -> bool {
        c.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        matches!(c.read(&mut b), Ok(0) | Err(_))
    }

    #[test]
    fn handshake_pool_evicts_the_oldest_and_caps_each_host() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let pool = HandshakePool::new(3, 2, Duration::from_secs(1));
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "2001:db8::1".parse().unwrap();
        let (mut c1, s1) = pair(&l);
        let (mut c2, s2) = pair(&l);
        let (mut c3, s3) = pair(&l);
        let (mut c4, s4) = pair(&l);
        let t1 = pool.try_enter_at(a, s1.try_clone().unwrap(), at(0)).unwrap();
        assert_eq!(t1.evicted, None);
        let t2 = pool.try_enter_at(a, s2.try_clone().unwrap(), at(10)).unwrap();
        // A third from `a` is over its share: refused, nobody evicted.
        let (_c5, s5) = pair(&l);
        assert_eq!(pool.try_enter_at(a, s5, at(20)).unwrap_err(), HandshakeRefused::PerHost(2));
        let t3 = pool.try_enter_at(b, s3.try_clone().unwrap(), at(30)).unwrap();
        assert_eq!(pool.pending(), 3);
        // Full, and the oldest has not waited a second yet: refused.
        let (_c8, s8) = pair(&l);
        assert_eq!(pool.try_enter_at(c, s8, at(999)).unwrap_err(), HandshakeRefused::Full(3));
        // Later the oldest (the first from `a`) is shut down to make room.
        let t4 = pool.try_enter_at(c, s4.try_clone().unwrap(), at(1000)).unwrap();
        assert_eq!(t4.evicted, Some(a));
        assert_eq!((pool.pending(), pool.evicted()), (3, 1));
        assert!(closed(&mut c1), "the evicted connection is closed");
        // Its ticket's drop does not free a second place.
        drop(t1);
        assert_eq!(pool.pending(), 3);
        // `a` has one place left again; a ticket dropped frees its place.
        drop(t2);
        assert_eq!(pool.pending(), 2);
        let (_c6, s6) = pair(&l);
        let t6 = pool.try_enter(a, s6).unwrap();
        assert_eq!(t6.evicted, None);
        // Draining closes everything and refuses newcomers.
        pool.close_all();
        assert_eq!(pool.pending(), 0);
        assert!(closed(&mut c3) && closed(&mut c4));
        let (_c7, s7) = pair(&l);
        assert_eq!(pool.try_enter(b, s7).unwrap_err(), HandshakeRefused::Closed);
        drop((t3, t4, t6));
        // A connection whose handshake ended normally is left open.
        let pool = HandshakePool::new(1, 1, Duration::ZERO);
        let t = pool.try_enter(a, s2.try_clone().unwrap()).unwrap();
        drop(t.ticket);
        pool.close_all();
        c2.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 1];
        let r = c2.read(&mut buf);
        assert!(matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "{r:?}");
    }

    #[test]
    fn slots_are_exclusive_within_one_process() {
        let d = tempfile::tempdir().unwrap();
        let lf = d.path().join("lock");
        assert!(claim_connection(&lf, 0).unwrap().is_none());
        let a = claim_connection(&lf, 2).unwrap().unwrap();
        let b = claim_connection(&lf, 2).unwrap().unwrap();
        assert_eq!((a.index, b.index), (0, 1));
        let e = claim_connection(&lf, 2).unwrap_err();
        assert_eq!(
            e.client_text(),
            "max connections (2) reached -- try again later"
        );
        drop(a);
        let a2 = claim_connection(&lf, 2).unwrap().unwrap();
        assert_eq!(a2.index, 0);
        // A module with a bigger limit sharing the file gets the next slots.
        let c = claim_connection(&lf, 3).unwrap().unwrap();
        assert_eq!(c.index, 2);
        assert_eq!(
            claim_connection(&lf, -1).unwrap_err().client_text(),
            "max connections (-1) reached -- try again later"
        );
        let e = claim_connection(&d.path().join("no/such/dir/lock"), 1).unwrap_err();
        assert_eq!(e.client_text(), "failed to open lock file");
    }

    #[test]
    fn caps() {
        let c = SessionCaps::new(3, 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let a = c.try_enter(ip).unwrap();
        let _b = c.try_enter(ip).unwrap();
        assert_eq!(c.try_enter(ip).unwrap_err(), CapExceeded::PerHost(2));
        let _d = c.try_enter(other).unwrap();
        assert_eq!(
            c.try_enter("192.0.2.3".parse().unwrap()).unwrap_err(),
            CapExceeded::Total(3)
        );
        drop(a);
        assert_eq!(c.active(), 2);
        assert!(c.try_enter(ip).is_ok());
        // One IPv6 /64 counts as one client; v4-mapped counts as v4.
        let c = SessionCaps::new(10, 1);
        let _x = c.try_enter("2001:db8::1".parse().unwrap()).unwrap();
        assert!(c.try_enter("2001:db8::2".parse().unwrap()).is_err());
        assert!(c.try_enter("2001:db8:0:1::2".parse().unwrap()).is_ok());
        let _y = c.try_enter("10.0.0.1".parse().unwrap()).unwrap();
        assert!(c.try_enter("::ffff:10.0.0.1".parse().unwrap()).is_err());
    }
}
