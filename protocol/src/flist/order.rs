//! File-list sort order: the comparator both sides use to sort a list and
//! therefore the meaning of every file index.
//!
//! Mirrors `flist.c: f_name_cmp()`. For protocol >= 29 a directory's name
//! compares as if it ended in `/`, non-directories sort before
//! subdirectories at each level and the transfer root `.` comes first. Below
//! protocol 29 the full names compare as plain bytes.

use std::cmp::Ordering;

/// Whether a comparison segment is an "item" (last component of a
/// non-directory) or a "path" (a directory component, compared with an
/// implied trailing `/`). `flist.c: enum fnc_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Item,
    Path,
}

/// Where a side is in its name. `flist.c: enum fnc_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Dir,
    Slash,
    Base,
    Trailing,
}

/// One side of the comparison: the name split into dirname and basename,
/// plus the cursor of the state machine.
struct Side<'a> {
    base: &'a [u8],
    is_dir: bool,
    t_path: Kind,
    cur: &'a [u8],
    state: State,
    kind: Kind,
}

impl<'a> Side<'a> {
    fn new(name: &'a [u8], is_dir: bool, t_path: Kind) -> Self {
        let (dir, base) = match name.iter().rposition(|&c| c == b'/') {
            Some(p) => (Some(&name[..p]), &name[p + 1..]),
            None => (None, name),
        };
        let mut s = Side {
            base,
            is_dir,
            t_path,
            cur: b"",
            state: State::Dir,
            kind: t_path,
        };
        match dir {
            Some(d) => {
                s.cur = d;
                s.state = State::Dir;
                s.kind = t_path;
            }
            None => s.enter_base(),
        }
        s
    }

    /// Start on the basename (a directory named `.` compares as an empty
    /// item so that the transfer root sorts first).
    fn enter_base(&mut self) {
        self.kind = if self.is_dir { self.t_path } else { Kind::Item };
        if self.kind == Kind::Path && self.base == b"." {
            self.kind = Kind::Item;
            self.state = State::Trailing;
            self.cur = b"";
        } else {
            self.state = State::Base;
            self.cur = self.base;
        }
    }

    fn head(&self) -> u8 {
        self.cur.first().copied().unwrap_or(0)
    }
}

fn by_kind(k1: Kind) -> Ordering {
    if k1 == Kind::Path {
        Ordering::Greater
    } else {
        Ordering::Less
    }
}

/// Compare two full names (relative to the transfer root) the way the
/// given protocol sorts them. Mirrors `flist.c: f_name_cmp()` (protocol >= 29
/// uses the path/item rules, below 29 plain bytes).
///
/// Names are assumed not to contain NUL bytes (file names cannot).
pub fn f_name_cmp(a: &[u8], a_is_dir: bool, b: &[u8], b_is_dir: bool, protocol: u8) -> Ordering {
    let t_path = if protocol >= 29 {
        Kind::Path
    } else {
        Kind::Item
    };
    let mut s1 = Side::new(a, a_is_dir, t_path);
    let mut s2 = Side::new(b, b_is_dir, t_path);

    if s1.kind != s2.kind {
        return by_kind(s1.kind);
    }

    loop {
        if s1.cur.is_empty() {
            match s1.state {
                State::Dir => {
                    s1.state = State::Slash;
                    s1.cur = b"/";
                }
                State::Slash => s1.enter_base(),
                State::Base => {
                    s1.state = State::Trailing;
                    if s1.kind == Kind::Path {
                        s1.cur = b"/";
                    } else {
                        s1.kind = Kind::Item;
                    }
                }
                State::Trailing => s1.kind = Kind::Item,
            }
            if !s2.cur.is_empty() && s1.kind != s2.kind {
                return by_kind(s1.kind);
            }
        }
        if s2.cur.is_empty() {
            match s2.state {
                State::Dir => {
                    s2.state = State::Slash;
                    s2.cur = b"/";
                }
                State::Slash => s2.enter_base(),
                State::Base if s2.kind == Kind::Path => {
                    s2.state = State::Trailing;
                    s2.cur = b"/";
                }
                State::Base | State::Trailing => {
                    s2.state = State::Trailing;
                    if s1.cur.is_empty() {
                        return Ordering::Equal;
                    }
                    s2.kind = Kind::Item;
                }
            }
            if s1.kind != s2.kind {
                return by_kind(s1.kind);
            }
        }
        let (c1, c2) = (s1.head(), s2.head());
        if c1 != c2 {
            return c1.cmp(&c2);
        }
        if s1.cur.is_empty() && s2.cur.is_empty() {
            // Both exhausted at once (only reachable for names such as
            // "a/."); C would read past the terminators here.
            return Ordering::Equal;
        }
        s1.cur = s1.cur.get(1..).unwrap_or(b"");
        s2.cur = s2.cur.get(1..).unwrap_or(b"");
    }
}

/// Order of two children of the same directory for protocol >= 29: all
/// non-directories first, by bytes; then directories, compared as
/// `name + "/"`. Agrees with [`f_name_cmp`] on siblings.
pub fn child_cmp(a: &[u8], a_is_dir: bool, b: &[u8], b_is_dir: bool) -> Ordering {
    match (a_is_dir, b_is_dir) {
        (false, true) => Ordering::Less,
        (true, false) => Ordering::Greater,
        (false, false) => a.cmp(b),
        (true, true) => a.iter().chain(b"/").cmp(b.iter().chain(b"/")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sort key described in the notes (§8.6): components, path
    /// components with an implied `/`, items before paths at the first
    /// difference, `.` first.
    fn model_cmp(a: &[u8], ad: bool, b: &[u8], bd: bool) -> Ordering {
        fn key(n: &[u8], d: bool) -> Vec<(u8, Vec<u8>)> {
            if n == b"." && d {
                return vec![];
            }
            let parts: Vec<&[u8]> = n.split(|&c| c == b'/').collect();
            let last = parts.len() - 1;
            parts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if i < last || d {
                        let mut v = p.to_vec();
                        v.push(b'/');
                        (1u8, v)
                    } else {
                        (0u8, p.to_vec())
                    }
                })
                .collect()
        }
        let (ka, kb) = (key(a, ad), key(b, bd));
        for (x, y) in ka.iter().zip(kb.iter()) {
            if x == y {
                continue;
            }
            if x.0 != y.0 {
                return x.0.cmp(&y.0); // item (0) before path (1)
            }
            return x.1.cmp(&y.1);
        }
        ka.len().cmp(&kb.len())
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_name(r: &mut Rng) -> Vec<u8> {
        let alphabet = b"ab.-/+z\xc3";
        let comps = 1 + r.below(3);
        let mut out = Vec::new();
        for i in 0..comps {
            if i > 0 {
                out.push(b'/');
            }
            let len = 1 + r.below(3);
            for _ in 0..len {
                let mut c = alphabet[r.below(alphabet.len() as u64) as usize];
                if c == b'/' {
                    c = b'a';
                }
                out.push(c);
            }
        }
        if out.split(|&c| c == b'/').any(|p| p == b"." || p == b"..") {
            return random_name(r);
        }
        out
    }

    #[test]
    fn observed_order_from_notes() {
        let d = "D".repeat(100);
        let e = "E".repeat(100);
        let dd = d.clone();
        let de = format!("{d}/{e}");
        let def = format!("{d}/{e}/f");
        let expected: Vec<(&str, bool)> = vec![
            (".", true),
            ("big", false),
            ("empty", false),
            (&dd, true),
            (&de, true),
            (&def, false),
            ("a", true),
            ("a/cdev", false),
            ("a/f1", false),
            ("a/f1hard", false),
            ("a/fifo", false),
            ("a/link1", false),
            ("a/b", true),
            ("a/b/bb", false),
            ("x.y", true),
            ("x.y/t", false),
            ("z", true),
            ("z/zz", false),
        ];
        // Shuffle deterministically, sort, compare.
        let mut v = expected.clone();
        let mut r = Rng(0x9E3779B97F4A7C15);
        for i in (1..v.len()).rev() {
            let j = r.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
        v.sort_by(|x, y| f_name_cmp(x.0.as_bytes(), x.1, y.0.as_bytes(), y.1, 31));
        assert_eq!(v, expected);
        for w in expected.windows(2) {
            assert_eq!(
                f_name_cmp(w[0].0.as_bytes(), w[0].1, w[1].0.as_bytes(), w[1].1, 29),
                Ordering::Less,
                "{:?} < {:?}",
                w[0],
                w[1]
            );
        }
    }

    #[test]
    fn specific_pairs() {
        use Ordering::*;
        let c = |a: &str, ad, b: &str, bd, p| f_name_cmp(a.as_bytes(), ad, b.as_bytes(), bd, p);
        // dirs compare with an implied '/': "a.b/" < "a/"
        assert_eq!(c("a.b", true, "a", true, 31), Less);
        // but as files "a" < "a.b"
        assert_eq!(c("a", false, "a.b", false, 31), Less);
        // files before dirs at the same level
        assert_eq!(c("zzz", false, "a", true, 31), Less);
        assert_eq!(c("a/zzz", false, "a/b", true, 31), Less);
        // a dir before its contents
        assert_eq!(c("a", true, "a/x", false, 31), Less);
        assert_eq!(c("a/x", false, "a", true, 31), Greater);
        // "." first, even before "+x" / "-x"
        assert_eq!(c(".", true, "+x", false, 31), Less);
        assert_eq!(c(".", true, "-", true, 31), Less);
        assert_eq!(c(".", true, ".", true, 31), Equal);
        assert_eq!(c("a/b", false, "a/b", false, 31), Equal);
        assert_eq!(c("a/b", true, "a/b", true, 31), Equal);
        // proto < 29: plain bytes, "." not special
        assert_eq!(c(".", true, "+x", false, 28), Greater);
        assert_eq!(c("a.b", true, "a", true, 28), Greater);
        assert_eq!(c("zzz", false, "a", true, 28), Greater);
        assert_eq!(c("a/x", false, "a.b", false, 27), Greater);
        assert_eq!(c("a", true, "a/x", false, 27), Less);
        // UTF-8 / high bytes compare unsigned
        assert_eq!(c("\u{e9}", false, "z", false, 31), Greater);
    }

    #[test]
    fn matches_component_model_and_plain_bytes() {
        let mut r = Rng(12345);
        for _ in 0..20000 {
            let a = random_name(&mut r);
            let b = random_name(&mut r);
            let ad = r.below(2) == 0;
            let bd = r.below(2) == 0;
            let got = f_name_cmp(&a, ad, &b, bd, 31);
            let want = model_cmp(&a, ad, &b, bd);
            assert_eq!(
                got,
                want,
                "{:?}({ad}) vs {:?}({bd})",
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b)
            );
            assert_eq!(f_name_cmp(&b, bd, &a, ad, 31), want.reverse());
            assert_eq!(f_name_cmp(&a, ad, &b, bd, 28), a.cmp(&b));
        }
    }

    #[test]
    fn child_cmp_agrees_with_f_name_cmp() {
        let mut r = Rng(777);
        let parents: [&[u8]; 3] = [b"", b"p", b"p.q/r"];
        for _ in 0..20000 {
            let mut a = random_name(&mut r);
            a.retain(|&c| c != b'/');
            let mut b = random_name(&mut r);
            b.retain(|&c| c != b'/');
            let ad = r.below(2) == 0;
            let bd = r.below(2) == 0;
            let want = child_cmp(&a, ad, &b, bd);
            for p in parents {
                let join = |n: &[u8]| {
                    if p.is_empty() {
                        n.to_vec()
                    } else {
                        [p, b"/", n].concat()
                    }
                };
                if p.is_empty() && ((a == b"." && ad) || (b == b"." && bd)) {
                    continue;
                }
                assert_eq!(f_name_cmp(&join(&a), ad, &join(&b), bd, 30), want);
            }
        }
    }
}
