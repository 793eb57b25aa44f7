//! Running the template: its system in the simulator, its seeded run, and
//! the kit that the registry, `node serve` and the benches go through (in a
//! real protocol: `protocols/src/simulate/<name>.rs` and the end of
//! `protocols/src/<name>.rs`).

use std::sync::Arc;
use std::time::Duration;

use protocols::app::KvApp;
use protocols::registry::{Kit, Protocol, Start};
use protocols::simulate::faults::{self, Adversaries, Group, Profile};
use protocols::simulate::{ExecutionLog, KvWorkload, Simulated};
use runtime::deploy::{self, Running};
use runtime::node::{ClientNode, Node};
use runtime::sim::{Network, Simulator};
use runtime::{Addr, ClientId, ReplicaId, Rng, Time};
use wire::control::NodeConfig;
use wire::registry::{ProtocolSpec, Settings};

use crate::protocol::{BACKUP, Backup, Client, Codec, PRIMARY, Primary, SPEC, WINDOW};

/// How soon a client first retransmits: a few round trips of the simulated
/// network (the real one takes `--resend-ms`).
pub const RESEND_INTERVAL: Duration = Duration::from_millis(5);

/// How long after the last fault healed the clients must have finished:
/// room for a few losses in a row (1% of datagrams are still lost after the
/// heal) at the client's longest backoff, 500 ms.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(3);

/// How long a run goes on after its clients finished, before both replicas
/// must have executed the same slots: the primary's retransmissions get the
/// last forwards through.
pub const SETTLE: Duration = Duration::from_millis(500);

/// Virtual time a run may take at most, whatever happens.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Both replicas, with key-value apps whose executions go to `log` (the
/// agreement checker's input). A factory, not a value: the simulator calls
/// it again for a node that restarts.
pub fn add_replicas(sim: &mut Simulator, log: &ExecutionLog, window: u64) {
    let primary_log = log.clone();
    sim.add_node(
        PRIMARY,
        Box::new(move |rng| {
            let app = primary_log.record(ReplicaId(0), Box::new(KvApp::default()));
            let primary = Primary::new(app, window);
            Box::new(Node::new(PRIMARY, primary, Codec.into(), rng))
        }),
    );
    let backup_log = log.clone();
    sim.add_node(
        BACKUP,
        Box::new(move |rng| {
            let app = backup_log.record(ReplicaId(1), Box::new(KvApp::default()));
            let backup = Backup::new(app, window);
            Box::new(Node::new(BACKUP, backup, Codec.into(), rng))
        }),
    );
}

/// Client `id`, which will issue `ops` operations of the simulator's
/// workload.
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

/// Both replicas and `clients` clients (ids 1..=clients) of `ops`
/// key-value operations each, over `network`, built and not yet run.
pub fn system(
    seed: u64,
    network: Network,
    clients: u64,
    ops: u64,
    window: u64,
) -> (Simulator, ExecutionLog) {
    let mut sim = Simulator::new(seed, network);
    let log = ExecutionLog::default();
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    add_replicas(&mut sim, &log, window);
    for id in 1..=clients {
        add_client(&mut sim, id, ops);
    }
    (sim, log)
}

/// One seeded run under `profile`: a few clients (one or two joining late),
/// both replicas, and the fault plan the profile draws. The group tolerates
/// no replica fault (f = 0, no amnesia): the plan pauses replicas but never
/// wipes one, and crashes only clients.
pub fn random_run(seed: u64, profile: Profile, trace: bool) -> Simulated {
    // A stream of its own for the run's shape, apart from the simulator's.
    let mut rng = Rng::new(seed ^ 0x7E3A_1A7E);
    let clients = rng.between(1, 4);
    let ops = rng.between(5, 30);
    // A small window in half the runs, so that it fills and its drops run.
    let window = if rng.chance(0.5) {
        rng.between(1, 4)
    } else {
        WINDOW.default
    };
    let (mut sim, log) = system(seed, Network::reliable(), clients, ops, window);
    if trace {
        sim.enable_trace();
    }
    let group = Group {
        replicas: vec![PRIMARY, BACKUP],
        clients: (1..=clients).map(|id| Addr::Client(ClientId(id))).collect(),
        f: 0,
        amnesia: false,
        durable: false,
    };
    let adversaries = Adversaries {
        byzantine: None,
        collusion: None,
    };
    let mut plan = faults::schedule(&mut sim, &mut rng, profile, &group, adversaries);
    plan.summary.insert(0, format!("window {window}"));
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
        replicas: 2,
        bound: LIVENESS_BOUND,
        settle: SETTLE,
        // Idle, the backup has executed exactly what the primary has.
        slack: 0,
    }
}

/// What the registry runs the template with.
#[derive(Clone, Copy, Debug)]
pub struct TemplateKit;

/// The template as a registry protocol: what `simulate`, `node serve` and
/// the benches take.
pub const PROTOCOL: Protocol = Protocol::new(&TemplateKit);

impl Kit for TemplateKit {
    fn spec(&self) -> &'static ProtocolSpec {
        &SPEC
    }

    fn start(
        &self,
        _config: &NodeConfig,
        settings: &Settings,
        node: Start,
    ) -> Result<Running, String> {
        let window = settings.get(&WINDOW);
        let codec = Arc::new(Codec);
        let running = match node {
            Start::Replica {
                id: ReplicaId(0),
                app,
                setup,
                ..
            } => deploy::spawn_replica(Primary::new(app, window), codec, setup),
            Start::Replica {
                id: ReplicaId(1),
                app,
                setup,
                ..
            } => deploy::spawn_replica(Backup::new(app, window), codec, setup),
            Start::Replica { id, .. } => {
                return Err(format!("template runs replicas 0 and 1, not {}", id.0));
            }
            Start::Clients {
                resend, ops, setup, ..
            } => {
                let make_client: deploy::ClientFactory<Client> =
                    Arc::new(move |id| Client::new(id, resend));
                deploy::spawn_clients(make_client, codec, ops, setup)
            }
        };
        running.map_err(|e| e.to_string())
    }

    fn random_run(&self, seed: u64, profile: Profile, trace: bool) -> Simulated {
        random_run(seed, profile, trace)
    }

    fn fixed_system(&self, clients: u64, ops: u64) -> (Simulator, ExecutionLog) {
        system(1, Network::reliable(), clients, ops, WINDOW.default)
    }
}
