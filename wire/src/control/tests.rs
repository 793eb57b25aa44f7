use std::io::{self, Read};
use std::net::SocketAddr;

use serde::Serialize;

use super::*;
use crate::crypto::PublicKey;

fn replica_config() -> NodeConfig {
    NodeConfig {
        protocol: "unreplicated".to_string(),
        role: Role::Replica { id: 0 },
        replicas: vec!["127.0.0.2:0".parse().unwrap()],
        public_keys: Vec::new(),
        secret_key: None,
        app: AppConfig::Null,
        threads: ThreadMap::single(Some(0)),
        share: None,
        idle: Idle::Busy,
        transport: TransportKind::Auto,
        report_interval_ms: 500,
        settings: Vec::new(),
        durable: DurableConfig::default(),
        link: Default::default(),
    }
}

fn clients_config() -> NodeConfig {
    NodeConfig {
        role: Role::Clients(ClientsConfig {
            first_id: 0,
            count: 100,
            threads: 1,
            cores: vec![1],
            bind: "127.0.0.3".parse().unwrap(),
            load: Load::Closed,
            workload: Workload::Kv(KvWorkload {
                keys: 1000,
                value_size: 100,
                read_ratio: 0.9,
                distribution: KeyDistribution::Zipf { exponent: 0.99 },
            }),
            resend_ms: 100,
            warmup_ms: 0,
            measure_ms: None,
            key_seed: Vec::new(),
            slow_op_ms: SLOW_OP_MS_DEFAULT,
        }),
        replicas: vec!["127.0.0.2:7000".parse().unwrap()],
        ..replica_config()
    }
}

fn frame(msg: &impl Serialize) -> Vec<u8> {
    let mut buf = Vec::new();
    write_frame(&mut buf, msg).unwrap();
    buf
}

/// The body of a frame carrying `value`, as a hand-written peer sends it.
fn json(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn run_json() -> serde_json::Value {
    serde_json::to_value(CommandFrame::new(Command::Run(Box::new(replica_config())))).unwrap()
}

#[test]
fn frames_round_trip_and_end_cleanly() {
    let run = CommandFrame::new(Command::Run(Box::new(clients_config())));
    let stop = CommandFrame::new(Command::Stop);
    let mut bytes = frame(&run);
    bytes.extend(frame(&stop));
    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
    assert_eq!(bytes[4], b'{', "JSON after a 4-byte big-endian length");

    let mut r = &bytes[..];
    let first = read_frame(&mut r).unwrap().unwrap();
    assert_eq!(first.len(), len);
    assert_eq!(decode_command(&first).unwrap(), run.command);
    let second = read_frame(&mut r).unwrap().unwrap();
    assert_eq!(decode_command(&second).unwrap(), Command::Stop);
    assert!(read_frame(&mut r).unwrap().is_none());
}

#[test]
fn events_round_trip() {
    let events = [
        Event::Started(Started {
            transport: TransportKind::IoUring,
            addrs: vec!["127.0.0.2:7000".parse().unwrap()],
            parameters: vec![("batch size max".into(), "256".into())],
        }),
        Event::Interval(IntervalReport {
            elapsed_ms: 500,
            ops: 10,
            latency_us_p50: 20,
            latency_us_p99: 30,
            leader: Some(1),
            executed: Some(7),
            slow_ops: 1,
        }),
        Event::Finished(FinalReport {
            elapsed_ms: 2000,
            ops: 100,
            measured_ops: 90,
            measured_ms: 1900,
            latency_histogram: vec![1, 2, 3],
            counters: vec![("decode: malformed".to_string(), 3)],
            cpu_ms: 7,
            idle_spin_ms: 3,
            completions: Completions {
                start_us: 1500,
                bin_ms: COMPLETION_BIN_MS,
                counts: vec![0, 4, 96],
            },
            history: Some(crate::history::History {
                keys: vec![0, 5],
                ops: vec![crate::history::HistoryOp {
                    client: 3,
                    op: vec![1, 2],
                    invoked_ns: 10,
                    completed: Some((20, vec![3])),
                }],
                cut_ns: None,
            }),
        }),
        Event::Error("bind failed".to_string()),
    ];
    for event in events {
        let bytes = frame(&EventFrame::new(event.clone()));
        let body = read_frame(&mut &bytes[..]).unwrap().unwrap();
        assert_eq!(decode_event(&body).unwrap(), event);
    }
}

#[test]
fn truncated_frames_are_errors() {
    let bytes = frame(&CommandFrame::new(Command::Stop));
    for cut in [1, 3, 4, bytes.len() - 1] {
        let err = read_frame(&mut &bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { got, .. } if got == cut),
            "{err}"
        );
    }
}

#[test]
fn oversized_frame_is_refused_before_reading_its_body() {
    // "GET " as a length is about 1.2 GB; nothing follows, so reading the
    // body would report truncation instead.
    let err = read_frame(&mut &b"GET / HTTP/1.1\r\n"[..]).unwrap_err();
    assert!(
        matches!(err, FrameError::TooLarge { len: 0x4745_5420 }),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "1195725856 bytes exceeds the maximum of {CONTROL_FRAME_MAX}"
        )),
        "{message}"
    );

    let at_limit = (CONTROL_FRAME_MAX as u32 + 1).to_be_bytes();
    assert!(matches!(
        read_frame(&mut &at_limit[..]),
        Err(FrameError::TooLarge { .. })
    ));
}

#[test]
fn oversized_message_is_not_written() {
    let huge = Event::Error("x".repeat(CONTROL_FRAME_MAX));
    let mut buf = Vec::new();
    let err = write_frame(&mut buf, &EventFrame::new(huge)).unwrap_err();
    assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    assert!(buf.is_empty());
}

#[test]
fn read_timeout_is_its_own_error() {
    struct Slow;
    impl Read for Slow {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }
    assert!(matches!(read_frame(&mut Slow), Err(FrameError::TimedOut)));
}

#[test]
fn another_version_is_refused_naming_both() {
    let mut value = run_json();
    value["version"] = 999.into();
    let err = decode_command(&json(value)).unwrap_err();
    assert!(matches!(err, ControlError::Version { got: 999 }), "{err}");
    let message = err.to_string();
    assert!(message.contains("version 999"), "{message}");
    assert!(message.contains("version 1"), "{message}");
}

#[test]
fn version_is_checked_before_the_rest() {
    // Version 2 may well have other fields; say "version", not "missing field".
    let body = json(serde_json::json!({"version": 2, "order": "Halt"}));
    assert!(matches!(
        decode_command(&body),
        Err(ControlError::Version { got: 2 })
    ));
    let body = json(serde_json::json!({"command": "Stop"}));
    assert!(matches!(
        decode_command(&body),
        Err(ControlError::MissingVersion)
    ));
    let body = json(serde_json::json!({"version": "1", "command": "Stop"}));
    let err = decode_command(&body).unwrap_err();
    assert!(
        matches!(&err, ControlError::BadVersion(v) if v == "\"1\""),
        "{err}"
    );
    assert!(matches!(
        decode_command(b"[1, 2]"),
        Err(ControlError::MissingVersion)
    ));
}

#[test]
fn missing_field_is_named() {
    let mut value = run_json();
    value["command"]["Run"]
        .as_object_mut()
        .unwrap()
        .remove("replicas");
    let err = decode_command(&json(value)).unwrap_err();
    assert!(matches!(err, ControlError::Invalid { .. }), "{err}");
    assert_eq!(err.to_string(), "invalid command: missing field `replicas`");
}

#[test]
fn garbage_is_not_json() {
    let err = decode_command(b"\x00\x01garbage").unwrap_err();
    assert!(matches!(err, ControlError::NotJson(_)), "{err}");
    assert!(err.to_string().starts_with("control message is not JSON: "));
    let err = decode_event(b"").unwrap_err();
    assert!(matches!(err, ControlError::NotJson(_)), "{err}");
}

#[test]
fn valid_configs_pass() {
    replica_config().validate().unwrap();
    clients_config().validate().unwrap();
    let mut config = replica_config();
    config.replicas = vec![
        "10.0.0.1:7000".parse().unwrap(),
        "0.0.0.0:0".parse().unwrap(),
        "10.0.0.3:7000".parse().unwrap(),
    ];
    config.replicas.push("10.0.0.4:7000".parse().unwrap());
    config.protocol = "pbft".to_string();
    config.role = Role::Replica { id: 1 };
    config.public_keys = vec![PublicKey([2; 33]); 4];
    config.threads = ThreadMap::per_stage();
    config.settings = vec![("batch_max".to_string(), 10)];
    config.validate().unwrap();
    config.public_keys.pop();
    assert!(matches!(
        config.validate(),
        Err(ConfigError::PublicKeys { keys: 3, .. })
    ));
    config.public_keys.push(PublicKey([2; 33]));
    config.settings = vec![("batch_max".to_string(), 0)];
    let err = config.validate().unwrap_err().to_string();
    assert!(err.starts_with("pbft.batch_max=0: out of range"), "{err}");
    config.settings = vec![("batch_max".to_string(), 1); SETTINGS_MAX + 1];
    assert!(matches!(
        config.validate(),
        Err(ConfigError::TooLarge { .. })
    ));
    config.settings.clear();
    config.replicas.pop();
    config.public_keys.pop();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("3f + 1"), "{err}");
    config.protocol = "raft".to_string();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.starts_with("unknown protocol \"raft\""), "{err}");
}

/// A protocol with a service, as chain replication is: f + 1 replicas, then
/// a master. Signing, so that the keys are checked per node.
static CHAIN: crate::registry::ProtocolSpec = crate::registry::ProtocolSpec {
    name: "chain",
    about: "a test's chain",
    replication: crate::registry::Replication::Chain,
    replicas_max: 8,
    services: &["master"],
    signs: true,
    batches: false,
    rotates_leader: false,
    counters: &[],
    tunables: &[],
};

/// A node of a chain of two replicas and a master, each on its own host.
fn chain_config(id: u8) -> NodeConfig {
    NodeConfig {
        protocol: "chain".to_string(),
        role: Role::Replica { id },
        replicas: (0..3)
            .map(|i| SocketAddr::from(([10, 0, 0, i + 1], 7000)))
            .collect(),
        public_keys: vec![PublicKey([2; 33]); 3],
        ..replica_config()
    }
}

#[test]
fn services_are_listed_after_the_replicas() {
    let chain = |config: &NodeConfig| config.validate_with(Ok(&CHAIN));
    // Both replicas and the master (node 2) are nodes of the group.
    for id in 0..3 {
        chain(&chain_config(id)).unwrap();
    }
    let err = chain(&chain_config(3)).unwrap_err();
    assert_eq!(err, ConfigError::ReplicaIdOutOfRange { id: 3, nodes: 3 });
    // Clients get every node's address too.
    let mut clients = clients_config();
    clients.protocol = "chain".to_string();
    clients.replicas = chain_config(0).replicas;
    clients.public_keys = chain_config(0).public_keys;
    chain(&clients).unwrap();
    // Longer chains, as long as the protocol runs.
    let mut config = chain_config(0);
    config.replicas = (0..9)
        .map(|i| SocketAddr::from(([10, 0, 0, i + 1], 7000)))
        .collect();
    config.public_keys = vec![PublicKey([2; 33]); 9];
    chain(&config).unwrap();
    config.replicas.push("10.0.0.10:7000".parse().unwrap());
    config.public_keys.push(PublicKey([2; 33]));
    let err = chain(&config).unwrap_err().to_string();
    assert_eq!(
        err,
        "chain runs at most 8 replicas, but `replicas` names 9 (besides a master, listed last)"
    );
    // One replica and a master: too short a chain; a master alone: no chain.
    let mut config = chain_config(0);
    config.replicas.pop();
    config.public_keys.pop();
    let err = chain(&config).unwrap_err().to_string();
    assert!(
        err.starts_with("chain runs at least 2 replicas (f + 1 for f >= 1)")
            && err.ends_with("(besides a master, listed last)"),
        "{err}"
    );
    config.replicas.pop();
    config.public_keys.pop();
    let err = chain(&config).unwrap_err().to_string();
    assert_eq!(
        err,
        "chain runs its replicas and then a master, which `replicas` lists last, \
         but `replicas` names only 1 address(es)"
    );
    // A signing protocol's keys are one per node, the master's included.
    let mut config = chain_config(2);
    config.public_keys.pop();
    let err = chain(&config).unwrap_err();
    assert_eq!(err, ConfigError::PublicKeys { keys: 2, nodes: 3 });
    assert_eq!(
        err.to_string(),
        "2 public keys for 3 node(s) in `replicas`: give one per node, or none"
    );
    config.public_keys.clear();
    assert_eq!(
        chain(&config).unwrap_err(),
        ConfigError::PublicKeys { keys: 0, nodes: 3 }
    );
    // Errors name the master as such.
    assert_eq!(
        chain_config(2).node_name_in(Some(&CHAIN)),
        "master (node 2)"
    );
    assert_eq!(chain_config(1).node_name_in(Some(&CHAIN)), "replica 1");
    // The registry's chain replication has its master last too.
    assert_eq!(chain_config(2).node_name(), "master (node 2)");
    assert_eq!(clients.node_name_in(Some(&CHAIN)), "clients 0..100");
}

/// Applies `change` to a valid config and returns the validation error.
fn invalid(base: fn() -> NodeConfig, change: impl FnOnce(&mut NodeConfig)) -> ConfigError {
    let mut config = base();
    change(&mut config);
    let err = config.validate().unwrap_err();
    assert!(!err.to_string().contains('\n'), "one line: {err}");
    err
}

fn clients(config: &mut NodeConfig) -> &mut ClientsConfig {
    match &mut config.role {
        Role::Clients(c) => c,
        Role::Replica { .. } => unreachable!(),
    }
}

fn kv(config: &mut NodeConfig) -> &mut KvWorkload {
    match &mut clients(config).workload {
        Workload::Kv(kv) => kv,
        Workload::Null { .. } => unreachable!(),
    }
}

#[test]
fn replica_side_errors() {
    let err = invalid(replica_config, |c| c.role = Role::Replica { id: 1 });
    assert_eq!(err, ConfigError::ReplicaIdOutOfRange { id: 1, nodes: 1 });
    assert_eq!(
        err.to_string(),
        "replica id 1 is out of range: `replicas` names 1 node(s)"
    );
    assert_eq!(
        invalid(replica_config, |c| c.replicas.clear()),
        ConfigError::NoReplicas
    );
    assert_eq!(
        invalid(replica_config, |c| c.public_keys =
            vec![PublicKey([2; 33]); 2]),
        ConfigError::PublicKeys { keys: 2, nodes: 1 }
    );
    assert_eq!(
        invalid(replica_config, |c| c.report_interval_ms = 0),
        ConfigError::ReportInterval
    );
    let err = invalid(replica_config, |c| {
        c.threads.threads[0].stages.pop();
    });
    assert_eq!(
        err.to_string(),
        "thread map: Send must run on at least one thread"
    );
    let err = invalid(replica_config, |c| {
        c.replicas.push("127.0.0.9:0".parse().unwrap());
    });
    assert!(
        matches!(err, ConfigError::ReplicaAddr { index: 1, .. }),
        "{err}"
    );
    let err = invalid(replica_config, |c| {
        c.replicas = vec!["127.0.0.2:7000".parse().unwrap(); 2];
    });
    assert!(
        matches!(
            err,
            ConfigError::DuplicateReplicaAddr {
                first: 0,
                second: 1,
                ..
            }
        ),
        "{err}"
    );
    let err = invalid(replica_config, |c| {
        c.replicas = vec!["127.0.0.2:7000".parse().unwrap(); 300];
    });
    assert_eq!(err, ConfigError::TooManyReplicas { count: 300 });
}

/// Every count and id has a named upper bound: what once aborted a node
/// (10^9 clients), ate its memory (2·10^7), or panicked in libc (core
/// 1024) is an error naming the field.
#[test]
fn counts_and_ids_have_upper_bounds() {
    let message = |err: ConfigError| err.to_string();
    for count in [1_000_000_000, 20_000_000, CLIENTS_MAX + 1] {
        assert_eq!(
            message(invalid(clients_config, |c| clients(c).count = count)),
            format!("clients: count is {count}; at most {CLIENTS_MAX}")
        );
    }
    let err = invalid(clients_config, |c| {
        clients(c).count = 10_000;
        clients(c).threads = 1000;
    });
    assert!(message(err).starts_with("clients: threads is 1000"));
    let err = invalid(clients_config, |c| clients(c).cores = vec![1024]);
    assert_eq!(message(err), "clients: a core is 1024; at most 1023");
    let err = invalid(replica_config, |c| {
        c.threads = ThreadMap::single(Some(1024));
    });
    assert_eq!(message(err), "a thread's core is 1024; at most 1023");
    let err = invalid(replica_config, |c| {
        let mut map = ThreadMap::per_stage();
        map.threads.extend((0..1000).map(|_| ThreadSpec {
            stages: vec![Stage::Verify],
            core: None,
        }));
        c.threads = map;
    });
    assert_eq!(
        message(err),
        format!("the thread map's thread count is 1004; at most {THREADS_MAX}")
    );
    let err = invalid(replica_config, |c| {
        c.replicas = (0..256)
            .map(|i| SocketAddr::from(([127, 0, 0, 2], 7000 + i)))
            .collect();
    });
    assert_eq!(err, ConfigError::TooManyReplicas { count: 256 });
    let err = invalid(replica_config, |c| c.report_interval_ms = u64::MAX);
    assert!(message(err).starts_with("report_interval_ms is"));
    let err = invalid(clients_config, |c| clients(c).key_seed = vec![0; 1 << 20]);
    assert!(message(err).starts_with("clients: key_seed bytes"));
    let err = invalid(clients_config, |c| clients(c).resend_ms = u64::MAX);
    assert!(message(err).starts_with("clients: resend_ms"));
    let err = invalid(clients_config, |c| clients(c).slow_op_ms = u64::MAX);
    assert!(message(err).starts_with("clients: slow_op_ms"));
    let err = invalid(replica_config, |c| {
        c.idle = Idle::SpinThenBlock { spin_us: u32::MAX };
    });
    assert_eq!(
        message(err),
        format!("idle: spin_us is {}; at most {SPIN_US_MAX}", u32::MAX)
    );
    // A stage twice on one thread, or a thread of a million stages (each
    // would be checked against the others), is refused as such.
    let err = invalid(replica_config, |c| {
        c.threads.threads[0].stages.push(Stage::Verify);
    });
    assert_eq!(
        message(err),
        "thread map: thread 0 lists 5 stages; there are 4"
    );
    let err = invalid(replica_config, |c| {
        c.threads = ThreadMap::per_stage();
        c.threads.threads[1].stages.push(Stage::Verify);
    });
    assert_eq!(message(err), "thread map: thread 1 lists Verify twice");
    let err = invalid(replica_config, |c| {
        c.threads.threads[0].stages = vec![Stage::Verify; 1 << 20];
    });
    assert!(message(err).contains("lists 1048576 stages"));
    let err = invalid(clients_config, |c| {
        c.threads.threads = vec![c.threads.threads[0].clone(); THREADS_MAX + 1];
    });
    assert!(message(err).starts_with("the thread map's thread count is 65"));
}

#[test]
fn clients_side_errors() {
    assert_eq!(
        invalid(clients_config, |c| clients(c).count = 0),
        ConfigError::NoClients
    );
    assert_eq!(
        invalid(clients_config, |c| clients(c).threads = 0),
        ConfigError::NoClientThreads
    );
    assert!(matches!(
        invalid(clients_config, |c| clients(c).threads = 101),
        ConfigError::ClientThreads { .. }
    ));
    assert!(matches!(
        invalid(clients_config, |c| clients(c).first_id = u64::MAX - 5),
        ConfigError::ClientIds { .. }
    ));
    assert_eq!(
        invalid(clients_config, |c| clients(c).resend_ms = 0),
        ConfigError::ResendInterval
    );
    assert_eq!(
        invalid(clients_config, |c| {
            clients(c).load = Load::Open {
                ops_per_sec: 0,
                arrivals: Arrivals::Poisson,
            };
        }),
        ConfigError::OpenLoad
    );
    assert!(matches!(
        invalid(clients_config, |c| clients(c).bind = "::1".parse().unwrap()),
        ConfigError::BindFamily { .. }
    ));
    // Clients need a port to send to; port 0 is only for a replica's own address.
    assert!(matches!(
        invalid(clients_config, |c| c.replicas[0].set_port(0)),
        ConfigError::ReplicaAddr { index: 0, .. }
    ));
    // The thread map is the replica's; clients do not look at it.
    let mut config = clients_config();
    config.threads.threads.clear();
    config.validate().unwrap();
}

#[test]
fn workload_errors() {
    for ratio in [-0.1, 1.5, f64::NAN] {
        let err = invalid(clients_config, |c| kv(c).read_ratio = ratio);
        assert!(matches!(err, ConfigError::ReadRatio(_)), "{err}");
    }
    assert_eq!(
        invalid(clients_config, |c| kv(c).keys = 0),
        ConfigError::NoKeys
    );
    assert!(matches!(
        invalid(clients_config, |c| kv(c).value_size = 65_000),
        ConfigError::ValueSize { .. }
    ));
    for exponent in [-1.0, f64::INFINITY, f64::NAN] {
        let err = invalid(clients_config, |c| {
            kv(c).distribution = KeyDistribution::Zipf { exponent };
        });
        assert!(matches!(err, ConfigError::ZipfExponent(_)), "{err}");
    }
    assert!(matches!(
        invalid(clients_config, |c| kv(c).keys = ZIPF_KEYS_MAX + 1),
        ConfigError::ZipfKeys { .. }
    ));
    let mut config = clients_config();
    kv(&mut config).keys = u64::MAX;
    kv(&mut config).distribution = KeyDistribution::Uniform;
    config.validate().unwrap();
    let err = invalid(clients_config, |c| {
        clients(c).workload = Workload::Null {
            op_size: 65_000,
            reply_size: 0,
        };
    });
    assert_eq!(
        err.to_string(),
        format!("workload: op_size 65000 exceeds the maximum of {OP_SIZE_MAX} bytes")
    );
}

#[test]
fn open_load_arrivals_default_to_poisson_and_round_trip() {
    // A configuration from before `arrivals` existed reads as Poisson.
    let old: Load = serde_json::from_str(r#"{"Open":{"ops_per_sec":5}}"#).unwrap();
    assert_eq!(
        old,
        Load::Open {
            ops_per_sec: 5,
            arrivals: Arrivals::Poisson
        }
    );
    for arrivals in [Arrivals::Poisson, Arrivals::Fixed] {
        let load = Load::Open {
            ops_per_sec: 7,
            arrivals,
        };
        let json = serde_json::to_string(&load).unwrap();
        assert_eq!(serde_json::from_str::<Load>(&json).unwrap(), load);
        assert_eq!(arrivals.to_string().parse::<Arrivals>(), Ok(arrivals));
    }
    assert_eq!(Arrivals::default(), Arrivals::Poisson);
    assert_eq!(
        "uniform".parse::<Arrivals>(),
        Err("\"uniform\": expected `poisson` or `fixed`".to_string())
    );
}

#[test]
fn roles_display_as_names() {
    assert_eq!(Role::Replica { id: 2 }.to_string(), "replica 2");
    assert_eq!(clients_config().role.to_string(), "clients 0..100");
}

#[test]
fn counter_lookup() {
    let report = FinalReport {
        elapsed_ms: 0,
        ops: 0,
        measured_ops: 0,
        measured_ms: 0,
        latency_histogram: Vec::new(),
        counters: vec![("a".to_string(), 2)],
        cpu_ms: 0,
        idle_spin_ms: 0,
        completions: Completions::default(),
        history: None,
    };
    assert_eq!(report.counter("a"), 2);
    assert_eq!(report.counter("b"), 0);
}

/// A node's emulated links are checked with the rest of its configuration,
/// and a configuration without them (an older runner's) reads as none.
#[test]
fn emulated_links_are_validated_and_default_to_none() {
    let mut config = clients_config();
    config.link = LinkEmulation {
        delay_us: 5_000,
        jitter_us: 1_000,
        loss_ppm: 100,
        rate_bps: Some(10_000_000),
        seed: 1,
    };
    assert_eq!(config.validate(), Ok(()));
    config.link.delay_us = LINK_DELAY_US_MAX + 1;
    let error = config.validate().unwrap_err();
    assert!(matches!(error, ConfigError::Link(_)), "{error:?}");
    assert!(error.to_string().contains("delay_us"), "{error}");
    config.link.delay_us = 0;
    config.link.rate_bps = Some(0);
    assert!(matches!(config.validate(), Err(ConfigError::Link(_))));

    let mut json = serde_json::to_value(replica_config()).unwrap();
    json.as_object_mut().unwrap().remove("link");
    let config: NodeConfig = serde_json::from_value(json).unwrap();
    assert!(config.link.is_none());
}

/// Every fault command survives the frame, and its bounds are checked.
#[test]
fn fault_commands_round_trip_and_are_bounded() {
    let faults = [
        Fault::Partition(vec!["127.0.0.3:7001".parse().unwrap()]),
        Fault::Heal,
        Fault::Slow { us: 2000 },
        Fault::Byzantine(Behaviour::Equivocate),
        Fault::Honest,
    ];
    for fault in faults {
        fault.validate().unwrap();
        let mut buf = Vec::new();
        write_frame(&mut buf, &CommandFrame::new(Command::Fault(fault.clone()))).unwrap();
        let frame = read_frame(&mut &buf[..]).unwrap().unwrap();
        assert_eq!(decode_command(&frame).unwrap(), Command::Fault(fault));
    }
    assert!(
        Fault::Slow {
            us: SLOW_US_MAX + 1
        }
        .validate()
        .is_err()
    );
    let many = vec!["127.0.0.3:7001".parse().unwrap(); PARTITION_ADDRS_MAX + 1];
    assert!(Fault::Partition(many).validate().is_err());
    for behaviour in Behaviour::ALL {
        assert_eq!(behaviour.name().parse::<Behaviour>().unwrap(), behaviour);
    }
    assert!("loud".parse::<Behaviour>().is_err());
}

#[test]
fn reports_from_before_the_timeline_still_decode() {
    let interval: IntervalReport = serde_json::from_str(
        r#"{"elapsed_ms":250,"ops":3,"latency_us_p50":10,"latency_us_p99":20}"#,
    )
    .unwrap();
    assert_eq!(interval.slow_ops, 0);
    let report: FinalReport = serde_json::from_str(
        r#"{"elapsed_ms":1,"ops":0,"measured_ops":0,"measured_ms":0,
            "latency_histogram":[],"counters":[],"cpu_ms":0}"#,
    )
    .unwrap();
    assert_eq!(report.completions, Completions::default());
    let mut config = serde_json::to_value(clients_config()).unwrap();
    config["role"]["Clients"]
        .as_object_mut()
        .unwrap()
        .remove("slow_op_ms");
    let config: NodeConfig = serde_json::from_value(config).unwrap();
    let Role::Clients(clients) = config.role else {
        panic!("clients")
    };
    assert_eq!(clients.slow_op_ms, SLOW_OP_MS_DEFAULT);
}

/// The most bins, each with more completions than a node makes in a bin,
/// beside a large histogram and a history at its bounds, still fit in one
/// frame.
#[test]
fn a_full_timeline_fits_in_a_frame() {
    let report = FinalReport {
        elapsed_ms: u64::MAX,
        ops: u64::MAX,
        measured_ops: u64::MAX,
        measured_ms: u64::MAX,
        latency_histogram: vec![255; 40_000],
        counters: vec![("a counter with a long name".to_string(), u64::MAX); 64],
        cpu_ms: u64::MAX,
        idle_spin_ms: u64::MAX,
        completions: Completions {
            start_us: u64::MAX,
            bin_ms: COMPLETION_BIN_MS,
            counts: vec![99_999; COMPLETION_BINS_MAX],
        },
        history: Some(crate::history::at_bounds()),
    };
    let mut bytes = Vec::new();
    write_frame(&mut bytes, &EventFrame::new(Event::Finished(report))).unwrap();
    assert!(bytes.len() <= CONTROL_FRAME_MAX);
}
