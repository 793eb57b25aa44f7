//! The shared half of PBFT nodes: configuration, signing on encode, and
//! decoding with every check that needs no protocol state (signatures,
//! digests, certificate shapes, a new-view's O recomputed from its V).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use runtime::{Addr, DropReason, ReplicaId, SharedState};
use rustc_hash::FxHashMap;
use wire::client::Request;
use wire::crypto::verify_digest;
use wire::pbft::{
    AuthRequest, Checkpoint, CheckpointCert, Commit, FetchBatch, FetchState, MacReply, Message,
    NewView, PrePrepare, Prepare, PreparedCert, Reply, Seq, Status, View, ViewChange,
};
use wire::{
    ClientId, CryptoError, Digest, MacKey, PublicKey, SecretKey, Signature, Signed, Signer,
    VerifyingKey,
};

use super::{CHECKPOINT_INTERVAL, CLIENT_KEYS_MAX, LOG_MAX};

/// What every node knows about the group: its size and the replicas' keys.
#[derive(Debug)]
pub struct Config {
    /// n = 3f + 1 (or more).
    pub n: usize,
    pub f: usize,
    keys: Vec<VerifyingKey>,
    public_keys: Vec<PublicKey>,
    /// Digest of the null batch (no requests), which a new primary proposes
    /// for the gaps in O.
    pub null_digest: Digest,
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
        })
    }

    /// The replicas' public keys, in id order.
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public_keys
    }

    /// The primary of `view` (§4.1).
    pub fn primary(&self, view: View) -> ReplicaId {
        ReplicaId((view % self.n as u64) as u8)
    }

    /// 2f + 1.
    pub fn quorum(&self) -> usize {
        2 * self.f + 1
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
    PrePrepare, Prepare, Commit, Checkpoint, ViewChange, Status, FetchState, FetchBatch
);

/// The digest a pre-prepare names its batch by.
pub fn batch_digest(batch: &[AuthRequest]) -> Option<Digest> {
    Digest::of_encoded(&batch).ok()
}

/// What a PBFT node hands its context to send. Messages to sign name their
/// payload, which `encode` signs with the node's key (on the runtime's send
/// threads); everything else is sent as it is.
#[derive(Clone, Debug)]
pub enum Outbound {
    Message(Message),
    /// A client's request, which its codec authenticates for every replica.
    Request(Request),
    PrePrepare(PrePrepare, Vec<AuthRequest>),
    Prepare(Prepare),
    Commit(Commit),
    Reply(Reply),
    Status(Status),
    FetchState(FetchState),
    FetchBatch(FetchBatch),
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

/// Sequence numbers whose prepare or commit phase this replica has finished
/// in a view, so that its codec can drop the rest of a quorum without
/// checking its signatures: once prepared at (v, n), further prepares for
/// (v, n) change nothing, and once committed-local at (v, n), neither do
/// commits for (v, n) (§4.2). With n = 4 that is 8 of the 24 signature
/// checks per batch. Both are per view: a view change starts the phases of
/// what did not execute again.
///
/// The protocol thread writes, decoding threads read, without locks. A slot
/// is overwritten only by a sequence number `SETTLED_SLOTS` higher, by when
/// the older one is below the low watermark; a reader that sees a slot's
/// view and sequence number from different writes can only drop a message
/// for a sequence number the replica drops anyway. Dropping is always safe:
/// nothing unverified is ever accepted.
#[derive(Debug)]
struct Settled {
    /// Per slot: the view, and the sequence number prepared in it.
    prepared: [(AtomicU64, AtomicU64); SETTLED_SLOTS],
    /// Per slot: the view, and the sequence number committed-local in it.
    committed: [(AtomicU64, AtomicU64); SETTLED_SLOTS],
}

impl Settled {
    fn new() -> Settled {
        Settled {
            prepared: std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0))),
            committed: std::array::from_fn(|_| (AtomicU64::new(0), AtomicU64::new(0))),
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
        let (v, s) = &slots[Self::slot(seq)];
        s.load(Ordering::Acquire) == seq && v.load(Ordering::Relaxed) == view
    }
}

/// The keys that authenticate replies (§4: MACs, one key per client-replica
/// pair).
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
        clients: RwLock<FxHashMap<ClientId, (PublicKey, MacKey)>>,
    },
    /// The clients of a client node: each one's key pair derives from `seed`
    /// and its id; for each registered client, its public key and the key it
    /// shares with each replica, in replica order.
    Client {
        seed: Vec<u8>,
        clients: RwLock<FxHashMap<ClientId, ClientKeys>>,
    },
}

/// A client's public key, and the key it shares with each replica, in replica
/// order.
type ClientKeys = (PublicKey, Arc<[MacKey]>);

/// Client `id`'s secret key, derived from the client key seed.
fn client_secret(seed: &[u8], id: ClientId) -> SecretKey {
    let mut bytes = b"pbft client ".to_vec();
    bytes.extend_from_slice(seed);
    bytes.extend_from_slice(&id.0.to_le_bytes());
    SecretKey::from_seed(&bytes)
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
                clients: RwLock::new(FxHashMap::default()),
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
                clients: RwLock::new(FxHashMap::default()),
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
        let secret = client_secret(seed, id);
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

    /// A client authenticates its request for every replica: one MAC per
    /// replica, under the key the client shares with it.
    fn authenticate(&self, request: &Request) -> Result<AuthRequest, DropReason> {
        let Macs::Client { clients, .. } = &self.macs else {
            return Err(DropReason("encode: a replica sends no requests"));
        };
        let (key, keys) = clients
            .read()
            .expect("not poisoned")
            .get(&request.client_id)
            .cloned()
            .ok_or(DropReason("encode: no such client"))?;
        let bytes =
            wire::codec::encode_to_vec(request).map_err(|_| DropReason("encode: failed"))?;
        Ok(AuthRequest {
            request: request.clone(),
            key,
            auth: keys.iter().map(|key| key.mac(&bytes)).collect(),
        })
    }

    /// A replica checks its own entry of each request's authenticator, under
    /// the key it shares with the request's client. `what` names the failure:
    /// a request from a client, or one in a pre-prepare.
    fn check_requests(
        &self,
        requests: &[AuthRequest],
        what: &'static str,
    ) -> Result<(), DropReason> {
        let Macs::Replica {
            me,
            secret,
            clients,
        } = &self.macs
        else {
            return Err(DropReason("request: not a replica"));
        };
        let me = usize::from(me.0);
        let mut unknown = Vec::new();
        {
            let clients = clients.read().expect("not poisoned");
            for request in requests {
                let mac = match request.auth.get(me) {
                    Some(mac) if request.auth.len() == self.config.n => mac,
                    _ => return Err(DropReason(what)),
                };
                match clients.get(&request.request.client_id) {
                    Some((known, key)) if *known == request.key => {
                        key.verify_encoded(&request.request, mac)
                            .map_err(|_| DropReason(what))?;
                    }
                    Some(_) => return Err(DropReason("request: client already has another key")),
                    None => unknown.push((request, mac)),
                }
            }
        }
        // First requests from clients: derive the shared key (ECDH), and keep
        // it once a request checked under it.
        for (request, mac) in unknown {
            let public = request
                .key
                .parse()
                .map_err(|_| DropReason("request: bad client key"))?;
            let key = MacKey::agree(&public, secret)
                .map_err(|_| DropReason("request: bad client key"))?;
            key.verify_encoded(&request.request, mac)
                .map_err(|_| DropReason(what))?;
            let mut clients = clients.write().expect("not poisoned");
            if clients.len() >= CLIENT_KEYS_MAX && !clients.contains_key(&request.request.client_id)
            {
                // Checked, but not kept: replies to this client are not sent
                // (no key to MAC them), and its next request pays for ECDH
                // again.
                continue;
            }
            // Another thread may have raced us here: the first key still wins.
            let (known, _) = clients
                .entry(request.request.client_id)
                .or_insert((request.key, key));
            if *known != request.key {
                return Err(DropReason("request: client already has another key"));
            }
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

    pub fn config(&self) -> &Arc<Config> {
        &self.config
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

    fn check_view_change(&self, vc: &Signed<ViewChange>) -> Result<(), DropReason> {
        check_view_change(&self.config, vc)
    }
}

impl SharedState for Codec {
    type Message = Message;
    type Outbound = Outbound;

    fn decode(&self, bytes: &[u8]) -> Result<(Addr, Message), DropReason> {
        let msg: Message = wire::decode(bytes)?;
        let config = &*self.config;
        let from = match &msg {
            Message::Request(request) => {
                self.check_requests(std::slice::from_ref(request), "request: bad authenticator")?;
                Addr::Client(request.request.client_id)
            }
            Message::Hello(client) => Addr::Client(*client),
            Message::Relayed(replica, request) => {
                config.key(*replica)?;
                self.check_requests(std::slice::from_ref(request), "relayed: bad authenticator")?;
                Addr::Replica(*replica)
            }
            Message::Reply(reply) => {
                self.check_reply(reply)?;
                Addr::Replica(reply.reply.replica)
            }
            Message::PrePrepare(pp, batch) => {
                let primary = config.primary(pp.payload.view);
                config.verify(
                    &pp.payload,
                    &pp.signature,
                    primary,
                    "pre-prepare: bad signature",
                )?;
                if batch_digest(batch) != Some(pp.payload.digest) {
                    return Err(DropReason("pre-prepare: batch does not match digest"));
                }
                self.check_requests(batch, "pre-prepare: a request is not authenticated")?;
                Addr::Replica(primary)
            }
            Message::Prepare(p) => {
                if Settled::is_set(&self.settled.prepared, p.payload.view, p.payload.seq) {
                    return Err(DropReason("prepare: already prepared"));
                }
                let r = p.payload.replica;
                config.verify(&p.payload, &p.signature, r, "prepare: bad signature")?;
                Addr::Replica(r)
            }
            Message::Commit(c) => {
                if Settled::is_set(&self.settled.committed, c.payload.view, c.payload.seq) {
                    return Err(DropReason("commit: already committed"));
                }
                let r = c.payload.replica;
                config.verify(&c.payload, &c.signature, r, "commit: bad signature")?;
                Addr::Replica(r)
            }
            Message::Checkpoint(c) => {
                let r = c.payload.replica;
                config.verify(&c.payload, &c.signature, r, "checkpoint: bad signature")?;
                if c.payload.seq == 0 || !c.payload.seq.is_multiple_of(CHECKPOINT_INTERVAL) {
                    return Err(DropReason("checkpoint: not at an interval"));
                }
                Addr::Replica(r)
            }
            Message::ViewChange(vc) => {
                self.check_view_change(vc)?;
                Addr::Replica(vc.payload.replica)
            }
            Message::NewView(nv) => {
                check_new_view(config, nv)?;
                Addr::Replica(config.primary(nv.view))
            }
            Message::Status(s) => {
                let r = s.payload.replica;
                config.verify(&s.payload, &s.signature, r, "status: bad signature")?;
                Addr::Replica(r)
            }
            Message::StableCheckpoint(s) => {
                check_checkpoint_cert(config, &s.cert)?;
                config.key(s.replica)?;
                Addr::Replica(s.replica)
            }
            Message::FetchState(f) => {
                let r = f.payload.replica;
                config.verify(&f.payload, &f.signature, r, "fetch-state: bad signature")?;
                Addr::Replica(r)
            }
            Message::StateChunk(c) => {
                config.key(c.replica)?;
                Addr::Replica(c.replica)
            }
            Message::FetchBatch(f) => {
                let r = f.payload.replica;
                config.verify(&f.payload, &f.signature, r, "fetch-batch: bad signature")?;
                Addr::Replica(r)
            }
            Message::Batch(b) => {
                config.key(b.replica)?;
                if batch_digest(&b.requests) != Some(b.digest) {
                    return Err(DropReason("batch: does not match digest"));
                }
                Addr::Replica(b.replica)
            }
        };
        Ok((from, msg))
    }

    fn encode(&self, msg: &Outbound, buf: &mut Vec<u8>) -> Result<(), DropReason> {
        let signed;
        let msg = match msg {
            Outbound::Message(msg) => msg,
            Outbound::Request(request) => {
                signed = Message::Request(self.authenticate(request)?);
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
        };
        Ok(wire::encode(msg, buf)?)
    }
}

/// A stable checkpoint's proof: 2f+1 distinct replicas signed the same
/// `(seq, digest)` (§4.3). Sequence number 0, the initial state, needs none.
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

/// A view-change message (§4.4): signed by its sender, a valid stable
/// checkpoint, and valid prepared certificates for distinct sequence numbers
/// within the watermarks of that checkpoint, from views before the new one.
fn check_view_change(config: &Config, vc: &Signed<ViewChange>) -> Result<(), DropReason> {
    let sender = vc.payload.replica;
    config.verify(
        &vc.payload,
        &vc.signature,
        sender,
        "view-change: bad signature",
    )?;
    let ViewChange {
        view,
        checkpoint,
        prepared,
        ..
    } = &vc.payload;
    check_checkpoint_cert(config, checkpoint)?;
    if prepared.len() as u64 > LOG_MAX {
        return Err(DropReason("view-change: too many certificates"));
    }
    let mut seqs = BTreeSet::new();
    for cert in prepared {
        if cert.view >= *view {
            return Err(DropReason("view-change: certificate from a later view"));
        }
        if cert.seq <= checkpoint.seq || cert.seq > checkpoint.seq + LOG_MAX {
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
/// 2f distinct backups, where the sender of the enclosing view-change vouches
/// for its own part with its signature over the whole message.
fn check_prepared_cert(
    config: &Config,
    sender: ReplicaId,
    cert: &PreparedCert,
) -> Result<(), DropReason> {
    let primary = config.primary(cert.view);
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
    if backups.len() < 2 * config.f {
        return Err(DropReason("view-change: too few prepares"));
    }
    Ok(())
}

/// A new-view message (§4.4): 2f+1 valid view-change messages for its view
/// from distinct replicas, and exactly the pre-prepares that
/// [`compute_new_view`] derives from them, signed by the view's primary.
fn check_new_view(config: &Config, nv: &NewView) -> Result<(), DropReason> {
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
    let (_, expected) = compute_new_view(config, nv.view_changes.iter().map(|v| &v.payload));
    if expected.len() != nv.pre_prepares.len() {
        return Err(DropReason("new-view: wrong pre-prepares"));
    }
    let primary = config.primary(nv.view);
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

    fn group() -> (Vec<SecretKey>, Arc<Config>) {
        let keys: Vec<SecretKey> = (0..4)
            .map(|i| SecretKey::from_seed(format!("codec test {i}").as_bytes()))
            .collect();
        let public: Vec<PublicKey> = keys
            .iter()
            .map(|k| Signer::new(k).unwrap().public_key())
            .collect();
        (keys, Arc::new(Config::new(&public).unwrap()))
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
            .encode(&Outbound::Request(request), &mut buf)
            .unwrap();
        buf
    }

    /// `request_overhead` bounds what a request adds to a batch beyond its
    /// operation, with the longest varints, so a batch that
    /// `BATCH_BYTES_MAX` admits fits a datagram.
    #[test]
    fn request_overhead_bounds_the_encoding() {
        for n in [4, 7, 10] {
            let request = AuthRequest {
                request: Request {
                    client_id: ClientId(u64::MAX),
                    request_num: u64::MAX,
                    op: vec![7; super::super::REQUEST_OP_MAX],
                },
                key: Signer::new(&SecretKey::from_seed(b"k"))
                    .unwrap()
                    .public_key(),
                auth: vec![wire::Mac([1; 32]); n],
            };
            let encoded = wire::codec::encode_to_vec(&request).unwrap();
            assert!(
                encoded.len() <= request.request.op.len() + super::super::request_overhead(n),
                "n = {n}: {} bytes",
                encoded.len()
            );
        }
    }

    #[test]
    fn request_authenticators_check_at_every_replica() {
        let (keys, config) = group();
        let client = Codec::client(Arc::clone(&config), b"seed");
        let id = ClientId(7);
        client.register_client(id);
        let bytes = request_bytes(&client, id, 1);
        for (i, key) in keys.iter().enumerate() {
            let replica = Codec::replica(Arc::clone(&config), ReplicaId(i as u8), key).unwrap();
            let (from, _) = replica.decode(&bytes).unwrap();
            assert_eq!(from, Addr::Client(id));
        }
        // The replica's own entry is checked: replica 1 with replica 2's
        // entry broken still accepts; replica 2 drops it.
        let Message::Request(mut request) = wire::decode::<Message>(&bytes).unwrap() else {
            panic!("a request");
        };
        request.auth[2].0[0] ^= 1;
        let broken = wire::codec::encode_to_vec(&Message::Request(request.clone())).unwrap();
        let one = Codec::replica(Arc::clone(&config), ReplicaId(1), &keys[1]).unwrap();
        let two = Codec::replica(Arc::clone(&config), ReplicaId(2), &keys[2]).unwrap();
        one.decode(&broken).unwrap();
        assert_eq!(
            two.decode(&broken).unwrap_err().0,
            "request: bad authenticator"
        );
        // An altered operation, or an authenticator of the wrong length,
        // fails everywhere.
        request.auth[2].0[0] ^= 1;
        request.request.op.push(0);
        let altered = wire::codec::encode_to_vec(&Message::Request(request.clone())).unwrap();
        assert!(one.decode(&altered).is_err());
        request.request.op.pop();
        request.auth.pop();
        let short = wire::codec::encode_to_vec(&Message::Request(request)).unwrap();
        assert!(one.decode(&short).is_err());
    }

    #[test]
    fn reply_macs_check_and_first_key_wins() {
        let (keys, config) = group();
        let replica = Codec::replica(Arc::clone(&config), ReplicaId(2), &keys[2]).unwrap();
        let client = Codec::client(Arc::clone(&config), b"seed");
        let id = ClientId(7);
        client.register_client(id);
        let reply = Reply {
            view: 0,
            replica: ReplicaId(2),
            client_id: id,
            request_num: 1,
            result: b"ok".to_vec(),
        };
        let mut buf = Vec::new();
        // No request from the client yet: the replica has no key to MAC with.
        assert!(
            replica
                .encode(&Outbound::Reply(reply.clone()), &mut buf)
                .is_err()
        );
        replica.decode(&request_bytes(&client, id, 1)).unwrap();
        buf.clear();
        replica
            .encode(&Outbound::Reply(reply.clone()), &mut buf)
            .unwrap();
        let (from, _) = client.decode(&buf).unwrap();
        assert_eq!(from, Addr::Replica(ReplicaId(2)));

        // A flipped MAC bit, or a reply naming another replica, fails.
        let mut tampered = buf.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(client.decode(&tampered).unwrap_err().0, "reply: bad MAC");
        let Message::Reply(mut forged) = wire::decode::<Message>(&buf).unwrap() else {
            panic!("a reply");
        };
        forged.reply.replica = ReplicaId(1);
        let forged = wire::codec::encode_to_vec(&Message::Reply(forged)).unwrap();
        assert_eq!(client.decode(&forged).unwrap_err().0, "reply: bad MAC");

        // Another key for the same client id (an impostor's node, with a
        // validly authenticated request of its own) is refused; the first
        // stays.
        let impostor = Codec::client(Arc::clone(&config), b"impostor");
        impostor.register_client(id);
        assert_eq!(
            replica
                .decode(&request_bytes(&impostor, id, 2))
                .unwrap_err()
                .0,
            "request: client already has another key"
        );
        replica.decode(&request_bytes(&client, id, 2)).unwrap();
        buf.clear();
        replica.encode(&Outbound::Reply(reply), &mut buf).unwrap();
        client.decode(&buf).unwrap();
    }
}
