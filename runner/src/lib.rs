//! The runner as a library: what the `runner` binary, its tests and (later)
//! its experiments share.
//!
//! - [`cargo`]: building the `node` binary and finding where cargo put it.
//! - [`control`]: starting `node serve` processes and talking to them over the
//!   control protocol of [`wire::control`].
//! - [`loopback`]: a whole unreplicated run on this machine, one replica node
//!   and one clients node on loopback addresses.
//!
//! Like the binary, the library depends on `wire` only, never on protocol or
//! runtime code: nodes are separate processes.

pub mod cargo;
pub mod cleanup;
pub mod control;
pub mod experiment;
pub mod hosts;
pub mod loopback;
pub mod plot;
pub mod provenance;
pub mod results;
pub mod run;
pub mod threads;
