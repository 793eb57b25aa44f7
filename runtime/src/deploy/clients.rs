//! Benchmark clients, thousands to a thread.
//!
//! Each client thread owns one socket and a slice of the clients, each on
//! the one driver core ([`crate::driver::Core`], with the thread's random
//! stream; what a client sends to one replica is encoded straight into the
//! transport's send batch, what it sends to all into one reusable buffer per
//! thread, and its durable writes are counted and forgotten). Replies are
//! handed to the client they are for ([`Client::recipient`]); one timer heap
//! serves every client on the thread. Closed loop: a client issues its next
//! operation the moment the previous one completes. Open loop: each thread
//! offers its share of the rate on a [`Schedule`] of arrivals (Poisson or
//! evenly spaced, [`Arrivals`]), each to the next idle client; an arrival
//! that finds none waits in a bounded backlog for the next client to free,
//! and one that finds the backlog full (or is still in it at the stop) is
//! counted ([`OPEN_LOOP_NO_FREE_CLIENT_COUNTER`]) and not sent. Arrival
//! times come from the schedule, not from when the thread looked: a thread
//! that fell behind takes every arrival it missed (at most
//! [`ARRIVALS_PER_ROUND_MAX`] a round, the rest the next round), each still
//! with its scheduled time.
//!
//! Latency is measured on the client thread's clock (read once per loop
//! round, right after the receive) into an hdrhistogram, up to the round in
//! which the result arrived and from when the operation was due: its
//! invocation in closed loop, its scheduled arrival in open loop. So an
//! open-loop operation that waited for a client, or behind a stalled
//! thread, has that wait in its latency (no coordinated omission).
//! Operations due during the warm-up or after the measured window (the
//! cool-down) are counted but not measured.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use wire::control::{
    Arrivals, COMPLETION_BINS_MAX, COMPLETIONS_PAST_END_COUNTER, Load, OPEN_LOOP_ARRIVALS_COUNTER,
    OPEN_LOOP_NO_FREE_CLIENT_COUNTER,
};
use wire::{Addr, ClientId, ReplicaId};

use super::arena::Arena;
use super::history::Recorder;
use super::{
    ClientFactory, ClientsSetup, Deployable, Idler, OpFactory, OpSource, RunShared, Running,
    ThreadTotals, block_timeout, completion_bin, decode_from, latency_histogram, record_latency,
    spawn_thread,
};
use crate::actor::{Client, Counters, Dest, DropReason, SharedState};
use crate::driver::Core;
use crate::net::{Transport, Waker};
use crate::rng::Rng;
use crate::time::Time;

/// How often a client thread publishes its progress for [`Running::metrics`].
const PUBLISH_INTERVAL: Duration = Duration::from_millis(10);

/// Open-loop arrivals one loop round takes at most; the rest stay due for the
/// next round, their times unchanged. Bounds a round after a stall, so the
/// thread still reads replies while it catches up.
const ARRIVALS_PER_ROUND_MAX: usize = 1024;

/// An operation generator, as one client thread uses it.
type Ops = Box<dyn OpSource>;

/// Starts the clients: makes every client (spread over as many threads as
/// there are client threads), binds one socket per client thread and runs the
/// load. Returns once the clients are made, so the clock of whoever times the
/// run, and the warm-up, start when operations can.
pub fn spawn_clients<C: Client + Deployable>(
    make_client: ClientFactory<C>,
    shared: Arc<C::Shared>,
    make_ops: OpFactory,
    setup: ClientsSetup,
) -> io::Result<Running> {
    if setup.count == 0 || setup.threads == 0 || setup.replicas.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "clients: need at least one client, one thread and one replica",
        ));
    }
    let threads = setup.threads.min(setup.count);
    // Thread t runs clients [first + lo, first + hi).
    let range = |t: u32| {
        let lo = u64::from(setup.count) * u64::from(t) / u64::from(threads);
        let hi = u64::from(setup.count) * u64::from(t + 1) / u64::from(threads);
        (lo, hi)
    };
    // Clients are made before the clock starts, one maker thread per client
    // thread: making one can be costly (a signed protocol derives keys), and
    // neither the warm-up nor the caller's clock should pay for it.
    let mut clients: Vec<Vec<C>> = std::thread::scope(|scope| {
        let makers: Vec<_> = (0..threads)
            .map(|t| {
                let (lo, hi) = range(t);
                let make_client = &make_client;
                let first = setup.first_id.0;
                scope.spawn(move || {
                    // A count the machine cannot hold is an error for the
                    // caller to report, not an abort.
                    let mut made = reserve::<C>(hi - lo)?;
                    made.extend((lo..hi).map(|i| make_client(ClientId(first + i))));
                    Ok::<_, io::Error>(made)
                })
            })
            .collect();
        makers
            .into_iter()
            .map(|maker| {
                maker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<io::Result<_>>()
    })?;
    let run = RunShared::new();
    let started = Instant::now();
    let mut handles = Vec::new();
    let mut addrs = Vec::new();
    let mut kind = None;
    for t in 0..threads {
        let mut transport = Transport::bind_with(
            SocketAddr::new(setup.bind, 0),
            setup.transport,
            &super::transport_options(),
        )?;
        // Each thread's draws of its own.
        transport.emulate(setup.link, setup.link.seed ^ (u64::from(t) << 40));
        kind.get_or_insert(transport.kind());
        addrs.push(transport.local_addr());
        let waker = Arc::new(Waker::new()?);
        run.add_waker(&waker);
        let (lo, _) = range(t);
        let first = ClientId(setup.first_id.0 + lo);
        let thread = ClientThread::<C> {
            first,
            slots: Vec::new(),
            transport,
            replicas: setup.replicas.clone(),
            timers: BinaryHeap::new(),
            idle: VecDeque::new(),
            load: setup.load,
            open: None,
            threads,
            rng: Rng::new(first.0),
            started,
            clock: started,
            counters: Counters::default(),
            latencies: Latencies::new(
                started,
                started + setup.warmup,
                setup.measure.map(|m| started + setup.warmup + m),
            ),
            buf: Vec::with_capacity(wire::MESSAGE_SIZE_MAX),
            op: Vec::new(),
            history: Recorder::new(Arc::clone(&run.history), threads),
        };
        let states = std::mem::take(&mut clients[t as usize]);
        let make_ops = Arc::clone(&make_ops);
        let shared = Arc::clone(&shared);
        let run_thread = Arc::clone(&run);
        let core = (!setup.cores.is_empty()).then(|| setup.cores[t as usize % setup.cores.len()]);
        let idler = Idler::new(setup.idle);
        handles.push(spawn_thread(
            format!("clients-{t}"),
            core,
            &run,
            move || {
                let ops = make_ops(first.0);
                thread.run(states, ops, &shared, &waker, &run_thread, idler)
            },
        )?);
    }
    Ok(Running {
        transport: kind.expect("at least one thread"),
        addrs,
        shared: run,
        threads: handles,
        started,
        warmup: setup.warmup,
        measure: setup.measure,
    })
}

/// An empty vector with room for `count` items, or an error saying the
/// memory is not there (instead of the abort a plain allocation would be).
fn reserve<T>(count: u64) -> io::Result<Vec<T>> {
    let mut items = Vec::new();
    usize::try_from(count)
        .ok()
        .and_then(|count| items.try_reserve_exact(count).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "clients: no memory for {count} clients of {} bytes each",
                    size_of::<T>()
                ),
            )
        })?;
    Ok(items)
}

/// The memory one idle client costs on its thread, not counting heap memory
/// its state points to (an idle unreplicated client points to none besides its
/// armed-timer list).
pub fn client_slot_bytes<C: Client>() -> usize {
    size_of::<Slot<C>>()
}

struct Slot<C: Client> {
    /// The client on the one driver core; its calls get the thread's
    /// random stream.
    core: Core<C>,
    /// When the outstanding operation was due, which its latency counts
    /// from: its invocation (closed loop) or its scheduled arrival (open
    /// loop).
    due: Option<Instant>,
    /// The earliest deadline queued for this client in the thread's heap.
    timer_at: Option<Time>,
    /// The outstanding operation's record in the thread's history, if it
    /// is recorded.
    recorded: Option<u32>,
}

struct ClientThread<C: Client> {
    first: ClientId,
    slots: Vec<Slot<C>>,
    transport: Transport,
    replicas: Vec<SocketAddr>,
    /// Lazy timer heap: `(deadline, client index)`; an entry whose deadline is
    /// not the client's `timer_at` is stale.
    timers: BinaryHeap<Reverse<(Time, u32)>>,
    /// Open loop: clients with nothing outstanding, in the order they finished.
    idle: VecDeque<u32>,
    load: Load,
    /// Open loop: the arrivals, made when the thread starts.
    open: Option<OpenLoop>,
    /// Client threads of the run (this thread offers its share of the rate).
    threads: u32,
    rng: Rng,
    started: Instant,
    /// The clock as read once per loop round, right after the receive: what
    /// the round's calls see as now, invoke stamps and completion times
    /// (one clock read a round, not several per operation).
    clock: Instant,
    counters: Counters,
    latencies: Latencies,
    buf: Vec<u8>,
    /// The next operation, as the generator writes it: one buffer for every
    /// operation of the thread.
    op: Vec<u8>,
    /// The operations the generator marked as recorded.
    history: Recorder,
}

impl<C: Client> ClientThread<C> {
    fn run(
        mut self,
        states: Vec<C>,
        mut ops: Ops,
        shared: &C::Shared,
        waker: &Waker,
        run: &RunShared,
        mut idler: Idler,
    ) -> io::Result<ThreadTotals> {
        self.slots = reserve(states.len() as u64)?;
        self.slots.extend(states.into_iter().map(|state| Slot {
            core: Core::new(state),
            due: None,
            timer_at: None,
            recorded: None,
        }));
        self.clock = Instant::now();
        for index in 0..self.slots.len() as u32 {
            self.call(index, shared, &mut ops, |core, now, me, rng| {
                core.start(now, me, rng)
            })?;
        }
        self.start_load(shared, &mut ops)?;
        self.transport.flush()?;
        let mut published = self.clock;
        let mut arena = Arena::new();

        while !run.stopping() {
            // Replies.
            let received = self.transport.recv(|src, bytes| arena.push(src, bytes))?;
            self.clock = Instant::now();
            for (src, datagram) in arena.take() {
                let (from, msg) = match decode_from(shared, &self.replicas, src, &datagram) {
                    Ok(decoded) => decoded,
                    Err(reason) => {
                        self.counters.add(reason, 1);
                        continue;
                    }
                };
                let Some(index) = C::recipient(&msg).and_then(|id| self.index_of(id)) else {
                    self.counters.add("clients: message for no client here", 1);
                    continue;
                };
                self.call(index, shared, &mut ops, |core, now, me, rng| {
                    core.on_message(now, me, rng, from, msg)
                })?;
            }
            // Timers.
            let fired = self.fire_timers(shared, &mut ops)?;
            // Open-loop arrivals.
            self.arrive(shared, &mut ops)?;
            self.transport.flush()?;
            if self.clock.saturating_duration_since(published) >= PUBLISH_INTERVAL {
                self.publish(run);
                published = self.clock;
            }
            if idler.should_block(received > 0 || fired) {
                waker.prepare_sleep();
                if !run.stopping() {
                    let mut deadline = self
                        .timers
                        .peek()
                        .map(|Reverse((at, _))| self.started + Duration::from_nanos(at.as_nanos()));
                    if let Some(open) = &self.open {
                        let next = self.started + open.schedule.next();
                        deadline = Some(deadline.map_or(next, |d| d.min(next)));
                    }
                    let timeout = block_timeout(Instant::now(), deadline).min(PUBLISH_INTERVAL);
                    self.transport.wait(timeout, waker)?;
                }
                waker.cancel_sleep();
                idler.woke();
            }
        }
        self.publish(run);
        run.history.hand_in(&mut self.history);
        let mut counters = std::mem::take(&mut self.counters);
        if let Some(open) = self.open.take() {
            open.add_totals(&mut counters);
        }
        self.transport.add_totals(&mut counters);
        for slot in &self.slots {
            counters.merge(slot.core.counters());
        }
        if self.latencies.past_end > 0 {
            counters.add(COMPLETIONS_PAST_END_COUNTER, self.latencies.past_end);
        }
        Ok(ThreadTotals {
            counters,
            latency_us: Some(self.latencies.measured),
            measured_ops: self.latencies.measured_ops,
            completions: self.latencies.completions,
            idle_spin: idler.spun(),
        })
    }

    /// Starts the load: closed loop, every client's first operation; open
    /// loop, every client idle and the arrival schedule from now.
    fn start_load(&mut self, shared: &C::Shared, ops: &mut Ops) -> io::Result<()> {
        match self.load {
            Load::Closed => {
                for index in 0..self.slots.len() as u32 {
                    self.invoke(index, self.clock, shared, ops)?;
                }
            }
            Load::Open {
                ops_per_sec,
                arrivals,
            } => {
                self.idle.extend(0..self.slots.len() as u32);
                // Its own generator, forked from the thread's: the arrival
                // times replay exactly, whatever the operations draw.
                let schedule = Schedule::new(
                    arrivals,
                    ops_per_sec as f64 / f64::from(self.threads),
                    self.clock.saturating_duration_since(self.started),
                    self.rng.fork(),
                );
                self.open = Some(OpenLoop::new(schedule, self.slots.len()));
            }
        }
        Ok(())
    }

    /// Open loop: this round's arrivals, each to the next idle client with
    /// its scheduled time, or to the backlog if none is idle.
    fn arrive(&mut self, shared: &C::Shared, ops: &mut Ops) -> io::Result<()> {
        let now = self.clock.saturating_duration_since(self.started);
        for _ in 0..ARRIVALS_PER_ROUND_MAX {
            let Some(open) = &mut self.open else {
                break;
            };
            let Some(due) = open.due(now) else {
                break;
            };
            match self.idle.pop_front() {
                Some(index) => self.invoke(index, self.started + due, shared, ops)?,
                None => open.defer(due),
            }
        }
        Ok(())
    }

    /// The round's clock as protocol time.
    fn now(&self) -> Time {
        let since = self.clock.saturating_duration_since(self.started);
        Time::from_nanos(since.as_nanos() as u64)
    }

    fn index_of(&self, id: ClientId) -> Option<u32> {
        let index = id.0.checked_sub(self.first.0)?;
        (index < self.slots.len() as u64).then_some(index as u32)
    }

    /// Fires every client timer that is due. Returns whether any was.
    fn fire_timers(&mut self, shared: &C::Shared, ops: &mut Ops) -> io::Result<bool> {
        let now = self.now();
        let mut fired = false;
        while let Some(&Reverse((at, index))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let slot = &mut self.slots[index as usize];
            if slot.timer_at != Some(at) {
                continue; // Stale: an earlier entry replaced it.
            }
            slot.timer_at = None;
            let mut due = slot.core.due(now);
            while let Some(timer) = self.slots[index as usize].core.next_due(&mut due) {
                self.call(index, shared, ops, |core, now, me, rng| {
                    core.on_timer(now, me, rng, timer)
                })?;
            }
            self.schedule_timer(index);
            fired = true;
        }
        Ok(fired)
    }

    /// Starts an operation on client `index`, due at `due` (its latency counts
    /// from then), sends what it sent, and collects its result if it
    /// completed at once.
    fn invoke(
        &mut self,
        index: u32,
        due: Instant,
        shared: &C::Shared,
        ops: &mut Ops,
    ) -> io::Result<()> {
        self.start_op(index, due, ops);
        self.flush_sends(index, shared)?;
        self.collect(index, shared, ops)
    }

    /// Calls into one client, sends what it sent, and collects its result.
    fn call(
        &mut self,
        index: u32,
        shared: &C::Shared,
        ops: &mut Ops,
        f: impl FnOnce(&mut Core<C>, Time, Addr, &mut Rng),
    ) -> io::Result<()> {
        let (now, me) = (self.now(), self.me(index));
        f(&mut self.slots[index as usize].core, now, me, &mut self.rng);
        self.flush_sends(index, shared)?;
        self.collect(index, shared, ops)
    }

    /// Collects client `index`'s result if its last call completed its
    /// operation, and starts its next one (closed loop at once, open loop the
    /// oldest arrival in the backlog, if any); then queues its next timer.
    fn collect(&mut self, index: u32, shared: &C::Shared, ops: &mut Ops) -> io::Result<()> {
        if let Some(result) = self.slots[index as usize].core.state_mut().take_result() {
            self.complete(index, result);
            let due = match self.load {
                Load::Closed => Some(self.clock),
                Load::Open { .. } => self
                    .open
                    .as_mut()
                    .and_then(OpenLoop::next_queued)
                    .map(|due| self.started + due),
            };
            match due {
                Some(due) => {
                    self.start_op(index, due, ops);
                    self.flush_sends(index, shared)?;
                }
                None => self.idle.push_back(index),
            }
        }
        self.schedule_timer(index);
        Ok(())
    }

    /// Client `index`'s address.
    fn me(&self, index: u32) -> Addr {
        Addr::Client(ClientId(self.first.0 + u64::from(index)))
    }

    /// Draws the next operation into the thread's operation buffer, records
    /// it in the history if the generator marked it (stamped with the
    /// round's clock, read before the request goes out; an unmarked
    /// operation costs one branch), and invokes it on client `index`, due
    /// at `due`. What the client sends stays in its core.
    fn start_op(&mut self, index: u32, due: Instant, ops: &mut Ops) {
        let (now, me) = (self.now(), self.me(index));
        self.op.clear();
        let recorded = ops.next_op(&mut self.rng, &mut self.op);
        let slot = &mut self.slots[index as usize];
        slot.due = Some(due);
        slot.recorded = if recorded {
            let client = ClientId(self.first.0 + u64::from(index));
            self.history.invoke(client, &self.op, now.as_nanos())
        } else {
            None
        };
        slot.core.invoke(now, me, &mut self.rng, &self.op);
    }

    /// Encodes what client `index` sent into the thread's buffer and queues
    /// it on the socket. Benchmark clients keep nothing across a crash: a
    /// client's durable writes are counted and forgotten, and nothing waits
    /// for them.
    fn flush_sends(&mut self, index: u32, shared: &C::Shared) -> io::Result<()> {
        let core = &mut self.slots[index as usize].core;
        if core.has_writes() {
            let writes = core.writes().len() as u64;
            self.counters.add("clients: durable writes ignored", writes);
        }
        let (buf, transport, replicas) = (&mut self.buf, &mut self.transport, &self.replicas);
        let mut result = Ok(());
        core.release(|dest, msg| {
            if result.is_err() {
                return Ok(()); // The thread stops with the error.
            }
            let sent = match dest {
                // To one replica: encoded straight into the send batch.
                Dest::To(Addr::Replica(ReplicaId(i))) => match replicas.get(usize::from(i)) {
                    Some(&addr) => transport.send_with(addr, |buf| shared.encode(&msg, buf)),
                    None => return Err(DropReason("clients: send to no such replica")),
                },
                // To all: encoded once, copied to each.
                Dest::Replicas => {
                    buf.clear();
                    shared.encode(&msg, buf)?;
                    replicas
                        .iter()
                        .try_for_each(|&addr| transport.send(addr, buf))
                        .map(Ok)
                }
                Dest::To(Addr::Client(_)) => return Err(DropReason("clients: send to a client")),
            };
            sent.unwrap_or_else(|error| {
                result = Err(error);
                Ok(())
            })
        });
        result
    }

    fn complete(&mut self, index: u32, result: Vec<u8>) {
        let slot = &mut self.slots[index as usize];
        let Some(due) = slot.due.take() else {
            self.counters
                .add("clients: result with nothing outstanding", 1);
            return;
        };
        if let Some(record) = slot.recorded.take() {
            let now = self.now().as_nanos();
            self.history.complete(record, now, result);
        }
        self.latencies.record(due, self.clock);
    }

    fn schedule_timer(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if let Some(deadline) = slot.core.next_deadline()
            && slot.timer_at.is_none_or(|queued| deadline < queued)
        {
            slot.timer_at = Some(deadline);
            self.timers.push(Reverse((deadline, index)));
        }
    }

    fn publish(&mut self, run: &RunShared) {
        let latencies = &mut self.latencies;
        if latencies.interval_ops == 0 {
            return;
        }
        run.ops.fetch_add(latencies.interval_ops, Ordering::Relaxed);
        latencies.interval_ops = 0;
        let mut shared = run
            .interval_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shared
            .add(&latencies.interval)
            .expect("same histogram bounds");
        latencies.interval.reset();
    }
}

/// One client thread's latencies: every completed operation's, for the
/// progress reports, and those due in the measured window, for the totals;
/// and every completion's time, binned, for the timeline.
struct Latencies {
    /// Where bin 0 of `completions` starts.
    origin: Instant,
    warmup_end: Instant,
    measure_end: Option<Instant>,
    measured: Histogram<u64>,
    measured_ops: u64,
    /// Since the last publication.
    interval: Histogram<u64>,
    interval_ops: u64,
    /// Completions per bin since `origin`, grown as the run goes, at most
    /// [`COMPLETION_BINS_MAX`] bins.
    completions: Vec<u32>,
    /// Completions after the last bin.
    past_end: u64,
}

impl Latencies {
    fn new(origin: Instant, warmup_end: Instant, measure_end: Option<Instant>) -> Latencies {
        Latencies {
            origin,
            warmup_end,
            measure_end,
            measured: latency_histogram(),
            measured_ops: 0,
            interval: latency_histogram(),
            interval_ops: 0,
            completions: Vec::new(),
            past_end: 0,
        }
    }

    /// An operation due at `due` (invoked then, closed loop; scheduled to
    /// arrive then, open loop, however much later it was sent) completed at
    /// `done`. Measured if it was due inside the measured window.
    fn record(&mut self, due: Instant, done: Instant) {
        let latency = done.saturating_duration_since(due);
        record_latency(&mut self.interval, latency);
        self.interval_ops += 1;
        let bin = completion_bin(done.saturating_duration_since(self.origin));
        if bin < COMPLETION_BINS_MAX {
            if bin >= self.completions.len() {
                // Grown a second of bins at a time, not one bin per call.
                let len = (bin + 100).min(COMPLETION_BINS_MAX);
                self.completions.resize(len, 0);
            }
            self.completions[bin] = self.completions[bin].saturating_add(1);
        } else {
            self.past_end += 1;
        }
        if due >= self.warmup_end && self.measure_end.is_none_or(|end| due < end) {
            record_latency(&mut self.measured, latency);
            self.measured_ops += 1;
        }
    }
}

/// One client thread's open-loop arrival times: each the previous one's plus
/// a gap ([`Arrivals`]), from the thread's start, whenever the thread gets to
/// look. Times are since the thread's `started`.
struct Schedule {
    arrivals: Arrivals,
    /// Mean gap between arrivals, ns (infinite at rate 0: none ever due).
    gap_ns: f64,
    start_ns: f64,
    /// Arrivals taken so far.
    taken: u64,
    /// The next arrival, ns.
    next_ns: f64,
    rng: Rng,
}

impl Schedule {
    /// `ops_per_sec` arrivals a second on average from `start`: the first is
    /// a gap after it.
    fn new(arrivals: Arrivals, ops_per_sec: f64, start: Duration, rng: Rng) -> Schedule {
        let mut schedule = Schedule {
            arrivals,
            gap_ns: 1e9 / ops_per_sec,
            start_ns: start.as_nanos() as f64,
            taken: 0,
            next_ns: 0.0,
            rng,
        };
        schedule.next_ns = schedule.start_ns + schedule.gap();
        schedule
    }

    /// The next arrival's time.
    fn next(&self) -> Duration {
        // Saturates (an infinite gap: never).
        Duration::from_nanos(self.next_ns as u64)
    }

    /// The next arrival, taken off the schedule, if it is due by `now`.
    fn due(&mut self, now: Duration) -> Option<Duration> {
        let due = self.next();
        if due > now {
            return None;
        }
        self.taken += 1;
        self.next_ns = match self.arrivals {
            // From the start, not the previous arrival: no rounding drift.
            Arrivals::Fixed => self.start_ns + (self.taken + 1) as f64 * self.gap_ns,
            Arrivals::Poisson => self.next_ns + self.gap(),
        };
        Some(due)
    }

    /// A gap to the next arrival, ns.
    fn gap(&mut self) -> f64 {
        match self.arrivals {
            Arrivals::Fixed => self.gap_ns,
            Arrivals::Poisson => {
                // Inverse transform: -ln(u) for u uniform in (0, 1] (53
                // random bits) is exponential with mean 1; never infinite.
                let u = ((self.rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
                -u.ln() * self.gap_ns
            }
        }
    }
}

/// One client thread's open loop: its [`Schedule`], the arrivals waiting
/// for a client, and what became of them.
struct OpenLoop {
    schedule: Schedule,
    /// Arrivals that found every client busy, by scheduled time, oldest
    /// first; the next client to free takes the oldest.
    backlog: VecDeque<Duration>,
    /// The backlog's bound: as many arrivals as the thread has clients, so
    /// that an overloaded system queues at most one more round of them in
    /// the clients (memory and queueing stay bounded) and the rest are
    /// counted.
    backlog_max: usize,
    arrivals: u64,
    no_free_client: u64,
}

impl OpenLoop {
    fn new(schedule: Schedule, clients: usize) -> OpenLoop {
        OpenLoop {
            schedule,
            backlog: VecDeque::new(),
            backlog_max: clients,
            arrivals: 0,
            no_free_client: 0,
        }
    }

    /// The next arrival due by `now`, to send at once.
    fn due(&mut self, now: Duration) -> Option<Duration> {
        let due = self.schedule.due(now)?;
        self.arrivals += 1;
        Some(due)
    }

    /// An arrival that found no idle client: to the backlog, or, if that is
    /// full, not sent (counted).
    fn defer(&mut self, due: Duration) {
        if self.backlog.len() < self.backlog_max {
            self.backlog.push_back(due);
        } else {
            self.no_free_client += 1;
        }
    }

    /// The oldest arrival in the backlog, for a client that just freed.
    fn next_queued(&mut self) -> Option<Duration> {
        self.backlog.pop_front()
    }

    /// Adds the counts to `counters`; arrivals still in the backlog were
    /// never sent, so they count as finding no free client. Both counters
    /// are there even at zero, so a results file shows them.
    fn add_totals(self, counters: &mut Counters) {
        counters.add(OPEN_LOOP_ARRIVALS_COUNTER, self.arrivals);
        counters.add(
            OPEN_LOOP_NO_FREE_CLIENT_COUNTER,
            self.no_free_client + self.backlog.len() as u64,
        );
    }
}

#[cfg(test)]
mod tests {
    use wire::control::TransportKind;

    use super::*;
    use crate::actor::{Context, DropReason, Source, State};
    use crate::net::Options;

    const MS: Duration = Duration::from_millis(1);

    /// The schedule's next `n` arrivals, however late it is polled.
    fn take(schedule: &mut Schedule, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|_| schedule.due(Duration::MAX).unwrap())
            .collect()
    }

    #[test]
    fn fixed_arrivals_are_exactly_a_gap_apart() {
        let mut schedule = Schedule::new(Arrivals::Fixed, 4000.0, 5 * MS, Rng::new(1));
        let times = take(&mut schedule, 100_000);
        for (k, &time) in times.iter().enumerate() {
            assert_eq!(time, 5 * MS + Duration::from_micros(250) * (k as u32 + 1));
        }
        // A gap that is not a whole number of nanoseconds does not drift.
        let mut schedule = Schedule::new(Arrivals::Fixed, 3.0, Duration::ZERO, Rng::new(1));
        let times = take(&mut schedule, 3000);
        assert_eq!(times[2999], Duration::from_secs(1000));
    }

    #[test]
    fn poisson_gaps_average_the_rate_and_vary_like_an_exponential() {
        let n = 200_000;
        let mut schedule = Schedule::new(Arrivals::Poisson, 1000.0, Duration::ZERO, Rng::new(7));
        let times = take(&mut schedule, n);
        let gaps: Vec<f64> = std::iter::once(times[0])
            .chain(times.windows(2).map(|w| w[1] - w[0]))
            .map(|gap| gap.as_secs_f64() * 1e3)
            .collect();
        let mean = gaps.iter().sum::<f64>() / n as f64;
        let variance = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n as f64;
        // Mean 1 ms; an exponential's standard deviation equals its mean.
        assert!((mean - 1.0).abs() < 0.01, "mean gap {mean} ms");
        assert!(
            (variance.sqrt() - 1.0).abs() < 0.02,
            "sd {}",
            variance.sqrt()
        );
        // Memoryless: about e^-1 of the gaps exceed the mean.
        let long = gaps.iter().filter(|&&g| g > 1.0).count() as f64 / n as f64;
        assert!((long - (-1.0f64).exp()).abs() < 0.01, "{long}");
        // The same seed, the same arrivals.
        let mut again = Schedule::new(Arrivals::Poisson, 1000.0, Duration::ZERO, Rng::new(7));
        assert_eq!(take(&mut again, n), times);
    }

    /// A late poll yields every arrival it missed, each at its scheduled
    /// time: the arrivals do not depend on when the thread looks.
    #[test]
    fn a_late_poll_yields_the_missed_arrivals() {
        let mut schedule = Schedule::new(Arrivals::Fixed, 1000.0, Duration::ZERO, Rng::new(1));
        let late = Duration::from_micros(10_500);
        let mut missed = Vec::new();
        while let Some(time) = schedule.due(late) {
            missed.push(time);
        }
        assert_eq!(missed, (1..=10).map(|k| k * MS).collect::<Vec<_>>());
        assert_eq!(schedule.next(), 11 * MS);
        assert_eq!(schedule.due(late), None);

        for arrivals in [Arrivals::Poisson, Arrivals::Fixed] {
            let end = Duration::from_secs(1);
            let mut often = Schedule::new(arrivals, 5000.0, Duration::ZERO, Rng::new(3));
            let mut polled = Vec::new();
            for step in 1..=10_000u32 {
                while let Some(time) = often.due(Duration::from_micros(100) * step) {
                    polled.push(time);
                }
            }
            let mut once = Schedule::new(arrivals, 5000.0, Duration::ZERO, Rng::new(3));
            let mut stalled = Vec::new();
            while let Some(time) = once.due(end) {
                stalled.push(time);
            }
            assert_eq!(polled, stalled, "{arrivals:?}");
            assert!((4800..5200).contains(&stalled.len()), "{}", stalled.len());
        }
    }

    #[test]
    fn the_backlog_is_bounded_and_counts_what_it_cannot_hold() {
        let schedule = Schedule::new(Arrivals::Fixed, 1000.0, Duration::ZERO, Rng::new(1));
        let mut open = OpenLoop::new(schedule, 2);
        let mut sent = 0;
        while let Some(due) = open.due(5 * MS) {
            if sent < 1 {
                sent += 1; // One idle client.
            } else {
                open.defer(due);
            }
        }
        // 1 ms sent, 2 and 3 ms queued, 4 and 5 ms counted.
        assert_eq!(open.next_queued(), Some(2 * MS));
        let mut counters = Counters::default();
        open.add_totals(&mut counters);
        assert_eq!(counters.get(OPEN_LOOP_ARRIVALS_COUNTER), 5);
        // 4 and 5 ms found no room; 3 ms was still queued at the stop.
        assert_eq!(counters.get(OPEN_LOOP_NO_FREE_CLIENT_COUNTER), 3);
    }

    /// A client that completes its operation when any message arrives.
    #[derive(Default)]
    struct Echo {
        outstanding: bool,
        result: Option<Vec<u8>>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum NoTimer {}

    struct NoCodec;

    impl SharedState for NoCodec {
        type Message = ();
        type Outbound = ();

        fn decode(&self, _: Source, _: &[u8]) -> Result<(Addr, ()), DropReason> {
            Err(DropReason("test: nothing decodes"))
        }

        fn encode(&self, _: &(), _: &mut Vec<u8>) -> Result<(), DropReason> {
            Ok(())
        }
    }

    impl State for Echo {
        type Message = ();
        type Outbound = ();
        type Timer = NoTimer;
        type Shared = NoCodec;

        fn on_message(&mut self, _: Addr, _: (), _: &mut Context<'_, (), NoTimer>) {
            if std::mem::take(&mut self.outstanding) {
                self.result = Some(Vec::new());
            }
        }

        fn on_timer(&mut self, timer: NoTimer, _: &mut Context<'_, (), NoTimer>) {
            match timer {}
        }
    }

    impl Client for Echo {
        fn invoke(&mut self, _: &[u8], _: &mut Context<'_, (), NoTimer>) {
            self.outstanding = true;
        }

        fn take_result(&mut self) -> Option<Vec<u8>> {
            self.result.take()
        }

        fn recipient(_: &()) -> Option<ClientId> {
            None
        }
    }

    /// A client thread of `clients` [`Echo`]s whose clock the test sets:
    /// nothing here reads the real clock but for the starting instant.
    fn thread(load: Load, clients: usize) -> (ClientThread<Echo>, Ops) {
        thread_with(load, clients, Box::new(|_: &mut Rng, _: &mut Vec<u8>| {}))
    }

    /// [`thread`], with the generator `ops`.
    fn thread_with(load: Load, clients: usize, mut ops: Ops) -> (ClientThread<Echo>, Ops) {
        let started = Instant::now();
        let transport = Transport::bind_with(
            "127.0.0.1:0".parse().unwrap(),
            TransportKind::Epoll,
            &Options::default(),
        )
        .unwrap();
        let mut thread = ClientThread {
            first: ClientId(1),
            slots: (0..clients)
                .map(|_| Slot {
                    core: Core::new(Echo::default()),
                    due: None,
                    timer_at: None,
                    recorded: None,
                })
                .collect(),
            transport,
            replicas: Vec::new(),
            timers: BinaryHeap::new(),
            idle: VecDeque::new(),
            load,
            open: None,
            threads: 1,
            rng: Rng::new(1),
            started,
            clock: started,
            counters: Counters::default(),
            latencies: Latencies::new(started, started, None),
            buf: Vec::new(),
            op: Vec::new(),
            history: Recorder::new(super::super::history::HistoryShared::new(), 1),
        };
        thread.start_load(&NoCodec, &mut ops).unwrap();
        (thread, ops)
    }

    /// Delivers a reply to client `index` at `at` after the thread started.
    fn reply(thread: &mut ClientThread<Echo>, ops: &mut Ops, index: u32, at: Duration) {
        thread.clock = thread.started + at;
        let from = Addr::Replica(ReplicaId(0));
        thread
            .call(index, &NoCodec, ops, |core, now, me, rng| {
                core.on_message(now, me, rng, from, ())
            })
            .unwrap();
    }

    /// The measured latencies, to the millisecond, smallest first.
    fn latencies_ms(thread: &ClientThread<Echo>) -> Vec<u64> {
        let measured = &thread.latencies.measured;
        measured
            .iter_recorded()
            .flat_map(|v| {
                let ms = (measured.median_equivalent(v.value_iterated_to()) + 500) / 1000;
                std::iter::repeat_n(ms, v.count_at_value() as usize)
            })
            .collect()
    }

    /// Open loop: an operation's latency counts from its scheduled arrival,
    /// however late it was sent, whether the thread was late to look or it
    /// waited in the backlog for a client.
    #[test]
    fn open_loop_latency_counts_from_the_scheduled_arrival() {
        let (mut thread, mut ops) = thread(
            Load::Open {
                ops_per_sec: 1000,
                arrivals: Arrivals::Fixed,
            },
            1,
        );
        // Arrivals at 1, 2, ... ms. The thread first looks at 6 ms: the 1 ms
        // arrival goes to the one client (sent 5 ms late), the 2 ms one to
        // the backlog (room for one), 3 to 6 ms are counted.
        thread.clock = thread.started + 6 * MS;
        thread.arrive(&NoCodec, &mut ops).unwrap();
        assert_eq!(thread.slots[0].due, Some(thread.started + MS));
        // Done at 7 ms: 6 ms from its intended time, not 1 ms from its send.
        // The client at once takes the 2 ms arrival from the backlog.
        reply(&mut thread, &mut ops, 0, 7 * MS);
        assert_eq!(thread.slots[0].due, Some(thread.started + 2 * MS));
        reply(&mut thread, &mut ops, 0, 9 * MS);
        assert_eq!(latencies_ms(&thread), [6, 7]);
        assert_eq!(thread.idle, [0]);
        let mut counters = Counters::default();
        thread.open.take().unwrap().add_totals(&mut counters);
        assert_eq!(counters.get(OPEN_LOOP_ARRIVALS_COUNTER), 6);
        assert_eq!(counters.get(OPEN_LOOP_NO_FREE_CLIENT_COUNTER), 4);
    }

    /// After a stall, a round takes at most `ARRIVALS_PER_ROUND_MAX` of the
    /// missed arrivals; the next round goes on where it stopped.
    #[test]
    fn a_round_takes_a_bounded_share_of_a_backlog_of_arrivals() {
        let (mut thread, mut ops) = thread(
            Load::Open {
                ops_per_sec: 1_000_000,
                arrivals: Arrivals::Fixed,
            },
            1,
        );
        thread.clock = thread.started + 10 * MS;
        let round = ARRIVALS_PER_ROUND_MAX as u64;
        for rounds in 1..=3 {
            thread.arrive(&NoCodec, &mut ops).unwrap();
            let open = thread.open.as_ref().unwrap();
            assert_eq!(open.arrivals, rounds * round);
            assert_eq!(
                open.schedule.next(),
                Duration::from_micros(rounds * round + 1)
            );
        }
    }

    /// Closed loop: latency counts from each invocation.
    #[test]
    fn closed_loop_latency_counts_from_the_invocation() {
        let (mut thread, mut ops) = thread(Load::Closed, 1);
        reply(&mut thread, &mut ops, 0, 3 * MS);
        // Invoked again at 3 ms, done at 4 ms.
        reply(&mut thread, &mut ops, 0, 4 * MS);
        assert_eq!(latencies_ms(&thread), [1, 3]);
        assert!(thread.open.is_none());
    }

    /// Generates operations `[0]`, `[1]`, ... and marks the even ones.
    struct EveryOther(u8);

    impl OpSource for EveryOther {
        fn next_op(&mut self, _: &mut Rng, op: &mut Vec<u8>) -> bool {
            self.0 += 1;
            op.push(self.0 - 1);
            (self.0 - 1).is_multiple_of(2)
        }
    }

    /// Marked operations (only they) go into the history with their client,
    /// the round clock at invocation and at completion, and their result; an
    /// operation outstanding at the stop stays without a completion.
    #[test]
    fn marked_operations_are_recorded_with_their_times() {
        let (mut thread, mut ops) = thread_with(Load::Closed, 2, Box::new(EveryOther(0)));
        // Client 0 got op [0] (marked), client 1 op [1] (not), at 0 ms.
        reply(&mut thread, &mut ops, 0, 3 * MS); // [0] done; [2] (marked) invoked.
        reply(&mut thread, &mut ops, 1, 4 * MS); // [1] done; [3] invoked.
        reply(&mut thread, &mut ops, 0, 6 * MS); // [2] done; [4] invoked.
        let shared = Arc::clone(thread.history.shared());
        shared.hand_in(&mut thread.history);
        let recorded = shared.take();
        assert_eq!(recorded.cut_ns, None);
        let ms = |n: u64| n * 1_000_000;
        let ops: Vec<_> = recorded
            .ops
            .iter()
            .map(|op| {
                (
                    op.client,
                    op.op.clone(),
                    op.invoked_ns,
                    op.completed.as_ref().map(|c| c.0),
                )
            })
            .collect();
        assert_eq!(
            ops,
            [
                (1, vec![0], 0, Some(ms(3))),
                (1, vec![2], ms(3), Some(ms(6))),
                (1, vec![4], ms(6), None),
            ]
        );
        assert_eq!(
            recorded.ops[0].completed.as_ref().unwrap().1,
            Vec::<u8>::new()
        );
    }

    /// Whether an operation is measured goes by when it was due: one due in
    /// the warm-up is not, however late it completes.
    #[test]
    fn the_measured_window_goes_by_the_due_time() {
        let t0 = Instant::now();
        let mut latencies = Latencies::new(t0, t0 + 10 * MS, Some(t0 + 20 * MS));
        latencies.record(t0 + 9 * MS, t0 + 15 * MS);
        latencies.record(t0 + 10 * MS, t0 + 25 * MS);
        latencies.record(t0 + 20 * MS, t0 + 21 * MS);
        assert_eq!(latencies.interval_ops, 3);
        assert_eq!(latencies.measured_ops, 1);
        assert!(
            latencies
                .measured
                .equivalent(latencies.measured.max(), 15_000)
        );
    }

    /// Completions are binned by completion time, from the origin; the bins
    /// stop at their maximum and what comes later is counted.
    #[test]
    fn completions_are_binned_by_completion_time() {
        let t0 = Instant::now();
        let bin = Duration::from_millis(wire::control::COMPLETION_BIN_MS);
        let mut latencies = Latencies::new(t0, t0, None);
        latencies.record(t0, t0 + bin / 2);
        latencies.record(t0, t0 + bin / 2);
        latencies.record(t0, t0 + bin * 3);
        latencies.record(t0, t0 + bin * COMPLETION_BINS_MAX as u32);
        assert_eq!(latencies.completions[..4], [2, 0, 0, 1]);
        assert_eq!(latencies.completions[4..].iter().sum::<u32>(), 0);
        assert!(latencies.completions.len() <= COMPLETION_BINS_MAX);
        assert_eq!(latencies.past_end, 1);
    }
}
