//! The real runtime: protocol nodes on threads, sockets and cores.
//!
//! - [`spawn_replica`] runs a replica as a pipeline of stages (receive → verify
//!   → protocol → send) joined by bounded channels, mapped to threads and cores
//!   by a [`ThreadMap`]. With every stage on one thread the stages call each
//!   other directly, with no channel in between.
//! - [`spawn_clients`] runs thousands of closed- or open-loop benchmark
//!   clients multiplexed on a few threads, one socket per thread.
//!
//! Both drive their nodes through the one driver core ([`crate::driver`]):
//! the replica's protocol stage is a [`crate::driver::Driver`] that resolves
//! destinations to sockets and commits durable writes once per batch; each
//! benchmark client is a [`crate::driver::Core`] in a slot of its thread.
//!
//! Both return a [`Running`] handle: metrics while running, totals on stop.
//! Every socket they bind uses UDP GSO and GRO ([`OFFLOADS`]).
//!
//! Every thread runs the same loop: poll each of its stages once (each poll
//! does a bounded amount of work), and when a whole round found nothing to do,
//! idle per [`Idle`]: poll again at once (`Busy`), or keep polling for a
//! while and then block in the transport or on the thread's [`Waker`] until a
//! datagram arrives, another stage hands it work, or its next timer is due
//! (`SpinThenBlock`). A thread never waits for another thread's work by
//! spinning alone, so more threads than cores still make progress.

mod arena;
mod clients;
pub mod faults;
mod history;
mod replica;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use wire::control::{
    COMPLETION_BIN_MS, COMPLETION_BINS_MAX, Idle, LinkEmulation, Load, ThreadMap, TransportKind,
};
use wire::{Bytes, ClientId, ReplicaId};

use crate::actor::{Counters, SharedState, Source, State};
use crate::net::{self, Waker};
use crate::rng::Rng;

pub use arena::ARENA_BYTES;
pub use clients::{client_slot_bytes, spawn_clients};
pub use history::Recorded;
pub use replica::{CLIENT_ROUTES_MAX, DurableSetup, spawn_durable_replica, spawn_replica};

/// Items a stage takes from its input channel per poll at most, so that one
/// busy stage cannot starve the others on its thread.
pub const STAGE_BATCH_MAX: usize = 64;

/// Capacity of each channel between stages. A full channel drops the item and
/// counts it: overload sheds load instead of growing memory.
pub const STAGE_QUEUE_MAX: usize = 4096;

/// Whether deployed sockets (replicas' and client threads') use UDP GSO and
/// GRO (see [`net::Options`]): a client thread sends all its requests to one
/// server address and a server thread replies to a few client sockets, so
/// runs of equal-size datagrams to one destination are the common case, and
/// one system call carries up to 64 of them each way. Where the kernel or
/// device refuses, the transport falls back to one datagram per send by
/// itself. Measured on loopback (`benches/benches/loopback.rs`, unreplicated
/// null ops, one server and one client thread, 2-core VM): off, about 0.8-0.9x
/// a per-datagram `recvmmsg`/`sendmmsg` echo at 100-10,000 clients; on, 6-9x
/// it, with p50 latency 6x lower at 100 clients. One client costs nothing
/// (no run to batch). Receive buffers grow to 64 KiB each (pages are touched
/// only as GRO runs fill them).
pub const OFFLOADS: bool = true;

/// The transport options every deployed socket binds with: the defaults, with
/// GSO and GRO per [`OFFLOADS`].
pub fn transport_options() -> net::Options {
    net::Options {
        gso: OFFLOADS,
        gro: OFFLOADS,
        ..net::Options::default()
    }
}

/// Decodes a datagram from `src`, whose source is replica `i` if `src` is
/// `replicas[i]`, and drops a message that did not come from the address of
/// the sender it names (see [`Source`]). The reason on `Err` is for the drop
/// counters. The datagram is a slice of its thread's receive buffer, which
/// the codec may keep slices of ([`SharedState::decode_shared`]).
fn decode_from<H: SharedState>(
    shared: &H,
    replicas: &[SocketAddr],
    src: SocketAddr,
    datagram: &Bytes,
) -> Result<(wire::Addr, H::Message), &'static str> {
    // A linear scan: groups are small, and it beats hashing at n = 4..7.
    let source = replicas
        .iter()
        .position(|&addr| addr == src)
        .map_or(Source::Other, |i| Source::Replica(ReplicaId(i as u8)));
    match shared.decode_shared(source, datagram) {
        Ok((from, _)) if !source.may_send_as(from) => Err(crate::node::WRONG_SOURCE),
        Ok(decoded) => Ok(decoded),
        Err(reason) => Err(reason.0),
    }
}

/// The longest a blocked thread sleeps before it looks at its stop flag again.
const BLOCK_MAX: Duration = Duration::from_millis(50);

/// Where and how a replica runs.
#[derive(Clone, Debug)]
pub struct ReplicaSetup {
    pub id: ReplicaId,
    /// Every replica's address; this one binds `replicas[id]`.
    pub replicas: Vec<SocketAddr>,
    pub threads: ThreadMap,
    pub idle: Idle,
    pub transport: TransportKind,
    /// WAN links emulated on what the replica sends ([`net::link`]); the
    /// default: none.
    pub link: LinkEmulation,
}

/// Where and how a set of clients runs.
#[derive(Clone, Debug)]
pub struct ClientsSetup {
    pub first_id: ClientId,
    pub count: u32,
    /// Client threads, one socket each; clients are spread evenly.
    pub threads: u32,
    /// Cores to pin client threads to, round robin; empty: unpinned.
    pub cores: Vec<u32>,
    pub bind: IpAddr,
    pub replicas: Vec<SocketAddr>,
    pub load: Load,
    pub idle: Idle,
    pub transport: TransportKind,
    /// Operations invoked before this are not measured (warm-up).
    pub warmup: Duration,
    /// Operations invoked more than this after the warm-up are not measured
    /// either (cool-down); `None`: measure until stopped.
    pub measure: Option<Duration>,
    /// WAN links emulated on what the clients send ([`net::link`]); the
    /// default: none.
    pub link: LinkEmulation,
}

/// Makes the client with a given id.
pub type ClientFactory<C> = Arc<dyn Fn(ClientId) -> C + Send + Sync>;

/// Makes the operation generator of one client thread, from a seed: the id
/// of the thread's first client, so distinct for every thread of a run.
pub type OpFactory = Arc<dyn Fn(u64) -> Box<dyn OpSource> + Send + Sync>;

/// One client thread's operation generator. Any `FnMut(&mut Rng, &mut
/// Vec<u8>)` that writes an operation into the vector is one whose
/// operations are never recorded.
pub trait OpSource: Send {
    /// Writes the next operation, drawn from the thread's random stream,
    /// into `op`, which is empty: one buffer of the thread's, reused for
    /// every operation, so that a generator that writes into it allocates
    /// nothing once the buffer has grown to the largest operation.
    ///
    /// Returns whether the run's history records the operation (with its
    /// times and result; see [`Totals::history`]). Generators mark few:
    /// recording costs a copy of the operation and of its result.
    fn next_op(&mut self, rng: &mut Rng, op: &mut Vec<u8>) -> bool;
}

impl<F: FnMut(&mut Rng, &mut Vec<u8>) + Send> OpSource for F {
    fn next_op(&mut self, rng: &mut Rng, op: &mut Vec<u8>) -> bool {
        self(rng, op);
        false
    }
}

/// A protocol state the real runtime can move to its threads.
pub trait Deployable:
    State<Message: Send, Outbound: Send, Timer: Send, Shared: 'static> + Send + 'static
{
}

impl<S> Deployable for S where
    S: State<Message: Send, Outbound: Send, Timer: Send, Shared: 'static> + Send + 'static
{
}

/// A snapshot of a running node's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Operations completed (clients), or messages the protocol handled
    /// (replicas), since the previous snapshot.
    pub ops: u64,
    /// Latency of the operations completed since the previous snapshot, in
    /// microseconds (clients only; zero for replicas).
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    /// The leader as the replica sees it (replicas of protocols that have
    /// one).
    pub leader: Option<u8>,
    /// How far the replica executed (replicas that say).
    pub executed: Option<u64>,
    /// Of those operations, how many took longer than the bound
    /// [`Running::count_slower_than`] set (zero without one), to the
    /// histogram's precision (three significant digits).
    pub slow_ops: u64,
}

/// A node's totals after it stopped.
#[derive(Debug)]
pub struct Totals {
    /// Operations completed (clients), or messages the protocol handled
    /// (replicas).
    pub ops: u64,
    /// Operations completed after the warm-up.
    pub measured_ops: u64,
    /// From the end of the warm-up to the stop or the end of the measured
    /// window, whichever came first.
    pub measured: Duration,
    /// Latency after warm-up, in microseconds (clients only).
    pub latency_us: Histogram<u64>,
    pub counters: Counters,
    /// Clients: operations completed per [`COMPLETION_BIN_MS`] bin of
    /// completion time, bin 0 starting at [`Running::started`], up to the
    /// bin of the stop (at most [`COMPLETION_BINS_MAX`] bins; later
    /// completions are counted in
    /// [`wire::control::COMPLETIONS_PAST_END_COUNTER`]). Empty
    /// for replicas.
    pub completions: Vec<u32>,
    /// Clients: the operations their generators marked as recorded, bounded
    /// and cut as [`Recorded`] says; empty for replicas.
    pub history: Recorded,
    /// CPU time the node's threads spent polling with nothing to do, summed
    /// over threads: what a busy-polling thread burns while idle, which a
    /// CPU account per operation should leave out (time blocked costs no
    /// CPU and is not counted).
    pub idle_spin: Duration,
}

/// A running replica or set of clients. Dropping it stops the threads.
#[derive(Debug)]
pub struct Running {
    transport: TransportKind,
    addrs: Vec<SocketAddr>,
    shared: Arc<RunShared>,
    threads: Vec<(String, JoinHandle<io::Result<ThreadTotals>>)>,
    started: Instant,
    warmup: Duration,
    measure: Option<Duration>,
}

/// What the threads of one node share with its handle.
#[derive(Debug)]
struct RunShared {
    stop: AtomicBool,
    /// Set by a thread that stopped on its own with an error.
    failure: Mutex<Option<String>>,
    /// Every thread's waker, to wake them all on stop.
    wakers: Mutex<Vec<Arc<Waker>>>,
    /// Operations completed or messages handled, all threads.
    ops: AtomicU64,
    /// `ops` at the previous snapshot.
    ops_reported: AtomicU64,
    /// Latency of operations completed since the previous snapshot, merged
    /// in by client threads every few milliseconds.
    interval_latency: Mutex<Histogram<u64>>,
    /// Faults in force on a replica, and what its protocol stage publishes.
    faults: Arc<faults::NodeFaults>,
    /// Latency above which [`Metrics::slow_ops`] counts an operation, µs; 0:
    /// none.
    slow_bound_us: AtomicU64,
    /// Client threads' recorded operations and their common cut.
    history: Arc<history::HistoryShared>,
}

/// What one thread hands back when it ends.
#[derive(Debug)]
struct ThreadTotals {
    counters: Counters,
    latency_us: Option<Histogram<u64>>,
    measured_ops: u64,
    /// Clients: completions per bin (see [`Totals::completions`]).
    completions: Vec<u32>,
    /// See [`Totals::idle_spin`].
    idle_spin: Duration,
}

impl RunShared {
    fn new() -> Arc<RunShared> {
        Arc::new(RunShared {
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            wakers: Mutex::new(Vec::new()),
            ops: AtomicU64::new(0),
            ops_reported: AtomicU64::new(0),
            interval_latency: Mutex::new(latency_histogram()),
            faults: Arc::default(),
            slow_bound_us: AtomicU64::new(0),
            history: history::HistoryShared::new(),
        })
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn fail(&self, thread: &str, error: &io::Error) {
        let mut failure = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        failure.get_or_insert_with(|| format!("{thread}: {error}"));
    }

    fn add_waker(&self, waker: &Arc<Waker>) {
        self.wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(waker));
    }
}

/// A histogram for latencies from 1 µs to 100 s at 3 significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

impl Running {
    /// The transport in use (never `Auto`).
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    /// The UDP addresses bound.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// When the node's clock started: where bin 0 of
    /// [`Totals::completions`] begins.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// From now on, [`Metrics::slow_ops`] counts the operations that took
    /// longer than `bound`.
    pub fn count_slower_than(&self, bound: Duration) {
        let micros = u64::try_from(bound.as_micros()).unwrap_or(u64::MAX);
        self.shared
            .slow_bound_us
            .store(micros.max(1), Ordering::Relaxed);
    }

    /// Progress since the previous call.
    pub fn metrics(&self) -> Metrics {
        let ops = self.shared.ops.load(Ordering::Relaxed);
        let before = self.shared.ops_reported.swap(ops, Ordering::Relaxed);
        let mut latency = self
            .shared
            .interval_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let slow_bound_us = self.shared.slow_bound_us.load(Ordering::Relaxed);
        let slow_ops = if slow_bound_us == 0 {
            0
        } else {
            latency.len() - latency.count_between(0, slow_bound_us)
        };
        let metrics = Metrics {
            ops: ops - before,
            latency_us_p50: latency.value_at_quantile(0.5),
            latency_us_p99: latency.value_at_quantile(0.99),
            leader: self.shared.faults.leader(),
            executed: self.shared.faults.executed(),
            slow_ops,
        };
        latency.reset();
        metrics
    }

    /// The faults in force on this node (a replica applies them; clients
    /// ignore them), to set and clear while it runs.
    pub fn faults(&self) -> &faults::NodeFaults {
        &self.shared.faults
    }

    /// Whether a thread has stopped by itself (it failed or panicked); `stop`
    /// then says why.
    pub fn has_failed(&self) -> bool {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
            || self.threads.iter().any(|(_, t)| t.is_finished())
    }

    /// Stops every thread and returns the totals, or the first thread's error.
    pub fn stop(mut self) -> io::Result<Totals> {
        let stopped = Instant::now();
        self.signal_stop();
        let mut counters = Counters::default();
        let mut latency_us = latency_histogram();
        let mut measured_ops = 0;
        let mut completions: Vec<u32> = Vec::new();
        let mut clients = false;
        let mut idle_spin = Duration::ZERO;
        let mut first_error = None;
        for (name, thread) in self.threads.drain(..) {
            match thread.join() {
                Ok(Ok(totals)) => {
                    counters.merge(&totals.counters);
                    if let Some(histogram) = totals.latency_us {
                        latency_us.add(histogram).expect("same histogram bounds");
                        clients = true;
                    }
                    measured_ops += totals.measured_ops;
                    idle_spin += totals.idle_spin;
                    add_bins(&mut completions, &totals.completions);
                }
                Ok(Err(error)) => {
                    first_error.get_or_insert(io::Error::new(
                        error.kind(),
                        format!("thread {name}: {error}"),
                    ));
                }
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "(no message)".to_string());
                    first_error.get_or_insert(io::Error::other(format!(
                        "thread {name} panicked: {message}"
                    )));
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        self.shared.faults.add_counters(&mut counters);
        if clients {
            // Up to the stop, so that trailing bins with nothing completed
            // are there to be seen (a run that never recovered).
            let stop_bin = completion_bin(stopped.saturating_duration_since(self.started));
            completions.resize(
                completions
                    .len()
                    .max(stop_bin.saturating_add(1).min(COMPLETION_BINS_MAX)),
                0,
            );
        }
        Ok(Totals {
            ops: self.shared.ops.load(Ordering::Relaxed),
            measured_ops,
            measured: {
                let from = self.started + self.warmup;
                let to = self.measure.map_or(stopped, |m| stopped.min(from + m));
                to.saturating_duration_since(from)
            },
            latency_us,
            counters,
            completions,
            history: self.shared.history.take(),
            idle_spin,
        })
    }

    fn signal_stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for waker in self
            .shared
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            waker.wake();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.signal_stop();
            for (_, thread) in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }
}

/// The ids of the cores this process may run on (its affinity mask, which a
/// cpuset narrows), ascending; empty if the kernel does not say.
pub fn usable_cores() -> Vec<u32> {
    let mut cores: Vec<u32> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|core| u32::try_from(core.id).ok())
        .collect();
    cores.sort_unstable();
    cores
}

/// Spawns a named thread, pinned to `core` if given, that runs `body` and
/// records its error (if any) in `shared` so the handle can see it early.
fn spawn_thread(
    name: String,
    core: Option<u32>,
    shared: &Arc<RunShared>,
    body: impl FnOnce() -> io::Result<ThreadTotals> + Send + 'static,
) -> io::Result<(String, JoinHandle<io::Result<ThreadTotals>>)> {
    let run_shared = Arc::clone(shared);
    let thread_name = name.clone();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            if let Some(core) = core {
                // Pin by absolute id: `get_core_ids` would only list the cores
                // this thread may already run on.
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core as usize }) {
                    let error = io::Error::other(format!("cannot pin to core {core}"));
                    run_shared.fail(&thread_name, &error);
                    return Err(error);
                }
            }
            let result = body();
            if let Err(error) = &result {
                run_shared.fail(&thread_name, error);
            }
            result
        })?;
    Ok((name, handle))
}

/// Decides when a thread that found no work should block, and measures the
/// CPU time it spent polling with nothing to do ([`Totals::idle_spin`]).
#[derive(Debug)]
struct Idler {
    spin: Option<Duration>,
    /// When the current run of rounds without work began, and the thread's
    /// CPU time then.
    idle_since: Option<(Instant, Duration)>,
    /// CPU time spent in such runs, up to the work or the block that ended
    /// each.
    spun: Duration,
}

impl Idler {
    fn new(idle: Idle) -> Idler {
        Idler {
            spin: match idle {
                Idle::Busy => None,
                Idle::SpinThenBlock { spin_us } => Some(Duration::from_micros(spin_us.into())),
            },
            idle_since: None,
            spun: Duration::ZERO,
        }
    }

    /// Called after every round of polls; true when the thread should block.
    /// The clocks are read where a run of idle rounds starts and ends (and,
    /// spinning before a block, in each idle round), not in every round of a
    /// thread that finds work.
    fn should_block(&mut self, progress: bool) -> bool {
        if progress {
            self.end_idle_run();
            return false;
        }
        let (since, _) = *self
            .idle_since
            .get_or_insert_with(|| (Instant::now(), thread_cpu()));
        let Some(spin) = self.spin else {
            std::hint::spin_loop();
            return false;
        };
        if since.elapsed() < spin {
            return false;
        }
        self.end_idle_run();
        true
    }

    /// Called when the thread wakes from a block.
    fn woke(&mut self) {
        self.idle_since = None;
    }

    /// The idle polling measured, with a run still going counted up to now.
    fn spun(&mut self) -> Duration {
        self.end_idle_run();
        self.spun
    }

    fn end_idle_run(&mut self) {
        if let Some((_, cpu)) = self.idle_since.take() {
            self.spun += thread_cpu().saturating_sub(cpu);
        }
    }
}

/// The CPU time the calling thread has used. A clock the kernel keeps per
/// thread, so idle polling is measured in CPU time even while the thread
/// shares its core and is off it part of the time.
fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}

/// The earlier of a thread's next timer and its transport's next emulated
/// release ([`net::Transport::next_release`]).
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long a thread may block: until `deadline` (its next timer), at most
/// [`BLOCK_MAX`].
fn block_timeout(now: Instant, deadline: Option<Instant>) -> Duration {
    deadline.map_or(BLOCK_MAX, |d| {
        d.saturating_duration_since(now).min(BLOCK_MAX)
    })
}

/// The bin of [`Totals::completions`] an operation completed `since` the
/// start falls in (past [`COMPLETION_BINS_MAX`] for a late one).
fn completion_bin(since: Duration) -> usize {
    usize::try_from(since.as_millis() / u128::from(COMPLETION_BIN_MS)).unwrap_or(usize::MAX)
}

/// Adds `more`'s bins into `into`'s, bin by bin.
fn add_bins(into: &mut Vec<u32>, more: &[u32]) {
    if into.len() < more.len() {
        into.resize(more.len(), 0);
    }
    for (sum, &n) in into.iter_mut().zip(more) {
        *sum = sum.saturating_add(n);
    }
}

/// Records `latency` into the thread's histogram, saturating at its bounds.
fn record_latency(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burns `cpu` of the thread's CPU time.
    fn burn(cpu: Duration) {
        let start = thread_cpu();
        while thread_cpu().saturating_sub(start) < cpu {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn idle_polling_is_measured_in_cpu_time_until_work_or_a_block() {
        // Busy: a run of idle rounds counts until the round that finds work.
        let mut busy = Idler::new(Idle::Busy);
        assert!(!busy.should_block(true));
        assert!(!busy.should_block(false));
        burn(Duration::from_millis(5));
        assert!(!busy.should_block(false));
        assert!(!busy.should_block(true));
        let spun = busy.spun();
        assert!(spun >= Duration::from_millis(5), "{spun:?}");
        // Work counts for nothing, and time off the CPU neither.
        burn(Duration::from_millis(2));
        assert!(!busy.should_block(true));
        assert_eq!(busy.spun(), spun);
        assert!(!busy.should_block(false));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!busy.should_block(true));
        let slept = busy.spun() - spun;
        assert!(slept < Duration::from_millis(10), "{slept:?}");

        // Spin then block: the spin up to the block counts, the block not.
        let mut spinner = Idler::new(Idle::SpinThenBlock { spin_us: 1_000 });
        assert!(!spinner.should_block(false));
        burn(Duration::from_millis(3));
        assert!(spinner.should_block(false));
        let spun = spinner.spun();
        assert!(spun >= Duration::from_millis(3), "{spun:?}");
        std::thread::sleep(Duration::from_millis(5));
        spinner.woke();
        assert_eq!(spinner.spun(), spun, "time blocked is not idle polling");
    }
}
