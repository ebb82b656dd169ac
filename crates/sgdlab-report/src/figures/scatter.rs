//! `scatter`: two per-run values against each other, one point per run (or per element when
//! the values are vectors, e.g. P_SGD against P_B per function), coloured by arm.

use super::over_training::arms_sentence;
use super::plot::{self, Axis, DrawResult, GREY, Mark, de};
use super::{Ctx, Figure, Missing, Series, reference_means};
use crate::ReportError;
use crate::study::AxisTitle;
use plotters::prelude::*;
use sgdlab_studies::value::{RunData, Val, ValueSpec};
use std::path::Path;

/// Points drawn smaller when there are more than this many, larger when at most `FEW_POINTS`.
const MANY_POINTS: usize = 400;
const FEW_POINTS: usize = 60;

/// (element index for vector values, x, y) pairs of one run.
fn pairs(x: &ValueSpec, y: &ValueSpec, run: &RunData) -> Result<Vec<(Option<usize>, f64, f64)>, String> {
    let (xv, yv) = (x.eval(run)?, y.eval(run)?);
    Ok(match (&xv, &yv) {
        (Val::Scalar(a), Val::Scalar(b)) => vec![(None, *a, *b)],
        (Val::Vector(a), Val::Scalar(b)) => a.iter().enumerate().map(|(i, &v)| (Some(i), v, *b)).collect(),
        (Val::Scalar(a), Val::Vector(b)) => b.iter().enumerate().map(|(i, &v)| (Some(i), *a, v)).collect(),
        (Val::Vector(a), Val::Vector(b)) => {
            if a.len() != b.len() {
                return Err(format!("x has {} elements and y {}", a.len(), b.len()));
            }
            a.iter().zip(b).enumerate().map(|(i, (&u, &v))| (Some(i), u, v)).collect()
        }
    })
}

pub(super) fn build(mut ctx: Ctx<'_>, path: &Path) -> Result<Figure, ReportError> {
    let (Some(x), Some(y)) = (ctx.spec.x_value.clone(), ctx.spec.y.clone()) else {
        return ctx.no_data("the figure names no x_value or no y", path);
    };
    let series = ctx.series(&ctx.arm_axes());
    let mut missing = Missing::default();
    let mut points: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut refs = Vec::new();
    for s in &series {
        let mut mine = Vec::new();
        for &r in &s.runs {
            match pairs(&x, &y, ctx.run(r)) {
                Err(e) => missing.add(e, &ctx.study.runs[r].summary.id),
                Ok(p) => {
                    for (i, a, b) in p {
                        let mut row = ctx.run_row(s, r);
                        (row.index, row.value) = (i, Some(b));
                        row.x = crate::format::csv_number(a);
                        ctx.csv.row(&row);
                        mine.push((a, b));
                    }
                }
            }
        }
        refs.push(reference_means(&mut ctx, s, &s.runs.clone(), "", &mut missing));
        points.push(mine);
    }
    if points.iter().all(|p| p.iter().all(|q| !(q.0.is_finite() && q.1.is_finite()))) {
        let reason = missing.main_reason().unwrap_or("no run has finite values").to_string();
        return ctx.no_data(&reason, path);
    }
    ctx.notes.extend(missing.notes("a value"));
    let labels = &ctx.study.labels;
    let x_title = if ctx.spec.x_label.is_empty() { labels.value(&x) } else { AxisTitle::plain(&ctx.spec.x_label) };
    let y_title = if ctx.spec.y_label.is_empty() { labels.value(&y) } else { AxisTitle::plain(&ctx.spec.y_label) };
    let n: usize = points.iter().map(Vec::len).sum();
    let caption = format!(
        "One point per run, or per element where the values are vectors ({n} points), coloured by arm.{}",
        arms_sentence(&series)
    );
    let svg = draw(&mut ctx, &series, &points, &refs, (&x_title, &y_title));
    ctx.finish(caption, svg, path)
}

fn draw(
    ctx: &mut Ctx<'_>,
    series: &[Series],
    points: &[Vec<(f64, f64)>],
    refs: &[Vec<f64>],
    titles: (&AxisTitle, &AxisTitle),
) -> DrawResult<String> {
    let xs: Vec<f64> = points.iter().flatten().map(|p| p.0).collect();
    let mut ys: Vec<f64> = points.iter().flatten().map(|p| p.1).collect();
    ys.extend(refs.iter().flatten().copied());
    let log_x = plot::log_possible(ctx.spec.log_x, &xs, "x", &mut ctx.notes);
    let log_y = plot::log_possible(ctx.spec.log_y, &ys, "y", &mut ctx.notes);
    let (xa, ya) = (Axis::covering(&xs, log_x), Axis::covering(&ys, log_y));
    let radius = match xs.len() {
        n if n > MANY_POINTS => 2,
        n if n > FEW_POINTS => 3,
        _ => 4,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, plot::FIGURE_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let (area, legend_area) = plot::split_legend(&root);
        let mut chart = plot::chart(&area, &ctx.title, &xa, &ya, &titles.0.text(log_x), &titles.1.text(log_y))?;
        let ok = |x: f64, y: f64| xa.accepts(x) && ya.accepts(y);
        for (s, p) in series.iter().zip(points) {
            let dots = p.iter().filter(|q| ok(q.0, q.1)).map(|&q| Circle::new(q, radius, s.colour.mix(0.65).filled()));
            chart.draw_series(dots).map_err(de)?;
        }
        let refs: Vec<&[f64]> = refs.iter().map(Vec::as_slice).collect();
        let colours: Vec<RGBColor> = series.iter().map(|s| s.colour).collect();
        plot::reference_lines(&mut chart, &xa, &ya, &refs, &colours, &ctx.spec.reference)?;
        let mut legend = super::over_training::series_legend(series, Mark::Dot, true);
        legend.extend(ctx.spec.reference.iter().map(|r| (Mark::Dashed(GREY), r.label.clone())));
        plot::legend(&legend_area, &legend)?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}
