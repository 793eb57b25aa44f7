//! A VR replica: the primary of its view or a backup (see the module docs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use runtime::{Addr, ClientId, Context, ReplicaId, State, Time};
use wire::client::{Reply, Request};
use wire::vr::{Chunk, Entry, Log, Message, Peer, Primary};

use super::{
    BATCH_BYTES_MAX, CHUNK_BYTES, CHUNKS_MAX, CLIENT_TABLE_MAX, COMMIT_INTERVAL, Codec, Config,
    GET_STATE_INTERVAL, QUEUE_MAX, RECOVERY_INTERVAL, RECOVERY_STALL_TICKS, RESULT_BYTES_MAX,
    SNAPSHOT_INTERVAL, STATE_BYTES_MAX, STATE_ENTRIES_MAX, VIEW_TIMEOUT_MAX, WAITING_BYTES_MAX,
    WAITING_MAX, bugs,
};
use crate::app::{App, Position, Unexecuted};
use crate::common::{Admission, ClientTable};
use crate::planted;

/// Every client has one session: VR trusts the network, as chain
/// replication does, and has no registration.
const SESSION: u64 = 0;

/// A replica's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaTimer {
    /// A backup heard nothing from its primary for a view timeout, or a
    /// view change did not finish in one: move to the next view.
    View,
    /// The primary tells the backups its commit number.
    Commit,
    /// A recovering replica asks again.
    Recovery,
}

/// A replica's status (§4): normal, or in a view change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Normal,
    ViewChange,
    /// Restarted without its state, running the recovery protocol (§4.3):
    /// it takes no part until it is done.
    Recovering,
}

type Ctx<'a, 'b> = Context<'a, Message, ReplicaTimer>;

/// One VR replica; see the module docs.
pub struct Replica {
    id: ReplicaId,
    config: Config,
    app: Box<dyn App>,
    table: ClientTable<()>,

    view: u64,
    status: Status,
    /// The latest view in which the status was normal.
    last_normal: u64,
    log: Log,
    /// Every entry up to `commit` is committed, and executed here.
    commit: u64,
    /// View changes in a row: the view timer doubles with each.
    backoff: u32,

    // The primary.
    /// Requests waiting for a batch, at most one per client.
    queue: VecDeque<Request>,
    /// Each client with a request in the queue or in an uncommitted entry,
    /// and its number.
    held: HashMap<ClientId, u64>,
    /// At a replica that is not the primary: the latest request each
    /// client sent it (clients send to every replica when they
    /// retransmit), for the next view's primary to take up at once
    /// instead of waiting for the clients to retransmit again. Cleared
    /// when a view starts; at most [`WAITING_MAX`] requests and
    /// [`WAITING_BYTES_MAX`] bytes.
    waiting: BTreeMap<ClientId, Request>,
    waiting_bytes: usize,
    /// Per replica, the highest entry it holds in this view, as its
    /// `PrepareOk`s said.
    acked: Vec<u64>,

    // The view change.
    /// Replicas that sent `StartViewChange` for this view.
    started: Vec<bool>,
    /// Whether this replica sent its `DoViewChange` for this view.
    did: bool,
    /// At the new primary: the `DoViewChange`s for this view, by replica.
    done: BTreeMap<ReplicaId, DoViewChange>,

    /// When this replica last asked for state.
    asked: Option<Time>,
    /// The primary's commit number at its last tick: none since, and it
    /// prepares the uncommitted entries again.
    commit_at_tick: u64,
    /// While recovering: this recovery's nonce, and the responses to it by
    /// replica (their view, and what the primary of it said).
    nonce: u64,
    responses: BTreeMap<ReplicaId, (u64, Option<Primary>)>,

    // Snapshots and state transfer (§5.1, §5.2).
    /// The latest snapshot.
    checkpoint: Option<Checkpoint>,
    /// A log being fetched to replace this replica's: its own stays as it
    /// is, for a view change to report, until the fetched one is whole.
    fetch: Option<Fetch>,
    /// A snapshot arriving in chunks.
    incoming: Option<Incoming>,
    /// When this replica last sent its snapshot to each replica.
    snapshot_sent: Vec<Option<Time>>,
    /// At the primary: the log its view started with, as `StartView` says
    /// (the view it was last normal in, and its top).
    start: (u64, u64),

    /// The crash vector (DISC'17): how many times each replica recovered,
    /// as far as this one knows. It travels with every message between
    /// replicas; see [`wire::vr::Peer`].
    crashes: Vec<u64>,
    /// While recovering: whether this replica has learnt how many times it
    /// recovered before (from f + 1 answers) and counted this recovery.
    counted: bool,
    /// While recovering and not yet counted: the most recoveries of this
    /// replica the answers so far know of.
    known_recoveries: u64,
}

/// What a `DoViewChange` says.
#[derive(Clone, Copy, Debug)]
struct DoViewChange {
    last_normal: u64,
    commit: u64,
    top: u64,
}

/// The application's state and the client table after executing every
/// entry up to `op`: the app's snapshot, length first, then the table.
#[derive(Clone, Debug)]
struct Checkpoint {
    op: u64,
    state: Vec<u8>,
}

/// Why a replica fetches a log whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// A backup whose log is not the one `StartView` names.
    Backup,
    /// A new primary whose log is not the one it picked.
    Primary { log_view: u64 },
    /// A replica recovering from the primary that answered it.
    Recovery,
}

/// A log being fetched from `from`, who is in `view`: whole once it
/// reaches `top`.
#[derive(Debug)]
struct Fetch {
    purpose: Purpose,
    view: u64,
    from: ReplicaId,
    top: u64,
    /// The largest commit number heard for it.
    commit: u64,
    /// Entries from `log.base` on; the base is the snapshot's op if one
    /// came, else what this replica asked from (its own log holds the
    /// entries below).
    log: Log,
    snapshot: Option<Checkpoint>,
    asked: Option<Time>,
    /// Recovery timer ticks since the last piece arrived.
    stalled: u32,
}

/// Chunks of `from`'s snapshot at `op`.
#[derive(Debug)]
struct Incoming {
    from: ReplicaId,
    op: u64,
    chunks: Vec<Option<Vec<u8>>>,
    missing: u32,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("view", &self.view)
            .field("status", &self.status)
            .field("top", &self.log.top())
            .field("commit", &self.commit)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Replica `id` of the group `config` describes.
    pub fn new(id: ReplicaId, config: Config, app: Box<dyn App>) -> Replica {
        assert!(usize::from(id.0) < config.n);
        Replica {
            id,
            config,
            app,
            table: ClientTable::new(CLIENT_TABLE_MAX, RESULT_BYTES_MAX),
            view: 0,
            status: Status::Normal,
            last_normal: 0,
            log: Log::default(),
            commit: 0,
            backoff: 0,
            queue: VecDeque::new(),
            held: HashMap::new(),
            waiting: BTreeMap::new(),
            waiting_bytes: 0,
            acked: vec![0; config.n],
            started: vec![false; config.n],
            did: false,
            done: BTreeMap::new(),
            asked: None,
            commit_at_tick: 0,
            nonce: 0,
            responses: BTreeMap::new(),
            checkpoint: None,
            fetch: None,
            incoming: None,
            snapshot_sent: vec![None; config.n],
            start: (0, 0),
            crashes: vec![0; config.n],
            counted: true,
            known_recoveries: 0,
        }
    }

    /// Replica `id`, restarted without its state: it runs the recovery
    /// protocol (§4.3) before it takes part again.
    pub fn recovering(id: ReplicaId, config: Config, app: Box<dyn App>) -> Replica {
        let mut replica = Replica::new(id, config, app);
        replica.status = Status::Recovering;
        replica.counted = false;
        replica
    }

    pub fn view(&self) -> u64 {
        self.view
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// The op-number of the last entry in the log.
    pub fn top(&self) -> u64 {
        self.log.top()
    }

    /// Every entry up to this one is committed and executed here.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    /// Log entries this replica holds, its own and any being fetched.
    pub fn entries_held(&self) -> usize {
        self.log.entries.len() + self.fetch.as_ref().map_or(0, |f| f.log.entries.len())
    }

    /// A message to other replicas, with the crash vector.
    fn peer(&self, msg: Peer) -> Message {
        Message::Peer {
            crashes: self.crashes.clone(),
            msg,
        }
    }

    /// Whether a message from `sender` with crash vector `crashes` comes
    /// from the sender's latest life this replica knows of (a `Recovery`
    /// always does: a recovering replica does not know yet how many times
    /// it recovered before). Merges the vector: what the earlier lives of
    /// a replica whose count grows said is forgotten.
    fn admit(&mut self, sender: ReplicaId, crashes: &[u64], ctx: &mut Ctx<'_, '_>) -> bool {
        let i = usize::from(sender.0);
        if crashes[i] < self.crashes[i] && !planted::is(bugs::NO_CRASH_VECTORS) {
            ctx.drop_message("peer: from a life of its sender before a recovery");
            return false;
        }
        let me = usize::from(self.id.0);
        for (k, &count) in crashes.iter().enumerate() {
            if k != me && count > self.crashes[k] {
                self.crashes[k] = count;
                self.forget(ReplicaId(k as u8), ctx);
            }
        }
        if crashes[me] > self.crashes[me] && self.counted {
            // An earlier life that died while recovering got further than
            // this one counted: count past it, or the others would drop
            // everything this replica says. Its state is whole; the others
            // forget its acknowledgements and votes, and resends bring
            // them back.
            ctx.count("peer: an earlier life counted past this one");
            self.crashes[me] = crashes[me].saturating_add(1);
        }
        true
    }

    /// Replica `r` recovered again: what its earlier lives said (view-change
    /// votes, acknowledgements, recovery answers, a log being fetched from
    /// it) no longer holds.
    fn forget(&mut self, r: ReplicaId, ctx: &mut Ctx<'_, '_>) {
        ctx.count("peer: a replica's earlier life forgotten");
        let i = usize::from(r.0);
        self.started[i] = false;
        self.done.remove(&r);
        self.acked[i] = 0;
        self.responses.remove(&r);
        if self.fetch.as_ref().is_some_and(|f| f.from == r) {
            self.fetch = None;
            self.incoming = None;
        }
        if self.incoming.as_ref().is_some_and(|inc| inc.from == r) {
            self.incoming = None;
        }
    }

    fn is_primary(&self) -> bool {
        self.config.primary(self.view) == self.id
    }

    fn primary(&self) -> Addr {
        Addr::Replica(self.config.primary(self.view))
    }

    fn entry(&self, op: u64) -> Option<&Entry> {
        let i = op.checked_sub(self.log.base)?.checked_sub(1)?;
        self.log.entries.get(usize::try_from(i).ok()?)
    }

    fn entry_mut(&mut self, op: u64) -> Option<&mut Entry> {
        let i = op.checked_sub(self.log.base)?.checked_sub(1)?;
        self.log.entries.get_mut(usize::try_from(i).ok()?)
    }

    // ---------------------------------------------------------------
    // Normal case (§4.1).

    fn on_request(&mut self, request: Request, ctx: &mut Ctx<'_, '_>) {
        if self.status != Status::Normal || !self.is_primary() {
            self.keep_waiting(request, ctx);
            return;
        }
        let client = request.client_id;
        match self.table.admit(client, &(), SESSION, request.request_num) {
            Admission::Stale => {
                ctx.drop_message("request: older than the client's latest");
                return;
            }
            Admission::Duplicate(result) => {
                ctx.count("request: answered from the client table");
                let reply = Reply {
                    client_id: client,
                    request_num: request.request_num,
                    result: result.to_vec(),
                };
                self.reply(reply, ctx);
                return;
            }
            Admission::Execute | Admission::Unknown => {}
            Admission::OtherBinding => unreachable!("no binding to differ"),
        }
        match self.held.get(&client) {
            Some(&num) if num >= request.request_num => {
                ctx.drop_message("request: in the queue or the log already");
                return;
            }
            // A closed-loop client has one request outstanding: a later
            // one means the held one completed at some earlier primary,
            // or never will.
            _ => {}
        }
        if request_size(&request) > BATCH_BYTES_MAX {
            ctx.drop_message("request: too large for a batch");
            return;
        }
        if self.queue.len() >= QUEUE_MAX {
            ctx.drop_message("request: the queue is full");
            return;
        }
        self.held.insert(client, request.request_num);
        self.queue.push_back(request);
        self.prepare(ctx);
    }

    /// A replica that is not the primary keeps a client's request for
    /// the next view's primary, the latest per client.
    fn keep_waiting(&mut self, request: Request, ctx: &mut Ctx<'_, '_>) {
        let size = request_size(&request);
        if size > BATCH_BYTES_MAX {
            ctx.drop_message("request: too large for a batch");
            return;
        }
        let client = request.client_id;
        let replaced = match self.waiting.get(&client) {
            Some(held) if held.request_num >= request.request_num => {
                ctx.drop_message("request: not the primary, kept already");
                return;
            }
            Some(held) => request_size(held),
            None => 0,
        };
        let bytes = self.waiting_bytes - replaced + size;
        if replaced == 0 && self.waiting.len() >= WAITING_MAX || bytes > WAITING_BYTES_MAX {
            ctx.drop_message("request: not the primary, and its waiting list is full");
            return;
        }
        ctx.count("request: not the primary, kept for the next");
        self.waiting_bytes = bytes;
        self.waiting.insert(client, request);
    }

    /// Prepares batches while the window has room: at once when nothing is
    /// in flight, else only full ones.
    fn prepare(&mut self, ctx: &mut Ctx<'_, '_>) {
        while !self.queue.is_empty()
            && self.log.top().saturating_sub(self.commit) < self.config.window
        {
            let in_flight = self.log.top() > self.commit;
            if in_flight && self.queue.len() < self.config.batch_max {
                return;
            }
            let mut take = 0;
            let mut bytes = 0;
            for request in self.queue.iter().take(self.config.batch_max) {
                bytes += request_size(request);
                if take > 0 && bytes > BATCH_BYTES_MAX {
                    break;
                }
                take += 1;
            }
            let requests: Vec<Request> = self.queue.drain(..take).collect();
            ctx.count(wire::control::BATCHES_COUNTER);
            ctx.count_n(
                wire::control::REQUESTS_BATCHED_COUNTER,
                requests.len() as u64,
            );
            let entry = Entry {
                op: self.log.top().saturating_add(1),
                view: self.view,
                requests,
            };
            self.acked[usize::from(self.id.0)] = entry.op;
            ctx.send_to_replicas(self.peer(Peer::Prepare {
                view: self.view,
                commit: self.commit,
                entry: entry.clone(),
            }));
            self.log.entries.push(entry);
            ctx.cancel_timer(ReplicaTimer::Commit);
            ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
            if self.config.f == 0 {
                self.advance_commit(ctx);
            }
        }
    }

    fn on_prepare(&mut self, view: u64, commit: u64, entry: Entry, ctx: &mut Ctx<'_, '_>) {
        if !self.heard_primary(view, ctx) {
            return;
        }
        let next = self.log.top().saturating_add(1);
        if entry.op == next && self.log.entries.len() >= self.config.log_max() {
            ctx.drop_message("prepare: the log is full");
            return;
        } else if entry.op == next {
            self.log.entries.push(entry);
        } else if entry.op > next {
            ctx.drop_message("prepare: an entry is missing before it");
            self.get_state(ctx);
        } else if self.entry(entry.op).is_some_and(|held| *held != entry) {
            // A resend is the entry held; anything else is a broken
            // invariant, not to be acknowledged.
            ctx.drop_message("prepare: another entry than the one held");
            return;
        }
        // Below `next`: held already; acknowledge again, the primary may
        // have missed it.
        ctx.send(
            self.primary(),
            self.peer(Peer::PrepareOk {
                view: self.view,
                op: self.log.top(),
                replica: self.id,
            }),
        );
        self.execute_up_to(commit, ctx);
    }

    fn on_commit(&mut self, view: u64, commit: u64, ctx: &mut Ctx<'_, '_>) {
        if !self.heard_primary(view, ctx) {
            return;
        }
        if commit > self.log.top() {
            self.get_state(ctx);
        }
        self.execute_up_to(commit, ctx);
    }

    /// Whether a message of the primary's of `view` is one this replica
    /// takes: of its own view, in which it is a normal backup. Hearing from
    /// the primary keeps the view timer from firing. A later view, or the
    /// view this replica is changing to, means the view started without it
    /// (its `StartView` lost, or its log still being fetched): it moves to
    /// the view, status view-change, and asks the primary, which sends
    /// `StartView` again to a replica changing to its view.
    fn heard_primary(&mut self, view: u64, ctx: &mut Ctx<'_, '_>) -> bool {
        if view < self.view {
            ctx.drop_message("primary: an older view");
            return false;
        }
        if view == self.view && self.status == Status::Normal {
            self.arm_view_timer(ctx);
            return true;
        }
        ctx.drop_message("primary: of a view this replica is not normal in yet");
        if self.fetch.as_ref().is_some_and(|f| f.view == view) {
            self.ask_fetch(ctx);
            return false;
        }
        if view > self.view {
            self.enter_view(view, ctx);
            self.status = Status::ViewChange;
            self.arm_view_timer(ctx);
            ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
            ctx.count("view: asked the primary to start it again");
            ctx.send(
                self.primary(),
                self.peer(Peer::StartViewChange {
                    view,
                    replica: self.id,
                }),
            );
        }
        false
    }

    fn on_prepare_ok(&mut self, view: u64, op: u64, replica: ReplicaId, ctx: &mut Ctx<'_, '_>) {
        if view != self.view || self.status != Status::Normal || !self.is_primary() {
            ctx.drop_message("prepare-ok: not the primary of its view");
            return;
        }
        let Some(acked) = self.acked.get_mut(usize::from(replica.0)) else {
            ctx.drop_message("prepare-ok: no such replica");
            return;
        };
        if op > self.log.top() {
            ctx.drop_message("prepare-ok: beyond the log");
            return;
        }
        *acked = (*acked).max(op);
        self.advance_commit(ctx);
    }

    /// The primary commits what f + 1 replicas hold (itself among them).
    fn advance_commit(&mut self, ctx: &mut Ctx<'_, '_>) {
        let mut acked = self.acked.clone();
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let quorum = if planted::is(bugs::COMMIT_BELOW_QUORUM) {
            self.config.f.saturating_sub(1)
        } else {
            self.config.f
        };
        let held = acked[quorum];
        if held > self.commit {
            self.execute_up_to(held, ctx);
            self.prepare(ctx);
        }
    }

    /// Executes the committed entries up to `commit` that this replica
    /// holds; the primary replies.
    fn execute_up_to(&mut self, commit: u64, ctx: &mut Ctx<'_, '_>) {
        let upto = commit.min(self.log.top());
        while self.commit < upto {
            let op = self.commit + 1;
            // Lent out of the log while they execute (execution does not
            // read the log), and put back: the log keeps them for replicas
            // that lag and for view changes.
            let entry = self
                .entry_mut(op)
                .expect("every entry above the commit is held");
            let requests = std::mem::take(&mut entry.requests);
            self.commit = op;
            for request in &requests {
                self.execute(op, request, ctx);
            }
            self.entry_mut(op)
                .expect("execution leaves the log as it was")
                .requests = requests;
            if op.is_multiple_of(self.config.checkpoint_interval) {
                self.take_checkpoint(op, ctx);
            }
        }
    }

    /// Snapshots the state after `op` (§5.1) and truncates the log to the
    /// snapshot before: a replica a little behind gets entries, one further
    /// behind the snapshot.
    fn take_checkpoint(&mut self, op: u64, ctx: &mut Ctx<'_, '_>) {
        let app = self.app.snapshot();
        let mut state = Vec::with_capacity(app.len() + 8);
        state.extend_from_slice(&(app.len() as u64).to_le_bytes());
        state.extend_from_slice(&app);
        drop(app);
        self.table.encode(&mut state);
        ctx.count("checkpoint: taken");
        let before = self.checkpoint.replace(Checkpoint { op, state });
        if let Some(before) = before {
            self.truncate_log(before.op);
        }
    }

    /// Drops the entries up to `op` (at most the commit number).
    fn truncate_log(&mut self, op: u64) {
        let op = op.min(self.commit);
        if op > self.log.base {
            let drop = usize::try_from(op - self.log.base)
                .unwrap_or(usize::MAX)
                .min(self.log.entries.len());
            self.log.entries.drain(..drop);
            self.log.base = op;
        }
    }

    fn execute(&mut self, op: u64, request: &Request, ctx: &mut Ctx<'_, '_>) {
        let &Request {
            client_id,
            request_num,
            op: ref operation,
        } = request;
        if self.held.get(&client_id) == Some(&request_num) {
            self.held.remove(&client_id);
        }
        let outcome = match self.table.admit(client_id, &(), SESSION, request_num) {
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
            Admission::Duplicate(result) => Some(Some(result.to_vec())),
            Admission::Stale => Some(None),
            Admission::OtherBinding => unreachable!("no binding to differ"),
        };
        let result = match outcome {
            None => {
                let at = Position {
                    slot: op,
                    client: client_id,
                    request_num,
                };
                let result = self.app.execute_at(at, operation);
                let evicted = self.table.record(client_id, request_num, result.clone());
                if !evicted.is_empty() {
                    ctx.count_n("client table: client forgotten", evicted.len() as u64);
                }
                result
            }
            Some(settled) => {
                let what = Unexecuted::Request {
                    client: client_id,
                    request_num,
                    outcome: if settled.is_some() {
                        "duplicate"
                    } else {
                        "stale"
                    },
                };
                self.app.unexecuted_at(op, what);
                match settled {
                    Some(result) => result,
                    None => return,
                }
            }
        };
        if self.is_primary() && self.status == Status::Normal {
            let reply = Reply {
                client_id,
                request_num,
                result,
            };
            self.reply(reply, ctx);
        }
    }

    fn reply(&self, reply: Reply, ctx: &mut Ctx<'_, '_>) {
        let to = Addr::Client(reply.client_id);
        ctx.send(
            to,
            Message::Reply {
                view: self.view,
                reply,
            },
        );
    }

    // ---------------------------------------------------------------
    // View change (§4.2).

    fn view_timeout(&self) -> Duration {
        let doubled = self
            .config
            .view_timeout
            .saturating_mul(1u32 << self.backoff.min(16));
        doubled.min(VIEW_TIMEOUT_MAX.max(self.config.view_timeout))
    }

    fn arm_view_timer(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.cancel_timer(ReplicaTimer::View);
        ctx.set_timer(ReplicaTimer::View, self.view_timeout());
    }

    /// Moves to `view`, status view change, and says so.
    fn start_view_change(&mut self, view: u64, ctx: &mut Ctx<'_, '_>) {
        self.enter_view(view, ctx);
        self.status = Status::ViewChange;
        ctx.count(wire::control::VIEW_CHANGES_COUNTER);
        ctx.note(|| format!("view change to v{view}"));
        self.started[usize::from(self.id.0)] = true;
        ctx.send_to_replicas(self.peer(Peer::StartViewChange {
            view,
            replica: self.id,
        }));
        self.backoff = self.backoff.saturating_add(1);
        self.arm_view_timer(ctx);
        ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
        self.maybe_do_view_change(ctx);
    }

    /// Leaves the view this replica was in for a later one: what it
    /// gathered for the old one is of no use.
    fn enter_view(&mut self, view: u64, ctx: &mut Ctx<'_, '_>) {
        debug_assert!(view > self.view);
        self.view = view;
        self.started.iter_mut().for_each(|s| *s = false);
        self.did = false;
        self.done.clear();
        self.acked.iter_mut().for_each(|a| *a = 0);
        self.queue.clear();
        self.fetch = None;
        self.incoming = None;
        ctx.cancel_timer(ReplicaTimer::Commit);
    }

    /// The primary of this view, normal in it, to a replica that is still
    /// changing to it: `StartView` again.
    fn send_start_view(&self, to: Addr, ctx: &mut Ctx<'_, '_>) {
        let (log_view, top) = self.start;
        ctx.send(
            to,
            self.peer(Peer::StartView {
                view: self.view,
                commit: self.commit,
                log_view,
                top,
            }),
        );
    }

    /// Whether this replica is the primary of its view and normal in it.
    fn is_normal_primary(&self) -> bool {
        self.status == Status::Normal && self.is_primary()
    }

    fn on_start_view_change(&mut self, view: u64, replica: ReplicaId, ctx: &mut Ctx<'_, '_>) {
        if usize::from(replica.0) >= self.config.n {
            ctx.drop_message("start-view-change: no such replica");
            return;
        }
        if view == self.view && self.is_normal_primary() {
            ctx.count("start-view: sent again");
            self.send_start_view(Addr::Replica(replica), ctx);
            return;
        }
        if view < self.view || (view == self.view && self.status == Status::Normal) {
            ctx.drop_message("start-view-change: not a view changing here");
            return;
        }
        if view > self.view {
            self.start_view_change(view, ctx);
        }
        self.started[usize::from(replica.0)] = true;
        self.maybe_do_view_change(ctx);
    }

    /// With f others' `StartViewChange`s for this view, sends the new
    /// primary `DoViewChange`, once.
    fn maybe_do_view_change(&mut self, ctx: &mut Ctx<'_, '_>) {
        let others = self
            .started
            .iter()
            .enumerate()
            .filter(|&(i, &s)| s && i != usize::from(self.id.0))
            .count();
        if self.did || self.status != Status::ViewChange || others < self.config.f {
            return;
        }
        self.did = true;
        let mine = DoViewChange {
            last_normal: self.last_normal,
            commit: self.commit,
            top: self.log.top(),
        };
        let primary = self.config.primary(self.view);
        if primary == self.id {
            self.on_do_view_change(self.view, mine, self.id, ctx);
        } else {
            ctx.send(
                Addr::Replica(primary),
                self.peer(Peer::DoViewChange {
                    view: self.view,
                    last_normal: mine.last_normal,
                    commit: mine.commit,
                    top: mine.top,
                    replica: self.id,
                }),
            );
        }
    }

    fn on_do_view_change(
        &mut self,
        view: u64,
        msg: DoViewChange,
        replica: ReplicaId,
        ctx: &mut Ctx<'_, '_>,
    ) {
        if usize::from(replica.0) >= self.config.n {
            ctx.drop_message("do-view-change: no such replica");
            return;
        }
        if view == self.view && self.is_normal_primary() {
            if replica != self.id {
                ctx.count("start-view: sent again");
                self.send_start_view(Addr::Replica(replica), ctx);
            }
            return;
        }
        if self.config.primary(view) != self.id
            || view < self.view
            || (view == self.view && self.status == Status::Normal)
        {
            ctx.drop_message("do-view-change: not the primary of a view changing here");
            return;
        }
        if view > self.view {
            self.start_view_change(view, ctx);
        }
        if self.fetch.is_some() {
            ctx.drop_message("do-view-change: the picked log is being fetched");
            return;
        }
        self.done.insert(replica, msg);
        if self.done.len() <= self.config.f {
            return;
        }
        // f + 1: the log of the largest last normal view, the longest of
        // those (this replica's own if it is one of them: two logs normal
        // last in the same view and as long are the same log); the largest
        // commit number.
        let me = self.id;
        let commit = self.done.values().map(|d| d.commit).max().unwrap_or(0);
        let (&best_id, &best) = self
            .done
            .iter()
            .max_by_key(|&(&id, d)| {
                if planted::is(bugs::IGNORE_LAST_NORMAL) {
                    (0, d.top, id == me)
                } else {
                    (d.last_normal, d.top, id == me)
                }
            })
            .expect("f + 1 of them");
        self.done.clear();
        if best_id == me {
            self.become_primary(best.last_normal, commit, ctx);
            return;
        }
        // This replica's log, normal last in the same view, is a prefix of
        // the picked one: only the rest is fetched.
        let from = if self.last_normal == best.last_normal {
            self.log.top().min(best.top)
        } else {
            self.commit
        };
        ctx.count("view change: fetching the picked log");
        let purpose = Purpose::Primary {
            log_view: best.last_normal,
        };
        self.begin_fetch(purpose, view, best_id, best.top, commit, from, ctx);
    }

    /// The new primary, holding the log it picked (normal last in
    /// `log_view`), starts the view.
    fn become_primary(&mut self, log_view: u64, commit: u64, ctx: &mut Ctx<'_, '_>) {
        self.start = (log_view, self.log.top());
        self.start_view(commit, ctx);
        let (log_view, top) = self.start;
        ctx.send_to_replicas(self.peer(Peer::StartView {
            view: self.view,
            commit: self.commit,
            log_view,
            top,
        }));
    }

    /// Normal in this view with the log as it stands, and executes what is
    /// committed.
    fn start_view(&mut self, commit: u64, ctx: &mut Ctx<'_, '_>) {
        self.status = Status::Normal;
        self.last_normal = self.view;
        self.backoff = 0;
        self.did = false;
        self.held.clear();
        for entry in &self.log.entries {
            if entry.op > self.commit {
                for r in &entry.requests {
                    self.held.insert(r.client_id, r.request_num);
                }
            }
        }
        ctx.note(|| format!("view v{} starts, top {}", self.view, self.log.top()));
        if self.is_primary() {
            self.acked[usize::from(self.id.0)] = self.log.top();
            ctx.cancel_timer(ReplicaTimer::View);
            ctx.cancel_timer(ReplicaTimer::Commit);
            ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
        } else {
            self.arm_view_timer(ctx);
        }
        self.execute_up_to(commit, ctx);
        let waiting = std::mem::take(&mut self.waiting);
        self.waiting_bytes = 0;
        if self.is_primary() {
            self.advance_commit(ctx);
            // The requests clients retransmitted while the view changed.
            ctx.count_n(
                "request: taken up from the waiting list",
                waiting.len() as u64,
            );
            for request in waiting.into_values() {
                self.on_request(request, ctx);
            }
        } else {
            self.prepare_ok(ctx);
        }
    }

    /// A backup tells the primary the highest entry it holds.
    fn prepare_ok(&self, ctx: &mut Ctx<'_, '_>) {
        ctx.send(
            self.primary(),
            self.peer(Peer::PrepareOk {
                view: self.view,
                op: self.log.top(),
                replica: self.id,
            }),
        );
    }

    fn on_start_view(
        &mut self,
        view: u64,
        commit: u64,
        log_view: u64,
        top: u64,
        ctx: &mut Ctx<'_, '_>,
    ) {
        if view < self.view || (view == self.view && self.status == Status::Normal) {
            ctx.drop_message("start-view: not a view changing here");
            return;
        }
        if self.commit > top {
            // The view's log holds every committed entry: a broken
            // invariant, not to be taken.
            ctx.drop_message("start-view: its log ends below the commit number here");
            return;
        }
        if view > self.view {
            self.enter_view(view, ctx);
            self.status = Status::ViewChange;
            self.arm_view_timer(ctx);
            ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
        }
        if self.fetch.is_some() {
            self.ask_fetch(ctx);
            return;
        }
        if self.last_normal == log_view && self.log.top() >= top {
            // Its log is the view's, or the view's and more.
            let keep = usize::try_from(top - self.log.base).unwrap_or(usize::MAX);
            self.log.entries.truncate(keep);
            self.start_view(commit, ctx);
            return;
        }
        let from = if self.last_normal == log_view {
            self.log.top()
        } else {
            self.commit
        };
        ctx.count("view change: fetching the new view's log");
        let primary = self.config.primary(view);
        self.begin_fetch(Purpose::Backup, view, primary, top, commit, from, ctx);
    }

    // ---------------------------------------------------------------
    // State transfer (§5.1, §5.2).

    /// A normal backup asks the primary for the entries above its log.
    fn get_state(&mut self, ctx: &mut Ctx<'_, '_>) {
        let now = ctx.now();
        if self
            .asked
            .is_some_and(|at| now.since(at) < GET_STATE_INTERVAL)
        {
            return;
        }
        self.asked = Some(now);
        ctx.count("state: asked for");
        ctx.send(
            self.primary(),
            self.peer(Peer::GetState {
                view: self.view,
                op: self.log.top(),
                replica: self.id,
            }),
        );
    }

    /// Starts fetching `from`'s log of `view` above `base` (this replica
    /// holds the entries up to `base`, or their snapshot), to reach `top`.
    #[allow(clippy::too_many_arguments)]
    fn begin_fetch(
        &mut self,
        purpose: Purpose,
        view: u64,
        from: ReplicaId,
        top: u64,
        commit: u64,
        base: u64,
        ctx: &mut Ctx<'_, '_>,
    ) {
        self.incoming = None;
        self.fetch = Some(Fetch {
            purpose,
            view,
            from,
            top,
            commit,
            log: Log {
                base,
                entries: Vec::new(),
            },
            snapshot: None,
            asked: None,
            stalled: 0,
        });
        if base >= top {
            self.finish_fetch(ctx);
        } else {
            self.ask_fetch(ctx);
        }
    }

    /// Asks for the rest of the log being fetched, at most once per
    /// [`GET_STATE_INTERVAL`] unless an answer came since.
    fn ask_fetch(&mut self, ctx: &mut Ctx<'_, '_>) {
        let now = ctx.now();
        let Some(fetch) = self.fetch.as_mut() else {
            return;
        };
        if fetch
            .asked
            .is_some_and(|at| now.since(at) < GET_STATE_INTERVAL)
        {
            return;
        }
        fetch.asked = Some(now);
        let (from, view, op) = (fetch.from, fetch.view, fetch.log.top());
        ctx.count("state: asked for");
        let ask = self.peer(Peer::GetState {
            view,
            op,
            replica: self.id,
        });
        ctx.send(Addr::Replica(from), ask);
    }

    /// The fetched log is whole: it replaces this replica's, which keeps
    /// its entries up to where the fetched ones start (or the fetched
    /// snapshot replaces them, if it is ahead of what is executed here).
    fn finish_fetch(&mut self, ctx: &mut Ctx<'_, '_>) {
        let fetch = self.fetch.take().expect("a fetch to finish");
        self.incoming = None;
        match fetch.snapshot {
            Some(checkpoint) if checkpoint.op > self.commit => {
                self.install(checkpoint, ctx);
                self.log = fetch.log;
            }
            _ => {
                let fetched = fetch.log;
                let keep = fetched.base.max(self.log.base).min(self.log.top());
                self.log
                    .entries
                    .truncate(usize::try_from(keep - self.log.base).unwrap_or(usize::MAX));
                let skip = usize::try_from(keep.saturating_sub(fetched.base)).unwrap_or(usize::MAX);
                self.log
                    .entries
                    .extend(fetched.entries.into_iter().skip(skip));
            }
        }
        ctx.count("state: log fetched whole");
        match fetch.purpose {
            Purpose::Backup => self.start_view(fetch.commit, ctx),
            Purpose::Primary { log_view } => {
                // The picked log up to its top, not what the replica it
                // came from has appended since (nothing: it is changing
                // views too).
                let keep = fetch.top.max(self.commit).saturating_sub(self.log.base);
                self.log
                    .entries
                    .truncate(usize::try_from(keep).unwrap_or(usize::MAX));
                self.become_primary(log_view, fetch.commit, ctx);
            }
            Purpose::Recovery => {
                ctx.cancel_timer(ReplicaTimer::Recovery);
                ctx.count("recovery: done");
                ctx.note(|| format!("recovered in v{}", fetch.view));
                self.view = fetch.view;
                self.start_view(fetch.commit, ctx);
            }
        }
    }

    /// Replaces the application and client table by `checkpoint`'s, and
    /// the log by an empty one above it.
    fn install(&mut self, checkpoint: Checkpoint, ctx: &mut Ctx<'_, '_>) {
        let (app, table) = split_state(&checkpoint.state).expect("checked when it arrived");
        self.app.restore(app);
        self.table = table;
        self.commit = checkpoint.op;
        self.log = Log {
            base: checkpoint.op,
            entries: Vec::new(),
        };
        ctx.count("state: snapshot installed");
        self.checkpoint = Some(checkpoint);
    }

    fn on_get_state(&mut self, view: u64, op: u64, replica: ReplicaId, ctx: &mut Ctx<'_, '_>) {
        // In a view change the log does not move, and the new primary may
        // fetch it.
        if view != self.view || self.status == Status::Recovering {
            ctx.drop_message("get-state: not in its view");
            return;
        }
        let who = usize::from(replica.0);
        if who >= self.config.n {
            ctx.drop_message("get-state: no such replica");
            return;
        }
        let to = Addr::Replica(replica);
        let mut from = op;
        if op < self.log.base {
            // A log starts above zero only at a snapshot.
            let Some(checkpoint) = self.checkpoint.as_ref() else {
                ctx.drop_message("get-state: no snapshot to send");
                return;
            };
            from = checkpoint.op;
            let now = ctx.now();
            if self.snapshot_sent[who].is_some_and(|at| now.since(at) < SNAPSHOT_INTERVAL) {
                ctx.drop_message("get-state: snapshot sent a moment ago");
                return;
            }
            let count = checkpoint.state.chunks(CHUNK_BYTES).count().max(1);
            let Ok(count) = u32::try_from(count) else {
                ctx.drop_message("get-state: snapshot too large to send");
                return;
            };
            if count > CHUNKS_MAX {
                ctx.drop_message("get-state: snapshot too large to send");
                return;
            }
            ctx.count("state: snapshot sent");
            let mut pieces = checkpoint.state.chunks(CHUNK_BYTES).peekable();
            if pieces.peek().is_none() {
                ctx.send(to, self.chunk(checkpoint.op, 0, 1, &[]));
            }
            for (index, bytes) in pieces.enumerate() {
                ctx.send(to, self.chunk(checkpoint.op, index as u32, count, bytes));
            }
            self.snapshot_sent[who] = Some(now);
        }
        let mut bytes = 0;
        let mut entries = Vec::new();
        let start = from.max(self.log.base);
        for op in start.saturating_add(1)..=self.log.top() {
            let entry = self.entry(op).expect("within the log");
            bytes += entry_size(entry);
            if !entries.is_empty()
                && (bytes > STATE_BYTES_MAX || entries.len() >= STATE_ENTRIES_MAX)
            {
                break;
            }
            entries.push(entry.clone());
        }
        ctx.send(
            to,
            self.peer(Peer::NewState {
                view: self.view,
                commit: self.commit,
                log: Log {
                    base: start,
                    entries,
                },
            }),
        );
    }

    fn chunk(&self, op: u64, index: u32, count: u32, bytes: &[u8]) -> Message {
        self.peer(Peer::Chunk(Chunk {
            view: self.view,
            op,
            index,
            count,
            bytes: bytes.to_vec(),
        }))
    }

    fn on_new_state(
        &mut self,
        from: ReplicaId,
        view: u64,
        commit: u64,
        log: Log,
        ctx: &mut Ctx<'_, '_>,
    ) {
        if !consecutive(&log) {
            ctx.drop_message("new-state: entries out of order");
            return;
        }
        let log_max = self.config.log_max();
        if let Some(fetch) = self
            .fetch
            .as_mut()
            .filter(|f| f.view == view && f.from == from)
        {
            if log.base > fetch.log.top() {
                ctx.drop_message("new-state: a gap before it");
                return;
            }
            let skip = usize::try_from(fetch.log.top() - log.base).unwrap_or(usize::MAX);
            let room = log_max.saturating_sub(fetch.log.entries.len());
            let before = fetch.log.entries.len();
            fetch
                .log
                .entries
                .extend(log.entries.into_iter().skip(skip).take(room));
            let added = fetch.log.entries.len() - before;
            ctx.count_n("state: entries received", added as u64);
            fetch.commit = fetch.commit.max(commit);
            if added > 0 {
                fetch.asked = None;
                fetch.stalled = 0;
            }
            if fetch.log.top() >= fetch.top {
                self.finish_fetch(ctx);
            } else if room == 0 {
                ctx.drop_message("new-state: the log is full");
            } else {
                self.ask_fetch(ctx);
            }
            return;
        }
        if view != self.view
            || self.status != Status::Normal
            || self.is_primary()
            || from != self.config.primary(view)
        {
            ctx.drop_message("new-state: not asked for");
            return;
        }
        if log.base > self.log.top() {
            ctx.drop_message("new-state: a gap before it");
            return;
        }
        let skip = usize::try_from(self.log.top() - log.base).unwrap_or(usize::MAX);
        let room = log_max.saturating_sub(self.log.entries.len());
        let before = self.log.entries.len();
        self.log
            .entries
            .extend(log.entries.into_iter().skip(skip).take(room));
        let added = self.log.entries.len() - before;
        ctx.count_n("state: entries received", added as u64);
        self.arm_view_timer(ctx);
        self.prepare_ok(ctx);
        self.execute_up_to(commit, ctx);
        if commit > self.log.top() || added > 0 {
            self.asked = None;
            if commit > self.log.top() {
                self.get_state(ctx);
            }
        }
    }

    fn on_chunk(&mut self, from: ReplicaId, chunk: Chunk, ctx: &mut Ctx<'_, '_>) {
        let Chunk {
            view,
            op,
            index,
            count,
            bytes,
        } = chunk;
        if count == 0 || count > CHUNKS_MAX || index >= count || bytes.len() > CHUNK_BYTES {
            ctx.drop_message("chunk: malformed");
            return;
        }
        let for_fetch = self
            .fetch
            .as_ref()
            .is_some_and(|f| f.view == view && f.from == from && op > f.log.base);
        let in_view = self.status == Status::Normal
            && view == self.view
            && !self.is_primary()
            && from == self.config.primary(view)
            && op > self.commit;
        if !for_fetch && !in_view {
            ctx.drop_message("chunk: not asked for");
            return;
        }
        let fresh = self
            .incoming
            .as_ref()
            .is_none_or(|i| (i.from, i.op, i.chunks.len()) != (from, op, count as usize));
        if fresh {
            self.incoming = Some(Incoming {
                from,
                op,
                chunks: vec![None; count as usize],
                missing: count,
            });
        }
        let incoming = self.incoming.as_mut().expect("just made");
        let slot = &mut incoming.chunks[index as usize];
        if slot.is_some() {
            ctx.drop_message("chunk: had it");
            return;
        }
        *slot = Some(bytes);
        incoming.missing -= 1;
        if incoming.missing > 0 {
            return;
        }
        let incoming = self.incoming.take().expect("complete");
        let state: Vec<u8> = incoming.chunks.into_iter().flatten().flatten().collect();
        if split_state(&state).is_none() {
            ctx.drop_message("chunk: snapshot malformed");
            return;
        }
        let checkpoint = Checkpoint { op, state };
        ctx.count("state: snapshot received");
        if let Some(fetch) = self.fetch.as_mut().filter(|_| for_fetch) {
            // Entries up to the snapshot are of no more use.
            let drop = usize::try_from(op - fetch.log.base)
                .unwrap_or(usize::MAX)
                .min(fetch.log.entries.len());
            fetch.log.entries.drain(..drop);
            fetch.log.base = op.max(fetch.log.base);
            if fetch.log.top() < op {
                fetch.log = Log {
                    base: op,
                    entries: Vec::new(),
                };
            }
            fetch.snapshot = Some(checkpoint);
            fetch.asked = None;
            fetch.stalled = 0;
            if fetch.log.top() >= fetch.top {
                self.finish_fetch(ctx);
            } else {
                self.ask_fetch(ctx);
            }
            return;
        }
        // A backup of this view, behind the primary's snapshot: its log is
        // a prefix of the view's, and the snapshot covers it; entries it
        // holds above the snapshot stay.
        let above: Vec<Entry> = self
            .log
            .entries
            .iter()
            .filter(|e| e.op > op)
            .cloned()
            .collect();
        self.install(checkpoint, ctx);
        if above
            .first()
            .is_some_and(|e| Some(e.op) == op.checked_add(1))
        {
            self.log.entries = above;
        }
        self.asked = None;
        self.get_state(ctx);
    }
}

/// What a request costs in a batch, near enough.
fn request_size(request: &Request) -> usize {
    request.op.len() + 40
}

fn entry_size(entry: &Entry) -> usize {
    16 + entry.requests.iter().map(request_size).sum::<usize>()
}

/// Whether `log`'s entries are numbered from its base on, one by one.
fn consecutive(log: &Log) -> bool {
    log.entries
        .iter()
        .enumerate()
        .all(|(i, e)| Some(e.op) == log.base.checked_add(i as u64 + 1))
}

/// A snapshot's application state and client table; `None` if malformed.
fn split_state(state: &[u8]) -> Option<(&[u8], ClientTable<()>)> {
    let (len, rest) = state.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    let (app, mut table) = rest.split_at_checked(len)?;
    let table = ClientTable::decode(&mut table, CLIENT_TABLE_MAX, RESULT_BYTES_MAX)?;
    Some((app, table))
}

// ---------------------------------------------------------------
// Recovery (§4.3).

impl Replica {
    fn send_recovery(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.send_to_replicas(self.peer(Peer::Recovery {
            replica: self.id,
            nonce: self.nonce,
        }));
    }

    fn on_recovery(&mut self, replica: ReplicaId, nonce: u64, ctx: &mut Ctx<'_, '_>) {
        if self.status != Status::Normal {
            ctx.drop_message("recovery: not normal here");
            return;
        }
        let primary = self.is_primary().then(|| Primary {
            commit: self.commit,
            top: self.log.top(),
        });
        ctx.send(
            Addr::Replica(replica),
            self.peer(Peer::RecoveryResponse {
                view: self.view,
                nonce,
                primary,
                replica: self.id,
            }),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_recovery_response(
        &mut self,
        view: u64,
        nonce: u64,
        primary: Option<Primary>,
        replica: ReplicaId,
        mine: u64,
        ctx: &mut Ctx<'_, '_>,
    ) {
        if self.status != Status::Recovering || nonce != self.nonce || self.fetch.is_some() {
            ctx.drop_message("recovery-response: not for a recovery here");
            return;
        }
        if !self.counted {
            // First the count of this replica's recoveries, from f + 1.
            if usize::from(replica.0) >= self.config.n {
                ctx.drop_message("recovery-response: no such replica");
                return;
            }
            self.responses.insert(replica, (view, primary));
            self.known_recoveries = self.known_recoveries.max(mine);
            if self.responses.len() <= self.config.f {
                return;
            }
            self.responses.clear();
            self.counted = true;
            let me = usize::from(self.id.0);
            self.crashes[me] = self.known_recoveries.saturating_add(1);
            ctx.note(|| format!("recovery number {}", self.crashes[me]));
            self.send_recovery(ctx);
            return;
        }
        let me = usize::from(self.id.0);
        if mine > self.crashes[me] {
            // An earlier life got further: count past it and ask again.
            ctx.count("recovery: an earlier life counted past this one");
            self.crashes[me] = mine.saturating_add(1);
            self.responses.clear();
            self.send_recovery(ctx);
            return;
        }
        if mine != self.crashes[me] {
            ctx.drop_message("recovery-response: does not know of this recovery yet");
            return;
        }
        if usize::from(replica.0) >= self.config.n {
            ctx.drop_message("recovery-response: no such replica");
            return;
        }
        if primary.is_some() != (self.config.primary(view) == replica) {
            ctx.drop_message("recovery-response: state from a backup, or none from the primary");
            return;
        }
        self.responses.insert(replica, (view, primary));
        // f + 1 responses, among them the primary's of the latest view
        // they name.
        if self.responses.len() <= self.config.f {
            return;
        }
        let latest = self.responses.values().map(|(v, _)| *v).max().unwrap_or(0);
        let leader = self.config.primary(latest);
        let Some(&(at, Some(state))) = self.responses.get(&leader) else {
            return;
        };
        if at != latest {
            return;
        }
        self.responses.clear();
        ctx.count("recovery: fetching the primary's log");
        self.begin_fetch(
            Purpose::Recovery,
            latest,
            leader,
            state.top,
            state.commit,
            0,
            ctx,
        );
    }

    /// The recovery timer: ask again, or, if the fetch from the primary
    /// stalled, give it up and ask all again.
    fn on_recovery_timer(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.set_timer(ReplicaTimer::Recovery, RECOVERY_INTERVAL);
        match self.fetch.as_mut() {
            None => self.send_recovery(ctx),
            Some(fetch) if fetch.stalled >= RECOVERY_STALL_TICKS => {
                ctx.count("recovery: fetch stalled, asking all again");
                self.fetch = None;
                self.incoming = None;
                self.send_recovery(ctx);
            }
            Some(fetch) => {
                fetch.stalled += 1;
                fetch.asked = None;
                self.ask_fetch(ctx);
            }
        }
    }
}

impl State for Replica {
    type Message = Message;
    type Outbound = Message;
    type Timer = ReplicaTimer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Ctx<'_, '_>) {
        if self.status == Status::Recovering {
            self.nonce = ctx.rng().next_u64();
            ctx.count("recovery: started");
            self.send_recovery(ctx);
            ctx.set_timer(ReplicaTimer::Recovery, RECOVERY_INTERVAL);
            return;
        }
        if self.is_primary() {
            ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
        } else {
            self.arm_view_timer(ctx);
        }
    }

    fn on_message(&mut self, from: Addr, msg: Message, ctx: &mut Ctx<'_, '_>) {
        // The codec names a replica's message by its source address, so a
        // replica field that names another is a lie or a bug.
        let (sender, crashes, msg) = match (from, msg) {
            (Addr::Client(_), Message::Request(request)) => {
                if self.status == Status::Recovering {
                    ctx.drop_message("recovering: takes no part yet");
                } else {
                    self.on_request(request, ctx);
                }
                return;
            }
            (Addr::Replica(sender), Message::Peer { crashes, msg }) => (sender, crashes, msg),
            _ => {
                ctx.drop_message("replica: unexpected message or sender");
                return;
            }
        };
        if crashes.len() != self.config.n || usize::from(sender.0) >= self.config.n {
            ctx.drop_message("peer: a crash vector of another size, or no such replica");
            return;
        }
        if !matches!(msg, Peer::Recovery { .. }) && !self.admit(sender, &crashes, ctx) {
            return;
        }
        let claims = |replica: ReplicaId| sender == replica;
        if self.status == Status::Recovering {
            match msg {
                Peer::RecoveryResponse {
                    view,
                    nonce,
                    primary,
                    replica,
                } if claims(replica) => {
                    let mine = crashes[usize::from(self.id.0)];
                    self.on_recovery_response(view, nonce, primary, replica, mine, ctx)
                }
                Peer::NewState { view, commit, log } if self.fetch.is_some() => {
                    self.on_new_state(sender, view, commit, log, ctx)
                }
                Peer::Chunk(chunk) if self.fetch.is_some() => self.on_chunk(sender, chunk, ctx),
                _ => ctx.drop_message("recovering: takes no part yet"),
            }
            return;
        }
        let primary_of = |view: u64| sender == self.config.primary(view);
        match msg {
            Peer::Prepare {
                view,
                commit,
                entry,
            } if primary_of(view) => self.on_prepare(view, commit, entry, ctx),
            Peer::PrepareOk { view, op, replica } if claims(replica) => {
                self.on_prepare_ok(view, op, replica, ctx)
            }
            Peer::Commit { view, commit } if primary_of(view) => self.on_commit(view, commit, ctx),
            Peer::StartViewChange { view, replica } if claims(replica) => {
                self.on_start_view_change(view, replica, ctx)
            }
            Peer::DoViewChange {
                view,
                last_normal,
                commit,
                top,
                replica,
            } if claims(replica) => {
                let msg = DoViewChange {
                    last_normal,
                    commit,
                    top,
                };
                self.on_do_view_change(view, msg, replica, ctx)
            }
            Peer::StartView {
                view,
                commit,
                log_view,
                top,
            } if primary_of(view) => self.on_start_view(view, commit, log_view, top, ctx),
            Peer::GetState { view, op, replica } if claims(replica) => {
                self.on_get_state(view, op, replica, ctx)
            }
            Peer::NewState { view, commit, log } => {
                self.on_new_state(sender, view, commit, log, ctx)
            }
            Peer::Chunk(chunk) => self.on_chunk(sender, chunk, ctx),
            Peer::Recovery { replica, nonce } if claims(replica) => {
                // A recovery that counted itself says so in its vector:
                // merged now, so that its earlier life's words are dropped.
                let i = usize::from(replica.0);
                if crashes[i] > self.crashes[i] {
                    self.crashes[i] = crashes[i];
                    self.forget(replica, ctx);
                }
                self.on_recovery(replica, nonce, ctx)
            }
            _ => ctx.drop_message("replica: unexpected message or sender"),
        }
    }

    fn is_recovering(&self) -> bool {
        self.status == Status::Recovering
    }

    fn executed_slot(&self) -> Option<u64> {
        Some(self.commit)
    }

    fn leader(&self) -> Option<ReplicaId> {
        (self.status == Status::Normal).then(|| self.config.primary(self.view))
    }

    fn on_timer(&mut self, timer: ReplicaTimer, ctx: &mut Ctx<'_, '_>) {
        if self.status == Status::Recovering {
            if timer == ReplicaTimer::Recovery {
                self.on_recovery_timer(ctx);
            }
            return;
        }
        match timer {
            ReplicaTimer::Recovery => {}
            ReplicaTimer::View => {
                if self.status == Status::Normal && self.is_primary() {
                    return;
                }
                let Some(next) = self.view.checked_add(1) else {
                    return; // The last view there is: a peer's lie.
                };
                self.start_view_change(next, ctx);
            }
            ReplicaTimer::Commit if self.status == Status::ViewChange => {
                // Messages of a view change are lost like any: say them
                // again until the view starts or times out.
                ctx.count("view change: resent");
                ctx.send_to_replicas(self.peer(Peer::StartViewChange {
                    view: self.view,
                    replica: self.id,
                }));
                if self.did && self.fetch.is_none() {
                    self.did = false;
                    self.maybe_do_view_change(ctx);
                }
                self.ask_fetch(ctx);
                ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
            }
            ReplicaTimer::Commit => {
                if self.status != Status::Normal || !self.is_primary() {
                    return;
                }
                if self.log.top() > self.commit && self.commit == self.commit_at_tick {
                    // No progress for a tick: a prepare or its answers
                    // were lost.
                    for op in self.commit + 1..=self.log.top() {
                        let entry = self.entry(op).expect("held").clone();
                        ctx.count("prepare: resent");
                        ctx.send_to_replicas(self.peer(Peer::Prepare {
                            view: self.view,
                            commit: self.commit,
                            entry,
                        }));
                    }
                }
                self.commit_at_tick = self.commit;
                ctx.send_to_replicas(self.peer(Peer::Commit {
                    view: self.view,
                    commit: self.commit,
                }));
                ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
            }
        }
    }
}
