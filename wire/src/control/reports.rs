//! What a node reports: that it started, progress per interval, its
//! totals, and the counters the runner reads by name.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::*;

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
    /// Clients running the key-value workload: the operations on the
    /// sampled keys, for the runner's linearizability check. `None` for
    /// replicas and for other workloads.
    #[serde(default)]
    pub history: Option<crate::history::History>,
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
