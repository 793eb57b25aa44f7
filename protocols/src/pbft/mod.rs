//! PBFT: Practical Byzantine Fault Tolerance (Castro & Liskov, OSDI'99; the
//! long version in TOCS 2002). Section numbers below are the OSDI paper's
//! (TOCS in parentheses where they differ).
//!
//! # Algorithm
//!
//! n = 3f+1 replicas tolerate f Byzantine ones. They move through views; the
//! primary of view v is replica v mod n, the others are backups.
//!
//! **Normal case (§4.2).** A client sends its request to the primary it
//! believes in (and, before its first, a hello to every replica, so that the
//! runtime learns where to send their replies), and on a timeout retransmits
//! to every replica; backups relay it to the primary. The first
//! retransmission waits [`CLIENT_RESEND_INTERVAL`] or twice the client's
//! smoothed latency, whichever is longer, and each further one twice as long
//! as the last, up to [`CLIENT_RESEND_MAX`]: an overloaded group is not
//! flooded with copies of requests it has queued, and backups do not take a
//! slow primary for a faulty one.
//!
//! The primary gathers requests into batches (at most [`BATCH_SIZE_MAX`]
//! requests) and gives each batch the next sequence number, keeping at most
//! [`WINDOW_MAX`] batches in flight (proposed, not yet executed). Batches
//! adapt to the load: with nothing in flight the primary proposes whatever it
//! has at once; with batches in flight it pipelines another only when a full
//! one is queued, so that at moderate load requests gather into one batch per
//! round instead of each paying for a round of signatures alone. Three phases
//! order a batch:
//!
//! 1. pre-prepare: the primary multicasts `<PRE-PREPARE, v, n, d>` signed, with
//!    the batch whose digest is d;
//! 2. prepare: a backup that accepts it (right view, n within the watermarks,
//!    no other digest accepted for v, n) multicasts `<PREPARE, v, n, d, i>`.
//!    A replica is *prepared* once it has the pre-prepare and 2f matching
//!    prepares from distinct backups: then no other batch can be prepared at
//!    v, n by a correct replica;
//! 3. commit: a prepared replica multicasts `<COMMIT, v, n, d, i>`; with 2f+1
//!    matching commits the batch is *committed-local*, and it executes once
//!    every lower sequence number has executed.
//!
//! Execution goes through the [`App`](crate::app::App), request by request.
//! A client table keeps each client's latest request number and result, so a
//! request executes at most once and a retransmission gets the stored result
//! again. Each replica replies to the client directly; the client accepts a
//! result once f+1 distinct replicas sent the same one (at least one of them
//! is correct).
//!
//! **Checkpoints and garbage collection (§4.3).** After executing a sequence
//! number that is a multiple of [`CHECKPOINT_INTERVAL`], a replica snapshots
//! its state (application and client table), and multicasts
//! `<CHECKPOINT, n, d, i>` with the snapshot's digest. 2f+1 matching
//! checkpoint messages make the checkpoint *stable*: they are its proof. The
//! stable checkpoint's sequence number is the low watermark h; the high
//! watermark is h + [`LOG_MAX`]. Everything in the log at or below h is
//! discarded, so the log holds at most `LOG_MAX` sequence numbers.
//!
//! **View change (§4.4; TOCS §4.5).** A backup that received a request starts
//! a timer; if the request has not executed when it fires, the backup moves to
//! view v+1 and multicasts `<VIEW-CHANGE, v+1, n, C, P, i>`: its stable
//! checkpoint n with proof C, and P, a prepared certificate for every sequence
//! number above n at which it prepared. The primary of v+1, with 2f+1 of them
//! (V), computes O: for every n between the highest stable checkpoint in V
//! (min-s) and the highest prepared sequence number (max-s), a pre-prepare for
//! v+1 with the digest of the certificate of the highest view, or the null
//! batch (empty) if there is none. It multicasts `<NEW-VIEW, v+1, V, O>`.
//! Backups check it by recomputing O from V (a faulty primary cannot smuggle
//! anything in), and prepare O's pre-prepares in the new view. A replica whose
//! timer fires again before the new view starts moves on to v+2 with the
//! timeout doubled (back to the first once it executes a request, unless
//! f+1 peers' statuses say it is only catching up with them); a replica that
//! sees f+1 view-change messages for higher views joins the lowest of them
//! (so a view change cannot stall on replicas that never timed out).
//!
//! **State transfer (TOCS §5.3.2).** A replica that learns of a stable
//! checkpoint above what it executed (it was partitioned, or restarted with
//! empty state) fetches the checkpoint's state in chunks from other replicas
//! and checks it against the checkpoint's digest before restoring it.
//!
//! **Retransmission.** The paper leaves retransmission of lost messages to the
//! implementation. Here a replica that made no progress for
//! [`STATUS_INTERVAL`] while it has work outstanding multicasts a signed
//! *status* (its view, last executed and stable sequence numbers); peers answer
//! with what it misses: their pre-prepares, prepares and commits above what it
//! executed, checkpoint votes, the new-view message of a later view, or the
//! proof of a later stable checkpoint. Batches referred to by digest only (in
//! a new-view's O) are fetched with `FetchBatch`.
//!
//! # Cryptography
//!
//! Replica-to-replica messages are signed with secp256k1 (the paper's
//! signature variant; its MAC authenticators between replicas are not
//! implemented). The [`Codec`] signs in `encode` and verifies in `decode`, so
//! the runtime can spread both over threads; a [`Replica`] sees verified
//! messages only. A few rare messages that a replica keeps as proof of its own
//! statements (checkpoint votes, view-change, the pre-prepares of a new view)
//! are signed in the protocol thread.
//!
//! **Requests and replies carry MACs (§4; TOCS §3.2).** Each client and each
//! replica share a key: every client has a secp256k1 key pair (derived from a
//! client key seed and its id: the run's seed in the simulator, a fresh seed
//! per benchmark point from the runner), and both sides compute the pair's key
//! by ECDH, the client from the replicas' public keys in the [`Config`], a
//! replica's codec from its secret key and the client's public key, which
//! every request carries. A replica computes it once per client and keeps it
//! in a table of at most [`CLIENT_KEYS_MAX`] clients.
//!
//! A request travels with an *authenticator*: one HMAC-SHA256 of the request
//! per replica, each under that replica's key. The client's codec computes it
//! in `encode`; a replica's codec checks its own entry in `decode`, both for a
//! request from a client (or relayed by a backup) and for every request in a
//! pre-prepare, and drops what fails (`request: bad authenticator`,
//! `pre-prepare: a request is not authenticated`). So backups can relay
//! requests to the primary (§4.4) without being able to alter them, and a
//! faulty primary cannot forge a request in a client's name: the backups'
//! entries would not check, no correct backup prepares it, and the view
//! change replaces the primary. A request re-proposed in a new view is
//! accepted by digest, as its prepared certificate vouches for it.
//!
//! A reply travels as `<REPLY, v, t, c, i, r>` with one HMAC-SHA256 under the
//! pair's key instead of a signature: the replica's codec MACs it in `encode`
//! (a reply to a client whose key it does not know yet is dropped there; the
//! client's retransmission brings a request that teaches it), and the
//! client's codec checks it in `decode` (in constant time) and drops a reply
//! whose MAC fails (`reply: bad MAC`). A MAC costs about a microsecond against
//! tens for a signature and its check, so a client's f+1 matching replies and
//! a request's n MACs are cheap. A faulty replica still cannot pose as
//! another: it does not know the key that replica shares with the client.
//!
//! Trust assumption: a replica keeps the first public key under which a
//! request for a client id checked (a different key later is dropped as
//! `request: client already has another key`). Whoever sends the first
//! request for an unused client id owns that id; nobody can take over an id
//! whose requests a replica has already checked. A request under an unknown
//! client id costs a replica an ECDH before its MAC can be checked, so a
//! flood of requests under fresh ids costs CPU. Where a replica sends a
//! client's replies is learnt from the source address of the client's
//! datagrams (hellos included), which UDP does not authenticate. A
//! deployment would bind client ids to keys (a certificate, or keys
//! configured at the replicas) and addresses.
//! A faulty client can send an authenticator that checks at some replicas
//! and not at others; the paper then lets a backup accept a request it cannot
//! check once it is prepared by others, which is not implemented here: such
//! a client can make a correct primary look faulty and cost a view change.
//! The simulator's faults are replicas and the network, not clients.
//!
//! # Bounds
//!
//! The log holds sequence numbers in (h, h + [`LOG_MAX`]]; the primary's queue
//! of unproposed requests holds at most [`PENDING_MAX`]; checkpoint votes are
//! kept for at most [`CHECKPOINT_VOTES_MAX`] sequence numbers; one view-change
//! message per replica; one outstanding state transfer. Messages are bounded
//! by [`wire::MESSAGE_SIZE_MAX`]: a view-change carries at most `LOG_MAX`
//! certificates, which with these constants keeps a new-view under the limit
//! for n ≤ 7.

mod client;
mod client_table;
mod codec;
mod replica;

pub use client::{Client, ClientTimer};
pub use client_table::{Admission, ClientTable, Session};
pub use codec::{
    Codec, Config, Inbound, Outbound, Payload, batch_digest, check_checkpoint_cert, check_new_view,
    check_view_change, compute_new_view,
};
pub use replica::{Recovery, Replica, ReplicaTimer};

use std::time::Duration;

/// Most requests in one batch.
pub const BATCH_SIZE_MAX: usize = 256;

/// Most bytes of requests (operations, headers and authenticators, see
/// [`request_overhead`]) in one batch, so a pre-prepare fits a datagram.
pub const BATCH_BYTES_MAX: usize = 60 * 1024;

// A full batch and its pre-prepare's header (under 512 bytes) fit one
// datagram.
const _: () = assert!(BATCH_BYTES_MAX + 512 <= wire::MESSAGE_SIZE_MAX);

/// Bytes a request takes in a batch besides its operation, at most: its
/// session, header and length prefixes (at most 31 bytes), the client's
/// public key (33), and its authenticator of `n` MACs.
pub fn request_overhead(n: usize) -> usize {
    72 + n * size_of::<wire::Mac>()
}

/// Largest operation a replica accepts in a request.
pub const REQUEST_OP_MAX: usize = 32 * 1024;

/// Most batches the primary has proposed and not yet executed.
pub const WINDOW_MAX: u64 = 4;

/// Sequence numbers between checkpoints.
pub const CHECKPOINT_INTERVAL: u64 = 8;

/// Distance from the low watermark to the high watermark (the paper's L): the
/// log's capacity in sequence numbers.
pub const LOG_MAX: u64 = 2 * CHECKPOINT_INTERVAL;

/// Clients whose MAC keys a replica keeps: a request from a further client is
/// still checked (at the cost of an ECDH each time), but replies to it are
/// not sent.
pub const CLIENT_KEYS_MAX: usize = 1 << 16;

/// Sessions in the client table (the default of [`Config::client_table_max`]):
/// past it, registering evicts the session that executed least recently.
pub const CLIENT_TABLE_MAX: usize = 1 << 16;

/// Requests the primary queues before it proposes them: enough for every
/// client of a large closed-loop benchmark to have one outstanding.
pub const PENDING_MAX: usize = 1 << 16;

/// Bytes of requests the primary queues at most (a queue of the largest
/// operations would otherwise hold 2 GiB).
pub const PENDING_BYTES_MAX: usize = 64 << 20;

/// Requests a backup waits for (and times the primary on) at once.
pub const WAITING_MAX: usize = 1 << 16;

/// Bytes of requests a backup waits for at most.
pub const WAITING_BYTES_MAX: usize = 64 << 20;

/// Sequence numbers above the stable checkpoint for which checkpoint votes are
/// kept.
pub const CHECKPOINT_VOTES_MAX: usize = 8;

/// Largest state a replica accepts in a state transfer.
pub const STATE_SIZE_MAX: u64 = 256 * 1024 * 1024;

/// Bytes of state per chunk: a chunk and its Merkle path fit a datagram.
pub const STATE_CHUNK_MAX: usize = 32 * 1024;

/// First view-change timeout; doubled at each view change that does not
/// execute a request.
pub const VIEW_CHANGE_TIMEOUT: Duration = Duration::from_millis(40);

/// Longest view-change timeout after doubling.
pub const VIEW_CHANGE_TIMEOUT_MAX: Duration = Duration::from_secs(1);

/// How many times the time to drain a queue of one request per known client
/// the oldest request a backup waits for may wait before it suspects the
/// primary (see the request timer in `replica/view_change.rs`).
pub const QUEUE_DRAIN_FACTOR: f64 = 4.0;

/// Longest a request may wait, however slowly the group drains its queue,
/// before a backup suspects the primary of censoring it.
pub const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// How often a replica checks whether it is stuck and asks for help.
pub const STATUS_INTERVAL: Duration = Duration::from_millis(10);

/// How often a replica tells the others where it stands even when it is not
/// stuck: a replica left behind in an idle group learns of it this late.
pub const STATUS_HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a replica waits for a state chunk before asking someone else.
pub const TRANSFER_RETRY: Duration = Duration::from_millis(10);

/// How long a client waits at least before it first retransmits a request
/// (to every replica); longer when its operations usually take longer.
pub const CLIENT_RESEND_INTERVAL: Duration = Duration::from_millis(30);

/// Longest wait between retransmissions of one request, after doubling.
pub const CLIENT_RESEND_MAX: Duration = Duration::from_millis(500);

/// How long after the last fault healed every client must have finished its
/// operations in a seeded run: room for a full backoff of view changes
/// ([`VIEW_CHANGE_TIMEOUT_MAX`] twice), a client's longest retransmission
/// wait, and the work itself.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(3);
