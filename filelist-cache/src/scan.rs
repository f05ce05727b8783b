//! Full scan of one module root into the in-memory form of a snapshot.
//!
//! The walk uses directory file descriptors: every directory is opened with
//! `openat(parent_fd, name, O_DIRECTORY|O_NOFOLLOW)` and its fd is compared (dev, ino)
//! with the `fstatat(AT_SYMLINK_NOFOLLOW)` result that classified it, every entry is
//! examined with `fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW)`. Symlinks are never
//! followed below the root, so a directory swapped for a symlink during the scan cannot
//! lead the scan out of the module. Only the root path itself is resolved normally
//! (it comes from the operator's configuration, like stock rsync's `chdir` to the module
//! path).
//!
//! Entries are emitted directly in storage order (depth-first pre-order, non-directories
//! first; see [`crate::order`]), so the archive needs no reordering afterwards.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, Dir, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{errno_text, ScanError, ScanIssue};
use crate::format::{flags, SnapshotV1, NO_INDEX};
use crate::records::RecordInput;
use crate::model::{Attrs, Child};
use crate::order::{cmp_dir_names, cmp_file_names};
use crate::{BuildOptions, BuildReport};

/// Directories deeper than this keep no open fd while their subtrees are scanned; they
/// are reopened from the nearest ancestor that has one (keeps the scan below the
/// default `RLIMIT_NOFILE` of 1024 on pathological trees).
const FD_DEPTH_LIMIT: usize = 128;

/// Test hook: called with the module-relative path of each directory before it is
/// opened; returning an errno simulates an `opendir` failure.
pub(crate) type OpenHook<'a> = &'a dyn Fn(&[u8]) -> Option<Errno>;

/// A directory on the scan stack whose subdirectories are being visited.
struct Frame {
    /// Index into `SnapshotV1::dirs`.
    dir: u32,
    /// Open fd of the directory, if kept (see FD_DEPTH_LIMIT).
    fd: Option<OwnedFd>,
    /// Basename, dev and ino: used to reopen the directory when `fd` was dropped.
    name: Vec<u8>,
    dev: u64,
    ino: u64,
    /// Length of the directory's module-relative path in the scanner's path buffer.
    path_len: usize,
    /// Subdirectories not yet visited, in canonical order.
    pending: std::vec::IntoIter<Child>,
    /// Where the next subdirectory's entry index goes in `SnapshotV1::subdirs`.
    next_slot: usize,
}

struct Scanner<'a> {
    snap: SnapshotV1,
    issues: Vec<ScanIssue>,
    opts: &'a BuildOptions,
    hook: OpenHook<'a>,
    /// Module-relative path of the directory being worked on (and scratch space).
    path: Vec<u8>,
    /// Device of the module root (one-file-system boundary).
    fs_dev: u64,
    /// Entries scanned so far, published after each directory (see
    /// [`crate::ScanProgress`]).
    progress: Option<&'a AtomicU64>,
}

/// Called with the module-relative path and the open fd of every directory the scan
/// reads (the store records directory file handles with it).
pub(crate) type VisitHook<'a> = &'a mut dyn FnMut(&[u8], BorrowedFd<'_>);

/// Errors that say nothing about the tree but about this process or the
/// system (out of descriptors or memory): the scan fails as a whole rather
/// than recording the directory as unreadable.
fn is_resource_error(e: Errno) -> bool {
    matches!(e, Errno::MFILE | Errno::NFILE | Errno::NOMEM | Errno::NOBUFS)
}

fn resource_error(path: &[u8], e: Errno) -> ScanError {
    ScanError::Resource { path: String::from_utf8_lossy(path).into_owned(), source: e.into() }
}

/// Scans `root` and returns the snapshot model and the report.
pub(crate) fn scan(
    root: &Path,
    opts: &BuildOptions,
    hook: OpenHook<'_>,
) -> Result<(SnapshotV1, BuildReport), ScanError> {
    scan_visit(root, opts, hook, &mut |_, _| {})
}

/// [`scan`] that also reports every directory it opens to `visit`.
pub(crate) fn scan_visit(
    root: &Path,
    opts: &BuildOptions,
    hook: OpenHook<'_>,
    visit: VisitHook<'_>,
) -> Result<(SnapshotV1, BuildReport), ScanError> {
    scan_visit_progress(root, opts, hook, visit, None)
}

/// [`scan_visit`] that also stores the number of entries scanned so far in
/// `progress` after each directory (for a progress display).
pub(crate) fn scan_visit_progress(
    root: &Path,
    opts: &BuildOptions,
    hook: OpenHook<'_>,
    visit: VisitHook<'_>,
    progress: Option<&AtomicU64>,
) -> Result<(SnapshotV1, BuildReport), ScanError> {
    let st = rustix::fs::stat(root).map_err(|e| ScanError::Root {
        path: root.to_path_buf(),
        source: e.into(),
    })?;
    let mut attrs = Attrs::from_stat(&st);
    if !attrs.is_dir() {
        return Err(ScanError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let opened = match hook(b"") {
        Some(e) => Err(e),
        None => rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ),
    };
    if let Ok(fd) = &opened {
        // Record the identity of what was actually opened.
        if let Ok(st) = rustix::fs::fstat(fd) {
            attrs = Attrs::from_stat(&st);
        }
    }
    let fs_dev = attrs.dev;
    scan_core(opened, attrs, fs_dev, b"", opts, hook, visit, progress)
}

/// Scans the subtree below the open directory `fd` (whose attributes are `attrs`), for
/// grafting into an overlay: entry 0 of the result is that directory (with an empty
/// name). `fs_dev` is the module root's device (for one-file-system) and `prefix` the
/// directory's module-relative path, used for issues and `visit`.
pub(crate) fn scan_subtree(
    fd: OwnedFd,
    attrs: Attrs,
    fs_dev: u64,
    prefix: &[u8],
    opts: &BuildOptions,
    visit: VisitHook<'_>,
) -> Result<(SnapshotV1, BuildReport), ScanError> {
    scan_core(Ok(fd), attrs, fs_dev, prefix, opts, &|_| None, visit, None)
}

#[allow(clippy::too_many_arguments)]
fn scan_core(
    opened: Result<OwnedFd, Errno>,
    attrs: Attrs,
    fs_dev: u64,
    prefix: &[u8],
    opts: &BuildOptions,
    hook: OpenHook<'_>,
    visit: VisitHook<'_>,
    progress: Option<&AtomicU64>,
) -> Result<(SnapshotV1, BuildReport), ScanError> {
    let mut sc = Scanner {
        snap: SnapshotV1 {
            generation: opts.generation,
            ..SnapshotV1::default()
        },
        issues: Vec::new(),
        opts,
        hook,
        path: prefix.to_vec(),
        fs_dev,
        progress,
    };
    let (root_fd, root_err) = match opened {
        Ok(fd) => (Some(fd), None),
        Err(e) if is_resource_error(e) => return Err(resource_error(prefix, e)),
        Err(e) => {
            sc.issue_errno(prefix, "opendir failed", e);
            (None, Some(e))
        }
    };
    sc.snap.root_dev = attrs.dev;
    sc.snap.root_ino = attrs.ino;
    sc.push_entry(NO_INDEX, b"", &attrs, b"")?;

    let Some(root_fd) = root_fd else {
        sc.mark_unreadable(0, root_err.unwrap_or(Errno::ACCESS), 0);
        sc.snap.dirs[0].subtree_end = 1;
        return Ok(sc.finish());
    };
    visit(prefix, root_fd.as_fd());
    let mut stack: Vec<Frame> = Vec::new();
    let frame = sc.list_dir(0, root_fd, b"", &attrs, prefix.len(), 0)?;
    stack.push(frame);

    while let Some(top) = stack.last_mut() {
        let Some(child) = top.pending.next() else {
            let dir = top.dir as usize;
            let end = sc.snap.entries.len() as u32;
            sc.snap.dirs[dir].subtree_end = end;
            stack.pop();
            continue;
        };
        let parent_entry = sc.snap.dirs[top.dir as usize].entry;
        let slot = top.next_slot;
        top.next_slot += 1;
        let path_len = top.path_len;
        sc.path.truncate(path_len);
        if path_len > 0 {
            sc.path.push(b'/');
        }
        sc.path.extend_from_slice(&child.name);
        let child_path_len = sc.path.len();

        let index = sc.push_entry(parent_entry, &child.name, &child.attrs, b"")?;
        sc.snap.subdirs[slot] = index;
        let dir = sc.snap.entries[index as usize].dir;

        if sc.opts.one_file_system && child.attrs.dev != sc.fs_dev {
            sc.snap.entries[index as usize].flags |= flags::OTHER_FS;
            sc.snap.dirs[dir as usize].subtree_end = index + 1;
            continue;
        }

        // Open the subdirectory relative to its parent's fd.
        let depth = stack.len();
        let opened = match (sc.hook)(&sc.path) {
            Some(e) => Err(e),
            None => match parent_fd(&mut stack) {
                Ok(pfd) => open_subdir(pfd, &child.name, &child.attrs),
                Err(e) => Err(e),
            },
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(e) if is_resource_error(e) => return Err(resource_error(&sc.path, e)),
            Err(e) => {
                let path = sc.path.clone();
                sc.issue_errno(&path, "opendir failed", e);
                sc.mark_unreadable(index, e, dir);
                sc.snap.dirs[dir as usize].subtree_end = index + 1;
                continue;
            }
        };
        visit(&sc.path, fd.as_fd());
        // Deep directories give up their fd while a child is being scanned.
        if depth >= FD_DEPTH_LIMIT {
            if let Some(top) = stack.last_mut() {
                top.fd = None;
            }
        }
        let frame = sc.list_dir(dir, fd, &child.name, &child.attrs, child_path_len, index)?;
        stack.push(frame);
        if let Some(p) = sc.progress {
            p.store(sc.snap.entries.len() as u64, Ordering::Relaxed);
        }
    }
    if let Some(p) = sc.progress {
        p.store(sc.snap.entries.len() as u64, Ordering::Relaxed);
    }
    Ok(sc.finish())
}

/// The fd of the directory on top of the stack, reopening it from the nearest ancestor
/// with an open fd if it was dropped.
fn parent_fd(stack: &mut [Frame]) -> Result<BorrowedFd<'_>, Errno> {
    let Some(top) = stack.len().checked_sub(1) else {
        return Err(Errno::INVAL);
    };
    if stack[top].fd.is_none() {
        let Some(base) = stack.iter().rposition(|f| f.fd.is_some()) else {
            return Err(Errno::BADF);
        };
        let mut cur: Option<OwnedFd> = None;
        for i in base + 1..=top {
            let attrs = Attrs {
                dev: stack[i].dev,
                ino: stack[i].ino,
                ..Attrs::default()
            };
            let next = {
                let from = match &cur {
                    Some(fd) => fd.as_fd(),
                    None => stack[base].fd.as_ref().ok_or(Errno::BADF)?.as_fd(),
                };
                open_subdir(from, &stack[i].name, &attrs)?
            };
            cur = Some(next);
        }
        stack[top].fd = cur;
    }
    stack[top]
        .fd
        .as_ref()
        .map(|fd| fd.as_fd())
        .ok_or(Errno::BADF)
}

/// `openat(O_DIRECTORY|O_NOFOLLOW)` plus a check that the directory opened is the one
/// that was classified (same dev and ino); a replaced directory yields `ESTALE`.
pub(crate) fn open_subdir(
    parent: BorrowedFd<'_>,
    name: &[u8],
    want: &Attrs,
) -> Result<OwnedFd, Errno> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let got = Attrs::from_stat(&rustix::fs::fstat(&fd)?);
    if got.dev != want.dev || got.ino != want.ino {
        return Err(Errno::STALE);
    }
    Ok(fd)
}

impl Scanner<'_> {
    fn finish(self) -> (SnapshotV1, BuildReport) {
        let report = BuildReport {
            entries: self.snap.entries.len() as u64,
            dirs: self.snap.dirs.len() as u64,
            errors: self.issues,
        };
        (self.snap, report)
    }

    fn issue_errno(&mut self, path: &[u8], what: &str, e: Errno) {
        let errno = e.raw_os_error();
        self.issues.push(ScanIssue {
            path: path.to_vec(),
            message: format!("{what}: {}", errno_text(errno)),
            errno: Some(errno),
        });
    }

    fn mark_unreadable(&mut self, index: u32, e: Errno, dir: u32) {
        if let Some(rec) = self.snap.entries.get_mut(index as usize) {
            rec.flags |= flags::UNREADABLE;
        }
        if let Some(d) = self.snap.dirs.get_mut(dir as usize) {
            d.error = e.raw_os_error() as u32;
        }
    }

    /// Appends one entry (and a DirRecord for a directory); returns its index.
    fn push_entry(
        &mut self,
        parent: u32,
        name: &[u8],
        a: &Attrs,
        target: &[u8],
    ) -> Result<u32, ScanError> {
        let rec = RecordInput { parent, name, target, flags: 0, dir_error: 0, scan_generation: self.opts.generation };
        self.snap.push_record(&rec, a)
    }

    /// Reads directory `dir` (entry `entry`) through `fd`, appends its non-directories in
    /// canonical order, reserves its subdirectory slots and returns its stack frame.
    /// `self.path[..path_len]` is its module-relative path.
    fn list_dir(
        &mut self,
        dir: u32,
        fd: OwnedFd,
        name: &[u8],
        attrs: &Attrs,
        path_len: usize,
        entry: u32,
    ) -> Result<Frame, ScanError> {
        let (mut files, mut subdirs, error) = self.read_children(&fd, path_len);
        if let Some(e) = error {
            self.path.truncate(path_len);
            if is_resource_error(e) {
                return Err(resource_error(&self.path, e));
            }
            let path = self.path.clone();
            self.issue_errno(&path, "readdir failed", e);
            self.mark_unreadable(entry, e, dir);
        }
        files.sort_unstable_by(|a, b| cmp_file_names(&a.name, &b.name));
        subdirs.sort_unstable_by(|a, b| cmp_dir_names(&a.name, &b.name));
        for f in &files {
            self.push_entry(entry, &f.name, &f.attrs, &f.target)?;
        }
        let next_slot = self.snap.subdirs.len();
        if u32::try_from(next_slot + subdirs.len()).is_err() {
            return Err(ScanError::TooLarge {
                what: "more than 2^32 directories",
            });
        }
        let d = &mut self.snap.dirs[dir as usize];
        d.nfiles = files.len() as u32;
        d.subdirs_off = next_slot as u32;
        d.subdirs_len = subdirs.len() as u32;
        self.snap
            .subdirs
            .resize(next_slot + subdirs.len(), NO_INDEX);
        Ok(Frame {
            dir,
            fd: Some(fd),
            name: name.to_vec(),
            dev: attrs.dev,
            ino: attrs.ino,
            path_len,
            pending: subdirs.into_iter(),
            next_slot,
        })
    }

    /// Lists a directory: (non-directories, directories, readdir error if any).
    /// Entries that vanish or cannot be examined are reported and left out.
    fn read_children(
        &mut self,
        fd: &OwnedFd,
        path_len: usize,
    ) -> (Vec<Child>, Vec<Child>, Option<Errno>) {
        self.path.truncate(path_len);
        read_dir_children(fd.as_fd(), &self.path, &mut self.issues)
    }
}

/// Lists the directory open as `fd` (module-relative path `dir_path`, for messages):
/// (non-directories, directories, readdir error if any), each unsorted. Every entry is
/// examined with `fstatat(AT_SYMLINK_NOFOLLOW)`; entries that vanish or cannot be
/// examined are reported in `issues` and left out.
pub(crate) fn read_dir_children(
    fd: BorrowedFd<'_>,
    dir_path: &[u8],
    issues: &mut Vec<ScanIssue>,
) -> (Vec<Child>, Vec<Child>, Option<Errno>) {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    let issue = |issues: &mut Vec<ScanIssue>, name: &[u8], what: &str, e: Errno| {
        let mut p = dir_path.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(name);
        let errno = e.raw_os_error();
        issues.push(ScanIssue {
            path: p,
            message: format!("{what}: {}", errno_text(errno)),
            errno: Some(errno),
        });
    };
    let mut dir = match Dir::read_from(fd) {
        Ok(d) => d,
        Err(e) => return (files, dirs, Some(e)),
    };
    while let Some(item) = dir.read() {
        let de = match item {
            Ok(de) => de,
            Err(e) => return (files, dirs, Some(e)),
        };
        let cname = de.file_name();
        let name = cname.to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let st = match rustix::fs::statat(fd, cname, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) if is_resource_error(e) => return (files, dirs, Some(e)),
            Err(e) => {
                issue(issues, name, "lstat failed", e);
                continue;
            }
        };
        let attrs = Attrs::from_stat(&st);
        let mut target = Vec::new();
        if attrs.is_symlink() {
            match rustix::fs::readlinkat(fd, cname, Vec::new()) {
                Ok(t) => target = t.into_bytes(),
                Err(e) if is_resource_error(e) => return (files, dirs, Some(e)),
                Err(e) => {
                    issue(issues, name, "readlink failed", e);
                    continue;
                }
            }
        }
        let child = Child {
            name: name.to_vec(),
            attrs,
            target,
        };
        if attrs.is_dir() {
            dirs.push(child);
        } else {
            files.push(child);
        }
    }
    (files, dirs, None)
}

/// Appends `bytes` to a blob and returns their offset, checking the u32 range.
#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn scan_with(root: &Path, hook: OpenHook<'_>) -> (SnapshotV1, BuildReport) {
        scan(root, &BuildOptions::default(), hook).expect("scan")
    }

    fn name_of(s: &SnapshotV1, i: usize) -> &[u8] {
        let e = &s.entries[i];
        &s.names[e.name_off as usize..(e.name_off + e.name_len) as usize]
    }

    #[test]
    fn injected_opendir_failure_flags_dir_and_goes_on() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(t.path().join("a/secret/deeper")).expect("mkdir");
        fs::write(t.path().join("a/secret/f"), b"x").expect("write");
        fs::create_dir(t.path().join("b")).expect("mkdir");
        fs::write(t.path().join("b/g"), b"y").expect("write");
        let hook = |p: &[u8]| (p == b"a/secret").then_some(Errno::ACCESS);
        let (s, report) = scan_with(t.path(), &hook);
        // root, a, a/secret, b, b/g: secret's contents are missing.
        let names: Vec<&[u8]> = (0..s.entries.len()).map(|i| name_of(&s, i)).collect();
        assert_eq!(names, vec![&b""[..], b"a", b"secret", b"b", b"g"]);
        let secret = &s.entries[2];
        assert_eq!(secret.flags & flags::UNREADABLE, flags::UNREADABLE);
        assert_eq!(s.dirs[secret.dir as usize].error, 13);
        assert_eq!(s.dirs[secret.dir as usize].subtree_end, 3);
        assert_eq!(s.entries[1].flags & flags::UNREADABLE, 0);
        assert_eq!(
            report.errors,
            vec![ScanIssue {
                path: b"a/secret".to_vec(),
                message: "opendir failed: Permission denied (13)".into(),
                errno: Some(13),
            }]
        );
        assert_eq!(report.entries, 5);
        assert_eq!(report.dirs, 4); // root, a, a/secret, b
    }

    /// Out of descriptors (or memory) part-way is not "this directory is
    /// unreadable": the scan fails as a whole, so no incomplete tree is
    /// published.
    #[test]
    fn resource_errors_fail_the_whole_scan() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(t.path().join("a/b")).expect("mkdir");
        fs::write(t.path().join("a/b/f"), b"x").expect("write");
        for (at, e) in [(&b"a/b"[..], Errno::MFILE), (b"a", Errno::NFILE), (b"", Errno::NOMEM)] {
            let hook = |p: &[u8]| (p == at).then_some(e);
            match scan(t.path(), &BuildOptions::default(), &hook) {
                Err(ScanError::Resource { path, source }) => {
                    assert_eq!(path.as_bytes(), at);
                    assert_eq!(source.raw_os_error(), Some(e.raw_os_error()));
                }
                other => panic!("{e:?} at {at:?}: {:?}", other.map(|(_, r)| r.errors)),
            }
        }
    }

    #[test]
    fn injected_root_failure_gives_flagged_empty_root() {
        let t = tempfile::tempdir().expect("tempdir");
        fs::write(t.path().join("f"), b"x").expect("write");
        let hook = |p: &[u8]| p.is_empty().then_some(Errno::ACCESS);
        let (s, report) = scan_with(t.path(), &hook);
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.entries[0].flags & flags::UNREADABLE, flags::UNREADABLE);
        assert_eq!(s.dirs[0].subtree_end, 1);
        assert_eq!(report.errors.len(), 1);
        assert_eq!(report.errors[0].path, b"");
    }

    #[test]
    fn deep_tree_beyond_fd_depth_limit_is_scanned_completely() {
        let t = tempfile::tempdir().expect("tempdir");
        let depth = FD_DEPTH_LIMIT + 20;
        let mut p = t.path().to_path_buf();
        for i in 0..depth {
            p.push(format!("{}", i % 10));
            fs::create_dir(&p).expect("mkdir");
            // A sibling directory at each level forces reopening the parent after the
            // first subtree was scanned.
            let mut q = p.clone();
            q.set_file_name(format!("s{i}"));
            fs::create_dir(&q).expect("mkdir sibling");
            fs::write(q.join("f"), b"").expect("write");
        }
        let (s, report) = scan_with(t.path(), &|_| None);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        // root + depth chain dirs + depth siblings + depth files
        assert_eq!(s.entries.len(), 1 + 3 * depth);
        assert!(s.dirs.iter().all(|d| d.error == 0));
    }
}
