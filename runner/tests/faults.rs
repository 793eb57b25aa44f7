//! Scheduled faults in real runs, on loopback: the runner applies each
//! fault of the experiment's schedule while the clients run, records it,
//! and the group goes on serving (PBFT with f = 1, n = 4; chain
//! replication with f = 1, two servers and a master).
//!
//! Each test asserts on the clients' interval reports (operations completed
//! after the fault), on the replicas' reports (the leader, how far each
//! executed) and on counters, never on timings. Every point runs the
//! key-value app, and its clients' history of the sampled keys is checked
//! linearizable (`node check-history`), faults and all. The tests of this
//! binary run one at a time: each point is five processes on a two-core
//! machine.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use runner::experiment::{Experiment, Sweep};
use runner::faults::ScheduledFault;
use runner::hosts::{LocalHosts, Provider};
use runner::results::FaultRecord;
use runner::run::{PointReports, RunningPoint};
use runner::timeline::Recovered;
use wire::control::{
    AppConfig, IntervalReport, KeyDistribution, KvWorkload, PARTITION_DROPS_COUNTER,
    VIEW_CHANGES_COUNTER, Workload,
};

/// One point at a time in this binary.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A point of `protocol` (f = 1, 20 closed-loop clients on the key-value
/// app, 6 s, the first 500 ms warm-up) with the fault schedule `faults`,
/// run to the end; its history checked linearizable.
fn run(protocol: &str, faults: &[&str]) -> PointReports {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let experiment = Experiment {
        name: "faults".to_string(),
        protocols: vec![protocol.to_string()],
        f: 1,
        sweep: Sweep::Clients(vec![20]),
        duration: Duration::from_secs(6),
        warmup: Duration::from_millis(500),
        cooldown: Duration::ZERO,
        report_interval: Duration::from_millis(200),
        app: AppConfig::Kv,
        workload: Workload::Kv(KvWorkload {
            keys: 256,
            value_size: 32,
            read_ratio: 0.5,
            distribution: KeyDistribution::Zipf { exponent: 1.0 },
        }),
        faults: faults
            .iter()
            .map(|f| f.parse::<ScheduledFault>().unwrap())
            .collect(),
        ..Experiment::default_comparison()
    };
    experiment.validate().unwrap();
    let point = common::only_point(&experiment);
    let hosts = LocalHosts.hosts(5, common::node_binary()).unwrap();
    let mut running =
        RunningPoint::start(&experiment, &point, 0, &hosts, common::node_binary()).unwrap();
    let mut applied = Vec::new();
    running
        .run_for_with_faults(experiment.duration, &mut |_, _| {}, &mut |fault| {
            applied.push(fault.clone())
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut reports = running.finish().unwrap_or_else(|e| panic!("{e:#}"));
    let history = reports
        .clients
        .report
        .history
        .take()
        .expect("key-value clients report their history");
    let checked = runner::history::check_point(&history, 0, &point, None, common::node_binary())
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(checked.completed > 0, "{checked:?}");
    assert_eq!(reports.faults, applied);
    assert_eq!(reports.faults.len(), faults.len(), "{:?}", reports.faults);
    let result = reports.point_result(&point).unwrap();
    assert_eq!(result.faults, applied);
    reports
}

/// The recovery figures of `reports`' first fault: the clients came back
/// to 90% of the rate before it, and completed operations after it.
fn recovered(reports: &PointReports) -> u64 {
    let recovery = runner::timeline::recoveries(
        &reports.clients.report.completions,
        &reports.clients.intervals,
        &reports.faults,
        100,
    );
    let first = &recovery[0];
    assert!(first.first_completion_ms.is_some(), "{first:?}");
    match first.recovered {
        Recovered::AfterMs(ms) => ms,
        other => panic!("{}: {other:?} ({first:?})", first.label),
    }
}

/// Operations the clients completed in the intervals that ended after
/// `at_ms` plus `after_ms`.
fn ops_after(reports: &PointReports, at_ms: u64, after_ms: u64) -> u64 {
    reports
        .clients
        .intervals
        .iter()
        .filter(|i| i.elapsed_ms > at_ms + after_ms)
        .map(|i| i.ops)
        .sum()
}

/// Operations the clients completed in the last second of the point.
fn ops_at_the_end(reports: &PointReports) -> u64 {
    let end = reports.clients.intervals.last().map_or(0, |i| i.elapsed_ms);
    ops_after(reports, end.saturating_sub(1000), 0)
}

fn fault<'a>(reports: &'a PointReports, label_starts: &str) -> &'a FaultRecord {
    reports
        .faults
        .iter()
        .find(|f| f.label.starts_with(label_starts))
        .unwrap_or_else(|| panic!("no fault {label_starts:?} in {:?}", reports.faults))
}

fn counter(reports: &PointReports, name: &str) -> u64 {
    reports
        .replicas
        .iter()
        .map(|r| r.report.counter(name))
        .sum()
}

/// The intervals of replica `i`'s last incarnation (each restart starts its
/// clock again).
fn last_incarnation(reports: &PointReports, i: usize) -> &[IntervalReport] {
    let intervals = &reports.replicas[i].intervals;
    let start = intervals
        .windows(2)
        .rposition(|w| w[1].elapsed_ms < w[0].elapsed_ms)
        .map_or(0, |p| p + 1);
    &intervals[start..]
}

#[test]
fn pbft_primary_killed_the_group_changes_views_and_serves_again() {
    let reports = run("pbft", &["1500ms:kill:primary"]);
    let kill = fault(&reports, "kill primary (replica 0)");
    // The warm-up and the fault's time, on the clients' clock.
    assert!(kill.at_ms >= 2000, "{kill:?}");
    assert!(reports.replicas[0].killed);
    assert_eq!(reports.replicas[0].report.counters, []);
    assert!(
        counter(&reports, VIEW_CHANGES_COUNTER) > 0,
        "no view change after the primary died"
    );
    assert!(
        ops_at_the_end(&reports) > 0,
        "the clients completed nothing in the last second: {:?}",
        reports.clients.intervals
    );
    // The survivors agree on a new primary.
    for i in 1..4 {
        let leader = reports.replicas[i].intervals.last().unwrap().leader;
        assert!(leader.is_some_and(|l| l != 0), "replica {i}: {leader:?}");
    }
    // The recovery time is reported (not bounded here: the machine is noisy).
    recovered(&reports);
}

#[test]
fn pbft_backup_killed_and_restarted_catches_up() {
    let reports = run("pbft", &["1s:kill:replica:2", "2s:restart:replica:2"]);
    let restart = fault(&reports, "restart replica:2");
    let backup = &reports.replicas[2];
    assert!(!backup.killed);
    assert_eq!(backup.restarts, 1);
    assert!(backup.report.ops > 0, "the new incarnation handled nothing");
    let all = &reports.replicas[2].intervals;
    let restarted = last_incarnation(&reports, 2);
    assert!(restarted.len() < all.len(), "one incarnation only: {all:?}");
    let before = all[..all.len() - restarted.len()]
        .iter()
        .filter_map(|i| i.executed)
        .max()
        .unwrap_or(0);
    let after = restarted
        .iter()
        .filter_map(|i| i.executed)
        .max()
        .unwrap_or(0);
    let furthest = (0..4)
        .filter_map(|i| reports.replicas[i].intervals.last()?.executed)
        .max()
        .unwrap();
    assert!(
        after > before,
        "restarted replica executed to {after}, had {before} (furthest {furthest})"
    );
    assert!(ops_after(&reports, restart.at_ms, 0) > 0);
    assert!(ops_at_the_end(&reports) > 0);
}

#[test]
fn pbft_replica_partitioned_and_healed_catches_up() {
    let reports = run("pbft", &["1s:partition:replica:3", "2500ms:heal"]);
    let partition = fault(&reports, "partition replica:3");
    let heal = fault(&reports, "heal");
    assert!(counter(&reports, PARTITION_DROPS_COUNTER) > 0);
    // The three others serve while it is cut off.
    let during: u64 = reports
        .clients
        .intervals
        .iter()
        .filter(|i| i.elapsed_ms > partition.at_ms + 200 && i.elapsed_ms <= heal.at_ms)
        .map(|i| i.ops)
        .sum();
    assert!(during > 0, "nothing served during the partition");
    // It executes more once healed than by the heal. (Its reports are on
    // its own clock, which started before the clients': `ms` on it is a
    // little before the same time on theirs.)
    let executed_at = |ms: u64| {
        reports.replicas[3]
            .intervals
            .iter()
            .take_while(|i| i.elapsed_ms <= ms)
            .filter_map(|i| i.executed)
            .max()
            .unwrap_or(0)
    };
    let at_heal = executed_at(heal.at_ms);
    let at_end = executed_at(u64::MAX);
    assert!(
        at_end > at_heal,
        "replica 3 at {at_end}, {at_heal} at the heal"
    );
    assert!(ops_at_the_end(&reports) > 0);
}

fn byzantine_backup_keeps_the_group_serving(behaviour: &str) {
    let reports = run(
        "pbft",
        &[
            &format!("1s:byzantine={behaviour}:replica:1"),
            "3500ms:honest:replica:1",
        ],
    );
    let turned = fault(&reports, &format!("byzantine={behaviour}"));
    let honest = fault(&reports, "honest");
    let during: u64 = reports
        .clients
        .intervals
        .iter()
        .filter(|i| i.elapsed_ms > turned.at_ms + 500 && i.elapsed_ms <= honest.at_ms)
        .map(|i| i.ops)
        .sum();
    assert!(
        during > 0,
        "{behaviour}: nothing served while replica 1 lied"
    );
    assert!(
        reports.replicas[1]
            .report
            .counter("fault: byzantine datagrams tampered")
            > 0
    );
    assert!(ops_at_the_end(&reports) > 0);
}

#[test]
fn pbft_mute_backup() {
    byzantine_backup_keeps_the_group_serving("mute");
}

#[test]
fn pbft_equivocating_backup() {
    byzantine_backup_keeps_the_group_serving("equivocate");
}

#[test]
fn pbft_corrupting_backup() {
    byzantine_backup_keeps_the_group_serving("corrupt");
}

#[test]
fn pbft_replaying_backup() {
    byzantine_backup_keeps_the_group_serving("replay");
}

#[test]
fn chain_head_killed_the_master_reconfigures_and_the_chain_serves_again() {
    let reports = run("chain", &["1500ms:kill:primary"]);
    fault(&reports, "kill primary (replica 0)");
    assert!(reports.replicas[0].killed);
    assert!(counter(&reports, "master: epoch installed") > 0);
    // A new head counts as the chain's view change.
    assert!(counter(&reports, VIEW_CHANGES_COUNTER) > 0);
    // The master (node 2) names another head.
    let master = reports.replicas[2].intervals.last().unwrap();
    assert_eq!(master.leader, Some(1), "{master:?}");
    assert!(
        ops_at_the_end(&reports) > 0,
        "the clients completed nothing in the last second: {:?}",
        reports.clients.intervals
    );
    recovered(&reports);
}

/// A stopped replica (SIGSTOP) is not silence that ends the run, and a
/// slowed one is not a failure: the group serves through both and at the
/// end.
#[test]
fn pbft_stopped_then_slowed_replica_the_group_serves_throughout() {
    let reports = run(
        "pbft",
        &[
            "1s:stop:replica:3",
            "2s:resume:replica:3",
            "2500ms:slow=2ms:replica:2",
            "3500ms:slow=0:replica:2",
        ],
    );
    let stop = fault(&reports, "stop replica:3");
    let resume = fault(&reports, "resume replica:3");
    let during: u64 = reports
        .clients
        .intervals
        .iter()
        .filter(|i| i.elapsed_ms > stop.at_ms + 200 && i.elapsed_ms <= resume.at_ms)
        .map(|i| i.ops)
        .sum();
    assert!(during > 0, "nothing served while replica 3 was stopped");
    fault(&reports, "slow=2ms replica:2");
    fault(&reports, "slow=0s replica:2");
    assert!(!reports.replicas[3].killed);
    assert!(reports.replicas[3].report.ops > 0);
    assert!(ops_at_the_end(&reports) > 0);
}

/// An equivocating primary: every message it sends, each destination's its
/// own rewritten and correctly signed version. The backups stop trusting it
/// and change views, and the group serves again.
#[test]
fn pbft_equivocating_primary_is_replaced() {
    let reports = run("pbft", &["1s:byzantine=equivocate:primary"]);
    fault(&reports, "byzantine=equivocate primary (replica 0)");
    assert!(
        reports.replicas[0]
            .report
            .counter("fault: byzantine datagrams sent")
            > 0
    );
    assert!(
        ops_at_the_end(&reports) > 0,
        "the clients completed nothing in the last second: {:?}",
        reports.clients.intervals
    );
}

/// HotStuff's leader changes every view: the one in office when the fault
/// comes is killed, its views time out (one timeout each), the others'
/// views go on, and the clients are served again.
#[test]
fn hotstuff_leader_killed_the_group_times_out_its_views_and_serves_again() {
    let reports = run("hotstuff", &["1500ms:kill:leader"]);
    let kill = fault(&reports, "kill primary (replica ");
    assert!(kill.at_ms >= 2000, "{kill:?}");
    let killed: Vec<usize> = (0..4).filter(|&i| reports.replicas[i].killed).collect();
    assert_eq!(killed.len(), 1, "{:?}", reports.faults);
    assert!(
        counter(&reports, VIEW_CHANGES_COUNTER) > 0,
        "no view timed out after the leader died"
    );
    assert!(
        ops_at_the_end(&reports) > 0,
        "the clients completed nothing in the last second: {:?}",
        reports.clients.intervals
    );
    // Leaders still rotate among the survivors.
    let leaders: std::collections::BTreeSet<_> = (0..4)
        .filter(|i| !killed.contains(i))
        .flat_map(|i| {
            reports.replicas[i]
                .intervals
                .iter()
                .filter_map(|r| r.leader)
        })
        .collect();
    assert!(leaders.len() > 1, "{leaders:?}");
    // The recovery is reported. With round-robin leaders every fourth view
    // is the dead replica's and costs a timeout, so the rate after the
    // fault may stay below 90% of the rate before it: not asserted.
    let recovery = runner::timeline::recoveries(
        &reports.clients.report.completions,
        &reports.clients.intervals,
        &reports.faults,
        100,
    );
    assert!(recovery[0].first_completion_ms.is_some(), "{recovery:?}");
}

/// A HotStuff replica killed and restarted comes back with its durable
/// vote record, checkpoint and committed blocks, syncs the rest and
/// executes again.
#[test]
fn hotstuff_replica_killed_and_restarted_catches_up() {
    let reports = run("hotstuff", &["1s:kill:replica:2", "2s:restart:replica:2"]);
    fault(&reports, "restart replica:2");
    let back = last_incarnation(&reports, 2);
    let executed = back.last().and_then(|r| r.executed).unwrap_or(0);
    let others = reports.replicas[1]
        .intervals
        .last()
        .and_then(|r| r.executed)
        .unwrap_or(0);
    assert!(
        executed > 0 && executed + 64 >= others,
        "restarted replica executed to {executed}, the others to {others}"
    );
    assert!(ops_at_the_end(&reports) > 0);
}

/// VR (n = 3): the primary is killed mid-run; the backups time out, change
/// views (§4.2), the new primary fetches the log it picked if it lacks it,
/// and the clients are served again at the rate before the kill. The
/// timeline shows the recovery.
#[test]
fn vr_primary_killed_the_group_changes_views_and_serves_again() {
    let reports = run("vr", &["1500ms:kill:primary"]);
    let kill = fault(&reports, "kill primary (replica ");
    assert!(kill.at_ms >= 2000, "{kill:?}");
    let killed: Vec<usize> = (0..3).filter(|&i| reports.replicas[i].killed).collect();
    assert_eq!(killed.len(), 1, "{:?}", reports.faults);
    assert!(
        counter(&reports, VIEW_CHANGES_COUNTER) > 0,
        "no view change after the primary died"
    );
    let leaders: std::collections::BTreeSet<_> = (0..3)
        .filter(|i| !killed.contains(i))
        .filter_map(|i| reports.replicas[i].intervals.last().and_then(|r| r.leader))
        .collect();
    assert_eq!(leaders.len(), 1, "{leaders:?}");
    assert!(!leaders.contains(&(killed[0] as u8)), "{leaders:?}");
    recovered(&reports);
    assert!(ops_at_the_end(&reports) > 0);
}

/// A VR replica killed and restarted has lost its state (nothing is
/// persisted): it runs the recovery protocol (§4.3), fetches the primary's
/// snapshot and log, and executes to where the others are.
#[test]
fn vr_replica_killed_and_restarted_recovers() {
    let reports = run("vr", &["1s:kill:replica:2", "2s:restart:replica:2"]);
    fault(&reports, "restart replica:2");
    assert!(counter(&reports, "recovery: done") >= 1);
    let back = last_incarnation(&reports, 2);
    let executed = back.last().and_then(|r| r.executed).unwrap_or(0);
    let others = reports.replicas[0]
        .intervals
        .last()
        .and_then(|r| r.executed)
        .unwrap_or(0);
    assert!(
        executed > 0 && executed + 64 >= others,
        "restarted replica executed to {executed}, the others to {others}"
    );
    assert!(ops_at_the_end(&reports) > 0);
}
