//! What a simulation run reports, one JSON line per seed, from the node program
//! to the runner.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The command that replays one seed: of `protocol`, under `profile`, with
/// `planted` bug put back, if any.
pub fn replay_command(
    protocol: &str,
    seed: u64,
    profile: Profile,
    planted: Option<&str>,
) -> String {
    let mut command =
        format!("cargo run --release -p runner -- sim --protocol {protocol} --seed {seed}");
    if profile != Profile::Mix {
        command.push_str(&format!(" --faults {profile}"));
    }
    if let Some(bug) = planted {
        command.push_str(&format!(" --planted {bug}"));
    }
    command
}

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
    /// The fault profile the seed ran under.
    #[serde(default)]
    pub profile: String,
    /// Replicas in the run.
    #[serde(default)]
    pub replicas: u64,
    /// When the last fault healed, in virtual nanoseconds: liveness is judged
    /// from here.
    #[serde(default)]
    pub last_heal_ns: u64,
    /// How long an operation may wait past the later of its start and the
    /// last heal, in nanoseconds (derived from the protocol's timeouts).
    #[serde(default)]
    pub liveness_bound_ns: u64,
    /// The longest any completed operation took, in nanoseconds.
    #[serde(default)]
    pub latency_max_ns: u64,
}

/// Faults the simulator injected in one run, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultCounts {
    /// Datagrams lost by the network.
    pub dropped: u64,
    pub duplicated: u64,
    /// Datagrams held back so that later ones overtook them.
    pub reordered: u64,
    /// Datagrams held back for long (across several protocol timeouts).
    pub delayed: u64,
    /// Splits of the network into groups that cannot talk to each other.
    pub partitions: u64,
    /// Links cut in one direction only.
    pub oneway_cuts: u64,
    /// Datagrams lost because a partition came between their send and their
    /// delivery.
    pub cut_in_flight: u64,
    /// Nodes that lost their memory.
    pub crashes: u64,
    /// Of the crashes, those that came between a durable write and the sends
    /// waiting for it.
    pub persist_crashes: u64,
    pub restarts: u64,
    /// Nodes stopped for a while with their memory kept.
    pub pauses: u64,
    /// Datagrams a Byzantine node's tamperer handled (of which `mutated` were
    /// rewritten field by field and `replayed` were old datagrams sent again).
    pub byzantine: u64,
    pub mutated: u64,
    pub replayed: u64,
}

impl FaultCounts {
    /// Every kind with its count, in a fixed order.
    pub fn kinds(&self) -> [(&'static str, u64); 14] {
        [
            ("dropped", self.dropped),
            ("duplicated", self.duplicated),
            ("reordered", self.reordered),
            ("delayed", self.delayed),
            ("partitions", self.partitions),
            ("one-way cuts", self.oneway_cuts),
            ("cut in flight", self.cut_in_flight),
            ("crashes", self.crashes),
            ("crashes at a persist", self.persist_crashes),
            ("restarts", self.restarts),
            ("pauses", self.pauses),
            ("byzantine", self.byzantine),
            ("mutated", self.mutated),
            ("replayed", self.replayed),
        ]
    }

    /// All faults injected, with a tampered datagram and its mutation or
    /// replay counted once, and a crash at a persist once.
    pub fn total(&self) -> u64 {
        self.kinds()
            .iter()
            .filter(|(name, _)| !matches!(*name, "mutated" | "replayed" | "crashes at a persist"))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn add(&mut self, other: &FaultCounts) {
        self.dropped += other.dropped;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.delayed += other.delayed;
        self.partitions += other.partitions;
        self.oneway_cuts += other.oneway_cuts;
        self.cut_in_flight += other.cut_in_flight;
        self.crashes += other.crashes;
        self.persist_crashes += other.persist_crashes;
        self.restarts += other.restarts;
        self.pauses += other.pauses;
        self.byzantine += other.byzantine;
        self.mutated += other.mutated;
        self.replayed += other.replayed;
    }
}

/// Which faults a seeded run injects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A reliable network and nothing else.
    None,
    /// Loss, duplication, reordering, long delays, partitions, one-way cuts,
    /// pauses.
    Network,
    /// Crashes with and without memory (within the model), client crashes,
    /// over a lossy network.
    Crash,
    /// Up to f protocol-aware Byzantine replicas, and strangers sending
    /// noise, over a lossy network.
    Byzantine,
    /// All of the above in the same run.
    All,
    /// More than f faulty replicas: must fail.
    Beyond,
    /// One of `none`, `network`, `crash`, `byzantine` and `all`, drawn from
    /// the seed (the default).
    Mix,
}

impl Profile {
    pub const ALL: &[Profile] = &[
        Profile::None,
        Profile::Network,
        Profile::Crash,
        Profile::Byzantine,
        Profile::All,
        Profile::Beyond,
        Profile::Mix,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::Network => "network",
            Profile::Crash => "crash",
            Profile::Byzantine => "byzantine",
            Profile::All => "all",
            Profile::Beyond => "beyond",
            Profile::Mix => "mix",
        }
    }

    /// The profile a seed runs under: `Mix` draws one of the others (all
    /// but `beyond`) from the seed.
    pub fn resolve(self, seed: u64) -> Profile {
        if self != Profile::Mix {
            return self;
        }
        let choices = [
            Profile::None,
            Profile::Network,
            Profile::Crash,
            Profile::Byzantine,
            Profile::All,
            Profile::All,
        ];
        // A draw of its own, independent of the seed's other streams.
        let mixed = (seed ^ 0x00D1_CE00_FA17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        choices[(mixed >> 32) as usize % choices.len()]
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Profile, String> {
        Profile::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Profile::ALL.iter().map(|p| p.name()).collect();
                format!("unknown fault profile {s:?}; known: {}", names.join(", "))
            })
    }
}
