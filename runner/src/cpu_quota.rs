//! Equal CPU (`runner bench --equal-cpu`): every node of a point under the
//! same CPU quota, so that protocols compare as if each node had a core (or
//! a part of one) of its own, whatever their node count.
//!
//! On shared cores total CPU decides throughput: a protocol with fewer
//! replicas gets more of the machine per replica, and what a protocol gains
//! by spreading work over replicas does not show. Under a quota, a node runs
//! at most `cores` of CPU time per unit of wall time, so the busiest node
//! bounds throughput, as it would on a machine of its own.
//!
//! The quota is the kernel's CPU bandwidth control: a cgroup per node
//! process, made by the runner under a group of its own and removed when the
//! point ends (and on Ctrl-C). With cgroup v2 (`cpu.max`) where the unified
//! hierarchy offers the `cpu` controller, else cgroup v1's `cpu` hierarchy
//! (`cpu.cfs_quota_us`, `cpu.cfs_period_us`). It needs write access to the
//! cgroup file system (root, usually) and local or namespace hosts. The
//! period is 10 ms, so a throttled node waits at most that long: a short
//! period costs a little more scheduling, a long one would add its length to
//! tail latencies.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context as _, bail};

use crate::cleanup;

/// The bandwidth period, µs.
pub const PERIOD_US: u64 = 10_000;
/// The least quota the kernel takes, µs per period.
const QUOTA_MIN_US: u64 = 1_000;

/// Which interface the kernel's CPU controller has here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// The runner's own cgroup, holding one group per node under quota.
#[derive(Debug)]
pub struct CpuQuota {
    version: Version,
    /// The runner's group.
    root: PathBuf,
    quota_us: u64,
    /// The node groups made so far.
    groups: Mutex<Vec<PathBuf>>,
    _cleanup: cleanup::Registration,
}

impl CpuQuota {
    /// Makes the runner's group, for nodes of `cores` CPU each (0.5: half a
    /// core). Fails, saying why, where the CPU controller is not there to
    /// use.
    pub fn new(cores: f64) -> anyhow::Result<CpuQuota> {
        if !(cores.is_finite() && cores > 0.0) {
            bail!("--equal-cpu {cores}: the CPU per node must be positive");
        }
        let quota_us = ((cores * PERIOD_US as f64).round() as u64).max(QUOTA_MIN_US);
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .context("--equal-cpu: reading /proc/self/mountinfo")?;
        let (version, mount) = controller(&mountinfo).context(
            "--equal-cpu: no cgroup CPU controller is mounted (cgroup v2 with `cpu` \
             enabled, or cgroup v1's `cpu` hierarchy)",
        )?;
        let root = mount.join(format!("protocol-runner-{}", std::process::id()));
        if version == Version::V2 {
            // Children of the top group may then take the controller.
            write(&mount.join("cgroup.subtree_control"), "+cpu")?;
        }
        fs::create_dir_all(&root).with_context(|| {
            format!(
                "--equal-cpu: making {} (the CPU controller needs root)",
                root.display()
            )
        })?;
        if version == Version::V2 {
            write(&root.join("cgroup.subtree_control"), "+cpu")?;
        }
        let cleanup_root = root.clone();
        Ok(CpuQuota {
            version,
            root,
            quota_us,
            groups: Mutex::new(Vec::new()),
            _cleanup: cleanup::register(move || remove_tree(&cleanup_root)),
        })
    }

    /// The CPU each node may use, in cores.
    pub fn cores(&self) -> f64 {
        self.quota_us as f64 / PERIOD_US as f64
    }

    /// Puts process `pid` (every thread of it, and those it starts later)
    /// under the quota, in a group of its own.
    pub fn admit(&self, pid: u32) -> anyhow::Result<()> {
        let group = self.root.join(format!("node-{pid}"));
        fs::create_dir_all(&group).with_context(|| format!("making {}", group.display()))?;
        self.groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(group.clone());
        match self.version {
            Version::V2 => write(
                &group.join("cpu.max"),
                &format!("{} {PERIOD_US}", self.quota_us),
            )?,
            Version::V1 => {
                write(&group.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                write(&group.join("cpu.cfs_quota_us"), &self.quota_us.to_string())?;
            }
        }
        write(&group.join("cgroup.procs"), &pid.to_string())
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        remove_tree(&self.root);
    }
}

/// Removes the runner's group and its node groups. A group still holding a
/// process cannot be removed; its processes are moved out first (to the
/// runner's parent group, the top of the hierarchy).
fn remove_tree(root: &Path) {
    let Some(top) = root.parent() else { return };
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let group = entry.path();
        if !group.is_dir() {
            continue;
        }
        if let Ok(procs) = fs::read_to_string(group.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = fs::write(top.join("cgroup.procs"), pid);
            }
        }
        let _ = fs::remove_dir(&group);
    }
    let _ = fs::remove_dir(root);
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text)
        .with_context(|| format!("--equal-cpu: writing {text:?} to {}", path.display()))
}

/// Where the CPU controller is mounted, from `/proc/self/mountinfo`: the
/// unified (v2) hierarchy if it offers `cpu`, else the v1 hierarchy that
/// has it.
fn controller(mountinfo: &str) -> Option<(Version, PathBuf)> {
    let mounts: Vec<(&str, &str, &str)> = mountinfo
        .lines()
        .filter_map(|line| {
            // "<id> <parent> <dev> <root> <mount point> <options> ... - <type> <source> <super options>"
            let (before, after) = line.split_once(" - ")?;
            let point = before.split_whitespace().nth(4)?;
            let mut after = after.split_whitespace();
            let kind = after.next()?;
            let options = after.nth(1).unwrap_or("");
            Some((point, kind, options))
        })
        .collect();
    let v2 = mounts.iter().find(|(point, kind, _)| {
        *kind == "cgroup2"
            && fs::read_to_string(Path::new(point).join("cgroup.controllers"))
                .is_ok_and(|list| list.split_whitespace().any(|c| c == "cpu"))
    });
    if let Some((point, _, _)) = v2 {
        return Some((Version::V2, PathBuf::from(point)));
    }
    mounts
        .iter()
        .find(|(_, kind, options)| *kind == "cgroup" && options.split(',').any(|o| o == "cpu"))
        .map(|(point, _, _)| (Version::V1, PathBuf::from(point)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_cpu_hierarchy_is_found_in_mountinfo() {
        let mountinfo = "\
30 25 0:26 / /nonexistent/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
31 25 0:27 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
32 25 0:28 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu
";
        // The unified mount offers no `cpu` (it is not there to read), so
        // v1's `cpu` hierarchy is the one, not `cpuacct`.
        assert_eq!(
            controller(mountinfo),
            Some((Version::V1, PathBuf::from("/sys/fs/cgroup/cpu")))
        );
        assert_eq!(
            controller("31 25 0:27 / /x rw - cgroup cgroup rw,cpuacct\n"),
            None
        );
    }
}
