//! Block sync and state sync: a replica missing a block's ancestors fetches
//! them; one so far behind that the blocks it needs are gone installs a
//! checkpoint that f + 1 replicas sign alike (see the module docs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use runtime::{Addr, ReplicaId, Time};
use wire::Digest;
use wire::hotstuff::{
    Block, Checkpoint, Chunk, Fetch, FetchChunk, Message, QueryCheckpoint, QuorumCert, View,
};
use wire::merkle::StateTree;

use super::codec::Outbound;
use super::replica::{Anchor, CHECKPOINT_KEY, Ctx, Replica, ReplicaTimer, encode_checkpoint};
use super::{
    COMMITTED_KEPT, FETCH_BLOCKS_MAX, STATE_CHUNK_MAX, STATE_SIZE_MAX, SYNC_RETRY, TRANSFER_WINDOW,
    WAITING_MAX,
};
use crate::common::VoteSet;
use crate::common::sessions;

/// Fetched blocks kept while their ancestors are fetched.
const ORPHANS_MAX: usize = 2 * FETCH_BLOCKS_MAX as usize;

/// QCs kept while their blocks are fetched.
const PENDING_QCS: usize = 4;

/// Digests remembered as asked for.
const ASKED_LATELY: usize = 8;

/// Own checkpoints kept to serve: the latest two, so that a transfer of
/// the older can finish while the newer is taken.
const CHECKPOINTS_KEPT: usize = 2;

/// How often a peer's sync requests are answered at most.
const SERVE_INTERVAL: Duration = Duration::from_millis(1);

/// How often a peer behind is told where the group is at most.
const HELP_INTERVAL: Duration = Duration::from_millis(5);

/// What a replica syncs, and what it serves.
#[derive(Debug)]
pub(super) struct Sync {
    /// Proposals whose ancestors are being fetched, with whether their
    /// requests checked here.
    waiting: VecDeque<(Block, bool)>,
    /// Fetched blocks whose parents are not known yet.
    orphans: HashMap<Digest, Block>,
    /// The block asked for, from whom, and since when.
    asked: Option<(Digest, ReplicaId, Time)>,
    /// The blocks asked for lately (answers to earlier fetches still count).
    asked_lately: VecDeque<Digest>,
    /// The highest QC whose block is being fetched: applied once it comes.
    pending_qcs: Vec<QuorumCert>,
    /// When each peer's request was last answered.
    served: Vec<Option<Time>>,
    /// When each peer behind was last told where the group is.
    helped: Vec<Option<Time>>,
    transfer: Option<Transfer>,
    checkpoints: VecDeque<Snapshot>,
}

/// An own checkpoint: the state after executing `block`.
#[derive(Debug)]
struct Snapshot {
    height: u64,
    view: View,
    block: Digest,
    state: Vec<u8>,
    tree: StateTree,
}

/// What a checkpoint offer names; f + 1 alike make a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Offer {
    height: u64,
    view: View,
    block: Digest,
    state: Digest,
    size: u64,
}

#[derive(Debug)]
struct Transfer {
    nonce: u64,
    offers: VoteSet<Offer>,
    /// The checkpoint being fetched, and who offered it.
    target: Option<(Offer, Vec<ReplicaId>)>,
    chunks: BTreeMap<u64, Vec<u8>>,
    /// Chunks asked for, and when.
    asked: BTreeMap<u64, Time>,
    /// Replicas whose latest checkpoint is not above this replica's
    /// committed height, one bit each.
    not_ahead: u32,
}

impl Sync {
    pub(super) fn new(n: usize) -> Sync {
        Sync {
            waiting: VecDeque::new(),
            orphans: HashMap::new(),
            asked: None,
            asked_lately: VecDeque::new(),
            pending_qcs: Vec::new(),
            served: vec![None; n],
            helped: vec![None; n],
            transfer: None,
            checkpoints: VecDeque::new(),
        }
    }

    /// The QC waiting for `block`, if one does.
    pub(super) fn take_pending_qc(&mut self, block: &Digest) -> Option<QuorumCert> {
        let i = self.pending_qcs.iter().position(|qc| qc.block == *block)?;
        Some(self.pending_qcs.swap_remove(i))
    }

    /// Forgets what is at or below the committed height.
    pub(super) fn prune(&mut self, committed: u64) {
        self.waiting.retain(|(b, _)| b.height > committed);
        self.orphans.retain(|_, b| b.height > committed);
    }

    /// Whether `peer` may be answered now (and notes that it was).
    fn serve(&mut self, peer: ReplicaId, now: Time) -> bool {
        limit(&mut self.served, peer, now, SERVE_INTERVAL)
    }

    /// Whether `peer`, behind, may be told where the group is now.
    pub(super) fn help(&mut self, peer: ReplicaId, now: Time) -> bool {
        limit(&mut self.helped, peer, now, HELP_INTERVAL)
    }
}

/// At most once per `interval` per peer; whether now is such a time (and
/// notes it).
fn limit(last: &mut [Option<Time>], peer: ReplicaId, now: Time, interval: Duration) -> bool {
    let Some(last) = last.get_mut(usize::from(peer.0)) else {
        return false;
    };
    if last.is_some_and(|t| now.since(t) < interval) {
        return false;
    }
    *last = Some(now);
    true
}

impl Replica {
    /// A proposal whose parent is unknown: keep it, and fetch its
    /// ancestors from its leader (or a checkpoint, if they may be gone).
    pub(super) fn wait_for_parent(
        &mut self,
        block: Block,
        authentic: bool,
        from: ReplicaId,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let gap = block.height - self.committed.height;
        let parent = block.parent();
        if self.sync.waiting.iter().any(|(b, _)| *b == block) {
            return;
        }
        if self.sync.waiting.len() >= WAITING_MAX {
            self.sync.waiting.pop_front();
            ctx.count("sync: waiting proposal dropped");
        }
        self.sync.waiting.push_back((block, authentic));
        if gap > COMMITTED_KEPT {
            self.start_transfer(ctx);
        }
        self.want_block(parent, None, Some(from), ctx);
    }

    /// Fetches `digest` and its ancestors, from `from` if given; `qc`
    /// (certifying it) is applied once it comes.
    pub(super) fn want_block(
        &mut self,
        digest: Digest,
        qc: Option<QuorumCert>,
        from: Option<ReplicaId>,
        ctx: &mut Ctx<'_, '_>,
    ) {
        if let Some(qc) = qc
            && !self.sync.pending_qcs.contains(&qc)
        {
            // The highest few: the high QC's and the commit QC's blocks.
            if self.sync.pending_qcs.len() >= PENDING_QCS {
                self.sync.pending_qcs.sort_by_key(|p| p.view);
                self.sync.pending_qcs.remove(0);
            }
            self.sync.pending_qcs.push(qc);
        }
        if let Some((asked, _, at)) = self.sync.asked
            && asked == digest
            && ctx.now().since(at) < SYNC_RETRY
        {
            return;
        }
        let peer = from
            .filter(|&p| p != self.id)
            .unwrap_or_else(|| self.next_peer(self.sync.asked.map(|(_, p, _)| p)));
        self.fetch_from(digest, peer, ctx);
    }

    /// The peer after `last` (or after this replica), round robin.
    fn next_peer(&self, last: Option<ReplicaId>) -> ReplicaId {
        let n = self.config.n as u8;
        let mut p = last.unwrap_or(self.id).0;
        loop {
            p = (p + 1) % n;
            if p != self.id.0 || n == 1 {
                return ReplicaId(p);
            }
        }
    }

    fn fetch_from(&mut self, digest: Digest, peer: ReplicaId, ctx: &mut Ctx<'_, '_>) {
        let fetch = self.codec.sign(Fetch {
            replica: self.id,
            block: digest,
            count: FETCH_BLOCKS_MAX,
        });
        ctx.count("sync: fetch sent");
        ctx.send(
            Addr::Replica(peer),
            Outbound::Message(Box::new(Message::Fetch(fetch))),
        );
        self.sync.asked = Some((digest, peer, ctx.now()));
        if !self.sync.asked_lately.contains(&digest) {
            if self.sync.asked_lately.len() >= ASKED_LATELY {
                self.sync.asked_lately.pop_front();
            }
            self.sync.asked_lately.push_back(digest);
        }
        ctx.set_timer(ReplicaTimer::Sync, SYNC_RETRY);
    }

    /// A peer asks for a block and its ancestors: as many as it asked for
    /// and fit a datagram, child first.
    pub(super) fn on_fetch(&mut self, fetch: Fetch, ctx: &mut Ctx<'_, '_>) {
        if !self.sync.serve(fetch.replica, ctx.now()) {
            ctx.drop_message("fetch: answered one from this peer just now");
            return;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut digest = fetch.block;
        let count = fetch.count.min(FETCH_BLOCKS_MAX);
        while (out.len() as u64) < count {
            let Some(block) = self.blocks.get(&digest) else {
                break;
            };
            if block.height == 0 {
                break;
            }
            let size = block_size(block);
            if bytes + size > wire::MESSAGE_SIZE_MAX - 1024 {
                break;
            }
            bytes += size;
            out.push(block.clone());
            digest = block.parent();
        }
        if out.is_empty() {
            ctx.drop_message("fetch: block unknown here");
            return;
        }
        ctx.count_n("sync: blocks served", out.len() as u64);
        ctx.send(
            Addr::Replica(fetch.replica),
            Outbound::Message(Box::new(Message::Blocks(out))),
        );
    }

    /// Blocks a peer sent: if they are what this replica asked for (each
    /// the parent of the one before), they are delivered parent first.
    pub(super) fn on_blocks(&mut self, blocks: Vec<Block>, from: ReplicaId, ctx: &mut Ctx<'_, '_>) {
        let digests: Vec<Digest> = blocks.iter().map(Block::digest).collect();
        if blocks
            .windows(2)
            .zip(&digests[1..])
            .any(|(pair, d)| pair[0].parent() != *d)
        {
            ctx.drop_message("blocks: not a chain");
            return;
        }
        let first = digests[0];
        let asked = self.sync.asked_lately.contains(&first)
            || self.sync.waiting.iter().any(|(b, _)| b.parent() == first)
            || self.sync.orphans.values().any(|b| b.parent() == first)
            || self.sync.pending_qcs.iter().any(|qc| qc.block == first);
        if !asked {
            ctx.drop_message("blocks: not asked for");
            return;
        }
        if self.sync.orphans.len() + blocks.len() > ORPHANS_MAX {
            // Further behind than blocks are worth fetching.
            ctx.drop_message("blocks: too many waiting for their parents");
            self.start_transfer(ctx);
            return;
        }
        if self.sync.asked.is_some_and(|(d, _, _)| d == first) {
            self.sync.asked = None;
        }
        ctx.count_n("sync: blocks fetched", blocks.len() as u64);
        for (block, digest) in blocks.into_iter().zip(digests) {
            if block.height > self.committed.height && self.place(&digest).is_none() {
                self.sync.orphans.insert(digest, block);
            }
        }
        self.connect(Some(from), ctx);
    }

    /// Delivers every fetched block whose parent is known, parent first,
    /// then the proposals and the QC that waited for them; fetches further
    /// if a gap remains.
    fn connect(&mut self, from: Option<ReplicaId>, ctx: &mut Ctx<'_, '_>) {
        loop {
            let ready = self
                .sync
                .orphans
                .iter()
                .filter(|(_, b)| self.place(&b.parent()).is_some())
                .min_by_key(|(_, b)| b.height)
                .map(|(d, _)| *d);
            let Some(digest) = ready else {
                break;
            };
            let block = self.sync.orphans.remove(&digest).expect("found above");
            self.deliver(block, digest, ctx);
        }
        let committed = self.committed.height;
        self.sync.orphans.retain(|_, b| b.height > committed);
        let (ready, missing): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sync.pending_qcs)
            .into_iter()
            .partition(|qc| self.place(&qc.block).is_some());
        self.sync.pending_qcs = missing;
        for qc in ready {
            self.on_qc(qc, ctx);
        }
        let waiting = std::mem::take(&mut self.sync.waiting);
        for (block, authentic) in waiting {
            if self.place(&block.parent()).is_some() {
                let proposer = self.config.leader(block.view);
                self.resume_proposal(block, authentic, proposer, ctx);
            } else {
                self.sync.waiting.push_back((block, authentic));
            }
        }
        // So far behind that the others may have dropped the blocks
        // between: a checkpoint instead (blocks keep coming meanwhile).
        let top = self
            .sync
            .orphans
            .values()
            .chain(self.sync.waiting.iter().map(|(b, _)| b))
            .map(|b| b.height)
            .max();
        if top.is_some_and(|top| top > self.committed.height + COMMITTED_KEPT) {
            self.start_transfer(ctx);
        } else if self
            .sync
            .transfer
            .as_ref()
            .is_some_and(|t| t.target.is_none())
        {
            // Caught up by blocks before a checkpoint was agreed on.
            self.sync.transfer = None;
            ctx.count("state transfer: not needed any more");
        }
        // A gap left: fetch below the lowest block still waiting.
        let lowest = self
            .sync
            .orphans
            .values()
            .chain(self.sync.waiting.iter().map(|(b, _)| b))
            .min_by_key(|b| b.height)
            .map(|b| (b.parent(), b.height));
        if let Some((parent, height)) = lowest
            && height > self.committed.height + 1
        {
            self.want_block(parent, None, from, ctx);
        } else if let Some(qc) = self.sync.pending_qcs.iter().max_by_key(|qc| qc.view) {
            let block = qc.block;
            self.want_block(block, None, from, ctx);
        } else {
            self.sync.asked = None;
        }
    }

    /// The sync timer: ask another peer for what did not come.
    pub(super) fn on_sync_timer(&mut self, ctx: &mut Ctx<'_, '_>) {
        if let Some((digest, peer, at)) = self.sync.asked
            && ctx.now().since(at) >= SYNC_RETRY
        {
            ctx.count("sync: fetch retried");
            let next = self.next_peer(Some(peer));
            self.fetch_from(digest, next, ctx);
        }
        if self.sync.transfer.is_some() {
            self.request_chunks(true, ctx);
            ctx.set_timer(ReplicaTimer::Sync, SYNC_RETRY);
        }
    }

    // ---------------------------------------------------------------
    // Checkpoints and state transfer.

    /// The state a checkpoint holds: the application's snapshot (its length
    /// first) and the client table.
    fn encode_state(&self) -> Vec<u8> {
        let app = self.app.snapshot();
        let mut state = Vec::with_capacity(8 + app.len());
        state.extend_from_slice(&(app.len() as u64).to_le_bytes());
        state.extend_from_slice(&app);
        self.clients.encode(&mut state);
        state
    }

    /// Takes the application and the client table from a checkpoint's
    /// state; whether it was well formed (if not, nothing changed).
    pub(super) fn restore_state(&mut self, state: &[u8], ctx: &mut Ctx<'_, '_>) -> bool {
        let Some((app, mut rest)) = state
            .get(..8)
            .and_then(|len| usize::try_from(u64::from_le_bytes(len.try_into().ok()?)).ok())
            .and_then(|len| {
                Some((
                    state.get(8..8usize.checked_add(len)?)?,
                    state.get(8 + len..)?,
                ))
            })
        else {
            ctx.count("state: malformed");
            return false;
        };
        let Some(clients) = sessions::decode(&mut rest, self.config.client_table_max) else {
            ctx.count("state: malformed client table");
            return false;
        };
        self.app.restore(app);
        self.clients = clients;
        self.codec
            .auth()
            .repin_clients(self.clients.bindings().map(|(c, k)| (c, *k)));
        true
    }

    /// Snapshots the state after executing the committed block (a
    /// checkpoint height).
    pub(super) fn take_checkpoint(&mut self, ctx: &mut Ctx<'_, '_>) {
        let state = self.encode_state();
        if state.len() as u64 > STATE_SIZE_MAX {
            ctx.count("checkpoint: state larger than a transfer accepts");
        }
        let tree = StateTree::new(&state, STATE_CHUNK_MAX);
        let Anchor {
            digest,
            height,
            view,
        } = self.committed;
        // Durable, so that a restarted replica starts from it (with the
        // committed blocks since, `replica::block_key`).
        let record = encode_checkpoint(&self.committed, &state);
        if record.len() <= runtime::durable::VALUE_BYTES_MAX {
            ctx.persist(CHECKPOINT_KEY, record);
        } else {
            ctx.count("checkpoint: too large to keep durable");
        }
        if self.sync.checkpoints.len() >= CHECKPOINTS_KEPT {
            self.sync.checkpoints.pop_front();
        }
        self.sync.checkpoints.push_back(Snapshot {
            height,
            view,
            block: digest,
            state,
            tree,
        });
        ctx.count("checkpoint: taken");
    }

    /// Asks every peer for its latest checkpoint (once per transfer).
    pub(super) fn start_transfer(&mut self, ctx: &mut Ctx<'_, '_>) {
        if self.sync.transfer.is_some() {
            return;
        }
        let nonce = ctx.rng().next_u64();
        self.sync.transfer = Some(Transfer {
            nonce,
            offers: VoteSet::new(self.config.n),
            target: None,
            chunks: BTreeMap::new(),
            asked: BTreeMap::new(),
            not_ahead: 0,
        });
        ctx.count("state transfer: started");
        let query = self.codec.sign(QueryCheckpoint {
            replica: self.id,
            nonce,
        });
        ctx.send_to_replicas(Outbound::Message(Box::new(Message::QueryCheckpoint(query))));
        ctx.set_timer(ReplicaTimer::Sync, SYNC_RETRY);
    }

    pub(super) fn on_query_checkpoint(&mut self, query: QueryCheckpoint, ctx: &mut Ctx<'_, '_>) {
        if !self.sync.serve(query.replica, ctx.now()) {
            ctx.drop_message("query: answered one from this peer just now");
            return;
        }
        let offer = match self.sync.checkpoints.back() {
            Some(latest) => Checkpoint {
                replica: self.id,
                nonce: query.nonce,
                height: latest.height,
                view: latest.view,
                block: latest.block,
                state: latest.tree.digest(),
                size: latest.tree.size(),
            },
            None => {
                // Nothing to offer: the genesis block says so, and lets a
                // replica that asked without cause give up its transfer.
                ctx.count("query: no checkpoint yet");
                Checkpoint {
                    replica: self.id,
                    nonce: query.nonce,
                    height: 0,
                    view: 0,
                    block: Block::genesis().digest(),
                    state: Digest([0; 32]),
                    size: 0,
                }
            }
        };
        let offer = self.codec.sign(offer);
        ctx.send(
            Addr::Replica(query.replica),
            Outbound::Message(Box::new(Message::Checkpoint(offer))),
        );
    }

    /// A peer's checkpoint: with f + 1 alike above this replica's
    /// committed height, it is the transfer's target.
    pub(super) fn on_checkpoint(&mut self, c: Checkpoint, ctx: &mut Ctx<'_, '_>) {
        let committed = self.committed.height;
        let f = self.config.f;
        let Some(transfer) = &mut self.sync.transfer else {
            ctx.drop_message("checkpoint: no transfer under way");
            return;
        };
        if c.nonce != transfer.nonce {
            ctx.drop_message("checkpoint: answers another query");
            return;
        }
        if c.height <= committed || c.size > STATE_SIZE_MAX {
            ctx.drop_message("checkpoint: not ahead, or too large");
            if c.height <= committed && transfer.target.is_none() {
                // The codec checked the signature: the replica exists.
                transfer.not_ahead |= 1 << c.replica.0;
                if transfer.not_ahead.count_ones() as usize > f {
                    // One of them is correct and has no checkpoint above
                    // this replica's committed block: this replica is not
                    // so far behind that block sync cannot catch it up
                    // (what started the transfer was a Byzantine height).
                    self.sync.transfer = None;
                    ctx.count("state transfer: abandoned, nobody is ahead");
                    self.arm_view_timer(ctx);
                }
            }
            return;
        }
        let offer = Offer {
            height: c.height,
            view: c.view,
            block: c.block,
            state: c.state,
            size: c.size,
        };
        if transfer.offers.insert(c.replica, offer, ()).is_err() {
            ctx.drop_message("checkpoint: a second offer");
            return;
        }
        if !transfer.offers.reached(&offer, f + 1) {
            return;
        }
        if transfer
            .target
            .as_ref()
            .is_some_and(|(t, _)| t.height >= offer.height)
        {
            // Another offerer of the target: chunks may come from it too.
            if let Some((t, from)) = &mut transfer.target
                && *t == offer
                && !from.contains(&c.replica)
            {
                from.push(c.replica);
            }
            return;
        }
        let from = transfer.offers.matching(&offer).map(|(r, _)| r).collect();
        transfer.target = Some((offer, from));
        transfer.chunks.clear();
        transfer.asked.clear();
        self.request_chunks(false, ctx);
    }

    /// Asks for the target's missing chunks, [`TRANSFER_WINDOW`] at a time
    /// (again for those asked long ago, if `retry`).
    fn request_chunks(&mut self, retry: bool, ctx: &mut Ctx<'_, '_>) {
        let now = ctx.now();
        let me = self.id;
        let Some(transfer) = &mut self.sync.transfer else {
            return;
        };
        let Some((target, from)) = &transfer.target else {
            if retry {
                // No f + 1 alike yet: ask everyone again.
                let query = self.codec.sign(QueryCheckpoint {
                    replica: me,
                    nonce: transfer.nonce,
                });
                ctx.send_to_replicas(Outbound::Message(Box::new(Message::QueryCheckpoint(query))));
            }
            return;
        };
        let chunks = wire::merkle::chunk_count(target.size, STATE_CHUNK_MAX);
        if retry {
            transfer.asked.retain(|_, at| now.since(*at) < SYNC_RETRY);
        }
        let mut sends = Vec::new();
        for index in 0..chunks {
            if transfer.asked.len() >= TRANSFER_WINDOW as usize {
                break;
            }
            if transfer.chunks.contains_key(&index) || transfer.asked.contains_key(&index) {
                continue;
            }
            transfer.asked.insert(index, now);
            let peer = from[(index as usize + now.as_nanos() as usize) % from.len()];
            sends.push((peer, target.state, index));
        }
        for (peer, state, index) in sends {
            let fetch = self.codec.sign(FetchChunk {
                replica: me,
                state,
                index,
            });
            ctx.send(
                Addr::Replica(peer),
                Outbound::Message(Box::new(Message::FetchChunk(fetch))),
            );
        }
    }

    pub(super) fn on_fetch_chunk(&mut self, f: FetchChunk, ctx: &mut Ctx<'_, '_>) {
        let Some(snapshot) = self
            .sync
            .checkpoints
            .iter()
            .find(|s| s.tree.digest() == f.state)
        else {
            ctx.drop_message("fetch chunk: no such checkpoint here");
            return;
        };
        let (Some(data), Some(proof)) = (
            snapshot.tree.chunk(&snapshot.state, f.index),
            snapshot.tree.proof(f.index),
        ) else {
            ctx.drop_message("fetch chunk: no such chunk");
            return;
        };
        let chunk = Chunk {
            state: f.state,
            size: snapshot.tree.size(),
            index: f.index,
            data: data.to_vec(),
            proof,
        };
        ctx.send(
            Addr::Replica(f.replica),
            Outbound::Message(Box::new(Message::Chunk(chunk))),
        );
    }

    /// A chunk of the target (its Merkle path checked by the codec): once
    /// all are in, the state is installed.
    pub(super) fn on_chunk(&mut self, chunk: Chunk, _from: ReplicaId, ctx: &mut Ctx<'_, '_>) {
        let Some(transfer) = &mut self.sync.transfer else {
            ctx.drop_message("chunk: no transfer under way");
            return;
        };
        let Some((target, _)) = &transfer.target else {
            ctx.drop_message("chunk: no target yet");
            return;
        };
        if chunk.state != target.state || chunk.size != target.size {
            ctx.drop_message("chunk: of another state");
            return;
        }
        let target = *target;
        transfer.asked.remove(&chunk.index);
        transfer.chunks.insert(chunk.index, chunk.data);
        let chunks = wire::merkle::chunk_count(target.size, STATE_CHUNK_MAX);
        if (transfer.chunks.len() as u64) < chunks {
            self.request_chunks(false, ctx);
            return;
        }
        let transfer = self.sync.transfer.take().expect("checked above");
        let state: Vec<u8> = transfer.chunks.into_values().flatten().collect();
        self.install(target, &state, ctx);
    }

    /// Installs a checkpoint's state: the application and the client table
    /// as of its block, which becomes the committed one.
    fn install(&mut self, target: Offer, state: &[u8], ctx: &mut Ctx<'_, '_>) {
        if target.height <= self.committed.height {
            ctx.count("state transfer: overtaken");
            return;
        }
        if !self.restore_state(state, ctx) {
            return;
        }
        self.install_anchor(
            Anchor {
                digest: target.block,
                height: target.height,
                view: target.view,
            },
            ctx,
        );
        // The installed state is this replica's checkpoint too.
        self.take_checkpoint(ctx);
        ctx.count("snapshot: installed");
        ctx.note(|| format!("installed h{}", target.height));
        self.connect(None, ctx);
        self.arm_view_timer(ctx);
    }
}

/// Bytes a block takes on the wire, at most.
fn block_size(block: &Block) -> usize {
    let requests: usize = block
        .requests
        .iter()
        .map(|r| 72 + r.request.op.len() + r.auth.len() * size_of::<wire::Mac>())
        .sum();
    128 + block.justify.votes.len() * 72 + requests
}
