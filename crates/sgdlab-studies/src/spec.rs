//! Study specs in TOML: a base run spec, axes, seeds, a measurement schedule, the claim and its
//! decision rule, figures, and the quick-mode overrides.
//!
//! ```toml
//! name = "batch-sharpness"
//! title = "Large batches find sharper minima"
//! section = "7.1"
//! claim = "Large-batch training converges to sharper minimisers than small-batch training."
//! seeds = [0, 1, 2, 3, 4]
//!
//! [base]                        # a run spec (see sgdlab train --help); strings may use {axis}
//! model = "mlp:40-256-256-10:relu"
//! ...
//!
//! [[axes]]                      # a grid over axes (or zip = true to pair them up)
//! name = "batch_size"
//! key = "optimizer.batch_size"  # the run-spec key set to each value (optional: {name} templates)
//! values = [32, 2000]
//!
//! [[measure]]                   # measurements by the runner (the trainer never calls probes)
//! probe = "hessian"             # loss | hessian | trace | sharpness | representation-rank | weight-rank
//! at = "final"                  # init | final | every
//! every = 0
//! split = "train"
//! samples = 1000
//! options = { k = 1 }
//!
//! [verdict]
//! statistic = "ratio"           # ratio (largest / smallest knob value, paired by seed) | spearman
//! metric = "hessian/top_eigenvalue"
//! knob = "batch_size"
//! group = ""                    # optional axis: the rule must hold in every group
//! direction = "greater"         # the effect expected: greater / less than the threshold
//! threshold = 2.0
//!
//! [quick]                       # --quick: fewer seeds, smaller budgets
//! seeds = 2
//! set = ["budget.epochs=3"]
//! ```

use crate::error::StudyError;
use serde::{Deserialize, Serialize};

/// One axis of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisSpec {
    /// Name used in templates (`{name}`), plans, verdicts and figures.
    pub name: String,
    /// Dotted run-spec key set to each value; without it the axis only fills templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub values: Vec<toml::Value>,
}

/// When a measurement is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum At {
    Init,
    #[default]
    Final,
    /// Every `every` steps, plus init and final.
    Every,
}

/// A measurement of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureSpec {
    pub probe: String,
    /// The probe name written to metrics.jsonl (default: `probe`).
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub at: At,
    #[serde(default)]
    pub every: u64,
    #[serde(default = "default_split")]
    pub split: String,
    #[serde(default = "default_samples")]
    pub samples: usize,
    #[serde(default = "default_samples")]
    pub batch_size: usize,
    #[serde(default)]
    pub options: toml::Table,
}

fn default_split() -> String {
    "train".into()
}
fn default_samples() -> usize {
    1000
}

/// The statistic of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Statistic {
    /// Geometric mean over seeds of metric(largest knob value) / metric(smallest knob value).
    Ratio,
    /// Spearman rank correlation between knob value and metric over all runs.
    Spearman,
}

/// The direction the claim expects relative to the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Greater,
    Less,
}

/// The claim's statistic and decision rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictSpec {
    pub statistic: Statistic,
    /// `probe/name` of a measurement (its last value in each run).
    pub metric: String,
    /// The axis the statistic is taken over (numeric values).
    pub knob: String,
    /// An axis whose every value must satisfy the rule separately (empty = none).
    #[serde(default)]
    pub group: String,
    pub direction: Direction,
    pub threshold: f64,
    #[serde(default = "default_level")]
    pub level: f64,
    #[serde(default = "default_resamples")]
    pub resamples: usize,
    #[serde(default)]
    pub description: String,
}

fn default_level() -> f64 {
    0.95
}
fn default_resamples() -> usize {
    2000
}

/// A figure of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureSpec {
    pub name: String,
    /// `final_vs_knob` or `over_training`.
    pub kind: String,
    pub knob: String,
    /// `probe/name`.
    pub metric: String,
    #[serde(default)]
    pub log_x: bool,
    #[serde(default)]
    pub log_y: bool,
}

/// Smaller budgets for `--quick`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct QuickSpec {
    /// Keep only the first `seeds` seeds.
    #[serde(default)]
    pub seeds: Option<usize>,
    /// Run-spec overrides (`key=value`, as `sgdlab train --set`).
    #[serde(default)]
    pub set: Vec<String>,
    /// Measurement overrides: samples per measurement.
    #[serde(default)]
    pub samples: Option<usize>,
    /// Replace the values of named axes.
    #[serde(default)]
    pub axes: toml::Table,
}

/// A study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySpec {
    pub name: String,
    pub title: String,
    pub section: String,
    pub claim: String,
    pub seeds: Vec<u64>,
    pub base: toml::Table,
    #[serde(default)]
    pub axes: Vec<AxisSpec>,
    /// Pair the axes' values up (all lists equally long) instead of taking their grid.
    #[serde(default)]
    pub zip: bool,
    #[serde(default)]
    pub measure: Vec<MeasureSpec>,
    pub verdict: VerdictSpec,
    #[serde(default)]
    pub figures: Vec<FigureSpec>,
    #[serde(default)]
    pub quick: QuickSpec,
    #[serde(default)]
    pub notes: Vec<String>,
}

impl StudySpec {
    /// Parses and checks a study spec; `file` names the source in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, StudyError> {
        let spec: StudySpec = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            StudyError::Spec(format!(
                "{file}{}: {}",
                line.map(|l| format!(":{l}")).unwrap_or_default(),
                e.message().replace('\n', " ")
            ))
        })?;
        spec.check(file)?;
        Ok(spec)
    }

    fn check(&self, file: &str) -> Result<(), StudyError> {
        let err = |m: String| Err(StudyError::Spec(format!("{file}: {m}")));
        if self.seeds.is_empty() {
            return err("seeds must not be empty".into());
        }
        let names: Vec<&str> = self.axes.iter().map(|a| a.name.as_str()).collect();
        for a in &self.axes {
            if a.values.is_empty() {
                return err(format!("axis '{}' has no values", a.name));
            }
            if names.iter().filter(|n| **n == a.name).count() > 1 {
                return err(format!("axis '{}' is given twice", a.name));
            }
        }
        if self.zip && self.axes.windows(2).any(|w| w[0].values.len() != w[1].values.len()) {
            return err("zip = true needs axes with equally many values".into());
        }
        if !names.contains(&self.verdict.knob.as_str()) {
            return err(format!("verdict.knob '{}' is not an axis (axes: {})", self.verdict.knob, names.join(", ")));
        }
        if !self.verdict.group.is_empty() && !names.contains(&self.verdict.group.as_str()) {
            return err(format!("verdict.group '{}' is not an axis", self.verdict.group));
        }
        if !self.verdict.metric.contains('/') {
            return err(format!("verdict.metric '{}' must be probe/name", self.verdict.metric));
        }
        for f in &self.figures {
            if !matches!(f.kind.as_str(), "final_vs_knob" | "over_training") {
                return err(format!("figure '{}': kind must be final_vs_knob or over_training", f.name));
            }
            if !names.contains(&f.knob.as_str()) {
                return err(format!("figure '{}': knob '{}' is not an axis", f.name, f.knob));
            }
        }
        for m in &self.measure {
            crate::measure::check_probe(m)
                .map_err(|e| StudyError::Spec(format!("{file}: measure '{}': {e}", m.probe)))?;
        }
        Ok(())
    }

    /// The resolved spec as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a StudySpec always serialises")
    }
}
