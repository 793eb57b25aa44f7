//! A client's replies to its outstanding request, accepted once f + 1 of
//! them from distinct replicas agree (one of them at least is correct), and
//! checked lazily: a reply's MAC is checked only when the client needs it.
//!
//! With n = 3f + 1 replicas a client gets n replies per operation but needs
//! f + 1. Checking every MAC as it arrives costs n checks; checking only
//! those that form the quorum costs f + 1, and the replies that arrive after
//! it (to a request no longer outstanding) are dropped unchecked.
//!
//! What is kept stays what eager checking would keep. A reply is stored
//! unchecked only in a free slot (its replica has none yet); a reply from a
//! replica that already has one is checked before it replaces it, so a
//! forgery (a spoofed source) can neither push out a replica's genuine
//! reply nor stand in for it: at worst it sits in an empty slot until the
//! genuine reply replaces it or a quorum check throws it out. When the
//! matching replies reach f + 1, the unchecked ones among them are checked;
//! those that fail are dropped (counted as `reply: bad MAC`) and the count
//! is taken again. Each reply is checked at most once, so a flood of
//! forgeries costs no more checks than it would eagerly, and the set of
//! replies that checked is at every moment the one eager checking would
//! hold: the client accepts the same result at the same reply.

use std::fmt;

use runtime::{Context, ReplicaId};
use wire::Mac;
use wire::auth::{MacReply, Reply};

use super::client_auth::ReplyKeys;

/// Why a reply whose MAC does not check is dropped ([`ReplyKeys::check`]).
pub const BAD_MAC: &str = "reply: bad MAC";

/// The replies to one request, at most one per replica (its latest that
/// checked, or a first one not checked yet): n entries at most, found by a
/// scan. Cleared, not freed, from one request to the next.
#[derive(Debug)]
pub struct ReplyQuorum {
    keys: ReplyKeys,
    f: usize,
    entries: Vec<Held>,
    /// The views of the accepted replies, kept for the next quorum.
    views: Vec<u64>,
}

#[derive(Debug)]
struct Held {
    reply: Reply,
    mac: Mac,
    evicted: bool,
    status: Status,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Unchecked,
    Good,
    Bad,
}

/// f + 1 matching replies, one of them at least from a correct replica.
#[derive(Debug)]
pub struct Accepted<'a> {
    /// The result they agree on.
    pub result: Vec<u8>,
    /// The views they name, highest first (at least f + 1).
    pub views: &'a [u64],
}

impl ReplyQuorum {
    /// Replies checked under `keys` (one per replica), accepted at f + 1.
    pub fn new(keys: ReplyKeys, f: usize) -> ReplyQuorum {
        assert!(f < keys.replicas(), "f = {f} of {}", keys.replicas());
        ReplyQuorum {
            keys,
            f,
            entries: Vec::new(),
            views: Vec::new(),
        }
    }

    /// Forgets every reply: a new request is outstanding.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Takes `reply` (an eviction notice if `evicted`), which the caller
    /// matched to its outstanding request; the result, once f + 1 replies
    /// from distinct replicas agree on it (and on `evicted`) and each
    /// checked. Then the replies are forgotten. A reply that fails its
    /// check is dropped through `ctx`.
    pub fn offer<M, T: Copy + Eq + fmt::Debug>(
        &mut self,
        reply: MacReply,
        evicted: bool,
        ctx: &mut Context<'_, M, T>,
    ) -> Option<Accepted<'_>> {
        let MacReply { reply, mac } = reply;
        let replica = reply.replica;
        if usize::from(replica.0) >= self.keys.replicas() {
            ctx.drop_message("client: reply from no such replica");
            return None;
        }
        let at = match self.position(replica) {
            Some(at) => {
                // A second reply from this replica replaces the first
                // only if it checks.
                if let Err(refused) = self.keys.check(&reply, &mac) {
                    ctx.drop_message(refused.0);
                    return None;
                }
                self.entries[at] = Held {
                    reply,
                    mac,
                    evicted,
                    status: Status::Good,
                };
                at
            }
            None => {
                self.entries.push(Held {
                    reply,
                    mac,
                    evicted,
                    status: Status::Unchecked,
                });
                self.entries.len() - 1
            }
        };
        if self.matching(at) <= self.f {
            return None;
        }
        // Enough agree: check those not checked yet. (Before this reply no
        // result had f + 1, so exactly f + 1 agree now, this one among them:
        // if any fails, no quorum is left.)
        self.views.clear();
        let mut failed = false;
        for i in 0..self.entries.len() {
            let held = &self.entries[i];
            if !agree(held, &self.entries[at]) {
                continue;
            }
            if held.status == Status::Unchecked {
                let checked = self.keys.check(&held.reply, &held.mac);
                if let Err(refused) = checked {
                    ctx.drop_message(refused.0);
                }
                self.entries[i].status = match checked {
                    Ok(()) => Status::Good,
                    Err(_) => Status::Bad,
                };
            }
            match self.entries[i].status {
                Status::Good => self.views.push(self.entries[i].reply.view),
                Status::Bad => failed = true,
                Status::Unchecked => unreachable!("checked above"),
            }
        }
        if failed {
            self.entries.retain(|h| h.status != Status::Bad);
            return None;
        }
        debug_assert!(self.views.len() > self.f);
        self.views.sort_unstable_by(|a, b| b.cmp(a));
        let result = std::mem::take(&mut self.entries[at].reply.result);
        self.entries.clear();
        Some(Accepted {
            result,
            views: &self.views,
        })
    }

    /// The slot of `replica`'s reply.
    fn position(&self, replica: ReplicaId) -> Option<usize> {
        self.entries.iter().position(|h| h.reply.replica == replica)
    }

    /// How many replies agree with the one in slot `at`.
    fn matching(&self, at: usize) -> usize {
        let of = &self.entries[at];
        self.entries.iter().filter(|h| agree(h, of)).count()
    }
}

/// Whether two replies say the same: the same result, both eviction
/// notices or neither.
fn agree(a: &Held, b: &Held) -> bool {
    a.evicted == b.evicted && a.reply.result == b.reply.result
}

#[cfg(test)]
mod tests {
    use runtime::actor::Outbox;
    use runtime::{Addr, ClientId, Rng, Time};
    use wire::MacKey;
    use wire::crypto::tally::{Kind, Tally};

    use super::*;

    const N: usize = 4;
    const F: usize = 1;

    fn key(replica: usize) -> MacKey {
        MacKey::new(&[u8::try_from(replica).unwrap() + 1; 32])
    }

    fn quorum() -> ReplyQuorum {
        ReplyQuorum::new(ReplyKeys::new((0..N).map(key).collect()), F)
    }

    /// Replica `replica`'s reply in view `view` with `result`, MACed under
    /// its key (or a wrong one if `forged`).
    fn reply(replica: u8, view: u64, result: &[u8], forged: bool) -> MacReply {
        let reply = Reply {
            view,
            replica: ReplicaId(replica),
            client_id: ClientId(1),
            request_num: 1,
            result: result.to_vec(),
        };
        let signer = if forged {
            key(N + 1)
        } else {
            key(usize::from(replica))
        };
        let mac = signer.mac_encoded(&reply).unwrap();
        MacReply { reply, mac }
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Timer;

    /// A test's context: its drops, counted by reason.
    struct Harness {
        out: Outbox<(), Timer>,
        rng: Rng,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                out: Outbox::default(),
                rng: Rng::new(1),
            }
        }

        /// Offers `reply`; the result and views if it completed a quorum.
        fn offer(&mut self, q: &mut ReplyQuorum, reply: MacReply) -> Option<(Vec<u8>, Vec<u64>)> {
            self.offer_notice(q, reply, false)
        }

        /// Offers `reply`, an eviction notice if `evicted`.
        fn offer_notice(
            &mut self,
            q: &mut ReplyQuorum,
            reply: MacReply,
            evicted: bool,
        ) -> Option<(Vec<u8>, Vec<u64>)> {
            let mut ctx = Context::new(
                Time::ZERO,
                Addr::Client(ClientId(1)),
                &mut self.out,
                &mut self.rng,
            );
            q.offer(reply, evicted, &mut ctx)
                .map(|a| (a.result, a.views.to_vec()))
        }

        fn bad(&self) -> u64 {
            self.out.counters.get(BAD_MAC)
        }
    }

    fn checks() -> u64 {
        Tally::this_thread().get(Kind::Macs)
    }

    /// f + 1 good replies make the quorum with f + 1 checks, and the views
    /// come highest first.
    #[test]
    fn a_quorum_costs_f_plus_one_checks() {
        let mut q = quorum();
        let mut h = Harness::new();
        let replies = [
            reply(2, 3, b"ok", false),
            reply(0, 5, b"no", false),
            reply(1, 4, b"ok", false),
        ];
        let before = checks();
        let [first, other, third] = replies;
        assert_eq!(h.offer(&mut q, first), None);
        assert_eq!(h.offer(&mut q, other), None);
        assert_eq!(checks(), before, "no result has f + 1 yet: nothing checked");
        assert_eq!(h.offer(&mut q, third), Some((b"ok".to_vec(), vec![4, 3])));
        assert_eq!(checks() - before, 2, "exactly the f + 1 that agree");
        assert_eq!(h.bad(), 0);
        // The quorum forgot its replies: a new request starts afresh.
        assert_eq!(h.offer(&mut q, reply(1, 4, b"ok", false)), None);
    }

    /// A forged reply that would make the quorum is dropped, and the
    /// quorum completes on the next good one.
    #[test]
    fn a_forgery_in_the_quorum_is_dropped() {
        for forged_first in [true, false] {
            let mut q = quorum();
            let mut h = Harness::new();
            assert_eq!(h.offer(&mut q, reply(0, 1, b"ok", forged_first)), None);
            assert_eq!(h.offer(&mut q, reply(1, 1, b"ok", !forged_first)), None);
            assert_eq!(h.bad(), 1);
            assert_eq!(
                h.offer(&mut q, reply(2, 1, b"ok", false)),
                Some((b"ok".to_vec(), vec![1, 1]))
            );
            assert_eq!(h.bad(), 1);
        }
        // f + 1 forgeries alike make nothing, whatever their count.
        let mut q = quorum();
        let mut h = Harness::new();
        for replica in 0..4 {
            assert_eq!(h.offer(&mut q, reply(replica, 1, b"lie", true)), None);
        }
        assert_eq!(h.bad(), 4);
    }

    /// A forgery (a spoofed source) neither pushes out a replica's genuine
    /// reply nor keeps it from taking the slot.
    #[test]
    fn a_forgery_cannot_displace_a_genuine_reply() {
        // Genuine first: the forgery under the same replica is checked at
        // once and dropped.
        let mut q = quorum();
        let mut h = Harness::new();
        assert_eq!(h.offer(&mut q, reply(0, 1, b"ok", false)), None);
        assert_eq!(h.offer(&mut q, reply(0, 1, b"lie", true)), None);
        assert_eq!(h.bad(), 1);
        assert_eq!(
            h.offer(&mut q, reply(1, 1, b"ok", false)),
            Some((b"ok".to_vec(), vec![1, 1]))
        );
        // Forgery first: the genuine reply replaces it.
        let mut q = quorum();
        let mut h = Harness::new();
        assert_eq!(h.offer(&mut q, reply(0, 1, b"ok", true)), None);
        assert_eq!(h.offer(&mut q, reply(0, 2, b"ok", false)), None);
        assert_eq!(h.bad(), 0);
        assert_eq!(
            h.offer(&mut q, reply(1, 1, b"ok", false)),
            Some((b"ok".to_vec(), vec![2, 1]))
        );
        assert_eq!(h.bad(), 0);
    }

    /// A replica's later reply replaces its earlier one (a new view, an
    /// eviction): the client counts each replica once.
    #[test]
    fn each_replica_counts_once() {
        let mut q = quorum();
        let mut h = Harness::new();
        for _ in 0..3 {
            assert_eq!(h.offer(&mut q, reply(3, 1, b"ok", false)), None);
        }
        assert_eq!(h.offer(&mut q, reply(3, 2, b"other", false)), None);
        assert_eq!(h.offer(&mut q, reply(2, 2, b"ok", false)), None);
        assert_eq!(
            h.offer(&mut q, reply(1, 2, b"other", false)),
            Some((b"other".to_vec(), vec![2, 2]))
        );
        // Eviction notices and replies do not match each other.
        assert_eq!(h.offer_notice(&mut q, reply(0, 1, b"", false), true), None);
        assert_eq!(h.offer_notice(&mut q, reply(1, 1, b"", false), false), None);
        assert_eq!(
            h.offer_notice(&mut q, reply(2, 1, b"", false), true),
            Some((Vec::new(), vec![1, 1]))
        );
    }

    /// Replica ids beyond the group are dropped, never indexed.
    #[test]
    fn a_reply_from_no_such_replica_is_dropped() {
        let mut q = quorum();
        let mut h = Harness::new();
        for replica in [4, u8::MAX] {
            let mut r = reply(0, 1, b"ok", false);
            r.reply.replica = ReplicaId(replica);
            assert_eq!(h.offer(&mut q, r), None);
        }
        assert_eq!(h.out.counters.get("client: reply from no such replica"), 2);
        assert_eq!(q.entries.len(), 0);
    }
}
