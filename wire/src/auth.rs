//! Clients' requests and replicas' replies authenticated with MACs, for
//! protocols whose clients share a key with each replica (PBFT, OSDI §4 and
//! TOCS §3.2, and those that authenticate clients the same way) rather than
//! sign: a request carries an authenticator, one MAC per replica
//! ([`AuthRequest`]), and a reply one MAC ([`MacReply`]). The keys and the
//! checks are in `protocols::common::client_auth`.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::client::Request;
use crate::{ClientId, Mac, PublicKey, ReplicaId};

/// A request and its authenticator: `auth[i]` is the HMAC-SHA256 of the
/// encoding of `(session, request)` under the key the client shares with
/// replica `i`, so every replica, and one that gets the request from another
/// replica (relayed, or in a proposal), checks that the client sent it; a
/// replica that passes it on cannot forge or alter it.
///
/// `session` is the client's session number, which the replicas' client
/// table assigned when the client registered (0 for the registration itself:
/// request number 0, no operation), so that a request replayed after its
/// session was evicted is refused rather than executed again.
///
/// `key` is the client's public key (compressed secp256k1), from which each
/// replica derives the key it shares with the client by ECDH, once per
/// client: carried by every request, so a replica that never heard from the
/// client (it restarted, or sees the request first from another replica) can
/// still check it. A replica keeps the first key under which a client's
/// request checked (see `protocols::common::client_auth`).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AuthRequest {
    pub session: u64,
    pub request: Request,
    pub key: PublicKey,
    pub auth: Vec<Mac>,
}

impl AuthRequest {
    /// What the authenticator's MACs cover.
    pub fn authenticated(&self) -> (u64, &Request) {
        (self.session, &self.request)
    }
}

/// A reply and its HMAC-SHA256 over the reply's encoding, under the key that
/// the replica and the client share.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct MacReply {
    pub reply: Reply,
    pub mac: Mac,
}

/// Result of a client's request, from one replica: `replica` executed
/// request `request_num` of `client_id` and got `result`. `view` is a view
/// of the protocol that ordered it, as that protocol defines it for its
/// clients (PBFT: the replica's view, whose primary the next request goes
/// to; HotStuff: the view whose leader the next request should go to).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct Reply {
    pub view: u64,
    pub replica: ReplicaId,
    pub client_id: ClientId,
    pub request_num: u64,
    #[serde(with = "serde_bytes")]
    pub result: Vec<u8>,
}

/// A reply and its MAC, encoded exactly as a protocol's message variant
/// number `variant` holding the [`MacReply`] of them would be (bincode
/// writes an enum as its variant's number, then its fields), from borrowed
/// parts: a replica encodes a reply without copying it into a message.
/// Protocols build one with their own variant numbers (`pbft::Message::
/// reply_out`), and test that it encodes as their message does.
#[derive(Clone, Copy, Debug)]
pub struct ReplyOut<'a> {
    pub variant: u32,
    pub reply: &'a Reply,
    pub mac: &'a Mac,
}

impl Encode for ReplyOut<'_> {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.variant.encode(encoder)?;
        self.reply.encode(encoder)?;
        self.mac.encode(encoder)
    }
}

// Field descriptions for the simulator's Byzantine mutations (see
// `crate::fields`).

crate::fields!(AuthRequest {
    session,
    request,
    key,
    auth
});
crate::fields!(MacReply { reply, mac });
crate::fields!(Reply {
    view,
    replica,
    client_id,
    request_num,
    result: bytes
});
