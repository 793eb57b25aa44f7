//! Chain replication in the simulator: n servers with a key-value app, the
//! master, a few clients, and faults drawn from the seed.
//!
//! The fault plan is the kit's ([`faults::schedule`]: loss, duplication,
//! reordering, long delays, partitions, one-way cuts and pauses of any
//! number of servers, client crashes, strangers' noise), plus crashes of
//! servers without memory, each restarted later. A crash stays within the
//! model: it happens only while another server holds the whole state and
//! has proven to the master it is alive ([`master::View::survives_without`]),
//! which is what "f of f + 1 fail" means for a chain whose master removes
//! servers it cannot hear from. The `beyond` profile crashes every server
//! (more than f): the master never rebuilds a chain from servers that lost
//! everything, so the clients stall and the liveness checker says no.

use std::sync::Arc;
use std::time::Duration;

use runtime::node::{ClientNode, Node};
use runtime::sim::{Network, Simulator};
use runtime::{Addr, ClientId, ReplicaId, Rng, Time};

use super::master::{Observer, View};
use super::{Client, Codec, Master, Replica, Timing, master_id};
use crate::app::{KvApp, kv_read_only};
use crate::simulate::faults::{self, Adversaries, Group, Profile};
use crate::simulate::{ExecutionLog, KvWorkload, Simulated};

/// How often a client first retransmits: a few round trips.
pub const RESEND_INTERVAL: Duration = Duration::from_millis(5);

/// How long after the last heal the clients must have finished: the master
/// removes what failed and adds the restarted servers back one at a time,
/// each with a state transfer, while clients back off up to
/// [`super::RESEND_MAX`].
pub const LIVENESS_BOUND: Duration = Duration::from_secs(3);

/// Virtual time a run may take at most, whatever happens.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

/// How long a run goes on after its clients are done before the catch-up
/// check: acknowledgements reach the head, and restarted servers rejoin.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The chain's clocks in seeded runs: heartbeats every 5 ms, a server
/// suspected after 8 of them.
pub fn timing(window: usize) -> Timing {
    Timing::new(Duration::from_millis(5), 8, window)
}

/// A chain under simulation, with what tests need to script it.
#[derive(Debug)]
pub struct System {
    pub sim: Simulator,
    pub log: ExecutionLog,
    /// The master's view, as it last published it.
    pub view: Observer,
    pub n: usize,
}

/// Adds server `id` of a chain of `n`, running a key-value app whose
/// executions go to `log`. A restart makes a fresh server with nothing.
pub fn add_replica(sim: &mut Simulator, log: &ExecutionLog, id: ReplicaId, n: usize, t: Timing) {
    let log = log.clone();
    sim.add_node(
        Addr::Replica(id),
        Box::new(move |rng| {
            let app = log.record(id, Box::new(KvApp::default()));
            let replica = Replica::new(id, n, t, app);
            Box::new(Node::new(Addr::Replica(id), replica, Arc::new(Codec), rng))
        }),
    );
}

/// Adds the master of a chain of `n`, publishing its view to `view`.
pub fn add_master(sim: &mut Simulator, n: usize, t: Timing, view: &Observer) {
    let view = Arc::clone(view);
    let addr = Addr::Replica(master_id(n));
    sim.add_node(
        addr,
        Box::new(move |rng| {
            let master = Master::observed(n, t, Arc::clone(&view));
            Box::new(Node::new(addr, master, Arc::new(Codec), rng))
        }),
    );
}

/// Adds client `id`, which will issue `ops` operations.
pub fn add_client(sim: &mut Simulator, id: u64, n: usize, ops: u64) {
    let id = ClientId(id);
    sim.add_client(
        id,
        ops,
        Box::new(move |rng| {
            let client = Client::new(id, n, kv_read_only, RESEND_INTERVAL);
            Box::new(ClientNode(Node::new(
                Addr::Client(id),
                client,
                Arc::new(Codec),
                rng,
            )))
        }),
    );
}

/// A chain of `n` servers, its master, and `clients` clients of `ops`
/// operations each (ids 1..=clients), running the default key-value
/// workload.
pub fn system(seed: u64, network: Network, n: usize, clients: u64, ops: u64, t: Timing) -> System {
    let mut sim = Simulator::new(seed, network);
    let log = ExecutionLog::default();
    let view = Observer::default();
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    for i in 0..n {
        add_replica(&mut sim, &log, ReplicaId(i as u8), n, t);
    }
    add_master(&mut sim, n, t, &view);
    for id in 1..=clients {
        add_client(&mut sim, id, n, ops);
    }
    System { sim, log, view, n }
}

/// Whether `victim` may crash now, losing everything, within the model.
fn may_crash(sim: &Simulator, view: &Observer, victim: ReplicaId) -> bool {
    let addr = Addr::Replica(victim);
    if !sim.is_running(addr) || sim.is_paused(addr) {
        return false;
    }
    let view: View = view.lock().map(|v| v.clone()).unwrap_or_default();
    view.survives_without(victim, sim.now(), |id| sim.is_running(Addr::Replica(id)))
}

/// One random run under `profile` (see the module docs).
pub fn random_run(seed: u64, profile: Profile, trace: bool) -> Simulated {
    let mut rng = Rng::new(seed ^ 0xC4A1_5EED_FA17);
    let n = [2, 2, 3, 3, 4, 5][rng.below(6) as usize];
    let clients = rng.between(1, 5);
    let ops = if rng.chance(0.2) {
        50
    } else {
        rng.between(5, 40)
    };
    let window = if rng.chance(0.3) { 2 } else { 64 };
    let t = timing(window);
    let System {
        mut sim, log, view, ..
    } = system(seed, Network::reliable(), n, clients, ops, t);
    if trace {
        sim.enable_trace();
    }
    let servers: Vec<Addr> = (0..n as u8).map(|i| Addr::Replica(ReplicaId(i))).collect();
    let group = Group {
        replicas: servers.clone(),
        clients: (1..=clients).map(|id| Addr::Client(ClientId(id))).collect(),
        f: n - 1,
        // Crashes of servers come below, judged by the master's view.
        amnesia: false,
        durable: false,
    };
    let adversaries = Adversaries {
        byzantine: None,
        collusion: None,
    };
    let mut plan = faults::schedule(&mut sim, &mut rng, profile, &group, adversaries);
    plan.summary
        .insert(0, format!("{n} servers, window {window}"));
    if matches!(profile, Profile::Crash | Profile::All) {
        let window = plan.heal_at;
        for _ in 0..rng.between(1, 3) {
            let victim = ReplicaId(rng.below(n as u64) as u8);
            let crash = Time::from_nanos(rng.between(0, window.as_nanos()));
            let restart = (crash + Duration::from_millis(rng.between(1, 200))).min(window);
            plan.summary.push(format!(
                "replica {} crashes at {crash} (if another holds the state), restarts at {restart}",
                victim.0
            ));
            let view = Arc::clone(&view);
            sim.schedule_fault(crash, move |sim| {
                if may_crash(sim, &view, victim) {
                    sim.crash(Addr::Replica(victim));
                }
            });
            sim.schedule_fault(restart, move |sim| {
                if !sim.is_running(Addr::Replica(victim)) {
                    sim.restart(Addr::Replica(victim));
                }
            });
        }
    }
    for (i, at) in faults::late_joiners(&mut rng, &plan)
        .into_iter()
        .enumerate()
    {
        let (id, ops) = (clients + 1 + i as u64, rng.between(5, 15));
        sim.schedule(at, move |sim| add_client(sim, id, n, ops));
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

/// A fixed, fault-free chain of three: `clients` clients of `ops`
/// operations each over a reliable network, built and not yet run.
pub fn fixed_system(clients: u64, ops: u64) -> (Simulator, ExecutionLog) {
    let System { sim, log, .. } = system(1, Network::reliable(), 3, clients, ops, timing(64));
    (sim, log)
}
