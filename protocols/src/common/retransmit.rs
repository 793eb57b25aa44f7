//! When a client retransmits: after twice its usual latency, then backing
//! off.
//!
//! A closed-loop client sends a request and waits. Retransmitting at a
//! fixed interval works while the service is quick, and under overload it
//! is what makes overload worse: requests queued behind others at a busy
//! server are taken for lost, and copies of them join the queue. So
//! [`Retransmit`] waits, before the first retransmission of a request,
//! twice the client's smoothed latency (smoothed as TCP smooths round-trip
//! times: each new sample weighs 1/8), within a floor and a cap; and each
//! further retransmission of the same request twice as long as the one
//! before, up to the cap. A lost request is still resent after the floor
//! when the service is quick; a slow one is not flooded.
//!
//! It keeps no timer itself: the client arms its own with the durations
//! [`Retransmit::first`] and [`Retransmit::backoff`] return, and tells it
//! when an operation begins and completes, which is what the latency is
//! measured between (a registration, or anything else a client does first,
//! counts into its operation's latency).

use std::time::Duration;

use runtime::Time;

/// A client's retransmission schedule; see the module docs.
#[derive(Clone, Debug)]
pub struct Retransmit {
    /// The first retransmission of a request waits at least this long.
    floor: Duration,
    /// No wait is longer (at least `floor`).
    cap: Duration,
    /// Smoothed latency of the client's operations; zero before the first.
    latency: Duration,
    /// The wait armed last.
    wait: Duration,
    /// When the operation in progress began.
    began: Time,
}

impl Retransmit {
    /// Waits of at least `floor` (which must be positive) and at most
    /// `cap` (raised to `floor` if below it).
    pub fn new(floor: Duration, cap: Duration) -> Retransmit {
        assert!(floor > Duration::ZERO, "a retransmission waits");
        Retransmit {
            floor,
            cap: cap.max(floor),
            latency: Duration::ZERO,
            wait: floor,
            began: Time::ZERO,
        }
    }

    /// An operation begins at `now`: its latency runs from here.
    pub fn begin(&mut self, now: Time) {
        self.began = now;
    }

    /// A request goes out for the first time: how long to wait before
    /// retransmitting it. Twice the smoothed latency, within the floor and
    /// the cap.
    pub fn first(&mut self) -> Duration {
        self.wait = (self.latency * 2).clamp(self.floor, self.cap);
        self.wait
    }

    /// The request was retransmitted (its wait ran out): how long to wait
    /// before the next retransmission. Twice the last wait, up to the cap.
    pub fn backoff(&mut self) -> Duration {
        self.wait = (self.wait * 2).min(self.cap);
        self.wait
    }

    /// The operation that began last completed at `now`: one latency
    /// sample.
    pub fn complete(&mut self, now: Time) {
        let sample = now.since(self.began);
        self.latency = if self.latency.is_zero() {
            sample
        } else {
            (self.latency * 7 + sample) / 8
        };
    }

    /// The smoothed latency; zero before the first operation completed.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// The wait armed last.
    pub fn wait(&self) -> Duration {
        self.wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(ms: u64) -> Time {
        Time::ZERO + MS * ms as u32
    }

    #[test]
    fn the_first_wait_is_twice_the_latency_within_the_floor_and_the_cap() {
        let mut r = Retransmit::new(30 * MS, 500 * MS);
        // No sample yet: the floor.
        assert_eq!(r.first(), 30 * MS);
        r.begin(at(0));
        r.complete(at(100));
        assert_eq!(r.latency(), 100 * MS);
        assert_eq!(r.first(), 200 * MS);
        // Quick operations bring it down to the floor, slowly.
        for i in 0..100 {
            r.begin(at(1000 + 10 * i));
            r.complete(at(1000 + 10 * i + 1));
        }
        assert_eq!(r.first(), 30 * MS);
        // A very slow one is capped.
        let mut slow = Retransmit::new(30 * MS, 500 * MS);
        slow.begin(at(0));
        slow.complete(at(10_000));
        assert_eq!(slow.first(), 500 * MS);
    }

    #[test]
    fn the_smoothed_latency_weighs_each_sample_an_eighth() {
        let mut r = Retransmit::new(MS, 500 * MS);
        r.begin(at(0));
        r.complete(at(80));
        r.begin(at(100));
        r.complete(at(260));
        assert_eq!(r.latency(), 90 * MS);
    }

    #[test]
    fn retransmissions_back_off_exponentially_up_to_the_cap() {
        let mut r = Retransmit::new(30 * MS, 500 * MS);
        assert_eq!(r.first(), 30 * MS);
        let waits: Vec<Duration> = (0..6).map(|_| r.backoff()).collect();
        assert_eq!(
            waits,
            [60, 120, 240, 480, 500, 500].map(|ms| MS * ms).to_vec()
        );
        // The next request starts from the floor again.
        assert_eq!(r.first(), 30 * MS);
        assert_eq!(r.wait(), 30 * MS);
    }

    #[test]
    fn a_cap_below_the_floor_is_the_floor() {
        let mut r = Retransmit::new(30 * MS, 10 * MS);
        assert_eq!(r.first(), 30 * MS);
        assert_eq!(r.backoff(), 30 * MS);
    }
}
