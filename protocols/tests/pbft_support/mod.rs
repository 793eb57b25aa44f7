//! What the PBFT simulator tests share: running to the end, counters, a
//! replica wrapped to watch its state, and a tamperer that records what a
//! node sends.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use protocols::pbft::Replica;
use protocols::simulate::{Entry, ExecutionLog};
use runtime::node::{Node, Packet, Process};
use runtime::sim::{Simulator, Tamper};
use runtime::{Addr, Counters, ReplicaId, Rng, Time};
use wire::pbft::Message;

pub fn replica(i: u8) -> Addr {
    Addr::Replica(ReplicaId(i))
}

pub fn finish(sim: &mut Simulator, limit_s: u64) {
    assert!(
        sim.run_until_clients_done(Time::ZERO + Duration::from_secs(limit_s)),
        "clients did not finish: {sim:?}"
    );
}

pub fn counter(sim: &Simulator, addr: Addr, name: &str) -> u64 {
    sim.node_counters(addr).map_or(0, |c| c.get(name))
}

pub fn total(sim: &Simulator, name: &str) -> u64 {
    sim.counters().get(name)
}

/// Requests each replica incarnation executed.
pub fn executed(log: &ExecutionLog) -> Vec<(ReplicaId, usize)> {
    log.logs()
        .into_iter()
        .map(|(r, slots)| {
            let n = slots
                .values()
                .flatten()
                .filter(|e| matches!(e, Entry::Executed { .. }))
                .count();
            (r, n)
        })
        .collect()
}

/// Every replica (one incarnation each) executed `ops` requests.
pub fn executed_everywhere(log: &ExecutionLog, n: usize, ops: usize) {
    let executed = executed(log);
    assert_eq!(executed.len(), n);
    for (replica, count) in executed {
        assert_eq!(count, ops, "replica {}", replica.0);
    }
}

/// Looks at a replica after each event.
pub type Watch = Rc<dyn Fn(&Replica)>;

/// A replica that reports what it was like after each event.
pub struct Probe {
    pub node: Node<Replica>,
    pub watch: Watch,
}

impl Process for Probe {
    fn addr(&self) -> Addr {
        self.node.addr()
    }
    fn start(&mut self, now: Time, out: &mut Vec<Packet>) {
        self.node.start(now, out);
        (self.watch)(self.node.state());
    }
    fn on_packet(&mut self, now: Time, from: Addr, bytes: &[u8], out: &mut Vec<Packet>) {
        self.node.on_packet(now, from, bytes, out);
        (self.watch)(self.node.state());
    }
    fn on_timers(&mut self, now: Time, out: &mut Vec<Packet>) {
        self.node.on_timers(now, out);
        (self.watch)(self.node.state());
    }
    fn next_deadline(&self) -> Option<Time> {
        self.node.next_deadline()
    }
    fn counters(&self) -> &Counters {
        self.node.counters()
    }
    fn is_recovering(&self) -> bool {
        self.node.is_recovering()
    }
    fn executed_slot(&self) -> Option<u64> {
        self.node.executed_slot()
    }
}

/// The largest value `read` gave, over every event: a cell to read after the
/// run and the watcher to put in a [`Probe`].
pub fn high_water(read: impl Fn(&Replica) -> u64 + 'static) -> (Rc<Cell<u64>>, Watch) {
    let cell = Rc::new(Cell::new(0));
    let seen = Rc::clone(&cell);
    (cell, Rc::new(move |r| seen.set(seen.get().max(read(r)))))
}

/// What a node sent, decoded, in order: a tamperer that changes nothing.
pub type Sent = Rc<RefCell<Vec<(Addr, Message)>>>;

pub fn recorder() -> (Sent, Box<dyn Tamper>) {
    let sent: Sent = Rc::default();
    let seen = Rc::clone(&sent);
    let tamper = move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
        if let Ok(msg) = wire::decode::<Message>(&bytes) {
            seen.borrow_mut().push((to, msg));
        }
        out.push((to, bytes));
    };
    (sent, Box::new(tamper))
}

/// §4.4's hand-over, where nothing else would do it: the primary crashes
/// with a client's request in flight, the client multicasts it once (the
/// backups wait for it) and then crashes too, so it never sends it again.
/// Only the backups that waited can bring it to the new primary. Returns
/// the view changes the replicas started in two seconds, and whether the
/// request executed: one view change per live replica with the hand-over;
/// without it, every new primary lets the request wait, a cascade.
pub fn hand_over_scenario() -> (u64, bool) {
    use protocols::simulate::pbft::system;
    use runtime::sim::Network;
    let mut network = Network::reliable();
    network.delay_max = network.delay_min;
    let protocols::simulate::pbft::System { mut sim, log, .. } = system(3, network, 4, 1, 20);
    let client = Addr::Client(runtime::ClientId(1));
    sim.schedule(Time::from_nanos(2_000_000), |sim| sim.crash(replica(0)));
    // After its first retransmission (30 ms after it sent the request),
    // before its second (60 ms after that).
    sim.schedule(Time::from_nanos(45_000_000), move |sim| sim.crash(client));
    let executed_before = log.executed();
    sim.run_until(Time::ZERO + Duration::from_secs(2));
    (
        total(&sim, "view change: started"),
        log.executed() > executed_before,
    )
}
