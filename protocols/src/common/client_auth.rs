//! Clients' requests and replicas' replies authenticated with MACs (PBFT,
//! OSDI §4 and TOCS §3.2), for any protocol whose clients authenticate so.
//!
//! Each client and each replica share a key, agreed by ECDH between the
//! client's key pair (derived from a protocol's domain prefix, a client key
//! seed and the client's id) and the replica's. A request travels with an
//! *authenticator*, one HMAC-SHA256 of the session and request per replica
//! ([`AuthRequest`]), so each replica checks its own entry, including for a
//! request another replica passes on: a faulty replica cannot forge one, no
//! correct replica's entry would check. A reply carries one MAC
//! ([`MacReply`]).
//!
//! The client's public key travels with every request, so a replica that
//! never heard from the client derives the shared key from the request
//! itself (one ECDH, once per client). A replica keeps the key it shares
//! with every client that has a session (*pinned* by the protocol as it
//! executes the registration, so it is the session's key: see
//! [`crate::common::sessions`]), and with at most `keys_max` others, of
//! which the first public key under which a request checked wins: a flood
//! of fresh keys evicts only those, and a request is never checked under a
//! key the replica does not keep.
//!
//! One [`ClientAuth`] is shared by a node's decoding and sending threads
//! (behind its codec), so its tables sit behind locks.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use runtime::{DropReason, ReplicaId};
use wire::auth::{AuthRequest, Reply};
use wire::client::Request;
use wire::{ClientId, Mac, MacKey, PublicKey, SecretKey, Signer, VerifyingKey};

/// Clients without a session whose MAC keys a replica keeps (those with a
/// session always keep theirs), the usual `keys_max` of
/// [`ClientAuth::replica`]: one more evicts an arbitrary one of them, which
/// pays for an ECDH again at its next request.
pub const CLIENT_KEYS_MAX: usize = 1 << 16;

/// Bytes a request takes on the wire besides its operation, at most: its
/// session, header and length prefixes (at most 31 bytes, for any request
/// that fits a datagram), the client's public key (33), and its
/// authenticator of `n` MACs.
pub fn request_overhead(n: usize) -> usize {
    72 + n * size_of::<Mac>()
}

/// The keys that authenticate requests and replies at one node, a replica
/// or a node of clients; see the module docs.
#[derive(Debug)]
pub struct ClientAuth {
    keys: Keys,
}

#[derive(Debug)]
enum Keys {
    /// A replica's secret key (for ECDH) and the keys it shares with
    /// clients.
    Replica {
        /// This replica's id: which entry of a request's authenticator is
        /// its own.
        me: ReplicaId,
        /// Replicas in the group: the length of every authenticator.
        n: usize,
        secret: SecretKey,
        clients: RwLock<SharedKeys>,
    },
    /// The clients of a client node: each one's key pair derives from
    /// `domain`, `seed` and its id; for each registered client, its public
    /// key and the key it shares with each replica, in replica order.
    Client {
        domain: &'static str,
        replicas: Vec<VerifyingKey>,
        simulated: bool,
        seed: Vec<u8>,
        clients: RwLock<HashMap<ClientId, ClientKeys>>,
    },
}

/// A client's public key, and the key it shares with each replica, in replica
/// order.
type ClientKeys = (PublicKey, Arc<[MacKey]>);

impl ClientAuth {
    /// Replica `me` of a group of `n` replicas, with secret key `secret` (for
    /// ECDH with clients' public keys); keeps keys of at most `keys_max`
    /// clients without a session.
    pub fn replica(me: ReplicaId, n: usize, secret: &SecretKey, keys_max: usize) -> ClientAuth {
        assert!(usize::from(me.0) < n, "replica {} of {n}", me.0);
        assert!(keys_max > 0);
        ClientAuth {
            keys: Keys::Replica {
                me,
                n,
                secret: secret.clone(),
                clients: RwLock::new(SharedKeys::new(keys_max)),
            },
        }
    }

    /// A client node of the group whose replicas have public keys
    /// `replicas`, in id order: its clients' key pairs derive from `domain`
    /// (a protocol's own prefix, so that its clients' keys differ from
    /// another protocol's), `seed` and their ids; simulated keys (see
    /// [`wire::crypto`]) when `simulated`.
    pub fn client(
        domain: &'static str,
        replicas: &[VerifyingKey],
        simulated: bool,
        seed: &[u8],
    ) -> ClientAuth {
        ClientAuth {
            keys: Keys::Client {
                domain,
                replicas: replicas.to_vec(),
                simulated,
                seed: seed.to_vec(),
                clients: RwLock::new(HashMap::new()),
            },
        }
    }

    /// Derives client `id`'s key pair and the keys it shares with every
    /// replica (n ECDH computations, once), so that its requests are
    /// authenticated; the keys that check replies to it.
    pub fn register_client(&self, id: ClientId) -> ReplyKeys {
        let Keys::Client {
            domain,
            replicas,
            simulated,
            seed,
            clients,
        } = &self.keys
        else {
            panic!("only a client node registers clients");
        };
        let secret = client_secret(domain, *simulated, seed, id);
        let public = Signer::new(&secret)
            .expect("seeded keys are valid")
            .public_key();
        let keys: Arc<[MacKey]> = replicas
            .iter()
            .map(|replica| MacKey::agree(replica, &secret).expect("seeded keys are valid"))
            .collect();
        clients
            .write()
            .expect("not poisoned")
            .insert(id, (public, Arc::clone(&keys)));
        ReplyKeys(keys)
    }

    /// A client authenticates its request under `session` for every
    /// replica (one MAC per replica, under the key the client shares with
    /// it) as it encodes it: appends to `buf` the encoding of a protocol's
    /// message variant number `variant` holding that [`AuthRequest`]. The
    /// part the MACs cover (session and request) is encoded once, straight
    /// into `buf`, and MACed where it lies; nothing is copied or allocated.
    /// On error `buf` is left as it was.
    pub fn authenticate_into(
        &self,
        variant: u32,
        session: u64,
        request: &Request,
        buf: &mut Vec<u8>,
    ) -> Result<(), DropReason> {
        let Keys::Client { clients, .. } = &self.keys else {
            return Err(DropReason("encode: a replica sends no requests"));
        };
        let clients = clients.read().expect("not poisoned");
        let (key, keys) = clients
            .get(&request.client_id)
            .ok_or(DropReason("encode: no such client"))?;
        let start = buf.len();
        let written = (|| {
            wire::encode(&variant, buf)?;
            let covered = buf.len();
            wire::encode(&(session, request), buf)?;
            let covered = covered..buf.len();
            wire::encode(key, buf)?;
            // A `Vec<Mac>`: its length, then the MACs, each over the
            // session and request written above.
            wire::encode(&(keys.len() as u64), buf)?;
            for key in keys.iter() {
                let mac = key.mac(&buf[covered.clone()]);
                wire::encode(&mac, buf)?;
            }
            Ok::<_, wire::EncodeError>(())
        })();
        let len = buf.len() - start;
        let written = match written {
            Ok(()) if len > wire::MESSAGE_SIZE_MAX => Err(wire::EncodeError::TooLarge { len }),
            other => other,
        };
        written.map_err(|e| {
            buf.truncate(start);
            DropReason::from(e)
        })
    }

    /// A replica checks its own entry of a request's authenticator, under
    /// the key it shares with the request's client (derived by ECDH from the
    /// key the request carries, and kept, the first time).
    pub fn check_request(&self, request: &AuthRequest) -> Result<(), DropReason> {
        let Keys::Replica {
            me,
            n,
            secret,
            clients,
        } = &self.keys
        else {
            return Err(DropReason("request: not a replica"));
        };
        let mac = match request.auth.get(usize::from(me.0)) {
            Some(mac) if request.auth.len() == *n => mac,
            _ => return Err(DropReason("request: bad authenticator")),
        };
        let client = request.request.client_id;
        match clients.read().expect("not poisoned").get(&client) {
            Some((known, Some(key))) if known == request.key => {
                return key
                    .verify_encoded(&request.authenticated(), mac)
                    .map_err(|_| DropReason("request: bad authenticator"));
            }
            Some((known, _)) if known != request.key => {
                return Err(DropReason("request: client already has another key"));
            }
            // Pinned but not derived yet, or not known.
            Some(_) | None => {}
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
        // Another thread may have raced us here: the first key still wins.
        let kept = clients
            .write()
            .expect("not poisoned")
            .keep(client, request.key, key);
        if kept {
            Ok(())
        } else {
            Err(DropReason("request: client already has another key"))
        }
    }

    /// A replica MACs `reply` under the key it shares with the client (the
    /// codec encodes the reply beside it from where it lies: see
    /// [`wire::auth::ReplyOut`]).
    pub fn reply_mac(&self, reply: &Reply) -> Result<Mac, DropReason> {
        let Keys::Replica {
            secret, clients, ..
        } = &self.keys
        else {
            return Err(DropReason("encode: a client sends no replies"));
        };
        let client = reply.client_id;
        let found = clients
            .read()
            .expect("not poisoned")
            .get(&client)
            .map(|(key, mac)| (key, mac.map(|mac| mac.mac_encoded(reply))));
        match found {
            None => return Err(DropReason("encode: no key for the client")),
            Some((_, Some(mac))) => mac,
            Some((key, None)) => {
                // Pinned, not yet derived.
                let mac_key = key
                    .parse()
                    .ok()
                    .and_then(|public| MacKey::agree(&public, secret).ok())
                    .ok_or(DropReason("encode: bad client key"))?;
                let mac = mac_key.mac_encoded(reply);
                clients
                    .write()
                    .expect("not poisoned")
                    .keep(client, key, mac_key);
                mac
            }
        }
        .map_err(|_| DropReason("encode: failed"))
    }

    /// Whether this is a client node's (which takes replies, and checks
    /// them with the [`ReplyKeys`] of the client they are for).
    pub fn is_client(&self) -> bool {
        matches!(self.keys, Keys::Client { .. })
    }

    /// A replica opened a session for `client` under `key`: its requests
    /// check under `key` only, for as long as the session lasts. (Nothing
    /// at a client node.)
    pub fn pin_client(&self, client: ClientId, key: PublicKey) {
        let Keys::Replica { clients, .. } = &self.keys else {
            return;
        };
        clients.write().expect("not poisoned").pin(client, key);
    }

    /// A replica evicted `client`'s session: its key is kept like any
    /// other client's. (Nothing at a client node.)
    pub fn unpin_client(&self, client: ClientId) {
        let Keys::Replica { clients, .. } = &self.keys else {
            return;
        };
        let mut keys = clients.write().expect("not poisoned");
        if let Some((key, Some(mac))) = keys.pinned.remove(&client) {
            keys.insert_other(client, (key, mac));
        }
    }

    /// A replica installed a client table from a state transfer: the
    /// sessions' keys become the pinned ones, and the keys pinned before
    /// are kept like any other client's. (Nothing at a client node.)
    pub fn repin_clients(&self, sessions: impl Iterator<Item = (ClientId, PublicKey)>) {
        let Keys::Replica { clients, .. } = &self.keys else {
            return;
        };
        let mut keys = clients.write().expect("not poisoned");
        for (client, (key, mac)) in std::mem::take(&mut keys.pinned) {
            if let Some(mac) = mac {
                keys.insert_other(client, (key, mac));
            }
        }
        for (client, key) in sessions {
            keys.pin(client, key);
        }
    }
}

/// The keys one client shares with the replicas, in replica order: what
/// checks the replies to it (see [`crate::common::ReplyQuorum`], which
/// checks only those it needs).
#[derive(Clone, Debug)]
pub struct ReplyKeys(Arc<[MacKey]>);

impl ReplyKeys {
    /// The keys shared with each replica, in replica order.
    pub fn new(keys: Arc<[MacKey]>) -> ReplyKeys {
        assert!(!keys.is_empty(), "at least one replica");
        ReplyKeys(keys)
    }

    /// How many replicas there are.
    pub fn replicas(&self) -> usize {
        self.0.len()
    }

    /// Checks `mac` over `reply` under the key shared with the replica the
    /// reply names.
    pub fn check(&self, reply: &Reply, mac: &Mac) -> Result<(), DropReason> {
        let key = self
            .0
            .get(usize::from(reply.replica.0))
            .ok_or(DropReason("reply: no such replica"))?;
        key.verify_encoded(reply, mac)
            .map_err(|_| DropReason(super::replies::BAD_MAC))
    }
}

/// Client `id`'s secret key, derived from `domain`, the client key seed and
/// the id (simulated if `simulated`).
fn client_secret(domain: &str, simulated: bool, seed: &[u8], id: ClientId) -> SecretKey {
    let mut bytes = domain.as_bytes().to_vec();
    bytes.extend_from_slice(seed);
    bytes.extend_from_slice(&id.0.to_le_bytes());
    if simulated {
        SecretKey::simulated(&bytes)
    } else {
        SecretKey::from_seed(&bytes)
    }
}

/// The keys a replica shares with clients, by client. Those of clients with
/// a session are *pinned*: the replica sets them as it executes
/// registrations and evictions (and after a state transfer), so they are the
/// sessions' keys, and a request under another key is refused. Of other
/// clients, the first public key under which a request checked is kept, for
/// at most `other_max` clients: one more evicts an arbitrary one of them
/// (which pays for an ECDH again at its next request). A request is never
/// checked under a key that is not kept, so a flood of keys cannot make a
/// replica check a client's requests under a key of the flooder's choosing
/// once its table is full.
///
/// The maps use SipHash (std's default): client ids are chosen by clients,
/// so a hasher without a secret key would be a hash-flooding target.
#[derive(Debug)]
struct SharedKeys {
    /// A pinned key's MAC key is derived when it is first needed (a state
    /// transfer pins thousands at once, and deriving is an ECDH each).
    pinned: HashMap<ClientId, (PublicKey, Option<MacKey>)>,
    other: HashMap<ClientId, (PublicKey, MacKey)>,
    other_max: usize,
}

impl SharedKeys {
    fn new(other_max: usize) -> SharedKeys {
        SharedKeys {
            pinned: HashMap::new(),
            other: HashMap::new(),
            other_max,
        }
    }

    /// The client's public key, and the MAC key if derived already.
    fn get(&self, client: &ClientId) -> Option<(PublicKey, Option<&MacKey>)> {
        match self.pinned.get(client) {
            Some((key, mac)) => Some((*key, mac.as_ref())),
            None => self.other.get(client).map(|(key, mac)| (*key, Some(mac))),
        }
    }

    /// Keeps `mac`, derived for `key`, unless the client has another key;
    /// `false` if it has.
    fn keep(&mut self, client: ClientId, key: PublicKey, mac: MacKey) -> bool {
        if let Some((pinned, derived)) = self.pinned.get_mut(&client) {
            if *pinned != key {
                return false;
            }
            derived.get_or_insert(mac);
            return true;
        }
        match self.other.get(&client) {
            Some((known, _)) => *known == key,
            None => {
                self.insert_other(client, (key, mac));
                true
            }
        }
    }

    /// Pins `key` for `client`, with its MAC key if derived already.
    fn pin(&mut self, client: ClientId, key: PublicKey) {
        // The registration was checked somewhere, but perhaps not here, or
        // under a key this table no longer holds: then the MAC key is
        // derived when first needed.
        let mac = match self.other.remove(&client) {
            Some((known, mac)) if known == key => Some(mac),
            _ => self
                .pinned
                .get(&client)
                .filter(|(known, _)| *known == key)
                .and_then(|(_, mac)| mac.clone()),
        };
        self.pinned.insert(client, (key, mac));
    }

    /// Keeps `key` for a client without a session, evicting another such
    /// client's if full.
    fn insert_other(&mut self, client: ClientId, key: (PublicKey, MacKey)) {
        if self.other.len() >= self.other_max
            && !self.other.contains_key(&client)
            && let Some(&evicted) = self.other.keys().next()
        {
            self.other.remove(&evicted);
        }
        self.other.insert(client, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::auth::MacReply;

    /// What `authenticate_into` writes, decoded: the request a client
    /// node sends, authenticated.
    fn authenticate(
        node: &ClientAuth,
        session: u64,
        request: &Request,
    ) -> Result<AuthRequest, DropReason> {
        let mut buf = Vec::new();
        node.authenticate_into(0, session, request, &mut buf)?;
        let (variant, auth): (u32, AuthRequest) = wire::decode(&buf).unwrap();
        assert_eq!(variant, 0);
        Ok(auth)
    }

    /// A reply as a replica sends it, MACed.
    fn mac_reply(node: &ClientAuth, reply: &Reply) -> Result<MacReply, DropReason> {
        Ok(MacReply {
            reply: reply.clone(),
            mac: node.reply_mac(reply)?,
        })
    }

    /// A client node checks a reply with the keys of the client it is for.
    fn check_reply(node: &ClientAuth, reply: &MacReply) -> Result<(), DropReason> {
        let Keys::Client { clients, .. } = &node.keys else {
            return Err(DropReason("reply: not a client"));
        };
        let keys = clients
            .read()
            .expect("not poisoned")
            .get(&reply.reply.client_id)
            .map(|(_, keys)| ReplyKeys(Arc::clone(keys)))
            .ok_or(DropReason("reply: no such client"))?;
        keys.check(&reply.reply, &reply.mac)
    }

    const N: usize = 4;
    const DOMAIN: &str = "test client ";

    /// A group of `N` replicas' secret keys (simulated or secp256k1) and
    /// their verifying keys.
    fn group(simulated: bool) -> (Vec<SecretKey>, Vec<VerifyingKey>) {
        let secrets: Vec<SecretKey> = (0..N)
            .map(|i| {
                let seed = format!("client auth test {i}");
                if simulated {
                    SecretKey::simulated(seed.as_bytes())
                } else {
                    SecretKey::from_seed(seed.as_bytes())
                }
            })
            .collect();
        let keys = secrets
            .iter()
            .map(|k| Signer::new(k).unwrap().public_key().parse().unwrap())
            .collect();
        (secrets, keys)
    }

    fn replica(secrets: &[SecretKey], i: u8, keys_max: usize) -> ClientAuth {
        ClientAuth::replica(ReplicaId(i), N, &secrets[usize::from(i)], keys_max)
    }

    /// A client node with clients `ids` registered.
    fn client_node(
        keys: &[VerifyingKey],
        simulated: bool,
        seed: &[u8],
        ids: &[ClientId],
    ) -> ClientAuth {
        let auth = ClientAuth::client(DOMAIN, keys, simulated, seed);
        for &id in ids {
            auth.register_client(id);
        }
        auth
    }

    /// Request `num` of client `id`, authenticated by `client` under
    /// session 1.
    fn auth_request(client: &ClientAuth, id: ClientId, num: u64) -> AuthRequest {
        let request = Request {
            client_id: id,
            request_num: num,
            op: b"op".to_vec(),
        };
        authenticate(client, 1, &request).unwrap()
    }

    fn reply(replica: u8, id: ClientId, num: u64) -> Reply {
        Reply {
            view: 0,
            replica: ReplicaId(replica),
            client_id: id,
            request_num: num,
            result: b"ok".to_vec(),
        }
    }

    /// `replica` checks request `num` of client `id` from `first`, and
    /// refuses the same from `other`, which has another key for `id`.
    fn only_the_first_key_checks(
        replica: &ClientAuth,
        first: &ClientAuth,
        other: &ClientAuth,
        id: ClientId,
        num: u64,
    ) {
        assert_eq!(
            reason(replica.check_request(&auth_request(other, id, num))),
            "request: client already has another key"
        );
        replica
            .check_request(&auth_request(first, id, num))
            .unwrap();
    }

    fn reason<T: std::fmt::Debug>(result: Result<T, DropReason>) -> &'static str {
        result.expect_err("refused").0
    }

    /// The pinned and other keys a replica holds.
    fn table(auth: &ClientAuth) -> std::sync::RwLockReadGuard<'_, SharedKeys> {
        let Keys::Replica { clients, .. } = &auth.keys else {
            panic!("a replica");
        };
        clients.read().unwrap()
    }

    /// `request_overhead` bounds what a request adds beyond its operation,
    /// with the longest varints and the longest operation a datagram holds.
    #[test]
    fn request_overhead_bounds_the_encoding() {
        for n in [1, 4, 7, 10] {
            let request = AuthRequest {
                session: u64::MAX,
                request: Request {
                    client_id: ClientId(u64::MAX),
                    request_num: u64::MAX,
                    op: vec![7; wire::MESSAGE_SIZE_MAX - request_overhead(n)],
                },
                key: Signer::new(&SecretKey::from_seed(b"k"))
                    .unwrap()
                    .public_key(),
                auth: vec![Mac([1; 32]); n],
            };
            let encoded = wire::codec::encode_to_vec(&request).unwrap();
            assert!(
                encoded.len() <= request.request.op.len() + request_overhead(n),
                "n = {n}: {} bytes",
                encoded.len()
            );
        }
    }

    /// A client's key pair follows from the domain, the seed and its id:
    /// the same three give the same key (PBFT's clients keep theirs), and
    /// another domain another key.
    #[test]
    fn client_keys_derive_from_domain_seed_and_id() {
        let (_, keys) = group(false);
        let id = ClientId(7);
        let key_of = |domain: &'static str, seed: &[u8], id: ClientId| {
            let auth = ClientAuth::client(domain, &keys, false, seed);
            auth.register_client(id);
            auth_request(&auth, id, 1).key
        };
        let mut bytes = b"pbft client seed".to_vec();
        bytes.extend_from_slice(&7u64.to_le_bytes());
        let expected = Signer::new(&SecretKey::from_seed(&bytes))
            .unwrap()
            .public_key();
        assert_eq!(key_of("pbft client ", b"seed", id), expected);
        assert_ne!(key_of("other client ", b"seed", id), expected);
        assert_ne!(key_of("pbft client ", b"seed", ClientId(8)), expected);
        // Simulated groups give simulated client keys.
        let (_, simulated) = group(true);
        let auth = client_node(&simulated, true, b"seed", &[id]);
        assert!(matches!(
            auth_request(&auth, id, 1).key.parse(),
            Ok(VerifyingKey::Simulated(_))
        ));
    }

    /// OSDI §4: each replica checks its own entry of the authenticator; an
    /// altered request or session fails everywhere.
    #[test]
    fn request_authenticators_check_at_every_replica() {
        let (secrets, keys) = group(false);
        let id = ClientId(7);
        let client = client_node(&keys, false, b"seed", &[id]);
        let request = auth_request(&client, id, 1);
        assert_eq!(request.auth.len(), N);
        for i in 0..N as u8 {
            replica(&secrets, i, CLIENT_KEYS_MAX)
                .check_request(&request)
                .unwrap();
        }
        // The replica's own entry is checked: replica 1 with replica 2's
        // entry broken still accepts; replica 2 refuses it.
        let one = replica(&secrets, 1, CLIENT_KEYS_MAX);
        let mut auth = auth_request(&client, id, 2);
        auth.auth[2].0[0] ^= 1;
        one.check_request(&auth).unwrap();
        let two = replica(&secrets, 2, CLIENT_KEYS_MAX);
        assert_eq!(
            reason(two.check_request(&auth)),
            "request: bad authenticator"
        );
        // An altered operation, session, or an authenticator of the wrong
        // length, fails everywhere (at a replica that knows the client's key
        // already, and at one that does not).
        auth.auth[2].0[0] ^= 1;
        let mut altered = auth.clone();
        altered.request.op.push(0);
        let mut other_session = auth.clone();
        other_session.session += 1;
        let mut short = auth.clone();
        short.auth.pop();
        for bad in [altered, other_session, short] {
            assert_eq!(
                reason(one.check_request(&bad)),
                "request: bad authenticator"
            );
            let fresh = replica(&secrets, 3, CLIENT_KEYS_MAX);
            assert_eq!(
                reason(fresh.check_request(&bad)),
                "request: bad authenticator"
            );
        }
        // A key that is not a point on the curve.
        client.register_client(ClientId(8));
        let mut garbage = auth_request(&client, ClientId(8), 1);
        garbage.key = PublicKey([2; 33]);
        garbage.key.0[1..].fill(0xFF);
        assert_eq!(
            reason(one.check_request(&garbage)),
            "request: bad client key"
        );
        // Clients do not check requests, replicas do not send them, and a
        // client not registered has no keys.
        assert_eq!(
            reason(client.check_request(&auth)),
            "request: not a replica"
        );
        let req = auth.request.clone();
        assert_eq!(
            reason(authenticate(&one, 1, &req)),
            "encode: a replica sends no requests"
        );
        let unregistered = Request {
            client_id: ClientId(9),
            ..req
        };
        assert_eq!(
            reason(authenticate(&client, 1, &unregistered)),
            "encode: no such client"
        );
    }

    /// Authenticating as the message is encoded writes what encoding the
    /// variant number and then the authenticated request, built and MACed
    /// the plain way, would; and leaves the buffer as it was when it fails.
    #[test]
    fn authenticating_in_place_writes_the_message() {
        let (_, keys) = group(true);
        let id = ClientId(7);
        let client = client_node(&keys, true, b"seed", &[id]);
        for (variant, op) in [(0, 0), (3, 16), (1000, 900)] {
            let request = Request {
                client_id: id,
                request_num: 1 << 40,
                op: vec![1; op],
            };
            // The message built the plain way: the request copied in, its
            // MACs over a buffer of what they cover.
            let Keys::Client { clients, .. } = &client.keys else {
                unreachable!("a client node")
            };
            let (public, macs) = clients.read().unwrap()[&id].clone();
            let covered = wire::codec::encode_to_vec(&(u64::MAX, &request)).unwrap();
            let plain = AuthRequest {
                session: u64::MAX,
                request: request.clone(),
                key: public,
                auth: macs.iter().map(|key| key.mac(&covered)).collect(),
            };
            let mut expected = b"prefix".to_vec();
            wire::encode(&variant, &mut expected).unwrap();
            wire::encode(&plain, &mut expected).unwrap();
            let mut buf = b"prefix".to_vec();
            client
                .authenticate_into(variant, u64::MAX, &request, &mut buf)
                .unwrap();
            assert_eq!(buf, expected);
        }
        let huge = Request {
            client_id: id,
            request_num: 1,
            op: vec![0; wire::MESSAGE_SIZE_MAX],
        };
        let mut buf = b"prefix".to_vec();
        assert_eq!(
            reason(client.authenticate_into(0, 1, &huge, &mut buf)),
            "encode: too large"
        );
        assert_eq!(buf, b"prefix");
        let stranger = Request {
            client_id: ClientId(8),
            ..huge
        };
        assert_eq!(
            reason(client.authenticate_into(0, 1, &stranger, &mut buf)),
            "encode: no such client"
        );
        assert_eq!(buf, b"prefix");
    }

    #[test]
    fn reply_macs_check_and_first_key_wins() {
        let (secrets, keys) = group(false);
        let replica_2 = replica(&secrets, 2, CLIENT_KEYS_MAX);
        let id = ClientId(7);
        let client = client_node(&keys, false, b"seed", &[id]);
        let reply = reply(2, id, 1);
        // No request from the client yet: the replica has no key to MAC with.
        assert_eq!(
            reason(mac_reply(&replica_2, &reply)),
            "encode: no key for the client"
        );
        replica_2
            .check_request(&auth_request(&client, id, 1))
            .unwrap();
        let maced = mac_reply(&replica_2, &reply).unwrap();
        assert_eq!(maced.reply, reply);
        check_reply(&client, &maced).unwrap();

        // A flipped MAC bit, a reply naming another replica, or an altered
        // result fails.
        let mut tampered = maced.clone();
        tampered.mac.0[31] ^= 1;
        assert_eq!(reason(check_reply(&client, &tampered)), "reply: bad MAC");
        let mut forged = maced.clone();
        forged.reply.replica = ReplicaId(1);
        assert_eq!(reason(check_reply(&client, &forged)), "reply: bad MAC");
        let mut altered = maced.clone();
        altered.reply.result.push(0);
        assert_eq!(reason(check_reply(&client, &altered)), "reply: bad MAC");
        let mut outside = maced.clone();
        outside.reply.replica = ReplicaId(N as u8);
        assert_eq!(
            reason(check_reply(&client, &outside)),
            "reply: no such replica"
        );
        let mut stranger = maced.clone();
        stranger.reply.client_id = ClientId(8);
        assert_eq!(
            reason(check_reply(&client, &stranger)),
            "reply: no such client"
        );
        assert_eq!(
            reason(check_reply(&replica_2, &maced)),
            "reply: not a client"
        );
        assert_eq!(
            reason(mac_reply(&client, &reply)),
            "encode: a client sends no replies"
        );

        // Another key for the same client id (an impostor's node, with a
        // validly authenticated request of its own) is refused; the first
        // stays.
        let impostor = client_node(&keys, false, b"impostor", &[id]);
        only_the_first_key_checks(&replica_2, &client, &impostor, id, 2);
    }

    /// A flood of requests under fresh client keys fills the table of
    /// clients without a session, but evicts none with a session, never
    /// rebinds one, and never leaves a checked client without its key (the
    /// table used to check requests from further clients under whatever key
    /// they carried, without keeping it).
    #[test]
    fn a_flood_of_client_keys_neither_rebinds_nor_forgets_a_session() {
        const KEYS_MAX: usize = 64;
        let (secrets, keys) = group(true);
        let me = replica(&secrets, 1, KEYS_MAX);
        let (pinned, unpinned) = (ClientId(1), ClientId(2));
        let honest = client_node(&keys, true, b"honest", &[pinned, unpinned]);
        let forger = client_node(&keys, true, b"forger", &[pinned, unpinned]);
        let flood = client_node(&keys, true, b"flood", &[]);
        for id in [pinned, unpinned] {
            me.check_request(&auth_request(&honest, id, 1)).unwrap();
        }
        let key = auth_request(&honest, pinned, 1).key;
        me.pin_client(pinned, key);
        let first = 1000;
        for i in first..first + KEYS_MAX as u64 + 100 {
            flood.register_client(ClientId(i));
            me.check_request(&auth_request(&flood, ClientId(i), 1))
                .unwrap();
        }
        {
            let table = table(&me);
            assert_eq!(table.other.len(), KEYS_MAX);
            assert_eq!(table.pinned.len(), 1);
            // The newest flooder is kept: replies to it can be MACed.
            assert!(table.get(&ClientId(first + KEYS_MAX as u64 + 99)).is_some());
        }
        only_the_first_key_checks(&me, &honest, &forger, pinned, 2);
        // Evicting the session unpins the key; a state transfer pins the
        // installed sessions' keys.
        me.unpin_client(pinned);
        assert!(!table(&me).pinned.contains_key(&pinned));
        assert!(table(&me).other.contains_key(&pinned));
        me.repin_clients([(pinned, key)].into_iter());
        {
            let table = table(&me);
            assert_eq!(table.pinned.get(&pinned).map(|k| k.0), Some(key));
            assert!(!table.other.contains_key(&pinned));
            assert!(table.other.len() < KEYS_MAX);
        }
        // A replica that installs a client table afresh pins its keys without
        // deriving them; the first request or reply derives the MAC key.
        let fresh = replica(&secrets, 1, KEYS_MAX);
        fresh.repin_clients([(pinned, key)].into_iter());
        assert!(table(&fresh).pinned[&pinned].1.is_none());
        only_the_first_key_checks(&fresh, &honest, &forger, pinned, 3);
        assert!(table(&fresh).pinned[&pinned].1.is_some());
        let other = replica(&secrets, 1, KEYS_MAX);
        other.repin_clients([(pinned, key)].into_iter());
        check_reply(&honest, &mac_reply(&other, &reply(1, pinned, 3)).unwrap()).unwrap();
        // Sessions pinned before a state transfer and not in the installed
        // table are kept like any other client's.
        other.repin_clients(std::iter::empty());
        assert!(table(&other).pinned.is_empty());
        assert!(table(&other).other.contains_key(&pinned));
    }

    /// Client nodes ignore the replica's pinning calls (a protocol's
    /// shared code may make them at any node).
    #[test]
    fn pinning_at_a_client_node_changes_nothing() {
        let (_, keys) = group(true);
        let id = ClientId(7);
        let client = client_node(&keys, true, b"seed", &[id]);
        let before = auth_request(&client, id, 1);
        client.pin_client(id, PublicKey([1; 33]));
        client.unpin_client(id);
        client.repin_clients(std::iter::empty());
        assert_eq!(auth_request(&client, id, 1), before);
    }
}
