//! The timeline figure of one point, `timeline-<point>.svg` and `.png`
//! beside `plot.svg`: throughput over time above, p50 and p99 latency over
//! time below (logarithmic), both against seconds on the clients node's
//! clock, one mark per interval report ([`crate::timeline::timeline`]).
//! Each fault the point applied ([`crate::results::PointResult::faults`])
//! is a dashed vertical line through both panels, labelled at the top
//! with its name and time. The text, fonts and rasterizing are the main
//! plot's ([`crate::plot`]).

use anyhow::Context as _;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::plot::{FONT, PALETTE, plot_error, register_font, svg_to_png};
use crate::results::{PointResult, RunResults};
use crate::timeline::{Recovered, TimelineRow, point_label, timeline};

pub const TIMELINE_WIDTH_PX: u32 = 1400;
pub const TIMELINE_HEIGHT_PX: u32 = 900;

const TITLE_SIZE: f64 = 26.0;
const DESC_SIZE: f64 = 19.0;
const TICK_SIZE: f64 = 16.0;
const FAULT_LABEL_SIZE: f64 = 16.0;
const FAULT: RGBColor = RGBColor(200, 30, 30);

/// The file name, without extension, of `point`'s timeline: the series,
/// load and trial, in characters any file system takes
/// (`timeline-pbft-100c-t1`).
pub fn file_stem(point: &PointResult) -> String {
    let mut stem = format!("timeline-{}", point.protocol);
    for (name, value) in &point.variant {
        stem.push_str(&format!("-{name}{value}"));
    }
    stem.push_str(&format!("-{}c", point.clients));
    if let Some(rate) = point.offered_ops {
        stem.push_str(&format!("-{rate}ops"));
    }
    stem.push_str(&format!("-t{}", point.trial));
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `point`'s timeline as an SVG document.
pub fn render_svg(results: &RunResults, point: &PointResult) -> anyhow::Result<String> {
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (TIMELINE_WIDTH_PX, TIMELINE_HEIGHT_PX))
            .into_drawing_area();
        draw(&root, results, point)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// `point`'s timeline as a PNG file's bytes (its SVG, rasterized).
pub fn render_png(results: &RunResults, point: &PointResult) -> anyhow::Result<Vec<u8>> {
    svg_to_png(
        &render_svg(results, point)?,
        TIMELINE_WIDTH_PX,
        TIMELINE_HEIGHT_PX,
    )
    .context("rasterizing the timeline")
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    results: &RunResults,
    point: &PointResult,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let title = format!("{}: {} over time", results.name, point_label(point));
    let style = TextStyle::from((FONT, TITLE_SIZE).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(title, (TIMELINE_WIDTH_PX as i32 / 2, 12), style))
        .map_err(plot_error)?;
    let body = root.margin(56, 10, 10, 20);
    let (top, bottom) = body.split_vertically(body.dim_in_pixel().1 / 2);

    let rows = timeline(&point.intervals);
    let seconds = |ms: u64| ms as f64 / 1000.0;
    let x_end = rows
        .last()
        .map(|row| seconds(row.t_ms))
        .into_iter()
        .chain(point.faults.iter().map(|f| seconds(f.at_ms)))
        .fold(1.0, f64::max);
    let x_range = 0.0..x_end * 1.02;

    // Throughput.
    let ops_max = rows.iter().map(|row| row.ops_per_sec).fold(1.0, f64::max);
    let ops_top = ops_max * 1.15;
    let mut chart = ChartBuilder::on(&top)
        .margin(8)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(90)
        .build_cartesian_2d(x_range.clone(), 0.0..ops_top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("throughput (ops/s)")
        .axis_desc_style((FONT, DESC_SIZE))
        .label_style((FONT, TICK_SIZE))
        .y_label_formatter(&|v| ops_label(*v))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            rows.iter().map(|row| (seconds(row.t_ms), row.ops_per_sec)),
            PALETTE[0].stroke_width(2),
        ))
        .map_err(plot_error)?
        .label("throughput")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 30, y)], PALETTE[0].stroke_width(2)));
    for fault in &point.faults {
        let x = seconds(fault.at_ms);
        chart
            .draw_series(DashedLineSeries::new(
                [(x, 0.0), (x, ops_top)],
                8,
                5,
                FAULT.stroke_width(2),
            ))
            .map_err(plot_error)?;
        let style = TextStyle::from((FONT, FAULT_LABEL_SIZE).into_font())
            .color(&FAULT)
            .pos(Pos::new(HPos::Left, VPos::Top));
        let label = fault_label(point, fault);
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((x, ops_top)) + Text::new(label, (6, 4), style),
            ))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, TICK_SIZE))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;

    // Latency, p50 and p99, of the intervals that completed something; an
    // interval that completed nothing breaks the line.
    let measured: Vec<_> = rows.iter().filter(|row| row.latency_us_p99 > 0).collect();
    let segments: Vec<&[TimelineRow]> = rows
        .split(|row| row.latency_us_p99 == 0)
        .filter(|segment| !segment.is_empty())
        .collect();
    let low = measured
        .iter()
        .map(|row| row.latency_us_p50.max(1))
        .min()
        .unwrap_or(1);
    let high = measured
        .iter()
        .map(|row| row.latency_us_p99)
        .max()
        .unwrap_or(10)
        .max(low * 10);
    let (y_low, y_high) = (
        10f64.powf((low as f64).log10().floor()),
        10f64.powf((high as f64).log10().ceil()),
    );
    let mut chart = ChartBuilder::on(&bottom)
        .margin(8)
        .margin_right(24)
        .x_label_area_size(44)
        .y_label_area_size(90)
        .build_cartesian_2d(x_range, (y_low..y_high).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (µs)")
        .axis_desc_style((FONT, DESC_SIZE))
        .label_style((FONT, TICK_SIZE))
        .y_label_formatter(&|v| micros_label(*v))
        .draw()
        .map_err(plot_error)?;
    let p50: fn(&TimelineRow) -> u64 = |row| row.latency_us_p50;
    let p99: fn(&TimelineRow) -> u64 = |row| row.latency_us_p99;
    for (name, colour, value) in [("p50", PALETTE[1], p50), ("p99", PALETTE[2], p99)] {
        let at = |row: &TimelineRow| (seconds(row.t_ms), value(row).max(1) as f64);
        for (i, segment) in segments.iter().enumerate() {
            let line = chart
                .draw_series(LineSeries::new(
                    segment.iter().map(at),
                    colour.stroke_width(2),
                ))
                .map_err(plot_error)?;
            if i == 0 {
                line.label(name).legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 30, y)], colour.stroke_width(2))
                });
            }
            // A lone interval between stalls is a dot, not an invisible line.
            if segment.len() == 1 {
                chart
                    .draw_series(
                        segment
                            .iter()
                            .map(|row| Circle::new(at(row), 3, colour.filled())),
                    )
                    .map_err(plot_error)?;
            }
        }
    }
    for fault in &point.faults {
        let x = seconds(fault.at_ms);
        chart
            .draw_series(DashedLineSeries::new(
                [(x, y_low), (x, y_high)],
                8,
                5,
                FAULT.stroke_width(2),
            ))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, TICK_SIZE))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// `kill primary (replica 0) at 3.0 s`, with how the point came back when
/// its recovery is known: `…: 90% after 590 ms`.
fn fault_label(point: &PointResult, fault: &crate::results::FaultRecord) -> String {
    let mut label = format!("{} at {:.1} s", fault.label, fault.at_ms as f64 / 1000.0);
    let recovery = point
        .recovery
        .iter()
        .find(|r| r.at_ms == fault.at_ms && r.label == fault.label);
    if let Some(recovery) = recovery {
        match recovery.recovered {
            Recovered::AfterMs(ms) => label.push_str(&format!(": 90% after {ms} ms")),
            Recovered::NotRecovered => label.push_str(": not recovered"),
            Recovered::NoPreFaultRate => {}
        }
    }
    label
}

/// `0`, `500`, `2.5k`, `1.5M`.
fn ops_label(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", trimmed(value / 1e6))
    } else if value >= 1e3 {
        format!("{}k", trimmed(value / 1e3))
    } else {
        trimmed(value)
    }
}

/// `100`, `1,000`, `1M`.
fn micros_label(value: f64) -> String {
    if value >= 1e6 {
        format!("{}M", trimmed(value / 1e6))
    } else {
        crate::results::thousands(value.round() as u64)
    }
}

fn trimmed(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::FaultRecord;
    use crate::results::tests::{png_size, point, sample};
    use wire::control::IntervalReport;

    /// A point of 8 s at 100 ms intervals, stalled from 3 s to 3.5 s by a
    /// killed primary.
    fn faulted() -> (RunResults, PointResult) {
        let mut point = point("pbft", 100, 1, 0.3);
        point.intervals = (1..=80)
            .map(|i| {
                let stalled = (31..=35).contains(&i);
                IntervalReport {
                    elapsed_ms: i * 100,
                    ops: if stalled { 0 } else { 1_000 },
                    latency_us_p50: if stalled { 0 } else { 900 },
                    latency_us_p99: if stalled { 0 } else { 2_500 },
                    slow_ops: 0,
                    leader: None,
                    executed: None,
                }
            })
            .collect();
        point.faults = vec![
            FaultRecord {
                at_ms: 3_000,
                label: "kill primary (replica 0)".to_string(),
            },
            FaultRecord {
                at_ms: 6_000,
                label: "restart replica 0".to_string(),
            },
        ];
        let mut results = sample();
        results.points = vec![point.clone()];
        (results, point)
    }

    #[test]
    fn timeline_svg_has_axes_series_and_fault_markers() {
        let (results, point) = faulted();
        let svg = render_svg(&results, &point).unwrap();
        assert!(svg.starts_with("<svg"));
        for text in [
            "throughput (ops/s)",
            "latency (µs)",
            "time (s)",
            "p50",
            "p99",
            "kill primary (replica 0) at 3.0 s",
            "restart replica 0 at 6.0 s",
            "default: pbft, 100 clients, trial 1 over time",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // One dashed marker per fault per panel.
        let faults = svg.matches(r##"stroke="#C81E1E""##).count();
        assert!(faults >= 4, "{faults} fault strokes");
    }

    /// A fault's label says how the point came back, once that is known.
    #[test]
    fn fault_markers_carry_the_recovery() {
        let (results, mut point) = faulted();
        point.recovery = crate::timeline::recoveries(
            &wire::control::Completions {
                start_us: 0,
                bin_ms: 10,
                counts: [vec![10; 300], vec![0; 50], vec![10; 450]].concat(),
            },
            &point.intervals,
            &point.faults,
            100,
        );
        let svg = render_svg(&results, &point).unwrap();
        assert!(svg.contains("kill primary (replica 0) at 3.0 s: 90% after 590 ms"));
    }

    #[test]
    fn timeline_png_is_a_png_of_the_expected_size() {
        let (results, mut point) = faulted();
        // The latencies of the operations the stall held up.
        point.intervals[35].latency_us_p50 = 400_000;
        point.intervals[35].latency_us_p99 = 500_000;
        let png = render_png(&results, &point).unwrap();
        assert_eq!(png_size(&png), (TIMELINE_WIDTH_PX, TIMELINE_HEIGHT_PX));
        if let Some(path) = std::env::var_os("RUNNER_TIMELINE_PNG") {
            // RUNNER_TIMELINE_PNG=/tmp/timeline.png cargo test -p runner timeline_png
            std::fs::write(path, &png).unwrap();
        }
    }

    #[test]
    fn a_point_without_intervals_still_draws() {
        let (results, mut point) = faulted();
        point.intervals.clear();
        assert!(render_svg(&results, &point).unwrap().contains("time (s)"));
    }

    #[test]
    fn file_stems_name_the_point_in_safe_characters() {
        let (_, mut point) = faulted();
        assert_eq!(file_stem(&point), "timeline-pbft-100c-t1");
        point.variant = vec![("pbft.batch_max".to_string(), 16)];
        point.offered_ops = Some(5_000);
        assert_eq!(
            file_stem(&point),
            "timeline-pbft-pbft_batch_max16-100c-5000ops-t1"
        );
    }
}
