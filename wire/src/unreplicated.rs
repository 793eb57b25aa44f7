//! Messages of the unreplicated baseline: plain request / reply.

use bincode::{Decode, Encode};
use serde::{Deserialize, Serialize};

use crate::client::{Reply, Request};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Encode, Decode)]
pub enum Message {
    Request(Request),
    Reply(Reply),
}
