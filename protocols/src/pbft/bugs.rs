//! PBFT's planted bugs (see [`crate::planted`]): five that an adversarial
//! review found here, and three classics. [`ALL`] is what the registry
//! lists ([`crate::registry::Kit::planted`]).

use crate::planted::Bug;

const PBFT: &str = wire::pbft::SPEC.name;

/// Arithmetic on a peer's `Status` numbers without saturation (a
/// `u64::MAX` there overflowed every correct replica).
pub const STATUS_OVERFLOW: Bug = Bug::new(
    PBFT,
    "status-overflow",
    "a peer's status numbers added to without saturation",
);

/// Quorums of 2f+1 whatever n is (with n = 6, two halves of a partition
/// both reach one).
pub const QUORUM_2F_PLUS_1: Bug =
    Bug::new(PBFT, "quorum-2f-plus-1", "quorums of 2f+1 whatever n is");

/// State chunks trusted until the whole state is assembled, and a failed
/// transfer retried without clearing what it had.
pub const UNCHECKED_STATE_CHUNKS: Bug = Bug::new(
    PBFT,
    "unchecked-state-chunks",
    "state chunks trusted until the whole state is assembled",
);

/// The view-change timer reset by any execution, so a primary can censor
/// one client while it serves others.
pub const TIMER_RESET_BY_ANY_EXECUTION: Bug = Bug::new(
    PBFT,
    "timer-reset-by-any-execution",
    "the view-change timer reset by any execution",
);

/// Backups do not hand the requests they wait for to a new primary, so
/// view changes cascade.
pub const NO_RELAY_ON_NEW_VIEW: Bug = Bug::new(
    PBFT,
    "no-relay-on-new-view",
    "backups keep the requests they wait for from a new primary",
);

/// Quorums of f+1.
pub const QUORUM_F_PLUS_1: Bug = Bug::new(PBFT, "quorum-f-plus-1", "quorums of f+1");

/// A backup sends its commit as soon as it accepts a pre-prepare, without
/// a prepared certificate.
pub const COMMIT_WITHOUT_PREPARED: Bug = Bug::new(
    PBFT,
    "commit-without-prepared",
    "a commit sent without a prepared certificate",
);

/// A new-view message accepted without recomputing O from its view-change
/// messages' prepared certificates.
pub const NEW_VIEW_IGNORES_PREPARED: Bug = Bug::new(
    PBFT,
    "new-view-ignores-prepared",
    "a new view accepted without checking its pre-prepares",
);

/// Every PBFT bug.
pub const ALL: &[Bug] = &[
    STATUS_OVERFLOW,
    QUORUM_2F_PLUS_1,
    UNCHECKED_STATE_CHUNKS,
    TIMER_RESET_BY_ANY_EXECUTION,
    NO_RELAY_ON_NEW_VIEW,
    QUORUM_F_PLUS_1,
    COMMIT_WITHOUT_PREPARED,
    NEW_VIEW_IGNORES_PREPARED,
];
