//! The client table: at-most-once execution with cached replies, bounded.
//!
//! One entry per client: its session, what the session is bound to (a
//! [`Binding`]: PBFT's sessions to the public key their registration
//! carried, the baseline's to nothing), the number of its latest executed
//! request, and that request's result. A request is identified by its
//! client, session and request number:
//!
//! - a higher number than the entry's executes ([`Admission::Execute`]),
//!   and then [`ClientTable::record`] stores its result;
//! - the entry's latest again (a retransmission) gets the stored result
//!   ([`Admission::Duplicate`]) without executing anything;
//! - an older one is ignored ([`Admission::Stale`]): its client has seen
//!   the reply already, or it would not have moved on;
//! - a request of another session than the entry's, or of a client without
//!   an entry, is [`Admission::Unknown`]: what that means is the
//!   protocol's to say (PBFT tells the client it was evicted; the baseline
//!   opens an entry);
//! - a request under another binding than the session's is
//!   [`Admission::OtherBinding`], and is not executed.
//!
//! # Bounds and eviction
//!
//! The table holds at most `max` entries, and their stored results at most
//! `result_bytes_max` bytes. Opening one more entry ([`ClientTable::register`])
//! or storing a result past the budget evicts the entries that executed
//! least recently. Nothing here depends on time or on the order of a map
//! in memory: a replicated protocol that registers and records at
//! execution, in the order it agreed on, keeps and evicts the same entries
//! at every replica, so their at-most-once decisions never diverge.
//!
//! Entries are looked up in a `BTreeMap` by client id. Client ids are
//! chosen by clients, so no unkeyed hash (FxHash and the like) may index
//! them: a flood of ids that collide would make every lookup linear. A
//! B-tree has no such worst case, iterates in client order (which the
//! snapshot encoding needs anyway), and for the few clients of most runs
//! is cheaper than SipHash. The entries live in a slab, linked in order of
//! use, so that moving an entry to the back on every execution and evicting
//! the front are constant time and allocate nothing.
//!
//! # Snapshots
//!
//! [`ClientTable::encode`] writes the table deterministically (sorted by
//! client, little-endian, length-prefixed) for checkpoints, and
//! [`ClientTable::decode`] reads it back, refusing anything malformed or
//! beyond the bounds: two tables that took the same registrations and
//! records encode to the same bytes.

use std::collections::BTreeMap;

use wire::ClientId;
use wire::crypto::PublicKey;

/// What a session is bound to: requests execute only under the binding
/// their session opened with. Encoded in snapshots, so its encoding must
/// be deterministic.
pub trait Binding: Clone + Eq + std::fmt::Debug {
    /// Appends the binding's bytes.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads a binding from the front of `bytes`; `None` if malformed.
    fn decode(bytes: &mut &[u8]) -> Option<Self>;
}

/// No binding: any request of the client's session is its own (the
/// baseline, which trusts the network).
impl Binding for () {
    fn encode(&self, _out: &mut Vec<u8>) {}
    fn decode(_bytes: &mut &[u8]) -> Option<()> {
        Some(())
    }
}

/// A session bound to the public key its registration carried (PBFT).
impl Binding for PublicKey {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
    fn decode(bytes: &mut &[u8]) -> Option<PublicKey> {
        let (key, rest) = bytes.split_first_chunk::<33>()?;
        *bytes = rest;
        Some(PublicKey(*key))
    }
}

/// A client's entry: its session and latest result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<B> {
    /// The session's number (the baseline has one session per client, 0).
    pub session: u64,
    /// What the session is bound to.
    pub binding: B,
    /// The latest request executed (0 before any), and its result.
    pub request_num: u64,
    pub result: Vec<u8>,
    /// When the entry last executed or opened (the table's clock).
    last_used: u64,
}

/// What the table says about a request about to execute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission<'a> {
    /// A new request of a live session: execute it, then
    /// [`ClientTable::record`].
    Execute,
    /// The session's latest request again: answer with its stored result.
    Duplicate(&'a [u8]),
    /// Older than the session's latest: ignore.
    Stale,
    /// No such session: the client has no entry (it was evicted, or never
    /// opened one), or the entry is another session's.
    Unknown,
    /// The session is bound to something else: do not execute.
    OtherBinding,
}

/// No neighbour in the use order.
const NIL: u32 = u32::MAX;

/// An entry in the slab, linked in order of use.
#[derive(Clone, Debug)]
struct Node<B> {
    client: ClientId,
    entry: Entry<B>,
    /// Neighbours in the use order (older, newer), or [`NIL`].
    prev: u32,
    next: u32,
}

/// Entries by client, bounded in number and result bytes; see the module
/// docs.
#[derive(Clone, Debug)]
pub struct ClientTable<B> {
    /// Each client's node in `nodes`.
    index: BTreeMap<ClientId, u32>,
    /// The entries, densely packed (an eviction moves the last into the
    /// hole).
    nodes: Vec<Node<B>>,
    /// The least and the most recently used node, or [`NIL`].
    oldest: u32,
    newest: u32,
    /// The stored results' bytes, summed.
    result_bytes: usize,
    /// Counts registrations and executions; the same at every replica that
    /// saw the same order.
    clock: u64,
    max: usize,
    result_bytes_max: usize,
}

impl<B: Binding> ClientTable<B> {
    /// An empty table of at most `max` entries and `result_bytes_max`
    /// bytes of results.
    pub fn new(max: usize, result_bytes_max: usize) -> ClientTable<B> {
        assert!(max > 0, "a client table holds at least one entry");
        assert!(max < NIL as usize, "entries are numbered in 32 bits");
        ClientTable {
            index: BTreeMap::new(),
            nodes: Vec::new(),
            oldest: NIL,
            newest: NIL,
            result_bytes: 0,
            clock: 0,
            max,
            result_bytes_max,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The most entries the table holds.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The bytes of results stored now.
    pub fn result_bytes(&self) -> usize {
        self.result_bytes
    }

    pub fn get(&self, client: ClientId) -> Option<&Entry<B>> {
        let &i = self.index.get(&client)?;
        Some(&self.nodes[i as usize].entry)
    }

    /// Whether request `request_num` of `client` under `session` has
    /// already executed (or can never execute): what a primary checks
    /// before it queues a request.
    pub fn is_settled(&self, client: ClientId, session: u64, request_num: u64) -> bool {
        self.get(client)
            .is_some_and(|e| e.session == session && e.request_num >= request_num)
    }

    /// Opens a session for `client` under `binding` numbered `session`,
    /// evicting the least recently used entry if the table is full. A
    /// client that has an entry already keeps it (a retransmitted
    /// registration). Returns the session's number and the client evicted,
    /// if any; `None` if the client's session is bound to something else.
    pub fn register(
        &mut self,
        client: ClientId,
        binding: B,
        session: u64,
    ) -> Option<(u64, Option<ClientId>)> {
        if let Some(entry) = self.get(client) {
            return (entry.binding == binding).then_some((entry.session, None));
        }
        let evicted = if self.nodes.len() >= self.max {
            self.evict_oldest()
        } else {
            None
        };
        self.clock += 1;
        let i = self.nodes.len() as u32;
        self.nodes.push(Node {
            client,
            entry: Entry {
                session,
                binding,
                request_num: 0,
                result: Vec::new(),
                last_used: self.clock,
            },
            prev: NIL,
            next: NIL,
        });
        self.index.insert(client, i);
        self.link_newest(i);
        Some((session, evicted))
    }

    /// The clients with an entry, and their bindings, in client order.
    pub fn bindings(&self) -> impl Iterator<Item = (ClientId, &B)> + '_ {
        self.index
            .iter()
            .map(|(c, &i)| (*c, &self.nodes[i as usize].entry.binding))
    }

    /// What to do with request `request_num` of `client` under `session`,
    /// which came under `binding`.
    pub fn admit(
        &self,
        client: ClientId,
        binding: &B,
        session: u64,
        request_num: u64,
    ) -> Admission<'_> {
        match self.get(client) {
            Some(e) if e.session == session && e.binding != *binding => Admission::OtherBinding,
            Some(e) if e.session == session => match request_num.cmp(&e.request_num) {
                std::cmp::Ordering::Greater => Admission::Execute,
                std::cmp::Ordering::Equal => Admission::Duplicate(&e.result),
                std::cmp::Ordering::Less => Admission::Stale,
            },
            _ => Admission::Unknown,
        }
    }

    /// Records the result of an admitted request of `client`. Returns the
    /// clients evicted to keep the results within the budget (never this
    /// one: it executed last). Allocates nothing unless it evicts.
    ///
    /// # Panics
    ///
    /// If `client` has no entry: only admitted requests are recorded.
    pub fn record(&mut self, client: ClientId, request_num: u64, result: Vec<u8>) -> Vec<ClientId> {
        let i = *self
            .index
            .get(&client)
            .expect("only admitted requests are recorded");
        self.clock += 1;
        self.unlink(i);
        self.link_newest(i);
        let entry = &mut self.nodes[i as usize].entry;
        entry.last_used = self.clock;
        entry.request_num = request_num;
        self.result_bytes = self.result_bytes - entry.result.len() + result.len();
        entry.result = result;
        let mut evicted = Vec::new();
        while self.result_bytes > self.result_bytes_max && self.nodes.len() > 1 {
            evicted.extend(self.evict_oldest());
        }
        evicted
    }

    /// Evicts the entry that executed least recently.
    fn evict_oldest(&mut self) -> Option<ClientId> {
        if self.oldest == NIL {
            return None;
        }
        let i = self.oldest;
        self.unlink(i);
        let node = self.nodes.swap_remove(i as usize);
        self.index.remove(&node.client);
        self.result_bytes -= node.entry.result.len();
        if let Some(moved) = self.nodes.get(i as usize) {
            // The last node moved into the hole: point everything that
            // named it at its new place.
            let (client, prev, next) = (moved.client, moved.prev, moved.next);
            *self.index.get_mut(&client).expect("every node is indexed") = i;
            match prev {
                NIL => self.oldest = i,
                p => self.nodes[p as usize].next = i,
            }
            match next {
                NIL => self.newest = i,
                n => self.nodes[n as usize].prev = i,
            }
        }
        Some(node.client)
    }

    /// Takes node `i` out of the use order.
    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let node = &self.nodes[i as usize];
            (node.prev, node.next)
        };
        match prev {
            NIL => self.oldest = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.newest = prev,
            n => self.nodes[n as usize].prev = prev,
        }
        let node = &mut self.nodes[i as usize];
        node.prev = NIL;
        node.next = NIL;
    }

    /// Puts node `i` (unlinked) at the newest end of the use order.
    fn link_newest(&mut self, i: u32) {
        let newest = self.newest;
        self.nodes[i as usize].prev = newest;
        match newest {
            NIL => self.oldest = i,
            n => self.nodes[n as usize].next = i,
        }
        self.newest = i;
    }

    /// The table as bytes, deterministically (sorted by client), for
    /// snapshots: little-endian and length-prefixed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.clock.to_le_bytes());
        out.extend_from_slice(&(self.nodes.len() as u64).to_le_bytes());
        for (client, &i) in &self.index {
            let e = &self.nodes[i as usize].entry;
            for n in [client.0, e.session, e.request_num, e.last_used] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            e.binding.encode(out);
            out.extend_from_slice(&(e.result.len() as u64).to_le_bytes());
            out.extend_from_slice(&e.result);
        }
    }

    /// Inverse of [`ClientTable::encode`], from the front of `bytes`;
    /// `None` if malformed (two entries for a client, two used at once, one
    /// used after the clock) or beyond `max` entries or `result_bytes_max`
    /// bytes of results.
    pub fn decode(
        bytes: &mut &[u8],
        max: usize,
        result_bytes_max: usize,
    ) -> Option<ClientTable<B>> {
        let mut table = ClientTable::new(max, result_bytes_max);
        table.clock = take_u64(bytes)?;
        let count = take_u64(bytes)?;
        if count > max as u64 {
            return None;
        }
        // Entries by when they were last used, to link them in that order.
        let mut by_use: BTreeMap<u64, u32> = BTreeMap::new();
        for _ in 0..count {
            let client = ClientId(take_u64(bytes)?);
            let session = take_u64(bytes)?;
            let request_num = take_u64(bytes)?;
            let last_used = take_u64(bytes)?;
            let binding = B::decode(bytes)?;
            let len = usize::try_from(take_u64(bytes)?).ok()?;
            let (result, rest) = bytes.split_at_checked(len)?;
            *bytes = rest;
            table.result_bytes = table.result_bytes.checked_add(len)?;
            if last_used > table.clock || table.result_bytes > result_bytes_max {
                return None;
            }
            let i = table.nodes.len() as u32;
            if by_use.insert(last_used, i).is_some() || table.index.insert(client, i).is_some() {
                return None;
            }
            table.nodes.push(Node {
                client,
                entry: Entry {
                    session,
                    binding,
                    request_num,
                    result: result.to_vec(),
                    last_used,
                },
                prev: NIL,
                next: NIL,
            });
        }
        for i in by_use.into_values() {
            table.link_newest(i);
        }
        Some(table)
    }

    /// Checks the links against the entries (tests).
    #[cfg(test)]
    fn check(&self) {
        assert_eq!(self.index.len(), self.nodes.len());
        let mut order = Vec::new();
        let mut at = self.oldest;
        let mut prev = NIL;
        while at != NIL {
            let node = &self.nodes[at as usize];
            assert_eq!(node.prev, prev);
            assert_eq!(self.index[&node.client], at);
            order.push(node.entry.last_used);
            prev = at;
            at = node.next;
        }
        assert_eq!(self.newest, prev);
        assert_eq!(order.len(), self.nodes.len());
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        let bytes: usize = self.nodes.iter().map(|n| n.entry.result.len()).sum();
        assert_eq!(bytes, self.result_bytes);
    }
}

fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    *bytes = rest;
    Some(u64::from_le_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);
    const C: ClientId = ClientId(3);
    const K: PublicKey = PublicKey([2; 33]);
    const OTHER: PublicKey = PublicKey([3; 33]);
    const BUDGET: usize = 1 << 20;

    type Keyed = ClientTable<PublicKey>;

    #[test]
    fn at_most_once_within_a_session() {
        let mut table = Keyed::new(4, BUDGET);
        let (session, _) = table.register(A, K, 10).unwrap();
        assert_eq!(session, 10);
        assert_eq!(table.admit(A, &K, 10, 1), Admission::Execute);
        table.record(A, 1, b"r1".to_vec());
        assert_eq!(table.admit(A, &K, 10, 1), Admission::Duplicate(b"r1"));
        assert_eq!(table.admit(A, &K, 10, 0), Admission::Stale);
        assert_eq!(table.admit(A, &K, 10, 2), Admission::Execute);
        assert!(table.is_settled(A, 10, 1) && !table.is_settled(A, 10, 2));
        // Another session number: a replay from an earlier session.
        assert_eq!(table.admit(A, &K, 9, 5), Admission::Unknown);
        assert_eq!(table.admit(B, &K, 10, 1), Admission::Unknown);
        // Registering again keeps the session.
        assert_eq!(table.register(A, K, 20), Some((10, None)));
        // Another key gets neither a session nor its requests executed.
        assert_eq!(table.register(A, OTHER, 20), None);
        assert_eq!(table.admit(A, &OTHER, 10, 3), Admission::OtherBinding);
        table.check();
    }

    #[test]
    fn the_least_recently_executed_entry_is_evicted() {
        let mut table = Keyed::new(2, BUDGET);
        table.register(A, K, 1);
        table.register(B, K, 2);
        table.record(A, 1, Vec::new());
        // B executed least recently (only its registration): it goes.
        assert_eq!(table.register(C, K, 3), Some((3, Some(B))));
        assert_eq!(table.admit(B, &K, 2, 1), Admission::Unknown);
        assert_eq!(table.len(), 2);
        table.check();
        // A replayed registration of B opens a new session; B's old requests
        // are still refused.
        assert_eq!(table.register(B, K, 4), Some((4, Some(A))));
        assert_eq!(table.admit(B, &K, 2, 1), Admission::Unknown);
        table.check();
    }

    #[test]
    fn eviction_follows_use_across_many_entries() {
        // Against a model: a list of clients in order of use.
        let mut table: ClientTable<()> = ClientTable::new(5, BUDGET);
        let mut model: Vec<ClientId> = Vec::new();
        let mut rng = 12345u64;
        for step in 0..2000u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let client = ClientId((rng >> 33) % 9);
            match table.admit(client, &(), 0, step + 1) {
                Admission::Unknown => {
                    let (_, evicted) = table.register(client, (), 0).unwrap();
                    if model.len() == 5 {
                        assert_eq!(evicted, Some(model.remove(0)));
                    } else {
                        assert_eq!(evicted, None);
                    }
                    model.push(client);
                }
                Admission::Execute => {
                    model.retain(|c| *c != client);
                    model.push(client);
                }
                other => panic!("{other:?}"),
            }
            assert!(table.record(client, step + 1, vec![0; 3]).is_empty());
            table.check();
        }
        let mut bytes = Vec::new();
        table.encode(&mut bytes);
        let decoded = ClientTable::<()>::decode(&mut &bytes[..], 5, BUDGET).unwrap();
        decoded.check();
        let mut again = Vec::new();
        decoded.encode(&mut again);
        assert_eq!(bytes, again);
    }

    #[test]
    fn two_tables_fed_the_same_order_agree_and_encode_alike() {
        let ops = [(A, 0), (B, 0), (A, 1), (C, 0), (B, 1), (A, 2), (C, 1)];
        let run = || {
            let mut table = Keyed::new(2, BUDGET);
            for (i, &(client, num)) in ops.iter().enumerate() {
                if num == 0 {
                    table.register(client, K, i as u64);
                } else if let Some(s) = table.get(client).map(|s| s.session)
                    && table.admit(client, &K, s, num) == Admission::Execute
                {
                    table.record(client, num, vec![num as u8]);
                }
            }
            table.check();
            let mut bytes = Vec::new();
            table.encode(&mut bytes);
            bytes
        };
        assert_eq!(run(), run());
        let bytes = run();
        let decoded = Keyed::decode(&mut &bytes[..], 2, BUDGET).unwrap();
        decoded.check();
        let mut again = Vec::new();
        decoded.encode(&mut again);
        assert_eq!(bytes, again);
        // A table larger than the bound, or cut short, does not decode.
        assert!(Keyed::decode(&mut &bytes[..], 1, BUDGET).is_none());
        assert!(Keyed::decode(&mut &bytes[..bytes.len() - 1], 2, BUDGET).is_none());
        // Nor does one whose results exceed the budget.
        assert!(Keyed::decode(&mut &bytes[..], 2, 1).is_none());
    }

    #[test]
    fn malformed_snapshots_do_not_decode() {
        let mut table: ClientTable<()> = ClientTable::new(4, BUDGET);
        table.register(A, (), 0);
        table.register(B, (), 0);
        let mut bytes = Vec::new();
        table.encode(&mut bytes);
        // The second entry's client made the first's: two entries for A.
        let mut twice = bytes.clone();
        twice[16 + 40..16 + 48].copy_from_slice(&A.0.to_le_bytes());
        assert!(ClientTable::<()>::decode(&mut &twice[..], 4, BUDGET).is_none());
        // Both used at the same time.
        let mut same = bytes.clone();
        same[16 + 40 + 24..16 + 40 + 32].copy_from_slice(&1u64.to_le_bytes());
        assert!(ClientTable::<()>::decode(&mut &same[..], 4, BUDGET).is_none());
        // One used after the clock.
        let mut late = bytes.clone();
        late[..8].copy_from_slice(&1u64.to_le_bytes());
        assert!(ClientTable::<()>::decode(&mut &late[..], 4, BUDGET).is_none());
        // A result length past the end.
        let mut long = bytes.clone();
        long[16 + 32..16 + 40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ClientTable::<()>::decode(&mut &long[..], 4, BUDGET).is_none());
        assert!(ClientTable::<()>::decode(&mut &bytes[..], 4, BUDGET).is_some());
    }

    #[test]
    fn stored_results_stay_within_their_budget() {
        let budget = 1000;
        let mut table = Keyed::new(16, budget);
        let big = vec![0; budget / 4];
        let clients: Vec<ClientId> = (1..=5).map(ClientId).collect();
        for (i, &c) in clients.iter().enumerate() {
            table.register(c, K, i as u64);
        }
        let mut evicted = Vec::new();
        for (i, &c) in clients.iter().enumerate() {
            evicted.extend(table.record(c, 1, big.clone()));
            assert!(table.result_bytes() <= budget, "after {i}");
            table.check();
        }
        // The fifth result evicts the entry that executed least recently.
        assert_eq!(evicted, vec![clients[0]]);
        assert_eq!(table.admit(clients[0], &K, 0, 2), Admission::Unknown);
        let mut bytes = Vec::new();
        table.encode(&mut bytes);
        let decoded = Keyed::decode(&mut &bytes[..], 16, budget).unwrap();
        assert_eq!(decoded.result_bytes(), table.result_bytes());
        // A single result larger than the budget evicts everyone else and
        // stays: the client that just executed is never evicted.
        let evicted = table.record(clients[4], 2, vec![0; budget + 1]);
        assert_eq!(evicted.len(), 3);
        assert_eq!(table.len(), 1);
        table.check();
    }
}
