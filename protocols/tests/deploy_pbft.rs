//! PBFT on the real runtime, in-process over loopback UDP: four replicas and
//! a thread of clients, in the normal case and through a view change after
//! the primary stops. The simulator tests the protocol's logic; this checks
//! that the same code survives real sockets, threads and timers.
//!
//! These tests check progress, never speed: speed is measured by the runner.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocols::app::KvApp;
use protocols::pbft::{Client, Codec, Replica};
use runtime::deploy::{ClientsSetup, ReplicaSetup, Running, spawn_clients, spawn_replica};
use runtime::{ClientId, Counters, ReplicaId};
use wire::control::{
    Idle, Load, REQUESTS_BATCHED_COUNTER, Stage, ThreadMap, ThreadSpec, TransportKind,
};

use common::{LOCALHOST, free_addrs, kv_ops};

const SPIN: Idle = Idle::SpinThenBlock { spin_us: 50 };

struct Group {
    replicas: Vec<Option<Running>>,
    clients: Running,
    addrs: Vec<std::net::SocketAddr>,
}

fn keys() -> Vec<wire::SecretKey> {
    protocols::simulate::pbft::keys(1, 4)
}

/// Four single-thread replicas running a key-value store, and `clients`
/// closed-loop clients on one thread.
fn start(clients: u32) -> Group {
    start_with(clients, ThreadMap::single(None))
}

/// [`start`] with every replica on `threads`.
fn start_with(clients: u32, threads: ThreadMap) -> Group {
    let keys = keys();
    let config = protocols::simulate::pbft::config(&keys);
    let addrs = free_addrs(4);
    let replica_addrs = addrs.clone();
    let replicas = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let id = ReplicaId(i as u8);
            let codec = Arc::new(Codec::replica(Arc::clone(&config), id, key).unwrap());
            let replica = Replica::new(id, Arc::clone(&codec), Box::new(KvApp::default()));
            let setup = ReplicaSetup {
                id,
                replicas: addrs.clone(),
                threads: threads.clone(),
                idle: SPIN,
                transport: TransportKind::Auto,
                link: Default::default(),
            };
            Some(spawn_replica(replica, codec, setup).unwrap())
        })
        .collect();

    let codec = Arc::new(Codec::client(Arc::clone(&config), b"deploy pbft clients"));
    let client_codec = Arc::clone(&codec);
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
        Arc::new(move |id| Client::new(id, &client_codec, Duration::from_millis(30))),
        codec,
        kv_ops(),
        setup,
    )
    .unwrap();
    Group {
        replicas,
        clients,
        addrs: replica_addrs,
    }
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

/// Stops everything, checks that nothing failed and that no authenticated
/// message was rejected; returns the replicas' counters, merged.
fn stop(group: Group) -> Counters {
    assert!(!group.clients.has_failed());
    let clients = group.clients.stop().unwrap();
    assert_eq!(clients.counters.get("reply: bad MAC"), 0);
    assert_eq!(clients.counters.get("decode: malformed"), 0);
    let mut counters = Counters::default();
    for running in group.replicas.into_iter().flatten() {
        assert!(!running.has_failed());
        counters.merge(&running.stop().unwrap().counters);
    }
    assert_eq!(counters.get("request: bad authenticator"), 0);
    // Replies go to clients, never to a replica that relayed a request.
    assert_eq!(counters.get("reply: not a client"), 0);
    assert_eq!(
        counters.get("pre-prepare: requests not authenticated here"),
        0
    );
    // Every replica message came from its sender's address.
    assert_eq!(counters.get(runtime::node::WRONG_SOURCE), 0);
    counters
}

/// §4.2 over UDP: requests from 50 clients are ordered, executed and
/// answered. (Whether a view change happens is not asserted: on a loaded
/// machine a replica thread can stall past a timeout, and a view change is
/// then the protocol working, not failing.)
#[test]
fn normal_case_over_udp() {
    let group = start(50);
    let done = progress(&group.clients, 500, Duration::from_secs(20));
    assert!(done >= 500, "only {done} operations completed");
    let counters = stop(group);
    assert!(
        counters.get(REQUESTS_BATCHED_COUNTER) >= 500,
        "{counters:?}"
    );
}

/// §4.4 over UDP: the primary (replica 0) stops mid-run; the clients time
/// out and multicast, the backups' timers fire, and after the view change
/// the new primary orders requests again.
#[test]
fn view_change_after_the_primary_stops_over_udp() {
    let mut group = start(20);
    let done = progress(&group.clients, 200, Duration::from_secs(20));
    assert!(done >= 200, "only {done} operations before the crash");
    let primary = group.replicas[0].take().unwrap();
    primary.stop().unwrap();
    // Everything in flight at the crash still completes, then new requests.
    let done = progress(&group.clients, 500, Duration::from_secs(30));
    assert!(
        done >= 500,
        "only {done} operations after the primary stopped"
    );
    let counters = stop(group);
    assert!(counters.get("view change: started") >= 3, "{counters:?}");
}

/// Replicas on a pipeline (receive and verify | protocol | send): what the
/// send thread sends leaves from the replica's own address, so peers, which
/// drop replica messages from any other, accept it.
#[test]
fn a_pipelined_replica_sends_from_its_own_address() {
    let threads = ThreadMap {
        threads: vec![
            ThreadSpec {
                stages: vec![Stage::Receive, Stage::Verify],
                core: None,
            },
            ThreadSpec {
                stages: vec![Stage::Protocol],
                core: None,
            },
            ThreadSpec {
                stages: vec![Stage::Send],
                core: None,
            },
        ],
    };
    let group = start_with(20, threads);
    let done = progress(&group.clients, 300, Duration::from_secs(30));
    assert!(done >= 300, "only {done} operations completed");
    stop(group);
}

/// Finding 6 over UDP: a stranger (a socket that is no replica) sends a
/// backup a valid pre-prepare signed by the primary, registrations and
/// requests in a client's name with a forged authenticator, and bare
/// two-byte datagrams, thousands of each. All are dropped by
/// the cheap checks and counted; replies still reach the real clients,
/// which keep completing.
#[test]
fn strangers_cannot_replay_forge_or_redirect_over_udp() {
    use protocols::pbft::batch_digest;
    use wire::pbft::{AuthRequest, Message, PrePrepare};

    let group = start(20);
    let done = progress(&group.clients, 100, Duration::from_secs(20));
    assert!(done >= 100, "only {done} operations before the attack");

    let keys = keys();
    let primary = wire::Signer::new(&keys[0]).unwrap();
    let header = PrePrepare {
        view: 0,
        seq: 1,
        digest: batch_digest(&[]).unwrap(),
    };
    let replayed = Message::PrePrepare(wire::Signed::sign(header, &primary).unwrap(), Vec::new());
    let forged = |num| AuthRequest {
        session: 0,
        request: wire::client::Request {
            client_id: ClientId(1),
            request_num: num,
            op: Vec::new(),
        },
        key: wire::Signer::new(&wire::SecretKey::from_seed(b"stranger"))
            .unwrap()
            .public_key(),
        auth: vec![wire::Mac([0; 32]); 4],
    };
    let datagrams = [
        wire::codec::encode_to_vec(&replayed).unwrap(),
        wire::codec::encode_to_vec(&Message::Request(forged(0))).unwrap(),
        wire::codec::encode_to_vec(&Message::Request(forged(99))).unwrap(),
        vec![1, 1],
    ];
    let stranger = std::net::UdpSocket::bind((LOCALHOST, 0)).unwrap();
    for round in 0..2_000 {
        for bytes in &datagrams {
            let _ = stranger.send_to(bytes, group.addrs[1 + round % 3]);
        }
        if round % 100 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let done = progress(&group.clients, 300, Duration::from_secs(30));
    assert!(done >= 300, "only {done} operations after the attack");

    // `stop` checks the real traffic; the stranger's is counted apart.
    let clients = group.clients.stop().unwrap();
    assert_eq!(clients.counters.get("reply: bad MAC"), 0);
    let mut counters = Counters::default();
    for running in group.replicas.into_iter().flatten() {
        counters.merge(&running.stop().unwrap().counters);
    }
    let screened = counters.get("pre-prepare: not from the primary's address");
    let forged = counters.get("request: bad authenticator")
        + counters.get("request: client already has another key");
    let malformed = counters.get("decode: malformed");
    let kernel = counters.get(runtime::net::counter::KERNEL_DROPS);
    // Whatever the kernel did not drop for a full buffer was counted.
    assert!(
        screened + forged + malformed + kernel >= 2_000,
        "{counters:?}"
    );
    assert!(screened > 0 && forged > 0 && malformed > 0, "{counters:?}");
}
