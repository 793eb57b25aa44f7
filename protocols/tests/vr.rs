//! Viewstamped Replication (Liskov & Cowling, MIT-CSAIL-TR-2012-021): named
//! scenarios citing the paper's sections, and seeded runs over the crash,
//! network and partition profiles.

use std::time::Duration;

use protocols::simulate::{Profile, check, check_caught_up};
use protocols::vr::Config;
use protocols::vr::simulate::{System, random_run, system};

mod vr_support;
use runtime::sim::Network;
use runtime::{Addr, ReplicaId, Time};
use vr_support::last_normal_run;
use wire::control::VIEW_CHANGES_COUNTER;
use wire::vr::{Message, Peer};

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

/// §4.2, how long a primary's crash costs: the clients retransmit to every
/// replica while the old primary is silent, backing off; the backups keep
/// those requests, and the new primary takes them up as the view starts,
/// so nearly every client is served within a few milliseconds of it, not
/// at its next retransmission, which the backoff puts up to a view
/// timeout later.
#[test]
fn a_new_primary_takes_up_the_requests_retransmitted_during_the_view_change() {
    let System { mut sim, log, .. } = system(3, Network::reliable(), Config::new(3), 20, 400);
    let crash = Time::ZERO + Duration::from_millis(100);
    sim.schedule(crash, |sim| sim.crash(replica(0)));
    finish(&mut sim, 20);
    // Clients served within 5 ms of when the view can start (a view
    // timeout after the crash); replies the old primary sent just before
    // it crashed land within a millisecond of it.
    let view_timeout = Config::new(3).view_timeout;
    let window =
        (crash + Duration::from_millis(5))..(crash + view_timeout + Duration::from_millis(5));
    let served: std::collections::BTreeSet<_> = sim
        .history()
        .iter()
        .filter(|op| op.completed.as_ref().is_some_and(|c| window.contains(&c.0)))
        .map(|op| op.client)
        .collect();
    assert!(
        served.len() >= 18,
        "{} of 20 clients served in the 5 ms after the view could start",
        served.len()
    );
    assert!(total(&sim, "request: taken up from the waiting list") > 0);
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
/// them and completes two operations there (the second one the deposed
/// primary never saw); then view 1's primary is cut off,
/// and view 2 forms from the deposed primary (last normal in view 0, the
/// longer log) and the other backup (last normal in view 1, the shorter
/// one). The new primary must take the view-1 log, which holds the
/// completed operations.
#[test]
fn a_new_primary_takes_the_log_of_the_latest_normal_view() {
    let outcome = last_normal_run();
    outcome.unwrap();
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

/// §5.1 and §5.2: a backup cut off while the others execute far past
/// their snapshots catches up from the primary's snapshot, then from its
/// log; nothing is lost, and it executes to where the others are.
#[test]
fn a_replica_partitioned_past_the_truncation_point_catches_up_from_a_snapshot() {
    let mut config = Config::new(3);
    config.checkpoint_interval = 4;
    config.batch_max = 2;
    let System { mut sim, log, .. } = system(11, Network::reliable(), config, 3, 120);
    let ms = |ms: u64| Time::ZERO + Duration::from_millis(ms);
    sim.run_until(ms(10));
    let others = [
        replica(0),
        replica(1),
        Addr::Client(runtime::ClientId(1)),
        Addr::Client(runtime::ClientId(2)),
        Addr::Client(runtime::ClientId(3)),
    ];
    sim.partition(&[&[replica(2)], &others]);
    sim.run_until(ms(150));
    let primary_top = sim.executed_slot(replica(0)).unwrap();
    assert!(
        primary_top > 3 * config.checkpoint_interval,
        "the others executed only {primary_top} batches"
    );
    sim.heal();
    finish(&mut sim, 20);
    sim.run_until(sim.now() + Duration::from_millis(100));
    let installed = sim
        .node_counters(replica(2))
        .map_or(0, |c| c.get("state: snapshot installed"));
    assert!(installed >= 1, "replica 2 never installed a snapshot");
    check(&sim, &log).unwrap();
    check_caught_up(&sim, &log, 0).unwrap();
}

/// §5.1: memory stays bounded in a run of any length. Over a long run with
/// a snapshot every 8 batches, a backup restarted mid-run (it recovers
/// from the primary's snapshot) and a primary crash (a view change), no
/// replica ever holds more log entries than the bound, while the group
/// executes many times that many.
#[test]
fn logs_stay_bounded_in_a_long_run() {
    let mut config = Config::new(3);
    config.checkpoint_interval = 8;
    config.batch_max = 2;
    let (most, watch) = vr_support::high_water(|r| r.entries_held() as u64);
    let System { mut sim, log, .. } = vr_support::probed_system(12, config, 4, 1_500, watch);
    let ms = |ms: u64| Time::ZERO + Duration::from_millis(ms);
    sim.schedule(ms(300), |sim| sim.crash(replica(2)));
    sim.schedule(ms(320), |sim| sim.restart(replica(2)));
    sim.schedule(ms(900), |sim| sim.crash(replica(0)));
    finish(&mut sim, 60);
    check(&sim, &log).unwrap();
    let executed = sim.executed_slot(replica(1)).unwrap();
    let bound = 2 * config.checkpoint_interval + config.window;
    assert!(bound as usize <= config.log_max());
    assert!(
        executed > 20 * bound,
        "only {executed} batches executed: the run is too short to show the bound"
    );
    assert!(
        most.get() <= bound,
        "a replica held {} entries, more than {bound}",
        most.get()
    );
    assert!(total(&sim, "recovery: done") >= 1);
    assert!(total(&sim, VIEW_CHANGES_COUNTER) >= 1);
}

/// What [`extreme`] does to the crash vector.
#[derive(Clone, Copy, Debug)]
enum Vector {
    Kept,
    Set,
    Emptied,
}

/// Every number in `msg` set to `v`: views, op-numbers, commit numbers,
/// tops, nonces, chunk indices and counts, and the crash vector's as
/// `vector` says.
fn extreme(msg: &Message, v: u64, vector: Vector) -> Message {
    let mut msg = msg.clone();
    let Message::Peer { crashes, msg: peer } = &mut msg else {
        return msg;
    };
    match vector {
        Vector::Kept => {}
        Vector::Set => crashes.iter_mut().for_each(|c| *c = v),
        Vector::Emptied => crashes.clear(),
    }
    match peer {
        Peer::Prepare {
            view,
            commit,
            entry,
        } => {
            (*view, *commit, entry.op, entry.view) = (v, v, v, v);
        }
        Peer::PrepareOk { view, op, .. } => (*view, *op) = (v, v),
        Peer::Commit { view, commit } => (*view, *commit) = (v, v),
        Peer::StartViewChange { view, .. } => *view = v,
        Peer::DoViewChange {
            view,
            last_normal,
            commit,
            top,
            ..
        } => (*view, *last_normal, *commit, *top) = (v, v, v, v),
        Peer::StartView {
            view,
            commit,
            log_view,
            top,
        } => (*view, *commit, *log_view, *top) = (v, v, v, v),
        Peer::GetState { view, op, .. } => (*view, *op) = (v, v),
        Peer::NewState { view, commit, log } => {
            (*view, *commit, log.base) = (v, v, v);
            for e in &mut log.entries {
                e.op = v;
            }
        }
        Peer::Chunk(c) => {
            (c.view, c.op) = (v, v);
            c.index = v as u32;
            c.count = v as u32;
        }
        Peer::Recovery { nonce, .. } => *nonce = v,
        Peer::RecoveryResponse {
            view,
            nonce,
            primary,
            ..
        } => {
            (*view, *nonce) = (v, v);
            if let Some(p) = primary {
                (p.commit, p.top) = (v, v);
            }
        }
    }
    msg
}

/// VR trusts its replicas (it tolerates crashes, not lies), but arithmetic
/// on a peer's numbers must never panic: a replica sends, after each of
/// its messages, a copy with every number at an extreme (the largest, one
/// below it, the top bit, zero; in the crash vector as well, or not, or
/// the vector emptied), to every replica, while the group runs,
/// restarts replicas (recovery, the tamperer's among them) and changes
/// views. Nothing panics; what
/// the copies cannot mean is dropped and counted.
#[test]
fn extreme_numbers_from_a_peer_never_panic() {
    let values = [u64::MAX, u64::MAX - 1, 1 << 63, 0];
    let vectors = [Vector::Kept, Vector::Set, Vector::Emptied];
    for (v, vector) in vectors
        .iter()
        .flat_map(|&vector| values.iter().map(move |&v| (v, vector)))
    {
        let mut config = Config::new(3);
        config.checkpoint_interval = 2;
        let System { mut sim, .. } = system(13, Network::reliable(), config, 3, 40);
        let tamper = move |_: &mut runtime::Rng,
                           to: Addr,
                           bytes: Vec<u8>,
                           out: &mut Vec<(Addr, Vec<u8>)>| {
            if let Ok(msg) = wire::decode::<Message>(&bytes) {
                let mut copy = Vec::new();
                wire::encode(&extreme(&msg, v, vector), &mut copy).expect("encodes");
                for r in 0..3 {
                    out.push((replica(r), copy.clone()));
                }
            }
            out.push((to, bytes));
        };
        sim.set_byzantine(replica(2), Box::new(tamper));
        let ms = |ms: u64| Time::ZERO + Duration::from_millis(ms);
        sim.schedule(ms(20), |sim| sim.crash(replica(1)));
        sim.schedule(ms(30), |sim| sim.restart(replica(1)));
        sim.schedule(ms(60), |sim| sim.crash(replica(0)));
        sim.schedule(ms(80), |sim| sim.restart(replica(0)));
        // The tamperer restarts too, so that its `Recovery`s (which no
        // crash vector check stops) reach a replica that is recovering.
        sim.schedule(ms(79), |sim| sim.crash(replica(2)));
        sim.schedule(ms(80), |sim| sim.restart(replica(2)));
        sim.run_until(ms(2_000));
        let reasons = [
            "primary: an older view",
            "primary: of a view this replica is not normal in yet",
            "prepare: an entry is missing before it",
            "prepare-ok: beyond the log",
            "new-state: entries out of order",
            "new-state: not asked for",
            "chunk: malformed",
            "get-state: not in its view",
            "recovery-response: not for a recovery here",
            "replica: unexpected message or sender",
            "peer: from a life of its sender before a recovery",
            "peer: a crash vector of another size, or no such replica",
        ];
        let dropped: u64 = reasons.iter().map(|r| total(&sim, r)).sum();
        assert!(dropped > 0, "value {v}, vector {vector:?}: nothing dropped");
    }
}

/// §4.3 with DISC'17's counterexample: old view-change messages of a
/// replica's life before its recovery are dropped by the crash vector, so
/// no view forms from them and no committed operation is lost (see
/// [`vr_support::stale_life_run`]).
#[test]
fn messages_from_a_life_before_a_recovery_are_dropped() {
    vr_support::stale_life_run().unwrap();
}
