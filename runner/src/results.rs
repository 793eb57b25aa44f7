//! What a run measured, and the files it leaves: `results.csv`,
//! `results.json`, `plot.svg`, `plot.png` (and, from [`crate::timeline`],
//! `timeline.csv`, `recovery.csv` and the timeline figures).
//!
//! [`crate::save::write_all`] writes the files; [`summary_table`] is the table the
//! runner prints at the end. Both, and the plot, aggregate a protocol's trials
//! at one load the same way ([`loads`], [`Spread`]): the mean, lowest and
//! highest value and the sample standard deviation of the trials'
//! throughputs, of their p50s and of their p99s (percentiles are each trial's
//! own, from its histogram: a mean of percentiles, not a percentile of the
//! merged histograms). Points are grouped by protocol, clients and offered
//! rate, whatever order they ran in; within a group the values are sorted
//! before they are summed, so the figures do not depend on that order.
//!
//! # `results.csv`
//!
//! One row per point (protocol × load × trial), sorted like the summary table
//! (`unreplicated` first, then protocols by name; then clients, offered rate,
//! trial). Empty cells mean "not applicable". Columns:
//!
//! | column | meaning |
//! | --- | --- |
//! | `protocol`, `clients`, `trial` | the point; `trial` counts from 1, as the progress line does |
//! | `variant` | the swept settings' values at the point (`batch_max=16 op_size=64`: a protocol's tunables, workload parameters); empty when nothing is swept. Each variant is its own curve and table row, and is compared with the baseline at the same workload and run parameters (`fsync`); the baseline's own variants with themselves |
//! | `throughput_ops` | operations completed per second in the measured window |
//! | `latency_us_p50`, `latency_us_p99`, `latency_us_mean` | request latency in the measured window, µs |
//! | `offered_ops` | open loop: the offered rate, operations per second; empty in closed loop |
//! | `measured_ops`, `measured_ms` | operations in the measured window, and its length |
//! | `ratio_to_baseline` | `throughput_ops` over the mean throughput of the `unreplicated` trials at the same `clients` and `offered_ops`; empty without such trials. Per trial, so `unreplicated`'s own rows scatter around 1.0 by trial-to-trial noise; they average to exactly 1.0 |
//! | `replica_cpu_ms`, `client_cpu_ms` | CPU time (user + system) of all replica processes (with the services a protocol runs beside its replicas, such as chain replication's master), of all client processes, from start to stop |
//! | `cpu_us_per_op` | (`replica_cpu_ms` + `client_cpu_ms` − `replica_idle_spin_ms` − `client_idle_spin_ms`) × 1000 / `run_ops`: µs of CPU, replicas and clients together, per operation, idle polling excluded |
//! | `replica_cpu_us_per_op` | (`replica_cpu_ms` − `replica_idle_spin_ms`) × 1000 / `run_ops`: the replicas' share, summed over all replicas. The figure to compare across machines: client cost depends on how the load is generated, replica cost on the protocol |
//! | `run_ops` | operations completed over the whole run, warm-up and cool-down included: the sum of the per-interval counts, or `measured_ops` if that is larger (no intervals recorded) |
//! | `replica_cpu_ratio_to_baseline` | `replica_cpu_us_per_op` over the mean of the `unreplicated` trials' at the same load: how many times the baseline's CPU an operation costs the replicas |
//! | `replica_idle_spin_ms`, `client_idle_spin_ms` | of the CPU times above, the time the nodes' threads spent polling with nothing to do (busy polling, or the spin before a block), summed over threads, each measured on its thread's own CPU clock |
//! | `busiest_node_cpu_us_per_op` | the largest over nodes (replicas and services) of a node's CPU time less its idle polling, × 1000 / `run_ops`: what bounds throughput when every node has a core of its own (see `--equal-cpu`) |
//! | `client_cpu_us_per_op` | (`client_cpu_ms` − `client_idle_spin_ms`) × 1000 / `run_ops` |
//! | `mean_batch` | requests per batch the protocol's leader proposed (its `requests batched` counter over its `batches proposed`, [`wire::control::BATCHES_COUNTER`]); empty for a protocol that does not batch |
//! | `view_changes` | view changes the replicas started, summed over replicas ([`wire::control::VIEW_CHANGES_COUNTER`]): a correct leader under load should cause none |
//! | `kernel_drops` | datagrams the kernel dropped at full socket receive buffers, every node together ([`wire::control::KERNEL_DROPS_COUNTER`]) |
//! | `open_loop_no_free_client` | open loop: scheduled arrivals never sent because every client was busy and the backlog full, or still queued at the stop, over the whole run ([`wire::control::OPEN_LOOP_NO_FREE_CLIENT_COUNTER`]); empty in closed loop |
//! | `replicas` | replicas the protocol ran (`f` from the recorded experiment), not counting its services (a master); empty if the experiment does not read back |
//! | `replica_transport`, `client_transport` | the UDP transport the replicas, and the clients node, reported using (`io_uring`, `epoll`; `io_uring+epoll` if the replicas differed); empty in results recorded before nodes reported it |
//! | `trials` | trials of this row's load (protocol, `clients`, `offered_ops`) in the run |
//! | `throughput_ops_mean`, `_min`, `_max`, `_stdev` | over the trials of this row's load: mean, lowest, highest, sample standard deviation (n − 1; empty with one trial). The same on every row of the load: one row per load (`trial` = 1) is the summary table |
//! | `latency_us_p50_mean`, `_min`, `_max`, `_stdev` | the same for the trials' p50 |
//! | `latency_us_p99_mean`, `_min`, `_max`, `_stdev` | the same for the trials' p99 |
//! | `replica_cpu_us_per_op_mean`, `_min`, `_max` | the same for `replica_cpu_us_per_op` |
//! | `mean_batch_mean`, `_min`, `_max` | the same for `mean_batch` |
//!
//! The CPU figures divide by `run_ops`, not `measured_ops`, because the CPU
//! times cover the processes' whole lives, warm-up and cool-down included;
//! dividing by the measured window alone would overstate the cost per
//! operation by the ratio of run length to window length. The per-operation
//! figures leave out what a thread spends polling while idle (busy polling,
//! or the spin of `--idle spin:<µs>` before it blocks): on shared cores
//! total CPU decides throughput, and counting a spinning thread's idle time
//! would charge a protocol for the cores it did not need.
//!
//! # `results.json`
//!
//! The whole [`RunResults`], pretty-printed: the configured experiment, every
//! point with its per-interval series, counters and the transport each node
//! used. It reads back into an equal `RunResults` (floats round-trip exactly).
//!
//! # `plot.svg`, `plot.png`
//!
//! Throughput against latency, one curve per protocol, with error bars and
//! load labels, and smaller panels of CPU per operation, batch size and (open
//! loop) throughput against offered load: see [`crate::plot`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use wire::control::{
    AppConfig, BATCHES_COUNTER, Completions, Idle, IntervalReport, KERNEL_DROPS_COUNTER,
    KeyDistribution, OPEN_LOOP_NO_FREE_CLIENT_COUNTER, REQUESTS_BATCHED_COUNTER, TransportKind,
    VIEW_CHANGES_COUNTER, Workload,
};

use crate::experiment::{
    BASELINE, EqualCpu, Experiment, FSYNC, ProtocolSpec, Sweep, protocol_spec, replica_count,
};

/// One measured point: one protocol at one load, one trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub protocol: String,
    /// The swept settings' values at this point (see
    /// [`crate::experiment::Experiment::variants`]); empty when nothing was
    /// swept, and in results recorded before sweeps existed.
    #[serde(default)]
    pub variant: Vec<(String, u64)>,
    /// Closed-loop clients (or, open loop, the clients sharing the rate).
    pub clients: u32,
    /// Open loop: the offered rate, operations per second.
    pub offered_ops: Option<u64>,
    /// Counts from 1.
    pub trial: u32,
    /// Operations completed per second in the measured window (warm-up and
    /// cool-down trimmed).
    pub throughput_ops: f64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub latency_us_mean: f64,
    /// Operations in the measured window, and its length.
    pub measured_ops: u64,
    pub measured_ms: u64,
    /// The clients' per-interval progress over the whole run.
    pub intervals: Vec<IntervalReport>,
    /// CPU time of all replica processes (the protocol's services with
    /// them) and of all client processes.
    pub replica_cpu_ms: u64,
    pub client_cpu_ms: u64,
    /// Each node's CPU time and idle polling, by node id (replicas, then
    /// the protocol's services); empty in results recorded before nodes
    /// reported their idle polling.
    #[serde(default)]
    pub node_cpu: Vec<NodeCpu>,
    /// Of `client_cpu_ms`, the time the client threads spent polling with
    /// nothing to do.
    #[serde(default)]
    pub client_idle_spin_ms: u64,
    /// Every node's counters, summed by name.
    pub counters: BTreeMap<String, u64>,
    /// The transport each replica reported in its `Started` event, by
    /// node id, services after the replicas (empty in results recorded
    /// before nodes reported it).
    #[serde(default)]
    pub replica_transports: Vec<TransportKind>,
    /// The transport the clients node reported.
    #[serde(default)]
    pub client_transport: Option<TransportKind>,
    /// The scheduled faults this point applied, in the order they were
    /// applied (empty without a fault schedule, and in results recorded
    /// before schedules existed). A node the schedule killed sent no
    /// totals: the counters and CPU time of a killed incarnation are
    /// missing from `counters` and `replica_cpu_ms`.
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    /// The clients' completions over the whole run, binned by completion
    /// time: what [`PointResult::recovery`] is computed from (empty in
    /// results recorded before they existed).
    #[serde(default)]
    pub completions: Completions,
    /// How the point came back from each of its faults
    /// ([`crate::timeline::annotate`] fills it when the results are saved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery: Vec<crate::timeline::Recovery>,
    /// A rotating leader's periodic dip (filled like `recovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub periodic_dip: Option<crate::timeline::PeriodicDip>,
    /// With the key-value app: the clients' history of the sampled keys,
    /// checked linearizable (see [`crate::history`]); `None` for other apps
    /// and in results recorded before histories were checked.
    #[serde(default)]
    pub history: Option<crate::history::HistoryChecked>,
}

/// One node's CPU time over its life, and how much of its threads' time
/// went to polling with nothing to do ([`wire::control::FinalReport`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCpu {
    pub cpu_ms: u64,
    pub idle_spin_ms: u64,
}

impl NodeCpu {
    /// The CPU time that did work: idle polling taken out (clamped at zero,
    /// for reports that do not add up).
    pub fn working_ms(&self) -> u64 {
        self.cpu_ms.saturating_sub(self.idle_spin_ms)
    }
}

/// A scheduled fault as it was applied: when, in milliseconds since the
/// clients node started (the clock of the clients' interval reports), and
/// what, in the schedule's own words (`kill primary (replica 0)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub at_ms: u64,
    pub label: String,
}

impl PointResult {
    /// Operations completed over the whole run, the span the CPU times cover:
    /// the sum of the per-interval counts, at least `measured_ops`.
    pub fn run_ops(&self) -> u64 {
        let intervals: u64 = self.intervals.iter().map(|interval| interval.ops).sum();
        intervals.max(self.measured_ops)
    }

    /// The replicas' (and services') CPU time with their idle polling taken
    /// out ([`NodeCpu::working_ms`]).
    pub fn replica_working_ms(&self) -> u64 {
        let spin: u64 = self.node_cpu.iter().map(|node| node.idle_spin_ms).sum();
        self.replica_cpu_ms.saturating_sub(spin)
    }

    /// The clients' CPU time with their idle polling taken out.
    pub fn client_working_ms(&self) -> u64 {
        self.client_cpu_ms.saturating_sub(self.client_idle_spin_ms)
    }

    /// Replica plus client CPU per operation, idle polling excluded, µs;
    /// `None` if no operation completed.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        per_op_us(
            self.replica_working_ms() + self.client_working_ms(),
            self.run_ops(),
        )
    }

    /// Replica CPU (all replicas together, and the protocol's services) per
    /// operation, idle polling excluded, µs; `None` if no operation
    /// completed.
    pub fn replica_cpu_us_per_op(&self) -> Option<f64> {
        per_op_us(self.replica_working_ms(), self.run_ops())
    }

    /// The busiest node's CPU per operation, idle polling excluded, µs: the
    /// node that bounds throughput when every node has a core of its own.
    /// `None` if no operation completed or no node reported.
    pub fn busiest_node_cpu_us_per_op(&self) -> Option<f64> {
        let busiest = self.node_cpu.iter().map(NodeCpu::working_ms).max()?;
        per_op_us(busiest, self.run_ops())
    }

    /// The clients' CPU per operation, idle polling excluded, µs.
    pub fn client_cpu_us_per_op(&self) -> Option<f64> {
        per_op_us(self.client_working_ms(), self.run_ops())
    }

    /// The counter `name`, summed over every node (0 if none reported it).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Requests per batch the leader proposed, over the whole run; `None` if
    /// the protocol reported no batches.
    pub fn mean_batch(&self) -> Option<f64> {
        let batches = self.counters.get(BATCHES_COUNTER).copied().unwrap_or(0);
        let requests = self
            .counters
            .get(REQUESTS_BATCHED_COUNTER)
            .copied()
            .unwrap_or(0);
        (batches > 0).then(|| requests as f64 / batches as f64)
    }
}

/// Everything one invocation of the runner measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// The experiment's name (`default`, `bench`, ...).
    pub name: String,
    /// When the run started, RFC 3339, UTC.
    pub started: String,
    /// Where it ran: `local processes on 127.0.0.2 and up`, ...
    pub hosts: String,
    /// The experiment as configured: `runner rerun` runs it again.
    pub experiment: serde_json::Value,
    /// The code, toolchain, machine and load the numbers came from.
    #[serde(default)]
    pub provenance: crate::provenance::Provenance,
    /// Every protocol's fixed parameters (batch maximum, window, timeouts,
    /// ...), name and value, as its replicas reported them.
    #[serde(default)]
    pub parameters: BTreeMap<String, Vec<(String, String)>>,
    pub points: Vec<PointResult>,
}

impl RunResults {
    /// The recorded experiment, if it reads back (results written by an
    /// older runner may not).
    pub fn recorded_experiment(&self) -> Option<Experiment> {
        serde_json::from_value(self.experiment.clone()).ok()
    }
}

/// One figure over a load's trials.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    /// The sample standard deviation (n − 1 in the denominator); `None` for
    /// a single value.
    pub stdev: Option<f64>,
}

impl Spread {
    /// The spread of `values`, `None` if there are none. The values are
    /// sorted before they are summed, so their order does not change a bit
    /// of the result.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut values: Vec<f64> = values.into_iter().collect();
        values.sort_by(f64::total_cmp);
        let (&min, &max) = (values.first()?, values.last()?);
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let stdev = (values.len() > 1).then(|| {
            let squares: f64 = values.iter().map(|value| (value - mean).powi(2)).sum();
            (squares / (n - 1.0)).sqrt()
        });
        Some(Spread {
            mean,
            min,
            max,
            stdev,
        })
    }

    /// Whether the trials differ at all (something for an error bar to show).
    pub fn varies(&self) -> bool {
        self.max > self.min
    }
}

/// One protocol at one load, its trials aggregated.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    pub protocol: String,
    /// The swept settings' values (see [`PointResult::variant`]).
    pub variant: Vec<(String, u64)>,
    pub clients: u32,
    pub offered_ops: Option<u64>,
    /// How many trials were aggregated (at least 1).
    pub trials: u32,
    pub throughput_ops: Spread,
    pub latency_us_p50: Spread,
    pub latency_us_p99: Spread,
    /// Mean `throughput_ops` over the baseline's at the same load, if it ran
    /// there.
    pub ratio_to_baseline: Option<f64>,
    /// The replicas' CPU per operation, µs, over the trials that completed
    /// an operation.
    pub replica_cpu_us_per_op: Option<Spread>,
    /// Mean `replica_cpu_us_per_op` over the baseline's at the same load.
    pub cpu_ratio_to_baseline: Option<f64>,
    /// The busiest node's CPU per operation
    /// ([`PointResult::busiest_node_cpu_us_per_op`]), over the trials that
    /// report it.
    pub busiest_node_cpu_us_per_op: Option<Spread>,
    /// The clients' CPU per operation ([`PointResult::client_cpu_us_per_op`]).
    pub client_cpu_us_per_op: Option<Spread>,
    /// Requests per batch, over the trials that reported batches; `None`
    /// for a protocol that does not batch.
    pub mean_batch: Option<Spread>,
}

impl Load {
    /// Its curve's name: the protocol, and the swept values if any.
    pub fn series(&self) -> String {
        crate::experiment::series(&self.protocol, &self.variant)
    }

    /// Where the load sits on a load axis: the offered rate in open loop,
    /// else the client count.
    pub fn level(&self) -> f64 {
        self.offered_ops
            .map_or(f64::from(self.clients), |rate| rate as f64)
    }
}

/// How a run was set up, each part as the table header and the plot's
/// subtitle print it. Parts the recorded experiment would tell are `None` if
/// it does not read back.
#[derive(Clone, Debug, PartialEq)]
pub struct Setup {
    /// `f = 1: unreplicated 1 replica, pbft 4 replicas`, with the services
    /// a protocol runs beside its replicas (`chain 2 replicas and a
    /// master`).
    pub replicas: Option<String>,
    /// `null app, 16-byte operations` or `kv app: 10,000 keys, 128-byte
    /// values, 90% gets, zipf 0.99`.
    pub workload: Option<String>,
    /// `closed loop` or `open loop, poisson arrivals, 100 clients`.
    pub load: Option<String>,
    /// What the nodes reported using: `io_uring`, or `replicas io_uring,
    /// clients epoll`; with what was asked if that differs (`auto →
    /// io_uring`).
    pub transport: String,
    /// `busy polling` or `spin 100 µs, then block`.
    pub idle: Option<String>,
    /// `5 s per point, 3.5 s measured (1 s warm-up, 500 ms cool-down trimmed)`.
    pub window: Option<String>,
    /// `3 trials per load`, `1–3 trials per load` (a run cut short).
    pub trials: String,
    /// The most trials any load has.
    pub trials_max: u32,
    /// `fsync off (not crash-safe)` when every point ran with `fsync=0`.
    pub durability: Option<String>,
    /// The emulated WAN and what applied it (`delay 5ms per egress, by
    /// user-space emulation in the nodes' transports`); `None` without one.
    pub wan: Option<String>,
}

/// A protocol's group for `f` faults, as the setup names it: `pbft 4
/// replicas`, `unreplicated 1 replica`, `chain 2 replicas and a master`.
fn group_label(spec: &ProtocolSpec, f: u32) -> String {
    let (protocol, n) = (spec.name, spec.replicas(f));
    let replicas = if n == 1 { "replica" } else { "replicas" };
    match spec.services_phrase() {
        services if services.is_empty() => format!("{protocol} {n} {replicas}"),
        services => format!("{protocol} {n} {replicas} and {services}"),
    }
}

/// The run's [`Setup`], from its recorded experiment and its points.
pub fn setup(results: &RunResults) -> Setup {
    let experiment = results.recorded_experiment();
    let loads = loads(results);
    let mut protocols: Vec<&str> = loads.iter().map(|load| load.protocol.as_str()).collect();
    protocols.dedup();
    if protocols.is_empty()
        && let Some(experiment) = &experiment
    {
        protocols = experiment.protocols.iter().map(String::as_str).collect();
        protocols.sort_by_key(|protocol| ProtocolOrder(protocol));
    }
    let replicas = experiment.as_ref().map(|experiment| {
        let counts: Vec<String> = protocols
            .iter()
            .map(|protocol| match protocol_spec(protocol) {
                Some(spec) => group_label(spec, experiment.f),
                None => format!("{protocol} ? replicas"),
            })
            .collect();
        format!("f = {}: {}", experiment.f, counts.join(", "))
    });
    let workload = experiment
        .as_ref()
        .map(|experiment| workload_label(experiment.app, &experiment.workload));
    let load = experiment
        .as_ref()
        .map(|experiment| match &experiment.sweep {
            Sweep::Clients(_) => "closed loop".to_owned(),
            Sweep::Rates { clients, .. } => format!(
                "open loop, {} arrivals, {} client{}",
                experiment.arrivals,
                thousands(u64::from(*clients)),
                if *clients == 1 { "" } else { "s" }
            ),
        });
    let durability = experiment.as_ref().and_then(|experiment| {
        let fsync = experiment.settings.iter().find(|s| s.name == FSYNC)?;
        (fsync.values == [0]).then(|| "fsync off (not crash-safe)".to_owned())
    });
    let idle = experiment.as_ref().map(|experiment| {
        let idle = match experiment.idle {
            Idle::Busy => "busy polling".to_owned(),
            Idle::SpinThenBlock { spin_us } => format!("spin {spin_us} µs, then block"),
        };
        match experiment.equal_cpu {
            Some(EqualCpu::Cores(cores)) => {
                format!("{idle} · equal CPU: {cores:.2} cores per node")
            }
            Some(EqualCpu::Auto) => format!("{idle} · equal CPU"),
            None => idle,
        }
    });
    let window = experiment.as_ref().map(|experiment| {
        format!(
            "{} per point, {} measured ({} warm-up, {} cool-down trimmed)",
            duration_label(experiment.duration),
            duration_label(experiment.measured()),
            duration_label(experiment.warmup),
            duration_label(experiment.cooldown)
        )
    });
    let min = loads.iter().map(|load| load.trials).min().unwrap_or(0);
    let max = loads.iter().map(|load| load.trials).max().unwrap_or(0);
    let trials = match (min, max) {
        (0, _) => experiment.as_ref().map_or("no trials".to_owned(), |e| {
            format!(
                "{} trial{} per load",
                e.trials,
                if e.trials == 1 { "" } else { "s" }
            )
        }),
        (1, 1) => "1 trial per load".to_owned(),
        (min, max) if min == max => format!("{min} trials per load"),
        (min, max) => format!("{min}–{max} trials per load"),
    };
    Setup {
        replicas,
        workload,
        load,
        transport: transport_label(results, experiment.as_ref().map(|e| e.transport)),
        idle,
        window,
        trials,
        trials_max: max,
        durability,
        wan: experiment
            .as_ref()
            .filter(|experiment| !experiment.wan.is_none())
            .map(|experiment| experiment.wan.to_string()),
    }
}

fn workload_label(app: AppConfig, workload: &Workload) -> String {
    match (app, workload) {
        (
            AppConfig::Null,
            Workload::Null {
                op_size,
                reply_size,
            },
        ) => {
            let mut label = format!("null app, {op_size}-byte operations");
            if *reply_size > 0 {
                label.push_str(&format!(", {reply_size}-byte replies"));
            }
            label
        }
        (_, Workload::Kv(kv)) => format!(
            "kv app: {} keys, {}-byte values, {}% gets, {}",
            thousands(kv.keys),
            kv.value_size,
            trimmed_number(kv.read_ratio * 100.0),
            match kv.distribution {
                KeyDistribution::Uniform => "uniform keys".to_owned(),
                KeyDistribution::Zipf { exponent } =>
                    format!("zipf {} keys", trimmed_number(exponent)),
            }
        ),
        (app, Workload::Null { op_size, .. }) => format!("{app:?} app, {op_size}-byte operations"),
    }
}

/// `io_uring`, `epoll`, `auto`.
pub fn transport_name(kind: TransportKind) -> &'static str {
    match kind {
        TransportKind::Auto => "auto",
        TransportKind::IoUring => "io_uring",
        TransportKind::Epoll => "epoll",
    }
}

/// The kinds in `kinds`, distinct, joined with `+`; empty for none.
fn transports_joined(kinds: impl IntoIterator<Item = TransportKind>) -> String {
    let names: BTreeSet<&str> = kinds.into_iter().map(transport_name).collect();
    names.into_iter().collect::<Vec<_>>().join("+")
}

/// What every node of the run reported using, with what was asked if the
/// nodes' choice differs from it.
fn transport_label(results: &RunResults, asked: Option<TransportKind>) -> String {
    let replicas = transports_joined(
        results
            .points
            .iter()
            .flat_map(|point| point.replica_transports.iter().copied()),
    );
    let clients = transports_joined(
        results
            .points
            .iter()
            .filter_map(|point| point.client_transport),
    );
    let used = match (replicas.as_str(), clients.as_str()) {
        ("", "") => {
            return asked.map_or("transport not recorded".to_owned(), |asked| {
                format!(
                    "transport {} (asked; nodes did not report)",
                    transport_name(asked)
                )
            });
        }
        (replicas, clients) if replicas == clients || clients.is_empty() => replicas.to_owned(),
        ("", clients) => clients.to_owned(),
        (replicas, clients) => format!("replicas {replicas}, clients {clients}"),
    };
    match asked {
        Some(asked) if transport_name(asked) != used => {
            format!("transport {} → {used}", transport_name(asked))
        }
        _ => format!("transport {used}"),
    }
}

/// `2 s`, `1.5 s`, `500 ms`.
fn duration_label(duration: Duration) -> String {
    if duration >= Duration::from_secs(1) {
        format!("{} s", trimmed_number(duration.as_secs_f64()))
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// Up to three decimals, trailing zeros dropped.
fn trimmed_number(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The lines above the table: name, time and hosts, then the [`Setup`].
fn table_header(results: &RunResults) -> Vec<String> {
    let setup = setup(results);
    let unknown = || "(not recorded)".to_owned();
    let mut lines = vec![format!(
        "{} · started {} · {}",
        results.name, results.started, results.hosts
    )];
    lines.push(format!(
        "replicas: {}",
        setup.replicas.clone().unwrap_or_else(unknown)
    ));
    lines.push(format!(
        "workload: {}, {}",
        setup.workload.clone().unwrap_or_else(unknown),
        setup.load.clone().unwrap_or_else(unknown)
    ));
    lines.push(format!(
        "nodes:    {} · idle: {}{}",
        setup.transport,
        setup.idle.clone().unwrap_or_else(unknown),
        setup
            .durability
            .as_ref()
            .map_or_else(String::new, |d| format!(" · {d}"))
    ));
    lines.push(format!(
        "points:   {} · {}",
        setup.window.clone().unwrap_or_else(unknown),
        setup.trials
    ));
    if let Some(wan) = &setup.wan {
        lines.push(format!("network:  {wan}"));
    }
    lines
}

/// The summary the runner prints at the end: what ran (f and each protocol's
/// replicas, app and workload, the transport the nodes used, idle mode,
/// point length and measured window, trials), then a fixed-width table with
/// one row per (protocol, load), trials aggregated, `unreplicated` first,
/// then protocols by name, then by clients; then a legend of the columns.
/// The offered-rate column appears only if some point ran open loop, the
/// min–max columns only if some load has more than one trial.
///
/// ```text
/// protocol      clients  throughput ops/s  ops/s min–max  p50 µs  p50 min–max  ...  vs unreplicated  batch  CPU µs/op  CPU vs unrepl.
/// unreplicated        1            12,500  12,400–12,600      78        77–79  ...            1.00x      —        9.0            1.0x
/// pbft                1             3,900    3,850–3,950     251      249–253  ...            0.31x    1.0       90.0           10.0x
/// ```
pub fn summary_table(results: &RunResults) -> String {
    let loads = loads(results);
    let open_loop = loads.iter().any(|load| load.offered_ops.is_some());
    let spread = loads.iter().any(|load| load.trials > 1);

    // Each column with what the legend says of it; the min–max columns
    // share one line of the legend.
    let mut columns: Vec<(&str, Option<&str>)> = vec![
        ("protocol", None),
        (
            "clients",
            Some(if open_loop {
                "clients sharing the offered rate (closed loop: each with one request outstanding)"
            } else {
                "closed-loop clients, each with one request outstanding"
            }),
        ),
    ];
    if open_loop {
        columns.push((
            "offered ops/s",
            Some("open loop: operations offered per second (— : closed loop)"),
        ));
    }
    columns.push((
        "throughput ops/s",
        Some("operations completed per second in the measured window; mean over trials"),
    ));
    if spread {
        columns.push(("ops/s min–max", None));
    }
    columns.push((
        "p50 µs",
        Some("median latency in the measured window; mean of the trials' medians"),
    ));
    if spread {
        columns.push(("p50 min–max", None));
    }
    columns.push((
        "p99 µs",
        Some("99th-percentile latency; mean of the trials' p99s"),
    ));
    if spread {
        columns.push(("p99 min–max", None));
    }
    columns.extend([
        (
            "vs unreplicated",
            Some("throughput over the unreplicated baseline's at the same load"),
        ),
        (
            "batch",
            Some("requests per batch the leader proposed (— : the protocol does not batch)"),
        ),
        (
            "CPU µs/op",
            Some(
                "CPU time of all replicas together per operation, over the whole run, \
                 idle polling excluded",
            ),
        ),
        (
            "CPU vs unrepl.",
            Some("CPU µs/op over the baseline's at the same load"),
        ),
        (
            "busiest µs/op",
            Some(
                "the busiest node's CPU per operation, idle polling excluded: \
                 what bounds throughput when every node has a core of its own",
            ),
        ),
        (
            "clients µs/op",
            Some("the clients' CPU per operation, idle polling excluded"),
        ),
    ]);
    let mut legend: Vec<(&str, &str)> = Vec::new();
    for (name, meaning) in &columns {
        if let Some(meaning) = meaning {
            legend.push((name, meaning));
        }
        if *name == "p99 µs" && spread {
            legend.push((
                "… min–max",
                "the lowest and the highest trial (results.csv: also the standard deviation)",
            ));
        }
    }
    if loads.iter().any(|load| {
        load.variant
            .iter()
            .any(|(name, v)| name == FSYNC && *v == 0)
    }) {
        legend.push((
            "fsync=0",
            "replicas did not fsync what their protocol persists: not crash-safe",
        ));
    }
    let dash = || "—".to_owned();
    let rows: Vec<Vec<String>> = loads
        .iter()
        .map(|load| {
            let mut row = vec![load.series(), load.clients.to_string()];
            if open_loop {
                row.push(load.offered_ops.map_or_else(dash, thousands));
            }
            let rounded = |value: f64| thousands(value.round() as u64);
            let range =
                |spread: &Spread| format!("{}–{}", rounded(spread.min), rounded(spread.max));
            for figure in [
                &load.throughput_ops,
                &load.latency_us_p50,
                &load.latency_us_p99,
            ] {
                row.push(rounded(figure.mean));
                if spread {
                    row.push(range(figure));
                }
            }
            row.push(load.ratio_to_baseline.map_or_else(dash, ratio_label));
            row.push(
                load.mean_batch
                    .map_or_else(dash, |b| format!("{:.1}", b.mean)),
            );
            row.push(
                load.replica_cpu_us_per_op
                    .map_or_else(dash, |cpu| one_decimal(cpu.mean)),
            );
            row.push(
                load.cpu_ratio_to_baseline
                    .map_or_else(dash, |r| format!("{r:.1}x")),
            );
            for cpu in [load.busiest_node_cpu_us_per_op, load.client_cpu_us_per_op] {
                row.push(cpu.map_or_else(dash, |cpu| one_decimal(cpu.mean)));
            }
            row
        })
        .collect();

    let header: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header[column].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    for line in table_header(results) {
        table.push_str(&line);
        table.push('\n');
    }
    table.push('\n');
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (column, cell) in cells.iter().enumerate() {
            if column > 0 {
                text.push_str("  ");
            }
            // The protocol column reads left to right; numbers align right.
            if column == 0 {
                let _ = write!(text, "{cell:<width$}", width = widths[column]);
            } else {
                let _ = write!(text, "{cell:>width$}", width = widths[column]);
            }
        }
        table.push_str(text.trim_end());
        table.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    table.push('\n');
    let name_width = legend
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    for (name, meaning) in legend {
        let _ = writeln!(table, "  {name:<name_width$}  {meaning}");
    }
    table
}

/// A load's key: protocol (baseline first), swept values, clients, offered
/// rate.
type LoadKey<'a> = (ProtocolOrder<'a>, &'a [(String, u64)], u32, Option<u64>);

/// The workload and run parameters (`fsync`) among swept values (a
/// tunable's name has its protocol before a dot).
fn workload_variant(variant: &[(String, u64)]) -> Vec<(String, u64)> {
    variant
        .iter()
        .filter(|(name, _)| !name.contains('.'))
        .cloned()
        .collect()
}

/// The points grouped by load, whatever order they ran in; each group sorted
/// by trial.
fn groups(results: &RunResults) -> BTreeMap<LoadKey<'_>, Vec<&PointResult>> {
    let mut groups: BTreeMap<LoadKey<'_>, Vec<&PointResult>> = BTreeMap::new();
    for point in &results.points {
        groups
            .entry((
                ProtocolOrder(&point.protocol),
                &point.variant[..],
                point.clients,
                point.offered_ops,
            ))
            .or_default()
            .push(point);
    }
    for trials in groups.values_mut() {
        trials.sort_by_key(|point| point.trial);
    }
    groups
}

/// The points grouped by (protocol, clients, offered rate), trials
/// aggregated, in table order: `unreplicated` first, then protocols by name,
/// then clients, then offered rate. The order the points ran in does not
/// matter.
pub fn loads(results: &RunResults) -> Vec<Load> {
    let mut loads: Vec<Load> = groups(results)
        .into_iter()
        .map(|((protocol, variant, clients, offered_ops), trials)| {
            let spread = |value: fn(&PointResult) -> f64| {
                Spread::of(trials.iter().map(|point| value(point))).expect("a group has a point")
            };
            Load {
                protocol: protocol.0.to_owned(),
                variant: variant.to_vec(),
                clients,
                offered_ops,
                trials: u32::try_from(trials.len()).unwrap_or(u32::MAX),
                throughput_ops: spread(|point| point.throughput_ops),
                latency_us_p50: spread(|point| point.latency_us_p50 as f64),
                latency_us_p99: spread(|point| point.latency_us_p99 as f64),
                ratio_to_baseline: None,
                replica_cpu_us_per_op: Spread::of(
                    trials
                        .iter()
                        .filter_map(|point| point.replica_cpu_us_per_op()),
                ),
                cpu_ratio_to_baseline: None,
                busiest_node_cpu_us_per_op: Spread::of(
                    trials
                        .iter()
                        .filter_map(|point| point.busiest_node_cpu_us_per_op()),
                ),
                client_cpu_us_per_op: Spread::of(
                    trials
                        .iter()
                        .filter_map(|point| point.client_cpu_us_per_op()),
                ),
                mean_batch: Spread::of(trials.iter().filter_map(|point| point.mean_batch())),
            }
        })
        .collect();
    let baselines = Baselines::of(&loads);
    for load in &mut loads {
        let key = Baselines::key(
            &load.protocol,
            &load.variant,
            load.clients,
            load.offered_ops,
        );
        load.ratio_to_baseline = ratio(load.throughput_ops.mean, baselines.throughput.get(&key));
        load.cpu_ratio_to_baseline = load
            .replica_cpu_us_per_op
            .and_then(|cpu| ratio(cpu.mean, baselines.cpu.get(&key)));
    }
    loads
}

/// Which baseline load a load is compared with: whether it is the
/// baseline's own, the swept values that decide it, clients, offered rate.
type BaselineKey = (bool, Vec<(String, u64)>, u32, Option<u64>);

/// The baseline's means, by [`BaselineKey`].
///
/// Another protocol's load is compared with the baseline at the same swept
/// workload and run parameters (`op_size`, `fsync`), clients and offered
/// rate; when the baseline's own tunables are swept too, with the variant
/// of their lowest values (loads come sorted by their swept values). The
/// baseline's own loads are compared with themselves.
#[derive(Default)]
struct Baselines {
    throughput: BTreeMap<BaselineKey, f64>,
    /// Replica CPU per operation, µs.
    cpu: BTreeMap<BaselineKey, f64>,
}

impl Baselines {
    fn key(
        protocol: &str,
        variant: &[(String, u64)],
        clients: u32,
        offered: Option<u64>,
    ) -> BaselineKey {
        if protocol == BASELINE {
            (true, variant.to_vec(), clients, offered)
        } else {
            (false, workload_variant(variant), clients, offered)
        }
    }

    fn of(loads: &[Load]) -> Baselines {
        let mut baselines = Baselines::default();
        for load in loads.iter().filter(|load| load.protocol == BASELINE) {
            let own = Baselines::key(BASELINE, &load.variant, load.clients, load.offered_ops);
            let shared = Baselines::key("", &load.variant, load.clients, load.offered_ops);
            for key in [own, shared] {
                // Loads come sorted by their swept values: the lowest stand.
                baselines
                    .throughput
                    .entry(key.clone())
                    .or_insert(load.throughput_ops.mean);
                if let Some(cpu) = load.replica_cpu_us_per_op {
                    baselines.cpu.entry(key).or_insert(cpu.mean);
                }
            }
        }
        baselines
    }
}

/// Orders protocol names with [`BASELINE`] first, then by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProtocolOrder<'a>(&'a str);

impl Ord for ProtocolOrder<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0 != BASELINE)
            .cmp(&(other.0 != BASELINE))
            .then_with(|| self.0.cmp(other.0))
    }
}

impl PartialOrd for ProtocolOrder<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn ratio(value: f64, baseline: Option<&f64>) -> Option<f64> {
    baseline
        .filter(|&&baseline| baseline > 0.0)
        .map(|baseline| value / baseline)
}

#[cfg(test)]
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    Spread::of(values).map_or(0.0, |spread| spread.mean)
}

fn per_op_us(cpu_ms: u64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| cpu_ms as f64 * 1000.0 / ops as f64)
}

/// `9.0`, `167.1`; `2,705` from 1000 on, where the decimal says nothing.
fn one_decimal(value: f64) -> String {
    if value >= 1000.0 {
        thousands(value.round() as u64)
    } else {
        format!("{value:.1}")
    }
}

/// `0.31x`; three decimals below 0.1 (`0.012x`), so a slow protocol does not
/// read `0.00x`.
fn ratio_label(ratio: f64) -> String {
    if ratio < 0.1 {
        format!("{ratio:.3}x")
    } else {
        format!("{ratio:.2}x")
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// One line of `results.csv`; the field order is the column order.
#[derive(Debug, Serialize, Deserialize)]
struct CsvRow {
    protocol: String,
    /// The swept values, `batch_max=16 op_size=64`; empty when nothing is
    /// swept.
    variant: String,
    clients: u32,
    trial: u32,
    throughput_ops: f64,
    latency_us_p50: u64,
    latency_us_p99: u64,
    latency_us_mean: f64,
    offered_ops: Option<u64>,
    measured_ops: u64,
    measured_ms: u64,
    ratio_to_baseline: Option<f64>,
    replica_cpu_ms: u64,
    client_cpu_ms: u64,
    cpu_us_per_op: Option<f64>,
    replica_cpu_us_per_op: Option<f64>,
    run_ops: u64,
    replica_cpu_ratio_to_baseline: Option<f64>,
    replica_idle_spin_ms: u64,
    client_idle_spin_ms: u64,
    busiest_node_cpu_us_per_op: Option<f64>,
    client_cpu_us_per_op: Option<f64>,
    mean_batch: Option<f64>,
    view_changes: u64,
    kernel_drops: u64,
    open_loop_no_free_client: Option<u64>,
    replicas: Option<u32>,
    replica_transport: Option<String>,
    client_transport: Option<String>,
    trials: u32,
    throughput_ops_mean: f64,
    throughput_ops_min: f64,
    throughput_ops_max: f64,
    throughput_ops_stdev: Option<f64>,
    latency_us_p50_mean: f64,
    latency_us_p50_min: f64,
    latency_us_p50_max: f64,
    latency_us_p50_stdev: Option<f64>,
    latency_us_p99_mean: f64,
    latency_us_p99_min: f64,
    latency_us_p99_max: f64,
    latency_us_p99_stdev: Option<f64>,
    replica_cpu_us_per_op_mean: Option<f64>,
    replica_cpu_us_per_op_min: Option<f64>,
    replica_cpu_us_per_op_max: Option<f64>,
    mean_batch_mean: Option<f64>,
    mean_batch_min: Option<f64>,
    mean_batch_max: Option<f64>,
}

/// `results.csv`'s bytes (see the module documentation for the columns).
pub fn csv_bytes(results: &RunResults) -> anyhow::Result<Vec<u8>> {
    // loads() aggregates groups() in the same order: one load per group.
    let loads = loads(results);
    let baselines = Baselines::of(&loads);
    let f = results.recorded_experiment().map(|experiment| experiment.f);
    let mut writer = csv::Writer::from_writer(Vec::new());
    for (load, trials) in loads.iter().zip(groups(results).into_values()) {
        for point in trials {
            let key = Baselines::key(
                &point.protocol,
                &point.variant,
                point.clients,
                point.offered_ops,
            );
            let (cpu, batch) = (load.replica_cpu_us_per_op, load.mean_batch);
            let nonempty = |text: String| (!text.is_empty()).then_some(text);
            writer
                .serialize(CsvRow {
                    protocol: point.protocol.clone(),
                    variant: crate::experiment::series("", &point.variant)
                        .trim_start()
                        .to_string(),
                    clients: point.clients,
                    trial: point.trial,
                    throughput_ops: point.throughput_ops,
                    latency_us_p50: point.latency_us_p50,
                    latency_us_p99: point.latency_us_p99,
                    latency_us_mean: point.latency_us_mean,
                    offered_ops: point.offered_ops,
                    measured_ops: point.measured_ops,
                    measured_ms: point.measured_ms,
                    ratio_to_baseline: ratio(point.throughput_ops, baselines.throughput.get(&key)),
                    replica_cpu_ms: point.replica_cpu_ms,
                    client_cpu_ms: point.client_cpu_ms,
                    cpu_us_per_op: point.cpu_us_per_op(),
                    replica_cpu_us_per_op: point.replica_cpu_us_per_op(),
                    run_ops: point.run_ops(),
                    replica_cpu_ratio_to_baseline: point
                        .replica_cpu_us_per_op()
                        .and_then(|cpu| ratio(cpu, baselines.cpu.get(&key))),
                    replica_idle_spin_ms: point.node_cpu.iter().map(|node| node.idle_spin_ms).sum(),
                    client_idle_spin_ms: point.client_idle_spin_ms,
                    busiest_node_cpu_us_per_op: point.busiest_node_cpu_us_per_op(),
                    client_cpu_us_per_op: point.client_cpu_us_per_op(),
                    mean_batch: point.mean_batch(),
                    view_changes: point.counter(VIEW_CHANGES_COUNTER),
                    kernel_drops: point.counter(KERNEL_DROPS_COUNTER),
                    open_loop_no_free_client: point
                        .offered_ops
                        .map(|_| point.counter(OPEN_LOOP_NO_FREE_CLIENT_COUNTER)),
                    replicas: f.and_then(|f| replica_count(&point.protocol, f).ok()),
                    replica_transport: nonempty(transports_joined(
                        point.replica_transports.iter().copied(),
                    )),
                    client_transport: point.client_transport.map(|t| transport_name(t).to_owned()),
                    trials: load.trials,
                    throughput_ops_mean: load.throughput_ops.mean,
                    throughput_ops_min: load.throughput_ops.min,
                    throughput_ops_max: load.throughput_ops.max,
                    throughput_ops_stdev: load.throughput_ops.stdev,
                    latency_us_p50_mean: load.latency_us_p50.mean,
                    latency_us_p50_min: load.latency_us_p50.min,
                    latency_us_p50_max: load.latency_us_p50.max,
                    latency_us_p50_stdev: load.latency_us_p50.stdev,
                    latency_us_p99_mean: load.latency_us_p99.mean,
                    latency_us_p99_min: load.latency_us_p99.min,
                    latency_us_p99_max: load.latency_us_p99.max,
                    latency_us_p99_stdev: load.latency_us_p99.stdev,
                    replica_cpu_us_per_op_mean: cpu.map(|s| s.mean),
                    replica_cpu_us_per_op_min: cpu.map(|s| s.min),
                    replica_cpu_us_per_op_max: cpu.map(|s| s.max),
                    mean_batch_mean: batch.map(|s| s.mean),
                    mean_batch_min: batch.map(|s| s.min),
                    mean_batch_max: batch.map(|s| s.max),
                })
                .context("writing a CSV row")?;
        }
    }
    if results.points.is_empty() {
        // serialize() writes the header with the first row; keep it for an
        // empty run too, so readers still find the columns.
        writer
            .write_record(CSV_HEADER)
            .context("writing the CSV header")?;
    }
    writer
        .into_inner()
        .map_err(|error| anyhow::anyhow!("writing the CSV: {}", error.error()))
}

/// The columns of `results.csv`, in order (see the module documentation).
pub const CSV_HEADER: [&str; 48] = [
    "protocol",
    "variant",
    "clients",
    "trial",
    "throughput_ops",
    "latency_us_p50",
    "latency_us_p99",
    "latency_us_mean",
    "offered_ops",
    "measured_ops",
    "measured_ms",
    "ratio_to_baseline",
    "replica_cpu_ms",
    "client_cpu_ms",
    "cpu_us_per_op",
    "replica_cpu_us_per_op",
    "run_ops",
    "replica_cpu_ratio_to_baseline",
    "replica_idle_spin_ms",
    "client_idle_spin_ms",
    "busiest_node_cpu_us_per_op",
    "client_cpu_us_per_op",
    "mean_batch",
    "view_changes",
    "kernel_drops",
    "open_loop_no_free_client",
    "replicas",
    "replica_transport",
    "client_transport",
    "trials",
    "throughput_ops_mean",
    "throughput_ops_min",
    "throughput_ops_max",
    "throughput_ops_stdev",
    "latency_us_p50_mean",
    "latency_us_p50_min",
    "latency_us_p50_max",
    "latency_us_p50_stdev",
    "latency_us_p99_mean",
    "latency_us_p99_min",
    "latency_us_p99_max",
    "latency_us_p99_stdev",
    "replica_cpu_us_per_op_mean",
    "replica_cpu_us_per_op_min",
    "replica_cpu_us_per_op_max",
    "mean_batch_mean",
    "mean_batch_min",
    "mean_batch_max",
];

/// Writes `path.tmp`, then renames it over `path`.
#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::path::{Path, PathBuf};

    use super::*;

    /// A point with plausible numbers: throughput grows with clients and
    /// saturates, latency grows with it; `speed` scales the protocol.
    pub(crate) fn point(protocol: &str, clients: u32, trial: u32, speed: f64) -> PointResult {
        let noise = 1.0 + 0.02 * f64::from(trial);
        let throughput_ops =
            speed * 40_000.0 * f64::from(clients) / (f64::from(clients) + 8.0) * noise;
        let latency_us_p50 = (1e6 * f64::from(clients) / throughput_ops) as u64;
        let measured_ms = 10_000;
        let measured_ops = (throughput_ops * measured_ms as f64 / 1000.0) as u64;
        PointResult {
            protocol: protocol.to_owned(),
            variant: Vec::new(),
            clients,
            offered_ops: None,
            trial,
            throughput_ops,
            latency_us_p50,
            latency_us_p99: latency_us_p50 * 3 + 40,
            latency_us_mean: latency_us_p50 as f64 * 1.2,
            measured_ops,
            measured_ms,
            intervals: (0..12)
                .map(|second| IntervalReport {
                    elapsed_ms: 1000 * (second + 1),
                    ops: measured_ops / 10,
                    latency_us_p50,
                    latency_us_p99: latency_us_p50 * 3,
                    leader: None,
                    executed: None,
                    slow_ops: 0,
                })
                .collect(),
            replica_cpu_ms: 9_000,
            client_cpu_ms: 4_000,
            node_cpu: vec![
                NodeCpu {
                    cpu_ms: 5_000,
                    idle_spin_ms: 1_000,
                },
                NodeCpu {
                    cpu_ms: 4_000,
                    idle_spin_ms: 0,
                },
            ],
            client_idle_spin_ms: 1_000,
            counters: BTreeMap::from([("sent".to_owned(), measured_ops * 2)]),
            replica_transports: vec![TransportKind::IoUring],
            client_transport: Some(TransportKind::IoUring),
            faults: Vec::new(),
            completions: Completions::default(),
            recovery: Vec::new(),
            periodic_dip: None,
            history: None,
        }
    }

    /// Two protocols × three client counts × two trials.
    pub(crate) fn sample() -> RunResults {
        sample_with_trials(2)
    }

    /// Two protocols × three client counts × `trials` trials (numbered from
    /// 0), PBFT with batching counters.
    pub(crate) fn sample_with_trials(trials: u32) -> RunResults {
        let mut points = Vec::new();
        for clients in [1, 8, 64] {
            for trial in 0..trials {
                points.push(point("unreplicated", clients, trial, 1.0));
                let mut pbft = point("pbft", clients, trial, 0.3);
                pbft.counters.insert(BATCHES_COUNTER.to_owned(), 100);
                pbft.counters
                    .insert(REQUESTS_BATCHED_COUNTER.to_owned(), 1_000);
                pbft.replica_transports = vec![TransportKind::IoUring; 4];
                points.push(pbft);
            }
        }
        RunResults {
            name: "default".to_owned(),
            started: "2025-01-01T00:00:00Z".to_owned(),
            hosts: "local processes on 127.0.0.2 and up".to_owned(),
            experiment: serde_json::to_value(Experiment {
                protocols: vec!["unreplicated".to_owned(), "pbft".to_owned()],
                sweep: Sweep::Clients(vec![1, 8, 64]),
                trials,
                duration: Duration::from_secs(5),
                warmup: Duration::from_secs(1),
                cooldown: Duration::from_millis(500),
                ..Experiment::default_comparison()
            })
            .unwrap(),
            provenance: Default::default(),
            parameters: Default::default(),
            points,
        }
    }

    /// The table's column header and rows, without the setup above it and
    /// the legend below.
    pub(crate) fn table_lines(table: &str) -> Vec<&str> {
        table
            .lines()
            .skip_while(|line| !line.starts_with("protocol "))
            .take_while(|line| !line.is_empty())
            .collect()
    }

    fn read_csv(path: &Path) -> (Vec<String>, Vec<CsvRow>) {
        let mut reader = csv::Reader::from_path(path).unwrap();
        let header = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = reader.deserialize().map(Result::unwrap).collect();
        (header, rows)
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("runner-results-{}", std::process::id()))
            .join(name);
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn results_write_all_csv_json_and_plots() {
        let results = sample();
        let top = scratch("all");
        let dir = top.join("nested");
        let written = crate::save::write_all(&dir, &results).unwrap();
        assert_eq!(written.csv, dir.join("results.csv"));

        let (header, rows) = read_csv(&written.csv);
        assert_eq!(header, CSV_HEADER);
        assert_eq!(
            header[..7],
            [
                "protocol",
                "variant",
                "clients",
                "trial",
                "throughput_ops",
                "latency_us_p50",
                "latency_us_p99"
            ]
        );
        assert_eq!(rows.len(), results.points.len());
        assert_eq!(rows[0].protocol, "unreplicated", "baseline rows first");
        for row in &rows {
            assert!(row.throughput_ops > 0.0);
            assert!(row.ratio_to_baseline.is_some());
            assert!(row.cpu_us_per_op.unwrap() > row.replica_cpu_us_per_op.unwrap());
        }
        for clients in [1, 8, 64] {
            let baseline: Vec<f64> = rows
                .iter()
                .filter(|row| row.protocol == "unreplicated" && row.clients == clients)
                .map(|row| row.ratio_to_baseline.unwrap())
                .collect();
            assert_eq!(baseline.len(), 2);
            assert!((mean(baseline.iter().copied()) - 1.0).abs() < 1e-12);
            assert!(baseline.iter().all(|ratio| (ratio - 1.0).abs() < 0.02));
            let pbft = rows
                .iter()
                .find(|row| row.protocol == "pbft" && row.clients == clients)
                .unwrap();
            assert!((pbft.ratio_to_baseline.unwrap() - 0.3).abs() < 0.01);
            assert_eq!(pbft.mean_batch, Some(10.0));
            assert!((pbft.replica_cpu_ratio_to_baseline.unwrap() - 1.0 / 0.3).abs() < 0.1);
            assert!(rows.iter().any(|row| row.protocol == "unreplicated"
                && row.clients == clients
                && row.mean_batch.is_none()));
        }

        let json = fs::read_to_string(&written.json).unwrap();
        let back: RunResults = serde_json::from_str(&json).unwrap();
        assert_eq!(back, results);

        let svg = fs::read_to_string(&written.svg).unwrap();
        assert!(svg.contains("Throughput (ops/s)"));
        assert!(svg.contains("Latency (µs"));
        assert!(svg.contains("unreplicated") && svg.contains("pbft"));

        let png = fs::read(&written.png).unwrap();
        assert_eq!(
            png_size(&png),
            (crate::plot::WIDTH_PX, crate::plot::HEIGHT_PX)
        );
        fs::remove_dir_all(top).unwrap();
    }

    /// The width and height in a PNG's IHDR chunk, after checking the
    /// signature.
    pub(crate) fn png_size(png: &[u8]) -> (u32, u32) {
        assert!(png.len() > 1000, "{} bytes", png.len());
        assert_eq!(png[..8], *b"\x89PNG\r\n\x1a\n");
        assert_eq!(png[12..16], *b"IHDR");
        let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        (be(16), be(20))
    }

    #[test]
    fn results_write_all_single_point() {
        let mut results = sample();
        results.points.truncate(1);
        let dir = scratch("single");
        let written = crate::save::write_all(&dir, &results).unwrap();
        let (_, rows) = read_csv(&written.csv);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ratio_to_baseline, Some(1.0));
        png_size(&fs::read(&written.png).unwrap());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn results_write_all_without_baseline() {
        let mut results = sample();
        results.points.retain(|point| point.protocol == "pbft");
        // And one more protocol at a load the baseline did not run.
        results.points.push(point("unreplicated", 2, 0, 1.0));
        results.points.push(point("hotstuff", 2, 0, 0.5));
        let dir = scratch("no-baseline");
        let written = crate::save::write_all(&dir, &results).unwrap();
        let (_, rows) = read_csv(&written.csv);
        assert_eq!(rows.len(), results.points.len());
        for row in &rows {
            let expected = row.clients == 2;
            assert_eq!(row.ratio_to_baseline.is_some(), expected, "{row:?}");
        }
        let csv = fs::read_to_string(&written.csv).unwrap();
        assert!(csv.contains("pbft,,1,0,"), "{csv}");
        let table = summary_table(&results);
        assert!(table.contains('—'), "{table}");
        assert!(
            fs::read_to_string(&written.svg)
                .unwrap()
                .contains("hotstuff")
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn results_write_all_empty_run() {
        let mut results = sample();
        results.points.clear();
        let dir = scratch("empty");
        let written = crate::save::write_all(&dir, &results).unwrap();
        let (header, rows) = read_csv(&written.csv);
        assert_eq!(header, CSV_HEADER);
        assert!(rows.is_empty());
        png_size(&fs::read(&written.png).unwrap());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn results_summary_table_one_row_per_load() {
        let table = summary_table(&sample());
        println!("{table}");
        let lines = table_lines(&table);
        assert_eq!(lines.len(), 1 + 2 * 3, "{table}");
        assert!(lines[0].starts_with("protocol"));
        assert!(lines[0].ends_with("clients µs/op"));
        assert!(!lines[0].contains("offered"));
        let protocols: Vec<(&str, &str)> = lines[1..]
            .iter()
            .map(|line| {
                let mut cells = line.split_whitespace();
                (cells.next().unwrap(), cells.next().unwrap())
            })
            .collect();
        assert_eq!(
            protocols,
            [
                ("unreplicated", "1"),
                ("unreplicated", "8"),
                ("unreplicated", "64"),
                ("pbft", "1"),
                ("pbft", "8"),
                ("pbft", "64"),
            ]
        );
        // vs unreplicated, batch, CPU µs/op, CPU vs unreplicated, busiest,
        // clients: the same CPU time for 0.3x the operations is 3.3x the
        // CPU per operation; the busiest node did half the replicas' work.
        let tail = |line: &str| -> Vec<String> {
            let cells: Vec<&str> = line.split_whitespace().collect();
            cells[cells.len() - 6..]
                .iter()
                .map(|c| c.to_string())
                .collect()
        };
        for line in &lines[1..4] {
            let tail = tail(line);
            assert_eq!(
                (tail[0].as_str(), tail[1].as_str()),
                ("1.00x", "—"),
                "{line}"
            );
            assert_eq!(tail[3], "1.0x", "{line}");
            let cpu: f64 = tail[2].parse().unwrap();
            let busiest: f64 = tail[4].parse().unwrap();
            assert!((busiest - cpu / 2.0).abs() <= 0.1, "{line}");
        }
        for line in &lines[4..] {
            let tail = tail(line);
            assert_eq!(
                (tail[0].as_str(), tail[1].as_str()),
                ("0.30x", "10.0"),
                "{line}"
            );
            assert_eq!(tail[3], "3.3x", "{line}");
        }
        // Fixed width: every row as wide as the header.
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|line| line.chars().count() == width));
        assert!(table.contains("35,911"), "thousands separators: {table}");
    }

    #[test]
    fn results_summary_table_open_loop() {
        let mut results = sample();
        for point in &mut results.points {
            point.offered_ops = Some(10_000 * u64::from(point.clients));
        }
        let table = summary_table(&results);
        assert!(table_lines(&table)[0].contains("offered ops/s"));
        assert!(table.contains("640,000"), "{table}");
    }

    #[test]
    fn results_csv_counts_open_loop_arrivals_with_no_free_client() {
        let mut results = sample();
        results.points[0].offered_ops = Some(1000);
        results.points[0]
            .counters
            .insert(OPEN_LOOP_NO_FREE_CLIENT_COUNTER.to_owned(), 7);
        let written = crate::save::write_all(&scratch("no-free-client"), &results).unwrap();
        let (_, rows) = read_csv(&written.csv);
        let open: Vec<_> = rows
            .iter()
            .filter(|row| row.offered_ops.is_some())
            .collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].open_loop_no_free_client, Some(7));
        // Not applicable in closed loop: empty.
        assert!(
            rows.iter()
                .filter(|row| row.offered_ops.is_none())
                .all(|row| row.open_loop_no_free_client.is_none())
        );
    }

    #[test]
    fn results_cpu_per_op_covers_the_whole_run() {
        let point = point("unreplicated", 8, 0, 1.0);
        // 12 intervals of a tenth of the window each: 1.2 × measured_ops.
        assert_eq!(point.run_ops(), point.measured_ops / 10 * 12);
        // 9 s of replica CPU (1 s of it idle polling) and 4 s of client CPU
        // (1 s of it idle polling): 11 s of work.
        let per_op = |ms: f64| ms * 1000.0 / point.run_ops() as f64;
        let close = |figure: Option<f64>, ms: f64| (figure.unwrap() - per_op(ms)).abs() < 1e-9;
        assert!(close(point.cpu_us_per_op(), 11_000.0));
        assert!(close(point.replica_cpu_us_per_op(), 8_000.0));
        assert!(close(point.client_cpu_us_per_op(), 3_000.0));
        // The busiest node: 5 s less 1 s of polling loses to 4 s of work.
        assert!(close(point.busiest_node_cpu_us_per_op(), 4_000.0));
        // Idle polling above the CPU time (a report that does not add up)
        // counts as none of the node's work, not less than none.
        let oversubscribed = PointResult {
            node_cpu: vec![NodeCpu {
                cpu_ms: 100,
                idle_spin_ms: 900,
            }],
            ..point.clone()
        };
        assert_eq!(oversubscribed.busiest_node_cpu_us_per_op(), Some(0.0));
        let unreported = PointResult {
            node_cpu: Vec::new(),
            ..point.clone()
        };
        assert_eq!(unreported.busiest_node_cpu_us_per_op(), None);
        let no_intervals = PointResult {
            intervals: Vec::new(),
            ..point.clone()
        };
        assert_eq!(no_intervals.run_ops(), point.measured_ops);
        let idle = PointResult {
            intervals: Vec::new(),
            measured_ops: 0,
            ..point
        };
        assert_eq!(idle.cpu_us_per_op(), None);
    }

    #[test]
    fn results_spread_is_mean_min_max_and_sample_stdev() {
        let spread = Spread::of([4.0, 2.0, 9.0]).unwrap();
        assert_eq!(spread.mean, 5.0);
        assert_eq!((spread.min, spread.max), (2.0, 9.0));
        // Deviations -1, -3, 4: squares 26, over n - 1 = 2.
        assert!((spread.stdev.unwrap() - 13f64.sqrt()).abs() < 1e-12);
        assert!(spread.varies());
        let one = Spread::of([7.0]).unwrap();
        assert_eq!(
            one,
            Spread {
                mean: 7.0,
                min: 7.0,
                max: 7.0,
                stdev: None
            }
        );
        assert!(!one.varies());
        assert_eq!(Spread::of([]), None);
        // The order of the values does not change a bit of the result.
        let values = [0.1, 0.7, 1e6, 0.2, 3.3];
        let mut reversed = values;
        reversed.reverse();
        assert_eq!(Spread::of(values), Spread::of(reversed));
    }

    #[test]
    fn results_loads_aggregate_trials_whatever_order_they_ran_in() {
        let results = sample_with_trials(3);
        let loads = loads(&results);
        assert_eq!(loads.len(), 6);
        assert!(loads.iter().all(|load| load.trials == 3));
        let pbft = loads
            .iter()
            .find(|load| load.protocol == "pbft" && load.clients == 8)
            .unwrap();
        let trials: Vec<&PointResult> = results
            .points
            .iter()
            .filter(|point| point.protocol == "pbft" && point.clients == 8)
            .collect();
        let throughputs: Vec<f64> = trials.iter().map(|point| point.throughput_ops).collect();
        assert_eq!(
            pbft.throughput_ops,
            Spread::of(throughputs.clone()).unwrap()
        );
        assert_eq!(pbft.throughput_ops.min, throughputs[0]);
        assert_eq!(pbft.throughput_ops.max, throughputs[2]);
        let p99: Vec<f64> = trials
            .iter()
            .map(|point| point.latency_us_p99 as f64)
            .collect();
        assert_eq!(pbft.latency_us_p99, Spread::of(p99).unwrap());
        assert!(pbft.throughput_ops.stdev.unwrap() > 0.0);
        assert_eq!(pbft.mean_batch.unwrap().mean, 10.0);
        assert!((pbft.ratio_to_baseline.unwrap() - 0.3).abs() < 1e-9);

        // The same points in other orders: protocols interleaved, trials
        // reversed, loads shuffled. Every figure is the same, to the bit.
        let mut reversed = results.clone();
        reversed.points.reverse();
        let mut rotated = results.clone();
        rotated.points.rotate_left(7);
        let mut interleaved = results.clone();
        interleaved
            .points
            .sort_by_key(|point| (point.trial, point.clients, point.protocol.clone()));
        for other in [&reversed, &rotated, &interleaved] {
            assert_ne!(other.points, results.points);
            assert_eq!(super::loads(other), loads);
            assert_eq!(csv_bytes(other).unwrap(), csv_bytes(&results).unwrap());
            assert_eq!(summary_table(other), summary_table(&results));
        }
    }

    /// The baseline's own variants are compared with themselves; another
    /// protocol with the baseline at the same run parameters (`fsync`) and
    /// the baseline's lowest tunable values.
    #[test]
    fn results_baseline_variants_are_matched_by_run_parameters() {
        let mut points = Vec::new();
        for (protocol, speed) in [("unreplicated", 1.0), ("pbft", 0.25)] {
            for durable in [0, 1] {
                for fsync in [0, 1] {
                    if protocol == "pbft" && durable == 1 {
                        continue;
                    }
                    let slower = if durable == 1 && fsync == 1 { 0.1 } else { 1.0 };
                    let mut p = point(protocol, 8, 1, speed * slower);
                    if protocol == "unreplicated" {
                        p.variant.push(("unreplicated.durable".to_owned(), durable));
                    }
                    p.variant.push((FSYNC.to_owned(), fsync));
                    points.push(p);
                }
            }
        }
        let results = RunResults {
            points,
            ..sample_with_trials(1)
        };
        let loads = loads(&results);
        assert_eq!(loads.len(), 6);
        for load in &loads {
            let ratio = load.ratio_to_baseline.unwrap();
            let expect = if load.protocol == "pbft" { 0.25 } else { 1.0 };
            assert!((ratio - expect).abs() < 1e-9, "{}: {ratio}", load.series());
        }
        let table = summary_table(&results);
        assert!(table.contains("fsync=0"), "{table}");
        assert!(table.contains("not crash-safe"), "{table}");
    }

    #[test]
    fn results_csv_has_each_loads_spread() {
        let mut results = sample();
        // pbft at one client ran one trial only.
        results
            .points
            .retain(|point| !(point.protocol == "pbft" && point.clients == 1 && point.trial == 1));
        let dir = scratch("spread");
        let written = crate::save::write_all(&dir, &results).unwrap();
        let (header, rows) = read_csv(&written.csv);
        assert_eq!(header, CSV_HEADER);
        for row in &rows {
            let replicas = if row.protocol == "pbft" { 4 } else { 1 };
            assert_eq!(row.replicas, Some(replicas), "{row:?}");
            assert_eq!(row.replica_transport.as_deref(), Some("io_uring"));
            assert_eq!(row.client_transport.as_deref(), Some("io_uring"));
            let load: Vec<&CsvRow> = rows
                .iter()
                .filter(|other| other.protocol == row.protocol && other.clients == row.clients)
                .collect();
            assert_eq!(row.trials as usize, load.len());
            let throughputs: Vec<f64> = load.iter().map(|row| row.throughput_ops).collect();
            let spread = Spread::of(throughputs).unwrap();
            assert_eq!(row.throughput_ops_mean, spread.mean);
            assert_eq!(row.throughput_ops_min, spread.min);
            assert_eq!(row.throughput_ops_max, spread.max);
            assert_eq!(row.throughput_ops_stdev, spread.stdev);
            let p50: Vec<u64> = load.iter().map(|row| row.latency_us_p50).collect();
            assert_eq!(row.latency_us_p50_min, *p50.iter().min().unwrap() as f64);
            assert_eq!(row.latency_us_p50_max, *p50.iter().max().unwrap() as f64);
            let p99: Vec<u64> = load.iter().map(|row| row.latency_us_p99).collect();
            assert_eq!(row.latency_us_p99_min, *p99.iter().min().unwrap() as f64);
            assert_eq!(row.latency_us_p99_max, *p99.iter().max().unwrap() as f64);
            assert!(row.replica_cpu_us_per_op_min <= row.replica_cpu_us_per_op_max);
            assert_eq!(row.mean_batch_mean, row.mean_batch);
        }
        let single = rows
            .iter()
            .find(|row| row.protocol == "pbft" && row.clients == 1)
            .unwrap();
        assert_eq!(single.trials, 1);
        assert_eq!(single.throughput_ops_stdev, None);
        assert_eq!(single.latency_us_p99_stdev, None);
        assert_eq!(single.throughput_ops_min, single.throughput_ops);
        // Two trials: the sample standard deviation is |a - b| / √2.
        let pair: Vec<&CsvRow> = rows
            .iter()
            .filter(|row| row.protocol == "pbft" && row.clients == 8)
            .collect();
        let expected = (pair[0].throughput_ops - pair[1].throughput_ops).abs() / 2f64.sqrt();
        assert!((pair[0].throughput_ops_stdev.unwrap() - expected).abs() < 1e-9);
        let csv = fs::read_to_string(&written.csv).unwrap();
        assert!(csv.lines().next().unwrap().ends_with("mean_batch_max"));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn the_setup_names_each_group_with_its_services() {
        let pbft = protocol_spec("pbft").unwrap();
        assert_eq!(group_label(pbft, 2), "pbft 7 replicas");
        assert_eq!(
            group_label(protocol_spec("unreplicated").unwrap(), 1),
            "unreplicated 1 replica"
        );
        let chain = &crate::experiment::TEST_CHAIN;
        assert_eq!(group_label(chain, 1), "chain 2 replicas and a master");
        assert_eq!(group_label(chain, 0), "chain 1 replica and a master");
    }

    #[test]
    fn results_setup_says_which_mechanism_emulated_the_wan() {
        let mut results = sample();
        assert!(setup(&results).wan.is_none());
        assert!(!summary_table(&results).contains("network:"));
        let mut experiment: Experiment = serde_json::from_value(results.experiment).unwrap();
        experiment.wan = crate::wan::Wan::choose(
            crate::hosts::netns::NetemProfile::delay(Duration::from_millis(5)),
            false,
        );
        results.experiment = serde_json::to_value(&experiment).unwrap();
        let line = "network:  delay 5ms per egress, by user-space emulation in the nodes' \
                    transports";
        assert!(
            summary_table(&results).contains(line),
            "{}",
            summary_table(&results)
        );
        experiment.wan.mechanism = crate::wan::WanMechanism::Netem;
        results.experiment = serde_json::to_value(&experiment).unwrap();
        assert_eq!(
            setup(&results).wan.as_deref(),
            Some("delay 5ms per egress, by tc netem in the namespaces")
        );
    }

    #[test]
    fn results_summary_table_says_how_the_run_was_set_up() {
        let table = summary_table(&sample());
        for text in [
            "default · started 2025-01-01T00:00:00Z · local processes on 127.0.0.2 and up",
            "f = 1: unreplicated 1 replica, pbft 4 replicas",
            "null app, 16-byte operations, closed loop",
            "transport auto → io_uring",
            "idle: spin 100 µs, then block",
            "5 s per point, 3.5 s measured (1 s warm-up, 500 ms cool-down trimmed)",
            "2 trials per load",
        ] {
            assert!(table.contains(text), "{text:?} missing:\n{table}");
        }
        let lines = table_lines(&table);
        for column in ["ops/s min–max", "p50 min–max", "p99 min–max"] {
            assert!(lines[0].contains(column), "{}", lines[0]);
        }
        assert!(lines[3].contains("35,556–36,267"), "{}", lines[3]);
        // The legend under the table explains the columns.
        let legend: Vec<&str> = table
            .lines()
            .skip_while(|line| !line.starts_with("protocol "))
            .skip_while(|line| !line.is_empty())
            .skip(1)
            .collect();
        for column in [
            "clients",
            "throughput ops/s",
            "p50 µs",
            "p99 µs",
            "… min–max",
            "vs unreplicated",
            "batch",
            "CPU µs/op",
            "CPU vs unrepl.",
        ] {
            assert!(
                legend
                    .iter()
                    .any(|line| line.trim_start().starts_with(column)),
                "{column} not in the legend:\n{table}"
            );
        }

        // One trial: no min–max columns.
        let table = summary_table(&sample_with_trials(1));
        assert!(table.contains("1 trial per load"), "{table}");
        assert!(!table.contains("min–max"), "{table}");

        // Another setup: f = 2, the kv app, open loop, busy polling, epoll
        // asked, and the replicas' transport not the clients'.
        let mut results = sample();
        let experiment = Experiment {
            f: 2,
            app: AppConfig::Kv,
            workload: Workload::Kv(wire::control::KvWorkload {
                keys: 10_000,
                value_size: 128,
                read_ratio: 0.9,
                distribution: KeyDistribution::Zipf { exponent: 0.99 },
            }),
            sweep: Sweep::Rates {
                clients: 100,
                rates: vec![1000],
            },
            idle: Idle::Busy,
            transport: TransportKind::Epoll,
            ..Experiment::default_comparison()
        };
        results.experiment = serde_json::to_value(experiment).unwrap();
        for point in &mut results.points {
            point.client_transport = Some(TransportKind::Epoll);
        }
        let table = summary_table(&results);
        for text in [
            "f = 2: unreplicated 1 replica, pbft 7 replicas",
            "kv app: 10,000 keys, 128-byte values, 90% gets, zipf 0.99 keys",
            "open loop, poisson arrivals, 100 clients",
            "transport epoll → replicas io_uring, clients epoll",
            "idle: busy polling",
        ] {
            assert!(table.contains(text), "{text:?} missing:\n{table}");
        }

        // An experiment that does not read back, nodes that did not report
        // their transport: still a table, saying what it does not know.
        results.experiment = serde_json::json!({"clients": [1, 8, 64]});
        for point in &mut results.points {
            point.replica_transports.clear();
            point.client_transport = None;
        }
        let table = summary_table(&results);
        assert!(table.contains("replicas: (not recorded)"), "{table}");
        assert!(table.contains("transport not recorded"), "{table}");
        assert_eq!(table_lines(&table).len(), 7, "{table}");
        let dir = scratch("unrecorded");
        let written = crate::save::write_all(&dir, &results).unwrap();
        let (_, rows) = read_csv(&written.csv);
        assert!(rows.iter().all(|row| row.replicas.is_none()
            && row.replica_transport.is_none()
            && row.client_transport.is_none()));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn results_json_without_transports_reads_back() {
        // Results recorded before nodes reported their transport.
        let mut json = serde_json::to_value(sample()).unwrap();
        for point in json["points"].as_array_mut().unwrap() {
            let point = point.as_object_mut().unwrap();
            point.remove("replica_transports");
            point.remove("client_transport");
        }
        let back: RunResults = serde_json::from_value(json).unwrap();
        assert!(
            back.points.iter().all(
                |point| point.replica_transports.is_empty() && point.client_transport.is_none()
            )
        );
    }

    #[test]
    fn results_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(ratio_label(1.0), "1.00x");
        assert_eq!(ratio_label(0.314), "0.31x");
        assert_eq!(ratio_label(0.0123), "0.012x");
    }
}
