//! A point over time, and how it came back from each fault: the figures
//! behind `timeline.csv`, `recovery.csv`, the recovery table and the
//! timeline plot ([`crate::timeline_plot`]).
//!
//! Two series come from the clients node. Its interval reports (every
//! [`Experiment::report_interval`](crate::experiment::Experiment::report_interval),
//! 100 ms by default) give throughput, p50, p99 and the operations slower
//! than the experiment's bound
//! ([`Experiment::slow_op`](crate::experiment::Experiment::slow_op), 100 ms
//! by default) per interval: the timeline. Its completion
//! bins ([`Completions`], [`wire::control::COMPLETION_BIN_MS`] wide, over
//! the whole run) give the time of every completion to a bin: the recovery
//! figures. Both are on the clients node's clock, the clock of
//! [`FaultRecord::at_ms`].
//!
//! # Recovery figures, per fault
//!
//! A fault's span runs from it to the next fault (or the end of the run):
//! what happens after the next fault is that fault's. Rates are over a
//! sliding window of [`RATE_WINDOW_MS`] (whole bins, starting at each bin).
//!
//! - **pre-fault rate**: the mean completion rate over the
//!   [`PRE_FAULT_WINDOW_MS`] before the fault's bin (less if the run or the
//!   previous fault's span is shorter; none if that leaves less than one
//!   rate window, or nothing completed: "no pre-fault rate").
//! - **first completion**: from the fault to the end of the first bin wholly
//!   after it with a completion in it: an upper bound, to a bin (and one
//!   partial bin). None: nothing completed in the span.
//! - **back to 90%**: if a window in the span fell below
//!   [`RECOVERED_FRACTION`] of the pre-fault rate, the time from the fault
//!   to the end of the first later window back at or above it; 0 if none
//!   fell below; "not recovered" if none came back within the span (or the
//!   span holds no whole window).
//! - **dip**: the lowest windowed rate in the [`POST_FAULT_WINDOW_MS`] after
//!   the fault (within the span), and that as a fraction of the pre-fault
//!   rate.
//! - **slow operations**: operations completed in the span (by interval)
//!   that took longer than the experiment's bound.
//! - **view changes**: the replicas' [`VIEW_CHANGES_COUNTER`], summed, is
//!   per point, not per fault (replicas report it only in their totals).
//!
//! # Periodic dip
//!
//! For a protocol whose leader rotates
//! ([`wire::registry::ProtocolSpec::rotates_leader`]), the same windowed
//! rate over the measured window, fault spans left out: its mean, its
//! lowest window and that as a fraction of the mean, how many times it fell
//! below [`RECOVERED_FRACTION`] of the mean, and the mean time between those
//! falls.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use wire::control::{Completions, IntervalReport, SLOW_OP_MS_DEFAULT, VIEW_CHANGES_COUNTER};

use crate::experiment::protocol_spec;
use crate::results::{FaultRecord, PointResult, RunResults, thousands};

/// The sliding window rates are measured over, ms.
pub const RATE_WINDOW_MS: u64 = 100;
/// How far before a fault its pre-fault rate is measured, ms.
pub const PRE_FAULT_WINDOW_MS: u64 = 1_000;
/// How far after a fault its dip is looked for, ms.
pub const POST_FAULT_WINDOW_MS: u64 = 5_000;
/// The share of the pre-fault rate that counts as recovered.
pub const RECOVERED_FRACTION: f64 = 0.9;

/// How a point came back from one fault (see the module's documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    pub at_ms: u64,
    pub label: String,
    /// Operations per second over the pre-fault window; `None`: no
    /// pre-fault rate.
    pub pre_fault_ops_per_sec: Option<f64>,
    /// From the fault to the first completion after it, ms (bin precision);
    /// `None`: nothing completed in the fault's span.
    pub first_completion_ms: Option<u64>,
    /// Back to [`RECOVERED_FRACTION`] of the pre-fault rate.
    pub recovered: Recovered,
    /// The lowest windowed rate after the fault, ops/s; `None`: the span is
    /// shorter than one window.
    pub dip_ops_per_sec: Option<f64>,
    /// `dip_ops_per_sec` over `pre_fault_ops_per_sec`.
    pub dip_fraction: Option<f64>,
    /// Operations completed in the fault's span slower than `slow_op_ms`.
    pub slow_ops: u64,
    pub slow_op_ms: u64,
}

/// Whether, and when, the rate came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recovered {
    /// This long after the fault, ms (0: it never fell below).
    AfterMs(u64),
    /// Not within the fault's span.
    NotRecovered,
    /// There was no pre-fault rate to come back to.
    NoPreFaultRate,
}

/// A rotating leader's periodic dip over a point's measured window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeriodicDip {
    pub mean_ops_per_sec: f64,
    pub lowest_ops_per_sec: f64,
    /// `lowest_ops_per_sec` over `mean_ops_per_sec`.
    pub fraction: f64,
    /// Times the windowed rate fell below [`RECOVERED_FRACTION`] of the mean.
    pub dips: u32,
    /// Mean time between the starts of consecutive dips, ms; `None` with
    /// fewer than two.
    pub period_ms: Option<u64>,
}

/// One row of `timeline.csv`: one interval report of a point.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineRow {
    /// The interval's end on the clients node's clock.
    pub t_ms: u64,
    pub ops_per_sec: f64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub slow_ops: u64,
}

/// A point's interval reports as rates: each interval's operations over its
/// length (from the previous report's time; the first from the node's
/// start).
pub fn timeline(intervals: &[IntervalReport]) -> Vec<TimelineRow> {
    let mut previous = 0;
    intervals
        .iter()
        .map(|interval| {
            let length_ms = interval.elapsed_ms.saturating_sub(previous).max(1);
            previous = interval.elapsed_ms;
            TimelineRow {
                t_ms: interval.elapsed_ms,
                ops_per_sec: interval.ops as f64 * 1000.0 / length_ms as f64,
                latency_us_p50: interval.latency_us_p50,
                latency_us_p99: interval.latency_us_p99,
                slow_ops: interval.slow_ops,
            }
        })
        .collect()
}

/// Each of `faults`' recovery, from the completion bins and the intervals
/// (for the slow operations, counted against `slow_op_ms`).
pub fn recoveries(
    completions: &Completions,
    intervals: &[IntervalReport],
    faults: &[FaultRecord],
    slow_op_ms: u64,
) -> Vec<Recovery> {
    let bins = Bins::new(completions);
    faults
        .iter()
        .enumerate()
        .map(|(i, fault)| {
            let next_ms = faults.get(i + 1).map_or(u64::MAX, |next| next.at_ms);
            let span_end_ms = next_ms.max(fault.at_ms);
            let mut recovery = bins.recovery(fault, faults[..i].last(), span_end_ms);
            recovery.slow_ops = intervals
                .iter()
                .filter(|interval| interval.elapsed_ms > fault.at_ms)
                .filter(|interval| interval.elapsed_ms <= span_end_ms)
                .map(|interval| interval.slow_ops)
                .sum();
            recovery.slow_op_ms = slow_op_ms;
            recovery
        })
        .collect()
}

/// The periodic dip over `[from_ms, to_ms)` on the clients' clock, leaving
/// out each fault's span up to its recovery (to the next fault if it did
/// not recover); `None` if less than two windows remain or nothing
/// completed.
pub fn periodic_dip(
    completions: &Completions,
    from_ms: u64,
    to_ms: u64,
    recoveries: &[Recovery],
) -> Option<PeriodicDip> {
    let bins = Bins::new(completions);
    let excluded: Vec<(u64, u64)> = recoveries
        .iter()
        .enumerate()
        .map(|(i, recovery)| {
            let next = recoveries.get(i + 1).map_or(u64::MAX, |next| next.at_ms);
            let until = match recovery.recovered {
                Recovered::AfterMs(ms) => recovery.at_ms.saturating_add(ms),
                _ => next,
            };
            (recovery.at_ms, until)
        })
        .collect();
    let window = bins.window_bins();
    let rates: Vec<(u64, f64)> = (0..bins.counts.len().saturating_sub(window - 1))
        .filter_map(|k| {
            let (start_ms, end_ms) = (
                bins.bin_start_us(k) / 1000,
                bins.bin_start_us(k + window) / 1000,
            );
            let inside = start_ms >= from_ms && end_ms <= to_ms;
            let faulted = excluded
                .iter()
                .any(|&(at, until)| start_ms < until && end_ms > at);
            (inside && !faulted).then(|| (start_ms, bins.rate(k, window)))
        })
        .collect();
    if rates.len() < 2 {
        return None;
    }
    let mean = rates.iter().map(|(_, rate)| rate).sum::<f64>() / rates.len() as f64;
    if mean <= 0.0 {
        return None;
    }
    let lowest = rates
        .iter()
        .map(|&(_, rate)| rate)
        .fold(f64::INFINITY, f64::min);
    let mut starts = Vec::new();
    let mut below = false;
    for &(at, rate) in &rates {
        let now_below = rate < RECOVERED_FRACTION * mean;
        if now_below && !below {
            starts.push(at);
        }
        below = now_below;
    }
    let period_ms = (starts.len() >= 2)
        .then(|| (starts[starts.len() - 1] - starts[0]) / (starts.len() as u64 - 1));
    Some(PeriodicDip {
        mean_ops_per_sec: mean,
        lowest_ops_per_sec: lowest,
        fraction: lowest / mean,
        dips: starts.len() as u32,
        period_ms,
    })
}

/// Fills every point's [`PointResult::recovery`] from its faults, and its
/// [`PointResult::periodic_dip`] if its protocol's leader rotates: what
/// the results file and the recovery table show.
pub fn annotate(results: &mut RunResults) {
    let warmup_ms = results
        .recorded_experiment()
        .map_or(0, |experiment| millis(experiment.warmup));
    let slow_op_ms = slow_op_ms(results);
    for point in &mut results.points {
        point.recovery = recoveries(
            &point.completions,
            &point.intervals,
            &point.faults,
            slow_op_ms,
        );
        let rotates = protocol_spec(&point.protocol).is_some_and(|spec| spec.rotates_leader);
        point.periodic_dip = if rotates {
            let from_ms = point.completions.start_us / 1000 + warmup_ms;
            periodic_dip(
                &point.completions,
                from_ms,
                from_ms + point.measured_ms,
                &point.recovery,
            )
        } else {
            None
        };
    }
}

/// The bound the run's clients counted slow operations against: the
/// recorded experiment's, or the default if it does not read back.
pub fn slow_op_ms(results: &RunResults) -> u64 {
    results
        .recorded_experiment()
        .map_or(SLOW_OP_MS_DEFAULT, |experiment| millis(experiment.slow_op))
}

/// The points a timeline plot is drawn for: every point of a one-point
/// run (by its experiment's points, so that the files saved after the first
/// point of a longer run get none), and every point that had faults.
pub fn plotted_points(results: &RunResults) -> Vec<&PointResult> {
    let planned = results
        .recorded_experiment()
        .map_or(results.points.len(), |experiment| experiment.points().len());
    if planned == 1 && results.points.len() == 1 {
        return results.points.iter().collect();
    }
    results
        .points
        .iter()
        .filter(|point| !point.faults.is_empty())
        .collect()
}

/// `timeline.csv`: one row per interval report of every point, in the
/// points' order. Columns: `protocol`, `variant`, `clients`, `offered_ops`,
/// `trial`, `t_ms` (the interval's end on the clients node's clock),
/// `ops_per_sec`, `latency_us_p50`, `latency_us_p99`, `slow_ops` (slower
/// than `slow_op_ms`, the last column: the experiment's bound).
pub fn timeline_csv(results: &RunResults) -> anyhow::Result<Vec<u8>> {
    let slow_op_ms = slow_op_ms(results).to_string();
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "protocol",
        "variant",
        "clients",
        "offered_ops",
        "trial",
        "t_ms",
        "ops_per_sec",
        "latency_us_p50",
        "latency_us_p99",
        "slow_ops",
        "slow_op_ms",
    ])?;
    for point in &results.points {
        for row in timeline(&point.intervals) {
            csv.write_record([
                point.protocol.clone(),
                variant_label(point),
                point.clients.to_string(),
                point.offered_ops.map(|r| r.to_string()).unwrap_or_default(),
                point.trial.to_string(),
                row.t_ms.to_string(),
                format!("{:.1}", row.ops_per_sec),
                row.latency_us_p50.to_string(),
                row.latency_us_p99.to_string(),
                row.slow_ops.to_string(),
                slow_op_ms.clone(),
            ])?;
        }
    }
    Ok(csv.into_inner()?)
}

/// `recovery.csv`: one row per fault of every point ([`annotate`]d).
/// Columns: the point (`protocol`, `variant`, `clients`, `offered_ops`,
/// `trial`), the fault (`at_ms`, `label`), `pre_fault_ops_per_sec`,
/// `first_completion_ms`, `recovered_ms` (empty with `recovered` saying
/// `not recovered` or `no pre-fault rate`), `recovered`, `dip_ops_per_sec`,
/// `dip_fraction`, `slow_ops`, `slow_op_ms`, `view_changes_point` (the
/// point's, not the fault's).
pub fn recovery_csv(results: &RunResults) -> anyhow::Result<Vec<u8>> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "protocol",
        "variant",
        "clients",
        "offered_ops",
        "trial",
        "at_ms",
        "label",
        "pre_fault_ops_per_sec",
        "first_completion_ms",
        "recovered_ms",
        "recovered",
        "dip_ops_per_sec",
        "dip_fraction",
        "slow_ops",
        "slow_op_ms",
        "view_changes_point",
    ])?;
    let number = |value: Option<f64>, decimals: usize| {
        value.map_or_else(String::new, |v| format!("{v:.decimals$}"))
    };
    for point in &results.points {
        for r in &point.recovery {
            let (recovered_ms, recovered) = match r.recovered {
                Recovered::AfterMs(ms) => (ms.to_string(), "recovered"),
                Recovered::NotRecovered => (String::new(), "not recovered"),
                Recovered::NoPreFaultRate => (String::new(), "no pre-fault rate"),
            };
            csv.write_record([
                point.protocol.clone(),
                variant_label(point),
                point.clients.to_string(),
                point.offered_ops.map(|r| r.to_string()).unwrap_or_default(),
                point.trial.to_string(),
                r.at_ms.to_string(),
                r.label.clone(),
                number(r.pre_fault_ops_per_sec, 1),
                r.first_completion_ms
                    .map(|ms| ms.to_string())
                    .unwrap_or_default(),
                recovered_ms,
                recovered.to_string(),
                number(r.dip_ops_per_sec, 1),
                number(r.dip_fraction, 3),
                r.slow_ops.to_string(),
                r.slow_op_ms.to_string(),
                point.counter(VIEW_CHANGES_COUNTER).to_string(),
            ])?;
        }
    }
    Ok(csv.into_inner()?)
}

/// The table printed after the summary when any point had faults (or a
/// periodic dip): one row per fault, then one per point with a periodic
/// dip; `None` when there is neither.
pub fn recovery_table(results: &RunResults) -> Option<String> {
    let faults = results.points.iter().any(|p| !p.recovery.is_empty());
    let dips = results.points.iter().any(|p| p.periodic_dip.is_some());
    if !faults && !dips {
        return None;
    }
    let mut out = String::new();
    if faults {
        let mut rows = vec![[
            "point".to_string(),
            "fault".to_string(),
            "pre-fault ops/s".to_string(),
            "first op".to_string(),
            "90% after".to_string(),
            "dip".to_string(),
            format!("slow (>{} ms)", slow_op_ms(results)),
            "view changes (point)".to_string(),
        ]];
        for point in &results.points {
            for r in &point.recovery {
                rows.push([
                    point_label(point),
                    format!("{} at {}", r.label, seconds_label(r.at_ms)),
                    r.pre_fault_ops_per_sec
                        .map_or("none".to_string(), |rate| thousands(rate.round() as u64)),
                    r.first_completion_ms
                        .map_or("none".to_string(), |ms| format!("{ms} ms")),
                    match r.recovered {
                        Recovered::AfterMs(ms) => format!("{ms} ms"),
                        Recovered::NotRecovered => "not recovered".to_string(),
                        Recovered::NoPreFaultRate => "no pre-fault rate".to_string(),
                    },
                    match (r.dip_fraction, r.dip_ops_per_sec) {
                        (Some(fraction), _) => format!("{:.0}%", fraction * 100.0),
                        (None, Some(rate)) => format!("{} ops/s", thousands(rate.round() as u64)),
                        (None, None) => "none".to_string(),
                    },
                    thousands(r.slow_ops),
                    thousands(point.counter(VIEW_CHANGES_COUNTER)),
                ]);
            }
        }
        out.push_str(&aligned(&rows));
        let _ = writeln!(
            out,
            "first op: to the first completion after the fault; 90% after: back to 90% of the \
             mean rate over the {} ms before it ({} ms windows); dip: the lowest window in the \
             {} s after it, of that rate",
            PRE_FAULT_WINDOW_MS,
            RATE_WINDOW_MS,
            POST_FAULT_WINDOW_MS / 1000
        );
    }
    if dips {
        let mut rows = vec![[
            "point".to_string(),
            "mean ops/s".to_string(),
            "lowest".to_string(),
            "dips".to_string(),
            "period".to_string(),
        ]];
        for point in &results.points {
            if let Some(dip) = &point.periodic_dip {
                rows.push([
                    point_label(point),
                    thousands(dip.mean_ops_per_sec.round() as u64),
                    format!("{:.0}%", dip.fraction * 100.0),
                    dip.dips.to_string(),
                    dip.period_ms
                        .map_or("none".to_string(), |ms| format!("{ms} ms")),
                ]);
            }
        }
        let _ = writeln!(out, "periodic dip of a rotating leader:");
        out.push_str(&aligned(&rows));
    }
    Some(out)
}

/// `pbft batch_max=16, 100 clients, trial 1`.
pub fn point_label(point: &PointResult) -> String {
    let mut label = crate::experiment::series(&point.protocol, &point.variant);
    let _ = write!(label, ", {} clients", point.clients);
    if let Some(rate) = point.offered_ops {
        let _ = write!(label, " at {} ops/s", thousands(rate));
    }
    let _ = write!(label, ", trial {}", point.trial);
    label
}

fn variant_label(point: &PointResult) -> String {
    point
        .variant
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `3.2 s`.
fn seconds_label(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// Rows of cells, each column padded to its widest cell.
pub(crate) fn aligned<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|c| {
            rows.iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The completion bins with prefix sums, in microseconds on the node's
/// clock.
struct Bins<'a> {
    counts: &'a [u32],
    start_us: u64,
    bin_us: u64,
    /// `prefix[i]`: completions in bins `0..i`.
    prefix: Vec<u64>,
}

impl<'a> Bins<'a> {
    fn new(completions: &'a Completions) -> Bins<'a> {
        let mut prefix = Vec::with_capacity(completions.counts.len() + 1);
        prefix.push(0);
        for &n in &completions.counts {
            prefix.push(prefix.last().copied().unwrap_or(0) + u64::from(n));
        }
        Bins {
            counts: &completions.counts,
            start_us: completions.start_us,
            bin_us: completions.bin_ms.clamp(1, u64::MAX / 1000) * 1000,
            prefix,
        }
    }

    /// Saturating: the bins came from a node, whatever it sent.
    fn bin_start_us(&self, bin: usize) -> u64 {
        self.start_us
            .saturating_add((bin as u64).saturating_mul(self.bin_us))
    }

    /// Bins in a rate window (at least one).
    fn window_bins(&self) -> usize {
        ((RATE_WINDOW_MS * 1000).div_ceil(self.bin_us) as usize).max(1)
    }

    /// The bin holding `ms` (0 before the first; `len` past the last).
    fn bin_of_ms(&self, ms: u64) -> usize {
        let us = ms.saturating_mul(1000);
        if us < self.start_us {
            return 0;
        }
        usize::try_from((us - self.start_us) / self.bin_us)
            .unwrap_or(usize::MAX)
            .min(self.counts.len())
    }

    /// Operations per second over bins `[from, from + n)`.
    fn rate(&self, from: usize, n: usize) -> f64 {
        let ops = self.prefix[from + n] - self.prefix[from];
        ops as f64 * 1e6 / (n as f64 * self.bin_us as f64)
    }

    /// `fault`'s figures over its span, to `span_end_ms` (the next fault, or
    /// `u64::MAX`); the previous fault bounds its pre-fault window. Slow
    /// operations are left for the caller.
    fn recovery(
        &self,
        fault: &FaultRecord,
        previous: Option<&FaultRecord>,
        span_end_ms: u64,
    ) -> Recovery {
        let window = self.window_bins();
        let fault_bin = self.bin_of_ms(fault.at_ms);
        let fault_us = fault.at_ms.saturating_mul(1000);
        let end = self.bin_of_ms(span_end_ms);
        // The pre-fault window: whole bins before the fault's, after the
        // previous fault's.
        let pre_bins = ((PRE_FAULT_WINDOW_MS * 1000) / self.bin_us) as usize;
        let floor = previous.map_or(0, |p| (self.bin_of_ms(p.at_ms) + 1).min(fault_bin));
        let pre_from = fault_bin.saturating_sub(pre_bins).max(floor);
        let pre_fault = (fault_bin - pre_from >= window)
            .then(|| self.rate(pre_from, fault_bin - pre_from))
            .filter(|rate| *rate > 0.0);
        let after = fault_bin + 1;
        let first_completion_ms = (after..end).find(|&bin| self.counts[bin] > 0).map(|bin| {
            (self.bin_start_us(bin + 1) - fault_us.min(self.bin_start_us(bin + 1))) / 1000
        });
        // Windows starting wholly after the fault's bin and inside the span.
        let windows = after..(end + 1).saturating_sub(window).max(after);
        let window_end_ms =
            |k: usize| (self.bin_start_us(k + window).saturating_sub(fault_us)) / 1000;
        let recovered = match pre_fault {
            None => Recovered::NoPreFaultRate,
            // Not one whole window after the fault: nothing says it came back.
            Some(_) if windows.is_empty() => Recovered::NotRecovered,
            Some(pre) => {
                let bar = RECOVERED_FRACTION * pre;
                match windows.clone().find(|&k| self.rate(k, window) < bar) {
                    None => Recovered::AfterMs(0),
                    Some(fell) => windows
                        .clone()
                        .filter(|&k| k > fell)
                        .find(|&k| self.rate(k, window) >= bar)
                        .map_or(Recovered::NotRecovered, |k| {
                            Recovered::AfterMs(window_end_ms(k))
                        }),
                }
            }
        };
        let post_bins = ((POST_FAULT_WINDOW_MS * 1000) / self.bin_us) as usize;
        let dip_ops_per_sec = windows
            .clone()
            .filter(|&k| k + window <= after + post_bins)
            .map(|k| self.rate(k, window))
            .reduce(f64::min);
        Recovery {
            at_ms: fault.at_ms,
            label: fault.label.clone(),
            pre_fault_ops_per_sec: pre_fault,
            first_completion_ms,
            recovered,
            dip_ops_per_sec,
            dip_fraction: pre_fault.zip(dip_ops_per_sec).map(|(pre, dip)| dip / pre),
            slow_ops: 0,
            slow_op_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIN_MS: u64 = wire::control::COMPLETION_BIN_MS;

    /// Bins from `start_us`, each run of `(bins, count)` in turn.
    fn bins(start_us: u64, runs: &[(usize, u32)]) -> Completions {
        Completions {
            start_us,
            bin_ms: BIN_MS,
            counts: runs
                .iter()
                .flat_map(|&(n, count)| std::iter::repeat_n(count, n))
                .collect(),
        }
    }

    fn fault(at_ms: u64) -> FaultRecord {
        FaultRecord {
            at_ms,
            label: format!("kill at {at_ms}"),
        }
    }

    fn one(completions: &Completions, at_ms: u64) -> Recovery {
        let mut all = recoveries(completions, &[], &[fault(at_ms)], 100);
        assert_eq!(all.len(), 1);
        all.remove(0)
    }

    /// 10 completions a bin (1,000 ops/s) for 2 s, none for 500 ms, then
    /// 10 a bin again: the rate comes back once a whole window is past the
    /// gap but one bin.
    #[test]
    fn a_clean_stop_and_resume() {
        let completions = bins(0, &[(200, 10), (50, 0), (200, 10)]);
        let r = one(&completions, 2_000);
        assert_eq!(r.pre_fault_ops_per_sec, Some(1_000.0));
        // Bin 200 (the fault's) is empty; bin 250 is the first with a
        // completion, ending 510 ms after the fault.
        assert_eq!(r.first_completion_ms, Some(510));
        // The first window at 90% starts at bin 249 (9 of its 10 bins
        // full) and ends at bin 259: 590 ms after the fault.
        assert_eq!(r.recovered, Recovered::AfterMs(590));
        assert_eq!(r.dip_ops_per_sec, Some(0.0));
        assert_eq!(r.dip_fraction, Some(0.0));
    }

    /// Half the rate for a second, then back.
    #[test]
    fn a_partial_dip() {
        let completions = bins(0, &[(300, 10), (100, 5), (300, 10)]);
        let r = one(&completions, 3_000);
        assert_eq!(r.first_completion_ms, Some(20));
        assert_eq!(r.dip_fraction, Some(0.5));
        // Windows reach 90% again when at least 8 of their 10 bins are
        // full: starting at bin 398, ending at 408, 1,080 ms after.
        assert_eq!(r.recovered, Recovered::AfterMs(1_080));
    }

    /// Nothing completes after the fault, to the end of the run.
    #[test]
    fn a_fault_that_never_recovers() {
        let completions = bins(0, &[(300, 10), (200, 0)]);
        let r = one(&completions, 3_000);
        assert_eq!(r.pre_fault_ops_per_sec, Some(1_000.0));
        assert_eq!(r.first_completion_ms, None);
        assert_eq!(r.recovered, Recovered::NotRecovered);
        assert_eq!(r.dip_fraction, Some(0.0));
    }

    /// A fault in the first interval has no pre-fault window: no recovery
    /// time and no dip fraction, only what can be said without one.
    #[test]
    fn a_fault_with_no_pre_fault_window() {
        let completions = bins(0, &[(300, 10)]);
        let r = one(&completions, 50);
        assert_eq!(r.pre_fault_ops_per_sec, None);
        assert_eq!(r.recovered, Recovered::NoPreFaultRate);
        assert_eq!(r.dip_fraction, None);
        assert_eq!(r.dip_ops_per_sec, Some(1_000.0));
        // The fault falls in bin 5; bin 6, the first wholly after it, ends
        // at 70 ms.
        assert_eq!(r.first_completion_ms, Some(20));
    }

    /// A fault that does not dent the rate has recovered at once.
    #[test]
    fn a_fault_without_a_dip() {
        let r = one(&bins(0, &[(500, 10)]), 2_000);
        assert_eq!(r.recovered, Recovered::AfterMs(0));
        assert_eq!(r.dip_fraction, Some(1.0));
    }

    /// Bins that start later than the node's clock (the clients started
    /// after the node): times are still from the fault.
    #[test]
    fn bins_offset_on_the_node_clock() {
        let completions = bins(3_500, &[(200, 10), (50, 0), (200, 10)]);
        let r = one(&completions, 2_003);
        // The fault falls in bin 199 (1,993.5 to 2,003.5 ms); the first
        // completion is in bin 250, which ends at 2,513.5 ms.
        assert_eq!(r.first_completion_ms, Some(510));
        assert!(matches!(r.recovered, Recovered::AfterMs(590)));
    }

    /// A kill and a restart: each fault's span ends at the next, and the
    /// second's pre-fault window starts after the first.
    #[test]
    fn each_fault_has_its_own_span() {
        let completions = bins(0, &[(300, 10), (100, 0), (100, 4), (300, 10)]);
        let faults = [fault(3_000), fault(4_000)];
        let intervals: Vec<IntervalReport> = (1..=80)
            .map(|i| IntervalReport {
                elapsed_ms: i * 100,
                ops: 100,
                latency_us_p50: 100,
                latency_us_p99: 200,
                slow_ops: if (31..=40).contains(&i) { 2 } else { 1 },
                leader: None,
                executed: None,
            })
            .collect();
        let all = recoveries(&completions, &intervals, &faults, 100);
        // Nothing completed, and so never back to 90%, before the restart
        // (what came after it is the restart's).
        assert_eq!(all[0].recovered, Recovered::NotRecovered);
        assert_eq!(all[0].first_completion_ms, None);
        assert_eq!(all[1].first_completion_ms, Some(20));
        // Intervals ending in (3.0 s, 4.0 s].
        assert_eq!(all[0].slow_ops, 20);
        // Before the restart the rate was 0 (window after the first fault):
        // no pre-fault rate to come back to.
        assert_eq!(all[1].pre_fault_ops_per_sec, None);
        assert_eq!(all[1].recovered, Recovered::NoPreFaultRate);
        // The rest of the run: 40 intervals, one slow op each.
        assert_eq!(all[1].slow_ops, 40);
    }

    /// A dip every 500 ms (one empty 100 ms stretch) is found, counted and
    /// timed; a fault's span is left out.
    #[test]
    fn a_periodic_dip() {
        let mut runs = Vec::new();
        for _ in 0..10 {
            runs.push((40, 10));
            runs.push((10, 0));
        }
        let completions = bins(0, &runs);
        let dip = periodic_dip(&completions, 0, 5_000, &[]).unwrap();
        assert_eq!(dip.dips, 10);
        assert_eq!(dip.period_ms, Some(500));
        assert_eq!(dip.lowest_ops_per_sec, 0.0);
        // 80% of bins full, give or take the windows cut at the ends.
        assert!((dip.mean_ops_per_sec - 800.0).abs() < 10.0);
        assert_eq!(dip.fraction, 0.0);
        // A fault's span, to its recovery, is not a periodic dip.
        let faulted = bins(0, &[(200, 10), (50, 0), (250, 10)]);
        let recovery = one(&faulted, 2_000);
        assert_eq!(recovery.recovered, Recovered::AfterMs(590));
        let dip = periodic_dip(&faulted, 0, 5_000, &[recovery]).unwrap();
        assert_eq!((dip.dips, dip.fraction), (0, 1.0));
        let steady = periodic_dip(&bins(0, &[(500, 10)]), 0, 5_000, &[]).unwrap();
        assert_eq!((steady.dips, steady.fraction), (0, 1.0));
        assert_eq!(periodic_dip(&bins(0, &[(5, 10)]), 0, 5_000, &[]), None);
    }

    #[test]
    fn timeline_rates_each_interval_by_its_length() {
        let intervals = [
            IntervalReport {
                elapsed_ms: 120,
                ops: 12,
                latency_us_p50: 5,
                latency_us_p99: 9,
                slow_ops: 0,
                leader: None,
                executed: None,
            },
            IntervalReport {
                elapsed_ms: 220,
                ops: 50,
                latency_us_p50: 6,
                latency_us_p99: 10,
                slow_ops: 3,
                leader: None,
                executed: None,
            },
        ];
        let rows = timeline(&intervals);
        assert_eq!(rows[0].ops_per_sec, 100.0);
        assert_eq!(rows[1].ops_per_sec, 500.0);
        assert_eq!((rows[1].t_ms, rows[1].slow_ops), (220, 3));
    }

    /// A run whose one point had a fault: the recovery table, CSV and files.
    #[test]
    fn a_faulted_run_gets_its_recovery_table_csv_and_timeline_files() {
        let mut results = crate::results::tests::sample();
        results.points.truncate(2);
        let point = &mut results.points[1];
        point.completions = bins(0, &[(300, 10), (50, 0), (300, 10)]);
        point.faults = vec![fault(3_000)];
        point.counters.insert(VIEW_CHANGES_COUNTER.to_string(), 3);
        let mut annotated = results.clone();
        annotate(&mut annotated);
        assert!(annotated.points[0].recovery.is_empty());
        assert_eq!(
            annotated.points[1].recovery[0].recovered,
            Recovered::AfterMs(590)
        );
        let table = recovery_table(&annotated).unwrap();
        assert!(table.contains("kill at 3000 at 3.0 s"), "{table}");
        assert!(
            table.contains("590 ms") && table.contains("510 ms"),
            "{table}"
        );
        assert!(table.contains("slow (>100 ms)"), "{table}");
        let csv = String::from_utf8(recovery_csv(&annotated).unwrap()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2, "{csv}");
        assert!(
            lines[1]
                .starts_with("pbft,,1,,0,3000,kill at 3000,1000.0,510,590,recovered,0.0,0.000,")
        );
        assert!(lines[1].ends_with(",100,3"), "{csv}");
        // No faults, no table.
        assert_eq!(recovery_table(&crate::results::tests::sample()), None);

        let dir = std::env::temp_dir().join(format!("timeline-files-{}", std::process::id()));
        let written = crate::save::write_all(&dir, &results).unwrap();
        assert_eq!(written.recovery_csv, Some(dir.join("recovery.csv")));
        assert_eq!(
            written.timelines,
            [
                dir.join("timeline-pbft-1c-t0.svg"),
                dir.join("timeline-pbft-1c-t0.png")
            ]
        );
        for path in written.timelines.iter().chain([&written.timeline_csv]) {
            assert!(std::fs::metadata(path).unwrap().len() > 0);
        }
        let json = std::fs::read_to_string(&written.json).unwrap();
        let back: RunResults = serde_json::from_str(&json).unwrap();
        assert_eq!(back.points[1].recovery, annotated.points[1].recovery);
        assert_eq!(back.points[1].completions, results.points[1].completions);
        let timeline = std::fs::read_to_string(&written.timeline_csv).unwrap();
        // A header, then each point's twelve intervals.
        assert_eq!(timeline.lines().count(), 1 + 24);
        assert!(
            timeline
                .lines()
                .nth(1)
                .unwrap()
                .starts_with("unreplicated,,1,,0,1000,")
        );
        std::fs::remove_dir_all(dir).unwrap();

        // Without faults: no recovery file, and no timeline plot for a run
        // of several points.
        let dir = std::env::temp_dir().join(format!("timeline-none-{}", std::process::id()));
        let written = crate::save::write_all(&dir, &crate::results::tests::sample()).unwrap();
        assert_eq!(written.recovery_csv, None);
        assert!(written.timelines.is_empty());
        assert!(!dir.join("recovery.csv").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A one-point run gets its timeline plot; the first point of a longer
    /// run, saved before the rest ran, does not.
    #[test]
    fn only_a_one_point_run_plots_a_point_without_faults() {
        let mut results = crate::results::tests::sample();
        results.points.truncate(1);
        assert!(plotted_points(&results).is_empty());
        let mut experiment = results.recorded_experiment().unwrap();
        experiment.protocols = vec!["unreplicated".to_string()];
        experiment.sweep = crate::experiment::Sweep::Clients(vec![1]);
        experiment.trials = 1;
        assert_eq!(experiment.points().len(), 1);
        results.experiment = serde_json::to_value(experiment).unwrap();
        assert_eq!(plotted_points(&results).len(), 1);
    }

    /// The slow bound is the experiment's: recorded with it, 100 ms in a
    /// record from before it existed, and checked before a run.
    #[test]
    fn the_slow_bound_is_the_experiments() {
        let mut results = crate::results::tests::sample();
        let mut experiment = results.recorded_experiment().unwrap();
        experiment.slow_op = std::time::Duration::from_millis(250);
        results.experiment = serde_json::to_value(&experiment).unwrap();
        assert_eq!(slow_op_ms(&results), 250);
        let csv = String::from_utf8(timeline_csv(&results).unwrap()).unwrap();
        assert!(csv.lines().nth(1).unwrap().ends_with(",250"), "{csv}");
        results
            .experiment
            .as_object_mut()
            .unwrap()
            .remove("slow_op");
        assert_eq!(slow_op_ms(&results), SLOW_OP_MS_DEFAULT);
        experiment.slow_op = std::time::Duration::ZERO;
        let error = format!("{:#}", experiment.validate().unwrap_err());
        assert!(
            error.contains("--slow-op 0s: must be from 1 ms to an hour"),
            "{error}"
        );
    }

    /// Bins from a node that sent nonsense (an offset at the end of time,
    /// an enormous bin) give figures, not a panic.
    #[test]
    fn extreme_bins_do_not_panic() {
        for (start_us, bin_ms) in [(u64::MAX, BIN_MS), (0, u64::MAX), (u64::MAX, 0), (0, 0)] {
            let completions = Completions {
                start_us,
                bin_ms,
                counts: vec![u32::MAX; 500],
            };
            for at_ms in [0, 1_000, u64::MAX] {
                let all = recoveries(&completions, &[], &[fault(at_ms), fault(0)], 100);
                assert_eq!(all.len(), 2);
            }
            let _ = periodic_dip(&completions, 0, u64::MAX, &[]);
        }
        // A fault at the very end: no whole window after it.
        let r = one(&bins(0, &[(300, 10)]), 2_995);
        assert_eq!(r.recovered, Recovered::NotRecovered);
        assert_eq!(r.dip_ops_per_sec, None);
    }
}
