//! Listings: module list and `--list-only`.

use interop_tests::{differential, Case};

use crate::common::edge_module;

#[test]
fn module_list() {
    interop_tests::require_rsync!();
    let (_src, module, _) = edge_module();
    let path = module.path.clone();
    let modules = vec![
        module.with("comment", "the edge tree"),
        interop_tests::ModuleSpec::new("other", &path).with("comment", "second module"),
        interop_tests::ModuleSpec::new("hidden", &path).with("list", "no"),
    ];
    let (a, _) = differential(
        &Case::new("module_list", modules)
            .args(&["{root}"])
            .expect_code(0),
    );
    assert!(
        a.stdout.contains("mod            \tthe edge tree\n"),
        "{:?}",
        a.stdout
    );
    assert!(
        a.stdout.contains("other          \tsecond module\n"),
        "{:?}",
        a.stdout
    );
    assert!(!a.stdout.contains("hidden"), "{:?}", a.stdout);
}

#[test]
fn list_only_module_root() {
    interop_tests::require_rsync!();
    let (_src, module, _) = edge_module();
    let (a, _) = differential(
        &Case::new("list_only_module_root", vec![module])
            .args(&["--list-only", "{url}/"])
            .expect_code(0),
    );
    assert!(a.stdout.contains(" size-700\n"), "{}", a.stdout);
    assert!(
        !a.stdout.contains("deep.txt"),
        "not recursive: {}",
        a.stdout
    );
}

#[test]
fn list_only_recursive() {
    interop_tests::require_rsync!();
    let (_src, module, _) = edge_module();
    let (a, _) = differential(
        &Case::new("list_only_recursive", vec![module])
            .args(&["-a", "--list-only", "{url}/"])
            .expect_code(0),
    );
    assert!(
        a.stdout.contains(" nested/l1/l2/l3/l4/l5/deep.txt\n"),
        "{}",
        a.stdout
    );
    assert!(
        a.stdout.contains(" links/rel -> ../size-700\n"),
        "{}",
        a.stdout
    );
}
