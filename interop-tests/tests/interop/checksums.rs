//! Every checksum choice (`--cc`), as a delta pull into a stale copy: the
//! block checksums, the whole-file checksums and (with `-c`) the file-list
//! checksums all use it.

use crate::common::{cases, delta_pull, edge, pull};

cases! {
    cc_md5 => delta_pull("cc_md5", &["--cc=md5"]);
    cc_xxh64 => delta_pull("cc_xxh64", &["--cc=xxh64"]);
    cc_xxh3 => delta_pull("cc_xxh3", &["--cc=xxh3"]);
    cc_xxh128 => delta_pull("cc_xxh128", &["--cc=xxh128"]);
    cc_md4 => delta_pull("cc_md4", &["--cc=md4"]);
    cc_sha1 => delta_pull("cc_sha1", &["--cc=sha1"]);
    c_cc_xxh128 => delta_pull("c_cc_xxh128", &["-c", "--cc=xxh128"]);
    c_cc_md5 => delta_pull("c_cc_md5", &["-c", "--cc=md5"]);
    c_protocol_29 => delta_pull("c_protocol_29", &["-c", "--protocol=29"]);
    cc_md4_protocol_29 => delta_pull("cc_md4_protocol_29", &["--cc=md4", "--protocol=29"]);
    full_cc_sha1 => { pull("full_cc_sha1", edge(), &["-ai", "--cc=sha1", "{url}/", "{dest}/"]); };
    full_c_cc_xxh3 => { pull("full_c_cc_xxh3", edge(), &["-ai", "-c", "--cc=xxh3", "{url}/", "{dest}/"]); };
}
