//! HotStuff attacked as a Byzantine peer would, with well-formed, correctly
//! signed messages (the developers' attack list of `pbft_attacks.rs`
//! applied to HotStuff): extreme values in every field, replays, spoofed
//! sources, unauthenticated messages from outside the group, structures a
//! peer can make grow, and group sizes where quorums must still meet. Each
//! must be dropped and counted, never panic, and leave the group live and
//! in agreement.

mod hotstuff_support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use protocols::hotstuff::simulate::{System, add_client, config, keys, proposal_auth, system};
use protocols::hotstuff::{BLOCKS_MAX, Codec, Config, REPLICAS_MAX, Replica, VIEWS_AHEAD};
use protocols::simulate::{ExecutionLog, KvWorkload, check};
use runtime::node::{Packet, Process};
use runtime::sim::{Network, Simulator, Tactics, Tamper};
use runtime::{Addr, ClientId, Counters, ReplicaId, Rng, SharedState, Time};
use wire::hotstuff::{Block, Chunk, Fetch, FetchChunk, Message, QueryCheckpoint, Timeout, Vote};
use wire::{Digest, SecretKey, Signed, Signer};

use hotstuff_support::{
    Watch, add_probed_replica, counter, high_water, proposal_bytes, replica, run_live, total,
};

/// The Byzantine replica of every attack here.
const BYZANTINE: u8 = 3;

fn byzantine() -> Addr {
    replica(BYZANTINE)
}

/// Kinds of message a tamperer rewrote, by name.
type Rewritten = Rc<RefCell<BTreeMap<&'static str, u64>>>;

/// A tamperer that sends what the replica holding `key` sends, and after
/// each message a copy with `value` in every number of it (views, heights,
/// counts, indices, nonces, sizes), signed again where the message is
/// signed: the extremes come from a member of the group, not from noise.
fn extremes(keys: &[SecretKey], value: u64) -> (Rewritten, Box<dyn Tamper>) {
    let signer = Signer::new(&keys[usize::from(BYZANTINE)]).unwrap();
    let auth = proposal_auth(keys, ReplicaId(BYZANTINE));
    let rewritten: Rewritten = Rc::default();
    let seen = Rc::clone(&rewritten);
    let tamper = move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
        let rewrite = match wire::decode::<Message>(&bytes) {
            Ok(Message::Proposal(mut p)) => {
                p.block.height = value;
                p.header.block = p.block.digest();
                p.auth = auth.authenticate(&p.header);
                Some(("proposal", Message::Proposal(p)))
            }
            Ok(Message::Vote(v)) => Some((
                "vote",
                Message::Vote(
                    Signed::sign(
                        Vote {
                            view: value,
                            ..v.payload
                        },
                        &signer,
                    )
                    .unwrap(),
                ),
            )),
            Ok(Message::Timeout(t, qc, _)) => Some((
                "timeout",
                Message::Timeout(
                    Signed::sign(
                        Timeout {
                            view: value,
                            ..t.payload
                        },
                        &signer,
                    )
                    .unwrap(),
                    qc,
                    None,
                ),
            )),
            Ok(Message::SyncInfo(mut info)) if info.tc.is_some() => {
                let tc = info.tc.as_mut().expect("matched");
                tc.view = value;
                for t in &mut tc.timeouts {
                    t.view = value;
                    t.high_qc_view = value;
                }
                Some(("tc", Message::SyncInfo(info)))
            }
            Ok(Message::Fetch(f)) => Some((
                "fetch",
                Message::Fetch(
                    Signed::sign(
                        Fetch {
                            count: value,
                            ..f.payload
                        },
                        &signer,
                    )
                    .unwrap(),
                ),
            )),
            Ok(Message::Blocks(mut blocks)) => {
                for b in &mut blocks {
                    b.height = value;
                    b.view = value;
                }
                Some(("blocks", Message::Blocks(blocks)))
            }
            Ok(Message::QueryCheckpoint(q)) => Some((
                "query",
                Message::QueryCheckpoint(
                    Signed::sign(
                        QueryCheckpoint {
                            nonce: value,
                            ..q.payload
                        },
                        &signer,
                    )
                    .unwrap(),
                ),
            )),
            Ok(Message::Checkpoint(c)) => {
                let mut c = c.payload;
                c.height = value;
                c.view = value;
                c.size = value;
                Some((
                    "checkpoint",
                    Message::Checkpoint(Signed::sign(c, &signer).unwrap()),
                ))
            }
            Ok(Message::FetchChunk(f)) => Some((
                "fetch chunk",
                Message::FetchChunk(
                    Signed::sign(
                        FetchChunk {
                            index: value,
                            ..f.payload
                        },
                        &signer,
                    )
                    .unwrap(),
                ),
            )),
            Ok(Message::Chunk(c)) => Some((
                "chunk",
                Message::Chunk(Chunk {
                    index: value,
                    size: value,
                    ..c
                }),
            )),
            _ => None,
        };
        out.push((to, bytes));
        if let Some((kind, msg)) = rewrite {
            *seen.borrow_mut().entry(kind).or_default() += 1;
            out.push((to, wire::codec::encode_to_vec(&msg).unwrap()));
        }
    };
    (rewritten, Box::new(tamper))
}

/// Every number a replica sends, at `u64::MAX`, `u64::MAX - 1` and 0, in
/// proposals (heights), votes and timeouts (views), TCs (views and QC
/// views), fetches (counts), blocks (heights and views), checkpoint
/// queries and offers (nonces, heights, sizes), chunk requests and chunks
/// (indices, sizes). The Byzantine replica is paused for a while so that it
/// falls behind and sends sync messages too. Nobody panics, every extreme
/// is dropped or harmless, and the group stays live and in agreement.
#[test]
fn extreme_values_in_every_field_crash_nobody() {
    let mut abandoned = 0;
    for (seed, value) in [(60, u64::MAX), (61, u64::MAX - 1), (62, 0)] {
        let System {
            mut sim, log, keys, ..
        } = system(seed, Network::faulty(0.05), 4, 3, 30);
        log.exclude(ReplicaId(BYZANTINE));
        let (rewritten, tamper) = extremes(&keys, value);
        sim.set_byzantine(byzantine(), tamper);
        sim.schedule(Time::from_nanos(20_000_000), |sim| sim.pause(byzantine()));
        sim.schedule(Time::from_nanos(200_000_000), |sim| sim.resume(byzantine()));
        run_live(&mut sim);
        assert_eq!(sim.ops_completed(), 90, "value {value}");
        let rewritten = rewritten.borrow();
        for kind in ["proposal", "vote", "timeout", "fetch"] {
            assert!(
                rewritten.get(kind).is_some_and(|&n| n > 0),
                "value {value}: no {kind} rewritten: {rewritten:?}"
            );
        }
        check(&sim, &log).unwrap_or_else(|e| panic!("value {value}: {e}"));
        abandoned += total(&sim, "state transfer: abandoned, nobody is ahead");
    }
    // A proposal of a far height whose parent a replica lacked sent it into
    // a state transfer with no checkpoint ahead to fetch (before the fix it
    // stayed there, voting no more, and the group stalled).
    assert!(abandoned > 0);
}

/// The seeded runs' adversary, as a leader, changes its proposals and
/// authenticates them again for each replica: what it sends is always a
/// proposal the receiver takes for the leader's (its lies then reach the
/// vote rule), never one dropped for its MAC. Without the MAC keys, every
/// proposal whose block or header it changed would be.
#[test]
fn the_adversary_authenticates_the_proposals_it_changes() {
    let keys = keys(63, 4);
    let config = config(&keys);
    let leader = config.leader(1);
    let receiver = ReplicaId((leader.0 + 1) % 4);
    let codec = Codec::replica(
        Arc::clone(&config),
        receiver,
        &keys[usize::from(receiver.0)],
    )
    .unwrap();
    let block = Block {
        view: 1,
        height: 1,
        justify: wire::hotstuff::QuorumCert::genesis(),
        requests: vec![],
    };
    let (_, bytes) = proposal_bytes(&keys, &config, block, None);
    let always = Tactics {
        mutate: 1.0,
        replay: 0.0,
        withhold: 0.0,
    };
    let mut adversary = protocols::hotstuff::simulate::adversary(&keys, leader, always);
    let mut rng = Rng::new(63);
    let (mut changed, mut reasons) = (0, BTreeMap::new());
    for _ in 0..500 {
        let mut out = Vec::new();
        adversary.tamper(&mut rng, Addr::Replica(receiver), bytes.clone(), &mut out);
        for (_, sent) in out.into_iter().filter(|(_, sent)| *sent != bytes) {
            changed += 1;
            let reason = match codec.decode(runtime::Source::Replica(leader), &sent) {
                Ok(_) => "accepted",
                Err(e) => e.0,
            };
            *reasons.entry(reason).or_insert(0) += 1;
        }
    }
    assert!(changed > 250, "{changed} changed");
    assert!(
        reasons.get("accepted").is_some_and(|&n| n > 20),
        "{reasons:?}"
    );
    assert_eq!(
        reasons.get("proposal: bad authenticator"),
        None,
        "{reasons:?}"
    );
}

/// Replays of valid messages: replica 3 sends, besides its own messages,
/// the last few datagrams it received (signed by their senders) and its
/// own earlier ones again. Others' messages are dropped for not coming
/// from their senders' address before any signature is checked; its own
/// are duplicates. The group does not slow into timeouts.
#[test]
fn replayed_messages_are_dropped() {
    let System { mut sim, log, .. } = system(63, Network::reliable(), 4, 3, 30);
    log.exclude(ReplicaId(BYZANTINE));
    struct Replayer {
        heard: Vec<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }
    impl Tamper for Replayer {
        fn tamper(
            &mut self,
            _: &mut Rng,
            to: Addr,
            bytes: Vec<u8>,
            out: &mut Vec<(Addr, Vec<u8>)>,
        ) {
            for old in self.heard.iter().rev().take(4) {
                out.push((to, old.clone()));
            }
            for old in self.sent.iter().rev().take(4) {
                out.push((to, old.clone()));
            }
            self.sent.push(bytes.clone());
            self.sent.truncate(64);
            out.push((to, bytes));
        }
        fn observe(&mut self, _from: Addr, bytes: &[u8]) {
            self.heard.push(bytes.to_vec());
            if self.heard.len() > 64 {
                self.heard.remove(0);
            }
        }
    }
    sim.set_byzantine(
        byzantine(),
        Box::new(Replayer {
            heard: Vec::new(),
            sent: Vec::new(),
        }),
    );
    run_live(&mut sim);
    assert_eq!(sim.ops_completed(), 90);
    let wrong_source: u64 = (0..3)
        .map(|i| {
            counter(&sim, replica(i), runtime::node::WRONG_SOURCE)
                + counter(&sim, replica(i), "proposal: not from the leader's address")
                + counter(&sim, replica(i), "request: from a replica's address")
        })
        .sum();
    assert!(wrong_source > 100, "{:?}", sim.counters());
    let duplicates: u64 = [
        "vote: duplicate",
        "vote: for a view certified already",
        "timeout: duplicate",
        "proposal: at or below the committed height",
        "fetch: answered one from this peer just now",
    ]
    .iter()
    .map(|r| total(&sim, r))
    .sum();
    assert!(duplicates > 0, "{:?}", sim.counters());
    check(&sim, &log).unwrap();
}

/// A node outside the group (at a client's address) that sends what only
/// replicas send: proposals and votes copied from the group (spoofed: the
/// signature is a replica's, the source is not), blocks, chunks and a QC
/// announcement, which carry no sender's signature and are taken only
/// from a replica's address. Each is dropped with its reason.
#[test]
fn messages_from_outside_the_group_are_dropped() {
    let System { mut sim, log, .. } = system(64, Network::reliable(), 4, 2, 20);
    let outsider = Addr::Client(ClientId(999));
    sim.add_node(outsider, Box::new(move |_| Box::new(Silent(outsider))));
    let (sent, recorder) = hotstuff_support::recorder();
    sim.set_byzantine(replica(0), recorder);
    sim.run_until(Time::from_nanos(50_000_000));
    let copies: Vec<Message> = sent.borrow().iter().map(|(_, m)| m.clone()).collect();
    let proposal = copies
        .iter()
        .find(|m| matches!(m, Message::Proposal(_)))
        .expect("replica 0 proposed")
        .clone();
    let vote = copies
        .iter()
        .find(|m| matches!(m, Message::Vote(_)))
        .expect("replica 0 voted")
        .clone();
    let forward = copies
        .iter()
        .find(|m| matches!(m, Message::Forward(_)))
        .expect("replica 0 forwarded a request")
        .clone();
    let Message::Proposal(p) = &proposal else {
        unreachable!()
    };
    let forged = [
        (proposal.clone(), "proposal: not from the leader's address"),
        (forward, "forwarded request: not from a replica"),
        (vote, runtime::node::WRONG_SOURCE),
        (
            Message::Blocks(vec![p.block.clone()]),
            "blocks: not from a replica",
        ),
        (
            Message::Chunk(Chunk {
                state: Digest::of(b"state"),
                size: 10,
                index: 0,
                data: vec![0; 10],
                proof: vec![],
            }),
            "chunk: not from a replica",
        ),
        (
            Message::SyncInfo(wire::hotstuff::SyncInfo {
                high_qc: p.block.justify.clone(),
                commit_qc: p.block.justify.clone(),
                tc: None,
            }),
            "sync info: not from a replica",
        ),
    ];
    for (msg, reason) in forged {
        let before = counter(&sim, replica(1), reason);
        let bytes = wire::codec::encode_to_vec(&msg).unwrap();
        sim.inject(outsider, replica(1), bytes);
        sim.run_until(sim.now() + Duration::from_millis(2));
        assert_eq!(
            counter(&sim, replica(1), reason),
            before + 1,
            "{reason}: {:?}",
            sim.node_counters(replica(1))
        );
    }
    run_live(&mut sim);
    assert_eq!(sim.ops_completed(), 40);
    check(&sim, &log).unwrap();
}

/// A forwarded request carries its client's authenticator, not the
/// forwarder's, so a replica can replay the requests it forwarded: replica
/// 3 sends every request it forwarded (up to 16) again to every replica
/// with each vote it casts. Each operation executes once (later copies are
/// answered from the client table, or dropped as older than the client's
/// latest), and the group stays live and in agreement.
#[test]
fn replayed_forwarded_requests_execute_once() {
    let System { mut sim, log, .. } = system(70, Network::reliable(), 4, 3, 20);
    let kept: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let forwards = Rc::clone(&kept);
    sim.set_byzantine(
        byzantine(),
        Box::new(
            move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
                let message = wire::decode::<Message>(&bytes);
                let mut kept = forwards.borrow_mut();
                if matches!(message, Ok(Message::Forward(_))) && kept.len() < 16 {
                    kept.push(bytes.clone());
                }
                out.push((to, bytes));
                if matches!(message, Ok(Message::Vote(_))) {
                    for copy in kept.iter() {
                        for r in (0..4).filter(|&r| r != BYZANTINE) {
                            out.push((replica(r), copy.clone()));
                        }
                    }
                }
            },
        ),
    );
    run_live(&mut sim);
    assert_eq!(sim.ops_completed(), 60);
    assert!(!kept.borrow().is_empty(), "replica 3 forwarded nothing");
    // The copies came, and each was answered from the client table or
    // dropped as older than the client's latest (neither happens without
    // the replays on this reliable network).
    let answered =
        total(&sim, "request: resent reply") + total(&sim, "request: older than the latest");
    assert!(answered > 0, "{:?}", sim.counters());
    check(&sim, &log).unwrap();
}

/// Structures a peer can make grow, each fed far past its bound by replica
/// 3 with correctly signed messages: votes for thousands of future views
/// (kept for [`VIEWS_AHEAD`] views at most), timeouts for ever higher
/// views (one kept per replica), fetches as fast as it can send them
/// (answered once per interval), blocks nobody asked for (not stored), and
/// proposals of its views whose parents nobody has (a bounded wait list).
/// The block store never passes [`BLOCKS_MAX`], and the group finishes.
#[test]
fn a_peer_cannot_grow_what_a_replica_keeps() {
    let seed = 65;
    let keys = keys(seed, 4);
    let config = config(&keys);
    let (mut sim, log) = bare(seed);
    let (stored_max, stored) = high_water(|r: &Replica| r.stored_blocks() as u64);
    let (view_max, view) = high_water(|r: &Replica| r.view());
    let watch: Watch = Rc::new(move |r: &Replica| {
        stored(r);
        view(r);
    });
    for (i, key) in keys.iter().enumerate() {
        add_probed_replica(&mut sim, &log, &config, key, i as u8, Rc::clone(&watch));
    }
    for id in 1..=3 {
        add_client(&mut sim, &config, id, 30);
    }
    log.exclude(ReplicaId(BYZANTINE));
    let signer = Signer::new(&keys[usize::from(BYZANTINE)]).unwrap();
    let me = ReplicaId(BYZANTINE);
    let mut flood = Vec::new();
    for view in 1..4_000u64 {
        let next = config.leader(view + 1);
        if next != me {
            let vote = Signed::sign(
                Vote {
                    view,
                    block: Digest::of(&view.to_le_bytes()),
                    voter: me,
                },
                &signer,
            )
            .unwrap();
            flood.push((Addr::Replica(next), Message::Vote(vote)));
        }
        let timeout = Signed::sign(
            Timeout {
                view,
                high_qc_view: 0,
                replica: me,
            },
            &signer,
        )
        .unwrap();
        let to = replica((view % 3) as u8);
        flood.push((
            to,
            Message::Timeout(timeout, wire::hotstuff::QuorumCert::genesis(), None),
        ));
        let fetch = Signed::sign(
            Fetch {
                replica: me,
                block: Digest::of(b"anything"),
                count: u64::MAX,
            },
            &signer,
        )
        .unwrap();
        flood.push((to, Message::Fetch(fetch)));
        let orphan = Block {
            view,
            height: view + 10,
            justify: wire::hotstuff::QuorumCert::genesis(),
            requests: vec![],
        };
        flood.push((to, Message::Blocks(vec![orphan])));
    }
    // Replica 3 also runs the protocol (as a leader it proposes, so the
    // three-chains complete: see the stall below for what a silent one
    // does with one of these timeouts).
    let flood = Rc::new(flood);
    for (k, chunk) in flood.chunks(200).enumerate() {
        let chunk = chunk.to_vec();
        sim.schedule(Time::from_nanos((5 + k as u64) * 1_000_000), move |sim| {
            for (to, msg) in chunk {
                let bytes = wire::codec::encode_to_vec(&msg).unwrap();
                sim.inject(byzantine(), to, bytes);
            }
        });
    }
    run_live(&mut sim);
    assert_eq!(sim.ops_completed(), 90);
    assert!(
        stored_max.get() <= BLOCKS_MAX as u64,
        "{}",
        stored_max.get()
    );
    let too_far = total(&sim, "vote: too far ahead");
    assert!(
        too_far > 1_000,
        "votes beyond {VIEWS_AHEAD} views ahead: {too_far}: {:?}",
        sim.counters()
    );
    // One replica's timeouts, however high, pull nobody along (f + 1 do).
    assert!(
        view_max.get() < 1_000,
        "a correct replica reached view {}",
        view_max.get()
    );
    assert!(total(&sim, "fetch: answered one from this peer just now") > 1_000);
    assert!(
        total(&sim, "blocks: not asked for") > 1_000,
        "{:?}",
        sim.counters()
    );
    check(&sim, &log).unwrap();
}

/// A liveness attack by one Byzantine replica (n = 4, f = 1), found by the
/// flood above. Replica 3 is silent as a leader, and sends each correct
/// replica one signed timeout for a far view. A timeout counts toward a TC
/// for every view up to its own, so two correct timeouts and that one form
/// the TC of each view replica 3 leads, before the third correct timeout
/// comes; and only correct timeouts carry their senders' votes for the
/// view before, whose QC replica 3 (its next leader) never formed. The
/// next leader therefore waits a little for that QC after the TC, and the
/// late third timeout still counts for its vote though its view is left
/// already. Without either, the next leader proposed on the QC below, the
/// three-chain of the views led by replicas 0, 1 and 2 never completed,
/// and with no four correct leaders in a row nothing ever committed.
#[test]
fn a_silent_leader_with_one_far_timeout_does_not_stall_commits() {
    let System {
        mut sim, log, keys, ..
    } = system(69, Network::reliable(), 4, 3, 10);
    log.exclude(ReplicaId(BYZANTINE));
    sim.replace(byzantine(), Box::new(Silent(byzantine())));
    let signer = Signer::new(&keys[usize::from(BYZANTINE)]).unwrap();
    let timeout = Signed::sign(
        Timeout {
            view: 1 << 40,
            high_qc_view: 0,
            replica: ReplicaId(BYZANTINE),
        },
        &signer,
    )
    .unwrap();
    let bytes = wire::codec::encode_to_vec(&Message::Timeout(
        timeout,
        wire::hotstuff::QuorumCert::genesis(),
        None,
    ))
    .unwrap();
    sim.schedule(Time::from_nanos(5_000_000), move |sim| {
        for i in 0..3 {
            sim.inject(byzantine(), replica(i), bytes.clone());
        }
    });
    run_live(&mut sim);
    assert_eq!(sim.ops_completed(), 30);
    check(&sim, &log).unwrap();
}

/// §4.2: a quorum is ⌈(n + f + 1)/2⌉ so that any two quorums share a
/// correct replica, for every group size, not only n = 3f + 1.
#[test]
fn quorums_intersect_in_a_correct_replica_for_every_n() {
    for n in 1..=REPLICAS_MAX {
        let keys = keys(66, n);
        let config: Arc<Config> = config(&keys);
        let (q, f) = (config.quorum(), config.f);
        assert_eq!(f, (n - 1) / 3);
        assert!(
            q <= n - f,
            "n = {n}: a quorum of {q} needs a faulty replica"
        );
        // Two quorums share 2q - n replicas; more than f of them.
        assert!(
            2 * q - n > f,
            "n = {n}: quorums of {q} may meet only in faulty replicas"
        );
    }
    let sizes: Vec<usize> = [4, 5, 6, 7]
        .iter()
        .map(|&n| config(&keys(66, n)).quorum())
        .collect();
    assert_eq!(sizes, [3, 4, 4, 5]);
}

/// With n = 6 (f = 1, quorum 4), a 3 | 3 split leaves neither half a
/// quorum: nothing commits on either side (2f + 1 = 3 would let both
/// commit different blocks). With n = 5 (quorum 4), a 3 | 2 split the
/// same. After the heal both halves' clients finish, in agreement.
#[test]
fn with_n_5_or_6_neither_side_of_a_split_commits() {
    for (seed, n, left) in [(67, 6, 3), (68, 5, 3)] {
        let System { mut sim, log, .. } = system(seed, Network::reliable(), n, 2, 10);
        let mut side: Vec<Addr> = (0..left as u8).map(replica).collect();
        side.push(Addr::Client(ClientId(1)));
        sim.partition(&[&side]);
        sim.run_until(Time::from_nanos(400_000_000));
        assert_eq!(
            total(&sim, "block: committed"),
            0,
            "n = {n}: a side committed without a quorum"
        );
        sim.heal();
        sim.mark_healed();
        run_live(&mut sim);
        assert_eq!(sim.ops_completed(), 20, "n = {n}");
        check(&sim, &log).unwrap();
    }
}

/// A node that sends nothing and ignores what it gets: somewhere to send
/// scripted datagrams from.
struct Silent(Addr);

impl Process for Silent {
    fn addr(&self) -> Addr {
        self.0
    }
    fn start(&mut self, _: Time, _: &mut Vec<Packet>) {}
    fn on_packet(&mut self, _: Time, _: Addr, _: &[u8], _: &mut Vec<Packet>) {}
    fn on_timers(&mut self, _: Time, _: &mut Vec<Packet>) {}
    fn next_deadline(&self) -> Option<Time> {
        None
    }
    fn counters(&self) -> &Counters {
        static NONE: std::sync::OnceLock<Counters> = std::sync::OnceLock::new();
        NONE.get_or_init(Counters::default)
    }
}

/// A reliable simulator with the usual workload, for a test that adds the
/// nodes itself.
fn bare(seed: u64) -> (Simulator, ExecutionLog) {
    let mut sim = Simulator::new(seed, Network::reliable());
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    (sim, ExecutionLog::default())
}
