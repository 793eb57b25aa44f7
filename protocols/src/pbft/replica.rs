//! The PBFT replica. See the module overview in `pbft/mod.rs` for the
//! algorithm; handlers cite the OSDI'99 sections they implement.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use runtime::{Addr, ClientId, Context, ReplicaId, State};
use wire::client::Request;
use wire::control::{BATCHES_COUNTER, REQUESTS_BATCHED_COUNTER};
use wire::pbft::{
    AuthRequest, Batch, Checkpoint, CheckpointCert, Commit, FetchBatch, FetchState, Message,
    NewView, PrePrepare, Prepare, PreparedCert, Reply, Seq, StableCheckpoint, StateChunk, Status,
    View, ViewChange,
};
use wire::{Digest, Signature, Signed};

use super::codec::{Codec, Config, Outbound, batch_digest, compute_new_view};
use super::{
    BATCH_BYTES_MAX, BATCH_SIZE_MAX, CHECKPOINT_INTERVAL, CHECKPOINT_VOTES_MAX, LOG_MAX,
    PENDING_MAX, REQUEST_OP_MAX, STATE_CHUNK_MAX, STATE_SIZE_MAX, STATUS_INTERVAL, TRANSFER_RETRY,
    VIEW_CHANGE_TIMEOUT, VIEW_CHANGE_TIMEOUT_MAX, WAITING_MAX, WINDOW_MAX, request_overhead,
};
use crate::app::App;

type Ctx<'a, 'b> = Context<'a, Outbound, ReplicaTimer>;

/// One PBFT replica.
pub struct Replica {
    id: ReplicaId,
    config: Arc<Config>,
    /// For the messages this replica keeps signed (checkpoint votes,
    /// view-changes, a new view's pre-prepares).
    codec: Arc<Codec>,
    app: Box<dyn App>,

    view: View,
    /// In a view change to `view`: sent a view-change, no new-view yet.
    changing: bool,
    /// The timer for the new view runs (2f+1 replicas want it).
    view_change_timer_armed: bool,
    /// Doubles at every view change, back to [`VIEW_CHANGE_TIMEOUT`] when a
    /// request executes (§4.5.2 of TOCS: exponential back-off).
    view_change_timeout: Duration,

    /// Sequence numbers in (stable.seq, stable.seq + LOG_MAX].
    log: BTreeMap<Seq, Slot>,
    /// Primary: the sequence number of the next batch.
    seq_next: Seq,
    /// Last sequence number executed.
    executed: Seq,
    /// Primary: requests not yet in a batch, at most [`PENDING_MAX`].
    pending: VecDeque<AuthRequest>,
    /// Primary: per client, the highest request number queued or proposed
    /// and not yet executed.
    proposed: HashMap<ClientId, u64>,
    /// Backup: requests received and not yet executed, per client (at most
    /// [`WAITING_MAX`]); the view-change timer runs while there are any.
    waiting: HashMap<ClientId, u64>,
    /// Per client: latest request number executed and its result. Part of
    /// the checkpointed state.
    client_table: BTreeMap<ClientId, ClientEntry>,

    /// The stable checkpoint and its proof: the low watermark.
    stable: CheckpointCert,
    /// The state at the stable checkpoint, to serve state transfers; `None`
    /// while this replica is fetching it.
    stable_state: Option<Vec<u8>>,
    /// Own checkpoints above the stable one: digest and state.
    own_checkpoints: BTreeMap<Seq, (Digest, Vec<u8>)>,
    /// Checkpoint votes above the stable checkpoint, for at most
    /// [`CHECKPOINT_VOTES_MAX`] sequence numbers.
    checkpoint_votes: BTreeMap<Seq, BTreeMap<ReplicaId, (Digest, Signature)>>,

    /// The latest view-change message from each replica (own included).
    view_changes: BTreeMap<ReplicaId, Signed<ViewChange>>,
    /// The new-view message that started the current view, relayed to
    /// replicas that missed it.
    new_view: Option<NewView>,

    transfer: Option<Transfer>,

    /// `executed` at the previous status tick: no change means stuck.
    executed_at_status: Seq,
    /// Saw a message from beyond its watermarks or view since the last tick.
    behind: bool,
    /// The sequence number each peer last said (in a status) it had
    /// executed: n entries at most.
    peer_executed: BTreeMap<ReplicaId, Seq>,
}

/// A sequence number's entry in the log.
#[derive(Debug, Default)]
struct Slot {
    /// The pre-prepare accepted in the current view: view, digest, and the
    /// primary's signature (`None` when this replica is that primary).
    pre_prepare: Option<(View, Digest, Option<Signature>)>,
    /// The batch, once known, with its digest (it may be from an earlier
    /// view's pre-prepare, and then may not match).
    batch: Option<(Digest, Vec<AuthRequest>)>,
    /// At most one prepare per replica (the latest view's).
    prepares: BTreeMap<ReplicaId, (View, Digest, Signature)>,
    /// At most one commit per replica.
    commits: BTreeMap<ReplicaId, (View, Digest)>,
    /// Sent our prepare / commit for the current pre-prepare.
    sent_prepare: bool,
    sent_commit: bool,
    committed: bool,
    /// The prepared certificate of the latest view in which this replica
    /// prepared here: what its view-change messages carry (§4.4).
    prepared: Option<PreparedCert>,
}

#[derive(Clone, Debug)]
struct ClientEntry {
    request_num: u64,
    result: Vec<u8>,
}

/// A state transfer in progress: fetching the state of checkpoint `seq`.
#[derive(Debug)]
struct Transfer {
    seq: Seq,
    digest: Digest,
    data: Vec<u8>,
    /// The replica asked; rotated on timeouts and bad states.
    source: ReplicaId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaTimer {
    /// A request waited too long, or a new view took too long: next view.
    ViewChange,
    /// Check for lack of progress; ask peers for help.
    Status,
    /// A state chunk did not come: ask again, someone else.
    Transfer,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("view", &self.view)
            .field("changing", &self.changing)
            .field("executed", &self.executed)
            .field("stable", &self.stable.seq)
            .field("log", &self.log.len())
            .finish_non_exhaustive()
    }
}

impl Replica {
    pub fn new(id: ReplicaId, codec: Arc<Codec>, app: Box<dyn App>) -> Replica {
        let config = Arc::clone(codec.config());
        assert!(usize::from(id.0) < config.n);
        Replica {
            id,
            config,
            codec,
            app,
            view: 0,
            changing: false,
            view_change_timer_armed: false,
            view_change_timeout: VIEW_CHANGE_TIMEOUT,
            log: BTreeMap::new(),
            seq_next: 1,
            executed: 0,
            pending: VecDeque::new(),
            proposed: HashMap::new(),
            waiting: HashMap::new(),
            client_table: BTreeMap::new(),
            stable: CheckpointCert {
                seq: 0,
                digest: Digest::default(),
                signatures: Vec::new(),
            },
            stable_state: None,
            own_checkpoints: BTreeMap::new(),
            checkpoint_votes: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            new_view: None,
            transfer: None,
            executed_at_status: 0,
            // A fresh replica may have restarted behind the others: ask once.
            behind: true,
            peer_executed: BTreeMap::new(),
        }
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn executed(&self) -> Seq {
        self.executed
    }

    pub fn stable_seq(&self) -> Seq {
        self.stable.seq
    }

    /// Entries in the log, checkpoint vote sets, own checkpoints: what grows
    /// with the run unless garbage collection works.
    pub fn log_len(&self) -> usize {
        self.log.len() + self.checkpoint_votes.len() + self.own_checkpoints.len()
    }

    fn is_primary(&self) -> bool {
        self.config.primary(self.view) == self.id
    }

    fn in_watermarks(&self, seq: Seq) -> bool {
        seq > self.stable.seq && seq <= self.stable.seq + LOG_MAX
    }

    // Normal case (§4.2).

    /// §4.1/§4.2: a request from a client, or relayed by a backup. A backup
    /// relays what came from a client (`relay`), never what a replica
    /// relayed.
    fn on_request(&mut self, auth_request: AuthRequest, relay: bool, ctx: &mut Ctx<'_, '_>) {
        let request = &auth_request.request;
        if request.op.len() > REQUEST_OP_MAX {
            ctx.drop_message("request: operation too large");
            return;
        }
        if let Some(entry) = self.client_table.get(&request.client_id) {
            if request.request_num < entry.request_num {
                ctx.drop_message("request: older than the latest");
                return;
            }
            if request.request_num == entry.request_num {
                ctx.count("request: resent reply");
                let reply = self.reply(request.client_id, entry.request_num, entry.result.clone());
                ctx.send(Addr::Client(request.client_id), reply);
                return;
            }
        }
        if self.changing {
            ctx.drop_message("request: view change in progress");
            return;
        }
        if self.is_primary() {
            if self
                .proposed
                .get(&request.client_id)
                .is_some_and(|&num| num >= request.request_num)
            {
                ctx.drop_message("request: already proposed");
                return;
            }
            if self.pending.len() >= PENDING_MAX {
                ctx.drop_message("request: pending queue full");
                return;
            }
            self.proposed.insert(request.client_id, request.request_num);
            self.pending.push_back(auth_request);
            self.try_propose(ctx);
        } else {
            // A backup relays the request to the primary and times it
            // (§4.4). Backups see a request only when its client timed out
            // and multicast it; the authenticator lets the primary check that
            // the client sent it, so a faulty backup cannot alter it.
            let known = self.waiting.contains_key(&request.client_id);
            if !known && self.waiting.len() >= WAITING_MAX {
                ctx.drop_message("request: waiting table full");
                return;
            }
            let num = self.waiting.entry(request.client_id).or_insert(0);
            *num = (*num).max(request.request_num);
            if !ctx.timer_is_set(ReplicaTimer::ViewChange) {
                ctx.set_timer(ReplicaTimer::ViewChange, self.view_change_timeout);
            }
            if relay {
                ctx.count("request: relayed to the primary");
                let primary = Addr::Replica(self.config.primary(self.view));
                let relayed = Message::Relayed(self.id, auth_request);
                ctx.send(primary, Outbound::Message(relayed));
            }
        }
    }

    /// The primary proposes batches while it has requests, the window has
    /// room and the next sequence number is below the high watermark.
    ///
    /// Batching adapts to the load: with nothing in flight, whatever is
    /// queued goes out at once (one request at low load, for the lowest
    /// latency); with batches in flight, the primary pipelines another one
    /// only when a full batch is queued, and otherwise lets requests gather
    /// until the oldest batch executes. Small batches each cost a round of
    /// signatures, so proposing every request as soon as the window has room
    /// would spend the CPU on crypto instead of requests at moderate load.
    fn try_propose(&mut self, ctx: &mut Ctx<'_, '_>) {
        while self.is_primary()
            && !self.changing
            && self.transfer.is_none()
            && !self.pending.is_empty()
            && self.seq_next <= self.stable.seq + LOG_MAX
            && self.seq_next <= self.executed + WINDOW_MAX
            && (self.seq_next <= self.executed + 1 || self.pending.len() >= BATCH_SIZE_MAX)
        {
            let mut batch = Vec::new();
            let mut bytes = 0;
            let overhead = request_overhead(self.config.n);
            while let Some(request) = self.pending.front() {
                let size = request.request.op.len() + overhead;
                if batch.len() == BATCH_SIZE_MAX
                    || (!batch.is_empty() && bytes + size > BATCH_BYTES_MAX)
                {
                    break;
                }
                let request = self.pending.pop_front().expect("front exists");
                let done = self
                    .client_table
                    .get(&request.request.client_id)
                    .is_some_and(|e| e.request_num >= request.request.request_num);
                if !done {
                    bytes += size;
                    batch.push(request);
                }
            }
            if batch.is_empty() {
                continue;
            }
            let Some(digest) = batch_digest(&batch) else {
                ctx.drop_message("primary: batch does not encode");
                continue;
            };
            let seq = self.seq_next;
            self.seq_next += 1;
            ctx.count(BATCHES_COUNTER);
            ctx.count_n(REQUESTS_BATCHED_COUNTER, batch.len() as u64);
            let view = self.view;
            let slot = self.log.entry(seq).or_default();
            slot.enter(view, digest, None);
            slot.batch = Some((digest, batch.clone()));
            let pp = PrePrepare { view, seq, digest };
            ctx.send_to_replicas(Outbound::PrePrepare(pp, batch));
            self.advance(seq, ctx);
        }
    }

    /// §4.2: a backup accepts a pre-prepare if it is in its view, within the
    /// watermarks, and it has accepted no other digest for this view and
    /// sequence number.
    fn on_pre_prepare(
        &mut self,
        pp: Signed<PrePrepare>,
        batch: Vec<AuthRequest>,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let PrePrepare { view, seq, digest } = pp.payload;
        if !self.check_view(view, "pre-prepare", ctx) || !self.check_seq(seq, "pre-prepare", ctx) {
            return;
        }
        if self.is_primary() {
            ctx.drop_message("pre-prepare: sent to the primary");
            return;
        }
        if batch.len() > BATCH_SIZE_MAX {
            ctx.drop_message("pre-prepare: batch too large");
            return;
        }
        let slot = self.log.entry(seq).or_default();
        if let Some((_, accepted, _)) = slot.pre_prepare {
            if accepted != digest {
                ctx.drop_message("pre-prepare: another digest accepted (equivocation)");
                return;
            }
            ctx.drop_message("pre-prepare: duplicate");
            if slot.batch.as_ref().is_none_or(|(d, _)| *d != digest) {
                slot.batch = Some((digest, batch));
                self.execute_committed(ctx);
            }
            return;
        }
        slot.enter(view, digest, Some(pp.signature));
        slot.batch = Some((digest, batch));
        self.advance(seq, ctx);
    }

    /// §4.2: prepares from backups, possibly before their pre-prepare.
    fn on_prepare(&mut self, p: Signed<Prepare>, ctx: &mut Ctx<'_, '_>) {
        let Prepare {
            view,
            seq,
            digest,
            replica,
        } = p.payload;
        if !self.check_view(view, "prepare", ctx) || !self.check_seq(seq, "prepare", ctx) {
            return;
        }
        if replica == self.config.primary(view) {
            ctx.drop_message("prepare: from the primary");
            return;
        }
        let slot = self.log.entry(seq).or_default();
        match slot.prepares.get(&replica) {
            Some((v, d, _)) if *v == view && *d == digest => {
                ctx.drop_message("prepare: duplicate");
                return;
            }
            Some((v, _, _)) if *v == view => {
                ctx.drop_message("prepare: conflicting");
                return;
            }
            _ => {}
        }
        slot.prepares.insert(replica, (view, digest, p.signature));
        self.advance(seq, ctx);
    }

    /// §4.2: commits, possibly before this replica prepared.
    fn on_commit(&mut self, c: Signed<Commit>, ctx: &mut Ctx<'_, '_>) {
        let Commit {
            view,
            seq,
            digest,
            replica,
        } = c.payload;
        if !self.check_view(view, "commit", ctx) || !self.check_seq(seq, "commit", ctx) {
            return;
        }
        let slot = self.log.entry(seq).or_default();
        match slot.commits.get(&replica) {
            Some((v, d)) if *v == view && *d == digest => {
                ctx.drop_message("commit: duplicate");
                return;
            }
            Some((v, _)) if *v == view => {
                ctx.drop_message("commit: conflicting");
                return;
            }
            _ => {}
        }
        slot.commits.insert(replica, (view, digest));
        self.advance(seq, ctx);
    }

    /// Moves `seq` through prepare and commit as far as its messages allow
    /// (§4.2): prepare once a pre-prepare is accepted; prepared with 2f
    /// matching prepares from backups; commit; committed-local with 2f+1
    /// matching commits; then execute in order.
    fn advance(&mut self, seq: Seq, ctx: &mut Ctx<'_, '_>) {
        if self.changing {
            return;
        }
        let id = self.id;
        let f = self.config.f;
        let primary = self.config.primary(self.view);
        let Some(slot) = self.log.get_mut(&seq) else {
            return;
        };
        let Some((view, digest, pp_signature)) = slot.pre_prepare else {
            return;
        };
        assert_eq!(view, self.view, "slot state from another view");
        if id != primary && !slot.sent_prepare {
            slot.sent_prepare = true;
            ctx.send_to_replicas(Outbound::Prepare(Prepare {
                view,
                seq,
                digest,
                replica: id,
            }));
        }
        let prepared_here = slot
            .prepared
            .as_ref()
            .is_some_and(|c| c.view == view && c.digest == digest);
        if !prepared_here {
            let prepares: Vec<(ReplicaId, Signature)> = slot
                .prepares
                .iter()
                .filter(|(r, (v, d, _))| **r != primary && *v == view && *d == digest)
                .map(|(r, (_, _, s))| (*r, *s))
                .collect();
            let own = usize::from(id != primary && slot.sent_prepare);
            if prepares.len() + own < 2 * f {
                return;
            }
            slot.prepared = Some(PreparedCert {
                view,
                seq,
                digest,
                pre_prepare: pp_signature,
                prepares,
            });
            self.codec.settle_prepared(view, seq);
        }
        if !slot.sent_commit {
            slot.sent_commit = true;
            ctx.send_to_replicas(Outbound::Commit(Commit {
                view,
                seq,
                digest,
                replica: id,
            }));
        }
        if !slot.committed {
            let commits = slot
                .commits
                .iter()
                .filter(|(r, (v, d))| **r != id && *v == view && *d == digest)
                .count();
            if commits + 1 < self.config.quorum() {
                return;
            }
            slot.committed = true;
            self.codec.settle_committed(view, seq);
            self.execute_committed(ctx);
        }
    }

    /// Executes committed batches in sequence order (§4.2), replies to the
    /// clients, and checkpoints every [`CHECKPOINT_INTERVAL`] (§4.3).
    fn execute_committed(&mut self, ctx: &mut Ctx<'_, '_>) {
        let before = self.executed;
        while self.transfer.is_none() {
            let seq = self.executed + 1;
            let Some(slot) = self.log.get(&seq) else {
                break;
            };
            let Some((_, digest, _)) = slot.pre_prepare else {
                break;
            };
            if !slot.committed {
                break;
            }
            let Some((batch_digest, batch)) = &slot.batch else {
                break; // Fetched on the next status tick.
            };
            if *batch_digest != digest {
                break;
            }
            let requests: Vec<Request> = batch.iter().map(|r| r.request.clone()).collect();
            for request in requests {
                self.execute(request, ctx);
            }
            self.executed = seq;
            if seq.is_multiple_of(CHECKPOINT_INTERVAL) {
                self.take_checkpoint(seq, ctx);
            }
        }
        if self.executed > before {
            // Progress resets the view-change timeout (TOCS §4.5.2), unless
            // this replica is only catching up with a group that executed
            // beyond it: then the timeout keeps its backoff, so that a
            // replica behind does not leave view after view alone (taking
            // itself out of the quorums the others need) before it catches
            // up.
            if !self.lagging() {
                self.view_change_timeout = VIEW_CHANGE_TIMEOUT;
            }
            if !self.changing {
                if self.waiting.is_empty() {
                    ctx.cancel_timer(ReplicaTimer::ViewChange);
                } else {
                    ctx.set_timer(ReplicaTimer::ViewChange, self.view_change_timeout);
                }
            }
            self.try_propose(ctx);
        }
    }

    fn execute(&mut self, request: Request, ctx: &mut Ctx<'_, '_>) {
        let client = request.client_id;
        let num = request.request_num;
        if self
            .client_table
            .get(&client)
            .is_some_and(|e| e.request_num >= num)
        {
            ctx.count("execute: duplicate request skipped");
            return;
        }
        let result = self.app.execute(&request.op);
        let reply = self.reply(client, num, result.clone());
        ctx.send(Addr::Client(client), reply);
        self.client_table.insert(
            client,
            ClientEntry {
                request_num: num,
                result,
            },
        );
        if self.waiting.get(&client).is_some_and(|&w| w <= num) {
            self.waiting.remove(&client);
        }
        if self.proposed.get(&client).is_some_and(|&p| p <= num) {
            self.proposed.remove(&client);
        }
    }

    fn reply(&self, client_id: ClientId, request_num: u64, result: Vec<u8>) -> Outbound {
        Outbound::Reply(Reply {
            view: self.view,
            replica: self.id,
            client_id,
            request_num,
            result,
        })
    }

    // Checkpoints and garbage collection (§4.3).

    fn take_checkpoint(&mut self, seq: Seq, ctx: &mut Ctx<'_, '_>) {
        let state = self.encode_state();
        let digest = Digest::of(&state);
        self.own_checkpoints.insert(seq, (digest, state));
        let vote = self.codec.sign(Checkpoint {
            seq,
            digest,
            replica: self.id,
        });
        ctx.send_to_replicas(Outbound::Message(Message::Checkpoint(vote.clone())));
        self.on_checkpoint(vote, ctx);
    }

    /// §4.3: a checkpoint is stable with 2f+1 matching votes.
    fn on_checkpoint(&mut self, vote: Signed<Checkpoint>, ctx: &mut Ctx<'_, '_>) {
        let Checkpoint {
            seq,
            digest,
            replica,
        } = vote.payload;
        if seq <= self.stable.seq {
            ctx.drop_message("checkpoint: at or below the stable one");
            return;
        }
        if seq > self.stable.seq + LOG_MAX {
            self.behind = true;
        }
        let votes = self.checkpoint_votes.entry(seq).or_default();
        votes.insert(replica, (digest, vote.signature));
        let signatures: Vec<(ReplicaId, Signature)> = votes
            .iter()
            .filter(|(_, (d, _))| *d == digest)
            .map(|(r, (_, s))| (*r, *s))
            .collect();
        if signatures.len() >= self.config.quorum() {
            let cert = CheckpointCert {
                seq,
                digest,
                signatures,
            };
            self.adopt_stable(cert, ctx);
        }
        while self.checkpoint_votes.len() > CHECKPOINT_VOTES_MAX {
            self.checkpoint_votes.pop_last();
            ctx.count("checkpoint: votes evicted");
        }
    }

    /// A proof of a stable checkpoint relayed to this lagging replica.
    fn on_stable_checkpoint(&mut self, msg: StableCheckpoint, ctx: &mut Ctx<'_, '_>) {
        if msg.cert.seq <= self.stable.seq {
            ctx.drop_message("stable-checkpoint: not newer");
            return;
        }
        self.adopt_stable(msg.cert, ctx);
    }

    /// Moves the low watermark to a proven checkpoint and discards what lies
    /// at or below it (§4.3). If this replica has not executed that far, it
    /// fetches the state (state transfer).
    fn adopt_stable(&mut self, cert: CheckpointCert, ctx: &mut Ctx<'_, '_>) {
        if cert.seq <= self.stable.seq {
            return;
        }
        let seq = cert.seq;
        let own = self.own_checkpoints.remove(&seq);
        if let Some((digest, _)) = &own {
            assert_eq!(
                *digest, cert.digest,
                "replica {} diverged from a stable checkpoint at {seq}",
                self.id.0
            );
        }
        self.stable_state = own.map(|(_, state)| state);
        self.stable = cert;
        self.own_checkpoints.retain(|&s, _| s > seq);
        self.checkpoint_votes.retain(|&s, _| s > seq);
        self.log.retain(|&s, _| s > seq);
        self.seq_next = self.seq_next.max(seq + 1);
        ctx.count("checkpoint: stable");
        if self.executed < seq {
            self.start_transfer(ctx);
        }
        self.try_propose(ctx);
    }

    // State transfer (TOCS §5.3.2).

    fn start_transfer(&mut self, ctx: &mut Ctx<'_, '_>) {
        if self
            .transfer
            .as_ref()
            .is_some_and(|t| t.seq >= self.stable.seq)
        {
            return;
        }
        ctx.count("state transfer: started");
        let source = self.next_replica(self.id);
        self.transfer = Some(Transfer {
            seq: self.stable.seq,
            digest: self.stable.digest,
            data: Vec::new(),
            source,
        });
        self.request_chunk(ctx);
    }

    fn next_replica(&self, after: ReplicaId) -> ReplicaId {
        let n = self.config.n as u8;
        let mut next = (after.0 + 1) % n;
        if next == self.id.0 {
            next = (next + 1) % n;
        }
        ReplicaId(next)
    }

    fn request_chunk(&mut self, ctx: &mut Ctx<'_, '_>) {
        let Some(t) = &self.transfer else { return };
        let fetch = FetchState {
            replica: self.id,
            seq: t.seq,
            offset: t.data.len() as u64,
        };
        ctx.send(Addr::Replica(t.source), Outbound::FetchState(fetch));
        ctx.set_timer(ReplicaTimer::Transfer, TRANSFER_RETRY);
    }

    fn on_fetch_state(&mut self, fetch: FetchState, ctx: &mut Ctx<'_, '_>) {
        let state = if fetch.seq == self.stable.seq {
            self.stable_state.as_ref()
        } else {
            self.own_checkpoints.get(&fetch.seq).map(|(_, s)| s)
        };
        let to = Addr::Replica(fetch.replica);
        let Some(state) = state else {
            if fetch.seq < self.stable.seq {
                let msg = StableCheckpoint {
                    replica: self.id,
                    cert: self.stable.clone(),
                };
                ctx.send(to, Outbound::Message(Message::StableCheckpoint(msg)));
            } else {
                ctx.drop_message("fetch-state: no such checkpoint here");
            }
            return;
        };
        let Ok(offset) = usize::try_from(fetch.offset) else {
            ctx.drop_message("fetch-state: bad offset");
            return;
        };
        if offset > state.len() {
            ctx.drop_message("fetch-state: bad offset");
            return;
        }
        let end = state.len().min(offset + STATE_CHUNK_MAX);
        let chunk = StateChunk {
            replica: self.id,
            seq: fetch.seq,
            offset: fetch.offset,
            total: state.len() as u64,
            data: state[offset..end].to_vec(),
        };
        ctx.send(to, Outbound::Message(Message::StateChunk(chunk)));
    }

    fn on_state_chunk(&mut self, chunk: StateChunk, ctx: &mut Ctx<'_, '_>) {
        let Some(t) = &mut self.transfer else {
            ctx.drop_message("state-chunk: no transfer in progress");
            return;
        };
        if chunk.seq != t.seq || chunk.offset != t.data.len() as u64 {
            ctx.drop_message("state-chunk: not the one asked for");
            return;
        }
        let end = chunk.offset + chunk.data.len() as u64;
        if chunk.total > STATE_SIZE_MAX || end > chunk.total || chunk.data.is_empty() {
            ctx.drop_message("state-chunk: bad length");
            return;
        }
        t.data.extend_from_slice(&chunk.data);
        if end < chunk.total {
            self.request_chunk(ctx);
            return;
        }
        if Digest::of(&t.data) != t.digest {
            ctx.drop_message("state-chunk: state does not match the checkpoint");
            t.data.clear();
            let source = t.source;
            let next = self.next_replica(source);
            if let Some(t) = &mut self.transfer {
                t.source = next;
            }
            self.request_chunk(ctx);
            return;
        }
        let t = self.transfer.take().expect("transfer in progress");
        ctx.cancel_timer(ReplicaTimer::Transfer);
        self.install_state(t.seq, t.data, ctx);
    }

    fn on_transfer_timeout(&mut self, ctx: &mut Ctx<'_, '_>) {
        let Some(source) = self.transfer.as_ref().map(|t| t.source) else {
            return; // Spurious.
        };
        let next = self.next_replica(source);
        if let Some(t) = &mut self.transfer {
            t.source = next;
        }
        ctx.count("state transfer: retry");
        self.request_chunk(ctx);
    }

    fn install_state(&mut self, seq: Seq, state: Vec<u8>, ctx: &mut Ctx<'_, '_>) {
        let (app, clients) =
            decode_state(&state).expect("a state matching a proven digest decodes");
        self.app.restore(app);
        self.client_table = clients;
        self.executed = seq;
        self.executed_at_status = seq;
        self.stable_state = Some(state);
        let table = &self.client_table;
        let done = |client: &ClientId, num: &mut u64| {
            table.get(client).is_none_or(|e| e.request_num < *num)
        };
        self.waiting.retain(done);
        self.proposed.retain(done);
        self.seq_next = self.seq_next.max(seq + 1);
        ctx.count("state transfer: done");
        self.execute_committed(ctx);
        for seq in self.log.keys().copied().collect::<Vec<_>>() {
            self.advance(seq, ctx);
        }
    }

    /// The checkpointed state: the application's snapshot and the client
    /// table, little-endian and length-prefixed (not the codec: a state may
    /// be larger than a message).
    fn encode_state(&self) -> Vec<u8> {
        let app = self.app.snapshot();
        let mut bytes = Vec::with_capacity(app.len() + 16 + 32 * self.client_table.len());
        bytes.extend_from_slice(&(app.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&app);
        bytes.extend_from_slice(&(self.client_table.len() as u64).to_le_bytes());
        for (client, entry) in &self.client_table {
            bytes.extend_from_slice(&client.0.to_le_bytes());
            bytes.extend_from_slice(&entry.request_num.to_le_bytes());
            bytes.extend_from_slice(&(entry.result.len() as u64).to_le_bytes());
            bytes.extend_from_slice(&entry.result);
        }
        bytes
    }

    // View change (§4.4).

    fn on_view_change_timeout(&mut self, ctx: &mut Ctx<'_, '_>) {
        if (!self.changing && self.waiting.is_empty())
            || (self.changing && !self.view_change_timer_armed)
        {
            return; // Spurious: nothing to wait for.
        }
        self.start_view_change(self.view + 1, ctx);
    }

    /// f+1 peers said they executed beyond this replica: at least one of them
    /// is correct, so the group made progress without it.
    fn lagging(&self) -> bool {
        let ahead = self
            .peer_executed
            .values()
            .filter(|&&executed| executed > self.executed)
            .count();
        ahead > self.config.f
    }

    /// §4.4: move to `view` and multicast a view-change with the stable
    /// checkpoint and the prepared certificates above it.
    fn start_view_change(&mut self, view: View, ctx: &mut Ctx<'_, '_>) {
        assert!(view > self.view, "view changes go forward");
        ctx.count("view change: started");
        self.view = view;
        self.changing = true;
        self.pending.clear();
        self.proposed.clear();
        let prepared: Vec<PreparedCert> = self
            .log
            .values()
            .filter_map(|slot| slot.prepared.clone())
            .collect();
        let vc = self.codec.sign(ViewChange {
            view,
            replica: self.id,
            checkpoint: self.stable.clone(),
            prepared,
        });
        self.view_changes.insert(self.id, vc.clone());
        ctx.send_to_replicas(Outbound::Message(Message::ViewChange(vc)));
        ctx.cancel_timer(ReplicaTimer::ViewChange);
        self.view_change_timer_armed = false;
        self.try_new_view(ctx);
        self.arm_new_view_timer(ctx);
    }

    /// §4.5.2 (TOCS): the timer for a new view starts only once 2f+1
    /// replicas want that view, so a replica cannot run ahead alone through
    /// views nobody else joins; each view change doubles its length.
    fn arm_new_view_timer(&mut self, ctx: &mut Ctx<'_, '_>) {
        if !self.changing || self.view_change_timer_armed {
            return;
        }
        let view = self.view;
        let wanting = self
            .view_changes
            .values()
            .filter(|vc| vc.payload.view == view)
            .count();
        if wanting < self.config.quorum() {
            return;
        }
        self.view_change_timer_armed = true;
        ctx.set_timer(ReplicaTimer::ViewChange, self.view_change_timeout);
        self.view_change_timeout = (self.view_change_timeout * 2).min(VIEW_CHANGE_TIMEOUT_MAX);
    }

    fn on_view_change(&mut self, vc: Signed<ViewChange>, ctx: &mut Ctx<'_, '_>) {
        let view = vc.payload.view;
        let replica = vc.payload.replica;
        if replica == self.id {
            ctx.drop_message("view-change: own");
            return;
        }
        if view < self.view || (view == self.view && !self.changing) {
            // The sender is behind: show it the view it missed.
            if let (false, Some(nv)) = (self.changing, &self.new_view) {
                ctx.send(
                    Addr::Replica(replica),
                    Outbound::Message(Message::NewView(nv.clone())),
                );
            }
            ctx.drop_message("view-change: old view");
            return;
        }
        if self
            .view_changes
            .get(&replica)
            .is_some_and(|old| old.payload.view >= view)
        {
            ctx.drop_message("view-change: not newer");
            return;
        }
        self.view_changes.insert(replica, vc);
        // §4.5.2 (TOCS): f+1 replicas want a later view: join the lowest, so
        // a view change never waits on a timer that is not running.
        let mut later: Vec<View> = self
            .view_changes
            .iter()
            .filter(|(r, v)| **r != self.id && v.payload.view > self.view)
            .map(|(_, v)| v.payload.view)
            .collect();
        if later.len() > self.config.f && !(self.changing && later.iter().all(|&v| v <= self.view))
        {
            later.sort_unstable();
            ctx.count("view change: joined");
            self.start_view_change(later[0], ctx);
            return;
        }
        self.try_new_view(ctx);
        self.arm_new_view_timer(ctx);
    }

    /// §4.4: the new primary, with 2f+1 view-changes for its view, computes
    /// and multicasts the new-view message.
    fn try_new_view(&mut self, ctx: &mut Ctx<'_, '_>) {
        if !self.changing || !self.is_primary() {
            return;
        }
        let view = self.view;
        let chosen: Vec<Signed<ViewChange>> = self
            .view_changes
            .values()
            .filter(|vc| vc.payload.view == view)
            .take(self.config.quorum())
            .cloned()
            .collect();
        if chosen.len() < self.config.quorum() {
            return;
        }
        let (_, entries) = compute_new_view(&self.config, chosen.iter().map(|vc| &vc.payload));
        let pre_prepares = entries
            .into_iter()
            .map(|(seq, digest)| self.codec.sign(PrePrepare { view, seq, digest }))
            .collect();
        let nv = NewView {
            view,
            view_changes: chosen,
            pre_prepares,
        };
        ctx.count("view change: new view sent");
        ctx.send_to_replicas(Outbound::Message(Message::NewView(nv.clone())));
        self.enter_new_view(nv, ctx);
    }

    /// §4.4: a backup accepts a new-view (already checked against its V by
    /// the codec) for a view it has not yet started.
    fn on_new_view(&mut self, nv: NewView, ctx: &mut Ctx<'_, '_>) {
        if nv.view < self.view || (nv.view == self.view && !self.changing) {
            ctx.drop_message("new-view: not a later view");
            return;
        }
        self.enter_new_view(nv, ctx);
    }

    /// Starts view `nv.view`: adopts the highest stable checkpoint in V and
    /// prepares O's pre-prepares.
    fn enter_new_view(&mut self, nv: NewView, ctx: &mut Ctx<'_, '_>) {
        let view = nv.view;
        let (stable, entries) =
            compute_new_view(&self.config, nv.view_changes.iter().map(|vc| &vc.payload));
        self.view = view;
        self.changing = false;
        self.view_change_timer_armed = false;
        self.view_changes.retain(|_, vc| vc.payload.view > view);
        self.pending.clear();
        self.proposed.clear();
        ctx.count("view change: new view");
        self.adopt_stable(stable, ctx);
        for slot in self.log.values_mut() {
            slot.leave_view(view);
        }
        let primary = self.config.primary(view);
        let null_digest = self.config.null_digest;
        let max_s = entries.last().map_or(self.stable.seq, |(seq, _)| *seq);
        for pp in &nv.pre_prepares {
            let PrePrepare { seq, digest, .. } = pp.payload;
            if !self.in_watermarks(seq) {
                continue;
            }
            let signature = (primary != self.id).then_some(pp.signature);
            let slot = self.log.entry(seq).or_default();
            slot.enter(view, digest, signature);
            if slot.batch.as_ref().is_none_or(|(d, _)| *d != digest) {
                slot.batch = (digest == null_digest).then(|| (digest, Vec::new()));
            }
        }
        self.seq_next = max_s.max(self.stable.seq).max(self.executed) + 1;
        self.new_view = Some(nv);
        ctx.cancel_timer(ReplicaTimer::ViewChange);
        if !self.waiting.is_empty() {
            ctx.set_timer(ReplicaTimer::ViewChange, self.view_change_timeout);
        }
        self.fetch_missing_batches(ctx);
        for seq in self.log.keys().copied().collect::<Vec<_>>() {
            self.advance(seq, ctx);
        }
        self.execute_committed(ctx);
        self.try_propose(ctx);
    }

    /// Asks every replica for batches this replica has accepted by digest
    /// only (from a new-view's O).
    fn fetch_missing_batches(&mut self, ctx: &mut Ctx<'_, '_>) {
        for slot in self.log.values() {
            if let Some((_, digest, _)) = slot.pre_prepare
                && slot.batch.as_ref().is_none_or(|(d, _)| *d != digest)
            {
                ctx.count("batch: fetch");
                let fetch = FetchBatch {
                    replica: self.id,
                    digest,
                };
                ctx.send_to_replicas(Outbound::FetchBatch(fetch));
            }
        }
    }

    fn on_fetch_batch(&mut self, fetch: FetchBatch, ctx: &mut Ctx<'_, '_>) {
        let found = self.log.values().find_map(|slot| match &slot.batch {
            Some((d, requests)) if *d == fetch.digest => Some(requests.clone()),
            _ => None,
        });
        let Some(requests) = found else {
            ctx.drop_message("fetch-batch: unknown digest");
            return;
        };
        let batch = Batch {
            replica: self.id,
            digest: fetch.digest,
            requests,
        };
        ctx.send(
            Addr::Replica(fetch.replica),
            Outbound::Message(Message::Batch(batch)),
        );
    }

    fn on_batch(&mut self, batch: Batch, ctx: &mut Ctx<'_, '_>) {
        let mut used = false;
        for slot in self.log.values_mut() {
            if let Some((_, digest, _)) = slot.pre_prepare
                && digest == batch.digest
                && slot.batch.as_ref().is_none_or(|(d, _)| *d != digest)
            {
                slot.batch = Some((digest, batch.requests.clone()));
                used = true;
            }
        }
        if !used {
            ctx.drop_message("batch: not needed");
            return;
        }
        self.execute_committed(ctx);
    }

    // Retransmission.

    /// Every [`STATUS_INTERVAL`]: a replica that made no progress while it
    /// has work outstanding tells the others where it stands.
    fn on_status_timeout(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.set_timer(ReplicaTimer::Status, STATUS_INTERVAL);
        let stuck = self.executed == self.executed_at_status
            && (self.behind
                || self.changing
                || self.transfer.is_some()
                || !self.waiting.is_empty()
                || !self.pending.is_empty()
                || self.log.range(self.executed + 1..).next().is_some());
        self.executed_at_status = self.executed;
        self.behind = false;
        if !stuck {
            return;
        }
        ctx.count("status: sent");
        ctx.send_to_replicas(Outbound::Status(Status {
            replica: self.id,
            view: self.view,
            changing: self.changing,
            executed: self.executed,
            stable: self.stable.seq,
        }));
        if self.changing
            && let Some(vc) = self.view_changes.get(&self.id)
        {
            ctx.send_to_replicas(Outbound::Message(Message::ViewChange(vc.clone())));
        }
        self.fetch_missing_batches(ctx);
    }

    /// Answers a stuck peer with what it lacks.
    fn on_status(&mut self, status: Status, ctx: &mut Ctx<'_, '_>) {
        let to = Addr::Replica(status.replica);
        self.peer_executed.insert(status.replica, status.executed);
        if status.executed < self.stable.seq && status.stable < self.stable.seq {
            let msg = StableCheckpoint {
                replica: self.id,
                cert: self.stable.clone(),
            };
            ctx.send(to, Outbound::Message(Message::StableCheckpoint(msg)));
        }
        let behind_in_view =
            status.view < self.view || (status.view == self.view && status.changing);
        if behind_in_view {
            match (&self.new_view, self.changing) {
                (Some(nv), false) if nv.view == self.view => {
                    ctx.send(to, Outbound::Message(Message::NewView(nv.clone())));
                }
                (_, true) => {
                    if let Some(vc) = self.view_changes.get(&self.id) {
                        ctx.send(to, Outbound::Message(Message::ViewChange(vc.clone())));
                    }
                }
                _ => {}
            }
            return;
        }
        if status.view != self.view || status.changing || self.changing {
            return;
        }
        let primary = self.is_primary();
        let high = status.executed.saturating_add(LOG_MAX);
        for (&seq, slot) in self.log.range(status.executed + 1..=high) {
            let Some((view, digest, _)) = slot.pre_prepare else {
                continue;
            };
            if primary
                && let Some((d, batch)) = &slot.batch
                && *d == digest
            {
                let pp = PrePrepare { view, seq, digest };
                ctx.send(to, Outbound::PrePrepare(pp, batch.clone()));
            }
            if slot.sent_prepare {
                let p = Prepare {
                    view,
                    seq,
                    digest,
                    replica: self.id,
                };
                ctx.send(to, Outbound::Prepare(p));
            }
            if slot.sent_commit {
                let c = Commit {
                    view,
                    seq,
                    digest,
                    replica: self.id,
                };
                ctx.send(to, Outbound::Commit(c));
            }
        }
        for (&seq, votes) in self.checkpoint_votes.range(status.stable + 1..) {
            if let Some((digest, signature)) = votes.get(&self.id) {
                let vote = Signed {
                    payload: Checkpoint {
                        seq,
                        digest: *digest,
                        replica: self.id,
                    },
                    signature: *signature,
                };
                ctx.send(to, Outbound::Message(Message::Checkpoint(vote)));
            }
        }
    }

    // Checks shared by the normal-case handlers.

    fn check_view(&mut self, view: View, what: &'static str, ctx: &mut Ctx<'_, '_>) -> bool {
        if self.changing {
            ctx.drop_message(match what {
                "pre-prepare" => "pre-prepare: view change in progress",
                "prepare" => "prepare: view change in progress",
                _ => "commit: view change in progress",
            });
            return false;
        }
        if view != self.view {
            if view > self.view {
                self.behind = true;
            }
            ctx.drop_message(match what {
                "pre-prepare" => "pre-prepare: wrong view",
                "prepare" => "prepare: wrong view",
                _ => "commit: wrong view",
            });
            return false;
        }
        true
    }

    fn check_seq(&mut self, seq: Seq, what: &'static str, ctx: &mut Ctx<'_, '_>) -> bool {
        if self.in_watermarks(seq) {
            return true;
        }
        if seq > self.stable.seq + LOG_MAX {
            self.behind = true;
        }
        ctx.drop_message(match what {
            "pre-prepare" => "pre-prepare: outside watermarks",
            "prepare" => "prepare: outside watermarks",
            _ => "commit: outside watermarks",
        });
        false
    }

    /// Invariants that hold after every event.
    fn check_invariants(&self) {
        assert!(self.log.len() as u64 <= LOG_MAX);
        if let (Some((&first, _)), Some((&last, _))) =
            (self.log.first_key_value(), self.log.last_key_value())
        {
            assert!(self.in_watermarks(first) && self.in_watermarks(last));
        }
        assert!(self.transfer.is_some() || self.executed >= self.stable.seq);
        assert!(self.pending.len() <= PENDING_MAX);
        assert!(self.waiting.len() <= WAITING_MAX);
        assert!(self.checkpoint_votes.len() <= CHECKPOINT_VOTES_MAX);
        assert!(self.view_changes.len() <= self.config.n);
        assert!(self.own_checkpoints.len() as u64 <= LOG_MAX / CHECKPOINT_INTERVAL + 1);
    }
}

impl Slot {
    /// Accepts the pre-prepare `(view, digest)` here, forgetting what was
    /// sent for an earlier one.
    fn enter(&mut self, view: View, digest: Digest, signature: Option<Signature>) {
        self.pre_prepare = Some((view, digest, signature));
        self.sent_prepare = false;
        self.sent_commit = false;
        self.committed = false;
    }

    /// Forgets the state of views before `view`, keeping the prepared
    /// certificate (for later view-changes), the batch, and votes already
    /// received for `view` or later.
    fn leave_view(&mut self, view: View) {
        self.pre_prepare = None;
        self.sent_prepare = false;
        self.sent_commit = false;
        self.committed = false;
        self.prepares.retain(|_, (v, _, _)| *v >= view);
        self.commits.retain(|_, (v, _)| *v >= view);
    }
}

type ClientTable = BTreeMap<ClientId, ClientEntry>;

/// Inverse of [`Replica::encode_state`]; `None` if malformed.
fn decode_state(bytes: &[u8]) -> Option<(&[u8], ClientTable)> {
    fn u64_at(rest: &mut &[u8]) -> Option<u64> {
        let (head, tail) = rest.split_at_checked(8)?;
        *rest = tail;
        Some(u64::from_le_bytes(head.try_into().ok()?))
    }
    fn bytes_at<'a>(rest: &mut &'a [u8], len: u64) -> Option<&'a [u8]> {
        let (head, tail) = rest.split_at_checked(usize::try_from(len).ok()?)?;
        *rest = tail;
        Some(head)
    }
    let mut rest = bytes;
    let len = u64_at(&mut rest)?;
    let app = bytes_at(&mut rest, len)?;
    let count = u64_at(&mut rest)?;
    let mut table = ClientTable::new();
    for _ in 0..count {
        let client = ClientId(u64_at(&mut rest)?);
        let request_num = u64_at(&mut rest)?;
        let len = u64_at(&mut rest)?;
        let result = bytes_at(&mut rest, len)?.to_vec();
        table.insert(
            client,
            ClientEntry {
                request_num,
                result,
            },
        );
    }
    rest.is_empty().then_some((app, table))
}

impl State for Replica {
    type Message = Message;
    type Outbound = Outbound;
    type Timer = ReplicaTimer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Ctx<'_, '_>) {
        self.stable_state = Some(self.encode_state());
        ctx.set_timer(ReplicaTimer::Status, STATUS_INTERVAL);
    }

    fn on_message(&mut self, from: Addr, msg: Message, ctx: &mut Ctx<'_, '_>) {
        if from == Addr::Replica(self.id) {
            ctx.drop_message("message: from self");
            return;
        }
        match msg {
            Message::Request(request) => self.on_request(request, true, ctx),
            Message::Relayed(_, request) => self.on_request(request, false, ctx),
            // The runtime learnt the client's address from it; nothing else.
            Message::Hello(_) => {}
            Message::Reply(_) => ctx.drop_message("replica: unexpected reply"),
            Message::PrePrepare(pp, batch) => self.on_pre_prepare(pp, batch, ctx),
            Message::Prepare(p) => self.on_prepare(p, ctx),
            Message::Commit(c) => self.on_commit(c, ctx),
            Message::Checkpoint(c) => self.on_checkpoint(c, ctx),
            Message::ViewChange(vc) => self.on_view_change(vc, ctx),
            Message::NewView(nv) => self.on_new_view(nv, ctx),
            Message::Status(s) => self.on_status(s.payload, ctx),
            Message::StableCheckpoint(s) => self.on_stable_checkpoint(s, ctx),
            Message::FetchState(f) => self.on_fetch_state(f.payload, ctx),
            Message::StateChunk(c) => self.on_state_chunk(c, ctx),
            Message::FetchBatch(f) => self.on_fetch_batch(f.payload, ctx),
            Message::Batch(b) => self.on_batch(b, ctx),
        }
        self.check_invariants();
    }

    fn on_timer(&mut self, timer: ReplicaTimer, ctx: &mut Ctx<'_, '_>) {
        match timer {
            ReplicaTimer::ViewChange => self.on_view_change_timeout(ctx),
            ReplicaTimer::Status => self.on_status_timeout(ctx),
            ReplicaTimer::Transfer => self.on_transfer_timeout(ctx),
        }
        self.check_invariants();
    }
}
