//! [`Payload`]: the bytes a message carries (an operation, a result) held
//! in a shared, reference-counted buffer ([`bytes::Bytes`]), so that a
//! decoded message can point into the datagram it arrived in instead of
//! copying out of it.
//!
//! The real runtime keeps each batch of received datagrams in one shared
//! buffer and hands a codec each datagram as a [`Bytes`] slice of it
//! (`runtime::SharedState::decode_shared`). A codec that decodes its message
//! with borrowed fields (`&[u8]`, through [`crate::codec::decode_borrowed`])
//! makes each a [`Payload::slice_of`] the datagram: no copy, no allocation.
//! The buffer is reused once every payload pointing into it is dropped, so
//! a payload suits a message handled and let go of, such as the baseline's
//! requests; a protocol that keeps what it receives for long (a log of
//! requests) would keep whole receive buffers alive with it, and copies
//! instead (a `Vec<u8>` field, or [`Payload::copy_from_slice`]).
//!
//! Encoded as a `Vec<u8>` is (a length, then the bytes); decoded plainly
//! (`Decode`), it copies.

use std::fmt;
use std::ops::Deref;

use bincode::de::{BorrowDecoder, Decoder};
use bincode::enc::Encoder;
use bincode::error::{DecodeError, EncodeError};
use bincode::{BorrowDecode, Decode, Encode};

pub use bytes::Bytes;

/// Bytes a message carries, shared rather than copied (see the module
/// docs). Dereferences to `[u8]`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Payload(Bytes);

impl Payload {
    /// A payload of its own: a copy of `bytes`.
    pub fn copy_from_slice(bytes: &[u8]) -> Payload {
        Payload(Bytes::copy_from_slice(bytes))
    }

    /// `part`, which lies within `datagram` (a field decoded from it with
    /// borrowed bytes), as a slice of `datagram`'s buffer: nothing copied.
    ///
    /// # Panics
    ///
    /// If `part` is not within `datagram` (a bug in the codec; an empty
    /// `part` always is).
    pub fn slice_of(datagram: &Bytes, part: &[u8]) -> Payload {
        if part.is_empty() {
            return Payload::default();
        }
        Payload(datagram.slice_ref(part))
    }

    /// The bytes as a vector of their own.
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Takes the vector's buffer: nothing copied.
impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Payload {
        Payload(Bytes::from(bytes))
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Encode for Payload {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), EncodeError> {
        self.0.as_ref().encode(encoder)
    }
}

impl<Context> Decode<Context> for Payload {
    fn decode<D: Decoder<Context = Context>>(decoder: &mut D) -> Result<Self, DecodeError> {
        Vec::<u8>::decode(decoder).map(Payload::from)
    }
}

impl<'de, Context> BorrowDecode<'de, Context> for Payload {
    fn borrow_decode<D: BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, DecodeError> {
        <&[u8]>::borrow_decode(decoder).map(Payload::copy_from_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_as_a_vector_and_decodes_back() {
        let bytes = b"some bytes".to_vec();
        let encoded = crate::codec::encode_to_vec(&Payload::from(bytes.clone())).unwrap();
        assert_eq!(encoded, crate::codec::encode_to_vec(&bytes).unwrap());
        let decoded: Payload = crate::decode(&encoded).unwrap();
        assert_eq!(&*decoded, &bytes[..]);
    }

    #[test]
    fn a_slice_of_a_datagram_shares_its_buffer() {
        let datagram = Bytes::from(b"header:body".to_vec());
        let part = &datagram[7..];
        let payload = Payload::slice_of(&datagram, part);
        assert_eq!(&*payload, b"body");
        assert_eq!(payload.as_ptr(), part.as_ptr(), "not copied");
        assert!(Payload::slice_of(&datagram, &[]).is_empty());
    }
}
