//! The request timer and the view change (§4.4; TOCS §4.5).
//!
//! # When a backup suspects the primary
//!
//! One timer, the view-change timer, watches the primary. It runs only
//! while the backup waits for some request to execute (one a client sent
//! it, or one the primary it replaced had queued), and fires at the earlier
//! of two deadlines:
//!
//! - **stall**: nothing executed for the view-change timeout (40 ms at
//!   first, doubled by each view change that executes nothing, TOCS
//!   §4.5.2) since the last execution, or since it began waiting. A crashed,
//!   silent or wedged primary is replaced within one timeout.
//! - **the oldest request**: the request that has waited longest has waited
//!   more than [`QUEUE_DRAIN_FACTOR`] times the time the group needs to
//!   drain a queue of one request per known client at its current execution
//!   rate (within the view-change timeout and [`REQUEST_TIMEOUT_MAX`]). A
//!   correct primary orders requests first come, first served, so under any
//!   load the oldest request executes within about one queue's drain time;
//!   a primary that serves everyone but one client (TOCS §4.5.2's timer is
//!   reset by any execution, which lets it) is replaced once that client's
//!   request is older than the bound, however busy it keeps the others.
//!
//! So a saturated correct primary, whose requests wait long because there
//! are many of them, is told from a faulty one by the rate it drains them
//! at: with 10,000 clients executing at 100,000 requests a second, the
//! oldest may wait 0.4 s; with five clients at 3,000 a second, 40 ms.
//!
//! # The view change
//!
//! A backup whose timer fires moves to view v+1 and multicasts a
//! view-change with its stable checkpoint and prepared certificates; the new
//! primary, with a quorum of them, computes and multicasts the new-view;
//! backups check it by recomputing O. A replica that sees f+1 view-changes
//! for later views joins the lowest. The timer for the new view starts once
//! a quorum wants it, doubling each time. On entering the new view every
//! backup hands the new primary the requests it waits for (which restart
//! their clocks), and the new primary queues its own: requests do not wait
//! for their clients to retransmit, so one view change is enough.

use std::time::Duration;

use runtime::{Addr, ReplicaId, Time};
use wire::Signed;
use wire::control::VIEW_CHANGES_COUNTER;
use wire::pbft::{AuthRequest, Message, NewView, PrePrepare, PreparedCert, View, ViewChange};

use super::super::bugs;
use super::super::codec::{Outbound, compute_new_view};
use super::super::{
    BATCH_BYTES_MAX, QUEUE_DRAIN_FACTOR, REQUEST_TIMEOUT_MAX, VIEW_CHANGE_TIMEOUT_MAX,
    request_overhead,
};
use super::{Ctx, Replica, ReplicaTimer};
use crate::planted;

impl Replica {
    /// When the request timer fires: see the module docs. `None` while
    /// changing views (the new-view timer runs then), on the primary, and
    /// while nothing waits.
    pub(super) fn request_deadline(&self) -> Option<Time> {
        if self.changing || self.is_primary() {
            return None;
        }
        let oldest = self.waiting.oldest()?;
        let stall = self.progress_at + self.view_change_timeout;
        if planted::is(bugs::TIMER_RESET_BY_ANY_EXECUTION) {
            return Some(stall);
        }
        Some(stall.min(oldest + self.queue_timeout()))
    }

    /// How long the oldest request may wait: [`QUEUE_DRAIN_FACTOR`] times
    /// the time to execute one request per known client at the current
    /// rate, within the view-change timeout and [`REQUEST_TIMEOUT_MAX`].
    fn queue_timeout(&self) -> Duration {
        let backlog = (self.clients.len() + self.waiting.len()).max(1) as f64;
        let drain = if self.rate > 0.0 {
            QUEUE_DRAIN_FACTOR * backlog / self.rate
        } else {
            f64::INFINITY
        };
        let bound = REQUEST_TIMEOUT_MAX.as_secs_f64();
        Duration::from_secs_f64(drain.min(bound))
            .clamp(self.view_change_timeout, REQUEST_TIMEOUT_MAX)
    }

    /// Sets the request timer to [`Replica::request_deadline`], or cancels
    /// it. Called whenever what it depends on changes.
    pub(super) fn arm_request_timer(&mut self, ctx: &mut Ctx<'_, '_>) {
        if self.changing {
            return;
        }
        match self.request_deadline() {
            Some(at) => ctx.set_timer(ReplicaTimer::ViewChange, at.since(ctx.now())),
            None => ctx.cancel_timer(ReplicaTimer::ViewChange),
        }
    }

    pub(super) fn on_view_change_timeout(&mut self, ctx: &mut Ctx<'_, '_>) {
        if self.changing {
            if self.new_view_timer_armed {
                ctx.count("view change: new view took too long");
                self.start_next_view(ctx);
            }
            return;
        }
        let Some(deadline) = self.request_deadline() else {
            return; // Spurious: nothing to wait for.
        };
        if ctx.now() < deadline {
            self.arm_request_timer(ctx); // The deadline moved.
            return;
        }
        ctx.count("view change: a request waited too long");
        self.start_next_view(ctx);
    }

    pub(super) fn start_next_view(&mut self, ctx: &mut Ctx<'_, '_>) {
        match self.view.checked_add(1) {
            Some(next) => self.start_view_change(next, ctx),
            None => ctx.drop_message("view change: no view after the last"),
        }
    }

    /// f+1 peers said they executed beyond this replica: at least one of them
    /// is correct, so the group made progress without it.
    pub(super) fn lagging(&self) -> bool {
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
        ctx.count(VIEW_CHANGES_COUNTER);
        ctx.note(|| format!("changes to view {view}"));
        self.view = view;
        self.changing = true;
        self.codec.set_changing(true);
        self.pending_to_waiting(ctx);
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
        self.keep_view_change(vc.clone());
        self.own_view_changes.insert(view, vc.clone());
        while self.own_view_changes.len() > super::OWN_VIEW_CHANGES_MAX {
            self.own_view_changes.pop_first();
        }
        ctx.send_to_replicas(Outbound::Message(Message::ViewChange(vc)));
        ctx.cancel_timer(ReplicaTimer::ViewChange);
        self.new_view_timer_armed = false;
        self.try_new_view(ctx);
        self.arm_new_view_timer(ctx);
    }

    /// §4.5.2 (TOCS): the timer for a new view starts only once a quorum
    /// wants that view, so a replica cannot run ahead alone through views
    /// nobody else joins; each view change doubles its length.
    fn arm_new_view_timer(&mut self, ctx: &mut Ctx<'_, '_>) {
        if !self.changing || self.new_view_timer_armed {
            return;
        }
        let view = self.view;
        let wanting = self
            .view_changes
            .range((view, ReplicaId(0))..=(view, ReplicaId(u8::MAX)))
            .count();
        if wanting < self.config.quorum() {
            return;
        }
        self.new_view_timer_armed = true;
        ctx.set_timer(ReplicaTimer::ViewChange, self.view_change_timeout);
        self.view_change_timeout = (self.view_change_timeout * 2).min(VIEW_CHANGE_TIMEOUT_MAX);
    }

    pub(super) fn on_view_change(&mut self, vc: Signed<ViewChange>, ctx: &mut Ctx<'_, '_>) {
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
        if self.view_changes.contains_key(&(view, replica)) {
            ctx.drop_message("view-change: duplicate");
            return;
        }
        self.keep_view_change(vc);
        // §4.5.2 (TOCS): f+1 replicas want a later view: join the lowest, so
        // a view change never waits on a timer that is not running. At least
        // one of them is correct, so the view joined is no higher than a
        // correct replica asked for. (Each replica counts once, with the
        // highest view it asked for.)
        let mut highest: std::collections::BTreeMap<ReplicaId, View> = Default::default();
        for &(v, r) in self.view_changes.keys() {
            if r != self.id && v > self.view {
                highest.insert(r, v);
            }
        }
        let mut later: Vec<View> = highest.into_values().collect();
        if later.len() > self.config.f {
            later.sort_unstable();
            ctx.count("view change: joined");
            self.start_view_change(later[0], ctx);
            return;
        }
        self.try_new_view(ctx);
        self.arm_new_view_timer(ctx);
    }

    /// A primary's queue becomes requests to wait for, handed to the next
    /// primary with the rest.
    fn pending_to_waiting(&mut self, ctx: &mut Ctx<'_, '_>) {
        let now = ctx.now();
        for request in std::mem::take(&mut self.pending) {
            if !self.waiting.insert(request, now) {
                ctx.drop_message("request: waiting table full");
            }
        }
        self.pending_bytes = 0;
        self.proposed.clear();
    }

    /// Keeps a (checked) view-change message, and at most
    /// `VIEW_CHANGES_PER_REPLICA` views of its sender, the latest.
    fn keep_view_change(&mut self, vc: Signed<ViewChange>) {
        let sender = vc.payload.replica;
        self.view_changes.insert((vc.payload.view, sender), vc);
        let views: Vec<View> = self
            .view_changes
            .keys()
            .filter(|(_, r)| *r == sender)
            .map(|(v, _)| *v)
            .collect();
        for &v in views
            .iter()
            .take(views.len().saturating_sub(super::VIEW_CHANGES_PER_REPLICA))
        {
            self.view_changes.remove(&(v, sender));
        }
    }

    /// §4.4: the new primary, with a quorum of view-changes for its view,
    /// computes and multicasts the new-view message.
    fn try_new_view(&mut self, ctx: &mut Ctx<'_, '_>) {
        if !self.changing || !self.is_primary() {
            return;
        }
        let view = self.view;
        let chosen: Vec<Signed<ViewChange>> = self
            .view_changes
            .range((view, ReplicaId(0))..=(view, ReplicaId(u8::MAX)))
            .map(|(_, vc)| vc)
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
    /// the codec) for a view it has not yet started. A restarted replica
    /// that is the new view's primary gets it relayed by a peer (the codec
    /// names the relayer as sender), and rejoins its own view.
    pub(super) fn on_new_view(&mut self, nv: NewView, ctx: &mut Ctx<'_, '_>) {
        if nv.view < self.view || (nv.view == self.view && !self.changing) {
            ctx.drop_message("new-view: not a later view");
            return;
        }
        self.enter_new_view(nv, ctx);
    }

    /// Starts view `nv.view`: adopts the highest stable checkpoint in V,
    /// prepares O's pre-prepares, and hands the requests it waits for to the
    /// new primary.
    fn enter_new_view(&mut self, nv: NewView, ctx: &mut Ctx<'_, '_>) {
        let view = nv.view;
        let (stable, entries) =
            compute_new_view(&self.config, nv.view_changes.iter().map(|vc| &vc.payload));
        self.view = view;
        self.changing = false;
        self.codec.settle_view(view);
        self.codec.set_changing(false);
        self.new_view_timer_armed = false;
        self.view_changes.retain(|&(v, _), _| v > view);
        self.own_view_changes.retain(|&v, _| v > view);
        // A primary that joins a later view without a view change of its
        // own (a relayed new-view) still holds its queue.
        self.pending_to_waiting(ctx);
        ctx.count("view change: new view");
        ctx.note(|| format!("enters view {view}"));
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
            let slot = self.slot(seq);
            slot.enter(view, digest, signature);
            if slot.take_batch_for(digest, null_digest) {
                self.codec.settle_pre_prepared(view, seq);
            }
        }
        self.seq_next = max_s
            .max(self.stable.seq)
            .max(self.executed)
            .saturating_add(1);
        self.new_view = Some(nv);
        self.progress_at = ctx.now();
        self.hand_over_waiting(ctx);
        self.fetch_missing_batches(ctx);
        for seq in self.log.keys().copied().collect::<Vec<_>>() {
            self.advance(seq, ctx);
        }
        self.execute_committed(ctx);
        self.try_propose(ctx);
        self.arm_request_timer(ctx);
    }

    /// On entering a view: the new primary queues the requests it waited
    /// for; a backup relays its own to the new primary, in as few messages
    /// as batches allow, and times them afresh.
    fn hand_over_waiting(&mut self, ctx: &mut Ctx<'_, '_>) {
        let now = ctx.now();
        if planted::is(bugs::NO_RELAY_ON_NEW_VIEW) {
            self.waiting.restart_clock(now);
            return;
        }
        let requests = self.waiting.drain();
        if self.is_primary() {
            for request in requests {
                self.queue(request, ctx);
            }
            return;
        }
        let primary = Addr::Replica(self.config.primary(self.view));
        let overhead = request_overhead(self.config.n);
        let mut batch: Vec<AuthRequest> = Vec::new();
        let mut bytes = 0;
        for request in requests {
            let size = request.request.op.len() + overhead;
            if batch.len() == self.config.batch_max
                || (!batch.is_empty() && bytes + size > BATCH_BYTES_MAX)
            {
                let relayed = Message::Relayed(self.id, std::mem::take(&mut batch));
                ctx.send(primary, Outbound::Message(relayed));
                bytes = 0;
            }
            bytes += size;
            self.waiting.insert(request.clone(), now);
            batch.push(request);
        }
        if !batch.is_empty() {
            ctx.count("view change: waiting requests relayed");
            ctx.send(primary, Outbound::Message(Message::Relayed(self.id, batch)));
        }
    }
}
