//! State transfer (TOCS §5.3.2): a replica that learns of a stable
//! checkpoint above what it executed fetches that checkpoint's state, chunk
//! by chunk, from the other replicas in turn.
//!
//! The checkpoint's certified digest commits to the state's size and to a
//! Merkle tree over its chunks (see [`wire::merkle`]), and every chunk comes
//! with its path to the root. So each chunk is checked on arrival, whoever
//! sent it: a forged chunk, a chunk claiming another size, or one for
//! another index is dropped and changes nothing, and the state grows only by
//! chunks that belong to it, up to the certified size. Chunks that checked
//! are kept when the transfer moves on to another source (after a timeout):
//! they are right, whoever sent them.
//!
//! Chunks are fetched [`TRANSFER_WINDOW`] at a time, not one per round trip
//! (the first alone, since it tells the size): under load the stable
//! checkpoint moves on every few milliseconds, the replicas discard the
//! older one, and a transfer slower than that would start over for ever.

use std::collections::BTreeMap;

use runtime::Addr;
use wire::merkle::{self, StateTree, chunk_count};
use wire::pbft::{FetchState, Message, Seq, StableCheckpoint, StateChunk};
use wire::{Digest, ReplicaId};

use super::super::bugs;
use super::super::codec::Outbound;
use super::super::{STATE_CHUNK_MAX, STATE_SIZE_MAX, TRANSFER_RETRY, TRANSFER_WINDOW};
use super::checkpoint::decode_state;
use super::{Ctx, Replica, ReplicaTimer, Snapshot};
use crate::planted;

/// A state transfer in progress: fetching the state of checkpoint `seq`.
#[derive(Debug)]
pub(super) struct Transfer {
    seq: Seq,
    digest: Digest,
    /// The state's size, from the first chunk that checked.
    size: Option<u64>,
    /// The chunks received so far, in order: chunk `i` of the state is
    /// `data[i * STATE_CHUNK_MAX..]`.
    data: Vec<u8>,
    chunks: u64,
    /// Chunks that checked but came before an earlier one, by index: at
    /// most [`TRANSFER_WINDOW`].
    ahead: BTreeMap<u64, Vec<u8>>,
    /// The next chunk to ask for.
    requested: u64,
    /// The replica asked; rotated on timeouts.
    source: ReplicaId,
}

impl Replica {
    pub(super) fn start_transfer(&mut self, ctx: &mut Ctx<'_, '_>) {
        if self
            .transfer
            .as_ref()
            .is_some_and(|t| t.seq >= self.stable.seq)
        {
            return;
        }
        ctx.count("state transfer: started");
        let source = self.next_replica(self.id);
        self.transfer = Some(Transfer {
            seq: self.stable.seq,
            digest: self.stable.digest,
            size: None,
            data: Vec::new(),
            chunks: 0,
            ahead: BTreeMap::new(),
            requested: 0,
            source,
        });
        self.request_chunks(ctx);
    }

    fn next_replica(&self, after: ReplicaId) -> ReplicaId {
        let n = self.config.n as u8;
        let mut next = (after.0 + 1) % n;
        if next == self.id.0 {
            next = (next + 1) % n;
        }
        ReplicaId(next)
    }

    /// Asks the source for the chunks of the window not yet asked for: the
    /// first chunk alone until the size is known.
    fn request_chunks(&mut self, ctx: &mut Ctx<'_, '_>) {
        let id = self.id;
        let Some(t) = &mut self.transfer else { return };
        let end = match t.size {
            Some(size) => chunk_count(size, STATE_CHUNK_MAX).min(t.chunks + TRANSFER_WINDOW),
            None => 1,
        };
        let mut asked = false;
        while t.requested < end {
            if !t.ahead.contains_key(&t.requested) {
                let fetch = FetchState {
                    replica: id,
                    seq: t.seq,
                    index: t.requested,
                };
                ctx.send(Addr::Replica(t.source), Outbound::FetchState(fetch));
                asked = true;
            }
            t.requested += 1;
        }
        if asked {
            ctx.set_timer(ReplicaTimer::Transfer, TRANSFER_RETRY);
        }
    }

    pub(super) fn on_fetch_state(&mut self, fetch: FetchState, ctx: &mut Ctx<'_, '_>) {
        let snapshot = if fetch.seq == self.stable.seq {
            self.stable_state.as_ref()
        } else {
            self.own_checkpoints.get(&fetch.seq)
        };
        let to = Addr::Replica(fetch.replica);
        let Some(snapshot) = snapshot else {
            if fetch.seq < self.stable.seq {
                let msg = StableCheckpoint {
                    replica: self.id,
                    cert: self.stable.clone(),
                };
                ctx.send(to, Outbound::Message(Message::StableCheckpoint(msg)));
            } else {
                ctx.drop_message("fetch-state: no such checkpoint here");
            }
            return;
        };
        let (Some(data), Some(proof)) = (
            snapshot.tree.chunk(&snapshot.state, fetch.index),
            snapshot.tree.proof(fetch.index),
        ) else {
            ctx.drop_message("fetch-state: no such chunk");
            return;
        };
        let chunk = StateChunk {
            replica: self.id,
            seq: fetch.seq,
            index: fetch.index,
            size: snapshot.tree.size(),
            data: data.to_vec(),
            proof,
        };
        ctx.send(to, Outbound::Message(Message::StateChunk(chunk)));
    }

    pub(super) fn on_state_chunk(&mut self, chunk: StateChunk, ctx: &mut Ctx<'_, '_>) {
        let unchecked = planted::is(bugs::UNCHECKED_STATE_CHUNKS);
        let Some(t) = &mut self.transfer else {
            ctx.drop_message("state-chunk: no transfer in progress");
            return;
        };
        let in_window = chunk.index >= t.chunks
            && chunk.index < t.chunks + TRANSFER_WINDOW
            && (chunk.index == t.chunks || t.size.is_some())
            && !t.ahead.contains_key(&chunk.index);
        if chunk.seq != t.seq || !in_window || (unchecked && chunk.index != t.chunks) {
            ctx.drop_message("state-chunk: not the one asked for");
            return;
        }
        if chunk.size > STATE_SIZE_MAX {
            ctx.drop_message("state-chunk: state too large");
            return;
        }
        if unchecked {
            // The planted bug: the first chunk's size is believed, and
            // chunks are taken as they come.
            let size = *t.size.get_or_insert(chunk.size);
            if chunk.data.is_empty() && size > 0 {
                ctx.drop_message("state-chunk: bad length");
                return;
            }
        } else {
            let fits = merkle::verify_chunk(
                &t.digest,
                chunk.size,
                STATE_CHUNK_MAX,
                chunk.index,
                &chunk.data,
                &chunk.proof,
            );
            if !fits {
                ctx.drop_message("state-chunk: does not match the checkpoint");
                return;
            }
            t.size = Some(chunk.size);
        }
        t.ahead.insert(chunk.index, chunk.data);
        while let Some(data) = t.ahead.remove(&t.chunks) {
            t.data.extend_from_slice(&data);
            t.chunks += 1;
        }
        // A timeout's retry asked again from the first missing chunk on.
        t.requested = t.requested.max(t.chunks);
        let size = t.size.expect("set above");
        if t.chunks < chunk_count(size, STATE_CHUNK_MAX) && (t.data.len() as u64) < size {
            self.request_chunks(ctx);
            return;
        }
        if unchecked && StateTree::new(&t.data, STATE_CHUNK_MAX).digest() != t.digest {
            // The planted bug's other half: try someone else, with what was
            // already (wrongly) taken kept.
            ctx.drop_message("state-chunk: state does not match the checkpoint");
            let source = t.source;
            let next = self.next_replica(source);
            if let Some(t) = &mut self.transfer {
                t.source = next;
                t.requested = t.chunks;
            }
            self.request_chunks(ctx);
            return;
        }
        let t = self.transfer.take().expect("transfer in progress");
        ctx.cancel_timer(ReplicaTimer::Transfer);
        self.install_state(t.seq, t.data, ctx);
    }

    pub(super) fn on_transfer_timeout(&mut self, ctx: &mut Ctx<'_, '_>) {
        let Some(source) = self.transfer.as_ref().map(|t| t.source) else {
            return; // Spurious.
        };
        let next = self.next_replica(source);
        if let Some(t) = &mut self.transfer {
            t.source = next;
            t.requested = t.chunks;
        }
        ctx.count("state transfer: retry");
        self.request_chunks(ctx);
    }

    fn install_state(&mut self, seq: Seq, state: Vec<u8>, ctx: &mut Ctx<'_, '_>) {
        let (app, clients) = decode_state(&state, self.config.client_table_max)
            .expect("a state a quorum certified decodes");
        self.app.restore(app);
        self.clients = clients;
        self.codec
            .repin_clients(self.clients.bindings().map(|(c, key)| (c, *key)));
        self.executed = seq;
        self.executed_at_status = seq;
        self.stable_state = Some(Snapshot::of(state));
        let settled: Vec<_> = self
            .waiting
            .by_client
            .values()
            .map(|(r, _)| r)
            .chain(&self.pending)
            .filter(|r| {
                self.clients
                    .is_settled(r.request.client_id, r.session, r.request.request_num)
            })
            .map(|r| (r.request.client_id, r.request.request_num))
            .collect();
        for (client, num) in settled {
            self.waiting.settle(client, num);
            if self.proposed.get(&client).is_some_and(|&p| p <= num) {
                self.proposed.remove(&client);
            }
        }
        self.seq_next = self.seq_next.max(seq.saturating_add(1));
        ctx.count("state transfer: done");
        ctx.note(|| format!("installed the state of n{seq}"));
        self.execute_committed(ctx);
        for seq in self.log.keys().copied().collect::<Vec<_>>() {
            self.advance(seq, ctx);
        }
        self.check_recovered(ctx);
        self.arm_request_timer(ctx);
    }
}
