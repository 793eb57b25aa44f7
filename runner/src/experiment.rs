//! Experiments as Rust values: what to run, at which loads, how often, on
//! which threads. Edit [`Experiment::default_comparison`] or build your own;
//! the CLI only overrides the common fields.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::control::{AppConfig, Arrivals, ConfigError, Idle, ThreadMap, TransportKind, Workload};

/// A protocol the node program runs, as the runner needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolInfo {
    pub name: &'static str,
    /// How many replicas it runs for `f` faults.
    pub replication: Replication,
    /// The largest group it supports (its own bound, checked by its replicas).
    pub replicas_max: u32,
}

/// The protocols the node program runs. The runner does not link protocol
/// code, so this list is kept in step with `protocols::simulate::Protocol`
/// (and PBFT's `REPLICAS_MAX`) by hand.
pub const PROTOCOLS: &[ProtocolInfo] = &[
    ProtocolInfo {
        name: "unreplicated",
        replication: Replication::Single,
        replicas_max: 1,
    },
    ProtocolInfo {
        name: "pbft",
        replication: Replication::Bft,
        replicas_max: 10,
    },
];

/// Protocols whose replicas sign their messages, and so need keys.
pub const SIGNED: &[&str] = &["pbft"];

/// How many replicas a protocol runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The default comparison's client counts (and `bench`'s closed-loop sweep).
pub const DEFAULT_CLIENTS: &[u32] = &[1, 10, 100, 1000];

/// What the default comparison's points take together, at most, while each
/// lasts at least [`DEFAULT_POINT_MIN`].
pub const DEFAULT_POINTS_BUDGET: Duration = Duration::from_secs(48);

/// The default comparison's shortest point: shorter, and warm-up and the
/// first report intervals weigh too much.
pub const DEFAULT_POINT_MIN: Duration = Duration::from_secs(2);

/// The default comparison's longest point.
pub const DEFAULT_POINT_MAX: Duration = Duration::from_secs(5);

/// Most faults a run asks for (a protocol's own group bound may be lower:
/// PBFT runs at most 10 replicas, so `f <= 3`).
pub const F_MAX: u32 = 10;

/// Most clients at one point (they share one clients node), and most
/// client threads in it: the node's own bounds.
pub use wire::control::{CLIENT_THREADS_MAX, CLIENTS_MAX};

/// Longest point.
pub const DURATION_MAX: Duration = Duration::from_secs(3600);

/// What is wrong with `workload` for `app`: the node's own rules
/// ([`Workload::problems`]), in the command line's words.
fn workload_problems(app: AppConfig, workload: &Workload) -> Vec<String> {
    let fits = matches!(
        (app, workload),
        (AppConfig::Null, Workload::Null { .. }) | (AppConfig::Kv, Workload::Kv(_))
    );
    if !fits {
        return vec![format!("the workload does not fit the {app:?} app")];
    }
    let keys = match workload {
        Workload::Kv(kv) => kv.keys,
        Workload::Null { .. } => 0,
    };
    workload
        .problems()
        .into_iter()
        .map(|problem| match problem {
            ConfigError::OpSize { size, max } => {
                format!("--op-size {size}: at most {max} bytes (an operation fits in a datagram)")
            }
            ConfigError::NoKeys => {
                "--keys 0: the key-value workload needs at least one key".to_string()
            }
            ConfigError::ValueSize { size, max } => {
                format!("--value-size {size}: at most {max} bytes")
            }
            ConfigError::ReadRatio(ratio) => {
                format!("--read-ratio {ratio}: a fraction of reads, 0 to 1")
            }
            ConfigError::ZipfExponent(exponent) => {
                format!("--zipf {exponent}: a finite exponent, 0 or more")
            }
            ConfigError::ZipfKeys { max, .. } => {
                format!("--keys {keys}: a zipf workload takes at most {max} keys")
            }
            other => format!("workload: {other}"),
        })
        .collect()
}

/// What the runner knows of `protocol`, if the node program runs it.
pub fn protocol_info(protocol: &str) -> Option<&'static ProtocolInfo> {
    PROTOCOLS.iter().find(|info| info.name == protocol)
}

/// How `protocol` replicates, if it is one the node program runs.
pub fn replication(protocol: &str) -> Option<Replication> {
    protocol_info(protocol).map(|info| info.replication)
}

/// The protocols the node program runs, for messages: "unreplicated, pbft".
pub fn known_protocols() -> String {
    let known: Vec<_> = PROTOCOLS.iter().map(|info| info.name).collect();
    known.join(", ")
}

/// Checks `protocol` is one the node program runs; the error names the
/// known ones.
pub fn check_protocol(protocol: &str) -> anyhow::Result<()> {
    match replication(protocol) {
        Some(_) => Ok(()),
        None => anyhow::bail!(
            "unknown protocol {protocol:?}; known: {}",
            known_protocols()
        ),
    }
}

/// Replicas `protocol` runs to tolerate `f` faults, or an error naming the
/// known protocols.
pub fn replica_count(protocol: &str, f: u32) -> anyhow::Result<u32> {
    check_protocol(protocol)?;
    let replication = replication(protocol).expect("checked");
    Ok(match replication {
        Replication::Single => 1,
        Replication::Bft => f.saturating_mul(3).saturating_add(1),
        Replication::Cft => f.saturating_mul(2).saturating_add(1),
    })
}

/// How load is offered at each point of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Sweep {
    /// Closed loop: one point per client count.
    Clients(Vec<u32>),
    /// Open loop: `clients` clients share each offered rate (operations per
    /// second), one point per rate.
    Rates { clients: u32, rates: Vec<u64> },
}

/// One experiment: every protocol at every load of the sweep, `trials` times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Names the results folder and the plot.
    pub name: String,
    pub protocols: Vec<String>,
    /// Faults to tolerate (sets the replica count of replicated protocols).
    pub f: u32,
    pub sweep: Sweep,
    /// Open loop: when arrivals are due (absent in experiments recorded
    /// before it existed: Poisson).
    #[serde(default)]
    pub arrivals: Arrivals,
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
    ///
    /// It stays near a minute as protocols are added: its points share
    /// [`DEFAULT_POINTS_BUDGET`], each between [`DEFAULT_POINT_MIN`] and
    /// [`DEFAULT_POINT_MAX`] long (5 s with two protocols, 2.4 s with five),
    /// warm-up a fifth of a point and cool-down a tenth.
    pub fn default_comparison() -> Experiment {
        let protocols: Vec<String> = PROTOCOLS.iter().map(|info| info.name.to_string()).collect();
        let loads = DEFAULT_CLIENTS.len() as u32;
        let duration = (DEFAULT_POINTS_BUDGET / (loads * protocols.len() as u32).max(1))
            .clamp(DEFAULT_POINT_MIN, DEFAULT_POINT_MAX);
        Experiment {
            name: "default".to_string(),
            protocols,
            f: 1,
            sweep: Sweep::Clients(DEFAULT_CLIENTS.to_vec()),
            arrivals: Arrivals::Poisson,
            duration,
            warmup: duration / 5,
            cooldown: duration / 10,
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

    /// Every point, in the order they run: trial by trial, and within a
    /// trial load by load, every protocol at that load before the next load.
    /// So protocols interleave (A trial 1, B trial 1, A trial 2, ...), and a
    /// noisy minute on the machine lands on all of them rather than on one.
    pub fn points(&self) -> Vec<Point> {
        let loads: Vec<(u32, Option<u64>)> = match &self.sweep {
            Sweep::Clients(counts) => counts.iter().map(|&c| (c, None)).collect(),
            Sweep::Rates { clients, rates } => rates.iter().map(|&r| (*clients, Some(r))).collect(),
        };
        let mut points = Vec::new();
        for trial in 1..=self.trials {
            for &(clients, rate) in &loads {
                for protocol in &self.protocols {
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

    /// Checks the experiment can run, before any node starts: one error
    /// listing every problem found, one line each.
    pub fn validate(&self) -> anyhow::Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", problems.join("\n"))
        }
    }

    /// Everything wrong with the experiment, one line each, in the words of
    /// the command line's options (`--f`, `--read-ratio`, ...), which name
    /// the experiment's fields.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, problem: String| {
            if !ok {
                problems.push(problem);
            }
        };
        check(!self.protocols.is_empty(), "no protocol to run".into());
        for protocol in &self.protocols {
            match replica_count(protocol, self.f) {
                Err(error) => check(false, format!("--protocol {protocol}: {error}")),
                Ok(n) => {
                    let replicated = replication(protocol) != Some(Replication::Single);
                    check(
                        !replicated || self.f > 0,
                        format!("--f 0: {protocol} is replicated, to tolerate f >= 1 faults"),
                    );
                    let most = protocol_info(protocol)
                        .map_or(0, |info| info.replicas_max)
                        .min(u32::from(crate::run::PORT_SET_SIZE));
                    check(
                        n <= most,
                        format!(
                            "--f {}: {protocol} would run {n} replicas; it runs at most {most}",
                            self.f
                        ),
                    );
                }
            }
        }
        check(self.f <= F_MAX, format!("--f {}: at most {F_MAX}", self.f));
        let mut seen = Vec::new();
        for protocol in &self.protocols {
            check(
                !seen.contains(&protocol),
                format!("--protocol {protocol} is given twice"),
            );
            seen.push(protocol);
        }
        match &self.sweep {
            Sweep::Clients(counts) => {
                check(
                    !counts.is_empty(),
                    "--clients: the sweep has no point".into(),
                );
                check(
                    counts.iter().all(|&c| (1..=CLIENTS_MAX).contains(&c)),
                    format!("--clients: each count must be 1 to {CLIENTS_MAX}"),
                );
            }
            Sweep::Rates { clients, rates } => {
                check(
                    (1..=CLIENTS_MAX).contains(clients),
                    format!("--clients {clients}: open loop needs 1 to {CLIENTS_MAX} clients"),
                );
                check(!rates.is_empty(), "--rates: the sweep has no point".into());
                check(
                    rates.iter().all(|&r| r > 0),
                    "--rates: each rate must be positive".into(),
                );
            }
        }
        check(self.trials > 0, "--trials 0: at least one trial".into());
        check(
            (1..=CLIENT_THREADS_MAX).contains(&self.client_threads),
            format!(
                "--client-threads {}: must be 1 to {CLIENT_THREADS_MAX}",
                self.client_threads
            ),
        );
        let fewest = match &self.sweep {
            Sweep::Clients(counts) => counts.iter().copied().min().unwrap_or(1),
            Sweep::Rates { clients, .. } => *clients,
        };
        check(
            self.client_threads <= fewest.max(1),
            format!(
                "--client-threads {}: more threads than the {fewest} clients of the smallest point",
                self.client_threads
            ),
        );
        check(
            self.warmup + self.cooldown < self.duration,
            format!(
                "--warmup {} and --cooldown {} leave nothing of --duration {}",
                humantime::format_duration(self.warmup),
                humantime::format_duration(self.cooldown),
                humantime::format_duration(self.duration)
            ),
        );
        check(
            self.duration <= DURATION_MAX,
            format!(
                "--duration {}: at most {}",
                humantime::format_duration(self.duration),
                humantime::format_duration(DURATION_MAX)
            ),
        );
        check(
            !self.resend.is_zero(),
            "the clients' resend interval must be positive".into(),
        );
        check(
            self.report_interval >= Duration::from_millis(10),
            "the report interval must be at least 10 ms".into(),
        );
        if let Some(Err(e)) = self.replica_threads.as_ref().map(ThreadMap::validate) {
            check(false, format!("--replica-threads: {e}"));
        }
        problems.extend(workload_problems(self.app, &self.workload));
        problems
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
    /// 1-based, as the progress line and the results show it.
    pub trial: u32,
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} clients={}", self.protocol, self.clients)?;
        if let Some(rate) = self.rate {
            write!(f, " rate={rate}/s")?;
        }
        write!(f, " trial {}", self.trial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::control::KeyDistribution;

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
    fn points_interleave_protocols_within_each_trial() {
        let experiment = Experiment {
            protocols: vec!["unreplicated".into(), "pbft".into()],
            sweep: Sweep::Clients(vec![1, 10]),
            trials: 3,
            ..Experiment::default_comparison()
        };
        let points = experiment.points();
        assert_eq!(points.len(), 12);
        let order: Vec<_> = points
            .iter()
            .take(5)
            .map(|p| (p.trial, p.clients, p.protocol.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                (1, 1, "unreplicated"),
                (1, 1, "pbft"),
                (1, 10, "unreplicated"),
                (1, 10, "pbft"),
                (2, 1, "unreplicated"),
            ]
        );
        assert_eq!(points[11].trial, 3);
        assert_eq!(points[11].to_string(), "pbft clients=10 trial 3");
    }

    /// Each bad input is one line naming the option, and every problem is
    /// listed, not only the first.
    #[test]
    fn every_problem_is_one_line_naming_its_option() {
        let base = Experiment::default_comparison();
        let kv = |keys, read_ratio| {
            Workload::Kv(wire::control::KvWorkload {
                keys,
                value_size: 64,
                read_ratio,
                distribution: KeyDistribution::Uniform,
            })
        };
        let cases: Vec<(Experiment, &str)> = vec![
            (
                Experiment {
                    protocols: vec!["raft".into()],
                    ..base.clone()
                },
                "--protocol raft: unknown protocol \"raft\"; known: unreplicated, pbft",
            ),
            (
                Experiment {
                    f: 0,
                    ..base.clone()
                },
                "--f 0: pbft is replicated",
            ),
            (
                Experiment {
                    f: 4,
                    ..base.clone()
                },
                "--f 4: pbft would run 13 replicas; it runs at most 10",
            ),
            (
                Experiment {
                    f: u32::MAX,
                    ..base.clone()
                },
                "at most 10",
            ),
            (
                Experiment {
                    warmup: Duration::from_secs(5),
                    ..base.clone()
                },
                "--warmup 5s and --cooldown 500ms leave nothing of --duration 5s",
            ),
            (
                Experiment {
                    sweep: Sweep::Clients(vec![0]),
                    ..base.clone()
                },
                "--clients: each count must be 1 to 100000",
            ),
            (
                Experiment {
                    sweep: Sweep::Rates {
                        clients: 10,
                        rates: vec![],
                    },
                    ..base.clone()
                },
                "--rates: the sweep has no point",
            ),
            (
                Experiment {
                    trials: 0,
                    ..base.clone()
                },
                "--trials 0",
            ),
            (
                Experiment {
                    workload: Workload::Null { op_size: 100_000 },
                    ..base.clone()
                },
                "--op-size 100000: at most",
            ),
            (
                Experiment {
                    app: AppConfig::Kv,
                    workload: kv(0, 2.0),
                    ..base.clone()
                },
                "--keys 0: the key-value workload needs at least one key\n\
                 --read-ratio 2: a fraction of reads, 0 to 1",
            ),
        ];
        for (experiment, expected) in cases {
            let error = experiment.validate().unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        }
        let two = Experiment {
            f: 0,
            trials: 0,
            ..base
        };
        let error = two.validate().unwrap_err().to_string();
        assert_eq!(error.lines().count(), 2, "{error}");
    }

    /// `runner rerun` reads the experiment back from results.json.
    #[test]
    fn an_experiment_reads_back_from_its_record() {
        let experiment = Experiment {
            sweep: Sweep::Rates {
                clients: 7,
                rates: vec![100, 2000],
            },
            replica_threads: Some(ThreadMap::per_stage()),
            app: AppConfig::Kv,
            workload: Workload::Kv(wire::control::KvWorkload {
                keys: 10,
                value_size: 3,
                read_ratio: 0.25,
                distribution: KeyDistribution::Zipf { exponent: 0.99 },
            }),
            ..Experiment::default_comparison()
        };
        let recorded = serde_json::to_value(&experiment).unwrap();
        let back: Experiment = serde_json::from_value(recorded).unwrap();
        assert_eq!(back, experiment);
    }

    #[test]
    fn replica_counts() {
        assert_eq!(replica_count("unreplicated", 3).unwrap(), 1);
        assert_eq!(replica_count("pbft", 1).unwrap(), 4);
        assert_eq!(replica_count("pbft", 2).unwrap(), 7);
        assert!(replica_count("nope", 1).is_err());
    }
}
