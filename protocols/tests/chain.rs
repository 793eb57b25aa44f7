//! Scenario tests of chain replication (van Renesse & Schneider, "Chain
//! Replication for Supporting High Throughput and Availability", OSDI'04),
//! one per case of the paper's §3, and attacks: a peer sending well-formed
//! messages with extreme values into a running chain.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocols::app::{KvApp, kv_read_only};
use protocols::chain::simulate::{SETTLE, System, add_client, add_master, system, timing};
use protocols::chain::{Codec, Config, Forward, Message, Replica, Timing, master_id};
use protocols::simulate::{ExecutionLog, check};
use runtime::node::Node;
use runtime::sim::{Network, Simulator};
use runtime::{Addr, ClientId, DropReason, ReplicaId, SharedState, Source, Time};
use wire::chain::{Chunk, Ping, Pong};
use wire::client::Request;
use wire::kv::Op;

/// Virtual time any scenario may take at most.
const LIMIT: Duration = Duration::from_secs(20);

fn server(i: usize) -> Addr {
    Addr::Replica(ReplicaId(i as u8))
}

fn master(n: usize) -> Addr {
    Addr::Replica(master_id(n))
}

fn at(ms: u64) -> Time {
    Time::ZERO + Duration::from_millis(ms)
}

fn encode(msg: &Message) -> Vec<u8> {
    wire::codec::encode_to_vec(msg).unwrap()
}

/// A counter of the node now at `addr` (its current incarnation).
fn counter(sim: &Simulator, addr: Addr, name: &str) -> u64 {
    sim.node_counters(addr).map_or(0, |c| c.get(name))
}

/// A counter summed over every node and incarnation of the run.
fn total(sim: &Simulator, name: &str) -> u64 {
    sim.counters().get(name)
}

/// The chain as the master last published it.
fn chain(sys: &System) -> Vec<ReplicaId> {
    let view = sys.view.lock().unwrap();
    view.members.iter().map(|&(id, _, _)| id).collect()
}

fn epoch(sys: &System) -> u64 {
    sys.view.lock().unwrap().epoch
}

fn put_request(client: u64, request_num: u64, key: &str) -> Request {
    let op = Op::Put {
        key: key.into(),
        value: b"x".to_vec(),
    };
    Request {
        client_id: ClientId(client),
        request_num,
        op: wire::codec::encode_to_vec(&op).unwrap(),
    }
}

/// Runs until every client is done, then settles, and checks the run.
fn finish(sys: &mut System) {
    assert!(
        sys.sim.run_until_clients_done(Time::ZERO + LIMIT),
        "clients did not finish: {:?}",
        sys.sim
    );
    let settled = sys.sim.now() + SETTLE;
    sys.sim.run_until(settled);
    check(&sys.sim, &sys.log).unwrap();
}

/// Every server's executed slot, in id order.
fn executed(sys: &System) -> Vec<Option<u64>> {
    (0..sys.n)
        .map(|i| sys.sim.executed_slot(server(i)))
        .collect()
}

fn all_ops_completed(sys: &System, expected: u64) {
    assert_eq!(sys.sim.ops_completed(), expected);
    assert!(sys.sim.history().iter().all(|op| op.completed.is_some()));
}

fn normal_case(n: usize) {
    let mut sys = system(1, Network::reliable(), n, 3, 40, timing(64));
    finish(&mut sys);
    all_ops_completed(&sys, 120);
    let slots = executed(&sys);
    assert!(slots[0].is_some_and(|s| s > 0), "{slots:?}");
    assert!(slots.iter().all(|&s| s == slots[0]), "{slots:?}");
    assert_eq!(chain(&sys).len(), n);
    assert_eq!(total(&sys.sim, "master: server removed"), 0);
}

/// §3 with no failure (§2's protocol): updates pass head to tail, the tail
/// answers queries; every server ends with the same committed prefix.
#[test]
fn normal_case_three() {
    normal_case(3);
}

/// As [`normal_case_three`], with a longer chain.
#[test]
fn normal_case_five() {
    normal_case(5);
}

/// §3 "Failure of the head": the master removes the head and its successor
/// becomes the head; the restarted server later comes back as the tail (the
/// §3 extension that adds servers).
#[test]
fn head_crash() {
    let mut sys = system(2, Network::reliable(), 3, 3, 400, timing(64));
    sys.sim.run_until(at(30));
    assert!(sys.sim.ops_completed() > 0);
    sys.sim.crash(server(0));
    sys.sim.run_until(at(150));
    assert_eq!(chain(&sys), [ReplicaId(1), ReplicaId(2)]);
    assert_eq!(counter(&sys.sim, master(3), "master: server removed"), 1);
    let before = sys.sim.ops_completed();
    sys.sim.restart(server(0));
    assert!(before < 1200, "the restart comes while clients run");
    finish(&mut sys);
    all_ops_completed(&sys, 1200);
    assert_eq!(chain(&sys), [ReplicaId(1), ReplicaId(2), ReplicaId(0)]);
    assert_eq!(counter(&sys.sim, master(3), "master: server added"), 1);
}

/// §3 "Failure of the tail": the tail's predecessor becomes the tail and
/// answers queries (once the old tail's lease has run out).
#[test]
fn tail_crash() {
    let mut sys = system(3, Network::reliable(), 3, 3, 150, timing(64));
    sys.sim.run_until(at(30));
    sys.sim.crash(server(2));
    let crashed = sys.sim.now();
    finish(&mut sys);
    all_ops_completed(&sys, 450);
    assert_eq!(chain(&sys), [ReplicaId(0), ReplicaId(1)]);
    assert_eq!(counter(&sys.sim, master(3), "master: server removed"), 1);
    // Queries invoked after the crash were answered, by the new tail.
    let reads_after = sys
        .sim
        .history()
        .iter()
        .filter(|op| op.invoked > crashed && kv_read_only(&op.op))
        .count();
    assert!(reads_after > 0);
    let slots = executed(&sys);
    assert_eq!(slots[0], slots[1]);
}

/// §3 "Failure of other servers": a middle server fails while updates it
/// never passed on are in its predecessor's Sent list (the link 0 -> 1 is
/// cut, so the forwards are lost). When 0 and 2 become neighbours, 2 asks
/// for what it misses and 0 resends its Sent list: no update is lost.
#[test]
fn middle_crash_with_lost_forwards() {
    let mut sys = system(4, Network::reliable(), 3, 3, 150, timing(64));
    sys.sim.run_until(at(20));
    sys.sim.cut(&[server(0)], &[server(1)]);
    sys.sim.run_until(at(30));
    let head_next = sys.sim.executed_slot(server(0));
    // Updates are stuck in the head's Sent list: their forwards were lost.
    let stuck = sys
        .sim
        .history()
        .iter()
        .filter(|op| op.completed.is_none() && !kv_read_only(&op.op))
        .count();
    assert!(stuck > 0);
    sys.sim.crash(server(1));
    finish(&mut sys);
    all_ops_completed(&sys, 450);
    assert_eq!(chain(&sys), [ReplicaId(0), ReplicaId(2)]);
    let slots = executed(&sys);
    assert_eq!(slots[0], slots[2], "{slots:?}");
    assert!(slots[0] > head_next);
}

/// The §3 extension: a restarted server (a new one, it kept nothing) is
/// added as the new tail after a state transfer, and the chain tolerates
/// n - 1 failures again.
#[test]
fn new_server_restores_fault_tolerance() {
    let mut sys = system(5, Network::reliable(), 3, 3, 150, timing(64));
    sys.sim.run_until(at(30));
    sys.sim.crash(server(1));
    sys.sim.run_until(at(150));
    assert_eq!(chain(&sys).len(), 2);
    sys.sim.restart(server(1));
    finish(&mut sys);
    all_ops_completed(&sys, 450);
    assert_eq!(chain(&sys), [ReplicaId(0), ReplicaId(2), ReplicaId(1)]);
    assert!(counter(&sys.sim, server(1), "state transfer: installed") >= 1);
    assert!(total(&sys.sim, "state transfer: sent") >= 1);
    let slots = executed(&sys);
    assert!(slots.iter().all(|&s| s == slots[0]), "{slots:?}");
    // And it takes part: a second failure, of the old head, is survived.
    let more = 3 * 150;
    for id in 10..13 {
        add_client(&mut sys.sim, id, 3, 20);
    }
    sys.sim.crash(server(0));
    finish(&mut sys);
    all_ops_completed(&sys, more + 60);
    assert_eq!(chain(&sys)[..2], [ReplicaId(2), ReplicaId(1)]);
}

/// Beyond the paper's fail-stop assumption: the tail is cut off, not
/// crashed. The master removes it; it does not hear of that, so it still
/// takes itself for the tail, but it refuses a client that still sends by
/// the old configuration (its lease ran out); after the heal an Ack it
/// sends in its old epoch (scripted here) is dropped by its old
/// predecessor, and it rejoins as the tail of a later epoch.
#[test]
fn epoch_fencing_of_a_partitioned_tail() {
    let mut sys = system(6, Network::reliable(), 3, 3, 150, timing(64));
    let old = Addr::Client(ClientId(1));
    sys.sim.run_until(at(20));
    // Client 1 stays with the old tail: it knows only epoch 0.
    sys.sim.partition(&[&[server(2), old]]);
    sys.sim.run_until(at(200));
    assert_eq!(chain(&sys), [ReplicaId(0), ReplicaId(1)]);
    assert!(epoch(&sys) >= 1);
    // A query by the old configuration, at the old tail.
    let query = Message::Query {
        epoch: 0,
        request: Request {
            client_id: ClientId(1),
            request_num: 1_000_000,
            op: wire::codec::encode_to_vec(&Op::Get { key: "k".into() }).unwrap(),
        },
    };
    let refused = counter(&sys.sim, server(2), "query: no read lease");
    sys.sim.inject(old, server(2), encode(&query));
    sys.sim.run_until(at(210));
    assert!(counter(&sys.sim, server(2), "query: no read lease") > refused);
    sys.sim.heal();
    // What the old tail sends in its epoch 0 before it hears of its removal.
    let stale = Message::Ack {
        epoch: 0,
        committed: 1,
    };
    sys.sim.inject(server(2), server(1), encode(&stale));
    finish(&mut sys);
    all_ops_completed(&sys, 450);
    assert!(counter(&sys.sim, server(1), "epoch: from an earlier one") >= 1);
    assert!(counter(&sys.sim, server(2), "epoch: removed") >= 1);
    assert_eq!(chain(&sys), [ReplicaId(0), ReplicaId(1), ReplicaId(2)]);
    let slots = executed(&sys);
    assert!(slots.iter().all(|&s| s == slots[0]), "{slots:?}");
}

// Attacks: well-formed messages with extreme values into a running chain.

/// A chain of 3 with 3 clients of 100 ops each, run for 30 ms; `attack`
/// injects; then it runs to the end and must pass the checkers.
fn attacked(attack: impl FnOnce(&mut System)) -> System {
    let mut sys = system(7, Network::reliable(), 3, 3, 100, timing(64));
    sys.sim.run_until(at(30));
    attack(&mut sys);
    finish(&mut sys);
    all_ops_completed(&sys, 300);
    sys
}

#[test]
fn attack_ack_committed_max() {
    let sys = attacked(|sys| {
        let msg = Message::Ack {
            epoch: 0,
            committed: u64::MAX,
        };
        sys.sim.inject(server(2), server(1), encode(&msg));
    });
    assert_eq!(counter(&sys.sim, server(1), "ack: beyond what was sent"), 1);
}

#[test]
fn attack_want_next_max() {
    let sys = attacked(|sys| {
        let msg = Message::Want {
            epoch: 0,
            next: u64::MAX,
        };
        sys.sim.inject(server(1), server(0), encode(&msg));
    });
    assert_eq!(counter(&sys.sim, server(0), "want: beyond what it has"), 1);
}

#[test]
fn attack_forward_seq_max() {
    let sys = attacked(|sys| {
        let msg = Message::Forward(Forward {
            epoch: 0,
            seq: u64::MAX,
            request: put_request(1, u64::MAX, "k"),
        });
        sys.sim.inject(server(0), server(1), encode(&msg));
    });
    // (The run has gaps of its own: at least this one.)
    assert!(counter(&sys.sim, server(1), "forward: after a gap") >= 1);
}

fn chunk(index: u32, count: u32, bytes: Vec<u8>) -> Vec<u8> {
    encode(&Message::Chunk(Chunk {
        epoch: 0,
        committed: u64::MAX,
        index,
        count,
        bytes,
    }))
}

#[test]
fn attack_malformed_chunks() {
    let sys = attacked(|sys| {
        for bytes in [
            chunk(0, u32::MAX, vec![1; 8]),
            chunk(5, 5, vec![1; 8]),
            chunk(u32::MAX, 1, vec![1; 8]),
            chunk(0, 0, vec![1; 8]),
            chunk(0, 1, vec![1; protocols::chain::CHUNK_BYTES + 1]),
        ] {
            sys.sim.inject(server(0), server(1), bytes);
        }
    });
    assert_eq!(counter(&sys.sim, server(1), "chunk: malformed"), 5);
    assert_eq!(counter(&sys.sim, server(1), "state transfer: installed"), 0);
}

/// A complete transfer whose state does not decode: dropped, not
/// installed, and the server carries on with what it had.
#[test]
fn attack_garbage_state() {
    let sys = attacked(|sys| {
        // A length beyond the bytes.
        sys.sim
            .inject(server(0), server(1), chunk(0, 1, vec![0xff; 64]));
        // An empty application state and a client table that is noise.
        let mut state = 0u64.to_le_bytes().to_vec();
        state.extend([0xa5; 100]);
        sys.sim.inject(server(0), server(1), chunk(0, 1, state));
    });
    assert_eq!(counter(&sys.sim, server(1), "chunk: state malformed"), 2);
    assert_eq!(counter(&sys.sim, server(1), "state transfer: installed"), 0);
}

/// A ping claiming proof of life and a send time at the end of time: the
/// master clamps the proof to its own clock, and takes the unknown
/// incarnation for a restart of the server.
#[test]
fn attack_ping_extreme_times() {
    let sys = attacked(|sys| {
        let msg = Message::Ping(Ping {
            epoch: u64::MAX,
            nonce: 42,
            joined: u64::MAX,
            synced: true,
            echo: u64::MAX,
            sent_at: u64::MAX,
        });
        sys.sim.inject(server(1), master(3), encode(&msg));
        sys.sim.run_until(at(31));
        let now = sys.sim.now();
        let view = sys.view.lock().unwrap();
        assert!(view.members.iter().all(|&(_, _, proof)| proof <= now));
    });
    assert_eq!(counter(&sys.sim, master(3), "master: server restarted"), 1);
    assert_eq!(chain(&sys).len(), 3);
}

#[test]
fn attack_pong_not_from_master() {
    let sys = attacked(|sys| {
        let msg = Message::Pong(Pong {
            config: Config {
                epoch: u64::MAX,
                chain: vec![ReplicaId(0)],
            },
            nonce: 0,
            member: false,
            joined: u64::MAX,
            lease: true,
            token: u64::MAX,
            sent_at: u64::MAX,
        });
        sys.sim.inject(server(0), server(2), encode(&msg));
        sys.sim
            .inject(Addr::Client(ClientId(1)), server(2), encode(&msg));
    });
    assert_eq!(counter(&sys.sim, server(2), "pong: not from the master"), 1);
    assert_eq!(
        counter(&sys.sim, server(2), "server message from elsewhere"),
        1
    );
}

/// Messages of an earlier and of a later epoch than the chain's, after a
/// reconfiguration: both dropped and counted.
#[test]
fn attack_messages_of_other_epochs() {
    let mut sys = system(8, Network::reliable(), 3, 3, 100, timing(64));
    sys.sim.run_until(at(20));
    sys.sim.crash(server(2));
    sys.sim.run_until(at(150));
    let current = epoch(&sys);
    assert!(current >= 1);
    for e in [0, current + 1, u64::MAX] {
        let msg = Message::Ack {
            epoch: e,
            committed: 1,
        };
        sys.sim.inject(server(1), server(0), encode(&msg));
        let msg = Message::Want { epoch: e, next: 0 };
        sys.sim.inject(server(1), server(0), encode(&msg));
    }
    sys.sim.restart(server(2));
    finish(&mut sys);
    all_ops_completed(&sys, 300);
    assert_eq!(
        counter(&sys.sim, server(0), "epoch: from an earlier one"),
        2
    );
    assert!(counter(&sys.sim, server(0), "epoch: from a later one") >= 4);
}

/// A server's messages from a server that is not the neighbour they must
/// come from.
#[test]
fn attack_messages_from_non_neighbours() {
    let sys = attacked(|sys| {
        // An ack from the predecessor, a forward from the successor.
        let ack = Message::Ack {
            epoch: 0,
            committed: 1,
        };
        sys.sim.inject(server(0), server(1), encode(&ack));
        let forward = Message::Forward(Forward {
            epoch: 0,
            seq: 0,
            request: put_request(1, 1, "k"),
        });
        sys.sim.inject(server(2), server(1), encode(&forward));
        // The head has no predecessor, the tail no successor.
        sys.sim.inject(server(2), server(0), encode(&forward));
        let want = Message::Want { epoch: 0, next: 0 };
        sys.sim.inject(server(0), server(2), encode(&want));
    });
    assert_eq!(
        counter(&sys.sim, server(1), "chain: not from a neighbour"),
        2
    );
    assert_eq!(
        counter(&sys.sim, server(0), "chain: not from a neighbour"),
        1
    );
    assert_eq!(
        counter(&sys.sim, server(2), "chain: not from a neighbour"),
        1
    );
}

/// Pings the master must not take for a server's: from a client's address
/// (the codec drops it), and from a node id that is not a server's.
#[test]
fn attack_pings_from_non_servers() {
    let sys = attacked(|sys| {
        let ping = encode(&Message::Ping(Ping {
            epoch: 0,
            nonce: 1,
            joined: 0,
            synced: true,
            echo: u64::MAX,
            sent_at: u64::MAX,
        }));
        sys.sim
            .inject(Addr::Client(ClientId(1)), master(3), ping.clone());
        sys.sim.inject(master(3), master(3), ping);
    });
    assert_eq!(
        counter(&sys.sim, master(3), "server message from elsewhere"),
        1
    );
    assert_eq!(
        counter(&sys.sim, master(3), "master: unexpected message"),
        1
    );
    assert_eq!(total(&sys.sim, "master: server restarted"), 0);
}

/// Updates from thousands of clients at once: the head admits at most its
/// window into the chain and refuses the rest.
#[test]
fn attack_update_flood() {
    let sys = attacked(|sys| {
        for id in 0..5000u64 {
            let msg = Message::Update {
                epoch: 0,
                request: put_request(1_000 + id, 1, "flood"),
            };
            sys.sim
                .inject(Addr::Client(ClientId(1)), server(0), encode(&msg));
        }
    });
    let refused = counter(&sys.sim, server(0), "update: window full");
    assert!(refused >= 5000 - 64, "{refused}");
}

/// The codec attributes server messages to the server they came from, and
/// drops them when they came from anywhere else; client messages name
/// their client.
#[test]
fn codec_rejects_server_messages_from_elsewhere() {
    let server_messages = [
        Message::Ack {
            epoch: 0,
            committed: u64::MAX,
        },
        Message::Want {
            epoch: 0,
            next: u64::MAX,
        },
        Message::Forward(Forward {
            epoch: 0,
            seq: u64::MAX,
            request: put_request(1, 1, "k"),
        }),
        Message::Resume {
            epoch: 0,
            committed: 0,
            next: 0,
        },
        Message::Chunk(Chunk {
            epoch: 0,
            committed: 0,
            index: 0,
            count: u32::MAX,
            bytes: vec![],
        }),
        Message::Ping(Ping {
            epoch: 0,
            nonce: 0,
            joined: 0,
            synced: true,
            echo: u64::MAX,
            sent_at: u64::MAX,
        }),
        Message::Reply(wire::client::Reply {
            client_id: ClientId(1),
            request_num: 1,
            result: vec![],
        }),
    ];
    for msg in &server_messages {
        let bytes = encode(msg);
        assert_eq!(
            Codec.decode(Source::Other, &bytes).unwrap_err(),
            DropReason("server message from elsewhere"),
            "{msg:?}"
        );
        let (from, decoded) = Codec.decode(Source::Replica(ReplicaId(1)), &bytes).unwrap();
        assert_eq!((from, &decoded), (server(1), msg));
    }
    let update = Message::Update {
        epoch: u64::MAX,
        request: put_request(9, 1, "k"),
    };
    let (from, _) = Codec.decode(Source::Other, &encode(&update)).unwrap();
    assert_eq!(from, Addr::Client(ClientId(9)));
    assert!(Codec.decode(Source::Other, &[0xff; 7]).is_err());
}

/// Server `id` of a chain of `n`, whose incarnations' nonces go to `nonce`:
/// a test can then speak for the master to it.
fn add_known_replica(
    sim: &mut Simulator,
    log: &ExecutionLog,
    id: ReplicaId,
    n: usize,
    t: Timing,
    nonce: &Arc<Mutex<u64>>,
) {
    let (log, nonce) = (log.clone(), Arc::clone(nonce));
    sim.add_node(
        Addr::Replica(id),
        Box::new(move |rng| {
            // The server draws its nonce first thing from this generator.
            if usize::from(id.0) + 1 == n {
                *nonce.lock().unwrap() = rng.clone().next_u64();
            }
            let app = log.record(id, Box::new(KvApp::default()));
            let replica = Replica::new(id, n, t, app);
            Box::new(Node::new(Addr::Replica(id), replica, Arc::new(Codec), rng))
        }),
    );
}

/// A lease that runs from the end of time, in a Pong for the tail's own
/// incarnation (as a master would echo a ping's `sent_at`): the arithmetic
/// saturates rather than panicking, and the tail does not take a lease
/// that starts after now, so it does not hold it forever.
#[test]
fn attack_lease_from_the_end_of_time() {
    let (n, t) = (3, timing(64));
    let mut sim = Simulator::new(9, Network::reliable());
    let log = ExecutionLog::default();
    let view = protocols::chain::master::Observer::default();
    sim.set_workload(
        protocols::simulate::KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    let nonce = Arc::new(Mutex::new(0));
    for i in 0..n {
        add_known_replica(&mut sim, &log, ReplicaId(i as u8), n, t, &nonce);
    }
    add_master(&mut sim, n, t, &view);
    for id in 1..=3 {
        add_client(&mut sim, id, n, 100);
    }
    let mut sys = System { sim, log, view, n };
    sys.sim.run_until(at(30));
    let pong = Message::Pong(Pong {
        config: protocols::chain::initial_config(n),
        nonce: *nonce.lock().unwrap(),
        member: true,
        joined: 0,
        lease: true,
        token: 0,
        sent_at: u64::MAX,
    });
    sys.sim.inject(master(n), server(2), encode(&pong));
    sys.sim.run_until(at(31));
    assert_eq!(
        counter(&sys.sim, server(2), "pong: for another incarnation"),
        0
    );
    // The tail is cut off from the master: its real lease runs out, and the
    // one from the end of time must not keep it answering.
    sys.sim
        .partition(&[&[server(2), Addr::Client(ClientId(1))]]);
    sys.sim.run_until(at(300));
    assert_eq!(chain(&sys), [ReplicaId(0), ReplicaId(1)]);
    let refused = counter(&sys.sim, server(2), "query: no read lease");
    let query = Message::Query {
        epoch: 0,
        request: Request {
            client_id: ClientId(1),
            request_num: 1_000_000,
            op: wire::codec::encode_to_vec(&Op::Get { key: "k".into() }).unwrap(),
        },
    };
    sys.sim
        .inject(Addr::Client(ClientId(1)), server(2), encode(&query));
    sys.sim.run_until(at(310));
    assert!(counter(&sys.sim, server(2), "query: no read lease") > refused);
    sys.sim.heal();
    finish(&mut sys);
    all_ops_completed(&sys, 300);
}

/// Client messages naming the end of time: a query of a later epoch makes
/// the tail ask the master (at most four times a heartbeat) and is not
/// answered; an update's epoch does not matter to the head; a
/// configuration with no server does not move a client.
#[test]
fn attack_client_messages_with_extreme_epochs() {
    let sys = attacked(|sys| {
        let client = Addr::Client(ClientId(1));
        for i in 0..100 {
            let query = Message::Query {
                epoch: u64::MAX,
                request: Request {
                    client_id: ClientId(1),
                    request_num: 1_000_000 + i,
                    op: wire::codec::encode_to_vec(&Op::Get { key: "k".into() }).unwrap(),
                },
            };
            sys.sim.inject(client, server(2), encode(&query));
        }
        let update = Message::Update {
            epoch: u64::MAX,
            request: put_request(99, 1, "k"),
        };
        sys.sim.inject(client, server(0), encode(&update));
        let redirect = Message::Redirect {
            client_id: ClientId(2),
            config: Config {
                epoch: u64::MAX,
                chain: vec![],
            },
        };
        sys.sim
            .inject(server(0), Addr::Client(ClientId(2)), encode(&redirect));
    });
    assert!(counter(&sys.sim, server(2), "epoch: from a later one") >= 100);
    assert_eq!(total(&sys.sim, "client: unexpected message"), 0);
}
