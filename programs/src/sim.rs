//! `node sim`: run seeds of a protocol in the simulator.
//!
//! With `--seed N` it runs one seed and prints a report for a person, exiting
//! 1 if the seed failed. With `--seeds COUNT --json` it runs a batch and prints
//! one [`SeedReport`] per line for the runner, which judges the results, so it
//! exits 0 even when seeds fail. A panic inside the simulation (a protocol or
//! simulator bug) is caught and turned into a failed report that carries the
//! panic message, so one bad seed never silently ends a batch.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::{ArgGroup, Args, value_parser};
use protocols::simulate::{Protocol, replay_command, run_seed};
use wire::sim::{FaultCounts, SeedReport};

use crate::panics;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["seed", "seeds"])))]
pub struct SimArgs {
    /// Protocol to simulate, e.g. `unreplicated`.
    #[arg(long)]
    protocol: Protocol,
    /// Run this one seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many consecutive seeds, starting at `--first-seed`.
    #[arg(long, value_parser = value_parser!(u64).range(1..))]
    seeds: Option<u64>,
    /// First seed of a `--seeds` batch.
    #[arg(long, default_value_t = 0, conflicts_with = "seed")]
    first_seed: u64,
    /// Print one JSON report per seed and line, and exit 0 whatever the
    /// outcome (the runner judges).
    #[arg(long)]
    json: bool,
}

/// Runs the seeds `args` names and prints their reports.
pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let (first, count) = match (args.seed, args.seeds) {
        (Some(seed), _) => (seed, 1),
        (None, Some(count)) => (args.first_seed, count),
        (None, None) => unreachable!("clap requires --seed or --seeds"),
    };
    let end = first.checked_add(count).with_context(|| {
        format!("seed range {first} + {count} overflows u64; lower --first-seed or --seeds")
    })?;
    // A person running one seed wants the panic and its backtrace as usual; a
    // batch for the runner keeps stderr quiet and puts the message in the report.
    panics::install_hook(!args.json);

    let mut stdout = std::io::stdout().lock();
    let mut failed = 0u64;
    for seed in first..end {
        let report = run_caught(args.protocol, seed, || run_seed(args.protocol, seed));
        if !report.passed {
            failed += 1;
        }
        let text = if args.json {
            serde_json::to_string(&report).context("encoding a seed report")? + "\n"
        } else if args.seed.is_some() {
            render_report(args.protocol, &report)
        } else {
            render_line(args.protocol, &report)
        };
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .context("writing to stdout")?;
    }
    if !args.json && args.seeds.is_some() {
        writeln!(stdout, "{} of {count} seeds passed", count - failed)
            .context("writing to stdout")?;
    }
    Ok(if args.json || failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `simulate`, turning a panic into a failed report for `seed`.
fn run_caught(protocol: Protocol, seed: u64, simulate: impl FnOnce() -> SeedReport) -> SeedReport {
    let start = Instant::now();
    match panics::catch(simulate) {
        Ok(report) => report,
        Err(message) => SeedReport {
            protocol: protocol.name().to_string(),
            seed,
            passed: false,
            failure: Some(format!("panic: {message}")),
            ops_completed: 0,
            deliveries: 0,
            faults: FaultCounts::default(),
            simulated_ns: 0,
            wall_ns: u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
            trace_hash: String::new(),
        },
    }
}

/// A report for a person: counts, times, the trace hash, and the verdict.
fn render_report(protocol: Protocol, report: &SeedReport) -> String {
    let mut out = String::new();
    let r = report;
    let _ = writeln!(out, "protocol:        {}", r.protocol);
    let _ = writeln!(out, "seed:            {}", r.seed);
    let _ = writeln!(out, "ops completed:   {}", r.ops_completed);
    let _ = writeln!(out, "deliveries:      {}", r.deliveries);
    let _ = writeln!(out, "faults injected: {}", render_faults(&r.faults));
    let _ = writeln!(out, "simulated time:  {:.3} s", seconds(r.simulated_ns));
    let _ = write!(out, "wall time:       {:.3} s", seconds(r.wall_ns));
    if r.wall_ns > 0 && r.simulated_ns > 0 {
        let _ = write!(
            out,
            " ({:.0}x faster than real time)",
            r.simulated_ns as f64 / r.wall_ns as f64
        );
    }
    out.push('\n');
    if !r.trace_hash.is_empty() {
        let _ = writeln!(out, "trace hash: {}", r.trace_hash);
    }
    if r.passed {
        out.push_str("PASSED\n");
    } else {
        let reason = r.failure.as_deref().unwrap_or("(no reason given)");
        let _ = writeln!(out, "FAILED: {reason}");
        let _ = writeln!(out, "replay: {}", replay_command(protocol, r.seed));
    }
    out
}

/// One line per seed, for a batch run by hand without `--json`.
fn render_line(protocol: Protocol, report: &SeedReport) -> String {
    match (&report.failure, report.passed) {
        (_, true) => format!(
            "seed {}: passed, trace hash {}\n",
            report.seed, report.trace_hash
        ),
        (failure, false) => format!(
            "seed {}: FAILED: {}\n  replay: {}\n",
            report.seed,
            failure.as_deref().unwrap_or("(no reason given)"),
            replay_command(protocol, report.seed),
        ),
    }
}

fn render_faults(faults: &FaultCounts) -> String {
    let f = faults;
    format!(
        "{} (dropped {}, duplicated {}, reordered {}, partitions {}, crashes {}, restarts {}, \
         byzantine {})",
        f.total(),
        f.dropped,
        f.duplicated,
        f.reordered,
        f.partitions,
        f.crashes,
        f.restarts,
        f.byzantine,
    )
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(passed: bool) -> SeedReport {
        SeedReport {
            protocol: "unreplicated".to_string(),
            seed: 7,
            passed,
            failure: (!passed).then(|| "linearizability violated".to_string()),
            ops_completed: 10,
            deliveries: 20,
            faults: FaultCounts {
                dropped: 1,
                crashes: 2,
                ..FaultCounts::default()
            },
            simulated_ns: 2_000_000_000,
            wall_ns: 1_000_000,
            trace_hash: "00ff".to_string(),
        }
    }

    #[test]
    fn passed_report_has_trace_hash_line_and_verdict() {
        let text = render_report(Protocol::Unreplicated, &report(true));
        assert!(text.lines().any(|l| l == "trace hash: 00ff"), "{text}");
        assert!(text.lines().any(|l| l == "PASSED"), "{text}");
        assert!(text.contains("faults injected: 3 (dropped 1,"), "{text}");
        assert!(text.contains("2000x faster"), "{text}");
    }

    #[test]
    fn failed_report_names_reason_and_replay_command() {
        let text = render_report(Protocol::Unreplicated, &report(false));
        assert!(text.contains("FAILED: linearizability violated"), "{text}");
        assert!(
            text.contains(
                "replay: cargo run --release -p runner -- sim --protocol unreplicated --seed 7"
            ),
            "{text}"
        );
    }

    #[test]
    fn panic_becomes_failed_report_with_message() {
        panics::install_hook(false);
        let report = run_caught(Protocol::Unreplicated, 42, || {
            panic!("invariant broken: slot 3")
        });
        assert!(!report.passed);
        assert_eq!(report.seed, 42);
        assert_eq!(report.protocol, "unreplicated");
        let failure = report.failure.unwrap();
        assert!(
            failure.starts_with("panic: invariant broken: slot 3 (at "),
            "{failure}"
        );
        assert!(failure.contains("sim.rs"), "{failure}");
    }
}
