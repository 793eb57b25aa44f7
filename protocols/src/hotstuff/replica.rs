//! A HotStuff replica: the block tree, the vote, lock and commit rules
//! (Algorithm 4), execution, the pacemaker and the leader's proposals. Block
//! and state sync are in `sync.rs`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use runtime::durable::Stored;
use runtime::{Addr, ClientId, Context, ReplicaId, State};
use wire::auth::{AuthRequest, Reply};
use wire::client::Request;
use wire::hotstuff::{
    Block, Message, Proposal, Proposed, QuorumCert, SyncInfo, TimedOut, Timeout, TimeoutCert, View,
    Vote,
};
use wire::{Digest, Signature, Signed};

use super::codec::{Codec, Config, Inbound, Outbound};
use super::sync::Sync;
use super::{
    BLOCK_BYTES_MAX, BLOCKS_MAX, CHECKPOINT_INTERVAL, COMMITTED_KEPT, POOL_BYTES_MAX, POOL_MAX,
    REQUEST_OP_MAX, SILENT_LEADER_SHARE, STATUS_HEARTBEAT, VIEW_TIMEOUT_MAX, VIEWS_AHEAD, bugs,
};
use crate::app::{App, Position, Unexecuted};
use crate::common::sessions::{self, ClientTable};
use crate::common::{Admission, Refused, VoteSet};
use crate::planted;

pub(super) type Ctx<'a, 'b> = Context<'a, Outbound, ReplicaTimer>;

/// Session numbers: a registration executed at height h, position i opens
/// session h · STRIDE + i, different from every other.
const SESSION_STRIDE: u64 = 1 << 16;
const _: () = assert!(super::BLOCK_SIZE_MAX as u64 <= SESSION_STRIDE);

/// The durable keys: the last view voted in, and the locked block.
const VOTED_KEY: &[u8] = b"hotstuff voted";

/// The durable key of the latest checkpoint: its block's place, and its
/// state.
pub(super) const CHECKPOINT_KEY: &[u8] = b"hotstuff checkpoint";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaTimer {
    /// The view timer: the view's leader has not made progress in time.
    View,
    /// A leader with a partial block stops waiting for more requests.
    Batch,
    /// Blocks or state chunks asked for have not come: ask another peer.
    Sync,
    /// Tell the others this replica's highest QC ([`STATUS_HEARTBEAT`]).
    Heartbeat,
    /// A leader entering its view on a TC stops waiting for the QC of the
    /// view before last to form from the timeouts' votes.
    QcWait,
}

/// A block this replica knows the place of: its digest, height and view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Anchor {
    pub digest: Digest,
    pub height: u64,
    pub view: View,
}

/// A HotStuff replica.
pub struct Replica {
    pub(super) id: ReplicaId,
    pub(super) config: Arc<Config>,
    pub(super) codec: Arc<Codec>,
    pub(super) app: Box<dyn App>,
    pub(super) clients: ClientTable,

    // Safety, persisted before every vote.
    /// The latest view this replica voted in (the paper's vheight).
    last_voted: View,
    /// The locked block (b_lock).
    locked: Anchor,

    // The pacemaker.
    /// The view this replica is in: the one whose proposal it waits for.
    pub(super) view: View,
    /// The latest view this replica timed out in; it votes no more in it.
    timed_out: View,
    /// Views timed out in a row: the view timer doubles with each.
    backoff: u32,
    /// By replica: this replica timed out in a view it led and has heard
    /// nothing from it since (it may have crashed): its next view gets a
    /// shorter timer.
    silent: Vec<bool>,
    pub(super) high_qc: QuorumCert,
    /// The QC that made the latest commit here.
    commit_qc: QuorumCert,
    /// The TC for the view before this one, if the replica entered it so.
    last_tc: Option<TimeoutCert>,
    /// Votes for blocks of views this replica leads the next of.
    votes: BTreeMap<View, VoteSet<Digest, Signature>>,
    /// Each replica's latest timeout.
    timeouts: Vec<Option<TimedOut>>,
    /// The latest view this replica proposed in.
    proposed: View,
    /// Its latest vote: its timeout in the next view carries it.
    last_vote: Option<Signed<Vote>>,
    /// The batch delay ran out: propose a partial block.
    batch_waited: bool,
    /// The latest view whose leader waited for a QC from timeouts' votes.
    qc_waited: View,
    /// The view whose leader a client's next request should go to, as the
    /// replies of the blocks being executed tell it (see `on_qc`).
    next_proposer: View,

    // Blocks.
    pub(super) blocks: HashMap<Digest, Block>,
    /// The last committed (and executed) block (b_exec).
    pub(super) committed: Anchor,
    /// Committed blocks by height, at most [`COMMITTED_KEPT`] below the
    /// last: pruned from the store in order.
    committed_chain: VecDeque<(u64, Digest)>,

    pub(super) pool: Pool,
    pub(super) sync: Sync,
    /// Which block each slot of the durable ring holds.
    ring: Vec<Option<Digest>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("view", &self.view)
            .field("last_voted", &self.last_voted)
            .field("locked", &self.locked)
            .field("high_qc", &self.high_qc.view)
            .field("committed", &self.committed)
            .finish_non_exhaustive()
    }
}

/// The requests a replica holds and has not executed: the latest of each
/// client, oldest first. A leader proposes from it what the chain it
/// extends does not carry yet; a request leaves it when it executes, so a
/// request in a block that is never certified is proposed again.
#[derive(Debug, Default)]
pub(super) struct Pool {
    by_client: HashMap<ClientId, (u64, AuthRequest)>,
    /// Arrival number to client.
    order: BTreeMap<u64, ClientId>,
    next: u64,
    bytes: usize,
}

impl Pool {
    pub(super) fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_client.len()
    }

    /// Adds `request` unless the client has a later one here, or the pool
    /// is full; whether it was added.
    fn add(&mut self, request: AuthRequest) -> bool {
        let client = request.request.client_id;
        let size = request_size(&request);
        if let Some((_, held)) = self.by_client.get(&client)
            && (held.session, held.request.request_num)
                >= (request.session, request.request.request_num)
        {
            return false;
        }
        let replaced = self.by_client.contains_key(&client);
        if (!replaced && self.by_client.len() >= POOL_MAX) || self.bytes + size > POOL_BYTES_MAX {
            return false;
        }
        self.remove(client);
        self.next += 1;
        self.order.insert(self.next, client);
        self.bytes += size;
        self.by_client.insert(client, (self.next, request));
        true
    }

    fn remove(&mut self, client: ClientId) {
        if let Some((at, request)) = self.by_client.remove(&client) {
            self.order.remove(&at);
            self.bytes -= request_size(&request);
        }
    }

    /// The client's request `num` (or an earlier one) executed.
    fn settle(&mut self, client: ClientId, num: u64) {
        if self
            .by_client
            .get(&client)
            .is_some_and(|(_, r)| r.request.request_num <= num)
        {
            self.remove(client);
        }
    }

    /// Up to `max` requests (and [`BLOCK_BYTES_MAX`] bytes), oldest first,
    /// skipping those `skip` holds.
    fn take(&self, max: usize, skip: &HashSet<(ClientId, u64)>) -> Vec<AuthRequest> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for client in self.order.values() {
            if out.len() >= max {
                break;
            }
            let (_, request) = &self.by_client[client];
            if skip.contains(&(*client, request.request.request_num)) {
                continue;
            }
            let size = request_size(request);
            if bytes + size > BLOCK_BYTES_MAX {
                break;
            }
            bytes += size;
            out.push(request.clone());
        }
        out
    }
}

/// Bytes a request takes in a block, at most.
fn request_size(request: &AuthRequest) -> usize {
    72 + request.request.op.len() + request.auth.len() * size_of::<wire::Mac>()
}

impl Replica {
    /// Replica `id` of the group its codec knows, replicating `app`.
    pub fn new(id: ReplicaId, codec: Arc<Codec>, app: Box<dyn App>) -> Replica {
        let config = Arc::clone(codec.config());
        let n = config.n;
        let genesis = Block::genesis();
        let anchor = Anchor {
            digest: genesis.digest(),
            height: 0,
            view: 0,
        };
        let mut blocks = HashMap::new();
        blocks.insert(anchor.digest, genesis);
        Replica {
            id,
            clients: sessions::new(config.client_table_max),
            sync: Sync::new(config.n),
            config,
            codec,
            app,
            last_voted: 0,
            locked: anchor,
            view: 1,
            timed_out: 0,
            backoff: 0,
            silent: vec![false; n],
            high_qc: QuorumCert::genesis(),
            commit_qc: QuorumCert::genesis(),
            last_tc: None,
            votes: BTreeMap::new(),
            timeouts: vec![None; n],
            proposed: 0,
            last_vote: None,
            batch_waited: false,
            qc_waited: 0,
            next_proposer: 0,
            blocks,
            committed: anchor,
            committed_chain: VecDeque::from([(0, anchor.digest)]),
            pool: Pool::default(),
            ring: vec![None; BLOCK_RING as usize],
        }
    }

    /// The view this replica is in.
    pub fn view(&self) -> View {
        self.view
    }

    /// The latest view it voted in.
    pub fn last_voted(&self) -> View {
        self.last_voted
    }

    /// The height of the last block it executed.
    pub fn executed(&self) -> u64 {
        self.committed.height
    }

    /// The digest of the last block it executed.
    pub fn committed_block(&self) -> Digest {
        self.committed.digest
    }

    /// Blocks in its store.
    pub fn stored_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// The place of a block this replica knows: in the store, or the
    /// anchor of a checkpoint it installed.
    pub(super) fn place(&self, digest: &Digest) -> Option<Anchor> {
        if let Some(b) = self.blocks.get(digest) {
            return Some(Anchor {
                digest: *digest,
                height: b.height,
                view: b.view,
            });
        }
        (*digest == self.committed.digest).then_some(self.committed)
    }

    // ---------------------------------------------------------------
    // Blocks in, the rules applied.

    /// A proposal from the leader of its view (the codec checked it).
    fn on_proposal(
        &mut self,
        block: Block,
        digest: Digest,
        tc: Option<TimeoutCert>,
        authentic: bool,
        from: ReplicaId,
        ctx: &mut Ctx<'_, '_>,
    ) {
        debug_assert_eq!(digest, block.digest());
        if let Some(tc) = tc {
            self.on_tc(tc, ctx);
        }
        if block.height <= self.committed.height {
            ctx.drop_message("proposal: at or below the committed height");
            return;
        }
        if !self.blocks.contains_key(&digest) {
            match self.place(&block.parent()) {
                Some(_) => {
                    if !self.deliver(block, digest, ctx) {
                        return;
                    }
                }
                None => {
                    self.wait_for_parent(block, authentic, from, ctx);
                    return;
                }
            }
        }
        let block = &self.blocks[&digest];
        let candidate = Candidate {
            digest,
            view: block.view,
            height: block.height,
            justify: block.justify.view,
        };
        self.consider_vote(candidate, authentic, ctx);
    }

    /// Stores `block`, whose parent this replica knows, and applies its QC
    /// (lock, commit, high QC). Whether it was stored.
    pub(super) fn deliver(&mut self, block: Block, digest: Digest, ctx: &mut Ctx<'_, '_>) -> bool {
        debug_assert_eq!(digest, block.digest());
        let Some(parent) = self.place(&block.parent()) else {
            ctx.drop_message("block: parent unknown");
            return false;
        };
        if parent.view != block.justify.view {
            ctx.drop_message("block: QC of another view than its parent's");
            return false;
        }
        if parent.height.checked_add(1) != Some(block.height) || block.view <= parent.view {
            ctx.drop_message("block: height or view out of line with its parent");
            return false;
        }
        if block.height <= self.committed.height {
            ctx.drop_message("block: at or below the committed height");
            return false;
        }
        if self.blocks.len() >= BLOCKS_MAX {
            ctx.drop_message("block: store full");
            return false;
        }
        let justify = block.justify.clone();
        // Durable before this replica votes for it or for a child: a QC's
        // block survives a restart of every replica that voted for it.
        keep_durable(&mut self.ring, &block, digest, ctx);
        self.blocks.insert(digest, block);
        self.on_qc(justify, ctx);
        if let Some(qc) = self.sync.take_pending_qc(&digest) {
            self.on_qc(qc, ctx);
        }
        true
    }

    /// Algorithm 4's `update`: a QC for b'' (certifying b', certifying b)
    /// raises the high QC, locks b' (the two-chain), and commits b on a
    /// three-chain of direct parents. The QC was checked.
    pub(super) fn on_qc(&mut self, qc: QuorumCert, ctx: &mut Ctx<'_, '_>) {
        if qc.view > self.high_qc.view {
            if self.place(&qc.block).is_none() {
                // Its block is missing: fetch it before relying on the QC,
                // so the high QC's block is always in the store; the view
                // moves on meanwhile.
                let (view, block) = (qc.view, qc.block);
                self.want_block(block, Some(qc), None, ctx);
                self.enter(view.saturating_add(1), ctx);
                return;
            }
            self.high_qc = qc.clone();
            self.codec.settle_certified(qc.view);
            self.backoff = 0;
            self.enter(qc.view.saturating_add(1), ctx);
            // A leader that entered its view before it had the QC's block
            // proposes now.
            self.try_propose(ctx);
        }
        self.enter(qc.view.saturating_add(1), ctx);
        let Some(b2) = self.blocks.get(&qc.block) else {
            return;
        };
        let Some(b1) = self.place(&b2.parent()) else {
            return;
        };
        if b1.view > self.locked.view {
            self.locked = b1;
        }
        let b2_view = b2.view;
        if planted::is(bugs::TWO_CHAIN_COMMIT) && b2_view == b1.view + 1 {
            self.commit(b1, ctx);
            return;
        }
        let Some(b0) = self
            .blocks
            .get(&b1.digest)
            .and_then(|b| self.place(&b.parent()))
        else {
            return;
        };
        if b2_view == b1.view + 1 && b1.view == b0.view + 1 && b0.height > self.committed.height {
            // The replies tell the clients where to send next: this QC's
            // block gets a child from the next leader, and the leader after
            // proposes again (whatever its pool holds) if requests above
            // the committed block are still in flight; else the group
            // idles in that child's view. The child's own requests are not
            // known here, so this is a hint (a wrong one costs a forward).
            let moving = !b2.requests.is_empty()
                || self
                    .blocks
                    .get(&b1.digest)
                    .is_some_and(|b| !b.requests.is_empty());
            self.next_proposer = qc.view.saturating_add(2 + u64::from(moving));
            self.commit(b0, ctx);
            if qc.view > self.commit_qc.view {
                self.commit_qc = qc;
            }
        }
    }

    /// The paper's `safeNode` and the vote: a block in this replica's view,
    /// above the last view it voted in, that extends the locked block or
    /// carries a QC above the lock.
    fn consider_vote(&mut self, block: Candidate, authentic: bool, ctx: &mut Ctx<'_, '_>) {
        // A vote moves the replica to the next view, so the last-voted check
        // below only holds if a block of the view it left may get there:
        // the planted bug lets one through.
        let again = planted::is(bugs::NO_VIEW_CHECK) && block.view == self.last_voted;
        if block.view != self.view && !again {
            ctx.count("vote: not in the replica's view");
            return;
        }
        if block.view <= self.last_voted && !planted::is(bugs::NO_VIEW_CHECK) {
            ctx.drop_message("vote: voted in this view already");
            return;
        }
        let safe = self.extends(block.digest, block.height, &self.locked)
            || block.justify > self.locked.view;
        if !safe && !planted::is(bugs::NO_LOCK_CHECK) {
            ctx.drop_message("vote: conflicts with the lock");
            return;
        }
        if !authentic {
            ctx.drop_message("vote: a request in the block does not check");
            return;
        }
        let view = block.view;
        self.last_voted = view;
        // Durable before the vote leaves: a restarted replica neither votes
        // twice in a view nor forgets its lock.
        ctx.persist(VOTED_KEY, encode_voted(view, &self.locked, &self.high_qc));
        let vote = self.codec.sign_vote(Vote {
            view,
            block: block.digest,
            voter: self.id,
        });
        self.last_vote = Some(vote.clone());
        let next = self.config.leader(view + 1);
        if next == self.id {
            self.on_vote(vote, ctx);
        } else {
            ctx.send(
                Addr::Replica(next),
                Outbound::Message(Box::new(Message::Vote(vote))),
            );
        }
        self.enter(view + 1, ctx);
    }

    /// Whether the block `digest` at `height` descends from `ancestor` (or
    /// is it).
    pub(super) fn extends(&self, mut digest: Digest, mut height: u64, ancestor: &Anchor) -> bool {
        loop {
            if height == ancestor.height {
                return digest == ancestor.digest;
            }
            if height < ancestor.height {
                return false;
            }
            let Some(b) = self.blocks.get(&digest) else {
                return false;
            };
            digest = b.parent();
            height -= 1;
        }
    }

    /// Commits `block` and its uncommitted ancestors, and executes them in
    /// height order.
    fn commit(&mut self, block: Anchor, ctx: &mut Ctx<'_, '_>) {
        if block.height <= self.committed.height {
            return;
        }
        let mut chain = Vec::new();
        let mut digest = block.digest;
        while let Some(b) = self.blocks.get(&digest) {
            if b.height <= self.committed.height {
                break;
            }
            chain.push(digest);
            digest = b.parent();
        }
        if digest != self.committed.digest
            || chain.len() as u64 != block.height - self.committed.height
        {
            // Two committed blocks at one height: beyond f faults.
            ctx.count("commit: conflicts with the committed chain");
            return;
        }
        for digest in chain.into_iter().rev() {
            self.execute(digest, ctx);
        }
        self.prune(ctx);
    }

    /// Executes one committed block.
    fn execute(&mut self, digest: Digest, ctx: &mut Ctx<'_, '_>) {
        let block = &self.blocks[&digest];
        let (height, view) = (block.height, block.view);
        // Durable before any reply leaves: a client that saw f + 1 results
        // finds them again after every replica restarted.
        keep_durable(&mut self.ring, block, digest, ctx);
        ctx.persist(
            COMMITTED_KEY,
            encode_committed(&Anchor {
                digest,
                height,
                view,
            }),
        );
        // The block itself, so that replicas that committed different
        // blocks at one height disagree even if the blocks are empty.
        let name: [u8; 6] = digest.0[..6].try_into().expect("6 bytes");
        self.app.unexecuted_at(height, Unexecuted::Ordered(name));
        ctx.count("block: committed");
        // Taken out while they execute (executing touches no block), and
        // put back before anything else can look at the block.
        let block = self.blocks.get_mut(&digest).expect("looked up above");
        let requests = std::mem::take(&mut block.requests);
        for (index, request) in requests.iter().enumerate() {
            self.execute_request(height, view, index, request, ctx);
        }
        self.blocks
            .get_mut(&digest)
            .expect("looked up above")
            .requests = requests;
        self.committed = Anchor {
            digest,
            height,
            view,
        };
        self.committed_chain.push_back((height, digest));
        ctx.note(|| format!("executed h{height} v{view}"));
        if height.is_multiple_of(CHECKPOINT_INTERVAL) {
            self.take_checkpoint(ctx);
        }
    }

    /// One request through the client table: a registration opens a
    /// session, a new request of a live session executes, a duplicate is
    /// skipped, a request of an evicted session is told so. Every replica
    /// decides alike: they execute the same blocks in the same order.
    fn execute_request(
        &mut self,
        height: u64,
        view: View,
        index: usize,
        auth: &AuthRequest,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let &AuthRequest {
            session,
            request:
                Request {
                    client_id: client,
                    request_num: num,
                    ref op,
                },
            key,
            ..
        } = auth;
        self.pool.settle(client, num);
        let reply = |result| Reply {
            view: self.next_proposer.max(view),
            replica: self.id,
            client_id: client,
            request_num: num,
            result,
        };
        let outcome = if num == 0 {
            let number = height
                .saturating_mul(SESSION_STRIDE)
                .saturating_add(index as u64);
            match self.clients.register(client, key, number) {
                Some((number, evicted)) => {
                    let reply = reply(number.to_le_bytes().to_vec());
                    if let Some(evicted) = evicted {
                        self.forget_session(evicted, ctx);
                    }
                    self.codec.auth().pin_client(client, key);
                    ctx.send(Addr::Client(client), Outbound::Reply(reply));
                    "registered"
                }
                None => {
                    ctx.count("execute: registration under another key skipped");
                    "other key"
                }
            }
        } else {
            match self.clients.admit(client, &key, session, num) {
                Admission::Execute => {
                    let at = Position {
                        slot: height,
                        client,
                        request_num: num,
                    };
                    let result = self.app.execute_at(at, op);
                    ctx.send(Addr::Client(client), Outbound::Reply(reply(result.clone())));
                    for evicted in self.clients.record(client, num, result) {
                        self.forget_session(evicted, ctx);
                    }
                    ""
                }
                Admission::Duplicate(_) | Admission::Stale => {
                    ctx.count("execute: duplicate request skipped");
                    "duplicate"
                }
                Admission::OtherBinding => {
                    ctx.count("execute: request under another key skipped");
                    "other key"
                }
                Admission::Unknown => {
                    ctx.count("execute: session evicted");
                    ctx.send(Addr::Client(client), Outbound::Evicted(reply(Vec::new())));
                    "evicted"
                }
            }
        };
        if !outcome.is_empty() {
            let what = Unexecuted::Request {
                client,
                request_num: num,
                outcome,
            };
            self.app.unexecuted_at(height, what);
        }
    }

    fn forget_session(&mut self, client: ClientId, ctx: &mut Ctx<'_, '_>) {
        ctx.count("client table: session evicted");
        self.pool.remove(client);
        self.codec.auth().unpin_client(client);
    }

    /// Drops committed blocks more than [`COMMITTED_KEPT`] below the last,
    /// and blocks that can no longer be committed (at or below the
    /// committed height off the committed chain, or above it on a branch
    /// that does not descend from it).
    fn prune(&mut self, ctx: &mut Ctx<'_, '_>) {
        let keep_from = self.committed.height.saturating_sub(COMMITTED_KEPT);
        while let Some(&(height, digest)) = self.committed_chain.front() {
            if height >= keep_from {
                break;
            }
            self.committed_chain.pop_front();
            self.blocks.remove(&digest);
        }
        let on_chain: HashSet<Digest> = self.committed_chain.iter().map(|(_, d)| *d).collect();
        let committed = self.committed;
        let mut descends: HashMap<Digest, bool> = HashMap::new();
        let mut heights: Vec<(u64, Digest)> =
            self.blocks.iter().map(|(d, b)| (b.height, *d)).collect();
        heights.sort_unstable();
        let mut dropped = 0;
        for (height, digest) in heights {
            let keep = if height <= committed.height {
                on_chain.contains(&digest)
            } else {
                let parent = self.blocks[&digest].parent();
                let ok = if height == committed.height + 1 {
                    parent == committed.digest
                } else {
                    descends.get(&parent).copied().unwrap_or(false)
                };
                descends.insert(digest, ok);
                ok
            };
            if !keep {
                self.blocks.remove(&digest);
                dropped += 1;
            }
        }
        if dropped > 0 {
            ctx.count_n("block: pruned off the committed chain", dropped);
        }
        self.sync.prune(committed.height);
    }

    /// After a restart: the last durable checkpoint's state, then the
    /// committed blocks above it, executed again in order.
    fn restore_committed(&mut self, stored: &Stored, ctx: &mut Ctx<'_, '_>) {
        if let Some((anchor, state)) = stored.get(CHECKPOINT_KEY).and_then(decode_checkpoint)
            && self.restore_state(state, ctx)
        {
            self.install_anchor(anchor, ctx);
            self.take_checkpoint(ctx);
            ctx.count("recover: checkpoint restored");
        }
        let committed = stored.get(COMMITTED_KEY).and_then(decode_committed);
        let mut parent = self.committed.digest;
        for height in self.committed.height + 1..self.committed.height + BLOCK_RING {
            let Some(block) = stored
                .get(&block_key(height))
                .and_then(|bytes| wire::decode::<Block>(bytes).ok())
            else {
                break;
            };
            if block.height != height || block.parent() != parent {
                break;
            }
            let digest = block.digest();
            parent = digest;
            self.ring[(height % BLOCK_RING) as usize] = Some(digest);
            self.blocks.insert(digest, block);
            if committed.is_some_and(|(h, _)| height <= h) {
                self.execute(digest, ctx);
                ctx.count("recover: committed block executed again");
            } else {
                ctx.count("recover: uncommitted block restored");
            }
        }
        self.prune(ctx);
    }

    /// A proposal that waited for its ancestors, which came.
    pub(super) fn resume_proposal(
        &mut self,
        block: Block,
        authentic: bool,
        from: ReplicaId,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let digest = block.digest();
        self.on_proposal(block, digest, None, authentic, from, ctx);
    }

    /// A checkpoint's block becomes the committed one: what is at or below
    /// it goes.
    pub(super) fn install_anchor(&mut self, anchor: Anchor, ctx: &mut Ctx<'_, '_>) {
        self.committed = anchor;
        self.committed_chain = VecDeque::from([(anchor.height, anchor.digest)]);
        self.blocks.retain(|_, b| b.height > anchor.height);
        self.prune(ctx);
    }

    // ---------------------------------------------------------------
    // The leader: votes in, QCs formed, blocks proposed.

    /// A vote for a block of `view`, to this replica as the leader of
    /// `view + 1`.
    fn on_vote(&mut self, vote: Signed<Vote>, ctx: &mut Ctx<'_, '_>) {
        let view = vote.payload.view;
        if self.config.leader(view.saturating_add(1)) != self.id {
            ctx.drop_message("vote: not the next view's leader");
            return;
        }
        self.collect_vote(vote, ctx);
    }

    /// Counts a vote toward its view's QC: as the next view's leader, or
    /// from a timeout (whoever gets a quorum of them forms the QC the
    /// failed leader did not pass on).
    fn collect_vote(&mut self, vote: Signed<Vote>, ctx: &mut Ctx<'_, '_>) {
        let Vote { view, block, voter } = vote.payload;
        if view <= self.high_qc.view {
            ctx.drop_message("vote: for a view certified already");
            return;
        }
        if view > self.view.saturating_add(VIEWS_AHEAD) {
            ctx.drop_message("vote: too far ahead");
            return;
        }
        let n = self.config.n;
        let votes = self.votes.entry(view).or_insert_with(|| VoteSet::new(n));
        match votes.insert(voter, block, vote.signature) {
            Ok(_) => {}
            Err(Refused::NotAVoter) => return ctx.drop_message("vote: no such replica"),
            Err(Refused::Duplicate) => return ctx.drop_message("vote: duplicate"),
            Err(Refused::Conflicting) => return ctx.drop_message("vote: a second block"),
        }
        let quorum = self.config.quorum();
        let Some(mut certificate) = votes.certificate(&block, quorum) else {
            // Votes split between blocks (the leader of `view` proposed
            // several) so that no QC can form: as the leader of the next
            // view, this replica cannot propose on a QC, and the others,
            // who voted, will not time out in `view`. It times out in
            // `view` itself, and asks them to (see `on_timeout`): a TC
            // for `view` lets it propose in its own view, which otherwise
            // would be lost too (with n = 4 and round robin, the leader
            // after an equivocating one is then always lost, and no three
            // correct leaders in a row are left to commit).
            let best = votes
                .iter()
                .map(|(_, b, _)| votes.count(b))
                .max()
                .unwrap_or(0);
            let split = best + (n - votes.len()) < quorum;
            if split
                && self.config.leader(view.saturating_add(1)) == self.id
                && self.view == view.saturating_add(1)
                && self.proposed < self.view
                && self.timed_out < view
            {
                ctx.count("vote: split, no QC can form");
                ctx.count(wire::control::VIEW_CHANGES_COUNTER);
                self.time_out(view, ctx);
            }
            return;
        };
        certificate.sort_by_key(|(voter, _)| *voter);
        let qc = QuorumCert {
            view,
            block,
            votes: certificate,
        };
        self.votes = self.votes.split_off(&(view + 1));
        ctx.note(|| format!("qc v{view}"));
        self.on_qc(qc, ctx);
        self.try_propose(ctx);
    }

    /// Whether a block with requests is uncommitted in the chain of the
    /// high QC, or among its last three blocks (whose QCs the others still
    /// need to commit it): leaders keep proposing, with empty blocks if
    /// they must, until it commits everywhere.
    fn chain_has_requests(&self) -> bool {
        self.requests_in_flight(self.high_qc.block)
    }

    /// Whether a leader with the QC for block `digest` proposes even with
    /// an empty pool: a block with requests among it and its ancestors may
    /// be uncommitted somewhere (see `chain_has_requests`).
    fn requests_in_flight(&self, mut digest: Digest) -> bool {
        let mut depth = 0;
        while let Some(b) = self.blocks.get(&digest) {
            if b.height <= self.committed.height && depth >= 3 {
                return false;
            }
            if !b.requests.is_empty() {
                return true;
            }
            if b.height == 0 {
                return false;
            }
            digest = b.parent();
            depth += 1;
        }
        false
    }

    /// Whether there is work for the group: requests held, or in a block
    /// not yet committed everywhere. The view timer runs only then.
    fn pending(&self) -> bool {
        !self.pool.is_empty() || self.chain_has_requests()
    }

    /// The requests in the uncommitted chain of the high QC's block.
    fn in_chain(&self) -> HashSet<(ClientId, u64)> {
        let mut out = HashSet::new();
        let mut digest = self.high_qc.block;
        while let Some(b) = self.blocks.get(&digest) {
            if b.height <= self.committed.height {
                break;
            }
            for r in &b.requests {
                out.insert((r.request.client_id, r.request.request_num));
            }
            digest = b.parent();
        }
        out
    }

    /// The leader of this view proposes, if it can and there is work: at
    /// once when its block is full or nothing is in flight, otherwise after
    /// the batch delay (see the module docs).
    pub(super) fn try_propose(&mut self, ctx: &mut Ctx<'_, '_>) {
        let view = self.view;
        if self.config.leader(view) != self.id || self.proposed >= view {
            return;
        }
        let by_qc = self.high_qc.view + 1 == view;
        let tc = match &self.last_tc {
            Some(tc) if !by_qc && tc.view + 1 == view => Some(tc.clone()),
            _ if by_qc => None,
            _ => return,
        };
        // On a TC for view w, the QC of view w − 1 may still be forming
        // from the votes the timeouts carry (its leader, w's, failed): a
        // TC can be complete a moment before the last of those timeouts
        // comes, and proposing on an older QC would abandon w − 1's block.
        // Wait for it a little, once per view.
        let wanted = view.saturating_sub(2);
        if tc.is_some()
            && self.high_qc.view < wanted
            && self.votes.get(&wanted).is_some_and(|v| !v.is_empty())
            && self.qc_waited < view
        {
            if !ctx.timer_is_set(ReplicaTimer::QcWait) {
                ctx.set_timer(ReplicaTimer::QcWait, self.config.view_timeout / 4);
            }
            return;
        }
        let Some(parent) = self.place(&self.high_qc.block) else {
            return;
        };
        let in_flight = self.chain_has_requests();
        let skip = self.in_chain();
        let requests = self.pool.take(self.config.block_max, &skip);
        if requests.is_empty() && !in_flight {
            return;
        }
        let full = requests.len() >= self.config.block_max;
        if !full && in_flight && !requests.is_empty() && !self.config.batch_delay.is_zero() {
            if !ctx.timer_is_set(ReplicaTimer::Batch) {
                ctx.set_timer(ReplicaTimer::Batch, self.config.batch_delay);
            }
            if !self.batch_waited {
                return;
            }
        }
        self.batch_waited = false;
        ctx.cancel_timer(ReplicaTimer::Batch);
        let block = Block {
            view,
            height: parent.height + 1,
            justify: self.high_qc.clone(),
            requests,
        };
        let digest = block.digest();
        let header = Proposed {
            view,
            block: digest,
            leader: self.id,
        };
        let auth = self.codec.authenticate_proposal(&header);
        self.proposed = view;
        if !block.requests.is_empty() {
            ctx.count(wire::control::BATCHES_COUNTER);
            ctx.count_n(
                wire::control::REQUESTS_BATCHED_COUNTER,
                block.requests.len() as u64,
            );
        }
        ctx.note(|| {
            format!(
                "propose v{view} h{} {} requests",
                block.height,
                block.requests.len()
            )
        });
        let proposal = Proposal {
            header,
            auth,
            block,
            tc,
        };
        ctx.send_to_replicas(Outbound::Message(Box::new(Message::Proposal(
            proposal.clone(),
        ))));
        self.on_proposal(proposal.block, digest, proposal.tc, true, self.id, ctx);
    }

    // ---------------------------------------------------------------
    // The pacemaker.

    /// Enters `view` if it is later than this replica's: the view timer
    /// starts again.
    fn enter(&mut self, view: View, ctx: &mut Ctx<'_, '_>) {
        if view <= self.view {
            return;
        }
        self.view = view;
        self.codec.settle_view(view);
        // Votes of the view before last still count: timeouts in the view
        // before carry them (see `try_propose`).
        self.votes.retain(|&v, _| v.saturating_add(2) >= view);
        if self.last_tc.as_ref().is_some_and(|tc| tc.view + 1 < view) {
            self.last_tc = None;
        }
        ctx.cancel_timer(ReplicaTimer::View);
        self.arm_view_timer(ctx);
        self.try_propose(ctx);
    }

    /// The view timer: `view_timeout`, doubled for each view timed out in a
    /// row; and what a timeout waits before it is sent again.
    fn view_timeout(&self) -> Duration {
        let doubled = self
            .config
            .view_timeout
            .saturating_mul(1u32 << self.backoff.min(16));
        doubled.min(VIEW_TIMEOUT_MAX.max(self.config.view_timeout))
    }

    /// Whether the leader of this replica's view has been silent since a
    /// view of its timed out here.
    fn leader_silent(&self) -> bool {
        let leader = self.config.leader(self.view);
        self.silent[usize::from(leader.0)]
    }

    /// Runs the view timer if there is work pending and it is not running.
    pub(super) fn arm_view_timer(&mut self, ctx: &mut Ctx<'_, '_>) {
        if self.pending() && !ctx.timer_is_set(ReplicaTimer::View) {
            // `SILENT_LEADER_SHARE` of it for a view whose leader has
            // been silent since its last view timed out here; a timeout
            // already sent is sent again at the usual pace.
            let timer = if self.leader_silent() {
                ctx.count("view: its leader silent, a shorter timer");
                self.view_timeout() / SILENT_LEADER_SHARE
            } else {
                self.view_timeout()
            };
            ctx.set_timer(ReplicaTimer::View, timer);
        }
    }

    /// The view timer fired: time out in this view (again, if the TC has not
    /// formed: the timeout is resent).
    fn on_view_timer(&mut self, ctx: &mut Ctx<'_, '_>) {
        if !self.pending() {
            return;
        }
        if self.timed_out < self.view {
            self.backoff = self.backoff.saturating_add(1);
            ctx.count(wire::control::VIEW_CHANGES_COUNTER);
            let leader = self.config.leader(self.view);
            if leader != self.id {
                self.silent[usize::from(leader.0)] = true;
            }
        }
        self.time_out(self.view, ctx);
        ctx.set_timer(ReplicaTimer::View, self.view_timeout());
    }

    /// Times out in `view`: multicasts a signed timeout with the high QC.
    fn time_out(&mut self, view: View, ctx: &mut Ctx<'_, '_>) {
        self.timed_out = self.timed_out.max(view);
        let timeout = self.codec.sign(Timeout {
            view,
            high_qc_view: self.high_qc.view,
            replica: self.id,
        });
        ctx.note(|| format!("timeout v{view}"));
        let vote = self
            .last_vote
            .clone()
            .filter(|v| v.payload.view.saturating_add(1) == view);
        ctx.send_to_replicas(Outbound::Message(Box::new(Message::Timeout(
            timeout.clone(),
            self.high_qc.clone(),
            vote.clone(),
        ))));
        if let Some(vote) = vote {
            self.collect_vote(vote, ctx);
        }
        self.count_timeout(timeout, ctx);
    }

    /// A timeout from a peer: its QC applied, counted toward a TC; f + 1 of
    /// them for a view at or above this one make this replica time out in
    /// it too.
    fn on_timeout(
        &mut self,
        timeout: Signed<Timeout>,
        qc: QuorumCert,
        vote: Option<Signed<Vote>>,
        ctx: &mut Ctx<'_, '_>,
    ) {
        let (view, from) = (timeout.payload.view, timeout.payload.replica);
        self.on_qc(qc, ctx);
        if let Some(vote) = vote {
            self.collect_vote(vote, ctx);
        }
        self.count_timeout(timeout, ctx);
        // The leader of this view timed out in the one before, after this
        // replica voted there: that view's votes split (see
        // `collect_vote`), and a TC for it lets that leader propose. This
        // replica gives up only on the view it left, once.
        if view.saturating_add(1) == self.view
            && from == self.config.leader(self.view)
            && self.timed_out < view
        {
            ctx.count("timeout: the leader's, for the view before");
            self.time_out(view, ctx);
        }
    }

    /// Keeps a replica's latest timeout. A replica that timed out in view w
    /// has given up on every view up to w (it voted in the views before, or
    /// timed out in them), so its timeout counts toward a TC for any view
    /// up to w: the replicas need not time out in the same view to move on
    /// together. With f + 1 timeouts at or above some view w at or above its
    /// own (one of them is correct), a replica times out in w too; with a
    /// quorum at or above w, they form a TC for w.
    fn count_timeout(&mut self, timeout: Signed<Timeout>, ctx: &mut Ctx<'_, '_>) {
        let Timeout {
            view,
            high_qc_view,
            replica,
        } = timeout.payload;
        let Some(slot) = self.timeouts.get_mut(usize::from(replica.0)) else {
            ctx.drop_message("timeout: no such replica");
            return;
        };
        if slot.is_some_and(|t| t.view >= view) {
            ctx.drop_message("timeout: duplicate");
            return;
        }
        *slot = Some(TimedOut {
            replica,
            view,
            high_qc_view,
            signature: timeout.signature,
        });
        let mut latest: Vec<TimedOut> = self.timeouts.iter().flatten().copied().collect();
        latest.sort_unstable_by_key(|t| std::cmp::Reverse(t.view));
        let (f, quorum) = (self.config.f, self.config.quorum());
        if let Some(join) = latest.get(f).map(|t| t.view)
            && join >= self.view
            && self.timed_out < join
        {
            // One of them is correct: the views up to `join` are lost.
            self.enter(join, ctx);
            self.time_out(join, ctx);
            return;
        }
        // A TC for the view just left still counts: its leader's successor
        // proposes on it when that view's votes split (see `collect_vote`).
        if let Some(tc_view) = latest.get(quorum - 1).map(|t| t.view)
            && tc_view.saturating_add(1) >= self.view
        {
            let mut timeouts: Vec<TimedOut> = latest
                .into_iter()
                .filter(|t| t.view >= tc_view)
                .take(quorum)
                .collect();
            timeouts.sort_by_key(|t| t.replica);
            self.on_tc(
                TimeoutCert {
                    view: tc_view,
                    timeouts,
                },
                ctx,
            );
        }
    }

    /// A TC for a view at or above this one: enter the next.
    fn on_tc(&mut self, tc: TimeoutCert, ctx: &mut Ctx<'_, '_>) {
        let next = tc.view.saturating_add(1);
        if next < self.view {
            return;
        }
        if next == self.view {
            // The view just left timed out after this replica voted in it
            // (its votes split): the leader of this one may propose on it.
            if self.last_tc.as_ref().is_some_and(|t| t.view >= tc.view) {
                return;
            }
            ctx.note(|| format!("tc v{}", tc.view));
            self.last_tc = Some(tc);
            self.try_propose(ctx);
            return;
        }
        ctx.note(|| format!("tc v{}", tc.view));
        self.last_tc = Some(tc);
        self.enter(next, ctx);
    }

    /// A client's request (its MAC checked): answered from the client table
    /// if it executed, else held in the pool.
    fn on_request(&mut self, auth: AuthRequest, direct: bool, ctx: &mut Ctx<'_, '_>) {
        let request = &auth.request;
        let client = request.client_id;
        if request.op.len() > REQUEST_OP_MAX {
            ctx.drop_message("request: operation too large");
            return;
        }
        if request.request_num == 0 {
            if auth.session != 0 || !request.op.is_empty() {
                ctx.drop_message("request: malformed registration");
                return;
            }
            if let Some(entry) = self.clients.get(client) {
                if entry.binding != auth.key {
                    ctx.drop_message("request: client has a session under another key");
                    return;
                }
                ctx.count("request: registration answered again");
                let reply = self.reply(client, 0, entry.session.to_le_bytes().to_vec());
                ctx.send(Addr::Client(client), reply);
                return;
            }
        } else {
            match self
                .clients
                .admit(client, &auth.key, auth.session, request.request_num)
            {
                Admission::OtherBinding => {
                    ctx.drop_message("request: client has a session under another key");
                    return;
                }
                Admission::Stale => {
                    ctx.drop_message("request: older than the latest");
                    return;
                }
                Admission::Duplicate(result) => {
                    ctx.count("request: resent reply");
                    let reply = self.reply(client, request.request_num, result.to_vec());
                    ctx.send(Addr::Client(client), reply);
                    return;
                }
                Admission::Execute | Admission::Unknown => {}
            }
        }
        // A client sends to the leader it expects; one that guessed wrong
        // (or retransmits to every replica) reaches a replica that does not
        // lead this view, which passes the request on to the one that does.
        // The request stays in its pool too, in case that leader fails.
        let forward = self.forward_to().filter(|_| direct).map(|leader| {
            (
                leader,
                Outbound::Message(Box::new(Message::Forward(auth.clone()))),
            )
        });
        if !self.pool.add(auth) {
            ctx.drop_message("request: held already, or the pool is full");
            return;
        }
        if let Some((leader, forward)) = forward {
            ctx.count("request: forwarded to the leader");
            ctx.send(Addr::Replica(leader), forward);
        }
        self.arm_view_timer(ctx);
        self.try_propose(ctx);
    }

    /// Where a request that came to this replica goes on to: `None` if
    /// this replica proposes next. The leader of this view has not
    /// proposed as far as this replica knows (it enters the next view as
    /// it votes), so it gets the request, unless the group is moving on
    /// (the leader of this view proposes once the QC for the block this
    /// replica voted for forms, whatever its pool holds): then the leader
    /// of the next view does.
    fn forward_to(&self) -> Option<ReplicaId> {
        let leader = self.config.leader(self.view);
        if leader == self.id {
            return None;
        }
        let moving = self.last_vote.as_ref().is_some_and(|vote| {
            vote.payload.view.saturating_add(1) == self.view
                && self.requests_in_flight(vote.payload.block)
        });
        if !moving {
            return Some(leader);
        }
        let next = self.config.leader(self.view.saturating_add(1));
        (next != self.id).then_some(next)
    }

    /// This replica's highest QC and its TC, for a replica behind.
    fn sync_info(&self) -> Outbound {
        Outbound::Message(Box::new(Message::SyncInfo(SyncInfo {
            high_qc: self.high_qc.clone(),
            commit_qc: self.commit_qc.clone(),
            tc: self.last_tc.clone(),
        })))
    }

    fn reply(&self, client_id: ClientId, request_num: u64, result: Vec<u8>) -> Outbound {
        Outbound::Reply(Reply {
            view: self.view,
            replica: self.id,
            client_id,
            request_num,
            result,
        })
    }
}

/// Persists `block` in its height's slot of the durable `ring` (which
/// block each slot holds), unless it is there already.
fn keep_durable(ring: &mut [Option<Digest>], block: &Block, digest: Digest, ctx: &mut Ctx<'_, '_>) {
    let slot = &mut ring[(block.height % BLOCK_RING) as usize];
    if *slot == Some(digest) {
        return;
    }
    if let Ok(bytes) = wire::codec::encode_to_vec(block) {
        ctx.persist(block_key(block.height), bytes);
        *slot = Some(digest);
    }
}

/// What the vote rule looks at in a stored block.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    digest: Digest,
    view: View,
    height: u64,
    /// The view of its QC.
    justify: View,
}

/// Where committed block `height` is kept: a ring that holds the blocks
/// since the last checkpoint.
pub(super) fn block_key(height: u64) -> Vec<u8> {
    format!("hotstuff block {}", height % BLOCK_RING).into_bytes()
}

/// Blocks kept durable, by height: the committed ones since the last
/// checkpoint, and the few above.
const BLOCK_RING: u64 = 2 * CHECKPOINT_INTERVAL;

/// The durable key of the last commit.
const COMMITTED_KEY: &[u8] = b"hotstuff committed";

/// The durable record of a vote: the view, the locked block, and the high
/// QC (whose block is in the ring, [`block_key`]), so that replicas that
/// all restart still hold the QCs their locks need a proposal to carry.
fn encode_voted(view: View, locked: &Anchor, high_qc: &QuorumCert) -> Vec<u8> {
    let mut out = Vec::with_capacity(56 + 32 + high_qc.votes.len() * 72);
    out.extend_from_slice(&view.to_le_bytes());
    out.extend_from_slice(&locked.height.to_le_bytes());
    out.extend_from_slice(&locked.view.to_le_bytes());
    out.extend_from_slice(&locked.digest.0);
    if let Ok(qc) = wire::codec::encode_to_vec(high_qc) {
        out.extend_from_slice(&qc);
    }
    out
}

/// The durable record of a checkpoint: its block's height, view and
/// digest, then the state.
pub(super) fn encode_checkpoint(anchor: &Anchor, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + state.len());
    out.extend_from_slice(&anchor.height.to_le_bytes());
    out.extend_from_slice(&anchor.view.to_le_bytes());
    out.extend_from_slice(&anchor.digest.0);
    out.extend_from_slice(state);
    out
}

fn decode_checkpoint(bytes: &[u8]) -> Option<(Anchor, &[u8])> {
    let word = |i: usize| Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?));
    let digest: [u8; 32] = bytes.get(16..48)?.try_into().ok()?;
    let anchor = Anchor {
        height: word(0)?,
        view: word(8)?,
        digest: Digest(digest),
    };
    Some((anchor, bytes.get(48..)?))
}

fn decode_voted(bytes: &[u8]) -> Option<(View, Anchor, Option<QuorumCert>)> {
    let word = |i: usize| Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?));
    let digest: [u8; 32] = bytes.get(24..56)?.try_into().ok()?;
    let high_qc = bytes
        .get(56..)
        .and_then(|qc| wire::decode::<QuorumCert>(qc).ok());
    Some((
        word(0)?,
        Anchor {
            height: word(8)?,
            view: word(16)?,
            digest: Digest(digest),
        },
        high_qc,
    ))
}

/// The durable record of the last commit: its block's height and digest.
fn encode_committed(anchor: &Anchor) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    out.extend_from_slice(&anchor.height.to_le_bytes());
    out.extend_from_slice(&anchor.digest.0);
    out
}

fn decode_committed(bytes: &[u8]) -> Option<(u64, Digest)> {
    let height = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    let digest: [u8; 32] = bytes.get(8..40)?.try_into().ok()?;
    Some((height, Digest(digest)))
}

impl State for Replica {
    type Message = Inbound;
    type Outbound = Outbound;
    type Timer = ReplicaTimer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Ctx<'_, '_>) {
        self.codec.settle_view(self.view);
        ctx.set_timer(ReplicaTimer::Heartbeat, STATUS_HEARTBEAT);
    }

    /// A restart with the durable record: the last view voted in and the
    /// lock come back; blocks and state come from the others (`sync.rs`).
    fn on_recover(&mut self, stored: &Stored, ctx: &mut Ctx<'_, '_>) {
        self.restore_committed(stored, ctx);
        match stored.get(VOTED_KEY).and_then(decode_voted) {
            Some((voted, locked, high_qc)) => {
                self.last_voted = voted;
                self.locked = locked;
                self.view = voted + 1;
                if let Some(qc) = high_qc
                    && crate::hotstuff::check_qc(&self.config, &qc).is_ok()
                {
                    self.on_qc(qc, ctx);
                }
                ctx.count("recover: vote record restored");
            }
            None => ctx.count("recover: no vote record"),
        }
        self.on_start(ctx);
    }

    fn on_message(&mut self, from: Addr, msg: Inbound, ctx: &mut Ctx<'_, '_>) {
        if let Addr::Replica(peer) = from
            && let Some(silent) = self.silent.get_mut(usize::from(peer.0))
        {
            *silent = false;
        }
        match (msg, from) {
            (Inbound::Request(request), Addr::Client(_)) => self.on_request(request, true, ctx),
            (Inbound::Request(request), Addr::Replica(_)) => self.on_request(request, false, ctx),
            (
                Inbound::Proposal {
                    block,
                    digest,
                    tc,
                    authentic,
                },
                Addr::Replica(from),
            ) => self.on_proposal(block, digest, tc, authentic, from, ctx),
            (Inbound::Vote(vote), Addr::Replica(_)) => self.on_vote(vote, ctx),
            (Inbound::Timeout(timeout, qc, vote), Addr::Replica(_)) => {
                self.on_timeout(timeout, qc, vote, ctx)
            }
            (Inbound::Behind, Addr::Replica(peer)) => {
                if self.sync.help(peer, ctx.now()) {
                    ctx.count("sync: told a replica behind");
                    ctx.send(Addr::Replica(peer), self.sync_info());
                }
            }
            (Inbound::SyncInfo(info), Addr::Replica(_)) => {
                if let Some(tc) = info.tc {
                    self.on_tc(tc, ctx);
                }
                if info.commit_qc.view > self.commit_qc.view {
                    if self.place(&info.commit_qc.block).is_some() {
                        self.on_qc(info.commit_qc, ctx);
                    } else {
                        let block = info.commit_qc.block;
                        self.want_block(block, Some(info.commit_qc), None, ctx);
                    }
                }
                self.on_qc(info.high_qc, ctx);
            }
            (Inbound::Fetch(fetch), Addr::Replica(_)) => self.on_fetch(fetch, ctx),
            (Inbound::Blocks(blocks), Addr::Replica(from)) => self.on_blocks(blocks, from, ctx),
            (Inbound::QueryCheckpoint(q), Addr::Replica(_)) => self.on_query_checkpoint(q, ctx),
            (Inbound::Checkpoint(c), Addr::Replica(_)) => self.on_checkpoint(c, ctx),
            (Inbound::FetchChunk(f), Addr::Replica(_)) => self.on_fetch_chunk(f, ctx),
            (Inbound::Chunk(c), Addr::Replica(from)) => self.on_chunk(c, from, ctx),
            _ => ctx.drop_message("message: not for a replica"),
        }
    }

    fn on_timer(&mut self, timer: ReplicaTimer, ctx: &mut Ctx<'_, '_>) {
        match timer {
            ReplicaTimer::View => self.on_view_timer(ctx),
            ReplicaTimer::Batch => {
                self.batch_waited = true;
                self.try_propose(ctx);
            }
            ReplicaTimer::Sync => self.on_sync_timer(ctx),
            ReplicaTimer::QcWait => {
                self.qc_waited = self.view;
                self.try_propose(ctx);
            }
            ReplicaTimer::Heartbeat => {
                ctx.send_to_replicas(self.sync_info());
                ctx.set_timer(ReplicaTimer::Heartbeat, STATUS_HEARTBEAT);
            }
        }
    }

    fn executed_slot(&self) -> Option<u64> {
        Some(self.committed.height)
    }

    fn leader(&self) -> Option<ReplicaId> {
        Some(self.config.leader(self.view))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vote_record_round_trips_and_short_ones_are_refused() {
        let locked = Anchor {
            digest: Digest([7; 32]),
            height: 12,
            view: 40,
        };
        let bytes = encode_voted(41, &locked, &QuorumCert::genesis());
        assert_eq!(
            decode_voted(&bytes),
            Some((41, locked, Some(QuorumCert::genesis())))
        );
        assert_eq!(decode_voted(&bytes[..55]), None);
        assert_eq!(decode_voted(&bytes[..56]), Some((41, locked, None)));
    }

    #[test]
    fn the_pool_keeps_the_latest_request_per_client_oldest_first() {
        let request = |client: u64, num: u64| AuthRequest {
            session: 1,
            request: Request {
                client_id: ClientId(client),
                request_num: num,
                op: vec![0; 8],
            },
            key: wire::PublicKey([2; 33]),
            auth: Vec::new(),
        };
        let mut pool = Pool::default();
        assert!(pool.add(request(1, 1)));
        assert!(pool.add(request(2, 1)));
        assert!(!pool.add(request(1, 1)), "the same again");
        assert!(pool.add(request(1, 2)), "a later one replaces it");
        let taken = pool.take(10, &HashSet::new());
        let order: Vec<_> = taken.iter().map(|r| r.request.client_id.0).collect();
        assert_eq!(order, vec![2, 1], "client 1's newer request arrived last");
        let skip = HashSet::from([(ClientId(2), 1)]);
        assert_eq!(pool.take(10, &skip).len(), 1);
        pool.settle(ClientId(1), 2);
        pool.settle(ClientId(2), 0);
        assert_eq!(pool.len(), 1, "client 2's request 1 has not executed");
    }
}
