//! A server of the chain: head, middle or tail, as the configuration says.

use std::collections::{BTreeMap, VecDeque};

use runtime::{Addr, ClientId, Context, ReplicaId, State, Time};
use wire::chain::{Chunk, Config, Forward, Message, Ping, Pong};
use wire::client::{Reply, Request};

use super::bugs;
use super::{CHUNK_BYTES, CHUNKS_MAX, CLIENT_TABLE_MAX, Codec, RESEND_BURST, RESULT_BYTES_MAX};
use super::{Timing, initial_config, master_id};
use crate::app::{App, Position, Unexecuted};
use crate::common::{Admission, ClientTable};
use crate::planted;

/// Every client has one session: chain replication has no registration.
const SESSION: u64 = 0;

/// A server's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Ping the master; resend what the successor has not acknowledged; ask
    /// the predecessor again for what this server misses.
    Heartbeat,
}

type Ctx<'a, 'b> = Context<'a, Message, Timer>;

/// One server of the chain; see the module docs.
pub struct Replica {
    id: ReplicaId,
    master: Addr,
    timing: Timing,
    app: Box<dyn App>,
    /// This incarnation's name for the master: a restarted server is a new
    /// one.
    nonce: u64,
    /// The configuration this server acts in, once the master confirmed it
    /// is in it; `None` while it is not in the chain.
    config: Option<Config>,
    /// The newest configuration it heard of, in the chain or not.
    latest: Config,
    /// The epoch the master last added it in (see `Ping`).
    joined: u64,
    /// Whether it holds every committed update (an original server, or a
    /// new one whose predecessor sent it the state).
    synced: bool,
    /// Whether its predecessor has answered its `Want` in this epoch.
    resumed: bool,
    /// Not synced yet: synced once `next` reaches this (the predecessor's
    /// `next` when it answered), since the predecessor's Sent list may hold
    /// updates a removed tail had committed.
    synced_at: Option<u64>,
    /// Every update below `next` has reached this server (the head: has a
    /// position).
    next: u64,
    /// Every update below `committed` is executed here.
    committed: u64,
    /// The Sent list: updates from `committed` to `next`, in order.
    sent: VecDeque<Forward>,
    /// At the head: each client with an update in the Sent list, and the
    /// update's number.
    in_chain: BTreeMap<ClientId, u64>,
    table: ClientTable<()>,
    /// Until when the tail may answer queries.
    lease_until: Time,
    /// The token of the newest `Pong`.
    echo: u64,
    last_ping: Option<Time>,
    /// `committed` at the last heartbeat: no progress since, and the Sent
    /// list is resent.
    committed_at_tick: u64,
    /// When it last asked its predecessor for a gap (at most once per
    /// heartbeat).
    want_sent: Option<Time>,
    /// When it last sent its successor its state (at most once per
    /// heartbeat).
    state_sent: Option<Time>,
    /// A state transfer being assembled.
    incoming: Option<Incoming>,
}

/// The chunks of a state transfer received so far.
struct Incoming {
    epoch: u64,
    committed: u64,
    chunks: Vec<Option<Vec<u8>>>,
    missing: u32,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("config", &self.config)
            .field("next", &self.next)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Server `id` of a chain of `n`.
    pub fn new(id: ReplicaId, n: usize, timing: Timing, app: Box<dyn App>) -> Replica {
        Replica {
            id,
            master: Addr::Replica(master_id(n)),
            timing,
            app,
            nonce: 0,
            config: None,
            latest: initial_config(n),
            joined: 0,
            synced: false,
            resumed: false,
            synced_at: None,
            next: 0,
            committed: 0,
            sent: VecDeque::new(),
            in_chain: BTreeMap::new(),
            table: ClientTable::new(CLIENT_TABLE_MAX, RESULT_BYTES_MAX),
            lease_until: Time::ZERO,
            echo: 0,
            last_ping: None,
            committed_at_tick: 0,
            want_sent: None,
            state_sent: None,
            incoming: None,
        }
    }

    /// The configuration it acts in, if it is in the chain.
    pub fn config(&self) -> Option<&Config> {
        self.config.as_ref()
    }

    /// Updates executed here: everything below this.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    fn position(&self) -> Option<(usize, &[ReplicaId])> {
        let chain = &self.config.as_ref()?.chain;
        Some((chain.iter().position(|&r| r == self.id)?, chain))
    }

    fn epoch(&self) -> Option<u64> {
        self.config.as_ref().map(|c| c.epoch)
    }

    fn is_head(&self) -> bool {
        self.position().is_some_and(|(i, _)| i == 0)
    }

    fn is_tail(&self) -> bool {
        self.position()
            .is_some_and(|(i, chain)| i + 1 == chain.len())
    }

    fn predecessor(&self) -> Option<Addr> {
        let (i, chain) = self.position()?;
        Some(Addr::Replica(*chain.get(i.checked_sub(1)?)?))
    }

    fn successor(&self) -> Option<Addr> {
        let (i, chain) = self.position()?;
        Some(Addr::Replica(*chain.get(i + 1)?))
    }

    fn ping(&mut self, ctx: &mut Ctx<'_, '_>) {
        self.last_ping = Some(ctx.now());
        let ping = Message::Ping(Ping {
            epoch: self.epoch().unwrap_or(self.latest.epoch),
            nonce: self.nonce,
            joined: self.joined,
            synced: self.synced,
            echo: self.echo,
            sent_at: ctx.now().as_nanos(),
        });
        ctx.send(self.master, ping);
    }

    /// A message from a later epoch: this server is behind, and asks the
    /// master at once (at most four times a heartbeat).
    fn behind(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.drop_message("epoch: from a later one");
        let quarter = self.timing.heartbeat / 4;
        if self.last_ping.is_none_or(|at| ctx.now() >= at + quarter) {
            self.ping(ctx);
        }
    }

    /// Whether a message of `epoch` from `from` is one to act on: this
    /// server is in the chain, in that epoch, and `from` is where such a
    /// message comes from (`expected`). Drops and counts it otherwise.
    fn accept(
        &mut self,
        epoch: u64,
        from: Addr,
        expected: Option<Addr>,
        ctx: &mut Ctx<'_, '_>,
    ) -> bool {
        let Some(mine) = self.epoch() else {
            ctx.drop_message("chain: not in the chain");
            return false;
        };
        if epoch > mine {
            self.behind(ctx);
            return false;
        }
        if epoch < mine {
            ctx.drop_message("epoch: from an earlier one");
            return false;
        }
        if expected != Some(from) {
            ctx.drop_message("chain: not from a neighbour");
            return false;
        }
        true
    }

    fn redirect(&self, client: ClientId, ctx: &mut Ctx<'_, '_>) {
        let config = self.config.clone().unwrap_or_else(|| self.latest.clone());
        let redirect = Message::Redirect {
            client_id: client,
            config,
        };
        ctx.send(Addr::Client(client), redirect);
    }

    fn on_update(&mut self, epoch: u64, request: Request, ctx: &mut Ctx<'_, '_>) {
        let _ = epoch; // The head orders whatever epoch the client knows.
        if !self.is_head() {
            ctx.drop_message("update: not the head");
            self.redirect(request.client_id, ctx);
            return;
        }
        if !self.synced {
            ctx.drop_message("update: head not synced");
            return;
        }
        let client = request.client_id;
        match self.table.admit(client, &(), SESSION, request.request_num) {
            Admission::Stale => {
                ctx.drop_message("update: older than the latest");
                return;
            }
            Admission::Duplicate(result) => {
                ctx.count("update: resent cached reply");
                let reply = Reply {
                    client_id: client,
                    request_num: request.request_num,
                    result: result.to_vec(),
                };
                ctx.send(Addr::Client(client), Message::Reply(reply));
                return;
            }
            Admission::Execute | Admission::Unknown => {}
            Admission::OtherBinding => unreachable!("no binding to differ"),
        }
        if self
            .in_chain
            .get(&client)
            .is_some_and(|&num| num >= request.request_num)
        {
            ctx.drop_message("update: already in the chain");
            return;
        }
        if self.sent.len() >= self.timing.window {
            ctx.drop_message("update: window full");
            return;
        }
        let forward = Forward {
            epoch: self.epoch().expect("the head is in the chain"),
            seq: self.next,
            request,
        };
        self.in_chain.insert(client, forward.request.request_num);
        self.next += 1;
        self.pass_on(forward, ctx);
    }

    /// An update at position `next - 1` reached this server: the tail
    /// executes it and acknowledges it, any other keeps it and forwards it.
    fn pass_on(&mut self, forward: Forward, ctx: &mut Ctx<'_, '_>) {
        if self.is_tail() {
            self.commit(forward, true, ctx);
            self.acknowledge(ctx);
        } else {
            let successor = self.successor().expect("not the tail");
            self.sent.push_back(forward);
            let forward = self.sent.back().expect("just pushed");
            ctx.send(successor, self.restamped(forward));
        }
    }

    /// `forward` as this server sends it on: in its own epoch (the Sent
    /// list outlives the epoch an update came in).
    fn restamped(&self, forward: &Forward) -> Message {
        Message::Forward(Forward {
            epoch: self.epoch().expect("in the chain"),
            seq: forward.seq,
            request: forward.request.clone(),
        })
    }

    fn acknowledge(&mut self, ctx: &mut Ctx<'_, '_>) {
        if let (Some(predecessor), Some(epoch)) = (self.predecessor(), self.epoch()) {
            let ack = Message::Ack {
                epoch,
                committed: self.committed,
            };
            ctx.send(predecessor, ack);
        }
    }

    /// Executes the update at position `committed` (the client table
    /// admitting it), and replies if `reply` (at the tail).
    fn commit(&mut self, forward: Forward, reply: bool, ctx: &mut Ctx<'_, '_>) {
        debug_assert_eq!(forward.seq, self.committed);
        let Forward { seq, request, .. } = forward;
        let Request {
            client_id,
            request_num,
            op,
        } = request;
        self.committed = seq + 1;
        if self.in_chain.get(&client_id) == Some(&request_num) {
            self.in_chain.remove(&client_id);
        }
        let result = match self.table.admit(client_id, &(), SESSION, request_num) {
            Admission::Execute => None,
            Admission::Unknown => {
                let (_, evicted) = self
                    .table
                    .register(client_id, (), SESSION)
                    .expect("no binding to differ");
                if evicted.is_some() {
                    ctx.count("client table: client forgotten");
                }
                None
            }
            Admission::Duplicate(result) => Some(result.to_vec()),
            Admission::Stale => {
                let outcome = "stale";
                self.app.unexecuted_at(
                    seq,
                    Unexecuted::Request {
                        client: client_id,
                        request_num,
                        outcome,
                    },
                );
                return;
            }
            Admission::OtherBinding => unreachable!("no binding to differ"),
        };
        let result = match result {
            Some(result) => {
                let what = Unexecuted::Request {
                    client: client_id,
                    request_num,
                    outcome: "duplicate",
                };
                self.app.unexecuted_at(seq, what);
                result
            }
            None => {
                let at = Position {
                    slot: seq,
                    client: client_id,
                    request_num,
                };
                let result = self.app.execute_at(at, &op);
                let evicted = self.table.record(client_id, request_num, result.clone());
                if !evicted.is_empty() {
                    ctx.count_n("client table: client forgotten", evicted.len() as u64);
                }
                result
            }
        };
        if reply {
            let reply = Reply {
                client_id,
                request_num,
                result,
            };
            ctx.send(Addr::Client(client_id), Message::Reply(reply));
        }
    }

    fn on_query(&mut self, epoch: u64, request: Request, ctx: &mut Ctx<'_, '_>) {
        let client = request.client_id;
        if !self.is_tail() {
            ctx.drop_message("query: not the tail");
            self.redirect(client, ctx);
            return;
        }
        let mine = self.epoch().expect("the tail is in the chain");
        let fenced = !planted::is(bugs::STALE_TAIL_READS);
        if fenced && epoch > mine {
            self.behind(ctx);
            return;
        }
        if fenced && epoch < mine {
            ctx.drop_message("query: from an earlier epoch");
            self.redirect(client, ctx);
            return;
        }
        if fenced && (!self.synced || ctx.now() >= self.lease_until) {
            ctx.drop_message("query: no read lease");
            return;
        }
        let result = self.app.query(&request.op);
        let reply = Reply {
            client_id: client,
            request_num: request.request_num,
            result,
        };
        ctx.send(Addr::Client(client), Message::Reply(reply));
    }

    fn on_forward(&mut self, from: Addr, forward: Forward, ctx: &mut Ctx<'_, '_>) {
        let predecessor = self.predecessor();
        if !self.accept(forward.epoch, from, predecessor, ctx) {
            return;
        }
        if forward.seq < self.next {
            // A resend of what it has: the acknowledgement was lost, or is
            // on its way. Say again how far it is.
            ctx.count("forward: duplicate");
            self.acknowledge(ctx);
            return;
        }
        if forward.seq > self.next {
            ctx.drop_message("forward: after a gap");
            self.want(ctx);
            return;
        }
        if self.sent.len() >= self.timing.window {
            ctx.drop_message("forward: window full");
            return;
        }
        self.next += 1;
        self.pass_on(forward, ctx);
        self.check_synced();
    }

    /// Asks the predecessor for everything from `next` (at most once a
    /// heartbeat).
    fn want(&mut self, ctx: &mut Ctx<'_, '_>) {
        if self
            .want_sent
            .is_some_and(|at| ctx.now() < at + self.timing.heartbeat)
        {
            return;
        }
        let (Some(predecessor), Some(epoch)) = (self.predecessor(), self.epoch()) else {
            return;
        };
        self.want_sent = Some(ctx.now());
        let want = Message::Want {
            epoch,
            next: self.next,
        };
        ctx.send(predecessor, want);
    }

    fn on_ack(&mut self, from: Addr, epoch: u64, committed: u64, ctx: &mut Ctx<'_, '_>) {
        let successor = self.successor();
        if !self.accept(epoch, from, successor, ctx) {
            return;
        }
        if committed > self.next {
            ctx.drop_message("ack: beyond what was sent");
            return;
        }
        if committed <= self.committed {
            return;
        }
        while self.committed < committed {
            let forward = self.sent.pop_front().expect("the Sent list covers next");
            self.commit(forward, false, ctx);
        }
        self.acknowledge(ctx);
    }

    fn on_want(&mut self, from: Addr, epoch: u64, next: u64, ctx: &mut Ctx<'_, '_>) {
        let successor = self.successor();
        if !self.accept(epoch, from, successor, ctx) {
            return;
        }
        if !self.synced {
            ctx.drop_message("want: not synced itself");
            return;
        }
        if next > self.next {
            ctx.drop_message("want: beyond what it has");
            return;
        }
        if next >= self.committed {
            ctx.send(
                from,
                Message::Resume {
                    epoch,
                    committed: self.committed,
                    next: self.next,
                },
            );
            if planted::is(bugs::NO_SENT_RESEND) {
                return;
            }
            let skip = (next - self.committed) as usize;
            for forward in self.sent.iter().skip(skip) {
                ctx.send(from, self.restamped(forward));
            }
            return;
        }
        if self
            .state_sent
            .is_some_and(|at| ctx.now() < at + self.timing.heartbeat)
        {
            ctx.drop_message("want: state sent a moment ago");
            return;
        }
        self.state_sent = Some(ctx.now());
        let mut state = Vec::new();
        let app = self.app.snapshot();
        state.extend_from_slice(&(app.len() as u64).to_le_bytes());
        state.extend_from_slice(&app);
        drop(app);
        self.table.encode(&mut state);
        let count = state.chunks(CHUNK_BYTES).count().max(1) as u32;
        if count > CHUNKS_MAX {
            ctx.drop_message("want: state too large to send");
            return;
        }
        ctx.count("state transfer: sent");
        for (index, bytes) in state.chunks(CHUNK_BYTES).enumerate() {
            let chunk = Message::Chunk(Chunk {
                epoch,
                committed: self.committed,
                index: index as u32,
                count,
                bytes: bytes.to_vec(),
            });
            ctx.send(from, chunk);
        }
    }

    fn on_resume(
        &mut self,
        from: Addr,
        epoch: u64,
        committed: u64,
        next: u64,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let predecessor = self.predecessor();
        if !self.accept(epoch, from, predecessor, ctx) {
            return;
        }
        if committed > self.next {
            // It executed what this server lacks: the state follows a `Want`.
            self.want_sent = None;
            self.want(ctx);
            return;
        }
        self.resumed = true;
        if !self.synced {
            self.synced_at = Some(next.max(self.synced_at.unwrap_or(0)));
            self.check_synced();
        }
    }

    /// A new server is synced once it has everything its predecessor had
    /// when it answered.
    fn check_synced(&mut self) {
        if let Some(at) = self.synced_at
            && self.next >= at
        {
            self.synced = true;
            self.synced_at = None;
        }
    }

    fn on_chunk(&mut self, from: Addr, chunk: Chunk, ctx: &mut Ctx<'_, '_>) {
        let Chunk {
            epoch,
            committed,
            index,
            count,
            bytes,
        } = chunk;
        let predecessor = self.predecessor();
        if !self.accept(epoch, from, predecessor, ctx) {
            return;
        }
        if committed <= self.next {
            ctx.drop_message("chunk: state it has");
            return;
        }
        if count == 0 || count > CHUNKS_MAX || index >= count || bytes.len() > CHUNK_BYTES {
            ctx.drop_message("chunk: malformed");
            return;
        }
        let fresh = self.incoming.as_ref().is_none_or(|i| {
            (i.epoch, i.committed, i.chunks.len()) != (epoch, committed, count as usize)
        });
        if fresh {
            self.incoming = Some(Incoming {
                epoch,
                committed,
                chunks: vec![None; count as usize],
                missing: count,
            });
        }
        let incoming = self.incoming.as_mut().expect("just made");
        let slot = &mut incoming.chunks[index as usize];
        if slot.is_some() {
            return;
        }
        *slot = Some(bytes);
        incoming.missing -= 1;
        if incoming.missing > 0 {
            return;
        }
        let incoming = self.incoming.take().expect("complete");
        let state: Vec<u8> = incoming.chunks.into_iter().flatten().flatten().collect();
        if !self.install(&state) {
            ctx.drop_message("chunk: state malformed");
            return;
        }
        ctx.count("state transfer: installed");
        self.committed = committed;
        self.next = committed;
        self.sent.clear();
        self.in_chain.clear();
        self.want_sent = None;
        self.want(ctx);
    }

    /// Restores the application and the client table from a state
    /// transfer; false (and nothing changed) if it is malformed.
    fn install(&mut self, state: &[u8]) -> bool {
        let Some((len, rest)) = state.split_first_chunk::<8>() else {
            return false;
        };
        let Ok(len) = usize::try_from(u64::from_le_bytes(*len)) else {
            return false;
        };
        let Some((app, mut table)) = rest.split_at_checked(len) else {
            return false;
        };
        let Some(table) = ClientTable::decode(&mut table, CLIENT_TABLE_MAX, RESULT_BYTES_MAX)
        else {
            return false;
        };
        self.app.restore(app);
        self.table = table;
        true
    }

    fn on_pong(&mut self, pong: Pong, ctx: &mut Ctx<'_, '_>) {
        let Pong {
            config,
            nonce,
            member,
            joined,
            lease,
            token,
            sent_at,
        } = pong;
        if nonce != self.nonce {
            ctx.drop_message("pong: for another incarnation");
            return;
        }
        self.echo = self.echo.max(token);
        let epoch = config.epoch;
        if epoch < self.latest.epoch {
            // Delayed: a configuration it knows is over.
            return;
        }
        self.latest = config.clone();
        match (self.epoch(), member) {
            (Some(mine), true) if epoch == mine => {}
            (Some(_), true) if joined > self.joined => {
                // The master removed this server and added it back as a new
                // one while it heard of neither: what it holds beyond what
                // it executed may never have been committed.
                self.leave(ctx);
                self.joined = joined;
                self.enter(config, ctx);
            }
            (Some(_), true) => self.enter(config, ctx),
            (Some(_), false) => self.leave(ctx),
            (None, true) => {
                // Confirmed in the chain. A server of epoch 0 that was never
                // removed holds every update (it took part in all of them);
                // one added later gets the state first.
                self.synced = joined == 0;
                self.joined = joined;
                self.enter(config, ctx);
            }
            (None, false) => {}
        }
        if lease && self.is_tail() && self.epoch() == Some(epoch) {
            // The echo of this server's own clock, so never later than now:
            // one that is (forged, or from another clock) must not extend
            // the lease past now + lease, let alone to the end of time.
            let from = Time::from_nanos(sent_at).min(ctx.now());
            self.lease_until = self.lease_until.max(from + self.timing.lease);
        }
    }

    /// Enters `config`, which has this server.
    fn enter(&mut self, config: Config, ctx: &mut Ctx<'_, '_>) {
        let was_tail = self.is_tail();
        let old_successor = self.successor();
        self.config = Some(config);
        ctx.count("epoch: entered");
        if !self.is_tail() || !was_tail {
            self.lease_until = Time::ZERO;
        }
        if self.successor() != old_successor {
            self.state_sent = None;
        }
        if self.is_head() {
            self.in_chain.clear();
            for forward in &self.sent {
                let request = &forward.request;
                self.in_chain.insert(request.client_id, request.request_num);
            }
        } else {
            self.resumed = false;
            self.want_sent = None;
            self.want(ctx);
        }
        if self.is_tail() && !self.sent.is_empty() {
            // A new tail holds everything committed: its Sent list is
            // committed now.
            while let Some(forward) = self.sent.pop_front() {
                self.commit(forward, true, ctx);
            }
            self.acknowledge(ctx);
        }
        self.incoming = None;
    }

    /// Leaves the chain: the master removed this server. It keeps what it
    /// executed (a prefix of what the chain committed), drops the rest, and
    /// waits to be added back as a new tail.
    fn leave(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.count("epoch: removed");
        self.config = None;
        self.synced = false;
        self.synced_at = None;
        self.sent.clear();
        self.in_chain.clear();
        self.next = self.committed;
        self.lease_until = Time::ZERO;
        self.incoming = None;
    }

    /// The heartbeat: ping the master, and push what is stuck.
    fn on_heartbeat(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.set_timer(Timer::Heartbeat, self.timing.heartbeat);
        self.ping(ctx);
        if self.config.is_none() {
            return;
        }
        if !self.is_head() && !self.resumed {
            self.want(ctx);
        }
        let stuck = self.committed == self.committed_at_tick;
        self.committed_at_tick = self.committed;
        if stuck
            && !planted::is(bugs::NO_SENT_RESEND)
            && let Some(successor) = self.successor()
        {
            for forward in self.sent.iter().take(RESEND_BURST) {
                ctx.send(successor, self.restamped(forward));
            }
        }
    }
}

impl State for Replica {
    type Message = Message;
    type Outbound = Message;
    type Timer = Timer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Ctx<'_, '_>) {
        self.nonce = ctx.rng().next_u64();
        self.ping(ctx);
        ctx.set_timer(Timer::Heartbeat, self.timing.heartbeat);
    }

    fn on_message(&mut self, from: Addr, msg: Message, ctx: &mut Ctx<'_, '_>) {
        match msg {
            Message::Update { epoch, request } => self.on_update(epoch, request, ctx),
            Message::Query { epoch, request } => self.on_query(epoch, request, ctx),
            // The runtime has learned the client's address: that is all.
            Message::Hello { .. } => {}
            Message::Forward(forward) => self.on_forward(from, forward, ctx),
            Message::Ack { epoch, committed } => self.on_ack(from, epoch, committed, ctx),
            Message::Want { epoch, next } => self.on_want(from, epoch, next, ctx),
            Message::Resume {
                epoch,
                committed,
                next,
            } => self.on_resume(from, epoch, committed, next, ctx),
            Message::Chunk(chunk) => self.on_chunk(from, chunk, ctx),
            Message::Pong(pong) if from == self.master => self.on_pong(pong, ctx),
            Message::Pong(_) => ctx.drop_message("pong: not from the master"),
            Message::Where { .. }
            | Message::Reply(_)
            | Message::Redirect { .. }
            | Message::Ping(_) => ctx.drop_message("server: unexpected message"),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<'_, '_>) {
        match timer {
            Timer::Heartbeat => self.on_heartbeat(ctx),
        }
    }

    /// A server that does not hold the whole state in the chain counts as
    /// failed until it does.
    fn is_recovering(&self) -> bool {
        self.config.is_none() || !self.synced
    }

    fn executed_slot(&self) -> Option<u64> {
        Some(self.committed)
    }

    /// The head of the newest configuration it heard of.
    fn leader(&self) -> Option<ReplicaId> {
        self.latest.chain.first().copied()
    }
}
