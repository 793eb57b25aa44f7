//! A node killed in the middle of a sweep: the run ends with an error that
//! says the node was killed and by which signal, and the points finished
//! before it are already on disk.
//!
//! A test binary of its own: it kills a child `node` process of this
//! process, so no other test may have nodes running beside it.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressDrawTarget};
use runner::experiment::{Experiment, Sweep};
use runner::hosts::LocalHosts;
use runner::run::run_experiment;

/// Child processes of this process whose command is `node`.
fn node_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
            // pid (comm) state ppid ...
            let (head, rest) = stat.rsplit_once(") ")?;
            let (pid, comm) = head.split_once(" (")?;
            let ppid = rest.split_whitespace().nth(1)?;
            (comm == "node" && ppid == me).then(|| pid.parse().ok())?
        })
        .collect()
}

#[test]
fn a_node_killed_mid_run_is_named_and_the_finished_points_are_kept() {
    let experiment = Experiment {
        name: "death".to_string(),
        protocols: vec!["unreplicated".to_string()],
        sweep: Sweep::Clients(vec![1, 2, 4]),
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(200),
        cooldown: Duration::from_millis(100),
        ..Experiment::default_comparison()
    };
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("node-death-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let finished = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(Mutex::new(None));
    // Once the first point is on disk, kill a node of the second.
    let killer = {
        let (finished, killed) = (Arc::clone(&finished), Arc::clone(&killed));
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while finished.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            thread::sleep(Duration::from_millis(700));
            if let Some(&pid) = node_children().first() {
                let status = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                if status.is_ok_and(|s| s.success()) {
                    *killed.lock().unwrap() = Some(pid);
                }
            }
        })
    };
    let progress = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    let outcome = run_experiment(
        &experiment,
        &mut LocalHosts,
        common::node_binary(),
        &progress,
        &mut |so_far| {
            runner::save::write_all(&dir, so_far)?;
            finished.store(so_far.points.len(), Ordering::SeqCst);
            Ok(())
        },
    );
    killer.join().unwrap();
    assert!(killed.lock().unwrap().is_some(), "no node to kill");
    let error = format!("{:#}", outcome.expect_err("the run went on without a node"));
    assert!(error.contains("SIGKILL"), "{error}");
    assert_eq!(finished.load(Ordering::SeqCst), 1, "{error}");
    let csv = fs::read_to_string(dir.join("results.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        2,
        "a header and the first point:\n{csv}"
    );
    let _ = fs::remove_dir_all(&dir);
}
