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

/// Counter names, as nodes report them.
pub const SIGNATURES: &str = "crypto: signatures";
pub const VERIFICATIONS: &str = "crypto: signature checks";
pub const MACS: &str = "crypto: macs";
pub const MAC_BYTES: &str = "crypto: mac bytes";
pub const DIGESTS: &str = "crypto: digests";
pub const DIGEST_BYTES: &str = "crypto: digest bytes";

/// Totals since the process started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub signatures: u64,
    pub verifications: u64,
    /// MACs computed and MACs checked (the same work).
    pub macs: u64,
    pub mac_bytes: u64,
    /// SHA-256 digests taken on their own (those inside a signature or a
    /// check are counted here too: a signature is over a digest).
    pub digests: u64,
    pub digest_bytes: u64,
}

impl Tally {
    /// The totals of every thread, live and exited.
    pub fn now() -> Tally {
        let registry = REGISTRY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut tally = registry.retired;
        for slots in &registry.live {
            tally.add(&slots.read());
        }
        tally
    }

    /// As named counters, for a node's report.
    pub fn counters(&self) -> [(&'static str, u64); 6] {
        [
            (SIGNATURES, self.signatures),
            (VERIFICATIONS, self.verifications),
            (MACS, self.macs),
            (MAC_BYTES, self.mac_bytes),
            (DIGESTS, self.digests),
            (DIGEST_BYTES, self.digest_bytes),
        ]
    }

    fn add(&mut self, other: &Tally) {
        self.signatures += other.signatures;
        self.verifications += other.verifications;
        self.macs += other.macs;
        self.mac_bytes += other.mac_bytes;
        self.digests += other.digests;
        self.digest_bytes += other.digest_bytes;
    }
}

#[derive(Default)]
struct Slots {
    signatures: AtomicU64,
    verifications: AtomicU64,
    macs: AtomicU64,
    mac_bytes: AtomicU64,
    digests: AtomicU64,
    digest_bytes: AtomicU64,
}

impl Slots {
    fn read(&self) -> Tally {
        Tally {
            signatures: self.signatures.load(Relaxed),
            verifications: self.verifications.load(Relaxed),
            macs: self.macs.load(Relaxed),
            mac_bytes: self.mac_bytes.load(Relaxed),
            digests: self.digests.load(Relaxed),
            digest_bytes: self.digest_bytes.load(Relaxed),
        }
    }
}

/// Only the owning thread writes its slots, so a plain load and store
/// count correctly; readers on other threads see a recent value.
fn bump(slot: &AtomicU64, n: u64) {
    slot.store(slot.load(Relaxed).wrapping_add(n), Relaxed);
}

struct Registry {
    live: Vec<Arc<Slots>>,
    retired: Tally,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: Vec::new(),
    retired: Tally {
        signatures: 0,
        verifications: 0,
        macs: 0,
        mac_bytes: 0,
        digests: 0,
        digest_bytes: 0,
    },
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
        let counts = self.0.read();
        registry.retired.add(&counts);
        registry.live.retain(|slots| !Arc::ptr_eq(slots, &self.0));
    }
}

thread_local! {
    static MINE: Mine = Mine::register();
}

fn with(count: impl FnOnce(&Slots)) {
    // During thread teardown the slots may be gone: that count is lost.
    let _ = MINE.try_with(|mine| count(&mine.0));
}

pub(super) fn signature() {
    with(|slots| bump(&slots.signatures, 1));
}

pub(super) fn verification() {
    with(|slots| bump(&slots.verifications, 1));
}

pub(super) fn mac(bytes: usize) {
    with(|slots| {
        bump(&slots.macs, 1);
        bump(&slots.mac_bytes, bytes as u64);
    });
}

pub(super) fn digest(bytes: usize) {
    with(|slots| {
        bump(&slots.digests, 1);
        bump(&slots.digest_bytes, bytes as u64);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn since(before: Tally) -> Tally {
        let now = Tally::now();
        Tally {
            signatures: now.signatures - before.signatures,
            verifications: now.verifications - before.verifications,
            macs: now.macs - before.macs,
            mac_bytes: now.mac_bytes - before.mac_bytes,
            digests: now.digests - before.digests,
            digest_bytes: now.digest_bytes - before.digest_bytes,
        }
    }

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
        let counted = since(before);
        assert!(counted.macs >= 1 && counted.mac_bytes >= 100);
        assert!(counted.digests >= 1 && counted.digest_bytes >= 7);
        assert!(counted.signatures >= 1 && counted.verifications >= 2);
        let registry = REGISTRY.lock().unwrap();
        assert!(
            registry.live.len() < 64,
            "exited threads leave the registry"
        );
    }
}
