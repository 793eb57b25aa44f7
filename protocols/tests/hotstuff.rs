//! Scenario tests of HotStuff in the simulator, and of its certificates at
//! the codec. Section and algorithm numbers are Yin et al., "HotStuff: BFT
//! Consensus with Linearity and Responsiveness", PODC 2019 (the event-driven
//! chained protocol of §5–§6, Algorithms 3–5). Attacks by a Byzantine peer
//! are in `hotstuff_attacks.rs`, seeded runs in `hotstuff_seeded.rs`.

mod hotstuff_support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use protocols::hotstuff::simulate::{
    IDLE_SLACK, SETTLE, System, add_client, add_steady_client, config, equivocate, keys,
    proposal_auth, system,
};
use protocols::hotstuff::{
    CHECKPOINT_INTERVAL, COMMITTED_KEPT, Codec, Config, Replica, check_qc, check_tc,
};
use protocols::simulate::{ExecutionLog, KvWorkload, check, check_caught_up};
use runtime::sim::{Byzantine, Network, Simulator};
use runtime::{Addr, ReplicaId, SharedState, Source, Time};
use wire::control::{BATCHES_COUNTER, VIEW_CHANGES_COUNTER};
use wire::hotstuff::{
    Block, Message, Proposal, Proposed, QuorumCert, TimedOut, Timeout, TimeoutCert, Vote,
};
use wire::{Digest, SecretKey, Signed, Signer};

use hotstuff_support::{
    Watch, add_probed_replica, counter, executed, finish, proposal_bytes, recorder, replica, total,
    voted_views,
};

// ---------------------------------------------------------------------
// The normal case.

/// §5 (Algorithm 3, chained): with n = 4 (f = 1) every operation completes
/// on f + 1 matching replies, every replica executes the same requests in
/// the same order, no view times out, and the leader rotates every view
/// (§6, round robin): every replica proposed blocks.
#[test]
fn normal_case_n4() {
    normal_case(1, 4);
}

/// §5 with n = 7 (f = 2): QCs of 5 votes, replies accepted on 3.
#[test]
fn normal_case_n7() {
    normal_case(2, 7);
}

fn normal_case(seed: u64, n: usize) {
    let System { mut sim, log, .. } = system(seed, Network::reliable(), n, 3, 20);
    finish(&mut sim, 10);
    assert_eq!(sim.ops_completed(), 60);
    let executed = executed(&log);
    assert_eq!(executed.len(), n);
    for (r, count) in &executed {
        assert!(*count >= 60, "replica {} executed {count}", r.0);
        assert_eq!(*count, executed[0].1, "replica {}", r.0);
    }
    for i in 0..n as u8 {
        assert!(
            counter(&sim, replica(i), BATCHES_COUNTER) > 0,
            "replica {i} never proposed a block with requests"
        );
    }
    assert_eq!(total(&sim, VIEW_CHANGES_COUNTER), 0, "{:?}", sim.counters());
    check(&sim, &log).unwrap();
}

/// Replies name the next proposer (`Reply::view`): a lone closed-loop
/// client's requests reach the replica that proposes them, so none is
/// forwarded after its registration (which goes to every replica, and
/// each but the leader passes it on).
#[test]
fn a_lone_client_sends_to_the_next_proposer() {
    let System { mut sim, log, .. } = system(15, Network::reliable(), 4, 1, 30);
    finish(&mut sim, 30);
    assert_eq!(sim.ops_completed(), 30);
    let forwarded = total(&sim, "request: forwarded to the leader");
    assert!(
        forwarded <= 3,
        "{forwarded} forwarded: {:?}",
        sim.counters()
    );
    check(&sim, &log).unwrap();
}

// ---------------------------------------------------------------------
// Byzantine leaders.

/// §4.3 and §6 (safety, Lemma 1 and Theorem 2): a leader that proposes two
/// blocks for one view to different replicas. Split 3 | 1 the larger side
/// certifies its block; split 2 | 2 neither side has a quorum: the next
/// leader sees the votes split and times the view out at once, the others
/// follow it, and it proposes on their TC (so its own view is not lost
/// too). Either way no two correct replicas commit different blocks, and
/// every operation completes.
#[test]
fn an_equivocating_leader_splits_no_commit() {
    type Victim = fn(Addr) -> bool;
    let splits: [(&str, Victim); 2] = [
        ("3 | 1", |to| to == replica(3)),
        ("2 | 2", |to| matches!(to, Addr::Replica(r) if r.0 >= 2)),
    ];
    for (seed, (name, victim)) in [(11, splits[0]), (12, splits[1])] {
        for network in [Network::reliable(), Network::faulty(0.05)] {
            let System {
                mut sim, log, keys, ..
            } = system(seed, network, 4, 3, 20);
            log.exclude(ReplicaId(1));
            sim.set_byzantine(replica(1), equivocate(&keys, ReplicaId(1), victim));
            finish(&mut sim, 30);
            assert_eq!(sim.ops_completed(), 60, "split {name}");
            assert!(sim.faults().byzantine > 0);
            if name == "2 | 2" {
                assert!(
                    total(&sim, VIEW_CHANGES_COUNTER) > 0,
                    "split {name}: no view timed out"
                );
                assert!(
                    total(&sim, "vote: split, no QC can form") > 0,
                    "split {name}: the next leader never saw the votes split"
                );
            }
            check(&sim, &log).unwrap_or_else(|e| panic!("split {name}: {e}"));
        }
    }
}

/// §6 (liveness) with n = 4 and round robin: under steady load a leader
/// that equivocates splits its view's votes 2 | 2 every time it leads.
/// The next leader then has neither a QC nor a TC for that view; if its
/// own view were lost too, the two correct views left in every four would
/// never make a three-chain and nothing would commit again. It times the
/// split view out at once and proposes on the others' TC, so operations
/// go on completing (none did in two seconds before it did).
#[test]
fn a_leader_that_always_equivocates_does_not_stop_commits() {
    let System {
        mut sim,
        log,
        keys,
        config,
    } = system(14, Network::reliable(), 4, 0, 0);
    log.exclude(ReplicaId(1));
    let until = Time::ZERO + Duration::from_secs(2);
    for id in 1..=4 {
        add_steady_client(&mut sim, &config, id, until, Duration::from_millis(1));
    }
    sim.set_byzantine(
        replica(1),
        equivocate(
            &keys,
            ReplicaId(1),
            |to| matches!(to, Addr::Replica(r) if r.0 >= 2),
        ),
    );
    sim.run_until(until);
    let completed = sim.ops_completed();
    // The clients stop at `until`; their last operations settle.
    sim.run_until(until + Duration::from_secs(1));
    assert!(sim.faults().byzantine > 0);
    // The split costs its leader's view and no timer: 2,487 operations in
    // two seconds when this was written (the four clients think up to
    // 1 ms), none without the split rule.
    assert!(
        completed >= 1_000,
        "{completed} operations in 2 s: {:?}",
        sim.counters()
    );
    assert!(
        total(&sim, "vote: split, no QC can form") > 0,
        "the votes never split: {:?}",
        sim.counters()
    );
    check(&sim, &log).unwrap();
}

/// §6 (the Pacemaker): a silent leader costs one view timeout per view it
/// leads, not a stall. Replica 1 sends nothing, so every fourth view times
/// out; the run takes at most about a timeout per such view longer than
/// the same run without the fault, and no correct replica times out in
/// many more views than replica 1 led.
#[test]
fn a_silent_leader_costs_one_timeout_per_view() {
    let seed = 13;
    let (baseline, _, _) = silent_leader_run(seed, false);
    let (faulty, views, timeouts) = silent_leader_run(seed, true);
    let n = 4;
    let silent_views = (1..=views).filter(|v| v % n == 1).count() as u64;
    let timeout = Duration::from_millis(wire::hotstuff::VIEW_TIMEOUT_MS.default);
    assert!(silent_views > 0);
    for (i, t) in timeouts.iter().enumerate() {
        assert!(
            *t >= 1 && *t <= silent_views + 1,
            "replica {i}: timed out in {t} views, replica 1 led {silent_views}"
        );
    }
    let extra = faulty.saturating_sub(baseline);
    let bound = timeout * (2 * silent_views as u32 + 1);
    assert!(
        extra <= bound,
        "the silent leader cost {extra:?} over {baseline:?} for {silent_views} views \
         (bound {bound:?})"
    );
}

/// The run of [`a_silent_leader_costs_one_timeout_per_view`]: how long the
/// clients took, the highest view a correct replica reached, and the views
/// each correct replica timed out in.
fn silent_leader_run(seed: u64, silent: bool) -> (Duration, u64, Vec<u64>) {
    let keys = keys(seed, 4);
    let config = config(&keys);
    let (mut sim, log) = bare(seed, Network::reliable());
    let view = Rc::new(Cell::new(0));
    for (i, key) in keys.iter().enumerate() {
        let seen = Rc::clone(&view);
        let watch: Watch = if i == 1 {
            Rc::new(|_| {})
        } else {
            Rc::new(move |r: &Replica| seen.set(seen.get().max(r.view())))
        };
        add_probed_replica(&mut sim, &log, &config, key, i as u8, watch);
    }
    for id in 1..=3 {
        add_client(&mut sim, &config, id, 20);
    }
    if silent {
        log.exclude(ReplicaId(1));
        sim.set_byzantine(replica(1), Box::new(Byzantine::Silent));
    }
    finish(&mut sim, 30);
    assert_eq!(sim.ops_completed(), 60);
    check(&sim, &log).unwrap();
    let timeouts = [0, 2, 3]
        .iter()
        .map(|&i| counter(&sim, replica(i), VIEW_CHANGES_COUNTER))
        .collect();
    (sim.now() - Time::ZERO, view.get(), timeouts)
}

// ---------------------------------------------------------------------
// Crashes.

/// §4.4 and §6: with f replicas crashed (n = 4, f = 1; n = 7, f = 2) the
/// others still form QCs of n − f votes; each view a crashed replica
/// leads times out and the next leader proposes on the TC.
#[test]
fn f_crashed_replicas_progress() {
    for (seed, n, crashed) in [(14, 4, &[3u8][..]), (15, 7, &[5, 6][..])] {
        let System { mut sim, log, .. } = system(seed, Network::reliable(), n, 3, 20);
        let crashed = crashed.to_vec();
        sim.schedule(Time::from_nanos(5_000_000), move |sim| {
            for &i in &crashed {
                sim.crash(replica(i));
            }
        });
        finish(&mut sim, 30);
        assert_eq!(sim.ops_completed(), 60, "n = {n}");
        assert!(total(&sim, VIEW_CHANGES_COUNTER) > 0);
        check(&sim, &log).unwrap();
    }
}

/// §6's pacemaker with a leader that stays down: with round robin its view
/// comes every n views, and each one is a timer's wait for the group (a
/// three-chain needs three views in a row, so most operations wait for
/// one). A replica that timed out in a view the crashed replica led, and
/// has heard nothing from it since, gives its next view a shorter timer
/// (`SILENT_LEADER_SHARE`): twenty clients keep more than a tenth of their
/// rate before the crash (with the full timer for every one of its
/// views, under a fiftieth).
#[test]
fn a_crashed_leader_costs_a_shorter_timer_each_turn() {
    let System { mut sim, log, .. } = system(5, Network::reliable(), 4, 20, 700);
    let at = |ms: u64| Time::from_nanos(ms * 1_000_000);
    sim.run_until(at(500));
    let start = sim.ops_completed();
    sim.run_until(at(1_000));
    let before = sim.ops_completed() - start;
    sim.crash(replica(2));
    sim.run_until(at(1_300));
    let start = sim.ops_completed();
    sim.run_until(at(1_800));
    let after = sim.ops_completed() - start;
    assert!(
        after * 10 > before,
        "{after} ops in 0.5 s after, {before} before"
    );
    let shorter = total(&sim, "view: its leader silent, a shorter timer");
    assert!(shorter > 20, "{shorter} shorter timers");
    finish(&mut sim, 30);
    assert_eq!(sim.ops_completed(), 20 * 700);
    check(&sim, &log).unwrap();
}

// ---------------------------------------------------------------------
// Block sync and checkpoints.

/// A replica cut off while the others commit, then let back (§4.2's
/// "a replica that lacks a block fetches it"): it is less than
/// COMMITTED_KEPT heights behind, fetches the blocks it missed, and
/// catches up without a checkpoint.
#[test]
fn a_replica_partitioned_away_and_back_syncs_blocks() {
    let (behind, sim, log) = partitioned_run(16, Duration::from_millis(150));
    assert!(
        behind > 0 && behind < COMMITTED_KEPT,
        "{behind} heights behind at the heal"
    );
    assert!(counter(&sim, replica(3), "sync: blocks fetched") > 0);
    assert_eq!(counter(&sim, replica(3), "snapshot: installed"), 0);
    check(&sim, &log).unwrap();
    check_caught_up(&sim, &log, IDLE_SLACK).unwrap();
}

/// A replica cut off for so long that the blocks above the last one it
/// executed were garbage-collected everywhere else (more than
/// COMMITTED_KEPT heights): it installs a checkpoint certified by f + 1
/// replicas and catches up from the block it names.
#[test]
fn a_replica_partitioned_past_the_kept_blocks_installs_a_checkpoint() {
    let (behind, sim, log) = partitioned_run(17, Duration::from_millis(3_000));
    assert!(
        behind > COMMITTED_KEPT + CHECKPOINT_INTERVAL,
        "only {behind} heights behind at the heal"
    );
    assert!(counter(&sim, replica(3), "snapshot: installed") >= 1);
    check(&sim, &log).unwrap();
    check_caught_up(&sim, &log, IDLE_SLACK).unwrap();
}

/// Replica 3 is partitioned away from 20 ms for `cut`, under steady load
/// from two clients that run until well after the heal. Returns how many
/// heights it was behind replica 0 at the heal, and the settled run.
fn partitioned_run(seed: u64, cut: Duration) -> (u64, Simulator, ExecutionLog) {
    let keys = keys(seed, 4);
    let config = config(&keys);
    let (mut sim, log) = bare(seed, Network::reliable());
    let heights: Vec<Rc<Cell<u64>>> = (0..4).map(|_| Rc::default()).collect();
    for (i, key) in keys.iter().enumerate() {
        let height = Rc::clone(&heights[i]);
        let watch: Watch = Rc::new(move |r: &Replica| height.set(r.executed()));
        add_probed_replica(&mut sim, &log, &config, key, i as u8, watch);
    }
    let start = Time::from_nanos(20_000_000);
    let heal = start + cut;
    let until = heal + Duration::from_millis(500);
    for id in 1..=2 {
        add_steady_client(&mut sim, &config, id, until, Duration::from_millis(1));
    }
    sim.schedule(start, |sim| sim.partition(&[&[replica(3)]]));
    let behind = Rc::new(Cell::new(0));
    let (at_heal, h0, h3) = (
        Rc::clone(&behind),
        Rc::clone(&heights[0]),
        Rc::clone(&heights[3]),
    );
    sim.schedule(heal, move |sim| {
        at_heal.set(h0.get().saturating_sub(h3.get()));
        sim.heal();
        sim.mark_healed();
    });
    finish(&mut sim, 30);
    let settled = sim.now() + SETTLE;
    sim.run_until(settled);
    (behind.get(), sim, log)
}

// ---------------------------------------------------------------------
// Durable state.

/// §4.3's vote rule across a crash (the paper's vheight on stable
/// storage): replica 3 crashes right after it made its first vote durable,
/// before the vote left. It restarts with its last voted view restored,
/// and a second block for that view (an equivocating leader's, correctly
/// signed) gets no vote from it: it votes at most once in a view over
/// both its lives. Without its durable record the same restart votes for
/// the second block, which is what the record is for.
#[test]
fn a_restarted_replica_does_not_vote_twice_in_a_view() {
    let kept = restart_after_vote(18, true);
    assert_eq!(kept.restored_voted, kept.voted_at_crash);
    assert!(kept.voted_at_crash >= 1);
    assert_eq!(kept.restored, 1, "recover: vote record restored");
    assert!(
        !kept.votes.contains(&kept.voted_at_crash),
        "replica 3 voted in view {} after its restart: {:?}",
        kept.voted_at_crash,
        kept.votes
    );
    assert!(kept.refused > 0, "the second block was not refused");

    let lost = restart_after_vote(18, false);
    assert_eq!(lost.voted_at_crash, kept.voted_at_crash);
    assert!(
        lost.votes.contains(&lost.voted_at_crash),
        "without its record replica 3 did not vote again: {:?}",
        lost.votes
    );
}

struct Restarted {
    /// The last view replica 3 voted in when it crashed, and after its
    /// restart.
    voted_at_crash: u64,
    restored_voted: u64,
    /// "recover: vote record restored" at replica 3.
    restored: u64,
    /// The views of the votes replica 3 sent, in both lives.
    votes: Vec<u64>,
    /// Refusals to vote at replica 3's second life.
    refused: u64,
}

/// The replica that crashes: not the leader of view 1 nor of view 2, so
/// its vote in view 1 goes out over the network.
const VOTER: u8 = 3;

fn restart_after_vote(seed: u64, keep_record: bool) -> Restarted {
    let keys = keys(seed, 4);
    let config = config(&keys);
    let (mut sim, log) = bare(seed, Network::reliable());
    // Replica 2's last voted view after each event, in order.
    let voted: Rc<RefCell<Vec<u64>>> = Rc::default();
    for (i, key) in keys.iter().enumerate() {
        let voted = Rc::clone(&voted);
        let watch: Watch = if i == usize::from(VOTER) {
            Rc::new(move |r: &Replica| voted.borrow_mut().push(r.last_voted()))
        } else {
            Rc::new(|_| {})
        };
        add_probed_replica(&mut sim, &log, &config, key, i as u8, watch);
    }
    add_client(&mut sim, &config, 1, 10);
    let (leader_sent, leader_recorder) = recorder();
    sim.set_byzantine(replica(1), leader_recorder);
    let (sent, replica_recorder) = recorder();
    sim.set_byzantine(replica(VOTER), replica_recorder);
    // Replica 2's first persist is its first vote: it has executed nothing.
    sim.crash_at_next_persist(replica(VOTER), true);
    let restart = Time::from_nanos(60_000_000);
    sim.run_until(restart);
    assert!(!sim.is_running(replica(VOTER)), "replica 3 never crashed");
    let voted_at_crash = *voted.borrow().last().expect("replica 3 ran");
    let first_life = voted.borrow().len();
    if !keep_record {
        sim.lose_durable_state(replica(VOTER));
    }
    // The proposal replica 3 voted for, from leader 1, and a second block
    // for the same view, signed by the leader too.
    let proposal = leader_sent
        .borrow()
        .iter()
        .find_map(|(to, m)| match m {
            Message::Proposal(p) if *to == replica(VOTER) && p.block.view == voted_at_crash => {
                Some(p.clone())
            }
            _ => None,
        })
        .expect("leader 1 proposed in the view replica 3 voted in");
    let mut second = proposal.clone();
    second.block.requests.clear();
    second.header.block = second.block.digest();
    second.auth = proposal_auth(&keys, ReplicaId(1)).authenticate(&second.header);
    assert_ne!(second.block.digest(), proposal.block.digest());
    let refused_before = refusals(&sim);
    sim.restart(replica(VOTER));
    let bytes = wire::codec::encode_to_vec(&Message::Proposal(second)).unwrap();
    sim.inject(replica(1), replica(VOTER), bytes);
    sim.run_until(restart + Duration::from_millis(5));
    let refused = refusals(&sim) - refused_before;
    finish(&mut sim, 30);
    if keep_record {
        check(&sim, &log).unwrap();
    }
    let restored_voted = voted.borrow()[first_life];
    Restarted {
        voted_at_crash,
        restored_voted,
        restored: counter(&sim, replica(VOTER), "recover: vote record restored"),
        votes: voted_views(&sent),
        refused,
    }
}

/// Times replica 3 refused to vote for a block of a view it is past or
/// voted in.
fn refusals(sim: &Simulator) -> u64 {
    [
        "vote: not in the replica's view",
        "vote: voted in this view already",
    ]
    .iter()
    .map(|r| counter(sim, replica(VOTER), r))
    .sum()
}

/// Every replica crashes at once mid-run and restarts 50 ms later: the
/// committed blocks are durable before any reply leaves, so no operation
/// a client saw complete is lost (the linearizability check would find a
/// read of a lost write), and every replica executes the same again.
#[test]
fn all_replicas_crash_and_restart_at_once_lose_nothing() {
    let (sim, log, before) = all_restart(19);
    assert!(before > 0, "nothing completed before the crash");
    assert!(total(&sim, "recover: vote record restored") >= 4);
    assert!(total(&sim, "recover: committed block executed again") >= 4);
    runtime::check::linearizability::check_kv(sim.history())
        .unwrap_or_else(|v| panic!("linearizability: {v}"));
    log.check_agreement().unwrap();
}

/// The same restart of every replica, and the clients finish afterwards.
/// They do not: every replica comes back with its lock and last voted
/// view but without the uncommitted blocks they refer to and without a QC
/// for its committed block, so no leader has a block to extend that the
/// others would vote for, and the group stalls for good.
#[test]
fn all_replicas_crash_and_restart_at_once_and_finish() {
    let (sim, log, _) = all_restart(19);
    assert_eq!(sim.ops_completed(), 90);
    check(&sim, &log).unwrap();
}

/// Three clients of 30 operations; every replica crashes at 40 ms and
/// restarts at 90 ms; the run goes on to 5 s or until the clients are
/// done. Returns it, and the operations completed before the crash.
fn all_restart(seed: u64) -> (Simulator, ExecutionLog, u64) {
    let System { mut sim, log, .. } = system(seed, Network::reliable(), 4, 3, 30);
    let before = Rc::new(Cell::new(0));
    let seen = Rc::clone(&before);
    sim.schedule(Time::from_nanos(40_000_000), move |sim| {
        seen.set(sim.ops_completed());
        for i in 0..4 {
            sim.crash(replica(i));
        }
    });
    sim.schedule(Time::from_nanos(90_000_000), |sim| {
        for i in 0..4 {
            sim.restart(replica(i));
        }
    });
    sim.run_until_clients_done(Time::ZERO + Duration::from_secs(5));
    (sim, log, before.get())
}

// ---------------------------------------------------------------------
// Forged certificates (§4.2: a QC is n − f votes of distinct replicas).

fn signer(keys: &[SecretKey], i: u8) -> Signer {
    Signer::new(&keys[usize::from(i)]).unwrap()
}

/// Replica `signed_by`'s signature over a vote of `voter` for `block` in
/// `view`.
fn vote_signature(
    keys: &[SecretKey],
    signed_by: u8,
    view: u64,
    block: Digest,
    voter: u8,
) -> wire::Signature {
    let vote = Vote {
        view,
        block,
        voter: ReplicaId(voter),
    };
    Signed::sign(vote, &signer(keys, signed_by))
        .unwrap()
        .signature
}

fn qc_of(keys: &[SecretKey], view: u64, block: Digest, voters: &[u8]) -> QuorumCert {
    QuorumCert {
        view,
        block,
        votes: voters
            .iter()
            .map(|&v| {
                let by = v.min(keys.len() as u8 - 1);
                (ReplicaId(v), vote_signature(keys, by, view, block, v))
            })
            .collect(),
    }
}

fn timed_out(keys: &[SecretKey], replica: u8, view: u64, high_qc_view: u64) -> TimedOut {
    let timeout = Timeout {
        view,
        high_qc_view,
        replica: ReplicaId(replica),
    };
    let by = replica.min(keys.len() as u8 - 1);
    TimedOut {
        replica: ReplicaId(replica),
        view,
        high_qc_view,
        signature: Signed::sign(timeout, &signer(keys, by)).unwrap().signature,
    }
}

fn group(seed: u64) -> (Vec<SecretKey>, Arc<Config>) {
    let keys = keys(seed, 4);
    let config = config(&keys);
    (keys, config)
}

fn refused(result: Result<(), runtime::DropReason>) -> &'static str {
    result.expect_err("accepted").0
}

#[test]
fn forged_qcs_are_refused() {
    let (keys, config) = group(20);
    let block = Digest::of(b"a block");
    assert_eq!(config.quorum(), 3);
    check_qc(&config, &qc_of(&keys, 5, block, &[0, 1, 2])).unwrap();
    check_qc(&config, &qc_of(&keys, 5, block, &[3, 1, 2, 0])).unwrap();
    check_qc(&config, &QuorumCert::genesis()).unwrap();

    let cases: Vec<(&str, QuorumCert, &str)> = vec![
        (
            "too few votes",
            qc_of(&keys, 5, block, &[0, 1]),
            "qc: not a quorum",
        ),
        ("no votes", qc_of(&keys, 5, block, &[]), "qc: not a quorum"),
        (
            "more votes than replicas",
            qc_of(&keys, 5, block, &[0, 1, 2, 3, 0]),
            "qc: not a quorum",
        ),
        (
            "a voter twice",
            qc_of(&keys, 5, block, &[0, 1, 1]),
            "qc: a replica twice",
        ),
        (
            "a voter out of range",
            qc_of(&keys, 5, block, &[0, 1, 4]),
            "qc: no such replica",
        ),
        (
            "a voter far out of range",
            qc_of(&keys, 5, block, &[0, 1, 200]),
            "qc: no such replica",
        ),
        (
            "a vote signed by another replica",
            {
                let mut qc = qc_of(&keys, 5, block, &[0, 1, 2]);
                qc.votes[2].1 = vote_signature(&keys, 3, 5, block, 2);
                qc
            },
            "qc: bad signature",
        ),
        (
            "a vote for another block",
            {
                let mut qc = qc_of(&keys, 5, block, &[0, 1, 2]);
                qc.votes[1].1 = vote_signature(&keys, 1, 5, Digest::of(b"another"), 1);
                qc
            },
            "qc: bad signature",
        ),
        (
            "a vote for another view",
            {
                let mut qc = qc_of(&keys, 5, block, &[0, 1, 2]);
                qc.votes[0].1 = vote_signature(&keys, 0, 4, block, 0);
                qc
            },
            "qc: bad signature",
        ),
        (
            "the genesis QC with votes",
            qc_of(&keys, 0, QuorumCert::genesis().block, &[0, 1, 2]),
            "qc: not the genesis QC",
        ),
        (
            "view 0 for another block",
            QuorumCert {
                block,
                ..QuorumCert::genesis()
            },
            "qc: not the genesis QC",
        ),
    ];
    for (what, qc, reason) in cases {
        assert_eq!(refused(check_qc(&config, &qc)), reason, "{what}");
    }
}

#[test]
fn forged_tcs_are_refused() {
    let (keys, config) = group(21);
    let tc = |view, timeouts: Vec<TimedOut>| TimeoutCert { view, timeouts };
    let t = |r, view, high| timed_out(&keys, r, view, high);
    check_tc(&config, &tc(7, vec![t(0, 7, 3), t(1, 7, 5), t(2, 7, 6)])).unwrap();
    // Timeouts for later views count toward a TC for an earlier one.
    check_tc(&config, &tc(7, vec![t(0, 8, 3), t(1, 7, 5), t(2, 9, 6)])).unwrap();

    let cases = vec![
        (
            "too few timeouts",
            tc(7, vec![t(0, 7, 3), t(1, 7, 5)]),
            "tc: not a quorum",
        ),
        (
            "more timeouts than replicas",
            tc(
                7,
                vec![t(0, 7, 3), t(1, 7, 5), t(2, 7, 6), t(3, 7, 6), t(0, 7, 3)],
            ),
            "tc: not a quorum",
        ),
        (
            "a replica twice",
            tc(7, vec![t(0, 7, 3), t(1, 7, 5), t(1, 7, 5)]),
            "tc: a replica twice",
        ),
        (
            "a replica out of range",
            tc(7, vec![t(0, 7, 3), t(1, 7, 5), t(9, 7, 5)]),
            "tc: no such replica",
        ),
        (
            "a timeout below its view",
            tc(7, vec![t(0, 7, 3), t(1, 6, 5), t(2, 7, 6)]),
            "tc: a timeout below its view",
        ),
        (
            "a QC view not below the timeout's view",
            tc(7, vec![t(0, 7, 3), t(1, 7, 7), t(2, 7, 6)]),
            "tc: QC not below its timeout's view",
        ),
        (
            "a QC view above the timeout's view",
            tc(7, vec![t(0, 7, 3), t(1, 7, u64::MAX), t(2, 7, 6)]),
            "tc: QC not below its timeout's view",
        ),
        (
            "a signature over another timeout",
            {
                let mut forged = t(2, 7, 6);
                forged.high_qc_view = 2;
                tc(7, vec![t(0, 7, 3), t(1, 7, 5), forged])
            },
            "tc: bad signature",
        ),
        (
            "a timeout signed by another replica",
            {
                let mut forged = t(2, 7, 6);
                forged.signature = t(3, 7, 6).signature;
                tc(7, vec![t(0, 7, 3), t(1, 7, 5), forged])
            },
            "tc: bad signature",
        ),
    ];
    for (what, tc, reason) in cases {
        assert_eq!(refused(check_tc(&config, &tc)), reason, "{what}");
    }
}

/// The codec applies the same checks to the QC a proposal's block carries
/// and to its TC, before the replica sees it, and to a QC a replica
/// announces: each forgery is dropped with its reason.
#[test]
fn the_codec_refuses_proposals_with_forged_certificates() {
    let (keys, config) = group(22);
    let codec = Codec::replica(Arc::clone(&config), ReplicaId(0), &keys[0]).unwrap();
    let genesis = Block::genesis();
    let parent = Block {
        view: 4,
        height: 1,
        justify: QuorumCert::genesis(),
        requests: vec![],
    };
    let good_qc = qc_of(&keys, 4, parent.digest(), &[0, 1, 2]);
    let proposal = |view: u64, justify: QuorumCert, tc: Option<TimeoutCert>| {
        let block = Block {
            view,
            height: 2,
            justify,
            requests: vec![],
        };
        proposal_bytes(&keys, &config, block, tc)
    };
    let decode = |(leader, bytes): (ReplicaId, Vec<u8>)| {
        codec
            .decode(Source::Replica(leader), &bytes)
            .map(|_| ())
            .map_err(|e| e.0)
    };
    assert_eq!(decode(proposal(5, good_qc.clone(), None)), Ok(()));
    let few = qc_of(&keys, 4, parent.digest(), &[0, 1]);
    assert_eq!(
        decode(proposal(5, few.clone(), None)),
        Err("qc: not a quorum")
    );
    let twice = qc_of(&keys, 4, parent.digest(), &[0, 2, 2]);
    assert_eq!(decode(proposal(5, twice, None)), Err("qc: a replica twice"));
    let mut wrong_block = good_qc.clone();
    wrong_block.block = genesis.digest();
    assert_eq!(
        decode(proposal(5, wrong_block, None)),
        Err("qc: bad signature")
    );
    // View 6 entered on a TC for view 5, carrying the QC of view 4.
    let tc = |timeouts| TimeoutCert { view: 5, timeouts };
    let good_tc = tc(vec![
        timed_out(&keys, 0, 5, 4),
        timed_out(&keys, 1, 5, 4),
        timed_out(&keys, 3, 5, 4),
    ]);
    assert_eq!(
        decode(proposal(6, good_qc.clone(), Some(good_tc.clone()))),
        Ok(())
    );
    let low = tc(vec![
        timed_out(&keys, 0, 5, 4),
        timed_out(&keys, 1, 4, 3),
        timed_out(&keys, 3, 5, 4),
    ]);
    assert_eq!(
        decode(proposal(6, good_qc.clone(), Some(low))),
        Err("tc: a timeout below its view")
    );
    let high = tc(vec![
        timed_out(&keys, 0, 5, 4),
        timed_out(&keys, 1, 5, 5),
        timed_out(&keys, 3, 5, 4),
    ]);
    assert_eq!(
        decode(proposal(6, good_qc.clone(), Some(high))),
        Err("tc: QC not below its timeout's view")
    );
    let short = tc(good_tc.timeouts[..2].to_vec());
    assert_eq!(
        decode(proposal(6, good_qc.clone(), Some(short))),
        Err("tc: not a quorum")
    );
    // Without a certificate for view 5, view 6 cannot be entered.
    assert_eq!(
        decode(proposal(6, good_qc.clone(), None)),
        Err("proposal: no certificate for the view before")
    );
    // A replica's announced QC.
    let sync = |qc: QuorumCert| {
        let info = wire::hotstuff::SyncInfo {
            high_qc: qc.clone(),
            commit_qc: qc,
            tc: None,
        };
        let bytes = wire::codec::encode_to_vec(&Message::SyncInfo(info)).unwrap();
        codec
            .decode(Source::Replica(ReplicaId(2)), &bytes)
            .map(|_| ())
            .map_err(|e| e.0)
    };
    assert_eq!(sync(good_qc), Ok(()));
    assert_eq!(sync(few), Err("qc: not a quorum"));
}

/// A proposal is authenticated by the leader's MAC for the replica that
/// receives it: one made with another replica's keys, another replica's
/// entry, an authenticator of the wrong length, a header changed after it
/// was authenticated, and one from another address are each refused.
#[test]
fn proposals_carry_the_leaders_mac_for_each_replica() {
    let (keys, config) = group(23);
    let me = ReplicaId(0);
    let codec = Codec::replica(Arc::clone(&config), me, &keys[0]).unwrap();
    let view = 1;
    let leader = config.leader(view);
    assert_ne!(leader, me);
    let block = Block {
        view,
        height: 1,
        justify: QuorumCert::genesis(),
        requests: vec![],
    };
    let header = Proposed {
        view,
        block: block.digest(),
        leader,
    };
    let decode = |from: ReplicaId, header: Proposed, auth: Vec<wire::Mac>| {
        let bytes = wire::codec::encode_to_vec(&Message::Proposal(Proposal {
            header,
            auth,
            block: block.clone(),
            tc: None,
        }))
        .unwrap();
        codec
            .decode(Source::Replica(from), &bytes)
            .map(|_| ())
            .map_err(|e| e.0)
    };
    let good = proposal_auth(&keys, leader).authenticate(&header);
    assert_eq!(decode(leader, header, good.clone()), Ok(()));
    let bad = Err("proposal: bad authenticator");
    let other = ReplicaId((leader.0 + 1) % 4);
    let forged = proposal_auth(&keys, other).authenticate(&header);
    assert_eq!(
        decode(leader, header, forged),
        bad,
        "another replica's keys"
    );
    let mut shifted = good.clone();
    shifted.swap(usize::from(me.0), usize::from(other.0));
    assert_eq!(decode(leader, header, shifted), bad, "another entry");
    assert_eq!(decode(leader, header, good[..3].to_vec()), bad, "short");
    let mut long = good.clone();
    long.push(good[0]);
    assert_eq!(decode(leader, header, long), bad, "long");
    assert_eq!(decode(leader, header, vec![]), bad, "none");
    let moved = Proposed {
        leader: other,
        ..header
    };
    assert_eq!(
        decode(other, moved, good.clone()),
        Err("proposal: not from the view's leader")
    );
    assert_eq!(
        decode(other, header, good),
        Err("proposal: not from the leader's address")
    );
}

/// A bare simulator with the usual workload, for a test that adds the
/// nodes itself.
fn bare(seed: u64, network: Network) -> (Simulator, ExecutionLog) {
    let mut sim = Simulator::new(seed, network);
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    (sim, ExecutionLog::default())
}
