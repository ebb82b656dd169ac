//! Figures: aggregation over seeds, the CSV behind each figure, and its SVG (plotters).
//!
//! Only the runs the verdict used are plotted (a run listed in `verdict.json`
//! `runs.excluded` is left out, and the caption says so). Within a run, a metric's value at a
//! step is the last row for that step in file order; `null` values (not finite) appear in the
//! CSV with an empty `value` and are left out of means, bands and drawings.
//!
//! When a study sweeps several knobs, the knobs other than the figure's that take more than one
//! value among the used runs are *series knobs*: every combination of their values is a separate
//! series (its own colour, its own mean and band), so runs of different settings are never
//! averaged together.

use crate::ReportError;
use crate::format::fmt_num;
use crate::records::{FigureKind, FigureSpec, KnobValue, MetricRow};
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

/// Size of every figure in pixels.
const FIGURE_SIZE: (u32, u32) = (800, 460);
/// Width of the legend column on the right of a figure.
const LEGEND_WIDTH: u32 = 230;
/// Tableau 10: one colour per series (cycled).
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];
/// Opacity of min-max bands.
const BAND_OPACITY: f64 = 0.2;
/// At most this many distinct numeric knob values get a tick each; more get round ticks.
const MAX_KNOB_TICKS: usize = 12;

/// A used run as a figure sees it.
pub(crate) struct FigureRun<'a> {
    pub id: &'a str,
    pub seed: u64,
    /// The run's value of the figure's knob (`None`: the plan gives none).
    pub knob: Option<KnobValue>,
    /// The run's values of the series knobs, in the order of [`FigureInput::series_knobs`].
    pub series: Vec<Option<KnobValue>>,
    /// Rows of `metrics.jsonl` (`None`: no file).
    pub rows: Option<&'a [MetricRow]>,
}

/// What a figure is drawn from.
pub(crate) struct FigureInput<'a> {
    pub spec: &'a FigureSpec,
    /// Knobs other than the figure's that vary among the used runs (plan order).
    pub series_knobs: Vec<String>,
    pub runs: Vec<FigureRun<'a>>,
}

/// A figure ready to be written and embedded.
pub(crate) struct Figure {
    pub spec: FigureSpec,
    /// Standalone SVG document (with its XML namespace).
    pub svg: String,
    pub csv: String,
    /// What is plotted, in words (plain text).
    pub description: String,
    /// Things the reader should know (log axis impossible, runs without data...).
    pub notes: Vec<String>,
    /// Number of CSV data rows (header excluded).
    pub csv_rows: usize,
}

/// Values of the series knobs; empty when the study varies only the figure's knob.
type SeriesKey = Vec<Option<KnobValue>>;

fn knob_or_na(k: &Option<KnobValue>) -> &str {
    k.as_ref().map_or("n/a", KnobValue::text)
}

/// One value of one run (a point of `final_vs_knob`).
#[derive(Clone, Debug)]
struct SeedValue {
    seed: u64,
    run_id: String,
    step: u64,
    value: Option<f64>,
}

/// Mean, minimum and maximum over the finite values of a set of seeds.
#[derive(Clone, Copy, Debug)]
struct Summary {
    mean: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn summarise(values: impl Iterator<Item = f64>) -> Option<Summary> {
    let (mut sum, mut min, mut max, mut n) = (0.0, f64::INFINITY, f64::NEG_INFINITY, 0usize);
    for v in values.filter(|v| v.is_finite()) {
        sum += v;
        min = min.min(v);
        max = max.max(v);
        n += 1;
    }
    (n > 0).then(|| Summary { mean: sum / n as f64, min, max, n })
}

/// The last value of each step of a run's rows for `spec.metric`, sorted by step.
fn steps_of(rows: &[MetricRow], spec: &FigureSpec) -> Vec<(u64, Option<f64>)> {
    let mut by_step: BTreeMap<u64, Option<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.probe == spec.metric.probe && r.name == spec.metric.name) {
        by_step.insert(r.step, r.value.filter(|v| v.is_finite()));
    }
    by_step.into_iter().collect()
}

/// One run's values of a metric, by step (ascending).
struct SeedSeries {
    seed: u64,
    run_id: String,
    steps: Vec<(u64, Option<f64>)>,
}

/// The runs of one figure knob value and one series, sorted by seed then run id.
struct Group {
    knob: KnobValue,
    series: SeriesKey,
    seeds: Vec<SeedSeries>,
}

/// Groups sorted by knob value then series, and notes on runs left out.
fn gather(input: &FigureInput<'_>) -> (Vec<Group>, Vec<String>) {
    let spec = input.spec;
    let mut groups: BTreeMap<(KnobValue, SeriesKey), Vec<SeedSeries>> = BTreeMap::new();
    let (mut no_knob, mut no_file, mut no_rows) = (Vec::new(), Vec::new(), Vec::new());
    for run in &input.runs {
        let Some(knob) = &run.knob else {
            no_knob.push(run.id);
            continue;
        };
        let Some(rows) = run.rows else {
            no_file.push(run.id);
            continue;
        };
        let steps = steps_of(rows, spec);
        if steps.is_empty() {
            no_rows.push(run.id);
            continue;
        }
        let key = (knob.clone(), run.series.clone());
        groups.entry(key).or_default().push(SeedSeries { seed: run.seed, run_id: run.id.to_string(), steps });
    }
    let groups: Vec<Group> = groups
        .into_iter()
        .map(|((knob, series), mut seeds)| {
            seeds.sort_by(|a, b| (a.seed, &a.run_id).cmp(&(b.seed, &b.run_id)));
            Group { knob, series, seeds }
        })
        .collect();
    let mut notes = Vec::new();
    if !no_knob.is_empty() {
        notes.push(format!(
            "runs without a value of knob `{}` in plan.json, not plotted: {}",
            spec.knob,
            no_knob.join(", ")
        ));
    }
    if !no_file.is_empty() {
        notes.push(format!("runs without metrics.jsonl, not plotted: {}", no_file.join(", ")));
    }
    if !no_rows.is_empty() && !groups.is_empty() {
        notes.push(format!("runs that never recorded {}, not plotted: {}", spec.metric, no_rows.join(", ")));
    }
    (groups, notes)
}

/// The fixed CSV columns after the knob columns.
const CSV_COLUMNS: [&str; 5] = ["seed", "run_id", "step", "n", "value"];

/// The figure's knob, then the series knobs, then the fixed columns; a knob named like a fixed
/// column is written `knob_<name>`.
fn csv_header(knob: &str, series_knobs: &[String]) -> String {
    let name = |k: &str| if CSV_COLUMNS.contains(&k) { format!("knob_{k}") } else { k.to_string() };
    let mut fields: Vec<String> =
        std::iter::once(knob).chain(series_knobs.iter().map(String::as_str)).map(name).collect();
    fields.extend(CSV_COLUMNS.iter().map(|c| c.to_string()));
    let mut h = fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    h.push('\n');
    h
}

/// Quotes a CSV field when it holds a comma, quote, line break or edge space (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Shortest text that reads back as the same f64 (empty when not finite).
fn csv_number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => String::new(),
    }
}

/// Writes CSV rows and counts them.
struct CsvWriter {
    text: String,
    rows: usize,
}

impl CsvWriter {
    fn new(knob: &str, series_knobs: &[String]) -> Self {
        CsvWriter { text: csv_header(knob, series_knobs), rows: 0 }
    }

    /// One row: `seed` is a seed number or `mean` / `min` / `max`.
    fn row(&mut self, g: &Group, seed: &str, run_id: &str, step: Option<u64>, n: usize, value: Option<f64>) {
        let mut fields = vec![csv_field(g.knob.text())];
        fields.extend(g.series.iter().map(|v| csv_field(knob_or_na(v))));
        fields.push(csv_field(seed));
        fields.push(csv_field(run_id));
        fields.push(step.map(|s| s.to_string()).unwrap_or_default());
        fields.push(n.to_string());
        fields.push(csv_number(value));
        self.text.push_str(&fields.join(","));
        self.text.push('\n');
        self.rows += 1;
    }
}

/// Builds a figure (SVG, CSV, description and notes) from the used runs.
pub(crate) fn build_figure(input: &FigureInput<'_>, svg_path: &Path) -> Result<Figure, ReportError> {
    let (groups, notes) = gather(input);
    match input.spec.kind {
        FigureKind::FinalVsKnob => final_vs_knob(input, groups, notes, svg_path),
        FigureKind::OverTraining => over_training(input, groups, notes, svg_path),
    }
}

fn series_words(input: &FigureInput<'_>) -> String {
    if input.series_knobs.is_empty() {
        String::new()
    } else {
        format!(" One series per value of {}.", input.series_knobs.join(" and "))
    }
}

/// One knob value and series of a `final_vs_knob` figure.
struct FinalGroup {
    knob: KnobValue,
    series: SeriesKey,
    points: Vec<SeedValue>,
    summary: Option<Summary>,
}

fn final_vs_knob(
    input: &FigureInput<'_>,
    groups: Vec<Group>,
    mut notes: Vec<String>,
    svg_path: &Path,
) -> Result<Figure, ReportError> {
    let spec = input.spec;
    let mut finals = Vec::new();
    let mut non_finite = Vec::new();
    let mut csv = CsvWriter::new(&spec.knob, &input.series_knobs);
    for g in &groups {
        let points: Vec<SeedValue> = g
            .seeds
            .iter()
            .map(|s| {
                let &(step, value) = s.steps.last().expect("gathered series are non-empty");
                if value.is_none() {
                    non_finite.push(s.run_id.clone());
                }
                SeedValue { seed: s.seed, run_id: s.run_id.clone(), step, value }
            })
            .collect();
        let summary = summarise(points.iter().filter_map(|p| p.value));
        for p in &points {
            csv.row(g, &p.seed.to_string(), &p.run_id, Some(p.step), usize::from(p.value.is_some()), p.value);
        }
        if let Some(s) = summary {
            for (label, v) in [("mean", s.mean), ("min", s.min), ("max", s.max)] {
                csv.row(g, label, "", None, s.n, Some(v));
            }
        }
        finals.push(FinalGroup { knob: g.knob.clone(), series: g.series.clone(), points, summary });
    }
    if !non_finite.is_empty() {
        notes.push(format!(
            "runs whose last value is not finite (left out of mean and band): {}",
            non_finite.join(", ")
        ));
    }
    let n_runs: usize = finals.iter().map(|g| g.points.len()).sum();
    let n_values = finals.iter().map(|g| &g.knob).collect::<BTreeSet<_>>().len();
    let text_knob = finals.iter().any(|g| g.knob.number().is_none());
    let description = format!(
        "Last recorded value of {} in each run against {}: mean over seeds ({}), minimum to maximum over seeds \
         (band) and each seed (points); {} runs over {} values of {}.{}",
        spec.metric,
        spec.knob,
        if text_knob { "a dash per value" } else { "line" },
        n_runs,
        n_values,
        spec.knob,
        series_words(input)
    );
    let svg = draw_final_vs_knob(input, &finals, &mut notes).map_err(|m| draw_error(svg_path, m))?;
    Ok(Figure { spec: spec.clone(), svg, csv: csv.text, description, notes, csv_rows: csv.rows })
}

/// One line of an `over_training` figure: a knob value and series, summarised per step.
struct TrainingLine {
    knob: KnobValue,
    series: SeriesKey,
    n_seeds: usize,
    /// Per step (ascending) with at least one finite value.
    steps: Vec<(u64, Summary)>,
}

fn over_training(
    input: &FigureInput<'_>,
    groups: Vec<Group>,
    mut notes: Vec<String>,
    svg_path: &Path,
) -> Result<Figure, ReportError> {
    let spec = input.spec;
    let mut lines = Vec::new();
    let mut csv = CsvWriter::new(&spec.knob, &input.series_knobs);
    for g in &groups {
        let mut at_step: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for s in &g.seeds {
            for &(step, value) in &s.steps {
                let entry = at_step.entry(step).or_default();
                entry.extend(value);
                csv.row(g, &s.seed.to_string(), &s.run_id, Some(step), usize::from(value.is_some()), value);
            }
        }
        let steps: Vec<(u64, Summary)> =
            at_step.into_iter().filter_map(|(s, vs)| summarise(vs.into_iter()).map(|x| (s, x))).collect();
        for (label, pick) in [("mean", 0), ("min", 1), ("max", 2)] {
            for &(step, s) in &steps {
                csv.row(g, label, "", Some(step), s.n, Some([s.mean, s.min, s.max][pick]));
            }
        }
        lines.push(TrainingLine { knob: g.knob.clone(), series: g.series.clone(), n_seeds: g.seeds.len(), steps });
    }
    if lines.iter().any(|l| l.steps.iter().any(|(_, s)| s.n != l.n_seeds)) {
        notes.push(
            "at some steps not every seed has a finite value: the mean there is over fewer seeds (column n of the CSV)"
                .to_string(),
        );
    }
    let n_runs: usize = lines.iter().map(|l| l.n_seeds).sum();
    let n_values = lines.iter().map(|l| &l.knob).collect::<BTreeSet<_>>().len();
    let description = format!(
        "{} against training step, one line per value of {} (mean over seeds) with a band from the minimum to the \
         maximum over seeds; {} runs over {} values of {}.{}",
        spec.metric,
        spec.knob,
        n_runs,
        n_values,
        spec.knob,
        series_words(input)
    );
    let svg = draw_over_training(input, &lines, &mut notes).map_err(|m| draw_error(svg_path, m))?;
    Ok(Figure { spec: spec.clone(), svg, csv: csv.text, description, notes, csv_rows: csv.rows })
}

fn draw_error(path: &Path, message: String) -> ReportError {
    ReportError::Draw { path: path.to_path_buf(), message: message.replace(['\n', '\r'], " ") }
}

/// A plotting axis: linear or logarithmic, with explicit ticks and optional exact tick labels.
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
    /// Labels of particular tick values (knob values as the plan wrote them, category names).
    labels: Vec<(f64, String)>,
}

impl Axis {
    /// An axis covering `values` (finite, and positive when `log`), padded by 5% on each side.
    fn covering(values: &[f64], log: bool) -> Axis {
        let (mut lo, mut hi) =
            values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        if !lo.is_finite() {
            (lo, hi) = if log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        if log {
            let (l, h) = if lo == hi { (lo.ln() - 0.5, hi.ln() + 0.5) } else { (lo.ln(), hi.ln()) };
            let pad = 0.05 * (h - l);
            let (lo, hi) = ((l - pad).exp(), (h + pad).exp());
            Axis { lo, hi, log, ticks: log_ticks(lo, hi), labels: Vec::new() }
        } else {
            let (l, h) = if lo == hi {
                let d = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
                (lo - d, hi + d)
            } else {
                (lo, hi)
            };
            let pad = 0.05 * (h - l);
            let (lo, hi) = (l - pad, h + pad);
            Axis { lo, hi, log, ticks: linear_ticks(lo, hi, 6), labels: Vec::new() }
        }
    }

    /// Categories 0..n-1 with their names.
    fn categorical(names: Vec<String>) -> Axis {
        let n = names.len().max(1);
        let labels: Vec<(f64, String)> = names.into_iter().enumerate().map(|(i, s)| (i as f64, s)).collect();
        Axis { lo: -0.5, hi: n as f64 - 0.5, log: false, ticks: labels.iter().map(|l| l.0).collect(), labels }
    }

    /// Where `v` falls between the ends, 0 to 1.
    fn fraction(&self, v: f64) -> f64 {
        if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    /// Whether `v` can be drawn on this axis.
    fn accepts(&self, v: f64) -> bool {
        v.is_finite() && (!self.log || v > 0.0)
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = self.fraction(*v);
        let t = if t.is_finite() { t.clamp(-1.0, 2.0) } else { 0.0 };
        (f64::from(limit.0) + t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.max_num_points() == 0 { Vec::new() } else { self.ticks.clone() }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, value: &f64) -> String {
        match self.labels.iter().find(|(v, _)| v == value) {
            Some((_, label)) => label.clone(),
            None => fmt_num(*value),
        }
    }
}

/// Round ticks (1, 2 or 5 times a power of ten apart), about `target` of them.
fn linear_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 || span.is_infinite() {
        return vec![lo];
    }
    let raw = span / target.max(2) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|&s| s >= raw).unwrap_or(10.0 * mag);
    // A little slack so that 0.7 / 0.1 = 6.999... still counts 0.7 as inside.
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|k| {
            let t = k as f64 * step;
            // Snap to the decimal the step implies, so labels read 0.3 rather than 0.30000000000000004.
            let decimals = (-step.log10().floor()).max(0.0) as i32 + 1;
            let scale = 10f64.powi(decimals);
            if decimals < 15 { (t * scale).round() / scale } else { t }
        })
        .collect()
}

/// Powers of ten in [lo, hi]; with 2 and 5 multiples when the range spans few decades.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    for mantissas in [&[1.0][..], &[1.0, 2.0, 5.0], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]] {
        let ticks: Vec<f64> = (a..=b)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|&t| t >= lo * (1.0 - 1e-12) && t <= hi * (1.0 + 1e-12))
            .collect();
        if ticks.len() >= 3 {
            if ticks.len() > 10 {
                let every = ticks.len().div_ceil(8);
                return ticks.into_iter().step_by(every).collect();
            }
            return ticks;
        }
    }
    linear_ticks(lo, hi, 4).into_iter().filter(|&t| t > 0.0).collect()
}

/// Whether a log axis was asked for and can be drawn (all values positive); notes why not.
fn log_possible(asked: bool, values: &[f64], axis_name: &str, notes: &mut Vec<String>) -> bool {
    if !asked {
        return false;
    }
    if values.iter().any(|&v| v <= 0.0) {
        if values.iter().any(|&v| v > 0.0) {
            let n = values.iter().filter(|&&v| v <= 0.0).count();
            notes.push(format!("{axis_name} axis is logarithmic: {n} values <= 0 are not drawn (they are in the CSV)"));
            return true;
        }
        notes
            .push(format!("a logarithmic {axis_name} axis was asked for, but no value is positive: linear axis drawn"));
        return false;
    }
    true
}

type DrawResult<T> = Result<T, String>;

fn de<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Font sizes as plotters takes them (its SVG backend writes `size / 1.24` pixels).
const CAPTION_FONT: u32 = 20;
const TICK_FONT: u32 = 15;
const AXIS_DESC_FONT: u32 = 16;
const LEGEND_FONT: u32 = 15;
/// Legend labels longer than this many characters are cut with an ellipsis.
const LEGEND_CHARS: usize = 28;

type Area<'b> = DrawingArea<SVGBackend<'b>, plotters::coord::Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Axis, Axis>>;

/// The caption, axes, ticks and grid of a figure.
fn chart<'a, 'b>(area: &'a Area<'b>, spec: &FigureSpec, x: &Axis, y: &Axis, x_desc: &str) -> DrawResult<Chart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(&spec.name, ("sans-serif", CAPTION_FONT))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(78)
        .build_cartesian_2d(x.clone(), y.clone())
        .map_err(de)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(spec.metric.to_string())
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", TICK_FONT))
        .axis_desc_style(("sans-serif", AXIS_DESC_FONT))
        .draw()
        .map_err(de)?;
    Ok(chart)
}

/// An entry of a figure's legend.
enum LegendMark {
    /// A heading line without a mark.
    Title,
    Line(RGBColor),
    Band(RGBColor),
    Point(RGBColor),
}

/// The legend, in its own column right of the plot (so it never hides data).
fn draw_legend(area: &Area<'_>, entries: &[(LegendMark, String)]) -> DrawResult<()> {
    let font = ("sans-serif", LEGEND_FONT).into_font();
    for (i, (mark, label)) in entries.iter().enumerate() {
        let y = 44 + 22 * i as i32;
        let mut x_text = 36;
        match mark {
            LegendMark::Title => x_text = 8,
            LegendMark::Line(c) => {
                area.draw(&PathElement::new(vec![(8, y), (30, y)], c.stroke_width(2))).map_err(de)?
            }
            LegendMark::Band(c) => {
                area.draw(&Rectangle::new([(8, y - 6), (30, y + 6)], c.mix(BAND_OPACITY).filled())).map_err(de)?
            }
            LegendMark::Point(c) => area.draw(&Circle::new((19, y), 3, c.mix(0.7).filled())).map_err(de)?,
        }
        let label = if label.chars().count() > LEGEND_CHARS {
            format!("{}…", label.chars().take(LEGEND_CHARS - 1).collect::<String>())
        } else {
            label.clone()
        };
        area.draw(&Text::new(label, (x_text, y - 7), font.clone())).map_err(de)?;
    }
    Ok(())
}

/// A figure that says there is nothing to plot, and why.
fn draw_no_data(spec: &FigureSpec, message: &str) -> DrawResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, FIGURE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let (w, h) = (FIGURE_SIZE.0 as i32, FIGURE_SIZE.1 as i32);
        let centred = plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        );
        let caption = TextStyle::from(("sans-serif", CAPTION_FONT).into_font()).pos(centred);
        root.draw(&Text::new(spec.name.clone(), (w / 2, 22), caption)).map_err(de)?;
        root.draw(&Rectangle::new([(60, 50), (w - 20, h - 40)], BLACK.mix(0.3))).map_err(de)?;
        let grey = BLACK.mix(0.6);
        let style = TextStyle::from(("sans-serif", AXIS_DESC_FONT + 2).into_font()).color(&grey).pos(centred);
        root.draw(&Text::new(message.to_string(), (w / 2, h / 2), style)).map_err(de)?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}

/// Horizontal offset in pixels of the `i`-th of `n` seed points, so equal values stay visible.
fn seed_offset(i: usize, n: usize) -> i32 {
    /// Pixels between neighbours, and the widest spread of a group.
    const SPACING: f64 = 6.0;
    const MAX_SPREAD: f64 = 24.0;
    if n < 2 {
        return 0;
    }
    let spacing = SPACING.min(MAX_SPREAD / (n - 1) as f64);
    ((i as f64 - (n as f64 - 1.0) / 2.0) * spacing).round() as i32
}

/// Colour of the `i`-th series.
fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn draw_final_vs_knob(input: &FigureInput<'_>, groups: &[FinalGroup], notes: &mut Vec<String>) -> DrawResult<String> {
    let spec = input.spec;
    let values: Vec<f64> = groups.iter().flat_map(|g| g.points.iter().filter_map(|p| p.value)).collect();
    if values.is_empty() {
        notes.push(format!("no data: no used run recorded a finite value of {}", spec.metric));
        return draw_no_data(spec, &format!("no data: no used run recorded {}", spec.metric));
    }
    // x: knob values, numeric when they all are (joined by a line), else categories in sorted
    // order (no line: the order of categories means nothing).
    let knob_values: Vec<&KnobValue> = groups.iter().map(|g| &g.knob).collect::<BTreeSet<_>>().into_iter().collect();
    let numeric: Option<Vec<f64>> = knob_values.iter().map(|k| k.number()).collect();
    let categorical = numeric.is_none();
    let x_axis = match &numeric {
        Some(xs) => {
            let log = spec.log_x && xs.iter().all(|&x| x > 0.0);
            if spec.log_x && !log {
                notes.push(
                    "a logarithmic x axis was asked for, but some knob values are <= 0: linear axis drawn".into(),
                );
            }
            let mut axis = Axis::covering(xs, log);
            if xs.len() <= MAX_KNOB_TICKS {
                axis.ticks = xs.clone();
                axis.labels = knob_values.iter().zip(xs).map(|(k, &x)| (x, k.text().to_string())).collect();
            }
            axis
        }
        None => {
            if spec.log_x {
                notes.push("a logarithmic x axis was asked for, but the knob values are not all numbers".into());
            }
            Axis::categorical(knob_values.iter().map(|k| k.text().to_string()).collect())
        }
    };
    let x_of = |k: &KnobValue| match k.number() {
        Some(x) if !categorical => x,
        _ => knob_values.iter().position(|v| *v == k).unwrap_or(0) as f64,
    };
    let log_y = log_possible(spec.log_y, &values, "y", notes);
    let drawable: Vec<f64> = values.iter().copied().filter(|&v| !log_y || v > 0.0).collect();
    let y_axis = Axis::covering(&drawable, log_y);
    let series: Vec<&SeriesKey> = groups.iter().map(|g| &g.series).collect::<BTreeSet<_>>().into_iter().collect();

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, FIGURE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let (plot_area, legend_area) = root.split_horizontally(FIGURE_SIZE.0 - LEGEND_WIDTH);
        let mut chart = chart(&plot_area, spec, &x_axis, &y_axis, &spec.knob)?;
        let ok = |x: f64, y: f64| x_axis.accepts(x) && y_axis.accepts(y);
        let point_color = RGBColor(0x33, 0x33, 0x33);
        let mut legend = Vec::new();
        if series.len() > 1 {
            legend.push((LegendMark::Title, input.series_knobs.join(", ")));
        }
        for (si, key) in series.iter().enumerate() {
            let color = series_color(si);
            let mine: Vec<&FinalGroup> = groups.iter().filter(|g| &g.series == *key).collect();
            let band: Vec<(f64, Summary)> = mine
                .iter()
                .filter_map(|g| g.summary.map(|s| (x_of(&g.knob), s)))
                .filter(|(x, s)| ok(*x, s.min) && ok(*x, s.max))
                .collect();
            if band.len() >= 2 && !categorical {
                let mut poly: Vec<(f64, f64)> = band.iter().map(|(x, s)| (*x, s.min)).collect();
                poly.extend(band.iter().rev().map(|(x, s)| (*x, s.max)));
                chart.draw_series(std::iter::once(Polygon::new(poly, color.mix(BAND_OPACITY).filled()))).map_err(de)?;
            } else {
                // One value or categories: the band is a bar at each knob value.
                for (x, s) in &band {
                    let height = pixel_height(&chart, *x, s.min, s.max).max(1);
                    let bar = EmptyElement::at((*x, s.max))
                        + Rectangle::new([(-9, 0), (9, height)], color.mix(BAND_OPACITY).filled());
                    chart.draw_series(std::iter::once(bar)).map_err(de)?;
                }
            }
            let means: Vec<(f64, f64)> = mine
                .iter()
                .filter_map(|g| g.summary.map(|s| (x_of(&g.knob), s.mean)))
                .filter(|&(x, y)| ok(x, y))
                .collect();
            if !categorical {
                chart.draw_series(LineSeries::new(means.clone(), color.stroke_width(2))).map_err(de)?;
            } else {
                let dashes = means
                    .iter()
                    .map(|&p| EmptyElement::at(p) + PathElement::new(vec![(-12, 0), (12, 0)], color.stroke_width(3)));
                chart.draw_series(dashes).map_err(de)?;
            }
            let dot = if series.len() > 1 { color } else { point_color };
            for g in &mine {
                let (x, n) = (x_of(&g.knob), g.points.len());
                let points =
                    g.points.iter().enumerate().filter_map(|(i, p)| p.value.map(|v| (i, v))).filter(|&(_, v)| ok(x, v));
                let marks = points.map(|(i, v)| {
                    EmptyElement::at((x, v)) + Circle::new((seed_offset(i, n), 0), 3, dot.mix(0.75).filled())
                });
                chart.draw_series(marks).map_err(de)?;
            }
            if series.len() > 1 {
                let label = key.iter().map(knob_or_na).collect::<Vec<_>>().join(", ");
                legend.push((LegendMark::Line(color), label));
            }
        }
        let grey = RGBColor(0x88, 0x88, 0x88);
        if series.len() > 1 {
            legend.push((LegendMark::Band(grey), "min to max over seeds".into()));
            legend.push((LegendMark::Point(grey), "one seed (side by side)".into()));
        } else {
            let color = series_color(0);
            legend.push((LegendMark::Line(color), "mean over seeds".into()));
            legend.push((LegendMark::Band(color), "min to max over seeds".into()));
            legend.push((LegendMark::Point(point_color), "one seed (side by side)".into()));
        }
        draw_legend(&legend_area, &legend)?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}

/// How many pixels `hi` lies above `lo` at `x`.
fn pixel_height(chart: &Chart<'_, '_>, x: f64, lo: f64, hi: f64) -> i32 {
    let (_, y_lo) = chart.backend_coord(&(x, lo));
    let (_, y_hi) = chart.backend_coord(&(x, hi));
    y_lo - y_hi
}

fn draw_over_training(input: &FigureInput<'_>, lines: &[TrainingLine], notes: &mut Vec<String>) -> DrawResult<String> {
    let spec = input.spec;
    let steps: Vec<f64> = lines.iter().flat_map(|l| l.steps.iter().map(|(s, _)| *s as f64)).collect();
    if steps.is_empty() {
        notes.push(format!("no data: no used run recorded a finite value of {}", spec.metric));
        return draw_no_data(spec, &format!("no data: no used run recorded {}", spec.metric));
    }
    let values: Vec<f64> = lines.iter().flat_map(|l| l.steps.iter().flat_map(|(_, s)| [s.min, s.max])).collect();
    let log_x = log_possible(spec.log_x, &steps, "x", notes);
    let log_y = log_possible(spec.log_y, &values, "y", notes);
    let x_axis = Axis::covering(&steps.iter().copied().filter(|&v| !log_x || v > 0.0).collect::<Vec<_>>(), log_x);
    let y_axis = Axis::covering(&values.iter().copied().filter(|&v| !log_y || v > 0.0).collect::<Vec<_>>(), log_y);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, FIGURE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let (plot_area, legend_area) = root.split_horizontally(FIGURE_SIZE.0 - LEGEND_WIDTH);
        let mut chart = chart(&plot_area, spec, &x_axis, &y_axis, "step")?;
        let title = std::iter::once(spec.knob.as_str()).chain(input.series_knobs.iter().map(String::as_str));
        let mut legend = vec![(LegendMark::Title, title.collect::<Vec<_>>().join(", "))];
        let ok = |x: f64, y: f64| x_axis.accepts(x) && y_axis.accepts(y);
        for (i, l) in lines.iter().enumerate() {
            let color = series_color(i);
            let band: Vec<(f64, Summary)> =
                l.steps.iter().map(|&(s, m)| (s as f64, m)).filter(|(x, m)| ok(*x, m.min) && ok(*x, m.max)).collect();
            if band.len() >= 2 {
                let mut poly: Vec<(f64, f64)> = band.iter().map(|(x, s)| (*x, s.min)).collect();
                poly.extend(band.iter().rev().map(|(x, s)| (*x, s.max)));
                chart.draw_series(std::iter::once(Polygon::new(poly, color.mix(BAND_OPACITY).filled()))).map_err(de)?;
            }
            let line: Vec<(f64, f64)> =
                l.steps.iter().map(|&(s, m)| (s as f64, m.mean)).filter(|&(x, y)| ok(x, y)).collect();
            if line.len() == 1 {
                chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(de)?;
            }
            chart.draw_series(LineSeries::new(line, color.stroke_width(2))).map_err(de)?;
            let values = std::iter::once(l.knob.text()).chain(l.series.iter().map(knob_or_na));
            let n = l.n_seeds;
            let label =
                format!("{} ({n} seed{})", values.collect::<Vec<_>>().join(", "), if n == 1 { "" } else { "s" });
            legend.push((LegendMark::Line(color), label));
        }
        legend.push((LegendMark::Band(RGBColor(0x88, 0x88, 0x88)), "min to max over seeds".into()));
        draw_legend(&legend_area, &legend)?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_inside() {
        let t = linear_ticks(-0.05, 1.05, 6);
        assert_eq!(t, vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        let t = linear_ticks(0.1, 0.7, 6);
        assert_eq!(t, vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]);
    }

    #[test]
    fn log_ticks_cover_decades() {
        assert_eq!(log_ticks(0.5, 2000.0), vec![1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(log_ticks(25.0, 600.0), vec![50.0, 100.0, 200.0, 500.0]);
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("sgd"), "sgd");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_header("seed", &[]), "knob_seed,seed,run_id,step,n,value\n");
        assert_eq!(csv_header("depth", &["act".into()]), "depth,act,seed,run_id,step,n,value\n");
    }
}
