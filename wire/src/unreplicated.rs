//! Messages of the unreplicated baseline: plain request / reply.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::client::{Reply, Request};
use crate::registry::{ProtocolSpec, Replication};

/// The unreplicated baseline in the registry ([`crate::registry`]).
pub const SPEC: ProtocolSpec = ProtocolSpec {
    name: "unreplicated",
    about: "one server, no replication: the baseline every protocol is compared to",
    replication: Replication::Single,
    replicas_max: 1,
    signs: false,
    batches: false,
    counters: &[],
    tunables: &[],
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum Message {
    Request(Request),
    Reply(Reply),
}
