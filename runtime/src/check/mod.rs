//! Checkers that judge a run from the outside, never from inside protocol code.
//!
//! - [`linearizability`]: is a client history of key-value operations
//!   linearizable?
//! - [`agreement`]: did all replicas execute the same operation at every slot?

pub mod agreement;
pub mod linearizability;

use wire::ClientId;

use crate::time::Time;

/// One client operation as the driver saw it: invoked at `invoked`, completed
/// at `completed` with a result, or never completed (the client crashed, or the
/// run ended first). An operation that never completed may or may not have
/// taken effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: ClientId,
    /// The operation's bytes, as the application decodes them.
    pub op: Vec<u8>,
    pub invoked: Time,
    pub completed: Option<(Time, Vec<u8>)>,
}
