//! The throughput–latency plot the runner leaves as `plot.svg` and
//! `plot.png`.
//!
//! One curve per protocol: x is throughput (ops/s), y is latency (µs); one
//! marker per load, the loads joined in order of clients (then offered rate),
//! each the mean over its trials ([`crate::results::loads`]). The p50 curve is
//! solid with filled markers; the p99 curve, in the same colour, is dashed
//! with hollow markers. Each protocol also has its own marker shape, so the
//! plot survives black-and-white printing. The legend sits in its own column
//! right of the plot, so it never covers a curve.
//!
//! Scales: throughput is linear from 0 unless the points span more than 100×
//! (then logarithmic); latency is logarithmic when it spans more than 10×
//! (p50 at light load to p99 at saturation usually does), else linear from 0.
//! Tick labels are human-readable: `25k`, `1.5M` ops/s; `1,000` µs.
//!
//! Text: the SVG names the generic `sans-serif` family and leaves the font to
//! the viewer. The PNG is rasterized here, with Noto Sans Regular embedded in
//! the binary (crate `ttf-noto-sans`, the font under the Apache License 2.0),
//! through plotters' `ab_glyph` feature: no system font, fontconfig or
//! freetype is needed. Both layouts use that font's metrics.

use std::sync::OnceLock;

use ab_glyph::{Font as _, FontRef, GlyphId, PxScale, ScaleFont as _};
use anyhow::Context as _;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::text_anchor::{HPos as BackendHPos, VPos as BackendVPos};
use plotters_backend::{BackendColor, BackendCoord, DrawingErrorKind};

use crate::results::{self, Load, RunResults};

/// The size of both images, pixels (the SVG's user units).
pub const WIDTH_PX: u32 = 1200;
pub const HEIGHT_PX: u32 = 800;

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

/// The plot as a PNG file's bytes (8-bit RGB).
pub fn render_png(results: &RunResults) -> anyhow::Result<Vec<u8>> {
    register_font()?;
    let mut rgb = vec![0; WIDTH_PX as usize * HEIGHT_PX as usize * 3];
    {
        let root = PngBackend::new(&mut rgb)?.into_drawing_area();
        draw(&root, results)?;
        root.present().map_err(plot_error)?;
    }
    let mut png = Vec::new();
    let mut encoder = png::Encoder::new(&mut png, WIDTH_PX, HEIGHT_PX);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().context("encoding the PNG")?;
    writer.write_image_data(&rgb).context("encoding the PNG")?;
    writer.finish().context("encoding the PNG")?;
    Ok(png)
}

/// The family every text in the plot uses; for the PNG it is the embedded
/// font, for the SVG the viewer's generic sans-serif.
const FONT: &str = "sans-serif";
const TITLE_SIZE: f64 = 30.0;
const SUBTITLE_SIZE: f64 = 17.0;
const AXIS_DESC_SIZE: f64 = 22.0;
const TICK_SIZE: f64 = 18.0;
const LEGEND_SIZE: f64 = 19.0;
/// Marker radius, pixels.
const MARKER_PX: i32 = 6;

/// Okabe–Ito colours, distinguishable with the common colour-vision
/// deficiencies; black last.
const PALETTE: [RGBColor; 7] = [
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
    root.draw(&Text::new(title, (centre, 14), title_style))
        .map_err(plot_error)?;
    let subtitle_style = TextStyle::from((FONT, SUBTITLE_SIZE).into_font())
        .color(&GREY)
        .pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(subtitle(results), (centre, 54), subtitle_style))
        .map_err(plot_error)?;

    let body = root.margin(84, 10, 10, 16);
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

    let labels = legend_labels(root, &curves)?;
    let legend_width = legend_width(root, &labels)?;
    let (body_width, _) = body.dim_in_pixel();
    let (chart_area, legend_area) =
        body.split_horizontally(body_width.saturating_sub(legend_width));

    let throughputs: Vec<f64> = curves
        .iter()
        .flat_map(|curve| curve.loads.iter().map(|load| load.throughput_ops))
        .collect();
    let latencies: Vec<f64> = curves
        .iter()
        .flat_map(|curve| {
            curve
                .loads
                .iter()
                .flat_map(|load| [load.latency_us_p50, load.latency_us_p99])
        })
        .collect();
    let x_axis = Axis::fitting(&throughputs, 100.0);
    let y_axis = Axis::fitting(&latencies, 10.0);
    let y_desc = if y_axis.log {
        "Latency (µs, log scale)"
    } else {
        "Latency (µs)"
    };
    let x_desc = if x_axis.log {
        "Throughput (ops/s, log scale)"
    } else {
        "Throughput (ops/s)"
    };

    let mut chart = ChartBuilder::on(&chart_area)
        .margin_top(10)
        .margin_right(24)
        .x_label_area_size(64)
        .y_label_area_size(96)
        .build_cartesian_2d(x_axis, y_axis)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|value| ops_label(*value))
        .y_label_formatter(&|value| micros_label(*value))
        .label_style((FONT, TICK_SIZE))
        .axis_desc_style((FONT, AXIS_DESC_SIZE))
        .bold_line_style(RGBColor(200, 200, 200).stroke_width(1))
        .light_line_style(RGBColor(236, 236, 236).stroke_width(1))
        .axis_style(BLACK.stroke_width(1))
        .draw()
        .map_err(plot_error)?;

    for curve in &curves {
        let p50 = curve
            .loads
            .iter()
            .map(|load| (load.throughput_ops, load.latency_us_p50));
        let p99 = curve
            .loads
            .iter()
            .map(|load| (load.throughput_ops, load.latency_us_p99));
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
        for point in p99 {
            draw_marker(
                root,
                chart.backend_coord(&point),
                curve.marker,
                curve.colour,
                false,
            )?;
        }
        for point in p50 {
            draw_marker(
                root,
                chart.backend_coord(&point),
                curve.marker,
                curve.colour,
                true,
            )?;
        }
    }

    draw_legend(&legend_area, &curves, &labels)
}

/// The loads grouped into one curve per protocol, in table order.
fn curves(results: &RunResults) -> Vec<Curve> {
    let mut curves: Vec<Curve> = Vec::new();
    for load in results::loads(results) {
        // A point that measured nothing usable has no place on the axes.
        let plottable = [
            load.throughput_ops,
            load.latency_us_p50,
            load.latency_us_p99,
        ]
        .iter()
        .all(|value| value.is_finite());
        if !plottable {
            continue;
        }
        match curves.last_mut() {
            Some(curve) if curve.protocol == load.protocol => curve.loads.push(load),
            _ => {
                let index = curves.len();
                curves.push(Curve {
                    protocol: load.protocol.clone(),
                    loads: vec![load],
                    colour: PALETTE[index % PALETTE.len()],
                    marker: MARKERS[index % MARKERS.len()],
                });
            }
        }
    }
    curves
}

/// Where and when it ran, and what a point averages.
fn subtitle(results: &RunResults) -> String {
    let loads = results::loads(results);
    let min = loads.iter().map(|load| load.trials).min().unwrap_or(0);
    let max = loads.iter().map(|load| load.trials).max().unwrap_or(0);
    let trials = match (min, max) {
        (0, _) => String::new(),
        (1, 1) => " · one trial per point".to_owned(),
        (min, max) if min == max => format!(" · mean of {min} trials per point"),
        (min, max) => format!(" · mean of {min}–{max} trials per point"),
    };
    format!("{} · started {}{trials}", results.hosts, results.started)
}

/// The protocol names as the legend shows them: shortened with `…` where
/// wider than [`LEGEND_TEXT_MAX_PX`].
fn legend_labels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[Curve],
) -> anyhow::Result<Vec<String>> {
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
    Ok(labels)
}

/// Wide enough for the longest label and the line samples, with room for a
/// viewer's sans-serif being wider than the font measured here (SVG).
fn legend_width<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    labels: &[String],
) -> anyhow::Result<u32> {
    let style = TextStyle::from((FONT, LEGEND_SIZE).into_font());
    let mut text_width = 0;
    for label in labels {
        let (width, _) = root.estimate_text_size(label, &style).map_err(plot_error)?;
        text_width = text_width.max(width);
    }
    Ok((text_width * 11 / 10 + LEGEND_TEXT_X as u32 + 16).max(190))
}

const LEGEND_TEXT_MAX_PX: u32 = 260;
/// The line samples are this wide; the text starts after them.
const LEGEND_SAMPLE_PX: i32 = 44;
const LEGEND_TEXT_X: i32 = 16 + LEGEND_SAMPLE_PX + 12;
const LEGEND_ROW_PX: i32 = 32;

/// One row per protocol (colour, marker, name), then what solid and dashed
/// mean.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    curves: &[Curve],
    labels: &[String],
) -> anyhow::Result<()> {
    let text_style = TextStyle::from((FONT, LEGEND_SIZE).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let sample_x = 16;
    let mut y = 36;
    for (curve, label) in curves.iter().zip(labels) {
        area.draw(&PathElement::new(
            vec![(sample_x, y), (sample_x + LEGEND_SAMPLE_PX, y)],
            curve.colour.stroke_width(3),
        ))
        .map_err(plot_error)?;
        let centre = (sample_x + LEGEND_SAMPLE_PX / 2, y);
        draw_marker(area, centre, curve.marker, curve.colour, true)?;
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
    draw_marker(
        area,
        (sample_x + LEGEND_SAMPLE_PX / 2, y),
        Marker::Circle,
        GREY,
        true,
    )?;
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
    draw_marker(
        area,
        (sample_x + LEGEND_SAMPLE_PX / 2, y),
        Marker::Circle,
        GREY,
        false,
    )?;
    area.draw(&Text::new("p99", (LEGEND_TEXT_X, y), text_style))
        .map_err(plot_error)?;
    Ok(())
}

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
fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the plot: {error}")
}

/// Registers the embedded font under [`FONT`] once per process.
fn register_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let registered = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, ttf_noto_sans::REGULAR).is_ok()
    });
    anyhow::ensure!(registered, "the embedded Noto Sans font did not parse");
    Ok(())
}

/// One axis: linear from 0 or logarithmic, with the tick values chosen here
/// (plotters' own logarithmic ticks can leave a sub-decade range unlabelled).
#[derive(Clone, Debug)]
struct Axis {
    log: bool,
    start: f64,
    end: f64,
    /// Labelled ticks with grid lines; unlabelled light grid lines.
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Axis {
    /// Logarithmic if the positive `values` span more than `log_above`×,
    /// else linear from 0. Values that are not finite are left out.
    fn fitting(values: &[f64], log_above: f64) -> Axis {
        let finite = || values.iter().copied().filter(|value| value.is_finite());
        let min = finite().fold(f64::INFINITY, f64::min);
        let max = finite().fold(0.0, f64::max);
        if min > 0.0 && max / min > log_above {
            Axis::log(min, max)
        } else {
            Axis::linear(max)
        }
    }

    /// 0 to a little above `max`, in 3 to 6 steps of 1, 2, 2.5 or 5 × 10^k.
    fn linear(max: f64) -> Axis {
        let max = if max > 0.0 && max.is_finite() {
            max
        } else {
            1.0
        };
        let step = nice_step(max * 1.05 / 6.0);
        let steps = (max * 1.05 / step).ceil().max(1.0) as u32;
        let end = f64::from(steps) * step;
        Axis {
            log: false,
            start: 0.0,
            end,
            bold: (0..=steps).map(|i| f64::from(i) * step).collect(),
            light: (0..=2 * steps).map(|i| f64::from(i) * step / 2.0).collect(),
        }
    }

    /// `min` / 1.25 to `max` × 1.25; ticks at 1, 2, 5 per decade when at most
    /// 2.5 decades are shown, else at powers of ten.
    fn log(min: f64, max: f64) -> Axis {
        let start = min / 1.25;
        let end = max * 1.25;
        let decades = (end / start).log10();
        let mantissas: &[f64] = if decades <= 2.5 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        let ticks = |mantissas: &[f64]| -> Vec<f64> {
            let first = start.log10().floor() as i32;
            let last = end.log10().ceil() as i32;
            (first..=last)
                .flat_map(|exponent| {
                    mantissas
                        .iter()
                        .map(move |mantissa| mantissa * 10f64.powi(exponent))
                })
                .filter(|tick| (start..=end).contains(tick))
                .collect()
        };
        Axis {
            log: true,
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
        let (value, start, end) = if self.log {
            // Anything at or below 0 maps to the bottom, not to -inf.
            let floor = self.start / 1e3;
            (value.max(floor).ln(), self.start.ln(), self.end.ln())
        } else {
            (*value, self.start, self.end)
        };
        let fraction = (value - start) / (end - start);
        limit.0 + (f64::from(limit.1 - limit.0) * fraction + 1e-3).floor() as i32
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

/// The smallest of 1, 2, 2.5, 5 × 10^k at least `raw`.
fn nice_step(raw: f64) -> f64 {
    let magnitude = 10f64.powf(raw.log10().floor());
    let mantissa = raw / magnitude;
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .find(|&nice| mantissa <= nice * (1.0 + 1e-9))
        .unwrap_or(10.0);
    nice * magnitude
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

/// plotters' bitmap backend with its text drawn here. plotters' `ab_glyph`
/// text places each glyph's ink at the pen position, dropping the glyph's
/// left side bearing: narrow letters then sit left in their cell and words
/// look torn apart ("unrepl icated"). Here each glyph goes where the font puts
/// it; the text box and anchoring stay plotters' (the same font's advances,
/// the baseline half the size below the box top), so layout is unchanged.
struct PngBackend<'a> {
    inner: BitMapBackend<'a>,
    font: FontRef<'static>,
}

impl<'a> PngBackend<'a> {
    fn new(rgb: &'a mut [u8]) -> anyhow::Result<PngBackend<'a>> {
        Ok(PngBackend {
            inner: BitMapBackend::with_buffer(rgb, (WIDTH_PX, HEIGHT_PX)),
            font: FontRef::try_from_slice(ttf_noto_sans::REGULAR)
                .context("parsing the embedded Noto Sans font")?,
        })
    }
}

impl<'a> DrawingBackend for PngBackend<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    /// As plotters' default `draw_text`, but with [`draw_glyphs`].
    fn draw_text<TStyle: plotters_backend::BackendTextStyle>(
        &mut self,
        text: &str,
        style: &TStyle,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|error| DrawingErrorKind::FontError(Box::new(error)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            BackendHPos::Left => 0,
            BackendHPos::Center => -width / 2,
            BackendHPos::Right => -width,
        };
        let dy = match style.anchor().v_pos {
            BackendVPos::Top => 0,
            BackendVPos::Center => -height / 2,
            BackendVPos::Bottom => -height,
        };
        let transform = style.transform();
        let (image_width, image_height) = self.get_size();
        let mut result = Ok(());
        draw_glyphs(&self.font, style.size(), text, |x, y, coverage| {
            let (x, y) = transform.transform(x + dx - min_x, y + dy - min_y);
            let (x, y) = (pos.0 + x, pos.1 + y);
            let inside =
                (0..image_width as i32).contains(&x) && (0..image_height as i32).contains(&y);
            if inside && result.is_ok() {
                result = self.inner.draw_pixel(
                    (x, y),
                    BackendColor {
                        alpha: color.alpha * f64::from(coverage),
                        rgb: color.rgb,
                    },
                );
            }
        });
        result
    }
}

/// Rasterizes `text` at `size` pixels (ascent to descent), the baseline at
/// `size / 2`, calling `put(x, y, coverage)` for each pixel touched.
fn draw_glyphs(font: &FontRef<'_>, size: f64, text: &str, mut put: impl FnMut(i32, i32, f32)) {
    let font = font.as_scaled(PxScale::from(size as f32));
    let baseline = size as f32 / 2.0;
    let mut caret = 0.0;
    let mut previous: Option<GlyphId> = None;
    for c in text.chars() {
        let id = font.glyph_id(c);
        if let Some(previous) = previous {
            caret += font.kern(previous, id);
        }
        let glyph = id.with_scale_and_position(font.scale(), ab_glyph::point(caret, baseline));
        if let Some(outlined) = font.outline_glyph(glyph) {
            let bounds = outlined.px_bounds();
            outlined.draw(|x, y, coverage| {
                put(
                    bounds.min.x as i32 + x as i32,
                    bounds.min.y as i32 + y as i32,
                    coverage,
                );
            });
        }
        caret += font.h_advance(id);
        previous = Some(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::tests::{png_size, point, sample};

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
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut rgb).unwrap();
        let row = WIDTH_PX as usize * 3;
        let title_rows = &rgb[20 * row..40 * row];
        let dark = title_rows.chunks(3).filter(|pixel| pixel[0] < 100).count();
        assert!(dark > 200, "{dark} dark pixels in the title rows");
    }

    #[test]
    fn plot_glyphs_keep_their_side_bearings() {
        // "l" has a left side bearing: its ink starts right of the pen.
        let font = FontRef::try_from_slice(ttf_noto_sans::REGULAR).unwrap();
        let mut leftmost = i32::MAX;
        draw_glyphs(&font, 80.0, "l", |x, _, coverage| {
            if coverage > 0.5 {
                leftmost = leftmost.min(x);
            }
        });
        assert!((3..20).contains(&leftmost), "{leftmost}");
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
    fn plot_axis_scales_and_ticks() {
        let linear = Axis::fitting(&[100.0, 500.0], 10.0);
        assert!(!linear.log);
        assert_eq!(linear.start, 0.0);
        assert!(linear.end >= 500.0);
        assert_eq!(linear.bold.first(), Some(&0.0));
        assert!((5..=11).contains(&linear.bold.len()), "{:?}", linear.bold);

        let log = Axis::fitting(&[80.0, 5_000.0], 10.0);
        assert!(log.log);
        assert_eq!(log.bold, [100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0]);
        let infinite = Axis::fitting(&[100.0, f64::INFINITY, f64::NAN], 10.0);
        assert!(!infinite.log && infinite.end >= 100.0);
        let wide = Axis::fitting(&[3.0, 2_000_000.0], 10.0);
        assert_eq!(wide.bold, [10.0, 100.0, 1e3, 1e4, 1e5, 1e6]);

        assert_eq!(nice_step(0.9), 1.0);
        assert_eq!(nice_step(1.1), 2.0);
        assert_eq!(nice_step(2.2), 2.5);
        assert_eq!(nice_step(4_000.0), 5_000.0);
        assert_eq!(nice_step(6_000.0), 10_000.0);
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
