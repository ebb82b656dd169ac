//! A study's progress from its records alone: how many planned runs are completed, diverged,
//! failed or missing (no record yet, or a record left `running` or `interrupted`), and which are
//! missing; and the verdict of whatever has finished, marked incomplete when runs are missing.

use crate::error::StudyError;
use crate::plan::Plan;
use crate::spec::StudySpec;
use crate::verdict::compute_verdict;
use serde::Serialize;
use serde_json::{Value, json};
use sgdlab_train::{RunContext, RunStatus, read_record};
use std::path::Path;

/// Why a planned run has not finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum Missing {
    /// No `record.json`: the run never started.
    #[serde(rename = "no record")]
    NoRecord,
    /// Left `running`: running now, or its process was killed (it resumes from its latest
    /// checkpoint when run again).
    Running { step: u64, total: u64, segments: u32 },
    /// Stopped after writing a checkpoint; resumes when run again.
    Interrupted { step: u64, total: u64, segments: u32 },
}

/// A planned run that has not finished.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingRun {
    pub id: String,
    /// Its index in the plan.
    pub index: usize,
    #[serde(flatten)]
    pub missing: Missing,
}

/// Counts of a study's planned runs by how they stand.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyStatus {
    pub study: String,
    pub planned: usize,
    pub completed: usize,
    pub diverged: usize,
    pub failed: usize,
    /// Runs not finished, in plan order.
    pub missing: Vec<MissingRun>,
}

impl StudyStatus {
    /// Whether every planned run has finished (completed, diverged or failed).
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// One line: `name: N planned, N completed, N diverged, N failed, N missing`.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} planned, {} completed, {} diverged, {} failed, {} missing",
            self.study,
            self.planned,
            self.completed,
            self.diverged,
            self.failed,
            self.missing.len()
        )
    }
}

/// Reads the record of every planned run of `plan` in the study directory `dir`.
pub fn study_status(dir: &Path, plan: &Plan) -> Result<StudyStatus, StudyError> {
    let mut st = StudyStatus {
        study: plan.study.clone(),
        planned: plan.runs.len(),
        completed: 0,
        diverged: 0,
        failed: 0,
        missing: Vec::new(),
    };
    for r in &plan.runs {
        let rec = read_record(&dir.join("runs").join(&r.id))?;
        let missing = match rec {
            None => Some(Missing::NoRecord),
            Some(rec) => {
                let (step, total, segments) = (rec.steps_completed, rec.total_steps, rec.segments);
                match rec.status {
                    RunStatus::Completed => {
                        st.completed += 1;
                        None
                    }
                    RunStatus::Diverged => {
                        st.diverged += 1;
                        None
                    }
                    RunStatus::Failed => {
                        st.failed += 1;
                        None
                    }
                    RunStatus::Running => Some(Missing::Running { step, total, segments }),
                    RunStatus::Interrupted => Some(Missing::Interrupted { step, total, segments }),
                }
            }
        };
        if let Some(missing) = missing {
            st.missing.push(MissingRun { id: r.id.clone(), index: r.index, missing });
        }
    }
    Ok(st)
}

/// Computes the verdict from the finished runs (as [`compute_verdict`]) and, when runs are
/// missing, marks it incomplete: `verdict.json` then carries
/// `"incomplete": {"missing": N, "planned": M, "ids": [...]}`. A complete study's `verdict.json`
/// is exactly the one `compute_verdict` writes.
pub fn verdict_from_records(
    dir: &Path,
    spec: &StudySpec,
    plan: &Plan,
    context: &RunContext,
) -> Result<(Value, StudyStatus), StudyError> {
    let mut verdict = compute_verdict(dir, spec, plan, context)?;
    let status = study_status(dir, plan)?;
    if !status.is_complete() {
        let ids: Vec<&str> = status.missing.iter().map(|m| m.id.as_str()).collect();
        verdict["incomplete"] = json!({"missing": ids.len(), "planned": status.planned, "ids": ids});
        let text = serde_json::to_string_pretty(&verdict).expect("serialises");
        sgdlab_train::record::write_text_atomic(&dir.join("verdict.json"), &text)?;
    }
    Ok((verdict, status))
}
