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

/// Both protocols at two client counts, two trials each, the baseline in
/// memory and durable, short points, run through the runner on `provider`'s
/// hosts; checks that every point ran and completed operations, and that
/// the durable points (only they) committed to their state files. `context` is added to a failure (an sshd log, say).
#[allow(dead_code)] // Not every test binary sweeps.
pub fn sweep_points_and_trials(
    provider: &mut dyn runner::hosts::Provider,
    context: &dyn Fn() -> String,
) {
    use indicatif::{MultiProgress, ProgressDrawTarget};
    use runner::experiment::{Experiment, FSYNC, Setting, Sweep};
    use std::time::Duration;

    // The baseline in memory and durable (its state file where the host
    // keeps the node's run directory), fsync off to keep the points short.
    let settings = vec![
        Setting {
            name: "unreplicated.durable".to_string(),
            values: vec![0, 1],
        },
        Setting {
            name: FSYNC.to_string(),
            values: vec![0],
        },
    ];
    let experiment = Experiment {
        name: "sweep".to_string(),
        sweep: Sweep::Clients(vec![1, 4]),
        trials: 2,
        duration: Duration::from_millis(1200),
        warmup: Duration::from_millis(200),
        cooldown: Duration::from_millis(100),
        settings,
        ..Experiment::default_comparison()
    };
    let progress = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    let results =
        runner::run::run_experiment(&experiment, provider, node_binary(), &progress, &mut |_| {
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", context()));
    assert_eq!(results.points.len(), experiment.points().len());
    // Clients × trials × (the baseline's two variants, and every other
    // protocol once).
    let others = runner::experiment::PROTOCOLS.len() - 1;
    assert_eq!(results.points.len(), 2 * 2 * (2 + others));
    for point in &results.points {
        assert!(
            point.measured_ops > 0,
            "{} {}: no operation",
            runner::experiment::series(&point.protocol, &point.variant),
            point.clients
        );
        // The baseline's durable variant persists, and so does HotStuff
        // always (its vote record before every vote); the others never.
        let durable = point
            .variant
            .iter()
            .any(|(name, v)| name == "unreplicated.durable" && *v == 1)
            || point.protocol == wire::hotstuff::SPEC.name;
        let committed = point
            .counters
            .get("durable: writes committed")
            .copied()
            .unwrap_or(0);
        assert_eq!(
            committed > 0,
            durable,
            "{} {}: {committed} writes committed",
            runner::experiment::series(&point.protocol, &point.variant),
            point.clients
        );
    }
}

/// One point of the unreplicated baseline, as the single-point tests run it:
/// `clients` closed-loop clients on one thread for `duration`, nothing
/// trimmed, 8-byte null operations, a resend interval of 100 ms, a report
/// every 200 ms, spin-then-block idling and whichever transport the kernel
/// offers. With the replica on this machine (local or in a namespace) and
/// two cores, the runner pins the replica to core 0 and the clients to core 1.
#[allow(dead_code)] // Not every test binary runs a single point.
pub fn unreplicated(clients: u32, duration: std::time::Duration) -> runner::experiment::Experiment {
    use runner::experiment::{BASELINE, Experiment, Sweep};
    use std::time::Duration;
    use wire::control::{AppConfig, Idle, TransportKind, Workload};

    Experiment {
        name: "unreplicated".to_string(),
        protocols: vec![BASELINE.to_string()],
        f: 0,
        sweep: Sweep::Clients(vec![clients]),
        duration,
        warmup: Duration::ZERO,
        cooldown: Duration::ZERO,
        trials: 1,
        replica_threads: None,
        client_threads: None,
        idle: Idle::SpinThenBlock { spin_us: 50 },
        transport: TransportKind::Auto,
        app: AppConfig::Null,
        workload: Workload::Null {
            op_size: 8,
            reply_size: 0,
        },
        settings: Vec::new(),
        resend: Duration::from_millis(100),
        report_interval: Duration::from_millis(200),
        ..Experiment::default_comparison()
    }
}

/// The one point of an experiment that has one.
#[allow(dead_code)]
pub fn only_point(experiment: &runner::experiment::Experiment) -> runner::experiment::Point {
    let mut points = experiment.points();
    assert_eq!(points.len(), 1, "{points:?}");
    points.remove(0)
}

/// Says that a test skips, and why, where cargo shows it even for a test
/// that passes (straight to the standard error, not through the test
/// harness's capture). Under CI (`CI=true`), a test whose prerequisite
/// `.ci/run` installs (`ci_installs`) must not skip: it fails instead.
#[allow(dead_code)] // Not every test binary skips.
pub fn skip(test: &str, why: &str, ci_installs: bool) {
    use std::io::Write;
    if ci_installs && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {why}, under CI, where .ci/run installs it: this test must run");
    }
    let _ = writeln!(std::io::stderr(), "skipping {test}: {why}");
}

/// Whether this process runs as root (what network namespaces need).
#[allow(dead_code)]
pub fn is_root() -> bool {
    // The second field of `Uid:` is the effective user id.
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}
