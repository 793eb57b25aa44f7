//! The timeline of a real run reaches the results: a one-point unreplicated
//! run on loopback reports every 100 ms, its clients bin every completion,
//! and the saved files have `timeline.csv`, the bins in `results.json` and
//! the point's timeline plot. With a fault record added afterwards (no fault
//! is applied: the figures are computed from the real bins), the files
//! gain `recovery.csv` with a pre-fault rate.

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressDrawTarget};
use runner::experiment::Experiment;
use runner::hosts::LocalHosts;
use runner::results::{FaultRecord, RunResults};
use runner::run::run_experiment;
use wire::control::COMPLETION_BIN_MS;

#[test]
fn a_real_runs_timeline_reaches_the_results_files() {
    let experiment = Experiment {
        name: "timeline".to_string(),
        report_interval: Experiment::default_comparison().report_interval,
        ..common::unreplicated(8, Duration::from_secs(2))
    };
    assert_eq!(experiment.report_interval, Duration::from_millis(100));
    let top =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("timeline-{}", std::process::id()));
    let dir = top.join("run");
    let _ = fs::remove_dir_all(&top);
    let progress = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    let results = run_experiment(
        &experiment,
        &mut LocalHosts,
        common::node_binary(),
        &progress,
        &mut |so_far| runner::save::write_all(&dir, so_far).map(|_| ()),
    )
    .unwrap_or_else(|error| panic!("{error:#}"));
    let point = &results.points[0];

    // Reports every 100 ms for 2 s: a scheduler that falls behind skips a
    // report rather than bunching them, so expect most, not all.
    assert!(point.intervals.len() >= 10, "{:?}", point.intervals);
    let completions = &point.completions;
    assert_eq!(completions.bin_ms, COMPLETION_BIN_MS);
    let bins = completions.counts.len() as u64;
    assert!(
        (150..=400).contains(&bins),
        "{bins} bins of {COMPLETION_BIN_MS} ms for a 2 s run"
    );
    let binned: u64 = completions.counts.iter().map(|&n| u64::from(n)).sum();
    let reported: u64 = point.intervals.iter().map(|i| i.ops).sum();
    assert!(binned >= reported && binned >= point.measured_ops && binned > 0);
    // The bins start on the clients node's clock, after it started.
    assert!(completions.start_us < 2_000_000);

    let csv = fs::read_to_string(dir.join("timeline.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("protocol,variant,clients")
    );
    assert_eq!(lines.count(), point.intervals.len());
    assert!(!dir.join("recovery.csv").exists());
    for ext in ["svg", "png"] {
        let plot = dir.join(format!("timeline-unreplicated-8c-t1.{ext}"));
        assert!(
            fs::metadata(&plot).unwrap().len() > 1000,
            "{}",
            plot.display()
        );
    }
    let back: RunResults =
        serde_json::from_str(&fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(&back.points[0].completions, completions);

    // A fault record a second into the run, on the real bins.
    let mut faulted = results.clone();
    faulted.points[0].faults = vec![FaultRecord {
        at_ms: 1_000,
        label: "nothing applied".to_string(),
    }];
    let dir = top.join("faulted");
    runner::save::write_all(&dir, &faulted).unwrap();
    let recovery = fs::read_to_string(dir.join("recovery.csv")).unwrap();
    let rows: Vec<&str> = recovery.lines().collect();
    assert_eq!(rows.len(), 2, "{recovery}");
    let cells: Vec<&str> = rows[1].split(',').collect();
    assert_eq!(cells[6], "nothing applied");
    let pre_fault: f64 = cells[7].parse().unwrap();
    assert!(pre_fault > 0.0, "{recovery}");
    assert_ne!(cells[10], "no pre-fault rate", "{recovery}");
    let _ = fs::remove_dir_all(&top);
}
