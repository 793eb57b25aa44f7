//! Seeded simulation of whole systems, with faults and checkers.
//!
//! [`run_seed`] is the entry point that `node sim`, the runner and the tests
//! share: it builds a system of the chosen protocol with a key-value
//! application, draws a workload and a fault plan from the seed, runs it in the
//! [`runtime::sim::Simulator`], and judges the outcome with checkers that look
//! only at what clients and the application saw:
//!
//! - liveness: every client that did not crash completed all its operations
//!   within the time bound;
//! - linearizability of the clients' history ([`runtime::check::linearizability`]);
//! - agreement: replicas executed the same operation at every slot
//!   ([`runtime::check::agreement`]).
//!
//! The building blocks ([`KvWorkload`], [`ExecutionLog`], [`check`]) are public
//! so that scenario tests can script their own runs.

pub mod unreplicated;

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use runtime::check::{agreement, linearizability};
use runtime::sim::Simulator;
use runtime::{ClientId, ReplicaId, Rng};
use wire::Digest;
use wire::kv::Op;
use wire::sim::SeedReport;

use crate::app::App;

/// A protocol the simulator can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Unreplicated,
}

impl Protocol {
    pub const ALL: &[Protocol] = &[Protocol::Unreplicated];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Unreplicated => "unreplicated",
        }
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
        Protocol::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Protocol::ALL.iter().map(|p| p.name()).collect();
                format!("unknown protocol {s:?}; known: {}", names.join(", "))
            })
    }
}

/// The command that replays one seed.
pub fn replay_command(protocol: Protocol, seed: u64) -> String {
    format!("cargo run --release -p runner -- sim --protocol {protocol} --seed {seed}")
}

/// Simulates `protocol` under faults drawn from `seed` and checks the outcome.
/// Deterministic: the same seed always gives the same report, but for
/// `wall_ns`.
pub fn run_seed(protocol: Protocol, seed: u64) -> SeedReport {
    let started = Instant::now();
    let (sim, log) = match protocol {
        Protocol::Unreplicated => unreplicated::random_run(seed),
    };
    let failure = check(&sim, &log).err();
    SeedReport {
        protocol: protocol.name().to_string(),
        seed,
        passed: failure.is_none(),
        failure,
        ops_completed: sim.ops_completed(),
        deliveries: sim.deliveries(),
        faults: sim.faults(),
        simulated_ns: sim.now().as_nanos(),
        wall_ns: started.elapsed().as_nanos() as u64,
        trace_hash: format!("{:016x}", sim.trace_hash()),
    }
}

/// Runs every checker on a finished run; the first failure, described.
pub fn check(sim: &Simulator, log: &ExecutionLog) -> Result<(), String> {
    if let Some(op) = sim
        .history()
        .iter()
        .find(|op| op.completed.is_none() && sim.is_running(runtime::Addr::Client(op.client)))
    {
        return Err(format!(
            "liveness: client {} invoked an operation at {} that had not completed at {}",
            op.client.0,
            op.invoked,
            sim.now()
        ));
    }
    linearizability::check_kv(sim.history()).map_err(|v| format!("linearizability: {v}"))?;
    agreement::check_agreement(&log.logs()).map_err(|v| format!("agreement: {v}"))?;
    Ok(())
}

/// Random key-value operations over a few keys, so that clients collide. Every
/// write writes a value never written before (`<client>.<n>`), which makes the
/// linearizability check sharp: a read says exactly which write it saw.
#[derive(Clone, Debug)]
pub struct KvWorkload {
    pub keys: u64,
    /// Fractions of gets and of deletes; the rest are puts.
    pub get_ratio: f64,
    pub delete_ratio: f64,
}

impl Default for KvWorkload {
    fn default() -> Self {
        KvWorkload {
            keys: 3,
            get_ratio: 0.4,
            delete_ratio: 0.15,
        }
    }
}

impl KvWorkload {
    /// The workload as the simulator takes it.
    pub fn into_workload(self) -> runtime::sim::Workload {
        let mut writes = 0u64;
        Box::new(move |rng: &mut Rng, client: ClientId| {
            let key = format!("k{}", rng.below(self.keys)).into_bytes();
            let draw = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let op = if draw < self.get_ratio {
                Op::Get { key }
            } else if draw < self.get_ratio + self.delete_ratio {
                Op::Delete { key }
            } else {
                writes += 1;
                let value = format!("{}.{writes}", client.0).into_bytes();
                Op::Put { key, value }
            };
            wire::codec::encode_to_vec(&op).expect("small operations encode")
        })
    }
}

/// One replica incarnation's executed operations, as digests, in order.
pub type ReplicaLog = (ReplicaId, Vec<[u8; 32]>);

/// What each replica executed, in order: the input of the agreement checker.
/// Recorded by wrapping the application, outside protocol code. A restarted
/// replica starts a new log.
#[derive(Clone, Debug, Default)]
pub struct ExecutionLog {
    logs: Arc<Mutex<Vec<ReplicaLog>>>,
}

impl ExecutionLog {
    /// Wraps `app` so that everything it executes is logged under `replica`.
    pub fn record(&self, replica: ReplicaId, app: Box<dyn App>) -> Box<dyn App> {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.push((replica, Vec::new()));
        Box::new(RecordingApp {
            inner: app,
            logs: Arc::clone(&self.logs),
            index: logs.len() - 1,
        })
    }

    /// A copy of every log: `(replica, digests of executed operations)`.
    pub fn logs(&self) -> Vec<ReplicaLog> {
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many operations all replicas executed together.
    pub fn executed(&self) -> usize {
        self.logs().iter().map(|(_, log)| log.len()).sum()
    }
}

struct RecordingApp {
    inner: Box<dyn App>,
    logs: Arc<Mutex<Vec<ReplicaLog>>>,
    index: usize,
}

impl App for RecordingApp {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        let digest = Digest::of(op).0;
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)[self.index]
            .1
            .push(digest);
        self.inner.execute(op)
    }
}
