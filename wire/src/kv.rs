//! Operations and results of the key-value application, as they travel inside
//! [`Request::op`](crate::client::Request) and
//! [`Reply::result`](crate::client::Reply).

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

/// One key-value operation. Keys and values are arbitrary bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub enum Op {
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Get { key } | Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// The outcome of an [`Op`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Encode, Decode)]
pub enum OpResult {
    /// `Get`: the value, if the key is present.
    Value(Option<Vec<u8>>),
    /// `Put`: the previous value, if any.
    Replaced(Option<Vec<u8>>),
    /// `Delete`: the removed value, if any.
    Removed(Option<Vec<u8>>),
    /// The operation bytes did not decode as an [`Op`].
    Invalid,
    /// `Put`: the store is at its size budget and the put would grow it;
    /// nothing changed.
    Full,
}
