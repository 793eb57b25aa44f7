//! The deterministic simulator.
//!
//! A whole system (replicas, clients, Byzantine stand-ins) runs on one thread in
//! virtual time. One seed drives every random choice: message delays, loss,
//! duplication, reordering, the workload's operations and think times, and the
//! random streams handed to each node. Faults that a test scripts (crashes,
//! restarts, partitions, Byzantine tampering) are scheduled at virtual times,
//! and those times can themselves be drawn from the seed.
//!
//! Every delivery and every client completion is folded into a trace hash: the
//! same seed gives the same hash, always, which is how a failure found once is
//! replayed exactly.
//!
//! Events are ordered by `(time, sequence number)`, and the sequence number is
//! the order in which they were scheduled, so nothing depends on hash-map order,
//! addresses in memory, or the wall clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::time::Duration;

use rustc_hash::FxHashMap;
use wire::sim::FaultCounts;
use wire::{Addr, ClientId, MESSAGE_SIZE_MAX};
use xxhash_rust::xxh3::Xxh3;

use crate::actor::{Counters, Dest};
use crate::check::Operation;
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
        }
    }
}

/// Events at one virtual instant past which the simulator declares a livelock:
/// something keeps scheduling work without letting time pass.
pub const EVENTS_PER_INSTANT_MAX: u64 = 1_000_000;

/// Makes a node: at start, and again on every restart. It gets the node's own
/// random stream.
pub type Factory = Box<dyn FnMut(Rng) -> Box<dyn Process>>;

/// Makes the next operation for a client.
pub type Workload = Box<dyn FnMut(&mut Rng, ClientId) -> Vec<u8>>;

/// A scripted action, run at its scheduled virtual time.
pub type Action = Box<dyn FnOnce(&mut Simulator)>;

/// What a Byzantine node does to each datagram it sends. Called once per
/// destination (a datagram to all replicas is offered once for each), so a
/// tamperer can equivocate: tell different replicas different things.
pub trait Tamper {
    /// `bytes` was about to go to `to`. Push what goes out instead (to any
    /// destination, any number of datagrams, or none) onto `out`.
    fn tamper(&mut self, rng: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>);
}

impl<F: FnMut(&mut Rng, Addr, Vec<u8>, &mut Vec<(Addr, Vec<u8>)>)> Tamper for F {
    fn tamper(&mut self, rng: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>) {
        self(rng, to, bytes, out);
    }
}

/// Ready-made Byzantine behaviours for [`Simulator::set_byzantine`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Byzantine {
    /// Sends nothing at all.
    Silent,
    /// Overwrites between one and `flips` (at least one) random bytes of
    /// each datagram.
    Corrupt { flips: usize },
    /// Sends each datagram `copies` times (at least once).
    Duplicate { copies: usize },
    /// Replaces each datagram with random bytes of a random length, sometimes
    /// over the size limit.
    Garbage,
}

impl Tamper for Byzantine {
    fn tamper(
        &mut self,
        rng: &mut Rng,
        to: Addr,
        mut bytes: Vec<u8>,
        out: &mut Vec<(Addr, Vec<u8>)>,
    ) {
        match *self {
            Byzantine::Silent => {}
            Byzantine::Corrupt { flips } => {
                if !bytes.is_empty() {
                    for _ in 0..rng.between(1, flips.max(1) as u64) {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] = rng.next_u64() as u8;
                    }
                }
                out.push((to, bytes));
            }
            Byzantine::Duplicate { copies } => {
                for _ in 1..copies {
                    out.push((to, bytes.clone()));
                }
                out.push((to, bytes));
            }
            Byzantine::Garbage => out.push((to, random_datagram(rng))),
        }
    }
}

/// Random bytes: mostly short, sometimes empty, now and then over the limit.
pub fn random_datagram(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(20) {
        0 => 0,
        1 => MESSAGE_SIZE_MAX + 1 + rng.below(100) as usize,
        _ => rng.between(1, 300) as usize,
    };
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    bytes
}

/// A node that receives nothing useful and sends random datagrams to `target`
/// every `interval`: the network's idea of an attacker that does not know the
/// protocol.
#[derive(Debug)]
pub struct Noise {
    addr: Addr,
    target: Addr,
    interval: Duration,
    rng: Rng,
    next: Time,
    counters: Counters,
}

impl Noise {
    pub fn new(addr: Addr, target: Addr, interval: Duration, rng: Rng) -> Noise {
        assert!(
            interval > Duration::ZERO,
            "Noise with no interval would never let time pass"
        );
        Noise {
            addr,
            target,
            interval,
            rng,
            next: Time::ZERO,
            counters: Counters::default(),
        }
    }
}

impl Process for Noise {
    fn addr(&self) -> Addr {
        self.addr
    }

    fn start(&mut self, now: Time, _out: &mut Vec<Packet>) {
        self.next = now + self.interval;
    }

    fn on_packet(&mut self, _now: Time, _bytes: &[u8], _out: &mut Vec<Packet>) {
        self.counters.add("noise: ignored", 1);
    }

    fn on_timers(&mut self, now: Time, out: &mut Vec<Packet>) {
        if now >= self.next {
            out.push(Packet {
                dest: Dest::To(self.target),
                bytes: random_datagram(&mut self.rng),
            });
            self.next = now + self.interval;
        }
    }

    fn next_deadline(&self) -> Option<Time> {
        Some(self.next)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

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
    workload: Option<Workload>,
    /// Clients with operations left to issue or outstanding.
    busy_clients: usize,
    think_time_max: Duration,
    history: Vec<Operation>,
    trace: Xxh3,
    faults: FaultCounts,
    deliveries: u64,
    /// Events processed at the current instant, to catch a livelock.
    events_this_instant: u64,
    /// Counters of nodes that crashed or were replaced, kept for the report.
    retired_counters: Counters,
    /// Scratch buffers, reused across events.
    packets: Vec<Packet>,
    tampered: Vec<(Addr, Vec<u8>)>,
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
    /// Nodes talk only to nodes in the same group. Everyone starts in 0.
    group: u32,
    byzantine: Option<Box<dyn Tamper>>,
    client: Option<ClientSlot>,
}

#[derive(Debug)]
struct ClientSlot {
    /// Operations still to issue.
    remaining: u64,
    /// Index in the history of the outstanding operation.
    outstanding: Option<usize>,
    /// This client's workload stream: which operations it issues does not
    /// depend on when other clients issue theirs.
    rng: Rng,
}

enum EventKind {
    Deliver { to: usize, bytes: Vec<u8> },
    Timer { node: usize, incarnation: u32 },
    Invoke { node: usize, incarnation: u32 },
    Action(Action),
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
            workload: None,
            busy_clients: 0,
            think_time_max: Duration::ZERO,
            history: Vec::new(),
            trace: Xxh3::new(),
            faults: FaultCounts::default(),
            deliveries: 0,
            events_this_instant: 0,
            retired_counters: Counters::default(),
            packets: Vec::new(),
            tampered: Vec::new(),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// Changes how the network treats datagrams sent from now on.
    pub fn set_network(&mut self, network: Network) {
        network.validate();
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
        assert!(
            self.workload.is_some(),
            "set a workload before adding clients"
        );
        let client = ClientSlot {
            remaining: ops,
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
            process: Some(process),
            factory,
            rng,
            incarnation: 0,
            timer_at: None,
            group: 0,
            byzantine: None,
            client,
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
        if let Some(process) = self.nodes[node].process.as_mut() {
            process.start(now, &mut packets);
        }
        self.after_call(node, &mut packets);
        self.packets = packets;
    }

    /// Runs `action` at virtual time `at` (now, if `at` has passed).
    pub fn schedule(&mut self, at: Time, action: impl FnOnce(&mut Simulator) + 'static) {
        self.push(at.max(self.now), EventKind::Action(Box::new(action)));
    }

    /// Crashes the node: it loses all volatile state, and datagrams and timers
    /// meant for it vanish. A crashed client's outstanding operation stays
    /// incomplete (it may or may not take effect) and it issues no more.
    pub fn crash(&mut self, addr: Addr) {
        let Some(&node) = self.index.get(&addr) else {
            panic!("crash: no node {addr}");
        };
        let slot = &mut self.nodes[node];
        if let Some(process) = slot.process.take() {
            self.retired_counters.merge(process.counters());
            slot.incarnation += 1;
            slot.timer_at = None;
            if let Some(client) = slot.client.as_mut() {
                if client.remaining > 0 || client.outstanding.is_some() {
                    self.busy_clients -= 1;
                }
                client.remaining = 0;
                client.outstanding = None;
            }
            self.faults.crashes += 1;
        }
    }

    /// Restarts a crashed node from its factory, with fresh state.
    pub fn restart(&mut self, addr: Addr) {
        let Some(&node) = self.index.get(&addr) else {
            panic!("restart: no node {addr}");
        };
        let slot = &mut self.nodes[node];
        assert!(slot.process.is_none(), "restart: {addr} is running");
        let process = (slot.factory)(slot.rng.fork());
        slot.process = Some(process);
        slot.incarnation += 1;
        slot.timer_at = None;
        self.faults.restarts += 1;
        self.start(node);
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
        self.start(node);
        if invoke {
            self.schedule_invoke(node);
        }
    }

    /// Splits the network: the nodes of each group talk only among themselves.
    /// Nodes not named form one more group.
    pub fn partition(&mut self, groups: &[&[Addr]]) {
        for slot in &mut self.nodes {
            slot.group = 0;
        }
        for (i, group) in groups.iter().enumerate() {
            for addr in *group {
                let node = self.index[addr];
                self.nodes[node].group = i as u32 + 1;
            }
        }
        self.faults.partitions += 1;
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        for slot in &mut self.nodes {
            slot.group = 0;
        }
    }

    /// Makes `addr` Byzantine: every datagram it sends passes through `tamper`.
    pub fn set_byzantine(&mut self, addr: Addr, tamper: Box<dyn Tamper>) {
        let node = self.index[&addr];
        self.nodes[node].byzantine = Some(tamper);
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
            EventKind::Deliver { to, bytes } => self.deliver(to, bytes),
            EventKind::Timer { node, incarnation } => self.fire_timers(node, incarnation, at),
            EventKind::Invoke { node, incarnation } => self.invoke(node, incarnation),
            EventKind::Action(action) => action(self),
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
        self.trace.digest()
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

    /// Whether `addr` is running (added and not crashed).
    pub fn is_running(&self, addr: Addr) -> bool {
        self.index
            .get(&addr)
            .is_some_and(|&node| self.nodes[node].process.is_some())
    }

    fn push(&mut self, at: Time, kind: EventKind) {
        self.queue.push(at, kind);
    }

    fn deliver(&mut self, node: usize, bytes: Vec<u8>) {
        let now = self.now;
        let slot = &mut self.nodes[node];
        let Some(process) = slot.process.as_mut() else {
            return; // Crashed: the datagram is lost.
        };
        self.deliveries += 1;
        self.trace.update(&now.as_nanos().to_le_bytes());
        hash_addr(&mut self.trace, slot.addr);
        self.trace.update(&(bytes.len() as u64).to_le_bytes());
        self.trace.update(&bytes);
        let mut packets = std::mem::take(&mut self.packets);
        process.on_packet(now, &bytes, &mut packets);
        self.after_call(node, &mut packets);
        self.packets = packets;
    }

    fn fire_timers(&mut self, node: usize, incarnation: u32, at: Time) {
        let slot = &mut self.nodes[node];
        if slot.incarnation != incarnation || slot.timer_at != Some(at) {
            return; // Stale: the node restarted, or an earlier event replaced this one.
        }
        slot.timer_at = None;
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
        self.trace.update(&now.as_nanos().to_le_bytes());
        hash_addr(&mut self.trace, slot.addr);
        self.trace.update(&op);
        client.remaining -= 1;
        client.outstanding = Some(self.history.len());
        self.history.push(Operation {
            client: id,
            op: op.clone(),
            invoked: now,
            completed: None,
        });
        let mut packets = std::mem::take(&mut self.packets);
        process.invoke(now, op, &mut packets);
        self.after_call(node, &mut packets);
        self.packets = packets;
    }

    /// After any call into a node: collect a client's result, send what the
    /// node sent, and queue its next timer.
    fn after_call(&mut self, node: usize, packets: &mut Vec<Packet>) {
        self.collect_result(node);
        let from = self.nodes[node].addr;
        for Packet { dest, bytes } in packets.drain(..) {
            match dest {
                Dest::To(to) => self.send(node, to, bytes),
                Dest::Replicas => {
                    for i in 0..self.replicas.len() {
                        let to = self.replicas[i];
                        if to != from {
                            self.send(node, to, bytes.clone());
                        }
                    }
                }
            }
        }
        // Queue a timer event only when the node's deadline is earlier than
        // the one already queued. A deadline that moved later (the common case:
        // a retransmission timer re-armed on every request) is caught when the
        // queued event fires early and finds nothing due.
        let slot = &mut self.nodes[node];
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
        let Some(result) = process.take_result() else {
            return;
        };
        let index = client
            .outstanding
            .take()
            .expect("a client returned a result with no operation outstanding");
        self.trace.update(&self.now.as_nanos().to_le_bytes());
        hash_addr(&mut self.trace, slot.addr);
        self.trace.update(&result);
        self.history[index].completed = Some((self.now, result));
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
        let think = self.think_time_max.as_nanos() as u64;
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
            self.faults.byzantine += 1;
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
        if self.nodes[from_node].group != self.nodes[to_node].group {
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
                    to: to_node,
                    bytes: bytes.clone(),
                },
            );
        }
        let at = self.now + self.draw_delay();
        self.push(at, EventKind::Deliver { to: to_node, bytes });
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
