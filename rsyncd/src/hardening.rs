//! Process hardening of a listening daemon: descriptor limit and the
//! capabilities kept after start-up (see docs/security.md).
//!
//! Linux keeps capabilities, the bounding set and `no_new_privs` per
//! thread: [`restrict`] must run in every thread that exists when it is
//! called (the daemon calls it in the main thread before it starts any
//! other thread but the signal thread, and in the signal thread); threads
//! started later inherit the restricted state.

use std::io;

/// Capability numbers (linux/capability.h).
pub const CAP_DAC_READ_SEARCH: u32 = 2;
/// See [`CAP_DAC_READ_SEARCH`].
pub const CAP_FOWNER: u32 = 3;
/// See [`CAP_DAC_READ_SEARCH`].
pub const CAP_NET_BIND_SERVICE: u32 = 10;

/// `_LINUX_CAPABILITY_VERSION_3`: two 32-bit words per set.
const CAP_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each session holds a
/// few descriptors, each connection in its handshake one more); returns the
/// (old soft, new soft) limits.
pub fn raise_fd_limit() -> io::Result<(u64, u64)> {
    // SAFETY: `r` is plain old data that getrlimit fills.
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: getrlimit writes one rlimit into `r`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let old = r.rlim_cur;
    if r.rlim_cur < r.rlim_max {
        r.rlim_cur = r.rlim_max;
        // SAFETY: setrlimit reads one initialised rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((old, r.rlim_cur))
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// What [`restrict`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restricted {
    /// The capabilities left (effective = permitted = bounding set); empty
    /// for a daemon that does not run as root.
    pub kept: Vec<u32>,
    /// Capabilities the bounding set could not lose (no `CAP_SETPCAP`, as
    /// in some containers); `no_new_privs` still keeps an `exec` from
    /// regaining them.
    pub bounding_kept: Vec<u32>,
}

/// Restricts the calling thread: when running as root, drops every
/// capability but `keep` from the bounding, permitted, effective,
/// inheritable and ambient sets; in every case sets `PR_SET_NO_NEW_PRIVS`,
/// so no program the daemon runs (hooks) can gain privileges through
/// set-user-ID bits or file capabilities, and a uid-0 child gets no more
/// capabilities than `keep`.
pub fn restrict(keep: &[u32]) -> io::Result<Restricted> {
    // SAFETY: geteuid() has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut out = Restricted { kept: Vec::new(), bounding_kept: Vec::new() };
    if root {
        // Bounding set first: dropping from it needs CAP_SETPCAP, which
        // the capset below removes.
        for cap in 0..=last_cap() {
            if keep.contains(&cap) {
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if r != 0 {
                let e = io::Error::last_os_error();
                // EINVAL: the kernel does not know this capability.
                if e.raw_os_error() != Some(libc::EINVAL) {
                    out.bounding_kept.push(cap);
                }
            }
        }
        // SAFETY: prctl with integer arguments only; failure (a kernel
        // without ambient capabilities) leaves nothing to clear.
        unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
        let mut data = [CapData::default(); 2];
        for &cap in keep {
            let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
            if let Some(d) = data.get_mut(word) {
                d.effective |= bit;
                d.permitted |= bit;
            }
        }
        let mut hdr = CapHeader { version: CAP_VERSION_3, pid: 0 };
        // SAFETY: capset(2) reads one header and two data structs (version
        // 3), which live on our stack for the call; pid 0 is this thread.
        let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        out.kept = keep.to_vec();
    }
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(out)
}

/// The name of a capability this module knows (for logs).
pub fn cap_name(cap: u32) -> String {
    match cap {
        CAP_DAC_READ_SEARCH => "cap_dac_read_search".into(),
        CAP_FOWNER => "cap_fowner".into(),
        CAP_NET_BIND_SERVICE => "cap_net_bind_service".into(),
        n => format!("cap_{n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_field(text: &str, key: &str) -> Option<String> {
        text.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string())
    }

    #[test]
    fn fd_limit_is_raised_to_the_hard_limit() {
        let (_, now) = raise_fd_limit().unwrap();
        // SAFETY: plain getrlimit into a zeroed struct.
        let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) }, 0);
        assert_eq!((r.rlim_cur, now), (r.rlim_max, r.rlim_max));
    }

    /// Runs in a thread of its own: the restriction is per thread and must
    /// not leak into the other tests of this process.
    #[test]
    fn restrict_leaves_only_what_is_kept_in_this_thread() {
        let t = std::thread::spawn(|| {
            let r = restrict(&[CAP_DAC_READ_SEARCH]).unwrap();
            let st = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            (r, st)
        });
        let (r, st) = t.join().unwrap();
        assert_eq!(status_field(&st, "NoNewPrivs:").as_deref(), Some("1"));
        // SAFETY: geteuid() has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!(r.kept, vec![CAP_DAC_READ_SEARCH]);
            let want = format!("{:016x}", 1u64 << CAP_DAC_READ_SEARCH);
            assert_eq!(status_field(&st, "CapEff:"), Some(want.clone()), "{st}");
            assert_eq!(status_field(&st, "CapPrm:"), Some(want.clone()));
            assert_eq!(status_field(&st, "CapInh:").as_deref(), Some("0000000000000000"));
            if r.bounding_kept.is_empty() {
                assert_eq!(status_field(&st, "CapBnd:"), Some(want));
            }
        }
        // This thread is untouched.
        let mine = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        assert_eq!(status_field(&mine, "NoNewPrivs:").as_deref(), Some("0"));
    }
}
