//! `node sim`: run seeds of a protocol in the simulator.
//!
//! With `--seed N` it runs one seed and prints a report for a person (with
//! `--trace`, the run's timeline first), exiting 1 if the seed failed. With
//! `--seeds COUNT --json` it runs a batch and prints one [`SeedReport`] per
//! line for the runner, which judges the results, so it exits 0 even when
//! seeds fail. `--faults` picks the fault profile. A panic inside the
//! simulation (a protocol or simulator bug) is caught and turned into a failed
//! report that carries the panic message, so one bad seed never silently ends
//! a batch. A build with the `planted-bugs` feature takes `--planted BUG`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::builder::TypedValueParser;
use clap::{ArgGroup, Args, value_parser};
use protocols::planted::Bug;
use protocols::simulate::{Profile, Protocol, simulate};
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
    /// Fault profile: none, network, crash, byzantine, all, beyond (more
    /// than f faulty: must fail), or mix (one of the first five per seed).
    #[arg(long, default_value = "mix")]
    faults: Profile,
    /// With `--seed`: print the run's timeline (deliveries with sender and
    /// kind, timers, view changes, executions, faults) before the report.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Put a known bug of the protocol back in (builds with the
    /// `planted-bugs` feature only), to see the seeds catch it.
    #[arg(long, value_parser = planted_bug())]
    planted: Option<Bug>,
}

/// Parses `--planted`: any protocol's bug ([`protocols::planted::all`]),
/// listed with what each does in `--help` and in the error for a name that
/// is none of them.
fn planted_bug() -> impl TypedValueParser<Value = Bug> {
    let bugs = protocols::planted::all().map(|bug| {
        clap::builder::PossibleValue::new(bug.name()).help(format!(
            "{}: {}",
            bug.protocol(),
            bug.about()
        ))
    });
    clap::builder::PossibleValuesParser::new(bugs)
        .map(|name| name.parse::<Bug>().expect("one of the possible values"))
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
    if let Some(bug) = args.planted
        && bug.protocol() != args.protocol.name()
    {
        let theirs: Vec<_> = args.protocol.planted().iter().map(|b| b.name()).collect();
        anyhow::bail!(
            "--planted {bug} is a bug of {}, not of {} (whose bugs are: {})",
            bug.protocol(),
            args.protocol,
            if theirs.is_empty() {
                "none".to_string()
            } else {
                theirs.join(", ")
            }
        );
    }
    if args.planted.is_some() && !protocols::planted::AVAILABLE {
        anyhow::bail!(
            "--planted needs a build with planted bugs: cargo run --profile planted \
             -p programs --features planted-bugs -- sim ..."
        );
    }
    // A person running one seed wants the panic and its backtrace as usual; a
    // batch for the runner keeps stderr quiet and puts the message in the report.
    panics::install_hook(!args.json);

    let mut stdout = std::io::stdout().lock();
    let mut failed = 0u64;
    for seed in first..end {
        let mut plan = Vec::new();
        let mut trace = None;
        let profile = args.faults.resolve(seed);
        let report = run_caught(args.protocol, seed, profile, || {
            let outcome = with_planted(args.planted, || {
                simulate(args.protocol, seed, args.faults, args.trace)
            });
            plan = outcome.plan;
            trace = outcome.trace;
            outcome.report
        });
        if !report.passed {
            failed += 1;
        }
        let text = if args.json {
            serde_json::to_string(&report).context("encoding a seed report")? + "\n"
        } else if args.seed.is_some() {
            let mut text = String::new();
            for event in trace.iter().flatten() {
                let _ = writeln!(text, "{event}");
            }
            text + &render_report(args.protocol, args.faults, args.planted, &report, &plan)
        } else {
            render_line(args.protocol, args.faults, args.planted, &report)
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

/// Runs `f` with `bug` planted, where the build can plant bugs.
fn with_planted<T>(bug: Option<Bug>, f: impl FnOnce() -> T) -> T {
    #[cfg(feature = "planted-bugs")]
    {
        protocols::planted::with(bug, f)
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        assert!(bug.is_none(), "checked by the caller");
        f()
    }
}

/// Runs `simulate`, turning a panic into a failed report for `seed`.
fn run_caught(
    protocol: Protocol,
    seed: u64,
    profile: Profile,
    simulate: impl FnOnce() -> SeedReport,
) -> SeedReport {
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
            profile: profile.name().to_string(),
            replicas: 0,
            last_heal_ns: 0,
            liveness_bound_ns: 0,
            latency_max_ns: 0,
        },
    }
}

/// A report for a person: the plan, counts, times, the trace hash, and the
/// verdict.
fn render_report(
    protocol: Protocol,
    profile: Profile,
    planted: Option<Bug>,
    report: &SeedReport,
    plan: &[String],
) -> String {
    let mut out = String::new();
    let r = report;
    let _ = writeln!(out, "protocol:        {} (n = {})", r.protocol, r.replicas);
    let _ = writeln!(out, "seed:            {}", r.seed);
    let _ = writeln!(out, "fault profile:   {}", r.profile);
    for line in plan {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(
        out,
        "last heal:       {:.3} s (clients had {:.3} s from then)",
        seconds(r.last_heal_ns),
        seconds(r.liveness_bound_ns)
    );
    let _ = writeln!(out, "ops completed:   {}", r.ops_completed);
    let _ = writeln!(out, "deliveries:      {}", r.deliveries);
    let _ = writeln!(out, "faults injected: {}", render_faults(&r.faults));
    let _ = writeln!(out, "simulated time:  {:.3} s", seconds(r.simulated_ns));
    let _ = writeln!(out, "longest op:      {:.3} s", seconds(r.latency_max_ns));
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
        let replay = replay(protocol, r.seed, profile, planted);
        let _ = writeln!(out, "replay: {replay}");
        let _ = writeln!(out, "trace:  {replay} --trace");
    }
    out
}

/// One line per seed, for a batch run by hand without `--json`.
fn render_line(
    protocol: Protocol,
    profile: Profile,
    planted: Option<Bug>,
    report: &SeedReport,
) -> String {
    match (&report.failure, report.passed) {
        (_, true) => format!(
            "seed {}: passed, trace hash {}\n",
            report.seed, report.trace_hash
        ),
        (failure, false) => format!(
            "seed {}: FAILED: {}\n  replay: {}\n",
            report.seed,
            failure.as_deref().unwrap_or("(no reason given)"),
            replay(protocol, report.seed, profile, planted),
        ),
    }
}

/// The command that replays `seed`, with the planted bug it ran with.
fn replay(protocol: Protocol, seed: u64, profile: Profile, planted: Option<Bug>) -> String {
    wire::sim::replay_command(
        protocol.name(),
        seed,
        profile,
        planted.map(|bug| bug.name()),
    )
}

fn render_faults(faults: &FaultCounts) -> String {
    let kinds: Vec<String> = faults
        .kinds()
        .iter()
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    format!("{} ({})", faults.total(), kinds.join(", "))
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
            profile: "all".to_string(),
            replicas: 1,
            last_heal_ns: 500_000_000,
            liveness_bound_ns: 1_000_000_000,
            latency_max_ns: 3_000_000,
        }
    }

    #[test]
    fn passed_report_has_trace_hash_line_and_verdict() {
        let text = render_report(
            protocols::unreplicated::PROTOCOL,
            Profile::Mix,
            None,
            &report(true),
            &[],
        );
        assert!(text.lines().any(|l| l == "trace hash: 00ff"), "{text}");
        assert!(text.lines().any(|l| l == "PASSED"), "{text}");
        assert!(text.contains("faults injected: 3 (dropped 1,"), "{text}");
        assert!(
            text.contains("last heal:       0.500 s (clients had 1.000 s"),
            "{text}"
        );
        assert!(text.contains("2000x faster"), "{text}");
    }

    #[test]
    fn failed_report_names_reason_and_replay_command() {
        let text = render_report(
            protocols::unreplicated::PROTOCOL,
            Profile::All,
            None,
            &report(false),
            &[],
        );
        assert!(text.contains("FAILED: linearizability violated"), "{text}");
        assert!(
            text.contains(
                "replay: cargo run --release -p runner -- sim --protocol unreplicated --seed 7 \
                 --faults all"
            ),
            "{text}"
        );
    }

    /// A seed that failed with a bug planted replays with that bug.
    #[test]
    fn replay_commands_name_the_planted_bug() {
        let bug = protocols::planted::all()
            .find(|bug| bug.protocol() == "unreplicated")
            .expect("the baseline declares planted bugs");
        let failed = report(false);
        let line = render_line(
            protocols::unreplicated::PROTOCOL,
            Profile::All,
            Some(bug),
            &failed,
        );
        let full = render_report(
            protocols::unreplicated::PROTOCOL,
            Profile::All,
            Some(bug),
            &failed,
            &[],
        );
        for text in [line, full] {
            assert!(
                text.contains(&format!("--faults all --planted {}", bug.name())),
                "{text}"
            );
        }
    }

    fn sim_args(args: &[&str]) -> Result<SimArgs, clap::Error> {
        #[derive(Debug, clap::Parser)]
        struct Node {
            #[command(flatten)]
            sim: SimArgs,
        }
        let args = ["node"].iter().chain(args);
        <Node as clap::Parser>::try_parse_from(args).map(|node| node.sim)
    }

    /// `--planted` takes any protocol's bug by name, lists them all when
    /// given another, and refuses one of another protocol than the run's.
    #[test]
    fn planted_bugs_are_found_across_the_registry() {
        let args = sim_args(&[
            "--protocol",
            "pbft",
            "--seed",
            "1",
            "--planted",
            "quorum-f-plus-1",
        ])
        .unwrap();
        assert_eq!(args.planted, Some(protocols::pbft::bugs::QUORUM_F_PLUS_1));
        let error = sim_args(&["--protocol", "pbft", "--seed", "1", "--planted", "nope"])
            .unwrap_err()
            .to_string();
        for bug in protocols::planted::all() {
            assert!(error.contains(bug.name()), "{error}");
        }
        let args = sim_args(&[
            "--protocol",
            "pbft",
            "--seed",
            "1",
            "--planted",
            "reply-before-log",
        ])
        .unwrap();
        let error = run(&args).unwrap_err().to_string();
        assert!(
            error.contains("reply-before-log is a bug of unreplicated, not of pbft"),
            "{error}"
        );
        assert!(error.contains("quorum-f-plus-1"), "{error}");
    }

    #[test]
    fn panic_becomes_failed_report_with_message() {
        panics::install_hook(false);
        let report = run_caught(protocols::unreplicated::PROTOCOL, 42, Profile::Mix, || {
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
