//! The runtime: what a protocol is written against, and what runs it.
//!
//! - [`actor`]: the traits a protocol implements ([`State`], [`SharedState`],
//!   [`Client`]) and the [`Context`] through which it sees time, timers,
//!   randomness and the network. Protocol code touches nothing else.
//! - [`sim`]: a deterministic simulator that runs whole clusters and their
//!   clients on one thread in virtual time, under faults drawn from one seed.
//! - [`check`]: checkers that judge a run from the outside: linearizability of
//!   client histories, agreement among replicas.

pub mod actor;
pub mod check;
pub mod deploy;
pub mod net;
pub mod node;
pub mod rng;
pub mod sim;
pub mod time;

pub use actor::{Client, Context, Counters, Dest, DropReason, SharedState, Source, State, Timers};
pub use rng::Rng;
pub use time::Time;
pub use wire::{Addr, ClientId, ReplicaId};
