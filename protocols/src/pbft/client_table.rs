//! The client table: at-most-once execution with a bounded number of
//! sessions.
//!
//! A client registers before its first request: a registration is a request
//! like any other (numbered 0, with no operation), ordered by the protocol,
//! and executing it opens a session whose number is where it executed (slot
//! and position), so it differs from every session before it. Later requests
//! carry the session number. The table keeps each session's latest request
//! number and result: a request with a higher number executes, a
//! retransmission of the latest gets the stored result again, an older one
//! is ignored.
//!
//! The table holds at most `max` sessions, and their stored results at most
//! [`RESULT_BYTES_MAX`] bytes. Registering one more session, or storing a
//! result past that budget, evicts the sessions that executed least
//! recently. Registration and eviction happen at
//! execution, in the order the protocol fixed, so every replica keeps and
//! evicts the same sessions: their at-most-once decisions never diverge
//! (an entry evicted at one replica and kept at another would let a
//! retransmission execute at one and not at the other). A request whose
//! session is not in the table (evicted, or never opened) is not executed:
//! its client is told it was evicted, and gives up, since it cannot know
//! whether its last request executed before the eviction (TigerBeetle does
//! the same). A replay of an old request carries its old session number and
//! is refused the same way; a replayed registration opens a session nobody
//! uses.
//!
//! A session is bound to the public key its registration carried: a request
//! under another key (one that checked at a replica that had lost the
//! client's key, say) is not executed, and its client is not told anything.
//! Every replica decides this alike too, so the binding of a client id to a
//! key is whatever the protocol ordered first, not whatever a replica's
//! codec happened to keep.

use std::collections::{BTreeMap, HashMap};

use wire::ClientId;
use wire::crypto::PublicKey;

/// A client's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub number: u64,
    /// The key the session registered under.
    pub key: PublicKey,
    /// The latest request executed, and its result.
    pub request_num: u64,
    pub result: Vec<u8>,
    /// When the session last executed (the table's execution counter).
    last_used: u64,
}

/// What the table says about a request that is about to execute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new request of a live session: execute it, then [`ClientTable::record`].
    Execute,
    /// The session's latest request again: answer with its stored result.
    Duplicate(Vec<u8>),
    /// Older than the session's latest: ignore.
    Stale,
    /// No such session: the client was evicted (or never registered).
    Evicted,
    /// The session registered under another key: ignore, and tell nobody.
    OtherKey,
}

/// Bytes of results the table stores at most: with the sessions
/// themselves, its part of a checkpoint stays well within what a state
/// transfer accepts.
pub const RESULT_BYTES_MAX: usize = 64 << 20;

/// Sessions by client, bounded; see the module docs.
#[derive(Clone, Debug)]
pub struct ClientTable {
    sessions: HashMap<ClientId, Session>,
    /// The stored results' bytes, summed.
    result_bytes: usize,
    /// Clients by when they last executed: the front is evicted first.
    by_use: BTreeMap<u64, ClientId>,
    /// Counts executions and registrations; deterministic across replicas.
    clock: u64,
    max: usize,
}

impl ClientTable {
    pub fn new(max: usize) -> ClientTable {
        assert!(max > 0, "a client table holds at least one session");
        ClientTable {
            sessions: HashMap::new(),
            result_bytes: 0,
            by_use: BTreeMap::new(),
            clock: 0,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn get(&self, client: ClientId) -> Option<&Session> {
        self.sessions.get(&client)
    }

    /// Whether request `request_num` of `client` under `session` has
    /// already executed (or can never execute): what a primary checks before
    /// it queues a request.
    pub fn is_settled(&self, client: ClientId, session: u64, request_num: u64) -> bool {
        self.sessions
            .get(&client)
            .is_some_and(|s| s.number == session && s.request_num >= request_num)
    }

    /// Opens a session for `client` under `key` numbered `number`, evicting
    /// the least recently used one if the table is full. A client that
    /// already has a session keeps it (a retransmitted registration).
    /// Returns the session's number and the client evicted, if any; `None`
    /// if the client has a session under another key.
    pub fn register(
        &mut self,
        client: ClientId,
        key: PublicKey,
        number: u64,
    ) -> Option<(u64, Option<ClientId>)> {
        if let Some(session) = self.sessions.get(&client) {
            return (session.key == key).then_some((session.number, None));
        }
        let mut evicted = None;
        if self.sessions.len() >= self.max {
            evicted = self.evict_oldest();
        }
        self.clock += 1;
        self.by_use.insert(self.clock, client);
        self.sessions.insert(
            client,
            Session {
                number,
                key,
                request_num: 0,
                result: Vec::new(),
                last_used: self.clock,
            },
        );
        Some((number, evicted))
    }

    /// The sessions' clients and keys.
    pub fn keys(&self) -> impl Iterator<Item = (ClientId, PublicKey)> + '_ {
        self.sessions.iter().map(|(c, s)| (*c, s.key))
    }

    /// What to do with request `request_num` of `client` under `session`,
    /// authenticated under `key`.
    pub fn admit(
        &self,
        client: ClientId,
        key: &PublicKey,
        session: u64,
        request_num: u64,
    ) -> Admission {
        match self.sessions.get(&client) {
            Some(s) if s.number == session && s.key != *key => Admission::OtherKey,
            Some(s) if s.number == session => match request_num.cmp(&s.request_num) {
                std::cmp::Ordering::Greater => Admission::Execute,
                std::cmp::Ordering::Equal => Admission::Duplicate(s.result.clone()),
                std::cmp::Ordering::Less => Admission::Stale,
            },
            _ => Admission::Evicted,
        }
    }

    /// Evicts the session that executed least recently.
    fn evict_oldest(&mut self) -> Option<ClientId> {
        let (_, oldest) = self.by_use.pop_first()?;
        let session = self
            .sessions
            .remove(&oldest)
            .expect("by_use names sessions");
        self.result_bytes -= session.result.len();
        Some(oldest)
    }

    /// Records the result of an admitted request. Returns the sessions
    /// evicted to keep the results within [`RESULT_BYTES_MAX`] (never this
    /// client's: it executed last).
    pub fn record(&mut self, client: ClientId, request_num: u64, result: Vec<u8>) -> Vec<ClientId> {
        let session = self
            .sessions
            .get_mut(&client)
            .expect("only admitted requests are recorded");
        self.by_use.remove(&session.last_used);
        self.clock += 1;
        session.last_used = self.clock;
        session.request_num = request_num;
        self.result_bytes = self.result_bytes - session.result.len() + result.len();
        session.result = result;
        self.by_use.insert(self.clock, client);
        let mut evicted = Vec::new();
        while self.result_bytes > RESULT_BYTES_MAX && self.sessions.len() > 1 {
            evicted.extend(self.evict_oldest());
        }
        evicted
    }

    /// The table as bytes, deterministically (sorted by client), for
    /// checkpoints: little-endian and length-prefixed.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut clients: Vec<(&ClientId, &Session)> = self.sessions.iter().collect();
        clients.sort_unstable_by_key(|(c, _)| **c);
        out.extend_from_slice(&self.clock.to_le_bytes());
        out.extend_from_slice(&(clients.len() as u64).to_le_bytes());
        for (client, s) in clients {
            for n in [client.0, s.number, s.request_num, s.last_used] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            out.extend_from_slice(&s.key.0);
            out.extend_from_slice(&(s.result.len() as u64).to_le_bytes());
            out.extend_from_slice(&s.result);
        }
    }

    /// Inverse of [`ClientTable::encode`], from the front of `bytes`;
    /// `None` if malformed or over `max`.
    pub fn decode(bytes: &mut &[u8], max: usize) -> Option<ClientTable> {
        let mut table = ClientTable::new(max);
        table.clock = take_u64(bytes)?;
        let count = take_u64(bytes)?;
        if count > max as u64 {
            return None;
        }
        for _ in 0..count {
            let client = ClientId(take_u64(bytes)?);
            let number = take_u64(bytes)?;
            let request_num = take_u64(bytes)?;
            let last_used = take_u64(bytes)?;
            let (key, rest) = bytes.split_first_chunk::<33>()?;
            let key = PublicKey(*key);
            *bytes = rest;
            let len = usize::try_from(take_u64(bytes)?).ok()?;
            let (result, rest) = bytes.split_at_checked(len)?;
            *bytes = rest;
            if table.by_use.insert(last_used, client).is_some() {
                return None;
            }
            let session = Session {
                number,
                key,
                request_num,
                result: result.to_vec(),
                last_used,
            };
            table.result_bytes += session.result.len();
            if table.sessions.insert(client, session).is_some() {
                return None;
            }
        }
        (table.result_bytes <= RESULT_BYTES_MAX).then_some(table)
    }
}

fn take_u64(bytes: &mut &[u8]) -> Option<u64> {
    let (head, rest) = bytes.split_at_checked(8)?;
    *bytes = rest;
    Some(u64::from_le_bytes(head.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ClientId = ClientId(1);
    const B: ClientId = ClientId(2);
    const C: ClientId = ClientId(3);
    const K: PublicKey = PublicKey([2; 33]);
    const OTHER: PublicKey = PublicKey([3; 33]);

    #[test]
    fn at_most_once_within_a_session() {
        let mut table = ClientTable::new(4);
        let (session, _) = table.register(A, K, 10).unwrap();
        assert_eq!(session, 10);
        assert_eq!(table.admit(A, &K, 10, 1), Admission::Execute);
        table.record(A, 1, b"r1".to_vec());
        assert_eq!(
            table.admit(A, &K, 10, 1),
            Admission::Duplicate(b"r1".to_vec())
        );
        assert_eq!(table.admit(A, &K, 10, 0), Admission::Stale);
        assert_eq!(table.admit(A, &K, 10, 2), Admission::Execute);
        // Another session number: a replay from an earlier session.
        assert_eq!(table.admit(A, &K, 9, 5), Admission::Evicted);
        // Registering again keeps the session.
        assert_eq!(table.register(A, K, 20), Some((10, None)));
        // Another key gets neither a session nor its requests executed.
        assert_eq!(table.register(A, OTHER, 20), None);
        assert_eq!(table.admit(A, &OTHER, 10, 3), Admission::OtherKey);
    }

    #[test]
    fn the_least_recently_executed_session_is_evicted() {
        let mut table = ClientTable::new(2);
        table.register(A, K, 1);
        table.register(B, K, 2);
        table.record(A, 1, Vec::new());
        // B executed least recently (only its registration): it goes.
        assert_eq!(table.register(C, K, 3), Some((3, Some(B))));
        assert_eq!(table.admit(B, &K, 2, 1), Admission::Evicted);
        assert_eq!(table.len(), 2);
        // A replayed registration of B opens a new session; B's old requests
        // are still refused.
        assert_eq!(table.register(B, K, 4), Some((4, Some(A))));
        assert_eq!(table.admit(B, &K, 2, 1), Admission::Evicted);
    }

    #[test]
    fn two_tables_fed_the_same_order_agree_and_encode_alike() {
        let ops = [(A, 0), (B, 0), (A, 1), (C, 0), (B, 1), (A, 2), (C, 1)];
        let run = || {
            let mut table = ClientTable::new(2);
            for (i, &(client, num)) in ops.iter().enumerate() {
                if num == 0 {
                    table.register(client, K, i as u64);
                } else if let Some(s) = table.get(client).map(|s| s.number)
                    && table.admit(client, &K, s, num) == Admission::Execute
                {
                    table.record(client, num, vec![num as u8]);
                }
            }
            let mut bytes = Vec::new();
            table.encode(&mut bytes);
            bytes
        };
        assert_eq!(run(), run());
        let bytes = run();
        let decoded = ClientTable::decode(&mut &bytes[..], 2).unwrap();
        let mut again = Vec::new();
        decoded.encode(&mut again);
        assert_eq!(bytes, again);
        // A table larger than the bound, or cut short, does not decode.
        assert!(ClientTable::decode(&mut &bytes[..], 1).is_none());
        assert!(ClientTable::decode(&mut &bytes[..bytes.len() - 1], 2).is_none());
    }

    #[test]
    fn stored_results_stay_within_their_budget() {
        let mut table = ClientTable::new(16);
        let big = vec![0; RESULT_BYTES_MAX / 4];
        let clients: Vec<ClientId> = (1..=5).map(ClientId).collect();
        for (i, &c) in clients.iter().enumerate() {
            table.register(c, K, i as u64);
        }
        let mut evicted = Vec::new();
        for (i, &c) in clients.iter().enumerate() {
            evicted.extend(table.record(c, 1, big.clone()));
            assert!(table.result_bytes <= RESULT_BYTES_MAX, "after {i}");
        }
        // The fifth result evicts the session that executed least recently.
        assert_eq!(evicted, vec![clients[0]]);
        assert_eq!(table.admit(clients[0], &K, 0, 2), Admission::Evicted);
        let mut bytes = Vec::new();
        table.encode(&mut bytes);
        let decoded = ClientTable::decode(&mut &bytes[..], 16).unwrap();
        assert_eq!(decoded.result_bytes, table.result_bytes);
    }
}
