//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/`) and the
//! regression inputs (`fuzz/regressions/<target>/`) of the protocol
//! decoders through the very bodies the cargo-fuzz targets run
//! (`protocol::fuzz_entry`), plus seeds built here by our encoders and from
//! recorded stock traffic. Needs neither nightly nor cargo-fuzz.
//!
//! The seed files in `fuzz/corpus/*/seed-*` come from the builders below:
//! `cargo test -p protocol --test fuzz_corpus -- --ignored write_seeds`
//! rewrites them.

use std::path::{Path, PathBuf};

use protocol::checksum::ChecksumAlgo;
use protocol::flist::{FileEntry, FlistEncoder, FlistOptions, NoNames};
use protocol::fuzz_entry as fe;
use protocol::fuzz_entry::replay::{fuzz_dir, regression, replay, run, write_seeds};
use protocol::mux::{decode_header, put_frame, MsgCode};
use protocol::ndx::{NdxState, NDX_DONE, NDX_FLIST_EOF, NDX_FLIST_OFFSET};
use protocol::sums::{encode_sum_blocks, encode_sum_head, SumBlocks, SumHead};
use protocol::wire::put_i32;

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn dir() -> PathBuf {
    fuzz_dir(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stock").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The first `n` lines of `b`, newlines included.
fn lines(b: &[u8], n: usize) -> &[u8] {
    let mut end = 0;
    for _ in 0..n {
        match b[end..].iter().position(|&c| c == b'\n') {
            Some(i) => end += i + 1,
            None => return b,
        }
    }
    &b[..end]
}

/// Where the multiplexed part of a recorded stream starts: the first offset
/// after the text phase from which frames decode cleanly to the end.
fn mux_start(stream: &[u8]) -> usize {
    let ok = |mut b: &[u8]| {
        while !b.is_empty() {
            match decode_header(b, 1 << 20) {
                Ok(h) if 4 + h.len <= b.len() => b = &b[4 + h.len..],
                _ => return false,
            }
        }
        true
    };
    let text_end = stream.windows(12).position(|w| w == b"@RSYNCD: OK\n").map_or(0, |i| i + 12);
    (text_end..stream.len()).find(|&i| ok(&stream[i..])).expect("a multiplexed tail")
}

/// The concatenated `MSG_DATA` payloads of a recorded stream.
fn demux(stream: &[u8]) -> Vec<u8> {
    let mut b = &stream[mux_start(stream)..];
    let mut out = Vec::new();
    while !b.is_empty() {
        let h = decode_header(b, 1 << 20).expect("frame");
        if h.code == MsgCode::Data {
            out.extend_from_slice(&b[4..4 + h.len]);
        }
        b = &b[4 + h.len..];
    }
    out
}

fn greeting_seeds() -> Seeds {
    let p31 = fixture("pull-hello-p31/c2s.bin");
    let p29 = fixture("pull-hello-p29/c2s.bin");
    vec![
        ("stock-p31", cat(&[&[0], lines(&p31, 2)])),
        ("stock-p29", cat(&[&[0], lines(&p29, 2)])),
        ("list", b"\x00@RSYNCD: 30.0\n#list\n".to_vec()),
        ("early-input", b"\x00@RSYNCD: 31.0 md5 md4\n#early_input=5\nabcde\nmod\n".to_vec()),
        ("old-26", b"\x00@RSYNCD: 26\n\n".to_vec()),
        ("no-digests", b"\x00@RSYNCD: 32.0\r\nmod\r\n".to_vec()),
        ("http", b"\x00GET / HTTP/1.1\r\n".to_vec()),
        ("long-line-small-limits", cat(&[&[1], &[b'a'; 80], b"\n"])),
    ]
}

fn arg_wire(flags: u8, first: &[&str], second: Option<&[&str]>) -> Vec<u8> {
    let sep = if flags & 1 != 0 { 0 } else { b'\n' };
    let mut w = vec![flags];
    for a in first {
        w.extend_from_slice(a.as_bytes());
        w.push(sep);
    }
    w.push(sep);
    if let Some(s) = second {
        for a in s {
            w.extend_from_slice(a.as_bytes());
            w.push(0);
        }
        w.push(0);
    }
    w
}

fn args_seeds() -> Seeds {
    let p31 = fixture("pull-hello-p31/c2s.bin");
    let p29 = fixture("pull-hello-p29/c2s.bin");
    let after_text = |b: &[u8]| lines(b, 2).len();
    vec![
        ("stock-p31", cat(&[&[1], &p31[after_text(&p31)..]])),
        ("stock-p29", cat(&[&[0], &p29[after_text(&p29)..]])),
        ("avz", arg_wire(1, &["--server", "--sender", "-vlogDtprze.iLsfxCIvu", ".", "mod/"], None)),
        ("secluded", arg_wire(1, &["--server", "--sender", "-slogDtpre.iLsfxCIvu"], Some(&["rsync", ".", "mod/"]))),
        ("secluded-p29", arg_wire(0, &["--server", "--sender", "-slogDtpr", "(null)", ".", "mod/"], Some(&["rsync", ".", "mod/"]))),
        ("proto27", arg_wire(0, &["--server", "--sender", "-logDtpr", ".", "mod/"], None)),
        (
            "many-options",
            arg_wire(
                1,
                &[
                    "--server",
                    "--sender",
                    "-vvqbunlLkWHHogDtprcCIRxxSze.LsfxCIvu",
                    "--no-specials",
                    "--backup-dir",
                    "b\\ k",
                    "--suffix=a\\ b\\\\c\\*",
                    "--checksum-seed=7",
                    "--compress-choice=zstd",
                    "--compress-level=3",
                    "--checksum-choice=xxh3",
                    "--files-from=-",
                    "--from0",
                    "--exclude=*.o",
                    "--block-size=2048",
                    "--timeout=30",
                    "--bwlimit=100",
                    "--max-alloc=1G",
                    ".",
                    "mod/a",
                    "mod/b",
                ],
                None,
            ),
        ),
        ("push", arg_wire(1, &["--server", "-logDtpre.iLsfxCIvu", ".", "mod/"], None)),
        ("too-many-small", arg_wire(3, &["a", "b", "c", "d", "e", "f", "g", "h", "i"], None)),
    ]
}

fn filter_wire(protocol: u8, flags: u8, rules: &[&str], names: &[&str]) -> Vec<u8> {
    let mut w = vec![protocol - 27, flags];
    for r in rules {
        put_i32(&mut w, r.len() as i32);
        w.extend_from_slice(r.as_bytes());
    }
    put_i32(&mut w, 0);
    w.extend_from_slice(names.join("\0").as_bytes());
    w
}

fn filter_seeds() -> Seeds {
    let names = ["a.o", "src/main.c", "dir/", "deep/x/y/z.txt", ".git", "CVS"];
    vec![
        ("empty", filter_wire(31, 0, &[], &names)),
        ("exclude-include", filter_wire(31, 0, &["- *.o", "+ */", "+ *.c", "- *"], &names)),
        (
            "modifiers",
            filter_wire(
                31,
                2,
                &["-/ /abs/**", "+! keep", "-s sender-only", "-r receiver-only", "P protect", "H hide", "S show", "x user.*", "-C", "!"],
                &names,
            ),
        ),
        ("long-names", filter_wire(30, 0, &["exclude **/tmp/***", "include,/ dir/***", "hide,s *.bak"], &names)),
        ("old-prefixes-p28", filter_wire(28, 0, &["- foo", "+ bar", "!", "baz/"], &names)),
        ("merge-refused", filter_wire(31, 0, &[". /etc/passwd", ": .rsync-filter", "dir-merge,- .ex"], &names)),
        ("wildcards", filter_wire(32, 0, &["- [a-z]*[!0-9]?.txt", "- **/x/**/y", "- \\*literal"], &names)),
        ("daemon-text", vec![4, 12, b'-', b' ', b'/', b'x', b'\n', b'+', b' ', b'y', b'/']),
    ]
}

fn mux_seeds() -> Seeds {
    let s2c = fixture("pull-hello-p31/s2c.bin");
    let c2s = fixture("pull-hello-p31/c2s.bin");
    let mut frames = vec![2];
    put_frame(&mut frames, MsgCode::Info, b"hello\n");
    put_frame(&mut frames, MsgCode::Data, b"data bytes");
    put_frame(&mut frames, MsgCode::ErrorExit, &[0, 0, 0, 0]);
    put_frame(&mut frames, MsgCode::IoError, &[1, 0, 0, 0]);
    put_frame(&mut frames, MsgCode::NoSend, &[5, 0, 0, 0]);
    vec![
        ("stock-s2c-p31", cat(&[&[2], &s2c[mux_start(&s2c)..]])),
        ("stock-c2s-p31", cat(&[&[2], &c2s[mux_start(&c2s)..]])),
        ("frames", frames),
        ("too-long-small", vec![1, 0xff, 0, 0, 8]),
    ]
}

fn ndx_seeds() -> Seeds {
    let seq = [0, 1, 2, 3, NDX_DONE, 250, 251, 600, 70000, NDX_FLIST_EOF, NDX_FLIST_OFFSET - 5, 4, 100_000_000, NDX_DONE];
    let mut out = Vec::new();
    for p in [31u8, 29] {
        let mut st = NdxState::new(p);
        let mut w = vec![p - 27];
        for v in seq {
            st.encode(&mut w, v);
        }
        out.push(if p == 31 { ("p31", w) } else { ("p29", w) });
    }
    let c2s = fixture("pull-hello-p31/c2s.bin");
    let data = demux(&c2s);
    // The generator's requests after the (empty) filter list: ndx, iflags, sum head...
    out.push(("stock-c2s-p31", cat(&[&[4], &data[4..]])));
    out.push(("negative-zero", vec![4, 0xff, 0xfe, 0x80, 0, 0, 0]));
    out
}

fn sums_seed(protocol: u8, sel: u8, algo: ChecksumAlgo, basis: &[u8], csum_len: usize, block: i32) -> Vec<u8> {
    let head = SumHead::for_basis_len(basis.len() as u64, protocol, algo.digest_len(), csum_len, block).expect("head");
    let blocks = SumBlocks::from_basis(basis, &head, algo, 1, true);
    let mut w = vec![protocol - 27, sel];
    encode_sum_head(&mut w, &head, protocol);
    encode_sum_blocks(&mut w, &blocks);
    w
}

fn sums_seeds() -> Seeds {
    let basis: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    vec![
        ("md5-p31-short", sums_seed(31, 0, ChecksumAlgo::Md5, &basis, 2, 0)),
        ("md5-p31-redo", sums_seed(31, 0, ChecksumAlgo::Md5, &basis, 16, 0)),
        ("xxh3-p32", sums_seed(32, 2, ChecksumAlgo::Xxh3, &basis, 16, 512)),
        ("sha1-p30", sums_seed(30, 1, ChecksumAlgo::Sha1, &basis[..1500], 20, 0)),
        ("md4-p27", sums_seed(27, 0, ChecksumAlgo::Md4Legacy, &basis[..100], 2, 0)),
        ("empty-basis", sums_seed(31, 0, ChecksumAlgo::Md5, &[], 2, 0)),
        ("count-over-small-limit", {
            let mut w = vec![4, 0x80];
            for v in [17, 700, 2, 0] {
                put_i32(&mut w, v);
            }
            w
        }),
    ]
}

/// The option bytes `fuzz_entry::flist` reads for `o`.
fn flist_opt_bytes(o: &FlistOptions) -> [u8; 3] {
    let f = u8::from(o.varint_flags)
        | u8::from(o.preserve_uid) << 1
        | u8::from(o.preserve_gid) << 2
        | u8::from(o.preserve_links) << 3
        | u8::from(o.preserve_devices) << 4
        | u8::from(o.preserve_specials) << 5
        | u8::from(o.preserve_hard_links) << 6
        | u8::from(o.inc_recurse) << 7;
    let csum = match o.checksum_len {
        None => 0,
        Some(2) => 1,
        Some(16) => 2,
        Some(_) => 3,
    };
    let g = csum | u8::from(o.id0_names) << 2 | u8::from(o.numeric_ids) << 3 | u8::from(o.safe_flist) << 4;
    [o.protocol - 27, f, g]
}

fn flist_seed(o: FlistOptions, lists: &[&[FileEntry<'_>]]) -> Vec<u8> {
    let mut w = flist_opt_bytes(&o).to_vec();
    let inc = o.inc_recurse_active();
    let mut enc = FlistEncoder::new(o);
    let mut start = if inc { 1 } else { 0 };
    for list in lists {
        for (i, e) in list.iter().enumerate() {
            enc.encode_entry(&mut w, e, start + i as i32, start, &NoNames);
        }
        enc.encode_end(&mut w, 0);
        start += list.len() as i32 + 1;
    }
    if !inc {
        enc.encode_trailer(&mut w, 0, &NoNames);
    }
    w
}

fn flist_seeds() -> Seeds {
    let long = vec![b'n'; 300];
    let long_name = [b"dir/".as_slice(), &long].concat();
    let entries = |sum: &'static [u8]| -> Vec<FileEntry<'static>> {
        let mut v = Vec::new();
        let mut top = FileEntry::new(b".", 0o040755);
        top.top_dir = true;
        top.mtime = 1_704_164_645;
        v.push(top);
        let mut f = FileEntry::new(b"a.txt", 0o100644);
        f.size = 12;
        f.mtime = 1_704_164_645;
        f.mtime_nsec = 123_456_789;
        f.uid = 1000;
        f.gid = 100;
        f.checksum = Some(sum);
        v.push(f);
        v.push(FileEntry::new(b"dir", 0o040700));
        let mut dev = FileEntry::new(b"dir/null", 0o020666);
        dev.rdev_major = 1;
        dev.rdev_minor = 3;
        v.push(dev);
        v.push(FileEntry::new(b"dir/fifo", 0o010644));
        let mut l = FileEntry::new(b"dir/link", 0o120777);
        l.link_target = b"../a.txt";
        l.size = 8;
        v.push(l);
        v
    };
    let sum16: &'static [u8] = &[7; 16];
    let all = |p: u8| FlistOptions {
        protocol: p,
        varint_flags: p >= 30,
        preserve_uid: true,
        preserve_gid: true,
        preserve_links: true,
        preserve_devices: true,
        preserve_specials: true,
        ..FlistOptions::default()
    };
    let mut out: Seeds = Vec::new();
    let mut e = entries(sum16);
    let mut big = FileEntry::new(&long_name, 0o100600);
    big.size = 1 << 40;
    big.mtime = -5;
    e.push(big);
    out.push(("p31-varint", flist_seed(all(31), &[&e])));
    out.push(("p29-legacy", flist_seed(all(29), &[&entries(sum16)])));
    out.push(("p27-checksum", flist_seed(FlistOptions { checksum_len: Some(16), ..all(27) }, &[&entries(sum16)])));
    out.push(("p32-checksum-id0", flist_seed(FlistOptions { checksum_len: Some(16), id0_names: true, ..all(32) }, &[&entries(sum16)])));
    // Hard links: protocol 30+ references and the protocol 28 dev/ino pairs.
    let mut h1 = FileEntry::new(b"h1", 0o100644);
    h1.hardlink = Some((5, 77));
    let mut h2 = FileEntry::new(b"h2", 0o100644);
    h2.hardlink = Some((5, 77));
    let hl = [FileEntry::new(b".", 0o040755), h1, h2];
    out.push(("p31-hardlinks", flist_seed(FlistOptions { preserve_hard_links: true, ..all(31) }, &[&hl])));
    out.push(("p28-hardlinks", flist_seed(FlistOptions { preserve_hard_links: true, ..all(28) }, &[&hl])));
    // Incremental recursion: two lists, inline names flag space.
    let top = [FileEntry::new(b".", 0o040755), FileEntry::new(b"sub", 0o040755)];
    let sub = [FileEntry::new(b"sub/x", 0o100644), FileEntry::new(b"sub/y", 0o100644)];
    out.push(("p31-inc-recurse", flist_seed(FlistOptions { inc_recurse: true, ..all(31) }, &[&top, &sub])));
    // Recorded stock lists (client -a --numeric-ids --no-inc-recursive).
    for (name, file, p) in [("stock-p31", "pull-hello-p31/s2c.bin", 31u8), ("stock-p29", "pull-hello-p29/s2c.bin", 29)] {
        let data = demux(&fixture(file));
        let o = FlistOptions { numeric_ids: true, ..all(p) };
        out.push((name, cat(&[&flist_opt_bytes(&o), &data])));
    }
    out
}

macro_rules! corpus_test {
    ($test:ident, $target:literal, $seeds:expr, $body:path) => {
        #[test]
        fn $test() {
            let n = replay(&dir(), $target, &$seeds, $body);
            assert!(n > 0);
        }
    };
}

corpus_test!(greeting_corpus, "greeting", greeting_seeds(), fe::greeting);
corpus_test!(args_corpus, "args", args_seeds(), fe::args);
corpus_test!(filter_corpus, "filter", filter_seeds(), fe::filter);
corpus_test!(mux_corpus, "mux", mux_seeds(), fe::mux);
corpus_test!(ndx_corpus, "ndx", ndx_seeds(), fe::ndx);
corpus_test!(sums_corpus, "sums", sums_seeds(), fe::sums);
corpus_test!(flist_corpus, "flist", flist_seeds(), fe::flist);

// Named regression tests: one per input in `fuzz/regressions/`.

/// greeting: `@RSYNCD: 66.0 \r ` parses with the digest list `["\r"]`;
/// re-encoding it naively ends the line in `\r`, which the parser strips
/// (a harness bug, not a decoder bug: the round trip now adds the `\r`
/// a client's line would need).
#[test]
fn regression_greeting_digest_list_of_cr() {
    regression(&dir(), "greeting", "digest-list-of-cr", fe::greeting);
}

/// The invariant checks can fail: a body run on a deliberately broken
/// input reports it instead of passing silently.
#[test]
fn a_failing_body_is_reported() {
    fn broken(_: &[u8]) {
        panic!("invariant broken");
    }
    assert!(run("probe", b"x", broken).is_err());
}

/// Rewrites `fuzz/corpus/<target>/seed-*` from the builders above.
#[test]
#[ignore = "writes the committed seed files; run by hand"]
fn write_seeds_protocol() {
    let d = dir();
    write_seeds(&d, "greeting", &greeting_seeds());
    write_seeds(&d, "args", &args_seeds());
    write_seeds(&d, "filter", &filter_seeds());
    write_seeds(&d, "mux", &mux_seeds());
    write_seeds(&d, "ndx", &ndx_seeds());
    write_seeds(&d, "sums", &sums_seeds());
    write_seeds(&d, "flist", &flist_seeds());
}
