//! The one codec: bincode 2 with a fixed configuration.
//!
//! Messages use bincode's native `Encode`/`Decode` derives rather than its serde
//! layer. On our own request types the two are within about 10% of each other
//! in speed and instructions (`cargo bench -p benches --bench codec` measures
//! both; the several-fold gap seen on other structs does not show here), and
//! they write the same bytes, except that the native path writes fixed-size
//! arrays (signatures, keys, digests) without a length prefix. The serde
//! derives on wire types remain for JSON (reports, the control channel), never
//! for the network.
//!
//! Decoding is defensive: the length is checked against [`MESSAGE_SIZE_MAX`]
//! before any work, bincode's allocation limit is set to the same bound (so a
//! forged length prefix cannot make us allocate gigabytes), and trailing bytes
//! are an error. Decoding bytes from the network never panics.

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::{BorrowDecode, Decode, Encode};

/// Largest message we send or accept: the largest UDP payload over IPv4.
pub const MESSAGE_SIZE_MAX: usize = 65_507;

/// The fixed bincode configuration: little endian, variable-length integers,
/// and a decode limit of [`MESSAGE_SIZE_MAX`] bytes.
const CONFIG: Configuration<LittleEndian, Varint, Limit<MESSAGE_SIZE_MAX>> =
    bincode::config::standard().with_limit::<MESSAGE_SIZE_MAX>();

/// Why bytes could not be decoded. Every variant is the sender's fault.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {len} bytes exceeds the maximum of {MESSAGE_SIZE_MAX}")]
    TooLarge { len: usize },
    #[error("{trailing} trailing bytes after the message")]
    TrailingBytes { trailing: usize },
    #[error("malformed message: {0}")]
    Malformed(#[from] bincode::error::DecodeError),
}

impl DecodeError {
    /// A short, static name for counting drops by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "decode: too large",
            DecodeError::TrailingBytes { .. } => "decode: trailing bytes",
            DecodeError::Malformed(_) => "decode: malformed",
        }
    }
}

/// Why a value could not be encoded. Only a bug or an oversized payload built
/// locally leads here.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoded message of {len} bytes exceeds the maximum of {MESSAGE_SIZE_MAX}")]
    TooLarge { len: usize },
    #[error("encoding failed: {0}")]
    Bincode(#[from] bincode::error::EncodeError),
}

/// Appends the encoding of `msg` to `buf`. On error `buf` is left as it was.
pub fn encode<T: Encode>(msg: &T, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = buf.len();
    let result = bincode::encode_into_std_write(msg, buf, CONFIG);
    let len = buf.len() - start;
    match result {
        Ok(_) if len <= MESSAGE_SIZE_MAX => Ok(()),
        Ok(_) => {
            buf.truncate(start);
            Err(EncodeError::TooLarge { len })
        }
        Err(err) => {
            buf.truncate(start);
            Err(err.into())
        }
    }
}

/// Feeds the encoding of `msg` to `sink` piece by piece, without a buffer
/// (for a MAC over what [`encode`] would write: the same bytes, and the same
/// [`EncodeError::TooLarge`] past [`MESSAGE_SIZE_MAX`]). Returns its length.
///
/// bincode writes in small pieces (a varint, a key), so this pays off for
/// small messages only: to hash a large one, [`encode`] it into a buffer and
/// hash that in one go (`cargo bench -p benches --bench pbft` measures both
/// cases).
pub fn encode_into<T: Encode>(msg: &T, sink: impl FnMut(&[u8])) -> Result<usize, EncodeError> {
    struct Sink<F> {
        sink: F,
        len: usize,
    }
    impl<F: FnMut(&[u8])> bincode::enc::write::Writer for Sink<F> {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.len += bytes.len();
            (self.sink)(bytes);
            Ok(())
        }
    }
    let mut writer = Sink { sink, len: 0 };
    bincode::encode_into_writer(msg, &mut writer, CONFIG)?;
    if writer.len > MESSAGE_SIZE_MAX {
        return Err(EncodeError::TooLarge { len: writer.len });
    }
    Ok(writer.len)
}

/// Encodes `msg` into a fresh vector.
pub fn encode_to_vec<T: Encode>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    let mut buf = Vec::new();
    encode(msg, &mut buf)?;
    Ok(buf)
}

/// Decodes a `T` from the front of `bytes` and ignores the rest: to read a
/// message's header and decide whether the rest is worth decoding.
pub fn decode_prefix<T: Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MESSAGE_SIZE_MAX {
        return Err(DecodeError::TooLarge { len: bytes.len() });
    }
    let (msg, _) = bincode::decode_from_slice(bytes, CONFIG)?;
    Ok(msg)
}

/// Decodes exactly one `T` from `bytes`.
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MESSAGE_SIZE_MAX {
        return Err(DecodeError::TooLarge { len: bytes.len() });
    }
    let (msg, read) = bincode::decode_from_slice(bytes, CONFIG)?;
    whole(msg, read, bytes)
}

/// Decodes exactly one `T` from `bytes`, with the same checks as
/// [`decode`], for a `T` that borrows from them (`&[u8]` fields, see
/// [`crate::payload`]).
pub fn decode_borrowed<'a, T: BorrowDecode<'a, ()>>(bytes: &'a [u8]) -> Result<T, DecodeError> {
    if bytes.len() > MESSAGE_SIZE_MAX {
        return Err(DecodeError::TooLarge { len: bytes.len() });
    }
    let (msg, read) = bincode::borrow_decode_from_slice(bytes, CONFIG)?;
    whole(msg, read, bytes)
}

/// `msg`, if decoding it read all of `bytes`.
fn whole<T>(msg: T, read: usize, bytes: &[u8]) -> Result<T, DecodeError> {
    if read != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            trailing: bytes.len() - read,
        });
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientId;
    use crate::unreplicated::{self, Request};

    /// The baseline's messages, with their bytes in vectors.
    type Message = unreplicated::Message<Vec<u8>>;
    use proptest::prelude::*;

    fn request() -> Message {
        Message::Request(Request {
            client_id: ClientId(7),
            request_num: 42,
            op: b"put k v".to_vec(),
        })
    }

    #[test]
    fn round_trip() {
        let msg = request();
        let bytes = encode_to_vec(&msg).unwrap();
        assert_eq!(decode::<Message>(&bytes).unwrap(), msg);
    }

    #[test]
    fn encode_appends_and_leaves_prefix() {
        let mut buf = vec![0xAA];
        encode(&request(), &mut buf).unwrap();
        assert_eq!(buf[0], 0xAA);
        assert_eq!(decode::<Message>(&buf[1..]).unwrap(), request());
    }

    #[test]
    fn oversized_is_rejected_before_decoding() {
        let bytes = vec![0u8; MESSAGE_SIZE_MAX + 1];
        assert!(matches!(
            decode::<Message>(&bytes),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn oversized_encode_is_an_error_and_leaves_buffer() {
        let msg = Message::Request(Request {
            client_id: ClientId(1),
            request_num: 1,
            op: vec![0; MESSAGE_SIZE_MAX],
        });
        let mut buf = vec![1, 2, 3];
        assert!(matches!(
            encode(&msg, &mut buf),
            Err(EncodeError::TooLarge { .. })
        ));
        assert_eq!(buf, [1, 2, 3]);
    }

    #[test]
    fn encode_into_feeds_the_same_bytes_and_the_same_limit() {
        let msg = request();
        let mut fed = Vec::new();
        let len = encode_into(&msg, |bytes| fed.extend_from_slice(bytes)).unwrap();
        assert_eq!(fed, encode_to_vec(&msg).unwrap());
        assert_eq!(len, fed.len());
        let large = Message::Request(Request {
            client_id: ClientId(1),
            request_num: 1,
            op: vec![0; MESSAGE_SIZE_MAX],
        });
        assert!(matches!(
            encode_into(&large, |_| {}),
            Err(EncodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode_to_vec(&request()).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<Message>(&bytes),
            Err(DecodeError::TrailingBytes { trailing: 1 })
        ));
    }

    #[test]
    fn forged_length_prefix_does_not_allocate() {
        // Variant 0 (Request), client 1, request 1, then an op length of
        // u64::MAX: bincode's limit must refuse it without trying to allocate.
        let bytes = [0, 1, 1, 253, 255, 255, 255, 255, 255, 255, 255, 255];
        assert!(matches!(
            decode::<Message>(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode_to_vec(&request()).unwrap();
        for len in 0..bytes.len() {
            assert!(decode::<Message>(&bytes[..len]).is_err(), "prefix {len}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode::<Message>(&bytes);
            let _ = decode::<crate::kv::Op>(&bytes);
            let _ = decode::<crate::Signed<crate::client::Request>>(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut bytes = encode_to_vec(&request()).unwrap();
            for (index, value) in flips {
                let i = index.index(bytes.len());
                bytes[i] = value;
            }
            let _ = decode::<Message>(&bytes);
        }

        #[test]
        fn round_trip_any_request(client in any::<u64>(), num in any::<u64>(),
                                  op in proptest::collection::vec(any::<u8>(), 0..300)) {
            let msg = Message::Request(Request { client_id: ClientId(client), request_num: num, op });
            let bytes = encode_to_vec(&msg).unwrap();
            prop_assert_eq!(decode::<Message>(&bytes).unwrap(), msg);
        }
    }
}
