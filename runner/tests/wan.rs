//! Emulated WAN links in user space, end to end: the unreplicated baseline
//! on 127.0.0.2 and its clients on 127.0.0.3, as `node serve` processes
//! driven by the runner's engine, with a one-way delay that both the replica
//! and the clients add to what they send (the transports' hold queue,
//! `runtime::net::link`), so every operation crosses it twice.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use runner::experiment::Experiment;
use runner::hosts::Host;
use runner::hosts::netns::NetemProfile;
use runner::run::PointReports;
use runner::wan::{Wan, WanMechanism};
use wire::control::FinalReport;

/// The replica on 127.0.0.2, the clients on 127.0.0.3.
fn hosts() -> [Host; 2] {
    [2, 3].map(|last| Host::local(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))))
}

fn counter(report: &FinalReport, name: &str) -> u64 {
    report
        .counters
        .iter()
        .filter(|(n, _)| n == name)
        .map(|&(_, v)| v)
        .sum()
}

/// One run at a time: each wants both cores (the replica pins core 0).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn run(experiment: &Experiment) -> PointReports {
    let _turn = serial();
    let point = common::only_point(experiment);
    runner::run::run_point(experiment, &point, 0, &hosts(), common::node_binary())
        .unwrap_or_else(|error| panic!("{error:#}"))
}

/// The bound the issue states: a 5 ms one-way delay puts the baseline's p50
/// between 10 and 12 ms (two one-way delays, plus the loopback round trip
/// and the timers' lateness). A few closed-loop clients, so the replica is
/// far from busy and the delay is what is measured.
#[test]
fn five_ms_one_way_puts_the_baseline_p50_between_10_and_12_ms() {
    let mut experiment = Experiment {
        warmup: Duration::from_millis(300),
        ..common::unreplicated(4, Duration::from_millis(2300))
    };
    experiment.wan = Wan::choose(NetemProfile::delay(Duration::from_millis(5)), false);
    assert_eq!(experiment.wan.mechanism, WanMechanism::UserSpace);
    experiment.validate().unwrap();
    let result = run(&experiment);
    let clients = &result.clients.report;
    let replica = &result.replicas[0].report;
    let histogram = result.clients.latency_us.as_ref().expect("a histogram");
    let p50_us = histogram.value_at_quantile(0.5);
    eprintln!(
        "5 ms one way: {} ops, p50 {p50_us} µs, p99 {} µs, min {} µs; replica cpu {} ms, \
         clients cpu {} ms",
        clients.ops,
        histogram.value_at_quantile(0.99),
        histogram.min(),
        replica.cpu_ms,
        clients.cpu_ms
    );
    // Four clients, one operation each per ~10 ms, for 2 s.
    assert!(clients.measured_ops > 200, "{clients:?}");
    assert!(
        (10_000..=12_000).contains(&p50_us),
        "p50 {p50_us} µs, not between 10 and 12 ms"
    );
    // Nothing is faster than the two delays.
    assert!(histogram.min() >= 10_000, "min {} µs", histogram.min());
    // Both sides held what they sent, and lost nothing.
    assert!(counter(replica, "link emulation: datagrams held") >= clients.ops);
    assert!(counter(clients, "link emulation: datagrams held") >= clients.ops);
    for report in [replica, clients] {
        assert_eq!(counter(report, "link emulation: lost"), 0);
        assert_eq!(counter(report, "link emulation: hold queue full"), 0);
    }
}

/// Without a profile nothing is held, and the same run is far faster: the
/// delay above is the emulation's, not the machine's.
#[test]
fn without_a_profile_nothing_is_held() {
    let experiment = common::unreplicated(4, Duration::from_millis(800));
    assert!(experiment.wan.is_none());
    let result = run(&experiment);
    let histogram = result.clients.latency_us.as_ref().expect("a histogram");
    assert!(result.clients.report.measured_ops > 0);
    assert!(
        histogram.value_at_quantile(0.5) < 5_000,
        "p50 {} µs",
        histogram.value_at_quantile(0.5)
    );
    for report in [&result.replicas[0].report, &result.clients.report] {
        assert_eq!(counter(report, "link emulation: datagrams held"), 0);
    }
}

/// Emulated loss is applied by both sides, and the clients' retransmissions
/// get the operations through.
#[test]
fn lossy_links_lose_about_the_asked_share_and_clients_retransmit() {
    let mut experiment = common::unreplicated(4, Duration::from_millis(1500));
    experiment.wan = Wan::choose(
        NetemProfile {
            delay: Duration::from_millis(1),
            loss_percent: 10.0,
            ..NetemProfile::default()
        },
        false,
    );
    let result = run(&experiment);
    let clients = &result.clients.report;
    assert!(clients.measured_ops > 0, "{clients:?}");
    for report in [&result.replicas[0].report, clients] {
        let held = counter(report, "link emulation: datagrams held");
        let lost = counter(report, "link emulation: lost");
        let share = lost as f64 / (held + lost).max(1) as f64;
        assert!(
            (0.05..=0.15).contains(&share),
            "{lost} lost of {} ({share:.3})",
            held + lost
        );
    }
}

/// A replica whose stages run on three threads sends from a send-only
/// thread, which blocks on its waker rather than the socket: it too must
/// come back for every release, and what it sends is held as long.
#[test]
fn a_pipelined_replica_holds_and_releases_from_its_send_thread() {
    let mut experiment = Experiment {
        warmup: Duration::from_millis(200),
        replica_threads: Some(runner::threads::parse("receive+verify/protocol/send").unwrap()),
        ..common::unreplicated(4, Duration::from_millis(1200))
    };
    experiment.wan = Wan::choose(NetemProfile::delay(Duration::from_millis(5)), false);
    let result = run(&experiment);
    let clients = &result.clients.report;
    let replica = &result.replicas[0].report;
    let histogram = result.clients.latency_us.as_ref().expect("a histogram");
    eprintln!(
        "pipelined, 5 ms one way: {} ops, p50 {} µs, min {} µs",
        clients.ops,
        histogram.value_at_quantile(0.5),
        histogram.min()
    );
    assert!(clients.measured_ops > 50, "{clients:?}");
    assert!(histogram.min() >= 10_000, "min {} µs", histogram.min());
    assert!(counter(replica, "link emulation: datagrams held") >= clients.ops);
}
