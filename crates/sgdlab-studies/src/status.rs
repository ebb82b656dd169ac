//! A study's progress from its records alone: how many planned runs are completed, diverged,
//! failed or not finished (no record yet, or a record left `running` or `interrupted`), and which
//! runs those are.

use crate::error::StudyError;
use crate::records::{PlanRecord, RunCounts, RunState, RunSummary};
use serde::Serialize;
use sgdlab_train::read_record;
use std::path::Path;

/// A planned run that has not finished.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnfinishedRun {
    pub id: String,
    /// Its index in the plan.
    pub index: usize,
    pub status: RunState,
    /// Steps completed and planned (no record: 0 of 0).
    pub step: u64,
    pub total: u64,
    /// Processes that trained it so far.
    pub segments: u32,
}

impl UnfinishedRun {
    /// How it stands, in words.
    pub fn describe(&self) -> String {
        match self.status {
            RunState::Missing => "not started".into(),
            s => format!("{} at step {} of {}, segment {}", s.as_str(), self.step, self.total, self.segments),
        }
    }
}

/// Counts of a study's planned runs by state, and the unfinished ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyStatus {
    pub study: String,
    pub runs: RunCounts,
    /// Runs not finished, in plan order.
    pub unfinished: Vec<UnfinishedRun>,
}

impl StudyStatus {
    /// Whether every planned run has ended (completed, diverged or failed).
    pub fn is_complete(&self) -> bool {
        self.unfinished.is_empty()
    }

    /// One line: `name: N planned, N completed, N diverged, N failed, N not finished`.
    pub fn summary(&self) -> String {
        let c = &self.runs;
        format!(
            "{}: {} planned, {} completed, {} diverged, {} failed, {} not finished",
            self.study,
            c.planned,
            c.completed,
            c.diverged,
            c.failed,
            self.unfinished.len()
        )
    }
}

/// Reads the record of every planned run of `plan` in the study directory `dir`.
pub fn study_status(dir: &Path, plan: &PlanRecord) -> Result<StudyStatus, StudyError> {
    let mut summaries = Vec::with_capacity(plan.runs.len());
    let mut unfinished = Vec::new();
    for r in &plan.runs {
        let rec = read_record(&dir.join("runs").join(&r.id))?;
        let status = rec.as_ref().map_or(RunState::Missing, |x| RunState::from_status(x.status));
        if !status.is_final() {
            unfinished.push(UnfinishedRun {
                id: r.id.clone(),
                index: r.index,
                status,
                step: rec.as_ref().map_or(0, |x| x.steps_completed),
                total: rec.as_ref().map_or(0, |x| x.total_steps),
                segments: rec.as_ref().map_or(0, |x| x.segments),
            });
        }
        summaries.push(RunSummary {
            id: r.id.clone(),
            seed: r.seed,
            axes: r.axes.clone(),
            sweeps: r.sweeps.clone(),
            status,
            step: None,
            message: None,
        });
    }
    Ok(StudyStatus { study: plan.study.clone(), runs: RunCounts::of(&summaries), unfinished })
}
