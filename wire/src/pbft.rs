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
//! reply one MAC ([`MacReply`]). Those types are shared with other protocols
//! that authenticate clients alike ([`crate::auth`]); PBFT's replies name
//! the view they executed in.

use bincode::{Decode, Encode};

use crate::fields::{Fields, Visitor};
use crate::{Digest, ReplicaId, Signature, Signed};

pub use crate::auth::{AuthRequest, MacReply, Reply, ReplyOut};

use crate::registry::{ProtocolSpec, Replication, Tunable};

/// PBFT in the registry ([`crate::registry`]).
pub const SPEC: ProtocolSpec = ProtocolSpec {
    name: "pbft",
    about: "Practical Byzantine Fault Tolerance (Castro & Liskov, OSDI 1999), with MACs for clients",
    replication: Replication::Bft,
    replicas_max: REPLICAS_MAX,
    services: &[],
    signs: true,
    batches: true,
    rotates_leader: false,
    counters: &[
        crate::control::BATCHES_COUNTER,
        crate::control::REQUESTS_BATCHED_COUNTER,
        crate::control::VIEW_CHANGES_COUNTER,
        "checkpoint: stable",
        "state transfer: started",
        "client: retransmission",
    ],
    tunables: &[
        BATCH_MAX,
        WINDOW,
        VIEW_CHANGE_TIMEOUT_MS,
        STATUS_INTERVAL_MS,
        CLIENT_TABLE_MAX,
    ],
};

/// Most replicas in a group: with more, the largest new-view message the
/// checks accept would not fit a datagram.
pub const REPLICAS_MAX: usize = 10;

/// Most requests in one batch on the wire: what a pre-prepare's batch may
/// hold, and the largest [`BATCH_MAX`].
pub const BATCH_SIZE_MAX: usize = 256;

/// Distance from the low watermark to the high watermark (the paper's L),
/// in sequence numbers; the largest useful [`WINDOW`].
pub const LOG_MAX: u64 = 16;

pub const BATCH_MAX: Tunable = Tunable {
    name: "batch_max",
    about: "most requests the primary puts in one batch",
    unit: "requests",
    default: BATCH_SIZE_MAX as u64,
    min: 1,
    max: BATCH_SIZE_MAX as u64,
};

pub const WINDOW: Tunable = Tunable {
    name: "window",
    about: "most batches the primary has proposed and not yet executed",
    unit: "batches",
    default: 4,
    min: 1,
    max: LOG_MAX,
};

pub const VIEW_CHANGE_TIMEOUT_MS: Tunable = Tunable {
    name: "view_change_timeout_ms",
    about: "first view-change timeout; doubled at each view change that does not complete",
    unit: "ms",
    default: 40,
    min: 5,
    max: 1000,
};

pub const STATUS_INTERVAL_MS: Tunable = Tunable {
    name: "status_interval_ms",
    about: "how often a replica checks whether it is stuck and asks for help",
    unit: "ms",
    default: 10,
    min: 1,
    max: 250,
};

pub const CLIENT_TABLE_MAX: Tunable = Tunable {
    name: "client_table_max",
    about: "sessions the client table holds before it evicts the least recently used",
    unit: "sessions",
    default: 1 << 16,
    min: 1,
    max: 1 << 16,
};

/// A view number. The primary of view `v` is replica `v mod n`.
pub type View = u64;

/// A sequence number assigned by the primary to a batch. The first is 1.
pub type Seq = u64;

/// Everything PBFT nodes send each other.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Message {
    /// Client to replicas: a request and its authenticator.
    Request(AuthRequest),
    /// A backup relays clients' requests to the primary (§4.4): one that a
    /// client retransmitted to it, or, on entering a new view, every request
    /// it waits for. Its own message, so that the primary does not take the
    /// backup's address for a client's.
    Relayed(ReplicaId, Vec<AuthRequest>),
    /// Replica to client, with a MAC under the key the pair shares.
    Reply(MacReply),
    /// Replica to client: the client table evicted this client, so its
    /// request `request_num` was not executed and none of its later ones will
    /// be (the `result` is empty).
    Evicted(MacReply),
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
    /// A restarted replica asks where the group stands (proactive recovery,
    /// TOCS §4.3.2).
    QueryStable(Signed<QueryStable>),
    ReplyStable(Signed<ReplyStable>),
}

impl Message {
    /// The variant number of [`Message::Request`], for a client that
    /// encodes its request's authenticator as it writes the message
    /// (`protocols::common::ClientAuth::authenticate_into`).
    pub const REQUEST_VARIANT: u32 = 0;

    /// A reply (or, if `evicted`, an eviction notice) and its MAC, to
    /// encode exactly as [`Message::Reply`] (or [`Message::Evicted`]) of
    /// them would be: a replica sends each reply from where it lies.
    pub fn reply_out<'a>(evicted: bool, reply: &'a Reply, mac: &'a crate::Mac) -> ReplyOut<'a> {
        ReplyOut {
            variant: if evicted { 3 } else { 2 },
            reply,
            mac,
        }
    }
}

/// A signed pre-prepare and its batch, encoded exactly as
/// [`Message::PrePrepare`] of them would be, from borrowed parts: the primary
/// broadcasts a batch without copying every request into a message.
#[derive(Clone, Copy, Debug)]
pub struct PrePrepareOut<'a> {
    pub header: &'a Signed<PrePrepare>,
    pub batch: &'a [AuthRequest],
}

impl Encode for PrePrepareOut<'_> {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        4u32.encode(encoder)?;
        self.header.encode(encoder)?;
        self.batch.encode(encoder)
    }
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

/// Proof that checkpoint `(seq, digest)` is stable: the signatures of a
/// quorum of distinct replicas over [`Checkpoint`] votes for it. Sequence number 0 is the
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

/// The primary of `view` starts it: a quorum of view-change messages (V) and the
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
    /// Where peers should start answering: the lowest sequence number in
    /// this view that has not committed here (after a view change that can
    /// be below what it executed: others may need its commit there).
    pub wants: Seq,
    /// A recovering replica: the stable checkpoint it waits for (its
    /// estimate of the high watermark, H), so that an idle primary fills
    /// the sequence numbers up to it with null batches.
    pub recovering: Option<Seq>,
}

/// A stable checkpoint's proof, relayed by `replica` (unauthenticated: the
/// proof speaks for itself).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StableCheckpoint {
    pub replica: ReplicaId,
    pub cert: CheckpointCert,
}

/// Asks for chunk `index` of the state at checkpoint `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct FetchState {
    pub replica: ReplicaId,
    pub seq: Seq,
    pub index: u64,
}

/// Chunk `index` of the `size`-byte state at checkpoint `seq`, with the Merkle
/// path that proves it (see [`crate::merkle`]). Unsigned: the checkpoint's
/// digest commits to the size and to every chunk, so the receiver checks each
/// chunk on arrival, whoever sent it.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct StateChunk {
    pub replica: ReplicaId,
    pub seq: Seq,
    pub index: u64,
    pub size: u64,
    pub data: Vec<u8>,
    pub proof: Vec<Digest>,
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

/// A restarted replica asks every replica for its latest checkpoint and the
/// highest sequence number it prepared (TOCS §4.3.2). `nonce` is fresh for
/// each recovery, so replies to an earlier one cannot be replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct QueryStable {
    pub replica: ReplicaId,
    pub nonce: u64,
}

/// Replica `replica`'s answer to a [`QueryStable`] from `to`: the sequence
/// number of its latest checkpoint and the highest one it accepted a
/// pre-prepare for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ReplyStable {
    pub replica: ReplicaId,
    pub to: ReplicaId,
    pub nonce: u64,
    pub checkpoint: Seq,
    pub prepared: Seq,
}

/// The digest a pre-prepare names its batch by: of the batch's encoding.
pub fn batch_digest(batch: &[AuthRequest]) -> Option<Digest> {
    Digest::of_encoded(&batch).ok()
}

impl Message {
    /// A line for a trace: the kind and the fields that say which instance.
    pub fn describe(&self) -> String {
        match self {
            Message::Request(r) => format!(
                "Request c{} #{}",
                r.request.client_id.0, r.request.request_num
            ),
            Message::Relayed(by, requests) => match &requests[..] {
                [r] => format!(
                    "Relayed by r{} c{} #{}",
                    by.0, r.request.client_id.0, r.request.request_num
                ),
                _ => format!("Relayed by r{} ({} requests)", by.0, requests.len()),
            },
            Message::Reply(r) => format!(
                "Reply r{} v{} c{} #{}",
                r.reply.replica.0, r.reply.view, r.reply.client_id.0, r.reply.request_num
            ),
            Message::Evicted(r) => format!(
                "Evicted r{} c{} #{}",
                r.reply.replica.0, r.reply.client_id.0, r.reply.request_num
            ),
            Message::PrePrepare(pp, batch) => format!(
                "PrePrepare v{} n{} {:?} ({} requests)",
                pp.payload.view,
                pp.payload.seq,
                pp.payload.digest,
                batch.len()
            ),
            Message::Prepare(p) => format!(
                "Prepare r{} v{} n{} {:?}",
                p.payload.replica.0, p.payload.view, p.payload.seq, p.payload.digest
            ),
            Message::Commit(c) => format!(
                "Commit r{} v{} n{} {:?}",
                c.payload.replica.0, c.payload.view, c.payload.seq, c.payload.digest
            ),
            Message::Checkpoint(c) => format!(
                "Checkpoint r{} n{} {:?}",
                c.payload.replica.0, c.payload.seq, c.payload.digest
            ),
            Message::ViewChange(vc) => format!(
                "ViewChange r{} v{} stable n{} ({} prepared)",
                vc.payload.replica.0,
                vc.payload.view,
                vc.payload.checkpoint.seq,
                vc.payload.prepared.len()
            ),
            Message::NewView(nv) => format!(
                "NewView v{} ({} view-changes, {} pre-prepares)",
                nv.view,
                nv.view_changes.len(),
                nv.pre_prepares.len()
            ),
            Message::Status(s) => format!(
                "Status r{} v{}{} executed n{} stable n{} wants n{}{}",
                s.payload.replica.0,
                s.payload.view,
                if s.payload.changing {
                    " (changing)"
                } else {
                    ""
                },
                s.payload.executed,
                s.payload.stable,
                s.payload.wants,
                match s.payload.recovering {
                    Some(h) => format!(" recovering to n{h}"),
                    None => String::new(),
                }
            ),
            Message::StableCheckpoint(s) => {
                format!("StableCheckpoint by r{} n{}", s.replica.0, s.cert.seq)
            }
            Message::FetchState(f) => format!(
                "FetchState r{} n{} chunk {}",
                f.payload.replica.0, f.payload.seq, f.payload.index
            ),
            Message::StateChunk(c) => format!(
                "StateChunk r{} n{} chunk {} of {} bytes",
                c.replica.0, c.seq, c.index, c.size
            ),
            Message::FetchBatch(f) => {
                format!("FetchBatch r{} {:?}", f.payload.replica.0, f.payload.digest)
            }
            Message::Batch(b) => format!(
                "Batch r{} {:?} ({} requests)",
                b.replica.0,
                b.digest,
                b.requests.len()
            ),
            Message::QueryStable(q) => {
                format!(
                    "QueryStable r{} nonce {}",
                    q.payload.replica.0, q.payload.nonce
                )
            }
            Message::ReplyStable(r) => format!(
                "ReplyStable r{} to r{} checkpoint n{} prepared n{}",
                r.payload.replica.0, r.payload.to.0, r.payload.checkpoint, r.payload.prepared
            ),
        }
    }
}

// Field descriptions for the simulator's Byzantine mutations (see
// `crate::fields`).

crate::fields!(PrePrepare { view, seq, digest });
crate::fields!(Prepare {
    view,
    seq,
    digest,
    replica
});
crate::fields!(Commit {
    view,
    seq,
    digest,
    replica
});
crate::fields!(Checkpoint {
    seq,
    digest,
    replica
});
crate::fields!(CheckpointCert {
    seq,
    digest,
    signatures
});
crate::fields!(PreparedCert {
    view,
    seq,
    digest,
    pre_prepare,
    prepares
});
crate::fields!(ViewChange {
    view,
    replica,
    checkpoint,
    prepared
});
crate::fields!(NewView {
    view,
    view_changes,
    pre_prepares
});
crate::fields!(StableCheckpoint { replica, cert });
crate::fields!(FetchState {
    replica,
    seq,
    index
});
crate::fields!(StateChunk {
    replica,
    seq,
    index,
    size,
    data: bytes,
    proof
});
crate::fields!(FetchBatch { replica, digest });
crate::fields!(Batch {
    replica,
    digest,
    requests
});
crate::fields!(QueryStable { replica, nonce });
crate::fields!(ReplyStable {
    replica,
    to,
    nonce,
    checkpoint,
    prepared
});

impl Fields for Status {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.replica.visit(v);
        self.view.visit(v);
        self.changing.visit(v);
        self.executed.visit(v);
        self.stable.visit(v);
        self.wants.visit(v);
        self.recovering.visit(v);
    }
}

impl Fields for Message {
    fn visit(&mut self, v: &mut dyn Visitor) {
        match self {
            Message::Request(r) => r.visit(v),
            Message::Relayed(by, r) => {
                by.visit(v);
                r.visit(v);
            }
            Message::Reply(r) | Message::Evicted(r) => r.visit(v),
            Message::PrePrepare(pp, batch) => {
                // A Byzantine primary that changes its batch names the new
                // batch in the header it signs: the lie is in the ordering,
                // not in a digest anyone can check.
                let before = v.changes();
                batch.visit(v);
                if v.changes() != before
                    && let Some(digest) = batch_digest(batch)
                {
                    pp.payload.digest = digest;
                    pp.resign(v);
                }
                pp.visit(v);
            }
            Message::Prepare(p) => p.visit(v),
            Message::Commit(c) => c.visit(v),
            Message::Checkpoint(c) => c.visit(v),
            Message::ViewChange(vc) => vc.visit(v),
            Message::NewView(nv) => nv.visit(v),
            Message::Status(s) => s.visit(v),
            Message::StableCheckpoint(s) => s.visit(v),
            Message::FetchState(f) => f.visit(v),
            Message::StateChunk(c) => c.visit(v),
            Message::FetchBatch(f) => f.visit(v),
            Message::Batch(b) => {
                let before = v.changes();
                b.requests.visit(v);
                if v.changes() != before
                    && let Some(digest) = batch_digest(&b.requests)
                {
                    b.digest = digest;
                }
                b.replica.visit(v);
                b.digest.visit(v);
            }
            Message::QueryStable(q) => q.visit(v),
            Message::ReplyStable(r) => r.visit(v),
        }
    }
}

#[cfg(test)]
mod borrowed_tests {
    use super::*;
    use crate::client::Request;
    use crate::{ClientId, Mac, codec};

    fn reply() -> Reply {
        Reply {
            view: 300,
            replica: ReplicaId(2),
            client_id: ClientId(1 << 40),
            request_num: 7,
            result: vec![5; 70],
        }
    }

    /// The borrowed encodings are byte for byte the owned ones, so that
    /// receivers decode them as the messages they mirror.
    #[test]
    fn borrowed_encodings_are_the_messages() {
        let mac = Mac([9; 32]);
        for evicted in [false, true] {
            let owned = MacReply {
                reply: reply(),
                mac,
            };
            let owned = if evicted {
                Message::Evicted(owned)
            } else {
                Message::Reply(owned)
            };
            let reply = reply();
            let borrowed = Message::reply_out(evicted, &reply, &mac);
            assert_eq!(
                codec::encode_to_vec(&borrowed).unwrap(),
                codec::encode_to_vec(&owned).unwrap()
            );
        }
        let header = Signed {
            payload: PrePrepare {
                view: 1 << 33,
                seq: 12,
                digest: Digest([3; 32]),
            },
            signature: Signature([4; 64]),
        };
        for len in [0, 1, 3] {
            let batch: Vec<AuthRequest> = (0..len)
                .map(|i| AuthRequest {
                    session: i,
                    request: Request {
                        client_id: ClientId(i),
                        request_num: i + 1,
                        op: vec![1; 10],
                    },
                    key: crate::PublicKey([2; 33]),
                    auth: vec![Mac([i as u8; 32]); 4],
                })
                .collect();
            let borrowed = PrePrepareOut {
                header: &header,
                batch: &batch,
            };
            assert_eq!(
                codec::encode_to_vec(&borrowed).unwrap(),
                codec::encode_to_vec(&Message::PrePrepare(header.clone(), batch.clone())).unwrap()
            );
        }
    }
}
