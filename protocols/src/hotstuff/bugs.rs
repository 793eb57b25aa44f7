//! Bugs that can be put back into HotStuff ([`crate::planted`]), each caught
//! by the seeded runs within the budget `protocols/tests/planted.rs` states.

use crate::planted::Bug;

const HOTSTUFF: &str = wire::hotstuff::SPEC.name;

/// A replica votes for a block that neither extends its locked block nor
/// carries a QC above the lock (the paper's `safeNode` without its first
/// half and second half: any block goes).
pub const NO_LOCK_CHECK: Bug = Bug::new(
    HOTSTUFF,
    "no-lock-check",
    "a replica votes without checking the block against its lock",
);

/// A replica votes in a view at or below the last one it voted in: twice in
/// one view, for two blocks of an equivocating leader.
pub const NO_VIEW_CHECK: Bug = Bug::new(
    HOTSTUFF,
    "no-height-check",
    "a replica votes again in a view it voted in already",
);

/// A replica commits on a two-chain (b' certified by b'', with b'' its direct
/// child) instead of a three-chain.
pub const TWO_CHAIN_COMMIT: Bug = Bug::new(
    HOTSTUFF,
    "two-chain-commit",
    "a replica commits a block on a two-chain instead of a three-chain",
);

pub const ALL: &[Bug] = &[NO_LOCK_CHECK, NO_VIEW_CHECK, TWO_CHAIN_COMMIT];
