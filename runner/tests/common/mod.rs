//! What the integration tests share: the node binary, built once per test
//! binary with the runner's own cargo helper (the runner cannot depend on
//! `programs`, so cargo's `CARGO_BIN_EXE_node` is not available here).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The release `node` binary, built on first use.
pub fn node_binary() -> &'static Path {
    static NODE: OnceLock<PathBuf> = OnceLock::new();
    NODE.get_or_init(|| match runner::cargo::build_node() {
        Ok(path) => path,
        Err(error) => panic!("building the node binary: {error:#}"),
    })
}
