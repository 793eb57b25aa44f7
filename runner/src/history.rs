//! A point's key-value history, saved and checked.
//!
//! With the key-value app, the clients node reports the operations on its
//! sampled keys ([`wire::history`]) in its [`FinalReport`]. The runner writes
//! them to `history-<point>.json` ([`file_name`]) in the results folder and
//! runs `node check-history` on the file: the checker
//! (`runtime::check::linearizability`) lives with the protocols, which this
//! crate does not link, and the runner already builds and knows the `node`
//! binary. A history that is not linearizable fails the point with the
//! file's path and the offending key; the file stays for a person to read.
//!
//! [`FinalReport`]: wire::control::FinalReport

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use wire::history::{History, HistoryVerdict};

use crate::experiment::Point;

/// A history that was checked and found linearizable, as a point's results
/// record it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryChecked {
    /// The file's name in the results folder (a run that keeps no folder
    /// checked it in a temporary one and removed it).
    pub file: PathBuf,
    /// Operations recorded, and of them those that completed.
    pub ops: usize,
    pub completed: usize,
    /// Keys sampled, and of them keys with at least one operation.
    pub keys: usize,
    pub keys_with_ops: usize,
    /// If a bound was reached, the cut (ms since the clients started):
    /// the history covers the run up to there.
    pub cut_ms: Option<u64>,
}

impl HistoryChecked {
    /// `linearizable: 1234 operations (1200 completed) on 8 keys`, with the
    /// cut if there was one.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "linearizable: {} operations ({} completed) on {} of {} sampled keys",
            self.ops, self.completed, self.keys_with_ops, self.keys
        );
        if let Some(cut) = self.cut_ms {
            text.push_str(&format!(", up to {cut} ms (the history's bound)"));
        }
        text
    }
}

/// `history-<index>-<protocol>[-<setting>=<value>...]-c<clients>[-r<rate>]-t<trial>.json`:
/// the point's place in its run first, so the files sort in run order.
pub fn file_name(index: usize, point: &Point) -> String {
    let mut name = format!("history-{index:02}-{}", point.protocol);
    for (setting, value) in &point.variant {
        name.push_str(&format!("-{setting}={value}"));
    }
    name.push_str(&format!("-c{}", point.clients));
    if let Some(rate) = point.rate {
        name.push_str(&format!("-r{rate}"));
    }
    name.push_str(&format!("-t{}.json", point.trial));
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Saves and checks the history of the point `index` of a run: into
/// `histories` as [`file_name`], or, with `None`, into a temporary folder
/// from which a history that passes is removed (one that fails stays, and
/// the error names it).
pub fn check_point(
    history: &History,
    index: usize,
    point: &Point,
    histories: Option<&Path>,
    node_binary: &Path,
) -> anyhow::Result<HistoryChecked> {
    let name = file_name(index, point);
    let Some(dir) = histories else {
        // One folder per check: checks may run side by side in a process.
        static CHECKS: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "runner-histories-{}-{}",
            std::process::id(),
            CHECKS.fetch_add(1, Ordering::Relaxed)
        ));
        let path = dir.join(&name);
        let mut checked = save_and_check(history, &path, node_binary)?;
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
        checked.file = PathBuf::from(name);
        return Ok(checked);
    };
    let mut checked = save_and_check(history, &dir.join(&name), node_binary)?;
    checked.file = PathBuf::from(name);
    Ok(checked)
}

/// Writes `history` to `path` (one line of JSON) and checks it
/// ([`check_file`]).
pub fn save_and_check(
    history: &History,
    path: &Path,
    node_binary: &Path,
) -> anyhow::Result<HistoryChecked> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut json = serde_json::to_vec(history).context("serializing the history")?;
    json.push(b'\n');
    std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    let mut checked = check_file(path, node_binary)?;
    checked.cut_ms = history.cut_ns.map(|ns| ns / 1_000_000);
    Ok(checked)
}

/// Runs `node check-history path`: the figures if the history is
/// linearizable; otherwise an error naming the file and the key, with the
/// checker's report.
pub fn check_file(path: &Path, node_binary: &Path) -> anyhow::Result<HistoryChecked> {
    let output = Command::new(node_binary)
        .arg("check-history")
        .arg(path)
        .output()
        .with_context(|| format!("running {} check-history", node_binary.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let verdict: Option<HistoryVerdict> = std::str::from_utf8(&output.stdout)
        .ok()
        .and_then(|text| text.lines().next())
        .and_then(|line| serde_json::from_str(line).ok());
    let Some(verdict) = verdict else {
        bail!(
            "checking the history in {} failed ({}): {}",
            path.display(),
            output.status,
            stderr.trim()
        );
    };
    if let Some(violation) = &verdict.violation {
        let key = verdict
            .key
            .as_deref()
            .map_or_else(String::new, |key| format!(" on key {key:?}"));
        bail!(
            "the history is not linearizable{key}; it is in {}\n{violation}",
            path.display()
        );
    }
    if !output.status.success() {
        bail!(
            "checking the history in {} failed ({}): {}",
            path.display(),
            output.status,
            stderr.trim()
        );
    }
    Ok(HistoryChecked {
        file: path.to_path_buf(),
        ops: verdict.ops,
        completed: verdict.completed,
        keys: verdict.keys,
        keys_with_ops: verdict.keys_with_ops,
        cut_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_name_the_point_and_keep_to_safe_characters() {
        let point = Point {
            protocol: "pbft".to_string(),
            variant: vec![("pbft.batch_max".to_string(), 16)],
            clients: 100,
            rate: None,
            trial: 2,
        };
        assert_eq!(
            file_name(3, &point),
            "history-03-pbft-pbft.batch_max=16-c100-t2.json"
        );
        let point = Point {
            protocol: "a/b c".to_string(),
            variant: Vec::new(),
            clients: 1,
            rate: Some(500),
            trial: 1,
        };
        assert_eq!(file_name(12, &point), "history-12-a_b_c-c1-r500-t1.json");
    }
}
