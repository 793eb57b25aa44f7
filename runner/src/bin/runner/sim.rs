//! `runner sim`: simulate a protocol over many seeds, or replay one.
//!
//! A batch is split into one contiguous seed range per worker process, each a
//! `node sim --json` that prints one report per line. The runner tallies the
//! reports as they come, shows progress, and prints a summary (faults by
//! kind and how many seeds had each, the slowest seeds) with a replay
//! command for every failed seed it lists. One seed (`--seed`) runs in a
//! single `node sim` whose output goes straight to the terminal, with its
//! timeline first under `--trace`. `--planted BUG` builds the node with a
//! known bug put back (the `planted` profile) to see the seeds catch it.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{ArgGroup, Args, value_parser};
use indicatif::{ProgressBar, ProgressStyle};
use runner::cargo::{self, Build};
use wire::sim::{Profile, SeedReport};

use crate::summary::{Summary, WorkerFailure};

/// How many of a dead worker's last stderr lines the summary shows.
const STDERR_TAIL_LINES_MAX: usize = 20;
/// How much of an unreadable output line a worker failure quotes.
const BAD_LINE_QUOTED_MAX: usize = 200;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["seed", "seeds"])))]
pub struct SimArgs {
    /// Protocol to simulate.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(
        runner::experiment::PROTOCOLS.iter().map(|spec| spec.name)
    ))]
    protocol: String,
    /// Replay this one seed, printing its report and trace hash.
    #[arg(long)]
    seed: Option<u64>,
    /// Run this many consecutive seeds, starting at `--first-seed`.
    #[arg(long, value_parser = value_parser!(u64).range(1..))]
    seeds: Option<u64>,
    /// First seed of a `--seeds` batch.
    #[arg(long, default_value_t = 0, conflicts_with = "seed")]
    first_seed: u64,
    /// Worker processes for a `--seeds` batch [default: one per available core].
    #[arg(long, conflicts_with = "seed")]
    workers: Option<NonZeroUsize>,
    /// Fault profile: none, network, crash, byzantine, all (every kind
    /// together), beyond (more than f faulty replicas: must fail), or mix
    /// (one of the first five per seed).
    #[arg(long, default_value = "mix")]
    faults: Profile,
    /// With `--seed`: print the seed's timeline (deliveries with sender and
    /// kind, timers, view changes, executions, faults) before its report.
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Put a known bug back in and see the seeds catch it (builds the node
    /// with the `planted` profile; `node sim --help` lists the bugs).
    #[arg(long)]
    planted: Option<String>,
}

/// What every `node sim` of a run is asked for, besides its seeds.
struct Task<'a> {
    protocol: &'a str,
    faults: Profile,
    planted: Option<&'a str>,
}

impl Task<'_> {
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "sim".to_string(),
            "--protocol".to_string(),
            self.protocol.to_string(),
            "--faults".to_string(),
            self.faults.name().to_string(),
        ];
        if let Some(bug) = self.planted {
            args.extend(["--planted".to_string(), bug.to_string()]);
        }
        args
    }
}

pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let task = Task {
        protocol: &args.protocol,
        faults: args.faults,
        planted: args.planted.as_deref(),
    };
    let build = if task.planted.is_some() {
        Build::Planted
    } else {
        Build::Release
    };
    let node = cargo::build_node_as(build)?;
    match (args.seed, args.seeds) {
        (Some(seed), _) => run_one(&node, &task, seed, args.trace),
        (None, Some(count)) => {
            let workers = args
                .workers
                .or_else(|| thread::available_parallelism().ok())
                .map_or(1, NonZeroUsize::get);
            run_batch(&node, &task, args.first_seed, count, workers)
        }
        (None, None) => unreachable!("clap requires --seed or --seeds"),
    }
}

/// Runs one seed in a node whose output goes straight to the terminal, and
/// exits as it did.
fn run_one(node: &Path, task: &Task<'_>, seed: u64, trace: bool) -> anyhow::Result<ExitCode> {
    let mut command = Command::new(node);
    command
        .args(task.args())
        .args(["--seed", &seed.to_string()]);
    if trace {
        command.arg("--trace");
    }
    let status = command
        .status()
        .with_context(|| format!("running {}", node.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => {
            eprintln!("error: node {status}");
            ExitCode::FAILURE
        }
    })
}

/// Runs seeds `first..first + count` over `workers` node processes.
fn run_batch(
    node: &Path,
    task: &Task<'_>,
    first: u64,
    count: u64,
    workers: usize,
) -> anyhow::Result<ExitCode> {
    first.checked_add(count).with_context(|| {
        format!("seeds {first} + {count} overflow u64; lower --first-seed or --seeds")
    })?;
    let ranges = split_seeds(first, count, workers);
    let protocol = task.protocol;
    eprintln!(
        "simulating {protocol} under fault profile {}{}: seeds {first}..{} on {} worker{}",
        task.faults,
        task.planted
            .map(|bug| format!(" with bug {bug} planted"))
            .unwrap_or_default(),
        first + count,
        ranges.len(),
        if ranges.len() == 1 { "" } else { "s" }
    );

    let start = Instant::now();
    let (events_tx, events) = mpsc::channel();
    let mut running = Vec::with_capacity(ranges.len());
    for (index, seeds) in ranges.iter().enumerate() {
        match Worker::spawn(node, task, index, seeds.clone(), events_tx.clone()) {
            Ok(worker) => running.push(worker),
            Err(error) => {
                for mut worker in running {
                    let _ = worker.child.kill();
                    let _ = worker.child.wait();
                }
                return Err(error);
            }
        }
    }
    // The channel closes once every worker's stdout has closed.
    drop(events_tx);

    let progress = progress_bar(count);
    let mut summary = Summary::new(protocol, task.faults, count);
    summary.planted = task.planted.map(str::to_string);
    for event in events {
        match event {
            Event::Report(index, report) => {
                summary.add(&report);
                running[index].reported += 1;
                progress.inc(1);
                progress.set_message(format!("{} failed", summary.failed()));
            }
            Event::Unreadable(index, problem) => running[index].problems.push(problem),
        }
    }
    for worker in running {
        if let Some(failure) = worker.finish()? {
            summary.worker_failures.push(failure);
        }
    }
    progress.finish();
    if !progress.is_hidden() {
        // The bar leaves the cursor at the end of its line.
        eprintln!();
    }
    let elapsed = start.elapsed();

    print!("{}", summary.render(elapsed, ranges.len()));
    Ok(if summary.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Splits `count` seeds from `first` on into at most `workers` contiguous
/// ranges whose lengths differ by at most one. Never returns an empty range
/// unless `count` is zero.
pub fn split_seeds(first: u64, count: u64, workers: usize) -> Vec<Range<u64>> {
    let parts = (workers as u64).clamp(1, count.max(1));
    let base = count / parts;
    let longer = count % parts;
    let mut start = first;
    (0..parts)
        .map(|i| {
            let len = base + u64::from(i < longer);
            let range = start..start + len;
            start += len;
            range
        })
        .collect()
}

fn progress_bar(count: u64) -> ProgressBar {
    let progress = ProgressBar::new(count);
    let style = ProgressStyle::with_template(
        "[{elapsed_precise}] {wide_bar} {pos}/{len} seeds, {msg}, ETA {eta}",
    )
    .expect("the template is valid")
    .progress_chars("=> ");
    progress.set_style(style);
    progress.set_message("0 failed");
    progress.enable_steady_tick(Duration::from_millis(250));
    progress
}

/// What a worker's stdout reader tells the main thread.
enum Event {
    Report(usize, Box<SeedReport>),
    /// A line that is not a seed report, or a failed read.
    Unreadable(usize, String),
}

/// One `node sim --json` process and what it has reported so far.
struct Worker {
    seeds: Range<u64>,
    child: Child,
    stdout: JoinHandle<()>,
    stderr: JoinHandle<String>,
    reported: u64,
    problems: Vec<String>,
}

impl Worker {
    fn spawn(
        node: &Path,
        task: &Task<'_>,
        index: usize,
        seeds: Range<u64>,
        events: mpsc::Sender<Event>,
    ) -> anyhow::Result<Worker> {
        let mut child = Command::new(node)
            .args(task.args())
            .arg("--json")
            .args(["--seeds", &(seeds.end - seeds.start).to_string()])
            .args(["--first-seed", &seeds.start.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", node.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = thread::spawn(move || read_reports(index, stdout, &events));
        let stderr = thread::spawn(move || stderr_tail(stderr, STDERR_TAIL_LINES_MAX));
        Ok(Worker {
            seeds,
            child,
            stdout,
            stderr,
            reported: 0,
            problems: Vec::new(),
        })
    }

    /// Waits for the process to exit; says what went wrong, if anything.
    fn finish(mut self) -> anyhow::Result<Option<WorkerFailure>> {
        let status = self.child.wait().context("waiting for a worker")?;
        let _ = self.stdout.join();
        let stderr_tail = self.stderr.join().unwrap_or_default();
        let expected = self.seeds.end - self.seeds.start;
        let mut problems = self.problems;
        if !status.success() {
            problems.insert(0, format!("{status}"));
        } else if problems.is_empty() && self.reported != expected {
            problems.push("exited early".to_string());
        }
        if problems.is_empty() {
            return Ok(None);
        }
        Ok(Some(WorkerFailure {
            seeds: self.seeds,
            reported: self.reported,
            problem: problems.join("; "),
            stderr_tail,
        }))
    }
}

/// Parses one report per line from a worker until its stdout closes.
fn read_reports(index: usize, stdout: impl Read, events: &mpsc::Sender<Event>) {
    for line in BufReader::new(stdout).lines() {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                let _ = events.send(Event::Unreadable(
                    index,
                    format!("reading its output failed: {error}"),
                ));
                return;
            }
        };
        let event = match serde_json::from_str::<SeedReport>(&line) {
            Ok(report) => Event::Report(index, Box::new(report)),
            Err(error) => {
                let quoted: String = line.chars().take(BAD_LINE_QUOTED_MAX).collect();
                Event::Unreadable(
                    index,
                    format!("printed a line that is not a seed report ({error}): {quoted}"),
                )
            }
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// Reads `stderr` to its end, keeping the last `lines_max` lines.
fn stderr_tail(stderr: impl Read, lines_max: usize) -> String {
    let mut tail = VecDeque::with_capacity(lines_max);
    runner::control::for_each_line(stderr, |line| {
        runner::control::keep_last(&mut tail, line, lines_max)
    });
    Vec::from(tail).join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(ranges: &[Range<u64>]) -> Vec<u64> {
        ranges.iter().map(|r| r.end - r.start).collect()
    }

    #[test]
    fn split_covers_the_range_contiguously_and_evenly() {
        let ranges = split_seeds(100, 10, 3);
        assert_eq!(ranges, vec![100..104, 104..107, 107..110]);
        assert_eq!(lens(&split_seeds(0, 1000, 8)), vec![125; 8]);
    }

    #[test]
    fn split_uses_no_more_workers_than_seeds() {
        assert_eq!(split_seeds(5, 2, 16), vec![5..6, 6..7]);
        assert_eq!(split_seeds(0, 1, 4), vec![0..1]);
    }

    #[test]
    fn split_with_zero_workers_uses_one() {
        assert_eq!(split_seeds(0, 7, 0), vec![0..7]);
    }

    #[test]
    fn split_reaches_the_top_of_u64() {
        let ranges = split_seeds(u64::MAX - 4, 4, 2);
        assert_eq!(
            ranges,
            vec![u64::MAX - 4..u64::MAX - 2, u64::MAX - 2..u64::MAX]
        );
    }

    #[test]
    fn split_any_shape_is_a_partition() {
        for count in 1..40u64 {
            for workers in 1..12usize {
                let ranges = split_seeds(3, count, workers);
                assert_eq!(ranges.len() as u64, (workers as u64).min(count));
                assert_eq!(ranges.first().unwrap().start, 3);
                assert_eq!(ranges.last().unwrap().end, 3 + count);
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
                let lens = lens(&ranges);
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
                assert!(lens.iter().all(|&l| l > 0));
            }
        }
    }

    #[test]
    fn reports_and_bad_lines_become_events() {
        let report = SeedReport {
            protocol: "unreplicated".to_string(),
            seed: 4,
            passed: true,
            failure: None,
            ops_completed: 1,
            deliveries: 2,
            faults: Default::default(),
            simulated_ns: 3,
            wall_ns: 4,
            trace_hash: "ab".to_string(),
            profile: "all".to_string(),
            replicas: 1,
            last_heal_ns: 1,
            liveness_bound_ns: 2,
            latency_max_ns: 3,
        };
        let input = format!(
            "{}\nthread 'main' panicked\n",
            serde_json::to_string(&report).unwrap()
        );
        let (tx, rx) = mpsc::channel();
        read_reports(2, input.as_bytes(), &tx);
        drop(tx);
        let events: Vec<_> = rx.into_iter().collect();
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[0], Event::Report(2, r) if **r == report));
        assert!(
            matches!(&events[1], Event::Unreadable(2, p) if p.contains("thread 'main' panicked"))
        );
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let input = (0..30).map(|i| format!("line {i}\n")).collect::<String>();
        let tail = stderr_tail(input.as_bytes(), 3);
        assert_eq!(tail, "line 27\nline 28\nline 29");
        assert_eq!(stderr_tail(&b""[..], 3), "");
    }
}
