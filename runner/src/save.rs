//! A run's files: `results.csv`, `results.json`, `plot.svg` and
//! `plot.png`; `timeline.csv` (every point's interval reports); when a point
//! had faults, `recovery.csv`; and a timeline figure
//! (`timeline-<point>.svg` and `.png`) for each point
//! [`crate::timeline::plotted_points`] picks (the one point of a one-point
//! run, every point with faults). Each is written whole or not at all.
//! Apart from [`crate::results`] and [`crate::timeline`] (the figures) and
//! [`crate::plot`] and [`crate::timeline_plot`] (the drawings), which read
//! results and write no files.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::results::{RunResults, csv_bytes};

pub const CSV_FILE: &str = "results.csv";
pub const JSON_FILE: &str = "results.json";
pub const SVG_FILE: &str = "plot.svg";
pub const PNG_FILE: &str = "plot.png";
pub const TIMELINE_CSV_FILE: &str = "timeline.csv";
pub const RECOVERY_CSV_FILE: &str = "recovery.csv";

/// The files [`write_all`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub csv: PathBuf,
    pub json: PathBuf,
    pub svg: PathBuf,
    pub png: PathBuf,
    pub timeline_csv: PathBuf,
    /// Written when a point had faults.
    pub recovery_csv: Option<PathBuf>,
    /// The timeline figures, SVG then PNG for each point drawn.
    pub timelines: Vec<PathBuf>,
}

/// Creates `dir` (and its parents) and writes the run's files (see the
/// module's documentation) into it, each first to a temporary name and then
/// renamed, so that a file present is a whole one. The recovery figures are
/// computed from the points' faults first ([`crate::timeline::annotate`]),
/// so `results.json` has them.
pub fn write_all(dir: &Path, results: &RunResults) -> anyhow::Result<Written> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut annotated = results.clone();
    crate::timeline::annotate(&mut annotated);
    let results = &annotated;
    let faults = results.points.iter().any(|point| !point.faults.is_empty());
    let mut written = Written {
        csv: dir.join(CSV_FILE),
        json: dir.join(JSON_FILE),
        svg: dir.join(SVG_FILE),
        png: dir.join(PNG_FILE),
        timeline_csv: dir.join(TIMELINE_CSV_FILE),
        recovery_csv: faults.then(|| dir.join(RECOVERY_CSV_FILE)),
        timelines: Vec::new(),
    };

    write_atomically(&written.csv, &csv_bytes(results)?)?;
    let mut json = serde_json::to_string_pretty(results).context("serializing the results")?;
    json.push('\n');
    write_atomically(&written.json, json.as_bytes())?;
    write_atomically(&written.svg, crate::plot::render_svg(results)?.as_bytes())?;
    write_atomically(&written.png, &crate::plot::render_png(results)?)?;
    write_atomically(
        &written.timeline_csv,
        &crate::timeline::timeline_csv(results)?,
    )?;
    if let Some(path) = &written.recovery_csv {
        write_atomically(path, &crate::timeline::recovery_csv(results)?)?;
    }
    for point in crate::timeline::plotted_points(results) {
        let stem = crate::timeline_plot::file_stem(point);
        let svg = dir.join(format!("{stem}.svg"));
        write_atomically(
            &svg,
            crate::timeline_plot::render_svg(results, point)?.as_bytes(),
        )?;
        let png = dir.join(format!("{stem}.png"));
        write_atomically(&png, &crate::timeline_plot::render_png(results, point)?)?;
        written.timelines.extend([svg, png]);
    }
    Ok(written)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))
}
