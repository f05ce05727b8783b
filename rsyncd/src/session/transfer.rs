//! Binary setup, file list and the sender's transfer loop.
//!
//! Mirrors `compat.c: setup_protocol()` / `negotiate_the_strings()`,
//! `main.c: do_server_sender()`, `sender.c: send_files()`,
//! `rsync.c: read_ndx_and_attrs()` and `main.c: read_final_goodbye()`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use filelist_cache::{EntryRef, Snapshot};
use protocol::args::ParsedArgs;
use protocol::checksum::{file_list_checksum_hasher, ChecksumAlgo, FileHasher};
use protocol::compat::{self, CF_CHKSUM_SEED_FIX, CF_ID0_NAMES, CF_SAFE_FLIST, CF_VARINT_FLIST_FLAGS};
use protocol::exit::Rerr;
use protocol::filter::{decode_filter_list, FilterList};
use protocol::flist::encode::{FlistEncoder, FlistOptions, IdNames};
use protocol::flist::entry::FileEntry;
use protocol::matcher::{DeltaMatcher, DeltaOp};
use protocol::mux::MsgCode;
use protocol::ndx::{NdxState, NDX_DEL_STATS, NDX_DONE};
use protocol::stats::{encode_stats, Stats};
use protocol::sums::{decode_sum_blocks, decode_sum_head, encode_sum_head, SumBlocks, SumHead};
use protocol::token::{Compression, TokenEncoder};
use protocol::wire::{put_i32, put_u16, put_varint, put_vstring, Reader};

use super::flist::{full_fname, join, BuildCtx, FileList, IncBuilder, IOERR_GENERAL, IOERR_VANISHED};
use super::liststream::{EncodeCtx, ListKey, ListStream, MAX_FILECNT_LOOKAHEAD, MIN_FILECNT_LOOKAHEAD};
use super::io::{Input, InputError};
use super::{files, with_reader, Session, SessionError};
use crate::module::ModuleRuntime;

/// `ITEM_TRANSFER`
pub const ITEM_TRANSFER: u16 = 1 << 15;
/// `ITEM_IS_NEW`
pub const ITEM_IS_NEW: u16 = 1 << 13;
/// `ITEM_BASIS_TYPE_FOLLOWS`
pub const ITEM_BASIS_TYPE_FOLLOWS: u16 = 1 << 11;
/// `ITEM_XNAME_FOLLOWS`
pub const ITEM_XNAME_FOLLOWS: u16 = 1 << 12;

/// One request from the client's generator.
#[derive(Debug)]
pub struct Request {
    ndx: i32,
    iflags: u16,
    fnamecmp_type: Option<u8>,
    xname: Option<Vec<u8>>,
    sums: Option<(SumHead, Option<SumBlocks>)>,
}

/// What the reader thread reports.
#[derive(Debug)]
enum Event {
    Request(Request),
    Done,
    DelStats(Vec<i32>),
    Failed(InputError),
}

/// Parameters the reader thread needs to decode requests.
struct ReaderCfg {
    protocol: u8,
    dry_run: bool,
    append: bool,
    digest_len: usize,
    limits: protocol::limits::Limits,
}

fn reader_thread(mut input: Input, cfg: ReaderCfg, tx: mpsc::SyncSender<Event>, total_read: Arc<AtomicU64>) -> Input {
    let mut ndx_in = NdxState::new(cfg.protocol);
    loop {
        let r = read_event(&mut input, &cfg, &mut ndx_in);
        total_read.store(input.total_read(), Ordering::Relaxed);
        let stop = r.is_err();
        let ev = match r {
            Ok(ev) => ev,
            Err(e) => Event::Failed(e),
        };
        if tx.send(ev).is_err() || stop {
            return input;
        }
    }
}

fn read_event(input: &mut Input, cfg: &ReaderCfg, ndx_in: &mut NdxState) -> Result<Event, InputError> {
    let p = cfg.protocol;
    let ndx = input.decode(|b| with_reader(b, |r| ndx_in.decode(r)))?;
    if ndx == NDX_DONE {
        return Ok(Event::Done);
    }
    if ndx == NDX_DEL_STATS && p >= 31 {
        let v = input.decode(|b| {
            with_reader(b, |r| {
                let mut v = Vec::with_capacity(5);
                for _ in 0..5 {
                    v.push(r.varint()?);
                }
                Ok(v)
            })
        })?;
        return Ok(Event::DelStats(v));
    }
    if ndx < 0 {
        return Err(InputError::Protocol(format!("Invalid file index: {ndx} (read_ndx_and_attrs) [sender]")));
    }
    let iflags = if p >= 29 { input.decode(|b| with_reader(b, |r| r.u16()))? } else { ITEM_TRANSFER };
    let fnamecmp_type =
        if iflags & ITEM_BASIS_TYPE_FOLLOWS != 0 { Some(input.decode(|b| with_reader(b, |r| r.u8()))?) } else { None };
    let max_vs = cfg.limits.max_vstring;
    let xname = if iflags & ITEM_XNAME_FOLLOWS != 0 {
        Some(input.decode(|b| with_reader(b, |r| r.vstring(max_vs).map(|s| s.to_vec())))?)
    } else {
        None
    };
    let sums = if iflags & ITEM_TRANSFER != 0 && !cfg.dry_run {
        let head = input
            .decode(|b| with_reader(b, |r| decode_sum_head(r, p, cfg.digest_len, &cfg.limits)))
            .map_err(stock_sum_head_text)?;
        let blocks = if cfg.append { None } else { Some(input.decode(|b| with_reader(b, |r| decode_sum_blocks(r, &head)))?) };
        Some((head, blocks))
    } else {
        None
    };
    Ok(Event::Request(Request { ndx, iflags, fnamecmp_type, xname, sums }))
}

/// `io.c: read_sum_head()` reports a bad head as the bare detail plus the
/// role, e.g. `Invalid checksum length 17 [sender]` (security-notes a.5).
fn stock_sum_head_text(e: InputError) -> InputError {
    match e {
        InputError::Protocol(m) => {
            let detail = m.strip_prefix("invalid sum head: ").unwrap_or(&m);
            InputError::Protocol(format!("{detail} [sender]"))
        }
        other => other,
    }
}

/// Resolves uid/gid names (`access::identity`), caching results per session.
#[derive(Default)]
struct SystemNames {
    users: RefCell<HashMap<u32, Option<Vec<u8>>>>,
    groups: RefCell<HashMap<u32, Option<Vec<u8>>>>,
}

impl IdNames for SystemNames {
    fn user_name(&self, uid: u32) -> Option<Vec<u8>> {
        if let Some(name) = super::modopts::user_name_override(uid) {
            return name;
        }
        self.users.borrow_mut().entry(uid).or_insert_with(|| crate::access::identity::user_by_uid(uid).map(|u| u.name)).clone()
    }
    fn group_name(&self, gid: u32) -> Option<Vec<u8>> {
        if let Some(name) = super::modopts::group_name_override(gid) {
            return name;
        }
        self.groups.borrow_mut().entry(gid).or_insert_with(|| crate::access::identity::group_name(gid)).clone()
    }
}

pub(crate) struct Negotiated {
    xfer: ChecksumAlgo,
    file: ChecksumAlgo,
    compression: Compression,
}

fn unsupported(s: &mut Session, text: String, code: Rerr) -> Result<(), SessionError> {
    fatal(s, code, &text)
}

/// Send a fatal error the stock way (`cleanup.c: _exit_cleanup()`):
/// the text as MSG_ERROR, then MSG_ERROR_EXIT with the code for proto >= 31.
fn fatal(s: &mut Session, code: Rerr, text: &str) -> Result<(), SessionError> {
    let mut t = text.to_string();
    if !t.ends_with('\n') {
        t.push('\n');
    }
    if s.out.is_mux() {
        s.out.msg(MsgCode::Error, t.as_bytes())?;
        if s.protocol >= 31 {
            s.out.msg(MsgCode::ErrorExit, &code.code().to_le_bytes())?;
        }
        s.out.flush()?;
    }
    Err(SessionError::Exit { code, message: text.trim_end().to_string() })
}

pub(crate) fn negotiate(s: &mut Session, parsed: &ParsedArgs, varint: bool) -> Result<Result<Negotiated, String>, SessionError> {
    let o = &parsed.options;
    let p = s.protocol;
    let default_algo = if p >= 30 { ChecksumAlgo::Md5 } else { ChecksumAlgo::Md4Legacy };
    // options.c: a compress level alone turns compression on (CPRES_AUTO).
    let auto_compress = o.compress || o.compress_level.is_some();
    let want_compress = auto_compress || o.compress_choice.is_some() || o.old_compress || o.new_compress;
    let send_csum_list = varint && o.checksum_choice.is_none();
    let send_comp_list = varint && auto_compress && o.compress_choice.is_none() && !o.old_compress && !o.new_compress;
    if send_csum_list || send_comp_list {
        let mut b = Vec::new();
        if send_csum_list {
            compat::put_name_list(&mut b, compat::OUR_CHECKSUMS);
        }
        if send_comp_list {
            compat::put_name_list(&mut b, compat::OUR_COMPRESSIONS);
        }
        s.out.raw(&b)?;
    }
    let maxv = s.state.settings.limits.max_vstring;
    let client_csums = if send_csum_list { Some(s.input.decode(|b| with_reader(b, |r| compat::read_name_list(r, maxv)))?) } else { None };
    let client_comps = if send_comp_list { Some(s.input.decode(|b| with_reader(b, |r| compat::read_name_list(r, maxv)))?) } else { None };

    let (xfer, file) = if let Some(choice) = &o.checksum_choice {
        let mut parts = choice.splitn(2, |&b| b == b',');
        let a = parts.next().unwrap_or_default();
        let b = parts.next().unwrap_or(a);
        let pick = |n: &[u8]| -> Result<ChecksumAlgo, String> {
            if n.eq_ignore_ascii_case(b"auto") {
                return Ok(default_algo);
            }
            match ChecksumAlgo::from_name(n) {
                Some(a) => Ok(a),
                None => Err(format!("unknown checksum name: {}", String::from_utf8_lossy(n))),
            }
        };
        match (pick(a), pick(b)) {
            (Ok(x), Ok(y)) => (x, y),
            (Err(e), _) | (_, Err(e)) => return Ok(Err(e)),
        }
    } else if let Some(list) = client_csums {
        match compat::choose(&list, compat::OUR_CHECKSUMS).and_then(|n| ChecksumAlgo::from_name(n.as_bytes())) {
            Some(a) => (a, a),
            None => return Ok(Err("Failed to negotiate a checksum choice".into())),
        }
    } else {
        (default_algo, default_algo)
    };
    let compression = if !want_compress {
        Compression::None
    } else if let Some(c) = &o.compress_choice {
        match Compression::from_name(c) {
            Some(c) => c,
            None if c.eq_ignore_ascii_case(b"none") => Compression::None,
            None => return Ok(Err(format!("unknown compress name: {}", String::from_utf8_lossy(c)))),
        }
    } else if o.old_compress {
        Compression::Zlib
    } else if o.new_compress {
        Compression::ZlibX
    } else if let Some(list) = client_comps {
        match compat::choose(&list, compat::OUR_COMPRESSIONS).and_then(|n| Compression::from_name(n.as_bytes())) {
            Some(c) => c,
            None => return Ok(Err("Failed to negotiate a compression choice".into())),
        }
    } else {
        Compression::Zlib
    };
    Ok(Ok(Negotiated { xfer, file, compression }))
}

/// Run the sender role for one pull.
pub fn run_sender(s: &mut Session, module: Arc<ModuleRuntime>, parsed: ParsedArgs) -> Result<(), SessionError> {
    let (parsed, _module_opts) = super::modopts::enter(&module.opts, parsed);
    let p = s.protocol;

    let mut o = parsed.options.clone();
    // options.c: --files-from implies --dirs (directories named in the list
    // are sent, not skipped).
    if o.files_from.is_some() {
        o.dirs = true;
    }
    let caps = o.capabilities.clone().unwrap_or_default();
    let mut compat_flags = 0u32;
    let mut setup = Vec::new();
    if p >= 30 {
        // compat.c: set_allow_inc_recurse(), narrowed to what we stream.
        let allow_inc = o.recursive && !o.relative && o.files_from.is_none() && !o.use_qsort;
        compat_flags = compat::server_compat_flags(&caps, allow_inc);
        put_varint(&mut setup, compat_flags as i32);
        s.out.raw(&setup)?;
    }
    let varint = compat_flags & CF_VARINT_FLIST_FLAGS != 0;
    let neg = negotiate(s, &parsed, varint)?;
    let seed = match o.checksum_seed {
        Some(v) if v != 0 => v,
        _ => s.new_seed(),
    };
    let mut b = Vec::new();
    put_i32(&mut b, seed);
    s.out.raw(&b)?;
    s.out.start_mux()?;
    if p >= 30 {
        s.input.start_mux();
    }
    // Stock's stats.total_read/total_written leave out the text phase and
    // the binary setup (compat flags, negotiation strings, seed).
    let read_base = s.input.total_read();
    let written_base = s.out.total_written() + s.out.pending_len() as u64;
    let neg = match neg {
        Ok(n) => n,
        Err(e) => return unsupported(s, format!("rsync: {e}"), Rerr::Unsupported),
    };
    let seed_fix = compat_flags & CF_CHKSUM_SEED_FIX != 0;

    // Filter list (exclude.c: recv_filter_list()).
    let limits = s.state.settings.limits.clone();
    let rules = s.input.decode(|b| with_reader(b, |r| decode_filter_list(r, &limits)))?;
    let mut client_filter = match FilterList::from_client_rules(&rules, p) {
        Ok(f) => f,
        Err(e) => return fatal(s, Rerr::Unsupported, &format!("rsync: {e}")),
    };
    if o.cvs_exclude {
        client_filter.add_cvs_excludes(p);
    }

    // --files-from=- names are read while the list is built and sent
    // (flist.c: send_file_list() with filesfrom_fd), below.
    let files_from_stdin = o.files_from.as_deref() == Some(b"-".as_slice());

    let t0 = Instant::now();
    // Pin one generation for the whole session: list building and the
    // transfer loop (which looks entries up by index) read only this one.
    let snap = match module.store.get() {
        Ok(store) => store.current(),
        // admit() opened it; a store that cannot be opened never gets here.
        Err(e) => return fatal(s, Rerr::FileIo, &format!("rsync: module {} is not available: {e}", module.name)),
    };
    // The view served: with the module's `fullfiletimelist` at the top when
    // it has one (crate::ffl).
    let snap = crate::ffl::pin(&module, snap);
    let visibility = module.rules.access.view();
    let cvs_reader = if o.cvs_exclude { Some(super::flist::CvsIgnore::new(&module.root)) } else { None };
    let ctx = BuildCtx {
        inc_first: false,
        snap: snap.snapshot(),
        module: &module.name,
        opts: &o,
        client_filter: &client_filter,
        daemon_filter: &module.daemon_filter,
        protocol: p,
        visible: &|e| visibility.visible(e),
        cvs: cvs_reader.as_ref(),
        confinement: module.opts.confinement,
    };
    let mut args = Vec::new();
    for a in &parsed.paths {
        ctx.expand_arg(a, o.secluded_args, &mut args);
    }
    // The directory --files-from names are relative to.
    let ff_base = {
        let base = args.first().cloned().unwrap_or_else(|| b".".to_vec());
        if base == b"." {
            Vec::new()
        } else {
            base
        }
    };
    let inc = compat_flags & compat::CF_INC_RECURSE != 0;
    let fopts = FlistOptions {
        protocol: p,
        varint_flags: varint,
        preserve_uid: o.owner,
        preserve_gid: o.group,
        preserve_links: o.links,
        preserve_devices: o.devices,
        preserve_specials: o.specials,
        preserve_hard_links: o.hard_links,
        checksum_len: if o.checksum { Some(neg.file.digest_len()) } else { None },
        inc_recurse: inc,
        id0_names: compat_flags & CF_ID0_NAMES != 0,
        numeric_ids: o.numeric_ids,
        safe_flist: p >= 31 || compat_flags & CF_SAFE_FLIST != 0,
    };
    let names = SystemNames::default();
    let enc_ctx = EncodeCtx {
        snap: snap.snapshot(),
        module: &module,
        opts: &o,
        checksum: if o.checksum { Some(neg.file) } else { None },
        virtual_file: snap.virtual_file(),
        id_names: &names,
        protocol: p,
        safe_flist: fopts.safe_flist,
    };
    // A list another session already encoded for the same generation,
    // arguments, options and rules is replayed; otherwise it is built and,
    // when shareable, recorded for the next session.
    let state = s.state.clone();
    let cache = &state.flist_cache;
    let key = list_key(&module, snap.generation(), &fopts, compat_flags, &o, &parsed.paths, &rules, files_from_stdin);
    let cached = key.as_ref().and_then(|k| cache.get(k));
    // Only one session records a given list; the others stream it.
    let claim = if cached.is_none() { key.as_ref().and_then(|k| cache.begin_recording(k)) } else { None };
    let record_limit = if claim.is_some() { cache.entry_limit() } else { 0 };
    let mut stream = if files_from_stdin {
        if p == 30 {
            s.input.set_raw_passthrough(true);
        }
        let (max, maxlen) = (limits.max_files_from, limits.max_path_len);
        let relative = o.relative;
        let mut count = 0usize;
        // One name per decode step: a step that needs more input re-reads
        // only the partial name (one pass over a million names).
        let streamed = ListStream::stream_flat(s, &ctx, &enc_ctx, FlistEncoder::new(fopts.clone()), &mut |s| {
            let Some(n) = s.input.decode(|b| with_reader(b, |r| read_files_from_name(r, count, max, maxlen)))? else {
                return Ok(None);
            };
            count += 1;
            let mut a = ff_base.clone();
            if !a.is_empty() && !a.ends_with(b"/") {
                a.push(b'/');
            }
            if relative {
                a.extend_from_slice(b"./");
            }
            // flist.c: each name is sanitized on its own, relative to the
            // source directory (it can never climb above it).
            a.extend_from_slice(&super::flist::sanitize_path(&n, relative));
            Ok(Some(a))
        });
        if p == 30 {
            s.input.set_raw_passthrough(false);
        }
        streamed?
    } else {
        match cached {
        Some(c) => ListStream::cached(c),
        None if inc => ListStream::incremental(IncBuilder::new(&ctx, &args), FlistEncoder::new(fopts.clone()), record_limit),
        None => ListStream::flat(ctx.build(&args), FlistEncoder::new(fopts.clone()), record_limit),
        }
    };
    let mut ndx_out = NdxState::new(p);
    // The first list (send_file_list()); with incremental recursion, more
    // lists follow until MIN_FILECNT_LOOKAHEAD files are out.
    stream.send_next(s, &mut ndx_out, &enc_ctx)?;
    let build_ms = t0.elapsed().as_millis().max(1) as i64;
    let t1 = Instant::now();
    while inc && !stream.eof() && stream.live_files() < MIN_FILECNT_LOOKAHEAD {
        stream.send_next(s, &mut ndx_out, &enc_ctx)?;
    }
    s.out.flush()?;
    let xfer_ms = t1.elapsed().as_millis() as i64;
    tracing::debug!(module = %module.name, incremental = inc, cached = stream.from_cache(), "file list started");

    // Transfer phase: a reader thread decodes requests while we write.
    let total_read = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::sync_channel::<Event>(64);
    let cfg = ReaderCfg { protocol: p, dry_run: o.dry_run, append: o.append > 0, digest_len: neg.xfer.digest_len(), limits };
    let input = std::mem::replace(&mut s.input, Input::placeholder());
    let tr = total_read.clone();
    let reader = std::thread::Builder::new()
        .name("rsyncd-reader".into())
        .spawn(move || reader_thread(input, cfg, tx, tr))
        .map_err(SessionError::Output)?;
    let idle = s.idle_timeout;
    let mut xfer = Xfer {
        ndx_out,
        tokens: match TokenEncoder::new(neg.compression, o.compress_level, p) {
            Ok(t) => module.opts.tune_tokens(t),
            // init_compression_level(): a zero level turns compression off on
            // both sides.
            Err(protocol::token::TokenError::LevelOff(_)) => match TokenEncoder::new(Compression::None, None, p) {
                Ok(t) => t,
                Err(e) => return fatal(s, Rerr::Unsupported, &format!("rsync: {e}")),
            },
            Err(e) => return fatal(s, Rerr::Unsupported, &format!("rsync: {e}")),
        },
        algo: neg.xfer,
        seed,
        seed_fix,
        buf: Vec::with_capacity(256 * 1024),
        file_buf: vec![0u8; 256 * 1024],
        match_totals: (0, 0, 0, 0),
        virtual_file: snap.virtual_file(),
    };
    let result = transfer_loop(s, &module, snap.snapshot(), &mut stream, &enc_ctx, &o, &rx, idle, &mut xfer);
    if let (Some(k), Some(lists)) = (key, stream.take_recording()) {
        cache.insert(k, lists);
    }
    drop(claim);
    tracing::info!(
        module = %module.name,
        entries = stream.entries(),
        incremental = inc,
        cached = stream.from_cache(),
        peak_live = stream.peak_live_files(),
        "file list sent"
    );
    let result = result.and_then(|()| {
        let stats = Stats {
            total_read: total_read.load(Ordering::Relaxed).saturating_sub(read_base) as i64,
            total_written: (s.out.total_written() + s.out.pending_len() as u64).saturating_sub(written_base) as i64,
            total_size: stream.total_size(),
            flist_buildtime_ms: build_ms,
            flist_xfertime_ms: xfer_ms,
        };
        let mut b = Vec::new();
        encode_stats(&mut b, &stats, p);
        s.out.data(&b)?;
        s.out.flush()?;
        crate::logging::log_summary(s, &module, &stats);
        // read_final_goodbye()
        wait_done(s, &rx, idle, &mut xfer)?;
        if p >= 31 {
            let mut b = Vec::new();
            xfer.ndx_out.encode(&mut b, NDX_DONE);
            s.out.data(&b)?;
            s.out.flush()?;
            wait_done(s, &rx, idle, &mut xfer)?;
        }
        Ok(())
    });
    s.out.shutdown();
    // Let the reader see the client's close, bounded.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Event::Failed(_)) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    if reader.is_finished() {
        if let Ok(input) = reader.join() {
            s.input = input;
        }
    }
    result
}

/// The cache key of a session's file list, or `None` when it cannot be
/// shared: `-c` (checksums read file data), `-C` (per-directory
/// `.cvsignore` files are read from disk) and `--files-from` (a private
/// name list).
///
/// The fingerprint covers everything the list's bytes depend on: the
/// negotiated protocol and compat flags, the encoding options, the
/// options the builder reads (`BuildCtx` and `to_file_entry`: keep this
/// in step when they read more), the raw path arguments and the client's
/// filter rules. Module settings are fixed per module; the generation pins
/// the tree.
#[allow(clippy::too_many_arguments)]
fn list_key(
    module: &ModuleRuntime,
    snap: &filelist_cache::Generation,
    fopts: &FlistOptions,
    compat_flags: u32,
    o: &protocol::args::ServerOptions,
    paths: &[Vec<u8>],
    rules: &[Vec<u8>],
    files_from: bool,
) -> Option<ListKey> {
    if o.checksum || o.cvs_exclude || files_from || o.files_from.is_some() {
        return None;
    }
    let mut f = Vec::with_capacity(256);
    let shaping = (
        o.recursive,
        o.dirs,
        o.relative,
        o.implied_dirs,
        o.ignore_missing_args,
        o.secluded_args,
        o.hard_links,
        o.ignore_errors,
        o.use_qsort,
    );
    f.extend_from_slice(format!("{compat_flags:x}|{fopts:?}|{shaping:?}|").as_bytes());
    for list in [paths, rules] {
        f.extend_from_slice(&(list.len() as u64).to_le_bytes());
        for a in list {
            f.extend_from_slice(&(a.len() as u64).to_le_bytes());
            f.extend_from_slice(a);
        }
    }
    Some(ListKey { module: (module.name.clone(), module.listener), generation: snap.number(), fingerprint: f })
}

/// One `--files-from=-` name (NUL-terminated as the client's
/// `send_filesfrom()` writes them); `None` at the empty name that ends the
/// list. `have` names were read so far; more than `max` names or a name
/// longer than `maxlen` is invalid.
fn read_files_from_name(r: &mut Reader<'_>, have: usize, max: usize, maxlen: usize) -> protocol::DecodeResult<Option<Vec<u8>>> {
    let rest = r.rest();
    let Some(n) = rest.iter().take(maxlen + 1).position(|&b| b == 0) else {
        if rest.len() > maxlen {
            return Err(protocol::DecodeError::invalid("files-from", "name too long"));
        }
        return Err(protocol::DecodeError::Incomplete { needed: 1 });
    };
    let name = r.bytes(n + 1)?;
    if n == 0 {
        return Ok(None);
    }
    if have >= max {
        return Err(protocol::DecodeError::invalid("files-from", "too many names"));
    }
    Ok(Some(name[..n].to_vec()))
}

pub(super) fn entry_size(e: &EntryRef<'_>) -> i64 {
    if e.is_symlink() {
        e.link_target().len() as i64
    } else if e.is_file() || e.is_dir() {
        e.size() as i64
    } else {
        0
    }
}

pub(super) fn to_file_entry<'a>(
    e: &EntryRef<'a>,
    name: &'a [u8],
    top_dir: bool,
    no_content: bool,
    o: &protocol::args::ServerOptions,
    checksum: Option<&'a [u8]>,
) -> FileEntry<'a> {
    let is_dev = matches!(e.mode() & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK);
    FileEntry {
        name,
        // MODULE HOOK: `outgoing chmod`.
        mode: super::modopts::outgoing_mode(e.mode()),
        size: entry_size(e),
        mtime: e.mtime(),
        mtime_nsec: e.mtime_nsec(),
        uid: e.uid(),
        gid: e.gid(),
        rdev_major: if is_dev { e.rdev_major() } else { 0 },
        rdev_minor: if is_dev { e.rdev_minor() } else { 0 },
        // MODULE HOOK: `munge symlinks` (the size stays the on-disk length, as stock's st_size).
        link_target: if e.is_symlink() { super::modopts::outgoing_link(e.link_target()) } else { &[] },
        top_dir: top_dir && e.is_dir(),
        no_content_dir: no_content && e.is_dir(),
        hardlink: if o.hard_links && !e.is_dir() && e.nlink() > 1 { Some((e.dev(), e.ino())) } else { None },
        checksum,
    }
}

/// The `-c` checksum of bytes held in memory (a generated file).
pub(super) fn bytes_checksum(data: &[u8], algo: ChecksumAlgo) -> Vec<u8> {
    let mut h = file_list_checksum_hasher(algo);
    h.update(data);
    h.finish()
}

pub(super) fn file_checksum(module: &ModuleRuntime, mpath: &[u8], algo: ChecksumAlgo) -> Vec<u8> {
    let mut h = file_list_checksum_hasher(algo);
    let len = algo.digest_len();
    match module.root.open_file(mpath).and_then(|f| opened_readable(module, mpath, f)) {
        Ok(mut f) => {
            let mut b = vec![0u8; 256 * 1024];
            loop {
                match f.read(&mut b) {
                    Ok(0) => break,
                    Ok(n) => h.update(&b[..n]),
                    Err(_) => return vec![0u8; len],
                }
            }
            h.finish()
        }
        Err(_) => vec![0u8; len],
    }
}

/// ACCESS HOOK: re-check what was opened against the module's identity
/// (`fstat` of the fd, real directories above it); hidden means "vanished".
fn opened_readable(module: &ModuleRuntime, mpath: &[u8], f: std::fs::File) -> std::io::Result<std::fs::File> {
    if module.rules.access.may_read_opened(mpath, &f) {
        Ok(f)
    } else {
        Err(std::io::Error::from_raw_os_error(libc::ENOENT))
    }
}

struct Xfer {
    ndx_out: NdxState,
    tokens: TokenEncoder,
    algo: ChecksumAlgo,
    seed: i32,
    seed_fix: bool,
    buf: Vec<u8>,
    file_buf: Vec<u8>,
    /// `match.c` session totals: matches, hash_hits, false_alarms, literal bytes.
    match_totals: (u32, u32, u32, u64),
    /// The generated `fullfiletimelist`, read from memory (crate::ffl).
    virtual_file: Option<crate::ffl::VirtualFile>,
}

fn recv(s: &mut Session, rx: &mpsc::Receiver<Event>, idle: Option<Duration>) -> Result<Event, SessionError> {
    recv_or(s, rx, idle, &mut |_| Ok(false))
}

/// Next event; while none is waiting, `work` may send more (it returns
/// whether it did; io.c: perform_io() sends extra file lists while it would
/// otherwise wait for input).
fn recv_or(
    s: &mut Session,
    rx: &mpsc::Receiver<Event>,
    idle: Option<Duration>,
    work: &mut dyn FnMut(&mut Session) -> Result<bool, SessionError>,
) -> Result<Event, SessionError> {
    let r = loop {
        match rx.try_recv() {
            Ok(ev) => break Ok(ev),
            Err(mpsc::TryRecvError::Disconnected) => break Err(RecvTimeoutError::Disconnected),
            Err(mpsc::TryRecvError::Empty) => {
                if work(s)? {
                    continue;
                }
                // Never block on input while replies sit in our buffer: the
                // client may be waiting for them before it sends more (io.c
                // flushes likewise).
                s.out.flush()?;
                break match idle {
                    Some(t) => rx.recv_timeout(t),
                    None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
            }
        }
    };
    match r {
        Ok(Event::Failed(InputError::ClientErrorExit(code))) => {
            if s.protocol >= 31 && code.is_some() {
                let _ = s.out.msg(MsgCode::ErrorExit, &[]);
                let _ = s.out.flush();
            }
            Err(SessionError::Input(InputError::ClientErrorExit(code)))
        }
        Ok(Event::Failed(InputError::Protocol(m))) => {
            let text = m.to_string();
            fatal(s, Rerr::Protocol, &text).map(|_| Event::Done)
        }
        Ok(Event::Failed(e)) => Err(e.into()),
        Ok(ev) => Ok(ev),
        Err(RecvTimeoutError::Timeout) => {
            let secs = idle.map(|d| d.as_secs()).unwrap_or(0);
            fatal(s, Rerr::Timeout, &format!("[sender] io timeout after {secs} seconds -- exiting")).map(|_| Event::Done)
        }
        Err(RecvTimeoutError::Disconnected) => Err(SessionError::Input(InputError::Eof)),
    }
}

fn echo_del_stats(s: &mut Session, x: &mut Xfer, v: &[i32]) -> Result<(), SessionError> {
    let mut b = Vec::new();
    x.ndx_out.encode(&mut b, NDX_DEL_STATS);
    for &n in v {
        put_varint(&mut b, n);
    }
    s.out.data(&b)?;
    Ok(())
}

fn wait_done(s: &mut Session, rx: &mpsc::Receiver<Event>, idle: Option<Duration>, x: &mut Xfer) -> Result<(), SessionError> {
    loop {
        match recv(s, rx, idle)? {
            Event::Done => return Ok(()),
            Event::DelStats(v) => {
                echo_del_stats(s, x, &v)?;
                s.out.flush()?;
            }
            Event::Request(r) => {
                return fatal(s, Rerr::Protocol, &format!("Invalid packet at end of run (ndx {}) [sender]", r.ndx));
            }
            Event::Failed(e) => return Err(e.into()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn transfer_loop(
    s: &mut Session,
    module: &ModuleRuntime,
    snap: &Snapshot,
    stream: &mut ListStream<'_, '_>,
    enc_ctx: &EncodeCtx<'_>,
    o: &protocol::args::ServerOptions,
    rx: &mpsc::Receiver<Event>,
    idle: Option<Duration>,
    x: &mut Xfer,
) -> Result<(), SessionError> {
    let p = s.protocol;
    let max_phase = if p >= 29 { 2 } else { 1 };
    let mut phase = 0;
    // sender.c: send_files() save_io_error; list errors found from here on
    // count as well as transfer errors.
    let io_error_at_start = stream.io_error();
    let mut xfer_io_error = 0;
    let inc = stream.incremental_mode();
    loop {
        // sender.c: send_extra_file_list(f_out, MIN_FILECNT_LOOKAHEAD)
        // before each read.
        while inc && !stream.eof() && stream.live_files() < MIN_FILECNT_LOOKAHEAD {
            stream.send_next(s, &mut x.ndx_out, enc_ctx)?;
        }
        // While waiting for the client, send more lists up to
        // MAX_FILECNT_LOOKAHEAD files; always when the client holds only one
        // live list (it cannot retire that one before the next arrives).
        let ev = {
            let ndx_out = &mut x.ndx_out;
            let st = &mut *stream;
            recv_or(s, rx, idle, &mut |s| {
                if !inc || st.eof() || (st.live_files() >= MAX_FILECNT_LOOKAHEAD && st.live_lists() > 1) {
                    return Ok(false);
                }
                st.send_next(s, ndx_out, enc_ctx)
            })?
        };
        let n = stream.end_ndx();
        match ev {
            Event::Done => {
                // sender.c: with inc_recurse each NDX_DONE retires the oldest
                // list; it is echoed while another list is still alive.
                if inc && stream.retire_oldest() {
                    let mut b = Vec::new();
                    x.ndx_out.encode(&mut b, NDX_DONE);
                    s.out.data(&b)?;
                    s.out.flush()?;
                    continue;
                }
                phase += 1;
                if phase > max_phase {
                    break;
                }
                let mut b = Vec::new();
                x.ndx_out.encode(&mut b, NDX_DONE);
                s.out.data(&b)?;
                s.out.flush()?;
            }
            Event::DelStats(v) => {
                echo_del_stats(s, x, &v)?;
                s.out.flush()?;
            }
            Event::Failed(e) => return Err(e.into()),
            Event::Request(r) => {
                if p < 30 && r.ndx == n && r.iflags == ITEM_IS_NEW {
                    continue; // proto 29 keep-alive
                }
                let Some(it) = stream.resolve(r.ndx) else {
                    return fatal(
                        s,
                        Rerr::Protocol,
                        &format!("File-list index {} not in -1 - {} (read_ndx_and_attrs) [sender]", r.ndx, n - 1),
                    );
                };
                // The ndx encoding is delta state: advance it only when the
                // echo really goes out (a file that fails to open is answered
                // with MSG_NO_SEND instead).
                let mut echo = Vec::new();
                let mut ndx_next = x.ndx_out.clone();
                ndx_next.encode(&mut echo, r.ndx);
                if p >= 29 {
                    put_u16(&mut echo, r.iflags);
                    if let Some(t) = r.fnamecmp_type {
                        echo.push(t);
                    }
                    if let Some(xn) = &r.xname {
                        put_vstring(&mut echo, xn);
                    }
                }
                // sender.c: send_files() refuses a transfer request in the
                // last phase (only itemize-only requests are legal there).
                if r.iflags & ITEM_TRANSFER != 0 && phase == 2 {
                    return fatal(s, Rerr::Protocol, "got transfer request in phase 2 [sender]");
                }
                if r.iflags & ITEM_TRANSFER == 0 || o.dry_run {
                    crate::logging::log_unsent(s, module, stream.names(), &it, snap, r.iflags, r.xname.as_deref(), o);
                    if p >= 29 {
                        s.out.data(&echo)?;
                        x.ndx_out = ndx_next;
                    }
                    continue;
                }
                let Some(entry) = snap.entry(it.entry).filter(|e| e.is_file()) else {
                    return fatal(s, Rerr::Protocol, &format!("received request to transfer non-regular file: {} [sender]", r.ndx));
                };
                let Some((head, blocks)) = r.sums else {
                    return fatal(s, Rerr::Protocol, "missing sum head [sender]");
                };
                let queued = crate::logging::queued(s);
                if send_file(s, module, stream.names(), &it, &entry, r.ndx, &echo, head, blocks, x, &mut xfer_io_error)? {
                    x.ndx_out = ndx_next;
                    crate::logging::log_sent(s, module, stream.names(), &it, &entry, r.iflags, &head, queued, o);
                }
            }
        }
    }
    let io_error = stream.io_error() | xfer_io_error;
    if p >= 30 && io_error != io_error_at_start {
        s.out.msg(MsgCode::IoError, &io_error.to_le_bytes())?;
    }
    // match.c match_report(): DEBUG_GTE(DELTASUM, 1), i.e. -vv (after
    // `max verbosity` capped the client's -v count).
    if o.verbose >= 2 {
        let (m, h, f, data) = x.match_totals;
        let line = format!("total: matches={m}  hash_hits={h}  false_alarms={f} data={data}\n");
        s.out.msg(MsgCode::Info, line.as_bytes())?;
    }
    let mut b = Vec::new();
    x.ndx_out.encode(&mut b, NDX_DONE);
    s.out.data(&b)?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn send_file(
    s: &mut Session,
    module: &ModuleRuntime,
    list: &FileList,
    it: &super::flist::ListItem,
    entry: &EntryRef<'_>,
    ndx: i32,
    echo: &[u8],
    head: SumHead,
    blocks: Option<SumBlocks>,
    x: &mut Xfer,
    io_error: &mut i32,
) -> Result<bool, SessionError> {
    let mpath = join(&list.roots[it.root as usize], &list.name(it, entry));
    let noatime = super::modopts::open_noatime();
    let generated = x.virtual_file.as_ref().filter(|v| v.index == it.entry).map(|v| v.content.clone());
    // With the size when opened (`None`: unknown, read to the end).
    let opened = match generated {
        Some(c) => Ok((Box::new(std::io::Cursor::new(c)) as Box<dyn Read>, None)),
        None => module.root.open_file_with(&mpath, noatime).and_then(|f| opened_readable(module, &mpath, f)).map(|f| {
            let size = f.metadata().ok().map(|m| m.len());
            (Box::new(f) as Box<dyn Read>, size)
        }),
    };
    let (mut file, size_at_open) = match opened {
        Ok(f) => f,
        Err(e) => {
            let root = &list.roots[it.root as usize];
            let shown = full_fname(root, &list.name(it, entry), &module.name);
            if files::errno(&e) == libc::ENOENT {
                *io_error |= IOERR_VANISHED;
                s.out.msg(MsgCode::Warning, format!("file has vanished: {shown}\n").as_bytes())?;
            } else {
                *io_error |= IOERR_GENERAL;
                let t = format!("rsync: [sender] send_files failed to open {shown}: {} ({})\n", files::strerror(&e), files::errno(&e));
                s.out.msg(MsgCode::ErrorXfer, t.as_bytes())?;
            }
            if s.protocol >= 30 {
                s.out.msg(MsgCode::NoSend, &ndx.to_le_bytes())?;
            }
            return Ok(false);
        }
    };
    s.out.data(echo)?;
    let mut hb = Vec::with_capacity(16);
    encode_sum_head(&mut hb, &head, s.protocol);
    s.out.data(&hb)?;
    let mut hasher = FileHasher::new(x.algo, x.seed);
    let Some(blocks) = blocks else {
        return fatal(s, Rerr::Protocol, "missing block sums [sender]").map(|()| false);
    };
    let mut matcher = DeltaMatcher::new(head, blocks, x.algo, x.seed, x.seed_fix);
    let mut read_failed = false;
    // Mirrors sender.c send_files() / fileio.c map_ptr(): the file is sent
    // as long as it was when opened (bytes appended meanwhile are not sent);
    // a file that shrinks while it is read is a read error (ENODATA), which
    // poisons the checksum below so the client discards and retries it.
    let mut left = size_at_open;
    loop {
        let want = left.map_or(x.file_buf.len(), |l| usize::try_from(l).unwrap_or(usize::MAX).min(x.file_buf.len()));
        if want == 0 {
            break;
        }
        let n = match file.read(&mut x.file_buf[..want]) {
            Ok(0) if left.is_none() => break,
            Ok(0) => {
                let t = format!(
                    "rsync: [sender] read errors mapping {}: {} ({})\n",
                    full_fname(&list.roots[it.root as usize], &list.name(it, entry), &module.name),
                    files::strerror(&std::io::Error::from_raw_os_error(libc::ENODATA)),
                    libc::ENODATA
                );
                s.out.msg(MsgCode::ErrorXfer, t.as_bytes())?;
                *io_error |= IOERR_GENERAL;
                read_failed = true;
                break;
            }
            Ok(n) => {
                left = left.map(|l| l.saturating_sub(n as u64));
                n
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let root = &list.roots[it.root as usize];
                let t = format!(
                    "rsync: [sender] read errors mapping {}: {} ({})\n",
                    full_fname(root, &list.name(it, entry), &module.name),
                    files::strerror(&e),
                    files::errno(&e)
                );
                s.out.msg(MsgCode::ErrorXfer, t.as_bytes())?;
                *io_error |= IOERR_GENERAL;
                read_failed = true;
                break;
            }
        };
        let data = &x.file_buf[..n];
        hasher.update(data);
        let tokens = &mut x.tokens;
        let buf = &mut x.buf;
        let mut terr = None;
        matcher.push(data, &mut |op| {
            let r = match op {
                DeltaOp::Literal(d) => tokens.literal(buf, d),
                DeltaOp::Match { block, data } => tokens.block_match(buf, block, data),
            };
            if let Err(e) = r {
                terr.get_or_insert(e);
            }
        });
        if let Some(e) = terr {
            return fatal(s, Rerr::StreamIo, &format!("rsync: [sender] compression failed: {e}")).map(|()| false);
        }
        if x.buf.len() >= 64 * 1024 {
            s.out.data(&x.buf)?;
            x.buf.clear();
        }
    }
    let tokens = &mut x.tokens;
    let buf = &mut x.buf;
    let mut terr = None;
    matcher.finish(&mut |op| {
        let r = match op {
            DeltaOp::Literal(d) => tokens.literal(buf, d),
            DeltaOp::Match { block, data } => tokens.block_match(buf, block, data),
        };
        if let Err(e) = r {
            terr.get_or_insert(e);
        }
    });
    let (m, h, f) = matcher.counters();
    let t = &mut x.match_totals;
    *t = (t.0.wrapping_add(m), t.1.wrapping_add(h), t.2.wrapping_add(f), t.3 + matcher.literal_bytes());
    if let Some(e) = terr.or_else(|| x.tokens.end_file(&mut x.buf).err()) {
        return fatal(s, Rerr::StreamIo, &format!("rsync: [sender] compression failed: {e}")).map(|()| false);
    }
    let mut sum = hasher.finish();
    if read_failed {
        // sender.c: a deliberately wrong checksum makes the receiver reject the file.
        if sum.iter().all(|&b| b == 0) {
            if let Some(l) = sum.last_mut() {
                *l = 1;
            }
        } else {
            sum.iter_mut().for_each(|b| *b = 0);
        }
    }
    x.buf.extend_from_slice(&sum);
    s.out.data(&x.buf)?;
    x.buf.clear();
    Ok(true)
}

#[cfg(test)]
mod files_from_tests {
    use super::*;

    fn one(b: &[u8], have: usize, max: usize, maxlen: usize) -> protocol::DecodeResult<(Option<Vec<u8>>, usize)> {
        with_reader(b, |r| read_files_from_name(r, have, max, maxlen))
    }

    #[test]
    fn names_decode_one_at_a_time_until_the_empty_name() {
        let wire = b"a/b\0c\0\0rest";
        let (n, used) = one(wire, 0, 10, 100).unwrap();
        assert_eq!((n.as_deref(), used), (Some(&b"a/b"[..]), 4));
        let (n, used2) = one(&wire[used..], 1, 10, 100).unwrap();
        assert_eq!((n.as_deref(), used2), (Some(&b"c"[..]), 2));
        let (n, used3) = one(&wire[used + used2..], 2, 10, 100).unwrap();
        assert_eq!((n, used3), (None, 1));
    }

    #[test]
    fn a_partial_name_waits_and_limits_are_invalid() {
        assert!(matches!(one(b"abc", 0, 10, 100), Err(protocol::DecodeError::Incomplete { .. })));
        assert!(matches!(one(b"abcdef", 0, 10, 4), Err(protocol::DecodeError::Invalid { .. })));
        assert!(matches!(one(b"abcdef\0", 0, 10, 4), Err(protocol::DecodeError::Invalid { .. })));
        assert!(matches!(one(b"abc\0", 10, 10, 100), Err(protocol::DecodeError::Invalid { .. })));
        // The terminator is fine at the limit.
        assert_eq!(one(b"\0", 10, 10, 100).unwrap(), (None, 1));
    }
}
