//! Seeded runs of chain replication in the simulator, under each fault
//! profile it is built for, and one it is not.
//!
//! Chain replication tolerates crashes (f of n = f + 1 servers), not
//! Byzantine servers: the byzantine profile adds noise only (garbage from
//! the network), which every server must drop. Under `beyond` every server
//! may lose its state at once, which no chain survives: the checkers must
//! say so.

use protocols::simulate::{Profile, replay_command, simulate};
use wire::sim::FaultCounts;

const CHAIN: protocols::simulate::Protocol = protocols::chain::PROTOCOL;

/// Runs `seeds` under `profile`; every one passes. Returns the faults of
/// all the runs, summed, and the operations they completed.
fn random_seeds(profile: Profile, seeds: std::ops::Range<u64>) -> (FaultCounts, u64) {
    let mut faults = FaultCounts::default();
    let mut ops = 0;
    for seed in seeds {
        let report = simulate(CHAIN, seed, profile, false).report;
        assert!(
            report.passed,
            "seed {seed} failed: {}\nreplay: {}",
            report.failure.unwrap_or_default(),
            replay_command(CHAIN, seed, profile)
        );
        faults.add(&report.faults);
        ops += report.ops_completed;
    }
    (faults, ops)
}

#[test]
fn random_seeds_no_faults() {
    let (faults, ops) = random_seeds(Profile::None, 0..500);
    assert_eq!(faults, FaultCounts::default(), "{faults:?}");
    assert!(ops > 0);
}

#[test]
fn random_seeds_network_faults() {
    let (faults, _) = random_seeds(Profile::Network, 0..500);
    assert!(faults.dropped > 0 && faults.partitions > 0, "{faults:?}");
}

#[test]
fn random_seeds_crashes() {
    let (faults, _) = random_seeds(Profile::Crash, 0..500);
    assert!(faults.crashes > 0 && faults.restarts > 0, "{faults:?}");
}

#[test]
fn random_seeds_noise() {
    random_seeds(Profile::Byzantine, 0..500);
}

/// Every fault at once, the hardest profile the chain is built for.
#[test]
fn random_seeds_all_faults() {
    let (faults, _) = random_seeds(Profile::All, 0..1_000);
    assert!(
        faults.dropped > 0 && faults.partitions > 0 && faults.crashes > 0,
        "{faults:?}"
    );
}

/// Beyond the model (every server may lose its state): the checkers find
/// the chain stalled or its history broken in many seeds.
#[test]
fn beyond_the_model_the_checkers_find_failures() {
    let failed = (0..50)
        .filter(|&seed| {
            std::panic::catch_unwind(|| simulate(CHAIN, seed, Profile::Beyond, false))
                .map_or(true, |outcome| !outcome.report.passed)
        })
        .count();
    assert!(
        failed >= 10,
        "only {failed} of 50 beyond-model seeds failed"
    );
}
