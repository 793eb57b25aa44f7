//! The one list of protocol implementations, and what a protocol provides to
//! be run: `node serve`, `node sim`, [`crate::simulate::run_seed`] and the
//! benches dispatch through it and name no protocol themselves.
//!
//! A protocol is a value of a type implementing [`Kit`]: its entry in the
//! wire registry ([`wire::registry::ProtocolSpec`]: name, replica rule,
//! services, tunables), how to start its replicas (and services) and its
//! clients on the real runtime, and its seeded run in the simulator. [`ALL`] lists them in the order of
//! [`wire::registry::PROTOCOLS`] (a test keeps the two in step), so adding a
//! protocol is its folder, its spec beside its messages, and one line in
//! each list. Its planted bugs ([`crate::planted`]) come with it, through
//! [`Kit::planted`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use runtime::deploy::faults::DeployTamper;
use runtime::deploy::{ClientsSetup, DurableSetup, OpFactory, ReplicaSetup, Running};
use wire::control::NodeConfig;
use wire::registry::{ProtocolSpec, Settings};
use wire::{ReplicaId, SecretKey};

use crate::app::App;
use crate::planted::Bug;
use crate::simulate::{ExecutionLog, Profile, Simulated};
use runtime::sim::Simulator;

/// Every protocol, in the order of [`wire::registry::PROTOCOLS`].
pub const ALL: &[Protocol] = &[
    crate::unreplicated::PROTOCOL,
    crate::pbft::PROTOCOL,
    crate::chain::PROTOCOL,
    crate::hotstuff::PROTOCOL,
    crate::vr::PROTOCOL,
];

/// The protocol every other is compared to.
pub const BASELINE: Protocol = ALL[0];

/// What a protocol provides to be run.
pub trait Kit: Sync {
    /// Its entry in the wire registry.
    fn spec(&self) -> &'static ProtocolSpec;

    /// Starts one node of the group `config` describes on the real runtime
    /// (`config` has been validated against [`Kit::spec`]).
    ///
    /// The group is the replicas and then the protocol's services
    /// ([`ProtocolSpec::services`]: chain replication's master), and
    /// `config.replicas` lists every node's address in that order. A service
    /// node comes here as a [`Start::Replica`] with its node id (`n + j` for
    /// service `j` of `n` replicas; [`ProtocolSpec::service_at`] says which
    /// service an id is), and the protocol decides what runs there. Its
    /// address is in the setup's list like a replica's, so on the real
    /// runtime `Dest::Replicas` reaches the services too.
    fn start(
        &self,
        config: &NodeConfig,
        settings: &Settings,
        node: Start,
    ) -> Result<Running, String>;

    /// Simulates one seed under `profile` (resolved: not `Mix`), keeping a
    /// timeline if `trace`; [`crate::simulate::simulate`] checks it.
    fn random_run(&self, seed: u64, profile: Profile, trace: bool) -> Simulated;

    /// A fixed, fault-free system of `clients` closed-loop clients with
    /// `ops` operations each over a reliable network, built and not yet run,
    /// for measuring the protocol's own cost (instruction counts):
    /// deterministic, the same work every time, with simulated keys (so the
    /// count is the protocol's and the framework's, not secp256k1's).
    fn fixed_system(&self, clients: u64, ops: u64) -> (Simulator, ExecutionLog);

    /// The bugs it can have put back ([`crate::planted`]), each declared
    /// as a constant in its module; none by default.
    fn planted(&self) -> &'static [Bug] {
        &[]
    }

    /// The fixed parameters a replica runs with beyond its tunables, name and
    /// value, for the record of a run.
    fn constants(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The protocol-aware Byzantine behaviour of replica `config.role` on
    /// the real runtime, an equivocator: the simulator's
    /// [`runtime::sim::Adversary`] over the protocol's messages, signing
    /// with the replica's own key, sending each destination its own
    /// rewritten version of every message. `None` (the default) for a
    /// protocol that does not tolerate Byzantine replicas or has no field
    /// descriptions. Behaviours that know nothing of the protocol (mute,
    /// corrupt, replay) are the runtime's
    /// ([`runtime::deploy::faults::tamper_for`]).
    fn equivocator(&self, config: &NodeConfig) -> Option<DeployTamper> {
        let _ = config;
        None
    }
}

/// What one node of a run is, with what it needs from the node program.
pub enum Start {
    /// A replica, or a service node (an id past the replicas').
    Replica {
        id: ReplicaId,
        /// Its secret key, for protocols that sign.
        secret_key: Option<SecretKey>,
        app: Box<dyn App>,
        setup: ReplicaSetup,
        /// Where it keeps what it persists (`None`: in memory only).
        durable: Option<DurableSetup>,
    },
    Clients {
        /// How long a client waits before it first retransmits.
        resend: Duration,
        /// Seed of the clients' key pairs, for protocols that authenticate
        /// clients.
        key_seed: Vec<u8>,
        ops: OpFactory,
        setup: ClientsSetup,
    },
}

impl fmt::Debug for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Start::Replica { id, .. } => write!(f, "Start::Replica({})", id.0),
            Start::Clients { setup, .. } => write!(f, "Start::Clients({})", setup.count),
        }
    }
}

/// A protocol of the registry.
#[derive(Clone, Copy)]
pub struct Protocol(&'static dyn Kit);

impl Protocol {
    /// The protocol `kit` implements (each protocol module has its own as
    /// `PROTOCOL`).
    pub const fn new(kit: &'static dyn Kit) -> Protocol {
        Protocol(kit)
    }

    /// The protocol named `name`, if there is one.
    pub fn find(name: &str) -> Option<Protocol> {
        ALL.iter().copied().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        self.0.spec().name
    }

    pub fn spec(self) -> &'static ProtocolSpec {
        self.0.spec()
    }

    pub fn kit(self) -> &'static dyn Kit {
        self.0
    }

    /// The bugs it can have planted ([`Kit::planted`]).
    pub fn planted(self) -> &'static [Bug] {
        self.0.planted()
    }

    /// Every value a replica runs with: its tunables as `settings` set them,
    /// then its fixed parameters, for the record of a run.
    pub fn parameters(self, settings: &Settings) -> Vec<(String, String)> {
        let mut parameters = settings.record();
        parameters.extend(
            self.0
                .constants()
                .into_iter()
                .map(|(name, value)| (name.to_string(), value)),
        );
        parameters
    }
}

impl PartialEq for Protocol {
    fn eq(&self, other: &Protocol) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Protocol {}

impl std::hash::Hash for Protocol {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Protocol, String> {
        Protocol::find(s)
            .ok_or_else(|| format!("unknown protocol {s:?}; known: {}", wire::registry::names()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_implementations_follow_the_wire_registry() {
        let ours: Vec<_> = ALL.iter().map(|p| p.name()).collect();
        let wire: Vec<_> = wire::registry::PROTOCOLS.iter().map(|s| s.name).collect();
        assert_eq!(ours, wire);
        for (protocol, spec) in ALL.iter().zip(wire::registry::PROTOCOLS) {
            assert_eq!(protocol.spec().name, spec.name);
            assert_eq!(protocol.spec().tunable_names(), spec.tunable_names());
        }
        assert_eq!(BASELINE.spec().name, wire::registry::BASELINE.name);
        assert_eq!("pbft".parse::<Protocol>().unwrap().name(), "pbft");
        assert!(
            "raft"
                .parse::<Protocol>()
                .unwrap_err()
                .contains("known: unreplicated, pbft")
        );
    }

    /// Every protocol's fixed run completes all its operations, and its
    /// outcome passes the checkers.
    #[test]
    fn fixed_runs_complete_and_check() {
        for protocol in ALL {
            let (mut sim, log) = protocol.kit().fixed_system(3, 10);
            assert!(sim.run_until_clients_done(runtime::Time::ZERO + Duration::from_secs(60)));
            assert_eq!(sim.ops_completed(), 30, "{protocol}");
            crate::simulate::check(&sim, &log).unwrap();
        }
    }
}
