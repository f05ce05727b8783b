//! Module identity (`uid` / `gid`) and the readability rule that makes a
//! module behave as if it ran as that identity.
//!
//! Stock rsync (`clientserver.c: rsync_module()`) switches to the module's
//! `uid` (default `nobody` when the daemon runs as root) and to exactly the
//! groups listed in `gid` (default the nobody group when root; `*` first
//! means every group of the uid), then reads the tree with `access()` /
//! `opendir()`.  We keep root's privileges (the snapshot covers everything)
//! and instead evaluate the same permission bits against that identity for
//! every entry a session can reach: what the identity could not read does
//! not exist for the module.
//!
//! The rule ([`Identity::may_see`]): an entry is visible when the identity
//! may read it (symlinks excepted, as in stock's `ignore nonreadable`) and may
//! both read and search every directory from the module root down to its
//! parent.  Only mode bits, owner and group are considered (POSIX ACL entries
//! are not; an ACL that grants extra access is therefore ignored, which errs
//! on the side of hiding).

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::session::files::ModuleRoot;
use std::sync::Arc;

use filelist_cache::EntryRef;

/// File type bits (`S_IFMT`).
const S_IFMT: u32 = 0o170000;
const S_IFDIR: u32 = 0o040000;
const S_IFLNK: u32 = 0o120000;

/// Read permission (the `r` bit of a class).
pub const R: u32 = 4;
/// Search/execute permission (the `x` bit of a class).
pub const X: u32 = 1;

/// The credentials a module reads with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Effective uid.
    pub uid: u32,
    /// Every group the identity holds (primary first, then supplementary).
    pub gids: Vec<u32>,
}

/// The metadata the rule needs from an entry (snapshot record or `fstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// `st_uid`.
    pub uid: u32,
    /// `st_gid`.
    pub gid: u32,
}

impl Meta {
    fn of_entry(e: &EntryRef<'_>) -> Meta {
        Meta {
            mode: e.mode(),
            uid: e.uid(),
            gid: e.gid(),
        }
    }

    fn of_fs(md: &std::fs::Metadata) -> Meta {
        Meta {
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
        }
    }

    fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
}

impl Identity {
    /// The superuser: may read everything.
    pub fn root() -> Identity {
        Identity {
            uid: 0,
            gids: vec![0],
        }
    }

    /// True for uid 0 (no checks are needed).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// `access(2)` on mode bits: may this identity have all of `want`
    /// ([`R`], [`X`] or both) on an object with metadata `m`?  The owner
    /// class is decisive for the owner, the group class for a member, as the
    /// kernel does it.  Root may read anything and search directories (and
    /// execute files with any `x` bit).
    pub fn can(&self, m: &Meta, want: u32) -> bool {
        if self.is_root() {
            return want & X == 0 || m.is_dir() || m.mode & 0o111 != 0;
        }
        let bits = if m.uid == self.uid {
            (m.mode >> 6) & 7
        } else if self.gids.contains(&m.gid) {
            (m.mode >> 3) & 7
        } else {
            m.mode & 7
        };
        bits & want == want
    }

    /// May the identity see an object itself (given that its directory is
    /// searchable): read access, except that symlinks are always visible
    /// (stock's `ignore nonreadable` does not test them).
    pub fn may_see(&self, m: &Meta) -> bool {
        m.is_symlink() || self.can(m, R)
    }

    /// May the identity list and enter a directory: read and search.
    pub fn may_enter(&self, m: &Meta) -> bool {
        m.is_dir() && self.can(m, R | X)
    }
}

// ---------------------------------------------------------------------------
// Name service lookups (uid/gid/user/group), with the reentrant libc calls.
// ---------------------------------------------------------------------------

fn nss_buf() -> Vec<u8> {
    vec![0u8; 16 * 1024]
}

/// A system user: (uid, primary gid, name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Login name.
    pub name: Vec<u8>,
}

/// Look a user up by name (`getpwnam_r`).
pub fn user_by_name(name: &[u8]) -> Option<User> {
    let c = CString::new(name).ok()?;
    let mut buf = nss_buf();
    // SAFETY: passwd is plain old data; zeroed is a valid initial value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of
    // the strings it backs (we copy the name before returning).
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pw,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string in `buf`.
    let n = unsafe { CStr::from_ptr(pw.pw_name) }.to_bytes().to_vec();
    Some(User {
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        name: n,
    })
}

/// Look a user up by uid (`getpwuid_r`).
pub fn user_by_uid(uid: u32) -> Option<User> {
    let mut buf = nss_buf();
    // SAFETY: passwd is plain old data; zeroed is a valid initial value.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call.
    let rc =
        unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string in `buf`.
    let n = unsafe { CStr::from_ptr(pw.pw_name) }.to_bytes().to_vec();
    Some(User {
        uid: pw.pw_uid,
        gid: pw.pw_gid,
        name: n,
    })
}

/// A group's gid by name (`getgrnam_r`).
pub fn gid_by_name(name: &[u8]) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut buf = nss_buf();
    // SAFETY: group is plain old data; zeroed is a valid initial value.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call.
    let rc = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &mut gr,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() {
        return None;
    }
    Some(gr.gr_gid)
}

/// A group's name by gid (`getgrgid_r`).
pub fn group_name(gid: u32) -> Option<Vec<u8>> {
    let mut buf = nss_buf();
    // SAFETY: group is plain old data; zeroed is a valid initial value.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the duration of the call.
    let rc =
        unsafe { libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success gr_name points to a NUL-terminated string in `buf`.
    Some(unsafe { CStr::from_ptr(gr.gr_name) }.to_bytes().to_vec())
}

/// Every group of a user (`getgrouplist`, primary group first), as stock's
/// `getallgroups()`.
pub fn groups_of(user: &User) -> Vec<u32> {
    let Ok(c) = CString::new(user.name.clone()) else {
        return vec![user.gid];
    };
    let mut n: libc::c_int = 64;
    loop {
        let mut v: Vec<libc::gid_t> = vec![0; n as usize];
        let want = n;
        // SAFETY: `v` has room for `n` gids; getgrouplist writes at most `n`
        // and updates `n` with the real count.
        let rc = unsafe { libc::getgrouplist(c.as_ptr(), user.gid, v.as_mut_ptr(), &mut n) };
        if rc >= 0 {
            v.truncate(n.max(0) as usize);
            if let Some(p) = v.iter().position(|&g| g == user.gid) {
                v.remove(p);
            }
            v.insert(0, user.gid);
            return v;
        }
        if n <= want {
            n = want.saturating_mul(2);
        }
        if n > 65536 {
            return vec![user.gid];
        }
    }
}

/// Stock's `user_to_uid()`: a name, or a number.
pub fn user_to_uid(s: &str) -> Option<User> {
    if let Some(u) = user_by_name(s.as_bytes()) {
        return Some(u);
    }
    let uid: u32 = s.parse().ok()?;
    Some(user_by_uid(uid).unwrap_or(User {
        uid,
        gid: uid,
        name: s.as_bytes().to_vec(),
    }))
}

/// Stock's `group_to_gid()`: a name, or a number.
pub fn group_to_gid(s: &str) -> Option<u32> {
    gid_by_name(s.as_bytes()).or_else(|| s.parse().ok())
}

/// Why a module's identity could not be resolved (stock: `@ERROR: invalid uid X`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Unknown user.
    #[error("invalid uid {0}")]
    Uid(String),
    /// Unknown group.
    #[error("invalid gid {0}")]
    Gid(String),
    /// `*` not first, as stock requires.
    #[error("invalid gid setting: \"*\" must be the first gid")]
    Star,
}

/// The process's own credentials.
pub fn process_identity() -> Identity {
    // SAFETY: geteuid/getegid have no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let mut gids = vec![gid];
    // SAFETY: a zero-size call returns the count without writing.
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n > 0 {
        let mut v: Vec<libc::gid_t> = vec![0; n as usize];
        // SAFETY: `v` has room for `n` gids.
        let got = unsafe { libc::getgroups(n, v.as_mut_ptr()) };
        if got > 0 {
            v.truncate(got as usize);
            gids.extend(v.into_iter().filter(|g| *g != gid));
        }
    }
    Identity { uid, gids }
}

/// The identity a module reads with, exactly as stock chooses it
/// (`rsync_module()`): `uid` or, when the daemon is root, `nobody`; the
/// `gid` list or, when root, the nobody group; `gid = *` first means every
/// group of that user.  A daemon that is not root keeps its own groups
/// unless `gid` names some.
pub fn module_identity(
    uid: Option<&str>,
    gid: &[String],
    daemon: &Identity,
) -> Result<Identity, IdentityError> {
    let am_root = daemon.is_root();
    let user = match uid.filter(|u| !u.is_empty()) {
        Some(u) => Some(user_to_uid(u).ok_or_else(|| IdentityError::Uid(u.to_string()))?),
        None if am_root => {
            Some(user_to_uid("nobody").ok_or_else(|| IdentityError::Uid("nobody".into()))?)
        }
        None => None,
    };
    let uid_num = user.as_ref().map(|u| u.uid).unwrap_or(daemon.uid);
    let mut gids = Vec::new();
    if !gid.is_empty() {
        for (i, g) in gid.iter().enumerate() {
            if g == "*" {
                if i != 0 {
                    return Err(IdentityError::Star);
                }
                let u = match &user {
                    Some(u) => u.clone(),
                    None => user_by_uid(uid_num)
                        .ok_or_else(|| IdentityError::Uid(uid_num.to_string()))?,
                };
                gids.extend(groups_of(&u));
            } else {
                gids.push(group_to_gid(g).ok_or_else(|| IdentityError::Gid(g.clone()))?);
            }
        }
    } else if am_root {
        // NOBODY_GROUP: "nobody" or, on Debian, "nogroup".
        let g = group_to_gid("nobody")
            .or_else(|| group_to_gid("nogroup"))
            .ok_or_else(|| IdentityError::Gid("nobody".into()))?;
        gids.push(g);
    } else {
        gids = daemon.gids.clone();
    }
    Ok(Identity { uid: uid_num, gids })
}

// ---------------------------------------------------------------------------
// Applying the rule to a module tree.
// ---------------------------------------------------------------------------

/// A held fd of a module root, used to look at the real files when the
/// snapshot says an entry is hidden (permissions may have been opened up
/// since the scan) and to re-check what a session opens. The confined
/// lookup itself is [`ModuleRoot::lstat`].
#[derive(Debug)]
pub struct RealTree(ModuleRoot);

impl RealTree {
    /// Open the module root.
    pub fn open(path: &Path) -> io::Result<RealTree> {
        ModuleRoot::open(path).map(RealTree)
    }

    /// `lstat` of a module-relative path, resolved beneath the root with no
    /// symlink in any component (the leaf itself may be a symlink).
    pub fn lstat(&self, rel: &[u8]) -> io::Result<Meta> {
        Ok(Meta::of_fs(&self.0.lstat(rel)?))
    }
}

/// Everything a module needs to apply its identity.
#[derive(Debug)]
pub struct ModuleAccess {
    /// The identity the module reads with.
    pub identity: Identity,
    /// The real tree (for re-checks); `None` when the identity is root.
    real: Option<RealTree>,
}

impl ModuleAccess {
    /// Set up for a module rooted at `path`.
    pub fn new(identity: Identity, path: &Path) -> io::Result<ModuleAccess> {
        let real = if identity.is_root() {
            None
        } else {
            Some(RealTree::open(path)?)
        };
        Ok(ModuleAccess { identity, real })
    }

    /// A module that sees everything (root identity).
    pub fn unrestricted() -> ModuleAccess {
        ModuleAccess {
            identity: Identity::root(),
            real: None,
        }
    }

    /// True when no entry can be hidden.
    pub fn is_unrestricted(&self) -> bool {
        self.real.is_none()
    }

    /// A per-session view with its own cache (list building is single-threaded).
    pub fn view(self: &Arc<Self>) -> Visibility {
        Visibility {
            access: self.clone(),
            dirs: std::cell::RefCell::new(HashMap::new()),
        }
    }

    /// Re-check an opened file at open time: `fstat` the fd and every
    /// directory on the way down (from the real tree, not the snapshot), so a
    /// stale snapshot can never serve content the identity may not read.
    pub fn may_read_opened(&self, mpath: &[u8], file: &File) -> bool {
        let Some(real) = &self.real else { return true };
        let Ok(md) = file.metadata() else {
            return false;
        };
        if !self.identity.may_see(&Meta::of_fs(&md)) {
            return false;
        }
        let mut dirs: Vec<&[u8]> = vec![b"."];
        let mut p = 0;
        while let Some(i) = mpath[p..].iter().position(|&b| b == b'/') {
            dirs.push(&mpath[..p + i]);
            p += i + 1;
        }
        dirs.iter().all(|d| {
            real.lstat(d)
                .map(|m| self.identity.may_enter(&m))
                .unwrap_or(false)
        })
    }
}

/// One session's visibility predicate over a snapshot, caching per-directory
/// results (whether the identity can reach a directory's children).
pub struct Visibility {
    access: Arc<ModuleAccess>,
    dirs: std::cell::RefCell<HashMap<u32, bool>>,
}

/// The module-relative path of an entry, from its parent chain.
fn entry_path(e: &EntryRef<'_>) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut cur = *e;
    while let Some(p) = cur.parent() {
        parts.push(cur.name());
        cur = p;
    }
    parts.reverse();
    parts.join(&b'/')
}

impl Visibility {
    /// Metadata to judge `e` by: the snapshot's when it already allows
    /// `ok`, else the real file's (permissions opened up since the scan), else
    /// the snapshot's.
    fn judged(&self, e: &EntryRef<'_>, ok: &dyn Fn(&Meta) -> bool) -> bool {
        let snap = Meta::of_entry(e);
        if ok(&snap) {
            return true;
        }
        match &self.access.real {
            Some(real) => match real.lstat(&entry_path(e)) {
                // The real object must still be of the same type.
                Ok(m) if m.mode & S_IFMT == snap.mode & S_IFMT => ok(&m),
                _ => false,
            },
            None => false,
        }
    }

    /// Can the identity reach the children of directory `d` (read and search
    /// `d` and every directory above it)?
    fn children_reachable(&self, d: EntryRef<'_>) -> bool {
        if let Some(&v) = self.dirs.borrow().get(&d.index()) {
            return v;
        }
        let id = &self.access.identity;
        let here = self.judged(&d, &|m| id.may_enter(m));
        let v = here
            && d.parent()
                .map(|p| self.children_reachable(p))
                .unwrap_or(true);
        self.dirs.borrow_mut().insert(d.index(), v);
        v
    }

    /// Does `e` exist for the module's identity?
    pub fn visible(&self, e: EntryRef<'_>) -> bool {
        if self.access.real.is_none() {
            return true;
        }
        let id = &self.access.identity;
        match e.parent() {
            // The module root: it must be enterable for anything to exist.
            None => self.children_reachable(e),
            Some(p) => self.children_reachable(p) && self.judged(&e, &|m| id.may_see(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(mode: u32, uid: u32, gid: u32) -> Meta {
        Meta { mode, uid, gid }
    }

    #[test]
    fn permission_classes() {
        let nobody = Identity {
            uid: 65534,
            gids: vec![65534],
        };
        let member = Identity {
            uid: 1000,
            gids: vec![1000, 50],
        };
        let file = |perm: u32| m(0o100000 | perm, 0, 50);
        let dir = |perm: u32| m(0o040000 | perm, 0, 50);
        assert!(nobody.can(&file(0o644), R));
        assert!(!nobody.can(&file(0o640), R));
        assert!(member.can(&file(0o640), R), "group class");
        assert!(
            !member.can(&file(0o604), R),
            "group class is decisive for members"
        );
        let owner = Identity {
            uid: 7,
            gids: vec![7],
        };
        assert!(
            !owner.can(&m(0o100044, 7, 9), R),
            "owner class is decisive for the owner"
        );
        assert!(nobody.may_enter(&dir(0o755)));
        assert!(!nobody.may_enter(&dir(0o750)));
        assert!(!nobody.may_enter(&dir(0o744)), "no search bit");
        assert!(!nobody.may_enter(&dir(0o711)), "no read bit");
        assert!(member.may_enter(&dir(0o750)));
        assert!(
            nobody.may_see(&m(0o120000, 0, 0)),
            "symlinks are always seen"
        );
        assert!(!nobody.may_enter(&file(0o755)), "not a directory");
        let root = Identity::root();
        assert!(root.can(&file(0o000), R));
        assert!(root.may_enter(&dir(0o000)));
        assert!(!root.can(&file(0o644), X));
    }

    #[test]
    fn stock_identity_defaults() {
        let root = Identity::root();
        let nobody = user_by_name(b"nobody").expect("nobody exists");
        let id = module_identity(None, &[], &root).unwrap();
        assert_eq!(id.uid, nobody.uid);
        assert_eq!(id.gids.len(), 1, "only the nobody group: {id:?}");
        let id = module_identity(Some("0"), &["0".into()], &root).unwrap();
        assert!(id.is_root());
        assert_eq!(
            module_identity(Some("no-such-user-xyz"), &[], &root),
            Err(IdentityError::Uid("no-such-user-xyz".into()))
        );
        assert_eq!(
            module_identity(Some("nobody"), &["no-such-group-xyz".into()], &root),
            Err(IdentityError::Gid("no-such-group-xyz".into()))
        );
        assert_eq!(
            module_identity(Some("nobody"), &["0".into(), "*".into()], &root),
            Err(IdentityError::Star)
        );
        let id = module_identity(Some("root"), &["*".into()], &root).unwrap();
        assert_eq!(id.gids[0], 0);
        let me = Identity {
            uid: 1234,
            gids: vec![1234, 5],
        };
        assert_eq!(
            module_identity(None, &[], &me).unwrap(),
            me,
            "a non-root daemon keeps its ids"
        );
    }

    #[test]
    fn visibility_over_a_snapshot() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("mod");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(root.join("pub")).unwrap();
        std::fs::write(root.join("pub/a"), b"a").unwrap();
        std::fs::write(root.join("pub/secret"), b"s").unwrap();
        std::fs::set_permissions(
            root.join("pub/secret"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::create_dir(root.join("pre")).unwrap();
        std::fs::write(root.join("pre/x"), b"x").unwrap();
        std::fs::set_permissions(root.join("pre"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("pub/secret", root.join("lnk")).unwrap();
        let snap_path = d.path().join("s.snap");
        filelist_cache::build_snapshot(
            &root,
            &snap_path,
            &filelist_cache::BuildOptions {
                one_file_system: true,
                generation: 1,
            },
        )
        .unwrap();
        let snap = filelist_cache::Snapshot::open(&snap_path).unwrap();
        let nobody = Identity {
            uid: 65534,
            gids: vec![65534],
        };
        let acc = Arc::new(ModuleAccess::new(nobody, &root).unwrap());
        let v = acc.view();
        let vis = |p: &[u8]| v.visible(snap.lookup(p).unwrap());
        assert!(vis(b"pub"));
        assert!(vis(b"pub/a"));
        assert!(!vis(b"pub/secret"));
        assert!(!vis(b"pre"));
        assert!(!vis(b"pre/x"), "below a 0750 dir");
        assert!(vis(b"lnk"), "symlinks are visible");
        // Opened up after the scan: the real file decides (next session).
        std::fs::set_permissions(root.join("pre"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            root.join("pub/secret"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let v2 = acc.view();
        assert!(v2.visible(snap.lookup(b"pre").unwrap()));
        assert!(v2.visible(snap.lookup(b"pre/x").unwrap()));
        assert!(v2.visible(snap.lookup(b"pub/secret").unwrap()));
        // Open-time re-check uses the real files.
        let f = File::open(root.join("pre/x")).unwrap();
        assert!(acc.may_read_opened(b"pre/x", &f));
        std::fs::set_permissions(root.join("pre"), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!acc.may_read_opened(b"pre/x", &f), "parent closed again");
        std::fs::set_permissions(root.join("pre"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(root.join("pre/x"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        assert!(!acc.may_read_opened(b"pre/x", &f), "file closed again");
        let all = Arc::new(ModuleAccess::unrestricted());
        assert!(all.view().visible(snap.lookup(b"pub/secret").unwrap()));
    }
}
