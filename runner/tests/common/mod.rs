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

/// Both protocols at two client counts, two trials each, short points, run
/// through the runner on `provider`'s hosts; checks that every point ran and
/// completed operations. `context` is added to a failure (an sshd log, say).
#[allow(dead_code)] // Not every test binary sweeps.
pub fn sweep_points_and_trials(
    provider: &mut dyn runner::hosts::Provider,
    context: &dyn Fn() -> String,
) {
    use indicatif::{MultiProgress, ProgressDrawTarget};
    use runner::experiment::{Experiment, Sweep};
    use std::time::Duration;

    let experiment = Experiment {
        name: "sweep".to_string(),
        sweep: Sweep::Clients(vec![1, 4]),
        trials: 2,
        duration: Duration::from_millis(1200),
        warmup: Duration::from_millis(200),
        cooldown: Duration::from_millis(100),
        ..Experiment::default_comparison()
    };
    let progress = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    let results = runner::run::run_experiment(&experiment, provider, node_binary(), &progress)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", context()));
    assert_eq!(results.points.len(), experiment.points().len());
    assert_eq!(results.points.len(), 2 * 2 * 2);
    for point in &results.points {
        assert!(
            point.measured_ops > 0,
            "{} {}: no operation",
            point.protocol,
            point.clients
        );
    }
}
