//! Checkpoints and garbage collection (§4.3).

use wire::Signed;
use wire::merkle::StateTree;
use wire::pbft::{Checkpoint, CheckpointCert, Message, Seq, StableCheckpoint};

use super::super::codec::Outbound;
use super::super::{CHECKPOINT_VOTES_MAX, STATE_CHUNK_MAX};
use super::{Ctx, Replica, Snapshot};
use crate::common::sessions::{self, ClientTable};
use crate::common::{Refused, VoteSet};

impl Snapshot {
    /// A state and its tree, whose digest checkpoints certify.
    pub(super) fn of(state: Vec<u8>) -> Snapshot {
        let tree = StateTree::new(&state, STATE_CHUNK_MAX);
        Snapshot { state, tree }
    }
}

impl Replica {
    pub(super) fn take_checkpoint(&mut self, seq: Seq, ctx: &mut Ctx<'_, '_>) {
        let snapshot = Snapshot::of(self.encode_state());
        if snapshot.state.len() as u64 > super::super::STATE_SIZE_MAX {
            // An application beyond its budget: replicas that fall behind
            // this checkpoint cannot fetch it.
            ctx.count("checkpoint: state larger than a transfer accepts");
        }
        let digest = snapshot.digest();
        self.own_checkpoints.insert(seq, snapshot);
        let vote = self.codec.sign(Checkpoint {
            seq,
            digest,
            replica: self.id,
        });
        ctx.send_to_replicas(Outbound::Message(Message::Checkpoint(vote.clone())));
        self.on_checkpoint(vote, ctx);
    }

    /// §4.3: a checkpoint is stable with a quorum of matching votes.
    pub(super) fn on_checkpoint(&mut self, vote: Signed<Checkpoint>, ctx: &mut Ctx<'_, '_>) {
        let Checkpoint {
            seq,
            digest,
            replica,
        } = vote.payload;
        if seq <= self.stable.seq {
            ctx.drop_message("checkpoint: at or below the stable one");
            return;
        }
        if seq > self.high_watermark() {
            self.behind = true;
        }
        let (n, quorum) = (self.config.n, self.config.quorum());
        let votes = self
            .checkpoint_votes
            .entry(seq)
            .or_insert_with(|| VoteSet::new(n));
        // A replica's first vote for `seq` stands: a correct one checkpoints
        // one state per sequence number.
        let signatures = match votes.insert(replica, digest, vote.signature) {
            Ok(_) => votes.certificate(&digest, quorum),
            Err(refused) => {
                ctx.drop_message(match refused {
                    Refused::NotAVoter => "checkpoint: no such replica",
                    Refused::Duplicate => "checkpoint: duplicate",
                    Refused::Conflicting => "checkpoint: conflicting vote",
                });
                None
            }
        };
        if let Some(signatures) = signatures {
            let cert = CheckpointCert {
                seq,
                digest,
                signatures,
            };
            self.adopt_stable(cert, ctx);
        }
        while self.checkpoint_votes.len() > CHECKPOINT_VOTES_MAX {
            // The highest go first: votes far ahead are the cheapest for a
            // faulty replica to make up.
            self.checkpoint_votes.pop_last();
            ctx.count("checkpoint: votes evicted");
        }
    }

    /// A proof of a stable checkpoint relayed to this lagging replica.
    pub(super) fn on_stable_checkpoint(&mut self, msg: StableCheckpoint, ctx: &mut Ctx<'_, '_>) {
        if msg.cert.seq <= self.stable.seq {
            ctx.drop_message("stable-checkpoint: not newer");
            return;
        }
        self.adopt_stable(msg.cert, ctx);
    }

    /// Moves the low watermark to a proven checkpoint and discards what lies
    /// at or below it (§4.3). If this replica has not executed that far, it
    /// fetches the state (state transfer).
    pub(super) fn adopt_stable(&mut self, cert: CheckpointCert, ctx: &mut Ctx<'_, '_>) {
        if cert.seq <= self.stable.seq {
            return;
        }
        let seq = cert.seq;
        let own = self.own_checkpoints.remove(&seq);
        if let Some(snapshot) = &own {
            assert_eq!(
                snapshot.digest(),
                cert.digest,
                "replica {} diverged from a stable checkpoint at {seq}",
                self.id.0
            );
        }
        self.stable_state = own;
        self.stable = cert;
        self.own_checkpoints.retain(|&s, _| s > seq);
        self.checkpoint_votes.retain(|&s, _| s > seq);
        self.log.retain(|&s, _| s > seq);
        for peer in self.recovering_peers.values_mut() {
            peer.reached |= peer.target.is_some_and(|target| target <= seq);
        }
        self.seq_next = self.seq_next.max(seq.saturating_add(1));
        ctx.count("checkpoint: stable");
        ctx.note(|| format!("stable checkpoint n{seq}"));
        if self.executed < seq {
            self.start_transfer(ctx);
        }
        self.check_recovered(ctx);
        self.try_propose(ctx);
    }

    /// The checkpointed state: the application's snapshot and the client
    /// table, little-endian and length-prefixed (not the codec: a state may
    /// be larger than a message).
    pub(super) fn encode_state(&self) -> Vec<u8> {
        let app = self.app.snapshot();
        let mut bytes = Vec::with_capacity(app.len() + 16 + 48 * self.clients.len());
        bytes.extend_from_slice(&(app.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&app);
        self.clients.encode(&mut bytes);
        bytes
    }
}

/// Inverse of [`Replica::encode_state`]; `None` if malformed.
pub(super) fn decode_state(bytes: &[u8], clients_max: usize) -> Option<(&[u8], ClientTable)> {
    let (len, rest) = bytes.split_at_checked(8)?;
    let len = usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok()?;
    let (app, mut rest) = rest.split_at_checked(len)?;
    let table = sessions::decode(&mut rest, clients_max)?;
    rest.is_empty().then_some((app, table))
}
