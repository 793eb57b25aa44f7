//! Messages of chain replication (van Renesse & Schneider, OSDI'04): the
//! clients' updates and queries, the chain's forwards and acknowledgements,
//! state transfer to a new member, and the master's configurations.
//!
//! Every message between servers carries the configuration's epoch: a
//! server drops what another epoch sent (see `protocols::chain`).

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::ReplicaId;
use crate::client::{Reply, Request};
use crate::registry::{ProtocolSpec, Replication, Tunable};

/// Chain replication in the registry ([`crate::registry`]).
pub const SPEC: ProtocolSpec = ProtocolSpec {
    name: "chain",
    about: "chain replication: updates enter at the head and pass down the chain, \
            the tail answers queries and replies; a master reconfigures",
    replication: Replication::Chain,
    // A configuration names every server in one datagram; far below that,
    // a chain this long is already slow to fill.
    replicas_max: 16,
    signs: false,
    batches: false,
    rotates_leader: false,
    services: &["master"],
    counters: &[],
    tunables: &[WINDOW, HEARTBEAT_MS, SUSPECT_HEARTBEATS],
};

/// Updates in the chain at once: the head's Sent list holds at most this
/// many, and refuses more until the tail's acknowledgements come back.
pub const WINDOW: Tunable = Tunable {
    name: "window",
    about: "updates in the chain at once (the bound on every server's Sent list)",
    unit: "updates",
    default: 4096,
    min: 1,
    max: 1 << 16,
};

/// How often servers tell the master they are alive (and the tail renews
/// its read lease).
pub const HEARTBEAT_MS: Tunable = Tunable {
    name: "heartbeat_ms",
    about: "how often each server pings the master (the tail's lease is renewed with it)",
    unit: "ms",
    default: 10,
    min: 1,
    max: 10_000,
};

/// Heartbeats a server may miss before the master takes it out of the
/// chain.
pub const SUSPECT_HEARTBEATS: Tunable = Tunable {
    name: "suspect_heartbeats",
    about: "heartbeats a server may miss before the master removes it from the chain",
    unit: "heartbeats",
    default: 8,
    // The master's rules need at least this many (see protocols::chain).
    min: 6,
    max: 1000,
};

/// A configuration: the chain in order, head first, numbered by its epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Config {
    pub epoch: u64,
    pub chain: Vec<ReplicaId>,
}

/// One update in the chain: the request and the position the head gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Forward {
    pub epoch: u64,
    pub seq: u64,
    pub request: Request,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Chunk {
    pub epoch: u64,
    pub committed: u64,
    pub index: u32,
    pub count: u32,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Ping {
    pub epoch: u64,
    pub nonce: u64,
    /// The epoch in which the master last added this incarnation to the
    /// chain (0 for a server of the first configuration), and whether it
    /// has since synced: with `joined`, a `synced` sent before a removal
    /// cannot vouch for the server added back after it.
    pub joined: u64,
    pub synced: bool,
    pub echo: u64,
    pub sent_at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Pong {
    pub config: Config,
    pub nonce: u64,
    pub member: bool,
    pub joined: u64,
    pub lease: bool,
    pub token: u64,
    pub sent_at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum Message {
    /// Client to head: an update.
    Update { epoch: u64, request: Request },
    /// Client to tail: a query (a read-only operation).
    Query { epoch: u64, request: Request },
    /// Client to tail, and to each new tail: the client's address, so the
    /// tail can reply to updates it never saw the client send.
    Hello { client_id: crate::ClientId },
    /// Client to master: which configuration is current?
    Where { client_id: crate::ClientId },
    /// Tail (or head, from its table) to client.
    Reply(Reply),
    /// Master, or a server that is not what the client took it for, to a
    /// client: the configuration it knows.
    Redirect {
        client_id: crate::ClientId,
        config: Config,
    },
    /// A server to its successor.
    Forward(Forward),
    /// A server to its predecessor: every update below `committed` is at the
    /// tail (executed, and acknowledged to its client).
    Ack { epoch: u64, committed: u64 },
    /// A server to its predecessor: it has every update below `next`;
    /// resend the rest, or the whole state if `next` is below what the
    /// predecessor still holds.
    Want { epoch: u64, next: u64 },
    /// A server to its successor, answering `Want`: the successor misses
    /// nothing it executed (everything below `committed`); the updates from
    /// the successor's `next` up to this server's `next` follow as
    /// `Forward`s.
    Resume {
        epoch: u64,
        committed: u64,
        next: u64,
    },
    /// A server to its successor, answering `Want` when the successor is
    /// missing updates it no longer holds: its state after executing every
    /// update below `committed`, in `count` chunks.
    Chunk(Chunk),
    /// A server to the master: it is alive. `nonce` names this incarnation
    /// (a restarted server has a new one); `echo` is the `token` of the last
    /// `Pong` it got, which proves to the master when it was last alive;
    /// `sent_at` is the server's own clock, which the master echoes so that
    /// the tail's lease runs from before the master granted it.
    Ping(Ping),
    /// Master to a server: the current configuration, whether this
    /// incarnation (`nonce`) is in it and since which epoch (`joined`: a
    /// server that sees a later one than it entered with was removed and
    /// added back meanwhile), whether it is the tail with a read lease, and
    /// the echoes.
    Pong(Pong),
}
