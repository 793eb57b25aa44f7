//! The verify stage's scaling: one PBFT backup on the real runtime, fed
//! signed prepares over loopback, with one verify worker and then two.
//!
//! A signing protocol's replica spends most of its CPU checking signatures
//! (`SharedState::decode`), which the verify stage runs on as many threads as
//! the thread map gives it. This bench measures what a second worker buys:
//! replica 1 of a group of four runs alone, its receive, protocol and send
//! stages on one thread and its verify stage on one or two more (unpinned,
//! spinning for 50 µs before blocking), and a sender thread in this process,
//! bound to replica 2's address, keeps `OUTSTANDING` prepares in flight:
//! each a distinct, validly signed prepare from replica 2, which the replica
//! checks and then ignores (no pre-prepare came). Throughput is the
//! messages the protocol stage took per second, after a warm-up; the table
//! gives each map's figure and the ratio of two workers to one, measured in
//! the same run, alternating the maps `ROUNDS` times.
//!
//! On a machine with fewer cores than the threads (the sender, the
//! replica's main thread and its workers), the second worker competes for
//! a core with the others, and the ratio says how much of a core it still
//! finds; with cores to spare it approaches 2.
//!
//! Run it with `cargo bench -p benches --bench verify`; under `cargo test`
//! (or without `--bench`) it runs a short smoke pass whose figures are not
//! measurements.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocols::app::NullApp;
use protocols::pbft::{Codec, Outbound, Replica};
use runtime::deploy::{ReplicaSetup, Running, spawn_replica};
use runtime::{ReplicaId, SharedState};
use wire::control::{Idle, Stage, ThreadMap, ThreadSpec, TransportKind};
use wire::pbft::Prepare;
use wire::{Digest, MESSAGE_SIZE_MAX};

const N: usize = 4;
const ME: ReplicaId = ReplicaId(1);
const SENDER: ReplicaId = ReplicaId(2);
/// Prepares in flight: enough to keep two workers busy, few enough that
/// no stage queue fills (which would drop, and count, what it cannot hold).
const OUTSTANDING: u64 = 256;
/// Distinct signed prepares, sent round and round.
const PREPARES: u64 = 2_048;
/// The sender's pause after each burst, with `OUTSTANDING` to work through:
/// a small part of the time they take, so the sender neither spins on a
/// core the workers need nor lets them run dry.
const PAUSE: Duration = Duration::from_micros(200);
const IDLE: Idle = Idle::SpinThenBlock { spin_us: 50 };
const ROUNDS: usize = 3;

fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let (warmup, measure) = if smoke {
        (Duration::from_millis(100), Duration::from_millis(200))
    } else {
        (Duration::from_millis(500), Duration::from_secs(2))
    };
    let keys = protocols::simulate::pbft::keys(1, N);
    let config = protocols::simulate::pbft::config(&keys);
    let sender =
        Codec::replica(Arc::clone(&config), SENDER, &keys[usize::from(SENDER.0)]).expect("a codec");
    let prepares: Vec<Vec<u8>> = (1..=PREPARES)
        .map(|seq| {
            let mut bytes = Vec::with_capacity(MESSAGE_SIZE_MAX);
            let prepare = Prepare {
                view: 0,
                seq,
                digest: Digest([7; 32]),
                replica: SENDER,
            };
            sender
                .encode(&Outbound::Prepare(prepare), &mut bytes)
                .expect("a prepare encodes");
            bytes
        })
        .collect();
    println!(
        "verify: one PBFT backup (n = {N}), receive+protocol+send on one thread, verify on 1 or 2 \
         more; {OUTSTANDING} signed prepares in flight; warm-up {} ms, {} ms measured, {ROUNDS} \
         rounds{}",
        warmup.as_millis(),
        measure.as_millis(),
        if smoke {
            " (smoke run: not a measurement)"
        } else {
            ""
        }
    );
    println!("{:<10} {:>14} {:>10}", "workers", "checks/s", "vs 1");
    let mut by_workers: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for workers in [1, 2] {
            // Fresh addresses for every run: a stopped replica's socket may
            // outlive it for a moment (the kernel tears an io_uring down
            // after the fact).
            let addrs = free_addrs();
            let codec = Arc::new(
                Codec::replica(Arc::clone(&config), ME, &keys[usize::from(ME.0)]).expect("a codec"),
            );
            let replica = Replica::new(ME, Arc::clone(&codec), Box::new(NullApp));
            let setup = ReplicaSetup {
                id: ME,
                replicas: addrs.clone(),
                threads: thread_map(workers),
                idle: IDLE,
                transport: TransportKind::Auto,
                link: Default::default(),
            };
            let running = spawn_replica(replica, codec, setup).expect("the replica starts");
            let rate = feed(
                &running,
                addrs[usize::from(SENDER.0)],
                &prepares,
                warmup,
                measure,
            );
            running.stop().expect("the replica stops cleanly");
            by_workers[workers - 1].push(rate);
            let one = by_workers[0].last().copied().unwrap_or(rate);
            println!("{workers:<10} {rate:>14.0} {:>9.2}x", rate / one);
            if smoke {
                assert!(rate > 0.0, "nothing was checked with {workers} worker(s)");
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "mean: 1 worker {:.0}/s, 2 workers {:.0}/s: {:.2}x",
        mean(&by_workers[0]),
        mean(&by_workers[1]),
        mean(&by_workers[1]) / mean(&by_workers[0])
    );
}

/// `N` loopback addresses with ports free a moment ago.
fn free_addrs() -> Vec<SocketAddr> {
    let sockets: Vec<UdpSocket> = (0..N)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("a free loopback port"))
        .collect();
    sockets
        .iter()
        .map(|s| s.local_addr().expect("a bound socket"))
        .collect()
}

/// Receive, protocol and send on one thread; `workers` verify threads.
fn thread_map(workers: usize) -> ThreadMap {
    let mut threads = vec![ThreadSpec {
        stages: vec![Stage::Receive, Stage::Protocol, Stage::Send],
        core: None,
    }];
    threads.extend((0..workers).map(|_| ThreadSpec {
        stages: vec![Stage::Verify],
        core: None,
    }));
    ThreadMap { threads }
}

/// Sends `prepares` from `from` to the replica, keeping `OUTSTANDING` more
/// sent than it handled, and returns what it handled per second in the
/// window after `warmup`.
fn feed(
    running: &Running,
    from: SocketAddr,
    prepares: &[Vec<u8>],
    warmup: Duration,
    measure: Duration,
) -> f64 {
    let to = running.local_addrs()[0];
    let socket = UdpSocket::bind(from).expect("the sender's address is free");
    let (mut sent, mut handled) = (0u64, 0u64);
    let start = Instant::now();
    let mut window: Option<(Instant, u64)> = None;
    loop {
        handled += running.metrics().ops;
        let now = Instant::now();
        match window {
            None if now >= start + warmup => window = Some((now, handled)),
            Some((began, at)) if now >= began + measure => {
                return (handled - at) as f64 / (now - began).as_secs_f64();
            }
            _ => {}
        }
        // Top the replica up to `OUTSTANDING` in flight, in one burst, then
        // leave the cores to it (it has work for over a millisecond).
        while sent < handled + OUTSTANDING {
            let bytes = &prepares[(sent % prepares.len() as u64) as usize];
            if socket.send_to(bytes, to).is_err() {
                break;
            }
            sent += 1;
        }
        std::thread::sleep(PAUSE);
    }
}
