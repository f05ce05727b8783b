//! Every compression choice, as a full pull and as a delta pull into a stale
//! copy (where OUR side must send far less literal data than the file size).

use crate::common::{cases, delta_pull, edge, pull};

/// A full pull of the edge tree with `opts` (plus `-ai`).
fn full(name: &str, opts: &[&str]) {
    let mut args = vec!["-ai"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["{url}/", "{dest}/"]);
    let (a, _) = pull(name, edge(), &args);
    assert!(
        a.stdout.contains(">f+++++++++ size-1048576\n"),
        "{}",
        a.stdout
    );
}

cases! {
    z => full("z", &["-z"]);
    zc_zlib => full("zc_zlib", &["--zc=zlib"]);
    zc_zlibx => full("zc_zlibx", &["--zc=zlibx"]);
    zc_zstd => full("zc_zstd", &["--zc=zstd"]);
    zc_lz4 => full("zc_lz4", &["--zc=lz4"]);
    zc_none => full("zc_none", &["--zc=none"]);
    z_level_1 => full("z_level_1", &["-z", "--compress-level=1"]);
    z_level_9 => full("z_level_9", &["-z", "--compress-level=9"]);
    compress_level_9_alone => full("compress_level_9_alone", &["--compress-level=9"]);
    z_protocol_29 => full("z_protocol_29", &["-z", "--protocol=29"]);
    zc_zlib_protocol_30 => full("zc_zlib_protocol_30", &["--zc=zlib", "--protocol=30"]);

    delta_z => delta_pull("delta_z", &["-z"]);
    delta_zc_zlib => delta_pull("delta_zc_zlib", &["--zc=zlib"]);
    delta_zc_zlibx => delta_pull("delta_zc_zlibx", &["--zc=zlibx"]);
    delta_zc_zstd => delta_pull("delta_zc_zstd", &["--zc=zstd"]);
    delta_zc_lz4 => delta_pull("delta_zc_lz4", &["--zc=lz4"]);
    delta_zc_none => delta_pull("delta_zc_none", &["--zc=none"]);
    delta_z_level_1 => delta_pull("delta_z_level_1", &["-z", "--compress-level=1"]);
    delta_z_level_9 => delta_pull("delta_z_level_9", &["-z", "--compress-level=9"]);
    delta_z_protocol_29 => delta_pull("delta_z_protocol_29", &["-z", "--protocol=29"]);
    delta_plain => delta_pull("delta_plain", &[]);
    delta_protocol_27 => delta_pull("delta_protocol_27", &["--protocol=27"]);
}
