//! Chain replication on the real runtime, in-process over loopback UDP:
//! three servers, the master and a thread of clients running the key-value
//! store (gets are queries at the tail, puts updates at the head), in the
//! normal case and after the tail stops. The simulator tests the protocol's
//! logic; this checks that the same code survives real sockets, threads and
//! timers.
//!
//! These tests check progress, never speed: speed is measured by the runner.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocols::app::{KvApp, kv_read_only};
use protocols::chain::{Client, Codec, Master, Replica, Timing};
use runtime::deploy::{ClientsSetup, ReplicaSetup, Running, spawn_clients, spawn_replica};
use runtime::{ClientId, Counters, ReplicaId};
use wire::control::{Idle, Load, ThreadMap, TransportKind};

use common::{LOCALHOST, free_addrs, kv_ops};

const SPIN: Idle = Idle::SpinThenBlock { spin_us: 50 };

/// Servers in the chain.
const N: usize = 3;

struct Group {
    /// The servers, head first, then the master.
    nodes: Vec<Option<Running>>,
    clients: Running,
}

/// The default tunables: a heartbeat every 10 ms, a server removed after 8
/// missed, a window of 4096 updates.
fn timing() -> Timing {
    Timing::new(Duration::from_millis(10), 8, 4096)
}

/// `N` single-thread servers and the master (node id `N`, its address last),
/// and `clients` closed-loop clients on one thread.
fn start(clients: u32) -> Group {
    let addrs = free_addrs(N + 1);
    let setup = |id: usize| ReplicaSetup {
        id: ReplicaId(id as u8),
        replicas: addrs.clone(),
        threads: ThreadMap::single(None),
        idle: SPIN,
        transport: TransportKind::Auto,
        link: Default::default(),
    };
    let codec = Arc::new(Codec);
    let mut nodes: Vec<Option<Running>> = (0..N)
        .map(|i| {
            let server = Replica::new(ReplicaId(i as u8), N, timing(), Box::new(KvApp::default()));
            Some(spawn_replica(server, Arc::clone(&codec), setup(i)).unwrap())
        })
        .collect();
    nodes.push(Some(
        spawn_replica(Master::new(N, timing()), Arc::clone(&codec), setup(N)).unwrap(),
    ));
    let setup = ClientsSetup {
        first_id: ClientId(1),
        count: clients,
        threads: 1,
        cores: Vec::new(),
        bind: LOCALHOST,
        replicas: addrs,
        load: Load::Closed,
        idle: SPIN,
        transport: TransportKind::Auto,
        warmup: Duration::ZERO,
        measure: None,
        link: Default::default(),
    };
    let clients = spawn_clients(
        Arc::new(|id| Client::new(id, N, kv_read_only, Duration::from_millis(20))),
        codec,
        kv_ops(),
        setup,
    )
    .unwrap();
    Group { nodes, clients }
}

/// Waits until the clients complete `ops` more operations, for at most
/// `limit`; returns how many they completed.
fn progress(clients: &Running, ops: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    let mut done = 0;
    while done < ops && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        done += clients.metrics().ops;
    }
    done
}

/// Stops everything and checks that nothing failed and nothing was
/// malformed; returns the clients' counters and the servers' and master's,
/// merged.
fn stop(group: Group) -> (Counters, Counters) {
    assert!(!group.clients.has_failed());
    let clients = group.clients.stop().unwrap();
    assert_eq!(clients.counters.get("decode: malformed"), 0);
    let mut counters = Counters::default();
    for running in group.nodes.into_iter().flatten() {
        assert!(!running.has_failed());
        counters.merge(&running.stop().unwrap().counters);
    }
    assert_eq!(counters.get("decode: malformed"), 0, "{counters:?}");
    (clients.counters, counters)
}

/// Updates pass down the chain and queries are answered at the tail: both
/// kinds complete (the workload is half gets, half puts, and a closed-loop
/// client whose operation never completes completes nothing after it).
#[test]
fn normal_case_over_udp() {
    let group = start(20);
    let done = progress(&group.clients, 2_000, Duration::from_secs(20));
    assert!(done >= 2_000, "only {done} operations completed");
    stop(group);
}

/// The tail (server N - 1) stops mid-run: the master removes it, its
/// predecessor becomes the tail once the old lease has run out, and the
/// clients, which learn the new chain, keep completing both kinds of
/// operation.
#[test]
fn the_chain_goes_on_after_the_tail_stops_over_udp() {
    let mut group = start(20);
    let done = progress(&group.clients, 200, Duration::from_secs(20));
    assert!(
        done >= 200,
        "only {done} operations before the tail stopped"
    );
    let tail = group.nodes[N - 1].take().unwrap();
    assert!(!tail.has_failed());
    tail.stop().unwrap();
    // Past the master's suspicion (80 ms) and the old lease (30 ms): what
    // completes from here on went through the new chain.
    std::thread::sleep(Duration::from_millis(500));
    group.clients.metrics();
    let done = progress(&group.clients, 1_000, Duration::from_secs(30));
    assert!(
        done >= 1_000,
        "only {done} operations after the tail stopped"
    );
    let (_, counters) = stop(group);
    assert!(counters.get("master: server removed") >= 1, "{counters:?}");
    assert!(counters.get("master: epoch installed") >= 1, "{counters:?}");
}
