//! Vote sets: who voted for what, each voter counted once.
//!
//! A [`VoteSet`] collects the votes of a group of `n` voters (replicas
//! `0..n`) for one decision: PBFT's prepares or commits for a sequence
//! number, its checkpoint votes for one, and later HotStuff's votes for a
//! block or VR's PrepareOKs for an operation. Each vote names a *key*, what
//! the voter voted for (a digest, or a view and a digest), and carries a
//! *payload* kept for a certificate (a signature, or nothing). A quorum is
//! a number of distinct voters with the same key: [`VoteSet::count`],
//! [`VoteSet::reached`] and [`VoteSet::certificate`] take the threshold as
//! an argument, since a protocol often counts votes the set does not hold
//! (its own, unsigned until the codec signs it; a pre-prepare) and knows
//! best how many more it needs.
//!
//! # Rules
//!
//! - A voter outside `0..n` is refused ([`Refused::NotAVoter`]).
//! - A voter counts once: the same vote again is refused as
//!   [`Refused::Duplicate`].
//! - **The first vote stands.** A second vote from the same voter for
//!   another key is refused ([`Refused::Conflicting`]): it is not counted,
//!   and it does not displace the first. A correct voter votes once per
//!   decision, so only a faulty one sends two, and letting the second win
//!   would let it move its vote from one quorum to another at will. A
//!   protocol whose voters may legitimately vote again (PBFT's prepares in
//!   a later view) removes the old vote first ([`VoteSet::remove`],
//!   [`VoteSet::retain`]), saying so where it does.
//! - Votes for different keys are kept apart: they never add up.
//!
//! So a set holds at most `n` votes, whatever arrives. It is a vector
//! sorted by voter, allocated once (for `n` votes) at the first vote:
//! iteration and certificates come in voter order, the same at every
//! replica.

use wire::ReplicaId;

/// Why [`VoteSet::insert`] did not count a vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The voter is not one of the group's `0..n`.
    NotAVoter,
    /// The voter cast this very vote already.
    Duplicate,
    /// The voter voted for another key already; that first vote stands.
    Conflicting,
}

/// The votes of up to `n` voters, each for a key `K` with a payload `P`;
/// see the module docs for the rules.
#[derive(Clone, Debug)]
pub struct VoteSet<K, P = ()> {
    n: usize,
    /// Sorted by voter, at most one entry per voter, at most `n`.
    votes: Vec<(ReplicaId, K, P)>,
}

impl<K: Eq, P> VoteSet<K, P> {
    /// An empty set for voters `0..n` (it allocates at its first vote).
    pub fn new(n: usize) -> VoteSet<K, P> {
        assert!(
            n > 0 && n <= usize::from(u8::MAX) + 1,
            "a vote set has 1..=256 voters"
        );
        VoteSet {
            n,
            votes: Vec::new(),
        }
    }

    /// The number of voters the set accepts votes from.
    pub fn voters(&self) -> usize {
        self.n
    }

    /// Counts `voter`'s vote for `key`, keeping `payload` with it. Returns
    /// how many voters voted for `key` now, this one included.
    pub fn insert(&mut self, voter: ReplicaId, key: K, payload: P) -> Result<usize, Refused> {
        if usize::from(voter.0) >= self.n {
            return Err(Refused::NotAVoter);
        }
        let at = match self.votes.binary_search_by_key(&voter, |(v, _, _)| *v) {
            Ok(i) if self.votes[i].1 == key => return Err(Refused::Duplicate),
            Ok(_) => return Err(Refused::Conflicting),
            Err(at) => at,
        };
        if self.votes.capacity() == 0 {
            self.votes.reserve_exact(self.n);
        }
        self.votes.insert(at, (voter, key, payload));
        debug_assert!(self.votes.len() <= self.n);
        Ok(self.count(&self.votes[at].1))
    }

    /// How many voters voted for `key`.
    pub fn count(&self, key: &K) -> usize {
        self.votes.iter().filter(|(_, k, _)| k == key).count()
    }

    /// Whether at least `threshold` voters voted for `key`.
    pub fn reached(&self, key: &K, threshold: usize) -> bool {
        self.count(key) >= threshold
    }

    /// The voters for `key` and their payloads, in voter order.
    pub fn matching<'a>(&'a self, key: &'a K) -> impl Iterator<Item = (ReplicaId, &'a P)> + 'a {
        self.votes
            .iter()
            .filter(move |(_, k, _)| k == key)
            .map(|(v, _, p)| (*v, p))
    }

    /// Exactly `threshold` votes for `key` (those of the lowest voters),
    /// or `None` if fewer voted for it: a certificate of a quorum's worth
    /// and no more, so certificates stay small.
    pub fn certificate(&self, key: &K, threshold: usize) -> Option<Vec<(ReplicaId, P)>>
    where
        P: Clone,
    {
        if !self.reached(key, threshold) {
            return None;
        }
        Some(
            self.matching(key)
                .take(threshold)
                .map(|(v, p)| (v, p.clone()))
                .collect(),
        )
    }

    /// `voter`'s vote, if it voted.
    pub fn get(&self, voter: ReplicaId) -> Option<(&K, &P)> {
        let i = self
            .votes
            .binary_search_by_key(&voter, |(v, _, _)| *v)
            .ok()?;
        let (_, k, p) = &self.votes[i];
        Some((k, p))
    }

    /// Forgets `voter`'s vote (for a protocol whose voter may vote again,
    /// such as in a later view), returning it.
    pub fn remove(&mut self, voter: ReplicaId) -> Option<(K, P)> {
        let i = self
            .votes
            .binary_search_by_key(&voter, |(v, _, _)| *v)
            .ok()?;
        let (_, k, p) = self.votes.remove(i);
        Some((k, p))
    }

    /// Keeps only the votes for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(ReplicaId, &K, &P) -> bool) {
        self.votes.retain(|(v, k, p)| keep(*v, k, p));
    }

    /// Every vote, in voter order.
    pub fn iter(&self) -> impl Iterator<Item = (ReplicaId, &K, &P)> + '_ {
        self.votes.iter().map(|(v, k, p)| (*v, k, p))
    }

    /// Voters that voted, for any key.
    pub fn len(&self) -> usize {
        self.votes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.votes.is_empty()
    }

    pub fn clear(&mut self) {
        self.votes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(i: u8) -> ReplicaId {
        ReplicaId(i)
    }

    #[test]
    fn the_threshold_is_reached_exactly_at_the_quorum() {
        // n = 4, f = 1: a quorum of 3.
        let mut votes: VoteSet<u32, char> = VoteSet::new(4);
        assert_eq!(votes.insert(r(0), 7, 'a'), Ok(1));
        assert_eq!(votes.insert(r(2), 7, 'c'), Ok(2));
        assert!(!votes.reached(&7, 3));
        assert_eq!(votes.certificate(&7, 3), None);
        assert_eq!(votes.insert(r(1), 7, 'b'), Ok(3));
        assert!(votes.reached(&7, 3));
        assert!(!votes.reached(&7, 4));
        assert_eq!(
            votes.certificate(&7, 3),
            Some(vec![(r(0), 'a'), (r(1), 'b'), (r(2), 'c')])
        );
        // A fourth vote: the certificate stays a quorum's worth, the lowest
        // voters first.
        assert_eq!(votes.insert(r(3), 7, 'd'), Ok(4));
        assert_eq!(votes.certificate(&7, 3).unwrap().len(), 3);
        assert_eq!(votes.certificate(&7, 4).unwrap().len(), 4);
    }

    #[test]
    fn duplicates_are_ignored() {
        let mut votes: VoteSet<u32> = VoteSet::new(4);
        assert_eq!(votes.insert(r(1), 7, ()), Ok(1));
        for _ in 0..10 {
            assert_eq!(votes.insert(r(1), 7, ()), Err(Refused::Duplicate));
        }
        assert_eq!(votes.count(&7), 1);
        assert_eq!(votes.len(), 1);
        assert!(!votes.reached(&7, 2));
    }

    #[test]
    fn a_voter_outside_the_group_is_refused() {
        let mut votes: VoteSet<u32> = VoteSet::new(4);
        assert_eq!(votes.insert(r(4), 7, ()), Err(Refused::NotAVoter));
        assert_eq!(votes.insert(r(255), 7, ()), Err(Refused::NotAVoter));
        assert!(votes.is_empty());
        assert_eq!(votes.get(r(4)), None);
        // Every voter of a group of 256 is accepted, and no more than that.
        let mut all: VoteSet<u32> = VoteSet::new(256);
        for i in 0..=255 {
            assert_eq!(all.insert(r(i), 1, ()), Ok(usize::from(i) + 1));
        }
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn conflicting_digests_are_kept_apart_and_the_first_vote_stands() {
        let mut votes: VoteSet<u32, &str> = VoteSet::new(4);
        assert_eq!(votes.insert(r(0), 7, "x"), Ok(1));
        assert_eq!(votes.insert(r(1), 8, "y"), Ok(1));
        assert_eq!(votes.insert(r(2), 7, "z"), Ok(2));
        assert_eq!(votes.count(&7), 2);
        assert_eq!(votes.count(&8), 1);
        // Replica 1 changes its mind: refused, and its first vote stays.
        assert_eq!(votes.insert(r(1), 7, "w"), Err(Refused::Conflicting));
        assert_eq!(votes.count(&7), 2);
        assert_eq!(votes.get(r(1)), Some((&8, &"y")));
        assert!(!votes.reached(&7, 3));
        let voters: Vec<ReplicaId> = votes.matching(&7).map(|(v, _)| v).collect();
        assert_eq!(voters, vec![r(0), r(2)]);
        // Two keys never add up to a quorum, however many vote.
        assert_eq!(votes.insert(r(3), 8, "v"), Ok(2));
        assert!(!votes.reached(&7, 3) && !votes.reached(&8, 3));
        assert_eq!(votes.len(), 4);
    }

    #[test]
    fn a_removed_vote_may_be_cast_again() {
        let mut votes: VoteSet<(u64, u32)> = VoteSet::new(4);
        votes.insert(r(1), (1, 7), ()).unwrap();
        votes.insert(r(2), (1, 7), ()).unwrap();
        // Replica 1 votes in view 2: its view-1 vote goes first.
        assert_eq!(votes.remove(r(1)), Some(((1, 7), ())));
        assert_eq!(votes.insert(r(1), (2, 8), ()), Ok(1));
        votes.retain(|_, (view, _), _| *view >= 2);
        assert_eq!(votes.len(), 1);
        assert_eq!(votes.get(r(2)), None);
        votes.clear();
        assert!(votes.is_empty());
    }

    #[test]
    fn votes_iterate_in_voter_order_whatever_the_arrival_order() {
        let mut votes: VoteSet<u32> = VoteSet::new(7);
        for i in [5, 0, 6, 2, 3] {
            votes.insert(r(i), 1, ()).unwrap();
        }
        let order: Vec<u8> = votes.iter().map(|(v, _, _)| v.0).collect();
        assert_eq!(order, vec![0, 2, 3, 5, 6]);
    }
}
