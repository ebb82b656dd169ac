//! The records of a study, typed once and shared by the runner, the verdict, reports and
//! readers: `plan.json` ([`PlanRecord`]) and `verdict.json` ([`VerdictRecord`]). A run's own
//! records (`record.json`, `metrics.jsonl`) are [`sgdlab_train::RunRecord`] and
//! [`sgdlab_train::MetricRecord`]. `docs/records.md` describes every field.

use crate::error::StudyError;
use crate::spec::{ClaimSpec, DecisionSpec, FigureSpec, MeasureSpec, Provenance, StatisticSpec};
use crate::value::ValueSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// A measurement as planned: the spec with every probe option resolved, and the metrics it
/// writes (`label/name`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedMeasure {
    pub spec: MeasureSpec,
    /// The probe's options with every default written out.
    pub resolved_options: serde_json::Value,
    /// The metrics it writes, as `label/name`.
    pub metrics: Vec<String>,
}

/// One planned run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRun {
    /// Content hash of the resolved run spec and the measurement schedule; also the name of its
    /// directory under `runs/`.
    pub id: String,
    pub index: usize,
    pub seed: u64,
    /// Axis name -> value, for the axes of the sweeps the run belongs to.
    pub axes: BTreeMap<String, serde_json::Value>,
    /// The sweep blocks that plan this run (a base point shared by one-at-a-time sweeps belongs
    /// to several).
    pub sweeps: Vec<String>,
    /// The resolved run spec (TOML).
    pub run_spec: String,
    /// The run whose final parameters this run starts from (its sweep has `from`); the runner
    /// runs it first. Its `init.from` is `runs/<from>/final.safetensors` (relative to the study
    /// directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// `plan.json`: the frozen plan of a study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub study: String,
    pub title: String,
    pub section: String,
    /// Content hash of the resolved study spec (after overrides).
    pub spec_hash: String,
    pub quick: bool,
    /// The overrides applied to the study spec (quick mode's first, then `--set`/`--seeds`).
    pub overrides: Vec<String>,
    /// Every axis of every sweep.
    pub axes: Vec<String>,
    /// The sweep blocks, in order.
    pub sweeps: Vec<String>,
    pub measure: Vec<PlannedMeasure>,
    pub runs: Vec<PlannedRun>,
}

/// How a run stands, from its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Completed,
    /// A non-finite loss or parameter appeared (at `step`).
    Diverged,
    /// An error ended it (`message`).
    Failed,
    /// Stopped by a signal; resumable.
    Interrupted,
    /// A record says running: in progress elsewhere, or a crash.
    Running,
    /// No record yet.
    Missing,
}

impl RunState {
    /// From a run record's status.
    pub fn from_status(s: sgdlab_train::RunStatus) -> Self {
        use sgdlab_train::RunStatus as S;
        match s {
            S::Running => RunState::Running,
            S::Completed => RunState::Completed,
            S::Diverged => RunState::Diverged,
            S::Interrupted => RunState::Interrupted,
            S::Failed => RunState::Failed,
        }
    }

    /// Whether the run ended (its verdict inputs are final).
    pub fn is_final(self) -> bool {
        matches!(self, RunState::Completed | RunState::Diverged | RunState::Failed)
    }

    /// The word used in records and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Completed => "completed",
            RunState::Diverged => "diverged",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
            RunState::Running => "running",
            RunState::Missing => "missing",
        }
    }
}

/// A run as the verdict saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: String,
    pub seed: u64,
    pub axes: BTreeMap<String, serde_json::Value>,
    pub sweeps: Vec<String>,
    pub status: RunState,
    /// Steps completed, or the step at which it diverged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Counts of runs by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub planned: usize,
    pub completed: usize,
    pub diverged: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub running: usize,
    pub missing: usize,
}

impl RunCounts {
    /// Counts the states of `runs`.
    pub fn of(runs: &[RunSummary]) -> Self {
        let mut c = RunCounts { planned: runs.len(), ..Default::default() };
        for r in runs {
            *match r.status {
                RunState::Completed => &mut c.completed,
                RunState::Diverged => &mut c.diverged,
                RunState::Failed => &mut c.failed,
                RunState::Interrupted => &mut c.interrupted,
                RunState::Running => &mut c.running,
                RunState::Missing => &mut c.missing,
            } += 1;
        }
        c
    }
}

/// The outcome of a claim, or of a study (which may be partly reproduced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "reproduced")]
    Reproduced,
    /// Some claims reproduced, some not (studies only).
    #[serde(rename = "partly reproduced")]
    PartlyReproduced,
    #[serde(rename = "not reproduced")]
    NotReproduced,
    #[serde(rename = "inconclusive")]
    Inconclusive,
}

impl Verdict {
    /// The words written in records and shown on badges.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::PartlyReproduced => "partly reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// A study's verdict from its claims': reproduced when all are; not reproduced when some are
    /// not and none is reproduced; partly reproduced when some are and some are not; otherwise
    /// (some undecided) inconclusive.
    pub fn summarise(claims: &[Verdict]) -> Verdict {
        let yes = claims.iter().filter(|v| **v == Verdict::Reproduced).count();
        let no = claims.iter().filter(|v| **v == Verdict::NotReproduced).count();
        if !claims.is_empty() && yes == claims.len() {
            Verdict::Reproduced
        } else if no > 0 && yes == 0 {
            Verdict::NotReproduced
        } else if no > 0 {
            Verdict::PartlyReproduced
        } else {
            Verdict::Inconclusive
        }
    }
}

/// An effect with its confidence interval (all finite).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectRecord {
    pub value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub level: f64,
    /// Bootstrap units (seeds) the interval resamples.
    pub seeds: usize,
    /// Runs the statistic used.
    pub runs: usize,
    pub method: String,
}

/// The claim decided within one value of its `within` axis (or the whole population).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The `within` axis value (`null` without one).
    pub group: Option<serde_json::Value>,
    pub verdict: Verdict,
    /// `null` when no effect can be formed; `reason` says why.
    pub effect: Option<EffectRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A run the claim could not use, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExcludedRun {
    pub id: String,
    pub status: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    pub reason: String,
}

/// A run's value of the claim (`null` when not finite).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRunValue {
    pub id: String,
    pub value: Option<f64>,
}

/// One decided claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    pub id: String,
    pub statement: String,
    pub expected: String,
    pub provenance: Provenance,
    pub source: String,
    /// The per-run value, in words and as specified.
    pub value: String,
    pub value_spec: ValueSpec,
    /// The statistic, in words and as specified.
    pub statistic: String,
    pub statistic_spec: StatisticSpec,
    pub decision: DecisionSpec,
    /// The decision rule in words.
    pub decision_rule: String,
    pub within: Option<String>,
    pub verdict: Verdict,
    /// The headline effect: the group closest to failing the rule (`null` when none could be
    /// formed).
    pub effect: Option<EffectRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub groups: Vec<GroupRecord>,
    /// Runs of the population with a value.
    pub runs_used: usize,
    pub excluded: Vec<ExcludedRun>,
    pub per_run: Vec<ClaimRunValue>,
}

impl ClaimRecord {
    /// The parts of a record that come from the claim's spec alone.
    pub fn from_spec(c: &ClaimSpec) -> Self {
        ClaimRecord {
            id: c.id.clone(),
            statement: c.statement.clone(),
            expected: c.expected.clone(),
            provenance: c.provenance,
            source: c.source.clone(),
            value: c.value.describe(),
            value_spec: c.value.clone(),
            statistic: crate::statistic::describe(&c.statistic),
            statistic_spec: c.statistic.clone(),
            decision: c.decision.clone(),
            decision_rule: format!(
                "reproduced if the {}% interval {}{}; not reproduced if it {}{}; otherwise inconclusive",
                crate::spec::num(100.0 * c.level),
                c.decision.describe(),
                c.within.as_ref().map(|w| format!(" for every value of {w}")).unwrap_or_default(),
                c.decision.describe_opposite(),
                c.within.as_ref().map(|w| format!(" for some value of {w}")).unwrap_or_default(),
            ),
            within: c.within.clone(),
            verdict: Verdict::Inconclusive,
            effect: None,
            reason: None,
            groups: Vec::new(),
            runs_used: 0,
            excluded: Vec::new(),
            per_run: Vec::new(),
        }
    }
}

/// `verdict.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictRecord {
    pub study: String,
    pub title: String,
    pub section: String,
    pub survey_claim: String,
    /// The study's verdict, summarising its claims' ([`Verdict::summarise`]).
    pub verdict: Verdict,
    /// "2 of 3 claims reproduced".
    pub summary: String,
    /// Every planned run has ended (completed, diverged or failed); a verdict over an
    /// incomplete study says so.
    pub complete: bool,
    pub claims: Vec<ClaimRecord>,
    pub runs: RunCounts,
    pub per_run: Vec<RunSummary>,
    pub figures: Vec<FigureSpec>,
    pub notes: Vec<String>,
    pub quick: bool,
    pub overrides: Vec<String>,
    /// Why quick mode still decides the claims (empty in full mode).
    pub quick_reason: String,
    pub spec_hash: String,
    pub sgdlab_version: String,
    pub git_revision: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StudyError> {
    let t = std::fs::read_to_string(path).map_err(|e| StudyError::io(path, e))?;
    serde_json::from_str(&t).map_err(|e| StudyError::io(path, format!("malformed: {e}")))
}

/// Reads `dir/plan.json`.
pub fn read_plan(dir: &Path) -> Result<PlanRecord, StudyError> {
    read_json(&dir.join("plan.json"))
}

/// Reads `dir/verdict.json`.
pub fn read_verdict(dir: &Path) -> Result<VerdictRecord, StudyError> {
    read_json(&dir.join("verdict.json"))
}

/// Writes a record as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StudyError> {
    let text = serde_json::to_string_pretty(value).expect("records serialise");
    Ok(sgdlab_train::record::write_text_atomic(path, &text)?)
}
