//! What the HotStuff simulator tests share: running to the end, counters,
//! a replica wrapped to watch its state, and a tamperer that records what a
//! node sends.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use protocols::app::KvApp;
use protocols::hotstuff::simulate::proposal_auth;
use protocols::hotstuff::{Codec, Config, LIVENESS_BOUND, Replica};
use protocols::simulate::{Entry, ExecutionLog};
use runtime::durable::Stored;
use runtime::node::{Node, Packet, Persisted, Process};
use runtime::sim::{Simulator, Tamper};
use runtime::{Addr, Counters, ReplicaId, Rng, Time};
use wire::SecretKey;
use wire::hotstuff::{Block, Message, Proposal, Proposed, TimeoutCert};

/// The encoded proposal of `block` by its view's leader in the group `keys`
/// make, correctly authenticated: the leader, and the bytes.
pub fn proposal_bytes(
    keys: &[SecretKey],
    config: &Config,
    block: Block,
    tc: Option<TimeoutCert>,
) -> (ReplicaId, Vec<u8>) {
    let leader = config.leader(block.view);
    let header = Proposed {
        view: block.view,
        block: block.digest(),
        leader,
    };
    let auth = proposal_auth(keys, leader).authenticate(&header);
    let proposal = Proposal {
        header,
        auth,
        block,
        tc,
    };
    let bytes = wire::codec::encode_to_vec(&Message::Proposal(proposal)).unwrap();
    (leader, bytes)
}

pub fn replica(i: u8) -> Addr {
    Addr::Replica(ReplicaId(i))
}

/// Runs until every client is done, within `limit_s` seconds of virtual
/// time.
pub fn finish(sim: &mut Simulator, limit_s: u64) {
    assert!(
        sim.run_until_clients_done(Time::ZERO + Duration::from_secs(limit_s)),
        "clients did not finish: {sim:?}"
    );
}

/// Runs to the end with the seeded runs' liveness rule.
pub fn run_live(sim: &mut Simulator) {
    assert!(
        sim.run_until_live(LIVENESS_BOUND, Time::ZERO + Duration::from_secs(60)),
        "an operation waited past the liveness bound: {sim:?}"
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

/// Looks at a replica after each event.
pub type Watch = Rc<dyn Fn(&Replica)>;

/// A replica that reports what it was like after each event; everything
/// else (durable writes, recovery, traces) passes through.
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
    fn recover(&mut self, now: Time, stored: &Stored, out: &mut Vec<Packet>) {
        self.node.recover(now, stored, out);
        (self.watch)(self.node.state());
    }
    fn take_persisted(&mut self) -> Option<Persisted> {
        self.node.take_persisted()
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
    fn describe(&self, bytes: &[u8]) -> String {
        self.node.describe(bytes)
    }
    fn set_tracing(&mut self) {
        self.node.set_tracing();
    }
    fn take_notes(&mut self, out: &mut Vec<String>) {
        self.node.take_notes(out);
    }
}

/// Adds replica `id` (as `simulate::add_replica` does) wrapped in a probe
/// that `watch` looks through; a restart makes a fresh replica, which gets
/// its durable record back.
pub fn add_probed_replica(
    sim: &mut Simulator,
    log: &ExecutionLog,
    config: &Arc<Config>,
    key: &SecretKey,
    id: u8,
    watch: Watch,
) {
    let (log, config, key) = (log.clone(), Arc::clone(config), key.clone());
    let id = ReplicaId(id);
    sim.add_node(
        Addr::Replica(id),
        Box::new(move |rng: Rng| {
            let app = log.record(id, Box::new(KvApp::default()));
            let codec = Arc::new(Codec::replica(Arc::clone(&config), id, &key).expect("valid key"));
            let replica = Replica::new(id, Arc::clone(&codec), app);
            Box::new(Probe {
                node: Node::new(Addr::Replica(id), replica, codec, rng),
                watch: Rc::clone(&watch),
            })
        }),
    );
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

/// The views of the votes in what a node sent (votes alone, and votes a
/// timeout carries).
pub fn voted_views(sent: &Sent) -> Vec<u64> {
    sent.borrow()
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Vote(v) => Some(v.payload.view),
            Message::Timeout(_, _, Some(v)) => Some(v.payload.view),
            _ => None,
        })
        .collect()
}
