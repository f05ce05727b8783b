//! Connection limits: stock's `max connections` slots in the `lock file`,
//! and our per-listener session caps (total and per client address).
//!
//! `claim_connection()` mirrors `connection.c`: slot `i` is a write lock on
//! bytes `4i..4i+4` of the lock file, tried in order; the slot is held for
//! the whole session.  Stock uses classic POSIX record locks, which belong
//! to a process; our sessions are threads of one process, so we take
//! open-file-description locks (`F_OFD_SETLK`) instead.  Those conflict with
//! each other per open file and with classic locks, so a lock file shared
//! with a stock daemon (or a second rsyncd) still counts correctly.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

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

#[cfg(test)]
mod tests {
    use super::*;

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
