//! A client table of sessions bound to public keys:
//! [`crate::common::ClientTable`] for protocols whose clients authenticate
//! with key pairs ([`crate::common::client_auth`]).
//!
//! A client registers before its first request: a registration is a request
//! like any other (numbered 0, with no operation), ordered by the protocol,
//! and executing it opens a session whose number the protocol chooses so
//! that it differs from every session before it (where it executed: a slot
//! and position in the order). Later requests carry the session number, and
//! the table decides at most once per session and request number (see the
//! shared table's docs).
//!
//! A protocol bounds the table's sessions (`max` of [`new`]), and their
//! stored results take at most [`RESULT_BYTES_MAX`] bytes; past either, the
//! sessions that executed least recently are evicted. Registration and
//! eviction happen at execution, in the order the protocol fixed, so every
//! replica keeps and evicts the same sessions: their at-most-once decisions
//! never diverge (an entry evicted at one replica and kept at another would
//! let a retransmission execute at one and not at the other). A request
//! whose session is not in the table (evicted, or never opened) is not
//! executed: its client is told it was evicted, and gives up, since it
//! cannot know whether its last request executed before the eviction
//! (TigerBeetle does the same). A replay of an old request carries its old
//! session number and is refused the same way; a replayed registration opens
//! a session nobody uses.
//!
//! A session is bound to the public key its registration carried: a request
//! under another key (one that checked at a replica that had lost the
//! client's key, say) is not executed, and its client is not told anything.
//! Every replica decides this alike too, so the binding of a client id to a
//! key is whatever the protocol ordered first, not whatever a replica's
//! [`crate::common::ClientAuth`] happened to keep; the protocol pins each
//! session's key there as it opens the session.

use wire::crypto::PublicKey;

pub use crate::common::Admission;

/// Sessions by client, bound to keys; see the module docs.
pub type ClientTable = crate::common::ClientTable<PublicKey>;

/// A client's session: its number, key, latest request and result.
pub type Session = crate::common::Entry<PublicKey>;

/// Bytes of results the table stores at most: with the sessions
/// themselves, its part of a checkpoint stays well within what a state
/// transfer accepts.
pub const RESULT_BYTES_MAX: usize = 64 << 20;

/// An empty table of at most `max` sessions.
pub fn new(max: usize) -> ClientTable {
    ClientTable::new(max, RESULT_BYTES_MAX)
}

/// A table from the front of a checkpoint's bytes: see
/// [`crate::common::ClientTable::decode`].
pub fn decode(bytes: &mut &[u8], max: usize) -> Option<ClientTable> {
    ClientTable::decode(bytes, max, RESULT_BYTES_MAX)
}
