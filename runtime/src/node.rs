//! A node with its types erased: bytes in, bytes out.
//!
//! [`Node`] runs the whole pipeline of one protocol node on the calling thread
//! (decode, handle, encode) and keeps its timers, counters and random stream.
//! Behind the [`Process`] trait object, nodes of different protocols, clients,
//! and Byzantine stand-ins all look alike to the simulator.

use std::sync::Arc;

use wire::Addr;

use crate::actor::{Client, Context, Counters, Dest, Outbox, SharedState, Source, State};
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
    fn invoke(&mut self, now: Time, op: Vec<u8>, out: &mut Vec<Packet>) {
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

    /// Starts keeping trace lines ([`Context::note`]), collected by
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
/// replicas; wrap a client in [`ClientNode`].
pub struct Node<S: State> {
    me: Addr,
    state: S,
    shared: Arc<S::Shared>,
    outbox: Outbox<S::Outbound, S::Timer>,
    rng: Rng,
    persisted: Option<Persisted>,
}

impl<S: State> std::fmt::Debug for Node<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl<S: State> Node<S> {
    pub fn new(me: Addr, state: S, shared: Arc<S::Shared>, rng: Rng) -> Node<S> {
        Node {
            me,
            state,
            shared,
            outbox: Outbox::default(),
            rng,
            persisted: None,
        }
    }

    pub fn state(&self) -> &S {
        &self.state
    }

    /// Runs `f` on the state with a fresh context, then encodes what it sent.
    fn call(
        &mut self,
        now: Time,
        out: &mut Vec<Packet>,
        f: impl FnOnce(&mut S, &mut Context<'_, S::Outbound, S::Timer>),
    ) {
        let mut ctx = Context::new(now, self.me, &mut self.outbox, &mut self.rng);
        f(&mut self.state, &mut ctx);
        self.drain(out);
    }

    fn drop_input(&mut self, reason: &'static str) {
        self.outbox.counters.add(reason, 1);
        if let Some(notes) = &mut self.outbox.notes {
            notes.push(format!("drop: {reason}"));
        }
    }

    fn drain(&mut self, out: &mut Vec<Packet>) {
        let barrier = self.outbox.barrier.take();
        let mut mark = None;
        for (i, (dest, msg)) in self.outbox.sends.drain(..).enumerate() {
            if barrier == Some(i) {
                mark = Some(out.len());
            }
            // Most messages fit; growing from empty would reallocate 3–4 times.
            let mut bytes = Vec::with_capacity(128);
            match self.shared.encode(&msg, &mut bytes) {
                Ok(()) => out.push(Packet { dest, bytes }),
                Err(reason) => self.outbox.counters.add(reason.0, 1),
            }
        }
        if barrier.is_some() {
            // An earlier call since the last take may have persisted too:
            // its barrier, the earlier, holds for both.
            let barrier = mark.unwrap_or(out.len());
            let persisted = self.persisted.get_or_insert_with(|| Persisted {
                writes: Vec::new(),
                barrier,
            });
            persisted.writes.append(&mut self.outbox.writes);
        }
    }
}

impl<S: State> Process for Node<S> {
    fn addr(&self) -> Addr {
        self.me
    }

    fn start(&mut self, now: Time, out: &mut Vec<Packet>) {
        self.call(now, out, |state, ctx| state.on_start(ctx));
    }

    fn recover(&mut self, now: Time, stored: &Stored, out: &mut Vec<Packet>) {
        self.call(now, out, |state, ctx| state.on_recover(stored, ctx));
    }

    fn take_persisted(&mut self) -> Option<Persisted> {
        self.persisted.take()
    }

    fn on_packet(&mut self, now: Time, from: Addr, bytes: &[u8], out: &mut Vec<Packet>) {
        let source = source_of(from);
        match self.shared.decode(source, bytes) {
            Ok((sender, _)) if !source.may_send_as(sender) => {
                self.drop_input(WRONG_SOURCE);
            }
            Ok((sender, msg)) => {
                self.call(now, out, |state, ctx| state.on_message(sender, msg, ctx));
            }
            Err(reason) => self.drop_input(reason.0),
        }
    }

    fn on_timers(&mut self, now: Time, out: &mut Vec<Packet>) {
        // Fire at most as many timers as were armed on entry: a handler that
        // re-arms its timer with no delay is called again next time, not in a
        // loop here.
        let armed = self.outbox.timers.len();
        for _ in 0..armed {
            let Some(timer) = self.outbox.timers.pop_due(now) else {
                break;
            };
            if let Some(notes) = &mut self.outbox.notes {
                notes.push(format!("timer {timer:?}"));
            }
            self.call(now, out, |state, ctx| state.on_timer(timer, ctx));
        }
    }

    fn next_deadline(&self) -> Option<Time> {
        self.outbox.timers.next_deadline()
    }

    fn counters(&self) -> &Counters {
        &self.outbox.counters
    }

    fn is_recovering(&self) -> bool {
        self.state.is_recovering()
    }

    fn executed_slot(&self) -> Option<u64> {
        self.state.executed_slot()
    }

    fn describe(&self, bytes: &[u8]) -> String {
        self.shared.describe(bytes)
    }

    fn set_tracing(&mut self) {
        self.outbox.notes.get_or_insert_with(Vec::new);
    }

    fn take_notes(&mut self, out: &mut Vec<String>) {
        if let Some(notes) = &mut self.outbox.notes {
            out.append(notes);
        }
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

    fn invoke(&mut self, now: Time, op: Vec<u8>, out: &mut Vec<Packet>) {
        self.0.call(now, out, |state, ctx| state.invoke(op, ctx));
    }

    fn take_result(&mut self) -> Option<Vec<u8>> {
        self.0.state.take_result()
    }

    fn has_failed(&self) -> bool {
        self.0.state.has_failed()
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
