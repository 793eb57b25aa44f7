//! Emulated WAN links in user space: what a node's transports add to every
//! datagram they send (one-way delay, jitter, loss, bandwidth), for machines
//! whose kernel has no netem qdisc. The runner fills one in every node's
//! [`NodeConfig`](super::NodeConfig) when it emulates the links this way;
//! the transport's hold queue (`runtime::net::link`) applies it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest one-way delay, and longest jitter, a link may add: 10 s (as the
/// runner's netem profiles).
pub const LINK_DELAY_US_MAX: u64 = 10_000_000;

/// Loss is in parts per million: this is all of them.
pub const LINK_LOSS_PPM_MAX: u32 = 1_000_000;

/// Slowest emulated link, bits per second (1 kbit/s: slower, a single
/// full-size datagram would take minutes).
pub const LINK_RATE_BPS_MIN: u64 = 1_000;

/// Fastest emulated link, bits per second (1 Tbit/s: beyond anything a
/// socket here sends).
pub const LINK_RATE_BPS_MAX: u64 = 1_000_000_000_000;

/// What every link from a node gets: each datagram it sends waits `delay_us`
/// (plus or minus up to `jitter_us`, uniform, never below zero) before it
/// leaves, is dropped with probability `loss_ppm` per million, and leaves no
/// faster than `rate_bps` allows on its link. A link is one destination
/// address. The default (all zero, no rate) emulates nothing: datagrams
/// leave at once, as without it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkEmulation {
    /// One-way delay added to every datagram, microseconds.
    pub delay_us: u64,
    /// Up to this much more or less delay, drawn per datagram.
    pub jitter_us: u64,
    /// Datagrams dropped per million sent, drawn per datagram.
    pub loss_ppm: u32,
    /// Each link's bandwidth, bits per second; `None`: unlimited.
    pub rate_bps: Option<u64>,
    /// Seeds the node's loss and jitter draws (each transport of the node
    /// derives its own stream from it), so a run's draws replay.
    pub seed: u64,
}

impl LinkEmulation {
    /// Whether this emulates nothing (no hold queue is needed).
    pub fn is_none(&self) -> bool {
        self.delay_us == 0 && self.jitter_us == 0 && self.loss_ppm == 0 && self.rate_bps.is_none()
    }

    /// Refuses values out of bounds, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.delay_us > LINK_DELAY_US_MAX {
            return Err(format!(
                "link: delay_us {} is above the maximum of {LINK_DELAY_US_MAX}",
                self.delay_us
            ));
        }
        if self.jitter_us > LINK_DELAY_US_MAX {
            return Err(format!(
                "link: jitter_us {} is above the maximum of {LINK_DELAY_US_MAX}",
                self.jitter_us
            ));
        }
        if self.loss_ppm > LINK_LOSS_PPM_MAX {
            return Err(format!(
                "link: loss_ppm {} is above {LINK_LOSS_PPM_MAX} (all datagrams)",
                self.loss_ppm
            ));
        }
        if let Some(rate) = self.rate_bps
            && !(LINK_RATE_BPS_MIN..=LINK_RATE_BPS_MAX).contains(&rate)
        {
            return Err(format!(
                "link: rate_bps {rate} is not in {LINK_RATE_BPS_MIN}..={LINK_RATE_BPS_MAX} \
                 (leave it out for no limit)"
            ));
        }
        Ok(())
    }
}

impl fmt::Display for LinkEmulation {
    /// `delay 5ms ±1ms, loss 0.1%, rate 100 Mbit/s`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut parts = Vec::new();
        if self.delay_us > 0 || self.jitter_us > 0 {
            let mut delay = format!("delay {}", micros_label(self.delay_us));
            if self.jitter_us > 0 {
                delay.push_str(&format!(" ±{}", micros_label(self.jitter_us)));
            }
            parts.push(delay);
        }
        if self.loss_ppm > 0 {
            parts.push(format!("loss {}%", f64::from(self.loss_ppm) / 10_000.0));
        }
        if let Some(rate) = self.rate_bps {
            parts.push(format!("rate {} Mbit/s", rate as f64 / 1e6));
        }
        f.write_str(&parts.join(", "))
    }
}

/// `5ms`, `1.5ms`, `250µs`.
fn micros_label(us: u64) -> String {
    if us >= 1000 {
        format!("{}ms", us as f64 / 1000.0)
    } else {
        format!("{us}µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_by_field() {
        assert!(LinkEmulation::default().is_none());
        assert_eq!(LinkEmulation::default().validate(), Ok(()));
        let wan = LinkEmulation {
            delay_us: 5_000,
            jitter_us: 1_000,
            loss_ppm: 1_000,
            rate_bps: Some(100_000_000),
            seed: 7,
        };
        assert_eq!(wan.validate(), Ok(()));
        assert_eq!(
            wan.to_string(),
            "delay 5ms ±1ms, loss 0.1%, rate 100 Mbit/s"
        );
        let at_bounds = LinkEmulation {
            delay_us: LINK_DELAY_US_MAX,
            jitter_us: LINK_DELAY_US_MAX,
            loss_ppm: LINK_LOSS_PPM_MAX,
            rate_bps: Some(LINK_RATE_BPS_MIN),
            seed: 0,
        };
        assert_eq!(at_bounds.validate(), Ok(()));
        let bad = [
            (
                LinkEmulation {
                    delay_us: LINK_DELAY_US_MAX + 1,
                    ..wan
                },
                "delay_us",
            ),
            (
                LinkEmulation {
                    jitter_us: LINK_DELAY_US_MAX + 1,
                    ..wan
                },
                "jitter_us",
            ),
            (
                LinkEmulation {
                    loss_ppm: LINK_LOSS_PPM_MAX + 1,
                    ..wan
                },
                "loss_ppm",
            ),
            (
                LinkEmulation {
                    rate_bps: Some(LINK_RATE_BPS_MIN - 1),
                    ..wan
                },
                "rate_bps",
            ),
            (
                LinkEmulation {
                    rate_bps: Some(LINK_RATE_BPS_MAX + 1),
                    ..wan
                },
                "rate_bps",
            ),
        ];
        for (link, field) in bad {
            let error = link.validate().unwrap_err();
            assert!(error.contains(field), "{error}");
        }
    }

    #[test]
    fn absent_fields_default_to_nothing_emulated() {
        let link: LinkEmulation = serde_json::from_str("{}").unwrap();
        assert!(link.is_none());
        let link: LinkEmulation = serde_json::from_str(r#"{"delay_us":5000}"#).unwrap();
        assert_eq!(link.delay_us, 5000);
        assert_eq!(link.rate_bps, None);
    }
}
