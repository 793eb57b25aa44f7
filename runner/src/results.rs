//! What a run measured, and the files it leaves: `results.csv`,
//! `results.json`, `plot.svg`, `plot.png`.
//!
//! [`write_all`] writes the four files; [`summary_table`] is the table the
//! runner prints at the end. Both, and the plot, average a protocol's trials
//! at one load the same way ([`loads`]): the mean of the trials' throughputs,
//! of their p50s and of their p99s (a mean of percentiles, not a percentile of
//! the merged histograms; each trial's own percentiles are in the CSV).
//!
//! # `results.csv`
//!
//! One row per point (protocol × load × trial), sorted like the summary table
//! (`unreplicated` first, then protocols by name; then clients, offered rate,
//! trial). Empty cells mean "not applicable". Columns:
//!
//! | column | meaning |
//! | --- | --- |
//! | `protocol`, `clients`, `trial` | the point; `trial` counts from 1, as the progress line does |
//! | `throughput_ops` | operations completed per second in the measured window |
//! | `latency_us_p50`, `latency_us_p99`, `latency_us_mean` | request latency in the measured window, µs |
//! | `offered_ops` | open loop: the offered rate, operations per second; empty in closed loop |
//! | `measured_ops`, `measured_ms` | operations in the measured window, and its length |
//! | `ratio_to_baseline` | `throughput_ops` over the mean throughput of the `unreplicated` trials at the same `clients` and `offered_ops`; empty without such trials. Per trial, so `unreplicated`'s own rows scatter around 1.0 by trial-to-trial noise; they average to exactly 1.0 |
//! | `replica_cpu_ms`, `client_cpu_ms` | CPU time (user + system) of all replica processes, of all client processes, from start to stop |
//! | `cpu_us_per_op` | (`replica_cpu_ms` + `client_cpu_ms`) × 1000 / `run_ops`: µs of CPU, replicas and clients together, per operation |
//! | `replica_cpu_us_per_op` | `replica_cpu_ms` × 1000 / `run_ops`: the replicas' share, summed over all replicas. The figure to compare across machines: client cost depends on how the load is generated, replica cost on the protocol |
//! | `run_ops` | operations completed over the whole run, warm-up and cool-down included: the sum of the per-interval counts, or `measured_ops` if that is larger (no intervals recorded) |
//! | `replica_cpu_ratio_to_baseline` | `replica_cpu_us_per_op` over the mean of the `unreplicated` trials' at the same load: how many times the baseline's CPU an operation costs the replicas |
//! | `mean_batch` | requests per batch the protocol's leader proposed (its `requests batched` counter over its `batches proposed`, [`wire::control::BATCHES_COUNTER`]); empty for a protocol that does not batch |
//! | `view_changes` | view changes the replicas started, summed over replicas ([`wire::control::VIEW_CHANGES_COUNTER`]): a correct leader under load should cause none |
//! | `kernel_drops` | datagrams the kernel dropped at full socket receive buffers, every node together ([`wire::control::KERNEL_DROPS_COUNTER`]) |
//! | `open_loop_no_free_client` | open loop: scheduled arrivals never sent because every client was busy and the backlog full, or still queued at the stop, over the whole run ([`wire::control::OPEN_LOOP_NO_FREE_CLIENT_COUNTER`]); empty in closed loop |
//!
//! The CPU figures divide by `run_ops`, not `measured_ops`, because the CPU
//! times cover the processes' whole lives, warm-up and cool-down included;
//! dividing by the measured window alone would overstate the cost per
//! operation by the ratio of run length to window length. They count what a
//! thread spends spinning while idle, too (`--idle spin:<µs>`), so a lightly
//! loaded point's cost per operation is mostly idling; compare points near
//! saturation.
//!
//! # `results.json`
//!
//! The whole [`RunResults`], pretty-printed: the configured experiment, every
//! point with its per-interval series and counters. It reads back into an
//! equal `RunResults` (floats round-trip exactly).
//!
//! # `plot.svg`, `plot.png`
//!
//! Throughput against latency, one curve per protocol: see [`crate::plot`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use wire::control::{
    BATCHES_COUNTER, IntervalReport, KERNEL_DROPS_COUNTER, OPEN_LOOP_NO_FREE_CLIENT_COUNTER,
    REQUESTS_BATCHED_COUNTER, VIEW_CHANGES_COUNTER,
};

/// The protocol every other one is compared with (`ratio_to_baseline`).
pub const BASELINE_PROTOCOL: &str = "unreplicated";

pub const CSV_FILE: &str = "results.csv";
pub const JSON_FILE: &str = "results.json";
pub const SVG_FILE: &str = "plot.svg";
pub const PNG_FILE: &str = "plot.png";

/// One measured point: one protocol at one load, one trial.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    pub protocol: String,
    /// Closed-loop clients (or, open loop, the clients sharing the rate).
    pub clients: u32,
    /// Open loop: the offered rate, operations per second.
    pub offered_ops: Option<u64>,
    /// Counts from 1.
    pub trial: u32,
    /// Operations completed per second in the measured window (warm-up and
    /// cool-down trimmed).
    pub throughput_ops: f64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub latency_us_mean: f64,
    /// Operations in the measured window, and its length.
    pub measured_ops: u64,
    pub measured_ms: u64,
    /// The clients' per-interval progress over the whole run.
    pub intervals: Vec<IntervalReport>,
    /// CPU time of all replica processes and of all client processes.
    pub replica_cpu_ms: u64,
    pub client_cpu_ms: u64,
    /// Every node's counters, summed by name.
    pub counters: BTreeMap<String, u64>,
}

impl PointResult {
    /// Operations completed over the whole run, the span the CPU times cover:
    /// the sum of the per-interval counts, at least `measured_ops`.
    pub fn run_ops(&self) -> u64 {
        let intervals: u64 = self.intervals.iter().map(|interval| interval.ops).sum();
        intervals.max(self.measured_ops)
    }

    /// Replica plus client CPU per operation, µs; `None` if no operation
    /// completed.
    pub fn cpu_us_per_op(&self) -> Option<f64> {
        per_op_us(self.replica_cpu_ms + self.client_cpu_ms, self.run_ops())
    }

    /// Replica CPU (all replicas together) per operation, µs; `None` if no
    /// operation completed.
    pub fn replica_cpu_us_per_op(&self) -> Option<f64> {
        per_op_us(self.replica_cpu_ms, self.run_ops())
    }

    /// The counter `name`, summed over every node (0 if none reported it).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Requests per batch the leader proposed, over the whole run; `None` if
    /// the protocol reported no batches.
    pub fn mean_batch(&self) -> Option<f64> {
        let batches = self.counters.get(BATCHES_COUNTER).copied().unwrap_or(0);
        let requests = self
            .counters
            .get(REQUESTS_BATCHED_COUNTER)
            .copied()
            .unwrap_or(0);
        (batches > 0).then(|| requests as f64 / batches as f64)
    }
}

/// Everything one invocation of the runner measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    /// The experiment's name (`default`, `bench`, ...).
    pub name: String,
    /// When the run started, RFC 3339, UTC.
    pub started: String,
    /// Where it ran: `local processes on 127.0.0.2 and up`, ...
    pub hosts: String,
    /// The experiment as configured: `runner rerun` runs it again.
    pub experiment: serde_json::Value,
    /// The code, toolchain, machine and load the numbers came from.
    #[serde(default)]
    pub provenance: crate::provenance::Provenance,
    pub points: Vec<PointResult>,
}

/// The files [`write_all`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub csv: PathBuf,
    pub json: PathBuf,
    pub svg: PathBuf,
    pub png: PathBuf,
}

/// One protocol at one load, its trials averaged.
#[derive(Clone, Debug, PartialEq)]
pub struct Load {
    pub protocol: String,
    pub clients: u32,
    pub offered_ops: Option<u64>,
    /// How many trials were averaged (at least 1).
    pub trials: u32,
    /// Means over the trials.
    pub throughput_ops: f64,
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    /// `throughput_ops` over the baseline's at the same load, if it ran there.
    pub ratio_to_baseline: Option<f64>,
    /// Mean over the trials of the replicas' CPU per operation, µs.
    pub replica_cpu_us_per_op: Option<f64>,
    /// `replica_cpu_us_per_op` over the baseline's at the same load.
    pub cpu_ratio_to_baseline: Option<f64>,
    /// Mean over the trials of requests per batch, for a batching protocol.
    pub mean_batch: Option<f64>,
}

/// Creates `dir` (and its parents) and writes `results.csv`, `results.json`,
/// `plot.svg` and `plot.png` into it, each first to a temporary name and then
/// renamed, so that a file present is a whole one.
pub fn write_all(dir: &Path, results: &RunResults) -> anyhow::Result<Written> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let written = Written {
        csv: dir.join(CSV_FILE),
        json: dir.join(JSON_FILE),
        svg: dir.join(SVG_FILE),
        png: dir.join(PNG_FILE),
    };

    write_atomically(&written.csv, &csv_bytes(results)?)?;
    let mut json = serde_json::to_string_pretty(results).context("serializing the results")?;
    json.push('\n');
    write_atomically(&written.json, json.as_bytes())?;
    write_atomically(&written.svg, crate::plot::render_svg(results)?.as_bytes())?;
    write_atomically(&written.png, &crate::plot::render_png(results)?)?;
    Ok(written)
}

/// A fixed-width table for the terminal: one row per (protocol, load), trials
/// averaged, `unreplicated` first, then protocols by name, then by clients.
/// The offered-rate column appears only if some point ran open loop.
///
/// ```text
/// protocol      clients  throughput ops/s  p50 µs  p99 µs  vs unreplicated  batch  CPU µs/op  CPU vs unrepl.
/// unreplicated        1            12,500      78     130            1.00x      —        9.0            1.0x
/// pbft                1             3,900     251     410            0.31x    1.0       90.0           10.0x
/// ```
/// `batch` is the mean batch size of a batching protocol; `CPU µs/op` the
/// replicas' CPU per operation, all replicas together; `CPU vs unrepl.` its
/// ratio to the baseline's at the same load.
pub fn summary_table(results: &RunResults) -> String {
    let loads = loads(results);
    let open_loop = loads.iter().any(|load| load.offered_ops.is_some());

    let mut header = vec!["protocol", "clients"];
    if open_loop {
        header.push("offered ops/s");
    }
    header.extend([
        "throughput ops/s",
        "p50 µs",
        "p99 µs",
        "vs unreplicated",
        "batch",
        "CPU µs/op",
        "CPU vs unrepl.",
    ]);
    let rows: Vec<Vec<String>> = loads
        .iter()
        .map(|load| {
            let mut row = vec![load.protocol.clone(), load.clients.to_string()];
            if open_loop {
                row.push(load.offered_ops.map_or("—".to_owned(), thousands));
            }
            row.push(thousands(load.throughput_ops.round() as u64));
            row.push(thousands(load.latency_us_p50.round() as u64));
            row.push(thousands(load.latency_us_p99.round() as u64));
            row.push(load.ratio_to_baseline.map_or("—".to_owned(), ratio_label));
            row.push(
                load.mean_batch
                    .map_or("—".to_owned(), |b| format!("{b:.1}")),
            );
            row.push(
                load.replica_cpu_us_per_op
                    .map_or("—".to_owned(), |cpu| format!("{cpu:.1}")),
            );
            row.push(
                load.cpu_ratio_to_baseline
                    .map_or("—".to_owned(), |r| format!("{r:.1}x")),
            );
            row
        })
        .collect();

    let widths: Vec<usize> = (0..header.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].chars().count())
                .chain([header[column].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut table = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (column, cell) in cells.iter().enumerate() {
            if column > 0 {
                text.push_str("  ");
            }
            // The protocol column reads left to right; numbers align right.
            if column == 0 {
                let _ = write!(text, "{cell:<width$}", width = widths[column]);
            } else {
                let _ = write!(text, "{cell:>width$}", width = widths[column]);
            }
        }
        table.push_str(text.trim_end());
        table.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    table
}

/// The points grouped by (protocol, clients, offered rate), trials averaged,
/// in table order: `unreplicated` first, then protocols by name, then
/// clients, then offered rate.
pub fn loads(results: &RunResults) -> Vec<Load> {
    let mut groups: BTreeMap<(ProtocolOrder<'_>, u32, Option<u64>), Vec<&PointResult>> =
        BTreeMap::new();
    for point in &results.points {
        groups
            .entry((
                ProtocolOrder(&point.protocol),
                point.clients,
                point.offered_ops,
            ))
            .or_default()
            .push(point);
    }
    let baselines = baseline_throughputs(results);
    let baseline_cpu = baseline_cpu_per_op(results);
    groups
        .into_iter()
        .map(|((protocol, clients, offered_ops), trials)| {
            let throughput_ops = mean(trials.iter().map(|point| point.throughput_ops));
            let replica_cpu_us_per_op =
                mean_of_some(trials.iter().map(|point| point.replica_cpu_us_per_op()));
            Load {
                protocol: protocol.0.to_owned(),
                clients,
                offered_ops,
                trials: u32::try_from(trials.len()).unwrap_or(u32::MAX),
                throughput_ops,
                latency_us_p50: mean(trials.iter().map(|point| point.latency_us_p50 as f64)),
                latency_us_p99: mean(trials.iter().map(|point| point.latency_us_p99 as f64)),
                ratio_to_baseline: ratio(throughput_ops, baselines.get(&(clients, offered_ops))),
                replica_cpu_us_per_op,
                cpu_ratio_to_baseline: replica_cpu_us_per_op
                    .and_then(|cpu| ratio(cpu, baseline_cpu.get(&(clients, offered_ops)))),
                mean_batch: mean_of_some(trials.iter().map(|point| point.mean_batch())),
            }
        })
        .collect()
}

/// Orders protocol names with [`BASELINE_PROTOCOL`] first, then by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ProtocolOrder<'a>(&'a str);

impl Ord for ProtocolOrder<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0 != BASELINE_PROTOCOL)
            .cmp(&(other.0 != BASELINE_PROTOCOL))
            .then_with(|| self.0.cmp(other.0))
    }
}

impl PartialOrd for ProtocolOrder<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The baseline's mean throughput over its trials, by (clients, offered rate).
fn baseline_throughputs(results: &RunResults) -> BTreeMap<(u32, Option<u64>), f64> {
    let mut sums: BTreeMap<(u32, Option<u64>), (f64, u32)> = BTreeMap::new();
    for point in &results.points {
        if point.protocol == BASELINE_PROTOCOL {
            let sum = sums.entry((point.clients, point.offered_ops)).or_default();
            sum.0 += point.throughput_ops;
            sum.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(load, (sum, count))| (load, sum / f64::from(count)))
        .collect()
}

/// The baseline's replica CPU per operation, mean over its trials, by
/// (clients, offered rate).
fn baseline_cpu_per_op(results: &RunResults) -> BTreeMap<(u32, Option<u64>), f64> {
    let mut groups: BTreeMap<(u32, Option<u64>), Vec<Option<f64>>> = BTreeMap::new();
    for point in &results.points {
        if point.protocol == BASELINE_PROTOCOL {
            groups
                .entry((point.clients, point.offered_ops))
                .or_default()
                .push(point.replica_cpu_us_per_op());
        }
    }
    groups
        .into_iter()
        .filter_map(|(load, values)| Some((load, mean_of_some(values.into_iter())?)))
        .collect()
}

fn ratio(value: f64, baseline: Option<&f64>) -> Option<f64> {
    baseline
        .filter(|&&baseline| baseline > 0.0)
        .map(|baseline| value / baseline)
}

/// The mean of the values that are there; `None` if none is.
fn mean_of_some(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let present: Vec<f64> = values.flatten().collect();
    (!present.is_empty()).then(|| mean(present.into_iter()))
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, count) = values.fold((0.0, 0u32), |(sum, count), value| (sum + value, count + 1));
    if count == 0 {
        0.0
    } else {
        sum / f64::from(count)
    }
}

fn per_op_us(cpu_ms: u64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| cpu_ms as f64 * 1000.0 / ops as f64)
}

/// `0.31x`; three decimals below 0.1 (`0.012x`), so a slow protocol does not
/// read `0.00x`.
fn ratio_label(ratio: f64) -> String {
    if ratio < 0.1 {
        format!("{ratio:.3}x")
    } else {
        format!("{ratio:.2}x")
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// One line of `results.csv`; the field order is the column order.
#[derive(Debug, Serialize, Deserialize)]
struct CsvRow {
    protocol: String,
    clients: u32,
    trial: u32,
    throughput_ops: f64,
    latency_us_p50: u64,
    latency_us_p99: u64,
    latency_us_mean: f64,
    offered_ops: Option<u64>,
    measured_ops: u64,
    measured_ms: u64,
    ratio_to_baseline: Option<f64>,
    replica_cpu_ms: u64,
    client_cpu_ms: u64,
    cpu_us_per_op: Option<f64>,
    replica_cpu_us_per_op: Option<f64>,
    run_ops: u64,
    replica_cpu_ratio_to_baseline: Option<f64>,
    mean_batch: Option<f64>,
    view_changes: u64,
    kernel_drops: u64,
    open_loop_no_free_client: Option<u64>,
}

fn csv_bytes(results: &RunResults) -> anyhow::Result<Vec<u8>> {
    let baselines = baseline_throughputs(results);
    let baseline_cpu = baseline_cpu_per_op(results);
    let mut points: Vec<&PointResult> = results.points.iter().collect();
    points.sort_by(|a, b| {
        (
            ProtocolOrder(&a.protocol),
            a.clients,
            a.offered_ops,
            a.trial,
        )
            .cmp(&(
                ProtocolOrder(&b.protocol),
                b.clients,
                b.offered_ops,
                b.trial,
            ))
    });
    let mut writer = csv::Writer::from_writer(Vec::new());
    for point in points {
        writer
            .serialize(CsvRow {
                protocol: point.protocol.clone(),
                clients: point.clients,
                trial: point.trial,
                throughput_ops: point.throughput_ops,
                latency_us_p50: point.latency_us_p50,
                latency_us_p99: point.latency_us_p99,
                latency_us_mean: point.latency_us_mean,
                offered_ops: point.offered_ops,
                measured_ops: point.measured_ops,
                measured_ms: point.measured_ms,
                ratio_to_baseline: ratio(
                    point.throughput_ops,
                    baselines.get(&(point.clients, point.offered_ops)),
                ),
                replica_cpu_ms: point.replica_cpu_ms,
                client_cpu_ms: point.client_cpu_ms,
                cpu_us_per_op: point.cpu_us_per_op(),
                replica_cpu_us_per_op: point.replica_cpu_us_per_op(),
                run_ops: point.run_ops(),
                replica_cpu_ratio_to_baseline: point.replica_cpu_us_per_op().and_then(|cpu| {
                    ratio(cpu, baseline_cpu.get(&(point.clients, point.offered_ops)))
                }),
                mean_batch: point.mean_batch(),
                view_changes: point.counter(VIEW_CHANGES_COUNTER),
                kernel_drops: point.counter(KERNEL_DROPS_COUNTER),
                open_loop_no_free_client: point
                    .offered_ops
                    .map(|_| point.counter(OPEN_LOOP_NO_FREE_CLIENT_COUNTER)),
            })
            .context("writing a CSV row")?;
    }
    if results.points.is_empty() {
        // serialize() writes the header with the first row; keep it for an
        // empty run too, so readers still find the columns.
        writer
            .write_record(CSV_HEADER)
            .context("writing the CSV header")?;
    }
    writer
        .into_inner()
        .map_err(|error| anyhow::anyhow!("writing the CSV: {}", error.error()))
}

const CSV_HEADER: [&str; 21] = [
    "protocol",
    "clients",
    "trial",
    "throughput_ops",
    "latency_us_p50",
    "latency_us_p99",
    "latency_us_mean",
    "offered_ops",
    "measured_ops",
    "measured_ms",
    "ratio_to_baseline",
    "replica_cpu_ms",
    "client_cpu_ms",
    "cpu_us_per_op",
    "replica_cpu_us_per_op",
    "run_ops",
    "replica_cpu_ratio_to_baseline",
    "mean_batch",
    "view_changes",
    "kernel_drops",
    "open_loop_no_free_client",
];

/// Writes `path.tmp`, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A point with plausible numbers: throughput grows with clients and
    /// saturates, latency grows with it; `speed` scales the protocol.
    pub(crate) fn point(protocol: &str, clients: u32, trial: u32, speed: f64) -> PointResult {
        let noise = 1.0 + 0.02 * f64::from(trial);
        let throughput_ops =
            speed * 40_000.0 * f64::from(clients) / (f64::from(clients) + 8.0) * noise;
        let latency_us_p50 = (1e6 * f64::from(clients) / throughput_ops) as u64;
        let measured_ms = 10_000;
        let measured_ops = (throughput_ops * measured_ms as f64 / 1000.0) as u64;
        PointResult {
            protocol: protocol.to_owned(),
            clients,
            offered_ops: None,
            trial,
            throughput_ops,
            latency_us_p50,
            latency_us_p99: latency_us_p50 * 3 + 40,
            latency_us_mean: latency_us_p50 as f64 * 1.2,
            measured_ops,
            measured_ms,
            intervals: (0..12)
                .map(|second| IntervalReport {
                    elapsed_ms: 1000 * (second + 1),
                    ops: measured_ops / 10,
                    latency_us_p50,
                    latency_us_p99: latency_us_p50 * 3,
                })
                .collect(),
            replica_cpu_ms: 9_000,
            client_cpu_ms: 4_000,
            counters: BTreeMap::from([("sent".to_owned(), measured_ops * 2)]),
        }
    }

    /// Two protocols × three client counts × two trials.
    pub(crate) fn sample() -> RunResults {
        let mut points = Vec::new();
        for clients in [1, 8, 64] {
            for trial in 0..2 {
                points.push(point("unreplicated", clients, trial, 1.0));
                let mut pbft = point("pbft", clients, trial, 0.3);
                pbft.counters.insert(BATCHES_COUNTER.to_owned(), 100);
                pbft.counters
                    .insert(REQUESTS_BATCHED_COUNTER.to_owned(), 1_000);
                points.push(pbft);
            }
        }
        RunResults {
            name: "default".to_owned(),
            started: "2025-01-01T00:00:00Z".to_owned(),
            hosts: "local processes on 127.0.0.2 and up".to_owned(),
            experiment: serde_json::json!({"clients": [1, 8, 64], "trials": 2}),
            provenance: Default::default(),
            points,
        }
    }

    fn read_csv(path: &Path) -> (Vec<String>, Vec<CsvRow>) {
        let mut reader = csv::Reader::from_path(path).unwrap();
        let header = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        let rows = reader.deserialize().map(Result::unwrap).collect();
        (header, rows)
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir()
            .join(format!("runner-results-{}", std::process::id()))
            .join(name);
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn results_write_all_csv_json_and_plots() {
        let results = sample();
        let top = scratch("all");
        let dir = top.join("nested");
        let written = write_all(&dir, &results).unwrap();
        assert_eq!(written.csv, dir.join("results.csv"));

        let (header, rows) = read_csv(&written.csv);
        assert_eq!(header, CSV_HEADER);
        assert_eq!(
            header[..6],
            [
                "protocol",
                "clients",
                "trial",
                "throughput_ops",
                "latency_us_p50",
                "latency_us_p99"
            ]
        );
        assert_eq!(rows.len(), results.points.len());
        assert_eq!(rows[0].protocol, "unreplicated", "baseline rows first");
        for row in &rows {
            assert!(row.throughput_ops > 0.0);
            assert!(row.ratio_to_baseline.is_some());
            assert!(row.cpu_us_per_op.unwrap() > row.replica_cpu_us_per_op.unwrap());
        }
        for clients in [1, 8, 64] {
            let baseline: Vec<f64> = rows
                .iter()
                .filter(|row| row.protocol == "unreplicated" && row.clients == clients)
                .map(|row| row.ratio_to_baseline.unwrap())
                .collect();
            assert_eq!(baseline.len(), 2);
            assert!((mean(baseline.iter().copied()) - 1.0).abs() < 1e-12);
            assert!(baseline.iter().all(|ratio| (ratio - 1.0).abs() < 0.02));
            let pbft = rows
                .iter()
                .find(|row| row.protocol == "pbft" && row.clients == clients)
                .unwrap();
            assert!((pbft.ratio_to_baseline.unwrap() - 0.3).abs() < 0.01);
            assert_eq!(pbft.mean_batch, Some(10.0));
            assert!((pbft.replica_cpu_ratio_to_baseline.unwrap() - 1.0 / 0.3).abs() < 0.1);
            assert!(rows.iter().any(|row| row.protocol == "unreplicated"
                && row.clients == clients
                && row.mean_batch.is_none()));
        }

        let json = fs::read_to_string(&written.json).unwrap();
        let back: RunResults = serde_json::from_str(&json).unwrap();
        assert_eq!(back, results);

        let svg = fs::read_to_string(&written.svg).unwrap();
        assert!(svg.contains("Throughput (ops/s)"));
        assert!(svg.contains("Latency (µs"));
        assert!(svg.contains("unreplicated") && svg.contains("pbft"));

        let png = fs::read(&written.png).unwrap();
        assert_eq!(
            png_size(&png),
            (crate::plot::WIDTH_PX, crate::plot::HEIGHT_PX)
        );
        fs::remove_dir_all(top).unwrap();
    }

    /// The width and height in a PNG's IHDR chunk, after checking the
    /// signature.
    pub(crate) fn png_size(png: &[u8]) -> (u32, u32) {
        assert!(png.len() > 1000, "{} bytes", png.len());
        assert_eq!(png[..8], *b"\x89PNG\r\n\x1a\n");
        assert_eq!(png[12..16], *b"IHDR");
        let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        (be(16), be(20))
    }

    #[test]
    fn results_write_all_single_point() {
        let mut results = sample();
        results.points.truncate(1);
        let dir = scratch("single");
        let written = write_all(&dir, &results).unwrap();
        let (_, rows) = read_csv(&written.csv);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].ratio_to_baseline, Some(1.0));
        png_size(&fs::read(&written.png).unwrap());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn results_write_all_without_baseline() {
        let mut results = sample();
        results.points.retain(|point| point.protocol == "pbft");
        // And one more protocol at a load the baseline did not run.
        results.points.push(point("unreplicated", 2, 0, 1.0));
        results.points.push(point("hotstuff", 2, 0, 0.5));
        let dir = scratch("no-baseline");
        let written = write_all(&dir, &results).unwrap();
        let (_, rows) = read_csv(&written.csv);
        assert_eq!(rows.len(), results.points.len());
        for row in &rows {
            let expected = row.clients == 2;
            assert_eq!(row.ratio_to_baseline.is_some(), expected, "{row:?}");
        }
        let csv = fs::read_to_string(&written.csv).unwrap();
        assert!(csv.contains("pbft,1,0,"), "{csv}");
        let table = summary_table(&results);
        assert!(table.contains('—'), "{table}");
        assert!(
            fs::read_to_string(&written.svg)
                .unwrap()
                .contains("hotstuff")
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn results_write_all_empty_run() {
        let mut results = sample();
        results.points.clear();
        let dir = scratch("empty");
        let written = write_all(&dir, &results).unwrap();
        let (header, rows) = read_csv(&written.csv);
        assert_eq!(header, CSV_HEADER);
        assert!(rows.is_empty());
        png_size(&fs::read(&written.png).unwrap());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn results_summary_table_one_row_per_load() {
        let table = summary_table(&sample());
        println!("{table}");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 1 + 2 * 3, "{table}");
        assert!(lines[0].starts_with("protocol"));
        assert!(lines[0].ends_with("CPU vs unrepl."));
        assert!(!lines[0].contains("offered"));
        let protocols: Vec<(&str, &str)> = lines[1..]
            .iter()
            .map(|line| {
                let mut cells = line.split_whitespace();
                (cells.next().unwrap(), cells.next().unwrap())
            })
            .collect();
        assert_eq!(
            protocols,
            [
                ("unreplicated", "1"),
                ("unreplicated", "8"),
                ("unreplicated", "64"),
                ("pbft", "1"),
                ("pbft", "8"),
                ("pbft", "64"),
            ]
        );
        // vs unreplicated, batch, CPU µs/op, CPU vs unreplicated: the same
        // CPU time for 0.3x the operations is 3.3x the CPU per operation.
        let tail = |line: &str| -> Vec<String> {
            let cells: Vec<&str> = line.split_whitespace().collect();
            cells[cells.len() - 4..]
                .iter()
                .map(|c| c.to_string())
                .collect()
        };
        for line in &lines[1..4] {
            let tail = tail(line);
            assert_eq!(
                (tail[0].as_str(), tail[1].as_str()),
                ("1.00x", "—"),
                "{line}"
            );
            assert_eq!(tail[3], "1.0x", "{line}");
        }
        for line in &lines[4..] {
            let tail = tail(line);
            assert_eq!(
                (tail[0].as_str(), tail[1].as_str()),
                ("0.30x", "10.0"),
                "{line}"
            );
            assert_eq!(tail[3], "3.3x", "{line}");
        }
        // Fixed width: every row as wide as the header.
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|line| line.chars().count() == width));
        assert!(table.contains("35,911"), "thousands separators: {table}");
    }

    #[test]
    fn results_summary_table_open_loop() {
        let mut results = sample();
        for point in &mut results.points {
            point.offered_ops = Some(10_000 * u64::from(point.clients));
        }
        let table = summary_table(&results);
        assert!(table.lines().next().unwrap().contains("offered ops/s"));
        assert!(table.contains("640,000"), "{table}");
    }

    #[test]
    fn results_csv_counts_open_loop_arrivals_with_no_free_client() {
        let mut results = sample();
        results.points[0].offered_ops = Some(1000);
        results.points[0]
            .counters
            .insert(OPEN_LOOP_NO_FREE_CLIENT_COUNTER.to_owned(), 7);
        let written = write_all(&scratch("no-free-client"), &results).unwrap();
        let (_, rows) = read_csv(&written.csv);
        let open: Vec<_> = rows
            .iter()
            .filter(|row| row.offered_ops.is_some())
            .collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].open_loop_no_free_client, Some(7));
        // Not applicable in closed loop: empty.
        assert!(
            rows.iter()
                .filter(|row| row.offered_ops.is_none())
                .all(|row| row.open_loop_no_free_client.is_none())
        );
    }

    #[test]
    fn results_cpu_per_op_covers_the_whole_run() {
        let point = point("unreplicated", 8, 0, 1.0);
        // 12 intervals of a tenth of the window each: 1.2 × measured_ops.
        assert_eq!(point.run_ops(), point.measured_ops / 10 * 12);
        let expected = 13_000.0 * 1000.0 / point.run_ops() as f64;
        assert!((point.cpu_us_per_op().unwrap() - expected).abs() < 1e-9);
        let no_intervals = PointResult {
            intervals: Vec::new(),
            ..point.clone()
        };
        assert_eq!(no_intervals.run_ops(), point.measured_ops);
        let idle = PointResult {
            intervals: Vec::new(),
            measured_ops: 0,
            ..point
        };
        assert_eq!(idle.cpu_us_per_op(), None);
    }

    #[test]
    fn results_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(ratio_label(1.0), "1.00x");
        assert_eq!(ratio_label(0.314), "0.31x");
        assert_eq!(ratio_label(0.0123), "0.012x");
    }
}
