//! A run's files: `results.csv`, `results.json`, `plot.svg` and
//! `plot.png`, each written whole or not at all. Apart from
//! [`crate::results`] (the figures) and [`crate::plot`] (the figure), which
//! both read results and neither writes files.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::results::{RunResults, csv_bytes};

pub const CSV_FILE: &str = "results.csv";
pub const JSON_FILE: &str = "results.json";
pub const SVG_FILE: &str = "plot.svg";
pub const PNG_FILE: &str = "plot.png";

/// The files [`write_all`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub csv: PathBuf,
    pub json: PathBuf,
    pub svg: PathBuf,
    pub png: PathBuf,
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

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    fs::write(&temporary, bytes).with_context(|| format!("writing {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("renaming to {}", path.display()))
}
