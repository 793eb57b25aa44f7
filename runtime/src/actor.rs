//! The actor abstraction: what protocol code implements.
//!
//! A node is split in two by what it needs from its thread:
//!
//! - [`SharedState`] (`&self`, `Send + Sync`) turns datagrams into messages and
//!   messages into datagrams: decode, check size limits, verify and produce
//!   signatures, digest. It holds no mutable protocol state, so the runtime may
//!   call it from as many threads as the thread map gives it, concurrently and
//!   in any order.
//! - [`State`] (`&mut self`) is the protocol proper: one thread drives it, one
//!   event at a time, through the `on_*` handlers.
//!
//! The pipeline for one node is
//! `bytes → SharedState::decode → State::on_message → Context::send → SharedState::encode → bytes`.
//! The simulator runs it on one thread; the real runtime may put each arrow on
//! its own core. Protocol code cannot tell the difference: it never touches a
//! socket, a thread, the clock or a random source. Time, timers, randomness and
//! sending come only through the [`Context`] handed to each handler.
//!
//! # Driver contract
//!
//! Every runtime (simulator, single thread, pinned stages) keeps these
//! promises, and protocol code may rely on them:
//!
//! 1. [`State::on_start`] is called once, before any other handler.
//! 2. Handlers are called one at a time, never concurrently, and each runs to
//!    completion. A handler does bounded work.
//! 3. [`Context::now`] never goes backwards from one call to the next.
//! 4. Everything a handler sends or sets through its context is taken by the
//!    runtime before the next handler is called (output is drained before the
//!    next input). Messages to one destination leave in the order they were
//!    sent, though the network may reorder, duplicate or drop them.
//! 5. [`State::on_timer`] is called for a timer at or after its deadline. A call
//!    for a timer the protocol has since cancelled or re-armed can still happen
//!    (the real runtime races with itself across threads): a spurious timer call
//!    must be harmless, so handlers check their own state before acting.
//! 6. Messages reach [`State::on_message`] only after [`SharedState::decode`]
//!    accepted them, but possibly in another order than they arrived (parallel
//!    decoders), and possibly more than once.
//! 7. [`Context::persist`] is a barrier: what a handler sends after it leaves
//!    only once the write is durable; what it sent before may leave at once.
//!    After a crash, a restarted node whose durable state is not empty gets
//!    it in [`State::on_recover`] instead of [`State::on_start`]. A crash can
//!    come between the write and the sends behind it, and the write may or
//!    may not have become durable (see [`crate::durable`]).
//!
//! And protocol code keeps these:
//!
//! - The state reaches its codec only through [`crate::hint`]'s drop-only
//!   hints (what it has settled, so decoders can drop what it would drop
//!   anyway) and through the codec's own signing: nothing a decoder does
//!   depends on the state in any other way.
//!
//! - No panics on anything a peer can send: bad input is dropped with
//!   [`Context::drop_message`] (or [`DropReason`] from `decode`), which counts it
//!   by reason. A panic means a bug in this node, and stops it.
//! - Every queue, log and batch has a named maximum, checked where it is filled.

use std::fmt;
use std::time::Duration;

use wire::{Addr, Bytes, DecodeError, EncodeError, ReplicaId};

use crate::durable::{KEY_BYTES_MAX, Stored, VALUE_BYTES_MAX, Write};
use crate::rng::Rng;
use crate::time::Time;

/// The mutable part of a node, driven by one thread. See the module docs for the
/// driver contract.
///
/// Implementors are plain structs without type parameters (`pbft::Replica`, not
/// `Replica<A, N>`); the runtime is generic over them, not the other way round.
pub trait State {
    /// What this node receives, as [`SharedState::decode`] produces it.
    type Message;
    /// What this node sends, as [`SharedState::encode`] consumes it.
    type Outbound;
    /// The node's timers: a small field-less enum. Setting a timer that is
    /// already set moves its deadline.
    type Timer: Copy + Eq + fmt::Debug;
    /// The codec half of this node.
    type Shared: SharedState<Message = Self::Message, Outbound = Self::Outbound>;

    /// Called once, before anything else: arm initial timers, send greetings.
    fn on_start(&mut self, ctx: &mut Context<'_, Self::Outbound, Self::Timer>) {
        let _ = ctx;
    }

    /// Called once, instead of [`State::on_start`], when the node restarts
    /// and its durable state (what it wrote with [`Context::persist`] before
    /// it crashed) is not empty. The default ignores the state and starts
    /// afresh.
    fn on_recover(&mut self, stored: &Stored, ctx: &mut Context<'_, Self::Outbound, Self::Timer>) {
        let _ = stored;
        self.on_start(ctx);
    }

    /// A message from `from`, which [`SharedState::decode`] vouched for (for a
    /// signed protocol: authenticated).
    fn on_message(
        &mut self,
        from: Addr,
        msg: Self::Message,
        ctx: &mut Context<'_, Self::Outbound, Self::Timer>,
    );

    /// Timer `timer` reached its deadline. May be spurious (see the contract).
    fn on_timer(&mut self, timer: Self::Timer, ctx: &mut Context<'_, Self::Outbound, Self::Timer>);

    /// Whether this node is recovering from a restart without its state and
    /// so counts toward the faults the protocol tolerates until it is done
    /// (PBFT's proactive recovery, VR's recovery protocol). The simulator's
    /// fault plans read it to keep faulty plus recovering nodes within the
    /// model.
    fn is_recovering(&self) -> bool {
        false
    }

    /// How far this replica has executed, in the protocol's slots (PBFT's
    /// sequence numbers), if it is a replica: what the simulator's catch-up
    /// check compares once a run has settled.
    fn executed_slot(&self) -> Option<u64> {
        None
    }

    /// The leader of the group as this replica sees it now (PBFT's primary
    /// of its view, chain replication's head), if the protocol has one and
    /// the replica knows it: what the real runtime reports, so a fault
    /// schedule can aim at the leader.
    fn leader(&self) -> Option<ReplicaId> {
        None
    }
}

/// A node that issues operations on behalf of a user: a benchmark client, or a
/// simulated client whose history is checked.
///
/// Closed loop: the driver calls [`Client::invoke`] only when no operation is
/// outstanding, and collects the result with [`Client::take_result`] after each
/// handler call.
pub trait Client: State {
    /// Starts operation `op` (opaque bytes the application understands).
    /// The bytes are the caller's, reused for its next operation: a client
    /// keeps what it needs of them (a request to retransmit) in buffers of
    /// its own.
    fn invoke(&mut self, op: &[u8], ctx: &mut Context<'_, Self::Outbound, Self::Timer>);

    /// The result of the outstanding operation, once, when it has completed.
    fn take_result(&mut self) -> Option<Vec<u8>>;

    /// Whether the client has given up for good (its session was evicted):
    /// its outstanding operation may or may not have taken effect, and it
    /// takes no more. Drivers stop invoking it.
    fn has_failed(&self) -> bool {
        false
    }

    /// The client a decoded message is for, so that a runtime multiplexing
    /// many clients on one socket can hand it to the right one. `None` drops
    /// the message.
    fn recipient(msg: &Self::Message) -> Option<wire::ClientId>
    where
        Self: Sized;
}

/// The shareable part of a node: codec, digests and signatures. Called from any
/// number of threads at once (`&self`), in any order.
pub trait SharedState: Send + Sync {
    type Message;
    type Outbound;

    /// Decodes (and, for a signed protocol, authenticates) one datagram that
    /// arrived from `source`, and says who sent it. Bad input is an `Err`
    /// naming why; never a panic.
    ///
    /// Checks that cost nothing come first: a message that claims to be from
    /// a replica other than `source` is dropped before its signature is
    /// checked (the runtime drops it anyway, see [`Source`]).
    fn decode(&self, source: Source, bytes: &[u8]) -> Result<(Addr, Self::Message), DropReason>;

    /// [`SharedState::decode`], of a datagram the real runtime holds in a
    /// shared receive buffer: a codec whose messages carry
    /// [`Payload`](wire::Payload)s may make them slices of `datagram`
    /// ([`Payload::slice_of`](wire::Payload::slice_of)) instead of copies,
    /// so decoding allocates nothing. The default decodes as `decode` does.
    fn decode_shared(
        &self,
        source: Source,
        datagram: &Bytes,
    ) -> Result<(Addr, Self::Message), DropReason> {
        self.decode(source, datagram)
    }

    /// Appends the encoding (signed, where the protocol signs) of `msg` to
    /// `buf`. On error `buf` is unchanged and the message is not sent.
    fn encode(&self, msg: &Self::Outbound, buf: &mut Vec<u8>) -> Result<(), DropReason>;

    /// One line about a datagram for a trace (kind, view, sequence number):
    /// decoded without checking anything, since a trace also shows what a
    /// node went on to drop.
    fn describe(&self, bytes: &[u8]) -> String {
        format!("{} bytes", bytes.len())
    }
}

/// Where a datagram came from, as far as the network can tell: from a
/// replica's configured address, or from anywhere else (a client, or a
/// stranger). The runtime drops a decoded message that names a replica as its
/// sender but did not come from that replica's address, and one that names a
/// client but came from a replica's address, so that nobody can pass off
/// another's message as their own datagram (a replay of a captured signed
/// message still needs a spoofed source address, which an attacker off the
/// path between replicas cannot receive replies to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    Replica(ReplicaId),
    Other,
}

impl Source {
    /// Whether a message that `decode` attributed to `from` may have come
    /// from here.
    pub fn may_send_as(self, from: Addr) -> bool {
        match (from, self) {
            (Addr::Replica(claimed), Source::Replica(actual)) => claimed == actual,
            (Addr::Replica(_), Source::Other) => false,
            (Addr::Client(_), Source::Other) => true,
            (Addr::Client(_), Source::Replica(_)) => false,
        }
    }
}

/// Why a message was dropped. A short static phrase, so that drops can be
/// counted by reason without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DropReason(pub &'static str);

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl From<DecodeError> for DropReason {
    fn from(err: DecodeError) -> DropReason {
        DropReason(err.reason())
    }
}

impl From<EncodeError> for DropReason {
    fn from(err: EncodeError) -> DropReason {
        DropReason(match err {
            EncodeError::TooLarge { .. } => "encode: too large",
            EncodeError::Bincode(_) => "encode: failed",
        })
    }
}

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dest {
    /// One node.
    To(Addr),
    /// Every replica except the sender. Encoded (and signed) once.
    Replicas,
}

/// What a handler can do to the world. Handed in by the runtime for the length
/// of one handler call; everything put here is taken before the next call.
pub struct Context<'a, M, T> {
    now: Time,
    me: Addr,
    out: &'a mut Outbox<M, T>,
    rng: &'a mut Rng,
}

impl<M, T: Copy + Eq + fmt::Debug> Context<'_, M, T> {
    /// A context for one handler call of node `me` at time `now`. Runtimes (and
    /// unit tests that drive a [`State`] by hand) build one per call.
    pub fn new<'a>(
        now: Time,
        me: Addr,
        out: &'a mut Outbox<M, T>,
        rng: &'a mut Rng,
    ) -> Context<'a, M, T> {
        Context { now, me, out, rng }
    }

    /// The current time. Never goes backwards.
    pub fn now(&self) -> Time {
        self.now
    }

    /// The address of the node being called.
    pub fn me(&self) -> Addr {
        self.me
    }

    pub fn send(&mut self, to: Addr, msg: M) {
        self.out.sends.push((Dest::To(to), msg));
    }

    /// Sends `msg` to every replica but this node.
    pub fn send_to_replicas(&mut self, msg: M) {
        self.out.sends.push((Dest::Replicas, msg));
    }

    /// Writes `value` under `key` in this node's durable state, replacing
    /// what the key held. A barrier: messages sent after this call leave
    /// only once the write is durable (see [`crate::durable`]).
    ///
    /// Keys are at most [`KEY_BYTES_MAX`] bytes and values
    /// [`VALUE_BYTES_MAX`]: a longer one is a bug in the protocol, and
    /// panics.
    pub fn persist(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        assert!(key.len() <= KEY_BYTES_MAX, "durable key too long");
        assert!(value.len() <= VALUE_BYTES_MAX, "durable value too long");
        self.out.write(Write::Put(key, value));
    }

    /// Removes `key` from this node's durable state; a barrier like
    /// [`Context::persist`].
    pub fn erase(&mut self, key: impl Into<Vec<u8>>) {
        let key = key.into();
        assert!(key.len() <= KEY_BYTES_MAX, "durable key too long");
        self.out.write(Write::Erase(key));
    }

    /// Arms `timer` to fire `after` from now, replacing its previous deadline.
    pub fn set_timer(&mut self, timer: T, after: Duration) {
        let deadline = self.now + after;
        self.out.timers.set(timer, deadline);
    }

    /// Disarms `timer`; a no-op if it is not set.
    pub fn cancel_timer(&mut self, timer: T) {
        self.out.timers.cancel(timer);
    }

    pub fn timer_is_set(&self, timer: T) -> bool {
        self.out.timers.deadline(timer).is_some()
    }

    pub fn rng(&mut self) -> &mut Rng {
        self.rng
    }

    /// Records that an input was ignored, and why. Counted per reason.
    pub fn drop_message(&mut self, reason: &'static str) {
        self.out.counters.add(reason, 1);
        self.note(|| format!("drop: {reason}"));
    }

    /// Counts an event worth reporting (a retransmission, say).
    pub fn count(&mut self, name: &'static str) {
        self.out.counters.add(name, 1);
        self.note(|| name.to_string());
    }

    /// Adds `n` to the counter `name`.
    pub fn count_n(&mut self, name: &'static str, n: u64) {
        self.out.counters.add(name, n);
    }

    /// Adds a line to the trace, if the runtime keeps one (the simulator's
    /// `--trace`): a state change worth seeing in a timeline, such as a view
    /// entered or a sequence number executed. Costs nothing otherwise: the
    /// line is not even built.
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(notes) = &mut self.out.notes {
            notes.push(line());
        }
    }
}

impl<M, T> fmt::Debug for Context<'_, M, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("now", &self.now)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// The runtime's side of a [`Context`]: a node's pending sends, its timers, and
/// its counters. Owned by the runtime, one per node, reused across calls.
#[derive(Debug)]
pub struct Outbox<M, T> {
    /// Messages sent and not yet taken, in order: those of the last handler
    /// call, after any that wait behind a durable write (see `barrier`). The
    /// runtime drains it (`crate::driver::Core::drain`).
    pub sends: Vec<(Dest, M)>,
    pub timers: Timers<T>,
    pub counters: Counters,
    /// Trace lines from [`Context::note`] (and every count and drop); `None`
    /// unless the runtime keeps a trace.
    pub notes: Option<Vec<String>>,
    /// Durable writes ([`Context::persist`]) since the runtime last took
    /// them, in order.
    pub writes: Vec<Write>,
    /// How many of `sends` came before the first of `writes`: those may
    /// leave before the writes are durable, the rest only after (once the
    /// runtime took the first ones, `Some(0)`: everything left waits). `None`
    /// while `writes` is empty.
    pub barrier: Option<usize>,
}

impl<M, T> Outbox<M, T> {
    fn write(&mut self, write: Write) {
        if self.barrier.is_none() {
            self.barrier = Some(self.sends.len());
        }
        self.writes.push(write);
    }
}

impl<M, T> Default for Outbox<M, T> {
    fn default() -> Self {
        Outbox {
            sends: Vec::new(),
            timers: Timers::default(),
            counters: Counters::default(),
            notes: None,
            writes: Vec::new(),
            barrier: None,
        }
    }
}

/// The armed timers of one node. A protocol has a handful of timer kinds, so a
/// small vector searched linearly beats any map.
#[derive(Clone, Debug)]
pub struct Timers<T> {
    armed: Vec<(T, Time)>,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers { armed: Vec::new() }
    }
}

impl<T: Copy + Eq + fmt::Debug> Timers<T> {
    pub fn set(&mut self, timer: T, deadline: Time) {
        match self.armed.iter_mut().find(|(t, _)| *t == timer) {
            Some(entry) => entry.1 = deadline,
            None => self.armed.push((timer, deadline)),
        }
    }

    pub fn cancel(&mut self, timer: T) {
        self.armed.retain(|(t, _)| *t != timer);
    }

    pub fn deadline(&self, timer: T) -> Option<Time> {
        self.armed
            .iter()
            .find(|(t, _)| *t == timer)
            .map(|&(_, d)| d)
    }

    /// The earliest deadline of any armed timer.
    pub fn next_deadline(&self) -> Option<Time> {
        self.armed.iter().map(|&(_, d)| d).min()
    }

    /// Disarms and returns the timer with the earliest deadline at or before
    /// `now` (ties: the one armed first).
    pub fn pop_due(&mut self, now: Time) -> Option<T> {
        let (index, _) = self
            .armed
            .iter()
            .enumerate()
            .filter(|(_, (_, d))| *d <= now)
            .min_by_key(|(_, (_, d))| *d)?;
        Some(self.armed.remove(index).0)
    }

    pub fn len(&self) -> usize {
        self.armed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }
}

/// Event counts by static name: drops by reason, and the like. Few distinct
/// names, so a vector searched linearly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    counts: Vec<(&'static str, u64)>,
}

impl Counters {
    pub fn add(&mut self, name: &'static str, n: u64) {
        // Counted on every message: the same literal is the same pointer
        // almost always, so look for that first, and compare contents only
        // when it is not there (a name spelled out in two places).
        let same = |k: &&str| std::ptr::eq(k.as_ptr(), name.as_ptr()) && k.len() == name.len();
        let entry = match self.counts.iter().position(|(k, _)| same(k)) {
            Some(i) => Some(i),
            None => self.counts.iter().position(|(k, _)| *k == name),
        };
        match entry {
            Some(i) => self.counts[i].1 += n,
            None => self.counts.push((name, n)),
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |&(_, n)| n)
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|&(_, n)| n).sum()
    }

    pub fn merge(&mut self, other: &Counters) {
        for &(name, n) in &other.counts {
            self.add(name, n);
        }
    }

    /// `(name, count)` pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let mut sorted = self.counts.clone();
        sorted.sort_unstable();
        sorted.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Timer {
        A,
        B,
    }

    #[test]
    fn timers_fire_in_deadline_order_and_rearm_moves() {
        let mut timers = Timers::default();
        timers.set(Timer::A, Time::from_nanos(30));
        timers.set(Timer::B, Time::from_nanos(20));
        timers.set(Timer::A, Time::from_nanos(10));
        assert_eq!(timers.next_deadline(), Some(Time::from_nanos(10)));
        assert_eq!(timers.pop_due(Time::from_nanos(5)), None);
        assert_eq!(timers.pop_due(Time::from_nanos(25)), Some(Timer::A));
        assert_eq!(timers.pop_due(Time::from_nanos(25)), Some(Timer::B));
        assert_eq!(timers.pop_due(Time::from_nanos(25)), None);
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn cancel_is_idempotent() {
        let mut timers = Timers::default();
        timers.cancel(Timer::A);
        timers.set(Timer::A, Time::from_nanos(1));
        timers.cancel(Timer::A);
        timers.cancel(Timer::A);
        assert_eq!(timers.next_deadline(), None);
    }

    #[test]
    fn a_name_spelled_out_twice_is_one_counter() {
        let mut counters = Counters::default();
        let copy: &'static str = Box::leak(String::from("drops").into_boxed_str());
        counters.add("drops", 1);
        counters.add(copy, 2);
        counters.add("other", 1);
        assert_eq!(counters.get("drops"), 3);
        assert_eq!(counters.counts.len(), 2);
    }

    #[test]
    fn counters_merge_and_sort() {
        let mut a = Counters::default();
        a.add("z", 1);
        a.add("a", 2);
        let mut b = Counters::default();
        b.add("a", 3);
        a.merge(&b);
        assert_eq!(a.get("a"), 5);
        assert_eq!(a.total(), 6);
        assert_eq!(a.iter().collect::<Vec<_>>(), [("a", 5), ("z", 1)]);
    }
}
