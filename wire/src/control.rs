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

use std::collections::HashSet;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::MESSAGE_SIZE_MAX;
use crate::crypto::{PublicKey, SecretKey};

pub mod auth;

/// Bumped on every incompatible change of the types in this module.
pub const CONTROL_VERSION: u32 = 1;

/// Largest control frame accepted (a config with a thread map and a few
/// hundred keys is a few KiB; a final report with histograms, tens of KiB).
pub const CONTROL_FRAME_MAX: usize = 1 << 20;

/// Largest operation a workload may ask for. A request carries its operation
/// plus the protocol's headers (and, for signed protocols, a signature) in one
/// datagram of at most [`MESSAGE_SIZE_MAX`] bytes; 1 KiB is left for those.
pub const OP_SIZE_MAX: usize = MESSAGE_SIZE_MAX - 1024;

/// Largest value of a key-value workload: an encoded `Put` is the value plus
/// the key (`k` and up to 20 digits), a variant tag and two length prefixes.
pub const KV_VALUE_SIZE_MAX: usize = OP_SIZE_MAX - 64;

/// Most keys a Zipf-distributed workload may draw from. Clients sample it by
/// binary search over a precomputed table of one `f64` per key (32 MiB here).
pub const ZIPF_KEYS_MAX: u64 = 1 << 22;

/// Largest reply a null operation may ask for: with a protocol's header
/// and authenticator it fits a datagram.
pub const REPLY_SIZE_MAX: usize = 32 * 1024;

/// Bytes at the start of a null operation that say how long its reply is.
pub const NULL_OP_HEADER: usize = 4;

/// A null operation of `op_size` bytes asking for a reply of `reply_size`
/// bytes: the size, little endian, in its first [`NULL_OP_HEADER`] bytes
/// (when it asks for one), zeros after.
pub fn null_op(op_size: usize, reply_size: u32) -> Vec<u8> {
    let mut op = vec![0; op_size];
    if reply_size > 0 && op_size >= NULL_OP_HEADER {
        op[..NULL_OP_HEADER].copy_from_slice(&reply_size.to_le_bytes());
    }
    op
}

/// How long a reply the null operation `op` asks for: what [`null_op`]
/// wrote, at most [`REPLY_SIZE_MAX`] whatever a client wrote; 0 for an
/// operation too short to say.
pub fn null_reply_size(op: &[u8]) -> usize {
    match op.first_chunk::<NULL_OP_HEADER>() {
        Some(header) => (u32::from_le_bytes(*header) as usize).min(REPLY_SIZE_MAX),
        None => 0,
    }
}

/// Most replicas a configuration names (no protocol here runs more; PBFT's
/// own bound is lower).
pub const REPLICAS_MAX: usize = 32;

/// Most tunables one configuration sets.
pub const SETTINGS_MAX: usize = 64;

/// Most clients one clients node runs.
pub const CLIENTS_MAX: u32 = 100_000;

/// Most client threads in one clients node.
pub const CLIENT_THREADS_MAX: u32 = 64;

/// Most threads in a replica's thread map.
pub const THREADS_MAX: usize = 64;

/// Highest core id a thread may be pinned to: pinning takes a CPU set of
/// 1024 cores (`CPU_SETSIZE`). A core the host does not have is an error when
/// the thread starts.
pub const CORE_ID_MAX: u32 = 1023;

/// Longest report interval, resend interval, warm-up and measured window.
pub const INTERVAL_MS_MAX: u64 = 3_600_000;

/// Highest open-loop rate, operations per second.
pub const OPEN_RATE_MAX: u64 = 100_000_000;

/// Longest client key seed.
pub const KEY_SEED_MAX: usize = 1024;

/// Longest spin of [`Idle::SpinThenBlock`], in microseconds (one second; a
/// longer spin is a busy thread by another name).
pub const SPIN_US_MAX: u32 = 1_000_000;

/// Runner → node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandFrame {
    pub version: u32,
    pub command: Command,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Start the node with this configuration. Sent once, first.
    Run(Box<NodeConfig>),
    /// Stop, report, and exit.
    Stop,
}

/// Node → runner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    pub version: u32,
    pub event: Event,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// Sockets bound and threads running.
    Started(Started),
    /// Progress since the previous interval.
    Interval(IntervalReport),
    /// The node stopped; its totals. The last event.
    Finished(FinalReport),
    /// The node could not do what it was told, in one line. The last event.
    Error(String),
}

impl CommandFrame {
    /// `command` in a frame of this build's [`CONTROL_VERSION`].
    pub fn new(command: Command) -> CommandFrame {
        CommandFrame {
            version: CONTROL_VERSION,
            command,
        }
    }
}

impl EventFrame {
    /// `event` in a frame of this build's [`CONTROL_VERSION`].
    pub fn new(event: Event) -> EventFrame {
        EventFrame {
            version: CONTROL_VERSION,
            event,
        }
    }
}

/// Writes `msg` as one frame: its JSON length as 4 bytes big endian, then the
/// JSON, in one write, then flushes. A message whose JSON is over
/// [`CONTROL_FRAME_MAX`] is refused (the peer would refuse it anyway).
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), FrameError> {
    let mut buf = vec![0; 4];
    serde_json::to_writer(&mut buf, msg).map_err(FrameError::Encode)?;
    let len = buf.len() - 4;
    if len > CONTROL_FRAME_MAX {
        return Err(FrameError::TooLarge { len: len as u64 });
    }
    let prefix = u32::try_from(len).expect("CONTROL_FRAME_MAX fits in u32");
    buf[..4].copy_from_slice(&prefix.to_be_bytes());
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame and returns its body; `None` if the stream ended cleanly
/// before the frame's first byte. The length is checked against
/// [`CONTROL_FRAME_MAX`] before the body is allocated, so a peer speaking
/// something else (or lying) cannot make us allocate gigabytes.
///
/// With a read timeout on the stream, a timeout is [`FrameError::TimedOut`];
/// the stream is then out of step if part of a frame was read, so treat it
/// as the end of the conversation.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0; 4];
    match read_full(r, &mut prefix)? {
        0 => return Ok(None),
        4 => {}
        got => return Err(FrameError::Truncated { got, expected: 4 }),
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > CONTROL_FRAME_MAX {
        return Err(FrameError::TooLarge { len: len as u64 });
    }
    let mut body = vec![0; len];
    let got = read_full(r, &mut body)?;
    if got < len {
        return Err(FrameError::Truncated {
            got: 4 + got,
            expected: 4 + len,
        });
    }
    Ok(Some(body))
}

/// Decodes a runner's frame: the version first, then the command.
pub fn decode_command(frame: &[u8]) -> Result<Command, ControlError> {
    decode_versioned::<CommandFrame>(frame, "command").map(|f| f.command)
}

/// Decodes a node's frame: the version first, then the event.
pub fn decode_event(frame: &[u8]) -> Result<Event, ControlError> {
    decode_versioned::<EventFrame>(frame, "event").map(|f| f.event)
}

/// Why a frame could not be moved.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(
        "control frame of {len} bytes exceeds the maximum of {CONTROL_FRAME_MAX} \
         (is the peer speaking the control protocol?)"
    )]
    TooLarge { len: u64 },
    #[error("control connection closed in the middle of a frame ({got} of {expected} bytes)")]
    Truncated { got: usize, expected: usize },
    #[error("timed out waiting for a control frame")]
    TimedOut,
    #[error("encoding a control message: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("control connection: {0}")]
    Io(#[from] io::Error),
}

/// Why a frame's body is not a message of this version.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control message is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("control message is not a JSON object with a `version` field")]
    MissingVersion,
    #[error("control message `version` is {0}, not a version number")]
    BadVersion(String),
    #[error(
        "control protocol version {got} is not supported: this side speaks version {CONTROL_VERSION}"
    )]
    Version { got: u64 },
    #[error("invalid {what}: {source}")]
    Invalid {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Parses `frame` as JSON, checks its `version`, and only then reads it as a
/// `T`, so that a message from another version is refused as such rather than
/// as whatever field it happens to lack.
fn decode_versioned<T: DeserializeOwned>(
    frame: &[u8],
    what: &'static str,
) -> Result<T, ControlError> {
    let value: serde_json::Value = serde_json::from_slice(frame).map_err(ControlError::NotJson)?;
    let version = value.get("version").ok_or(ControlError::MissingVersion)?;
    let got = version
        .as_u64()
        .ok_or_else(|| ControlError::BadVersion(version.to_string()))?;
    if got != u64::from(CONTROL_VERSION) {
        return Err(ControlError::Version { got });
    }
    serde_json::from_value(value).map_err(|source| ControlError::Invalid { what, source })
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(FrameError::TimedOut);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(got)
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Started {
    /// The transport in use (never `Auto`).
    pub transport: TransportKind,
    /// The UDP addresses the node's sockets are bound to.
    pub addrs: Vec<SocketAddr>,
    /// The protocol's fixed parameters (batch maximum, window, timeouts,
    /// ...), name and value, as the node was built with them: what a
    /// results file records next to the figures.
    #[serde(default)]
    pub parameters: Vec<(String, String)>,
}

/// Everything a node needs to run. Carries the node's own secret key only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Protocol name, as `node sim --protocol` takes it (`unreplicated`).
    pub protocol: String,
    pub role: Role,
    /// UDP address of replica `i`, for every replica. A replica's own entry
    /// may have port 0 (the kernel picks one; [`Started::addrs`] says which);
    /// every other entry must be an address a peer can send to.
    pub replicas: Vec<SocketAddr>,
    /// Public key of replica `i`, for every replica; empty for protocols that
    /// do not sign.
    pub public_keys: Vec<PublicKey>,
    /// This node's own secret key, for protocols that sign.
    pub secret_key: Option<SecretKey>,
    pub app: AppConfig,
    /// The replica's stages on threads and cores. Not used by clients (their
    /// threads and cores are in [`ClientsConfig`]).
    pub threads: ThreadMap,
    pub idle: Idle,
    pub transport: TransportKind,
    /// How often the node sends an [`Event::Interval`].
    pub report_interval_ms: u64,
    /// The protocol's tunables this run changes, by name (see
    /// [`crate::registry`]); every other keeps its default. At most
    /// [`SETTINGS_MAX`].
    #[serde(default)]
    pub settings: Vec<(String, u64)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Role {
    /// Replica `id`, bound to `replicas[id]`.
    Replica { id: u8 },
    /// A set of benchmark clients multiplexed on client threads.
    Clients(ClientsConfig),
}

/// "replica 0", "clients 0..100": what a node is, for messages.
impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Replica { id } => write!(f, "replica {id}"),
            Role::Clients(c) => write!(
                f,
                "clients {}..{}",
                c.first_id,
                c.first_id.saturating_add(u64::from(c.count))
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientsConfig {
    /// Client ids `first_id .. first_id + count`; unique across the run.
    pub first_id: u64,
    pub count: u32,
    /// Client threads; the clients are spread evenly over them, one socket
    /// each.
    pub threads: u32,
    /// Cores to pin the client threads to, round robin; empty: unpinned.
    pub cores: Vec<u32>,
    /// Address to bind client sockets to (port 0: any).
    pub bind: IpAddr,
    pub load: Load,
    pub workload: Workload,
    /// Client retransmission interval.
    pub resend_ms: u64,
    /// Operations completed in the first `warmup_ms` are not counted in the
    /// final latency histogram.
    pub warmup_ms: u64,
    /// Operations invoked more than `measure_ms` after the warm-up are not
    /// measured either (cool-down). Absent: measure until stopped.
    #[serde(default)]
    pub measure_ms: Option<u64>,
    /// Seed of the clients' key pairs, for protocols whose replicas MAC
    /// replies under keys they share with each client (PBFT). The runner
    /// draws a fresh one per point.
    #[serde(default, with = "serde_bytes")]
    pub key_seed: Vec<u8>,
}

/// How clients offer load.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Load {
    /// Each client issues its next operation as soon as the previous one
    /// completes; latency is measured from that invocation.
    Closed,
    /// The clients together offer `ops_per_sec`, whatever the system does
    /// with it: each client thread draws its share of the arrivals from a
    /// schedule ([`Arrivals`]) and hands each to an idle client. Latency is
    /// measured from an operation's scheduled arrival, not from when it was
    /// sent, so time spent waiting for a client counts (no coordinated
    /// omission). An arrival that finds no idle client waits in a bounded
    /// backlog (as many arrivals as the thread has clients) for the next one
    /// to free; one that finds the backlog full, or is still in it at stop,
    /// is never sent and is counted in [`OPEN_LOOP_NO_FREE_CLIENT_COUNTER`].
    Open {
        ops_per_sec: u64,
        /// Absent (configurations from before it existed): Poisson.
        #[serde(default)]
        arrivals: Arrivals,
    },
}

/// When an open loop's arrivals are due. Either way the times come from a
/// schedule (each arrival's time is the previous one's plus a gap), never
/// from when a client thread happened to look: a thread that falls behind
/// (a slow round, a descheduled core) sends or counts every arrival it
/// missed, each with its own scheduled time, so a stall does not lower the
/// offered rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Arrivals {
    /// A Poisson process: exponentially distributed gaps with mean
    /// `threads / ops_per_sec`, drawn from each client thread's own seeded
    /// generator, so a run's arrival times replay exactly. Independent
    /// arrivals, bursts included: the usual model of many independent users.
    #[default]
    Poisson,
    /// Evenly spaced: exactly `threads / ops_per_sec` apart on each client
    /// thread.
    Fixed,
}

impl Arrivals {
    /// The name `--arrivals` takes and [`FromStr`](std::str::FromStr) reads.
    pub fn name(self) -> &'static str {
        match self {
            Arrivals::Poisson => "poisson",
            Arrivals::Fixed => "fixed",
        }
    }
}

impl fmt::Display for Arrivals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Arrivals {
    type Err = String;

    fn from_str(s: &str) -> Result<Arrivals, String> {
        [Arrivals::Poisson, Arrivals::Fixed]
            .into_iter()
            .find(|arrivals| arrivals.name() == s)
            .ok_or_else(|| format!("{s:?}: expected `poisson` or `fixed`"))
    }
}

/// What operations clients issue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Workload {
    /// Opaque operations of `op_size` bytes for the null application, each
    /// asking for a reply of `reply_size` bytes ([`null_op`]).
    Null {
        op_size: u32,
        #[serde(default)]
        reply_size: u32,
    },
    /// Key-value operations.
    Kv(KvWorkload),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvWorkload {
    /// Keys `k0 .. k<keys - 1>`.
    pub keys: u64,
    pub value_size: u32,
    /// Fraction of gets, `0.0..=1.0`; the rest are puts.
    pub read_ratio: f64,
    pub distribution: KeyDistribution,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyDistribution {
    Uniform,
    /// Key `k<i>` drawn with probability proportional to `1 / (i + 1)^exponent`.
    Zipf {
        exponent: f64,
    },
}

/// The application replicas run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppConfig {
    Null,
    Kv,
}

/// A stage of a replica's pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// Reads datagrams from the replica's socket.
    Receive,
    /// Decodes and verifies (the protocol's `SharedState::decode`). May run on
    /// several threads.
    Verify,
    /// The protocol's `State`. Exactly one thread.
    Protocol,
    /// Encodes, signs and sends (`SharedState::encode`). May run on several
    /// threads.
    Send,
}

/// Which stages run on which threads, and where those threads run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadMap {
    pub threads: Vec<ThreadSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadSpec {
    pub stages: Vec<Stage>,
    /// Absolute core id to pin to; `None` leaves the thread to the scheduler.
    pub core: Option<u32>,
}

impl ThreadMap {
    /// Every stage on one thread.
    pub fn single(core: Option<u32>) -> ThreadMap {
        ThreadMap {
            threads: vec![ThreadSpec {
                stages: vec![Stage::Receive, Stage::Verify, Stage::Protocol, Stage::Send],
                core,
            }],
        }
    }

    /// One thread per stage, unpinned.
    pub fn per_stage() -> ThreadMap {
        ThreadMap {
            threads: [Stage::Receive, Stage::Verify, Stage::Protocol, Stage::Send]
                .into_iter()
                .map(|stage| ThreadSpec {
                    stages: vec![stage],
                    core: None,
                })
                .collect(),
        }
    }

    /// Checks the map can run: every stage somewhere, `Receive` and `Protocol`
    /// exactly once, no thread without stages.
    pub fn validate(&self) -> Result<(), String> {
        /// Receive, Verify, Protocol, Send.
        const STAGES: usize = 4;
        let count = |stage: Stage| {
            self.threads
                .iter()
                .flat_map(|t| &t.stages)
                .filter(|&&s| s == stage)
                .count()
        };
        if let Some(i) = self.threads.iter().position(|t| t.stages.is_empty()) {
            return Err(format!("thread {i} has no stages"));
        }
        for (i, thread) in self.threads.iter().enumerate() {
            if thread.stages.len() > STAGES {
                return Err(format!(
                    "thread {i} lists {} stages; there are {STAGES}",
                    thread.stages.len()
                ));
            }
            for (j, stage) in thread.stages.iter().enumerate() {
                if thread.stages[..j].contains(stage) {
                    return Err(format!("thread {i} lists {stage:?} twice"));
                }
            }
        }
        for stage in [Stage::Receive, Stage::Protocol] {
            if count(stage) != 1 {
                return Err(format!("{stage:?} must run on exactly one thread"));
            }
        }
        for stage in [Stage::Verify, Stage::Send] {
            if count(stage) == 0 {
                return Err(format!("{stage:?} must run on at least one thread"));
            }
        }
        Ok(())
    }
}

/// What a thread does when it finds no work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Idle {
    /// Poll again at once: lowest latency, a core per thread.
    Busy,
    /// Poll for `spin_us` microseconds, then block until there is work or a
    /// timer is due. For when threads outnumber cores.
    SpinThenBlock { spin_us: u32 },
}

/// The UDP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TransportKind {
    /// io_uring where the kernel supports it, else epoll.
    Auto,
    IoUring,
    Epoll,
}

/// Progress in one reporting interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalReport {
    /// Since the node started.
    pub elapsed_ms: u64,
    /// Operations completed in this interval (clients); requests executed
    /// (replicas).
    pub ops: u64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
}

/// Counter a batching protocol's leader adds one to per batch it proposes.
/// With [`REQUESTS_BATCHED_COUNTER`], the runner reports the mean batch size.
pub const BATCHES_COUNTER: &str = "batches proposed";

/// Counter a batching protocol's leader adds a batch's request count to.
pub const REQUESTS_BATCHED_COUNTER: &str = "requests batched";

/// Counter a replica adds one to each time it starts a view change (or any
/// change of leader): summed over replicas in the results.
pub const VIEW_CHANGES_COUNTER: &str = "view change: started";

/// Counter of datagrams the kernel dropped at a socket whose receive buffer
/// was full: a node that could not keep up, or a flood.
pub const KERNEL_DROPS_COUNTER: &str = "transport: kernel receive drops";

/// Counter of open-loop arrivals that were never sent because no client was
/// free: the thread's clients were all busy and its backlog full, or the
/// arrival was still waiting in the backlog when the clients stopped (see
/// [`Load::Open`]). Over the whole run, warm-up and cool-down included.
pub const OPEN_LOOP_NO_FREE_CLIENT_COUNTER: &str = "open loop: arrivals with no free client";

/// Counter of open-loop arrivals, sent or not: with
/// [`OPEN_LOOP_NO_FREE_CLIENT_COUNTER`], the share of the offered load that
/// was never offered.
pub const OPEN_LOOP_ARRIVALS_COUNTER: &str = "open loop: arrivals";

/// Control connections a node refused before the runner's (no proof of the
/// control secret, a handshake past its deadline, too many at once).
pub const CONTROL_REFUSED_COUNTER: &str = "control: connections refused";

/// A node's totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FinalReport {
    /// From start to stop.
    pub elapsed_ms: u64,
    /// Operations completed (clients) or executed (replicas), warm-up included.
    pub ops: u64,
    /// Operations measured in the latency histogram (after warm-up).
    pub measured_ops: u64,
    pub measured_ms: u64,
    /// The latency histogram in hdrhistogram's V2 serialization (microseconds),
    /// empty for replicas.
    pub latency_histogram: Vec<u8>,
    /// Counters by name: sent, received, retransmitted, dropped by reason…
    pub counters: Vec<(String, u64)>,
    /// CPU time the process used, user plus system.
    pub cpu_ms: u64,
}

impl FinalReport {
    /// The counter `name`, 0 if absent.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |&(_, v)| v)
    }
}

impl NodeConfig {
    /// Checks everything about the configuration that does not depend on the
    /// protocol (whether the protocol exists, and what it needs, is for the
    /// node program to say): replica addresses and keys line up, the role's
    /// numbers are in range, the thread map can run, the workload fits in a
    /// datagram.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let replicas = self.replicas.len();
        if replicas == 0 {
            return Err(ConfigError::NoReplicas);
        }
        if replicas > REPLICAS_MAX {
            return Err(ConfigError::TooManyReplicas { count: replicas });
        }
        if !self.public_keys.is_empty() && self.public_keys.len() != replicas {
            return Err(ConfigError::PublicKeys {
                keys: self.public_keys.len(),
                replicas,
            });
        }
        if self.report_interval_ms == 0 {
            return Err(ConfigError::ReportInterval);
        }
        at_most(
            "the count of settings",
            self.settings.len() as u64,
            SETTINGS_MAX as u64,
        )?;
        at_most(
            "report_interval_ms",
            self.report_interval_ms,
            INTERVAL_MS_MAX,
        )?;
        if let Idle::SpinThenBlock { spin_us } = self.idle {
            at_most("idle: spin_us", spin_us.into(), SPIN_US_MAX.into())?;
        }
        // Bounded for clients too, who do not use the map.
        at_most(
            "the thread map's thread count",
            self.threads.threads.len() as u64,
            THREADS_MAX as u64,
        )?;
        let own = match &self.role {
            Role::Replica { id } => {
                if usize::from(*id) >= replicas {
                    return Err(ConfigError::ReplicaIdOutOfRange { id: *id, replicas });
                }
                self.threads.validate().map_err(ConfigError::ThreadMap)?;
                for core in self.threads.threads.iter().filter_map(|t| t.core) {
                    at_most("a thread's core", core.into(), CORE_ID_MAX.into())?;
                }
                Some(usize::from(*id))
            }
            Role::Clients(clients) => {
                clients.validate(&self.replicas)?;
                None
            }
        };
        let mut seen = HashSet::with_capacity(replicas);
        for (index, addr) in self.replicas.iter().enumerate() {
            if Some(index) != own {
                if addr.port() == 0 {
                    return Err(ConfigError::ReplicaAddr {
                        index,
                        addr: *addr,
                        problem: "port 0 (only a replica's own address may leave the port to the kernel)",
                    });
                }
                if addr.ip().is_unspecified() {
                    return Err(ConfigError::ReplicaAddr {
                        index,
                        addr: *addr,
                        problem: "unspecified IP (only a replica's own address may be a wildcard)",
                    });
                }
            }
            if !seen.insert(*addr) {
                let first = self.replicas.iter().position(|a| a == addr).unwrap_or(0);
                return Err(ConfigError::DuplicateReplicaAddr {
                    first,
                    second: index,
                    addr: *addr,
                });
            }
        }
        // Last: what the protocol itself asks of the group and the settings.
        let spec = crate::registry::lookup(&self.protocol).map_err(ConfigError::Protocol)?;
        spec.check_replicas(replicas)
            .map_err(ConfigError::Protocol)?;
        if spec.signs && self.public_keys.len() != replicas {
            return Err(ConfigError::PublicKeys {
                keys: self.public_keys.len(),
                replicas,
            });
        }
        spec.settings(&self.settings)
            .map_err(|problems| ConfigError::Protocol(problems.join("; ")))?;
        Ok(())
    }
}

impl ClientsConfig {
    fn validate(&self, replicas: &[SocketAddr]) -> Result<(), ConfigError> {
        if self.count == 0 {
            return Err(ConfigError::NoClients);
        }
        at_most("clients: count", self.count.into(), CLIENTS_MAX.into())?;
        if self.threads == 0 {
            return Err(ConfigError::NoClientThreads);
        }
        at_most(
            "clients: cores listed",
            self.cores.len() as u64,
            CLIENT_THREADS_MAX.into(),
        )?;
        for &core in &self.cores {
            at_most("clients: a core", core.into(), CORE_ID_MAX.into())?;
        }
        at_most("clients: resend_ms", self.resend_ms, INTERVAL_MS_MAX)?;
        at_most("clients: warmup_ms", self.warmup_ms, INTERVAL_MS_MAX)?;
        if let Some(measure) = self.measure_ms {
            at_most("clients: measure_ms", measure, INTERVAL_MS_MAX)?;
        }
        at_most(
            "clients: key_seed bytes",
            self.key_seed.len() as u64,
            KEY_SEED_MAX as u64,
        )?;
        if let Load::Open { ops_per_sec, .. } = self.load {
            at_most("clients: ops_per_sec", ops_per_sec, OPEN_RATE_MAX)?;
        }
        if self.threads > self.count {
            return Err(ConfigError::ClientThreads {
                threads: self.threads,
                count: self.count,
            });
        }
        at_most(
            "clients: threads",
            self.threads.into(),
            CLIENT_THREADS_MAX.into(),
        )?;
        if self.first_id.checked_add(u64::from(self.count)).is_none() {
            return Err(ConfigError::ClientIds {
                first_id: self.first_id,
                count: self.count,
            });
        }
        if self.resend_ms == 0 {
            return Err(ConfigError::ResendInterval);
        }
        if let Load::Open { ops_per_sec: 0, .. } = self.load {
            return Err(ConfigError::OpenLoad);
        }
        if let Some(replica) = replicas.iter().find(|r| r.is_ipv4() != self.bind.is_ipv4()) {
            return Err(ConfigError::BindFamily {
                bind: self.bind,
                replica: *replica,
            });
        }
        self.workload.validate()
    }
}

impl Workload {
    fn validate(&self) -> Result<(), ConfigError> {
        self.problems().into_iter().next().map_or(Ok(()), Err)
    }

    /// Every reason the workload cannot run, in order; empty if it can. The
    /// runner checks an experiment's workload with this before any node
    /// starts, so the rules live here only.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        match self {
            Workload::Null {
                op_size,
                reply_size,
            } => {
                if *op_size as usize > OP_SIZE_MAX {
                    problems.push(ConfigError::OpSize {
                        size: *op_size,
                        max: OP_SIZE_MAX,
                    });
                }
                if *reply_size as usize > REPLY_SIZE_MAX {
                    problems.push(ConfigError::ReplySize {
                        size: *reply_size,
                        max: REPLY_SIZE_MAX,
                    });
                }
                if *reply_size > 0 && (*op_size as usize) < NULL_OP_HEADER {
                    problems.push(ConfigError::ReplySizeNeedsOp { op_size: *op_size });
                }
            }
            Workload::Kv(kv) => {
                if kv.keys == 0 {
                    problems.push(ConfigError::NoKeys);
                }
                if kv.value_size as usize > KV_VALUE_SIZE_MAX {
                    problems.push(ConfigError::ValueSize {
                        size: kv.value_size,
                        max: KV_VALUE_SIZE_MAX,
                    });
                }
                if !(0.0..=1.0).contains(&kv.read_ratio) {
                    problems.push(ConfigError::ReadRatio(kv.read_ratio));
                }
                if let KeyDistribution::Zipf { exponent } = kv.distribution {
                    if !exponent.is_finite() || exponent < 0.0 {
                        problems.push(ConfigError::ZipfExponent(exponent));
                    }
                    if kv.keys > ZIPF_KEYS_MAX {
                        problems.push(ConfigError::ZipfKeys {
                            keys: kv.keys,
                            max: ZIPF_KEYS_MAX,
                        });
                    }
                }
            }
        }
        problems
    }
}

/// `value` of `what`, unless it is above `max`.
fn at_most(what: &'static str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value > max {
        return Err(ConfigError::TooLarge { what, value, max });
    }
    Ok(())
}

/// Why a [`NodeConfig`] cannot run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// An unknown protocol, a group it does not run, or settings out of its
    /// bounds ([`crate::registry`]).
    #[error("{0}")]
    Protocol(String),
    #[error("no replica addresses (`replicas` is empty)")]
    NoReplicas,
    #[error("{count} replicas: at most {REPLICAS_MAX}")]
    TooManyReplicas { count: usize },
    #[error("{what} is {value}; at most {max}")]
    TooLarge {
        what: &'static str,
        value: u64,
        max: u64,
    },
    #[error("replica id {id} is out of range: `replicas` names {replicas} replica(s)")]
    ReplicaIdOutOfRange { id: u8, replicas: usize },
    #[error("replica {index} address {addr}: {problem}")]
    ReplicaAddr {
        index: usize,
        addr: SocketAddr,
        problem: &'static str,
    },
    #[error("replicas {first} and {second} have the same address {addr}")]
    DuplicateReplicaAddr {
        first: usize,
        second: usize,
        addr: SocketAddr,
    },
    #[error("{keys} public keys for {replicas} replica(s): give one per replica, or none")]
    PublicKeys { keys: usize, replicas: usize },
    #[error("report_interval_ms is 0; it must be positive")]
    ReportInterval,
    #[error("thread map: {0}")]
    ThreadMap(String),
    #[error("clients: count is 0; it must be positive")]
    NoClients,
    #[error("clients: threads is 0; it must be positive")]
    NoClientThreads,
    #[error("clients: {threads} threads for {count} clients; at most one thread per client")]
    ClientThreads { threads: u32, count: u32 },
    #[error("clients: ids {first_id} + {count} overflow u64")]
    ClientIds { first_id: u64, count: u32 },
    #[error("clients: resend_ms is 0; it must be positive")]
    ResendInterval,
    #[error("clients: an open load of 0 ops/s; it must be positive")]
    OpenLoad,
    #[error("clients: bind address {bind} cannot reach replica {replica} (another address family)")]
    BindFamily { bind: IpAddr, replica: SocketAddr },
    #[error("workload: op_size {size} exceeds the maximum of {max} bytes")]
    OpSize { size: u32, max: usize },
    #[error("workload: reply_size {size} exceeds the maximum of {max} bytes")]
    ReplySize { size: u32, max: usize },
    #[error(
        "workload: a reply_size needs operations of at least 4 bytes to carry it, not {op_size}"
    )]
    ReplySizeNeedsOp { op_size: u32 },
    #[error("workload: keys is 0; it must be positive")]
    NoKeys,
    #[error("workload: value_size {size} exceeds the maximum of {max} bytes")]
    ValueSize { size: u32, max: usize },
    #[error("workload: read_ratio {0} is not within 0..=1")]
    ReadRatio(f64),
    #[error("workload: Zipf exponent {0} must be finite and non-negative")]
    ZipfExponent(f64),
    #[error("workload: {keys} keys exceed the maximum of {max} for a Zipf distribution")]
    ZipfKeys { keys: u64, max: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica_config() -> NodeConfig {
        NodeConfig {
            protocol: "unreplicated".to_string(),
            role: Role::Replica { id: 0 },
            replicas: vec!["127.0.0.2:0".parse().unwrap()],
            public_keys: Vec::new(),
            secret_key: None,
            app: AppConfig::Null,
            threads: ThreadMap::single(Some(0)),
            idle: Idle::Busy,
            transport: TransportKind::Auto,
            report_interval_ms: 500,
            settings: Vec::new(),
        }
    }

    fn clients_config() -> NodeConfig {
        NodeConfig {
            role: Role::Clients(ClientsConfig {
                first_id: 0,
                count: 100,
                threads: 1,
                cores: vec![1],
                bind: "127.0.0.3".parse().unwrap(),
                load: Load::Closed,
                workload: Workload::Kv(KvWorkload {
                    keys: 1000,
                    value_size: 100,
                    read_ratio: 0.9,
                    distribution: KeyDistribution::Zipf { exponent: 0.99 },
                }),
                resend_ms: 100,
                warmup_ms: 0,
                measure_ms: None,
                key_seed: Vec::new(),
            }),
            replicas: vec!["127.0.0.2:7000".parse().unwrap()],
            ..replica_config()
        }
    }

    fn frame(msg: &impl Serialize) -> Vec<u8> {
        let mut buf = Vec::new();
        write_frame(&mut buf, msg).unwrap();
        buf
    }

    /// The body of a frame carrying `value`, as a hand-written peer sends it.
    fn json(value: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    fn run_json() -> serde_json::Value {
        serde_json::to_value(CommandFrame::new(Command::Run(Box::new(replica_config())))).unwrap()
    }

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let run = CommandFrame::new(Command::Run(Box::new(clients_config())));
        let stop = CommandFrame::new(Command::Stop);
        let mut bytes = frame(&run);
        bytes.extend(frame(&stop));
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
        assert_eq!(bytes[4], b'{', "JSON after a 4-byte big-endian length");

        let mut r = &bytes[..];
        let first = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(first.len(), len);
        assert_eq!(decode_command(&first).unwrap(), run.command);
        let second = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(decode_command(&second).unwrap(), Command::Stop);
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn events_round_trip() {
        let events = [
            Event::Started(Started {
                transport: TransportKind::IoUring,
                addrs: vec!["127.0.0.2:7000".parse().unwrap()],
                parameters: vec![("batch size max".into(), "256".into())],
            }),
            Event::Interval(IntervalReport {
                elapsed_ms: 500,
                ops: 10,
                latency_us_p50: 20,
                latency_us_p99: 30,
            }),
            Event::Finished(FinalReport {
                elapsed_ms: 2000,
                ops: 100,
                measured_ops: 90,
                measured_ms: 1900,
                latency_histogram: vec![1, 2, 3],
                counters: vec![("decode: malformed".to_string(), 3)],
                cpu_ms: 7,
            }),
            Event::Error("bind failed".to_string()),
        ];
        for event in events {
            let bytes = frame(&EventFrame::new(event.clone()));
            let body = read_frame(&mut &bytes[..]).unwrap().unwrap();
            assert_eq!(decode_event(&body).unwrap(), event);
        }
    }

    #[test]
    fn truncated_frames_are_errors() {
        let bytes = frame(&CommandFrame::new(Command::Stop));
        for cut in [1, 3, 4, bytes.len() - 1] {
            let err = read_frame(&mut &bytes[..cut]).unwrap_err();
            assert!(
                matches!(err, FrameError::Truncated { got, .. } if got == cut),
                "{err}"
            );
        }
    }

    #[test]
    fn oversized_frame_is_refused_before_reading_its_body() {
        // "GET " as a length is about 1.2 GB; nothing follows, so reading the
        // body would report truncation instead.
        let err = read_frame(&mut &b"GET / HTTP/1.1\r\n"[..]).unwrap_err();
        assert!(
            matches!(err, FrameError::TooLarge { len: 0x4745_5420 }),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("1195725856 bytes exceeds the maximum of 1048576"),
            "{message}"
        );

        let at_limit = (CONTROL_FRAME_MAX as u32 + 1).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &at_limit[..]),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn oversized_message_is_not_written() {
        let huge = Event::Error("x".repeat(CONTROL_FRAME_MAX));
        let mut buf = Vec::new();
        let err = write_frame(&mut buf, &EventFrame::new(huge)).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
        assert!(buf.is_empty());
    }

    #[test]
    fn read_timeout_is_its_own_error() {
        struct Slow;
        impl Read for Slow {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
        assert!(matches!(read_frame(&mut Slow), Err(FrameError::TimedOut)));
    }

    #[test]
    fn another_version_is_refused_naming_both() {
        let mut value = run_json();
        value["version"] = 999.into();
        let err = decode_command(&json(value)).unwrap_err();
        assert!(matches!(err, ControlError::Version { got: 999 }), "{err}");
        let message = err.to_string();
        assert!(message.contains("version 999"), "{message}");
        assert!(message.contains("version 1"), "{message}");
    }

    #[test]
    fn version_is_checked_before_the_rest() {
        // Version 2 may well have other fields; say "version", not "missing field".
        let body = json(serde_json::json!({"version": 2, "order": "Halt"}));
        assert!(matches!(
            decode_command(&body),
            Err(ControlError::Version { got: 2 })
        ));
        let body = json(serde_json::json!({"command": "Stop"}));
        assert!(matches!(
            decode_command(&body),
            Err(ControlError::MissingVersion)
        ));
        let body = json(serde_json::json!({"version": "1", "command": "Stop"}));
        let err = decode_command(&body).unwrap_err();
        assert!(
            matches!(&err, ControlError::BadVersion(v) if v == "\"1\""),
            "{err}"
        );
        assert!(matches!(
            decode_command(b"[1, 2]"),
            Err(ControlError::MissingVersion)
        ));
    }

    #[test]
    fn missing_field_is_named() {
        let mut value = run_json();
        value["command"]["Run"]
            .as_object_mut()
            .unwrap()
            .remove("replicas");
        let err = decode_command(&json(value)).unwrap_err();
        assert!(matches!(err, ControlError::Invalid { .. }), "{err}");
        assert_eq!(err.to_string(), "invalid command: missing field `replicas`");
    }

    #[test]
    fn garbage_is_not_json() {
        let err = decode_command(b"\x00\x01garbage").unwrap_err();
        assert!(matches!(err, ControlError::NotJson(_)), "{err}");
        assert!(err.to_string().starts_with("control message is not JSON: "));
        let err = decode_event(b"").unwrap_err();
        assert!(matches!(err, ControlError::NotJson(_)), "{err}");
    }

    #[test]
    fn valid_configs_pass() {
        replica_config().validate().unwrap();
        clients_config().validate().unwrap();
        let mut config = replica_config();
        config.replicas = vec![
            "10.0.0.1:7000".parse().unwrap(),
            "0.0.0.0:0".parse().unwrap(),
            "10.0.0.3:7000".parse().unwrap(),
        ];
        config.replicas.push("10.0.0.4:7000".parse().unwrap());
        config.protocol = "pbft".to_string();
        config.role = Role::Replica { id: 1 };
        config.public_keys = vec![PublicKey([2; 33]); 4];
        config.threads = ThreadMap::per_stage();
        config.settings = vec![("batch_max".to_string(), 10)];
        config.validate().unwrap();
        config.public_keys.pop();
        assert!(matches!(
            config.validate(),
            Err(ConfigError::PublicKeys { keys: 3, .. })
        ));
        config.public_keys.push(PublicKey([2; 33]));
        config.settings = vec![("batch_max".to_string(), 0)];
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("pbft.batch_max=0: out of range"), "{err}");
        config.settings = vec![("batch_max".to_string(), 1); SETTINGS_MAX + 1];
        assert!(matches!(
            config.validate(),
            Err(ConfigError::TooLarge { .. })
        ));
        config.settings.clear();
        config.replicas.pop();
        config.public_keys.pop();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("3f + 1"), "{err}");
        config.protocol = "raft".to_string();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("unknown protocol \"raft\""), "{err}");
    }

    /// Applies `change` to a valid config and returns the validation error.
    fn invalid(base: fn() -> NodeConfig, change: impl FnOnce(&mut NodeConfig)) -> ConfigError {
        let mut config = base();
        change(&mut config);
        let err = config.validate().unwrap_err();
        assert!(!err.to_string().contains('\n'), "one line: {err}");
        err
    }

    fn clients(config: &mut NodeConfig) -> &mut ClientsConfig {
        match &mut config.role {
            Role::Clients(c) => c,
            Role::Replica { .. } => unreachable!(),
        }
    }

    fn kv(config: &mut NodeConfig) -> &mut KvWorkload {
        match &mut clients(config).workload {
            Workload::Kv(kv) => kv,
            Workload::Null { .. } => unreachable!(),
        }
    }

    #[test]
    fn replica_side_errors() {
        let err = invalid(replica_config, |c| c.role = Role::Replica { id: 1 });
        assert_eq!(err, ConfigError::ReplicaIdOutOfRange { id: 1, replicas: 1 });
        assert_eq!(
            err.to_string(),
            "replica id 1 is out of range: `replicas` names 1 replica(s)"
        );
        assert_eq!(
            invalid(replica_config, |c| c.replicas.clear()),
            ConfigError::NoReplicas
        );
        assert_eq!(
            invalid(replica_config, |c| c.public_keys =
                vec![PublicKey([2; 33]); 2]),
            ConfigError::PublicKeys {
                keys: 2,
                replicas: 1
            }
        );
        assert_eq!(
            invalid(replica_config, |c| c.report_interval_ms = 0),
            ConfigError::ReportInterval
        );
        let err = invalid(replica_config, |c| {
            c.threads.threads[0].stages.pop();
        });
        assert_eq!(
            err.to_string(),
            "thread map: Send must run on at least one thread"
        );
        let err = invalid(replica_config, |c| {
            c.replicas.push("127.0.0.9:0".parse().unwrap());
        });
        assert!(
            matches!(err, ConfigError::ReplicaAddr { index: 1, .. }),
            "{err}"
        );
        let err = invalid(replica_config, |c| {
            c.replicas = vec!["127.0.0.2:7000".parse().unwrap(); 2];
        });
        assert!(
            matches!(
                err,
                ConfigError::DuplicateReplicaAddr {
                    first: 0,
                    second: 1,
                    ..
                }
            ),
            "{err}"
        );
        let err = invalid(replica_config, |c| {
            c.replicas = vec!["127.0.0.2:7000".parse().unwrap(); 300];
        });
        assert_eq!(err, ConfigError::TooManyReplicas { count: 300 });
    }

    /// Every count and id has a named upper bound: what once aborted a node
    /// (10^9 clients), ate its memory (2·10^7), or panicked in libc (core
    /// 1024) is an error naming the field.
    #[test]
    fn counts_and_ids_have_upper_bounds() {
        let message = |err: ConfigError| err.to_string();
        for count in [1_000_000_000, 20_000_000, CLIENTS_MAX + 1] {
            assert_eq!(
                message(invalid(clients_config, |c| clients(c).count = count)),
                format!("clients: count is {count}; at most {CLIENTS_MAX}")
            );
        }
        let err = invalid(clients_config, |c| {
            clients(c).count = 10_000;
            clients(c).threads = 1000;
        });
        assert!(message(err).starts_with("clients: threads is 1000"));
        let err = invalid(clients_config, |c| clients(c).cores = vec![1024]);
        assert_eq!(message(err), "clients: a core is 1024; at most 1023");
        let err = invalid(replica_config, |c| {
            c.threads = ThreadMap::single(Some(1024));
        });
        assert_eq!(message(err), "a thread's core is 1024; at most 1023");
        let err = invalid(replica_config, |c| {
            let mut map = ThreadMap::per_stage();
            map.threads.extend((0..1000).map(|_| ThreadSpec {
                stages: vec![Stage::Verify],
                core: None,
            }));
            c.threads = map;
        });
        assert_eq!(
            message(err),
            format!("the thread map's thread count is 1004; at most {THREADS_MAX}")
        );
        let err = invalid(replica_config, |c| {
            c.replicas = (0..256)
                .map(|i| SocketAddr::from(([127, 0, 0, 2], 7000 + i)))
                .collect();
        });
        assert_eq!(err, ConfigError::TooManyReplicas { count: 256 });
        let err = invalid(replica_config, |c| c.report_interval_ms = u64::MAX);
        assert!(message(err).starts_with("report_interval_ms is"));
        let err = invalid(clients_config, |c| clients(c).key_seed = vec![0; 1 << 20]);
        assert!(message(err).starts_with("clients: key_seed bytes"));
        let err = invalid(clients_config, |c| clients(c).resend_ms = u64::MAX);
        assert!(message(err).starts_with("clients: resend_ms"));
        let err = invalid(replica_config, |c| {
            c.idle = Idle::SpinThenBlock { spin_us: u32::MAX };
        });
        assert_eq!(
            message(err),
            format!("idle: spin_us is {}; at most {SPIN_US_MAX}", u32::MAX)
        );
        // A stage twice on one thread, or a thread of a million stages (each
        // would be checked against the others), is refused as such.
        let err = invalid(replica_config, |c| {
            c.threads.threads[0].stages.push(Stage::Verify);
        });
        assert_eq!(
            message(err),
            "thread map: thread 0 lists 5 stages; there are 4"
        );
        let err = invalid(replica_config, |c| {
            c.threads = ThreadMap::per_stage();
            c.threads.threads[1].stages.push(Stage::Verify);
        });
        assert_eq!(message(err), "thread map: thread 1 lists Verify twice");
        let err = invalid(replica_config, |c| {
            c.threads.threads[0].stages = vec![Stage::Verify; 1 << 20];
        });
        assert!(message(err).contains("lists 1048576 stages"));
        let err = invalid(clients_config, |c| {
            c.threads.threads = vec![c.threads.threads[0].clone(); THREADS_MAX + 1];
        });
        assert!(message(err).starts_with("the thread map's thread count is 65"));
    }

    #[test]
    fn clients_side_errors() {
        assert_eq!(
            invalid(clients_config, |c| clients(c).count = 0),
            ConfigError::NoClients
        );
        assert_eq!(
            invalid(clients_config, |c| clients(c).threads = 0),
            ConfigError::NoClientThreads
        );
        assert!(matches!(
            invalid(clients_config, |c| clients(c).threads = 101),
            ConfigError::ClientThreads { .. }
        ));
        assert!(matches!(
            invalid(clients_config, |c| clients(c).first_id = u64::MAX - 5),
            ConfigError::ClientIds { .. }
        ));
        assert_eq!(
            invalid(clients_config, |c| clients(c).resend_ms = 0),
            ConfigError::ResendInterval
        );
        assert_eq!(
            invalid(clients_config, |c| {
                clients(c).load = Load::Open {
                    ops_per_sec: 0,
                    arrivals: Arrivals::Poisson,
                };
            }),
            ConfigError::OpenLoad
        );
        assert!(matches!(
            invalid(clients_config, |c| clients(c).bind = "::1".parse().unwrap()),
            ConfigError::BindFamily { .. }
        ));
        // Clients need a port to send to; port 0 is only for a replica's own address.
        assert!(matches!(
            invalid(clients_config, |c| c.replicas[0].set_port(0)),
            ConfigError::ReplicaAddr { index: 0, .. }
        ));
        // The thread map is the replica's; clients do not look at it.
        let mut config = clients_config();
        config.threads.threads.clear();
        config.validate().unwrap();
    }

    #[test]
    fn workload_errors() {
        for ratio in [-0.1, 1.5, f64::NAN] {
            let err = invalid(clients_config, |c| kv(c).read_ratio = ratio);
            assert!(matches!(err, ConfigError::ReadRatio(_)), "{err}");
        }
        assert_eq!(
            invalid(clients_config, |c| kv(c).keys = 0),
            ConfigError::NoKeys
        );
        assert!(matches!(
            invalid(clients_config, |c| kv(c).value_size = 65_000),
            ConfigError::ValueSize { .. }
        ));
        for exponent in [-1.0, f64::INFINITY, f64::NAN] {
            let err = invalid(clients_config, |c| {
                kv(c).distribution = KeyDistribution::Zipf { exponent };
            });
            assert!(matches!(err, ConfigError::ZipfExponent(_)), "{err}");
        }
        assert!(matches!(
            invalid(clients_config, |c| kv(c).keys = ZIPF_KEYS_MAX + 1),
            ConfigError::ZipfKeys { .. }
        ));
        let mut config = clients_config();
        kv(&mut config).keys = u64::MAX;
        kv(&mut config).distribution = KeyDistribution::Uniform;
        config.validate().unwrap();
        let err = invalid(clients_config, |c| {
            clients(c).workload = Workload::Null {
                op_size: 65_000,
                reply_size: 0,
            };
        });
        assert_eq!(
            err.to_string(),
            format!("workload: op_size 65000 exceeds the maximum of {OP_SIZE_MAX} bytes")
        );
    }

    #[test]
    fn open_load_arrivals_default_to_poisson_and_round_trip() {
        // A configuration from before `arrivals` existed reads as Poisson.
        let old: Load = serde_json::from_str(r#"{"Open":{"ops_per_sec":5}}"#).unwrap();
        assert_eq!(
            old,
            Load::Open {
                ops_per_sec: 5,
                arrivals: Arrivals::Poisson
            }
        );
        for arrivals in [Arrivals::Poisson, Arrivals::Fixed] {
            let load = Load::Open {
                ops_per_sec: 7,
                arrivals,
            };
            let json = serde_json::to_string(&load).unwrap();
            assert_eq!(serde_json::from_str::<Load>(&json).unwrap(), load);
            assert_eq!(arrivals.to_string().parse::<Arrivals>(), Ok(arrivals));
        }
        assert_eq!(Arrivals::default(), Arrivals::Poisson);
        assert_eq!(
            "uniform".parse::<Arrivals>(),
            Err("\"uniform\": expected `poisson` or `fixed`".to_string())
        );
    }

    #[test]
    fn roles_display_as_names() {
        assert_eq!(Role::Replica { id: 2 }.to_string(), "replica 2");
        assert_eq!(clients_config().role.to_string(), "clients 0..100");
    }

    #[test]
    fn counter_lookup() {
        let report = FinalReport {
            elapsed_ms: 0,
            ops: 0,
            measured_ops: 0,
            measured_ms: 0,
            latency_histogram: Vec::new(),
            counters: vec![("a".to_string(), 2)],
            cpu_ms: 0,
        };
        assert_eq!(report.counter("a"), 2);
        assert_eq!(report.counter("b"), 0);
    }
}
