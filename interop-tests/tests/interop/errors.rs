//! Error texts and exit codes.

use interop_tests::{differential, Case};

use crate::common::edge_module;

#[test]
fn unknown_module() {
    interop_tests::require_rsync!();
    let (_src, module, _) = edge_module();
    let (a, _) = differential(
        &Case::new("unknown_module", vec![module])
            .module("nosuch")
            .args(&["-a", "{url}/", "{dest}/"])
            .expect_code(5),
    );
    assert!(
        a.stderr.contains("@ERROR: Unknown module 'nosuch'\n"),
        "{}",
        a.stderr
    );
}
