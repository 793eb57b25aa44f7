//! HotStuff in the simulator: n replicas with a key-value app, a few
//! clients, faults drawn from the seed, and HotStuff's Byzantine
//! behaviours: the protocol-aware adversary (field mutations, replays,
//! withholding, a different message per destination, see
//! [`runtime::sim::Adversary`]), silence, garbage, and a leader that
//! proposes a different block to each half of the group.
//!
//! Crashes keep the durable vote record (`Group::durable`): HotStuff's
//! model is crash-recovery with the last voted view and the lock on
//! stable storage; a replica that forgets them could vote twice in a view,
//! which is beyond f faults (the `beyond` profile does it to more than f).

use std::sync::Arc;
use std::time::Duration;

use runtime::node::{ClientNode, Node};
use runtime::sim::{Adversary, Byzantine, Factory, Network, Simulator, Tactics, Tamper};
use runtime::{Addr, ClientId, ReplicaId, Rng, Time};
use wire::hotstuff::Message;
use wire::{Digest, SecretKey, Signer};

use super::{CLIENT_RESEND_INTERVAL, Client, Codec, Config, LIVENESS_BOUND, ProposalAuth, Replica};
use crate::app::KvApp;
use crate::simulate::faults::{self, Adversaries, Group, Profile, Twins};
use crate::simulate::{ExecutionLog, KvWorkload, Simulated};

/// Virtual time a run may take at most, whatever happens.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

/// How long a seeded run goes on after its clients are done, before the
/// catch-up check: the leaders keep proposing until the last block with
/// requests commits everywhere, and a replica behind syncs.
pub const SETTLE: Duration = Duration::from_secs(1);

/// How many blocks a correct replica may be behind the furthest at the
/// catch-up check: in an idle group the leader that forms the last QC
/// commits one more (empty) block than the replicas that never see that
/// QC, and a view that timed out at the end leaves a block or two
/// uncommitted at some; and when a view timer or a heartbeat sets the
/// leaders proposing again just before the check, a replica may be the
/// blocks of a few views behind for a moment. Only blocks the others
/// committed moments before: every block with requests commits everywhere.
pub const IDLE_SLACK: u64 = 8;

/// Real secp256k1 keys for `n` replicas (scenario tests, benches).
pub fn keys(seed: u64, n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::from_seed(format!("hotstuff {seed} {i}").as_bytes()))
        .collect()
}

/// Simulated keys for `n` replicas: what seeded runs use.
pub fn simulated_keys(seed: u64, n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::simulated(format!("hotstuff {seed} {i}").as_bytes()))
        .collect()
}

/// The group these keys make.
pub fn config(keys: &[SecretKey]) -> Arc<Config> {
    Arc::new(group(keys))
}

/// The group these keys make, to adjust before it is shared.
pub fn group(keys: &[SecretKey]) -> Config {
    let public: Vec<_> = keys
        .iter()
        .map(|k| Signer::new(k).expect("seeded keys are valid").public_key())
        .collect();
    Config::new(&public).expect("seeded keys are valid")
}

/// A HotStuff system under simulation, with what tests need to script it.
#[derive(Debug)]
pub struct System {
    pub sim: Simulator,
    pub log: ExecutionLog,
    pub config: Arc<Config>,
    pub keys: Vec<SecretKey>,
}

/// Adds replica `id` running a key-value app whose executions go to `log`.
/// A restart makes a fresh replica, which gets its durable record back.
pub fn add_replica(
    sim: &mut Simulator,
    log: &ExecutionLog,
    config: &Arc<Config>,
    key: &SecretKey,
    id: u8,
) {
    let factory = replica_factory(log, config, key, ReplicaId(id));
    sim.add_node(Addr::Replica(ReplicaId(id)), factory);
}

/// Makes replica `id` with `key`: what [`add_replica`] adds, and what a
/// twin of it ([`Simulator::add_twin`]) runs, with the same key.
pub fn replica_factory(
    log: &ExecutionLog,
    config: &Arc<Config>,
    key: &SecretKey,
    id: ReplicaId,
) -> Factory {
    let (log, config, key) = (log.clone(), Arc::clone(config), key.clone());
    Box::new(move |rng| {
        let app = log.record(id, Box::new(KvApp::default()));
        let codec = Arc::new(Codec::replica(Arc::clone(&config), id, &key).expect("valid key"));
        let replica = Replica::new(id, Arc::clone(&codec), app);
        Box::new(Node::new(Addr::Replica(id), replica, codec, rng))
    })
}

/// How often a Byzantine replica of a seeded run is a twin.
pub const TWIN_CHANCE: f64 = 0.25;

/// The seed of the clients' key pairs: it follows from the replicas' keys.
pub fn client_key_seed(config: &Config) -> Vec<u8> {
    let keys: Vec<u8> = config.public_keys().iter().flat_map(|k| k.0).collect();
    Digest::of(&keys).0.to_vec()
}

fn client_node(config: &Arc<Config>, id: ClientId, rng: Rng) -> Box<ClientNode<Client>> {
    let codec = Arc::new(Codec::client(Arc::clone(config), &client_key_seed(config)));
    let client = Client::new(id, &codec, CLIENT_RESEND_INTERVAL);
    Box::new(ClientNode(Node::new(Addr::Client(id), client, codec, rng)))
}

/// Adds client `id`, which will issue `ops` operations.
pub fn add_client(sim: &mut Simulator, config: &Arc<Config>, id: u64, ops: u64) {
    let config = Arc::clone(config);
    let id = ClientId(id);
    sim.add_client(id, ops, Box::new(move |rng| client_node(&config, id, rng)));
}

/// Adds a steady client `id`: it issues operations, thinking up to
/// `think_time_max` between them, until `until`.
pub fn add_steady_client(
    sim: &mut Simulator,
    config: &Arc<Config>,
    id: u64,
    until: Time,
    think_time_max: Duration,
) {
    let config = Arc::clone(config);
    let id = ClientId(id);
    sim.add_steady_client(
        id,
        until,
        think_time_max,
        Box::new(move |rng| client_node(&config, id, rng)),
    );
}

/// `n` replicas with the group `config` and keys `keys`, and `clients`
/// clients (ids 1..=clients) of `ops` operations each, running the default
/// key-value workload.
pub fn system_with(
    seed: u64,
    network: Network,
    config: Arc<Config>,
    keys: Vec<SecretKey>,
    clients: u64,
    ops: u64,
) -> System {
    let mut sim = Simulator::new(seed, network);
    let log = ExecutionLog::default();
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

/// [`system_with`] for `n` replicas with real keys.
pub fn system(seed: u64, network: Network, n: usize, clients: u64, ops: u64) -> System {
    let keys = keys(seed, n);
    system_with(seed, network, config(&keys), keys, clients, ops)
}

/// The protocol-aware adversary for replica `id` of the group `keys` make.
pub fn adversary(keys: &[SecretKey], id: ReplicaId, tactics: Tactics) -> Box<dyn Tamper> {
    let key = &keys[usize::from(id.0)];
    let signer = Signer::new(key).expect("valid key");
    Box::new(
        Adversary::<Message>::new(Some(signer), keys.len() as u8, tactics)
            .with_mac_keys(proposal_auth(keys, id).into_keys()),
    )
}

/// The keys replica `id` of the group `keys` make authenticates its
/// proposals with.
pub fn proposal_auth(keys: &[SecretKey], id: ReplicaId) -> ProposalAuth {
    ProposalAuth::new(&keys[usize::from(id.0)], group(keys).verifying_keys())
        .expect("seeded keys are valid")
}

/// A leader that equivocates in every view it leads: each proposal it
/// sends to a replica that `victim` picks carries another block for the
/// same view, correctly authenticated by the leader, replica `id` of the
/// group `keys` make: the original without its last request, or, for an
/// empty block, with the last request it proposed before (replayed: its
/// MAC still checks).
pub fn equivocate(
    keys: &[SecretKey],
    id: ReplicaId,
    victim: impl Fn(Addr) -> bool + 'static,
) -> Box<dyn Tamper> {
    let auth = proposal_auth(keys, id);
    let mut seen = None;
    Box::new(
        move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
            let forged = match wire::decode::<Message>(&bytes) {
                Ok(Message::Proposal(mut p)) if victim(to) => {
                    match p.block.requests.last() {
                        Some(last) => {
                            seen = Some(last.clone());
                            p.block.requests.pop();
                        }
                        None => p.block.requests.extend(seen.clone()),
                    }
                    p.header.block = p.block.digest();
                    p.auth = auth.authenticate(&p.header);
                    wire::codec::encode_to_vec(&Message::Proposal(p)).ok()
                }
                _ => None,
            };
            out.push((to, forged.unwrap_or(bytes)));
        },
    )
}

/// HotStuff's Byzantine behaviours for a seeded run, one drawn per replica.
fn behaviour(keys: &[SecretKey], rng: &mut Rng, id: ReplicaId) -> (Box<dyn Tamper>, String) {
    match rng.below(8) {
        0 => (Box::new(Byzantine::Silent), "silent".to_string()),
        1 => (Box::new(Byzantine::Garbage), "garbage".to_string()),
        2 | 3 => {
            let odd = rng.chance(0.5);
            let tamper = equivocate(keys, id, move |to| match to {
                Addr::Replica(r) => (r.0 % 2 == 1) == odd,
                Addr::Client(_) => false,
            });
            (tamper, "equivocating leader".to_string())
        }
        _ => {
            let tactics = Tactics::draw(rng);
            (
                adversary(keys, id, tactics),
                format!("adversary {tactics:?}"),
            )
        }
    }
}

/// One random run of HotStuff under `profile`: n = 4 mostly, sometimes 5,
/// 6 or 7 (quorums where n ≠ 3f + 1); one to three clients with 10 to 40
/// operations each, or five clients with 50 operations each on a fifth of
/// the seeds; on a third of the seeds a steady client until well past the
/// liveness bound after the heal; and one or two clients joining late.
pub fn random_run(seed: u64, profile: Profile, trace: bool) -> Simulated {
    let mut rng = Rng::new(seed ^ 0x4075_7D0F_F5EE);
    let n = [4, 4, 4, 5, 6, 7][rng.below(6) as usize];
    let (mut clients, ops) = if rng.chance(0.2) {
        (5, 50)
    } else {
        (rng.between(1, 3), rng.between(10, 40))
    };
    let steady = rng.chance(1.0 / 3.0);
    let keys = simulated_keys(seed, n);
    let config = config(&keys);
    let mut sim = Simulator::new(seed, Network::reliable());
    if trace {
        sim.enable_trace();
    }
    let log = ExecutionLog::default();
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
    if steady {
        clients += 1;
    }
    let group = Group {
        replicas: (0..n as u8).map(|i| Addr::Replica(ReplicaId(i))).collect(),
        clients: (1..=clients).map(|id| Addr::Client(ClientId(id))).collect(),
        f: config.f,
        amnesia: false,
        durable: true,
    };
    let mut behaviours = |rng: &mut Rng, id| behaviour(&keys, rng, id);
    let adversaries = Adversaries {
        byzantine: Some(&mut behaviours),
        collusion: None,
    };
    let mut twin = |id: ReplicaId| replica_factory(&log, &config, &keys[usize::from(id.0)], id);
    let twins = Twins {
        factory: &mut twin,
        chance: TWIN_CHANCE,
    };
    let plan = faults::schedule_with_twins(
        &mut sim,
        &mut rng,
        profile,
        &group,
        adversaries,
        Some(twins),
    );
    for id in &plan.byzantine {
        log.exclude(*id);
    }
    if steady {
        let until = plan.heal_at + LIVENESS_BOUND + Duration::from_millis(500);
        add_steady_client(&mut sim, &config, clients, until, Duration::from_millis(20));
    }
    for (i, at) in faults::late_joiners(&mut rng, &plan)
        .into_iter()
        .enumerate()
    {
        let (config, id, ops) = (
            Arc::clone(&config),
            clients + 1 + i as u64,
            rng.between(5, 15),
        );
        sim.schedule(at, move |sim| add_client(sim, &config, id, ops));
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
        slack: IDLE_SLACK,
    }
}

/// A fixed, fault-free system: four replicas with simulated keys, `clients`
/// clients of `ops` operations each over a reliable network, built and not
/// yet run.
pub fn fixed_system(clients: u64, ops: u64) -> (Simulator, ExecutionLog) {
    let keys = simulated_keys(1, 4);
    let System { sim, log, .. } =
        system_with(1, Network::reliable(), config(&keys), keys, clients, ops);
    (sim, log)
}
