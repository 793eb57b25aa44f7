//! Messages of the unreplicated baseline: plain request / reply.
//!
//! They have the shape of [`crate::client`]'s [`Request`](crate::client::Request)
//! and [`Reply`](crate::client::Reply), and the same encoding, with their
//! bytes (the operation, the result) held as a type of the holder's choice
//! (the `Decode` derive gives `BorrowDecode` too, for `&[u8]`):
//! a [`Payload`] as decoded (a slice of the datagram it arrived in, when the
//! runtime holds it in a shared buffer: see [`crate::payload`]), `&[u8]`
//! while decoding borrows from the datagram, `Vec<u8>` as a node builds what
//! it sends.

use bincode::{Decode, Encode};

use crate::ClientId;
use crate::payload::Payload;
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

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Message<B = Payload> {
    Request(Request<B>),
    Reply(Reply<B>),
}

/// A client's request: operation `op`, numbered `request_num` (1, 2, ...
/// per client), so that the server executes each at most once.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Request<B = Payload> {
    pub client_id: ClientId,
    pub request_num: u64,
    pub op: B,
}

/// The result of executing request `request_num` of client `client_id`.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Reply<B = Payload> {
    pub client_id: ClientId,
    pub request_num: u64,
    pub result: B,
}

impl<'a> Message<&'a [u8]> {
    /// The message with its bytes (the operation or the result) as
    /// `bytes` makes them: copies, or slices of the datagram they lie in.
    pub fn into_payloads(self, bytes: impl FnOnce(&'a [u8]) -> Payload) -> Message {
        match self {
            Message::Request(Request {
                client_id,
                request_num,
                op,
            }) => Message::Request(Request {
                client_id,
                request_num,
                op: bytes(op),
            }),
            Message::Reply(Reply {
                client_id,
                request_num,
                result,
            }) => Message::Reply(Reply {
                client_id,
                request_num,
                result: bytes(result),
            }),
        }
    }
}
