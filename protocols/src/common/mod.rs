//! Building blocks that protocols share.
//!
//! - [`ClientTable`] (`client_table.rs`): at-most-once execution with cached
//!   replies, per client and session, bounded in entries and result bytes
//!   with least-recently-executed eviction, and a deterministic encoding for
//!   snapshots. Generic over what a session is bound to ([`Binding`]): PBFT
//!   binds each session to its registration's public key, the baseline to
//!   nothing.
//! - [`sessions`]: the client table with sessions bound to public keys
//!   (registration as request 0, session numbers, eviction that tells the
//!   client), for protocols whose clients authenticate with key pairs.
//! - [`ClientAuth`] (`client_auth.rs`): clients' requests authenticated for
//!   every replica (one HMAC per replica, keys agreed by ECDH) and replies
//!   with one MAC; a replica's table of clients' keys, those of sessions
//!   pinned, at most a bound of others.
//! - [`ReplyQuorum`] (`replies.rs`): a client's replies to its outstanding
//!   request, accepted at f + 1 matching from distinct replicas, whose MACs
//!   are checked only when they would make the quorum.
//! - [`Retransmit`] (`retransmit.rs`): a client's retransmission schedule,
//!   twice its smoothed latency within a floor and a cap, then exponential
//!   backoff.
//! - [`VoteSet`] (`votes.rs`): votes of at most n voters, each counted once
//!   (the first vote stands), kept apart by what they vote for, with
//!   thresholds and certificates: PBFT's prepares, commits and checkpoint
//!   votes.
//!
//! Each is a plain value with no timers, no I/O and no knowledge of any
//! protocol's messages, so that a protocol keeps its own drop reasons and
//! counters, and so that each is tested here on its own. `ClientAuth` is
//! the exception: it knows the authenticated requests and replies of
//! [`wire::auth`], which protocols share, and its drop reasons name what
//! failed in them.

pub mod client_auth;
pub mod client_table;
pub mod replies;
pub mod retransmit;
pub mod sessions;
pub mod votes;

pub use client_auth::{ClientAuth, ReplyKeys};
pub use client_table::{Admission, Binding, ClientTable, Entry};
pub use replies::{Accepted, ReplyQuorum};
pub use retransmit::Retransmit;
pub use votes::{Refused, VoteSet};
