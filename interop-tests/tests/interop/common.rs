//! Shared set-up for the interop tests.

use std::path::Path;

use interop_tests::tree::{self, EdgeTree};
use interop_tests::ModuleSpec;

/// The edge tree as module `mod`, in a temp dir the caller keeps alive.
pub fn edge_module() -> (tempfile::TempDir, ModuleSpec, EdgeTree) {
    let mut info = None;
    let (dir, spec) = interop_tests::module_with("mod", |root: &Path| {
        info = Some(tree::build_edge_tree(root));
    });
    (dir, spec, info.expect("tree built"))
}
