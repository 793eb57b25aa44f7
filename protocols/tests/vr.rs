//! Viewstamped Replication (Liskov & Cowling, MIT-CSAIL-TR-2012-021): named
//! scenarios citing the paper's sections, and seeded runs over the crash,
//! network and partition profiles.

use std::time::Duration;

use protocols::simulate::{Profile, check, check_caught_up};
use protocols::vr::Config;
use protocols::vr::simulate::{System, random_run, system};
use runtime::sim::Network;
use runtime::{Addr, ReplicaId, Time};
use wire::control::VIEW_CHANGES_COUNTER;

fn replica(i: u8) -> Addr {
    Addr::Replica(ReplicaId(i))
}

fn finish(sim: &mut runtime::sim::Simulator, limit_s: u64) {
    assert!(
        sim.run_until_clients_done(Time::ZERO + Duration::from_secs(limit_s)),
        "clients not done in {limit_s} s"
    );
}

fn total(sim: &runtime::sim::Simulator, name: &str) -> u64 {
    sim.counters().get(name)
}

/// §4.1: the normal case, with n = 3 and n = 5: every operation completes
/// in view 0, and every replica executes the same prefix.
#[test]
fn normal_case_n3_and_n5() {
    for (seed, n) in [(1, 3), (2, 5)] {
        let System { mut sim, log, .. } = system(seed, Network::reliable(), Config::new(n), 4, 30);
        finish(&mut sim, 10);
        assert_eq!(sim.ops_completed(), 120, "n = {n}");
        assert_eq!(total(&sim, VIEW_CHANGES_COUNTER), 0, "n = {n}");
        check(&sim, &log).unwrap();
        sim.run_until(sim.now() + Duration::from_millis(100));
        check_caught_up(&sim, &log, 0).unwrap();
    }
}

/// §4.2: the primary crashes; the backups time out, change to view 1, and
/// its primary serves the rest. Nothing completed is lost, nothing runs
/// twice.
#[test]
fn a_crashed_primary_is_replaced_by_a_view_change() {
    let System { mut sim, log, .. } = system(3, Network::reliable(), Config::new(3), 3, 40);
    sim.schedule(Time::from_nanos(20_000_000), |sim| sim.crash(replica(0)));
    finish(&mut sim, 20);
    assert_eq!(sim.ops_completed(), 120);
    assert!(total(&sim, VIEW_CHANGES_COUNTER) > 0);
    check(&sim, &log).unwrap();
}

/// §4.2 with requests in flight: the primary of view 0 and then that of
/// view 1 crash, in n = 5 (two crashes, f = 2), while clients keep
/// requests outstanding; none is lost or executed twice.
#[test]
fn two_crashes_in_n5() {
    let System { mut sim, log, .. } = system(4, Network::reliable(), Config::new(5), 4, 40);
    sim.schedule(Time::from_nanos(15_000_000), |sim| sim.crash(replica(0)));
    sim.schedule(Time::from_nanos(120_000_000), |sim| sim.crash(replica(1)));
    finish(&mut sim, 20);
    assert_eq!(sim.ops_completed(), 160);
    check(&sim, &log).unwrap();
}

/// Seeds of `profile`, each checked for agreement, linearizability and
/// liveness after the last heal, and for every replica catching up.
fn seeds(profile: Profile, range: std::ops::Range<u64>) {
    for seed in range {
        let mut run = random_run(seed, profile, false);
        let mut failure = check(&run.sim, &run.log).err();
        if failure.is_none() {
            let settled = run.sim.now() + run.settle;
            run.sim.run_until(settled);
            failure = check_caught_up(&run.sim, &run.log, run.slack).err();
        }
        assert!(failure.is_none(), "seed {seed} ({profile:?}): {failure:?}");
    }
}

#[test]
fn seeded_runs_without_faults() {
    seeds(Profile::None, 0..100);
}

#[test]
fn seeded_runs_with_network_faults() {
    seeds(Profile::Network, 0..200);
}

#[test]
fn seeded_runs_with_crashes() {
    seeds(Profile::Crash, 0..200);
}
