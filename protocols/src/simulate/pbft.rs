//! PBFT in the simulator: n replicas with a key-value app, a few clients,
//! faults drawn from the seed, and the Byzantine behaviours PBFT's seeded
//! runs use: the protocol-aware adversary (field mutations, replays,
//! equivocation per destination, see [`runtime::sim::Adversary`]), and
//! behaviours that need to know what a message means (a primary that
//! equivocates consistently, one that censors a client, colluders beyond
//! the model).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use runtime::node::{ClientNode, Node};
use runtime::sim::{Adversary, Byzantine, Network, Simulator, Tactics, Tamper};
use runtime::{Addr, ClientId, ReplicaId, Rng, Time};
use wire::pbft::{Message, PrePrepare, batch_digest};
use wire::{Digest, SecretKey, Signed, Signer};

use super::faults::{self, Adversaries, Group, Profile};
use super::{ExecutionLog, KvWorkload, Simulated};
use crate::app::KvApp;
use crate::pbft::{CLIENT_RESEND_INTERVAL, Client, Codec, Config, LIVENESS_BOUND, Replica};

/// Virtual time a run may take at most, whatever happens: far beyond what
/// the workload needs once faults heal.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

/// How long a seeded run goes on after its clients are done, before the
/// catch-up check: two status heartbeats, so that a replica left behind
/// learns of it and fetches what it misses.
pub const SETTLE: Duration = Duration::from_secs(1);

/// The secret keys of `n` replicas for a run with `seed`: real secp256k1
/// keys, as scenario tests, benches and real runs use.
pub fn keys(seed: u64, n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::from_seed(format!("pbft {seed} {i}").as_bytes()))
        .collect()
}

/// Simulated keys for `n` replicas (see [`wire::crypto`]): what seeded runs
/// use, twenty times faster than signing for real.
pub fn simulated_keys(seed: u64, n: usize) -> Vec<SecretKey> {
    (0..n)
        .map(|i| SecretKey::simulated(format!("pbft {seed} {i}").as_bytes()))
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

/// A PBFT system under simulation, with what tests need to script it.
#[derive(Debug)]
pub struct System {
    pub sim: Simulator,
    pub log: ExecutionLog,
    pub config: Arc<Config>,
    pub keys: Vec<SecretKey>,
}

/// Replica `id` as a node: its codec signs with `key`; its app is `app`.
/// `restarted`: it comes back into a running group and recovers first.
pub fn replica_node(
    id: ReplicaId,
    config: &Arc<Config>,
    key: &SecretKey,
    app: Box<dyn crate::app::App>,
    rng: Rng,
    restarted: bool,
) -> Node<Replica> {
    let codec = Arc::new(Codec::replica(Arc::clone(config), id, key).expect("valid key"));
    let replica = if restarted {
        Replica::restarted(id, Arc::clone(&codec), app)
    } else {
        Replica::new(id, Arc::clone(&codec), app)
    };
    Node::new(Addr::Replica(id), replica, codec, rng)
}

/// Adds replica `id` running a key-value app whose executions go to `log`.
/// A restart makes a fresh replica with empty state, which recovers.
pub fn add_replica(
    sim: &mut Simulator,
    log: &ExecutionLog,
    config: &Arc<Config>,
    key: &SecretKey,
    id: u8,
) {
    let (log, config, key) = (log.clone(), Arc::clone(config), key.clone());
    let id = ReplicaId(id);
    let mut starts = 0;
    sim.add_node(
        Addr::Replica(id),
        Box::new(move |rng| {
            starts += 1;
            let app = log.record(id, Box::new(KvApp::default()));
            Box::new(replica_node(id, &config, &key, app, rng, starts > 1))
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
            let client = Client::new(id, &codec, CLIENT_RESEND_INTERVAL);
            Box::new(ClientNode(Node::new(Addr::Client(id), client, codec, rng)))
        }),
    );
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
        Box::new(move |rng| {
            let codec = Arc::new(Codec::client(
                Arc::clone(&config),
                &client_key_seed(&config),
            ));
            let client = Client::new(id, &codec, CLIENT_RESEND_INTERVAL);
            Box::new(ClientNode(Node::new(Addr::Client(id), client, codec, rng)))
        }),
    );
}

/// `n` replicas and `clients` clients (ids 1..=clients) of `ops` operations
/// each, running the default key-value workload.
pub fn system(seed: u64, network: Network, n: usize, clients: u64, ops: u64) -> System {
    let keys = keys(seed, n);
    system_with(seed, network, config(&keys), keys, clients, ops)
}

/// [`system`] with the group's configuration given (say, a smaller client
/// table), for the keys `keys`.
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

/// The protocol-aware adversary for a PBFT replica holding `key`.
pub fn adversary(key: &SecretKey, n: usize, tactics: Tactics) -> Box<dyn Tamper> {
    let signer = Signer::new(key).expect("valid key");
    Box::new(Adversary::<Message>::new(Some(signer), n as u8, tactics))
}

/// A Byzantine primary's tamperer: every pre-prepare it sends to a replica
/// that `victim` picks carries a different batch (the original minus its last
/// request, or empty), correctly signed with the primary's `key`. So backups
/// disagree on what the primary proposed at one sequence number.
pub fn equivocate(key: &SecretKey, victim: impl Fn(Addr) -> bool + 'static) -> Box<dyn Tamper> {
    let signer = Signer::new(key).expect("valid key");
    Box::new(
        move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
            let forged = match wire::decode::<Message>(&bytes) {
                Ok(Message::PrePrepare(pp, mut batch)) if victim(to) => {
                    batch.pop();
                    let signed = resign(pp.payload, &batch, &signer);
                    wire::codec::encode_to_vec(&Message::PrePrepare(signed, batch)).ok()
                }
                _ => None,
            };
            out.push((to, forged.unwrap_or(bytes)));
        },
    )
}

/// A Byzantine replica that never hears `client`: it takes in none of its
/// requests (nor relays of them), and so as primary orders everyone's
/// requests but that client's, while it serves every other client: a censor
/// (TOCS §4.5.2's timer, reset by any execution, lets one go on for ever).
pub fn censor(client: ClientId) -> Box<dyn Tamper> {
    struct Censor(ClientId);
    impl Tamper for Censor {
        fn tamper(
            &mut self,
            _: &mut Rng,
            to: Addr,
            bytes: Vec<u8>,
            out: &mut Vec<(Addr, Vec<u8>)>,
        ) {
            out.push((to, bytes));
        }

        fn accept(&mut self, _from: Addr, bytes: &[u8]) -> bool {
            let client = self.0;
            match wire::decode::<Message>(bytes) {
                Ok(Message::Request(r)) => r.request.client_id != client,
                Ok(Message::Relayed(_, requests)) => {
                    requests.iter().all(|r| r.request.client_id != client)
                }
                _ => true,
            }
        }
    }
    Box::new(Censor(client))
}

/// A pre-prepare header naming `batch`, signed by `signer`.
fn resign(
    header: PrePrepare,
    batch: &[wire::pbft::AuthRequest],
    signer: &Signer,
) -> Signed<PrePrepare> {
    let header = PrePrepare {
        digest: batch_digest(batch).expect("encodes"),
        ..header
    };
    Signed::sign(header, signer).expect("encodes")
}

/// Colluding replicas beyond the model: the primary of view 0 and f others.
/// The primary proposes one batch to half of the correct replicas and
/// another (the first without its last request) to the other half, and
/// every colluder sends each half prepares and commits for the batch that
/// half got, each signed with its own key. With f + 1 colluders both halves
/// assemble quorums, and the correct replicas execute different batches at
/// one sequence number.
pub fn collude(keys: &[SecretKey], colluders: &[ReplicaId]) -> Vec<(ReplicaId, Box<dyn Tamper>)> {
    let forged: Rc<RefCell<HashMap<Digest, Digest>>> = Rc::default();
    let colluders = colluders.to_vec();
    let second_half = {
        let colluders = colluders.clone();
        move |to: Addr| match to {
            Addr::Replica(r) if !colluders.contains(&r) => r.0 % 2 == 1,
            _ => false,
        }
    };
    colluders
        .iter()
        .map(|&id| {
            let signer = Signer::new(&keys[usize::from(id.0)]).expect("valid key");
            let forged = Rc::clone(&forged);
            let second_half = second_half.clone();
            let tamper =
                move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
                    let lie = if second_half(to) {
                        forge_for_second_half(&bytes, &signer, &forged)
                    } else {
                        None
                    };
                    out.push((to, lie.unwrap_or(bytes)));
                };
            (id, Box::new(tamper) as Box<dyn Tamper>)
        })
        .collect()
}

fn forge_for_second_half(
    bytes: &[u8],
    signer: &Signer,
    forged: &RefCell<HashMap<Digest, Digest>>,
) -> Option<Vec<u8>> {
    let swap = |digest: Digest| forged.borrow().get(&digest).copied();
    let msg = match wire::decode::<Message>(bytes).ok()? {
        Message::PrePrepare(pp, mut batch) if !batch.is_empty() => {
            batch.pop();
            let signed = resign(pp.payload, &batch, signer);
            forged
                .borrow_mut()
                .insert(pp.payload.digest, signed.payload.digest);
            Message::PrePrepare(signed, batch)
        }
        Message::Prepare(p) => {
            let mut payload = p.payload;
            payload.digest = swap(payload.digest)?;
            Message::Prepare(Signed::sign(payload, signer).ok()?)
        }
        Message::Commit(c) => {
            let mut payload = c.payload;
            payload.digest = swap(payload.digest)?;
            Message::Commit(Signed::sign(payload, signer).ok()?)
        }
        _ => return None,
    };
    wire::codec::encode_to_vec(&msg).ok()
}

/// A replica that lies in state transfer: every chunk it serves claims a
/// larger state and carries other bytes (the proof it sends no longer fits,
/// so only a replica that does not check chunks takes it).
pub fn forge_state() -> Box<dyn Tamper> {
    Box::new(
        move |rng: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
            let forged = match wire::decode::<Message>(&bytes) {
                Ok(Message::StateChunk(mut chunk)) => {
                    chunk.size = chunk.size.saturating_mul(2).saturating_add(1);
                    rng.fill(&mut chunk.data);
                    wire::codec::encode_to_vec(&Message::StateChunk(chunk)).ok()
                }
                _ => None,
            };
            out.push((to, forged.unwrap_or(bytes)));
        },
    )
}

/// PBFT's Byzantine behaviours for a seeded run, one drawn per replica:
/// mostly the protocol-aware adversary (with tactics drawn from the seed),
/// sometimes silence, garbage, a consistently equivocating primary, a
/// censor of one of the `clients`, or a liar in state transfer.
fn behaviour(
    keys: &[SecretKey],
    clients: u64,
    rng: &mut Rng,
    id: ReplicaId,
) -> (Box<dyn Tamper>, String) {
    let key = &keys[usize::from(id.0)];
    let n = keys.len();
    match rng.below(11) {
        0 => (Box::new(Byzantine::Silent), "silent".to_string()),
        1 => (Box::new(Byzantine::Garbage), "garbage".to_string()),
        2 => {
            let odd = rng.chance(0.5);
            let tamper = equivocate(key, move |to| match to {
                Addr::Replica(r) => (r.0 % 2 == 1) == odd,
                Addr::Client(_) => false,
            });
            (tamper, "equivocating primary".to_string())
        }
        3 => {
            let client = ClientId(rng.between(1, clients));
            (censor(client), format!("censoring client {}", client.0))
        }
        4 => (forge_state(), "forging state chunks".to_string()),
        _ => {
            let tactics = Tactics::draw(rng);
            (adversary(key, n, tactics), format!("adversary {tactics:?}"))
        }
    }
}

/// One random run of PBFT under `profile`: n = 4 mostly, sometimes 5, 6 or
/// 7 (so that quorums are tested where n ≠ 3f + 1); one to three clients
/// with 10 to 40 operations each, or, on a fifth of the seeds, five clients
/// with 50 operations each on three keys (linearizability with real
/// conflicts); on a third of the seeds a steady client that keeps issuing
/// operations until well past the liveness bound after the heal (so a group
/// that serves it and starves another client is caught); and one or two
/// clients joining late, around the heal. Faults as the profile draws them (see
/// [`faults`]). The run ends when every client is done, or when an
/// operation has waited [`LIVENESS_BOUND`] past the later of its start and
/// the last heal.
pub fn random_run(seed: u64, profile: Profile, trace: bool) -> Simulated {
    let mut rng = Rng::new(seed ^ 0x0BF7_5EED_FA17);
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
        amnesia: true,
        durable: false,
    };
    let f = config.f;
    let mut behaviours = |rng: &mut Rng, id| behaviour(&keys, clients, rng, id);
    let mut collusion = |rng: &mut Rng| {
        let mut colluders = vec![ReplicaId(0)];
        while colluders.len() < f + 1 {
            let id = ReplicaId(rng.between(1, n as u64 - 1) as u8);
            if !colluders.contains(&id) {
                colluders.push(id);
            }
        }
        collude(&keys, &colluders)
    };
    let adversaries = Adversaries {
        byzantine: Some(&mut behaviours),
        collusion: Some(&mut collusion),
    };
    let plan = faults::schedule(&mut sim, &mut rng, profile, &group, adversaries);
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
        slack: crate::pbft::LOG_MAX,
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
