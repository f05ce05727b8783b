//! Opening served files beneath a module root, never following symlinks.
//!
//! The snapshot is only a hint: every open re-resolves the module-relative
//! path beneath a held module-root directory fd with `openat2(2)` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`, then
//! `fstat`s the result and requires a regular file (CVE-2024-12747 class).
//!
//! This holds whatever the module's `use chroot` says: we never chroot
//! (sessions are threads), and the confinement is at least as strict as
//! stock's chroot.  The client-visible effects of `use chroot` (defaults of
//! `munge symlinks` and `numeric ids`, how symlinks in an argument's
//! directory part resolve) are in `modopts.rs`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// An open directory fd for a module root.
///
/// The fd is held (no path lookup per open), but a module root that an
/// operator *replaces* (`mv new current`) must not keep being read through
/// the old directory: each open first `stat`s the module path (one syscall,
/// only when a file is actually opened, so a null sync still makes none)
/// and, when it names another directory, reopens it (stock `chdir()`s into
/// the path for every connection, so it follows such a swap too). A path
/// that has vanished keeps the held directory.
#[derive(Debug)]
pub struct ModuleRoot {
    path: std::path::PathBuf,
    held: std::sync::Mutex<std::sync::Arc<Held>>,
}

/// One opened root directory and its identity.
#[derive(Debug)]
struct Held {
    fd: OwnedFd,
    dev: u64,
    ino: u64,
}

fn open_dir(path: &Path) -> io::Result<Held> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a valid NUL-terminated string; the returned fd is
    // checked and owned below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let md = File::from(fd.try_clone()?).metadata()?;
    Ok(Held { fd, dev: md.dev(), ino: md.ino() })
}

impl ModuleRoot {
    /// Open `path` as a directory.
    pub fn open(path: &Path) -> io::Result<Self> {
        let held = open_dir(path)?;
        Ok(ModuleRoot { path: path.to_path_buf(), held: std::sync::Mutex::new(std::sync::Arc::new(held)) })
    }

    /// The root directory to open beneath: the held one, or the module path
    /// reopened when it now names another directory.
    fn current(&self) -> std::sync::Arc<Held> {
        use std::os::unix::fs::MetadataExt;
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(md) = std::fs::metadata(&self.path) {
            if (md.dev(), md.ino()) != (held.dev, held.ino) {
                match open_dir(&self.path) {
                    // Reopened what was stat'ed (not raced by another swap).
                    Ok(new) if (new.dev, new.ino) == (md.dev(), md.ino()) => {
                        tracing::info!(path = %self.path.display(), "module root was replaced; reading the new directory");
                        *held = std::sync::Arc::new(new);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(path = %self.path.display(), "reopening the replaced module root failed: {e}"),
                }
            }
        }
        held.clone()
    }

    /// `openat2(2)` of the module-relative path `rel` beneath the root with
    /// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS` and
    /// `O_NOFOLLOW | O_CLOEXEC` added to `flags`. Absolute paths and `..`
    /// components are refused as ENOENT; other errors are returned as is.
    fn open_beneath(&self, rel: &[u8], flags: i32) -> io::Result<OwnedFd> {
        let root = self.current();
        if rel.starts_with(b"/") || rel.split(|&b| b == b'/').any(|c| c == b"..") {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let c = CString::new(rel).map_err(|_| io::Error::from_raw_os_error(libc::ENOENT))?;
        #[repr(C)]
        struct OpenHow {
            flags: u64,
            mode: u64,
            resolve: u64,
        }
        const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
        const RESOLVE_NO_SYMLINKS: u64 = 0x04;
        const RESOLVE_BENEATH: u64 = 0x08;
        let how = OpenHow {
            flags: (flags | libc::O_CLOEXEC | libc::O_NOFOLLOW) as u64,
            mode: 0,
            resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: openat2 takes a dirfd, a NUL-terminated path and a pointer
        // to an open_how struct of the size we pass; all are valid for the
        // duration of the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.fd.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor returned by openat2 that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// `lstat` of a module-relative path (empty = the root), resolved
    /// beneath the root with no symlink in any component (the leaf itself
    /// may be a symlink: it is not followed).
    pub fn lstat(&self, rel: &[u8]) -> io::Result<std::fs::Metadata> {
        let rel: &[u8] = if rel.is_empty() { b"." } else { rel };
        File::from(self.open_beneath(rel, libc::O_PATH)?).metadata()
    }

    /// Open the regular file at the module-relative path `rel` for reading.
    /// Fails with ENOENT if any component is a symlink or escapes, and
    /// with `EINVAL` if the result is not a regular file.
    pub fn open_file(&self, rel: &[u8]) -> io::Result<File> {
        self.open_file_with(rel, false)
    }

    /// [`Self::open_file`], with `O_NOATIME` when `noatime` is set (`open
    /// noatime`, `--open-noatime`; stock `do_open()`).  Where the kernel
    /// refuses `O_NOATIME` (EPERM: the daemon neither owns the file nor has
    /// `CAP_FOWNER`) the open is retried without it.  Stock 3.2.7 has no
    /// such retry and fails the file; our daemon serves it, touching atime.
    pub fn open_file_with(&self, rel: &[u8], noatime: bool) -> io::Result<File> {
        if rel.is_empty() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        let flags = libc::O_RDONLY | libc::O_NONBLOCK;
        let opened = match self.open_beneath(rel, flags | if noatime { libc::O_NOATIME } else { 0 }) {
            Err(e) if noatime && e.raw_os_error() == Some(libc::EPERM) => self.open_beneath(rel, flags),
            r => r,
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(e) => {
                // Symlink components look like "no such file" to the client:
                // the snapshot never lists a path through a symlink.
                if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV)) {
                    return Err(io::Error::from_raw_os_error(libc::ENOENT));
                }
                return Err(e);
            }
        };
        let file = File::from(fd);
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // Reads should block normally.
        // SAFETY: plain fcntl on a descriptor we own.
        unsafe {
            let fl = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            if fl >= 0 {
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK);
            }
        }
        Ok(file)
    }
}

/// `strerror` text for an IO error, as rsync prints it.
pub fn strerror(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            // SAFETY: strerror returns a pointer to a static or thread-local
            // NUL-terminated string.
            let s = unsafe { std::ffi::CStr::from_ptr(libc::strerror(code)) };
            s.to_string_lossy().into_owned()
        }
        None => e.to_string(),
    }
}

/// Errno of an IO error (EIO if unknown).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// Escape a name for messages the way rsync does for unprintable bytes
/// (`log.c`: `\#ooo` octal escapes for control characters).
pub fn safe_name(name: &[u8]) -> String {
    let mut s = String::new();
    for chunk in name.utf8_chunks() {
        for ch in chunk.valid().chars() {
            if (ch as u32) < 0x20 || ch as u32 == 0x7F {
                s.push_str(&format!("\\#{:03o}", ch as u32));
            } else {
                s.push(ch);
            }
        }
        for &b in chunk.invalid() {
            s.push_str(&format!("\\#{:03o}", b));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_and_escapes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("sub/g"), b"y").unwrap();
        std::os::unix::fs::symlink("f", d.path().join("lnk")).unwrap();
        std::os::unix::fs::symlink("sub", d.path().join("dlnk")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("abs")).unwrap();
        let root = ModuleRoot::open(d.path()).unwrap();
        assert!(root.open_file(b"f").is_ok());
        assert!(root.open_file(b"sub/g").is_ok());
        for bad in [&b"lnk"[..], b"dlnk/g", b"abs", b"../etc/passwd", b"/etc/passwd", b"sub", b"missing"] {
            assert!(root.open_file(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    /// `O_NOATIME` opens leave the access time alone (the daemon runs the
    /// tests as root, so the kernel allows the flag on any file).
    #[test]
    fn noatime_open_keeps_atime() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"data").unwrap();
        let old = libc::timespec { tv_sec: 1_000_000, tv_nsec: 0 };
        let set_old = || {
            let c = CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            let times = [old, libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }];
            // SAFETY: valid path and a two-element timespec array.
            assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }, 0);
        };
        let root = ModuleRoot::open(d.path()).unwrap();
        let read = |noatime: bool| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut root.open_file_with(b"f", noatime).unwrap(), &mut s).unwrap();
            assert_eq!(s, "data");
            std::fs::metadata(&p).unwrap().atime()
        };
        set_old();
        assert_eq!(read(true), 1_000_000);
        // A plain read updates an atime older than the mtime (relatime),
        // unless the file system never records atimes.
        let mounted_noatime = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default().contains("noatime");
        if !mounted_noatime {
            assert_ne!(read(false), 1_000_000);
        }
    }

    #[test]
    fn escapes_control_chars() {
        assert_eq!(safe_name(b"a\nb"), "a\\#012b");
        assert_eq!(safe_name(b"ok \xff"), "ok \\#377");
    }
}
