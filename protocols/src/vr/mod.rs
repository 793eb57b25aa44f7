//! Viewstamped Replication (Liskov & Cowling, "Viewstamped Replication
//! Revisited", MIT-CSAIL-TR-2012-021): the crash-fault-tolerant protocol to
//! compare the Byzantine ones against.
//!
//! # Normal case (§4.1)
//!
//! n = 2f + 1 replicas tolerate f crashes. The primary of view v is replica
//! v mod n. It orders clients' requests in batches: each batch is one log
//! entry, numbered by its op-number. A batch leaves at once when nothing is
//! in flight, and otherwise when it is full, with at most `window` batches
//! prepared and not yet committed; what does not fit waits in the
//! primary's queue. The primary sends `Prepare` with the entry and its
//! commit number; a backup takes entries in op-number order, and answers
//! `PrepareOk` for the highest entry it holds. An entry is committed once
//! f backups and the primary hold it; the primary executes it, replies to
//! its clients, and tells the backups with the next `Prepare`, or with a
//! `Commit` every [`COMMIT_INTERVAL`] while it has none to send (which also
//! tells the backups it is alive). Every replica executes the committed
//! prefix in order through the kit's client table, so all keep the same
//! at-most-once decisions: a duplicate gets the stored result, a request
//! older than its client's latest is not executed.
//!
//! # View change (§4.2)
//!
//! A backup that hears nothing from the primary for `view_timeout_ms`
//! (doubled for each view change in a row, up to [`VIEW_TIMEOUT_MAX`])
//! moves to the next view: status view-change, `StartViewChange` to all. A
//! replica that learns of a later view joins it. Once it has f
//! `StartViewChange`s for its view from others, it sends the new primary
//! `DoViewChange` with the last view its status was normal in, its commit
//! number and its log's top. The new primary waits for f + 1 of them (its
//! own among them, or not), picks the log of the one with the largest last
//! normal view, and of those the longest (its own on a tie: two logs last
//! normal in the same view and as long are the same log), and the largest
//! commit number; it starts the view with `StartView`, which names the
//! picked log by its last normal view and top.
//!
//! Logs do not travel in these messages, so none grows with the log: the
//! paper's `DoViewChange` and `StartView` carry it whole, and a long run
//! would outgrow a datagram. A new primary that did not pick its own log
//! fetches the picked one from its sender (`GetState` in the view being
//! changed to; a replica changing views does not touch its log), above
//! its own log if that was last normal in the same view (it is a prefix),
//! else above its commit number (the committed prefix is everyone's). A
//! backup whose log is the named one takes it as it stands (cut to the
//! named top); any other fetches it from the primary the same way. A
//! fetched log is kept aside until it is whole and only then replaces the
//! replica's own: until then the replica stays in view-change status with
//! its old log and last normal view, which a later view change may pick
//! as the paper's rule expects. A replica that misses `StartView` (it hears
//! the new primary's `Prepare`s or `Commit`s) moves to the view in
//! view-change status and says `StartViewChange` to the primary, which
//! sends `StartView` again to any replica still changing to its view.
//!
//! # Recovery (§4.3) and crash vectors
//!
//! A replica that restarts without its state (nothing is persisted) takes
//! no part until it has recovered: it sends `Recovery` with a fresh nonce
//! to all, every [`RECOVERY_INTERVAL`], and waits for f + 1
//! `RecoveryResponse`s to that nonce from normal replicas, among them one
//! from the primary of the latest view they name, which carries its commit
//! number and its log's top. It fetches that log from the primary (a
//! snapshot first if the primary truncated), and only once it is whole
//! takes the view, executes the committed prefix and is a normal backup
//! again; a fetch that stalls for [`RECOVERY_STALL_TICKS`] ticks is given
//! up and recovery starts over.
//!
//! The paper's protocol is not safe as it stands, even with one replica
//! down at a time (Michael, Ports, Sharma, Szekeres, "Recovering Shared
//! Objects Without Stable Storage", DISC'17): a message a replica sent
//! before it crashed (a `StartViewChange`, a `DoViewChange`) can arrive
//! after it recovered and count in a view change it no longer stands
//! behind, and the view formed from it can lack committed operations
//! (`tests/vr_support`'s `stale_life_run` builds that case). So every
//! message between replicas carries the sender's crash vector, as
//! DISC'17 prescribes: entry i counts replica i's recoveries, as far as the
//! sender knows. A replica drops a message whose sender's entry is below
//! what it knows, takes the larger entries of every vector it accepts, and
//! on learning of a replica's recovery forgets what that replica's earlier
//! life told it (its view-change votes, acknowledgements, recovery
//! answers, a log being fetched from it). A recovering replica first
//! learns how many times it recovered before from f + 1 answers, counts
//! this recovery, and only then asks again with the new count in its
//! vector: the f + 1 answers it recovers from know of the recovery, and
//! any later quorum meets one of them. A life that dies while recovering
//! may have counted itself further than the next one does (its `Recovery`
//! delayed, say); a replica that sees a count of itself above its own
//! counts past it. Diskless recovery still needs at
//! most f replicas crashed or recovering at once: the seeded runs keep to
//! that. The `beyond` profile, which does not, restarts f + 1 replicas one
//! after the other: no recovery can gather f + 1 answers from normal
//! replicas, and the group stalls (the liveness and catch-up checks say
//! so) rather than serve lost state.
//!
//! Clients retransmit to every replica. A replica that is not the primary
//! keeps the latest request of each client it gets so (at most
//! [`WAITING_MAX`] and [`WAITING_BYTES_MAX`] bytes), and the primary of
//! the next view takes them up as soon as the view starts: the clients'
//! backoff, which grows while the old primary is silent, does not add to
//! a view change's outage. Everyone else drops them then.
//!
//! A view change's messages are sent again every [`COMMIT_INTERVAL`] until
//! the view starts or times out: a replica paused or cut off when the
//! others started it would otherwise never join, and with recovering
//! replicas counting as crashed, the view could not gather its quorum.
//!
//! # Snapshots and state transfer (§5.1, §5.2)
//!
//! Every `checkpoint_interval` batches a replica snapshots the app and the
//! client table, and drops the log entries up to its previous snapshot: a
//! replica a little behind gets entries, one further behind the snapshot.
//! A backup that gets a `Prepare` past the next entry it expects, or a
//! commit number past its log, asks the primary for what it misses
//! (`GetState`), at most once per [`GET_STATE_INTERVAL`]; the answer
//! (`NewState`) carries entries from the asker's top on, as many as fit
//! [`STATE_BYTES_MAX`] bytes, and the commit number. If the sender dropped
//! entries the asker needs, its snapshot goes first, in [`CHUNK_BYTES`]
//! chunks (to one replica at most once per [`SNAPSHOT_INTERVAL`]), and the
//! entries follow from it. The same two messages carry the logs of view
//! changes and recoveries.
//!
//! # Bounds
//!
//! The primary queues at most [`QUEUE_MAX`] requests, one per client; a
//! batch holds at most [`BATCH_BYTES_MAX`] bytes of requests (a larger
//! request is dropped), so a `Prepare` fits a datagram; a `NewState` at
//! most [`STATE_ENTRIES_MAX`] entries and [`STATE_BYTES_MAX`] bytes; a
//! snapshot at most [`CHUNKS_MAX`] chunks. A log, and a log being fetched,
//! hold at most [`Config::log_max`] entries (twice the snapshot interval,
//! four windows and a `NewState`'s worth): crashes alone never fill it,
//! and what would overfill it is dropped and counted. Memory stays bounded
//! in a run of any length (`tests/vr.rs` watches every replica over a long
//! run). A message from a replica is taken to be from the replica whose
//! address it came from (VR trusts its members); one from outside the
//! group, malformed, or naming another replica than its sender is dropped
//! and counted, and no number a peer sends can make the arithmetic
//! overflow.

mod client;
mod codec;
mod kit;
mod replica;
pub mod simulate;

pub use client::{Client, ClientTimer};
pub use codec::Codec;
pub use kit::Kit;
pub use replica::{Replica, ReplicaTimer, Status};

/// VR in the protocol registry ([`crate::registry`]).
pub const PROTOCOL: crate::registry::Protocol = crate::registry::Protocol::new(&Kit);

use std::time::Duration;

use wire::registry::Settings;

/// Clients the replicas' table keeps at most (least recently used evicted).
pub const CLIENT_TABLE_MAX: usize = 1 << 16;

/// Bytes of results the client table keeps at most.
pub const RESULT_BYTES_MAX: usize = 64 << 20;

/// Requests the primary queues at most, waiting for a batch.
pub const QUEUE_MAX: usize = 1 << 16;

/// Clients' requests a replica that is not the primary keeps at most for
/// the next primary (one per client), and their bytes.
pub const WAITING_MAX: usize = QUEUE_MAX;
pub const WAITING_BYTES_MAX: usize = 16 << 20;

/// How often an idle primary tells the backups its commit number.
pub const COMMIT_INTERVAL: Duration = Duration::from_millis(5);

/// The longest a view change waits before it moves on to the next view.
pub const VIEW_TIMEOUT_MAX: Duration = Duration::from_secs(1);

/// How often a replica asks again for the state it misses.
pub const GET_STATE_INTERVAL: Duration = Duration::from_millis(5);

/// How often a recovering replica asks again.
pub const RECOVERY_INTERVAL: Duration = Duration::from_millis(10);

/// Entries one `NewState` carries at most.
pub const STATE_ENTRIES_MAX: usize = 64;

/// Bytes of requests one batch carries at most (near enough: an op's
/// length and 40 bytes each), so that a `Prepare` fits one datagram; a
/// request too large for a batch of its own is dropped.
pub const BATCH_BYTES_MAX: usize = 60 * 1024;
const _: () = assert!(BATCH_BYTES_MAX + 512 <= wire::MESSAGE_SIZE_MAX);

/// Bytes of entries one `NewState` carries at most (and at least one
/// entry, which a batch's bound keeps within a datagram).
pub const STATE_BYTES_MAX: usize = BATCH_BYTES_MAX;

/// Bytes of a snapshot one `Chunk` carries.
pub const CHUNK_BYTES: usize = 32 << 10;
const _: () = assert!(CHUNK_BYTES + 512 <= wire::MESSAGE_SIZE_MAX);

/// Chunks a snapshot may take at most: 128 MiB, past what the key-value
/// app and a full client table hold.
pub const CHUNKS_MAX: u32 = 4 << 10;

/// How often a replica sends its snapshot to the same replica at most.
pub const SNAPSHOT_INTERVAL: Duration = Duration::from_millis(20);

/// Recovery timer ticks without progress after which a recovering replica
/// gives up fetching from the primary it picked and asks all again.
pub const RECOVERY_STALL_TICKS: u32 = 8;

/// How long a client waits before it first retransmits, at the least.
pub const CLIENT_RESEND_MAX: Duration = Duration::from_millis(500);

/// Bugs that can be put back into VR ([`crate::planted`]), each caught by a
/// scenario or the seeded runs.
pub mod bugs {
    use crate::planted::Bug;

    const VR: &str = wire::vr::SPEC.name;

    /// The new primary takes the longest log, whatever view it was last
    /// normal in (§4.2 takes the largest last normal view first): a
    /// deposed primary's uncommitted entries can replace what the next view
    /// committed.
    pub const IGNORE_LAST_NORMAL: Bug = Bug::new(
        VR,
        "ignore-last-normal",
        "a new primary picks the longest log, ignoring the last normal view",
    );

    /// The primary commits what f replicas hold, itself among them: one
    /// short of a quorum, so a view change may not see it.
    pub const COMMIT_BELOW_QUORUM: Bug = Bug::new(
        VR,
        "commit-below-quorum",
        "the primary commits on f replicas (itself among them), not f + 1",
    );

    /// A replica takes a message from an earlier life of its sender, one
    /// that recovered since: the DISC'17 counterexample, where a replica's
    /// promises from before a crash count in a view change after it.
    pub const NO_CRASH_VECTORS: Bug = Bug::new(
        VR,
        "no-crash-vectors",
        "messages from a replica's life before its recovery are taken",
    );

    pub const ALL: &[Bug] = &[IGNORE_LAST_NORMAL, COMMIT_BELOW_QUORUM, NO_CRASH_VECTORS];
}

/// What a replica runs with, from the protocol's tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub n: usize,
    pub f: usize,
    pub batch_max: usize,
    pub window: u64,
    pub view_timeout: Duration,
    pub checkpoint_interval: u64,
}

impl Config {
    /// A group of `n` replicas with the tunables' defaults.
    pub fn new(n: usize) -> Config {
        assert!(
            n >= 1 && !n.is_multiple_of(2),
            "VR runs 2f + 1 replicas, not {n}"
        );
        let settings = wire::vr::SPEC.defaults();
        Config::with_settings(n, &settings)
    }

    /// A group of `n` replicas with `settings`.
    pub fn with_settings(n: usize, settings: &Settings) -> Config {
        Config {
            n,
            f: (n - 1) / 2,
            batch_max: settings.get(&wire::vr::BATCH_MAX) as usize,
            window: settings.get(&wire::vr::WINDOW),
            view_timeout: Duration::from_millis(settings.get(&wire::vr::VIEW_TIMEOUT_MS)),
            checkpoint_interval: settings.get(&wire::vr::CHECKPOINT_INTERVAL),
        }
    }

    /// Entries a log holds at most: those since the snapshot before the
    /// latest, the window's, and room for a backup's commit number to lag.
    /// Under crashes alone it never fills; a message that would overfill
    /// it is dropped.
    pub fn log_max(&self) -> usize {
        let entries = self
            .checkpoint_interval
            .saturating_mul(2)
            .saturating_add(self.window.saturating_mul(4))
            .saturating_add(STATE_ENTRIES_MAX as u64);
        usize::try_from(entries).unwrap_or(usize::MAX)
    }

    /// The primary of `view`.
    pub fn primary(&self, view: u64) -> wire::ReplicaId {
        wire::ReplicaId((view % self.n as u64) as u8)
    }
}
