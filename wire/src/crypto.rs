//! Digests, keys, signed envelopes and MACs.
//!
//! A signature is secp256k1 ECDSA over the SHA-256 digest of the payload's
//! codec encoding. The encoding is deterministic, so a verifier re-encodes the
//! decoded payload to get the signed bytes: no need to carry them separately,
//! and a relayer that re-encodes a message cannot break its signature.

use std::fmt;

use bincode::{Decode, Encode};
use hmac::{Hmac, Mac as _};
use secp256k1::{Secp256k1, SignOnly};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::codec::{self, EncodeError};

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
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of a value's codec encoding.
    pub fn of_encoded<T: Encode>(value: &T) -> Result<Digest, EncodeError> {
        // Through a buffer: digests cover whole batches, which hash faster in
        // one piece than as bincode writes them (see `codec::encode_into`).
        let mut buf = Vec::new();
        codec::encode(value, &mut buf)?;
        Ok(Digest::of(&buf))
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

/// A 32-byte secp256k1 secret key. Its `Debug` does not print it.
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

impl SecretKey {
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
    secp: Secp256k1<SignOnly>,
    key: secp256k1::SecretKey,
    public: PublicKey,
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
        let secp = Secp256k1::signing_only();
        let key = secp256k1::SecretKey::from_byte_array(key.0)
            .map_err(|_| CryptoError::InvalidSecretKey)?;
        let public = PublicKey(key.public_key(&secp).serialize());
        Ok(Signer { secp, key, public })
    }

    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    pub fn sign_digest(&self, digest: &Digest) -> Signature {
        let message = secp256k1::Message::from_digest(digest.0);
        let signature = self.secp.sign_ecdsa(message, &self.key);
        Signature(signature.serialize_compact())
    }
}

/// A public key parsed once, for repeated verification.
pub type VerifyingKey = secp256k1::PublicKey;

impl PublicKey {
    pub fn parse(&self) -> Result<VerifyingKey, CryptoError> {
        VerifyingKey::from_slice(&self.0).map_err(|_| CryptoError::InvalidPublicKey)
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
        let secret = secp256k1::SecretKey::from_byte_array(secret.0)
            .map_err(|_| CryptoError::InvalidSecretKey)?;
        let shared = secp256k1::ecdh::SharedSecret::new(public, &secret);
        Ok(MacKey::new(&shared.secret_bytes()))
    }

    pub fn mac(&self, bytes: &[u8]) -> Mac {
        let mut hmac = self.0.clone();
        hmac.update(bytes);
        Mac(hmac.finalize().into_bytes().into())
    }

    /// Checks `mac` over `bytes`, in constant time.
    pub fn verify(&self, bytes: &[u8], mac: &Mac) -> Result<(), CryptoError> {
        let mut hmac = self.0.clone();
        hmac.update(bytes);
        hmac.verify_slice(&mac.0)
            .map_err(|_| CryptoError::InvalidMac)
    }

    /// The MAC over `value`'s encoding, computed as it is encoded (no
    /// buffer): the same as [`MacKey::mac`] over [`codec::encode`]'s bytes.
    pub fn mac_encoded<T: Encode>(&self, value: &T) -> Result<Mac, CryptoError> {
        let mut hmac = self.0.clone();
        codec::encode_into(value, |bytes| hmac.update(bytes)).map_err(|_| CryptoError::Encode)?;
        Ok(Mac(hmac.finalize().into_bytes().into()))
    }

    /// Checks `mac` over `value`'s encoding, in constant time, without a
    /// buffer.
    pub fn verify_encoded<T: Encode>(&self, value: &T, mac: &Mac) -> Result<(), CryptoError> {
        let mut hmac = self.0.clone();
        codec::encode_into(value, |bytes| hmac.update(bytes)).map_err(|_| CryptoError::Encode)?;
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
    fn bad_public_key_is_an_error() {
        assert_eq!(
            PublicKey([0; 33]).parse(),
            Err(CryptoError::InvalidPublicKey)
        );
    }
}
