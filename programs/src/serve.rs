//! `node serve`: one replica or one set of benchmark clients, configured and
//! reporting over a TCP control connection (the protocol is in
//! [`wire::control`]). A service a protocol runs beside its replicas (chain
//! replication's master) is a replica role with an id past the replicas'
//! ([`wire::registry::ProtocolSpec::services`]): it starts like one, as
//! [`Start::Replica`], and the protocol's kit decides what runs there.
//!
//! The node first reads its control secret, one line of hex, from its
//! standard input (the runner that starts it writes a fresh one there; it is
//! never on the command line, where `ps` shows it). It listens on
//! `--host`:`--port` and prints `listening on <addr>` as the first line on
//! stdout, so a parent that asked for port 0 learns the port.
//!
//! Every connection must prove knowledge of the secret
//! ([`wire::control::auth`]: an HMAC challenge-response, then the node proves
//! itself) within [`HANDSHAKE_TIMEOUT`] of being accepted. Handshakes run on
//! their own threads, at most [`HANDSHAKES_MAX`] at once, so a peer that
//! connects and says nothing, or trickles bytes, holds one of those slots
//! for at most the timeout and never the runner's connection. A connection
//! that fails (a wrong proof, garbage, the deadline) is closed, logged on
//! stderr and counted (the final report's [`CONTROL_REFUSED_COUNTER`]); the
//! first that succeeds is the runner's, and the port stops listening.
//! Handshakes still in progress then run to their deadline and are refused
//! (and counted) too. Waiting for the runner ends after [`ACCEPT_TIMEOUT`].
//!
//! A replica (or service) keeps what its protocol persists in `replica-<id>.state` in the
//! node's run directory (`--dir`; by default a directory of its own under
//! the system's temporary directory, removed at exit), fsynced or not and
//! replayed or removed at start as [`NodeConfig::durable`] says.
//!
//! The runner's first frame must then be a whole [`Command::Run`] within
//! [`FIRST_COMMAND_TIMEOUT`] (a deadline for the frame, not for each read).
//! The node validates the configuration, starts on the real runtime, answers
//! [`Event::Started`], then sends an [`Event::Interval`] every
//! `report_interval_ms` while a reader thread watches the connection. On
//! [`Command::Stop`], or when the runner hangs up, it stops the node, sends
//! [`Event::Finished`] with the totals, and exits 0.
//!
//! Anything else ends the node with one [`Event::Error`] line (also printed on
//! stderr) and exit status 1: a malformed frame, another version, an invalid
//! configuration (every count and id has an upper bound), an unknown
//! protocol, a socket that does not bind, memory that is not there for the
//! clients asked for, a node thread that fails, a panic. Every wait has a
//! timeout, so a node never hangs on a silent runner.

use std::io::{self, BufRead as _, Read, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use hdrhistogram::serialization::{Serializer as _, V2Serializer};
use nix::sys::resource::{UsageWho, getrusage};
use protocols::app::{App, KvApp, NullApp};
use protocols::registry::{Protocol, Start};
use runtime::deploy::faults::tamper_for;
use runtime::deploy::{ClientsSetup, DurableSetup, ReplicaSetup, Running, Totals};
use runtime::durable::Sync;
use wire::control::auth::{ControlSecret, DeadlineReader, HandshakeError, node_handshake};
use wire::control::{
    AppConfig, CLIENT_THREADS_MAX, COMPLETION_BIN_MS, CONTROL_REFUSED_COUNTER, ClientsConfig,
    Command, Completions, Cores, DurableConfig, Event, EventFrame, Fault, FinalReport, FrameError,
    IntervalReport, NodeConfig, Role, Started, ThreadMap, Workload, client_threads, decode_command,
    read_frame, write_frame,
};
use wire::history::History;
use wire::registry::Settings;
use wire::{ClientId, ReplicaId};

use crate::{panics, workload};

/// How long the node waits for the runner to connect.
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection has, from being accepted, to finish the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most handshakes in progress at once; a connection beyond them is closed.
pub const HANDSHAKES_MAX: usize = 8;
/// How long the node waits for the whole first command once the runner has
/// proved itself.
pub const FIRST_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest line the node reads its secret from.
const SECRET_LINE_MAX: u64 = 1024;
/// How often the node checks whether one of its threads failed.
const FAILURE_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long the node waits, after its last event, for the runner to close the
/// connection. Closing first with unread input would reset the connection,
/// and a reset may discard the last event before the runner reads it.
const LINGER: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TCP port for the control connection; 0 lets the kernel pick one (the
    /// `listening on` line says which).
    #[arg(long)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// The node's run directory: a replica keeps what its protocol persists
    /// in `replica-<id>.state` there, for a restart to recover from.
    /// Without it, a directory of its own under the system's temporary
    /// directory, removed when the node exits.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Where the node keeps its files.
#[derive(Debug)]
struct RunDir {
    path: PathBuf,
    /// Made for this process, and removed when it ends.
    temporary: bool,
}

impl RunDir {
    fn new(dir: Option<&Path>) -> anyhow::Result<RunDir> {
        let (path, temporary) = match dir {
            Some(dir) => (dir.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!("node-{}", std::process::id())),
                true,
            ),
        };
        std::fs::create_dir_all(&path)
            .with_context(|| format!("making the run directory {}", path.display()))?;
        Ok(RunDir { path, temporary })
    }

    /// Replica `id`'s durable state, as `durable` asks for it. Without
    /// `recover`, what an earlier run left there is removed first.
    fn durable(&self, id: u8, durable: DurableConfig) -> anyhow::Result<DurableSetup> {
        let path = self.path.join(format!("replica-{id}.state"));
        if !durable.recover {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        let sync = if durable.fsync {
            Sync::Fsync
        } else {
            Sync::NoFsync
        };
        Ok(DurableSetup { path, sync })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Serves one control connection, then exits: 0 after a clean stop, 1 after
/// an error (reported on the connection and on stderr).
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let secret = read_secret(io::stdin().lock())?;
    let listener = TcpListener::bind((args.host, args.port))
        .with_context(|| format!("listening on {}", SocketAddr::new(args.host, args.port)))?;
    let addr = listener
        .local_addr()
        .context("reading the control address")?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr}")
        .and_then(|()| stdout.flush())
        .context("writing to stdout")?;
    drop(stdout);
    let refused = Refused::default();
    let stream = accept_runner(&listener, &secret, ACCEPT_TIMEOUT, &refused)?;
    drop(listener);

    // Panics still print to stderr (for the runner's stderr tail), and also
    // become the error event.
    panics::install_hook(true);
    let mut conn = Connection::new(stream);
    let result = panics::catch(|| serve(&mut conn, &refused, args.dir.as_deref()))
        .unwrap_or_else(|message| Err(anyhow!("panic: {message}")));
    match result {
        Ok(()) => {
            conn.close();
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            let line = one_line(&error);
            // Stderr first: by the time the runner reads the event, the line
            // is in the pipe it reads our stderr from.
            eprintln!("error: {line}");
            let _ = conn.send(Event::Error(line));
            conn.close();
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The control secret: the first line of `input`.
fn read_secret(input: impl io::BufRead) -> anyhow::Result<ControlSecret> {
    let mut line = String::new();
    input
        .take(SECRET_LINE_MAX)
        .read_line(&mut line)
        .context("reading the control secret from stdin")?;
    if line.trim().is_empty() {
        bail!(
            "no control secret on stdin: whoever starts a node writes one line of 64 hex \
             digits there, and answers the handshake with it (wire::control::auth)"
        );
    }
    ControlSecret::from_hex(&line).map_err(|e| anyhow!("the control secret on stdin: {e}"))
}

/// Control connections refused so far: by the handshake threads (each logs
/// its own, also after the runner's connection won) and by the accept loop
/// (too many handshakes at once). Read for the final report.
type Refused = Arc<AtomicU64>;

/// Accepts connections until one proves it holds `secret` (at most
/// `timeout`); returns it. Handshakes still in progress then go on to their
/// deadline on their own threads, and count in `refused` when they fail.
fn accept_runner(
    listener: &TcpListener,
    secret: &ControlSecret,
    timeout: Duration,
    refused: &Refused,
) -> anyhow::Result<TcpStream> {
    // A blocking accept cannot time out; poll a non-blocking one. The control
    // plane is not in a hurry.
    listener
        .set_nonblocking(true)
        .context("setting up the control port")?;
    let deadline = Instant::now() + timeout;
    // A handshake thread sends its connection once it passed, or `None`
    // once it failed (it has logged and counted that itself).
    let (done_tx, done) = mpsc::channel::<Option<TcpStream>>();
    let mut pending = 0;
    loop {
        while let Ok(outcome) = done.try_recv() {
            pending -= 1;
            if let Some(stream) = outcome {
                return Ok(stream);
            }
        }
        match listener.accept() {
            Ok((stream, peer)) if pending >= HANDSHAKES_MAX => {
                refuse(
                    refused,
                    peer,
                    &format!("{HANDSHAKES_MAX} handshakes already in progress"),
                );
                drop(stream);
            }
            Ok((stream, peer)) => {
                let done_tx = done_tx.clone();
                let secret = secret.clone();
                let refused = Arc::clone(refused);
                thread::Builder::new()
                    .name("control-handshake".to_string())
                    .spawn(move || match handshake(stream, &secret) {
                        Ok(stream) => {
                            if done_tx.send(Some(stream)).is_err() {
                                // Another connection passed first; this one
                                // is closed as it drops.
                                refuse(&refused, peer, "another connection is the runner's");
                            }
                        }
                        Err(error) => {
                            refuse(&refused, peer, &error.to_string());
                            let _ = done_tx.send(None);
                        }
                    })
                    .context("starting a control handshake thread")?;
                pending += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!(
                        "no runner connected with the control secret within {} s ({} \
                         connections refused)",
                        timeout.as_secs(),
                        refused.load(Ordering::Relaxed)
                    );
                }
                thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("accepting a control connection"),
        }
    }
}

/// Counts and logs a refused control connection.
fn refuse(refused: &Refused, peer: SocketAddr, why: &str) {
    let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
    eprintln!("control connection from {peer} refused ({count} so far): {why}");
}

/// One connection's handshake, within [`HANDSHAKE_TIMEOUT`] of now; the
/// caller drops (closes) a connection that fails.
fn handshake(mut stream: TcpStream, secret: &ControlSecret) -> Result<TcpStream, HandshakeError> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    node_handshake(&mut stream, secret, deadline)?;
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(None)?;
    Ok(stream)
}

/// Everything after the connection is accepted; an error becomes the one
/// [`Event::Error`] the runner gets.
fn serve(conn: &mut Connection, refused: &Refused, dir: Option<&Path>) -> anyhow::Result<()> {
    let config = conn.first_command()?;
    let dir = RunDir::new(dir)?;
    config.validate().context("invalid config")?;
    let protocol: Protocol = config.protocol.parse().map_err(|e: String| anyhow!(e))?;
    let settings = protocol
        .spec()
        .settings(&config.settings)
        .map_err(|problems| anyhow!(problems.join("; ")))?;
    let node = config.node_name();
    if let Role::Replica { id } = config.role
        && config.durable.recover
        && let Some(&addr) = config.replicas.get(usize::from(id))
    {
        wait_for_port(addr, BIND_RETRY_FOR);
    }
    let start = Instant::now();
    let running = start_node(protocol, &settings, &config, &dir)
        .with_context(|| format!("starting {node}"))?;
    conn.send(Event::Started(Started {
        transport: running.transport(),
        addrs: running.local_addrs(),
        parameters: protocol.parameters(&settings),
    }))?;
    conn.listen()?;
    if let Role::Clients(clients) = &config.role {
        running.count_slower_than(Duration::from_millis(clients.slow_op_ms));
    }
    // Where the clients' completion bins start on the reports' clock.
    let bins_start = running.started().saturating_duration_since(start);

    let interval = Duration::from_millis(config.report_interval_ms);
    let mut on_fault = |fault: Fault| apply_fault(protocol, &config, &running, fault);
    match report_until_stopped(conn, &running, start, interval, &mut on_fault) {
        Ending::Stop | Ending::Hangup => {
            let totals = running.stop().with_context(|| format!("{node} failed"))?;
            let clients = matches!(config.role, Role::Clients(_));
            let history = history_keys(&config);
            let mut report = final_report(totals, start.elapsed(), bins_start, clients, history)?;
            report.counters.push((
                CONTROL_REFUSED_COUNTER.to_string(),
                refused.load(Ordering::Relaxed),
            ));
            // After a hang-up nobody is listening; that is fine.
            let _ = conn.send(Event::Finished(report));
            Ok(())
        }
        Ending::Failed => match running.stop() {
            Err(error) => Err(error).with_context(|| format!("{node} failed")),
            Ok(_) => bail!("{node} failed: a thread stopped by itself"),
        },
        Ending::Bad(error) => {
            let _ = running.stop();
            Err(error)
        }
    }
}

/// How long a replica restarted to recover waits for its UDP port to be
/// free: the socket of the process it replaces can stay bound for a moment
/// after that process died (io_uring releases it asynchronously).
const BIND_RETRY_FOR: Duration = Duration::from_secs(3);

/// Waits, at most `timeout`, until a UDP socket can bind `addr` (a wildcard
/// port is free at once). Binding for real comes after, and says what is
/// wrong if the port is still taken.
fn wait_for_port(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while std::net::UdpSocket::bind(addr).is_err() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
}

/// Why the reporting loop ended.
enum Ending {
    /// The runner sent `Stop`.
    Stop,
    /// The runner closed the connection, or stopped reading.
    Hangup,
    /// A node thread stopped by itself.
    Failed,
    /// The runner sent something wrong.
    Bad(anyhow::Error),
}

/// Applies a fault the runner commands to the running replica: a partition
/// or a heal, added delay, a Byzantine behaviour or honesty again. A
/// clients node takes none (the runner never sends it one).
fn apply_fault(
    protocol: Protocol,
    config: &NodeConfig,
    running: &Running,
    fault: Fault,
) -> anyhow::Result<()> {
    fault
        .validate()
        .map_err(|e| anyhow!("fault {fault:?}: {e}"))?;
    if matches!(config.role, Role::Clients(_)) {
        bail!("a clients node takes no faults (got {fault:?})");
    }
    let faults = running.faults();
    let applied = format!("{fault:?}");
    match fault {
        Fault::Partition(addrs) => faults.partition(addrs),
        Fault::Heal => faults.partition(Vec::new()),
        Fault::Slow { us } => faults.slow(Duration::from_micros(us)),
        Fault::Byzantine(behaviour) => {
            let tamper = match tamper_for(behaviour) {
                Some(tamper) => tamper,
                None => protocol.kit().equivocator(config).ok_or_else(|| {
                    anyhow!(
                        "{protocol} has no Byzantine behaviour {:?} on the real runtime",
                        behaviour.name()
                    )
                })?,
            };
            faults.set_tamper(Some(tamper));
        }
        Fault::Honest => faults.set_tamper(None),
    }
    eprintln!("{}: fault applied: {applied}", config.node_name());
    Ok(())
}

/// Sends an interval report every `interval` from `start` on, until the
/// runner says stop, goes away, or a node thread fails. Fault commands go to
/// `on_fault` as they come.
fn report_until_stopped(
    conn: &mut Connection,
    running: &Running,
    start: Instant,
    interval: Duration,
    on_fault: &mut dyn FnMut(Fault) -> anyhow::Result<()>,
) -> Ending {
    let mut next_report = Instant::now() + interval;
    loop {
        let now = Instant::now();
        if now >= next_report {
            // Every metric is since the previous call.
            let metrics = running.metrics();
            let report = IntervalReport {
                elapsed_ms: millis(start.elapsed()),
                ops: metrics.ops,
                latency_us_p50: metrics.latency_us_p50,
                latency_us_p99: metrics.latency_us_p99,
                leader: metrics.leader,
                executed: metrics.executed,
                slow_ops: metrics.slow_ops,
            };
            if conn.send(Event::Interval(report)).is_err() {
                return Ending::Hangup;
            }
            // A slow interval is not made up for with a burst of reports.
            next_report = (next_report + interval).max(now + interval / 2);
        }
        if running.has_failed() {
            return Ending::Failed;
        }
        let wait = next_report
            .saturating_duration_since(Instant::now())
            .min(FAILURE_POLL_INTERVAL);
        match conn.next_incoming(wait) {
            None => {}
            Some(Incoming::Command(Command::Stop)) => return Ending::Stop,
            Some(Incoming::Command(Command::Fault(fault))) => {
                if let Err(error) = on_fault(fault) {
                    return Ending::Bad(error);
                }
            }
            Some(Incoming::Command(Command::Run(_))) => {
                return Ending::Bad(anyhow!(
                    "got a second Run command; the node is already running"
                ));
            }
            Some(Incoming::Bad(error)) => return Ending::Bad(error),
            Some(Incoming::Hangup) => return Ending::Hangup,
        }
    }
}

/// Starts the node `config` describes, on the real runtime, through the
/// protocol's entry in the registry.
fn start_node(
    protocol: Protocol,
    settings: &Settings,
    config: &NodeConfig,
    dir: &RunDir,
) -> anyhow::Result<Running> {
    let node = match &config.role {
        Role::Replica { id } => Start::Replica {
            id: ReplicaId(*id),
            secret_key: config.secret_key.clone(),
            app: app(config.app),
            setup: replica_setup(config, *id),
            durable: Some(dir.durable(*id, config.durable)?),
        },
        Role::Clients(clients) => Start::Clients {
            resend: Duration::from_millis(clients.resend_ms),
            key_seed: clients.key_seed.clone(),
            ops: workload::op_factory(&clients.workload),
            setup: clients_setup(config, clients),
        },
    };
    protocol
        .kit()
        .start(config, settings, node)
        .map_err(|e| anyhow!(e))
}

fn app(app: AppConfig) -> Box<dyn App> {
    match app {
        AppConfig::Null => Box::new(NullApp),
        AppConfig::Kv => Box::new(KvApp::default()),
    }
}

/// The cores this node may use, from its share of the host's, when it has
/// one to derive its threads from.
fn own_cores(config: &NodeConfig) -> Option<Cores> {
    config
        .share
        .map(|share| share.cores_of(&runtime::deploy::usable_cores()))
}

fn replica_setup(config: &NodeConfig, id: u8) -> ReplicaSetup {
    let signs = wire::registry::find(&config.protocol).is_some_and(|spec| spec.signs);
    ReplicaSetup {
        id: ReplicaId(id),
        replicas: config.replicas.clone(),
        threads: own_cores(config).map_or_else(
            || config.threads.clone(),
            |cores| ThreadMap::derive(&cores, signs),
        ),
        idle: config.idle,
        transport: config.transport,
        link: config.link,
    }
}

fn clients_setup(config: &NodeConfig, clients: &ClientsConfig) -> ClientsSetup {
    let (threads, cores) = own_cores(config).map_or_else(
        || (clients.threads, clients.cores.clone()),
        |cores| client_threads(&cores, clients.count, CLIENT_THREADS_MAX),
    );
    ClientsSetup {
        first_id: ClientId(clients.first_id),
        count: clients.count,
        threads,
        cores,
        bind: clients.bind,
        replicas: config.replicas.clone(),
        load: clients.load,
        idle: config.idle,
        transport: config.transport,
        warmup: Duration::from_millis(clients.warmup_ms),
        measure: clients.measure_ms.map(Duration::from_millis),
        link: config.link,
    }
}

/// The keys whose history a node reports: the sampled ones of clients that
/// run the key-value workload; `None` for everything else.
fn history_keys(config: &NodeConfig) -> Option<Vec<u64>> {
    match &config.role {
        Role::Clients(ClientsConfig {
            workload: Workload::Kv(kv),
            ..
        }) => Some(wire::history::sampled_keys(kv.keys)),
        _ => None,
    }
}

/// The node's totals as the runner gets them, the clients' completion bins
/// starting `bins_start` after the node's clock. Replicas measure no
/// latency, so their histogram and bins are left empty; `history_keys`
/// says whether to report the recorded history ([`history_keys`]).
fn final_report(
    totals: Totals,
    elapsed: Duration,
    bins_start: Duration,
    clients: bool,
    history_keys: Option<Vec<u64>>,
) -> anyhow::Result<FinalReport> {
    let mut latency_histogram = Vec::new();
    if clients {
        V2Serializer::new()
            .serialize(&totals.latency_us, &mut latency_histogram)
            .context("serializing the latency histogram")?;
    }
    Ok(FinalReport {
        elapsed_ms: millis(elapsed),
        ops: totals.ops,
        measured_ops: totals.measured_ops,
        measured_ms: millis(totals.measured),
        latency_histogram,
        // The process's cryptography with the threads' counters: what the
        // runner prices for a protocol's bound.
        counters: totals
            .counters
            .iter()
            .chain(
                wire::crypto::tally::Tally::now()
                    .counters()
                    .into_iter()
                    .filter(|&(_, count)| count > 0),
            )
            .map(|(name, count)| (name.to_string(), count))
            .collect(),
        cpu_ms: cpu_ms()?,
        idle_spin_ms: millis(totals.idle_spin),
        completions: if clients {
            Completions {
                start_us: u64::try_from(bins_start.as_micros()).unwrap_or(u64::MAX),
                bin_ms: COMPLETION_BIN_MS,
                counts: totals.completions,
            }
        } else {
            Completions::default()
        },
        history: history_keys.map(|keys| History {
            keys,
            ops: totals.history.ops,
            cut_ns: totals.history.cut_ns,
        }),
    })
}

/// CPU time this process used so far, user plus system, in milliseconds.
fn cpu_ms() -> anyhow::Result<u64> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).context("reading the CPU time used")?;
    let ms = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1000
            + u64::try_from(t.tv_usec()).unwrap_or(0) / 1000
    };
    Ok(ms(usage.user_time()) + ms(usage.system_time()))
}

/// What the connection's reader thread passes on.
enum Incoming {
    Command(Command),
    /// A frame that is not a command of this version; the reader stops.
    Bad(anyhow::Error),
    /// The runner closed the connection.
    Hangup,
}

/// The control connection: events out from this thread, commands in through
/// a reader thread once the node runs (so that waiting for a command never
/// holds up a report).
struct Connection {
    stream: TcpStream,
    incoming: Option<Receiver<Incoming>>,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection {
            stream,
            incoming: None,
        }
    }

    /// Reads the first frame, which must be `Run`, whole within
    /// [`FIRST_COMMAND_TIMEOUT`].
    fn first_command(&mut self) -> anyhow::Result<NodeConfig> {
        let deadline = Instant::now() + FIRST_COMMAND_TIMEOUT;
        let frame = match read_frame(&mut DeadlineReader::new(&self.stream, deadline)) {
            Ok(Some(frame)) => frame,
            Ok(None) => bail!("the runner hung up before sending a command"),
            Err(FrameError::TimedOut) => bail!(
                "no whole command within {} s of the handshake",
                FIRST_COMMAND_TIMEOUT.as_secs()
            ),
            Err(error) => return Err(error).context("reading the first command"),
        };
        self.stream
            .set_read_timeout(None)
            .context("clearing the read timeout")?;
        match decode_command(&frame)? {
            Command::Run(config) => Ok(*config),
            Command::Stop => bail!("expected Run as the first command, got Stop"),
            Command::Fault(_) => bail!("expected Run as the first command, got Fault"),
        }
    }

    /// Starts the reader thread that passes on commands from now on.
    fn listen(&mut self) -> anyhow::Result<()> {
        let mut stream = self
            .stream
            .try_clone()
            .context("cloning the control connection")?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("control-reader".to_string())
            .spawn(move || {
                loop {
                    let incoming = match read_frame(&mut stream) {
                        Ok(None) => Incoming::Hangup,
                        Ok(Some(frame)) => match decode_command(&frame) {
                            Ok(command) => Incoming::Command(command),
                            Err(error) => Incoming::Bad(error.into()),
                        },
                        Err(error) => {
                            Incoming::Bad(anyhow::Error::new(error).context("reading a command"))
                        }
                    };
                    let last = !matches!(incoming, Incoming::Command(_));
                    if tx.send(incoming).is_err() || last {
                        return;
                    }
                }
            })
            .context("starting the control reader thread")?;
        self.incoming = Some(rx);
        Ok(())
    }

    /// The next thing the reader thread passed on, waiting at most `timeout`.
    fn next_incoming(&mut self, timeout: Duration) -> Option<Incoming> {
        let incoming = self.incoming.as_ref().expect("listen() first");
        match incoming.recv_timeout(timeout) {
            Ok(incoming) => Some(incoming),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Incoming::Hangup),
        }
    }

    fn send(&mut self, event: Event) -> anyhow::Result<()> {
        write_frame(&mut self.stream, &EventFrame::new(event))
            .context("sending an event to the runner")
    }

    /// Ends the conversation: no more events, then wait (at most [`LINGER`])
    /// for the runner to close its side, reading and discarding whatever it
    /// still sends.
    fn close(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER;
        if let Some(incoming) = self.incoming.take() {
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                match incoming.recv_timeout(left) {
                    Ok(Incoming::Command(_)) => {}
                    Ok(Incoming::Hangup | Incoming::Bad(_)) | Err(_) => return,
                }
            }
        } else {
            let mut sink = [0; 4096];
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                if self.stream.set_read_timeout(Some(left)).is_err() {
                    return;
                }
                match self.stream.read(&mut sink) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        }
    }
}

/// An error and its causes on one line.
fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " | ")
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_fit_on_one_line() {
        let error = anyhow!("first\nsecond").context("outer");
        assert_eq!(one_line(&error), "outer: first | second");
    }

    #[test]
    fn cpu_time_is_readable() {
        let before = cpu_ms().unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ms().unwrap() >= before);
    }
}
