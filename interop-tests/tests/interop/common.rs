//! Shared set-up for the interop tests: fixture trees built once per test
//! binary (served read-only, so every test may share them), the stale
//! destination used by delta cases, and `--stats` helpers.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once, OnceLock};

use interop_tests::tree::{self, pseudo_random, set_mtime, EdgeTree, TreeBuilder, BASE_MTIME};
use interop_tests::{differential, Case, ModuleSpec, RunResult, StatsCompare};

/// Declares one `#[test]` per entry; each starts with `require_rsync!()`.
/// Attributes (`#[ignore = "..."]`) go before the name.
macro_rules! cases {
    ($( $(#[$m:meta])* $name:ident => $body:expr; )*) => {
        $(
            #[test]
            $(#[$m])*
            fn $name() {
                interop_tests::require_rsync!();
                $body;
            }
        )*
    };
}
pub(crate) use cases;

/// The edge tree as module `mod`, in a temp dir the caller keeps alive.
pub fn edge_module() -> (tempfile::TempDir, ModuleSpec, EdgeTree) {
    let mut info = None;
    let (dir, spec) = interop_tests::module_with("mod", |root: &Path| {
        info = Some(tree::build_edge_tree(root));
    });
    (dir, spec, info.expect("tree built"))
}

/// Shared trees, removed when the test binary exits (unless `INTEROP_KEEP`).
static SHARED_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn remove_shared_dirs() {
    if std::env::var_os("INTEROP_KEEP").is_some() {
        return;
    }
    if let Ok(dirs) = SHARED_DIRS.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// A fresh directory that lives until the test binary exits; `build` fills
/// `<dir>/<name>`, which is returned.
pub fn shared_root(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    static AT_EXIT: Once = Once::new();
    AT_EXIT.call_once(|| {
        // SAFETY: `remove_shared_dirs` is an `extern "C" fn()` with no
        // arguments that does not unwind (it ignores every error).
        unsafe {
            libc::atexit(remove_shared_dirs);
        }
    });
    let dir = tempfile::Builder::new()
        .prefix("interop-shared-")
        .tempdir()
        .expect("shared temp dir")
        .keep();
    SHARED_DIRS.lock().expect("lock").push(dir.clone());
    let root = dir.join(name);
    build(&root);
    root
}

/// The edge tree ([`tree::build_edge_tree`]), built once, as module `mod`.
pub fn edge() -> ModuleSpec {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        shared_root("mod", |r| {
            tree::build_edge_tree(r);
        })
    });
    ModuleSpec::new("mod", root)
}

/// The filter tree, built once, as module `mod`:
///
/// ```text
/// top  a.txt  a.o  a.c  b.txt  core  foo.bak  x~  notes.orig  keep.txt  file.tmp
/// sub/top  sub/deep/top  sub/deep/d.txt
/// dir/x.txt  dir/y.o  dir/other.tmp  dir/sub/z.txt  dir/sub/z.o
/// src/main.c  src/main.o  src/lib.so  src/generated.h  src/.cvsignore ("generated.h")
/// CVS/Entries  .git/config
/// secret/key  secret/sub/k2
/// ```
pub fn filter_tree() -> ModuleSpec {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| shared_root("mod", build_filter_tree));
    ModuleSpec::new("mod", root)
}

fn build_filter_tree(root: &Path) {
    let mut t = TreeBuilder::new(root, 0o755, BASE_MTIME - 1000);
    for f in [
        "top",
        "a.txt",
        "a.o",
        "a.c",
        "b.txt",
        "core",
        "foo.bak",
        "x~",
        "notes.orig",
        "keep.txt",
        "file.tmp",
    ] {
        t.file(f.as_bytes(), format!("{f}\n").as_bytes(), 0o644);
    }
    for d in [
        "sub",
        "sub/deep",
        "dir",
        "dir/sub",
        "src",
        "CVS",
        ".git",
        "secret",
        "secret/sub",
    ] {
        t.dir(d.as_bytes(), 0o755);
    }
    for f in [
        "sub/top",
        "sub/deep/top",
        "sub/deep/d.txt",
        "dir/x.txt",
        "dir/y.o",
        "dir/other.tmp",
        "dir/sub/z.txt",
        "dir/sub/z.o",
        "src/main.c",
        "src/main.o",
        "src/lib.so",
        "src/generated.h",
        "CVS/Entries",
        ".git/config",
        "secret/key",
        "secret/sub/k2",
    ] {
        t.file(f.as_bytes(), format!("{f}\n").as_bytes(), 0o644);
    }
    t.file(b"src/.cvsignore", b"generated.h\n", 0o644);
    t.finish();
}

/// An older copy of the edge tree in `dest`: changed, truncated, extra and
/// missing files, so a pull uses the delta algorithm and `--delete` deletes.
pub fn stale_copy(dest: &Path) {
    tree::build_edge_tree(dest);
    let big = dest.join("size-1048576");
    let mut data = std::fs::read(&big).unwrap();
    data[500_000..500_100].copy_from_slice(&pseudo_random(b"patch", 100));
    data.truncate(1_000_000);
    std::fs::write(&big, &data).unwrap();
    set_mtime(&big, BASE_MTIME - 5, 0);
    let mid = dest.join("size-200000");
    std::fs::write(&mid, pseudo_random(b"size-200000", 150_000)).unwrap();
    set_mtime(&mid, BASE_MTIME - 5, 0);
    std::fs::remove_file(dest.join("size-32769")).unwrap();
    std::fs::write(dest.join("extra-file"), b"to be deleted\n").unwrap();
    std::fs::create_dir(dest.join("extra-dir")).unwrap();
    std::fs::write(dest.join("extra-dir/x"), b"x\n").unwrap();
}

/// The number after `key` in `--stats` output (`Literal data: 1,234 bytes`).
pub fn stat_num(stdout: &str, key: &str) -> u64 {
    let l = stdout
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key:?} in --stats output:\n{stdout}"));
    l[key.len()..]
        .trim()
        .trim_end_matches(" bytes")
        .replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("{key:?} in {l:?}: {e}"))
}

/// Asserts a delta pull into [`stale_copy`] reused the old data: most of the
/// 1 MiB file matched and the literal data is far below the file size.
pub fn assert_delta_efficient(who: &str, r: &RunResult) {
    let matched = stat_num(&r.stdout, "Matched data: ");
    let literal = stat_num(&r.stdout, "Literal data: ");
    assert!(
        matched > 512 * 1024,
        "{who}: matched only {matched}\n{}",
        r.stdout
    );
    assert!(
        literal < 256 * 1024,
        "{who}: literal {literal} is not far below the 1 MiB file\n{}",
        r.stdout
    );
}

/// Runs `args` against both daemons serving `module`; both must exit 0.
pub fn pull(name: &str, module: ModuleSpec, args: &[&str]) -> (RunResult, RunResult) {
    differential(&Case::new(name, vec![module]).args(args).expect_code(0))
}

/// A delta pull of the edge tree into [`stale_copy`] with `opts` (plus
/// `-ai --no-whole-file --stats`); byte counts compare loosely (framing and
/// compressed sizes legitimately differ), trees and itemized output strictly,
/// and OUR side must have sent far less literal data than the file size.
pub fn delta_pull(name: &str, opts: &[&str]) -> (RunResult, RunResult) {
    let mut args = vec!["-ai", "--no-whole-file", "--stats"];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["{url}/", "{dest}/"]);
    let mut case = Case::new(name, vec![edge()])
        .stats(StatsCompare::Loose)
        .args(&args)
        .prepare_dest(stale_copy)
        .expect_code(0);
    if opts
        .iter()
        .any(|o| *o == "--protocol=27" || *o == "--protocol=28")
    {
        case = case.unordered_stdout();
    }
    let (a, b) = differential(&case);
    assert!(
        a.stdout
            .lines()
            .any(|l| l.starts_with(">f") && l.ends_with(" size-1048576")),
        "{}",
        a.stdout
    );
    assert_delta_efficient("stock", &a);
    assert_delta_efficient("ours", &b);
    (a, b)
}

/// The itemized lines (`-i`) of `stdout`: lines before any `--stats` block
/// that look like `YXcstpoguax name`.
pub fn itemized(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .take_while(|l| !l.starts_with("Number of files"))
        .filter(|l| {
            let b = l.as_bytes();
            b.len() > 12 && b"<>ch.*".contains(&b[0]) && b[11] == b' '
        })
        .collect()
}
