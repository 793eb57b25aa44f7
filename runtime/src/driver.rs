//! The one driver core: what every runtime does around a handler call.
//!
//! Whatever drives a protocol node does the same around each call into it:
//! build the [`Context`], call the handler, fire the timers that are due (at
//! most as many as were armed on entry, so a handler that re-arms its timer
//! with no delay is called again the next time, not in a loop), and take
//! what the handler sent, keeping the durable-write barrier of
//! [`Context::persist`]: a message sent after a persist leaves only once the
//! write is durable. This module is that, once, and every driver uses it:
//!
//! - [`Core`]: a node's [`State`] and its [`Outbox`] (pending sends, timers,
//!   counters, trace notes, durable writes). Its calls are handed the node's
//!   address and a random stream, so a driver that multiplexes many nodes on
//!   one thread keeps one stream for all of them: the benchmark clients
//!   (`deploy::spawn_clients`) keep a core per client.
//! - [`Driver`]: a core with its own address and random stream, one node:
//!   the simulator's [`Node`](crate::node::Node) (and any other
//!   single-thread driver) and the protocol stage of the replica runtime
//!   (`deploy::spawn_replica`).
//!
//! What the drivers do with the output is theirs: the core hands each
//! outgoing `(Dest, S::Outbound)` by value to a sink the driver supplies,
//! which resolves the destination and encodes it where the driver sends from
//! (the simulator into one [`Packet`](crate::node::Packet) per message, the
//! replica and the clients straight into the transport's send batch, or
//! into one reusable buffer per thread that the transport copies to each
//! destination of a message to every replica, the replica pipeline into the
//! channel to its send stage). A sink that cannot send a message says why
//! ([`DropReason`]), and the core counts it.
//!
//! # The barrier
//!
//! [`Core::drain`] hands over the messages that may leave now: every message
//! sent before the first durable write since the last release. The rest stay
//! in the core, in the order they were sent, and every message sent later
//! waits behind them, so that messages still leave in order. The driver
//! makes [`Core::writes`] durable when it likes (the simulator at once,
//! unless it crashes the node there; the replica once per batch of messages,
//! one `fsync` for all of them), then calls [`Core::release`], which forgets
//! the writes and hands over what waited. A driver that keeps nothing
//! durable (benchmark clients) releases at once.

use std::fmt;
use std::ops::{Deref, DerefMut};

use wire::Addr;

use crate::actor::{Client, Context, Counters, Dest, DropReason, Outbox, State};
use crate::durable::{Stored, Write};
use crate::rng::Rng;
use crate::time::Time;

/// A node's state and everything the runtime keeps beside it: its outbox,
/// with its timers, counters, trace notes and durable writes. See the module
/// docs.
pub struct Core<S: State> {
    state: S,
    outbox: Outbox<S::Outbound, S::Timer>,
}

impl<S: State> fmt::Debug for Core<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("sends", &self.outbox.sends.len())
            .field("timers", &self.outbox.timers.len())
            .field("writes", &self.outbox.writes.len())
            .finish_non_exhaustive()
    }
}

/// The timers due at one instant, fired one by one ([`Core::next_due`]): at
/// most as many as were armed when it was taken.
#[derive(Clone, Copy, Debug)]
pub struct Due {
    now: Time,
    left: usize,
}

impl<S: State> Core<S> {
    pub fn new(state: S) -> Core<S> {
        Core {
            state,
            outbox: Outbox::default(),
        }
    }

    pub fn state(&self) -> &S {
        &self.state
    }

    pub fn state_mut(&mut self) -> &mut S {
        &mut self.state
    }

    /// Runs `f` on the state with a context for node `me` at `now`. What it
    /// sends stays in the core until [`Core::drain`].
    #[inline]
    pub fn call(
        &mut self,
        now: Time,
        me: Addr,
        rng: &mut Rng,
        f: impl FnOnce(&mut S, &mut Context<'_, S::Outbound, S::Timer>),
    ) {
        let mut ctx = Context::new(now, me, &mut self.outbox, rng);
        f(&mut self.state, &mut ctx);
    }

    /// [`State::on_start`].
    pub fn start(&mut self, now: Time, me: Addr, rng: &mut Rng) {
        self.call(now, me, rng, |state, ctx| state.on_start(ctx));
    }

    /// [`State::on_recover`], with what the node had made durable.
    pub fn recover(&mut self, now: Time, me: Addr, rng: &mut Rng, stored: &Stored) {
        self.call(now, me, rng, |state, ctx| state.on_recover(stored, ctx));
    }

    /// [`State::on_message`]: `msg`, from `from`, which the codec vouched
    /// for.
    #[inline]
    pub fn on_message(&mut self, now: Time, me: Addr, rng: &mut Rng, from: Addr, msg: S::Message) {
        self.call(now, me, rng, |state, ctx| state.on_message(from, msg, ctx));
    }

    /// [`State::on_timer`].
    pub fn on_timer(&mut self, now: Time, me: Addr, rng: &mut Rng, timer: S::Timer) {
        self.call(now, me, rng, |state, ctx| state.on_timer(timer, ctx));
    }

    /// [`Client::invoke`].
    pub fn invoke(&mut self, now: Time, me: Addr, rng: &mut Rng, op: &[u8])
    where
        S: Client,
    {
        self.call(now, me, rng, |state, ctx| state.invoke(op, ctx));
    }

    /// The timers due at `now`, to fire with [`Core::next_due`]. At most as
    /// many as are armed now: a handler that re-arms its timer with no delay
    /// is called again the next time, not in a loop.
    pub fn due(&self, now: Time) -> Due {
        Due {
            now,
            left: self.outbox.timers.len(),
        }
    }

    /// Disarms and returns the next timer of `due` (the earliest; ties, the
    /// one armed first), noted in the trace, or `None` once none is left.
    /// The driver then calls [`Core::on_timer`] with it.
    pub fn next_due(&mut self, due: &mut Due) -> Option<S::Timer> {
        if due.left == 0 {
            return None;
        }
        let Some(timer) = self.outbox.timers.pop_due(due.now) else {
            due.left = 0;
            return None;
        };
        due.left -= 1;
        if let Some(notes) = &mut self.outbox.notes {
            notes.push(format!("timer {timer:?}"));
        }
        Some(timer)
    }

    /// When a timer is next due.
    pub fn next_deadline(&self) -> Option<Time> {
        self.outbox.timers.next_deadline()
    }

    /// Hands every message that may leave now to `sink`, in the order they
    /// were sent: all of them, unless a handler persisted since the last
    /// [`Core::release`]; then those sent before the first write, and the
    /// rest wait for the release. A message the sink refuses is counted
    /// under the reason it gives.
    #[inline]
    pub fn drain(&mut self, mut sink: impl FnMut(Dest, S::Outbound) -> Result<(), DropReason>) {
        let out = &mut self.outbox;
        let ready = match out.barrier {
            None => out.sends.len(),
            Some(barrier) => {
                // What is left waits behind the writes, and so does
                // everything sent after it.
                out.barrier = Some(0);
                barrier
            }
        };
        for (dest, msg) in out.sends.drain(..ready) {
            if let Err(reason) = sink(dest, msg) {
                out.counters.add(reason.0, 1);
            }
        }
    }

    /// Whether durable writes are waiting for the driver to make them
    /// durable (and messages may be waiting for that).
    pub fn has_writes(&self) -> bool {
        !self.outbox.writes.is_empty()
    }

    /// The durable writes since the last release, in order.
    pub fn writes(&self) -> &[Write] {
        &self.outbox.writes
    }

    /// Moves the durable writes since the last release to `into`, for a
    /// driver that makes them durable elsewhere; [`Core::release`] follows.
    pub fn take_writes(&mut self, into: &mut Vec<Write>) {
        into.append(&mut self.outbox.writes);
    }

    /// The writes are durable (or, for a driver that keeps nothing, will
    /// never be): forgets them and hands every message still waiting to
    /// `sink`, as [`Core::drain`] does.
    #[inline]
    pub fn release(&mut self, sink: impl FnMut(Dest, S::Outbound) -> Result<(), DropReason>) {
        self.outbox.writes.clear();
        self.outbox.barrier = None;
        self.drain(sink);
    }

    /// Drops, counts and the like, by name.
    pub fn counters(&self) -> &Counters {
        &self.outbox.counters
    }

    /// Counts an input dropped before it reached a handler (it did not
    /// decode, say), and notes it in the trace.
    pub fn drop_input(&mut self, reason: &'static str) {
        self.outbox.counters.add(reason, 1);
        if let Some(notes) = &mut self.outbox.notes {
            notes.push(format!("drop: {reason}"));
        }
    }

    /// Starts keeping trace lines ([`Context::note`], timers fired, drops).
    pub fn set_tracing(&mut self) {
        self.outbox.notes.get_or_insert_with(Vec::new);
    }

    /// Moves the trace lines kept since the last take to `out`.
    pub fn take_notes(&mut self, out: &mut Vec<String>) {
        if let Some(notes) = &mut self.outbox.notes {
            out.append(notes);
        }
    }
}

/// A [`Core`] with its own address and random stream: one node, as a driver
/// that runs it alone sees it. Its calls need only the time; everything else
/// is the core's (it dereferences to it).
pub struct Driver<S: State> {
    core: Core<S>,
    me: Addr,
    rng: Rng,
}

impl<S: State> fmt::Debug for Driver<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver")
            .field("me", &self.me)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl<S: State> Driver<S> {
    pub fn new(me: Addr, state: S, rng: Rng) -> Driver<S> {
        Driver {
            core: Core::new(state),
            me,
            rng,
        }
    }

    /// The node's address.
    pub fn me(&self) -> Addr {
        self.me
    }

    /// Runs `f` on the state with a context at `now`; see [`Core::call`].
    #[inline]
    pub fn call(
        &mut self,
        now: Time,
        f: impl FnOnce(&mut S, &mut Context<'_, S::Outbound, S::Timer>),
    ) {
        self.core.call(now, self.me, &mut self.rng, f);
    }

    /// [`State::on_start`].
    pub fn start(&mut self, now: Time) {
        self.core.start(now, self.me, &mut self.rng);
    }

    /// [`State::on_recover`].
    pub fn recover(&mut self, now: Time, stored: &Stored) {
        self.core.recover(now, self.me, &mut self.rng, stored);
    }

    /// [`State::on_message`].
    #[inline]
    pub fn on_message(&mut self, now: Time, from: Addr, msg: S::Message) {
        self.core.on_message(now, self.me, &mut self.rng, from, msg);
    }

    /// [`State::on_timer`], for a timer from [`Core::next_due`].
    pub fn on_timer(&mut self, now: Time, timer: S::Timer) {
        self.core.on_timer(now, self.me, &mut self.rng, timer);
    }

    /// Fires every timer due at `now` (at most as many as are armed), and
    /// says whether any was. What they send waits for one drain after all
    /// of them; a driver that drains after each timer fires them one by one
    /// with [`Core::due`] and [`Core::next_due`].
    pub fn fire_timers(&mut self, now: Time) -> bool {
        let mut due = self.core.due(now);
        let mut fired = false;
        while let Some(timer) = self.core.next_due(&mut due) {
            self.on_timer(now, timer);
            fired = true;
        }
        fired
    }

    /// [`Client::invoke`].
    pub fn invoke(&mut self, now: Time, op: &[u8])
    where
        S: Client,
    {
        self.core.invoke(now, self.me, &mut self.rng, op);
    }
}

impl<S: State> Deref for Driver<S> {
    type Target = Core<S>;

    fn deref(&self) -> &Core<S> {
        &self.core
    }
}

impl<S: State> DerefMut for Driver<S> {
    fn deref_mut(&mut self) -> &mut Core<S> {
        &mut self.core
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use wire::{ClientId, ReplicaId};

    use super::*;
    use crate::actor::{SharedState, Source};

    const ME: Addr = Addr::Replica(ReplicaId(0));
    const PEER: Addr = Addr::Client(ClientId(1));

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Timer {
        Again,
        Once,
    }

    struct Codec;

    impl SharedState for Codec {
        type Message = u32;
        type Outbound = u32;

        fn decode(&self, _: Source, _: &[u8]) -> Result<(Addr, u32), DropReason> {
            Err(DropReason("test: nothing decodes"))
        }

        fn encode(&self, _: &u32, _: &mut Vec<u8>) -> Result<(), DropReason> {
            Ok(())
        }
    }

    /// On message `n`: sends `n`, persists if `n` is even, sends `n + 100`.
    /// Timer `Again` re-arms itself with no delay.
    #[derive(Default)]
    struct Probe {
        fired: Vec<Timer>,
    }

    impl State for Probe {
        type Message = u32;
        type Outbound = u32;
        type Timer = Timer;
        type Shared = Codec;

        fn on_message(&mut self, from: Addr, n: u32, ctx: &mut Context<'_, u32, Timer>) {
            ctx.send(from, n);
            if n.is_multiple_of(2) {
                ctx.persist(n.to_le_bytes(), Vec::new());
            }
            ctx.send(from, n + 100);
        }

        fn on_timer(&mut self, timer: Timer, ctx: &mut Context<'_, u32, Timer>) {
            self.fired.push(timer);
            if timer == Timer::Again {
                ctx.set_timer(Timer::Again, Duration::ZERO);
            }
        }
    }

    fn sent(driver: &mut Driver<Probe>) -> Vec<u32> {
        let mut sent = Vec::new();
        driver.drain(|_, n| {
            sent.push(n);
            Ok(())
        });
        sent
    }

    #[test]
    fn messages_behind_a_write_wait_for_the_release_and_keep_their_order() {
        let mut driver = Driver::new(ME, Probe::default(), Rng::new(1));
        let now = Time::ZERO;
        driver.on_message(now, PEER, 1);
        assert_eq!(sent(&mut driver), [1, 101]);
        assert!(!driver.has_writes());
        driver.on_message(now, PEER, 2);
        assert_eq!(sent(&mut driver), [2], "102 waits for the write");
        // Everything later waits behind what already waits.
        driver.on_message(now, PEER, 3);
        assert!(sent(&mut driver).is_empty());
        driver.on_message(now, PEER, 4);
        assert_eq!(driver.writes().len(), 2);
        let mut released = Vec::new();
        driver.release(|_, n| {
            released.push(n);
            Ok(())
        });
        assert_eq!(released, [102, 3, 103, 4, 104]);
        assert!(!driver.has_writes());
        driver.on_message(now, PEER, 5);
        assert_eq!(sent(&mut driver), [5, 105]);
    }

    #[test]
    fn refused_messages_are_counted_by_reason() {
        let mut driver = Driver::new(ME, Probe::default(), Rng::new(1));
        driver.on_message(Time::ZERO, PEER, 1);
        driver.drain(|_, n| {
            if n > 100 {
                Err(DropReason("test: refused"))
            } else {
                Ok(())
            }
        });
        assert_eq!(driver.counters().get("test: refused"), 1);
    }

    #[test]
    fn timers_fire_at_most_as_many_as_were_armed() {
        let mut driver = Driver::new(ME, Probe::default(), Rng::new(1));
        driver.set_tracing();
        driver.call(Time::ZERO, |_, ctx| {
            ctx.set_timer(Timer::Again, Duration::ZERO);
            ctx.set_timer(Timer::Once, Duration::from_nanos(5));
        });
        // Two armed: `Again` fires, re-arms itself due at once, and fires
        // once more; then the call is done, though it is due again.
        assert!(driver.fire_timers(Time::ZERO));
        assert_eq!(driver.state().fired, [Timer::Again, Timer::Again]);
        assert_eq!(driver.next_deadline(), Some(Time::ZERO));
        let mut notes = Vec::new();
        driver.take_notes(&mut notes);
        assert_eq!(notes, ["timer Again", "timer Again"]);
        let mut due = driver.due(Time::from_nanos(5));
        let mut fired = Vec::new();
        while let Some(timer) = driver.next_due(&mut due) {
            fired.push(timer);
        }
        assert_eq!(fired, [Timer::Again, Timer::Once]);
        assert_eq!(driver.next_deadline(), None);
    }
}
