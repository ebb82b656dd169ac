//! Judging a run directory against its own files.
//!
//! A record that says `completed` is trusted only if the files agree with it: `spec.toml` hashes
//! to the record's `spec_hash`; `metrics.jsonl` parses line by line, is in step order, has the
//! record's row count and ends at the record's last step; `final.safetensors` is present,
//! passes its checksum, loads as the spec's architecture and says the same step. A record that
//! fails any check is [`RunState::Inconsistent`] and the run must be redone (the trainer does so
//! itself when asked to resume it; a study runner calls [`inspect_run`] for the same decision).

use crate::record::{RunRecord, RunStatus, content_hash, read_metrics, read_record};
use crate::spec::RunSpec;
use std::path::Path;

/// What a run directory holds, judged against its files.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    /// No `record.json`: the run never started.
    Missing,
    /// Running (or crashed), interrupted or failed: resume it.
    Unfinished(RunRecord),
    /// Completed or diverged, and every file agrees with the record: nothing to do.
    Finished(RunRecord),
    /// The record cannot be read, or claims an end that its files contradict: redo the run from
    /// the start. `problem` is one line saying what disagrees.
    Inconsistent { record: Option<RunRecord>, problem: String },
}

impl RunState {
    /// Whether the run is done and its results can be used.
    pub fn is_finished(&self) -> bool {
        matches!(self, RunState::Finished(_))
    }
}

/// Reads and checks a run directory (see the module documentation). Never fails: an unreadable
/// file makes the run [`RunState::Inconsistent`].
pub fn inspect_run(dir: &Path) -> RunState {
    let record = match read_record(dir) {
        Ok(None) => return RunState::Missing,
        Ok(Some(r)) => r,
        Err(e) => return RunState::Inconsistent { record: None, problem: e.to_string() },
    };
    match record.status {
        RunStatus::Running | RunStatus::Interrupted | RunStatus::Failed => RunState::Unfinished(record),
        RunStatus::Completed | RunStatus::Diverged => match check_finished(dir, &record) {
            Ok(()) => RunState::Finished(record),
            Err(problem) => RunState::Inconsistent { record: Some(record), problem },
        },
    }
}

fn check_finished(dir: &Path, record: &RunRecord) -> Result<(), String> {
    let spec_path = dir.join("spec.toml");
    let spec_text = std::fs::read_to_string(&spec_path).map_err(|e| format!("{}: {e}", spec_path.display()))?;
    if content_hash(&spec_text) != record.spec_hash {
        return Err(format!("{} does not hash to the record's spec_hash {}", spec_path.display(), record.spec_hash));
    }
    let metrics = read_metrics(dir).map_err(|e| e.to_string())?;
    let path = dir.join("metrics.jsonl");
    if let Some(n) = record.metric_rows
        && n != metrics.len() as u64
    {
        return Err(format!("{} has {} rows, the record says {n}", path.display(), metrics.len()));
    }
    if let Some(w) = metrics.windows(2).position(|w| w[1].step < w[0].step) {
        return Err(format!(
            "{} line {}: step {} after step {} (two writers?)",
            path.display(),
            w + 2,
            metrics[w + 1].step,
            metrics[w].step
        ));
    }
    let want_last = match record.status {
        RunStatus::Diverged => record.diverged_at_step.unwrap_or(record.steps_completed),
        _ => record.steps_completed,
    };
    let last = metrics.last().map(|m| m.step);
    if last != Some(want_last) {
        return Err(format!(
            "{} ends at step {}, the record at step {want_last}",
            path.display(),
            last.map_or_else(|| "none (it is empty)".to_string(), |s| s.to_string())
        ));
    }
    if record.status == RunStatus::Completed {
        check_final(dir, record, &spec_text)?;
    }
    Ok(())
}

fn check_final(dir: &Path, record: &RunRecord, spec_text: &str) -> Result<(), String> {
    let spec = RunSpec::from_toml(spec_text, "spec.toml").map_err(|e| e.to_string())?;
    let path = dir.join("final.safetensors");
    let ck = sgdlab_nn::load_checkpoint::<f64>(&path, Some(&spec.model)).map_err(|e| e.to_string())?;
    let step = ck.metadata.get("step").and_then(|s| s.parse::<u64>().ok());
    if step != Some(record.steps_completed) {
        return Err(format!(
            "{} is from step {}, the record says {}",
            path.display(),
            step.map_or_else(|| "unknown".to_string(), |s| s.to_string()),
            record.steps_completed
        ));
    }
    if ck.metadata.get("spec_hash") != Some(&record.spec_hash) {
        return Err(format!("{} belongs to another spec", path.display()));
    }
    Ok(())
}
