//! Mirror-style runs: the Fedora mirror command into a stale copy, and null
//! syncs (a second pull of an up-to-date copy transfers and itemizes nothing).

use interop_tests::{differential, Case, StatsCompare};

use crate::common::{cases, edge, itemized, stale_copy, stat_num};

/// The command Fedora's mirror documentation gives, into a destination with
/// extra and stale files.
fn fedora() {
    let (a, _) = differential(
        &Case::new("fedora", vec![edge()])
            .args(&[
                "-vaH",
                "--numeric-ids",
                "--delete",
                "--delete-after",
                "--delay-updates",
                "{url}/",
                "{dest}/",
            ])
            .prepare_dest(stale_copy)
            .expect_code(0),
    );
    assert!(a.stdout.contains("deleting extra-file\n"), "{}", a.stdout);
    assert!(a.stdout.contains("size-32769\n"), "{}", a.stdout);
}

/// A second `-aHi` pull after a first `-aH` pull prints nothing.
fn null_sync_itemize(name: &str, opts: &[&str]) {
    let mut pre = vec!["-aH", "--numeric-ids"];
    pre.extend_from_slice(opts);
    pre.extend_from_slice(&["{url}/", "{dest}/"]);
    let mut args = vec!["-aHi", "--numeric-ids"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["{url}/", "{dest}/"]);
    let (a, b) = differential(
        &Case::new(name, vec![edge()])
            .pre_run(&pre)
            .args(&args)
            .expect_code(0),
    );
    for (who, r) in [("stock", &a), ("ours", &b)] {
        assert_eq!(r.stdout, "", "{who} itemized something on a null sync");
    }
}

/// A second pull with `--stats` sends no file data on either daemon.
///
/// Byte counts compare loosely: `File list size` legitimately differs (stock
/// sends entries in readdir order, which changes the name-prefix
/// compression); `Total bytes sent/received` are pinned separately
/// ([`null_sync_byte_counts`]). Every other `--stats` line compares strictly.
fn null_sync_stats() -> (interop_tests::RunResult, interop_tests::RunResult) {
    let (a, b) = differential(
        &Case::new("null_sync_stats", vec![edge()])
            .stats(StatsCompare::Loose)
            .pre_run(&["-aH", "--numeric-ids", "{url}/", "{dest}/"])
            .args(&["-aHi", "--numeric-ids", "--stats", "{url}/", "{dest}/"])
            .expect_code(0),
    );
    for (who, r) in [("stock", &a), ("ours", &b)] {
        assert_eq!(
            stat_num(&r.stdout, "Literal data: "),
            0,
            "{who}: {}",
            r.stdout
        );
        assert_eq!(
            stat_num(&r.stdout, "Number of regular files transferred: "),
            0,
            "{who}: {}",
            r.stdout
        );
        assert_eq!(itemized(&r.stdout), Vec::<&str>::new(), "{who}");
    }
    (a, b)
}

/// In a pull the client prints the byte counts the daemon reports about
/// itself (swapped). On a null sync the client's generator sends the same
/// bytes to either daemon, so "Total bytes sent" must be equal.
fn null_sync_byte_counts() {
    let (a, b) = null_sync_stats();
    let key = "Total bytes sent: ";
    assert_eq!(
        stat_num(&b.stdout, key),
        stat_num(&a.stdout, key),
        "ours vs stock\n{}\n{}",
        b.stdout,
        a.stdout
    );
}

cases! {
    fedora_mirror_command => fedora();
    null_sync_itemizes_nothing => null_sync_itemize("null_sync_itemize", &[]);
    null_sync_itemizes_nothing_p29 => null_sync_itemize("null_sync_itemize_p29", &["--protocol=29"]);
    null_sync_itemizes_nothing_checksum => null_sync_itemize("null_sync_itemize_c", &["-c"]);
    null_sync_sends_no_data => null_sync_stats();
    null_sync_total_bytes_match_stock => null_sync_byte_counts();
}
