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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use runtime::{Addr, DropReason, ReplicaId, SharedState, Source};
use wire::client::Request;
use wire::crypto::verify_digest;
use wire::pbft::{
    AuthRequest, Checkpoint, CheckpointCert, Commit, FetchBatch, FetchState, MacReply, Message,
    NewView, PrePrepare, Prepare, PreparedCert, QueryStable, ReplyStable, Seq, Status, View,
    ViewChange,
};
use wire::{
    ClientId, CryptoError, Digest, MacKey, PublicKey, SecretKey, Signature, Signed, Signer,
    VerifyingKey,
};

use super::{BATCH_SIZE_MAX, CHECKPOINT_INTERVAL, CLIENT_KEYS_MAX, CLIENT_TABLE_MAX, LOG_MAX};
use crate::planted::{self, Bug};

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
    /// Sessions the client table holds (see `client_table`).
    pub client_table_max: usize,
}

impl Config {
    /// The group of replicas whose public keys are `keys`, in id order.
    pub fn new(keys: &[PublicKey]) -> Result<Config, CryptoError> {
        assert!(!keys.is_empty() && keys.len() <= 255, "1..=255 replicas");
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
        })
    }

    /// The same group with a client table of at most `max` sessions.
    pub fn with_client_table_max(mut self, max: usize) -> Config {
        assert!(max > 0);
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
        if planted::is(Bug::QuorumFPlusOne) {
            return self.f + 1;
        }
        if planted::is(Bug::QuorumTwoFPlusOne) {
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
    /// A client's registration, as a hello to the replicas it does not send
    /// its requests to (authenticated like a request).
    Hello(Request),
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
    macs: Macs,
    /// What the replica's protocol thread has settled (unused by clients).
    settled: Settled,
}

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
/// The protocol thread writes, decoding threads read, without locks. A slot
/// is overwritten only by a sequence number `SETTLED_SLOTS` higher, by when
/// the older one is below the low watermark; a reader that sees a slot's
/// view and sequence number from different writes can only drop a message
/// for a sequence number the replica drops anyway. Dropping is always safe:
/// nothing unverified is ever accepted.
#[derive(Debug)]
struct Settled {
    pre_prepared: [(AtomicU64, AtomicU64); SETTLED_SLOTS],
    prepared: [(AtomicU64, AtomicU64); SETTLED_SLOTS],
    committed: [(AtomicU64, AtomicU64); SETTLED_SLOTS],
}

impl Settled {
    fn new() -> Settled {
        let slots = || std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0)));
        Settled {
            pre_prepared: slots(),
            prepared: slots(),
            committed: slots(),
        }
    }

    fn slot(seq: Seq) -> usize {
        (seq % SETTLED_SLOTS as u64) as usize
    }

    fn set(slots: &[(AtomicU64, AtomicU64)], view: View, seq: Seq) {
        let (v, s) = &slots[Self::slot(seq)];
        v.store(view, Ordering::Relaxed);
        s.store(seq, Ordering::Release);
    }

    fn is_set(slots: &[(AtomicU64, AtomicU64)], view: View, seq: Seq) -> bool {
        // Sequence number 0 is never in the log: an unwritten slot (0, 0)
        // must not match a forged message for it.
        let (v, s) = &slots[Self::slot(seq)];
        seq != 0 && s.load(Ordering::Acquire) == seq && v.load(Ordering::Relaxed) == view
    }
}

/// The keys that authenticate requests and replies (§4: MACs, one key per
/// client-replica pair).
#[derive(Debug)]
enum Macs {
    /// A replica's secret key (for ECDH) and the key it shares with each
    /// client it authenticated a request from: the first public key under
    /// which a client's request checked wins, and the table holds at most
    /// [`CLIENT_KEYS_MAX`] clients.
    Replica {
        /// This replica's id: which entry of a request's authenticator is
        /// its own.
        me: ReplicaId,
        secret: SecretKey,
        /// SipHash (std's default): client ids are chosen by clients, so a
        /// hasher without a secret key would be a hash-flooding target.
        clients: RwLock<std::collections::HashMap<ClientId, (PublicKey, MacKey)>>,
    },
    /// The clients of a client node: each one's key pair derives from `seed`
    /// and its id; for each registered client, its public key and the key it
    /// shares with each replica, in replica order.
    Client {
        seed: Vec<u8>,
        clients: RwLock<std::collections::HashMap<ClientId, ClientKeys>>,
    },
}

/// A client's public key, and the key it shares with each replica, in replica
/// order.
type ClientKeys = (PublicKey, Arc<[MacKey]>);

/// Client `id`'s secret key, derived from the client key seed (simulated if
/// the group's keys are).
fn client_secret(config: &Config, seed: &[u8], id: ClientId) -> SecretKey {
    let mut bytes = b"pbft client ".to_vec();
    bytes.extend_from_slice(seed);
    bytes.extend_from_slice(&id.0.to_le_bytes());
    if config.simulated() {
        SecretKey::simulated(&bytes)
    } else {
        SecretKey::from_seed(&bytes)
    }
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
            config,
            signer: Some(Signer::new(key)?),
            settled: Settled::new(),
            macs: Macs::Replica {
                me,
                secret: key.clone(),
                clients: RwLock::new(std::collections::HashMap::new()),
            },
        })
    }

    /// A client node's codec: it checks the MACs of replies to the clients
    /// registered with [`Codec::register_client`], whose key pairs derive from
    /// `client_key_seed`; it signs nothing.
    pub fn client(config: Arc<Config>, client_key_seed: &[u8]) -> Codec {
        Codec {
            config,
            signer: None,
            settled: Settled::new(),
            macs: Macs::Client {
                seed: client_key_seed.to_vec(),
                clients: RwLock::new(std::collections::HashMap::new()),
            },
        }
    }

    /// Derives client `id`'s key pair and the keys it shares with every
    /// replica (n ECDH computations, once), so that its requests are
    /// authenticated and replies to it accepted.
    pub fn register_client(&self, id: ClientId) {
        let Macs::Client { seed, clients } = &self.macs else {
            panic!("only a client codec registers clients");
        };
        let secret = client_secret(&self.config, seed, id);
        let public = Signer::new(&secret)
            .expect("seeded keys are valid")
            .public_key();
        let keys: Arc<[MacKey]> = self
            .config
            .keys
            .iter()
            .map(|replica| MacKey::agree(replica, &secret).expect("seeded keys are valid"))
            .collect();
        clients
            .write()
            .expect("not poisoned")
            .insert(id, (public, keys));
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The replica accepted a pre-prepare at (`view`, `seq`) and has its
    /// batch: its codec drops further pre-prepares for them unread.
    pub(crate) fn settle_pre_prepared(&self, view: View, seq: Seq) {
        Settled::set(&self.settled.pre_prepared, view, seq);
    }

    /// The replica is prepared at (`view`, `seq`): its codec drops further
    /// prepares for them unchecked.
    pub(crate) fn settle_prepared(&self, view: View, seq: Seq) {
        Settled::set(&self.settled.prepared, view, seq);
    }

    /// The replica is committed-local at (`view`, `seq`): its codec drops
    /// further commits for them unchecked.
    pub(crate) fn settle_committed(&self, view: View, seq: Seq) {
        Settled::set(&self.settled.committed, view, seq);
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

    /// A replica MACs `reply` under the key it shares with the client.
    fn mac_reply(&self, reply: &Reply) -> Result<MacReply, DropReason> {
        let Macs::Replica { clients, .. } = &self.macs else {
            return Err(DropReason("encode: a client sends no replies"));
        };
        let mac = clients
            .read()
            .expect("not poisoned")
            .get(&reply.client_id)
            .ok_or(DropReason("encode: no key for the client"))?
            .1
            .mac_encoded(reply)
            .map_err(|_| DropReason("encode: failed"))?;
        Ok(MacReply {
            reply: reply.clone(),
            mac,
        })
    }

    /// A client authenticates its request under `session` for every
    /// replica: one MAC per replica, under the key the client shares with it.
    fn authenticate(&self, session: u64, request: &Request) -> Result<AuthRequest, DropReason> {
        let Macs::Client { clients, .. } = &self.macs else {
            return Err(DropReason("encode: a replica sends no requests"));
        };
        let (key, keys) = clients
            .read()
            .expect("not poisoned")
            .get(&request.client_id)
            .cloned()
            .ok_or(DropReason("encode: no such client"))?;
        let mut auth = AuthRequest {
            session,
            request: request.clone(),
            key,
            auth: Vec::new(),
        };
        let bytes = wire::codec::encode_to_vec(&auth.authenticated())
            .map_err(|_| DropReason("encode: failed"))?;
        auth.auth = keys.iter().map(|key| key.mac(&bytes)).collect();
        Ok(auth)
    }

    /// A replica checks its own entry of a request's authenticator, under
    /// the key it shares with the request's client (derived by ECDH from the
    /// key the request carries, and kept, the first time).
    fn check_request(&self, request: &AuthRequest) -> Result<(), DropReason> {
        let Macs::Replica {
            me,
            secret,
            clients,
        } = &self.macs
        else {
            return Err(DropReason("request: not a replica"));
        };
        let mac = match request.auth.get(usize::from(me.0)) {
            Some(mac) if request.auth.len() == self.config.n => mac,
            _ => return Err(DropReason("request: bad authenticator")),
        };
        let client = request.request.client_id;
        match clients.read().expect("not poisoned").get(&client) {
            Some((known, key)) if *known == request.key => {
                return key
                    .verify_encoded(&request.authenticated(), mac)
                    .map_err(|_| DropReason("request: bad authenticator"));
            }
            Some(_) => return Err(DropReason("request: client already has another key")),
            None => {}
        }
        // A first request from this client: derive the shared key (ECDH),
        // and keep it once a request checked under it.
        let public = request
            .key
            .parse()
            .map_err(|_| DropReason("request: bad client key"))?;
        let key =
            MacKey::agree(&public, secret).map_err(|_| DropReason("request: bad client key"))?;
        key.verify_encoded(&request.authenticated(), mac)
            .map_err(|_| DropReason("request: bad authenticator"))?;
        let mut clients = clients.write().expect("not poisoned");
        if clients.len() >= CLIENT_KEYS_MAX && !clients.contains_key(&client) {
            // Checked, but not kept: replies to this client are not sent
            // (no key to MAC them), and its next request pays for ECDH again.
            return Ok(());
        }
        // Another thread may have raced us here: the first key still wins.
        let (known, _) = clients.entry(client).or_insert((request.key, key));
        if *known != request.key {
            return Err(DropReason("request: client already has another key"));
        }
        Ok(())
    }

    /// A client checks a reply's MAC under the key it shares with the replica
    /// the reply names.
    fn check_reply(&self, reply: &MacReply) -> Result<(), DropReason> {
        let Macs::Client { clients, .. } = &self.macs else {
            return Err(DropReason("reply: not a client"));
        };
        let (_, keys) = clients
            .read()
            .expect("not poisoned")
            .get(&reply.reply.client_id)
            .cloned()
            .ok_or(DropReason("reply: no such client"))?;
        let key = keys
            .get(usize::from(reply.reply.replica.0))
            .ok_or(DropReason("decode: no such replica"))?;
        key.verify_encoded(&reply.reply, &reply.mac)
            .map_err(|_| DropReason("reply: bad MAC"))
    }

    /// The pre-prepare's header, read without decoding its batch, and
    /// checked against its source and what this replica already accepted.
    fn screen_pre_prepare(&self, source: Source, bytes: &[u8]) -> Result<(), DropReason> {
        let Ok((tag, header)) = wire::codec::decode_prefix::<(u32, Signed<PrePrepare>)>(bytes)
        else {
            return Ok(()); // Not a pre-prepare; the full decode decides.
        };
        if tag != PRE_PREPARE_TAG {
            return Ok(());
        }
        let PrePrepare { view, seq, .. } = header.payload;
        if source != Source::Replica(self.config.primary(view)) {
            return Err(DropReason("pre-prepare: not from the primary's address"));
        }
        if Settled::is_set(&self.settled.pre_prepared, view, seq) {
            return Err(DropReason("pre-prepare: already accepted"));
        }
        Ok(())
    }
}

/// The variant index of [`Message::PrePrepare`] in the codec's encoding.
const PRE_PREPARE_TAG: u32 = 5;

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
            Message::Request(request) | Message::Hello(request) => {
                if source != Source::Other {
                    return Err(DropReason("request: from a replica's address"));
                }
                self.check_request(request)?;
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
                requests.retain(|r| self.check_request(r).is_ok());
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
                self.check_reply(reply)?;
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
                if batch.iter().any(|r| self.check_request(r).is_err()) {
                    let Message::PrePrepare(pp, batch) = msg else {
                        unreachable!("matched above");
                    };
                    return Ok((from, Inbound::UncheckedPrePrepare(pp, batch)));
                }
                from
            }
            Message::Prepare(p) => {
                let from = from_replica(source, p.payload.replica, wrong)?;
                if Settled::is_set(&self.settled.prepared, p.payload.view, p.payload.seq) {
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
                if Settled::is_set(&self.settled.committed, c.payload.view, c.payload.seq) {
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
                check_view_change(config, vc)?;
                from
            }
            Message::NewView(nv) => {
                // Proves itself, whoever relays it: from its source.
                let Source::Replica(relayer) = source else {
                    return Err(DropReason(wrong));
                };
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
                signed = Message::Request(self.authenticate(*session, request)?);
                &signed
            }
            Outbound::Hello(request) => {
                signed = Message::Hello(self.authenticate(0, request)?);
                &signed
            }
            Outbound::PrePrepare(pp, batch) => {
                signed = Message::PrePrepare(self.sign_for_wire(*pp)?, batch.clone());
                &signed
            }
            Outbound::Prepare(p) => {
                signed = Message::Prepare(self.sign_for_wire(*p)?);
                &signed
            }
            Outbound::Commit(c) => {
                signed = Message::Commit(self.sign_for_wire(*c)?);
                &signed
            }
            Outbound::Reply(r) => {
                signed = Message::Reply(self.mac_reply(r)?);
                &signed
            }
            Outbound::Evicted(r) => {
                signed = Message::Evicted(self.mac_reply(r)?);
                &signed
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
    if signers.len() != cert.signatures.len() || signers.len() < config.quorum() {
        return Err(DropReason("checkpoint proof: too few distinct signers"));
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
    if cert.prepares.len() > config.n {
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
    if nv.view_changes.len() > config.n || nv.pre_prepares.len() as u64 > LOG_MAX {
        return Err(DropReason("new-view: too large"));
    }
    let senders: BTreeSet<ReplicaId> = nv.view_changes.iter().map(|v| v.payload.replica).collect();
    if senders.len() != nv.view_changes.len() || senders.len() < config.quorum() {
        return Err(DropReason("new-view: too few distinct view-changes"));
    }
    for vc in &nv.view_changes {
        if vc.payload.view != nv.view {
            return Err(DropReason("new-view: view-change for another view"));
        }
        check_view_change(config, vc)?;
    }
    let primary = config.primary(nv.view);
    if planted::is(Bug::NewViewIgnoresPrepared) {
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
