//! rsync filter rules as the sender applies them.
//!
//! Mirrors `exclude.c`: `recv_filter_list()` (wire form, [`decode_filter_list`]),
//! `parse_filter_str()` / `parse_rule_tok()` / `add_rule()` (rule text →
//! [`FilterRule`]), `rule_matches()` / `check_filter()` ([`FilterList::check`])
//! and `name_is_excluded()` ([`name_is_excluded`]); plus the daemon's module
//! parameters as `clientserver.c: rsync_module()` loads them
//! ([`FilterList::from_daemon_params`]).
//!
//! What this server deliberately does not do: merge files (`.`/`merge`) and
//! per-directory merge files (`:`/`dir-merge`, `-F`, the `.cvsignore` files
//! of `-C`) make the sender read files named by the client, so such rules
//! are refused with [`FilterError::Unsupported`]. `-C` still adds rsync's
//! default CVS patterns ([`FilterList::add_cvs_excludes`]); the client then
//! trusts the sender's filtering (its own `:C` rule sets
//! `trust_sender_filter`), so omitting the per-directory files is safe.

use std::borrow::Cow;

use crate::error::{DecodeError, DecodeResult};
use crate::limits::Limits;
use crate::wildmatch::{litmatch_array, wildmatch_array, MatchAt};
use crate::wire::Reader;

/// rsync's `MAXPATHLEN`: `parse_filter_str()` discards longer patterns.
const MAXPATHLEN: usize = 4096;
/// rsync's `BIGPATHBUFLEN` line buffer for `parse_filter_file()`.
const BIGPATHBUFLEN: usize = MAXPATHLEN + 1024;

/// The default CVS-ignore patterns (`rsync.1`, `--cvs-exclude`), as built
/// into rsync 3.x.
pub const DEFAULT_CVSIGNORE: &[u8] = b"RCS SCCS CVS CVS.adm RCSLOG cvslog.* tags TAGS \
.make.state .nse_depinfo *~ #* .#* ,* _$* *$ *.old *.bak *.BAK *.orig *.rej .del-* \
*.a *.olb *.o *.obj *.so *.exe *.Z *.elc *.ln core .svn/ .git/ .hg/ .bzr/";

// Rule flags (`rsync.h: FILTRULE_*`), used while parsing.
const F_WILD: u32 = 1 << 0;
const F_WILD2: u32 = 1 << 1;
const F_WILD2_PREFIX: u32 = 1 << 2;
const F_WILD3_SUFFIX: u32 = 1 << 3;
const F_ABS_PATH: u32 = 1 << 4;
const F_INCLUDE: u32 = 1 << 5;
const F_DIRECTORY: u32 = 1 << 6;
const F_WORD_SPLIT: u32 = 1 << 7;
const F_NO_INHERIT: u32 = 1 << 8;
const F_NO_PREFIXES: u32 = 1 << 9;
const F_MERGE_FILE: u32 = 1 << 10;
const F_PERDIR_MERGE: u32 = 1 << 11;
const F_EXCLUDE_SELF: u32 = 1 << 12;
const F_NEGATE: u32 = 1 << 14;
const F_CVS_IGNORE: u32 = 1 << 15;
const F_SENDER_SIDE: u32 = 1 << 16;
const F_RECEIVER_SIDE: u32 = 1 << 17;
const F_CLEAR_LIST: u32 = 1 << 18;
const F_PERISHABLE: u32 = 1 << 19;
const F_XATTR: u32 = 1 << 20;
const F_SIDES: u32 = F_SENDER_SIDE | F_RECEIVER_SIDE;
/// `FILTRULES_FROM_CONTAINER`: what a rule inherits from its template.
const F_FROM_CONTAINER: u32 = F_ABS_PATH | F_INCLUDE | F_DIRECTORY | F_NEGATE | F_PERISHABLE;

// Parse-time switches (`rsync.h: XFLG_*`).
const X_OLD_PREFIXES: u32 = 1 << 1;
const X_ANCHORED2ABS: u32 = 1 << 2;
const X_ABS_IF_SLASH: u32 = 1 << 3;
const X_DIR2WILD3: u32 = 1 << 4;

/// Read the client's filter list (`exclude.c: recv_filter_list()`): repeated
/// `int32 len` + `len` bytes of rule text, ended by a zero length.
///
/// Each length is checked against `limits.max_filter_rule_len` and the
/// number of rules against `limits.max_filter_rules` before anything is
/// allocated. On [`DecodeError::Incomplete`] the caller retries later with
/// more bytes from the same starting point.
pub fn decode_filter_list(r: &mut Reader<'_>, limits: &Limits) -> DecodeResult<Vec<Vec<u8>>> {
    let mut rules = Vec::new();
    loop {
        let len = r.i32()?;
        if len == 0 {
            return Ok(rules);
        }
        if len < 0 || len as usize > limits.max_filter_rule_len {
            return Err(DecodeError::invalid(
                "filter rule",
                format!(
                    "rule length {len} outside 1..={}",
                    limits.max_filter_rule_len
                ),
            ));
        }
        if rules.len() >= limits.max_filter_rules {
            return Err(DecodeError::invalid(
                "filter list",
                format!("more than {} filter rules", limits.max_filter_rules),
            ));
        }
        rules.push(r.bytes(len as usize)?.to_vec());
    }
}

/// Why a rule list could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// A valid rsync rule this server refuses to apply (merge files).
    #[error("{reason}: {rule}")]
    Unsupported {
        /// The rule as received (lossy UTF-8).
        rule: String,
        /// Why it is refused.
        reason: String,
    },
    /// A rule rsync itself would reject (stock exits with `RERR_SYNTAX`).
    /// `reason` is rsync's wording, e.g. `Unknown filter rule`.
    #[error("{reason}: {rule}")]
    Invalid {
        /// The rule as received (lossy UTF-8).
        rule: String,
        /// rsync's message for it.
        reason: String,
    },
}

fn invalid(rule: &[u8], reason: impl Into<String>) -> FilterError {
    FilterError::Invalid {
        rule: String::from_utf8_lossy(rule).into_owned(),
        reason: reason.into(),
    }
}

/// Whether a rule includes or excludes what it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleAction {
    /// `+`, `S` (show), `R` (risk).
    Include,
    /// `-`, `H` (hide), `P` (protect).
    Exclude,
}

/// What kind of matching a pattern needs (`FILTRULE_WILD*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WildKind {
    /// No `*`, `?` or `[`: compared byte for byte.
    Literal,
    /// Wildcards, but no `**`.
    Wild,
    /// Contains `**`; `prefix` when it starts with `**`, `triple_suffix`
    /// when it ends with `***` (then it also matches the directory itself).
    DoubleStar {
        /// Pattern starts with `**` (`FILTRULE_WILD2_PREFIX`).
        prefix: bool,
        /// Pattern ends with `***` (`FILTRULE_WILD3_SUFFIX`).
        triple_suffix: bool,
    },
}

/// One parsed rule (`struct filter_rule` after `add_rule()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterRule {
    /// The pattern as stored by `add_rule()`: trailing `/` removed (see
    /// `dir_only`), `/***` appended to daemon directory excludes. A leading
    /// `/` (anchoring) is kept.
    pub pattern: Vec<u8>,
    /// Include or exclude.
    pub action: RuleAction,
    /// The pattern starts with `/`: it matches from the transfer root (or,
    /// with `abs_path`, from the module root).
    pub anchored: bool,
    /// The pattern ended with `/`: only directories match.
    pub dir_only: bool,
    /// `!` modifier: the rule applies when the pattern does NOT match.
    pub negate: bool,
    /// Matched against the path from the module root (`/` modifier, or a
    /// daemon rule containing a slash; `FILTRULE_ABS_PATH`).
    pub abs_path: bool,
    /// Wildcard kind.
    pub wild: WildKind,
    /// Number of `/` in the pattern (drives "match the trailing N
    /// components").
    pub slash_count: u32,
    /// `p` modifier (matters only to a receiver's deletions).
    pub perishable: bool,
    /// `s` modifier, or `H`/`S`.
    pub sender_side: bool,
    /// `r` modifier, or `P`/`R`. A rule with only this side never matches on
    /// the sender.
    pub receiver_side: bool,
    /// `x` modifier: the rule names extended attributes, never files.
    pub xattr: bool,
    /// A `-C` rule: stands for the CVS-ignore list at this position.
    pub cvs_ignore: bool,
}

impl FilterRule {
    /// Build the stored rule from parser flags (second half of `add_rule()`).
    fn from_flags(pattern: Vec<u8>, rflags: u32, slash_count: u32) -> FilterRule {
        let wild = if rflags & F_WILD2 != 0 {
            WildKind::DoubleStar {
                prefix: rflags & F_WILD2_PREFIX != 0,
                triple_suffix: rflags & F_WILD3_SUFFIX != 0,
            }
        } else if rflags & F_WILD != 0 {
            WildKind::Wild
        } else {
            WildKind::Literal
        };
        FilterRule {
            anchored: pattern.first() == Some(&b'/'),
            pattern,
            action: if rflags & F_INCLUDE != 0 {
                RuleAction::Include
            } else {
                RuleAction::Exclude
            },
            dir_only: rflags & F_DIRECTORY != 0,
            negate: rflags & F_NEGATE != 0,
            abs_path: rflags & F_ABS_PATH != 0,
            wild,
            slash_count,
            perishable: rflags & F_PERISHABLE != 0,
            sender_side: rflags & F_SENDER_SIDE != 0,
            receiver_side: rflags & F_RECEIVER_SIDE != 0,
            xattr: rflags & F_XATTR != 0,
            cvs_ignore: rflags & F_CVS_IGNORE != 0,
        }
    }

    /// False for receiver-only rules (`r` side without `s`; `P`, `R`): the
    /// sender never applies them (`send_rules()` elides them).
    pub fn applies_on_sender(&self) -> bool {
        !self.receiver_side || self.sender_side
    }

    /// `exclude.c: rule_matches()`: does this rule apply to the name?
    /// `name` is relative to the transfer root, `full_name` to the module
    /// root (equal to `name` when the transfer root is the module root).
    pub fn matches(&self, name: &[u8], full_name: &[u8], is_dir: bool) -> bool {
        let ret_match = !self.negate;
        let lead = name.first() == Some(&b'/');
        let nm = if lead { &name[1..] } else { name };
        if nm.is_empty() || self.xattr {
            return false;
        }
        let (double, wild2_prefix, wild3_suffix) = match self.wild {
            WildKind::DoubleStar {
                prefix,
                triple_suffix,
            } => (true, prefix, triple_suffix),
            _ => (false, false, false),
        };
        // `multi` mirrors rule_matches()'s "str_cnt > 1".
        let (mut text, mut multi): (Cow<'_, [u8]>, bool) = if self.slash_count == 0 && !double {
            // No slash and no "**": only the last component matters.
            let base = match nm.iter().rposition(|&c| c == b'/') {
                Some(i) => &nm[i + 1..],
                None => nm,
            };
            (Cow::Borrowed(base), false)
        } else if self.abs_path && !lead && full_name.len() > nm.len() {
            (Cow::Borrowed(full_name), true)
        } else if wild2_prefix && !lead {
            // Let "**/" match at the start of the name.
            let mut v = Vec::with_capacity(nm.len() + 1);
            v.push(b'/');
            v.extend_from_slice(nm);
            (Cow::Owned(v), true)
        } else {
            (Cow::Borrowed(nm), false)
        };
        if is_dir {
            if wild3_suffix {
                // Let a trailing "/***" match the directory itself.
                text.to_mut().push(b'/');
                multi = true;
            }
        } else if self.dir_only {
            return !ret_match;
        }
        let (pattern, anchored) = match self.pattern.split_first() {
            Some((b'/', rest)) => (rest, true),
            _ => (&self.pattern[..], false),
        };
        let at = if !anchored && self.slash_count > 0 && !double {
            MatchAt::TrailingComponents(self.slash_count + 1)
        } else if !anchored && !wild2_prefix && double {
            MatchAt::AnySlash
        } else {
            MatchAt::Whole
        };
        let hit = match self.wild {
            WildKind::Wild | WildKind::DoubleStar { .. } => wildmatch_array(pattern, &text, at),
            WildKind::Literal if multi => litmatch_array(pattern, &text, at),
            WildKind::Literal if anchored => *text == *pattern,
            WildKind::Literal => {
                let t: &[u8] = &text;
                t.ends_with(pattern)
                    && (t.len() == pattern.len() || t[t.len() - pattern.len() - 1] == b'/')
            }
        };
        if hit {
            ret_match
        } else {
            !ret_match
        }
    }
}

/// Result of checking a name against a list (`check_filter()`'s -1/1/0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterDecision {
    /// The first matching rule includes the name.
    Include,
    /// The first matching rule excludes the name.
    Exclude,
    /// No rule matched (the name is kept).
    NoMatch,
}

/// Which command-line option a filter value came with (a client can pass
/// `--filter`/`--exclude`/`--include` to the server with `-M`; stock then
/// applies them before the received list). Mirrors `parse_arguments()`'s
/// `OPT_FILTER`, `OPT_EXCLUDE`, `OPT_INCLUDE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdlineFilter {
    /// `--filter=RULE` / `-f RULE`.
    Filter,
    /// `--exclude=PATTERN` (old-style prefixes `+ `/`- ` allowed).
    Exclude,
    /// `--include=PATTERN` (old-style prefixes allowed).
    Include,
}

/// The daemon module's filter parameters, as `rsync_module()` loads them,
/// with the two `... from` files already read by the caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct DaemonFilterParams<'a> {
    /// `filter` values: whitespace-separated full rules.
    pub filter: &'a [Vec<u8>],
    /// Contents of the `include from` file (one pattern per line).
    pub include_from: Option<&'a [u8]>,
    /// `include` values: whitespace-separated patterns.
    pub include: &'a [Vec<u8>],
    /// Contents of the `exclude from` file (one pattern per line).
    pub exclude_from: Option<&'a [u8]>,
    /// `exclude` values: whitespace-separated patterns.
    pub exclude: &'a [Vec<u8>],
}

/// An ordered rule list (`filter_rule_list`); first match wins.
#[derive(Debug, Clone, Default)]
pub struct FilterList {
    rules: Vec<FilterRule>,
    /// The CVS-ignore list `-C` entries refer to (`cvs_filter_list`), built
    /// once with the flags of the first `-C` rule (`get_cvs_excludes()`).
    cvs: Option<Vec<FilterRule>>,
    /// Protocol version (only decides whether CVS defaults are perishable).
    protocol: u8,
}

impl FilterList {
    /// Parse the client's rules as received (`recv_filter_list()`):
    /// protocol >= 29 prefixed form; < 29 old form where only `+ ` and `- `
    /// are prefixes and a lone `!` clears. Receiver-only rules are kept but
    /// never match on the sender; `x` (xattr) rules are kept and never match
    /// a file name, as in rsync. Merge and dir-merge rules are refused.
    pub fn from_client_rules(rules: &[Vec<u8>], protocol: u8) -> Result<FilterList, FilterError> {
        let mut list = FilterList {
            protocol,
            ..FilterList::default()
        };
        let xflags = if protocol >= 29 { 0 } else { X_OLD_PREFIXES };
        for rule in rules {
            list.parse_filter_str(rule, 0, xflags)?;
        }
        Ok(list)
    }

    /// Daemon module rules from the `filter`, `include` and `exclude`
    /// parameters (see [`FilterList::from_daemon_config`] for the `... from`
    /// files).
    pub fn from_daemon_params(
        filter: &[Vec<u8>],
        include: &[Vec<u8>],
        exclude: &[Vec<u8>],
    ) -> Result<FilterList, FilterError> {
        FilterList::from_daemon_config(&DaemonFilterParams {
            filter,
            include,
            exclude,
            ..DaemonFilterParams::default()
        })
    }

    /// Daemon module rules (`clientserver.c: rsync_module()`): `filter`,
    /// `include from`, `include`, `exclude from`, `exclude`, in that order.
    /// A pattern containing a `/` is matched against the module-relative
    /// path; an excluded directory pattern (`dir/`) becomes `dir/***` so the
    /// whole subtree is hidden. Rule sides (`H`, `S`, `P`, `R`, `s`, `r`) are
    /// ignored: every daemon rule applies to the sender (see `add_rule`).
    pub fn from_daemon_config(p: &DaemonFilterParams<'_>) -> Result<FilterList, FilterError> {
        let mut list = FilterList {
            protocol: 32,
            ..FilterList::default()
        };
        let x = X_ABS_IF_SLASH | X_DIR2WILD3;
        for v in p.filter {
            list.parse_filter_str(v, F_WORD_SPLIT, x)?;
        }
        if let Some(text) = p.include_from {
            list.parse_filter_lines(text, F_INCLUDE, x | X_OLD_PREFIXES)?;
        }
        for v in p.include {
            list.parse_filter_str(v, F_INCLUDE | F_WORD_SPLIT, x | X_OLD_PREFIXES)?;
        }
        if let Some(text) = p.exclude_from {
            list.parse_filter_lines(text, 0, x | X_OLD_PREFIXES)?;
        }
        for v in p.exclude {
            list.parse_filter_str(v, F_WORD_SPLIT, x | X_OLD_PREFIXES)?;
        }
        Ok(list)
    }

    /// Append a rule given as a server command-line option (`-M--exclude=X`
    /// and friends; see [`CmdlineFilter`]).
    pub fn add_cmdline(&mut self, opt: CmdlineFilter, value: &[u8]) -> Result<(), FilterError> {
        match opt {
            CmdlineFilter::Filter => self.parse_filter_str(value, 0, 0),
            CmdlineFilter::Exclude => self.parse_filter_str(value, 0, X_OLD_PREFIXES),
            CmdlineFilter::Include => self.parse_filter_str(value, F_INCLUDE, X_OLD_PREFIXES),
        }
    }

    /// `-C`: append the default CVS-ignore patterns (perishable from
    /// protocol 30 on), as `recv_filter_list()` does with its `-C` rule. The
    /// per-directory `.cvsignore` files (its `:C` rule), `~/.cvsignore` and
    /// `$CVSIGNORE` are not consulted.
    pub fn add_cvs_excludes(&mut self, protocol: u8) {
        self.protocol = protocol;
        // "-C" always parses; an error here would be a bug in this module.
        let _ = self.parse_filter_str(b"-C", 0, 0);
    }

    /// `exclude.c: check_filter()`: the first matching rule decides.
    /// `name` is relative to the transfer root (no leading `./`), `is_dir`
    /// says whether it is a directory. Rules with the `/` modifier and daemon
    /// rules containing a slash need the path from the module root: pass it
    /// in `full_name` (the same as `name` at the module root; otherwise the
    /// transfer root's module-relative path, a `/`, then `name`).
    pub fn check(&self, name: &[u8], full_name: &[u8], is_dir: bool) -> FilterDecision {
        check_rules(&self.rules, self.cvs.as_deref(), name, full_name, is_dir)
    }

    /// True when the list has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Number of rules (a `-C` entry counts as one).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[FilterRule] {
        &self.rules
    }

    /// `parse_filter_file()` on text already read: one rule per line (LF,
    /// CR or CRLF), empty lines and lines starting with `;` or `#` skipped,
    /// over-long lines discarded.
    fn parse_filter_lines(
        &mut self,
        text: &[u8],
        template: u32,
        xflags: u32,
    ) -> Result<(), FilterError> {
        let mut rest = text;
        while !rest.is_empty() {
            let end = rest
                .iter()
                .position(|&c| c == b'\n' || c == b'\r')
                .unwrap_or(rest.len());
            let line = &rest[..end];
            let mut next = end;
            if rest.get(end) == Some(&b'\r') && rest.get(end + 1) == Some(&b'\n') {
                next += 1;
            }
            rest = rest.get(next + 1..).unwrap_or(&[]);
            if line.len() >= BIGPATHBUFLEN - 1 {
                continue;
            }
            if !line.is_empty() && line[0] != b';' && line[0] != b'#' {
                self.parse_filter_str(line, template, xflags)?;
            }
        }
        Ok(())
    }

    /// `exclude.c: parse_filter_str()`.
    fn parse_filter_str(
        &mut self,
        text: &[u8],
        template: u32,
        xflags: u32,
    ) -> Result<(), FilterError> {
        // The C code sees a NUL-terminated string.
        let text = match text.iter().position(|&c| c == 0) {
            Some(i) => &text[..i],
            None => text,
        };
        let mut rest = text;
        while let Some(tok) = parse_rule_tok(rest, template, xflags)? {
            rest = tok.rest;
            let pat = tok.pattern;
            if pat.len() >= MAXPATHLEN {
                continue; // "discarding over-long filter"
            }
            if tok.rflags & F_CLEAR_LIST != 0 {
                self.rules.clear();
                continue;
            }
            if tok.rflags & F_MERGE_FILE != 0 {
                let reason = if tok.rflags & F_PERDIR_MERGE != 0 {
                    "per-directory merge-file (dir-merge) rules are not supported by this server"
                } else {
                    "merge-file rules are not supported by this server"
                };
                return Err(FilterError::Unsupported {
                    rule: String::from_utf8_lossy(tok.whole).into_owned(),
                    reason: reason.into(),
                });
            }
            self.add_rule(pat, tok.rflags, xflags);
            if tok.rflags & F_CVS_IGNORE != 0 && self.cvs.is_none() {
                self.build_cvs(tok.rflags);
            }
        }
        Ok(())
    }

    /// `get_cvs_excludes()`: build the CVS list once, from the defaults.
    fn build_cvs(&mut self, rflags: u32) {
        let mut cvs = FilterList::default();
        let perish = if self.protocol >= 30 { F_PERISHABLE } else { 0 };
        // The default list holds only plain words; it cannot fail.
        let _ = cvs.parse_filter_str(DEFAULT_CVSIGNORE, rflags | perish, 0);
        self.cvs = Some(cvs.rules);
    }

    /// `exclude.c: add_rule()`.
    fn add_rule(&mut self, pat: &[u8], mut rflags: u32, xflags: u32) {
        let abs_xflags = xflags & (X_ANCHORED2ABS | X_ABS_IF_SLASH) != 0;
        if abs_xflags {
            // Daemon rules. Stock drops the rules "for the other side" here,
            // but decides the side before it has parsed --sender, so a stock
            // daemon *sender* drops `H`/`s` rules and keeps `r`-only ones
            // (observed with 3.2.7: `filter = H *.rs -r *.c` hides the .c
            // files and shows the .rs files). We never push, so every daemon
            // rule applies: this hides at least what stock hides.
            rflags &= !F_SIDES;
        }
        let mut pattern = pat.to_vec();
        if pattern.len() > 1 && pattern.last() == Some(&b'/') {
            pattern.pop();
            rflags |= F_DIRECTORY;
        }
        let mut slash_count = pattern.iter().filter(|&&c| c == b'/').count() as u32;
        if rflags & (F_ABS_PATH | F_MERGE_FILE) == 0
            && ((abs_xflags && pattern.first() == Some(&b'/'))
                || (xflags & X_ABS_IF_SLASH != 0 && slash_count > 0))
        {
            rflags |= F_ABS_PATH;
        }
        if xflags & X_DIR2WILD3 != 0 && rflags & F_DIRECTORY != 0 && rflags & F_INCLUDE == 0 {
            rflags &= !F_DIRECTORY;
            pattern.extend_from_slice(b"/***");
            slash_count += 1;
        }
        if pattern.iter().any(|&c| matches!(c, b'*' | b'[' | b'?')) {
            rflags |= F_WILD;
            if let Some(i) = pattern.windows(2).position(|w| w == b"**") {
                rflags |= F_WILD2;
                if i == 0 {
                    rflags |= F_WILD2_PREFIX;
                }
                if pattern.ends_with(b"***") {
                    rflags |= F_WILD3_SUFFIX;
                }
            }
        }
        self.rules
            .push(FilterRule::from_flags(pattern, rflags, slash_count));
    }
}

/// `check_filter()` over a rule slice, with the CVS list `-C` entries use.
fn check_rules(
    rules: &[FilterRule],
    cvs: Option<&[FilterRule]>,
    name: &[u8],
    full_name: &[u8],
    is_dir: bool,
) -> FilterDecision {
    for rule in rules {
        if !rule.applies_on_sender() {
            continue;
        }
        if rule.cvs_ignore {
            if let Some(cvs) = cvs {
                let d = check_rules(cvs, None, name, full_name, is_dir);
                if d != FilterDecision::NoMatch {
                    return d;
                }
            }
            continue;
        }
        if rule.matches(name, full_name, is_dir) {
            return match rule.action {
                RuleAction::Include => FilterDecision::Include,
                RuleAction::Exclude => FilterDecision::Exclude,
            };
        }
    }
    FilterDecision::NoMatch
}

/// `exclude.c: name_is_excluded()` for the sender: the daemon's rules
/// first (an exclude there hides the name as if it did not exist; an
/// include there only stops later daemon rules), then the client's.
pub fn name_is_excluded(
    daemon: &FilterList,
    client: &FilterList,
    name: &[u8],
    full_name: &[u8],
    is_dir: bool,
) -> bool {
    daemon.check(name, full_name, is_dir) == FilterDecision::Exclude
        || client.check(name, full_name, is_dir) == FilterDecision::Exclude
}

/// One token from [`parse_rule_tok`].
struct RuleTok<'a> {
    rflags: u32,
    pattern: &'a [u8],
    rest: &'a [u8],
    /// The rule text from its start (for messages).
    whole: &'a [u8],
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `exclude.c: rule_strcmp()`: does `s` start with the long rule name
/// `word` followed by whitespace, `_`, `,` or the end? Returns the index
/// modifiers are scanned from (the name's last byte, or the `,`).
fn rule_word(s: &[u8], word: &[u8]) -> Option<usize> {
    if !s.starts_with(word) {
        return None;
    }
    match s.get(word.len()) {
        None | Some(b'_') => Some(word.len() - 1),
        Some(&c) if is_space(c) => Some(word.len() - 1),
        Some(b',') => Some(word.len()),
        _ => None,
    }
}

/// `exclude.c: parse_rule_tok()`: the next rule in `s`, or `None` when
/// there is none.
fn parse_rule_tok(
    s: &[u8],
    template: u32,
    xflags: u32,
) -> Result<Option<RuleTok<'_>>, FilterError> {
    let mut s = s;
    if template & F_WORD_SPLIT != 0 {
        let skip = s.iter().take_while(|&&c| is_space(c)).count();
        s = &s[skip..];
    }
    if s.is_empty() {
        return Ok(None);
    }
    let whole = s;
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let mut rflags = template & F_FROM_CONTAINER;
    let mut i = 0usize;

    if template & F_NO_PREFIXES != 0 {
        if at(0) == b'!' && template & F_CVS_IGNORE != 0 {
            rflags |= F_CLEAR_LIST; // tentative
        }
    } else if xflags & X_OLD_PREFIXES != 0 {
        if at(0) == b'-' && at(1) == b' ' {
            rflags &= !F_INCLUDE;
            i = 2;
        } else if at(0) == b'+' && at(1) == b' ' {
            rflags |= F_INCLUDE;
            i = 2;
        } else if at(0) == b'!' {
            rflags |= F_CLEAR_LIST; // tentative
        }
    } else {
        let named = |word: &[u8], ch: u8| rule_word(s, word).map(|j| (ch, j));
        let (ch, j) = match at(0) {
            b'c' => named(b"clear", b'!'),
            b'd' => named(b"dir-merge", b':'),
            b'e' => named(b"exclude", b'-'),
            b'h' => named(b"hide", b'H'),
            b'i' => named(b"include", b'+'),
            b'm' => named(b"merge", b'.'),
            b'p' => named(b"protect", b'P'),
            b'r' => named(b"risk", b'R'),
            b's' => named(b"show", b'S'),
            c => Some((c, if at(1) == b',' { 1 } else { 0 })),
        }
        .ok_or_else(|| invalid(whole, "Unknown filter rule"))?;
        i = j;
        let mut side_prefix = false;
        match ch {
            b':' => rflags |= F_PERDIR_MERGE | F_MERGE_FILE,
            b'.' => rflags |= F_MERGE_FILE,
            b'+' => rflags |= F_INCLUDE,
            b'-' => {}
            b'S' => {
                rflags |= F_INCLUDE | F_SENDER_SIDE;
                side_prefix = true;
            }
            b'H' => {
                rflags |= F_SENDER_SIDE;
                side_prefix = true;
            }
            b'R' => {
                rflags |= F_INCLUDE | F_RECEIVER_SIDE;
                side_prefix = true;
            }
            b'P' => {
                rflags |= F_RECEIVER_SIDE;
                side_prefix = true;
            }
            b'!' => rflags |= F_CLEAR_LIST,
            _ => return Err(invalid(whole, "Unknown filter rule")),
        }
        if ch != b'!' {
            loop {
                i += 1;
                let c = at(i);
                if c == 0 || c == b' ' || c == b'_' {
                    break;
                }
                if template & F_WORD_SPLIT != 0 && is_space(c) {
                    i -= 1;
                    break;
                }
                let bad = || {
                    invalid(
                        whole,
                        format!(
                            "invalid modifier '{}' at position {i} in filter rule",
                            char::from(c).escape_default()
                        ),
                    )
                };
                let merge = rflags & F_MERGE_FILE != 0;
                match c {
                    b'-' | b'+' => {
                        if !merge || rflags & F_NO_PREFIXES != 0 {
                            return Err(bad());
                        }
                        rflags |= F_NO_PREFIXES;
                        if c == b'+' {
                            rflags |= F_INCLUDE;
                        }
                    }
                    b'/' => rflags |= F_ABS_PATH,
                    b'!' => {
                        if merge {
                            return Err(bad());
                        }
                        rflags |= F_NEGATE;
                    }
                    b'C' => {
                        if rflags & F_NO_PREFIXES != 0 || side_prefix {
                            return Err(bad());
                        }
                        rflags |= F_NO_PREFIXES | F_WORD_SPLIT | F_NO_INHERIT | F_CVS_IGNORE;
                    }
                    b'e' | b'n' | b'w' => {
                        if !merge {
                            return Err(bad());
                        }
                        rflags |= match c {
                            b'e' => F_EXCLUDE_SELF,
                            b'n' => F_NO_INHERIT,
                            _ => F_WORD_SPLIT,
                        };
                    }
                    b'p' => rflags |= F_PERISHABLE,
                    b'r' | b's' => {
                        if side_prefix {
                            return Err(bad());
                        }
                        rflags |= if c == b'r' {
                            F_RECEIVER_SIDE
                        } else {
                            F_SENDER_SIDE
                        };
                    }
                    b'x' => rflags |= F_XATTR,
                    _ => return Err(bad()),
                }
            }
        }
        if at(i) != 0 {
            i += 1;
        }
    }

    if template & F_SIDES != 0 {
        if rflags & F_SIDES != 0 {
            return Err(invalid(
                whole,
                "specified-side merge file contains specified-side filter",
            ));
        }
        rflags |= template & F_SIDES;
    }

    let i = i.min(s.len());
    let body = &s[i..];
    let len = if template & F_WORD_SPLIT != 0 {
        body.iter().position(|&c| is_space(c)).unwrap_or(body.len())
    } else {
        body.len()
    };

    if rflags & F_CLEAR_LIST != 0 {
        if template & F_NO_PREFIXES == 0 && xflags & X_OLD_PREFIXES == 0 && len > 0 {
            return Err(invalid(whole, "'!' rule has trailing characters"));
        }
        if len > 1 {
            rflags &= !F_CLEAR_LIST;
        }
    } else if len == 0 && rflags & F_CVS_IGNORE == 0 {
        return Err(invalid(whole, "unexpected end of filter rule"));
    }

    Ok(Some(RuleTok {
        rflags,
        pattern: &body[..len],
        rest: &body[len..],
        whole: &whole[..i + len],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn decode_wire_list() {
        let mut buf = Vec::new();
        for r in ["- *.o", "+ keep/"] {
            crate::wire::put_i32(&mut buf, r.len() as i32);
            buf.extend_from_slice(r.as_bytes());
        }
        crate::wire::put_i32(&mut buf, 0);
        let limits = Limits::default();
        let got = decode_filter_list(&mut Reader::new(&buf), &limits).unwrap();
        assert_eq!(got, rules(&["- *.o", "+ keep/"]));
        // Every strict prefix is incomplete.
        for cut in 0..buf.len() {
            let e = decode_filter_list(&mut Reader::new(&buf[..cut]), &limits).unwrap_err();
            assert!(e.is_incomplete(), "cut {cut}: {e:?}");
        }
        // Limits.
        let small = Limits {
            max_filter_rule_len: 4,
            ..Limits::default()
        };
        assert!(matches!(
            decode_filter_list(&mut Reader::new(&buf), &small),
            Err(DecodeError::Invalid { .. })
        ));
        let few = Limits {
            max_filter_rules: 1,
            ..Limits::default()
        };
        assert!(matches!(
            decode_filter_list(&mut Reader::new(&buf), &few),
            Err(DecodeError::Invalid { .. })
        ));
        let neg = (-5i32).to_le_bytes();
        assert!(matches!(
            decode_filter_list(&mut Reader::new(&neg), &limits),
            Err(DecodeError::Invalid { .. })
        ));
        assert_eq!(
            decode_filter_list(&mut Reader::new(&[0, 0, 0, 0]), &limits).unwrap(),
            Vec::<Vec<u8>>::new()
        );
    }

    #[test]
    fn parsed_rule_shapes() {
        let l = FilterList::from_client_rules(
            &rules(&[
                "- *.o",
                "+ keep/",
                "-/ /top",
                "H bar",
                "S x",
                "-p per",
                "+! bang",
                "P prot",
                "-r recv",
                "-sr both",
                "exclude,p long",
                "include_x",
            ]),
            31,
        )
        .unwrap();
        let r = l.rules();
        assert_eq!(r.len(), 12);
        assert_eq!(
            (r[0].action, r[0].wild, r[0].pattern.as_slice()),
            (RuleAction::Exclude, WildKind::Wild, &b"*.o"[..])
        );
        assert!(r[1].dir_only && r[1].action == RuleAction::Include && r[1].pattern == b"keep");
        assert!(r[2].abs_path && r[2].anchored && r[2].slash_count == 1);
        assert!(r[3].sender_side && r[3].action == RuleAction::Exclude);
        assert!(r[4].sender_side && r[4].action == RuleAction::Include);
        assert!(r[5].perishable);
        assert!(r[6].negate && r[6].action == RuleAction::Include);
        assert!(r[7].receiver_side && !r[7].applies_on_sender());
        assert!(!r[8].applies_on_sender());
        assert!(r[9].applies_on_sender());
        assert!(r[10].perishable && r[10].pattern == b"long");
        assert_eq!(r[11].pattern, b"x");
    }

    #[test]
    fn invalid_and_unsupported_rules() {
        let err = |s: &str, p: u8| FilterList::from_client_rules(&rules(&[s]), p).unwrap_err();
        assert!(matches!(
            err(": .rsync-filter", 31),
            FilterError::Unsupported { .. }
        ));
        assert!(matches!(
            err(". /etc/passwd", 31),
            FilterError::Unsupported { .. }
        ));
        assert!(matches!(
            err("dir-merge .x", 31),
            FilterError::Unsupported { .. }
        ));
        assert!(matches!(
            err("merge,- /x", 31),
            FilterError::Unsupported { .. }
        ));
        assert!(matches!(err(":C", 31), FilterError::Unsupported { .. }));
        match err("q foo", 31) {
            FilterError::Invalid { reason, .. } => assert_eq!(reason, "Unknown filter rule"),
            e => panic!("{e:?}"),
        }
        match err("-z foo", 31) {
            FilterError::Invalid { reason, .. } => {
                assert_eq!(reason, "invalid modifier 'z' at position 1 in filter rule")
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(err("-", 31), FilterError::Invalid { .. }));
        assert!(matches!(err("- ", 31), FilterError::Invalid { .. }));
        assert!(matches!(err("! x", 31), FilterError::Invalid { .. }));
        assert!(matches!(err("Hs foo", 31), FilterError::Invalid { .. }));
        assert!(matches!(err("-e foo", 31), FilterError::Invalid { .. }));
        assert!(matches!(
            err("exclusive foo", 31),
            FilterError::Invalid { .. }
        ));
        // Old protocol: "- " with nothing after it.
        assert!(matches!(err("- ", 28), FilterError::Invalid { .. }));
    }

    #[test]
    fn clear_rules() {
        let l = FilterList::from_client_rules(&rules(&["- a", "!", "- b"]), 31).unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l.check(b"a", b"a", false), FilterDecision::NoMatch);
        assert_eq!(l.check(b"b", b"b", false), FilterDecision::Exclude);
        let l = FilterList::from_client_rules(&rules(&["- a", "clear", "- b"]), 31).unwrap();
        assert_eq!(l.len(), 1);
        // Old protocol: "!" clears, "!x" is a pattern, a bare pattern excludes.
        let l = FilterList::from_client_rules(&rules(&["a", "!", "b", "!x", "+ c", "- + d"]), 28)
            .unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l.check(b"a", b"a", false), FilterDecision::NoMatch);
        assert_eq!(l.check(b"b", b"b", false), FilterDecision::Exclude);
        assert_eq!(l.check(b"!x", b"!x", false), FilterDecision::Exclude);
        assert_eq!(l.check(b"c", b"c", false), FilterDecision::Include);
        assert_eq!(l.check(b"+ d", b"+ d", false), FilterDecision::Exclude);
    }

    #[test]
    fn cvs_defaults() {
        let mut l = FilterList::from_client_rules(&rules(&["+ core"]), 31).unwrap();
        l.add_cvs_excludes(31);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l.check(b"x/foo.o", b"x/foo.o", false),
            FilterDecision::Exclude
        );
        assert_eq!(l.check(b"core", b"core", false), FilterDecision::Include);
        assert_eq!(l.check(b"a/.git", b"a/.git", true), FilterDecision::Exclude);
        assert_eq!(
            l.check(b"a/.git", b"a/.git", false),
            FilterDecision::NoMatch
        );
        assert_eq!(l.check(b"#x#", b"#x#", false), FilterDecision::Exclude);
        assert_eq!(l.check(b"a$", b"a$", false), FilterDecision::Exclude);
        assert_eq!(l.check(b"x.c", b"x.c", false), FilterDecision::NoMatch);
        let cvs = l.cvs.as_ref().unwrap();
        assert!(cvs
            .iter()
            .all(|r| r.perishable && r.action == RuleAction::Exclude));
        assert_eq!(cvs.len(), 36);
        let mut old = FilterList::default();
        old.add_cvs_excludes(29);
        assert!(old.cvs.as_ref().unwrap().iter().all(|r| !r.perishable));
    }

    #[test]
    fn daemon_rule_shapes() {
        let l = FilterList::from_daemon_params(
            &rules(&["- *.tmp + /pub/ -r recv-only", "H hidden"]),
            &rules(&["keep.me"]),
            &rules(&["secret/ /top/private/ a/b - minus + plus !"]),
        )
        .unwrap();
        // The final "!" in `exclude` clears everything before it.
        assert!(l.is_empty());
        let l = FilterList::from_daemon_params(
            &rules(&["- *.tmp + /pub/ -r recv-only", "H hidden"]),
            &rules(&["keep.me"]),
            &rules(&["secret/ /top/private/ a/b - minus + plus"]),
        )
        .unwrap();
        let pats: Vec<_> = l
            .rules()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.pattern).into_owned())
            .collect();
        assert_eq!(
            pats,
            [
                "*.tmp",
                "/pub",
                "recv-only",
                "hidden",
                "keep.me",
                "secret/***",
                "/top/private/***",
                "a/b",
                "minus",
                "plus"
            ]
        );
        let r = l.rules();
        assert!(
            r[1].abs_path && r[1].dir_only,
            "include dirs keep the directory flag"
        );
        assert!(
            r[2].applies_on_sender() && !r[2].receiver_side && !r[3].sender_side,
            "sides are ignored"
        );
        assert!(!r[5].abs_path && !r[5].dir_only && r[5].slash_count == 1);
        assert!(r[6].abs_path);
        assert!(r[7].abs_path && r[7].wild == WildKind::Literal);
        assert_eq!(r[9].action, RuleAction::Include);
        assert!(matches!(
            FilterList::from_daemon_params(&rules(&["H  two-spaces"]), &[], &[]),
            Err(FilterError::Invalid { .. })
        ));
    }

    #[test]
    fn daemon_from_files() {
        let inc = b"# comment\n; also\n\nkeep/\r\n+ x\n";
        let exc = b"*.iso\r\n- y";
        let l = FilterList::from_daemon_config(&DaemonFilterParams {
            include_from: Some(inc),
            exclude_from: Some(exc),
            ..Default::default()
        })
        .unwrap();
        let got: Vec<_> = l
            .rules()
            .iter()
            .map(|r| (r.action, String::from_utf8_lossy(&r.pattern).into_owned()))
            .collect();
        assert_eq!(
            got,
            [
                (RuleAction::Include, "keep".to_string()),
                (RuleAction::Include, "x".to_string()),
                (RuleAction::Exclude, "*.iso".to_string()),
                (RuleAction::Exclude, "y".to_string()),
            ]
        );
    }

    #[test]
    fn cmdline_filters() {
        let mut l = FilterList::default();
        l.add_cmdline(CmdlineFilter::Exclude, b"*.o").unwrap();
        l.add_cmdline(CmdlineFilter::Include, b"- x").unwrap();
        l.add_cmdline(CmdlineFilter::Filter, b"+ y").unwrap();
        assert_eq!(l.check(b"a.o", b"a.o", false), FilterDecision::Exclude);
        assert_eq!(l.check(b"x", b"x", false), FilterDecision::Exclude);
        assert_eq!(l.check(b"y", b"y", false), FilterDecision::Include);
        assert!(l
            .add_cmdline(CmdlineFilter::Filter, b": /.rsync-filter")
            .is_err());
    }

    #[test]
    fn nul_truncates_rule() {
        let l = FilterList::from_client_rules(&[b"- a\0b".to_vec()], 31).unwrap();
        assert_eq!(l.rules()[0].pattern, b"a");
    }

    /// Deterministic pseudo-random rules and names: never a panic.
    #[test]
    fn random_rules_do_not_panic() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet = b"-+!/*?[]^:\\ _,.abCHSPRxpsrenw\t\0";
        for _ in 0..20_000 {
            let len = (next() % 12) as usize;
            let rule: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() as usize) % alphabet.len()])
                .collect();
            let name: Vec<u8> = (0..(next() % 10))
                .map(|_| alphabet[(next() as usize) % alphabet.len()])
                .collect();
            for proto in [28u8, 31] {
                if let Ok(l) = FilterList::from_client_rules(std::slice::from_ref(&rule), proto) {
                    let _ = l.check(&name, &name, next() % 2 == 0);
                }
            }
            if let Ok(l) = FilterList::from_daemon_params(
                std::slice::from_ref(&rule),
                &[],
                std::slice::from_ref(&rule),
            ) {
                let _ = l.check(&name, &name, true);
            }
            let _ = crate::wildmatch::wildmatch(&rule, &name);
        }
    }
}
