//! The unreplicated protocol on the real runtime, in-process, over loopback:
//! every thread map, both idle strategies, both transports.
//!
//! These tests check that things work and make progress, never how fast:
//! speed is measured by `cargo bench` and the runner.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use protocols::app::KvApp;
use protocols::unreplicated::{Client, Codec, Server};
use runtime::deploy::{ClientsSetup, ReplicaSetup, Running, spawn_clients, spawn_replica};
use runtime::{ClientId, ReplicaId, Rng};
use wire::control::{
    Arrivals, Idle, Load, OPEN_LOOP_ARRIVALS_COUNTER, OPEN_LOOP_NO_FREE_CLIENT_COUNTER, Stage,
    ThreadMap, ThreadSpec, TransportKind,
};
use wire::kv::Op;

use common::{LOCALHOST, free_addrs, kv_ops};

fn start_server(threads: ThreadMap, idle: Idle, transport: TransportKind) -> (Running, SocketAddr) {
    let addr = free_addrs(1)[0];
    let server = Server::new(Box::new(KvApp::default()));
    let setup = ReplicaSetup {
        id: ReplicaId(0),
        replicas: vec![addr],
        threads,
        idle,
        transport,
        link: Default::default(),
    };
    let running = spawn_replica(server, Arc::new(Codec), setup).unwrap();
    (running, addr)
}

/// Puts to one key per client and gets it back, so results can be checked.
fn start_clients(
    server: SocketAddr,
    count: u32,
    load: Load,
    idle: Idle,
    transport: TransportKind,
) -> Running {
    let setup = ClientsSetup {
        first_id: ClientId(1),
        count,
        threads: 1,
        cores: Vec::new(),
        bind: LOCALHOST,
        replicas: vec![server],
        load,
        idle,
        transport,
        warmup: Duration::ZERO,
        measure: None,
        link: Default::default(),
    };
    spawn_clients(
        Arc::new(|id| Client::new(id, Duration::from_millis(20))),
        Arc::new(Codec),
        kv_ops(),
        setup,
    )
    .unwrap()
}

fn run_for(threads: ThreadMap, idle: Idle, transport: TransportKind, duration: Duration) {
    let (server, addr) = start_server(threads, idle, transport);
    let clients = start_clients(addr, 100, Load::Closed, idle, transport);
    if transport != TransportKind::Auto {
        assert_eq!(server.transport(), transport);
    }
    std::thread::sleep(duration);
    assert!(!server.has_failed() && !clients.has_failed());
    let client_totals = clients.stop().unwrap();
    let server_totals = server.stop().unwrap();
    assert!(client_totals.ops > 0, "no operation completed");
    assert!(
        client_totals.ops <= server_totals.ops,
        "clients completed {} ops but the server handled {} requests",
        client_totals.ops,
        server_totals.ops
    );
    assert_eq!(client_totals.latency_us.len(), client_totals.measured_ops);
    assert_eq!(client_totals.counters.get("decode: malformed"), 0);
}

const SPIN: Idle = Idle::SpinThenBlock { spin_us: 50 };

#[test]
fn single_thread_spin_then_block_io_uring() {
    run_for(
        ThreadMap::single(None),
        SPIN,
        TransportKind::IoUring,
        Duration::from_millis(500),
    );
}

#[test]
fn single_thread_spin_then_block_epoll() {
    run_for(
        ThreadMap::single(None),
        SPIN,
        TransportKind::Epoll,
        Duration::from_millis(500),
    );
}

#[test]
fn single_thread_busy() {
    run_for(
        ThreadMap::single(None),
        Idle::Busy,
        TransportKind::Auto,
        Duration::from_millis(300),
    );
}

/// Four stage threads plus a client thread on a two-core machine: more
/// threads than cores, so progress depends on threads blocking.
#[test]
fn four_stages_spin_then_block_more_threads_than_cores() {
    run_for(
        ThreadMap::per_stage(),
        SPIN,
        TransportKind::Auto,
        Duration::from_millis(500),
    );
}

/// The same with every thread busy-polling: five spinning threads on two
/// cores still make progress, only slower.
#[test]
fn four_stages_busy_more_threads_than_cores() {
    run_for(
        ThreadMap::per_stage(),
        Idle::Busy,
        TransportKind::Epoll,
        Duration::from_millis(500),
    );
}

/// Two verify threads and two send threads taking from shared channels.
#[test]
fn parallel_verify_and_send_stages() {
    let threads = ThreadMap {
        threads: vec![
            ThreadSpec {
                stages: vec![Stage::Receive, Stage::Verify],
                core: None,
            },
            ThreadSpec {
                stages: vec![Stage::Verify, Stage::Send],
                core: None,
            },
            ThreadSpec {
                stages: vec![Stage::Protocol, Stage::Send],
                core: None,
            },
        ],
    };
    run_for(
        threads,
        SPIN,
        TransportKind::Auto,
        Duration::from_millis(500),
    );
}

#[test]
fn open_loop_offers_its_rate() {
    for arrivals in [Arrivals::Poisson, Arrivals::Fixed] {
        let (server, addr) = start_server(ThreadMap::single(None), SPIN, TransportKind::Auto);
        let clients = start_clients(
            addr,
            50,
            Load::Open {
                ops_per_sec: 2000,
                arrivals,
            },
            SPIN,
            TransportKind::Auto,
        );
        std::thread::sleep(Duration::from_millis(500));
        let totals = clients.stop().unwrap();
        server.stop().unwrap();
        // About 1000 operations were offered; allow for a slow start and a
        // noisy machine, but not for a closed loop running flat out.
        assert!(
            totals.ops > 100 && totals.ops < 2000,
            "{arrivals:?}: {} ops",
            totals.ops
        );
        // Every arrival was sent or counted as finding no free client.
        let offered = totals.counters.get(OPEN_LOOP_ARRIVALS_COUNTER);
        let unsent = totals.counters.get(OPEN_LOOP_NO_FREE_CLIENT_COUNTER);
        assert!(offered >= totals.ops + unsent, "{arrivals:?}: {totals:?}");
    }
}

#[test]
fn replies_reach_clients_whose_ids_do_not_start_at_one() {
    // The multiplexer finds a reply's client by id minus the thread's first
    // id: a thread whose clients start at 7 must still get every reply.
    let (server, addr) = start_server(ThreadMap::single(None), SPIN, TransportKind::Auto);
    let setup = ClientsSetup {
        first_id: ClientId(7),
        count: 3,
        threads: 1,
        cores: Vec::new(),
        bind: LOCALHOST,
        replicas: vec![addr],
        load: Load::Closed,
        idle: SPIN,
        transport: TransportKind::Auto,
        warmup: Duration::ZERO,
        measure: None,
        link: Default::default(),
    };
    let clients = spawn_clients(
        Arc::new(|id| Client::new(id, Duration::from_millis(20))),
        Arc::new(Codec),
        Arc::new(|_| {
            Box::new(|_: &mut Rng, op: &mut Vec<u8>| {
                let get = Op::Get {
                    key: b"none".to_vec(),
                };
                wire::codec::encode(&get, op).unwrap();
            })
        }),
        setup,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let totals = clients.stop().unwrap();
    server.stop().unwrap();
    assert!(totals.ops > 0);
    assert_eq!(
        totals.counters.get("clients: message for no client here"),
        0
    );
}

/// The durable server on the real runtime: a put acknowledged before the
/// process stops is there when a new process recovers from the state file,
/// with fsync and without, single-threaded and in stages.
#[test]
fn a_durable_server_recovers_its_state_file_in_a_new_process() {
    use runtime::deploy::{DurableSetup, spawn_durable_replica};
    use runtime::durable::Sync;
    use wire::kv::OpResult;
    use wire::unreplicated::{Message, Request};

    let dir = std::env::temp_dir().join(format!("unreplicated-durable-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = std::net::UdpSocket::bind((LOCALHOST, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut request_num = 0;
    let mut ask = |server: SocketAddr, op: Op| -> OpResult {
        request_num += 1;
        let request = Message::Request(Request {
            client_id: ClientId(7),
            request_num,
            op: wire::codec::encode_to_vec(&op).unwrap(),
        });
        let bytes = wire::codec::encode_to_vec(&request).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            assert!(std::time::Instant::now() < deadline, "no reply");
            socket.send_to(&bytes, server).unwrap();
            let mut buf = [0; 2048];
            while let Ok((len, _)) = socket.recv_from(&mut buf) {
                if let Ok(Message::<Vec<u8>>::Reply(reply)) = wire::decode(&buf[..len])
                    && reply.request_num == request_num
                {
                    return wire::decode(&reply.result).unwrap();
                }
            }
        }
    };
    for (i, (sync, threads)) in [
        (Sync::Fsync, ThreadMap::single(None)),
        (Sync::NoFsync, ThreadMap::per_stage()),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.join(format!("replica-{i}.state"));
        let start = || {
            let setup = ReplicaSetup {
                id: ReplicaId(0),
                replicas: vec![SocketAddr::new(LOCALHOST, 0)],
                threads: threads.clone(),
                idle: SPIN,
                transport: TransportKind::Auto,
                link: Default::default(),
            };
            let server = Server::durable(Box::new(KvApp::default()), 3);
            let durable = DurableSetup {
                path: path.clone(),
                sync,
            };
            spawn_durable_replica(server, Arc::new(Codec), setup, Some(durable)).unwrap()
        };
        let key = |k: &str| k.as_bytes().to_vec();
        let server = start();
        let addr = server.local_addrs()[0];
        for k in ["a", "b", "c", "d"] {
            let put = Op::Put {
                key: key(k),
                value: key(&format!("{k}{i}")),
            };
            assert_eq!(ask(addr, put), OpResult::Replaced(None));
        }
        let totals = server.stop().unwrap();
        assert!(totals.counters.get("durable: writes committed") >= 4);
        assert!(totals.counters.get("durable: snapshots") >= 1);

        let server = start();
        let addr = server.local_addrs()[0];
        for k in ["a", "d"] {
            let value = Some(key(&format!("{k}{i}")));
            assert_eq!(ask(addr, Op::Get { key: key(k) }), OpResult::Value(value));
        }
        let totals = server.stop().unwrap();
        assert!(
            totals.counters.get("durable: requests replayed") >= 1,
            "the put after the snapshot came back from the log"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
