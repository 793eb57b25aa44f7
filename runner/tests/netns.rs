//! Network namespaces as hosts, end to end: the unreplicated protocol across
//! namespaces joined by a bridge (with and without `tc netem` delay), and
//! cleanup after a normal run, after a dropped provider and after a failed
//! setup, each followed by a check that no namespace, veth, bridge or node
//! process of ours is left.
//!
//! Each test skips, with a message on stderr, where
//! `NetnsHosts::available()` says this machine cannot make namespaces (not
//! root, no iproute2); the delay test also needs the kernel's netem qdisc.
//! Traffic stays inside the namespaces a test creates and its bridge.
//!
//! The tests take turns ([`serial`]): the protocol runs want both cores, and
//! a check for leftovers by name must not see a parallel test's fresh
//! namespaces.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use hdrhistogram::Histogram;
use runner::control::NodeProcess;
use runner::hosts::netns::{NetemProfile, NetnsHosts};
use runner::hosts::{Host, Launcher, Provider};
use wire::control::FinalReport;

/// Closed-loop clients: a few, so that queueing adds little to the delay.
const CLIENTS: u32 = 4;
const DURATION: Duration = Duration::from_secs(2);
/// netem delay on each node's egress.
const DELAY: Duration = Duration::from_millis(5);

/// One test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether namespaces work here; if not, says so and why.
fn namespaces_available(test: &str) -> bool {
    match NetnsHosts::available() {
        Ok(()) => true,
        Err(reason) => {
            // Root cannot be installed; iproute2 can, and .ci/run does.
            let why = format!("network namespaces unavailable: {reason}");
            common::skip(test, &why, common::is_root());
            false
        }
    }
}

/// 5 ms of netem delay on every node's egress and a few clients for 2 s: a
/// request crosses the clients' egress and its reply the replica's, so every
/// operation waits at least 10 ms, and so does the median.
#[test]
fn unreplicated_across_namespaces_with_netem_delay() {
    let test = "unreplicated_across_namespaces_with_netem_delay";
    let _turn = serial();
    if !namespaces_available(test) {
        return;
    }
    if let Err(reason) = NetnsHosts::netem_available() {
        common::skip(test, &format!("netem unavailable: {reason}"), false);
        return;
    }
    let mut provider = NetnsHosts::new(NetemProfile::delay(DELAY)).unwrap();
    let prefix = provider.prefix();
    let hosts = provider.hosts(3, common::node_binary()).unwrap();
    eprintln!("{}", provider.describe());
    // Every link has the qdisc, the unused third node's too.
    for host in &hosts {
        let qdisc = run_ok(
            "tc",
            &["-n", namespace(host), "qdisc", "show", "dev", "eth0"],
        );
        assert!(
            // iproute2 prints `delay 5ms`, older versions `delay 5.0ms`.
            qdisc.contains("netem") && qdisc.contains("delay 5"),
            "{host}: {qdisc}"
        );
    }

    let run = run_unreplicated(&hosts).unwrap_or_else(|e| panic!("{e:#}"));
    let p50_us = run.latency_us.value_at_quantile(0.5);
    eprintln!(
        "netem delay {} ms per egress: {} ops ({:.0}/s), latency p50 {p50_us} us, min {} us, \
         p99 {} us",
        DELAY.as_millis(),
        run.clients.ops,
        run.throughput(),
        run.latency_us.min(),
        run.latency_us.value_at_quantile(0.99),
    );
    assert!(run.clients.ops > 0, "no operation completed");
    let round_trip_us = 2 * DELAY.as_micros() as u64;
    assert!(
        p50_us >= round_trip_us,
        "p50 {p50_us} us is below the {round_trip_us} us that netem adds to a round trip"
    );

    assert_no_processes_in(&hosts);
    provider.cleanup().unwrap();
    provider.cleanup().unwrap();
    assert_nothing_left(&prefix, &run.pids);
}

/// The same delay emulated in the nodes' transports instead (what the
/// runner does on a kernel without netem): the namespaces get no qdisc, and
/// every operation still waits the two one-way delays.
#[test]
fn unreplicated_across_namespaces_with_user_space_delay() {
    let test = "unreplicated_across_namespaces_with_user_space_delay";
    let _turn = serial();
    if !namespaces_available(test) {
        return;
    }
    let mut provider = NetnsHosts::new(NetemProfile::default()).unwrap();
    let hosts = provider.hosts(2, common::node_binary()).unwrap();
    for host in &hosts {
        let qdisc = run_ok(
            "tc",
            &["-n", namespace(host), "qdisc", "show", "dev", "eth0"],
        );
        assert!(!qdisc.contains("netem"), "{host}: {qdisc}");
    }
    let mut experiment = common::unreplicated(CLIENTS, DURATION);
    experiment.wan = runner::wan::Wan::choose(NetemProfile::delay(DELAY), false);
    let point = common::only_point(&experiment);
    let result = runner::run::run_point(&experiment, &point, 0, &hosts, common::node_binary())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let latency_us = result.clients.latency_us.expect("a latency histogram");
    eprintln!(
        "user-space delay {} ms per egress across namespaces: {} ops, p50 {} us, min {} us",
        DELAY.as_millis(),
        result.clients.report.ops,
        latency_us.value_at_quantile(0.5),
        latency_us.min()
    );
    assert!(result.clients.report.ops > 0, "no operation completed");
    let round_trip_us = 2 * DELAY.as_micros() as u64;
    assert!(
        latency_us.min() >= round_trip_us,
        "min {} us is below the {round_trip_us} us the emulation adds to a round trip",
        latency_us.min()
    );
    assert_no_processes_in(&hosts);
    provider.cleanup().unwrap();
}

/// The same run without netem: the bridge and the veths carry the protocol,
/// and the runner reaches every node's control port from the root namespace.
#[test]
fn unreplicated_across_namespaces() {
    let test = "unreplicated_across_namespaces";
    let _turn = serial();
    if !namespaces_available(test) {
        return;
    }
    let mut provider = NetnsHosts::new(NetemProfile::default()).unwrap();
    let prefix = provider.prefix();
    let hosts = provider.hosts(3, common::node_binary()).unwrap();
    let description = provider.describe();
    eprintln!("{description}");
    assert!(
        description.starts_with(&format!("network namespaces {prefix}-0..2 on 10.77.")),
        "{description}"
    );
    assert!(description.ends_with("/24, no netem"), "{description}");
    check_layout(&prefix, &hosts);

    let run = run_unreplicated(&hosts).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "no netem: {} ops ({:.0}/s), latency p50 {} us, p99 {} us",
        run.clients.ops,
        run.throughput(),
        run.latency_us.value_at_quantile(0.5),
        run.latency_us.value_at_quantile(0.99),
    );
    assert!(run.clients.ops > 0, "no operation completed");
    assert!(run.clients.ops <= run.replica.ops);

    assert_no_processes_in(&hosts);
    provider.cleanup().unwrap();
    assert_nothing_left(&prefix, &run.pids);
    // Cleaned up, the provider can build its network again.
    let again = provider.hosts(1, common::node_binary()).unwrap();
    assert_eq!(again.len(), 1);
    provider.cleanup().unwrap();
    assert_nothing_left(&prefix, &[]);
}

/// A provider dropped without `cleanup` (the error path of a runner) removes
/// everything, and kills a node it finds still running in a namespace.
#[test]
fn dropping_the_provider_removes_everything() {
    let test = "dropping_the_provider_removes_everything";
    let _turn = serial();
    if !namespaces_available(test) {
        return;
    }
    let mut provider = NetnsHosts::new(NetemProfile::default()).unwrap();
    let prefix = provider.prefix();
    let hosts = provider.hosts(3, common::node_binary()).unwrap();
    let mut node =
        NodeProcess::spawn_on(&hosts[1], common::node_binary()).unwrap_or_else(|e| panic!("{e:#}"));
    let pid = node.pid();
    assert_eq!(namespace_pids(namespace(&hosts[1])), vec![pid.to_string()]);

    drop(provider);
    // Killed by the provider; `wait` reaps it.
    let status = node.wait(Duration::from_secs(5)).unwrap();
    assert!(!status.success(), "{status}");
    assert_nothing_left(&prefix, &[pid]);
}

/// A setup that fails halfway removes what it made, and only that: a
/// namespace with node 1's name, made by someone else, makes `ip netns add`
/// fail; node 0's namespace and veth and the bridge go, the stranger stays.
#[test]
fn failed_setup_removes_what_it_made_and_nothing_else() {
    let test = "failed_setup_removes_what_it_made_and_nothing_else";
    let _turn = serial();
    if !namespaces_available(test) {
        return;
    }
    let mut provider = NetnsHosts::new(NetemProfile::default()).unwrap();
    let prefix = provider.prefix();
    let stranger = Stranger::add(format!("{prefix}-1"));

    let error = provider
        .hosts(3, common::node_binary())
        .expect_err("setup should fail on the existing namespace");
    let message = format!("{error:#}");
    eprintln!("{message}");
    assert!(
        message.contains(&format!("`ip netns add {}` failed", stranger.0)),
        "{message}"
    );
    assert!(message.contains("File exists"), "{message}");
    assert_eq!(ours(&prefix), BTreeSet::from([stranger.0.clone()]));
    drop(stranger);
    assert_nothing_left(&prefix, &[]);
    // The failure was cleaned up already: cleanup has nothing to do.
    provider.cleanup().unwrap();
}

/// Where netem is missing from the kernel, asking for it fails at the first
/// `tc` with the command, its complaint and the reason, and leaves nothing.
#[test]
fn missing_netem_is_a_clear_error_and_leaves_nothing() {
    let test = "missing_netem_is_a_clear_error_and_leaves_nothing";
    let _turn = serial();
    if !namespaces_available(test) {
        return;
    }
    if NetnsHosts::netem_available().is_ok() {
        common::skip(test, "this kernel has netem", false);
        return;
    }
    let mut provider = NetnsHosts::new(NetemProfile::delay(DELAY)).unwrap();
    let prefix = provider.prefix();
    let error = provider
        .hosts(2, common::node_binary())
        .expect_err("netem is missing");
    let message = format!("{error:#}");
    eprintln!("{message}");
    assert!(message.contains("no netem qdisc"), "{message}");
    assert!(
        message.contains(&format!(
            "`tc -n {prefix}-0 qdisc add dev eth0 root netem limit 100000 delay 5000us` failed"
        )),
        "{message}"
    );
    assert_nothing_left(&prefix, &[]);
}

/// Two providers alive at once in one process get distinct names and
/// subnets, and each removes only its own.
#[test]
fn providers_at_once_get_distinct_names_and_subnets() {
    let test = "providers_at_once_get_distinct_names_and_subnets";
    let _turn = serial();
    if !namespaces_available(test) {
        return;
    }
    let (mut a, mut b) = thread::scope(|scope| {
        let a = scope.spawn(|| {
            let mut provider = NetnsHosts::new(NetemProfile::default()).unwrap();
            let hosts = provider.hosts(2, common::node_binary()).unwrap();
            (provider, hosts)
        });
        let b = scope.spawn(|| {
            let mut provider = NetnsHosts::new(NetemProfile::default()).unwrap();
            let hosts = provider.hosts(2, common::node_binary()).unwrap();
            (provider, hosts)
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let (prefix_a, prefix_b) = (a.0.prefix(), b.0.prefix());
    assert_ne!(prefix_a, prefix_b);
    check_layout(&prefix_a, &a.1);
    check_layout(&prefix_b, &b.1);
    assert_ne!(octet(&a.1[0], 2), octet(&b.1[0], 2), "same subnet");

    a.0.cleanup().unwrap();
    assert_nothing_left(&prefix_a, &[]);
    // Namespace and veth of a node share its name: two names and the bridge.
    assert_eq!(ours(&prefix_b).len(), 3, "{:?}", ours(&prefix_b));
    b.0.cleanup().unwrap();
    assert_nothing_left(&prefix_b, &[]);
    // Asking for more grows the network; asking for fewer returns a prefix.
    let hosts = b.0.hosts(3, common::node_binary()).unwrap();
    assert_eq!(b.0.hosts(1, common::node_binary()).unwrap(), hosts[..1]);
    drop(b);
    drop(a);
    assert_nothing_left(&prefix_b, &[]);
}

/// Ctrl-C runs the registered cleanups (here called as the signal handler
/// would): everything goes, and the provider builds nothing more.
#[test]
fn interrupt_removes_everything_and_stops_setup() {
    let test = "interrupt_removes_everything_and_stops_setup";
    let _turn = serial();
    if !namespaces_available(test) {
        return;
    }
    let mut provider = NetnsHosts::new(NetemProfile::default()).unwrap();
    let prefix = provider.prefix();
    let hosts = provider.hosts(2, common::node_binary()).unwrap();
    let mut node =
        NodeProcess::spawn_on(&hosts[0], common::node_binary()).unwrap_or_else(|e| panic!("{e:#}"));
    // Providers exist only under `serial`, so this one is the only cleanup
    // registered in this process.
    runner::cleanup::run_all();
    assert!(node.wait(Duration::from_secs(5)).is_ok());
    assert_nothing_left(&prefix, &[node.pid()]);
    let error = provider
        .hosts(2, common::node_binary())
        .expect_err("interrupted");
    assert!(format!("{error:#}").contains("interrupted"), "{error:#}");
    provider.cleanup().unwrap();
}

/// What one run across namespaces reported.
struct Run {
    clients: FinalReport,
    replica: FinalReport,
    latency_us: Histogram<u64>,
    /// The two node processes (replica, clients), exited.
    pids: Vec<u32>,
}

impl Run {
    fn throughput(&self) -> f64 {
        self.clients.ops as f64 / (self.clients.elapsed_ms.max(1) as f64 / 1000.0)
    }
}

/// A replica in `hosts[0]`'s namespace and [`CLIENTS`] clients in
/// `hosts[1]`'s, for [`DURATION`], through the runner's engine; both nodes
/// stopped and exited with 0.
fn run_unreplicated(hosts: &[Host]) -> anyhow::Result<Run> {
    let experiment = common::unreplicated(CLIENTS, DURATION);
    let point = common::only_point(&experiment);
    let result = runner::run::run_point(&experiment, &point, 0, hosts, common::node_binary())?;
    let [replica] = <[_; 1]>::try_from(result.replicas)
        .map_err(|replicas| anyhow::anyhow!("{} replicas, not 1", replicas.len()))?;
    assert_eq!(replica.started.addrs[0].ip(), hosts[0].addr);
    let clients = result.clients;
    let latency_us = clients
        .latency_us
        .ok_or_else(|| anyhow::anyhow!("the clients sent no latency histogram"))?;
    Ok(Run {
        clients: clients.report,
        replica: replica.report,
        latency_us,
        pids: vec![replica.pid, clients.pid],
    })
}

/// The hosts are the namespaces, veths and bridge of `prefix`, with
/// addresses 10.77.k.2 and up, the bridge on 10.77.k.1.
fn check_layout(prefix: &str, hosts: &[Host]) {
    let mut expected = BTreeSet::from([format!("{prefix}-br")]);
    for (i, host) in hosts.iter().enumerate() {
        let name = format!("{prefix}-{i}");
        assert_eq!(namespace(host), name);
        let octets = match host.addr {
            std::net::IpAddr::V4(addr) => addr.octets(),
            other => panic!("{host}: not IPv4: {other}"),
        };
        assert_eq!(octets[..2], [10, 77], "{host}");
        assert_eq!(usize::from(octets[3]), i + 2, "{host}");
        assert_eq!(host.name, format!("netns {name} ({})", host.addr));
        let addrs = run_ok(
            "ip",
            &["-n", &name, "-o", "-4", "addr", "show", "dev", "eth0"],
        );
        assert!(
            addrs.contains(&format!("{}/24", host.addr)),
            "{host}: {addrs}"
        );
        let lo = run_ok("ip", &["-n", &name, "-o", "link", "show", "dev", "lo"]);
        assert!(lo.contains("UP"), "{host}: lo is down: {lo}");
        expected.insert(name.clone());
    }
    let bridge = run_ok(
        "ip",
        &["-o", "-4", "addr", "show", "dev", &format!("{prefix}-br")],
    );
    let gateway = format!("10.77.{}.1/24", octet(&hosts[0], 2));
    assert!(bridge.contains(&gateway), "bridge: {bridge}");
    assert_eq!(ours(prefix), expected);
}

fn octet(host: &Host, i: usize) -> u8 {
    match host.addr {
        std::net::IpAddr::V4(addr) => addr.octets()[i],
        std::net::IpAddr::V6(_) => panic!("{host}: not IPv4"),
    }
}

fn namespace(host: &Host) -> &str {
    match &host.launcher {
        Launcher::Netns { namespace } => namespace,
        other => panic!("{host}: launcher {other:?}"),
    }
}

/// The runner stopped its nodes before cleanup: no process is left in the
/// namespaces for cleanup to kill.
fn assert_no_processes_in(hosts: &[Host]) {
    for host in hosts {
        let pids = namespace_pids(namespace(host));
        assert!(pids.is_empty(), "{host}: processes {pids:?} still inside");
    }
}

/// No namespace, veth or bridge named `<prefix>-*`, and none of `pids` runs.
fn assert_nothing_left(prefix: &str, pids: &[u32]) {
    let left = ours(prefix);
    assert!(left.is_empty(), "left behind: {left:?}");
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "node process {pid} still exists"
        );
    }
}

/// Namespaces and root-namespace links named `<prefix>-*`.
fn ours(prefix: &str) -> BTreeSet<String> {
    let ours = format!("{prefix}-");
    let namespaces = run_ok("ip", &["netns", "list"]);
    let links = run_ok("ip", &["-o", "link", "show"]);
    let namespaces = namespaces
        .lines()
        .filter_map(|l| l.split_whitespace().next());
    let links = links.lines().filter_map(|line| {
        let name = line.split_whitespace().nth(1)?.trim_end_matches(':');
        name.split('@').next()
    });
    namespaces
        .chain(links)
        .filter(|name| name.starts_with(&ours))
        .map(str::to_string)
        .collect()
}

fn namespace_pids(namespace: &str) -> Vec<String> {
    run_ok("ip", &["netns", "pids", namespace])
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A namespace the test made by hand, deleted on drop (also on panic).
struct Stranger(String);

impl Stranger {
    fn add(name: String) -> Stranger {
        run_ok("ip", &["netns", "add", &name]);
        Stranger(name)
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run_ok(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A sweep of several points and trials through the runner itself, both
/// protocols: every point's replicas bind the ports of a node that has just
/// exited on the same host, which failed at the second point while a socket
/// closed by io_uring stayed bound for a few tens of milliseconds.
#[test]
fn a_sweep_of_several_points_and_trials_across_namespaces() {
    let test = "a_sweep_of_several_points_and_trials_across_namespaces";
    let _turn = serial();
    if !namespaces_available(test) {
        return;
    }
    let mut provider = NetnsHosts::new(NetemProfile::default()).unwrap();
    let prefix = provider.prefix();
    common::sweep_points_and_trials(&mut provider, &String::new);
    provider.cleanup().unwrap();
    assert_nothing_left(&prefix, &[]);
}
