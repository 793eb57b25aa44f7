//! The runner's command line refuses bad input before it builds or starts
//! anything: one line per problem, naming the option, and a failing exit.

use std::process::Command;

/// Runs the runner with `args`; returns its exit success and stderr.
fn runner(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("running the runner");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `args` fail with `expected` in the error and nothing started.
fn refused(args: &[&str], expected: &str) {
    let (ok, stderr) = runner(args);
    assert!(!ok, "{args:?} succeeded");
    assert!(
        stderr.contains(expected),
        "{args:?}: {stderr:?} lacks {expected:?}"
    );
    for started in ["points on", "Compiling", "rerunning"] {
        assert!(!stderr.contains(started), "{args:?} started: {stderr}");
    }
}

#[test]
fn bad_input_is_refused_before_anything_runs() {
    refused(
        &["sim", "--protocol", "raft", "--seeds", "3"],
        "invalid value 'raft' for '--protocol <PROTOCOL>'",
    );
    refused(
        &["bench", "--protocol", "pbft", "--f", "0"],
        "error: --f 0: pbft is replicated",
    );
    refused(
        &["bench", "--protocol", "pbft", "--f", "4"],
        "--f 4: pbft would run 13 replicas; it runs at most 10",
    );
    refused(
        &["bench", "--protocol", "pbft", "--op-size", "100000"],
        "--op-size 100000: at most",
    );
    refused(
        &["bench", "--protocol", "pbft", "--app", "kv", "--keys", "0"],
        "--keys 0:",
    );
    refused(
        &[
            "bench",
            "--protocol",
            "pbft",
            "--rates",
            "100",
            "--clients",
            "1,2",
        ],
        "--rates sweeps offered rates with one --clients count, not 2",
    );
    refused(
        &["bench", "--protocol", "pbft", "--hosts", "ssh"],
        "--hosts ssh needs the machines to run on",
    );
    refused(
        &[
            "bench",
            "--protocol",
            "pbft",
            "--replica-threads",
            "receive/verify",
        ],
        "Protocol must run on exactly one thread",
    );
    refused(
        &["rerun", "/nonexistent/results.json"],
        "reading /nonexistent/results.json",
    );
}

/// Several problems: each on its own line, every one listed.
#[test]
fn every_problem_gets_its_own_line() {
    let (ok, stderr) = runner(&[
        "bench",
        "--protocol",
        "pbft",
        "--app",
        "kv",
        "--read-ratio",
        "2",
        "--keys",
        "0",
        "--trials",
        "0",
    ]);
    assert!(!ok);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "error: --trials 0: at least one trial",
            "--keys 0: the key-value workload needs at least one key",
            "--read-ratio 2: a fraction of reads, 0 to 1",
        ],
        "{stderr}"
    );
}

/// Settings are checked against the registry's bounds before anything
/// runs: each bad one gets its own line, in `--set`'s words.
#[test]
fn settings_out_of_bounds_are_refused() {
    let (ok, stderr) = runner(&[
        "bench",
        "--protocol",
        "pbft",
        "--set",
        "pbft.batch_max=16,0",
        "--set",
        "pbft.window=99999999999999999999",
    ]);
    assert!(!ok);
    assert!(stderr.contains("is not a whole number"), "{stderr}");
    let (ok, stderr) = runner(&[
        "bench",
        "--protocol",
        "pbft",
        "--set",
        "pbft.batch_max=16,0",
        "--set",
        "pbft.nope=1",
        "--set",
        "unreplicated.batch_max=2",
        "--set",
        "value_size=3",
        "--op-size",
        "2",
        "--reply-size",
        "8",
    ]);
    assert!(!ok);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines,
        [
            "error: --set pbft.batch_max=0: out of range, 1 to 256 requests (default 256)",
            "--set pbft.nope: pbft has no tunable \"nope\" (it has: batch_max, window, \
             view_change_timeout_ms, status_interval_ms, client_table_max)",
            "--set unreplicated.batch_max: unreplicated has no tunable \"batch_max\" (it has: durable, snapshot_interval)",
            "--set value_size: not a parameter of this workload (op_size and reply_size are the \
             null app's; value_size and keys the kv app's)",
            "--op-size 2: with --reply-size, at least 4 bytes (the operation carries the reply's size)",
        ],
        "{stderr}"
    );
    refused(
        &["bench", "--protocol", "pbft", "--set", "batch_max"],
        "expected NAME=VALUE",
    );
    refused(
        &["bench", "--protocol", "pbft", "--set", "raft.x=1"],
        "--set raft.x: unknown protocol \"raft\"",
    );
    // A sweep that multiplies past the bound.
    let many: String = (1..=200)
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(",");
    refused(
        &[
            "bench",
            "--protocol",
            "pbft",
            "--set",
            &format!("pbft.batch_max={many}"),
            "--set",
            "pbft.window=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16",
            "--trials",
            "5",
        ],
        "points; at most 10000",
    );
}

/// `runner protocols` lists every protocol of the registry with its
/// tunables and their bounds.
#[test]
fn protocols_lists_the_registry() {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("protocols")
        .output()
        .expect("running the runner");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for spec in wire::registry::PROTOCOLS {
        assert!(text.contains(spec.name), "{text}");
        for t in spec.tunables {
            let line = format!(
                "{}.{} = {} {} ({} to {})",
                spec.name, t.name, t.default, t.unit, t.min, t.max
            );
            assert!(text.contains(&line), "{line:?} not in {text}");
        }
    }
}

/// An `--out` folder that holds files is refused before the run, so an
/// earlier run's results are never overwritten by surprise.
#[test]
fn an_out_folder_with_results_is_not_overwritten() {
    let dir = std::env::temp_dir().join(format!("runner-cli-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("results.csv"), "earlier").unwrap();
    let out = dir.to_str().unwrap();
    refused(
        &["bench", "--protocol", "pbft", "--out", out],
        "already holds files; choose another folder, or pass --overwrite",
    );
    refused(&["--out", out], "--overwrite");
    assert_eq!(
        std::fs::read_to_string(dir.join("results.csv")).unwrap(),
        "earlier"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The emulated WAN's flags are checked with the experiment, before any
/// host is set up, whichever mechanism would apply them.
#[test]
fn wan_flags_out_of_bounds_are_refused() {
    refused(
        &["bench", "--protocol", "pbft", "--netem-loss", "150"],
        "--netem-*: netem loss must be between 0 and 100 percent, not 150",
    );
    refused(
        &["bench", "--protocol", "pbft", "--netem-delay", "11s"],
        "must be at most 10000ms",
    );
    refused(
        &["bench", "--protocol", "pbft", "--netem-rate", "0"],
        "netem rate must be at least 1 Mbit/s",
    );
    refused(
        &[
            "bench",
            "--protocol",
            "pbft",
            "--netem-rate-mbit",
            "2000000",
        ],
        "--netem-rate-mbit 2000000: at most 1000000",
    );
}
