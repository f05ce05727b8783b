//! The live layer: one [`SnapshotStore`] per module keeps the module's snapshot current
//! and publishes immutable [`Generation`]s that sessions pin.
//!
//! - **Generations.** [`SnapshotStore::current`] returns an `Arc<Generation>` (an
//!   `ArcSwap` load: no lock, no copy). A generation derefs to a [`Snapshot`] view, so a
//!   session reads it with the plain snapshot API and sees one consistent tree for its
//!   whole life, whatever is published meanwhile.
//! - **Incremental updates** ([`SnapshotStore::refresh`], the fanotify watcher) re-read
//!   only the named directories and publish a new overlay on the same base file; their
//!   cost follows the change, not the tree (see [`crate::overlay`]).
//! - **Heavy operations** (full rescan, compaction) build a complete new base file off
//!   the update path, while incremental updates go on; requests applied meanwhile are
//!   replayed on the new base before it is published, so nothing is lost.
//! - **Files.** Base files are `<name>.g<generation>.snap` in the state directory,
//!   written to a temporary file, fsynced and renamed, never modified. A superseded
//!   base file is *retired*: removed when the last generation built on it is dropped.
//!   A kill at any moment leaves the last published file intact; the next
//!   [`SnapshotStore::open_or_build`] serves the newest file that validates, removes
//!   temporary files and older generations, and rebuilds only if none validates.
//! - **Change sources** ([`SnapshotStore::start_background`]): the fanotify watcher
//!   (set up in `open_or_build`, before privileges are dropped), a periodic full rescan
//!   (for NFS and anything fanotify cannot see), compaction when the overlay grows, and
//!   the explicit [`SnapshotStore::refresh_path`] / [`Stores::refresh`] entry point.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::error::{OpenError, ScanError, ScanIssue};
use crate::links::LinkIndex;
use crate::snapshot::{encode, BaseFile};
use crate::update::{self, clean_path, Req, UpdateError, UpdateStats};
use crate::watch::fanotify::{Batch, Watcher};
use crate::watch::HandleMap;
use crate::{BuildOptions, BuildReport, Snapshot};

/// Options of a [`SnapshotStore`].
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Do not descend into other file systems below the root (like `rsync -x`).
    /// Default: true.
    pub one_file_system: bool,
    /// Set up a fanotify watcher in `open_or_build` (needs `CAP_SYS_ADMIN`; if set-up
    /// fails the store works without it and the report says why). Default: true.
    pub watch: bool,
    /// Ask for `FAN_UNLIMITED_QUEUE` (falls back to the default 16384-event queue).
    /// A filesystem-wide mark sees every change on the file system, so a bounded
    /// queue can overflow under unrelated load; an overflow costs a full rescan.
    /// Default: true.
    pub unlimited_queue: bool,
    /// After the first event of a burst, wait this long for more before updating
    /// (coalescing). Default: 10 ms.
    pub debounce: Duration,
    /// Full rescan at this interval (for file systems whose changes fanotify cannot
    /// see, like NFS written from other hosts). Default: none.
    pub rescan_interval: Option<Duration>,
    /// Compact (write the merged view as a new base file) once the overlay holds more
    /// than this many records and more than `compact_percent` of the base's entries.
    /// Default: 65536.
    pub compact_min_records: usize,
    /// See `compact_min_records`. Default: 10.
    pub compact_percent: u32,
    /// Compact a non-empty overlay after this long without changes, so that a restart
    /// finds a recent file. Default: 60 s.
    pub persist_after: Option<Duration>,
    /// Where a full build in `open_or_build` reports how many entries it has scanned so
    /// far (for a progress display). Default: none.
    pub progress: Option<ScanProgress>,
}

/// A counter of entries scanned, shared between a building store and whoever displays
/// progress ([`StoreOptions::progress`]). Two handles are equal when they share the
/// counter.
#[derive(Debug, Clone, Default)]
pub struct ScanProgress(Arc<std::sync::atomic::AtomicU64>);

impl ScanProgress {
    /// A new counter at 0.
    pub fn new() -> ScanProgress {
        ScanProgress::default()
    }

    /// Entries scanned so far (0 until a build starts).
    pub fn entries(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl PartialEq for ScanProgress {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What a publication re-read: the hints of [`PublishEvent::touched`]. Paths are
/// module-relative (`b""` is the root).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Touched {
    /// One directory's listing and attributes, and its children's attributes.
    Dir(Vec<u8>),
    /// A whole subtree.
    Subtree(Vec<u8>),
    /// One entry's attributes.
    Entry {
        /// The directory.
        dir: Vec<u8>,
        /// The entry's name in it.
        name: Vec<u8>,
    },
}

impl From<&Req> for Touched {
    fn from(r: &Req) -> Touched {
        match r {
            Req::Dir(p) => Touched::Dir(p.clone()),
            Req::Subtree(p) => Touched::Subtree(p.clone()),
            Req::Entry(d, n) => Touched::Entry {
                dir: d.clone(),
                name: n.clone(),
            },
        }
    }
}

/// One publication, as observers see it (see [`SnapshotStore::observe`]).
#[derive(Debug, Clone)]
pub struct PublishEvent {
    /// What produced it.
    pub kind: RefreshKind,
    /// The generation published (also `current.number()`).
    pub generation: u64,
    /// The generation published.
    pub current: Arc<Generation>,
    /// Where the differences from the previously published generation can be:
    /// `None` when anywhere (a full rescan), else the places re-read (a superset of
    /// what changed; empty for a compaction, which changes no content).
    pub touched: Option<Vec<Touched>>,
    /// When the watcher read the first file-system event of the batch that led to
    /// this publication (`None` when it came from a rescan or an explicit refresh).
    pub event_seen: Option<Instant>,
}

/// A publication observer (see [`SnapshotStore::observe`]).
pub type PublishObserver = Box<dyn Fn(&PublishEvent) + Send + Sync>;

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            one_file_system: true,
            watch: true,
            unlimited_queue: true,
            debounce: Duration::from_millis(10),
            rescan_interval: None,
            compact_min_records: 65_536,
            compact_percent: 10,
            persist_after: Some(Duration::from_secs(60)),
            progress: None,
        }
    }
}

/// One published, immutable state of a module tree. Sessions hold an
/// `Arc<Generation>` for their whole life and read it as a [`Snapshot`] (it derefs to
/// one).
pub struct Generation {
    number: u64,
    snap: Snapshot,
    published: Instant,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("number", &self.number)
            .field("snapshot", &self.snap)
            .finish()
    }
}

impl Deref for Generation {
    type Target = Snapshot;
    fn deref(&self) -> &Snapshot {
        &self.snap
    }
}

impl Generation {
    /// The generation number (increases with every publication of this store).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The view (same as `&*generation`).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// When it was published.
    pub fn published_at(&self) -> Instant {
        self.published
    }

    /// The base snapshot file this generation reads (None for in-memory images).
    pub fn base_path(&self) -> Option<&Path> {
        self.snap.base.path()
    }
}

/// Where the served snapshot came from at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenSource {
    /// A valid snapshot file from the state directory (a background rescan reconciles
    /// it with the tree once [`SnapshotStore::start_background`] runs).
    Opened,
    /// Built by a full scan (no valid file was found).
    Built,
}

/// State of the fanotify watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchStatus {
    /// Not requested.
    Disabled,
    /// fanotify is set up.
    Active,
    /// Set-up failed (the reason); the store relies on rescans and explicit refreshes.
    Unavailable(String),
}

/// What [`SnapshotStore::open_or_build`] did.
#[derive(Debug)]
pub struct OpenReport {
    /// Opened from disk or built.
    pub source: OpenSource,
    /// The base file now served.
    pub path: PathBuf,
    /// Its generation.
    pub generation: u64,
    /// Entries served.
    pub entries: u64,
    /// Snapshot files found but not served, with the reason (corrupt, truncated,
    /// foreign version, another root). They are removed.
    pub rejected: Vec<(PathBuf, String)>,
    /// Files removed: rejected files, older generations, temporary files of a writer
    /// that died.
    pub removed: Vec<PathBuf>,
    /// The scan report when the snapshot was built.
    pub build: Option<BuildReport>,
    /// The watcher's state.
    pub watch: WatchStatus,
    /// Time from call to a servable generation.
    pub elapsed: Duration,
}

/// Kind of work a refresh turned into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshKind {
    /// Re-read the named directories into the overlay.
    Incremental,
    /// Scanned the whole tree into a new base file.
    FullRescan,
    /// Wrote the merged view into a new base file.
    Compaction,
}

/// What a refresh, rescan or compaction did.
#[derive(Debug, Clone)]
pub struct RefreshReport {
    /// The kind of work done.
    pub kind: RefreshKind,
    /// The generation published, or `None` when nothing had changed.
    pub published: Option<u64>,
    /// Directories read.
    pub dirs_listed: u64,
    /// Single entries re-examined.
    pub entries_statted: u64,
    /// Entries added (with subtrees), removed (with subtrees), changed in place.
    pub added: u64,
    /// See `added`.
    pub removed: u64,
    /// See `added`.
    pub changed: u64,
    /// Non-fatal problems met.
    pub issues: Vec<ScanIssue>,
    /// Wall time.
    pub elapsed: Duration,
}

impl RefreshReport {
    fn new(kind: RefreshKind) -> RefreshReport {
        RefreshReport {
            kind,
            published: None,
            dirs_listed: 0,
            entries_statted: 0,
            added: 0,
            removed: 0,
            changed: 0,
            issues: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn add(&mut self, s: UpdateStats) {
        self.dirs_listed += s.dirs_listed;
        self.entries_statted += s.entries_statted;
        self.added += s.added;
        self.removed += s.removed;
        self.changed += s.changed;
        self.issues.extend(s.issues);
    }
}

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Scanning or writing a snapshot failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A freshly written snapshot did not validate (a bug or a failing disk).
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The state directory could not be used.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path concerned.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Another store (another process) holds the lock of this module's state.
    #[error("{}: in use by another process", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The store name is not usable as a file name.
    #[error("invalid store name {0:?}")]
    InvalidName(String),
    /// A refresh path is not a clean module-relative path (`..`, NUL).
    #[error("invalid module path {:?}", String::from_utf8_lossy(.0))]
    InvalidPath(Vec<u8>),
    /// The module root was replaced or vanished and the rescan failed.
    #[error("module root changed: {0}")]
    RootChanged(String),
}

enum Maint {
    Rescan,
    Compact,
    Stop,
}

struct UpdState {
    next_gen: u64,
    handles: HandleMap,
    links: LinkIndex,
    /// Requests applied while a heavy operation runs (replayed on its result).
    since: Option<Vec<Req>>,
    /// Events with unknown handles met while a heavy operation runs.
    pending_unknown: Vec<crate::watch::fanotify::WatchEvent>,
    /// The served base is not known to match the tree (opened from disk).
    needs_reconcile: bool,
    last_change: Instant,
    /// When the watcher read the events now being applied (see
    /// [`PublishEvent::event_seen`]).
    event_seen: Option<Instant>,
}

struct Inner {
    root: PathBuf,
    state_dir: PathBuf,
    name: String,
    opts: StoreOptions,
    current: ArcSwap<Generation>,
    upd: Mutex<UpdState>,
    heavy: Mutex<()>,
    watcher: Mutex<Option<Watcher>>,
    maint: Mutex<Option<mpsc::Sender<Maint>>>,
    /// Called on every publication, under the update lock (see `observe`).
    observers: Mutex<Vec<PublishObserver>>,
    _lock: File,
}

/// The live snapshot of one module. Cheap to clone (shared state).
#[derive(Clone)]
pub struct SnapshotStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SnapshotStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStore")
            .field("name", &self.inner.name)
            .field("root", &self.inner.root)
            .field("current", &self.current().number())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves consistent data (published state is
    // immutable and swapped atomically), so poisoning is not fatal.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `<name>.g<generation, 20 digits>.snap`
fn base_file_name(name: &str, generation: u64) -> String {
    format!("{name}.g{generation:020}.snap")
}

fn parse_base_file_name(name: &str, file: &str) -> Option<u64> {
    let rest = file.strip_prefix(name)?.strip_prefix(".g")?;
    let digits = rest.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_temp_of(name: &str, file: &str) -> bool {
    file.strip_prefix('.')
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix(".g"))
        .is_some_and(|f| f.contains(".snap.tmp."))
}

impl SnapshotStore {
    /// [`open_or_build_with`](Self::open_or_build_with) with default options.
    pub fn open_or_build(
        root: &Path,
        state_dir: &Path,
        name: &str,
    ) -> Result<(SnapshotStore, OpenReport), StoreError> {
        Self::open_or_build_with(root, state_dir, name, StoreOptions::default())
    }

    /// Opens the store of module `name` (tree at `root`, files in `state_dir`): sets up
    /// the fanotify watcher first (if asked), so no change after this call is missed;
    /// then serves the newest valid snapshot file at once if there is one for this root
    /// (corrupt, truncated, foreign-version or other-root files are rejected and
    /// removed, never served), or builds one by a full scan.
    ///
    /// Takes an exclusive lock (`<name>.lock`) on the module's state for the life of the
    /// store.
    pub fn open_or_build_with(
        root: &Path,
        state_dir: &Path,
        name: &str,
        opts: StoreOptions,
    ) -> Result<(SnapshotStore, OpenReport), StoreError> {
        let t0 = Instant::now();
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\0']) {
            return Err(StoreError::InvalidName(name.to_string()));
        }
        fs::create_dir_all(state_dir).map_err(io_err(state_dir))?;
        let lock_path = state_dir.join(format!("{name}.lock"));
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match rustix::fs::flock(
            &lock_file,
            rustix::fs::FlockOperation::NonBlockingLockExclusive,
        ) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(StoreError::Locked { path: lock_path })
            }
            Err(e) => return Err(io_err(&lock_path)(e.into())),
        }

        // The watcher goes first: every change from now on produces an event.
        let (watcher, watch) = if opts.watch {
            match Watcher::new(root, opts.unlimited_queue) {
                Ok(w) => (Some(w), WatchStatus::Active),
                Err(e) => (None, WatchStatus::Unavailable(e.to_string())),
            }
        } else {
            (None, WatchStatus::Disabled)
        };

        let root_st = rustix::fs::stat(root).map_err(|e| ScanError::Root {
            path: root.to_path_buf(),
            source: e.into(),
        })?;
        let root_id = (root_st.st_dev, root_st.st_ino);

        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        let mut removed = Vec::new();
        let mut rejected = Vec::new();
        for ent in fs::read_dir(state_dir).map_err(io_err(state_dir))? {
            let ent = ent.map_err(io_err(state_dir))?;
            let fname = ent.file_name();
            let Some(f) = fname.to_str() else { continue };
            if let Some(g) = parse_base_file_name(name, f) {
                found.push((g, ent.path()));
            } else if is_temp_of(name, f) {
                // A writer of this store died mid-write (we hold the lock).
                if fs::remove_file(ent.path()).is_ok() {
                    removed.push(ent.path());
                }
            }
        }
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        let max_gen = found.first().map(|f| f.0).unwrap_or(0);

        let mut chosen: Option<(u64, BaseFile)> = None;
        for (g, path) in &found {
            if chosen.is_some() {
                // Older generation left by a kill: never served again.
                if fs::remove_file(path).is_ok() {
                    removed.push(path.clone());
                }
                continue;
            }
            match BaseFile::open(path) {
                Ok(b) => {
                    let h = b.header();
                    if (h.root_dev, h.root_ino) != (root_id.0 as u64, root_id.1 as u64) {
                        rejected.push((path.clone(), "snapshot of another module root".into()));
                        drop(b);
                        if fs::remove_file(path).is_ok() {
                            removed.push(path.clone());
                        }
                    } else {
                        chosen = Some((*g, b));
                    }
                }
                Err(e) => {
                    rejected.push((path.clone(), e.to_string()));
                    if fs::remove_file(path).is_ok() {
                        removed.push(path.clone());
                    }
                }
            }
        }

        let mut handles = HandleMap::default();
        let (source, generation, base, build) = match chosen {
            Some((g, b)) => (OpenSource::Opened, g, b, None),
            None => {
                let g = max_gen + 1;
                let bopts = BuildOptions {
                    one_file_system: opts.one_file_system,
                    generation: g,
                };
                let (model, report) = crate::scan::scan_visit_progress(
                    root,
                    &bopts,
                    &|_| None,
                    &mut |p, fd| handles.register(p, fd),
                    opts.progress.as_ref().map(|p| &*p.0),
                )?;
                handles.complete = handles.failures == 0;
                let path = state_dir.join(base_file_name(name, g));
                let (header, archive) = encode(&model)?;
                drop(model);
                crate::write::write_atomic(&path, &[&header.to_bytes(), archive.as_slice()])?;
                drop(archive);
                (OpenSource::Built, g, BaseFile::open(&path)?, Some(report))
            }
        };
        let path = base.path().map(Path::to_path_buf).unwrap_or_default();
        let snap = Snapshot::from_base(Arc::new(base));
        let entries = snap.len() as u64;
        let links = LinkIndex::build(&snap);
        let gen = Generation {
            number: generation,
            snap,
            published: Instant::now(),
        };
        let inner = Inner {
            root: root.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            name: name.to_string(),
            opts,
            current: ArcSwap::from_pointee(gen),
            upd: Mutex::new(UpdState {
                next_gen: generation + 1,
                handles,
                links,
                since: None,
                pending_unknown: Vec::new(),
                needs_reconcile: source == OpenSource::Opened,
                last_change: Instant::now(),
                event_seen: None,
            }),
            heavy: Mutex::new(()),
            watcher: Mutex::new(watcher),
            maint: Mutex::new(None),
            observers: Mutex::new(Vec::new()),
            _lock: lock_file,
        };
        let report = OpenReport {
            source,
            path,
            generation,
            entries,
            rejected,
            removed,
            build,
            watch,
            elapsed: t0.elapsed(),
        };
        Ok((
            SnapshotStore {
                inner: Arc::new(inner),
            },
            report,
        ))
    }

    /// The generation to serve now. Sessions keep the `Arc` for their whole life.
    pub fn current(&self) -> Arc<Generation> {
        self.inner.current.load_full()
    }

    /// The module root this store serves.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The store (module) name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Calls `f` with every generation published from now on, in order, and returns
    /// the generation current at registration (the one the first event's differences
    /// are relative to). `f` runs on the publishing thread while the store's update
    /// lock is held: it must be quick (count, or hand the event to a thread of its
    /// own) and must not call back into this store's refresh, rescan or compaction
    /// (`current()` is fine). Observers stay registered for the life of the store.
    pub fn observe(&self, f: PublishObserver) -> Arc<Generation> {
        let _upd = lock(&self.inner.upd);
        lock(&self.inner.observers).push(f);
        self.current()
    }

    /// Re-reads the listed directories (module-relative; one level each: the
    /// directory's own attributes and its children's) and publishes the result as a
    /// new generation if anything changed. A directory the tree no longer has (or has
    /// replaced) makes its parent be re-read; a directory that is new is read with its
    /// whole subtree. Cost grows with the size of the directories named, not the tree.
    pub fn refresh(&self, dirs: &[&[u8]]) -> Result<RefreshReport, StoreError> {
        let mut reqs = Vec::with_capacity(dirs.len());
        for d in dirs {
            reqs.push(Req::Dir(
                clean_path(d).ok_or_else(|| StoreError::InvalidPath(d.to_vec()))?,
            ));
        }
        self.apply_or_rescan(reqs)
    }

    /// Re-reads the whole subtree at `path` (module-relative); `b""` is a full rescan.
    pub fn refresh_subtree(&self, path: &[u8]) -> Result<RefreshReport, StoreError> {
        let p = clean_path(path).ok_or_else(|| StoreError::InvalidPath(path.to_vec()))?;
        if p.is_empty() {
            return self.rescan();
        }
        self.apply_or_rescan(vec![Req::Subtree(p)])
    }

    /// The explicit refresh entry point (`rsyncd refresh MODULE [PATH]`): the whole
    /// module (a full rescan) or one subtree.
    pub fn refresh_path(&self, path: Option<&[u8]>) -> Result<RefreshReport, StoreError> {
        match path {
            None => self.rescan(),
            Some(p) => self.refresh_subtree(p),
        }
    }

    fn apply_or_rescan(&self, reqs: Vec<Req>) -> Result<RefreshReport, StoreError> {
        let t0 = Instant::now();
        let r = {
            let mut st = lock(&self.inner.upd);
            self.apply_locked(&mut st, reqs)
        };
        match r {
            Ok(mut rep) => {
                rep.elapsed = t0.elapsed();
                self.maybe_compact();
                Ok(rep)
            }
            Err(UpdateError::NeedFullRescan(_)) => self.rescan(),
            Err(UpdateError::Scan(e)) => Err(e.into()),
            Err(UpdateError::TooLarge) => {
                // Indices of this base are exhausted: fold the overlay into a new base.
                self.compact()
            }
        }
    }

    /// Applies `reqs` to the current generation and publishes the result if anything
    /// changed. Caller holds the update lock.
    fn apply_locked(
        &self,
        st: &mut UpdState,
        reqs: Vec<Req>,
    ) -> Result<RefreshReport, UpdateError> {
        let mut rep = RefreshReport::new(RefreshKind::Incremental);
        if reqs.is_empty() {
            return Ok(rep);
        }
        let cur = self.current();
        let opts = BuildOptions {
            one_file_system: self.inner.opts.one_file_system,
            generation: st.next_gen,
        };
        let UpdState { handles, links, .. } = &mut *st;
        let (view, stats) = update::apply(
            &cur,
            &reqs,
            &self.inner.root,
            &opts,
            &mut |p, fd| handles.register(p, fd),
            links,
        )?;
        let changed = stats.added + stats.removed + stats.changed > 0;
        rep.add(stats);
        let touched = changed.then(|| reqs.iter().map(Touched::from).collect());
        if let Some(since) = st.since.as_mut() {
            since.extend(reqs);
        }
        if let Some(touched) = touched {
            rep.published = Some(self.publish(st, view, RefreshKind::Incremental, Some(touched)));
        }
        Ok(rep)
    }

    fn publish(
        &self,
        st: &mut UpdState,
        mut view: Snapshot,
        kind: RefreshKind,
        touched: Option<Vec<Touched>>,
    ) -> u64 {
        let number = st.next_gen;
        st.next_gen += 1;
        st.last_change = Instant::now();
        view.generation = number;
        let gen = Arc::new(Generation {
            number,
            snap: view,
            published: Instant::now(),
        });
        self.inner.current.store(Arc::clone(&gen));
        let observers = lock(&self.inner.observers);
        if !observers.is_empty() {
            let ev = PublishEvent {
                kind,
                generation: number,
                current: gen,
                touched,
                event_seen: st.event_seen,
            };
            for f in observers.iter() {
                f(&ev);
            }
        }
        number
    }

    fn compact_threshold(&self, base_len: usize) -> usize {
        let o = &self.inner.opts;
        o.compact_min_records
            .max(base_len / 100 * o.compact_percent as usize)
    }

    fn maybe_compact(&self) {
        let cur = self.current();
        if cur.overlay_len() > self.compact_threshold(cur.base.len() as usize) {
            if let Some(tx) = lock(&self.inner.maint).as_ref() {
                let _ = tx.send(Maint::Compact);
            }
        }
    }

    /// Full rescan: scans the whole tree into memory, compares it with the current
    /// view and, if anything differs, writes it as a new base file and publishes it
    /// (requests applied meanwhile are replayed on it). Also rebuilds the directory
    /// handle map. Cost: one walk of the tree (plus one write if it changed).
    pub fn rescan(&self) -> Result<RefreshReport, StoreError> {
        self.heavy(RefreshKind::FullRescan)
    }

    /// Writes the current merged view (base + overlay) as a new base file and
    /// publishes it, so reads return to plain-file speed and a restart finds the
    /// current state. Runs off the update path; updates go on meanwhile.
    pub fn compact(&self) -> Result<RefreshReport, StoreError> {
        self.heavy(RefreshKind::Compaction)
    }

    /// Compacts if the overlay is not empty (call at shutdown to persist the state).
    pub fn persist(&self) -> Result<Option<RefreshReport>, StoreError> {
        if self.current().overlay_len() == 0 {
            return Ok(None);
        }
        self.compact().map(Some)
    }

    fn heavy(&self, kind: RefreshKind) -> Result<RefreshReport, StoreError> {
        let t0 = Instant::now();
        let _heavy = lock(&self.inner.heavy);
        let (cur, base_gen) = {
            let mut st = lock(&self.inner.upd);
            st.since = Some(Vec::new());
            let g = st.next_gen;
            st.next_gen += 1;
            (self.current(), g)
        };
        let r = self.heavy_inner(kind, cur, base_gen, t0);
        if r.is_err() {
            let mut st = lock(&self.inner.upd);
            st.since = None;
            st.pending_unknown.clear();
        }
        r
    }

    fn heavy_inner(
        &self,
        kind: RefreshKind,
        cur: Arc<Generation>,
        base_gen: u64,
        t0: Instant,
    ) -> Result<RefreshReport, StoreError> {
        let inner = &self.inner;
        let mut rep = RefreshReport::new(kind);
        let mut new_handles: Option<HandleMap> = None;
        let bopts = BuildOptions {
            one_file_system: inner.opts.one_file_system,
            generation: base_gen,
        };
        let model = match kind {
            RefreshKind::FullRescan => {
                let mut h = HandleMap::default();
                let (model, report) =
                    crate::scan::scan_visit(&inner.root, &bopts, &|_| None, &mut |p, fd| {
                        h.register(p, fd)
                    })?;
                h.complete = h.failures == 0;
                rep.dirs_listed = report.dirs;
                rep.issues = report.errors;
                new_handles = Some(h);
                model
            }
            _ => crate::compact::compact(&cur, base_gen)?,
        };
        let (header, archive) = encode(&model)?;
        drop(model);
        if kind == RefreshKind::FullRescan {
            // Publish only if the tree differs from what is served.
            let mut image = Vec::with_capacity(64 + archive.len());
            image.extend_from_slice(&header.to_bytes());
            image.extend_from_slice(archive.as_slice());
            let fresh = Snapshot::from_bytes(image)?;
            if fresh.root_dev() == cur.root_dev()
                && fresh.root_ino() == cur.root_ino()
                && cur.first_difference(&fresh).is_none()
            {
                drop(fresh);
                let pending = {
                    let mut st = lock(&inner.upd);
                    if let Some(h) = new_handles.take() {
                        st.handles = h;
                    }
                    st.since = None;
                    st.needs_reconcile = false;
                    std::mem::take(&mut st.pending_unknown)
                };
                self.handle_events(pending, false);
                rep.elapsed = t0.elapsed();
                return Ok(rep);
            }
        }
        let path = inner.state_dir.join(base_file_name(&inner.name, base_gen));
        crate::write::write_atomic(&path, &[&header.to_bytes(), archive.as_slice()])?;
        drop(archive);
        let base = match BaseFile::open(&path) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(e.into());
            }
        };
        let fresh_view = Snapshot::from_base(base);
        let links = LinkIndex::build(&fresh_view);
        let pending = {
            let mut st = lock(&inner.upd);
            let replay = st.since.take().unwrap_or_default();
            if let Some(h) = new_handles.take() {
                st.handles = h;
            }
            st.links = links;
            st.needs_reconcile &= kind != RefreshKind::FullRescan;
            let mut view = fresh_view;
            if !replay.is_empty() {
                let opts = BuildOptions {
                    one_file_system: inner.opts.one_file_system,
                    generation: st.next_gen,
                };
                let UpdState { handles, links, .. } = &mut *st;
                match update::apply(
                    &view,
                    &replay,
                    &inner.root,
                    &opts,
                    &mut |p, fd| handles.register(p, fd),
                    links,
                ) {
                    Ok((v, stats)) => {
                        view = v;
                        rep.add(stats);
                    }
                    Err(_) => {
                        // The root changed under us: publish the scan and rescan again.
                        if let Some(tx) = lock(&inner.maint).as_ref() {
                            let _ = tx.send(Maint::Rescan);
                        }
                    }
                }
            }
            let old_base = Arc::clone(&cur.base);
            // A compaction writes what is already published (the requests replayed
            // were published as they were applied); a rescan may differ anywhere.
            let touched = (kind != RefreshKind::FullRescan).then(Vec::new);
            rep.published = Some(self.publish(&mut st, view, kind, touched));
            if !Arc::ptr_eq(&old_base, &self.current().base) {
                old_base.retire();
            }
            std::mem::take(&mut st.pending_unknown)
        };
        drop(cur);
        self.handle_events(pending, false);
        rep.elapsed = t0.elapsed();
        Ok(rep)
    }

    /// Turns watcher events into requests (two passes: events in directories that the
    /// first pass grafts resolve in the second) and applies them. Events whose
    /// directory handle is still unknown belong to directories outside the module when
    /// the handle map is complete; otherwise they cost a full rescan.
    fn handle_events(&self, events: Vec<crate::watch::fanotify::WatchEvent>, overflow: bool) {
        self.handle_events_seen(events, overflow, None)
    }

    /// [`handle_events`](Self::handle_events) for events the watcher read at `seen`.
    fn handle_events_seen(
        &self,
        events: Vec<crate::watch::fanotify::WatchEvent>,
        overflow: bool,
        seen: Option<Instant>,
    ) {
        if overflow {
            self.request_rescan();
        }
        if events.is_empty() {
            return;
        }
        let mut need_rescan = false;
        let mut failed = false;
        {
            let mut st = lock(&self.inner.upd);
            st.event_seen = seen;
            let mut pending = events;
            for pass in 0..2 {
                let mut reqs = Vec::new();
                let mut unknown = Vec::new();
                let mut resolved: Vec<(Box<[u8]>, Vec<u8>)> = Vec::new();
                for ev in pending {
                    match st.handles.get(&ev.dir) {
                        Some(path) => {
                            let path = path.to_vec();
                            reqs.push(classify(&ev, &path));
                            resolved.push((ev.dir.clone(), path));
                        }
                        None => unknown.push(ev),
                    }
                }
                reqs.sort();
                reqs.dedup();
                match self.apply_locked(&mut st, reqs) {
                    Ok(_) => {}
                    Err(UpdateError::NeedFullRescan(_)) | Err(UpdateError::TooLarge) => {
                        need_rescan = true
                    }
                    Err(UpdateError::Scan(_)) => failed = true,
                }
                // Handles of directories that left the module: forget them.
                let cur = self.current();
                for (key, path) in resolved {
                    #[allow(clippy::unnecessary_map_or)] // is_none_or needs Rust 1.82
                    if cur.lookup(&path).map_or(true, |e| !e.is_dir()) {
                        st.handles.remove(&key);
                    }
                }
                pending = unknown;
                if pending.is_empty() || pass == 1 {
                    break;
                }
            }
            if !pending.is_empty() && !st.handles.complete {
                if st.since.is_some() {
                    st.pending_unknown.extend(pending);
                } else {
                    need_rescan = true;
                }
            }
            st.event_seen = None;
        }
        if need_rescan || failed {
            self.request_rescan();
        }
        self.maybe_compact();
    }

    fn request_rescan(&self) {
        // Clone the sender first: the rescan below must not run under the `maint` lock.
        let tx = lock(&self.inner.maint).clone();
        match tx {
            Some(tx) => {
                let _ = tx.send(Maint::Rescan);
            }
            None => {
                // No background thread: do it now.
                let _ = self.rescan();
            }
        }
    }

    /// Starts the background work: the fanotify watcher thread (if the watcher was set
    /// up) and the maintenance thread (full rescans on overflow / unknown events / the
    /// configured interval / reconciliation of a snapshot opened from disk, and
    /// compaction). Stopped when the returned handle is dropped.
    pub fn start_background(&self) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<Maint>();
        *lock(&self.inner.maint) = Some(tx.clone());
        let mut threads = Vec::new();

        let store = self.clone();
        let name = format!("flc-maint-{}", self.inner.name);
        let maint = std::thread::Builder::new()
            .name(name)
            .spawn(move || store.maintenance(rx));
        if let Ok(h) = maint {
            threads.push(h);
        }
        if lock(&self.inner.upd).needs_reconcile {
            let _ = tx.send(Maint::Rescan);
        }
        if let Some(w) = lock(&self.inner.watcher).take() {
            let store = self.clone();
            let stop2 = Arc::clone(&stop);
            let name = format!("flc-watch-{}", self.inner.name);
            if let Ok(h) = std::thread::Builder::new()
                .name(name)
                .spawn(move || store.watch_loop(w, stop2))
            {
                threads.push(h);
            }
        }
        Background {
            stop,
            tx: Some(tx),
            threads,
            store: self.clone(),
        }
    }

    fn watch_loop(&self, mut w: Watcher, stop: Arc<AtomicBool>) {
        let debounce = self.inner.opts.debounce;
        while !stop.load(Ordering::Acquire) {
            let mut batch = Batch::default();
            if w.wait(Duration::from_millis(200), &mut batch).is_err() {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            if batch.events.is_empty() && !batch.overflow && !batch.malformed {
                continue;
            }
            let seen = Instant::now();
            if !debounce.is_zero() {
                std::thread::sleep(debounce);
                let _ = w.drain(&mut batch);
            }
            let lost = batch.overflow || batch.malformed;
            self.handle_events_seen(batch.events, lost, Some(seen));
        }
        // Hand the watcher back so a later start_background can reuse it.
        *lock(&self.inner.watcher) = Some(w);
    }

    fn maintenance(&self, rx: mpsc::Receiver<Maint>) {
        let opts = self.inner.opts.clone();
        let mut next_rescan = opts.rescan_interval.map(|i| Instant::now() + i);
        // Failures are logged when they start, when they change and then at
        // most once a minute (a full disk fails every compaction attempt).
        let mut last_failure: Option<(String, Instant)> = None;
        let mut report = |what: &str, r: Result<(), String>| match r {
            Ok(()) => {
                if last_failure.take().is_some() {
                    tracing::info!(store = %self.name(), "background {what} succeeded again");
                }
            }
            Err(e) => {
                let text = format!("{what}: {e}");
                let due = match &last_failure {
                    Some((prev, at)) => *prev != text || at.elapsed() >= Duration::from_secs(60),
                    None => true,
                };
                if due {
                    tracing::warn!(store = %self.name(), "background {text}; the last good snapshot stays in service");
                    last_failure = Some((text, Instant::now()));
                }
            }
        };
        loop {
            let now = Instant::now();
            let mut wait = Duration::from_secs(1);
            if let Some(t) = next_rescan {
                wait = wait.min(t.saturating_duration_since(now));
            }
            let msg = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let (mut rescan, mut compact) = (false, false);
            match msg {
                Some(Maint::Stop) => return,
                Some(Maint::Rescan) => rescan = true,
                Some(Maint::Compact) => compact = true,
                None => {}
            }
            // Coalesce whatever else is queued.
            while let Ok(m) = rx.try_recv() {
                match m {
                    Maint::Stop => return,
                    Maint::Rescan => rescan = true,
                    Maint::Compact => compact = true,
                }
            }
            if next_rescan.is_some_and(|t| Instant::now() >= t) {
                rescan = true;
            }
            if rescan {
                report("rescan failed", self.rescan().map(drop).map_err(|e| e.to_string()));
                next_rescan = opts.rescan_interval.map(|i| Instant::now() + i);
                continue;
            }
            let cur = self.current();
            let ov = cur.overlay_len();
            let base_len = cur.base.len() as usize;
            drop(cur);
            if compact && ov > self.compact_threshold(base_len) {
                report("compaction failed", self.compact().map(drop).map_err(|e| e.to_string()));
                continue;
            }
            if let Some(after) = opts.persist_after {
                let quiet = lock(&self.inner.upd).last_change.elapsed();
                if ov > 0 && quiet >= after {
                    report("compaction failed", self.compact().map(drop).map_err(|e| e.to_string()));
                }
            }
        }
    }

    /// Number of directories in the handle map and whether it is complete (tests and
    /// diagnostics).
    pub fn watched_dirs(&self) -> (usize, bool) {
        let st = lock(&self.inner.upd);
        (st.handles.len(), st.handles.complete)
    }
}

/// Classifies one event into a request for the directory it names.
fn classify(ev: &crate::watch::fanotify::WatchEvent, dir: &[u8]) -> Req {
    let entry_ops = libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO;
    if ev.mask & entry_ops != 0
        || ev.mask & libc::FAN_ONDIR != 0
        || ev.name.is_empty()
        || ev.name == b"."
        || ev.name.contains(&b'/')
    {
        Req::Dir(dir.to_vec())
    } else {
        // MODIFY / ATTRIB of a non-directory: re-examine that one entry.
        Req::Entry(dir.to_vec(), ev.name.clone())
    }
}

/// Background threads of a store; dropping it stops and joins them.
pub struct Background {
    stop: Arc<AtomicBool>,
    tx: Option<mpsc::Sender<Maint>>,
    threads: Vec<JoinHandle<()>>,
    store: SnapshotStore,
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Maint::Stop);
        }
        *lock(&self.store.inner.maint) = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The stores of all modules, by module name: the daemon's explicit refresh entry point.
#[derive(Debug, Default, Clone)]
pub struct Stores {
    map: BTreeMap<String, SnapshotStore>,
}

impl Stores {
    /// No modules.
    pub fn new() -> Stores {
        Stores::default()
    }

    /// Adds (or replaces) a module's store.
    pub fn insert(&mut self, module: &str, store: SnapshotStore) {
        self.map.insert(module.to_string(), store);
    }

    /// The store of `module`.
    pub fn get(&self, module: &str) -> Option<&SnapshotStore> {
        self.map.get(module)
    }

    /// `refresh(module, optional subpath)`: a full rescan of the module, or a rescan of
    /// one subtree. `None` if there is no such module.
    pub fn refresh(
        &self,
        module: &str,
        subpath: Option<&[u8]>,
    ) -> Option<Result<RefreshReport, StoreError>> {
        self.map.get(module).map(|s| s.refresh_path(subpath))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_temp_files_are_recognised() {
        let f = base_file_name("mod", 42);
        assert_eq!(f, "mod.g00000000000000000042.snap");
        assert_eq!(parse_base_file_name("mod", &f), Some(42));
        assert_eq!(parse_base_file_name("mo", &f), None);
        assert_eq!(parse_base_file_name("mod", "mod.g42.snap"), None);
        assert!(is_temp_of("mod", &format!(".{f}.tmp.123.0")));
        assert!(!is_temp_of("mod", &f));
        assert!(!is_temp_of("other", &format!(".{f}.tmp.123.0")));
    }

    #[test]
    fn overflow_and_unknown_handles_force_a_rescan_known_handles_refresh() {
        use crate::watch::fanotify::{dir_handle, WatchEvent};
        use crate::watch::handle_key;
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("root");
        fs::create_dir_all(root.join("sub")).expect("mkdir");
        let opts = StoreOptions {
            watch: false,
            ..StoreOptions::default()
        };
        let (store, _) =
            SnapshotStore::open_or_build_with(&root, &t.path().join("state"), "m", opts)
                .expect("store");
        assert!(
            store.watched_dirs().1,
            "fresh build registers every directory"
        );
        let visible = |p: &[u8]| store.current().lookup(p).is_some();

        // Overflow: lost events, so the whole module is rescanned.
        fs::write(root.join("a"), b"a").expect("write");
        store.handle_events(Vec::new(), true);
        assert!(visible(b"a"));

        let bogus = WatchEvent {
            mask: libc::FAN_CREATE,
            dir: handle_key(1, b"no-such-handle"),
            name: b"x".to_vec(),
        };
        // Unknown handle with a complete map: a directory outside the module; ignored.
        fs::write(root.join("b"), b"b").expect("write");
        let n = store.current().number();
        store.handle_events(vec![bogus.clone()], false);
        assert_eq!(store.current().number(), n);
        assert!(!visible(b"b"));
        // Unknown handle with an incomplete map: cannot tell, so rescan.
        lock(&store.inner.upd).handles.complete = false;
        store.handle_events(vec![bogus], false);
        assert!(visible(b"b"));
        assert!(store.watched_dirs().1, "the rescan rebuilt a complete map");

        // Known handle: just that directory is re-read.
        fs::write(root.join("sub/c"), b"c").expect("write");
        let sub = fs::File::open(root.join("sub")).expect("open");
        let (ht, h) = dir_handle(std::os::fd::AsFd::as_fd(&sub)).expect("handle");
        store.handle_events(
            vec![WatchEvent {
                mask: libc::FAN_CREATE,
                dir: handle_key(ht, &h),
                name: b"c".to_vec(),
            }],
            false,
        );
        assert!(visible(b"sub/c"));
    }

    #[test]
    fn observers_see_each_publication_with_its_hints() {
        let t = tempfile::tempdir().expect("tempdir");
        let root = t.path().join("root");
        fs::create_dir_all(root.join("sub")).expect("mkdir");
        fs::write(root.join("sub/f"), b"1").expect("write");
        let progress = ScanProgress::new();
        let opts = StoreOptions {
            watch: false,
            progress: Some(progress.clone()),
            ..StoreOptions::default()
        };
        let (store, _) =
            SnapshotStore::open_or_build_with(&root, &t.path().join("state"), "m", opts)
                .expect("store");
        assert_eq!(progress.entries(), 3, "root, sub, sub/f");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        let first = store.observe(Box::new(move |e: &PublishEvent| {
            lock(&s2).push((e.kind, e.generation, e.touched.clone(), e.current.number()));
        }));
        assert_eq!(first.number(), store.current().number());
        // Nothing changed: nothing published.
        store.refresh(&[b"sub"]).expect("refresh");
        assert!(lock(&seen).is_empty());
        fs::write(root.join("sub/g"), b"2").expect("write");
        let r = store.refresh(&[b"sub"]).expect("refresh");
        fs::write(root.join("top"), b"3").expect("write");
        store.rescan().expect("rescan");
        store.compact().expect("compact");
        let got = lock(&seen).clone();
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].0, RefreshKind::Incremental);
        assert_eq!(Some(got[0].1), r.published);
        assert_eq!(got[0].2, Some(vec![Touched::Dir(b"sub".to_vec())]));
        assert_eq!(got[1].0, RefreshKind::FullRescan);
        assert_eq!(got[1].2, None);
        assert_eq!(got[2].0, RefreshKind::Compaction);
        assert_eq!(got[2].2, Some(Vec::new()));
        for w in got.windows(2) {
            assert!(w[0].1 < w[1].1, "generations increase");
        }
        assert!(got.iter().all(|g| g.1 == g.3));
    }

    #[test]
    fn classify_events() {
        use crate::watch::fanotify::WatchEvent;
        let ev = |mask, name: &[u8]| WatchEvent {
            mask,
            dir: Box::default(),
            name: name.to_vec(),
        };
        assert_eq!(
            classify(&ev(libc::FAN_CREATE, b"x"), b"d"),
            Req::Dir(b"d".to_vec())
        );
        assert_eq!(
            classify(&ev(libc::FAN_MODIFY, b"x"), b"d"),
            Req::Entry(b"d".to_vec(), b"x".to_vec())
        );
        assert_eq!(
            classify(&ev(libc::FAN_ATTRIB | libc::FAN_ONDIR, b"."), b"d"),
            Req::Dir(b"d".to_vec())
        );
    }
}
