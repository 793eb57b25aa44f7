//! Twins for HotStuff (Bano et al., "Twins: BFT Systems Made Robust",
//! OPODIS 2021): an equivocating leader emulated by two correct copies of
//! one replica in different partitions (see `hotstuff_twins_support`).
//! HotStuff's safety (the paper's §4.3, Theorem 2: no two conflicting
//! blocks commit) must hold with the leader's two copies proposing
//! different blocks for the same views, and its liveness (§4.4) once the
//! partitions heal.

mod hotstuff_twins_support;

use hotstuff_twins_support::{self as twins, CLIENTS, OPS};

/// The scenario: replica 1, the leader of views 1, 5, 9, ..., has
/// twins T1 and T2; {T1, A, B} | {T2, C} for 300 ms, then the heal. The
/// copies propose different blocks for views they lead (checked in the
/// trace: the scenario does make the leader equivocate), the three correct
/// replicas agree and the history is linearizable, every client finishes
/// after the heal, and the correct replicas catch up.
#[test]
fn an_equivocating_twin_leader_across_a_partition() {
    let run = twins::run(7, &twins::split_leader(), true);
    let trace = run.sim.trace().expect("traced");
    let equivocated = twins::equivocated_views(trace);
    assert!(
        !equivocated.is_empty(),
        "the twins never proposed different blocks for one view"
    );
    assert_eq!(run.failure, None, "twins broke HotStuff");
    assert_eq!(run.ops_completed, CLIENTS * OPS);
    println!(
        "twins proposed different blocks in views {equivocated:?}; {} operations completed",
        run.ops_completed
    );
}

/// The sweep: five fixed partition schedules and twenty drawn ones (one to
/// six phases splitting the correct replicas and clients between the
/// copies, some with healed gaps), six seeds each (odd ones with datagrams
/// held back across partition changes). None may break agreement (of
/// executions and of committed blocks), linearizability, liveness after
/// the heal or catch-up.
#[test]
fn a_sweep_of_twin_partition_schedules() {
    let failures = twins::sweep(6, 20);
    assert!(
        failures.is_empty(),
        "{} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
