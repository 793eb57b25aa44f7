//! Experiments as Rust values: what to run, at which loads, how often, on
//! which threads. Edit [`Experiment::default_comparison`] or build your own;
//! the CLI only overrides the common fields.

use std::time::Duration;

use serde::Serialize;
use wire::control::{AppConfig, Idle, ThreadMap, TransportKind, Workload};

/// The protocols the node program runs, and how many replicas each needs to
/// tolerate `f` faults. The runner does not link protocol code, so this list
/// is kept in step with `protocols::simulate::Protocol` by hand.
pub const PROTOCOLS: &[(&str, Replication)] = &[
    ("unreplicated", Replication::Single),
    ("pbft", Replication::Bft),
];

/// Protocols whose replicas sign their messages, and so need keys.
pub const SIGNED: &[&str] = &["pbft"];

/// How many replicas a protocol runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Replication {
    /// One server, whatever `f`.
    Single,
    /// `3f + 1` replicas (Byzantine fault tolerance).
    Bft,
    /// `2f + 1` replicas (crash fault tolerance).
    Cft,
}

/// The protocol every other is compared to.
pub const BASELINE: &str = "unreplicated";

/// Replicas `protocol` runs to tolerate `f` faults, or an error naming the
/// known protocols.
pub fn replica_count(protocol: &str, f: u32) -> anyhow::Result<u32> {
    let Some((_, replication)) = PROTOCOLS.iter().find(|(name, _)| *name == protocol) else {
        let known: Vec<_> = PROTOCOLS.iter().map(|(name, _)| *name).collect();
        anyhow::bail!("unknown protocol {protocol:?}; known: {}", known.join(", "));
    };
    Ok(match replication {
        Replication::Single => 1,
        Replication::Bft => 3 * f + 1,
        Replication::Cft => 2 * f + 1,
    })
}

/// How load is offered at each point of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Sweep {
    /// Closed loop: one point per client count.
    Clients(Vec<u32>),
    /// Open loop: `clients` clients share each offered rate (operations per
    /// second), one point per rate.
    Rates { clients: u32, rates: Vec<u64> },
}

/// One experiment: every protocol at every load of the sweep, `trials` times.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Experiment {
    /// Names the results folder and the plot.
    pub name: String,
    pub protocols: Vec<String>,
    /// Faults to tolerate (sets the replica count of replicated protocols).
    pub f: u32,
    pub sweep: Sweep,
    /// How long clients run at each point, warm-up and cool-down included.
    pub duration: Duration,
    /// Trimmed at the start of each point.
    pub warmup: Duration,
    /// Trimmed at the end of each point.
    pub cooldown: Duration,
    pub trials: u32,
    /// Stages to threads to cores, for every replica. `None`: all stages on
    /// one thread, pinned to core 0 when there is one replica on a local host
    /// (clients then get core 1), unpinned otherwise.
    pub replica_threads: Option<ThreadMap>,
    pub client_threads: u32,
    pub idle: Idle,
    pub transport: TransportKind,
    pub app: AppConfig,
    pub workload: Workload,
    /// Client retransmission interval.
    pub resend: Duration,
    /// How often nodes report progress.
    pub report_interval: Duration,
}

impl Experiment {
    /// The default comparison: every protocol against the unreplicated
    /// baseline over a small closed-loop client sweep, null operations, about
    /// a minute on this machine.
    pub fn default_comparison() -> Experiment {
        Experiment {
            name: "default".to_string(),
            protocols: PROTOCOLS.iter().map(|(name, _)| name.to_string()).collect(),
            f: 1,
            sweep: Sweep::Clients(vec![1, 10, 100, 1000]),
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            cooldown: Duration::from_millis(500),
            trials: 1,
            replica_threads: None,
            client_threads: 1,
            idle: Idle::SpinThenBlock { spin_us: 100 },
            transport: TransportKind::Auto,
            app: AppConfig::Null,
            workload: Workload::Null { op_size: 16 },
            resend: Duration::from_millis(200),
            report_interval: Duration::from_millis(250),
        }
    }

    /// Every point, in the order they run: by protocol, then load, then trial.
    pub fn points(&self) -> Vec<Point> {
        let loads: Vec<(u32, Option<u64>)> = match &self.sweep {
            Sweep::Clients(counts) => counts.iter().map(|&c| (c, None)).collect(),
            Sweep::Rates { clients, rates } => rates.iter().map(|&r| (*clients, Some(r))).collect(),
        };
        let mut points = Vec::new();
        for protocol in &self.protocols {
            for &(clients, rate) in &loads {
                for trial in 0..self.trials {
                    points.push(Point {
                        protocol: protocol.clone(),
                        clients,
                        rate,
                        trial,
                    });
                }
            }
        }
        points
    }

    /// Checks the experiment can run: known protocols, a non-empty sweep, a
    /// measured window left after trimming.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.protocols.is_empty(), "no protocol to run");
        for protocol in &self.protocols {
            let n = replica_count(protocol, self.f)?;
            anyhow::ensure!(
                n <= u32::from(crate::run::PORT_SET_SIZE),
                "{protocol} at f = {} needs {n} replicas; a run takes at most {}",
                self.f,
                crate::run::PORT_SET_SIZE
            );
        }
        let loads = match &self.sweep {
            Sweep::Clients(counts) => {
                anyhow::ensure!(
                    counts.iter().all(|&c| c > 0),
                    "client counts must be positive"
                );
                counts.len()
            }
            Sweep::Rates { clients, rates } => {
                anyhow::ensure!(*clients > 0, "open loop needs clients");
                anyhow::ensure!(rates.iter().all(|&r| r > 0), "rates must be positive");
                rates.len()
            }
        };
        anyhow::ensure!(loads > 0, "the sweep has no point");
        anyhow::ensure!(self.trials > 0, "trials must be positive");
        anyhow::ensure!(self.client_threads > 0, "client threads must be positive");
        anyhow::ensure!(
            self.warmup + self.cooldown < self.duration,
            "warm-up ({:?}) and cool-down ({:?}) leave nothing of the duration ({:?})",
            self.warmup,
            self.cooldown,
            self.duration
        );
        if let Some(threads) = &self.replica_threads {
            threads
                .validate()
                .map_err(|e| anyhow::anyhow!("thread map: {e}"))?;
        }
        Ok(())
    }

    /// The measured window of each point.
    pub fn measured(&self) -> Duration {
        self.duration - self.warmup - self.cooldown
    }
}

/// One run of one protocol at one load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Point {
    pub protocol: String,
    pub clients: u32,
    /// Open loop: offered operations per second.
    pub rate: Option<u64>,
    pub trial: u32,
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} clients={}", self.protocol, self.clients)?;
        if let Some(rate) = self.rate {
            write!(f, " rate={rate}/s")?;
        }
        write!(f, " trial {}", self.trial + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_comparison_is_valid_and_about_a_minute() {
        let experiment = Experiment::default_comparison();
        experiment.validate().unwrap();
        let points = experiment.points();
        assert!(!points.is_empty());
        let total = experiment.duration * points.len() as u32;
        assert!(total <= Duration::from_secs(90), "{total:?}");
        assert!(experiment.protocols.iter().any(|p| p == BASELINE));
    }

    #[test]
    fn points_cover_protocols_loads_and_trials() {
        let experiment = Experiment {
            protocols: vec!["unreplicated".into()],
            sweep: Sweep::Clients(vec![1, 10]),
            trials: 3,
            ..Experiment::default_comparison()
        };
        let points = experiment.points();
        assert_eq!(points.len(), 6);
        assert_eq!(points[5].clients, 10);
        assert_eq!(points[5].trial, 2);
    }

    #[test]
    fn invalid_experiments_are_refused() {
        let base = Experiment::default_comparison();
        let unknown = Experiment {
            protocols: vec!["paxos-made-up".into()],
            ..base.clone()
        };
        assert!(
            unknown
                .validate()
                .unwrap_err()
                .to_string()
                .contains("known: unreplicated, pbft")
        );
        let no_window = Experiment {
            warmup: Duration::from_secs(5),
            ..base.clone()
        };
        assert!(no_window.validate().is_err());
        let no_clients = Experiment {
            sweep: Sweep::Clients(vec![0]),
            ..base
        };
        assert!(no_clients.validate().is_err());
    }

    #[test]
    fn replica_counts() {
        assert_eq!(replica_count("unreplicated", 3).unwrap(), 1);
        assert_eq!(replica_count("pbft", 1).unwrap(), 4);
        assert_eq!(replica_count("pbft", 2).unwrap(), 7);
        assert!(replica_count("nope", 1).is_err());
    }
}
