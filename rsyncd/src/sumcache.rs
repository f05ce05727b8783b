//! `checksum cache`: whole-file checksums kept for `-c`, so that a
//! `--checksum` pull costs the server no file reads.
//!
//! A pull with `-c` makes stock's sender read every regular file it lists
//! (`flist.c: make_file()` → `checksum.c: file_checksum()`). With `checksum
//! cache = yes` the daemon keeps, per module store, each regular file's
//! `-c` checksum for the algorithms in [`CACHED_ALGOS`], keyed by `(st_dev,
//! st_ino)` and valid only while the file's `(size, mtime, ctime)` (with
//! nanoseconds) are the ones it was computed for. Any write moves mtime and
//! ctime (and ctime cannot be set back by anyone), so a changed file is never
//! answered from the cache: the list then falls back to reading it, as
//! without the cache.
//!
//! - **Filling.** A background thread per store walks each new generation
//!   (at most every [`REWALK_MIN`]), queues the regular files without a valid
//!   entry and reads them at a bounded rate (`checksum cache rate`, MiB/s),
//!   opening them beneath the module root without following symlinks and
//!   with `O_NOATIME`. A file whose `fstat` changes while it is read is not
//!   stored. Entries of files no longer in the tree are dropped after each
//!   walk.
//! - **Answering.** [`lookup`] compares the snapshot entry's attributes with
//!   the stored ones: equal means the stored checksum is of the content the
//!   snapshot describes. The `-c` file-list checksum has no seed in any
//!   protocol (`checksum.c: file_checksum()`), so one value per algorithm
//!   serves every client.
//! - **Persistence.** The map is written to `<state dir>/<store>.sums`
//!   (temp file, fsync, rename) after each fill pass, at most every
//!   [`PERSIST_EVERY`] while filling, and at SIGTERM/SIGINT; it is read back
//!   at start-up, so a restart does not re-read the tree. A file that does
//!   not validate (length, version, hash) is ignored and rebuilt.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use filelist_cache::{EntryRef, SnapshotStore, WalkControl};
use protocol::checksum::{file_list_checksum_hasher, ChecksumAlgo};

use crate::session::files::ModuleRoot;

/// The algorithms cached: xxh128 (negotiated by 3.2.3+ clients) and md5
/// (protocol 30-31 clients: 3.0.x to 3.2.2, or `--checksum-choice=md5`).
/// Others (md4 for protocol < 30, sha1, xxh64, xxh3) are read from the file.
pub const CACHED_ALGOS: [ChecksumAlgo; 2] = [ChecksumAlgo::Xxh128, ChecksumAlgo::Md5];

/// Default `checksum cache rate`, MiB per second.
pub const DEFAULT_RATE_MIB: u32 = 32;

/// Shortest time between two walks of the tree by the filler.
pub const REWALK_MIN: Duration = Duration::from_secs(10);

/// Longest time between two writes of the cache file while filling.
pub const PERSIST_EVERY: Duration = Duration::from_secs(300);

/// How often the idle filler looks for a new generation.
const POLL: Duration = Duration::from_millis(500);

/// Bytes charged against the rate for opening one file.
const OPEN_COST: u64 = 4096;

/// Read size of the filler.
const CHUNK: usize = 256 * 1024;

/// What must be unchanged for a stored checksum to be valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Stamp {
    size: u64,
    mtime: i64,
    ctime: i64,
    mtime_nsec: u32,
    ctime_nsec: u32,
}

impl Stamp {
    fn of_entry(e: &EntryRef<'_>) -> Stamp {
        Stamp { size: e.size(), mtime: e.mtime(), ctime: e.ctime(), mtime_nsec: e.mtime_nsec(), ctime_nsec: e.ctime_nsec() }
    }

    fn of_meta(m: &std::fs::Metadata) -> (u64, u64, Stamp) {
        use std::os::unix::fs::MetadataExt;
        (
            m.dev(),
            m.ino(),
            Stamp {
                size: m.size(),
                mtime: m.mtime(),
                ctime: m.ctime(),
                mtime_nsec: m.mtime_nsec() as u32,
                ctime_nsec: m.ctime_nsec() as u32,
            },
        )
    }
}

/// One file's checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    stamp: Stamp,
    xxh128: [u8; 16],
    md5: [u8; 16],
}

impl Rec {
    fn sum(&self, algo: ChecksumAlgo) -> Option<&[u8]> {
        match algo {
            ChecksumAlgo::Xxh128 => Some(&self.xxh128),
            ChecksumAlgo::Md5 => Some(&self.md5),
            _ => None,
        }
    }
}

type Map = HashMap<(u64, u64), Rec>;

/// Counters (for logs and tests).
#[derive(Debug, Default)]
pub struct SumStats {
    /// `-c` checksums answered from the cache.
    pub hits: AtomicU64,
    /// `-c` checksums that had to read the file.
    pub misses: AtomicU64,
    /// Files the filler read.
    pub files_hashed: AtomicU64,
    /// Bytes the filler read.
    pub bytes_hashed: AtomicU64,
}

/// The checksum cache of one module store (shared by the modules that
/// serve the same store).
pub struct SumCache {
    file: PathBuf,
    rate: u64,
    map: OnceLock<RwLock<Map>>,
    dirty: AtomicBool,
    persist_lock: Mutex<()>,
    /// Counters.
    pub stats: SumStats,
}

impl std::fmt::Debug for SumCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SumCache").field("file", &self.file).field("rate", &self.rate).finish_non_exhaustive()
    }
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<SumCache>>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Weak<SumCache>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl SumCache {
    /// The cache of store `store_name` in `state_dir`: one per store in the
    /// process (modules sharing a store share it; the first one's rate
    /// wins). `rate_mib` is the filler's read budget in MiB/s (0: none).
    pub fn shared(state_dir: &Path, store_name: &str, rate_mib: u32) -> Arc<SumCache> {
        let file = state_dir.join(format!("{store_name}.sums"));
        let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = reg.get(&file).and_then(Weak::upgrade) {
            return c;
        }
        let c = Arc::new(SumCache::new(file.clone(), rate_mib));
        reg.insert(file, Arc::downgrade(&c));
        c
    }

    /// A cache stored at `file` (not shared; see [`Self::shared`]).
    pub fn new(file: PathBuf, rate_mib: u32) -> SumCache {
        SumCache {
            file,
            rate: u64::from(rate_mib) << 20,
            map: OnceLock::new(),
            dirty: AtomicBool::new(false),
            persist_lock: Mutex::new(()),
            stats: SumStats::default(),
        }
    }

    /// The map, read from the cache file on first use.
    fn map(&self) -> &RwLock<Map> {
        self.map.get_or_init(|| {
            let m = match std::fs::read(&self.file) {
                Ok(b) => match decode(&b) {
                    Ok(m) => {
                        tracing::info!(file = %self.file.display(), entries = m.len(), "checksum cache loaded");
                        m
                    }
                    Err(why) => {
                        tracing::warn!(file = %self.file.display(), "checksum cache file ignored (rebuilt): {why}");
                        Map::new()
                    }
                },
                Err(_) => Map::new(),
            };
            RwLock::new(m)
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map> {
        self.map().read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Map> {
        self.map().write().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of files with checksums.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True when no checksum is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `-c` checksum of `e` under `algo` if it is stored and still valid
    /// for the entry's attributes.
    pub fn get(&self, e: &EntryRef<'_>, algo: ChecksumAlgo) -> Option<Vec<u8>> {
        let algo = list_algo(algo);
        if !CACHED_ALGOS.contains(&algo) || !e.is_file() {
            return None;
        }
        let m = self.read();
        let r = m.get(&(e.dev(), e.ino()))?;
        if r.stamp != Stamp::of_entry(e) {
            return None;
        }
        r.sum(algo).map(<[u8]>::to_vec)
    }

    fn insert(&self, dev: u64, ino: u64, rec: Rec) {
        self.write().insert((dev, ino), rec);
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes the cache file if anything changed since the last write.
    pub fn persist_if_dirty(&self) -> std::io::Result<bool> {
        let _g = self.persist_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let bytes = encode(&self.read());
        let r = write_atomic(&self.file, &bytes);
        if r.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        r.map(|()| true)
    }

    /// Starts the filler for `store` (module root `root`); it stops when the
    /// returned handle is dropped.
    pub fn start(self: &Arc<Self>, store: SnapshotStore, root: &Path, module: &str) -> std::io::Result<Filler> {
        let root = ModuleRoot::open(root)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (cache, stop2, module) = (self.clone(), stop.clone(), module.to_string());
        let thread = std::thread::Builder::new()
            .name(format!("sums-{}", store.name()))
            .spawn(move || cache.fill_loop(&store, &root, &module, &stop2))?;
        Ok(Filler { stop, thread: Some(thread) })
    }

    fn fill_loop(&self, store: &SnapshotStore, root: &ModuleRoot, module: &str, stop: &AtomicBool) {
        let _ = self.map();
        let mut last_gen: Option<u64> = None;
        let mut last_walk: Option<Instant> = None;
        let mut last_persist = Instant::now();
        while !stop.load(Ordering::Acquire) {
            let gen = store.current();
            let due = !matches!(last_walk, Some(t) if t.elapsed() < REWALK_MIN);
            if last_gen == Some(gen.number()) || !due {
                std::thread::sleep(POLL);
                continue;
            }
            last_gen = Some(gen.number());
            last_walk = Some(Instant::now());
            let t0 = Instant::now();
            let todo = self.walk(&gen);
            let (mut files, mut bytes) = (0u64, 0u64);
            let mut limiter = Limiter::new(self.rate);
            let mut buf = vec![0u8; CHUNK];
            let mut complete = true;
            for (path, dev, ino, stamp) in &todo {
                if stop.load(Ordering::Acquire) {
                    complete = false;
                    break;
                }
                // A much newer tree: walk again rather than read what may be gone.
                if store.current().number() != gen.number() && t0.elapsed() >= REWALK_MIN * 6 {
                    complete = false;
                    break;
                }
                if let Some(n) = self.fill_one(root, path, (*dev, *ino, *stamp), &mut limiter, &mut buf) {
                    files += 1;
                    bytes += n;
                }
                if last_persist.elapsed() >= PERSIST_EVERY {
                    self.persist_logged(module);
                    last_persist = Instant::now();
                }
            }
            self.persist_logged(module);
            last_persist = Instant::now();
            tracing::info!(
                module = %module,
                generation = gen.number(),
                queued = todo.len(),
                files,
                bytes,
                cached = self.len(),
                complete,
                elapsed_ms = t0.elapsed().as_millis() as u64,
                "checksum cache pass done"
            );
        }
        self.persist_logged(module);
    }

    fn persist_logged(&self, module: &str) {
        if let Err(e) = self.persist_if_dirty() {
            tracing::warn!(module = %module, file = %self.file.display(), "writing the checksum cache failed: {e}");
        }
    }

    /// The regular files of `snap` without a valid entry (module path, dev,
    /// ino, stamp); drops entries of files the tree no longer has.
    fn walk(&self, snap: &filelist_cache::Snapshot) -> Vec<(Vec<u8>, u64, u64, Stamp)> {
        let mut todo = Vec::new();
        let mut seen: HashSet<(u64, u64)> = HashSet::new();
        {
            let m = self.read();
            snap.walk(snap.root(), &mut |path, e| {
                if e.is_file() {
                    let key = (e.dev(), e.ino());
                    let stamp = Stamp::of_entry(&e);
                    if seen.insert(key) && !matches!(m.get(&key), Some(r) if r.stamp == stamp) {
                        todo.push((path.to_vec(), key.0, key.1, stamp));
                    }
                }
                WalkControl::Continue
            });
        }
        let mut m = self.write();
        let before = m.len();
        m.retain(|k, _| seen.contains(k));
        if m.len() != before {
            self.dirty.store(true, Ordering::Release);
        }
        todo
    }

    /// Reads one file and stores its checksums if it matched `want` and did
    /// not change while read. Returns the bytes read.
    fn fill_one(&self, root: &ModuleRoot, path: &[u8], want: (u64, u64, Stamp), limiter: &mut Limiter, buf: &mut [u8]) -> Option<u64> {
        limiter.take(OPEN_COST);
        let mut f = root.open_file_with(path, true).ok()?;
        let before = Stamp::of_meta(&f.metadata().ok()?);
        if before != want {
            // Changed since the snapshot: the next walk queues it again.
            return None;
        }
        let mut hashers: Vec<_> = CACHED_ALGOS.iter().map(|&a| file_list_checksum_hasher(a)).collect();
        let mut n = 0u64;
        loop {
            match f.read(buf) {
                Ok(0) => break,
                Ok(k) => {
                    for h in &mut hashers {
                        h.update(&buf[..k]);
                    }
                    n += k as u64;
                    limiter.take(k as u64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        self.stats.files_hashed.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_hashed.fetch_add(n, Ordering::Relaxed);
        let after = Stamp::of_meta(&f.metadata().ok()?);
        if after != before || n != before.2.size {
            return Some(n);
        }
        let mut rec = Rec { stamp: before.2, xxh128: [0; 16], md5: [0; 16] };
        for (a, h) in CACHED_ALGOS.iter().zip(hashers) {
            let d = h.finish();
            let slot = match a {
                ChecksumAlgo::Xxh128 => &mut rec.xxh128,
                _ => &mut rec.md5,
            };
            if d.len() == slot.len() {
                slot.copy_from_slice(&d);
            } else {
                return Some(n);
            }
        }
        self.insert(before.0, before.1, rec);
        Some(n)
    }
}

/// The `-c` algorithm as `file_checksum()` computes it: legacy MD4 is plain
/// MD4 there.
fn list_algo(a: ChecksumAlgo) -> ChecksumAlgo {
    match a {
        ChecksumAlgo::Md4Legacy => ChecksumAlgo::Md4,
        a => a,
    }
}

/// The `-c` checksum of `e` from the module's cache (counted as a hit or a
/// miss), or `None` when the module has no cache or it cannot answer.
pub fn lookup(cache: Option<&SumCache>, e: &EntryRef<'_>, algo: ChecksumAlgo) -> Option<Vec<u8>> {
    let c = cache?;
    match c.get(e, algo) {
        Some(s) => {
            c.stats.hits.fetch_add(1, Ordering::Relaxed);
            Some(s)
        }
        None => {
            c.stats.misses.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// The filler thread of one cache; dropping it stops the thread (after the
/// file being read) and writes the cache file.
pub struct Filler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Filler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A read budget of `rate` bytes per second (0: none), from its creation.
struct Limiter {
    rate: u64,
    start: Instant,
    used: u64,
}

impl Limiter {
    fn new(rate: u64) -> Limiter {
        Limiter { rate, start: Instant::now(), used: 0 }
    }

    /// Charges `n` bytes, sleeping until the budget allows them.
    fn take(&mut self, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.used = self.used.saturating_add(n);
        let due = Duration::from_secs_f64(self.used as f64 / self.rate as f64);
        let el = self.start.elapsed();
        if due > el {
            std::thread::sleep(due - el);
        }
    }
}

// ---------------------------------------------------------------------------
// The cache file: header, fixed-size records, xxh3-64 of everything before it.
// ---------------------------------------------------------------------------

const MAGIC: [u8; 8] = *b"RSDSUMS\x1a";
const VERSION: u32 = 1;
/// dev, ino, size, mtime, ctime (8 each), mtime_nsec, ctime_nsec (4 each),
/// xxh128, md5 (16 each).
const REC_LEN: usize = 80;
const HEAD_LEN: usize = 24;

fn encode(m: &Map) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEAD_LEN + m.len() * REC_LEN + 8);
    b.extend_from_slice(&MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&(REC_LEN as u32).to_le_bytes());
    b.extend_from_slice(&(m.len() as u64).to_le_bytes());
    for (&(dev, ino), r) in m {
        for v in [dev, ino, r.stamp.size] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&r.stamp.mtime.to_le_bytes());
        b.extend_from_slice(&r.stamp.ctime.to_le_bytes());
        b.extend_from_slice(&r.stamp.mtime_nsec.to_le_bytes());
        b.extend_from_slice(&r.stamp.ctime_nsec.to_le_bytes());
        b.extend_from_slice(&r.xxh128);
        b.extend_from_slice(&r.md5);
    }
    let h = xxhash_rust::xxh3::xxh3_64(&b);
    b.extend_from_slice(&h.to_le_bytes());
    b
}

fn le<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    if let Some(s) = b.get(at..at + N) {
        a.copy_from_slice(s);
    }
    a
}

fn decode(b: &[u8]) -> Result<Map, &'static str> {
    if b.len() < HEAD_LEN + 8 || b[..8] != MAGIC {
        return Err("not a checksum cache file");
    }
    if u32::from_le_bytes(le(b, 8)) != VERSION || u32::from_le_bytes(le(b, 12)) as usize != REC_LEN {
        return Err("another version");
    }
    let count = u64::from_le_bytes(le(b, 16));
    let body = b.len() - HEAD_LEN - 8;
    if usize::try_from(count).ok().and_then(|c| c.checked_mul(REC_LEN)) != Some(body) {
        return Err("length does not match the record count");
    }
    let (data, tail) = b.split_at(b.len() - 8);
    if xxhash_rust::xxh3::xxh3_64(data) != u64::from_le_bytes(le(tail, 0)) {
        return Err("checksum mismatch");
    }
    let mut m = Map::with_capacity(body / REC_LEN);
    for r in data[HEAD_LEN..].chunks_exact(REC_LEN) {
        let u = |at| u64::from_le_bytes(le(r, at));
        let rec = Rec {
            stamp: Stamp {
                size: u(16),
                mtime: i64::from_le_bytes(le(r, 24)),
                ctime: i64::from_le_bytes(le(r, 32)),
                mtime_nsec: u32::from_le_bytes(le(r, 40)),
                ctime_nsec: u32::from_le_bytes(le(r, 44)),
            },
            xxh128: le(r, 48),
            md5: le(r, 64),
        };
        m.insert((u(0), u(8)), rec);
    }
    Ok(m)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let r = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u8) -> Rec {
        Rec { stamp: Stamp { size: n.into(), mtime: -5, ctime: 7, mtime_nsec: 9, ctime_nsec: 11 }, xxh128: [n; 16], md5: [n ^ 0xff; 16] }
    }

    #[test]
    fn cache_file_round_trip_and_rejections() {
        let mut m = Map::new();
        for i in 0..50u8 {
            m.insert((1, u64::from(i) * 1000), rec(i));
        }
        let b = encode(&m);
        assert_eq!(b.len(), HEAD_LEN + 50 * REC_LEN + 8);
        assert_eq!(decode(&b).unwrap(), m);
        // Every single-byte change and every truncation is refused.
        for i in (0..b.len()).step_by(7) {
            let mut c = b.clone();
            c[i] ^= 0x40;
            assert!(decode(&c).is_err(), "byte {i}");
        }
        for n in [0, 10, HEAD_LEN + 8, b.len() - 1] {
            assert!(decode(&b[..n]).is_err(), "truncated to {n}");
        }
        assert!(decode(&encode(&Map::new())).unwrap().is_empty());
    }

    #[test]
    fn limiter_paces_reads() {
        let mut l = Limiter::new(10 << 20);
        let t0 = Instant::now();
        l.take(2 << 20);
        // 2 MiB at 10 MiB/s: at least 200 ms.
        assert!(t0.elapsed() >= Duration::from_millis(190), "{:?}", t0.elapsed());
        let mut free = Limiter::new(0);
        let t0 = Instant::now();
        free.take(1 << 40);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn filled_entries_answer_until_the_file_changes() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("m");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(root.join("sub/big"), &data).unwrap();
        std::fs::write(root.join("small"), b"hello").unwrap();
        let snap_path = d.path().join("s.snap");
        filelist_cache::build_snapshot(&root, &snap_path, &filelist_cache::BuildOptions::default()).unwrap();
        let snap = filelist_cache::Snapshot::open(&snap_path).unwrap();
        let cache = SumCache::new(d.path().join("m.sums"), 0);
        let todo = cache.walk(&snap);
        assert_eq!(todo.len(), 2);
        let mr = ModuleRoot::open(&root).unwrap();
        let mut lim = Limiter::new(0);
        let mut buf = vec![0u8; CHUNK];
        for (p, dev, ino, st) in &todo {
            cache.fill_one(&mr, p, (*dev, *ino, *st), &mut lim, &mut buf).unwrap();
        }
        assert_eq!(cache.len(), 2);
        let e = snap.lookup(b"sub/big").unwrap();
        for algo in [ChecksumAlgo::Xxh128, ChecksumAlgo::Md5] {
            let mut h = file_list_checksum_hasher(algo);
            h.update(&data);
            assert_eq!(cache.get(&e, algo).unwrap(), h.finish(), "{algo:?}");
        }
        assert!(cache.get(&e, ChecksumAlgo::Md4Legacy).is_none());
        assert!(cache.get(&e, ChecksumAlgo::Xxh3).is_none());
        // Nothing left to do; the file survives a reload.
        assert!(cache.walk(&snap).is_empty());
        assert!(cache.persist_if_dirty().unwrap());
        let again = SumCache::new(d.path().join("m.sums"), 0);
        assert_eq!(again.get(&e, ChecksumAlgo::Md5), cache.get(&e, ChecksumAlgo::Md5));
        // Rewritten with the same size and mtime: the ctime moved, the
        // stored sum no longer answers.
        let md = std::fs::metadata(root.join("sub/big")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        let mut other = data.clone();
        other[0] ^= 1;
        std::fs::write(root.join("sub/big"), &other).unwrap();
        let mtime = libc::timespec { tv_sec: md.mtime(), tv_nsec: md.mtime_nsec() };
        let c = std::ffi::CString::new(root.join("sub/big").to_str().unwrap()).unwrap();
        let times = [mtime, mtime];
        // SAFETY: valid path and a two-element timespec array.
        assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) }, 0);
        filelist_cache::build_snapshot(&root, &snap_path, &filelist_cache::BuildOptions::default()).unwrap();
        let snap2 = filelist_cache::Snapshot::open(&snap_path).unwrap();
        let e2 = snap2.lookup(b"sub/big").unwrap();
        assert_eq!((e2.size(), e2.mtime(), e2.mtime_nsec()), (e.size(), e.mtime(), e.mtime_nsec()));
        assert!(cache.get(&e2, ChecksumAlgo::Md5).is_none());
        // The next walk queues it (and only it) again; a vanished file's
        // entry is dropped.
        std::fs::remove_file(root.join("small")).unwrap();
        filelist_cache::build_snapshot(&root, &snap_path, &filelist_cache::BuildOptions::default()).unwrap();
        let snap3 = filelist_cache::Snapshot::open(&snap_path).unwrap();
        let todo = cache.walk(&snap3);
        assert_eq!(todo.iter().map(|t| t.0.clone()).collect::<Vec<_>>(), [b"sub/big".to_vec()]);
        assert_eq!(cache.len(), 1);
    }
}
