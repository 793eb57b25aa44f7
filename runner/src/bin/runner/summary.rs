//! Totals over a batch of simulated seeds, and the summary a person reads.

use std::fmt::Write as _;
use std::ops::Range;
use std::time::Duration;

use runner::results::thousands;
use wire::sim::{FaultCounts, Profile, SeedReport, replay_command as replay};

/// How many failed seeds the summary lists one by one.
pub const FAILURES_SHOWN_MAX: usize = 10;

/// How many of the slowest seeds the summary lists.
pub const SLOWEST_SHOWN: usize = 5;

/// Totals over the seeds of one batch, and what went wrong.
#[derive(Debug)]
pub struct Summary {
    pub protocol: String,
    pub profile: Profile,
    /// The bug planted for the batch, if any.
    pub planted: Option<String>,
    /// Seeds with at least one fault of each kind, in [`FaultCounts::kinds`]
    /// order.
    pub seeds_with: Vec<(&'static str, u64)>,
    /// The slowest seeds by simulated time: `(seed, simulated, longest op)`,
    /// slowest first.
    pub slowest: Vec<(u64, u64, u64)>,
    /// Seeds the batch asked for.
    pub seeds: u64,
    pub passed: u64,
    /// Failed seeds, with their reasons, in the order they were reported.
    pub failures: Vec<(u64, String)>,
    pub ops_completed: u64,
    pub deliveries: u64,
    pub faults: FaultCounts,
    pub simulated_ns: u64,
    /// Wall time the seeds took, summed over all workers.
    pub seed_wall_ns: u64,
    /// Worker processes that died or misbehaved.
    pub worker_failures: Vec<WorkerFailure>,
}

/// A worker process that did not report every seed of its range cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFailure {
    pub seeds: Range<u64>,
    /// Seeds of the range it reported before it stopped.
    pub reported: u64,
    /// What went wrong, e.g. its exit status or an unreadable line.
    pub problem: String,
    /// The last lines it wrote to stderr.
    pub stderr_tail: String,
}

impl Summary {
    pub fn new(protocol: &str, profile: Profile, seeds: u64) -> Summary {
        Summary {
            protocol: protocol.to_string(),
            profile,
            planted: None,
            seeds_with: FaultCounts::default()
                .kinds()
                .iter()
                .map(|(name, _)| (*name, 0))
                .collect(),
            slowest: Vec::new(),
            seeds,
            passed: 0,
            failures: Vec::new(),
            ops_completed: 0,
            deliveries: 0,
            faults: FaultCounts::default(),
            simulated_ns: 0,
            seed_wall_ns: 0,
            worker_failures: Vec::new(),
        }
    }

    pub fn add(&mut self, report: &SeedReport) {
        if report.passed {
            self.passed += 1;
        } else {
            let reason = report
                .failure
                .clone()
                .unwrap_or_else(|| "(no reason given)".to_string());
            self.failures.push((report.seed, reason));
        }
        self.ops_completed += report.ops_completed;
        self.deliveries += report.deliveries;
        self.faults.add(&report.faults);
        for ((_, seeds), (_, n)) in self.seeds_with.iter_mut().zip(report.faults.kinds()) {
            *seeds += u64::from(n > 0);
        }
        self.slowest
            .push((report.seed, report.simulated_ns, report.latency_max_ns));
        self.slowest
            .sort_by_key(|&(seed, ns, _)| (std::cmp::Reverse(ns), seed));
        self.slowest.truncate(SLOWEST_SHOWN);
        self.simulated_ns += report.simulated_ns;
        self.seed_wall_ns += report.wall_ns;
    }

    pub fn failed(&self) -> u64 {
        self.failures.len() as u64
    }

    /// Seeds that produced no report, because their worker died.
    pub fn missing(&self) -> u64 {
        self.seeds.saturating_sub(self.passed + self.failed())
    }

    /// Every seed ran and passed, and every worker exited cleanly.
    pub fn is_success(&self) -> bool {
        self.passed == self.seeds && self.failures.is_empty() && self.worker_failures.is_empty()
    }

    /// The summary for a person: totals, rates, then each failure with the
    /// command that replays it.
    pub fn render(&self, elapsed: Duration, workers: usize) -> String {
        let mut out = String::new();
        let mut headline = format!(
            "{} under fault profile {}{}: {} seeds, {} passed, {} failed",
            self.protocol,
            self.profile,
            self.planted
                .as_ref()
                .map(|bug| format!(" with {bug} planted"))
                .unwrap_or_default(),
            thousands(self.seeds),
            thousands(self.passed),
            thousands(self.failed()),
        );
        if self.missing() > 0 {
            let _ = write!(headline, ", {} not run", thousands(self.missing()));
        }
        let _ = writeln!(out, "{headline}");

        let f = &self.faults;
        let elapsed_ns = elapsed.as_nanos().max(1) as f64;
        let _ = writeln!(out, "  ops completed     {}", thousands(self.ops_completed));
        let _ = writeln!(out, "  deliveries        {}", thousands(self.deliveries));
        let kinds: Vec<String> = f
            .kinds()
            .iter()
            .map(|(name, n)| format!("{name} {}", thousands(*n)))
            .collect();
        let _ = writeln!(
            out,
            "  faults injected   {}: {}",
            thousands(f.total()),
            kinds.join(", ")
        );
        let seeds_with: Vec<String> = self
            .seeds_with
            .iter()
            .map(|(name, n)| format!("{name} {}", thousands(*n)))
            .collect();
        let _ = writeln!(out, "  seeds with each   {}", seeds_with.join(", "));
        let _ = writeln!(out, "  simulated time    {}", duration(self.simulated_ns));
        if !self.slowest.is_empty() {
            let slowest: Vec<String> = self
                .slowest
                .iter()
                .map(|&(seed, ns, op)| {
                    format!("{seed} ({}, longest op {})", duration(ns), duration(op))
                })
                .collect();
            let _ = writeln!(out, "  slowest seeds     {}", slowest.join(", "));
        }
        let _ = writeln!(
            out,
            "  wall time         {} on {workers} worker{} ({} of simulation, summed)",
            duration(elapsed.as_nanos() as u64),
            if workers == 1 { "" } else { "s" },
            duration(self.seed_wall_ns),
        );
        let mut speed_up = format!("{:.0}x real time", self.simulated_ns as f64 / elapsed_ns);
        if self.seed_wall_ns > 0 {
            let per_worker = self.simulated_ns as f64 / self.seed_wall_ns as f64;
            let _ = write!(speed_up, " ({per_worker:.0}x per worker)");
        }
        let _ = writeln!(out, "  speed-up          {speed_up}");
        let per_second = self.deliveries as f64 / (elapsed_ns / 1e9);
        let _ = writeln!(
            out,
            "  deliveries/s      {} per wall second",
            thousands(per_second as u64)
        );

        if !self.failures.is_empty() {
            let mut failures = self.failures.clone();
            failures.sort_by_key(|&(seed, _)| seed);
            let shown = failures.len().min(FAILURES_SHOWN_MAX);
            let _ = writeln!(out);
            if shown < failures.len() {
                let _ = writeln!(out, "failed seeds (first {shown} of {}):", failures.len());
            } else {
                let _ = writeln!(out, "failed seeds:");
            }
            for (seed, reason) in &failures[..shown] {
                let _ = writeln!(out, "  seed {seed}: {}", indent_after_first(reason, "    "));
                let _ = writeln!(out, "    replay: {}", self.replay_command(*seed));
            }
        }

        let mut stderr_shown: Vec<&str> = Vec::new();
        for failure in &self.worker_failures {
            let total = failure.seeds.end - failure.seeds.start;
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "worker for seeds {}..{} failed: {}; it reported {} of {total} seeds",
                failure.seeds.start, failure.seeds.end, failure.problem, failure.reported,
            );
            if failure.reported < total {
                let seed = failure.seeds.start + failure.reported;
                let _ = writeln!(
                    out,
                    "  it stopped before finishing seed {seed}; replay: {}",
                    self.replay_command(seed)
                );
            }
            let tail = failure.stderr_tail.trim_end();
            if tail.is_empty() {
                let _ = writeln!(out, "  (nothing on stderr)");
            } else if stderr_shown.contains(&tail) {
                let _ = writeln!(out, "  (stderr as above)");
            } else {
                let _ = writeln!(out, "  stderr, last lines:");
                for line in tail.lines() {
                    let _ = writeln!(out, "  | {line}");
                }
                stderr_shown.push(tail);
            }
        }
        out
    }
}

impl Summary {
    /// The command that replays one seed of this batch.
    pub fn replay_command(&self, seed: u64) -> String {
        replay(&self.protocol, seed, self.profile, self.planted.as_deref())
    }
}

/// A span of nanoseconds in the units a person reads best.
pub fn duration(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 60.0 {
        format!("{s:.3} s")
    } else if s < 3600.0 {
        format!("{} min {:.1} s", (s / 60.0).floor() as u64, s % 60.0)
    } else {
        let minutes = (s / 60.0).floor() as u64;
        format!("{} h {} min", thousands(minutes / 60), minutes % 60)
    }
}

fn indent_after_first(text: &str, indent: &str) -> String {
    text.lines()
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seed: u64, passed: bool) -> SeedReport {
        SeedReport {
            protocol: "unreplicated".to_string(),
            seed,
            passed,
            failure: (!passed).then(|| format!("reply mismatch at seed {seed}")),
            ops_completed: 100,
            deliveries: 1_000,
            faults: FaultCounts {
                dropped: 3,
                duplicated: 2,
                crashes: 1,
                ..FaultCounts::default()
            },
            simulated_ns: 10_000_000_000,
            wall_ns: 10_000_000,
            trace_hash: format!("{seed:016x}"),
            profile: "all".to_string(),
            replicas: 1,
            last_heal_ns: 0,
            liveness_bound_ns: 1,
            latency_max_ns: 2_000_000 * seed,
        }
    }

    #[test]
    fn add_totals_counts_and_faults() {
        let mut summary = Summary::new("unreplicated", Profile::Mix, 3);
        for (seed, passed) in [(0, true), (1, false), (2, true)] {
            summary.add(&report(seed, passed));
        }
        assert_eq!(summary.passed, 2);
        assert_eq!(summary.failed(), 1);
        assert_eq!(summary.missing(), 0);
        assert_eq!(
            summary.failures,
            vec![(1, "reply mismatch at seed 1".to_string())]
        );
        assert_eq!(summary.ops_completed, 300);
        assert_eq!(summary.deliveries, 3_000);
        assert_eq!(summary.faults.dropped, 9);
        assert_eq!(summary.faults.total(), 18);
        assert_eq!(summary.simulated_ns, 30_000_000_000);
        assert_eq!(summary.seed_wall_ns, 30_000_000);
        assert!(!summary.is_success());
    }

    #[test]
    fn all_passed_is_success_and_renders_rates() {
        let mut summary = Summary::new("unreplicated", Profile::Mix, 2);
        summary.add(&report(0, true));
        summary.add(&report(1, true));
        assert!(summary.is_success());
        let text = summary.render(Duration::from_millis(10), 2);
        assert!(
            text.starts_with("unreplicated under fault profile mix: 2 seeds, 2 passed, 0 failed\n"),
            "{text}"
        );
        assert!(
            text.contains("seeds with each   dropped 2, duplicated 2, reordered 0,"),
            "{text}"
        );
        assert!(
            text.contains("slowest seeds     0 (10.000 s, longest op 0.000 s), 1 (10.000 s, longest op 0.002 s)"),
            "{text}"
        );
        assert!(text.contains("ops completed     200\n"), "{text}");
        assert!(
            text.contains("faults injected   12: dropped 6, duplicated 4,"),
            "{text}"
        );
        assert!(text.contains("simulated time    20.000 s\n"), "{text}");
        // 20 s simulated in 10 ms of wall time; 20 ms of seed time summed.
        assert!(
            text.contains("speed-up          2000x real time (1000x per worker)\n"),
            "{text}"
        );
        assert!(
            text.contains("deliveries/s      200,000 per wall second\n"),
            "{text}"
        );
        assert!(!text.contains("failed seeds"), "{text}");
    }

    #[test]
    fn failures_are_listed_by_seed_with_replay_commands_up_to_the_maximum() {
        let mut summary = Summary::new("unreplicated", Profile::Mix, 15);
        for seed in (0..15).rev() {
            summary.add(&report(seed, false));
        }
        let text = summary.render(Duration::from_secs(1), 1);
        assert!(text.contains("failed seeds (first 10 of 15):"), "{text}");
        assert!(text.contains(
            "  seed 0: reply mismatch at seed 0\n    replay: cargo run --release -p runner -- sim \
             --protocol unreplicated --seed 0\n"
        ));
        assert!(text.contains("seed 9:"), "{text}");
        assert!(!text.contains("seed 10:"), "{text}");
    }

    #[test]
    fn worker_failure_names_range_running_seed_and_stderr_once() {
        let mut summary = Summary::new("unreplicated", Profile::Mix, 20);
        for seed in 0..3 {
            summary.add(&report(seed, true));
        }
        for range in [0..10, 10..20] {
            summary.worker_failures.push(WorkerFailure {
                reported: if range.start == 0 { 3 } else { 0 },
                seeds: range,
                problem: "exited with signal 6".to_string(),
                stderr_tail: "fatal runtime error: stack overflow\n".to_string(),
            });
        }
        assert!(!summary.is_success());
        assert_eq!(summary.missing(), 17);
        let text = summary.render(Duration::from_secs(1), 2);
        assert!(text.contains(", 17 not run\n"), "{text}");
        assert!(text.contains(
            "worker for seeds 0..10 failed: exited with signal 6; it reported 3 of 10 seeds"
        ));
        assert!(
            text.contains(
                "stopped before finishing seed 3; replay: cargo run --release -p runner -- sim"
            ),
            "{text}"
        );
        assert!(text.contains("before finishing seed 10;"), "{text}");
        assert_eq!(
            text.matches("| fatal runtime error: stack overflow")
                .count(),
            1,
            "{text}"
        );
        assert!(text.contains("(stderr as above)"), "{text}");
    }

    #[test]
    fn duration_picks_units() {
        assert_eq!(duration(1_500_000), "0.002 s");
        assert_eq!(duration(59_000_000_000), "59.000 s");
        assert_eq!(duration(61_500_000_000), "1 min 1.5 s");
        assert_eq!(
            duration(2 * 3_600_000_000_000 + 5 * 60_000_000_000),
            "2 h 5 min"
        );
    }
}
