//! A point's fault schedule, applied while its clients run: which faults are
//! due (times into the measured window, on the clients node's clock), whom
//! they hit (the leader resolved from the replicas' interval reports), and
//! how: signals to the node's process (kill, stop, resume), a new process
//! for a restart, or a [`Command::Fault`] over the control connection
//! (partition, heal, slow, Byzantine, honest). Each applied fault becomes a
//! [`FaultRecord`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::Signal;
use wire::control::{Command, DurableConfig, Fault, NodeConfig};

use super::{Node, RunningPoint};
use crate::experiment::{Experiment, Point, replica_count};
use crate::faults::{Action, ScheduledFault, Target, in_order};
use crate::hosts::{Host, Launcher};
use crate::results::FaultRecord;

/// Whether the fault schedule has a node down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Down {
    Up,
    /// SIGSTOP: its process is there, frozen, until resumed.
    Stopped,
    /// SIGKILL: its process is gone, until restarted.
    Killed,
}

/// The schedule of one point.
#[derive(Debug)]
pub(super) struct Schedule {
    /// In the order they apply.
    faults: Vec<ScheduledFault>,
    /// The first fault not applied yet.
    next: usize,
    warmup: Duration,
    /// Replicas (leader targets are among them).
    n: usize,
    /// The nodes each fault that can be ended hit, by its family and
    /// target as written: what the fault that ends it hits.
    chosen: HashMap<(&'static str, Target), Vec<usize>>,
    /// The partition in force: the nodes cut off, and whether the clients
    /// are on their side. A node restarted meanwhile gets it too.
    partition: Option<(Vec<usize>, bool)>,
    records: Vec<FaultRecord>,
    /// The nodes' run directories, when a restart needs them: removed with
    /// the schedule.
    root: Option<PathBuf>,
    node_binary: PathBuf,
}

impl Schedule {
    /// The schedule of `experiment` for `point`, whose nodes run on `hosts`.
    /// Faults that signal a process need it on this machine.
    pub(super) fn new(
        experiment: &Experiment,
        point: &Point,
        hosts: &[Host],
        node_binary: &Path,
    ) -> anyhow::Result<Schedule> {
        let applies = crate::experiment::protocol_spec(&point.protocol)
            .is_some_and(crate::faults::applies_to);
        let faults: Vec<ScheduledFault> = if applies {
            in_order(&experiment.faults).into_iter().cloned().collect()
        } else {
            Vec::new()
        };
        let signals = faults.iter().any(|f| {
            matches!(
                f.action,
                Action::Kill | Action::Stop | Action::Resume | Action::Restart
            )
        });
        if signals
            && let Some(remote) = hosts
                .iter()
                .find(|h| matches!(h.launcher, Launcher::Ssh { .. }))
        {
            bail!(
                "--fault: kill, stop, resume and restart signal the node's process, which \
                 runs over ssh on {remote}: run them on local or namespace hosts"
            );
        }
        let root = if faults.iter().any(|f| f.action == Action::Restart) {
            let root = std::env::temp_dir().join(format!(
                "runner-{}-{}",
                std::process::id(),
                super::now_nanos()
            ));
            std::fs::create_dir_all(&root)
                .with_context(|| format!("making the nodes' run directory {}", root.display()))?;
            Some(root)
        } else {
            None
        };
        Ok(Schedule {
            faults,
            next: 0,
            warmup: experiment.warmup,
            n: replica_count(&point.protocol, experiment.f)? as usize,
            chosen: HashMap::new(),
            partition: None,
            records: Vec::new(),
            root,
            node_binary: node_binary.to_path_buf(),
        })
    }

    /// Node `i`'s run directory, if the schedule restarts nodes.
    pub(super) fn dir(&self, i: usize) -> Option<PathBuf> {
        self.root
            .as_ref()
            .map(|root| root.join(format!("node-{i}")))
    }

    /// How long from now until the next fault is due, the clients node
    /// having started at `clients_started`; a long time if none is left.
    pub(super) fn until_next(&self, clients_started: Instant) -> Duration {
        match self.faults.get(self.next) {
            Some(fault) => {
                (clients_started + self.warmup + fault.at).saturating_duration_since(Instant::now())
            }
            None => Duration::from_secs(3600),
        }
    }

    /// The faults applied, in order.
    pub(super) fn into_records(mut self) -> Vec<FaultRecord> {
        std::mem::take(&mut self.records)
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        if let Some(root) = &self.root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

impl RunningPoint {
    /// Applies every fault that is due, in order; `on_fault` hears of each.
    pub(super) fn apply_due_faults(
        &mut self,
        on_fault: &mut dyn FnMut(&FaultRecord),
    ) -> anyhow::Result<()> {
        while self.schedule.until_next(self.clients.started_at) == Duration::ZERO {
            let fault = self.schedule.faults[self.schedule.next].clone();
            self.schedule.next += 1;
            let label = self
                .apply(&fault)
                .with_context(|| format!("--fault {fault}"))?;
            let at_ms = millis(self.clients.started_at.elapsed());
            let record = FaultRecord { at_ms, label };
            on_fault(&record);
            self.schedule.records.push(record);
        }
        Ok(())
    }

    /// Applies one fault; returns its label for the record.
    fn apply(&mut self, fault: &ScheduledFault) -> anyhow::Result<String> {
        let nodes = self.resolve(fault);
        let mut label = fault.label(&nodes.iter().map(|&i| i as u8).collect::<Vec<_>>());
        match fault.action {
            Action::Partition => {
                self.partition(fault, &nodes)?;
                return Ok(label);
            }
            Action::Heal => {
                self.schedule.partition = None;
                for node in self.replicas.iter_mut().filter(|n| n.down != Down::Killed) {
                    node.control.send(Command::Fault(Fault::Heal))?;
                }
                return Ok(label);
            }
            _ => {}
        }
        let i = nodes[0];
        let node = &mut self.replicas[i];
        match (fault.action, node.down) {
            (Action::Restart, Down::Killed) => {
                let fresh = restart(node, &self.schedule.node_binary)?;
                *node = fresh;
                if self.schedule.partition.is_some() {
                    self.send_partition(i)?;
                }
            }
            (Action::Restart, _) => {
                label.push_str(", skipped: it is not down");
            }
            (_, Down::Killed) => {
                label.push_str(", skipped: it is killed");
            }
            (Action::Kill, _) => {
                node.process.kill()?;
                node.down = Down::Killed;
            }
            (Action::Stop, _) => {
                node.process.signal(Signal::SIGSTOP)?;
                node.down = Down::Stopped;
            }
            (Action::Resume, _) => node.resume()?,
            (Action::Slow { us }, _) => node.control.send(Command::Fault(Fault::Slow { us }))?,
            (Action::Byzantine(behaviour), _) => node
                .control
                .send(Command::Fault(Fault::Byzantine(behaviour)))?,
            (Action::Honest, _) => node.control.send(Command::Fault(Fault::Honest))?,
            (Action::Partition | Action::Heal, _) => unreachable!("handled above"),
        }
        Ok(label)
    }

    /// The node ids `fault` hits: for a fault that ends another, those the
    /// other hit; the leader as the replicas report it now; replica ids as
    /// given. The clients are not among them (a partition handles them).
    fn resolve(&mut self, fault: &ScheduledFault) -> Vec<usize> {
        if fault.ends().is_some() && fault.action != Action::Heal {
            let key = (fault.family(), fault.targets[0]);
            if let Some(nodes) = self.schedule.chosen.remove(&key) {
                return nodes;
            }
        }
        let leader = self.leader();
        let nodes: Vec<usize> = fault
            .targets
            .iter()
            .filter_map(|target| match target {
                Target::Leader => Some(leader),
                Target::Replica(i) => Some(usize::from(*i)),
                Target::Clients => None,
            })
            .collect();
        if fault.ends().is_none() && !fault.targets.is_empty() {
            self.schedule
                .chosen
                .insert((fault.family(), fault.targets[0]), nodes.clone());
        }
        nodes
    }

    /// The leader most nodes that are up reported in their latest interval
    /// (replica 0, every protocol's first leader, before any report).
    fn leader(&self) -> usize {
        let mut votes: HashMap<u8, usize> = HashMap::new();
        for node in self.replicas.iter().filter(|n| n.down == Down::Up) {
            if let Some(leader) = node.intervals.last().and_then(|i| i.leader) {
                *votes.entry(leader).or_default() += 1;
            }
        }
        votes
            .into_iter()
            .filter(|&(leader, _)| usize::from(leader) < self.schedule.n)
            .max_by_key(|&(leader, count)| (count, std::cmp::Reverse(leader)))
            .map_or(0, |(leader, _)| usize::from(leader))
    }

    /// Cuts `nodes` (and the clients, if the fault names them) off from
    /// every other node, both ways: each node that is not killed drops what
    /// it would exchange with the other side. The clients node has no
    /// filter of its own; the replicas on the other side drop its datagrams.
    fn partition(&mut self, fault: &ScheduledFault, nodes: &[usize]) -> anyhow::Result<()> {
        let clients_inside = fault.targets.contains(&Target::Clients);
        self.schedule.partition = Some((nodes.to_vec(), clients_inside));
        for j in 0..self.replicas.len() {
            if self.replicas[j].down != Down::Killed {
                self.send_partition(j)?;
            }
        }
        Ok(())
    }

    /// Tells node `j` what the partition in force cuts it off from: the
    /// nodes on the other side, and the clients if they are there.
    fn send_partition(&mut self, j: usize) -> anyhow::Result<()> {
        let Some((nodes, clients_inside)) = &self.schedule.partition else {
            return Ok(());
        };
        let inside = nodes.contains(&j);
        let mut blocked: Vec<SocketAddr> = self
            .replicas
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != j && nodes.contains(&k) != inside)
            .map(|(_, n)| n.started.addrs[0])
            .collect();
        if *clients_inside != inside {
            blocked.extend(&self.clients.started.addrs);
        }
        self.replicas[j]
            .control
            .send(Command::Fault(Fault::Partition(blocked)))
    }
}

impl Node {
    /// SIGCONT to a node the schedule stopped.
    pub(super) fn resume(&mut self) -> anyhow::Result<()> {
        self.process.signal(Signal::SIGCONT)?;
        self.down = Down::Up;
        Ok(())
    }

    /// The report of a node whose last incarnation the schedule killed: what
    /// it reported while it ran, and no totals.
    pub(super) fn killed_report(self) -> super::NodeReport {
        super::NodeReport {
            pid: self.process.pid(),
            started: self.started,
            intervals: self.intervals,
            report: wire::control::FinalReport {
                elapsed_ms: 0,
                ops: 0,
                measured_ops: 0,
                measured_ms: 0,
                latency_histogram: Vec::new(),
                counters: Vec::new(),
                cpu_ms: 0,
                idle_spin_ms: 0,
                completions: Default::default(),
                history: None,
            },
            latency_us: None,
            killed: true,
            restarts: self.restarts,
        }
    }
}

/// A new incarnation of the killed `node`: a new `node serve` on its host,
/// in its run directory, with its id, address and keys, recovering from
/// what it persisted. Its interval reports follow the old ones.
fn restart(node: &mut Node, node_binary: &Path) -> anyhow::Result<Node> {
    let config = NodeConfig {
        durable: DurableConfig {
            recover: true,
            ..node.config.durable
        },
        ..node.config.clone()
    };
    let mut fresh = Node::start_in(
        &node.host,
        node_binary,
        &config,
        node.dir.as_deref(),
        node.quota.as_ref(),
    )
    .context("restarting it")?;
    fresh.intervals = std::mem::take(&mut node.intervals);
    fresh.restarts = node.restarts + 1;
    Ok(fresh)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
