//! Frames, commands and events, and their errors.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::*;

/// Bumped on every incompatible change of the types in this module.
pub const CONTROL_VERSION: u32 = 1;

/// Largest control frame accepted (a config with a thread map and a few
/// hundred keys is a few KiB; a final report with histograms, tens of KiB,
/// and with a key-value history at its bounds ([`crate::history`]) under
/// 8 MiB of JSON).
pub const CONTROL_FRAME_MAX: usize = 16 << 20;

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
    /// Inject a fault into the running node, or end one ([`Fault`]). The
    /// node answers nothing; it counts what the fault did under the
    /// counters named in [`Fault`]'s variants.
    Fault(Fault),
}

/// A fault a running node applies to itself, on the runner's command (a
/// scheduled fault of the experiment). Kill, stop and restart are not here:
/// the runner does those to the process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fault {
    /// Neither send to nor receive from these addresses: a drop filter in
    /// the node's transport, both directions, counted under
    /// [`PARTITION_DROPS_COUNTER`]. Replaces any earlier set (at most
    /// [`PARTITION_ADDRS_MAX`] addresses).
    Partition(Vec<SocketAddr>),
    /// End the partition: an empty drop filter.
    Heal,
    /// Add this much processing delay to every message the node handles
    /// (0: none; at most [`SLOW_US_MAX`]).
    Slow { us: u64 },
    /// Turn Byzantine: tamper with what the node sends.
    Byzantine(Behaviour),
    /// Stop tampering.
    Honest,
}

/// What a Byzantine node does to what it sends (see [`Fault::Byzantine`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Sends nothing.
    Mute,
    /// Sends each destination its own version of each message, rewritten
    /// field by field and signed again with the node's own key (the
    /// protocol's adversary).
    Equivocate,
    /// Overwrites random bytes of every datagram (its signatures no longer
    /// verify, or it no longer decodes).
    Corrupt,
    /// Sends, besides each datagram, a few old ones it sent or received
    /// (bounded).
    Replay,
}

impl Behaviour {
    pub const ALL: [Behaviour; 4] = [
        Behaviour::Mute,
        Behaviour::Equivocate,
        Behaviour::Corrupt,
        Behaviour::Replay,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Mute => "mute",
            Behaviour::Equivocate => "equivocate",
            Behaviour::Corrupt => "corrupt",
            Behaviour::Replay => "replay",
        }
    }
}

impl std::str::FromStr for Behaviour {
    type Err = String;

    fn from_str(s: &str) -> Result<Behaviour, String> {
        Behaviour::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown Byzantine behaviour {s:?}; known: mute, equivocate, corrupt, replay"
                )
            })
    }
}

/// Most addresses a [`Fault::Partition`] names.
pub const PARTITION_ADDRS_MAX: usize = 1024;

/// Largest [`Fault::Slow`] delay: one second per message.
pub const SLOW_US_MAX: u64 = 1_000_000;

/// Counter of datagrams a partitioned node did not send or dropped on
/// arrival because the peer was on the other side of the partition.
pub const PARTITION_DROPS_COUNTER: &str = "fault: partition drops";

impl Fault {
    /// Whether a node may apply it: within the bounds above.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Fault::Partition(addrs) if addrs.len() > PARTITION_ADDRS_MAX => Err(format!(
                "a partition of {} addresses; at most {PARTITION_ADDRS_MAX}",
                addrs.len()
            )),
            Fault::Slow { us } if *us > SLOW_US_MAX => Err(format!(
                "slow by {us} µs per message; at most {SLOW_US_MAX}"
            )),
            _ => Ok(()),
        }
    }
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
