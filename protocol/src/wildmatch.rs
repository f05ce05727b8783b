//! rsync's wildcard matcher.
//!
//! Mirrors the behaviour of `lib/wildmatch.c` (`wildmatch()`,
//! `iwildmatch()`, `wildmatch_array()`, `litmatch_array()`):
//!
//! * `?` matches any single byte except `/`;
//! * `*` matches any run of bytes not containing `/`;
//! * `**` (two or more stars) matches any run of bytes, `/` included;
//! * `[...]` is a byte class: `!` or `^` after the `[` negates it, `a-z`
//!   ranges, `\` escapes, `]` right after the opening `[` (or `[!`) is a
//!   literal, and POSIX classes such as `[:alpha:]` are recognised (ASCII
//!   only, as in the C locale). A class never matches `/`;
//! * `\x` matches `x` literally.
//!
//! The matcher keeps rsync's two "abort" results: once the text runs out,
//! no shorter suffix can succeed (abort everything), and once a single `*`
//! would have to cross a `/`, only an enclosing `**` may retry (abort to the
//! double star). These keep matching polynomial: a hostile pattern such as
//! `*a*a*a*a*a*b` against a long run of `a`s costs a few passes over the
//! text, not an exponential search.
//!
//! Texts are byte slices; unlike the C code a NUL byte is an ordinary byte.
//! Recursion depth is bounded by the number of star groups in the pattern.

/// Outcome of one match attempt (`dowild()`'s return values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The pattern matched the whole text.
    Matched,
    /// No match here; an enclosing star may try a longer prefix.
    NoMatch,
    /// The text ran out: no enclosing star can succeed either.
    AbortAll,
    /// A single `*` would have had to cross a `/`: only a `**` may go on.
    AbortToStarStar,
}

/// True for the bytes C's `isspace()` accepts in the "C" locale.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The POSIX class named `name` (between `[:` and `:]`), or `None` when the
/// name is not a class (`wildmatch.c` then fails the whole match).
fn class_matches(name: &[u8], c: u8) -> Option<bool> {
    Some(match name {
        b"alnum" => c.is_ascii_alphanumeric(),
        b"alpha" => c.is_ascii_alphabetic(),
        b"blank" => c == b' ' || c == b'\t',
        b"cntrl" => c.is_ascii_control(),
        b"digit" => c.is_ascii_digit(),
        b"graph" => c.is_ascii_graphic(),
        b"lower" => c.is_ascii_lowercase(),
        b"print" => c.is_ascii_graphic() || c == b' ',
        b"punct" => c.is_ascii_punctuation(),
        b"space" => is_c_space(c),
        b"upper" => c.is_ascii_uppercase(),
        b"xdigit" => c.is_ascii_hexdigit(),
        _ => return None,
    })
}

/// Matcher state shared by the recursion: only the case-folding switch.
#[derive(Clone, Copy)]
struct Matcher {
    fold: bool,
}

impl Matcher {
    fn fold(self, c: u8) -> u8 {
        if self.fold {
            c.to_ascii_lowercase()
        } else {
            c
        }
    }

    /// Match a bracket expression starting just after its `[` at `p[pi]`
    /// against `t_ch`. Returns the index just past the closing `]` and
    /// whether the class accepted the byte, or the outcome to return.
    fn class(self, p: &[u8], mut pi: usize, t_ch: u8) -> Result<(usize, bool), Outcome> {
        let mut p_ch = *p.get(pi).ok_or(Outcome::AbortAll)?;
        if p_ch == b'^' {
            p_ch = b'!';
        }
        let negated = p_ch == b'!';
        if negated {
            pi += 1;
        }
        // `prev` is the byte a following `-` would start a range from;
        // `None` after a range or a named class (rsync resets it to 0).
        let mut prev: Option<u8> = None;
        let mut matched = false;
        loop {
            let mut p_ch = *p.get(pi).ok_or(Outcome::AbortAll)?;
            let mut this: Option<u8>;
            if p_ch == b'\\' {
                pi += 1;
                p_ch = self.fold(*p.get(pi).ok_or(Outcome::AbortAll)?);
                if t_ch == p_ch {
                    matched = true;
                }
                this = Some(p_ch);
            } else if p_ch == b'-' && prev.is_some() && p.get(pi + 1).is_some_and(|&c| c != b']') {
                pi += 1;
                let mut hi = p[pi];
                if hi == b'\\' {
                    pi += 1;
                    hi = *p.get(pi).ok_or(Outcome::AbortAll)?;
                }
                let hi = self.fold(hi);
                if let Some(lo) = prev {
                    if t_ch <= hi && t_ch >= lo {
                        matched = true;
                    }
                }
                this = None;
            } else if p_ch == b'[' && p.get(pi + 1) == Some(&b':') {
                let start = pi + 2;
                let close = p[start..]
                    .iter()
                    .position(|&c| c == b']')
                    .map(|o| start + o)
                    .ok_or(Outcome::AbortAll)?;
                if close == start || p[close - 1] != b':' {
                    // No ":]": the '[' is an ordinary member of the set.
                    if t_ch == b'[' {
                        matched = true;
                    }
                    this = Some(b'[');
                } else {
                    let name = &p[start..close - 1];
                    if class_matches(name, t_ch).ok_or(Outcome::AbortAll)? {
                        matched = true;
                    }
                    pi = close;
                    this = None;
                }
            } else {
                p_ch = self.fold(p_ch);
                if t_ch == p_ch {
                    matched = true;
                }
                this = Some(p_ch);
            }
            prev = this.take();
            pi += 1;
            if p.get(pi) == Some(&b']') {
                break;
            }
        }
        Ok((pi + 1, matched != negated))
    }

    /// `dowild()`: match `p` against the whole of `text`.
    fn dowild(self, p: &[u8], text: &[u8]) -> Outcome {
        let mut pi = 0usize;
        let mut ti = 0usize;
        while pi < p.len() {
            let p_ch = p[pi];
            let t_ch = match text.get(ti) {
                Some(&c) => self.fold(c),
                None if p_ch != b'*' => return Outcome::AbortAll,
                None => 0,
            };
            match p_ch {
                b'?' => {
                    if t_ch == b'/' {
                        return Outcome::NoMatch;
                    }
                }
                b'*' => {
                    pi += 1;
                    let double = p.get(pi) == Some(&b'*');
                    while p.get(pi) == Some(&b'*') {
                        pi += 1;
                    }
                    if pi == p.len() {
                        // Trailing "**" matches everything; a trailing "*"
                        // only if no '/' is left.
                        if !double && text[ti..].contains(&b'/') {
                            return Outcome::NoMatch;
                        }
                        return Outcome::Matched;
                    }
                    while ti < text.len() {
                        match self.dowild(&p[pi..], &text[ti..]) {
                            Outcome::NoMatch => {
                                if !double && text[ti] == b'/' {
                                    return Outcome::AbortToStarStar;
                                }
                            }
                            Outcome::AbortToStarStar if double => {}
                            other => return other,
                        }
                        ti += 1;
                    }
                    return Outcome::AbortAll;
                }
                b'[' => match self.class(p, pi + 1, t_ch) {
                    Err(o) => return o,
                    Ok((next, ok)) => {
                        if !ok || t_ch == b'/' {
                            return Outcome::NoMatch;
                        }
                        pi = next;
                        ti += 1;
                        continue;
                    }
                },
                b'\\' => {
                    // Literal match with the next pattern byte; a trailing
                    // backslash matches nothing.
                    pi += 1;
                    match p.get(pi) {
                        Some(&c) if self.fold(c) == t_ch => {}
                        _ => return Outcome::NoMatch,
                    }
                }
                c => {
                    if self.fold(c) != t_ch {
                        return Outcome::NoMatch;
                    }
                }
            }
            pi += 1;
            ti += 1;
        }
        if ti < text.len() {
            Outcome::NoMatch
        } else {
            Outcome::Matched
        }
    }
}

/// Match `pattern` against the whole of `text` (`wildmatch.c: wildmatch()`).
pub fn wildmatch(pattern: &[u8], text: &[u8]) -> bool {
    Matcher { fold: false }.dowild(pattern, text) == Outcome::Matched
}

/// Case-insensitive [`wildmatch`] (`wildmatch.c: iwildmatch()`): ASCII
/// letters of both text and pattern are folded to lower case. (rsync uses
/// it for `hosts allow`/`hosts deny` names, not for filter rules.)
pub fn iwildmatch(pattern: &[u8], text: &[u8]) -> bool {
    Matcher { fold: true }.dowild(pattern, text) == Outcome::Matched
}

/// Where [`wildmatch_array`] and [`litmatch_array`] look in the text
/// (the `where` argument of the C functions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchAt {
    /// Match the whole text (`where == 0`).
    Whole,
    /// Match only the trailing `n` slash-separated components (`where == n
    /// > 0`); a text with fewer components never matches.
    TrailingComponents(u32),
    /// Match at the start of the text or just after any `/` (`where < 0`).
    AnySlash,
}

/// Index where the trailing `count` components of `text` start
/// (`wildmatch.c: trailing_N_elements()`), or `None` if there are fewer.
fn trailing_components(text: &[u8], count: u32) -> Option<usize> {
    let mut count = count;
    for i in (0..text.len()).rev() {
        if text[i] == b'/' {
            count = count.saturating_sub(1);
            if count == 0 {
                return Some(i + 1);
            }
        }
    }
    (count == 1).then_some(0)
}

/// `wildmatch.c: wildmatch_array()` on an already-joined text: match
/// `pattern` against the part of `text` selected by `at`.
pub fn wildmatch_array(pattern: &[u8], text: &[u8], at: MatchAt) -> bool {
    let m = Matcher { fold: false };
    let text = match at {
        MatchAt::TrailingComponents(n) => match trailing_components(text, n) {
            Some(i) => &text[i..],
            None => return false,
        },
        _ => text,
    };
    let mut outcome = m.dowild(pattern, text);
    if outcome != Outcome::Matched && at == MatchAt::AnySlash && outcome != Outcome::AbortAll {
        let mut i = 0;
        loop {
            let Some(&c) = text.get(i) else { return false };
            i += 1;
            if c == b'/' {
                outcome = m.dowild(pattern, &text[i..]);
                if outcome != Outcome::NoMatch && outcome != Outcome::AbortToStarStar {
                    break;
                }
            }
        }
    }
    outcome == Outcome::Matched
}

/// `wildmatch.c: litmatch_array()`: compare `literal` byte for byte with the
/// part of `text` selected by `at` ([`MatchAt::AnySlash`] behaves like
/// [`MatchAt::Whole`], as in rsync).
pub fn litmatch_array(literal: &[u8], text: &[u8], at: MatchAt) -> bool {
    let text = match at {
        MatchAt::TrailingComponents(n) => match trailing_components(text, n) {
            Some(i) => &text[i..],
            None => return false,
        },
        _ => text,
    };
    literal == text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from rsync's `wildtest.txt` (expected result, text, pattern).
    const WILDTEST: &[(bool, &[u8], &[u8])] = &[
        (true, b"foo", b"foo"),
        (false, b"foo", b"bar"),
        (true, b"", b""),
        (true, b"foo", b"???"),
        (false, b"foo", b"??"),
        (true, b"foo", b"*"),
        (true, b"foo", b"f*"),
        (false, b"foo", b"*f"),
        (true, b"foo", b"*foo*"),
        (true, b"foobar", b"*ob*a*r*"),
        (true, b"aaaaaaabababab", b"*ab"),
        (true, b"foo*", b"foo\\*"),
        (false, b"foobar", b"foo\\*bar"),
        (true, b"f\\oo", b"f\\\\oo"),
        (true, b"ball", b"*[al]?"),
        (false, b"ten", b"[ten]"),
        (true, b"ten", b"**[!te]"),
        (false, b"ten", b"**[!ten]"),
        (true, b"ten", b"t[a-g]n"),
        (false, b"ten", b"t[!a-g]n"),
        (true, b"ton", b"t[!a-g]n"),
        (true, b"ton", b"t[^a-g]n"),
        (true, b"a]b", b"a[]]b"),
        (true, b"a-b", b"a[]-]b"),
        (true, b"a]b", b"a[]-]b"),
        (false, b"aab", b"a[]-]b"),
        (true, b"aab", b"a[]a-]b"),
        (true, b"]", b"]"),
        (false, b"foo/baz/bar", b"foo*bar"),
        (true, b"foo/baz/bar", b"foo**bar"),
        (false, b"foo/bar", b"foo?bar"),
        (false, b"foo/bar", b"foo[/]bar"),
        (false, b"foo/bar", b"f[^eiu][^eiu][^eiu][^eiu][^eiu]r"),
        (true, b"foo-bar", b"f[^eiu][^eiu][^eiu][^eiu][^eiu]r"),
        (false, b"foo", b"**/foo"),
        (true, b"/foo", b"**/foo"),
        (true, b"bar/baz/foo", b"**/foo"),
        (false, b"bar/baz/foo", b"*/foo"),
        (false, b"foo/bar/baz", b"**/bar*"),
        (true, b"deep/foo/bar/baz", b"**/bar/*"),
        (false, b"deep/foo/bar/baz/", b"**/bar/*"),
        (true, b"deep/foo/bar/baz/", b"**/bar/**"),
        (false, b"deep/foo/bar", b"**/bar/*"),
        (true, b"deep/foo/bar/", b"**/bar/**"),
        (true, b"foo/bar/baz", b"**/bar**"),
        (true, b"foo/bar/baz/x", b"*/bar/**"),
        (false, b"deep/foo/bar/baz/x", b"*/bar/**"),
        (true, b"deep/foo/bar/baz/x", b"**/bar/*/*"),
        (false, b"acrt", b"a[c-c]st"),
        (true, b"acrt", b"a[c-c]rt"),
        (false, b"]", b"[!]-]"),
        (true, b"a", b"[!]-]"),
        (false, b"", b"\\"),
        (false, b"\\", b"\\"),
        (false, b"/\\", b"*/\\"),
        (true, b"/\\", b"*/\\\\"),
        (true, b"foo", b"foo"),
        (true, b"@foo", b"@foo"),
        (false, b"foo", b"@foo"),
        (true, b"[ab]", b"\\[ab]"),
        (true, b"[ab]", b"[[]ab]"),
        (true, b"[ab]", b"[[:]ab]"),
        (false, b"[ab]", b"[[::]ab]"),
        (true, b"[ab]", b"[[:digit]ab]"),
        (true, b"[ab]", b"[\\[:]ab]"),
        (true, b"?a?b", b"\\??\\?b"),
        (true, b"abc", b"\\a\\b\\c"),
        (false, b"foo", b""),
        (true, b"foo/bar/baz/to", b"**/t[o]"),
        (true, b"a1B", b"[[:alpha:]][[:digit:]][[:upper:]]"),
        (false, b"a", b"[[:digit:][:upper:][:space:]]"),
        (true, b"A", b"[[:digit:][:upper:][:space:]]"),
        (true, b"1", b"[[:digit:][:upper:][:space:]]"),
        (false, b"1", b"[[:digit:][:upper:][:spaci:]]"),
        (true, b" ", b"[[:digit:][:upper:][:space:]]"),
        (false, b".", b"[[:digit:][:upper:][:space:]]"),
        (true, b".", b"[[:digit:][:punct:][:space:]]"),
        (true, b"5", b"[[:xdigit:]]"),
        (true, b"f", b"[[:xdigit:]]"),
        (true, b"D", b"[[:xdigit:]]"),
        (true, b"_", b"[[:alnum:][:alpha:][:blank:][:cntrl:][:digit:][:graph:][:lower:][:print:][:punct:][:space:][:upper:][:xdigit:]]"),
        (true, b"\x7f", b"[^[:alnum:][:alpha:][:blank:][:digit:][:graph:][:lower:][:print:][:punct:][:space:][:upper:][:xdigit:]]"),
        (true, b".", b"[^[:alnum:][:alpha:][:blank:][:cntrl:][:digit:][:lower:][:space:][:upper:][:xdigit:]]"),
        (true, b"5", b"[a-c[:digit:]x-z]"),
        (true, b"b", b"[a-c[:digit:]x-z]"),
        (true, b"y", b"[a-c[:digit:]x-z]"),
        (false, b"q", b"[a-c[:digit:]x-z]"),
        (true, b"]", b"[\\\\-^]"),
        (false, b"[", b"[\\\\-^]"),
        (true, b"-", b"[\\-_]"),
        (true, b"]", b"[\\]]"),
        (false, b"\\]", b"[\\]]"),
        (false, b"\\", b"[\\]]"),
        (false, b"ab", b"a[]b"),
        (false, b"a[]b", b"a[]b"),
        (false, b"ab[", b"ab["),
        (false, b"ab", b"[!"),
        (false, b"ab", b"[-"),
        (true, b"-", b"[-]"),
        (false, b"-", b"[a-"),
        (false, b"-", b"[!a-"),
        (true, b"-", b"[--A]"),
        (true, b"5", b"[--A]"),
        (true, b" ", b"[ --]"),
        (true, b"$", b"[ --]"),
        (true, b"-", b"[ --]"),
        (false, b"0", b"[ --]"),
        (true, b"-", b"[---]"),
        (true, b"-", b"[------]"),
        (false, b"j", b"[a-e-n]"),
        (true, b"-", b"[a-e-n]"),
        (true, b"a", b"[!------]"),
        (false, b"[", b"[]-a]"),
        (true, b"^", b"[]-a]"),
        (false, b"^", b"[!]-a]"),
        (true, b"[", b"[!]-a]"),
        (true, b"^", b"[a^bc]"),
        (true, b"-b]", b"[a-]b]"),
        (false, b"\\", b"[\\]"),
        (true, b"\\", b"[\\\\]"),
        (false, b"\\", b"[!\\\\]"),
        (true, b"G", b"[A-\\\\]"),
        (false, b"aaabbb", b"b*a"),
        (false, b"aabcaa", b"*ba*"),
        (true, b",", b"[,]"),
        (true, b",", b"[\\\\,]"),
        (true, b"\\", b"[\\\\,]"),
        (true, b"-", b"[,-.]"),
        (false, b"+", b"[,-.]"),
        (false, b"-.]", b"[,-.]"),
        (true, b"2", b"[\\1-\\3]"),
        (true, b"3", b"[\\1-\\3]"),
        (false, b"4", b"[\\1-\\3]"),
        (true, b"\\", b"[[-\\]]"),
        (true, b"[", b"[[-\\]]"),
        (true, b"]", b"[[-\\]]"),
        (false, b"-", b"[[-\\]]"),
        (true, b"-adobe-courier-bold-o-normal--12-120-75-75-m-70-iso8859-1", b"-*-*-*-*-*-*-12-*-*-*-m-*-*-*"),
        (false, b"-adobe-courier-bold-o-normal--12-120-75-75-X-70-iso8859-1", b"-*-*-*-*-*-*-12-*-*-*-m-*-*-*"),
        (false, b"-adobe-courier-bold-o-normal--12-120-75-75-/-70-iso8859-1", b"-*-*-*-*-*-*-12-*-*-*-m-*-*-*"),
        (true, b"/adobe/courier/bold/o/normal//12/120/75/75/m/70/iso8859/1", b"/*/*/*/*/*/*/12/*/*/*/m/*/*/*"),
        (false, b"/adobe/courier/bold/o/normal//12/120/75/75/X/70/iso8859/1", b"/*/*/*/*/*/*/12/*/*/*/m/*/*/*"),
        (true, b"abcd/abcdefg/abcdefghijk/abcdefghijklmnop.txt", b"**/*a*b*g*n*t"),
        (false, b"abcd/abcdefg/abcdefghijk/abcdefghijklmnop.txtz", b"**/*a*b*g*n*t"),
    ];

    #[test]
    fn wildtest_table() {
        let mut bad = Vec::new();
        for &(want, text, pat) in WILDTEST {
            if wildmatch(pat, text) != want {
                bad.push(format!(
                    "pattern {:?} text {:?}: want {want}",
                    String::from_utf8_lossy(pat),
                    String::from_utf8_lossy(text)
                ));
            }
        }
        assert!(
            bad.is_empty(),
            "{} failures:\n{}",
            bad.len(),
            bad.join("\n")
        );
    }

    #[test]
    fn case_insensitive() {
        assert!(iwildmatch(b"*.EXAMPLE.org", b"host.example.ORG"));
        assert!(iwildmatch(b"[A-C]x", b"bX"));
        assert!(!wildmatch(b"*.EXAMPLE.org", b"host.example.ORG"));
        assert!(!iwildmatch(b"a?c", b"A/C"));
    }

    #[test]
    fn array_forms() {
        use MatchAt::*;
        // Trailing components.
        assert!(wildmatch_array(b"b/*.c", b"a/b/x.c", TrailingComponents(2)));
        assert!(!wildmatch_array(b"b/*.c", b"a/b/x.c", Whole));
        assert!(!wildmatch_array(
            b"a/b/*.c",
            b"b/x.c",
            TrailingComponents(3)
        ));
        assert!(wildmatch_array(b"b/x.c", b"b/x.c", TrailingComponents(2)));
        assert!(litmatch_array(b"b/x.c", b"a/b/x.c", TrailingComponents(2)));
        assert!(!litmatch_array(
            b"b/x.c",
            b"a/bb/x.c",
            TrailingComponents(2)
        ));
        assert!(!litmatch_array(b"a/b/x.c", b"b/x.c", TrailingComponents(3)));
        // At the start or after any slash.
        assert!(wildmatch_array(b"b/**", b"a/b/c/d", AnySlash));
        assert!(wildmatch_array(b"b/**", b"b/c", AnySlash));
        assert!(!wildmatch_array(b"b/**", b"ab/c", AnySlash));
        assert!(wildmatch_array(b"x/**/y", b"q/x/r/s/y", AnySlash));
        assert!(!wildmatch_array(b"x/**/y", b"q/x/r/s/yz", AnySlash));
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let text = vec![b'a'; 4000];
        let mut pat = Vec::new();
        for _ in 0..200 {
            pat.extend_from_slice(b"*a");
        }
        pat.push(b'b');
        let start = std::time::Instant::now();
        assert!(!wildmatch(&pat, &text));
        let mut pat2 = Vec::new();
        for _ in 0..200 {
            pat2.extend_from_slice(b"**a");
        }
        pat2.push(b'b');
        assert!(!wildmatch(&pat2, &text));
        let mut slashy = Vec::new();
        for _ in 0..500 {
            slashy.extend_from_slice(b"aaaa/");
        }
        let mut pat3 = Vec::new();
        for _ in 0..100 {
            pat3.extend_from_slice(b"**/*a");
        }
        pat3.extend_from_slice(b"/b");
        assert!(!wildmatch(&pat3, &slashy));
        assert!(!wildmatch_array(&pat3, &slashy, MatchAt::AnySlash));
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }
}
