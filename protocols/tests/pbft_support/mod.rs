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
