//! `runner`, `runner bench` and `runner tune`: experiments from the command
//! line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use indicatif::MultiProgress;
use runner::cargo;
use runner::experiment::{BASELINE, EqualCpu, Experiment, PROTOCOLS, Setting, Sweep};
use runner::hosts::netns::{NetemProfile, NetnsHosts};
use runner::hosts::ssh::SshHosts;
use runner::hosts::{LocalHosts, Provider};
use runner::provenance::Provenance;
use runner::results::thousands;
use runner::results::{self, RunResults};
use runner::run::{now_rfc3339, run_experiment_saving};
use runner::threads;
use runner::wan::Wan;
use serde::Serialize;
use wire::control::{
    AppConfig, Arrivals, Idle, KeyDistribution, KvWorkload, Stage, ThreadMap, ThreadSpec,
    TransportKind, Workload,
};

/// Where results go unless `--out` says otherwise.
const RESULTS_DIR: &str = "results";

/// Clients sharing an open-loop sweep's rates unless `--clients` says.
const OPEN_LOOP_CLIENTS: u32 = 100;

/// The protocols `--protocol` accepts.
fn protocol_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(PROTOCOLS.iter().map(|spec| spec.name))
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Protocol to run; repeat or separate with commas for several. The
    /// unreplicated baseline is added if missing, so every point has its
    /// ratio.
    #[arg(long = "protocol", required = true, value_delimiter = ',', value_parser = protocol_names())]
    protocols: Vec<String>,
    /// A scheduled fault, `AT:ACTION[:TARGET]`; repeat for several
    /// (`--fault 3s:kill:primary --fault 6s:restart:primary`). AT is a time
    /// into the measured window, i.e. after the warm-up (`3s`, `1500ms`);
    /// the results record each fault at the time it was applied, in ms
    /// since the clients node started (the clock of the interval reports).
    /// ACTION: kill (SIGKILL), stop (SIGSTOP), resume (SIGCONT), restart (a
    /// killed node again, same id, address and keys, recovering from its
    /// durable state), partition (the target set cut off from every other
    /// node and the clients, both ways), heal (no target), slow=2ms (added
    /// delay per message handled; slow=0 ends it),
    /// byzantine=mute|equivocate|corrupt|replay (BFT protocols only), honest.
    /// TARGET: primary or leader (the current leader when the fault applies;
    /// a restart, resume, honest or slow=0 of `primary` hits the node the
    /// fault it ends chose), replica:N, clients (partition only); a
    /// partition takes a set joined by `+` (replica:1+replica:2).
    /// Partitions are a drop filter in each replica's transport, on every
    /// kind of host (no iptables or nft needed); kill, stop and restart need
    /// local or namespace hosts. The unreplicated baseline runs without
    /// faults, as the reference.
    #[arg(long = "fault", value_name = "AT:ACTION[:TARGET]")]
    faults: Vec<runner::faults::ScheduledFault>,
    /// Closed loop: client counts to sweep, comma-separated [default:
    /// 1,10,100,1000, as the default comparison]. With `--rates`: the one
    /// count of clients that share each rate [default: 100].
    #[arg(long, value_delimiter = ',')]
    clients: Vec<u32>,
    /// Open loop instead: offered rates (operations per second, all clients
    /// together) to sweep, comma-separated, e.g. `--rates 1000,10000,50000`.
    #[arg(long, value_delimiter = ',')]
    rates: Vec<u64>,
    /// With `--rates`: when operations arrive, `poisson` (exponential gaps:
    /// independent users, bursts included) or `fixed` (evenly spaced).
    /// Either way latency counts from each arrival's scheduled time, and
    /// arrivals that find every client busy are counted.
    #[arg(long, default_value_t = Arrivals::Poisson)]
    arrivals: Arrivals,
    #[command(flatten)]
    common: CommonArgs,
    /// Measured runs of every point. Trials interleave protocols (A trial 1,
    /// B trial 1, A trial 2, ...); the table and plot show their mean and
    /// spread.
    #[arg(long, default_value_t = 1)]
    trials: u32,
    /// Stages to threads to cores for every replica, in the form `runner
    /// tune` prints: threads separated by `/`, stages joined by `+`, `@N`
    /// pins to core N; e.g. `receive+verify/protocol+send@1`, or `single`,
    /// `per-stage` [default: each node derives its map from its part of
    /// its host's cores].
    #[arg(long, value_parser = parse_thread_map)]
    replica_threads: Option<ThreadMap>,
    /// Every node (replicas, services, the clients node) under the same CPU
    /// quota, CORES of CPU time each (0.4: 40% of a core), through the
    /// kernel's cgroup CPU controller (needs root): protocols then compare
    /// as if each node had a machine of its own. Without a value: this
    /// machine's cores over the most nodes any point runs, so that every
    /// node gets its quota.
    #[arg(long, value_name = "CORES", num_args = 0..=1, default_missing_value = "auto", value_parser = parse_equal_cpu)]
    equal_cpu: Option<EqualCpu>,
    #[command(flatten)]
    out: OutArgs,
    #[command(flatten)]
    hosts: HostArgs,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// Protocol whose replicas' thread maps to try.
    #[arg(long, value_parser = protocol_names())]
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
    out: OutArgs,
    #[command(flatten)]
    hosts: HostArgs,
}

/// `runner rerun`: an experiment again, from its results.
#[derive(Debug, Args)]
pub struct RerunArgs {
    /// A results.json a run wrote: its experiment runs again, unchanged.
    results: PathBuf,
    #[command(flatten)]
    out: OutArgs,
    /// Where the nodes run this time (the recorded run's hosts are in its
    /// results.json, under `hosts`).
    #[command(flatten)]
    hosts: HostArgs,
}

/// Where a run's files go.
#[derive(Debug, Args)]
struct OutArgs {
    /// Folder for the results (results.csv, results.json, plot.svg and
    /// plot.png; tune.csv and tune.json for `tune`) [default: results/<start
    /// time>-<experiment name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Let `--out` name a folder that already holds files (results in it are
    /// replaced).
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// How long each point runs, warm-up and cool-down included.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    duration: Duration,
    /// Trimmed from the start of each point before measuring (connections
    /// set up, caches and batches warm).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    warmup: Duration,
    /// Trimmed from the end of each point (clients stopping).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "500ms")]
    cooldown: Duration,
    /// Faults to tolerate: PBFT runs 3f+1 replicas (f = 1 to 3); the
    /// unreplicated baseline always runs one.
    #[arg(long, default_value_t = 1)]
    f: u32,
    /// UDP transport of every node: `auto` takes io_uring where the kernel
    /// has it, else epoll; the table says which each node used.
    #[arg(long, value_enum, default_value_t = TransportArg::Auto)]
    transport: TransportArg,
    /// What a node thread does with no work: `busy` polls (a core per
    /// thread, lowest latency), `spin:<µs>` polls that long, then blocks.
    #[arg(long, default_value = "spin:100", value_parser = parse_idle)]
    idle: Idle,
    /// Client threads (one socket each) in the clients node. Default: one
    /// per core of the clients node's part of its host (one, unpinned, when
    /// the host has fewer cores than nodes).
    #[arg(long)]
    client_threads: Option<u32>,
    /// An operation slower than this counts as slow: per interval in
    /// timeline.csv, per fault in the recovery figures.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "100ms")]
    slow_op: Duration,
    /// The replicated application: `null` (operations are opaque bytes, the
    /// reply is empty) or `kv` (a key-value store: gets and puts).
    #[arg(long, value_enum, default_value_t = AppArg::Null)]
    app: AppArg,
    /// Null app: bytes in each operation; several, comma-separated, sweep
    /// them.
    #[arg(long, value_delimiter = ',', default_value = "16")]
    op_size: Vec<u32>,
    /// Null app: bytes in each reply (the operation asks for them, so it
    /// needs at least 4 bytes); several, comma-separated, sweep them.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    reply_size: Vec<u32>,
    /// KV app: keys the operations draw from.
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// KV app: bytes in each put's value; several, comma-separated, sweep
    /// them.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    value_size: Vec<u32>,
    /// A protocol tunable or workload parameter, `NAME=VALUE`, or swept,
    /// `NAME=V1,V2,...`; repeat for several (sweeps multiply). Tunables are
    /// `PROTOCOL.TUNABLE` (`pbft.batch_max=16`; `runner protocols` lists
    /// them with their bounds); workload parameters are `op_size`,
    /// `reply_size`, `value_size` and `keys`; `fsync=0` stops replicas
    /// from fsyncing what their protocol persists (faster, not crash-safe).
    /// Every value used is recorded in the results.
    #[arg(long = "set", value_parser = Setting::parse)]
    set: Vec<Setting>,
    /// KV app: fraction of operations that are gets (0 to 1); the rest are
    /// puts.
    #[arg(long, default_value_t = 0.5)]
    read_ratio: f64,
    /// KV app: zipf exponent of the key popularity (0: every key equally
    /// likely; 0.99 is the usual skewed workload).
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
    /// Delay added to every packet leaving a node (a round trip between two
    /// nodes crosses two): by tc netem on netns hosts whose kernel has it,
    /// otherwise emulated in the nodes' transports (the run says which).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    netem_delay: Duration,
    /// Random variation around the delay (uniform; netem reorders, the
    /// user-space emulation keeps each link in order).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    netem_jitter: Duration,
    /// Percent of packets leaving a node that are lost.
    #[arg(long, default_value_t = 0.0)]
    netem_loss: f64,
    /// Egress bandwidth of each node (netem) or of each of its links
    /// (user-space emulation), Mbit/s.
    #[arg(long, alias = "netem-rate")]
    netem_rate_mbit: Option<u32>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum HostKind {
    /// Processes on 127.0.0.x.
    Local,
    /// Processes in network namespaces on this machine, one per node,
    /// joined by a bridge, optionally with emulated WAN links (netem); needs
    /// root and iproute2.
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

fn parse_equal_cpu(text: &str) -> Result<EqualCpu, String> {
    if text == "auto" {
        return Ok(EqualCpu::Auto);
    }
    match text.parse::<f64>() {
        Ok(cores) if cores.is_finite() && cores > 0.0 => Ok(EqualCpu::Cores(cores)),
        _ => Err(format!("{text:?} is not a positive number of cores")),
    }
}

fn parse_thread_map(s: &str) -> Result<ThreadMap, String> {
    threads::parse(s)
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
        experiment.slow_op = self.slow_op;
        let first = |values: &[u32], default| values.first().copied().unwrap_or(default);
        (experiment.app, experiment.workload) = match self.app {
            AppArg::Null => (
                AppConfig::Null,
                Workload::Null {
                    op_size: first(&self.op_size, 16),
                    reply_size: first(&self.reply_size, 0),
                },
            ),
            AppArg::Kv => (
                AppConfig::Kv,
                Workload::Kv(KvWorkload {
                    keys: self.keys,
                    value_size: first(&self.value_size, 64),
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
        experiment.settings = self.set.clone();
        let swept = [
            ("op_size", &self.op_size),
            ("reply_size", &self.reply_size),
            ("value_size", &self.value_size),
        ];
        for (name, values) in swept {
            if values.len() > 1 {
                experiment.settings.push(Setting {
                    name: name.to_string(),
                    values: values.iter().map(|&v| u64::from(v)).collect(),
                });
            }
        }
    }
}

impl HostArgs {
    /// The emulated WAN the `--netem-*` flags ask for, before the hosts say
    /// how it will be applied.
    fn wan(&self) -> Wan {
        let profile = NetemProfile {
            delay: self.netem_delay,
            jitter: self.netem_jitter,
            loss_percent: self.netem_loss,
            rate_mbit: self.netem_rate_mbit,
        };
        Wan::choose(profile, false)
    }

    /// The hosts, with `wan`'s profile applied by netem where they can
    /// (netns hosts whose kernel has the qdisc), by the nodes' transports
    /// everywhere else; the `Wan` returned says which, and the terminal too.
    fn provider(&self, wan: Wan) -> anyhow::Result<(Box<dyn Provider>, Wan)> {
        let profile = wan.profile;
        let mut wan = Wan::choose(profile, false);
        let provider: Box<dyn Provider> = match self.hosts {
            HostKind::Local => Box::new(LocalHosts),
            HostKind::Netns => {
                NetnsHosts::available().map_err(|why| anyhow::anyhow!("--hosts netns: {why}"))?;
                if !profile.is_none() {
                    match NetnsHosts::netem_available() {
                        Ok(()) => wan = Wan::choose(profile, true),
                        Err(why) => eprintln!("netem unavailable ({why})"),
                    }
                }
                Box::new(NetnsHosts::new(wan.netem())?)
            }
            HostKind::Ssh => {
                let mut hosts = match (&self.ssh_hosts_file, self.ssh_hosts.is_empty()) {
                    (Some(file), true) => SshHosts::from_file(file)?,
                    (None, false) => SshHosts::from_specs(&self.ssh_hosts)?,
                    (None, true) => anyhow::bail!(
                        "--hosts ssh needs the machines to run on: --ssh-host [user@]host[:port] \
                         (repeat for several) or --ssh-hosts-file FILE"
                    ),
                    (Some(_), false) => {
                        anyhow::bail!("--hosts ssh takes --ssh-hosts-file or --ssh-host, not both")
                    }
                };
                if let Some(identity) = &self.ssh_identity {
                    hosts = hosts.identity(identity);
                }
                Box::new(hosts)
            }
        };
        if !wan.is_none() {
            eprintln!("emulated WAN: {wan}");
        }
        Ok((provider, wan))
    }
}

/// Overrides for the default comparison (for quick runs and tests).
#[derive(Debug, Args)]
pub struct DefaultArgs {
    /// How long each point runs, warm-up and cool-down included [default:
    /// 5s].
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Trimmed from the start of each point [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Trimmed from the end of each point [default: 500ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    cooldown: Option<Duration>,
    /// Closed-loop client counts, comma-separated [default: 1,10,100,1000].
    #[arg(long, value_delimiter = ',')]
    clients: Vec<u32>,
    #[command(flatten)]
    out: OutArgs,
}

/// What `runner protocols` prints: every protocol of the registry, how many
/// replicas it runs (and which services beside them), and its tunables with
/// their defaults and bounds.
pub fn protocols_text() -> String {
    let mut text = String::new();
    for spec in PROTOCOLS {
        let mut traits = vec![if spec.is_replicated() {
            format!("{} replicas", spec.replication.rule())
        } else {
            "one replica".to_string()
        }];
        if spec.is_replicated() {
            traits.push(format!("at most {}", spec.replicas_max));
        }
        if !spec.services.is_empty() {
            traits.push(format!("with {}", spec.services_phrase()));
        }
        if spec.signs {
            traits.push("signed".to_string());
        }
        if spec.batches {
            traits.push("batches".to_string());
        }
        text.push_str(&format!(
            "{} ({})\n  {}\n",
            spec.name,
            traits.join(", "),
            spec.about
        ));
        if spec.tunables.is_empty() {
            text.push_str("  no tunables\n");
        }
        for t in spec.tunables {
            text.push_str(&format!(
                "  {}.{} = {} {} ({} to {}): {}\n",
                spec.name, t.name, t.default, t.unit, t.min, t.max, t.about
            ));
        }
    }
    text.push_str(&format!(
        "workload parameters (--set NAME=V[,V...] or their own options): {}\n",
        runner::experiment::WORKLOAD_PARAMETERS.join(", ")
    ));
    text.push_str(&format!(
        "run parameters (--set): {} = 1 (0 or 1): whether replicas fsync what their protocol \
         persists; 0 is faster and not crash-safe\n",
        runner::experiment::FSYNC
    ));
    text
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
    let out = Out::new(args.out.out.as_deref(), args.out.overwrite);
    run_and_save(&experiment, &mut LocalHosts, out)
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let mut experiment = Experiment {
        name: "bench".to_string(),
        ..Experiment::default_comparison()
    };
    experiment.protocols.clear();
    for protocol in &args.protocols {
        if !experiment.protocols.contains(protocol) {
            experiment.protocols.push(protocol.clone());
        }
    }
    if !experiment.protocols.iter().any(|p| p == BASELINE) {
        experiment.protocols.insert(0, BASELINE.to_string());
    }
    experiment.sweep = if args.rates.is_empty() {
        if args.clients.is_empty() {
            experiment.sweep
        } else {
            Sweep::Clients(args.clients.clone())
        }
    } else {
        let clients = match args.clients[..] {
            [] => OPEN_LOOP_CLIENTS,
            [clients] => clients,
            _ => anyhow::bail!(
                "--rates sweeps offered rates with one --clients count, not {}",
                args.clients.len()
            ),
        };
        Sweep::Rates {
            clients,
            rates: args.rates.clone(),
        }
    };
    experiment.arrivals = args.arrivals;
    experiment.faults = args.faults.clone();
    experiment.trials = args.trials;
    experiment.replica_threads = args.replica_threads.clone();
    args.common.apply(&mut experiment);
    // The quota as a number of cores, so the recorded experiment says it.
    experiment.equal_cpu = args.equal_cpu;
    experiment.equal_cpu = experiment
        .cpu_per_node(std::thread::available_parallelism().map_or(1, |cores| cores.get()))
        .map(EqualCpu::Cores);
    experiment.wan = args.hosts.wan();
    // Everything about the experiment before the hosts are set up.
    experiment.validate()?;
    let out = Out::new(args.out.out.as_deref(), args.out.overwrite);
    out.check()?;
    let mut provider;
    (provider, experiment.wan) = args.hosts.provider(experiment.wan)?;
    run_and_save(&experiment, provider.as_mut(), out)
}

pub fn rerun(args: &RerunArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.results)
        .with_context(|| format!("reading {}", args.results.display()))?;
    let recorded: RunResults = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a results.json", args.results.display()))?;
    let mut experiment: Experiment = serde_json::from_value(recorded.experiment.clone())
        .with_context(|| {
            format!(
                "{} records an experiment this runner cannot read (written by another version?)",
                args.results.display()
            )
        })?;
    eprintln!(
        "rerunning {} of {} (hosts then: {})",
        experiment.name, recorded.started, recorded.hosts
    );
    let now = Provenance::of_this_machine(cargo::workspace_root());
    if let (Some(then), Some(commit)) = (&recorded.provenance.commit, &now.commit)
        && (then != commit || now.dirty == Some(true))
    {
        eprintln!(
            "warning: recorded at commit {then}{}; this tree is at {commit}{}",
            if recorded.provenance.dirty == Some(true) {
                " (dirty)"
            } else {
                ""
            },
            if now.dirty == Some(true) {
                " (dirty)"
            } else {
                ""
            },
        );
    }
    experiment.validate()?;
    let out = Out::new(args.out.out.as_deref(), args.out.overwrite);
    out.check()?;
    // The recorded profile, applied as these hosts can.
    anyhow::ensure!(
        args.hosts.wan().is_none(),
        "rerun runs the recorded emulated WAN ({}); it takes no --netem-* options",
        experiment.wan
    );
    let mut provider;
    (provider, experiment.wan) = args.hosts.provider(experiment.wan)?;
    run_and_save(&experiment, provider.as_mut(), out)
}

/// Where a run's files go: a folder the user named, or one named after the
/// run's start time under [`RESULTS_DIR`].
#[derive(Clone, Copy, Debug)]
struct Out<'a> {
    dir: Option<&'a Path>,
    overwrite: bool,
}

impl<'a> Out<'a> {
    fn new(dir: Option<&'a Path>, overwrite: bool) -> Out<'a> {
        Out { dir, overwrite }
    }

    /// Before anything runs: a named folder that holds files, or is not a
    /// folder, is refused (unless overwriting).
    fn check(&self) -> anyhow::Result<()> {
        let Some(dir) = self.dir else { return Ok(()) };
        if dir.exists() {
            anyhow::ensure!(dir.is_dir(), "--out {}: not a folder", dir.display());
            let full = std::fs::read_dir(dir)
                .with_context(|| format!("--out {}: reading it", dir.display()))?
                .next()
                .is_some();
            anyhow::ensure!(
                !full || self.overwrite,
                "--out {} already holds files; choose another folder, or pass --overwrite",
                dir.display()
            );
        }
        Ok(())
    }

    /// Makes the folder: `started` names it unless the user did.
    fn create(&self, name: &str, started: &str) -> anyhow::Result<PathBuf> {
        self.check()?;
        let dir = match self.dir {
            Some(dir) => dir.to_path_buf(),
            None => default_dir(name, started),
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

/// Runs `experiment`, prints the summary, writes the files: after every
/// point, so that a run that fails keeps the points it finished.
fn run_and_save(
    experiment: &Experiment,
    provider: &mut dyn Provider,
    out: Out<'_>,
) -> anyhow::Result<ExitCode> {
    experiment.validate()?;
    out.check()?;
    let node = cargo::build_node()?;
    let started = now_rfc3339();
    // Before the first point: a folder that cannot be made fails now.
    let dir = out.create(&experiment.name, &started)?;
    let mut kept = 0;
    let mut keep = |results: &RunResults| {
        runner::save::write_all(&dir, results)?;
        kept = results.points.len();
        Ok(())
    };
    let results = match run_on(experiment, &started, provider, &node, &dir, &mut keep) {
        Ok(results) => results,
        Err(error) => {
            if kept > 0 {
                eprintln!(
                    "the {} finished before the failure are in {}",
                    plural(kept, "point"),
                    dir.display()
                );
            }
            return Err(error);
        }
    };
    println!("{}", results::summary_table(&results));
    if let Some(table) = runner::bound::bound_table(&results) {
        println!("{table}");
    }
    let mut annotated = results.clone();
    runner::timeline::annotate(&mut annotated);
    if let Some(table) = runner::timeline::recovery_table(&annotated) {
        println!("{table}");
    }
    for point in &results.points {
        if let Some(history) = &point.history {
            println!(
                "history: {} {}",
                dir.join(&history.file).display(),
                history.summary()
            );
        }
    }
    let written = runner::save::write_all(&dir, &results)?;
    println!(
        "results: {}\n         {}\nplot:    {}\n         {}\ntimeline: {}",
        written.csv.display(),
        written.json.display(),
        written.svg.display(),
        written.png.display(),
        written.timeline_csv.display()
    );
    if let Some(recovery) = &written.recovery_csv {
        println!("recovery: {}", recovery.display());
    }
    for timeline in &written.timelines {
        println!("timeline plot: {}", timeline.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `experiment` with a built node binary, and cleans up the hosts
/// whatever happens.
fn run_on(
    experiment: &Experiment,
    started: &str,
    provider: &mut dyn Provider,
    node: &Path,
    histories: &Path,
    finished: &mut dyn FnMut(&RunResults) -> anyhow::Result<()>,
) -> anyhow::Result<RunResults> {
    let progress = MultiProgress::new();
    eprintln!(
        "{}: {} on {}",
        experiment.name,
        plural(experiment.points().len(), "point"),
        provider.describe()
    );
    let result = run_experiment_saving(
        experiment, started, provider, node, &progress, histories, finished,
    );
    let cleaned = provider.cleanup();
    let results = result?;
    cleaned.context("cleaning up the hosts")?;
    Ok(results)
}

/// "1 point", "3 points".
fn plural(count: usize, what: &str) -> String {
    if count == 1 {
        format!("1 {what}")
    } else {
        format!("{count} {what}s")
    }
}

/// `results/<start time>-<name>` under the current directory, the start time
/// as the results record it (`2026-12-03T15:41:51Z` names
/// `20261203-154151-<name>`).
fn default_dir(name: &str, started: &str) -> PathBuf {
    let stamp = started.replace([':', '-'], "").replace('T', "-");
    Path::new(RESULTS_DIR).join(format!("{}-{name}", stamp.trim_end_matches('Z')))
}

/// Thread maps worth trying for a replica on this machine.
fn candidate_maps(verify_max: u32) -> Vec<ThreadMap> {
    let spec = |stages: &[Stage], core: Option<u32>| ThreadSpec {
        stages: stages.to_vec(),
        core,
    };
    let mut maps = vec![
        ThreadMap::single(Some(0)),
        ThreadMap::single(None),
        ThreadMap {
            threads: vec![
                spec(&[Stage::Receive, Stage::Verify], None),
                spec(&[Stage::Protocol, Stage::Send], None),
            ],
        },
        ThreadMap::per_stage(),
    ];
    for verifiers in 2..=verify_max {
        let mut threads = vec![spec(&[Stage::Receive], None)];
        threads.extend((0..verifiers).map(|_| spec(&[Stage::Verify], None)));
        threads.push(spec(&[Stage::Protocol, Stage::Send], None));
        maps.push(ThreadMap { threads });
    }
    maps
}

/// One thread map's result in `runner tune`.
#[derive(Debug, Serialize)]
struct TuneRow {
    /// In the form `--replica-threads` takes.
    thread_map: String,
    throughput_ops: f64,
    latency_us_p50: u64,
    latency_us_p99: u64,
    replica_cpu_us_per_op: Option<f64>,
}

/// What `runner tune` writes to tune.json.
#[derive(Debug, Serialize)]
struct TuneResults<'a> {
    started: &'a str,
    protocol: &'a str,
    clients: u32,
    hosts: String,
    experiment: &'a Experiment,
    provenance: &'a Provenance,
    rows: &'a [TuneRow],
}

pub fn tune(args: &TuneArgs) -> anyhow::Result<ExitCode> {
    let mut base = Experiment {
        name: "tune".to_string(),
        protocols: vec![args.protocol.clone()],
        sweep: Sweep::Clients(vec![args.clients]),
        ..Experiment::default_comparison()
    };
    args.common.apply(&mut base);
    base.wan = args.hosts.wan();
    base.validate()?;
    let out = Out::new(args.out.out.as_deref(), args.out.overwrite);
    out.check()?;
    let mut provider;
    (provider, base.wan) = args.hosts.provider(base.wan)?;
    let node = cargo::build_node()?;
    let started = now_rfc3339();
    let dir = out.create(&base.name, &started)?;
    let provenance = Provenance::of_this_machine(cargo::workspace_root());
    let mut rows = Vec::new();
    for map in candidate_maps(args.verify_max) {
        let experiment = Experiment {
            replica_threads: Some(map.clone()),
            ..base.clone()
        };
        eprintln!("--replica-threads {}", threads::format(&map));
        let results = run_on(
            &experiment,
            &now_rfc3339(),
            provider.as_mut(),
            &node,
            // Each candidate's history replaces the previous one's: a
            // failing check stops the tuning with its file in place.
            &dir,
            &mut |_| Ok(()),
        )?;
        let point = &results.points[0];
        rows.push(TuneRow {
            thread_map: threads::format(&map),
            throughput_ops: point.throughput_ops,
            latency_us_p50: point.latency_us_p50,
            latency_us_p99: point.latency_us_p99,
            replica_cpu_us_per_op: point.replica_cpu_us_per_op(),
        });
        write_tune(
            &dir,
            &started,
            &base,
            provider.describe(),
            &provenance,
            &rows,
        )?;
    }
    println!(
        "{:<40} {:>12} {:>8} {:>8} {:>13}",
        "--replica-threads", "ops/s", "p50 µs", "p99 µs", "replica µs/op"
    );
    for row in &rows {
        println!(
            "{:<40} {:>12} {:>8} {:>8} {:>13}",
            row.thread_map,
            thousands(row.throughput_ops.round() as u64),
            row.latency_us_p50,
            row.latency_us_p99,
            row.replica_cpu_us_per_op
                .map_or_else(|| "-".to_string(), |us| format!("{us:.1}"))
        );
    }
    let best = rows
        .iter()
        .max_by(|a, b| a.throughput_ops.total_cmp(&b.throughput_ops))
        .expect("at least one thread map");
    println!(
        "best: --replica-threads {} ({} ops/s)\nresults: {}",
        best.thread_map,
        thousands(best.throughput_ops.round() as u64),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// tune.csv and tune.json in `dir`, for the maps tried so far.
fn write_tune(
    dir: &Path,
    started: &str,
    experiment: &Experiment,
    hosts: String,
    provenance: &Provenance,
    rows: &[TuneRow],
) -> anyhow::Result<()> {
    let csv_path = dir.join("tune.csv");
    let mut csv = csv::Writer::from_path(&csv_path)
        .with_context(|| format!("writing {}", csv_path.display()))?;
    for row in rows {
        csv.serialize(row)?;
    }
    csv.flush()?;
    let json = TuneResults {
        started,
        protocol: &experiment.protocols[0],
        clients: match &experiment.sweep {
            Sweep::Clients(counts) => counts[0],
            Sweep::Rates { clients, .. } => *clients,
        },
        hosts,
        experiment,
        provenance,
        rows,
    };
    let json_path = dir.join("tune.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)? + "\n")
        .with_context(|| format!("writing {}", json_path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_results_folder_carries_the_start_time() {
        assert_eq!(
            default_dir("bench", "2026-12-03T15:41:51Z"),
            Path::new("results/20261203-154151-bench")
        );
        assert_eq!(plural(1, "point"), "1 point");
        assert_eq!(plural(2, "point"), "2 points");
    }

    #[test]
    fn an_out_folder_with_files_is_refused_unless_overwriting() {
        let dir = std::env::temp_dir().join(format!("runner-out-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(Out::new(Some(&dir), false).check().is_ok(), "missing: fine");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(Out::new(Some(&dir), false).check().is_ok(), "empty: fine");
        std::fs::write(dir.join("results.csv"), "old").unwrap();
        let error = Out::new(Some(&dir), false).check().unwrap_err();
        assert!(error.to_string().contains("--overwrite"), "{error}");
        assert!(Out::new(Some(&dir), true).check().is_ok());
        let file = dir.join("results.csv");
        assert!(Out::new(Some(&file), true).check().is_err(), "a file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
