//! What a node runs: its configuration, the bounds on every count, id,
//! size, rate and time in it, and their checks.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::codec::MESSAGE_SIZE_MAX;
use crate::crypto::{PublicKey, SecretKey};
use crate::registry::ProtocolSpec;

/// Largest operation a workload may ask for. A request carries its operation
/// plus the protocol's headers (and, for signed protocols, a signature) in one
/// datagram of at most [`MESSAGE_SIZE_MAX`] bytes; 1 KiB is left for those.
pub const OP_SIZE_MAX: usize = MESSAGE_SIZE_MAX - 1024;

/// Largest value of a key-value workload: an encoded `Put` is the value plus
/// the key (`k` and up to 20 digits), a variant tag and two length prefixes.
pub const KV_VALUE_SIZE_MAX: usize = OP_SIZE_MAX - 64;

/// Most keys a Zipf-distributed workload may draw from. Clients sample it by
/// binary search over a precomputed table of one `f64` per key (32 MiB here).
pub const ZIPF_KEYS_MAX: u64 = 1 << 22;

/// Largest reply a null operation may ask for: with a protocol's header
/// and authenticator it fits a datagram.
pub const REPLY_SIZE_MAX: usize = 32 * 1024;

/// Bytes at the start of a null operation that say how long its reply is.
pub const NULL_OP_HEADER: usize = 4;

/// A null operation of `op_size` bytes asking for a reply of `reply_size`
/// bytes: the size, little endian, in its first [`NULL_OP_HEADER`] bytes
/// (when it asks for one), zeros after.
pub fn null_op(op_size: usize, reply_size: u32) -> Vec<u8> {
    let mut op = vec![0; op_size];
    if reply_size > 0 && op_size >= NULL_OP_HEADER {
        op[..NULL_OP_HEADER].copy_from_slice(&reply_size.to_le_bytes());
    }
    op
}

/// How long a reply the null operation `op` asks for: what [`null_op`]
/// wrote, at most [`REPLY_SIZE_MAX`] whatever a client wrote; 0 for an
/// operation too short to say.
pub fn null_reply_size(op: &[u8]) -> usize {
    match op.first_chunk::<NULL_OP_HEADER>() {
        Some(header) => (u32::from_le_bytes(*header) as usize).min(REPLY_SIZE_MAX),
        None => 0,
    }
}

/// Most nodes a configuration's `replicas` names, replicas and services
/// together (no protocol here runs more; PBFT's own bound is lower).
pub const REPLICAS_MAX: usize = 32;

/// Most tunables one configuration sets.
pub const SETTINGS_MAX: usize = 64;

/// Most clients one clients node runs.
pub const CLIENTS_MAX: u32 = 100_000;

/// Most client threads in one clients node.
pub const CLIENT_THREADS_MAX: u32 = 64;

/// Most threads in a replica's thread map.
pub const THREADS_MAX: usize = 64;

/// Highest core id a thread may be pinned to: pinning takes a CPU set of
/// 1024 cores (`CPU_SETSIZE`). A core the host does not have is an error when
/// the thread starts.
pub const CORE_ID_MAX: u32 = 1023;

/// Longest report interval, resend interval, warm-up and measured window.
pub const INTERVAL_MS_MAX: u64 = 3_600_000;

/// Highest open-loop rate, operations per second.
pub const OPEN_RATE_MAX: u64 = 100_000_000;

/// Longest client key seed.
pub const KEY_SEED_MAX: usize = 1024;

/// Longest spin of [`Idle::SpinThenBlock`], in microseconds (one second; a
/// longer spin is a busy thread by another name).
pub const SPIN_US_MAX: u32 = 1_000_000;

/// Everything a node needs to run. Carries the node's own secret key only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Protocol name, as `node sim --protocol` takes it (`unreplicated`).
    pub protocol: String,
    pub role: Role,
    /// UDP address of node `i`, for every node of the protocol's group: its
    /// replicas, then the services it runs beside them (chain replication's
    /// master), which [`crate::registry::ProtocolSpec::services`] names. A
    /// node's own entry may have port 0 (the kernel picks one;
    /// [`Started::addrs`](super::Started::addrs) says which); every other
    /// entry must be an address a peer can send to.
    pub replicas: Vec<SocketAddr>,
    /// Public key of node `i`, for every node `replicas` lists, services
    /// too; empty for protocols that do not sign.
    pub public_keys: Vec<PublicKey>,
    /// This node's own secret key, for protocols that sign.
    pub secret_key: Option<SecretKey>,
    pub app: AppConfig,
    /// The replica's stages on threads and cores. Not used by clients (their
    /// threads and cores are in [`ClientsConfig`]), nor when `share` is set.
    pub threads: ThreadMap,
    /// This node's part of its host's cores, when the node is to derive its
    /// threads itself ([`crate::control::CoreShare`]): a replica its thread
    /// map ([`ThreadMap::derive`]), a clients node its threads and their
    /// cores ([`crate::control::client_threads`]), in place of `threads` and
    /// of [`ClientsConfig::threads`] and [`ClientsConfig::cores`]. Absent:
    /// those are used as given.
    #[serde(default)]
    pub share: Option<super::CoreShare>,
    pub idle: Idle,
    pub transport: TransportKind,
    /// How often the node sends an [`Event::Interval`](super::Event::Interval).
    pub report_interval_ms: u64,
    /// The protocol's tunables this run changes, by name (see
    /// [`crate::registry`]); every other keeps its default. At most
    /// [`SETTINGS_MAX`].
    #[serde(default)]
    pub settings: Vec<(String, u64)>,
    /// How a replica keeps what its protocol persists.
    #[serde(default)]
    pub durable: DurableConfig,
    /// What the node's transports emulate on every link they send on (user
    /// space WAN emulation); absent: nothing.
    #[serde(default)]
    pub link: super::LinkEmulation,
}

/// How a replica keeps its durable state (what the protocol persists to
/// survive a crash): a file in the node's run directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DurableConfig {
    /// `fsync` each batch of writes before the messages behind it leave.
    /// Off is faster and not crash-safe: a machine that loses power may
    /// lose writes the protocol counted on.
    pub fsync: bool,
    /// Replay the state file an earlier run of this replica left (a
    /// restart). Off, the replica starts from nothing and the file is
    /// truncated.
    pub recover: bool,
}

impl Default for DurableConfig {
    fn default() -> DurableConfig {
        DurableConfig {
            fsync: true,
            recover: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Role {
    /// Node `id` of the protocol's group, bound to `replicas[id]`: a
    /// replica, or past the replicas one of the protocol's services (which
    /// the node program starts the same way; the protocol decides what runs
    /// there).
    Replica { id: u8 },
    /// A set of benchmark clients multiplexed on client threads.
    Clients(ClientsConfig),
}

/// "replica 0", "clients 0..100": what a node is, for messages.
impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Replica { id } => write!(f, "replica {id}"),
            Role::Clients(c) => write!(
                f,
                "clients {}..{}",
                c.first_id,
                c.first_id.saturating_add(u64::from(c.count))
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientsConfig {
    /// Client ids `first_id .. first_id + count`; unique across the run.
    pub first_id: u64,
    pub count: u32,
    /// Client threads; the clients are spread evenly over them, one socket
    /// each.
    pub threads: u32,
    /// Cores to pin the client threads to, round robin; empty: unpinned.
    pub cores: Vec<u32>,
    /// Address to bind client sockets to (port 0: any).
    pub bind: IpAddr,
    pub load: Load,
    pub workload: Workload,
    /// Client retransmission interval.
    pub resend_ms: u64,
    /// Operations completed in the first `warmup_ms` are not counted in the
    /// final latency histogram.
    pub warmup_ms: u64,
    /// Operations invoked more than `measure_ms` after the warm-up are not
    /// measured either (cool-down). Absent: measure until stopped.
    #[serde(default)]
    pub measure_ms: Option<u64>,
    /// Seed of the clients' key pairs, for protocols whose replicas MAC
    /// replies under keys they share with each client (PBFT). The runner
    /// draws a fresh one per point.
    #[serde(default, with = "serde_bytes")]
    pub key_seed: Vec<u8>,
    /// An operation that takes longer than this is slow: each interval
    /// report counts them ([`IntervalReport::slow_ops`](super::IntervalReport::slow_ops)).
    /// Absent: [`SLOW_OP_MS_DEFAULT`].
    #[serde(default = "slow_op_ms_default")]
    pub slow_op_ms: u64,
}

/// [`ClientsConfig::slow_op_ms`] when a configuration does not say.
pub const SLOW_OP_MS_DEFAULT: u64 = 100;

fn slow_op_ms_default() -> u64 {
    SLOW_OP_MS_DEFAULT
}

/// How clients offer load.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Load {
    /// Each client issues its next operation as soon as the previous one
    /// completes; latency is measured from that invocation.
    Closed,
    /// The clients together offer `ops_per_sec`, whatever the system does
    /// with it: each client thread draws its share of the arrivals from a
    /// schedule ([`Arrivals`]) and hands each to an idle client. Latency is
    /// measured from an operation's scheduled arrival, not from when it was
    /// sent, so time spent waiting for a client counts (no coordinated
    /// omission). An arrival that finds no idle client waits in a bounded
    /// backlog (as many arrivals as the thread has clients) for the next one
    /// to free; one that finds the backlog full, or is still in it at stop,
    /// is never sent and is counted in [`OPEN_LOOP_NO_FREE_CLIENT_COUNTER`](super::OPEN_LOOP_NO_FREE_CLIENT_COUNTER).
    Open {
        ops_per_sec: u64,
        /// Absent (configurations from before it existed): Poisson.
        #[serde(default)]
        arrivals: Arrivals,
    },
}

/// When an open loop's arrivals are due. Either way the times come from a
/// schedule (each arrival's time is the previous one's plus a gap), never
/// from when a client thread happened to look: a thread that falls behind
/// (a slow round, a descheduled core) sends or counts every arrival it
/// missed, each with its own scheduled time, so a stall does not lower the
/// offered rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arrivals {
    /// A Poisson process: exponentially distributed gaps with mean
    /// `threads / ops_per_sec`, drawn from each client thread's own seeded
    /// generator, so a run's arrival times replay exactly. Independent
    /// arrivals, bursts included: the usual model of many independent users.
    #[default]
    Poisson,
    /// Evenly spaced: exactly `threads / ops_per_sec` apart on each client
    /// thread.
    Fixed,
}

impl Arrivals {
    /// The name `--arrivals` takes and [`FromStr`](std::str::FromStr) reads.
    pub fn name(self) -> &'static str {
        match self {
            Arrivals::Poisson => "poisson",
            Arrivals::Fixed => "fixed",
        }
    }
}

impl fmt::Display for Arrivals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arrivals {
    type Err = String;

    fn from_str(s: &str) -> Result<Arrivals, String> {
        [Arrivals::Poisson, Arrivals::Fixed]
            .into_iter()
            .find(|arrivals| arrivals.name() == s)
            .ok_or_else(|| format!("{s:?}: expected `poisson` or `fixed`"))
    }
}

/// What operations clients issue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Workload {
    /// Opaque operations of `op_size` bytes for the null application, each
    /// asking for a reply of `reply_size` bytes ([`null_op`]).
    Null {
        op_size: u32,
        #[serde(default)]
        reply_size: u32,
    },
    /// Key-value operations.
    Kv(KvWorkload),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvWorkload {
    /// Keys `k0 .. k<keys - 1>`.
    pub keys: u64,
    pub value_size: u32,
    /// Fraction of gets, `0.0..=1.0`; the rest are puts.
    pub read_ratio: f64,
    pub distribution: KeyDistribution,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyDistribution {
    Uniform,
    /// Key `k<i>` drawn with probability proportional to `1 / (i + 1)^exponent`.
    Zipf {
        exponent: f64,
    },
}

/// The application replicas run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppConfig {
    Null,
    Kv,
}

/// A stage of a replica's pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Reads datagrams from the replica's socket.
    Receive,
    /// Decodes and verifies (the protocol's `SharedState::decode`). May run on
    /// several threads.
    Verify,
    /// The protocol's `State`. Exactly one thread.
    Protocol,
    /// Encodes, signs and sends (`SharedState::encode`). May run on several
    /// threads.
    Send,
}

/// Which stages run on which threads, and where those threads run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMap {
    pub threads: Vec<ThreadSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSpec {
    pub stages: Vec<Stage>,
    /// Absolute core id to pin to; `None` leaves the thread to the scheduler.
    pub core: Option<u32>,
}

impl ThreadMap {
    /// Every stage on one thread.
    pub fn single(core: Option<u32>) -> ThreadMap {
        ThreadMap {
            threads: vec![ThreadSpec {
                stages: vec![Stage::Receive, Stage::Verify, Stage::Protocol, Stage::Send],
                core,
            }],
        }
    }

    /// One thread per stage, unpinned.
    pub fn per_stage() -> ThreadMap {
        ThreadMap {
            threads: [Stage::Receive, Stage::Verify, Stage::Protocol, Stage::Send]
                .into_iter()
                .map(|stage| ThreadSpec {
                    stages: vec![stage],
                    core: None,
                })
                .collect(),
        }
    }

    /// Checks the map can run: every stage somewhere, `Receive` and `Protocol`
    /// exactly once, no thread without stages.
    pub fn validate(&self) -> Result<(), String> {
        /// Receive, Verify, Protocol, Send.
        const STAGES: usize = 4;
        let count = |stage: Stage| {
            self.threads
                .iter()
                .flat_map(|t| &t.stages)
                .filter(|&&s| s == stage)
                .count()
        };
        if let Some(i) = self.threads.iter().position(|t| t.stages.is_empty()) {
            return Err(format!("thread {i} has no stages"));
        }
        for (i, thread) in self.threads.iter().enumerate() {
            if thread.stages.len() > STAGES {
                return Err(format!(
                    "thread {i} lists {} stages; there are {STAGES}",
                    thread.stages.len()
                ));
            }
            for (j, stage) in thread.stages.iter().enumerate() {
                if thread.stages[..j].contains(stage) {
                    return Err(format!("thread {i} lists {stage:?} twice"));
                }
            }
        }
        for stage in [Stage::Receive, Stage::Protocol] {
            if count(stage) != 1 {
                return Err(format!("{stage:?} must run on exactly one thread"));
            }
        }
        for stage in [Stage::Verify, Stage::Send] {
            if count(stage) == 0 {
                return Err(format!("{stage:?} must run on at least one thread"));
            }
        }
        Ok(())
    }
}

/// What a thread does when it finds no work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Idle {
    /// Poll again at once: lowest latency, a core per thread.
    Busy,
    /// Poll for `spin_us` microseconds, then block until there is work or a
    /// timer is due. For when threads outnumber cores.
    SpinThenBlock { spin_us: u32 },
}

/// The UDP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransportKind {
    /// io_uring where the kernel supports it, else epoll.
    Auto,
    IoUring,
    Epoll,
}

impl NodeConfig {
    /// What this node is, for messages: its role ("replica 0", "clients
    /// 0..100"), or for a service node the service and its id ("master
    /// (node 2)").
    pub fn node_name(&self) -> String {
        self.node_name_in(crate::registry::find(&self.protocol))
    }

    /// [`NodeConfig::node_name`] for a node of the protocol `spec` describes.
    pub(crate) fn node_name_in(&self, spec: Option<&ProtocolSpec>) -> String {
        let service = match (&self.role, spec) {
            (Role::Replica { id }, Some(spec)) => spec
                .service_at(self.replicas.len(), usize::from(*id))
                .map(|service| format!("{service} (node {id})")),
            _ => None,
        };
        service.unwrap_or_else(|| self.role.to_string())
    }

    /// Checks everything about the configuration a node can check before
    /// it builds the protocol: node addresses and keys line up, the role's
    /// numbers are in range, the thread map can run, the workload fits in a
    /// datagram; then, against the protocol's entry in [`crate::registry`],
    /// that the protocol exists, runs a group of this size (its replicas
    /// and then its services, [`ProtocolSpec::check_nodes`]), has the keys
    /// it needs, and that every setting names one of its tunables within
    /// its bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_with(crate::registry::lookup(&self.protocol))
    }

    /// [`NodeConfig::validate`] with the protocol's entry given (or why
    /// there is none), so that tests can check groups no registered
    /// protocol runs.
    pub(crate) fn validate_with(
        &self,
        spec: Result<&'static ProtocolSpec, String>,
    ) -> Result<(), ConfigError> {
        let nodes = self.replicas.len();
        if nodes == 0 {
            return Err(ConfigError::NoReplicas);
        }
        if nodes > REPLICAS_MAX {
            return Err(ConfigError::TooManyReplicas { count: nodes });
        }
        if !self.public_keys.is_empty() && self.public_keys.len() != nodes {
            return Err(ConfigError::PublicKeys {
                keys: self.public_keys.len(),
                nodes,
            });
        }
        if self.report_interval_ms == 0 {
            return Err(ConfigError::ReportInterval);
        }
        at_most(
            "the count of settings",
            self.settings.len() as u64,
            SETTINGS_MAX as u64,
        )?;
        at_most(
            "report_interval_ms",
            self.report_interval_ms,
            INTERVAL_MS_MAX,
        )?;
        self.link.validate().map_err(ConfigError::Link)?;
        if let Idle::SpinThenBlock { spin_us } = self.idle {
            at_most("idle: spin_us", spin_us.into(), SPIN_US_MAX.into())?;
        }
        if let Some(share) = &self.share {
            share.validate().map_err(ConfigError::ThreadMap)?;
            at_most("core share: of", share.of.into(), REPLICAS_MAX as u64 + 1)?;
        }
        // Bounded for clients too, who do not use the map.
        at_most(
            "the thread map's thread count",
            self.threads.threads.len() as u64,
            THREADS_MAX as u64,
        )?;
        let own = match &self.role {
            Role::Replica { id } => {
                if usize::from(*id) >= nodes {
                    return Err(ConfigError::ReplicaIdOutOfRange { id: *id, nodes });
                }
                self.threads.validate().map_err(ConfigError::ThreadMap)?;
                for core in self.threads.threads.iter().filter_map(|t| t.core) {
                    at_most("a thread's core", core.into(), CORE_ID_MAX.into())?;
                }
                Some(usize::from(*id))
            }
            Role::Clients(clients) => {
                clients.validate(&self.replicas)?;
                None
            }
        };
        let mut seen = HashSet::with_capacity(nodes);
        for (index, addr) in self.replicas.iter().enumerate() {
            if Some(index) != own {
                if addr.port() == 0 {
                    return Err(ConfigError::ReplicaAddr {
                        index,
                        addr: *addr,
                        problem: "port 0 (only a replica's own address may leave the port to the kernel)",
                    });
                }
                if addr.ip().is_unspecified() {
                    return Err(ConfigError::ReplicaAddr {
                        index,
                        addr: *addr,
                        problem: "unspecified IP (only a replica's own address may be a wildcard)",
                    });
                }
            }
            if !seen.insert(*addr) {
                let first = self.replicas.iter().position(|a| a == addr).unwrap_or(0);
                return Err(ConfigError::DuplicateReplicaAddr {
                    first,
                    second: index,
                    addr: *addr,
                });
            }
        }
        // Last: what the protocol itself asks of the group and the settings.
        let spec = spec.map_err(ConfigError::Protocol)?;
        spec.check_nodes(nodes).map_err(ConfigError::Protocol)?;
        if spec.signs && self.public_keys.len() != nodes {
            return Err(ConfigError::PublicKeys {
                keys: self.public_keys.len(),
                nodes,
            });
        }
        spec.settings(&self.settings)
            .map_err(|problems| ConfigError::Protocol(problems.join("; ")))?;
        Ok(())
    }
}

impl ClientsConfig {
    fn validate(&self, replicas: &[SocketAddr]) -> Result<(), ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::NoClients);
        }
        at_most("clients: count", self.count.into(), CLIENTS_MAX.into())?;
        if self.threads == 0 {
            return Err(ConfigError::NoClientThreads);
        }
        at_most(
            "clients: cores listed",
            self.cores.len() as u64,
            CLIENT_THREADS_MAX.into(),
        )?;
        for &core in &self.cores {
            at_most("clients: a core", core.into(), CORE_ID_MAX.into())?;
        }
        at_most("clients: resend_ms", self.resend_ms, INTERVAL_MS_MAX)?;
        at_most("clients: warmup_ms", self.warmup_ms, INTERVAL_MS_MAX)?;
        at_most("clients: slow_op_ms", self.slow_op_ms, INTERVAL_MS_MAX)?;
        if let Some(measure) = self.measure_ms {
            at_most("clients: measure_ms", measure, INTERVAL_MS_MAX)?;
        }
        at_most(
            "clients: key_seed bytes",
            self.key_seed.len() as u64,
            KEY_SEED_MAX as u64,
        )?;
        if let Load::Open { ops_per_sec, .. } = self.load {
            at_most("clients: ops_per_sec", ops_per_sec, OPEN_RATE_MAX)?;
        }
        if self.threads > self.count {
            return Err(ConfigError::ClientThreads {
                threads: self.threads,
                count: self.count,
            });
        }
        at_most(
            "clients: threads",
            self.threads.into(),
            CLIENT_THREADS_MAX.into(),
        )?;
        if self.first_id.checked_add(u64::from(self.count)).is_none() {
            return Err(ConfigError::ClientIds {
                first_id: self.first_id,
                count: self.count,
            });
        }
        if self.resend_ms == 0 {
            return Err(ConfigError::ResendInterval);
        }
        if let Load::Open { ops_per_sec: 0, .. } = self.load {
            return Err(ConfigError::OpenLoad);
        }
        if let Some(replica) = replicas.iter().find(|r| r.is_ipv4() != self.bind.is_ipv4()) {
            return Err(ConfigError::BindFamily {
                bind: self.bind,
                replica: *replica,
            });
        }
        self.workload.validate()
    }
}

impl Workload {
    fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every reason the workload cannot run, in order; empty if it can. The
    /// runner checks an experiment's workload with this before any node
    /// starts, so the rules live here only.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        match self {
            Workload::Null {
                op_size,
                reply_size,
            } => {
                if *op_size as usize > OP_SIZE_MAX {
                    problems.push(ConfigError::OpSize {
                        size: *op_size,
                        max: OP_SIZE_MAX,
                    });
                }
                if *reply_size as usize > REPLY_SIZE_MAX {
                    problems.push(ConfigError::ReplySize {
                        size: *reply_size,
                        max: REPLY_SIZE_MAX,
                    });
                }
                if *reply_size > 0 && (*op_size as usize) < NULL_OP_HEADER {
                    problems.push(ConfigError::ReplySizeNeedsOp { op_size: *op_size });
                }
            }
            Workload::Kv(kv) => {
                if kv.keys == 0 {
                    problems.push(ConfigError::NoKeys);
                }
                if kv.value_size as usize > KV_VALUE_SIZE_MAX {
                    problems.push(ConfigError::ValueSize {
                        size: kv.value_size,
                        max: KV_VALUE_SIZE_MAX,
                    });
                }
                if !(0.0..=1.0).contains(&kv.read_ratio) {
                    problems.push(ConfigError::ReadRatio(kv.read_ratio));
                }
                if let KeyDistribution::Zipf { exponent } = kv.distribution {
                    if !exponent.is_finite() || exponent < 0.0 {
                        problems.push(ConfigError::ZipfExponent(exponent));
                    }
                    if kv.keys > ZIPF_KEYS_MAX {
                        problems.push(ConfigError::ZipfKeys {
                            keys: kv.keys,
                            max: ZIPF_KEYS_MAX,
                        });
                    }
                }
            }
        }
        problems
    }
}

/// `value` of `what`, unless it is above `max`.
fn at_most(what: &'static str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value > max {
        return Err(ConfigError::TooLarge { what, value, max });
    }
    Ok(())
}

/// Why a [`NodeConfig`] cannot run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// An unknown protocol, a group it does not run, or settings out of its
    /// bounds ([`crate::registry`]).
    #[error("{0}")]
    Protocol(String),
    #[error("no replica addresses (`replicas` is empty)")]
    NoReplicas,
    #[error("`replicas` names {count} nodes: at most {REPLICAS_MAX}")]
    TooManyReplicas { count: usize },
    #[error("{what} is {value}; at most {max}")]
    TooLarge {
        what: &'static str,
        value: u64,
        max: u64,
    },
    #[error("replica id {id} is out of range: `replicas` names {nodes} node(s)")]
    ReplicaIdOutOfRange { id: u8, nodes: usize },
    #[error("replica {index} address {addr}: {problem}")]
    ReplicaAddr {
        index: usize,
        addr: SocketAddr,
        problem: &'static str,
    },
    #[error("replicas {first} and {second} have the same address {addr}")]
    DuplicateReplicaAddr {
        first: usize,
        second: usize,
        addr: SocketAddr,
    },
    #[error("{keys} public keys for {nodes} node(s) in `replicas`: give one per node, or none")]
    PublicKeys { keys: usize, nodes: usize },
    #[error("report_interval_ms is 0; it must be positive")]
    ReportInterval,
    /// The emulated links' values out of bounds.
    #[error("{0}")]
    Link(String),
    #[error("thread map: {0}")]
    ThreadMap(String),
    #[error("clients: count is 0; it must be positive")]
    NoClients,
    #[error("clients: threads is 0; it must be positive")]
    NoClientThreads,
    #[error("clients: {threads} threads for {count} clients; at most one thread per client")]
    ClientThreads { threads: u32, count: u32 },
    #[error("clients: ids {first_id} + {count} overflow u64")]
    ClientIds { first_id: u64, count: u32 },
    #[error("clients: resend_ms is 0; it must be positive")]
    ResendInterval,
    #[error("clients: an open load of 0 ops/s; it must be positive")]
    OpenLoad,
    #[error("clients: bind address {bind} cannot reach replica {replica} (another address family)")]
    BindFamily { bind: IpAddr, replica: SocketAddr },
    #[error("workload: op_size {size} exceeds the maximum of {max} bytes")]
    OpSize { size: u32, max: usize },
    #[error("workload: reply_size {size} exceeds the maximum of {max} bytes")]
    ReplySize { size: u32, max: usize },
    #[error(
        "workload: a reply_size needs operations of at least 4 bytes to carry it, not {op_size}"
    )]
    ReplySizeNeedsOp { op_size: u32 },
    #[error("workload: keys is 0; it must be positive")]
    NoKeys,
    #[error("workload: value_size {size} exceeds the maximum of {max} bytes")]
    ValueSize { size: u32, max: usize },
    #[error("workload: read_ratio {0} is not within 0..=1")]
    ReadRatio(f64),
    #[error("workload: Zipf exponent {0} must be finite and non-negative")]
    ZipfExponent(f64),
    #[error("workload: {keys} keys exceed the maximum of {max} for a Zipf distribution")]
    ZipfKeys { keys: u64, max: u64 },
}
