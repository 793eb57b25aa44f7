//! The shared half of HotStuff nodes: the group's configuration, and
//! decoding with every check that needs no protocol state (source
//! addresses, leaders, signatures, QCs and TCs, digests, clients' MACs).
//!
//! Cheap checks come first: a message naming another replica than the
//! address it came from is dropped before its signature is checked, and
//! votes and timeouts for views the replica has left are dropped unread
//! (through [`runtime::hint`]s the replica raises). A QC checked once is
//! remembered by the digest of its encoding, so the QC of the block before,
//! which arrives again in every timeout and in the next leader's block, is
//! checked once per replica.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use runtime::hint::Watermark;
use runtime::{Addr, DropReason, ReplicaId, SharedState, Source};
use wire::auth::{AuthRequest, MacReply, Reply};
use wire::client::Request;
use wire::crypto::verify_digest;
use wire::hotstuff::{
    BLOCK_SIZE_MAX, Block, Message, Proposed, QuorumCert, Timeout, TimeoutCert, View, Vote,
};
use wire::registry::Settings;
use wire::{
    CryptoError, Digest, Mac, MacKey, PublicKey, SecretKey, Signature, Signed, Signer, VerifyingKey,
};

use super::{FETCH_BLOCKS_MAX, REPLICAS_MAX, STATE_CHUNK_MAX, bugs};
use crate::common::{ClientAuth, ReplyKeys};
use crate::planted;
use wire::hotstuff as tunable;

/// The group: its replicas' keys, f, the quorum, and the tunables.
#[derive(Debug)]
pub struct Config {
    pub n: usize,
    pub f: usize,
    keys: Vec<VerifyingKey>,
    public_keys: Vec<PublicKey>,
    pub client_table_max: usize,
    pub block_max: usize,
    pub batch_delay: Duration,
    pub view_timeout: Duration,
}

impl Config {
    /// The group of the replicas with these public keys, with the
    /// tunables' defaults.
    pub fn new(keys: &[PublicKey]) -> Result<Config, CryptoError> {
        assert!(
            !keys.is_empty() && keys.len() <= REPLICAS_MAX,
            "a HotStuff group has 1..={REPLICAS_MAX} replicas"
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
            client_table_max: tunable::CLIENT_TABLE_MAX.default as usize,
            block_max: tunable::BLOCK_MAX.default as usize,
            batch_delay: Duration::from_micros(tunable::BATCH_DELAY_US.default),
            view_timeout: Duration::from_millis(tunable::VIEW_TIMEOUT_MS.default),
        })
    }

    /// The tunables' values from `settings`.
    pub fn with_settings(mut self, settings: &Settings) -> Config {
        assert_eq!(settings.spec().name, wire::hotstuff::SPEC.name);
        // The bounds keep every value within usize on any platform we build.
        self.block_max = settings.get(&tunable::BLOCK_MAX) as usize;
        self.batch_delay = Duration::from_micros(settings.get(&tunable::BATCH_DELAY_US));
        self.view_timeout = Duration::from_millis(settings.get(&tunable::VIEW_TIMEOUT_MS));
        self.client_table_max = settings.get(&tunable::CLIENT_TABLE_MAX) as usize;
        self
    }

    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public_keys
    }

    pub fn verifying_keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    pub fn simulated(&self) -> bool {
        matches!(self.keys[0], VerifyingKey::Simulated(_))
    }

    /// The leader of `view`: round robin.
    pub fn leader(&self, view: View) -> ReplicaId {
        ReplicaId((view % self.n as u64) as u8)
    }

    /// Votes in a QC, timeouts in a TC: ⌈(n + f + 1)/2⌉, so that two quorums
    /// share a correct replica.
    pub fn quorum(&self) -> usize {
        (self.n + self.f + 1).div_ceil(2)
    }

    fn key(&self, replica: ReplicaId) -> Result<&VerifyingKey, DropReason> {
        self.keys
            .get(usize::from(replica.0))
            .ok_or(DropReason("decode: no such replica"))
    }

    fn verify<T: bincode::Encode>(
        &self,
        signed: &Signed<T>,
        signer: ReplicaId,
        reason: &'static str,
    ) -> Result<(), DropReason> {
        signed
            .verify(self.key(signer)?)
            .map_err(|_| DropReason(reason))
    }
}

/// What a HotStuff node receives, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A client's request, its MAC checked: from the client, or forwarded
    /// by the replica it came to (from `Addr::Replica`).
    Request(AuthRequest),
    /// A proposal: from the leader of its view, its MAC, block's digest,
    /// QC and TC checked; `authentic` if every request in the block checked
    /// under this replica's MAC.
    Proposal {
        block: Block,
        /// The block's digest (the authenticated header names it).
        digest: Digest,
        tc: Option<TimeoutCert>,
        authentic: bool,
    },
    Vote(Signed<Vote>),
    /// A timeout, the QC it carries and the sender's vote in the view
    /// before, all checked.
    Timeout(Signed<Timeout>, QuorumCert, Option<Signed<Vote>>),
    /// A timeout for a view this replica has left (not checked): its sender
    /// is behind.
    Behind,
    /// Where a peer stands, its QCs and TC checked.
    SyncInfo(wire::hotstuff::SyncInfo),
    Fetch(wire::hotstuff::Fetch),
    /// Blocks, each QC checked (their digests are the replica's to check).
    Blocks(Vec<Block>),
    QueryCheckpoint(wire::hotstuff::QueryCheckpoint),
    Checkpoint(wire::hotstuff::Checkpoint),
    FetchChunk(wire::hotstuff::FetchChunk),
    /// A state chunk whose Merkle path leads to the digest it names.
    Chunk(wire::hotstuff::Chunk),
    /// To a client: a reply, its MAC not checked yet (the client checks
    /// those it needs: see `ReplyQuorum`).
    Reply(MacReply),
    /// To a client: its session was evicted (MAC not checked yet).
    Evicted(MacReply),
}

/// What a HotStuff node sends: messages the protocol signed already, and
/// what the codec authenticates per destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    Message(Box<Message>),
    /// A reply, MACed for its client.
    Reply(Reply),
    Evicted(Reply),
    /// A client's request, with an authenticator for every replica.
    Request {
        session: u64,
        request: Request,
    },
}

/// QCs remembered as checked, by the digest of their encoding.
const CHECKED_QCS: usize = 64;

/// A replica's own votes remembered, so that QCs carrying them cost one
/// check less: a QC arrives in the block after the vote, or a few views
/// later through sync.
const OWN_VOTES: usize = 4;

/// Encoding (authenticating) and decoding (checking) for replicas and
/// clients.
#[derive(Debug)]
pub struct Codec {
    config: Arc<Config>,
    /// Replicas sign; clients have no signing key.
    signer: Option<Signer>,
    auth: ClientAuth,
    /// QCs checked lately (most recent last).
    checked: Mutex<(VecDeque<Digest>, HashSet<Digest>)>,
    /// The keys this replica shares with every replica (none at a client),
    /// for proposals' MACs.
    proposals: Option<(ReplicaId, ProposalAuth)>,
    /// The replica's own latest votes (most recent last): its entry in a
    /// QC for one of them is its own signature, which it need not check.
    voted: Mutex<VecDeque<(View, Digest, Signature)>>,
    /// The replica's view: timeouts for earlier views are dropped unread.
    view: Watermark,
    /// The view of the replica's highest QC: votes for it or earlier views
    /// are of no use.
    certified: Watermark,
}

impl Codec {
    /// Replica `me`'s codec: it checks requests and MACs replies under the
    /// keys it agrees on with clients, and signs with `key`.
    pub fn replica(
        config: Arc<Config>,
        me: ReplicaId,
        key: &SecretKey,
    ) -> Result<Codec, CryptoError> {
        let signer = Signer::new(key)?;
        let proposals = ProposalAuth::new(key, config.verifying_keys())?;
        Ok(Codec {
            proposals: Some((me, proposals)),
            auth: ClientAuth::replica(
                me,
                config.n,
                key,
                crate::common::client_auth::CLIENT_KEYS_MAX,
            ),
            signer: Some(signer),
            config,
            checked: Mutex::default(),
            voted: Mutex::default(),
            view: Watermark::default(),
            certified: Watermark::default(),
        })
    }

    /// A client node's codec: its clients' key pairs derive from
    /// `client_key_seed`.
    pub fn client(config: Arc<Config>, client_key_seed: &[u8]) -> Codec {
        Codec {
            auth: ClientAuth::client(
                "hotstuff client ",
                config.verifying_keys(),
                config.simulated(),
                client_key_seed,
            ),
            signer: None,
            proposals: None,
            config,
            checked: Mutex::default(),
            voted: Mutex::default(),
            view: Watermark::default(),
            certified: Watermark::default(),
        }
    }

    /// Derives client `id`'s keys (once), so that its requests are
    /// authenticated and replies to it checked.
    pub fn register_client(&self, id: wire::ClientId) -> ReplyKeys {
        self.auth.register_client(id)
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The client MACs (a replica pins the keys of clients with a session).
    pub(crate) fn auth(&self) -> &ClientAuth {
        &self.auth
    }

    /// Signs `payload` with this replica's key.
    pub fn sign<T: bincode::Encode>(&self, payload: T) -> Signed<T> {
        let signer = self.signer.as_ref().expect("only replicas sign");
        Signed::sign(payload, signer).expect("protocol payloads encode")
    }

    /// The authenticator of this replica's proposal `header`.
    pub fn authenticate_proposal(&self, header: &Proposed) -> Vec<Mac> {
        let (_, keys) = self.proposals.as_ref().expect("only replicas propose");
        keys.authenticate(header)
    }

    /// Signs the replica's vote, and remembers it: a QC that carries it
    /// costs one signature check less.
    pub(crate) fn sign_vote(&self, vote: Vote) -> Signed<Vote> {
        let signed = self.sign(vote);
        let mut voted = self.voted.lock().expect("not poisoned");
        if voted.len() == OWN_VOTES {
            voted.pop_front();
        }
        voted.push_back((vote.view, vote.block, signed.signature));
        signed
    }

    /// The replica entered `view`.
    pub(crate) fn settle_view(&self, view: View) {
        self.view.raise(view);
    }

    /// The replica's highest QC is for `view`.
    pub(crate) fn settle_certified(&self, view: View) {
        self.certified.raise(view);
    }

    /// Checks `qc`, unless the same QC checked lately.
    fn check_qc_cached(&self, qc: &QuorumCert) -> Result<(), DropReason> {
        if qc.votes.is_empty() {
            return check_qc(&self.config, qc);
        }
        let digest = Digest::of_encoded(qc).map_err(|_| DropReason("qc: bad encoding"))?;
        if self
            .checked
            .lock()
            .expect("not poisoned")
            .1
            .contains(&digest)
        {
            return Ok(());
        }
        let own = self.proposals.as_ref().and_then(|&(me, _)| {
            self.voted
                .lock()
                .expect("not poisoned")
                .iter()
                .find(|&&(view, block, _)| view == qc.view && block == qc.block)
                .map(|&(_, _, signature)| (me, signature))
        });
        check_qc_but(&self.config, qc, own)?;
        let mut checked = self.checked.lock().expect("not poisoned");
        if checked.1.insert(digest) {
            checked.0.push_back(digest);
            if checked.0.len() > CHECKED_QCS
                && let Some(old) = checked.0.pop_front()
            {
                checked.1.remove(&old);
            }
        }
        Ok(())
    }

    fn decode_proposal(
        &self,
        source: Source,
        proposal: wire::hotstuff::Proposal,
    ) -> Result<(Addr, Inbound), DropReason> {
        let config = &*self.config;
        let header = proposal.header;
        let view = header.view;
        if header.leader != config.leader(view) {
            return Err(DropReason("proposal: not from the view's leader"));
        }
        let from = from_replica(
            source,
            header.leader,
            "proposal: not from the leader's address",
        )?;
        let block = proposal.block;
        if block.view != view {
            return Err(DropReason("proposal: block of another view"));
        }
        if block.requests.len() > BLOCK_SIZE_MAX {
            return Err(DropReason("proposal: block too large"));
        }
        if block.justify.view >= view {
            return Err(DropReason("proposal: QC not below its view"));
        }
        // A leader enters its view on a QC for the view before, or on a TC
        // for it: either the block's QC or the TC shows it.
        let entered = block.justify.view.checked_add(1) == Some(view)
            || proposal
                .tc
                .as_ref()
                .is_some_and(|tc| tc.view.checked_add(1) == Some(view));
        if !entered && !planted::is(bugs::NO_VIEW_CHECK) {
            return Err(DropReason("proposal: no certificate for the view before"));
        }
        // The MAC first: it costs less than hashing the block, so a
        // datagram that only claims the leader's address is refused cheaply.
        let (me, keys) = self
            .proposals
            .as_ref()
            .ok_or(DropReason("proposal: not for a client"))?;
        keys.check(&header, &proposal.auth, *me)?;
        if block.digest() != header.block {
            return Err(DropReason("proposal: block does not match its digest"));
        }
        self.check_qc_cached(&block.justify)?;
        if let Some(tc) = &proposal.tc {
            check_tc(config, tc)?;
        }
        let authentic = block
            .requests
            .iter()
            .all(|r| self.auth.check_request(r).is_ok());
        Ok((
            from,
            Inbound::Proposal {
                block,
                digest: header.block,
                tc: proposal.tc,
                authentic,
            },
        ))
    }
}

/// The MAC keys one replica shares with each replica of the group (ECDH of
/// its secret key with their public keys), which authenticate proposals: a
/// leader sends each replica a MAC of the proposal's header under the key
/// the two share.
#[derive(Debug)]
pub struct ProposalAuth {
    keys: Vec<MacKey>,
}

impl ProposalAuth {
    /// The keys that the holder of `secret` shares with each of `group`.
    pub fn new(secret: &SecretKey, group: &[VerifyingKey]) -> Result<ProposalAuth, CryptoError> {
        let keys = group
            .iter()
            .map(|public| MacKey::agree(public, secret))
            .collect::<Result<_, _>>()?;
        Ok(ProposalAuth { keys })
    }

    /// One MAC of `header` per replica, in replica order.
    pub fn authenticate(&self, header: &Proposed) -> Vec<Mac> {
        header.authenticate(&self.keys)
    }

    /// The keys, in replica order.
    pub fn into_keys(self) -> Vec<MacKey> {
        self.keys
    }

    /// Checks replica `me`'s entry of `auth` under the key it shares with
    /// `header`'s leader.
    fn check(&self, header: &Proposed, auth: &[Mac], me: ReplicaId) -> Result<(), DropReason> {
        const BAD: DropReason = DropReason("proposal: bad authenticator");
        if auth.len() != self.keys.len() {
            return Err(BAD);
        }
        let mac = auth.get(usize::from(me.0)).ok_or(BAD)?;
        let key = self.keys.get(usize::from(header.leader.0)).ok_or(BAD)?;
        key.verify_encoded(header, mac).map_err(|_| BAD)
    }
}

/// The replica `named` as the sender, if the datagram came from its address.
fn from_replica(
    source: Source,
    named: ReplicaId,
    reason: &'static str,
) -> Result<Addr, DropReason> {
    if source == Source::Replica(named) {
        Ok(Addr::Replica(named))
    } else {
        Err(DropReason(reason))
    }
}

/// Checks a QC: the genesis QC, or a quorum of distinct replicas' valid
/// signatures over votes for its view and block.
pub fn check_qc(config: &Config, qc: &QuorumCert) -> Result<(), DropReason> {
    check_qc_but(config, qc, None)
}

/// [`check_qc`], taking `known`'s signature as valid if the QC carries it
/// unchanged (a replica's own vote).
fn check_qc_but(
    config: &Config,
    qc: &QuorumCert,
    known: Option<(ReplicaId, Signature)>,
) -> Result<(), DropReason> {
    if qc.view == 0 {
        return if *qc == QuorumCert::genesis() {
            Ok(())
        } else {
            Err(DropReason("qc: not the genesis QC"))
        };
    }
    if qc.votes.len() < config.quorum() || qc.votes.len() > config.n {
        return Err(DropReason("qc: not a quorum"));
    }
    let mut voters = 0u32;
    for &(voter, signature) in &qc.votes {
        let bit = 1u32
            .checked_shl(u32::from(voter.0))
            .filter(|_| usize::from(voter.0) < config.n)
            .ok_or(DropReason("qc: no such replica"))?;
        if voters & bit != 0 {
            return Err(DropReason("qc: a replica twice"));
        }
        voters |= bit;
        if known == Some((voter, signature)) {
            continue;
        }
        let vote = Vote {
            view: qc.view,
            block: qc.block,
            voter,
        };
        check_signature(config, &vote, &signature, voter, "qc: bad signature")?;
    }
    Ok(())
}

/// Checks a TC: a quorum of distinct replicas' valid signatures over
/// timeouts for its view or later ones.
pub fn check_tc(config: &Config, tc: &TimeoutCert) -> Result<(), DropReason> {
    if tc.timeouts.len() < config.quorum() || tc.timeouts.len() > config.n {
        return Err(DropReason("tc: not a quorum"));
    }
    let mut replicas = 0u32;
    for t in &tc.timeouts {
        let bit = 1u32
            .checked_shl(u32::from(t.replica.0))
            .filter(|_| usize::from(t.replica.0) < config.n)
            .ok_or(DropReason("tc: no such replica"))?;
        if replicas & bit != 0 {
            return Err(DropReason("tc: a replica twice"));
        }
        replicas |= bit;
        if t.view < tc.view {
            return Err(DropReason("tc: a timeout below its view"));
        }
        if t.high_qc_view >= t.view {
            return Err(DropReason("tc: QC not below its timeout's view"));
        }
        let timeout = Timeout {
            view: t.view,
            high_qc_view: t.high_qc_view,
            replica: t.replica,
        };
        check_signature(
            config,
            &timeout,
            &t.signature,
            t.replica,
            "tc: bad signature",
        )?;
    }
    Ok(())
}

fn check_signature<T: bincode::Encode>(
    config: &Config,
    payload: &T,
    signature: &Signature,
    signer: ReplicaId,
    reason: &'static str,
) -> Result<(), DropReason> {
    let digest = Digest::of_encoded(payload).map_err(|_| DropReason(reason))?;
    verify_digest(&digest, signature, config.key(signer)?).map_err(|_| DropReason(reason))
}

impl SharedState for Codec {
    type Message = Inbound;
    type Outbound = Outbound;

    fn decode(&self, source: Source, bytes: &[u8]) -> Result<(Addr, Inbound), DropReason> {
        let msg: Message = wire::decode(bytes)?;
        let config = &*self.config;
        let wrong = "message: not from the sender's address";
        match msg {
            Message::Request(request) => {
                if source != Source::Other {
                    return Err(DropReason("request: from a replica's address"));
                }
                self.auth.check_request(&request)?;
                Ok((
                    Addr::Client(request.request.client_id),
                    Inbound::Request(request),
                ))
            }
            Message::Forward(request) => {
                let Source::Replica(from) = source else {
                    return Err(DropReason("forwarded request: not from a replica"));
                };
                self.auth.check_request(&request)?;
                Ok((Addr::Replica(from), Inbound::Request(request)))
            }
            Message::Reply(reply) | Message::Evicted(reply)
                if source != Source::Replica(reply.reply.replica) =>
            {
                Err(DropReason(wrong))
            }
            Message::Reply(_) | Message::Evicted(_) if !self.auth.is_client() => {
                Err(DropReason("reply: not a client"))
            }
            Message::Reply(reply) => {
                Ok((Addr::Replica(reply.reply.replica), Inbound::Reply(reply)))
            }
            Message::Evicted(reply) => {
                Ok((Addr::Replica(reply.reply.replica), Inbound::Evicted(reply)))
            }
            Message::Proposal(proposal) => self.decode_proposal(source, proposal),
            Message::Vote(vote) => {
                let from = from_replica(source, vote.payload.voter, wrong)?;
                if vote.payload.view <= self.certified.get() && vote.payload.view > 0 {
                    return Err(DropReason("vote: for a view certified already"));
                }
                config.verify(&vote, vote.payload.voter, "vote: bad signature")?;
                Ok((from, Inbound::Vote(vote)))
            }
            Message::Timeout(timeout, qc, vote) => {
                let from = from_replica(source, timeout.payload.replica, wrong)?;
                // A timeout for the view just left may carry the vote that
                // completes that view's predecessor's QC (the leader that
                // entered on a TC waits for it), or come from the leader of
                // this view, whose predecessor's votes split and who needs
                // a TC for it: checked like any other.
                let just_left = timeout.payload.view.checked_add(1) == Some(self.view.get());
                if timeout.payload.view < self.view.get() && !just_left {
                    // Its sender is behind: the replica tells it where the
                    // group is (at most once a while), unchecked, since
                    // what it sends back is public and proves itself.
                    return Ok((from, Inbound::Behind));
                }
                if qc.view != timeout.payload.high_qc_view || qc.view >= timeout.payload.view {
                    return Err(DropReason("timeout: QC does not match"));
                }
                if let Some(vote) = &vote
                    && (vote.payload.voter != timeout.payload.replica
                        || vote.payload.view.checked_add(1) != Some(timeout.payload.view))
                {
                    return Err(DropReason("timeout: a vote of another view or replica"));
                }
                config.verify(&timeout, timeout.payload.replica, "timeout: bad signature")?;
                if let Some(vote) = &vote {
                    config.verify(vote, vote.payload.voter, "timeout: bad vote signature")?;
                }
                self.check_qc_cached(&qc)?;
                Ok((from, Inbound::Timeout(timeout, qc, vote)))
            }
            Message::SyncInfo(info) => {
                let Source::Replica(id) = source else {
                    return Err(DropReason("sync info: not from a replica"));
                };
                self.check_qc_cached(&info.high_qc)?;
                self.check_qc_cached(&info.commit_qc)?;
                if let Some(tc) = &info.tc {
                    check_tc(config, tc)?;
                }
                Ok((Addr::Replica(id), Inbound::SyncInfo(info)))
            }
            Message::Fetch(fetch) => {
                let from = from_replica(source, fetch.payload.replica, wrong)?;
                config.verify(&fetch, fetch.payload.replica, "fetch: bad signature")?;
                Ok((from, Inbound::Fetch(fetch.payload)))
            }
            Message::Blocks(blocks) => {
                let Source::Replica(id) = source else {
                    return Err(DropReason("blocks: not from a replica"));
                };
                if blocks.is_empty() || blocks.len() as u64 > FETCH_BLOCKS_MAX {
                    return Err(DropReason("blocks: too many or none"));
                }
                for block in &blocks {
                    if block.requests.len() > BLOCK_SIZE_MAX {
                        return Err(DropReason("blocks: block too large"));
                    }
                    self.check_qc_cached(&block.justify)?;
                }
                Ok((Addr::Replica(id), Inbound::Blocks(blocks)))
            }
            Message::QueryCheckpoint(q) => {
                let from = from_replica(source, q.payload.replica, wrong)?;
                config.verify(&q, q.payload.replica, "query: bad signature")?;
                Ok((from, Inbound::QueryCheckpoint(q.payload)))
            }
            Message::Checkpoint(c) => {
                let from = from_replica(source, c.payload.replica, wrong)?;
                config.verify(&c, c.payload.replica, "checkpoint: bad signature")?;
                Ok((from, Inbound::Checkpoint(c.payload)))
            }
            Message::FetchChunk(f) => {
                let from = from_replica(source, f.payload.replica, wrong)?;
                config.verify(&f, f.payload.replica, "fetch chunk: bad signature")?;
                Ok((from, Inbound::FetchChunk(f.payload)))
            }
            Message::Chunk(chunk) => {
                let Source::Replica(id) = source else {
                    return Err(DropReason("chunk: not from a replica"));
                };
                let fits = wire::merkle::verify_chunk(
                    &chunk.state,
                    chunk.size,
                    STATE_CHUNK_MAX,
                    chunk.index,
                    &chunk.data,
                    &chunk.proof,
                );
                if !fits {
                    return Err(DropReason("chunk: does not fit its state's digest"));
                }
                Ok((Addr::Replica(id), Inbound::Chunk(chunk)))
            }
        }
    }

    fn encode(&self, msg: &Outbound, buf: &mut Vec<u8>) -> Result<(), DropReason> {
        match msg {
            Outbound::Message(m) => wire::encode(&**m, buf).map_err(DropReason::from),
            Outbound::Reply(reply) | Outbound::Evicted(reply) => {
                // Encoded from where the reply lies, not copied into a
                // message.
                let mac = self.auth.reply_mac(reply)?;
                let evicted = matches!(msg, Outbound::Evicted(_));
                let out = Message::reply_out(evicted, reply, &mac);
                wire::encode(&out, buf).map_err(DropReason::from)
            }
            Outbound::Request { session, request } => {
                // Authenticated as it is encoded, with no copy of the request.
                let variant = Message::REQUEST_VARIANT;
                self.auth.authenticate_into(variant, *session, request, buf)
            }
        }
    }

    fn describe(&self, bytes: &[u8]) -> String {
        match wire::decode::<Message>(bytes) {
            Ok(Message::Request(r)) => {
                format!(
                    "request c{} #{}",
                    r.request.client_id.0, r.request.request_num
                )
            }
            Ok(Message::Forward(r)) => {
                format!(
                    "forwarded request c{} #{}",
                    r.request.client_id.0, r.request.request_num
                )
            }
            Ok(Message::Reply(r)) => format!(
                "reply r{} c{} #{}",
                r.reply.replica.0, r.reply.client_id.0, r.reply.request_num
            ),
            Ok(Message::Evicted(r)) => format!("evicted c{}", r.reply.client_id.0),
            Ok(Message::Proposal(p)) => format!(
                "proposal v{} h{} qc v{} {} requests{}",
                p.block.view,
                p.block.height,
                p.block.justify.view,
                p.block.requests.len(),
                p.tc.map(|tc| format!(" tc v{}", tc.view))
                    .unwrap_or_default()
            ),
            Ok(Message::Vote(v)) => format!("vote v{} from r{}", v.payload.view, v.payload.voter.0),
            Ok(Message::Timeout(t, _, _)) => format!(
                "timeout v{} qc v{} from r{}",
                t.payload.view, t.payload.high_qc_view, t.payload.replica.0
            ),
            Ok(Message::SyncInfo(info)) => format!(
                "sync info qc v{} commit qc v{}{}",
                info.high_qc.view,
                info.commit_qc.view,
                info.tc
                    .map(|tc| format!(" tc v{}", tc.view))
                    .unwrap_or_default()
            ),
            Ok(Message::Fetch(f)) => format!("fetch {} blocks", f.payload.count),
            Ok(Message::Blocks(b)) => format!("{} blocks", b.len()),
            Ok(Message::QueryCheckpoint(_)) => "query checkpoint".to_string(),
            Ok(Message::Checkpoint(c)) => {
                format!(
                    "checkpoint h{} from r{}",
                    c.payload.height, c.payload.replica.0
                )
            }
            Ok(Message::FetchChunk(f)) => format!("fetch chunk {}", f.payload.index),
            Ok(Message::Chunk(c)) => format!("chunk {}", c.index),
            Err(e) => format!("undecodable ({e})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vote(keys: &[SecretKey], signed_by: usize, voter: u8, block: Digest) -> Signature {
        let vote = Vote {
            view: 7,
            block,
            voter: ReplicaId(voter),
        };
        Signed::sign(vote, &Signer::new(&keys[signed_by]).unwrap())
            .unwrap()
            .signature
    }

    /// A QC's entry for the replica's own vote is taken unchecked only if it
    /// is the very signature the replica made: its id with any other
    /// signature is checked, and refused.
    #[test]
    fn own_votes_are_known_only_as_signed() {
        let keys = super::super::simulate::keys(30, 4);
        let config = super::super::simulate::config(&keys);
        let block = Digest::of(b"a block");
        let qc = |own: Signature| QuorumCert {
            view: 7,
            block,
            votes: vec![
                (ReplicaId(0), own),
                (ReplicaId(1), vote(&keys, 1, 1, block)),
                (ReplicaId(2), vote(&keys, 2, 2, block)),
            ],
        };
        let codec = Codec::replica(config, ReplicaId(0), &keys[0]).unwrap();
        let mine = codec.sign_vote(Vote {
            view: 7,
            block,
            voter: ReplicaId(0),
        });
        codec.check_qc_cached(&qc(mine.signature)).unwrap();
        // Replica 1's signature under replica 0's id, and a signature of
        // replica 0's over another block.
        let forged = vote(&keys, 1, 0, block);
        let other = vote(&keys, 0, 0, Digest::of(b"another block"));
        for signature in [forged, other] {
            assert_eq!(
                codec.check_qc_cached(&qc(signature)),
                Err(DropReason("qc: bad signature"))
            );
        }
    }
}
