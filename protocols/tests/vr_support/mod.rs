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

/// What the tamperers of [`stale_life_run`] hold back, and when they let go.
#[derive(Default)]
struct Held {
    /// Replica 1's `StartViewChange(1)` to replica 2.
    b_to_c: Vec<Vec<u8>>,
    /// Replica 2's `StartViewChange(1)` and `DoViewChange(1)` to replica 1.
    c_to_b: Vec<Vec<u8>>,
    release_b: bool,
    release_c: bool,
}

fn view_change_message(bytes: &[u8]) -> Option<wire::vr::Peer> {
    match wire::decode::<wire::vr::Message>(bytes) {
        Ok(wire::vr::Message::Peer {
            msg:
                m @ (wire::vr::Peer::StartViewChange { view: 1, .. }
                | wire::vr::Peer::DoViewChange { view: 1, .. }),
            ..
        }) => Some(m),
        _ => None,
    }
}

/// DISC'17's counterexample to VR's recovery, with never more than one
/// replica crashed or recovering: replica 1 starts a view change to view 1
/// (its `StartViewChange` to replica 0 lost, the one to replica 2 held
/// back), crashes and recovers into view 0; then its old message reaches
/// replica 2, which moves to view 1 and sends replica 1 `StartViewChange`
/// and `DoViewChange` (held back; its other view-1 messages are lost, now
/// and in its next life), crashes and recovers into view 0 too; replica 0
/// commits operations with replica 2 while replica 1 does not hear them;
/// and then replica 2's old messages reach replica 1, still cut off from
/// replica 0. Taken, they form view 1 with replica 1's log, which lacks the
/// operations committed since, and the group then wedges (the others'
/// acknowledgements reach past the new log and are refused). The crash
/// vector makes the old messages stale.
pub fn stale_life_run() -> Result<(), String> {
    use std::cell::RefCell;
    let mut config = Config::new(3);
    config.view_timeout = Duration::from_millis(20);
    let System { mut sim, log, .. } = system(21, Network::reliable(), config, 2, 400);
    let held: Rc<RefCell<Held>> = Rc::default();
    let (a, b, c) = (replica(0), replica(1), replica(2));
    let h = Rc::clone(&held);
    let tamper_b = move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
        let mut held = h.borrow_mut();
        if held.release_b {
            for m in held.b_to_c.drain(..) {
                out.push((c, m));
            }
        }
        match view_change_message(&bytes) {
            Some(wire::vr::Peer::StartViewChange { .. }) if !held.release_b => {
                if to == c {
                    held.b_to_c.push(bytes);
                }
            }
            _ => out.push((to, bytes)),
        }
    };
    let h = Rc::clone(&held);
    let tamper_c = move |_: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>| {
        let mut held = h.borrow_mut();
        if held.release_c {
            for m in held.c_to_b.drain(..) {
                out.push((b, m));
            }
        }
        match view_change_message(&bytes) {
            // Its view-1 messages to replica 1 held back, then (those of
            // its next life) lost; to replica 0, lost.
            Some(_) if to == b && !held.release_c => held.c_to_b.push(bytes),
            Some(_) => {}
            None => out.push((to, bytes)),
        }
    };
    sim.set_byzantine(b, Box::new(tamper_b));
    sim.set_byzantine(c, Box::new(tamper_c));
    let ms = |ms: u64| Time::ZERO + Duration::from_millis(ms);
    sim.run_until(ms(10));
    // Replica 1 hears nothing from the primary and starts view 1.
    sim.cut(&[a], &[b]);
    sim.run_until(ms(45));
    sim.crash(b);
    sim.run_until(ms(47));
    sim.heal();
    sim.restart(b);
    sim.run_until(ms(60));
    // Its old StartViewChange reaches replica 2.
    held.borrow_mut().release_b = true;
    sim.run_until(ms(65));
    sim.crash(c);
    sim.run_until(ms(67));
    sim.restart(c);
    sim.run_until(ms(75));
    // Replica 0 commits with replica 2 alone.
    sim.cut(&[a], &[b]);
    sim.run_until(ms(85));
    // Replica 2's old messages reach replica 1 (which still does not hear
    // replica 0).
    held.borrow_mut().release_c = true;
    sim.run_until(ms(100));
    sim.heal();
    sim.run_until(ms(120));
    let done = sim.run_until_clients_done(Time::ZERO + Duration::from_secs(30));
    log.check_agreement()
        .map_err(|v| format!("agreement: {v}"))?;
    if !done {
        return Err("liveness: the clients were not done in 30 s".to_string());
    }
    check(&sim, &log)
}
