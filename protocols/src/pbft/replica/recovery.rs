//! Recovery of a replica that restarted with empty memory (TOCS §4.3.2,
//! proactive recovery).
//!
//! A replica that comes back without its state must not act as if it were
//! new: before it crashed it may have sent prepares and commits (and, as
//! primary, pre-prepares) for sequence numbers up to its high watermark, and
//! voting again there for something else would be equivocation; its empty
//! prepared set in a view change could drop a request that committed.
//! Learning the view and the stable checkpoint is not enough. So it
//! recovers first, and counts toward the f faulty replicas until it has:
//!
//! 1. **Estimating**: it asks every replica for its latest checkpoint `c` and
//!    the highest sequence number it accepted a pre-prepare for, `p`
//!    (`QueryStable`, with a fresh nonce so that replies to an earlier
//!    recovery cannot be replayed), and takes part in nothing else.
//! 2. From the replies it picks `c_M`: a value `c` reported by some replica
//!    `j` such that n − q + f replicas other than `j` reported a `c` at most
//!    `c_M` (q the quorum; 2f when n = 3f+1) and f others a `p` at least
//!    `c_M` (its own, amnesiac, values count as zero), the highest such.
//!    The quorum that made its last stable checkpoint before the crash has
//!    at least q − f correct members, which report that checkpoint or a
//!    later one; with n − q + f + 1 replicas at or below `c_M` they cannot
//!    all be elsewhere, so that checkpoint was at most `c_M` and its high
//!    watermark at most `H = c_M + L`. With f + 1 prepared at or above
//!    `c_M`, one correct replica got there, so a faulty one cannot push
//!    `c_M`, and the wait, past what the group reached.
//! 3. **Waiting**: it takes part again (view changes, state transfer,
//!    execution of what others commit), but sends no pre-prepare, prepare or
//!    commit for any sequence number at or below `H`, until a checkpoint at
//!    or above `H` is stable and it has that state. (As the primary of a new
//!    view it still sends the new-view: every backup recomputes its
//!    pre-prepares from V, so it cannot say anything else there; as the
//!    primary of its current view it says it recovers, and the backups move
//!    to the next view.) Its status messages say `H`, so that an idle
//!    primary that saw its query fills the sequence numbers up to it with
//!    null batches, once per recovery, and recovery does not wait for
//!    clients.
//!
//! Then it is **done**: nothing it may have said before the crash lies above
//! the stable checkpoint any more.

use std::collections::BTreeMap;
use std::time::Duration;

use runtime::{Addr, Time};
use wire::ReplicaId;
use wire::pbft::{Message, QueryStable, ReplyStable, Seq};

use super::super::LOG_MAX;
use super::super::codec::{Inbound, Outbound};
use super::{Ctx, PeerRecovery, Replica};

/// How long after a peer started a recovery another one counts: a faulty
/// peer that says it recovers over and over gets an idle primary to pad for
/// it this often at most.
pub(super) const RECOVERY_REPEAT_MIN: Duration = Duration::from_secs(2);

impl PeerRecovery {
    fn starting(now: Time) -> PeerRecovery {
        PeerRecovery {
            started: now,
            target: None,
            reached: false,
            again: false,
        }
    }

    /// The peer's recovery, if one is under way: a deferred one starts now
    /// if its time has come.
    pub(super) fn current(&mut self, now: Time) -> Option<&mut PeerRecovery> {
        if self.again && now.since(self.started) >= RECOVERY_REPEAT_MIN {
            *self = PeerRecovery::starting(now);
        }
        (!self.reached).then_some(self)
    }
}

/// Where a replica stands in recovering from a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Asking the group where it stands: per replica, the lowest checkpoint
    /// and the highest prepared sequence number it reported.
    Estimating {
        nonce: u64,
        replies: BTreeMap<ReplicaId, (Seq, Seq)>,
    },
    /// Waiting for a stable checkpoint at or above `high`, voting only above
    /// it.
    Waiting { high: Seq },
    /// Not recovering.
    Done,
}

impl Recovery {
    pub(super) fn starting() -> Recovery {
        Recovery::Estimating {
            nonce: 0,
            replies: BTreeMap::new(),
        }
    }

    pub fn is_estimating(&self) -> bool {
        matches!(self, Recovery::Estimating { .. })
    }

    /// Whether this replica must not send a pre-prepare, prepare or commit
    /// for `seq`.
    pub(super) fn mutes(&self, seq: Seq) -> bool {
        match self {
            Recovery::Estimating { .. } => true,
            Recovery::Waiting { high } => seq <= *high,
            Recovery::Done => false,
        }
    }
}

/// What an estimating replica handles: the estimation's own messages.
pub(super) fn handled_while_estimating(msg: &Inbound) -> bool {
    matches!(
        msg,
        Inbound::Message(Message::QueryStable(_) | Message::ReplyStable(_))
    )
}

impl Replica {
    /// On start: a restarted replica asks where the group stands.
    pub(super) fn start_recovery(&mut self, ctx: &mut Ctx<'_, '_>) {
        if let Recovery::Estimating { nonce, .. } = &mut self.recovery {
            *nonce = ctx.rng().next_u64();
            ctx.note(|| "recovering: estimating the high watermark".to_string());
            self.query_stable(ctx);
        }
    }

    /// Asks every replica for its checkpoint and prepared sequence numbers
    /// (again, on every status tick until enough answered).
    pub(super) fn query_stable(&mut self, ctx: &mut Ctx<'_, '_>) {
        if let Recovery::Estimating { nonce, .. } = self.recovery {
            ctx.count("recovery: query sent");
            let query = QueryStable {
                replica: self.id,
                nonce,
            };
            ctx.send_to_replicas(Outbound::QueryStable(query));
        }
    }

    /// Answers a recovering peer with where this replica stands, and notes
    /// that it recovers (one recovery per [`RECOVERY_REPEAT_MIN`]: what an
    /// idle primary pads for).
    pub(super) fn on_query_stable(&mut self, query: QueryStable, ctx: &mut Ctx<'_, '_>) {
        let now = ctx.now();
        match self.recovering_peers.get_mut(&query.replica) {
            // Still estimating: the same recovery asking again.
            Some(peer) if peer.target.is_none() => {}
            Some(peer) if now.since(peer.started) < RECOVERY_REPEAT_MIN => peer.again = true,
            _ => {
                self.recovering_peers
                    .insert(query.replica, PeerRecovery::starting(now));
            }
        }
        let checkpoint = self
            .own_checkpoints
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.stable.seq)
            .max(self.stable.seq);
        let prepared = self
            .log
            .iter()
            .rev()
            .find(|(_, slot)| slot.pre_prepare.is_some())
            .map_or(self.executed, |(&seq, _)| seq)
            .max(self.executed);
        let reply = ReplyStable {
            replica: self.id,
            to: query.replica,
            nonce: query.nonce,
            checkpoint,
            prepared,
        };
        ctx.send(Addr::Replica(query.replica), Outbound::ReplyStable(reply));
    }

    pub(super) fn on_reply_stable(&mut self, reply: ReplyStable, ctx: &mut Ctx<'_, '_>) {
        let f = self.config.f;
        let Recovery::Estimating { nonce, replies } = &mut self.recovery else {
            ctx.drop_message("reply-stable: not recovering");
            return;
        };
        if reply.nonce != *nonce || reply.to != self.id {
            ctx.drop_message("reply-stable: not for this recovery");
            return;
        }
        let entry = replies
            .entry(reply.replica)
            .or_insert((reply.checkpoint, reply.prepared));
        entry.0 = entry.0.min(reply.checkpoint);
        entry.1 = entry.1.max(reply.prepared);
        let at_most = self.config.n - self.config.quorum() + f;
        let Some(c_m) = estimate(replies, at_most, f) else {
            return;
        };
        let high = c_m.saturating_add(LOG_MAX);
        self.recovery = Recovery::Waiting { high };
        ctx.count("recovery: high watermark estimated");
        ctx.note(|| format!("recovering: waits for a stable checkpoint at n{high} or above"));
        // Say so at once: peers answer with the stable checkpoint and the
        // view, and an idle primary starts filling up to `high`.
        self.behind = true;
        self.executed_at_status = self.executed;
        self.send_status(ctx);
    }

    /// A recovering replica is done once a checkpoint at or above its
    /// estimate is stable and it has that checkpoint's state.
    pub(super) fn check_recovered(&mut self, ctx: &mut Ctx<'_, '_>) {
        let Recovery::Waiting { high } = self.recovery else {
            return;
        };
        if self.stable.seq >= high && self.transfer.is_none() && self.executed >= self.stable.seq {
            self.recovery = Recovery::Done;
            ctx.count("recovery: done");
            ctx.note(|| format!("recovered at stable checkpoint n{}", self.stable.seq));
        }
    }
}

/// The highest `c_M` the replies allow (TOCS §4.3.2): reported by some `j`
/// with `at_most` replicas other than `j` at or below it and `f` others
/// prepared at or above it, the recovering replica's own checkpoint and
/// prepared numbers taken as zero; `None` until the replies allow one.
fn estimate(
    replies: &BTreeMap<ReplicaId, (Seq, Seq)>,
    at_most_needed: usize,
    f: usize,
) -> Option<Seq> {
    replies
        .iter()
        .filter(|&(j, &(c_j, _))| {
            let others = || replies.iter().filter(move |(k, _)| *k != j);
            let at_most = others().filter(|(_, (c, _))| *c <= c_j).count() + 1;
            let prepared_beyond =
                others().filter(|(_, (_, p))| *p >= c_j).count() + usize::from(c_j == 0);
            at_most >= at_most_needed && prepared_beyond >= f
        })
        .map(|(_, &(c, _))| c)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(values: &[(u8, Seq, Seq)]) -> BTreeMap<ReplicaId, (Seq, Seq)> {
        values
            .iter()
            .map(|&(r, c, p)| (ReplicaId(r), (c, p)))
            .collect()
    }

    #[test]
    fn three_correct_replies_give_their_checkpoint() {
        assert_eq!(
            estimate(&replies(&[(1, 16, 20), (2, 16, 21), (3, 8, 18)]), 2, 1),
            Some(16)
        );
    }

    #[test]
    fn one_reply_is_not_enough_with_f_one() {
        // One reply and its own zero: the checkpoint it reports has one
        // replica at or below it, not two.
        assert_eq!(estimate(&replies(&[(1, 16, 20)]), 2, 1), None);
        assert_eq!(
            estimate(&replies(&[(1, 16, 20), (2, 16, 17)]), 2, 1),
            Some(16)
        );
    }

    #[test]
    fn a_faulty_reply_cannot_push_the_estimate_past_what_others_prepared() {
        // n = 7, f = 2: one faulty replica says u64::MAX; the correct say 24.
        let values = [
            (1, u64::MAX, u64::MAX),
            (2, 24, 30),
            (3, 24, 31),
            (4, 24, 29),
            (5, 16, 25),
        ];
        assert_eq!(estimate(&replies(&values), 4, 2), Some(24));
    }

    #[test]
    fn with_n_six_the_estimate_needs_three_at_or_below() {
        // n = 6, f = 1, quorum 4: replicas 0 (recovering), 1, 2 and 3 made
        // checkpoint 16 stable before 0 crashed; 4 is correct but behind,
        // 5 is faulty. With 2f = 2 replicas at or below (4 and its own
        // zero), 0 would settle for 0 and vote again in 17..=32.
        let early = replies(&[(4, 0, 0), (5, 0, 16)]);
        assert_eq!(estimate(&early, 2, 1), Some(0), "the n = 3f+1 threshold");
        assert_eq!(estimate(&early, 3, 1), None);
        let later = replies(&[(4, 0, 0), (5, 0, 16), (1, 16, 20)]);
        assert_eq!(estimate(&later, 3, 1), Some(16));
    }
}
