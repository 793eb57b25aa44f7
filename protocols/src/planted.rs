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
//! Each protocol declares its own bugs, as constants in its module (with a
//! doc comment that says what the bug does), and lists them in its
//! [`crate::registry::Kit::planted`]; [`all`] and [`find`] (what
//! `--planted NAME` parses with) look through [`crate::registry::ALL`], so
//! adding a protocol with bugs touches nothing here:
//!
//! ```
//! use protocols::planted::{self, Bug};
//!
//! /// A quorum one replica too small.
//! pub const SMALL_QUORUM: Bug = Bug::new("example", "small-quorum", "a quorum one too small");
//!
//! fn quorum(n: usize) -> usize {
//!     let quorum = n / 2 + 1;
//!     if planted::is(SMALL_QUORUM) { quorum - 1 } else { quorum }
//! }
//! # assert_eq!(quorum(3), 2);
//! ```
//!
//! The switch is per thread, so tests in one process do not see each
//! other's bugs.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

#[cfg(all(feature = "planted-bugs", not(debug_assertions)))]
compile_error!(
    "planted bugs are for builds with debug assertions only (the `planted` profile), \
     so that no release build can carry one"
);

/// A bug that can be put back into a protocol: the protocol it is in (its
/// registry name), its own name (what `--planted` takes; unique across the
/// registry) and a line that says what it does. Two bugs are the same if
/// their protocols and names are.
#[derive(Clone, Copy)]
pub struct Bug {
    protocol: &'static str,
    name: &'static str,
    about: &'static str,
}

impl Bug {
    /// The bug `name` of the protocol named `protocol`; `about` says in a
    /// line what it does, for listings.
    pub const fn new(protocol: &'static str, name: &'static str, about: &'static str) -> Bug {
        Bug {
            protocol,
            name,
            about,
        }
    }

    /// The registry name of the protocol the bug is in.
    pub fn protocol(self) -> &'static str {
        self.protocol
    }

    /// What `--planted` takes, e.g. `quorum-f-plus-1`.
    pub fn name(self) -> &'static str {
        self.name
    }

    /// What the bug does, in a line.
    pub fn about(self) -> &'static str {
        self.about
    }
}

impl PartialEq for Bug {
    fn eq(&self, other: &Bug) -> bool {
        self.protocol == other.protocol && self.name == other.name
    }
}

impl Eq for Bug {}

impl Hash for Bug {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.protocol.hash(state);
        self.name.hash(state);
    }
}

impl fmt::Debug for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bug({}: {})", self.protocol, self.name)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// Every protocol's bugs, in the order of [`crate::registry::ALL`] and then
/// of each protocol's [`crate::registry::Kit::planted`].
pub fn all() -> impl Iterator<Item = Bug> {
    crate::registry::ALL
        .iter()
        .flat_map(|protocol| protocol.kit().planted().iter().copied())
}

/// The bug named `name`, of whichever protocol has it.
pub fn find(name: &str) -> Option<Bug> {
    all().find(|bug| bug.name == name)
}

/// The names of every bug, comma-separated, for messages.
pub fn names() -> String {
    all().map(Bug::name).collect::<Vec<_>>().join(", ")
}

impl FromStr for Bug {
    type Err = String;

    fn from_str(s: &str) -> Result<Bug, String> {
        find(s).ok_or_else(|| format!("unknown planted bug {s:?}; known: {}", names()))
    }
}

#[cfg(feature = "planted-bugs")]
thread_local! {
    static PLANTED: std::cell::Cell<Option<Bug>> = const { std::cell::Cell::new(None) };
}

/// Whether `bug` is planted on this thread.
#[cfg(feature = "planted-bugs")]
#[inline]
pub fn is(bug: Bug) -> bool {
    PLANTED.with(|p| p.get() == Some(bug))
}

/// Whether `bug` is planted on this thread: never, without the
/// `planted-bugs` feature, so the checks compile away.
#[cfg(not(feature = "planted-bugs"))]
#[inline]
pub const fn is(bug: Bug) -> bool {
    let _ = bug;
    false
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Each protocol's bugs name it, and bug names are unique across the
    /// registry, so `--planted NAME` needs no protocol.
    #[test]
    fn bugs_belong_to_their_protocol_and_names_are_unique() {
        let mut names = HashSet::new();
        for protocol in crate::registry::ALL {
            for bug in protocol.kit().planted() {
                assert_eq!(bug.protocol(), protocol.name(), "{bug:?}");
                assert!(names.insert(bug.name()), "{bug:?} twice");
                assert!(!bug.about().is_empty(), "{bug:?}");
            }
        }
        assert_eq!(names.len(), all().count());
    }

    #[test]
    fn bugs_parse_by_name_and_unknown_ones_list_the_known() {
        let bug: Bug = "quorum-f-plus-1".parse().unwrap();
        assert_eq!(bug, crate::pbft::bugs::QUORUM_F_PLUS_1);
        assert_eq!(bug.protocol(), "pbft");
        assert_eq!(bug.to_string(), "quorum-f-plus-1");
        let bug: Bug = "reply-before-log".parse().unwrap();
        assert_eq!(bug, crate::unreplicated::bugs::REPLY_BEFORE_LOG);
        let error = "quorum-f".parse::<Bug>().unwrap_err();
        assert!(
            error.contains("unknown planted bug \"quorum-f\""),
            "{error}"
        );
        assert!(error.contains("quorum-f-plus-1"), "{error}");
        assert!(error.contains("snapshot-before-record"), "{error}");
    }

    /// Equality is the protocol and the name, not the description.
    #[test]
    fn bugs_are_equal_by_protocol_and_name() {
        let a = Bug::new("p", "x", "one");
        assert_eq!(a, Bug::new("p", "x", "another"));
        assert_ne!(a, Bug::new("q", "x", "one"));
        assert_ne!(a, Bug::new("p", "y", "one"));
    }

    #[cfg(not(feature = "planted-bugs"))]
    #[test]
    fn without_the_feature_nothing_is_planted() {
        const {
            assert!(!is(crate::pbft::bugs::QUORUM_F_PLUS_1));
            assert!(!AVAILABLE);
        }
    }

    #[cfg(feature = "planted-bugs")]
    #[test]
    fn a_bug_is_planted_on_this_thread_only_and_for_f_only() {
        let bug = crate::pbft::bugs::QUORUM_F_PLUS_1;
        assert!(!is(bug));
        with(Some(bug), || {
            assert!(is(bug));
            assert!(!is(crate::pbft::bugs::QUORUM_2F_PLUS_1));
            std::thread::spawn(move || assert!(!is(bug)))
                .join()
                .unwrap();
        });
        assert!(!is(bug));
    }
}
