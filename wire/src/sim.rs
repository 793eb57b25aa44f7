//! What a simulation run reports, one JSON line per seed, from the node program
//! to the runner.

use serde::{Deserialize, Serialize};

/// The outcome of simulating one seed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedReport {
    pub protocol: String,
    pub seed: u64,
    /// Every checker passed and the run finished within its bounds.
    pub passed: bool,
    /// Why the seed failed, if it did.
    pub failure: Option<String>,
    /// Client operations completed.
    pub ops_completed: u64,
    /// Messages delivered to a node.
    pub deliveries: u64,
    /// Faults injected: lost, duplicated and delayed messages, partitions,
    /// crashes, restarts, Byzantine tampering.
    pub faults: FaultCounts,
    /// Virtual time simulated, in nanoseconds.
    pub simulated_ns: u64,
    /// Wall-clock time the seed took, in nanoseconds.
    pub wall_ns: u64,
    /// Hash of every delivery and every client completion, in order. The same
    /// seed always gives the same hash.
    pub trace_hash: String,
}

/// Faults the simulator injected in one run, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub partitions: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub byzantine: u64,
}

impl FaultCounts {
    pub fn total(&self) -> u64 {
        self.dropped
            + self.duplicated
            + self.reordered
            + self.partitions
            + self.crashes
            + self.restarts
            + self.byzantine
    }

    pub fn add(&mut self, other: &FaultCounts) {
        self.dropped += other.dropped;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.partitions += other.partitions;
        self.crashes += other.crashes;
        self.restarts += other.restarts;
        self.byzantine += other.byzantine;
    }
}
