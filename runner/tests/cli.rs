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
