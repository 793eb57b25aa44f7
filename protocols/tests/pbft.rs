//! Scenario and randomized tests of PBFT in the simulator. Section numbers are
//! Castro & Liskov, OSDI'99 (TOCS 2002 where noted). Attacks by a Byzantine
//! peer, each a regression test for a finding, are in `pbft_attacks.rs`.

mod pbft_support;

use std::rc::Rc;
use std::time::Duration;

use protocols::app::KvApp;
use protocols::pbft::{CHECKPOINT_INTERVAL, CHECKPOINT_VOTES_MAX, LOG_MAX, batch_digest};
use protocols::simulate::pbft::{
    System, add_client, config, equivocate, keys, replica_node, system,
};
use protocols::simulate::{
    Entry, ExecutionLog, KvWorkload, Profile, check, replay_command, run_seed, simulate,
};
use runtime::sim::{Byzantine, Network, Simulator};
use runtime::{Addr, ReplicaId, Rng, Time};
use wire::control::{BATCHES_COUNTER, REQUESTS_BATCHED_COUNTER};
use wire::pbft::{Message, PrePrepare};
use wire::sim::FaultCounts;

use pbft_support::{
    Probe, counter, executed, executed_everywhere, finish, high_water, recorder, replica, total,
};

/// §4.2: the normal case with n = 4 (f = 1): three phases, execution in
/// order, f+1 matching replies; no view change.
#[test]
fn normal_case_n4() {
    let System { mut sim, log, .. } = system(1, Network::reliable(), 4, 3, 20);
    finish(&mut sim, 10);
    assert_eq!(sim.ops_completed(), 60);
    executed_everywhere(&log, 4, 60);
    assert_eq!(total(&sim, "view change: started"), 0);
    check(&sim, &log).unwrap();
}

/// §4.2 with n = 7 (f = 2): quorums of 5, replies accepted on 3.
#[test]
fn normal_case_n7() {
    let System { mut sim, log, .. } = system(2, Network::reliable(), 7, 3, 20);
    finish(&mut sim, 10);
    assert_eq!(sim.ops_completed(), 60);
    executed_everywhere(&log, 7, 60);
    assert_eq!(total(&sim, "view change: started"), 0);
    check(&sim, &log).unwrap();
}

/// §4.2 (batching, TOCS §5.1.4): under load, requests that arrive while a
/// batch is in flight gather into the next one (24 clients: more than four
/// requests per batch on average). Each client registers first (request 0).
#[test]
fn batching_under_load() {
    let System { mut sim, log, .. } = system(3, Network::reliable(), 4, 24, 20);
    finish(&mut sim, 10);
    let batches = counter(&sim, replica(0), BATCHES_COUNTER);
    let requests = counter(&sim, replica(0), REQUESTS_BATCHED_COUNTER);
    assert_eq!(requests, 24 * 21);
    assert!(
        batches * 4 < requests,
        "{batches} batches for {requests} requests"
    );
    check(&sim, &log).unwrap();
}

/// §4.3: checkpoints become stable, and the log and certificates below them
/// are discarded: over a long run the log never holds more than the window
/// between the watermarks.
#[test]
fn checkpoints_become_stable_and_truncate_the_log() {
    let seed = 4;
    let keys = keys(seed, 4);
    let config = config(&keys);
    let mut sim = Simulator::new(seed, Network::faulty(0.05));
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_micros(100),
    );
    let log = ExecutionLog::default();
    let mut probes = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let (log_max, watch_log) = high_water(|r| r.log_len() as u64);
        let (stable, watch_stable) = high_water(|r| r.stable_seq());
        probes.push((log_max, stable));
        let (config, key, log) = (config.clone(), key.clone(), log.clone());
        let id = ReplicaId(i as u8);
        sim.add_node(
            Addr::Replica(id),
            Box::new(move |rng: Rng| {
                let app = log.record(id, Box::new(KvApp::default()));
                let (watch_log, watch_stable) = (Rc::clone(&watch_log), Rc::clone(&watch_stable));
                Box::new(Probe {
                    node: replica_node(id, &config, &key, app, rng, false),
                    watch: Rc::new(move |r| {
                        watch_log(r);
                        watch_stable(r);
                    }),
                })
            }),
        );
    }
    for id in 1..=4 {
        add_client(&mut sim, &config, id, 400);
    }
    finish(&mut sim, 60);
    let bound = (LOG_MAX as usize + CHECKPOINT_VOTES_MAX + 3) as u64;
    for (log_max, stable) in &probes {
        assert!(log_max.get() <= bound, "log grew to {}", log_max.get());
        assert!(
            stable.get() >= 10 * CHECKPOINT_INTERVAL,
            "stable at {}",
            stable.get()
        );
    }
    assert!(total(&sim, "checkpoint: stable") >= 40);
    check(&sim, &log).unwrap();
}

/// §4.4: the primary crashes; clients time out and multicast, backups time
/// the primary out, and view 1 makes progress.
#[test]
fn primary_crash_view_change_progress_resumes() {
    let System { mut sim, log, .. } = system(5, Network::reliable(), 4, 3, 20);
    sim.schedule(Time::from_nanos(5_000_000), |sim| sim.crash(replica(0)));
    finish(&mut sim, 10);
    assert_eq!(sim.ops_completed(), 60);
    assert!(counter(&sim, replica(1), "view change: new view sent") >= 1);
    check(&sim, &log).unwrap();
}

/// §4.4 and TOCS §4.5.2: two faulty primaries in a row (n = 7, f = 2): the
/// view change to view 1 times out (its primary is down), so it is
/// abandoned: no replica ever runs view 1; replicas move on to view 2 with
/// the timeout doubled, and progress resumes there.
#[test]
fn two_consecutive_faulty_primaries() {
    let seed = 6;
    let keys = keys(seed, 7);
    let config = config(&keys);
    let mut sim = Simulator::new(seed, Network::reliable());
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    let log = ExecutionLog::default();
    let (timeout_max, watch_timeout) = high_water(|r| r.view_change_timeout().as_millis() as u64);
    let (ran_view_1, watch_view) = high_water(|r| u64::from(r.view() == 1 && !r.is_changing()));
    for (i, key) in keys.iter().enumerate() {
        let (config, key, log) = (config.clone(), key.clone(), log.clone());
        let (watch_timeout, watch_view) = (Rc::clone(&watch_timeout), Rc::clone(&watch_view));
        let id = ReplicaId(i as u8);
        sim.add_node(
            Addr::Replica(id),
            Box::new(move |rng: Rng| {
                let app = log.record(id, Box::new(KvApp::default()));
                let (watch_timeout, watch_view) =
                    (Rc::clone(&watch_timeout), Rc::clone(&watch_view));
                Box::new(Probe {
                    node: replica_node(id, &config, &key, app, rng, false),
                    watch: Rc::new(move |r| {
                        watch_timeout(r);
                        watch_view(r);
                    }),
                })
            }),
        );
    }
    for id in 1..=3 {
        add_client(&mut sim, &config, id, 15);
    }
    sim.schedule(Time::from_nanos(3_000_000), |sim| {
        sim.crash(replica(0));
        sim.crash(replica(1));
    });
    finish(&mut sim, 20);
    assert_eq!(sim.ops_completed(), 45);
    assert!(total(&sim, "view change: new view took too long") >= 5);
    assert_eq!(ran_view_1.get(), 0, "view 1 was abandoned");
    assert!(counter(&sim, replica(2), "view change: new view sent") >= 1);
    let doubled = 2 * wire::pbft::VIEW_CHANGE_TIMEOUT_MS.default;
    assert!(
        timeout_max.get() >= doubled,
        "timeout reached {} ms",
        timeout_max.get()
    );
    check(&sim, &log).unwrap();
}

/// §4.4: the primary crashes with batches in flight; the new primary
/// re-proposes in O what prepared in view 0, those sequence numbers execute
/// the batches they had, no request is lost, and none executes twice.
#[test]
fn view_change_with_requests_in_flight() {
    let System { mut sim, log, .. } = system(7, Network::faulty(0.05), 4, 8, 25);
    let (sent, tamper) = recorder();
    sim.set_byzantine(replica(1), tamper);
    sim.schedule(Time::from_nanos(12_000_000), |sim| sim.crash(replica(0)));
    finish(&mut sim, 20);
    assert_eq!(sim.ops_completed(), 200);
    // Clients finish on f+1 replies: let a replica that lost the last
    // commits to the lossy network catch up before counting executions.
    let settled = sim.now() + Duration::from_millis(500);
    sim.run_until(settled);

    // What the new primary put in O for view 1.
    let o: Vec<PrePrepare> = sent
        .borrow()
        .iter()
        .find_map(|(_, msg)| match msg {
            Message::NewView(nv) if nv.view == 1 => {
                Some(nv.pre_prepares.iter().map(|pp| pp.payload).collect())
            }
            _ => None,
        })
        .expect("replica 1 sent the new view");
    let null = batch_digest(&[]).unwrap();
    let reproposed: Vec<&PrePrepare> = o.iter().filter(|pp| pp.digest != null).collect();
    assert!(!reproposed.is_empty(), "O re-proposes what prepared: {o:?}");
    // Each re-proposed sequence number executed a batch of requests at the
    // replicas that ran view 1 (not a null batch).
    let logs = log.logs();
    for pp in &reproposed {
        let at = |r: ReplicaId| {
            logs.iter()
                .filter(|(id, _)| *id == r)
                .find_map(|(_, slots)| slots.get(&pp.seq).cloned())
        };
        let executed = at(ReplicaId(1)).expect("the new primary executed it");
        assert!(
            executed
                .iter()
                .all(|e| !matches!(e, Entry::Unexecuted(protocols::app::Unexecuted::Null))),
            "n{} executed {executed:?}",
            pp.seq
        );
    }
    // Puts write unique values: each executes at most once at every replica,
    // and exactly once at one that did not skip ahead by state transfer.
    let puts: Vec<[u8; 6]> = sim
        .history()
        .iter()
        .filter(|op| matches!(wire::decode(&op.op), Ok(wire::kv::Op::Put { .. })))
        .map(|op| wire::Digest::of(&op.op).0[..6].try_into().unwrap())
        .collect();
    let mut executed_all = 0;
    for (replica, slots) in logs.into_iter().skip(1) {
        let transferred = counter(&sim, Addr::Replica(replica), "state transfer: done") > 0;
        executed_all += usize::from(!transferred);
        for put in &puts {
            let times = slots
                .values()
                .flatten()
                .filter(|e| matches!(e, Entry::Executed { op, .. } if op == put))
                .count();
            assert!(
                times == 1 || (transferred && times == 0),
                "replica {} executed a put {times} times",
                replica.0
            );
        }
    }
    assert!(executed_all >= 1);
    assert!(total(&sim, "view change: new view") >= 3);
    check(&sim, &log).unwrap();
}

/// §4.2 and §4.4: a Byzantine primary sends replicas 2 and 3 a different
/// batch for the same sequence number than replica 1 (correctly signed). No
/// two correct replicas execute different requests; the backups time the
/// primary out; and what reaches O of view 1 at an equivocated sequence
/// number is never the batch only replica 1 got (one backup cannot make a
/// prepared certificate), only the one 2 and 3 got, or a null batch.
#[test]
fn byzantine_primary_equivocates() {
    let System {
        mut sim, log, keys, ..
    } = system(8, Network::reliable(), 4, 3, 20);
    log.exclude(ReplicaId(0));
    let (to_1, record_0) = recorder();
    let equivocating = equivocate(&keys[0], |to| matches!(to, Addr::Replica(ReplicaId(2 | 3))));
    // Record what replica 0 sent to replica 1 (before its lies to 2 and 3).
    let mut both = (record_0, equivocating);
    sim.set_byzantine(
        replica(0),
        Box::new(
            move |rng: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
                let mut recorded = Vec::new();
                both.0.tamper(rng, to, bytes, &mut recorded);
                for (to, bytes) in recorded {
                    both.1.tamper(rng, to, bytes, out);
                }
            },
        ),
    );
    let (sent_1, record_1) = recorder();
    sim.set_byzantine(replica(1), record_1);
    finish(&mut sim, 20);
    assert_eq!(sim.ops_completed(), 60);
    assert!(total(&sim, "view change: new view") >= 3);

    // The batches replica 1 got, by sequence number, in view 0.
    let minority: Vec<(u64, wire::Digest)> = to_1
        .borrow()
        .iter()
        .filter_map(|(to, msg)| match msg {
            Message::PrePrepare(pp, batch) if *to == replica(1) && !batch.is_empty() => {
                Some((pp.payload.seq, pp.payload.digest))
            }
            _ => None,
        })
        .collect();
    assert!(!minority.is_empty());
    let o: Vec<PrePrepare> = sent_1
        .borrow()
        .iter()
        .filter_map(|(_, msg)| match msg {
            Message::NewView(nv) if nv.view == 1 => Some(
                nv.pre_prepares
                    .iter()
                    .map(|pp| pp.payload)
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .next()
        .expect("replica 1 is the primary of view 1");
    for pp in &o {
        assert!(
            !minority.contains(&(pp.seq, pp.digest)),
            "O of view 1 holds the batch only replica 1 prepared at n{}",
            pp.seq
        );
    }
    check(&sim, &log).unwrap();
}

/// §4 (fault model): a Byzantine backup that sends garbage, and messages with
/// broken signatures, changes nothing: the drops are counted, no view change.
#[test]
fn byzantine_backup_garbage_and_bad_signatures_have_no_effect() {
    for (seed, tamper) in [
        (9, Byzantine::Garbage),
        (10, Byzantine::Corrupt { flips: 2 }),
    ] {
        let System { mut sim, log, .. } = system(seed, Network::reliable(), 4, 3, 20);
        log.exclude(ReplicaId(3));
        sim.set_byzantine(replica(3), Box::new(tamper));
        finish(&mut sim, 10);
        assert_eq!(sim.ops_completed(), 60);
        assert_eq!(total(&sim, "view change: started"), 0);
        let c = sim.node_counters(replica(1)).unwrap();
        let rejected: u64 = c
            .iter()
            .filter(|(name, _)| {
                name.starts_with("decode:")
                    || name.ends_with("bad signature")
                    || name.starts_with("message: not from")
            })
            .map(|(_, n)| n)
            .sum();
        assert!(rejected > 20, "{c:?}");
        check(&sim, &log).unwrap();
    }
}

/// §4.3 and TOCS §5.3.2: a replica partitioned away while the others move
/// several checkpoints ahead fetches the state after the partition heals,
/// chunk by checked chunk, and catches up (it executes again after).
#[test]
fn partitioned_replica_catches_up_by_state_transfer() {
    let System {
        mut sim,
        log,
        config,
        ..
    } = system(11, Network::reliable(), 4, 3, 40);
    sim.schedule(Time::from_nanos(1_000_000), |sim| {
        sim.partition(&[&[replica(3)]])
    });
    sim.schedule(Time::from_nanos(300_000_000), |sim| sim.heal());
    sim.schedule(Time::from_nanos(310_000_000), move |sim| {
        for id in 10..13 {
            add_client(sim, &config, id, 20);
        }
    });
    sim.run_until(Time::from_nanos(320_000_000));
    finish(&mut sim, 10);
    assert_eq!(sim.ops_completed(), 180);
    assert!(counter(&sim, replica(3), "state transfer: done") >= 1);
    let (_, slots) = log
        .logs()
        .into_iter()
        .rfind(|(r, _)| *r == ReplicaId(3))
        .unwrap();
    // From where it was when cut off (0: it had executed nothing yet).
    let seqs: Vec<u64> = std::iter::once(0).chain(slots.keys().copied()).collect();
    let skipped = seqs.windows(2).find(|w| w[1] > w[0] + CHECKPOINT_INTERVAL);
    let [before, after] = skipped.expect("it skipped ahead to a checkpoint") else {
        unreachable!()
    };
    assert!(
        seqs.last() > Some(after),
        "it executed after catching up (from n{before} to n{after})"
    );
    check(&sim, &log).unwrap();
}

/// Backups hand the requests they waited for to a new primary that never
/// heard them: one view change, not a cascade (planted as
/// `no-relay-on-new-view`, the cascade shows).
#[test]
fn backups_hand_waiting_requests_to_the_new_primary() {
    let (view_changes, _) = pbft_support::hand_over_scenario();
    assert_eq!(view_changes, 3, "one view change at each live replica");
}

/// The simulator is deterministic: the same seed gives the same trace.
#[test]
fn same_seed_same_trace_hash() {
    for seed in [0, 1, 42, 1_000_003] {
        let a = run_seed(protocols::pbft::PROTOCOL, seed);
        let b = run_seed(protocols::pbft::PROTOCOL, seed);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(
            (a.ops_completed, a.deliveries, a.faults, a.simulated_ns),
            (b.ops_completed, b.deliveries, b.faults, b.simulated_ns)
        );
    }
}

/// Runs `seeds` under `profile`; every one passes. Returns how many runs had
/// each kind of fault (not how many faults).
fn random_seeds(profile: Profile, seeds: std::ops::Range<u64>) -> Vec<(&'static str, u64)> {
    let mut runs_with = FaultCounts::default()
        .kinds()
        .iter()
        .map(|(name, _)| (*name, 0))
        .collect::<Vec<_>>();
    for seed in seeds {
        let report = simulate(protocols::pbft::PROTOCOL, seed, profile, false).report;
        assert!(
            report.passed,
            "seed {seed} failed: {}\nreplay: {}",
            report.failure.unwrap_or_default(),
            replay_command(protocols::pbft::PROTOCOL, seed, profile)
        );
        for ((_, runs), (_, n)) in runs_with.iter_mut().zip(report.faults.kinds()) {
            *runs += u64::from(n > 0);
        }
    }
    runs_with
}

/// Seeds that once failed, kept as regressions (under the profile they
/// failed with).
/// - all 224: a batch prepared in view 0 was dropped when a later view put
///   a null batch at its sequence number, and chosen again by the view
///   after: nobody had it. Replicas now keep the batch of their prepared
///   certificate.
/// - all 3367: a replica that moved to view 2 alone had the view-change for
///   view 1 the others needed; it now sends it to a peer still changing to
///   view 1.
/// - all 15: replicas that executed a sequence number before a view change
///   never committed it again in the new view, which the lagging primary
///   needed; a status now asks from the lowest uncommitted one.
#[test]
fn regression_seeds_pass() {
    for seed in [224, 3367, 3728, 15, 72] {
        random_seeds(Profile::All, seed..seed + 1);
    }
}

/// Random runs under `all`, the hardest profile: every kind of fault
/// occurred in some of them (but crashes at a persist: PBFT persists
/// nothing).
#[test]
fn random_seeds_all_faults() {
    let runs_with = random_seeds(Profile::All, 0..400);
    for (kind, runs) in runs_with {
        if kind == "crashes at a persist" {
            assert_eq!(runs, 0, "PBFT persists nothing");
            continue;
        }
        assert!(runs > 0, "no run had a fault of kind {kind}");
    }
}

/// Random runs under each narrower profile.
#[test]
fn random_seeds_each_profile() {
    for (i, profile) in [
        Profile::None,
        Profile::Network,
        Profile::Crash,
        Profile::Byzantine,
    ]
    .into_iter()
    .enumerate()
    {
        let first = 10_000 + 1_000 * i as u64;
        random_seeds(profile, first..first + 60);
    }
}

/// The beyond-model profile (more than f colluding Byzantine replicas) must
/// fail: it shows the checkers can say no.
#[test]
fn beyond_the_model_the_checkers_find_violations() {
    let failed = (0..40)
        .filter(|&seed| {
            // A replica that finds itself diverged from a stable checkpoint
            // panics: that is a failure too.
            std::panic::catch_unwind(|| {
                simulate(protocols::pbft::PROTOCOL, seed, Profile::Beyond, false)
            })
            .map_or(true, |outcome| !outcome.report.passed)
        })
        .count();
    assert!(
        failed >= 10,
        "only {failed} of 40 beyond-model seeds failed"
    );
}

/// §4 (MACs): replies are authenticated with a MAC under the key a client and
/// a replica share. Replica 3 is Byzantine and breaks the MAC of every reply
/// it sends: the clients drop those replies (and count them) and complete on
/// the f+1 matching replies of the others.
#[test]
fn replies_with_a_wrong_mac_are_dropped_by_the_client() {
    let System { mut sim, log, .. } = system(11, Network::reliable(), 4, 3, 20);
    sim.set_byzantine(
        replica(3),
        Box::new(
            |_: &mut Rng, to: Addr, mut bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
                if matches!(to, Addr::Client(_)) {
                    // A reply ends with its 32-byte MAC.
                    *bytes.last_mut().expect("not empty") ^= 1;
                }
                out.push((to, bytes));
            },
        ),
    );
    finish(&mut sim, 10);
    assert_eq!(sim.ops_completed(), 60);
    let bad = total(&sim, "reply: bad MAC");
    assert!(bad >= 20, "{:?}", sim.counters());
    assert_eq!(
        counter(&sim, Addr::Client(runtime::ClientId(1)), "reply: bad MAC")
            + counter(&sim, Addr::Client(runtime::ClientId(2)), "reply: bad MAC")
            + counter(&sim, Addr::Client(runtime::ClientId(3)), "reply: bad MAC"),
        bad
    );
    check(&sim, &log).unwrap();
}

/// §4.1/§4.4: a client whose requests do not reach the primary times out and
/// multicasts; the backups relay the request to the primary (its
/// authenticator lets the primary check it), and it executes without a view
/// change. Client 1's link loses every request to replica 0.
#[test]
fn backups_relay_requests_the_primary_missed() {
    let System { mut sim, log, .. } = system(12, Network::reliable(), 4, 3, 20);
    sim.set_byzantine(
        Addr::Client(runtime::ClientId(1)),
        Box::new(
            |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
                let request = matches!(wire::decode::<Message>(&bytes), Ok(Message::Request(_)));
                if !(request && to == replica(0)) {
                    out.push((to, bytes));
                }
            },
        ),
    );
    finish(&mut sim, 10);
    assert_eq!(sim.ops_completed(), 60);
    assert!(total(&sim, "request: relayed to the primary") >= 20);
    assert_eq!(total(&sim, "view change: started"), 0);
    executed_everywhere(&log, 4, 60);
    check(&sim, &log).unwrap();
}

/// §4.1: a client retransmits a request that gets no answer, waiting twice as
/// long each time (30 ms, 60 ms, ... up to 500 ms), so that a group that is
/// down or overloaded is not flooded. With every replica down for 2 s of
/// virtual time: 7 retransmissions (at 30, 90, 210, 450, 950, 1450 and
/// 1950 ms), not the 66 of a fixed interval.
#[test]
fn client_retransmissions_back_off() {
    let System { mut sim, .. } = system(14, Network::reliable(), 4, 1, 1);
    for i in 0..4 {
        sim.crash(replica(i));
    }
    sim.run_until(Time::ZERO + Duration::from_secs(2));
    assert_eq!(
        counter(
            &sim,
            Addr::Client(runtime::ClientId(1)),
            "client: retransmission"
        ),
        7
    );
    assert_eq!(sim.ops_completed(), 0);
}

/// §4 (request authenticators): a Byzantine primary that alters a client's
/// operation in its pre-prepares (re-signing a header with the new digest)
/// cannot get it prepared: every backup's entry of the authenticator fails,
/// so none vouches for it; the forged operation never executes, and a view
/// change moves the group on.
#[test]
fn a_primary_cannot_forge_client_requests() {
    let System {
        mut sim, log, keys, ..
    } = system(13, Network::reliable(), 4, 3, 20);
    let signer = wire::Signer::new(&keys[0]).unwrap();
    log.exclude(ReplicaId(0));
    sim.set_byzantine(
        replica(0),
        Box::new(
            move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
                let forged = match wire::decode::<Message>(&bytes) {
                    Ok(Message::PrePrepare(pp, mut batch))
                        if batch.first().is_some_and(|r| !r.request.op.is_empty()) =>
                    {
                        *batch[0].request.op.last_mut().expect("not empty") ^= 1;
                        let header = PrePrepare {
                            digest: batch_digest(&batch).unwrap(),
                            ..pp.payload
                        };
                        let signed = wire::Signed::sign(header, &signer).unwrap();
                        wire::codec::encode_to_vec(&Message::PrePrepare(signed, batch)).ok()
                    }
                    _ => None,
                };
                out.push((to, forged.unwrap_or(bytes)));
            },
        ),
    );
    finish(&mut sim, 10);
    assert_eq!(sim.ops_completed(), 60);
    assert!(total(&sim, "pre-prepare: requests not authenticated here") > 0);
    assert!(total(&sim, "view change: started") > 0);
    // Linearizability fails if a forged write executed anywhere.
    check(&sim, &log).unwrap();
    assert!(executed(&log).iter().all(|(_, n)| *n > 0));
}
