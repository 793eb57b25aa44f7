//! Durable state through the actor contract: what a node persists survives a
//! crash and comes back in `on_recover`, in the simulator and on the real
//! runtime, and `persist` is a barrier for what the node sends after it.
//!
//! The protocol is a one-replica ledger of votes: a client asks for a vote
//! on a number, and the replica grants it if the number is above every vote
//! it has granted, persisting the vote before it answers. A vote granted
//! twice for numbers out of order (the replica forgot an earlier vote) is the
//! bug durable state prevents. Before persisting, the replica also sends an
//! acknowledgement of receipt, which may leave before the write is durable.

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runtime::deploy::{DurableSetup, ReplicaSetup, spawn_durable_replica};
use runtime::durable::{Stored, Sync};
use runtime::node::{Node, Packet, Process};
use runtime::sim::{Network, Simulator};
use runtime::{Addr, ClientId, Context, Counters, DropReason, ReplicaId, SharedState, Source};
use runtime::{State, Time};
use wire::control::{Idle, ThreadMap, TransportKind};

const REPLICA: Addr = Addr::Replica(ReplicaId(0));
const CLIENT: Addr = Addr::Client(ClientId(1));

/// Messages, one byte of kind and eight of number: `V` asks for a vote, `R`
/// acknowledges receipt, `G` grants, `N` refuses (with the vote that stands).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Msg {
    Vote(u64),
    Received(u64),
    Granted(u64),
    Refused(u64),
}

fn encode(msg: Msg) -> Vec<u8> {
    let (kind, n) = match msg {
        Msg::Vote(n) => (b'V', n),
        Msg::Received(n) => (b'R', n),
        Msg::Granted(n) => (b'G', n),
        Msg::Refused(n) => (b'N', n),
    };
    let mut bytes = vec![kind];
    bytes.extend_from_slice(&n.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<Msg> {
    let (&kind, rest) = bytes.split_first()?;
    let n = u64::from_le_bytes(rest.try_into().ok()?);
    Some(match kind {
        b'V' => Msg::Vote(n),
        b'R' => Msg::Received(n),
        b'G' => Msg::Granted(n),
        b'N' => Msg::Refused(n),
        _ => return None,
    })
}

#[derive(Debug)]
struct Codec;

impl SharedState for Codec {
    type Message = Msg;
    type Outbound = Msg;

    fn decode(&self, source: Source, bytes: &[u8]) -> Result<(Addr, Msg), DropReason> {
        let msg = decode(bytes).ok_or(DropReason("ledger: malformed"))?;
        let from = match source {
            Source::Replica(id) => Addr::Replica(id),
            Source::Other => CLIENT,
        };
        Ok((from, msg))
    }

    fn encode(&self, msg: &Msg, buf: &mut Vec<u8>) -> Result<(), DropReason> {
        buf.extend_from_slice(&encode(*msg));
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {}

/// The replica. With `grant_first` (a bug) it answers before persisting.
#[derive(Debug, Default)]
struct Ledger {
    voted: u64,
    grant_first: bool,
}

impl State for Ledger {
    type Message = Msg;
    type Outbound = Msg;
    type Timer = Timer;
    type Shared = Codec;

    fn on_recover(&mut self, stored: &Stored, _ctx: &mut Context<'_, Msg, Timer>) {
        let bytes = stored.get(b"vote").expect("the vote is the only key");
        self.voted = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    }

    fn on_message(&mut self, from: Addr, msg: Msg, ctx: &mut Context<'_, Msg, Timer>) {
        let Msg::Vote(n) = msg else {
            return ctx.drop_message("ledger: not a vote");
        };
        ctx.send(from, Msg::Received(n));
        if n <= self.voted {
            return ctx.send(from, Msg::Refused(self.voted));
        }
        self.voted = n;
        if self.grant_first {
            ctx.send(from, Msg::Granted(n));
            ctx.persist(&b"vote"[..], n.to_le_bytes());
        } else {
            ctx.persist(&b"vote"[..], n.to_le_bytes());
            ctx.send(from, Msg::Granted(n));
        }
    }

    fn on_timer(&mut self, timer: Timer, _ctx: &mut Context<'_, Msg, Timer>) {
        match timer {}
    }
}

/// A scripted client: sends the votes it is given, one per step, and logs
/// what comes back.
struct Voter {
    log: Rc<RefCell<Vec<Msg>>>,
    counters: Counters,
}

impl Process for Voter {
    fn addr(&self) -> Addr {
        CLIENT
    }

    fn start(&mut self, _now: Time, _out: &mut Vec<Packet>) {}

    fn on_packet(&mut self, _now: Time, _from: Addr, bytes: &[u8], _out: &mut Vec<Packet>) {
        self.log
            .borrow_mut()
            .push(decode(bytes).expect("the replica encodes"));
    }

    fn on_timers(&mut self, _now: Time, _out: &mut Vec<Packet>) {}

    fn next_deadline(&self) -> Option<Time> {
        None
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}

struct Run {
    sim: Simulator,
    log: Rc<RefCell<Vec<Msg>>>,
}

fn run(grant_first: bool) -> Run {
    // One fixed delay, so that datagrams arrive in the order they left.
    let network = Network {
        delay_min: Duration::from_millis(1),
        delay_max: Duration::from_millis(1),
        ..Network::reliable()
    };
    let mut sim = Simulator::new(7, network);
    sim.add_node(
        REPLICA,
        Box::new(move |rng| {
            let ledger = Ledger {
                voted: 0,
                grant_first,
            };
            Box::new(Node::new(REPLICA, ledger, Arc::new(Codec), rng)) as Box<dyn Process>
        }),
    );
    let log = Rc::new(RefCell::new(Vec::new()));
    let voter_log = Rc::clone(&log);
    sim.add_node(
        CLIENT,
        Box::new(move |_| {
            Box::new(Voter {
                log: Rc::clone(&voter_log),
                counters: Counters::default(),
            })
        }),
    );
    Run { sim, log }
}

impl Run {
    /// Sends `n` to the replica as the client would, and runs to quiet.
    fn vote(&mut self, n: u64) {
        self.sim.inject(CLIENT, REPLICA, encode(Msg::Vote(n)));
        let until = self.sim.now() + Duration::from_secs(1);
        self.sim.run_until(until);
    }

    fn took(&self) -> Vec<Msg> {
        std::mem::take(&mut *self.log.borrow_mut())
    }

    fn stored_vote(&self) -> Option<u64> {
        let bytes = self.sim.stored(REPLICA)?.get(b"vote")?;
        Some(u64::from_le_bytes(bytes.try_into().unwrap()))
    }

    fn restart(&mut self) {
        if self.sim.is_running(REPLICA) {
            self.sim.crash(REPLICA);
        }
        self.sim.restart(REPLICA);
    }
}

/// No grant the client saw may be at or below a grant seen earlier, and
/// every grant is at most what the replica holds durably.
fn check_grants(log: &[Msg], stored: Option<u64>) -> Result<(), String> {
    let mut last = 0;
    for msg in log {
        if let Msg::Granted(n) = *msg {
            if n <= last {
                return Err(format!("granted {n} after {last}"));
            }
            last = n;
        }
    }
    if last > stored.unwrap_or(0) {
        return Err(format!("granted {last}, durable {stored:?}"));
    }
    Ok(())
}

#[test]
fn what_was_persisted_survives_a_crash_and_comes_back_in_on_recover() {
    let mut run = run(false);
    run.vote(5);
    assert_eq!(
        run.took(),
        [Msg::Received(5), Msg::Granted(5)],
        "the grant left once the vote was durable"
    );
    assert_eq!(run.stored_vote(), Some(5));
    run.restart();
    run.vote(3);
    assert_eq!(run.took(), [Msg::Received(3), Msg::Refused(5)]);
    run.vote(6);
    assert_eq!(run.took(), [Msg::Received(6), Msg::Granted(6)]);
    assert_eq!(run.sim.faults().crashes, 1);
}

#[test]
fn a_crash_at_a_persist_sends_what_came_before_and_nothing_after() {
    for durable in [true, false] {
        let mut run = run(false);
        run.vote(5);
        run.took();
        run.sim.crash_at_next_persist(REPLICA, durable);
        run.vote(7);
        assert_eq!(
            run.took(),
            [Msg::Received(7)],
            "the receipt was sent before the persist, the grant after"
        );
        assert!(!run.sim.is_running(REPLICA));
        assert_eq!(run.sim.faults().persist_crashes, 1);
        let expect = if durable { 7 } else { 5 };
        assert_eq!(run.stored_vote(), Some(expect), "durable: {durable}");
        run.sim.restart(REPLICA);
        run.vote(7);
        let answer = if durable {
            Msg::Refused(7)
        } else {
            Msg::Granted(7)
        };
        assert_eq!(run.took(), [Msg::Received(7), answer], "durable: {durable}");
    }
}

#[test]
fn the_grant_check_catches_a_replica_that_answers_before_it_persists() {
    // The same script of votes and crashes; only the order of grant and
    // persist differs, and the check says no to the wrong order.
    for grant_first in [false, true] {
        let mut run = run(grant_first);
        let mut log = Vec::new();
        for (n, crash) in [
            (1, None),
            (2, Some(false)),
            (2, None),
            (3, Some(true)),
            (4, None),
        ] {
            if let Some(durable) = crash {
                run.sim.crash_at_next_persist(REPLICA, durable);
            }
            run.vote(n);
            if !run.sim.is_running(REPLICA) {
                run.sim.restart(REPLICA);
            }
            log.extend(run.took());
        }
        let verdict = check_grants(&log, run.stored_vote());
        assert_eq!(verdict.is_err(), grant_first, "{verdict:?} {log:?}");
    }
}

#[test]
fn on_the_real_runtime_the_state_file_outlives_the_process() {
    let dir = std::env::temp_dir().join(format!("durable-ledger-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (sync, threads) in [
        (Sync::Fsync, ThreadMap::single(None)),
        (Sync::NoFsync, ThreadMap::per_stage()),
    ] {
        let path = dir.join(format!("{sync:?}.state"));
        let start = || {
            let setup = ReplicaSetup {
                id: ReplicaId(0),
                replicas: vec!["127.0.0.1:0".parse().unwrap()],
                threads: threads.clone(),
                idle: Idle::SpinThenBlock { spin_us: 0 },
                transport: TransportKind::Auto,
                link: Default::default(),
            };
            let durable = DurableSetup {
                path: path.clone(),
                sync,
            };
            spawn_durable_replica(Ledger::default(), Arc::new(Codec), setup, Some(durable)).unwrap()
        };
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let ask = |server: SocketAddr, n: u64| -> Msg {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                assert!(Instant::now() < deadline, "no answer to vote {n}");
                socket.send_to(&encode(Msg::Vote(n)), server).unwrap();
                let mut buf = [0; 64];
                while let Ok((len, _)) = socket.recv_from(&mut buf) {
                    match decode(&buf[..len]) {
                        Some(Msg::Received(_)) | None => {}
                        Some(answer) => return answer,
                    }
                }
            }
        };
        let replica = start();
        let server = replica.local_addrs()[0];
        assert_eq!(ask(server, 5), Msg::Granted(5));
        let totals = replica.stop().unwrap();
        assert!(totals.counters.get("durable: batches committed") >= 1);
        let replica = start();
        let server = replica.local_addrs()[0];
        assert_eq!(ask(server, 4), Msg::Refused(5), "{sync:?}: recovered");
        assert_eq!(ask(server, 9), Msg::Granted(9));
        replica.stop().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
