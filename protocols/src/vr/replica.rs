//! A VR replica: the primary of its view or a backup (see the module docs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use runtime::{Addr, ClientId, Context, ReplicaId, State, Time};
use wire::client::{Reply, Request};
use wire::vr::{Entry, Log, Message};

use super::{
    CLIENT_TABLE_MAX, COMMIT_INTERVAL, Codec, Config, GET_STATE_INTERVAL, QUEUE_MAX,
    RECOVERY_INTERVAL, RESULT_BYTES_MAX, STATE_ENTRIES_MAX, VIEW_TIMEOUT_MAX, bugs,
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
    /// replica (their view, and the primary's log and commit number).
    nonce: u64,
    responses: BTreeMap<ReplicaId, (u64, Option<(Log, u64)>)>,
}

/// What a `DoViewChange` says.
#[derive(Clone, Debug)]
struct DoViewChange {
    last_normal: u64,
    commit: u64,
    log: Log,
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
            acked: vec![0; config.n],
            started: vec![false; config.n],
            did: false,
            done: BTreeMap::new(),
            asked: None,
            commit_at_tick: 0,
            nonce: 0,
            responses: BTreeMap::new(),
        }
    }

    /// Replica `id`, restarted without its state: it runs the recovery
    /// protocol (§4.3) before it takes part again.
    pub fn recovering(id: ReplicaId, config: Config, app: Box<dyn App>) -> Replica {
        let mut replica = Replica::new(id, config, app);
        replica.status = Status::Recovering;
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

    fn is_primary(&self) -> bool {
        self.config.primary(self.view) == self.id
    }

    fn primary(&self) -> Addr {
        Addr::Replica(self.config.primary(self.view))
    }

    fn entry(&self, op: u64) -> Option<&Entry> {
        let i = op.checked_sub(self.log.base + 1)?;
        self.log.entries.get(usize::try_from(i).ok()?)
    }

    // ---------------------------------------------------------------
    // Normal case (§4.1).

    fn on_request(&mut self, request: Request, ctx: &mut Ctx<'_, '_>) {
        if self.status != Status::Normal || !self.is_primary() {
            ctx.drop_message("request: not the primary");
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
        if self.queue.len() >= QUEUE_MAX {
            ctx.drop_message("request: the queue is full");
            return;
        }
        self.held.insert(client, request.request_num);
        self.queue.push_back(request);
        self.prepare(ctx);
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
            let take = self.queue.len().min(self.config.batch_max);
            let requests: Vec<Request> = self.queue.drain(..take).collect();
            ctx.count(wire::control::BATCHES_COUNTER);
            ctx.count_n(
                wire::control::REQUESTS_BATCHED_COUNTER,
                requests.len() as u64,
            );
            let entry = Entry {
                op: self.log.top() + 1,
                view: self.view,
                requests,
            };
            self.acked[usize::from(self.id.0)] = entry.op;
            ctx.send_to_replicas(Message::Prepare {
                view: self.view,
                commit: self.commit,
                entry: entry.clone(),
            });
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
        let next = self.log.top() + 1;
        if entry.op == next {
            self.log.entries.push(entry);
        } else if entry.op > next {
            ctx.drop_message("prepare: an entry is missing before it");
            self.get_state(ctx);
        }
        // Below `next`: held already; acknowledge again, the primary may
        // have missed it.
        ctx.send(
            self.primary(),
            Message::PrepareOk {
                view: self.view,
                op: self.log.top(),
                replica: self.id,
            },
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
    /// view this replica is changing to, means a view change completed
    /// without it (its `StartView` lost): its log above the commit number
    /// may not be the new view's, so it keeps the committed prefix, which
    /// every log of the view starts with, and asks for the rest (§5.2).
    fn heard_primary(&mut self, view: u64, ctx: &mut Ctx<'_, '_>) -> bool {
        if view < self.view {
            ctx.drop_message("primary: an older view");
            return false;
        }
        if view > self.view || self.status != Status::Normal {
            if view > self.view {
                self.enter_view(view, ctx);
            }
            ctx.count("view: joined from the primary's messages");
            self.status = Status::Normal;
            self.last_normal = view;
            self.backoff = 0;
            self.log
                .entries
                .truncate((self.commit - self.log.base) as usize);
            self.arm_view_timer(ctx);
            self.asked = None;
            self.get_state(ctx);
            return false;
        }
        self.arm_view_timer(ctx);
        true
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
            let entry = self
                .entry(op)
                .expect("every entry above the commit is held");
            let requests = entry.requests.clone();
            self.commit = op;
            for request in requests {
                self.execute(op, request, ctx);
            }
        }
    }

    fn execute(&mut self, op: u64, request: Request, ctx: &mut Ctx<'_, '_>) {
        let Request {
            client_id,
            request_num,
            op: operation,
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
                let result = self.app.execute_at(at, &operation);
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
        ctx.send_to_replicas(Message::StartViewChange {
            view,
            replica: self.id,
        });
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
        ctx.cancel_timer(ReplicaTimer::Commit);
    }

    fn on_start_view_change(&mut self, view: u64, replica: ReplicaId, ctx: &mut Ctx<'_, '_>) {
        if view < self.view || (view == self.view && self.status == Status::Normal) {
            ctx.drop_message("start-view-change: not a view changing here");
            return;
        }
        if usize::from(replica.0) >= self.config.n {
            ctx.drop_message("start-view-change: no such replica");
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
            log: self.log.clone(),
        };
        let primary = self.config.primary(self.view);
        if primary == self.id {
            self.on_do_view_change(self.view, mine, self.id, ctx);
        } else {
            ctx.send(
                Addr::Replica(primary),
                Message::DoViewChange {
                    view: self.view,
                    last_normal: mine.last_normal,
                    commit: mine.commit,
                    log: mine.log,
                    replica: self.id,
                },
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
        if self.config.primary(view) != self.id
            || view < self.view
            || (view == self.view && self.status == Status::Normal)
        {
            ctx.drop_message("do-view-change: not the primary of a view changing here");
            return;
        }
        if usize::from(replica.0) >= self.config.n {
            ctx.drop_message("do-view-change: no such replica");
            return;
        }
        if view > self.view {
            self.start_view_change(view, ctx);
        }
        self.done.insert(replica, msg);
        if self.done.len() <= self.config.f {
            return;
        }
        // f + 1: the log of the largest last normal view, the longest of
        // those; the largest commit number.
        let commit = self.done.values().map(|d| d.commit).max().unwrap_or(0);
        let best = self
            .done
            .values()
            .max_by_key(|d| {
                if planted::is(bugs::IGNORE_LAST_NORMAL) {
                    (0, d.log.top())
                } else {
                    (d.last_normal, d.log.top())
                }
            })
            .expect("f + 1 of them")
            .log
            .clone();
        self.done.clear();
        self.start_view(best, commit, ctx);
        ctx.send_to_replicas(Message::StartView {
            view: self.view,
            commit: self.commit,
            log: self.log.clone(),
        });
    }

    /// Takes `log` as this view's, normal again, and executes what is
    /// committed.
    fn start_view(&mut self, log: Log, commit: u64, ctx: &mut Ctx<'_, '_>) {
        self.status = Status::Normal;
        self.last_normal = self.view;
        self.backoff = 0;
        self.log = log;
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
            ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
        } else {
            self.arm_view_timer(ctx);
        }
        self.execute_up_to(commit, ctx);
        if self.is_primary() {
            self.advance_commit(ctx);
        }
    }

    fn on_start_view(&mut self, view: u64, commit: u64, log: Log, ctx: &mut Ctx<'_, '_>) {
        if view < self.view || (view == self.view && self.status == Status::Normal) {
            ctx.drop_message("start-view: not a view changing here");
            return;
        }
        if log.base > self.commit {
            // Only once logs are truncated (§5.1) can this happen.
            ctx.drop_message("start-view: the log starts above the commit number");
            return;
        }
        if view > self.view {
            self.enter_view(view, ctx);
        }
        self.start_view(log, commit, ctx);
        if self.log.top() > self.commit {
            ctx.send(
                self.primary(),
                Message::PrepareOk {
                    view: self.view,
                    op: self.log.top(),
                    replica: self.id,
                },
            );
        }
    }

    // ---------------------------------------------------------------
    // State transfer (§5.2).

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
            Message::GetState {
                view: self.view,
                op: self.log.top(),
                replica: self.id,
            },
        );
    }

    fn on_get_state(&mut self, view: u64, op: u64, replica: ReplicaId, ctx: &mut Ctx<'_, '_>) {
        if view != self.view || self.status != Status::Normal {
            ctx.drop_message("get-state: not normal in its view");
            return;
        }
        if usize::from(replica.0) >= self.config.n {
            ctx.drop_message("get-state: no such replica");
            return;
        }
        let from = op.max(self.log.base);
        let entries: Vec<Entry> = (from + 1..=self.log.top())
            .take(STATE_ENTRIES_MAX)
            .filter_map(|op| self.entry(op).cloned())
            .collect();
        ctx.send(
            Addr::Replica(replica),
            Message::NewState {
                view: self.view,
                commit: self.commit,
                log: Log {
                    base: from,
                    entries,
                },
            },
        );
    }

    fn on_new_state(&mut self, view: u64, commit: u64, log: Log, ctx: &mut Ctx<'_, '_>) {
        if view != self.view || self.status != Status::Normal || self.is_primary() {
            ctx.drop_message("new-state: not a normal backup of its view");
            return;
        }
        if log.base > self.log.top() {
            ctx.drop_message("new-state: a gap before it");
            return;
        }
        let skip = (self.log.top() - log.base) as usize;
        let added = log.entries.len().saturating_sub(skip);
        self.log.entries.extend(log.entries.into_iter().skip(skip));
        ctx.count_n("state: entries received", added as u64);
        self.arm_view_timer(ctx);
        ctx.send(
            self.primary(),
            Message::PrepareOk {
                view: self.view,
                op: self.log.top(),
                replica: self.id,
            },
        );
        self.execute_up_to(commit, ctx);
        if commit > self.log.top() {
            self.asked = None;
            self.get_state(ctx);
        }
    }
}

// ---------------------------------------------------------------
// Recovery (§4.3).

impl Replica {
    fn send_recovery(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.send_to_replicas(Message::Recovery {
            replica: self.id,
            nonce: self.nonce,
        });
        ctx.set_timer(ReplicaTimer::Recovery, RECOVERY_INTERVAL);
    }

    fn on_recovery(&mut self, replica: ReplicaId, nonce: u64, ctx: &mut Ctx<'_, '_>) {
        if self.status != Status::Normal {
            ctx.drop_message("recovery: not normal here");
            return;
        }
        let state = self.is_primary().then(|| (self.log.clone(), self.commit));
        ctx.send(
            Addr::Replica(replica),
            Message::RecoveryResponse {
                view: self.view,
                nonce,
                state,
                replica: self.id,
            },
        );
    }

    fn on_recovery_response(
        &mut self,
        view: u64,
        nonce: u64,
        state: Option<(Log, u64)>,
        replica: ReplicaId,
        ctx: &mut Ctx<'_, '_>,
    ) {
        if self.status != Status::Recovering || nonce != self.nonce {
            ctx.drop_message("recovery-response: not for a recovery here");
            return;
        }
        if usize::from(replica.0) >= self.config.n {
            ctx.drop_message("recovery-response: no such replica");
            return;
        }
        if state.is_some() != (self.config.primary(view) == replica) {
            ctx.drop_message("recovery-response: state from a backup, or none from the primary");
            return;
        }
        self.responses.insert(replica, (view, state));
        // f + 1 responses, among them the primary's of the latest view
        // they name.
        if self.responses.len() <= self.config.f {
            return;
        }
        let latest = self.responses.values().map(|(v, _)| *v).max().unwrap_or(0);
        let primary = self.config.primary(latest);
        let Some((_, Some((log, commit)))) = self.responses.get(&primary).cloned() else {
            return;
        };
        if self.responses[&primary].0 != latest {
            return;
        }
        self.responses.clear();
        ctx.cancel_timer(ReplicaTimer::Recovery);
        ctx.count("recovery: done");
        self.view = latest;
        self.start_view(log, commit, ctx);
        if self.log.top() > self.commit {
            ctx.send(
                self.primary(),
                Message::PrepareOk {
                    view: self.view,
                    op: self.log.top(),
                    replica: self.id,
                },
            );
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
        let sender = match from {
            Addr::Replica(id) => Some(id),
            Addr::Client(_) => None,
        };
        let claims = |replica: ReplicaId| sender == Some(replica);
        if self.status == Status::Recovering {
            match msg {
                Message::RecoveryResponse {
                    view,
                    nonce,
                    state,
                    replica,
                } if claims(replica) => self.on_recovery_response(view, nonce, state, replica, ctx),
                _ => ctx.drop_message("recovering: takes no part yet"),
            }
            return;
        }
        let primary_of = |view: u64| sender == Some(self.config.primary(view));
        match msg {
            Message::Request(request) if sender.is_none() => self.on_request(request, ctx),
            Message::Prepare {
                view,
                commit,
                entry,
            } if primary_of(view) => self.on_prepare(view, commit, entry, ctx),
            Message::PrepareOk { view, op, replica } if claims(replica) => {
                self.on_prepare_ok(view, op, replica, ctx)
            }
            Message::Commit { view, commit } if primary_of(view) => {
                self.on_commit(view, commit, ctx)
            }
            Message::StartViewChange { view, replica } if claims(replica) => {
                self.on_start_view_change(view, replica, ctx)
            }
            Message::DoViewChange {
                view,
                last_normal,
                commit,
                log,
                replica,
            } if claims(replica) => {
                let msg = DoViewChange {
                    last_normal,
                    commit,
                    log,
                };
                self.on_do_view_change(view, msg, replica, ctx)
            }
            Message::StartView { view, commit, log } if primary_of(view) => {
                self.on_start_view(view, commit, log, ctx)
            }
            Message::GetState { view, op, replica } if claims(replica) => {
                self.on_get_state(view, op, replica, ctx)
            }
            Message::NewState { view, commit, log } if primary_of(view) => {
                self.on_new_state(view, commit, log, ctx)
            }
            Message::Recovery { replica, nonce } if claims(replica) => {
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
                self.send_recovery(ctx);
            }
            return;
        }
        match timer {
            ReplicaTimer::Recovery => {}
            ReplicaTimer::View => {
                if self.status == Status::Normal && self.is_primary() {
                    return;
                }
                self.start_view_change(self.view + 1, ctx);
            }
            ReplicaTimer::Commit if self.status == Status::ViewChange => {
                // Messages of a view change are lost like any: say them
                // again until the view starts or times out.
                ctx.count("view change: resent");
                ctx.send_to_replicas(Message::StartViewChange {
                    view: self.view,
                    replica: self.id,
                });
                if self.did {
                    self.did = false;
                    self.maybe_do_view_change(ctx);
                }
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
                        ctx.send_to_replicas(Message::Prepare {
                            view: self.view,
                            commit: self.commit,
                            entry,
                        });
                    }
                }
                self.commit_at_tick = self.commit;
                ctx.send_to_replicas(Message::Commit {
                    view: self.view,
                    commit: self.commit,
                });
                ctx.set_timer(ReplicaTimer::Commit, COMMIT_INTERVAL);
            }
        }
    }
}
