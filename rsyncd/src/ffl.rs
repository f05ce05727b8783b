//! `fullfiletimelist`: a generated quick-fedora-mirror file list served as a
//! virtual file at the top of a module.
//!
//! quick-fedora-mirror clients fetch `fullfiletimelist-<module>` first and skip
//! the whole module when its checksum has not changed (see
//! `docs/operations.md`). Mirrors produce it with a cron job running
//! `create-filelist`, which walks the whole tree again. Here it is a by-product
//! of the snapshot: generated once per snapshot generation (lazily, by the
//! first session of that generation), from the snapshot alone (no `stat()` of
//! the tree; only the `[Checksums SHA1]` files are read, and only when their
//! `(dev, ino, size, mtime, ctime)` changed), and served through the normal
//! list and transfer path: [`pin`] gives a session a view of its generation in
//! which the list is an ordinary regular file of the root directory
//! ([`filelist_cache::Snapshot::with_virtual_file`]), and the transfer reads
//! its bytes from memory.
//!
//! # Format (create-filelist, "version 2")
//!
//! ```text
//! [Version]
//! 2
//!
//! [Files]
//! <max(mtime, ctime)>\t<type>\t<size>\t<path>
//! ...
//!
//! [Checksums SHA1]
//! <sha1 hex>\t<path>
//!
//! [End]
//! ```
//!
//! Entry rules (create-filelist's `recursedir()`/`SEntry`): entries named
//! `.~tmp~` or starting with `.nfs` are skipped with their subtrees; an entry
//! whose target cannot be resolved (dangling symlink) or whose (followed) mode
//! is not group-readable is skipped with its subtree; the type is `f`, `d` or
//! `l`, suffixed `*` under a directory that is not world-readable and `-`
//! (which wins) when the entry itself is not world-readable; the timestamp is
//! `int(max(st_mtime, st_ctime))` of the `lstat`; the size is `lstat`'s. A
//! directory's line follows its children's. On top of that, what the module
//! would not serve is left out: entries its `uid`/`gid` identity cannot see
//! (judged from the snapshot), entries the daemon's `exclude`/`filter` rules
//! exclude, names containing a TAB or newline (they would corrupt the list),
//! and the list itself. `[Checksums SHA1]` covers regular files only (a
//! symlink named `repomd.xml` is listed, not checksummed: its target may be
//! content the module does not serve).
//!
//! # Stability
//!
//! The bytes are a pure function of the snapshot (plus the SHA1 of the
//! checksummed files), so a new generation with no visible change gives the
//! same content. Its mtime is the newest timestamp of the list (and of the
//! module root); when the content changes but that would not move the mtime
//! forward, it becomes the previous mtime + 1, so rsync's quick check always
//! sees a changed list. An unchanged list keeps its previous mtime.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use filelist_cache::{EntryRef, Generation, Snapshot, VirtualAttrs};
use protocol::filter::{FilterDecision, FilterList};
use sha1::{Digest, Sha1};

use crate::access::identity::{Identity, Meta};
use crate::module::ModuleRuntime;

/// The `[Version]` the list declares (create-filelist writes 2 although the
/// restricted-type suffixes are, strictly, version 3).
pub const LIST_VERSION: u32 = 2;

/// `st_ino` reported for the virtual file (no real inode number is this high).
pub const VIRTUAL_INO: u64 = u64::MAX - 1;

/// Most symlinks followed while resolving one link (Linux `MAXSYMLINKS`).
const MAX_SYMLINK_HOPS: u32 = 40;

/// The generated file of one generation, as a session serves it.
#[derive(Clone)]
pub struct VirtualFile {
    /// Entry index in the session's view.
    pub index: u32,
    /// The bytes.
    pub content: Arc<[u8]>,
}

/// One generation's list and the view that serves it.
pub struct Served {
    gen: Arc<Generation>,
    view: Snapshot,
    file: VirtualFile,
    digest: [u8; 20],
    mtime: i64,
    /// Checksummed files read for this build (the others came from the
    /// SHA1 cache).
    sha1_reads: usize,
}

impl Served {
    /// The list's bytes.
    pub fn content(&self) -> &[u8] {
        &self.file.content
    }

    /// The list's mtime.
    pub fn mtime(&self) -> i64 {
        self.mtime
    }

    /// The generation it was built from.
    pub fn generation(&self) -> u64 {
        self.gen.number()
    }
}

/// What one session reads: a pinned generation and, for a module that serves
/// a `fullfiletimelist`, the view of it with the list at the top.
pub struct Pinned {
    gen: Arc<Generation>,
    served: Option<Arc<Served>>,
}

impl Pinned {
    /// The view the session lists and transfers from.
    pub fn snapshot(&self) -> &Snapshot {
        match &self.served {
            Some(s) => &s.view,
            None => self.gen.snapshot(),
        }
    }

    /// The pinned generation.
    pub fn generation(&self) -> &Generation {
        &self.gen
    }

    /// The generated file, when the view has one.
    pub fn virtual_file(&self) -> Option<VirtualFile> {
        self.served.as_ref().map(|s| s.file.clone())
    }
}

/// Key of a cached SHA1: the file's identity and every attribute a content
/// change moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FileKey {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, u32),
    ctime: (i64, u32),
}

impl FileKey {
    fn of_entry(e: &EntryRef<'_>) -> FileKey {
        FileKey { dev: e.dev(), ino: e.ino(), size: e.size(), mtime: (e.mtime(), e.mtime_nsec()), ctime: (e.ctime(), e.ctime_nsec()) }
    }

    fn of_meta(m: &std::fs::Metadata) -> FileKey {
        FileKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec() as u32),
            ctime: (m.ctime(), m.ctime_nsec() as u32),
        }
    }
}

#[derive(Default)]
struct State {
    /// The newest list built.
    current: Option<Arc<Served>>,
    /// A session is building one now.
    generating: bool,
    /// The generation whose list could not be built (served without it).
    failed: Option<u64>,
    /// SHA1s of the checksummed files, from the last build.
    sha1: HashMap<FileKey, [u8; 20]>,
}

/// A module's `fullfiletimelist` setting and its cache (the newest list; an
/// older one lives only while sessions pin it).
pub struct Ffl {
    name: Vec<u8>,
    checksum_names: Vec<Vec<u8>>,
    state: Mutex<State>,
    ready: Condvar,
}

impl std::fmt::Debug for Ffl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ffl").field("name", &String::from_utf8_lossy(&self.name)).finish_non_exhaustive()
    }
}

/// Resets `generating` and wakes waiters however the build ends.
struct BuildGuard<'a>(&'a Ffl);

impl Drop for BuildGuard<'_> {
    fn drop(&mut self) {
        self.0.lock().generating = false;
        self.0.ready.notify_all();
    }
}

impl Ffl {
    /// The setting of a module: the list's file name and the basenames whose
    /// SHA1 it carries.
    pub fn new(name: Vec<u8>, checksum_names: Vec<Vec<u8>>) -> Ffl {
        Ffl { name, checksum_names, state: Mutex::new(State::default()), ready: Condvar::new() }
    }

    /// The list's file name.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The list for `gen` or a newer generation (built now if needed); while
    /// another session builds, the newest list already built is used (its
    /// generation is consistent with itself). `None` when it cannot be built.
    fn served(&self, module: &ModuleRuntime, gen: &Arc<Generation>) -> Option<Arc<Served>> {
        let mut st = self.lock();
        loop {
            if let Some(cur) = &st.current {
                if cur.gen.number() >= gen.number() || st.generating {
                    return Some(cur.clone());
                }
            }
            if st.failed == Some(gen.number()) {
                return None;
            }
            if !st.generating {
                break;
            }
            st = self.ready.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        st.generating = true;
        let prev = st.current.clone();
        let mut sha1 = std::mem::take(&mut st.sha1);
        drop(st);
        let guard = BuildGuard(self);
        let t0 = std::time::Instant::now();
        let built = self.build(module, gen, prev.as_deref(), &mut sha1);
        let mut st = self.lock();
        st.sha1 = sha1;
        let out = match built {
            Ok(s) => {
                tracing::info!(
                    module = %module.name,
                    generation = gen.number(),
                    bytes = s.file.content.len(),
                    sha1_reads = s.sha1_reads,
                    mtime = s.mtime,
                    changed = !matches!(&prev, Some(p) if p.digest == s.digest),
                    elapsed_ms = t0.elapsed().as_millis() as u64,
                    "fullfiletimelist built"
                );
                let s = Arc::new(s);
                st.current = Some(s.clone());
                Some(s)
            }
            Err(e) => {
                tracing::warn!(module = %module.name, generation = gen.number(), "fullfiletimelist not served: {e}");
                st.failed = Some(gen.number());
                None
            }
        };
        drop(st);
        drop(guard);
        out
    }

    fn build(
        &self,
        module: &ModuleRuntime,
        gen: &Arc<Generation>,
        prev: Option<&Served>,
        sha1_cache: &mut HashMap<FileKey, [u8; 20]>,
    ) -> Result<Served, String> {
        let snap = gen.snapshot();
        let access = &module.rules.access;
        let identity = (!access.is_unrestricted()).then_some(&access.identity);
        let params =
            ListParams { self_name: &self.name, checksum_names: &self.checksum_names, identity, daemon_filter: &module.daemon_filter };
        let mut used = HashMap::new();
        let mut sha1_reads = 0;
        let outside =
            |link_path: &[u8]| -> Option<u32> { std::fs::metadata(module.path.join(OsStr::from_bytes(link_path))).ok().map(|m| m.mode()) };
        let mut sha1_of = |path: &[u8], e: EntryRef<'_>| -> Option<[u8; 20]> {
            let key = FileKey::of_entry(&e);
            if let Some(d) = sha1_cache.get(&key) {
                used.insert(key, *d);
                return Some(*d);
            }
            sha1_reads += 1;
            let (d, read_key) = sha1_file(module, path)?;
            if read_key == key {
                used.insert(key, d);
            }
            Some(d)
        };
        let built = build_list(snap, &params, &outside, &mut sha1_of);
        *sha1_cache = used;
        let content: Arc<[u8]> = built.content.into();
        let digest: [u8; 20] = Sha1::digest(&content).into();
        let root = snap.root();
        let newest = built.newest.max(timestamp(&root));
        let mtime = match prev {
            Some(p) if p.digest == digest => p.mtime,
            Some(p) => newest.max(p.mtime.saturating_add(1)),
            None => newest,
        };
        let attrs = VirtualAttrs {
            perm: 0o644,
            uid: root.uid(),
            gid: root.gid(),
            size: content.len() as u64,
            mtime,
            ctime: mtime,
            dev: root.dev(),
            ino: VIRTUAL_INO,
        };
        let (view, index) = snap
            .with_virtual_file(&self.name, &attrs)
            .map_err(|e| format!("cannot add {:?} at the top of the module: {e}", String::from_utf8_lossy(&self.name)))?;
        Ok(Served { gen: gen.clone(), view, file: VirtualFile { index, content }, digest, mtime, sha1_reads })
    }
}

/// SHA1 of the regular file at module path `path` (opened beneath the module
/// root, no symlinks), and the key of what was read (`fstat` before reading;
/// a key that changed while reading is reported as all zero, so it is never
/// cached).
fn sha1_file(module: &ModuleRuntime, path: &[u8]) -> Option<([u8; 20], FileKey)> {
    let mut f = match module.root.open_file_with(path, true) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(module = %module.name, path = %String::from_utf8_lossy(path), "fullfiletimelist: no SHA1: {e}");
            return None;
        }
    };
    let before = FileKey::of_meta(&f.metadata().ok()?);
    let mut h = Sha1::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(module = %module.name, path = %String::from_utf8_lossy(path), "fullfiletimelist: no SHA1: {e}");
                return None;
            }
        }
    }
    let after = FileKey::of_meta(&f.metadata().ok()?);
    let key = if after == before { before } else { FileKey { dev: 0, ino: 0, size: 0, mtime: (0, 0), ctime: (0, 0) } };
    Some((h.finalize().into(), key))
}

/// The session's view of `gen`: with the module's `fullfiletimelist` when it
/// serves one (built on first use per generation), else `gen` as it is.
pub fn pin(module: &ModuleRuntime, gen: Arc<Generation>) -> Pinned {
    let Some(ffl) = &module.ffl else {
        return Pinned { gen, served: None };
    };
    match ffl.served(module, &gen) {
        Some(s) => Pinned { gen: s.gen.clone(), served: Some(s) },
        None => Pinned { gen, served: None },
    }
}

/// What [`build_list`] needs besides the snapshot.
pub struct ListParams<'a> {
    /// The list's own name (left out at the top).
    pub self_name: &'a [u8],
    /// Basenames whose SHA1 goes into `[Checksums SHA1]`.
    pub checksum_names: &'a [Vec<u8>],
    /// The module's identity; `None` sees everything.
    pub identity: Option<&'a Identity>,
    /// The daemon's filter rules.
    pub daemon_filter: &'a FilterList,
}

/// A built list.
pub struct BuiltList {
    /// The file's bytes.
    pub content: Vec<u8>,
    /// The newest timestamp listed (`i64::MIN` for an empty list).
    pub newest: i64,
}

/// `int(max(st_mtime, st_ctime))` as create-filelist computes it (Python's
/// `int()` truncates toward zero).
fn timestamp(e: &EntryRef<'_>) -> i64 {
    let (s, ns) = (e.mtime(), e.mtime_nsec()).max((e.ctime(), e.ctime_nsec()));
    if s < 0 && ns > 0 {
        s + 1
    } else {
        s
    }
}

fn meta(e: &EntryRef<'_>) -> Meta {
    Meta { mode: e.mode(), uid: e.uid(), gid: e.gid() }
}

/// How a symlink resolves.
enum Target<'a> {
    /// To this entry of the snapshot.
    Inside(EntryRef<'a>),
    /// Out of the module (absolute, or `..` above the root).
    Outside,
    /// Nowhere (dangling, a loop, a non-directory in the middle).
    Missing,
}

/// Resolves the symlink at module path `link_path` within the snapshot,
/// following further symlinks (at most [`MAX_SYMLINK_HOPS`]).
fn resolve<'a>(snap: &'a Snapshot, link_path: &[u8], target: &[u8]) -> Target<'a> {
    if target.starts_with(b"/") {
        return Target::Outside;
    }
    // Directories from the root down to where the resolution is.
    let mut stack: Vec<EntryRef<'a>> = Vec::new();
    let dir = match link_path.iter().rposition(|&b| b == b'/') {
        Some(i) => &link_path[..i],
        None => b"",
    };
    for c in dir.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        let here = stack.last().copied().unwrap_or_else(|| snap.root());
        match here.child(c) {
            Some(e) => stack.push(e),
            None => return Target::Missing,
        }
    }
    // Components still to resolve, the next one last.
    let mut todo: Vec<Vec<u8>> = Vec::new();
    let push_target = |todo: &mut Vec<Vec<u8>>, t: &[u8]| {
        for c in t.split(|&b| b == b'/').rev() {
            todo.push(c.to_vec());
        }
    };
    push_target(&mut todo, target);
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c.is_empty() || c == b"." {
            continue;
        }
        if c == b".." {
            if stack.pop().is_none() {
                return Target::Outside;
            }
            continue;
        }
        let here = stack.last().copied().unwrap_or_else(|| snap.root());
        if !here.is_dir() {
            return Target::Missing;
        }
        let Some(e) = here.child(&c) else { return Target::Missing };
        if e.is_symlink() {
            hops += 1;
            let t = e.link_target();
            if hops > MAX_SYMLINK_HOPS {
                return Target::Missing;
            }
            if t.starts_with(b"/") {
                return Target::Outside;
            }
            push_target(&mut todo, t);
            continue;
        }
        stack.push(e);
    }
    Target::Inside(stack.last().copied().unwrap_or_else(|| snap.root()))
}

/// Appends `<ts>\t<ty>\t<size>\t<path>\n`.
fn put_line(out: &mut Vec<u8>, ts: i64, ty: &[u8], size: u64, path: &[u8]) {
    use std::io::Write;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{ts}\t");
    out.extend_from_slice(ty);
    let _ = write!(out, "\t{size}\t");
    out.extend_from_slice(path);
    out.push(b'\n');
}

/// `sha1(path, entry)`: the SHA1 of a regular file of the snapshot.
pub type Sha1Of<'a> = dyn FnMut(&[u8], EntryRef<'_>) -> Option<[u8; 20]> + 'a;

/// Builds the list of `snap` (see the module documentation for the rules).
/// `outside(link_path)` is the followed mode of a symlink that leaves the
/// module (`None`: it cannot be stat()ed); `sha1(path, entry)` is the SHA1 of
/// the regular file `entry` at module path `path` (`None`: no checksum line).
pub fn build_list(snap: &Snapshot, p: &ListParams<'_>, outside: &dyn Fn(&[u8]) -> Option<u32>, sha1: &mut Sha1Of<'_>) -> BuiltList {
    let mut out = Vec::with_capacity(64 * snap.len().min(1 << 20));
    out.extend_from_slice(format!("[Version]\n{LIST_VERSION}\n\n[Files]\n").as_bytes());
    let mut newest = i64::MIN;
    let mut sums: Vec<Vec<u8>> = Vec::new();
    let root = snap.root();
    let may_enter = |e: &EntryRef<'_>| match p.identity {
        Some(id) => id.may_enter(&meta(e)),
        None => true,
    };
    let may_see = |e: &EntryRef<'_>| match p.identity {
        Some(id) => id.may_see(&meta(e)),
        None => true,
    };
    if !may_enter(&root) {
        out.extend_from_slice(b"\n[Checksums SHA1]\n\n[End]\n");
        return BuiltList { content: out, newest };
    }
    // (children left, path length of the directory, its line to emit after
    // them, its children are restricted)
    struct Frame<'a> {
        kids: filelist_cache::Children<'a>,
        dir_len: usize,
        line: Option<Vec<u8>>,
        restricted: bool,
    }
    let mut path: Vec<u8> = Vec::with_capacity(256);
    let mut stack = vec![Frame { kids: root.children(), dir_len: 0, line: None, restricted: false }];
    let mut itoa = Vec::with_capacity(64);
    while let Some(top) = stack.last_mut() {
        let Some(e) = top.kids.next() else {
            let f = stack.pop().expect("non-empty");
            if let Some(l) = f.line {
                out.extend_from_slice(&l);
            }
            continue;
        };
        let (dir_len, restricted) = (top.dir_len, top.restricted);
        let name = e.name();
        if name == b".~tmp~" || name.starts_with(b".nfs") || name.iter().any(|&b| b == b'\n' || b == b'\t' || b == b'\r') {
            continue;
        }
        if dir_len == 0 && name == p.self_name {
            continue;
        }
        if !may_see(&e) {
            continue;
        }
        path.truncate(dir_len);
        if dir_len > 0 {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        let is_dir = e.is_dir();
        if !p.daemon_filter.is_empty() && p.daemon_filter.check(&path, &path, is_dir) == FilterDecision::Exclude {
            continue;
        }
        // create-filelist stat()s with symlinks followed: dangling links and
        // targets that are not group-readable are left out.
        let followed_mode = if e.is_symlink() {
            match resolve(snap, &path, e.link_target()) {
                Target::Inside(t) => Some(t.mode()),
                Target::Outside => outside(&path),
                Target::Missing => None,
            }
        } else {
            Some(e.mode())
        };
        let Some(mode) = followed_mode else { continue };
        if mode & 0o040 == 0 {
            continue;
        }
        let world = e.mode() & 0o004 != 0;
        let ty: &[u8] = match (e.is_symlink(), is_dir, world, restricted) {
            (true, _, false, _) => b"l-",
            (true, _, true, true) => b"l*",
            (true, _, true, false) => b"l",
            (_, true, false, _) => b"d-",
            (_, true, true, true) => b"d*",
            (_, true, true, false) => b"d",
            (_, false, false, _) => b"f-",
            (_, false, true, true) => b"f*",
            (_, false, true, false) => b"f",
        };
        let ts = timestamp(&e);
        newest = newest.max(ts);
        itoa.clear();
        put_line(&mut itoa, ts, ty, e.size(), &path);
        if e.is_file() && p.checksum_names.iter().any(|n| n.as_slice() == name) {
            sums.push(path.clone());
        }
        if is_dir && may_enter(&e) {
            let len = path.len();
            stack.push(Frame { kids: e.children(), dir_len: len, line: Some(itoa.clone()), restricted: restricted || !world });
        } else {
            out.extend_from_slice(&itoa);
        }
    }
    out.extend_from_slice(b"\n[Checksums SHA1]\n");
    sums.sort();
    for path in &sums {
        let Some(e) = snap.lookup(path) else { continue };
        let Some(d) = sha1(path, e) else { continue };
        for b in d {
            out.extend_from_slice(format!("{b:02x}").as_bytes());
        }
        out.push(b'\t');
        out.extend_from_slice(path);
        out.push(b'\n');
    }
    out.extend_from_slice(b"\n[End]\n");
    BuiltList { content: out, newest }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;

    fn ts(p: &Path) -> i64 {
        let m = std::fs::symlink_metadata(p).unwrap();
        let t = (m.mtime(), m.mtime_nsec()).max((m.ctime(), m.ctime_nsec()));
        t.0
    }

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// The tree of the brief: restricted directories and files, symlinks,
    /// rsync's staging directory, NFS silly-renames.
    fn tree(root: &Path) {
        for d in ["priv/inner", "pub/repodata", "pub/.~tmp~", "closed"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for (f, body) in [
            ("a", "a\n"),
            ("g640", "g\n"),
            ("p600", "p\n"),
            (".nfs123", "n\n"),
            ("tab\tname", "t\n"),
            ("fullfiletimelist-m", "stale list\n"),
            ("priv/secret", "s\n"),
            ("priv/x640", "x\n"),
            ("priv/inner/deep", "d\n"),
            ("pub/repodata/repomd.xml", "<repomd/>\n"),
            ("pub/.~tmp~/partial", "..."),
            ("closed/c", "c\n"),
        ] {
            std::fs::write(root.join(f), body).unwrap();
        }
        symlink("a", root.join("link")).unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();
        symlink("p600", root.join("tolocked")).unwrap();
        symlink("repodata/repomd.xml", root.join("pub/repomd.xml")).unwrap();
        chmod(&root.join("g640"), 0o640);
        chmod(&root.join("p600"), 0o600);
        chmod(&root.join("priv/x640"), 0o640);
        chmod(&root.join("priv"), 0o750);
        chmod(&root.join("closed"), 0o700);
    }

    fn build(root: &Path, identity: Option<&Identity>, filter: &FilterList) -> (String, Vec<String>) {
        let snap_path = root.parent().unwrap().join("s.snap");
        filelist_cache::build_snapshot(root, &snap_path, &filelist_cache::BuildOptions::default()).unwrap();
        let snap = Snapshot::open(&snap_path).unwrap();
        let names = vec![b"repomd.xml".to_vec()];
        let p = ListParams { self_name: b"fullfiletimelist-m", checksum_names: &names, identity, daemon_filter: filter };
        let mut read = Vec::new();
        let built = build_list(&snap, &p, &|_| None, &mut |path, e| {
            assert!(e.is_file());
            read.push(String::from_utf8_lossy(path).into_owned());
            Some(Sha1::digest(std::fs::read(root.join(OsStr::from_bytes(path))).unwrap()).into())
        });
        (String::from_utf8(built.content).unwrap(), read)
    }

    fn line(root: &Path, ty: &str, path: &str) -> String {
        let p = root.join(path);
        let size = std::fs::symlink_metadata(&p).unwrap().len();
        format!("{}\t{ty}\t{size}\t{path}\n", ts(&p))
    }

    #[test]
    fn content_follows_the_create_filelist_rules() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("m");
        tree(&root);
        let (got, read) = build(&root, None, &FilterList::default());
        let sha = format!("{:x}", Sha1::digest(b"<repomd/>\n"));
        let mut want = String::from("[Version]\n2\n\n[Files]\n");
        for (ty, p) in [
            ("f", "a"),
            ("f-", "g640"),
            ("l", "link"),
            ("f*", "priv/secret"),
            ("f-", "priv/x640"),
            ("f*", "priv/inner/deep"),
            ("d*", "priv/inner"),
            ("d-", "priv"),
            ("l", "pub/repomd.xml"),
            ("f", "pub/repodata/repomd.xml"),
            ("d", "pub/repodata"),
            ("d", "pub"),
        ] {
            want.push_str(&line(&root, ty, p));
        }
        want.push_str(&format!("\n[Checksums SHA1]\n{sha}\tpub/repodata/repomd.xml\n\n[End]\n"));
        assert_eq!(got, want);
        assert_eq!(read, ["pub/repodata/repomd.xml"]);
    }

    #[test]
    fn a_public_module_lists_no_restricted_entry() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("m");
        tree(&root);
        let nobody = Identity { uid: 65534, gids: vec![65534] };
        let (got, _) = build(&root, Some(&nobody), &FilterList::default());
        let files: Vec<&str> = got.lines().filter(|l| l.contains('\t')).collect();
        let paths: Vec<&str> = files.iter().map(|l| l.rsplit('\t').next().unwrap()).collect();
        assert_eq!(paths, ["a", "link", "pub/repomd.xml", "pub/repodata/repomd.xml", "pub/repodata", "pub", "pub/repodata/repomd.xml"]);
        for l in &files[..6] {
            let ty = l.split('\t').nth(1).unwrap();
            assert!(!ty.contains(['*', '-']), "restricted entry on a public module: {l}");
        }
        // The daemon's exclude rules apply too, to subtrees.
        let rules = [b"/pub/repodata".to_vec()];
        let filter = FilterList::from_daemon_config(&protocol::filter::DaemonFilterParams {
            filter: &[],
            include_from: None,
            include: &[],
            exclude_from: None,
            exclude: &rules,
        })
        .unwrap();
        let (got, read) = build(&root, Some(&nobody), &filter);
        assert!(!got.contains("repodata"), "{got}");
        assert!(read.is_empty());
        assert!(got.ends_with("\n[Checksums SHA1]\n\n[End]\n"), "{got}");
    }

    #[test]
    fn symlinks_resolve_within_the_snapshot() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("m");
        std::fs::create_dir_all(root.join("x/y")).unwrap();
        std::fs::write(root.join("x/y/f"), b"f").unwrap();
        symlink("../x/y/f", root.join("x/up")).unwrap();
        symlink("up", root.join("x/chain")).unwrap();
        symlink("../../..", root.join("x/y/out")).unwrap();
        symlink("/etc/hostname", root.join("abs")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        symlink("x/y/f/g", root.join("notdir")).unwrap();
        let snap_path = d.path().join("s.snap");
        filelist_cache::build_snapshot(&root, &snap_path, &filelist_cache::BuildOptions::default()).unwrap();
        let snap = Snapshot::open(&snap_path).unwrap();
        let inside = |link: &[u8]| match resolve(&snap, link, snap.lookup(link).unwrap().link_target()) {
            Target::Inside(e) => {
                Some(if e.index() == snap.lookup(b"x/y/f").unwrap().index() { "x/y/f".to_string() } else { format!("{e:?}") })
            }
            Target::Outside => Some("OUT".into()),
            Target::Missing => None,
        };
        assert_eq!(inside(b"x/up").as_deref(), Some("x/y/f"));
        assert_eq!(inside(b"x/chain").as_deref(), Some("x/y/f"));
        assert_eq!(inside(b"x/y/out").as_deref(), Some("OUT"));
        assert_eq!(inside(b"abs").as_deref(), Some("OUT"));
        assert_eq!(inside(b"loop1"), None);
        assert_eq!(inside(b"notdir"), None);
        // Links leaving the module are judged by `outside`.
        let names: Vec<Vec<u8>> = Vec::new();
        let p = ListParams { self_name: b"-", checksum_names: &names, identity: None, daemon_filter: &FilterList::default() };
        let asked = std::cell::RefCell::new(Vec::new());
        let built = build_list(
            &snap,
            &p,
            &|l| {
                asked.borrow_mut().push(String::from_utf8_lossy(l).into_owned());
                (l == b"abs").then_some(0o100644)
            },
            &mut |_, _| None,
        );
        let text = String::from_utf8(built.content).unwrap();
        let mut asked = asked.into_inner();
        asked.sort();
        assert_eq!(asked, ["abs", "x/y/out"]);
        let listed: Vec<&str> = text.lines().filter(|l| l.contains('\t')).map(|l| l.rsplit('\t').next().unwrap()).collect();
        assert_eq!(listed, ["abs", "x/chain", "x/up", "x/y/f", "x/y", "x"]);
        assert!(built.newest > 0);
    }
}
