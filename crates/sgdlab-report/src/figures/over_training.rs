//! `over_training`: a scalar metric against step or epoch. Per arm: every seed as a faint line,
//! the mean over seeds as a line with a band from the minimum to the maximum over seeds, over
//! the steps every seed of the arm was measured at; reference lines dashed in the arm's colour.

use super::csv::RowKind;
use super::plot::{self, Axis, BAND_OPACITY, DrawResult, GREY, LIGHT_GREY, Mark, SEED_OPACITY, de};
use super::{Ctx, Figure, Missing, Series, reference_means, seeds_word, time, time_words};
use crate::ReportError;
use crate::study::AxisTitle;
use plotters::prelude::*;
use sgdlab_studies::value::Val;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One seed's measurements: (step, epoch, value; NaN when not finite).
type Trace = Vec<(u64, f64, f64)>;

/// The aggregate of an arm at one step.
pub(super) struct Agg {
    pub step: u64,
    pub epoch: f64,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

struct Line {
    traces: Vec<Trace>,
    agg: Vec<Agg>,
    refs: Vec<f64>,
}

/// Mean, minimum and maximum of the finite values (NaN when none).
pub(super) fn summarise(v: &[f64]) -> (f64, f64, f64, usize) {
    let f: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if f.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN, 0);
    }
    let (lo, hi) = f.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    (sgdlab_linalg::stats::mean(&f), lo, hi, f.len())
}

/// The steps at which every trace has a measurement.
pub(super) fn common_steps<T>(traces: &[Vec<T>], step: impl Fn(&T) -> u64) -> BTreeSet<u64> {
    let mut sets = traces.iter().map(|t| t.iter().map(&step).collect::<BTreeSet<u64>>());
    let first = sets.next().unwrap_or_default();
    sets.fold(first, |acc, s| acc.intersection(&s).copied().collect())
}

pub(super) fn build(mut ctx: Ctx<'_>, path: &Path) -> Result<Figure, ReportError> {
    let metric = ctx.spec.metric.clone();
    let series = ctx.series(&ctx.arm_axes());
    let mut missing = Missing::default();
    let mut lines = Vec::new();
    let mut uneven = false;
    for s in &series {
        let mut traces = Vec::new();
        for &r in &s.runs {
            let id = &ctx.study.runs[r].summary.id;
            match ctx.run(r).series.get(&metric).filter(|p| !p.is_empty()) {
                None => missing.add(format!("no {metric} measured"), id),
                Some(p) if p.iter().any(|p| matches!(p.value, Val::Vector(_))) => {
                    missing.add(format!("{metric} is a vector metric: draw it with kind heatmap or vector"), id)
                }
                Some(p) => {
                    let t: Trace = p.iter().map(|p| (p.step, p.epoch, p.value.elements()[0])).collect();
                    for &(step, epoch, v) in &t {
                        let mut row = ctx.run_row(s, r);
                        (row.step, row.epoch, row.value) = (Some(step), Some(epoch), Some(v));
                        row.x = super::csv_time(step, epoch, ctx.spec.x);
                        ctx.csv.row(&row);
                    }
                    traces.push(t);
                }
            }
        }
        let common = common_steps(&traces, |p| p.0);
        uneven |= traces.iter().any(|t| t.len() != common.len());
        let agg = aggregate(&traces, &common);
        for a in &agg {
            let mut row = ctx.aggregate_row(s, &s.runs, RowKind::Mean);
            (row.step, row.epoch, row.value, row.low, row.high, row.n) =
                (Some(a.step), Some(a.epoch), Some(a.mean), Some(a.min), Some(a.max), Some(a.n));
            row.x = super::csv_time(a.step, a.epoch, ctx.spec.x);
            ctx.csv.row(&row);
        }
        let refs = reference_means(&mut ctx, s, &s.runs.clone(), "", &mut missing);
        lines.push(Line { traces, agg, refs });
    }
    if lines.iter().all(|l| l.traces.is_empty()) {
        let reason = missing.main_reason().unwrap_or("no run recorded the metric").to_string();
        return ctx.no_data(&reason, path);
    }
    ctx.notes.extend(missing.notes(&format!("{metric} series")));
    if uneven {
        ctx.notes.push(
            "some seeds were measured at steps others were not (e.g. runs that stop at a training target): the mean \
             and band cover the steps every seed of the arm reached; the faint lines show each seed"
                .into(),
        );
    }
    let caption = format!(
        "One line per arm: the mean of {} over its seeds against {}, with a band from the minimum to the maximum over \
         seeds; faint lines are single seeds.{}",
        ctx.study.labels.metric(&metric).text(false),
        time_words(ctx.spec.x),
        arms_sentence(&series)
    );
    let svg = draw(&mut ctx, &series, &lines);
    ctx.finish(caption, svg, path)
}

/// " Arms: batch size = 32 (5 seeds), batch size = 2000 (5 seeds)."
pub(super) fn arms_sentence(series: &[Series]) -> String {
    let parts: Vec<String> = series.iter().map(|s| format!("{} ({})", s.label, seeds_word(s.runs.len()))).collect();
    format!(" Arms: {}.", parts.join(", "))
}

fn aggregate(traces: &[Trace], steps: &BTreeSet<u64>) -> Vec<Agg> {
    let mut at: BTreeMap<u64, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for t in traces {
        for &(step, epoch, v) in t.iter().filter(|p| steps.contains(&p.0)) {
            let e = at.entry(step).or_default();
            e.0.push(v);
            e.1.push(epoch);
        }
    }
    at.into_iter()
        .map(|(step, (vals, epochs))| {
            let (mean, min, max, n) = summarise(&vals);
            Agg { step, epoch: sgdlab_linalg::stats::mean(&epochs), mean, min, max, n }
        })
        .filter(|a| a.n > 0)
        .collect()
}

/// What a line figure draws for one series, in plot coordinates.
pub(super) struct Drawn {
    /// Single seeds.
    pub traces: Vec<Vec<(f64, f64)>>,
    /// (x, mean, min, max) over seeds.
    pub agg: Vec<(f64, f64, f64, f64)>,
    /// Reference values (one per reference of the figure).
    pub refs: Vec<f64>,
}

fn draw(ctx: &mut Ctx<'_>, series: &[Series], lines: &[Line]) -> DrawResult<String> {
    let x = ctx.spec.x;
    let drawn: Vec<Drawn> = lines
        .iter()
        .map(|l| Drawn {
            traces: l.traces.iter().map(|t| t.iter().map(|p| (time(x, p.0, p.1), p.2)).collect()).collect(),
            agg: l.agg.iter().map(|a| (time(x, a.step, a.epoch), a.mean, a.min, a.max)).collect(),
            refs: l.refs.clone(),
        })
        .collect();
    let x_title =
        if ctx.spec.x_label.is_empty() { AxisTitle::plain(time_words(x)) } else { AxisTitle::plain(&ctx.spec.x_label) };
    let y_title = if ctx.spec.y_label.is_empty() {
        ctx.study.labels.metric(&ctx.spec.metric)
    } else {
        AxisTitle::plain(&ctx.spec.y_label)
    };
    draw_lines(ctx, series, &drawn, &x_title, &y_title, false)
}

/// Lines per series: a band from minimum to maximum, faint single seeds, the mean (with markers
/// when asked and there are few points), and dashed reference lines in the series' colour.
pub(super) fn draw_lines(
    ctx: &mut Ctx<'_>,
    series: &[Series],
    lines: &[Drawn],
    x_title: &AxisTitle,
    y_title: &AxisTitle,
    markers: bool,
) -> DrawResult<String> {
    /// Markers on the mean line when it has at most this many points.
    const MAX_MARKERS: usize = 40;
    let xs: Vec<f64> = lines.iter().flat_map(|l| l.traces.iter().flatten().map(|p| p.0)).collect();
    let mut vs: Vec<f64> = lines.iter().flat_map(|l| l.traces.iter().flatten().map(|p| p.1)).collect();
    vs.extend(lines.iter().flat_map(|l| l.refs.iter().copied()));
    let log_x = plot::log_possible(ctx.spec.log_x, &xs, "x", &mut ctx.notes);
    let log_y = plot::log_possible(ctx.spec.log_y, &vs, "y", &mut ctx.notes);
    let (xa, ya) = (Axis::covering(&xs, log_x), Axis::covering(&vs, log_y));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, plot::FIGURE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let (area, legend_area) = plot::split_legend(&root);
        let mut chart = plot::chart(&area, &ctx.title, &xa, &ya, &x_title.text(log_x), &y_title.text(log_y))?;
        let ok = |x: f64, y: f64| xa.accepts(x) && ya.accepts(y);
        for (s, l) in series.iter().zip(lines) {
            let band: Vec<&(f64, f64, f64, f64)> = l.agg.iter().filter(|a| ok(a.0, a.2) && ok(a.0, a.3)).collect();
            if band.len() >= 2 {
                let mut poly: Vec<(f64, f64)> = band.iter().map(|a| (a.0, a.2)).collect();
                poly.extend(band.iter().rev().map(|a| (a.0, a.3)));
                chart
                    .draw_series(std::iter::once(Polygon::new(poly, s.colour.mix(BAND_OPACITY).filled())))
                    .map_err(de)?;
            }
            for t in &l.traces {
                for seg in segments(t.iter().copied(), &ok) {
                    chart.draw_series(LineSeries::new(seg, s.colour.mix(SEED_OPACITY).stroke_width(1))).map_err(de)?;
                }
            }
            let mean: Vec<(f64, f64)> = l.agg.iter().map(|a| (a.0, a.1)).filter(|p| ok(p.0, p.1)).collect();
            if mean.len() == 1 || (markers && mean.len() <= MAX_MARKERS) {
                chart.draw_series(mean.iter().map(|&p| Circle::new(p, 3, s.colour.filled()))).map_err(de)?;
            }
            chart.draw_series(LineSeries::new(mean, s.colour.stroke_width(2))).map_err(de)?;
        }
        let refs: Vec<&[f64]> = lines.iter().map(|l| l.refs.as_slice()).collect();
        let colours: Vec<RGBColor> = series.iter().map(|s| s.colour).collect();
        plot::reference_lines(&mut chart, &xa, &ya, &refs, &colours, &ctx.spec.reference)?;
        plot::legend(&legend_area, &legend(ctx, series))?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}

/// Runs of drawable points (a value that cannot be drawn breaks the line).
pub(super) fn segments(
    points: impl Iterator<Item = (f64, f64)>,
    ok: &dyn Fn(f64, f64) -> bool,
) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for p in points {
        if ok(p.0, p.1) {
            out.last_mut().expect("non-empty").push(p);
        } else if !out.last().expect("non-empty").is_empty() {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// A heading naming the series axes, then one entry per series: its values (and seeds, when
/// each series is one arm).
pub(super) fn series_legend(series: &[Series], mark: fn(RGBColor) -> Mark, seeds: bool) -> Vec<(Mark, String)> {
    let mut out = Vec::new();
    if let Some(s) = series.first().filter(|s| !s.heading.is_empty()) {
        out.push((Mark::Heading, s.heading.clone()));
    }
    let label =
        |s: &Series| if seeds { format!("{} ({})", s.values, seeds_word(s.runs.len())) } else { s.values.clone() };
    out.extend(series.iter().map(|s| (mark(s.colour), label(s))));
    out
}

/// Arms, then what the marks mean.
pub(super) fn legend(ctx: &Ctx<'_>, series: &[Series]) -> Vec<(Mark, String)> {
    let mut out = series_legend(series, Mark::Line, true);
    if let [one] = series
        && one.heading.is_empty()
    {
        out = vec![(Mark::Line(one.colour), format!("mean over {}", seeds_word(one.runs.len())))];
    }
    out.push((Mark::Band(GREY), "min to max over seeds".into()));
    out.push((Mark::Line(LIGHT_GREY), "one seed".into()));
    for r in &ctx.spec.reference {
        out.push((Mark::Dashed(GREY), r.label.clone()));
    }
    out
}
