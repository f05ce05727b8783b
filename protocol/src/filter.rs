//! Filter rules as the sender applies them.
//!
//! Mirrors `exclude.c`: `recv_filter_list()` (wire framing),
//! `parse_rule_tok()` (rule text), `add_rule()` (pattern flags) and
//! `rule_matches()` / `check_filter()` (first match wins).

use crate::error::{DecodeError, DecodeResult};
use crate::limits::Limits;
use crate::wildmatch::{litmatch_array, wildmatch_array, MatchAt};
use crate::wire::Reader;

/// Read the client's filter list: repeated `int32 len` + rule text,
/// ended by a zero length (`exclude.c: recv_filter_list()`).
pub fn decode_filter_list(r: &mut Reader<'_>, limits: &Limits) -> DecodeResult<Vec<Vec<u8>>> {
    let mut rules = Vec::new();
    loop {
        let len = r.i32()?;
        if len == 0 {
            return Ok(rules);
        }
        if len < 0 || len as usize > limits.max_filter_rule_len {
            return Err(DecodeError::invalid("filter rule", format!("bad rule length {len}")));
        }
        if rules.len() >= limits.max_filter_rules {
            return Err(DecodeError::invalid("filter list", format!("more than {} rules", limits.max_filter_rules)));
        }
        rules.push(r.bytes(len as usize)?.to_vec());
    }
}

/// What a matching rule says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterDecision {
    /// An include rule matched first.
    Include,
    /// An exclude rule matched first.
    Exclude,
    /// No rule matched.
    NoMatch,
}

/// A filter rule we cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Merge / dir-merge rules (they read files on the server) and other
    /// rule kinds this server refuses.
    #[error("filter rule \"{rule}\" is not supported by this server: {reason}")]
    Unsupported {
        /// The rule as received.
        rule: String,
        /// Why.
        reason: &'static str,
    },
    /// A malformed rule.
    #[error("invalid filter rule \"{rule}\": {reason}")]
    Invalid {
        /// The rule.
        rule: String,
        /// Why.
        reason: &'static str,
    },
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    include: bool,
    /// Pattern as stored (leading `/` kept when anchored, trailing `/` and
    /// `/***` handling already applied).
    pattern: Vec<u8>,
    anchored: bool,
    abs_path: bool,
    dir_only: bool,
    negate: bool,
    wild: bool,
    wild2: bool,
    wild2_prefix: bool,
    wild3_suffix: bool,
    slash_cnt: u32,
    /// Receiver-side only: never matches on the sender.
    receiver_only: bool,
    perishable: bool,
}

impl FilterRule {
    /// `add_rule()`: derive the matching flags from the pattern text.
    fn new(include: bool, pat: &[u8], mods: Mods) -> FilterRule {
        let mut pattern = pat.to_vec();
        let mut dir_only = false;
        let mut wild3_suffix = false;
        if pattern.len() > 1 && pattern.ends_with(b"/") {
            pattern.pop();
            dir_only = true;
        }
        if pattern.len() > 4 && pattern.ends_with(b"/***") {
            // "dir/***" also matches "dir" itself.
            wild3_suffix = true;
        }
        let anchored = pattern.first() == Some(&b'/');
        let body = if anchored { &pattern[1..] } else { &pattern[..] };
        let slash_cnt = body.iter().filter(|&&b| b == b'/').count() as u32;
        let wild = pattern.iter().any(|&b| matches!(b, b'*' | b'?' | b'['));
        let wild2 = find(&pattern, b"**").is_some();
        let wild2_prefix = pattern.starts_with(b"**");
        let mut pattern = pattern;
        if wild3_suffix {
            // rule_matches() appends "/" to directory names so that
            // "dir/***" matches "dir/" as well.
        }
        if pattern.is_empty() {
            pattern = b"".to_vec();
        }
        FilterRule {
            include,
            pattern,
            anchored,
            abs_path: mods.abs_path,
            dir_only,
            negate: mods.negate,
            wild,
            wild2,
            wild2_prefix,
            wild3_suffix,
            slash_cnt,
            receiver_only: mods.receiver_only,
            perishable: mods.perishable,
        }
    }

    /// `exclude.c: rule_matches()`.
    fn matches(&self, name: &[u8], full_name: &[u8], is_dir: bool) -> bool {
        let ret_match = !self.negate;
        if name.is_empty() {
            return false;
        }
        let mut text: Vec<u8> = Vec::with_capacity(full_name.len() + 2);
        let mut str_cnt = 0;
        if self.slash_cnt == 0 && !self.wild2 {
            let base = match name.iter().rposition(|&b| b == b'/') {
                Some(i) => &name[i + 1..],
                None => name,
            };
            text.extend_from_slice(base);
            str_cnt += 1;
        } else if self.abs_path {
            text.extend_from_slice(full_name);
            str_cnt += 2;
        } else if self.wild2_prefix {
            text.push(b'/');
            text.extend_from_slice(name);
            str_cnt += 2;
        } else {
            text.extend_from_slice(name);
            str_cnt += 1;
        }
        if is_dir {
            if self.wild3_suffix {
                text.push(b'/');
                str_cnt += 1;
            }
        } else if self.dir_only {
            return !ret_match;
        }
        let mut pattern = &self.pattern[..];
        let mut anchored = false;
        if pattern.first() == Some(&b'/') {
            anchored = true;
            pattern = &pattern[1..];
        }
        let at = if !anchored && self.slash_cnt > 0 && !self.wild2 {
            MatchAt::TrailingComponents(self.slash_cnt + 1)
        } else if !anchored && !self.wild2_prefix && self.wild2 {
            MatchAt::AnySlash
        } else {
            MatchAt::Whole
        };
        let m = if self.wild {
            wildmatch_array(pattern, &text, at)
        } else if str_cnt > 1 {
            litmatch_array(pattern, &text, at)
        } else if anchored {
            text == pattern
        } else {
            let (l1, l2) = (text.len(), pattern.len());
            l2 <= l1 && &text[l1 - l2..] == pattern && (l1 == l2 || text[l1 - l2 - 1] == b'/')
        };
        if m {
            ret_match
        } else {
            !ret_match
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Mods {
    abs_path: bool,
    negate: bool,
    receiver_only: bool,
    perishable: bool,
}

/// An ordered list of rules; the first match wins.
#[derive(Debug, Clone, Default)]
pub struct FilterList {
    rules: Vec<FilterRule>,
}

fn shown(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl FilterList {
    /// Parse the client's rules as received.
    pub fn from_client_rules(rules: &[Vec<u8>], protocol: u8) -> Result<FilterList, FilterError> {
        let mut list = FilterList::default();
        for r in rules {
            if protocol < 29 {
                list.add_old_rule(r);
            } else {
                list.add_rule_text(r, true)?;
            }
        }
        Ok(list)
    }

    /// `XFLG_OLD_PREFIXES`: only "+ " / "- " prefixes, "!" clears.
    fn add_old_rule(&mut self, r: &[u8]) {
        if r == b"!" {
            self.rules.clear();
        } else if let Some(p) = r.strip_prefix(b"+ ") {
            self.rules.push(FilterRule::new(true, p, Mods::default()));
        } else if let Some(p) = r.strip_prefix(b"- ") {
            self.rules.push(FilterRule::new(false, p, Mods::default()));
        } else {
            self.rules.push(FilterRule::new(false, r, Mods::default()));
        }
    }

    /// `parse_rule_tok()` for one rule in prefixed form.
    fn add_rule_text(&mut self, r: &[u8], from_client: bool) -> Result<(), FilterError> {
        let err = |reason| FilterError::Invalid { rule: shown(r), reason };
        let unsupported = |reason| FilterError::Unsupported { rule: shown(r), reason };
        if r == b"!" || r == b"clear" {
            self.rules.clear();
            return Ok(());
        }
        // Long rule names ("exclude PATTERN") or a short prefix letter.
        let (kind, rest) = {
            let word_end = r.iter().position(|&b| b == b' ' || b == b',').unwrap_or(r.len());
            let word = &r[..word_end];
            let long = match word {
                b"exclude" => Some(b'-'),
                b"include" => Some(b'+'),
                b"hide" => Some(b'H'),
                b"show" => Some(b'S'),
                b"protect" => Some(b'P'),
                b"risk" => Some(b'R'),
                b"merge" => Some(b'.'),
                b"dir-merge" => Some(b':'),
                _ => None,
            };
            match long {
                Some(k) => (k, &r[word_end..]),
                None => (r[0], &r[1..]),
            }
        };
        let mut mods = Mods::default();
        let mut side_sender = false;
        let mut side_receiver = false;
        let mut i = 0;
        let rest = rest.strip_prefix(b",").unwrap_or(rest);
        while i < rest.len() && rest[i] != b' ' && rest[i] != b'_' {
            match rest[i] {
                b'/' => mods.abs_path = true,
                b'!' => mods.negate = true,
                b'C' => return Err(unsupported("CVS-ignore rules need per-directory merge files")),
                b'n' | b'w' | b'e' | b'-' | b'+' => {}
                b'x' => return Err(unsupported("xattr rules are not supported")),
                b's' => side_sender = true,
                b'r' => side_receiver = true,
                b'p' => mods.perishable = true,
                _ => return Err(err("unknown modifier")),
            }
            i += 1;
        }
        if side_receiver && !side_sender {
            mods.receiver_only = true;
        }
        let pat = if i < rest.len() { &rest[i + 1..] } else { &rest[rest.len()..] };
        match kind {
            b'-' => self.rules.push(FilterRule::new(false, pat, mods)),
            b'+' => self.rules.push(FilterRule::new(true, pat, mods)),
            b'H' => self.rules.push(FilterRule::new(false, pat, mods)),
            b'S' => self.rules.push(FilterRule::new(true, pat, mods)),
            b'P' | b'R' => {
                mods.receiver_only = true;
                self.rules.push(FilterRule::new(kind == b'R', pat, mods));
            }
            b'.' | b':' => {
                return Err(unsupported(if from_client {
                    "merge and dir-merge rules would read files on the server"
                } else {
                    "merge rules in module filters are not supported yet"
                }))
            }
            _ => return Err(err("unknown rule type")),
        }
        if pat.is_empty() {
            return Err(err("missing pattern"));
        }
        Ok(())
    }

    /// Module rules (`clientserver.c: rsync_module()`): `filter` (full
    /// rules), then `include`, then `exclude` (whitespace-separated
    /// patterns). Daemon rules are matched against module-relative paths.
    pub fn from_daemon_params(filter: &[Vec<u8>], include: &[Vec<u8>], exclude: &[Vec<u8>]) -> Result<FilterList, FilterError> {
        let mut list = FilterList::default();
        for f in filter {
            list.add_rule_text(f, false)?;
        }
        for (inc, pats) in [(true, include), (false, exclude)] {
            for p in pats {
                for word in p.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
                    list.add_daemon_pattern(inc, word);
                }
            }
        }
        Ok(list)
    }

    fn add_daemon_pattern(&mut self, include: bool, word: &[u8]) {
        if word == b"!" {
            self.rules.clear();
            return;
        }
        let (include, pat) = if let Some(p) = word.strip_prefix(b"+ ") {
            (true, p)
        } else if let Some(p) = word.strip_prefix(b"- ") {
            (false, p)
        } else {
            (include, word)
        };
        // A pattern with a '/' is anchored at the module root; an excluded
        // directory hides its whole subtree (we match module paths, and an
        // excluded directory is never descended into).
        let mut p = pat.to_vec();
        let inner = if p.ends_with(b"/") { &p[..p.len() - 1] } else { &p[..] };
        if inner.contains(&b'/') && !p.starts_with(b"/") {
            p.insert(0, b'/');
        }
        self.rules.push(FilterRule::new(include, &p, Mods::default()));
    }

    /// `-C`: stock's default CVS-ignore patterns (perishable at proto >= 30).
    pub fn add_cvs_excludes(&mut self, protocol: u8) {
        const CVS: &str = "RCS SCCS CVS CVS.adm RCSLOG cvslog.* tags TAGS .make.state .nse_depinfo *~ #* .#* ,* _$* *$ *.old *.bak *.BAK *.orig *.rej .del-* *.a *.olb *.o *.obj *.so *.exe *.Z *.elc *.ln core .svn/ .git/ .hg/ .bzr/";
        for w in CVS.split(' ') {
            let mods = Mods { perishable: protocol >= 30, ..Mods::default() };
            self.rules.push(FilterRule::new(false, w.as_bytes(), mods));
        }
    }

    /// `check_filter()`: the first matching rule decides.
    pub fn check(&self, name: &[u8], full_name: &[u8], is_dir: bool) -> FilterDecision {
        for r in &self.rules {
            if r.receiver_only {
                continue;
            }
            if r.matches(name, full_name, is_dir) {
                return if r.include { FilterDecision::Include } else { FilterDecision::Exclude };
            }
        }
        FilterDecision::NoMatch
    }

    /// No rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(rules: &[&str]) -> FilterList {
        let v: Vec<Vec<u8>> = rules.iter().map(|r| r.as_bytes().to_vec()).collect();
        FilterList::from_client_rules(&v, 31).unwrap()
    }

    fn ex(l: &FilterList, name: &str, dir: bool) -> bool {
        l.check(name.as_bytes(), name.as_bytes(), dir) == FilterDecision::Exclude
    }

    #[test]
    fn basename_and_anchored() {
        let l = list(&["- *.o", "- /top", "- junk/", "+ keep/", "- *"]);
        assert!(ex(&l, "a/b/x.o", false));
        assert!(ex(&l, "top", false));
        assert!(!ex(&l, "keep", true));
        assert!(ex(&l, "sub/junk", true));
        assert!(ex(&l, "other", false));
        let l = list(&["- /top"]);
        assert!(!ex(&l, "a/top", false));
        let l = list(&["- junk/"]);
        assert!(!ex(&l, "junk", false));
    }

    #[test]
    fn inner_slash_and_double_star() {
        let l = list(&["- a/b"]);
        assert!(ex(&l, "a/b", false));
        assert!(ex(&l, "x/a/b", false));
        assert!(!ex(&l, "xa/b", false));
        let l = list(&["- a/**/z"]);
        assert!(ex(&l, "a/b/c/z", false));
        assert!(ex(&l, "q/a/b/z", false));
        let l = list(&["+ /dir/***", "- *"]);
        assert!(!ex(&l, "dir", true));
        assert!(!ex(&l, "dir/x/y", false));
        assert!(ex(&l, "other", false));
    }

    #[test]
    fn negate_clear_and_sides() {
        let l = list(&["-! *.c"]);
        assert!(ex(&l, "x.o", false));
        assert!(!ex(&l, "x.c", false));
        let l = list(&["- x", "!", "- y"]);
        assert!(!ex(&l, "x", false));
        assert!(ex(&l, "y", false));
        let l = list(&["-r x", "P y", "H z"]);
        assert!(!ex(&l, "x", false));
        assert!(!ex(&l, "y", false));
        assert!(ex(&l, "z", false));
    }

    #[test]
    fn merge_rules_refused() {
        let v = vec![b": .rsync-filter".to_vec()];
        assert!(matches!(FilterList::from_client_rules(&v, 31), Err(FilterError::Unsupported { .. })));
        let v = vec![b"._/etc/passwd".to_vec()];
        assert!(FilterList::from_client_rules(&v, 31).is_err());
    }

    #[test]
    fn old_protocol_forms() {
        let v: Vec<Vec<u8>> = vec![b"*.o".to_vec(), b"+ keep/".to_vec(), b"junk/".to_vec()];
        let l = FilterList::from_client_rules(&v, 28).unwrap();
        assert!(ex(&l, "x.o", false));
        assert!(!ex(&l, "keep", true));
        assert!(ex(&l, "junk", true));
    }

    #[test]
    fn daemon_patterns_anchor_with_slash() {
        let l = FilterList::from_daemon_params(&[], &[], &[b"secret/ pre/release *.tmp".to_vec()]).unwrap();
        assert!(ex(&l, "secret", true));
        assert!(ex(&l, "a/secret", true));
        assert!(ex(&l, "pre/release", true));
        assert!(!ex(&l, "x/pre/release", true));
        assert!(ex(&l, "a/b.tmp", false));
    }

    #[test]
    fn wire_list_limits() {
        let mut b = Vec::new();
        crate::wire::put_i32(&mut b, 5);
        b.extend_from_slice(b"- *.o");
        crate::wire::put_i32(&mut b, 0);
        assert_eq!(decode_filter_list(&mut Reader::new(&b), &Limits::default()).unwrap(), vec![b"- *.o".to_vec()]);
        let mut b = Vec::new();
        crate::wire::put_i32(&mut b, 100_000);
        assert!(matches!(decode_filter_list(&mut Reader::new(&b), &Limits::default()), Err(DecodeError::Invalid { .. })));
        let mut b = Vec::new();
        crate::wire::put_i32(&mut b, -4);
        assert!(decode_filter_list(&mut Reader::new(&b), &Limits::default()).is_err());
    }
}
