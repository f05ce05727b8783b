//! The fanotify syscalls (through `libc`, which has the constants and structs but no
//! safe wrappers) and the watcher object.
//!
//! Set-up needs `CAP_SYS_ADMIN` (a `FAN_MARK_FILESYSTEM` mark): do it before dropping
//! privileges. Reading events afterwards needs nothing.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use super::parse;

/// `MAX_HANDLE_SZ` (include/linux/exportfs.h).
const MAX_HANDLE_SZ: usize = 128;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct RawHandle {
    handle_bytes: libc::c_uint,
    handle_type: libc::c_int,
    f_handle: [u8; MAX_HANDLE_SZ],
}

/// The file handle (type, bytes) of the directory open as `fd`.
pub(crate) fn dir_handle(fd: BorrowedFd<'_>) -> io::Result<(i32, Vec<u8>)> {
    let mut h = RawHandle {
        handle_bytes: MAX_HANDLE_SZ as libc::c_uint,
        handle_type: 0,
        f_handle: [0; MAX_HANDLE_SZ],
    };
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `fd` is a valid open descriptor for the duration of the call; the path is
    // a valid NUL-terminated empty string (AT_EMPTY_PATH: the handle of `fd` itself);
    // `h` is a properly aligned `struct file_handle` whose `handle_bytes` announces the
    // MAX_HANDLE_SZ bytes of `f_handle` the kernel may write; `mount_id` is a valid
    // out-pointer. The kernel writes nothing beyond those.
    let r = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            (&mut h as *mut RawHandle).cast::<libc::file_handle>(),
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (h.handle_bytes as usize).min(MAX_HANDLE_SZ);
    Ok((h.handle_type, h.f_handle[..n].to_vec()))
}

/// The `f_fsid` of the file system holding `fd`, as the raw bytes fanotify reports.
pub(crate) fn fsid(fd: BorrowedFd<'_>) -> io::Result<[u8; 8]> {
    const _: () = assert!(std::mem::size_of::<libc::fsid_t>() == 8);
    // SAFETY: `statfs` is a plain C struct for which all-zero bytes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid for the call and `st` is a valid out-pointer of the right type.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fsid_t` is `repr(C)` and consists of two `c_int`s (8 bytes, asserted
    // above); any value is a valid `[u8; 8]`. Its field is private in `libc`.
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [u8; 8]>(st.f_fsid) })
}

/// Events the watcher asks for.
pub(crate) const MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_MODIFY
    | libc::FAN_ATTRIB
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_ONDIR;

/// One event, owned and reduced to what the store needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WatchEvent {
    pub mask: u64,
    /// Handle key of the directory (see [`super::handle_key`]).
    pub dir: Box<[u8]>,
    /// Entry name (`.` or empty for the directory itself).
    pub name: Vec<u8>,
}

/// What one wait produced.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub events: Vec<WatchEvent>,
    /// The kernel queue overflowed (`FAN_Q_OVERFLOW`): events were lost.
    pub overflow: bool,
    /// The buffer could not be parsed (treated like an overflow).
    pub malformed: bool,
}

/// A fanotify group with one filesystem-wide mark on the module root's file system.
#[derive(Debug)]
pub struct Watcher {
    fd: OwnedFd,
    fsid: [u8; 8],
    buf: Vec<u8>,
}

impl Watcher {
    /// `fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME)` (with
    /// `FAN_UNLIMITED_QUEUE` when `unlimited_queue`; falls back without it) and a
    /// `FAN_MARK_FILESYSTEM` mark for create/delete/modify/attrib/moves (`FAN_ONDIR`
    /// included) on the file system holding `root`.
    pub(crate) fn new(root: &Path, unlimited_queue: bool) -> io::Result<Watcher> {
        let base = libc::FAN_CLASS_NOTIF
            | libc::FAN_REPORT_DFID_NAME
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK;
        let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as libc::c_uint;
        let mut tries = vec![base];
        if unlimited_queue {
            tries.insert(0, base | libc::FAN_UNLIMITED_QUEUE);
        }
        let mut last = io::Error::from_raw_os_error(libc::EINVAL);
        let mut fd = None;
        for flags in tries {
            // SAFETY: plain syscall with integer arguments; a non-negative result is a
            // new descriptor that we own from here on.
            let r = unsafe { libc::fanotify_init(flags, event_flags) };
            if r >= 0 {
                // SAFETY: `r` is a fresh descriptor returned by the kernel, owned by no
                // one else.
                fd = Some(unsafe { OwnedFd::from_raw_fd(r) });
                break;
            }
            last = io::Error::last_os_error();
        }
        let fd = fd.ok_or(last)?;
        let cpath = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
        // SAFETY: `fd` is our fanotify descriptor; `cpath` is a valid NUL-terminated
        // path that outlives the call; AT_FDCWD resolves it like open(2).
        let r = unsafe {
            libc::fanotify_mark(
                fd.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                MASK,
                libc::AT_FDCWD,
                cpath.as_ptr(),
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        let root_fd = std::fs::File::open(root)?;
        let fsid = fsid(root_fd.as_fd())?;
        Ok(Watcher {
            fd,
            fsid,
            buf: vec![0u8; 256 * 1024],
        })
    }

    /// Waits up to `timeout` for events, then reads everything queued; events of other
    /// file systems (by fsid) are dropped, `FAN_Q_OVERFLOW` is reported in the batch.
    pub(crate) fn wait(&mut self, timeout: Duration, batch: &mut Batch) -> io::Result<()> {
        let ts = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: timeout.subsec_nanos() as i64,
        };
        let mut fds = [rustix::event::PollFd::new(
            &self.fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.drain(batch)
    }

    /// Reads every queued event without waiting.
    pub(crate) fn drain(&mut self, batch: &mut Batch) -> io::Result<()> {
        loop {
            let n = match rustix::io::read(&self.fd, &mut self.buf[..]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            collect(&self.buf[..n], &self.fsid, batch);
        }
    }
}

/// Turns a buffer of raw events into `batch` entries for file system `fsid`.
pub(crate) fn collect(buf: &[u8], fsid: &[u8; 8], batch: &mut Batch) {
    for ev in parse::events(buf) {
        let ev = match ev {
            Ok(ev) => ev,
            Err(_) => {
                batch.malformed = true;
                return;
            }
        };
        if ev.fd >= 0 {
            // FID-mode groups get no descriptors; if one ever arrives, do not leak it.
            // SAFETY: a non-negative `fd` in an event is a descriptor the kernel
            // installed in our table for us to own (fanotify(7)); nothing else refers
            // to it.
            drop(unsafe { OwnedFd::from_raw_fd(ev.fd) });
        }
        if ev.mask & libc::FAN_Q_OVERFLOW != 0 {
            batch.overflow = true;
            continue;
        }
        for f in &ev.fids {
            if &f.fsid != fsid {
                continue;
            }
            match f.kind {
                parse::INFO_DFID_NAME
                | parse::INFO_DFID
                | parse::INFO_OLD_DFID_NAME
                | parse::INFO_NEW_DFID_NAME => batch.events.push(WatchEvent {
                    mask: ev.mask,
                    dir: super::handle_key(f.handle_type, f.handle),
                    name: f.name.unwrap_or_default().to_vec(),
                }),
                _ => {}
            }
        }
    }
}
