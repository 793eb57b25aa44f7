//! PBFT: Practical Byzantine Fault Tolerance (Castro & Liskov, OSDI'99; the
//! long version in TOCS 2002). Section numbers below are the OSDI paper's
//! (TOCS in parentheses where they differ).
//!
//! # Algorithm
//!
//! n ≥ 3f+1 replicas tolerate f Byzantine ones. They move through views; the
//! primary of view v is replica v mod n, the others are backups. A quorum is
//! ⌈(n + f + 1)/2⌉ replicas (2f+1 when n = 3f+1), so that two quorums share
//! f+1 replicas, one of them correct, whatever n the configuration is given
//! ([`Config::quorum`]).
//!
//! **Clients and sessions (§4.1).** Before its first operation a client
//! registers: request 0, with no operation, sent to every replica (so that
//! each learns where to send its replies; authenticated like any request, so
//! nobody else can say where they go, and relayed to the primary by the
//! backups like any request a client multicast).
//! Executing a registration opens a session in the client table, bound to
//! the public key the registration carried; every later request carries the
//! session's number, and executes only under that key. The table keeps each
//! session's latest request number and result, so a request executes at
//! most once and a retransmission gets the stored result again. It holds at
//! most [`Config::client_table_max`] sessions and [`RESULT_BYTES_MAX`] bytes
//! of results: past either, the least recently used sessions are evicted, at
//! execution, so every replica evicts the same; an evicted client is told,
//! and gives up (see [`crate::common::sessions`], over the shared
//! [`crate::common::ClientTable`]). Sessions cost nothing to open, so a
//! client that opens many can evict others': a deployment would admit
//! clients (the trust assumption below).
//!
//! A client sends its request to the primary it believes in and, on a
//! timeout, to every replica; backups relay it to the primary. The first
//! retransmission waits [`CLIENT_RESEND_INTERVAL`] or twice the client's
//! smoothed latency, whichever is longer, and each further one twice as long
//! as the last, up to [`CLIENT_RESEND_MAX`] ([`crate::common::Retransmit`]).
//! The client accepts a result once f+1 distinct replicas sent the same one.
//!
//! **Normal case (§4.2).** The primary gathers requests into batches (at
//! most `batch_max` requests, [`Config::batch_max`]) and gives each batch the next sequence
//! number, keeping at most `window` batches in flight (a tunable, [`Config::window`]). Batches adapt to
//! the load: with nothing in flight the primary proposes whatever it has at
//! once; with batches in flight it pipelines another only when a full one is
//! queued. Three phases order a batch:
//!
//! 1. pre-prepare: the primary multicasts `<PRE-PREPARE, v, n, d>` signed, with
//!    the batch whose digest is d;
//! 2. prepare: a backup that accepts it (right view, n within the watermarks,
//!    no other digest accepted for v, n) multicasts `<PREPARE, v, n, d, i>`.
//!    A replica is *prepared* once it has the pre-prepare and quorum − 1
//!    matching prepares from distinct backups (counted, like commits and
//!    checkpoint votes, in a [`crate::common::VoteSet`]);
//! 3. commit: a prepared replica multicasts `<COMMIT, v, n, d, i>`; with a
//!    quorum of matching commits the batch is *committed-local*, and it
//!    executes once every lower sequence number has executed.
//!
//! **Checkpoints and garbage collection (§4.3).** After executing a sequence
//! number that is a multiple of [`CHECKPOINT_INTERVAL`], a replica snapshots
//! its state (application and client table) and multicasts
//! `<CHECKPOINT, n, d, i>`; a quorum of matching votes makes it *stable*. The
//! stable checkpoint is the low watermark h; the high watermark is
//! h + [`LOG_MAX`], and everything at or below h is discarded.
//!
//! **View change (§4.4; TOCS §4.5).** One timer watches the primary, and runs
//! only while a backup waits for a request to execute; it fires when nothing
//! executed for the view-change timeout, or when the oldest waiting request
//! has waited longer than the group needs to drain a queue of one request
//! per client at its current rate: a busy correct primary is not taken for a
//! faulty one, and one that censors a client is replaced however busy it
//! keeps the others (`replica/view_change.rs`). The backup moves to view v+1
//! and multicasts `<VIEW-CHANGE, v+1, n, C, P, i>`; the primary of v+1, with
//! a quorum of them (V), computes O (for every n from the highest stable
//! checkpoint in V to the highest prepared sequence number, the digest of
//! the certificate of the highest view, or the null batch) and multicasts
//! `<NEW-VIEW, v+1, V, O>`; backups recompute O from V. Timeouts double per
//! view change; f+1 view-changes for later views make a replica join the
//! lowest. Entering a view, every backup hands the new primary the requests
//! it waits for, so the next view does not wait for clients' retransmissions.
//!
//! **State transfer (TOCS §5.3.2).** A replica behind a stable checkpoint
//! fetches its state, [`TRANSFER_WINDOW`] chunks at a time. The
//! checkpoint's digest commits to the state's size and a Merkle tree over
//! its chunks ([`wire::merkle`]): each chunk is checked on arrival, whoever
//! sent it. The others keep only their stable checkpoint and later ones, so
//! a transfer must finish before the group moves on past the next
//! checkpoint, or it starts over from the new one. With a window of 1 MiB,
//! a state of 2 MB transfers under steady load in the simulator
//! (`a_lagging_replica_catches_up_a_large_state_under_load`); how large a
//! state still does on real hosts is not measured, and a large enough one
//! would start over for as long as the load lasts.
//!
//! **Recovery (TOCS §4.3.2).** A replica that restarts without its memory
//! first estimates the high watermark H from the others' replies, then takes
//! part but sends no pre-prepare, prepare or commit at or below H until a
//! checkpoint at or above H is stable and it has its state; it counts toward
//! f meanwhile (`replica/recovery.rs`). As the primary of a new view it still
//! sends the new-view, whose pre-prepares every backup recomputes from V; as
//! the primary of its current view it says it recovers, and the backups move
//! on to the next view.
//!
//! **Retransmission.** A replica that made no progress for
//! `status_interval_ms` ([`Config::status_interval`]) while it has work outstanding, and every replica
//! every [`STATUS_HEARTBEAT`], multicasts a signed status; peers answer with
//! what it lacks (`replica/status.rs`), a peer's statuses once per half
//! interval at most, so a flood of them is not answered in kind. A slot
//! keeps the batches of the last few digests it held, so that whichever one
//! a new view chooses, the replicas that had it can answer a `FetchBatch`.
//!
//! # Cryptography
//!
//! Replica-to-replica messages are signed with secp256k1 (the paper's
//! signature variant). The [`Codec`] signs in `encode` and verifies in
//! `decode`, so the runtime can spread both over threads; cheap checks come
//! first: a message naming another replica than its source address is
//! dropped before its signature is checked, a pre-prepare for a view and
//! sequence number this replica accepted already is dropped from its header,
//! view-changes and new-views (up to a few hundred signatures each) for a
//! view it entered already are dropped unchecked, and so are clients'
//! requests while it changes views (it would drop them after the check:
//! under load, thousands would queue ahead of the view change's messages).
//!
//! **Requests and replies carry MACs (§4; TOCS §3.2).** Each client and each
//! replica share a key, agreed by ECDH from the client's key pair (derived
//! from a client key seed and its id) and the replica's. A request travels
//! with an *authenticator*, one HMAC-SHA256 of the session and request per
//! replica; a replica's codec checks its own entry. A faulty primary cannot
//! forge a request: no correct backup's entry would check. A batch with a
//! request this replica cannot check (the client's authenticator is good at
//! some replicas only: the "big MAC" attack) is not dropped: the backup
//! prepares it once f+1 replicas vouch for it (the primary and f backups),
//! so such a client costs no view change as long as its authenticator checks
//! at the primary and at f backups. A reply carries one MAC. The keys and
//! the checks are the shared [`crate::common::ClientAuth`], which the codec
//! holds.
//!
//! A replica keeps the key it shares with every client that has a session
//! (pinned as the session opens, so it is the session's), and with at most
//! [`CLIENT_KEYS_MAX`] others: a flood of fresh keys evicts only those, and
//! a request is never checked under a key the replica does not keep.
//!
//! Trust assumption: the first public key under which a client id's
//! registration executes owns that id (and, at a replica, the first under
//! which a request checked, until then). A deployment would bind client ids
//! to keys (a certificate, or keys configured at the replicas). A replica
//! learns where to send a client's replies from the source address of the
//! client's authenticated datagrams; an attacker that captures one and
//! replays it from a spoofed address can redirect that client's replies
//! until its next datagram.
//!
//! # Bounds
//!
//! The log holds sequence numbers in (h, h + [`LOG_MAX`]], each with at
//! most a few batches; the primary's queue holds at most [`PENDING_MAX`]
//! requests and [`PENDING_BYTES_MAX`] bytes, a backup's waiting requests
//! [`WAITING_MAX`] and [`WAITING_BYTES_MAX`]; the client table at most
//! [`CLIENT_TABLE_MAX`] sessions and [`RESULT_BYTES_MAX`] bytes of results;
//! the key table those sessions' keys and [`CLIENT_KEYS_MAX`] more;
//! checkpoint votes [`CHECKPOINT_VOTES_MAX`] sequence numbers; a few
//! view-changes per replica; one state transfer, of at most
//! [`STATE_SIZE_MAX`] bytes, which a key-value store at its budget
//! ([`crate::app::KV_BYTES_MAX`]) and a full client table stay within. A
//! view-change carries at most `LOG_MAX` certificates of a quorum's
//! signatures each, which keeps the largest new-view in a datagram for up
//! to [`REPLICAS_MAX`] replicas.

pub mod bugs;
mod client;
mod codec;
mod kit;
mod replica;

pub use crate::common::client_auth::{CLIENT_KEYS_MAX, request_overhead};
pub use crate::common::sessions::{Admission, ClientTable, RESULT_BYTES_MAX, Session};
pub use client::{Client, ClientTimer};
pub use codec::{
    Codec, Config, Inbound, Outbound, Payload, batch_digest, check_checkpoint_cert, check_new_view,
    check_view_change, compute_new_view,
};
pub use kit::{Kit, PROTOCOL};
pub use replica::{Recovery, Replica, ReplicaTimer};

use std::time::Duration;

/// Most replicas in a group: with more, the largest new-view message the
/// checks accept (a quorum of view-changes, each with a quorum's
/// checkpoint proof and `LOG_MAX` prepared certificates) would not fit a
/// datagram. [`Config::new`] refuses more. The registry's bound.
pub const REPLICAS_MAX: usize = wire::pbft::REPLICAS_MAX;

/// Most requests in one batch on the wire; the primary's own maximum is the
/// `batch_max` tunable ([`Config::batch_max`]), at most this.
pub const BATCH_SIZE_MAX: usize = wire::pbft::BATCH_SIZE_MAX;

/// Most bytes of requests (operations, headers and authenticators, see
/// [`request_overhead`]) in one batch, so a pre-prepare fits a datagram.
pub const BATCH_BYTES_MAX: usize = 60 * 1024;

// A full batch and its pre-prepare's header (under 512 bytes) fit one
// datagram.
const _: () = assert!(BATCH_BYTES_MAX + 512 <= wire::MESSAGE_SIZE_MAX);

/// Largest operation a replica accepts in a request.
pub const REQUEST_OP_MAX: usize = 32 * 1024;

/// Sequence numbers between checkpoints.
pub const CHECKPOINT_INTERVAL: u64 = 8;

/// Distance from the low watermark to the high watermark (the paper's L): the
/// log's capacity in sequence numbers.
pub const LOG_MAX: u64 = 2 * CHECKPOINT_INTERVAL;
const _: () = assert!(LOG_MAX == wire::pbft::LOG_MAX);

/// Sessions in the client table (the default of [`Config::client_table_max`]):
/// past it, registering evicts the session that executed least recently.
pub const CLIENT_TABLE_MAX: usize = 1 << 16;
const _: () = assert!(CLIENT_TABLE_MAX as u64 == wire::pbft::CLIENT_TABLE_MAX.max);

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

// A key-value store at its budget and a full client table (a session takes
// 73 bytes besides its result) fit a transfer. Other applications must keep
// their snapshots within what is left.
const _: () = assert!(
    crate::app::KV_BYTES_MAX + RESULT_BYTES_MAX + CLIENT_TABLE_MAX * 128 <= STATE_SIZE_MAX as usize
);

/// Bytes of state per chunk: a chunk and its Merkle path fit a datagram.
pub const STATE_CHUNK_MAX: usize = 32 * 1024;

/// Longest view-change timeout after doubling.
pub const VIEW_CHANGE_TIMEOUT_MAX: Duration = Duration::from_secs(1);

/// How many times the time to drain a queue of one request per known client
/// the oldest request a backup waits for may wait before it suspects the
/// primary (see the request timer in `replica/view_change.rs`).
pub const QUEUE_DRAIN_FACTOR: f64 = 4.0;

/// Longest a request may wait, however slowly the group drains its queue,
/// before a backup suspects the primary of censoring it.
pub const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(5);

/// How often a replica tells the others where it stands even when it is not
/// stuck: a replica left behind in an idle group learns of it this late.
pub const STATUS_HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a replica waits for a state chunk before asking someone else.
pub const TRANSFER_RETRY: Duration = Duration::from_millis(10);

/// State chunks a replica asks for at once in a state transfer (1 MiB).
pub const TRANSFER_WINDOW: u64 = 32;

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
