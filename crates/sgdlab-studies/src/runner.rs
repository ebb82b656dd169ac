//! The study runner: freezes the plan, runs the runs in parallel (each single-threaded), skips
//! completed ones on resume, records diverged or failed runs and goes on, then computes the
//! verdict. Results do not depend on the number of parallel jobs: every run is deterministic on
//! its own and shares nothing with the others but read-only data.

use crate::error::StudyError;
use crate::measure::StudyHook;
use crate::plan::Plan;
use crate::spec::StudySpec;
use crate::verdict::compute_verdict;
use sgdlab_data::Dataset;
use sgdlab_train::record::write_text_atomic;
use sgdlab_train::{RunContext, RunOptions, RunRecord, RunSpec, RunStatus, read_record, train};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How to run a study.
pub struct RunnerOptions<'a> {
    /// Runs in parallel (each single-threaded).
    pub jobs: usize,
    pub quick: bool,
    pub stop: Option<Arc<AtomicBool>>,
    pub context: RunContext,
    /// Called after each finished run: (runs finished, runs in the plan, seconds elapsed).
    pub progress: Option<&'a (dyn Fn(usize, usize, f64) + Sync)>,
}

/// How a study run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StudyOutcome {
    /// All runs ended (completed, diverged or failed) and the verdict is written.
    Finished { verdict: serde_json::Value, dir: PathBuf },
    /// Stopped by a stop request; run again to resume.
    Interrupted { finished: usize, planned: usize },
}

/// Reads a frozen plan.
pub fn read_plan(dir: &Path) -> Result<Plan, StudyError> {
    let p = dir.join("plan.json");
    let t = std::fs::read_to_string(&p).map_err(|e| StudyError::io(&p, e))?;
    serde_json::from_str(&t).map_err(|e| StudyError::io(&p, format!("malformed plan: {e}")))
}

fn finished(rec: &Option<RunRecord>) -> bool {
    rec.as_ref().is_some_and(|r| matches!(r.status, RunStatus::Completed | RunStatus::Diverged | RunStatus::Failed))
}

/// Which runs of a plan one worker runs (a Slurm array task, say): those whose plan index is
/// `index` modulo `count`. Every run belongs to exactly one share of a given `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskShare {
    pub index: usize,
    pub count: usize,
}

impl TaskShare {
    /// Whether the run at `run_index` of the plan is in this share (a `count` of 0 counts as 1).
    pub fn includes(&self, run_index: usize) -> bool {
        run_index % self.count.max(1) == self.index
    }
}

/// What [`run_runs`] did over the runs it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunsOutcome {
    /// Runs of the share that are finished (completed, diverged or failed), including those
    /// finished before.
    pub finished: usize,
    /// Runs in the share.
    pub planned: usize,
}

/// Plans (or re-reads the frozen plan of) a study in `dir`, runs what is not finished, and
/// computes the verdict.
pub fn run_study(spec: &StudySpec, dir: &Path, opts: &RunnerOptions<'_>) -> Result<StudyOutcome, StudyError> {
    let plan = freeze_plan(spec, dir, opts.quick)?;
    let runs = run_runs(dir, &plan, opts, None)?;
    if runs.finished < runs.planned {
        return Ok(StudyOutcome::Interrupted { finished: runs.finished, planned: runs.planned });
    }
    let verdict = compute_verdict(dir, spec, &plan, &opts.context)?;
    Ok(StudyOutcome::Finished { verdict, dir: dir.to_path_buf() })
}

/// Expands `spec` and freezes its plan into `dir` (`plan.json`, `study.toml`), or checks that
/// the plan frozen there is the same; a directory holding another plan is refused.
pub fn freeze_plan(spec: &StudySpec, dir: &Path, quick: bool) -> Result<Plan, StudyError> {
    let plan = spec.plan(quick)?;
    std::fs::create_dir_all(dir.join("runs")).map_err(|e| StudyError::io(dir, e))?;
    let plan_path = dir.join("plan.json");
    if plan_path.exists() {
        let old = read_plan(dir)?;
        if old != plan {
            return Err(StudyError::io(
                dir,
                format!(
                    "holds a different plan of '{}' (spec or mode changed); use another --out directory",
                    old.study
                ),
            ));
        }
    } else {
        write_text_atomic(&dir.join("study.toml"), &spec.to_toml())?;
        write_text_atomic(&plan_path, &serde_json::to_string_pretty(&plan).expect("serialises"))?;
    }
    Ok(plan)
}

/// Runs the unfinished runs of a frozen plan in `dir` (those of `share` only, when given), in
/// parallel, each single-threaded; a stop request ends it early (each running run checkpoints).
/// Computes no verdict.
pub fn run_runs(
    dir: &Path,
    plan: &Plan,
    opts: &RunnerOptions<'_>,
    share: Option<TaskShare>,
) -> Result<RunsOutcome, StudyError> {
    std::fs::create_dir_all(dir.join("runs")).map_err(|e| StudyError::io(dir, e))?;
    let mine: Vec<usize> = (0..plan.runs.len()).filter(|&i| share.is_none_or(|s| s.includes(i))).collect();
    // Load each distinct dataset once; runs share it read-only.
    let mut datasets: HashMap<String, Arc<Dataset>> = HashMap::new();
    let mut specs = HashMap::with_capacity(mine.len());
    for &i in &mine {
        let r = &plan.runs[i];
        let rs = RunSpec::from_toml(&r.run_spec, &format!("plan.json run {}", r.id))?;
        if !datasets.contains_key(&rs.data) {
            let d =
                sgdlab_data::load_dataset(&rs.data).map_err(|e| StudyError::Spec(format!("{}: {e}", plan.study)))?;
            datasets.insert(rs.data.clone(), Arc::new(d));
        }
        specs.insert(i, rs);
    }
    sgdlab_linalg::set_threads(1);
    let todo: Vec<usize> = mine
        .iter()
        .copied()
        .filter(|&i| !finished(&read_record(&dir.join("runs").join(&plan.runs[i].id)).ok().flatten()))
        .collect();
    let done = AtomicUsize::new(mine.len() - todo.len());
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    let first_error: Mutex<Option<StudyError>> = Mutex::new(None);
    let stop = opts.stop.clone();
    let jobs = opts.jobs.max(1).min(todo.len().max(1));
    if let Some(p) = opts.progress {
        p(done.load(Ordering::SeqCst), mine.len(), 0.0);
    }
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                    break;
                }
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(&i) = todo.get(k) else { break };
                let r = &plan.runs[i];
                let rs = &specs[&i];
                let run_dir = dir.join("runs").join(&r.id);
                let ro = RunOptions {
                    out_dir: run_dir.clone(),
                    stop: stop.as_deref(),
                    context: opts.context.clone(),
                    dataset: Some(&datasets[&rs.data]),
                    fresh: false,
                };
                let mut hook = StudyHook::new(plan.measure.clone(), rs.loss, rs.seed);
                match train(rs, &ro, &mut hook, &mut |_| {}) {
                    Ok(rec) if rec.status == RunStatus::Interrupted => {}
                    Ok(_) => {}
                    Err(e) => {
                        // A failed run is recorded and the study goes on.
                        let rec = serde_json::json!({"status": "failed", "message": e.to_string(), "seed": rs.seed,
                            "spec_hash": sgdlab_train::content_hash(&rs.to_toml()), "steps_completed": 0, "total_steps": 0,
                            "dtype": "", "sgdlab_version": opts.context.sgdlab_version, "git_revision": opts.context.git_revision,
                            "threads": 1, "wall_time_s": 0.0, "final_metrics": {}});
                        if let Err(w) = std::fs::create_dir_all(&run_dir)
                            .map_err(|e| StudyError::io(&run_dir, e))
                            .and_then(|_| Ok(write_text_atomic(&run_dir.join("record.json"), &serde_json::to_string_pretty(&rec).expect("serialises"))?))
                        {
                            first_error.lock().expect("not poisoned").get_or_insert(w);
                        }
                    }
                }
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if let Some(p) = opts.progress {
                    p(n, mine.len(), t0.elapsed().as_secs_f64());
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let n = mine
        .iter()
        .filter(|&&i| finished(&read_record(&dir.join("runs").join(&plan.runs[i].id)).ok().flatten()))
        .count();
    Ok(RunsOutcome { finished: n, planned: mine.len() })
}
