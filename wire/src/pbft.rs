//! Messages of PBFT (Castro & Liskov, OSDI'99; TOCS 2002), with the paper's
//! names.
//!
//! What a replica sends to other replicas is signed ([`Signed`]) wherever the
//! paper authenticates it, with one saving: the pre-prepare signs only the
//! header `(view, seq, digest)`, and the batch travels beside it, bound to the
//! header by its digest (as in the paper, where the request is piggybacked on
//! the pre-prepare and only the digest is signed). So certificates (prepared
//! certificates in view-change messages, the pre-prepares of a new-view) carry
//! digests, never batches.
//!
//! Messages that prove themselves are not signed: a [`NewView`] is a set of
//! signed view-change and pre-prepare messages; a [`CheckpointCert`] is a set of
//! signed checkpoint votes; a [`Batch`] or a [`StateChunk`] is checked against
//! a digest the receiver already trusts.
//!
//! Clients authenticate requests and replicas authenticate replies with MACs
//! under keys each client and replica share, not with signatures: a request
//! carries an authenticator, one MAC per replica ([`AuthRequest`]), and a
//! reply one MAC ([`MacReply`]).

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::client::Request;
use crate::{ClientId, Digest, Mac, PublicKey, ReplicaId, Signature, Signed};

/// A view number. The primary of view `v` is replica `v mod n`.
pub type View = u64;

/// A sequence number assigned by the primary to a batch. The first is 1.
pub type Seq = u64;

/// Everything PBFT nodes send each other.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Message {
    /// Client to replicas.
    Request(AuthRequest),
    /// Client to every replica before its first request, so that replicas
    /// other than the primary, which it sends requests to, know where to
    /// send their replies. Carries nothing to check: it only says where the
    /// client is, as every datagram from it does.
    Hello(ClientId),
    /// A backup relays a client's request to the primary (§4.4). Its own
    /// message, so that the primary does not take the backup's address for
    /// the client's.
    Relayed(ReplicaId, AuthRequest),
    /// Replica to client, with a MAC under the key the pair shares.
    Reply(MacReply),
    /// Primary to backups: the signed header, and the batch it orders.
    PrePrepare(Signed<PrePrepare>, Vec<AuthRequest>),
    Prepare(Signed<Prepare>),
    Commit(Signed<Commit>),
    Checkpoint(Signed<Checkpoint>),
    ViewChange(Signed<ViewChange>),
    NewView(NewView),
    /// "I am stuck at this point": asks peers to retransmit what it misses.
    Status(Signed<Status>),
    /// A proof that a checkpoint is stable, sent to a replica that lags.
    StableCheckpoint(StableCheckpoint),
    FetchState(Signed<FetchState>),
    StateChunk(StateChunk),
    FetchBatch(Signed<FetchBatch>),
    Batch(Batch),
}

/// A request and its authenticator (OSDI §4, TOCS §3.2): `auth[i]` is the
/// HMAC-SHA256 of the request's encoding under the key the client shares with
/// replica `i`, so every replica, and a primary that gets the request relayed
/// by a backup, checks that the client sent it; a relaying or proposing
/// replica cannot forge or alter it.
///
/// `key` is the client's public key (compressed secp256k1), from which each
/// replica derives the key it shares with the client by ECDH, once per
/// client: carried by every request, so a replica that never heard from the
/// client (it restarted, or sees the request first in a pre-prepare) can
/// still check it. A replica keeps the first key under which a client's
/// request checked (see `protocols::pbft`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AuthRequest {
    pub request: Request,
    pub key: PublicKey,
    pub auth: Vec<Mac>,
}

/// A reply and its HMAC-SHA256 over the reply's encoding, under the key that
/// the replica and the client share.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct MacReply {
    pub reply: Reply,
    pub mac: Mac,
}

/// Result of a client's request, from one replica.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct Reply {
    pub view: View,
    pub replica: ReplicaId,
    pub client_id: ClientId,
    pub request_num: u64,
    #[serde(with = "serde_bytes")]
    pub result: Vec<u8>,
}

/// The primary of `view` assigns `seq` to the batch with digest `digest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct PrePrepare {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
}

/// A backup accepted the pre-prepare `(view, seq, digest)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Prepare {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
    pub replica: ReplicaId,
}

/// A replica has a prepared certificate for `(view, seq, digest)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Commit {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
    pub replica: ReplicaId,
}

/// A replica's state after executing through `seq` has digest `digest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Checkpoint {
    pub seq: Seq,
    pub digest: Digest,
    pub replica: ReplicaId,
}

/// Proof that checkpoint `(seq, digest)` is stable: the signatures of 2f+1
/// distinct replicas over [`Checkpoint`] votes for it. Sequence number 0 is the
/// initial state, stable without signatures.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CheckpointCert {
    pub seq: Seq,
    pub digest: Digest,
    pub signatures: Vec<(ReplicaId, Signature)>,
}

/// A prepared certificate, as a view-change message carries it: the
/// pre-prepare of `(view, seq, digest)` and the prepares of distinct backups.
///
/// The view-change message is itself signed by its sender, which vouches for
/// the sender's own part: `pre_prepare` is `None` when the sender was the
/// primary of `view`, and the sender's own prepare is not listed.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PreparedCert {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
    pub pre_prepare: Option<Signature>,
    pub prepares: Vec<(ReplicaId, Signature)>,
}

/// Replica `replica` moves to view `view` (OSDI §4.4): its stable checkpoint
/// with proof (the paper's n, C) and its prepared certificates above it (P).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ViewChange {
    pub view: View,
    pub replica: ReplicaId,
    pub checkpoint: CheckpointCert,
    pub prepared: Vec<PreparedCert>,
}

/// The primary of `view` starts it: 2f+1 view-change messages (V) and the
/// pre-prepares it computed from them (O), each signed by it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct NewView {
    pub view: View,
    pub view_changes: Vec<Signed<ViewChange>>,
    pub pre_prepares: Vec<Signed<PrePrepare>>,
}

/// Where a replica stands, sent when it has made no progress for a while.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Status {
    pub replica: ReplicaId,
    pub view: View,
    /// In a view change to `view`, not yet in it.
    pub changing: bool,
    /// Last sequence number executed.
    pub executed: Seq,
    /// Sequence number of the stable checkpoint.
    pub stable: Seq,
}

/// A stable checkpoint's proof, relayed by `replica` (unauthenticated: the
/// proof speaks for itself).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StableCheckpoint {
    pub replica: ReplicaId,
    pub cert: CheckpointCert,
}

/// Asks for the state at checkpoint `seq`, from byte `offset` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct FetchState {
    pub replica: ReplicaId,
    pub seq: Seq,
    pub offset: u64,
}

/// Bytes `offset..offset + data.len()` of the `total`-byte state at checkpoint
/// `seq`. Unsigned: the assembled state is checked against the checkpoint's
/// digest.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StateChunk {
    pub replica: ReplicaId,
    pub seq: Seq,
    pub offset: u64,
    pub total: u64,
    pub data: Vec<u8>,
}

/// Asks for the batch with digest `digest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct FetchBatch {
    pub replica: ReplicaId,
    pub digest: Digest,
}

/// A batch and its digest. Unsigned: the receiver checks the digest.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Batch {
    pub replica: ReplicaId,
    pub digest: Digest,
    pub requests: Vec<AuthRequest>,
}
