//! Scenarios shared by the VR tests and the planted-bug tests.

#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use protocols::app::KvApp;
use protocols::simulate::{ExecutionLog, check};
use protocols::vr::simulate::{System, system};
use protocols::vr::{Codec, Config, Replica};
use runtime::durable::Stored;
use runtime::node::{Node, Packet, Persisted, Process};
use runtime::sim::{Network, Simulator};
use runtime::{Addr, Counters, ReplicaId, Rng, Time};

fn replica(i: u8) -> Addr {
    Addr::Replica(ReplicaId(i))
}

/// The run of [`a_new_primary_takes_the_log_of_the_latest_normal_view`]:
/// what the checkers say.
pub fn last_normal_run() -> Result<(), String> {
    let mut config = Config::new(3);
    config.batch_max = 1;
    config.window = 4;
    let System { mut sim, log, .. } = system(6, Network::reliable(), config, 4, 200);
    let clients: Vec<Addr> = (1..=4)
        .map(|c| Addr::Client(runtime::ClientId(c)))
        .collect();
    let ms = |ms: u64| Time::ZERO + Duration::from_millis(ms);
    sim.run_until(ms(10));
    let cut_off: Vec<Addr> = std::iter::once(replica(0))
        .chain(clients.iter().copied())
        .collect();
    sim.partition(&[&cut_off, &[replica(1), replica(2)]]);
    sim.run_until(ms(60));
    // One client reaches the view-1 side and completes two operations
    // there: the first may be one the deposed primary prepared too (the
    // client sent it there first), the second is new in view 1.
    let side_a = [replica(0), clients[1], clients[2], clients[3]];
    sim.partition(&[&side_a, &[replica(1), replica(2), clients[0]]]);
    let before = sim.ops_completed();
    let mut t = sim.now();
    while sim.ops_completed() < before + 2 {
        t = t + Duration::from_micros(50);
        sim.run_until(t);
        assert!(t < ms(2_000), "two operations not completed in view 1");
    }
    // View 1's primary cut off at once: view 2 forms from replicas 0 and 2.
    let rest = [
        replica(0),
        replica(2),
        clients[0],
        clients[1],
        clients[2],
        clients[3],
    ];
    sim.partition(&[&[replica(1)], &rest]);
    sim.run_until(t + Duration::from_millis(500));
    sim.heal();
    assert!(
        sim.run_until_clients_done(Time::ZERO + Duration::from_secs(30)),
        "clients not done in 30 s"
    );
    check(&sim, &log)
}

/// Looks at a replica after each event.
pub type Watch = Rc<dyn Fn(&Replica)>;

/// A replica that reports what it is like after each event.
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

/// Puts replica `id` back as a probed one (as `simulate::add_replica`
/// makes it: new at first, recovering after a restart).
pub fn probe_replica(
    sim: &mut Simulator,
    log: &ExecutionLog,
    id: u8,
    config: Config,
    watch: Watch,
) {
    let log = log.clone();
    let id = ReplicaId(id);
    let started = Cell::new(false);
    sim.add_node(
        Addr::Replica(id),
        Box::new(move |rng: Rng| {
            let app = log.record(id, Box::new(KvApp::default()));
            let replica = if started.replace(true) {
                Replica::recovering(id, config, app)
            } else {
                Replica::new(id, config, app)
            };
            Box::new(Probe {
                node: Node::new(Addr::Replica(id), replica, Arc::new(Codec), rng),
                watch: Rc::clone(&watch),
            })
        }),
    );
}

/// The largest value `read` gave, over every event, and the watcher.
pub fn high_water(read: impl Fn(&Replica) -> u64 + 'static) -> (Rc<Cell<u64>>, Watch) {
    let cell = Rc::new(Cell::new(0));
    let seen = Rc::clone(&cell);
    (cell, Rc::new(move |r| seen.set(seen.get().max(read(r)))))
}

/// `simulate::system` with every replica probed by `watch`.
pub fn probed_system(seed: u64, config: Config, clients: u64, ops: u64, watch: Watch) -> System {
    let mut sim = Simulator::new(seed, Network::reliable());
    let log = ExecutionLog::default();
    sim.set_workload(
        protocols::simulate::KvWorkload::default().into_workload(),
        Duration::from_millis(1),
    );
    for i in 0..config.n {
        probe_replica(&mut sim, &log, i as u8, config, Rc::clone(&watch));
    }
    for id in 1..=clients {
        protocols::vr::simulate::add_client(&mut sim, id, config, ops);
    }
    System { sim, log, config }
}
