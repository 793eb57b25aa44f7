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
    /// The leader (primary, head) as this replica sees it now, if its
    /// protocol has one and the replica knows it (absent from clients, and
    /// in reports of nodes built before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u8>,
    /// How far this replica has executed, in its protocol's slots, if it
    /// says (the runtime's `State::executed_slot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed: Option<u64>,
    /// Clients: operations completed in this interval that took longer than
    /// [`ClientsConfig::slow_op_ms`] (0 in reports from before it existed,
    /// and from replicas).
    #[serde(default)]
    pub slow_ops: u64,
}

/// Width of a bin of [`Completions`], ms.
pub const COMPLETION_BIN_MS: u64 = 10;

/// Most bins of [`Completions`]: ten minutes at [`COMPLETION_BIN_MS`].
/// Completions past the last bin are counted
/// ([`COMPLETIONS_PAST_END_COUNTER`]), not binned. At a few bytes a bin the
/// final report stays well inside [`CONTROL_FRAME_MAX`].
pub const COMPLETION_BINS_MAX: usize = 60_000;

/// Counter of operations that completed after the last bin of
/// [`Completions`] (a run longer than [`COMPLETION_BINS_MAX`] bins).
pub const COMPLETIONS_PAST_END_COUNTER: &str = "clients: completions past the timeline's end";

/// A clients node's completed operations over its whole run, counted in
/// fixed bins of completion time: what recovery after a fault is measured
/// from, finer than the interval reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completions {
    /// Where bin 0 starts on the node's clock (the clock of
    /// [`IntervalReport::elapsed_ms`]), µs.
    pub start_us: u64,
    /// Width of a bin, ms ([`COMPLETION_BIN_MS`]).
    pub bin_ms: u64,
    /// Operations completed in bin `i`, `[start + i·bin, start + (i+1)·bin)`,
    /// up to the bin the node stopped in (so the last bins may be zero). At
    /// most [`COMPLETION_BINS_MAX`].
    pub counts: Vec<u32>,
}

/// Counter a batching protocol's leader adds one to per batch it proposes.
/// With [`REQUESTS_BATCHED_COUNTER`], the runner reports the mean batch size.
pub const BATCHES_COUNTER: &str = "batches proposed";

/// Counter a batching protocol's leader adds a batch's request count to.
pub const REQUESTS_BATCHED_COUNTER: &str = "requests batched";

/// Counter a replica adds one to each time it starts a view change (or any
/// change of leader): summed over replicas in the results.
pub const VIEW_CHANGES_COUNTER: &str = "view change: started";

/// Counters of datagrams a node's transport sent and received.
pub const DATAGRAMS_SENT_COUNTER: &str = "transport: datagrams sent";
pub const DATAGRAMS_RECEIVED_COUNTER: &str = "transport: datagrams received";

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
    /// Of `cpu_ms`, the CPU time the node's threads spent polling with
    /// nothing to do (summed over threads, from each thread's own CPU
    /// clock). 0 in reports from before it existed.
    #[serde(default)]
    pub idle_spin_ms: u64,
    /// Clients: completions over the whole run, binned; empty for replicas
    /// and in reports from before it existed.
    #[serde(default)]
    pub completions: Completions,
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
