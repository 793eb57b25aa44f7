//! Seeded simulation of whole systems, with faults and checkers.
//!
//! [`run_seed`] and [`simulate`] are the entry points that `node sim`, the
//! runner and the tests share: they build a system of the chosen protocol
//! with a key-value application, draw a workload and a fault plan for a
//! profile ([`faults::Profile`]) from the seed, run it in the
//! [`runtime::sim::Simulator`] until every client is done or the liveness
//! bound has passed since the last fault healed, and judge the outcome with
//! checkers that look only at what clients and the application saw:
//!
//! - liveness: every live client completed all its operations within the
//!   protocol's bound after the last heal;
//! - linearizability of the clients' history ([`runtime::check::linearizability`]);
//! - agreement: replicas did the same at every slot
//!   ([`runtime::check::agreement`], through [`ExecutionLog`]).
//!
//! The building blocks ([`KvWorkload`], [`ExecutionLog`], [`check`],
//! [`faults`]) are public so that scenario tests can script their own runs.

pub mod faults;
pub mod pbft;
pub mod unreplicated;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use runtime::check::{agreement, linearizability};
use runtime::sim::{Simulator, TraceEvent};
use runtime::{Addr, ClientId, ReplicaId, Rng};
use wire::Digest;
use wire::kv::Op;
use wire::sim::SeedReport;

use crate::app::{App, Position, Unexecuted};

pub use faults::Profile;

pub use crate::registry::Protocol;

/// The command that replays one seed under `profile`.
pub fn replay_command(protocol: Protocol, seed: u64, profile: Profile) -> String {
    wire::sim::replay_command(protocol.name(), seed, profile, None)
}

/// A protocol's seeded run, finished: what the checkers and the report need.
#[derive(Debug)]
pub struct Simulated {
    pub sim: Simulator,
    pub log: ExecutionLog,
    pub plan: faults::Plan,
    /// The profile the seed ran under (a `Mix` resolved).
    pub profile: Profile,
    pub replicas: usize,
    /// How long after the last heal the clients had to finish.
    pub bound: Duration,
    /// How long the run goes on after the clients finished, before every
    /// correct replica must have caught up (zero: no catch-up check).
    pub settle: Duration,
    /// How far behind the furthest a correct replica may then be: how far
    /// the protocol lets one fall behind for good in an idle group (PBFT:
    /// one whose primary equivocated catches up at the next checkpoint).
    pub slack: u64,
}

/// A seeded run's report, its plan, and (if asked for) its timeline.
#[derive(Debug)]
pub struct Outcome {
    pub report: SeedReport,
    pub plan: Vec<String>,
    pub trace: Option<Vec<TraceEvent>>,
}

/// Simulates `protocol` under faults drawn from `seed` (the default mix of
/// profiles) and checks the outcome. Deterministic: the same seed always
/// gives the same report, but for `wall_ns`.
pub fn run_seed(protocol: Protocol, seed: u64) -> SeedReport {
    simulate(protocol, seed, Profile::Mix, false).report
}

/// [`run_seed`] under `profile`, keeping the run's timeline if `trace`.
pub fn simulate(protocol: Protocol, seed: u64, profile: Profile, trace: bool) -> Outcome {
    let started = Instant::now();
    let profile = profile.resolve(seed);
    let mut run = protocol.kit().random_run(seed, profile, trace);
    let mut failure = check(&run.sim, &run.log).err();
    if failure.is_none() && run.settle > Duration::ZERO {
        let settled = run.sim.now() + run.settle;
        run.sim.run_until(settled);
        failure = check_caught_up(&run.sim, &run.log, run.slack).err();
    }
    let sim = &run.sim;
    let report = SeedReport {
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
        profile: run.profile.name().to_string(),
        replicas: run.replicas as u64,
        last_heal_ns: sim.last_heal().as_nanos(),
        liveness_bound_ns: run.bound.as_nanos() as u64,
        latency_max_ns: sim
            .history()
            .iter()
            .filter_map(|op| Some(op.completed.as_ref()?.0.since(op.invoked).as_nanos() as u64))
            .max()
            .unwrap_or(0),
    };
    Outcome {
        report,
        plan: run.plan.summary.clone(),
        trace: sim.trace().map(<[TraceEvent]>::to_vec),
    }
}

/// Runs every checker on a finished run; the first failure, described.
/// Liveness: every operation of a live client completed (the run ends as
/// soon as one has waited its bound, see [`Simulator::run_until_live`]).
pub fn check(sim: &Simulator, log: &ExecutionLog) -> Result<(), String> {
    let live = |client: ClientId| {
        let addr = Addr::Client(client);
        sim.is_running(addr) && !sim.has_failed(addr)
    };
    if let Some(op) = sim
        .history()
        .iter()
        .find(|op| op.completed.is_none() && live(op.client))
    {
        return Err(format!(
            "liveness: client {} invoked an operation at {} that had not completed at {} \
             (the last fault healed at {})",
            op.client.0,
            op.invoked,
            sim.now(),
            sim.last_heal()
        ));
    }
    linearizability::check_kv(sim.history()).map_err(|v| format!("linearizability: {v}"))?;
    log.check_agreement()
        .map_err(|v| format!("agreement: {v}"))?;
    Ok(())
}

/// Replica liveness, for a run that has settled: every correct replica that
/// runs has executed to within `slack` slots of the furthest one. A replica
/// wedged for good (a state transfer that never ends, a recovery that never
/// completes) is a fault the clients may not see while the others carry on,
/// and it takes away fault tolerance the group is owed.
pub fn check_caught_up(sim: &Simulator, log: &ExecutionLog, slack: u64) -> Result<(), String> {
    let excluded = log.excluded();
    let positions: Vec<(ReplicaId, u64)> = log
        .replicas()
        .into_iter()
        .filter(|r| !excluded.contains(r))
        .filter_map(|r| Some((r, sim.executed_slot(Addr::Replica(r))?)))
        .collect();
    let Some(&(ahead, furthest)) = positions.iter().max_by_key(|(_, slot)| *slot) else {
        return Ok(());
    };
    match positions
        .iter()
        .find(|(_, slot)| slot.saturating_add(slack) < furthest)
    {
        Some((behind, slot)) => Err(format!(
            "catch-up: replica {} executed to {slot} and replica {} to {furthest}, at {} \
             (the last fault healed at {})",
            behind.0,
            ahead.0,
            sim.now(),
            sim.last_heal()
        )),
        None => Ok(()),
    }
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

/// What a replica did at one position of a slot: executed a request (its
/// client, number, and a digest of the operation), or settled one without
/// executing it, or held a null batch.
#[derive(Clone, PartialEq, Eq)]
pub enum Entry {
    Executed {
        client: ClientId,
        request_num: u64,
        op: [u8; 6],
    },
    Unexecuted(Unexecuted),
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Executed {
                client,
                request_num,
                op,
            } => {
                write!(f, "c{}#{request_num} op ", client.0)?;
                op.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Entry::Unexecuted(Unexecuted::Null) => f.write_str("null"),
            Entry::Unexecuted(Unexecuted::Ordered(digest)) => {
                f.write_str("ordered ")?;
                digest.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Entry::Unexecuted(Unexecuted::Request {
                client,
                request_num,
                outcome,
            }) => write!(f, "c{}#{request_num} {outcome}", client.0),
        }
    }
}

/// One replica incarnation's log: what it did at each slot, in order.
pub type SlotLog = BTreeMap<u64, Vec<Entry>>;

/// What each replica executed, slot by slot: the input of the agreement
/// checker. Recorded by wrapping the application, outside protocol code,
/// from the positions protocols hand it ([`App::execute_at`],
/// [`App::unexecuted_at`]): a request is known by its client and number as
/// well as its operation, so two clients' identical reads do not look
/// alike, and null batches show. A restarted replica starts a new log; a
/// replica that catches up by state transfer skips the slots below the
/// checkpoint.
#[derive(Clone, Debug, Default)]
pub struct ExecutionLog {
    inner: Arc<Mutex<Logs>>,
}

#[derive(Debug, Default)]
struct Logs {
    segments: Vec<(ReplicaId, SlotLog)>,
    /// Replicas that are Byzantine in this run: they may execute anything.
    excluded: Vec<ReplicaId>,
    /// Executions out of slot order: a replica went back to a slot below
    /// one it had executed.
    reversals: Vec<String>,
}

impl ExecutionLog {
    /// Wraps `app` so that everything it executes is logged under `replica`.
    pub fn record(&self, replica: ReplicaId, app: Box<dyn App>) -> Box<dyn App> {
        let mut logs = self.lock();
        logs.segments.push((replica, SlotLog::new()));
        Box::new(RecordingApp {
            inner: app,
            logs: Arc::clone(&self.inner),
            replica,
            segment: logs.segments.len() - 1,
            last_slot: None,
        })
    }

    /// Leaves `replica` out of the agreement check: it is Byzantine.
    pub fn exclude(&self, replica: ReplicaId) {
        self.lock().excluded.push(replica);
    }

    /// The replicas left out of the checks.
    pub fn excluded(&self) -> Vec<ReplicaId> {
        self.lock().excluded.clone()
    }

    /// Every replica that has a log, once each, in id order.
    pub fn replicas(&self) -> Vec<ReplicaId> {
        let mut replicas: Vec<ReplicaId> = self.lock().segments.iter().map(|(r, _)| *r).collect();
        replicas.sort_unstable();
        replicas.dedup();
        replicas
    }

    /// A copy of every log, one per incarnation.
    pub fn logs(&self) -> Vec<(ReplicaId, SlotLog)> {
        self.lock().segments.clone()
    }

    /// Requests executed by all replicas together.
    pub fn executed(&self) -> usize {
        self.lock()
            .segments
            .iter()
            .flat_map(|(_, log)| log.values())
            .flatten()
            .filter(|e| matches!(e, Entry::Executed { .. }))
            .count()
    }

    /// Agreement, slot by slot: no two correct replicas did different things
    /// at the same slot, and none went back to a slot below one it had
    /// executed.
    pub fn check_agreement(&self) -> Result<(), String> {
        let logs = self.lock();
        if let Some(reversal) = logs.reversals.first() {
            return Err(reversal.clone());
        }
        let correct: Vec<(ReplicaId, &SlotLog)> = logs
            .segments
            .iter()
            .filter(|(r, _)| !logs.excluded.contains(r))
            .map(|(r, log)| (*r, log))
            .collect();
        agreement::check_agreement(&correct).map_err(|v| v.to_string())
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
    last_slot: Option<u64>,
}

impl RecordingApp {
    fn log(&mut self, slot: u64, entry: Entry) {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(last) = self.last_slot
            && slot < last
        {
            let line = format!(
                "replica {} executed slot {slot} after slot {last}",
                self.replica.0
            );
            logs.reversals.push(line);
        }
        self.last_slot = Some(slot);
        logs.segments[self.segment]
            .1
            .entry(slot)
            .or_default()
            .push(entry);
    }
}

impl App for RecordingApp {
    fn execute(&mut self, _op: &[u8]) -> Vec<u8> {
        panic!("protocols execute through App::execute_at, which tells the slot");
    }

    fn execute_at(&mut self, at: Position, op: &[u8]) -> Vec<u8> {
        let digest = Digest::of(op).0;
        let entry = Entry::Executed {
            client: at.client,
            request_num: at.request_num,
            op: digest[..6].try_into().expect("6 bytes"),
        };
        self.log(at.slot, entry);
        self.inner.execute_at(at, op)
    }

    fn unexecuted_at(&mut self, slot: u64, what: Unexecuted) {
        self.log(slot, Entry::Unexecuted(what));
        self.inner.unexecuted_at(slot, what);
    }

    fn snapshot(&self) -> Vec<u8> {
        self.inner.snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) {
        self.inner.restore(snapshot);
    }

    fn query(&mut self, op: &[u8]) -> Vec<u8> {
        self.inner.query(op)
    }
}
