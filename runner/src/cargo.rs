//! Building the node binary with cargo, and finding where cargo put it.
//!
//! The path comes from cargo's own JSON messages rather than from a guess at
//! `target/release/node`, so it is right whatever `CARGO_TARGET_DIR` or
//! `build.target-dir` says.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The name of the binary target every role runs as.
const NODE_BIN: &str = "node";

/// The workspace root: the runner crate's parent folder.
pub fn workspace_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// How to build the node binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// Release: what benchmarks and real runs use.
    Release,
    /// The `planted` profile with the `planted-bugs` feature: release
    /// optimisations, debug assertions on, known bugs behind `--planted`.
    Planted,
}

/// Builds the node binary in release mode and returns its path. Cargo's
/// progress and any compiler messages go to stderr as usual.
pub fn build_node() -> anyhow::Result<PathBuf> {
    build_node_as(Build::Release)
}

/// Builds the node binary as `build` says and returns its path.
pub fn build_node_as(build: Build) -> anyhow::Result<PathBuf> {
    // Under `cargo run`, `CARGO` names the cargo that started us.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let profile: &[&str] = match build {
        Build::Release => &["--release"],
        Build::Planted => &["--profile", "planted", "--features", "planted-bugs"],
    };
    let mut child = Command::new(&cargo)
        .current_dir(workspace_root())
        .arg("build")
        .args(profile)
        .args(["-p", "programs", "--bin", NODE_BIN])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!(
                "running {} to build the node binary",
                cargo.to_string_lossy()
            )
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let executable = node_executable(BufReader::new(stdout)).context("reading cargo's messages");
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("building the node binary failed ({status}); cargo's messages are above");
    }
    executable?.context("cargo built the node binary but named no executable for it")
}

/// Finds the node executable in cargo's `--message-format=json` output: the
/// last `compiler-artifact` message for the binary target named `node`.
/// Lines that are not JSON messages are skipped.
pub fn node_executable(messages: impl BufRead) -> io::Result<Option<PathBuf>> {
    let mut executable = None;
    for line in messages.lines() {
        let line = line?;
        let Ok(message) = serde_json::from_str::<Message>(&line) else {
            continue;
        };
        if message.reason != "compiler-artifact" {
            continue;
        }
        let Some(target) = message.target else {
            continue;
        };
        if target.name == NODE_BIN
            && target.kind.iter().any(|k| k == "bin")
            && let Some(path) = message.executable
        {
            executable = Some(path);
        }
    }
    Ok(executable)
}

/// The fields of a cargo JSON message this module reads.
#[derive(Debug, Deserialize)]
struct Message {
    reason: String,
    target: Option<Target>,
    executable: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct Target {
    name: String,
    #[serde(default)]
    kind: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Abridged from real `cargo build --message-format=json-render-diagnostics`
    // output.
    const MESSAGES: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/wire#0.1.0","manifest_path":"/w/wire/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"wire","src_path":"/w/wire/src/lib.rs","edition":"2024","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"3"},"features":[],"filenames":["/t/release/libwire.rlib"],"executable":null,"fresh":true}
{"reason":"compiler-message","package_id":"path+file:///w/programs#0.1.0","message":{"rendered":"warning: unused"}}
{"reason":"compiler-artifact","package_id":"path+file:///w/programs#0.1.0","manifest_path":"/w/programs/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"node","src_path":"/w/programs/src/main.rs","edition":"2024","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"3"},"features":[],"filenames":["/custom/target/release/node"],"executable":"/custom/target/release/node","fresh":false}
{"reason":"build-finished","success":true}
"#;

    #[test]
    fn finds_node_executable_among_messages() {
        let found = node_executable(MESSAGES.as_bytes()).unwrap();
        assert_eq!(found, Some(PathBuf::from("/custom/target/release/node")));
    }

    #[test]
    fn skips_lines_that_are_not_json() {
        let input = format!("Compiling something\n\n{MESSAGES}not json either\n");
        let found = node_executable(input.as_bytes()).unwrap();
        assert_eq!(found, Some(PathBuf::from("/custom/target/release/node")));
    }

    #[test]
    fn no_node_artifact_gives_none() {
        let input = MESSAGES
            .lines()
            .filter(|l| !l.contains(r#""name":"node""#))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(node_executable(input.as_bytes()).unwrap(), None);
    }

    #[test]
    fn a_library_named_node_is_not_the_binary() {
        let input = r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"node"},"executable":null}"#;
        assert_eq!(node_executable(input.as_bytes()).unwrap(), None);
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("programs").is_dir());
    }
}
