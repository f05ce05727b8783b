//! File-list encoder/decoder: golden bytes from the notes' worked examples
//! (§12.1-12.3), randomized encode -> decode round trips for every protocol
//! 27..=32, end markers, truncation and garbage input.

use protocol::flist::*;
use protocol::ndx::{NdxState, NDX_FLIST_EOF, NDX_FLIST_OFFSET};
use protocol::wire::Reader;
use protocol::DecodeError;

/// Test id names: 0 root, 1000 alice, 65534 nobody; others unknown.
struct Names;
impl IdNames for Names {
    fn user_name(&self, uid: u32) -> Option<Vec<u8>> {
        match uid {
            0 => Some(b"root".to_vec()),
            1000 => Some(b"alice".to_vec()),
            65534 => Some(b"nobody".to_vec()),
            _ => None,
        }
    }
    fn group_name(&self, gid: u32) -> Option<Vec<u8>> {
        match gid {
            0 => Some(b"root".to_vec()),
            100 => Some(b"users".to_vec()),
            65534 => Some(b"nogroup".to_vec()),
            _ => None,
        }
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `-a` (rlptgoD) over the given protocol.
fn opts_a(protocol: u8) -> FlistOptions {
    FlistOptions {
        protocol,
        varint_flags: false,
        preserve_uid: true,
        preserve_gid: true,
        preserve_links: true,
        preserve_devices: true,
        preserve_specials: true,
        preserve_hard_links: false,
        checksum_len: None,
        inc_recurse: false,
        id0_names: false,
        numeric_ids: false,
        safe_flist: protocol >= 30,
    }
}

const MTIME: i64 = 1704164645;

fn example_tree() -> [FileEntry<'static>; 3] {
    let mut top = FileEntry::new(b".", 0o040755);
    top.size = 4096;
    top.mtime = MTIME;
    top.top_dir = true;
    let mut dir = FileEntry::new(b"dir", 0o040755);
    dir.size = 4096;
    dir.mtime = MTIME;
    let mut file = FileEntry::new(b"dir/file.txt", 0o100644);
    file.size = 12;
    file.mtime = MTIME;
    [top, dir, file]
}

#[test]
fn golden_12_1_proto31_varint_id0_names() {
    let mut o = opts_a(31);
    o.varint_flags = true;
    o.id0_names = true;
    let mut enc = FlistEncoder::new(o.clone());
    let mut out = Vec::new();
    for (i, e) in example_tree().iter().enumerate() {
        enc.encode_entry(&mut out, e, i as i32, 0, &Names);
    }
    enc.encode_end(&mut out, 0);
    enc.encode_trailer(&mut out, 0, &Names);
    let want = hex("01 01 2e 00 00 10 65 25 7d 93 ed 41 00 00 00 00
         80 9a 03 64 69 72 00 00 10
         80 b8 03 09 2f 66 69 6c 65 2e 74 78 74 00 0c 00 a4 81 00 00
         00 00
         00 04 72 6f 6f 74
         00 04 72 6f 6f 74");
    assert_eq!(want.len(), 59);
    assert_eq!(out, want);

    // And it decodes back to the tree.
    let mut dec = FlistDecoder::new(o);
    let mut r = Reader::new(&out);
    let mut got = Vec::new();
    while let Some(e) = dec.decode_entry(&mut r).unwrap() {
        got.push(e);
    }
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].name, b"dir/file.txt");
    assert_eq!(got[2].size, 12);
    assert_eq!(got[2].mode, 0o100644);
    assert_eq!(got[2].mtime, MTIME);
    assert_eq!(got[1].flags, 0x9A);
    assert_eq!(got[2].flags, 0xB8);
    let t = dec.decode_trailer(&mut r).unwrap();
    assert_eq!(t.uid_names, vec![(0, b"root".to_vec())]);
    assert_eq!(t.gid_names, vec![(0, b"root".to_vec())]);
    assert_eq!(r.remaining(), 0);
}

#[test]
fn golden_12_1_legacy_flags_without_id0_names() {
    // The variant described after §12.1: compat 0x28 -> single-byte flags,
    // single 00 end marker, bare id-list terminators.
    let o = opts_a(31);
    let mut enc = FlistEncoder::new(o);
    let mut out = Vec::new();
    for (i, e) in example_tree().iter().enumerate() {
        enc.encode_entry(&mut out, e, i as i32, 0, &Names);
    }
    enc.encode_end(&mut out, 0);
    enc.encode_trailer(&mut out, 0, &Names);
    let want = hex("01 01 2e 00 00 10 65 25 7d 93 ed 41 00 00 00 00
         9a 03 64 69 72 00 00 10
         b8 03 09 2f 66 69 6c 65 2e 74 78 74 00 0c 00 a4 81 00 00
         00
         00
         00");
    assert_eq!(out, want);
}

#[test]
fn golden_12_2_inc_recurse_inline_names() {
    let mut o = opts_a(31);
    o.varint_flags = true;
    o.id0_names = true;
    o.inc_recurse = true;
    let [top, dir, file] = example_tree();
    let mut enc = FlistEncoder::new(o.clone());
    let mut ndx = NdxState::new(31);
    let mut out = Vec::new();
    // First list: ndx_start 1.
    enc.encode_entry(&mut out, &top, 1, 1, &Names);
    enc.encode_entry(&mut out, &dir, 2, 1, &Names);
    enc.encode_end(&mut out, 0);
    // Sub-list for dir index 1 ("dir"): ndx_start 1 + 2 + 1 = 4.
    ndx.encode(&mut out, NDX_FLIST_OFFSET - 1);
    enc.encode_entry(&mut out, &file, 4, 4, &Names);
    enc.encode_end(&mut out, 0);
    ndx.encode(&mut out, NDX_FLIST_EOF);
    // No trailer with incremental recursion.
    let before = out.len();
    enc.encode_trailer(&mut out, 0, &Names);
    assert_eq!(out.len(), before);
    let want = hex("8c 01
         01 2e 00 00 10 65 25 7d 93 ed 41 00 00
         00 04 72 6f 6f 74
         00 04 72 6f 6f 74
         80 9a 03 64 69 72 00 00 10
         00 00
         ff 65
         80 b8 03 09 2f 66 69 6c 65 2e 74 78 74 00 0c 00 a4 81 00 00
         00 00
         ff fe 80 02 00 00");
    assert_eq!(want.len(), 68);
    assert_eq!(out, want);

    let mut dec = FlistDecoder::new(o);
    let mut r = Reader::new(&out);
    let e = dec.decode_entry(&mut r).unwrap().unwrap();
    assert_eq!(e.flags, 0x0C01);
    assert_eq!(e.user_name.as_deref(), Some(&b"root"[..]));
    assert_eq!(e.group_name.as_deref(), Some(&b"root"[..]));
    assert_eq!(dec.decode_entry(&mut r).unwrap().unwrap().name, b"dir");
    assert!(dec.decode_entry(&mut r).unwrap().is_none());
}

#[test]
fn golden_12_3_proto29() {
    let o = opts_a(29);
    let mut enc = FlistEncoder::new(o.clone());
    let mut out = Vec::new();
    for (i, e) in example_tree().iter().enumerate() {
        enc.encode_entry(&mut out, e, i as i32, 0, &Names);
    }
    enc.encode_end(&mut out, 0);
    enc.encode_trailer(&mut out, 0, &Names);
    let want = hex(
        "01 01 2e  00 10 00 00  25 7d 93 65  ed 41 00 00  00 00 00 00  00 00 00 00
         9a 03 64 69 72  00 10 00 00
         b8 03 09 2f 66 69 6c 65 2e 74 78 74  0c 00 00 00  a4 81 00 00
         00
         00 00 00 00
         00 00 00 00
         00 00 00 00",
    );
    assert_eq!(want.len(), 65);
    assert_eq!(out, want);

    let mut dec = FlistDecoder::new(o);
    let mut r = Reader::new(&out);
    let mut n = 0;
    while dec.decode_entry(&mut r).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    let t = dec.decode_trailer(&mut r).unwrap();
    assert_eq!(t, FlistTrailer::default());
    assert_eq!(r.remaining(), 0);
}

#[test]
fn zero_flag_avoidance() {
    // A regular file identical to its predecessor in everything but the
    // name shares no prefix: its flags would be SAME_MODE|SAME_UID|... so
    // use options that make the flags genuinely zero: no -o/-g means
    // SAME_UID/SAME_GID are set, so build the zero case from a first entry.
    let mut f = FileEntry::new(b"f", 0o100644);
    f.mtime = 5;
    let mut d = FileEntry::new(b"d", 0o040755);
    d.mtime = 5;
    let o = FlistOptions {
        protocol: 31,
        preserve_uid: true,
        preserve_gid: true,
        ..FlistOptions::default()
    };

    // First entry, regular, mtime != 0, uid 0 sent: flags 0.
    // varint: 0x04 filler.
    let mut enc = FlistEncoder::new(FlistOptions {
        varint_flags: true,
        ..o.clone()
    });
    let mut out = Vec::new();
    enc.encode_entry(&mut out, &f, 0, 0, &NoNames);
    assert_eq!(out[0], 0x04);
    // legacy >= 28: TOP_DIR filler on a file.
    let mut enc = FlistEncoder::new(o.clone());
    out.clear();
    enc.encode_entry(&mut out, &f, 0, 0, &NoNames);
    assert_eq!(out[0], 0x01);
    assert_eq!(&out[1..3], &[1, b'f']);
    // legacy >= 28: a directory gets the 2-byte form 04 00.
    let mut enc = FlistEncoder::new(FlistOptions {
        protocol: 29,
        ..o.clone()
    });
    out.clear();
    enc.encode_entry(&mut out, &d, 0, 0, &NoNames);
    assert_eq!(&out[..4], &[0x04, 0x00, 1, b'd']);
    // proto 27: directory gets XMIT_LONG_NAME -> 4-byte name length.
    let mut enc = FlistEncoder::new(FlistOptions {
        protocol: 27,
        ..o.clone()
    });
    out.clear();
    enc.encode_entry(&mut out, &d, 0, 0, &NoNames);
    assert_eq!(&out[..6], &[0x40, 1, 0, 0, 0, b'd']);
    // proto 27: file gets XMIT_TOP_DIR.
    let mut enc = FlistEncoder::new(FlistOptions {
        protocol: 27,
        ..o.clone()
    });
    out.clear();
    enc.encode_entry(&mut out, &f, 0, 0, &NoNames);
    assert_eq!(&out[..3], &[0x01, 1, b'f']);
    // All of them decode.
    for p in [27u8, 29, 31] {
        for e in [&f, &d] {
            let oo = FlistOptions {
                protocol: p,
                ..o.clone()
            };
            let mut enc = FlistEncoder::new(oo.clone());
            let mut buf = Vec::new();
            enc.encode_entry(&mut buf, e, 0, 0, &NoNames);
            enc.encode_end(&mut buf, 0);
            let mut dec = FlistDecoder::new(oo);
            let mut r = Reader::new(&buf);
            let got = dec.decode_entry(&mut r).unwrap().unwrap();
            assert_eq!(got.name, e.name);
            assert_eq!(got.mode, e.mode);
            assert!(dec.decode_entry(&mut r).unwrap().is_none());
        }
    }
}

#[test]
fn end_marker_forms() {
    let cases: [(u8, bool, bool, i32, &str); 8] = [
        (31, true, true, 0, "00 00"),
        (31, true, true, 3, "00 03"),
        (31, false, true, 0, "00"),
        (31, false, true, 1, "04 10 01"),
        (31, false, false, 1, "04 10 01"), // proto 31 is always safe
        (30, false, true, 1, "04 10 01"),
        (30, false, false, 1, "00"), // not safe: MSG_IO_ERROR is the caller's job
        (29, false, false, 1, "00"),
    ];
    for (p, varint, safe, err, want) in cases {
        let o = FlistOptions {
            protocol: p,
            varint_flags: varint,
            safe_flist: safe,
            ..FlistOptions::default()
        };
        let mut enc = FlistEncoder::new(o.clone());
        let mut out = Vec::new();
        enc.encode_end(&mut out, err);
        assert_eq!(
            out,
            hex(want),
            "proto {p} varint {varint} safe {safe} err {err}"
        );
        let mut dec = FlistDecoder::new(o);
        let mut r = Reader::new(&out);
        assert!(dec.decode_entry(&mut r).unwrap().is_none());
        let expect_err = if out.len() > 1 { err } else { 0 };
        assert_eq!(dec.io_error(), expect_err);
    }
    // proto < 30: io_error int after the (empty) id lists.
    let mut o = opts_a(28);
    o.preserve_uid = false;
    let mut enc = FlistEncoder::new(o.clone());
    let mut out = Vec::new();
    enc.encode_end(&mut out, 0);
    enc.encode_trailer(&mut out, 2, &Names);
    assert_eq!(out, hex("00  00 00 00 00  02 00 00 00"));
    let mut dec = FlistDecoder::new(o);
    let mut r = Reader::new(&out);
    assert!(dec.decode_entry(&mut r).unwrap().is_none());
    assert_eq!(dec.decode_trailer(&mut r).unwrap().io_error, 2);
    // The legacy io-error marker is refused without a safe flist.
    let o = FlistOptions {
        protocol: 30,
        ..FlistOptions::default()
    };
    let buf = hex("04 10 01");
    let err = FlistDecoder::new(o)
        .decode_entry(&mut Reader::new(&buf))
        .unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { .. }));
}

#[test]
fn hard_links_observed_flags_proto31() {
    // §8.8: a/f1 flags 0x3238 (first), a/f1hard 0x22BA + varint index, then
    // nothing else. Reproduce the shape: same dir, same attributes, nsec set.
    let mut o = opts_a(31);
    o.varint_flags = true;
    o.preserve_hard_links = true;
    let mut dir = FileEntry::new(b"a", 0o040755);
    dir.mtime = 100;
    dir.top_dir = true;
    let mut f1 = FileEntry::new(b"a/f1", 0o100644);
    f1.mtime = 200;
    f1.mtime_nsec = 5;
    f1.size = 3;
    f1.hardlink = Some((2049, 77));
    let mut f1hard = f1;
    f1hard.name = b"a/f1hard";
    let mut enc = FlistEncoder::new(o.clone());
    let mut out = Vec::new();
    enc.encode_entry(&mut out, &dir, 0, 0, &Names);
    let start = out.len();
    enc.encode_entry(&mut out, &f1, 15, 0, &Names);
    let mut r = Reader::new(&out[start..]);
    assert_eq!(r.varint().unwrap() as u32, 0x3238);
    let start = out.len();
    enc.encode_entry(&mut out, &f1hard, 16, 0, &Names);
    let mut want = Vec::new();
    protocol::wire::put_varint(&mut want, 0x22BA);
    want.extend_from_slice(&[4, 4]); // l1 = 4 ("a/f1"), l2 = 4
    want.extend_from_slice(b"hard");
    want.push(15);
    assert_eq!(&out[start..], &want[..]);
}

// ---------------------------------------------------------------------------
// Randomized round trips.

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }
    fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize].clone()
    }
}

#[derive(Debug, Clone)]
struct Spec {
    name: Vec<u8>,
    mode: u32,
    size: i64,
    mtime: i64,
    nsec: u32,
    uid: u32,
    gid: u32,
    major: u32,
    minor: u32,
    link: Vec<u8>,
    top_dir: bool,
    no_content: bool,
    hardlink: Option<(u64, u64)>,
    checksum: Vec<u8>,
}

impl Spec {
    fn view(&self) -> FileEntry<'_> {
        FileEntry {
            name: &self.name,
            mode: self.mode,
            size: self.size,
            mtime: self.mtime,
            mtime_nsec: self.nsec,
            uid: self.uid,
            gid: self.gid,
            rdev_major: self.major,
            rdev_minor: self.minor,
            link_target: &self.link,
            top_dir: self.top_dir,
            no_content_dir: self.no_content,
            hardlink: self.hardlink,
            checksum: if self.checksum.is_empty() {
                None
            } else {
                Some(&self.checksum)
            },
        }
    }
}

const BASENAMES: &[&str] = &[
    "a",
    "b",
    "file.txt",
    "with space",
    "new\nline",
    "tab\there",
    "ünïcödé",
    "😀",
    "-dash",
    "+plus",
    ".hidden",
    "x.y",
];

fn random_basename(r: &mut Rng) -> Vec<u8> {
    match r.below(12) {
        0 => vec![b'L'; 255],
        1 => vec![b'M'; 256 + r.below(400) as usize],
        2 => {
            let mut v = vec![0xC3, 0xA9]; // é
            v.extend(std::iter::repeat_n(b'z', r.below(40) as usize));
            v
        }
        3 => vec![0xFF, 0xFE, b'x'], // not UTF-8 at all
        _ => r.pick(BASENAMES).as_bytes().to_vec(),
    }
}

/// A random entry sequence: "." first, then entries under a wandering
/// directory cursor; hard-link groups share all attributes.
fn random_specs(r: &mut Rng, n: usize, checksum_len: usize, small_rdev: bool) -> Vec<Spec> {
    let mut out = Vec::new();
    out.push(Spec {
        name: b".".to_vec(),
        mode: 0o040755,
        size: 4096,
        mtime: MTIME,
        nsec: 0,
        uid: 0,
        gid: 0,
        major: 0,
        minor: 0,
        link: vec![],
        top_dir: true,
        no_content: false,
        hardlink: None,
        checksum: vec![],
    });
    // Exact boundary names at top level: 255 and 256 bytes in total.
    for len in [255usize, 256] {
        let mut s = out[0].clone();
        s.name = vec![b'n'; len];
        s.mode = 0o100600;
        s.top_dir = false;
        s.size = len as i64;
        s.checksum = vec![7; checksum_len];
        out.push(s);
    }
    let mut cwd: Vec<u8> = Vec::new();
    let mut inodes: Vec<Spec> = Vec::new();
    let mut next_ino = 1000u64;
    let mtimes = [
        0i64,
        -1,
        -2_147_483_648,
        1,
        MTIME,
        2_147_483_648,
        4_294_967_296,
        253_402_300_799,
        -62_135_596_800,
    ];
    let sizes = [
        0i64,
        1,
        12,
        4096,
        0x7FFF_FFFF,
        0x8000_0000,
        5 << 30,
        1 << 40,
        i64::MAX,
    ];
    let uids = [0u32, 1000, 1001, 65534, 4_000_000_000];
    let gids = [0u32, 100, 1001, 65534, 4_000_000_000];
    while out.len() < n {
        // Move the directory cursor now and then.
        match r.below(8) {
            0 => cwd.clear(),
            1 if !cwd.is_empty() => {
                let cut = cwd.iter().rposition(|&c| c == b'/').unwrap_or(0);
                cwd.truncate(cut);
            }
            _ => {}
        }
        let base = random_basename(r);
        let mut name = cwd.clone();
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(&base);
        if name.len() >= 4000 {
            cwd.clear();
            continue;
        }
        // Re-use an inode (hard link) now and then.
        if !inodes.is_empty() && r.chance(1, 6) {
            let mut s = r.pick(&inodes);
            s.name = name;
            out.push(s);
            continue;
        }
        let kind = r.below(20);
        let mode = match kind {
            0..=7 => 0o100000 | r.pick(&[0o644u32, 0o755, 0o600, 0o4755]),
            8..=11 => 0o040000 | r.pick(&[0o755u32, 0o700, 0o1777]),
            12..=13 => 0o120777,
            14 => 0o020600,
            15 => 0o060660,
            16 => 0o010644,
            17 => 0o140755,
            _ => 0o100444,
        };
        let is_dir = mode & 0o170000 == 0o040000;
        let is_dev = matches!(mode & 0o170000, 0o020000 | 0o060000);
        let is_special = matches!(mode & 0o170000, 0o010000 | 0o140000);
        let is_lnk = mode & 0o170000 == 0o120000;
        let link: Vec<u8> = if is_lnk {
            match r.below(4) {
                0 => vec![b'T'; 300 + r.below(3000) as usize],
                1 => b"../up/there".to_vec(),
                2 => "tärget with\nnewline".as_bytes().to_vec(),
                _ => b"x".to_vec(),
            }
        } else {
            vec![]
        };
        let (major, minor) = if is_dev {
            if small_rdev {
                (
                    r.below(0x1000) as u32,
                    r.pick(&[0u32, 1, 255, 256, 0x7FFFF]),
                )
            } else {
                (
                    r.pick(&[0u32, 1, 8, 259, 0xFFF, 0x1000, u32::MAX]),
                    r.pick(&[0u32, 1, 255, 256, 0xFFFFF, u32::MAX]),
                )
            }
        } else {
            (0, 0)
        };
        let size = if is_dev || is_special {
            0
        } else if is_lnk {
            link.len() as i64
        } else {
            r.pick(&sizes)
        };
        let s = Spec {
            name,
            mode,
            size,
            mtime: if r.chance(1, 3) {
                out.last().map(|s: &Spec| s.mtime).unwrap_or(0)
            } else {
                r.pick(&mtimes)
            },
            nsec: if r.chance(1, 2) {
                0
            } else {
                let any = r.below(1_000_000_000) as u32;
                r.pick(&[1u32, 999_999_999, 500_000_000, any])
            },
            uid: if r.chance(1, 2) {
                out.last().map(|s: &Spec| s.uid).unwrap_or(0)
            } else {
                r.pick(&uids)
            },
            gid: if r.chance(1, 2) {
                out.last().map(|s: &Spec| s.gid).unwrap_or(0)
            } else {
                r.pick(&gids)
            },
            major,
            minor,
            link,
            top_dir: is_dir && r.chance(1, 10),
            no_content: is_dir && r.chance(1, 10),
            hardlink: None,
            checksum: if mode & 0o170000 == 0o100000 {
                (0..checksum_len).map(|_| r.next() as u8).collect()
            } else {
                vec![]
            },
        };
        let mut s = s;
        if !is_dir && r.chance(1, 4) {
            next_ino += 1 + r.below(1 << 40);
            let dev = r.pick(&[0u64, 2049, 0xFFFF_FFFF_FFFF, 65027]);
            s.hardlink = Some((dev, next_ino));
            inodes.push(s.clone());
        }
        if is_dir {
            cwd = s.name.clone();
        }
        out.push(s);
    }
    out
}

/// What the decoder should produce for `s` (sent as `ndx`), given the
/// options and the first occurrence index of its hard-link group.
struct Expect {
    first_of_group: std::collections::HashMap<(u64, u64), i32>,
    synth_ino: i64,
}

fn check_entry(o: &FlistOptions, s: &Spec, ndx: i32, got: &OwnedEntry, ex: &mut Expect, ctx: &str) {
    let p = o.protocol;
    let ft = FileType::from_mode(s.mode).unwrap();
    assert_eq!(got.name, s.name, "{ctx}");
    assert_eq!(got.mode, s.mode, "{ctx}");
    let size = if ft.is_device() || ft.is_special() {
        0
    } else {
        s.size
    };
    assert_eq!(got.size, size, "{ctx} size");
    let mtime = if p >= 30 {
        s.mtime
    } else {
        s.mtime as u32 as i64
    };
    assert_eq!(got.mtime, mtime, "{ctx} mtime");
    let nsec = if p >= 31 { s.nsec } else { 0 };
    assert_eq!(got.mtime_nsec, nsec, "{ctx} nsec");
    assert_eq!(got.uid, if o.preserve_uid { s.uid } else { 0 }, "{ctx} uid");
    assert_eq!(got.gid, if o.preserve_gid { s.gid } else { 0 }, "{ctx} gid");
    if ft.is_device() && o.preserve_devices {
        assert_eq!(
            (got.rdev_major, got.rdev_minor),
            (s.major, s.minor),
            "{ctx} rdev"
        );
    }
    if ft.is_special() && o.preserve_specials && (28..31).contains(&p) {
        assert_eq!(got.rdev_minor, 0, "{ctx} special dummy minor");
    }
    if ft == FileType::Symlink && o.preserve_links {
        assert_eq!(got.link_target, s.link, "{ctx} link");
    } else {
        assert!(got.link_target.is_empty(), "{ctx} link");
    }
    match o.checksum_len {
        Some(n) if ft == FileType::Regular => {
            assert_eq!(got.checksum, s.checksum[..n], "{ctx} sum")
        }
        Some(n) if p < 28 => assert_eq!(got.checksum, vec![0u8; n], "{ctx} zero sum"),
        _ => assert!(got.checksum.is_empty(), "{ctx} sum"),
    }
    // Hard links.
    let h = o.preserve_hard_links;
    if p >= 30 {
        assert!(got.dev_ino.is_none());
        match (h, s.hardlink) {
            (true, Some(key)) if ft != FileType::Dir => match ex.first_of_group.get(&key) {
                Some(&first) => {
                    assert_eq!(got.hardlink_ref, Some(first), "{ctx} hlink ref");
                    assert_eq!(
                        got.flags & (XMIT_HLINKED | XMIT_HLINK_FIRST),
                        XMIT_HLINKED,
                        "{ctx}"
                    );
                }
                None => {
                    ex.first_of_group.insert(key, ndx);
                    assert_eq!(got.hardlink_ref, None, "{ctx}");
                    assert_eq!(
                        got.flags & (XMIT_HLINKED | XMIT_HLINK_FIRST),
                        XMIT_HLINKED | XMIT_HLINK_FIRST,
                        "{ctx}"
                    );
                }
            },
            _ => {
                assert_eq!(got.hardlink_ref, None, "{ctx}");
                assert_eq!(got.flags & XMIT_HLINKED, 0, "{ctx}");
            }
        }
    } else {
        assert!(got.hardlink_ref.is_none());
        let want = if !h {
            None
        } else if p >= 28 {
            s.hardlink
                .filter(|_| ft != FileType::Dir)
                .map(|(d, i)| ((d as i64).wrapping_add(1), i as i64))
        } else if ft == FileType::Regular {
            Some(match s.hardlink {
                Some((d, i)) => ((d as i64).wrapping_add(1), i as i64),
                None => {
                    ex.synth_ino += 1;
                    (0, ex.synth_ino)
                }
            })
        } else {
            None
        };
        assert_eq!(got.dev_ino, want, "{ctx} dev/ino");
    }
}

fn random_opts(r: &mut Rng, protocol: u8, varint: bool) -> FlistOptions {
    FlistOptions {
        protocol,
        varint_flags: varint,
        preserve_uid: r.chance(3, 4),
        preserve_gid: r.chance(3, 4),
        preserve_links: r.chance(3, 4),
        preserve_devices: r.chance(3, 4),
        preserve_specials: r.chance(3, 4),
        preserve_hard_links: r.chance(2, 3),
        checksum_len: if r.chance(1, 2) {
            Some(r.pick(&[16usize, 20, 8]))
        } else {
            None
        },
        inc_recurse: protocol >= 30 && r.chance(1, 2),
        id0_names: protocol >= 30 && r.chance(1, 2),
        numeric_ids: r.chance(1, 4),
        safe_flist: protocol >= 30 && r.chance(1, 2),
    }
}

/// Encode `specs` as one or more lists, then decode and check everything.
fn roundtrip_case(r: &mut Rng, o: &FlistOptions, specs: &[Spec]) -> Vec<u8> {
    roundtrip_case_entries(r, o, specs).0
}

/// [`roundtrip_case`], also returning the decoded entries.
fn roundtrip_case_entries(
    r: &mut Rng,
    o: &FlistOptions,
    specs: &[Spec],
) -> (Vec<u8>, Vec<OwnedEntry>) {
    let inc = o.inc_recurse && o.protocol >= 30;
    // Split into lists (inc-recurse) with their ndx_start.
    let mut lists: Vec<(i32, &[Spec])> = Vec::new();
    if inc {
        let mut start = 1i32;
        let mut rest = specs;
        while !rest.is_empty() {
            let k = (1 + r.below(30) as usize).min(rest.len());
            lists.push((start, &rest[..k]));
            start += k as i32 + 1;
            rest = &rest[k..];
        }
    } else {
        lists.push((0, specs));
    }
    let mut enc = FlistEncoder::new(o.clone());
    let mut buf = Vec::new();
    let mut io_errors = Vec::new();
    for (start, l) in &lists {
        for (i, s) in l.iter().enumerate() {
            enc.encode_entry(&mut buf, &s.view(), start + i as i32, *start, &Names);
        }
        let err = if r.chance(1, 5) { 1 } else { 0 };
        io_errors.push(err);
        enc.encode_end(&mut buf, err);
    }
    enc.encode_trailer(&mut buf, 0, &Names);

    let mut dec = FlistDecoder::new(o.clone());
    let mut rd = Reader::new(&buf);
    let mut ex = Expect {
        first_of_group: Default::default(),
        synth_ino: 0,
    };
    let mut seen_user_names = Vec::new();
    let mut all = Vec::new();
    for (li, (start, l)) in lists.iter().enumerate() {
        dec.start_list(*start);
        for (i, s) in l.iter().enumerate() {
            let ctx = format!(
                "{o:?} list {li} entry {i} {:?}",
                String::from_utf8_lossy(&s.name)
            );
            let got = dec
                .decode_entry(&mut rd)
                .unwrap_or_else(|e| panic!("{ctx}: {e}"))
                .expect(&ctx);
            check_entry(o, s, start + i as i32, &got, &mut ex, &ctx);
            if let Some(n) = &got.user_name {
                seen_user_names.push((got.uid, n.clone()));
            }
            all.push(got);
        }
        assert!(
            dec.decode_entry(&mut rd).unwrap().is_none(),
            "end marker of list {li}"
        );
        let want_err = if o.safe_flist_active() {
            io_errors[..=li].iter().fold(0, |a, b| a | b)
        } else {
            0
        };
        assert_eq!(dec.io_error(), want_err, "io_error after list {li}");
    }
    let t = dec.decode_trailer(&mut rd).unwrap();
    assert_eq!(rd.remaining(), 0, "trailing bytes");

    // Names: every distinct named uid exactly once, inline or in the list.
    let mut uids: Vec<u32> = Vec::new();
    for s in specs {
        if !uids.contains(&s.uid) {
            uids.push(s.uid);
        }
    }
    let named: Vec<(u32, Vec<u8>)> = uids
        .iter()
        .filter_map(|&u| Names.user_name(u).map(|n| (u, n)))
        .collect();
    if !o.preserve_uid || o.numeric_ids {
        assert!(seen_user_names.is_empty());
        assert!(t.uid_names.is_empty());
    } else if inc {
        assert_eq!(seen_user_names, named, "inline names");
        assert!(t.uid_names.is_empty());
    } else {
        assert!(seen_user_names.is_empty());
        let mut want: Vec<(u32, Vec<u8>)> =
            named.into_iter().filter(|(u, _)| *u != 0).rev().collect();
        if o.id0_names && o.protocol >= 30 {
            want.push((0, b"root".to_vec()));
        }
        assert_eq!(t.uid_names, want, "uid list");
    }
    (buf, all)
}

#[test]
fn roundtrip_all_protocols() {
    let mut r = Rng(0x5EED_1234_ABCD_0001);
    // What the random cases exercised, per feature (must all be non-zero).
    let mut cover = std::collections::BTreeMap::<&str, usize>::new();
    let mut tally = |o: &FlistOptions, entries: &[OwnedEntry]| {
        for e in entries {
            let mut hit = |k: &'static str, c: bool| *cover.entry(k).or_default() += c as usize;
            hit(
                "long name",
                e.flags & XMIT_LONG_NAME != 0 && e.name.len() > 255,
            );
            hit("255-byte name", e.name.len() == 255);
            hit("same name prefix", e.flags & XMIT_SAME_NAME != 0);
            hit("newline name", e.name.contains(&b'\n'));
            hit("nsec", e.flags & XMIT_MOD_NSEC != 0);
            hit("negative mtime", e.mtime < 0);
            hit("mtime > 2^32", e.mtime > u32::MAX as i64);
            hit("size > 4GiB", e.size > 1 << 32);
            hit(
                "device",
                o.preserve_devices && FileType::from_mode(e.mode).is_some_and(|t| t.is_device()),
            );
            hit(
                "special",
                FileType::from_mode(e.mode).is_some_and(|t| t.is_special()),
            );
            hit("symlink target", !e.link_target.is_empty());
            hit(
                "hlink abbreviated",
                e.hardlink_ref.is_some() && e.flags & XMIT_HLINK_FIRST == 0,
            );
            hit("hlink first", e.flags & XMIT_HLINK_FIRST != 0);
            hit("dev/ino", e.dev_ino.is_some());
            hit(
                "same dev pre30",
                o.protocol >= 28 && o.protocol < 30 && e.flags & XMIT_SAME_DEV_pre30 != 0,
            );
            hit("checksum", !e.checksum.is_empty());
            hit("inline user name", e.user_name.is_some());
            hit(
                "legacy 2-byte flags",
                !o.varint_flags_active() && o.protocol >= 28 && e.flags > 0xFF,
            );
        }
    };
    for p in 27u8..=32 {
        for varint in [false, true] {
            if varint && p < 30 {
                continue;
            }
            for _round in 0..12 {
                let o = random_opts(&mut r, p, varint);
                let n = 20 + r.below(200) as usize;
                let specs = random_specs(&mut r, n, o.checksum_len.unwrap_or(0), p < 28);
                let (_, got) = roundtrip_case_entries(&mut r, &o, &specs);
                tally(&o, &got);
            }
            // And once with everything on.
            let o = FlistOptions {
                protocol: p,
                varint_flags: varint,
                preserve_uid: true,
                preserve_gid: true,
                preserve_links: true,
                preserve_devices: true,
                preserve_specials: true,
                preserve_hard_links: true,
                checksum_len: Some(16),
                inc_recurse: false,
                id0_names: true,
                numeric_ids: false,
                safe_flist: true,
            };
            let specs = random_specs(&mut r, 300, 16, p < 28);
            let (_, got) = roundtrip_case_entries(&mut r, &o, &specs);
            tally(&o, &got);
            if p >= 30 {
                let o = FlistOptions {
                    inc_recurse: true,
                    ..o
                };
                let (_, got) = roundtrip_case_entries(&mut r, &o, &specs);
                tally(&o, &got);
            }
        }
    }
    for (k, v) in &cover {
        assert!(
            *v > 0,
            "random round trips never exercised: {k} ({cover:?})"
        );
    }
    assert_eq!(cover.len(), 18);
}

#[test]
fn decoding_byte_by_byte_matches_one_shot() {
    // Incomplete must leave reader and decoder untouched, so feeding a
    // growing prefix gives the same entries as decoding the whole buffer.
    let mut r = Rng(42);
    for p in [27u8, 29, 30, 31] {
        let mut o = random_opts(&mut r, p, p >= 31);
        o.inc_recurse = false;
        o.preserve_hard_links = true;
        let specs = random_specs(&mut r, 60, o.checksum_len.unwrap_or(0), p < 28);
        let buf = roundtrip_case(&mut r, &o, &specs);

        let mut whole = FlistDecoder::new(o.clone());
        let mut rd = Reader::new(&buf);
        let mut want = Vec::new();
        while let Some(e) = whole.decode_entry(&mut rd).unwrap() {
            want.push(e);
        }

        let mut dec = FlistDecoder::new(o.clone());
        let mut got = Vec::new();
        let mut pos = 0usize;
        let mut end = 0usize;
        let mut incompletes = 0;
        loop {
            let mut rd = Reader::new(&buf[pos..end]);
            match dec.decode_entry(&mut rd) {
                Ok(Some(e)) => {
                    pos += rd.consumed();
                    got.push(e);
                }
                Ok(None) => break,
                Err(DecodeError::Incomplete { .. }) => {
                    assert_eq!(rd.consumed(), 0);
                    incompletes += 1;
                    end += 1;
                    assert!(end <= buf.len(), "ran past the end");
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, want);
        assert!(incompletes > got.len());
    }
}

#[test]
fn garbage_never_panics() {
    let mut r = Rng(0xBAD_C0DE);
    let mut decoded_some = 0;
    for i in 0..20000 {
        let p = 27 + (i % 6) as u8;
        let varint = p >= 30 && r.chance(1, 2);
        let o = random_opts(&mut r, p, varint);
        let len = r.below(300) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
        // Bias some inputs towards plausible flag bytes.
        if !buf.is_empty() && r.chance(1, 2) {
            buf[0] = r.pick(&[0x01u8, 0x02, 0x20, 0x40, 0x9A, 0xB8, 0x04, 0x80]);
        }
        let mut dec = FlistDecoder::new(o);
        let mut rd = Reader::new(&buf);
        for _ in 0..64 {
            match dec.decode_entry(&mut rd) {
                Ok(Some(_)) => decoded_some += 1,
                Ok(None) => {
                    let _ = dec.decode_trailer(&mut rd);
                    break;
                }
                Err(_) => break,
            }
        }
    }
    assert!(
        decoded_some > 0,
        "the garbage never formed an entry; bias is broken"
    );
}

#[test]
fn decoder_rejects_bad_entries() {
    let o = FlistOptions {
        protocol: 31,
        varint_flags: true,
        ..FlistOptions::default()
    };
    let bad: &[(&str, &str)] = &[
        // "." as a regular file
        ("01 01 2e 00 00 00 00 00 00 00 a4 81 00 00", "non-directory"),
        // invalid mode type bits
        ("01 01 78 00 00 00 00 00 00 00 a4 f1 00 00", "mode"),
        // ".." component
        (
            "01 04 61 2f 2e 2e 00 00 00 00 00 00 00 ed 41 00 00",
            "unsafe",
        ),
        // absolute name
        ("01 02 2f 61 00 00 00 00 00 00 00 ed 41 00 00", "absolute"),
        // prefix longer than the previous (empty) name
        ("21 05 01 61 00 00 00", "prefix"),
        // name overflow: LONG_NAME with 5000
        ("41 c0 88 13 00", "overflow"),
        // nsec out of range (XMIT_MOD_NSEC = 0x2000)
        ("a0 01 01 61 00 00 00 00 00 00 00 f0 00 ca 9a 3b", "nsec"),
        // hard-link reference to an entry not yet sent
        ("82 01 01 61 05", "hard-link"),
    ];
    for (h, what) in bad {
        let buf = hex(h);
        let res = FlistDecoder::new(o.clone()).decode_entry(&mut Reader::new(&buf));
        match res {
            Err(DecodeError::Invalid { detail, what: w }) => {
                let all = format!("{w} {detail}");
                assert!(all.contains(what), "{h}: {all}");
            }
            other => panic!("{h}: expected Invalid ({what}), got {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Captures from stock rsync 3.2.7 (daemon and client on loopback): decode the
// server's file list, re-encode the decoded entries with our encoder and
// require the identical bytes.

/// Names learned from a decoded stream, served back to the encoder.
#[derive(Default)]
struct LearnedNames {
    users: std::collections::HashMap<u32, Vec<u8>>,
    groups: std::collections::HashMap<u32, Vec<u8>>,
}
impl IdNames for LearnedNames {
    fn user_name(&self, uid: u32) -> Option<Vec<u8>> {
        self.users.get(&uid).cloned()
    }
    fn group_name(&self, gid: u32) -> Option<Vec<u8>> {
        self.groups.get(&gid).cloned()
    }
}

/// Options from the capture's protocol, compat flags and server arguments
/// (the option bundle plus long options such as `--specials`).
fn capture_opts(protocol: u8, compat: u32, args: &str) -> FlistOptions {
    let words: Vec<&str> = args.split_whitespace().collect();
    let bundle = words
        .iter()
        .find(|w| w.starts_with('-') && !w.starts_with("--"))
        .copied()
        .unwrap_or("");
    let letters = bundle.split('e').next().unwrap_or("");
    let has = |w: &str| words.contains(&w);
    FlistOptions {
        protocol,
        varint_flags: compat & 0x80 != 0,
        preserve_uid: letters.contains('o'),
        preserve_gid: letters.contains('g'),
        preserve_links: letters.contains('l'),
        preserve_devices: (letters.contains('D') || has("--devices")) && !has("--no-devices"),
        preserve_specials: (letters.contains('D') || has("--specials")) && !has("--no-specials"),
        preserve_hard_links: letters.contains('H'),
        checksum_len: if letters.contains('c') {
            Some(16)
        } else {
            None
        },
        inc_recurse: compat & 0x01 != 0,
        id0_names: compat & 0x100 != 0,
        numeric_ids: has("--numeric-ids"),
        safe_flist: compat & 0x08 != 0,
    }
}

/// Decode every file list at the start of `data`, re-encode, compare.
/// Returns the decoded lists and the number of bytes they span.
fn verify_capture(o: &FlistOptions, data: &[u8]) -> (Vec<(i32, Vec<OwnedEntry>)>, usize) {
    let inc = o.inc_recurse_active();
    let mut dec = FlistDecoder::new(o.clone());
    let mut rd = Reader::new(data);
    let mut ndx_in = NdxState::new(o.protocol);
    let mut lists: Vec<(i32, Vec<OwnedEntry>)> = Vec::new();
    let mut announces: Vec<i32> = Vec::new();
    let mut trailer = FlistTrailer::default();
    let mut start = if inc { 1 } else { 0 };
    loop {
        dec.start_list(start);
        let mut l = Vec::new();
        while let Some(e) = dec.decode_entry(&mut rd).expect("capture decodes") {
            l.push(e);
        }
        let n = l.len() as i32;
        lists.push((start, l));
        if !inc {
            trailer = dec.decode_trailer(&mut rd).expect("trailer decodes");
            break;
        }
        let ndx = ndx_in.decode(&mut rd).expect("ndx");
        announces.push(ndx);
        if ndx == NDX_FLIST_EOF {
            break;
        }
        assert!(
            ndx <= NDX_FLIST_OFFSET,
            "unexpected ndx {ndx} between lists"
        );
        start += n + 1;
    }
    let used = rd.consumed();

    let mut names = LearnedNames::default();
    for (id, n) in trailer.uid_names {
        names.users.insert(id, n);
    }
    for (id, n) in trailer.gid_names {
        names.groups.insert(id, n);
    }
    for (_, l) in &lists {
        for e in l {
            if let Some(n) = &e.user_name {
                names.users.insert(e.uid, n.clone());
            }
            if let Some(n) = &e.group_name {
                names.groups.insert(e.gid, n.clone());
            }
        }
    }

    let mut enc = FlistEncoder::new(o.clone());
    let mut ndx_out = NdxState::new(o.protocol);
    let mut out = Vec::new();
    for (li, (start, l)) in lists.iter().enumerate() {
        for (i, e) in l.iter().enumerate() {
            let ndx = start + i as i32;
            let is_dir = e.mode & S_IFMT == S_IFDIR;
            let hardlink = if o.protocol >= 30 {
                if e.flags & XMIT_HLINK_FIRST != 0 && e.flags & XMIT_HLINKED != 0 {
                    Some((0, ndx as u64))
                } else {
                    e.hardlink_ref.map(|r| (0, r as u64))
                }
            } else {
                e.dev_ino.map(|(d, i)| (d.wrapping_sub(1) as u64, i as u64))
            };
            let fe = FileEntry {
                name: &e.name,
                mode: e.mode,
                size: e.size,
                mtime: e.mtime,
                mtime_nsec: e.mtime_nsec,
                uid: e.uid,
                gid: e.gid,
                rdev_major: e.rdev_major,
                rdev_minor: e.rdev_minor,
                link_target: &e.link_target,
                top_dir: is_dir && e.flags & XMIT_TOP_DIR != 0,
                no_content_dir: is_dir && o.protocol >= 30 && e.flags & XMIT_NO_CONTENT_DIR != 0,
                hardlink,
                checksum: if e.checksum.is_empty() {
                    None
                } else {
                    Some(&e.checksum)
                },
            };
            enc.encode_entry(&mut out, &fe, ndx, *start, &names);
        }
        enc.encode_end(&mut out, 0);
        if inc {
            ndx_out.encode(&mut out, announces[li]);
        }
    }
    enc.encode_trailer(&mut out, 0, &names);
    if out != data[..used] {
        let at = out
            .iter()
            .zip(data)
            .position(|(a, b)| a != b)
            .unwrap_or(out.len().min(used));
        panic!(
            "re-encoding differs at byte {at}:\n ours {:02x?}\nstock {:02x?}",
            &out[at.saturating_sub(8)..(at + 24).min(out.len())],
            &data[at.saturating_sub(8)..(at + 24).min(used)]
        );
    }
    (lists, used)
}

/// Regenerates the `CAPTURES` table below from a capture directory made by
/// the scripts described in its doc comment:
/// `FLIST_CAPTURE_DIR=/tmp/flcap/cap cargo test -p protocol --test flist -- --ignored --nocapture`
#[test]
#[ignore]
fn regenerate_capture_fixtures() {
    use base64::Engine;
    use std::io::Write;
    let Ok(dir) = std::env::var("FLIST_CAPTURE_DIR") else {
        return;
    };
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "data"))
        .collect();
    names.sort();
    for path in names {
        let data = std::fs::read(&path).unwrap();
        let meta = std::fs::read_to_string(path.with_extension("meta")).unwrap();
        let mut lines = meta.lines();
        let mut first = lines.next().unwrap().split_whitespace();
        let protocol: u8 = first.next().unwrap().parse().unwrap();
        let compat: u32 = first.next().unwrap().parse().unwrap();
        let args: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        // Server args after "--server --sender", up to the "." separator.
        let args = args[2..]
            .iter()
            .take_while(|a| **a != ".")
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let o = capture_opts(protocol, compat, &args);
        let (_, used) = verify_capture(&o, &data);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&data[..used]).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
        let stem = path.file_stem().unwrap().to_string_lossy();
        println!("    Capture {{ name: {stem:?}, protocol: {protocol}, compat: {compat:#x}, args: {args:?}, zb64: \"{b64}\" }},");
    }
}

/// A stock rsync 3.2.7 file list (plus id lists / sub-list announcements),
/// zlib-compressed and base64-encoded. Recorded from `rsync --daemon` with a
/// tee proxy; tree: `.`, `big` (mtime 2200-01-01), `empty` (1960-01-01),
/// `a/{f1,f1hard}` + `z/f1third` (one inode, mtime ...05.123456789),
/// `a/{cdev 1:3, cdev2 259:300, bdev 8:1, bdevbig 4095:1048575, fifo, sock,
/// link1 -> ../big, longlink -> 300 x T}`, `a/b/bb` (1000:100), `x.y/t`
/// (65534:65534), `z/zz` (4000000:4000001), names of 255 bytes, 200+1+200
/// bytes, with a newline, a space and UTF-8.
struct Capture {
    name: &'static str,
    protocol: u8,
    compat: u32,
    args: &'static str,
    zb64: &'static str,
}

const CAPTURES: &[Capture] = &[
    Capture { name: "p27", protocol: 27, compat: 0x0, args: "-lHogDtpr", zb64: "eNrtVrtO60AQnV3HwXBvcelyUwESHYoJFeIlgaCjAIkf8DOxCHYUJzwiIcEnIJpUCKQ0VFAhChqUhnwBzw+gCQUFJWHG9oIFDVWKwJFWSmY2O2fnnFmFsQz8A3gu8tXWLLwjLW1mtigxvL1v1fo2nHJ+wC9qhsUwWd8FYK8AU80apGVrrVjeot/sKKMtCt/cYri9+LNBfXrCplJDXrAhqaulLkHcLmlzvgOgii2smGZVYcmU4lobfQXHDQxJdIQpJ9GUKabRxqeIZepP48JtnBiNM7Nx/Hn/NJlY0p1ckjz8/+CUgteoGJdxBNQyh7D4axuAFqXvMT23hyd1i6bqcpdAqCveMVJrAhWuNTthVHWhAwimAV193uSqzWPP8Qw5ubeq2tly3imZfyEcFUrdomGHOK9WpcjN0DsNjBYmHzC5I2mqLk4WGOcJw7TWIXrK6oMAEjb4nPfoGMaRoUxdA2gjpnjCdmwPogL1foBDLuOErmZpstpHAI9SuOh7JqPiAQOc21lBlO4R141IIwU9TgGLMQXggid8zwhUbl0S0aSdzWsfdxYtCY+Q6RZj8WuMSP0YVwqemyOGIywkTSTp88ovvo1DVEjVdSkyIulrRgLeYfeDgGIUvIrpm8EjmnQ93TODfwy0Ua74Vsn/sqvH9XIlr1IUhngDHRiDEg==" },
    Capture { name: "p27_c", protocol: 27, compat: 0x0, args: "-lHogDtprc", zb64: "eNrtVktME0EYnp1toVBfJJrURpOqMT7ArjVGFCgJBIhRSKgKysnsdndLeezWPng0aPCVoAeNcrDRIJr0QmLAYARUFLAxQkSNB3kIKtEL1BSQgwdNqDNtNza0NZ44IF8yyU72m5n///7vn12C0II1AMxZYLkvC8SEmqzR1mLi1tON3MKXrsRqs71UY7PQRo5Ac/dZAIh5ADIGXEBF1fYoZ7/VjRddyEvVuw6r5VylxV6Ll9UrdvswbWTUBXRDbyfelU3pOjNKhid6L/Wq/fn/N7CO06goWKAfSCBD197Ovhllibew4eqrA/e+qPoLlwj+Zj81m7MIwBH4UAQRpxPOWJZXKQSuOrHCLAQMj8OXTJ+OTD8l3PL2PDGsbbO+Sft1knusImi80XSMLFVKT7fgaTN6OlhPy8L99Gi/T7vEmx9z970+9HWG2K5vH1STjNkUh5euv30fk4aRQ4wHN9S0yp4TPwlvU/LGh5VQjlqWskMQTG7eDwAemD6G6Fkt76fH8kaHryj7+aHjpsnsa+jkpeIpyrBEILlBsgquXhpyRGvOkeItq2pSyfOzzTtWNxe4BhajUajcRUCgG6N0SdcApHgY9nnJRDrMZnovHj1zik6jCs815ic71AlOitfZS81WdgUIti6mjiLD3+Avt881EeuerkyiHz17odkModNJhroDJOgBgQcijyNyQcfOrDL+e13V/HVFe49hpJ6kKSZWZBL2Q5mR5apA6Op2bwKAJKIkAuMZREMtjGduGgA/wkJWBpTxZl4EoQDdSZEb3YFydAOV6/BN4L8LwCQZHHiu1VKhA8KhgZDXScJgHcN9FU0klBITnhIKllBERtINZTbRGHCpry+aMHG8rpT+UxOphNGPlGMV94TLmEImRdlUUSEKJqxAChEUCYuAn48t458RaSoZQzEMGWo07Cc2ZJAPqFqfB22alw3ZwoOO9G3FRe4TAYLCWCE6WBsb+MjECSIjsoE/PLxQ7rBxVlsEK14QTVbRYZGO/Q3vV/JP" },
    Capture { name: "p28", protocol: 28, compat: 0x0, args: "-lHogDtpr", zb64: "eNrtVb1OwlAUPj21taiJumEHo0Y3Q8XJQQeNbg6a+AL9hUZsCQV/SEz0EYwLk9GExUknw8BiWOQReAMXGHwA8JzSKomLEwP6Jae5t/f0nO/c891bQUjBDMBHHo/b2/AFVTxPXfDCyuWtXZk4c4vZhSCvm7ZAi9VrcpDsk3zxgn2vlLW22tv/2+B96dAmJt8ORgSDslCt3SGAM7YpoyqUY+klFc8+m8i5Xig8psPiSwo6O3QidsnJRt1rPJmNF6vxOOinioabkVmjc3fPKJGktSJCP0m3B8C2c0NfjErPtMMRQdzF+D6qNIchQG1vCAhVTqqtNVFzMLpO5zFR1px0MesWrCnoa1/oArRaFVhCLJfFSLaQ2AKB7ErUNSMOFWNTwTHTsk8huoyqiwC8k2INxw16T6eBl6o6QG+ajB6bCRxzXMeHKH51lgb3KNGRO07z0ek9ALyLfeN5KqVRmGUZ0UnHTLmCGMyYeRiDPCihQmOhTtkC3wzb2n5lxjLKTjqrf1fNsTjGBkpcyvpgLSIVs0q2gUrO9zLMkafMm2ny+Ogfv8Y9dUkzDDHSIHfY4u3mgWLm/JIVWOE9KXu+4Vvhz54dpFJgF4IfXuOenyn4pXyshE/N51+G" },
    Capture { name: "p28_specials", protocol: 28, compat: 0x0, args: "-lHtr --specials", zb64: "eNrtlL1OwlAUx09vBQEddCsdjA5uptc6EcNiopuDJk5u/YQGLEQakSYm+gjGpZOJSRcnnQwDi+kij8BDwOADiOeUNuDmxID+h37cnHvO/97zu7coKLAG8NlkteEBgCxeKx0a2L55sIJC2/Gqm62mZlgCAIR3GJCxLppeB//gNrc7lMfHf1u0LyPcPOnjZEH0AwfzcA6iikOsKAt+ip6Uc612oe64MXhkh+CTBI0CRok7aSXqudGLEb2Z0fNsnCzqTiVLjBYfX+UMIs09BpMi5/cYuSi94qcLorR7QX8ewPGjOSimGint9hm3WXJ9brC8z23VqzqX5ipMWBe+AAaDAPYZ830xwTQQNa6nKUpsyTCtK0jumnALs7JlHYeQcxoNNYByni3Zjt2AJEO4DhSWwUNUU+kwjJ8A6K0oHKeVs4zZauqBvJEHrKTPVsK8Pczbahi1OO87PnBm1lar2nQF09kZ8rk3a7TEcvWGWyEXO8LEGRmh77N//VpdbAzXdTHhKNY3KQlAWg==" },
    Capture { name: "p29", protocol: 29, compat: 0x0, args: "-lHogDtpr", zb64: "eNrtVb1OwlAUPj21taiJumEHo0Y3Q8XJQQeNbg6a+AL9hUZsCQV/SEz0EYwLk9GExUknw8BiWOQReAMXGHwA8JzSKomLEwP6Jae5t/f0nO/c891bQUjBDMBHHo/b2/AFVTxPXfDCyuWtXZk4c4vZhSCvm7ZAi9VrcpDsk3zxgn2vlLW22tv/2+B96dAmJt8ORgSDslCt3SGAM7YpoyqUY+klFc8+m8i5Xig8psPiSwo6O3QidsnJRt1rPJmNF6vxOOinioabkVmjc3fPKJGktSJCP0m3B8C2c0NfjErPtMMRQdzF+D6qNIchQG1vCAhVTqqtNVFzMLpO5zFR1px0MesWrCnoa1/oArRaFVhCLJfFSLaQ2AKB7ErUNSMOFWNTwTHTsk8huoyqiwC8k2INxw16T6eBl6o6QG+ajB6bCRxzXMeHKH51lgb3KNGRO07z0ek9ALyLfeN5KqVRmGUZ0UnHTLmCGMyYeRiDPCihQmOhTtkC3wzb2n5lxjLKTjqrf1fNsTjGBkpcyvpgLSIVs0q2gUrO9zLMkafMm2ny+Ogfv8Y9dUkzDDHSIHfY4u3mgWLm/JIVWOE9KXu+4Vvhz54dpFJgF4IfXuOenyn4pXyshE/N51+G" },
    Capture { name: "p29_c", protocol: 29, compat: 0x0, args: "-lHogDtprc", zb64: "eNrtVltIFFEYPnPGXUe3MqFgWyrsRhdrp41IMw0UlSgFt9LyKWZ2Ztb1MrPtxctiYTewHoryoaUwDfZFCA0jtbLUlkjJih7SpJvUi26smo8Fbudfd2ohH3rywfzgH86ZM+f8/3f+7/8ZijKi5QhN23FZMBP9hoGuNtbAwqZTDaI3vsrmKkly2jmLSJFF3xmE9GxNj27qW+2HwvO5KRneQwaNWGF31cDeOmZn0DT0evRN6bipM714eLT3Yq8hlPd/A+5tglyyuWt3Z9+krjhQUH/lxd47X/T9BQsE0TIyCNnzAPAYJB4NlEeVqp6Rxar4cpscFiqEA2Idl28Geh6ZV7Q5XqX9PCE+1FMcbJiIRKvX+btlf5vF3yH4W6L3fdqh3PiYs+flwa+T1JaM9kEDzdusWtD4qlt3LQdWV7fGPKV+UIHG5DX3K7CGlAzrwmg2qJkQQmCZLW8n3ueODF/W9UtDx6xjWVeJh4WSc9a8QKBmXe1/rdmHizYsq06hz001bU1oyvcOzIeg2Zx5QLhqiOq7BjAr4Ug7n9ofuHDk9EkujS0425CX7F6L4zysZHKV2BzCEjRbW9QMQiMjXnRdutQ+3UitfLw0kXvw5FnSeow9HjoiexSXgShi+R3bMkul77WVM9eY9h7zuzqaY3nVtYp0BsdYBLESRZqjbx1CkAm6C8fy5D2pNljycQiFEoiRR3ocjpFskoIi/nyJZNCMNaTky0xQmqHbCI3RswZzo5Elx2zUYiyZVCbAWMVcjCAuPjouEgBDxlQ38e5ULGGZBPuAgRZrJVMJ9+eW4Oy5zkzFGqC6K5orTchuJ5aKmXJFtgIHmAIvoAHjo4v4ZzSTrLE8T0c0DQoQyPjzoDPpeX2WfK9j3+aiQt/x8AJjKVfcglMI92mtrPCKEP55gQ0at1N0OP/6KlZWrA7FbVeV8wtFZ87D" },
    Capture { name: "p30", protocol: 30, compat: 0x1fe, args: "-lHogDtpre.LsfxCIvu", zb64: "eNrtlL9O40AQxmfXcXC4K7gu54o76boovlyVhuJOd90VIPECsddOLAevZTv8iYRkkwdAQEOFQEpDBRVKQQFKAxWvQJkmFFRUmBlIETqqFIFP1mq1/nZm5PmNGSsDzHn3AR/+BpSurJc38MT+sbmX7M+uuXFjPgpqlg0Muim+V+2VIEYHPCTaz2GG0rP/71v4aby7gBevFqdEY0To4u8ERAmHAddZe4ReUfPttdmm6xN3VAuxV2Q1Mt69VFb81D/3+ydW/0z0j8dcumK6dchDCl8PTrmKOBsxcKD4F48ZPn/SnWlplLE0JRr1DyDZv54EcMa/CQhhJVCT3jU3HESQ6NzVC23DqcQNNxTwGYj175y326A8E3oLhYVbVlhIEqVmmKMAAFWes4S9ijuiv/sNgClJj8+YeEi0A3RxNLazmyxL0eu4jiQvBux+wU1yyFWcJa+CY5EdAXQGnUG+XDbw6tY8505lDi+ZYwkwmMbSHs9F0vLwcHiJy1aV551KoxYKtKtUz6+xglIlLVW51pR+nVJBiVF6ypaWlj/0ZmGvcqZhmggE8dIZCFo0qylbIhIe/r/yvjSl2IBcKGUs1FZkh9Frx4wv66FsBS+WJ3ZVa4Q=" },
    Capture { name: "p30_devices", protocol: 30, compat: 0x1fe, args: "-lDtre.LsfxCIvu --no-specials", zb64: "eNrtlC1Pw1AUhk9vt1EGAlxXBQK3tBS14EjAISBB4fq5NR1dwxoGTUjaX0AIZoqEpAYFikxgSA1T/JJOoHDlnK0hlaiJwet6ez7enPuc2+BkgDX302fZHoDEX8pX+G1tXd9Fw/rACTobfV8zLOAgifF/1TrzA4yAr0jYznKUlB/+beFo3InPxPejBVGZB3N/DqKGmc8kLizQEwXPGtS7jkfckRdiT+Q0CpzMnIkr6auXPhnpi5k+lqIkXnfaUIMYGvfPUhVxVgJgQPVP49tFuSLleEFU3Fw0HM8DNOVgDkJICdBoNGaKjehNqVwOFVsNOs65CatAiO8yFobAT8GMhrym6EVei1UM07rAJ5ZQTzYBOD4asSUdDwltgAT34Cb/yHMMtR27R6FYJVmnpqyKa+OquAH5A0BNlhVMajFmq0VjsoOJeqkH1hM4TK30e4aLh9kbhdRstaP9+J2lVcnaTslbzMfNFhO6Pa9NfaHJkRVqHTdP/vVr0fR1RdeRCJo0wDcg4EhX" },
    Capture { name: "p30_inc", protocol: 30, compat: 0x1ff, args: "-lHogDtpre.iLsfxCIvu", zb64: "eNrtVb9P20AUfvccB4d2aDfjiVbqFsVNpywMldqtQyv1H4h/JZZTnxU7pUSqZIelA1IFLEwIpCxMMKEMDKAsMLEzMbKEgYmJ412SwSNThsA3nE53z+999vd98gZjFYA3wV2Eo88AUGhznkxWQ/lTWaM798Pf7XRncdVPmstxVLddYNDPAAzV/RUlVAH3qfZxJAiG+Pa8QZ8muI1QP/8+J8h5w3C+zABy4ChCg3Wn1tO10F1dbPmh9J3kIr2ns7osvJ0w018NT8LhoT08doYHuSpDsfwGFCGDpd0jAOHqF7N4BfPrDJAPLQg1HVyg6QGOk0kHD2kDIL3KNufFiOaPOQH5k/RhulI3ranZpYg1LNiO+5vupKv77wCYkg5wwaJD6WKAPln+v7gUIqNaz/e4rKWn+29ps7GHKmUkqJLdxT7A+o1mt3jHiZ0gty1WKiY121pG9KrwGmS+JoahllZuPI3SWDbAQsztgA5HZ7T0alj0qs1621mqoSrZfsrRzZSsXEOtxcOGJAJlJslJLln55wueDDJH4d8eyWFaFijjPK/fOGondtvxONg+qd1T6d9sJpT30wdRDLnFnTXaLYS80eadSBqsh6Wu6VWTpk96TbUGeI/Y7VJbqc01lFauWWll3BUBHgGyY3Ql" },
    Capture { name: "p31_c", protocol: 32, compat: 0x1fe, args: "-lHogDtprce.LsfxCIvu", zb64: "eNrtlW9IE2Ecx5+7zbWtIocU6wpaQytKttacqSGoadkfSCEQloTbbv/Y3M1tZg7UjYFlfwipYEHkJeuFQimjP5Yhi0EqomlF6QthhKaYN2aSWoTX80wz6lWvfGF9uRfH89zv9/tyz+d7R2OYDIBEy2c7HhNfSUtjcgEUwTkvq4bL+pSa6x6/sMrsMkmcdo1ODzAQ8AKQ1DV3aujt03dCdbfokbRvlEjQl9tdsAIsePj7GRaq7tjVI8lhrGzYfxR7w2u9RRPsyX9b8N1ZonacyfswJOoPekhrbCoalU6HMFcpLe4pWiNagck3r0Qw0QSZvwpCYxk4VlWYnklg7mV2aTHfpq8SWs02RO4K5Ahh4eUHycZNrX3qCz7VtteiMC3GNKhJ/IRGbsSti9eHn9vCbbrwYzLc8mcDqXliZmA2svHrnL8jp1V5luBozUbAA16w9U777bGeGdXDRHX5F3Oku/6ZhcYTYKLkLoCDuM10dXtmaJGFV+ngcemTGsn3HarpohMLFEvneRvXCgvy4jWilbOHUAMw3hJ6/7Fk325lcFZQsL1pmPb3rgbi8oJVEIxATHyzIv4foDt6cbkBIhtfQcxPES33x3fFTG2iTnv7JdPeICFwyw0Kl8nsIMEGgCI3sbn/TEp+4T3lRDA9qR9UDPd+i9JSHHe7AWeZfR2TGQGC7AgmyC5rkhzaovTVhubHFosbGuZoD0cj1yITKCFLPyM6A+fqSP05eIvSOZ3bNRrYCQDGoTvwdVq4gXIHAEptAEb4GvuKZVGNwWygUA2aebA2kBUQwV4wiPBrYFHAoMaNsHcB8E36JnkymRz2aZbguEGRiMq1v0Yyud0Eas3H4Eiuk9JZ4MannIsU8wKA5gycZ1CYNA4SlSUgpwd+1uUNliCrXo43Fe7xrZTNiKaDVGzJFVOThQx4U0//118LniFXK9dqIU9xShCYvklSUX94ZLazzjTVOPByTx+3HC3ydVaqknSSFvih5dkoLUVWA66DolxkQqVT73D+/sQ6G2V0UJX2pUd+ACDeEqE=" },
    Capture { name: "p31_c_inc", protocol: 31, compat: 0x1ff, args: "-lHogDtprce.iLsfxCIvu", zb64: "eNrtlm1IU1EYx59799K0IocUcwXZ0IoS15qaGoKalr1ACoFgErrdvTHdnW5mDtStgWUvhFRgEHmTBSmWMnqxDFkMUhFNK0oDYYSmmBszSS3C2zlbmkQf+uQH6/lwudxznnP+53l+/8NtIYhYgDD9ZyPpF12Ki/OmAQC3lKbNwaeYcya2Ak1QRVdetdaHluvM2kiTsVCpAgIcNoDwztnjg2+evA3N6xI+lPSOiHmqYqMZZcC8VbDHy6KoPnz5YJSbKBiqP0S85jffYMTssX87UO30PiPpTf8wKOxzWqki/6TPJ5lyEeZ8RtSdvUpiCSv7nBxjxYipjBUIvK0XbRuflZAkJiw/2WVEAoOqPLRIZ8DkLuGOEQ69eD9Ks6G5N++cPX7zK6GbERGFeJFAh4avBaSL1rqfGdytSvcjyt30+wIS3fh0/4xn/dfZ+vbUZvkpMUeh0wAfbBBxq+3maPd0/IOwvOIvOk9XzVM9AKtiRD0rUQlp5grEUpevlwQvD2B5THsPKVUDCYGvuEST4qZ7Y9v92lZhh7HtgnYXmrVg1aDCvrfVrRbepTmrJBDfAdOONbnefczdvUPunAnJ3NIwhJpGMCJOoVSx6LGEvLakgD8SSa6SUp1G3ce2mUrrHHFsAyA4TDu5RoEGsCEAsJ0cyFtX2Jcsi3PUOjWNc/Ba+6ocyQ4hQAtD8pBN9TLkIH+C0pvE3gawTwiURXQZZaL0y175sbFStLIzkiTVMlgH2OjjG/tOYuIAojOy7sjHnQnhfVAy1PPNhzdU/BLpTesSYzECAonkmmglsiZ8Sj1Pe58DNCaSfLVMW1hKRaA0Hj7b3sW89IFcfDgbxxaDxgRFtEGD9UIMETyHtzIZS7bFnPgffx2ILe5dBjVIqlAABwJk4TbaJyhemUlVapLVHBie6ajWTtb1v9jZyy0O3CA6hMtZHvpDkZrxbYOTXAss30AraKoCva0x0JpSusyYP3BE8rgy8vvW+Knso/M0i0luJEMsUrXMrNWhJi+D5w/gSEjSYkGqgswjJD0QkuIhQlIKGiL3b5Lbq1xzows5tbWzAVEkwA8Z8SUY" },
    Capture { name: "p31_inc", protocol: 32, compat: 0x1ff, args: "-lHogDtpre.iLsfxCIvu", zb64: "eNrtlj9oE1Ecx3/3Lpcm1UEH4XpTFdxCzmiNTaFgioKDg4Ig6JT7lxyJdzF/rA1UcmZxEERUcJJnyaBQsDhIBxElg3YQdVQQiosFPSkuOvX8/e5sLE5OGWK/w3Hce7/3+733+3wftygIaYBd5e9Vti5fn5jw8wAQq7luI3oq4uX0HE4w98/fat8dnbUbpfF6taCbIEDXA1Ak80K1gTPgZztxwA9QXAlO/t/Csyl/qzJ/5tM7Lr86NSTqY9L5cYgw4YpxbACitD6mPXwim1OE1m8WuZxwzNnRiu0QiX18CUkuCwUKCjvw/nZYqryj99TpPdJ7T4zew78DFFGzixAHD8buLQEEJpdXBrEz9fgA1O/anYuRuSGQ+PIKUy1gEH6lI8CvG+0iHtQH7+aw8KqeHhIhr6HpsEkCl8WCqm16IntuKRfyPcliumFewj4S9l/zzz529wIIIl9mIxoOEOAAZIcueuNG8AavaYyxbMulGFrryJXuVHc3wCJnEtqqnEFHrGd1PxfcB+isJfSK2zTqRnnLazydVnHlx+OMWRnYCWTMz3ten4+IogTan6L8/EuFkicELCpWd/UyDnw5es31XwAsTLK4lSkVasYYhkm0l4ObcTNvz9JmPNFL4Vii4jpFqg9SQlS3Pz9FJXqpM9v6ZyFLsQccG6RqGogQkkRt66wZUrNu1urhjWAjDlcl/ANQG3Rb0KTnG0HccTXXmMO3Ecct1txmlchcYMmWamUaJRubuAUGBGEfY60WZomYRaRWITm9KiSnwyQM4Be7Q7cZ" },
    Capture { name: "p31_nolinks", protocol: 32, compat: 0x1fe, args: "-ogtre.LsfxCIvu", zb64: "eNrlVL+LE0EUfjv5cclpoYWwbnUKdnJr9DyTgwMTFCwstBK0yv5KQuLOmt14XuAkIY2FjahwlYywjZVXyRUiSgq9QtDSQjhsDOjKYaOV8b3ZM97dH5Ai97Esy9s3730z7/tGKMoswKH6T49tqffn5qIiILTEndllDNsnVh52VqeXakF1xvfKpg0KhF38n7JvegFmwO9O5lQ0RAhteHl/A8+m/sNjUenLR6G+uzIhGImj9+sMiUNo1oUxgNpG2PbspfmCprS3tSjUjGsvTTdqLilxJFqSpFCVMi2SE/j0SFJVD/Rfuv3nZv+F1X+2d4GWMGoVSEMXjj5ZEyyFitcDYCDbzl9fK7z+M8RHlLoPJmWW+tUJwWiWKEqc8+rGOCSpXxwDUMJb6uNb8h4W6xtMd1CSMiJFrmXbupMLqrWmBQeBLPH1yPsb4jhj7TYktrVrRoVNyC5uKtlF0UmUdYOKkqLjy13kWdK07Nv4SW75Xnz1OTxG3diUgWFyBQB5KCzHyU7N4ZRMxc/dDRfCwxhHx6AN6zl0kOw4fArQG/QGYoYxJ7eDHPGO6xj/m0bFt5osv86SPjfrGP52/h6P3sjMtJOrlnftUG4+z1LE+/S/GqUP1yTxPMs0uFshOnBSiWlGKwvECGkmDd0w8GzkCVCd3sCiV8Zs8JblW3U0edrlBreWIdnkPLBSLd9u+rszplxeafKWF6f8BfDHTAM=" },
    Capture { name: "p31_numeric", protocol: 32, compat: 0x1fe, args: "-lHogDtpre.LsfxCIvu --numeric-ids", zb64: "eNrtlD9IG3EUx9/vd0ma2A52KFxvsoVuIde01hpBaEILHTq0UCi0U+6fOWKTVENtA5YcWToUSmkLTuVXuaVTpUNxKEXJoA6ijg6CuBjQE3HRyfO9UyM4OWWIfrnh+L17f7j3+f4EYwmAzvxOiW/Ln7q7vTSgFOld4j0em7dGv1bHOkbscq5ruJTVTWDgOhgPm69LZfwC9qrR256PEor/5HwL/01+q8S9zNqSkGeftomacNR27xIcQjEetkDU1sO29x73pBRWOWJRyNGCOdIxaBeIxCa0hKSQWZaSgg0sfwtGlS/X/xXqv/X6X6P+63SCImn2AETAges/JgQPI/FqGTgEbXteTqSm9n18RMb50i67VJ+1iZq7RChxz2NzrUBSfdQCIcLb8vc3wT0sJue4aiGSwQkx+0eJVVQrWc7ZQwZcAbLE+rX5V+Im55UKSEfs6l5qFWL9qyzWL6pSVtWoKBF9eLmLXh7SDfMtvpJbNtP/V9wbAEwSk/yShgHyBQC5yEVLffYX8HbHHMu2ipRDPe5/cPvcq1gLjYNuzCfRSEFj/ydArVFrRBIJFeuMd3FuJTspXTtp6aVnFCodZdgyNFzU8xjYePCx6E0DjPfyiJXMZYcMSgvTpHeO8zKLL2hUR3LiGIsOFgsD1B3i7HAqb7SPBnDizy90ZuEOQ5qqachPQAmBVmsYAAc4AZH1" },
    Capture { name: "p31_varint", protocol: 32, compat: 0x1fe, args: "-lHogDtpre.LsfxCIvu", zb64: "eNrtlD9oE3EUx9/9LkmT6lAH4bypCm4hZ7TWplAwQcHBQUEQdMr9S0Li/WJysTZQyZHFQRBRoZP8LLc4WRykg4iSQTuIOjoIxcWAnhQXnTzfu9SITk4ZYr8cx/F7v/eHe5/3hCRlAKaqX+tsS7kxMxPkAaXKVzNLeGwdXL7dWZlcrLjl6Wa9aFggge+hPW5dqrt4A753koeCECXU8PT/Lfw31S91FhQ+vBXKyzNjoiEc3W9HCA6hmidGIEobYNqjp2ZzqtTeZlEoScdanKxVHCJxCC0hKRSpSE5RB97diUpVdvWeOL2HRu+x2Xvwt4Mq65USJMCDfffWBIsj8ZoLDKK0sxfWcs9+hPiIgndrXHqpnR0TDXuJUGKfVzZGgaR2cgRChLeUu5ejPSzWN5hmI5LRCTH7SE21NTvrlisNE3YDjcTHva8uigOMtdsgb7NrBLlNSC1sSqkF0ZGLmk5BiejBchdzLGaY1hX8pGn5nH/63t8PIMlinU3oaKC5AKAp8nGkboavcbujj12xOflQjmPX/Hl/D8bCwcFprGZxkKLE4X2Abr/bT2QyGsZZnWbMzk6Ru/47ZZB/oVLopIQpY01uVNHw6fh1HjwHWJ1jCTtbLjZMcotTpYd/+RXenKdSPdlLoy1Z406JskNaGlQVLM9TAV763I7+WdjDmK7pOvITUUKgdfsmvZJGjbfMplnFRZhwuM7NJYg1OHfNeKtpNZp/3phweKnBW/XBlZ/0oKzU" },
];

fn find<'a>(lists: &'a [(i32, Vec<OwnedEntry>)], name: &str) -> Option<(i32, &'a OwnedEntry)> {
    lists.iter().find_map(|(start, l)| {
        l.iter()
            .position(|e| e.name == name.as_bytes())
            .map(|i| (start + i as i32, &l[i]))
    })
}

#[test]
fn stock_rsync_captures_reencode_byte_for_byte() {
    use base64::Engine;
    use std::io::Read;
    assert!(CAPTURES.len() >= 12);
    for c in CAPTURES {
        let z = base64::engine::general_purpose::STANDARD
            .decode(c.zb64)
            .unwrap();
        let mut data = Vec::new();
        flate2::read::ZlibDecoder::new(&z[..])
            .read_to_end(&mut data)
            .unwrap();
        let o = capture_opts(c.protocol, c.compat, c.args);
        let (lists, used) = verify_capture(&o, &data);
        assert_eq!(used, data.len(), "{}", c.name);
        let p = c.protocol;
        let ctx = c.name;

        // Spot checks against the recorded tree.
        let get = |n: &str| {
            find(&lists, n)
                .unwrap_or_else(|| panic!("{ctx}: {n} missing"))
                .1
        };
        let t32 = |t: i64| if p >= 30 { t } else { t as u32 as i64 };
        assert_eq!(get("big").mtime, t32(7_258_118_400), "{ctx}");
        assert_eq!(get("empty").mtime, t32(-315_619_200), "{ctx}");
        assert_eq!(get("a/f1").mtime, 1_704_164_645, "{ctx}");
        assert_eq!(
            get("a/f1").mtime_nsec,
            if p >= 31 { 123_456_789 } else { 0 },
            "{ctx}"
        );
        assert_eq!(get("a/f1").size, 12, "{ctx}");
        assert!(
            find(&lists, "new\nline").is_some() && find(&lists, "ünïcödé").is_some(),
            "{ctx}"
        );
        assert!(
            find(&lists, &format!("{}/{}", "P".repeat(200), "Q".repeat(200))).is_some(),
            "{ctx}"
        );
        assert!(find(&lists, &"L".repeat(255)).is_some(), "{ctx}");
        if o.preserve_uid {
            assert_eq!(get("a/b/bb").uid, 1000, "{ctx}");
            assert_eq!(get("z/zz").uid, 4_000_000, "{ctx}");
        }
        if o.preserve_gid {
            assert_eq!(get("a/b/bb").gid, 100, "{ctx}");
        }
        if o.preserve_links {
            assert_eq!(get("a/link1").link_target, b"../big", "{ctx}");
            assert_eq!(get("a/longlink").link_target, vec![b'T'; 300], "{ctx}");
        }
        if o.preserve_devices {
            let d = |n: &str| (get(n).rdev_major, get(n).rdev_minor);
            assert_eq!(d("a/cdev"), (1, 3), "{ctx}");
            assert_eq!(d("a/cdev2"), (259, 300), "{ctx}");
            assert_eq!(d("a/bdev"), (8, 1), "{ctx}");
            // Protocol 27 sends rdev as a 32-bit int that the receiver
            // sign-extends: 4095:1048575 does not survive.
            let big = if p >= 28 {
                (4095, 1_048_575)
            } else {
                (u32::MAX, u32::MAX)
            };
            assert_eq!(d("a/bdevbig"), big, "{ctx}");
        }
        if o.preserve_hard_links {
            let group = ["a/f1", "a/f1hard", "z/f1third"].map(|n| find(&lists, n).unwrap());
            if p >= 30 {
                let firsts: Vec<_> = group
                    .iter()
                    .filter(|(_, e)| e.flags & XMIT_HLINK_FIRST != 0)
                    .collect();
                assert_eq!(firsts.len(), 1, "{ctx}");
                let first_ndx = firsts[0].0;
                for (_, e) in &group {
                    assert_ne!(e.flags & XMIT_HLINKED, 0, "{ctx}");
                    if e.flags & XMIT_HLINK_FIRST == 0 {
                        // Transmission index, not sorted: a/f1 precedes the others.
                        assert_eq!(e.hardlink_ref, Some(first_ndx), "{ctx}");
                    }
                }
            } else {
                let di = group[0].1.dev_ino.expect("dev/ino");
                assert!(group.iter().all(|(_, e)| e.dev_ino == Some(di)), "{ctx}");
                let non_linked = get("a/b/bb").dev_ino;
                assert_eq!(
                    non_linked.is_some(),
                    p < 28,
                    "{ctx}: dev/ino on every regular file at 27"
                );
            }
        }
        if let Some(n) = o.checksum_len {
            assert_eq!(get("a/f1").checksum.len(), n, "{ctx}");
            let dir_sum = &get("a").checksum;
            if p < 28 {
                assert_eq!(dir_sum, &vec![0u8; n], "{ctx}");
            } else {
                assert!(dir_sum.is_empty(), "{ctx}");
            }
        }
    }
}
