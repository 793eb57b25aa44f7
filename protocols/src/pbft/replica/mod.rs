//! The PBFT replica. See the module overview in `pbft/mod.rs` for the
//! algorithm; handlers cite the OSDI'99 sections they implement.
//!
//! The file map, in the order a message meets the sub-protocols:
//!
//! - this file: the replica's state, the dispatch (`impl State`), the checks
//!   every handler shares, and the invariants checked after every event;
//! - `normal.rs`: requests, batching, pre-prepare / prepare / commit,
//!   execution through the client table (§4.2);
//! - `checkpoint.rs`: checkpoints, stability, garbage collection (§4.3);
//! - `transfer.rs`: state transfer of a checkpoint, chunk by chunk, each
//!   chunk checked against the certified digest (TOCS §5.3.2);
//! - `view_change.rs`: the request timer, view-change and new-view
//!   (§4.4, TOCS §4.5);
//! - `recovery.rs`: a restarted replica's recovery (TOCS §4.3.2, proactive
//!   recovery);
//! - `status.rs`: retransmission of what a stuck peer misses, and fetching
//!   batches known by digest only.

mod checkpoint;
mod normal;
mod recovery;
mod status;
mod transfer;
mod view_change;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use runtime::{Addr, ClientId, Context, ReplicaId, State, Time};
use wire::merkle::StateTree;
use wire::pbft::{
    AuthRequest, CheckpointCert, Message, NewView, PreparedCert, Seq, View, ViewChange,
};
use wire::{Digest, Signature, Signed};

use super::codec::{Codec, Config, Inbound, Outbound};
use super::{
    CHECKPOINT_INTERVAL, CHECKPOINT_VOTES_MAX, CLIENT_RESEND_MAX, LOG_MAX, PENDING_BYTES_MAX,
    PENDING_MAX, WAITING_BYTES_MAX, WAITING_MAX,
};
use crate::app::App;
use crate::common::VoteSet;
use crate::common::sessions::{self, ClientTable};

pub use recovery::Recovery;

type Ctx<'a, 'b> = Context<'a, Outbound, ReplicaTimer>;

/// Own view-change messages kept for views not entered.
const OWN_VIEW_CHANGES_MAX: usize = 4;

/// Clients a backup remembers having announced themselves (see
/// [`Announced`]).
const ANNOUNCED_MAX: usize = 4096;

/// How long a backup remembers an announcement before a new client may take
/// its place: longer than a client waits between retransmissions, so that
/// the copy that follows an announcement always finds it.
const ANNOUNCED_FOR: Duration = CLIENT_RESEND_MAX.saturating_mul(2);

/// Clients whose registration a backup has received once from the client.
/// A client sends its registration to every replica, so that each learns
/// where its replies go: the first copy is that announcement, and only a
/// second (the client retransmitted: no reply came) makes the backup wait
/// for the registration and relay it, as for any request a client
/// multicast. Otherwise a backup cut off from the primary would take every
/// new client for a sign of a faulty primary and change views alone.
///
/// Bounded by [`ANNOUNCED_MAX`], and a flood of new clients' registrations
/// cannot push out a recent one (which would let a faulty primary ignore a
/// client's registration for ever): an entry gives way only once it is
/// older than [`ANNOUNCED_FOR`], and while the set is full of recent ones a
/// newcomer is not recorded and its copy counts as a retransmission (the
/// backup waits for it and relays it, which costs it only work).
#[derive(Debug, Default)]
struct Announced {
    order: VecDeque<(ClientId, Time)>,
    clients: std::collections::HashSet<ClientId>,
}

impl Announced {
    /// Whether `client`'s registration should count as a retransmission:
    /// it announced itself before, or there is no room to remember that it
    /// did now.
    fn seen_before(&mut self, client: ClientId, now: Time) -> bool {
        if self.clients.contains(&client) {
            return true;
        }
        while let Some(&(oldest, at)) = self.order.front() {
            if self.order.len() < ANNOUNCED_MAX && now.since(at) < ANNOUNCED_FOR {
                break;
            }
            if now.since(at) < ANNOUNCED_FOR {
                return true; // Full of recent announcements.
            }
            self.order.pop_front();
            self.clients.remove(&oldest);
        }
        self.order.push_back((client, now));
        self.clients.insert(client);
        false
    }
}

/// Views per replica whose view-change messages are kept.
const VIEW_CHANGES_PER_REPLICA: usize = 4;

/// One PBFT replica.
pub struct Replica {
    id: ReplicaId,
    config: Arc<Config>,
    /// For the messages this replica keeps signed (checkpoint votes,
    /// view-changes, a new view's pre-prepares), and the hints it gives its
    /// decoders (what it has settled).
    codec: Arc<Codec>,
    app: Box<dyn App>,

    view: View,
    /// In a view change to `view`: sent a view-change, no new-view yet.
    changing: bool,
    /// The timer for the new view runs (a quorum wants it).
    new_view_timer_armed: bool,
    /// Doubles at every view change, back to [`Config::view_change_timeout`] when a
    /// request executes (§4.5.2 of TOCS: exponential back-off).
    view_change_timeout: Duration,

    /// Sequence numbers in (stable.seq, stable.seq + LOG_MAX].
    log: BTreeMap<Seq, Slot>,
    /// Primary: the sequence number of the next batch.
    seq_next: Seq,
    /// Last sequence number executed.
    executed: Seq,
    /// Primary: requests not yet in a batch, at most [`PENDING_MAX`] of
    /// them and [`PENDING_BYTES_MAX`] bytes.
    pending: VecDeque<AuthRequest>,
    pending_bytes: usize,
    /// Primary: per client, the highest request number queued or proposed
    /// and not yet executed.
    proposed: HashMap<ClientId, u64>,
    /// Backup: the requests it knows of and waits for.
    waiting: Waiting,
    /// Backup: clients whose registration it has had once, straight from
    /// the client (see `normal.rs`).
    announced: Announced,
    /// Sessions and the latest result of each: part of the checkpointed
    /// state.
    clients: ClientTable,

    /// The request timer's clock (see `view_change.rs`): when this replica
    /// last executed a request, or began waiting for one after waiting for
    /// none.
    progress_at: Time,
    /// Requests executed per second, smoothed over status ticks.
    rate: f64,
    /// Requests executed since the last status tick.
    executed_since_tick: u64,

    /// The stable checkpoint and its proof: the low watermark.
    stable: CheckpointCert,
    /// The state at the stable checkpoint, to serve state transfers; `None`
    /// while this replica is fetching it.
    stable_state: Option<Snapshot>,
    /// Own checkpoints above the stable one.
    own_checkpoints: BTreeMap<Seq, Snapshot>,
    /// Checkpoint votes above the stable checkpoint, for at most
    /// [`CHECKPOINT_VOTES_MAX`] sequence numbers: one per replica (its
    /// first), own included.
    checkpoint_votes: BTreeMap<Seq, VoteSet<Digest, Signature>>,

    /// View-change messages for views from the current one on, by view and
    /// sender (own included): at most [`VIEW_CHANGES_PER_REPLICA`] views
    /// per replica, the latest.
    view_changes: BTreeMap<(View, ReplicaId), Signed<ViewChange>>,
    /// This replica's own view-change messages for views it asked for and
    /// never entered, at most [`OWN_VIEW_CHANGES_MAX`]: a peer still
    /// changing to one of them may have missed it (see `status.rs`).
    own_view_changes: BTreeMap<View, Signed<ViewChange>>,
    /// The new-view message that started the current view, relayed to
    /// replicas that missed it.
    new_view: Option<NewView>,

    transfer: Option<transfer::Transfer>,

    /// Where this replica stands in recovering from a restart.
    recovery: Recovery,
    /// Peers seen starting a recovery, and the stable checkpoint each waits
    /// for: an idle primary proposes null batches until it is reached. At
    /// most n.
    recovering_peers: BTreeMap<ReplicaId, PeerRecovery>,

    /// `executed` at the previous status tick: no change means stuck.
    executed_at_status: Seq,
    /// When this replica last multicast its status.
    status_sent_at: Time,
    /// When this replica last answered each peer's status: one answer per
    /// half status interval, so a faulty peer's flood of statuses (each of
    /// which may be answered with a window of pre-prepares) is not
    /// amplified. At most n.
    status_answered_at: BTreeMap<ReplicaId, Time>,
    /// Saw a message from beyond its watermarks or view since the last tick.
    behind: bool,
    /// The sequence number each peer last said (in a status) it had
    /// executed: n entries at most.
    peer_executed: BTreeMap<ReplicaId, Seq>,
}

/// A peer's recovery as this replica saw it (see `status.rs`): when its
/// first `QueryStable` came, and the stable checkpoint its statuses then
/// named, taken once per recovery.
#[derive(Debug)]
struct PeerRecovery {
    started: Time,
    target: Option<Seq>,
    /// The group reached `target`: nothing more to pad for.
    reached: bool,
    /// Another recovery started before [`recovery::RECOVERY_REPEAT_MIN`]
    /// passed: it counts once that much time has.
    again: bool,
}

/// A sequence number's entry in the log.
#[derive(Debug)]
struct Slot {
    /// The pre-prepare accepted in the current view: view, digest, and the
    /// primary's signature (`None` when this replica is that primary).
    pre_prepare: Option<(View, Digest, Option<Signature>)>,
    /// Its batch held requests this replica could not authenticate: it
    /// prepares only once f + 1 replicas vouch for it.
    unchecked: bool,
    /// The batch, once known, with its digest (it may be from an earlier
    /// view's pre-prepare, and then may not match).
    batch: Option<(Digest, Vec<AuthRequest>)>,
    /// Batches of other digests this slot held in earlier views, at most
    /// [`EARLIER_BATCHES_MAX`] (the one of `prepared` is evicted last): a
    /// later new view may choose one of them again, and then the replicas
    /// that had it must still answer for it.
    earlier: Vec<(Digest, Vec<AuthRequest>)>,
    /// Prepares from other backups, by view and digest: at most one per
    /// replica, its first in the latest view it prepared in (a prepare for
    /// a later view replaces one for an earlier view, see `on_prepare`).
    /// Never this replica's own: `sent_prepare` says whether it sent one.
    prepares: VoteSet<(View, Digest), Signature>,
    /// Commits from other replicas, the same way.
    commits: VoteSet<(View, Digest)>,
    /// Sent our prepare / commit for the current pre-prepare.
    sent_prepare: bool,
    sent_commit: bool,
    committed: bool,
    /// The prepared certificate of the latest view in which this replica
    /// prepared here: what its view-change messages carry (§4.4).
    prepared: Option<PreparedCert>,
}

/// A checkpointed state: its bytes, their Merkle tree, and the digest a
/// checkpoint certifies (see [`wire::merkle`]).
#[derive(Debug)]
struct Snapshot {
    state: Vec<u8>,
    tree: StateTree,
}

impl Snapshot {
    fn digest(&self) -> Digest {
        self.tree.digest()
    }
}

/// A backup's requests that have not executed yet, with when it first saw
/// each: the request timer times the oldest (see `view_change.rs`), and on
/// a view change they go to the new primary.
#[derive(Debug, Default)]
struct Waiting {
    by_client: HashMap<ClientId, (AuthRequest, Time)>,
    /// `(since, client)`, oldest first.
    by_age: BTreeSet<(Time, ClientId)>,
    bytes: usize,
}

impl Waiting {
    fn len(&self) -> usize {
        self.by_client.len()
    }

    fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// When the oldest request began waiting.
    fn oldest(&self) -> Option<Time> {
        self.by_age.first().map(|(since, _)| *since)
    }

    /// Waits for `request` from `now` on, unless a request of its client at
    /// least as new is waiting already. False if full.
    fn insert(&mut self, request: AuthRequest, now: Time) -> bool {
        let client = request.request.client_id;
        let size = request_size(&request);
        match self.by_client.get(&client) {
            Some((old, _)) if old.request.request_num >= request.request.request_num => true,
            Some(_) => {
                self.remove(client);
                self.insert(request, now)
            }
            None if self.len() >= WAITING_MAX || self.bytes + size > WAITING_BYTES_MAX => false,
            None => {
                self.bytes += size;
                self.by_age.insert((now, client));
                self.by_client.insert(client, (request, now));
                true
            }
        }
    }

    fn remove(&mut self, client: ClientId) -> Option<AuthRequest> {
        let (request, since) = self.by_client.remove(&client)?;
        self.by_age.remove(&(since, client));
        self.bytes -= request_size(&request);
        Some(request)
    }

    /// Stops waiting for `client`'s requests up to `request_num`.
    fn settle(&mut self, client: ClientId, request_num: u64) {
        if self
            .by_client
            .get(&client)
            .is_some_and(|(r, _)| r.request.request_num <= request_num)
        {
            self.remove(client);
        }
    }

    /// Every request, oldest first, and none left.
    fn drain(&mut self) -> Vec<AuthRequest> {
        let order: Vec<ClientId> = self.by_age.iter().map(|(_, c)| *c).collect();
        let requests = order
            .into_iter()
            .filter_map(|c| self.by_client.remove(&c).map(|(r, _)| r))
            .collect();
        self.by_age.clear();
        self.bytes = 0;
        requests
    }

    /// Every request, oldest first, as from `now`: a new view gives each
    /// the full timeout again.
    fn restart_clock(&mut self, now: Time) {
        for request in self.drain() {
            self.insert(request, now);
        }
    }
}

/// What a queued request costs in memory, near enough.
fn request_size(request: &AuthRequest) -> usize {
    request.request.op.len() + 64 + 32 * request.auth.len()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaTimer {
    /// A request waited too long, or a new view took too long: next view.
    ViewChange,
    /// Check for lack of progress; ask peers for help.
    Status,
    /// A state chunk did not come: ask again, someone else.
    Transfer,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("id", &self.id)
            .field("view", &self.view)
            .field("changing", &self.changing)
            .field("executed", &self.executed)
            .field("stable", &self.stable.seq)
            .field("log", &self.log.len())
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Replica `id` of a group starting afresh (every replica at once).
    pub fn new(id: ReplicaId, codec: Arc<Codec>, app: Box<dyn App>) -> Replica {
        Replica::with_recovery(id, codec, app, Recovery::Done)
    }

    /// Replica `id` restarted with empty memory into a group that is
    /// running: it recovers (see `recovery.rs`) before it votes again, and
    /// counts toward f until it has.
    pub fn restarted(id: ReplicaId, codec: Arc<Codec>, app: Box<dyn App>) -> Replica {
        Replica::with_recovery(id, codec, app, Recovery::starting())
    }

    fn with_recovery(
        id: ReplicaId,
        codec: Arc<Codec>,
        app: Box<dyn App>,
        recovery: Recovery,
    ) -> Replica {
        let config = Arc::clone(codec.config());
        assert!(usize::from(id.0) < config.n);
        let clients = sessions::new(config.client_table_max);
        let view_change_timeout = config.view_change_timeout;
        Replica {
            id,
            config,
            codec,
            app,
            view: 0,
            changing: false,
            new_view_timer_armed: false,
            view_change_timeout,
            log: BTreeMap::new(),
            seq_next: 1,
            executed: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            proposed: HashMap::new(),
            waiting: Waiting::default(),
            announced: Announced::default(),
            clients,
            progress_at: Time::ZERO,
            rate: 0.0,
            executed_since_tick: 0,
            stable: CheckpointCert {
                seq: 0,
                digest: Digest::default(),
                signatures: Vec::new(),
            },
            stable_state: None,
            own_checkpoints: BTreeMap::new(),
            checkpoint_votes: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            own_view_changes: BTreeMap::new(),
            new_view: None,
            transfer: None,
            recovery,
            recovering_peers: BTreeMap::new(),
            executed_at_status: 0,
            status_sent_at: Time::ZERO,
            status_answered_at: BTreeMap::new(),
            // A fresh replica may have restarted behind the others: ask once.
            behind: true,
            peer_executed: BTreeMap::new(),
        }
    }

    pub fn view(&self) -> View {
        self.view
    }

    /// In a view change to [`Replica::view`], not yet in it.
    pub fn is_changing(&self) -> bool {
        self.changing
    }

    pub fn executed(&self) -> Seq {
        self.executed
    }

    pub fn stable_seq(&self) -> Seq {
        self.stable.seq
    }

    /// The view-change timeout as backed off now.
    pub fn view_change_timeout(&self) -> Duration {
        self.view_change_timeout
    }

    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Sessions in the client table.
    pub fn sessions(&self) -> usize {
        self.clients.len()
    }

    /// Entries in the log, checkpoint vote sets, own checkpoints: what grows
    /// with the run unless garbage collection works.
    pub fn log_len(&self) -> usize {
        self.log.len() + self.checkpoint_votes.len() + self.own_checkpoints.len()
    }

    /// Requests queued at the primary and waited for at a backup: what a
    /// flood of requests grows.
    pub fn queued(&self) -> (usize, usize) {
        (self.pending.len(), self.waiting.len())
    }

    fn is_primary(&self) -> bool {
        self.config.primary(self.view) == self.id
    }

    fn high_watermark(&self) -> Seq {
        self.stable.seq.saturating_add(LOG_MAX)
    }

    fn in_watermarks(&self, seq: Seq) -> bool {
        seq > self.stable.seq && seq <= self.high_watermark()
    }

    /// The log's slot for `seq`, empty if it had none.
    fn slot(&mut self, seq: Seq) -> &mut Slot {
        let n = self.config.n;
        self.log.entry(seq).or_insert_with(|| Slot::new(n))
    }

    // Checks shared by the normal-case handlers.

    fn check_view(&mut self, view: View, what: &'static str, ctx: &mut Ctx<'_, '_>) -> bool {
        if self.changing {
            ctx.drop_message(match what {
                "pre-prepare" => "pre-prepare: view change in progress",
                "prepare" => "prepare: view change in progress",
                _ => "commit: view change in progress",
            });
            return false;
        }
        if view != self.view {
            if view > self.view {
                self.behind = true;
            }
            ctx.drop_message(match what {
                "pre-prepare" => "pre-prepare: wrong view",
                "prepare" => "prepare: wrong view",
                _ => "commit: wrong view",
            });
            return false;
        }
        true
    }

    fn check_seq(&mut self, seq: Seq, what: &'static str, ctx: &mut Ctx<'_, '_>) -> bool {
        if self.in_watermarks(seq) {
            return true;
        }
        if seq > self.high_watermark() {
            self.behind = true;
        }
        ctx.drop_message(match what {
            "pre-prepare" => "pre-prepare: outside watermarks",
            "prepare" => "prepare: outside watermarks",
            _ => "commit: outside watermarks",
        });
        false
    }

    /// Invariants that hold after every event.
    fn check_invariants(&self) {
        assert!(self.log.len() as u64 <= LOG_MAX);
        if let (Some((&first, _)), Some((&last, _))) =
            (self.log.first_key_value(), self.log.last_key_value())
        {
            assert!(self.in_watermarks(first) && self.in_watermarks(last));
        }
        assert!(self.transfer.is_some() || self.executed >= self.stable.seq);
        assert!(self.pending.len() <= PENDING_MAX && self.pending_bytes <= PENDING_BYTES_MAX);
        assert!(self.announced.order.len() <= ANNOUNCED_MAX);
        assert_eq!(self.announced.order.len(), self.announced.clients.len());
        assert!(
            self.pending.is_empty() || (self.is_primary() && !self.changing),
            "only the primary of a started view queues requests"
        );
        assert!(self.waiting.len() <= WAITING_MAX && self.waiting.bytes <= WAITING_BYTES_MAX);
        assert_eq!(self.waiting.len(), self.waiting.by_age.len());
        assert!(self.clients.len() <= self.config.client_table_max);
        assert!(self.checkpoint_votes.len() <= CHECKPOINT_VOTES_MAX);
        assert!(self.view_changes.len() <= self.config.n * VIEW_CHANGES_PER_REPLICA);
        assert!(self.own_view_changes.len() <= OWN_VIEW_CHANGES_MAX);
        assert!(self.recovering_peers.len() <= self.config.n);
        assert!(self.peer_executed.len() <= self.config.n);
        assert!(self.status_answered_at.len() <= self.config.n);
        assert!(self.own_checkpoints.len() as u64 <= LOG_MAX / CHECKPOINT_INTERVAL + 1);
        if self.recovery.is_estimating() {
            assert!(
                self.log.is_empty(),
                "an estimating replica takes part in nothing"
            );
        }
    }
}

/// Batches of earlier digests a slot keeps (see `Slot::earlier`): a faulty
/// primary proposes one digest per view, so this many views back.
const EARLIER_BATCHES_MAX: usize = 3;

impl Slot {
    /// An empty slot of a group of `n` replicas.
    fn new(n: usize) -> Slot {
        Slot {
            pre_prepare: None,
            unchecked: false,
            batch: None,
            earlier: Vec::new(),
            prepares: VoteSet::new(n),
            commits: VoteSet::new(n),
            sent_prepare: false,
            sent_commit: false,
            committed: false,
            prepared: None,
        }
    }

    /// The batch with `digest`, if this slot knows it.
    fn batch_for(&self, digest: Digest) -> Option<&Vec<AuthRequest>> {
        self.batch
            .iter()
            .chain(&self.earlier)
            .find(|(d, _)| *d == digest)
            .map(|(_, batch)| batch)
    }

    /// Whether this slot holds the batch of the digest it accepted.
    fn has_batch(&self) -> bool {
        matches!((&self.pre_prepare, &self.batch), (Some((_, d, _)), Some((b, _))) if d == b)
    }

    /// Makes `batch` (of `digest`) the slot's batch, keeping the one it
    /// replaces among the earlier ones.
    fn set_batch(&mut self, digest: Digest, batch: Vec<AuthRequest>) {
        self.stash_batch();
        self.earlier.retain(|(d, _)| *d != digest);
        self.batch = Some((digest, batch));
    }

    /// Moves the slot's batch among the earlier ones, evicting the oldest
    /// that is not the prepared certificate's when they are full.
    fn stash_batch(&mut self) {
        let Some((digest, batch)) = self.batch.take() else {
            return;
        };
        if self.earlier.iter().any(|(d, _)| *d == digest) {
            return;
        }
        if self.earlier.len() == EARLIER_BATCHES_MAX {
            let prepared = self.prepared.as_ref().map(|cert| cert.digest);
            let oldest = self
                .earlier
                .iter()
                .position(|(d, _)| Some(*d) != prepared)
                .unwrap_or(0);
            self.earlier.remove(oldest);
        }
        self.earlier.push((digest, batch));
    }

    /// Takes the batch of `digest` as the slot's, from the earlier ones or
    /// (the null batch) from nothing; without it, the slot holds none until
    /// it is fetched. Returns whether the slot now has it.
    fn take_batch_for(&mut self, digest: Digest, null_digest: Digest) -> bool {
        if self.batch.as_ref().is_some_and(|(d, _)| *d == digest) {
            return true;
        }
        if let Some(i) = self.earlier.iter().position(|(d, _)| *d == digest) {
            let (_, batch) = self.earlier.remove(i);
            self.set_batch(digest, batch);
            true
        } else if digest == null_digest {
            self.set_batch(digest, Vec::new());
            true
        } else {
            self.stash_batch();
            false
        }
    }

    /// Accepts the pre-prepare `(view, digest)` here, forgetting what was
    /// sent for an earlier one.
    fn enter(&mut self, view: View, digest: Digest, signature: Option<Signature>) {
        self.pre_prepare = Some((view, digest, signature));
        self.unchecked = false;
        self.sent_prepare = false;
        self.sent_commit = false;
        self.committed = false;
    }

    /// Forgets the state of views before `view`, keeping the prepared
    /// certificate (for later view-changes), the batch, and votes already
    /// received for `view` or later.
    fn leave_view(&mut self, view: View) {
        self.pre_prepare = None;
        self.unchecked = false;
        self.sent_prepare = false;
        self.sent_commit = false;
        self.committed = false;
        self.prepares.retain(|_, (v, _), _| *v >= view);
        self.commits.retain(|_, (v, _), _| *v >= view);
    }
}

impl State for Replica {
    type Message = Inbound;
    type Outbound = Outbound;
    type Timer = ReplicaTimer;
    type Shared = Codec;

    fn on_start(&mut self, ctx: &mut Ctx<'_, '_>) {
        let state = self.encode_state();
        self.stable_state = Some(Snapshot::of(state));
        ctx.set_timer(ReplicaTimer::Status, self.config.status_interval);
        self.progress_at = ctx.now();
        self.start_recovery(ctx);
        self.check_invariants();
    }

    fn on_message(&mut self, from: Addr, msg: Inbound, ctx: &mut Ctx<'_, '_>) {
        if from == Addr::Replica(self.id) {
            ctx.drop_message("message: from self");
            return;
        }
        if self.recovery.is_estimating() && !recovery::handled_while_estimating(&msg) {
            ctx.drop_message("recovering: estimating where the group stands");
            return;
        }
        match msg {
            Inbound::Message(msg) => self.dispatch(msg, ctx),
            Inbound::Relayed {
                requests, refused, ..
            } => {
                if refused > 0 {
                    ctx.count_n("relayed: request not authenticated", refused as u64);
                }
                for request in requests {
                    self.on_request(request, false, ctx);
                }
            }
            Inbound::UncheckedPrePrepare(pp, batch) => {
                ctx.count("pre-prepare: requests not authenticated here");
                self.on_pre_prepare(pp, batch, false, ctx);
            }
        }
        self.check_invariants();
    }

    fn on_timer(&mut self, timer: ReplicaTimer, ctx: &mut Ctx<'_, '_>) {
        match timer {
            ReplicaTimer::ViewChange => self.on_view_change_timeout(ctx),
            ReplicaTimer::Status => self.on_status_timeout(ctx),
            ReplicaTimer::Transfer => self.on_transfer_timeout(ctx),
        }
        self.check_invariants();
    }

    fn is_recovering(&self) -> bool {
        !matches!(self.recovery, Recovery::Done)
    }

    /// `None` while changing views: a replica that moved to the next view
    /// alone (it suspected the primary before the others did) takes no
    /// part in the current one until the group changes views too, by
    /// design (§4.4), so it is not behind in the catch-up check's sense.
    fn executed_slot(&self) -> Option<u64> {
        (!self.changing).then_some(self.executed)
    }

    /// The primary of the view it is in (§4.1: view mod n), also while it
    /// changes views (then the primary of the view it moves to).
    fn leader(&self) -> Option<ReplicaId> {
        Some(self.config.primary(self.view))
    }
}

impl Replica {
    fn dispatch(&mut self, msg: Message, ctx: &mut Ctx<'_, '_>) {
        match msg {
            Message::Request(request) => self.on_request(request, true, ctx),
            // The runtime learnt the client's address from it; nothing else.
            Message::Relayed(..) => unreachable!("the codec hands relayed requests apart"),
            Message::Reply(_) | Message::Evicted(_) => {
                ctx.drop_message("replica: unexpected reply");
            }
            Message::PrePrepare(pp, batch) => self.on_pre_prepare(pp, batch, true, ctx),
            Message::Prepare(p) => self.on_prepare(p, ctx),
            Message::Commit(c) => self.on_commit(c, ctx),
            Message::Checkpoint(c) => self.on_checkpoint(c, ctx),
            Message::ViewChange(vc) => self.on_view_change(vc, ctx),
            Message::NewView(nv) => self.on_new_view(nv, ctx),
            Message::Status(s) => self.on_status(s.payload, ctx),
            Message::StableCheckpoint(s) => self.on_stable_checkpoint(s, ctx),
            Message::FetchState(f) => self.on_fetch_state(f.payload, ctx),
            Message::StateChunk(c) => self.on_state_chunk(c, ctx),
            Message::FetchBatch(f) => self.on_fetch_batch(f.payload, ctx),
            Message::Batch(b) => self.on_batch(b, ctx),
            Message::QueryStable(q) => self.on_query_stable(q.payload, ctx),
            Message::ReplyStable(r) => self.on_reply_stable(r.payload, ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u8) -> Digest {
        Digest([i; 32])
    }

    /// A flood of new clients' announcements stays within the bound and
    /// pushes out no recent one: while the set is full of recent
    /// announcements, newcomers count as retransmissions; old ones give way.
    #[test]
    fn announcements_are_bounded_and_a_flood_pushes_out_no_recent_one() {
        let mut announced = Announced::default();
        let t0 = Time::ZERO;
        assert!(!announced.seen_before(ClientId(1), t0));
        assert!(announced.seen_before(ClientId(1), t0));
        for id in 2..=ANNOUNCED_MAX as u64 {
            assert!(!announced.seen_before(ClientId(id), t0));
        }
        let soon = t0 + ANNOUNCED_FOR / 2;
        for id in 0..10 {
            let flood = ClientId(1_000_000 + id);
            assert!(announced.seen_before(flood, soon), "full: a retransmission");
        }
        assert!(announced.seen_before(ClientId(1), soon), "not pushed out");
        assert_eq!(announced.order.len(), ANNOUNCED_MAX);
        let later = t0 + ANNOUNCED_FOR;
        assert!(!announced.seen_before(ClientId(2_000_000), later));
        assert!(!announced.clients.contains(&ClientId(1)), "old: gave way");
        assert!(announced.order.len() <= ANNOUNCED_MAX);
        assert_eq!(announced.order.len(), announced.clients.len());
    }

    #[test]
    fn a_slot_keeps_the_batches_of_earlier_views() {
        // View 1 pre-prepares X, view 2 Y, view 3's new view chooses X again
        // (from a certificate of view 1): the slot still has X.
        let (x, y, null) = (digest(1), digest(2), digest(0));
        let mut slot = Slot::new(4);
        slot.enter(1, x, None);
        slot.set_batch(x, Vec::new());
        slot.enter(2, y, None);
        slot.set_batch(y, Vec::new());
        slot.enter(3, x, None);
        assert!(slot.take_batch_for(x, null));
        assert!(slot.has_batch());
        // A digest nobody sent it leaves the slot without a batch but
        // forgets neither X nor Y.
        slot.enter(4, digest(9), None);
        assert!(!slot.take_batch_for(digest(9), null));
        assert!(!slot.has_batch());
        assert!(slot.batch_for(x).is_some() && slot.batch_for(y).is_some());
        assert!(slot.take_batch_for(null, null));
    }

    #[test]
    fn the_prepared_batch_is_evicted_last() {
        let null = digest(0);
        let mut slot = Slot::new(4);
        slot.set_batch(digest(1), Vec::new());
        slot.prepared = Some(PreparedCert {
            view: 1,
            seq: 1,
            digest: digest(1),
            pre_prepare: None,
            prepares: Vec::new(),
        });
        for i in 2..=10 {
            slot.enter(u64::from(i), digest(i), None);
            slot.set_batch(digest(i), Vec::new());
        }
        assert!(slot.earlier.len() <= EARLIER_BATCHES_MAX);
        assert!(slot.batch_for(digest(1)).is_some(), "the prepared batch");
        assert!(slot.batch_for(digest(10)).is_some());
        assert!(slot.batch_for(digest(2)).is_none(), "the oldest other");
        assert!(!slot.take_batch_for(digest(2), null));
    }
}
