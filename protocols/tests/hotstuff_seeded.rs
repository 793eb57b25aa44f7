//! Seeded runs of HotStuff in the simulator under every fault profile it is
//! built for (n − f correct replicas, crash-recovery with durable votes,
//! protocol-aware Byzantine replicas), and one it is not.
//!
//! Each run is checked for agreement (no two correct replicas execute
//! different requests at one height), linearizability of the clients'
//! history, liveness after the last heal, and, once it has settled, that
//! every correct replica caught up (`protocols::simulate::simulate` runs
//! all of them). Seed counts add up to 600 in the normal test run; more go
//! through `runner sim --protocol hotstuff`.

use protocols::simulate::{Profile, replay_command, simulate};
use wire::sim::FaultCounts;

const HOTSTUFF: protocols::simulate::Protocol = protocols::hotstuff::PROTOCOL;

/// Seeds of the byzantine and all profiles run here: the first hundred of
/// each (seeds 0..400 of both pass, and 2,000 of `all` through `runner
/// sim`).
const BYZANTINE_SEEDS: std::ops::Range<u64> = 0..100;
const ALL_SEEDS: std::ops::Range<u64> = 0..100;

/// Runs `seeds` under `profile`; every one passes (the message lists every
/// seed that failed, each with its replay command). Returns the faults of
/// all the runs, summed, and the operations they completed.
fn random_seeds(profile: Profile, seeds: std::ops::Range<u64>) -> (FaultCounts, u64) {
    let mut faults = FaultCounts::default();
    let mut ops = 0;
    let mut failed = Vec::new();
    for seed in seeds {
        let report = simulate(HOTSTUFF, seed, profile, false).report;
        if !report.passed {
            failed.push(format!(
                "seed {seed} failed: {}\nreplay: {}",
                report.failure.unwrap_or_default(),
                replay_command(HOTSTUFF, seed, profile)
            ));
        }
        faults.add(&report.faults);
        ops += report.ops_completed;
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    (faults, ops)
}

#[test]
fn random_seeds_no_faults() {
    let (faults, ops) = random_seeds(Profile::None, 0..150);
    assert_eq!(faults, FaultCounts::default(), "{faults:?}");
    assert!(ops > 0);
}

#[test]
fn random_seeds_network_faults() {
    let (faults, _) = random_seeds(Profile::Network, 0..150);
    assert!(faults.dropped > 0 && faults.partitions > 0, "{faults:?}");
}

/// Crashes with the durable vote record kept, some of them at a persist
/// (the write kept or lost).
#[test]
fn random_seeds_crashes() {
    let (faults, _) = random_seeds(Profile::Crash, 0..100);
    assert!(faults.crashes > 0 && faults.restarts > 0, "{faults:?}");
}

/// Up to f Byzantine replicas: silent, garbage, an equivocating leader, or
/// the protocol-aware adversary (mutated fields, replays, withholding, a
/// different message per destination), all correctly signed.
#[test]
fn random_seeds_byzantine() {
    let (faults, _) = random_seeds(Profile::Byzantine, BYZANTINE_SEEDS);
    assert!(faults.byzantine > 0 && faults.mutated > 0, "{faults:?}");
}

/// Every fault at once.
#[test]
fn random_seeds_all_faults() {
    let (faults, _) = random_seeds(Profile::All, ALL_SEEDS);
    assert!(
        faults.dropped > 0 && faults.partitions > 0 && faults.crashes > 0,
        "{faults:?}"
    );
}

/// Beyond the model: f + 1 replicas crash for good mid-run (n = 4 or 7,
/// over a lossy network). No QC forms without them, so the liveness
/// checker must fail every such run. (The simulator's own `beyond` profile
/// for HotStuff restarts f + 1 replicas without their durable record; a
/// fresh replica never sees a proposal of a view it voted in before, and
/// none of 400 seeds of it failed: it does not take HotStuff beyond its
/// model.)
#[test]
fn beyond_the_model_the_checkers_find_failures() {
    use protocols::hotstuff::simulate::system;
    use runtime::sim::Network;
    use runtime::{Addr, ReplicaId, Rng, Time};
    use std::time::Duration;
    for seed in 0..10 {
        let mut rng = Rng::new(seed);
        let n = if rng.chance(0.5) { 4 } else { 7 };
        let f = (n - 1) / 3;
        let mut sys = system(seed, Network::faulty(0.02), n, 3, 20);
        let mut down: Vec<u8> = Vec::new();
        while down.len() <= f {
            let i = rng.below(n as u64) as u8;
            if !down.contains(&i) {
                down.push(i);
            }
        }
        let at = Time::from_nanos(rng.between(1, 30) * 1_000_000);
        sys.sim.schedule(at, move |sim| {
            for &i in &down {
                sim.crash(Addr::Replica(ReplicaId(i)));
            }
        });
        sys.sim.run_until_live(
            protocols::hotstuff::LIVENESS_BOUND,
            Time::ZERO + Duration::from_secs(30),
        );
        let verdict = protocols::simulate::check(&sys.sim, &sys.log);
        assert!(
            verdict.as_ref().is_err_and(|e| e.starts_with("liveness")),
            "seed {seed}: {verdict:?}"
        );
    }
}
