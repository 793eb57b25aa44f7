//! Byzantine behaviour for the simulator: what a faulty node does to the
//! datagrams it sends.
//!
//! - [`Byzantine`]: behaviours that know nothing of the protocol (silence,
//!   random byte flips, garbage, duplicates).
//! - [`Adversary`]: a protocol-aware Byzantine replica. It holds the
//!   replica's real key and rewrites the messages the replica was about to
//!   send field by field ([`wire::fields`]): numbers pushed to extremes or one
//!   step into the future, ids and digests swapped for ones it has seen,
//!   lists with an element dropped, repeated or swapped. What it changes it
//!   signs again (and MACs again, for what carries a MAC per replica, given
//!   the keys it shares with them: [`Adversary::with_mac_keys`]), so the lie
//!   is well formed and correctly authenticated and reaches the handler it
//!   is aimed at. It also replays old datagrams (its own and
//!   those it received), and tells each destination something different (a
//!   datagram to all replicas is rewritten for each one apart). In the
//!   spirit of ByzzFuzz (Winter et al.): small-scope mutations of real
//!   messages find the bugs random bytes never reach.
//! - [`Noise`]: a stranger that sends random datagrams.

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use bincode::{Decode, Encode};
use wire::fields::{Fields, ListEdit, Visitor};
use wire::{Addr, ClientId, Digest, MESSAGE_SIZE_MAX, MacKey, ReplicaId, Signer};

use crate::actor::{Counters, Dest};
use crate::node::{Packet, Process};
use crate::rng::Rng;
use crate::time::Time;

/// What a Byzantine node does to each datagram it sends. Called once per
/// destination (a datagram to all replicas is offered once for each), so a
/// tamperer can equivocate: tell different replicas different things.
pub trait Tamper {
    /// `bytes` was about to go to `to`. Push what goes out instead (to any
    /// destination, any number of datagrams, or none) onto `out`.
    fn tamper(&mut self, rng: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>);

    /// A datagram from `from` reached the Byzantine node: material for
    /// replays and mutations.
    fn observe(&mut self, from: Addr, bytes: &[u8]) {
        let _ = (from, bytes);
    }

    /// Whether the Byzantine node lets a datagram from `from` in at all (a
    /// node that pretends not to hear some peers or clients).
    fn accept(&mut self, from: Addr, bytes: &[u8]) -> bool {
        let _ = (from, bytes);
        true
    }

    /// What the tamperer did since the last call, for the fault counts and
    /// the trace.
    fn take_report(&mut self) -> TamperReport {
        TamperReport::default()
    }
}

impl<F: FnMut(&mut Rng, Addr, Vec<u8>, &mut Vec<(Addr, Vec<u8>)>)> Tamper for F {
    fn tamper(&mut self, rng: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>) {
        self(rng, to, bytes, out);
    }
}

/// What a tamperer did: datagrams rewritten field by field, datagrams
/// replayed, and a line for each, for the trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TamperReport {
    pub mutated: u64,
    pub replayed: u64,
    pub notes: Vec<String>,
}

/// Ready-made Byzantine behaviours for [`crate::sim::Simulator::set_byzantine`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Byzantine {
    /// Sends nothing at all.
    Silent,
    /// Overwrites between one and `flips` (at least one) random bytes of
    /// each datagram.
    Corrupt { flips: usize },
    /// Sends each datagram `copies` times (at least once).
    Duplicate { copies: usize },
    /// Replaces each datagram with random bytes of a random length, sometimes
    /// over the size limit.
    Garbage,
}

impl Tamper for Byzantine {
    fn tamper(
        &mut self,
        rng: &mut Rng,
        to: Addr,
        mut bytes: Vec<u8>,
        out: &mut Vec<(Addr, Vec<u8>)>,
    ) {
        match *self {
            Byzantine::Silent => {}
            Byzantine::Corrupt { flips } => {
                if !bytes.is_empty() {
                    for _ in 0..rng.between(1, flips.max(1) as u64) {
                        let i = rng.below(bytes.len() as u64) as usize;
                        bytes[i] = rng.next_u64() as u8;
                    }
                }
                out.push((to, bytes));
            }
            Byzantine::Duplicate { copies } => {
                for _ in 1..copies {
                    out.push((to, bytes.clone()));
                }
                out.push((to, bytes));
            }
            Byzantine::Garbage => out.push((to, random_datagram(rng))),
        }
    }
}

/// Random bytes: mostly short, sometimes empty, now and then over the limit.
pub fn random_datagram(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(20) {
        0 => 0,
        1 => MESSAGE_SIZE_MAX + 1 + rng.below(100) as usize,
        _ => rng.between(1, 300) as usize,
    };
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    bytes
}

/// How often an [`Adversary`] does what.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tactics {
    /// Probability that a datagram is rewritten (one to three fields).
    pub mutate: f64,
    /// Probability that, besides what it sends, it replays an old datagram
    /// to the same destination.
    pub replay: f64,
    /// Probability that a datagram is not sent to this destination at all.
    pub withhold: f64,
}

impl Tactics {
    /// A mix drawn from `rng`: some adversaries mutate most of what they
    /// send, some a little, some mostly replay or withhold.
    pub fn draw(rng: &mut Rng) -> Tactics {
        let pick =
            |rng: &mut Rng, choices: &[f64]| choices[rng.below(choices.len() as u64) as usize];
        Tactics {
            mutate: pick(rng, &[0.05, 0.2, 0.5, 0.9]),
            replay: pick(rng, &[0.0, 0.05, 0.2]),
            withhold: pick(rng, &[0.0, 0.0, 0.1, 0.3]),
        }
    }
}

/// Datagrams an [`Adversary`] keeps for replays.
const HISTORY_MAX: usize = 64;
/// Values of each kind an [`Adversary`] remembers to put where they do not
/// belong.
const DICTIONARY_MAX: usize = 64;

/// A protocol-aware Byzantine node for messages of type `M`: see the module
/// docs. `signer` is the node's own key (messages it cannot sign are still
/// rewritten, and are then merely badly signed).
pub struct Adversary<M> {
    signer: Option<Signer>,
    /// The MAC keys the node shares with each replica (see
    /// [`Visitor::mac_keys`]).
    mac_keys: Vec<MacKey>,
    /// The group's size: replica ids to pick from (and a few beyond it).
    replicas: u8,
    tactics: Tactics,
    history: VecDeque<Vec<u8>>,
    dictionary: Dictionary,
    report: TamperReport,
    _message: PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for Adversary<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Adversary")
            .field("tactics", &self.tactics)
            .finish_non_exhaustive()
    }
}

impl<M: Decode<()> + Encode + Fields> Adversary<M> {
    pub fn new(signer: Option<Signer>, replicas: u8, tactics: Tactics) -> Adversary<M> {
        Adversary {
            signer,
            mac_keys: Vec::new(),
            replicas,
            tactics,
            history: VecDeque::new(),
            dictionary: Dictionary::default(),
            report: TamperReport::default(),
            _message: PhantomData,
        }
    }

    /// The MAC keys the node shares with each replica, in replica order:
    /// what it MACs for the group it authenticates again when it changes it.
    pub fn with_mac_keys(mut self, keys: Vec<MacKey>) -> Adversary<M> {
        self.mac_keys = keys;
        self
    }

    fn remember(&mut self, bytes: &[u8]) {
        if self.history.len() == HISTORY_MAX {
            self.history.pop_front();
        }
        self.history.push_back(bytes.to_vec());
        if let Ok(mut msg) = wire::decode::<M>(bytes) {
            msg.visit(&mut Harvest(&mut self.dictionary));
        }
    }

    /// `bytes` with one to three fields rewritten, if it decodes and
    /// re-encodes within the size limit.
    fn mutate(&self, rng: &mut Rng, bytes: &[u8]) -> Option<(Vec<u8>, u64)> {
        let mut msg = wire::decode::<M>(bytes).ok()?;
        let mut counter = Count(0);
        msg.visit(&mut counter);
        if counter.0 == 0 {
            return None;
        }
        let rounds = if rng.chance(0.7) {
            1
        } else {
            rng.between(2, 3)
        };
        let mut changes = 0;
        for _ in 0..rounds {
            let target = rng.below(counter.0);
            let mut mutate = Mutate {
                rng,
                target,
                seen: 0,
                changes: 0,
                signer: self.signer.as_ref(),
                mac_keys: &self.mac_keys,
                replicas: self.replicas,
                dictionary: &self.dictionary,
            };
            msg.visit(&mut mutate);
            changes += mutate.changes;
        }
        if changes == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len());
        wire::encode(&msg, &mut out).ok()?;
        Some((out, changes))
    }
}

impl<M: Decode<()> + Encode + Fields> Tamper for Adversary<M> {
    fn tamper(&mut self, rng: &mut Rng, to: Addr, bytes: Vec<u8>, out: &mut Vec<(Addr, Vec<u8>)>) {
        if rng.chance(self.tactics.replay) && !self.history.is_empty() {
            let old = self.history[rng.below(self.history.len() as u64) as usize].clone();
            self.report.replayed += 1;
            self.report
                .notes
                .push(format!("replays an old datagram to {to}"));
            out.push((to, old));
        }
        self.remember(&bytes);
        if rng.chance(self.tactics.withhold) {
            self.report
                .notes
                .push(format!("withholds a datagram from {to}"));
            return;
        }
        if rng.chance(self.tactics.mutate)
            && let Some((mutated, changes)) = self.mutate(rng, &bytes)
        {
            self.report.mutated += 1;
            self.report.notes.push(format!(
                "sends {to} a datagram with {changes} field{} rewritten",
                if changes == 1 { "" } else { "s" }
            ));
            out.push((to, mutated));
            return;
        }
        out.push((to, bytes));
    }

    fn observe(&mut self, _from: Addr, bytes: &[u8]) {
        self.remember(bytes);
    }

    fn take_report(&mut self) -> TamperReport {
        std::mem::take(&mut self.report)
    }
}

/// Values seen in messages, to be put back where they do not belong.
#[derive(Debug, Default)]
struct Dictionary {
    numbers: Vec<u64>,
    digests: Vec<Digest>,
    clients: Vec<ClientId>,
}

fn keep<T: PartialEq>(list: &mut Vec<T>, value: T) {
    if list.contains(&value) {
        return;
    }
    if list.len() == DICTIONARY_MAX {
        list.remove(0);
    }
    list.push(value);
}

/// Fills the dictionary; changes nothing.
struct Harvest<'a>(&'a mut Dictionary);

impl Visitor for Harvest<'_> {
    fn number(&mut self, value: &mut u64) {
        keep(&mut self.0.numbers, *value);
    }
    fn replica(&mut self, _: &mut ReplicaId) {}
    fn client(&mut self, value: &mut ClientId) {
        keep(&mut self.0.clients, *value);
    }
    fn digest(&mut self, value: &mut Digest) {
        keep(&mut self.0.digests, *value);
    }
    fn bytes(&mut self, _: &mut Vec<u8>) {}
    fn flag(&mut self, _: &mut bool) {}
    fn list(&mut self, _: usize) -> ListEdit {
        ListEdit::Keep
    }
    fn changes(&self) -> u64 {
        0
    }
    fn signer(&self) -> Option<&Signer> {
        None
    }
}

/// Counts the fields a [`Mutate`] could pick.
struct Count(u64);

impl Visitor for Count {
    fn number(&mut self, _: &mut u64) {
        self.0 += 1;
    }
    fn replica(&mut self, _: &mut ReplicaId) {
        self.0 += 1;
    }
    fn client(&mut self, _: &mut ClientId) {
        self.0 += 1;
    }
    fn digest(&mut self, _: &mut Digest) {
        self.0 += 1;
    }
    fn bytes(&mut self, _: &mut Vec<u8>) {
        self.0 += 1;
    }
    fn flag(&mut self, _: &mut bool) {
        self.0 += 1;
    }
    fn list(&mut self, _: usize) -> ListEdit {
        self.0 += 1;
        ListEdit::Keep
    }
    fn changes(&self) -> u64 {
        0
    }
    fn signer(&self) -> Option<&Signer> {
        None
    }
}

/// Rewrites the `target`-th field it visits (in [`Count`]'s order).
struct Mutate<'a> {
    rng: &'a mut Rng,
    target: u64,
    seen: u64,
    changes: u64,
    signer: Option<&'a Signer>,
    mac_keys: &'a [MacKey],
    replicas: u8,
    dictionary: &'a Dictionary,
}

impl Mutate<'_> {
    /// Whether the field being visited is the one to change.
    fn hit(&mut self) -> bool {
        let hit = self.seen == self.target;
        self.seen += 1;
        if hit {
            self.changes += 1;
        }
        hit
    }
}

/// A random element of `from`, if it has any.
fn pick<T: Copy>(rng: &mut Rng, from: &[T]) -> Option<T> {
    (!from.is_empty()).then(|| from[rng.below(from.len() as u64) as usize])
}

impl Visitor for Mutate<'_> {
    fn number(&mut self, value: &mut u64) {
        if !self.hit() {
            return;
        }
        let v = *value;
        *value = match self.rng.below(12) {
            0 => 0,
            1 => v.saturating_add(1),
            // Into the future: a later view, a sequence number ahead.
            2 => v.saturating_add(self.rng.between(2, 40)),
            3 => v.saturating_sub(self.rng.between(1, 3)),
            4 => u64::MAX,
            5 => u64::MAX - self.rng.below(2),
            6 => u64::from(u32::MAX) + self.rng.below(2),
            7 => v.saturating_mul(2),
            8 => 1 << 63,
            9 => pick(self.rng, &self.dictionary.numbers).unwrap_or(v ^ 1),
            10 => self.rng.below(1000),
            _ => self.rng.next_u64(),
        };
    }

    fn replica(&mut self, value: &mut ReplicaId) {
        if !self.hit() {
            return;
        }
        *value = match self.rng.below(4) {
            0 => ReplicaId(u8::MAX),
            _ => ReplicaId(self.rng.below(u64::from(self.replicas) + 2) as u8),
        };
    }

    fn client(&mut self, value: &mut ClientId) {
        if !self.hit() {
            return;
        }
        *value = match self.rng.below(3) {
            0 => ClientId(u64::MAX),
            1 => ClientId(self.rng.below(16)),
            _ => pick(self.rng, &self.dictionary.clients).unwrap_or(ClientId(value.0 ^ 1)),
        };
    }

    fn digest(&mut self, value: &mut Digest) {
        if !self.hit() {
            return;
        }
        *value = match self.rng.below(3) {
            0 => Digest::default(),
            1 => pick(self.rng, &self.dictionary.digests).unwrap_or_default(),
            _ => {
                let mut bytes = [0; 32];
                self.rng.fill(&mut bytes);
                Digest(bytes)
            }
        };
    }

    fn bytes(&mut self, value: &mut Vec<u8>) {
        if !self.hit() {
            return;
        }
        match self.rng.below(4) {
            0 => value.clear(),
            1 if !value.is_empty() => {
                let len = self.rng.below(value.len() as u64) as usize;
                value.truncate(len);
            }
            2 if !value.is_empty() => {
                let i = self.rng.below(value.len() as u64) as usize;
                value[i] ^= 1 << self.rng.below(8);
            }
            _ => {
                let extra = self.rng.between(1, 64) as usize;
                let start = value.len();
                value.resize(start + extra, 0);
                self.rng.fill(&mut value[start..]);
            }
        }
    }

    fn flag(&mut self, value: &mut bool) {
        if self.hit() {
            *value = !*value;
        }
    }

    fn list(&mut self, len: usize) -> ListEdit {
        if !self.hit() {
            return ListEdit::Keep;
        }
        if len == 0 {
            self.changes -= 1; // Nothing to change in an empty list.
            return ListEdit::Keep;
        }
        let len = len as u64;
        match self.rng.below(4) {
            0 => ListEdit::Remove(self.rng.below(len) as usize),
            1 => ListEdit::Duplicate(self.rng.below(len) as usize),
            2 => ListEdit::Swap(self.rng.below(len) as usize, self.rng.below(len) as usize),
            _ => ListEdit::Clear,
        }
    }

    fn changes(&self) -> u64 {
        self.changes
    }

    fn signer(&self) -> Option<&Signer> {
        self.signer
    }

    fn mac_keys(&self) -> &[MacKey] {
        self.mac_keys
    }
}

/// A node that receives nothing useful and sends random datagrams to `target`
/// every `interval`: the network's idea of an attacker that does not know the
/// protocol.
#[derive(Debug)]
pub struct Noise {
    addr: Addr,
    target: Addr,
    interval: Duration,
    rng: Rng,
    next: Time,
    counters: Counters,
}

impl Noise {
    pub fn new(addr: Addr, target: Addr, interval: Duration, rng: Rng) -> Noise {
        assert!(
            interval > Duration::ZERO,
            "Noise with no interval would never let time pass"
        );
        Noise {
            addr,
            target,
            interval,
            rng,
            next: Time::ZERO,
            counters: Counters::default(),
        }
    }
}

impl Process for Noise {
    fn addr(&self) -> Addr {
        self.addr
    }

    fn start(&mut self, now: Time, _out: &mut Vec<Packet>) {
        self.next = now + self.interval;
    }

    fn on_packet(&mut self, _now: Time, _from: Addr, _bytes: &[u8], _out: &mut Vec<Packet>) {
        self.counters.add("noise: ignored", 1);
    }

    fn on_timers(&mut self, now: Time, out: &mut Vec<Packet>) {
        if now >= self.next {
            out.push(Packet {
                dest: Dest::To(self.target),
                bytes: random_datagram(&mut self.rng),
            });
            self.next = now + self.interval;
        }
    }

    fn next_deadline(&self) -> Option<Time> {
        Some(self.next)
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }
}
