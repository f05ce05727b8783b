//! Fuzz-target bodies for the daemon's decoders: the PROXY protocol header,
//! the authentication response and secrets file, and rsyncd.conf. Shared by
//! the cargo-fuzz targets in `fuzz/` and the corpus replay test
//! (`tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes and panics only when an invariant
//! breaks (see `protocol::fuzz_entry`). Not part of the crate's API.

use std::path::Path;

use protocol::checksum::{auth_response, AuthDigest};
use protocol::error::DecodeError;
use protocol::filter::{DaemonFilterParams, FilterList};

use crate::access::auth::{self, check_secret, parse_auth_users};
use crate::access::hosts::HostAcl;
use crate::access::refuse::RefuseRules;
use crate::config::{parse_bytes_with, LoadOptions};
use crate::proxy::{encode_v1, encode_v2, parse, Version};

/// The PROXY protocol header (`proxy.rs`): whatever arrives first on a
/// connection. Checks that a header never claims more than it was given,
/// that every shorter prefix asks for more without overshooting the header
/// (the server reads exactly what `parse` asks for), and that addresses
/// survive `encode_v1`/`encode_v2` → `parse`.
pub fn proxy(data: &[u8]) {
    match parse(data) {
        Ok(c) => {
            assert!(c.consumed > 0 && c.consumed <= data.len(), "consumed {} of {}", c.consumed, data.len());
            assert_eq!(parse(&data[..c.consumed]), Ok(c), "header alone parses the same");
            for k in 0..c.consumed {
                match parse(&data[..k]) {
                    Err(DecodeError::Incomplete { needed }) => {
                        assert!(needed > 0 && k + needed <= c.consumed, "prefix {k}: needs {needed}, header is {}", c.consumed);
                    }
                    other => panic!("prefix {k} of a valid header: {other:?}"),
                }
            }
            if let Some(src) = c.header.source {
                let mut enc = Vec::new();
                match c.header.version {
                    Version::V1 => encode_v1(src, src, &mut enc),
                    Version::V2 => encode_v2(src, src, &mut enc),
                }
                let again = parse(&enc).expect("encoded header parses");
                assert_eq!(again.consumed, enc.len());
                assert_eq!(again.header.version, c.header.version);
                assert_eq!(again.header.source, Some(src), "PROXY round trip");
            }
        }
        Err(DecodeError::Incomplete { needed }) => assert!(needed > 0),
        Err(_) => {}
    }
}

fn digest_of(b: u8) -> AuthDigest {
    match b % 6 {
        0 => AuthDigest::Md4Legacy,
        1 => AuthDigest::Md4,
        2 => AuthDigest::Md5,
        3 => AuthDigest::Sha1,
        4 => AuthDigest::Sha256,
        _ => AuthDigest::Sha512,
    }
}

/// Authentication (`access/auth.rs`). Input: `[digest] "user response"
/// line, auth-users line, challenge line, then the secrets file text`.
/// Checks the secrets scan never panics, and that a secrets line
/// `user:password` always accepts `auth_response(password)`.
pub fn auth(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let digest = digest_of(sel);
    let mut parts = rest.splitn(4, |&b| b == b'\n');
    let line = parts.next().unwrap_or_default();
    let users = parts.next().unwrap_or_default();
    let challenge = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let secrets = parts.next().unwrap_or_default();

    let tokens: Vec<String> = String::from_utf8_lossy(users).split_whitespace().map(str::to_owned).collect();
    let rules = parse_auth_users(&tokens);
    assert_eq!(rules.len(), tokens.len());
    let _ = auth::negotiate_digest(Some(&tokens), 31);
    if let Some(floor) = tokens.first().and_then(|t| auth::parse_digest_floor(t)) {
        let _ = auth::below_floor(digest, floor);
    }

    // The response line as `AuthConfig::verify` splits it.
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (user, response) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (&line[..sp], &line[sp + 1..]),
        None => (line, &b""[..]),
    };
    let group = rules.iter().find(|r| r.group).map(|r| r.pattern.as_slice());
    let _ = check_secret(secrets, user, group, &challenge, response, digest);

    // Round trip: a secrets line for the user accepts the right response.
    let plain = |b: &[u8]| !b.iter().any(|&c| c == b'\n' || c == b'\r');
    if !user.is_empty() && user[0] != b'@' && plain(user) && plain(response) && user.len() + response.len() < 1000 {
        let mut text = user.to_vec();
        text.push(b':');
        text.extend_from_slice(response);
        text.push(b'\n');
        let good = auth_response(digest, response, challenge.as_bytes());
        assert_eq!(
            check_secret(&text, user, None, &challenge, good.as_bytes(), digest),
            Ok(()),
            "secret line does not accept its own response"
        );
    }
}

/// rsyncd.conf (`config/`), then the per-module compilation the server does
/// at start-up (hosts, auth, refuse options, daemon filter rules). `&` is
/// replaced by `_` first: `&include`/`&merge` read files, and a fuzzer must
/// not read the machine's files (the directive parsing itself is plain
/// line splitting covered by the other lines). `%VAR%` sees a fixed
/// environment.
pub fn config(data: &[u8]) {
    let text: Vec<u8> = data.iter().map(|&b| if b == b'&' { b'_' } else { b }).collect();
    let env = |name: &[u8]| -> Option<Vec<u8>> {
        match name {
            b"HOME" => Some(b"/home/fuzz".to_vec()),
            b"LONG" => Some(vec![b'x'; 3000]),
            b"EMPTY" => Some(Vec::new()),
            _ => None,
        }
    };
    let opts = LoadOptions { env: &env, dparams: &[] };
    let Ok(cfg) = parse_bytes_with(&text, Path::new("fuzz.conf"), &opts) else {
        return;
    };
    let _ = HostAcl::from_tokens(&cfg.global.proxy_protocol_hosts, &[], false, false);
    for m in &cfg.modules {
        assert!(!m.name.is_empty(), "module without a name");
        let _ = HostAcl::from_tokens(&m.hosts_allow, &m.hosts_deny, m.reverse_lookup, m.forward_lookup);
        if let Some(d) = &m.auth_digest {
            let _ = auth::parse_digest_floor(d);
        }
        let _ = parse_auth_users(&m.auth_users);
        let _ = RefuseRules::new(&m.refuse_options, m.charset.is_some());
        let _ = FilterList::from_daemon_config(&DaemonFilterParams {
            filter: &m.filter,
            include: &m.include,
            exclude: &m.exclude,
            ..DaemonFilterParams::default()
        });
    }
}
