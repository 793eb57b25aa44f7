//! Protocols as sans-IO state machines, and the applications they replicate.
//!
//! - [`app`]: the [`app::App`] trait and the null and key-value applications,
//!   with which of their operations only read ([`app::ReadOnly`]).
//! - [`common`]: building blocks protocols share: the client table
//!   (at-most-once execution, cached replies, bounded with
//!   least-recently-executed eviction, snapshots), the clients'
//!   retransmission schedule (smoothed latency, floor, cap, backoff) and
//!   vote sets (distinct voters, matching keys, thresholds).
//! - [`unreplicated`]: the baseline every replicated protocol is compared to.
//! - [`pbft`]: Practical Byzantine Fault Tolerance (Castro & Liskov).
//! - [`registry`]: the one list of protocols, and the [`registry::Kit`]
//!   trait a protocol implements to be run by `node serve`, `node sim` and
//!   the seeded runs.
//! - [`simulate`]: runs one seed of a protocol in the simulator with faults and
//!   checkers; what `node sim` and the tests call.
//! - [`planted`]: bugs put back on purpose (test builds only), to show the
//!   seeded runs catch them; each protocol declares its own.

pub mod app;
pub mod chain;
pub mod common;
pub mod hotstuff;
pub mod pbft;
pub mod planted;
pub mod registry;
pub mod simulate;
pub mod unreplicated;
pub mod vr;
