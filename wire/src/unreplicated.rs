//! Messages of the unreplicated baseline: plain request / reply.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::client::{Reply, Request};
use crate::registry::{ProtocolSpec, Replication, Tunable};

/// The unreplicated baseline in the registry ([`crate::registry`]).
pub const SPEC: ProtocolSpec = ProtocolSpec {
    name: "unreplicated",
    about: "one server, no replication: the baseline every protocol is compared to",
    replication: Replication::Single,
    replicas_max: 1,
    services: &[],
    signs: false,
    batches: false,
    rotates_leader: false,
    counters: &[],
    tunables: &[DURABLE, SNAPSHOT_INTERVAL],
};

/// Whether the server keeps what it executed durably: 1 logs each request
/// before the reply leaves and recovers from the log after a crash (the
/// classic single server with a write-ahead log), 0 keeps everything in
/// memory and forgets it all in a crash.
pub const DURABLE: Tunable = Tunable {
    name: "durable",
    about: "1: log each request durably before replying, and recover from the log after a crash",
    unit: "(0 or 1)",
    default: 0,
    min: 0,
    max: 1,
};

/// With [`DURABLE`], how many requests the log holds before the server
/// writes a snapshot (the application's state and its client table) and
/// cuts the log.
pub const SNAPSHOT_INTERVAL: Tunable = Tunable {
    name: "snapshot_interval",
    about: "with durable=1, requests logged between snapshots (each snapshot cuts the log)",
    unit: "requests",
    default: 1024,
    min: 1,
    // The log's keys and the snapshot's stay within the runtime's bound on
    // durable keys (65,536).
    max: 1 << 15,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum Message {
    Request(Request),
    Reply(Reply),
}
