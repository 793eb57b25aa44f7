//! Experiments as Rust values: what to run, at which loads, how often, on
//! which threads. Edit [`Experiment::default_comparison`] or build your own;
//! the CLI only overrides the common fields.

use std::time::Duration;

use crate::faults::ScheduledFault;
use serde::{Deserialize, Serialize};
use wire::control::{AppConfig, Arrivals, ConfigError, Idle, ThreadMap, TransportKind, Workload};

/// The protocols the node program runs, from the one registry in `wire`
/// (the runner links no protocol code, and keeps no list of its own).
pub use wire::registry::{PROTOCOLS, ProtocolSpec, Replication};

/// The protocol every other is compared to.
pub const BASELINE: &str = wire::registry::BASELINE.name;

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
            ConfigError::ReplySize { size, max } => {
                format!("--reply-size {size}: at most {max} bytes (a reply fits in a datagram)")
            }
            ConfigError::ReplySizeNeedsOp { op_size } => format!(
                "--op-size {op_size}: with --reply-size, at least 4 bytes (the operation carries \
                 the reply's size)"
            ),
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
            other => other.to_string(),
        })
        .collect()
}

/// What the registry says of `protocol`, if the node program runs it.
pub fn protocol_spec(protocol: &str) -> Option<&'static ProtocolSpec> {
    wire::registry::find(protocol)
}

/// The protocols the node program runs, for messages: "unreplicated, pbft".
pub fn known_protocols() -> String {
    wire::registry::names()
}

/// Checks `protocol` is one the node program runs; the error names the
/// known ones.
pub fn check_protocol(protocol: &str) -> anyhow::Result<()> {
    wire::registry::lookup(protocol)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!(e))
}

/// Replicas `protocol` runs to tolerate `f` faults, or an error naming the
/// known protocols.
pub fn replica_count(protocol: &str, f: u32) -> anyhow::Result<u32> {
    let spec = wire::registry::lookup(protocol).map_err(|e| anyhow::anyhow!(e))?;
    Ok(spec.replicas(f))
}

/// Nodes `protocol` runs for `f` faults besides its clients, each on a host
/// of its own: its replicas, then its services (chain replication's
/// master; see [`ProtocolSpec::services`]). What hosts, ports, keys and
/// cores are counted in; [`replica_count`] is what results report.
pub fn node_count(protocol: &str, f: u32) -> anyhow::Result<u32> {
    let spec = wire::registry::lookup(protocol).map_err(|e| anyhow::anyhow!(e))?;
    Ok(spec.nodes(f))
}

/// A protocol with a master, as chain replication is, for tests of what a
/// group with services needs (no registered protocol runs one yet). Its
/// own bound lets it ask for more replicas than a point has ports for.
#[cfg(test)]
pub(crate) static TEST_CHAIN: ProtocolSpec = ProtocolSpec {
    name: "chain",
    about: "a test's chain",
    replication: Replication::Chain,
    replicas_max: 40,
    services: &["master"],
    signs: false,
    batches: false,
    rotates_leader: false,
    counters: &[],
    tunables: &[],
};

/// What is wrong with running `spec` for `f` faults, one line each: a
/// replicated protocol at `f = 0`, more replicas than it runs, more nodes
/// than a point has ports for.
fn group_problems(spec: &ProtocolSpec, f: u32) -> Vec<String> {
    let protocol = spec.name;
    let mut problems = Vec::new();
    if spec.is_replicated() && f == 0 {
        problems.push(format!(
            "--f 0: {protocol} is replicated, to tolerate f >= 1 faults"
        ));
    }
    let (n, most) = (spec.replicas(f), spec.replicas_max as u32);
    let (nodes, ports) = (spec.nodes(f), u32::from(crate::run::PORT_SET_SIZE));
    if n > most.min(ports) {
        problems.push(format!(
            "--f {f}: {protocol} would run {n} replicas; it runs at most {}",
            most.min(ports)
        ));
    } else if nodes > ports {
        problems.push(format!(
            "--f {f}: {protocol} would run {n} replicas and {}, {nodes} nodes; \
             a point has ports for at most {ports}",
            spec.services_phrase()
        ));
    }
    problems
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
    /// Stages to threads to cores, for every replica. `None`: each node
    /// derives its own from its part of its host's cores and its protocol's
    /// needs (see [`crate::run::core_shares`]).
    pub replica_threads: Option<ThreadMap>,
    /// Client threads in the clients node. `None`: one per core of the
    /// clients node's part of its host.
    pub client_threads: Option<u32>,
    pub idle: Idle,
    pub transport: TransportKind,
    pub app: AppConfig,
    pub workload: Workload,
    /// Protocol tunables (`pbft.batch_max`) and workload parameters
    /// (`op_size`) this experiment sets, each to one value or swept over
    /// several (see [`Setting`]). Absent in experiments recorded before
    /// settings existed: none.
    #[serde(default)]
    pub settings: Vec<Setting>,
    /// Client retransmission interval.
    pub resend: Duration,
    /// How often nodes report progress.
    pub report_interval: Duration,
    /// Emulated WAN links and what applies them ([`crate::wan`]). Absent in
    /// experiments recorded before it existed: none.
    #[serde(default)]
    pub wan: crate::wan::Wan,
    /// What happens to which node when, in every point ([`crate::faults`]):
    /// `--fault 3s:kill:primary`. Absent in experiments recorded before
    /// schedules existed: none.
    #[serde(default)]
    pub faults: Vec<ScheduledFault>,
    /// An operation that takes longer than this is slow: the clients count
    /// them per interval, and the recovery figures per fault. Absent in
    /// experiments recorded before it existed: 100 ms
    /// ([`wire::control::SLOW_OP_MS_DEFAULT`]).
    #[serde(default = "slow_op_default")]
    pub slow_op: Duration,
    /// Every node under the same CPU quota ([`crate::cpu_quota`]); `None`:
    /// no quota (absent in experiments recorded before it existed).
    #[serde(default)]
    pub equal_cpu: Option<EqualCpu>,
}

/// The CPU quota of each node under `--equal-cpu`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum EqualCpu {
    /// This machine's cores over the most nodes a point runs (its clients
    /// node with them).
    Auto,
    /// This much CPU per node, in cores.
    Cores(f64),
}

impl Experiment {
    /// The CPU per node under `--equal-cpu`, in cores, on a machine of
    /// `cores` cores; `None` without it.
    pub fn cpu_per_node(&self, cores: usize) -> Option<f64> {
        match self.equal_cpu? {
            EqualCpu::Cores(cores) => Some(cores),
            EqualCpu::Auto => {
                let most = self
                    .protocols
                    .iter()
                    .filter_map(|p| node_count(p, self.f).ok())
                    .max()
                    .unwrap_or(1);
                Some(cores.max(1) as f64 / f64::from(most + 1))
            }
        }
    }
}

fn slow_op_default() -> Duration {
    Duration::from_millis(wire::control::SLOW_OP_MS_DEFAULT)
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
        let protocols: Vec<String> = PROTOCOLS.iter().map(|spec| spec.name.to_string()).collect();
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
            client_threads: None,
            idle: Idle::SpinThenBlock { spin_us: 100 },
            transport: TransportKind::Auto,
            app: AppConfig::Null,
            workload: Workload::Null {
                op_size: 16,
                reply_size: 0,
            },
            settings: Vec::new(),
            resend: Duration::from_millis(200),
            report_interval: Duration::from_millis(100),
            wan: crate::wan::Wan::default(),
            faults: Vec::new(),
            slow_op: slow_op_default(),
            equal_cpu: None,
        }
    }

    /// Every point, in the order they run: trial by trial, and within a
    /// trial load by load, every protocol at that load before the next load
    /// (each protocol in every variant of the settings swept that apply to
    /// it: its own tunables and the workload's). So protocols interleave (A
    /// trial 1, B trial 1, A trial 2, ...), and a noisy minute on the
    /// machine lands on all of them rather than on one.
    pub fn points(&self) -> Vec<Point> {
        let loads: Vec<(u32, Option<u64>)> = match &self.sweep {
            Sweep::Clients(counts) => counts.iter().map(|&c| (c, None)).collect(),
            Sweep::Rates { clients, rates } => rates.iter().map(|&r| (*clients, Some(r))).collect(),
        };
        let mut points = Vec::new();
        for trial in 1..=self.trials {
            for &(clients, rate) in &loads {
                for protocol in &self.protocols {
                    for variant in self.variants(protocol) {
                        points.push(Point {
                            protocol: protocol.clone(),
                            variant,
                            clients,
                            rate,
                            trial,
                        });
                    }
                }
            }
        }
        points
    }

    /// Every combination of the swept settings (more than one value) that
    /// apply to `protocol`, in the order given; one empty variant when none
    /// is swept.
    pub fn variants(&self, protocol: &str) -> Vec<Vec<(String, u64)>> {
        let mut variants = vec![Vec::new()];
        for setting in &self.settings {
            if setting.values.len() < 2 || !setting.applies_to(protocol) {
                continue;
            }
            variants = variants
                .into_iter()
                .flat_map(|variant| {
                    setting.values.iter().map(move |&value| {
                        let mut variant = variant.clone();
                        variant.push((setting.name.clone(), value));
                        variant
                    })
                })
                .collect();
        }
        variants
    }

    /// How many [`Experiment::variants`] `protocol` has (saturating), without
    /// making them.
    pub fn variant_count(&self, protocol: &str) -> usize {
        self.settings
            .iter()
            .filter(|setting| setting.values.len() > 1 && setting.applies_to(protocol))
            .fold(1usize, |count, setting| {
                count.saturating_mul(setting.values.len())
            })
    }

    /// The value of `setting` at `point`: the point's own if it is swept,
    /// else the one value given.
    fn value_at(setting: &Setting, point: &Point) -> Option<u64> {
        match point.variant.iter().find(|(name, _)| *name == setting.name) {
            Some(&(_, value)) => Some(value),
            None => setting.values.first().copied(),
        }
    }

    /// The tunables `point`'s protocol runs with, as its nodes take them
    /// (names without the protocol); the others keep their defaults.
    pub fn node_settings(&self, point: &Point) -> Vec<(String, u64)> {
        self.settings
            .iter()
            .filter_map(|setting| {
                let (protocol, tunable) = setting.name.split_once('.')?;
                let value = Self::value_at(setting, point)?;
                (protocol == point.protocol).then(|| (tunable.to_string(), value))
            })
            .collect()
    }

    /// Whether replicas `fsync` their durable state at `point` (the `fsync`
    /// run parameter; on unless set to 0). Off is not crash-safe.
    pub fn fsync_at(&self, point: &Point) -> bool {
        self.settings
            .iter()
            .find(|setting| setting.name == FSYNC)
            .and_then(|setting| Self::value_at(setting, point))
            .is_none_or(|value| value != 0)
    }

    /// The workload at `point`: the experiment's, with the workload
    /// parameters set or swept.
    pub fn workload_at(&self, point: &Point) -> Workload {
        let mut workload = self.workload.clone();
        for setting in &self.settings {
            if setting.name == FSYNC {
                continue;
            }
            let Some(value) = Self::value_at(setting, point) else {
                continue;
            };
            let _ = set_workload_parameter(&mut workload, &setting.name, value);
        }
        workload
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
            match wire::registry::lookup(protocol) {
                Err(error) => check(false, format!("--protocol {protocol}: {error}")),
                Ok(spec) => group_problems(spec, self.f)
                    .into_iter()
                    .for_each(|problem| check(false, problem)),
            }
        }
        check(self.f <= F_MAX, format!("--f {}: at most {F_MAX}", self.f));
        let measured = self
            .duration
            .saturating_sub(self.warmup)
            .saturating_sub(self.cooldown);
        let mut fault_problems = Vec::new();
        for spec in self
            .protocols
            .iter()
            .filter_map(|p| wire::registry::lookup(p).ok())
            .filter(|spec| crate::faults::applies_to(spec))
        {
            for problem in crate::faults::problems(&self.faults, spec, self.f, measured) {
                // Several protocols with the same problem say it once.
                if !fault_problems.contains(&problem) {
                    fault_problems.push(problem);
                }
            }
        }
        fault_problems
            .into_iter()
            .for_each(|problem| check(false, problem));
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
        if let Some(client_threads) = self.client_threads {
            check(
                (1..=CLIENT_THREADS_MAX).contains(&client_threads),
                format!("--client-threads {client_threads}: must be 1 to {CLIENT_THREADS_MAX}"),
            );
            let fewest = match &self.sweep {
                Sweep::Clients(counts) => counts.iter().copied().min().unwrap_or(1),
                Sweep::Rates { clients, .. } => *clients,
            };
            check(
                client_threads <= fewest.max(1),
                format!(
                    "--client-threads {client_threads}: more threads than the {fewest} clients \
                     of the smallest point"
                ),
            );
        }
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
        check(
            self.slow_op >= Duration::from_millis(1)
                && self.slow_op <= Duration::from_millis(wire::control::INTERVAL_MS_MAX),
            format!(
                "--slow-op {}: must be from 1 ms to an hour",
                humantime::format_duration(self.slow_op)
            ),
        );
        if let Some(Err(e)) = self.replica_threads.as_ref().map(ThreadMap::validate) {
            check(false, format!("--replica-threads: {e}"));
        }
        let points = self
            .protocols
            .iter()
            .map(|protocol| self.variant_count(protocol))
            .fold(0usize, usize::saturating_add)
            .saturating_mul(self.loads())
            .saturating_mul(self.trials as usize);
        check(
            points <= POINTS_MAX,
            format!("the experiment has {points} points; at most {POINTS_MAX}"),
        );
        problems.extend(self.settings_problems());
        // Every workload a point runs (the base one if no point does).
        let mut workloads = vec![self.workload.clone()];
        for protocol in self.protocols.iter().take(PROTOCOLS.len()) {
            if self.variant_count(protocol) > POINTS_MAX {
                continue;
            }
            for variant in self.variants(protocol) {
                let point = Point {
                    protocol: protocol.clone(),
                    variant,
                    clients: 1,
                    rate: None,
                    trial: 1,
                };
                let workload = self.workload_at(&point);
                if !workloads.contains(&workload) {
                    workloads.push(workload);
                }
            }
        }
        for workload in &workloads {
            for problem in workload_problems(self.app, workload) {
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
        problems.extend(self.wan.problems());
        problems
    }

    /// Loads in the sweep.
    fn loads(&self) -> usize {
        match &self.sweep {
            Sweep::Clients(counts) => counts.len(),
            Sweep::Rates { rates, .. } => rates.len(),
        }
    }

    /// What is wrong with the settings, in the words of `--set`.
    fn settings_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (i, setting) in self.settings.iter().enumerate() {
            let name = &setting.name;
            if self.settings[..i].iter().any(|s| s.name == *name) {
                problems.push(format!("--set {name} is given twice"));
                continue;
            }
            if setting.values.is_empty() {
                problems.push(format!("--set {name}: no value"));
                continue;
            }
            match name.split_once('.') {
                Some((protocol, tunable)) => {
                    let Some(spec) = protocol_spec(protocol) else {
                        problems.push(format!(
                            "--set {name}: unknown protocol {protocol:?}; known: {}",
                            known_protocols()
                        ));
                        continue;
                    };
                    if !self.protocols.iter().any(|p| p == protocol) {
                        problems.push(format!(
                            "--set {name}: {protocol} is not one of the protocols this \
                             experiment runs"
                        ));
                    }
                    let Some(tunable) = spec.tunable(tunable) else {
                        problems.push(format!(
                            "--set {name}: {protocol} has no tunable {tunable:?} (it has: {})",
                            spec.tunable_names()
                        ));
                        continue;
                    };
                    for &value in &setting.values {
                        if let Err(problem) = tunable.check(value) {
                            problems.push(format!("--set {protocol}.{problem}"));
                        }
                    }
                }
                None if name == FSYNC => {
                    if let Some(v) = setting.values.iter().find(|&&v| v > 1) {
                        problems.push(format!("--set fsync={v}: 0 (off) or 1 (on)"));
                    }
                }
                None => {
                    let mut workload = self.workload.clone();
                    for &value in &setting.values {
                        if let Err(problem) = set_workload_parameter(&mut workload, name, value) {
                            problems.push(problem);
                            break;
                        }
                    }
                }
            }
        }
        problems
    }
    /// The measured window of each point.
    pub fn measured(&self) -> Duration {
        self.duration - self.warmup - self.cooldown
    }
}

/// Most points one experiment runs (sweeps multiply).
pub const POINTS_MAX: usize = 10_000;

/// A parameter an experiment sets to one value, or sweeps over several:
/// `pbft.batch_max` (a protocol's tunable, bounds from the registry) or a
/// workload parameter, [`WORKLOAD_PARAMETERS`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub values: Vec<u64>,
}

impl Setting {
    /// Whether the setting concerns `protocol`'s points: its own tunables
    /// and every workload parameter.
    pub fn applies_to(&self, protocol: &str) -> bool {
        match self.name.split_once('.') {
            Some((owner, _)) => owner == protocol,
            None => true,
        }
    }

    /// `NAME=V[,V...]`, as `--set` takes it.
    pub fn parse(text: &str) -> Result<Setting, String> {
        let (name, values) = text.split_once('=').ok_or_else(|| {
            format!("{text:?}: expected NAME=VALUE[,VALUE...], e.g. pbft.batch_max=16")
        })?;
        let values = values
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{text:?}: {v:?} is not a whole number"))
            })
            .collect::<Result<Vec<u64>, String>>()?;
        Ok(Setting {
            name: name.trim().to_string(),
            values,
        })
    }
}

/// The workload parameters `--set` (and their own options) set or sweep.
pub const WORKLOAD_PARAMETERS: &[&str] = &["op_size", "reply_size", "value_size", "keys"];

/// The run parameter that says whether replicas `fsync` what their protocol
/// persists (1, the default) or not (0: faster, and not crash-safe). Swept
/// like any other (`--set fsync=0,1`), so its cost shows in one run.
pub const FSYNC: &str = "fsync";

/// Sets the workload parameter `name` to `value`, or says why it cannot
/// (unknown, not this workload's, out of range for its field).
fn set_workload_parameter(workload: &mut Workload, name: &str, value: u64) -> Result<(), String> {
    let as_u32 = |value: u64| {
        u32::try_from(value).map_err(|_| format!("--{} {value}: too large", name.replace('_', "-")))
    };
    match (name, workload) {
        ("op_size", Workload::Null { op_size, .. }) => *op_size = as_u32(value)?,
        ("reply_size", Workload::Null { reply_size, .. }) => *reply_size = as_u32(value)?,
        ("value_size", Workload::Kv(kv)) => kv.value_size = as_u32(value)?,
        ("keys", Workload::Kv(kv)) => kv.keys = value,
        (name, _) if WORKLOAD_PARAMETERS.contains(&name) => {
            return Err(format!(
                "--set {name}: not a parameter of this workload (op_size and reply_size are the \
                 null app's; value_size and keys the kv app's)"
            ));
        }
        (name, _) => {
            return Err(format!(
                "--set {name}: neither a workload parameter ({}), {FSYNC}, nor PROTOCOL.TUNABLE",
                WORKLOAD_PARAMETERS.join(", ")
            ));
        }
    }
    Ok(())
}

/// One run of one protocol at one load.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Point {
    pub protocol: String,
    /// The value of every swept setting that applies to the protocol (see
    /// [`Experiment::variants`]); empty when nothing is swept.
    pub variant: Vec<(String, u64)>,
    pub clients: u32,
    /// Open loop: offered operations per second.
    pub rate: Option<u64>,
    /// 1-based, as the progress line and the results show it.
    pub trial: u32,
}

impl Point {
    /// The curve the point belongs to: the protocol, and the swept values
    /// if any (`pbft batch_max=16`).
    pub fn series(&self) -> String {
        series(&self.protocol, &self.variant)
    }
}

/// `protocol`, then each swept value: `pbft batch_max=16 op_size=64` (a
/// tunable's name without its protocol).
pub fn series(protocol: &str, variant: &[(String, u64)]) -> String {
    let mut series = protocol.to_string();
    for (name, value) in variant {
        let name = name
            .split_once('.')
            .map_or(name.as_str(), |(_, tunable)| tunable);
        series.push_str(&format!(" {name}={value}"));
    }
    series
}

impl std::fmt::Display for Point {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.protocol)?;
        for (name, value) in &self.variant {
            write!(f, " {name}={value}")?;
        }
        write!(f, " clients={}", self.clients)?;
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

    fn setting(name: &str, values: &[u64]) -> Setting {
        Setting {
            name: name.to_string(),
            values: values.to_vec(),
        }
    }

    #[test]
    fn settings_parse() {
        assert_eq!(
            Setting::parse("pbft.batch_max=1, 16").unwrap(),
            setting("pbft.batch_max", &[1, 16])
        );
        assert!(Setting::parse("pbft.batch_max").is_err());
        assert!(Setting::parse("pbft.batch_max=x").is_err());
        assert!(Setting::parse("pbft.batch_max=-1").is_err());
        assert!(Setting::parse("pbft.batch_max=").is_err());
    }

    /// Swept settings multiply into variants, each applied only where it
    /// belongs: a protocol's tunables to its own points, workload
    /// parameters to everyone's.
    #[test]
    fn sweeps_make_variants_per_protocol() {
        let mut experiment = Experiment::default_comparison();
        experiment.protocols = vec!["unreplicated".into(), "pbft".into()];
        experiment.sweep = Sweep::Clients(vec![1, 10]);
        experiment.settings = vec![
            setting("pbft.batch_max", &[1, 16]),
            setting("pbft.window", &[2]),
            setting("op_size", &[8, 64]),
        ];
        experiment.validate().unwrap();
        assert_eq!(experiment.variant_count("pbft"), 4);
        assert_eq!(experiment.variant_count("unreplicated"), 2);
        let points = experiment.points();
        assert_eq!(points.len(), 2 * (2 + 4));
        let labels: Vec<String> = points[..6].iter().map(Point::series).collect();
        assert_eq!(
            labels,
            [
                "unreplicated op_size=8",
                "unreplicated op_size=64",
                "pbft batch_max=1 op_size=8",
                "pbft batch_max=1 op_size=64",
                "pbft batch_max=16 op_size=8",
                "pbft batch_max=16 op_size=64",
            ]
        );
        assert!(points[..6].iter().all(|p| p.clients == 1));
        let pbft = &points[4];
        assert_eq!(
            experiment.node_settings(pbft),
            vec![("batch_max".to_string(), 16), ("window".to_string(), 2)]
        );
        assert_eq!(
            experiment.workload_at(pbft),
            Workload::Null {
                op_size: 8,
                reply_size: 0
            }
        );
        // The baseline gets no PBFT tunable.
        assert!(experiment.node_settings(&points[1]).is_empty());
        assert_eq!(
            experiment.workload_at(&points[1]),
            Workload::Null {
                op_size: 64,
                reply_size: 0
            }
        );
    }

    /// `fsync` is a run parameter: on unless set to 0, swept like any
    /// setting, and 0 or 1 only.
    #[test]
    fn fsync_is_a_run_parameter() {
        let mut experiment = Experiment::default_comparison();
        let points = experiment.points();
        assert!(experiment.fsync_at(&points[0]), "on by default");
        experiment.settings = vec![setting(FSYNC, &[0, 1])];
        assert!(experiment.problems().is_empty());
        let points = experiment.points();
        assert_eq!(
            points.len(),
            2 * experiment.protocols.len() * DEFAULT_CLIENTS.len()
        );
        let fsyncs: Vec<bool> = points.iter().map(|p| experiment.fsync_at(p)).collect();
        assert!(fsyncs.contains(&true) && fsyncs.contains(&false));
        assert_eq!(experiment.workload_at(&points[0]), experiment.workload);
        experiment.settings = vec![setting(FSYNC, &[2])];
        assert_eq!(experiment.problems(), ["--set fsync=2: 0 (off) or 1 (on)"]);
    }

    #[test]
    fn settings_problems_are_listed() {
        let mut experiment = Experiment::default_comparison();
        experiment.settings = vec![
            setting("pbft.batch_max", &[0, 257]),
            setting("pbft.batch_max", &[1]),
            setting("op_size", &[100_000]),
            setting("keys", &[1]),
            setting("nonsense", &[1]),
            setting("pbft.window", &[]),
        ];
        let problems = experiment.problems();
        assert_eq!(
            problems,
            [
                "--set pbft.batch_max=0: out of range, 1 to 256 requests (default 256)",
                "--set pbft.batch_max=257: out of range, 1 to 256 requests (default 256)",
                "--set pbft.batch_max is given twice",
                "--set keys: not a parameter of this workload (op_size and reply_size are the \
                 null app's; value_size and keys the kv app's)",
                "--set nonsense: neither a workload parameter (op_size, reply_size, value_size, \
                 keys), fsync, nor PROTOCOL.TUNABLE",
                "--set pbft.window: no value",
                "--op-size 100000: at most 64483 bytes (an operation fits in a datagram)",
            ]
        );
        experiment.protocols = vec![BASELINE.to_string()];
        experiment.settings = vec![setting("pbft.window", &[2])];
        assert_eq!(
            experiment.problems(),
            ["--set pbft.window: pbft is not one of the protocols this experiment runs"]
        );
    }

    /// An experiment recorded before settings existed reads back without
    /// them.
    #[test]
    fn experiments_without_settings_read_back() {
        let experiment = Experiment::default_comparison();
        let mut json = serde_json::to_value(&experiment).unwrap();
        json.as_object_mut().unwrap().remove("settings");
        let back: Experiment = serde_json::from_value(json).unwrap();
        assert_eq!(back, experiment);
    }

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
        // Points of their own length: the default's depends on how many
        // protocols there are.
        let base = Experiment {
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            cooldown: Duration::from_millis(500),
            ..Experiment::default_comparison()
        };
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
                    workload: Workload::Null {
                        op_size: 100_000,
                        reply_size: 0,
                    },
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
            protocols: vec!["unreplicated".into(), "pbft".into()],
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
        assert_eq!(replica_count("chain", 1).unwrap(), 2);
        assert_eq!(node_count("chain", 1).unwrap(), 3);
        // Every node is a replica or one of the protocol's services.
        for spec in PROTOCOLS {
            for f in 0..4 {
                assert_eq!(
                    node_count(spec.name, f).unwrap(),
                    replica_count(spec.name, f).unwrap() + spec.services.len() as u32
                );
            }
        }
        assert!(node_count("nope", 1).is_err());
    }

    #[test]
    fn a_group_with_a_master_needs_ports_for_it_too() {
        assert!(group_problems(&TEST_CHAIN, 1).is_empty());
        assert_eq!(
            group_problems(&TEST_CHAIN, 0),
            ["--f 0: chain is replicated, to tolerate f >= 1 faults"]
        );
        // 31 replicas and the master use every port of a point's set.
        assert!(group_problems(&TEST_CHAIN, 30).is_empty());
        assert_eq!(
            group_problems(&TEST_CHAIN, 31),
            [
                "--f 31: chain would run 32 replicas and a master, 33 nodes; \
              a point has ports for at most 32"
            ]
        );
        assert_eq!(
            group_problems(&TEST_CHAIN, 32),
            ["--f 32: chain would run 33 replicas; it runs at most 32"]
        );
        let pbft = protocol_spec("pbft").unwrap();
        assert_eq!(
            group_problems(pbft, 4),
            ["--f 4: pbft would run 13 replicas; it runs at most 10"]
        );
    }
}
