//! Building the file list of a pull from the snapshot.
//!
//! Mirrors `flist.c: send_file_list()` (argument forms, trailing slashes,
//! `-R` and implied directories, `-r`/`-d`), `util1.c: glob_expand_module()`
//! / `glob_expand()` / `sanitize_path()` (argument cleaning and wildcard
//! expansion) and `exclude.c` filter application — but every lookup goes to
//! the snapshot: no stat() and no readdir() on the module tree.

use std::borrow::Cow;

use filelist_cache::{EntryRef, Snapshot, WalkControl};
use protocol::args::ServerOptions;
use protocol::filter::{FilterDecision, FilterList};
use protocol::flist::order::f_name_cmp;
use protocol::mux::MsgCode;
use protocol::wildmatch::wildmatch;

use super::files::safe_name;

/// IOERR_GENERAL
pub const IOERR_GENERAL: i32 = 1;
/// IOERR_VANISHED
pub const IOERR_VANISHED: i32 = 2;

/// One entry of the list being sent.
#[derive(Debug, Clone, Copy)]
pub struct ListItem {
    /// Snapshot entry index.
    pub entry: u32,
    name_off: u32,
    name_len: u32,
    /// Module-relative path of the transfer root this item belongs to
    /// (index into `FileList::dirs`), for messages and opens.
    pub root: u32,
    /// FLAG_TOP_DIR.
    pub top_dir: bool,
    /// Directory sent without its contents (XMIT_NO_CONTENT_DIR).
    pub no_content: bool,
    /// The name is not stored: `name_off`/`name_len` give the parent
    /// directory's wire name and the item's wire name is that joined with the
    /// snapshot entry's basename (incremental sub-list non-directories).
    derived: bool,
}

/// The sorted list, with names stored in one buffer (except derived names,
/// which are the parent's stored name plus the snapshot entry's basename).
#[derive(Debug, Default)]
pub struct FileList {
    /// Items in sorted order; the ndx of an item is its position.
    pub items: Vec<ListItem>,
    names: Vec<u8>,
    /// Transfer-root directories (module-relative), referenced by items.
    pub roots: Vec<Vec<u8>>,
    /// When the items were built out of order (several arguments,
    /// `--files-from`): for each position in build order, the sorted index
    /// of that item. Stock's sender writes entries in the order it meets
    /// them and both sides sort afterwards (`flist_sort_and_clean()`); a
    /// client checking the names it asked for (`--files-from` without
    /// `--trust-sender`) depends on that order.
    pub wire_order: Option<Vec<u32>>,
}

impl FileList {
    /// The wire name of `it`, whose snapshot entry is `entry`
    /// (`entry.index() == it.entry`, from the snapshot the list was built from).
    pub fn name<'s>(&'s self, it: &ListItem, entry: &EntryRef<'_>) -> Cow<'s, [u8]> {
        let stored = &self.names[it.name_off as usize..(it.name_off + it.name_len) as usize];
        if !it.derived {
            return Cow::Borrowed(stored);
        }
        let base = entry.name();
        if stored == b"." {
            return Cow::Owned(base.to_vec());
        }
        let mut n = Vec::with_capacity(stored.len() + 1 + base.len());
        n.extend_from_slice(stored);
        n.push(b'/');
        n.extend_from_slice(base);
        Cow::Owned(n)
    }

    /// The wire name of `it`, looking its entry up in `snap` (the snapshot
    /// the list was built from).
    pub fn name_in<'s>(&'s self, snap: &Snapshot, it: &ListItem) -> Cow<'s, [u8]> {
        match snap.entry(it.entry) {
            Some(e) => self.name(it, &e),
            // Cannot happen for a list built from `snap`; derived names need the entry.
            None => Cow::Borrowed(&self.names[it.name_off as usize..(it.name_off + it.name_len) as usize]),
        }
    }

    /// Module-relative path of an item.
    pub fn module_path(&self, snap: &Snapshot, it: &ListItem) -> Vec<u8> {
        join(&self.roots[it.root as usize], &self.name_in(snap, it))
    }

    /// Approximate memory held.
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<FileList>()
            + self.items.len() * std::mem::size_of::<ListItem>()
            + self.names.len()
            + self.roots.iter().map(|r| r.len() + 24).sum::<usize>()
    }

    fn push(&mut self, entry: u32, name: &[u8], root: u32, top_dir: bool, no_content: bool) {
        let name_off = self.names.len() as u32;
        self.names.extend_from_slice(name);
        self.items.push(ListItem { entry, name_off, name_len: name.len() as u32, root, top_dir, no_content, derived: false });
    }

    /// An item whose wire name is `<name at off..off+len>/<entry basename>`.
    fn push_derived(&mut self, entry: u32, name_off: u32, name_len: u32, root: u32) {
        self.items.push(ListItem { entry, name_off, name_len, root, top_dir: false, no_content: false, derived: true });
    }

    fn root_index(&mut self, dir: &[u8]) -> u32 {
        if let Some(i) = self.roots.iter().position(|r| r.as_slice() == dir) {
            return i as u32;
        }
        self.roots.push(dir.to_vec());
        (self.roots.len() - 1) as u32
    }
}

/// Join two relative paths, treating "" and "." as empty.
pub fn join(a: &[u8], b: &[u8]) -> Vec<u8> {
    let a = if a == b"." { &b""[..] } else { a };
    let b = if b == b"." { &b""[..] } else { b };
    if a.is_empty() {
        return b.to_vec();
    }
    if b.is_empty() {
        return a.to_vec();
    }
    let mut v = Vec::with_capacity(a.len() + 1 + b.len());
    v.extend_from_slice(a);
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

/// `util1.c: full_fname()` for a daemon module: `"<dir>/<name>" (in mod)`.
pub fn full_fname(transfer_dir: &[u8], name: &[u8], module: &str) -> String {
    let mut s = String::from("\"");
    if !transfer_dir.is_empty() && transfer_dir != b"." {
        s.push('/');
        s.push_str(&safe_name(transfer_dir));
        s.push('/');
    }
    s.push_str(&safe_name(name));
    s.push_str(&format!("\" (in {module})"));
    s
}

/// `util1.c: sanitize_path(dest, p, "", 0, flags)`: drop leading and
/// repeated slashes, drop `.` components (unless `keep_dot_dirs`), collapse
/// `..` without ever climbing above the root, keep a trailing slash, and
/// turn an empty result into `.`.
pub fn sanitize_path(p: &[u8], keep_dot_dirs: bool) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(p.len());
    let mut i = 0;
    if !keep_dot_dirs {
        while p.len() >= i + 2 && p[i] == b'.' && p[i + 1] == b'/' {
            i += 2;
        }
    }
    while i < p.len() {
        if p[i] == b'/' {
            i += 1;
            continue;
        }
        if !keep_dot_dirs && p[i] == b'.' && (i + 1 == p.len() || p[i + 1] == b'/') {
            i += 1;
            continue;
        }
        if p[i] == b'.' && i + 1 < p.len() && p[i + 1] == b'.' && (i + 2 == p.len() || p[i + 2] == b'/') {
            i += 2;
            if !out.is_empty() {
                out.pop(); // the slash
                while let Some(&c) = out.last() {
                    if c == b'/' {
                        break;
                    }
                    out.pop();
                }
            }
            continue;
        }
        while i < p.len() {
            let c = p[i];
            out.push(c);
            i += 1;
            if c == b'/' {
                break;
            }
        }
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// `clean_fname()` as used for `-R` names: collapse slashes, drop `.`
/// components, optionally keep a trailing slash.
fn clean_fname(p: &[u8], keep_trailing_slash: bool) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        if c.is_empty() || c == b"." {
            continue;
        }
        parts.push(c);
    }
    let mut v = parts.join(&b'/');
    if keep_trailing_slash && p.ends_with(b"/") && !v.is_empty() {
        v.push(b'/');
    }
    if v.is_empty() && p.starts_with(b"/") {
        v.push(b'/');
    }
    v
}

/// Inputs of a list build.
#[derive(Clone, Copy)]
pub struct BuildCtx<'a> {
    /// Building the first list of an incremental-recursion session: the
    /// arguments themselves are top directories with content to follow.
    pub inc_first: bool,
    /// The pinned snapshot.
    pub snap: &'a Snapshot,
    /// Module name (for messages).
    pub module: &'a str,
    /// Client options.
    pub opts: &'a ServerOptions,
    /// The client's rules.
    pub client_filter: &'a FilterList,
    /// The module's rules.
    pub daemon_filter: &'a FilterList,
    /// Negotiated protocol.
    pub protocol: u8,
    /// ACCESS HOOK (module uid/gid, `access::identity`): entries for which
    /// this returns false do not exist for the session, by every route
    /// (direct path, glob, --files-from, recursion, implied dirs).
    pub visible: &'a dyn Fn(EntryRef<'_>) -> bool,
    /// `-C`: per-directory `.cvsignore` rules (the `:C` dir-merge rule
    /// stock's sender adds in `exclude.c: recv_filter_list()`).
    pub cvs: Option<&'a CvsIgnore<'a>>,
    /// How symlinks in an argument's directory part resolve (`use chroot`).
    pub confinement: super::modopts::Confinement,
}

/// Reads and caches each directory's `.cvsignore` (word-split exclude
/// patterns that apply to that directory's entries only, as the `C`
/// modifier implies `n`, `w` and `-`). The file is module content, opened
/// through the same confined path as file data.
pub struct CvsIgnore<'a> {
    /// Module root for opening `.cvsignore` files.
    pub root: &'a super::files::ModuleRoot,
    cache: std::cell::RefCell<std::collections::HashMap<u32, Option<std::rc::Rc<FilterList>>>>,
}

impl<'a> CvsIgnore<'a> {
    /// Most bytes read from one `.cvsignore`.
    pub const MAX_LEN: u64 = 64 * 1024;

    /// A reader for one session.
    pub fn new(root: &'a super::files::ModuleRoot) -> Self {
        CvsIgnore { root, cache: Default::default() }
    }

    fn rules(&self, dir: EntryRef<'_>, dir_mpath: &[u8]) -> Option<std::rc::Rc<FilterList>> {
        if let Some(r) = self.cache.borrow().get(&dir.index()) {
            return r.clone();
        }
        let mut loaded = None;
        if dir.child(b".cvsignore").is_some_and(|e| e.is_file()) {
            let path = join(dir_mpath, b".cvsignore");
            if let Ok(file) = self.root.open_file(&path) {
                use std::io::Read;
                let mut text = Vec::new();
                if file.take(Self::MAX_LEN).read_to_end(&mut text).is_ok() {
                    let rules: Vec<Vec<u8>> = text
                        .split(|b| b.is_ascii_whitespace())
                        .filter(|w| !w.is_empty())
                        .map(|w| [&b"- "[..], w].concat())
                        .collect();
                    if let Ok(l) = FilterList::from_client_rules(&rules, 31) {
                        loaded = Some(std::rc::Rc::new(l));
                    }
                }
            }
        }
        self.cache.borrow_mut().insert(dir.index(), loaded.clone());
        loaded
    }

    /// Whether `base` (an entry of directory `dir`) is excluded by `dir`'s
    /// `.cvsignore`.
    pub fn excluded(&self, dir: EntryRef<'_>, dir_mpath: &[u8], base: &[u8], is_dir: bool) -> bool {
        match self.rules(dir, dir_mpath) {
            Some(l) => l.check(base, base, is_dir) == FilterDecision::Exclude,
            None => false,
        }
    }
}

fn parent_of(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => &p[..i],
        None => b"",
    }
}

fn base_of(p: &[u8]) -> &[u8] {
    match p.iter().rposition(|&b| b == b'/') {
        Some(i) => &p[i + 1..],
        None => p,
    }
}

/// Result of a list build.
#[derive(Debug, Default)]
pub struct BuildOutcome {
    /// The sorted list.
    pub list: FileList,
    /// Messages to send before the list (e.g. link_stat failures).
    pub messages: Vec<(MsgCode, String)>,
    /// IOERR_* bits.
    pub io_error: i32,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum NameType {
    Normal,
    DotDir,
    SlashEnding,
}

/// A whole (non-incremental) list built one argument at a time, as
/// `--files-from=-` names arrive: `outcome.list.items` grows in build order
/// (the order stock's sender writes entries in) until
/// [`BuildCtx::build_finish`] sorts it.
#[derive(Default)]
pub struct FlatBuilder<'a> {
    /// What was built so far (unsorted).
    pub outcome: BuildOutcome,
    implied_seen: std::collections::HashSet<Vec<u8>>,
    memo: BuildMemo<'a>,
}

/// What checking an argument directory gave: the real directory it resolved
/// to, or the error text.
type DirCheck = Result<Vec<u8>, &'static str>;

/// Lookups one [`BuildCtx::build`] reuses from one argument to the next
/// (consecutive `--files-from` names mostly share their directory).
#[derive(Default)]
struct BuildMemo<'a> {
    /// The last parent directory looked up for an argument's entry
    /// (module-relative) and what the snapshot holds there.
    parent: Option<(Vec<u8>, Option<EntryRef<'a>>)>,
    /// The last argument directory checked as `change_dir()` does, and the
    /// real directory it resolved to or the error it gave.
    dir_check: Option<(Vec<u8>, DirCheck)>,
    /// Transfer-root directory -> index in `FileList::roots`.
    roots: std::collections::HashMap<Vec<u8>, u32>,
    /// The last entry of `roots` used.
    last_root: Option<(Vec<u8>, u32)>,
    /// The last `(root, parent of fn_)` whose implied directories were all
    /// handled (`send_implied_dirs()`).
    implied_done: Option<(u32, Vec<u8>)>,
}

impl<'a> BuildCtx<'a> {
    /// `flist.c: change_pathname()` into an argument's directory: the real
    /// module-relative directory, following symlinks inside the module as
    /// the module's confinement allows (`use chroot`), or the error text
    /// stock's `change_dir()` failure reports. What the module identity
    /// cannot see or the daemon excludes does not exist here.
    fn change_dir(&self, dir: &[u8]) -> Result<Vec<u8>, &'static str> {
        use super::modopts::{resolve_dir, Node};
        let visible = |p: &[u8]| self.snap.lookup(p).filter(|e| (self.visible)(*e)).filter(|e| !self.daemon_excluded(p, e.is_dir()));
        if visible(dir).is_some_and(|e| e.is_dir()) {
            return Ok(dir.to_vec());
        }
        let lookup = |p: &[u8]| {
            visible(p).map(|e| {
                if e.is_dir() {
                    Node::Dir
                } else if e.is_symlink() {
                    Node::Symlink(e.link_target().to_vec())
                } else {
                    Node::Other
                }
            })
        };
        resolve_dir(dir, self.confinement, lookup).map_err(|errno| match errno {
            libc::ENOTDIR => "Not a directory (20)",
            libc::EXDEV => "Invalid cross-device link (18)",
            libc::ELOOP => "Too many levels of symbolic links (40)",
            _ => "No such file or directory (2)",
        })
    }

    fn daemon_excluded(&self, module_path: &[u8], is_dir: bool) -> bool {
        !self.daemon_filter.is_empty() && self.daemon_filter.check(module_path, module_path, is_dir) == FilterDecision::Exclude
    }

    fn client_excluded(&self, name: &[u8], module_path: &[u8], is_dir: bool) -> bool {
        !self.client_filter.is_empty() && self.client_filter.check(name, module_path, is_dir) == FilterDecision::Exclude
    }

    /// Expand one path argument as `glob_expand_module()` does.
    pub fn expand_arg(&self, arg: &[u8], secluded: bool, out: &mut Vec<Vec<u8>>) {
        let m = self.module.as_bytes();
        let arg = arg.strip_prefix(m).unwrap_or(arg);
        if secluded {
            self.glob_expand(arg, out);
            return;
        }
        let mut sep = Vec::with_capacity(m.len() + 2);
        sep.push(b' ');
        sep.extend_from_slice(m);
        sep.push(b'/');
        let mut rest = arg;
        loop {
            match find(rest, &sep) {
                Some(i) => {
                    self.glob_expand(&rest[..i], out);
                    rest = &rest[i + sep.len()..];
                }
                None => {
                    self.glob_expand(rest, out);
                    break;
                }
            }
        }
    }

    fn glob_expand(&self, arg: &[u8], out: &mut Vec<Vec<u8>>) {
        let s = sanitize_path(arg, self.opts.relative);
        if !s.iter().any(|c| matches!(c, b'*' | b'?' | b'[')) {
            out.push(s);
            return;
        }
        let before = out.len();
        let comps: Vec<&[u8]> = s.split(|&b| b == b'/').collect();
        let trailing = s.ends_with(b"/");
        self.glob_match(self.snap.root(), Vec::new(), &comps, trailing, out);
        if out.len() == before {
            out.push(s);
        }
    }

    fn glob_match(&self, dir: EntryRef<'_>, prefix: Vec<u8>, comps: &[&[u8]], trailing: bool, out: &mut Vec<Vec<u8>>) {
        const MAX_GLOB_RESULTS: usize = 100_000;
        if out.len() >= MAX_GLOB_RESULTS {
            return;
        }
        let Some((&c, rest)) = comps.split_first() else { return };
        let rest_nonempty = rest.iter().any(|c| !c.is_empty());
        let finish = |p: Vec<u8>, out: &mut Vec<Vec<u8>>| {
            let mut p = p;
            if trailing && !rest_nonempty {
                p.push(b'/');
            }
            out.push(p);
        };
        if c.is_empty() || c == b"." {
            if rest_nonempty {
                let mut p = prefix.clone();
                if c == b"." {
                    p.extend_from_slice(b"./");
                }
                self.glob_match(dir, p, rest, trailing, out);
            }
            return;
        }
        let has_wild = c.iter().any(|ch| matches!(ch, b'*' | b'?' | b'['));
        let candidates: Vec<EntryRef<'_>> = if has_wild {
            dir.children().filter(|e| wildmatch(c, e.name()) && (self.visible)(*e)).collect()
        } else {
            dir.child(c).filter(|e| (self.visible)(*e)).into_iter().collect()
        };
        for e in candidates {
            let mut p = prefix.clone();
            p.extend_from_slice(e.name());
            let mp = p.clone();
            if (has_wild || rest_nonempty) && self.daemon_excluded(&mp, e.is_dir()) {
                continue;
            }
            if rest_nonempty {
                if !e.is_dir() {
                    continue;
                }
                p.push(b'/');
                self.glob_match(e, p, rest, trailing, out);
            } else {
                // util1.c: call_glob_match(): a trailing slash after the
                // last component only matches directories.
                if trailing && !e.is_dir() {
                    continue;
                }
                finish(p, out);
            }
        }
    }

    /// Build the list for the expanded arguments (or the `--files-from`
    /// names, which are treated as `-R` arguments relative to the first).
    ///
    /// One [`BuildMemo`] serves the whole build, so a long `--files-from`
    /// list costs one snapshot lookup per directory change plus one child
    /// lookup per name, not a walk from the root per name and per implied
    /// parent.
    pub fn build(&self, args: &[Vec<u8>]) -> BuildOutcome {
        let mut o = BuildOutcome::default();
        let mut implied_seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let mut memo = BuildMemo::default();
        o.list.items.reserve(args.len());
        o.list.names.reserve(args.iter().map(|a| a.len()).sum());
        for a in args {
            self.build_one_memo(a, &mut o, &mut implied_seen, &mut memo);
        }
        self.sort(&mut o.list);
        o
    }

    /// Add one argument to a whole list being built argument by argument
    /// (see [`FlatBuilder`]).
    pub fn build_more(&self, fb: &mut FlatBuilder<'a>, arg: &[u8]) {
        self.build_one_memo(arg, &mut fb.outcome, &mut fb.implied_seen, &mut fb.memo);
    }

    /// Finish a [`FlatBuilder`]: sort (recording the build order).
    pub fn build_finish(&self, mut fb: FlatBuilder<'a>) -> BuildOutcome {
        self.sort(&mut fb.outcome.list);
        fb.outcome
    }

    fn build_one(&self, arg: &[u8], o: &mut BuildOutcome, implied_seen: &mut std::collections::HashSet<Vec<u8>>) {
        self.build_one_memo(arg, o, implied_seen, &mut BuildMemo::default());
    }

    /// One argument of `send_file_list()`; `memo` carries lookups over to
    /// the next argument of the same build.
    fn build_one_memo(
        &self,
        arg: &[u8],
        o: &mut BuildOutcome,
        implied_seen: &mut std::collections::HashSet<Vec<u8>>,
        memo: &mut BuildMemo<'a>,
    ) {
        let opts = self.opts;
        let mut fbuf = if is_clean_path(arg, opts.relative) { arg.to_vec() } else { sanitize_path(arg, opts.relative) };
        let mut name_type;
        let dir: Vec<u8>;
        let fn_: Vec<u8>;
        if !opts.relative {
            let len = fbuf.len();
            if fbuf.is_empty() || fbuf.ends_with(b"/") {
                if fbuf == b"./" {
                    fbuf.truncate(1);
                } else {
                    fbuf.push(b'.');
                }
                name_type = NameType::DotDir;
            } else if len > 1 && fbuf.ends_with(b"..") && (len == 2 || fbuf[len - 3] == b'/') {
                fbuf.extend_from_slice(b"/.");
                name_type = NameType::DotDir;
            } else if fbuf.ends_with(b".") && (len == 1 || fbuf[len - 2] == b'/') {
                name_type = NameType::DotDir;
            } else {
                name_type = NameType::Normal;
            }
            match fbuf.iter().rposition(|&b| b == b'/') {
                Some(i) => {
                    dir = fbuf[..i].to_vec();
                    fn_ = fbuf[i + 1..].to_vec();
                }
                None => {
                    dir = Vec::new();
                    fn_ = fbuf;
                }
            }
        } else {
            name_type = NameType::Normal;
            let (d, f) = match fbuf.windows(3).position(|w| w == b"/./") {
                Some(i) => (clean_fname(&fbuf[..i], false), &fbuf[i + 3..]),
                None => (Vec::new(), &fbuf[..]),
            };
            dir = d;
            // `clean_fname()` is the identity on a name without empty or
            // `.` components (the usual `--files-from` line once its
            // leading `./` is gone): skip its split-and-join then.
            let mut f = {
                let mut g = f;
                while let Some(rest) = g.strip_prefix(b"./") {
                    g = rest;
                }
                if is_clean_path(g, false) {
                    g.to_vec()
                } else {
                    clean_fname(f, true)
                }
            };
            if f.len() == 1 && f[0] == b'/' {
                f = b".".to_vec();
                name_type = NameType::DotDir;
            } else if f.ends_with(b"/") {
                f.pop();
                name_type = if f == b"." { NameType::DotDir } else { NameType::SlashEnding };
            }
            if f.split(|&b| b == b'/').any(|c| c == b"..") {
                o.messages.push((MsgCode::Error, format!("found \"..\" dir in relative path: {}\n", safe_name(&f))));
                return;
            }
            fn_ = f;
        }
        let mut fn_ = fn_;
        if fn_.is_empty() {
            fn_ = b".".to_vec();
            name_type = NameType::DotDir;
        }
        // flist.c: change_pathname() into the argument's directory first;
        // a missing or non-directory parent is a change_dir error.
        // The directory may be reached through symlinks inside the module
        // (`dists/stable/` -> `dists/bookworm/`): `real_dir` is the real
        // directory, for lookups and opens; `dir` stays what the client named,
        // for messages.
        let mut real_dir = dir.clone();
        if !dir.is_empty() {
            let checked = match &memo.dir_check {
                Some((d, r)) if *d == dir => r.clone(),
                _ => {
                    let r = self.change_dir(&dir);
                    memo.dir_check = Some((dir.clone(), r.clone()));
                    r
                }
            };
            match checked {
                Ok(real) => real_dir = real,
                Err(err) => {
                    o.io_error |= IOERR_GENERAL;
                    o.messages.push((
                        MsgCode::ErrorXfer,
                        format!("rsync: [sender] change_dir {} failed: {err}\n", full_fname(b"", &dir, self.module)),
                    ));
                    return;
                }
            }
        }
        let dir_for_messages = dir;
        let dir = real_dir;
        let root = match &memo.last_root {
            Some((d, r)) if *d == dir => *r,
            _ => {
                let r = match memo.roots.get(&dir) {
                    Some(&r) => r,
                    None => {
                        let r = o.list.root_index(&dir);
                        memo.roots.insert(dir.clone(), r);
                        r
                    }
                };
                memo.last_root = Some((dir.clone(), r));
                r
            }
        };
        let mpath = join(&dir, &fn_);
        // Snapshot::lookup(mpath), with the parent directory's lookup
        // reused from the previous argument when it is the same directory.
        let found = match mpath.iter().rposition(|&b| b == b'/') {
            Some(i) if i + 1 < mpath.len() && &mpath[i + 1..] != b"." => {
                let (parent, base) = (&mpath[..i], &mpath[i + 1..]);
                let pe = match &memo.parent {
                    Some((p, e)) if p.as_slice() == parent => *e,
                    _ => {
                        let e = self.snap.lookup(parent);
                        memo.parent = Some((parent.to_vec(), e));
                        e
                    }
                };
                pe.and_then(|p| p.child(base))
            }
            _ => self.snap.lookup(&mpath),
        };
        let entry = found.filter(|e| (self.visible)(*e));
        let link_stat_fail = |o: &mut BuildOutcome| {
            o.messages.push((
                MsgCode::ErrorXfer,
                format!(
                    "rsync: [sender] link_stat {} failed: No such file or directory (2)\n",
                    full_fname(&dir_for_messages, &fn_, self.module)
                ),
            ));
        };
        let Some(entry) = entry else {
            if !opts.ignore_missing_args {
                link_stat_fail(o);
            }
            return;
        };
        let is_dir = entry.is_dir();
        if name_type != NameType::DotDir && self.daemon_excluded(&mpath, is_dir) {
            if !opts.ignore_missing_args {
                link_stat_fail(o);
            }
            return;
        }
        if name_type != NameType::DotDir && self.client_excluded(&fn_, &mpath, is_dir) {
            return;
        }
        if is_dir && !(opts.recursive || opts.dirs) {
            o.messages.push((MsgCode::Info, format!("skipping directory {}\n", safe_name(&fn_))));
            return;
        }
        // flist.c: with -R, protocol >= 30 always sends implied dirs (flagged).
        if opts.relative && (opts.implied_dirs || self.protocol >= 30) {
            // send_implied_dirs(): every parent of fn_ inside the transfer root.
            // All of them are in `implied_seen` already when the previous
            // argument had the same parent directory.
            let fn_parent = &fn_[..fn_.iter().rposition(|&b| b == b'/').unwrap_or(0)];
            let done = matches!(&memo.implied_done, Some((r, p)) if *r == root && p.as_slice() == fn_parent);
            if !done {
                let mut p = 0;
                while let Some(i) = fn_[p..].iter().position(|&b| b == b'/') {
                    let parent = &fn_[..p + i];
                    p += i + 1;
                    if parent.is_empty() || parent == b"." {
                        continue;
                    }
                    let key = join(&dir, parent);
                    if implied_seen.contains(&key) {
                        continue;
                    }
                    if let Some(pe) = self.snap.lookup(&key).filter(|e| (self.visible)(*e)) {
                        if pe.is_dir() {
                            o.list.push(pe.index(), parent, root, true, true);
                        }
                    }
                    implied_seen.insert(key);
                }
                memo.implied_done = Some((root, fn_parent.to_vec()));
            }
        }
        let content = opts.recursive;
        if opts.recursive || (opts.dirs && name_type != NameType::Normal) {
            o.list.push(entry.index(), &fn_, root, true, is_dir && !content && name_type == NameType::Normal);
            if is_dir {
                self.send_directory(entry, &dir, &fn_, o, root);
            }
        } else {
            o.list.push(entry.index(), &fn_, root, self.inc_first, is_dir && !self.inc_first);
        }
    }

    /// `send_directory()` (recursive with -r, one level with -d).
    fn send_directory(&self, dirent: EntryRef<'_>, root_dir: &[u8], name: &[u8], o: &mut BuildOutcome, root: u32) {
        let recursive = self.opts.recursive;
        let base_mpath = join(root_dir, name);
        let mut name_buf: Vec<u8> = Vec::new();
        let mut mpath_buf: Vec<u8> = Vec::new();
        if dirent.unreadable() {
            o.io_error |= IOERR_GENERAL;
            o.messages.push((
                MsgCode::ErrorXfer,
                format!("rsync: [sender] opendir {} failed: Permission denied (13)\n", full_fname(root_dir, name, self.module)),
            ));
            return;
        }
        let mut pending_unreadable: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        // Directories listed by this walk: entry index -> their stored name.
        // A non-directory below one of them stores no name of its own: its
        // wire name is derived from the parent's (`FileList::name`), so the
        // list costs one `ListItem` per entry plus the directory names.
        let mut dir_names: std::collections::HashMap<u32, (u32, u32)> = std::collections::HashMap::new();
        self.snap.walk(dirent, &mut |rel: &[u8], e: EntryRef<'_>| {
            if !(self.visible)(e) {
                return if e.is_dir() { WalkControl::SkipDir } else { WalkControl::Continue };
            }
            name_buf.clear();
            if name != b"." {
                name_buf.extend_from_slice(name);
                name_buf.push(b'/');
            }
            name_buf.extend_from_slice(rel);
            mpath_buf.clear();
            if !base_mpath.is_empty() {
                mpath_buf.extend_from_slice(&base_mpath);
                mpath_buf.push(b'/');
            }
            mpath_buf.extend_from_slice(rel);
            let is_dir = e.is_dir();
            let cvs_hit = match (self.cvs, e.parent()) {
                (Some(c), Some(parent)) => c.excluded(parent, parent_of(&mpath_buf), base_of(&mpath_buf), is_dir),
                _ => false,
            };
            if cvs_hit || self.daemon_excluded(&mpath_buf, is_dir) || self.client_excluded(&name_buf, &mpath_buf, is_dir) {
                return if is_dir { WalkControl::SkipDir } else { WalkControl::Continue };
            }
            match e.parent().and_then(|p| dir_names.get(&p.index())) {
                Some(&(off, len)) if !is_dir => o.list.push_derived(e.index(), off, len, root),
                _ => o.list.push(e.index(), &name_buf, root, false, is_dir && !recursive),
            }
            if is_dir {
                if let Some(it) = o.list.items.last() {
                    dir_names.insert(e.index(), (it.name_off, it.name_len));
                }
                if !recursive {
                    return WalkControl::SkipDir;
                }
                if e.unreadable() {
                    pending_unreadable.push((root_dir.to_vec(), name_buf.clone()));
                    return WalkControl::SkipDir;
                }
            }
            WalkControl::Continue
        });
        for (d, n) in pending_unreadable {
            o.io_error |= IOERR_GENERAL;
            o.messages.push((
                MsgCode::ErrorXfer,
                format!("rsync: [sender] opendir {} failed: Permission denied (13)\n", full_fname(&d, &n, self.module)),
            ));
        }
    }

    fn sort(&self, list: &mut FileList) {
        let p = self.protocol;
        let snap = self.snap;
        // Each item's directory bit and name once, not per comparison (a
        // stored name needs no snapshot lookup; derived ones do).
        let is_dir: Vec<bool> = list.items.iter().map(|it| snap.entry(it.entry).map(|e| e.is_dir()).unwrap_or(false)).collect();
        let names: &FileList = list;
        let name = |it: &ListItem| -> Cow<'_, [u8]> {
            if it.derived {
                names.name_in(snap, it)
            } else {
                Cow::Borrowed(&names.names[it.name_off as usize..(it.name_off + it.name_len) as usize])
            }
        };
        let sorted = (1..list.items.len()).all(|i| {
            let (a, b) = (&list.items[i - 1], &list.items[i]);
            f_name_cmp(&name(a), is_dir[i - 1], &name(b), is_dir[i], p) != std::cmp::Ordering::Greater
        });
        if sorted {
            return;
        }
        let mut order: Vec<u32> = (0..list.items.len() as u32).collect();
        order.sort_by(|&a, &b| {
            let (ia, ib) = (&list.items[a as usize], &list.items[b as usize]);
            f_name_cmp(&name(ia), is_dir[a as usize], &name(ib), is_dir[b as usize], p)
        });
        let items: Vec<ListItem> = order.iter().map(|&i| list.items[i as usize]).collect();
        let mut wire = vec![0u32; items.len()];
        for (sorted, &built) in order.iter().enumerate() {
            wire[built as usize] = sorted as u32;
        }
        list.items = items;
        list.wire_order = Some(wire);
    }
}

/// True when `sanitize_path(p, keep_dot_dirs)` would return `p` unchanged
/// (and, with `keep_dot_dirs == false`, `clean_fname(p, true)` too): not
/// empty, no leading or doubled slash, no `..` component and, unless
/// `keep_dot_dirs`, no `.` component. A trailing slash is allowed.
fn is_clean_path(p: &[u8], keep_dot_dirs: bool) -> bool {
    if p.is_empty() || p[0] == b'/' {
        return false;
    }
    let mut comps = p.split(|&b| b == b'/').peekable();
    while let Some(c) = comps.next() {
        let last = comps.peek().is_none();
        let bad = match c {
            b"" => !last,
            b".." => true,
            b"." => !keep_dot_dirs,
            _ => false,
        };
        if bad {
            return false;
        }
    }
    true
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    h.windows(n.len()).position(|w| w == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Incremental sub-lists derive non-directory names from the parent's
    /// stored name; every name must equal the one the flat builder stores.
    #[test]
    fn incremental_names_match_flat_names() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("m");
        for dir in ["a/b/c", "a/e", "z"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        for f in ["top", "a/f1", "a/b/f2", "a/b/c/f3", "a/b/c/f4", "z/f5"] {
            std::fs::write(root.join(f), b"x").unwrap();
        }
        let snap_path = d.path().join("s.snap");
        let bo = filelist_cache::BuildOptions { one_file_system: true, generation: 1 };
        filelist_cache::build_snapshot(&root, &snap_path, &bo).unwrap();
        let snap = Snapshot::open(&snap_path).unwrap();
        let mut opts = ServerOptions::default();
        opts.recursive = true;
        let empty = FilterList::default();
        let ctx = BuildCtx {
            inc_first: false,
            snap: &snap,
            module: "m",
            opts: &opts,
            client_filter: &empty,
            daemon_filter: &empty,
            protocol: 31,
            visible: &|_| true,
            cvs: None,
            confinement: crate::session::modopts::Confinement::Beneath,
        };
        for arg in [&b"."[..], b"a", b"a/", b"a/b"] {
            let args = vec![arg.to_vec()];
            let flat = ctx.build(&args).list;
            let mut want: Vec<(Vec<u8>, Vec<u8>)> =
                flat.items.iter().map(|it| (flat.name_in(&snap, it).into_owned(), flat.module_path(&snap, it))).collect();
            let (inc, _, _) = ctx.build_incremental(&args);
            let mut got = Vec::new();
            let mut derived = 0;
            for l in &inc.lists {
                for it in &l.items {
                    derived += usize::from(it.derived);
                    got.push((inc.names.name_in(&snap, it).into_owned(), inc.names.module_path(&snap, it)));
                }
            }
            want.sort();
            got.sort();
            assert_eq!(got, want, "arg {:?}", String::from_utf8_lossy(arg));
            assert!(derived > 0, "arg {:?}: no derived names", String::from_utf8_lossy(arg));
        }
    }

    #[test]
    fn sanitize_matches_stock_rules() {
        assert_eq!(sanitize_path(b"/etc/passwd", false), b"etc/passwd");
        assert_eq!(sanitize_path(b"../../etc/passwd", false), b"etc/passwd");
        assert_eq!(sanitize_path(b"a/../../b", false), b"b");
        assert_eq!(sanitize_path(b"a//b/./c/", false), b"a/b/c/");
        assert_eq!(sanitize_path(b"", false), b".");
        assert_eq!(sanitize_path(b"/", false), b".");
        assert_eq!(sanitize_path(b"a/./b", true), b"a/./b");
        assert_eq!(sanitize_path(b"a/b/..", false), b"a/");
    }

    #[test]
    fn full_fname_forms() {
        assert_eq!(full_fname(b"", b"x", "mod"), "\"x\" (in mod)");
        assert_eq!(full_fname(b"sub", b"x", "mod"), "\"/sub/x\" (in mod)");
    }
}

/// One list of an incremental-recursion session (`flist.c: flist_new()`).
#[derive(Debug)]
pub struct SubList {
    /// First ndx of this list.
    pub ndx_start: i32,
    /// The directory whose contents this list carries (`ndx_start - 1`),
    /// or `None` for a first list not headed by a `.` directory.
    pub parent: Option<ListItem>,
    /// `dir_flist` index announced with `NDX_FLIST_OFFSET - dir_index`
    /// (`None` for the first list).
    pub dir_index: Option<i32>,
    /// Entries in wire order.
    pub items: Vec<ListItem>,
}

/// All lists of an incremental-recursion session, in sending order.
#[derive(Debug, Default)]
pub struct IncLists {
    /// Lists; `lists[0]` is the first list.
    pub lists: Vec<SubList>,
    /// Names of every item (shared buffer).
    pub names: FileList,
}

impl IncLists {
    /// Resolve a request ndx to the item it names (mirrors the lookup in
    /// `rsync.c: read_ndx_and_attrs()` / `sender.c: send_files()`).
    pub fn resolve(&self, ndx: i32) -> Option<ListItem> {
        let i = match self.lists.binary_search_by(|l| (l.ndx_start - 1).cmp(&ndx)) {
            Ok(i) => return self.lists[i].parent,
            Err(0) => return None,
            Err(i) => i - 1,
        };
        let l = &self.lists[i];
        let off = ndx - l.ndx_start;
        if off < 0 {
            return l.parent;
        }
        l.items.get(off as usize).copied()
    }

    /// Total entries over all lists.
    pub fn len(&self) -> usize {
        self.lists.iter().map(|l| l.items.len()).sum()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One list produced by [`IncBuilder`].
#[derive(Debug)]
pub struct BuiltList {
    /// The list.
    pub list: SubList,
    /// Messages raised while building it (e.g. an unreadable directory), to
    /// go out before its entries.
    pub messages: Vec<(MsgCode, String)>,
    /// IOERR_* bits raised while building it.
    pub io_error: i32,
}

/// Produces the lists of an incremental-recursion session one at a time, on
/// demand (`send_file_list()` with `inc_recurse` for the first list, then
/// one `send_extra_file_list()` step per call): the first list holds the
/// arguments' top entries plus the immediate children of `.`-style
/// arguments; then one list per directory in depth-first pre-order,
/// siblings in sorted order, each directory's children in sorted order.
/// `dir_flist` indexes are assigned as lists are produced. Memory held is
/// the pending-directory stack and the stored directory names, never the
/// whole tree's entries.
pub struct IncBuilder<'c, 'a> {
    ctx: &'c BuildCtx<'a>,
    names: FileList,
    first: Option<BuiltList>,
    /// Pending directories: (dir_flist index, item, contents already sent).
    stack: Vec<(usize, ListItem, bool)>,
    /// Entries in `dir_flist` so far.
    dir_flist_len: usize,
    next_start: i32,
    /// Top-level directories repeated under the same name from another
    /// place (FLAG_DUPLICATE), keyed by the first one's `dir_flist` index:
    /// their contents go out in the first one's sub-list.
    dups: std::collections::HashMap<usize, Vec<ListItem>>,
}

impl<'c, 'a> IncBuilder<'c, 'a> {
    /// Build the first list (walking only the arguments' top levels).
    pub fn new(ctx: &'c BuildCtx<'a>, args: &[Vec<u8>]) -> Self {
        // First list: reuse the flat builder without recursion below the
        // top level of each argument.
        let mut flat_opts = ctx.opts.clone();
        flat_opts.recursive = false;
        flat_opts.dirs = true;
        let shallow = BuildCtx { opts: &flat_opts, inc_first: true, ..*ctx };
        let mut first = BuildOutcome::default();
        let mut seen = std::collections::HashSet::new();
        for a in args {
            shallow.build_one(a, &mut first, &mut seen);
        }
        shallow.sort(&mut first.list);
        let mut names = first.list;
        // The first list goes out in sorted order (valid: the receiver sorts).
        names.wire_order = None;
        // Directories whose contents the first list already carries: the
        // `.` of a dot-dir argument. Every other directory gets a sub-list.
        let mut first_items = std::mem::take(&mut names.items);
        for it in first_items.iter_mut() {
            if ctx.snap.entry(it.entry).map(|e| e.is_dir()).unwrap_or(false) {
                it.no_content = false;
            }
        }
        let first_parent = first_items.first().copied().filter(|it| names.name_in(ctx.snap, it).as_ref() == b".");
        let mut todo: Vec<(ListItem, bool)> = Vec::new();
        let mut dups: std::collections::HashMap<usize, Vec<ListItem>> = std::collections::HashMap::new();
        // (name, entries seen under it, dir_flist index of the first)
        let mut prev_dir: Option<(Vec<u8>, Vec<u32>, usize)> = None;
        for it in &first_items {
            if ctx.snap.entry(it.entry).map(|e| e.is_dir()).unwrap_or(false) {
                let name = names.name_in(ctx.snap, it).into_owned();
                // flist.c: clean_flist() marks a repeated directory
                // (`mod/a mod/a`, or `mod/x/b mod/y/b`) FLAG_DUPLICATE and
                // send_extra_file_list() sends its contents with the first
                // one's list (once when it is the same directory), so it
                // gets no sub-list of its own (the client dropped it and
                // dies on one), though it keeps its place in dir_flist.
                let mut dup = false;
                if let Some((_, seen, first)) = prev_dir.as_mut().filter(|(n, _, _)| *n == name) {
                    dup = true;
                    if !seen.contains(&it.entry) {
                        seen.push(it.entry);
                        dups.entry(*first).or_default().push(*it);
                    }
                } else {
                    prev_dir = Some((name.clone(), vec![it.entry], todo.len()));
                }
                todo.push((*it, name == b"." || dup));
            }
        }
        let stack: Vec<(usize, ListItem, bool)> = todo.iter().enumerate().rev().map(|(i, (it, done))| (i, *it, *done)).collect();
        let next_start = 1 + first_items.len() as i32 + 1;
        let first = BuiltList {
            list: SubList { ndx_start: 1, parent: first_parent, dir_index: None, items: first_items },
            messages: first.messages,
            io_error: first.io_error,
        };
        IncBuilder { ctx, names, first: Some(first), stack, dir_flist_len: todo.len(), next_start, dups }
    }

    /// Names of every item produced so far (items keep referring to it).
    pub fn names(&self) -> &FileList {
        &self.names
    }

    /// No list is left to produce.
    pub fn is_done(&self) -> bool {
        self.first.is_none() && self.stack.iter().all(|&(_, _, sent)| sent)
    }

    /// Give up the names buffer (after the last list).
    pub fn into_names(self) -> FileList {
        self.names
    }

    /// The next list, or `None` after the last (`NDX_FLIST_EOF`).
    pub fn next_list(&mut self) -> Option<BuiltList> {
        if let Some(f) = self.first.take() {
            return Some(f);
        }
        let ctx = self.ctx;
        while let Some((dir_index, dir_item, contents_sent)) = self.stack.pop() {
            if contents_sent {
                continue;
            }
            if ctx.snap.entry(dir_item.entry).is_none() {
                continue;
            }
            let names = &mut self.names;
            let dir_name = names.name_in(ctx.snap, &dir_item).into_owned();
            let mut sources = vec![dir_item];
            sources.extend(self.dups.remove(&dir_index).unwrap_or_default());
            let merged = sources.len() > 1;
            let mut items = Vec::new();
            let mut messages = Vec::new();
            let mut io_error = 0;
            for src in sources {
                let Some(dirent) = ctx.snap.entry(src.entry) else { continue };
                // Stored once for all non-directory children, whose names are
                // derived from it (`<dir_name>/<basename>`) instead of stored.
                let dir_off = src.name_off;
                let dir_len = src.name_len;
                let root = src.root;
                let root_dir = names.roots[root as usize].clone();
                let base_mpath = join(&root_dir, &dir_name);
                if dirent.unreadable() {
                    io_error |= IOERR_GENERAL;
                    messages.push((
                        MsgCode::ErrorXfer,
                        format!("rsync: [sender] opendir {} failed: Permission denied (13)\n", full_fname(&root_dir, &dir_name, ctx.module)),
                    ));
                    continue;
                }
                for child in dirent.children().filter(|c| (ctx.visible)(*c)) {
                    let mut name = if dir_name == b"." { Vec::new() } else { [dir_name.as_slice(), b"/"].concat() };
                    name.extend_from_slice(child.name());
                    let mpath = join(&base_mpath, child.name());
                    let is_dir = child.is_dir();
                    let cvs_hit = ctx.cvs.map(|c| c.excluded(dirent, &base_mpath, child.name(), is_dir)).unwrap_or(false);
                    if cvs_hit || ctx.daemon_excluded(&mpath, is_dir) || ctx.client_excluded(&name, &mpath, is_dir) {
                        continue;
                    }
                    if is_dir {
                        names.push(child.index(), &name, root, false, false);
                        items.push(*names.items.last().expect("just pushed"));
                    } else {
                        items.push(ListItem {
                            entry: child.index(),
                            name_off: dir_off,
                            name_len: dir_len,
                            root,
                            top_dir: false,
                            no_content: false,
                            derived: true,
                        });
                    }
                }
                names.items.clear();
            }
            if merged {
                // Both sides sort each list (flist_sort_and_clean()); the
                // client then drops same-named entries itself.
                let p = ctx.protocol;
                let key = |it: &ListItem| {
                    (names.name_in(ctx.snap, it).into_owned(), ctx.snap.entry(it.entry).map(|e| e.is_dir()).unwrap_or(false))
                };
                let mut keyed: Vec<_> = items.iter().map(|it| (key(it), *it)).collect();
                keyed.sort_by(|((a, ad), _), ((b, bd), _)| f_name_cmp(a, *ad, b, *bd, p));
                items = keyed.into_iter().map(|(_, it)| it).collect();
            }
            let sub_dirs: Vec<ListItem> =
                items.iter().copied().filter(|it| ctx.snap.entry(it.entry).map(|e| e.is_dir()).unwrap_or(false)).collect();
            let len = items.len() as i32;
            let list = SubList { ndx_start: self.next_start, parent: Some(dir_item), dir_index: Some(dir_index as i32), items };
            self.next_start += len + 1;
            let base = self.dir_flist_len;
            self.dir_flist_len += sub_dirs.len();
            for (k, d) in sub_dirs.iter().enumerate().rev() {
                self.stack.push((base + k, *d, false));
            }
            return Some(BuiltList { list, messages, io_error });
        }
        None
    }
}

impl<'a> BuildCtx<'a> {
    /// All lists of an incremental-recursion session at once (tests and
    /// tools; sessions stream them with [`IncBuilder`]).
    pub fn build_incremental(&self, args: &[Vec<u8>]) -> (IncLists, Vec<(MsgCode, String)>, i32) {
        let mut b = IncBuilder::new(self, args);
        let mut lists = Vec::new();
        let mut messages = Vec::new();
        let mut io_error = 0;
        while let Some(l) = b.next_list() {
            lists.push(l.list);
            messages.extend(l.messages);
            io_error |= l.io_error;
        }
        (IncLists { lists, names: b.into_names() }, messages, io_error)
    }
}
