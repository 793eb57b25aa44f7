//! The benchmark clients' history: every operation a generator marks as
//! recorded ([`super::OpSource::next_op`]; the key-value workload marks those
//! on its sampled keys, see [`wire::history`]), with its invocation and
//! completion times and its result, for a linearizability check after the
//! run.
//!
//! Times come from the client threads' round clocks, all of one process and
//! measured from the one instant the threads share, so they compare across
//! threads. An invocation is stamped with the clock read before the request
//! is sent, a completion with the clock read after the reply was received:
//! each recorded interval contains the real one, which is what the checker
//! needs (a wider interval only admits more linearizations).
//!
//! Memory is bounded: each of the `t` threads records at most
//! [`HISTORY_OPS_MAX`]` / t` operations and [`HISTORY_BYTES_MAX`]` / t` bytes
//! of operations and results. A thread that reaches its bound sets a cut
//! `T`, the earliest of the threads' cuts (its clock then), common to all
//! clients; the merged history ([`merge`]) keeps what was invoked before `T`
//! and forgets every result that came at or after it (that operation becomes
//! one that never completed). Why that stays sound: every thread records
//! every marked operation until it sees a cut or reaches its own bound (and
//! then its own cut is at or before what it skipped), so every operation
//! invoked before `T` is in the history. The result is the run's history as
//! it stood at time `T`: a complete operation in it finished before `T`,
//! so its linearization point is before `T`, and so is that of every write
//! it could have observed, which was therefore invoked before `T` and is in
//! the history too (complete, or pending if it finished later, which lets it
//! take effect or not). Keeping results that came after `T` would not be
//! sound: such a read may return the value of a write invoked after `T`,
//! which was not recorded. A prefix of a linearizable history is
//! linearizable, so the cut can hide a violation after `T`, never invent
//! one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use wire::ClientId;
use wire::history::{HISTORY_BYTES_MAX, HISTORY_OPS_MAX, HistoryOp};

/// A run's recorded operations, merged over its client threads, cut as the
/// module says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    pub ops: Vec<HistoryOp>,
    /// The cut, ns since the clients started, if a bound was reached.
    pub cut_ns: Option<u64>,
}

/// What the client threads of a run share: the cut, and each thread's part
/// once it stopped.
#[derive(Debug)]
pub(super) struct HistoryShared {
    /// `u64::MAX` while no thread has reached its bound.
    cut_ns: AtomicU64,
    parts: Mutex<Vec<Vec<HistoryOp>>>,
}

impl HistoryShared {
    pub(super) fn new() -> Arc<HistoryShared> {
        Arc::new(HistoryShared {
            cut_ns: AtomicU64::new(u64::MAX),
            parts: Mutex::new(Vec::new()),
        })
    }

    fn cut(&self) -> u64 {
        self.cut_ns.load(Ordering::Relaxed)
    }

    fn cut_at(&self, now_ns: u64) {
        self.cut_ns.fetch_min(now_ns, Ordering::Relaxed);
    }

    /// The cut, if any thread set one. Read after every thread stopped.
    pub(super) fn final_cut(&self) -> Option<u64> {
        let cut = self.cut_ns.load(Ordering::SeqCst);
        (cut != u64::MAX).then_some(cut)
    }

    /// A stopped thread hands in its part.
    pub(super) fn hand_in(&self, recorder: &mut Recorder) {
        if recorder.ops.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut recorder.ops);
        self.parts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ops);
    }

    /// The merged history, once every thread stopped.
    pub(super) fn take(&self) -> Recorded {
        let parts = std::mem::take(&mut *self.parts.lock().unwrap_or_else(PoisonError::into_inner));
        merge(parts, self.final_cut())
    }
}

/// One client thread's part of the history.
#[derive(Debug)]
pub(super) struct Recorder {
    shared: Arc<HistoryShared>,
    ops: Vec<HistoryOp>,
    ops_max: usize,
    bytes: usize,
    bytes_max: usize,
}

impl Recorder {
    /// The recorder of one of `threads` client threads: its share of the
    /// bounds.
    pub(super) fn new(shared: Arc<HistoryShared>, threads: u32) -> Recorder {
        let threads = threads.max(1) as usize;
        Recorder::with_bounds(
            shared,
            HISTORY_OPS_MAX / threads,
            HISTORY_BYTES_MAX / threads,
        )
    }

    fn with_bounds(shared: Arc<HistoryShared>, ops_max: usize, bytes_max: usize) -> Recorder {
        Recorder {
            shared,
            ops: Vec::new(),
            ops_max,
            bytes: 0,
            bytes_max,
        }
    }

    /// Client `client` invokes `op` at `now_ns`: recorded, and the record's
    /// index returned, unless the cut has passed or this thread's bound is
    /// reached (which sets the cut at `now_ns`).
    pub(super) fn invoke(&mut self, client: ClientId, op: &[u8], now_ns: u64) -> Option<u32> {
        if now_ns >= self.shared.cut() {
            return None;
        }
        if self.ops.len() >= self.ops_max || self.bytes + op.len() > self.bytes_max {
            self.shared.cut_at(now_ns);
            return None;
        }
        self.bytes += op.len();
        self.ops.push(HistoryOp {
            client: client.0,
            op: op.to_vec(),
            invoked_ns: now_ns,
            completed: None,
        });
        Some((self.ops.len() - 1) as u32)
    }

    /// The operation recorded at `index` completed at `now_ns` with
    /// `result`. A result that would pass the thread's byte bound sets the
    /// cut at `now_ns` instead, which makes the operation pending in the
    /// merged history (it completed at the cut), so it is not kept.
    pub(super) fn complete(&mut self, index: u32, now_ns: u64, result: Vec<u8>) {
        if now_ns >= self.shared.cut() {
            return;
        }
        if self.bytes + result.len() > self.bytes_max {
            self.shared.cut_at(now_ns);
            return;
        }
        self.bytes += result.len();
        let record = &mut self.ops[index as usize];
        debug_assert!(record.completed.is_none(), "an operation completes once");
        record.completed = Some((now_ns, result));
    }

    #[cfg(test)]
    pub(super) fn shared(&self) -> &Arc<HistoryShared> {
        &self.shared
    }

    #[cfg(test)]
    fn into_ops(self) -> Vec<HistoryOp> {
        self.ops
    }
}

/// The threads' parts as one history, cut at `cut_ns` if a bound was
/// reached: operations invoked at or after the cut are dropped, results that
/// came at or after it forgotten.
pub(super) fn merge(parts: Vec<Vec<HistoryOp>>, cut_ns: Option<u64>) -> Recorded {
    let mut ops: Vec<HistoryOp> = parts.into_iter().flatten().collect();
    if let Some(cut) = cut_ns {
        ops.retain(|op| op.invoked_ns < cut);
        for op in &mut ops {
            if op.completed.as_ref().is_some_and(|&(at, _)| at >= cut) {
                op.completed = None;
            }
        }
    }
    ops.sort_by_key(|op| (op.invoked_ns, op.client));
    Recorded { ops, cut_ns }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(n: u8) -> Vec<u8> {
        vec![n; 4]
    }

    #[test]
    fn records_until_the_bound_then_cuts() {
        let shared = HistoryShared::new();
        let mut a = Recorder::with_bounds(Arc::clone(&shared), 2, 1000);
        assert_eq!(a.invoke(ClientId(1), &op(1), 10), Some(0));
        assert_eq!(a.invoke(ClientId(2), &op(2), 20), Some(1));
        a.complete(0, 25, op(9));
        // The third operation passes the bound: the cut is at 30.
        assert_eq!(a.invoke(ClientId(1), &op(3), 30), None);
        assert_eq!(shared.final_cut(), Some(30));
        // A result after the cut is not kept.
        a.complete(1, 35, op(9));
        let ops = a.into_ops();
        assert_eq!(ops[0].completed, Some((25, op(9))));
        assert_eq!(ops[1].completed, None);
    }

    /// Another thread that has not reached its bound still records what it
    /// invokes before the cut, and nothing from the cut on.
    #[test]
    fn the_cut_is_common_to_every_thread() {
        let shared = HistoryShared::new();
        let mut a = Recorder::with_bounds(Arc::clone(&shared), 1, 1000);
        let mut b = Recorder::with_bounds(Arc::clone(&shared), 100, 1000);
        assert_eq!(b.invoke(ClientId(7), &op(1), 5), Some(0));
        assert_eq!(a.invoke(ClientId(1), &op(1), 10), Some(0));
        assert_eq!(a.invoke(ClientId(1), &op(2), 50), None);
        // b's round clock was read before a's cut: still recorded.
        assert_eq!(b.invoke(ClientId(8), &op(2), 40), Some(1));
        assert_eq!(b.invoke(ClientId(8), &op(3), 50), None);
        assert_eq!(b.invoke(ClientId(8), &op(3), 60), None);
        b.complete(0, 45, op(9));
        b.complete(1, 49, op(9));
        let merged = merge(vec![a.into_ops(), b.into_ops()], shared.final_cut());
        assert_eq!(merged.cut_ns, Some(50));
        let times: Vec<_> = merged
            .ops
            .iter()
            .map(|op| (op.client, op.invoked_ns, op.completed.as_ref().map(|c| c.0)))
            .collect();
        assert_eq!(times, [(7, 5, Some(45)), (1, 10, None), (8, 40, Some(49))]);
    }

    /// The merge drops what a thread recorded at or after a cut another
    /// thread set earlier, and forgets results from the cut on.
    #[test]
    fn the_merge_applies_the_earliest_cut() {
        let shared = HistoryShared::new();
        let mut late = Recorder::with_bounds(Arc::clone(&shared), 100, 1000);
        assert_eq!(late.invoke(ClientId(1), &op(1), 100), Some(0));
        assert_eq!(late.invoke(ClientId(1), &op(2), 200), Some(1));
        late.complete(0, 150, op(9));
        shared.cut_at(180);
        shared.cut_at(300);
        let merged = merge(vec![late.into_ops()], shared.final_cut());
        assert_eq!(merged.cut_ns, Some(180));
        assert_eq!(merged.ops.len(), 1);
        assert_eq!(merged.ops[0].completed, Some((150, op(9))));
        // A result exactly at the cut is forgotten too.
        let at_cut = HistoryOp {
            client: 2,
            op: op(3),
            invoked_ns: 170,
            completed: Some((180, op(9))),
        };
        assert_eq!(merge(vec![vec![at_cut]], Some(180)).ops[0].completed, None);
    }

    #[test]
    fn bytes_are_bounded_too() {
        let shared = HistoryShared::new();
        let mut r = Recorder::with_bounds(Arc::clone(&shared), 100, 10);
        assert_eq!(r.invoke(ClientId(1), &op(1), 1), Some(0));
        assert_eq!(r.invoke(ClientId(1), &op(2), 2), Some(1));
        // 8 of 10 bytes used: a 4-byte result does not fit, and cuts.
        r.complete(0, 3, op(9));
        assert_eq!(shared.final_cut(), Some(3));
        assert_eq!(r.invoke(ClientId(1), &[1], 4), None);
        let merged = merge(vec![r.into_ops()], shared.final_cut());
        assert!(merged.ops.iter().all(|op| op.completed.is_none()));
        assert_eq!(merged.ops.len(), 2);
    }

    #[test]
    fn thread_shares_of_the_bounds_add_up_to_at_most_the_run_bounds() {
        for threads in [1, 2, 3, 7, 64] {
            let r = Recorder::new(HistoryShared::new(), threads);
            assert!(r.ops_max * threads as usize <= HISTORY_OPS_MAX);
            assert!(r.bytes_max * threads as usize <= HISTORY_BYTES_MAX);
        }
        // No cut without a bound reached.
        let merged = merge(Vec::new(), None);
        assert_eq!(merged, Recorded::default());
    }
}
