//! The unreplicated system in the simulator: one server, a few clients.

use std::time::Duration;

use runtime::node::{ClientNode, Node};
use runtime::sim::{Network, Noise, Simulator};
use runtime::{Addr, ClientId, Rng, Time};

use super::{ExecutionLog, KvWorkload};
use crate::app::KvApp;
use crate::unreplicated::{Client, Codec, SERVER, Server};

/// How often a client retransmits: a few round trips of the simulated network.
pub const RESEND_INTERVAL: Duration = Duration::from_millis(5);

/// Bound on virtual time for a random run: far beyond what the workload needs
/// once faults heal, so hitting it means lost progress.
pub const TIME_LIMIT: Duration = Duration::from_secs(30);

/// A server running a key-value app whose executions go to `log`.
pub fn add_server(sim: &mut Simulator, log: &ExecutionLog) {
    let log = log.clone();
    sim.add_node(
        SERVER,
        Box::new(move |rng| {
            let app = log.record(runtime::ReplicaId(0), Box::new(KvApp::default()));
            Box::new(Node::new(SERVER, Server::new(app), Codec.into(), rng))
        }),
    );
}

/// A client with id `id` that will issue `ops` operations.
pub fn add_client(sim: &mut Simulator, id: u64, ops: u64) {
    let id = ClientId(id);
    sim.add_client(
        id,
        ops,
        Box::new(move |rng| {
            let client = Client::new(id, RESEND_INTERVAL);
            Box::new(ClientNode(Node::new(
                Addr::Client(id),
                client,
                Codec.into(),
                rng,
            )))
        }),
    );
}

/// A simulator with the server and `clients` clients of `ops` operations each
/// (ids 1..=clients), running the default key-value workload.
pub fn system(seed: u64, network: Network, clients: u64, ops: u64) -> (Simulator, ExecutionLog) {
    let mut sim = Simulator::new(seed, network);
    let log = ExecutionLog::default();
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    add_server(&mut sim, &log);
    for id in 1..=clients {
        add_client(&mut sim, id, ops);
    }
    (sim, log)
}

/// One random run: 10% loss, duplication and reordering throughout, and a
/// fault plan drawn from the seed: a partition between the server and some
/// clients, client crashes, clients joining late, and a node that sends
/// garbage at the server. The server itself does not crash here: the baseline
/// keeps no durable state, so a restart loses data by design (the scenario
/// tests cover it).
pub fn random_run(seed: u64) -> (Simulator, ExecutionLog) {
    let mut plan = Rng::new(seed ^ 0x5EED_F00D_FA17);
    let clients = plan.between(1, 5);
    let ops = plan.between(5, 40);
    let (mut sim, log) = system(seed, Network::faulty(0.1), clients, ops);
    let client_addr = |id: u64| Addr::Client(ClientId(id));

    if plan.chance(0.5) {
        let cut: Vec<Addr> = (1..=clients)
            .filter(|_| plan.chance(0.5))
            .map(client_addr)
            .collect();
        let start = Time::from_nanos(plan.between(0, 50_000_000));
        let end = start + Duration::from_nanos(plan.between(1_000_000, 30_000_000));
        sim.schedule(start, move |sim| {
            let mut server_side = cut.clone();
            server_side.push(SERVER);
            sim.partition(&[&server_side]);
        });
        sim.schedule(end, |sim| sim.heal());
    }
    for id in 1..=clients {
        if plan.chance(0.1) {
            let at = Time::from_nanos(plan.between(0, 100_000_000));
            sim.schedule(at, move |sim| sim.crash(client_addr(id)));
        }
    }
    let joining = if plan.chance(0.3) {
        plan.between(1, 2)
    } else {
        0
    };
    for n in 0..joining {
        let id = clients + 1 + n;
        let at = Time::from_nanos(plan.between(0, 100_000_000));
        sim.schedule(at, move |sim| add_client(sim, id, ops));
    }
    if plan.chance(0.3) {
        let interval = Duration::from_micros(plan.between(50, 1000));
        let noise = Addr::Client(ClientId(u64::MAX));
        sim.add_node(
            noise,
            Box::new(move |rng| Box::new(Noise::new(noise, SERVER, interval, rng))),
        );
    }

    sim.run_until_clients_done(Time::ZERO + TIME_LIMIT);
    (sim, log)
}
