//! `vector`: a vector metric's last value against its index (or against another vector metric,
//! `x_metric`, e.g. frequencies). One line per arm, the mean over seeds element by element, with
//! a band from the minimum to the maximum over seeds; faint lines are single seeds.

use super::csv::RowKind;
use super::over_training::{Drawn, arms_sentence, draw_lines, summarise};
use super::plot::DrawResult;
use super::{Ctx, Figure, Missing, Series, reference_means};
use crate::ReportError;
use crate::study::AxisTitle;
use sgdlab_studies::value::{Point, RunData};
use std::path::Path;

/// One seed: (x, value) per element.
type Trace = Vec<(f64, f64)>;

fn last<'a>(run: &'a RunData, metric: &str) -> Result<&'a Point, String> {
    run.series.get(metric).and_then(|p| p.last()).ok_or_else(|| format!("no {metric} measured"))
}

/// One run's last vector with its x coordinates.
fn trace(run: &RunData, metric: &str, x_metric: &str) -> Result<(u64, f64, Trace), String> {
    let p = last(run, metric)?;
    let v = p.value.elements();
    let xs: Vec<f64> = if x_metric.is_empty() {
        (0..v.len()).map(|i| i as f64).collect()
    } else {
        let x = last(run, x_metric)?.value.elements().to_vec();
        if x.len() != v.len() {
            return Err(format!("{x_metric} has {} elements but {metric} {}", x.len(), v.len()));
        }
        x
    };
    Ok((p.step, p.epoch, xs.into_iter().zip(v.iter().copied()).collect()))
}

pub(super) fn build(mut ctx: Ctx<'_>, path: &Path) -> Result<Figure, ReportError> {
    let (metric, x_metric) = (ctx.spec.metric.clone(), ctx.spec.x_metric.clone());
    let series = ctx.series(&ctx.arm_axes());
    let mut missing = Missing::default();
    let mut lines = Vec::new();
    for s in &series {
        let mut traces = Vec::new();
        for &r in &s.runs {
            match trace(ctx.run(r), &metric, &x_metric) {
                Err(e) => missing.add(e, &ctx.study.runs[r].summary.id),
                Ok((step, epoch, t)) => {
                    for (i, &(x, v)) in t.iter().enumerate() {
                        let mut row = ctx.run_row(s, r);
                        (row.step, row.epoch, row.index, row.value) = (Some(step), Some(epoch), Some(i), Some(v));
                        row.x = crate::format::csv_number(x);
                        ctx.csv.row(&row);
                    }
                    traces.push(t);
                }
            }
        }
        let agg = aggregate(&mut ctx, s, &traces);
        let refs = reference_means(&mut ctx, s, &s.runs.clone(), "", &mut missing);
        lines.push(Drawn { traces, agg, refs });
    }
    if lines.iter().all(|l| l.traces.is_empty()) {
        let reason = missing.main_reason().unwrap_or("no run recorded the metric").to_string();
        return ctx.no_data(&reason, path);
    }
    ctx.notes.extend(missing.notes(&format!("a final {metric}")));
    let x_words = if x_metric.is_empty() { ctx.study.labels.index(&metric) } else { ctx.study.labels.words(&x_metric) };
    let caption = format!(
        "One line per arm: the mean over its seeds of the last measured {} against {}, element by element, with a \
         band from the minimum to the maximum over seeds; faint lines are single seeds.{}",
        ctx.study.labels.metric(&metric).text(false),
        x_words,
        arms_sentence(&series)
    );
    let svg = draw(&mut ctx, &series, lines);
    ctx.finish(caption, svg, path)
}

/// Mean x, mean, min and max over seeds per element, and the mean rows of the CSV.
fn aggregate(ctx: &mut Ctx<'_>, s: &Series, traces: &[Trace]) -> Vec<(f64, f64, f64, f64)> {
    let len = traces.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let xs: Vec<f64> = traces.iter().filter_map(|t| t.get(i).map(|p| p.0)).collect();
        let vs: Vec<f64> = traces.iter().filter_map(|t| t.get(i).map(|p| p.1)).collect();
        let (x, _, _, _) = summarise(&xs);
        let (mean, min, max, n) = summarise(&vs);
        let mut row = ctx.aggregate_row(s, &s.runs, RowKind::Mean);
        (row.index, row.n) = (Some(i), Some(n));
        row.x = crate::format::csv_number(x);
        if n > 0 {
            (row.value, row.low, row.high) = (Some(mean), Some(min), Some(max));
        }
        ctx.csv.row(&row);
        out.push((x, mean, min, max));
    }
    out
}

fn draw(ctx: &mut Ctx<'_>, series: &[Series], lines: Vec<Drawn>) -> DrawResult<String> {
    let labels = &ctx.study.labels;
    let x_title = match (ctx.spec.x_label.is_empty(), ctx.spec.x_metric.is_empty()) {
        (false, _) => AxisTitle::plain(&ctx.spec.x_label),
        (true, true) => AxisTitle::plain(labels.index(&ctx.spec.metric)),
        (true, false) => labels.metric(&ctx.spec.x_metric),
    };
    let y_title =
        if ctx.spec.y_label.is_empty() { labels.metric(&ctx.spec.metric) } else { AxisTitle::plain(&ctx.spec.y_label) };
    draw_lines(ctx, series, &lines, &x_title, &y_title, true)
}
