//! Fuzz-target bodies, one function per decoder, shared by the cargo-fuzz
//! targets in `fuzz/` and the corpus replay test (`tests/fuzz_corpus.rs`) so
//! the two never drift apart.
//!
//! Each function takes arbitrary bytes, drives one decoder over them and
//! panics only when an invariant breaks: a decoder consumed more than it was
//! given, a decoded value does not survive encode → decode, or an
//! `Incomplete` answer left the reader moved. Decoder errors are expected
//! and ignored. Option bytes at the start of the input pick the protocol
//! version and options, so one corpus covers every variant.
//!
//! Not part of the crate's API: hidden from the docs, and never called by
//! the daemon.

use crate::args::{decode_arg_list, parse_server_args, unbackslash_arg};
use crate::error::DecodeError;
use crate::filter::{CmdlineFilter, DaemonFilterParams, FilterList};
use crate::flist::{
    mode_is_device, mode_is_lnk, mode_is_reg, mode_is_special, FileEntry, FlistDecoder, FlistEncoder, FlistOptions, NoNames, OwnedEntry,
};
use crate::greeting::{
    negotiate_protocol, parse_client_greeting, parse_module_line, take_line, ModuleRequest, MAX_EARLY_INPUT, MIN_PROTOCOL, OUR_PROTOCOL,
};
use crate::limits::Limits;
use crate::mux::{decode_header, put_frame, put_header, MsgCode, MAX_FRAME_PAYLOAD};
use crate::ndx::NdxState;
use crate::sums::{decode_sum_blocks, decode_sum_head, encode_sum_blocks, encode_sum_head};
use crate::wire::{put_i32, Reader};

/// Option bytes at the front of an input; missing bytes read as 0.
struct Opts<'a> {
    data: &'a [u8],
}

impl<'a> Opts<'a> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Protocol 27..=32 from one byte.
    fn protocol(&mut self) -> u8 {
        27 + self.byte() % 6
    }
}

/// Small limits, so that a fuzzer reaches every limit check with short
/// inputs; chosen by a bit of the option byte.
fn small_limits() -> Limits {
    Limits {
        max_line: 64,
        max_arg_len: 32,
        max_args: 8,
        max_filter_rule_len: 32,
        max_filter_rules: 8,
        max_msg_payload: 64,
        max_sum_blocks: 16,
        max_block_len: 1024,
        max_vstring: 32,
        max_files_from: 8,
        max_path_len: 64,
    }
}

fn limits_for(small: bool) -> Limits {
    if small {
        small_limits()
    } else {
        Limits::default()
    }
}

/// The text phase: lines, the client greeting and the module line
/// (`greeting.rs`). Input: `[max_line selector] lines...`.
pub fn greeting(data: &[u8]) {
    let mut o = Opts { data };
    let limits = limits_for(o.byte() & 1 != 0);
    let mut buf = o.data;
    let mut first = true;
    loop {
        match take_line(buf, limits.max_line) {
            Ok((line, used)) => {
                assert_eq!(used, line.len() + 1, "take_line: consumed != line + newline");
                assert!(used <= buf.len(), "take_line consumed more than given");
                assert!(line.len() <= limits.max_line);
                assert!(!line.contains(&0) && !line.contains(&b'\n'));
                buf = &buf[used..];
                if first {
                    first = false;
                    greeting_line(line);
                } else if let Ok(ModuleRequest::EarlyInput(n)) = parse_module_line(line) {
                    assert!(n > 0 && n <= MAX_EARLY_INPUT);
                    buf = &buf[n.min(buf.len())..];
                }
            }
            Err(DecodeError::Incomplete { needed }) => {
                assert!(needed > 0);
                assert!(buf.len() <= limits.max_line && !buf.contains(&b'\n') && !buf.contains(&0));
                break;
            }
            Err(_) => break,
        }
    }
}

fn greeting_line(line: &[u8]) {
    let Ok(g) = parse_client_greeting(line) else {
        return;
    };
    assert!(g.protocol >= 0);
    if let Ok(p) = negotiate_protocol(&g) {
        assert!((MIN_PROTOCOL..=OUR_PROTOCOL).contains(&p), "negotiated {p}");
    }
    // Round trip: the greeting as a client would write it parses the same.
    let digests_ok = match &g.digests {
        Some(d) => !d.is_empty(),
        None => true,
    };
    if let (Some(sub), true) = (g.subprotocol, digests_ok) {
        let mut text = format!("@RSYNCD: {}.{}", g.protocol, sub);
        if let Some(d) = &g.digests {
            text.push(' ');
            text.push_str(&d.join(" "));
        }
        // The parser drops one trailing `\r` (CRLF clients): a list that
        // ends in one needs one more, as a line `... \r\r\n` would have.
        if text.ends_with('\r') {
            text.push('\r');
        }
        let again = parse_client_greeting(text.as_bytes()).expect("re-encoded greeting parses");
        assert_eq!(again, g, "greeting round trip");
    }
}

/// The server argument vector(s) (`args.rs`). Input: `[flags] list1 [list2]`;
/// flags bit 0: NUL-separated first list, bit 1: small limits.
pub fn args(data: &[u8]) {
    let mut o = Opts { data };
    let flags = o.byte();
    let nul = flags & 1 != 0;
    let limits = limits_for(flags & 2 != 0);
    let buf = o.data;
    let Ok((first, used)) = arg_list(buf, nul, &limits) else {
        return;
    };
    // The secluded-args list is always NUL-separated.
    let rest = &buf[used..];
    let second = match arg_list(rest, true, &limits) {
        Ok((list, _)) => Some(list),
        Err(_) => None,
    };
    for a in &first {
        let u = unbackslash_arg(a);
        assert!(u.len() <= a.len());
    }
    if let Ok(p) = parse_server_args(&first, second.as_deref()) {
        assert!(p.options.server && p.options.sender, "accepted without --server --sender");
        let _ = p.options.wants_compression();
        let _ = p.options.requested_options();
    }
}

/// `decode_arg_list` plus its invariants and an encode → decode round trip.
fn arg_list(buf: &[u8], nul: bool, limits: &Limits) -> Result<(Vec<Vec<u8>>, usize), DecodeError> {
    let (list, used) = decode_arg_list(buf, nul, limits)?;
    assert!(used <= buf.len(), "decode_arg_list consumed more than given");
    assert!(list.len() <= limits.max_args);
    let term = if nul { 0 } else { b'\n' };
    let mut enc = Vec::new();
    for a in &list {
        assert!(!a.is_empty() && a.len() <= limits.max_arg_len);
        assert!(!a.contains(&0));
        if !nul {
            assert!(!a.contains(&b'\n') && !a.contains(&b'\r'));
        }
        enc.extend_from_slice(a);
        enc.push(term);
    }
    enc.push(term);
    if nul {
        assert_eq!(enc, buf[..used], "NUL-separated list re-encodes to other bytes");
    }
    assert_eq!(enc.len(), used);
    let (again, used2) = decode_arg_list(&enc, nul, limits).expect("re-encoded list decodes");
    assert_eq!((&again, used2), (&list, enc.len()), "argument list round trip");
    Ok((list, used))
}

/// Filter rules (`filter.rs`): the wire list, rule parsing and matching.
/// Input: `[protocol] [flags] wire list, then NUL-separated names`.
pub fn filter(data: &[u8]) {
    let mut o = Opts { data };
    let protocol = o.protocol();
    let flags = o.byte();
    let limits = limits_for(flags & 1 != 0);
    let mut r = Reader::new(o.data);
    let rules = match crate::filter::decode_filter_list(&mut r, &limits) {
        Ok(rules) => rules,
        Err(e) => {
            if e.is_incomplete() {
                // Treat what arrived as the rule text of daemon parameters instead.
                daemon_filters(o.data, flags);
            }
            return;
        }
    };
    let used = r.consumed();
    assert!(used <= o.data.len());
    assert!(rules.len() <= limits.max_filter_rules);
    let mut enc = Vec::new();
    for rule in &rules {
        assert!(!rule.is_empty() && rule.len() <= limits.max_filter_rule_len);
        put_i32(&mut enc, rule.len() as i32);
        enc.extend_from_slice(rule);
    }
    put_i32(&mut enc, 0);
    assert_eq!(enc, o.data[..used], "filter list round trip");
    let names: Vec<&[u8]> = r.rest().split(|&b| b == 0).take(16).collect();
    if let Ok(list) = FilterList::from_client_rules(&rules, protocol) {
        assert!(list.len() <= rules.len() + 1);
        check_names(&list, &names);
    }
    let mut list = FilterList::default();
    for (i, rule) in rules.iter().enumerate() {
        let kind = match i % 3 {
            0 => CmdlineFilter::Filter,
            1 => CmdlineFilter::Exclude,
            _ => CmdlineFilter::Include,
        };
        if list.add_cmdline(kind, rule).is_err() {
            break;
        }
    }
    if flags & 2 != 0 {
        list.add_cvs_excludes(protocol);
    }
    check_names(&list, &names);
}

fn daemon_filters(text: &[u8], flags: u8) {
    let p = DaemonFilterParams {
        filter: &[text.to_vec()],
        include_from: (flags & 4 != 0).then_some(text),
        exclude_from: (flags & 8 != 0).then_some(text),
        ..DaemonFilterParams::default()
    };
    if let Ok(list) = FilterList::from_daemon_config(&p) {
        let names: Vec<&[u8]> = text.split(|&b| b == b' ' || b == b'\n').take(16).collect();
        check_names(&list, &names);
    }
}

fn check_names(list: &FilterList, names: &[&[u8]]) {
    const FIXED: [&[u8]; 6] = [b"a", b"dir/file.txt", b".git", b"x/y/z", b"core", b"."];
    for name in names.iter().copied().chain(FIXED) {
        if name.len() > 4096 {
            continue;
        }
        let base = name.rsplit(|&b| b == b'/').next().unwrap_or(name);
        for is_dir in [false, true] {
            let _ = list.check(base, name, is_dir);
            let _ = list.check(name, name, is_dir);
        }
    }
}

/// Multiplexed frame headers (`mux.rs`). Input: `[max_payload selector]
/// frames...`. Also checks `put_frame` → `decode_header` on the input.
pub fn mux(data: &[u8]) {
    let mut o = Opts { data };
    let max_payload = match o.byte() % 3 {
        0 => 0,
        1 => 64,
        _ => Limits::default().max_msg_payload,
    };
    let mut buf = o.data;
    loop {
        match decode_header(buf, max_payload) {
            Ok(h) => {
                assert!(buf.len() >= 4);
                assert!(h.code == MsgCode::Data || h.len <= max_payload);
                let mut enc = Vec::new();
                put_header(&mut enc, h.code, h.len);
                assert_eq!(enc, buf[..4], "frame header round trip");
                let end = 4usize.saturating_add(h.len);
                if end > buf.len() {
                    break;
                }
                buf = &buf[end..];
            }
            Err(DecodeError::Incomplete { needed }) => {
                assert!(buf.len() < 4 && needed == 4 - buf.len());
                break;
            }
            Err(_) => break,
        }
    }
    // put_frame: the frames it writes decode back to the payload.
    let code = MsgCode::from_code(data.first().copied().unwrap_or(0) % 110).unwrap_or(MsgCode::Data);
    let payload = o.data;
    let mut out = Vec::new();
    put_frame(&mut out, code, payload);
    let mut rest = &out[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        let h = decode_header(rest, MAX_FRAME_PAYLOAD).expect("put_frame output decodes");
        assert_eq!(h.code, code);
        got.extend_from_slice(&rest[4..4 + h.len]);
        rest = &rest[4 + h.len..];
    }
    assert_eq!(got, payload, "put_frame round trip");
}

/// File indexes (`ndx.rs`). Input: `[protocol] ndx bytes...`. The decoded
/// sequence, re-encoded with a fresh state, decodes to the same sequence;
/// an `Incomplete` leaves the reader where it was.
pub fn ndx(data: &[u8]) {
    let mut o = Opts { data };
    let protocol = o.protocol();
    let mut st = NdxState::new(protocol);
    let mut r = Reader::new(o.data);
    let mut seq = Vec::new();
    while r.remaining() > 0 && seq.len() < 4096 {
        let before = r.consumed();
        match st.decode(&mut r) {
            Ok(v) => {
                assert!(r.consumed() > before, "ndx decoded without consuming");
                seq.push(v);
            }
            Err(_) => {
                assert_eq!(r.consumed(), before, "failed ndx decode moved the reader");
                break;
            }
        }
    }
    let mut enc_state = NdxState::new(protocol);
    let mut enc = Vec::new();
    for &v in &seq {
        enc_state.encode(&mut enc, v);
    }
    let mut dec_state = NdxState::new(protocol);
    let mut r = Reader::new(&enc);
    for &v in &seq {
        let got = dec_state.decode(&mut r).expect("re-encoded ndx decodes");
        assert_eq!(got, v, "ndx round trip");
    }
    assert_eq!(r.remaining(), 0);
}

/// Sum heads and block sums (`sums.rs`). Input: `[protocol] [digest/limits]
/// head blocks...`. Both re-encode to exactly the bytes they came from.
pub fn sums(data: &[u8]) {
    let mut o = Opts { data };
    let protocol = o.protocol();
    let sel = o.byte();
    let digest_len = [16usize, 20, 8, 32, 64, 0][usize::from(sel % 6)];
    let limits = limits_for(sel & 0x80 != 0);
    let buf = o.data;
    let mut r = Reader::new(buf);
    let head = match decode_sum_head(&mut r, protocol, digest_len, &limits) {
        Ok(h) => h,
        Err(e) => {
            if e.is_incomplete() {
                assert_eq!(r.consumed(), 0, "incomplete sum head consumed bytes");
            }
            return;
        }
    };
    assert_eq!(r.consumed(), 16);
    let mut enc = Vec::new();
    encode_sum_head(&mut enc, &head, protocol);
    assert_eq!(enc, buf[..16], "sum head round trip");
    assert!(head.count >= 0 && head.blength >= 0 && head.remainder >= 0);
    assert!(head.remainder <= head.blength);
    if head.count > 0 {
        let last = (head.count - 1) as u32;
        assert!(head.block_len(last) <= head.blength as usize);
        assert!(head.basis_len() >= head.block_offset(last));
    }
    let before = r.consumed();
    match decode_sum_blocks(&mut r, &head) {
        Ok(blocks) => {
            assert_eq!(blocks.len(), head.count as usize);
            let used = r.consumed() - before;
            let mut enc = Vec::new();
            encode_sum_blocks(&mut enc, &blocks);
            assert_eq!(enc, buf[before..before + used], "sum blocks round trip");
        }
        Err(e) => {
            assert!(e.is_incomplete(), "valid head, invalid blocks: {e}");
            assert_eq!(r.consumed(), before, "incomplete blocks consumed bytes");
        }
    }
}

/// The file list (`flist/decode.rs`). Input: `[protocol] [options] [options2]
/// list bytes...`. Checks that a failed decode leaves reader and state
/// alone, and (without hard links) that the decoded entries, re-encoded with
/// [`FlistEncoder`], decode to the same entries.
pub fn flist(data: &[u8]) {
    let mut o = Opts { data };
    let protocol = o.protocol();
    let f = o.byte();
    let g = o.byte();
    let opts = FlistOptions {
        protocol,
        varint_flags: f & 1 != 0,
        preserve_uid: f & 2 != 0,
        preserve_gid: f & 4 != 0,
        preserve_links: f & 8 != 0,
        preserve_devices: f & 16 != 0,
        preserve_specials: f & 32 != 0,
        preserve_hard_links: f & 64 != 0,
        checksum_len: match g & 3 {
            0 => None,
            1 => Some(2),
            2 => Some(16),
            _ => Some(20),
        },
        inc_recurse: f & 128 != 0,
        id0_names: g & 4 != 0,
        numeric_ids: g & 8 != 0,
        safe_flist: g & 16 != 0,
    };
    let limits = limits_for(g & 32 != 0);
    let mut dec = FlistDecoder::with_limits(opts.clone(), limits.clone());
    let mut r = Reader::new(o.data);
    let mut lists: Vec<Vec<OwnedEntry>> = vec![Vec::new()];
    let mut ndx_start = dec.ndx_start();
    let mut complete = false;
    'lists: for _ in 0..16 {
        loop {
            let before = r.consumed();
            match dec.decode_entry(&mut r) {
                Ok(Some(e)) => {
                    assert!(r.consumed() > before);
                    assert!(e.name.len() < limits.max_path_len);
                    assert!(!e.name.contains(&0) && e.size >= 0);
                    lists.last_mut().expect("one list").push(e);
                    assert_eq!(dec.entries(), lists.last().expect("one list").as_slice());
                }
                Ok(None) => break,
                Err(_) => {
                    assert_eq!(r.consumed(), before, "failed flist decode moved the reader");
                    break 'lists;
                }
            }
        }
        if !opts.inc_recurse_active() {
            let before = r.consumed();
            match dec.decode_trailer(&mut r) {
                Ok(_) => complete = true,
                Err(_) => assert_eq!(r.consumed(), before, "failed trailer moved the reader"),
            }
            break;
        }
        ndx_start = ndx_start.saturating_add(lists.last().map_or(0, |l| l.len() as i32) + 1);
        dec.start_list(ndx_start);
        assert!(dec.entries().is_empty());
        lists.push(Vec::new());
        complete = true;
    }
    assert!(r.consumed() <= o.data.len());
    if complete && !opts.preserve_hard_links {
        flist_round_trip(&opts, &limits, &lists);
    }
}

/// Re-encodes decoded lists and decodes them again. Fields the encoder sends
/// differently on purpose are normalised: device/special sizes (always 0),
/// nanoseconds below protocol 31 (not sent), special rdevs (dummy values).
fn flist_round_trip(opts: &FlistOptions, limits: &Limits, lists: &[Vec<OwnedEntry>]) {
    let p = opts.protocol;
    let mut enc = FlistEncoder::new(opts.clone());
    let mut out = Vec::new();
    let mut ndx_start = if opts.inc_recurse_active() { 1 } else { 0 };
    let mut starts = Vec::new();
    for list in lists {
        for e in list {
            if (opts.preserve_links && mode_is_lnk(e.mode) && e.link_target.is_empty())
                || e.name.is_empty()
                || e.hardlink_ref.is_some()
                || e.dev_ino.is_some()
            {
                return; // the encoder's caller never sends these
            }
        }
    }
    for list in lists {
        starts.push(ndx_start);
        for (i, e) in list.iter().enumerate() {
            let mut fe = FileEntry::new(&e.name, e.mode);
            fe.size = e.size;
            fe.mtime = e.mtime;
            fe.mtime_nsec = e.mtime_nsec;
            fe.uid = e.uid;
            fe.gid = e.gid;
            fe.rdev_major = e.rdev_major;
            fe.rdev_minor = e.rdev_minor;
            fe.link_target = &e.link_target;
            fe.top_dir = e.flags & crate::flist::XMIT_TOP_DIR != 0;
            fe.checksum = (mode_is_reg(e.mode) && !e.checksum.is_empty()).then_some(e.checksum.as_slice());
            enc.encode_entry(&mut out, &fe, ndx_start + i as i32, ndx_start, &NoNames);
        }
        enc.encode_end(&mut out, 0);
        ndx_start += list.len() as i32 + 1;
    }
    if !opts.inc_recurse_active() {
        enc.encode_trailer(&mut out, 0, &NoNames);
    }
    let mut dec = FlistDecoder::with_limits(opts.clone(), limits.clone());
    let mut r = Reader::new(&out);
    for (li, list) in lists.iter().enumerate() {
        if li > 0 {
            dec.start_list(starts[li]);
        }
        for e in list {
            let got = dec
                .decode_entry(&mut r)
                .unwrap_or_else(|err| panic!("re-encoded entry {:?} fails: {err}", e.name))
                .expect("an entry, not the end");
            let norm = |x: &OwnedEntry| {
                let dev = mode_is_device(x.mode);
                let special = mode_is_special(x.mode);
                (
                    x.name.clone(),
                    x.mode,
                    if dev || special { 0 } else { x.size },
                    x.mtime,
                    if p >= 31 { x.mtime_nsec } else { 0 },
                    if opts.preserve_uid { x.uid } else { 0 },
                    if opts.preserve_gid { x.gid } else { 0 },
                    if dev && opts.preserve_devices { (x.rdev_major, x.rdev_minor) } else { (0, 0) },
                    if opts.preserve_links { x.link_target.clone() } else { Vec::new() },
                    if mode_is_reg(x.mode) { x.checksum.clone() } else { Vec::new() },
                )
            };
            assert_eq!(norm(&got), norm(e), "flist round trip");
        }
        assert_eq!(dec.decode_entry(&mut r).expect("end marker"), None);
    }
    if !opts.inc_recurse_active() {
        dec.decode_trailer(&mut r).expect("trailer");
    }
    assert_eq!(r.remaining(), 0, "round trip left bytes");
}

/// Corpus replay for the workspace tests (`tests/fuzz_corpus.rs` of each
/// crate): the committed inputs of one target run through its body.
pub mod replay {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::{Path, PathBuf};

    /// The `fuzz/` directory of the repository, from a crate's manifest dir.
    pub fn fuzz_dir(manifest_dir: &str) -> PathBuf {
        Path::new(manifest_dir).join("..").join("fuzz")
    }

    /// The input files of `target`: `corpus/<target>/*` then
    /// `regressions/<target>/*`, each sorted by name (dot files skipped).
    pub fn inputs(fuzz_dir: &Path, target: &str) -> Vec<PathBuf> {
        let mut all = Vec::new();
        for sub in ["corpus", "regressions"] {
            let Ok(rd) = std::fs::read_dir(fuzz_dir.join(sub).join(target)) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
                .collect();
            files.sort();
            all.extend(files);
        }
        all
    }

    /// Runs `body` on `data`; on a panic, returns `Err(label)` instead of
    /// unwinding (the panic message has been printed by the hook).
    pub fn run(label: &str, data: &[u8], body: fn(&[u8])) -> Result<(), String> {
        catch_unwind(AssertUnwindSafe(|| body(data))).map_err(|_| label.to_string())
    }

    /// Replays every input file of `target` and the in-memory `seeds`
    /// through `body`. Panics listing every input that panicked, or when
    /// the target has no committed corpus. Returns the number of files run.
    pub fn replay(fuzz_dir: &Path, target: &str, seeds: &[(&str, Vec<u8>)], body: fn(&[u8])) -> usize {
        let files = inputs(fuzz_dir, target);
        let corpus = fuzz_dir.join("corpus").join(target);
        assert!(files.iter().any(|f| f.starts_with(&corpus)), "no committed corpus in {}", corpus.display());
        let mut failed = Vec::new();
        for f in &files {
            let data = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if let Err(l) = run(&f.display().to_string(), &data, body) {
                failed.push(l);
            }
        }
        for (name, data) in seeds {
            if let Err(l) = run(&format!("seed {name}"), data, body) {
                failed.push(l);
            }
        }
        assert!(failed.is_empty(), "{target}: inputs that panicked:\n  {}", failed.join("\n  "));
        files.len()
    }

    /// Runs the committed regression input `regressions/<target>/<case>`
    /// through `body` (panicking as the fuzzer's crash did, if it returns).
    pub fn regression(fuzz_dir: &Path, target: &str, case: &str, body: fn(&[u8])) {
        let p = fuzz_dir.join("regressions").join(target).join(case);
        let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        body(&data);
    }

    /// Writes `seeds` as `corpus/<target>/seed-<name>` (used by the
    /// ignored `write_seeds` tests to refresh the committed seed files).
    pub fn write_seeds(fuzz_dir: &Path, target: &str, seeds: &[(&str, Vec<u8>)]) {
        let dir = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        for (name, data) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), data).expect("write seed");
        }
    }
}
