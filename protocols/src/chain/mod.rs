//! Chain replication (van Renesse & Schneider, "Chain Replication for
//! Supporting High Throughput and Availability", OSDI'04).
//!
//! # The chain
//!
//! n = f + 1 servers form a chain, head first. A client sends an update to
//! the head, which gives it the next position (`seq`), keeps it in its Sent
//! list, and forwards it to its successor; each server does the same, in
//! `seq` order, down to the tail. The tail executes the update, replies to
//! the client, and acknowledges it to its predecessor; an acknowledgement of
//! everything below `committed` travels back up the chain, and each server
//! executes what it acknowledges and drops it from its Sent list. A client
//! sends a query (a read-only operation, [`crate::app::ReadOnly`]) to the
//! tail, which answers it from its state: everything the tail executed is
//! at every server, so a read there sees every completed update (the
//! paper's §2). f servers may crash: any nonempty part of the chain holds
//! every update a client saw complete.
//!
//! Every server executes updates in `seq` order once they are committed (at
//! the tail) through the kit's client table ([`crate::common::ClientTable`]),
//! so all keep the same state and the same at-most-once decisions; the head
//! checks its table and its Sent list before it admits an update, and
//! answers a retransmission of a committed one from the table. The Sent list
//! holds at most `window` updates (the head refuses more until
//! acknowledgements come back), so it is the protocol's only queue and it
//! is bounded.
//!
//! # The master
//!
//! One process, [`master::Master`], outside the chain (node id n, after the
//! servers), detects failures and reconfigures the chain as the paper's §3
//! describes. It is never faulted in this model: the paper replicates it with
//! Paxos, which is out of scope here. Servers ping it every `heartbeat_ms`;
//! one that misses `suspect_heartbeats` of them in a row is removed, which
//! covers the paper's three cases alike: the head's successor becomes the
//! head, the tail's predecessor the tail, and a middle server's predecessor
//! and successor become neighbours. A server that is not in the chain (a
//! restarted one, or one removed while it was only slow) is added back as
//! the new tail while the chain is shorter than n (the paper's §3
//! extension), so fault tolerance comes back after a failure.
//!
//! Each configuration has an epoch. Every message between servers carries
//! it, and a server drops (and counts) what another epoch sent: a removed
//! server that never heard of its removal cannot slip an update or an
//! acknowledgement into the new chain.
//!
//! # Reconfiguration
//!
//! A server that enters a new epoch and is not the head sends its
//! predecessor `Want { next }`: it has every update below `next`. The
//! predecessor answers with `Resume` and resends its Sent list from `next`
//! (the paper's middle-server case: the predecessor resends what the new
//! successor may have missed), or, if `next` is below what it executed (a
//! new tail that has nothing), with its whole state in chunks: the
//! application's snapshot and the client table at `committed`, after which
//! the new server asks again and gets the rest. The same `Want` repairs a
//! gap after a lost forward. A new tail executes its whole Sent list (it
//! now holds everything committed) and acknowledges it.
//!
//! # Fencing with epochs and the tail's lease
//!
//! The paper assumes fail-stop servers: a server the master removed has
//! stopped. Over a real network it may only be slow or cut off, and an old
//! tail still answering queries would return stale reads after the new tail
//! completed writes. So the tail answers a query only when the query names
//! the tail's own epoch and the tail holds a read lease: a `Pong` that says
//! `lease` extends it to the ping's send time plus [`Timing::lease`]. The
//! master grants leases only to the tail of the current epoch, and before it
//! installs a configuration with another tail it stops granting them and
//! waits until the last one it granted has run out. A removed tail's lease
//! has expired before anyone else completes anything, so no read at it can
//! miss a completed write. (Servers' clocks need the same rate, not the
//! same time, as in any lease.)
//!
//! The master removes a server only while another server that holds the
//! whole state has proven it is alive within [`Timing::fresh`], by echoing a
//! token from one of the master's recent `Pong`s: a delayed ping from a
//! server that has since crashed proves nothing newer than the crash. So a
//! server cut off from the master is never removed in favour of one that
//! has just crashed, and the chain always keeps a server with every
//! completed update as long as one survives (what the simulator's fault
//! plan keeps to: [`simulate`]). A restarted server has a new `nonce`; the
//! master takes it for a new server, and the old one as failed.
//!
//! # Clients
//!
//! A client sends updates to the head and queries to the tail of the
//! configuration it knows (epoch 0: every server, in id order), and a
//! `Hello` to the tail, which replies to updates it never saw the client
//! send. It retransmits with the kit's backoff ([`crate::common::Retransmit`])
//! and asks the master for the current configuration each time; a server
//! that is not what the client took it for answers with the configuration it
//! knows.
//!
//! # Faults
//!
//! Crashes (without memory: a server keeps nothing durable), pauses, loss,
//! duplication, reordering, long delays and partitions of servers and
//! clients, in any mix; f of the f + 1 servers may fail at once. Byzantine
//! servers are outside the model: the seeded runs' `byzantine` profile gives
//! chain replication only strangers' noise.

pub mod client;
mod codec;
mod kit;
pub mod master;
pub mod replica;
pub mod simulate;

use std::time::Duration;

use wire::ReplicaId;
use wire::registry::Settings;

pub use client::Client;
pub use codec::Codec;
pub use master::Master;
pub use replica::Replica;
pub use wire::chain::{Config, Forward, Message};

/// The master's node id in a chain of `n` servers: right after them.
pub fn master_id(n: usize) -> ReplicaId {
    ReplicaId(u8::try_from(n).expect("a chain fits a replica id"))
}

/// The configuration every node starts with: every server, in id order.
pub fn initial_config(n: usize) -> Config {
    Config {
        epoch: 0,
        chain: (0..n).map(|i| ReplicaId(i as u8)).collect(),
    }
}

/// Bytes of state per [`Message::Chunk`]: well within a datagram.
pub const CHUNK_BYTES: usize = 32 << 10;

/// Chunks a state transfer has at most: 512 MiB of state.
pub const CHUNKS_MAX: u32 = 16 << 10;

/// Clients a server's table holds at most.
pub const CLIENT_TABLE_MAX: usize = 1 << 18;

/// Bytes of results a server's table holds at most.
pub const RESULT_BYTES_MAX: usize = 256 << 20;

/// Longest wait between a client's retransmissions of one request.
pub const RESEND_MAX: Duration = Duration::from_millis(500);

/// A server resends at most this many Sent-list entries at a time when its
/// successor makes no progress.
pub const RESEND_BURST: usize = 256;

/// The chain's clocks, from the tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How often a server pings the master, and checks its successor's
    /// progress.
    pub heartbeat: Duration,
    /// Silence after which the master removes a server.
    pub suspect: Duration,
    /// How long a lease lasts from the ping that asked for it.
    pub lease: Duration,
    /// How recent a server's proof of life must be for the master to count
    /// it as alive when it removes another.
    pub fresh: Duration,
    /// Updates in the chain at most.
    pub window: usize,
}

impl Timing {
    /// Heartbeats every `heartbeat`, a server suspected after
    /// `suspect_heartbeats` of them (at least 6: a removal needs the
    /// survivor's proof within 3, and a suspect silent for longer than both
    /// windows together, see the module docs).
    pub fn new(heartbeat: Duration, suspect_heartbeats: u32, window: usize) -> Timing {
        assert!(
            suspect_heartbeats >= 6,
            "the master's rules need 6 heartbeats"
        );
        assert!(window > 0 && heartbeat > Duration::ZERO);
        Timing {
            heartbeat,
            suspect: heartbeat * suspect_heartbeats,
            lease: heartbeat * 3,
            fresh: heartbeat * 3,
            window,
        }
    }

    /// The tunables' values.
    pub fn from_settings(settings: &Settings) -> Timing {
        use wire::chain::{HEARTBEAT_MS, SUSPECT_HEARTBEATS, WINDOW};
        Timing::new(
            Duration::from_millis(settings.get(&HEARTBEAT_MS)),
            settings.get(&SUSPECT_HEARTBEATS) as u32,
            settings.get(&WINDOW) as usize,
        )
    }
}

/// Bugs that can be put back into chain replication ([`crate::planted`]),
/// each caught by the seeded runs.
pub mod bugs {
    use crate::planted::Bug;

    const CHAIN: &str = wire::chain::SPEC.name;

    /// A server never resends its Sent list: not to a new successor after a
    /// middle server failed (the paper's §3 resend), nor after a lost
    /// forward.
    pub const NO_SENT_RESEND: Bug = Bug::new(
        CHAIN,
        "no-sent-resend",
        "a server never resends its Sent list (to a new successor, or after a loss)",
    );

    /// The tail answers queries whatever their epoch and without a lease: a
    /// tail the master removed while it was cut off keeps answering from its
    /// old state.
    pub const STALE_TAIL_READS: Bug = Bug::new(
        CHAIN,
        "stale-tail-reads",
        "the tail answers queries from any epoch, without a read lease",
    );

    pub const ALL: &[Bug] = &[NO_SENT_RESEND, STALE_TAIL_READS];
}

/// Chain replication in the protocol registry ([`crate::registry`]).
pub const PROTOCOL: crate::registry::Protocol = crate::registry::Protocol::new(&kit::Kit);
