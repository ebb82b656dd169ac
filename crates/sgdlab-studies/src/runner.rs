//! The study runner: freezes the plan, runs the runs in parallel (each single-threaded), skips
//! completed ones on resume, retries failed ones, records diverged or failed runs and goes on,
//! then computes the verdict. Results do not depend on the number of parallel jobs: every run is
//! deterministic on its own and shares nothing with the others but read-only data.

use crate::error::StudyError;
use crate::measure::StudyHook;
use crate::plan::plan;
use crate::records::{PlanRecord, RunState, VerdictRecord, read_plan, write_json};
use crate::spec::LoadedStudy;
use crate::verdict::compute_verdict;
use sgdlab_data::Dataset;
use sgdlab_train::record::write_text_atomic;
use sgdlab_train::{DirLock, RunContext, RunOptions, RunRecord, RunSpec, RunStatus, TrainError, train};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How to run a study.
pub struct RunnerOptions<'a> {
    /// Runs in parallel (each single-threaded).
    pub jobs: usize,
    /// Run failed runs again (the default); `false` keeps their records as they are.
    pub retry_failed: bool,
    pub stop: Option<Arc<AtomicBool>>,
    pub context: RunContext,
    /// Called after each finished run: (runs finished, runs in the plan, seconds elapsed).
    pub progress: Option<&'a (dyn Fn(usize, usize, f64) + Sync)>,
}

/// How a study run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StudyOutcome {
    /// All runs ended (completed, diverged or failed) and the verdict is written.
    Finished { verdict: Box<VerdictRecord>, dir: PathBuf },
    /// Stopped by a stop request; run again to resume.
    Interrupted { finished: usize, planned: usize },
}

/// The state of a run directory, judged against its files ([`sgdlab_train::inspect_run`]): a
/// record claiming completion whose files disagree, or a record that cannot be read, counts as
/// missing (the run is done again).
pub fn run_state(dir: &Path) -> RunState {
    match sgdlab_train::inspect_run(dir) {
        sgdlab_train::RunState::Finished(r) | sgdlab_train::RunState::Unfinished(r) => RunState::from_status(r.status),
        sgdlab_train::RunState::Missing | sgdlab_train::RunState::Inconsistent { .. } => RunState::Missing,
    }
}

/// Freezes the plan into `dir` (writing `study.toml` and `plan.json`), or checks that the plan
/// already there is the same.
pub fn freeze_plan(study: &LoadedStudy, dir: &Path) -> Result<PlanRecord, StudyError> {
    let plan = plan(study)?;
    std::fs::create_dir_all(dir.join("runs")).map_err(|e| StudyError::io(dir, e))?;
    if dir.join("plan.json").exists() {
        let old = read_plan(dir)?;
        if old != plan {
            return Err(StudyError::io(
                dir,
                format!(
                    "holds a different plan of '{}' (spec, overrides or mode changed); use another --out directory",
                    old.study
                ),
            ));
        }
    } else {
        write_text_atomic(&dir.join("study.toml"), &study.spec.to_toml())?;
        write_json(&dir.join("plan.json"), &plan)?;
    }
    Ok(plan)
}

/// The record of a run that ended with an error before or outside the training loop.
fn failed_record(rs: &RunSpec, message: String, context: &RunContext) -> RunRecord {
    RunRecord {
        status: RunStatus::Failed,
        diverged_at_step: None,
        message: Some(message),
        seed: rs.seed,
        spec_hash: sgdlab_train::content_hash(&rs.to_toml()),
        steps_completed: 0,
        total_steps: 0,
        dtype: String::new(),
        sgdlab_version: context.sgdlab_version.clone(),
        git_revision: context.git_revision.clone(),
        threads: 1,
        wall_time_s: 0.0,
        segments: 1,
        final_metrics: Default::default(),
        metric_rows: None,
        warnings: Vec::new(),
    }
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

    /// The plan indices of this share.
    pub fn runs(&self, plan: &PlanRecord) -> Vec<usize> {
        (0..plan.runs.len()).filter(|&i| self.includes(i)).collect()
    }
}

/// What [`run_plan`] did over the runs it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunsOutcome {
    /// Runs given that have ended (completed, diverged or failed), including those ended before.
    pub finished: usize,
    /// Runs given.
    pub planned: usize,
}

/// Runs the planned runs of `which` (plan indices) that are not finished (failed ones too when
/// retrying), never computing a verdict.
pub fn run_plan(
    plan: &PlanRecord,
    dir: &Path,
    which: &[usize],
    opts: &RunnerOptions<'_>,
) -> Result<RunsOutcome, StudyError> {
    // Load each distinct dataset once; runs share it read-only.
    let mut datasets: HashMap<String, Arc<Dataset>> = HashMap::new();
    let mut specs = Vec::with_capacity(plan.runs.len());
    for r in &plan.runs {
        let rs = RunSpec::from_toml(&r.run_spec, &format!("{}: run {}", dir.join("plan.json").display(), r.id))?;
        if !datasets.contains_key(&rs.data) {
            let d =
                sgdlab_data::load_dataset(&rs.data).map_err(|e| StudyError::Spec(format!("{}: {e}", plan.study)))?;
            datasets.insert(rs.data.clone(), Arc::new(d));
        }
        specs.push(rs);
    }
    sgdlab_linalg::set_threads(1);
    let states: Vec<RunState> = which.iter().map(|&i| run_state(&dir.join("runs").join(&plan.runs[i].id))).collect();
    let mut todo: Vec<usize> = which
        .iter()
        .zip(&states)
        .filter(|(_, s)| match s {
            RunState::Completed | RunState::Diverged => false,
            RunState::Failed => opts.retry_failed,
            RunState::Interrupted | RunState::Running | RunState::Missing => true,
        })
        .map(|(&i, _)| i)
        .collect();
    // Longest runs first, so that the jobs do not end waiting on one long run started last
    // (the order changes no result: every run is deterministic on its own).
    // Runs that start from another run's parameters come after every run of a lower stage (a
    // run taken up waits for its source to end, which then has already been taken up).
    let stages = stages(plan);
    todo.sort_by_cached_key(|&i| (stages[i], std::cmp::Reverse(estimated_work(&specs[i], &datasets[&specs[i].data]))));
    // Runs this process has still to take up or finish: a source among them is waited for here.
    let pending: Mutex<std::collections::HashSet<&str>> =
        Mutex::new(todo.iter().map(|&i| plan.runs[i].id.as_str()).collect());
    let index_of: HashMap<&str, usize> = plan.runs.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
    // Every run not to do has ended (completed, diverged, or failed and not retried).
    let ended_before = which.len() - todo.len();
    let done = AtomicUsize::new(ended_before);
    let next = AtomicUsize::new(0);
    let t0 = Instant::now();
    let first_error: Mutex<Option<StudyError>> = Mutex::new(None);
    let stop = opts.stop.clone();
    let jobs = opts.jobs.max(1).min(todo.len().max(1));
    if let Some(p) = opts.progress {
        p(ended_before, which.len(), 0.0);
    }
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    if stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                        break;
                    }
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&i) = todo.get(k) else { break };
                    let r = &plan.runs[i];
                    let rs = &specs[i];
                    let run_dir = dir.join("runs").join(&r.id);
                    let source = match &r.from {
                        Some(src) => wait_for_source(dir, src, &pending, stop.as_deref()),
                        None => SourceState::Ready,
                    };
                    match source {
                        SourceState::Ready => {}
                        SourceState::Stopped => break,
                        SourceState::Unusable(status) => {
                            let src = r.from.as_deref().unwrap_or_default();
                            let what = index_of.get(src).map_or_else(String::new, |&j| {
                                format!(" (sweep {}, seed {})", plan.runs[j].sweeps.join("/"), plan.runs[j].seed)
                            });
                            let message = format!(
                                "the run it starts from, {src}{what}, ended {status}: no final parameters to start from"
                            );
                            let rec = failed_record(rs, message, &opts.context);
                            if let Err(w) = std::fs::create_dir_all(&run_dir)
                                .map_err(|e| StudyError::io(&run_dir, e))
                                .and_then(|_| write_json(&run_dir.join("record.json"), &rec))
                            {
                                first_error.lock().expect("not poisoned").get_or_insert(w);
                            }
                            pending.lock().expect("not poisoned").remove(r.id.as_str());
                            let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                            if let Some(p) = opts.progress {
                                p(n, which.len(), t0.elapsed().as_secs_f64());
                            }
                            continue;
                        }
                    }
                    let ro = RunOptions {
                        out_dir: run_dir.clone(),
                        stop: stop.as_deref(),
                        context: opts.context.clone(),
                        dataset: Some(&datasets[&rs.data]),
                        fresh: false,
                        // `init.from` of a run started from another run's parameters names
                        // `runs/<id>/final.safetensors`, relative to the study directory.
                        base_dir: Some(dir.to_path_buf()),
                    };
                    let outcome = StudyHook::new(&plan.measure, rs.loss, rs.seed, &rs.data, &r.axes)
                        .map_err(TrainError::Spec)
                        .and_then(|mut hook| train(rs, &ro, &mut hook, &mut |_| {}));
                    // Failed runs are recorded below before any dependent looks (its record is
                    // written under this lock).
                    let mut pending_now = pending.lock().expect("not poisoned");
                    match outcome {
                        Ok(rec) if rec.status == RunStatus::Interrupted => {
                            pending_now.remove(r.id.as_str());
                            continue;
                        }
                        Ok(_) => {}
                        // Another process is training this run (a Slurm task with an overlapping
                        // share): leave its directory alone.
                        Err(e @ TrainError::Busy { .. }) => {
                            first_error.lock().expect("not poisoned").get_or_insert(e.into());
                            pending_now.remove(r.id.as_str());
                            continue;
                        }
                        Err(e) => {
                            let message = e.to_string();
                            // A failed run is recorded and the study goes on.
                            let rec = failed_record(rs, message, &opts.context);
                            if let Err(w) = std::fs::create_dir_all(&run_dir)
                                .map_err(|e| StudyError::io(&run_dir, e))
                                .and_then(|_| write_json(&run_dir.join("record.json"), &rec))
                            {
                                first_error.lock().expect("not poisoned").get_or_insert(w);
                            }
                        }
                    }
                    pending_now.remove(r.id.as_str());
                    drop(pending_now);
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    if let Some(p) = opts.progress {
                        p(n, which.len(), t0.elapsed().as_secs_f64());
                    }
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().expect("not poisoned") {
        return Err(e);
    }
    Ok(RunsOutcome { finished: done.into_inner(), planned: which.len() })
}

/// Each run's stage: 0, or 1 + the stage of the run it starts from (`from`).
fn stages(plan: &PlanRecord) -> Vec<usize> {
    let index: HashMap<&str, usize> = plan.runs.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
    let mut stage = vec![usize::MAX; plan.runs.len()];
    fn of(i: usize, plan: &PlanRecord, index: &HashMap<&str, usize>, stage: &mut [usize], depth: usize) -> usize {
        if stage[i] != usize::MAX {
            return stage[i];
        }
        // Sources are declared in earlier sweeps, so chains are shorter than the plan.
        let s = match plan.runs[i].from.as_deref().and_then(|f| index.get(f)) {
            Some(&j) if depth < plan.runs.len() => 1 + of(j, plan, index, stage, depth + 1),
            _ => 0,
        };
        stage[i] = s;
        s
    }
    for i in 0..plan.runs.len() {
        of(i, plan, &index, &mut stage, 0);
    }
    stage
}

/// Whether a run's source run has ended with final parameters.
enum SourceState {
    Ready,
    /// A stop was requested while waiting.
    Stopped,
    /// The source ended without final parameters (its status).
    Unusable(&'static str),
}

/// How often a run waiting for its source looks at the source's record.
const SOURCE_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// Waits until the source run `src` has ended (another job of this process, or another Slurm
/// task, is training it).
fn wait_for_source(
    dir: &Path,
    src: &str,
    pending: &Mutex<std::collections::HashSet<&str>>,
    stop: Option<&AtomicBool>,
) -> SourceState {
    let src_dir = dir.join("runs").join(src);
    loop {
        if !pending.lock().expect("not poisoned").contains(src) {
            match run_state(&src_dir) {
                RunState::Completed => return SourceState::Ready,
                RunState::Diverged => return SourceState::Unusable("diverged"),
                RunState::Failed => return SourceState::Unusable("failed"),
                RunState::Interrupted | RunState::Running | RunState::Missing => {}
            }
        }
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            return SourceState::Stopped;
        }
        std::thread::sleep(SOURCE_POLL);
    }
}

/// A run's work for ordering runs: forward multiply-adds per example x the examples its budget
/// allows (steps x batch, or epochs x training examples; an early stop is not foreseen).
fn estimated_work(rs: &RunSpec, data: &Dataset) -> u128 {
    let n = data.train().map_or(0, |s| s.len()) as u128;
    let batch = rs.optimizer.batch_size().map_or(n, |b| b as u128);
    let examples = match (rs.budget.steps, rs.budget.epochs) {
        (Some(s), _) => s as u128 * batch,
        (None, Some(e)) => e as u128 * n,
        (None, None) => 0,
    };
    sgdlab_nn::Model::new(&rs.model).forward_macs() as u128 * examples
}

/// Plans (or re-reads the frozen plan of) a study in `dir`, runs what is not finished, and
/// computes the verdict.
pub fn run_study(study: &LoadedStudy, dir: &Path, opts: &RunnerOptions<'_>) -> Result<StudyOutcome, StudyError> {
    std::fs::create_dir_all(dir).map_err(|e| StudyError::io(dir, e))?;
    // One process at a time runs a study directory (each run directory is locked by its trainer
    // too, so Slurm array tasks of one study can share the study directory).
    let _lock = DirLock::acquire(dir)?;
    let plan = freeze_plan(study, dir)?;
    let all: Vec<usize> = (0..plan.runs.len()).collect();
    let runs = run_plan(&plan, dir, &all, opts)?;
    if runs.finished < runs.planned {
        return Ok(StudyOutcome::Interrupted { finished: runs.finished, planned: runs.planned });
    }
    let verdict = compute_verdict(dir, &study.spec, &plan, &opts.context)?;
    Ok(StudyOutcome::Finished { verdict: Box::new(verdict), dir: dir.to_path_buf() })
}
