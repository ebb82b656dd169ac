//! A study as the report reads it: `plan.json`, `verdict.json`, every planned run's record and
//! the metric series the figures need, the arms, and the labels of every metric.

use crate::ReportError;
use crate::arms::{Arms, cmp_key};
use crate::format::axis_words;
use sgdlab_probes::registry::{MetricInfo, MetricShape};
use sgdlab_studies::records::{PlanRecord, RunState, VerdictRecord};
use sgdlab_studies::spec::FigureSpec;
use sgdlab_studies::value::ValueSpec;
use sgdlab_studies::verdict::{LoadedRun, load_runs};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Everything a study report shows.
pub(crate) struct Study {
    pub plan: PlanRecord,
    pub verdict: VerdictRecord,
    /// Every planned run, in plan order, with its state and (completed runs) the series the
    /// figures read.
    pub runs: Vec<LoadedRun>,
    pub arms: Arms,
    pub labels: Labels,
    /// Disagreements between the records, in words (shown under Notes).
    pub checks: Vec<String>,
}

impl Study {
    /// Run indices sorted by arm, then seed, then id (the order of every table).
    pub fn run_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.runs.len()).collect();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&self.runs[a].summary, &self.runs[b].summary);
            cmp_key(&self.arms.run_keys[a], &self.arms.run_keys[b]).then(ra.seed.cmp(&rb.seed)).then(ra.id.cmp(&rb.id))
        });
        order
    }
}

/// Names of figures are file names: letters, digits, `_`, `-`, `.` (not only dots).
fn is_file_stem(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) && s.chars().any(|c| c != '.')
}

/// Every metric the figures read.
fn figure_metrics(figures: &[FigureSpec]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in figures {
        for m in [&f.metric, &f.x_metric] {
            if !m.is_empty() {
                out.insert(m.clone());
            }
        }
        let values = [&f.y, &f.x_value].into_iter().flatten().chain(f.reference.iter().map(|r| &r.value));
        for v in values {
            out.extend(v.metrics().into_iter().map(str::to_string));
        }
    }
    out
}

/// Reads and checks a study directory.
pub(crate) fn load(dir: &Path) -> Result<Study, ReportError> {
    for f in ["plan.json", "verdict.json"] {
        if !dir.join(f).exists() {
            return Err(ReportError::Missing { path: dir.join(f) });
        }
    }
    let plan = sgdlab_studies::read_plan(dir)?;
    let verdict = sgdlab_studies::read_verdict(dir)?;
    let verdict_path = dir.join("verdict.json");
    let mut names = BTreeSet::new();
    for f in &verdict.figures {
        if !is_file_stem(&f.name) {
            let message = format!("figure name `{}` is not a file name (letters, digits, `_`, `-`, `.`)", f.name);
            return Err(ReportError::Invalid { path: verdict_path, message });
        }
        if !names.insert(f.name.as_str()) {
            let message = format!("figure name `{}` appears twice", f.name);
            return Err(ReportError::Invalid { path: verdict_path, message });
        }
    }
    let mut ids = BTreeSet::new();
    for r in &plan.runs {
        if !is_file_stem(&r.id) || !ids.insert(r.id.as_str()) {
            let message = format!("run id `{}` is not a directory name or appears twice", r.id);
            return Err(ReportError::Invalid { path: dir.join("plan.json"), message });
        }
    }
    let wanted = figure_metrics(&verdict.figures);
    let runs = load_runs(dir, &plan, Some(&wanted))?;
    let arms = Arms::new(&plan.axes, &plan.runs.iter().map(|r| &r.axes).collect::<Vec<_>>());
    let labels = Labels(sgdlab_studies::metrics::known(&plan.measure));
    let checks = consistency_checks(&plan, &verdict, &runs);
    Ok(Study { plan, verdict, runs, arms, labels, checks })
}

/// Disagreements between `plan.json`, `verdict.json` and the run records.
fn consistency_checks(plan: &PlanRecord, verdict: &VerdictRecord, runs: &[LoadedRun]) -> Vec<String> {
    let mut checks = Vec::new();
    if plan.study != verdict.study {
        checks.push(format!("plan.json is for study `{}` but verdict.json for `{}`", plan.study, verdict.study));
    }
    if plan.spec_hash != verdict.spec_hash {
        checks.push(format!(
            "spec hash differs: plan.json {} but verdict.json {} (the verdict may come from another version of the study)",
            plan.spec_hash, verdict.spec_hash
        ));
    }
    if plan.quick != verdict.quick {
        checks.push("plan.json and verdict.json disagree on quick or full mode".into());
    }
    let seen: BTreeMap<&str, RunState> = verdict.per_run.iter().map(|r| (r.id.as_str(), r.status)).collect();
    let changed: Vec<String> = runs
        .iter()
        .filter_map(|r| {
            let then = seen.get(r.summary.id.as_str()).copied();
            (then != Some(r.summary.status)).then(|| {
                format!(
                    "{} ({} in verdict.json, {} now)",
                    r.summary.id,
                    then.map_or("absent", RunState::as_str),
                    r.summary.status.as_str()
                )
            })
        })
        .collect();
    if !changed.is_empty() {
        checks.push(format!(
            "runs whose state changed since the verdict was computed (run `sgdlab report DIR` to recompute it): {}",
            changed.join(", ")
        ));
    }
    let planned: BTreeSet<&str> = plan.runs.iter().map(|r| r.id.as_str()).collect();
    let unknown: Vec<&str> = verdict.per_run.iter().map(|r| r.id.as_str()).filter(|id| !planned.contains(id)).collect();
    if !unknown.is_empty() {
        checks.push(format!("verdict.json names runs that plan.json does not plan: {}", unknown.join(", ")));
    }
    checks
}

/// An axis title: words and an optional unit, composed with "log scale" when the axis is
/// logarithmic: "epsilon-sharpness (%, log scale)".
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AxisTitle {
    pub words: String,
    pub unit: Option<String>,
}

impl AxisTitle {
    pub fn plain(words: impl Into<String>) -> Self {
        AxisTitle { words: words.into(), unit: None }
    }

    /// The title as drawn.
    pub fn text(&self, log: bool) -> String {
        match (&self.unit, log) {
            (Some(u), true) => format!("{} ({u}, log scale)", self.words),
            (Some(u), false) => format!("{} ({u})", self.words),
            (None, true) => format!("{} (log scale)", self.words),
            (None, false) => self.words.clone(),
        }
    }
}

/// Labels and units of every metric a plan's runs can write (`probe/name` -> description).
pub(crate) struct Labels(pub BTreeMap<String, MetricInfo>);

impl Labels {
    /// A metric's label in words (its `probe/name` when the registry gives none).
    pub fn words(&self, metric: &str) -> String {
        self.0.get(metric).map_or_else(|| metric.to_string(), |m| m.label.to_string())
    }

    /// A metric's axis title: label and unit.
    pub fn metric(&self, metric: &str) -> AxisTitle {
        match self.0.get(metric) {
            Some(m) => AxisTitle { words: m.label.to_string(), unit: m.unit.map(str::to_string) },
            None => AxisTitle::plain(metric),
        }
    }

    /// What a vector metric's index counts ("index" when unknown).
    pub fn index(&self, metric: &str) -> String {
        match self.0.get(metric).map(|m| m.shape) {
            Some(MetricShape::Vector { index }) => index.to_string(),
            Some(MetricShape::Scalar) | None => "index".into(),
        }
    }

    /// A per-run value's axis title: the metric's label and unit for the last value, a value at a
    /// step and a minimum, maximum or mean; otherwise the value described in words with metric
    /// labels in place of names.
    pub fn value(&self, v: &ValueSpec) -> AxisTitle {
        let with = |m: &str, f: &dyn Fn(String) -> String| {
            let t = self.metric(m);
            AxisTitle { words: f(t.words), unit: t.unit }
        };
        match v {
            ValueSpec::Last(m) => self.metric(m),
            ValueSpec::At(a) => match (&a.step, &a.epoch) {
                (Some(s), _) => with(&a.metric, &|w| format!("{w} at step {s}")),
                (_, Some(e)) => with(&a.metric, &|w| format!("{w} at epoch {e}")),
                (None, None) => AxisTitle::plain(self.describe(v)),
            },
            ValueSpec::Min(s) if no_window(s) => with(&s.metric, &|w| format!("minimum of {w}")),
            ValueSpec::Max(s) if no_window(s) => with(&s.metric, &|w| format!("maximum of {w}")),
            ValueSpec::Mean(s) if no_window(s) => with(&s.metric, &|w| format!("mean of {w}")),
            ValueSpec::Axis(a) => AxisTitle::plain(axis_words(a)),
            _ => AxisTitle::plain(self.describe(v)),
        }
    }

    /// [`ValueSpec::describe`] with every metric name replaced by its label.
    pub fn describe(&self, v: &ValueSpec) -> String {
        let mut text = v.describe();
        let mut metrics = v.metrics();
        // Longest first, so that no name is replaced inside a longer one.
        metrics.sort_by_key(|m| std::cmp::Reverse(m.len()));
        metrics.dedup();
        for m in metrics {
            text = text.replace(m, &self.words(m));
        }
        text
    }
}

fn no_window(s: &sgdlab_studies::value::SeriesSpec) -> bool {
    s.from_step.is_none() && s.to_step.is_none() && s.from_epoch.is_none() && s.to_epoch.is_none()
}
