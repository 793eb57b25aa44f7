//! Ssh hosts against a real OpenSSH server that each test starts on
//! loopback ([`sshd::TestSshd`]): a whole unreplicated run on two "remote"
//! machines, cleanup of what the run leaves there, and the errors for a
//! machine that cannot be reached or does not let us in. Skipped, with a
//! message, where `/usr/sbin/sshd` is not installed.
//!
//! Both machines are this one, reached as 127.0.0.1, so the test can look at
//! "remote" processes and files directly; their nodes bind the address the
//! hosts file's second field gives, 127.0.0.2 and up. Ssh hosts give
//! replicas fixed ports ([`runner::run::replica_port`]), so tests that may
//! run at once use addresses of their own.

mod common;
#[path = "common/sshd.rs"]
mod sshd;

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use runner::control::NodeProcess;
use runner::hosts::ssh::SshHosts;
use runner::hosts::{Host, Launcher, Provider};
use sshd::TestSshd;

const CLIENTS: u32 = 100;
const DURATION: Duration = Duration::from_secs(2);

/// The provider for `sshd`, with one machine per node address.
fn provider(sshd: &TestSshd, node_addrs: &[&str]) -> SshHosts {
    let specs: Vec<String> = node_addrs
        .iter()
        .map(|addr| format!("127.0.0.1:{} {addr}", sshd.port))
        .collect();
    SshHosts::from_specs(&specs)
        .unwrap()
        .identity(&sshd.client_key)
        .known_hosts(&sshd.known_hosts)
}

/// Pattern for the node processes running `remote_node` (not the local ssh
/// processes, whose command lines hold the path too).
fn node_pattern(remote_node: &Path) -> String {
    format!("^{} serve", remote_node.display())
}

/// Pids of processes on this machine whose command line matches `pattern`.
fn processes_matching(pattern: &str) -> Vec<String> {
    let output = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .expect("running pgrep");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn an_unreplicated_run_on_two_ssh_hosts_and_its_cleanup() {
    let Some(sshd) = TestSshd::start() else {
        return;
    };
    let node_binary = common::node_binary();
    let mut provider = provider(&sshd, &["127.0.0.7", "127.0.0.8"]);
    let hosts = match provider.hosts(2, node_binary) {
        Ok(hosts) => hosts,
        Err(error) => panic!("{error:#}\nsshd log:\n{}", sshd.log()),
    };
    let run_dir = provider.run_dir().to_path_buf();
    let remote_node = run_dir.join("node");
    assert_eq!(hosts.len(), 2);
    assert_eq!(
        hosts[0].name,
        format!("ssh 127.0.0.1:{} (127.0.0.7)", sshd.port)
    );
    for host in &hosts {
        let Launcher::Ssh { remote_binary, .. } = &host.launcher else {
            panic!("{host} is not an ssh host: {:?}", host.launcher);
        };
        assert_eq!(remote_binary, &remote_node);
    }
    // One machine, one copy, with its mode.
    assert_eq!(
        std::fs::read(&remote_node).unwrap(),
        std::fs::read(node_binary).unwrap()
    );
    assert!(Command::new(&remote_node).arg("--help").output().is_ok());

    // One point through the runner's engine: the replica on the first
    // machine, the clients on the second.
    let experiment = common::unreplicated(CLIENTS, DURATION);
    let point = common::only_point(&experiment);
    let result = runner::run::run_point(&experiment, &point, 0, &hosts, node_binary)
        .unwrap_or_else(|e| panic!("{e:#}\nsshd log:\n{}", sshd.log()));
    let replica = &result.replicas[0];
    assert_eq!(replica.started.addrs[0].ip(), hosts[0].addr);
    let (clients_report, replica_report) = (&result.clients.report, &replica.report);
    assert!(clients_report.ops > 0, "no operation: {clients_report:?}");
    assert!(clients_report.ops <= replica_report.ops);
    // The local ssh exited with the remote node's status, 0: `finish` waits
    // for that.
    println!(
        "{} operations in {} s over ssh",
        clients_report.ops,
        DURATION.as_secs()
    );

    // A node whose local ssh is killed, as when the runner fails or is
    // interrupted, keeps running remotely: nothing tells it to stop.
    let pattern = node_pattern(&remote_node);
    let stray = NodeProcess::spawn_on(&hosts[0], node_binary).unwrap();
    drop(stray);
    thread::sleep(Duration::from_millis(200));
    assert!(
        !processes_matching(&pattern).is_empty(),
        "the stray node died by itself, so this test shows nothing"
    );
    provider.cleanup().unwrap();
    wait_until_gone(&pattern);
    assert!(!run_dir.exists(), "{} is still there", run_dir.display());
    // Idempotent.
    provider.cleanup().unwrap();
    drop(provider);
}

/// Waits (briefly: `pkill -KILL` is quick) until no process matches.
fn wait_until_gone(pattern: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_matching(pattern);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes {left:?} still run {pattern}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dropping_the_provider_stops_the_remote_nodes() {
    let Some(sshd) = TestSshd::start() else {
        return;
    };
    let mut provider = provider(&sshd, &["127.0.0.4"]);
    let hosts = provider.hosts(1, common::node_binary()).unwrap();
    let run_dir = provider.run_dir().to_path_buf();
    let pattern = node_pattern(&run_dir.join("node"));
    let node = NodeProcess::spawn_on(&hosts[0], common::node_binary()).unwrap();
    assert_eq!(processes_matching(&pattern).len(), 1);
    drop(provider);
    wait_until_gone(&pattern);
    assert!(!run_dir.exists(), "{} is still there", run_dir.display());
    drop(node);
}

#[test]
fn a_host_that_refuses_the_connection_is_named_quickly() {
    if Command::new("ssh").arg("-V").output().is_err() {
        common::skip(
            "a_host_that_refuses_the_connection_is_named_quickly",
            "no `ssh` on PATH (install openssh-client to run it)",
            true,
        );
        return;
    }
    // Nobody listens there (unless someone takes the port in between).
    let port = sshd::free_port();
    let mut provider = SshHosts::from_specs(&[format!("pbench@127.0.0.1:{port}")]).unwrap();
    let start = Instant::now();
    // Any existing file will do as the binary: it never gets copied.
    let binary = std::env::current_exe().unwrap();
    let message = format!("{:#}", provider.hosts(3, &binary).unwrap_err());
    println!("{message}");
    assert!(
        message.starts_with(&format!("ssh pbench@127.0.0.1:{port}: connection refused")),
        "{message}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "took {:?}",
        start.elapsed()
    );
    // Nothing was set up, so there is nothing to clean.
    provider.cleanup().unwrap();
}

#[test]
fn a_host_that_refuses_the_key_is_named() {
    let Some(sshd) = TestSshd::start() else {
        return;
    };
    let mut provider = SshHosts::from_specs(&[format!("127.0.0.1:{}", sshd.port)])
        .unwrap()
        .identity(&sshd.stranger_key)
        .known_hosts(&sshd.known_hosts);
    let message = format!(
        "{:#}",
        provider.hosts(1, common::node_binary()).unwrap_err()
    );
    println!("{message}");
    assert!(
        message.starts_with(&format!(
            "ssh 127.0.0.1:{}: permission denied (check the user and the identity file)",
            sshd.port
        )),
        "{message}"
    );
}

/// The hosts a provider hands out for more nodes than machines: round robin.
#[test]
fn nodes_go_round_robin_over_the_machines() {
    let Some(sshd) = TestSshd::start() else {
        return;
    };
    let mut provider = provider(&sshd, &["127.0.0.5", "127.0.0.6"]);
    let hosts: Vec<Host> = provider.hosts(5, common::node_binary()).unwrap();
    let addrs: Vec<String> = hosts.iter().map(|h| h.addr.to_string()).collect();
    assert_eq!(
        addrs,
        [
            "127.0.0.5",
            "127.0.0.6",
            "127.0.0.5",
            "127.0.0.6",
            "127.0.0.5"
        ]
    );
    provider.cleanup().unwrap();
}

/// A sweep of several points and trials through the runner itself, both
/// protocols, on two ssh hosts: every point starts its nodes on machines
/// whose previous nodes have just exited (here, slow ssh teardown happens
/// to hide the port a closed io_uring socket keeps bound for a while, which
/// the namespace test shows).
#[test]
fn a_sweep_of_several_points_and_trials_on_ssh_hosts() {
    let Some(sshd) = TestSshd::start() else {
        return;
    };
    let mut provider = provider(&sshd, &["127.0.0.2", "127.0.0.3"]);
    common::sweep_points_and_trials(&mut provider, &|| format!("sshd log:\n{}", sshd.log()));
    provider.cleanup().unwrap();
}
