//! What a run measured, and the files it leaves: `results.csv`,
//! `results.json`, `plot.svg`, `plot.png`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wire::control::IntervalReport;

/// One measured point: one protocol at one load, one trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub protocol: String,
    /// Closed-loop clients (or, open loop, the clients sharing the rate).
    pub clients: u32,
    /// Open loop: the offered rate, operations per second.
    pub offered_ops: Option<u64>,
    /// 0-based.
    pub trial: u32,
    /// Operations completed per second in the measured window (warm-up and
    /// cool-down trimmed).
    pub throughput_ops: f64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub latency_us_mean: f64,
    /// Operations in the measured window, and its length.
    pub measured_ops: u64,
    pub measured_ms: u64,
    /// The clients' per-interval progress over the whole run.
    pub intervals: Vec<IntervalReport>,
    /// CPU time of all replica processes and of all client processes.
    pub replica_cpu_ms: u64,
    pub client_cpu_ms: u64,
    /// Every node's counters, summed by name.
    pub counters: BTreeMap<String, u64>,
}

/// Everything one invocation of the runner measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// The experiment's name (`default`, `bench`, ...).
    pub name: String,
    /// When the run started, RFC 3339, UTC.
    pub started: String,
    /// Where it ran: `local processes on 127.0.0.2 and up`, ...
    pub hosts: String,
    /// The experiment as configured, for the record.
    pub experiment: serde_json::Value,
    pub points: Vec<PointResult>,
}
