//! Faults a running replica applies to itself on command (the runner's
//! fault schedule, through `wire::control::Fault`): a partition, added
//! processing delay, and Byzantine behaviour.
//!
//! - Partition: a drop filter in front of the replica's socket. Datagrams to
//!   or from a blocked address are neither sent nor handed on, and are
//!   counted under [`PARTITION_DROPS_COUNTER`]. It works the same on every
//!   host (loopback, namespaces, machines over ssh) and needs no packet
//!   filter in the kernel.
//! - Slow: the protocol stage sleeps this long after every message it
//!   handles.
//! - Byzantine: a [`Tamper`] (the simulator's interface) sees every datagram
//!   the replica sends, once per destination, and every one it receives; it
//!   decides what goes out instead. [`tamper_for`] builds the behaviours that
//!   know nothing of the protocol ([`Byzantine::Silent`],
//!   [`Byzantine::Corrupt`], [`Replay`]); an equivocator is the protocol's
//!   own [`crate::sim::Adversary`], which its kit builds.
//!
//! The hot path checks one flag ([`NodeFaults::active`]) per datagram; the
//! rest is read only while a fault is in force.
//!
//! The handle also carries what the protocol stage publishes for the
//! interval reports: the leader as the replica sees it and how far it
//! executed.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use wire::control::{Behaviour, PARTITION_DROPS_COUNTER};
use wire::{Addr, ClientId, ReplicaId};

use crate::actor::Counters;
use crate::rng::Rng;
use crate::sim::{Byzantine, Tamper};

/// Most bytes a corrupting replica overwrites in one datagram.
pub const CORRUPT_FLIPS_MAX: usize = 8;

/// Old datagrams a replaying replica keeps to send again.
pub const REPLAY_HISTORY_MAX: usize = 64;

/// Old datagrams a replaying replica sends besides each one it sends: a
/// flood, bounded to this factor of its own traffic.
pub const REPLAYS_PER_SEND: usize = 4;

/// Counter of datagrams a Byzantine replica's tamperer was offered.
pub const TAMPERED_COUNTER: &str = "fault: byzantine datagrams tampered";

/// Counter of datagrams a Byzantine replica sent in their place.
pub const TAMPER_SENT_COUNTER: &str = "fault: byzantine datagrams sent";

/// A tamperer the real runtime can hold (its threads share it).
pub type DeployTamper = Box<dyn Tamper + Send>;

/// Marks a published value as absent.
const NONE: u64 = u64::MAX;

/// The faults in force on one replica, and what it publishes about itself.
#[derive(Default)]
pub struct NodeFaults {
    /// Whether any fault is in force: the one check on the hot path.
    active: AtomicBool,
    blocked: RwLock<Vec<SocketAddr>>,
    slow_us: AtomicU64,
    tamper: Mutex<Option<(DeployTamper, Rng)>>,
    partition_drops: AtomicU64,
    tampered: AtomicU64,
    tamper_sent: AtomicU64,
    /// `NONE` + 1 encoded: 0 is absent, so `Default` means nothing known.
    leader: AtomicU64,
    executed: AtomicU64,
}

impl std::fmt::Debug for NodeFaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeFaults")
            .field("active", &self.active())
            .finish_non_exhaustive()
    }
}

impl NodeFaults {
    /// Whether any fault is in force.
    #[inline]
    pub fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Drops every datagram to or from `addrs` from now on (replacing any
    /// earlier set); an empty set heals.
    pub fn partition(&self, addrs: Vec<SocketAddr>) {
        *self.blocked.write().unwrap_or_else(PoisonError::into_inner) = addrs;
        self.update_active();
    }

    /// Sleeps `delay` after every message handled (zero: none).
    pub fn slow(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.slow_us.store(us, Ordering::Relaxed);
        self.update_active();
    }

    /// Tampers with every datagram through `tamper` from now on (`None`:
    /// honest again).
    pub fn set_tamper(&self, tamper: Option<DeployTamper>) {
        let seed = 0x0b12_a417 ^ self.tampered.load(Ordering::Relaxed);
        *self.tamper.lock().unwrap_or_else(PoisonError::into_inner) =
            tamper.map(|t| (t, Rng::new(seed)));
        self.update_active();
    }

    fn update_active(&self) {
        let active = !self
            .blocked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
            || self.slow_us.load(Ordering::Relaxed) > 0
            || self
                .tamper
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some();
        self.active.store(active, Ordering::SeqCst);
    }

    /// Whether a datagram to or from `peer` is cut off; counts it if so.
    pub fn blocks(&self, peer: SocketAddr) -> bool {
        if !self.active() {
            return false;
        }
        let blocked = self
            .blocked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&peer);
        if blocked {
            self.partition_drops.fetch_add(1, Ordering::Relaxed);
        }
        blocked
    }

    /// The delay to add after a message handled, if any.
    #[inline]
    pub fn slow_delay(&self) -> Option<Duration> {
        if !self.active() {
            return None;
        }
        match self.slow_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }

    /// A datagram from `peer` arrived: whether to hand it on. Cut off by a
    /// partition, or refused by a tamperer, it is dropped (and counted).
    pub fn accept(&self, peer: SocketAddr, replicas: &[SocketAddr], bytes: &[u8]) -> bool {
        if !self.active() {
            return true;
        }
        if self.blocks(peer) {
            return false;
        }
        let mut tamper = self.tamper.lock().unwrap_or_else(PoisonError::into_inner);
        match tamper.as_mut() {
            Some((tamper, _)) => {
                let from = addr_of(replicas, peer);
                tamper.observe(from, bytes);
                tamper.accept(from, bytes)
            }
            None => true,
        }
    }

    /// Sends `bytes` to `to` through `send`, unless a partition cuts `to`
    /// off, and through the tamperer while there is one: it may send
    /// nothing, something else, or several datagrams, to `to` or to another
    /// replica.
    pub fn send<E>(
        &self,
        to: SocketAddr,
        replicas: &[SocketAddr],
        bytes: &[u8],
        mut send: impl FnMut(SocketAddr, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if !self.active() {
            return send(to, bytes);
        }
        if self.blocks(to) {
            return Ok(());
        }
        let mut out = Vec::new();
        {
            let mut tamper = self.tamper.lock().unwrap_or_else(PoisonError::into_inner);
            match tamper.as_mut() {
                None => return send(to, bytes),
                Some((tamper, rng)) => {
                    self.tampered.fetch_add(1, Ordering::Relaxed);
                    tamper.tamper(rng, addr_of(replicas, to), bytes.to_vec(), &mut out);
                }
            }
        }
        for (dest, bytes) in out {
            let dest = match dest {
                Addr::Replica(ReplicaId(i)) => match replicas.get(usize::from(i)) {
                    Some(&addr) => addr,
                    None => continue,
                },
                // Clients are known only by the address at hand.
                Addr::Client(_) => to,
            };
            if self.blocks(dest) {
                continue;
            }
            self.tamper_sent.fetch_add(1, Ordering::Relaxed);
            send(dest, &bytes)?;
        }
        Ok(())
    }

    /// What the protocol stage publishes after each batch: the leader as
    /// the replica sees it, and how far it executed.
    pub fn publish(&self, leader: Option<ReplicaId>, executed: Option<u64>) {
        let encode = |v: Option<u64>| v.map_or(0, |v| v.min(NONE - 1) + 1);
        self.leader
            .store(encode(leader.map(|r| u64::from(r.0))), Ordering::Relaxed);
        self.executed.store(encode(executed), Ordering::Relaxed);
    }

    /// The leader last published.
    pub fn leader(&self) -> Option<u8> {
        match self.leader.load(Ordering::Relaxed) {
            0 => None,
            v => u8::try_from(v - 1).ok(),
        }
    }

    /// How far the replica had executed when it last published.
    pub fn executed(&self) -> Option<u64> {
        match self.executed.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v - 1),
        }
    }

    /// What the faults did, for the node's totals (only counters that are
    /// not zero).
    pub fn add_counters(&self, counters: &mut Counters) {
        for (name, value) in [
            (PARTITION_DROPS_COUNTER, &self.partition_drops),
            (TAMPERED_COUNTER, &self.tampered),
            (TAMPER_SENT_COUNTER, &self.tamper_sent),
        ] {
            let n = value.load(Ordering::Relaxed);
            if n > 0 {
                counters.add(name, n);
            }
        }
    }
}

/// The address `peer` stands for: a replica's if it is one, a client's
/// (unknown id) otherwise.
fn addr_of(replicas: &[SocketAddr], peer: SocketAddr) -> Addr {
    replicas
        .iter()
        .position(|&a| a == peer)
        .map_or(Addr::Client(ClientId(0)), |i| {
            Addr::Replica(ReplicaId(i as u8))
        })
}

/// The tamperer for `behaviour`, where it knows nothing of the protocol;
/// `None` for [`Behaviour::Equivocate`], which is the protocol's adversary
/// (its kit builds it).
pub fn tamper_for(behaviour: Behaviour) -> Option<DeployTamper> {
    match behaviour {
        Behaviour::Mute => Some(Box::new(Byzantine::Silent)),
        Behaviour::Corrupt => Some(Box::new(Byzantine::Corrupt {
            flips: CORRUPT_FLIPS_MAX,
        })),
        Behaviour::Replay => Some(Box::new(Replay::default())),
        Behaviour::Equivocate => None,
    }
}

/// Sends every datagram, and besides it up to [`REPLAYS_PER_SEND`] old
/// ones to the same destination, picked from the last
/// [`REPLAY_HISTORY_MAX`] it sent or received.
#[derive(Debug, Default)]
pub struct Replay {
    history: VecDeque<Vec<u8>>,
}

impl Replay {
    fn remember(&mut self, bytes: &[u8]) {
        if self.history.len() == REPLAY_HISTORY_MAX {
            self.history.pop_front();
        }
        self.history.push_back(bytes.to_vec());
    }
}

impl Tamper for Replay {
    fn tamper(&mut self, rng: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>) {
        if !self.history.is_empty() {
            for _ in 0..REPLAYS_PER_SEND {
                let old = &self.history[rng.below(self.history.len() as u64) as usize];
                out.push((to, old.clone()));
            }
        }
        self.remember(&bytes);
        out.push((to, bytes));
    }

    fn observe(&mut self, _from: Addr, bytes: &[u8]) {
        self.remember(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<SocketAddr> {
        (0..4)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
            .collect()
    }

    fn sent(faults: &NodeFaults, to: SocketAddr, bytes: &[u8]) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut out = Vec::new();
        faults
            .send::<()>(to, &addrs(), bytes, |a, b| {
                out.push((a, b.to_vec()));
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn a_partition_drops_both_ways_and_heals() {
        let faults = NodeFaults::default();
        let [a, b, ..] = addrs()[..] else {
            unreachable!()
        };
        assert!(!faults.active());
        faults.partition(vec![a]);
        assert!(faults.active());
        assert!(sent(&faults, a, b"x").is_empty());
        assert_eq!(sent(&faults, b, b"x"), [(b, b"x".to_vec())]);
        assert!(!faults.accept(a, &addrs(), b"x"));
        assert!(faults.accept(b, &addrs(), b"x"));
        let mut counters = Counters::default();
        faults.add_counters(&mut counters);
        assert_eq!(counters.get(PARTITION_DROPS_COUNTER), 2);
        faults.partition(Vec::new());
        assert!(!faults.active());
        assert_eq!(sent(&faults, a, b"x"), [(a, b"x".to_vec())]);
    }

    #[test]
    fn behaviours_mute_corrupt_and_replay() {
        let faults = NodeFaults::default();
        let to = addrs()[1];
        faults.set_tamper(tamper_for(Behaviour::Mute));
        assert!(sent(&faults, to, b"hello").is_empty());
        faults.set_tamper(tamper_for(Behaviour::Corrupt));
        let out = sent(&faults, to, &[0; 64]);
        assert_eq!(out.len(), 1);
        assert_ne!(out[0].1, vec![0; 64]);
        faults.set_tamper(tamper_for(Behaviour::Replay));
        assert_eq!(sent(&faults, to, b"first").len(), 1);
        let out = sent(&faults, to, b"second");
        assert_eq!(out.len(), 1 + REPLAYS_PER_SEND);
        assert!(out.iter().all(|(a, _)| *a == to));
        assert_eq!(out.last().unwrap().1, b"second");
        faults.set_tamper(None);
        assert!(!faults.active());
        assert!(tamper_for(Behaviour::Equivocate).is_none());
    }

    #[test]
    fn slow_and_published_values() {
        let faults = NodeFaults::default();
        assert_eq!(faults.slow_delay(), None);
        faults.slow(Duration::from_millis(2));
        assert_eq!(faults.slow_delay(), Some(Duration::from_millis(2)));
        faults.slow(Duration::ZERO);
        assert_eq!(faults.slow_delay(), None);
        assert_eq!((faults.leader(), faults.executed()), (None, None));
        faults.publish(Some(ReplicaId(2)), Some(0));
        assert_eq!((faults.leader(), faults.executed()), (Some(2), Some(0)));
    }
}
