//! The default comparison, end to end through the `runner` binary, shortened:
//! it prints the table and writes results.csv, results.json, plot.svg and
//! plot.png, and every row measured something.

use std::path::{Path, PathBuf};
use std::process::Command;

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("runner-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// `runner bench` with `args`, short points, results in `dir`: checks it
/// succeeded, and returns what it printed and its results.json.
fn bench(args: &[&str], dir: &Path) -> (String, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("bench")
        .args(args)
        .args(["--duration", "1200ms", "--warmup", "200ms"])
        .args(["--cooldown", "200ms", "--out"])
        .arg(dir)
        .output()
        .expect("runner runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "runner {args:?} failed:\n{stdout}\n{stderr}"
    );
    let json = serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    (stdout, json)
}

#[test]
fn default_comparison_writes_table_csv_json_and_plots() {
    let dir = out_dir("default");
    let output = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "--duration",
            "1500ms",
            "--warmup",
            "300ms",
            "--cooldown",
            "200ms",
        ])
        .args(["--clients", "1,20", "--out"])
        .arg(&dir)
        .output()
        .expect("runner runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "runner failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("unreplicated"), "no table:\n{stdout}");

    let mut csv = csv::Reader::from_path(dir.join("results.csv")).expect("results.csv");
    let headers = csv.headers().unwrap().clone();
    for column in [
        "protocol",
        "clients",
        "trial",
        "throughput_ops",
        "latency_us_p50",
        "latency_us_p99",
    ] {
        assert!(
            headers.iter().any(|h| h == column),
            "no column {column}: {headers:?}"
        );
    }
    let throughput = headers.iter().position(|h| h == "throughput_ops").unwrap();
    let rows: Vec<_> = csv.records().map(|r| r.unwrap()).collect();
    // Every protocol at both client counts.
    let protocols: std::collections::BTreeSet<_> = rows.iter().map(|r| r[0].to_string()).collect();
    assert!(
        protocols.contains("unreplicated") && protocols.contains("pbft"),
        "{protocols:?}"
    );
    assert_eq!(rows.len(), 2 * protocols.len(), "one row per point");
    for row in &rows {
        let ops: f64 = row[throughput].parse().unwrap();
        assert!(ops > 0.0, "a point measured nothing: {row:?}");
    }

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), rows.len());
    // The nodes' counted cryptography reaches the results, priced at the
    // unit costs measured before the first point, in a table of its own.
    assert!(
        json["provenance"]["unit_costs"]["verify_us"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    for point in json["points"].as_array().unwrap() {
        let count = |name: &str| point["counters"][name].as_u64().unwrap_or(0);
        match point["protocol"].as_str().unwrap() {
            "pbft" | "hotstuff" => {
                assert!(count("crypto: signatures") > 0, "{point}");
                assert!(count("crypto: signature checks") > 0, "{point}");
                assert!(count("crypto: macs") > 0, "{point}");
            }
            _ => assert_eq!(count("crypto: signatures"), 0, "{point}"),
        }
    }
    assert!(
        stdout.contains("cost per operation against the crypto-and-datagram bound"),
        "no bound table:\n{stdout}"
    );
    assert!(
        !json["points"][0]["intervals"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let svg = std::fs::read_to_string(dir.join("plot.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") || svg.starts_with("<?xml"),
        "not an SVG"
    );
    let png = std::fs::read(dir.join("plot.png")).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "not a PNG"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `node` children of process `parent`, oldest first.
fn node_children(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces, so split after it.
        let Some((comm, rest)) = stat.split_once(") ") else {
            continue;
        };
        let ppid: u32 = rest
            .split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if ppid == parent && comm.ends_with("(node") {
            children.push(pid);
        }
    }
    children.sort_unstable();
    children
}

#[test]
fn a_node_killed_mid_run_is_reported_and_every_node_stops() {
    let dir = out_dir("killed");
    let runner = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["bench", "--protocol", "unreplicated", "--clients", "10"])
        .args([
            "--duration",
            "20s",
            "--warmup",
            "100ms",
            "--cooldown",
            "100ms",
            "--out",
        ])
        .arg(&dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runner starts");
    // Wait for both nodes (the replica starts first), then kill the replica.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let nodes = loop {
        let nodes = node_children(runner.id());
        if nodes.len() == 2 {
            break nodes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the nodes did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    Command::new("kill")
        .args(["-KILL", &nodes[0].to_string()])
        .status()
        .unwrap();

    let output = runner.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the runner carried on:\n{stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
    assert!(
        stderr.contains("127.0.0.2"),
        "the error does not name the host: {stderr}"
    );
    assert!(!dir.join("results.csv").exists());
    // The clients node was stopped too.
    for pid in nodes {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "));
        assert!(!alive, "node {pid} still runs");
    }
}

/// A multi-point, multi-trial sweep on local hosts through `runner bench`,
/// and the same experiment again through `runner rerun` of its results.json.
#[test]
fn a_local_sweep_of_points_and_trials_runs_again_from_its_results() {
    let dir = out_dir("sweep");
    let again = out_dir("rerun");
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(args)
            .output()
            .expect("runner runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{args:?} failed:\n{stderr}");
        stderr
    };
    let dir_arg = dir.to_str().unwrap();
    run(&[
        "bench",
        "--protocol",
        "pbft",
        "--clients",
        "1,4",
        "--trials",
        "2",
        "--duration",
        "1200ms",
        "--warmup",
        "200ms",
        "--cooldown",
        "100ms",
        "--out",
        dir_arg,
    ]);
    let read = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
    };
    let first = read(&dir);
    let points = first["points"].as_array().unwrap();
    assert_eq!(points.len(), 2 * 2 * 2, "protocols x loads x trials");
    // Trials interleave protocols and count from 1.
    let order: Vec<(u64, u64, &str)> = points
        .iter()
        .map(|p| {
            (
                p["trial"].as_u64().unwrap(),
                p["clients"].as_u64().unwrap(),
                p["protocol"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(order[0], (1, 1, "unreplicated"));
    assert_eq!(order[1], (1, 1, "pbft"));
    assert_eq!(order[7], (2, 4, "pbft"));
    for point in points {
        assert!(point["measured_ops"].as_u64().unwrap() > 0, "{point}");
    }
    let provenance = &first["provenance"];
    assert!(provenance["cores"].as_u64().unwrap() >= 1, "{provenance}");
    assert!(provenance["kernel"].is_string(), "{provenance}");
    assert_eq!(provenance["command_line"][1], "bench", "{provenance}");
    assert_eq!(
        provenance["load_after_points"].as_array().unwrap().len(),
        points.len()
    );
    // Every protocol's parameters, as its replicas reported them.
    let pbft = first["parameters"]["pbft"].as_array().unwrap();
    assert!(
        pbft.iter()
            .any(|p| p[0] == "batch_max"
                && p[1].as_str().is_some_and(|v| v.ends_with(" requests"))),
        "{pbft:?}"
    );
    let unreplicated = first["parameters"]["unreplicated"].as_array().unwrap();
    assert!(
        unreplicated
            .iter()
            .any(|p| p[0] == "durable" && p[1] == "0 (0 or 1)"),
        "{unreplicated:?}"
    );

    let stderr = run(&[
        "rerun",
        dir.join("results.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(stderr.contains("rerunning bench"), "{stderr}");
    let second = read(&again);
    assert_eq!(second["experiment"], first["experiment"]);
    assert_eq!(second["points"].as_array().unwrap().len(), points.len());
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}

/// A tunable and a workload parameter swept through the real binary: each
/// value reaches the nodes (PBFT at `batch_max=1` proposes batches of one
/// request, however many clients wait; replies are as long as asked) and is
/// recorded in the results, one curve per variant.
#[test]
fn a_sweep_over_a_tunable_and_a_workload_parameter_reaches_the_nodes() {
    let args = [
        "--protocol",
        "pbft",
        "--clients",
        "20",
        "--set",
        "pbft.batch_max=1,32",
    ];
    let dir = out_dir("settings-sweep");
    let (stdout, json) = bench(&[&args[..], &["--reply-size", "0,600"]].concat(), &dir);
    for series in [
        "unreplicated reply_size=0",
        "unreplicated reply_size=600",
        "pbft batch_max=1 reply_size=0",
        "pbft batch_max=32 reply_size=600",
    ] {
        assert!(stdout.contains(series), "no row {series:?}:\n{stdout}");
    }
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 2 + 4, "one point per variant");
    for point in points {
        let variant = point["variant"].as_array().unwrap();
        let value = |name: &str| {
            variant
                .iter()
                .find(|entry| entry[0] == name)
                .and_then(|entry| entry[1].as_u64())
        };
        assert!(point["throughput_ops"].as_f64().unwrap() > 0.0, "{point}");
        if value("pbft.batch_max") == Some(1) {
            let batches = point["counters"]["batches proposed"].as_u64().unwrap();
            let requests = point["counters"]["requests batched"].as_u64().unwrap();
            assert!(batches > 0 && requests <= batches, "{point}");
        }
    }
    // What each replica ran with, as it reported it.
    let parameters = &json["parameters"];
    for (series, batch) in [
        ("pbft batch_max=1 reply_size=600", "1 requests"),
        ("pbft batch_max=32 reply_size=0", "32 requests"),
    ] {
        let reported = parameters[series]
            .as_array()
            .unwrap_or_else(|| panic!("{parameters}"));
        assert!(
            reported
                .iter()
                .any(|entry| entry[0] == "batch_max" && entry[1] == batch),
            "{series}: {reported:?}"
        );
    }
    // The CSV names the variant of every row.
    let mut csv = csv::Reader::from_path(dir.join("results.csv")).expect("results.csv");
    let variant = csv
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "variant")
        .unwrap();
    let variants: std::collections::BTreeSet<String> = csv
        .records()
        .map(|r| r.unwrap()[variant].to_string())
        .collect();
    assert!(
        variants.contains("batch_max=1 reply_size=600"),
        "{variants:?}"
    );
}

/// Durable state end to end: the baseline with its write-ahead log on and
/// off, fsync off (so the run says it is not crash-safe); the durable
/// points committed writes to their state files, the others none.
#[test]
fn the_durable_baseline_commits_its_log_through_the_node_binary() {
    let args = ["--protocol", "unreplicated", "--clients", "4"];
    let set = ["--set", "unreplicated.durable=0,1", "--set", "fsync=0"];
    let (stdout, json) = bench(&[&args[..], &set].concat(), &out_dir("durable"));
    assert!(
        stdout.contains("fsync off (not crash-safe)"),
        "the header says so:\n{stdout}"
    );
    let points = json["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for point in points {
        let durable = point["variant"]
            .as_array()
            .unwrap()
            .iter()
            .any(|entry| entry[0] == "unreplicated.durable" && entry[1] == 1);
        let committed = point["counters"]["durable: writes committed"]
            .as_u64()
            .unwrap_or(0);
        assert!(point["throughput_ops"].as_f64().unwrap() > 0.0, "{point}");
        assert_eq!(committed > 0, durable, "{point}");
    }
}
