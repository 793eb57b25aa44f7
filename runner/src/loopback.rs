//! A whole unreplicated run on this machine: one replica node and one clients
//! node, each a `node serve` process on its own loopback address (Linux
//! routes all of 127.0.0.0/8 to `lo`, so 127.0.0.2 and 127.0.0.3 need no
//! setup).
//!
//! The replica binds port 0 on its host and reports the port it got in
//! [`Started`]; the clients are then pointed at that address, so two runs
//! never fight over a port.
//!
//! [`run`] starts both nodes, lets the clients run for the spec's duration,
//! stops the clients and then the replica (so every operation a client
//! completed was executed before the replica's totals are taken), and checks
//! that both nodes exit with status 0. [`Loopback`] is the same in steps, for
//! callers that act while the clients run.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::Deserializer;
use wire::control::{
    AppConfig, ClientsConfig, DurableConfig, Event, FinalReport, Idle, IntervalReport, Load,
    NodeConfig, Role, Started, ThreadMap, TransportKind, Workload,
};

use crate::control::{Control, NodeProcess};

/// How long a node may take to exit after it reported its totals.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// What to run.
#[derive(Clone, Debug)]
pub struct LoopbackSpec {
    pub replica_host: IpAddr,
    pub clients_host: IpAddr,
    /// Closed- or open-loop clients, all in the clients node.
    pub clients: u32,
    pub client_threads: u32,
    /// Cores for the client threads, round robin; empty: unpinned.
    pub client_cores: Vec<u32>,
    pub replica_threads: ThreadMap,
    pub transport: TransportKind,
    /// For both nodes.
    pub idle: Idle,
    pub app: AppConfig,
    pub workload: Workload,
    pub load: Load,
    pub resend: Duration,
    pub warmup: Duration,
    /// How long the clients run, warm-up included.
    pub duration: Duration,
    pub report_interval: Duration,
}

impl LoopbackSpec {
    /// `clients` closed-loop clients on one thread for `duration`, with 8-byte
    /// null operations: the replica on 127.0.0.2, all its stages on one thread
    /// on core 0; the clients on 127.0.0.3, on core 1; spin-then-block idling
    /// and whichever transport the kernel offers.
    pub fn unreplicated(clients: u32, duration: Duration) -> LoopbackSpec {
        LoopbackSpec {
            replica_host: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            clients_host: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)),
            clients,
            client_threads: 1,
            client_cores: vec![1],
            replica_threads: ThreadMap::single(Some(0)),
            transport: TransportKind::Auto,
            idle: Idle::SpinThenBlock { spin_us: 50 },
            app: AppConfig::Null,
            workload: Workload::Null {
                op_size: 8,
                reply_size: 0,
            },
            load: Load::Closed,
            resend: Duration::from_millis(100),
            warmup: Duration::ZERO,
            duration,
            report_interval: Duration::from_millis(200),
        }
    }

    /// The replica's configuration: port 0, the kernel picks.
    pub fn replica_config(&self) -> NodeConfig {
        NodeConfig {
            protocol: crate::experiment::BASELINE.to_string(),
            role: Role::Replica { id: 0 },
            replicas: vec![SocketAddr::new(self.replica_host, 0)],
            public_keys: Vec::new(),
            secret_key: None,
            app: self.app,
            threads: self.replica_threads.clone(),
            idle: self.idle,
            transport: self.transport,
            report_interval_ms: millis(self.report_interval),
            settings: Vec::new(),
            durable: DurableConfig::default(),
        }
    }

    /// The clients' configuration, for a replica bound to `replica`.
    pub fn clients_config(&self, replica: SocketAddr) -> NodeConfig {
        NodeConfig {
            role: Role::Clients(ClientsConfig {
                first_id: 0,
                count: self.clients,
                threads: self.client_threads,
                cores: self.client_cores.clone(),
                bind: self.clients_host,
                load: self.load,
                workload: self.workload.clone(),
                resend_ms: millis(self.resend),
                warmup_ms: millis(self.warmup),
                measure_ms: None,
                key_seed: Vec::new(),
            }),
            replicas: vec![replica],
            ..self.replica_config()
        }
    }
}

/// What one node reported.
#[derive(Debug)]
pub struct NodeResult {
    pub started: Started,
    /// Interval reports, in order.
    pub intervals: Vec<IntervalReport>,
    pub report: FinalReport,
    /// `report.latency_histogram`, deserialized; `None` if the node sent
    /// none (replicas).
    pub latency_us: Option<Histogram<u64>>,
}

/// What a whole run reported.
#[derive(Debug)]
pub struct LoopbackResult {
    pub replica: NodeResult,
    pub clients: NodeResult,
}

/// Runs `spec` with the node binary at `node_binary`.
pub fn run(node_binary: &Path, spec: &LoopbackSpec) -> anyhow::Result<LoopbackResult> {
    let running = Loopback::start(node_binary, spec)?;
    thread::sleep(spec.duration);
    running.finish()
}

/// A run in progress. Dropping it kills both nodes.
#[derive(Debug)]
pub struct Loopback {
    // Clients first: if both are dropped, the clients go first.
    clients: Node,
    replica: Node,
}

#[derive(Debug)]
struct Node {
    process: NodeProcess,
    control: Control,
    started: Started,
    intervals: Vec<IntervalReport>,
}

impl Loopback {
    /// Starts the replica, then the clients against it.
    pub fn start(node_binary: &Path, spec: &LoopbackSpec) -> anyhow::Result<Loopback> {
        let replica = Node::start(node_binary, spec.replica_host, &spec.replica_config())?;
        let Some(&replica_addr) = replica.started.addrs.first() else {
            bail!(
                "{} started but reported no UDP address",
                replica.control.name()
            );
        };
        let clients = Node::start(
            node_binary,
            spec.clients_host,
            &spec.clients_config(replica_addr),
        )?;
        Ok(Loopback { clients, replica })
    }

    /// The UDP address the replica is bound to.
    pub fn replica_addr(&self) -> SocketAddr {
        self.replica.started.addrs[0]
    }

    pub fn replica_started(&self) -> &Started {
        &self.replica.started
    }

    pub fn clients_started(&self) -> &Started {
        &self.clients.started
    }

    /// Forgets the clients' interval reports that have arrived so far (they
    /// stay in the result), so that the next [`Loopback::next_clients_interval`]
    /// covers only time from now on, give or take one interval.
    pub fn skip_clients_intervals(&mut self) -> anyhow::Result<()> {
        while self.clients.next_interval(Duration::ZERO)?.is_some() {}
        Ok(())
    }

    /// The clients' next interval report, waiting at most `timeout`.
    pub fn next_clients_interval(&mut self, timeout: Duration) -> anyhow::Result<IntervalReport> {
        self.clients.next_interval(timeout)?.with_context(|| {
            format!(
                "{} sent no interval report within {} ms",
                self.clients.control.name(),
                timeout.as_millis()
            )
        })
    }

    /// Stops the clients, then the replica, and waits for both to exit 0.
    pub fn finish(mut self) -> anyhow::Result<LoopbackResult> {
        let clients = self.clients.finish()?;
        let replica = self.replica.finish()?;
        self.clients.process.wait_success(EXIT_TIMEOUT)?;
        self.replica.process.wait_success(EXIT_TIMEOUT)?;
        Ok(LoopbackResult { replica, clients })
    }
}

impl Node {
    fn start(node_binary: &Path, host: IpAddr, config: &NodeConfig) -> anyhow::Result<Node> {
        let process = NodeProcess::spawn(node_binary, host)?;
        let mut control = process.connect()?;
        let started = control.run(config)?;
        Ok(Node {
            process,
            control,
            started,
            intervals: Vec::new(),
        })
    }

    /// The next interval report within `timeout`, if one came; any other
    /// event is an error.
    fn next_interval(&mut self, timeout: Duration) -> anyhow::Result<Option<IntervalReport>> {
        match self.control.next_event(timeout)? {
            None => Ok(None),
            Some(Event::Interval(report)) => {
                self.intervals.push(report.clone());
                Ok(Some(report))
            }
            Some(Event::Error(line)) => bail!("{}: {line}", self.control.name()),
            Some(other) => bail!(
                "{}: unexpected event while running: {other:?}",
                self.control.name()
            ),
        }
    }

    fn finish(&mut self) -> anyhow::Result<NodeResult> {
        while self.next_interval(Duration::ZERO)?.is_some() {}
        let report = self.control.stop()?;
        let latency_us = if report.latency_histogram.is_empty() {
            None
        } else {
            let histogram = Deserializer::new()
                .deserialize(&mut &report.latency_histogram[..])
                .with_context(|| {
                    format!(
                        "{} sent an unreadable latency histogram",
                        self.control.name()
                    )
                })?;
            Some(histogram)
        };
        Ok(NodeResult {
            started: self.started.clone(),
            intervals: std::mem::take(&mut self.intervals),
            report,
            latency_us,
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_valid_and_point_clients_at_the_replica() {
        let spec = LoopbackSpec::unreplicated(100, Duration::from_secs(2));
        let replica = spec.replica_config();
        replica.validate().unwrap();
        assert_eq!(replica.replicas, vec!["127.0.0.2:0".parse().unwrap()]);
        let addr: SocketAddr = "127.0.0.2:4567".parse().unwrap();
        let clients = spec.clients_config(addr);
        clients.validate().unwrap();
        assert_eq!(clients.replicas, vec![addr]);
        let Role::Clients(c) = &clients.role else {
            panic!("clients config has role {}", clients.role);
        };
        assert_eq!(c.count, 100);
        assert_eq!(c.bind, spec.clients_host);
    }
}
