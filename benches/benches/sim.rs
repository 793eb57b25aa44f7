//! Simulator speed: simulated message deliveries per wall-clock second, for the
//! unreplicated system (one server, key-value app, closed-loop clients) and
//! for chain replication (the registry's fixed chain of three and its
//! master).
//!
//! `cargo bench -p benches --bench sim`

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use protocols::simulate::run_seed;
use protocols::simulate::unreplicated::system;
use runtime::Time;
use runtime::sim::Network;

/// One run: `clients` clients of `ops` operations each; returns deliveries.
fn run(network: &Network, clients: u64, ops: u64) -> u64 {
    let (mut sim, _log) = system(1, network.clone(), clients, ops);
    assert!(sim.run_until_clients_done(Time::ZERO + Duration::from_secs(60)));
    sim.deliveries()
}

fn bench_sim(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim/unreplicated");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for (name, network) in [
        ("reliable", Network::reliable()),
        ("faulty10", Network::faulty(0.1)),
    ] {
        let deliveries = run(&network, 10, 1000);
        group.throughput(Throughput::Elements(deliveries));
        group.bench_function(format!("{name}/10x1000"), |b| {
            b.iter(|| run(&network, 10, 1000))
        });
    }
    // Whole seeds as the runner runs them: fault plan, checkers and all.
    let deliveries: u64 = (0..20)
        .map(|seed| run_seed(protocols::unreplicated::PROTOCOL, seed).deliveries)
        .sum();
    group.throughput(Throughput::Elements(deliveries));
    group.bench_function("run_seed/20-seeds-with-checks", |b| {
        b.iter(|| {
            for seed in 0..20 {
                assert!(run_seed(protocols::unreplicated::PROTOCOL, seed).passed);
            }
        })
    });
    group.finish();
}

/// One run of chain replication's fixed system (three servers, the master,
/// a reliable network): `clients` clients of `ops` operations each; returns
/// deliveries.
fn run_chain(clients: u64, ops: u64) -> u64 {
    let (mut sim, _log) = protocols::chain::PROTOCOL.kit().fixed_system(clients, ops);
    assert!(sim.run_until_clients_done(Time::ZERO + Duration::from_secs(60)));
    assert_eq!(sim.ops_completed(), clients * ops);
    sim.deliveries()
}

fn bench_chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim/chain");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    let deliveries = run_chain(10, 1000);
    group.throughput(Throughput::Elements(deliveries));
    group.bench_function("reliable/10x1000", |b| b.iter(|| run_chain(10, 1000)));
    let deliveries: u64 = (0..20)
        .map(|seed| run_seed(protocols::chain::PROTOCOL, seed).deliveries)
        .sum();
    group.throughput(Throughput::Elements(deliveries));
    group.bench_function("run_seed/20-seeds-with-checks", |b| {
        b.iter(|| {
            for seed in 0..20 {
                assert!(run_seed(protocols::chain::PROTOCOL, seed).passed);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_sim, bench_chain);
criterion_main!(benches);
