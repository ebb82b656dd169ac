//! sgdlab-report: study reports rebuilt from the records on disk alone (`docs/records.md`):
//! `plan.json`, `verdict.json` and every run's `record.json` and `metrics.jsonl`. The verdict's
//! numbers are read from `verdict.json`, never recomputed; the report computes only what figures
//! draw (means over seeds, intervals, per-run values read off the metric series).
//!
//! - [`build_study_report`] writes `figures/<name>.svg`, `figures/<name>.csv` for every figure
//!   `verdict.json` lists, and `report.html`: the study's title, survey claim, verdict and
//!   summary (with banners for quick runs, overrides and incomplete studies), one section per
//!   claim (statement, verdict, effect and interval beside the decision threshold, expected
//!   outcome with its provenance, the per-run value and statistic in words, groups, excluded
//!   runs, per-run values, the claim's figures), the general figures, the runs, notes and
//!   provenance.
//! - [`build_index`] writes `index.html`: the survey's table, every section of
//!   [`sgdlab_studies::survey::CLAIMS`] in order with its studies' verdicts, each claim's verdict,
//!   effect and interval, and a link to each report; "no study yet" where a section has none.
//!
//! Pages are self-contained (inline CSS and SVG; no script, font, image or style sheet is
//! fetched; the only links are relative links to figure files and reports), every text taken
//! from a record is HTML-escaped, and the output is deterministic: no timestamps, fixed orders,
//! seeded bootstrap streams, so a rebuild from the same records gives the same bytes.
//!
//! # Figures
//! A figure draws the *completed* runs of its population (diverged, failed, unfinished and
//! missing runs are named in its notes, diverged ones with their step). Runs are grouped into
//! arms (combinations of axis values; see *Arms* below) and every arm has one colour in
//! all figures of the study. Titles and axis titles are in words from the probe registry's
//! labels and units (a metric without a label shows its `probe/name`); a logarithmic axis says
//! "log scale" in its title and is ticked at powers of ten (1, 2 and 5 times powers of ten, or
//! every multiple, when fewer than three powers of ten fall inside it). A figure whose metric no run recorded is a
//! frame saying "no data: ..." with the reason, not an error.
//!
//! - `final_vs_axis`: the per-run value `y` against the axis `x_axis`. Per axis value and series
//!   (the combinations of the other axes that vary, leaving out axes that follow from `x_axis`):
//!   each seed a faint point, the mean over seeds a large dot with an error bar, the 95%
//!   percentile-bootstrap interval of the mean over seeds (2000 resamples, seeded by the figure's
//!   name; no bar for one seed). With one series, each axis value takes its arm's colour.
//!   References: a dashed segment at each axis value.
//! - `over_training`: the scalar `metric` against step or epoch (`x`), one line per arm (mean over
//!   seeds at the steps every seed of the arm was measured at) with a band from the minimum to the
//!   maximum over seeds; faint lines are single seeds. References: a dashed horizontal line per
//!   arm in its colour, labelled.
//! - `heatmap`: the vector `metric` over training, one panel per arm: time on x, element index on
//!   y, the mean over seeds as colour (viridis, one scale for all panels, `log_y` makes it
//!   logarithmic), with a colour bar.
//! - `vector`: the last value of the vector `metric` against its index (or the last value of the
//!   vector `x_metric`), one line per arm (mean per element) with a min-max band.
//! - `scatter`: `y` against `x_value` per run (per element for vector values), coloured by arm.
//!
//! ## Arms
//! An arm's key is the run's value of every plan axis. Arms are sorted by value (numbers
//! numerically, then text; a run without a value of an axis, from another sweep, first) and
//! numbered: arm `i` has the `i`-th colour of the Tableau 10 palette. Labels name only the axes
//! that tell arms apart ("batch size = 32"): not an axis with one value, nor one whose value
//! follows from the axes before it (the architecture string of a zipped depth sweep). When a
//! figure's series are not single arms (series per activation in a depth figure), they are
//! numbered among the study's combinations of the same axes.
//!
//! # CSV layout (`figures/<name>.csv`)
//! One layout for every kind; read with `pandas.read_csv(path)` (pass `dtype={"run_id": str}`
//! to keep run ids that look like numbers as text). Empty cells are absent values (NaN in
//! pandas). Columns, in order:
//!
//! | column | meaning |
//! |---|---|
//! | `arm` | the series the row belongs to, in words (`batch size = 32`; `all runs` for one series) |
//! | one per plan axis | the run's axis value as the plan wrote it; in aggregate rows the value the aggregated runs share (empty where they differ). An axis named like another column is written `axis_<name>` |
//! | `row` | `run` (one run's value, or one element of it), `mean` (the aggregate over the seeds of a series), `reference` (a reference line: the mean over the series' runs, its name in `label`) |
//! | `seed` | the run's seed (`run` rows) |
//! | `run_id` | the run (`run` rows) |
//! | `step`, `epoch` | when the value was measured (`over_training`, `heatmap`, `vector`) |
//! | `index` | the element of a vector metric (`heatmap`, `vector`; `scatter` with vector values) |
//! | `x` | the plotted x coordinate: the axis value (`final_vs_axis`), the step or epoch as the figure plots it (`over_training`, `heatmap`), the index or `x_metric` element (`vector`; in `mean` rows the mean over seeds), the `x_value` (`scatter`) |
//! | `value` | the plotted value: the per-run value, the metric, or the mean over seeds (`mean` rows), or the reference value; empty when not finite |
//! | `low`, `high` | `mean` rows: the 95% bootstrap interval of the mean over seeds (`final_vs_axis`; empty for one seed), or the minimum and maximum over seeds (`over_training`, `heatmap`, `vector`) |
//! | `n` | `mean` and `reference` rows: how many finite values the aggregate is over |
//! | `label` | `reference` rows: the reference's label (e.g. `2/eta`) |
//!
//! Rows come series by series (in arm order); within a series, `run` rows (by seed, then step,
//! then index), then `mean` rows, then `reference` rows (`final_vs_axis`: the same per axis
//! value). So `df[df.row == "mean"]` is what the lines and dots draw and `df[df.row == "run"]`
//! every seed.
//!
//! # Errors
//! Every [`ReportError`] is one line naming the file and what is wrong: a missing `plan.json` or
//! `verdict.json`, malformed JSON, a run or figure name that cannot be a file name. A run that
//! never started is not an error (the report lists it as missing), nor a figure without data.

mod arms;
mod figures;
mod format;
mod html;
mod index;
mod study;

use std::path::{Path, PathBuf};

pub use format::fmt_num;
pub use index::NotRun;

/// What can go wrong while building a report: one line naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file the report needs does not exist.
    #[error("{}: missing (a study directory holds plan.json, verdict.json and runs/<id>/)", path.display())]
    Missing { path: PathBuf },
    /// A record cannot be read or parsed (the message names the file).
    #[error(transparent)]
    Records(#[from] sgdlab_studies::StudyError),
    /// The records parse but hold unusable names.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// An output file cannot be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// Plotting failed.
    #[error("{}: cannot draw figure: {message}", path.display())]
    Draw { path: PathBuf, message: String },
}

/// Builds `study_dir/report.html` and `study_dir/figures/<name>.{svg,csv}` for every figure of
/// `verdict.json`, from the records in `study_dir` alone; returns the path of the report.
pub fn build_study_report(study_dir: &Path) -> Result<PathBuf, ReportError> {
    let study = study::load(study_dir)?;
    let figures_dir = study_dir.join("figures");
    let mut figures = Vec::with_capacity(study.verdict.figures.len());
    for spec in &study.verdict.figures {
        figures.push(figures::build(&study, spec, &figures_dir.join(format!("{}.svg", spec.name)))?);
    }
    if !figures.is_empty() {
        std::fs::create_dir_all(&figures_dir)
            .map_err(|e| ReportError::Write { path: figures_dir.clone(), source: e })?;
    }
    for f in &figures {
        write_file(&figures_dir.join(format!("{}.svg", f.spec.name)), &f.svg)?;
        write_file(&figures_dir.join(format!("{}.csv", f.spec.name)), &f.csv)?;
    }
    let path = study_dir.join("report.html");
    write_file(&path, &html::study_report(&study, &figures))?;
    Ok(path)
}

/// Writes `out_dir/index.html`, the survey's table: every PROTOCOLS section in order with the
/// studies of `study_dirs` that belong to it (their verdicts, claims, effects and intervals, and
/// a relative link to each `report.html`; build those first with [`build_study_report`]), and
/// the built-in studies of `not_run` ("not run", with the reason) and "no study yet" for
/// sections without either. Reads only each study's `verdict.json`; creates
/// `out_dir` if needed. Returns the path of the index.
pub fn build_index(out_dir: &Path, study_dirs: &[PathBuf], not_run: &[NotRun]) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(out_dir).map_err(|e| ReportError::Write { path: out_dir.to_path_buf(), source: e })?;
    let out_abs = canonical(out_dir)?;
    let mut entries = Vec::new();
    for dir in study_dirs {
        if !dir.join("verdict.json").exists() {
            return Err(ReportError::Missing { path: dir.join("verdict.json") });
        }
        let verdict = sgdlab_studies::read_verdict(dir)?;
        let link = format::relative_url(&out_abs, &canonical(dir)?.join("report.html"));
        entries.push(index::Entry { verdict, link });
    }
    let path = out_dir.join("index.html");
    write_file(&path, &index::page(&entries, not_run))?;
    Ok(path)
}

fn canonical(dir: &Path) -> Result<PathBuf, ReportError> {
    std::fs::canonicalize(dir).map_err(|_| ReportError::Missing { path: dir.to_path_buf() })
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|e| ReportError::Write { path: path.to_path_buf(), source: e })
}
