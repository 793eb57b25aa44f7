//! The runtime: what a protocol is written against, and what runs it.
//!
//! - [`actor`]: the traits a protocol implements ([`State`], [`SharedState`],
//!   [`Client`]) and the [`Context`] through which it sees time, timers,
//!   randomness and the network. Protocol code touches nothing else.
//! - [`durable`]: what a node keeps across a crash ([`Context::persist`],
//!   [`State::on_recover`]), in the simulator's memory or in a file.
//! - [`driver`]: the one driver core ([`driver::Core`], [`driver::Driver`])
//!   that every runtime drives a node through: it builds the context for each
//!   handler call, fires due timers, and hands what a node sends to the
//!   driver's sink, keeping the durable-write barrier. The simulator's
//!   [`node::Node`], the replica's protocol stage and the benchmark clients
//!   all use it.
//! - [`hint`]: the one channel from a node's state to its codec (drop-only
//!   hints decoders read without locks).
//! - [`node`]: a node with its types erased, driven on the calling thread
//!   (the simulator's unit).
//! - [`deploy`] and [`net`]: the real runtime (stage threads, benchmark
//!   clients, the UDP transport on io_uring or epoll).
//! - [`sim`]: a deterministic simulator that runs whole clusters and their
//!   clients on one thread in virtual time, under faults drawn from one seed.
//! - [`check`]: checkers that judge a run from the outside: linearizability of
//!   client histories, agreement among replicas.

pub mod actor;
pub mod check;
pub mod deploy;
pub mod driver;
pub mod durable;
pub mod hint;
pub mod net;
pub mod node;
pub mod rng;
pub mod sim;
pub mod time;

pub use actor::{Client, Context, Counters, Dest, DropReason, SharedState, Source, State, Timers};
pub use rng::Rng;
pub use time::Time;
pub use wire::{Addr, ClientId, ReplicaId};
