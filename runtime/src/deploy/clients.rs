//! Benchmark clients, thousands to a thread.
//!
//! Each client thread owns one socket and a slice of the clients. Replies are
//! handed to the client they are for ([`Client::recipient`]); one timer heap
//! serves every client on the thread. Closed loop: a client issues its next
//! operation the moment the previous one completes. Open loop: the thread
//! issues operations at a fixed rate, each to the next idle client.
//!
//! Latency is measured from `invoke` to the result, on the client thread's
//! clock (read once per loop round, right after the receive), into an
//! hdrhistogram; operations invoked during the warm-up or
//! after the measured window (the cool-down) are counted but not measured.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use wire::control::Load;
use wire::{Addr, ClientId, ReplicaId};

use super::{
    ClientFactory, ClientsSetup, Deployable, Idler, OpFactory, RunShared, Running, ThreadTotals,
    block_timeout, decode_from, latency_histogram, record_latency, spawn_thread,
};
use crate::actor::{Client, Context, Counters, Dest, Outbox, SharedState};
use crate::net::{Transport, Waker};
use crate::rng::Rng;
use crate::time::Time;

/// How often a client thread publishes its progress for [`Running::metrics`].
const PUBLISH_INTERVAL: Duration = Duration::from_millis(10);

/// An operation generator, as one client thread uses it.
type Ops = Box<dyn FnMut(&mut Rng) -> Vec<u8> + Send>;

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
                    (lo..hi)
                        .map(|i| make_client(ClientId(first + i)))
                        .collect::<Vec<C>>()
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
            .collect()
    });
    let run = RunShared::new();
    let started = Instant::now();
    let mut handles = Vec::new();
    let mut addrs = Vec::new();
    let mut kind = None;
    for t in 0..threads {
        let transport = Transport::bind_with(
            SocketAddr::new(setup.bind, 0),
            setup.transport,
            &super::transport_options(),
        )?;
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
            rng: Rng::new(first.0),
            started,
            clock: started,
            warmup_end: started + setup.warmup,
            measure_end: setup.measure.map(|m| started + setup.warmup + m),
            counters: Counters::default(),
            measured: latency_histogram(),
            measured_ops: 0,
            interval: latency_histogram(),
            interval_ops: 0,
            buf: Vec::with_capacity(wire::MESSAGE_SIZE_MAX),
        };
        let tick = match setup.load {
            Load::Closed => None,
            Load::Open { ops_per_sec } => {
                let per_thread = ops_per_sec as f64 / f64::from(threads);
                (per_thread > 0.0).then(|| Duration::from_secs_f64(1.0 / per_thread))
            }
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
                thread.run(states, ops, tick, &shared, &waker, &run_thread, idler)
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

/// The memory one idle client costs on its thread, not counting heap memory
/// its state points to (an idle unreplicated client points to none besides its
/// armed-timer list).
pub fn client_slot_bytes<C: Client>() -> usize {
    size_of::<Slot<C>>()
}

struct Slot<C: Client> {
    state: C,
    outbox: Outbox<C::Outbound, C::Timer>,
    /// When the outstanding operation was invoked.
    invoked: Option<Instant>,
    /// The earliest deadline queued for this client in the thread's heap.
    timer_at: Option<Time>,
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
    rng: Rng,
    started: Instant,
    /// The clock as read once per loop round, right after the receive: what
    /// the round's calls see as now, invoke stamps and completion times
    /// (one clock read a round, not several per operation).
    clock: Instant,
    warmup_end: Instant,
    measure_end: Option<Instant>,
    counters: Counters,
    measured: Histogram<u64>,
    measured_ops: u64,
    /// Since the last publication.
    interval: Histogram<u64>,
    interval_ops: u64,
    buf: Vec<u8>,
}

impl<C: Client> ClientThread<C> {
    #[allow(clippy::too_many_arguments)]
    fn run(
        mut self,
        states: Vec<C>,
        mut ops: Ops,
        tick: Option<Duration>,
        shared: &C::Shared,
        waker: &Waker,
        run: &RunShared,
        mut idler: Idler,
    ) -> io::Result<ThreadTotals> {
        self.slots = states
            .into_iter()
            .map(|state| Slot {
                state,
                outbox: Outbox::default(),
                invoked: None,
                timer_at: None,
            })
            .collect();
        self.clock = Instant::now();
        for index in 0..self.slots.len() as u32 {
            self.call(index, shared, &mut ops, |state, ctx| state.on_start(ctx))?;
        }
        match self.load {
            Load::Closed => {
                for index in 0..self.slots.len() as u32 {
                    self.invoke(index, shared, &mut ops)?;
                }
            }
            Load::Open { .. } => self.idle.extend(0..self.slots.len() as u32),
        }
        self.transport.flush()?;
        let mut next_tick = self.clock;
        let mut published = self.clock;
        let mut datagrams: Vec<(SocketAddr, usize, usize)> = Vec::new();
        let mut arena: Vec<u8> = Vec::new();

        while !run.stopping() {
            // Replies.
            arena.clear();
            datagrams.clear();
            let received = self.transport.recv(|src, bytes| {
                let start = arena.len();
                arena.extend_from_slice(bytes);
                datagrams.push((src, start, arena.len()));
            })?;
            self.clock = Instant::now();
            for &(src, start, end) in &datagrams {
                let (from, msg) = match decode_from(shared, &self.replicas, src, &arena[start..end])
                {
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
                self.call(index, shared, &mut ops, |state, ctx| {
                    state.on_message(from, msg, ctx)
                })?;
            }
            // Timers.
            let fired = self.fire_timers(shared, &mut ops)?;
            // Open-loop arrivals.
            if let Some(tick) = tick {
                let now = self.clock;
                while next_tick <= now {
                    match self.idle.pop_front() {
                        Some(index) => self.invoke(index, shared, &mut ops)?,
                        None => self.counters.add("open loop: no idle client", 1),
                    }
                    next_tick += tick;
                }
            }
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
                    if tick.is_some() {
                        deadline = Some(deadline.map_or(next_tick, |d| d.min(next_tick)));
                    }
                    let timeout = block_timeout(Instant::now(), deadline).min(PUBLISH_INTERVAL);
                    self.transport.wait(timeout, waker)?;
                }
                waker.cancel_sleep();
                idler.woke();
            }
        }
        self.publish(run);
        let mut counters = std::mem::take(&mut self.counters);
        self.transport.add_totals(&mut counters);
        for slot in &self.slots {
            counters.merge(&slot.outbox.counters);
        }
        Ok(ThreadTotals {
            counters,
            latency_us: Some(self.measured),
            measured_ops: self.measured_ops,
        })
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
            for _ in 0..slot.outbox.timers.len() {
                let Some(timer) = self.slots[index as usize].outbox.timers.pop_due(now) else {
                    break;
                };
                self.call(index, shared, ops, |state, ctx| state.on_timer(timer, ctx))?;
            }
            self.schedule_timer(index);
            fired = true;
        }
        Ok(fired)
    }

    fn invoke(&mut self, index: u32, shared: &C::Shared, ops: &mut Ops) -> io::Result<()> {
        let op = ops(&mut self.rng);
        self.slots[index as usize].invoked = Some(self.clock);
        self.call(index, shared, ops, |state, ctx| state.invoke(op, ctx))
    }

    /// Calls into one client, sends what it sent, collects its result (and,
    /// closed loop, starts its next operation), and queues its next timer.
    fn call(
        &mut self,
        index: u32,
        shared: &C::Shared,
        ops: &mut Ops,
        f: impl FnOnce(&mut C, &mut Context<'_, C::Outbound, C::Timer>),
    ) -> io::Result<()> {
        let now = self.now();
        let me = Addr::Client(ClientId(self.first.0 + u64::from(index)));
        let slot = &mut self.slots[index as usize];
        f(
            &mut slot.state,
            &mut Context::new(now, me, &mut slot.outbox, &mut self.rng),
        );
        self.flush_sends(index, shared)?;
        if self.slots[index as usize].state.take_result().is_some() {
            self.complete(index);
            match self.load {
                Load::Closed => {
                    let op = ops(&mut self.rng);
                    let slot = &mut self.slots[index as usize];
                    slot.invoked = Some(self.clock);
                    let mut ctx = Context::new(now, me, &mut slot.outbox, &mut self.rng);
                    slot.state.invoke(op, &mut ctx);
                    self.flush_sends(index, shared)?;
                }
                Load::Open { .. } => self.idle.push_back(index),
            }
        }
        self.schedule_timer(index);
        Ok(())
    }

    fn flush_sends(&mut self, index: u32, shared: &C::Shared) -> io::Result<()> {
        let slot = &mut self.slots[index as usize];
        for (dest, msg) in slot.outbox.sends.drain(..) {
            self.buf.clear();
            if let Err(reason) = shared.encode(&msg, &mut self.buf) {
                self.counters.add(reason.0, 1);
                continue;
            }
            match dest {
                Dest::To(Addr::Replica(ReplicaId(i))) => match self.replicas.get(usize::from(i)) {
                    Some(&addr) => self.transport.send(addr, &self.buf)?,
                    None => self.counters.add("clients: send to no such replica", 1),
                },
                Dest::Replicas => {
                    for &addr in &self.replicas {
                        self.transport.send(addr, &self.buf)?;
                    }
                }
                Dest::To(Addr::Client(_)) => self.counters.add("clients: send to a client", 1),
            }
        }
        Ok(())
    }

    fn complete(&mut self, index: u32) {
        let Some(invoked) = self.slots[index as usize].invoked.take() else {
            self.counters
                .add("clients: result with nothing outstanding", 1);
            return;
        };
        let latency = self.clock.saturating_duration_since(invoked);
        record_latency(&mut self.interval, latency);
        self.interval_ops += 1;
        if invoked >= self.warmup_end && self.measure_end.is_none_or(|end| invoked < end) {
            record_latency(&mut self.measured, latency);
            self.measured_ops += 1;
        }
    }

    fn schedule_timer(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if let Some(deadline) = slot.outbox.timers.next_deadline()
            && slot.timer_at.is_none_or(|queued| deadline < queued)
        {
            slot.timer_at = Some(deadline);
            self.timers.push(Reverse((deadline, index)));
        }
    }

    fn publish(&mut self, run: &RunShared) {
        if self.interval_ops == 0 {
            return;
        }
        run.ops.fetch_add(self.interval_ops, Ordering::Relaxed);
        self.interval_ops = 0;
        let mut shared = run
            .interval_latency
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shared.add(&self.interval).expect("same histogram bounds");
        self.interval.reset();
    }
}
