//! sgdlab-report: study reports rebuilt from the records on disk alone (`docs/records.md`);
//! nothing is recomputed except the aggregation over seeds that figures need.
//!
//! - [`build_study_report`] reads a study directory (`plan.json`, `verdict.json`,
//!   `runs/<id>/record.json`, `runs/<id>/metrics.jsonl`) and writes `figures/<name>.svg`,
//!   `figures/<name>.csv` for every figure `verdict.json` lists, and `report.html`.
//! - [`build_index`] writes `OUT/index.html`, one row per study with a relative link to its
//!   `report.html`.
//!
//! Both HTML files are self-contained: figures are inline SVG, the CSS is inline, and nothing is
//! fetched (no scripts, fonts, images or style sheets from anywhere; the only links are relative
//! links to the figure files and reports). Every text taken from a record is HTML-escaped. The
//! output is deterministic: no timestamps, runs sorted by knob values (numbers numerically, then
//! text) then seed then run id, so rebuilding from the same records gives the same bytes.
//!
//! # Which runs a figure shows
//! The runs the verdict used: every run of `plan.json` except those `verdict.json` lists under
//! `runs.excluded` (typically diverged runs; the figure caption names them). A run's value of a
//! metric at a step is the last `metrics.jsonl` row for that step; `null` values (not finite) are
//! kept in the CSV with an empty `value` and left out of means, bands and drawings.
//! - `final_vs_knob`: per knob value, each run's value at its largest step (its last value), the
//!   mean over seeds (line), the min-max band, and every seed as a point. `log_x`/`log_y` give log
//!   axes; a log axis with values <= 0 omits those from the drawing (the caption says so) and
//!   falls back to linear when no value is positive. Non-numeric knob values are categories.
//! - `over_training`: the metric against `step`, one line per knob value = mean over the seeds
//!   with a finite value at that step, with a min-max band.
//!
//! When the plan sweeps several knobs (e.g. `depth` and `act`), the knobs other than the
//! figure's that take more than one value among the used runs are *series knobs*: each
//! combination of their values is its own series (colour, mean, band; in `over_training`, its
//! own line per knob value), so runs of different settings are never averaged together.
//!
//! # CSV layout (`figures/<name>.csv`, one per figure)
//! Read with `pandas.read_csv(path)`. Header row, then one row per plotted point; the same
//! columns for both figure kinds:
//!
//! | column | meaning |
//! |---|---|
//! | `<knob>` | the figure's knob value as the plan wrote it (column named after the knob, e.g. `batch_size`; `knob_<knob>` if that name is one of the fixed columns) |
//! | `<series knob>`... | one column per series knob, if any (e.g. `act`), named likewise |
//! | `seed` | the run's seed (an integer), or `mean`, `min`, `max` for the aggregate over seeds |
//! | `run_id` | the run (seed rows); empty for aggregate rows |
//! | `step` | `final_vs_knob`: the step of the run's last value (empty for aggregates); `over_training`: the step |
//! | `n` | how many seeds the value summarises: 1 for a seed row with a value, 0 without, the seed count for aggregates |
//! | `value` | the metric (shortest decimal that reads back as the same f64); empty when not finite |
//!
//! Rows are sorted by knob value (numbers numerically, then text), then series knob values, then
//! `seed` (seeds ascending, then `mean`, `min`, `max`), then step. For example
//! `df[df.seed == "mean"]` is the plotted line and `df[~df.seed.isin(["mean", "min", "max"])]`
//! the per-seed points (the `seed` column is text because of the aggregate labels; `.astype(int)`
//! on the seed rows gives integers). Pass `dtype={"run_id": str}` if you need run ids verbatim:
//! an id of hex digits that happen to be all decimal would otherwise be read as a number.
//!
//! # Errors
//! Every [`ReportError`] is one line naming the file and what is wrong: a missing `plan.json` or
//! `verdict.json`, malformed JSON (with serde's message and position; `metrics.jsonl` errors name
//! the line), a figure name that cannot be a file name or appears twice, a figure knob that
//! `plan.json` does not list. A run without `record.json` or `metrics.jsonl` (never started) is
//! not an error: the report shows it as not run. A figure whose metric no used run recorded is not
//! an error either: it is drawn as a frame stating "no data" (its CSV has only the header) and the
//! report says so, because the verdict and the other figures are still worth reading.

mod figures;
mod format;
mod html;
pub mod records;

use figures::{Figure, FigureInput, FigureRun, build_figure};
use records::{KnobValue, MetricRow, PlanRecord, PlannedRunRecord, RunRecord, VerdictRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub use format::fmt_num;
pub use records::{FigureKind, Verdict};

/// What can go wrong while building a report: one line naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file the report needs does not exist.
    #[error("{}: missing (a study directory holds plan.json, verdict.json and runs/<id>/)", path.display())]
    Missing { path: PathBuf },
    /// A file exists but cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// A JSON file does not parse or lacks a documented field.
    #[error("{}: malformed JSON: {source}", path.display())]
    Json { path: PathBuf, source: serde_json::Error },
    /// A line of a JSON-lines file does not parse.
    #[error("{}: line {line}: malformed JSON: {source}", path.display())]
    JsonLine { path: PathBuf, line: usize, source: serde_json::Error },
    /// The records parse but contradict each other or hold unusable names.
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// An output file cannot be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// Plotting failed.
    #[error("{}: cannot draw figure: {message}", path.display())]
    Draw { path: PathBuf, message: String },
}

/// A planned run with what its directory holds.
pub(crate) struct StudyRun {
    pub planned: PlannedRunRecord,
    /// The run's knob values in the order of `plan.json` `knobs` (`None`: not given).
    pub knobs: Vec<Option<KnobValue>>,
    /// `runs/<id>/record.json` (`None`: the run never started).
    pub record: Option<RunRecord>,
    /// The `metrics.jsonl` rows of the metrics the figures plot (`None`: no file).
    pub rows: Option<Vec<MetricRow>>,
    /// Not listed in `verdict.json` `runs.excluded`.
    pub used: bool,
}

/// Everything a study report shows.
pub(crate) struct Study {
    pub plan: PlanRecord,
    pub verdict: VerdictRecord,
    /// Sorted by knob values, then seed, then id.
    pub runs: Vec<StudyRun>,
    pub figures: Vec<Figure>,
    /// Inconsistencies the report noticed between the records (shown under Notes).
    pub checks: Vec<String>,
}

/// Builds `study_dir/report.html` and `study_dir/figures/<name>.{svg,csv}` for every figure
/// of `verdict.json`, from the records in `study_dir` alone; returns the path of the report.
///
/// See the crate documentation for what figures show, the CSV layout and the errors.
pub fn build_study_report(study_dir: &Path) -> Result<PathBuf, ReportError> {
    let study = load_study(study_dir)?;
    let figures_dir = study_dir.join("figures");
    if !study.figures.is_empty() {
        std::fs::create_dir_all(&figures_dir)
            .map_err(|e| ReportError::Write { path: figures_dir.clone(), source: e })?;
    }
    for f in &study.figures {
        write_file(&figures_dir.join(format!("{}.svg", f.spec.name)), &f.svg)?;
        write_file(&figures_dir.join(format!("{}.csv", f.spec.name)), &f.csv)?;
    }
    let path = study_dir.join("report.html");
    write_file(&path, &html::study_report(&study))?;
    Ok(path)
}

/// Writes `out_dir/index.html`: every study of `study_dirs` (in the order given) with its title,
/// survey section, claim, verdict, effect and interval, runs used and excluded, and a relative
/// link to its `report.html` (build those first with [`build_study_report`]). Reads only each
/// study's `verdict.json`; creates `out_dir` if needed. Returns the path of the index.
pub fn build_index(out_dir: &Path, study_dirs: &[PathBuf]) -> Result<PathBuf, ReportError> {
    std::fs::create_dir_all(out_dir).map_err(|e| ReportError::Write { path: out_dir.to_path_buf(), source: e })?;
    let out_abs = canonical(out_dir)?;
    let mut entries = Vec::new();
    for dir in study_dirs {
        let verdict = records::read_verdict(dir)?;
        let report = canonical(dir)?.join("report.html");
        let link = format::relative_url(&out_abs, &report);
        entries.push(html::IndexEntry { verdict, link });
    }
    let path = out_dir.join("index.html");
    write_file(&path, &html::index(&entries))?;
    Ok(path)
}

fn canonical(dir: &Path) -> Result<PathBuf, ReportError> {
    std::fs::canonicalize(dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ReportError::Missing { path: dir.to_path_buf() }
        } else {
            ReportError::Read { path: dir.to_path_buf(), source: e }
        }
    })
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|e| ReportError::Write { path: path.to_path_buf(), source: e })
}

/// Reads and checks every record of a study and builds its figures (in memory).
fn load_study(study_dir: &Path) -> Result<Study, ReportError> {
    let plan_path = study_dir.join("plan.json");
    let verdict_path = study_dir.join("verdict.json");
    let plan = records::read_plan(study_dir)?;
    let verdict = records::read_verdict(study_dir)?;
    let invalid = |path: &Path, message: String| ReportError::Invalid { path: path.to_path_buf(), message };

    let mut seen = BTreeSet::new();
    for r in &plan.runs {
        if !records::check_file_stem(&r.id) {
            return Err(invalid(&plan_path, format!("run id `{}` is not a valid directory name", r.id)));
        }
        if !seen.insert(r.id.as_str()) {
            return Err(invalid(&plan_path, format!("run id `{}` appears twice", r.id)));
        }
    }
    let mut names = BTreeSet::new();
    for f in &verdict.figures {
        if !records::check_file_stem(&f.name) {
            return Err(invalid(
                &verdict_path,
                format!("figure name `{}` is not a file name (letters, digits, `_`, `-`, `.`)", f.name),
            ));
        }
        if !names.insert(f.name.as_str()) {
            return Err(invalid(&verdict_path, format!("figure name `{}` appears twice", f.name)));
        }
        if !plan.knobs.contains(&f.knob) {
            return Err(invalid(
                &verdict_path,
                format!(
                    "figure `{}` plots against knob `{}`, which plan.json does not list (knobs: {})",
                    f.name,
                    f.knob,
                    plan.knobs.join(", ")
                ),
            ));
        }
    }

    let metrics: BTreeSet<(String, String)> =
        verdict.figures.iter().map(|f| (f.metric.probe.clone(), f.metric.name.clone())).collect();
    let excluded: BTreeSet<&str> = verdict.runs.excluded.iter().map(|e| e.id.as_str()).collect();
    let mut runs = Vec::with_capacity(plan.runs.len());
    for planned in &plan.runs {
        let run_dir = study_dir.join("runs").join(&planned.id);
        let record = records::read_run_record(&run_dir)?;
        let rows = if metrics.is_empty() {
            None
        } else {
            records::read_metric_rows(&run_dir, |p, n| metrics.contains(&(p.to_string(), n.to_string())))?
        };
        let knobs = plan.knobs.iter().map(|k| planned.knobs.get(k).map(KnobValue::from_json)).collect();
        let used = !excluded.contains(planned.id.as_str());
        runs.push(StudyRun { planned: planned.clone(), knobs, record, rows, used });
    }
    runs.sort_by(|a, b| (&a.knobs, a.planned.seed, &a.planned.id).cmp(&(&b.knobs, b.planned.seed, &b.planned.id)));

    let checks = consistency_checks(&plan, &verdict, &runs);

    let mut figures = Vec::with_capacity(verdict.figures.len());
    for spec in &verdict.figures {
        let k = plan.knobs.iter().position(|k| *k == spec.knob).expect("checked above");
        // The other knobs that vary among the used runs: one series per combination.
        let series: Vec<usize> = (0..plan.knobs.len())
            .filter(|&j| j != k)
            .filter(|&j| runs.iter().filter(|r| r.used).map(|r| &r.knobs[j]).collect::<BTreeSet<_>>().len() > 1)
            .collect();
        let input = FigureInput {
            spec,
            series_knobs: series.iter().map(|&j| plan.knobs[j].clone()).collect(),
            runs: runs
                .iter()
                .filter(|r| r.used)
                .map(|r| FigureRun {
                    id: &r.planned.id,
                    seed: r.planned.seed,
                    knob: r.knobs[k].clone(),
                    series: series.iter().map(|&j| r.knobs[j].clone()).collect(),
                    rows: r.rows.as_deref(),
                })
                .collect(),
        };
        let svg_path = study_dir.join("figures").join(format!("{}.svg", spec.name));
        figures.push(build_figure(&input, &svg_path)?);
    }
    Ok(Study { plan, verdict, runs, figures, checks })
}

/// Disagreements between `plan.json`, `verdict.json` and the run records, in words.
fn consistency_checks(plan: &PlanRecord, verdict: &VerdictRecord, runs: &[StudyRun]) -> Vec<String> {
    let mut checks = Vec::new();
    if plan.study != verdict.study {
        checks.push(format!("plan.json is for study `{}` but verdict.json for `{}`", plan.study, verdict.study));
    }
    if plan.spec_hash != verdict.spec_hash {
        checks.push(format!(
            "spec hash differs: plan.json {} but verdict.json {} (the verdict may come from another version of the study)",
            plan.spec_hash, verdict.spec_hash
        ));
    }
    if plan.quick != verdict.quick {
        checks.push("plan.json and verdict.json disagree on quick/full mode".to_string());
    }
    let planned: BTreeSet<&str> = plan.runs.iter().map(|r| r.id.as_str()).collect();
    let unknown: Vec<&str> = verdict
        .runs
        .excluded
        .iter()
        .map(|e| e.id.as_str())
        .chain(verdict.per_run.iter().map(|r| r.id.as_str()))
        .filter(|id| !planned.contains(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !unknown.is_empty() {
        checks.push(format!("verdict.json names runs that plan.json does not plan: {}", unknown.join(", ")));
    }
    if verdict.runs.planned != plan.runs.len() {
        checks.push(format!(
            "verdict.json counts {} planned runs, plan.json lists {}",
            verdict.runs.planned,
            plan.runs.len()
        ));
    }
    let used = runs.iter().filter(|r| r.used).count();
    if verdict.runs.used != used {
        checks.push(format!(
            "verdict.json counts {} runs used, but {} planned runs are not excluded",
            verdict.runs.used, used
        ));
    }
    let not_run: Vec<&str> = runs.iter().filter(|r| r.record.is_none()).map(|r| r.planned.id.as_str()).collect();
    if !not_run.is_empty() {
        checks.push(format!("runs without record.json (never started): {}", not_run.join(", ")));
    }
    let unfinished: Vec<String> = runs
        .iter()
        .filter(|r| r.used)
        .filter_map(|r| r.record.as_ref().map(|rec| (r, rec)))
        .filter(|(_, rec)| rec.status != records::RunStatus::Completed)
        .map(|(r, rec)| format!("{} ({})", r.planned.id, rec.status.as_str()))
        .collect();
    if !unfinished.is_empty() {
        checks.push(format!("runs used by the verdict that did not complete: {}", unfinished.join(", ")));
    }
    let seeds_by_id: BTreeMap<&str, u64> = plan.runs.iter().map(|r| (r.id.as_str(), r.seed)).collect();
    for r in runs {
        if let Some(rec) = &r.record
            && rec.seed != r.planned.seed
        {
            checks.push(format!(
                "run {}: record.json has seed {} but plan.json {}",
                r.planned.id,
                rec.seed,
                seeds_by_id[r.planned.id.as_str()]
            ));
        }
    }
    checks
}
