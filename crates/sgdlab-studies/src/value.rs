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
//! | `{ first_crossing = { metric = "...", below = 0.1, by = "step" } }` (or `above`) | the first step (or epoch) whose value is below (above) the threshold (`relative = true`: the threshold times the metric's first measured value), at `sustained` (default 1) consecutive measurements: the first of them; per element for a vector; never: `if_never = "missing"` (default: no value, with the reason; NaN for a vector's element) or `"end"` (the last measured step) |
//! | `paired = { where = { axis = value }, difference = "abs" }` inside `first_crossing`, `min`, `max`, `mean`, `series` | the metric read as this run's minus its partner's (the one run of the same seed with those axis values, and this run's values of the axes listed in `same = [...]`), step by step; `difference` = `signed` (default) or `abs`; a step only one of them measured is an error, or left out with `unpaired = "skip"` |
//! | `{ partner = { where = { axis = value }, value = VALUE } }` | VALUE of the partner run |
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

use crate::spec::Arm;
use crate::statistic::{describe_arm, in_arm};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::stats;
use std::collections::BTreeMap;
use std::sync::Arc;

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

/// A run as values see it: its seed, axis values and metric series (points in step order), and
/// the completed runs of the same seed (itself included) that `partner` and `paired` read.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    pub seed: u64,
    pub axes: BTreeMap<String, serde_json::Value>,
    pub series: BTreeMap<String, Vec<Point>>,
    /// The completed runs of this seed (their own `peers` empty); empty when not linked.
    pub peers: Arc<[RunData]>,
}

/// Links every run to the runs of its seed for which `include` holds (the completed ones): each
/// run's `peers` becomes that group (each member without peers of its own).
pub fn link_peers(runs: &mut [&mut RunData], include: &[bool]) {
    let mut groups: BTreeMap<u64, Vec<RunData>> = BTreeMap::new();
    for (r, &inc) in runs.iter().zip(include) {
        if inc {
            groups.entry(r.seed).or_default().push(RunData { peers: Arc::from(Vec::new()), ..(**r).clone() });
        }
    }
    let groups: BTreeMap<u64, Arc<[RunData]>> = groups.into_iter().map(|(k, v)| (k, Arc::from(v))).collect();
    for r in runs.iter_mut() {
        r.peers = groups.get(&r.seed).cloned().unwrap_or_else(|| Arc::from(Vec::new()));
    }
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
        RunData { seed, axes, series, peers: Arc::from(Vec::new()) }
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

    /// The partner of this run among `peers`: the one run of the same seed with the axis values
    /// of `arm` and this run's values of the axes in `same` (itself, if it matches).
    fn partner<'a>(&self, peers: &'a [RunData], arm: &Arm, same: &[String]) -> Result<&'a RunData, String> {
        let shared = |p: &RunData| same.iter().all(|k| self.axes.get(k) == p.axes.get(k));
        let found: Vec<&RunData> =
            peers.iter().filter(|p| p.seed == self.seed && in_arm(arm, &p.axes) && shared(p)).collect();
        let with_same = if same.is_empty() { String::new() } else { format!(" and this run's {}", same.join(", ")) };
        match found.as_slice() {
            [p] => Ok(p),
            [] => Err(format!(
                "no completed run of seed {} with {}{with_same} to pair with",
                self.seed,
                describe_arm(arm)
            )),
            more => Err(format!(
                "{} runs of seed {} have {}{with_same}: name the axes the partner shares with this run in same = [...]",
                more.len(),
                self.seed,
                describe_arm(arm)
            )),
        }
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

/// How a paired series compares a run with its partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PairedDifference {
    /// This run's value minus the partner's.
    #[default]
    Signed,
    /// Its absolute value.
    Abs,
}

/// What a paired series does with a step that only one of the two runs measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Unpaired {
    /// An error naming the step: the run has no value.
    #[default]
    Error,
    /// Left out: the series holds the steps both runs measured.
    Skip,
}

/// `paired`: a metric read as the difference between this run and its partner, the run of the
/// same seed with the axis values `where` (and this run's values of the other axes), step by step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSpec {
    #[serde(rename = "where")]
    pub filter: Arm,
    /// Axes whose values the partner shares with this run (needed when several runs of the seed
    /// match `where`, e.g. one per learning rate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same: Vec<String>,
    #[serde(default)]
    pub difference: PairedDifference,
    #[serde(default)]
    pub unpaired: Unpaired,
}

impl PairSpec {
    /// The paired series of `metric`: `run - partner` (or its absolute value) at every step both
    /// measured, epochs from `run`.
    fn series(&self, metric: &str, run: &RunData, peers: &[RunData]) -> Result<Vec<Point>, String> {
        let partner = run.partner(peers, &self.filter, &self.same)?;
        let who = describe_arm(&self.filter);
        let a = run.series(metric)?;
        let b = partner.series(metric).map_err(|e| format!("{e} in its partner ({who})"))?;
        let at_b: BTreeMap<u64, &Point> = b.iter().map(|p| (p.step, p)).collect();
        if self.unpaired == Unpaired::Error {
            let at_a: std::collections::BTreeSet<u64> = a.iter().map(|p| p.step).collect();
            if let Some(p) = a.iter().find(|p| !at_b.contains_key(&p.step)) {
                return Err(format!(
                    "{metric} is measured at step {} in this run but not in its partner ({who}); unpaired = \"skip\" compares the steps both measured",
                    p.step
                ));
            }
            if let Some(p) = b.iter().find(|p| !at_a.contains(&p.step)) {
                return Err(format!(
                    "{metric} is measured at step {} in its partner ({who}) but not in this run; unpaired = \"skip\" compares the steps both measured",
                    p.step
                ));
            }
        }
        let mut out = Vec::new();
        for p in a {
            if let Some(q) = at_b.get(&p.step) {
                let d = elementwise(&p.value, &q.value, |x, y| x - y)
                    .map_err(|e| format!("{metric} at step {} against its partner ({who}): {e}", p.step))?;
                let value = match self.difference {
                    PairedDifference::Signed => d,
                    PairedDifference::Abs => d.map(f64::abs),
                };
                out.push(Point { step: p.step, epoch: p.epoch, value });
            }
        }
        if out.is_empty() {
            return Err(format!("{metric}: this run and its partner ({who}) share no measured step"));
        }
        Ok(out)
    }

    fn describe(&self, metric: &str) -> String {
        let d = format!("{metric} minus its partner's ({})", describe_arm(&self.filter));
        match self.difference {
            PairedDifference::Signed => format!("({d})"),
            PairedDifference::Abs => format!("|{d}|"),
        }
    }
}

/// The points of `metric`, or of its paired difference with a partner.
fn points_of(metric: &str, paired: Option<&PairSpec>, run: &RunData, peers: &[RunData]) -> Result<Vec<Point>, String> {
    match paired {
        None => Ok(run.series(metric)?.to_vec()),
        Some(p) => p.series(metric, run, peers),
    }
}

/// A window of a series, inclusive at both ends; absent bounds are open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesSpec {
    pub metric: String,
    /// Read the metric as its difference with a partner run's (see [`PairSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<PairSpec>,
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
    fn points(&self, run: &RunData, peers: &[RunData]) -> Result<Vec<Point>, String> {
        let bound = |w: &Option<Box<ValueSpec>>, what: &str| -> Result<Option<f64>, String> {
            match w {
                None => Ok(None),
                Some(v) => {
                    let s = v.eval_in(run, peers)?.scalar()?;
                    if s.is_nan() {
                        return Err(format!("{what}: the step is missing"));
                    }
                    Ok(Some(s))
                }
            }
        };
        let (from, to) = (bound(&self.from_when, "from_when")?, bound(&self.to_when, "to_when")?);
        let pts: Vec<Point> = points_of(&self.metric, self.paired.as_ref(), run, peers)?
            .into_iter()
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
    /// The crossing must hold at this many consecutive measurements; the value is the first of
    /// them.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub sustained: u64,
    /// Read the metric as its difference with a partner run's (see [`PairSpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<PairSpec>,
    /// The threshold is a multiple of the metric's first measured value (per element), e.g.
    /// `below = 0.5, relative = true`: the first step at which it has halved.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relative: bool,
}

fn one() -> u64 {
    1
}
fn is_one(v: &u64) -> bool {
    *v == 1
}

/// `partner`: a value of the partner run (the run of the same seed with the axis values `where`
/// and this run's values of the other axes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerSpec {
    #[serde(rename = "where")]
    pub filter: Arm,
    /// Axes whose values the partner shares with this run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub same: Vec<String>,
    pub value: Box<ValueSpec>,
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
    /// A value of the partner run of the same seed (see [`PartnerSpec`]).
    Partner(PartnerSpec),
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
fn over_points(points: &[Point], f: impl Fn(&[f64]) -> f64) -> Result<Val, String> {
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
        self.eval_in(run, &run.peers)
    }

    /// The value for `run`, whose partners are found among `peers` (the runs of its seed).
    fn eval_in(&self, run: &RunData, peers: &[RunData]) -> Result<Val, String> {
        match self {
            ValueSpec::Last(m) => Ok(run.series(m)?.last().expect("non-empty").value.clone()),
            ValueSpec::At(a) => {
                let target = match (&a.step, &a.epoch, &a.when) {
                    (Some(s), None, None) => (*s as f64, By::Step),
                    (None, Some(e), None) => (*e, By::Epoch),
                    (None, None, Some(w)) => (w.eval_in(run, peers)?.scalar()?, By::Step),
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
            ValueSpec::Min(s) => over_points(&s.points(run, peers)?, fmin),
            ValueSpec::Max(s) => over_points(&s.points(run, peers)?, fmax),
            ValueSpec::Mean(s) => over_points(&s.points(run, peers)?, fmean),
            ValueSpec::Series(s) => s
                .points(run, peers)?
                .iter()
                .map(|p| p.value.scalar())
                .collect::<Result<Vec<f64>, String>>()
                .map(Val::Vector),
            ValueSpec::FirstCrossing(c) => {
                if c.below.is_some() == c.above.is_some() {
                    return Err("first_crossing needs exactly one of below, above".into());
                }
                if c.sustained == 0 {
                    return Err("first_crossing: sustained must be at least 1".into());
                }
                let pts = points_of(&c.metric, c.paired.as_ref(), run, peers)?;
                let start = pts[0].value.elements().to_vec();
                let crossed = |v: f64, i: usize| {
                    let scale = if c.relative { start.get(i).copied().unwrap_or(f64::NAN) } else { 1.0 };
                    match (c.below, c.above) {
                        (Some(t), None) => v < t * scale,
                        (None, Some(t)) => v > t * scale,
                        _ => false,
                    }
                };
                let k = usize::try_from(c.sustained).unwrap_or(usize::MAX);
                let end = time_of(pts.last().expect("non-empty"), c.by);
                let n = pts[0].value.elements().len();
                let holds = |j: usize, i: usize| pts[j].value.elements().get(i).is_some_and(|&v| crossed(v, i));
                let first = |i: usize| -> Option<f64> {
                    let mut streak = 0usize;
                    for j in 0..pts.len() {
                        streak = if holds(j, i) { streak + 1 } else { 0 };
                        if streak == k {
                            return Some(time_of(&pts[j + 1 - k], c.by));
                        }
                    }
                    None
                };
                let times: Vec<Option<f64>> = (0..n).map(first).collect();
                let never = match c.if_never {
                    Never::Missing => f64::NAN,
                    Never::End => end,
                };
                Ok(match pts[0].value {
                    Val::Scalar(_) => match times[0] {
                        Some(t) => Val::Scalar(t),
                        None if c.if_never == Never::End => Val::Scalar(end),
                        None => {
                            return Err(format!(
                                "never crossed: {} (if_never = \"end\" gives the last step)",
                                self.describe()
                            ));
                        }
                    },
                    Val::Vector(_) => Val::Vector(times.into_iter().map(|t| t.unwrap_or(never)).collect()),
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
                let x = c.x.eval_in(run, peers)?;
                let xs = x.elements();
                let y: Vec<f64> = match &c.y {
                    Some(y) => y.eval_in(run, peers)?.elements().to_vec(),
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
            ValueSpec::Ratio(v) => elementwise(&v[0].eval_in(run, peers)?, &v[1].eval_in(run, peers)?, |a, b| a / b),
            ValueSpec::Difference(v) => {
                elementwise(&v[0].eval_in(run, peers)?, &v[1].eval_in(run, peers)?, |a, b| a - b)
            }
            ValueSpec::Product(v) | ValueSpec::Sum(v) | ValueSpec::Greatest(v) => {
                let op = |a: f64, b: f64| match self {
                    ValueSpec::Product(_) => a * b,
                    ValueSpec::Sum(_) => a + b,
                    _ => a.max(b),
                };
                let mut acc = v[0].eval_in(run, peers)?;
                for t in &v[1..] {
                    acc = elementwise(&acc, &t.eval_in(run, peers)?, op)?;
                }
                Ok(acc)
            }
            ValueSpec::Axis(a) => run.axis(a).map(Val::Scalar),
            ValueSpec::Constant(c) => Ok(Val::Scalar(*c)),
            ValueSpec::Drops(v) => {
                let v = v.eval_in(run, peers)?;
                let xs = v.elements();
                if xs.len() < 2 {
                    return Err(format!("drops need a vector of at least 2 elements, not {}", xs.len()));
                }
                Ok(Val::Vector(xs.windows(2).map(|w| w[0] - w[1]).collect()))
            }
            ValueSpec::Element(e) => {
                let v = e.of.eval_in(run, peers)?;
                let xs = v.elements();
                let i = if e.index < 0 { xs.len() as i64 + e.index } else { e.index };
                usize::try_from(i)
                    .ok()
                    .and_then(|i| xs.get(i))
                    .map(|&x| Val::Scalar(x))
                    .ok_or_else(|| format!("element {} of a vector of {}", e.index, xs.len()))
            }
            ValueSpec::Reduce(r) => {
                let v = r.of.eval_in(run, peers)?;
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
                let v = f.of.eval_in(run, peers)?;
                let xs = v.elements();
                if xs.is_empty() {
                    return Err("fraction of an empty vector".into());
                }
                Ok(Val::Scalar(xs.iter().filter(|&&x| !x.is_nan() && pred.holds(x)).count() as f64 / xs.len() as f64))
            }
            ValueSpec::Partner(p) => p.value.eval_in(run.partner(peers, &p.filter, &p.same)?, peers),
            ValueSpec::Abs(v) => Ok(v.eval_in(run, peers)?.map(f64::abs)),
            ValueSpec::Log10(v) => Ok(v.eval_in(run, peers)?.map(f64::log10)),
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
            ValueSpec::Partner(p) => vec![p.value.as_ref()],
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
            | ValueSpec::Drops(_)
            | ValueSpec::Partner(_) => None,
        }
    }

    /// The partner arms the value reads (`partner` and `paired`), for checks against the plan.
    pub fn partner_arms(&self) -> Vec<&Arm> {
        let mut out: Vec<&Arm> = self.own_partners().into_iter().map(|(a, _)| a).collect();
        for c in self.children() {
            out.extend(c.partner_arms());
        }
        out
    }

    fn own_partners(&self) -> Vec<(&Arm, &[String])> {
        match self {
            ValueSpec::Partner(p) => vec![(&p.filter, &p.same)],
            ValueSpec::FirstCrossing(CrossingSpec { paired: Some(p), .. }) => vec![(&p.filter, &p.same)],
            ValueSpec::Min(s) | ValueSpec::Max(s) | ValueSpec::Mean(s) => {
                s.paired.iter().map(|p| (&p.filter, p.same.as_slice())).collect()
            }
            _ => Vec::new(),
        }
    }

    /// Every metric the value reads, each once, in the order first read.
    pub fn metrics(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.own_metric().into_iter().collect();
        for c in self.children() {
            for m in c.metrics() {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
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
            ValueSpec::FirstCrossing(c) if c.sustained == 0 => {
                return Err(format!("first_crossing (of {}): sustained must be at least 1", c.metric));
            }
            _ => {}
        }
        let known =
            || if axes.is_empty() { "the study has none".to_string() } else { format!("axes: {}", axes.join(", ")) };
        for (arm, same) in self.own_partners() {
            if arm.is_empty() {
                return Err("partner and paired need where = { axis = value, ... } naming the partner run".into());
            }
            if let Some(k) = arm.keys().find(|k| !axes.contains(&k.as_str())) {
                return Err(format!("partner/paired where names '{k}', which is not an axis ({})", known()));
            }
            if let Some(k) = same.iter().find(|k| !axes.contains(&k.as_str())) {
                return Err(format!("partner/paired same names '{k}', which is not an axis ({})", known()));
            }
            if let Some(k) = same.iter().find(|k| arm.contains_key(*k)) {
                return Err(format!("partner/paired: axis '{k}' is both in where and in same"));
            }
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
            ValueSpec::Partner(p) => p.value.is_vector(metric_is_vector)?,
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
            ValueSpec::Min(s) => format!("minimum of {}{}", series_name(&s.metric, s.paired.as_ref()), window(s)),
            ValueSpec::Max(s) => format!("maximum of {}{}", series_name(&s.metric, s.paired.as_ref()), window(s)),
            ValueSpec::Mean(s) => format!("mean of {}{}", series_name(&s.metric, s.paired.as_ref()), window(s)),
            ValueSpec::Series(s) => {
                format!("the measurements of {}{}", series_name(&s.metric, s.paired.as_ref()), window(s))
            }
            ValueSpec::FirstCrossing(c) => format!(
                "first {} at which {} {}{}",
                match c.by {
                    By::Step => "step",
                    By::Epoch => "epoch",
                },
                series_name(&c.metric, c.paired.as_ref()),
                match (c.below, c.above, c.relative) {
                    (Some(t), _, false) => format!("falls below {t}"),
                    (_, Some(t), false) => format!("rises above {t}"),
                    (Some(t), _, true) => format!("falls below {t} x its first value"),
                    (_, Some(t), true) => format!("rises above {t} x its first value"),
                    (None, None, _) => String::new(),
                },
                if c.sustained > 1 { format!(" for {} consecutive measurements", c.sustained) } else { String::new() }
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
            ValueSpec::Partner(p) => format!("({}) of its partner ({})", d(&p.value), describe_arm(&p.filter)),
        }
    }
}

fn series_name(metric: &str, paired: Option<&PairSpec>) -> String {
    paired.map_or_else(|| metric.to_string(), |p| p.describe(metric))
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
        let e = v(never).eval(&run()).unwrap_err();
        assert_eq!(
            e,
            "never crossed: first step at which train/loss falls below -1 (if_never = \"end\" gives the last step)"
        );
        assert_eq!(
            s(r#"{ mean = { metric = "train/loss", from_step = 10, to_step = 20 } }"#),
            (1.0 / 11.0 + 1.0 / 21.0) / 2.0
        );
        assert_eq!(s(r#"{ first_crossing = { metric = "train/loss", below = 0.06 } }"#), 20.0);
        assert_eq!(s(r#"{ first_crossing = { metric = "train/loss", below = 0.06, by = "epoch" } }"#), 2.0);
        // Never crossed: no value, and the reason (a vector gets NaN for that element).
        let e = v(r#"{ first_crossing = { metric = "train/loss", below = 0.0 } }"#).eval(&run()).unwrap_err();
        assert!(e.starts_with("never crossed: first step at which train/loss falls below 0"), "{e}");
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
        // Never crossed: the run has no value, with the reason.
        for never in [
            r#"{ first_crossing = { metric = "h/decay", below = 0.5 } }"#,
            r#"{ first_crossing = { metric = "h/decay", above = 1.1, relative = true } }"#,
        ] {
            let e = v(never).eval(&run()).unwrap_err();
            assert!(e.contains("never crossed"), "{e}");
        }
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

    /// Three runs of one seed on the steps 0, 1, 2, 3, 5, 8, 13, 20, arms `data` = real, gp and
    /// gpiso: the accuracies of real plus these differences.
    fn paired_runs(seed: u64, gp: &[f64; 8], gpiso: &[f64; 8]) -> Vec<RunData> {
        let steps = [0u64, 1, 2, 3, 5, 8, 13, 20];
        let real = [0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9];
        let mk = |arm: &str, diff: &[f64; 8]| {
            let rows: Vec<MetricRecord> = steps
                .iter()
                .zip(real.iter().zip(diff))
                .map(|(&st, (&r, &d))| row(st, "test", "accuracy", None, r - d))
                .collect();
            RunData::from_rows(seed, [("data".to_string(), serde_json::json!(arm))].into(), &rows)
        };
        let mut runs = vec![mk("real", &[0.0; 8]), mk("gp", gp), mk("gpiso", gpiso)];
        let mut refs: Vec<&mut RunData> = runs.iter_mut().collect();
        link_peers(&mut refs, &[true, true, true]);
        runs
    }

    const T_DIV: &str = r#"{ first_crossing = { metric = "test/accuracy", paired = { where = { data = "real" }, difference = "abs" }, above = 0.02, sustained = 3 } }"#;

    #[test]
    fn a_paired_crossing_gives_the_first_step_of_a_sustained_difference() {
        // gp: a one-evaluation excursion at step 1, then more than 2 points below real from step 5 on.
        // gpiso: below real by more than 2 points from step 2 on (signed: real - gpiso > 0).
        let gp = [0.0, 0.03, 0.01, 0.0, 0.03, 0.04, 0.05, 0.06];
        let gpiso = [0.0, 0.01, 0.05, 0.06, 0.07, 0.1, 0.1, 0.1];
        let runs = paired_runs(4, &gp, &gpiso);
        let at = |r: &RunData, t: &str| v(t).eval(r).unwrap().scalar().unwrap();
        assert_eq!(at(&runs[1], T_DIV), 5.0);
        assert_eq!(at(&runs[2], T_DIV), 2.0);
        // Without `sustained` the excursion at step 1 counts.
        let once = T_DIV.replace(", sustained = 3", "");
        assert_eq!(at(&runs[1], &once), 1.0);
        // Signed: this run minus real, so gp lies below 0 by more than 2 points.
        let signed = r#"{ first_crossing = { metric = "test/accuracy", paired = { where = { data = "real" } }, below = -0.02, sustained = 2 } }"#;
        assert_eq!(at(&runs[1], signed), 5.0);
        // By epoch (rows carry epoch = step / 10).
        assert_eq!(at(&runs[2], &T_DIV.replace("sustained = 3", "sustained = 3, by = \"epoch\"")), 0.2);
        // The real run paired with itself never differs.
        let e = v(T_DIV).eval(&runs[0]).unwrap_err();
        assert!(e.starts_with("never crossed: first step at which |test/accuracy minus its partner's (data = \"real\")| rises above 0.02 for 3 consecutive measurements"), "{e}");
        assert_eq!(e.lines().count(), 1);
        assert_eq!(at(&runs[0], &T_DIV.replace("sustained = 3", "sustained = 3, if_never = \"end\"")), 20.0);
        // A partner's value: t_div(gpiso) - t_div(gp), read on the gpiso run.
        let order =
            format!("{{ difference = [{T_DIV}, {{ partner = {{ where = {{ data = \"gp\" }}, value = {T_DIV} }} }}] }}");
        assert_eq!(at(&runs[2], &order), -3.0);
        // The largest |gp - real| before t_div(gp): steps 0..=4 (the excursion of 0.03 at step 1).
        let before = format!(
            "{{ max = {{ metric = \"test/accuracy\", paired = {{ where = {{ data = \"real\" }}, difference = \"abs\" }}, to_when = {{ difference = [{T_DIV}, {{ constant = 1 }}] }} }} }}"
        );
        assert!((at(&runs[1], &before) - 0.03).abs() < 1e-12);
        assert!(
            v(&before)
                .describe()
                .starts_with("maximum of |test/accuracy minus its partner's (data = \"real\")| (to the step of")
        );
    }

    #[test]
    fn paired_values_say_what_is_missing() {
        let z = [0.0; 8];
        let mut runs = paired_runs(0, &z, &z);
        // A partner that does not exist, and a run that was never linked to its seed's runs.
        let e = v(&T_DIV.replace("\"real\"", "\"wgan\"")).eval(&runs[1]).unwrap_err();
        assert_eq!(e, "no completed run of seed 0 with data = \"wgan\" to pair with");
        let lone = RunData { peers: Arc::from(Vec::new()), ..runs[1].clone() };
        assert!(v(T_DIV).eval(&lone).unwrap_err().starts_with("no completed run of seed 0"));
        // A step measured in one run only: an error naming it, unless unpaired = "skip".
        let gp = &mut runs[1];
        gp.series.get_mut("test/accuracy").unwrap().retain(|p| p.step != 8);
        let mut refs: Vec<&mut RunData> = runs.iter_mut().collect();
        link_peers(&mut refs, &[true, true, true]);
        let e = v(T_DIV).eval(&runs[1]).unwrap_err();
        assert_eq!(
            e,
            "test/accuracy is measured at step 8 in its partner (data = \"real\") but not in this run; unpaired = \"skip\" compares the steps both measured"
        );
        let skip = T_DIV
            .replace("difference = \"abs\"", "difference = \"abs\", unpaired = \"skip\"")
            .replace("sustained = 3", "sustained = 3, if_never = \"end\"");
        assert_eq!(v(&skip).eval(&runs[1]).unwrap().scalar().unwrap(), 20.0);
        // The partner must have the metric.
        let e = v(&T_DIV.replace("test/accuracy", "test/loss")).eval(&runs[1]).unwrap_err();
        assert_eq!(e, "no test/loss measured");
        // Excluded runs are not partners: link without the real run.
        let mut refs: Vec<&mut RunData> = runs.iter_mut().collect();
        link_peers(&mut refs, &[false, true, true]);
        assert!(v(T_DIV).eval(&runs[1]).unwrap_err().starts_with("no completed run of seed 0 with data = \"real\""));
    }

    #[test]
    fn several_candidate_partners_need_same() {
        // Two learning rates per arm: data = "real" matches two runs of the seed.
        // gpiso parts from its own real run at step 5; the real run of the other lr is 0.1 away.
        let base = paired_runs(1, &[0.0; 8], &[0.0, 0.0, 0.0, 0.0, 0.05, 0.05, 0.05, 0.05]);
        let mut runs: Vec<RunData> = Vec::new();
        for (lr, shift) in [(0.1, 0.0), (0.2, 0.1)] {
            for r in &base {
                let mut r = r.clone();
                r.axes.insert("lr".into(), serde_json::json!(lr));
                for p in r.series.get_mut("test/accuracy").unwrap() {
                    p.value = p.value.map(|x| x + shift);
                }
                runs.push(r);
            }
        }
        let mut refs: Vec<&mut RunData> = runs.iter_mut().collect();
        link_peers(&mut refs, &[true; 6]);
        let gpiso_lr2 = &runs[5];
        let e = v(T_DIV).eval(gpiso_lr2).unwrap_err();
        assert_eq!(
            e,
            "2 runs of seed 1 have data = \"real\": name the axes the partner shares with this run in same = [...]"
        );
        let same = T_DIV.replace("difference = \"abs\"", "same = [\"lr\"], difference = \"abs\"");
        assert_eq!(v(&same).eval(gpiso_lr2).unwrap().scalar().unwrap(), 5.0);
        assert!(v(&same).check_axes(&["data", "lr"]).is_ok());
        let e = v(&same).check_axes(&["data"]).unwrap_err();
        assert_eq!(e, "partner/paired same names 'lr', which is not an axis (axes: data)");
        let both = T_DIV.replace("difference = \"abs\"", "same = [\"data\"], difference = \"abs\"");
        assert!(v(&both).check_axes(&["data"]).unwrap_err().contains("both in where and in same"));
    }

    #[test]
    fn paired_and_partner_forms_are_checked_before_running() {
        let axes = ["data"];
        let e = v(&T_DIV.replace("where = { data", "where = { kind")).check_axes(&axes).unwrap_err();
        assert_eq!(e, "partner/paired where names 'kind', which is not an axis (axes: data)");
        let e = v(&T_DIV.replace("sustained = 3", "sustained = 0")).check_axes(&axes).unwrap_err();
        assert!(e.contains("sustained must be at least 1"), "{e}");
        let e = v(r#"{ partner = { where = {}, value = { last = "a/b" } } }"#).check_axes(&axes).unwrap_err();
        assert!(e.contains("need where = { axis = value"), "{e}");
        assert!(v(r#"{ partner = { where = { data = "gp" }, value = { last = "a/b" } } }"#).check_axes(&axes).is_ok());
        let bad = |t: &str| {
            #[derive(Deserialize, Debug)]
            #[allow(dead_code)]
            struct W {
                v: ValueSpec,
            }
            toml::from_str::<W>(&format!("v = {t}")).unwrap_err().to_string()
        };
        assert!(bad(&T_DIV.replace("\"abs\"", "\"absolute\"")).contains("unknown variant `absolute`"));
        assert!(bad(&T_DIV.replace("difference = \"abs\"", "diff = \"abs\"")).contains("unknown field `diff`"));
        let p = v(&format!("{{ partner = {{ where = {{ data = \"gp\" }}, value = {T_DIV} }} }}"));
        assert_eq!(p.metrics(), vec!["test/accuracy"]);
        assert_eq!(p.partner_arms().len(), 2);
        assert!(!p.is_vector(&|_| Some(false)).unwrap());
    }
}
