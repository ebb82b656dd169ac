//! `final_vs_axis`: a per-run value against a sweep axis. Per value of the axis (and series of
//! the other axes): every seed as a faint point, the mean over seeds with its 95% percentile
//! bootstrap interval as an error bar, means joined by a line when the axis is numeric.

use super::csv::RowKind;
use super::plot::{self, Axis, DrawResult, GREY, Mark, SEED_OPACITY, de};
use super::{Ctx, Figure, Missing, Series, reference_means, runs_word, scalar_value};
use crate::ReportError;
use crate::format::{axis_words, value_text};
use plotters::prelude::*;
use sgdlab_linalg::RngStream;
use sgdlab_linalg::stats::{bootstrap_mean_ci, mean};
use sgdlab_studies::verdict::value_order;
use std::path::Path;

/// Resamples of the interval of each mean.
const RESAMPLES: usize = 2000;
const LEVEL: f64 = 0.95;
/// Offset between series at one axis value, and the widest spread, as fractions of the axis.
const DODGE: f64 = 0.014;
const DODGE_SPREAD: f64 = 0.06;
/// At most this many axis values get a tick each.
const MAX_VALUE_TICKS: usize = 12;

/// The runs of one series at one value of the axis.
struct Group {
    series: usize,
    x: serde_json::Value,
    runs: Vec<usize>,
    /// Per run (same order), its value when finite.
    values: Vec<Option<f64>>,
    mean: f64,
    lo: f64,
    hi: f64,
    refs: Vec<f64>,
    colour: RGBColor,
}

pub(super) fn build(mut ctx: Ctx<'_>, path: &Path) -> Result<Figure, ReportError> {
    let (Some(y), Some(x)) = (ctx.spec.y.clone(), ctx.study.arms.axis(&ctx.spec.x_axis)) else {
        return ctx.no_data("the figure names no per-run value y or no x_axis", path);
    };
    let axes: Vec<usize> =
        ctx.study.arms.series_axes(&ctx.population(), &[x]).into_iter().filter(|&a| a != x).collect();
    let series = ctx.series(&axes);
    let mut missing = Missing::default();
    let mut groups = Vec::new();
    for (si, s) in series.iter().enumerate() {
        let mut xs: Vec<serde_json::Value> = s.runs.iter().filter_map(|&r| ctx.key(r)[x].clone()).collect();
        xs.sort_by(value_order);
        xs.dedup();
        for r in s.runs.iter().filter(|&&r| ctx.key(r)[x].is_none()) {
            missing.add(format!("no value of axis {}", ctx.spec.x_axis), &ctx.study.runs[*r].summary.id);
        }
        for xv in xs {
            let runs: Vec<usize> = s.runs.iter().copied().filter(|&r| ctx.key(r)[x].as_ref() == Some(&xv)).collect();
            groups.push(group(&mut ctx, &y, s, si, xv, runs, &mut missing));
        }
    }
    if groups.iter().all(|g| g.values.iter().all(Option::is_none)) {
        let reason = missing.main_reason().unwrap_or("no run has a finite value").to_string();
        return ctx.no_data(&reason, path);
    }
    ctx.notes.extend(missing.notes("a value"));
    // A single series spans the arms: each value of the axis takes its arm's colour.
    let one = series.len() == 1;
    if one {
        let mut full = vec![x];
        full.extend(&axes);
        let keys: Vec<_> = groups.iter().map(|g| crate::arms::restrict(ctx.key(g.runs[0]), &full)).collect();
        for (g, c) in groups.iter_mut().zip(ctx.study.arms.series_colours(&full, &keys)) {
            g.colour = c;
        }
    }
    let n_runs: usize = groups.iter().map(|g| g.values.iter().flatten().count()).sum();
    let n_values = {
        let mut v: Vec<&serde_json::Value> = groups.iter().map(|g| &g.x).collect();
        v.sort_by(|a, b| value_order(a, b));
        v.dedup();
        v.len()
    };
    let caption = format!(
        "Each faint point is one seed; the large dot is the mean over seeds of {} and its bar the {}% \
         percentile-bootstrap interval of that mean ({RESAMPLES} resamples over seeds; no bar for a single seed). \
         {} at {n_values} values of {}{}.",
        ctx.study.labels.value(&y).text(false),
        LEVEL * 100.0,
        runs_word(n_runs),
        axis_words(&ctx.spec.x_axis),
        if one { String::new() } else { format!("; one series per value of {}", axis_list(&ctx, &axes)) }
    );
    let y_title = if ctx.spec.y_label.is_empty() {
        ctx.study.labels.value(&y)
    } else {
        crate::study::AxisTitle::plain(&ctx.spec.y_label)
    };
    let svg = draw(&mut ctx, &series, &groups, &y_title);
    ctx.finish(caption, svg, path)
}

fn axis_list(ctx: &Ctx<'_>, axes: &[usize]) -> String {
    axes.iter().map(|&a| axis_words(&ctx.study.arms.axes[a])).collect::<Vec<_>>().join(" and ")
}

/// Values, mean, interval and references of one group, and its CSV rows.
fn group(
    ctx: &mut Ctx<'_>,
    y: &sgdlab_studies::value::ValueSpec,
    s: &Series,
    si: usize,
    x: serde_json::Value,
    runs: Vec<usize>,
    missing: &mut Missing,
) -> Group {
    let xt = value_text(&x);
    let mut values = Vec::new();
    for &r in &runs {
        let v = match scalar_value(y, ctx.run(r)) {
            Ok(v) if v.is_finite() => Some(v),
            Ok(v) => {
                missing.add(format!("its value is {v}"), &ctx.study.runs[r].summary.id);
                None
            }
            Err(e) => {
                missing.add(e, &ctx.study.runs[r].summary.id);
                None
            }
        };
        let mut row = ctx.run_row(s, r);
        row.x = xt.clone();
        row.value = v;
        ctx.csv.row(&row);
        values.push(v);
    }
    let finite: Vec<f64> = values.iter().flatten().copied().collect();
    let m = if finite.is_empty() { f64::NAN } else { mean(&finite) };
    let (lo, hi) = if finite.len() >= 2 {
        let stream = RngStream::new(0).child("report").child(&ctx.spec.name).child(&format!("{si}/{xt}"));
        bootstrap_mean_ci(&finite, RESAMPLES, LEVEL, &stream).map_or((f64::NAN, f64::NAN), |c| (c.lower, c.upper))
    } else {
        (f64::NAN, f64::NAN)
    };
    if !finite.is_empty() {
        let mut row = ctx.aggregate_row(s, &runs, RowKind::Mean);
        row.x = xt.clone();
        row.value = Some(m);
        row.low = lo.is_finite().then_some(lo);
        row.high = hi.is_finite().then_some(hi);
        row.n = Some(finite.len());
        ctx.csv.row(&row);
    }
    let refs = reference_means(ctx, s, &runs, &xt, missing);
    Group { series: si, x, runs, values, mean: m, lo, hi, refs, colour: s.colour }
}

/// The x axis: numeric (ticked at the axis values when they are few) or categories.
struct XAxis {
    axis: Axis,
    /// Each axis value's x coordinate.
    pos: Vec<(serde_json::Value, f64)>,
    categorical: bool,
}

fn x_axis(ctx: &mut Ctx<'_>, groups: &[Group]) -> XAxis {
    let mut values: Vec<serde_json::Value> = groups.iter().map(|g| g.x.clone()).collect();
    values.sort_by(value_order);
    values.dedup();
    let numeric: Option<Vec<f64>> = values.iter().map(serde_json::Value::as_f64).collect();
    match numeric {
        Some(xs) => {
            let log = plot::log_possible(ctx.spec.log_x, &xs, "x", &mut ctx.notes);
            let mut axis = Axis::covering(&xs, log);
            if xs.len() <= MAX_VALUE_TICKS {
                let ticks: Vec<(f64, String)> = values
                    .iter()
                    .zip(&xs)
                    .filter(|(_, x)| axis.accepts(**x))
                    .map(|(v, &x)| (x, value_text(v)))
                    .collect();
                axis = axis.with_ticks_at(ticks);
            }
            XAxis { axis, pos: values.into_iter().zip(xs).collect(), categorical: false }
        }
        None => {
            if ctx.spec.log_x {
                ctx.notes.push("a logarithmic x axis was asked for, but the axis values are not all numbers".into());
            }
            let axis = Axis::categorical(values.iter().map(value_text).collect());
            let pos = values.into_iter().enumerate().map(|(i, v)| (v, i as f64)).collect();
            XAxis { axis, pos, categorical: true }
        }
    }
}

fn draw(
    ctx: &mut Ctx<'_>,
    series: &[Series],
    groups: &[Group],
    y_title: &crate::study::AxisTitle,
) -> DrawResult<String> {
    let XAxis { axis: xa, pos, categorical } = x_axis(ctx, groups);
    // Series side by side around each axis value, so that their bars do not hide each other.
    let n_series = series.len() as f64;
    let step = (DODGE_SPREAD / n_series).min(DODGE);
    let x_of = |g: &Group| {
        let x = pos.iter().find(|(v, _)| *v == g.x).map_or(f64::NAN, |p| p.1);
        xa.shift(x, (g.series as f64 - (n_series - 1.0) / 2.0) * step)
    };
    let mut ys: Vec<f64> = groups.iter().flat_map(|g| g.values.iter().flatten().copied()).collect();
    ys.extend(groups.iter().flat_map(|g| [g.lo, g.hi].into_iter().chain(g.refs.iter().copied())));
    let log_y = plot::log_possible(ctx.spec.log_y, &ys, "y", &mut ctx.notes);
    let ya = Axis::covering(&ys, log_y);
    let x_words = if ctx.spec.x_label.is_empty() { axis_words(&ctx.spec.x_axis) } else { ctx.spec.x_label.clone() };
    let x_title = crate::study::AxisTitle::plain(x_words).text(xa.log);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, plot::FIGURE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let (area, legend_area) = plot::split_legend(&root);
        let mut chart = plot::chart(&area, &ctx.title, &xa, &ya, &x_title, &y_title.text(log_y))?;
        let ok = |x: f64, y: f64| xa.accepts(x) && ya.accepts(y);
        for (si, s) in series.iter().enumerate() {
            let line_colour = if series.len() == 1 { GREY } else { s.colour };
            let means: Vec<(f64, f64)> = groups
                .iter()
                .filter(|g| g.series == si)
                .map(|g| (x_of(g), g.mean))
                .filter(|&(x, y)| ok(x, y))
                .collect();
            if !categorical && means.len() >= 2 {
                chart.draw_series(LineSeries::new(means, line_colour.mix(0.7).stroke_width(2))).map_err(de)?;
            }
        }
        for g in groups {
            let x = x_of(g);
            let n = g.values.len();
            let dots = g.values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).filter(|&(_, v)| ok(x, v));
            let dots = dots.map(|(i, v)| {
                EmptyElement::at((x, v))
                    + Circle::new((plot::seed_offset(i, n), 0), 3, g.colour.mix(SEED_OPACITY).filled())
            });
            chart.draw_series(dots).map_err(de)?;
            if ok(x, g.mean) {
                let (lo, hi) =
                    (if ya.accepts(g.lo) { g.lo } else { f64::NAN }, if ya.accepts(g.hi) { g.hi } else { f64::NAN });
                plot::error_bar(&mut chart, x, g.mean, lo, hi, g.colour)?;
            }
            for (ri, &r) in g.refs.iter().enumerate() {
                if ok(x, r) {
                    let seg = EmptyElement::at((x, r))
                        + plotters::element::DashedPathElement::new(
                            vec![(-24, 0), (24, 0)],
                            5,
                            3,
                            g.colour.stroke_width(2),
                        );
                    chart.draw_series(std::iter::once(seg)).map_err(de)?;
                    if ctx.spec.reference.len() > 1 {
                        let font = ("sans-serif", 13).into_font().color(&g.colour);
                        let t =
                            EmptyElement::at((x, r)) + Text::new(ctx.spec.reference[ri].label.clone(), (27, -7), font);
                        chart.draw_series(std::iter::once(t)).map_err(de)?;
                    }
                }
            }
        }
        plot::legend(&legend_area, &legend(ctx, series, groups))?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}

fn legend(ctx: &Ctx<'_>, series: &[Series], groups: &[Group]) -> Vec<(Mark, String)> {
    let mut out = Vec::new();
    let mark_colour = GREY;
    if series.len() > 1 {
        out = super::over_training::series_legend(series, Mark::Line, false);
    }
    let single = groups.iter().all(|g| g.values.iter().flatten().count() <= 1);
    out.push((Mark::ErrorBar(mark_colour), if single { "one seed".into() } else { "mean over seeds".into() }));
    if !single {
        out.push((Mark::Note, "bar: its 95% interval".into()));
        out.push((Mark::Point(mark_colour), "one seed".into()));
    }
    for r in &ctx.spec.reference {
        out.push((Mark::Dashed(mark_colour), r.label.clone()));
    }
    out
}
