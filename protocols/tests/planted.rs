//! The seeded runs can say no: each bug put back behind the test-only switch
//! (see `protocols::planted`) is caught by `--faults all` within a seed
//! budget. Five are bugs the adversarial review found in PBFT, three are
//! classic ones planted to see whether the simulator finds them, three are
//! durability bugs of the baseline's durable mode, and two are chain
//! replication's (a Sent list never resent, a tail read without its
//! lease).
//!
//! Runs only in a build with the `planted-bugs` feature, which needs debug
//! assertions (the `planted` profile):
//!
//! ```text
//! cargo test --profile planted -p protocols --features planted-bugs --test planted
//! ```
//!
//! Each test runs seeds from 0 until one fails and reports which; the
//! budgets leave room above the seeds that failed first when they were set
//! (the closing note of the change gives them for 10,000 seeds each). One
//! bug that the seeds no longer reach is caught by a scenario made for it.

#![cfg(feature = "planted-bugs")]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

mod pbft_support;

use protocols::chain::bugs as chain;
use protocols::pbft::bugs as pbft;
use protocols::planted::{self, Bug};
use protocols::simulate::{Profile, Protocol, simulate};
use protocols::unreplicated::bugs as unreplicated;

/// The first seed in `0..budget` of `protocol` that fails with `bug`
/// planted.
fn first_failure(protocol: Protocol, bug: Bug, budget: u64) -> Option<(u64, String)> {
    static QUIET: Once = Once::new();
    // Panics are failures these runs look for: not worth a backtrace each.
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    (0..budget).find_map(|seed| {
        let run = catch_unwind(AssertUnwindSafe(|| {
            planted::with(Some(bug), || simulate(protocol, seed, Profile::All, false))
        }));
        match run {
            Ok(outcome) if outcome.report.passed => None,
            Ok(outcome) => Some((seed, outcome.report.failure.unwrap_or_default())),
            Err(_) => Some((seed, "panic".to_string())),
        }
    })
}

fn caught_within(bug: Bug, budget: u64) {
    caught_in(protocols::pbft::PROTOCOL, bug, budget);
}

fn caught_in(protocol: Protocol, bug: Bug, budget: u64) {
    match first_failure(protocol, bug, budget) {
        Some((seed, why)) => println!("{bug}: caught at seed {seed}: {why}"),
        None => panic!("{bug}: no failure in {budget} seeds"),
    }
}

#[test]
fn status_overflow_is_caught() {
    caught_within(pbft::STATUS_OVERFLOW, 500);
}

#[test]
fn quorum_of_2f_plus_1_for_any_n_is_caught() {
    caught_within(pbft::QUORUM_2F_PLUS_1, 1_500);
}

#[test]
fn unchecked_state_chunks_are_caught() {
    caught_within(pbft::UNCHECKED_STATE_CHUNKS, 2_000);
}

#[test]
fn a_timer_reset_by_any_execution_is_caught() {
    caught_within(pbft::TIMER_RESET_BY_ANY_EXECUTION, 3_000);
}

/// Backups that do not hand the requests they waited for to a new primary.
/// The seeded runs found it (at seed 2,423 of `all`) while clients
/// registered with the primary alone; since registrations reach every
/// replica, no seed of 12,000 does, so a scenario made for it says no: a
/// request only the backups still have, and without the hand-over the view
/// changes cascade.
#[test]
fn no_relay_on_a_new_view_is_caught_by_its_scenario() {
    let (with, _) = pbft_support::hand_over_scenario();
    let (without, _) = planted::with(
        Some(pbft::NO_RELAY_ON_NEW_VIEW),
        pbft_support::hand_over_scenario,
    );
    println!("no-relay-on-new-view: {with} view changes with the hand-over, {without} without");
    assert!(
        without > with,
        "{without} view changes without the hand-over, {with} with"
    );
}

#[test]
fn quorum_of_f_plus_1_is_caught() {
    caught_within(pbft::QUORUM_F_PLUS_1, 500);
}

#[test]
fn commit_without_prepared_is_caught() {
    caught_within(pbft::COMMIT_WITHOUT_PREPARED, 2_500);
}

#[test]
fn a_new_view_check_that_ignores_prepared_is_caught() {
    caught_within(pbft::NEW_VIEW_IGNORES_PREPARED, 6_000);
}

/// Without a bug planted, the same build passes the seeds it ran for the
/// cheapest catches: the failures above are the bugs', not the build's.
#[test]
fn nothing_planted_nothing_caught() {
    for seed in 0..200 {
        let outcome = simulate(protocols::pbft::PROTOCOL, seed, Profile::All, false);
        assert!(
            outcome.report.passed,
            "seed {seed}: {:?}",
            outcome.report.failure
        );
    }
}

#[test]
fn a_reply_before_the_log_has_its_request_is_caught() {
    caught_in(
        protocols::unreplicated::PROTOCOL,
        unreplicated::REPLY_BEFORE_LOG,
        1_000,
    );
}

#[test]
fn a_recovery_that_skips_the_log_is_caught() {
    caught_in(
        protocols::unreplicated::PROTOCOL,
        unreplicated::NO_LOG_REPLAY,
        1_000,
    );
}

#[test]
fn a_snapshot_before_the_result_is_recorded_is_caught() {
    caught_in(
        protocols::unreplicated::PROTOCOL,
        unreplicated::SNAPSHOT_BEFORE_RECORD,
        1_000,
    );
}

/// First caught at seed 1 when its budget was set.
#[test]
fn a_chain_that_never_resends_its_sent_list_is_caught() {
    caught_in(protocols::chain::PROTOCOL, chain::NO_SENT_RESEND, 50);
}

/// First caught at seed 9 when its budget was set.
#[test]
fn a_chain_tail_reading_without_its_lease_is_caught() {
    caught_in(protocols::chain::PROTOCOL, chain::STALE_TAIL_READS, 1_000);
}

/// Twins (Bano et al., OPODIS 2021) say no too: a HotStuff replica that
/// votes without its lock check is caught by the Twins sweep of
/// `hotstuff_twins.rs` (a leader's two correct copies in different
/// partitions, no hand-written adversary), and the run that catches it
/// passes without the bug. When the budget was set (2,040 runs), the first
/// catch was drawn schedule 82 at seed 5, the 1,363rd run: replica 0
/// committed at height 81 the block of view 89, replicas 2 and 3 that of
/// view 81. A replica voting twice in one view (`NO_VIEW_CHECK`) is not
/// caught in this budget: with one twin, the second of two QCs for a
/// view is never built on, since the next leader proposes once.
#[test]
fn twins_catch_a_hotstuff_vote_without_the_lock_check() {
    static QUIET: Once = Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let bug = protocols::hotstuff::bugs::NO_LOCK_CHECK;
    let (seeds, drawn) = (8, 250);
    let Some(caught) = planted::with(Some(bug), || {
        hotstuff_twins_support::first_failure(seeds, drawn)
    }) else {
        panic!("{bug}: no failure in {seeds} seeds of the sweep with {drawn} drawn schedules");
    };
    println!(
        "{bug}: caught by {} at seed {}: {}",
        caught.name, caught.seed, caught.why
    );
    let schedules = hotstuff_twins_support::all_schedules(drawn);
    let (_, phases) = &schedules[caught.schedule];
    assert_eq!(
        hotstuff_twins_support::checked_run(caught.seed, phases),
        None,
        "the run that caught {bug} fails without it"
    );
}

#[path = "hotstuff_twins_support/mod.rs"]
mod hotstuff_twins_support;
