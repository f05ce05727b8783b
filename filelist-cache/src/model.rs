//! Owned helper types and mode predicates used while scanning. No rkyv derives here.

/// `S_IFMT` and the file-type bits of `st_mode` (POSIX values, identical on all Linux
/// architectures).
pub(crate) const S_IFMT: u32 = 0o170000;
pub(crate) const S_IFDIR: u32 = 0o040000;
pub(crate) const S_IFREG: u32 = 0o100000;
pub(crate) const S_IFLNK: u32 = 0o120000;
pub(crate) const S_IFCHR: u32 = 0o020000;
pub(crate) const S_IFBLK: u32 = 0o060000;

#[inline]
pub(crate) fn mode_is_dir(mode: u32) -> bool {
    mode & S_IFMT == S_IFDIR
}

#[inline]
pub(crate) fn mode_is_device(mode: u32) -> bool {
    matches!(mode & S_IFMT, S_IFCHR | S_IFBLK)
}

/// Attributes of one entry as read by `fstatat(AT_SYMLINK_NOFOLLOW)`, normalised to fixed
/// widths (the kernel's `struct stat` field types differ between architectures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: u32,
    pub ctime: i64,
    pub ctime_nsec: u32,
    pub dev: u64,
    pub ino: u64,
    pub rdev_major: u32,
    pub rdev_minor: u32,
}

impl Attrs {
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // widths vary by arch
    pub(crate) fn from_stat(st: &rustix::fs::Stat) -> Attrs {
        let mode = st.st_mode as u32;
        let (rdev_major, rdev_minor) = if mode_is_device(mode) {
            let rdev = st.st_rdev as u64;
            (rustix::fs::major(rdev), rustix::fs::minor(rdev))
        } else {
            (0, 0)
        };
        Attrs {
            mode,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            nlink: u32::try_from(st.st_nlink as u64).unwrap_or(u32::MAX),
            size: st.st_size as u64,
            mtime: st.st_mtime as i64,
            mtime_nsec: st.st_mtime_nsec as u32,
            ctime: st.st_ctime as i64,
            ctime_nsec: st.st_ctime_nsec as u32,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            rdev_major,
            rdev_minor,
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        mode_is_dir(self.mode)
    }

    pub(crate) fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
}

/// One directory entry read during a scan, before it gets its place in the snapshot.
#[derive(Debug)]
pub(crate) struct Child {
    pub name: Vec<u8>,
    pub attrs: Attrs,
    /// Symlink target (empty for other types).
    pub target: Vec<u8>,
}
