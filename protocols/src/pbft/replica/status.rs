//! Retransmission. The paper leaves the retransmission of lost messages to
//! the implementation: here a replica that made no progress for a status
//! interval while it has work outstanding multicasts a signed status, and
//! peers answer with what it lacks. Every replica also multicasts its status
//! every [`STATUS_HEARTBEAT`], stuck or not, so that one that fell behind
//! while the group went idle (it cannot know it is behind if nobody sends it
//! anything) learns of it and catches up. Batches known by digest only (from a
//! new-view's O) are fetched with `FetchBatch`. The status tick also keeps
//! the execution rate the request timer uses, and lets an idle primary fill
//! sequence numbers with null batches for a recovering peer.

use runtime::Addr;
use wire::Signed;
use wire::pbft::{
    Batch, Checkpoint, Commit, FetchBatch, Message, PrePrepare, Prepare, Seq, StableCheckpoint,
    Status,
};

use super::super::bugs;
use super::super::codec::Outbound;
use super::super::{LOG_MAX, STATUS_HEARTBEAT};
use super::{Ctx, Recovery, Replica, ReplicaTimer};
use crate::planted;

/// Weight of the newest sample in the smoothed execution rate.
const RATE_GAIN: f64 = 0.125;

impl Replica {
    /// Every [`Config::status_interval`]: a replica that made no progress while it
    /// has work outstanding tells the others where it stands.
    pub(super) fn on_status_timeout(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.set_timer(ReplicaTimer::Status, self.config.status_interval);
        self.update_rate();
        if self.recovery.is_estimating() {
            self.query_stable(ctx);
            return;
        }
        self.pad_for_recovery(ctx);
        let stuck = self.executed == self.executed_at_status
            && (self.behind
                || self.changing
                || self.transfer.is_some()
                || !self.waiting.is_empty()
                || !self.pending.is_empty()
                || self.recovery != Recovery::Done
                || self
                    .log
                    .range(self.executed.saturating_add(1)..)
                    .next()
                    .is_some()
                || self.unfinished().is_some());
        self.executed_at_status = self.executed;
        self.behind = false;
        self.arm_request_timer(ctx);
        if stuck || ctx.now() >= self.status_sent_at + STATUS_HEARTBEAT {
            self.send_status(ctx);
        }
    }

    /// Multicasts where this replica stands (and its view-change, if it is
    /// changing views), and asks again for batches it lacks.
    pub(super) fn send_status(&mut self, ctx: &mut Ctx<'_, '_>) {
        ctx.count("status: sent");
        self.status_sent_at = ctx.now();
        let recovering = match self.recovery {
            Recovery::Waiting { high } => Some(high),
            Recovery::Estimating { .. } | Recovery::Done => None,
        };
        let wants = self.unfinished().unwrap_or(self.executed.saturating_add(1));
        ctx.send_to_replicas(Outbound::Status(Status {
            replica: self.id,
            view: self.view,
            changing: self.changing,
            executed: self.executed,
            stable: self.stable.seq,
            wants,
            recovering,
        }));
        if self.changing
            && let Some(vc) = self.own_view_changes.get(&self.view)
        {
            ctx.send_to_replicas(Outbound::Message(Message::ViewChange(vc.clone())));
        }
        self.fetch_missing_batches(ctx);
    }

    /// The lowest sequence number in this view's log that has a pre-prepare
    /// but has not committed here: after a view change, possibly one this
    /// replica executed before, which the others need its commit for.
    fn unfinished(&self) -> Option<Seq> {
        self.log
            .iter()
            .find(|(_, slot)| slot.pre_prepare.is_some() && !slot.committed)
            .map(|(&seq, _)| seq)
            .filter(|&seq| seq <= self.executed.saturating_add(1))
    }

    /// The requests executed since the last tick, folded into the smoothed
    /// rate (per second of the tick's interval).
    fn update_rate(&mut self) {
        let sample = self.executed_since_tick as f64 / self.config.status_interval.as_secs_f64();
        self.rate = if self.rate == 0.0 {
            sample
        } else {
            (1.0 - RATE_GAIN) * self.rate + RATE_GAIN * sample
        };
        self.executed_since_tick = 0;
    }

    /// An idle primary proposes one null batch per tick while a recovering
    /// peer waits for a stable checkpoint further on (see `recovery.rs`).
    fn pad_for_recovery(&mut self, ctx: &mut Ctx<'_, '_>) {
        let Some(target) = self
            .recovering_peers
            .values()
            .filter(|peer| !peer.reached)
            .filter_map(|peer| peer.target)
            .max()
        else {
            return;
        };
        if self.pending.is_empty()
            && self.seq_next == self.executed.saturating_add(1)
            && self.seq_next <= target
            && self.may_propose()
        {
            ctx.count("recovery: null batch proposed");
            self.propose(Vec::new(), ctx);
        }
    }

    /// Answers a stuck peer with what it lacks.
    pub(super) fn on_status(&mut self, status: Status, ctx: &mut Ctx<'_, '_>) {
        let now = ctx.now();
        if let Some(&at) = self.status_answered_at.get(&status.replica)
            && now.since(at) < self.config.status_interval / 2
        {
            ctx.drop_message("status: answered this peer just now");
            return;
        }
        self.status_answered_at.insert(status.replica, now);
        let to = Addr::Replica(status.replica);
        self.peer_executed.insert(status.replica, status.executed);
        // A target is taken once per recovery this replica saw start, and
        // only one it can see the group reach: a faulty peer cannot make an
        // idle primary pad for ever by naming ever further ones.
        let (stable, reach) = (
            self.stable.seq,
            self.high_watermark().saturating_add(LOG_MAX),
        );
        let recovering = self
            .recovering_peers
            .get_mut(&status.replica)
            .and_then(|peer| peer.current(now));
        let seen_recovering = recovering.is_some();
        if let (Some(peer), Some(high)) = (recovering, status.recovering)
            && peer.target.is_none()
            && high > stable
            && high <= reach
        {
            peer.target = Some(high);
        }
        if status.recovering.is_some()
            && seen_recovering
            && status.replica == self.config.primary(self.view)
            && status.view == self.view
            && !status.changing
            && !self.changing
        {
            // The primary says, signed, that it is recovering: it proposes
            // nothing until the group is past its estimate, which an idle
            // group never gets to without a primary. Move on.
            ctx.count("view change: the primary is recovering");
            self.start_next_view(ctx);
            return;
        }
        if status.executed < self.stable.seq && status.stable < self.stable.seq {
            let msg = StableCheckpoint {
                replica: self.id,
                cert: self.stable.clone(),
            };
            ctx.send(to, Outbound::Message(Message::StableCheckpoint(msg)));
        }
        let behind_in_view =
            status.view < self.view || (status.view == self.view && status.changing);
        if status.changing
            && status.view < self.view
            && let Some(vc) = self.own_view_changes.get(&status.view)
        {
            // The peer still changes to a view this replica asked for and
            // moved on from without entering it: it may never have got this
            // replica's view-change for it, which it needs to complete
            // (with only a quorum of correct replicas, every one counts).
            ctx.send(to, Outbound::Message(Message::ViewChange(vc.clone())));
        }
        if behind_in_view {
            match (&self.new_view, self.changing) {
                (Some(nv), false) if nv.view == self.view => {
                    ctx.send(to, Outbound::Message(Message::NewView(nv.clone())));
                }
                (_, true) => {
                    if let Some(vc) = self.own_view_changes.get(&self.view) {
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
        let (high, first_vote): (Seq, Seq) = if planted::is(bugs::STATUS_OVERFLOW) {
            (status.executed + LOG_MAX, status.stable + 1)
        } else {
            (
                status.executed.saturating_add(LOG_MAX),
                status.stable.saturating_add(1),
            )
        };
        let first = status.wants.min(status.executed.saturating_add(1)).max(1);
        let primary = self.is_primary();
        for (&seq, slot) in self.log.range(first..=high.max(first)) {
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
        for (&seq, votes) in self.checkpoint_votes.range(first_vote..) {
            if let Some((digest, signature)) = votes.get(self.id) {
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

    /// Asks every replica for batches this replica has accepted by digest
    /// only (from a new-view's O).
    pub(super) fn fetch_missing_batches(&mut self, ctx: &mut Ctx<'_, '_>) {
        for slot in self.log.values() {
            if let Some((_, digest, _)) = slot.pre_prepare
                && !slot.has_batch()
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

    pub(super) fn on_fetch_batch(&mut self, fetch: FetchBatch, ctx: &mut Ctx<'_, '_>) {
        let found = self
            .log
            .values()
            .find_map(|slot| slot.batch_for(fetch.digest).cloned());
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

    pub(super) fn on_batch(&mut self, batch: Batch, ctx: &mut Ctx<'_, '_>) {
        let mut used = false;
        for (&seq, slot) in &mut self.log {
            if let Some((view, digest, _)) = slot.pre_prepare
                && digest == batch.digest
                && !slot.has_batch()
            {
                slot.set_batch(digest, batch.requests.clone());
                self.codec.settle_pre_prepared(view, seq);
                used = true;
            }
        }
        if !used {
            ctx.drop_message("batch: not needed");
            return;
        }
        self.execute_committed(ctx);
    }
}
