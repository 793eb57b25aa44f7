//! The unreplicated baseline on the real runtime, end to end: a replica node
//! on 127.0.0.2 and a clients node on 127.0.0.3, started as `node serve`
//! processes and driven over their control connections by the runner's own
//! engine, one point at a time ([`runner::run::run_point`], and
//! [`RunningPoint`] in steps where the test acts while the clients run).
//!
//! The runs share this machine's two cores (replica on core 0, clients on
//! core 1), so the tests take turns ([`serial`]).

mod common;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use runner::experiment::Experiment;
use runner::hosts::Host;
use runner::run::{PointReports, RunningPoint};
use wire::control::{FinalReport, Idle, IntervalReport, TransportKind};
use wire::unreplicated::{Message, Request};
use wire::{ClientId, MESSAGE_SIZE_MAX};

const CLIENTS: u32 = 100;
const DURATION: Duration = Duration::from_secs(2);

/// One run at a time: each wants both cores.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn experiment(transport: TransportKind, idle: Idle) -> Experiment {
    Experiment {
        transport,
        idle,
        ..common::unreplicated(CLIENTS, DURATION)
    }
}

/// The replica on 127.0.0.2, the clients on 127.0.0.3.
fn hosts() -> [Host; 2] {
    [2, 3].map(|last| Host::local(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))))
}

/// Drops the replica counted because a datagram did not decode (the names
/// come from `wire::DecodeError::reason`).
fn decode_drops(report: &FinalReport) -> u64 {
    report
        .counters
        .iter()
        .filter(|(name, _)| name.starts_with("decode:"))
        .map(|&(_, n)| n)
        .sum()
}

/// What every clean run must show: clients completed operations, every
/// completed operation was executed, no reply was malformed, and the
/// histogram holds what the clients measured.
fn check_clean_run(result: &PointReports, transport: TransportKind) {
    assert_eq!(result.replicas.len(), 1);
    let replica_node = &result.replicas[0];
    let clients = &result.clients.report;
    let replica = &replica_node.report;
    assert!(clients.ops > 0, "no operation completed: {clients:?}");
    // The replica counts every request it handled, retransmissions too, so
    // it is at least what the clients completed.
    assert!(
        clients.ops <= replica.ops,
        "clients completed {} operations, the replica handled only {}",
        clients.ops,
        replica.ops
    );
    assert_eq!(decode_drops(clients), 0, "malformed replies: {clients:?}");
    assert_eq!(decode_drops(replica), 0, "malformed requests: {replica:?}");
    let histogram = result
        .clients
        .latency_us
        .as_ref()
        .expect("clients send a latency histogram");
    assert_eq!(histogram.len(), clients.measured_ops);
    assert!(clients.measured_ops > 0);
    assert!(replica_node.latency_us.is_none());
    if transport != TransportKind::Auto {
        assert_eq!(replica_node.started.transport, transport);
        assert_eq!(result.clients.started.transport, transport);
    }
    assert!(
        result.clients.intervals.iter().any(|i| i.ops > 0),
        "no interval showed progress: {:?}",
        result.clients.intervals
    );
    let throughput = clients.ops as f64 / (clients.elapsed_ms.max(1) as f64 / 1000.0);
    eprintln!(
        "{transport:?}: {} ops ({throughput:.0}/s), p50 {} us, p99 {} us, replica cpu {} ms, \
         clients cpu {} ms",
        clients.ops,
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        replica.cpu_ms,
        clients.cpu_ms,
    );
}

fn run_clean(transport: TransportKind, idle: Idle) {
    let _turn = serial();
    let experiment = experiment(transport, idle);
    let point = common::only_point(&experiment);
    let result = runner::run::run_point(&experiment, &point, 0, &hosts(), common::node_binary())
        .unwrap_or_else(|error| panic!("{error:#}"));
    check_clean_run(&result, transport);
}

#[test]
fn io_uring_busy() {
    run_clean(TransportKind::IoUring, Idle::Busy);
}

#[test]
fn io_uring_spin_then_block() {
    run_clean(TransportKind::IoUring, Idle::SpinThenBlock { spin_us: 50 });
}

#[test]
fn epoll_busy() {
    run_clean(TransportKind::Epoll, Idle::Busy);
}

#[test]
fn epoll_spin_then_block() {
    run_clean(TransportKind::Epoll, Idle::SpinThenBlock { spin_us: 50 });
}

/// The clients' next interval report; one must come within 5 s.
fn next_interval(run: &mut RunningPoint) -> IntervalReport {
    run.next_clients_interval(Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}"))
        .expect("the clients sent no interval report within 5 s")
}

/// Random bytes, truncated requests, forged lengths and datagrams as large as
/// UDP allows, sent at the replica while clients run: each is dropped and
/// counted, none stops the replica, and the clients keep completing.
#[test]
fn bad_datagrams_are_dropped_and_counted() {
    let _turn = serial();
    let experiment = experiment(TransportKind::Auto, Idle::SpinThenBlock { spin_us: 50 });
    let point = common::only_point(&experiment);
    let mut run = RunningPoint::start(&experiment, &point, 0, &hosts(), common::node_binary())
        .unwrap_or_else(|error| panic!("{error:#}"));
    next_interval(&mut run);

    let garbage = bad_datagrams();
    let socket = UdpSocket::bind("127.0.0.4:0").unwrap();
    let replica = run.replica_addrs()[0];
    for (i, datagram) in garbage.iter().enumerate() {
        socket.send_to(datagram, replica).unwrap();
        // Pace the large ones so the replica's socket buffer never
        // overflows: a datagram the kernel drops is one the replica cannot
        // count.
        if datagram.len() > 1500 || i % 16 == 0 {
            thread::sleep(Duration::from_millis(1));
        }
    }

    // Intervals that began after the garbage still show progress.
    run.skip_clients_intervals().unwrap();
    next_interval(&mut run);
    let after = next_interval(&mut run);
    assert!(
        after.ops > 0,
        "clients stalled after the garbage: {after:?}"
    );

    let result = run.finish().unwrap_or_else(|error| panic!("{error:#}"));
    let replica = &result.replicas[0].report;
    let dropped = decode_drops(replica);
    let sent = garbage.len() as u64;
    assert!(
        dropped <= sent && dropped >= sent * 9 / 10,
        "sent {sent} bad datagrams, the replica counted {dropped} decode drops: {:?}",
        replica.counters
    );
    assert_eq!(decode_drops(&result.clients.report), 0);
    assert!(result.clients.report.ops <= replica.ops);
}

/// Datagrams no replica may accept. Each fails to decode as an unreplicated
/// message whatever its random part: random bytes start with a variant tag
/// other than 0 (Request) and 1 (Reply); a request cut short ends before its
/// last field; a forged op length is larger than any datagram.
fn bad_datagrams() -> Vec<Vec<u8>> {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut datagrams = Vec::new();
    for _ in 0..100 {
        let len = 1 + rng.below(1400) as usize;
        datagrams.push(random_bytes(&mut rng, len));
    }
    for _ in 0..20 {
        datagrams.push(random_bytes(&mut rng, MESSAGE_SIZE_MAX));
    }
    let request = wire::codec::encode_to_vec(&Message::Request(Request {
        client_id: ClientId(1_000_000),
        request_num: 1,
        op: vec![7; 200],
    }))
    .unwrap();
    for _ in 0..100 {
        let cut = rng.below(request.len() as u64 - 1) as usize + 1;
        datagrams.push(request[..cut].to_vec());
    }
    // Request tag, client id 5, request 1, then an op length of 2^32 - 1
    // (varint 0xFC + u32) over a padded datagram.
    let mut forged = vec![0, 5, 1, 0xFC, 0xFF, 0xFF, 0xFF, 0xFF];
    forged.resize(MESSAGE_SIZE_MAX, 0);
    datagrams.push(forged);
    datagrams
}

fn random_bytes(rng: &mut XorShift, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    bytes[0] = 2 + (rng.below(250) as u8);
    bytes
}

/// A tiny deterministic generator; the runner has no RNG dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `--equal-cpu`: a node under a quota of a quarter of a core uses no more
/// than that, whatever it could take, and its group is gone after the run.
#[test]
fn equal_cpu_holds_every_node_to_its_quota() {
    const CORES: f64 = 0.25;
    let _turn = serial();
    let experiment = Experiment {
        equal_cpu: Some(runner::experiment::EqualCpu::Cores(CORES)),
        ..experiment(TransportKind::Auto, Idle::Busy)
    };
    if let Err(why) = runner::cpu_quota::CpuQuota::new(CORES) {
        common::skip(
            "equal_cpu_holds_every_node_to_its_quota",
            &format!("{why:#}"),
            false,
        );
        return;
    }
    let point = common::only_point(&experiment);
    let result = runner::run::run_point(&experiment, &point, 0, &hosts(), common::node_binary())
        .unwrap_or_else(|error| panic!("{error:#}"));
    check_clean_run(&result, TransportKind::Auto);
    // Busy polling takes a whole core without the quota; under it, a node
    // gets a quarter of its life at most (and a little for the kernel's
    // accounting, which charges a period's overrun to the next).
    for node in result
        .replicas
        .iter()
        .chain(std::iter::once(&result.clients))
    {
        let life_ms = node.report.elapsed_ms as f64;
        let share = node.report.cpu_ms as f64 / life_ms;
        assert!(
            share <= CORES * 1.2,
            "{} ms of CPU in {life_ms} ms: {share:.2} of a core, above the quota of {CORES}",
            node.report.cpu_ms
        );
    }
    let leftover: Vec<_> = [
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/unified",
    ]
    .iter()
    .filter_map(|dir| std::fs::read_dir(dir).ok())
    .flatten()
    .flatten()
    .filter(|entry| {
        entry.file_name().to_string_lossy() == format!("protocol-runner-{}", std::process::id())
    })
    .collect();
    assert!(leftover.is_empty(), "groups left behind: {leftover:?}");
}
