//! A node with its types erased: bytes in, bytes out.
//!
//! [`Node`] runs the whole pipeline of one protocol node on the calling thread
//! (decode, handle, encode) and keeps its timers, counters and random stream.
//! Behind the [`Process`] trait object, nodes of different protocols, clients,
//! and Byzantine stand-ins all look alike to the simulator.

use std::sync::Arc;

use wire::Addr;

use crate::actor::{Client, Context, Counters, Dest, Outbox, SharedState, State};
use crate::rng::Rng;
use crate::time::Time;

/// A datagram a node sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub dest: Dest,
    pub bytes: Vec<u8>,
}

/// A node as the simulator (or any single-threaded driver) sees it. Follows the
/// driver contract of [`crate::actor`]; each call appends what the node sends
/// to `out`.
pub trait Process {
    fn addr(&self) -> Addr;

    /// Called once, first.
    fn start(&mut self, now: Time, out: &mut Vec<Packet>);

    /// One datagram arrived.
    fn on_packet(&mut self, now: Time, bytes: &[u8], out: &mut Vec<Packet>);

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
}

/// A protocol node driven on the calling thread. Implements [`Process`] for
/// replicas; wrap a client in [`ClientNode`].
pub struct Node<S: State> {
    me: Addr,
    state: S,
    shared: Arc<S::Shared>,
    outbox: Outbox<S::Outbound, S::Timer>,
    rng: Rng,
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

    fn drain(&mut self, out: &mut Vec<Packet>) {
        for (dest, msg) in self.outbox.sends.drain(..) {
            // Most messages fit; growing from empty would reallocate 3–4 times.
            let mut bytes = Vec::with_capacity(128);
            match self.shared.encode(&msg, &mut bytes) {
                Ok(()) => out.push(Packet { dest, bytes }),
                Err(reason) => self.outbox.counters.add(reason.0, 1),
            }
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

    fn on_packet(&mut self, now: Time, bytes: &[u8], out: &mut Vec<Packet>) {
        match self.shared.decode(bytes) {
            Ok((from, msg)) => self.call(now, out, |state, ctx| state.on_message(from, msg, ctx)),
            Err(reason) => self.outbox.counters.add(reason.0, 1),
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
            self.call(now, out, |state, ctx| state.on_timer(timer, ctx));
        }
    }

    fn next_deadline(&self) -> Option<Time> {
        self.outbox.timers.next_deadline()
    }

    fn counters(&self) -> &Counters {
        &self.outbox.counters
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

    fn on_packet(&mut self, now: Time, bytes: &[u8], out: &mut Vec<Packet>) {
        self.0.on_packet(now, bytes, out);
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
}
