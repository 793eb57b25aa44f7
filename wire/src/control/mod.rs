//! The control protocol between the runner and a `node` process.
//!
//! A node listens on a TCP control address. The runner connects and sends one
//! [`Command::Run`] with the node's whole [`NodeConfig`]; the node answers
//! [`Event::Started`] once its sockets are bound and its threads run, then an
//! [`Event::Interval`] every `report_interval_ms`, and on [`Command::Stop`] (or
//! when the runner hangs up) it stops, sends [`Event::Finished`], and exits.
//! Anything wrong (a malformed frame, another version, an invalid config) gets
//! one [`Event::Error`] line back and a nonzero exit.
//!
//! Who may connect: the runner hands each node a fresh secret on its standard
//! input, and every connection first passes the handshake of [`auth`] (an
//! HMAC-SHA256 challenge-response under that secret, then the node proves
//! itself back) within a deadline; only then come frames. The first frame has
//! one deadline for the whole of it ([`auth::DeadlineReader`]), so a peer
//! that trickles bytes cannot hold the connection open.
//!
//! Framing: each message is a 4-byte big-endian length, then the message as
//! JSON. The control plane is not the data plane: it carries a handful of
//! messages per run, and JSON makes its errors readable ("missing field
//! `replicas`"). The first field of every message is its
//! [`CONTROL_VERSION`], checked before anything else.
//!
//! Both ends go through the same few functions: [`write_frame`] and
//! [`read_frame`] move frames (a length over [`CONTROL_FRAME_MAX`] is refused
//! before anything is allocated), [`decode_command`] and [`decode_event`]
//! check the version and then parse, and [`NodeConfig::validate`] refuses a
//! configuration no node could run, or one beyond the named upper bound of
//! any count, id, size, rate or time in it ([`REPLICAS_MAX`],
//! [`CLIENTS_MAX`], [`CORE_ID_MAX`] and the rest below), so that no
//! configuration makes a node abort on an allocation, overflow a clock or
//! panic in a system call. Each failure is a typed error whose `Display` is
//! one line a person can act on, naming the field.

//!
//! The module's parts: [`auth`] (the handshake), `framing` (frames,
//! commands, events and their errors), `config` (what a node runs, its
//! bounds and their checks) and `reports` (what a node reports: started,
//! intervals, totals, the counters the runner reads). Everything is
//! re-exported here, so paths name `wire::control::X` whatever part `X`
//! lives in.

pub mod auth;
mod config;
mod cores;
mod framing;
mod link;
mod reports;

pub use config::*;
pub use cores::*;
pub use framing::*;
pub use link::*;
pub use reports::*;

#[cfg(test)]
mod tests;
