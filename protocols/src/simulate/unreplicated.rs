//! The unreplicated system in the simulator: one server, a few clients.

use std::time::Duration;

use runtime::node::{ClientNode, Node};
use runtime::sim::{Network, Simulator};
use runtime::{Addr, ClientId, Rng, Time};

use super::faults::{self, Adversaries, Group, Profile};
use super::{ExecutionLog, KvWorkload, Simulated};
use crate::app::KvApp;
use crate::unreplicated::{Client, Codec, SERVER, Server};

/// How often a client retransmits: a few round trips of the simulated network.
pub const RESEND_INTERVAL: Duration = Duration::from_millis(5);

/// How long after the last fault healed the clients must have finished:
/// room for a few losses in a row (the network still drops 1% after the
/// heal) at the client's longest backoff ([`crate::unreplicated::RESEND_MAX`],
/// 500 ms).
pub const LIVENESS_BOUND: Duration = Duration::from_secs(3);

/// Virtual time a run may take at most, whatever happens.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

/// A server running a key-value app whose executions go to `log`.
pub fn add_server(sim: &mut Simulator, log: &ExecutionLog) {
    add_server_with(sim, log, None);
}

/// A server as [`add_server`]; with `durable`, in durable mode with that
/// snapshot interval.
pub fn add_server_with(sim: &mut Simulator, log: &ExecutionLog, durable: Option<u64>) {
    let log = log.clone();
    sim.add_node(
        SERVER,
        Box::new(move |rng| {
            let app = log.record(runtime::ReplicaId(0), Box::new(KvApp::default()));
            let server = match durable {
                Some(interval) => Server::durable(app, interval),
                None => Server::new(app),
            };
            Box::new(Node::new(SERVER, server, Codec.into(), rng))
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
    system_with(seed, network, clients, ops, None)
}

/// [`system`], with the server durable (snapshot interval) or not.
pub fn system_with(
    seed: u64,
    network: Network,
    clients: u64,
    ops: u64,
    durable: Option<u64>,
) -> (Simulator, ExecutionLog) {
    let mut sim = Simulator::new(seed, network);
    let log = ExecutionLog::default();
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    add_server_with(&mut sim, &log, durable);
    for id in 1..=clients {
        add_client(&mut sim, id, ops);
    }
    (sim, log)
}

/// One random run under `profile`: a few clients (one or two joining late,
/// around the heal), the server, and the plan the profile draws. The server
/// cannot be Byzantine (f = 0). Half the seeds run it in durable mode (a
/// snapshot every 1 to 8 requests, so that snapshots and the log's cuts
/// happen in short runs): then it may crash, at once or at a persist, and
/// recovers. In memory only, it never loses its memory within the model: a
/// restart loses data by design, which is what the `beyond` profile does to
/// it (and, in durable mode, it loses its durable state too).
pub fn random_run(seed: u64, profile: Profile, trace: bool) -> Simulated {
    let mut rng = Rng::new(seed ^ 0x5EED_F00D_FA17);
    let clients = rng.between(1, 5);
    let ops = if rng.chance(0.2) {
        50
    } else {
        rng.between(5, 40)
    };
    let durable = rng.chance(0.5).then(|| rng.between(1, 8));
    let (mut sim, log) = system_with(seed, Network::reliable(), clients, ops, durable);
    if trace {
        sim.enable_trace();
    }
    let group = Group {
        replicas: vec![SERVER],
        clients: (1..=clients).map(|id| Addr::Client(ClientId(id))).collect(),
        f: 0,
        amnesia: false,
        durable: durable.is_some(),
    };
    let adversaries = Adversaries {
        byzantine: None,
        collusion: None,
    };
    let mut plan = faults::schedule(&mut sim, &mut rng, profile, &group, adversaries);
    if let Some(interval) = durable {
        plan.summary.insert(
            0,
            format!("server durable, a snapshot every {interval} requests"),
        );
    }
    for (i, at) in faults::late_joiners(&mut rng, &plan)
        .into_iter()
        .enumerate()
    {
        let (id, ops) = (clients + 1 + i as u64, rng.between(5, 15));
        sim.schedule(at, move |sim| add_client(sim, id, ops));
    }
    sim.run_until_live(LIVENESS_BOUND, Time::ZERO + TIME_LIMIT);
    Simulated {
        sim,
        log,
        plan,
        profile,
        replicas: 1,
        bound: LIVENESS_BOUND,
        settle: Duration::ZERO,
        slack: 0,
    }
}

/// A fixed, fault-free system: `clients` clients of `ops` operations each
/// over a reliable network, built and not yet run.
pub fn fixed_system(clients: u64, ops: u64) -> (Simulator, ExecutionLog) {
    system(1, Network::reliable(), clients, ops)
}
