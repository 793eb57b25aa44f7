//! The seeded runs can say no: each bug put back behind the test-only switch
//! (see `protocols::planted`) is caught by `--faults all` within a seed
//! budget. Five are bugs the adversarial review found in PBFT, three are
//! classic ones planted to see whether the simulator finds them, three are
//! durability bugs of the baseline's durable mode, two are chain
//! replication's (a Sent list never resent, a tail read without its
//! lease), three are HotStuff's (a vote without the lock check, a
//! second vote in a view, a commit on a two-chain), and three are
//! Viewstamped Replication's (a new primary ignoring the last normal view,
//! a commit below a quorum, messages of a replica's life before its
//! recovery taken).
//!
//! Runs only in a build with the `planted-bugs` feature, which needs debug
//! assertions (the `planted` profile):
//!
//! ```text
//! cargo test --profile planted -p protocols --features planted-bugs --test planted
//! ```
//!
//! Each test runs seeds from 0 until one fails and reports which; the
//! budgets leave room above the seeds that failed first when they were set
//! (the closing note of the change gives them for 10,000 seeds each). Bugs
//! that the seeds do not reach, or reach only through a liveness failure
//! that does not show the bug, are caught by scenarios made for them.

#![cfg(feature = "planted-bugs")]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

mod pbft_support;

use protocols::chain::bugs as chain;
use protocols::hotstuff::bugs as hotstuff;
use protocols::pbft::bugs as pbft;
use protocols::planted::{self, Bug};
use protocols::simulate::{Profile, Protocol, simulate};
use protocols::unreplicated::bugs as unreplicated;

/// The first seed in `0..budget` of `protocol` that fails with `bug`
/// planted.
fn first_failure(protocol: Protocol, bug: Bug, budget: u64) -> Option<(u64, String)> {
    static QUIET: Once = Once::new();
    // Panics are failures these runs look for: not worth a backtrace each.
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    (0..budget).find_map(|seed| {
        let run = catch_unwind(AssertUnwindSafe(|| {
            planted::with(Some(bug), || simulate(protocol, seed, Profile::All, false))
        }));
        match run {
            Ok(outcome) if outcome.report.passed => None,
            Ok(outcome) => Some((seed, outcome.report.failure.unwrap_or_default())),
            Err(_) => Some((seed, "panic".to_string())),
        }
    })
}

fn caught_within(bug: Bug, budget: u64) {
    caught_in(protocols::pbft::PROTOCOL, bug, budget);
}

fn caught_in(protocol: Protocol, bug: Bug, budget: u64) {
    match first_failure(protocol, bug, budget) {
        Some((seed, why)) => println!("{bug}: caught at seed {seed}: {why}"),
        None => panic!("{bug}: no failure in {budget} seeds"),
    }
}

#[test]
fn status_overflow_is_caught() {
    caught_within(pbft::STATUS_OVERFLOW, 500);
}

#[test]
fn quorum_of_2f_plus_1_for_any_n_is_caught() {
    caught_within(pbft::QUORUM_2F_PLUS_1, 1_500);
}

#[test]
fn unchecked_state_chunks_are_caught() {
    caught_within(pbft::UNCHECKED_STATE_CHUNKS, 2_000);
}

#[test]
fn a_timer_reset_by_any_execution_is_caught() {
    caught_within(pbft::TIMER_RESET_BY_ANY_EXECUTION, 3_000);
}

/// Backups that do not hand the requests they waited for to a new primary.
/// The seeded runs found it (at seed 2,423 of `all`) while clients
/// registered with the primary alone; since registrations reach every
/// replica, no seed of 12,000 does, so a scenario made for it says no: a
/// request only the backups still have, and without the hand-over the view
/// changes cascade.
#[test]
fn no_relay_on_a_new_view_is_caught_by_its_scenario() {
    let (with, _) = pbft_support::hand_over_scenario();
    let (without, _) = planted::with(
        Some(pbft::NO_RELAY_ON_NEW_VIEW),
        pbft_support::hand_over_scenario,
    );
    println!("no-relay-on-new-view: {with} view changes with the hand-over, {without} without");
    assert!(
        without > with,
        "{without} view changes without the hand-over, {with} with"
    );
}

#[test]
fn quorum_of_f_plus_1_is_caught() {
    caught_within(pbft::QUORUM_F_PLUS_1, 500);
}

#[test]
fn commit_without_prepared_is_caught() {
    caught_within(pbft::COMMIT_WITHOUT_PREPARED, 2_500);
}

#[test]
fn a_new_view_check_that_ignores_prepared_is_caught() {
    caught_within(pbft::NEW_VIEW_IGNORES_PREPARED, 6_000);
}

/// Without a bug planted, the same build passes the seeds it ran for the
/// cheapest catches: the failures above are the bugs', not the build's.
#[test]
fn nothing_planted_nothing_caught() {
    for seed in 0..200 {
        let outcome = simulate(protocols::pbft::PROTOCOL, seed, Profile::All, false);
        assert!(
            outcome.report.passed,
            "seed {seed}: {:?}",
            outcome.report.failure
        );
    }
}

#[test]
fn a_reply_before_the_log_has_its_request_is_caught() {
    caught_in(
        protocols::unreplicated::PROTOCOL,
        unreplicated::REPLY_BEFORE_LOG,
        1_000,
    );
}

#[test]
fn a_recovery_that_skips_the_log_is_caught() {
    caught_in(
        protocols::unreplicated::PROTOCOL,
        unreplicated::NO_LOG_REPLAY,
        1_000,
    );
}

#[test]
fn a_snapshot_before_the_result_is_recorded_is_caught() {
    caught_in(
        protocols::unreplicated::PROTOCOL,
        unreplicated::SNAPSHOT_BEFORE_RECORD,
        1_000,
    );
}

/// First caught at seed 1 when its budget was set.
#[test]
fn a_chain_that_never_resends_its_sent_list_is_caught() {
    caught_in(protocols::chain::PROTOCOL, chain::NO_SENT_RESEND, 50);
}

/// First caught at seed 9 when its budget was set.
#[test]
fn a_chain_tail_reading_without_its_lease_is_caught() {
    caught_in(protocols::chain::PROTOCOL, chain::STALE_TAIL_READS, 1_000);
}

/// Twins (Bano et al., OPODIS 2021) say no too: a HotStuff replica that
/// votes without its lock check is caught by the Twins sweep of
/// `hotstuff_twins.rs` (a leader's two correct copies in different
/// partitions, no hand-written adversary), and the run that catches it
/// passes without the bug. Of its budget (6,120 runs), the first catch is
/// now drawn schedule 98 at seed 1, the 359th run: replica 0 committed at
/// height 60 the block of view 65, replica 2 that of view 69 (it was the
/// 4,013th before silent leaders got a shorter timer). A replica voting twice in one view (`NO_VIEW_CHECK`) is not caught
/// in this budget: with one twin, the second of two QCs for a view is
/// never built on, since the next leader proposes once.
#[test]
fn twins_catch_a_hotstuff_vote_without_the_lock_check() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let bug = protocols::hotstuff::bugs::NO_LOCK_CHECK;
    let (seeds, drawn) = (24, 250);
    let Some(caught) = planted::with(Some(bug), || {
        hotstuff_twins_support::first_failure(seeds, drawn)
    }) else {
        panic!("{bug}: no failure in {seeds} seeds of the sweep with {drawn} drawn schedules");
    };
    println!(
        "{bug}: caught by {} at seed {}: {}",
        caught.name, caught.seed, caught.why
    );
    let schedules = hotstuff_twins_support::all_schedules(drawn);
    let (_, phases) = &schedules[caught.schedule];
    assert_eq!(
        hotstuff_twins_support::checked_run(caught.seed, phases),
        None,
        "the run that caught {bug} fails without it"
    );
}

#[path = "hotstuff_twins_support/mod.rs"]
mod hotstuff_twins_support;
/// The first seed in `0..budget` of `protocol` that fails with `bug`
/// planted and passes without it: a failure the build has anyway (should a
/// seed of `all` fail on its own) is not the bug's.
fn first_failure_of_the_bug(protocol: Protocol, bug: Bug, budget: u64) -> Option<(u64, String)> {
    let mut from = 0;
    while let Some((seed, why)) = first_failure_from(protocol, bug, from..budget) {
        let without = catch_unwind(AssertUnwindSafe(|| {
            simulate(protocol, seed, Profile::All, false)
        }));
        if without.is_ok_and(|outcome| outcome.report.passed) {
            return Some((seed, why));
        }
        from = seed + 1;
    }
    None
}

fn first_failure_from(
    protocol: Protocol,
    bug: Bug,
    seeds: std::ops::Range<u64>,
) -> Option<(u64, String)> {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    seeds.into_iter().find_map(|seed| {
        let run = catch_unwind(AssertUnwindSafe(|| {
            planted::with(Some(bug), || simulate(protocol, seed, Profile::All, false))
        }));
        match run {
            Ok(outcome) if outcome.report.passed => None,
            Ok(outcome) => Some((seed, outcome.report.failure.unwrap_or_default())),
            Err(_) => Some((seed, "panic".to_string())),
        }
    })
}

fn hotstuff_caught_within(bug: Bug, budget: u64) {
    match first_failure_of_the_bug(protocols::hotstuff::PROTOCOL, bug, budget) {
        Some((seed, why)) => println!("{bug}: caught at seed {seed}: {why}"),
        None => panic!("{bug}: no failure of its own in {budget} seeds"),
    }
}

/// HotStuff committing on a two-chain instead of the three-chain of direct
/// parents (Algorithm 4's `update`). First caught at seed 28 (agreement)
/// when its budget was set.
#[test]
fn a_hotstuff_commit_on_a_two_chain_is_caught() {
    hotstuff_caught_within(hotstuff::TWO_CHAIN_COMMIT, 500);
}

/// HotStuff's vote rule (Algorithm 4) by hand, for one correct replica
/// (replica 0) and three scripted ones whose keys the test holds: blocks
/// b1, b2, b3 of views 1 to 3 and a QC for b3 lock replica 0 on b2; a TC
/// for view 4 lets leader 1 propose in view 5 a block that extends b1 with
/// b1's QC, below the lock. Returns whether replica 0 voted for it, and
/// how often it refused with "vote: conflicts with the lock".
fn vote_below_the_lock() -> (bool, u64) {
    use protocols::hotstuff::simulate::{add_replica, config, keys, proposal_auth};
    use runtime::sim::{Network, Simulator};
    use runtime::{Addr, ReplicaId, Time};
    use wire::hotstuff::{
        Block, Message, Proposal, Proposed, QuorumCert, TimedOut, Timeout, TimeoutCert, Vote,
    };
    use wire::{Signed, Signer};

    let keys = keys(70, 4);
    let config = config(&keys);
    let mut sim = Simulator::new(70, Network::reliable());
    let log = protocols::simulate::ExecutionLog::default();
    add_replica(&mut sim, &log, &config, &keys[0], 0);
    for i in 1..4u8 {
        let addr = Addr::Replica(ReplicaId(i));
        sim.add_node(addr, Box::new(move |_| Box::new(Mute(addr))));
    }
    let (sent, recorder) = hotstuff_recorder();
    sim.set_byzantine(Addr::Replica(ReplicaId(0)), recorder);
    let signer = |i: usize| Signer::new(&keys[i]).unwrap();
    let qc = |block: &Block| QuorumCert {
        view: block.view,
        block: block.digest(),
        votes: (1..4u8)
            .map(|i| {
                let vote = Vote {
                    view: block.view,
                    block: block.digest(),
                    voter: ReplicaId(i),
                };
                (
                    ReplicaId(i),
                    Signed::sign(vote, &signer(i.into())).unwrap().signature,
                )
            })
            .collect(),
    };
    let child = |parent: &Block, view: u64| Block {
        view,
        height: parent.height + 1,
        justify: if parent.height == 0 {
            QuorumCert::genesis()
        } else {
            qc(parent)
        },
        requests: vec![],
    };
    let propose = |block: &Block, tc: Option<TimeoutCert>| {
        let leader = config.leader(block.view);
        let header = Proposed {
            view: block.view,
            block: block.digest(),
            leader,
        };
        let auth = proposal_auth(&keys, leader).authenticate(&header);
        let msg = Message::Proposal(Proposal {
            header,
            auth,
            block: block.clone(),
            tc,
        });
        (leader, wire::codec::encode_to_vec(&msg).unwrap())
    };
    let b1 = child(&Block::genesis(), 1);
    let b2 = child(&b1, 2);
    let b3 = child(&b2, 3);
    let mut script = vec![propose(&b1, None), propose(&b2, None), propose(&b3, None)];
    // The QC for b3 (b2's child in the next view): replica 0 locks b2.
    let sync = Message::SyncInfo(wire::hotstuff::SyncInfo {
        high_qc: qc(&b3),
        commit_qc: QuorumCert::genesis(),
        tc: None,
    });
    script.push((ReplicaId(3), wire::codec::encode_to_vec(&sync).unwrap()));
    let timeouts = (1..4u8)
        .map(|i| {
            let t = Timeout {
                view: 4,
                high_qc_view: 1,
                replica: ReplicaId(i),
            };
            TimedOut {
                replica: ReplicaId(i),
                view: 4,
                high_qc_view: 1,
                signature: Signed::sign(t, &signer(i.into())).unwrap().signature,
            }
        })
        .collect();
    let tc = TimeoutCert { view: 4, timeouts };
    let mut b5 = child(&b1, 5);
    b5.height = 2;
    script.push(propose(&b5, Some(tc)));
    for (k, (from, bytes)) in script.into_iter().enumerate() {
        sim.schedule(Time::from_nanos((1 + k as u64) * 1_000_000), move |sim| {
            sim.inject(Addr::Replica(from), Addr::Replica(ReplicaId(0)), bytes);
        });
    }
    sim.run_until(Time::from_nanos(20_000_000));
    let voted = sent.borrow().iter().any(|(_, m)| {
        matches!(m, Message::Vote(v) if v.payload.view == 5 && v.payload.block == b5.digest())
    });
    let refused = sim
        .node_counters(Addr::Replica(ReplicaId(0)))
        .map_or(0, |c| c.get("vote: conflicts with the lock"));
    (voted, refused)
}

/// The lock check of `safeNode`: the seeds of `all` catch the bug only by
/// a liveness failure (first at seed 1,826, on a seed that passes without
/// it, when this was written), not by a safety one, so a scenario made for
/// it says no: a vote below the lock.
#[test]
fn a_hotstuff_vote_without_the_lock_check_is_caught_by_its_scenario() {
    assert_eq!(vote_below_the_lock(), (false, 1), "the lock holds");
    let (voted, _) = planted::with(Some(hotstuff::NO_LOCK_CHECK), vote_below_the_lock);
    assert!(voted, "no-lock-check: no vote below the lock");
}

/// An equivocating leader (replica 1) sends both of its blocks of a view
/// to every replica, one after the other. Returns the votes the correct
/// replicas sent twice in one view.
fn votes_twice_in_a_view() -> u64 {
    use std::collections::HashMap;

    use protocols::hotstuff::simulate::{System, proposal_auth, system};
    use runtime::sim::Network;
    use runtime::{Addr, ReplicaId, Rng, Time};
    use wire::hotstuff::Message;

    let System {
        mut sim, log, keys, ..
    } = system(71, Network::reliable(), 4, 3, 20);
    log.exclude(ReplicaId(1));
    let auth = proposal_auth(&keys, ReplicaId(1));
    let both = move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
        let second = match wire::decode::<Message>(&bytes) {
            Ok(Message::Proposal(mut p)) if !p.block.requests.is_empty() => {
                p.block.requests.pop();
                p.header.block = p.block.digest();
                p.auth = auth.authenticate(&p.header);
                wire::codec::encode_to_vec(&Message::Proposal(p)).ok()
            }
            _ => None,
        };
        out.push((to, bytes));
        out.extend(second.map(|b| (to, b)));
    };
    sim.set_byzantine(Addr::Replica(ReplicaId(1)), Box::new(both));
    let mut sents = Vec::new();
    for i in [0u8, 2, 3] {
        let (sent, recorder) = hotstuff_recorder();
        sim.set_byzantine(Addr::Replica(ReplicaId(i)), recorder);
        sents.push(sent);
    }
    sim.run_until(Time::from_nanos(2_000_000_000));
    let mut twice = 0;
    for sent in sents {
        let mut blocks: HashMap<u64, Vec<wire::Digest>> = HashMap::new();
        for (_, m) in sent.borrow().iter() {
            if let Message::Vote(v) = m {
                let seen = blocks.entry(v.payload.view).or_default();
                if !seen.contains(&v.payload.block) {
                    seen.push(v.payload.block);
                }
            }
        }
        twice += blocks.values().filter(|b| b.len() > 1).count() as u64;
    }
    twice
}

/// The last-voted check of the vote rule: the seeds of `all` catch the bug
/// only by a liveness failure (first at seed 287, on a seed that passes
/// without it, when this was written), not by a safety one, so a scenario
/// made for it says no: with the bug, correct replicas vote for both
/// blocks of an equivocating leader's view.
#[test]
fn a_hotstuff_vote_twice_in_a_view_is_caught_by_its_scenario() {
    assert_eq!(votes_twice_in_a_view(), 0);
    let twice = planted::with(Some(hotstuff::NO_VIEW_CHECK), votes_twice_in_a_view);
    assert!(
        twice > 0,
        "no-height-check: no replica voted twice in a view"
    );
}

/// What a node sent, decoded: a tamperer that changes nothing.
type HotStuffSent = std::rc::Rc<std::cell::RefCell<Vec<(runtime::Addr, wire::hotstuff::Message)>>>;

fn hotstuff_recorder() -> (HotStuffSent, Box<dyn runtime::sim::Tamper>) {
    let sent: HotStuffSent = Default::default();
    let seen = std::rc::Rc::clone(&sent);
    let tamper = move |_: &mut runtime::Rng,
                       to: runtime::Addr,
                       bytes: Vec<u8>,
                       out: &mut Vec<(runtime::Addr, Vec<u8>)>| {
        if let Ok(msg) = wire::decode::<wire::hotstuff::Message>(&bytes) {
            seen.borrow_mut().push((to, msg));
        }
        out.push((to, bytes));
    };
    (sent, Box::new(tamper))
}

/// A node that sends nothing: an address to script datagrams from.
struct Mute(runtime::Addr);

impl runtime::node::Process for Mute {
    fn addr(&self) -> runtime::Addr {
        self.0
    }
    fn start(&mut self, _: runtime::Time, _: &mut Vec<runtime::node::Packet>) {}
    fn on_packet(
        &mut self,
        _: runtime::Time,
        _: runtime::Addr,
        _: &[u8],
        _: &mut Vec<runtime::node::Packet>,
    ) {
    }
    fn on_timers(&mut self, _: runtime::Time, _: &mut Vec<runtime::node::Packet>) {}
    fn next_deadline(&self) -> Option<runtime::Time> {
        None
    }
    fn counters(&self) -> &runtime::Counters {
        static NONE: std::sync::OnceLock<runtime::Counters> = std::sync::OnceLock::new();
        NONE.get_or_init(runtime::Counters::default)
    }
}

/// VR's new primary that picks the longest log whatever view it was last
/// normal in loses the operation that view 1 completed, in the scenario
/// made for §4.2's rule (the seeds rarely build it: it takes a deposed
/// primary with a longer log in the quorum of the view after next).
#[test]
fn a_vr_primary_ignoring_the_last_normal_view_is_caught_by_its_scenario() {
    let bug = protocols::vr::bugs::IGNORE_LAST_NORMAL;
    assert_eq!(vr_support::last_normal_run(), Ok(()), "fails without {bug}");
    let failure = planted::with(Some(bug), vr_support::last_normal_run);
    let why = failure.expect_err("not caught");
    println!("{bug}: {why}");
}

/// VR committing on f replicas instead of f + 1. First caught at seed 6
/// when its budget was set.
#[test]
fn a_vr_commit_below_a_quorum_is_caught() {
    caught_in(
        protocols::vr::PROTOCOL,
        protocols::vr::bugs::COMMIT_BELOW_QUORUM,
        500,
    );
}

#[path = "vr_support/mod.rs"]
mod vr_support;

/// VR without crash vectors takes the view-change messages of a replica's
/// life before its recovery (DISC'17), and the scenario made for it loses
/// committed operations.
#[test]
fn a_vr_replica_taking_messages_of_an_earlier_life_is_caught_by_its_scenario() {
    let bug = protocols::vr::bugs::NO_CRASH_VECTORS;
    assert_eq!(vr_support::stale_life_run(), Ok(()), "fails without {bug}");
    let failure = planted::with(Some(bug), vr_support::stale_life_run);
    let why = failure.expect_err("not caught");
    println!("{bug}: {why}");
}
