//! Drawing helpers shared by every kind of figure: axes with explicit ticks (linear, or
//! logarithmic at powers of ten), the chart frame, the legend column, error bars, reference
//! lines and the "no data" frame.

use crate::format::fmt_num;
use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ops::Range;

/// Size of a figure in pixels.
pub(crate) const FIGURE_SIZE: (u32, u32) = (860, 480);
/// Size of a "no data" frame.
const NO_DATA_SIZE: (u32, u32) = (860, 220);
/// Width of the legend column on the right.
pub(crate) const LEGEND_WIDTH: u32 = 250;
/// Opacity of bands (min to max over seeds).
pub(crate) const BAND_OPACITY: f64 = 0.18;
/// Opacity of single seeds (points and lines).
pub(crate) const SEED_OPACITY: f64 = 0.35;
/// Grey for marks that stand for no arm in particular.
pub(crate) const GREY: RGBColor = RGBColor(0x55, 0x55, 0x55);
/// Grey as a faint line looks (for legends).
pub(crate) const LIGHT_GREY: RGBColor = RGBColor(0xb0, 0xb0, 0xb0);

/// Font sizes as plotters takes them (its SVG backend writes `size / 1.24` pixels).
const TITLE_FONT: u32 = 21;
const TICK_FONT: u32 = 15;
const AXIS_TITLE_FONT: u32 = 17;
const LEGEND_FONT: u32 = 15;
/// Legend labels longer than this many characters are cut with an ellipsis.
const LEGEND_CHARS: usize = 30;

pub(crate) type DrawResult<T> = Result<T, String>;
pub(crate) type Area<'b> = DrawingArea<SVGBackend<'b>, Shift>;
pub(crate) type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Axis, Axis>>;

/// Turns a plotting error into its message.
pub(crate) fn de<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A plotting axis: linear or logarithmic, with explicit ticks and optional tick labels.
#[derive(Clone, Debug)]
pub(crate) struct Axis {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
    pub ticks: Vec<f64>,
    /// Labels of particular tick values (axis values as the plan wrote them, category names).
    pub labels: Vec<(f64, String)>,
}

impl Axis {
    /// An axis covering `values` (the finite ones, and the positive ones when `log`), padded by
    /// 5% on each side.
    pub fn covering(values: &[f64], log: bool) -> Axis {
        let usable = values.iter().copied().filter(|v| v.is_finite() && (!log || *v > 0.0));
        let (mut lo, mut hi) = usable.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        if !lo.is_finite() {
            (lo, hi) = if log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        if log {
            let (l, h) = if lo == hi { (lo.log10() - 0.25, hi.log10() + 0.25) } else { (lo.log10(), hi.log10()) };
            let pad = 0.05 * (h - l);
            let (lo, hi) = (10f64.powf(l - pad), 10f64.powf(h + pad));
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
    pub fn categorical(names: Vec<String>) -> Axis {
        let n = names.len().max(1);
        let labels: Vec<(f64, String)> = names.into_iter().enumerate().map(|(i, s)| (i as f64, s)).collect();
        Axis { lo: -0.5, hi: n as f64 - 0.5, log: false, ticks: labels.iter().map(|l| l.0).collect(), labels }
    }

    /// Ticks at exactly these values, labelled as given (a sweep axis with few values).
    pub fn with_ticks_at(mut self, ticks: Vec<(f64, String)>) -> Axis {
        self.ticks = ticks.iter().map(|t| t.0).collect();
        self.labels = ticks;
        self
    }

    /// Where `v` falls between the ends, 0 to 1.
    fn fraction(&self, v: f64) -> f64 {
        if self.log {
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    /// The value `delta` (a fraction of the axis length) beyond `v`.
    pub fn shift(&self, v: f64, delta: f64) -> f64 {
        if self.log {
            10f64.powf(v.log10() + delta * (self.hi.log10() - self.lo.log10()))
        } else {
            v + delta * (self.hi - self.lo)
        }
    }

    /// Whether `v` can be drawn on this axis.
    pub fn accepts(&self, v: f64) -> bool {
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
pub(crate) fn linear_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
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
    let decimals = (-step.log10().floor()).max(0.0) as i32 + 1;
    (first..=last)
        .map(|k| {
            let t = k as f64 * step;
            // Snap to the decimal the step implies: 0.3, not 0.30000000000000004.
            let scale = 10f64.powi(decimals);
            if decimals < 15 { (t * scale).round() / scale } else { t }
        })
        .collect()
}

/// Ticks of a logarithmic axis: the powers of ten inside `[lo, hi]` when there are at least
/// three (every other one, or sparser, when there are many); otherwise 1, 2 and 5 times powers of
/// ten, or every integer multiple of a power of ten when even those are fewer than three; round
/// linear ticks when nothing else gives two.
pub(crate) fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let inside = |t: &f64| *t >= lo * (1.0 - 1e-12) && *t <= hi * (1.0 + 1e-12);
    // k times 10^e, as the nearest double to the decimal (7 / 10, not 7 * 0.1).
    let tick = |k: f64, e: i32| if e < 0 { k / 10f64.powi(-e) } else { k * 10f64.powi(e) };
    let decades: Vec<f64> = (a..=b).map(|e| tick(1.0, e)).filter(inside).collect();
    if decades.len() >= 3 {
        let every = decades.len().div_ceil(8);
        return decades.into_iter().step_by(every).collect();
    }
    let multiples = |m: &'static [f64]| -> Vec<f64> {
        (a..=b).flat_map(|e| m.iter().map(move |&k| tick(k, e))).filter(inside).collect()
    };
    for m in [&[1.0, 2.0, 5.0][..], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]] {
        let t = multiples(m);
        if t.len() >= 3 {
            return t;
        }
    }
    linear_ticks(lo, hi, 4).into_iter().filter(|&t| t > 0.0).collect()
}

/// Whether a log axis was asked for and can be drawn; notes values that cannot be shown.
pub(crate) fn log_possible(asked: bool, values: &[f64], axis_name: &str, notes: &mut Vec<String>) -> bool {
    if !asked {
        return false;
    }
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let bad = finite.iter().filter(|&&v| v <= 0.0).count();
    if bad == finite.len() && bad > 0 {
        notes.push(format!(
            "a logarithmic {axis_name} axis was asked for, but no value is positive: the axis is linear"
        ));
        return false;
    }
    if bad > 0 {
        notes.push(format!(
            "the {axis_name} axis is logarithmic: {bad} values <= 0 are not drawn (they are in the CSV)"
        ));
    }
    true
}

/// The white canvas of a figure with the plot and legend areas.
pub(crate) fn split_legend<'b>(root: &Area<'b>) -> (Area<'b>, Area<'b>) {
    root.split_horizontally(FIGURE_SIZE.0 - LEGEND_WIDTH)
}

/// The title, axes, ticks and light grid of a chart.
pub(crate) fn chart<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    x: &Axis,
    y: &Axis,
    x_title: &str,
    y_title: &str,
) -> DrawResult<Chart<'a, 'b>> {
    let mut builder = ChartBuilder::on(area);
    if !title.is_empty() {
        builder.caption(title, ("sans-serif", TITLE_FONT));
    }
    let mut chart = builder
        .margin(12)
        .margin_right(20)
        .x_label_area_size(52)
        .y_label_area_size(82)
        .build_cartesian_2d(x.clone(), y.clone())
        .map_err(de)?;
    chart
        .configure_mesh()
        .x_desc(x_title)
        .y_desc(y_title)
        .bold_line_style(BLACK.mix(0.08))
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", TICK_FONT))
        .axis_desc_style(("sans-serif", AXIS_TITLE_FONT))
        .draw()
        .map_err(de)?;
    Ok(chart)
}

/// A mark of the legend.
pub(crate) enum Mark {
    /// A heading without a mark.
    Heading,
    /// Text under the entry above, indented like a label.
    Note,
    Line(RGBColor),
    Dashed(RGBColor),
    Band(RGBColor),
    /// A faint point: one seed or run.
    Point(RGBColor),
    /// A solid point.
    Dot(RGBColor),
    /// A mean with an error bar.
    ErrorBar(RGBColor),
}

/// The legend, in its own column (so that it never hides data).
pub(crate) fn legend(area: &Area<'_>, entries: &[(Mark, String)]) -> DrawResult<()> {
    let font = ("sans-serif", LEGEND_FONT).into_font();
    let mut y = 46;
    for (mark, label) in entries {
        let mut x_text = 38;
        match mark {
            Mark::Heading => x_text = 8,
            Mark::Note => {}
            Mark::Line(c) => area.draw(&PathElement::new(vec![(8, y), (32, y)], c.stroke_width(2))).map_err(de)?,
            Mark::Dashed(c) => area
                .draw(&plotters::element::DashedPathElement::new(vec![(8, y), (32, y)], 5, 3, c.stroke_width(2)))
                .map_err(de)?,
            Mark::Band(c) => {
                area.draw(&Rectangle::new([(8, y - 6), (32, y + 6)], c.mix(BAND_OPACITY * 1.5).filled())).map_err(de)?
            }
            Mark::Point(c) => area.draw(&Circle::new((20, y), 3, c.mix(SEED_OPACITY + 0.1).filled())).map_err(de)?,
            Mark::Dot(c) => area.draw(&Circle::new((20, y), 4, c.filled())).map_err(de)?,
            Mark::ErrorBar(c) => {
                area.draw(&PathElement::new(vec![(20, y - 8), (20, y + 8)], c.stroke_width(2))).map_err(de)?;
                area.draw(&Circle::new((20, y), 4, c.filled())).map_err(de)?;
            }
        }
        let label = if label.chars().count() > LEGEND_CHARS {
            format!("{}…", label.chars().take(LEGEND_CHARS - 1).collect::<String>())
        } else {
            label.clone()
        };
        area.draw(&Text::new(label, (x_text, y - 8), font.clone())).map_err(de)?;
        y += 23;
    }
    Ok(())
}

/// A mean with its interval: a vertical bar with caps and a dot.
pub(crate) fn error_bar(chart: &mut Chart<'_, '_>, x: f64, mean: f64, lo: f64, hi: f64, c: RGBColor) -> DrawResult<()> {
    let style = c.stroke_width(2);
    if lo.is_finite() && hi.is_finite() {
        chart.draw_series(std::iter::once(PathElement::new(vec![(x, lo), (x, hi)], style))).map_err(de)?;
        for end in [lo, hi] {
            let cap = EmptyElement::at((x, end)) + PathElement::new(vec![(-6, 0), (6, 0)], style);
            chart.draw_series(std::iter::once(cap)).map_err(de)?;
        }
    }
    chart.draw_series(std::iter::once(Circle::new((x, mean), 5, c.filled()))).map_err(de)?;
    Ok(())
}

/// The reference lines of a figure: per reference, one dashed line per series in its colour, or
/// one grey line when every series has the same value.
pub(crate) fn reference_lines(
    chart: &mut Chart<'_, '_>,
    xa: &Axis,
    ya: &Axis,
    values: &[&[f64]],
    colours: &[RGBColor],
    specs: &[sgdlab_studies::spec::ReferenceSpec],
) -> DrawResult<()> {
    for (j, spec) in specs.iter().enumerate() {
        let per_series: Vec<f64> = values.iter().map(|v| v.get(j).copied().unwrap_or(f64::NAN)).collect();
        let first = per_series.first().copied().unwrap_or(f64::NAN);
        let same = per_series.iter().all(|&v| (v - first).abs() <= 1e-12 * first.abs().max(1e-300));
        if same && per_series.len() > 1 {
            if ya.accepts(first) {
                reference_line(chart, xa, first, &spec.label, GREY)?;
            }
            continue;
        }
        for (&v, &c) in per_series.iter().zip(colours) {
            if ya.accepts(v) {
                reference_line(chart, xa, v, &spec.label, c)?;
            }
        }
    }
    Ok(())
}

/// A horizontal dashed reference line across the plot, labelled at its right end.
fn reference_line(chart: &mut Chart<'_, '_>, x: &Axis, y: f64, label: &str, c: RGBColor) -> DrawResult<()> {
    let (x0, x1) = (x.lo, x.hi);
    chart.draw_series(DashedLineSeries::new(vec![(x0, y), (x1, y)], 7, 4, c.stroke_width(2))).map_err(de)?;
    let font = ("sans-serif", LEGEND_FONT).into_font().color(&c).pos(Pos::new(HPos::Right, VPos::Bottom));
    let text = EmptyElement::at((x1, y)) + Text::new(label.to_string(), (-4, -3), font);
    chart.draw_series(std::iter::once(text)).map_err(de)?;
    Ok(())
}

/// A frame saying that there is nothing to plot, and why.
pub(crate) fn no_data(title: &str, message: &str) -> DrawResult<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, NO_DATA_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(de)?;
        let (w, h) = (NO_DATA_SIZE.0 as i32, NO_DATA_SIZE.1 as i32);
        let centred = Pos::new(HPos::Center, VPos::Center);
        let title_style = TextStyle::from(("sans-serif", TITLE_FONT).into_font()).pos(centred);
        root.draw(&Text::new(title.to_string(), (w / 2, 24), title_style)).map_err(de)?;
        root.draw(&Rectangle::new([(60, 50), (w - 20, h - 40)], BLACK.mix(0.3))).map_err(de)?;
        let grey = BLACK.mix(0.6);
        let style = TextStyle::from(("sans-serif", AXIS_TITLE_FONT + 2).into_font()).color(&grey).pos(centred);
        root.draw(&Text::new(format!("no data: {message}"), (w / 2, h / 2), style)).map_err(de)?;
        root.present().map_err(de)?;
    }
    Ok(svg)
}

/// Horizontal offset in pixels of the `i`-th of `n` seed points, so equal values stay visible.
pub(crate) fn seed_offset(i: usize, n: usize) -> i32 {
    const SPACING: f64 = 5.0;
    const MAX_SPREAD: f64 = 26.0;
    if n < 2 {
        return 0;
    }
    let spacing = SPACING.min(MAX_SPREAD / (n - 1) as f64);
    ((i as f64 - (n as f64 - 1.0) / 2.0) * spacing).round() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_inside() {
        assert_eq!(linear_ticks(-0.05, 1.05, 6), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(linear_ticks(0.1, 0.7, 6), vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]);
    }

    #[test]
    fn log_ticks_are_powers_of_ten() {
        assert_eq!(log_ticks(0.5, 2000.0), vec![1.0, 10.0, 100.0, 1000.0]);
        assert_eq!(log_ticks(1e-9, 10.0).len(), 6, "eleven decades: every other one");
        // Two decades or less: 1, 2, 5 times powers of ten.
        assert_eq!(log_ticks(0.015, 3.0), vec![0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0]);
        assert_eq!(log_ticks(25.0, 600.0), vec![50.0, 100.0, 200.0, 500.0]);
        // Less than half a decade: every multiple.
        assert_eq!(log_ticks(0.65, 3.3), vec![0.7, 0.8, 0.9, 1.0, 2.0, 3.0]);
    }
}
