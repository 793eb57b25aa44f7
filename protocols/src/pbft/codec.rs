//! The shared half of PBFT nodes: configuration, signing on encode, and
//! decoding with every check that needs no protocol state (source addresses,
//! signatures, digests, certificate shapes, a new-view's O recomputed from its
//! V).
//!
//! Cheap checks come first, so that a flood of replayed or misdirected
//! messages costs a decoder almost nothing: a message that names another
//! replica than the address it came from is dropped before its signature is
//! checked, and a pre-prepare is read header first, so that one for a view
//! and sequence number this replica has already accepted is dropped before
//! its batch is even decoded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use runtime::hint::{Flag, Marks, Watermark};
use runtime::{Addr, DropReason, ReplicaId, SharedState, Source};
use std::time::Duration;
use wire::client::Request;
use wire::crypto::verify_digest;

use wire::pbft::{
    AuthRequest, Checkpoint, CheckpointCert, Commit, FetchBatch, FetchState, Message, NewView,
    PrePrepare, PrePrepareOut, Prepare, PreparedCert, QueryStable, ReplyStable, Seq, Status, View,
    ViewChange,
};
use wire::{
    ClientId, CryptoError, Digest, PublicKey, SecretKey, Signature, Signed, Signer, VerifyingKey,
};

use super::bugs;
use super::{
    BATCH_SIZE_MAX, CHECKPOINT_INTERVAL, CLIENT_KEYS_MAX, CLIENT_TABLE_MAX, LOG_MAX, REPLICAS_MAX,
};
use crate::common::{ClientAuth, ReplyKeys};
use crate::planted;
use wire::pbft as tunable;
use wire::registry::Settings;

pub use wire::pbft::batch_digest;

/// What every node knows about the group: its size and the replicas' keys.
#[derive(Debug)]
pub struct Config {
    pub n: usize,
    /// The most faulty replicas the group tolerates: the largest f with
    /// n ≥ 3f + 1.
    pub f: usize,
    keys: Vec<VerifyingKey>,
    public_keys: Vec<PublicKey>,
    /// Digest of the null batch (no requests), which a new primary proposes
    /// for the gaps in O.
    pub null_digest: Digest,
    /// Sessions the client table holds (see [`crate::common::sessions`]).
    pub client_table_max: usize,
    /// Most requests the primary puts in a batch (at most
    /// [`BATCH_SIZE_MAX`], what a pre-prepare may carry).
    pub batch_max: usize,
    /// Most batches the primary has proposed and not yet executed.
    pub window: u64,
    /// First view-change timeout.
    pub view_change_timeout: Duration,
    /// How often a replica checks whether it is stuck.
    pub status_interval: Duration,
}

impl Config {
    /// The group of replicas whose public keys are `keys`, in id order.
    pub fn new(keys: &[PublicKey]) -> Result<Config, CryptoError> {
        assert!(
            !keys.is_empty() && keys.len() <= REPLICAS_MAX,
            "a PBFT group has 1..={REPLICAS_MAX} replicas"
        );
        let public_keys = keys.to_vec();
        let keys: Vec<VerifyingKey> = keys
            .iter()
            .map(PublicKey::parse)
            .collect::<Result<_, _>>()?;
        let n = keys.len();
        Ok(Config {
            n,
            f: (n - 1) / 3,
            keys,
            public_keys,
            null_digest: batch_digest(&[]).expect("the empty batch encodes"),
            client_table_max: CLIENT_TABLE_MAX,
            batch_max: BATCH_SIZE_MAX,
            window: tunable::WINDOW.default,
            view_change_timeout: Duration::from_millis(tunable::VIEW_CHANGE_TIMEOUT_MS.default),
            status_interval: Duration::from_millis(tunable::STATUS_INTERVAL_MS.default),
        })
    }

    /// The same group with the tunables `settings` give (PBFT's own,
    /// checked against their bounds already: see [`wire::registry`]).
    pub fn with_settings(mut self, settings: &Settings) -> Config {
        assert_eq!(settings.spec().name, wire::pbft::SPEC.name);
        // The bounds keep every value within usize on any platform we build.
        self.batch_max = settings.get(&tunable::BATCH_MAX) as usize;
        self.window = settings.get(&tunable::WINDOW);
        self.view_change_timeout =
            Duration::from_millis(settings.get(&tunable::VIEW_CHANGE_TIMEOUT_MS));
        self.status_interval = Duration::from_millis(settings.get(&tunable::STATUS_INTERVAL_MS));
        self.with_client_table_max(settings.get(&tunable::CLIENT_TABLE_MAX) as usize)
    }

    /// The same group with a client table of at most `max` sessions (at most
    /// [`CLIENT_TABLE_MAX`], so that checkpoints stay within a transfer).
    pub fn with_client_table_max(mut self, max: usize) -> Config {
        assert!(max > 0 && max <= CLIENT_TABLE_MAX);
        self.client_table_max = max;
        self
    }

    /// The replicas' public keys, in id order.
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public_keys
    }

    /// Whether the group's keys are the simulator's (see [`wire::crypto`]):
    /// its clients' keys are then simulated too.
    pub fn simulated(&self) -> bool {
        matches!(self.keys[0], VerifyingKey::Simulated(_))
    }

    /// The primary of `view` (§4.1).
    pub fn primary(&self, view: View) -> ReplicaId {
        ReplicaId((view % self.n as u64) as u8)
    }

    /// The size of a quorum: ⌈(n + f + 1) / 2⌉, so that any two quorums
    /// share at least f + 1 replicas, one of them correct, whatever n is
    /// (2f + 1 when n = 3f + 1, the paper's case). Certificates need this
    /// many distinct replicas: a prepared certificate is a pre-prepare and
    /// `quorum() - 1` prepares from backups; commits, checkpoint votes and the
    /// view-changes of a new view need `quorum()`. A quorum stays within the
    /// n − f correct replicas, so the group is live.
    pub fn quorum(&self) -> usize {
        if planted::is(bugs::QUORUM_F_PLUS_1) {
            return self.f + 1;
        }
        if planted::is(bugs::QUORUM_2F_PLUS_1) {
            return 2 * self.f + 1;
        }
        (self.n + self.f + 1).div_ceil(2)
    }

    fn key(&self, replica: ReplicaId) -> Result<&VerifyingKey, DropReason> {
        self.keys
            .get(usize::from(replica.0))
            .ok_or(DropReason("decode: no such replica"))
    }

    fn verify<T: Payload>(
        &self,
        payload: &T,
        signature: &Signature,
        signer: ReplicaId,
        reason: &'static str,
    ) -> Result<(), DropReason> {
        let digest = payload.digest().ok_or(DropReason(reason))?;
        verify_digest(&digest, signature, self.key(signer)?).map_err(|_| DropReason(reason))
    }
}

/// A message payload that PBFT signs. (A trait of our own, so that this
/// crate need not name the codec's derive traits.)
pub trait Payload: Sized {
    /// The digest of the payload's encoding; `None` if it does not encode.
    fn digest(&self) -> Option<Digest>;
    fn sign(self, signer: &Signer) -> Result<Signed<Self>, CryptoError>;
}

macro_rules! payload {
    ($($t:ty),*) => {$(
        impl Payload for $t {
            fn digest(&self) -> Option<Digest> {
                Digest::of_encoded(self).ok()
            }
            fn sign(self, signer: &Signer) -> Result<Signed<Self>, CryptoError> {
                Signed::sign(self, signer)
            }
        }
    )*};
}

payload!(
    PrePrepare,
    Prepare,
    Commit,
    Checkpoint,
    ViewChange,
    Status,
    FetchState,
    FetchBatch,
    QueryStable,
    ReplyStable
);

/// What a PBFT node hands its context to send. Messages to sign name their
/// payload, which `encode` signs with the node's key (on the runtime's send
/// threads); everything else is sent as it is.
#[derive(Clone, Debug)]
pub enum Outbound {
    Message(Message),
    /// A client's request under its session, which its codec authenticates
    /// for every replica.
    Request(u64, Request),
    PrePrepare(PrePrepare, Vec<AuthRequest>),
    Prepare(Prepare),
    Commit(Commit),
    Reply(Reply),
    Evicted(Reply),
    Status(Status),
    FetchState(FetchState),
    FetchBatch(FetchBatch),
    QueryStable(QueryStable),
    ReplyStable(ReplyStable),
}

use wire::pbft::Reply;

/// A message as the codec hands it to the protocol: everything checked that
/// can be checked without protocol state.
#[derive(Clone, Debug)]
pub enum Inbound {
    Message(Message),
    /// Requests a backup relayed, without those whose authenticator entry
    /// for this replica did not check (`refused` of them).
    Relayed {
        by: ReplicaId,
        requests: Vec<AuthRequest>,
        refused: usize,
    },
    /// A pre-prepare whose signature and digest check, but with requests in
    /// its batch that this replica cannot authenticate: its own entry of
    /// their authenticator fails, or they name a key other than the one it
    /// knows for the client. Either the client is faulty (its authenticator
    /// checks at some replicas and not others: the "big MAC" attack) or the
    /// primary is. The replica prepares it only once f + 1 replicas vouch
    /// for it (the primary's pre-prepare and f prepares): at least one of
    /// them is correct and authenticated the requests (§4.2 and TOCS §3.2
    /// let a backup accept what others prepared).
    UncheckedPrePrepare(Signed<PrePrepare>, Vec<AuthRequest>),
}

/// Encoding (signing) and decoding (verifying) for replicas and clients.
#[derive(Debug)]
pub struct Codec {
    config: Arc<Config>,
    /// Replicas sign; clients have no signing key.
    signer: Option<Signer>,
    /// Clients' MACs: checked and made at a replica, made and checked at
    /// a client node.
    auth: ClientAuth,
    /// What the replica's protocol thread has settled (unused by clients).
    settled: Settled,
}

/// The prefix of PBFT clients' key seeds (see [`ClientAuth::client`]):
/// fixed, so that a seed gives the same client keys as it always did.
const CLIENT_KEY_DOMAIN: &str = "pbft client ";

/// Slots of [`Settled`]: more than the log holds, so two sequence numbers in
/// the log never share one.
const SETTLED_SLOTS: usize = 2 * LOG_MAX as usize;

/// Sequence numbers whose pre-prepare, prepare or commit phase this replica
/// has finished in a view, so that its codec can drop further messages of
/// that phase without checking them: once it has accepted a pre-prepare at
/// (v, n) with its batch, another for (v, n) is a duplicate or an
/// equivocation, both dropped anyway; once prepared at (v, n), further
/// prepares for (v, n) change nothing, and once committed-local at (v, n),
/// neither do commits (§4.2). With n = 4 that is 8 of the 24 signature
/// checks per batch, and a replayed pre-prepare costs a header read instead
/// of a signature check and a batch of MACs. All per view: a view change
/// starts the phases of what did not execute again.
///
/// Hints in the runtime's sense ([`runtime::hint`]): the protocol thread
/// writes, decoding threads read, without locks, and they only ever make a
/// decoder drop what the replica drops anyway, so a stale or torn read is
/// safe. A mark is overwritten only by a sequence number `SETTLED_SLOTS`
/// higher, by when the older one is below the low watermark.
#[derive(Debug, Default)]
struct Settled {
    pre_prepared: Marks<SETTLED_SLOTS>,
    prepared: Marks<SETTLED_SLOTS>,
    committed: Marks<SETTLED_SLOTS>,
    /// The latest view the replica entered: view-changes and new-views for
    /// it or an earlier one are dropped before their (many) signatures are
    /// checked, so replaying them costs a replica nothing.
    entered: Watermark,
    /// The replica is changing views: it drops clients' requests, so they
    /// are dropped before their MACs are checked (under load, thousands of
    /// them would otherwise queue ahead of the view change's messages).
    changing: Flag,
}

impl Codec {
    /// Replica `me`'s codec: it signs with `key`, and checks requests and
    /// MACs replies under the keys it agrees on with clients (from `key` and
    /// the public keys their requests carry).
    pub fn replica(
        config: Arc<Config>,
        me: ReplicaId,
        key: &SecretKey,
    ) -> Result<Codec, CryptoError> {
        Ok(Codec {
            signer: Some(Signer::new(key)?),
            settled: Settled::default(),
            auth: ClientAuth::replica(me, config.n, key, CLIENT_KEYS_MAX),
            config,
        })
    }

    /// A client node's codec: it checks the MACs of replies to the clients
    /// registered with [`Codec::register_client`], whose key pairs derive from
    /// `client_key_seed`; it signs nothing.
    pub fn client(config: Arc<Config>, client_key_seed: &[u8]) -> Codec {
        Codec {
            auth: ClientAuth::client(
                CLIENT_KEY_DOMAIN,
                &config.keys,
                config.simulated(),
                client_key_seed,
            ),
            config,
            signer: None,
            settled: Settled::default(),
        }
    }

    /// Derives client `id`'s key pair and the keys it shares with every
    /// replica, so that its requests are authenticated; the keys that check
    /// replies to it (see [`ClientAuth::register_client`]).
    pub fn register_client(&self, id: ClientId) -> ReplyKeys {
        self.auth.register_client(id)
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// A replica opened a session for `client` under `key`: its requests
    /// check under `key` only, for as long as the session lasts.
    pub(crate) fn pin_client(&self, client: ClientId, key: PublicKey) {
        self.auth.pin_client(client, key);
    }

    /// A replica evicted `client`'s session: its key is kept like any
    /// other client's.
    pub(crate) fn unpin_client(&self, client: ClientId) {
        self.auth.unpin_client(client);
    }

    /// A replica installed a client table from a state transfer: the
    /// sessions' keys become the pinned ones.
    pub(crate) fn repin_clients(&self, sessions: impl Iterator<Item = (ClientId, PublicKey)>) {
        self.auth.repin_clients(sessions);
    }

    /// The replica accepted a pre-prepare at (`view`, `seq`) and has its
    /// batch: its codec drops further pre-prepares for them unread.
    pub(crate) fn settle_pre_prepared(&self, view: View, seq: Seq) {
        self.settled.pre_prepared.mark(view, seq);
    }

    /// The replica entered `view`: its codec drops view-changes and
    /// new-views for it and earlier views unchecked.
    pub(crate) fn settle_view(&self, view: View) {
        self.settled.entered.raise(view);
    }

    /// The replica started (`true`) or finished a view change: its codec
    /// drops clients' requests meanwhile, unchecked.
    pub(crate) fn set_changing(&self, changing: bool) {
        self.settled.changing.set(changing);
    }

    /// The replica is prepared at (`view`, `seq`): its codec drops further
    /// prepares for them unchecked.
    pub(crate) fn settle_prepared(&self, view: View, seq: Seq) {
        self.settled.prepared.mark(view, seq);
    }

    /// The replica is committed-local at (`view`, `seq`): its codec drops
    /// further commits for them unchecked.
    pub(crate) fn settle_committed(&self, view: View, seq: Seq) {
        self.settled.committed.mark(view, seq);
    }

    /// Signs `payload` with this node's key. A replica's protocol thread uses
    /// it for the few messages it keeps as proof.
    pub fn sign<T: Payload>(&self, payload: T) -> Signed<T> {
        let signer = self.signer.as_ref().expect("only replicas sign");
        payload.sign(signer).expect("protocol payloads encode")
    }

    fn sign_for_wire<T: Payload>(&self, payload: T) -> Result<Signed<T>, DropReason> {
        let signer = self
            .signer
            .as_ref()
            .ok_or(DropReason("encode: no signing key"))?;
        payload
            .sign(signer)
            .map_err(|_| DropReason("encode: failed"))
    }

    /// The pre-prepare's header, read without decoding its batch, and
    /// checked against its source and what this replica already accepted.
    fn screen_pre_prepare(&self, source: Source, bytes: &[u8]) -> Result<(), DropReason> {
        // The variant index is a varint: one byte for small ones.
        if bytes.first() != Some(&(PRE_PREPARE_TAG as u8)) {
            return Ok(());
        }
        let Ok((_, header)) = wire::codec::decode_prefix::<(u32, Signed<PrePrepare>)>(bytes) else {
            return Ok(()); // Malformed; the full decode says why.
        };
        let PrePrepare { view, seq, .. } = header.payload;
        if source != Source::Replica(self.config.primary(view)) {
            return Err(DropReason("pre-prepare: not from the primary's address"));
        }
        if self.settled.pre_prepared.is_marked(view, seq) {
            return Err(DropReason("pre-prepare: already accepted"));
        }
        Ok(())
    }
}

/// The variant index of [`Message::PrePrepare`] in the codec's encoding
/// (checked by a test).
const PRE_PREPARE_TAG: u32 = 4;

/// `replica` must be the datagram's source.
fn from_replica(
    source: Source,
    replica: ReplicaId,
    what: &'static str,
) -> Result<Addr, DropReason> {
    if source == Source::Replica(replica) {
        Ok(Addr::Replica(replica))
    } else {
        Err(DropReason(what))
    }
}

impl SharedState for Codec {
    type Message = Inbound;
    type Outbound = Outbound;

    fn decode(&self, source: Source, bytes: &[u8]) -> Result<(Addr, Inbound), DropReason> {
        self.screen_pre_prepare(source, bytes)?;
        let msg: Message = wire::decode(bytes)?;
        let config = &*self.config;
        let wrong = "message: not from the sender's address";
        let from = match &msg {
            Message::Request(request) => {
                if source != Source::Other {
                    return Err(DropReason("request: from a replica's address"));
                }
                if self.settled.changing.get() {
                    return Err(DropReason("request: view change in progress"));
                }
                self.auth.check_request(request)?;
                Addr::Client(request.request.client_id)
            }
            Message::Relayed(by, _) => {
                let from = from_replica(source, *by, wrong)?;
                let Message::Relayed(by, mut requests) = msg else {
                    unreachable!("matched above");
                };
                if requests.len() > BATCH_SIZE_MAX {
                    return Err(DropReason("relayed: too many requests"));
                }
                let before = requests.len();
                requests.retain(|r| self.auth.check_request(r).is_ok());
                let refused = before - requests.len();
                return Ok((
                    from,
                    Inbound::Relayed {
                        by,
                        requests,
                        refused,
                    },
                ));
            }
            Message::Reply(reply) | Message::Evicted(reply) => {
                let from = from_replica(source, reply.reply.replica, wrong)?;
                // The client checks the MAC, and only if it needs the reply
                // (see `ReplyQuorum`).
                if !self.auth.is_client() {
                    return Err(DropReason("reply: not a client"));
                }
                from
            }
            Message::PrePrepare(pp, batch) => {
                let primary = config.primary(pp.payload.view);
                let from = from_replica(
                    source,
                    primary,
                    "pre-prepare: not from the primary's address",
                )?;
                if batch.len() > BATCH_SIZE_MAX {
                    return Err(DropReason("pre-prepare: batch too large"));
                }
                config.verify(
                    &pp.payload,
                    &pp.signature,
                    primary,
                    "pre-prepare: bad signature",
                )?;
                if batch_digest(batch) != Some(pp.payload.digest) {
                    return Err(DropReason("pre-prepare: batch does not match digest"));
                }
                if batch.iter().any(|r| self.auth.check_request(r).is_err()) {
                    let Message::PrePrepare(pp, batch) = msg else {
                        unreachable!("matched above");
                    };
                    return Ok((from, Inbound::UncheckedPrePrepare(pp, batch)));
                }
                from
            }
            Message::Prepare(p) => {
                let from = from_replica(source, p.payload.replica, wrong)?;
                if self
                    .settled
                    .prepared
                    .is_marked(p.payload.view, p.payload.seq)
                {
                    return Err(DropReason("prepare: already prepared"));
                }
                config.verify(
                    &p.payload,
                    &p.signature,
                    p.payload.replica,
                    "prepare: bad signature",
                )?;
                from
            }
            Message::Commit(c) => {
                let from = from_replica(source, c.payload.replica, wrong)?;
                if self
                    .settled
                    .committed
                    .is_marked(c.payload.view, c.payload.seq)
                {
                    return Err(DropReason("commit: already committed"));
                }
                config.verify(
                    &c.payload,
                    &c.signature,
                    c.payload.replica,
                    "commit: bad signature",
                )?;
                from
            }
            Message::Checkpoint(c) => {
                let from = from_replica(source, c.payload.replica, wrong)?;
                if c.payload.seq == 0 || !c.payload.seq.is_multiple_of(CHECKPOINT_INTERVAL) {
                    return Err(DropReason("checkpoint: not at an interval"));
                }
                config.verify(
                    &c.payload,
                    &c.signature,
                    c.payload.replica,
                    "checkpoint: bad signature",
                )?;
                from
            }
            Message::ViewChange(vc) => {
                let from = from_replica(source, vc.payload.replica, wrong)?;
                if vc.payload.view <= self.settled.entered.get() {
                    return Err(DropReason("view-change: for a view entered already"));
                }
                check_view_change(config, vc)?;
                from
            }
            Message::NewView(nv) => {
                // Proves itself, whoever relays it: from its source.
                let Source::Replica(relayer) = source else {
                    return Err(DropReason(wrong));
                };
                if nv.view <= self.settled.entered.get() {
                    return Err(DropReason("new-view: for a view entered already"));
                }
                check_new_view(config, nv)?;
                Addr::Replica(relayer)
            }
            Message::Status(s) => {
                let from = from_replica(source, s.payload.replica, wrong)?;
                config.verify(
                    &s.payload,
                    &s.signature,
                    s.payload.replica,
                    "status: bad signature",
                )?;
                from
            }
            Message::StableCheckpoint(s) => {
                let from = from_replica(source, s.replica, wrong)?;
                check_checkpoint_cert(config, &s.cert)?;
                from
            }
            Message::FetchState(f) => {
                let from = from_replica(source, f.payload.replica, wrong)?;
                config.verify(
                    &f.payload,
                    &f.signature,
                    f.payload.replica,
                    "fetch-state: bad signature",
                )?;
                from
            }
            Message::StateChunk(c) => {
                // Checked against the certified checkpoint by the replica.
                from_replica(source, c.replica, wrong)?
            }
            Message::FetchBatch(f) => {
                let from = from_replica(source, f.payload.replica, wrong)?;
                config.verify(
                    &f.payload,
                    &f.signature,
                    f.payload.replica,
                    "fetch-batch: bad signature",
                )?;
                from
            }
            Message::Batch(b) => {
                let from = from_replica(source, b.replica, wrong)?;
                if batch_digest(&b.requests) != Some(b.digest) {
                    return Err(DropReason("batch: does not match digest"));
                }
                from
            }
            Message::QueryStable(q) => {
                let from = from_replica(source, q.payload.replica, wrong)?;
                config.verify(
                    &q.payload,
                    &q.signature,
                    q.payload.replica,
                    "query-stable: bad signature",
                )?;
                from
            }
            Message::ReplyStable(r) => {
                let from = from_replica(source, r.payload.replica, wrong)?;
                config.verify(
                    &r.payload,
                    &r.signature,
                    r.payload.replica,
                    "reply-stable: bad signature",
                )?;
                from
            }
        };
        Ok((from, Inbound::Message(msg)))
    }

    fn encode(&self, msg: &Outbound, buf: &mut Vec<u8>) -> Result<(), DropReason> {
        let signed;
        let msg = match msg {
            Outbound::Message(msg) => msg,
            Outbound::Request(session, request) => {
                // Authenticated as it is encoded, with no copy of the request.
                let variant = Message::REQUEST_VARIANT;
                return self.auth.authenticate_into(variant, *session, request, buf);
            }
            Outbound::PrePrepare(pp, batch) => {
                // Encoded from where the batch lies, not copied into a
                // message.
                let header = self.sign_for_wire(*pp)?;
                return Ok(wire::encode(
                    &PrePrepareOut {
                        header: &header,
                        batch,
                    },
                    buf,
                )?);
            }
            Outbound::Prepare(p) => {
                signed = Message::Prepare(self.sign_for_wire(*p)?);
                &signed
            }
            Outbound::Commit(c) => {
                signed = Message::Commit(self.sign_for_wire(*c)?);
                &signed
            }
            Outbound::Reply(reply) | Outbound::Evicted(reply) => {
                let mac = self.auth.reply_mac(reply)?;
                let evicted = matches!(msg, Outbound::Evicted(_));
                return Ok(wire::encode(
                    &Message::reply_out(evicted, reply, &mac),
                    buf,
                )?);
            }
            Outbound::Status(s) => {
                signed = Message::Status(self.sign_for_wire(*s)?);
                &signed
            }
            Outbound::FetchState(f) => {
                signed = Message::FetchState(self.sign_for_wire(*f)?);
                &signed
            }
            Outbound::FetchBatch(f) => {
                signed = Message::FetchBatch(self.sign_for_wire(*f)?);
                &signed
            }
            Outbound::QueryStable(q) => {
                signed = Message::QueryStable(self.sign_for_wire(*q)?);
                &signed
            }
            Outbound::ReplyStable(r) => {
                signed = Message::ReplyStable(self.sign_for_wire(*r)?);
                &signed
            }
        };
        Ok(wire::encode(msg, buf)?)
    }

    fn describe(&self, bytes: &[u8]) -> String {
        match wire::decode::<Message>(bytes) {
            Ok(msg) => msg.describe(),
            Err(e) => format!("undecodable ({})", e.reason()),
        }
    }
}

/// A stable checkpoint's proof: a quorum of distinct replicas signed the
/// same `(seq, digest)` (§4.3). Sequence number 0, the initial state, needs
/// none.
pub fn check_checkpoint_cert(config: &Config, cert: &CheckpointCert) -> Result<(), DropReason> {
    if cert.seq == 0 {
        return Ok(());
    }
    if !cert.seq.is_multiple_of(CHECKPOINT_INTERVAL) {
        return Err(DropReason("checkpoint proof: not at an interval"));
    }
    let signers: BTreeSet<ReplicaId> = cert.signatures.iter().map(|(r, _)| *r).collect();
    if signers.len() != cert.signatures.len() || signers.len() != config.quorum() {
        return Err(DropReason(
            "checkpoint proof: not a quorum of distinct signers",
        ));
    }
    for (replica, signature) in &cert.signatures {
        let vote = Checkpoint {
            seq: cert.seq,
            digest: cert.digest,
            replica: *replica,
        };
        config.verify(
            &vote,
            signature,
            *replica,
            "checkpoint proof: bad signature",
        )?;
    }
    Ok(())
}

/// A view-change message (§4.4): signed by its sender, for a view after the
/// first, with a valid stable checkpoint and valid prepared certificates for
/// distinct sequence numbers within the watermarks of that checkpoint, from
/// views before the new one.
pub fn check_view_change(config: &Config, vc: &Signed<ViewChange>) -> Result<(), DropReason> {
    let sender = vc.payload.replica;
    let ViewChange {
        view,
        checkpoint,
        prepared,
        ..
    } = &vc.payload;
    if *view == 0 {
        return Err(DropReason("view-change: to view 0"));
    }
    if prepared.len() as u64 > LOG_MAX {
        return Err(DropReason("view-change: too many certificates"));
    }
    config.verify(
        &vc.payload,
        &vc.signature,
        sender,
        "view-change: bad signature",
    )?;
    check_checkpoint_cert(config, checkpoint)?;
    let mut seqs = BTreeSet::new();
    for cert in prepared {
        if cert.view >= *view {
            return Err(DropReason("view-change: certificate from a later view"));
        }
        if cert.seq <= checkpoint.seq || cert.seq > checkpoint.seq.saturating_add(LOG_MAX) {
            return Err(DropReason("view-change: certificate outside watermarks"));
        }
        if !seqs.insert(cert.seq) {
            return Err(DropReason("view-change: two certificates for one seq"));
        }
        check_prepared_cert(config, sender, cert)?;
    }
    Ok(())
}

/// A prepared certificate (§4.2): the primary's pre-prepare and prepares from
/// `quorum - 1` distinct backups, where the sender of the enclosing
/// view-change vouches for its own part with its signature over the whole
/// message.
fn check_prepared_cert(
    config: &Config,
    sender: ReplicaId,
    cert: &PreparedCert,
) -> Result<(), DropReason> {
    let primary = config.primary(cert.view);
    if cert.prepares.len() >= config.quorum() {
        return Err(DropReason("view-change: too many prepares"));
    }
    match &cert.pre_prepare {
        Some(signature) => {
            let pp = PrePrepare {
                view: cert.view,
                seq: cert.seq,
                digest: cert.digest,
            };
            config.verify(&pp, signature, primary, "view-change: bad pre-prepare")?;
        }
        None if sender == primary => {}
        None => return Err(DropReason("view-change: certificate without pre-prepare")),
    }
    let mut listed = BTreeSet::new();
    let mut backups = BTreeSet::new();
    if sender != primary {
        backups.insert(sender);
    }
    for (replica, signature) in &cert.prepares {
        if *replica == primary {
            return Err(DropReason("view-change: prepare from the primary"));
        }
        let prepare = Prepare {
            view: cert.view,
            seq: cert.seq,
            digest: cert.digest,
            replica: *replica,
        };
        if !listed.insert(*replica) {
            return Err(DropReason("view-change: two prepares from one replica"));
        }
        config.verify(&prepare, signature, *replica, "view-change: bad prepare")?;
        backups.insert(*replica);
    }
    if backups.len() + 1 < config.quorum() {
        return Err(DropReason("view-change: too few prepares"));
    }
    Ok(())
}

/// A new-view message (§4.4): a quorum of valid view-change messages for its
/// view from distinct replicas, and exactly the pre-prepares that
/// [`compute_new_view`] derives from them, signed by the view's primary.
pub fn check_new_view(config: &Config, nv: &NewView) -> Result<(), DropReason> {
    if nv.view_changes.len() != config.quorum() || nv.pre_prepares.len() as u64 > LOG_MAX {
        return Err(DropReason("new-view: not a quorum of view-changes"));
    }
    let senders: BTreeSet<ReplicaId> = nv.view_changes.iter().map(|v| v.payload.replica).collect();
    if senders.len() != nv.view_changes.len() {
        return Err(DropReason("new-view: two view-changes from one replica"));
    }
    for vc in &nv.view_changes {
        if vc.payload.view != nv.view {
            return Err(DropReason("new-view: view-change for another view"));
        }
        check_view_change(config, vc)?;
    }
    let primary = config.primary(nv.view);
    if planted::is(bugs::NEW_VIEW_IGNORES_PREPARED) {
        // The planted bug: any pre-prepares the primary signed will do.
        for pp in &nv.pre_prepares {
            if pp.payload.view != nv.view {
                return Err(DropReason("new-view: wrong pre-prepares"));
            }
            config.verify(
                &pp.payload,
                &pp.signature,
                primary,
                "new-view: bad pre-prepare",
            )?;
        }
        return Ok(());
    }
    let (_, expected) = compute_new_view(config, nv.view_changes.iter().map(|v| &v.payload));
    if expected.len() != nv.pre_prepares.len() {
        return Err(DropReason("new-view: wrong pre-prepares"));
    }
    for ((seq, digest), pp) in expected.iter().zip(&nv.pre_prepares) {
        let wanted = PrePrepare {
            view: nv.view,
            seq: *seq,
            digest: *digest,
        };
        if pp.payload != wanted {
            return Err(DropReason("new-view: wrong pre-prepares"));
        }
        config.verify(
            &pp.payload,
            &pp.signature,
            primary,
            "new-view: bad pre-prepare",
        )?;
    }
    Ok(())
}

/// The new primary's computation (§4.4): the highest stable checkpoint in V
/// (min-s, with its proof), and for every sequence number from min-s + 1 to
/// the highest one prepared in V (max-s), the digest of the prepared
/// certificate of the highest view, or the null batch where there is none.
pub fn compute_new_view<'a>(
    config: &Config,
    view_changes: impl Iterator<Item = &'a ViewChange> + Clone,
) -> (CheckpointCert, Vec<(Seq, Digest)>) {
    let stable = view_changes
        .clone()
        .map(|vc| &vc.checkpoint)
        .max_by_key(|cert| cert.seq)
        .expect("at least one view-change")
        .clone();
    let mut chosen: BTreeMap<Seq, (View, Digest)> = BTreeMap::new();
    for vc in view_changes {
        for cert in vc.prepared.iter().filter(|c| c.seq > stable.seq) {
            let entry = chosen.entry(cert.seq).or_insert((cert.view, cert.digest));
            if cert.view > entry.0 {
                *entry = (cert.view, cert.digest);
            }
        }
    }
    let max_s = chosen.keys().next_back().copied().unwrap_or(stable.seq);
    let pre_prepares = (stable.seq + 1..=max_s)
        .map(|seq| {
            let digest = chosen.get(&seq).map_or(config.null_digest, |(_, d)| *d);
            (seq, digest)
        })
        .collect();
    (stable, pre_prepares)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::pbft::StateChunk;

    const N: usize = 4;

    fn group() -> (Vec<SecretKey>, Arc<Config>) {
        let keys: Vec<SecretKey> = (0..N)
            .map(|i| SecretKey::from_seed(format!("codec test {i}").as_bytes()))
            .collect();
        let public: Vec<PublicKey> = keys
            .iter()
            .map(|k| Signer::new(k).unwrap().public_key())
            .collect();
        (keys, Arc::new(Config::new(&public).unwrap()))
    }

    fn replica(config: &Arc<Config>, keys: &[SecretKey], i: u8) -> Codec {
        Codec::replica(Arc::clone(config), ReplicaId(i), &keys[usize::from(i)]).unwrap()
    }

    fn from(i: u8) -> Source {
        Source::Replica(ReplicaId(i))
    }

    fn signer(keys: &[SecretKey], i: u8) -> Signer {
        Signer::new(&keys[usize::from(i)]).unwrap()
    }

    fn bytes(msg: &Message) -> Vec<u8> {
        wire::codec::encode_to_vec(msg).unwrap()
    }

    /// A request from client `id` of `client`, authenticated and encoded.
    fn request_bytes(client: &Codec, id: ClientId, num: u64) -> Vec<u8> {
        let request = Request {
            client_id: id,
            request_num: num,
            op: b"op".to_vec(),
        };
        let mut buf = Vec::new();
        client
            .encode(&Outbound::Request(1, request), &mut buf)
            .unwrap();
        buf
    }

    fn auth_request(client: &Codec, id: ClientId, num: u64) -> AuthRequest {
        match wire::decode::<Message>(&request_bytes(client, id, num)).unwrap() {
            Message::Request(r) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn reason<T: std::fmt::Debug>(result: Result<T, DropReason>) -> &'static str {
        result.expect_err("dropped").0
    }

    /// Clients' requests come from clients' addresses, are dropped unchecked
    /// while the replica changes views, and are checked by the replica's own
    /// entry of their authenticator (the MACs themselves are tested in
    /// `common::client_auth`).
    #[test]
    fn requests_are_checked_at_every_replica_from_clients_only() {
        let (keys, config) = group();
        let client = Codec::client(Arc::clone(&config), b"seed");
        let id = ClientId(7);
        client.register_client(id);
        let request = request_bytes(&client, id, 1);
        for i in 0..N as u8 {
            let (from, _) = replica(&config, &keys, i)
                .decode(Source::Other, &request)
                .unwrap();
            assert_eq!(from, Addr::Client(id));
        }
        // While the replica changes views, requests are dropped before
        // their MACs are checked.
        let changing = replica(&config, &keys, 3);
        changing.set_changing(true);
        assert_eq!(
            reason(changing.decode(Source::Other, &request)),
            "request: view change in progress"
        );
        changing.set_changing(false);
        changing.decode(Source::Other, &request).unwrap();
        // A request from a replica's address is refused, whatever it says.
        let one = replica(&config, &keys, 1);
        assert_eq!(
            reason(one.decode(from(2), &request)),
            "request: from a replica's address"
        );
        // Replica 2's entry broken: replica 1 accepts, replica 2 drops it,
        // and a second key for the client is refused.
        let mut auth = auth_request(&client, id, 2);
        auth.auth[2].0[0] ^= 1;
        let broken = bytes(&Message::Request(auth));
        one.decode(Source::Other, &broken).unwrap();
        let two = replica(&config, &keys, 2);
        assert_eq!(
            reason(two.decode(Source::Other, &broken)),
            "request: bad authenticator"
        );
        let impostor = Codec::client(Arc::clone(&config), b"impostor");
        impostor.register_client(id);
        assert_eq!(
            reason(one.decode(Source::Other, &request_bytes(&impostor, id, 3))),
            "request: client already has another key"
        );
    }

    /// Replies (and evictions) carry a MAC that checks under the client's
    /// keys, and come from the address of the replica they name. (The codec
    /// leaves the MAC to the client, which checks the replies it needs.)
    #[test]
    fn replies_check_and_come_from_the_replica_they_name() {
        let (keys, config) = group();
        let replica_2 = replica(&config, &keys, 2);
        let client = Codec::client(Arc::clone(&config), b"seed");
        let id = ClientId(7);
        let reply_keys = client.register_client(id);
        let reply = Reply {
            view: 0,
            replica: ReplicaId(2),
            client_id: id,
            request_num: 1,
            result: b"ok".to_vec(),
        };
        let mut buf = Vec::new();
        // No request from the client yet: the replica has no key to MAC with.
        assert_eq!(
            reason(replica_2.encode(&Outbound::Reply(reply.clone()), &mut buf)),
            "encode: no key for the client"
        );
        replica_2
            .decode(Source::Other, &request_bytes(&client, id, 1))
            .unwrap();
        for outbound in [Outbound::Reply(reply.clone()), Outbound::Evicted(reply)] {
            buf.clear();
            replica_2.encode(&outbound, &mut buf).unwrap();
            let mac_reply = |bytes: &[u8]| match client.decode(from(2), bytes).unwrap() {
                (sender, Inbound::Message(Message::Reply(reply) | Message::Evicted(reply))) => {
                    assert_eq!(sender, Addr::Replica(ReplicaId(2)));
                    reply
                }
                other => panic!("not a reply: {other:?}"),
            };
            let good = mac_reply(&buf);
            reply_keys.check(&good.reply, &good.mac).unwrap();
            // From another replica's address: refused before the MAC is
            // checked.
            assert_eq!(
                reason(client.decode(from(1), &buf)),
                "message: not from the sender's address"
            );
            let mut tampered = buf.clone();
            *tampered.last_mut().unwrap() ^= 1;
            let bad = mac_reply(&tampered);
            assert_eq!(
                reason(reply_keys.check(&bad.reply, &bad.mac)),
                "reply: bad MAC"
            );
            // A replica takes no replies.
            assert_eq!(
                reason(replica_2.decode(from(2), &buf)),
                "reply: not a client"
            );
        }
    }

    /// A replica pins the keys of the sessions it opens: a client's
    /// registration under one key binds it, and a state transfer's table
    /// pins its sessions' keys, whose MAC keys the first reply derives.
    #[test]
    fn pinned_keys_outlast_others_and_sign_replies() {
        let keys = crate::simulate::pbft::simulated_keys(3, N);
        let config = Arc::new(crate::simulate::pbft::group(&keys));
        let honest = Codec::client(Arc::clone(&config), b"honest");
        let forger = Codec::client(Arc::clone(&config), b"forger");
        let id = ClientId(1);
        honest.register_client(id);
        forger.register_client(id);
        let key = auth_request(&honest, id, 1).key;
        let me = replica(&config, &keys, 1);
        me.repin_clients([(id, key)].into_iter());
        assert_eq!(
            reason(me.decode(Source::Other, &request_bytes(&forger, id, 1))),
            "request: client already has another key"
        );
        let reply = Reply {
            view: 0,
            replica: ReplicaId(1),
            client_id: id,
            request_num: 1,
            result: Vec::new(),
        };
        let mut encoded = Vec::new();
        me.encode(&Outbound::Reply(reply), &mut encoded).unwrap();
        honest.decode(from(1), &encoded).unwrap();
        me.decode(Source::Other, &request_bytes(&honest, id, 2))
            .unwrap();
        // Unpinned, the key stays the first one checked.
        me.unpin_client(id);
        assert!(
            me.decode(Source::Other, &request_bytes(&forger, id, 3))
                .is_err()
        );
        me.pin_client(id, key);
        me.decode(Source::Other, &request_bytes(&honest, id, 3))
            .unwrap();
    }

    /// A signed message that names another replica than its source is
    /// dropped before its signature is checked: a replay of another's
    /// message, or a forgery, costs a decode and a comparison.
    #[test]
    fn messages_from_the_wrong_address_are_dropped_before_the_signature() {
        let (keys, config) = group();
        let backup = replica(&config, &keys, 1);
        let prepare = Prepare {
            view: 0,
            seq: 1,
            digest: Digest::of(b"batch"),
            replica: ReplicaId(2),
        };
        let signed = Signed::sign(prepare, &signer(&keys, 2)).unwrap();
        let good = bytes(&Message::Prepare(signed));
        backup.decode(from(2), &good).unwrap();
        assert_eq!(
            reason(backup.decode(from(3), &good)),
            "message: not from the sender's address"
        );
        assert_eq!(
            reason(backup.decode(Source::Other, &good)),
            "message: not from the sender's address"
        );
        // Signed by replica 3 but naming replica 2, from replica 2's address.
        let forged = Signed::sign(prepare, &signer(&keys, 3)).unwrap();
        assert_eq!(
            reason(backup.decode(from(2), &bytes(&Message::Prepare(forged)))),
            "prepare: bad signature"
        );
    }

    /// A pre-prepare from anywhere but the primary's address, or for a view
    /// and sequence number this replica has accepted already, is dropped
    /// from its header: its batch is not even decoded.
    #[test]
    fn pre_prepares_are_screened_by_their_header() {
        let (keys, config) = group();
        let client = Codec::client(Arc::clone(&config), b"seed");
        client.register_client(ClientId(1));
        let batch = vec![auth_request(&client, ClientId(1), 1)];
        let header = PrePrepare {
            view: 0,
            seq: 1,
            digest: batch_digest(&batch).unwrap(),
        };
        let primary = replica(&config, &keys, 0);
        let mut pp = Vec::new();
        primary
            .encode(&Outbound::PrePrepare(header, batch), &mut pp)
            .unwrap();
        let backup = replica(&config, &keys, 1);
        assert!(matches!(
            backup.decode(from(0), &pp),
            Ok((_, Inbound::Message(Message::PrePrepare(..))))
        ));
        assert_eq!(
            reason(backup.decode(from(2), &pp)),
            "pre-prepare: not from the primary's address"
        );
        assert_eq!(pp[0], PRE_PREPARE_TAG as u8, "the tag is the first byte");
        backup.settle_pre_prepared(0, 1);
        assert_eq!(
            reason(backup.decode(from(0), &pp)),
            "pre-prepare: already accepted"
        );
        // The same sequence number in another view is not screened.
        assert!(!backup.settled.pre_prepared.is_marked(1, 1));
        // Nor is sequence number 0 matched by an empty slot.
        assert!(!backup.settled.pre_prepared.is_marked(0, 0));
    }

    /// A request in a batch that this replica cannot authenticate does not
    /// drop the batch: the pre-prepare comes through unchecked, for the
    /// replica to prepare once others vouch for it. Relayed requests are
    /// filtered one by one.
    #[test]
    fn requests_that_fail_here_do_not_drop_a_batch_or_a_relay() {
        let (keys, config) = group();
        let client = Codec::client(Arc::clone(&config), b"seed");
        for id in 1..=3 {
            client.register_client(ClientId(id));
        }
        let mut batch: Vec<AuthRequest> = (1..=3)
            .map(|id| auth_request(&client, ClientId(id), 1))
            .collect();
        batch[1].auth[2].0[0] ^= 1;
        let header = PrePrepare {
            view: 0,
            seq: 1,
            digest: batch_digest(&batch).unwrap(),
        };
        let mut pp = Vec::new();
        replica(&config, &keys, 0)
            .encode(&Outbound::PrePrepare(header, batch.clone()), &mut pp)
            .unwrap();
        assert!(matches!(
            replica(&config, &keys, 1).decode(from(0), &pp),
            Ok((_, Inbound::Message(Message::PrePrepare(..))))
        ));
        assert!(matches!(
            replica(&config, &keys, 2).decode(from(0), &pp),
            Ok((_, Inbound::UncheckedPrePrepare(..)))
        ));
        let relayed = bytes(&Message::Relayed(ReplicaId(1), batch));
        let Ok((
            _,
            Inbound::Relayed {
                requests, refused, ..
            },
        )) = replica(&config, &keys, 2).decode(from(1), &relayed)
        else {
            panic!("relayed requests come through");
        };
        assert_eq!((requests.len(), refused), (2, 1));
    }

    fn prepared_cert(keys: &[SecretKey], view: View, seq: Seq, digest: Digest) -> PreparedCert {
        let primary = (view % N as u64) as u8;
        let pp = Signed::sign(PrePrepare { view, seq, digest }, &signer(keys, primary)).unwrap();
        let prepares = (0..N as u8)
            .filter(|&r| r != primary)
            .take(2)
            .map(|r| {
                let p = Prepare {
                    view,
                    seq,
                    digest,
                    replica: ReplicaId(r),
                };
                (
                    ReplicaId(r),
                    Signed::sign(p, &signer(keys, r)).unwrap().signature,
                )
            })
            .collect();
        PreparedCert {
            view,
            seq,
            digest,
            pre_prepare: Some(pp.signature),
            prepares,
        }
    }

    fn view_change(
        keys: &[SecretKey],
        sender: u8,
        view: View,
        prepared: Vec<PreparedCert>,
    ) -> Signed<ViewChange> {
        let vc = ViewChange {
            view,
            replica: ReplicaId(sender),
            checkpoint: CheckpointCert {
                seq: 0,
                digest: Digest::default(),
                signatures: Vec::new(),
            },
            prepared,
        };
        Signed::sign(vc, &signer(keys, sender)).unwrap()
    }

    /// §4.4: view-change validation refuses forged prepared certificates,
    /// certificates too small, from the future or outside the watermarks,
    /// and a view change to view 0.
    #[test]
    fn forged_view_changes_are_refused() {
        let (keys, config) = group();
        let digest = Digest::of(b"batch");
        let good = view_change(&keys, 3, 1, vec![prepared_cert(&keys, 0, 1, digest)]);
        check_view_change(&config, &good).unwrap();

        // Certificates altered from a good one, and why each is refused.
        type Alter = fn(&mut PreparedCert);
        let altered: [(Alter, &str); 4] = [
            // A prepare signed by another replica than it names.
            (
                |cert| cert.prepares[0].1 = cert.prepares[1].1,
                "view-change: bad prepare",
            ),
            // Too few prepares (the sender counts for itself).
            (
                |cert| cert.prepares.clear(),
                "view-change: too few prepares",
            ),
            // One prepare listed twice (a padded certificate costs a check
            // per entry).
            (
                |cert| {
                    cert.prepares.truncate(1);
                    cert.prepares.push(cert.prepares[0]);
                },
                "view-change: two prepares from one replica",
            ),
            // More prepares than a quorum needs (view-changes must stay
            // within a datagram).
            (
                |cert| cert.prepares.push(cert.prepares[0]),
                "view-change: too many prepares",
            ),
        ];
        for (alter, why) in altered {
            let mut cert = prepared_cert(&keys, 0, 1, digest);
            alter(&mut cert);
            let vc = view_change(&keys, 3, 1, vec![cert]);
            assert_eq!(reason(check_view_change(&config, &vc)), why);
        }
        // A certificate for the digest the primary did not sign.
        let mut cert = prepared_cert(&keys, 0, 1, digest);
        cert.digest = Digest::of(b"other");
        let swapped = view_change(&keys, 3, 1, vec![cert]);
        assert!(check_view_change(&config, &swapped).is_err());
        // From the view being changed to, or later.
        let future = view_change(&keys, 3, 1, vec![prepared_cert(&keys, 1, 1, digest)]);
        assert_eq!(
            reason(check_view_change(&config, &future)),
            "view-change: certificate from a later view"
        );
        // Beyond the watermarks of its checkpoint, or twice one seq.
        let far = view_change(
            &keys,
            3,
            1,
            vec![prepared_cert(&keys, 0, LOG_MAX + 1, digest)],
        );
        assert_eq!(
            reason(check_view_change(&config, &far)),
            "view-change: certificate outside watermarks"
        );
        let twice = view_change(
            &keys,
            3,
            1,
            vec![
                prepared_cert(&keys, 0, 1, digest),
                prepared_cert(&keys, 0, 1, digest),
            ],
        );
        assert_eq!(
            reason(check_view_change(&config, &twice)),
            "view-change: two certificates for one seq"
        );
        assert_eq!(
            reason(check_view_change(
                &config,
                &view_change(&keys, 3, 0, Vec::new())
            )),
            "view-change: to view 0"
        );
        // A checkpoint proof without enough signers.
        let mut lying = good.payload.clone();
        lying.checkpoint.seq = 8;
        let lying = Signed::sign(lying, &signer(&keys, 3)).unwrap();
        assert!(check_view_change(&config, &lying).is_err());
    }

    fn new_view(
        keys: &[SecretKey],
        view: View,
        vcs: Vec<Signed<ViewChange>>,
        o: &[(Seq, Digest)],
        by: u8,
    ) -> NewView {
        NewView {
            view,
            view_changes: vcs,
            pre_prepares: o
                .iter()
                .map(|&(seq, digest)| {
                    Signed::sign(PrePrepare { view, seq, digest }, &signer(keys, by)).unwrap()
                })
                .collect(),
        }
    }

    /// §4.4: a new-view is checked by recomputing O from its V: an O that
    /// drops or changes what prepared, pre-prepares signed by another than
    /// the view's primary, too few or mixed view-changes are refused.
    #[test]
    fn forged_new_views_are_refused() {
        let (keys, config) = group();
        let digest = Digest::of(b"batch");
        let vcs = || {
            vec![
                view_change(&keys, 1, 1, Vec::new()),
                view_change(&keys, 2, 1, vec![prepared_cert(&keys, 0, 2, digest)]),
                view_change(&keys, 3, 1, Vec::new()),
            ]
        };
        let null = config.null_digest;
        let o = [(1, null), (2, digest)];
        check_new_view(&config, &new_view(&keys, 1, vcs(), &o, 1)).unwrap();
        // Replayed to a replica that entered view 1 already: dropped before
        // a signature is checked, and so are its view-changes.
        let two = replica(&config, &keys, 2);
        let encoded = bytes(&Message::NewView(new_view(&keys, 1, vcs(), &o, 1)));
        two.decode(from(3), &encoded).unwrap();
        two.settle_view(1);
        assert_eq!(
            reason(two.decode(from(3), &encoded)),
            "new-view: for a view entered already"
        );
        assert_eq!(
            reason(two.decode(from(3), &bytes(&Message::ViewChange(vcs().remove(2))))),
            "view-change: for a view entered already"
        );
        // O that ignores the prepared certificate, or nulls it, or is short.
        for wrong in [
            &[(1, null), (2, null)][..],
            &[(1, digest), (2, digest)],
            &[(1, null)],
        ] {
            assert_eq!(
                reason(check_new_view(
                    &config,
                    &new_view(&keys, 1, vcs(), wrong, 1)
                )),
                "new-view: wrong pre-prepares"
            );
        }
        // Signed by a replica that is not view 1's primary.
        assert_eq!(
            reason(check_new_view(&config, &new_view(&keys, 1, vcs(), &o, 2))),
            "new-view: bad pre-prepare"
        );
        // Too few view-changes, or one twice, or one for another view.
        let mut few = vcs();
        few.pop();
        assert_eq!(
            reason(check_new_view(&config, &new_view(&keys, 1, few, &o, 1))),
            "new-view: not a quorum of view-changes"
        );
        let mut twice = vcs();
        twice[2] = twice[1].clone();
        assert_eq!(
            reason(check_new_view(&config, &new_view(&keys, 1, twice, &o, 1))),
            "new-view: two view-changes from one replica"
        );
        let mut mixed = vcs();
        mixed[0] = view_change(&keys, 1, 2, Vec::new());
        assert_eq!(
            reason(check_new_view(&config, &new_view(&keys, 1, mixed, &o, 1))),
            "new-view: view-change for another view"
        );
    }

    /// State chunks are unsigned: the codec only checks who it says sent it
    /// came from there (the replica checks the chunk against the
    /// checkpoint, see `replica/transfer.rs`).
    #[test]
    fn state_chunks_must_come_from_the_replica_they_name() {
        let (keys, config) = group();
        let chunk = StateChunk {
            replica: ReplicaId(2),
            seq: 8,
            index: 0,
            size: u64::MAX,
            data: vec![1; 10],
            proof: Vec::new(),
        };
        let msg = bytes(&Message::StateChunk(chunk));
        let backup = replica(&config, &keys, 1);
        backup.decode(from(2), &msg).unwrap();
        assert_eq!(
            reason(backup.decode(from(3), &msg)),
            "message: not from the sender's address"
        );
    }

    /// The largest new-view the checks accept for quorums of `q`, encoded: `q`
    /// view-changes, each with a checkpoint proof of a quorum of
    /// signatures and `LOG_MAX` certificates of `q - 1` prepares, every
    /// number at its longest varint.
    fn largest_new_view(q: usize) -> usize {
        let sig = Signature([7; 64]);
        let far = u64::MAX;
        let cert = PreparedCert {
            view: far,
            seq: far,
            digest: Digest([1; 32]),
            pre_prepare: Some(sig),
            prepares: vec![(ReplicaId(u8::MAX), sig); q - 1],
        };
        let vc = Signed {
            payload: ViewChange {
                view: far,
                replica: ReplicaId(u8::MAX),
                checkpoint: CheckpointCert {
                    seq: far,
                    digest: Digest([1; 32]),
                    signatures: vec![(ReplicaId(u8::MAX), sig); q],
                },
                prepared: vec![cert; LOG_MAX as usize],
            },
            signature: sig,
        };
        let pp = Signed {
            payload: PrePrepare {
                view: far,
                seq: far,
                digest: Digest([1; 32]),
            },
            signature: sig,
        };
        let nv = NewView {
            view: far,
            view_changes: vec![vc; q],
            pre_prepares: vec![pp; LOG_MAX as usize],
        };
        wire::codec::encode_to_vec(&Message::NewView(nv)).map_or(usize::MAX, |b| b.len())
    }

    #[test]
    fn the_largest_new_view_fits_a_datagram_up_to_replicas_max() {
        let quorum = |n: usize| (n + (n - 1) / 3 + 2) / 2;
        for n in 1..=REPLICAS_MAX {
            let keys = crate::simulate::pbft::simulated_keys(5, n);
            assert_eq!(quorum(n), crate::simulate::pbft::group(&keys).quorum());
            assert!(
                largest_new_view(quorum(n)) <= wire::MESSAGE_SIZE_MAX,
                "n = {n}"
            );
        }
        assert!(largest_new_view(quorum(REPLICAS_MAX + 1)) > wire::MESSAGE_SIZE_MAX);
    }
}
