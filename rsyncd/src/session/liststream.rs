//! Sending the file list(s): built from the pinned snapshot, streamed on
//! demand, and shared between sessions through a bounded cache.
//!
//! With incremental recursion (protocol >= 30) the sender produces one
//! directory's sub-list at a time, as `flist.c: send_extra_file_list()`
//! does, interleaved with the transfer: before reading each request it keeps
//! at least `MIN_FILECNT_LOOKAHEAD` files in lists the client has not
//! finished, and while it waits for input it sends more, up to
//! `MAX_FILECNT_LOOKAHEAD` (`io.c: perform_io()` with
//! `extra_flist_sending_enabled`). A list the client retires (`NDX_DONE`) is
//! dropped, so a session holds only its window of live lists, never the
//! whole tree.
//!
//! Each list is encoded once into a [`Segment`] (its entries' wire bytes
//! and end marker, without the `NDX_FLIST_OFFSET` header, whose encoding
//! depends on the session's ndx state). A session whose list can be shared
//! records its segments; when it reaches the end of the list it publishes
//! them to the [`FlistCache`] under the [`ListKey`] (module, generation,
//! protocol, negotiated flags, list-shaping options, arguments and filter
//! rules). Later sessions with the same key replay the cached bytes: a null
//! sync then costs the daemon the socket writes only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use filelist_cache::Snapshot;
use protocol::checksum::ChecksumAlgo;
use protocol::flist::encode::{FlistEncoder, IdNames};
use protocol::mux::MsgCode;
use protocol::ndx::{NdxState, NDX_FLIST_EOF, NDX_FLIST_OFFSET};

use super::flist::{BuildOutcome, FileList, IncBuilder, ListItem};
use super::{Session, SessionError};
use crate::module::ModuleRuntime;

/// `MIN_FILECNT_LOOKAHEAD` (rsync.h): files kept in unfinished lists
/// before the sender reads the next request.
pub const MIN_FILECNT_LOOKAHEAD: usize = 1000;
/// `MAX_FILECNT_LOOKAHEAD` (rsync.h): while idle, the sender sends more
/// lists until this many files are in unfinished lists.
pub const MAX_FILECNT_LOOKAHEAD: usize = 10000;
/// Bytes per `Output::data` call when sending a list body.
const CHUNK: usize = 256 * 1024;

/// One encoded list.
#[derive(Debug)]
pub struct Segment {
    /// First ndx of the list.
    pub ndx_start: i32,
    /// The directory whose contents this list carries (`ndx_start - 1`).
    pub parent: Option<ListItem>,
    /// `dir_flist` index sent as `NDX_FLIST_OFFSET - dir_index` before the
    /// entries (`None`: the first list, or a non-incremental list).
    pub dir_index: Option<i32>,
    /// Entries in sorted order (ndx order).
    pub items: Vec<ListItem>,
    /// Flat lists built out of order: build position -> sorted index; the
    /// entries are written in build order (see `FileList::wire_order`).
    pub wire_order: Option<Vec<u32>>,
    /// Messages to send before the entries.
    pub messages: Vec<(MsgCode, String)>,
    /// Encoded entries and end marker (and, for a non-incremental list, the
    /// id lists and protocol < 30 io_error trailer). Empty once sent by a
    /// session that does not record (the bytes are not needed again).
    pub body: Vec<u8>,
    /// IOERR_* bits raised while building this list.
    pub io_error: i32,
    /// Sum of the sizes of its files and symlinks (`stats.total_size`).
    pub total_size: i64,
}

impl Segment {
    fn footprint(&self) -> usize {
        std::mem::size_of::<Segment>()
            + self.body.len()
            + self.items.len() * std::mem::size_of::<ListItem>()
            + self.wire_order.as_ref().map_or(0, |w| w.len() * 4)
            + self.messages.iter().map(|(_, m)| m.len() + 16).sum::<usize>()
    }
}

/// A complete list sequence as one session produced it.
#[derive(Debug)]
pub struct CachedLists {
    /// Lists in sending order.
    pub segments: Vec<Arc<Segment>>,
    /// Names the items refer to.
    pub names: Arc<FileList>,
    /// Incremental recursion (sub-lists follow, `NDX_FLIST_EOF` ends them).
    pub inc: bool,
    /// Approximate memory held.
    pub bytes: usize,
}

/// What makes two sessions' lists byte-identical: module, pinned
/// generation and a fingerprint of everything else the list depends on
/// (see `transfer::list_key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListKey {
    /// Module name and listener index.
    pub module: (String, usize),
    /// Snapshot generation number.
    pub generation: u64,
    /// Protocol, negotiated flags, list-shaping options, arguments, rules.
    pub fingerprint: Vec<u8>,
}

/// Encoded file lists shared between sessions, bounded in memory.
///
/// Entries are keyed by [`ListKey`]; an entry for an older generation of a
/// module is dropped when one for a newer generation arrives (sessions
/// pin the current generation, so it could not be hit again), and the
/// least recently used entries go when the budget is exceeded. An entry
/// larger than a quarter of the budget is not kept.
#[derive(Debug)]
pub struct FlistCache {
    budget: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    map: HashMap<ListKey, (Arc<CachedLists>, u64)>,
    /// Keys a session is recording now (one recorder per key).
    recording: std::collections::HashSet<ListKey>,
    used: usize,
    tick: u64,
    hits: u64,
    misses: u64,
}

/// The right to record one key's list (see [`FlistCache::begin_recording`]);
/// released when dropped.
#[derive(Debug)]
pub struct RecordingClaim<'c> {
    cache: &'c FlistCache,
    key: ListKey,
}

impl Drop for RecordingClaim<'_> {
    fn drop(&mut self) {
        self.cache.lock().recording.remove(&self.key);
    }
}

/// Counters of a [`FlistCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Entries held.
    pub entries: usize,
    /// Bytes held (approximate).
    pub bytes: usize,
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
}

impl FlistCache {
    /// A cache holding at most `budget` bytes (0 disables it).
    pub fn new(budget: usize) -> FlistCache {
        FlistCache { budget, inner: Mutex::new(CacheInner::default()) }
    }

    /// Whether anything can be cached.
    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// Most bytes one entry may hold.
    pub fn entry_limit(&self) -> usize {
        self.budget / 4
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic while holding the lock cannot leave the map inconsistent
        // in a way that matters (entries are immutable); keep serving.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for `key`, if cached.
    pub fn get(&self, key: &ListKey) -> Option<Arc<CachedLists>> {
        if !self.enabled() {
            return None;
        }
        let mut g = self.lock();
        g.tick += 1;
        let tick = g.tick;
        match g.map.get_mut(key) {
            Some((e, used)) => {
                *used = tick;
                let e = e.clone();
                g.hits += 1;
                crate::metrics::flist_cache_lookup(true);
                Some(e)
            }
            None => {
                g.misses += 1;
                crate::metrics::flist_cache_lookup(false);
                None
            }
        }
    }

    /// Claim the recording of `key`'s list: `None` when the cache is off or
    /// another session records the same list already (sessions that start
    /// together after a new generation would otherwise each hold a whole
    /// copy until their lists end; they stream with their window instead).
    pub fn begin_recording(&self, key: &ListKey) -> Option<RecordingClaim<'_>> {
        if !self.enabled() {
            return None;
        }
        let mut g = self.lock();
        if g.recording.insert(key.clone()) {
            Some(RecordingClaim { cache: self, key: key.clone() })
        } else {
            None
        }
    }

    /// Keep `lists` under `key`.
    pub fn insert(&self, key: ListKey, lists: Arc<CachedLists>) {
        if !self.enabled() || lists.bytes > self.entry_limit() {
            return;
        }
        let mut g = self.lock();
        // Older generations of the module can no longer be asked for.
        let stale: Vec<ListKey> = g.map.keys().filter(|k| k.module == key.module && k.generation < key.generation).cloned().collect();
        for k in stale {
            if let Some((e, _)) = g.map.remove(&k) {
                g.used -= e.bytes;
            }
        }
        if g.map.contains_key(&key) {
            return;
        }
        // A newer generation was cached meanwhile: this one is stale.
        if g.map.keys().any(|k| k.module == key.module && k.generation > key.generation) {
            return;
        }
        while g.used + lists.bytes > self.budget {
            let Some(oldest) = g.map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some((e, _)) = g.map.remove(&oldest) {
                g.used -= e.bytes;
            }
        }
        g.tick += 1;
        let tick = g.tick;
        g.used += lists.bytes;
        g.map.insert(key, (lists, tick));
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        let g = self.lock();
        CacheStats { entries: g.map.len(), bytes: g.used, hits: g.hits, misses: g.misses }
    }
}

/// What encoding a list needs besides the list itself.
pub struct EncodeCtx<'a> {
    /// The pinned snapshot.
    pub snap: &'a Snapshot,
    /// The module (file opens for `-c`).
    pub module: &'a ModuleRuntime,
    /// The client's options.
    pub opts: &'a protocol::args::ServerOptions,
    /// `-c`: the whole-file checksum to send per regular file.
    pub checksum: Option<ChecksumAlgo>,
    /// uid/gid name lookups.
    pub id_names: &'a dyn IdNames,
    /// Negotiated protocol.
    pub protocol: u8,
    /// `use_safe_inc_flist`.
    pub safe_flist: bool,
    /// The generated `fullfiletimelist` in the view (its `-c` sum is of
    /// these bytes).
    pub virtual_file: Option<crate::ffl::VirtualFile>,
}

impl EncodeCtx<'_> {
    /// Encode one list item (with its `-c` checksum) as entry `ndx` of the
    /// list starting at `ndx_start`; returns its `stats.total_size` share.
    /// An entry missing from the snapshot (cannot happen for a list built
    /// from it) is skipped.
    fn encode_item(&self, enc: &mut FlistEncoder, out: &mut Vec<u8>, names: &FileList, it: &ListItem, ndx: i32, ndx_start: i32) -> i64 {
        let Some(e) = self.snap.entry(it.entry) else { return 0 };
        let csum;
        let sum = match self.checksum {
            Some(algo) if e.is_file() => {
                csum = match self.virtual_file.as_ref().filter(|v| v.index == it.entry) {
                    Some(v) => super::transfer::bytes_checksum(&v.content, algo),
                    None => match crate::sumcache::lookup(self.module.sum_cache.as_deref(), &e, algo) {
                        Some(c) => c,
                        None => super::transfer::file_checksum(self.module, &names.module_path(self.snap, it), algo),
                    },
                };
                Some(&csum[..])
            }
            _ => None,
        };
        let name = names.name(it, &e);
        let fe = super::transfer::to_file_entry(&e, &name, it.top_dir, it.no_content, self.opts, sum);
        enc.encode_entry(out, &fe, ndx, ndx_start, self.id_names);
        if e.is_file() || e.is_symlink() {
            super::transfer::entry_size(&e)
        } else {
            0
        }
    }
}

enum Producer<'c, 'a> {
    /// Building from the snapshot, incremental recursion.
    Inc(Box<IncBuilder<'c, 'a>>),
    /// A non-incremental list, built and not yet sent.
    Flat(Option<BuildOutcome>),
    /// Replaying a cached sequence.
    Cached(Arc<CachedLists>, usize),
    /// Everything was sent.
    Done,
}

/// The list(s) of one session: what was sent, what is still alive on the
/// client, and how to produce the rest.
pub struct ListStream<'c, 'a> {
    producer: Producer<'c, 'a>,
    replay: bool,
    enc: Option<FlistEncoder>,
    inc: bool,
    /// Names once production finished (or from the cache).
    frozen: Option<Arc<FileList>>,
    window: VecDeque<Arc<Segment>>,
    live_files: usize,
    peak_live_files: usize,
    /// Recording for the cache: segments so far and their footprint;
    /// `None` when not recording (or given up: too big).
    recording: Option<(Vec<Arc<Segment>>, usize)>,
    record_limit: usize,
    /// Cumulative IOERR_* bits of the lists sent.
    io_error: i32,
    total_size: i64,
    entries: usize,
    end_ndx: i32,
}

/// Reads the next `--files-from` name (`None` after the last).
pub type NextArg<'f> = dyn FnMut(&mut Session) -> Result<Option<Vec<u8>>, SessionError> + 'f;

impl<'c, 'a> ListStream<'c, 'a> {
    /// Stream incremental-recursion lists from `builder`; record them for
    /// the cache when `record_limit > 0`.
    pub fn incremental(builder: IncBuilder<'c, 'a>, enc: FlistEncoder, record_limit: usize) -> Self {
        Self::new(Producer::Inc(Box::new(builder)), Some(enc), true, record_limit)
    }

    /// Send one non-incremental list.
    pub fn flat(outcome: BuildOutcome, enc: FlistEncoder, record_limit: usize) -> Self {
        Self::new(Producer::Flat(Some(outcome)), Some(enc), false, record_limit)
    }

    /// Build and send a whole list whose arguments arrive one at a time
    /// (`--files-from=-`), as stock's `send_file_list()` does: each
    /// argument's entries are written as soon as it is read, so a client
    /// checking the names it forwarded (3.2.5+ without `--trust-sender`)
    /// finds each entry's name among the last few it sent. `next_arg`
    /// returns `None` after the last argument. The list is sorted at the
    /// end for request lookup; the stream then has nothing more to send.
    pub fn stream_flat(
        s: &mut Session,
        ctx: &'c super::flist::BuildCtx<'a>,
        enc_ctx: &EncodeCtx<'_>,
        mut enc: FlistEncoder,
        next_arg: &mut NextArg<'_>,
    ) -> Result<Self, SessionError> {
        let mut fb = super::flist::FlatBuilder::default();
        let mut body = Vec::with_capacity(CHUNK);
        let (mut encoded, mut told, mut total) = (0usize, 0usize, 0i64);
        while let Some(arg) = next_arg(s)? {
            ctx.build_more(&mut fb, &arg);
            let o = &fb.outcome;
            for (code, text) in &o.messages[told..] {
                if !body.is_empty() {
                    s.out.data(&body)?;
                    body.clear();
                }
                s.out.msg(*code, text.as_bytes())?;
            }
            told = o.messages.len();
            for w in encoded..o.list.items.len() {
                let it = &o.list.items[w];
                total += enc_ctx.encode_item(&mut enc, &mut body, &o.list, it, w as i32, 0);
            }
            encoded = o.list.items.len();
            // Out at once: the client is waiting for this name's entries.
            if !body.is_empty() {
                s.out.data(&body)?;
                body.clear();
            }
        }
        let mut o = ctx.build_finish(fb);
        let ignore = enc_ctx.opts.ignore_errors;
        let io = if ignore { 0 } else { o.io_error };
        enc.encode_end(&mut body, io);
        enc.encode_trailer(&mut body, io, enc_ctx.id_names);
        s.out.data(&body)?;
        let seg = Segment {
            ndx_start: 0,
            parent: None,
            dir_index: None,
            items: std::mem::take(&mut o.list.items),
            wire_order: o.list.wire_order.take(),
            messages: Vec::new(),
            body: Vec::new(),
            io_error: o.io_error,
            total_size: total,
        };
        let mut stream = Self::new(Producer::Done, None, false, 0);
        stream.frozen = Some(Arc::new(o.list));
        let mut ndx_unused = NdxState::new(enc_ctx.protocol);
        stream.after_send(s, Arc::new(seg), &mut ndx_unused, enc_ctx, true)?;
        Ok(stream)
    }

    /// Replay a cached sequence.
    pub fn cached(lists: Arc<CachedLists>) -> Self {
        let inc = lists.inc;
        let names = lists.names.clone();
        let mut s = Self::new(Producer::Cached(lists, 0), None, inc, 0);
        s.frozen = Some(names);
        s
    }

    fn new(producer: Producer<'c, 'a>, enc: Option<FlistEncoder>, inc: bool, record_limit: usize) -> Self {
        ListStream {
            replay: matches!(producer, Producer::Cached(..)),
            producer,
            enc,
            inc,
            frozen: None,
            window: VecDeque::new(),
            live_files: 0,
            peak_live_files: 0,
            recording: if record_limit > 0 { Some((Vec::new(), 0)) } else { None },
            record_limit,
            io_error: 0,
            total_size: 0,
            entries: 0,
            end_ndx: 0,
        }
    }

    /// All lists were sent.
    pub fn eof(&self) -> bool {
        matches!(self.producer, Producer::Done)
    }

    /// Whether this session replays a cached list.
    pub fn from_cache(&self) -> bool {
        self.replay
    }

    /// Files in lists the client has not retired.
    pub fn live_files(&self) -> usize {
        self.live_files
    }

    /// Most files that were in unretired lists at once.
    pub fn peak_live_files(&self) -> usize {
        self.peak_live_files
    }

    /// Lists the client has not retired.
    pub fn live_lists(&self) -> usize {
        self.window.len()
    }

    /// Cumulative IOERR_* bits of the lists sent so far.
    pub fn io_error(&self) -> i32 {
        self.io_error
    }

    /// `stats.total_size` of the lists sent so far.
    pub fn total_size(&self) -> i64 {
        self.total_size
    }

    /// Entries sent so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// One past the highest ndx sent.
    pub fn end_ndx(&self) -> i32 {
        self.end_ndx
    }

    /// Incremental recursion.
    pub fn incremental_mode(&self) -> bool {
        self.inc
    }

    /// Names of the items sent.
    pub fn names(&self) -> &FileList {
        if let Some(n) = &self.frozen {
            return n;
        }
        match &self.producer {
            Producer::Inc(b) => b.names(),
            Producer::Flat(Some(o)) => &o.list,
            // `frozen` is set whenever production ends.
            _ => unreachable_names(),
        }
    }

    /// Resolve a request ndx among the live lists (mirrors the lookup in
    /// `rsync.c: read_ndx_and_attrs()` / `sender.c: send_files()`: an ndx
    /// one below a list's start names its parent directory).
    pub fn resolve(&self, ndx: i32) -> Option<ListItem> {
        if !self.inc {
            let l = self.window.front()?;
            return usize::try_from(ndx).ok().and_then(|i| l.items.get(i).copied());
        }
        let i = match self.window.binary_search_by(|l| (l.ndx_start - 1).cmp(&ndx)) {
            Ok(i) => return self.window[i].parent,
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let l = &self.window[i];
        let off = ndx - l.ndx_start;
        if off < 0 {
            return l.parent;
        }
        l.items.get(off as usize).copied()
    }

    /// The client retired its oldest list (`NDX_DONE` with incremental
    /// recursion, `sender.c: send_files()`): drop it. Returns whether a
    /// list is still alive (the sender then echoes `NDX_DONE` and goes on).
    pub fn retire_oldest(&mut self) -> bool {
        if let Some(l) = self.window.pop_front() {
            self.live_files -= l.items.len();
        }
        !self.window.is_empty()
    }

    /// Produce the next list (if any) and send it. Returns false when
    /// nothing was left to send.
    pub fn send_next(&mut self, s: &mut Session, ndx_out: &mut NdxState, ctx: &EncodeCtx<'_>) -> Result<bool, SessionError> {
        let seg = match &mut self.producer {
            Producer::Done => return Ok(false),
            Producer::Cached(lists, next) => {
                let seg = lists.segments.get(*next).cloned();
                *next += 1;
                match seg {
                    Some(seg) => seg,
                    None => {
                        self.producer = Producer::Done;
                        return Ok(false);
                    }
                }
            }
            Producer::Flat(outcome) => {
                let Some(mut o) = outcome.take() else {
                    self.producer = Producer::Done;
                    return Ok(false);
                };
                let items = std::mem::take(&mut o.list.items);
                let wire_order = o.list.wire_order.take();
                let seg = Segment {
                    ndx_start: 0,
                    parent: None,
                    dir_index: None,
                    items,
                    wire_order,
                    messages: std::mem::take(&mut o.messages),
                    body: Vec::new(),
                    io_error: o.io_error,
                    total_size: 0,
                };
                // The names outlive the builder.
                self.frozen = Some(Arc::new(o.list));
                let recording = self.recording.is_some();
                let seg = self.encode_and_send(s, seg, ctx, recording, true)?;
                self.producer = Producer::Done;
                return self.after_send(s, Arc::new(seg), ndx_out, ctx, true).map(|()| true);
            }
            Producer::Inc(b) => {
                let Some(built) = b.next_list() else {
                    self.finish_production();
                    return Ok(false);
                };
                let seg = Segment {
                    ndx_start: built.list.ndx_start,
                    parent: built.list.parent,
                    dir_index: built.list.dir_index,
                    items: built.list.items,
                    wire_order: None,
                    messages: built.messages,
                    body: Vec::new(),
                    io_error: built.io_error,
                    total_size: 0,
                };
                let last = b.is_done();
                let recording = self.recording.is_some();
                // Messages first, then the header, then the entries.
                let seg = self.encode_and_send(s, seg, ctx, recording, false)?;
                let seg = self.header_and_body(s, seg, ndx_out, recording)?;
                if last {
                    self.finish_production();
                }
                return self.after_send(s, Arc::new(seg), ndx_out, ctx, last).map(|()| true);
            }
        };
        // Cached replay.
        for (code, text) in &seg.messages {
            s.out.msg(*code, text.as_bytes())?;
        }
        if let Some(d) = seg.dir_index {
            let mut b = Vec::new();
            ndx_out.encode(&mut b, NDX_FLIST_OFFSET - d);
            s.out.data(&b)?;
        }
        for c in seg.body.chunks(CHUNK) {
            s.out.data(c)?;
        }
        let last = match &self.producer {
            Producer::Cached(lists, next) => *next >= lists.segments.len(),
            _ => true,
        };
        if last {
            self.producer = Producer::Done;
        }
        self.after_send(s, seg, ndx_out, ctx, last).map(|()| true)
    }

    /// Production ended: freeze the names.
    fn finish_production(&mut self) {
        if let Producer::Inc(b) = std::mem::replace(&mut self.producer, Producer::Done) {
            self.frozen = Some(Arc::new(b.into_names()));
        }
    }

    /// Encode a freshly built list: send its messages, then (flat lists)
    /// its entries as they are encoded. Returns the segment, with its body
    /// when it still has to be sent (incremental) or recorded.
    fn encode_and_send(
        &mut self,
        s: &mut Session,
        mut seg: Segment,
        ctx: &EncodeCtx<'_>,
        keep: bool,
        flat: bool,
    ) -> Result<Segment, SessionError> {
        for (code, text) in &seg.messages {
            s.out.msg(*code, text.as_bytes())?;
        }
        let ignore = ctx.opts.ignore_errors;
        let before = self.io_error;
        let cumulative = before | seg.io_error;
        // End-of-list io_error: flist.c send_file_list() sends it when any
        // error is known (first or only list); send_extra_file_list() only
        // when this list raised one. Suppressed by --ignore-errors.
        let end_io = if ignore {
            0
        } else if flat || seg.dir_index.is_none() || cumulative != before {
            cumulative
        } else {
            0
        };
        let enc = self.enc.as_mut().expect("a producing stream has an encoder");
        let names_ref: &FileList = match (&self.frozen, &self.producer) {
            (Some(n), _) => n,
            (None, Producer::Inc(b)) => b.names(),
            _ => unreachable_names(),
        };
        let mut body = Vec::with_capacity(if flat { CHUNK } else { seg.items.len() * 40 + 16 });
        let mut total = 0i64;
        for i in 0..seg.items.len() {
            // Build order when the list was built out of order (stock writes
            // entries as it meets them); the ndx passed is the wire position,
            // which hard-link references use (the receiver sorts afterwards).
            let it = match &seg.wire_order {
                Some(order) => &seg.items[order[i] as usize],
                None => &seg.items[i],
            };
            total += ctx.encode_item(enc, &mut body, names_ref, it, seg.ndx_start + i as i32, seg.ndx_start);
            if flat && !keep && body.len() >= CHUNK {
                s.out.data(&body)?;
                body.clear();
            }
        }
        enc.encode_end(&mut body, end_io);
        if flat {
            enc.encode_trailer(&mut body, if ignore { 0 } else { cumulative }, ctx.id_names);
            for c in body.chunks(CHUNK) {
                s.out.data(c)?;
            }
            if !keep {
                body = Vec::new();
            }
        }
        seg.body = body;
        seg.total_size = total;
        Ok(seg)
    }

    /// Send an incremental list's header and body.
    fn header_and_body(&mut self, s: &mut Session, mut seg: Segment, ndx_out: &mut NdxState, keep: bool) -> Result<Segment, SessionError> {
        if let Some(d) = seg.dir_index {
            let mut b = Vec::new();
            ndx_out.encode(&mut b, NDX_FLIST_OFFSET - d);
            s.out.data(&b)?;
        }
        for c in seg.body.chunks(CHUNK) {
            s.out.data(c)?;
        }
        if !keep {
            seg.body = Vec::new();
        }
        Ok(seg)
    }

    /// Bookkeeping after a list went out: io_error messages, the end of
    /// the lists, the live window, the recording.
    fn after_send(
        &mut self,
        s: &mut Session,
        seg: Arc<Segment>,
        ndx_out: &mut NdxState,
        ctx: &EncodeCtx<'_>,
        last: bool,
    ) -> Result<(), SessionError> {
        let before = self.io_error;
        self.io_error |= seg.io_error;
        let raised = self.io_error != before;
        let ignore = ctx.opts.ignore_errors;
        if ctx.protocol >= 30 && !ignore {
            if seg.dir_index.is_none() {
                // send_file_list(): without safe lists the error goes as a message.
                if !ctx.safe_flist && self.io_error != 0 {
                    s.out.msg(MsgCode::IoError, &self.io_error.to_le_bytes())?;
                }
            } else if raised && ctx.protocol == 30 {
                // send_extra_file_list() finish.
                s.out.msg(MsgCode::IoError, &self.io_error.to_le_bytes())?;
            }
        }
        if self.inc && last {
            let mut b = Vec::new();
            ndx_out.encode(&mut b, NDX_FLIST_EOF);
            s.out.data(&b)?;
        }
        self.total_size += seg.total_size;
        self.entries += seg.items.len();
        self.live_files += seg.items.len();
        self.peak_live_files = self.peak_live_files.max(self.live_files);
        self.end_ndx = self.end_ndx.max(seg.ndx_start + seg.items.len() as i32);
        self.window.push_back(seg.clone());
        if let Some((segs, bytes)) = &mut self.recording {
            *bytes += seg.footprint();
            segs.push(seg);
            if *bytes > self.record_limit {
                self.recording = None;
            }
        }
        Ok(())
    }

    /// After the last list: the recorded sequence, ready for the cache
    /// (`None` when not recording, given up, or not finished).
    pub fn take_recording(&mut self) -> Option<Arc<CachedLists>> {
        if !self.eof() {
            return None;
        }
        let (segments, bytes) = self.recording.take()?;
        let names = self.frozen.clone()?;
        let bytes = bytes + names.footprint();
        if bytes > self.record_limit {
            return None;
        }
        Some(Arc::new(CachedLists { segments, names, inc: self.inc, bytes }))
    }
}

fn unreachable_names() -> &'static FileList {
    static EMPTY: std::sync::OnceLock<FileList> = std::sync::OnceLock::new();
    EMPTY.get_or_init(FileList::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(body: usize) -> Arc<CachedLists> {
        let seg = Segment {
            ndx_start: 1,
            parent: None,
            dir_index: None,
            items: Vec::new(),
            wire_order: None,
            messages: Vec::new(),
            body: vec![0u8; body],
            io_error: 0,
            total_size: 0,
        };
        let bytes = seg.footprint();
        Arc::new(CachedLists { segments: vec![Arc::new(seg)], names: Arc::new(FileList::default()), inc: true, bytes })
    }

    fn key(module: &str, generation: u64, f: &[u8]) -> ListKey {
        ListKey { module: (module.to_string(), 0), generation, fingerprint: f.to_vec() }
    }

    #[test]
    fn hit_needs_the_same_module_generation_and_fingerprint() {
        let c = FlistCache::new(1 << 20);
        c.insert(key("m", 1, b"a"), lists(100));
        assert!(c.get(&key("m", 1, b"a")).is_some());
        assert!(c.get(&key("m", 1, b"b")).is_none());
        assert!(c.get(&key("m", 2, b"a")).is_none());
        assert!(c.get(&key("n", 1, b"a")).is_none());
        assert_eq!(c.stats().hits, 1);
        assert_eq!(c.stats().misses, 3);
    }

    #[test]
    fn a_newer_generation_drops_the_older_ones_of_its_module() {
        let c = FlistCache::new(1 << 20);
        c.insert(key("m", 1, b"a"), lists(100));
        c.insert(key("m", 1, b"b"), lists(100));
        c.insert(key("other", 1, b"a"), lists(100));
        c.insert(key("m", 2, b"a"), lists(100));
        assert!(c.get(&key("m", 1, b"a")).is_none());
        assert!(c.get(&key("m", 1, b"b")).is_none());
        assert!(c.get(&key("other", 1, b"a")).is_some());
        // A late insert for the old generation is not kept.
        c.insert(key("m", 1, b"c"), lists(100));
        assert!(c.get(&key("m", 1, b"c")).is_none());
        assert_eq!(c.stats().entries, 2);
    }

    #[test]
    fn the_budget_evicts_least_recently_used_and_refuses_huge_entries() {
        let one = lists(10_000).bytes;
        let c = FlistCache::new(one * 4 + one / 2);
        for f in [b"a", b"b", b"c", b"d"] {
            c.insert(key("m", 1, f), lists(10_000));
        }
        assert!(c.stats().bytes <= one * 4 + one / 2);
        // Refuse: more than a quarter of the budget.
        c.insert(key("m", 1, b"big"), lists(one * 2));
        assert!(c.get(&key("m", 1, b"big")).is_none());
        // Touch "a" so "b" is the least recently used; a new entry evicts it.
        assert!(c.get(&key("m", 1, b"a")).is_some());
        c.insert(key("m", 1, b"e"), lists(10_000));
        assert!(c.get(&key("m", 1, b"b")).is_none());
        for f in [b"a", b"c", b"d", b"e"] {
            assert!(c.get(&key("m", 1, f)).is_some(), "{f:?}");
        }
        assert!(c.stats().bytes <= one * 4 + one / 2);
    }

    #[test]
    fn one_session_records_a_key_at_a_time() {
        let c = FlistCache::new(1 << 20);
        let k = key("m", 1, b"a");
        let first = c.begin_recording(&k);
        assert!(first.is_some());
        assert!(c.begin_recording(&k).is_none(), "a second recorder of the same list");
        assert!(c.begin_recording(&key("m", 1, b"b")).is_some(), "another list is independent");
        drop(first);
        assert!(c.begin_recording(&k).is_some(), "released when the claim is dropped");
        assert!(FlistCache::new(0).begin_recording(&k).is_none());
    }

    #[test]
    fn a_zero_budget_disables_the_cache() {
        let c = FlistCache::new(0);
        c.insert(key("m", 1, b"a"), lists(1));
        assert!(c.get(&key("m", 1, b"a")).is_none());
        assert_eq!(c.stats().entries, 0);
    }
}
