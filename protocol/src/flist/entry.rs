//! One file-list entry as it goes on the wire, file-type bits and the
//! `XMIT_*` flag constants of `rsync.h`.

/// Mask of the file-type bits of `st_mode` (`S_IFMT`).
pub const S_IFMT: u32 = 0o170000;
/// Socket.
pub const S_IFSOCK: u32 = 0o140000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Block device.
pub const S_IFBLK: u32 = 0o060000;
/// Directory.
pub const S_IFDIR: u32 = 0o040000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;
/// FIFO.
pub const S_IFIFO: u32 = 0o010000;

/// `XMIT_TOP_DIR`: directory is a transfer root (also the zero-avoidance
/// filler on non-directories in the legacy flag encoding).
pub const XMIT_TOP_DIR: u32 = 1 << 0;
/// `XMIT_SAME_MODE`: mode equals the previous entry's, not sent.
pub const XMIT_SAME_MODE: u32 = 1 << 1;
/// `XMIT_SAME_RDEV_pre28`: protocol 27 only, rdev equals the previous one.
#[allow(non_upper_case_globals)]
pub const XMIT_SAME_RDEV_pre28: u32 = 1 << 2;
/// `XMIT_EXTENDED_FLAGS`: protocol >= 28 legacy encoding, a second flag byte
/// follows (varint encoding: the filler for an otherwise zero value).
pub const XMIT_EXTENDED_FLAGS: u32 = 1 << 2;
/// `XMIT_SAME_UID`: uid not sent.
pub const XMIT_SAME_UID: u32 = 1 << 3;
/// `XMIT_SAME_GID`: gid not sent.
pub const XMIT_SAME_GID: u32 = 1 << 4;
/// `XMIT_SAME_NAME`: a byte with the shared-prefix length follows.
pub const XMIT_SAME_NAME: u32 = 1 << 5;
/// `XMIT_LONG_NAME`: the suffix length is a varint30 instead of a byte.
pub const XMIT_LONG_NAME: u32 = 1 << 6;
/// `XMIT_SAME_TIME`: mtime equals the previous entry's, not sent.
pub const XMIT_SAME_TIME: u32 = 1 << 7;
/// `XMIT_SAME_RDEV_MAJOR`: devices, protocol >= 28.
pub const XMIT_SAME_RDEV_MAJOR: u32 = 1 << 8;
/// `XMIT_NO_CONTENT_DIR`: directories, protocol >= 30.
pub const XMIT_NO_CONTENT_DIR: u32 = 1 << 8;
/// `XMIT_HLINKED`: non-directories, protocol >= 28.
pub const XMIT_HLINKED: u32 = 1 << 9;
/// `XMIT_SAME_DEV_pre30`: protocols 28-29, hard-link dev equals previous.
#[allow(non_upper_case_globals)]
pub const XMIT_SAME_DEV_pre30: u32 = 1 << 10;
/// `XMIT_USER_NAME_FOLLOWS`: protocol >= 30, an inline user name follows the uid.
pub const XMIT_USER_NAME_FOLLOWS: u32 = 1 << 10;
/// `XMIT_RDEV_MINOR_8_pre30`: protocols 28-29, rdev minor sent as one byte.
#[allow(non_upper_case_globals)]
pub const XMIT_RDEV_MINOR_8_pre30: u32 = 1 << 11;
/// `XMIT_GROUP_NAME_FOLLOWS`: protocol >= 30, an inline group name follows the gid.
pub const XMIT_GROUP_NAME_FOLLOWS: u32 = 1 << 11;
/// `XMIT_HLINK_FIRST`: protocol >= 30, first occurrence of a hard-link group.
pub const XMIT_HLINK_FIRST: u32 = 1 << 12;
/// `XMIT_IO_ERROR_ENDLIST`: with `XMIT_EXTENDED_FLAGS`, the legacy end marker
/// that carries an io_error (safe flist only).
pub const XMIT_IO_ERROR_ENDLIST: u32 = 1 << 12;
/// `XMIT_MOD_NSEC`: protocol >= 31, mtime nanoseconds follow.
pub const XMIT_MOD_NSEC: u32 = 1 << 13;
/// `XMIT_SAME_ATIME`: with `--atimes` (not produced by this encoder).
pub const XMIT_SAME_ATIME: u32 = 1 << 14;
/// `XMIT_UNUSED_15`.
pub const XMIT_UNUSED_15: u32 = 1 << 15;
/// `XMIT_RESERVED_16`.
pub const XMIT_RESERVED_16: u32 = 1 << 16;
/// `XMIT_CRTIME_EQ_MTIME`: with `--crtimes` (not produced by this encoder).
pub const XMIT_CRTIME_EQ_MTIME: u32 = 1 << 17;

/// Largest nanosecond value a receiver accepts (`rsync.h: MAX_WIRE_NSEC`).
pub const MAX_WIRE_NSEC: u32 = 999_999_999;

/// `rsync.h: IOERR_GENERAL`.
pub const IOERR_GENERAL: i32 = 1 << 0;
/// `rsync.h: IOERR_VANISHED`.
pub const IOERR_VANISHED: i32 = 1 << 1;
/// `rsync.h: IOERR_DEL_LIMIT`.
pub const IOERR_DEL_LIMIT: i32 = 1 << 2;

/// The seven file types a file list can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// `S_IFREG`.
    Regular,
    /// `S_IFDIR`.
    Dir,
    /// `S_IFLNK`.
    Symlink,
    /// `S_IFCHR`.
    CharDev,
    /// `S_IFBLK`.
    BlockDev,
    /// `S_IFIFO`.
    Fifo,
    /// `S_IFSOCK`.
    Socket,
}

impl FileType {
    /// The type encoded in the `S_IFMT` bits of `mode`, or `None` for any
    /// other value (including mode 0).
    pub fn from_mode(mode: u32) -> Option<FileType> {
        match mode & S_IFMT {
            S_IFREG => Some(FileType::Regular),
            S_IFDIR => Some(FileType::Dir),
            S_IFLNK => Some(FileType::Symlink),
            S_IFCHR => Some(FileType::CharDev),
            S_IFBLK => Some(FileType::BlockDev),
            S_IFIFO => Some(FileType::Fifo),
            S_IFSOCK => Some(FileType::Socket),
            _ => None,
        }
    }

    /// The `S_IFMT` bits of this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileType::Regular => S_IFREG,
            FileType::Dir => S_IFDIR,
            FileType::Symlink => S_IFLNK,
            FileType::CharDev => S_IFCHR,
            FileType::BlockDev => S_IFBLK,
            FileType::Fifo => S_IFIFO,
            FileType::Socket => S_IFSOCK,
        }
    }

    /// Character or block device (`rsync.h: IS_DEVICE`).
    pub fn is_device(self) -> bool {
        matches!(self, FileType::CharDev | FileType::BlockDev)
    }

    /// FIFO or socket (`rsync.h: IS_SPECIAL`).
    pub fn is_special(self) -> bool {
        matches!(self, FileType::Fifo | FileType::Socket)
    }
}

/// `S_ISDIR(mode)`.
pub fn mode_is_dir(mode: u32) -> bool {
    mode & S_IFMT == S_IFDIR
}

/// `S_ISREG(mode)`.
pub fn mode_is_reg(mode: u32) -> bool {
    mode & S_IFMT == S_IFREG
}

/// `S_ISLNK(mode)`.
pub fn mode_is_lnk(mode: u32) -> bool {
    mode & S_IFMT == S_IFLNK
}

/// `IS_DEVICE(mode)`: character or block device.
pub fn mode_is_device(mode: u32) -> bool {
    matches!(mode & S_IFMT, S_IFCHR | S_IFBLK)
}

/// `IS_SPECIAL(mode)`: FIFO or socket.
pub fn mode_is_special(mode: u32) -> bool {
    matches!(mode & S_IFMT, S_IFIFO | S_IFSOCK)
}

/// Linux (glibc) `makedev()`: the 64-bit `dev_t` for a major/minor pair.
/// Protocol 27 sends rdev as the low 32 bits of this value.
pub fn linux_makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0x0000_0fff) << 8)
        | ((ma & 0xffff_f000) << 32)
        | (mi & 0x0000_00ff)
        | ((mi & 0xffff_ff00) << 12)
}

/// Linux (glibc) `major()` of a `dev_t`.
pub fn linux_major(dev: u64) -> u32 {
    (((dev >> 8) & 0x0000_0fff) | ((dev >> 32) & 0xffff_f000)) as u32
}

/// Linux (glibc) `minor()` of a `dev_t`.
pub fn linux_minor(dev: u64) -> u32 {
    ((dev & 0x0000_00ff) | ((dev >> 12) & 0xffff_ff00)) as u32
}

/// Borrowed view of one entry as it goes on the wire.
///
/// `name` is the full name relative to the transfer root (`b"."` for the
/// top directory, `b"dir/file.txt"`). Names shorter than MAXPATHLEN (4096)
/// bytes and without NUL bytes are the caller's responsibility, as are
/// non-empty symlink targets (stock `send_file_name()` skips empty ones).
#[derive(Debug, Clone, Copy)]
pub struct FileEntry<'a> {
    /// Full name relative to the transfer root.
    pub name: &'a [u8],
    /// Full `st_mode` (type bits + permissions).
    pub mode: u32,
    /// `st_size` (directories: directory size; symlinks: target length;
    /// devices and specials: ignored, always sent as 0 like `make_file()`).
    pub size: i64,
    /// Modification time in seconds; may be negative or far in the future.
    pub mtime: i64,
    /// Nanoseconds of the modification time (sent from protocol 31 on).
    pub mtime_nsec: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device major (character/block devices).
    pub rdev_major: u32,
    /// Device minor (character/block devices).
    pub rdev_minor: u32,
    /// Symlink target (symlinks only).
    pub link_target: &'a [u8],
    /// `XMIT_TOP_DIR` for directories.
    pub top_dir: bool,
    /// `XMIT_NO_CONTENT_DIR` for directories (protocol >= 30).
    pub no_content_dir: bool,
    /// `(dev, ino)` when the entry is a non-directory with `nlink > 1`.
    pub hardlink: Option<(u64, u64)>,
    /// `-c` whole-file checksum (regular files), of length
    /// `FlistOptions::checksum_len`; `None` sends zeros.
    pub checksum: Option<&'a [u8]>,
}

impl<'a> FileEntry<'a> {
    /// A zeroed entry of the given name and mode; handy for tests and
    /// builders that fill in fields one by one.
    pub fn new(name: &'a [u8], mode: u32) -> Self {
        FileEntry {
            name,
            mode,
            size: 0,
            mtime: 0,
            mtime_nsec: 0,
            uid: 0,
            gid: 0,
            rdev_major: 0,
            rdev_minor: 0,
            link_target: b"",
            top_dir: false,
            no_content_dir: false,
            hardlink: None,
            checksum: None,
        }
    }

    /// The file type, if the mode carries a valid one.
    pub fn file_type(&self) -> Option<FileType> {
        FileType::from_mode(self.mode)
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        mode_is_dir(self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_type_from_mode() {
        assert_eq!(FileType::from_mode(0o100644), Some(FileType::Regular));
        assert_eq!(FileType::from_mode(0o040755), Some(FileType::Dir));
        assert_eq!(FileType::from_mode(0o120777), Some(FileType::Symlink));
        assert_eq!(FileType::from_mode(0o020600), Some(FileType::CharDev));
        assert_eq!(FileType::from_mode(0o060600), Some(FileType::BlockDev));
        assert_eq!(FileType::from_mode(0o010644), Some(FileType::Fifo));
        assert_eq!(FileType::from_mode(0o140755), Some(FileType::Socket));
        assert_eq!(FileType::from_mode(0), None);
        assert_eq!(FileType::from_mode(0o170000), None);
        for t in [
            FileType::Regular,
            FileType::Dir,
            FileType::Symlink,
            FileType::CharDev,
        ] {
            assert_eq!(FileType::from_mode(t.mode_bits() | 0o644), Some(t));
        }
    }

    #[test]
    fn linux_dev_encoding() {
        // /dev/null is 1:3 -> 0x103; /dev/sda1 8:1 -> 0x801.
        assert_eq!(linux_makedev(1, 3), 0x103);
        assert_eq!(linux_makedev(8, 1), 0x801);
        let d = linux_makedev(0x12345, 0x6789a);
        assert_eq!((linux_major(d), linux_minor(d)), (0x12345, 0x6789a));
        let d = linux_makedev(u32::MAX, u32::MAX);
        assert_eq!((linux_major(d), linux_minor(d)), (u32::MAX, u32::MAX));
    }
}
