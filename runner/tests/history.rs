//! Key-value histories of real runs, checked: a short loopback run of the
//! baseline and of PBFT with the key-value app passes the linearizability
//! check through `node check-history`, and the same history, tampered with,
//! fails it, naming the file and the key.
//!
//! The runs share this machine's two cores, so the tests take turns
//! ([`serial`]).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressDrawTarget};
use runner::experiment::{BASELINE, Experiment, Sweep};
use runner::hosts::LocalHosts;
use wire::control::{AppConfig, KeyDistribution, KvWorkload, Workload};
use wire::history::{History, HistoryOp};
use wire::kv::{Op, OpResult};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `protocol` alone, 16 clients on 128 keys (8 sampled) with a Zipf
/// distribution (the hottest, `k0`, sampled and contended), half gets,
/// short.
fn experiment(protocol: &str) -> Experiment {
    Experiment {
        name: "history".to_string(),
        protocols: vec![protocol.to_string()],
        sweep: Sweep::Clients(vec![16]),
        duration: Duration::from_millis(1500),
        warmup: Duration::from_millis(200),
        cooldown: Duration::from_millis(100),
        trials: 1,
        client_threads: None,
        app: AppConfig::Kv,
        workload: Workload::Kv(KvWorkload {
            keys: 128,
            value_size: 32,
            read_ratio: 0.5,
            distribution: KeyDistribution::Zipf { exponent: 1.0 },
        }),
        resend: Duration::from_millis(100),
        report_interval: Duration::from_millis(200),
        ..Experiment::default_comparison()
    }
}

/// Runs `protocol` through the runner, histories into `dir`; checks what
/// the results say of the history and returns it, as saved.
fn run_and_check(protocol: &str, dir: &Path) -> History {
    let _turn = serial();
    let experiment = experiment(protocol);
    let progress = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    let results = runner::run::run_experiment_saving(
        &experiment,
        &runner::run::now_rfc3339(),
        &mut LocalHosts,
        common::node_binary(),
        &progress,
        dir,
        &mut |_| Ok(()),
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    let point = results
        .points
        .iter()
        .find(|point| point.protocol == protocol)
        .expect("the protocol's point");
    let checked = point.history.as_ref().expect("a kv run checks its history");
    eprintln!("{protocol}: {}", checked.summary());
    assert_eq!(checked.keys, 8);
    assert!(checked.keys_with_ops >= 2, "{checked:?}");
    assert!(checked.completed > 100, "{checked:?}");
    assert!(checked.ops >= checked.completed);
    let text = std::fs::read(dir.join(&checked.file)).expect("the history file");
    let history: History = serde_json::from_slice(&text).expect("a history");
    assert_eq!(history.ops.len(), checked.ops);
    history
}

/// A fresh folder under the system's temporary one.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("history-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One history of a real PBFT run, shared by the tampering tests.
fn pbft_history() -> &'static History {
    static HISTORY: OnceLock<History> = OnceLock::new();
    HISTORY.get_or_init(|| run_and_check("pbft", &scratch("pbft")))
}

fn decoded(op: &HistoryOp) -> (Op, Option<(u64, OpResult)>) {
    let decoded_op = wire::decode::<Op>(&op.op).unwrap();
    let result = op
        .completed
        .as_ref()
        .map(|(at, bytes)| (*at, wire::decode::<OpResult>(bytes).unwrap()));
    (decoded_op, result)
}

fn encode(result: &OpResult) -> Vec<u8> {
    wire::codec::encode_to_vec(result).unwrap()
}

/// Checks `history` as a run would (saved in `dir`), expecting a violation
/// on some key: the error names the file, which holds the history.
fn expect_violation(history: &History, dir: &Path, what: &str) {
    let point = common::only_point(&experiment("pbft"));
    let error = runner::history::check_point(history, 0, &point, Some(dir), common::node_binary())
        .expect_err(what);
    let text = format!("{error:#}");
    let file = dir.join(runner::history::file_name(0, &point));
    assert!(text.contains(&file.display().to_string()), "{what}: {text}");
    assert!(text.contains("on key \"k"), "{what}: {text}");
    assert!(text.contains("not linearizable"), "{what}: {text}");
    let saved: History = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        &saved, history,
        "{what}: the file holds the history checked"
    );
    eprintln!("{what}: {text}");
}

#[test]
fn an_unreplicated_kv_run_is_linearizable() {
    let dir = scratch("unreplicated");
    run_and_check(BASELINE, &dir);
}

#[test]
fn a_pbft_kv_run_is_linearizable() {
    assert!(pbft_history().completed() > 100);
}

/// A read's result changed to a value no put wrote fails the check.
#[test]
fn a_read_of_a_value_never_written_fails() {
    let mut history = pbft_history().clone();
    let read = history
        .ops
        .iter_mut()
        .find(|op| matches!(decoded(op), (Op::Get { .. }, Some(_))))
        .expect("a completed get");
    let at = read.completed.as_ref().unwrap().0;
    read.completed = Some((
        at,
        encode(&OpResult::Value(Some(b"never written".to_vec()))),
    ));
    expect_violation(&history, &scratch("never-written"), "a value never written");
}

/// Two puts on a key one after the other, and a read after both: the read
/// made to return the first put's value (overwritten by the second) fails
/// the check.
#[test]
fn a_read_of_an_overwritten_value_fails() {
    let mut history = pbft_history().clone();
    let mut by_key: BTreeMap<Vec<u8>, Vec<usize>> = BTreeMap::new();
    for (i, op) in history.ops.iter().enumerate() {
        by_key
            .entry(decoded(op).0.key().to_vec())
            .or_default()
            .push(i);
    }
    let mut found = None;
    'keys: for indices in by_key.values() {
        let completed_puts: Vec<(usize, u64, u64, Vec<u8>)> = indices
            .iter()
            .filter_map(|&i| match decoded(&history.ops[i]) {
                (Op::Put { value, .. }, Some((done, _))) => {
                    Some((i, history.ops[i].invoked_ns, done, value))
                }
                _ => None,
            })
            .collect();
        for first in &completed_puts {
            let Some(second) = completed_puts.iter().find(|p| p.1 > first.2) else {
                continue;
            };
            let read = indices.iter().copied().find(|&i| {
                matches!(decoded(&history.ops[i]), (Op::Get { .. }, Some(_)))
                    && history.ops[i].invoked_ns > second.2
            });
            if let Some(read) = read {
                found = Some((read, first.3.clone()));
                break 'keys;
            }
        }
    }
    let (read, overwritten) = found.expect("two puts in a row and a read after them");
    let at = history.ops[read].completed.as_ref().unwrap().0;
    history.ops[read].completed = Some((at, encode(&OpResult::Value(Some(overwritten)))));
    expect_violation(&history, &scratch("overwritten"), "an overwritten value");
}

/// `node check-history` on a tampered file exits 1 and says why on its
/// standard output; on the untampered one it exits 0.
#[test]
fn the_subcommand_says_no_to_a_tampered_file() {
    let dir = scratch("subcommand");
    let good = dir.join("good.json");
    std::fs::write(&good, serde_json::to_vec(pbft_history()).unwrap()).unwrap();
    let run = |path: &Path| {
        std::process::Command::new(common::node_binary())
            .arg("check-history")
            .arg(path)
            .output()
            .unwrap()
    };
    let output = run(&good);
    assert!(output.status.success(), "{output:?}");
    let verdict: wire::history::HistoryVerdict = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict.violation, None);
    assert_eq!(verdict.ops, pbft_history().ops.len());

    // A completed put answered with the wrong kind of result.
    let mut history = pbft_history().clone();
    let put = history
        .ops
        .iter_mut()
        .find(|op| matches!(decoded(op), (Op::Put { .. }, Some(_))))
        .expect("a completed put");
    let at = put.completed.as_ref().unwrap().0;
    put.completed = Some((at, encode(&OpResult::Value(None))));
    let bad = dir.join("bad.json");
    std::fs::write(&bad, serde_json::to_vec(&history).unwrap()).unwrap();
    let output = run(&bad);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let verdict: wire::history::HistoryVerdict = serde_json::from_slice(&output.stdout).unwrap();
    assert!(verdict.violation.is_some());
    assert!(verdict.key.is_some_and(|key| key.starts_with('k')));

    // Not a history at all: 2.
    let junk = dir.join("junk.json");
    std::fs::write(&junk, b"{\"not\": 1}").unwrap();
    assert_eq!(run(&junk).status.code(), Some(2));
}
