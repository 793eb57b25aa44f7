//! WAN links emulated in user space: a timed hold queue in front of a
//! transport's sends, for kernels without a netem qdisc.
//!
//! Every datagram a [`HoldQueue`] takes is first dropped with the link's loss
//! probability (from a seeded generator, so the draws replay), then given a
//! release time: its link's bandwidth (a token bucket per destination), then
//! the one-way delay plus or minus the jitter (uniform, never below zero).
//! It waits until then, and [`HoldQueue::release_due`] hands it on to the
//! socket. A link is one destination address.
//!
//! Order: a link stays FIFO. A datagram never leaves before one sent earlier
//! to the same destination (its release time is at least theirs), so jitter
//! spreads the delays but does not reorder; netem, by contrast, reorders
//! jittered packets unless told otherwise. So on a busy link (datagrams
//! closer together than the jitter's width) delays lean above the mean: a
//! datagram whose draw was short waits for the one before it. Datagrams to
//! different destinations leave in release order.
//!
//! Bounded: at most [`HOLD_DATAGRAMS_MAX`] datagrams and
//! [`HOLD_BYTES_MAX`] bytes held, at most [`LINKS_MAX`] links tracked; what
//! would pass a bound is dropped and counted ([`counter`]), like netem's
//! `limit`. Buffers of released datagrams are kept for reuse (at most
//! [`SPARE_BUFFERS_MAX`]), so a steady flow allocates nothing.
//!
//! The queue reads no clock: callers pass `now`, so its tests run on
//! invented times. The transport that owns it passes `Instant::now()`.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wire::control::{LINK_LOSS_PPM_MAX, LinkEmulation};

use crate::actor::Counters;
use crate::rng::Rng;

/// Most datagrams held at once (netem's default `limit` is 1,000; a 5 ms
/// delay at 1 M datagrams/s holds 5,000).
pub const HOLD_DATAGRAMS_MAX: usize = 16_384;

/// Most bytes held at once.
pub const HOLD_BYTES_MAX: usize = 64 << 20;

/// Most destinations tracked at once (only under jitter or a rate: a fixed
/// delay keeps each link FIFO without them). Links with nothing in flight
/// and a full bucket are forgotten when the table is full (they would
/// behave as new ones anyway).
pub const LINKS_MAX: usize = 4096;

/// A link's token bucket depth: this many bytes may leave back to back
/// before the rate paces them (two full-size Ethernet frames).
pub const RATE_BURST_BYTES: u64 = 3_000;

/// Released datagrams' buffers kept for reuse at most.
pub const SPARE_BUFFERS_MAX: usize = 1024;

/// Names of the hold queue's counters (merged into the transport's).
pub mod counter {
    /// Datagrams taken into the hold queue.
    pub const HELD: &str = "link emulation: datagrams held";
    /// Datagrams dropped by the emulated loss.
    pub const LOST: &str = "link emulation: lost";
    /// Datagrams dropped because the hold queue was full (datagrams or bytes).
    pub const QUEUE_FULL: &str = "link emulation: hold queue full";
    /// Datagrams dropped because [`super::LINKS_MAX`] busy links were tracked.
    pub const LINKS_FULL: &str = "link emulation: too many links";
}

/// The timed hold queue of one transport (see the module docs).
#[derive(Debug)]
pub struct HoldQueue {
    link: LinkEmulation,
    rng: Rng,
    held: BinaryHeap<Held>,
    held_bytes: usize,
    /// Orders datagrams of equal release time by arrival.
    next_seq: u64,
    links: HashMap<SocketAddr, Link>,
    spare: Vec<Vec<u8>>,
    counters: Counters,
}

/// What is known of one destination.
#[derive(Clone, Copy, Debug)]
struct Link {
    /// The latest release time given to a datagram on this link: the next
    /// one leaves no earlier (FIFO).
    last_release: Instant,
    /// The token bucket in GCRA form: when the link will have sent
    /// everything given to it so far at its rate (its theoretical arrival
    /// time). A datagram may leave once this, after its own bytes, is within
    /// the bucket depth of now.
    paced_until: Instant,
}

#[derive(Debug)]
struct Held {
    release: Instant,
    seq: u64,
    to: SocketAddr,
    bytes: Vec<u8>,
}

impl HoldQueue {
    /// A queue emulating `link`, its draws seeded with `seed`.
    pub fn new(link: LinkEmulation, seed: u64) -> HoldQueue {
        HoldQueue {
            link,
            rng: Rng::new(seed),
            held: BinaryHeap::new(),
            held_bytes: 0,
            next_seq: 0,
            links: HashMap::new(),
            spare: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// What this queue emulates.
    pub fn link(&self) -> &LinkEmulation {
        &self.link
    }

    /// Takes a datagram sent at `now` to `to`: holds it until its release
    /// time, or drops it (emulated loss, or a bound reached) and counts why.
    pub fn push(&mut self, now: Instant, to: SocketAddr, bytes: &[u8]) {
        if self.link.loss_ppm > 0
            && self.rng.below(u64::from(LINK_LOSS_PPM_MAX)) < u64::from(self.link.loss_ppm)
        {
            self.counters.add(counter::LOST, 1);
            return;
        }
        if self.held.len() >= HOLD_DATAGRAMS_MAX || self.held_bytes + bytes.len() > HOLD_BYTES_MAX {
            self.counters.add(counter::QUEUE_FULL, 1);
            return;
        }
        let delay = self.draw_delay();
        // A fixed delay keeps every link FIFO by itself (clocks only move
        // forward) and nothing paces: no link needs to be looked up.
        let release = if self.link.jitter_us == 0 && self.link.rate_bps.is_none() {
            now + delay
        } else {
            match self.link_release(now, to, bytes.len(), delay) {
                Some(release) => release,
                None => {
                    self.counters.add(counter::LINKS_FULL, 1);
                    return;
                }
            }
        };
        let mut buffer = self.spare.pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(bytes);
        self.held_bytes += bytes.len();
        self.held.push(Held {
            release,
            seq: self.next_seq,
            to,
            bytes: buffer,
        });
        self.next_seq += 1;
        self.counters.add(counter::HELD, 1);
    }

    /// The release time of a datagram of `len` bytes sent at `now` to `to`
    /// with `delay` drawn: its link's pacing, then the delay, and never
    /// before the link's previous datagram. `None` when `to` is a new link
    /// and [`LINKS_MAX`] busy ones are tracked.
    fn link_release(
        &mut self,
        now: Instant,
        to: SocketAddr,
        len: usize,
        delay: Duration,
    ) -> Option<Instant> {
        if !self.links.contains_key(&to) && self.links.len() >= LINKS_MAX {
            self.links
                .retain(|_, link| link.last_release > now || link.paced_until > now);
            if self.links.len() >= LINKS_MAX {
                return None;
            }
        }
        let link = self.links.entry(to).or_insert(Link {
            last_release: now,
            paced_until: now,
        });
        let leaves = match self.link.rate_bps {
            None => now,
            Some(rate) => {
                let cost = transmit_time(len as u64, rate);
                link.paced_until = link.paced_until.max(now) + cost;
                let burst = transmit_time(RATE_BURST_BYTES, rate);
                now.max(link.paced_until.checked_sub(burst).unwrap_or(now))
            }
        };
        let release = (leaves + delay).max(link.last_release);
        link.last_release = release;
        Some(release)
    }

    /// Hands every datagram due at `now` to `send`, in release order, and
    /// returns how many. Stops at the first error (the datagram that met it
    /// is gone).
    pub fn release_due<E>(
        &mut self,
        now: Instant,
        mut send: impl FnMut(SocketAddr, &[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut released = 0;
        while self.held.peek().is_some_and(|held| held.release <= now) {
            let held = self.held.pop().expect("peeked");
            self.held_bytes -= held.bytes.len();
            released += 1;
            let result = send(held.to, &held.bytes);
            if self.spare.len() < SPARE_BUFFERS_MAX {
                self.spare.push(held.bytes);
            }
            result?;
        }
        Ok(released)
    }

    /// When the next datagram is due; `None` when nothing is held.
    pub fn next_release(&self) -> Option<Instant> {
        self.held.peek().map(|held| held.release)
    }

    /// Datagrams held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.held_bytes
    }

    /// Held, lost and dropped datagrams (names in [`counter`]).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The delay of one datagram: the link's, plus or minus up to its
    /// jitter, never below zero.
    fn draw_delay(&mut self) -> Duration {
        let base = self.link.delay_us;
        let jitter = self.link.jitter_us;
        let us = if jitter == 0 {
            base
        } else {
            (base + self.rng.between(0, 2 * jitter)).saturating_sub(jitter)
        };
        Duration::from_micros(us)
    }
}

/// How long `bytes` take at `rate_bps`.
fn transmit_time(bytes: u64, rate_bps: u64) -> Duration {
    let nanos = u128::from(bytes) * 8 * 1_000_000_000 / u128::from(rate_bps.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The heap pops the earliest release first, then the earliest pushed.
impl Ord for Held {
    fn cmp(&self, other: &Held) -> Ordering {
        (other.release, other.seq).cmp(&(self.release, self.seq))
    }
}

impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        (self.release, self.seq) == (other.release, other.seq)
    }
}

impl Eq for Held {}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn delay(delay_us: u64, jitter_us: u64) -> LinkEmulation {
        LinkEmulation {
            delay_us,
            jitter_us,
            ..LinkEmulation::default()
        }
    }

    /// Everything due at `now`, as `(destination, first byte)`.
    fn due(queue: &mut HoldQueue, now: Instant) -> Vec<(u16, u8)> {
        let mut out = Vec::new();
        queue
            .release_due(now, |to, bytes| {
                out.push((to.port(), bytes[0]));
                Ok::<_, Infallible>(())
            })
            .unwrap();
        out
    }

    #[test]
    fn a_datagram_waits_the_delay_then_leaves_once() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut q = HoldQueue::new(delay(5_000, 0), 1);
        q.push(t0, addr(1), &[1; 100]);
        q.push(t0 + ms(1), addr(2), &[2; 50]);
        assert_eq!((q.len(), q.bytes()), (2, 150));
        assert_eq!(q.next_release(), Some(t0 + ms(5)));
        assert!(due(&mut q, t0 + ms(4)).is_empty(), "not yet");
        assert_eq!(due(&mut q, t0 + ms(5)), vec![(1, 1)]);
        assert_eq!(q.next_release(), Some(t0 + ms(6)));
        assert_eq!(due(&mut q, t0 + ms(100)), vec![(2, 2)]);
        assert!(due(&mut q, t0 + ms(200)).is_empty(), "released once");
        assert_eq!((q.len(), q.bytes(), q.next_release()), (0, 0, None));
        assert_eq!(q.counters().get(counter::HELD), 2);
    }

    /// Jitter spreads the delays over delay ± jitter, but a link stays FIFO:
    /// what was sent later to a destination never leaves before what was
    /// sent earlier to it. Across destinations, release order is time order.
    #[test]
    fn jitter_keeps_each_link_in_order() {
        let t0 = Instant::now();
        let mut q = HoldQueue::new(delay(5_000, 2_000), 42);
        for i in 0..200u32 {
            let now = t0 + Duration::from_micros(u64::from(i) * 100);
            q.push(now, addr(1 + (i % 3) as u16), &[i as u8]);
        }
        let mut order = Vec::new();
        q.release_due(t0 + Duration::from_secs(1), |to, bytes| {
            order.push((to.port(), bytes[0]));
            Ok::<_, Infallible>(())
        })
        .unwrap();
        assert_eq!(order.len(), 200);
        for port in 1..=3u16 {
            let sent: Vec<u8> = order.iter().filter(|o| o.0 == port).map(|o| o.1).collect();
            let mut sorted = sent.clone();
            sorted.sort_unstable();
            assert_eq!(sent, sorted, "link {port} is FIFO");
        }
        assert_ne!(
            order.iter().map(|o| o.1).collect::<Vec<_>>(),
            (0..200).collect::<Vec<u8>>(),
            "across links, jitter reorders"
        );
    }

    /// Datagrams further apart than the jitter's width are never held back
    /// by the one before: each is held delay ± jitter, spread on both sides.
    /// (Closer together, FIFO holds some a little longer than their draw.)
    #[test]
    fn jitter_spreads_the_delay_both_ways() {
        let t0 = Instant::now();
        let mut q = HoldQueue::new(delay(5_000, 2_000), 42);
        let mut below = 0;
        let mut above = 0;
        for i in 0..200u64 {
            let now = t0 + Duration::from_micros(i * 5_000);
            q.push(now, addr(1), &[0]);
            let held = q.next_release().unwrap() - now;
            assert!(held >= Duration::from_micros(3_000), "{held:?}");
            assert!(held <= Duration::from_micros(7_000), "{held:?}");
            below += usize::from(held < Duration::from_micros(4_000));
            above += usize::from(held > Duration::from_micros(6_000));
            assert_eq!(due(&mut q, now + held).len(), 1);
        }
        // A quarter of a uniform draw on each side: 50 of 200 expected.
        assert!(below > 25 && above > 25, "{below} below, {above} above");
    }

    #[test]
    fn bounds_drop_and_count() {
        let t0 = Instant::now();
        let mut q = HoldQueue::new(delay(1_000, 0), 1);
        for _ in 0..HOLD_DATAGRAMS_MAX + 10 {
            q.push(t0, addr(1), &[0; 8]);
        }
        assert_eq!(q.len(), HOLD_DATAGRAMS_MAX);
        assert_eq!(q.counters().get(counter::QUEUE_FULL), 10);

        let mut q = HoldQueue::new(delay(1_000, 0), 1);
        let big = vec![0u8; 60_000];
        let fit = HOLD_BYTES_MAX / big.len();
        for _ in 0..fit + 3 {
            q.push(t0, addr(1), &big);
        }
        assert_eq!(q.len(), fit);
        assert!(q.bytes() <= HOLD_BYTES_MAX);
        assert_eq!(q.counters().get(counter::QUEUE_FULL), 3);
        // Releasing makes room again.
        assert_eq!(due(&mut q, t0 + Duration::from_millis(1)).len(), fit);
        q.push(t0, addr(1), &big);
        assert_eq!(q.len(), 1);

        // Links (tracked under jitter or a rate): busy ones are kept, so a
        // new one is refused; once they are idle they are forgotten and a
        // new one is taken.
        let mut q = HoldQueue::new(delay(1_000, 1), 1);
        for port in 0..LINKS_MAX as u16 {
            q.push(t0, addr(port + 1), &[0]);
        }
        q.push(t0, addr(60_000), &[0]);
        assert_eq!(q.counters().get(counter::LINKS_FULL), 1);
        let later = t0 + Duration::from_millis(3);
        assert_eq!(due(&mut q, later).len(), LINKS_MAX);
        q.push(later, addr(60_000), &[0]);
        assert_eq!(q.counters().get(counter::LINKS_FULL), 1);
        assert_eq!(q.len(), 1);
        assert!(q.links.len() <= LINKS_MAX);
    }

    /// Loss from a seeded generator: about the asked share, and the same
    /// datagrams lost for the same seed.
    #[test]
    fn loss_rate_is_about_right_and_replays() {
        let t0 = Instant::now();
        let lossy = LinkEmulation {
            loss_ppm: 100_000, // 10%
            ..LinkEmulation::default()
        };
        let sent = 20_000;
        let run = |seed| {
            let mut q = HoldQueue::new(lossy, seed);
            let mut kept = Vec::new();
            for _ in 0..sent {
                q.push(t0, addr(1), &[0]);
                kept.push(q.len());
                q.release_due(t0, |_, _| Ok::<_, Infallible>(())).unwrap();
            }
            (q.counters().get(counter::LOST), kept)
        };
        let (lost, kept) = run(9);
        // 10% of 20,000 is 2,000 with a standard deviation of about 42.
        assert!((1_800..=2_200).contains(&lost), "{lost} lost");
        assert_eq!(run(9), (lost, kept.clone()), "same seed, same losses");
        assert_ne!(run(10).1, kept, "another seed, other losses");
        // No delay: a kept datagram is due at once.
        let mut q = HoldQueue::new(lossy, 9);
        q.push(t0, addr(1), &[5]);
        q.push(t0, addr(1), &[6]);
        assert!(!due(&mut q, t0).is_empty());
        let mut all = HoldQueue::new(
            LinkEmulation {
                loss_ppm: LINK_LOSS_PPM_MAX,
                ..LinkEmulation::default()
            },
            1,
        );
        for _ in 0..100 {
            all.push(t0, addr(1), &[0]);
        }
        assert_eq!(all.counters().get(counter::LOST), 100);
    }

    /// At 8 Mbit/s a 1,000-byte datagram takes 1 ms: a burst of 100 leaves
    /// over about 100 ms, less the bucket's depth, per link; another link
    /// has its own bucket.
    #[test]
    fn bandwidth_paces_each_link() {
        let t0 = Instant::now();
        let paced = LinkEmulation {
            rate_bps: Some(8_000_000),
            ..LinkEmulation::default()
        };
        let mut q = HoldQueue::new(paced, 1);
        for _ in 0..100 {
            q.push(t0, addr(1), &[1; 1000]);
        }
        q.push(t0, addr(2), &[2; 1000]);
        let ms = Duration::from_millis;
        let first = due(&mut q, t0);
        // The bucket lets its depth (3,000 bytes) through at once, on each link.
        assert_eq!(first.iter().filter(|d| d.0 == 1).count(), 3);
        assert!(first.contains(&(2, 2)), "link 2 has its own bucket");
        let mut total = first.iter().filter(|d| d.0 == 1).count();
        let mut by_50 = 0;
        for step in 1..=200 {
            total += due(&mut q, t0 + ms(step)).len();
            if step == 50 {
                by_50 = total;
            }
        }
        assert_eq!(total, 100);
        // 1 ms each after the first three: 53 by 50 ms, all by 97 ms.
        assert_eq!(by_50, 53);
        // And after an idle second the bucket is full again.
        let later = t0 + Duration::from_secs(1);
        for _ in 0..5 {
            q.push(later, addr(1), &[1; 1000]);
        }
        assert_eq!(due(&mut q, later).len(), 3);
    }
}
