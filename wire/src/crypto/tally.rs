//! How much cryptography this process did: signatures made and checked,
//! MACs computed or checked, digests taken, with the bytes the last two
//! covered. A node reports the totals as counters (names below), and the
//! runner prices them with unit costs measured on the machine, for the
//! bound a protocol's throughput is judged against.
//!
//! Each thread counts into slots of its own (a load and a store, no
//! locked instruction, no cache line shared with another thread); a
//! thread's counts are folded into the retired totals when it exits, so
//! the registry holds one entry per live thread.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// What is counted: each kind's place in [`Tally`] and its counter name,
/// as nodes report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Signatures,
    Verifications,
    /// MACs computed and MACs checked (the same work).
    Macs,
    MacBytes,
    /// SHA-256 digests, those a signature or a check is over included.
    Digests,
    DigestBytes,
}

const KINDS: usize = 6;

impl Kind {
    pub const ALL: [Kind; KINDS] = [
        Kind::Signatures,
        Kind::Verifications,
        Kind::Macs,
        Kind::MacBytes,
        Kind::Digests,
        Kind::DigestBytes,
    ];

    pub const fn counter(self) -> &'static str {
        match self {
            Kind::Signatures => SIGNATURES,
            Kind::Verifications => VERIFICATIONS,
            Kind::Macs => MACS,
            Kind::MacBytes => MAC_BYTES,
            Kind::Digests => DIGESTS,
            Kind::DigestBytes => DIGEST_BYTES,
        }
    }
}

pub const SIGNATURES: &str = "crypto: signatures";
pub const VERIFICATIONS: &str = "crypto: signature checks";
pub const MACS: &str = "crypto: macs";
pub const MAC_BYTES: &str = "crypto: mac bytes";
pub const DIGESTS: &str = "crypto: digests";
pub const DIGEST_BYTES: &str = "crypto: digest bytes";

/// Counts since the process started, by [`Kind`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally([u64; KINDS]);

impl Tally {
    /// The totals of every thread, live and exited.
    pub fn now() -> Tally {
        let registry = REGISTRY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut tally = registry.retired;
        for slots in &registry.live {
            tally.add(&read(slots));
        }
        tally
    }

    /// The calling thread's counts: what a test counts its own work by,
    /// whatever other threads do meanwhile.
    pub fn this_thread() -> Tally {
        MINE.with(|mine| read(&mine.0))
    }

    pub fn get(&self, kind: Kind) -> u64 {
        self.0[kind as usize]
    }

    /// As named counters, for a node's report.
    pub fn counters(&self) -> [(&'static str, u64); KINDS] {
        Kind::ALL.map(|kind| (kind.counter(), self.get(kind)))
    }

    fn add(&mut self, other: &Tally) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// One thread's counts. Only the owning thread writes them, so a plain
/// load and store count correctly; readers on other threads see a recent
/// value.
type Slots = [AtomicU64; KINDS];

fn read(slots: &Slots) -> Tally {
    Tally(std::array::from_fn(|kind| slots[kind].load(Relaxed)))
}

struct Registry {
    live: Vec<Arc<Slots>>,
    retired: Tally,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: Vec::new(),
    retired: Tally([0; KINDS]),
});

/// A thread's slots, registered on first use and retired on exit.
struct Mine(Arc<Slots>);

impl Mine {
    fn register() -> Mine {
        let slots = Arc::new(Slots::default());
        REGISTRY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .live
            .push(Arc::clone(&slots));
        Mine(slots)
    }
}

impl Drop for Mine {
    fn drop(&mut self) {
        let mut registry = REGISTRY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.retired.add(&read(&self.0));
        registry.live.retain(|slots| !Arc::ptr_eq(slots, &self.0));
    }
}

thread_local! {
    static MINE: Mine = Mine::register();
}

fn bump(kind: Kind, n: u64) {
    // During thread teardown the slots may be gone: that count is lost.
    let _ = MINE.try_with(|mine| {
        let slot = &mine.0[kind as usize];
        slot.store(slot.load(Relaxed).wrapping_add(n), Relaxed);
    });
}

pub(super) fn signature() {
    bump(Kind::Signatures, 1);
}

pub(super) fn verification() {
    bump(Kind::Verifications, 1);
}

pub(super) fn mac(bytes: usize) {
    bump(Kind::Macs, 1);
    bump(Kind::MacBytes, bytes as u64);
}

pub(super) fn digest(bytes: usize) {
    bump(Kind::Digests, 1);
    bump(Kind::DigestBytes, bytes as u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_of_exited_threads_are_kept() {
        // Other tests count concurrently, so only lower bounds hold.
        let before = Tally::now();
        std::thread::spawn(|| {
            mac(100);
            digest(7);
            signature();
            verification();
            verification();
        })
        .join()
        .unwrap();
        let now = Tally::now();
        let counted = |kind| now.get(kind) - before.get(kind);
        assert!(counted(Kind::Macs) >= 1 && counted(Kind::MacBytes) >= 100);
        assert!(counted(Kind::Digests) >= 1 && counted(Kind::DigestBytes) >= 7);
        assert!(counted(Kind::Signatures) >= 1 && counted(Kind::Verifications) >= 2);
        let registry = REGISTRY.lock().unwrap();
        assert!(
            registry.live.len() < 64,
            "exited threads leave the registry"
        );
    }

    #[test]
    fn counters_are_named_in_kind_order() {
        let mut tally = Tally::default();
        tally.0[Kind::Digests as usize] = 3;
        assert_eq!(tally.counters()[4], (DIGESTS, 3));
        assert!(
            tally
                .counters()
                .iter()
                .all(|&(name, _)| name.starts_with("crypto: "))
        );
    }
}
