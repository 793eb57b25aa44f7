//! VR in the simulator: 2f + 1 replicas with a key-value app, a few
//! clients, and the faults of the kit's plan (loss, duplication,
//! reordering, long delays, partitions, one-way cuts, pauses, which keep a
//! replica's memory, and crashes, which lose it: a restarted replica runs
//! the recovery protocol, and the plan keeps crashed and recovering
//! replicas within f). VR tolerates crashes, not lies: its runs use the
//! crash, network and partition profiles, not the Byzantine one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use runtime::node::{ClientNode, Node};
use runtime::sim::{Network, Simulator};
use runtime::{Addr, ClientId, ReplicaId, Rng, Time};

use super::{Client, Codec, Config, Replica};
use crate::app::KvApp;
use crate::simulate::faults::{self, Adversaries, Group, Profile};
use crate::simulate::{ExecutionLog, KvWorkload, Simulated};

/// How often a client first retransmits: a few round trips.
pub const RESEND_INTERVAL: Duration = Duration::from_millis(5);

/// How long after the last heal the clients must have finished: a view
/// change or two, each after a view timeout that may have backed off.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(3);

/// Virtual time a run may take at most, whatever happens.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

/// How long a run goes on after its clients are done before the catch-up
/// check: commit numbers reach the backups.
pub const SETTLE: Duration = Duration::from_secs(1);

/// A VR group under simulation, with what tests need to script it.
#[derive(Debug)]
pub struct System {
    pub sim: Simulator,
    pub log: ExecutionLog,
    pub config: Config,
}

/// Adds replica `id` of the group `config` describes, running a key-value
/// app whose executions go to `log`. A restart makes a replica with
/// nothing, which runs the recovery protocol.
pub fn add_replica(sim: &mut Simulator, log: &ExecutionLog, id: ReplicaId, config: Config) {
    let log = log.clone();
    let started = AtomicBool::new(false);
    sim.add_node(
        Addr::Replica(id),
        Box::new(move |rng| {
            let app = log.record(id, Box::new(KvApp::default()));
            let replica = if started.swap(true, Ordering::Relaxed) {
                Replica::recovering(id, config, app)
            } else {
                Replica::new(id, config, app)
            };
            Box::new(Node::new(Addr::Replica(id), replica, Arc::new(Codec), rng))
        }),
    );
}

/// Adds client `id`, which will issue `ops` operations.
pub fn add_client(sim: &mut Simulator, id: u64, config: Config, ops: u64) {
    let id = ClientId(id);
    sim.add_client(
        id,
        ops,
        Box::new(move |rng| {
            let client = Client::new(id, config, RESEND_INTERVAL);
            Box::new(ClientNode(Node::new(
                Addr::Client(id),
                client,
                Arc::new(Codec),
                rng,
            )))
        }),
    );
}

/// A group of `config.n` replicas and `clients` clients of `ops`
/// operations each (ids 1..=clients), running the default key-value
/// workload.
pub fn system(seed: u64, network: Network, config: Config, clients: u64, ops: u64) -> System {
    let mut sim = Simulator::new(seed, network);
    let log = ExecutionLog::default();
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    for i in 0..config.n {
        add_replica(&mut sim, &log, ReplicaId(i as u8), config);
    }
    for id in 1..=clients {
        add_client(&mut sim, id, config, ops);
    }
    System { sim, log, config }
}

/// The group's clocks in seeded runs: a view timeout of 20 ms, small
/// batches and a narrow window now and then, so that both fill, and a
/// snapshot every few batches, so that logs are truncated, and replicas
/// that fall behind or recover catch up from snapshots.
fn draw_config(rng: &mut Rng, n: usize) -> Config {
    let mut config = Config::new(n);
    config.view_timeout = Duration::from_millis(20);
    config.checkpoint_interval = [2, 3, 8, 128][rng.below(4) as usize];
    if rng.chance(0.3) {
        config.batch_max = 2;
        config.window = 1;
    }
    config
}

/// One random run under `profile`: n = 3 mostly, sometimes 1, 5 or 7;
/// one to five clients with 5 to 40 operations each (50 on a fifth of the
/// seeds), and one or two clients joining late.
pub fn random_run(seed: u64, profile: Profile, trace: bool) -> Simulated {
    let mut rng = Rng::new(seed ^ 0x5652_5EED_0D0C);
    let n = [3, 3, 3, 5, 5, 7, 1][rng.below(7) as usize];
    let clients = rng.between(1, 5);
    let ops = if rng.chance(0.2) {
        50
    } else {
        rng.between(5, 40)
    };
    let config = draw_config(&mut rng, n);
    let System { mut sim, log, .. } = system(seed, Network::reliable(), config, clients, ops);
    if trace {
        sim.enable_trace();
    }
    let group = Group {
        replicas: (0..n as u8).map(|i| Addr::Replica(ReplicaId(i))).collect(),
        clients: (1..=clients).map(|id| Addr::Client(ClientId(id))).collect(),
        f: config.f,
        // Crashes lose the replica's memory; it recovers (§4.3).
        amnesia: true,
        durable: false,
    };
    let adversaries = Adversaries {
        byzantine: None,
        collusion: None,
    };
    let mut plan = faults::schedule(&mut sim, &mut rng, profile, &group, adversaries);
    plan.summary.insert(
        0,
        format!(
            "{n} replicas, batches of {} at most, window {}, a snapshot every {} batches",
            config.batch_max, config.window, config.checkpoint_interval
        ),
    );
    for (i, at) in faults::late_joiners(&mut rng, &plan)
        .into_iter()
        .enumerate()
    {
        let (id, ops) = (clients + 1 + i as u64, rng.between(5, 15));
        sim.schedule(at, move |sim| add_client(sim, id, config, ops));
    }
    sim.run_until_live(LIVENESS_BOUND, Time::ZERO + TIME_LIMIT);
    Simulated {
        sim,
        log,
        plan,
        profile,
        replicas: n,
        bound: LIVENESS_BOUND,
        settle: SETTLE,
        slack: 0,
    }
}

/// A fixed, fault-free group of three: `clients` clients of `ops`
/// operations each over a reliable network, built and not yet run.
pub fn fixed_system(clients: u64, ops: u64) -> (Simulator, ExecutionLog) {
    let System { sim, log, .. } = system(1, Network::reliable(), Config::new(3), clients, ops);
    (sim, log)
}
