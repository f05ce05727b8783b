//! Odd names given as source arguments (plain, `-s`, `--protocol=29`): a
//! newline, a leading dash, 255 bytes, UTF-8, non-UTF-8 (`{%XX}` bytes), and
//! glob characters; and odd names inside a pulled directory.

use interop_tests::tree::{long_name, TreeBuilder, BASE_MTIME};
use interop_tests::{differential, Case, ModuleSpec, RunResult};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::common::{cases, edge};

/// One single-file pull of `{url}/<name>`.
fn one(
    case: &str,
    module: ModuleSpec,
    name: &str,
    opts: &[&str],
    code: i32,
) -> (RunResult, RunResult) {
    let src = format!("{{url}}/{name}");
    let mut args = vec!["-ai"];
    args.extend_from_slice(opts);
    args.push(&src);
    args.push("{dest}/");
    differential(&Case::new(case, vec![module]).args(&args).expect_code(code))
}

fn long() -> String {
    String::from_utf8(long_name()).unwrap()
}

/// A small tree of names with glob and escape characters, built once.
fn glob_tree() -> ModuleSpec {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        crate::common::shared_root("mod", |root| {
            let mut t = TreeBuilder::new(root, 0o755, BASE_MTIME);
            for n in [
                &b"star*name"[..],
                b"q?mark",
                b"glob[1].txt",
                b"glob1.txt",
                b"back\\slash",
                b"tab\there",
                b"#hash",
                b"-",
                b"--help",
                b"sp ace  ",
                b"\xc3\x28invalid-utf8",
            ] {
                t.file(n, n, 0o644);
            }
            t.dir(b"-dash-dir", 0o755);
            t.file(b"-dash-dir/--x", b"x", 0o644);
            t.finish();
        })
    });
    ModuleSpec::new("mod", root)
}

cases! {
    newline_arg => { one("newline_arg", edge(), "new\nline", &[], 0); };
    newline_arg_secluded => { one("newline_arg_s", edge(), "new\nline", &["-s"], 0); };
    newline_arg_p29 => { one("newline_arg_p29", edge(), "new\nline", &["--protocol=29"], 23); };
    // Stock's daemon parses a module-relative "-rf" as an option (popt sees
    // the stripped argument): it fails with "-rf: missing argument", exit 10.
    #[ignore = "stock quirk, ours differs: stock's daemon parses a module-relative arg starting with '-' as an option ('-rf: missing argument', exit 10/12); ours serves the file. Decide whether to mimic"]
    dash_arg => { let (a, _) = one("dash_arg", edge(), "-rf", &[], 10); assert!(a.stderr.contains("-rf: missing argument"), "{}", a.stderr); };
    #[ignore = "stock quirk, ours differs: stock's daemon parses a module-relative arg starting with '-' as an option ('-rf: missing argument', exit 10/12); ours serves the file. Decide whether to mimic"]
    dash_arg_secluded => { one("dash_arg_s", edge(), "-rf", &["-s"], 10); };
    long_arg => { one("long_arg", edge(), &long(), &[], 0); };
    long_arg_secluded => { one("long_arg_s", edge(), &long(), &["-s"], 0); };
    utf8_arg => { one("utf8_arg", edge(), "ü.txt", &[], 0); };
    utf8_dir_arg => { one("utf8_dir_arg", edge(), "日本/", &[], 0); };
    utf8_arg_secluded => { one("utf8_arg_s", edge(), "日本/語.txt", &["-s"], 0); };
    non_utf8_arg => { one("non_utf8_arg", edge(), "bad{%ff}name{%fe}", &[], 0); };
    non_utf8_arg_secluded => { one("non_utf8_arg_s", edge(), "bad{%ff}name{%fe}", &["-s"], 0); };
    non_utf8_arg_p29 => { one("non_utf8_arg_p29", edge(), "bad{%ff}name{%fe}", &["--protocol=29"], 0); };
    non_utf8_arg_8bit_output => { one("non_utf8_8bit", edge(), "bad{%ff}name{%fe}", &["-8"], 0); };
    star_in_name => { one("star_name", glob_tree(), "star*name", &[], 0); };
    star_in_name_secluded => { one("star_name_s", glob_tree(), "star*name", &["-s"], 0); };
    bracket_name => { one("bracket_name", glob_tree(), "glob[1].txt", &[], 0); };
    bracket_name_secluded => { one("bracket_name_s", glob_tree(), "glob[1].txt", &["-s"], 0); };
    bracket_name_old_args => { one("bracket_name_old", glob_tree(), "glob[1].txt", &["--old-args"], 0); };
    question_name => { one("question_name", glob_tree(), "q?mark", &[], 0); };
    backslash_name => { one("backslash_name", glob_tree(), "back\\slash", &[], 0); };
    backslash_name_secluded => { one("backslash_name_s", glob_tree(), "back\\slash", &["-s"], 0); };
    tab_name => { one("tab_name", glob_tree(), "tab\there", &[], 0); };
    hash_name => { one("hash_name", glob_tree(), "#hash", &[], 0); };
    lone_dash_name => { one("lone_dash", glob_tree(), "-", &[], 0); };
    #[ignore = "stock quirk, ours differs: stock's daemon parses a module-relative arg starting with '-' as an option ('-rf: missing argument', exit 10/12); ours serves the file. Decide whether to mimic"]
    double_dash_name => { one("double_dash", glob_tree(), "--help", &[], 12); };
    trailing_spaces_name => { one("trailing_spaces", glob_tree(), "sp ace  ", &[], 0); };
    #[ignore = "stock quirk, ours differs: stock's daemon parses a module-relative arg starting with '-' as an option ('-rf: missing argument', exit 10/12); ours serves the file. Decide whether to mimic"]
    dash_dir_secluded => { one("dash_dir_s", glob_tree(), "-dash-dir/", &["-s"], 10); };
    glob_tree_whole => {
        differential(&Case::new("glob_tree_whole", vec![glob_tree()]).args(&["-ai", "{url}/", "{dest}/"]).expect_code(0));
    };
    glob_tree_whole_8bit_list => {
        differential(&Case::new("glob_tree_list8", vec![glob_tree()]).args(&["-r8", "--list-only", "{url}/"]).expect_code(0));
    };
    edge_tree_verbose_names => {
        let (a, _) = differential(&Case::new("edge_vv_names", vec![edge()]).args(&["-av", "{url}/", "{dest}/"]).expect_code(0));
        assert!(a.stdout.contains("new\\#012line\n"), "{}", a.stdout);
    };
}
