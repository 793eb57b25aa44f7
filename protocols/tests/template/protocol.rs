//! Primary-backup with two replicas: the template protocol.
//!
//! Everything a protocol of this workspace has, in the fewest lines that
//! still make it real: messages and a registry entry, the replicas' and the
//! clients' state machines, the codec, and the kit that runs it (in
//! `kit.rs`). `docs/ADDING_A_PROTOCOL.md` quotes it, and a test
//! (`protocols/tests/guide.rs`) keeps the quotes in step.
//!
//! # Algorithm
//!
//! Clients send requests to the primary (replica 0). The primary numbers
//! each new request with the next slot and forwards it to the backup
//! (replica 1). The backup executes forwards in slot order, whatever order
//! they arrive in, and acknowledges how far it has executed. On that
//! acknowledgement the primary executes the same requests, in the same
//! order, and replies to their clients: a reply means both replicas have
//! executed the request.
//!
//! Everything is retransmitted: a client resends its request with the
//! kit's backoff ([`Retransmit`]) until the reply comes; the primary resends
//! every unacknowledged forward on a timer until the backup acknowledges it;
//! the backup acknowledges again whenever a forward it already executed
//! arrives (its acknowledgement was lost). The primary's client table
//! ([`ClientTable`]) makes execution at-most-once: a retransmitted request
//! that already executed gets its stored result, one still waiting for the
//! backup is ignored, and only a new one takes a slot.
//!
//! # Faults
//!
//! It tolerates what the network does (loss, duplication, reordering,
//! delay, partitions), pauses, and clients that crash. It does not tolerate
//! a replica that crashes and loses its memory: there is no failover, no
//! view change and no recovery. Chain replication, the guide's worked
//! example, adds those.
//!
//! # Bounds
//!
//! The primary keeps at most `window` forwards unacknowledged (the tunable
//! [`WINDOW`], at most [`WINDOW_MAX`]); a new request past that is dropped
//! and counted ([`WINDOW_FULL`]), and its client retransmits it later. The
//! backup holds at most `window` forwards ahead of the slot it executes
//! next, which is all a correct primary can have sent. Input a correct peer
//! never sends is dropped and counted by reason, never a panic.

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bincode::{Decode, Encode};
use protocols::app::{App, Position};
use protocols::common::{Admission, ClientTable, Retransmit};
use runtime::{Addr, ClientId, Context, DropReason, ReplicaId, SharedState, Source, State};
use wire::client::{Reply, Request};
use wire::registry::{ProtocolSpec, Replication, Tunable};

// ---------------------------------------------------------------------------
// Messages and the registry entry (in a real protocol: `wire/src/<name>.rs`).
// ---------------------------------------------------------------------------

/// Everything the template sends. Clients' requests and replies are the
/// shared [`Request`] and [`Reply`]; the two replicas add their own.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Message {
    /// Client to primary.
    Request(Request),
    /// Primary to client, once both replicas executed the request.
    Reply(Reply),
    /// Primary to backup: execute `request` at `slot`.
    Forward(Forward),
    /// Backup to primary: every slot below `executed` has executed.
    Ack(Ack),
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Forward {
    pub slot: u64,
    pub request: Request,
}

/// Cumulative, so a lost acknowledgement is covered by any later one.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Ack {
    pub executed: u64,
}

/// The template's entry in the registry: what the runner and the node
/// program know of it without linking its code.
pub static SPEC: ProtocolSpec = ProtocolSpec {
    name: "template",
    about: "primary-backup with two replicas and no failover: the guide's template",
    // f + 1 replicas for f = 1, as chain replication; but with no failover
    // it tolerates no replica fault (the simulator's group says f = 0).
    replication: Replication::Chain,
    replicas_max: 2,
    signs: false,
    batches: false,
    rotates_leader: false,
    counters: &[WINDOW_FULL, FORWARD_RETRANSMISSIONS],
    tunables: &[WINDOW],
    services: &[],
};

/// The largest window a run may set.
pub const WINDOW_MAX: u64 = 1024;

/// How many forwards the primary keeps unacknowledged at most.
pub const WINDOW: Tunable = Tunable {
    name: "window",
    about: "forwards the primary keeps unacknowledged at most (new requests past it are dropped)",
    unit: "requests",
    default: 64,
    min: 1,
    max: WINDOW_MAX,
};

/// Counted for each new request dropped because the window was full.
pub const WINDOW_FULL: &str = "request: window full";

/// Counted for each forward the primary sends again.
pub const FORWARD_RETRANSMISSIONS: &str = "forward: retransmission";

// ---------------------------------------------------------------------------
// The replicas.
// ---------------------------------------------------------------------------

pub const PRIMARY: Addr = Addr::Replica(ReplicaId(0));
pub const BACKUP: Addr = Addr::Replica(ReplicaId(1));

/// Clients the primary's table holds at most, and bytes of their results.
pub const CLIENT_TABLE_MAX: usize = 1 << 16;
pub const RESULT_BYTES_MAX: usize = 64 << 20;

/// How long the primary waits for an acknowledgement before it resends
/// its forwards: a few round trips between two replicas. Fixed, not backed
/// off: the backup is one peer, not a crowd of clients that could swamp it.
pub const FORWARD_RESEND: Duration = Duration::from_millis(5);

/// The template has one client session per client (no registration).
const SESSION: u64 = 0;

thread_local! {
    /// A bug planted on purpose (see [`planted`]); per thread, so tests
    /// running in parallel do not see each other's.
    static ARRIVAL_ORDER: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with the backup's planted bug on: it executes a forward that
/// arrives ahead of its turn at once, in the slot it expected next, instead
/// of waiting for the gap to fill. The seeded runs must catch it.
pub fn planted<T>(f: impl FnOnce() -> T) -> T {
    /// Turns the bug off again, even if `f` panics.
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            ARRIVAL_ORDER.set(false);
        }
    }
    ARRIVAL_ORDER.set(true);
    let _off = Off;
    f()
}

/// Replica 0: orders requests, forwards them, replies once the backup has
/// executed them.
pub struct Primary {
    app: Box<dyn App>,
    client_table: ClientTable<()>,
    window: usize,
    /// Slots executed here; also the slot of the oldest unacknowledged
    /// forward.
    executed: u64,
    /// Forwarded and not yet acknowledged, in slot order: the request at
    /// index `i` is at slot `executed + i`. At most `window`.
    unacked: VecDeque<Request>,
}

/// Retransmitted forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryTimer {
    ResendForwards,
}

impl std::fmt::Debug for Primary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary")
            .field("executed", &self.executed)
            .field("unacked", &self.unacked.len())
            .finish_non_exhaustive()
    }
}

impl Primary {
    pub fn new(app: Box<dyn App>, window: u64) -> Primary {
        assert!((1..=WINDOW_MAX).contains(&window), "window {window}");
        Primary {
            app,
            client_table: ClientTable::new(CLIENT_TABLE_MAX, RESULT_BYTES_MAX),
            window: window as usize,
            executed: 0,
            unacked: VecDeque::new(),
        }
    }

    fn on_request(&mut self, request: Request, ctx: &mut Context<'_, Message, PrimaryTimer>) {
        let client = Addr::Client(request.client_id);
        match self
            .client_table
            .admit(request.client_id, &(), SESSION, request.request_num)
        {
            Admission::Stale => return ctx.drop_message("request: older than the latest"),
            Admission::Duplicate(result) => {
                ctx.count("request: resent cached reply");
                let reply = Reply {
                    client_id: request.client_id,
                    request_num: request.request_num,
                    result: result.to_vec(),
                };
                return ctx.send(client, Message::Reply(reply));
            }
            Admission::OtherBinding => unreachable!("no binding to differ"),
            // New: a client the table knows, or one it does not yet (it
            // gets an entry when the request executes).
            Admission::Execute | Admission::Unknown => {}
        }
        // Ordered already and waiting for the backup: the reply will come.
        if self.unacked.contains(&request) {
            return ctx.drop_message("request: waiting for the backup");
        }
        if self.unacked.len() >= self.window {
            return ctx.drop_message(WINDOW_FULL);
        }
        let slot = self.executed + self.unacked.len() as u64;
        ctx.send(
            BACKUP,
            Message::Forward(Forward {
                slot,
                request: request.clone(),
            }),
        );
        self.unacked.push_back(request);
        // Armed only if not already: re-arming on every forward would put off
        // the retransmission of the oldest for as long as requests keep
        // coming.
        if !ctx.timer_is_set(PrimaryTimer::ResendForwards) {
            ctx.set_timer(PrimaryTimer::ResendForwards, FORWARD_RESEND);
        }
    }

    fn on_ack(&mut self, ack: Ack, ctx: &mut Context<'_, Message, PrimaryTimer>) {
        let forwarded = self.executed + self.unacked.len() as u64;
        if ack.executed > forwarded {
            return ctx.drop_message("ack: beyond what was forwarded");
        }
        if ack.executed <= self.executed {
            return ctx.drop_message("ack: nothing new");
        }
        while self.executed < ack.executed {
            let request = self.unacked.pop_front().expect("checked against forwarded");
            self.execute(request, ctx);
        }
        if self.unacked.is_empty() {
            ctx.cancel_timer(PrimaryTimer::ResendForwards);
        }
    }

    /// Executes the oldest forward, which the backup has executed, and
    /// replies.
    fn execute(&mut self, request: Request, ctx: &mut Context<'_, Message, PrimaryTimer>) {
        let Request {
            client_id,
            request_num,
            op,
        } = request;
        if let Admission::Unknown = self
            .client_table
            .admit(client_id, &(), SESSION, request_num)
        {
            let (_, evicted) = self
                .client_table
                .register(client_id, (), SESSION)
                .expect("no binding to differ");
            if evicted.is_some() {
                ctx.count("client table: client forgotten");
            }
        }
        let at = Position {
            slot: self.executed,
            client: client_id,
            request_num,
        };
        self.executed += 1;
        let result = self.app.execute_at(at, &op);
        let reply = Reply {
            client_id,
            request_num,
            result: result.clone(),
        };
        let evicted = self.client_table.record(client_id, request_num, result);
        if !evicted.is_empty() {
            ctx.count_n("client table: client forgotten", evicted.len() as u64);
        }
        ctx.send(Addr::Client(client_id), Message::Reply(reply));
    }
}

impl State for Primary {
    type Message = Message;
    type Outbound = Message;
    type Timer = PrimaryTimer;
    type Shared = Codec;

    fn on_message(
        &mut self,
        from: Addr,
        msg: Message,
        ctx: &mut Context<'_, Message, PrimaryTimer>,
    ) {
        match msg {
            Message::Request(request) => self.on_request(request, ctx),
            Message::Ack(ack) if from == BACKUP => self.on_ack(ack, ctx),
            Message::Ack(_) => ctx.drop_message("primary: ack from a non-backup"),
            Message::Reply(_) | Message::Forward(_) => ctx.drop_message("primary: unexpected"),
        }
    }

    fn on_timer(&mut self, timer: PrimaryTimer, ctx: &mut Context<'_, Message, PrimaryTimer>) {
        match timer {
            PrimaryTimer::ResendForwards => {
                if self.unacked.is_empty() {
                    return; // Spurious: the acknowledgement came first.
                }
                for (slot, request) in (self.executed..).zip(&self.unacked) {
                    let forward = Forward {
                        slot,
                        request: request.clone(),
                    };
                    ctx.send(BACKUP, Message::Forward(forward));
                }
                ctx.count_n(FORWARD_RETRANSMISSIONS, self.unacked.len() as u64);
                ctx.set_timer(PrimaryTimer::ResendForwards, FORWARD_RESEND);
            }
        }
    }

    fn executed_slot(&self) -> Option<u64> {
        Some(self.executed)
    }
}

/// Replica 1: executes forwards in slot order and acknowledges them. It
/// keeps no client table: the primary gives each request one slot, and the
/// slot numbers are what make the backup's execution at-most-once.
pub struct Backup {
    app: Box<dyn App>,
    window: u64,
    /// The slot to execute next: every slot below has executed.
    next: u64,
    /// Forwards that arrived ahead of `next`, waiting for the gap to fill:
    /// slots in `next + 1 .. next + window`.
    waiting: BTreeMap<u64, Request>,
}

/// The backup has no timers: the primary retransmits, the backup answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupTimer {}

impl std::fmt::Debug for Backup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backup")
            .field("next", &self.next)
            .field("waiting", &self.waiting.len())
            .finish_non_exhaustive()
    }
}

impl Backup {
    pub fn new(app: Box<dyn App>, window: u64) -> Backup {
        assert!((1..=WINDOW_MAX).contains(&window), "window {window}");
        Backup {
            app,
            window,
            next: 0,
            waiting: BTreeMap::new(),
        }
    }

    fn on_forward(&mut self, forward: Forward, ctx: &mut Context<'_, Message, BackupTimer>) {
        let Forward { mut slot, request } = forward;
        if slot < self.next {
            // Executed already: the primary resent it because our
            // acknowledgement was lost, so acknowledge again.
            ctx.drop_message("forward: executed already");
            return ctx.send(
                PRIMARY,
                Message::Ack(Ack {
                    executed: self.next,
                }),
            );
        }
        if slot - self.next >= self.window {
            return ctx.drop_message("forward: beyond the window");
        }
        if ARRIVAL_ORDER.get() {
            slot = self.next; // The planted bug: arrival order, not slot order.
        }
        self.waiting.insert(slot, request);
        while let Some(request) = self.waiting.remove(&self.next) {
            let at = Position {
                slot: self.next,
                client: request.client_id,
                request_num: request.request_num,
            };
            self.app.execute_at(at, &request.op);
            self.next += 1;
        }
        ctx.send(
            PRIMARY,
            Message::Ack(Ack {
                executed: self.next,
            }),
        );
    }
}

impl State for Backup {
    type Message = Message;
    type Outbound = Message;
    type Timer = BackupTimer;
    type Shared = Codec;

    fn on_message(
        &mut self,
        from: Addr,
        msg: Message,
        ctx: &mut Context<'_, Message, BackupTimer>,
    ) {
        match msg {
            Message::Forward(forward) if from == PRIMARY => self.on_forward(forward, ctx),
            Message::Forward(_) => ctx.drop_message("backup: forward from a non-primary"),
            // Clients talk to the primary only.
            Message::Request(_) | Message::Reply(_) | Message::Ack(_) => {
                ctx.drop_message("backup: unexpected")
            }
        }
    }

    fn on_timer(&mut self, timer: BackupTimer, _ctx: &mut Context<'_, Message, BackupTimer>) {
        match timer {}
    }

    fn executed_slot(&self) -> Option<u64> {
        Some(self.next)
    }
}

// ---------------------------------------------------------------------------
// The client.
// ---------------------------------------------------------------------------

/// Longest wait between a client's retransmissions of one request.
pub const RESEND_MAX: Duration = Duration::from_millis(500);

/// A closed-loop client: one request outstanding, resent until its reply
/// comes.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    resend: Retransmit,
    /// Number of the latest request sent; 0 before the first.
    request_num: u64,
    outstanding: Option<Request>,
    result: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimer {
    Resend,
}

impl Client {
    pub fn new(id: ClientId, resend_interval: Duration) -> Client {
        Client {
            id,
            resend: Retransmit::new(resend_interval, RESEND_MAX),
            request_num: 0,
            outstanding: None,
            result: None,
        }
    }
}

impl State for Client {
    type Message = Message;
    type Outbound = Message;
    type Timer = ClientTimer;
    type Shared = Codec;

    fn on_message(
        &mut self,
        from: Addr,
        msg: Message,
        ctx: &mut Context<'_, Message, ClientTimer>,
    ) {
        let Message::Reply(reply) = msg else {
            return ctx.drop_message("client: not a reply");
        };
        let ours = self.outstanding.as_ref().is_some_and(|r| {
            from == PRIMARY && reply.client_id == r.client_id && reply.request_num == r.request_num
        });
        if !ours {
            // An old reply, duplicated or delayed by the network.
            return ctx.drop_message("client: reply to no outstanding request");
        }
        self.outstanding = None;
        self.result = Some(reply.result);
        self.resend.complete(ctx.now());
        ctx.cancel_timer(ClientTimer::Resend);
    }

    fn on_timer(&mut self, timer: ClientTimer, ctx: &mut Context<'_, Message, ClientTimer>) {
        match timer {
            ClientTimer::Resend => {
                let Some(request) = &self.outstanding else {
                    return; // Spurious: the reply came first.
                };
                ctx.count("client: retransmission");
                ctx.send(PRIMARY, Message::Request(request.clone()));
                ctx.set_timer(ClientTimer::Resend, self.resend.backoff());
            }
        }
    }
}

impl runtime::Client for Client {
    fn invoke(&mut self, op: &[u8], ctx: &mut Context<'_, Message, ClientTimer>) {
        self.request_num += 1;
        let request = Request {
            client_id: self.id,
            request_num: self.request_num,
            op: op.to_vec(),
        };
        self.resend.begin(ctx.now());
        ctx.send(PRIMARY, Message::Request(request.clone()));
        ctx.set_timer(ClientTimer::Resend, self.resend.first());
        self.outstanding = Some(request);
    }

    fn take_result(&mut self) -> Option<Vec<u8>> {
        self.result.take()
    }

    /// Which client a reply is for, so that the real runtime can hand it to
    /// the right one of the many clients on one socket.
    fn recipient(msg: &Message) -> Option<ClientId> {
        match msg {
            Message::Reply(reply) => Some(reply.client_id),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// The codec, shared by every node.
// ---------------------------------------------------------------------------

/// Decoding and encoding, unsigned: the template trusts the network. The
/// sender it names is checked by the runtime against where the datagram
/// came from ([`Source`]), so a client cannot pass for the backup.
#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

impl SharedState for Codec {
    type Message = Message;
    type Outbound = Message;

    fn decode(&self, _source: Source, bytes: &[u8]) -> Result<(Addr, Message), DropReason> {
        let msg: Message = wire::decode(bytes)?;
        let from = match &msg {
            Message::Request(request) => Addr::Client(request.client_id),
            Message::Reply(_) | Message::Forward(_) => PRIMARY,
            Message::Ack(_) => BACKUP,
        };
        Ok((from, msg))
    }

    fn encode(&self, msg: &Message, buf: &mut Vec<u8>) -> Result<(), DropReason> {
        Ok(wire::encode(msg, buf)?)
    }

    /// One line per datagram in a trace (`node sim --trace`).
    fn describe(&self, bytes: &[u8]) -> String {
        match wire::decode::<Message>(bytes) {
            Ok(Message::Request(r)) => format!("Request c{} #{}", r.client_id.0, r.request_num),
            Ok(Message::Reply(r)) => format!("Reply c{} #{}", r.client_id.0, r.request_num),
            Ok(Message::Forward(f)) => format!("Forward slot {}", f.slot),
            Ok(Message::Ack(a)) => format!("Ack {}", a.executed),
            Err(e) => format!("undecodable ({})", e.reason()),
        }
    }
}
