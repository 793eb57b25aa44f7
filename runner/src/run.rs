//! Runs an [`Experiment`] on hosts from a [`Provider`], one point after the
//! other, showing progress in the terminal, and returns what it measured.
//!
//! For each point ([`RunningPoint`]): start every replica (`node serve` on its
//! host, configured over TCP) and every service the protocol runs beside
//! them (chain replication's master, a node like a replica with the next
//! id), then one clients node on the next host; read the clients' interval
//! reports for the point's duration, showing live throughput; stop the
//! clients, then the replicas (and services), and collect their totals. Any
//! node that fails to start, reports an error, crashes or falls silent stops
//! the whole run: every node started is stopped (dropping a
//! `NodeProcess` kills it), the provider cleans up, and the error names the
//! host with the node's last stderr lines.
//!
//! A single point runs the same way on hosts the caller chooses:
//! [`run_point`] from start to finish, or [`RunningPoint`] in steps, for
//! callers that act while the clients run (tests that send a replica stray
//! datagrams, say). Both return every node's own report
//! ([`PointReports`]), not only the figures a run records.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wire::control::{
    ClientsConfig, CoreShare, DurableConfig, Event, FinalReport, IntervalReport, Load, NodeConfig,
    Role, Started, ThreadMap,
};
use wire::history::History;
use wire::{SecretKey, Signer};

use crate::control::{Control, EXIT_TIMEOUT, NodeProcess};
use crate::cpu_quota::CpuQuota;
use crate::experiment::{Experiment, Point, node_count, protocol_spec, replica_count};
use crate::hosts::{Host, Launcher, Provider};
use crate::provenance::Provenance;
use crate::results::{FaultRecord, NodeCpu, PointResult, RunResults, thousands};

mod faults;

pub use faults::Down;

/// UDP ports of replicas on hosts with an address of their own
/// (namespaces, remote machines) start here: node `i` of the point with
/// index `p` (a replica, or past them a service) listens on
/// `REPLICA_PORT_BASE + (p % PORT_SETS) * PORT_SET_SIZE + i`.
///
/// Consecutive points use different ports: a node's socket can stay bound
/// for tens of milliseconds after the node exits (io_uring releases it
/// asynchronously), and the next point's replica would fail to bind it.
pub const REPLICA_PORT_BASE: u16 = 7000;

/// Ports per point (more than any protocol's node count, replicas and
/// services together).
pub const PORT_SET_SIZE: u16 = 32;

/// How many points go by before a port is used again.
pub const PORT_SETS: u16 = 16;

/// Where node `i` of the point with index `point` listens on a host with
/// an address of its own (see [`REPLICA_PORT_BASE`]).
pub fn replica_port(point: usize, i: usize) -> u16 {
    let set = (point % usize::from(PORT_SETS)) as u16;
    REPLICA_PORT_BASE + set * PORT_SET_SIZE + i as u16
}

/// How long the clients may stay silent before the run gives up on them.
pub const SILENCE_MAX: Duration = Duration::from_secs(10);

/// Runs every point of `experiment` and returns the results. `progress`
/// draws to the terminal (hidden when stderr is not one). After each point,
/// `finished` gets the results so far (to keep them on disk as the run goes:
/// a point that fails ends the run, and the points before it stay).
pub fn run_experiment(
    experiment: &Experiment,
    provider: &mut dyn Provider,
    node_binary: &Path,
    progress: &MultiProgress,
    finished: &mut dyn FnMut(&RunResults) -> anyhow::Result<()>,
) -> anyhow::Result<RunResults> {
    let started = now_rfc3339();
    run_experiment_at(
        experiment,
        &started,
        provider,
        node_binary,
        progress,
        finished,
    )
}

/// [`run_experiment`], with the start time the results record given (so
/// that a results folder named before the run carries the same time). Key-
/// value histories are checked in a temporary folder, and only one that
/// fails its check stays there (see [`run_experiment_saving`]).
pub fn run_experiment_at(
    experiment: &Experiment,
    started: &str,
    provider: &mut dyn Provider,
    node_binary: &Path,
    progress: &MultiProgress,
    finished: &mut dyn FnMut(&RunResults) -> anyhow::Result<()>,
) -> anyhow::Result<RunResults> {
    run_experiment_inner(
        experiment,
        started,
        provider,
        node_binary,
        progress,
        None,
        finished,
    )
}

/// [`run_experiment_at`], writing each point's key-value history (with the
/// key-value app) to `histories` as `history-<point>.json`
/// ([`crate::history::file_name`]) and checking it there: a history that is
/// not linearizable fails the run, naming its file.
pub fn run_experiment_saving(
    experiment: &Experiment,
    started: &str,
    provider: &mut dyn Provider,
    node_binary: &Path,
    progress: &MultiProgress,
    histories: &Path,
    finished: &mut dyn FnMut(&RunResults) -> anyhow::Result<()>,
) -> anyhow::Result<RunResults> {
    run_experiment_inner(
        experiment,
        started,
        provider,
        node_binary,
        progress,
        Some(histories),
        finished,
    )
}

fn run_experiment_inner(
    experiment: &Experiment,
    started: &str,
    provider: &mut dyn Provider,
    node_binary: &Path,
    progress: &MultiProgress,
    histories: Option<&Path>,
    finished: &mut dyn FnMut(&RunResults) -> anyhow::Result<()>,
) -> anyhow::Result<RunResults> {
    experiment.validate()?;
    let recorded = serde_json::to_value(experiment).context("recording the experiment")?;
    // Hosts for the largest group (replicas and services) and its clients.
    let nodes_max = experiment
        .protocols
        .iter()
        .map(|p| node_count(p, experiment.f))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .max()
        .unwrap_or(1);
    let hosts = provider.hosts(nodes_max as usize + 1, node_binary)?;
    let described = provider.describe();
    let mut provenance = Provenance::of_this_machine(crate::cargo::workspace_root());
    let ticks = provenance.start();
    // The bound prices cryptography at this machine's costs, over its
    // cores: meaningful only when every node runs here.
    if hosts
        .iter()
        .all(|h| matches!(h.launcher, Launcher::Local | Launcher::Netns { .. }))
    {
        provenance.unit_costs = Some(crate::bound::UnitCosts::measure());
    }
    for warning in warnings(experiment, &hosts, &provenance) {
        let _ = progress.println(format!("warning: {warning}"));
    }
    let mut parameters = BTreeMap::new();
    let results =
        |points: &[PointResult],
         provenance: &Provenance,
         parameters: &BTreeMap<String, Vec<(String, String)>>| RunResults {
            name: experiment.name.clone(),
            started: started.to_string(),
            hosts: described.clone(),
            experiment: recorded.clone(),
            provenance: provenance.clone(),
            parameters: parameters.clone(),
            points: points.to_vec(),
        };
    let mut points = Vec::new();
    for (index, point) in experiment.points().into_iter().enumerate() {
        let bar = progress.add(point_bar(&point, experiment.duration));
        let result = run_point_with_bar(experiment, &point, index, &hosts, node_binary, &bar)
            .and_then(|(mut result, reported, history)| {
                if let Some(history) = history {
                    result.history = Some(crate::history::check_point(
                        &history,
                        index,
                        &point,
                        histories,
                        node_binary,
                    )?);
                }
                Ok((result, reported))
            });
        match result {
            Ok((result, reported)) => {
                parameters.entry(point.series()).or_insert(reported);
                let history = result.history.as_ref().map_or_else(String::new, |h| {
                    format!(
                        "  history linearizable ({} ops, {} keys)",
                        h.ops, h.keys_with_ops
                    )
                });
                bar.finish_with_message(format!(
                    "{:>12} ops/s  p50 {:>6} µs  p99 {:>6} µs{history}",
                    thousands(result.throughput_ops.round() as u64),
                    result.latency_us_p50,
                    result.latency_us_p99
                ));
                points.push(result);
                provenance.point_done(&ticks);
                finished(&results(&points, &provenance, &parameters))?;
            }
            Err(error) => {
                bar.abandon_with_message("failed");
                return Err(error.context(format!("running {point}")));
            }
        }
    }
    Ok(results(&points, &provenance, &parameters))
}

/// A host runs this many busy threads per core, or more, before a run's
/// latencies say more about the scheduler than about the protocol.
pub const OVERSUBSCRIBED_THREADS_PER_CORE: usize = 3;

/// The machine counts as busy before a run when more than this percent of
/// its CPU time is taken.
pub const BUSY_PERCENT_MAX: f64 = 25.0;

/// What a user should know before trusting this run's latencies: threads
/// far beyond the cores of this machine, or a machine already busy.
pub fn warnings(experiment: &Experiment, hosts: &[Host], provenance: &Provenance) -> Vec<String> {
    let mut warnings = Vec::new();
    let here = hosts
        .iter()
        .filter(|h| matches!(h.launcher, Launcher::Local | Launcher::Netns { .. }))
        .count();
    let cores = provenance.cores.max(1);
    if here > 0 {
        let per_replica = experiment
            .replica_threads
            .as_ref()
            .map_or(1, |map| map.threads.len());
        let busiest = experiment
            .protocols
            .iter()
            .filter_map(|p| node_count(p, experiment.f).ok())
            .max()
            .unwrap_or(1) as usize;
        // Only nodes on this machine compete for its cores. Services run the
        // replicas' thread map.
        let replicas_here = busiest.min(here);
        let clients_here = usize::from(here > busiest);
        let threads = replicas_here * per_replica
            + clients_here * experiment.client_threads.unwrap_or(1) as usize;
        if threads >= OVERSUBSCRIBED_THREADS_PER_CORE * cores {
            warnings.push(format!(
                "{} processes with {threads} node threads share this machine's {cores} cores: \
                 expect latencies set by the scheduler",
                replicas_here + clients_here
            ));
        }
    }
    if let Some(busy) = provenance.busy_percent_before
        && busy > BUSY_PERCENT_MAX
    {
        warnings.push(format!(
            "this machine was {busy:.0}% busy before the run (load average {}): \
             other work will compete with the nodes",
            provenance
                .load_before
                .map_or_else(|| "unknown".to_string(), |l| format!("{l:.2}"))
        ));
    }
    warnings
}

fn point_bar(point: &Point, duration: Duration) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(
        Some(duration.as_millis() as u64),
        ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template("{prefix:32} [{bar:24}] {elapsed:>4} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(point.to_string());
    bar
}

/// Runs one point of `experiment` on `hosts` from start to finish, without a
/// progress display: [`RunningPoint::start`], the clients run for the
/// experiment's duration, [`RunningPoint::finish`]. Returns what every node
/// reported; [`PointReports::point_result`] makes of it the figures a run
/// records.
pub fn run_point(
    experiment: &Experiment,
    point: &Point,
    index: usize,
    hosts: &[Host],
    node_binary: &Path,
) -> anyhow::Result<PointReports> {
    let mut running = RunningPoint::start(experiment, point, index, hosts, node_binary)?;
    running.run_for(experiment.duration, &mut |_, _| {})?;
    running.finish()
}

/// One point in progress, for callers that act while its clients run (send
/// the replicas stray datagrams, say, and watch the clients' intervals).
///
/// [`RunningPoint::start`] starts every replica (`node serve` on its host,
/// configured over TCP), then one clients node on the next host;
/// [`RunningPoint::run_for`] and [`RunningPoint::next_clients_interval`]
/// follow the clients' interval reports; [`RunningPoint::finish`] stops the
/// clients, then the replicas (so every operation a client completed was
/// executed before the replicas' totals are taken), and waits for every node
/// to exit with status 0. [`run_experiment`] runs each of its points this
/// way. Dropping a `RunningPoint` kills its nodes, the clients first.
#[derive(Debug)]
pub struct RunningPoint {
    // Declared first, so dropped first.
    clients: Node,
    /// By node id: the replicas, then the protocol's services.
    replicas: Vec<Node>,
    /// The experiment's fault schedule, as this point applies it.
    schedule: faults::Schedule,
}

impl RunningPoint {
    /// Starts `point` of `experiment`: node `i` on `hosts[i]` (the replicas,
    /// then the protocol's services, each as `Role::Replica` with its node
    /// id), the clients node on the host after the last of them. `index` is
    /// the point's place in its run: on hosts with an address of their own
    /// it picks the nodes' ports ([`replica_port`]), so that consecutive
    /// points never share one (a point run alone can take 0).
    pub fn start(
        experiment: &Experiment,
        point: &Point,
        index: usize,
        hosts: &[Host],
        node_binary: &Path,
    ) -> anyhow::Result<RunningPoint> {
        experiment.validate()?;
        let n = replica_count(&point.protocol, experiment.f)? as usize;
        let nodes = node_count(&point.protocol, experiment.f)? as usize;
        if hosts.len() <= nodes {
            let services = protocol_spec(&point.protocol)
                .map(|spec| spec.services_phrase())
                .filter(|phrase| !phrase.is_empty())
                .map_or_else(String::new, |phrase| format!(", {phrase}"));
            bail!(
                "{point} runs {n} replica(s){services} and a clients node, on {} hosts; got {}",
                nodes + 1,
                hosts.len()
            );
        }
        let clients_host = &hosts[nodes];
        let quota = match experiment
            .cpu_per_node(std::thread::available_parallelism().map_or(1, |cores| cores.get()))
        {
            None => None,
            Some(cores) => {
                if let Some(host) = hosts[..=nodes]
                    .iter()
                    .find(|h| matches!(h.launcher, Launcher::Ssh { .. }))
                {
                    bail!("--equal-cpu runs nodes on this machine only, not on {host}");
                }
                Some(Arc::new(CpuQuota::new(cores)?))
            }
        };
        // Without a map, every node derives its threads from its part of
        // its host's cores; an explicit map (or client thread count) wins.
        let shares = core_shares(&hosts[..=nodes]);
        let replica_threads = experiment
            .replica_threads
            .clone()
            .unwrap_or_else(|| ThreadMap::single(None));
        let replica_share = |i: usize| experiment.replica_threads.is_none().then_some(shares[i]);
        let replica_addrs = hosts[..nodes]
            .iter()
            .enumerate()
            .map(|(i, host)| replica_addr(host, index, i))
            .collect::<anyhow::Result<Vec<_>>>()?;

        // Fresh keys for every point: the nodes of a signed protocol
        // (replicas and services) each get their own secret key and
        // everyone's public keys.
        let secret_keys: Vec<SecretKey> =
            if protocol_spec(&point.protocol).is_some_and(|spec| spec.signs) {
                let nonce = now_nanos();
                (0..nodes)
                    .map(|i| {
                        SecretKey::from_seed(
                            format!("{nonce} {} replica {i}", point.protocol).as_bytes(),
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            };
        let public_keys = secret_keys
            .iter()
            .map(|key| Signer::new(key).map(|signer| signer.public_key()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("making keys: {e}"))?;
        let base = NodeConfig {
            protocol: point.protocol.clone(),
            role: Role::Replica { id: 0 },
            replicas: replica_addrs,
            public_keys,
            secret_key: None,
            app: experiment.app,
            threads: replica_threads,
            share: None,
            idle: experiment.idle,
            transport: experiment.transport,
            report_interval_ms: millis(experiment.report_interval),
            settings: experiment.node_settings(point),
            durable: DurableConfig {
                fsync: experiment.fsync_at(point),
                recover: false,
            },
            link: Default::default(),
        };
        let schedule = faults::Schedule::new(experiment, point, &hosts[..nodes], node_binary)?;
        let mut replicas = Vec::with_capacity(nodes);
        for (i, host) in hosts[..nodes].iter().enumerate() {
            let config = NodeConfig {
                role: Role::Replica { id: i as u8 },
                share: replica_share(i),
                secret_key: secret_keys.get(i).cloned(),
                link: experiment.wan.node_link(i as u64),
                ..base.clone()
            };
            replicas.push(Node::start_in(
                host,
                node_binary,
                &config,
                schedule.dir(i).as_deref(),
                quota.as_ref(),
            )?);
        }
        let clients_config = NodeConfig {
            role: Role::Clients(ClientsConfig {
                first_id: 1,
                count: point.clients,
                threads: experiment.client_threads.unwrap_or(1),
                cores: Vec::new(),
                bind: clients_host.addr,
                load: match point.rate {
                    None => Load::Closed,
                    Some(ops_per_sec) => Load::Open {
                        ops_per_sec,
                        arrivals: experiment.arrivals,
                    },
                },
                workload: experiment.workload_at(point),
                resend_ms: millis(experiment.resend),
                warmup_ms: millis(experiment.warmup),
                measure_ms: Some(millis(experiment.measured())),
                // Fresh client keys for every point, too.
                key_seed: format!("{} {} clients", now_nanos(), point.protocol).into_bytes(),
                slow_op_ms: millis(experiment.slow_op),
            }),
            link: experiment.wan.node_link(nodes as u64),
            share: experiment.client_threads.is_none().then_some(shares[nodes]),
            ..base
        };
        let clients = Node::start_in(
            clients_host,
            node_binary,
            &clients_config,
            None,
            quota.as_ref(),
        )?;
        Ok(RunningPoint {
            clients,
            replicas,
            schedule,
        })
    }

    /// The replicas' UDP addresses, by id, then the services': where the
    /// clients send.
    pub fn replica_addrs(&self) -> Vec<SocketAddr> {
        self.replicas
            .iter()
            .map(|replica| replica.started.addrs[0])
            .collect()
    }

    /// The clients' next interval report, waiting at most `timeout`; `None`
    /// if none came. The replicas' reports that have arrived are taken in
    /// too. An error event, a closed connection or a dead node ends the point
    /// with an error that says how every node that has ended ended.
    pub fn next_clients_interval(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<IntervalReport>> {
        let next = self.clients.next_interval(timeout).and_then(|interval| {
            self.replicas.iter_mut().try_for_each(Node::drain)?;
            Ok(interval)
        });
        match next {
            Ok(interval) => {
                if let Some(interval) = &interval {
                    self.clients.intervals.push(interval.clone());
                }
                Ok(interval)
            }
            Err(error) => Err(with_exits(error, &mut self.replicas, &mut self.clients)),
        }
    }

    /// Passes over the clients' interval reports that have arrived (they stay
    /// in [`NodeReport::intervals`]), so that the next
    /// [`Self::next_clients_interval`] covers time from now on, give or take
    /// one interval.
    pub fn skip_clients_intervals(&mut self) -> anyhow::Result<()> {
        while self.next_clients_interval(Duration::ZERO)?.is_some() {}
        Ok(())
    }

    /// Lets the clients run for `duration` from now, following their reports.
    /// `on_progress` gets the time since the call and each interval report
    /// as it arrives, and `None` at least every 100 ms while none does.
    /// Clients that send no report for [`SILENCE_MAX`] end the point.
    pub fn run_for(
        &mut self,
        duration: Duration,
        on_progress: &mut dyn FnMut(Duration, Option<&IntervalReport>),
    ) -> anyhow::Result<()> {
        self.run_for_with_faults(duration, on_progress, &mut |_| {})
    }

    /// [`Self::run_for`], applying the experiment's fault schedule as its
    /// faults fall due (times into the measured window, on the clock of the
    /// clients node); `on_fault` gets each as it is applied. A node the
    /// schedule kills is not an error; a node that dies unscheduled still
    /// ends the point.
    pub fn run_for_with_faults(
        &mut self,
        duration: Duration,
        on_progress: &mut dyn FnMut(Duration, Option<&IntervalReport>),
        on_fault: &mut dyn FnMut(&FaultRecord),
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last_report = start;
        while start.elapsed() < duration {
            self.apply_due_faults(on_fault)?;
            let left = duration.saturating_sub(start.elapsed());
            let wait = left
                .min(Duration::from_millis(100))
                .min(self.schedule.until_next(self.clients.started_at));
            let next = self.next_clients_interval(wait)?;
            if next.is_some() {
                last_report = Instant::now();
            } else if last_report.elapsed() > SILENCE_MAX {
                let error = anyhow::anyhow!(
                    "{} sent no report for {} s",
                    self.clients.control.name(),
                    SILENCE_MAX.as_secs()
                );
                return Err(with_exits(error, &mut self.replicas, &mut self.clients));
            }
            on_progress(start.elapsed(), next.as_ref());
        }
        Ok(())
    }

    /// Stops the clients, then the replicas, each waited for until it has
    /// exited with status 0; returns what every node reported.
    pub fn finish(self) -> anyhow::Result<PointReports> {
        let RunningPoint {
            clients,
            replicas,
            schedule,
        } = self;
        let clients = clients.finish()?;
        let replicas = replicas
            .into_iter()
            .map(Node::finish)
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(PointReports {
            replicas,
            clients,
            faults: schedule.into_records(),
        })
    }
}

/// What every node of a point reported, from its start to its exit.
#[derive(Debug)]
pub struct PointReports {
    /// By node id: the replicas, then the protocol's services (whose CPU
    /// time, counters and transports count with the replicas').
    pub replicas: Vec<NodeReport>,
    pub clients: NodeReport,
    /// The scheduled faults, as they were applied.
    pub faults: Vec<FaultRecord>,
}

/// What one node reported.
#[derive(Debug)]
pub struct NodeReport {
    /// The node's process on this machine (a local child, or the `ssh` that
    /// runs a remote one); it has exited.
    pub pid: u32,
    pub started: Started,
    /// Its interval reports, in order.
    pub intervals: Vec<IntervalReport>,
    pub report: FinalReport,
    /// `report.latency_histogram`, read; `None` if the node sent none
    /// (replicas).
    pub latency_us: Option<Histogram<u64>>,
    /// Whether the fault schedule killed its last incarnation: its totals
    /// died with it, so `report` is empty (zero counts, no counters) and
    /// its counters are missing from the point's sums.
    pub killed: bool,
    /// How many times the schedule restarted it. Its `intervals` are every
    /// incarnation's, in order (each on its own clock); `report` is the
    /// last incarnation's.
    pub restarts: u32,
}

impl PointReports {
    /// The figures of `point` as a run records them: throughput and latency
    /// of the clients' measured window, every node's counters summed by
    /// name, CPU times, transports.
    pub fn point_result(&self, point: &Point) -> anyhow::Result<PointResult> {
        let clients = &self.clients.report;
        let histogram = self
            .clients
            .latency_us
            .as_ref()
            .context("the clients sent no latency histogram")?;
        let mut counters = BTreeMap::new();
        for report in std::iter::once(clients).chain(self.replicas.iter().map(|r| &r.report)) {
            for (name, n) in &report.counters {
                *counters.entry(name.clone()).or_insert(0) += n;
            }
        }
        let seconds = clients.measured_ms as f64 / 1000.0;
        Ok(PointResult {
            protocol: point.protocol.clone(),
            variant: point.variant.clone(),
            clients: point.clients,
            offered_ops: point.rate,
            trial: point.trial,
            throughput_ops: if seconds > 0.0 {
                clients.measured_ops as f64 / seconds
            } else {
                0.0
            },
            latency_us_p50: histogram.value_at_quantile(0.5),
            latency_us_p99: histogram.value_at_quantile(0.99),
            latency_us_mean: histogram.mean(),
            measured_ops: clients.measured_ops,
            measured_ms: clients.measured_ms,
            intervals: self.clients.intervals.clone(),
            replica_cpu_ms: self.replicas.iter().map(|r| r.report.cpu_ms).sum(),
            client_cpu_ms: clients.cpu_ms,
            node_cpu: self
                .replicas
                .iter()
                .map(|r| NodeCpu {
                    cpu_ms: r.report.cpu_ms,
                    idle_spin_ms: r.report.idle_spin_ms,
                })
                .collect(),
            client_idle_spin_ms: clients.idle_spin_ms,
            counters,
            replica_transports: self.replicas.iter().map(|r| r.started.transport).collect(),
            client_transport: Some(self.clients.started.transport),
            faults: self.faults.clone(),
            completions: clients.completions.clone(),
            recovery: Vec::new(),
            periodic_dip: None,
            history: None,
        })
    }

    /// The protocol's parameters, as the first replica reported them.
    pub fn parameters(&self) -> Vec<(String, String)> {
        self.replicas
            .first()
            .map(|replica| replica.started.parameters.clone())
            .unwrap_or_default()
    }
}

/// [`run_point`] under a progress bar that shows the clients' live
/// throughput; returns the point's figures, its protocol's parameters and
/// the clients' key-value history, if they recorded one.
#[allow(clippy::type_complexity)]
fn run_point_with_bar(
    experiment: &Experiment,
    point: &Point,
    index: usize,
    hosts: &[Host],
    node_binary: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<(PointResult, Vec<(String, String)>, Option<History>)> {
    let mut running = RunningPoint::start(experiment, point, index, hosts, node_binary)?;
    let seconds = experiment.report_interval.as_secs_f64();
    running.run_for_with_faults(
        experiment.duration,
        &mut |elapsed, interval| {
            if let Some(interval) = interval {
                bar.set_message(format!(
                    "{:>12} ops/s  p50 {:>6} µs",
                    thousands((interval.ops as f64 / seconds).round() as u64),
                    interval.latency_us_p50
                ));
            }
            bar.set_position(elapsed.as_millis() as u64);
        },
        &mut |fault| {
            let line = format!("  fault at {:>6} ms: {}", fault.at_ms, fault.label);
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        },
    )?;
    let mut reports = running.finish()?;
    let history = reports.clients.report.history.take();
    Ok((reports.point_result(point)?, reports.parameters(), history))
}

/// A node process with its control connection.
#[derive(Debug)]
struct Node {
    process: NodeProcess,
    control: Control,
    /// What the node said when it started (never without a UDP address).
    started: Started,
    /// When its `Started` arrived.
    started_at: Instant,
    intervals: Vec<IntervalReport>,
    /// Whether the fault schedule has it killed or stopped.
    down: Down,
    /// How many times the schedule restarted it.
    restarts: u32,
    /// Where it runs, how, and in which run directory: what a restart
    /// starts again.
    host: Host,
    config: NodeConfig,
    dir: Option<std::path::PathBuf>,
    /// The CPU quota it runs under (`--equal-cpu`), shared by the point's
    /// nodes: a restart puts the new process under it too.
    quota: Option<Arc<CpuQuota>>,
}

impl Node {
    /// Starts the node with its run directory `dir` (see
    /// [`NodeProcess::spawn_in`]), under `quota` if given (before it starts
    /// its node threads, which inherit it).
    fn start_in(
        host: &Host,
        node_binary: &Path,
        config: &NodeConfig,
        dir: Option<&Path>,
        quota: Option<&Arc<CpuQuota>>,
    ) -> anyhow::Result<Node> {
        let process = NodeProcess::spawn_in(host, node_binary, dir)?;
        if let Some(quota) = quota {
            quota
                .admit(process.pid())
                .with_context(|| format!("putting the node on {host} under its CPU quota"))?;
        }
        let mut control = process.connect()?;
        let started = control.run(config)?;
        let started_at = Instant::now();
        if started.addrs.is_empty() {
            bail!("{} started but reported no UDP address", control.name());
        }
        Ok(Node {
            process,
            control,
            started,
            started_at,
            intervals: Vec::new(),
            down: Down::Up,
            restarts: 0,
            host: host.clone(),
            config: config.clone(),
            dir: dir.map(Path::to_path_buf),
            quota: quota.cloned(),
        })
    }

    /// Every event that has arrived, without waiting: intervals are kept,
    /// errors end the run. A node the schedule killed has nothing to say.
    fn drain(&mut self) -> anyhow::Result<()> {
        if self.down == Down::Killed {
            return Ok(());
        }
        while let Some(interval) = self.next_interval(Duration::ZERO)? {
            self.intervals.push(interval);
        }
        Ok(())
    }

    fn next_interval(&mut self, timeout: Duration) -> anyhow::Result<Option<IntervalReport>> {
        match self.control.next_event(timeout)? {
            None => Ok(None),
            Some(Event::Interval(report)) => Ok(Some(report)),
            Some(Event::Error(line)) => bail!("{}: {line}", self.control.name()),
            Some(other) => bail!(
                "{}: unexpected event while running: {other:?}",
                self.control.name()
            ),
        }
    }

    fn finish(mut self) -> anyhow::Result<NodeReport> {
        if self.down == Down::Killed {
            return Ok(self.killed_report());
        }
        if self.down == Down::Stopped {
            self.resume()?;
        }
        self.drain()?;
        let report = self.control.stop()?;
        let name = self.control.name();
        // Hang up at once: a node that has sent its totals lingers until the
        // runner closes the connection (so the totals are not lost to a reset).
        self.control.close();
        self.process.wait_success(EXIT_TIMEOUT)?;
        let latency_us = if report.latency_histogram.is_empty() {
            None
        } else {
            let histogram = Deserializer::new()
                .deserialize(&mut &report.latency_histogram[..])
                .with_context(|| format!("{name} sent an unreadable latency histogram"))?;
            Some(histogram)
        };
        Ok(NodeReport {
            pid: self.process.pid(),
            started: self.started,
            intervals: self.intervals,
            report,
            latency_us,
            killed: false,
            restarts: self.restarts,
        })
    }
}

/// `error`, with how every node of the point that has ended ended: a node
/// killed by a signal says which.
fn with_exits(error: anyhow::Error, replicas: &mut [Node], clients: &mut Node) -> anyhow::Error {
    let exits: Vec<String> = replicas
        .iter_mut()
        .chain(std::iter::once(clients))
        .filter(|node| node.down != Down::Killed)
        .filter_map(|node| {
            let status = node.process.exited()?;
            (!status.success()).then(|| format!("{} ended: {status}", node.control.name()))
        })
        .collect();
    if exits.is_empty() {
        error
    } else {
        error.context(exits.join("; "))
    }
}

/// Each node's part of its host's cores, for nodes on `hosts` (a point's
/// nodes, then its clients node): the nodes that share a machine split its
/// cores, in node order ([`CoreShare`]). Local and namespace hosts all share
/// this machine; ssh hosts share a machine when they name the same
/// destination. Each node finds out for itself how many cores its part is.
pub fn core_shares(hosts: &[Host]) -> Vec<CoreShare> {
    let machine = |host: &Host| match &host.launcher {
        Launcher::Local | Launcher::Netns { .. } => None,
        Launcher::Ssh { target, .. } => Some(target.destination.clone()),
    };
    let machines: Vec<Option<String>> = hosts.iter().map(machine).collect();
    machines
        .iter()
        .enumerate()
        .map(|(i, here)| {
            let on = |list: &[Option<String>]| list.iter().filter(|m| *m == here).count();
            CoreShare {
                index: on(&machines[..i]) as u32,
                of: on(&machines) as u32,
            }
        })
        .collect()
}

/// Where node `i` of point `index` on `host` listens: a free port on a
/// local address (other runs may share the loopback addresses), a fixed one
/// per point elsewhere ([`replica_port`]).
fn replica_addr(host: &Host, index: usize, i: usize) -> anyhow::Result<SocketAddr> {
    match host.launcher {
        Launcher::Local => {
            let probe = UdpSocket::bind((host.addr, 0))
                .with_context(|| format!("finding a free UDP port on {host}"))?;
            Ok(probe.local_addr()?)
        }
        _ => Ok(SocketAddr::new(host.addr, replica_port(index, i))),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The current time as RFC 3339 UTC, from the system clock.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_points_never_share_a_replica_port() {
        let n = usize::from(PORT_SET_SIZE);
        let ports = |point| (0..n).map(move |i| replica_port(point, i));
        for point in 0..40 {
            for port in ports(point) {
                assert!(!ports(point + 1).any(|p| p == port), "point {point}");
            }
        }
    }

    /// Nodes on this machine (local or namespace hosts) split its cores;
    /// each ssh machine is split among the nodes on it alone.
    #[test]
    fn nodes_sharing_a_machine_split_its_cores() {
        let local = |i: u8| Host::local(std::net::IpAddr::from([127, 0, 0, i]));
        let remote = |i: u8, machine: &str| Host {
            launcher: Launcher::Ssh {
                target: crate::hosts::ssh::SshTarget::parse(machine).unwrap(),
                remote_binary: "/tmp/node".into(),
            },
            ..local(i)
        };
        let share = |index, of| CoreShare { index, of };
        // A lone replica and its clients: a part each of this machine.
        assert_eq!(
            core_shares(&[local(2), local(3)]),
            [share(0, 2), share(1, 2)]
        );
        let hosts = [
            remote(2, "me@10.0.0.2"),
            local(3),
            remote(4, "me@10.0.0.3"),
            remote(5, "me@10.0.0.2"),
            local(6),
        ];
        assert_eq!(
            core_shares(&hosts),
            [
                share(0, 2),
                share(0, 2),
                share(0, 1),
                share(1, 2),
                share(1, 2)
            ]
        );
    }

    /// The warnings say no when there is nothing to warn of, and yes past
    /// each threshold.
    #[test]
    fn warnings_for_oversubscribed_cores_and_a_busy_machine() {
        let hosts: Vec<Host> = (2..=12)
            .map(|i| Host::local(std::net::IpAddr::from([127, 0, 0, i])))
            .collect();
        let quiet = Provenance {
            cores: 2,
            busy_percent_before: Some(3.0),
            ..Provenance::default()
        };
        let default = Experiment::default_comparison();
        // f = 1: four single-thread replicas and a clients node on 2 cores.
        assert_eq!(warnings(&default, &hosts, &quiet), Vec::<String>::new());
        let f3 = Experiment {
            f: 3,
            ..default.clone()
        };
        let warned = warnings(&f3, &hosts, &quiet);
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(
            warned[0].ends_with(
                "11 processes with 11 node threads share this machine's 2 cores: \
                 expect latencies set by the scheduler"
            ),
            "{warned:?}"
        );
        // The same experiment on remote hosts does not load this machine.
        let remote: Vec<Host> = hosts
            .iter()
            .map(|h| Host {
                launcher: Launcher::Ssh {
                    target: crate::hosts::ssh::SshTarget::parse("me@10.0.0.2").unwrap(),
                    remote_binary: "/tmp/node".into(),
                },
                ..h.clone()
            })
            .collect();
        assert!(warnings(&f3, &remote, &quiet).is_empty());
        let busy = Provenance {
            busy_percent_before: Some(60.0),
            load_before: Some(1.5),
            ..quiet
        };
        let warned = warnings(&default, &hosts, &busy);
        assert_eq!(
            warned,
            [
                "this machine was 60% busy before the run (load average 1.50): \
              other work will compete with the nodes"
            ]
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_418), (2025, 11, 26));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
