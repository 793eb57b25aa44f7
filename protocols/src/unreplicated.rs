//! The unreplicated baseline: one server executes client requests directly.
//!
//! It is the yardstick for every replicated protocol: the same clients, the same
//! application, the same runtime, and no replication at all, so that the cost
//! of a protocol shows as a ratio to this.
//!
//! # Algorithm
//!
//! A client numbers its requests 1, 2, 3, … and has at most one outstanding.
//! It sends the request to the server and retransmits it until the matching
//! reply arrives: first after twice its smoothed latency (at least
//! `resend_interval`), then each time twice as long, up to [`RESEND_MAX`]
//! ([`crate::common::Retransmit`], the schedule PBFT's clients use).
//!
//! The server keeps a client table ([`crate::common::ClientTable`], with one
//! session per client and no binding): for each client, the number of its
//! latest request and the result of it. A request with a higher number is
//! executed and its result stored; a retransmission of the latest request
//! gets the stored result again without executing anything; an older request
//! is ignored (its client has already seen the reply, or it would not have
//! moved on). A client the table does not know gets an entry. So each request
//! executes at most once, however the network loses, duplicates or reorders
//! datagrams.
//!
//! The table is bounded: at most [`CLIENT_TABLE_MAX`] clients and
//! [`RESULT_BYTES_MAX`] bytes of results, past which the clients that
//! executed least recently are forgotten. A forgotten client's next request
//! executes as any new one; only a retransmission of its last request, if
//! that request's reply was lost and [`CLIENT_TABLE_MAX`] other clients
//! executed since, would execute twice, as after a restart (below). The
//! baseline has no way to tell a client it was forgotten (PBFT has): it
//! trusts the network, and the bound only keeps a flood of client ids from
//! growing the server without limit.
//!
//! # Faults
//!
//! By default the server keeps everything in memory. A server that crashes
//! and restarts comes back empty: the application's state and the client
//! table are gone. Clients notice nothing at the protocol level: an
//! outstanding request is retransmitted and executed by the new server, and
//! later operations run against the empty state. A read can then miss a write
//! that completed before the crash, which the linearizability checker reports
//! (see the scenario test `server_restart_loses_state`). Tolerating that is
//! what replication is for.
//!
//! # Durable mode
//!
//! With the tunable `durable=1` ([`Server::durable`]) the server is the
//! classic single server with a write-ahead log: it persists each request it
//! executes (`log/<slot>`) before the reply leaves (the persist is a
//! barrier, [`runtime::durable`]), and every `snapshot_interval` requests it
//! persists a snapshot (the next slot, the application's state and the
//! client table, in chunks of 64 MiB under a header, since together they
//! can pass what one durable value holds) and erases the log entries the
//! snapshot covers, all in one batch. After a
//! crash it recovers ([`State::on_recover`]): it restores the snapshot and
//! executes the logged requests again, in order, without replying (a
//! client that is still waiting retransmits, and gets the stored result).
//! So a completed operation is never lost and none executes twice; what the
//! server loses is availability while it is down. A disk that forgets
//! acknowledged writes is beyond this model (the seeded runs' `beyond`
//! profile does it).

use std::sync::Arc;
use std::time::Duration;

use bincode::Encode;
use runtime::durable::Stored;
use runtime::{Addr, ClientId, Context, DropReason, ReplicaId, SharedState, Source, State};
use wire::unreplicated::{Message, Reply, Request};
use wire::{Bytes, Payload};

use crate::app::{App, Position};
use crate::common::{Admission, ClientTable, Retransmit};
use crate::planted;

/// The server's address: the only replica.
pub const SERVER: Addr = Addr::Replica(ReplicaId(0));

/// Clients the server's table holds at most (see the module docs).
pub const CLIENT_TABLE_MAX: usize = 1 << 18;

/// Bytes of results the server's table stores at most.
pub const RESULT_BYTES_MAX: usize = 256 << 20;

/// Longest wait between a client's retransmissions of one request, after
/// doubling.
pub const RESEND_MAX: Duration = Duration::from_millis(500);

/// The one session of every client: the baseline has no registration.
const SESSION: u64 = 0;

/// The single server.
pub struct Server {
    app: Box<dyn App>,
    /// Per client: its latest request number and the result of it.
    client_table: ClientTable<()>,
    /// Requests executed: the slot of the next one.
    executed: u64,
    /// In durable mode, the write-ahead log's state.
    durable: Option<Wal>,
}

/// The durable server's log: the requests executed since the last
/// snapshot, each under [`log_key`]`(slot)`.
#[derive(Debug)]
struct Wal {
    /// Requests between snapshots.
    snapshot_interval: u64,
    /// The first slot the log holds (the snapshot covers those below).
    from: u64,
    /// Chunks the last snapshot took.
    chunks: u64,
}

/// Key of the snapshot's header in durable state: how many chunks it has.
const SNAPSHOT_KEY: &[u8] = b"snapshot";
/// Prefix of the snapshot's chunks.
const CHUNK_PREFIX: &[u8] = b"snapshot/";
/// Bytes per chunk of a snapshot: well within a durable value's bound,
/// whatever the app and the client table hold.
const SNAPSHOT_CHUNK_BYTES: usize = 64 << 20;

fn chunk_key(i: u64) -> Vec<u8> {
    let mut key = CHUNK_PREFIX.to_vec();
    key.extend_from_slice(&i.to_be_bytes());
    key
}
/// Prefix of the log's keys.
const LOG_PREFIX: &[u8] = b"log/";

/// The durable key of the request executed at `slot`: big-endian, so that
/// keys sort in slot order.
fn log_key(slot: u64) -> Vec<u8> {
    let mut key = LOG_PREFIX.to_vec();
    key.extend_from_slice(&slot.to_be_bytes());
    key
}

fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    *bytes = rest;
    Some(u64::from_le_bytes(*head))
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("clients", &self.client_table.len())
            .finish_non_exhaustive()
    }
}

/// What the baseline's nodes send, their bytes in vectors: the server's
/// replies, and a client's request, which the client shares with its
/// outbox (see [`Client`]). Encoded as the [`Message`] of the same variant,
/// which is what arrives.
#[derive(Clone, Debug, PartialEq, Eq, Encode)]
pub enum Outbound {
    Request(Arc<Request<Vec<u8>>>),
    Reply(Reply<Vec<u8>>),
}

/// The server has no timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerTimer {}

impl Server {
    pub fn new(app: Box<dyn App>) -> Server {
        Server {
            app,
            client_table: ClientTable::new(CLIENT_TABLE_MAX, RESULT_BYTES_MAX),
            executed: 0,
            durable: None,
        }
    }

    /// A server in durable mode (see the module docs): every request logged
    /// before its reply leaves, a snapshot every `snapshot_interval`
    /// requests.
    pub fn durable(app: Box<dyn App>, snapshot_interval: u64) -> Server {
        assert!(snapshot_interval > 0, "a snapshot every 0 requests");
        Server {
            durable: Some(Wal {
                snapshot_interval,
                from: 0,
                chunks: 0,
            }),
            ..Server::new(app)
        }
    }

    /// Executes the request at the next slot; the client table has admitted
    /// it.
    fn execute(&mut self, client_id: ClientId, request_num: u64, op: &[u8]) -> Vec<u8> {
        let at = Position {
            slot: self.executed,
            client: client_id,
            request_num,
        };
        self.executed += 1;
        self.app.execute_at(at, op)
    }

    /// Admits a request the client table does not know: a new client.
    fn register(&mut self, client_id: ClientId, ctx: &mut Context<'_, Outbound, ServerTimer>) {
        let (_, evicted) = self
            .client_table
            .register(client_id, (), SESSION)
            .expect("no binding to differ");
        if evicted.is_some() {
            ctx.count("client table: client forgotten");
        }
    }

    /// In durable mode: logs the request just executed (at the slot before
    /// `executed`), and takes a snapshot when the log is long enough.
    fn log(
        &mut self,
        client_id: ClientId,
        request_num: u64,
        op: &[u8],
        ctx: &mut Context<'_, Outbound, ServerTimer>,
    ) {
        let Some(wal) = &mut self.durable else {
            return;
        };
        let slot = self.executed - 1;
        let mut entry = Vec::with_capacity(16 + op.len());
        entry.extend_from_slice(&client_id.0.to_le_bytes());
        entry.extend_from_slice(&request_num.to_le_bytes());
        entry.extend_from_slice(op);
        ctx.persist(log_key(slot), entry);
        if self.executed - wal.from < wal.snapshot_interval {
            return;
        }
        // The next slot, the app's state and the client table, in chunks
        // (together they may pass what one durable value holds), under a
        // header that says how many; one batch, so all or none is durable.
        let mut snapshot = self.executed.to_le_bytes().to_vec();
        let app = self.app.snapshot();
        snapshot.extend_from_slice(&(app.len() as u64).to_le_bytes());
        snapshot.extend_from_slice(&app);
        drop(app);
        self.client_table.encode(&mut snapshot);
        let chunks = snapshot.chunks(SNAPSHOT_CHUNK_BYTES).count() as u64;
        for (i, chunk) in snapshot.chunks(SNAPSHOT_CHUNK_BYTES).enumerate() {
            ctx.persist(chunk_key(i as u64), chunk);
        }
        for i in chunks..wal.chunks {
            ctx.erase(chunk_key(i));
        }
        wal.chunks = chunks;
        ctx.persist(SNAPSHOT_KEY, chunks.to_le_bytes());
        for slot in wal.from..self.executed {
            ctx.erase(log_key(slot));
        }
        wal.from = self.executed;
        ctx.count("durable: snapshots");
    }

    fn on_request(&mut self, request: Request, ctx: &mut Context<'_, Outbound, ServerTimer>) {
        let Request {
            client_id,
            request_num,
            op,
        } = request;
        let client = Addr::Client(client_id);
        match self
            .client_table
            .admit(client_id, &(), SESSION, request_num)
        {
            Admission::Stale => {
                ctx.drop_message("request: older than the latest");
                return;
            }
            Admission::Duplicate(result) => {
                ctx.count("request: resent cached reply");
                let reply = Reply {
                    client_id,
                    request_num,
                    result: result.to_vec(),
                };
                ctx.send(client, Outbound::Reply(reply));
                return;
            }
            Admission::Execute => {}
            Admission::Unknown => self.register(client_id, ctx),
            Admission::OtherBinding => unreachable!("no binding to differ"),
        }
        let result = self.execute(client_id, request_num, &op);
        let reply = Reply {
            client_id,
            request_num,
            result: result.clone(),
        };
        if planted::is(bugs::REPLY_BEFORE_LOG) {
            ctx.send(client, Outbound::Reply(reply.clone()));
        }
        if planted::is(bugs::SNAPSHOT_BEFORE_RECORD) {
            self.log(client_id, request_num, &op, ctx);
        }
        let evicted = self.client_table.record(client_id, request_num, result);
        if !evicted.is_empty() {
            ctx.count_n("client table: client forgotten", evicted.len() as u64);
        }
        // After the table has the result (a snapshot taken here includes
        // it), before the reply: the persist holds the reply back until the
        // log has the request.
        if !planted::is(bugs::SNAPSHOT_BEFORE_RECORD) {
            self.log(client_id, request_num, &op, ctx);
        }
        if !planted::is(bugs::REPLY_BEFORE_LOG) {
            ctx.send(client, Outbound::Reply(reply));
        }
    }
}

impl State for Server {
    type Message = Message;
    type Outbound = Outbound;
    type Timer = ServerTimer;
    type Shared = Codec;

    /// Back from a crash with what the durable server persisted: the
    /// snapshot restored, then the logged requests executed again in order,
    /// without replies. Durable state this server did not write (a server
    /// not in durable mode) is ignored: it starts afresh.
    fn on_recover(&mut self, stored: &Stored, ctx: &mut Context<'_, Outbound, ServerTimer>) {
        if self.durable.is_none() {
            return;
        }
        if let Some(mut header) = stored.get(SNAPSHOT_KEY) {
            let chunks = take_u64(&mut header).expect("snapshot: its chunk count");
            let mut snapshot = Vec::new();
            for i in 0..chunks {
                let chunk = stored.get(&chunk_key(i)).expect("snapshot: every chunk");
                snapshot.extend_from_slice(chunk);
            }
            if let Some(wal) = &mut self.durable {
                wal.chunks = chunks;
            }
            let bytes = &mut snapshot.as_slice();
            let executed = take_u64(bytes).expect("snapshot: the next slot");
            let len = take_u64(bytes).expect("snapshot: the app's length") as usize;
            let (app, mut table) = bytes.split_at_checked(len).expect("snapshot: the app");
            self.app.restore(app);
            self.client_table = ClientTable::decode(&mut table, CLIENT_TABLE_MAX, RESULT_BYTES_MAX)
                .expect("snapshot: the client table");
            self.executed = executed;
        }
        let from = self.executed;
        let log = stored
            .prefixed(LOG_PREFIX)
            .filter(|_| !planted::is(bugs::NO_LOG_REPLAY));
        for (key, mut entry) in log {
            let slot = u64::from_be_bytes(key[LOG_PREFIX.len()..].try_into().expect("log key"));
            assert_eq!(
                slot, self.executed,
                "the log continues the snapshot, gap-free"
            );
            let client_id = ClientId(take_u64(&mut entry).expect("log: client"));
            let request_num = take_u64(&mut entry).expect("log: request number");
            if let Admission::Unknown =
                self.client_table
                    .admit(client_id, &(), SESSION, request_num)
            {
                self.register(client_id, ctx);
            }
            let result = self.execute(client_id, request_num, entry);
            self.client_table.record(client_id, request_num, result);
        }
        if let Some(wal) = &mut self.durable {
            wal.from = from;
        }
        ctx.count_n("durable: requests replayed", self.executed - from);
    }

    fn on_message(
        &mut self,
        from: Addr,
        msg: Message,
        ctx: &mut Context<'_, Outbound, ServerTimer>,
    ) {
        match msg {
            Message::Request(request) => {
                debug_assert_eq!(from, Addr::Client(request.client_id));
                self.on_request(request, ctx);
            }
            Message::Reply(_) => ctx.drop_message("server: unexpected reply"),
        }
    }

    fn on_timer(&mut self, timer: ServerTimer, _ctx: &mut Context<'_, Outbound, ServerTimer>) {
        match timer {}
    }
}

/// A client with one outstanding request at a time.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    /// When to retransmit the outstanding request.
    resend: Retransmit,
    /// The latest request sent (number 0 before the first), kept to be
    /// retransmitted. Sending it shares it with the outbox, which copies
    /// nothing; by the next operation the runtime has encoded that copy and
    /// let go of it, so the request and its operation's buffer are reused
    /// in place ([`Arc::make_mut`] allocates only if a copy is still held).
    request: Arc<Request<Vec<u8>>>,
    /// Whether `request` waits for its reply.
    outstanding: bool,
    result: Option<Vec<u8>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientTimer {
    /// Retransmit the outstanding request.
    Resend,
}

impl Client {
    /// Client `id`, which first retransmits a request after
    /// `resend_interval` at least (see the module docs).
    pub fn new(id: ClientId, resend_interval: Duration) -> Client {
        assert!(resend_interval > Duration::ZERO);
        Client {
            id,
            resend: Retransmit::new(resend_interval, RESEND_MAX),
            request: Arc::new(Request {
                client_id: id,
                request_num: 0,
                op: Vec::new(),
            }),
            outstanding: false,
            result: None,
        }
    }

    fn on_reply(&mut self, reply: Reply, ctx: &mut Context<'_, Outbound, ClientTimer>) {
        if !self.outstanding {
            ctx.drop_message("client: reply with nothing outstanding");
            return;
        }
        if reply.client_id != self.id || reply.request_num != self.request.request_num {
            ctx.drop_message("client: reply to another request");
            return;
        }
        self.outstanding = false;
        self.result = Some(reply.result.to_vec());
        self.resend.complete(ctx.now());
        ctx.cancel_timer(ClientTimer::Resend);
    }
}

impl State for Client {
    type Message = Message;
    type Outbound = Outbound;
    type Timer = ClientTimer;
    type Shared = Codec;

    fn on_message(
        &mut self,
        from: Addr,
        msg: Message,
        ctx: &mut Context<'_, Outbound, ClientTimer>,
    ) {
        match msg {
            Message::Reply(reply) if from == SERVER => self.on_reply(reply, ctx),
            Message::Reply(_) => ctx.drop_message("client: reply from a non-server"),
            Message::Request(_) => ctx.drop_message("client: unexpected request"),
        }
    }

    fn on_timer(&mut self, timer: ClientTimer, ctx: &mut Context<'_, Outbound, ClientTimer>) {
        match timer {
            ClientTimer::Resend => {
                if !self.outstanding {
                    return; // Spurious: the reply came first.
                }
                ctx.count("client: retransmission");
                ctx.send(SERVER, Outbound::Request(Arc::clone(&self.request)));
                ctx.set_timer(ClientTimer::Resend, self.resend.backoff());
            }
        }
    }
}

impl runtime::Client for Client {
    fn invoke(&mut self, op: &[u8], ctx: &mut Context<'_, Outbound, ClientTimer>) {
        assert!(!self.outstanding, "one operation at a time");
        let request = Arc::make_mut(&mut self.request);
        request.request_num += 1;
        request.op.clear();
        request.op.extend_from_slice(op);
        self.outstanding = true;
        self.resend.begin(ctx.now());
        ctx.send(SERVER, Outbound::Request(Arc::clone(&self.request)));
        ctx.set_timer(ClientTimer::Resend, self.resend.first());
    }

    fn take_result(&mut self) -> Option<Vec<u8>> {
        self.result.take()
    }

    fn recipient(msg: &Message) -> Option<ClientId> {
        match msg {
            Message::Reply(reply) => Some(reply.client_id),
            Message::Request(_) => None,
        }
    }
}

/// Decoding and encoding for both ends. Unsigned: the baseline trusts the
/// network, as the systems it stands for do.
#[derive(Clone, Copy, Debug, Default)]
pub struct Codec;

impl SharedState for Codec {
    type Message = Message;
    type Outbound = Outbound;

    /// Copies the operation or result out of `bytes`.
    fn decode(&self, _source: Source, bytes: &[u8]) -> Result<(Addr, Message), DropReason> {
        let msg: Message<&[u8]> = wire::codec::decode_borrowed(bytes)?;
        Ok(with_sender(msg.into_payloads(Payload::copy_from_slice)))
    }

    /// The operation or result is a slice of `datagram`: nothing is copied
    /// or allocated (the server executes an operation and drops it, the
    /// client copies a result out, so the receive buffer is soon reused).
    fn decode_shared(
        &self,
        _source: Source,
        datagram: &Bytes,
    ) -> Result<(Addr, Message), DropReason> {
        let msg: Message<&[u8]> = wire::codec::decode_borrowed(datagram)?;
        Ok(with_sender(
            msg.into_payloads(|bytes| Payload::slice_of(datagram, bytes)),
        ))
    }

    fn encode(&self, msg: &Outbound, buf: &mut Vec<u8>) -> Result<(), DropReason> {
        Ok(wire::encode(msg, buf)?)
    }

    fn describe(&self, bytes: &[u8]) -> String {
        match wire::codec::decode_borrowed::<Message<&[u8]>>(bytes) {
            Ok(Message::Request(r)) => format!("Request c{} #{}", r.client_id.0, r.request_num),
            Ok(Message::Reply(r)) => format!("Reply c{} #{}", r.client_id.0, r.request_num),
            Err(e) => format!("undecodable ({})", e.reason()),
        }
    }
}

/// `msg` with its sender: a request's client, or the server.
fn with_sender(msg: Message) -> (Addr, Message) {
    let from = match &msg {
        Message::Request(request) => Addr::Client(request.client_id),
        Message::Reply(_) => SERVER,
    };
    (from, msg)
}

/// The baseline's planted bugs (see [`crate::planted`]): durability bugs of
/// its durable mode. [`ALL`](bugs::ALL) is what the registry lists
/// ([`crate::registry::Kit::planted`]).
pub mod bugs {
    use crate::planted::Bug;

    const UNREPLICATED: &str = wire::unreplicated::SPEC.name;

    /// Durable: the reply leaves before the request is in the log (sent
    /// ahead of the persist, so the barrier does not hold it).
    pub const REPLY_BEFORE_LOG: Bug = Bug::new(
        UNREPLICATED,
        "reply-before-log",
        "durable: the reply leaves before the log has the request",
    );

    /// Durable: recovery restores the snapshot and skips the log after it.
    pub const NO_LOG_REPLAY: Bug = Bug::new(
        UNREPLICATED,
        "no-log-replay",
        "durable: recovery restores the snapshot and skips the log",
    );

    /// Durable: the snapshot is taken before the client table has the
    /// request's result, so a retransmission after a recovery runs it again
    /// (the order this server had first).
    pub const SNAPSHOT_BEFORE_RECORD: Bug = Bug::new(
        UNREPLICATED,
        "snapshot-before-record",
        "durable: a snapshot taken before the client table has the result",
    );

    /// Every bug of the baseline.
    pub const ALL: &[Bug] = &[REPLY_BEFORE_LOG, NO_LOG_REPLAY, SNAPSHOT_BEFORE_RECORD];
}

/// The baseline in the protocol registry ([`crate::registry`]).
pub const PROTOCOL: crate::registry::Protocol = crate::registry::Protocol::new(&Kit);

/// What the registry runs the baseline with.
#[derive(Clone, Copy, Debug)]
pub struct Kit;

impl crate::registry::Kit for Kit {
    fn spec(&self) -> &'static wire::registry::ProtocolSpec {
        &wire::unreplicated::SPEC
    }

    fn start(
        &self,
        _config: &wire::control::NodeConfig,
        settings: &wire::registry::Settings,
        node: crate::registry::Start,
    ) -> Result<runtime::deploy::Running, String> {
        use crate::registry::Start;
        use runtime::deploy;
        let codec = Arc::new(Codec);
        let running = match node {
            Start::Replica {
                app,
                setup,
                durable,
                ..
            } => {
                let server = if settings.get(&wire::unreplicated::DURABLE) == 1 {
                    Server::durable(app, settings.get(&wire::unreplicated::SNAPSHOT_INTERVAL))
                } else {
                    Server::new(app)
                };
                deploy::spawn_durable_replica(server, codec, setup, durable)
            }
            Start::Clients {
                resend, ops, setup, ..
            } => {
                let make_client: deploy::ClientFactory<Client> =
                    Arc::new(move |id| Client::new(id, resend));
                deploy::spawn_clients(make_client, codec, ops, setup)
            }
        };
        running.map_err(|e| e.to_string())
    }

    fn random_run(
        &self,
        seed: u64,
        profile: crate::simulate::Profile,
        trace: bool,
    ) -> crate::simulate::Simulated {
        crate::simulate::unreplicated::random_run(seed, profile, trace)
    }

    fn fixed_system(
        &self,
        clients: u64,
        ops: u64,
    ) -> (runtime::sim::Simulator, crate::simulate::ExecutionLog) {
        crate::simulate::unreplicated::fixed_system(clients, ops)
    }

    fn planted(&self) -> &'static [planted::Bug] {
        bugs::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a node sends decodes as the message of the same variant.
    #[test]
    fn outbound_encodes_as_the_message() {
        let request = Request {
            client_id: ClientId(7),
            request_num: 3,
            op: b"op".to_vec(),
        };
        let reply = Reply {
            client_id: ClientId(7),
            request_num: 3,
            result: b"result".to_vec(),
        };
        for (outbound, message) in [
            (
                Outbound::Request(Arc::new(request.clone())),
                Message::Request(request),
            ),
            (Outbound::Reply(reply.clone()), Message::Reply(reply)),
        ] {
            let mut bytes = Vec::new();
            Codec.encode(&outbound, &mut bytes).unwrap();
            assert_eq!(bytes, wire::codec::encode_to_vec(&message).unwrap());
        }
    }
}
