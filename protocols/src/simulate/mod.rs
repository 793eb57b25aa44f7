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

pub mod pbft;
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
    Pbft,
}

impl Protocol {
    pub const ALL: &[Protocol] = &[Protocol::Unreplicated, Protocol::Pbft];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Unreplicated => "unreplicated",
            Protocol::Pbft => "pbft",
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
    match protocol {
        Protocol::Unreplicated => report(protocol.name(), seed, unreplicated::random_run),
        Protocol::Pbft => report(protocol.name(), seed, pbft::random_run),
    }
}

fn report(
    protocol: &str,
    seed: u64,
    random_run: fn(u64) -> (Simulator, ExecutionLog),
) -> SeedReport {
    let started = Instant::now();
    let (sim, log) = random_run(seed);
    let failure = check(&sim, &log).err();
    SeedReport {
        protocol: protocol.to_string(),
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
    log.check_agreement()
        .map_err(|v| format!("agreement: {v}"))?;
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
///
/// The slot of an operation is its position in the replica's execution order.
/// A replica that catches up by state transfer skips slots: the wrapper counts
/// operations into its snapshots, so a restore starts a new segment at the
/// slot the snapshot had reached, and [`ExecutionLog::check_agreement`]
/// compares slot by slot.
#[derive(Clone, Debug, Default)]
pub struct ExecutionLog {
    inner: Arc<Mutex<Logs>>,
}

#[derive(Debug, Default)]
struct Logs {
    segments: Vec<Segment>,
    /// Replicas that are Byzantine in this run: they may execute anything.
    excluded: Vec<ReplicaId>,
}

#[derive(Clone, Debug)]
struct Segment {
    replica: ReplicaId,
    /// Slot of the first operation in `digests`.
    start: u64,
    digests: Vec<[u8; 32]>,
}

impl ExecutionLog {
    /// Wraps `app` so that everything it executes is logged under `replica`.
    pub fn record(&self, replica: ReplicaId, app: Box<dyn App>) -> Box<dyn App> {
        let mut logs = self.lock();
        logs.segments.push(Segment {
            replica,
            start: 0,
            digests: Vec::new(),
        });
        Box::new(RecordingApp {
            inner: app,
            logs: Arc::clone(&self.inner),
            replica,
            segment: logs.segments.len() - 1,
            executed: 0,
        })
    }

    /// Leaves `replica` out of the agreement check: it is Byzantine.
    pub fn exclude(&self, replica: ReplicaId) {
        self.lock().excluded.push(replica);
    }

    /// A copy of every log: `(replica, digests of executed operations)`, one
    /// per incarnation or restored segment.
    pub fn logs(&self) -> Vec<ReplicaLog> {
        self.lock()
            .segments
            .iter()
            .map(|s| (s.replica, s.digests.clone()))
            .collect()
    }

    /// How many operations all replicas executed together.
    pub fn executed(&self) -> usize {
        self.lock().segments.iter().map(|s| s.digests.len()).sum()
    }

    /// Agreement, slot by slot: no two correct replicas executed different
    /// operations at the same slot. Gapless logs go through
    /// [`agreement::check_agreement`]; logs with restored segments are
    /// compared slot by slot.
    pub fn check_agreement(&self) -> Result<(), String> {
        let logs = self.lock();
        let segments: Vec<&Segment> = logs
            .segments
            .iter()
            .filter(|s| !logs.excluded.contains(&s.replica))
            .collect();
        if segments.iter().all(|s| s.start == 0) {
            let plain: Vec<ReplicaLog> = segments
                .iter()
                .map(|s| (s.replica, s.digests.clone()))
                .collect();
            return agreement::check_agreement(&plain).map_err(|v| v.to_string());
        }
        let mut seen: std::collections::HashMap<u64, (ReplicaId, [u8; 32])> =
            std::collections::HashMap::new();
        for segment in segments {
            for (i, digest) in segment.digests.iter().enumerate() {
                let slot = segment.start + i as u64;
                let (replica, expected) = *seen.entry(slot).or_insert((segment.replica, *digest));
                if expected != *digest {
                    return Err(format!(
                        "agreement violated at slot {slot}: replica {} and replica {} \
                         executed different operations",
                        replica.0, segment.replica.0
                    ));
                }
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Logs> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct RecordingApp {
    inner: Box<dyn App>,
    logs: Arc<Mutex<Logs>>,
    replica: ReplicaId,
    segment: usize,
    /// Operations executed so far (the next one's slot), kept in snapshots.
    executed: u64,
}

impl App for RecordingApp {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        let digest = Digest::of(op).0;
        self.logs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .segments[self.segment]
            .digests
            .push(digest);
        self.executed += 1;
        self.inner.execute(op)
    }

    /// The inner snapshot after the operation count, so that a restore knows
    /// the slot it resumes at. Every replica is wrapped alike, so snapshots
    /// still agree.
    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = self.executed.to_le_bytes().to_vec();
        bytes.extend_from_slice(&self.inner.snapshot());
        bytes
    }

    fn restore(&mut self, snapshot: &[u8]) {
        let (count, inner) = snapshot.split_at(8);
        self.executed = u64::from_le_bytes(count.try_into().expect("8 bytes"));
        self.inner.restore(inner);
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.segments.push(Segment {
            replica: self.replica,
            start: self.executed,
            digests: Vec::new(),
        });
        self.segment = logs.segments.len() - 1;
    }
}
