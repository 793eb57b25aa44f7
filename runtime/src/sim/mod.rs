//! The deterministic simulator.
//!
//! A whole system (replicas, clients, Byzantine stand-ins) runs on one thread in
//! virtual time. One seed drives every random choice: message delays, loss,
//! duplication, reordering, the workload's operations and think times, and the
//! random streams handed to each node. Faults that a test scripts (crashes,
//! restarts, pauses, partitions, one-way link cuts, Byzantine tampering) are
//! scheduled at virtual times, and those times can themselves be drawn from
//! the seed.
//!
//! Every delivery (with its sender) and every client completion is folded into
//! a trace hash: the same seed gives the same hash, always, which is how a
//! failure found once is replayed exactly. With [`Simulator::enable_trace`] the
//! simulator also keeps a readable timeline: deliveries with sender and kind,
//! timers, what nodes note about themselves (views entered, sequence numbers
//! executed, drops and their reasons), faults, client operations.
//!
//! Events are ordered by `(time, sequence number)`, and the sequence number is
//! the order in which they were scheduled, so nothing depends on hash-map order,
//! addresses in memory, or the wall clock.
//!
//! Liveness is judged from the last heal: fault actions scheduled with
//! [`Simulator::schedule_fault`] are counted until they have run, and heals
//! (of partitions, pauses, crashes, the network) note their time, so
//! [`Simulator::run_until_live`] can give the clients a bound counted from the
//! moment the last fault ended.

mod adversary;
mod trace;
mod twins;

pub use adversary::{Adversary, Byzantine, Noise, Tactics, Tamper, TamperReport, random_datagram};
pub use trace::TraceEvent;
pub use twins::{NodeRef, TWINS_MAX};

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::Duration;

use rustc_hash::{FxHashMap, FxHashSet};
use wire::sim::FaultCounts;
use wire::{Addr, ClientId};
use xxhash_rust::xxh3::Xxh3;

use crate::actor::{Counters, Dest};
use crate::check::Operation;
use crate::durable::{Stored, Write};
use crate::node::{Packet, Process};
use crate::rng::Rng;
use crate::time::Time;

/// How the simulated network treats each datagram. Every datagram is delayed
/// independently, so datagrams overtake each other even without `reorder_rate`.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// Delay of a datagram: uniform in `delay_min..=delay_max`. `delay_min`
    /// must be positive, so time advances with every hop.
    pub delay_min: Duration,
    pub delay_max: Duration,
    /// Probability that a datagram is lost.
    pub drop_rate: f64,
    /// Probability that a datagram is delivered twice (each copy with its own
    /// delay).
    pub duplicate_rate: f64,
    /// Probability that a datagram is held back by up to `reorder_delay_max`
    /// more, so that later ones overtake it.
    pub reorder_rate: f64,
    pub reorder_delay_max: Duration,
    /// Probability that a datagram is held back for long: up to
    /// `long_delay_max` more, long enough to arrive views later.
    pub long_delay_rate: f64,
    pub long_delay_max: Duration,
}

impl Network {
    fn validate(&self) {
        assert!(
            self.delay_min > Duration::ZERO,
            "delay_min must be positive"
        );
        assert!(
            self.delay_min <= self.delay_max,
            "delay_min above delay_max"
        );
    }

    /// No loss, no duplication, little jitter.
    pub fn reliable() -> Network {
        Network {
            delay_min: Duration::from_micros(100),
            delay_max: Duration::from_micros(200),
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            reorder_delay_max: Duration::ZERO,
            long_delay_rate: 0.0,
            long_delay_max: Duration::ZERO,
        }
    }

    /// Loses, duplicates and reorders each datagram with probability `rate`.
    pub fn faulty(rate: f64) -> Network {
        Network {
            delay_min: Duration::from_micros(50),
            delay_max: Duration::from_micros(500),
            drop_rate: rate,
            duplicate_rate: rate,
            reorder_rate: rate,
            reorder_delay_max: Duration::from_millis(2),
            long_delay_rate: 0.0,
            long_delay_max: Duration::ZERO,
        }
    }

    /// [`Network::faulty`], and with probability `rate` a datagram is held
    /// back for up to `max` (for a protocol with timeouts of tens of
    /// milliseconds, a few hundred: it arrives in a later view).
    pub fn laggy(rate: f64, max: Duration) -> Network {
        Network {
            long_delay_rate: rate,
            long_delay_max: max,
            ..Network::faulty(rate)
        }
    }
}

/// Events at one virtual instant past which the simulator declares a livelock:
/// something keeps scheduling work without letting time pass.
pub const EVENTS_PER_INSTANT_MAX: u64 = 1_000_000;

/// Trace events kept at most; a longer run's trace is cut short and says so.
pub const TRACE_EVENTS_MAX: usize = 2_000_000;

/// Makes a node: at start, and again on every restart. It gets the node's own
/// random stream.
pub type Factory = Box<dyn FnMut(Rng) -> Box<dyn Process>>;

/// Makes the next operation for a client.
pub type Workload = Box<dyn FnMut(&mut Rng, ClientId) -> Vec<u8>>;

/// A scripted action, run at its scheduled virtual time.
pub type Action = Box<dyn FnOnce(&mut Simulator)>;

/// The simulator. Build it, add nodes and clients, schedule faults, run.
pub struct Simulator {
    now: Time,
    seed: u64,
    /// Network and fault decisions.
    rng: Rng,
    /// Workload: operations and think times. Separate from `rng` so that a
    /// change in how many network draws a message takes does not change which
    /// operations are issued.
    workload_rng: Rng,
    network: Network,
    queue: EventQueue,
    nodes: Vec<Slot>,
    index: FxHashMap<Addr, usize>,
    /// Replica addresses in id order, for [`Dest::Replicas`].
    replicas: Vec<Addr>,
    /// Twins ([`Simulator::add_twin`]): for a node, the other nodes at its
    /// address, in the order they were added. Empty unless a test or plan
    /// adds one.
    twins: FxHashMap<usize, Vec<usize>>,
    /// Links cut in one direction: `(from, to)` node indexes.
    cut: FxHashSet<(usize, usize)>,
    workload: Option<Workload>,
    /// Clients with operations left to issue or outstanding.
    busy_clients: usize,
    think_time_max: Duration,
    history: Vec<Operation>,
    trace_hash: Xxh3,
    trace: Option<Vec<TraceEvent>>,
    faults: FaultCounts,
    /// Fault actions scheduled and not yet run.
    faults_pending: usize,
    /// When the last fault ended (a heal, a resume, a restart, the network
    /// made calm again).
    last_heal: Time,
    deliveries: u64,
    /// Events processed at the current instant, to catch a livelock.
    events_this_instant: u64,
    /// Counters of nodes that crashed or were replaced, kept for the report.
    retired_counters: Counters,
    /// Scratch buffers, reused across events.
    packets: Vec<Packet>,
    tampered: Vec<(Addr, Vec<u8>)>,
    notes: Vec<String>,
}

impl fmt::Debug for Simulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Simulator")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.len())
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

struct Slot {
    addr: Addr,
    /// Which node at `addr`: 0 for the one added first, 1 and up for its
    /// twins.
    copy: u8,
    /// `None` while crashed.
    process: Option<Box<dyn Process>>,
    factory: Factory,
    rng: Rng,
    /// Bumped on every crash and restart, so that events meant for an earlier
    /// incarnation are recognised and ignored.
    incarnation: u32,
    /// The time of the earliest timer event queued for this node; events
    /// queued for other times are stale and ignored.
    timer_at: Option<Time>,
    /// Stopped with its memory: receives nothing (datagrams to it are lost),
    /// fires no timers, sends nothing, until resumed.
    paused: bool,
    /// Nodes talk only to nodes in the same group. Everyone starts in 0.
    group: u32,
    byzantine: Option<Box<dyn Tamper>>,
    client: Option<ClientSlot>,
    /// What the node wrote with `persist`: kept across crashes, handed back
    /// on restart.
    stored: Stored,
    /// Crash the next time the node persists, with its writes made durable
    /// (`true`) or lost.
    crash_at_persist: Option<bool>,
}

#[derive(Debug)]
struct ClientSlot {
    /// Operations still to issue.
    remaining: u64,
    /// Issues no operation after this time (a steady client).
    until: Option<Time>,
    /// Its own think time, instead of the workload's.
    think_time_max: Option<Duration>,
    /// Index in the history of the outstanding operation.
    outstanding: Option<usize>,
    /// This client's workload stream: which operations it issues does not
    /// depend on when other clients issue theirs.
    rng: Rng,
}

enum EventKind {
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Timer {
        node: usize,
        incarnation: u32,
    },
    Invoke {
        node: usize,
        incarnation: u32,
    },
    Action(Action),
    /// A fault action: counted in `faults_pending` until it has run.
    Fault(Action),
}

/// Events in `(time, sequence)` order, the sequence number counting pushes.
/// The heap holds only small keys and the events sit in a slab, so sifting
/// moves 24 bytes instead of a whole event.
#[derive(Default)]
struct EventQueue {
    heap: BinaryHeap<Reverse<(Time, u64, u32)>>,
    slab: Vec<Option<EventKind>>,
    free: Vec<u32>,
    sequence: u64,
}

impl EventQueue {
    fn push(&mut self, at: Time, kind: EventKind) {
        let index = match self.free.pop() {
            Some(index) => {
                self.slab[index as usize] = Some(kind);
                index
            }
            None => {
                self.slab.push(Some(kind));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 queued events")
            }
        };
        self.sequence += 1;
        self.heap.push(Reverse((at, self.sequence, index)));
    }

    fn pop(&mut self) -> Option<(Time, EventKind)> {
        let Reverse((at, _, index)) = self.heap.pop()?;
        let kind = self.slab[index as usize]
            .take()
            .expect("queued event present");
        self.free.push(index);
        Some((at, kind))
    }

    fn next_time(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    fn len(&self) -> usize {
        self.heap.len()
    }
}

impl Simulator {
    pub fn new(seed: u64, network: Network) -> Simulator {
        network.validate();
        let mut rng = Rng::new(seed);
        let workload_rng = rng.fork();
        Simulator {
            now: Time::ZERO,
            seed,
            rng,
            workload_rng,
            network,
            queue: EventQueue::default(),
            nodes: Vec::new(),
            index: FxHashMap::default(),
            replicas: Vec::new(),
            twins: FxHashMap::default(),
            cut: FxHashSet::default(),
            workload: None,
            busy_clients: 0,
            think_time_max: Duration::ZERO,
            history: Vec::new(),
            trace_hash: Xxh3::new(),
            trace: None,
            faults: FaultCounts::default(),
            faults_pending: 0,
            last_heal: Time::ZERO,
            deliveries: 0,
            events_this_instant: 0,
            retired_counters: Counters::default(),
            packets: Vec::new(),
            tampered: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// Keeps a readable timeline of the run from now on (see the module
    /// docs), for [`Simulator::trace`]. Nodes added later keep one too.
    pub fn enable_trace(&mut self) {
        self.trace.get_or_insert_with(Vec::new);
        for slot in &mut self.nodes {
            if let Some(process) = slot.process.as_mut() {
                process.set_tracing();
            }
        }
    }

    /// The timeline so far, if [`Simulator::enable_trace`] was called.
    pub fn trace(&self) -> Option<&[TraceEvent]> {
        self.trace.as_deref()
    }

    /// Changes how the network treats datagrams sent from now on.
    pub fn set_network(&mut self, network: Network) {
        network.validate();
        self.record(None, || format!("fault: network now {network:?}"));
        self.network = network;
    }

    /// Sets what clients ask for, and how long they wait (uniformly up to
    /// `think_time_max`) between one result and the next operation.
    pub fn set_workload(&mut self, workload: Workload, think_time_max: Duration) {
        self.workload = Some(workload);
        self.think_time_max = think_time_max;
    }

    /// Adds a node at `addr` (a replica, or any non-client process) and starts
    /// it now. `factory` is called again on every restart.
    pub fn add_node(&mut self, addr: Addr, factory: Factory) {
        self.insert(addr, factory, None);
    }

    /// Adds a client that will issue `ops` operations from the workload, one
    /// at a time, and starts it now.
    pub fn add_client(&mut self, id: ClientId, ops: u64, factory: Factory) {
        self.add_client_slot(id, ops, None, None, factory);
    }

    /// Adds a steady client: it issues operations one after the other,
    /// thinking up to `think_time_max` between them, until `until`, and
    /// starts it now. A steady load that keeps a group busy through faults.
    pub fn add_steady_client(
        &mut self,
        id: ClientId,
        until: Time,
        think_time_max: Duration,
        factory: Factory,
    ) {
        self.add_client_slot(id, u64::MAX, Some(until), Some(think_time_max), factory);
    }

    fn add_client_slot(
        &mut self,
        id: ClientId,
        ops: u64,
        until: Option<Time>,
        think_time_max: Option<Duration>,
        factory: Factory,
    ) {
        assert!(
            self.workload.is_some(),
            "set a workload before adding clients"
        );
        let client = ClientSlot {
            remaining: ops,
            until,
            think_time_max,
            outstanding: None,
            rng: self.workload_rng.fork(),
        };
        let node = self.insert(Addr::Client(id), factory, Some(client));
        if ops > 0 {
            self.busy_clients += 1;
            self.schedule_invoke(node);
        }
    }

    fn insert(&mut self, addr: Addr, mut factory: Factory, client: Option<ClientSlot>) -> usize {
        assert!(!self.index.contains_key(&addr), "{addr} added twice");
        let mut rng = self.rng.fork();
        let process = factory(rng.fork());
        assert_eq!(
            process.addr(),
            addr,
            "factory made a node with another address"
        );
        let node = self.nodes.len();
        self.nodes.push(Slot {
            addr,
            copy: 0,
            process: Some(process),
            factory,
            rng,
            incarnation: 0,
            timer_at: None,
            paused: false,
            group: 0,
            byzantine: None,
            client,
            stored: Stored::default(),
            crash_at_persist: None,
        });
        self.index.insert(addr, node);
        if let Addr::Replica(_) = addr {
            self.replicas.push(addr);
            self.replicas.sort_unstable();
        }
        self.start(node);
        node
    }

    fn start(&mut self, node: usize) {
        let now = self.now;
        let mut packets = std::mem::take(&mut self.packets);
        let tracing = self.trace.is_some();
        let slot = &mut self.nodes[node];
        if let Some(process) = slot.process.as_mut() {
            if tracing {
                process.set_tracing();
            }
            if slot.stored.is_empty() {
                process.start(now, &mut packets);
            } else {
                process.recover(now, &slot.stored, &mut packets);
            }
        }
        self.after_call(node, &mut packets);
        self.packets = packets;
    }

    /// Runs `action` at virtual time `at` (now, if `at` has passed).
    pub fn schedule(&mut self, at: Time, action: impl FnOnce(&mut Simulator) + 'static) {
        self.push(at.max(self.now), EventKind::Action(Box::new(action)));
    }

    /// Runs the fault action `action` at `at`, like [`Simulator::schedule`],
    /// and counts it as pending until then: [`Simulator::run_until_live`]
    /// does not judge liveness while a fault is still to come. An action that
    /// reschedules itself (a restart that waits for another node's recovery)
    /// stays pending.
    pub fn schedule_fault(&mut self, at: Time, action: impl FnOnce(&mut Simulator) + 'static) {
        self.faults_pending += 1;
        self.push(at.max(self.now), EventKind::Fault(Box::new(action)));
    }

    /// Notes that a fault ended now: liveness is judged from the last such
    /// moment. Heals, resumes and restarts note it themselves; call it when
    /// ending a fault the simulator cannot see as one (a calmer network).
    pub fn mark_healed(&mut self) {
        self.last_heal = self.now;
    }

    /// When the last fault ended.
    pub fn last_heal(&self) -> Time {
        self.last_heal
    }

    /// Crashes the node: it loses all volatile state, and datagrams and timers
    /// meant for it vanish. A crashed client's outstanding operation stays
    /// incomplete (it may or may not take effect) and it issues no more.
    /// Every node at the address crashes (a twin's too).
    pub fn crash(&mut self, addr: Addr) {
        let Some(&node) = self.index.get(&addr) else {
            panic!("crash: no node {addr}");
        };
        for node in self.copies(node) {
            self.crash_node(node);
        }
    }

    fn crash_node(&mut self, node: usize) {
        let slot = &mut self.nodes[node];
        if let Some(process) = slot.process.take() {
            self.retired_counters.merge(process.counters());
            slot.incarnation += 1;
            slot.timer_at = None;
            slot.paused = false;
            if let Some(client) = slot.client.as_mut() {
                if client.remaining > 0 || client.outstanding.is_some() {
                    self.busy_clients -= 1;
                }
                client.remaining = 0;
                client.outstanding = None;
            }
            self.faults.crashes += 1;
            self.record_at(node, || "fault: crash".to_string());
        }
    }

    /// Sends `bytes` from node `from` to `to` through the network, as if
    /// `from` had sent it: a test's way to script a message.
    pub fn inject(&mut self, from: Addr, to: Addr, bytes: Vec<u8>) {
        let Some(&node) = self.index.get(&from) else {
            panic!("inject: no node {from}");
        };
        self.send(node, to, bytes);
    }

    /// Crashes `addr` the next time it persists something (see
    /// [`crate::durable`]): after the packets it sent before the write, and
    /// before any sent after it. With `durable` the write survives (the
    /// crash came after the disk had it), otherwise it is lost too. Both can
    /// happen on a real machine.
    pub fn crash_at_next_persist(&mut self, addr: Addr, durable: bool) {
        let Some(&node) = self.index.get(&addr) else {
            panic!("crash_at_next_persist: no node {addr}");
        };
        self.nodes[node].crash_at_persist = Some(durable);
    }

    /// Forgets what `addr` made durable, as a disk that loses acknowledged
    /// writes would: beyond the model of any protocol that relies on it.
    pub fn lose_durable_state(&mut self, addr: Addr) {
        let Some(&node) = self.index.get(&addr) else {
            panic!("lose_durable_state: no node {addr}");
        };
        self.nodes[node].stored = Stored::default();
        self.record(Some(addr), || "fault: durable state lost".to_string());
    }

    /// Disarms [`Simulator::crash_at_next_persist`] for `addr`, if armed.
    pub fn cancel_crash_at_persist(&mut self, addr: Addr) {
        if let Some(&node) = self.index.get(&addr) {
            self.nodes[node].crash_at_persist = None;
        }
    }

    /// What `addr` has made durable: it survives crashes and is handed back
    /// on restart.
    pub fn stored(&self, addr: Addr) -> Option<&Stored> {
        let &node = self.index.get(&addr)?;
        Some(&self.nodes[node].stored)
    }

    /// Restarts a crashed node from its factory, with fresh state and what
    /// it had made durable (see [`State::on_recover`](crate::State::on_recover)).
    /// Every crashed node at the address restarts (a twin's too).
    pub fn restart(&mut self, addr: Addr) {
        let Some(&node) = self.index.get(&addr) else {
            panic!("restart: no node {addr}");
        };
        assert!(
            self.nodes[node].process.is_none(),
            "restart: {addr} is running"
        );
        for node in self.copies(node) {
            if self.nodes[node].process.is_none() {
                self.restart_node(node);
            }
        }
    }

    fn restart_node(&mut self, node: usize) {
        let slot = &mut self.nodes[node];
        let process = (slot.factory)(slot.rng.fork());
        slot.process = Some(process);
        slot.incarnation += 1;
        slot.timer_at = None;
        self.faults.restarts += 1;
        self.mark_healed();
        self.record_at(node, || "fault: restart".to_string());
        self.start(node);
    }

    /// Stops a replica with its memory kept (a process stopped, a machine
    /// frozen): datagrams to it are lost, its timers wait, it sends nothing,
    /// until [`Simulator::resume`]. Unlike a crash, it comes back as it was.
    /// Every node at the address pauses (a twin's too).
    pub fn pause(&mut self, addr: Addr) {
        let node = self.index[&addr];
        assert!(
            self.nodes[node].client.is_none(),
            "pause: {addr} is a client"
        );
        for node in self.copies(node) {
            let slot = &mut self.nodes[node];
            if slot.process.is_some() && !slot.paused {
                slot.paused = true;
                self.faults.pauses += 1;
                self.record_at(node, || "fault: pause".to_string());
            }
        }
    }

    /// Resumes a paused node: timers that fell due while it was stopped fire
    /// now.
    pub fn resume(&mut self, addr: Addr) {
        let node = self.index[&addr];
        for node in self.copies(node) {
            self.resume_node(node);
        }
    }

    fn resume_node(&mut self, node: usize) {
        let slot = &mut self.nodes[node];
        if !slot.paused {
            return;
        }
        slot.paused = false;
        slot.timer_at = None;
        self.mark_healed();
        self.record_at(node, || "fault: resume".to_string());
        let mut packets = std::mem::take(&mut self.packets);
        self.after_call(node, &mut packets);
        self.packets = packets;
    }

    /// Replaces a running node by another process at the same address (say, a
    /// Byzantine implementation), keeping its place in the network. Counted as
    /// a Byzantine fault. A client's outstanding operation is left incomplete
    /// (it may or may not take effect), and the new process, which must be a
    /// client too, carries on with the operations left.
    pub fn replace(&mut self, addr: Addr, process: Box<dyn Process>) {
        assert_eq!(process.addr(), addr);
        let node = self.index[&addr];
        let slot = &mut self.nodes[node];
        if let Some(old) = slot.process.replace(process) {
            self.retired_counters.merge(old.counters());
        }
        slot.incarnation += 1;
        slot.timer_at = None;
        self.faults.byzantine += 1;
        let mut invoke = false;
        if let Some(client) = slot.client.as_mut() {
            let was_busy = client.remaining > 0 || client.outstanding.is_some();
            client.outstanding = None;
            invoke = client.remaining > 0;
            if was_busy && !invoke {
                self.busy_clients -= 1;
            }
        }
        self.record(Some(addr), || "fault: replaced".to_string());
        self.start(node);
        if invoke {
            self.schedule_invoke(node);
        }
    }

    /// Splits the network: the nodes of each group talk only among themselves.
    /// Nodes not named form one more group. Datagrams already on their way
    /// between groups are lost too (checked at delivery).
    /// An address names every node at it (a twin's too: see
    /// [`Simulator::partition_nodes`] to split twins).
    pub fn partition(&mut self, groups: &[&[Addr]]) {
        for slot in &mut self.nodes {
            slot.group = 0;
        }
        for (i, group) in groups.iter().enumerate() {
            for addr in *group {
                for node in self.copies(self.index[addr]) {
                    self.nodes[node].group = i as u32 + 1;
                }
            }
        }
        self.faults.partitions += 1;
        self.record(None, || format!("fault: partition {groups:?}"));
    }

    /// Cuts the links from every node of `from` to every node of `to`, in
    /// that direction only (an asymmetric partition): `to` still reaches
    /// `from`. Adds to the cuts already made.
    /// An address names every node at it (a twin's too).
    pub fn cut(&mut self, from: &[Addr], to: &[Addr]) {
        for a in from {
            for b in to {
                if a != b {
                    for x in self.copies(self.index[a]) {
                        for y in self.copies(self.index[b]) {
                            self.cut.insert((x, y));
                        }
                    }
                }
            }
        }
        self.faults.oneway_cuts += 1;
        self.record(None, || format!("fault: cut {from:?} -> {to:?}"));
    }

    /// Ends any partition and every one-way cut.
    pub fn heal(&mut self) {
        for slot in &mut self.nodes {
            slot.group = 0;
        }
        self.cut.clear();
        self.mark_healed();
        self.record(None, || "fault: heal".to_string());
    }

    /// Makes `addr` Byzantine: every datagram it sends passes through `tamper`,
    /// and every datagram it receives is shown to it.
    pub fn set_byzantine(&mut self, addr: Addr, tamper: Box<dyn Tamper>) {
        let node = self.index[&addr];
        self.nodes[node].byzantine = Some(tamper);
        self.record(Some(addr), || "fault: byzantine".to_string());
    }

    /// Processes the next event. Returns false when nothing is left to do.
    pub fn step(&mut self) -> bool {
        let Some((at, kind)) = self.queue.pop() else {
            return false;
        };
        assert!(at >= self.now, "time went backwards");
        if at == self.now {
            self.events_this_instant += 1;
            assert!(
                self.events_this_instant < EVENTS_PER_INSTANT_MAX,
                "livelock: {EVENTS_PER_INSTANT_MAX} events at {at} (a timer re-armed with no delay?)"
            );
        } else {
            self.events_this_instant = 0;
        }
        self.now = at;
        match kind {
            EventKind::Deliver { from, to, bytes } => self.deliver(from, to, bytes),
            EventKind::Timer { node, incarnation } => self.fire_timers(node, incarnation, at),
            EventKind::Invoke { node, incarnation } => self.invoke(node, incarnation),
            EventKind::Action(action) => action(self),
            EventKind::Fault(action) => {
                self.faults_pending -= 1;
                action(self);
            }
        }
        true
    }

    /// Runs every event up to and including `deadline`, then sets the clock to
    /// `deadline`.
    pub fn run_until(&mut self, deadline: Time) {
        while self.queue.next_time().is_some_and(|at| at <= deadline) {
            self.step();
        }
        self.now = self.now.max(deadline);
    }

    /// Runs until every client that has not crashed has finished its
    /// operations, or until `limit`. Returns whether the clients finished.
    pub fn run_until_clients_done(&mut self, limit: Time) -> bool {
        loop {
            if self.busy_clients == 0 {
                return true;
            }
            match self.queue.next_time() {
                Some(at) if at <= limit => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(limit);
                    return false;
                }
            }
        }
    }

    /// Runs until every live client has finished, or until an operation
    /// has waited `bound` past the later of its invocation and the last heal
    /// (with no fault still to come), or until `limit` whatever happens.
    /// Returns whether the clients finished. So operations pending through
    /// the faults must finish within `bound` of the heal, and every later
    /// one within `bound` of its start: a group that serves some clients
    /// and starves another fails as surely as one that stops.
    pub fn run_until_live(&mut self, bound: Duration, limit: Time) -> bool {
        loop {
            if self.busy_clients == 0 {
                return true;
            }
            let deadline = if self.faults_pending > 0 {
                limit
            } else {
                self.liveness_deadline(bound).min(limit)
            };
            match self.queue.next_time() {
                Some(at) if at <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(deadline);
                    return false;
                }
            }
        }
    }

    /// The earliest time by which an outstanding operation must complete:
    /// `bound` after the later of its invocation and the last heal.
    pub fn liveness_deadline(&self, bound: Duration) -> Time {
        self.nodes
            .iter()
            .filter(|slot| slot.process.is_some())
            .filter_map(|slot| slot.client.as_ref()?.outstanding)
            .map(|index| self.history[index].invoked.max(self.last_heal) + bound)
            .min()
            .unwrap_or(Time::MAX)
    }

    /// Every client operation so far, in invocation order.
    pub fn history(&self) -> &[Operation] {
        &self.history
    }

    pub fn faults(&self) -> FaultCounts {
        self.faults
    }

    pub fn deliveries(&self) -> u64 {
        self.deliveries
    }

    /// Operations that completed.
    pub fn ops_completed(&self) -> u64 {
        self.history
            .iter()
            .filter(|op| op.completed.is_some())
            .count() as u64
    }

    /// The hash of every delivery and completion so far.
    pub fn trace_hash(&self) -> u64 {
        self.trace_hash.digest()
    }

    /// Counters of all nodes, running or retired, merged.
    pub fn counters(&self) -> Counters {
        let mut all = self.retired_counters.clone();
        for process in self.nodes.iter().filter_map(|s| s.process.as_ref()) {
            all.merge(process.counters());
        }
        all
    }

    /// Counters of one running node.
    pub fn node_counters(&self, addr: Addr) -> Option<&Counters> {
        let node = *self.index.get(&addr)?;
        Some(self.nodes[node].process.as_ref()?.counters())
    }

    /// Whether `addr` is a client that gave up for good.
    pub fn has_failed(&self, addr: Addr) -> bool {
        self.index.get(&addr).is_some_and(|&node| {
            self.nodes[node]
                .process
                .as_ref()
                .is_some_and(|p| p.has_failed())
        })
    }

    /// Whether `addr` is running (added and not crashed).
    pub fn is_running(&self, addr: Addr) -> bool {
        self.index
            .get(&addr)
            .is_some_and(|&node| self.nodes[node].process.is_some())
    }

    /// Whether `addr` is running and says it is still recovering.
    pub fn is_recovering(&self, addr: Addr) -> bool {
        self.index.get(&addr).is_some_and(|&node| {
            self.nodes[node]
                .process
                .as_ref()
                .is_some_and(|p| p.is_recovering())
        })
    }

    /// How far `addr` has executed, if it runs and says.
    pub fn executed_slot(&self, addr: Addr) -> Option<u64> {
        let node = *self.index.get(&addr)?;
        self.nodes[node].process.as_ref()?.executed_slot()
    }

    /// Whether `addr` is paused.
    pub fn is_paused(&self, addr: Addr) -> bool {
        self.index
            .get(&addr)
            .is_some_and(|&node| self.nodes[node].paused)
    }

    fn push(&mut self, at: Time, kind: EventKind) {
        self.queue.push(at, kind);
    }

    /// Adds a line to the trace, if one is kept.
    fn record(&mut self, node: Option<Addr>, line: impl FnOnce() -> String) {
        if let Some(trace) = &mut self.trace {
            trace::push(trace, self.now, node, line());
        }
    }

    /// Moves what node `node` noted in its last call into the trace.
    fn collect_notes(&mut self, node: usize) {
        let Some(trace) = &mut self.trace else {
            return;
        };
        let slot = &mut self.nodes[node];
        if let Some(process) = slot.process.as_mut() {
            process.take_notes(&mut self.notes);
        }
        for line in self.notes.drain(..) {
            let line = twins::label(slot.copy, line);
            trace::push(trace, self.now, Some(slot.addr), line);
        }
    }

    fn link_open(&self, from: usize, to: usize) -> bool {
        self.nodes[from].group == self.nodes[to].group
            && (self.cut.is_empty() || !self.cut.contains(&(from, to)))
    }

    fn deliver(&mut self, from: usize, node: usize, bytes: Vec<u8>) {
        let now = self.now;
        if !self.link_open(from, node) {
            // A partition came up while the datagram was on its way.
            self.faults.cut_in_flight += 1;
            return;
        }
        let (sender, from_copy) = (self.nodes[from].addr, self.nodes[from].copy);
        let slot = &mut self.nodes[node];
        if slot.paused {
            return;
        }
        let Some(process) = slot.process.as_mut() else {
            return; // Crashed: the datagram is lost.
        };
        self.deliveries += 1;
        self.trace_hash.update(&now.as_nanos().to_le_bytes());
        hash_addr(&mut self.trace_hash, sender);
        hash_addr(&mut self.trace_hash, slot.addr);
        // Which twin sent and received it; nothing for the nodes added first,
        // so runs without twins hash as they always did.
        let to_copy = slot.copy;
        if from_copy != 0 || to_copy != 0 {
            self.trace_hash.update(&[from_copy, to_copy]);
        }
        self.trace_hash.update(&(bytes.len() as u64).to_le_bytes());
        self.trace_hash.update(&bytes);
        if let Some(trace) = &mut self.trace {
            let line = format!("<- {sender}: {}", process.describe(&bytes));
            let line = twins::label(to_copy, twins::label_sender(from_copy, line));
            trace::push(trace, now, Some(slot.addr), line);
        }
        if let Some(tamper) = slot.byzantine.as_mut() {
            if !tamper.accept(sender, &bytes) {
                return;
            }
            tamper.observe(sender, &bytes);
        }
        let mut packets = std::mem::take(&mut self.packets);
        process.on_packet(now, sender, &bytes, &mut packets);
        self.after_call(node, &mut packets);
        self.packets = packets;
    }

    fn fire_timers(&mut self, node: usize, incarnation: u32, at: Time) {
        let slot = &mut self.nodes[node];
        if slot.incarnation != incarnation || slot.timer_at != Some(at) {
            return; // Stale: the node restarted, or an earlier event replaced this one.
        }
        slot.timer_at = None;
        if slot.paused {
            return; // Re-queued when it resumes.
        }
        let Some(process) = slot.process.as_mut() else {
            return;
        };
        let mut packets = std::mem::take(&mut self.packets);
        process.on_timers(self.now, &mut packets);
        self.after_call(node, &mut packets);
        self.packets = packets;
    }

    fn invoke(&mut self, node: usize, incarnation: u32) {
        let now = self.now;
        let Some(workload) = self.workload.as_mut() else {
            panic!("a client was added without a workload");
        };
        let slot = &mut self.nodes[node];
        if slot.incarnation != incarnation {
            return;
        }
        let (Some(process), Some(client)) = (slot.process.as_mut(), slot.client.as_mut()) else {
            return;
        };
        assert!(
            client.outstanding.is_none(),
            "closed loop: one operation at a time"
        );
        let Addr::Client(id) = slot.addr else {
            unreachable!("clients have client addresses");
        };
        let op = workload(&mut client.rng, id);
        self.trace_hash.update(&now.as_nanos().to_le_bytes());
        hash_addr(&mut self.trace_hash, slot.addr);
        self.trace_hash.update(&op);
        client.remaining -= 1;
        client.outstanding = Some(self.history.len());
        if let Some(trace) = &mut self.trace {
            let line = format!(
                "invokes operation {} ({} bytes)",
                self.history.len(),
                op.len()
            );
            trace::push(trace, now, Some(slot.addr), line);
        }
        self.history.push(Operation {
            client: id,
            op: op.clone(),
            invoked: now,
            completed: None,
        });
        let mut packets = std::mem::take(&mut self.packets);
        process.invoke(now, &op, &mut packets);
        self.after_call(node, &mut packets);
        self.packets = packets;
    }

    /// After any call into a node: collect a client's result and the node's
    /// trace lines, send what the node sent, and queue its next timer.
    fn after_call(&mut self, node: usize, packets: &mut Vec<Packet>) {
        self.collect_result(node);
        self.collect_notes(node);
        let persisted = self.nodes[node]
            .process
            .as_mut()
            .and_then(|p| p.take_persisted());
        let Some(persisted) = persisted else {
            self.send_packets(node, packets);
            self.queue_timer(node);
            return;
        };
        // The barrier: what was sent before the writes leaves now, the rest
        // once they are durable, which is at once unless the node crashes.
        let mut held = packets.split_off(persisted.barrier.min(packets.len()));
        self.send_packets(node, packets);
        if self.make_durable(node, persisted.writes) {
            self.send_packets(node, &mut held);
            self.queue_timer(node);
        }
    }

    /// Applies a node's durable writes, or crashes it there if a test asked
    /// for that. Whether it is still running.
    fn make_durable(&mut self, node: usize, writes: Vec<Write>) -> bool {
        let slot = &mut self.nodes[node];
        let addr = slot.addr;
        let crash = slot.crash_at_persist.take();
        let count = writes.len();
        if crash != Some(false)
            && let Err(refused) = slot.stored.apply(writes)
        {
            panic!("{addr} persisted beyond the bounds: {refused}");
        }
        self.record(Some(addr), || format!("persist: {count} writes"));
        let Some(durable) = crash else {
            return true;
        };
        self.faults.persist_crashes += 1;
        self.record(Some(addr), || {
            let kept = if durable { "durable" } else { "lost" };
            format!("fault: crash at a persist (write {kept})")
        });
        self.crash(addr);
        false
    }

    fn send_packets(&mut self, node: usize, packets: &mut Vec<Packet>) {
        for Packet { dest, bytes } in packets.drain(..) {
            match dest {
                Dest::To(to) => self.send(node, to, bytes),
                Dest::Replicas => {
                    let from = self.nodes[node].addr;
                    // The last recipient takes the bytes, the others a copy.
                    let Some(last) = self.replicas.iter().rposition(|&to| to != from) else {
                        continue;
                    };
                    for i in 0..last {
                        let to = self.replicas[i];
                        if to != from {
                            self.send(node, to, bytes.clone());
                        }
                    }
                    self.send(node, self.replicas[last], bytes);
                }
            }
        }
    }

    fn queue_timer(&mut self, node: usize) {
        // Queue a timer event only when the node's deadline is earlier than
        // the one already queued. A deadline that moved later (the common case:
        // a retransmission timer re-armed on every request) is caught when the
        // queued event fires early and finds nothing due.
        let slot = &mut self.nodes[node];
        if slot.paused {
            return;
        }
        if let Some(deadline) = slot.process.as_ref().and_then(|p| p.next_deadline()) {
            let at = deadline.max(self.now);
            if slot.timer_at.is_none_or(|queued| at < queued) {
                slot.timer_at = Some(at);
                let incarnation = slot.incarnation;
                self.push(at, EventKind::Timer { node, incarnation });
            }
        }
    }

    fn collect_result(&mut self, node: usize) {
        let slot = &mut self.nodes[node];
        let (Some(process), Some(client)) = (slot.process.as_mut(), slot.client.as_mut()) else {
            return;
        };
        if process.has_failed() && (client.remaining > 0 || client.outstanding.is_some()) {
            // Gave up: like a crash, its operation stays incomplete.
            client.remaining = 0;
            client.outstanding = None;
            self.busy_clients -= 1;
            if let Some(trace) = &mut self.trace {
                trace::push(trace, self.now, Some(slot.addr), "gives up".to_string());
            }
            return;
        }
        let Some(result) = process.take_result() else {
            return;
        };
        let index = client
            .outstanding
            .take()
            .expect("a client returned a result with no operation outstanding");
        self.trace_hash.update(&self.now.as_nanos().to_le_bytes());
        hash_addr(&mut self.trace_hash, slot.addr);
        self.trace_hash.update(&result);
        if let Some(trace) = &mut self.trace {
            let line = format!("completes operation {index}");
            trace::push(trace, self.now, Some(slot.addr), line);
        }
        self.history[index].completed = Some((self.now, result));
        if client.until.is_some_and(|until| self.now >= until) {
            client.remaining = 0;
        }
        if client.remaining > 0 {
            self.schedule_invoke(node);
        } else {
            self.busy_clients -= 1;
        }
    }

    fn schedule_invoke(&mut self, node: usize) {
        // At least a nanosecond: the checker treats operations that touch in
        // time as concurrent, and a client's next operation must come strictly
        // after its previous one completed.
        let think_max = self.nodes[node]
            .client
            .as_ref()
            .and_then(|c| c.think_time_max)
            .unwrap_or(self.think_time_max);
        let think = think_max.as_nanos() as u64;
        let delay = if think <= 1 {
            1
        } else {
            self.workload_rng.between(1, think)
        };
        let incarnation = self.nodes[node].incarnation;
        self.push(
            self.now + Duration::from_nanos(delay),
            EventKind::Invoke { node, incarnation },
        );
    }

    /// Puts one datagram on the network, through the sender's tamperer if it
    /// is Byzantine.
    fn send(&mut self, from_node: usize, to: Addr, bytes: Vec<u8>) {
        if let Some(mut tamper) = self.nodes[from_node].byzantine.take() {
            let mut out = std::mem::take(&mut self.tampered);
            tamper.tamper(&mut self.rng, to, bytes, &mut out);
            let report = tamper.take_report();
            self.faults.byzantine += 1;
            self.faults.mutated += report.mutated;
            self.faults.replayed += report.replayed;
            if let Some(trace) = &mut self.trace {
                let addr = self.nodes[from_node].addr;
                for note in report.notes {
                    trace::push(trace, self.now, Some(addr), format!("byzantine: {note}"));
                }
            }
            for (to, bytes) in out.drain(..) {
                self.transmit(from_node, to, bytes);
            }
            self.tampered = out;
            self.nodes[from_node].byzantine = Some(tamper);
        } else {
            self.transmit(from_node, to, bytes);
        }
    }

    fn transmit(&mut self, from_node: usize, to: Addr, bytes: Vec<u8>) {
        let Some(&to_node) = self.index.get(&to) else {
            return; // Nobody there: lost, as on a real network.
        };
        if self.twins.is_empty() {
            self.transmit_to(from_node, to_node, bytes);
        } else {
            self.transmit_to_twins(from_node, to_node, bytes);
        }
    }

    /// One datagram to one node: partitions, loss, duplication, delay.
    fn transmit_to(&mut self, from_node: usize, to_node: usize, bytes: Vec<u8>) {
        if !self.link_open(from_node, to_node) {
            return; // Partitioned.
        }
        if self.rng.chance(self.network.drop_rate) {
            self.faults.dropped += 1;
            return;
        }
        if self.rng.chance(self.network.duplicate_rate) {
            self.faults.duplicated += 1;
            let at = self.now + self.draw_delay();
            self.push(
                at,
                EventKind::Deliver {
                    from: from_node,
                    to: to_node,
                    bytes: bytes.clone(),
                },
            );
        }
        let at = self.now + self.draw_delay();
        self.push(
            at,
            EventKind::Deliver {
                from: from_node,
                to: to_node,
                bytes,
            },
        );
    }

    fn draw_delay(&mut self) -> Duration {
        let network = &self.network;
        let mut nanos = self.rng.between(
            network.delay_min.as_nanos() as u64,
            network.delay_max.as_nanos() as u64,
        );
        if self.rng.chance(network.reorder_rate) {
            self.faults.reordered += 1;
            nanos += self
                .rng
                .between(0, network.reorder_delay_max.as_nanos() as u64);
        }
        if self.rng.chance(network.long_delay_rate) {
            self.faults.delayed += 1;
            nanos += self
                .rng
                .between(0, network.long_delay_max.as_nanos() as u64);
        }
        Duration::from_nanos(nanos)
    }
}

fn hash_addr(trace: &mut Xxh3, addr: Addr) {
    let (tag, id) = match addr {
        Addr::Replica(id) => (0u8, u64::from(id.0)),
        Addr::Client(id) => (1u8, id.0),
    };
    trace.update(&[tag]);
    trace.update(&id.to_le_bytes());
}
