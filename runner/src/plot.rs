//! The figure the runner leaves as `plot.svg` and `plot.png`.
//!
//! Above the panels, the run's configuration in a subtitle
//! ([`crate::results::setup`]: f and each protocol's replicas, app and
//! workload, the transport the nodes used, idle mode, trials, point length
//! and measured window, hosts).
//!
//! The main panel is throughput (x) against latency (y), one curve per
//! protocol, one marker per load, the loads joined in order of clients (then
//! offered rate), each the mean over its trials ([`crate::results::loads`]).
//! The p50 curve is solid with filled markers; the p99 curve, in the same
//! colour, is dashed with hollow markers. Each protocol also has its own
//! marker shape, so the figure survives black-and-white printing. Each p50
//! marker is labelled with its load: the client count in closed loop, the
//! offered rate in open loop. A load with several trials has error bars
//! through both markers: horizontally from the slowest to the fastest
//! trial's throughput, vertically from the lowest to the highest trial's
//! p50 (or p99). The legend sits in its own column right of the panel, so it
//! never covers a curve.
//!
//! Below it, against load (clients, or offered rate in open loop): the
//! replicas' CPU per operation (µs, every replica together, from
//! `replica_cpu_ms` less idle polling, and the operations of the whole run), the mean batch the
//! leader proposed (protocols reporting the batching counters), and, when a
//! point ran open loop, throughput against offered rate with the line y = x,
//! so saturation shows where the curve leaves it. These panels have error
//! bars from the lowest to the highest trial, too.
//!
//! Scales: every axis is logarithmic, from a power of ten to a power of ten
//! (the decades holding the data, at least one), so two runs' figures line up
//! decade for decade; the data sit a few pixels inside the frame, so a point
//! on a decade is not cut by the axis. Every decade is labelled, the lowest
//! too; when an axis spans at most two decades, 2 and 5 are labelled as well.
//! Tick labels are human-readable: `25k`, `1.5M` ops/s; `1,000` µs.
//!
//! Text: the SVG names the generic `sans-serif` family and leaves the font to
//! the viewer. The PNG is that SVG rasterized (crate `resvg`), with Noto Sans
//! Regular embedded in the binary (crate `ttf-noto-sans`, the font under the
//! Apache License 2.0) standing for `sans-serif`: no system font, fontconfig
//! or freetype is needed, and the two images are one drawing. The layout
//! measures text with that font's metrics.

use std::sync::OnceLock;

use anyhow::Context as _;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::{CoordTranslate as _, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::results::{self, Load, RunResults, Spread};

/// The size of both images, pixels (the SVG's user units).
pub const WIDTH_PX: u32 = 1500;
pub const HEIGHT_PX: u32 = 1150;

/// The plot as an SVG document.
pub fn render_svg(results: &RunResults) -> anyhow::Result<String> {
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
        draw(&root, results)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// The plot as a PNG file's bytes: the SVG of [`render_svg`], rasterized
/// (resvg) with the embedded font standing for its generic family.
pub fn render_png(results: &RunResults) -> anyhow::Result<Vec<u8>> {
    svg_to_png(&render_svg(results)?, WIDTH_PX, HEIGHT_PX)
}

/// An SVG of `width` × `height` drawn by this module's conventions,
/// rasterized with the embedded font standing for its generic family.
pub(crate) fn svg_to_png(svg: &str, width: u32, height: u32) -> anyhow::Result<Vec<u8>> {
    let mut options = resvg::usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_font_data(ttf_noto_sans::REGULAR.to_vec());
    fonts.set_sans_serif_family(EMBEDDED_FAMILY);
    let tree = resvg::usvg::Tree::from_str(svg, &options).context("reading the plot's SVG")?;
    let mut pixmap =
        resvg::tiny_skia::Pixmap::new(width, height).context("allocating the plot's pixels")?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    pixmap.encode_png().context("encoding the PNG")
}

/// The family name inside the embedded font file.
const EMBEDDED_FAMILY: &str = "Noto Sans";

/// The family every text in the plot uses: the viewer's generic sans-serif
/// for the SVG, the embedded font for the PNG (and for measuring text).
pub(crate) const FONT: &str = "sans-serif";
const TITLE_SIZE: f64 = 30.0;
const SUBTITLE_SIZE: f64 = 17.0;
const AXIS_DESC_SIZE: f64 = 22.0;
const TICK_SIZE: f64 = 18.0;
const LEGEND_SIZE: f64 = 19.0;
/// The smaller panels' caption, axis descriptions and ticks.
const PANEL_TITLE_SIZE: f64 = 20.0;
const PANEL_DESC_SIZE: f64 = 17.0;
const PANEL_TICK_SIZE: f64 = 15.0;
/// The load next to each p50 marker.
const POINT_LABEL_SIZE: f64 = 16.0;
/// Marker radius, pixels.
const MARKER_PX: i32 = 6;
/// Half the length of an error bar's cap, pixels.
const CAP_PX: i32 = 5;
/// Where the subtitle's lines and the panels start, pixels from the top.
const SUBTITLE_Y: [i32; 2] = [52, 74];
const BODY_TOP_PX: u32 = 100;
/// The main panel's share of the height below the subtitle.
const MAIN_SHARE: f64 = 0.58;

/// Okabe–Ito colours, distinguishable with the common colour-vision
/// deficiencies; black last.
pub(crate) const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
];
const GREY: RGBColor = RGBColor(90, 90, 90);

#[derive(Clone, Copy, Debug)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
}

const MARKERS: [Marker; 4] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
];

/// One protocol's loads, in order of clients.
#[derive(Debug)]
struct Curve {
    protocol: String,
    loads: Vec<Load>,
    colour: RGBColor,
    marker: Marker,
}

/// A pixel rectangle: left, top, right, bottom.
type Rect = (i32, i32, i32, i32);

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    results: &RunResults,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let curves = curves(results);

    let title = format!("{}: throughput vs latency", results.name);
    let title_style = TextStyle::from((FONT, TITLE_SIZE).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let centre = WIDTH_PX as i32 / 2;
    root.draw(&Text::new(title, (centre, 12), title_style))
        .map_err(plot_error)?;
    for (line, y) in subtitle(results).into_iter().zip(SUBTITLE_Y) {
        let size = fitted_size(root, &line, SUBTITLE_SIZE, WIDTH_PX - 24)?;
        let style = TextStyle::from((FONT, size).into_font())
            .color(&GREY)
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(line, (centre, y), style))
            .map_err(plot_error)?;
    }

    let body = root.margin(BODY_TOP_PX, 10, 10, 10);
    if curves.is_empty() {
        let style = TextStyle::from((FONT, AXIS_DESC_SIZE).into_font())
            .color(&GREY)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let (width, height) = body.dim_in_pixel();
        body.draw(&Text::new(
            "no points measured",
            (width as i32 / 2, height as i32 / 2),
            style,
        ))
        .map_err(plot_error)?;
        return Ok(());
    }

    let (_, body_height) = body.dim_in_pixel();
    let (top, bottom) = body.split_vertically((f64::from(body_height) * MAIN_SHARE) as u32);
    let legend = Legend::of(root, &curves)?;
    let (top_width, _) = top.dim_in_pixel();
    let (main_area, legend_area) = top.split_horizontally(top_width.saturating_sub(legend.width));
    draw_main(root, &main_area, &curves)?;
    legend.draw(&legend_area, &curves)?;

    let open_loop = curves
        .iter()
        .flat_map(|curve| &curve.loads)
        .any(|load| load.offered_ops.is_some());
    let closed_loop = curves
        .iter()
        .flat_map(|curve| &curve.loads)
        .any(|load| load.offered_ops.is_none());
    let (load_desc, load_label): (&str, fn(f64) -> String) = match (open_loop, closed_loop) {
        (false, _) => ("Clients (closed loop)", micros_label),
        (true, false) => ("Offered load (ops/s)", ops_label),
        (true, true) => ("Clients; offered ops/s (open loop)", ops_label),
    };
    let series = |value: fn(&Load) -> Option<Spread>| -> Vec<(&Curve, Vec<(f64, Spread)>)> {
        curves
            .iter()
            .map(|curve| {
                let points = curve
                    .loads
                    .iter()
                    .filter_map(|load| Some((load.level(), value(load)?)))
                    .collect();
                (curve, points)
            })
            .collect()
    };
    let mut panels = vec![
        Panel {
            title: "Replica CPU per operation",
            x_desc: load_desc,
            y_desc: "CPU µs/op, all replicas",
            x_label: load_label,
            y_label: micros_label,
            series: series(|load| load.replica_cpu_us_per_op),
            empty: "no operation completed",
            y_include: &[],
            identity: false,
        },
        Panel {
            title: "Batch size",
            x_desc: load_desc,
            y_desc: "Requests per batch",
            x_label: load_label,
            y_label: micros_label,
            series: series(|load| load.mean_batch),
            empty: "no protocol reported batches",
            // A batch of 1 is no batching: keep it on the axis.
            y_include: &[1.0],
            identity: false,
        },
    ];
    if open_loop {
        panels.push(Panel {
            title: "Throughput vs offered load",
            x_desc: "Offered load (ops/s)",
            y_desc: "Throughput (ops/s)",
            x_label: ops_label,
            y_label: ops_label,
            series: curves
                .iter()
                .map(|curve| {
                    let points = curve
                        .loads
                        .iter()
                        .filter_map(|load| Some((load.offered_ops? as f64, load.throughput_ops)))
                        .collect();
                    (curve, points)
                })
                .collect(),
            empty: "no open-loop point",
            y_include: &[],
            identity: true,
        });
    }
    let areas = bottom.split_evenly((1, panels.len()));
    for (panel, area) in panels.iter().zip(&areas) {
        panel.draw(root, area)?;
    }
    Ok(())
}

/// Throughput against p50 and p99 latency, with error bars and load labels.
fn draw_main<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    curves: &[Curve],
) -> anyhow::Result<()> {
    let loads = || curves.iter().flat_map(|curve| curve.loads.iter());
    let throughputs: Vec<f64> = loads()
        .flat_map(|load| [load.throughput_ops.min, load.throughput_ops.max])
        .collect();
    let latencies: Vec<f64> = loads()
        .flat_map(|load| {
            [
                load.latency_us_p50.min,
                load.latency_us_p50.max,
                load.latency_us_p99.min,
                load.latency_us_p99.max,
            ]
        })
        .collect();
    let mut chart = ChartBuilder::on(area)
        .margin_top(10)
        .margin_right(24)
        .x_label_area_size(64)
        .y_label_area_size(96)
        .build_cartesian_2d(Axis::decades(&throughputs), Axis::decades(&latencies))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("Throughput (ops/s)")
        .y_desc("Latency (µs)")
        .x_label_formatter(&|value| ops_label(*value))
        .y_label_formatter(&|value| micros_label(*value))
        .label_style((FONT, TICK_SIZE))
        .axis_desc_style((FONT, AXIS_DESC_SIZE))
        .bold_line_style(RGBColor(200, 200, 200).stroke_width(1))
        .light_line_style(RGBColor(236, 236, 236).stroke_width(1))
        .axis_style(BLACK.stroke_width(1))
        .draw()
        .map_err(plot_error)?;

    let coord = chart.as_coord_spec().clone();
    let pixel = |x: f64, y: f64| coord.translate(&(x, y));
    // Error bars first, so lines and markers sit on top of them. What they
    // cover, labels avoid.
    let mut taken: Vec<Rect> = Vec::new();
    for curve in curves {
        for load in &curve.loads {
            let throughput = &load.throughput_ops;
            for latency in [&load.latency_us_p50, &load.latency_us_p99] {
                if throughput.varies() {
                    let (from, to) = (
                        pixel(throughput.min, latency.mean),
                        pixel(throughput.max, latency.mean),
                    );
                    draw_error_bar(root, from, to, curve.colour)?;
                    taken.push(bar_rect(from, to));
                }
                if latency.varies() {
                    let (from, to) = (
                        pixel(throughput.mean, latency.min),
                        pixel(throughput.mean, latency.max),
                    );
                    draw_error_bar(root, from, to, curve.colour)?;
                    taken.push(bar_rect(from, to));
                }
            }
        }
    }
    for curve in curves {
        let p50 = curve
            .loads
            .iter()
            .map(|load| (load.throughput_ops.mean, load.latency_us_p50.mean));
        let p99 = curve
            .loads
            .iter()
            .map(|load| (load.throughput_ops.mean, load.latency_us_p99.mean));
        chart
            .draw_series(DashedLineSeries::new(
                p99.clone(),
                10,
                7,
                curve.colour.stroke_width(2),
            ))
            .map_err(plot_error)?;
        chart
            .draw_series(LineSeries::new(p50.clone(), curve.colour.stroke_width(3)))
            .map_err(plot_error)?;
        // Markers in pixels on the root, after the lines, so they sit on top.
        for (x, y) in p99 {
            draw_marker(root, pixel(x, y), curve.marker, curve.colour, false)?;
        }
        for (x, y) in p50 {
            draw_marker(root, pixel(x, y), curve.marker, curve.colour, true)?;
        }
    }

    // Each p50 marker's load, beside it where it covers no marker and no
    // other label.
    for curve in curves {
        for load in &curve.loads {
            for latency in [load.latency_us_p50.mean, load.latency_us_p99.mean] {
                let (x, y) = pixel(load.throughput_ops.mean, latency);
                let r = MARKER_PX + 2;
                taken.push((x - r, y - r, x + r, y + r));
            }
        }
    }
    let (x_range, y_range) = chart.plotting_area().get_pixel_range();
    let inside = (x_range.start, y_range.start, x_range.end, y_range.end);
    let style = TextStyle::from((FONT, POINT_LABEL_SIZE).into_font());
    for curve in curves {
        for load in &curve.loads {
            let text = load_label(load);
            let (width, height) = root.estimate_text_size(&text, &style).map_err(plot_error)?;
            let at = pixel(load.throughput_ops.mean, load.latency_us_p50.mean);
            let rect = place_label(at, (width as i32, height as i32), &taken, inside);
            taken.push(rect);
            root.draw(&Text::new(
                text,
                (rect.0, rect.1),
                style
                    .clone()
                    .color(&curve.colour)
                    .pos(Pos::new(HPos::Left, VPos::Top)),
            ))
            .map_err(plot_error)?;
        }
    }
    Ok(())
}

/// A load as its marker's label says it: `10` clients, or `5k` ops/s offered.
fn load_label(load: &Load) -> String {
    match load.offered_ops {
        Some(rate) => ops_label(rate as f64),
        None => results::thousands(u64::from(load.clients)),
    }
}

/// Where a label `size` pixels large goes next to a marker at `at`: the
/// first of a few spots around it (below right first: the curves rise to the
/// right, so that is usually clear) that overlaps nothing `taken` and stays
/// `inside`; the first spot if none does.
fn place_label(at: (i32, i32), size: (i32, i32), taken: &[Rect], inside: Rect) -> Rect {
    let (x, y) = at;
    let (w, h) = size;
    let gap = MARKER_PX + 3;
    let corners = [
        // Clear of a horizontal error bar's caps through the marker.
        (x + gap, y + CAP_PX + 2),
        (x - gap - w, y - CAP_PX - 2 - h),
        (x + gap, y - CAP_PX - 2 - h),
        (x - gap - w, y + CAP_PX + 2),
        (x - w / 2, y + gap + 2),
        (x - w / 2, y - gap - 2 - h),
        (x + gap + 4, y - h / 2),
        (x - gap - 4 - w, y - h / 2),
    ];
    let rects = corners.map(|(left, top)| (left, top, left + w, top + h));
    let overlaps = |a: &Rect, b: &Rect| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
    let within =
        |r: &Rect| r.0 >= inside.0 && r.1 >= inside.1 && r.2 <= inside.2 && r.3 <= inside.3;
    rects
        .iter()
        .find(|rect| within(rect) && !taken.iter().any(|other| overlaps(rect, other)))
        .or_else(|| rects.iter().find(|rect| within(rect)))
        .copied()
        .unwrap_or(rects[0])
}

/// The pixels an error bar from `from` to `to` covers, caps included.
fn bar_rect(from: (i32, i32), to: (i32, i32)) -> Rect {
    (
        from.0.min(to.0) - CAP_PX,
        from.1.min(to.1) - CAP_PX,
        from.0.max(to.0) + CAP_PX,
        from.1.max(to.1) + CAP_PX,
    )
}

/// A line from `from` to `to` (pixels of the root) with a cap across each
/// end.
fn draw_error_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    from: (i32, i32),
    to: (i32, i32),
    colour: RGBColor,
) -> anyhow::Result<()> {
    let style = colour.stroke_width(2);
    root.draw(&PathElement::new(vec![from, to], style))
        .map_err(plot_error)?;
    let horizontal = (to.0 - from.0).abs() >= (to.1 - from.1).abs();
    for (x, y) in [from, to] {
        let cap = if horizontal {
            vec![(x, y - CAP_PX), (x, y + CAP_PX)]
        } else {
            vec![(x - CAP_PX, y), (x + CAP_PX, y)]
        };
        root.draw(&PathElement::new(cap, style))
            .map_err(plot_error)?;
    }
    Ok(())
}

/// One of the smaller panels below the main one: a figure per protocol
/// against load (or, with `identity`, throughput against offered rate with
/// the line y = x).
struct Panel<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    x_label: fn(f64) -> String,
    y_label: fn(f64) -> String,
    /// Each curve's points: x, and the figure over the trials.
    series: Vec<(&'a Curve, Vec<(f64, Spread)>)>,
    /// What the panel says when no curve has a point.
    empty: &'a str,
    /// Values the y axis reaches whatever the points.
    y_include: &'a [f64],
    identity: bool,
}

impl Panel<'_> {
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        area: &DrawingArea<DB, Shift>,
    ) -> anyhow::Result<()> {
        let points = || self.series.iter().flat_map(|(_, points)| points.iter());
        let xs: Vec<f64> = points().map(|(x, _)| *x).collect();
        let ys: Vec<f64> = points()
            .flat_map(|(_, spread)| [spread.min, spread.max])
            .chain(self.y_include.iter().copied())
            .collect();
        let (x_axis, y_axis) = if self.identity {
            let both: Vec<f64> = xs.iter().chain(&ys).copied().collect();
            (Axis::decades(&both), Axis::decades(&both))
        } else {
            (Axis::decades(&xs), Axis::decades(&ys))
        };
        let (start, end) = (x_axis.start, x_axis.end);
        let mut chart = ChartBuilder::on(area)
            .caption(self.title, (FONT, PANEL_TITLE_SIZE))
            .margin(8)
            .margin_right(20)
            .x_label_area_size(52)
            .y_label_area_size(80)
            .build_cartesian_2d(x_axis, y_axis)
            .map_err(plot_error)?;
        let x_label = self.x_label;
        let y_label = self.y_label;
        chart
            .configure_mesh()
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .x_label_formatter(&|value| x_label(*value))
            .y_label_formatter(&|value| y_label(*value))
            .label_style((FONT, PANEL_TICK_SIZE))
            .axis_desc_style((FONT, PANEL_DESC_SIZE))
            .bold_line_style(RGBColor(200, 200, 200).stroke_width(1))
            .light_line_style(RGBColor(236, 236, 236).stroke_width(1))
            .axis_style(BLACK.stroke_width(1))
            .draw()
            .map_err(plot_error)?;
        if points().next().is_none() {
            let (x_range, y_range) = chart.plotting_area().get_pixel_range();
            let style = TextStyle::from((FONT, PANEL_DESC_SIZE).into_font())
                .color(&GREY)
                .pos(Pos::new(HPos::Center, VPos::Center));
            root.draw(&Text::new(
                self.empty,
                (
                    (x_range.start + x_range.end) / 2,
                    (y_range.start + y_range.end) / 2,
                ),
                style,
            ))
            .map_err(plot_error)?;
            return Ok(());
        }
        if self.identity {
            chart
                .draw_series(DashedLineSeries::new(
                    [(start, start), (end, end)],
                    8,
                    6,
                    GREY.stroke_width(1),
                ))
                .map_err(plot_error)?;
            let (x, y) = chart.backend_coord(&(end / 3.0, end / 3.0));
            let style = TextStyle::from((FONT, PANEL_TICK_SIZE).into_font())
                .color(&GREY)
                .pos(Pos::new(HPos::Right, VPos::Bottom));
            root.draw(&Text::new("y = x", (x - 6, y - 6), style))
                .map_err(plot_error)?;
        }
        let coord = chart.as_coord_spec().clone();
        let pixel = |x: f64, y: f64| coord.translate(&(x, y));
        for (curve, points) in &self.series {
            for (x, spread) in points {
                if spread.varies() {
                    draw_error_bar(
                        root,
                        pixel(*x, spread.min),
                        pixel(*x, spread.max),
                        curve.colour,
                    )?;
                }
            }
        }
        for (curve, points) in &self.series {
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, spread)| (*x, spread.mean)),
                    curve.colour.stroke_width(2),
                ))
                .map_err(plot_error)?;
            for (x, spread) in points {
                draw_marker(
                    root,
                    pixel(*x, spread.mean),
                    curve.marker,
                    curve.colour,
                    true,
                )?;
            }
        }
        Ok(())
    }
}

/// The loads grouped into one curve per protocol, in table order.
fn curves(results: &RunResults) -> Vec<Curve> {
    let mut curves: Vec<Curve> = Vec::new();
    for load in results::loads(results) {
        // A point that measured nothing usable has no place on the axes.
        let plottable = [
            &load.throughput_ops,
            &load.latency_us_p50,
            &load.latency_us_p99,
        ]
        .iter()
        .all(|spread| {
            [spread.mean, spread.min, spread.max]
                .iter()
                .all(|v| v.is_finite())
        });
        if !plottable {
            continue;
        }
        match curves.last_mut() {
            Some(curve) if curve.protocol == load.series() => curve.loads.push(load),
            _ => {
                let index = curves.len();
                curves.push(Curve {
                    protocol: load.series(),
                    loads: vec![load],
                    colour: PALETTE[index % PALETTE.len()],
                    marker: MARKERS[index % MARKERS.len()],
                });
            }
        }
    }
    curves
}

/// The configuration, in two lines: what ran, then how it was measured and
/// where.
fn subtitle(results: &RunResults) -> [String; 2] {
    let setup = results::setup(results);
    let workload = match (&setup.workload, &setup.load) {
        (Some(workload), Some(load)) => Some(format!("{workload}, {load}")),
        (workload, load) => workload.clone().or(load.clone()),
    };
    let first: Vec<String> = [
        setup.replicas.clone(),
        workload,
        Some(setup.transport.clone()),
        setup.idle.as_ref().map(|idle| format!("idle: {idle}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let trials = if setup.trials_max > 1 {
        format!("{} (markers: mean; bars: min–max)", setup.trials)
    } else {
        setup.trials.clone()
    };
    let second: Vec<String> = [
        Some(trials),
        setup.window.clone(),
        setup.wan.clone(),
        Some(results.hosts.clone()),
        Some(format!("started {}", results.started)),
    ]
    .into_iter()
    .flatten()
    .collect();
    [first.join(" · "), second.join(" · ")]
}

/// `size`, or smaller (down to 11 pixels) if `text` would be wider than
/// `width` pixels at it.
fn fitted_size<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    width: u32,
) -> anyhow::Result<f64> {
    let mut size = size;
    while size > 11.0 {
        let style = TextStyle::from((FONT, size).into_font());
        // Room for a viewer's sans-serif being wider than the font measured
        // here (SVG).
        let (measured, _) = root.estimate_text_size(text, &style).map_err(plot_error)?;
        if measured * 21 / 20 <= width {
            break;
        }
        size -= 1.0;
    }
    Ok(size)
}

/// The legend column: one row per protocol (colour, marker, name), then
/// what solid and dashed mean, the error bars (if any load has several
/// trials) and the numbers beside the markers.
struct Legend {
    /// The protocol names, shortened with `…` where wider than
    /// [`LEGEND_TEXT_MAX_PX`].
    labels: Vec<String>,
    /// `min–max of trials`, if any load has several.
    error_bars: Option<String>,
    /// What the numbers beside the markers count.
    numbers: &'static str,
    width: u32,
}

impl Legend {
    fn of<DB: DrawingBackend>(
        root: &DrawingArea<DB, Shift>,
        curves: &[Curve],
    ) -> anyhow::Result<Legend> {
        let style = TextStyle::from((FONT, LEGEND_SIZE).into_font());
        let width = |text: &str| -> anyhow::Result<u32> {
            Ok(root.estimate_text_size(text, &style).map_err(plot_error)?.0)
        };
        let mut labels = Vec::with_capacity(curves.len());
        for curve in curves {
            let mut label = curve.protocol.clone();
            while width(&label)? > LEGEND_TEXT_MAX_PX && label.chars().count() > 1 {
                label = label.trim_end_matches('…').to_owned();
                label.pop();
                label.push('…');
            }
            labels.push(label);
        }
        let loads = || curves.iter().flat_map(|curve| &curve.loads);
        let error_bars = loads()
            .any(|load| load.trials > 1)
            .then(|| "min–max of trials".to_owned());
        let numbers = if loads().all(|load| load.offered_ops.is_some()) {
            "offered ops/s"
        } else if loads().any(|load| load.offered_ops.is_some()) {
            "clients; ops/s"
        } else {
            "clients"
        };
        let mut text_width = width(numbers)?;
        for label in labels.iter().chain(&error_bars) {
            text_width = text_width.max(width(label)?);
        }
        Ok(Legend {
            labels,
            error_bars,
            numbers,
            // Room for a viewer's sans-serif being wider than the font
            // measured here (SVG).
            width: (text_width * 11 / 10 + LEGEND_TEXT_X as u32 + 16).max(190),
        })
    }

    fn draw<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        curves: &[Curve],
    ) -> anyhow::Result<()> {
        let text_style = TextStyle::from((FONT, LEGEND_SIZE).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        let sample_x = 16;
        let sample_centre = sample_x + LEGEND_SAMPLE_PX / 2;
        let mut y = 36;
        for (curve, label) in curves.iter().zip(&self.labels) {
            area.draw(&PathElement::new(
                vec![(sample_x, y), (sample_x + LEGEND_SAMPLE_PX, y)],
                curve.colour.stroke_width(3),
            ))
            .map_err(plot_error)?;
            draw_marker(area, (sample_centre, y), curve.marker, curve.colour, true)?;
            area.draw(&Text::new(
                label.as_str(),
                (LEGEND_TEXT_X, y),
                text_style.clone(),
            ))
            .map_err(plot_error)?;
            y += LEGEND_ROW_PX;
        }

        y += LEGEND_ROW_PX / 2;
        area.draw(&PathElement::new(
            vec![(sample_x, y), (sample_x + LEGEND_SAMPLE_PX, y)],
            GREY.stroke_width(3),
        ))
        .map_err(plot_error)?;
        draw_marker(area, (sample_centre, y), Marker::Circle, GREY, true)?;
        area.draw(&Text::new("p50", (LEGEND_TEXT_X, y), text_style.clone()))
            .map_err(plot_error)?;
        y += LEGEND_ROW_PX;
        for (from, to) in [(0, 12), (LEGEND_SAMPLE_PX - 12, LEGEND_SAMPLE_PX)] {
            area.draw(&PathElement::new(
                vec![(sample_x + from, y), (sample_x + to, y)],
                GREY.stroke_width(2),
            ))
            .map_err(plot_error)?;
        }
        draw_marker(area, (sample_centre, y), Marker::Circle, GREY, false)?;
        area.draw(&Text::new("p99", (LEGEND_TEXT_X, y), text_style.clone()))
            .map_err(plot_error)?;
        if let Some(error_bars) = &self.error_bars {
            y += LEGEND_ROW_PX;
            draw_error_bar(
                area,
                (sample_x + 4, y),
                (sample_x + LEGEND_SAMPLE_PX - 4, y),
                GREY,
            )?;
            draw_marker(area, (sample_centre, y), Marker::Circle, GREY, true)?;
            area.draw(&Text::new(
                error_bars.as_str(),
                (LEGEND_TEXT_X, y),
                text_style.clone(),
            ))
            .map_err(plot_error)?;
        }
        y += LEGEND_ROW_PX;
        area.draw(&Text::new(
            "10",
            (sample_centre, y),
            TextStyle::from((FONT, POINT_LABEL_SIZE).into_font())
                .color(&GREY)
                .pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(plot_error)?;
        area.draw(&Text::new(self.numbers, (LEGEND_TEXT_X, y), text_style))
            .map_err(plot_error)?;
        Ok(())
    }
}

const LEGEND_TEXT_MAX_PX: u32 = 260;
/// The line samples are this wide; the text starts after them.
const LEGEND_SAMPLE_PX: i32 = 44;
const LEGEND_TEXT_X: i32 = 16 + LEGEND_SAMPLE_PX + 12;
const LEGEND_ROW_PX: i32 = 32;

/// A marker centred on `at` (pixels of `area`): filled, or white with a
/// coloured outline.
fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    marker: Marker,
    colour: RGBColor,
    filled: bool,
) -> anyhow::Result<()> {
    let r = MARKER_PX;
    let outline = colour.stroke_width(2);
    let inside = if filled {
        colour.filled()
    } else {
        WHITE.filled()
    };
    let corners: Vec<(i32, i32)> = match marker {
        Marker::Circle => {
            area.draw(&Circle::new(at, r, inside)).map_err(plot_error)?;
            return area.draw(&Circle::new(at, r, outline)).map_err(plot_error);
        }
        Marker::Square => vec![(-r, -r), (r, -r), (r, r), (-r, r)],
        // Slightly larger, so their area matches the square's.
        Marker::Triangle => vec![(0, -r - 2), (r + 2, r), (-r - 2, r)],
        Marker::Diamond => vec![(0, -r - 2), (r + 2, 0), (0, r + 2), (-r - 2, 0)],
    };
    let corners: Vec<(i32, i32)> = corners
        .into_iter()
        .map(|(dx, dy)| (at.0 + dx, at.1 + dy))
        .collect();
    area.draw(&Polygon::new(corners.clone(), inside))
        .map_err(plot_error)?;
    let mut closed = corners.clone();
    closed.push(corners[0]);
    area.draw(&PathElement::new(closed, outline))
        .map_err(plot_error)
}

/// Plotters' errors carry the backend's error type; the message is enough.
pub(crate) fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {error}")
}

/// Registers the embedded font under [`FONT`] once per process.
pub(crate) fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, ttf_noto_sans::REGULAR).is_ok()
    });
    anyhow::ensure!(registered, "the embedded Noto Sans font did not parse");
    Ok(())
}

/// A logarithmic axis from a power of ten to a power of ten, with the tick
/// values chosen here (plotters' own logarithmic ticks can leave a sub-decade
/// range unlabelled).
#[derive(Clone, Debug)]
struct Axis {
    start: f64,
    end: f64,
    /// Labelled ticks with grid lines; unlabelled light grid lines.
    bold: Vec<f64>,
    light: Vec<f64>,
}

/// How far inside the frame an axis's ends are drawn, pixels: a point on the
/// first or last decade is not cut by the frame.
const AXIS_INSET_PX: i32 = 14;

impl Axis {
    /// The whole decades holding the positive, finite `values` (at least
    /// one decade; 1 to 10 if there are none). Every decade is a labelled
    /// tick, the lowest too; with at most two decades, so are 2 and 5.
    fn decades(values: &[f64]) -> Axis {
        let positive = || {
            values
                .iter()
                .copied()
                .filter(|value| value.is_finite() && *value > 0.0)
        };
        let (min, max) = match (positive().reduce(f64::min), positive().reduce(f64::max)) {
            (Some(min), Some(max)) => (min, max),
            _ => (1.0, 10.0),
        };
        // A hair of slack, so 1000 is the decade 10^3 however log10 rounds.
        let first = (min.log10() + 1e-9).floor() as i32;
        let last = ((max.log10() - 1e-9).ceil() as i32).max(first + 1);
        let (start, end) = (10f64.powi(first), 10f64.powi(last));
        let ticks = |mantissas: &[f64]| -> Vec<f64> {
            (first..=last)
                .flat_map(|exponent| {
                    mantissas
                        .iter()
                        .map(move |mantissa| mantissa * 10f64.powi(exponent))
                })
                .filter(|tick| *tick >= start * (1.0 - 1e-9) && *tick <= end * (1.0 + 1e-9))
                .collect()
        };
        let mantissas: &[f64] = if last - first <= 2 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        Axis {
            start,
            end,
            bold: ticks(mantissas),
            light: ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]),
        }
    }
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        // Anything at or below 0 maps to the bottom, not to -inf.
        let floor = self.start / 1e3;
        let (value, start, end) = (value.max(floor).ln(), self.start.ln(), self.end.ln());
        let fraction = (value - start) / (end - start);
        let span = limit.1 - limit.0;
        let inset = if span.abs() > 6 * AXIS_INSET_PX {
            AXIS_INSET_PX * span.signum()
        } else {
            0
        };
        let (from, to) = (limit.0 + inset, limit.1 - inset);
        from + (f64::from(to - from) * fraction + 1e-3).floor() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.start..self.end
    }
}

/// Throughput ticks: `0`, `500`, `2.5k`, `100k`, `1.5M`.
fn ops_label(value: f64) -> String {
    if value.abs() >= 1e6 {
        format!("{}M", trimmed(value / 1e6))
    } else if value.abs() >= 1e3 {
        format!("{}k", trimmed(value / 1e3))
    } else {
        trimmed(value)
    }
}

/// Latency ticks: `0`, `250`, `1,000`, `20,000`; fractions below 1 µs.
fn micros_label(value: f64) -> String {
    if value >= 1.0 {
        results::thousands(value.round() as u64)
    } else {
        trimmed(value)
    }
}

/// Up to two decimals, trailing zeros dropped.
fn trimmed(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{Experiment, Sweep};
    use crate::results::tests::{png_size, point, sample, sample_with_trials};
    use wire::control::{BATCHES_COUNTER, REQUESTS_BATCHED_COUNTER};

    /// Lines of the SVG (plotters writes each text on a line of its own).
    fn texts(svg: &str, text: &str) -> usize {
        svg.lines().filter(|line| *line == text).count()
    }

    /// Drawn lines: curves, error bars and their caps, legend samples.
    fn polylines(svg: &str) -> usize {
        svg.matches("<polyline").count()
    }

    #[test]
    fn plot_svg_has_labels_and_protocols() {
        let svg = render_svg(&sample()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
        for text in [
            "Throughput (ops/s)",
            "Latency (µs",
            "default: throughput vs latency",
            "unreplicated",
            "pbft",
            "p50",
            "p99",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
    }

    #[test]
    fn plot_png_is_a_png_of_the_expected_size() {
        let png = render_png(&sample()).unwrap();
        assert_eq!(png_size(&png), (WIDTH_PX, HEIGHT_PX));
        if let Some(path) = std::env::var_os("RUNNER_PLOT_PNG") {
            // RUNNER_PLOT_PNG=/tmp/plot.png cargo test -p runner plot_png: look at it.
            std::fs::write(path, &png).unwrap();
        }
    }

    #[test]
    fn plot_png_draws_text() {
        // The font is embedded: the title row of a plot with a title has dark
        // pixels, the same row of one drawn without text has none.
        let png = render_png(&sample()).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        let channels = info.color_type.samples();
        let row = WIDTH_PX as usize * channels;
        let title_rows = &pixels[20 * row..40 * row];
        let dark = title_rows
            .chunks(channels)
            .filter(|pixel| pixel[0] < 100)
            .count();
        assert!(dark > 200, "{dark} dark pixels in the title rows");
    }

    #[test]
    fn plot_single_point_and_empty_run() {
        let mut results = sample();
        results.points.truncate(1);
        render_png(&results).unwrap();
        assert!(render_svg(&results).unwrap().contains("unreplicated"));
        results.points.clear();
        render_png(&results).unwrap();
        assert!(render_svg(&results).unwrap().contains("no points measured"));
    }

    #[test]
    fn plot_many_protocols_cycle_colours_and_markers() {
        let mut results = sample();
        for index in 0..9 {
            results.points.push(point(
                &format!("protocol-{index}"),
                4,
                0,
                0.1 * f64::from(index + 1),
            ));
        }
        results
            .points
            .push(point(&"a-very-long-protocol-name-".repeat(4), 4, 0, 0.5));
        let svg = render_svg(&results).unwrap();
        assert!(svg.contains("protocol-8"));
        let shortened = svg
            .lines()
            .find(|line| line.starts_with("a-very-long"))
            .unwrap();
        assert!(
            shortened.ends_with('…') && shortened.len() < 60,
            "{shortened}"
        );
        render_png(&results).unwrap();
    }

    #[test]
    fn plot_axes_are_whole_decades_with_the_lowest_labelled() {
        let axis = Axis::decades(&[80.0, 5_000.0]);
        assert_eq!((axis.start, axis.end), (10.0, 10_000.0));
        assert_eq!(axis.bold, [10.0, 100.0, 1_000.0, 10_000.0]);
        assert_eq!(axis.light.first(), Some(&10.0));
        assert_eq!(axis.light.last(), Some(&10_000.0));

        // Two decades or fewer: 2 and 5 labelled too, the lowest decade first.
        let narrow = Axis::decades(&[1_200.0, 45_000.0]);
        assert_eq!((narrow.start, narrow.end), (1_000.0, 100_000.0));
        assert_eq!(
            narrow.bold,
            [1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5],
            "{:?}",
            narrow.bold
        );
        // Another run in the same decades gets the same axis, so the two
        // figures line up.
        let other = Axis::decades(&[3_000.0, 90_000.0]);
        assert_eq!((other.start, other.end), (narrow.start, narrow.end));
        assert_eq!(other.bold, narrow.bold);

        // Values on a decade stay on it; one value still gets a decade.
        let exact = Axis::decades(&[1.0, 100.0]);
        assert_eq!((exact.start, exact.end), (1.0, 100.0));
        assert_eq!(exact.bold.first(), Some(&1.0));
        let single = Axis::decades(&[1_000.0]);
        assert_eq!((single.start, single.end), (1_000.0, 10_000.0));
        let small = Axis::decades(&[0.3, 4.0]);
        assert_eq!((small.start, small.end), (0.1, 10.0));

        // Not finite, zero or negative: left out; nothing left: 1 to 10.
        let odd = Axis::decades(&[100.0, f64::INFINITY, f64::NAN, 0.0, -5.0]);
        assert_eq!((odd.start, odd.end), (100.0, 1_000.0));
        let none = Axis::decades(&[]);
        assert_eq!((none.start, none.end), (1.0, 10.0));
        let wide = Axis::decades(&[3.0, 2_000_000.0]);
        assert_eq!(wide.bold, [1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7]);

        // The decades map inside the frame, in order, and 0 to the bottom.
        let limit = (0, 400);
        assert_eq!(axis.map(&10.0, limit), AXIS_INSET_PX);
        assert_eq!(axis.map(&10_000.0, limit), 400 - AXIS_INSET_PX);
        assert!(axis.map(&100.0, limit) < axis.map(&1_000.0, limit));
        assert_eq!(axis.map(&0.0, limit), axis.map(&(10.0 / 1e3), limit));
        // Reversed (plotters maps y from the bottom pixel up).
        assert_eq!(axis.map(&10.0, (400, 0)), 400 - AXIS_INSET_PX);
    }

    #[test]
    fn plot_one_trial_and_three_trials() {
        let one = sample_with_trials(1);
        let three = sample_with_trials(3);
        let (svg_one, svg_three) = (render_svg(&one).unwrap(), render_svg(&three).unwrap());
        for svg in [&svg_one, &svg_three] {
            for text in [
                "Throughput (ops/s)",
                "Latency (µs)",
                "Replica CPU per operation",
                "CPU µs/op, all replicas",
                "Batch size",
                "Requests per batch",
                "Clients (closed loop)",
                "clients",
            ] {
                assert!(svg.contains(text), "{text} missing");
            }
            // The configuration in the subtitle.
            let subtitle = svg.lines().find(|line| line.starts_with("f = 1")).unwrap();
            for text in [
                "unreplicated 1 replica, pbft 4 replicas",
                "null app, 16-byte operations, closed loop",
                "transport auto → io_uring",
                "idle: spin 100 µs, then block",
            ] {
                assert!(subtitle.contains(text), "{text} not in {subtitle}");
            }
            assert!(svg.contains("local processes on 127.0.0.2 and up"));
            // Each p50 marker labelled with its clients (no tick reads 8 or
            // 64), one per protocol.
            assert_eq!(texts(svg, "8"), 2);
            assert_eq!(texts(svg, "64"), 2);
            // Closed loop: no panel against offered load.
            assert!(!svg.contains("Throughput vs offered load"));
        }
        assert!(svg_one.contains("1 trial per load"));
        assert!(!svg_one.contains("min–max"));
        assert!(svg_three.contains("3 trials per load (markers: mean; bars: min–max)"));
        assert!(svg_three.contains("min–max of trials"));
        // Error bars: at least a vertical one through each of the 6 loads'
        // p50 and p99 markers in the main panel, and one through each load
        // in the CPU panel, three lines each (bar, two caps).
        let bars = polylines(&svg_three) - polylines(&svg_one);
        assert!(bars >= (6 * 2 + 6) * 3, "{bars} more lines");
        for results in [&one, &three] {
            assert_eq!(
                png_size(&render_png(results).unwrap()),
                (WIDTH_PX, HEIGHT_PX)
            );
        }
    }

    #[test]
    fn plot_open_loop_against_offered_load() {
        let mut results = sample_with_trials(3);
        for point in &mut results.points {
            point.offered_ops = Some(2_000 * u64::from(point.clients));
        }
        results.experiment = serde_json::to_value(Experiment {
            sweep: Sweep::Rates {
                clients: 100,
                rates: vec![2_000, 16_000, 128_000],
            },
            ..Experiment::default_comparison()
        })
        .unwrap();
        let svg = render_svg(&results).unwrap();
        for text in [
            "Throughput vs offered load",
            "Offered load (ops/s)",
            "y = x",
            "offered ops/s",
            "open loop, poisson arrivals, 100 clients",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // Markers labelled with the offered rate.
        assert_eq!(texts(&svg, "16k"), 2);
        assert_eq!(texts(&svg, "128k"), 2);
        assert!(!svg.contains("Clients (closed loop)"));
        assert_eq!(
            png_size(&render_png(&results).unwrap()),
            (WIDTH_PX, HEIGHT_PX)
        );
    }

    #[test]
    fn plot_without_batch_counters_or_cpu() {
        let mut results = sample();
        for point in &mut results.points {
            point.counters.remove(BATCHES_COUNTER);
            point.counters.remove(REQUESTS_BATCHED_COUNTER);
        }
        let svg = render_svg(&results).unwrap();
        assert!(svg.contains("Batch size"));
        assert!(svg.contains("no protocol reported batches"));
        assert!(!svg.contains("no operation completed"));
        render_png(&results).unwrap();
        // No operation completed anywhere: no CPU per operation either.
        for point in &mut results.points {
            point.intervals.clear();
            point.measured_ops = 0;
            point.throughput_ops = 0.0;
        }
        let svg = render_svg(&results).unwrap();
        assert!(svg.contains("no operation completed"));
        render_png(&results).unwrap();
    }

    #[test]
    fn plot_labels_go_where_nothing_is() {
        let inside = (0, 0, 1000, 1000);
        let overlaps = |a: Rect, b: Rect| a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3;
        let first = place_label((500, 500), (20, 10), &[], inside);
        assert!(first.0 > 500 && first.1 >= 500, "below right: {first:?}");
        let second = place_label((500, 500), (20, 10), &[first], inside);
        assert!(!overlaps(first, second), "{first:?} {second:?}");
        let r = MARKER_PX;
        let marker = (500 - r, 500 - r, 500 + r, 500 + r);
        assert!(!overlaps(marker, first));
        // At the right edge of the panel, the label goes left.
        let edge = place_label((995, 500), (20, 10), &[], inside);
        assert!(edge.2 <= 1000 && edge.0 < 995, "{edge:?}");
        // Every spot taken: the first spot inside.
        let everywhere = [(0, 0, 1000, 1000)];
        let crowded = place_label((500, 500), (20, 10), &everywhere, inside);
        assert_eq!(crowded, first);
    }

    #[test]
    fn plot_tick_labels() {
        assert_eq!(ops_label(0.0), "0");
        assert_eq!(ops_label(500.0), "500");
        assert_eq!(ops_label(2_500.0), "2.5k");
        assert_eq!(ops_label(100_000.0), "100k");
        assert_eq!(ops_label(1_500_000.0), "1.5M");
        assert_eq!(ops_label(0.30000000000000004 * 1e4), "3k");
        assert_eq!(micros_label(1_000.0), "1,000");
        assert_eq!(micros_label(250.0), "250");
        assert_eq!(micros_label(0.5), "0.5");
        assert_eq!(micros_label(0.0), "0");
    }
}
