//! Messages of Viewstamped Replication (Liskov & Cowling, "Viewstamped
//! Replication Revisited", MIT-CSAIL-TR-2012-021), with the paper's names.
//!
//! The paper's op-number numbers requests; here it numbers *batches*: the
//! primary orders requests in batches, and each log entry is one. Every
//! message between replicas carries the sender's view, and a replica drops
//! what an older view sent (§4.1: "if the sender is behind, the receiver
//! drops the message"). VR tolerates crashes, not lies: nothing is signed,
//! and a message between replicas is taken to be from the replica whose
//! address it came from.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::ReplicaId;
use crate::client::{Reply, Request};
use crate::registry::{ProtocolSpec, Replication, Tunable};

/// Viewstamped Replication in the registry ([`crate::registry`]).
pub const SPEC: ProtocolSpec = ProtocolSpec {
    name: "vr",
    about: "Viewstamped Replication (Revisited): a primary orders batches, \
            f of 2f + 1 replicas may crash, view changes elect the next",
    replication: Replication::Cft,
    // A view change's messages carry every replica's id once; far below
    // what a datagram holds, and more than a CFT group runs in practice.
    replicas_max: 15,
    signs: false,
    batches: true,
    rotates_leader: false,
    services: &[],
    counters: &[],
    tunables: &[BATCH_MAX, WINDOW, VIEW_TIMEOUT_MS, CHECKPOINT_INTERVAL],
};

/// Requests in one batch at most.
pub const BATCH_MAX: Tunable = Tunable {
    name: "batch_max",
    about: "requests in one log entry (batch) at most",
    unit: "requests",
    default: 256,
    min: 1,
    max: 1024,
};

/// Batches the primary has prepared and not yet committed, at most.
pub const WINDOW: Tunable = Tunable {
    name: "window",
    about: "batches prepared and not yet committed at once, at most",
    unit: "batches",
    default: 4,
    min: 1,
    max: 64,
};

/// How long a backup waits to hear from the primary before it starts a
/// view change (doubling with each view change in a row).
pub const VIEW_TIMEOUT_MS: Tunable = Tunable {
    name: "view_timeout_ms",
    about: "how long a backup waits to hear from the primary before a view change",
    unit: "ms",
    default: 40,
    min: 1,
    max: 60_000,
};

/// Every this many batches a replica snapshots its state and truncates its
/// log (§5.1).
pub const CHECKPOINT_INTERVAL: Tunable = Tunable {
    name: "checkpoint_interval",
    about: "batches between snapshots; the log keeps the entries since the one before",
    unit: "batches",
    default: 128,
    min: 2,
    max: 1 << 16,
};

/// One log entry: a batch the primary of `view` ordered at `op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Entry {
    pub op: u64,
    /// The view in which it was prepared: a new primary's log is taken
    /// whole from one replica (§4.2), so entries keep the view they came
    /// from only for the record.
    pub view: u64,
    pub requests: Vec<Request>,
}

/// A replica's log above its checkpoint, as view changes carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Log {
    /// The op-number of the entry before the first: the checkpoint's.
    pub base: u64,
    pub entries: Vec<Entry>,
}

impl Log {
    /// The op-number of the last entry (the base if there is none).
    pub fn top(&self) -> u64 {
        self.base.saturating_add(self.entries.len() as u64)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum Message {
    /// Client to the primary it knows (to every replica when it
    /// retransmits).
    Request(Request),
    /// The primary to a client; `view` tells the client who the primary is.
    Reply { view: u64, reply: Reply },
    /// Between replicas: the message, and the sender's crash vector.
    Peer { crashes: Vec<u64>, msg: Peer },
}

/// A message between replicas. Each travels with the sender's crash
/// vector (Michael, Ports, Sharma, Szekeres, "Recovering Shared Objects
/// Without Stable Storage", DISC'17): entry i counts the times replica i
/// recovered, as far as the sender knows. A receiver that knows of a later
/// recovery of the sender drops the message (it is from a life that
/// forgot what it promised), and one that learns of a later recovery of
/// any replica forgets what that replica's earlier life told it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum Peer {
    /// The primary to the backups (§4.1): entry `entry.op`, and everything
    /// up to `commit` is committed.
    Prepare {
        view: u64,
        commit: u64,
        entry: Entry,
    },
    /// A backup to the primary (§4.1): it holds every entry up to `op`.
    PrepareOk {
        view: u64,
        op: u64,
        replica: ReplicaId,
    },
    /// The primary to the backups when it has no prepare to send (§4.1):
    /// everything up to `commit` is committed.
    Commit { view: u64, commit: u64 },
    /// A replica to all (§4.2): it gave up on the views below `view`.
    StartViewChange { view: u64, replica: ReplicaId },
    /// A replica to the primary of `view` (§4.2): the last view in which its
    /// status was normal, its log's top and its commit number. The log
    /// itself does not travel: the new primary fetches it from the replica
    /// it picks, if that is not itself (`GetState`), so that no message
    /// grows with the log.
    DoViewChange {
        view: u64,
        last_normal: u64,
        commit: u64,
        top: u64,
        replica: ReplicaId,
    },
    /// The primary of `view` to the others (§4.2): the view starts with the
    /// log that was normal last in `log_view`, up to `top`. A replica whose
    /// log is that one already takes it as it stands; any other fetches it
    /// (`GetState`) before it is normal in the view.
    StartView {
        view: u64,
        commit: u64,
        log_view: u64,
        top: u64,
    },
    /// A replica to another in `view` (§5.2): send the log above `op`.
    GetState {
        view: u64,
        op: u64,
        replica: ReplicaId,
    },
    /// The answer to `GetState` (§5.2): entries from the asker's `op` on,
    /// or from the sender's snapshot on if it truncated its log below
    /// `op`; as many as fit one message.
    NewState { view: u64, commit: u64, log: Log },
    /// Part `index` of `count` of the sender's snapshot at `op` (§5.1), sent
    /// before `NewState` to a replica that asked for entries the sender
    /// no longer holds.
    Chunk(Chunk),
    /// A replica that restarted without its state, to all (§4.3): `nonce`
    /// names this recovery.
    Recovery { replica: ReplicaId, nonce: u64 },
    /// A normal replica to a recovering one (§4.3): its view, and, from the
    /// primary of that view, its commit number and its log's top, which the
    /// recovering replica fetches (`GetState`) before it takes part.
    RecoveryResponse {
        view: u64,
        nonce: u64,
        primary: Option<Primary>,
        replica: ReplicaId,
    },
}

/// What the primary tells a recovering replica (§4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Primary {
    pub commit: u64,
    pub top: u64,
}

/// A piece of a snapshot: the application's state and the client table
/// after executing every entry up to `op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Chunk {
    pub view: u64,
    pub op: u64,
    pub index: u32,
    pub count: u32,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}
