//! The control channel of `node serve`, against the real node binary: every
//! bad input gets one clear `Error` event and a nonzero exit, and the node
//! never hangs. None of these start a protocol node, so they need no runtime.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use runner::control::{Control, NodeProcess};
use serde_json::json;
use wire::control::{
    AppConfig, Command, CommandFrame, Event, Idle, NodeConfig, Role, ThreadMap, TransportKind,
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
        idle: Idle::SpinThenBlock { spin_us: 10 },
        transport: TransportKind::Auto,
        report_interval_ms: 100,
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
        line.contains("control frame of 1195725856 bytes exceeds the maximum of 1048576"),
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
    assert!(line.contains("no command within 10 s"), "{line}");
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
