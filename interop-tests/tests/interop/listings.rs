//! More listings: the module list without a trailing slash and with a MOTD,
//! `--list-only` of sub-directories (with and without a trailing slash), of a
//! single file, recursive, and of a `list = no` module named directly.

use interop_tests::{differential, Case, ModuleSpec};

use crate::common::{cases, edge};

fn modules() -> Vec<ModuleSpec> {
    let m = edge();
    let path = m.path.clone();
    vec![
        m.with("comment", "the edge tree"),
        ModuleSpec::new("other", &path).with("comment", "second module"),
        ModuleSpec::new("hidden", &path).with("list", "no"),
        ModuleSpec::new("plain", &path),
    ]
}

fn module_list(name: &str, url: &str, motd: bool) {
    let motd_dir = tempfile::tempdir().unwrap();
    let motd_path = motd_dir.path().join("motd");
    std::fs::write(&motd_path, "Welcome to the test mirror.\nSecond line.\n").unwrap();
    let mut case = Case::new(name, modules()).args(&[url]).expect_code(0);
    if motd {
        case = case.global("motd file", motd_path.to_str().unwrap());
    }
    let (a, _) = differential(&case);
    assert!(
        a.stdout.contains("mod            \tthe edge tree\n"),
        "{:?}",
        a.stdout
    );
    assert!(a.stdout.contains("plain          \t\n"), "{:?}", a.stdout);
    assert!(!a.stdout.contains("hidden"), "{:?}", a.stdout);
    assert_eq!(
        motd,
        a.stdout.contains("Welcome to the test mirror.\n"),
        "{:?}",
        a.stdout
    );
}

fn list(name: &str, module: &str, args: &[&str], want: &[&str], not: &[&str]) {
    let (a, _) = differential(
        &Case::new(name, modules())
            .module(module)
            .args(args)
            .expect_code(0),
    );
    for w in want {
        assert!(a.stdout.contains(w), "{w:?} missing:\n{}", a.stdout);
    }
    for n in not {
        assert!(!a.stdout.contains(n), "{n:?} present:\n{}", a.stdout);
    }
}

cases! {
    module_list_no_trailing_slash => module_list("module_list_noslash", "rsync://127.0.0.1:{port}", false);
    module_list_with_motd => module_list("module_list_motd", "{root}", true);
    list_only_subdir_slash => list("lo_subdir_slash", "mod", &["--list-only", "{url}/order/"], &[" .\n", " b.c\n", " b-\n"], &["b-/x"]);
    list_only_subdir_no_slash => list("lo_subdir_noslash", "mod", &["--list-only", "{url}/order"], &[" order\n"], &["b.c"]);
    list_only_single_file => list("lo_single_file", "mod", &["--list-only", "{url}/size-700"], &[" size-700\n"], &[]);
    list_only_nested_file => list("lo_nested_file", "mod", &["--list-only", "{url}/nested/l1/l2/l3/l4/l5/deep.txt"], &[" deep.txt\n"], &[]);
    list_only_r => list("lo_r", "mod", &["-r", "--list-only", "{url}/"], &[" nested/l1/l2/l3/l4/l5/deep.txt\n"], &[]);
    list_only_r_subdir_no_slash => list("lo_r_subdir", "mod", &["-r", "--list-only", "{url}/order"], &[" order/b-/x\n"], &[]);
    list_only_a_subdir => list("lo_a_subdir", "mod", &["-a", "--list-only", "{url}/links/"], &[" rel -> ../size-700\n"], &[]);
    list_only_hidden_module => list("lo_hidden", "hidden", &["--list-only", "{url}/"], &[" size-700\n"], &[]);
    list_only_module_without_slash => list("lo_module_noslash", "mod", &["--list-only", "{url}"], &[" .\n", " size-700\n"], &["deep.txt"]);
    list_only_missing => {
        differential(&Case::new("lo_missing", modules()).args(&["--list-only", "{url}/missing"]).expect_code(23));
    };
}
