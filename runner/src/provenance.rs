//! Where a run's numbers came from: the code, the toolchain, the machine,
//! how busy it was, and the command that asked for them. Recorded in
//! `results.json` so that a figure can be traced and the run repeated
//! (`runner rerun results.json`).
//!
//! Everything is read from the machine the runner runs on (`/proc`, `git`,
//! `rustc`); a value that cannot be read is `None`, never an error: a run
//! outside a git checkout still runs.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The record `results.json` carries under `provenance`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The runner's command line, program name first.
    pub command_line: Vec<String>,
    /// The commit the node binary was built from (`git rev-parse HEAD`).
    pub commit: Option<String>,
    /// Whether tracked files differed from that commit.
    pub dirty: Option<bool>,
    /// `rustc -V` in the workspace (its toolchain file applies).
    pub rustc: Option<String>,
    /// The kernel release (`uname -r`).
    pub kernel: Option<String>,
    /// The first CPU's model name.
    pub cpu_model: Option<String>,
    /// Cores this process may run on.
    pub cores: usize,
    /// The 1-minute load average just before the first point (it still
    /// counts a build that just ended: see `busy_percent_before`).
    pub load_before: Option<f64>,
    /// Percent of the machine's CPU time that was busy over a short sample
    /// just before the first point: other work competing with the run.
    pub busy_percent_before: Option<f64>,
    /// The 1-minute load average after each point, in run order.
    pub load_after_points: Vec<f64>,
    /// Percent of CPU time the hypervisor took (steal) from the first point's
    /// start to the last point's end, every core together.
    pub steal_percent: Option<f64>,
    /// What signatures, checks, MACs and digests cost on this machine,
    /// timed just before the first point ([`crate::bound`]); `None` when
    /// some node ran on another machine (ssh hosts), and in results
    /// recorded before it was.
    #[serde(default)]
    pub unit_costs: Option<crate::bound::UnitCosts>,
}

impl Provenance {
    /// Reads everything but the load during the run (see [`Self::start`]).
    pub fn of_this_machine(workspace: &Path) -> Provenance {
        let git = |args: &[&str]| output(Command::new("git").arg("-C").arg(workspace).args(args));
        let commit = git(&["rev-parse", "HEAD"]);
        let dirty = commit
            .as_ref()
            .and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]))
            .map(|status| !status.is_empty())
            .or(commit.as_ref().map(|_| false));
        Provenance {
            command_line: std::env::args().collect(),
            commit,
            dirty,
            rustc: output(Command::new("rustc").current_dir(workspace).arg("-V")),
            kernel: read("/proc/sys/kernel/osrelease"),
            cpu_model: read("/proc/cpuinfo").and_then(|info| cpu_model(&info)),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_before: None,
            busy_percent_before: None,
            load_after_points: Vec::new(),
            steal_percent: None,
            unit_costs: None,
        }
    }

    /// Marks the start of the run: the load average, how busy the machine
    /// is over [`BUSY_SAMPLE`], and the CPU counters the steal time is
    /// measured from.
    pub fn start(&mut self) -> CpuTicks {
        self.load_before = load_average();
        let before = CpuTicks::now();
        std::thread::sleep(BUSY_SAMPLE);
        let now = CpuTicks::now();
        self.busy_percent_before = before.busy_percent_until(&now);
        now
    }

    /// After each point: its load average, and the steal time so far.
    pub fn point_done(&mut self, since: &CpuTicks) {
        if let Some(load) = load_average() {
            self.load_after_points.push(load);
        }
        self.steal_percent = since.steal_percent_until(&CpuTicks::now());
    }
}

/// How long [`Provenance::start`] watches the machine's CPU time before the
/// first point.
pub const BUSY_SAMPLE: std::time::Duration = std::time::Duration::from_millis(250);

/// The machine's CPU time counters (`/proc/stat`), in clock ticks.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTicks {
    total: u64,
    /// Idle and waiting for I/O.
    idle: u64,
    steal: u64,
}

impl CpuTicks {
    fn now() -> CpuTicks {
        read("/proc/stat")
            .and_then(|stat| cpu_ticks(&stat))
            .unwrap_or_default()
    }

    fn busy_percent_until(&self, later: &CpuTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let idle = later.idle.checked_sub(self.idle)?;
        (total > 0).then(|| total.saturating_sub(idle) as f64 * 100.0 / total as f64)
    }

    fn steal_percent_until(&self, later: &CpuTicks) -> Option<f64> {
        let total = later.total.checked_sub(self.total)?;
        let steal = later.steal.checked_sub(self.steal)?;
        (total > 0).then(|| steal as f64 * 100.0 / total as f64)
    }
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    read("/proc/loadavg")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn output(command: &mut Command) -> Option<String> {
    let out = command.stderr(std::process::Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "model name").then(|| value.trim().to_string())
    })
}

/// The aggregate `cpu` line of `/proc/stat`: user nice system idle iowait
/// irq softirq steal ...
fn cpu_ticks(stat: &str) -> Option<CpuTicks> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // Guest time (fields 9 and 10) is already counted in user time.
    let total = fields.iter().take(8).sum();
    Some(CpuTicks {
        total,
        idle: fields.get(3)? + fields.get(4)?,
        steal: *fields.get(7)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_formats() {
        let stat = "cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 50 0 25 400 5 0 0 20 0 0\n";
        let ticks = cpu_ticks(stat).unwrap();
        assert_eq!((ticks.total, ticks.idle, ticks.steal), (1000, 810, 40));
        let later = CpuTicks {
            total: 2000,
            idle: 1560,
            steal: 90,
        };
        assert_eq!(ticks.steal_percent_until(&later), Some(5.0));
        assert_eq!(ticks.busy_percent_until(&later), Some(25.0));
        assert_eq!(ticks.steal_percent_until(&ticks), None);
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
    }

    #[test]
    fn this_machine_is_described() {
        let provenance = Provenance::of_this_machine(crate::cargo::workspace_root());
        assert!(provenance.cores >= 1);
        assert!(!provenance.command_line.is_empty());
        // Linux is what the runtime needs; the kernel is always readable there.
        assert!(provenance.kernel.is_some());
        assert!(
            provenance
                .rustc
                .as_deref()
                .is_some_and(|v| v.starts_with("rustc "))
        );
        // In a git checkout (CI's clone, a developer's tree) the commit is read.
        if crate::cargo::workspace_root().join(".git").exists() {
            let commit = provenance.commit.expect("the commit of a checkout");
            assert_eq!(commit.len(), 40, "{commit}");
            assert!(provenance.dirty.is_some());
        }
    }
}
