//! End to end on loopback: the unreplicated server with closed-loop clients on
//! the real runtime, against two raw UDP echoes that do the least any UDP
//! request/reply system must do.
//!
//! Each point runs for seconds, so this is a plain binary that prints a table,
//! not a criterion bench. The set-up is the same for every system:
//!
//! - the server on core 0, one thread (`ThreadMap::single(Some(0))`), busy
//!   polling; all clients on one thread on core 1, one socket, busy polling;
//! - 16-byte operations, empty results (`NullApp`), closed loop, 1 to 10,000
//!   clients; a resend interval of 1 s, so retransmissions only show loss;
//! - a warm-up of 0.5 s, then about 2 s measured. Throughput is every
//!   operation completed in the measured window, over the window; latency is
//!   of operations started after the warm-up (the runtime's histogram).
//!
//! The echoes are baselines on purpose, so they do not use the project's
//! transport (`runtime::net`): each is the kernel's UDP path with nothing of
//! ours on it, and the ratio to it says what the runtime and the protocol
//! cost. Each is an echo thread that sends every datagram back to its source
//! and a sender thread keeping one request outstanding per client slot
//! (24-byte datagrams: a 4-byte slot and a 4-byte sequence number, then the
//! 16-byte operation), every system call through the `nix` crate's safe
//! wrappers, both threads spinning on non-blocking sockets with 4 MiB
//! buffers:
//!
//! - `gso-echo` moves datagrams as the runtime's deployed sockets do (UDP GSO
//!   and GRO, `runtime::deploy::OFFLOADS`), and is the ceiling. Its sockets
//!   have `UDP_GRO` on: one `recvmmsg` takes up to 64 kernel buffers, each a
//!   run of datagrams from one source, which the `UDP_GRO` control message's
//!   segment size cuts back into datagrams. The echo copies each datagram
//!   into a run to its source (the end of the latest run to it among the
//!   last 8 queued, if it fits there, or a new run): up to 64 datagrams of
//!   one size (the last may be shorter), at most 65,507 bytes. One
//!   `sendmmsg` sends up to 64 runs that one segment size fits, each run one
//!   GSO send (a `UDP_SEGMENT` control message with the segment size; a call
//!   of lone datagrams goes without). The sender writes its
//!   requests, all to the server, into runs the same way, up to 64 runs
//!   (4,096 requests) a `sendmmsg`, and reads the replies as the echo reads
//!   requests. Its notes give the requests and the replies per send (per
//!   kernel message). (`nix`'s `recvmmsg` does not restore the control-buffer
//!   lengths the kernel overwrites, so after a receive where a buffer came
//!   without a `UDP_GRO` message, the headers are built again before the
//!   next one.)
//! - `echo` moves one datagram per message in the kernel: `recvmmsg`, then
//!   `sendmmsg` of the same datagrams back to their sources, up to 64 at a
//!   time; the sender sends replies' successors 64 to a `sendmmsg`. With one
//!   client there is nothing to batch, and this is the least a round trip
//!   costs: it is kept for that comparison. From 10 clients on, GSO and GRO
//!   leave it far behind.
//!
//! At each client count the echoes run right before the runtime (in the
//! default order of systems), so every ratio compares points of the same
//! run; the table gives each point's throughput over both. The runtime's
//! targets: at least 0.5x the GSO echo at 100 and at 1,000 clients, at least
//! 0.9x the plain echo at 1 client, and 0.9x its own peak at 10,000 clients.
//!
//! Also printed: what an idle client costs in memory (target 1 KiB), from
//! `client_slot_bytes` and a counting allocator.
//!
//! Two spinning threads own both cores, so any other process halves what
//! they measure. Each point reads /proc for the CPU others took while it ran;
//! over 15% of a core, it waits for a quiet machine (a minute at most) and
//! runs the point again, up to 3 times, keeping the least disturbed run. The
//! notes column says when a point was disturbed or rerun. The machine is
//! noisy (up to about a third between runs, docs/MACHINE.md): compare figures from one run,
//! or use `LOOPBACK_REPEATS`.
//!
//! `cargo bench -p benches --bench loopback` runs everything (about a minute
//! on a quiet machine; reruns and waits for quiet add to that).
//! With `--test` (`cargo bench -p benches --bench loopback -- --test`, as
//! criterion's benches take it), or without `--bench` on the command line
//! (`cargo test --benches`, or the binary run by hand), it is a smoke run: 1
//! and 100 clients, 100 ms a point. Environment:
//!
//! - `LOOPBACK_CLIENTS=1,100`: client counts;
//! - `LOOPBACK_SECONDS=2`: measured seconds per point (fractions allowed);
//! - `LOOPBACK_WARMUP_MS=500`;
//! - `LOOPBACK_SYSTEMS=echo,gso-echo,io_uring,epoll`: which systems (where
//!   the kernel lacks UDP GSO or GRO, `gso-echo` is skipped, and says so);
//! - `LOOPBACK_REPEATS=3`: runs per point, the median reported (default 1);
//! - `LOOPBACK_MEMORY=0`: skip the at-scale memory measurement.
//!
//! Other arguments are ignored.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use nix::sys::socket::{SockaddrIn, getsockopt, setsockopt, sockopt};
use protocols::app::NullApp;
use protocols::unreplicated::{Client, ClientTimer, Codec, Outbound, Server};
use runtime::actor::Outbox;
use runtime::deploy::{
    ClientsSetup, ReplicaSetup, Running, client_slot_bytes, latency_histogram, spawn_clients,
    spawn_replica,
};
use runtime::net::counter;
use runtime::{Addr, ClientId, Context, Dest, ReplicaId, Rng, SharedState, State, Time};
use wire::control::{Idle, Load, ThreadMap, TransportKind};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const SERVER_CORE: u32 = 0;
const CLIENT_CORE: u32 = 1;
/// Bytes of every operation.
const OP_LEN: usize = 16;
/// An echo request: slot (4 bytes), sequence number (4 bytes), operation.
const ECHO_DATAGRAM_LEN: usize = 8 + OP_LEN;
/// Messages per `recvmmsg`/`sendmmsg` in the echoes (the runtime's batch
/// too): datagrams, or with GSO/GRO kernel buffers and runs.
const BATCH_MAX: usize = 64;
/// Long enough that a retransmission means a lost datagram, not a slow one.
const RESEND_INTERVAL: Duration = Duration::from_secs(1);
/// How often the echo sender looks for requests to resend.
const RESEND_SCAN_INTERVAL: Duration = Duration::from_millis(10);
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

const CLIENTS_DEFAULT: [u32; 5] = [1, 10, 100, 1_000, 10_000];
const CLIENTS_SMOKE: [u32; 2] = [1, 100];
const MEASURE_DEFAULT: Duration = Duration::from_secs(2);
const WARMUP_DEFAULT: Duration = Duration::from_millis(500);
const MEASURE_SMOKE: Duration = Duration::from_millis(100);
const WARMUP_SMOKE: Duration = Duration::from_millis(50);
/// The at-scale memory measurement runs each client count this long.
const MEMORY_RUN: Duration = Duration::from_millis(300);

/// Runtime throughput over an echo's, at the same client count: at least
/// `at_least` at each of `clients`.
#[derive(Debug)]
struct RatioTarget {
    baseline: System,
    at_least: f64,
    clients: &'static [u32],
}

const RATIO_TARGETS: [RatioTarget; 2] = [
    RatioTarget {
        baseline: System::GsoEcho,
        at_least: 0.5,
        clients: &[100, 1_000],
    },
    RatioTarget {
        baseline: System::Echo,
        at_least: 0.9,
        clients: &[1],
    },
];
/// Throughput at 10,000 clients over the peak over client counts.
const SCALE_RATIO_TARGET: f64 = 0.9;
const CLIENT_BYTES_TARGET: usize = 1024;

/// A point during which other processes took more than this share of a core
/// is run again (the two spinning threads own both cores: anything else
/// halves what they measure).
const DISTURBED_PERCENT: f64 = 15.0;
/// Runs of a disturbed point at most; the least disturbed is kept.
const ATTEMPTS_MAX: u32 = 3;
/// The machine is quiet when others take less than this share of a core.
const QUIET_PERCENT: f64 = 10.0;
/// How long to wait for a quiet machine before running anyway.
const QUIET_WAIT_MAX: Duration = Duration::from_secs(60);

fn main() -> io::Result<()> {
    let config = Config::from_env_and_args();
    println!(
        "loopback: {} mode, warm-up {} ms, measure {} ms/point, {} run(s) a point, clients {:?}, \
         load average {}",
        if config.smoke { "smoke" } else { "full" },
        config.warmup.as_millis(),
        config.measure.as_millis(),
        config.repeats,
        config.clients,
        load_average(),
    );
    println!(
        "server: 1 thread on core {SERVER_CORE}; clients: 1 thread on core {CLIENT_CORE}; \
         busy polling; {OP_LEN}-byte ops, NullApp; resend {} s",
        RESEND_INTERVAL.as_secs()
    );
    if config.smoke {
        println!(
            "smoke run (--test, or no --bench: `cargo test`, or run by hand): checks that \
             everything runs; its figures are not measurements"
        );
    }
    println!();
    println!(
        "{:<22} {:>7} {:>10} {:>7} {:>7} {:>8} {:>12}  notes",
        "system", "clients", "ops/s", "p50 µs", "p99 µs", "vs echo", "vs gso-echo"
    );
    let mut systems = config.systems.clone();
    if systems.contains(&System::GsoEcho)
        && let Err(e) = gso::probe()
    {
        println!("{:<22} skipped: {e}", System::GsoEcho);
        systems.retain(|&s| s != System::GsoEcho);
    }
    if !config.smoke {
        wait_for_quiet(QUIET_WAIT_MAX);
    }
    let mut points: Vec<Point> = Vec::new();
    for &clients in &config.clients {
        for &system in &systems.clone() {
            let point = match run_point(system, clients, &config) {
                Ok(point) => point,
                // The kernel refused GSO or GRO after all (a device that
                // cannot offload): that echo is out of the run.
                Err(e) if system == System::GsoEcho && e.kind() == io::ErrorKind::Unsupported => {
                    println!("{system:<22} skipped from here on: {e}");
                    systems.retain(|&s| s != system);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let baseline = |baseline: System| {
                points
                    .iter()
                    .find(|p| p.system == baseline && p.clients == clients)
                    .map(|p| p.ops_per_sec)
            };
            println!(
                "{}",
                point.row(baseline(System::Echo), baseline(System::GsoEcho))
            );
            if config.smoke {
                assert!(
                    point.ops_per_sec > 0.0,
                    "{}: nothing completed",
                    point.system
                );
            }
            points.push(point);
        }
    }

    println!();
    summarize_ratios(&points, &systems);
    println!();
    report_client_memory(&config)?;
    println!();
    let threads = thread_count();
    println!(
        "threads left at the end: {} besides main{}",
        threads.saturating_sub(1),
        if threads > 1 {
            " (a leak: later figures are suspect)"
        } else {
            ""
        }
    );
    println!("load average at the end: {}", load_average());
    Ok(())
}

/// What to run, from the command line and the environment.
#[derive(Debug)]
struct Config {
    smoke: bool,
    clients: Vec<u32>,
    systems: Vec<System>,
    warmup: Duration,
    measure: Duration,
    memory: bool,
    /// Runs of a disturbed point at most.
    attempts: u32,
    /// Runs of each point; the median is reported.
    repeats: u32,
}

impl Config {
    fn from_env_and_args() -> Config {
        // `cargo bench` passes `--bench`, for custom harnesses too; `cargo
        // test --benches` runs the same binary without it. `--test` is
        // criterion's smoke mode, and this bench's too.
        let args: Vec<String> = std::env::args().skip(1).collect();
        let smoke = args.iter().any(|arg| arg == "--test") || !args.iter().any(|a| a == "--bench");
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let clients = match env("LOOPBACK_CLIENTS") {
            Some(list) => list
                .split(',')
                .map(|c| {
                    let c = c.trim().replace('_', "");
                    c.parse::<u32>()
                        .ok()
                        .filter(|&n| n > 0)
                        .unwrap_or_else(|| panic!("LOOPBACK_CLIENTS: bad count {c:?}"))
                })
                .collect(),
            None if smoke => CLIENTS_SMOKE.to_vec(),
            None => CLIENTS_DEFAULT.to_vec(),
        };
        let systems = match env("LOOPBACK_SYSTEMS") {
            Some(list) => list
                .split(',')
                .map(|s| match s.trim() {
                    "echo" => System::Echo,
                    "gso-echo" | "gso_echo" => System::GsoEcho,
                    "io_uring" | "uring" => System::Unreplicated(TransportKind::IoUring),
                    "epoll" => System::Unreplicated(TransportKind::Epoll),
                    other => panic!("LOOPBACK_SYSTEMS: unknown system {other:?}"),
                })
                .collect(),
            None => vec![
                System::Echo,
                System::GsoEcho,
                System::Unreplicated(TransportKind::IoUring),
                System::Unreplicated(TransportKind::Epoll),
            ],
        };
        let measure = match env("LOOPBACK_SECONDS") {
            Some(s) => Duration::from_secs_f64(
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|&s| s > 0.0)
                    .unwrap_or_else(|| panic!("LOOPBACK_SECONDS: bad duration {s:?}")),
            ),
            None if smoke => MEASURE_SMOKE,
            None => MEASURE_DEFAULT,
        };
        let warmup = match env("LOOPBACK_WARMUP_MS") {
            Some(ms) => Duration::from_millis(
                ms.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("LOOPBACK_WARMUP_MS: bad duration {ms:?}")),
            ),
            None if smoke => WARMUP_SMOKE,
            None => WARMUP_DEFAULT,
        };
        let memory = !smoke && env("LOOPBACK_MEMORY").is_none_or(|v| v.trim() != "0");
        let attempts = if smoke { 1 } else { ATTEMPTS_MAX };
        let repeats = env("LOOPBACK_REPEATS").map_or(1, |n| {
            n.trim()
                .parse()
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or_else(|| panic!("LOOPBACK_REPEATS: bad count {n:?}"))
        });
        Config {
            smoke,
            attempts,
            repeats,
            clients,
            systems,
            warmup,
            measure,
            memory,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    /// The raw echo, one datagram per kernel message.
    Echo,
    /// The raw echo with UDP GSO and GRO: the ceiling.
    GsoEcho,
    Unreplicated(TransportKind),
}

impl std::fmt::Display for System {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            System::Echo => "echo",
            System::GsoEcho => "gso-echo",
            System::Unreplicated(TransportKind::IoUring) => "unreplicated io_uring",
            System::Unreplicated(TransportKind::Epoll) => "unreplicated epoll",
            System::Unreplicated(TransportKind::Auto) => "unreplicated auto",
        };
        f.pad(name)
    }
}

/// One measured point.
#[derive(Debug)]
struct Point {
    system: System,
    clients: u32,
    ops_per_sec: f64,
    latency_us_p50: u64,
    latency_us_p99: u64,
    /// Retransmissions, drops and the like, by name; only nonzero ones.
    notes: Vec<(&'static str, u64)>,
}

impl Point {
    /// The table's row: ratios to the echoes' throughput at the same count.
    fn row(&self, echo_ops_per_sec: Option<f64>, gso_echo_ops_per_sec: Option<f64>) -> String {
        let ratio = |baseline: Option<f64>| match baseline {
            Some(baseline) if baseline > 0.0 => format!("{:.2}", self.ops_per_sec / baseline),
            _ => "-".to_string(),
        };
        let notes: Vec<String> = self
            .notes
            .iter()
            .map(|(name, n)| format!("{name}: {n}"))
            .collect();
        format!(
            "{:<22} {:>7} {:>10} {:>7} {:>7} {:>8} {:>12}  {}",
            self.system,
            thousands(u64::from(self.clients)),
            thousands(self.ops_per_sec.round() as u64),
            self.latency_us_p50,
            self.latency_us_p99,
            ratio(echo_ops_per_sec),
            ratio(gso_echo_ops_per_sec),
            notes.join(", ")
        )
    }
}

/// Each system's throughput over each echo's at every client count, judged
/// against [`RATIO_TARGETS`] for the runtime, and each system's
/// 10,000-client throughput over its peak.
fn summarize_ratios(points: &[Point], systems: &[System]) {
    let at = |system: System, clients: u32| {
        points
            .iter()
            .find(|p| p.system == system && p.clients == clients)
            .map(|p| p.ops_per_sec)
    };
    for &system in systems {
        let mine: Vec<&Point> = points.iter().filter(|p| p.system == system).collect();
        for baseline in [System::GsoEcho, System::Echo] {
            // Each echo against the ones before it in the table: the GSO echo
            // over the plain one.
            if system == baseline || (system == System::Echo && baseline == System::GsoEcho) {
                continue;
            }
            let ratios: Vec<String> = mine
                .iter()
                .filter_map(|p| {
                    let base = at(baseline, p.clients).filter(|&b| b > 0.0)?;
                    Some(format!(
                        "{}: {:.2}",
                        thousands(p.clients.into()),
                        p.ops_per_sec / base
                    ))
                })
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let judged = match system {
                System::Unreplicated(_) => RATIO_TARGETS
                    .iter()
                    .find(|t| t.baseline == baseline)
                    .map(|target| format!(" ({})", judge(target, system, at))),
                _ => None,
            };
            println!(
                "{system} / {baseline}: {}{}",
                ratios.join(", "),
                judged.unwrap_or_default()
            );
        }
        let peak = mine
            .iter()
            .max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
        let at_10k = mine.iter().find(|p| p.clients == 10_000);
        if let (Some(peak), Some(at_10k)) = (peak, at_10k) {
            let ratio = at_10k.ops_per_sec / peak.ops_per_sec;
            println!(
                "{system}: 10,000 clients / peak ({} at {} clients) = {ratio:.3} (target >= \
                 {SCALE_RATIO_TARGET}: {})",
                thousands(peak.ops_per_sec.round() as u64),
                thousands(peak.clients.into()),
                if ratio >= SCALE_RATIO_TARGET {
                    "met"
                } else {
                    "missed"
                }
            );
        }
    }
}

/// Whether `system` met `target`: "target >= 0.5 at 100 and 1,000 clients:
/// met", or where it missed, and which of the target's counts did not run.
fn judge(target: &RatioTarget, system: System, at: impl Fn(System, u32) -> Option<f64>) -> String {
    let counts = |clients: &[u32]| {
        let names: Vec<String> = clients.iter().map(|&c| thousands(c.into())).collect();
        names.join(" and ")
    };
    let (mut missed, mut not_run) = (Vec::new(), Vec::new());
    for &clients in target.clients {
        match (at(system, clients), at(target.baseline, clients)) {
            (Some(mine), Some(base)) if base > 0.0 => {
                if mine < target.at_least * base {
                    missed.push(clients);
                }
            }
            _ => not_run.push(clients),
        }
    }
    let plural = if target.clients.len() > 1 { "s" } else { "" };
    let mut verdict = if not_run.len() == target.clients.len() {
        "not measured".to_string()
    } else if missed.is_empty() {
        "met".to_string()
    } else {
        format!("missed at {}", counts(&missed))
    };
    if !not_run.is_empty() && not_run.len() < target.clients.len() {
        verdict.push_str(&format!(" ({} not run)", counts(&not_run)));
    }
    format!(
        "target >= {} at {} client{plural}: {verdict}",
        target.at_least,
        counts(target.clients)
    )
}

/// Runs one point `config.repeats` times and keeps the run with the median
/// throughput (its latencies too); the notes give the spread.
fn run_point(system: System, clients: u32, config: &Config) -> io::Result<Point> {
    let mut runs = Vec::new();
    for _ in 0..config.repeats {
        runs.push(run_undisturbed(system, clients, config)?);
    }
    runs.sort_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    let low = runs[0].ops_per_sec.round() as u64;
    let high = runs[runs.len() - 1].ops_per_sec.round() as u64;
    let mut point = runs.swap_remove(runs.len() / 2);
    if config.repeats > 1 {
        point.notes.insert(0, ("runs' lowest ops/s", low));
        point.notes.insert(1, ("highest", high));
    }
    Ok(point)
}

/// Runs one point. If other processes took a noticeable share of the CPU
/// during it (other engineers compile and benchmark on this machine), waits
/// for a quiet machine and runs it again, keeping the least disturbed run;
/// the notes say how disturbed it was.
fn run_undisturbed(system: System, clients: u32, config: &Config) -> io::Result<Point> {
    let mut best: Option<(f64, Point)> = None;
    for attempt in 1..=config.attempts {
        if attempt > 1 {
            wait_for_quiet(QUIET_WAIT_MAX);
        }
        let before = CpuSample::now();
        let mut point = match system {
            System::Echo => run_echo(EchoKind::Plain, clients, config.warmup, config.measure)?,
            System::GsoEcho => run_echo(EchoKind::Gso, clients, config.warmup, config.measure)?,
            System::Unreplicated(kind) => {
                run_unreplicated(kind, clients, config.warmup, config.measure)?
            }
        };
        let others = CpuSample::others_percent(before, CpuSample::now());
        if others >= QUIET_PERCENT {
            point
                .notes
                .push(("other processes, % of a core", others.round() as u64));
        }
        if attempt > 1 {
            point.notes.push(("attempt", attempt.into()));
        }
        if best.as_ref().is_none_or(|(least, _)| others < *least) {
            best = Some((others, point));
        }
        if others < DISTURBED_PERCENT {
            break;
        }
    }
    Ok(best.expect("at least one attempt").1)
}

/// Waits, up to `max`, until other processes leave the cores alone.
fn wait_for_quiet(max: Duration) {
    let started = Instant::now();
    loop {
        let before = CpuSample::now();
        std::thread::sleep(Duration::from_millis(500));
        let others = CpuSample::others_percent(before, CpuSample::now());
        if others < QUIET_PERCENT {
            return;
        }
        if started.elapsed() >= max {
            println!(
                "(machine still busy after {} s: others take {others:.0}% of a core; running anyway)",
                max.as_secs()
            );
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// The unreplicated server and clients on the runtime.

fn run_unreplicated(
    kind: TransportKind,
    clients: u32,
    warmup: Duration,
    measure: Duration,
) -> io::Result<Point> {
    let server = spawn_replica(
        Server::new(Box::new(NullApp)),
        Arc::new(Codec),
        ReplicaSetup {
            id: ReplicaId(0),
            // Port 0: the kernel picks; `local_addrs` says which.
            replicas: vec![SocketAddr::new(LOCALHOST, 0)],
            threads: ThreadMap::single(Some(SERVER_CORE)),
            idle: Idle::Busy,
            transport: kind,
            link: Default::default(),
        },
    )?;
    assert_eq!(server.transport(), kind);
    let clients_running = spawn_unreplicated_clients(&server, kind, clients, warmup)?;
    let started = Instant::now();
    let finish = started + warmup + measure;
    // Ops completed before the window: the count at its start.
    sleep_watching(started + warmup, &[&server, &clients_running]);
    let ops_before = clients_running.metrics().ops;
    let window_start = Instant::now();
    sleep_watching(finish, &[&server, &clients_running]);
    let window = window_start.elapsed();
    // Clients first: a server stopped first would leave them retransmitting.
    let client_totals = clients_running.stop()?;
    let server_totals = server.stop()?;

    let mut counters = client_totals.counters;
    counters.merge(&server_totals.counters);
    let notes = [
        "client: retransmission",
        "request: resent cached reply",
        "client: reply to another request",
        counter::SEND_BUFFER_FULL,
        counter::SEND_QUEUE_FULL,
        counter::SEND_FAILED,
        counter::RECV_ERROR,
        counter::OVERSIZED,
        counter::BUFFER_CAPPED,
    ]
    .into_iter()
    .map(|name| (name, counters.get(name)))
    .filter(|&(_, n)| n > 0)
    .collect();
    // Published every 10 ms by the client thread, and once more as it stops:
    // the window's start is late by at most that, a fraction of a percent.
    let window_ops = client_totals.ops.saturating_sub(ops_before);
    Ok(Point {
        system: System::Unreplicated(kind),
        clients,
        ops_per_sec: window_ops as f64 / window.as_secs_f64(),
        latency_us_p50: client_totals.latency_us.value_at_quantile(0.5),
        latency_us_p99: client_totals.latency_us.value_at_quantile(0.99),
        notes,
    })
}

fn spawn_unreplicated_clients(
    server: &Running,
    kind: TransportKind,
    clients: u32,
    warmup: Duration,
) -> io::Result<Running> {
    spawn_clients(
        Arc::new(|id| Client::new(id, RESEND_INTERVAL)),
        Arc::new(Codec),
        Arc::new(|_seed| Box::new(|_: &mut Rng, op: &mut Vec<u8>| op.resize(OP_LEN, 0))),
        ClientsSetup {
            first_id: ClientId(1),
            count: clients,
            threads: 1,
            cores: vec![CLIENT_CORE],
            bind: LOCALHOST,
            replicas: server.local_addrs(),
            load: Load::Closed,
            idle: Idle::Busy,
            transport: kind,
            warmup,
            measure: None,
            link: Default::default(),
        },
    )
}

/// Sleeps until `deadline`, or until one of `running` has stopped by itself
/// (its `stop` then says why).
fn sleep_watching(deadline: Instant, running: &[&Running]) {
    loop {
        let now = Instant::now();
        if now >= deadline || running.iter().any(|r| r.has_failed()) {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

// ---------------------------------------------------------------------------
// The raw UDP echoes.

/// How an echo moves datagrams through the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EchoKind {
    /// One datagram per kernel message (`mmsg`).
    Plain,
    /// Runs of datagrams per kernel buffer: UDP GSO and GRO (`gso`).
    Gso,
}

/// The echo's two threads: stopped and joined on drop, so that no spinning
/// thread outlives its point, whatever happens.
struct EchoThreads {
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<io::Result<EchoServerTotals>>>,
    sender: Option<JoinHandle<io::Result<EchoTotals>>>,
}

impl Drop for EchoThreads {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
    }
}

/// What the echo server counted.
#[derive(Debug, Default)]
struct EchoServerTotals {
    /// Datagrams sent back.
    echoed: u64,
    /// Kernel messages they went in (GSO sends, or single datagrams).
    sends: u64,
    /// Received buffers dropped: truncated, or a control message cut short.
    dropped: u64,
}

/// What the echo sender counted.
#[derive(Debug)]
struct EchoTotals {
    /// Replies received in the measured window.
    window_ops: u64,
    /// Latency of requests sent after the warm-up.
    latency_us: Histogram<u64>,
    /// Requests resent after `RESEND_INTERVAL` without a reply (lost).
    resent: u64,
    /// Replies to a request already answered or resent.
    stale: u64,
    /// `sendmmsg` calls that could not send the whole batch (socket full).
    send_stalls: u64,
    /// Requests sent, and the kernel messages they went in.
    requests: u64,
    request_sends: u64,
    /// Received buffers dropped (as the server's).
    dropped: u64,
}

fn run_echo(
    kind: EchoKind,
    clients: u32,
    warmup: Duration,
    measure: Duration,
) -> io::Result<Point> {
    let server_socket = bind_udp()?;
    let server_addr = server_socket.local_addr()?;
    let sender_socket = bind_udp()?;
    if kind == EchoKind::Gso {
        gso::enable(&server_socket)?;
        gso::enable(&sender_socket)?;
    }
    let SocketAddr::V4(server_addr) = server_addr else {
        return Err(io::Error::other("echo: IPv4 only"));
    };
    let server_addr = SockaddrIn::from(server_addr);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = EchoThreads {
        stop: Arc::clone(&stop),
        server: None,
        sender: None,
    };
    let (system, server_name, sender_name) = match kind {
        EchoKind::Plain => (System::Echo, "echo-server", "echo-sender"),
        EchoKind::Gso => (System::GsoEcho, "gso-echo-server", "gso-echo-sender"),
    };
    let server_stop = Arc::clone(&stop);
    threads.server = Some(spawn_pinned(
        server_name,
        SERVER_CORE,
        move || match kind {
            EchoKind::Plain => echo_server(&server_socket, &server_stop),
            EchoKind::Gso => gso_echo_server(&server_socket, &server_stop),
        },
    )?);
    let started = Instant::now();
    let warmup_end = started + warmup;
    let sender_stop = Arc::clone(&stop);
    threads.sender = Some(spawn_pinned(sender_name, CLIENT_CORE, move || {
        let (socket, stop) = (&sender_socket, &sender_stop);
        match kind {
            EchoKind::Plain => echo_sender(
                socket,
                PlainWire::new(),
                server_addr,
                clients,
                warmup_end,
                stop,
            ),
            EchoKind::Gso => echo_sender(
                socket,
                GsoWire::new(),
                server_addr,
                clients,
                warmup_end,
                stop,
            ),
        }
    })?);
    let finish = warmup_end + measure;
    while Instant::now() < finish
        && !threads.server.as_ref().is_some_and(JoinHandle::is_finished)
        && !threads.sender.as_ref().is_some_and(JoinHandle::is_finished)
    {
        std::thread::sleep((finish - Instant::now()).min(Duration::from_millis(20)));
    }
    stop.store(true, Ordering::Relaxed);
    let window = warmup_end.elapsed();
    let sender = joined("echo sender", threads.sender.take().expect("spawned"));
    let server = joined("echo server", threads.server.take().expect("spawned"));
    let (totals, server) = (sender?, server?);
    let per_send = |datagrams: u64, sends: u64| datagrams.checked_div(sends).unwrap_or(0);
    let mut notes = vec![
        ("echo: resent", totals.resent),
        ("echo: stale reply", totals.stale),
        ("echo: send stalls", totals.send_stalls),
        ("echo: dropped buffers", totals.dropped + server.dropped),
    ];
    if kind == EchoKind::Gso {
        notes.push((
            "requests per send",
            per_send(totals.requests, totals.request_sends),
        ));
        notes.push(("replies per send", per_send(server.echoed, server.sends)));
    }
    notes.retain(|&(_, n)| n > 0);
    Ok(Point {
        system,
        clients,
        ops_per_sec: totals.window_ops as f64 / window.as_secs_f64(),
        latency_us_p50: totals.latency_us.value_at_quantile(0.5),
        latency_us_p99: totals.latency_us.value_at_quantile(0.99),
        notes,
    })
}

/// Joins `thread`, turning a panic into an error. Its own error keeps its
/// kind (`Unsupported`: the kernel refused GSO).
fn joined<T>(name: &str, thread: JoinHandle<io::Result<T>>) -> io::Result<T> {
    thread
        .join()
        .map_err(|_| io::Error::other(format!("{name} panicked")))?
        .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))
}

/// Sends every datagram back where it came from, a batch at a time.
fn echo_server(socket: &UdpSocket, stop: &AtomicBool) -> io::Result<EchoServerTotals> {
    let fd = socket.as_raw_fd();
    let mut batch = mmsg::Batch::new();
    let mut totals = EchoServerTotals::default();
    while !stop.load(Ordering::Relaxed) {
        let received = batch.recv(fd)?;
        let mut sent = 0;
        // A full socket empties as the sender reads: retry rather than drop.
        while sent < received && !stop.load(Ordering::Relaxed) {
            sent += batch.send(fd, sent..received)?;
        }
        totals.echoed += sent as u64;
    }
    totals.sends = totals.echoed;
    Ok(totals)
}

/// Sends every datagram back where it came from, in GSO runs to each source:
/// what arrives in one `recvmmsg` leaves before the next.
fn gso_echo_server(socket: &UdpSocket, stop: &AtomicBool) -> io::Result<EchoServerTotals> {
    let fd = socket.as_raw_fd();
    let mut batch = gso::GroBatch::new();
    let mut runs = gso::Runs::new();
    let mut totals = EchoServerTotals::default();
    while !stop.load(Ordering::Relaxed) {
        let received = batch.recv(fd)?;
        if received == 0 {
            continue;
        }
        for i in 0..received {
            if let Some((source, datagrams)) = batch.buffer(i) {
                for datagram in datagrams {
                    runs.push(source, datagram);
                }
            }
        }
        // A full socket empties as the sender reads: retry rather than drop.
        while !runs.is_sent() && !stop.load(Ordering::Relaxed) {
            runs.send(fd)?;
        }
        runs.clear();
    }
    totals.echoed = runs.datagrams_sent;
    totals.sends = runs.runs_sent;
    totals.dropped = batch.dropped;
    Ok(totals)
}

/// The request for `slot`'s request number `seq`.
fn echo_request(slot: u32, seq: u32) -> [u8; ECHO_DATAGRAM_LEN] {
    let mut request = [0xab; ECHO_DATAGRAM_LEN];
    request[..4].copy_from_slice(&slot.to_le_bytes());
    request[4..8].copy_from_slice(&seq.to_le_bytes());
    request
}

/// How the echo sender moves its requests and replies.
trait EchoWire {
    /// Sends the requests for the first slots of `pending` (slot and
    /// sequence number), as many as one call takes, to `server`; returns how
    /// many it offered the kernel and how many the kernel took, from the
    /// front (fewer: the socket is full).
    fn send(
        &mut self,
        fd: RawFd,
        server: SockaddrIn,
        pending: impl Iterator<Item = (u32, u32)>,
    ) -> io::Result<(usize, usize)>;

    /// Hands every reply waiting (a batch) to `on_reply` without blocking.
    fn recv(&mut self, fd: RawFd, on_reply: impl FnMut(&[u8])) -> io::Result<()>;

    /// Requests sent, and the kernel messages they went in.
    fn sent(&self) -> (u64, u64);

    /// Received buffers dropped (truncated).
    fn dropped(&self) -> u64;
}

/// One datagram per kernel message: `mmsg`.
struct PlainWire {
    out: mmsg::Batch,
    replies: mmsg::Batch,
    sent: u64,
}

impl PlainWire {
    fn new() -> PlainWire {
        PlainWire {
            out: mmsg::Batch::new(),
            replies: mmsg::Batch::new(),
            sent: 0,
        }
    }
}

impl EchoWire for PlainWire {
    fn send(
        &mut self,
        fd: RawFd,
        server: SockaddrIn,
        pending: impl Iterator<Item = (u32, u32)>,
    ) -> io::Result<(usize, usize)> {
        let mut n = 0;
        for (i, (slot, seq)) in pending.take(BATCH_MAX).enumerate() {
            self.out.buf_mut(i)[..ECHO_DATAGRAM_LEN].copy_from_slice(&echo_request(slot, seq));
            self.out.set(i, ECHO_DATAGRAM_LEN, server);
            n = i + 1;
        }
        let sent = self.out.send(fd, 0..n)?;
        self.sent += sent as u64;
        Ok((n, sent))
    }

    fn recv(&mut self, fd: RawFd, mut on_reply: impl FnMut(&[u8])) -> io::Result<()> {
        for i in 0..self.replies.recv(fd)? {
            on_reply(self.replies.datagram(i));
        }
        Ok(())
    }

    fn sent(&self) -> (u64, u64) {
        (self.sent, self.sent)
    }

    fn dropped(&self) -> u64 {
        0
    }
}

/// GSO runs out, GRO buffers in: `gso`.
struct GsoWire {
    runs: gso::Runs,
    replies: gso::GroBatch,
}

impl GsoWire {
    fn new() -> GsoWire {
        GsoWire {
            runs: gso::Runs::new(),
            replies: gso::GroBatch::new(),
        }
    }
}

impl EchoWire for GsoWire {
    fn send(
        &mut self,
        fd: RawFd,
        server: SockaddrIn,
        pending: impl Iterator<Item = (u32, u32)>,
    ) -> io::Result<(usize, usize)> {
        // One destination, one size: the runs fill in order, each full
        // before the next starts, and the kernel takes a prefix of them.
        self.runs.clear();
        let mut n = 0;
        for (slot, seq) in pending.take(gso::RUNS_PER_SEND * gso::run_len_max(ECHO_DATAGRAM_LEN)) {
            self.runs.push(server, &echo_request(slot, seq));
            n += 1;
        }
        Ok((n, self.runs.send(fd)?))
    }

    fn recv(&mut self, fd: RawFd, mut on_reply: impl FnMut(&[u8])) -> io::Result<()> {
        for i in 0..self.replies.recv(fd)? {
            if let Some((_, replies)) = self.replies.buffer(i) {
                replies.for_each(&mut on_reply);
            }
        }
        Ok(())
    }

    fn sent(&self) -> (u64, u64) {
        (self.runs.datagrams_sent, self.runs.runs_sent)
    }

    fn dropped(&self) -> u64 {
        self.replies.dropped
    }
}

/// One request outstanding per slot: the next goes out as soon as the reply
/// to the previous one is in.
fn echo_sender(
    socket: &UdpSocket,
    mut wire: impl EchoWire,
    server: SockaddrIn,
    clients: u32,
    warmup_end: Instant,
    stop: &AtomicBool,
) -> io::Result<EchoTotals> {
    #[derive(Clone, Copy)]
    struct Slot {
        /// Of the request in flight; a reply with another is stale.
        seq: u32,
        /// When the request in flight was sent; `None` while it waits to go.
        sent_at: Option<Instant>,
    }
    let fd = socket.as_raw_fd();
    let mut slots = vec![
        Slot {
            seq: 0,
            sent_at: None
        };
        clients as usize
    ];
    // Slots whose next request is to be sent, in order.
    let mut pending: VecDeque<u32> = (0..clients).collect();
    let mut totals = EchoTotals {
        window_ops: 0,
        latency_us: latency_histogram(),
        resent: 0,
        stale: 0,
        send_stalls: 0,
        requests: 0,
        request_sends: 0,
        dropped: 0,
    };
    let mut next_scan = Instant::now() + RESEND_SCAN_INTERVAL;
    while !stop.load(Ordering::Relaxed) {
        while !pending.is_empty() {
            let requests = pending.iter().map(|&slot| (slot, slots[slot as usize].seq));
            let now = Instant::now();
            let (offered, sent) = wire.send(fd, server, requests)?;
            for slot in pending.drain(..sent) {
                slots[slot as usize].sent_at = Some(now);
            }
            if sent < offered {
                totals.send_stalls += 1;
                break; // Read replies first: they free the socket.
            }
        }
        let mut now = None;
        wire.recv(fd, |bytes| {
            let now = *now.get_or_insert_with(Instant::now);
            let (Some(slot), Some(seq)) = (bytes.get(..4), bytes.get(4..8)) else {
                totals.stale += 1;
                return;
            };
            let slot = u32::from_le_bytes(slot.try_into().expect("4 bytes"));
            let seq = u32::from_le_bytes(seq.try_into().expect("4 bytes"));
            let Some(state) = slots.get_mut(slot as usize) else {
                totals.stale += 1;
                return;
            };
            let Some(sent_at) = state.sent_at.filter(|_| state.seq == seq) else {
                totals.stale += 1;
                return;
            };
            state.sent_at = None;
            state.seq = state.seq.wrapping_add(1);
            if now >= warmup_end {
                totals.window_ops += 1;
            }
            if sent_at >= warmup_end {
                let micros = u64::try_from((now - sent_at).as_micros()).unwrap_or(u64::MAX);
                totals.latency_us.saturating_record(micros.max(1));
            }
            pending.push_back(slot);
        })?;
        let now = now.unwrap_or_else(Instant::now);
        if now >= next_scan {
            next_scan = now + RESEND_SCAN_INTERVAL;
            for (slot, state) in slots.iter_mut().enumerate() {
                if state.sent_at.is_some_and(|at| now - at >= RESEND_INTERVAL) {
                    state.sent_at = None;
                    state.seq = state.seq.wrapping_add(1);
                    pending.push_back(slot as u32);
                    totals.resent += 1;
                }
            }
        }
    }
    (totals.requests, totals.request_sends) = wire.sent();
    totals.dropped = wire.dropped();
    Ok(totals)
}

/// A non-blocking UDP socket on loopback with 4 MiB kernel buffers.
fn bind_udp() -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(LOCALHOST, 0))?;
    socket.set_nonblocking(true)?;
    setsockopt(&socket, sockopt::RcvBuf, &SOCKET_BUFFER_BYTES)?;
    setsockopt(&socket, sockopt::SndBuf, &SOCKET_BUFFER_BYTES)?;
    // The kernel reports twice what it was asked (its bookkeeping overhead).
    if getsockopt(&socket, sockopt::RcvBuf)? < SOCKET_BUFFER_BYTES
        || getsockopt(&socket, sockopt::SndBuf)? < SOCKET_BUFFER_BYTES
    {
        return Err(io::Error::other(
            "echo: socket buffers capped below 4 MiB (raise net.core.rmem_max/wmem_max)",
        ));
    }
    Ok(socket)
}

fn spawn_pinned<T: Send + 'static>(
    name: &str,
    core: u32,
    body: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<JoinHandle<io::Result<T>>> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            // By absolute id: see docs/MACHINE.md on `get_core_ids`.
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core as usize }) {
                return Err(io::Error::other(format!("cannot pin to core {core}")));
            }
            body()
        })
}

// ---------------------------------------------------------------------------
// Memory of an idle client.

fn report_client_memory(config: &Config) -> io::Result<()> {
    let slot = client_slot_bytes::<Client>();
    let heap = waiting_client_heap();
    // The client thread's timer heap holds a `(Time, u32)` entry (16 bytes)
    // per client with an armed timer; a `Vec` that doubles holds up to twice.
    let timer_heap = 16;
    let estimate = slot + heap.chunk_bytes + timer_heap;
    println!(
        "idle client memory (unreplicated::Client, waiting for its reply), target {CLIENT_BYTES_TARGET} B:"
    );
    println!(
        "  client_slot_bytes::<unreplicated::Client>()  {slot:>5} B  (state, outbox, invoke time, timer, inline)"
    );
    // What the blocks are: a `Vec` keeps room for 4 elements after its
    // first push, and the outbox's are drained, not freed.
    let sends_capacity = 4 * size_of::<(Dest, Outbound)>();
    // The request it keeps to retransmit, shared with the outbox: two
    // reference counts, then the request.
    let request_bytes = 16 + size_of::<wire::client::Request>();
    let timers_capacity = 4 * size_of::<(ClientTimer, Time)>();
    println!(
        "  heap it points to                            {:>5} B  ({} B asked in {} blocks, as malloc chunks: \
         the outstanding request ({request_bytes} B) and its op ({OP_LEN} B), the outbox's \
         emptied send vector ({sends_capacity} B), its armed-timer vector ({timers_capacity} B))",
        heap.chunk_bytes, heap.requested_bytes, heap.blocks
    );
    println!(
        "  its entry in the thread's timer heap        ~{timer_heap:>5} B  (up to 2x while the heap's vector has room)"
    );
    println!(
        "  estimate                                    ~{estimate:>5} B  ({})",
        if estimate <= CLIENT_BYTES_TARGET {
            "within target"
        } else {
            "over target"
        }
    );
    if config.memory {
        let (client_side, server_side) = heap_per_client_at_scale()?;
        println!(
            "  measured on live runs (epoll, 10,000 vs 1 client): {client_side:.0} B/client on the \
             client thread (slots, timer heap, their heap); {server_side:.0} B/client more in the \
             server (client table, routes)"
        );
    }
    Ok(())
}

/// The heap held by a client waiting for its reply, as the client thread
/// leaves it: started, one operation invoked, its request encoded and the
/// outbox drained (the vector keeps its capacity).
fn waiting_client_heap() -> heap::Usage {
    let mut buf = Vec::with_capacity(wire::MESSAGE_SIZE_MAX);
    let mut rng = Rng::new(1);
    let counting = heap::Counting::start();
    let id = ClientId(1);
    let mut client = Client::new(id, RESEND_INTERVAL);
    let mut outbox: Outbox<Outbound, ClientTimer> = Outbox::default();
    let me = Addr::Client(id);
    client.on_start(&mut Context::new(Time::ZERO, me, &mut outbox, &mut rng));
    let op = [0u8; OP_LEN];
    runtime::Client::invoke(
        &mut client,
        &op,
        &mut Context::new(Time::ZERO, me, &mut outbox, &mut rng),
    );
    for (_, msg) in outbox.sends.drain(..) {
        buf.clear();
        Codec.encode(&msg, &mut buf).expect("a request encodes");
    }
    let usage = counting.usage();
    drop(counting);
    drop((client, outbox));
    usage
}

/// Heap per client on live runs, 10,000 clients against 1: (the client
/// thread's share, the server's share). The counting allocator cannot tell
/// threads apart, so the server's share is what is still allocated once the
/// clients have stopped (its client table and routes), and the client
/// thread's share is the rest (slots, timer heap, and their heap).
fn heap_per_client_at_scale() -> io::Result<(f64, f64)> {
    const MANY: u32 = 10_000;
    let live = |clients: u32| -> io::Result<(isize, isize)> {
        let counting = heap::Counting::start();
        let server = spawn_replica(
            Server::new(Box::new(NullApp)),
            Arc::new(Codec),
            ReplicaSetup {
                id: ReplicaId(0),
                replicas: vec![SocketAddr::new(LOCALHOST, 0)],
                threads: ThreadMap::single(Some(SERVER_CORE)),
                idle: Idle::Busy,
                transport: TransportKind::Epoll,
                link: Default::default(),
            },
        )?;
        let clients_running =
            spawn_unreplicated_clients(&server, TransportKind::Epoll, clients, Duration::ZERO)?;
        std::thread::sleep(MEMORY_RUN);
        let whole = counting.usage().chunk_bytes as isize;
        drop(clients_running.stop()?);
        let server_only = counting.usage().chunk_bytes as isize;
        server.stop()?;
        drop(counting);
        Ok((whole - server_only, server_only))
    };
    let (one_clients, one_server) = live(1)?;
    let (many_clients, many_server) = live(MANY)?;
    let per = |many: isize, one: isize| (many - one) as f64 / f64::from(MANY - 1);
    Ok((per(many_clients, one_clients), per(many_server, one_server)))
}

// ---------------------------------------------------------------------------
// Helpers.

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

/// CPU time of the whole machine and of this process, to tell whether
/// something else ran during a point: two spinning threads own both cores,
/// so anything else halves what they measure.
#[derive(Debug)]
struct CpuSample {
    at: Instant,
    /// Every core: user, nice, system, irq and softirq ticks.
    busy_ticks: u64,
    /// This process, user and system.
    own_ticks: u64,
}

impl CpuSample {
    /// Ticks per second in /proc (`USER_HZ`, 100 on Linux).
    const TICKS_PER_SEC: f64 = 100.0;

    fn now() -> Option<CpuSample> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        let [user, nice, system, _idle, _iowait, irq, softirq, ..] = cpu[..] else {
            return None;
        };
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may hold spaces): state is
        // field 3, utime 14, stime 15.
        let fields: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        Some(CpuSample {
            at: Instant::now(),
            busy_ticks: user + nice + system + irq + softirq,
            own_ticks: utime + stime,
        })
    }

    /// The CPU other processes took between two samples, in percent of one
    /// core (0 where /proc cannot be read).
    fn others_percent(before: Option<CpuSample>, after: Option<CpuSample>) -> f64 {
        let (Some(before), Some(after)) = (before, after) else {
            return 0.0;
        };
        let secs = after.at.duration_since(before.at).as_secs_f64();
        let busy = after.busy_ticks.saturating_sub(before.busy_ticks);
        let own = after.own_ticks.saturating_sub(before.own_ticks);
        busy.saturating_sub(own) as f64 / Self::TICKS_PER_SEC / secs * 100.0
    }
}

/// Threads of this process, main included.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// `recvmmsg`/`sendmmsg` through `nix`'s safe wrappers, for the plain echo:
/// one datagram per message in the kernel, with no framework code in the
/// way.
mod mmsg {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::ops::Range;
    use std::os::fd::RawFd;

    use nix::errno::Errno;
    use nix::sys::socket::{
        ControlMessage, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg,
    };

    use super::BATCH_MAX;

    /// Room per datagram: anything larger than an echo request is a bug, and
    /// shows as a stale reply.
    const BUFFER_LEN: usize = 2048;

    /// `BATCH_MAX` datagram buffers with their lengths and peers, and the
    /// system call headers. Receiving and sending each have headers of their
    /// own: `sendmmsg` points a header's name at the address it is given, and
    /// `recvmmsg` would then write the next source there instead of into the
    /// header's own slot, which is where `nix` reads it from.
    pub(super) struct Batch {
        bufs: Box<[[u8; BUFFER_LEN]]>,
        lens: [usize; BATCH_MAX],
        /// After [`Batch::recv`], where each datagram came from; for
        /// [`Batch::send`], where each goes.
        peers: [Option<SockaddrIn>; BATCH_MAX],
        recv_headers: MultiHeaders<SockaddrIn>,
        send_headers: MultiHeaders<SockaddrIn>,
    }

    impl Batch {
        pub(super) fn new() -> Batch {
            Batch {
                bufs: vec![[0u8; BUFFER_LEN]; BATCH_MAX].into_boxed_slice(),
                lens: [0; BATCH_MAX],
                peers: [None; BATCH_MAX],
                recv_headers: MultiHeaders::preallocate(BATCH_MAX, None),
                send_headers: MultiHeaders::preallocate(BATCH_MAX, None),
            }
        }

        /// Receives up to `BATCH_MAX` datagrams without blocking; returns how
        /// many (0 if none is waiting).
        pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
            let mut bufs = self.bufs.iter_mut();
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH_MAX] =
                std::array::from_fn(|_| [IoSliceMut::new(bufs.next().expect("BATCH_MAX buffers"))]);
            let received = match recvmmsg(
                fd,
                &mut self.recv_headers,
                &mut iovs,
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(received) => received,
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
                Err(errno) => return Err(errno.into()),
            };
            let mut count = 0;
            for (i, datagram) in received.enumerate() {
                self.lens[i] = datagram.bytes.min(BUFFER_LEN);
                self.peers[i] = datagram.address;
                count = i + 1;
            }
            Ok(count)
        }

        /// The payload of received datagram `i`.
        pub(super) fn datagram(&self, i: usize) -> &[u8] {
            &self.bufs[i][..self.lens[i]]
        }

        /// The buffer of datagram `i`, to fill before [`Batch::set`].
        pub(super) fn buf_mut(&mut self, i: usize) -> &mut [u8] {
            &mut self.bufs[i]
        }

        /// Makes datagram `i` the first `len` bytes of its buffer, to `to`.
        pub(super) fn set(&mut self, i: usize, len: usize, to: SockaddrIn) {
            assert!(len <= BUFFER_LEN);
            self.lens[i] = len;
            self.peers[i] = Some(to);
        }

        /// Sends datagrams `range` (each to its peer: after [`Batch::recv`],
        /// back to its source) without blocking; returns how many the kernel
        /// took, 0 if the socket is full.
        pub(super) fn send(&mut self, fd: RawFd, range: Range<usize>) -> io::Result<usize> {
            assert!(range.end <= BATCH_MAX);
            if range.is_empty() {
                return Ok(0);
            }
            let mut datagrams = range.clone().map(|i| &self.bufs[i][..self.lens[i]]);
            let iovs: [[IoSlice<'_>; 1]; BATCH_MAX] =
                std::array::from_fn(|_| [IoSlice::new(datagrams.next().unwrap_or_default())]);
            let no_control: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                fd,
                &mut self.send_headers,
                &iovs[..range.len()],
                &self.peers[range],
                no_control,
                MsgFlags::MSG_DONTWAIT,
            ) {
                // One item per datagram the kernel took.
                Ok(sent) => Ok(sent.count()),
                Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::EINTR) => Ok(0),
                Err(errno) => Err(errno.into()),
            }
        }
    }
}

/// UDP GSO and GRO through `nix`'s safe wrappers, for the GSO echo: runs of
/// datagrams per kernel buffer, as the runtime's deployed sockets move them,
/// with no framework code in the way.
mod gso {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::{Ipv4Addr, UdpSocket};
    use std::os::fd::RawFd;

    use nix::errno::Errno;
    use nix::sys::socket::{
        ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, getsockopt,
        recvmmsg, sendmmsg, setsockopt, sockopt,
    };

    use super::BATCH_MAX;

    /// Datagrams in one GSO send at most (the kernel's `UDP_MAX_SEGMENTS` is
    /// 64 on older kernels).
    const SEGMENTS_MAX: usize = 64;
    /// Bytes in one GSO send at most: what one IPv4 datagram can carry.
    const SEND_BYTES_MAX: usize = 65_507;
    /// Room for one received buffer: the kernel coalesces up to 64 KiB.
    const GRO_BUFFER_LEN: usize = 1 << 16;
    /// Runs sent per `sendmmsg` at most.
    pub(super) const RUNS_PER_SEND: usize = BATCH_MAX;
    /// How many of the latest queued runs a datagram looks through for the
    /// latest to its destination: bounded work per datagram.
    const LOOKBACK: usize = 8;

    /// Datagrams of `len` bytes that one run holds.
    pub(super) const fn run_len_max(len: usize) -> usize {
        if len == 0 {
            1
        } else if SEND_BYTES_MAX / len < SEGMENTS_MAX {
            SEND_BYTES_MAX / len
        } else {
            SEGMENTS_MAX
        }
    }

    /// Turns GRO on for `socket`, and checks that the kernel knows GSO; an
    /// `Unsupported` error says what it lacks.
    pub(super) fn enable(socket: &UdpSocket) -> io::Result<()> {
        let lacks = |what: &str, errno: Errno| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the kernel lacks {what} ({errno})"),
            )
        };
        // GSO needs no socket option (each send carries its segment size),
        // but reading the option tells whether the kernel knows it (4.18+).
        getsockopt(socket, sockopt::UdpGsoSegment)
            .map_err(|e| lacks("UDP GSO (UDP_SEGMENT)", e))?;
        setsockopt(socket, sockopt::UdpGroSegment, &true).map_err(|e| lacks("UDP GRO", e))?;
        Ok(())
    }

    /// Whether this kernel does UDP GSO and GRO, on a socket of its own.
    pub(super) fn probe() -> io::Result<()> {
        enable(&UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?)
    }

    fn recv_headers() -> MultiHeaders<SockaddrIn> {
        MultiHeaders::preallocate(BATCH_MAX, Some(nix::cmsg_space!(i32)))
    }

    /// `BATCH_MAX` receive buffers of 64 KiB, each a run of datagrams from
    /// one source, with the `recvmmsg` headers.
    pub(super) struct GroBatch {
        bufs: Box<[u8]>,
        lens: [usize; BATCH_MAX],
        /// The size of each buffer's datagrams (the last may be shorter).
        segments: [usize; BATCH_MAX],
        /// Where each buffer came from; `None` for a buffer dropped.
        peers: [Option<SockaddrIn>; BATCH_MAX],
        headers: MultiHeaders<SockaddrIn>,
        /// The kernel overwrote a header's control length with that of a
        /// buffer without a control message (0), which `nix` does not
        /// restore: a run later received there would lose its segment size.
        /// The headers are built again before the next receive.
        spent: bool,
        /// Buffers dropped: truncated, without a source, or their control
        /// message cut short.
        pub(super) dropped: u64,
    }

    impl GroBatch {
        pub(super) fn new() -> GroBatch {
            GroBatch {
                // Zeroed, so untouched pages cost no memory.
                bufs: vec![0u8; BATCH_MAX * GRO_BUFFER_LEN].into_boxed_slice(),
                lens: [0; BATCH_MAX],
                segments: [0; BATCH_MAX],
                peers: [None; BATCH_MAX],
                headers: recv_headers(),
                spent: false,
                dropped: 0,
            }
        }

        /// Receives up to `BATCH_MAX` buffers without blocking; returns how
        /// many (0 if none is waiting).
        pub(super) fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
            if self.spent {
                self.headers = recv_headers();
                self.spent = false;
            }
            let mut bufs = self.bufs.chunks_exact_mut(GRO_BUFFER_LEN);
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH_MAX] =
                std::array::from_fn(|_| [IoSliceMut::new(bufs.next().expect("BATCH_MAX buffers"))]);
            let received = match recvmmsg(
                fd,
                &mut self.headers,
                &mut iovs,
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(received) => received,
                Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
                Err(errno) => return Err(errno.into()),
            };
            let mut count = 0;
            for (i, buffer) in received.enumerate() {
                count = i + 1;
                let mut segment = None;
                let control = buffer.cmsgs().map(|cmsgs| {
                    for cmsg in cmsgs {
                        if let ControlMessageOwned::UdpGroSegments(size) = cmsg {
                            segment = usize::try_from(size).ok().filter(|&s| s > 0);
                        }
                    }
                });
                if segment.is_none() {
                    self.spent = true;
                }
                let len = buffer.bytes.min(GRO_BUFFER_LEN);
                self.peers[i] = buffer.address;
                if control.is_err()
                    || buffer.flags.contains(MsgFlags::MSG_TRUNC)
                    || buffer.address.is_none()
                {
                    self.dropped += 1;
                    self.peers[i] = None;
                }
                self.lens[i] = len;
                // Without a control message, one datagram.
                self.segments[i] = segment.unwrap_or(len);
            }
            Ok(count)
        }

        /// Received buffer `i`: where it came from and its datagrams; `None`
        /// if it was dropped.
        pub(super) fn buffer(&self, i: usize) -> Option<(SockaddrIn, impl Iterator<Item = &[u8]>)> {
            let source = self.peers[i]?;
            let bytes = &self.bufs[i * GRO_BUFFER_LEN..][..self.lens[i]];
            // An empty datagram is a datagram too.
            let empty: Option<&[u8]> = bytes.is_empty().then_some(&[]);
            Some((source, bytes.chunks(self.segments[i].max(1)).chain(empty)))
        }
    }

    /// Datagrams to one destination that leave in one send: one, or a GSO
    /// run of up to `SEGMENTS_MAX` of `segment` bytes (the last may be
    /// shorter, which ends the run), at most `SEND_BYTES_MAX` in all.
    #[derive(Debug)]
    struct Run {
        to: SockaddrIn,
        segment: usize,
        datagrams: usize,
        /// A shorter datagram (or an empty one) ended the run.
        closed: bool,
        bytes: Vec<u8>,
    }

    impl Run {
        fn start(&mut self, to: SockaddrIn, datagram: &[u8]) {
            self.to = to;
            self.segment = datagram.len();
            self.datagrams = 1;
            self.closed = datagram.is_empty();
            self.bytes.clear();
            self.bytes.extend_from_slice(datagram);
        }

        fn try_append(&mut self, datagram: &[u8]) -> bool {
            if self.closed
                || self.datagrams >= SEGMENTS_MAX
                || datagram.is_empty()
                || datagram.len() > self.segment
                || self.bytes.len() + datagram.len() > SEND_BYTES_MAX
            {
                return false;
            }
            self.bytes.extend_from_slice(datagram);
            self.datagrams += 1;
            self.closed = datagram.len() < self.segment;
            true
        }
    }

    /// Datagrams queued as runs, one destination each, and sent as GSO
    /// sends, up to `RUNS_PER_SEND` a `sendmmsg`.
    pub(super) struct Runs {
        /// `runs[..queued]` are queued, the first `sent` of them sent; the
        /// rest are spare, their buffers kept.
        runs: Vec<Run>,
        queued: usize,
        sent: usize,
        /// `sendmmsg` encodes the same control messages into every header it
        /// sends: runs of one datagram go with none, GSO runs with a
        /// `UDP_SEGMENT` message, from headers of their own.
        plain_headers: MultiHeaders<SockaddrIn>,
        gso_headers: MultiHeaders<SockaddrIn>,
        /// Datagrams sent, and the runs (kernel messages) they went in.
        pub(super) datagrams_sent: u64,
        pub(super) runs_sent: u64,
    }

    impl Runs {
        pub(super) fn new() -> Runs {
            Runs {
                runs: Vec::new(),
                queued: 0,
                sent: 0,
                plain_headers: MultiHeaders::preallocate(RUNS_PER_SEND, None),
                gso_headers: MultiHeaders::preallocate(RUNS_PER_SEND, Some(nix::cmsg_space!(u16))),
                datagrams_sent: 0,
                runs_sent: 0,
            }
        }

        /// Queues `datagram` to `to`: at the end of the latest run to `to`
        /// among the last `LOOKBACK` unsent ones if it fits there, or as a
        /// new run, so that datagrams to one destination keep their order.
        pub(super) fn push(&mut self, to: SockaddrIn, datagram: &[u8]) {
            let latest = self.runs[self.sent..self.queued]
                .iter_mut()
                .rev()
                .take(LOOKBACK)
                .find(|run| run.to == to);
            if latest.is_some_and(|run| run.try_append(datagram)) {
                return;
            }
            if self.queued == self.runs.len() {
                self.runs.push(Run {
                    to,
                    segment: 0,
                    datagrams: 0,
                    closed: true,
                    bytes: Vec::new(),
                });
            }
            self.runs[self.queued].start(to, datagram);
            self.queued += 1;
        }

        /// Whether every queued run has been sent.
        pub(super) fn is_sent(&self) -> bool {
            self.sent == self.queued
        }

        /// Forgets the queued runs, sent or not.
        pub(super) fn clear(&mut self) {
            self.queued = 0;
            self.sent = 0;
        }

        /// Sends the queued runs not sent yet, in order, without blocking,
        /// until all are sent or the socket is full; returns how many
        /// datagrams the kernel took.
        pub(super) fn send(&mut self, fd: RawFd) -> io::Result<usize> {
            let mut datagrams = 0;
            while self.sent < self.queued {
                // The next runs that one segment size fits: the GSO runs'
                // (one size for all), at least the length of each lone
                // datagram among them (a send no longer than its segment
                // size is one plain datagram).
                let mut segment: Option<usize> = None;
                let mut lone_max = 0;
                let mut end = self.sent;
                for run in &self.runs[self.sent..self.queued.min(self.sent + RUNS_PER_SEND)] {
                    if run.datagrams == 1 {
                        if segment.is_some_and(|s| run.bytes.len() > s) {
                            break;
                        }
                        lone_max = lone_max.max(run.bytes.len());
                    } else {
                        match segment {
                            Some(s) if s != run.segment => break,
                            None if lone_max > run.segment => break,
                            _ => segment = Some(run.segment),
                        }
                    }
                    end += 1;
                }
                let batch = &self.runs[self.sent..end];
                let n = batch.len();
                let mut payloads = batch.iter().map(|run| run.bytes.as_slice());
                let iovs: [[IoSlice<'_>; 1]; RUNS_PER_SEND] =
                    std::array::from_fn(|_| [IoSlice::new(payloads.next().unwrap_or_default())]);
                let mut addrs = [None; RUNS_PER_SEND];
                for (addr, run) in addrs.iter_mut().zip(batch) {
                    *addr = Some(run.to);
                }
                let flags = MsgFlags::MSG_DONTWAIT;
                let result = match segment {
                    None => {
                        let no_control: [ControlMessage<'_>; 0] = [];
                        sendmmsg(
                            fd,
                            &mut self.plain_headers,
                            &iovs[..n],
                            &addrs[..n],
                            no_control,
                            flags,
                        )
                        .map(Iterator::count)
                    }
                    Some(segment) => {
                        // A run holds at most SEND_BYTES_MAX bytes.
                        let segment = u16::try_from(segment).map_err(|_| {
                            io::Error::other(format!("GSO segment of {segment} bytes"))
                        })?;
                        sendmmsg(
                            fd,
                            &mut self.gso_headers,
                            &iovs[..n],
                            &addrs[..n],
                            [ControlMessage::UdpGsoSegments(&segment)],
                            flags,
                        )
                        .map(Iterator::count)
                    }
                };
                let took = match result {
                    // One item per run the kernel took.
                    Ok(took) => took.min(n),
                    Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::EINTR) => 0,
                    Err(Errno::EIO) => {
                        return Err(io::Error::new(
                            io::ErrorKind::Unsupported,
                            "the kernel refused a GSO send (EIO: the device cannot offload)",
                        ));
                    }
                    Err(errno) => return Err(errno.into()),
                };
                let went: usize = batch[..took].iter().map(|run| run.datagrams).sum();
                datagrams += went;
                self.datagrams_sent += went as u64;
                self.runs_sent += took as u64;
                self.sent += took;
                if took < n {
                    break;
                }
            }
            Ok(datagrams)
        }
    }
}

/// A global allocator that counts live heap while asked to, to measure what
/// a client costs. Off, it costs one relaxed load of a flag per call.
mod heap {
    #![allow(unsafe_code)]

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

    #[global_allocator]
    static ALLOCATOR: CountingAllocator = CountingAllocator;

    static ON: AtomicBool = AtomicBool::new(false);
    static REQUESTED: AtomicIsize = AtomicIsize::new(0);
    static CHUNKS: AtomicIsize = AtomicIsize::new(0);
    static BLOCKS: AtomicIsize = AtomicIsize::new(0);

    /// Live heap allocated since counting started (frees of older blocks
    /// while counting are subtracted too).
    #[derive(Clone, Copy, Debug)]
    pub(super) struct Usage {
        pub(super) requested_bytes: usize,
        /// What glibc's malloc really sets aside: an 8-byte header, rounded
        /// up to 16, 32 at least.
        pub(super) chunk_bytes: usize,
        pub(super) blocks: usize,
    }

    /// Counting, from `start` until dropped.
    pub(super) struct Counting(());

    impl Counting {
        pub(super) fn start() -> Counting {
            REQUESTED.store(0, Ordering::SeqCst);
            CHUNKS.store(0, Ordering::SeqCst);
            BLOCKS.store(0, Ordering::SeqCst);
            ON.store(true, Ordering::SeqCst);
            Counting(())
        }

        pub(super) fn usage(&self) -> Usage {
            let get = |n: &AtomicIsize| n.load(Ordering::SeqCst).max(0) as usize;
            Usage {
                requested_bytes: get(&REQUESTED),
                chunk_bytes: get(&CHUNKS),
                blocks: get(&BLOCKS),
            }
        }
    }

    impl Drop for Counting {
        fn drop(&mut self) {
            ON.store(false, Ordering::SeqCst);
        }
    }

    fn chunk(size: usize) -> isize {
        ((size + 8).next_multiple_of(16)).max(32) as isize
    }

    fn count(size: usize, sign: isize) {
        if ON.load(Ordering::Relaxed) {
            REQUESTED.fetch_add(sign * size as isize, Ordering::Relaxed);
            CHUNKS.fetch_add(sign * chunk(size), Ordering::Relaxed);
            BLOCKS.fetch_add(sign, Ordering::Relaxed);
        }
    }

    /// The system allocator, counted.
    struct CountingAllocator;

    // SAFETY: every call is passed to `System` unchanged, which upholds the
    // `GlobalAlloc` contract; the counting touches only atomics and never
    // allocates.
    unsafe impl GlobalAlloc for CountingAllocator {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's guarantees about `layout` are `System`'s.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                count(layout.size(), 1);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as `alloc`. (`calloc`: untouched pages stay unmapped.)
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                count(layout.size(), 1);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `System` through this allocator with
            // this `layout`, as the caller guarantees.
            unsafe { System.dealloc(ptr, layout) };
            count(layout.size(), -1);
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as `dealloc` for `ptr` and `layout`; `new_size` is the
            // caller's to check, as for `System`.
            let new = unsafe { System.realloc(ptr, layout, new_size) };
            if !new.is_null() {
                count(layout.size(), -1);
                count(new_size, 1);
            }
            new
        }
    }
}
