//! Messages of chained HotStuff (Yin, Malkhi, Reiter, Gueta, Abraham,
//! "HotStuff: BFT Consensus with Linearity and Responsiveness", PODC 2019),
//! with the paper's names where it has them.
//!
//! A [`Block`] names its parent through the quorum certificate it carries
//! (`justify`): the block certified by `justify` is the parent, as in the
//! paper's event-driven formulation when the leader extends its highest QC.
//! A block's digest ([`Block::digest`]) covers its view, height, the view
//! and digest of its QC and its requests, so a block fetched from anyone is
//! checked against the digest its child names.
//!
//! What a replica sends to replicas is signed, except what proves itself
//! and proposals: a [`QuorumCert`] and a [`TimeoutCert`] are sets of
//! signatures, fetched [`Block`]s and state chunks are checked against
//! digests the receiver already trusts, and a [`Proposal`] carries a MAC
//! for each replica (no one but its receiver ever needs to check it).
//! Clients authenticate requests and replicas replies with MACs, as in
//! PBFT (see [`crate::auth::AuthRequest`]).

use bincode::{Decode, Encode};

use crate::auth::{AuthRequest, MacReply, Reply, ReplyOut};
use crate::fields::{Fields, Visitor};
use crate::registry::{ProtocolSpec, Replication, Tunable};
use crate::{Digest, Mac, MacKey, ReplicaId, Signature, Signed};

/// HotStuff in the registry ([`crate::registry`]).
pub const SPEC: ProtocolSpec = ProtocolSpec {
    name: "hotstuff",
    about: "chained HotStuff (Yin et al., PODC 2019): a leader per view in turn, \
            a pacemaker with timeout certificates, MACs for clients",
    replication: Replication::Bft,
    replicas_max: REPLICAS_MAX,
    services: &[],
    signs: true,
    batches: true,
    rotates_leader: true,
    counters: &[
        crate::control::BATCHES_COUNTER,
        crate::control::REQUESTS_BATCHED_COUNTER,
        crate::control::VIEW_CHANGES_COUNTER,
        "block: committed",
        "sync: blocks fetched",
        "snapshot: installed",
        "client: retransmission",
    ],
    tunables: &[BLOCK_MAX, BATCH_DELAY_US, VIEW_TIMEOUT_MS, CLIENT_TABLE_MAX],
};

/// Most replicas in a group: a block of [`BLOCK_SIZE_MAX`] requests, each
/// with a MAC per replica, must fit a datagram.
pub const REPLICAS_MAX: usize = 16;

/// Most requests a block holds on the wire: the largest [`BLOCK_MAX`].
pub const BLOCK_SIZE_MAX: usize = 512;

pub const BLOCK_MAX: Tunable = Tunable {
    name: "block_max",
    about: "most requests a leader puts in one block",
    unit: "requests",
    default: 256,
    min: 1,
    max: BLOCK_SIZE_MAX as u64,
};

/// Zero by default: in the chained pipeline a leader proposes only once it
/// has the QC of the view before, and requests gather in its pool during
/// that round trip, so waiting longer only lengthens the view (measured:
/// 100 closed-loop clients completed 14.4k ops/s with 0 and 12.0k with
/// 200 µs in one run). A delay can still help an open-loop trickle.
pub const BATCH_DELAY_US: Tunable = Tunable {
    name: "batch_delay_us",
    about: "how long a leader with a partial block waits for more requests \
            while blocks are in flight",
    unit: "us",
    default: 0,
    min: 0,
    max: 100_000,
};

pub const VIEW_TIMEOUT_MS: Tunable = Tunable {
    name: "view_timeout_ms",
    about: "first view timeout; doubled at each view that times out in a row",
    unit: "ms",
    default: 40,
    min: 5,
    max: 1000,
};

pub const CLIENT_TABLE_MAX: Tunable = Tunable {
    name: "client_table_max",
    about: "sessions the client table holds before it evicts the least recently used",
    unit: "sessions",
    default: 1 << 16,
    min: 1,
    max: 1 << 16,
};

/// A view number. The leader of view `v` is replica `v mod n`; view 0 is
/// the genesis block's, and the first proposal is in view 1.
pub type View = u64;

/// Everything HotStuff nodes send each other.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Message {
    /// Client to a replica: to the leader it expects next, and to every
    /// replica when it retransmits.
    Request(AuthRequest),
    /// Replica to client, with a MAC under the key the pair shares.
    Reply(MacReply),
    /// Replica to client: the client table evicted this client's session,
    /// so request `request_num` was not executed, nor will later ones be.
    Evicted(MacReply),
    /// The leader of a view to every replica, with a MAC for each: its
    /// block, and, when the block's QC is not for the view before, the
    /// timeout certificate that ended that view.
    Proposal(Proposal),
    /// A replica to the leader of the next view.
    Vote(Signed<Vote>),
    /// A replica whose view timer fired, to every replica, with its highest
    /// QC, and its vote in the view before if it cast one: the leader it
    /// sent the vote to may be the one that failed, and with the votes in
    /// the timeouts anyone can form that view's QC.
    Timeout(Signed<Timeout>, QuorumCert, Option<Signed<Vote>>),
    /// Where a replica stands: multicast every status heartbeat, and sent
    /// to a replica whose timeout shows it is behind, so that a replica
    /// left behind in an idle group learns what it missed.
    SyncInfo(SyncInfo),
    /// Block sync: asks the peer for a block and up to `count` of its
    /// ancestors.
    Fetch(Signed<Fetch>),
    /// Block sync: blocks a peer asked for, child first, each the parent of
    /// the one before.
    Blocks(Vec<Block>),
    /// State sync: a replica that lacks the blocks it needs asks every peer
    /// for its latest checkpoint.
    QueryCheckpoint(Signed<QueryCheckpoint>),
    /// State sync: a replica's latest checkpoint.
    Checkpoint(Signed<Checkpoint>),
    /// State sync: asks for one chunk of a checkpoint's state.
    FetchChunk(Signed<FetchChunk>),
    /// State sync: one chunk, with its Merkle path to the state's digest.
    Chunk(Chunk),
    /// A replica to the leader of its view: a client's request that came
    /// to it, the client's authenticator unchanged (the leader checks its
    /// own entry, as for a request from the client).
    Forward(AuthRequest),
}

impl Message {
    /// The variant number of [`Message::Request`], for a client that
    /// encodes its request's authenticator as it writes the message
    /// (`protocols::common::ClientAuth::authenticate_into`).
    pub const REQUEST_VARIANT: u32 = 0;

    /// A reply (or, if `evicted`, an eviction notice) and its MAC, to
    /// encode exactly as [`Message::Reply`] (or [`Message::Evicted`]) of
    /// them would be: a replica sends each reply from where it lies.
    pub fn reply_out<'a>(evicted: bool, reply: &'a Reply, mac: &'a Mac) -> ReplyOut<'a> {
        ReplyOut {
            variant: if evicted { 2 } else { 1 },
            reply,
            mac,
        }
    }
}

/// A block: the leader of `view` extends the block `justify` certifies.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Block {
    pub view: View,
    /// The parent's height plus one; genesis is at 0.
    pub height: u64,
    pub justify: QuorumCert,
    pub requests: Vec<AuthRequest>,
}

impl Block {
    /// The genesis block every replica starts from, certified by
    /// [`QuorumCert::genesis`].
    pub fn genesis() -> Block {
        Block {
            view: 0,
            height: 0,
            justify: QuorumCert {
                view: 0,
                block: Digest([0; 32]),
                votes: Vec::new(),
            },
            requests: Vec::new(),
        }
    }

    /// The block's digest: over its view, height, its QC's view and block,
    /// and its requests (not the QC's signatures).
    pub fn digest(&self) -> Digest {
        Digest::of_encoded(&(
            self.view,
            self.height,
            self.justify.view,
            &self.justify.block,
            &self.requests,
        ))
        .expect("blocks encode")
    }

    /// The parent's digest.
    pub fn parent(&self) -> Digest {
        self.justify.block
    }
}

/// What the leader authenticates: `block` is its proposal for `view`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Proposed {
    pub view: View,
    pub block: Digest,
    pub leader: ReplicaId,
}

impl Proposed {
    /// The header's authenticator: its MAC under each of `keys`, the keys
    /// its leader shares with each replica, in replica order.
    pub fn authenticate(&self, keys: &[MacKey]) -> Vec<Mac> {
        keys.iter()
            .map(|key| key.mac_encoded(self).expect("headers encode"))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Proposal {
    pub header: Proposed,
    /// One HMAC-SHA256 of `header` per replica, in replica order, under the
    /// key the leader shares with that replica (the leader's own entry
    /// included, unused). No third party ever needs to be shown a proposal:
    /// the votes on it are what certificates carry, so MACs do what a
    /// signature would (`cargo bench -p benches --bench crypto` times both).
    pub auth: Vec<Mac>,
    pub block: Block,
    pub tc: Option<TimeoutCert>,
}

/// `voter` votes for `block`, proposed in `view`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Vote {
    pub view: View,
    pub block: Digest,
    pub voter: ReplicaId,
}

/// A quorum certificate: the signatures of n − f distinct replicas over
/// [`Vote`]s for `block` in `view`. View 0's is the genesis QC, without
/// signatures.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct QuorumCert {
    pub view: View,
    pub block: Digest,
    pub votes: Vec<(ReplicaId, Signature)>,
}

impl QuorumCert {
    /// The genesis block's QC.
    pub fn genesis() -> QuorumCert {
        QuorumCert {
            view: 0,
            block: Block::genesis().digest(),
            votes: Vec::new(),
        }
    }
}

/// `replica` timed out in `view`; its highest QC is for `high_qc_view`
/// (the QC travels beside the signed part).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Timeout {
    pub view: View,
    pub high_qc_view: View,
    pub replica: ReplicaId,
}

/// A timeout certificate: a quorum of distinct replicas timed out in
/// `view` or later ones (a replica that times out in a view has given up on
/// the views before it too).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TimeoutCert {
    pub view: View,
    pub timeouts: Vec<TimedOut>,
}

/// One replica's part of a [`TimeoutCert`]: its signature over its
/// [`Timeout`] for `view` (at or above the certificate's) with this
/// `high_qc_view`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct TimedOut {
    pub replica: ReplicaId,
    pub view: View,
    pub high_qc_view: View,
    pub signature: Signature,
}

/// A replica's highest QC, the QC that made its latest commit (a replica
/// that missed it may hold a higher QC that commits nothing by itself), and
/// the TC that ended the view before its own, if it entered it so.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SyncInfo {
    pub high_qc: QuorumCert,
    pub commit_qc: QuorumCert,
    pub tc: Option<TimeoutCert>,
}

/// `replica` asks for `block` and up to `count` of its ancestors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Fetch {
    pub replica: ReplicaId,
    pub block: Digest,
    pub count: u64,
}

/// `replica` asks every peer for its latest checkpoint; `nonce` tells its
/// answers from earlier ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct QueryCheckpoint {
    pub replica: ReplicaId,
    pub nonce: u64,
}

/// `replica` executed every block through `block` (at `height`, proposed in
/// `view`), and then its state (application and client table) had Merkle
/// digest `state` over `size` bytes. Answers the query with `nonce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Checkpoint {
    pub replica: ReplicaId,
    pub nonce: u64,
    pub height: u64,
    pub view: View,
    pub block: Digest,
    pub state: Digest,
    pub size: u64,
}

/// `replica` asks for chunk `index` of the state with digest `state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Encode, Decode)]
pub struct FetchChunk {
    pub replica: ReplicaId,
    pub state: Digest,
    pub index: u64,
}

/// Chunk `index` of the state with digest `state` (of `size` bytes), with
/// its Merkle path ([`crate::merkle`]).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Chunk {
    pub state: Digest,
    pub size: u64,
    pub index: u64,
    pub data: Vec<u8>,
    pub proof: Vec<Digest>,
}

crate::fields!(Proposed {
    view,
    block,
    leader
});
crate::fields!(Vote { view, block, voter });
crate::fields!(QuorumCert { view, block, votes });
crate::fields!(Timeout {
    view,
    high_qc_view,
    replica
});
crate::fields!(TimeoutCert { view, timeouts });
crate::fields!(TimedOut {
    replica,
    view,
    high_qc_view,
    signature
});
crate::fields!(SyncInfo {
    high_qc,
    commit_qc,
    tc
});
crate::fields!(Fetch {
    replica,
    block,
    count
});
crate::fields!(QueryCheckpoint { replica, nonce });
crate::fields!(Checkpoint {
    replica,
    nonce,
    height,
    view,
    block,
    state,
    size
});
crate::fields!(FetchChunk {
    replica,
    state,
    index
});
crate::fields!(Chunk {
    state,
    size,
    index,
    data: bytes,
    proof
});
crate::fields!(Block {
    view,
    height,
    justify,
    requests
});

impl Fields for Message {
    fn visit(&mut self, v: &mut dyn Visitor) {
        match self {
            Message::Request(r) | Message::Forward(r) => r.visit(v),
            Message::Reply(r) | Message::Evicted(r) => r.visit(v),
            Message::Proposal(p) => {
                // A Byzantine leader that changes its block authenticates
                // the new block's digest: the lie is in what it proposes,
                // not in a digest anyone can check.
                let before = v.changes();
                p.block.visit(v);
                if v.changes() != before {
                    p.header.block = p.block.digest();
                }
                p.header.visit(v);
                if v.changes() != before && !v.mac_keys().is_empty() {
                    p.auth = p.header.authenticate(v.mac_keys());
                }
                p.tc.visit(v);
            }
            Message::Vote(vote) => vote.visit(v),
            Message::Timeout(t, qc, vote) => {
                let before = v.changes();
                qc.visit(v);
                if v.changes() != before {
                    t.payload.high_qc_view = qc.view;
                    t.resign(v);
                }
                t.visit(v);
                vote.visit(v);
            }
            Message::SyncInfo(info) => info.visit(v),
            Message::Fetch(f) => f.visit(v),
            Message::Blocks(blocks) => blocks.visit(v),
            Message::QueryCheckpoint(q) => q.visit(v),
            Message::Checkpoint(c) => c.visit(v),
            Message::FetchChunk(f) => f.visit(v),
            Message::Chunk(c) => c.visit(v),
        }
    }
}

#[cfg(test)]
mod borrowed_tests {
    use super::*;
    use crate::{ClientId, codec};

    /// The borrowed reply encodes byte for byte as the message it mirrors.
    #[test]
    fn a_borrowed_reply_is_the_message() {
        let reply = Reply {
            view: 1 << 35,
            replica: ReplicaId(3),
            client_id: ClientId(12),
            request_num: 1 << 20,
            result: vec![8; 33],
        };
        let mac = Mac([6; 32]);
        for evicted in [false, true] {
            let owned = MacReply {
                reply: reply.clone(),
                mac,
            };
            let owned = if evicted {
                Message::Evicted(owned)
            } else {
                Message::Reply(owned)
            };
            assert_eq!(
                codec::encode_to_vec(&Message::reply_out(evicted, &reply, &mac)).unwrap(),
                codec::encode_to_vec(&owned).unwrap()
            );
        }
    }
}
