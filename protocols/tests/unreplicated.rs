//! Scenario and randomized tests of the unreplicated baseline in the simulator.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use protocols::simulate::unreplicated::{RESEND_INTERVAL, add_client, system, system_with};
use protocols::simulate::{ExecutionLog, Profile, check, replay_command, run_seed};
use protocols::unreplicated::SERVER;
use runtime::check::linearizability;
use runtime::sim::{Network, Noise, Simulator};
use runtime::{Addr, ClientId, Rng, Time};
use wire::kv::{Op, OpResult};

const CLIENT: Addr = Addr::Client(ClientId(1));

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn get(key: &str) -> Op {
    Op::Get { key: key.into() }
}

/// A workload that hands each client the operations listed for it, in order.
fn scripted(sim: &mut Simulator, script: &[(u64, Vec<Op>)]) {
    let mut queues: HashMap<ClientId, VecDeque<Op>> = script
        .iter()
        .map(|(id, ops)| (ClientId(*id), ops.iter().cloned().collect()))
        .collect();
    sim.set_workload(
        Box::new(move |_: &mut Rng, client: ClientId| {
            let op = queues
                .get_mut(&client)
                .and_then(VecDeque::pop_front)
                .expect("script has an operation for this client");
            wire::codec::encode_to_vec(&op).unwrap()
        }),
        Duration::ZERO,
    );
}

/// One client running `ops` against the server over `network`.
fn one_client(network: Network, ops: Vec<Op>) -> (Simulator, ExecutionLog) {
    let count = ops.len() as u64;
    let (mut sim, log) = system(1, network, 0, 0);
    scripted(&mut sim, &[(1, ops)]);
    add_client(&mut sim, 1, count);
    (sim, log)
}

fn result(sim: &Simulator, index: usize) -> OpResult {
    let (_, bytes) = sim.history()[index]
        .completed
        .as_ref()
        .expect("operation completed");
    wire::decode(bytes).unwrap()
}

fn run_to_completion(sim: &mut Simulator) {
    assert!(
        sim.run_until_clients_done(Time::ZERO + Duration::from_secs(10)),
        "clients did not finish: {sim:?}"
    );
}

fn counter(sim: &Simulator, addr: Addr, name: &str) -> u64 {
    sim.node_counters(addr).map_or(0, |c| c.get(name))
}

/// Drops the first `n` datagrams a node sends.
fn drop_first(n: usize) -> Box<dyn runtime::sim::Tamper> {
    let mut dropped = 0;
    Box::new(
        move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
            if dropped < n {
                dropped += 1;
            } else {
                out.push((to, bytes));
            }
        },
    )
}

#[test]
fn one_op() {
    let (mut sim, log) = one_client(Network::reliable(), vec![put("k", "v")]);
    run_to_completion(&mut sim);
    assert_eq!(result(&sim, 0), OpResult::Replaced(None));
    assert_eq!(log.executed(), 1);
    check(&sim, &log).unwrap();
}

#[test]
fn lost_request_is_retransmitted() {
    let (mut sim, log) = one_client(Network::reliable(), vec![put("k", "v")]);
    sim.set_byzantine(CLIENT, drop_first(1));
    run_to_completion(&mut sim);
    assert_eq!(result(&sim, 0), OpResult::Replaced(None));
    assert_eq!(counter(&sim, CLIENT, "client: retransmission"), 1);
    // Completed only after the retransmission timer fired.
    let (completed, _) = sim.history()[0].completed.clone().unwrap();
    assert!(completed >= Time::ZERO + RESEND_INTERVAL);
    assert_eq!(log.executed(), 1);
}

#[test]
fn lost_reply_executes_once_and_client_gets_result() {
    let (mut sim, log) = one_client(Network::reliable(), vec![put("k", "v"), get("k")]);
    sim.set_byzantine(SERVER, drop_first(1));
    run_to_completion(&mut sim);
    assert_eq!(result(&sim, 0), OpResult::Replaced(None));
    assert_eq!(result(&sim, 1), OpResult::Value(Some(b"v".to_vec())));
    assert_eq!(counter(&sim, SERVER, "request: resent cached reply"), 1);
    assert_eq!(
        log.executed(),
        2,
        "the retransmitted put must not execute again"
    );
    check(&sim, &log).unwrap();
}

#[test]
fn duplicated_and_reordered_packets_execute_once() {
    let network = Network {
        duplicate_rate: 1.0,
        reorder_rate: 0.5,
        reorder_delay_max: Duration::from_millis(10),
        ..Network::faulty(0.0)
    };
    let (mut sim, log) = system(7, network, 3, 30);
    run_to_completion(&mut sim);
    assert_eq!(sim.ops_completed(), 90);
    assert_eq!(
        log.executed(),
        90,
        "every duplicate was filtered by the client table"
    );
    let server_saw_duplicates = counter(&sim, SERVER, "request: resent cached reply")
        + counter(&sim, SERVER, "request: older than the latest");
    assert!(server_saw_duplicates > 0);
    assert!(sim.faults().duplicated > 0 && sim.faults().reordered > 0);
    check(&sim, &log).unwrap();
}

#[test]
fn partition_heals_and_progress_resumes() {
    let (mut sim, log) = system(3, Network::reliable(), 2, 20);
    sim.partition(&[&[SERVER]]);
    sim.schedule(Time::ZERO + Duration::from_millis(50), |sim| sim.heal());
    run_to_completion(&mut sim);
    assert_eq!(sim.ops_completed(), 40);
    assert!(sim.history().iter().all(|op| {
        let (at, _) = op.completed.as_ref().unwrap();
        *at > Time::ZERO + Duration::from_millis(50)
    }));
    // The client backs off through the partition: it retransmits after 5,
    // 10, 20 and 40 ms (the last after the heal, at 75 ms), not every 5 ms.
    assert_eq!(counter(&sim, CLIENT, "client: retransmission"), 4);
    let first = &sim.history()[0];
    let (at, _) = first.completed.as_ref().unwrap();
    assert!(*at < Time::ZERO + Duration::from_millis(80), "{at:?}");
    check(&sim, &log).unwrap();
}

#[test]
fn garbage_from_the_network_is_counted_and_ignored() {
    let (mut sim, log) = system(5, Network::reliable(), 2, 20);
    let noise = Addr::Client(ClientId(99));
    sim.add_node(
        noise,
        Box::new(move |rng| Box::new(Noise::new(noise, SERVER, Duration::from_micros(20), rng))),
    );
    run_to_completion(&mut sim);
    let server = sim.node_counters(SERVER).unwrap();
    let rejected = server.get("decode: malformed")
        + server.get("decode: too large")
        + server.get("decode: trailing bytes");
    assert!(rejected > 100, "server counters: {server:?}");
    assert_eq!(sim.ops_completed(), 40);
    check(&sim, &log).unwrap();
}

/// What a client sees when the server crashes with its request in flight: the
/// request is retransmitted and executed by the restarted server.
#[test]
fn server_crash_with_request_in_flight_completes_after_restart() {
    let (mut sim, log) = one_client(Network::reliable(), vec![put("k", "v")]);
    // The request is on the wire (delays are at least 100 µs).
    sim.schedule(Time::from_nanos(10_000), |sim| sim.crash(SERVER));
    sim.schedule(Time::from_nanos(1_000_000), |sim| sim.restart(SERVER));
    run_to_completion(&mut sim);
    assert_eq!(result(&sim, 0), OpResult::Replaced(None));
    assert_eq!(sim.faults().crashes, 1);
    assert_eq!(sim.faults().restarts, 1);
    let logs = log.logs();
    assert_eq!(logs.len(), 2, "one log per server incarnation");
    assert_eq!((logs[0].1.len(), logs[1].1.len()), (0, 1));
}

/// The unreplicated server keeps its state in memory only: after a restart,
/// writes that completed before the crash are gone. The linearizability checker
/// must see it.
#[test]
fn server_restart_loses_state() {
    let (mut sim, log) = one_client(Network::reliable(), vec![put("k", "v"), get("k")]);
    sim.set_workload(
        {
            let mut ops = VecDeque::from([put("k", "v"), get("k")]);
            Box::new(move |_: &mut Rng, _| {
                wire::codec::encode_to_vec(&ops.pop_front().unwrap()).unwrap()
            })
        },
        Duration::from_millis(20),
    );
    // The put completes within a millisecond; the get comes after up to 20 ms
    // of think time, and finds a fresh server.
    sim.run_until(Time::ZERO + Duration::from_millis(2));
    assert!(sim.history()[0].completed.is_some());
    sim.crash(SERVER);
    sim.restart(SERVER);
    run_to_completion(&mut sim);
    assert_eq!(result(&sim, 0), OpResult::Replaced(None));
    assert_eq!(
        result(&sim, 1),
        OpResult::Value(None),
        "the put was lost with the server"
    );
    assert!(linearizability::check_kv(sim.history()).is_err());
    assert!(check(&sim, &log).is_err());
}

/// A durable server (snapshot every `interval` requests), one client running
/// `ops` with up to `think` between them.
fn durable_client(ops: Vec<Op>, interval: u64, think: Duration) -> (Simulator, ExecutionLog) {
    let count = ops.len() as u64;
    let (mut sim, log) = system_with(1, Network::reliable(), 0, 0, Some(interval));
    let mut queue = VecDeque::from(ops);
    sim.set_workload(
        Box::new(move |_: &mut Rng, _| {
            wire::codec::encode_to_vec(&queue.pop_front().unwrap()).unwrap()
        }),
        think,
    );
    add_client(&mut sim, 1, count);
    (sim, log)
}

/// The same crash as in `server_restart_loses_state`, with the server in
/// durable mode: the put survives, in the log or in a snapshot.
#[test]
fn a_durable_server_keeps_completed_writes_through_a_restart() {
    for interval in [1, 2, 100] {
        let ops = vec![put("k", "v"), put("j", "w"), get("k"), get("j")];
        let (mut sim, log) = durable_client(ops, interval, Duration::from_millis(20));
        while sim
            .history()
            .first()
            .is_none_or(|op| op.completed.is_none())
        {
            assert!(sim.step(), "the put completes");
        }
        sim.crash(SERVER);
        sim.restart(SERVER);
        let middle = sim.now() + Duration::from_millis(30);
        sim.schedule(middle, |sim| {
            sim.crash(SERVER);
            sim.restart(SERVER);
        });
        run_to_completion(&mut sim);
        assert_eq!(result(&sim, 2), OpResult::Value(Some(b"v".to_vec())));
        assert_eq!(result(&sim, 3), OpResult::Value(Some(b"w".to_vec())));
        check(&sim, &log).unwrap();
        let stored = sim.stored(SERVER).unwrap();
        assert!(
            stored.len() <= interval as usize + 1,
            "the log is cut at each snapshot: {} keys, interval {interval}",
            stored.len()
        );
    }
}

/// A crash between the log write and the reply: with the write kept, the
/// retransmitted request gets its stored result and executes once; with it
/// lost, the client never saw a reply, and the request executes once, after
/// the restart. Either way the history is linearizable.
#[test]
fn a_durable_server_crashing_at_its_persist_executes_each_request_once() {
    for kept in [true, false] {
        let ops = vec![put("k", "v"), get("k")];
        let (mut sim, log) = durable_client(ops, 100, Duration::ZERO);
        sim.crash_at_next_persist(SERVER, kept);
        sim.schedule(Time::ZERO + Duration::from_millis(3), |sim| {
            sim.restart(SERVER)
        });
        run_to_completion(&mut sim);
        assert_eq!(sim.faults().persist_crashes, 1);
        assert_eq!(result(&sim, 0), OpResult::Replaced(None), "kept: {kept}");
        assert_eq!(result(&sim, 1), OpResult::Value(Some(b"v".to_vec())));
        check(&sim, &log).unwrap();
        let executed_puts = log
            .logs()
            .iter()
            .map(|(_, slots)| slots.len())
            .collect::<Vec<_>>();
        // First incarnation: the put executed (its reply never left).
        // Second: replayed from the log (kept) or executed on the
        // retransmission (lost); then the get.
        assert_eq!(executed_puts, [1, 2], "kept: {kept}");
        let resent = counter(&sim, SERVER, "request: resent cached reply");
        assert_eq!(resent, u64::from(kept), "kept: {kept}");
    }
}

#[test]
fn same_seed_same_trace_hash() {
    for seed in [0, 1, 42, 1_000_003] {
        let a = run_seed(protocols::unreplicated::PROTOCOL, seed);
        let b = run_seed(protocols::unreplicated::PROTOCOL, seed);
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(
            (a.ops_completed, a.deliveries, a.faults, a.simulated_ns),
            (b.ops_completed, b.deliveries, b.faults, b.simulated_ns)
        );
    }
}

#[test]
fn different_seeds_different_trace_hashes() {
    let hashes: std::collections::HashSet<String> = (0..50)
        .map(|seed| run_seed(protocols::unreplicated::PROTOCOL, seed).trace_hash)
        .collect();
    assert_eq!(hashes.len(), 50);
}

/// 500 seeds with 10% loss, duplication and reordering, partitions, client
/// crashes, late joiners and garbage: every operation of a live client
/// completes, and every history is linearizable.
#[test]
fn random_seeds_pass() {
    let mut faults = wire::sim::FaultCounts::default();
    let mut ops = 0;
    for seed in 0..500 {
        let report = run_seed(protocols::unreplicated::PROTOCOL, seed);
        assert!(
            report.passed,
            "seed {seed} failed: {}\nreplay: {}",
            report.failure.unwrap_or_default(),
            replay_command(protocols::unreplicated::PROTOCOL, seed, Profile::Mix)
        );
        faults.add(&report.faults);
        ops += report.ops_completed;
    }
    // The faults the plan promises did happen.
    assert!(faults.dropped > 1000, "{faults:?}");
    assert!(
        faults.duplicated > 1000 && faults.reordered > 1000,
        "{faults:?}"
    );
    assert!(faults.partitions > 100 && faults.crashes > 10, "{faults:?}");
    assert!(ops > 10_000);
}
