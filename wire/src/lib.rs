//! Every type that goes on the network, and the one codec they go through.
//!
//! Kept apart from the protocols so that the runner can read configurations and
//! results without compiling protocol code, and so that a change to a protocol's
//! logic does not regenerate serialization code.
//!
//! - [`codec`]: the single bincode configuration, the size limit checked before
//!   decoding, typed errors. Every encode and decode goes through it.
//! - [`crypto`]: SHA-256 digests, secp256k1 keys, and the [`Signed`] envelope.
//! - [`merkle`]: digests of large states, checkable a chunk at a time.
//! - [`fields`]: messages described field by field, for the simulator's
//!   structure-aware Byzantine mutations.
//! - [`payload`]: bytes a message carries, shared with the buffer they were
//!   received in rather than copied.
//! - [`client`], [`kv`], [`unreplicated`], [`pbft`]: message types;
//!   [`auth`]: requests and replies authenticated with MACs, which more
//!   than one protocol uses.
//! - [`registry`]: every protocol's name, replica rule, counters and
//!   tunables, for the runner and the node program.
//! - [`sim`]: what a simulation run reports back to the runner.
//! - [`history`]: key-value histories recorded in real runs, for the
//!   linearizability check.

pub mod auth;
pub mod chain;
pub mod client;
pub mod codec;
pub mod control;
pub mod crypto;
pub mod fields;
pub mod history;
pub mod hotstuff;
pub mod kv;
pub mod merkle;
pub mod payload;
pub mod pbft;
pub mod registry;
pub mod sim;
pub mod unreplicated;
pub mod vr;

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

pub use codec::{DecodeError, EncodeError, MESSAGE_SIZE_MAX, decode, encode};
pub use crypto::{
    CryptoError, Digest, Mac, MacKey, PublicKey, SecretKey, Signature, Signed, Signer, VerifyingKey,
};
pub use payload::{Bytes, Payload};

/// Index of a replica in its group, `0..n`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub struct ReplicaId(pub u8);

/// A client's identity. Unique across the run: a restarted client takes a new one.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub struct ClientId(pub u64);

/// Where a message goes or comes from, in protocol terms. The runtime maps an
/// address to a socket (real runtime) or to a node slot (simulator).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Encode, Decode,
)]
pub enum Addr {
    Replica(ReplicaId),
    Client(ClientId),
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Addr::Replica(ReplicaId(id)) => write!(f, "replica {id}"),
            Addr::Client(ClientId(id)) => write!(f, "client {id}"),
        }
    }
}
