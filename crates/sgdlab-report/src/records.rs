//! The files a report reads, as `docs/records.md` defines them: a study's `plan.json` and
//! `verdict.json`, and each run's `record.json` and `metrics.jsonl`.
//!
//! Fields the document marks optional, and lists that may be empty (`notes`, `figures`,
//! `per_run`, `excluded`), default when absent; every other documented field is required, so a
//! file written to an older or different format fails with serde's message naming the field.
//! Unknown fields are ignored, so the runner may add fields without breaking old reports.

use crate::ReportError;
use serde::Deserialize;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `plan.json`: the frozen list of runs of a study.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlanRecord {
    pub study: String,
    pub title: String,
    pub section: String,
    pub spec_hash: String,
    pub quick: bool,
    /// The knobs the study sweeps (usually one).
    pub knobs: Vec<String>,
    pub runs: Vec<PlannedRunRecord>,
}

/// One planned run of `plan.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlannedRunRecord {
    /// Content hash of the resolved run spec; also the name of its directory under `runs/`.
    pub id: String,
    #[serde(default)]
    pub index: usize,
    pub seed: u64,
    /// Knob name -> value (a number, string or boolean as the study spec wrote it).
    pub knobs: BTreeMap<String, serde_json::Value>,
    /// The resolved run spec (TOML); not shown in reports.
    #[serde(default)]
    pub run_spec: String,
}

/// The outcome of a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Verdict {
    #[serde(rename = "reproduced")]
    Reproduced,
    #[serde(rename = "not reproduced")]
    NotReproduced,
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Verdict {
    /// The words written in `verdict.json` and shown on the badge.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// CSS class of the badge (green, red, grey).
    pub(crate) fn css_class(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not-reproduced",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// A metric: rows of `metrics.jsonl` with this `probe` and `name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct MetricRef {
    pub probe: String,
    pub name: String,
}

impl std::fmt::Display for MetricRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.probe, self.name)
    }
}

/// The statistic a verdict is decided on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatisticRecord {
    pub name: String,
    pub metric: MetricRef,
    #[serde(default)]
    pub description: String,
}

/// The effect size with its confidence interval (`null` values are shown as missing).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EffectRecord {
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Confidence level, e.g. 0.95.
    pub level: f64,
    pub method: String,
    /// The group this headline effect belongs to, when the verdict is decided per group
    /// (not in `docs/records.md`; written by the studies runner).
    #[serde(default)]
    pub group: Option<serde_json::Value>,
}

/// The effect of one group (`verdict.json` `groups`, not in `docs/records.md`; every field
/// optional so that a change there cannot break reports).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct GroupEffectRecord {
    #[serde(default)]
    pub group: Option<serde_json::Value>,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub ci_low: Option<f64>,
    #[serde(default)]
    pub ci_high: Option<f64>,
    #[serde(default)]
    pub seeds: Option<usize>,
    #[serde(default)]
    pub verdict: Option<String>,
}

/// How many runs the verdict used, and which it excluded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunCountsRecord {
    pub planned: usize,
    pub used: usize,
    #[serde(default)]
    pub excluded: Vec<ExcludedRunRecord>,
}

/// A run the verdict left out, with its status and the step where it stopped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExcludedRunRecord {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub step: Option<u64>,
    #[serde(default)]
    pub message: Option<String>,
    /// Why a completed run was left out (e.g. the metric was never measured).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One row of `per_run`: a run's knobs, status and the final metrics the verdict used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PerRunRecord {
    pub id: String,
    pub seed: u64,
    pub knobs: BTreeMap<String, serde_json::Value>,
    pub status: String,
    /// `probe/name` -> value (`null` when not finite or not measured).
    #[serde(default)]
    pub metrics: BTreeMap<String, Option<f64>>,
}

/// What a figure plots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureKind {
    /// Per knob value: each run's last value of the metric, mean over seeds with a min-max band.
    FinalVsKnob,
    /// The metric against `step`, one line per knob value (mean over seeds) with a min-max band.
    OverTraining,
}

/// A figure of `verdict.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FigureSpec {
    /// File stem of `figures/<name>.svg` and `.csv`: letters, digits, `_`, `-`, `.`.
    pub name: String,
    pub kind: FigureKind,
    pub knob: String,
    pub metric: MetricRef,
    #[serde(default)]
    pub log_x: bool,
    #[serde(default)]
    pub log_y: bool,
}

/// `verdict.json`: the verdict of a study with everything it rests on.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VerdictRecord {
    pub study: String,
    pub title: String,
    pub section: String,
    pub claim: String,
    pub verdict: Verdict,
    pub statistic: StatisticRecord,
    /// `null` when no effect could be computed (e.g. no usable run).
    pub effect: Option<EffectRecord>,
    /// Per-group effects when the verdict is decided per group (optional).
    #[serde(default)]
    pub groups: Vec<GroupEffectRecord>,
    pub decision_rule: String,
    pub runs: RunCountsRecord,
    #[serde(default)]
    pub per_run: Vec<PerRunRecord>,
    #[serde(default)]
    pub figures: Vec<FigureSpec>,
    #[serde(default)]
    pub notes: Vec<String>,
    pub quick: bool,
    pub spec_hash: String,
    pub sgdlab_version: String,
    pub git_revision: String,
    /// Present when planned runs had not finished when the verdict was computed.
    #[serde(default)]
    pub incomplete: Option<IncompleteRecord>,
}

/// `verdict.json` `incomplete`: the verdict uses the finished runs only.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IncompleteRecord {
    /// Planned runs not finished (no record, or left running or interrupted).
    pub missing: usize,
    pub planned: usize,
    #[serde(default)]
    pub ids: Vec<String>,
}

/// How a run ended (`record.json` `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Completed,
    Diverged,
    Interrupted,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Diverged => "diverged",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Failed => "failed",
        }
    }
}

/// `record.json` of a run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunRecord {
    pub status: RunStatus,
    #[serde(default)]
    pub diverged_at_step: Option<u64>,
    #[serde(default)]
    pub message: Option<String>,
    pub seed: u64,
    pub spec_hash: String,
    pub steps_completed: u64,
    pub total_steps: u64,
    #[serde(default)]
    pub dtype: String,
    pub sgdlab_version: String,
    pub git_revision: String,
    #[serde(default)]
    pub threads: usize,
    #[serde(default)]
    pub wall_time_s: f64,
    /// `train_loss`, `train_accuracy`, `test_loss`, `test_accuracy` (`null` when not finite).
    #[serde(default)]
    pub final_metrics: BTreeMap<String, Option<f64>>,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MetricRow {
    pub step: u64,
    #[serde(default)]
    pub epoch: Option<f64>,
    pub probe: String,
    pub name: String,
    /// `null` when not finite.
    pub value: Option<f64>,
}

/// A knob value with a total order: numbers (numerically) before text (lexicographically);
/// booleans, `null` and composite values are compared as their JSON text.
#[derive(Debug, Clone)]
pub(crate) enum KnobValue {
    Number { value: f64, text: String },
    Text(String),
}

impl KnobValue {
    pub(crate) fn from_json(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Number(n) => match n.as_f64() {
                Some(value) if value.is_finite() => KnobValue::Number { value, text: n.to_string() },
                _ => KnobValue::Text(n.to_string()),
            },
            serde_json::Value::String(s) => KnobValue::Text(s.clone()),
            other => KnobValue::Text(other.to_string()),
        }
    }

    /// The value as written in the plan (numbers as JSON wrote them).
    pub(crate) fn text(&self) -> &str {
        match self {
            KnobValue::Number { text, .. } => text,
            KnobValue::Text(t) => t,
        }
    }

    pub(crate) fn number(&self) -> Option<f64> {
        match self {
            KnobValue::Number { value, .. } => Some(*value),
            KnobValue::Text(_) => None,
        }
    }
}

impl PartialEq for KnobValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for KnobValue {}

impl PartialOrd for KnobValue {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KnobValue {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (KnobValue::Number { value: a, .. }, KnobValue::Number { value: b, .. }) => a.total_cmp(b),
            (KnobValue::Number { .. }, KnobValue::Text(_)) => Ordering::Less,
            (KnobValue::Text(_), KnobValue::Number { .. }) => Ordering::Greater,
            (KnobValue::Text(a), KnobValue::Text(b)) => a.cmp(b),
        }
    }
}

/// Reads a whole file; a missing file is [`ReportError::Missing`].
pub(crate) fn read_text(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ReportError::Missing { path: path.to_path_buf() }
        } else {
            ReportError::Read { path: path.to_path_buf(), source: e }
        }
    })
}

/// Reads and parses a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ReportError> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| ReportError::Json { path: path.to_path_buf(), source: e })
}

/// Reads `dir/plan.json`.
pub fn read_plan(study_dir: &Path) -> Result<PlanRecord, ReportError> {
    read_json(&study_dir.join("plan.json"))
}

/// Reads `dir/verdict.json`.
pub fn read_verdict(study_dir: &Path) -> Result<VerdictRecord, ReportError> {
    read_json(&study_dir.join("verdict.json"))
}

/// Reads `run_dir/record.json`; `None` when the run never started (no file).
pub fn read_run_record(run_dir: &Path) -> Result<Option<RunRecord>, ReportError> {
    match read_json(&run_dir.join("record.json")) {
        Ok(r) => Ok(Some(r)),
        Err(ReportError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the rows of `run_dir/metrics.jsonl` whose metric `keep` accepts; `None` when the file
/// does not exist. Blank lines are skipped. A last line that does not end in a newline and does
/// not parse is a write torn by a crash and is dropped; any other malformed line is an error
/// naming the file and the line.
pub fn read_metric_rows(
    run_dir: &Path,
    keep: impl Fn(&str, &str) -> bool,
) -> Result<Option<Vec<MetricRow>>, ReportError> {
    let path: PathBuf = run_dir.join("metrics.jsonl");
    let text = match read_text(&path) {
        Ok(t) => t,
        Err(ReportError::Missing { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let torn_tail = !text.is_empty() && !text.ends_with('\n');
    let n_lines = text.lines().count();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<MetricRow>(line) {
            Ok(row) => {
                if keep(&row.probe, &row.name) {
                    rows.push(row);
                }
            }
            Err(_) if torn_tail && i + 1 == n_lines => {}
            Err(e) => return Err(ReportError::JsonLine { path: path.clone(), line: i + 1, source: e }),
        }
    }
    Ok(Some(rows))
}

/// Checks that a name from a record can be used as a file or directory name inside the study.
pub(crate) fn check_file_stem(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 200
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}
