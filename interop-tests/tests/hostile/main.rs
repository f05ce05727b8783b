//! Hostile clients against our daemon, speaking protocol 31 by hand
//! (`interop_tests::hostile_client`): malformed sum heads, indexes and
//! frames, floods and pathological checksum chains. Each case must end only
//! its own session (with stock's text where stock has one; see
//! docs/security-notes.md a.5), never panic the daemon, and leave it serving
//! a normal stock `rsync` pull whose copy matches the module.
//!
//! rsyncd/tests/hostile.rs covers the text phase, protocol-29 sum heads,
//! out-of-range indexes and disconnects; this suite does not repeat those.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use interop_tests::hostile_client::{pull_args, sum_blocks, Ending, HostileClient, ITEM_TRANSFER};
use interop_tests::{diff_trees, run_client, snapshot_tree, Daemon, ModuleSpec, Which};
use protocol::mux::{put_frame, put_header, MsgCode};
use protocol::ndx::NDX_DONE;

mod options;
mod paths;

/// Size of the all-zero file used by the chain tests.
const ZEROS: usize = 256 * 1024;

/// The module tree, built once per test binary (served read-only).
pub fn module_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("hostile-mod-").tempdir().expect("temp").keep();
        let root = dir.join("mod");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(root.join("adir/b")).unwrap();
        std::fs::write(root.join("file.txt"), b"hello world\n").unwrap();
        std::fs::write(root.join("sub/big"), vec![7u8; 100_000]).unwrap();
        std::fs::write(root.join("zeros"), vec![0u8; ZEROS]).unwrap();
        std::fs::write(root.join("a1"), b"a1\n").unwrap();
        std::fs::write(root.join("adir/b/inner"), b"inner\n").unwrap();
        std::fs::create_dir_all(root.join("xdir/b")).unwrap();
        std::fs::write(root.join("xdir/b/other"), b"other\n").unwrap();
        std::fs::write(root.join("xdir/b/inner"), b"not the same inner\n").unwrap();
        root
    })
    .clone()
}

pub fn start() -> Daemon {
    Daemon::start(Which::Ours, &[ModuleSpec::new("mod", &module_root())], &[])
}

/// The daemon logged no panic and still serves a full stock pull whose
/// copy equals the module.
pub fn assert_healthy(d: &Daemon) {
    let dest = tempfile::tempdir().unwrap();
    let r = run_client(&["-a", &d.url("mod/"), &format!("{}/", dest.path().display())]);
    assert_eq!(r.code, 0, "pull after the attack failed: {r:?}\n{}", d.log());
    let diff = diff_trees(&snapshot_tree(&module_root()), &snapshot_tree(dest.path()));
    assert!(diff.is_empty(), "pulled copy differs: {diff:?}");
    assert_no_panic(d);
}

pub fn assert_no_panic(d: &Daemon) {
    let log = d.log();
    assert!(!log.contains("panicked") && !log.contains("RUST_BACKTRACE"), "daemon panicked:\n{log}");
}

fn client(d: &Daemon) -> HostileClient {
    HostileClient::pull(d.port, "mod", &pull_args(&["mod/"])).unwrap_or_else(|e| panic!("setup: {e}\n{}", d.log()))
}

const END: Duration = Duration::from_secs(30);

/// The session was ended by the daemon with `text` and, at protocol 31,
/// MSG_ERROR_EXIT carrying exit code 2 (protocol incompatibility).
fn assert_protocol_error(e: &Ending, text: &str, what: &str) {
    assert!(e.closed, "{what}: daemon did not close the session: {e:?}");
    assert!(e.messages.contains(text), "{what}: want {text:?}, got {:?}", e.messages);
    assert_eq!(e.error_exit, Some(Some(2)), "{what}: MSG_ERROR_EXIT: {:?}", e.messages);
}

/// Stock 3.5.0 texts (security-notes.md a.5) for bad sum heads in the
/// sender role, with the negotiated md5 digest (16 bytes).
#[test]
fn bad_sum_heads_end_the_session_with_stock_texts() {
    interop_tests::require_rsync!();
    let d = start();
    let cases: &[([i32; 4], &str)] = &[
        ([1, 700, -1, 0], "Invalid checksum length -1 [sender]"),
        ([1, 700, 17, 0], "Invalid checksum length 17 [sender]"),
        ([1, 0, 16, 0], "Invalid zero block length [sender]"),
        ([1, 10, 16, 11], "Invalid remainder length 11 [sender]"),
        ([1, 131_073, 16, 0], "Invalid block length 131073 [sender]"),
        ([1, i32::MIN, 16, 0], "Invalid block length -2147483648 [sender]"),
        ([-5, 700, 16, 0], "Invalid checksum count -5 [sender]"),
        // Stock tries to allocate and dies on --max-alloc (exit 22); we
        // refuse the count before allocating anything.
        ([i32::MAX, 700, 16, 0], "Invalid checksum count 2147483647"),
    ];
    for (head, text) in cases {
        let mut c = client(&d);
        let ndx = c.index_of(b"file.txt");
        let req = c.request(ndx, ITEM_TRANSFER, Some(*head));
        c.send_data(&req);
        let e = c.finish(END);
        assert_protocol_error(&e, text, &format!("head {head:?}"));
    }
    assert_healthy(&d);
}

/// A block-sum list cut short by EOF (and one cut inside a frame) ends the
/// session without a reply for the file.
#[test]
fn truncated_sum_list_then_eof() {
    interop_tests::require_rsync!();
    let d = start();
    for cut in [0usize, 7, 20 + 3] {
        let mut c = client(&d);
        let ndx = c.index_of(b"file.txt");
        let mut req = c.request(ndx, ITEM_TRANSFER, Some([3, 700, 16, 0]));
        let blocks = sum_blocks((0..3).map(|i| (i, vec![i as u8; 16])));
        req.extend_from_slice(&blocks[..cut]);
        c.send_data(&req);
        // A frame header promising more data than ever comes.
        let mut partial = Vec::new();
        put_header(&mut partial, MsgCode::Data, 100);
        partial.extend_from_slice(&[1, 2, 3]);
        c.send_raw(&partial);
        c.close_write();
        let e = c.finish(END);
        assert!(e.closed, "cut {cut}: {e:?}");
        assert!(!e.data.windows(11).any(|w| w == b"hello world"), "cut {cut}: file data sent anyway");
    }
    assert_healthy(&d);
}

/// Negative indexes that are not NDX_* specials of a non-incremental list:
/// stock says `Invalid file index: -7 (-1 - N) [sender]`.
#[test]
fn negative_indexes_are_refused() {
    interop_tests::require_rsync!();
    let d = start();
    for ndx in [-7, -4, -101, -102, -1_000_000] {
        let mut c = client(&d);
        let req = c.request(ndx, ITEM_TRANSFER, Some([0, 0, 16, 0]));
        c.send_data(&req);
        let e = c.finish(END);
        assert_protocol_error(&e, &format!("Invalid file index: {ndx}"), &format!("ndx {ndx}"));
    }
    assert_healthy(&d);
}

/// A directory (and the top dir) requested for transfer at protocol 31.
#[test]
fn directory_index_is_refused() {
    interop_tests::require_rsync!();
    let d = start();
    for name in [&b"sub"[..], b"adir/b"] {
        let mut c = client(&d);
        let ndx = c.index_of(name);
        let req = c.request(ndx, ITEM_TRANSFER, Some([0, 0, 16, 0]));
        c.send_data(&req);
        let e = c.finish(END);
        assert_protocol_error(&e, &format!("received request to transfer non-regular file: {ndx} [sender]"), "dir");
    }
    assert_healthy(&d);
}

/// Requesting the same file twice is legal (stock re-sends it, as in the
/// redo phase): both replies arrive, nothing breaks.
#[test]
fn repeated_index_is_served_twice() {
    interop_tests::require_rsync!();
    let d = start();
    let mut c = client(&d);
    let ndx = c.index_of(b"file.txt");
    let mut req = c.request(ndx, ITEM_TRANSFER, Some([0, 0, 16, 0]));
    req.extend(c.request(ndx, ITEM_TRANSFER, Some([0, 0, 16, 0])));
    c.send_data(&req);
    c.close_write();
    let e = c.finish(END);
    assert!(e.closed);
    let copies = e.data.windows(11).filter(|w| *w == b"hello world").count();
    assert_eq!(copies, 2, "{e:?}");
    assert_healthy(&d);
}

/// Requests after the list was retired: NDX_DONE ends phase 1, another
/// ends phase 2 (where ITEM_TRANSFER is a protocol error), a third ends the
/// transfer; an index after that is never served.
#[test]
fn index_after_done_is_not_served() {
    interop_tests::require_rsync!();
    let d = start();
    for dones in 1..=3 {
        let mut c = client(&d);
        let ndx = c.index_of(b"file.txt");
        let mut req = Vec::new();
        for _ in 0..dones {
            req.extend(c.ndx_bytes(NDX_DONE));
        }
        req.extend(c.request(ndx, ITEM_TRANSFER, Some([0, 0, 16, 0])));
        c.send_data(&req);
        c.close_write();
        let e = c.finish(END);
        assert!(e.closed, "{dones} done(s): {e:?}");
        if dones == 2 {
            assert_protocol_error(&e, "got transfer request in phase 2 [sender]", "phase 2");
        }
        if dones >= 2 {
            assert!(!e.data.windows(11).any(|w| w == b"hello world"), "{dones} done(s): served after retirement");
        }
    }
    assert_healthy(&d);
}

/// Frames no client may send: a message longer than any text message, an
/// unknown tag, a tag below MPLEX_BASE, and data after the session's end.
#[test]
fn malformed_frames_end_the_session() {
    interop_tests::require_rsync!();
    let d = start();
    let mut raw_cases: Vec<(Vec<u8>, &str)> = Vec::new();
    let mut h = Vec::new();
    put_header(&mut h, MsgCode::Info, 0xFF_FFFF);
    raw_cases.push((h, "message too long"));
    raw_cases.push(((((7u32 + 50) << 24) | 4).to_le_bytes().to_vec(), "unexpected tag 50"));
    raw_cases.push(((((7u32 + 9) << 24) | 4).to_le_bytes().to_vec(), "unexpected tag 9"));
    raw_cases.push((4u32.to_le_bytes().to_vec(), "unexpected tag -7"));
    for (bytes, text) in raw_cases {
        let mut c = client(&d);
        c.send_raw(&bytes);
        c.send_raw(&[0u8; 8]);
        let e = c.finish(END);
        assert!(e.closed, "{text}: {e:?}");
        assert!(e.messages.contains(text), "{text}: {:?}", e.messages);
    }
    // Data after the last NDX_DONE of the session.
    let mut c = client(&d);
    let mut req = Vec::new();
    for _ in 0..4 {
        req.extend(c.ndx_bytes(NDX_DONE));
    }
    req.extend(vec![0x5A; 100_000]);
    c.send_data(&req);
    let e = c.finish(END);
    assert!(e.closed, "trailing data: {e:?}");
    assert_healthy(&d);
}

fn vm_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// 100k MSG_NOOP frames and 100k empty MSG_DATA keep-alives: memory stays
/// bounded and the session still serves a request afterwards.
#[test]
fn noop_flood_keeps_memory_bounded() {
    interop_tests::require_rsync!();
    let d = start();
    let mut c = client(&d);
    let before = vm_rss_kib(d.pid());
    let mut flood = Vec::with_capacity(800_000);
    for _ in 0..100_000 {
        put_header(&mut flood, MsgCode::Noop, 0);
        put_header(&mut flood, MsgCode::Data, 0);
    }
    for _ in 0..10 {
        c.send_raw(&flood);
    }
    let ndx = c.index_of(b"file.txt");
    let req = c.request(ndx, ITEM_TRANSFER, Some([0, 0, 16, 0]));
    c.send_data(&req);
    c.close_write();
    let e = c.finish(Duration::from_secs(60));
    let after = vm_rss_kib(d.pid());
    assert!(e.closed);
    assert!(e.data.windows(11).any(|w| w == b"hello world"), "request after the flood not served: {e:?}");
    assert!(before > 0 && after < before + 64 * 1024, "VmRSS grew from {before} to {after} KiB");
    assert_healthy(&d);
}

/// Sends a sum list of `sums` (blength 700, s2length 16) for `zeros` and
/// expects the session to finish (within a generous deadline) while a
/// normal pull completes meanwhile.
fn chain_attack(sums: Vec<(u32, Vec<u8>)>) {
    let d = start();
    let mut c = client(&d);
    let ndx = c.index_of(b"zeros");
    let count = sums.len() as i32;
    let mut req = c.request(ndx, ITEM_TRANSFER, Some([count, 700, 16, 0]));
    req.extend(sum_blocks(sums));
    let mut framed = Vec::new();
    put_frame(&mut framed, MsgCode::Data, &req);
    let sender = std::thread::spawn(move || {
        c.send_raw(&framed);
        c.close_write();
        c.finish(Duration::from_secs(120))
    });
    // Another client is served while the attack runs.
    assert_healthy(&d);
    let e = sender.join().unwrap();
    assert!(e.closed, "the chain session did not end in 120 s");
    assert!(e.data.len() >= ZEROS, "zeros not sent back: {} bytes; {}", e.data.len(), e.messages);
    assert_no_panic(&d);
}

/// CVE-2026-70453 class: many blocks with the weak sum of a block of zeros
/// (0) but wrong strong sums, against an all-zero file. Stock 3.5.0 caps the
/// chain walk per offset (match.c hash_search, MAX_CHAIN_LEN 1024).
#[test]
fn equal_weak_sum_chain_is_bounded() {
    interop_tests::require_rsync!();
    let sums = (0..50_000u32).map(|i| (0, [&i.to_le_bytes()[..], &[0xA5; 12]].concat())).collect();
    chain_attack(sums);
}

/// The same chain made of different weak sums that share the hash bucket of
/// 0 (`((s & 0xFFFF) + (s >> 16)) & 0xFFFF == 0`): never equal to the
/// window's sum, so the walk must be bounded by entries visited, not by
/// weak-sum hits.
#[test]
fn same_bucket_chain_is_bounded() {
    interop_tests::require_rsync!();
    let sums = (1..50_000u32).map(|a| ((a << 16) | ((0x1_0000 - a) & 0xFFFF), vec![0xA5; 16])).collect();
    chain_attack(sums);
}
