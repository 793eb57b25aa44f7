//! A replica as a pipeline of stages.
//!
//! ```text
//!            inbound             decoded              outgoing
//! Receive ──────────▶ Verify ──────────▶ Protocol ──────────▶ Send
//! (socket)  bytes     (n threads)  msgs   (1 thread) msgs      (n threads, socket)
//! ```
//!
//! Each arrow is a bounded channel; a full one drops and counts. Verify and
//! Send are `SharedState` and may run on several threads, which take from the
//! same channel. Each thread owns a [`Waker`]; a stage that hands work to the
//! next wakes the threads that consume it, which costs nothing unless they
//! sleep.
//!
//! With every stage on one thread there are no channels: a received datagram
//! is decoded, handled and answered in one pass, each message to one
//! destination encoded straight into the transport's send batch
//! ([`Transport::send_with`]), one to every replica into one reusable buffer
//! and queued for each from there. The send stage of a pipeline does the
//! same.
//!
//! The protocol stage drives the state through the one driver core
//! ([`crate::driver::Driver`]); what it adds is the replica's clock (read
//! once per batch), the address book that resolves destinations to sockets,
//! and group commit: the durable writes of a whole batch of messages are
//! committed together (one `fsync`), and the messages behind them wait in
//! the driver until then.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use wire::control::{Stage, ThreadSpec};
use wire::{Addr, Bytes, ClientId, ReplicaId};

use super::arena::Arena;
use super::faults::NodeFaults;
use super::{
    Deployable, Idler, ReplicaSetup, RunShared, Running, STAGE_BATCH_MAX, STAGE_QUEUE_MAX,
    ThreadTotals, block_timeout, decode_from, earliest, spawn_thread, transport_options,
};
use crate::actor::{Counters, Dest, DropReason, SharedState, State};
use crate::driver::Driver;
use crate::durable::{StateFile, Stored, Sync, Write};
use crate::net::{Transport, Waker};
use crate::rng::Rng;
use crate::time::Time;

/// Clients whose address a replica remembers at most. Past this, replies to
/// new clients are dropped and counted: a flood of forged client ids cannot
/// grow the table without bound.
pub const CLIENT_ROUTES_MAX: usize = 1 << 20;

/// Starts replica `setup.id`: binds its socket and starts its stage threads.
/// What it persists is kept in memory only (see [`spawn_durable_replica`]).
pub fn spawn_replica<S: Deployable>(
    state: S,
    shared: Arc<S::Shared>,
    setup: ReplicaSetup,
) -> io::Result<Running> {
    spawn_durable_replica(state, shared, setup, None)
}

/// Where a replica keeps its durable state: a file, and whether to `fsync`
/// it before the messages behind a persist leave.
#[derive(Clone, Debug)]
pub struct DurableSetup {
    pub path: PathBuf,
    pub sync: Sync,
}

/// Starts replica `setup.id` like [`spawn_replica`], with its durable state
/// in `durable` (`None`: in memory, lost with the process). A file that
/// holds state from an earlier run is replayed, and the replica recovers
/// from it ([`crate::State::on_recover`]).
pub fn spawn_durable_replica<S: Deployable>(
    state: S,
    shared: Arc<S::Shared>,
    setup: ReplicaSetup,
    durable: Option<DurableSetup>,
) -> io::Result<Running> {
    setup
        .threads
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("thread map: {e}")))?;
    let me = usize::from(setup.id.0);
    let Some(&addr) = setup.replicas.get(me) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "replica {me} has no address ({} replicas)",
                setup.replicas.len()
            ),
        ));
    };
    let mut transport = Transport::bind_with(addr, setup.transport, &transport_options())?;
    // Each node's draws of its own (send-only handles derive theirs).
    transport.emulate(setup.link, setup.link.seed ^ u64::from(setup.id.0));
    let kind = transport.kind();
    let local = transport.local_addr();
    let run = RunShared::new();
    let started = Instant::now();
    let mut replicas = setup.replicas.clone();
    // Port 0 asks for any port: peers must be told the one the kernel chose.
    replicas[me] = local;
    let storage = match durable {
        Some(DurableSetup { path, sync }) => {
            Storage::File(StateFile::open(&path, sync).map_err(|e| {
                io::Error::new(e.kind(), format!("durable state {}: {e}", path.display()))
            })?)
        }
        None => Storage::Memory(Stored::default()),
    };
    let core = ProtocolCore::new(
        state,
        setup.id,
        replicas,
        started,
        storage,
        Arc::clone(&run.faults),
    );

    let threads = if let [only] = &setup.threads.threads[..] {
        let waker = Arc::new(Waker::new()?);
        run.add_waker(&waker);
        let run_thread = Arc::clone(&run);
        let idler = Idler::new(setup.idle);
        vec![spawn_thread(
            format!("replica-{me}"),
            only.core,
            &run,
            move || single_thread(core, &shared, transport, &waker, &run_thread, idler),
        )?]
    } else {
        spawn_pipeline(core, shared, transport, &setup, &run)?
    };
    Ok(Running {
        transport: kind,
        addrs: vec![local],
        shared: run,
        threads,
        started,
        warmup: Duration::ZERO,
        measure: None,
    })
}

/// Where an outgoing message goes, resolved to sockets.
#[derive(Clone, Copy, Debug)]
enum Target {
    One(SocketAddr),
    /// Every replica but this one.
    Replicas,
}

/// The protocol stage's state: the node on the one driver core
/// ([`Driver`]: state, outbox, timers, random stream, the barrier), and what
/// the replica keeps around it: its clock, the address book, and where its
/// durable writes go.
struct ProtocolCore<S: State> {
    driver: Driver<S>,
    started: Instant,
    /// The clock as read by the last [`ProtocolCore::tick`]: what handlers
    /// see as now. Read once per batch of messages, not once per message.
    clock: Instant,
    replicas: Vec<SocketAddr>,
    /// Keyed by ids that clients choose: std's SipHash with a random key,
    /// so no one can pick ids that collide (FxHash would let a flood of
    /// chosen ids turn every lookup into a scan).
    clients: HashMap<ClientId, SocketAddr>,
    counters: Counters,
    /// Messages handled since metrics were last published.
    handled: u64,
    /// Where the durable writes go: committed once per batch of messages
    /// (one `fsync` for all of them), and the messages behind them wait in
    /// the driver until then.
    storage: Storage,
    /// Faults in force (the slow one applies here), and where the leader
    /// and executed slot are published.
    faults: Arc<NodeFaults>,
}

/// Where a replica's durable state goes.
#[derive(Debug)]
enum Storage {
    /// Nowhere: kept for the life of the process.
    Memory(Stored),
    File(StateFile),
}

impl Storage {
    fn stored(&self) -> &Stored {
        match self {
            Storage::Memory(stored) => stored,
            Storage::File(file) => file.stored(),
        }
    }

    fn commit(&mut self, writes: Vec<Write>) -> io::Result<()> {
        match self {
            Storage::Memory(stored) => stored
                .apply(writes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e)),
            Storage::File(file) => file.commit(writes),
        }
    }
}

impl<S: State> ProtocolCore<S> {
    fn new(
        state: S,
        id: ReplicaId,
        replicas: Vec<SocketAddr>,
        started: Instant,
        storage: Storage,
        faults: Arc<NodeFaults>,
    ) -> ProtocolCore<S> {
        ProtocolCore {
            driver: Driver::new(Addr::Replica(id), state, Rng::new(u64::from(id.0) ^ 0x5eed)),
            started,
            clock: started,
            replicas,
            clients: HashMap::new(),
            counters: Counters::default(),
            handled: 0,
            storage,
            faults,
        }
    }

    /// Reads the clock for the calls that follow (a batch of messages, the
    /// timers after it).
    fn tick(&mut self) {
        self.clock = Instant::now();
    }

    fn now(&self) -> Time {
        let since = self.clock.saturating_duration_since(self.started);
        Time::from_nanos(since.as_nanos() as u64)
    }

    fn start(&mut self) {
        self.tick();
        let now = self.now();
        let stored = self.storage.stored();
        if stored.is_empty() {
            self.driver.start(now);
        } else {
            self.driver.recover(now, stored);
        }
    }

    fn on_message(&mut self, src: SocketAddr, from: Addr, msg: S::Message) {
        if let Addr::Client(id) = from {
            self.learn_client(id, src);
        }
        let now = self.now();
        self.driver.on_message(now, from, msg);
        self.handled += 1;
        if let Some(delay) = self.faults.slow_delay() {
            std::thread::sleep(delay);
        }
    }

    fn learn_client(&mut self, id: ClientId, src: SocketAddr) {
        // One lookup, and a write only when the route changed: it almost
        // never does.
        if let Some(route) = self.clients.get_mut(&id) {
            if *route != src {
                *route = src;
            }
        } else if self.clients.len() < CLIENT_ROUTES_MAX {
            self.clients.insert(id, src);
        } else {
            self.counters.add("routes: client table full", 1);
        }
    }

    /// Fires the timers due now (at most as many as are armed).
    fn on_timers(&mut self) -> bool {
        let now = self.now();
        self.driver.fire_timers(now)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let at = self.driver.next_deadline()?;
        Some(self.started + Duration::from_nanos(at.as_nanos()))
    }

    /// Hands every message the last calls sent to `emit`, resolved, except
    /// those behind a durable write, which wait in the driver for
    /// [`ProtocolCore::commit`] (and every later one behind them, so that
    /// messages still leave in the order they were sent).
    fn drain(&mut self, mut emit: impl FnMut(Target, S::Outbound)) {
        let (replicas, clients) = (&self.replicas, &self.clients);
        self.driver.drain(|dest, msg| {
            emit(resolve(replicas, clients, dest)?, msg);
            Ok(())
        });
    }

    /// Makes the batch's durable writes durable (one `fsync` for the batch,
    /// where the file asks for it), then hands the messages that waited for
    /// them to `emit`. An error means the replica can no longer keep what it
    /// promised: the caller stops.
    fn commit(&mut self, mut emit: impl FnMut(Target, S::Outbound)) -> io::Result<()> {
        if !self.driver.has_writes() {
            return Ok(());
        }
        let mut writes = Vec::new();
        self.driver.take_writes(&mut writes);
        self.counters.add("durable: batches committed", 1);
        self.counters
            .add("durable: writes committed", writes.len() as u64);
        self.storage.commit(writes)?;
        let (replicas, clients) = (&self.replicas, &self.clients);
        self.driver.release(|dest, msg| {
            emit(resolve(replicas, clients, dest)?, msg);
            Ok(())
        });
        Ok(())
    }

    fn publish(&mut self, run: &RunShared) {
        if self.handled > 0 {
            run.ops.fetch_add(self.handled, Ordering::Relaxed);
            self.handled = 0;
        }
        let state = self.driver.state();
        self.faults.publish(state.leader(), state.executed_slot());
    }

    fn into_counters(mut self) -> Counters {
        self.counters.merge(self.driver.counters());
        self.counters
    }
}

/// Where `dest` is, or why it cannot go anywhere (counted by the driver).
#[inline]
fn resolve(
    replicas: &[SocketAddr],
    clients: &HashMap<ClientId, SocketAddr>,
    dest: Dest,
) -> Result<Target, DropReason> {
    match dest {
        Dest::Replicas => Ok(Target::Replicas),
        Dest::To(Addr::Replica(ReplicaId(i))) => match replicas.get(usize::from(i)) {
            Some(&addr) => Ok(Target::One(addr)),
            None => Err(DropReason("send: no such replica")),
        },
        Dest::To(Addr::Client(id)) => match clients.get(&id) {
            Some(&addr) => Ok(Target::One(addr)),
            None => Err(DropReason("send: unknown client")),
        },
    }
}

/// Encodes messages once and queues them for every target, on one transport.
struct Encoder<'a, H: SharedState> {
    shared: &'a H,
    replicas: &'a [SocketAddr],
    me: SocketAddr,
    buf: Vec<u8>,
    /// Partition and Byzantine behaviour sit between it and the socket.
    faults: &'a NodeFaults,
}

impl<H: SharedState> Encoder<'_, H> {
    fn send(
        &mut self,
        transport: &mut Transport,
        counters: &mut Counters,
        target: Target,
        msg: &H::Outbound,
    ) -> io::Result<()> {
        if let (Target::One(addr), false) = (target, self.faults.active()) {
            // Encoded straight into the send batch.
            if let Err(reason) = transport.send_with(addr, |buf| self.shared.encode(msg, buf))? {
                counters.add(reason.0, 1);
            }
            return Ok(());
        }
        self.buf.clear();
        if let Err(reason) = self.shared.encode(msg, &mut self.buf) {
            counters.add(reason.0, 1);
            return Ok(());
        }
        if self.faults.active() {
            let send = |addr, bytes: &[u8]| transport.send(addr, bytes);
            return match target {
                Target::One(addr) => self.faults.send(addr, self.replicas, &self.buf, send),
                Target::Replicas => {
                    let mut send = send;
                    for &addr in self.replicas.iter().filter(|&&a| a != self.me) {
                        self.faults
                            .send(addr, self.replicas, &self.buf, &mut send)?;
                    }
                    Ok(())
                }
            };
        }
        match target {
            Target::One(addr) => transport.send(addr, &self.buf),
            Target::Replicas => {
                for &addr in self.replicas.iter().filter(|&&a| a != self.me) {
                    transport.send(addr, &self.buf)?;
                }
                Ok(())
            }
        }
    }
}

/// Every stage on one thread: receive, decode, handle, encode and send in one
/// pass, with no channels.
fn single_thread<S: State>(
    mut core: ProtocolCore<S>,
    shared: &S::Shared,
    mut transport: Transport,
    waker: &Waker,
    run: &RunShared,
    mut idler: Idler,
) -> io::Result<ThreadTotals> {
    let replicas = core.replicas.clone();
    let faults = Arc::clone(&core.faults);
    let mut sender = Encoder {
        shared,
        replicas: &replicas,
        me: transport.local_addr(),
        buf: Vec::with_capacity(wire::MESSAGE_SIZE_MAX),
        faults: &faults,
    };
    let mut counters = Counters::default();
    let mut arena = Arena::new();
    // `commit`: also make the batch's durable writes durable and send what
    // waited for them (once per batch, not once per message).
    let mut send_all = |core: &mut ProtocolCore<S>,
                        transport: &mut Transport,
                        counters: &mut Counters,
                        commit: bool| {
        let mut result = Ok(());
        let mut emit = |target, msg: S::Outbound| {
            if result.is_ok() {
                result = sender.send(transport, counters, target, &msg);
            }
        };
        core.drain(&mut emit);
        if commit {
            core.commit(&mut emit)?;
        }
        result
    };
    core.start();
    send_all(&mut core, &mut transport, &mut counters, true)?;
    transport.flush()?;
    while !run.stopping() {
        let received = transport.recv(|src, bytes| {
            if faults.accept(src, &replicas, bytes) {
                arena.push(src, bytes);
            }
        })?;
        core.tick();
        for (src, datagram) in arena.take() {
            match decode_from(shared, &replicas, src, &datagram) {
                Ok((from, msg)) => core.on_message(src, from, msg),
                Err(reason) => counters.add(reason, 1),
            }
            send_all(&mut core, &mut transport, &mut counters, false)?;
        }
        let fired = core.on_timers();
        send_all(&mut core, &mut transport, &mut counters, true)?;
        transport.flush()?;
        core.publish(run);
        if idler.should_block(received > 0 || fired) {
            waker.prepare_sleep();
            if !run.stopping() {
                let timeout = block_timeout(Instant::now(), core.next_deadline());
                transport.wait(timeout, waker)?;
            }
            waker.cancel_sleep();
            idler.woke();
        }
    }
    transport.add_totals(&mut counters);
    counters.merge(&core.into_counters());
    Ok(ThreadTotals {
        counters,
        latency_us: None,
        measured_ops: 0,
        completions: Vec::new(),
        idle_spin: idler.spun(),
    })
}

/// A datagram on its way from Receive to Verify: a slice of the receive
/// stage's buffer ([`Arena`]).
type Inbound = (SocketAddr, Bytes);

/// A decoded message on its way from Verify to Protocol.
type Decoded<M> = (SocketAddr, Addr, M);

/// A message on its way from Protocol to Send.
type Outgoing<M> = (Target, M);

/// The sending half of a channel between stages, and the threads to wake
/// when something is put in it.
struct StageOutput<T> {
    tx: Sender<T>,
    consumers: Vec<Arc<Waker>>,
    full_reason: &'static str,
}

impl<T> StageOutput<T> {
    /// Puts `item` in the channel, or drops and counts it if the channel is
    /// full. Consumers are woken by [`StageOutput::wake`], once per batch.
    fn push(&self, item: T, counters: &mut Counters) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => counters.add(self.full_reason, 1),
            Err(TrySendError::Disconnected(_)) => counters.add("queue: consumer gone", 1),
        }
    }

    fn wake(&self) {
        for waker in &self.consumers {
            waker.wake();
        }
    }
}

/// The stages one thread runs in the multi-threaded pipeline.
struct PipelineThread<S: State> {
    /// The replica's bound socket (Receive), or a send-only handle on it.
    transport: Option<Transport>,
    receive: Option<StageOutput<Inbound>>,
    verify: Option<VerifyStage<S::Message>>,
    protocol: Option<ProtocolStage<S>>,
    send: Option<Receiver<Outgoing<S::Outbound>>>,
}

struct VerifyStage<M> {
    input: Receiver<Inbound>,
    output: StageOutput<Decoded<M>>,
}

struct ProtocolStage<S: State> {
    core: ProtocolCore<S>,
    input: Receiver<Decoded<S::Message>>,
    output: StageOutput<Outgoing<S::Outbound>>,
}

type ThreadHandle = (String, JoinHandle<io::Result<ThreadTotals>>);

fn spawn_pipeline<S: Deployable>(
    core: ProtocolCore<S>,
    shared: Arc<S::Shared>,
    transport: Transport,
    setup: &ReplicaSetup,
    run: &Arc<RunShared>,
) -> io::Result<Vec<ThreadHandle>> {
    fn output<T>(
        tx: Sender<T>,
        consumers: Vec<Arc<Waker>>,
        full_reason: &'static str,
    ) -> StageOutput<T> {
        StageOutput {
            tx,
            consumers,
            full_reason,
        }
    }
    let specs: &[ThreadSpec] = &setup.threads.threads;
    let wakers: Vec<Arc<Waker>> = specs
        .iter()
        .map(|_| Waker::new().map(Arc::new))
        .collect::<io::Result<_>>()?;
    for waker in &wakers {
        run.add_waker(waker);
    }
    let consumers = |stage: Stage| -> Vec<Arc<Waker>> {
        specs
            .iter()
            .zip(&wakers)
            .filter(|(spec, _)| spec.stages.contains(&stage))
            .map(|(_, waker)| Arc::clone(waker))
            .collect()
    };
    let (inbound_tx, inbound_rx) = bounded::<Inbound>(STAGE_QUEUE_MAX);
    let (decoded_tx, decoded_rx) = bounded::<Decoded<S::Message>>(STAGE_QUEUE_MAX);
    let (outgoing_tx, outgoing_rx) = bounded::<Outgoing<S::Outbound>>(STAGE_QUEUE_MAX);

    let me = transport.local_addr();
    let replicas = core.replicas.clone();
    // Send-only threads send through a second handle on the replica's own
    // socket, so that peers see every message come from the replica's
    // address (they drop replica messages from anywhere else).
    let mut senders = Vec::new();
    for spec in specs {
        if spec.stages.contains(&Stage::Send) && !spec.stages.contains(&Stage::Receive) {
            senders.push(transport.sender()?);
        }
    }
    let mut bound = Some(transport);
    let mut core = Some(core);
    let mut threads = Vec::new();
    for (index, (spec, waker)) in specs.iter().zip(&wakers).enumerate() {
        let has = |stage| spec.stages.contains(&stage);
        let transport = if has(Stage::Receive) {
            bound.take()
        } else if has(Stage::Send) {
            senders.pop()
        } else {
            None
        };
        let thread = PipelineThread::<S> {
            transport,
            receive: has(Stage::Receive).then(|| {
                output(
                    inbound_tx.clone(),
                    consumers(Stage::Verify),
                    "queue full: verify",
                )
            }),
            verify: has(Stage::Verify).then(|| VerifyStage {
                input: inbound_rx.clone(),
                output: output(
                    decoded_tx.clone(),
                    consumers(Stage::Protocol),
                    "queue full: protocol",
                ),
            }),
            protocol: if has(Stage::Protocol) {
                core.take().map(|core| ProtocolStage {
                    core,
                    input: decoded_rx.clone(),
                    output: output(
                        outgoing_tx.clone(),
                        consumers(Stage::Send),
                        "queue full: send",
                    ),
                })
            } else {
                None
            },
            send: has(Stage::Send).then(|| outgoing_rx.clone()),
        };
        let shared = Arc::clone(&shared);
        let waker = Arc::clone(waker);
        let run_thread = Arc::clone(run);
        let replicas = replicas.clone();
        let idler = Idler::new(setup.idle);
        let name = format!("replica-{}-{index}", setup.id.0);
        threads.push(spawn_thread(name, spec.core, run, move || {
            thread.run(&shared, &waker, &run_thread, idler, &replicas, me)
        })?);
    }
    Ok(threads)
}

impl<S: State> PipelineThread<S> {
    fn run(
        mut self,
        shared: &S::Shared,
        waker: &Waker,
        run: &RunShared,
        mut idler: Idler,
        replicas: &[SocketAddr],
        me: SocketAddr,
    ) -> io::Result<ThreadTotals> {
        let mut counters = Counters::default();
        // The receive stage's buffer, where it runs.
        let mut arena = self.receive.as_ref().map(|_| Arena::new());
        let faults = Arc::clone(&run.faults);
        let mut sender = Encoder {
            shared,
            replicas,
            me,
            buf: Vec::with_capacity(wire::MESSAGE_SIZE_MAX),
            faults: &faults,
        };
        if let Some(ProtocolStage { core, output, .. }) = &mut self.protocol {
            core.start();
            core.drain(|target, msg| output.push((target, msg), &mut counters));
            core.commit(|target, msg| output.push((target, msg), &mut counters))?;
            output.wake();
        }
        while !run.stopping() {
            let mut progress = false;
            if let (Some(out), Some(transport), Some(arena)) =
                (&self.receive, &mut self.transport, &mut arena)
            {
                let received = transport.recv(|src, bytes| {
                    if faults.accept(src, replicas, bytes) {
                        arena.push(src, bytes);
                    }
                })?;
                for inbound in arena.take() {
                    out.push(inbound, &mut counters);
                }
                if received > 0 {
                    out.wake();
                    progress = true;
                }
            }
            if let Some(VerifyStage { input, output: out }) = &self.verify {
                let mut verified = 0;
                for (src, bytes) in input.try_iter().take(STAGE_BATCH_MAX) {
                    match decode_from(shared, replicas, src, &bytes) {
                        Ok((from, msg)) => out.push((src, from, msg), &mut counters),
                        Err(reason) => counters.add(reason, 1),
                    }
                    verified += 1;
                }
                if verified > 0 {
                    out.wake();
                    progress = true;
                }
            }
            if let Some(ProtocolStage {
                core,
                input,
                output: out,
            }) = &mut self.protocol
            {
                let mut handled = false;
                core.tick();
                for (src, from, msg) in input.try_iter().take(STAGE_BATCH_MAX) {
                    core.on_message(src, from, msg);
                    core.drain(|target, msg| out.push((target, msg), &mut counters));
                    handled = true;
                }
                if core.on_timers() {
                    core.drain(|target, msg| out.push((target, msg), &mut counters));
                    handled = true;
                }
                core.commit(|target, msg| out.push((target, msg), &mut counters))?;
                if handled {
                    out.wake();
                    core.publish(run);
                    progress = true;
                }
            }
            if let (Some(input), Some(transport)) = (&self.send, &mut self.transport) {
                let mut sent = false;
                for (target, msg) in input.try_iter().take(STAGE_BATCH_MAX) {
                    sender.send(transport, &mut counters, target, &msg)?;
                    sent = true;
                }
                // Emulated links: what is held leaves on a flush once due.
                if sent || transport.held() > 0 {
                    transport.flush()?;
                    progress |= sent;
                }
            }
            if idler.should_block(progress) {
                self.block(waker, run)?;
                idler.woke();
            }
        }
        match (&self.transport, &self.receive) {
            // The socket's kernel drops once, by the thread that receives.
            (Some(transport), Some(_)) => transport.add_totals(&mut counters),
            (Some(transport), None) => {
                counters.merge(transport.counters());
                if let Some(link) = transport.link_counters() {
                    counters.merge(link);
                }
            }
            (None, _) => {}
        }
        if let Some(stage) = self.protocol {
            counters.merge(&stage.core.into_counters());
        }
        Ok(ThreadTotals {
            counters,
            latency_us: None,
            measured_ops: 0,
            completions: Vec::new(),
            idle_spin: idler.spun(),
        })
    }

    /// Sleeps until there is work: a datagram (if this thread receives), an
    /// item in an input channel, a timer, or a stop.
    fn block(&mut self, waker: &Waker, run: &RunShared) -> io::Result<()> {
        waker.prepare_sleep();
        // Look again after announcing the sleep: whatever arrives from now on
        // comes with a wake-up.
        let pending = self.verify.as_ref().is_some_and(|v| !v.input.is_empty())
            || self.protocol.as_ref().is_some_and(|p| !p.input.is_empty())
            || self.send.as_ref().is_some_and(|rx| !rx.is_empty());
        if !pending && !run.stopping() {
            let mut deadline = self.protocol.as_ref().and_then(|p| p.core.next_deadline());
            if self.send.is_some()
                && let Some(transport) = &self.transport
            {
                deadline = earliest(deadline, transport.next_release());
            }
            let timeout = block_timeout(Instant::now(), deadline);
            match (&self.receive, &mut self.transport) {
                (Some(_), Some(transport)) => transport.wait(timeout, waker)?,
                _ => waker.wait(timeout)?,
            }
        }
        waker.cancel_sleep();
        Ok(())
    }
}
