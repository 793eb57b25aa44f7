//! Digests, keys, signed envelopes and MACs.
//!
//! A signature is secp256k1 ECDSA over the SHA-256 digest of the payload's
//! codec encoding. The encoding is deterministic, so a verifier re-encodes the
//! decoded payload to get the signed bytes: no need to carry them separately,
//! and a relayer that re-encodes a message cannot break its signature.
//!
//! # Simulated keys
//!
//! The simulator's seeded runs would spend 95% of their time in secp256k1.
//! They use simulated keys instead ([`SecretKey::simulated`]): the same
//! types and calls, with a SHA-256 of the key's identity and the digest as
//! the signature, and a SHA-256 of both identities as the shared MAC key.
//! They are not secure: whoever knows a simulated public key can sign for
//! it. That is enough for a simulation, where the only adversaries are the
//! simulator's own, which sign with their own key (so a forged signature
//! still fails), and it makes a seed about twenty times faster. Real keys
//! and simulated keys do not mix (verifying one against the other fails);
//! a simulated key is marked by sixteen 0xFF bytes at the front of the secret
//! (no valid secp256k1 secret key starts so: they are below the group order)
//! and a 0xFF prefix on the public key (no valid compressed point has it).

use std::cell::RefCell;
use std::fmt;

use bincode::{Decode, Encode};
use hmac::{Hmac, Mac as _};
use secp256k1::{Secp256k1, SignOnly};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::codec::{self, EncodeError};

pub mod tally;

/// A SHA-256 digest.
#[derive(
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Encode,
    Decode,
)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        tally::digest(bytes.len());
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of a value's codec encoding.
    pub fn of_encoded<T: Encode>(value: &T) -> Result<Digest, EncodeError> {
        // Through a buffer: digests cover whole batches, which hash faster in
        // one piece than as bincode writes them (see `codec::encode_into`).
        // One buffer per thread, kept from one digest to the next: signing
        // and checking hash every message, and a fresh vector grew several
        // times for each.
        thread_local! {
            static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            codec::encode(value, &mut buf)?;
            let digest = Digest::of(&buf);
            if buf.capacity() > codec::MESSAGE_SIZE_MAX {
                // A large state's digest: not kept for the next message.
                *buf = Vec::new();
            }
            Ok(digest)
        })
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..6] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…")
    }
}

/// A compact (64-byte) ECDSA signature as it goes on the wire. Parsed only when
/// verified, so a malformed one is a verification failure, not a decode error.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct Signature(#[serde(with = "serde_bytes")] pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// A compressed (33-byte) secp256k1 public key, as configurations carry it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub struct PublicKey(#[serde(with = "serde_bytes")] pub [u8; 33]);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2]
        )
    }
}

/// A 32-byte secp256k1 secret key (or a simulated one, see the module docs).
/// Its `Debug` does not print it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct SecretKey(pub [u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

/// Why a signature or key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("invalid secret key")]
    InvalidSecretKey,
    #[error("invalid public key")]
    InvalidPublicKey,
    #[error("invalid signature")]
    InvalidSignature,
    #[error("invalid MAC")]
    InvalidMac,
    #[error("payload could not be encoded")]
    Encode,
}

/// The first bytes of a simulated secret key.
const SIMULATED_MARK: [u8; 16] = [0xFF; 16];
/// The prefix of a simulated public key.
const SIMULATED_PREFIX: u8 = 0xFF;

impl SecretKey {
    /// A simulated key derived from `seed` (see the module docs): for the
    /// simulator only.
    pub fn simulated(seed: &[u8]) -> SecretKey {
        let mut hasher = Sha256::new();
        hasher.update(b"simulated key");
        hasher.update(seed);
        let hash: [u8; 32] = hasher.finalize().into();
        let mut bytes = [0; 32];
        bytes[..16].copy_from_slice(&SIMULATED_MARK);
        bytes[16..].copy_from_slice(&hash[..16]);
        SecretKey(bytes)
    }

    pub fn is_simulated(&self) -> bool {
        self.0[..16] == SIMULATED_MARK
    }

    /// A simulated key's identity.
    fn simulated_id(&self) -> [u8; 16] {
        self.0[16..].try_into().expect("16 bytes")
    }

    /// A key derived deterministically from `seed` (for simulations and tests,
    /// where keys must follow from the run's seed).
    pub fn from_seed(seed: &[u8]) -> SecretKey {
        let mut counter = 0u32;
        loop {
            let mut hasher = Sha256::new();
            hasher.update(seed);
            hasher.update(counter.to_le_bytes());
            let bytes: [u8; 32] = hasher.finalize().into();
            // Almost every 32-byte string is a valid key; retry the rare ones
            // that are zero or not below the group order.
            if secp256k1::SecretKey::from_byte_array(bytes).is_ok() {
                return SecretKey(bytes);
            }
            counter += 1;
        }
    }
}

/// Signs with one secret key through a long-lived context. Shareable across
/// threads (`&self`).
///
/// The context is why this crate stays on secp256k1 0.31: from 0.33 on,
/// signing goes through a global context that is re-randomised after every
/// signature, which is half the cost of signing (`cargo bench -p benches
/// --bench crypto` measures both ways).
pub struct Signer {
    key: SigningKey,
    public: PublicKey,
}

enum SigningKey {
    Secp256k1 {
        secp: Secp256k1<SignOnly>,
        key: secp256k1::SecretKey,
    },
    Simulated([u8; 16]),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("public", &self.public)
            .finish()
    }
}

impl Signer {
    pub fn new(key: &SecretKey) -> Result<Signer, CryptoError> {
        if key.is_simulated() {
            let id = key.simulated_id();
            let mut public = [0; 33];
            public[0] = SIMULATED_PREFIX;
            public[1..17].copy_from_slice(&id);
            return Ok(Signer {
                key: SigningKey::Simulated(id),
                public: PublicKey(public),
            });
        }
        let secp = Secp256k1::signing_only();
        let key = secp256k1::SecretKey::from_byte_array(key.0)
            .map_err(|_| CryptoError::InvalidSecretKey)?;
        let public = PublicKey(key.public_key(&secp).serialize());
        Ok(Signer {
            key: SigningKey::Secp256k1 { secp, key },
            public,
        })
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub fn sign_digest(&self, digest: &Digest) -> Signature {
        tally::signature();
        match &self.key {
            SigningKey::Secp256k1 { secp, key } => {
                let message = secp256k1::Message::from_digest(digest.0);
                Signature(secp.sign_ecdsa(message, key).serialize_compact())
            }
            SigningKey::Simulated(id) => simulated_signature(id, digest),
        }
    }
}

fn simulated_signature(id: &[u8; 16], digest: &Digest) -> Signature {
    let mut hasher = Sha256::new();
    hasher.update(b"simulated signature");
    hasher.update(id);
    hasher.update(digest.0);
    let mut bytes = [0; 64];
    bytes[..32].copy_from_slice(&hasher.finalize());
    Signature(bytes)
}

/// A public key parsed once, for repeated verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyingKey {
    Secp256k1(secp256k1::PublicKey),
    /// A simulated key's identity (see the module docs).
    Simulated([u8; 16]),
}

impl PublicKey {
    pub fn parse(&self) -> Result<VerifyingKey, CryptoError> {
        if self.0[0] == SIMULATED_PREFIX {
            if self.0[17..].iter().any(|&b| b != 0) {
                return Err(CryptoError::InvalidPublicKey);
            }
            return Ok(VerifyingKey::Simulated(
                self.0[1..17].try_into().expect("16 bytes"),
            ));
        }
        secp256k1::PublicKey::from_slice(&self.0)
            .map(VerifyingKey::Secp256k1)
            .map_err(|_| CryptoError::InvalidPublicKey)
    }
}

thread_local! {
    /// One verification context per thread, created once: creating one costs
    /// more than a verification.
    static VERIFIER: Secp256k1<secp256k1::VerifyOnly> = Secp256k1::verification_only();
}

/// Checks `signature` over `digest` against `key`.
pub fn verify_digest(
    digest: &Digest,
    signature: &Signature,
    key: &VerifyingKey,
) -> Result<(), CryptoError> {
    tally::verification();
    let key = match key {
        VerifyingKey::Secp256k1(key) => key,
        VerifyingKey::Simulated(id) => {
            return (simulated_signature(id, digest) == *signature)
                .then_some(())
                .ok_or(CryptoError::InvalidSignature);
        }
    };
    let signature = secp256k1::ecdsa::Signature::from_compact(&signature.0)
        .map_err(|_| CryptoError::InvalidSignature)?;
    let message = secp256k1::Message::from_digest(digest.0);
    VERIFIER
        .with(|secp| secp.verify_ecdsa(message, &signature, key))
        .map_err(|_| CryptoError::InvalidSignature)
}

/// A MAC tag: HMAC-SHA256.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Mac(pub [u8; 32]);

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

/// A symmetric key that two parties share, keyed once for HMAC-SHA256 (the
/// paper's MAC authenticators, §4 of Castro & Liskov, with one key per pair).
/// Its `Debug` does not print it.
#[derive(Clone)]
pub struct MacKey(Hmac<Sha256>);

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey(…)")
    }
}

impl MacKey {
    pub fn new(key: &[u8; 32]) -> MacKey {
        MacKey(Hmac::new_from_slice(key).expect("HMAC takes keys of any length"))
    }

    /// The key that the holder of `secret` and the holder of the secret key
    /// behind `public` share (ECDH on secp256k1: SHA-256 of the shared
    /// point). Either side computes it with its own secret key and the other's
    /// public key.
    pub fn agree(public: &VerifyingKey, secret: &SecretKey) -> Result<MacKey, CryptoError> {
        let public = match (public, secret.is_simulated()) {
            (VerifyingKey::Secp256k1(public), false) => public,
            (VerifyingKey::Simulated(theirs), true) => {
                let ours = secret.simulated_id();
                let (low, high) = if ours <= *theirs {
                    (ours, *theirs)
                } else {
                    (*theirs, ours)
                };
                let mut hasher = Sha256::new();
                hasher.update(b"simulated shared key");
                hasher.update(low);
                hasher.update(high);
                return Ok(MacKey::new(&hasher.finalize().into()));
            }
            (VerifyingKey::Secp256k1(_), true) => return Err(CryptoError::InvalidSecretKey),
            (VerifyingKey::Simulated(_), false) => return Err(CryptoError::InvalidPublicKey),
        };
        let secret = secp256k1::SecretKey::from_byte_array(secret.0)
            .map_err(|_| CryptoError::InvalidSecretKey)?;
        let shared = secp256k1::ecdh::SharedSecret::new(public, &secret);
        Ok(MacKey::new(&shared.secret_bytes()))
    }

    pub fn mac(&self, bytes: &[u8]) -> Mac {
        tally::mac(bytes.len());
        let mut hmac = self.0.clone();
        hmac.update(bytes);
        Mac(hmac.finalize().into_bytes().into())
    }

    /// Checks `mac` over `bytes`, in constant time.
    pub fn verify(&self, bytes: &[u8], mac: &Mac) -> Result<(), CryptoError> {
        tally::mac(bytes.len());
        let mut hmac = self.0.clone();
        hmac.update(bytes);
        hmac.verify_slice(&mac.0)
            .map_err(|_| CryptoError::InvalidMac)
    }

    /// The MAC over `value`'s encoding, computed as it is encoded (no
    /// buffer): the same as [`MacKey::mac`] over [`codec::encode`]'s bytes.
    pub fn mac_encoded<T: Encode>(&self, value: &T) -> Result<Mac, CryptoError> {
        let mut hmac = self.0.clone();
        let len = codec::encode_into(value, |bytes| hmac.update(bytes))
            .map_err(|_| CryptoError::Encode)?;
        tally::mac(len);
        Ok(Mac(hmac.finalize().into_bytes().into()))
    }

    /// Checks `mac` over `value`'s encoding, in constant time, without a
    /// buffer.
    pub fn verify_encoded<T: Encode>(&self, value: &T, mac: &Mac) -> Result<(), CryptoError> {
        let mut hmac = self.0.clone();
        let len = codec::encode_into(value, |bytes| hmac.update(bytes))
            .map_err(|_| CryptoError::Encode)?;
        tally::mac(len);
        hmac.verify_slice(&mac.0)
            .map_err(|_| CryptoError::InvalidMac)
    }
}

/// A payload with its sender's signature over the payload's encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub struct Signed<T> {
    pub payload: T,
    pub signature: Signature,
}

impl<T: Encode> Signed<T> {
    pub fn sign(payload: T, signer: &Signer) -> Result<Signed<T>, CryptoError> {
        let digest = Digest::of_encoded(&payload).map_err(|_| CryptoError::Encode)?;
        let signature = signer.sign_digest(&digest);
        Ok(Signed { payload, signature })
    }

    /// Checks the signature against `key`; on success the payload may be trusted
    /// to come from the key's owner.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), CryptoError> {
        let digest = Digest::of_encoded(&self.payload).map_err(|_| CryptoError::Encode)?;
        verify_digest(&digest, &self.signature, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Request;
    use crate::{ClientId, codec};

    fn request(op: &[u8]) -> Request {
        Request {
            client_id: ClientId(1),
            request_num: 1,
            op: op.to_vec(),
        }
    }

    #[test]
    fn streamed_digest_and_macs_match_the_encoded_bytes() {
        let msg = request(b"streamed");
        let bytes = codec::encode_to_vec(&msg).unwrap();
        assert_eq!(Digest::of_encoded(&msg).unwrap(), Digest::of(&bytes));
        let key = MacKey::new(&[7; 32]);
        let mac = key.mac_encoded(&msg).unwrap();
        assert_eq!(mac, key.mac(&bytes));
        key.verify_encoded(&msg, &mac).unwrap();
        assert!(key.verify_encoded(&request(b"other"), &mac).is_err());
    }

    #[test]
    fn sign_and_verify() {
        let signer = Signer::new(&SecretKey::from_seed(b"replica 0")).unwrap();
        let key = signer.public_key().parse().unwrap();
        let signed = Signed::sign(request(b"x"), &signer).unwrap();
        signed.verify(&key).unwrap();

        // Survives a trip through the codec.
        let bytes = codec::encode_to_vec(&signed).unwrap();
        let decoded: Signed<Request> = codec::decode(&bytes).unwrap();
        decoded.verify(&key).unwrap();
    }

    #[test]
    fn tampering_is_detected() {
        let signer = Signer::new(&SecretKey::from_seed(b"replica 0")).unwrap();
        let other = Signer::new(&SecretKey::from_seed(b"replica 1")).unwrap();
        let key = signer.public_key().parse().unwrap();
        let other_key = other.public_key().parse().unwrap();
        let signed = Signed::sign(request(b"x"), &signer).unwrap();

        let mut altered = signed.clone();
        altered.payload.op = b"y".to_vec();
        assert_eq!(altered.verify(&key), Err(CryptoError::InvalidSignature));
        assert_eq!(
            signed.verify(&other_key),
            Err(CryptoError::InvalidSignature)
        );
        let mut garbage = signed.clone();
        garbage.signature = Signature([0xFF; 64]);
        assert_eq!(garbage.verify(&key), Err(CryptoError::InvalidSignature));
    }

    #[test]
    fn seeded_keys_are_deterministic_and_distinct() {
        assert_eq!(SecretKey::from_seed(b"a"), SecretKey::from_seed(b"a"));
        assert_ne!(SecretKey::from_seed(b"a"), SecretKey::from_seed(b"b"));
    }

    #[test]
    fn simulated_keys_sign_verify_and_agree_but_do_not_mix_with_real_ones() {
        let a = SecretKey::simulated(b"a");
        let b = SecretKey::simulated(b"b");
        assert!(a.is_simulated() && !SecretKey::from_seed(b"a").is_simulated());
        let (signer_a, signer_b) = (Signer::new(&a).unwrap(), Signer::new(&b).unwrap());
        let key_a = signer_a.public_key().parse().unwrap();
        let key_b = signer_b.public_key().parse().unwrap();
        let signed = Signed::sign(request(b"x"), &signer_a).unwrap();
        signed.verify(&key_a).unwrap();
        assert_eq!(signed.verify(&key_b), Err(CryptoError::InvalidSignature));
        let mut altered = signed.clone();
        altered.payload.op = b"y".to_vec();
        assert_eq!(altered.verify(&key_a), Err(CryptoError::InvalidSignature));
        // Both sides agree on one key; a third party's differs.
        let ab = MacKey::agree(&key_b, &a).unwrap().mac(b"m");
        let ba = MacKey::agree(&key_a, &b).unwrap().mac(b"m");
        assert_eq!(ab, ba);
        let c = SecretKey::simulated(b"c");
        assert_ne!(MacKey::agree(&key_b, &c).unwrap().mac(b"m"), ab);
        // A real key and a simulated one refuse each other.
        let real = Signer::new(&SecretKey::from_seed(b"r")).unwrap();
        let real_key = real.public_key().parse().unwrap();
        assert!(MacKey::agree(&real_key, &a).is_err());
        assert!(MacKey::agree(&key_a, &SecretKey::from_seed(b"r")).is_err());
        let real_signed = Signed::sign(request(b"x"), &real).unwrap();
        assert!(real_signed.verify(&key_a).is_err());
        assert!(signed.verify(&real_key).is_err());
    }

    #[test]
    fn bad_public_key_is_an_error() {
        assert_eq!(
            PublicKey([0; 33]).parse(),
            Err(CryptoError::InvalidPublicKey)
        );
    }
}
