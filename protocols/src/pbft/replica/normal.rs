//! The normal case (§4.2): requests, batching, the three phases, and
//! execution in sequence order through the client table.

use runtime::{Addr, ReplicaId};
use wire::client::Request;
use wire::control::{BATCHES_COUNTER, REQUESTS_BATCHED_COUNTER};
use wire::pbft::{
    AuthRequest, Commit, Message, PrePrepare, Prepare, PreparedCert, Reply, Seq, View,
};
use wire::{Digest, Signed};

use super::super::bugs;
use super::super::codec::{Outbound, batch_digest};
use super::super::{
    BATCH_BYTES_MAX, BATCH_SIZE_MAX, CHECKPOINT_INTERVAL, PENDING_BYTES_MAX, PENDING_MAX,
    REQUEST_OP_MAX, request_overhead,
};
use super::{Ctx, Replica, request_size};
use crate::app::{Position, Unexecuted};
use crate::common::Admission;
use crate::common::{Refused, VoteSet};
use crate::planted;

/// Positions per sequence number in session numbers: a session opened by
/// the registration at position `i` of the batch at `seq` is numbered
/// `seq * SESSION_STRIDE + i`, so no two sessions share a number.
const SESSION_STRIDE: u64 = BATCH_SIZE_MAX as u64;

impl Replica {
    /// §4.1/§4.2: a request from a client, or relayed by a backup. A backup
    /// relays what came from a client (`relay`), never what a replica
    /// relayed.
    pub(super) fn on_request(&mut self, auth: AuthRequest, relay: bool, ctx: &mut Ctx<'_, '_>) {
        let request = &auth.request;
        let client = request.client_id;
        if request.op.len() > REQUEST_OP_MAX {
            ctx.drop_message("request: operation too large");
            return;
        }
        if request.request_num == 0 {
            if auth.session != 0 || !request.op.is_empty() {
                ctx.drop_message("request: malformed registration");
                return;
            }
            if let Some(entry) = self.clients.get(client) {
                if entry.binding != auth.key {
                    ctx.drop_message("request: client has a session under another key");
                    return;
                }
                // Registered already (the reply was lost): the session again.
                ctx.count("request: registration answered again");
                let reply = self.reply(client, 0, entry.session.to_le_bytes().to_vec());
                ctx.send(Addr::Client(client), reply);
                return;
            }
        } else {
            match self
                .clients
                .admit(client, &auth.key, auth.session, request.request_num)
            {
                Admission::OtherBinding => {
                    ctx.drop_message("request: client has a session under another key");
                    return;
                }
                Admission::Stale => {
                    ctx.drop_message("request: older than the latest");
                    return;
                }
                Admission::Duplicate(result) => {
                    ctx.count("request: resent reply");
                    let reply = self.reply(client, request.request_num, result.to_vec());
                    ctx.send(Addr::Client(client), reply);
                    return;
                }
                // An unknown session may be one this replica has not
                // executed the registration of yet: only execution says
                // "evicted".
                Admission::Execute | Admission::Unknown => {}
            }
        }
        if self.changing {
            ctx.drop_message("request: view change in progress");
            return;
        }
        if self.is_primary() {
            self.queue(auth, ctx);
            self.try_propose(ctx);
        } else if request.request_num == 0
            && relay
            && !self.announced.seen_before(client, ctx.now())
        {
            // The client announcing itself to every replica (see
            // `Announced`): the runtime has learnt its address.
            ctx.count("request: registration announced");
        } else {
            // A backup relays the request to the primary and times it
            // (§4.4). Backups see a request only when its client timed out
            // and multicast it; the authenticator lets the primary check that
            // the client sent it, so a faulty backup cannot alter it.
            let was_waiting = !self.waiting.is_empty();
            if !self.waiting.insert(auth.clone(), ctx.now()) {
                ctx.drop_message("request: waiting table full");
                return;
            }
            if !was_waiting {
                self.progress_at = ctx.now();
            }
            self.arm_request_timer(ctx);
            if relay {
                ctx.count("request: relayed to the primary");
                let primary = Addr::Replica(self.config.primary(self.view));
                let relayed = Message::Relayed(self.id, vec![auth]);
                ctx.send(primary, Outbound::Message(relayed));
            }
        }
    }

    /// The primary queues a request to propose, unless it has queued or
    /// proposed it (or a later one of its client) already, or its queue is
    /// full.
    pub(super) fn queue(&mut self, auth: AuthRequest, ctx: &mut Ctx<'_, '_>) {
        let client = auth.request.client_id;
        let num = auth.request.request_num;
        if self.proposed.get(&client).is_some_and(|&p| p >= num) {
            ctx.drop_message("request: already proposed");
            return;
        }
        let size = request_size(&auth);
        if self.pending.len() >= PENDING_MAX || self.pending_bytes + size > PENDING_BYTES_MAX {
            ctx.drop_message("request: pending queue full");
            return;
        }
        self.proposed.insert(client, num);
        self.pending_bytes += size;
        self.pending.push_back(auth);
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
    pub(super) fn try_propose(&mut self, ctx: &mut Ctx<'_, '_>) {
        while self.may_propose()
            && !self.pending.is_empty()
            && (self.seq_next <= self.executed.saturating_add(1)
                || self.pending.len() >= self.config.batch_max)
        {
            let mut batch = Vec::new();
            let mut bytes = 0;
            let overhead = request_overhead(self.config.n);
            while let Some(request) = self.pending.front() {
                let size = request.request.op.len() + overhead;
                if batch.len() == self.config.batch_max
                    || (!batch.is_empty() && bytes + size > BATCH_BYTES_MAX)
                {
                    break;
                }
                let request = self.pending.pop_front().expect("front exists");
                self.pending_bytes -= request_size(&request);
                let done = self.clients.is_settled(
                    request.request.client_id,
                    request.session,
                    request.request.request_num,
                );
                if !done {
                    bytes += size;
                    batch.push(request);
                }
            }
            if batch.is_empty() {
                continue;
            }
            self.propose(batch, ctx);
        }
    }

    /// Whether the primary may propose at `seq_next` now: in its view, not
    /// fetching state, within the watermarks and the window, and (if it is
    /// recovering) above everything it may have voted for before it
    /// restarted.
    pub(super) fn may_propose(&self) -> bool {
        self.is_primary()
            && !self.changing
            && self.transfer.is_none()
            && self.seq_next <= self.high_watermark()
            && self.seq_next <= self.executed.saturating_add(self.config.window)
            && !self.recovery.mutes(self.seq_next)
    }

    /// Assigns the next sequence number to `batch` and multicasts its
    /// pre-prepare. An empty batch is a null batch.
    pub(super) fn propose(&mut self, batch: Vec<AuthRequest>, ctx: &mut Ctx<'_, '_>) {
        let Some(digest) = batch_digest(&batch) else {
            ctx.drop_message("primary: batch does not encode");
            return;
        };
        let seq = self.seq_next;
        self.seq_next += 1;
        ctx.count(BATCHES_COUNTER);
        ctx.count_n(REQUESTS_BATCHED_COUNTER, batch.len() as u64);
        let view = self.view;
        let slot = self.slot(seq);
        slot.enter(view, digest, None);
        slot.set_batch(digest, batch.clone());
        let pp = PrePrepare { view, seq, digest };
        ctx.send_to_replicas(Outbound::PrePrepare(pp, batch));
        self.advance(seq, ctx);
    }

    /// §4.2: a backup accepts a pre-prepare if it is in its view, within the
    /// watermarks, and it has accepted no other digest for this view and
    /// sequence number. A batch with requests it could not authenticate
    /// (`checked` false) is accepted too, and prepared once others vouch
    /// for it (see `Inbound::UncheckedPrePrepare`).
    pub(super) fn on_pre_prepare(
        &mut self,
        pp: Signed<PrePrepare>,
        batch: Vec<AuthRequest>,
        checked: bool,
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
        let slot = self.slot(seq);
        if let Some((_, accepted, _)) = slot.pre_prepare {
            if accepted != digest {
                ctx.drop_message("pre-prepare: another digest accepted (equivocation)");
                return;
            }
            ctx.drop_message("pre-prepare: duplicate");
            if !slot.has_batch() {
                slot.set_batch(digest, batch);
                self.codec.settle_pre_prepared(view, seq);
                self.execute_committed(ctx);
            }
            return;
        }
        slot.enter(view, digest, Some(pp.signature));
        slot.unchecked = !checked;
        slot.set_batch(digest, batch);
        self.codec.settle_pre_prepared(view, seq);
        self.advance(seq, ctx);
    }

    /// §4.2: prepares from backups, possibly before their pre-prepare.
    pub(super) fn on_prepare(&mut self, p: Signed<Prepare>, ctx: &mut Ctx<'_, '_>) {
        let Prepare {
            view,
            seq,
            digest,
            replica,
        } = p.payload;
        let early = self.changing && view == self.view;
        if !early && !self.check_view(view, "prepare", ctx) || !self.check_seq(seq, "prepare", ctx)
        {
            return;
        }
        if replica == self.config.primary(view) {
            ctx.drop_message("prepare: from the primary");
            return;
        }
        let prepares = &mut self.slot(seq).prepares;
        let reasons = [
            "prepare: no such replica",
            "prepare: duplicate",
            "prepare: conflicting",
        ];
        if !count_vote(prepares, replica, view, digest, p.signature, reasons, ctx) {
            return;
        }
        if early {
            // For the view this replica is changing to: kept for when the
            // new view starts (leaving the old one keeps votes for it).
            ctx.count("prepare: kept for the next view");
            return;
        }
        self.advance(seq, ctx);
    }

    /// §4.2: commits, possibly before this replica prepared.
    pub(super) fn on_commit(&mut self, c: Signed<Commit>, ctx: &mut Ctx<'_, '_>) {
        let Commit {
            view,
            seq,
            digest,
            replica,
        } = c.payload;
        let early = self.changing && view == self.view;
        if !early && !self.check_view(view, "commit", ctx) || !self.check_seq(seq, "commit", ctx) {
            return;
        }
        let commits = &mut self.slot(seq).commits;
        let reasons = [
            "commit: no such replica",
            "commit: duplicate",
            "commit: conflicting",
        ];
        if !count_vote(commits, replica, view, digest, (), reasons, ctx) {
            return;
        }
        if early {
            ctx.count("commit: kept for the next view");
            return;
        }
        self.advance(seq, ctx);
    }

    /// Moves `seq` through prepare and commit as far as its messages allow
    /// (§4.2): prepare once a pre-prepare is accepted; prepared with
    /// `quorum - 1` matching prepares from backups; commit; committed-local
    /// with a quorum of matching commits; then execute in order. A replica
    /// recovering from a restart sends no prepare or commit at or below its
    /// estimate of where it may have voted before (see `recovery.rs`), and
    /// counts no vote of its own there.
    pub(super) fn advance(&mut self, seq: Seq, ctx: &mut Ctx<'_, '_>) {
        if self.changing {
            return;
        }
        let id = self.id;
        let f = self.config.f;
        let quorum = self.config.quorum();
        let primary = self.config.primary(self.view);
        let may_vote = !self.recovery.mutes(seq);
        let Some(slot) = self.log.get_mut(&seq) else {
            return;
        };
        let Some((view, digest, pp_signature)) = slot.pre_prepare else {
            return;
        };
        assert_eq!(view, self.view, "slot state from another view");
        // Votes for this view's pre-prepare. The sets hold neither this
        // replica's own votes (it counts them from `sent_prepare` and
        // `sent_commit`) nor the primary's prepares (refused on arrival).
        let key = (view, digest);
        if id != primary && !slot.sent_prepare && may_vote {
            // A batch this replica could not authenticate is prepared once
            // the primary and f backups vouch for it.
            if !slot.unchecked || slot.prepares.count(&key) >= f {
                slot.sent_prepare = true;
                ctx.send_to_replicas(Outbound::Prepare(Prepare {
                    view,
                    seq,
                    digest,
                    replica: id,
                }));
                if planted::is(bugs::COMMIT_WITHOUT_PREPARED) && !slot.sent_commit {
                    slot.sent_commit = true;
                    ctx.send_to_replicas(Outbound::Commit(Commit {
                        view,
                        seq,
                        digest,
                        replica: id,
                    }));
                }
            }
        }
        let prepared_here = slot
            .prepared
            .as_ref()
            .is_some_and(|c| c.view == view && c.digest == digest);
        if !prepared_here {
            // Prepared: the pre-prepare, this replica's own prepare if it is
            // a backup that sent one, and enough of the others' for a
            // quorum; no more than a quorum's worth, so view-changes stay
            // small.
            let own = usize::from(id != primary && slot.sent_prepare);
            let needed = quorum.saturating_sub(1 + own);
            let Some(prepares) = slot.prepares.certificate(&key, needed) else {
                return;
            };
            slot.prepared = Some(PreparedCert {
                view,
                seq,
                digest,
                pre_prepare: pp_signature,
                prepares,
            });
            self.codec.settle_prepared(view, seq);
        }
        if !slot.sent_commit && may_vote {
            slot.sent_commit = true;
            ctx.send_to_replicas(Outbound::Commit(Commit {
                view,
                seq,
                digest,
                replica: id,
            }));
        }
        if !slot.committed {
            let own = usize::from(slot.sent_commit);
            if !slot.commits.reached(&key, quorum.saturating_sub(own)) {
                return;
            }
            slot.committed = true;
            self.codec.settle_committed(view, seq);
            self.execute_committed(ctx);
        }
    }

    /// Executes committed batches in sequence order (§4.2), replies to the
    /// clients, and checkpoints every [`CHECKPOINT_INTERVAL`] (§4.3).
    pub(super) fn execute_committed(&mut self, ctx: &mut Ctx<'_, '_>) {
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
            let batch = batch.clone();
            if batch.is_empty() {
                self.app.unexecuted_at(seq, Unexecuted::Null);
            }
            for (index, request) in batch.into_iter().enumerate() {
                self.execute(seq, index, request, ctx);
            }
            self.executed = seq;
            ctx.note(|| format!("executed n{seq}"));
            if seq.is_multiple_of(CHECKPOINT_INTERVAL) {
                self.take_checkpoint(seq, ctx);
            }
        }
        if self.executed > before {
            self.progress_at = ctx.now();
            // Progress resets the view-change timeout (TOCS §4.5.2), unless
            // this replica is only catching up with a group that executed
            // beyond it: then the timeout keeps its backoff, so that a
            // replica behind does not leave view after view alone (taking
            // itself out of the quorums the others need) before it catches
            // up.
            if !self.lagging() {
                self.view_change_timeout = self.config.view_change_timeout;
            }
            self.arm_request_timer(ctx);
            self.check_recovered(ctx);
            self.try_propose(ctx);
        }
    }

    /// The client table evicted `client`'s session.
    fn forget_session(&mut self, client: runtime::ClientId, ctx: &mut Ctx<'_, '_>) {
        ctx.count("client table: session evicted");
        self.proposed.remove(&client);
        self.waiting.remove(client);
        self.codec.unpin_client(client);
    }

    /// Executes one request of the batch at `seq` through the client table:
    /// a registration opens a session, a new request of a live session
    /// executes, a duplicate is skipped, and a request whose session is gone
    /// gets an eviction notice. Every replica decides the same, since they
    /// execute the same batches in the same order.
    fn execute(&mut self, seq: Seq, index: usize, auth: AuthRequest, ctx: &mut Ctx<'_, '_>) {
        let AuthRequest {
            session,
            request:
                Request {
                    client_id: client,
                    request_num: num,
                    op,
                },
            key,
            ..
        } = auth;
        let outcome = if num == 0 {
            let number = seq
                .saturating_mul(SESSION_STRIDE)
                .saturating_add(index as u64);
            match self.clients.register(client, key, number) {
                Some((number, evicted)) => {
                    if let Some(evicted) = evicted {
                        self.forget_session(evicted, ctx);
                    }
                    self.codec.pin_client(client, key);
                    let reply = self.reply(client, 0, number.to_le_bytes().to_vec());
                    ctx.send(Addr::Client(client), reply);
                    "registered"
                }
                None => {
                    ctx.count("execute: registration under another key skipped");
                    "other key"
                }
            }
        } else {
            match self.clients.admit(client, &key, session, num) {
                Admission::Execute => {
                    let at = Position {
                        slot: seq,
                        client,
                        request_num: num,
                    };
                    let result = self.app.execute_at(at, &op);
                    self.executed_since_tick += 1;
                    let reply = self.reply(client, num, result.clone());
                    ctx.send(Addr::Client(client), reply);
                    for evicted in self.clients.record(client, num, result) {
                        self.forget_session(evicted, ctx);
                    }
                    ""
                }
                Admission::Duplicate(_) | Admission::Stale => {
                    ctx.count("execute: duplicate request skipped");
                    "duplicate"
                }
                Admission::OtherBinding => {
                    ctx.count("execute: request under another key skipped");
                    "other key"
                }
                Admission::Unknown => {
                    ctx.count("execute: session evicted");
                    let notice = Reply {
                        view: self.view,
                        replica: self.id,
                        client_id: client,
                        request_num: num,
                        result: Vec::new(),
                    };
                    ctx.send(Addr::Client(client), Outbound::Evicted(notice));
                    "evicted"
                }
            }
        };
        if !outcome.is_empty() {
            let what = Unexecuted::Request {
                client,
                request_num: num,
                outcome,
            };
            self.app.unexecuted_at(seq, what);
        }
        self.waiting.settle(client, num);
        if self.proposed.get(&client).is_some_and(|&p| p <= num) {
            self.proposed.remove(&client);
        }
    }

    pub(super) fn reply(
        &self,
        client_id: wire::ClientId,
        request_num: u64,
        result: Vec<u8>,
    ) -> Outbound {
        Outbound::Reply(Reply {
            view: self.view,
            replica: self.id,
            client_id,
            request_num,
            result,
        })
    }
}

/// Counts `replica`'s prepare or commit for `digest` in `view`. A replica
/// votes again in a later view, and its earlier view's vote is of no more
/// use, so the later one replaces it; within a view its first one stands.
/// A vote not counted is dropped under `reasons` (no such replica,
/// duplicate, conflicting). Whether it was counted.
fn count_vote<P>(
    votes: &mut VoteSet<(View, Digest), P>,
    replica: ReplicaId,
    view: View,
    digest: Digest,
    payload: P,
    reasons: [&'static str; 3],
    ctx: &mut Ctx<'_, '_>,
) -> bool {
    if votes.get(replica).is_some_and(|((v, _), _)| *v < view) {
        votes.remove(replica);
    }
    match votes.insert(replica, (view, digest), payload) {
        Ok(_) => true,
        Err(refused) => {
            ctx.drop_message(match refused {
                Refused::NotAVoter => reasons[0],
                Refused::Duplicate => reasons[1],
                Refused::Conflicting => reasons[2],
            });
            false
        }
    }
}
