//! Figures: the runs of a figure grouped into series, the numbers drawn (written as CSV) and
//! the SVG. One module per kind; the crate documentation says what each kind shows.

mod csv;
mod final_vs_axis;
mod heatmap;
mod over_training;
pub(crate) mod plot;
mod scatter;
mod vector;

use crate::ReportError;
use crate::arms::{Key, restrict};
use crate::study::Study;
use csv::{Csv, Row, RowKind, common};
use plotters::style::RGBColor;
use sgdlab_studies::records::RunState;
use sgdlab_studies::spec::{FigureKind, FigureSpec, TimeAxis};
use sgdlab_studies::value::{RunData, ValueSpec};
use sgdlab_studies::verdict::in_population;
use std::collections::BTreeMap;
use std::path::Path;

/// A figure ready to be written and embedded.
pub(crate) struct Figure {
    pub spec: FigureSpec,
    pub title: String,
    /// Standalone SVG document.
    pub svg: String,
    pub csv: String,
    /// CSV data rows (header excluded).
    pub csv_rows: usize,
    /// What is drawn, in words.
    pub caption: String,
    /// What the reader should know: runs left out, values not drawn, no data.
    pub notes: Vec<String>,
}

/// A group of runs drawn in one colour.
pub(crate) struct Series {
    /// The axis values in words: "batch size = 32, act = relu" (CSV `arm`, captions).
    pub label: String,
    /// The values alone, for legends under [`Series::heading`]: "32, relu".
    pub values: String,
    /// The series axes in words: "batch size, act" (empty for one series of all runs).
    pub heading: String,
    pub colour: RGBColor,
    /// Completed runs of the population in this series (indices into the study's runs), by seed.
    pub runs: Vec<usize>,
}

/// What every kind starts from.
pub(crate) struct Ctx<'a> {
    pub study: &'a Study,
    pub spec: &'a FigureSpec,
    pub title: String,
    /// Completed runs of the population.
    pub used: Vec<usize>,
    pub notes: Vec<String>,
    pub csv: Csv,
}

impl<'a> Ctx<'a> {
    pub fn run(&self, i: usize) -> &'a RunData {
        &self.study.runs[i].data
    }

    pub fn key(&self, i: usize) -> &'a Key {
        &self.study.arms.run_keys[i]
    }

    /// Series over `axes`: the used runs grouped by their values of those axes, sorted.
    pub fn series(&self, axes: &[usize]) -> Vec<Series> {
        let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
        for &r in &self.used {
            let k = restrict(self.key(r), axes);
            match groups.iter_mut().find(|(g, _)| *g == k) {
                Some((_, runs)) => runs.push(r),
                None => groups.push((k, vec![r])),
            }
        }
        groups.sort_by(|a, b| crate::arms::cmp_key(&a.0, &b.0));
        let keys: Vec<Key> = groups.iter().map(|g| g.0.clone()).collect();
        let colours = self.study.arms.series_colours(axes, &keys);
        groups
            .into_iter()
            .zip(colours)
            .map(|((key, mut runs), colour)| {
                let s = |r: &usize| (self.run(*r).seed, &self.study.runs[*r].summary.id);
                runs.sort_by(|a, b| s(a).cmp(&s(b)));
                let arms = &self.study.arms;
                Series {
                    label: arms.label(axes, &key),
                    values: arms.values(&key),
                    heading: arms.heading(axes),
                    colour,
                    runs,
                }
            })
            .collect()
    }

    /// The series axes of a kind that draws one series per arm: `x_axis` (when given) first.
    pub fn arm_axes(&self) -> Vec<usize> {
        let first: Vec<usize> = self.study.arms.axis(&self.spec.x_axis).into_iter().collect();
        self.study.arms.series_axes(&self.population(), &first)
    }

    /// Every planned run of the population (whatever its state).
    pub fn population(&self) -> Vec<usize> {
        (0..self.study.runs.len())
            .filter(|&i| in_population(&self.spec.population, &self.study.runs[i].summary))
            .collect()
    }

    /// A CSV row of one run, with its arm and axis values filled in.
    pub fn run_row(&self, series: &Series, r: usize) -> Row {
        Row {
            arm: series.label.clone(),
            axes: self.key(r).clone(),
            seed: Some(self.run(r).seed),
            run_id: self.study.runs[r].summary.id.clone(),
            ..Row::default()
        }
    }

    /// A CSV row of an aggregate over `runs`, with the axis values they share.
    pub fn aggregate_row(&self, series: &Series, runs: &[usize], kind: RowKind) -> Row {
        let keys: Vec<&Key> = runs.iter().map(|&r| self.key(r)).collect();
        Row { arm: series.label.clone(), axes: common(&keys), kind, ..Row::default() }
    }

    /// The figure with its SVG, or a "no data" frame when `svg` is `None`.
    pub fn finish(mut self, caption: String, svg: Result<String, String>, path: &Path) -> Result<Figure, ReportError> {
        let svg =
            svg.map_err(|m| ReportError::Draw { path: path.to_path_buf(), message: m.replace(['\n', '\r'], " ") })?;
        self.notes.dedup();
        Ok(Figure {
            spec: self.spec.clone(),
            title: self.title,
            svg,
            csv: self.csv.text,
            csv_rows: self.csv.rows,
            caption,
            notes: self.notes,
        })
    }

    /// A "no data" figure: the frame states why; the CSV holds what rows there are.
    pub fn no_data(mut self, reason: &str, path: &Path) -> Result<Figure, ReportError> {
        self.notes.push(format!("no data: {reason}"));
        let svg = plot::no_data(&self.title, reason);
        self.finish(String::new(), svg, path)
    }
}

/// One value per run, or why a run has none; reasons counted for a note.
#[derive(Default)]
pub(crate) struct Missing(BTreeMap<String, Vec<String>>);

impl Missing {
    pub fn add(&mut self, reason: String, run_id: &str) {
        self.0.entry(reason).or_default().push(run_id.to_string());
    }

    /// "3 runs have no value (no sharpness/sharpness measured)".
    pub fn notes(&self, what: &str) -> Vec<String> {
        self.0
            .iter()
            .map(|(reason, ids)| format!("{} without {what} ({reason}): {}", runs_word(ids.len()), id_list(ids)))
            .collect()
    }

    /// The most common reason, for a "no data" frame.
    pub fn main_reason(&self) -> Option<&str> {
        self.0.iter().max_by_key(|(_, ids)| ids.len()).map(|(r, _)| r.as_str())
    }
}

/// Run ids, the first few: "a, b, c, d, e and 9 more".
pub(crate) fn id_list(ids: &[String]) -> String {
    const SHOWN: usize = 5;
    if ids.len() <= SHOWN + 1 {
        ids.join(", ")
    } else {
        format!("{} and {} more", ids[..SHOWN].join(", "), ids.len() - SHOWN)
    }
}

/// "1 run", "3 runs".
pub(crate) fn runs_word(n: usize) -> String {
    format!("{n} run{}", if n == 1 { "" } else { "s" })
}

/// "1 seed", "3 seeds".
pub(crate) fn seeds_word(n: usize) -> String {
    format!("{n} seed{}", if n == 1 { "" } else { "s" })
}

/// A sentence starting with a capital.
pub(crate) fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The time of a measurement on the figure's x axis.
pub(crate) fn time(x: TimeAxis, step: u64, epoch: f64) -> f64 {
    match x {
        TimeAxis::Step => step as f64,
        TimeAxis::Epoch => epoch,
    }
}

/// The `x` cell of a measurement: its step or epoch, as the figure plots it.
pub(crate) fn csv_time(step: u64, epoch: f64, x: TimeAxis) -> String {
    crate::format::csv_number(time(x, step, epoch))
}

/// The words of a time axis.
pub(crate) fn time_words(x: TimeAxis) -> &'static str {
    match x {
        TimeAxis::Step => "training step",
        TimeAxis::Epoch => "epoch",
    }
}

/// A per-run value of one run as a number (an error for a vector).
pub(crate) fn scalar_value(v: &ValueSpec, run: &RunData) -> Result<f64, String> {
    v.eval(run)?.scalar()
}

/// A note on the runs of the population that are not drawn because they did not complete,
/// grouped by state (diverged runs with their step).
fn left_out(study: &Study, population: &[usize]) -> Option<String> {
    let mut by: BTreeMap<RunState, Vec<String>> = BTreeMap::new();
    for r in population.iter().map(|&i| &study.runs[i].summary).filter(|r| r.status != RunState::Completed) {
        let id = match (r.status, r.step) {
            (RunState::Diverged, Some(step)) => format!("{} at step {step}", r.id),
            _ => r.id.clone(),
        };
        by.entry(r.status).or_default().push(id);
    }
    let parts: Vec<String> = by
        .iter()
        .map(|(state, ids)| {
            let word = match state {
                RunState::Missing => "not run yet",
                other => other.as_str(),
            };
            format!("{word}: {}", id_list(ids))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("runs that did not complete are not drawn ({})", parts.join("; ")))
}

/// Builds a figure from the study's records.
pub(crate) fn build(study: &Study, spec: &FigureSpec, svg_path: &Path) -> Result<Figure, ReportError> {
    let population: Vec<usize> =
        (0..study.runs.len()).filter(|&i| in_population(&spec.population, &study.runs[i].summary)).collect();
    let used: Vec<usize> =
        population.iter().copied().filter(|&i| study.runs[i].summary.status == RunState::Completed).collect();
    let ctx = Ctx {
        study,
        spec,
        title: if spec.title.is_empty() { default_title(study, spec) } else { spec.title.clone() },
        used,
        notes: left_out(study, &population).into_iter().collect(),
        csv: Csv::new(&study.arms.axes),
    };
    if !spec.x_axis.is_empty() && study.arms.axis(&spec.x_axis).is_none() {
        let reason = format!("the plan has no axis `{}`", spec.x_axis);
        return ctx.no_data(&reason, svg_path);
    }
    if ctx.used.is_empty() {
        let reason =
            if population.is_empty() { "the population has no runs" } else { "no run of the population completed" };
        return ctx.no_data(reason, svg_path);
    }
    match spec.kind {
        FigureKind::FinalVsAxis => final_vs_axis::build(ctx, svg_path),
        FigureKind::OverTraining => over_training::build(ctx, svg_path),
        FigureKind::Heatmap => heatmap::build(ctx, svg_path),
        FigureKind::Vector => vector::build(ctx, svg_path),
        FigureKind::Scatter => scatter::build(ctx, svg_path),
    }
}

/// A title in words from the metric labels.
fn default_title(study: &Study, spec: &FigureSpec) -> String {
    let l = &study.labels;
    let value_words = |v: &Option<ValueSpec>| v.as_ref().map(|v| l.value(v).words).unwrap_or_default();
    let t = match spec.kind {
        FigureKind::FinalVsAxis => {
            format!("{} against {}", value_words(&spec.y), crate::format::axis_words(&spec.x_axis))
        }
        FigureKind::OverTraining => format!("{} against {}", l.words(&spec.metric), time_words(spec.x)),
        FigureKind::Heatmap => format!("{} per {} over training", l.words(&spec.metric), l.index(&spec.metric)),
        FigureKind::Vector if spec.x_metric.is_empty() => {
            format!("Final {} against {}", l.words(&spec.metric), l.index(&spec.metric))
        }
        FigureKind::Vector => format!("Final {} against {}", l.words(&spec.metric), l.words(&spec.x_metric)),
        FigureKind::Scatter => format!("{} against {}", value_words(&spec.y), value_words(&spec.x_value)),
    };
    // A metric name without a label ("sb/residual ...") keeps its spelling.
    if t.split_whitespace().next().is_some_and(|w| w.contains(['/', '_'])) { t } else { capitalise(&t) }
}

/// The mean over `runs` of each reference value of the figure (NaN where no run has one),
/// written as reference rows of the CSV (with `x` when the group sits at one x value).
pub(crate) fn reference_means(
    ctx: &mut Ctx<'_>,
    s: &Series,
    runs: &[usize],
    x: &str,
    missing: &mut Missing,
) -> Vec<f64> {
    let mut out = Vec::new();
    for r in &ctx.spec.reference {
        let mut vals = Vec::new();
        for &run in runs {
            match scalar_value(&r.value, ctx.run(run)) {
                Ok(v) if v.is_finite() => vals.push(v),
                Ok(v) => missing.add(format!("its value is {v}"), &ctx.study.runs[run].summary.id),
                Err(e) => missing.add(e, &ctx.study.runs[run].summary.id),
            }
        }
        let mean = if vals.is_empty() { f64::NAN } else { sgdlab_linalg::stats::mean(&vals) };
        let mut row = ctx.aggregate_row(s, runs, RowKind::Reference);
        row.x = x.to_string();
        row.value = Some(mean);
        row.n = Some(vals.len());
        row.label = r.label.clone();
        ctx.csv.row(&row);
        out.push(mean);
    }
    out
}
