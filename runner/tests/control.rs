//! The control channel of `node serve`, against the real node binary: every
//! bad input gets one clear `Error` event and a nonzero exit, and the node
//! never hangs. None of these start a protocol node, so they need no runtime.

mod common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use runner::control::{Control, NodeProcess};
use serde_json::json;
use wire::control::auth::ControlSecret;
use wire::control::{
    AppConfig, CONTROL_REFUSED_COUNTER, ClientsConfig, Command, CommandFrame, DurableConfig, Event,
    Idle, Load, NodeConfig, Role, Stage, ThreadMap, ThreadSpec, TransportKind, Workload,
    write_frame,
};

/// Longest any step may take; far above what a healthy node needs.
const TIMEOUT: Duration = Duration::from_secs(20);

fn localhost() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn connected_node() -> (NodeProcess, Control) {
    let node = NodeProcess::spawn(common::node_binary(), localhost()).unwrap();
    let control = node.connect().unwrap();
    (node, control)
}

fn replica_config() -> NodeConfig {
    NodeConfig {
        protocol: "unreplicated".to_string(),
        role: Role::Replica { id: 0 },
        replicas: vec!["127.0.0.1:0".parse().unwrap()],
        public_keys: Vec::new(),
        secret_key: None,
        app: AppConfig::Null,
        threads: ThreadMap::single(None),
        share: None,
        idle: Idle::SpinThenBlock { spin_us: 10 },
        transport: TransportKind::Auto,
        report_interval_ms: 100,
        settings: Vec::new(),
        durable: DurableConfig::default(),
        link: Default::default(),
    }
}

/// A frame around any JSON, as a hand-written or foreign runner sends it.
fn frame(value: &serde_json::Value) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_frame(&mut bytes, value).unwrap();
    bytes
}

/// Waits for the node's one `Error` event, then for it to exit with status 1;
/// returns the error line, which must also be on the node's stderr.
fn expect_error(mut node: NodeProcess, mut control: Control) -> String {
    let line = match control.next_event(TIMEOUT) {
        Ok(Some(Event::Error(line))) => line,
        other => panic!("expected an Error event, got {other:?}"),
    };
    assert!(!line.contains('\n'), "one line: {line}");
    control.close();
    let status = node.wait(TIMEOUT).unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
    let stderr = node.stderr_tail();
    assert!(stderr.contains(&line), "stderr {stderr:?} lacks {line:?}");
    line
}

/// Waits for the node to exit with status 1 without an event (the runner
/// hung up); returns its stderr.
fn expect_failed_exit(mut node: NodeProcess) -> String {
    let status = node.wait(TIMEOUT).unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
    node.stderr_tail()
}

#[test]
fn garbage_bytes_get_an_error_and_a_nonzero_exit() {
    let (node, mut control) = connected_node();
    control
        .send_raw(b"GET / HTTP/1.1\r\nHost: node\r\n\r\n")
        .unwrap();
    let line = expect_error(node, control);
    assert!(
        line.contains(&format!(
            "control frame of 1195725856 bytes exceeds the maximum of {}",
            wire::control::CONTROL_FRAME_MAX
        )),
        "{line}"
    );
}

#[test]
fn a_frame_that_is_not_json_is_named_as_such() {
    let (node, mut control) = connected_node();
    control.send_raw(b"\x00\x00\x00\x08\x00garbage").unwrap();
    let line = expect_error(node, control);
    assert!(line.contains("control message is not JSON"), "{line}");
}

#[test]
fn another_version_is_refused_naming_both_versions() {
    let (node, mut control) = connected_node();
    control
        .send_raw(&frame(&json!({"version": 999, "command": "Stop"})))
        .unwrap();
    let line = expect_error(node, control);
    assert!(line.contains("version 999"), "{line}");
    assert!(line.contains("speaks version 1"), "{line}");
}

#[test]
fn a_missing_field_is_named() {
    let mut value =
        serde_json::to_value(CommandFrame::new(Command::Run(Box::new(replica_config())))).unwrap();
    value["command"]["Run"]
        .as_object_mut()
        .unwrap()
        .remove("replicas")
        .unwrap();
    let (node, mut control) = connected_node();
    control.send_raw(&frame(&value)).unwrap();
    let line = expect_error(node, control);
    assert!(line.contains("missing field `replicas`"), "{line}");
}

#[test]
fn an_invalid_config_is_refused() {
    let config = NodeConfig {
        role: Role::Replica { id: 3 },
        ..replica_config()
    };
    let (node, mut control) = connected_node();
    let error = control.run(&config).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "node 127.0.0.1 (replica 3): invalid config: replica id 3 is out of range"
        ),
        "{error}"
    );
    // The error quotes the node's stderr.
    assert!(
        error.contains("\n  | error: invalid config: replica id 3"),
        "{error}"
    );
    assert_eq!(expect_failed_exit(node).lines().count(), 1);
}

#[test]
fn an_unknown_protocol_is_refused() {
    let config = NodeConfig {
        protocol: "paxos-made-up".to_string(),
        ..replica_config()
    };
    let (node, mut control) = connected_node();
    control.send(Command::Run(Box::new(config))).unwrap();
    let line = expect_error(node, control);
    assert!(
        line.contains("unknown protocol \"paxos-made-up\"; known: unreplicated"),
        "{line}"
    );
}

#[test]
fn stop_before_run_is_refused() {
    let (node, mut control) = connected_node();
    control.send(Command::Stop).unwrap();
    let line = expect_error(node, control);
    assert_eq!(line, "expected Run as the first command, got Stop");
}

#[test]
fn a_runner_that_hangs_up_mid_frame_ends_the_node() {
    let mut bytes = Vec::new();
    write_frame(&mut bytes, &CommandFrame::new(Command::Stop)).unwrap();
    let (node, mut control) = connected_node();
    control.send_raw(&bytes[..bytes.len() - 2]).unwrap();
    control.close();
    let stderr = expect_failed_exit(node);
    assert!(
        stderr.contains("closed in the middle of a frame"),
        "{stderr}"
    );
}

#[test]
fn a_runner_that_hangs_up_at_once_ends_the_node() {
    let (node, control) = connected_node();
    control.close();
    let stderr = expect_failed_exit(node);
    assert!(
        stderr.contains("the runner hung up before sending a command"),
        "{stderr}"
    );
}

#[test]
fn a_silent_runner_does_not_hang_the_node() {
    let (node, control) = connected_node();
    // The node gives up on the first command after 10 s.
    let line = expect_error(node, control);
    assert!(line.contains("no whole command within 10 s"), "{line}");
}

#[test]
fn a_host_that_cannot_be_bound_is_an_error_naming_the_node() {
    // 192.0.2.0/24 is reserved for documentation: never a local address.
    let error = NodeProcess::spawn(common::node_binary(), "192.0.2.1".parse().unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("node 192.0.2.1: closed its stdout before listening"),
        "{error}"
    );
    assert!(
        error.contains("| error: listening on 192.0.2.1:0: Cannot assign requested address"),
        "{error}"
    );
}

#[test]
fn the_listening_line_names_the_port() {
    let node = NodeProcess::spawn(common::node_binary(), localhost()).unwrap();
    let addr = node.control_addr();
    assert_eq!(addr.ip(), localhost());
    assert_ne!(addr.port(), 0);
    // The node serves one connection; dropping the handle kills it.
}

/// Runs a replica on `control` to its final report: proof that the runner
/// drives the node.
fn run_to_the_end(mut node: NodeProcess, mut control: Control) -> wire::control::FinalReport {
    control.run(&replica_config()).unwrap();
    let report = control.stop().unwrap();
    control.close();
    node.wait_success(TIMEOUT).unwrap();
    report
}

/// A peer without the node's secret gets nothing: its proof is refused and
/// its connection closed, and the runner still connects afterwards.
#[test]
fn a_connection_without_the_secret_is_refused_and_closed() {
    let node = NodeProcess::spawn(common::node_binary(), localhost()).unwrap();
    for _ in 0..2 {
        let stranger = ControlSecret::random().unwrap();
        let error = node.connect_with(&stranger).unwrap_err().to_string();
        assert!(error.contains("control handshake:"), "{error}");
    }
    // Nor can a peer skip the handshake and send a Run frame at once.
    let mut raw = TcpStream::connect(node.control_addr()).unwrap();
    let mut bytes = Vec::new();
    write_frame(
        &mut bytes,
        &CommandFrame::new(Command::Run(Box::new(replica_config()))),
    )
    .unwrap();
    let _ = raw.write_all(&bytes);
    raw.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    // The challenge, and nothing after it: the connection was closed.
    assert_eq!(got.len(), 8 + 32, "{got:?}");
    assert_eq!(&got[..8], b"NODECTL1");

    let control = node.connect().unwrap();
    let report = run_to_the_end(node, control);
    assert_eq!(report.counter(CONTROL_REFUSED_COUNTER), 3);
}

/// How long after the node's handshake deadline (5 s from accept) a peer
/// may still be connected: scheduling slack, far below what the peers below
/// would hold the connection for if each byte renewed a timeout (32 s).
const DEADLINE_SLACK: Duration = Duration::from_secs(3);

/// A peer that trickles one byte a second is cut off at the handshake's
/// deadline (5 s), not kept alive by each byte; one that connects and sends
/// nothing is cut off there too; and the runner, connecting while both are
/// pending, gets in at once and runs the node.
#[test]
fn a_slowloris_and_a_silent_peer_are_cut_off_and_do_not_lock_the_runner_out() {
    let mut node = NodeProcess::spawn(common::node_binary(), localhost()).unwrap();
    let addr = node.control_addr();
    let slowloris = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        let mut hello = [0; 40];
        stream.read_exact(&mut hello).unwrap();
        // Reading for a second between bytes: the node's answer (none
        // expected) or its hang-up.
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        while start.elapsed() < Duration::from_secs(40) {
            if stream.write_all(&[0]).is_err() {
                break;
            }
            match stream.read(&mut [0]) {
                Ok(0) => break,
                Ok(_) => panic!("the node answered a slowloris"),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        start.elapsed()
    });
    let silent = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        stream
            .set_read_timeout(Some(Duration::from_secs(40)))
            .unwrap();
        let mut got = Vec::new();
        let _ = stream.read_to_end(&mut got);
        (start.elapsed(), got.len())
    });
    // Both are connected (and in their handshakes) before the runner.
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let mut control = node.connect().unwrap();
    let connected = start.elapsed();
    assert!(
        connected < Duration::from_secs(2),
        "the runner waited {connected:?} behind the other peers"
    );
    control.run(&replica_config()).unwrap();

    // The node keeps running while the peers are cut off.
    let limit = Duration::from_secs(5) + DEADLINE_SLACK;
    let trickled = slowloris.join().unwrap();
    assert!(trickled < limit, "the slowloris held on for {trickled:?}");
    let (silent_for, got) = silent.join().unwrap();
    assert!(
        silent_for < limit,
        "the silent peer held on for {silent_for:?}"
    );
    assert_eq!(got, 40, "the magic and the challenge, then the hang-up");

    let report = control.stop().unwrap();
    control.close();
    node.wait_success(TIMEOUT).unwrap();
    assert_eq!(report.counter(CONTROL_REFUSED_COUNTER), 2);
    // Each refusal is on the node's stderr, with why.
    let stderr = node.stderr_tail();
    assert_eq!(
        stderr
            .matches("the handshake did not finish by its deadline")
            .count(),
        2,
        "{stderr}"
    );
}

/// A core the host does not have (but below the bound) is an error event
/// from the node, not a panic.
#[test]
fn a_core_the_host_lacks_is_an_error_event() {
    let core = 1000;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > core as usize {
        common::skip(
            "a_core_the_host_lacks_is_an_error_event",
            "this host has core 1000",
            false,
        );
        return;
    }
    let config = NodeConfig {
        threads: ThreadMap::single(Some(core)),
        ..replica_config()
    };
    let (mut node, mut control) = connected_node();
    // The thread fails as it starts: before or just after `Started`.
    let error = match control.run(&config) {
        Err(error) => error.to_string(),
        Ok(_) => match control.next_event(TIMEOUT) {
            Ok(Some(Event::Error(line))) => line,
            other => panic!("expected an Error event, got {other:?}"),
        },
    };
    assert!(error.contains("cannot pin to core 1000"), "{error}");
    control.close();
    let status = node.wait(TIMEOUT).unwrap();
    assert_eq!(status.code(), Some(1), "{status}");
    assert!(!error.contains("panic"), "{error}");
}

/// A node started without a secret on its stdin refuses to listen.
#[test]
fn a_node_without_a_secret_does_not_listen() {
    let output = std::process::Command::new(common::node_binary())
        .args(["serve", "--port", "0", "--host", "127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty(), "it listened");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no control secret on stdin"), "{stderr}");
}

/// What once aborted a node on a 96 GB allocation (10^9 clients), ate its
/// memory until it was killed (2·10^7), panicked inside libc (a core of
/// 1024) or passed validation only to trip an assertion (256 replicas):
/// each is one clear error event now.
#[test]
fn configs_beyond_the_bounds_get_one_error_each() {
    let clients = |count: u32| NodeConfig {
        role: Role::Clients(ClientsConfig {
            first_id: 1,
            count,
            threads: 1,
            cores: Vec::new(),
            bind: localhost(),
            load: Load::Closed,
            workload: Workload::Null {
                op_size: 16,
                reply_size: 0,
            },
            resend_ms: 100,
            warmup_ms: 0,
            measure_ms: None,
            key_seed: Vec::new(),
            slow_op_ms: wire::control::SLOW_OP_MS_DEFAULT,
        }),
        replicas: vec!["127.0.0.1:9".parse().unwrap()],
        ..replica_config()
    };
    let mut wide = ThreadMap::per_stage();
    wide.threads.extend((0..996).map(|_| ThreadSpec {
        stages: vec![Stage::Verify],
        core: None,
    }));
    let cases = [
        (
            clients(1_000_000_000),
            "clients: count is 1000000000; at most 100000",
        ),
        (
            clients(20_000_000),
            "clients: count is 20000000; at most 100000",
        ),
        (
            NodeConfig {
                threads: wide,
                ..replica_config()
            },
            "the thread map's thread count is 1000; at most 64",
        ),
        (
            NodeConfig {
                threads: ThreadMap::single(Some(1024)),
                ..replica_config()
            },
            "a thread's core is 1024; at most 1023",
        ),
        (
            NodeConfig {
                replicas: (0..256)
                    .map(|i| std::net::SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
                    .collect(),
                ..replica_config()
            },
            "`replicas` names 256 nodes: at most 32",
        ),
    ];
    for (config, expected) in cases {
        let (node, mut control) = connected_node();
        let error = control.run(&config).unwrap_err().to_string();
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        expect_failed_exit(node);
    }
}
