//! Bugs planted on purpose, to prove that the seeded runs can say no.
//!
//! A test that cannot fail proves nothing. Each [`Bug`] puts back a bug that
//! was once found in a protocol here (or a classic one: a quorum too small,
//! a commit without a prepared certificate, a reply that leaves before the
//! write-ahead log has its request), and the seeded runs under
//! `--faults all` must catch it. The switch exists only with the
//! `planted-bugs` feature, which refuses to build without debug assertions:
//! a release build (what the runner benchmarks and deploys) cannot turn a
//! bug on. Build with the `planted` profile (release optimisations, debug
//! assertions on):
//!
//! ```text
//! cargo run --profile planted -p programs --features planted-bugs -- \
//!     sim --protocol pbft --seeds 10000 --faults all --planted quorum-f-plus-1
//! ```
//!
//! The switch is per thread, so tests in one process do not see each
//! other's bugs.

use std::fmt;
use std::str::FromStr;

#[cfg(all(feature = "planted-bugs", not(debug_assertions)))]
compile_error!(
    "planted bugs are for builds with debug assertions only (the `planted` profile), \
     so that no release build can carry one"
);

/// A bug that can be put back into a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bug {
    /// PBFT: arithmetic on a peer's `Status` numbers without saturation
    /// (a `u64::MAX` there overflowed every correct replica).
    StatusOverflow,
    /// PBFT: quorums of 2f+1 whatever n is (with n = 6, two halves of a
    /// partition both reach one).
    QuorumTwoFPlusOne,
    /// PBFT: state chunks trusted until the whole state is assembled, and a
    /// failed transfer retried without clearing what it had.
    UncheckedStateChunks,
    /// PBFT: the view-change timer reset by any execution, so a primary can
    /// censor one client while it serves others.
    TimerResetByAnyExecution,
    /// PBFT: backups do not hand the requests they wait for to a new
    /// primary, so view changes cascade.
    NoRelayOnNewView,
    /// PBFT: quorums of f+1.
    QuorumFPlusOne,
    /// PBFT: a backup sends its commit as soon as it accepts a pre-prepare,
    /// without a prepared certificate.
    CommitWithoutPrepared,
    /// PBFT: a new-view message accepted without recomputing O from its
    /// view-change messages' prepared certificates.
    NewViewIgnoresPrepared,
    /// Unreplicated, durable: the reply leaves before the request is in
    /// the log (sent ahead of the persist, so the barrier does not hold it).
    ReplyBeforeLog,
    /// Unreplicated, durable: recovery restores the snapshot and skips the
    /// log after it.
    NoLogReplay,
    /// Unreplicated, durable: the snapshot is taken before the client table
    /// has the request's result, so a retransmission after a recovery runs
    /// it again (the order this server had first).
    SnapshotBeforeRecord,
}

impl Bug {
    pub const ALL: &[Bug] = &[
        Bug::StatusOverflow,
        Bug::QuorumTwoFPlusOne,
        Bug::UncheckedStateChunks,
        Bug::TimerResetByAnyExecution,
        Bug::NoRelayOnNewView,
        Bug::QuorumFPlusOne,
        Bug::CommitWithoutPrepared,
        Bug::NewViewIgnoresPrepared,
        Bug::ReplyBeforeLog,
        Bug::NoLogReplay,
        Bug::SnapshotBeforeRecord,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Bug::StatusOverflow => "status-overflow",
            Bug::QuorumTwoFPlusOne => "quorum-2f-plus-1",
            Bug::UncheckedStateChunks => "unchecked-state-chunks",
            Bug::TimerResetByAnyExecution => "timer-reset-by-any-execution",
            Bug::NoRelayOnNewView => "no-relay-on-new-view",
            Bug::QuorumFPlusOne => "quorum-f-plus-1",
            Bug::CommitWithoutPrepared => "commit-without-prepared",
            Bug::NewViewIgnoresPrepared => "new-view-ignores-prepared",
            Bug::ReplyBeforeLog => "reply-before-log",
            Bug::NoLogReplay => "no-log-replay",
            Bug::SnapshotBeforeRecord => "snapshot-before-record",
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Bug {
    type Err = String;

    fn from_str(s: &str) -> Result<Bug, String> {
        Bug::ALL
            .iter()
            .copied()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Bug::ALL.iter().map(|b| b.name()).collect();
                format!("unknown planted bug {s:?}; known: {}", names.join(", "))
            })
    }
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Whether `bug` is planted on this thread. Always false without the
/// `planted-bugs` feature, so the checks compile away.
#[inline]
pub fn is(bug: Bug) -> bool {
    #[cfg(feature = "planted-bugs")]
    {
        PLANTED.with(|p| p.get() == Some(bug))
    }
    #[cfg(not(feature = "planted-bugs"))]
    {
        let _ = bug;
        false
    }
}

/// Whether this build can plant bugs at all.
pub const AVAILABLE: bool = cfg!(feature = "planted-bugs");

/// Runs `f` with `bug` planted on this thread.
#[cfg(feature = "planted-bugs")]
pub fn with<T>(bug: Option<Bug>, f: impl FnOnce() -> T) -> T {
    struct Reset(Option<Bug>);
    impl Drop for Reset {
        fn drop(&mut self) {
            PLANTED.with(|p| p.set(self.0));
        }
    }
    let _reset = Reset(PLANTED.with(|p| p.replace(bug)));
    f()
}
