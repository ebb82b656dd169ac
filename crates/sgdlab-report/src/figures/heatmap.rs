//! `heatmap`: a vector metric over training. One panel per arm: step or epoch on x, the
//! element's index on y, the mean over the arm's seeds as colour (viridis; one colour scale for
//! every panel, shown as a colour bar). Cells span half-way to the neighbouring measurements.

use super::csv::RowKind;
use super::over_training::{arms_sentence, common_steps, summarise};
use super::plot::{self, Axis, DrawResult, de};
use super::{Ctx, Figure, Missing, Series, csv_time, time, time_words};
use crate::ReportError;
use crate::study::AxisTitle;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// Viridis at 0, 1/9, ..., 1.
const VIRIDIS: [(u8, u8, u8); 10] = [
    (0x44, 0x01, 0x54),
    (0x48, 0x28, 0x78),
    (0x3e, 0x49, 0x89),
    (0x31, 0x68, 0x8e),
    (0x26, 0x82, 0x8e),
    (0x1f, 0x9e, 0x89),
    (0x35, 0xb7, 0x79),
    (0x6e, 0xce, 0x58),
    (0xb5, 0xde, 0x2b),
    (0xfd, 0xe7, 0x25),
];
/// Height of one row of panels, and of the title above them.
const PANEL_HEIGHT: u32 = 300;
const TITLE_HEIGHT: u32 = 44;
/// Width of the colour bar column.
const BAR_WIDTH: u32 = 150;

/// The colour of `t` in [0, 1].
fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let p = t * (VIRIDIS.len() - 1) as f64;
    let i = (p.floor() as usize).min(VIRIDIS.len() - 2);
    let f = p - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |x: u8, y: u8| (f64::from(x) + f * (f64::from(y) - f64::from(x))).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// The mean over seeds of one arm: per step (ascending), its epoch and the mean per element.
struct Panel {
    cells: Vec<(u64, f64, Vec<f64>)>,
}

/// One seed: per step, its epoch and the vector.
type Trace = Vec<(u64, f64, Vec<f64>)>;

pub(super) fn build(mut ctx: Ctx<'_>, path: &Path) -> Result<Figure, ReportError> {
    let metric = ctx.spec.metric.clone();
    let series = ctx.series(&ctx.arm_axes());
    let mut missing = Missing::default();
    let mut panels = Vec::new();
    for s in &series {
        let mut traces: Vec<Trace> = Vec::new();
        for &r in &s.runs {
            let id = &ctx.study.runs[r].summary.id;
            match ctx.run(r).series.get(&metric).filter(|p| !p.is_empty()) {
                None => missing.add(format!("no {metric} measured"), id),
                Some(p) => {
                    let t: Trace = p.iter().map(|p| (p.step, p.epoch, p.value.elements().to_vec())).collect();
                    for (step, epoch, v) in &t {
                        for (i, x) in v.iter().enumerate() {
                            let mut row = ctx.run_row(s, r);
                            (row.step, row.epoch, row.index, row.value) =
                                (Some(*step), Some(*epoch), Some(i), Some(*x));
                            row.x = csv_time(*step, *epoch, ctx.spec.x);
                            ctx.csv.row(&row);
                        }
                    }
                    traces.push(t);
                }
            }
        }
        panels.push(panel(&mut ctx, s, &traces));
    }
    if !ctx.spec.reference.is_empty() {
        ctx.notes.push("reference lines are not drawn on heatmaps".into());
    }
    ctx.notes.extend(missing.notes(&format!("{metric} series")));
    if panels.iter().all(|p| p.cells.is_empty()) {
        let reason = missing.main_reason().unwrap_or("no run recorded the metric").to_string();
        return ctx.no_data(&reason, path);
    }
    let caption = format!(
        "One panel per arm: the colour is the mean of {} over the arm's seeds, per {} and {}, at the steps every \
         seed was measured at (one colour scale for all panels; blank cells have no finite value).{}",
        ctx.study.labels.metric(&metric).text(false),
        ctx.study.labels.index(&metric),
        time_words(ctx.spec.x),
        arms_sentence(&series)
    );
    let svg = draw(&mut ctx, &series, &panels);
    ctx.finish(caption, svg, path)
}

/// The mean over seeds per step and element, and its CSV rows.
fn panel(ctx: &mut Ctx<'_>, s: &Series, traces: &[Trace]) -> Panel {
    let steps = common_steps(traces, |p| p.0);
    let mut at: BTreeMap<u64, (Vec<f64>, Vec<Vec<f64>>)> = BTreeMap::new();
    for t in traces {
        for (step, epoch, v) in t.iter().filter(|p| steps.contains(&p.0)) {
            let e = at.entry(*step).or_default();
            e.0.push(*epoch);
            e.1.push(v.clone());
        }
    }
    let mut cells = Vec::new();
    for (step, (epochs, vectors)) in at {
        let epoch = sgdlab_linalg::stats::mean(&epochs);
        let len = vectors.iter().map(Vec::len).max().unwrap_or(0);
        let mut means = Vec::with_capacity(len);
        for i in 0..len {
            let vals: Vec<f64> = vectors.iter().map(|v| v.get(i).copied().unwrap_or(f64::NAN)).collect();
            let (mean, min, max, n) = summarise(&vals);
            let mut row = ctx.aggregate_row(s, &s.runs, RowKind::Mean);
            (row.step, row.epoch, row.index, row.n) = (Some(step), Some(epoch), Some(i), Some(n));
            if n > 0 {
                (row.value, row.low, row.high) = (Some(mean), Some(min), Some(max));
            }
            row.x = csv_time(step, epoch, ctx.spec.x);
            ctx.csv.row(&row);
            means.push(mean);
        }
        cells.push((step, epoch, means));
    }
    Panel { cells }
}

/// Cell edges around sorted times: half-way to the neighbours (geometric half-way on a log axis).
fn edges(ts: &[f64], log: bool) -> Vec<(f64, f64)> {
    let mid = |a: f64, b: f64| if log { (a * b).sqrt() } else { (a + b) / 2.0 };
    let n = ts.len();
    (0..n)
        .map(|i| {
            let left = if i > 0 {
                mid(ts[i - 1], ts[i])
            } else if n > 1 {
                reflect(ts[0], ts[1], log)
            } else {
                spread(ts[0], log).0
            };
            let right = if i + 1 < n {
                mid(ts[i], ts[i + 1])
            } else if n > 1 {
                reflect(ts[n - 1], ts[n - 2], log)
            } else {
                spread(ts[0], log).1
            };
            (left, right)
        })
        .collect()
}

/// The point half a neighbour's distance beyond `t`, away from `other`.
fn reflect(t: f64, other: f64, log: bool) -> f64 {
    if log { t * (t / other).sqrt() } else { t + (t - other) / 2.0 }
}

/// The cell of a single measurement.
fn spread(t: f64, log: bool) -> (f64, f64) {
    if log { (t / 2.0, t * 2.0) } else { (t - 0.5, t + 0.5) }
}

fn draw(ctx: &mut Ctx<'_>, series: &[Series], panels: &[Panel]) -> DrawResult<String> {
    let x = ctx.spec.x;
    let ts: Vec<f64> = panels.iter().flat_map(|p| p.cells.iter().map(|c| time(x, c.0, c.1))).collect();
    let values: Vec<f64> = panels.iter().flat_map(|p| p.cells.iter().flat_map(|c| c.2.iter().copied())).collect();
    let log_x = plot::log_possible(ctx.spec.log_x, &ts, "time", &mut ctx.notes);
    let log_v = plot::log_possible(ctx.spec.log_y, &values, "colour", &mut ctx.notes);
    let len = panels.iter().flat_map(|p| p.cells.iter().map(|c| c.2.len())).max().unwrap_or(1);
    let xa = Axis::covering(&ts, log_x);
    let ya = Axis { lo: -0.5, hi: len as f64 - 0.5, log: false, ticks: index_ticks(len), labels: Vec::new() };
    let va = Axis::covering(&values, log_v);
    let frac = |v: f64| {
        if log_v {
            (v.log10() - va.lo.log10()) / (va.hi.log10() - va.lo.log10())
        } else {
            (v - va.lo) / (va.hi - va.lo)
        }
    };
    let cols = if panels.len() == 1 { 1 } else { 2 };
    let rows = panels.len().div_ceil(cols);
    let size = (plot::FIGURE_SIZE.0, TITLE_HEIGHT + PANEL_HEIGHT * rows as u32 + 10);
    let x_title = AxisTitle::plain(time_words(x)).text(log_x);
    let y_title = AxisTitle::plain(ctx.study.labels.index(&ctx.spec.metric)).text(false);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let root = root.titled(&ctx.title, ("sans-serif", 21)).map_err(de)?;
        let (grid, bar) = root.split_horizontally(size.0 - BAR_WIDTH);
        let cells_areas = grid.split_evenly((rows, cols));
        for ((s, p), area) in series.iter().zip(panels).zip(cells_areas.iter()) {
            let mut chart = plot::chart(area, &s.label, &xa, &ya, &x_title, &y_title)?;
            let times: Vec<f64> = p.cells.iter().map(|c| time(x, c.0, c.1)).collect();
            let keep: Vec<usize> = (0..times.len()).filter(|&i| xa.accepts(times[i])).collect();
            let kept: Vec<f64> = keep.iter().map(|&i| times[i]).collect();
            for (&i, (l, r)) in keep.iter().zip(edges(&kept, log_x)) {
                let rects = p.cells[i].2.iter().enumerate().filter(|(_, v)| va.accepts(**v)).map(|(j, &v)| {
                    Rectangle::new([(l, j as f64 - 0.5), (r, j as f64 + 0.5)], viridis(frac(v)).filled())
                });
                chart.draw_series(rects).map_err(de)?;
            }
        }
        colour_bar(&bar, &va, &ctx.study.labels.metric(&ctx.spec.metric).text(log_v), &frac)?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}

/// Integer ticks, about six of them.
fn index_ticks(len: usize) -> Vec<f64> {
    let step = len.div_ceil(6).max(1);
    (0..len).step_by(step).map(|i| i as f64).collect()
}

/// The colour scale with its ticks and title.
fn colour_bar(area: &plot::Area<'_>, va: &Axis, title: &str, frac: &dyn Fn(f64) -> f64) -> DrawResult<()> {
    let bar_x = Axis { lo: 0.0, hi: 1.0, log: false, ticks: Vec::new(), labels: Vec::new() };
    let mut chart = ChartBuilder::on(area)
        .margin_top(46)
        .margin_bottom(62)
        .margin_right(60)
        .y_label_area_size(70)
        .build_cartesian_2d(bar_x, va.clone())
        .map_err(de)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(0)
        .y_desc(title)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .draw()
        .map_err(de)?;
    const STEPS: usize = 120;
    let at = |k: usize| {
        let t = k as f64 / STEPS as f64;
        if va.log {
            10f64.powf(va.lo.log10() + t * (va.hi.log10() - va.lo.log10()))
        } else {
            va.lo + t * (va.hi - va.lo)
        }
    };
    let rects = (0..STEPS).map(|k| Rectangle::new([(0.0, at(k)), (1.0, at(k + 1))], viridis(frac(at(k))).filled()));
    chart.draw_series(rects).map_err(de)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_span_half_way_to_their_neighbours() {
        assert_eq!(edges(&[0.0, 10.0, 30.0], false), vec![(-5.0, 5.0), (5.0, 20.0), (20.0, 40.0)]);
        let e = edges(&[1.0, 100.0], true);
        assert!((e[0].1 - 10.0).abs() < 1e-12 && (e[0].0 - 0.1).abs() < 1e-12 && (e[1].1 - 1000.0).abs() < 1e-9);
        assert_eq!(edges(&[3.0], false), vec![(2.5, 3.5)]);
    }

    #[test]
    fn viridis_ends() {
        assert_eq!(viridis(0.0), RGBColor(0x44, 0x01, 0x54));
        assert_eq!(viridis(1.0), RGBColor(0xfd, 0xe7, 0x25));
    }
}
