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

/// Why seed `seed` of `profile` failed, if it did.
fn failure(seed: u64, profile: Profile) -> Option<String> {
    let mut run = random_run(seed, profile, false);
    check(&run.sim, &run.log).err().or_else(|| {
        let settled = run.sim.now() + run.settle;
        run.sim.run_until(settled);
        check_caught_up(&run.sim, &run.log, run.slack).err()
    })
}

/// Seeds of `profile`, each checked for agreement, linearizability and
/// liveness after the last heal, and for every replica catching up.
fn seeds(profile: Profile, range: std::ops::Range<u64>) {
    for seed in range {
        let failure = failure(seed, profile);
        assert!(failure.is_none(), "seed {seed} ({profile:?}): {failure:?}");
    }
}

#[test]
fn seeded_runs_without_faults() {
    seeds(Profile::None, 0..500);
}

#[test]
fn seeded_runs_with_network_faults() {
    seeds(Profile::Network, 0..500);
}

#[test]
fn seeded_runs_with_every_fault() {
    seeds(Profile::All, 0..500);
}

#[test]
fn seeded_runs_with_crashes() {
    seeds(Profile::Crash, 0..500);
}

/// §4.2's rule for the new log, the case it exists for: the primary of view
/// 0 is cut off with the clients and prepares their requests (uncommitted:
/// no backup hears it); the backups move to view 1, and one client reaches
/// them and completes an operation there; then view 1's primary is cut off,
/// and view 2 forms from the deposed primary (last normal in view 0, the
/// longer log) and the other backup (last normal in view 1, the shorter
/// one). The new primary must take the view-1 log, which holds the
/// completed operation.
#[test]
fn a_new_primary_takes_the_log_of_the_latest_normal_view() {
    let outcome = last_normal_run();
    outcome.unwrap();
}

/// The run of [`a_new_primary_takes_the_log_of_the_latest_normal_view`]:
/// what the checkers say.
pub fn last_normal_run() -> Result<(), String> {
    let mut config = Config::new(3);
    config.batch_max = 1;
    config.window = 4;
    let System { mut sim, log, .. } = system(6, Network::reliable(), config, 4, 200);
    let clients: Vec<Addr> = (1..=4)
        .map(|c| Addr::Client(runtime::ClientId(c)))
        .collect();
    let ms = |ms: u64| Time::ZERO + Duration::from_millis(ms);
    sim.run_until(ms(10));
    let cut_off: Vec<Addr> = std::iter::once(replica(0))
        .chain(clients.iter().copied())
        .collect();
    sim.partition(&[&cut_off, &[replica(1), replica(2)]]);
    sim.run_until(ms(60));
    // One client reaches the view-1 side.
    let side_a = [replica(0), clients[1], clients[2], clients[3]];
    sim.partition(&[&side_a, &[replica(1), replica(2), clients[0]]]);
    let before = sim.ops_completed();
    let mut t = sim.now();
    while sim.ops_completed() == before {
        t = t + Duration::from_micros(50);
        sim.run_until(t);
        assert!(t < ms(2_000), "no operation completed in view 1");
    }
    // View 1's primary cut off at once: view 2 forms from replicas 0 and 2.
    let rest = [
        replica(0),
        replica(2),
        clients[0],
        clients[1],
        clients[2],
        clients[3],
    ];
    sim.partition(&[&[replica(1)], &rest]);
    sim.run_until(t + Duration::from_millis(500));
    sim.heal();
    finish(&mut sim, 30);
    check(&sim, &log)
}

/// The planted bugs say no: the new primary that ignores the last normal
/// view loses the operation completed in view 1.
#[cfg(feature = "planted-bugs")]
#[test]
fn ignoring_the_last_normal_view_is_caught() {
    let bug = protocols::vr::bugs::IGNORE_LAST_NORMAL;
    let failure = protocols::planted::with(Some(bug), last_normal_run);
    let why = failure.expect_err("not caught");
    println!("{bug}: {why}");
}

/// Committing on f replicas instead of f + 1 is caught by the seeded runs
/// of the crash profile within 500 seeds.
#[cfg(feature = "planted-bugs")]
#[test]
fn committing_below_a_quorum_is_caught() {
    let bug = protocols::vr::bugs::COMMIT_BELOW_QUORUM;
    let caught = protocols::planted::with(Some(bug), || {
        (0..500).find_map(|seed| Some((seed, failure(seed, Profile::Crash)?)))
    });
    let (seed, why) = caught.expect("not caught in 500 seeds");
    println!("{bug}: caught at seed {seed}: {why}");
}

/// §4.3: a backup restarts without its state, runs the recovery protocol
/// (f + 1 responses, the primary's among them, with its log), and catches
/// up; so does a primary that restarts while the view change it caused is
/// still going on (it recovers once the next view has started).
#[test]
fn a_restarted_replica_recovers() {
    for (seed, victim, down_ms) in [(7, 2, 20), (8, 0, 5)] {
        let System { mut sim, log, .. } = system(seed, Network::reliable(), Config::new(3), 3, 60);
        let at = |ms: u64| Time::ZERO + Duration::from_millis(ms);
        sim.schedule(at(20), move |sim| sim.crash(replica(victim)));
        sim.schedule(at(20 + down_ms), move |sim| sim.restart(replica(victim)));
        finish(&mut sim, 20);
        assert_eq!(sim.ops_completed(), 180, "victim {victim}");
        assert_eq!(total(&sim, "recovery: done"), 1, "victim {victim}");
        check(&sim, &log).unwrap();
        sim.run_until(sim.now() + Duration::from_millis(200));
        check_caught_up(&sim, &log, 0).unwrap();
    }
}
