//! `sgdlab study submit | run-task | status`: a study's frozen plan as a Slurm job array, what
//! each array task runs, and a study's progress from its records. Slurm schedules; this file
//! calls `sbatch` and `scontrol` and prints. The layout and scripts are
//! `sgdlab_studies::slurm`; the commands are described in docs/slurm.md.

use crate::cmd_study::{StudySelect, context};
use anyhow::{Context, Result, bail};
use sgdlab_studies::slurm::{self, ArrayLayout, SubmitSpec};
use sgdlab_studies::status::{StudyStatus, study_status};
use sgdlab_studies::{RunnerOptions, freeze_plan, read_plan, run_plan};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Writes OUT/<study>[-quick]/ (plan.json, study.toml) and its slurm/array.sbatch and slurm/merge.sbatch, submits the array and a merge job (--dependency=afterany) that computes the verdict and builds the report. OUT must be on a filesystem the compute nodes share. See docs/slurm.md."
)]
pub struct SubmitArgs {
    #[command(flatten)]
    select: StudySelect,
    /// Output directory; the study goes to OUT/NAME (OUT/NAME-quick in quick mode), as `study run`.
    #[arg(long, value_name = "OUT", default_value = "results")]
    out: PathBuf,
    /// Extra sbatch options for both jobs, e.g. "--partition=short --time=02:00:00 --mem=4G".
    #[arg(long, value_name = "ARGS", default_value = "", allow_hyphen_values = true)]
    slurm_args: String,
    /// At most K array tasks running at once (--array=0-N%K).
    #[arg(long, value_name = "K")]
    array_parallelism: Option<usize>,
    /// Runs per array task: fewer, longer tasks (tasks are also capped by MaxArraySize).
    #[arg(long, value_name = "N", default_value_t = 1)]
    runs_per_task: usize,
    /// Write the scripts and print the sbatch commands, without submitting.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args, Debug)]
pub struct RunTaskArgs {
    /// A study directory with a frozen plan (written by `study submit`).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Task i runs the plan's runs i, i+N, i+2N, ... [default: SLURM_ARRAY_TASK_COUNT, with
    /// the task index counted from SLURM_ARRAY_TASK_MIN].
    #[arg(long, value_name = "N")]
    stride: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// A study directory (with plan.json and runs/).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

/// The cluster's MaxArraySize (from `scontrol show config`), and whether it could be read.
fn max_array_size() -> (usize, bool) {
    let out = Command::new("scontrol").args(["show", "config"]).output();
    match out {
        Ok(o) if o.status.success() => match slurm::parse_max_array_size(&String::from_utf8_lossy(&o.stdout)) {
            Some(n) => (n, true),
            None => (slurm::DEFAULT_MAX_ARRAY_SIZE, false),
        },
        _ => (slurm::DEFAULT_MAX_ARRAY_SIZE, false),
    }
}

/// Runs `sbatch --parsable ARGS SCRIPT` and returns the job id.
fn sbatch(args: &[String], script: &Path) -> Result<String> {
    let out =
        Command::new("sbatch").arg("--parsable").args(args).arg(script).output().map_err(|e| {
            anyhow::anyhow!("sbatch: {e} (is this a Slurm login node? --dry-run writes the scripts only)")
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("sbatch {}: {}", script.display(), err.trim().lines().next().unwrap_or("failed"));
    }
    Ok(slurm::parse_job_id(&String::from_utf8_lossy(&out.stdout))?)
}

pub fn submit(a: SubmitArgs) -> Result<i32> {
    let study = a.select.load()?;
    let spec = &study.spec;
    let out = std::fs::create_dir_all(&a.out)
        .and_then(|()| std::fs::canonicalize(&a.out))
        .with_context(|| format!("--out {}", a.out.display()))?;
    let dir = out.join(format!("{}{}", spec.name, if study.quick { "-quick" } else { "" }));
    // Everything is checked (plan, layout, options, paths) before the plan is frozen.
    let plan = sgdlab_studies::plan::plan(&study)?;
    let max = max_array_size();
    let layout = ArrayLayout::new(plan.runs.len(), a.runs_per_task, max.0)?;
    let sgdlab = std::env::current_exe().and_then(std::fs::canonicalize).context("the path of the sgdlab binary")?;
    let scripts = slurm::sbatch_scripts(&SubmitSpec {
        sgdlab: &sgdlab,
        dir: &dir,
        study: &spec.name,
        layout,
        parallelism: a.array_parallelism,
        slurm_args: &a.slurm_args,
        max_array_size: max,
    })?;
    freeze_plan(&study, &dir)?;
    let sdir = dir.join("slurm");
    std::fs::create_dir_all(sdir.join("logs")).with_context(|| sdir.display().to_string())?;
    let (array_path, merge_path) = (sdir.join("array.sbatch"), sdir.join("merge.sbatch"));
    sgdlab_train::record::write_text_atomic(&array_path, &scripts.array)?;
    sgdlab_train::record::write_text_atomic(&merge_path, &scripts.merge)?;
    println!(
        "{}: {} runs over {} array tasks{} -> {}",
        spec.name,
        layout.runs,
        layout.tasks,
        a.array_parallelism.map(|k| format!(" ({k} at a time)")).unwrap_or_default(),
        dir.display()
    );
    if a.dry_run {
        println!("wrote {} and {} (not submitted); submit with:", array_path.display(), merge_path.display());
        println!("  sbatch {}", array_path.display());
        println!("  sbatch --dependency=afterany:ARRAYJOB {}", merge_path.display());
        return Ok(0);
    }
    let array_job = sbatch(&[], &array_path)?;
    let merge_job = sbatch(&[format!("--dependency=afterany:{array_job}")], &merge_path)?;
    let line =
        serde_json::json!({"array_job": array_job, "merge_job": merge_job, "tasks": layout.tasks, "runs": layout.runs});
    append_line(&sdir.join("submissions.jsonl"), &line.to_string())?;
    println!(
        "submitted array job {array_job} (tasks 0-{}) and merge job {merge_job} (afterany:{array_job})",
        layout.tasks - 1
    );
    println!("watch:  squeue -j {array_job},{merge_job}    sgdlab study status {}", dir.display());
    println!("logs:   {}/task-{array_job}_*.log", sdir.join("logs").display());
    println!("merge by hand (after the array): sgdlab report {}", dir.display());
    Ok(0)
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| path.display().to_string())?;
    writeln!(f, "{line}").with_context(|| path.display().to_string())
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn run_task(a: RunTaskArgs) -> Result<i32> {
    let share = slurm::task_share_from_env(&env_var, a.stride)?;
    let jobs = slurm::cpus_from_env(&env_var)?;
    let plan = read_plan(&a.dir)?;
    let signals = crate::cmd_signals::StopSignals::install()?;
    let job = env_var("SLURM_JOB_ID").unwrap_or_default();
    let label = format!("{} task {} of {} (job {job})", plan.study, share.index, share.count);
    let restarts = env_var("SLURM_RESTART_COUNT").unwrap_or_else(|| "0".into());
    eprintln!("{label}: start (restart {restarts}), {jobs} run(s) at once, in {}", a.dir.display());
    let progress = |done: usize, total: usize, secs: f64| eprintln!("{label}: {done}/{total} runs ({secs:.1} s)");
    let opts = RunnerOptions {
        jobs,
        retry_failed: true,
        stop: Some(signals.stop.clone()),
        context: context(),
        progress: Some(&progress),
    };
    let outcome = run_plan(&plan, &a.dir, &share.runs(&plan), &opts)?;
    let sig = signals.received().unwrap_or(0);
    if outcome.finished == outcome.planned {
        eprintln!("{label}: all {} runs finished", outcome.planned);
        return Ok(0);
    }
    if sig == 0 {
        bail!("{label}: {} of {} runs finished without a stop request", outcome.finished, outcome.planned);
    }
    eprintln!(
        "{label}: stopped by signal {sig} after {} of {} runs; running runs checkpointed",
        outcome.finished, outcome.planned
    );
    // Everything is checkpointed: the SIGTERM that `scontrol requeue` brings must not cut the
    // report of the requeue short.
    signals.disarm_second_signal();
    if signals.was_usr1() && !job.is_empty() {
        // Slurm's warning before the time limit: requeue this task; the requeued task resumes.
        let st = Command::new("scontrol").args(["requeue", &job]).status();
        match st {
            Ok(s) if s.success() => eprintln!("{label}: requeued (scontrol requeue {job})"),
            Ok(s) => eprintln!("{label}: scontrol requeue {job} failed ({s}); submit the array again to resume"),
            Err(e) => eprintln!("{label}: scontrol requeue {job}: {e}; submit the array again to resume"),
        }
    }
    Ok(slurm::EXIT_INTERRUPTED)
}

fn print_status(st: &StudyStatus) {
    println!("{}", st.summary());
    for m in &st.unfinished {
        println!("  not finished: {} (run {}): {}", m.id, m.index, m.describe());
    }
}

pub fn status(a: StatusArgs) -> Result<i32> {
    let plan = read_plan(&a.dir)?;
    let st = study_status(&a.dir, &plan)?;
    if a.json {
        println!("{}", serde_json::to_string(&st)?);
    } else {
        print_status(&st);
    }
    Ok(0)
}
