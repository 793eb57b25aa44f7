//! What a client sends and receives, shared by every protocol.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::ClientId;

/// A client's request: operation `op` (opaque to the protocol, executed by the
/// application) numbered `request_num`, which counts up from 1 per client so
/// servers can execute each request at most once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct Request {
    pub client_id: ClientId,
    pub request_num: u64,
    #[serde(with = "serde_bytes")]
    pub op: Vec<u8>,
}

/// The result of executing request `request_num` of client `client_id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct Reply {
    pub client_id: ClientId,
    pub request_num: u64,
    #[serde(with = "serde_bytes")]
    pub result: Vec<u8>,
}

crate::fields!(Request {
    client_id,
    request_num,
    op: bytes
});
crate::fields!(Reply {
    client_id,
    request_num,
    result: bytes
});
