//! Linearizability of key-value histories.
//!
//! A history is linearizable if every operation can be given a point in time
//! inside its interval (between invocation and completion) such that the
//! results are those of a sequential key-value store executing the operations
//! in the order of their points (Herlihy & Wing, 1990).
//!
//! The check:
//!
//! 1. Decode every operation and result. Bytes that do not decode, a result of
//!    the wrong kind, and `OpResult::Invalid` are violations outright: the
//!    harness only issues valid operations (and never fills a store, so
//!    `OpResult::Full` is a wrong kind too).
//! 2. Split the history by key. Every operation touches exactly one key, and
//!    linearizability is compositional (Herlihy & Wing, theorem 1), so each
//!    key's sub-history is checked alone against a one-register model whose
//!    state is the key's value, `Option<Vec<u8>>`.
//! 3. For each key, search for a linearization with the algorithm of Wing &
//!    Gong (1993): keep the invocation and completion events in a doubly linked
//!    list in time order; an operation whose invocation comes before the first
//!    completion still in the list may be linearized next; linearizing it
//!    removes both of its events from the list. When no candidate works, undo
//!    the last choice. Lowe (2017) makes this practical by memoizing the
//!    configurations already explored, a set of linearized operations together
//!    with the model state: reaching one again cannot succeed where it failed
//!    before. The search keeps an explicit stack, never recursion.
//!
//! An operation that never completed may have taken effect at any point after
//! its invocation, or not at all, and its result is unknown: it gets no
//! completion event (its completion is at +infinity) and accepts any result.
//! Once every completed operation is linearized, the history is linearizable:
//! the pending operations left over can go at the end, or nowhere. A pending
//! `Get` changes nothing and constrains nothing, so it is dropped up front.
//!
//! Real-time order is strict: `a` precedes `b` only if `a` completed strictly
//! before `b` was invoked. Operations that touch at the same instant count as
//! concurrent, which can only accept more histories, never reject a good one.
//!
//! The memoized set of linearized operations is stored in a compact but exact
//! form, so memory does not grow with the length of the history: see
//! `Memo`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use wire::ClientId;
use wire::kv::{Op, OpResult};

use super::Operation;
use crate::time::Time;

/// Most search steps spent on one key before giving up with
/// [`Violation::SearchTooLarge`]. Typical simulated histories need a few
/// steps per operation.
pub const SEARCH_STEPS_MAX: u64 = 10_000_000;

/// Most operations shown in a report: the last ones linearized, and the next
/// ones that could not be.
const SHOWN_LINEARIZED_MAX: usize = 8;
const SHOWN_NOT_LINEARIZED_MAX: usize = 12;
/// Keys and values longer than this are cut short in reports.
const SHOWN_BYTES_MAX: usize = 24;

/// Checks that a history of key-value operations is linearizable.
pub fn check_kv(history: &[Operation]) -> Result<(), Violation> {
    check_kv_bounded(history, SEARCH_STEPS_MAX)
}

/// Why a history is not (or could not be shown to be) linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// `history[index].op` does not decode as an [`Op`].
    OpMalformed {
        index: usize,
        client: ClientId,
        reason: String,
    },
    /// The result of a completed operation does not decode as an [`OpResult`].
    ResultMalformed { op: Box<ShownOp>, reason: String },
    /// The store answered [`OpResult::Invalid`] to an operation that decodes.
    ResultInvalid { op: Box<ShownOp> },
    /// A result of the wrong kind for its operation, such as a `Get` answered
    /// with `Removed`.
    ResultMismatch { op: Box<ShownOp> },
    /// An operation completed before it was invoked.
    CompletedBeforeInvoked { op: Box<ShownOp> },
    /// No linearization of this key's operations exists.
    NotLinearizable(Box<Deepest>),
    /// The search for a linearization gave up after `steps` steps: the
    /// history was not shown to be linearizable.
    SearchTooLarge { steps: u64, deepest: Box<Deepest> },
}

impl Violation {
    /// The key whose operations failed, if the operation decoded.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Violation::OpMalformed { .. } => None,
            Violation::ResultMalformed { op, .. }
            | Violation::ResultInvalid { op }
            | Violation::ResultMismatch { op }
            | Violation::CompletedBeforeInvoked { op } => Some(op.op.key()),
            Violation::NotLinearizable(deepest) | Violation::SearchTooLarge { deepest, .. } => {
                Some(&deepest.key)
            }
        }
    }
}

/// Where the search for one key got furthest: the longest sequence of
/// operations it managed to linearize, and what came next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deepest {
    pub key: Vec<u8>,
    /// Operations on this key in the history.
    pub ops_on_key: usize,
    /// Operations linearized at the deepest point of the search.
    pub linearized: usize,
    /// The last operations linearized there, in linearization order.
    pub last_linearized: Vec<ShownOp>,
    /// The key's value after them.
    pub value: Option<Vec<u8>>,
    /// The first completed operations not linearized there, in invocation
    /// order: the next operation of a linearization would have been among
    /// them, or a pending one.
    pub not_linearized: Vec<ShownOp>,
}

/// One operation, decoded for a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownOp {
    /// Position in the history.
    pub index: usize,
    pub client: ClientId,
    pub invoked: Time,
    pub completed: Option<Time>,
    pub op: Op,
    /// `None` if the operation never completed, or its result did not decode.
    pub result: Option<OpResult>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::OpMalformed {
                index,
                client,
                reason,
            } => write!(
                f,
                "operation #{index} of client {} does not decode as a key-value operation: {reason}",
                client.0
            ),
            Violation::ResultMalformed { op, reason } => {
                write!(f, "result does not decode ({reason}): {op}")
            }
            Violation::ResultInvalid { op } => {
                write!(f, "the store answered Invalid to a valid operation: {op}")
            }
            Violation::ResultMismatch { op } => {
                write!(f, "result of the wrong kind for the operation: {op}")
            }
            Violation::CompletedBeforeInvoked { op } => {
                write!(f, "operation completed before it was invoked: {op}")
            }
            Violation::NotLinearizable(deepest) => {
                write!(f, "key {}: not linearizable", Bytes(&deepest.key))?;
                deepest.fmt_search(f)
            }
            Violation::SearchTooLarge { steps, deepest } => {
                write!(
                    f,
                    "key {}: search gave up after {steps} steps, linearizability not established",
                    Bytes(&deepest.key)
                )?;
                deepest.fmt_search(f)
            }
        }
    }
}

impl std::error::Error for Violation {}

impl Deepest {
    fn fmt_search(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            " ({} operations on the key; the longest linearization found covers {})",
            self.ops_on_key, self.linearized
        )?;
        if self.linearized > self.last_linearized.len() {
            writeln!(
                f,
                "  ... {} operations linearized earlier",
                self.linearized - self.last_linearized.len()
            )?;
        }
        if !self.last_linearized.is_empty() {
            writeln!(f, "  last linearized, in order:")?;
        }
        for op in &self.last_linearized {
            writeln!(f, "    {op}")?;
        }
        writeln!(
            f,
            "  value after them: {}",
            OptionBytes(self.value.as_deref())
        )?;
        write!(
            f,
            "  first completed operations not linearized, by invocation:"
        )?;
        for op in &self.not_linearized {
            write!(f, "\n    {op}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ShownOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} client {} [{}, ",
            self.index, self.client.0, self.invoked
        )?;
        match self.completed {
            Some(completed) => write!(f, "{completed}] ")?,
            None => f.write_str("pending] ")?,
        }
        match &self.op {
            Op::Get { key } => write!(f, "get {}", Bytes(key))?,
            Op::Put { key, value } => write!(f, "put {} = {}", Bytes(key), Bytes(value))?,
            Op::Delete { key } => write!(f, "delete {}", Bytes(key))?,
        }
        match (&self.result, self.completed) {
            (Some(OpResult::Value(value)), _) => write!(f, " -> {}", OptionBytes(value.as_deref())),
            (Some(OpResult::Replaced(previous)), _) => {
                write!(f, " -> previous {}", OptionBytes(previous.as_deref()))
            }
            (Some(OpResult::Removed(removed)), _) => {
                write!(f, " -> removed {}", OptionBytes(removed.as_deref()))
            }
            (Some(OpResult::Invalid), _) => f.write_str(" -> invalid"),
            (Some(OpResult::Full), _) => f.write_str(" -> full"),
            (None, Some(_)) => f.write_str(" -> (undecodable)"),
            (None, None) => Ok(()),
        }
    }
}

/// Bytes for a report: quoted if printable ASCII, hex otherwise, cut short.
struct Bytes<'a>(&'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(SHOWN_BYTES_MAX)];
        if shown.iter().all(|byte| (0x20..0x7f).contains(byte)) {
            f.write_str("\"")?;
            for &byte in shown {
                match byte {
                    b'"' => f.write_str("\\\"")?,
                    b'\\' => f.write_str("\\\\")?,
                    _ => write!(f, "{}", char::from(byte))?,
                }
            }
            f.write_str("\"")?;
        } else {
            f.write_str("0x")?;
            for byte in shown {
                write!(f, "{byte:02x}")?;
            }
        }
        if self.0.len() > shown.len() {
            write!(f, "…({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

struct OptionBytes<'a>(Option<&'a [u8]>);

impl fmt::Display for OptionBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => Bytes(bytes).fmt(f),
            None => f.write_str("none"),
        }
    }
}

/// [`check_kv`] with the step budget as a parameter, so tests can exhaust it.
fn check_kv_bounded(history: &[Operation], steps_max: u64) -> Result<(), Violation> {
    let decoded = decode(history)?;
    // A `BTreeMap`, so that with several failing keys the report is always
    // about the same one.
    let mut keys: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (index, Decoded { op, .. }) in decoded.iter().enumerate() {
        keys.entry(op.key()).or_default().push(index);
    }
    for (key, indices) in keys {
        let mut search = Search::new(history, &decoded, &indices);
        match search.run(steps_max) {
            Outcome::Linearizable => {}
            Outcome::NotLinearizable => {
                let deepest = search.deepest(history, &decoded, key, indices.len());
                return Err(Violation::NotLinearizable(Box::new(deepest)));
            }
            Outcome::TooLarge => {
                let deepest = search.deepest(history, &decoded, key, indices.len());
                return Err(Violation::SearchTooLarge {
                    steps: steps_max,
                    deepest: Box::new(deepest),
                });
            }
        }
    }
    Ok(())
}

/// An operation that decoded, with a result of the right kind.
#[derive(Debug)]
struct Decoded {
    op: Op,
    /// The value in the result: what a get saw, what a put replaced, what a
    /// delete removed. `None` if the operation never completed.
    returned: Option<Option<Vec<u8>>>,
}

/// Decodes every operation and result, and checks that each result is of the
/// right kind for its operation.
fn decode(history: &[Operation]) -> Result<Vec<Decoded>, Violation> {
    let mut decoded = Vec::with_capacity(history.len());
    for (index, operation) in history.iter().enumerate() {
        let op = wire::decode::<Op>(&operation.op).map_err(|err| Violation::OpMalformed {
            index,
            client: operation.client,
            reason: err.to_string(),
        })?;
        let Some((completed, result_bytes)) = &operation.completed else {
            decoded.push(Decoded { op, returned: None });
            continue;
        };
        let shown = |result: Option<OpResult>| {
            Box::new(ShownOp {
                index,
                client: operation.client,
                invoked: operation.invoked,
                completed: Some(*completed),
                op: op.clone(),
                result,
            })
        };
        let result = match wire::decode::<OpResult>(result_bytes) {
            Ok(result) => result,
            Err(err) => {
                return Err(Violation::ResultMalformed {
                    op: shown(None),
                    reason: err.to_string(),
                });
            }
        };
        if *completed < operation.invoked {
            return Err(Violation::CompletedBeforeInvoked {
                op: shown(Some(result)),
            });
        }
        let returned = match (&op, result) {
            (Op::Get { .. }, OpResult::Value(value))
            | (Op::Put { .. }, OpResult::Replaced(value))
            | (Op::Delete { .. }, OpResult::Removed(value)) => value,
            (_, OpResult::Invalid) => {
                return Err(Violation::ResultInvalid {
                    op: shown(Some(OpResult::Invalid)),
                });
            }
            (_, result) => {
                return Err(Violation::ResultMismatch {
                    op: shown(Some(result)),
                });
            }
        };
        decoded.push(Decoded {
            op,
            returned: Some(returned),
        });
    }
    Ok(decoded)
}

/// The result an operation returned `value` in.
fn result_of(op: &Op, value: Option<Vec<u8>>) -> OpResult {
    match op {
        Op::Get { .. } => OpResult::Value(value),
        Op::Put { .. } => OpResult::Replaced(value),
        Op::Delete { .. } => OpResult::Removed(value),
    }
}

/// A value of the key, interned: [`ABSENT`] or an index into
/// [`Search::values`]. Comparing and copying states is then free.
type ValueId = usize;
const ABSENT: ValueId = 0;

/// What an operation does to the key's value, and what it saw. `None` for a
/// result means the operation never completed: any result is accepted.
#[derive(Clone, Copy, Debug)]
enum Step {
    Get {
        seen: ValueId,
    },
    Put {
        value: ValueId,
        previous: Option<ValueId>,
    },
    Delete {
        removed: Option<ValueId>,
    },
}

impl Step {
    /// The value after the step, or `None` if the step's result contradicts
    /// `value`.
    fn apply(self, value: ValueId) -> Option<ValueId> {
        match self {
            Step::Get { seen } => (seen == value).then_some(value),
            Step::Put {
                value: new,
                previous,
            } => previous
                .is_none_or(|previous| previous == value)
                .then_some(new),
            Step::Delete { removed } => removed
                .is_none_or(|removed| removed == value)
                .then_some(ABSENT),
        }
    }
}

/// One operation of the key's sub-history, as the search sees it.
#[derive(Debug)]
struct KeyOp {
    /// Position in the whole history.
    index: usize,
    invoked: Time,
    /// `None`: never completed.
    completed: Option<Time>,
    step: Step,
}

enum Outcome {
    Linearizable,
    NotLinearizable,
    TooLarge,
}

/// A configuration already explored: a set of linearized operations and the
/// value they leave. The set is stored exactly but compactly. Let `frontier`
/// be the first completed operation (in invocation order) not linearized.
/// Every completed operation before it is linearized, and an operation after
/// it can only be linearized if it was invoked no later than the frontier
/// completed (Wing & Gong never pick an operation whose invocation comes
/// after a completion still in the list). So the set is `frontier` plus the
/// few exceptions: pending operations before it that are not linearized, and
/// operations after it, invoked while it ran, that are.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Memo {
    frontier: usize,
    value: ValueId,
    exceptions: Box<[usize]>,
}

/// The search state for one key: Wing & Gong's event list, the linearized
/// set, and the memo of explored configurations.
#[derive(Debug)]
struct Search<'h> {
    /// The key's operations in invocation order; indices into this are the
    /// operation ids below.
    ops: Vec<KeyOp>,
    /// Distinct values seen on the key; `values[id - 1]` for id > 0.
    values: Vec<&'h [u8]>,
    /// The event list, doubly linked. Entry `i` is the invocation of
    /// operation `i`, entry `n + i` its completion (completed operations only),
    /// then the head and tail sentinels.
    next: Vec<usize>,
    prev: Vec<usize>,
    linearized: Vec<bool>,
    /// The first completed operation not linearized, or `n`.
    frontier: usize,
    /// Pending operations (that may change the value), in invocation order.
    pending: Vec<usize>,
    completed_total: usize,
    completed_linearized: usize,
    memo: HashSet<Memo>,
    /// The choices made so far: operation linearized, value before it.
    stack: Vec<(usize, ValueId)>,
    /// The deepest point reached, for the report.
    deepest: Snapshot,
}

#[derive(Debug, Default)]
struct Snapshot {
    /// Completed operations linearized: what "deepest" measures. Pending
    /// operations linearized on top of them explain nothing by themselves.
    completed_linearized: usize,
    depth: usize,
    last_linearized: Vec<usize>,
    value: ValueId,
    not_linearized: Vec<usize>,
}

impl<'h> Search<'h> {
    fn new(history: &'h [Operation], decoded: &'h [Decoded], indices: &[usize]) -> Search<'h> {
        let mut ids: HashMap<&'h [u8], ValueId> = HashMap::new();
        let mut values: Vec<&'h [u8]> = Vec::new();
        let mut intern = |value: Option<&'h [u8]>| -> ValueId {
            let Some(value) = value else { return ABSENT };
            *ids.entry(value).or_insert_with(|| {
                values.push(value);
                values.len()
            })
        };
        let mut ops = Vec::with_capacity(indices.len());
        for &index in indices {
            let operation = &history[index];
            let Decoded { op, returned } = &decoded[index];
            let returned = returned.as_ref().map(|value| intern(value.as_deref()));
            let step = match op {
                Op::Get { .. } => match returned {
                    Some(seen) => Step::Get { seen },
                    // A pending get neither changes nor constrains anything.
                    None => continue,
                },
                Op::Put { value, .. } => Step::Put {
                    value: intern(Some(value)),
                    previous: returned,
                },
                Op::Delete { .. } => Step::Delete { removed: returned },
            };
            ops.push(KeyOp {
                index,
                invoked: operation.invoked,
                completed: operation.completed.as_ref().map(|(time, _)| *time),
                step,
            });
        }
        // Stable: simultaneous invocations stay in history order.
        ops.sort_by_key(|op| op.invoked);

        let n = ops.len();
        let (head, tail) = (2 * n, 2 * n + 1);
        // Invocations sort before completions at the same instant: operations
        // that touch count as concurrent.
        let mut events: Vec<(Time, bool, usize)> = Vec::with_capacity(2 * n);
        for (id, op) in ops.iter().enumerate() {
            events.push((op.invoked, false, id));
            if let Some(completed) = op.completed {
                events.push((completed, true, n + id));
            }
        }
        events.sort_unstable();
        let mut next = vec![tail; 2 * n + 2];
        let mut prev = vec![head; 2 * n + 2];
        let mut last = head;
        for &(_, _, entry) in &events {
            next[last] = entry;
            prev[entry] = last;
            last = entry;
        }
        next[last] = tail;
        prev[tail] = last;

        let pending: Vec<usize> = (0..n).filter(|&id| ops[id].completed.is_none()).collect();
        let completed_total = n - pending.len();
        let mut search = Search {
            values,
            next,
            prev,
            linearized: vec![false; n],
            frontier: 0,
            pending,
            completed_total,
            completed_linearized: 0,
            memo: HashSet::new(),
            stack: Vec::new(),
            deepest: Snapshot::default(),
            ops,
        };
        search.advance_frontier();
        search.snapshot(ABSENT);
        search
    }

    fn head(&self) -> usize {
        2 * self.ops.len()
    }

    fn tail(&self) -> usize {
        2 * self.ops.len() + 1
    }

    /// Wing & Gong's search with Lowe's memoization, iterative.
    fn run(&mut self, steps_max: u64) -> Outcome {
        let n = self.ops.len();
        let mut value = ABSENT;
        let mut entry = self.next[self.head()];
        let mut steps: u64 = 0;
        loop {
            if self.completed_linearized == self.completed_total {
                // Pending operations left over go at the end, or nowhere.
                return Outcome::Linearizable;
            }
            steps += 1;
            if steps > steps_max {
                return Outcome::TooLarge;
            }
            if entry < n {
                // An invocation before any remaining completion: a candidate.
                let id = entry;
                if let Some(after) = self.ops[id].step.apply(value) {
                    self.mark(id);
                    let fresh = self.completed_linearized == self.completed_total
                        || self.memo.insert(self.memo_key(after));
                    if fresh {
                        self.stack.push((id, value));
                        self.lift(id);
                        value = after;
                        if self.completed_linearized > self.deepest.completed_linearized {
                            self.snapshot(value);
                        }
                        entry = self.next[self.head()];
                        continue;
                    }
                    self.unmark(id);
                }
                entry = self.next[entry];
            } else {
                // A completion (or the end): the operation it completes had to
                // be linearized by now, and no candidate led anywhere. Undo
                // the last choice and try the candidate after it.
                debug_assert!(entry != self.head());
                let Some((id, before)) = self.stack.pop() else {
                    return Outcome::NotLinearizable;
                };
                self.unlift(id);
                self.unmark(id);
                value = before;
                entry = self.next[id];
            }
        }
    }

    /// Removes operation `id`'s events from the list (dancing links: they
    /// keep their own pointers, so [`Search::unlift`] can put them back).
    fn lift(&mut self, id: usize) {
        self.unlink(id);
        if self.ops[id].completed.is_some() {
            self.unlink(self.ops.len() + id);
        }
    }

    /// Undoes the last [`Search::lift`], which must have been of `id`.
    fn unlift(&mut self, id: usize) {
        if self.ops[id].completed.is_some() {
            self.relink(self.ops.len() + id);
        }
        self.relink(id);
    }

    fn unlink(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, entry: usize) {
        let (prev, next) = (self.prev[entry], self.next[entry]);
        self.next[prev] = entry;
        self.prev[next] = entry;
    }

    fn mark(&mut self, id: usize) {
        debug_assert!(!self.linearized[id]);
        self.linearized[id] = true;
        if self.ops[id].completed.is_some() {
            self.completed_linearized += 1;
            if id == self.frontier {
                self.advance_frontier();
            }
        }
    }

    fn unmark(&mut self, id: usize) {
        debug_assert!(self.linearized[id]);
        self.linearized[id] = false;
        if self.ops[id].completed.is_some() {
            self.completed_linearized -= 1;
            self.frontier = self.frontier.min(id);
        }
    }

    fn advance_frontier(&mut self) {
        while self.frontier < self.ops.len()
            && (self.linearized[self.frontier] || self.ops[self.frontier].completed.is_none())
        {
            self.frontier += 1;
        }
    }

    /// The memo entry for the current linearized set and `value`. Only called
    /// while some completed operation is not linearized.
    fn memo_key(&self, value: ValueId) -> Memo {
        let frontier = self.frontier;
        let mut exceptions = Vec::new();
        for &id in self.pending.iter().take_while(|&&id| id < frontier) {
            if !self.linearized[id] {
                exceptions.push(id);
            }
        }
        let horizon = self.ops[frontier].completed.unwrap_or(Time::MAX);
        let mut end = frontier + 1;
        while end < self.ops.len() && self.ops[end].invoked <= horizon {
            if self.linearized[end] {
                exceptions.push(end);
            }
            end += 1;
        }
        debug_assert!(
            !self.linearized[end..].contains(&true),
            "an operation invoked after the frontier completed is linearized"
        );
        Memo {
            frontier,
            value,
            exceptions: exceptions.into_boxed_slice(),
        }
    }

    /// Records the current point of the search as the deepest so far.
    fn snapshot(&mut self, value: ValueId) {
        let skip = self.stack.len().saturating_sub(SHOWN_LINEARIZED_MAX);
        let mut not_linearized = Vec::new();
        let mut entry = self.next[self.head()];
        while entry != self.tail() && not_linearized.len() < SHOWN_NOT_LINEARIZED_MAX {
            // A pending operation can always wait: not worth showing.
            if entry < self.ops.len() && self.ops[entry].completed.is_some() {
                not_linearized.push(entry);
            }
            entry = self.next[entry];
        }
        self.deepest = Snapshot {
            completed_linearized: self.completed_linearized,
            depth: self.stack.len(),
            last_linearized: self.stack[skip..].iter().map(|&(id, _)| id).collect(),
            value,
            not_linearized,
        };
    }

    /// The report for the deepest point of the search.
    fn deepest(
        &self,
        history: &[Operation],
        decoded: &[Decoded],
        key: &[u8],
        ops_on_key: usize,
    ) -> Deepest {
        let show = |id: usize| {
            let index = self.ops[id].index;
            let operation = &history[index];
            let Decoded { op, returned } = &decoded[index];
            ShownOp {
                index,
                client: operation.client,
                invoked: operation.invoked,
                completed: operation.completed.as_ref().map(|(time, _)| *time),
                op: op.clone(),
                result: returned.clone().map(|value| result_of(op, value)),
            }
        };
        let snapshot = &self.deepest;
        Deepest {
            key: key.to_vec(),
            ops_on_key,
            linearized: snapshot.depth,
            last_linearized: snapshot
                .last_linearized
                .iter()
                .map(|&id| show(id))
                .collect(),
            value: match snapshot.value {
                ABSENT => None,
                id => self.values.get(id - 1).map(|value| value.to_vec()),
            },
            not_linearized: snapshot.not_linearized.iter().map(|&id| show(id)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    // Builders for hand-made histories. Times are in nanoseconds.

    fn get(key: &str) -> Op {
        Op::Get {
            key: key.as_bytes().to_vec(),
        }
    }

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn delete(key: &str) -> Op {
        Op::Delete {
            key: key.as_bytes().to_vec(),
        }
    }

    fn bytes(value: Option<&str>) -> Option<Vec<u8>> {
        value.map(|value| value.as_bytes().to_vec())
    }

    fn value(value: Option<&str>) -> OpResult {
        OpResult::Value(bytes(value))
    }

    fn previous(value: Option<&str>) -> OpResult {
        OpResult::Replaced(bytes(value))
    }

    fn removed(value: Option<&str>) -> OpResult {
        OpResult::Removed(bytes(value))
    }

    fn done(client: u64, invoked: u64, completed: u64, op: Op, result: OpResult) -> Operation {
        Operation {
            client: ClientId(client),
            op: wire::codec::encode_to_vec(&op).unwrap(),
            invoked: Time::from_nanos(invoked),
            completed: Some((
                Time::from_nanos(completed),
                wire::codec::encode_to_vec(&result).unwrap(),
            )),
        }
    }

    fn pending(client: u64, invoked: u64, op: Op) -> Operation {
        Operation {
            client: ClientId(client),
            op: wire::codec::encode_to_vec(&op).unwrap(),
            invoked: Time::from_nanos(invoked),
            completed: None,
        }
    }

    #[track_caller]
    fn assert_not_linearizable(history: &[Operation], key: &str) -> Deepest {
        match check_kv(history) {
            Err(Violation::NotLinearizable(deepest)) => {
                assert_eq!(deepest.key, key.as_bytes());
                *deepest
            }
            other => panic!("expected a violation on key {key:?}, got {other:?}"),
        }
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check_kv(&[]), Ok(()));
    }

    #[test]
    fn sequential_puts_and_gets() {
        let history = [
            done(1, 0, 10, get("x"), value(None)),
            done(1, 20, 30, put("x", "1"), previous(None)),
            done(2, 40, 50, get("x"), value(Some("1"))),
            done(1, 60, 70, put("x", "2"), previous(Some("1"))),
            done(2, 80, 90, get("x"), value(Some("2"))),
        ];
        assert_eq!(check_kv(&history), Ok(()));
    }

    #[test]
    fn get_of_a_value_never_written() {
        let history = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(2, 20, 30, get("x"), value(Some("42"))),
        ];
        let deepest = assert_not_linearizable(&history, "x");
        assert_eq!(deepest.linearized, 1);
        assert_eq!(deepest.value, bytes(Some("1")));
        assert_eq!(deepest.not_linearized.len(), 1);
        assert_eq!(deepest.not_linearized[0].index, 1);
    }

    #[test]
    fn stale_read_after_a_completed_put() {
        let history = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(1, 20, 30, put("x", "2"), previous(Some("1"))),
            // Invoked after the second put completed, yet sees the first.
            done(2, 31, 40, get("x"), value(Some("1"))),
        ];
        assert_not_linearizable(&history, "x");
        // Had the get overlapped the second put, "1" would be fine.
        let history = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(1, 20, 30, put("x", "2"), previous(Some("1"))),
            done(2, 29, 40, get("x"), value(Some("1"))),
        ];
        assert_eq!(check_kv(&history), Ok(()));
    }

    #[test]
    fn operations_that_touch_in_time_are_concurrent() {
        // The get is invoked at the instant the put completes.
        let history = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(2, 10, 20, get("x"), value(None)),
        ];
        assert_eq!(check_kv(&history), Ok(()));
    }

    #[test]
    fn concurrent_puts_may_take_effect_in_either_order() {
        for (first, last) in [("1", "2"), ("2", "1")] {
            let history = [
                done(
                    1,
                    0,
                    100,
                    put("x", "1"),
                    previous(if first == "1" { None } else { Some("2") }),
                ),
                done(
                    2,
                    0,
                    100,
                    put("x", "2"),
                    previous(if first == "2" { None } else { Some("1") }),
                ),
                done(3, 10, 20, get("x"), value(Some(first))),
                done(3, 110, 120, get("x"), value(Some(last))),
                done(4, 130, 140, get("x"), value(Some(last))),
            ];
            assert_eq!(check_kv(&history), Ok(()), "{first} then {last}");
        }
    }

    #[test]
    fn readers_agree_on_the_order_of_concurrent_puts() {
        // Both puts overlap all reads. Clients 3 and 4 see "1" then "2": the
        // puts took effect in that order, between their reads.
        let agreeing = [
            done(1, 0, 100, put("x", "1"), previous(None)),
            done(2, 0, 100, put("x", "2"), previous(Some("1"))),
            done(3, 10, 20, get("x"), value(Some("1"))),
            done(3, 30, 40, get("x"), value(Some("2"))),
            done(4, 10, 20, get("x"), value(Some("1"))),
            done(4, 30, 40, get("x"), value(Some("2"))),
        ];
        assert_eq!(check_kv(&agreeing), Ok(()));
    }

    #[test]
    fn readers_see_concurrent_puts_in_contradictory_orders() {
        // Client 3 sees "1" then "2", so "1" took effect before "2"; client 4
        // sees "2" then "1", so the opposite. The puts' own results are left
        // out of the contradiction: each put says the key was empty, which
        // also cannot hold for both, so they are pending here.
        let history = [
            pending(1, 0, put("x", "1")),
            pending(2, 0, put("x", "2")),
            done(3, 10, 20, get("x"), value(Some("1"))),
            done(3, 30, 40, get("x"), value(Some("2"))),
            done(4, 10, 20, get("x"), value(Some("2"))),
            done(4, 30, 40, get("x"), value(Some("1"))),
        ];
        assert_not_linearizable(&history, "x");
        // The same with completed puts (results consistent with "1" first).
        let history = [
            done(1, 0, 100, put("x", "1"), previous(None)),
            done(2, 0, 100, put("x", "2"), previous(Some("1"))),
            done(3, 10, 20, get("x"), value(Some("1"))),
            done(3, 30, 40, get("x"), value(Some("2"))),
            done(4, 10, 20, get("x"), value(Some("2"))),
            done(4, 30, 40, get("x"), value(Some("1"))),
        ];
        assert_not_linearizable(&history, "x");
    }

    #[test]
    fn reads_after_both_puts_completed_see_one_final_value() {
        let history = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(2, 0, 10, put("x", "2"), previous(Some("1"))),
            done(3, 20, 30, get("x"), value(Some("2"))),
            done(4, 40, 50, get("x"), value(Some("1"))),
        ];
        assert_not_linearizable(&history, "x");
    }

    #[test]
    fn pending_put_whose_value_is_read_later() {
        let history = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            pending(2, 20, put("x", "2")),
            done(3, 30, 40, get("x"), value(Some("1"))),
            done(3, 1000, 1010, get("x"), value(Some("2"))),
            done(3, 1020, 1030, put("x", "3"), previous(Some("2"))),
        ];
        assert_eq!(check_kv(&history), Ok(()));
    }

    #[test]
    fn pending_put_whose_value_is_never_read() {
        let history = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            pending(2, 20, put("x", "2")),
            done(3, 30, 40, get("x"), value(Some("1"))),
            done(3, 1000, 1010, get("x"), value(Some("1"))),
        ];
        assert_eq!(check_kv(&history), Ok(()));
    }

    #[test]
    fn pending_put_takes_effect_at_most_once() {
        let history = [
            pending(1, 0, put("x", "1")),
            done(2, 10, 20, get("x"), value(Some("1"))),
            done(2, 30, 40, put("x", "2"), previous(Some("1"))),
            done(2, 50, 60, get("x"), value(Some("1"))),
        ];
        assert_not_linearizable(&history, "x");
    }

    #[test]
    fn read_of_a_pending_put_before_it_was_invoked() {
        let history = [
            done(1, 0, 10, get("x"), value(Some("1"))),
            pending(2, 20, put("x", "1")),
        ];
        assert_not_linearizable(&history, "x");
    }

    #[test]
    fn pending_gets_are_unconstrained() {
        let history = [
            pending(1, 0, get("x")),
            done(2, 10, 20, put("x", "1"), previous(None)),
        ];
        assert_eq!(check_kv(&history), Ok(()));
    }

    #[test]
    fn pending_delete_may_take_effect() {
        let history = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            pending(2, 20, delete("x")),
            done(3, 30, 40, get("x"), value(Some("1"))),
            done(3, 50, 60, get("x"), value(None)),
        ];
        assert_eq!(check_kv(&history), Ok(()));
    }

    #[test]
    fn delete_returns_the_removed_value() {
        let history = [
            done(1, 0, 10, delete("x"), removed(None)),
            done(1, 20, 30, put("x", "1"), previous(None)),
            done(1, 40, 50, delete("x"), removed(Some("1"))),
            done(2, 60, 70, get("x"), value(None)),
            done(2, 80, 90, delete("x"), removed(None)),
        ];
        assert_eq!(check_kv(&history), Ok(()));

        let wrong_removed = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(1, 20, 30, delete("x"), removed(Some("2"))),
        ];
        assert_not_linearizable(&wrong_removed, "x");

        let nothing_removed = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(1, 20, 30, delete("x"), removed(None)),
        ];
        assert_not_linearizable(&nothing_removed, "x");

        let get_after_delete = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(1, 20, 30, delete("x"), removed(Some("1"))),
            done(2, 40, 50, get("x"), value(Some("1"))),
        ];
        assert_not_linearizable(&get_after_delete, "x");
    }

    #[test]
    fn put_returns_the_previous_value() {
        let wrong_previous = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(1, 20, 30, put("x", "2"), previous(Some("2"))),
        ];
        assert_not_linearizable(&wrong_previous, "x");

        let missed_previous = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(1, 20, 30, put("x", "2"), previous(None)),
        ];
        assert_not_linearizable(&missed_previous, "x");

        // Two concurrent puts cannot both have replaced nothing.
        let both_first = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(2, 0, 10, put("x", "2"), previous(None)),
        ];
        assert_not_linearizable(&both_first, "x");
    }

    #[test]
    fn keys_are_independent() {
        let history = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(2, 5, 15, put("y", "a"), previous(None)),
            done(1, 20, 30, get("y"), value(Some("a"))),
            done(2, 20, 30, get("x"), value(Some("1"))),
            done(1, 40, 50, delete("x"), removed(Some("1"))),
            done(2, 60, 70, get("y"), value(Some("a"))),
        ];
        assert_eq!(check_kv(&history), Ok(()));

        // A read on "y" of the value written to "x": the violation is on "y".
        let crossed = [
            done(1, 0, 10, put("x", "1"), previous(None)),
            done(2, 20, 30, get("y"), value(Some("1"))),
            done(2, 40, 50, get("x"), value(Some("1"))),
        ];
        let violation = check_kv(&crossed).unwrap_err();
        assert_eq!(violation.key(), Some(&b"y"[..]));
    }

    #[test]
    fn undecodable_operations_and_results_are_violations() {
        let mut bad_op = done(1, 0, 10, get("x"), value(None));
        bad_op.op = vec![0xff; 3];
        assert!(matches!(
            check_kv(&[bad_op]),
            Err(Violation::OpMalformed { index: 0, .. })
        ));

        let mut bad_result = done(1, 0, 10, get("x"), value(None));
        bad_result.completed = Some((Time::from_nanos(10), vec![0xff; 3]));
        let violation = check_kv(&[bad_result]).unwrap_err();
        assert!(matches!(violation, Violation::ResultMalformed { .. }));
        assert_eq!(violation.key(), Some(&b"x"[..]));

        let invalid = done(1, 0, 10, put("x", "1"), OpResult::Invalid);
        assert!(matches!(
            check_kv(&[invalid]),
            Err(Violation::ResultInvalid { .. })
        ));

        let mismatch = done(1, 0, 10, get("x"), removed(None));
        assert!(matches!(
            check_kv(&[mismatch]),
            Err(Violation::ResultMismatch { .. })
        ));

        let backwards = done(1, 10, 5, get("x"), value(None));
        assert!(matches!(
            check_kv(&[backwards]),
            Err(Violation::CompletedBeforeInvoked { .. })
        ));
    }

    #[test]
    fn report_is_readable_and_bounded() {
        let mut history = Vec::new();
        for i in 0..500u64 {
            let previous_value = (i > 0).then(|| (i - 1).to_string());
            history.push(done(
                1,
                i * 10,
                i * 10 + 5,
                put("x", &i.to_string()),
                previous(previous_value.as_deref()),
            ));
        }
        history.push(done(2, 10_000, 10_010, get("x"), value(Some("7"))));
        let violation = check_kv(&history).unwrap_err();
        let report = violation.to_string();
        assert!(report.lines().count() <= 30, "{report}");
        assert!(
            report.starts_with("key \"x\": not linearizable"),
            "{report}"
        );
        assert!(report.contains("covers 500"), "{report}");
        assert!(report.contains("value after them: \"499\""), "{report}");
        assert!(
            report.contains("#500 client 2 [10µs, 10.01µs] get \"x\" -> \"7\""),
            "{report}"
        );
    }

    #[test]
    fn exhausted_search_is_a_violation_of_its_own() {
        let history = [
            done(1, 0, 100, put("x", "1"), previous(None)),
            done(2, 0, 100, put("x", "2"), previous(Some("1"))),
            done(3, 10, 20, get("x"), value(Some("1"))),
        ];
        assert_eq!(check_kv(&history), Ok(()));
        assert!(matches!(
            check_kv_bounded(&history, 2),
            Err(Violation::SearchTooLarge { steps: 2, .. })
        ));
    }

    /// A linearizable history: clients issue operations one at a time over
    /// random, overlapping intervals; each operation takes effect at a random
    /// point inside its interval, and results come from a sequential store
    /// applying them in the order of those points. Every client ends with an
    /// operation pending, which takes effect or not, and now and then one stops
    /// early.
    fn random_history(seed: u64, clients: u64, keys: u64, ops_per_client: usize) -> Vec<Operation> {
        struct Planned {
            client: u64,
            op: Op,
            invoked: u64,
            point: u64,
            completed: Option<u64>,
            takes_effect: bool,
        }
        let mut rng = Rng::new(seed);
        let mut planned = Vec::new();
        let mut written = 0u64;
        for client in 0..clients {
            let mut now = rng.below(50);
            for i in 0..ops_per_client {
                let key = format!("k{}", rng.below(keys));
                let op = match rng.below(10) {
                    0..5 => get(&key),
                    5..9 => {
                        written += 1;
                        put(&key, &format!("v{written}"))
                    }
                    _ => delete(&key),
                };
                let invoked = now;
                let latency = 1 + rng.below(200);
                // The client crashes, or the run ends, with the operation in
                // flight.
                if i + 1 == ops_per_client || rng.chance(0.002) {
                    planned.push(Planned {
                        client,
                        op,
                        invoked,
                        point: invoked + rng.below(10 * latency),
                        completed: None,
                        takes_effect: rng.chance(0.5),
                    });
                    break;
                }
                planned.push(Planned {
                    client,
                    op,
                    invoked,
                    point: invoked + rng.below(latency + 1),
                    completed: Some(invoked + latency),
                    takes_effect: true,
                });
                now = invoked + latency + rng.below(30);
            }
        }
        planned.sort_by_key(|p| p.point);
        let mut store: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut history = Vec::new();
        for p in planned.iter().filter(|p| p.takes_effect) {
            let result = match &p.op {
                Op::Get { key } => OpResult::Value(store.get(key).cloned()),
                Op::Put { key, value } => {
                    OpResult::Replaced(store.insert(key.clone(), value.clone()))
                }
                Op::Delete { key } => OpResult::Removed(store.remove(key)),
            };
            history.push(match p.completed {
                Some(completed) => done(p.client, p.invoked, completed, p.op.clone(), result),
                None => pending(p.client, p.invoked, p.op.clone()),
            });
        }
        for p in planned.iter().filter(|p| !p.takes_effect) {
            history.push(pending(p.client, p.invoked, p.op.clone()));
        }
        // The driver records operations in invocation order.
        history.sort_by_key(|operation| operation.invoked);
        history
    }

    #[test]
    fn random_linearizable_histories_pass_and_a_bad_read_fails() {
        for seed in 0..40 {
            let history = random_history(seed, 5, 3, 60);
            if let Err(violation) = check_kv(&history) {
                panic!("seed {seed}: {violation}");
            }
            // A completed get now returns a value no put ever wrote.
            let mut mutated = history.clone();
            let target = mutated
                .iter()
                .position(|o| {
                    o.completed.is_some() && matches!(wire::decode::<Op>(&o.op), Ok(Op::Get { .. }))
                })
                .expect("a completed get");
            let op: Op = wire::decode(&mutated[target].op).unwrap();
            let result = wire::codec::encode_to_vec(&value(Some("never written"))).unwrap();
            if let Some((_, bytes)) = &mut mutated[target].completed {
                *bytes = result;
            }
            match check_kv(&mutated) {
                Err(Violation::NotLinearizable(deepest)) => assert_eq!(deepest.key, op.key()),
                other => panic!("seed {seed}: expected a violation, got {other:?}"),
            }
        }
    }

    #[test]
    fn large_random_history_is_checked_quickly() {
        // 5 clients, 3 keys, 3000 operations.
        let history = random_history(7, 5, 3, 600);
        assert!(history.len() >= 1000);
        let started = std::time::Instant::now();
        assert_eq!(check_kv(&history), Ok(()));
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }
}
