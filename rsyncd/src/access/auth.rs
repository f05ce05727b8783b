//! Daemon authentication: `auth users`, `secrets file`, `strict modes`,
//! `auth digest`, the challenge and the response check.
//!
//! Mirrors `authenticate.c: auth_server()`, `check_secret()` and
//! `compat.c: negotiate_daemon_auth()` (digest choice), with these
//! deliberate differences: the challenge is random bytes from the OS CSPRNG
//! (stock hashes time, pid and address), the response is compared in
//! constant time, and a CSPRNG failure fails the login instead of falling
//! back to a guessable challenge.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use protocol::checksum::{auth_response, base64_nopad, AuthDigest};
use protocol::wildmatch::wildmatch;

use super::identity;

/// What a matching `auth users` rule grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// No suffix: the module's `read only` applies.
    Default,
    /// `:ro`.
    ReadOnly,
    /// `:rw`.
    ReadWrite,
    /// `:deny`.
    Deny,
}

/// One `auth users` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRule {
    /// `true` for `@group` rules.
    pub group: bool,
    /// The wildcard pattern (user name, or group name without the `@`).
    pub pattern: Vec<u8>,
    /// The suffix.
    pub grant: Grant,
}

/// Parse the `auth users` tokens (already split like stock's `conf_strtok`).
/// A suffix other than `:ro`, `:rw` or `:deny` is ignored, as stock does
/// (`auth_server()` treats the option as absent).
pub fn parse_auth_users(tokens: &[String]) -> Vec<AuthRule> {
    tokens
        .iter()
        .map(|t| {
            let (name, grant) = match t.split_once(':') {
                Some((n, opt)) => {
                    let o = opt.as_bytes();
                    let c = o.first().map(|c| c.to_ascii_lowercase());
                    let grant = match c {
                        Some(b'r') => match o.get(1).map(|c| c.to_ascii_lowercase()) {
                            Some(b'o') => Grant::ReadOnly,
                            Some(b'w') => Grant::ReadWrite,
                            _ => Grant::Default,
                        },
                        Some(b'd') => Grant::Deny,
                        _ => Grant::Default,
                    };
                    (n, grant)
                }
                None => (t.as_str(), Grant::Default),
            };
            match name.strip_prefix('@') {
                Some(g) => AuthRule {
                    group: true,
                    pattern: g.as_bytes().to_vec(),
                    grant,
                },
                None => AuthRule {
                    group: false,
                    pattern: name.as_bytes().to_vec(),
                    grant,
                },
            }
        })
        .collect()
}

/// The digests we verify, strongest first (`valid_auth_checksums_items[]`).
pub const DIGEST_ORDER: [AuthDigest; 5] = [
    AuthDigest::Sha512,
    AuthDigest::Sha256,
    AuthDigest::Sha1,
    AuthDigest::Md5,
    AuthDigest::Md4,
];

fn rank(d: AuthDigest) -> usize {
    let d = if d == AuthDigest::Md4Legacy {
        AuthDigest::Md4
    } else {
        d
    };
    DIGEST_ORDER
        .iter()
        .position(|x| *x == d)
        .unwrap_or(DIGEST_ORDER.len())
}

/// Parse an `auth digest` floor value (a single digest name).
pub fn parse_digest_floor(v: &str) -> Option<AuthDigest> {
    AuthDigest::from_name(v.trim().as_bytes())
}

/// Pick the digest (`negotiate_daemon_auth()` on the server): the first name
/// in the client's list that we support; without a list, md5 at protocol 30
/// and above, the legacy seeded MD4 below.  `None`: nothing in common.
pub fn negotiate_digest(client_list: Option<&[String]>, protocol: u8) -> Option<AuthDigest> {
    match client_list {
        Some(list) => list
            .iter()
            .find_map(|n| AuthDigest::from_name(n.as_bytes())),
        None if protocol >= 30 => Some(AuthDigest::Md5),
        None => Some(AuthDigest::Md4Legacy),
    }
}

/// True when `got` is weaker than the `auth digest` floor (3.5.0
/// `auth_digest_rank()`: the legacy MD4 counts as md4).
pub fn below_floor(got: AuthDigest, floor: AuthDigest) -> bool {
    rank(got) > rank(floor)
}

/// A fresh challenge: `digest_len` bytes from the OS CSPRNG, base64 without
/// padding (the same length as stock's, e.g. 22 characters for md5).
pub fn new_challenge(digest: AuthDigest) -> Result<String, getrandom::Error> {
    let mut b = vec![0u8; digest.digest_len().max(16)];
    getrandom::fill(&mut b)?;
    Ok(base64_nopad(&b))
}

/// Compare two byte strings in time that depends only on their lengths.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut d = 0u8;
    for (x, y) in a.iter().zip(b) {
        d |= x ^ y;
    }
    std::hint::black_box(d) == 0
}

/// A module's authentication settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The rules, in order (first match wins).
    pub rules: Vec<AuthRule>,
    /// `secrets file`.
    pub secrets_file: Option<PathBuf>,
    /// `strict modes`.
    pub strict_modes: bool,
    /// `auth digest` floor.
    pub floor: Option<AuthDigest>,
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The user name the client gave.
    pub user: Vec<u8>,
    /// What the matching rule grants.
    pub grant: Grant,
}

/// Why a login failed (for the log only; the client always sees
/// `@ERROR: auth failed on module X`).  The texts are stock's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No space in the response line.
    #[error("invalid challenge response")]
    InvalidResponse,
    /// No rule matched the user.
    #[error("no matching rule")]
    NoMatchingRule,
    /// A `:deny` rule matched.
    #[error("denied by rule")]
    Denied,
    /// The secrets file is missing or unreadable.
    #[error("no secrets file")]
    NoSecretsFile,
    /// Strict modes rejected the secrets file.
    #[error("ignoring secrets file")]
    IgnoringSecretsFile,
    /// A user name starting with `#`.
    #[error("invalid username")]
    InvalidUsername,
    /// No line for the user or group.
    #[error("secret not found")]
    SecretNotFound,
    /// Wrong password.
    #[error("password mismatch")]
    PasswordMismatch,
}

/// Group names of a (claimed) user name, as stock's `getallgroups()` of
/// `user_to_uid()`; empty for names that are not system users.
pub fn system_groups_of(user: &[u8]) -> Vec<Vec<u8>> {
    let Ok(s) = std::str::from_utf8(user) else {
        return Vec::new();
    };
    let Some(u) = identity::user_by_name(s.as_bytes()) else {
        return Vec::new();
    };
    identity::groups_of(&u)
        .into_iter()
        .filter_map(identity::group_name)
        .collect()
}

/// Check a secrets file's mode as `strict modes` requires (stock texts).
/// `daemon_is_root` decides the ownership rule.
pub fn strict_modes_problem(md: &std::fs::Metadata, daemon_is_root: bool) -> Option<&'static str> {
    if md.mode() & 0o006 != 0 {
        return Some("secrets file must not be other-accessible (see strict modes option)");
    }
    if daemon_is_root && md.uid() != 0 {
        return Some("secrets file must be owned by root when running as root (see strict modes)");
    }
    None
}

/// Longest secrets-file line stock reads in one piece (`char line[1024]`).
const MAX_SECRET_LINE: usize = 1023;

/// Largest secrets file we read.
const MAX_SECRETS_FILE: u64 = 4 << 20;

/// Open and read the secrets file, applying `strict modes` to the opened fd.
/// Problems are logged with stock's texts.
fn read_secrets(path: &Path, strict: bool, daemon_is_root: bool) -> Result<Vec<u8>, AuthFailure> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Err(why) = check_symlinks(path) {
        tracing::warn!("secrets file {}: {why}", path.display());
        return Err(AuthFailure::NoSecretsFile);
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(|_| AuthFailure::NoSecretsFile)?;
    let md = f.metadata().map_err(|_| AuthFailure::NoSecretsFile)?;
    if !md.is_file() {
        return Err(AuthFailure::NoSecretsFile);
    }
    if strict {
        if let Some(p) = strict_modes_problem(&md, daemon_is_root) {
            tracing::warn!("{p}");
            return Err(AuthFailure::IgnoringSecretsFile);
        }
    }
    let mut buf = Vec::new();
    f.take(MAX_SECRETS_FILE)
        .read_to_end(&mut buf)
        .map_err(|_| AuthFailure::NoSecretsFile)?;
    Ok(buf)
}

/// Refuse a secrets path with a symlink (in any component) owned by someone
/// other than root or us: it could point the daemon at another file
/// (CVE-2026-53802 class; 3.5.0 applies the same rule).
pub fn check_symlinks(path: &Path) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mut cur = PathBuf::new();
    for c in path.components() {
        cur.push(c);
        if let Ok(md) = std::fs::symlink_metadata(&cur) {
            if md.file_type().is_symlink() && md.uid() != 0 && md.uid() != me {
                return Err(format!(
                    "{} is a symlink owned by uid {}; refusing to follow it",
                    cur.display(),
                    md.uid()
                ));
            }
        }
    }
    Ok(())
}

impl AuthConfig {
    /// Does the module ask for a password at all?
    pub fn required(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Verify the client's response line (`<user> <response>`, newline
    /// removed) to `challenge` with `digest`.  `groups_of` gives a user's
    /// system group names (injected for tests).
    pub fn verify(
        &self,
        line: &[u8],
        challenge: &str,
        digest: AuthDigest,
        daemon_is_root: bool,
        groups_of: &dyn Fn(&[u8]) -> Vec<Vec<u8>>,
    ) -> Result<Login, (Vec<u8>, AuthFailure)> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(sp) = line.iter().position(|&b| b == b' ') else {
            return Err((Vec::new(), AuthFailure::InvalidResponse));
        };
        let user = &line[..sp];
        let pass = &line[sp + 1..];
        let fail = |f: AuthFailure| Err((user.to_vec(), f));
        // auth_server(): the first matching rule decides.
        let mut groups: Option<Vec<Vec<u8>>> = None;
        let mut matched: Option<(Grant, Option<Vec<u8>>)> = None;
        for r in &self.rules {
            if !r.group {
                if wildmatch(&r.pattern, user) {
                    matched = Some((r.grant, None));
                    break;
                }
            } else {
                let gs = groups.get_or_insert_with(|| groups_of(user));
                if let Some(g) = gs.iter().find(|g| wildmatch(&r.pattern, g)) {
                    matched = Some((r.grant, Some(g.clone())));
                    break;
                }
            }
        }
        let Some((grant, group)) = matched else {
            return fail(AuthFailure::NoMatchingRule);
        };
        if grant == Grant::Deny {
            return fail(AuthFailure::Denied);
        }
        // check_secret()
        let Some(path) = &self.secrets_file else {
            return fail(AuthFailure::NoSecretsFile);
        };
        let text = match read_secrets(path, self.strict_modes, daemon_is_root) {
            Ok(t) => t,
            Err(e) => return fail(e),
        };
        if user.first() == Some(&b'#') {
            return fail(AuthFailure::InvalidUsername);
        }
        match check_secret(&text, user, group.as_deref(), challenge, pass, digest) {
            Ok(()) => Ok(Login {
                user: user.to_vec(),
                grant,
            }),
            Err(e) => fail(e),
        }
    }
}

/// The secrets-file scan of `check_secret()`: lines `user:password` or
/// `@group:password`; the first line for the user and the first for the
/// group are tried (a mismatch stops looking for that name).
pub fn check_secret(
    text: &[u8],
    user: &[u8],
    group: Option<&[u8]>,
    challenge: &str,
    response: &[u8],
    digest: AuthDigest,
) -> Result<(), AuthFailure> {
    let mut user = Some(user);
    let mut group = group;
    let mut err = AuthFailure::SecretNotFound;
    for raw in text.split(|&b| b == b'\n') {
        if user.is_none() && group.is_none() {
            break;
        }
        if raw.len() > MAX_SECRET_LINE {
            continue;
        }
        // strtok(line, "\n\r"): skip leading CRs, stop at the next one.
        let s = {
            let start = raw.iter().position(|&b| b != b'\r').unwrap_or(raw.len());
            let r = &raw[start..];
            &r[..r.iter().position(|&b| b == b'\r').unwrap_or(r.len())]
        };
        if s.is_empty() {
            continue;
        }
        let (is_group, body) = match s.strip_prefix(b"@") {
            Some(b) => (true, b),
            None => (false, s),
        };
        let want = if is_group { group } else { user };
        let Some(name) = want else { continue };
        if !(body.len() > name.len() && body.starts_with(name) && body[name.len()] == b':') {
            continue;
        }
        let secret = &body[name.len() + 1..];
        let expected = auth_response(digest, secret, challenge.as_bytes());
        if ct_eq(expected.as_bytes(), response) {
            return Ok(());
        }
        err = AuthFailure::PasswordMismatch;
        if is_group {
            group = None;
        } else {
            user = None;
        }
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn rules_parse_like_stock() {
        let r = parse_auth_users(&toks(&[
            "alice",
            "bob:ro",
            "@staff:RW",
            "eve:deny",
            "x:zz",
            "@ops",
        ]));
        assert_eq!(
            r[0],
            AuthRule {
                group: false,
                pattern: b"alice".to_vec(),
                grant: Grant::Default
            }
        );
        assert_eq!(r[1].grant, Grant::ReadOnly);
        assert_eq!(
            r[2],
            AuthRule {
                group: true,
                pattern: b"staff".to_vec(),
                grant: Grant::ReadWrite
            }
        );
        assert_eq!(r[3].grant, Grant::Deny);
        assert_eq!(r[4].grant, Grant::Default, "unknown suffixes are ignored");
        assert!(r[5].group);
    }

    #[test]
    fn digest_choice() {
        let l = |v: &[&str]| toks(v);
        assert_eq!(
            negotiate_digest(Some(&l(&["sha512", "sha256", "sha1", "md5", "md4"])), 32),
            Some(AuthDigest::Sha512)
        );
        assert_eq!(
            negotiate_digest(Some(&l(&["xxh", "md5", "sha1"])), 32),
            Some(AuthDigest::Md5)
        );
        assert_eq!(
            negotiate_digest(Some(&l(&["md4"])), 31),
            Some(AuthDigest::Md4)
        );
        assert_eq!(negotiate_digest(Some(&l(&["blake3"])), 31), None);
        assert_eq!(negotiate_digest(None, 30), Some(AuthDigest::Md5));
        assert_eq!(negotiate_digest(None, 29), Some(AuthDigest::Md4Legacy));
        assert!(below_floor(AuthDigest::Md5, AuthDigest::Sha256));
        assert!(!below_floor(AuthDigest::Md4Legacy, AuthDigest::Md4));
        assert!(!below_floor(AuthDigest::Sha512, AuthDigest::Sha256));
        assert!(!below_floor(AuthDigest::Sha256, AuthDigest::Sha256));
        assert_eq!(parse_digest_floor(" SHA256 "), Some(AuthDigest::Sha256));
        assert_eq!(parse_digest_floor("sha3"), None);
    }

    #[test]
    fn challenges_are_random_and_stock_sized() {
        let a = new_challenge(AuthDigest::Md5).unwrap();
        let b = new_challenge(AuthDigest::Md5).unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert_eq!(new_challenge(AuthDigest::Sha512).unwrap().len(), 86);
    }

    #[test]
    fn ct_eq_works() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    fn secrets_dir(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secrets");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        (d, p)
    }

    fn cfg(users: &[&str], secrets: Option<PathBuf>) -> AuthConfig {
        AuthConfig {
            rules: parse_auth_users(&toks(users)),
            secrets_file: secrets,
            strict_modes: true,
            floor: None,
        }
    }

    fn answer(user: &str, pass: &str, chal: &str, d: AuthDigest) -> Vec<u8> {
        format!(
            "{user} {}",
            auth_response(d, pass.as_bytes(), chal.as_bytes())
        )
        .into_bytes()
    }

    #[test]
    fn verify_outcomes() {
        let (_d, p) = secrets_dir(
            "# comment\nalice:wonderland\n@staff:grouppw\nbob:pw:with:colons\r\n",
            0o600,
        );
        let c = cfg(
            &["alice", "bob:ro", "carol:deny", "@staff", "#x"],
            Some(p.clone()),
        );
        let chal = "abcdefghijklmnopqrstuv";
        let no_groups = |_: &[u8]| Vec::new();
        let staff = |u: &[u8]| {
            if u == b"dave" {
                vec![b"users".to_vec(), b"staff".to_vec()]
            } else {
                Vec::new()
            }
        };
        for d in [
            AuthDigest::Md4Legacy,
            AuthDigest::Md4,
            AuthDigest::Md5,
            AuthDigest::Sha1,
            AuthDigest::Sha256,
            AuthDigest::Sha512,
        ] {
            let ok = c
                .verify(
                    &answer("alice", "wonderland", chal, d),
                    chal,
                    d,
                    true,
                    &no_groups,
                )
                .unwrap();
            assert_eq!(
                ok,
                Login {
                    user: b"alice".to_vec(),
                    grant: Grant::Default
                },
                "{d:?}"
            );
            let e = c
                .verify(
                    &answer("alice", "wrong", chal, d),
                    chal,
                    d,
                    true,
                    &no_groups,
                )
                .unwrap_err();
            assert_eq!(e.1, AuthFailure::PasswordMismatch);
        }
        let d = AuthDigest::Md5;
        let ok = c
            .verify(
                &answer("bob", "pw:with:colons", chal, d),
                chal,
                d,
                true,
                &no_groups,
            )
            .unwrap();
        assert_eq!(ok.grant, Grant::ReadOnly);
        assert_eq!(
            c.verify(&answer("mallory", "x", chal, d), chal, d, true, &no_groups)
                .unwrap_err()
                .1,
            AuthFailure::NoMatchingRule
        );
        assert_eq!(
            c.verify(&answer("carol", "x", chal, d), chal, d, true, &no_groups)
                .unwrap_err()
                .1,
            AuthFailure::Denied
        );
        assert_eq!(
            c.verify(b"alice-no-space", chal, d, true, &no_groups)
                .unwrap_err()
                .1,
            AuthFailure::InvalidResponse
        );
        assert_eq!(
            c.verify(&answer("#x", "x", chal, d), chal, d, true, &no_groups)
                .unwrap_err()
                .1,
            AuthFailure::InvalidUsername
        );
        // @group: the group password works for a member; the wrong one does not.
        assert!(c
            .verify(&answer("dave", "grouppw", chal, d), chal, d, true, &staff)
            .is_ok());
        assert_eq!(
            c.verify(&answer("dave", "nope", chal, d), chal, d, true, &staff)
                .unwrap_err()
                .1,
            AuthFailure::PasswordMismatch
        );
        // The response must be for this challenge.
        assert!(c
            .verify(
                &answer("alice", "wonderland", "other", d),
                chal,
                d,
                true,
                &no_groups
            )
            .is_err());
        // Missing secrets file.
        let c2 = cfg(&["alice"], Some(p.with_file_name("missing")));
        assert_eq!(
            c2.verify(
                &answer("alice", "wonderland", chal, d),
                chal,
                d,
                true,
                &no_groups
            )
            .unwrap_err()
            .1,
            AuthFailure::NoSecretsFile
        );
    }

    #[test]
    fn strict_modes() {
        let chal = "abcdefghijklmnopqrstuv";
        let d = AuthDigest::Md5;
        let none = |_: &[u8]| Vec::new();
        for (mode, ok) in [
            (0o600, true),
            (0o640, true),
            (0o601, true),
            (0o644, false),
            (0o602, false),
            (0o666, false),
        ] {
            let (_d, p) = secrets_dir("alice:pw\n", mode);
            let c = cfg(&["alice"], Some(p));
            let r = c.verify(&answer("alice", "pw", chal, d), chal, d, true, &none);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}");
            if !ok {
                assert_eq!(r.unwrap_err().1, AuthFailure::IgnoringSecretsFile);
            }
            let mut lax = cfg(&["alice"], c.secrets_file.clone());
            lax.strict_modes = false;
            assert!(lax
                .verify(&answer("alice", "pw", chal, d), chal, d, true, &none)
                .is_ok());
        }
    }

    #[test]
    fn first_user_line_decides() {
        // A mismatch on the first "alice:" line stops looking for alice.
        let text = b"alice:one\nalice:two\n";
        let chal = "c";
        let d = AuthDigest::Md5;
        let r = |pw: &str| auth_response(d, pw.as_bytes(), chal.as_bytes()).into_bytes();
        assert!(check_secret(text, b"alice", None, chal, &r("one"), d).is_ok());
        assert_eq!(
            check_secret(text, b"alice", None, chal, &r("two"), d),
            Err(AuthFailure::PasswordMismatch)
        );
        assert_eq!(
            check_secret(text, b"alic", None, chal, &r("one"), d),
            Err(AuthFailure::SecretNotFound)
        );
        assert_eq!(
            check_secret(b"@g:gp\n", b"u", Some(b"g"), chal, &r("gp"), d),
            Ok(())
        );
    }
}
