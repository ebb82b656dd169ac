//! Per-run values: what a claim (or a figure) reads off one run's records.
//!
//! A value is a small expression over the run's metric series (`metrics.jsonl`, one series per
//! `probe/name`, each point a scalar or a vector) and its axis values, written as a TOML table
//! with one key naming the operation:
//!
//! | form | gives |
//! |---|---|
//! | `{ last = "probe/name" }` | the last measured value |
//! | `{ at = { metric = "...", step = 500 } }` (or `epoch = 2.0`, or `when = VALUE`) | the first measurement at or after that step / epoch / the step a value gives |
//! | `{ min = { metric = "...", from_step = 0, to_step = 1000 } }`, `max`, `mean` | over the measurements in the window (`from_*`/`to_*` in steps or epochs, inclusive, all optional), element-wise for vectors |
//! | `{ series = { metric = "...", from_step = 1 } }` | the measurements of a scalar metric in the window, as a vector (one element per measurement, in step order) |
//! | `{ first_crossing = { metric = "...", below = 0.1, by = "step" } }` (or `above`) | the first step (or epoch) whose value is below (above) the threshold (`relative = true`: the threshold times the metric's first measured value); per element for a vector; `if_never = "missing"` (default) or `"end"` (the last measured step) |
//! | `{ slope = { metric = "...", against = "step", x_scale = "log", y_scale = "log" } }`, `r2` | least-squares slope (R^2) of the series against step or epoch; scales `linear`, `log` (base 10), `sqrt` (x only) |
//! | `{ spearman = { x = VALUE, y = VALUE } }`, `kendall` | rank correlation of two vectors (without `y`: of `x` with its index) |
//! | `{ ratio = [A, B] }`, `difference = [A, B]`, `product = [...]`, `sum = [...]` | arithmetic, element-wise for vectors (a scalar broadcasts) |
//! | `{ axis = "lr" }`, `{ constant = 2.0 }` | the run's value of an axis; a number |
//! | `{ element = { of = VALUE, index = -1 } }` | one element of a vector (negative: from the end) |
//! | `{ reduce = { of = VALUE, op = "max" } }` | `min`, `max`, `mean`, `median`, `sum` over a vector's elements |
//! | `{ fraction = { of = VALUE, greater = 0.5 } }` | the fraction of a vector's elements satisfying a predicate (`greater`, `less`, `at_least`, `at_most`, `within`; NaN never does) |
//! | `{ abs = VALUE }`, `{ log10 = VALUE }` | element-wise |
//!
//! Values are computed from the records on disk alone, so `sgdlab report DIR` recomputes every
//! claim without running anything.

use serde::{Deserialize, Serialize};
use sgdlab_linalg::stats;
use std::collections::BTreeMap;

/// A scalar or a vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Val {
    Scalar(f64),
    Vector(Vec<f64>),
}

impl Val {
    /// The scalar, or an error for a vector.
    pub fn scalar(&self) -> Result<f64, String> {
        match self {
            Val::Scalar(v) => Ok(*v),
            Val::Vector(v) => Err(format!("expected one number, got a vector of {} (use element or reduce)", v.len())),
        }
    }

    /// The elements (one for a scalar).
    pub fn elements(&self) -> &[f64] {
        match self {
            Val::Scalar(v) => std::slice::from_ref(v),
            Val::Vector(v) => v,
        }
    }

    fn map(&self, f: impl Fn(f64) -> f64) -> Val {
        match self {
            Val::Scalar(v) => Val::Scalar(f(*v)),
            Val::Vector(v) => Val::Vector(v.iter().map(|&x| f(x)).collect()),
        }
    }
}

/// One measurement of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub step: u64,
    pub epoch: f64,
    pub value: Val,
}

/// A run as values see it: its seed, axis values and metric series (points in step order).
#[derive(Debug, Clone, Default)]
pub struct RunData {
    pub seed: u64,
    pub axes: BTreeMap<String, serde_json::Value>,
    pub series: BTreeMap<String, Vec<Point>>,
}

impl RunData {
    /// Builds the series from `metrics.jsonl` rows. Rows of one `probe/name` and step with an
    /// `index` form a vector (missing or null elements are NaN); the last row of a step wins.
    pub fn from_rows(
        seed: u64,
        axes: BTreeMap<String, serde_json::Value>,
        rows: &[sgdlab_train::MetricRecord],
    ) -> Self {
        // (metric, step) -> (epoch, scalar, elements)
        type Acc = (f64, Option<f64>, BTreeMap<u32, f64>);
        let mut acc: BTreeMap<(String, u64), Acc> = BTreeMap::new();
        for r in rows {
            let e = acc.entry((format!("{}/{}", r.probe, r.name), r.step)).or_insert((r.epoch, None, BTreeMap::new()));
            e.0 = r.epoch;
            let v = r.value.unwrap_or(f64::NAN);
            match r.index {
                None => e.1 = Some(v),
                Some(i) => {
                    e.2.insert(i, v);
                }
            }
        }
        let mut series: BTreeMap<String, Vec<Point>> = BTreeMap::new();
        for ((metric, step), (epoch, scalar, elems)) in acc {
            let value = if elems.is_empty() {
                Val::Scalar(scalar.unwrap_or(f64::NAN))
            } else {
                let n = elems.keys().next_back().map_or(0, |&k| k as usize + 1);
                let mut v = vec![f64::NAN; n];
                for (i, x) in elems {
                    v[i as usize] = x;
                }
                Val::Vector(v)
            };
            series.entry(metric).or_default().push(Point { step, epoch, value });
        }
        RunData { seed, axes, series }
    }

    fn series(&self, metric: &str) -> Result<&[Point], String> {
        match self.series.get(metric) {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(format!("no {metric} measured")),
        }
    }

    /// The run's numeric value of an axis.
    pub fn axis(&self, name: &str) -> Result<f64, String> {
        let v = self.axes.get(name).ok_or_else(|| format!("the run has no axis '{name}'"))?;
        v.as_f64().ok_or_else(|| format!("axis '{name}' has the non-numeric value {v}"))
    }
}

/// Step or epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum By {
    #[default]
    Step,
    Epoch,
}

/// A window of a series, inclusive at both ends; absent bounds are open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesSpec {
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_epoch: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_epoch: Option<f64>,
    /// The window starts at the step another value gives (e.g. a `first_crossing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_when: Option<Box<ValueSpec>>,
    /// The window ends at the step another value gives (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_when: Option<Box<ValueSpec>>,
}

impl SeriesSpec {
    fn points<'a>(&self, run: &'a RunData) -> Result<Vec<&'a Point>, String> {
        let bound = |w: &Option<Box<ValueSpec>>, what: &str| -> Result<Option<f64>, String> {
            match w {
                None => Ok(None),
                Some(v) => {
                    let s = v.eval(run)?.scalar()?;
                    if s.is_nan() {
                        return Err(format!("{what}: the step is missing"));
                    }
                    Ok(Some(s))
                }
            }
        };
        let (from, to) = (bound(&self.from_when, "from_when")?, bound(&self.to_when, "to_when")?);
        let pts: Vec<&Point> = run
            .series(&self.metric)?
            .iter()
            .filter(|p| self.from_step.is_none_or(|s| p.step >= s) && self.to_step.is_none_or(|s| p.step <= s))
            .filter(|p| self.from_epoch.is_none_or(|e| p.epoch >= e) && self.to_epoch.is_none_or(|e| p.epoch <= e))
            .filter(|p| from.is_none_or(|s| p.step as f64 >= s) && to.is_none_or(|s| p.step as f64 <= s))
            .collect();
        if pts.is_empty() {
            return Err(format!("no {} measured inside the window", self.metric));
        }
        Ok(pts)
    }
}

/// `at`: the first measurement at or after a step, an epoch, or the step another value gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtSpec {
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Box<ValueSpec>>,
}

/// What `first_crossing` gives when the series never crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Never {
    /// NaN: the run (or element) has no value.
    #[default]
    Missing,
    /// The last measured step (epoch): a censored time.
    End,
}

/// `first_crossing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrossingSpec {
    pub metric: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    #[serde(default)]
    pub by: By,
    #[serde(default)]
    pub if_never: Never,
    /// The threshold is a multiple of the metric's first measured value (per element), e.g.
    /// `below = 0.5, relative = true`: the first step at which it has halved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relative: bool,
}

/// Scale of a fit's coordinate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    #[default]
    Linear,
    /// Base-10 logarithm (points <= 0 are left out).
    Log,
    /// Square root (x only).
    Sqrt,
}

impl Scale {
    fn apply(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log => v.log10(),
            Scale::Sqrt => v.sqrt(),
        }
    }
}

/// `slope`, `r2`: a least-squares line through a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitSpec {
    pub metric: String,
    #[serde(default)]
    pub against: By,
    #[serde(default)]
    pub x_scale: Scale,
    #[serde(default)]
    pub y_scale: Scale,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_step: Option<u64>,
}

/// `spearman`, `kendall`: `x` against `y` (or against its index).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrSpec {
    pub x: Box<ValueSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<Box<ValueSpec>>,
}

/// `element`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementSpec {
    pub of: Box<ValueSpec>,
    pub index: i64,
}

/// A reduction over a vector's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReduceOp {
    Min,
    Max,
    Mean,
    Median,
    Sum,
}

/// `reduce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReduceSpec {
    pub of: Box<ValueSpec>,
    pub op: ReduceOp,
}

/// `fraction`: the share of a vector's elements satisfying one predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FractionSpec {
    pub of: Box<ValueSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub less: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub within: Option<[f64; 2]>,
}

/// A per-run value (see the module documentation for every form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ValueSpec {
    Last(String),
    At(AtSpec),
    Min(SeriesSpec),
    Max(SeriesSpec),
    Mean(SeriesSpec),
    /// The measurements of a scalar metric in the window, as a vector (one element per
    /// measurement, in step order).
    Series(SeriesSpec),
    FirstCrossing(CrossingSpec),
    Slope(FitSpec),
    R2(FitSpec),
    Spearman(CorrSpec),
    Kendall(CorrSpec),
    Ratio(Vec<ValueSpec>),
    Difference(Vec<ValueSpec>),
    Product(Vec<ValueSpec>),
    Sum(Vec<ValueSpec>),
    /// Element-wise maximum of a list (e.g. "escaped by either criterion": the greater of two
    /// scores that exceed 1 when their criterion holds).
    Greatest(Vec<ValueSpec>),
    Axis(String),
    Constant(f64),
    Element(ElementSpec),
    Reduce(ReduceSpec),
    Fraction(FractionSpec),
    Abs(Box<ValueSpec>),
    Log10(Box<ValueSpec>),
    /// The falls between consecutive elements of a vector, `v[i] - v[i + 1]` (one fewer element).
    Drops(Box<ValueSpec>),
}

fn elementwise(a: &Val, b: &Val, f: impl Fn(f64, f64) -> f64) -> Result<Val, String> {
    Ok(match (a, b) {
        (Val::Scalar(x), Val::Scalar(y)) => Val::Scalar(f(*x, *y)),
        (Val::Vector(x), Val::Scalar(y)) => Val::Vector(x.iter().map(|&v| f(v, *y)).collect()),
        (Val::Scalar(x), Val::Vector(y)) => Val::Vector(y.iter().map(|&v| f(*x, v)).collect()),
        (Val::Vector(x), Val::Vector(y)) => {
            if x.len() != y.len() {
                return Err(format!("vectors of {} and {} elements", x.len(), y.len()));
            }
            Val::Vector(x.iter().zip(y).map(|(&u, &v)| f(u, v)).collect())
        }
    })
}

/// Element-wise reduction of points' values (min/max/mean over time).
fn over_points(points: &[&Point], f: impl Fn(&[f64]) -> f64) -> Result<Val, String> {
    match &points[0].value {
        Val::Scalar(_) => {
            let v: Vec<f64> = points.iter().map(|p| p.value.elements()[0]).collect();
            Ok(Val::Scalar(f(&v)))
        }
        Val::Vector(first) => {
            let n = first.len();
            if points.iter().any(|p| p.value.elements().len() != n) {
                return Err("the vector changes length during the run".into());
            }
            Ok(Val::Vector(
                (0..n).map(|i| f(&points.iter().map(|p| p.value.elements()[i]).collect::<Vec<_>>())).collect(),
            ))
        }
    }
}

fn finite(v: &[f64]) -> Vec<f64> {
    v.iter().copied().filter(|x| x.is_finite()).collect()
}

fn fmin(v: &[f64]) -> f64 {
    let f = finite(v);
    if f.is_empty() { f64::NAN } else { f.iter().copied().fold(f64::INFINITY, f64::min) }
}
fn fmax(v: &[f64]) -> f64 {
    let f = finite(v);
    if f.is_empty() { f64::NAN } else { f.iter().copied().fold(f64::NEG_INFINITY, f64::max) }
}
fn fmean(v: &[f64]) -> f64 {
    stats::mean(&finite(v))
}

fn time_of(p: &Point, by: By) -> f64 {
    match by {
        By::Step => p.step as f64,
        By::Epoch => p.epoch,
    }
}

impl ValueSpec {
    /// The value for one run; an error says why the run has none.
    pub fn eval(&self, run: &RunData) -> Result<Val, String> {
        match self {
            ValueSpec::Last(m) => Ok(run.series(m)?.last().expect("non-empty").value.clone()),
            ValueSpec::At(a) => {
                let target = match (&a.step, &a.epoch, &a.when) {
                    (Some(s), None, None) => (*s as f64, By::Step),
                    (None, Some(e), None) => (*e, By::Epoch),
                    (None, None, Some(w)) => (w.eval(run)?.scalar()?, By::Step),
                    _ => return Err("at needs exactly one of step, epoch, when".into()),
                };
                if target.0.is_nan() {
                    return Err("at: the step is missing".into());
                }
                run.series(&a.metric)?
                    .iter()
                    .find(|p| time_of(p, target.1) >= target.0)
                    .map(|p| p.value.clone())
                    .ok_or_else(|| {
                        format!(
                            "no {} measured at or after {} {}",
                            a.metric,
                            target.0,
                            match target.1 {
                                By::Step => "steps",
                                By::Epoch => "epochs",
                            }
                        )
                    })
            }
            ValueSpec::Min(s) => over_points(&s.points(run)?, fmin),
            ValueSpec::Max(s) => over_points(&s.points(run)?, fmax),
            ValueSpec::Mean(s) => over_points(&s.points(run)?, fmean),
            ValueSpec::Series(s) => {
                s.points(run)?.iter().map(|p| p.value.scalar()).collect::<Result<Vec<f64>, String>>().map(Val::Vector)
            }
            ValueSpec::FirstCrossing(c) => {
                let pts = run.series(&c.metric)?;
                let first = pts[0].value.elements().to_vec();
                let crossed = |v: f64, i: usize| {
                    let scale = if c.relative { first.get(i).copied().unwrap_or(f64::NAN) } else { 1.0 };
                    match (c.below, c.above) {
                        (Some(t), None) => v < t * scale,
                        (None, Some(t)) => v > t * scale,
                        _ => false,
                    }
                };
                if c.below.is_some() == c.above.is_some() {
                    return Err("first_crossing needs exactly one of below, above".into());
                }
                let end = time_of(pts.last().expect("non-empty"), c.by);
                let never = match c.if_never {
                    Never::Missing => f64::NAN,
                    Never::End => end,
                };
                let n = pts[0].value.elements().len();
                let times: Vec<f64> = (0..n)
                    .map(|i| {
                        pts.iter()
                            .find(|p| p.value.elements().get(i).is_some_and(|&v| crossed(v, i)))
                            .map_or(never, |p| time_of(p, c.by))
                    })
                    .collect();
                Ok(match pts[0].value {
                    Val::Scalar(_) => Val::Scalar(times[0]),
                    Val::Vector(_) => Val::Vector(times),
                })
            }
            ValueSpec::Slope(f) | ValueSpec::R2(f) => {
                let pts: Vec<&Point> = run
                    .series(&f.metric)?
                    .iter()
                    .filter(|p| f.from_step.is_none_or(|s| p.step >= s) && f.to_step.is_none_or(|s| p.step <= s))
                    .collect();
                let (mut x, mut y) = (Vec::new(), Vec::new());
                for p in pts {
                    let (a, b) = (f.x_scale.apply(time_of(p, f.against)), f.y_scale.apply(p.value.scalar()?));
                    if a.is_finite() && b.is_finite() {
                        x.push(a);
                        y.push(b);
                    }
                }
                let fit = stats::linear_fit(&x, &y).map_err(|e| format!("fit of {}: {e}", f.metric))?;
                Ok(Val::Scalar(if matches!(self, ValueSpec::Slope(_)) { fit.slope } else { fit.r_squared }))
            }
            ValueSpec::Spearman(c) | ValueSpec::Kendall(c) => {
                let x = c.x.eval(run)?;
                let xs = x.elements();
                let y: Vec<f64> = match &c.y {
                    Some(y) => y.eval(run)?.elements().to_vec(),
                    None => (0..xs.len()).map(|i| i as f64).collect(),
                };
                if xs.len() != y.len() {
                    return Err(format!("correlation of vectors of {} and {} elements", xs.len(), y.len()));
                }
                let (a, b): (Vec<f64>, Vec<f64>) =
                    xs.iter().zip(&y).filter(|(u, v)| u.is_finite() && v.is_finite()).map(|(u, v)| (*u, *v)).unzip();
                let r = if matches!(self, ValueSpec::Spearman(_)) {
                    stats::spearman(&a, &b)
                } else {
                    stats::kendall_tau_b(&a, &b)
                };
                r.map(Val::Scalar).map_err(|e| e.to_string())
            }
            ValueSpec::Ratio(v) => elementwise(&v[0].eval(run)?, &v[1].eval(run)?, |a, b| a / b),
            ValueSpec::Difference(v) => elementwise(&v[0].eval(run)?, &v[1].eval(run)?, |a, b| a - b),
            ValueSpec::Product(v) | ValueSpec::Sum(v) | ValueSpec::Greatest(v) => {
                let op = |a: f64, b: f64| match self {
                    ValueSpec::Product(_) => a * b,
                    ValueSpec::Sum(_) => a + b,
                    _ => a.max(b),
                };
                let mut acc = v[0].eval(run)?;
                for t in &v[1..] {
                    acc = elementwise(&acc, &t.eval(run)?, op)?;
                }
                Ok(acc)
            }
            ValueSpec::Axis(a) => run.axis(a).map(Val::Scalar),
            ValueSpec::Constant(c) => Ok(Val::Scalar(*c)),
            ValueSpec::Drops(v) => {
                let v = v.eval(run)?;
                let xs = v.elements();
                if xs.len() < 2 {
                    return Err(format!("drops need a vector of at least 2 elements, not {}", xs.len()));
                }
                Ok(Val::Vector(xs.windows(2).map(|w| w[0] - w[1]).collect()))
            }
            ValueSpec::Element(e) => {
                let v = e.of.eval(run)?;
                let xs = v.elements();
                let i = if e.index < 0 { xs.len() as i64 + e.index } else { e.index };
                usize::try_from(i)
                    .ok()
                    .and_then(|i| xs.get(i))
                    .map(|&x| Val::Scalar(x))
                    .ok_or_else(|| format!("element {} of a vector of {}", e.index, xs.len()))
            }
            ValueSpec::Reduce(r) => {
                let v = r.of.eval(run)?;
                let xs = v.elements();
                Ok(Val::Scalar(match r.op {
                    ReduceOp::Min => fmin(xs),
                    ReduceOp::Max => fmax(xs),
                    ReduceOp::Mean => fmean(xs),
                    ReduceOp::Median => {
                        let f = finite(xs);
                        if f.is_empty() { f64::NAN } else { stats::median(&f) }
                    }
                    ReduceOp::Sum => xs.iter().sum(),
                }))
            }
            ValueSpec::Fraction(f) => {
                let pred = f.predicate()?;
                let v = f.of.eval(run)?;
                let xs = v.elements();
                if xs.is_empty() {
                    return Err("fraction of an empty vector".into());
                }
                Ok(Val::Scalar(xs.iter().filter(|&&x| !x.is_nan() && pred.holds(x)).count() as f64 / xs.len() as f64))
            }
            ValueSpec::Abs(v) => Ok(v.eval(run)?.map(f64::abs)),
            ValueSpec::Log10(v) => Ok(v.eval(run)?.map(f64::log10)),
        }
    }

    /// Children of this value.
    fn children(&self) -> Vec<&ValueSpec> {
        match self {
            ValueSpec::At(a) => a.when.iter().map(|b| b.as_ref()).collect(),
            ValueSpec::Spearman(c) | ValueSpec::Kendall(c) => {
                std::iter::once(c.x.as_ref()).chain(c.y.iter().map(|b| b.as_ref())).collect()
            }
            ValueSpec::Ratio(v)
            | ValueSpec::Difference(v)
            | ValueSpec::Product(v)
            | ValueSpec::Sum(v)
            | ValueSpec::Greatest(v) => v.iter().collect(),
            ValueSpec::Element(e) => vec![e.of.as_ref()],
            ValueSpec::Reduce(r) => vec![r.of.as_ref()],
            ValueSpec::Fraction(f) => vec![f.of.as_ref()],
            ValueSpec::Abs(v) | ValueSpec::Log10(v) | ValueSpec::Drops(v) => vec![v.as_ref()],
            ValueSpec::Min(s) | ValueSpec::Max(s) | ValueSpec::Mean(s) | ValueSpec::Series(s) => {
                [&s.from_when, &s.to_when].into_iter().flatten().map(|b| b.as_ref()).collect()
            }
            ValueSpec::Last(_)
            | ValueSpec::FirstCrossing(_)
            | ValueSpec::Slope(_)
            | ValueSpec::R2(_)
            | ValueSpec::Axis(_)
            | ValueSpec::Constant(_) => Vec::new(),
        }
    }

    /// The metric this node reads itself (not its children).
    fn own_metric(&self) -> Option<&str> {
        match self {
            ValueSpec::Last(m) => Some(m),
            ValueSpec::At(a) => Some(&a.metric),
            ValueSpec::Min(s) | ValueSpec::Max(s) | ValueSpec::Mean(s) | ValueSpec::Series(s) => Some(&s.metric),
            ValueSpec::FirstCrossing(c) => Some(&c.metric),
            ValueSpec::Slope(f) | ValueSpec::R2(f) => Some(&f.metric),
            ValueSpec::Spearman(_)
            | ValueSpec::Kendall(_)
            | ValueSpec::Ratio(_)
            | ValueSpec::Difference(_)
            | ValueSpec::Product(_)
            | ValueSpec::Sum(_)
            | ValueSpec::Greatest(_)
            | ValueSpec::Axis(_)
            | ValueSpec::Constant(_)
            | ValueSpec::Element(_)
            | ValueSpec::Reduce(_)
            | ValueSpec::Fraction(_)
            | ValueSpec::Abs(_)
            | ValueSpec::Log10(_)
            | ValueSpec::Drops(_) => None,
        }
    }

    /// Every metric the value reads.
    pub fn metrics(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.own_metric().into_iter().collect();
        for c in self.children() {
            out.extend(c.metrics());
        }
        out
    }

    /// Every axis the value reads.
    pub fn axes(&self) -> Vec<&str> {
        let mut out: Vec<&str> = match self {
            ValueSpec::Axis(a) => vec![a.as_str()],
            _ => Vec::new(),
        };
        for c in self.children() {
            out.extend(c.axes());
        }
        out
    }

    /// Checks the value's shape (argument counts, one-of fields, finite constants) and that the
    /// axes it reads exist.
    pub fn check_axes(&self, axes: &[&str]) -> Result<(), String> {
        match self {
            ValueSpec::Axis(a) if !axes.contains(&a.as_str()) => {
                return Err(format!(
                    "value reads axis '{a}', which the study does not sweep (axes: {})",
                    axes.join(", ")
                ));
            }
            ValueSpec::Ratio(v) | ValueSpec::Difference(v) if v.len() != 2 => {
                return Err("ratio and difference take two values: [A, B]".into());
            }
            ValueSpec::Product(v) | ValueSpec::Sum(v) | ValueSpec::Greatest(v) if v.is_empty() => {
                return Err("product, sum and greatest take at least one value".into());
            }
            ValueSpec::At(a)
                if [a.step.is_some(), a.epoch.is_some(), a.when.is_some()].iter().filter(|b| **b).count() != 1 =>
            {
                return Err(format!("at (of {}) needs exactly one of step, epoch, when", a.metric));
            }
            ValueSpec::FirstCrossing(c) if c.below.is_some() == c.above.is_some() => {
                return Err(format!("first_crossing (of {}) needs exactly one of below, above", c.metric));
            }
            ValueSpec::FirstCrossing(c) if c.below.or(c.above).is_some_and(|t| !t.is_finite()) => {
                return Err(format!("first_crossing (of {}): the threshold is not finite", c.metric));
            }
            ValueSpec::Slope(f) | ValueSpec::R2(f) if f.y_scale == Scale::Sqrt => {
                return Err("y_scale may be linear or log".into());
            }
            ValueSpec::Constant(c) if !c.is_finite() => return Err(format!("constant {c} is not finite")),
            ValueSpec::Fraction(f) => {
                f.predicate()?;
            }
            _ => {}
        }
        for c in self.children() {
            c.check_axes(axes)?;
        }
        Ok(())
    }

    /// Whether the value is a vector (`true`) or a number, given whether each metric is a
    /// vector (`None`: unknown metric, reported elsewhere); an error for a vector where a number
    /// is needed.
    pub fn is_vector(&self, metric_is_vector: &dyn Fn(&str) -> Option<bool>) -> Result<bool, String> {
        let m = |name: &str| metric_is_vector(name).unwrap_or(false);
        let scalar_metric = |name: &str, what: &str| {
            if m(name) { Err(format!("{what} needs a scalar metric, but {name} is a vector")) } else { Ok(false) }
        };
        Ok(match self {
            ValueSpec::Last(x) => m(x),
            ValueSpec::At(a) => {
                if let Some(w) = &a.when
                    && w.is_vector(metric_is_vector)?
                {
                    return Err("at: when must give one step, not a vector".into());
                }
                m(&a.metric)
            }
            ValueSpec::Min(s) | ValueSpec::Max(s) | ValueSpec::Mean(s) => {
                for w in [&s.from_when, &s.to_when].into_iter().flatten() {
                    if w.is_vector(metric_is_vector)? {
                        return Err("from_when and to_when must give one step, not a vector".into());
                    }
                }
                m(&s.metric)
            }
            ValueSpec::Series(s) => {
                for w in [&s.from_when, &s.to_when].into_iter().flatten() {
                    if w.is_vector(metric_is_vector)? {
                        return Err("from_when and to_when must give one step, not a vector".into());
                    }
                }
                scalar_metric(&s.metric, "series")?;
                true
            }
            ValueSpec::FirstCrossing(c) => m(&c.metric),
            ValueSpec::Slope(f) | ValueSpec::R2(f) => scalar_metric(&f.metric, "a fit over steps")?,
            ValueSpec::Spearman(c) | ValueSpec::Kendall(c) => {
                c.x.is_vector(metric_is_vector)?;
                if let Some(y) = &c.y {
                    y.is_vector(metric_is_vector)?;
                }
                false
            }
            ValueSpec::Ratio(v)
            | ValueSpec::Difference(v)
            | ValueSpec::Product(v)
            | ValueSpec::Sum(v)
            | ValueSpec::Greatest(v) => {
                let mut any = false;
                for x in v {
                    any |= x.is_vector(metric_is_vector)?;
                }
                any
            }
            ValueSpec::Axis(_) | ValueSpec::Constant(_) => false,
            ValueSpec::Element(e) => {
                e.of.is_vector(metric_is_vector)?;
                false
            }
            ValueSpec::Reduce(r) => {
                r.of.is_vector(metric_is_vector)?;
                false
            }
            ValueSpec::Fraction(f) => {
                f.of.is_vector(metric_is_vector)?;
                false
            }
            ValueSpec::Abs(v) | ValueSpec::Log10(v) => v.is_vector(metric_is_vector)?,
            ValueSpec::Drops(v) => {
                if !v.is_vector(metric_is_vector)? {
                    return Err("drops need a vector".into());
                }
                true
            }
        })
    }

    /// The value in words, for reports: "last hessian/top_eigenvalue".
    pub fn describe(&self) -> String {
        let d = |v: &ValueSpec| v.describe();
        let window = |s: &SeriesSpec| {
            let mut w = Vec::new();
            if let Some(a) = s.from_step {
                w.push(format!("from step {a}"));
            }
            if let Some(a) = s.to_step {
                w.push(format!("to step {a}"));
            }
            if let Some(a) = s.from_epoch {
                w.push(format!("from epoch {a}"));
            }
            if let Some(a) = s.to_epoch {
                w.push(format!("to epoch {a}"));
            }
            if let Some(v) = &s.from_when {
                w.push(format!("from the step of ({})", v.describe()));
            }
            if let Some(v) = &s.to_when {
                w.push(format!("to the step of ({})", v.describe()));
            }
            if w.is_empty() { String::new() } else { format!(" ({})", w.join(", ")) }
        };
        match self {
            ValueSpec::Last(m) => format!("final {m}"),
            ValueSpec::At(a) => match (&a.step, &a.epoch, &a.when) {
                (Some(s), _, _) => format!("{} at step {s}", a.metric),
                (_, Some(e), _) => format!("{} at epoch {e}", a.metric),
                (_, _, Some(w)) => format!("{} at the step of ({})", a.metric, d(w)),
                (None, None, None) => a.metric.clone(),
            },
            ValueSpec::Min(s) => format!("minimum of {}{}", s.metric, window(s)),
            ValueSpec::Max(s) => format!("maximum of {}{}", s.metric, window(s)),
            ValueSpec::Mean(s) => format!("mean of {}{}", s.metric, window(s)),
            ValueSpec::Series(s) => format!("the measurements of {}{}", s.metric, window(s)),
            ValueSpec::FirstCrossing(c) => format!(
                "first {} at which {} {}",
                match c.by {
                    By::Step => "step",
                    By::Epoch => "epoch",
                },
                c.metric,
                match (c.below, c.above, c.relative) {
                    (Some(t), _, false) => format!("falls below {t}"),
                    (_, Some(t), false) => format!("rises above {t}"),
                    (Some(t), _, true) => format!("falls below {t} x its first value"),
                    (_, Some(t), true) => format!("rises above {t} x its first value"),
                    (None, None, _) => String::new(),
                }
            ),
            ValueSpec::Slope(f) | ValueSpec::R2(f) => format!(
                "{} of a {} fit of {} against {}",
                if matches!(self, ValueSpec::Slope(_)) { "slope" } else { "R^2" },
                match (f.x_scale, f.y_scale) {
                    (Scale::Log, Scale::Log) => "log-log",
                    (Scale::Sqrt, _) => "square-root",
                    (Scale::Log, _) => "semi-log",
                    _ => "linear",
                },
                f.metric,
                match f.against {
                    By::Step => "step",
                    By::Epoch => "epoch",
                }
            ),
            ValueSpec::Spearman(c) | ValueSpec::Kendall(c) => format!(
                "{} of ({}) with {}",
                if matches!(self, ValueSpec::Spearman(_)) { "Spearman correlation" } else { "Kendall's tau" },
                d(&c.x),
                c.y.as_ref().map_or("its index".to_string(), |y| format!("({})", d(y)))
            ),
            ValueSpec::Ratio(v) => format!("({}) / ({})", d(&v[0]), d(&v[1])),
            ValueSpec::Difference(v) => format!("({}) - ({})", d(&v[0]), d(&v[1])),
            ValueSpec::Product(v) => v.iter().map(|x| format!("({})", d(x))).collect::<Vec<_>>().join(" x "),
            ValueSpec::Sum(v) => v.iter().map(|x| format!("({})", d(x))).collect::<Vec<_>>().join(" + "),
            ValueSpec::Greatest(v) => {
                format!("the greater of {}", v.iter().map(|x| format!("({})", d(x))).collect::<Vec<_>>().join(", "))
            }
            ValueSpec::Axis(a) => a.clone(),
            ValueSpec::Constant(c) => format!("{c}"),
            ValueSpec::Element(e) => format!("element {} of ({})", e.index, d(&e.of)),
            ValueSpec::Reduce(r) => format!("{:?} over the elements of ({})", r.op, d(&r.of)).to_lowercase(),
            ValueSpec::Fraction(f) => format!(
                "fraction of the elements of ({}) {}",
                d(&f.of),
                f.predicate().map(|p| p.predicate()).unwrap_or_default()
            ),
            ValueSpec::Abs(v) => format!("|{}|", d(v)),
            ValueSpec::Log10(v) => format!("log10({})", d(v)),
            ValueSpec::Drops(v) => format!("falls between consecutive elements of ({})", d(v)),
        }
    }
}

impl FractionSpec {
    fn predicate(&self) -> Result<crate::spec::DecisionSpec, String> {
        use crate::spec::DecisionSpec as D;
        let all = [
            self.greater.map(D::Greater),
            self.less.map(D::Less),
            self.at_least.map(D::AtLeast),
            self.at_most.map(D::AtMost),
            self.within.map(D::Within),
        ];
        let mut given = all.into_iter().flatten();
        match (given.next(), given.next()) {
            (Some(p), None) if p.thresholds().iter().all(|t| t.is_finite()) => Ok(p),
            (Some(_), None) => Err("fraction: the threshold is not finite".into()),
            _ => Err("fraction needs exactly one of greater, less, at_least, at_most, within".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sgdlab_train::MetricRecord;

    fn row(step: u64, probe: &str, name: &str, index: Option<u32>, value: f64) -> MetricRecord {
        MetricRecord {
            step,
            epoch: step as f64 / 10.0,
            probe: probe.into(),
            name: name.into(),
            index,
            value: value.is_finite().then_some(value),
        }
    }

    fn run() -> RunData {
        let mut rows = Vec::new();
        for s in [0u64, 10, 20, 30, 40] {
            rows.push(row(s, "train", "loss", None, 1.0 / (1.0 + s as f64)));
            // Residual per frequency: element i is learned (below 0.5) at step 10 * (i + 1).
            for i in 0..3u32 {
                rows.push(row(s, "sb", "residual", Some(i), if s >= 10 * (u64::from(i) + 1) { 0.1 } else { 1.0 }));
            }
        }
        rows.push(row(40, "sb", "frequency", Some(0), 5.0));
        rows.push(row(40, "sb", "frequency", Some(1), 10.0));
        rows.push(row(40, "sb", "frequency", Some(2), 50.0));
        rows.push(row(40, "h", "lam", None, 8.0));
        for (st, x) in [(0u64, 4.0), (10, 3.0), (20, 2.0), (30, 1.5), (40, 1.0)] {
            rows.push(row(st, "h", "decay", None, x));
        }
        let axes = [("lr".to_string(), serde_json::json!(0.25))].into();
        RunData::from_rows(3, axes, &rows)
    }

    fn v(t: &str) -> ValueSpec {
        #[derive(Deserialize)]
        struct W {
            v: ValueSpec,
        }
        toml::from_str::<W>(&format!("v = {t}")).unwrap().v
    }

    fn s(t: &str) -> f64 {
        v(t).eval(&run()).unwrap().scalar().unwrap()
    }

    #[test]
    fn series_values_have_known_answers() {
        assert_eq!(s(r#"{ last = "train/loss" }"#), 1.0 / 41.0);
        assert_eq!(s(r#"{ at = { metric = "train/loss", step = 15 } }"#), 1.0 / 21.0);
        assert_eq!(s(r#"{ at = { metric = "train/loss", epoch = 1.0 } }"#), 1.0 / 11.0);
        assert_eq!(s(r#"{ max = { metric = "train/loss", from_step = 10 } }"#), 1.0 / 11.0);
        assert_eq!(s(r#"{ min = { metric = "train/loss", to_step = 20 } }"#), 1.0 / 21.0);
        // A window ending where another series first crosses a threshold: element 1 of the
        // residual falls below 0.5 at step 20, so the window holds steps 0, 10, 20.
        let until_learned = r#"{ first_crossing = { metric = "sb/residual", below = 0.5 } }"#;
        let to_when = format!(
            "{{ min = {{ metric = \"train/loss\", to_when = {{ element = {{ of = {until_learned}, index = 1 }} }} }} }}"
        );
        assert_eq!(s(&to_when), 1.0 / 21.0);
        let from_when = format!(
            "{{ max = {{ metric = \"train/loss\", from_when = {{ element = {{ of = {until_learned}, index = 2 }} }} }} }}"
        );
        assert_eq!(s(&from_when), 1.0 / 31.0);
        let never = r#"{ min = { metric = "train/loss", to_when = { first_crossing = { metric = "train/loss", below = -1.0 } } } }"#;
        assert!(v(never).eval(&run()).unwrap_err().contains("to_when: the step is missing"));
        assert_eq!(
            s(r#"{ mean = { metric = "train/loss", from_step = 10, to_step = 20 } }"#),
            (1.0 / 11.0 + 1.0 / 21.0) / 2.0
        );
        assert_eq!(s(r#"{ first_crossing = { metric = "train/loss", below = 0.06 } }"#), 20.0);
        assert_eq!(s(r#"{ first_crossing = { metric = "train/loss", below = 0.06, by = "epoch" } }"#), 2.0);
        assert!(s(r#"{ first_crossing = { metric = "train/loss", below = 0.0 } }"#).is_nan());
        assert_eq!(s(r#"{ first_crossing = { metric = "train/loss", below = 0.0, if_never = "end" } }"#), 40.0);
        // 1/(1+s) on a log-log scale over s >= 10 is nearly a line of slope -1.
        let slope = s(r#"{ slope = { metric = "train/loss", x_scale = "log", y_scale = "log", from_step = 10 } }"#);
        assert!((slope + 0.93).abs() < 0.05, "{slope}");
        assert!(s(r#"{ r2 = { metric = "train/loss", x_scale = "log", y_scale = "log", from_step = 10 } }"#) > 0.99);
    }

    #[test]
    fn vectors_crossings_and_correlations() {
        let t = v(r#"{ first_crossing = { metric = "sb/residual", below = 0.5 } }"#).eval(&run()).unwrap();
        assert_eq!(t, Val::Vector(vec![10.0, 20.0, 30.0]));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(
            s(
                r#"{ spearman = { x = { first_crossing = { metric = "sb/residual", below = 0.5 } }, y = { last = "sb/frequency" } } }"#
            ),
            1.0
        ));
        assert!(close(s(r#"{ kendall = { x = { first_crossing = { metric = "sb/residual", below = 0.5 } } } }"#), 1.0));
        assert_eq!(s(r#"{ element = { of = { last = "sb/frequency" }, index = -1 } }"#), 50.0);
        assert_eq!(s(r#"{ reduce = { of = { last = "sb/frequency" }, op = "median" } }"#), 10.0);
        assert_eq!(s(r#"{ fraction = { of = { last = "sb/frequency" }, greater = 7.0 } }"#), 2.0 / 3.0);
        assert_eq!(
            s(
                r#"{ fraction = { of = { first_crossing = { metric = "sb/residual", below = 0.05 } }, at_least = 0.0 } }"#
            ),
            0.0
        );
    }

    #[test]
    fn series_as_vectors_and_relative_crossings() {
        let all = v(r#"{ series = { metric = "h/decay", from_step = 10 } }"#).eval(&run()).unwrap();
        assert_eq!(all, Val::Vector(vec![3.0, 2.0, 1.5, 1.0]));
        let window = v(r#"{ series = { metric = "train/loss", from_step = 10, to_step = 20 } }"#).eval(&run()).unwrap();
        assert_eq!(window, Val::Vector(vec![1.0 / 11.0, 1.0 / 21.0]));
        // Halved from its first value 4 (below 2) first at step 30; 0.5 itself is never reached.
        assert_eq!(s(r#"{ first_crossing = { metric = "h/decay", below = 0.5, relative = true } }"#), 30.0);
        assert!(s(r#"{ first_crossing = { metric = "h/decay", below = 0.5 } }"#).is_nan());
        assert!(s(r#"{ first_crossing = { metric = "h/decay", above = 1.1, relative = true } }"#).is_nan());
        let shape = |name: &str| Some(name == "sb/residual");
        assert!(v(r#"{ series = { metric = "h/decay" } }"#).is_vector(&shape).unwrap());
        let e = v(r#"{ series = { metric = "sb/residual" } }"#).is_vector(&shape).unwrap_err();
        assert!(e.contains("series needs a scalar metric"), "{e}");
        assert_eq!(
            v(r#"{ first_crossing = { metric = "h/decay", below = 0.5, relative = true } }"#).describe(),
            "first step at which h/decay falls below 0.5 x its first value"
        );
    }

    #[test]
    fn arithmetic_with_axes() {
        assert_eq!(s(r#"{ product = [{ last = "h/lam" }, { axis = "lr" }, { constant = 0.5 }] }"#), 1.0);
        assert_eq!(s(r#"{ ratio = [{ last = "h/lam" }, { constant = 4.0 }] }"#), 2.0);
        assert_eq!(s(r#"{ difference = [{ last = "h/lam" }, { constant = 10.0 }] }"#), -2.0);
        assert_eq!(s(r#"{ abs = { difference = [{ last = "h/lam" }, { constant = 10.0 }] } }"#), 2.0);
        assert_eq!(s(r#"{ log10 = { constant = 100.0 } }"#), 2.0);
        let e = v(r#"{ last = "h/lamm" }"#).eval(&run()).unwrap_err();
        assert!(e.contains("no h/lamm measured"), "{e}");
        let e = v(r#"{ axis = "width" }"#).eval(&run()).unwrap_err();
        assert!(e.contains("no axis 'width'"), "{e}");
    }

    #[test]
    fn shape_checks_and_metric_lists() {
        let x = v(
            r#"{ ratio = [{ last = "a/b" }, { at = { metric = "c/d", when = { first_crossing = { metric = "e/f", above = 1.0 } } } }] }"#,
        );
        assert_eq!(x.metrics(), vec!["a/b", "c/d", "e/f"]);
        assert!(x.check_axes(&[]).is_ok());
        assert!(v(r#"{ ratio = [{ last = "a/b" }] }"#).check_axes(&[]).is_err());
        assert!(v(r#"{ axis = "lr" }"#).check_axes(&["batch_size"]).is_err());
        assert!(v(r#"{ at = { metric = "a/b", step = 1, epoch = 2.0 } }"#).check_axes(&[]).is_err());
        assert!(v(r#"{ first_crossing = { metric = "a/b" } }"#).check_axes(&[]).is_err());
        assert!(v(r#"{ fraction = { of = { last = "a/b" }, greater = 1.0, less = 2.0 } }"#).check_axes(&[]).is_err());
        assert_eq!(v(r#"{ last = "a/b" }"#).describe(), "final a/b");
    }
}
