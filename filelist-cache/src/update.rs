//! Incremental updates: re-reading a few directories and publishing the result as a new
//! overlay on the same base file.
//!
//! Cost: each re-read directory costs one `getdents` pass and one `fstatat` per child;
//! a directory that is new to the view (created, or renamed into place) is scanned with
//! its whole subtree; an entry-level request (attribute change of one file) costs one
//! `fstatat`. Publishing clones the persistent overlay maps in O(1) and inserts
//! O(change) records. Nothing is proportional to the size of the tree.

use std::collections::{HashSet, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{errno_text, ScanError, ScanIssue};
use crate::format::{flags, NO_INDEX};
use crate::links::LinkIndex;
use crate::model::{Attrs, Child};
use crate::order::{cmp_dir_names, cmp_file_names};
use crate::overlay::{Listing, ORec};
use crate::scan::{open_subdir, read_dir_children, scan_subtree, VisitHook};
use crate::{BuildOptions, Snapshot};

/// One thing to re-read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Req {
    /// Re-read one directory's listing and its own attributes.
    Dir(Vec<u8>),
    /// Re-read a whole subtree.
    Subtree(Vec<u8>),
    /// Re-examine one entry of a directory (attributes only); escalates to re-reading
    /// the directory when the entry appeared, vanished or changed identity.
    Entry(Vec<u8>, Vec<u8>),
}

impl Req {
    fn dir_path(&self) -> &[u8] {
        match self {
            Req::Dir(p) | Req::Subtree(p) | Req::Entry(p, _) => p,
        }
    }
}

/// What an update did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct UpdateStats {
    pub dirs_listed: u64,
    pub entries_statted: u64,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub issues: Vec<ScanIssue>,
}

/// Why an update could not be applied incrementally.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpdateError {
    /// The module root vanished or was replaced: only a full rescan can help.
    #[error("{0}")]
    NeedFullRescan(String),
    /// Scanning a new subtree failed fatally (format limits).
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The overlay ran out of entry indices.
    #[error("tree too large for the snapshot format: overlay indices exhausted")]
    TooLarge,
}

/// Normalises a module-relative path: drops empty and `.` components; `None` if a
/// component is `..` or contains NUL.
pub(crate) fn clean_path(p: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(p.len());
    for c in p.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." || c.contains(&0) {
            return None;
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(c);
    }
    Some(out)
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if !dir.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

fn parent_path(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => &p[..i],
        None => b"",
    }
}

/// The module-relative path of entry `index` in `view`, if it is reachable there.
pub(crate) fn path_of(view: &Snapshot, index: u32) -> Option<Vec<u8>> {
    let mut names: Vec<&[u8]> = Vec::new();
    let mut cur = view.entry(index)?;
    while let Some(p) = cur.parent() {
        names.push(cur.name());
        cur = p;
        if names.len() > 100_000 {
            return None; // a cycle would be a bug; never loop forever
        }
    }
    if cur.index() != 0 {
        return None;
    }
    let mut path = Vec::new();
    for n in names.iter().rev() {
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(n);
    }
    // Reachable only if the path leads back to the same entry.
    (view.lookup(&path)?.index() == index).then_some(path)
}

/// Opens the directory at module-relative `path` below `root`, one component at a time
/// with `O_NOFOLLOW`, so a symlink planted in the path cannot lead outside the module.
pub(crate) fn open_rel(root: BorrowedFd<'_>, path: &[u8]) -> Result<OwnedFd, Errno> {
    let fl = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur = rustix::fs::openat(root, ".", fl, Mode::empty())?;
    for c in path.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        cur = rustix::fs::openat(&cur, c, fl, Mode::empty())?;
    }
    Ok(cur)
}

fn vanished(e: Errno) -> bool {
    matches!(
        e,
        Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::STALE | Errno::MLINK
    )
}

struct Updater<'a> {
    view: Snapshot,
    root_fd: OwnedFd,
    opts: BuildOptions,
    fs_dev: u64,
    visit: VisitHook<'a>,
    links: &'a mut LinkIndex,
    /// Directories re-read by this update (index -> recursively).
    listed: std::collections::HashMap<u32, bool>,
    /// Entries re-examined by this update.
    statted: HashSet<u32>,
    /// Inodes whose other hard links must be re-examined.
    link_check: Vec<(u64, u64)>,
    queue: VecDeque<(u32, Vec<u8>, bool)>,
    stats: UpdateStats,
}

/// Applies `reqs` to `view`, re-reading what they name below `root`, and returns the new
/// view (with generation `opts.generation`) and what was done.
pub(crate) fn apply(
    view: &Snapshot,
    reqs: &[Req],
    root: &Path,
    opts: &BuildOptions,
    visit: VisitHook<'_>,
    links: &mut LinkIndex,
) -> Result<(Snapshot, UpdateStats), UpdateError> {
    let root_fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        UpdateError::NeedFullRescan(format!(
            "cannot open module root: {}",
            errno_text(e.raw_os_error())
        ))
    })?;
    let st = rustix::fs::fstat(&root_fd).map_err(|e| {
        UpdateError::NeedFullRescan(format!(
            "cannot stat module root: {}",
            errno_text(e.raw_os_error())
        ))
    })?;
    let ra = Attrs::from_stat(&st);
    let vr = view.root();
    if (ra.dev, ra.ino) != (vr.dev(), vr.ino()) {
        return Err(UpdateError::NeedFullRescan(
            "module root was replaced".into(),
        ));
    }
    let mut work = view.clone();
    work.generation = opts.generation;
    let mut u = Updater {
        view: work,
        root_fd,
        opts: opts.clone(),
        fs_dev: ra.dev,
        visit,
        links,
        listed: Default::default(),
        statted: HashSet::new(),
        link_check: Vec::new(),
        queue: VecDeque::new(),
        stats: UpdateStats::default(),
    };
    // Shallow first, so a parent's new subdirectories are grafted before requests
    // inside them come up (and are then found already current).
    let mut sorted: Vec<&Req> = reqs.iter().collect();
    sorted.sort_by_key(|r| {
        let p = r.dir_path();
        let depth = if p.is_empty() {
            0
        } else {
            1 + p.iter().filter(|&&b| b == b'/').count()
        };
        let kind = match r {
            Req::Subtree(_) => 0,
            Req::Dir(_) => 1,
            Req::Entry(..) => 2,
        };
        (depth, kind)
    });
    sorted.dedup();
    for r in sorted {
        match r {
            Req::Dir(p) => u.request_dir(p, false)?,
            Req::Subtree(p) => u.request_dir(p, true)?,
            Req::Entry(d, n) => u.request_entry(d, n)?,
        }
        u.drain()?;
    }
    // Other hard links of inodes whose link count changed (the kernel reports the
    // count change of the other names with no directory, so no event names them).
    let mut rounds = 0;
    while !u.link_check.is_empty() && rounds < 16 {
        rounds += 1;
        let checks = std::mem::take(&mut u.link_check);
        for (dev, ino) in checks {
            for idx in u.links.candidates(ino) {
                let Some(e) = u.view.entry(idx) else { continue };
                if e.is_dir() || e.dev() != dev || e.ino() != ino || u.statted.contains(&idx) {
                    continue;
                }
                if u.listed.contains_key(&e.parent_index()) {
                    continue;
                }
                let Some(path) = path_of(&u.view, idx) else {
                    continue;
                };
                let name = e.name().to_vec();
                u.request_entry(parent_path(&path), &name)?;
                u.drain()?;
            }
        }
    }
    Ok((u.view, u.stats))
}

impl Updater<'_> {
    /// Finds the deepest directory of the view on `path` (the directory itself if the
    /// view has it).
    fn resolve_dir(&self, path: &[u8]) -> (u32, Vec<u8>) {
        let mut cur = self.view.root();
        let mut cur_path: Vec<u8> = Vec::new();
        for c in path.split(|&b| b == b'/') {
            if c.is_empty() {
                continue;
            }
            match cur.child(c) {
                Some(e) if e.is_dir() => {
                    cur = e;
                    if !cur_path.is_empty() {
                        cur_path.push(b'/');
                    }
                    cur_path.extend_from_slice(c);
                }
                _ => break,
            }
        }
        (cur.index(), cur_path)
    }

    fn request_dir(&mut self, path: &[u8], recursive: bool) -> Result<(), UpdateError> {
        let (idx, found) = self.resolve_dir(path);
        // A directory the view does not have yet is found by re-reading its deepest
        // known ancestor, which grafts it with its whole subtree.
        let recursive = recursive && found.len() == path.len();
        self.queue.push_back((idx, found, recursive));
        Ok(())
    }

    fn request_entry(&mut self, dir: &[u8], name: &[u8]) -> Result<(), UpdateError> {
        let (idx, found) = self.resolve_dir(dir);
        if found.len() != dir.len() || name.is_empty() || name == b"." || name.contains(&b'/') {
            self.queue.push_back((idx, found, false));
            return Ok(());
        }
        if self.listed.contains_key(&idx) {
            return Ok(());
        }
        if !self.restat(idx, &found, name)? {
            self.queue.push_back((idx, found, false));
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), UpdateError> {
        while let Some((idx, path, rec)) = self.queue.pop_front() {
            self.relist(idx, &path, rec)?;
        }
        Ok(())
    }

    /// Re-examines entry `name` of directory `dir_idx` (at `dir_path`); false if the
    /// directory must be re-read instead (entry new, gone, or of another identity).
    fn restat(&mut self, dir_idx: u32, dir_path: &[u8], name: &[u8]) -> Result<bool, UpdateError> {
        let Some(dir) = self.view.entry(dir_idx) else {
            return Ok(false);
        };
        let Some(old) = dir.child(name) else {
            return Ok(false);
        };
        let old_index = old.index();
        if self.statted.contains(&old_index) {
            return Ok(true);
        }
        let Ok(fd) = open_rel(self.root_fd.as_fd(), dir_path) else {
            return Ok(false);
        };
        let Ok(st) = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
            return Ok(false);
        };
        let attrs = Attrs::from_stat(&st);
        if (attrs.dev, attrs.ino) != (old.dev(), old.ino())
            || attrs.mode & crate::model::S_IFMT != old.mode() & crate::model::S_IFMT
        {
            return Ok(false);
        }
        let mut target = Vec::new();
        if attrs.is_symlink() {
            match rustix::fs::readlinkat(&fd, name, Vec::new()) {
                Ok(t) => target = t.into_bytes(),
                Err(_) => return Ok(false),
            }
        }
        self.stats.entries_statted += 1;
        self.statted.insert(old_index);
        let child = Child {
            name: name.to_vec(),
            attrs,
            target,
        };
        self.update_matched(old_index, &child);
        Ok(true)
    }

    /// Records new attributes for entry `index`, which kept its identity.
    fn update_matched(&mut self, index: u32, new: &Child) {
        let Some(old) = self.view.entry(index) else {
            return;
        };
        let old_attrs = old.attrs();
        if old_attrs == new.attrs && old.link_target() == &new.target[..] {
            return;
        }
        let (fl, err) = old.raw_flags();
        let rec = ORec {
            parent: old.parent_index(),
            name: old.name().into(),
            target: new.target.clone().into_boxed_slice(),
            attrs: new.attrs,
            flags: fl & (flags::UNREADABLE | flags::OTHER_FS),
            dir_error: err,
            scan_generation: old.scan_generation().unwrap_or(0),
        };
        // All names of an inode share its attributes: a change seen through one name
        // (a write, chmod, link or unlink) applies to the others, which no event names.
        if !new.attrs.is_dir() && (new.attrs.nlink > 1 || old_attrs.nlink > 1) {
            self.link_check.push((new.attrs.dev, new.attrs.ino));
        }
        self.view.ov.set_rec(index, rec);
        self.touch_above(index);
        self.stats.changed += 1;
    }

    /// Marks every base ancestor of `index` touched (stops at one already touched:
    /// its ancestors are touched too).
    fn touch_above(&mut self, index: u32) {
        let mut p = match self.view.entry(index) {
            Some(e) => e.parent_index(),
            None => return,
        };
        let mut guard = 0u32;
        while p != NO_INDEX && guard < 1_000_000 {
            guard += 1;
            if !self.view.ov.touch(p) {
                break;
            }
            p = match self.view.entry(p) {
                Some(e) => e.parent_index(),
                None => break,
            };
        }
    }

    fn issue(&mut self, path: &[u8], what: &str, e: Errno) {
        let errno = e.raw_os_error();
        self.stats.issues.push(ScanIssue {
            path: path.to_vec(),
            message: format!("{what}: {}", errno_text(errno)),
            errno: Some(errno),
        });
    }

    fn relist_parent(&mut self, idx: u32, path: &[u8]) -> Result<(), UpdateError> {
        if idx == 0 || path.is_empty() {
            return Err(UpdateError::NeedFullRescan(
                "module root vanished or was replaced".into(),
            ));
        }
        let parent = self.view.entry(idx).map(|e| e.parent_index()).unwrap_or(0);
        let pp = parent_path(path).to_vec();
        self.relist(parent, &pp, false)
    }

    /// `lstat` of the entry at module-relative `path` (not following a final symlink).
    fn lstat_rel(&self, path: &[u8]) -> Option<Attrs> {
        if path.is_empty() {
            return rustix::fs::fstat(&self.root_fd)
                .ok()
                .map(|st| Attrs::from_stat(&st));
        }
        let name = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => &path[i + 1..],
            None => path,
        };
        let dir = open_rel(self.root_fd.as_fd(), parent_path(path)).ok()?;
        let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        Some(Attrs::from_stat(&st))
    }

    /// Re-reads directory `idx` at `path` (and, if `recursive`, every directory below).
    fn relist(&mut self, idx: u32, path: &[u8], recursive: bool) -> Result<(), UpdateError> {
        match self.listed.get(&idx) {
            Some(true) => return Ok(()),
            Some(false) if !recursive => return Ok(()),
            _ => {}
        }
        let Some(dir) = self.view.entry(idx) else {
            return Ok(());
        };
        if !dir.is_dir() {
            return self.relist_parent(idx, path);
        }
        let (want_dev, want_ino) = (dir.dev(), dir.ino());
        let fd = match open_rel(self.root_fd.as_fd(), path) {
            Ok(fd) => fd,
            Err(e) if vanished(e) => return self.relist_parent(idx, path),
            Err(e) => {
                // Like the scanner: the directory is flagged and lists nothing.
                let Some(attrs) = self.lstat_rel(path) else {
                    return self.relist_parent(idx, path);
                };
                if (attrs.dev, attrs.ino) != (want_dev, want_ino) || !attrs.is_dir() {
                    return self.relist_parent(idx, path);
                }
                self.listed.insert(idx, recursive);
                self.stats.dirs_listed += 1;
                self.issue(path, "opendir failed", e);
                let errno = e.raw_os_error() as u32;
                return self.finish_dir(
                    idx,
                    path,
                    attrs,
                    flags::UNREADABLE,
                    errno,
                    Vec::new(),
                    Vec::new(),
                    None,
                    false,
                );
            }
        };
        let attrs = match rustix::fs::fstat(&fd) {
            Ok(st) => Attrs::from_stat(&st),
            Err(_) => return self.relist_parent(idx, path),
        };
        if (attrs.dev, attrs.ino) != (want_dev, want_ino) {
            return self.relist_parent(idx, path);
        }
        self.listed.insert(idx, recursive);
        self.stats.dirs_listed += 1;
        if self.opts.one_file_system && attrs.dev != self.fs_dev {
            return self.finish_dir(
                idx,
                path,
                attrs,
                flags::OTHER_FS,
                0,
                Vec::new(),
                Vec::new(),
                None,
                false,
            );
        }
        (self.visit)(path, fd.as_fd());
        let (mut files, mut subdirs, e) =
            read_dir_children(fd.as_fd(), path, &mut self.stats.issues);
        let (fl, err) = match e {
            Some(e) => {
                self.issue(path, "readdir failed", e);
                (flags::UNREADABLE, e.raw_os_error() as u32)
            }
            None => (0, 0),
        };
        files.sort_unstable_by(|a, b| cmp_file_names(&a.name, &b.name));
        subdirs.sort_unstable_by(|a, b| cmp_dir_names(&a.name, &b.name));
        self.finish_dir(
            idx,
            path,
            attrs,
            fl,
            err,
            files,
            subdirs,
            Some(fd),
            recursive,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_dir(
        &mut self,
        idx: u32,
        path: &[u8],
        attrs: Attrs,
        new_flags: u32,
        err: u32,
        files: Vec<Child>,
        subdirs: Vec<Child>,
        fd: Option<OwnedFd>,
        recursive: bool,
    ) -> Result<(), UpdateError> {
        let generation = self.opts.generation;
        // The directory's own record: attributes, flags, listing generation.
        {
            let Some(dir) = self.view.entry(idx) else {
                return Ok(());
            };
            let (old_flags, old_err) = dir.raw_flags();
            if dir.attrs() != attrs
                || old_flags & (flags::UNREADABLE | flags::OTHER_FS) != new_flags
                || old_err != err
            {
                self.stats.changed += 1;
            }
            let rec = ORec {
                parent: dir.parent_index(),
                name: dir.name().into(),
                target: Box::default(),
                attrs,
                flags: new_flags,
                dir_error: err,
                scan_generation: generation,
            };
            self.view.ov.set_rec(idx, rec);
            self.touch_above(idx);
        }
        let old: Vec<(u32, Vec<u8>, bool)> = match self.view.entry(idx) {
            Some(d) => d
                .children()
                .map(|c| (c.index(), c.name().to_vec(), c.is_dir()))
                .collect(),
            None => Vec::new(),
        };
        let split = old.iter().position(|c| c.2).unwrap_or(old.len());
        let (old_files, old_dirs) = old.split_at(split);

        let mut new_files: Vec<(u32, Vec<u8>)> = Vec::with_capacity(files.len());
        self.merge(
            idx,
            path,
            old_files,
            files,
            false,
            fd.as_ref(),
            &mut new_files,
            recursive,
        )?;
        let mut new_dirs: Vec<(u32, Vec<u8>)> = Vec::with_capacity(subdirs.len());
        self.merge(
            idx,
            path,
            old_dirs,
            subdirs,
            true,
            fd.as_ref(),
            &mut new_dirs,
            recursive,
        )?;

        let f: Vec<(u32, &[u8])> = new_files.iter().map(|(i, n)| (*i, &n[..])).collect();
        let d: Vec<(u32, &[u8])> = new_dirs.iter().map(|(i, n)| (*i, &n[..])).collect();
        self.view.ov.set_listing(idx, Listing::new(&f, &d));
        self.view.ov.touch(idx);
        Ok(())
    }

    /// Merge-joins one class (files or directories) of old and new children, both in
    /// canonical order; pushes the resulting (index, name) pairs to `out`.
    #[allow(clippy::too_many_arguments)]
    fn merge(
        &mut self,
        parent: u32,
        path: &[u8],
        old: &[(u32, Vec<u8>, bool)],
        new: Vec<Child>,
        dirs: bool,
        fd: Option<&OwnedFd>,
        out: &mut Vec<(u32, Vec<u8>)>,
        recursive: bool,
    ) -> Result<(), UpdateError> {
        let cmp = if dirs { cmp_dir_names } else { cmp_file_names };
        let mut o = old.iter().peekable();
        for child in new {
            // Everything old sorting before this name is gone.
            while let Some(x) = o.peek() {
                if cmp(&x.1, &child.name).is_lt() {
                    self.removed(x.0);
                    o.next();
                } else {
                    break;
                }
            }
            let same = match o.peek() {
                Some(x) if cmp(&x.1, &child.name).is_eq() => {
                    let x = o.next().map(|x| x.0);
                    x.and_then(|i| self.view.entry(i).map(|e| (i, e.dev(), e.ino(), e.mode())))
                }
                _ => None,
            };
            let kept = match same {
                Some((i, dev, ino, mode))
                    if (dev, ino) == (child.attrs.dev, child.attrs.ino)
                        && mode & crate::model::S_IFMT
                            == child.attrs.mode & crate::model::S_IFMT =>
                {
                    self.update_matched(i, &child);
                    self.statted.insert(i);
                    if dirs && recursive {
                        self.queue.push_back((i, join(path, &child.name), true));
                    }
                    Some(i)
                }
                Some((i, ..)) => {
                    self.removed(i);
                    None
                }
                None => None,
            };
            let index = match kept {
                Some(i) => i,
                None => self.added(parent, path, &child, fd)?,
            };
            out.push((index, child.name));
        }
        for x in o {
            self.removed(x.0);
        }
        Ok(())
    }

    /// Accounts for a child that is gone (its whole subtree), and queues link checks for
    /// hard-linked files in it.
    fn removed(&mut self, index: u32) {
        let Some(e) = self.view.entry(index) else {
            return;
        };
        let (mut entries, mut dirs) = (1i64, i64::from(e.is_dir()));
        if !e.is_dir() && e.nlink() > 1 {
            self.link_check.push((e.dev(), e.ino()));
        }
        if e.is_dir() {
            let snap = self.view.clone();
            let mut checks = Vec::new();
            snap.walk(e, &mut |_, c| {
                entries += 1;
                if c.is_dir() {
                    dirs += 1;
                } else if c.nlink() > 1 {
                    checks.push((c.dev(), c.ino()));
                }
                crate::WalkControl::Continue
            });
            self.link_check.extend(checks);
        }
        self.view.ov.add_counts(-entries, -dirs);
        self.stats.removed += entries as u64;
    }

    /// Adds a new child (a directory with its whole subtree); returns its index.
    fn added(
        &mut self,
        parent: u32,
        path: &[u8],
        child: &Child,
        fd: Option<&OwnedFd>,
    ) -> Result<u32, UpdateError> {
        let index = self.view.ov.alloc().ok_or(UpdateError::TooLarge)?;
        let child_path = join(path, &child.name);
        if !child.attrs.is_dir() {
            // Every non-directory is indexed: a later hard link to it must find it.
            self.links.add(child.attrs.ino, index);
            if child.attrs.nlink > 1 {
                self.link_check.push((child.attrs.dev, child.attrs.ino));
            }
            self.view.ov.set_rec(
                index,
                ORec {
                    parent,
                    name: child.name.clone().into_boxed_slice(),
                    target: child.target.clone().into_boxed_slice(),
                    attrs: child.attrs,
                    flags: 0,
                    dir_error: 0,
                    scan_generation: 0,
                },
            );
            self.view.ov.add_counts(1, 0);
            self.stats.added += 1;
            self.statted.insert(index);
            return Ok(index);
        }
        let generation = self.opts.generation;
        let leaf = |fl: u32, err: u32| ORec {
            parent,
            name: child.name.clone().into_boxed_slice(),
            target: Box::default(),
            attrs: child.attrs,
            flags: fl,
            dir_error: err,
            scan_generation: generation,
        };
        if self.opts.one_file_system && child.attrs.dev != self.fs_dev {
            self.view.ov.set_rec(index, leaf(flags::OTHER_FS, 0));
            self.view.ov.set_listing(index, Listing::default());
            self.view.ov.add_counts(1, 1);
            self.stats.added += 1;
            return Ok(index);
        }
        let opened = match fd {
            Some(fd) => open_subdir(fd.as_fd(), &child.name, &child.attrs),
            None => Err(Errno::BADF),
        };
        let sub = match opened {
            Ok(sub) => sub,
            Err(e) => {
                self.issue(&child_path, "opendir failed", e);
                self.view
                    .ov
                    .set_rec(index, leaf(flags::UNREADABLE, e.raw_os_error() as u32));
                self.view.ov.set_listing(index, Listing::default());
                self.view.ov.add_counts(1, 1);
                self.stats.added += 1;
                return Ok(index);
            }
        };
        self.graft(index, parent, child, sub, &child_path)
    }

    /// Scans the new directory open as `sub` with its subtree and adds it all to the
    /// overlay, the directory itself at `index`.
    fn graft(
        &mut self,
        index: u32,
        parent: u32,
        child: &Child,
        sub: OwnedFd,
        child_path: &[u8],
    ) -> Result<u32, UpdateError> {
        let (model, report) = scan_subtree(
            sub,
            child.attrs,
            self.fs_dev,
            child_path,
            &self.opts,
            &mut *self.visit,
        )?;
        self.stats.issues.extend(report.errors);
        let n = model.entries.len();
        let mut map: Vec<u32> = Vec::with_capacity(n);
        map.push(index);
        for _ in 1..n {
            map.push(self.view.ov.alloc().ok_or(UpdateError::TooLarge)?);
        }
        let blob = |b: &[u8], off: u32, len: u32| -> Box<[u8]> {
            let off = off as usize;
            b.get(off..off + len as usize).unwrap_or_default().into()
        };
        for (k, r) in model.entries.iter().enumerate() {
            let attrs = Attrs {
                mode: r.mode,
                uid: r.uid,
                gid: r.gid,
                nlink: r.nlink,
                size: r.size,
                mtime: r.mtime,
                mtime_nsec: r.mtime_nsec,
                ctime: r.ctime,
                ctime_nsec: r.ctime_nsec,
                dev: r.dev,
                ino: r.ino,
                rdev_major: r.rdev_major,
                rdev_minor: r.rdev_minor,
            };
            let (dir_error, scan_generation) = match model.dirs.get(r.dir as usize) {
                Some(d) if r.dir != NO_INDEX => (d.error, d.scan_generation),
                _ => (0, 0),
            };
            let rec = ORec {
                parent: if k == 0 {
                    parent
                } else {
                    map.get(r.parent as usize).copied().unwrap_or(parent)
                },
                name: if k == 0 {
                    child.name.clone().into_boxed_slice()
                } else {
                    blob(&model.names, r.name_off, r.name_len)
                },
                target: blob(&model.targets, r.target_off, r.target_len),
                attrs,
                flags: r.flags & (flags::UNREADABLE | flags::OTHER_FS),
                dir_error,
                scan_generation,
            };
            if !attrs.is_dir() {
                self.links.add(attrs.ino, map[k]);
                if attrs.nlink > 1 {
                    self.link_check.push((attrs.dev, attrs.ino));
                }
            }
            self.statted.insert(map[k]);
            self.view.ov.set_rec(map[k], rec);
        }
        let name_of = |k: usize| -> &[u8] {
            let r = &model.entries[k];
            let off = r.name_off as usize;
            model
                .names
                .get(off..off + r.name_len as usize)
                .unwrap_or_default()
        };
        for d in &model.dirs {
            let e = d.entry as usize;
            let files: Vec<(u32, &[u8])> = (e + 1..e + 1 + d.nfiles as usize)
                .map(|k| (map[k], name_of(k)))
                .collect();
            let off = d.subdirs_off as usize;
            let subs: Vec<(u32, &[u8])> = model
                .subdirs
                .get(off..off + d.subdirs_len as usize)
                .unwrap_or_default()
                .iter()
                .map(|&s| (map[s as usize], name_of(s as usize)))
                .collect();
            self.view
                .ov
                .set_listing(map[e], Listing::new(&files, &subs));
            self.listed.insert(map[e], true);
        }
        self.view.ov.add_counts(n as i64, model.dirs.len() as i64);
        self.stats.added += n as u64;
        self.stats.dirs_listed += model.dirs.len() as u64;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_normalises_and_refuses_dotdot() {
        assert_eq!(clean_path(b"/a//b/./c/").as_deref(), Some(&b"a/b/c"[..]));
        assert_eq!(clean_path(b"").as_deref(), Some(&b""[..]));
        assert_eq!(clean_path(b".").as_deref(), Some(&b""[..]));
        assert_eq!(clean_path(b"a/../b"), None);
        assert_eq!(clean_path(b"a\0b"), None);
    }

    #[test]
    fn parent_path_of_top_level_is_root() {
        assert_eq!(parent_path(b"a"), b"");
        assert_eq!(parent_path(b"a/b/c"), b"a/b");
    }
}
