//! Replays the committed fuzz corpus and regression inputs of the daemon's
//! decoders (`fuzz/corpus/{proxy,auth,config}/`, `fuzz/regressions/...`)
//! through the bodies the cargo-fuzz targets run (`rsyncd::fuzz_entry`),
//! plus the seeds built below. Needs neither nightly nor cargo-fuzz.
//!
//! `cargo test -p rsyncd --test fuzz_corpus -- --ignored write_seeds`
//! rewrites the `seed-*` files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use protocol::checksum::{auth_response, AuthDigest};
use protocol::fuzz_entry::replay::{fuzz_dir, replay, write_seeds};
use rsyncd::fuzz_entry as fe;
use rsyncd::proxy::{encode_v1, encode_v2, V2_SIGNATURE};

type Seeds = Vec<(&'static str, Vec<u8>)>;

fn dir() -> PathBuf {
    fuzz_dir(env!("CARGO_MANIFEST_DIR"))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn proxy_seeds() -> Seeds {
    let enc = |f: fn(SocketAddr, SocketAddr, &mut Vec<u8>), s: &str, d: &str| {
        let mut o = Vec::new();
        f(sa(s), sa(d), &mut o);
        o.extend_from_slice(b"@RSYNCD: 32.0 sha512 sha256 sha1 md5 md4\n");
        o
    };
    let mut local = V2_SIGNATURE.to_vec();
    local.extend_from_slice(&[0x20, 0x00, 0, 0]);
    let mut tlv = Vec::new();
    encode_v2(sa("192.0.2.7:51234"), sa("10.0.0.1:873"), &mut tlv);
    tlv[15] += 7; // payload length: address block + one TLV
    tlv.extend_from_slice(&[0x04, 0x00, 0x04, b'n', b'o', b'o', b'p']);
    let mut unix = V2_SIGNATURE.to_vec();
    unix.extend_from_slice(&[0x21, 0x31, 0, 216]);
    unix.extend_from_slice(&[b'/'; 216]);
    vec![
        ("v1-tcp4", enc(encode_v1, "192.0.2.7:51234", "10.0.0.1:873")),
        ("v1-tcp6", enc(encode_v1, "[2001:db8::5]:4000", "[2001:db8::1]:873")),
        ("v2-tcp4", enc(encode_v2, "192.0.2.7:51234", "10.0.0.1:873")),
        ("v2-tcp6", enc(encode_v2, "[2001:db8::5]:4000", "[2001:db8::1]:873")),
        ("v1-unknown", b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n".to_vec()),
        ("v2-local", local),
        ("v2-tlv", tlv),
        ("v2-unix", unix),
        ("no-header", b"@RSYNCD: 31.0\n".to_vec()),
        ("v1-too-long", [b"PROXY TCP4 ".as_slice(), &[b'1'; 120], b"\r\n"].concat()),
    ]
}

fn auth_seed(sel: u8, digest: AuthDigest, user: &str, password: &str, users: &str, secrets: &str) -> Vec<u8> {
    let challenge = "AbCdEfGhIjKlMnOpQrStUv";
    let resp = auth_response(digest, password.as_bytes(), challenge.as_bytes());
    let mut v = vec![sel];
    v.extend_from_slice(format!("{user} {resp}\n{users}\n{challenge}\n{secrets}").as_bytes());
    v
}

fn auth_seeds() -> Seeds {
    let secrets = "# comment\nalice:secret\r\n@staff:grouppw\nbob:other\n";
    vec![
        ("md5-user", auth_seed(2, AuthDigest::Md5, "alice", "secret", "alice bob:deny", secrets)),
        ("sha512-group", auth_seed(5, AuthDigest::Sha512, "carol", "grouppw", "@staff:ro", secrets)),
        ("md4-legacy-wrong", auth_seed(0, AuthDigest::Md4Legacy, "bob", "nope", "b*:rw", secrets)),
        ("sha256-floor", auth_seed(4, AuthDigest::Sha256, "alice", "secret", "sha1 alice", secrets)),
        ("no-space", b"\x02alice\nalice\nchal\nalice:x\n".to_vec()),
    ]
}

fn config_seeds() -> Seeds {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/configs");
    let read = |n: &str| std::fs::read(fixtures.join(n)).unwrap_or_else(|e| panic!("{n}: {e}"));
    vec![
        ("fedora-mirror", read("fedora-mirror.conf")),
        ("broken", read("broken.conf")),
        ("stock-example", read("stock-example.conf")),
        (
            "everything",
            b"port = 8873\naddress = 127.0.0.1\nproxy protocol = yes\nproxy protocol hosts = 10.0.0.0/8, ::1\n\
socket options = SO_KEEPALIVE,TCP_NODELAY SO_SNDBUF=65536 BOGUS\nmax sessions = 10\n\
listen backlog = 20\nreverse lookup = no\n\
[mod]\n\tpath = %HOME%/pub/\n\tcomment = a \\\n continued comment\n\thosts allow = 192.168.1.0/255.255.255.0 *.example.org @netgroup\n\
\thosts deny = *\n\tauth users = alice, @staff:ro bob:deny\n\tauth digest = sha256\n\tsecrets file = /etc/rsyncd.secrets\n\
\trefuse options = delete* !delete-during c\n\tfilter = - *.tmp + */ - /private/***\n\tinclude = keep\n\
\texclude = .~tmp~/ /.private/\n\tmax connections = -1\n\tdaemon port = 9999\n\trescan interval = 0\n\
\tlog format = %o %h [%a] %m (%u) %f %l\n\tdont compress = *\n\tcharset = utf-8\n\
[mod]\n\tpath = /dup\n[ spaced   name ]\npath=/x\n]push\n]pop\n]reset\n"
                .to_vec(),
        ),
        ("long-expansion", b"[m]\npath = %LONG%%LONG%\ncomment = %EMPTY%%UNKNOWN%%\n".to_vec()),
        ("directive-defused", b"&include /etc/rsyncd.d\n&merge /etc\n[m]\npath=/srv\n".to_vec()),
    ]
}

#[test]
fn proxy_corpus() {
    assert!(replay(&dir(), "proxy", &proxy_seeds(), fe::proxy) > 0);
}

#[test]
fn auth_corpus() {
    assert!(replay(&dir(), "auth", &auth_seeds(), fe::auth) > 0);
}

#[test]
fn config_corpus() {
    assert!(replay(&dir(), "config", &config_seeds(), fe::config) > 0);
}

/// Rewrites `fuzz/corpus/{proxy,auth,config}/seed-*` from the builders above.
#[test]
#[ignore = "writes the committed seed files; run by hand"]
fn write_seeds_rsyncd() {
    let d = dir();
    write_seeds(&d, "proxy", &proxy_seeds());
    write_seeds(&d, "auth", &auth_seeds());
    write_seeds(&d, "config", &config_seeds());
}
