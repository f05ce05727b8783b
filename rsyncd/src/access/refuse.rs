//! `refuse options`.
//!
//! Mirrors `options.c: set_refuse_options()`, `parse_one_refuse_match()`
//! and the implied-option checks of `parse_arguments()` (3.5.0 semantics,
//! which refuse a superset of 3.2.7):
//!
//! * Tokens are space-separated; each is a long name, a one-letter short
//!   name, or a wildcard pattern matched against both.  A leading `!`
//!   accepts instead of refusing; later tokens override earlier ones.
//! * `a` / `archive` given exactly mean `[ardlptgoD]`.
//! * Some options are never matched by a wildcard, only by their exact name
//!   (`-e`, `-0`, `-s`, `-n`, `iconv`, `no-iconv`, `checksum-seed`,
//!   `copy-devices`, `write-devices`, `log-format`, `sender`, `server`).
//! * An exact name also catches every alias with the same action (3.5.0:
//!   `del` / `delete-during`, `cc` / `checksum-choice`, `zt` /
//!   `compress-threads`, ...).
//! * A daemon always refuses `copy-devices` and `write-devices` (unless
//!   `!copy-devices` / `!write-devices`), and, after the module's tokens,
//!   `log-file*`, `insecure-links` and (without a `charset`) `iconv`.
//! * Implied options are refused too: a refused part of `-a` refuses `-a`,
//!   refused `compress` refuses any compression, refused `partial` or
//!   `progress` refuses `-P`, refused `delete` refuses every delete mode.

use protocol::args::{ArgError, ServerOptions};
use protocol::wildmatch::wildmatch;

/// rsync 3.5.0's `long_options[]` as (long name, short name, alias group);
/// rows in one non-zero group have the same action (`same_refuse_action()`).
/// Generated from RsyncProject/rsync v3.5.0 options.c (names only).
const ROWS: &[(&str, Option<char>, u16)] = &[
    ("help", None, 0),
    ("version", Some('V'), 0),
    ("verbose", Some('v'), 0),
    ("no-verbose", None, 1),
    ("no-v", None, 1),
    ("info", None, 0),
    ("debug", None, 0),
    ("stderr", None, 0),
    ("msgs2stderr", None, 0),
    ("no-msgs2stderr", None, 0),
    ("quiet", Some('q'), 0),
    ("motd", None, 0),
    ("no-motd", None, 0),
    ("stats", None, 0),
    ("human-readable", Some('h'), 0),
    ("no-human-readable", None, 2),
    ("no-h", None, 2),
    ("dry-run", Some('n'), 0),
    ("archive", Some('a'), 0),
    ("recursive", Some('r'), 0),
    ("no-recursive", None, 3),
    ("no-r", None, 3),
    ("inc-recursive", None, 4),
    ("no-inc-recursive", None, 5),
    ("i-r", None, 4),
    ("no-i-r", None, 5),
    ("dirs", Some('d'), 0),
    ("no-dirs", None, 6),
    ("no-d", None, 6),
    ("old-dirs", None, 7),
    ("old-d", None, 7),
    ("perms", Some('p'), 0),
    ("no-perms", None, 8),
    ("no-p", None, 8),
    ("executability", Some('E'), 0),
    ("acls", Some('A'), 0),
    ("no-acls", None, 9),
    ("no-A", None, 9),
    ("xattrs", Some('X'), 0),
    ("no-xattrs", None, 10),
    ("no-X", None, 10),
    ("times", Some('t'), 0),
    ("no-times", None, 11),
    ("no-t", None, 11),
    ("atimes", Some('U'), 0),
    ("no-atimes", None, 12),
    ("no-U", None, 12),
    ("open-noatime", None, 0),
    ("no-open-noatime", None, 0),
    ("crtimes", Some('N'), 0),
    ("no-crtimes", None, 13),
    ("no-N", None, 13),
    ("omit-dir-times", Some('O'), 0),
    ("no-omit-dir-times", None, 14),
    ("no-O", None, 14),
    ("omit-link-times", Some('J'), 0),
    ("no-omit-link-times", None, 15),
    ("no-J", None, 15),
    ("modify-window", Some('@'), 0),
    ("super", None, 0),
    ("no-super", None, 0),
    ("fake-super", None, 0),
    ("owner", Some('o'), 0),
    ("no-owner", None, 16),
    ("no-o", None, 16),
    ("group", Some('g'), 0),
    ("no-group", None, 17),
    ("no-g", None, 17),
    ("", Some('D'), 0),
    ("no-D", None, 0),
    ("devices", None, 0),
    ("no-devices", None, 0),
    ("copy-devices", None, 0),
    ("write-devices", None, 0),
    ("no-write-devices", None, 0),
    ("specials", None, 0),
    ("no-specials", None, 0),
    ("drop-D", None, 0),
    ("no-drop-D", None, 0),
    ("confine-root", None, 0),
    ("links", Some('l'), 0),
    ("no-links", None, 18),
    ("no-l", None, 18),
    ("copy-links", Some('L'), 0),
    ("copy-unsafe-links", None, 0),
    ("safe-links", None, 0),
    ("insecure-links", None, 0),
    ("no-insecure-links", None, 0),
    ("munge-links", None, 0),
    ("no-munge-links", None, 0),
    ("copy-dirlinks", Some('k'), 0),
    ("keep-dirlinks", Some('K'), 0),
    ("hard-links", Some('H'), 0),
    ("no-hard-links", None, 19),
    ("no-H", None, 19),
    ("relative", Some('R'), 0),
    ("no-relative", None, 20),
    ("no-R", None, 20),
    ("implied-dirs", None, 21),
    ("no-implied-dirs", None, 22),
    ("i-d", None, 21),
    ("no-i-d", None, 22),
    ("chmod", None, 0),
    ("ignore-times", Some('I'), 0),
    ("size-only", None, 0),
    ("one-file-system", Some('x'), 0),
    ("no-one-file-system", None, 23),
    ("no-x", None, 23),
    ("update", Some('u'), 0),
    ("existing", None, 24),
    ("ignore-non-existing", None, 24),
    ("ignore-existing", None, 0),
    ("max-size", None, 0),
    ("min-size", None, 0),
    ("max-alloc", None, 0),
    ("sparse", Some('S'), 0),
    ("no-sparse", None, 25),
    ("no-S", None, 25),
    ("preallocate", None, 0),
    ("inplace", None, 0),
    ("no-inplace", None, 0),
    ("append", None, 0),
    ("append-verify", None, 0),
    ("no-append", None, 0),
    ("del", None, 26),
    ("delete", None, 0),
    ("delete-before", None, 0),
    ("delete-during", None, 26),
    ("delete-delay", None, 0),
    ("delete-after", None, 0),
    ("delete-excluded", None, 0),
    ("delete-missing-args", None, 0),
    ("ignore-missing-args", None, 0),
    ("remove-sent-files", None, 0),
    ("remove-source-files", None, 0),
    ("force", None, 0),
    ("no-force", None, 0),
    ("ignore-errors", None, 0),
    ("no-ignore-errors", None, 0),
    ("max-delete", None, 0),
    ("", Some('F'), 0),
    ("filter", Some('f'), 0),
    ("exclude", None, 0),
    ("include", None, 0),
    ("exclude-from", None, 0),
    ("include-from", None, 0),
    ("cvs-exclude", Some('C'), 0),
    ("whole-file", Some('W'), 0),
    ("no-whole-file", None, 27),
    ("no-W", None, 27),
    ("checksum", Some('c'), 0),
    ("no-checksum", None, 28),
    ("no-c", None, 28),
    ("checksum-choice", None, 29),
    ("cc", None, 29),
    ("block-size", Some('B'), 0),
    ("compare-dest", None, 0),
    ("copy-dest", None, 0),
    ("link-dest", None, 0),
    ("fuzzy", Some('y'), 0),
    ("no-fuzzy", None, 30),
    ("no-y", None, 30),
    ("compress", Some('z'), 0),
    ("old-compress", None, 0),
    ("new-compress", None, 0),
    ("no-compress", None, 31),
    ("no-z", None, 31),
    ("compress-choice", None, 32),
    ("zc", None, 32),
    ("skip-compress", None, 0),
    ("compress-level", None, 33),
    ("zl", None, 33),
    ("compress-threads", None, 34),
    ("zt", None, 34),
    ("", Some('P'), 0),
    ("progress", None, 0),
    ("no-progress", None, 0),
    ("partial", None, 0),
    ("no-partial", None, 0),
    ("partial-dir", None, 0),
    ("delay-updates", None, 0),
    ("no-delay-updates", None, 0),
    ("prune-empty-dirs", Some('m'), 0),
    ("no-prune-empty-dirs", None, 35),
    ("no-m", None, 35),
    ("log-file", None, 0),
    ("log-file-format", None, 0),
    ("out-format", None, 36),
    ("log-format", None, 36),
    ("itemize-changes", Some('i'), 0),
    ("no-itemize-changes", None, 37),
    ("no-i", None, 37),
    ("bwlimit", None, 0),
    ("no-bwlimit", None, 0),
    ("backup", Some('b'), 0),
    ("no-backup", None, 0),
    ("backup-dir", None, 0),
    ("suffix", None, 0),
    ("list-only", None, 0),
    ("read-batch", None, 0),
    ("write-batch", None, 0),
    ("only-write-batch", None, 0),
    ("files-from", None, 0),
    ("from0", Some('0'), 0),
    ("no-from0", None, 0),
    ("old-args", None, 0),
    ("no-old-args", None, 0),
    ("secluded-args", Some('s'), 38),
    ("no-secluded-args", None, 39),
    ("protect-args", None, 38),
    ("no-protect-args", None, 39),
    ("no-s", None, 39),
    ("trust-sender", None, 0),
    ("numeric-ids", None, 0),
    ("no-numeric-ids", None, 0),
    ("usermap", None, 0),
    ("groupmap", None, 0),
    ("chown", None, 0),
    ("timeout", None, 0),
    ("no-timeout", None, 0),
    ("contimeout", None, 0),
    ("no-contimeout", None, 0),
    ("fsync", None, 0),
    ("stop-after", None, 40),
    ("time-limit", None, 40),
    ("stop-at", None, 0),
    ("rsh", Some('e'), 0),
    ("rsync-path", None, 0),
    ("temp-dir", Some('T'), 0),
    ("iconv", None, 0),
    ("no-iconv", None, 0),
    ("ipv4", Some('4'), 0),
    ("ipv6", Some('6'), 0),
    ("8-bit-output", Some('8'), 0),
    ("no-8-bit-output", None, 41),
    ("no-8", None, 41),
    ("mkpath", None, 0),
    ("no-mkpath", None, 0),
    ("qsort", None, 0),
    ("copy-as", None, 0),
    ("address", None, 0),
    ("port", None, 0),
    ("sockopts", None, 0),
    ("password-file", None, 0),
    ("early-input", None, 0),
    ("blocking-io", None, 0),
    ("no-blocking-io", None, 0),
    ("outbuf", None, 0),
    ("remote-option", Some('M'), 0),
    ("protocol", None, 0),
    ("checksum-seed", None, 0),
    ("server", None, 0),
    ("sender", None, 0),
    ("config", None, 42),
    ("daemon", None, 43),
    ("dparam", None, 42),
    ("detach", None, 43),
    ("no-detach", None, 43),
];

/// Options only an exact token can refuse (`set_refuse_options()`).
fn exact_only(long: &str, short: Option<char>) -> bool {
    matches!(short, Some('e' | '0' | 's' | 'n'))
        || matches!(
            long,
            "iconv"
                | "no-iconv"
                | "checksum-seed"
                | "copy-devices"
                | "write-devices"
                | "log-format"
                | "sender"
                | "server"
        )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    refused: bool,
    wild: bool,
}

/// A module's compiled `refuse options`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefuseRules {
    refused: Vec<bool>,
    /// Tokens that matched no option (stock logs
    /// `No match for refuse-options string "..."`).
    pub unmatched: Vec<String>,
}

fn short_str(c: Option<char>) -> Option<[u8; 1]> {
    c.and_then(|c| u8::try_from(c).ok()).map(|b| [b])
}

fn row_matches(pat: &[u8], long: &str, short: Option<char>) -> bool {
    (!long.is_empty() && wildmatch(pat, long.as_bytes()))
        || short_str(short).is_some_and(|s| wildmatch(pat, &s))
}

/// `parse_one_refuse_match()`.
fn apply(states: &mut [State], negated: bool, token: &str) -> bool {
    let (pat, is_wild): (&str, bool) = if token == "a" || token == "archive" {
        ("[ardlptgoD]", true)
    } else {
        (token, token.contains(['*', '?', '[']))
    };
    let mut found = false;
    let mut matched: Option<usize> = None;
    for (i, &(long, short, _)) in ROWS.iter().enumerate() {
        if !row_matches(pat.as_bytes(), long, short) {
            continue;
        }
        // A wildcard only touches wild-card-able rows; an exact name any row.
        let st = &mut states[i];
        if st.wild || !is_wild {
            st.refused = !negated;
        }
        found = true;
        if !is_wild {
            matched = Some(i);
            break;
        }
    }
    if let Some(m) = matched {
        let group = ROWS[m].2;
        if group != 0 {
            for (i, row) in ROWS.iter().enumerate() {
                if i != m && row.2 == group {
                    states[i].refused = !negated;
                }
            }
        }
    }
    found
}

fn row_index(long: &str, short: Option<char>) -> Option<usize> {
    ROWS.iter().position(|&(l, s, _)| {
        if long.is_empty() {
            l.is_empty() && s == short
        } else {
            l == long
        }
    })
}

/// Stock's refusal text (`create_refuse_error()`); a row without a long
/// name prints glibc's `(null)`, as stock does.
pub fn refusal(long: &str, short: Option<char>) -> ArgError {
    let shown = if long.is_empty() { "(null)" } else { long };
    let mut message = format!("The server is configured to refuse --{shown}");
    if let Some(c) = short {
        message.push_str(&format!(" (-{c})"));
    }
    let option = if long.is_empty() {
        short.map(String::from).unwrap_or_default()
    } else {
        long.to_string()
    };
    ArgError::Unsupported { option, message }
}

impl RefuseRules {
    /// Compile the module's tokens (split on spaces, as stock).
    /// `has_charset`: the module sets `charset` (else `iconv` is refused).
    pub fn new(tokens: &[String], has_charset: bool) -> RefuseRules {
        let mut states: Vec<State> = ROWS
            .iter()
            .map(|&(l, s, _)| State {
                refused: false,
                wild: !exact_only(l, s),
            })
            .collect();
        apply(&mut states, false, "copy-devices");
        apply(&mut states, false, "write-devices");
        let mut unmatched = Vec::new();
        for t in tokens {
            let t = t.as_str();
            if t.is_empty() {
                continue;
            }
            let (negated, tok) = match t.strip_prefix('!') {
                Some(rest) if !rest.is_empty() => (true, rest),
                _ => (false, t),
            };
            if !apply(&mut states, negated, tok) {
                unmatched.push(tok.to_string());
            }
        }
        if !has_charset {
            apply(&mut states, false, "iconv");
        }
        apply(&mut states, false, "log-file*");
        apply(&mut states, false, "insecure-links");
        RefuseRules {
            refused: states.iter().map(|s| s.refused).collect(),
            unmatched,
        }
    }

    /// Is this option row refused?
    pub fn is_refused(&self, long: &str, short: Option<char>) -> bool {
        row_index(long, short).is_some_and(|i| self.refused[i])
    }

    fn refused_row(&self, long: &str) -> Option<ArgError> {
        let i = row_index(long, None)?;
        self.refused[i].then(|| refusal(ROWS[i].0, ROWS[i].1))
    }

    /// Check what the client asked for: the first refused option it sent,
    /// then the implied refusals (`parse_arguments()`).
    pub fn check(&self, o: &ServerOptions) -> Result<(), ArgError> {
        let sent = o.requested_options();
        for &(long, short) in &sent {
            if self.is_refused(long, short) {
                return Err(refusal(long, short));
            }
        }
        let has = |long: &str, short: Option<char>| {
            sent.iter().any(|&(l, s)| {
                if long.is_empty() {
                    l.is_empty() && s == short
                } else {
                    l == long
                }
            })
        };
        // -a with a refused part: the last refused of r d l p t g o D in table order.
        if has("archive", Some('a')) {
            let part = ROWS
                .iter()
                .enumerate()
                .filter(|(_, r)| matches!(r.1, Some('r' | 'd' | 'l' | 'p' | 't' | 'g' | 'o' | 'D')))
                .rfind(|(i, _)| self.refused[*i]);
            if let Some((_, r)) = part {
                return Err(refusal(r.0, r.1));
            }
        }
        // -P: refused partial or progress.
        if has("", Some('P')) {
            if let Some(e) = self
                .refused_row("partial")
                .or_else(|| self.refused_row("progress"))
            {
                return Err(e);
            }
        }
        // Any compression with "compress" refused.
        if (o.wants_compression() || o.compress_level.is_some())
            && self.is_refused("compress", Some('z'))
        {
            return Err(refusal("compress", Some('z')));
        }
        // Delete modes.
        let explicit_when = [
            "delete-before",
            "delete-during",
            "del",
            "delete-delay",
            "delete-after",
        ]
        .iter()
        .any(|l| has(l, None));
        let delete_mode = explicit_when || has("delete", None) || has("delete-excluded", None);
        if delete_mode
            && !explicit_when
            && self.is_refused("delete-before", None)
            && self.is_refused("delete-during", None)
        {
            return Err(refusal("delete-before", None));
        }
        if (delete_mode || o.delete_missing_args) && self.is_refused("delete", None) {
            return Err(refusal("delete", None));
        }
        if (has("remove-source-files", None) || has("remove-sent-files", None))
            && self.is_refused("delete", None)
        {
            return Err(refusal("delete", None));
        }
        // --inplace (and --append / --write-devices, which imply it) imply
        // --partial for refusal purposes; so do --partial-dir and --delay-updates.
        if (o.inplace || o.append > 0 || has("partial-dir", None) || has("delay-updates", None))
            && self.is_refused("partial", None)
        {
            return Err(refusal("partial", None));
        }
        if (o.append > 0 || has("write-devices", None)) && self.is_refused("inplace", None) {
            return Err(refusal("inplace", None));
        }
        if self.is_refused("no-iconv", None) && !has("iconv", None) {
            return Err(refusal("no-iconv", None));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::args::parse_server_args;

    fn rules(s: &str) -> RefuseRules {
        let t: Vec<String> = s
            .split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect();
        RefuseRules::new(&t, false)
    }

    fn check(r: &RefuseRules, args: &[&str]) -> Result<(), String> {
        let mut v: Vec<Vec<u8>> = vec![b"--server".to_vec(), b"--sender".to_vec()];
        v.extend(args.iter().map(|a| a.as_bytes().to_vec()));
        v.push(b".".to_vec());
        v.push(b"mod/".to_vec());
        let p = parse_server_args(&v, None).map_err(|e| format!("parse: {e}"))?;
        r.check(&p.options).map_err(|e| e.to_string())
    }

    const C: &str = "The server is configured to refuse --checksum (-c)";

    #[test]
    fn checksum_everywhere() {
        let r = rules("checksum");
        assert_eq!(check(&r, &["-c"]), Err(C.into()));
        assert_eq!(check(&r, &["--checksum"]), Err(C.into()));
        assert_eq!(check(&r, &["-vlogDtprce.iLsfxCIvu"]), Err(C.into()));
        assert_eq!(check(&r, &["-clogDtpre.iLsfxCIvu"]), Err(C.into()));
        assert_eq!(
            check(&r, &["-logDtpre.iLsfxCIvu"]),
            Ok(()),
            "c in the capability string is not -c"
        );
        assert_eq!(
            check(&r, &["-logDtpre.iLsfxCIvu", "--checksum-seed=1"]),
            Ok(())
        );
        // 3.5.0: an exact name catches its aliases only (cc is checksum-choice's).
        assert_eq!(check(&r, &["--checksum-choice=md5"]), Ok(()));
        let r = rules("c");
        assert_eq!(check(&r, &["--checksum"]), Err(C.into()));
        let r = rules("checksum*");
        assert_eq!(
            check(&r, &["--checksum-choice=md5"]),
            Err("The server is configured to refuse --checksum-choice".into())
        );
        assert_eq!(
            check(&r, &["--checksum-seed=1"]),
            Ok(()),
            "never wildcard-matched"
        );
        let r = rules("checksum-choice");
        assert_eq!(
            check(&r, &["--cc=md5"]),
            Err("The server is configured to refuse --cc".into())
        );
    }

    #[test]
    fn negation_and_order() {
        let r = rules("* !a !v !compress* !e !checksum-seed");
        assert_eq!(check(&r, &["-vlogDtpre.iLsfxCIvu"]), Ok(()));
        assert!(check(&r, &["-vlogDtpre.iLsfxCIvu", "-c"]).is_err());
        assert_eq!(
            check(&r, &["-vlogDtpre.iLsfxCIvu", "--checksum-seed=1", "-z"]),
            Ok(())
        );
        assert_eq!(
            check(&r, &["-vlogDtpre.iLsfxCIvu", "--compress-choice=zstd"]),
            Ok(())
        );
        let r = rules("checksum !checksum");
        assert_eq!(check(&r, &["-c"]), Ok(()));
        let r = rules("!checksum checksum");
        assert!(check(&r, &["-c"]).is_err());
        // "*" leaves the exact-only options alone.
        let r = rules("*");
        assert!(r.is_refused("checksum", Some('c')));
        assert!(!r.is_refused("server", None));
        assert!(!r.is_refused("rsh", Some('e')));
        assert!(!r.is_refused("dry-run", Some('n')));
        assert!(!r.is_refused("checksum-seed", None));
        assert!(!r.is_refused("log-format", None));
    }

    #[test]
    fn archive_and_implied() {
        let r = rules("a");
        for (l, s) in [
            ("recursive", 'r'),
            ("links", 'l'),
            ("perms", 'p'),
            ("times", 't'),
            ("group", 'g'),
            ("owner", 'o'),
            ("dirs", 'd'),
            ("archive", 'a'),
        ] {
            assert!(r.is_refused(l, Some(s)), "{l}");
        }
        assert!(r.is_refused("", Some('D')));
        assert!(!r.is_refused("checksum", Some('c')));
        let r = rules("times");
        assert_eq!(
            check(&r, &["-a"]),
            Err("The server is configured to refuse --times (-t)".into())
        );
        assert_eq!(
            check(&r, &["-logDtpre.i"]),
            Err("The server is configured to refuse --times (-t)".into())
        );
        let r = rules("D");
        assert_eq!(
            check(&r, &["-D"]),
            Err("The server is configured to refuse --(null) (-D)".into())
        );
        let r = rules("compress");
        assert_eq!(
            check(&r, &["-z"]),
            Err("The server is configured to refuse --compress (-z)".into())
        );
        assert_eq!(
            check(&r, &["--compress-choice=zstd"]),
            Err("The server is configured to refuse --compress (-z)".into())
        );
        assert_eq!(
            check(&r, &["--compress-level=3"]),
            Err("The server is configured to refuse --compress (-z)".into())
        );
        assert_eq!(check(&r, &["--compress-choice=none"]), Ok(()));
        let r = rules("partial");
        assert_eq!(
            check(&r, &["-P"]),
            Err("The server is configured to refuse --partial".into())
        );
        assert_eq!(
            check(&r, &["--inplace"]),
            Err("The server is configured to refuse --partial".into())
        );
        let r = rules("delete");
        assert_eq!(
            check(&r, &["--delete-missing-args"]),
            Err("The server is configured to refuse --delete".into())
        );
        let r = rules("delete-during");
        assert_eq!(
            check(&r, &["--del"]),
            Err("The server is configured to refuse --del".into()),
            "3.5.0 alias"
        );
        let r = rules("compress-threads");
        assert!(r.is_refused("zt", None));
    }

    #[test]
    fn daemon_defaults_and_unmatched() {
        let r = rules("");
        assert!(r.is_refused("copy-devices", None));
        assert!(r.is_refused("write-devices", None));
        assert!(r.is_refused("log-file", None));
        assert!(r.is_refused("log-file-format", None));
        assert!(r.is_refused("insecure-links", None));
        assert!(r.is_refused("iconv", None));
        assert!(!r.is_refused("log-format", None));
        let r = rules("!copy-devices !log-file frobnicate");
        assert!(!r.is_refused("copy-devices", None));
        assert!(
            r.is_refused("log-file", None),
            "log-file* is refused after the module's tokens"
        );
        assert_eq!(r.unmatched, vec!["frobnicate".to_string()]);
        assert_eq!(check(&rules(""), &["-logDtpre.i"]), Ok(()));
        let r = RefuseRules::new(&["!iconv".to_string()], true);
        assert!(!r.is_refused("iconv", None));
        let r = rules("no-iconv");
        assert_eq!(
            check(&r, &["-r"]),
            Err("The server is configured to refuse --no-iconv".into())
        );
    }
}
