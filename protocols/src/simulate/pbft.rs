//! PBFT in the simulator: n replicas (n = 4, f = 1, in random runs) with a
//! key-value app, a few clients, and faults drawn from the seed.

use std::sync::Arc;
use std::time::Duration;

use runtime::node::{ClientNode, Node};
use runtime::sim::{Byzantine, Network, Noise, Simulator, Tamper};
use runtime::{Addr, ClientId, ReplicaId, Rng, Time};
use wire::pbft::{Message, PrePrepare};
use wire::{Digest, SecretKey, Signed, Signer};

use super::{ExecutionLog, KvWorkload};
use crate::app::KvApp;
use crate::pbft::{CLIENT_RESEND_INTERVAL, Client, Codec, Config, Replica};

/// Bound on virtual time for a random run: far beyond what the workload needs
/// once faults heal (and view-change timeouts back off), so hitting it means
/// lost progress.
pub const TIME_LIMIT: Duration = Duration::from_secs(30);

/// The secret keys of `n` replicas for a run with `seed`.
pub fn keys(seed: u64, n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::from_seed(format!("pbft {seed} {i}").as_bytes()))
        .collect()
}

/// The group these keys make.
pub fn config(keys: &[SecretKey]) -> Arc<Config> {
    let public: Vec<_> = keys
        .iter()
        .map(|k| Signer::new(k).expect("seeded keys are valid").public_key())
        .collect();
    Arc::new(Config::new(&public).expect("seeded keys are valid"))
}

/// A PBFT system under simulation, with what tests need to script it.
#[derive(Debug)]
pub struct System {
    pub sim: Simulator,
    pub log: ExecutionLog,
    pub config: Arc<Config>,
    pub keys: Vec<SecretKey>,
}

/// Replica `id` as a node: its codec signs with `key`; its app is `app`.
pub fn replica_node(
    id: ReplicaId,
    config: &Arc<Config>,
    key: &SecretKey,
    app: Box<dyn crate::app::App>,
    rng: Rng,
) -> Node<Replica> {
    let codec = Arc::new(Codec::replica(Arc::clone(config), id, key).expect("valid key"));
    let replica = Replica::new(id, Arc::clone(&codec), app);
    Node::new(Addr::Replica(id), replica, codec, rng)
}

/// Adds replica `id` running a key-value app whose executions go to `log`.
/// A restart makes a fresh replica with empty state.
pub fn add_replica(
    sim: &mut Simulator,
    log: &ExecutionLog,
    config: &Arc<Config>,
    key: &SecretKey,
    id: u8,
) {
    let (log, config, key) = (log.clone(), Arc::clone(config), key.clone());
    let id = ReplicaId(id);
    sim.add_node(
        Addr::Replica(id),
        Box::new(move |rng| {
            let app = log.record(id, Box::new(KvApp::default()));
            Box::new(replica_node(id, &config, &key, app, rng))
        }),
    );
}

/// The seed of the clients' key pairs in a run: it follows from the replicas'
/// keys, and so from the run's seed.
pub fn client_key_seed(config: &Config) -> Vec<u8> {
    let keys: Vec<u8> = config.public_keys().iter().flat_map(|k| k.0).collect();
    Digest::of(&keys).0.to_vec()
}

/// Adds client `id`, which will issue `ops` operations.
pub fn add_client(sim: &mut Simulator, config: &Arc<Config>, id: u64, ops: u64) {
    let config = Arc::clone(config);
    let id = ClientId(id);
    sim.add_client(
        id,
        ops,
        Box::new(move |rng| {
            let codec = Arc::new(Codec::client(
                Arc::clone(&config),
                &client_key_seed(&config),
            ));
            codec.register_client(id);
            let client = Client::new(id, Arc::clone(&config), CLIENT_RESEND_INTERVAL);
            Box::new(ClientNode(Node::new(Addr::Client(id), client, codec, rng)))
        }),
    );
}

/// `n` replicas and `clients` clients (ids 1..=clients) of `ops` operations
/// each, running the default key-value workload.
pub fn system(seed: u64, network: Network, n: usize, clients: u64, ops: u64) -> System {
    let mut sim = Simulator::new(seed, network);
    let log = ExecutionLog::default();
    let keys = keys(seed, n);
    let config = config(&keys);
    sim.set_workload(
        KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    for (i, key) in keys.iter().enumerate() {
        add_replica(&mut sim, &log, &config, key, i as u8);
    }
    for id in 1..=clients {
        add_client(&mut sim, &config, id, ops);
    }
    System {
        sim,
        log,
        config,
        keys,
    }
}

/// A Byzantine primary's tamperer: every pre-prepare it sends to a replica
/// that `victim` picks carries a different batch (the original minus its last
/// request, or reversed), correctly signed with the primary's `key`. So backups
/// disagree on what the primary proposed at one sequence number.
pub fn equivocate(key: &SecretKey, victim: impl Fn(Addr) -> bool + 'static) -> Box<dyn Tamper> {
    let signer = Signer::new(key).expect("valid key");
    Box::new(
        move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
            let forged = match wire::decode::<Message>(&bytes) {
                Ok(Message::PrePrepare(pp, mut batch)) if victim(to) => {
                    if batch.len() > 1 {
                        batch.pop();
                    } else {
                        batch.clear();
                    }
                    let digest = crate::pbft::batch_digest(&batch).expect("encodes");
                    let header = PrePrepare {
                        digest,
                        ..pp.payload
                    };
                    let signed = Signed::sign(header, &signer).expect("encodes");
                    wire::codec::encode_to_vec(&Message::PrePrepare(signed, batch)).ok()
                }
                _ => None,
            };
            out.push((to, forged.unwrap_or(bytes)));
        },
    )
}

/// One random run of n = 4 replicas: on half the seeds 10% loss, duplication
/// and reordering, and one fault drawn from the seed, at most f = 1 faulty
/// replica at a time: a replica crash and restart (it comes back empty and
/// catches up by state transfer), a replica partitioned away for a while, a
/// Byzantine replica (silent, garbage, corrupting, or an equivocating
/// primary), or a noise node.
pub fn random_run(seed: u64) -> (Simulator, ExecutionLog) {
    let mut plan = Rng::new(seed ^ 0x0BF7_5EED_FA17);
    let clients = plan.between(1, 3);
    let ops = plan.between(3, 12);
    let network = if plan.chance(0.5) {
        Network::faulty(0.1)
    } else {
        Network::reliable()
    };
    let System {
        mut sim, log, keys, ..
    } = system(seed, network, 4, clients, ops);
    let victim = plan.below(4) as u8;
    let addr = Addr::Replica(ReplicaId(victim));
    let at = |plan: &mut Rng, max_ms: u64| Time::from_nanos(plan.between(0, max_ms * 1_000_000));
    match plan.below(6) {
        0 => {}
        1 => {
            let crash = at(&mut plan, 60);
            let restart = crash + Duration::from_millis(plan.between(1, 150));
            sim.schedule(crash, move |sim| sim.crash(addr));
            sim.schedule(restart, move |sim| sim.restart(addr));
        }
        2 => {
            let start = at(&mut plan, 60);
            let end = start + Duration::from_millis(plan.between(5, 200));
            sim.schedule(start, move |sim| sim.partition(&[&[addr]]));
            sim.schedule(end, |sim| sim.heal());
        }
        3 => {
            log.exclude(ReplicaId(victim));
            let tamper: Box<dyn Tamper> = match plan.below(4) {
                0 => Box::new(Byzantine::Silent),
                1 => Box::new(Byzantine::Garbage),
                2 => Box::new(Byzantine::Corrupt { flips: 3 }),
                _ => {
                    let odd = plan.chance(0.5);
                    equivocate(&keys[victim as usize], move |to| match to {
                        Addr::Replica(r) => (r.0 % 2 == 1) == odd,
                        Addr::Client(_) => false,
                    })
                }
            };
            let start = at(&mut plan, 40);
            sim.schedule(start, move |sim| sim.set_byzantine(addr, tamper));
        }
        4 => {
            let interval = Duration::from_micros(plan.between(50, 1000));
            let noise = Addr::Client(ClientId(u64::MAX));
            sim.add_node(
                noise,
                Box::new(move |rng| Box::new(Noise::new(noise, addr, interval, rng))),
            );
        }
        _ => {
            // A client cut off from the replicas for a while.
            let start = at(&mut plan, 40);
            let end = start + Duration::from_millis(plan.between(5, 100));
            let client = Addr::Client(ClientId(1));
            sim.schedule(start, move |sim| sim.partition(&[&[client]]));
            sim.schedule(end, |sim| sim.heal());
        }
    }
    sim.run_until_clients_done(Time::ZERO + TIME_LIMIT);
    (sim, log)
}
