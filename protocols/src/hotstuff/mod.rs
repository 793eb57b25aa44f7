//! Chained HotStuff (Yin, Malkhi, Reiter, Gueta, Abraham, "HotStuff: BFT
//! Consensus with Linearity and Responsiveness", PODC 2019), in its
//! event-driven formulation (the paper's §5–§6, Algorithms 3–5), with a
//! pacemaker that synchronises views through timeout certificates.
//!
//! # Algorithm
//!
//! n ≥ 3f + 1 replicas tolerate f Byzantine ones. Views are numbered from 1;
//! the leader of view v is replica v mod n, so the leader changes every view.
//! A quorum is ⌈(n + f + 1)/2⌉ replicas (n − f when n = 3f + 1: any two
//! share a correct replica, whatever n the group is given,
//! [`Config::quorum`]).
//!
//! **Blocks and QCs.** The leader of view v proposes one block: its view,
//! its height (its parent's plus one), a batch of clients' requests, and
//! `justify`, the highest quorum certificate (QC) the leader knows; the
//! block `justify` certifies is the parent. A replica votes for the block
//! (a signature over its view and digest) and sends the vote to the leader
//! of view v + 1, which forms a QC from a quorum of votes and puts it in
//! its own block. The genesis block, at height 0 and view 0, is certified
//! by a QC without votes.
//!
//! **The rules (Algorithm 4).** For a block b* whose QC certifies b'', with
//! b'' certifying b' and b' certifying b:
//!
//! - *vote*: a replica votes for b* in view v only if v is above the last
//!   view it voted in, and b* extends its locked block or b*'s QC is for a
//!   higher view than the locked block's (the paper's `safeNode`);
//! - *lock*: on b*'s QC, the locked block becomes b' if b' is higher (the
//!   two-chain);
//! - *commit*: if b'' is b''s child in the next view and b' is b's child in
//!   the next view (a three-chain of direct parents, no view between), b
//!   and every uncommitted ancestor commit, and execute in height order
//!   through the [`App`](crate::app::App).
//!
//! Safety rests on these rules alone: the pacemaker, timeouts and
//! certificates below decide only when replicas move on.
//!
//! **Pacemaker.** A replica is in one view at a time: the view it waits for a
//! proposal in. It enters view v + 1 when it votes in view v, on a QC for
//! view v (a block carried it, or it formed it), or on a timeout
//! certificate (TC) for view v. Its view timer runs only while there is
//! work pending (requests it holds, or a recent block with requests that
//! may not have committed everywhere); it starts at `view_timeout_ms`,
//! doubles with every view in a row that times out, up to
//! [`VIEW_TIMEOUT_MAX`], and returns to the start when a QC forms. When it
//! fires, the replica multicasts a signed timeout for its view carrying its
//! highest QC and its vote in the view before, if it cast one. A replica
//! that timed out in view w has given up on every view up to w, so its
//! latest timeout counts toward a TC for any view up to w: a quorum of
//! replicas whose latest timeouts are at or above w form a TC for w, even
//! if some voted in w − 1 and moved on while others waited in it. A replica
//! that sees f + 1 timeouts at or above some view w at or above its own
//! times out in w too (one of them is correct), so views do not drift
//! apart. A crashed or silent leader costs one timeout: the replicas wait
//! for its proposal, time out in its view, and the next leader proposes.
//! With round robin a crashed replica's view comes back every n views, and
//! a three-chain needs three views in a row, so most operations would wait
//! for one such timeout: a replica that timed out in a view of a leader it
//! has heard nothing from since (no message of any kind) gives that
//! leader's next view a [`SILENT_LEADER_SHARE`] of the timer. Any message
//! from it ends the suspicion, so a leader that was only slow loses at
//! most one short view. A
//! crashed *next* leader swallows the votes for the block before; the
//! votes in the timeouts let everyone form that QC anyway, so the block is
//! not lost and a rotation with a dead replica still commits (without them,
//! n = 4 with one replica down would never see three views in a row
//! certified). A leader that proposes different blocks to different
//! replicas may split its view's votes so that no QC can form; the replicas
//! voted, so they do not time out in its view, and the next leader has
//! neither a QC nor a TC for it. That leader sees the split in the votes
//! it collects, times out in the split view at once, and the replicas of
//! its view follow (a timeout for the view just left, from the leader of
//! theirs): their TC lets it propose in its own view. Without this, the
//! view after an equivocating leader would be lost too, and with n = 4 and
//! round robin no three correct leaders in a row would be left to commit.
//!
//! Every [`STATUS_HEARTBEAT`], and when a timeout shows that its sender is
//! behind, a replica sends its highest QC, the QC of its latest commit and
//! its TC (`SyncInfo`): a replica that missed a QC in an idle group, where
//! no further blocks come, learns of it and commits what the others did.
//!
//! While any block with requests is uncommitted the leaders keep proposing,
//! with empty blocks if they have no requests, so the last request of a
//! closed-loop client commits without waiting for more load; with nothing
//! pending they stop, and no timer runs.
//!
//! **Batching.** A block carries at most `block_max` requests. A leader
//! proposes at once when nothing is in flight (no uncommitted block with
//! requests) or its block is full, and otherwise after `batch_delay_us`, so
//! that neither low nor high load stalls. The delay is zero by default: a
//! leader proposes only once it holds the QC of the view before, and
//! requests gather in its pool during that round trip anyway (see
//! [`wire::hotstuff::BATCH_DELAY_US`]).
//!
//! **Clients.** As in PBFT: a client registers (request 0) before its first
//! operation, and every request carries the session the client table gave
//! it; requests carry an authenticator of one MAC per replica, replies one
//! MAC. A client sends each request to the replica it expects to propose
//! next (each reply names that view: the one after the view the replica
//! enters if the group is moving on, that one if the group goes idle),
//! retransmits to every replica with the kit's backoff, and accepts f + 1
//! matching results from distinct replicas. A replica a request reaches
//! that will not propose next forwards it to the one that will (`Forward`,
//! the client's authenticator unchanged), so a wrong guess costs one hop,
//! and a replica takes in about one copy of each request instead of one
//! per replica. Every replica keeps the requests it holds in a pool; a
//! leader proposes from its pool what is not in the chain it extends, so
//! requests in a block that was abandoned (never certified) are proposed
//! again. A replica votes for a block only if every request in it checks
//! under its own MAC ([`Codec`] checks them on arrival).
//!
//! **Block sync.** A replica that receives a block or a QC whose ancestors it
//! lacks asks the sender (and, if that fails, the others in turn) for the
//! missing blocks, at most [`FETCH_BLOCKS_MAX`] at a time and a datagram's
//! worth in one answer, checks each against the digest its child names, and
//! delivers them parent first. A replica so far behind that the blocks it
//! needs are gone (the others keep [`COMMITTED_KEPT`] committed blocks)
//! installs a checkpoint: every [`CHECKPOINT_INTERVAL`] heights each replica
//! snapshots its state (application and client table) after executing that
//! height; the replica behind asks everyone for their latest, takes one
//! that f + 1 replicas sign alike (one of them is correct), fetches it in
//! chunks checked against its Merkle digest, and continues from the block
//! it names.
//!
//! **Durable state.** Before a vote leaves, the replica persists the view it
//! voted in and its locked block ([`Context::persist`] is a barrier), so a
//! replica that restarts cannot vote twice in a view nor forget its lock.
//! Before the replies of a committed block leave, it persists the block
//! (a ring of the blocks since the last checkpoint), and every checkpoint
//! too: replicas that all restart start from their checkpoint, execute the
//! committed blocks above it again, and lose no operation a client saw
//! complete. They fetch the rest from the others. Voting needs no state,
//! so a replica behind votes while it catches up. The model is
//! crash-recovery with stable storage: a replica that restarts without its
//! durable record is beyond it (the `beyond` profile does that to more than
//! f).
//!
//! [`Context::persist`]: runtime::Context::persist
//!
//! # Cryptography and trust
//!
//! Votes, timeouts and sync requests are signed with secp256k1 and checked
//! by the [`Codec`], off the protocol thread; QCs and TCs are checked vote
//! by vote. A QC a replica has checked once (it formed it, or received it)
//! is remembered by its digest, so the same QC in the next block costs
//! nothing again, and a replica's own vote in a QC (the very signature it
//! made) is not checked again. A proposal carries a MAC of its header (view,
//! block digest, leader) for each replica, under the key the leader shares
//! with it (ECDH of their secp256k1 keys, [`ProposalAuth`]): votes and
//! timeouts are what certificates carry to third parties, and a proposal
//! never needs to be shown to anyone but the replica it was sent to, so a
//! MAC authenticates it as well as a signature would, at a small part of
//! the cost on every view's path (`cargo bench -p benches --bench crypto`,
//! one run: 0.7 µs to MAC a header for four replicas and 0.2 µs to check
//! one entry, against 30–35 µs to sign and 45–55 µs to check a signature).
//! Requests and replies use PBFT's MACs (see [`crate::common::ClientAuth`]).
//!
//! A client whose authenticator checks at the leader but fails at more than
//! f other replicas gets no QC for the blocks that carry it: each such view
//! times out. PBFT lets f + 1 replicas vouch for such a request; chained
//! HotStuff has no phase before the vote to do it in, and this
//! implementation does not defend against it (a deployment would admit
//! clients, as for PBFT's sessions).
//!
//! # Bounds
//!
//! The block store holds at most [`BLOCKS_MAX`] blocks (those above the
//! committed one, and [`COMMITTED_KEPT`] below); a proposal that would pass
//! it is dropped. The pool holds one request per client, for at most
//! [`POOL_MAX`] clients and [`POOL_BYTES_MAX`] bytes. Votes are kept for
//! at most [`VIEWS_AHEAD`] views above the current one, timeouts one per
//! replica (its latest). Proposals waiting for their ancestors:
//! [`WAITING_MAX`]; fetched blocks waiting for theirs: twice
//! [`FETCH_BLOCKS_MAX`]; own checkpoints: the latest two; durable keys:
//! three, and a ring of twice [`CHECKPOINT_INTERVAL`] blocks. A peer's
//! fetches and checkpoint queries are answered at most once a millisecond
//! each.

pub mod bugs;
mod client;
mod codec;
mod kit;
mod replica;
pub mod simulate;
mod sync;

pub use client::{Client, ClientTimer};
pub use codec::{Codec, Config, Inbound, Outbound, ProposalAuth, check_qc, check_tc};
pub use kit::{Kit, PROTOCOL};
pub use replica::{Replica, ReplicaTimer};

use std::time::Duration;

/// Most replicas in a group (the registry's bound).
pub const REPLICAS_MAX: usize = wire::hotstuff::REPLICAS_MAX;

/// Most requests in one block on the wire.
pub const BLOCK_SIZE_MAX: usize = wire::hotstuff::BLOCK_SIZE_MAX;

/// Most bytes of requests in one block, so that a proposal (its header, QC
/// and TC take under 4 KiB) fits a datagram.
pub const BLOCK_BYTES_MAX: usize = 56 * 1024;
const _: () = assert!(BLOCK_BYTES_MAX + 4096 <= wire::MESSAGE_SIZE_MAX);

/// Largest operation a replica accepts in a request.
pub const REQUEST_OP_MAX: usize = 32 * 1024;

/// Blocks a replica stores at most.
pub const BLOCKS_MAX: usize = 512;

/// Committed blocks a replica keeps below the last committed one, to serve
/// replicas that are a little behind.
pub const COMMITTED_KEPT: u64 = 64;

/// Heights between checkpoints.
pub const CHECKPOINT_INTERVAL: u64 = 32;

// A replica that is behind by less than the committed blocks kept syncs
// blocks; one further behind finds a checkpoint within the kept blocks.
const _: () = assert!(CHECKPOINT_INTERVAL < COMMITTED_KEPT);

/// Blocks asked for in one fetch.
pub const FETCH_BLOCKS_MAX: u64 = 64;

/// Proposals a replica keeps while it fetches their ancestors.
pub const WAITING_MAX: usize = 16;

/// Views above the current one for which votes and timeouts are kept.
pub const VIEWS_AHEAD: u64 = 64;

/// Clients whose latest request a replica keeps in its pool.
pub const POOL_MAX: usize = 1 << 16;

/// Bytes of requests in the pool at most.
pub const POOL_BYTES_MAX: usize = 64 << 20;

/// Longest view timeout after doubling.
pub const VIEW_TIMEOUT_MAX: Duration = Duration::from_secs(1);

/// The view timer of a leader that has been silent since its last view
/// timed out (it may have crashed) is this share of the usual one: with
/// round robin, a crashed replica's view comes every n views, and each
/// costs the group a timer's wait.
pub const SILENT_LEADER_SHARE: u32 = 8;

/// How often a replica multicasts its highest QC even when nothing
/// happens: a replica left behind in an idle group learns of it this late.
pub const STATUS_HEARTBEAT: Duration = Duration::from_millis(500);

/// How long a replica waits for blocks or a state chunk before it asks
/// another peer.
pub const SYNC_RETRY: Duration = Duration::from_millis(20);

/// Bytes of state per chunk: a chunk and its Merkle path fit a datagram.
pub const STATE_CHUNK_MAX: usize = 32 * 1024;

/// Chunks asked for at once in a state transfer.
pub const TRANSFER_WINDOW: u64 = 16;

/// Largest state a replica accepts in a transfer.
pub const STATE_SIZE_MAX: u64 = 256 * 1024 * 1024;

/// How long a client waits at least before it retransmits a request.
pub const CLIENT_RESEND_INTERVAL: Duration = Duration::from_millis(60);

/// Longest wait between retransmissions of one request, after doubling.
pub const CLIENT_RESEND_MAX: Duration = Duration::from_millis(500);

/// How long after the last fault healed every client must have finished
/// in a seeded run: a full backoff of view timeouts and the client's
/// longest retransmission wait, with room for the work.
pub const LIVENESS_BOUND: Duration = Duration::from_secs(4);
