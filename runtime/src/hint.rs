//! Hints: the one channel from a node's [`State`](crate::State) to its
//! [`SharedState`](crate::SharedState).
//!
//! Decoders run on other threads than the protocol, ahead of it. Some of
//! what they check the protocol has already settled: a phase finished for a
//! sequence number, a view entered, a view change under way. A hint lets the
//! protocol say so, and the decoders drop what the protocol would drop
//! anyway before paying for its signature. The protocol state holds the
//! hints (through its codec) and writes them; decoders read them, without
//! locks.
//!
//! The contract, which every hint type keeps and every use must respect:
//!
//! - **Drop-only.** A decoder may use a hint only to drop a message that the
//!   protocol state would drop or ignore once it got there; never to accept
//!   one, skip a check on one it passes on, or change what it decodes. A
//!   node with every hint lost behaves the same, only slower.
//! - **Stale and unordered.** A read may see an older value, and two hints
//!   may be seen out of the order they were written. Because of the first
//!   rule, that costs at most a check the decoder could have skipped.
//! - **Bounded.** Each hint is a fixed number of words: nothing a peer sends
//!   can grow one.
//!
//! Three shapes cover what protocols have needed so far: a [`Watermark`]
//! that only rises (the latest view entered), a [`Flag`] (a view change in
//! progress), and [`Marks`], a fixed ring of `(round, slot)` pairs (the
//! sequence numbers whose phase finished in a view).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A number that only rises: [`Watermark::raise`] keeps the larger.
#[derive(Debug, Default)]
pub struct Watermark(AtomicU64);

impl Watermark {
    pub fn new(value: u64) -> Watermark {
        Watermark(AtomicU64::new(value))
    }

    pub fn raise(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A yes or no the state sets and clears.
#[derive(Debug, Default)]
pub struct Flag(AtomicBool);

impl Flag {
    pub fn set(&self, value: bool) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// `(round, slot)` pairs marked done, in a ring of `N` entries indexed by
/// slot: marking slot `s` overwrites slot `s - N`. Size it above the
/// protocol's window of live slots (twice PBFT's log, say), so that a slot
/// is overwritten only once it is below the protocol's low watermark and
/// dropped anyway. Slot 0 is never marked (an empty entry must not match).
#[derive(Debug)]
pub struct Marks<const N: usize> {
    slots: [(AtomicU64, AtomicU64); N],
}

impl<const N: usize> Default for Marks<N> {
    fn default() -> Self {
        Marks {
            slots: std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0))),
        }
    }
}

impl<const N: usize> Marks<N> {
    fn entry(&self, slot: u64) -> &(AtomicU64, AtomicU64) {
        &self.slots[(slot % N as u64) as usize]
    }

    /// Marks `slot` done in `round`.
    pub fn mark(&self, round: u64, slot: u64) {
        let (r, s) = self.entry(slot);
        r.store(round, Ordering::Relaxed);
        s.store(slot, Ordering::Release);
    }

    /// Whether `slot` was marked in `round`. A reader racing a write may see
    /// the round of one mark with the slot of another: by the drop-only
    /// rule, that can only drop a message for a slot the protocol drops
    /// anyway (the older slot is below its window).
    pub fn is_marked(&self, round: u64, slot: u64) -> bool {
        let (r, s) = self.entry(slot);
        slot != 0 && s.load(Ordering::Acquire) == slot && r.load(Ordering::Relaxed) == round
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_only_rises() {
        let w = Watermark::new(3);
        w.raise(2);
        assert_eq!(w.get(), 3);
        w.raise(9);
        assert_eq!(w.get(), 9);
    }

    #[test]
    fn marks_match_round_and_slot_and_slot_zero_never() {
        let marks = Marks::<4>::default();
        assert!(!marks.is_marked(0, 0), "an empty entry matches nothing");
        marks.mark(1, 5);
        assert!(marks.is_marked(1, 5));
        assert!(!marks.is_marked(2, 5), "another round");
        assert!(!marks.is_marked(1, 1), "same entry, another slot");
        marks.mark(1, 9);
        assert!(!marks.is_marked(1, 5), "overwritten by the slot N above");
        assert!(marks.is_marked(1, 9));
    }

    #[test]
    fn a_flag_sets_and_clears() {
        let flag = Flag::default();
        assert!(!flag.get());
        flag.set(true);
        assert!(flag.get());
        flag.set(false);
        assert!(!flag.get());
    }
}
