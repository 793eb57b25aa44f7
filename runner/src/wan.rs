//! Emulated WAN links for an experiment, and which mechanism applies them.
//!
//! The same profile (`--netem-delay`, `--netem-jitter`, `--netem-loss`,
//! `--netem-rate-mbit`: per node egress) is applied one of two ways:
//!
//! - [`WanMechanism::Netem`]: `tc netem` on each namespace's egress
//!   ([`crate::hosts::netns`]), on netns hosts whose kernel has the netem
//!   qdisc;
//! - [`WanMechanism::UserSpace`]: everywhere else (local hosts, ssh hosts, or
//!   namespaces on a kernel without netem), a timed hold queue in every
//!   node's transports (`runtime::net::link`), carried to each node in its
//!   `NodeConfig::link`. Replicas and clients both apply it to what they
//!   send, so, as with netem, a request and its reply cross two delays. It
//!   keeps each link FIFO under jitter (netem reorders), and it does not
//!   delay the runner's control traffic (netem does, on the node's egress).
//!
//! The experiment records both the profile and the mechanism
//! ([`crate::experiment::Experiment::wan`]), so `results.json` and the setup
//! line say which one was in use.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::control::{LINK_RATE_BPS_MAX, LinkEmulation};

use crate::hosts::netns::NetemProfile;

/// Seeds the nodes' loss and jitter draws (node `i` gets `WAN_SEED ^ i`), so
/// two runs of an experiment draw alike.
pub const WAN_SEED: u64 = 0x57a1_e0a5_5eed_0001;

/// Fastest rate a profile may ask for, Mbit/s (what a node's link emulation
/// accepts).
pub const WAN_RATE_MBIT_MAX: u32 = (LINK_RATE_BPS_MAX / 1_000_000) as u32;

/// How an experiment emulates WAN links: a per-egress profile and the
/// mechanism that applies it. The default emulates nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Wan {
    pub profile: NetemProfile,
    pub mechanism: WanMechanism,
}

/// What applies an experiment's [`Wan`] profile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WanMechanism {
    /// A hold queue in every node's transports.
    #[default]
    UserSpace,
    /// `tc netem` in the network namespaces.
    Netem,
}

impl Wan {
    /// `profile` applied by netem where `netem` is true (netns hosts with the
    /// qdisc), by the nodes' transports otherwise.
    pub fn choose(profile: NetemProfile, netem: bool) -> Wan {
        Wan {
            profile,
            mechanism: if netem {
                WanMechanism::Netem
            } else {
                WanMechanism::UserSpace
            },
        }
    }

    /// Whether nothing is emulated.
    pub fn is_none(&self) -> bool {
        self.profile.is_none()
    }

    /// Everything wrong with the profile, one line each, in the words of the
    /// command line.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(error) = self.profile.validate() {
            problems.push(format!("--netem-*: {error}"));
        }
        if let Some(rate) = self.profile.rate_mbit
            && rate > WAN_RATE_MBIT_MAX
        {
            problems.push(format!(
                "--netem-rate-mbit {rate}: at most {WAN_RATE_MBIT_MAX}"
            ));
        }
        problems
    }

    /// What node `node` (its index in the group; the clients node after the
    /// group) emulates on its links: the profile under
    /// [`WanMechanism::UserSpace`], nothing under netem or without a profile.
    pub fn node_link(&self, node: u64) -> LinkEmulation {
        if self.is_none() || self.mechanism == WanMechanism::Netem {
            return LinkEmulation::default();
        }
        let p = &self.profile;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        LinkEmulation {
            delay_us: micros(p.delay),
            jitter_us: micros(p.jitter),
            loss_ppm: (p.loss_percent * 10_000.0).round() as u32,
            rate_bps: p.rate_mbit.map(|mbit| u64::from(mbit) * 1_000_000),
            seed: WAN_SEED ^ node,
        }
    }

    /// What netem should apply in the namespaces: the profile under
    /// [`WanMechanism::Netem`], nothing otherwise.
    pub fn netem(&self) -> NetemProfile {
        match self.mechanism {
            WanMechanism::Netem => self.profile,
            WanMechanism::UserSpace => NetemProfile::default(),
        }
    }
}

impl fmt::Display for Wan {
    /// `delay 5ms ±1ms, user-space emulation in the nodes' transports`, or
    /// `no emulated WAN`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("no emulated WAN");
        }
        // The profile reads `netem delay 5ms ...`; the mechanism follows.
        let profile = self.profile.to_string();
        let profile = profile.strip_prefix("netem ").unwrap_or(&profile);
        match self.mechanism {
            WanMechanism::Netem => write!(f, "{profile} per egress, by tc netem in the namespaces"),
            WanMechanism::UserSpace => write!(
                f,
                "{profile} per egress, by user-space emulation in the nodes' transports"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> NetemProfile {
        NetemProfile {
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(1),
            loss_percent: 0.5,
            rate_mbit: Some(100),
        }
    }

    #[test]
    fn user_space_carries_the_profile_to_each_node() {
        let wan = Wan::choose(profile(), false);
        let link = wan.node_link(3);
        assert_eq!(
            link,
            LinkEmulation {
                delay_us: 5_000,
                jitter_us: 1_000,
                loss_ppm: 5_000,
                rate_bps: Some(100_000_000),
                seed: WAN_SEED ^ 3,
            }
        );
        assert_eq!(link.validate(), Ok(()));
        assert_ne!(wan.node_link(4).seed, link.seed, "each node its own draws");
        assert!(wan.netem().is_none(), "no netem beside it");
        assert_eq!(
            wan.to_string(),
            "delay 5ms ±1ms, loss 0.5%, rate 100 Mbit/s per egress, by user-space emulation \
             in the nodes' transports"
        );
    }

    #[test]
    fn netem_leaves_the_nodes_alone() {
        let wan = Wan::choose(profile(), true);
        assert!(wan.node_link(0).is_none());
        assert_eq!(wan.netem(), profile());
        assert!(wan.to_string().ends_with("by tc netem in the namespaces"));
        assert!(Wan::default().node_link(0).is_none());
        assert_eq!(Wan::default().to_string(), "no emulated WAN");
    }

    /// The flags' bounds: what netem refuses, and a rate the nodes cannot
    /// take; every accepted profile makes a link the nodes accept.
    #[test]
    fn flags_out_of_bounds_are_refused() {
        assert!(Wan::choose(profile(), false).problems().is_empty());
        let bad = [
            NetemProfile {
                delay: Duration::from_secs(11),
                ..profile()
            },
            NetemProfile {
                jitter: Duration::from_secs(11),
                ..profile()
            },
            NetemProfile {
                loss_percent: 101.0,
                ..profile()
            },
            NetemProfile {
                loss_percent: f64::NAN,
                ..profile()
            },
            NetemProfile {
                rate_mbit: Some(0),
                ..profile()
            },
            NetemProfile {
                rate_mbit: Some(WAN_RATE_MBIT_MAX + 1),
                ..profile()
            },
        ];
        for profile in bad {
            let problems = Wan::choose(profile, false).problems();
            assert_eq!(problems.len(), 1, "{profile:?}: {problems:?}");
            assert!(problems[0].starts_with("--netem"), "{problems:?}");
        }
        let edge = NetemProfile {
            delay: Duration::from_secs(10),
            jitter: Duration::from_secs(10),
            loss_percent: 100.0,
            rate_mbit: Some(WAN_RATE_MBIT_MAX),
        };
        let wan = Wan::choose(edge, false);
        assert!(wan.problems().is_empty());
        assert_eq!(wan.node_link(0).validate(), Ok(()));
        let slow = Wan::choose(
            NetemProfile {
                rate_mbit: Some(1),
                ..edge
            },
            false,
        );
        assert_eq!(slow.node_link(0).validate(), Ok(()));
    }

    #[test]
    fn recorded_without_a_wan_reads_as_none() {
        let wan: Wan = serde_json::from_str("{}").unwrap();
        assert!(wan.is_none());
        let wan = Wan::choose(profile(), false);
        let text = serde_json::to_string(&wan).unwrap();
        assert!(text.contains("\"mechanism\":\"user-space\""), "{text}");
        assert_eq!(serde_json::from_str::<Wan>(&text).unwrap(), wan);
    }
}
