//! `runner`, `runner bench` and `runner tune`: experiments from the command
//! line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::MultiProgress;
use runner::cargo;
use runner::experiment::{Experiment, Sweep};
use runner::hosts::netns::{NetemProfile, NetnsHosts};
use runner::hosts::ssh::SshHosts;
use runner::hosts::{LocalHosts, Provider};
use runner::results::thousands;
use runner::results::{self, RunResults};
use runner::run::{now_rfc3339, run_experiment};
use wire::control::{
    AppConfig, Idle, KeyDistribution, KvWorkload, Stage, ThreadMap, ThreadSpec, TransportKind,
    Workload,
};

/// Where results go unless `--out` says otherwise.
const RESULTS_DIR: &str = "results";

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Protocol to run; repeat for several. The unreplicated baseline is
    /// added if missing, so every point has its ratio.
    #[arg(long = "protocol", required = true)]
    protocols: Vec<String>,
    /// Closed-loop client counts to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    clients: Vec<u32>,
    /// Open loop instead: offered rates (operations per second) to sweep,
    /// comma-separated, shared by `--clients` clients (one count).
    #[arg(long, value_delimiter = ',')]
    rates: Vec<u64>,
    #[command(flatten)]
    common: CommonArgs,
    /// Measured runs per point.
    #[arg(long, default_value_t = 1)]
    trials: u32,
    /// Folder for results.csv, results.json and the plots
    /// [default: results/<timestamp>-bench].
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    hosts: HostArgs,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[arg(long)]
    protocol: String,
    /// Closed-loop clients to tune at.
    #[arg(long, default_value_t = 100)]
    clients: u32,
    /// Most verify threads to try.
    #[arg(long, default_value_t = 2)]
    verify_max: u32,
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    hosts: HostArgs,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// How long each point runs, warm-up and cool-down included.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    duration: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    warmup: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "500ms")]
    cooldown: Duration,
    /// Faults to tolerate (replicated protocols run 3f+1 or 2f+1 replicas).
    #[arg(long, default_value_t = 1)]
    f: u32,
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    transport: TransportArg,
    /// `busy`, or `spin:<µs>` (spin that long, then block).
    #[arg(long, default_value = "spin:100", value_parser = parse_idle)]
    idle: Idle,
    /// Client threads (one socket each) in the clients node.
    #[arg(long, default_value_t = 1)]
    client_threads: u32,
    /// `null` or `kv`.
    #[arg(long, value_enum, default_value_t = AppArg::Null)]
    app: AppArg,
    /// Null app: operation size in bytes.
    #[arg(long, default_value_t = 16)]
    op_size: u32,
    /// KV app: number of keys, value size, read ratio, zipf exponent (0:
    /// uniform).
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    #[arg(long, default_value_t = 64)]
    value_size: u32,
    #[arg(long, default_value_t = 0.5)]
    read_ratio: f64,
    #[arg(long, default_value_t = 0.0)]
    zipf: f64,
}

#[derive(Debug, Args)]
struct HostArgs {
    /// Where nodes run.
    #[arg(long, value_enum, default_value_t = HostKind::Local)]
    hosts: HostKind,
    /// ssh: a file of hosts, one per line: `[user@]host[:port] [node-address]`.
    #[arg(long)]
    ssh_hosts_file: Option<PathBuf>,
    /// ssh: a host, `[user@]host[:port]`; repeat for several.
    #[arg(long = "ssh-host")]
    ssh_hosts: Vec<String>,
    /// ssh: the private key to log in with.
    #[arg(long)]
    ssh_identity: Option<PathBuf>,
    /// netns: delay added to every packet leaving a node (a round trip
    /// between two nodes crosses two).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    netem_delay: Duration,
    /// netns: random variation around the delay.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    netem_jitter: Duration,
    /// netns: percent of packets leaving a node that are lost.
    #[arg(long, default_value_t = 0.0)]
    netem_loss: f64,
    /// netns: egress bandwidth of each node, Mbit/s.
    #[arg(long)]
    netem_rate_mbit: Option<u32>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HostKind {
    /// Processes on 127.0.0.x.
    Local,
    /// Processes in network namespaces on this machine, one per node,
    /// joined by a bridge, optionally with emulated WAN links (netem).
    Netns,
    /// Processes on remote machines, started over ssh.
    Ssh,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum TransportArg {
    Auto,
    IoUring,
    Epoll,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AppArg {
    Null,
    Kv,
}

fn parse_idle(s: &str) -> Result<Idle, String> {
    match s {
        "busy" => Ok(Idle::Busy),
        _ => s
            .strip_prefix("spin:")
            .and_then(|us| us.parse().ok())
            .map(|spin_us| Idle::SpinThenBlock { spin_us })
            .ok_or_else(|| format!("{s:?}: expected `busy` or `spin:<microseconds>`")),
    }
}

impl CommonArgs {
    fn apply(&self, experiment: &mut Experiment) {
        experiment.duration = self.duration;
        experiment.warmup = self.warmup;
        experiment.cooldown = self.cooldown;
        experiment.f = self.f;
        experiment.transport = match self.transport {
            TransportArg::Auto => TransportKind::Auto,
            TransportArg::IoUring => TransportKind::IoUring,
            TransportArg::Epoll => TransportKind::Epoll,
        };
        experiment.idle = self.idle;
        experiment.client_threads = self.client_threads;
        (experiment.app, experiment.workload) = match self.app {
            AppArg::Null => (
                AppConfig::Null,
                Workload::Null {
                    op_size: self.op_size,
                },
            ),
            AppArg::Kv => (
                AppConfig::Kv,
                Workload::Kv(KvWorkload {
                    keys: self.keys,
                    value_size: self.value_size,
                    read_ratio: self.read_ratio,
                    distribution: if self.zipf > 0.0 {
                        KeyDistribution::Zipf {
                            exponent: self.zipf,
                        }
                    } else {
                        KeyDistribution::Uniform
                    },
                }),
            ),
        };
    }
}

impl HostArgs {
    fn provider(&self) -> anyhow::Result<Box<dyn Provider>> {
        Ok(match self.hosts {
            HostKind::Local => Box::new(LocalHosts),
            HostKind::Netns => {
                NetnsHosts::available().map_err(|why| anyhow::anyhow!("--hosts netns: {why}"))?;
                Box::new(NetnsHosts::new(NetemProfile {
                    delay: self.netem_delay,
                    jitter: self.netem_jitter,
                    loss_percent: self.netem_loss,
                    rate_mbit: self.netem_rate_mbit,
                })?)
            }
            HostKind::Ssh => {
                let mut hosts = match (&self.ssh_hosts_file, self.ssh_hosts.is_empty()) {
                    (Some(file), true) => SshHosts::from_file(file)?,
                    (None, false) => SshHosts::from_specs(&self.ssh_hosts)?,
                    _ => {
                        anyhow::bail!("--hosts ssh takes --ssh-hosts-file or --ssh-host, not both")
                    }
                };
                if let Some(identity) = &self.ssh_identity {
                    hosts = hosts.identity(identity);
                }
                Box::new(hosts)
            }
        })
    }
}

/// Overrides for the default comparison (for quick runs and tests).
#[derive(Debug, Args)]
pub struct DefaultArgs {
    /// How long each point runs [default: the experiment's, 5s].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    #[arg(long, value_parser = humantime::parse_duration)]
    cooldown: Option<Duration>,
    /// Closed-loop client counts, comma-separated [default: 1,10,100,1000].
    #[arg(long, value_delimiter = ',')]
    clients: Vec<u32>,
    /// Folder for the results [default: results/<timestamp>-default].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The default comparison, on local hosts.
pub fn run_default(args: &DefaultArgs) -> anyhow::Result<ExitCode> {
    let mut experiment = Experiment::default_comparison();
    experiment.duration = args.duration.unwrap_or(experiment.duration);
    experiment.warmup = args.warmup.unwrap_or(experiment.warmup);
    experiment.cooldown = args.cooldown.unwrap_or(experiment.cooldown);
    if !args.clients.is_empty() {
        experiment.sweep = Sweep::Clients(args.clients.clone());
    }
    run_and_save(&experiment, &mut LocalHosts, args.out.as_deref())
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let mut experiment = Experiment {
        name: "bench".to_string(),
        ..Experiment::default_comparison()
    };
    experiment.protocols = args.protocols.clone();
    if !experiment
        .protocols
        .iter()
        .any(|p| p == runner::experiment::BASELINE)
    {
        experiment
            .protocols
            .insert(0, runner::experiment::BASELINE.to_string());
    }
    experiment.sweep = if args.rates.is_empty() {
        Sweep::Clients(args.clients.clone())
    } else {
        anyhow::ensure!(
            args.clients.len() == 1,
            "an open-loop sweep (--rates) takes one --clients count"
        );
        Sweep::Rates {
            clients: args.clients[0],
            rates: args.rates.clone(),
        }
    };
    experiment.trials = args.trials;
    args.common.apply(&mut experiment);
    let mut provider = args.hosts.provider()?;
    run_and_save(&experiment, provider.as_mut(), args.out.as_deref())
}

/// Runs `experiment`, prints the summary, writes the files: after every
/// point, so that a run that fails keeps the points it finished.
fn run_and_save(
    experiment: &Experiment,
    provider: &mut dyn Provider,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let dir = match out {
        Some(dir) => dir.to_path_buf(),
        None => default_dir(&experiment.name),
    };
    // Before the first point: a folder that cannot be made fails now.
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut kept = 0;
    let mut keep = |results: &RunResults| {
        results::write_all(&dir, results)?;
        kept = results.points.len();
        Ok(())
    };
    let results = match run_on(experiment, provider, &mut keep) {
        Ok(results) => results,
        Err(error) => {
            if kept > 0 {
                eprintln!(
                    "the {kept} points finished before the failure are in {}",
                    dir.display()
                );
            }
            return Err(error);
        }
    };
    println!("{}", results::summary_table(&results));
    let written = results::write_all(&dir, &results)?;
    println!(
        "results: {}\n         {}\nplot:    {}\n         {}",
        written.csv.display(),
        written.json.display(),
        written.svg.display(),
        written.png.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Builds the node binary, runs `experiment`, and cleans up the hosts
/// whatever happens.
fn run_on(
    experiment: &Experiment,
    provider: &mut dyn Provider,
    finished: &mut dyn FnMut(&RunResults) -> anyhow::Result<()>,
) -> anyhow::Result<RunResults> {
    experiment.validate()?;
    let node = cargo::build_node()?;
    let progress = MultiProgress::new();
    eprintln!(
        "{}: {} points on {}",
        experiment.name,
        experiment.points().len(),
        provider.describe()
    );
    let result = run_experiment(experiment, provider, &node, &progress, finished);
    let cleaned = provider.cleanup();
    let results = result?;
    cleaned.context("cleaning up the hosts")?;
    Ok(results)
}

/// `results/<timestamp>-<name>` under the current directory.
fn default_dir(name: &str) -> PathBuf {
    let stamp = now_rfc3339().replace([':', '-'], "").replace('T', "-");
    Path::new(RESULTS_DIR).join(format!("{}-{name}", stamp.trim_end_matches('Z')))
}

/// Thread maps worth trying for a replica on this machine.
fn candidate_maps(verify_max: u32) -> Vec<(String, ThreadMap)> {
    let spec = |stages: &[Stage], core: Option<u32>| ThreadSpec {
        stages: stages.to_vec(),
        core,
    };
    let mut maps = vec![
        ("one thread, core 0".to_string(), ThreadMap::single(Some(0))),
        ("one thread, unpinned".to_string(), ThreadMap::single(None)),
        (
            "receive+verify | protocol+send".to_string(),
            ThreadMap {
                threads: vec![
                    spec(&[Stage::Receive, Stage::Verify], None),
                    spec(&[Stage::Protocol, Stage::Send], None),
                ],
            },
        ),
        ("a thread per stage".to_string(), ThreadMap::per_stage()),
    ];
    for verifiers in 2..=verify_max {
        let mut threads = vec![spec(&[Stage::Receive], None)];
        threads.extend((0..verifiers).map(|_| spec(&[Stage::Verify], None)));
        threads.push(spec(&[Stage::Protocol, Stage::Send], None));
        maps.push((format!("{verifiers} verify threads"), ThreadMap { threads }));
    }
    maps
}

pub fn tune(args: &TuneArgs) -> anyhow::Result<ExitCode> {
    let mut provider = args.hosts.provider()?;
    let mut rows = Vec::new();
    for (name, map) in candidate_maps(args.verify_max) {
        let mut experiment = Experiment {
            name: format!("tune {}", args.protocol),
            protocols: vec![args.protocol.clone()],
            sweep: Sweep::Clients(vec![args.clients]),
            replica_threads: Some(map),
            ..Experiment::default_comparison()
        };
        args.common.apply(&mut experiment);
        eprintln!("thread map: {name}");
        let results = run_on(&experiment, provider.as_mut(), &mut |_| Ok(()))?;
        let point = &results.points[0];
        rows.push((
            name,
            point.throughput_ops,
            point.latency_us_p50,
            point.latency_us_p99,
        ));
    }
    println!(
        "{:<34} {:>14} {:>9} {:>9}",
        "thread map", "ops/s", "p50 µs", "p99 µs"
    );
    for (name, ops, p50, p99) in &rows {
        println!(
            "{name:<34} {:>14} {p50:>9} {p99:>9}",
            thousands(ops.round() as u64)
        );
    }
    let best = rows
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("at least one thread map");
    println!(
        "best: {} ({} ops/s)",
        best.0,
        thousands(best.1.round() as u64)
    );
    Ok(ExitCode::SUCCESS)
}
