//! A node with its types erased: bytes in, bytes out.
//!
//! [`Node`] runs the whole pipeline of one protocol node on the calling thread
//! (decode, handle, encode) on the one driver core ([`crate::driver`]), which
//! keeps its timers, counters, random stream and durable writes.
//! Behind the [`Process`] trait object, nodes of different protocols, clients,
//! and Byzantine stand-ins all look alike to the simulator.

use std::sync::Arc;

use wire::Addr;

use crate::actor::{Client, Counters, Dest, DropReason, SharedState, Source, State};
use crate::driver::Driver;
use crate::durable::{Stored, Write};
use crate::rng::Rng;
use crate::time::Time;

/// A datagram a node sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub dest: Dest,
    pub bytes: Vec<u8>,
}

/// Durable writes a node made, and where in its output the packets that must
/// wait for them begin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    pub writes: Vec<Write>,
    /// Packets in `out` before this index may leave before the writes are
    /// durable; the rest only after.
    pub barrier: usize,
}

/// A node as the simulator (or any single-threaded driver) sees it. Follows the
/// driver contract of [`crate::actor`]; each call appends what the node sends
/// to `out`.
pub trait Process {
    fn addr(&self) -> Addr;

    /// Called once, first.
    fn start(&mut self, now: Time, out: &mut Vec<Packet>);

    /// Called once, first, instead of [`Process::start`], when the node
    /// restarts with durable state (see [`State::on_recover`]).
    fn recover(&mut self, now: Time, stored: &Stored, out: &mut Vec<Packet>) {
        let _ = stored;
        self.start(now, out);
    }

    /// The durable writes made by the calls since the last take, with the
    /// index in `out` (as those calls filled it) from which packets must
    /// wait for them. A driver takes them after every call.
    fn take_persisted(&mut self) -> Option<Persisted> {
        None
    }

    /// One datagram arrived from `from` (the network's idea of its source).
    fn on_packet(&mut self, now: Time, from: Addr, bytes: &[u8], out: &mut Vec<Packet>);

    /// Fires the timers that are due at `now`.
    fn on_timers(&mut self, now: Time, out: &mut Vec<Packet>);

    /// When [`Process::on_timers`] next has something to do.
    fn next_deadline(&self) -> Option<Time>;

    /// Drops and other events, by reason.
    fn counters(&self) -> &Counters;

    /// Starts a client operation. Only the simulator's clients are asked, and
    /// only when no operation of theirs is outstanding: calling it on another
    /// node is a harness bug.
    fn invoke(&mut self, now: Time, op: &[u8], out: &mut Vec<Packet>) {
        let _ = (now, op, out);
        panic!("invoke on {}, which is not a client", self.addr());
    }

    /// A client's result, once, when its operation has completed.
    fn take_result(&mut self) -> Option<Vec<u8>> {
        None
    }

    /// A client that has given up for good (see
    /// [`crate::actor::Client::has_failed`]).
    fn has_failed(&self) -> bool {
        false
    }

    /// Whether the node is recovering and counts as faulty meanwhile (see
    /// [`State::is_recovering`]).
    fn is_recovering(&self) -> bool {
        false
    }

    /// How far the node has executed (see [`State::executed_slot`]).
    fn executed_slot(&self) -> Option<u64> {
        None
    }

    /// One line about a datagram for a trace.
    fn describe(&self, bytes: &[u8]) -> String {
        format!("{} bytes", bytes.len())
    }

    /// Starts keeping trace lines ([`crate::Context::note`]), collected by
    /// [`Process::take_notes`] after each call.
    fn set_tracing(&mut self) {}

    /// Moves the trace lines of the last call to `out`.
    fn take_notes(&mut self, out: &mut Vec<String>) {
        let _ = out;
    }
}

/// The source a datagram from `from` has, as the network reports it.
pub fn source_of(from: Addr) -> Source {
    match from {
        Addr::Replica(id) => Source::Replica(id),
        Addr::Client(_) => Source::Other,
    }
}

/// Why the runtime drops a message that did not come from its sender's
/// address.
pub const WRONG_SOURCE: &str = "message: not from the sender's address";

/// A protocol node driven on the calling thread. Implements [`Process`] for
/// replicas; wrap a client in [`ClientNode`]. The calls are the
/// [`Driver`]'s; what a node adds is decoding what arrives and encoding what
/// leaves into [`Packet`]s, and reporting its durable writes as
/// [`Persisted`].
pub struct Node<S: State> {
    driver: Driver<S>,
    shared: Arc<S::Shared>,
    persisted: Option<Persisted>,
}

impl<S: State> std::fmt::Debug for Node<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.driver.me())
            .finish_non_exhaustive()
    }
}

impl<S: State> Node<S> {
    pub fn new(me: Addr, state: S, shared: Arc<S::Shared>, rng: Rng) -> Node<S> {
        Node {
            driver: Driver::new(me, state, rng),
            shared,
            persisted: None,
        }
    }

    pub fn state(&self) -> &S {
        self.driver.state()
    }

    /// Encodes what the last call sent into `out`. Packets behind a durable
    /// write follow at once, with the writes and where they begin reported
    /// in [`Persisted`]: the simulator decides when (and whether) they are
    /// durable.
    fn drain(&mut self, out: &mut Vec<Packet>) {
        let shared = &*self.shared;
        self.driver
            .drain(|dest, msg| encode(shared, out, dest, &msg));
        if self.driver.has_writes() {
            // An earlier call since the last take may have persisted too:
            // its barrier, the earlier, holds for both.
            let barrier = out.len();
            let persisted = self.persisted.get_or_insert_with(|| Persisted {
                writes: Vec::new(),
                barrier,
            });
            self.driver.take_writes(&mut persisted.writes);
            self.driver
                .release(|dest, msg| encode(shared, out, dest, &msg));
        }
    }
}

/// Encodes `msg` into a packet of its own for `dest`, appended to `out`.
#[inline]
fn encode<H: SharedState>(
    shared: &H,
    out: &mut Vec<Packet>,
    dest: Dest,
    msg: &H::Outbound,
) -> Result<(), DropReason> {
    // Most messages fit; growing from empty would reallocate 3–4 times.
    let mut bytes = Vec::with_capacity(128);
    shared.encode(msg, &mut bytes)?;
    out.push(Packet { dest, bytes });
    Ok(())
}

impl<S: State> Process for Node<S> {
    fn addr(&self) -> Addr {
        self.driver.me()
    }

    fn start(&mut self, now: Time, out: &mut Vec<Packet>) {
        self.driver.start(now);
        self.drain(out);
    }

    fn recover(&mut self, now: Time, stored: &Stored, out: &mut Vec<Packet>) {
        self.driver.recover(now, stored);
        self.drain(out);
    }

    fn take_persisted(&mut self) -> Option<Persisted> {
        self.persisted.take()
    }

    fn on_packet(&mut self, now: Time, from: Addr, bytes: &[u8], out: &mut Vec<Packet>) {
        let source = source_of(from);
        match self.shared.decode(source, bytes) {
            Ok((sender, _)) if !source.may_send_as(sender) => {
                self.driver.drop_input(WRONG_SOURCE);
            }
            Ok((sender, msg)) => {
                self.driver.on_message(now, sender, msg);
                self.drain(out);
            }
            Err(reason) => self.driver.drop_input(reason.0),
        }
    }

    fn on_timers(&mut self, now: Time, out: &mut Vec<Packet>) {
        let mut due = self.driver.due(now);
        while let Some(timer) = self.driver.next_due(&mut due) {
            self.driver.on_timer(now, timer);
            self.drain(out);
        }
    }

    fn next_deadline(&self) -> Option<Time> {
        self.driver.next_deadline()
    }

    fn counters(&self) -> &Counters {
        self.driver.counters()
    }

    fn is_recovering(&self) -> bool {
        self.driver.state().is_recovering()
    }

    fn executed_slot(&self) -> Option<u64> {
        self.driver.state().executed_slot()
    }

    fn describe(&self, bytes: &[u8]) -> String {
        self.shared.describe(bytes)
    }

    fn set_tracing(&mut self) {
        self.driver.set_tracing();
    }

    fn take_notes(&mut self, out: &mut Vec<String>) {
        self.driver.take_notes(out);
    }
}

/// A [`Node`] whose state is a [`Client`], so the simulator can hand it
/// operations.
#[derive(Debug)]
pub struct ClientNode<S: Client>(pub Node<S>);

impl<S: Client> Process for ClientNode<S> {
    fn addr(&self) -> Addr {
        self.0.addr()
    }

    fn start(&mut self, now: Time, out: &mut Vec<Packet>) {
        self.0.start(now, out);
    }

    fn recover(&mut self, now: Time, stored: &Stored, out: &mut Vec<Packet>) {
        self.0.recover(now, stored, out);
    }

    fn take_persisted(&mut self) -> Option<Persisted> {
        self.0.take_persisted()
    }

    fn on_packet(&mut self, now: Time, from: Addr, bytes: &[u8], out: &mut Vec<Packet>) {
        self.0.on_packet(now, from, bytes, out);
    }

    fn on_timers(&mut self, now: Time, out: &mut Vec<Packet>) {
        self.0.on_timers(now, out);
    }

    fn next_deadline(&self) -> Option<Time> {
        self.0.next_deadline()
    }

    fn counters(&self) -> &Counters {
        self.0.counters()
    }

    fn invoke(&mut self, now: Time, op: &[u8], out: &mut Vec<Packet>) {
        self.0.driver.invoke(now, op);
        self.0.drain(out);
    }

    fn take_result(&mut self) -> Option<Vec<u8>> {
        self.0.driver.state_mut().take_result()
    }

    fn has_failed(&self) -> bool {
        self.0.driver.state().has_failed()
    }

    fn describe(&self, bytes: &[u8]) -> String {
        self.0.describe(bytes)
    }

    fn set_tracing(&mut self) {
        self.0.set_tracing();
    }

    fn take_notes(&mut self, out: &mut Vec<String>) {
        self.0.take_notes(out);
    }
}
