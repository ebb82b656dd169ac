//! `sgdlab study list|plan|run` and `sgdlab report`: studies from the command line.

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sgdlab_studies::{BUILTIN, RunnerOptions, StudyOutcome, load_study, run_study};
use sgdlab_train::RunContext;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args, Debug)]
pub struct StudyArgs {
    #[command(subcommand)]
    command: StudyCommand,
}

#[derive(clap::Subcommand, Debug)]
enum StudyCommand {
    /// The built-in studies, each with its survey section and claim.
    List,
    /// Print the expanded runs of a study (built-in name or TOML file) without running them.
    Plan {
        study: String,
        #[arg(long)]
        quick: bool,
        /// Print the plan as JSON (as plan.json would hold it).
        #[arg(long)]
        json: bool,
    },
    /// Run a study: plan -> runs (parallel, resumable) -> verdict -> report.
    Run(RunStudyArgs),
    /// Submit a study to Slurm: freeze its plan, write sbatch scripts, submit a job array over
    /// its runs and a dependent job that computes the verdict and builds the report.
    Submit(crate::cmd_slurm::SubmitArgs),
    /// What each task of a `submit`ted job array runs (inside Slurm only).
    RunTask(crate::cmd_slurm::RunTaskArgs),
    /// Runs planned, completed, diverged, failed and missing, from the records alone.
    Status(crate::cmd_slurm::StatusArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunStudyArgs {
    /// A built-in study (sgdlab study list) or a study TOML file.
    study: String,
    /// Small budgets (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Runs in parallel, each on one thread [default: the number of cores].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Output directory; the study goes to OUT/<name> [default: results].
    #[arg(long, value_name = "DIR", default_value = "results")]
    out: PathBuf,
    #[arg(long)]
    quiet: bool,
}

pub fn context() -> RunContext {
    RunContext { sgdlab_version: env!("CARGO_PKG_VERSION").into(), git_revision: env!("SGDLAB_GIT_REV").into() }
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A stop flag set by the first Ctrl-C (the second one exits at once).
pub fn ctrl_c() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || {
        if s.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    stop
}

/// Runs one study into `out/<name>` and builds its report; returns the study directory and
/// whether it finished.
pub fn run_one(
    study: &str,
    quick: bool,
    jobs: usize,
    out: &Path,
    quiet: bool,
    stop: Arc<AtomicBool>,
) -> Result<(PathBuf, bool)> {
    let spec = load_study(study)?;
    let dir = out.join(format!("{}{}", spec.name, if quick { "-quick" } else { "" }));
    let bar = if quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(5))
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix} {bar:30.green/blue} {pos}/{len} runs  ETA {eta}")
            .expect("valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(spec.name.clone());
    let plain = !quiet && !std::io::stderr().is_terminal();
    let name = spec.name.clone();
    let progress = move |done: usize, total: usize, secs: f64| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if plain && (done == total || done.is_multiple_of((total / 10).max(1))) {
            eprintln!("{name}: {done}/{total} runs ({secs:.1} s)");
        }
    };
    if !quiet {
        eprintln!("study {} ({}): {} -> {}", spec.name, spec.section, spec.title, dir.display());
    }
    let opts = RunnerOptions { jobs, quick, stop: Some(stop), context: context(), progress: Some(&progress) };
    match run_study(&spec, &dir, &opts)? {
        StudyOutcome::Finished { verdict, .. } => {
            let report = sgdlab_report::build_study_report(&dir)?;
            if !quiet {
                let e = &verdict["effect"];
                // Four significant digits (scientific outside [1e-3, 1e5)), as in the reports: an
                // effect of 5e-9 must not print as 0.0000.
                let num = |k: &str| sgdlab_report::fmt_num(e[k].as_f64().unwrap_or(f64::NAN));
                eprintln!(
                    "{}: {} (effect {}, {:.0}% interval [{}, {}]; {} of {} runs used) -> {}",
                    spec.name,
                    verdict["verdict"].as_str().unwrap_or("?"),
                    num("value"),
                    100.0 * e["level"].as_f64().unwrap_or(f64::NAN),
                    num("ci_low"),
                    num("ci_high"),
                    verdict["runs"]["used"],
                    verdict["runs"]["planned"],
                    report.display()
                );
            }
            Ok((dir, true))
        }
        StudyOutcome::Interrupted { finished, planned } => {
            eprintln!(
                "{}: interrupted after {finished} of {planned} runs; run the same command again to resume",
                spec.name
            );
            Ok((dir, false))
        }
    }
}

pub fn run(a: StudyArgs) -> Result<i32> {
    match a.command {
        StudyCommand::List => {
            println!("{:<18} {:<8} claim", "study", "section");
            for (name, _, _) in BUILTIN {
                let s = load_study(name)?;
                println!("{:<18} {:<8} {}", s.name, s.section, s.claim);
            }
            Ok(0)
        }
        StudyCommand::Plan { study, quick, json } => {
            let spec = load_study(&study)?;
            let plan = spec.plan(quick)?;
            if json {
                println!("{}", serde_json::to_string(&plan)?);
            } else {
                println!(
                    "{} ({}): {} runs over {} x seeds {:?}",
                    spec.name,
                    spec.section,
                    plan.runs.len(),
                    plan.knobs.join(" x "),
                    spec.seeds
                );
                for r in &plan.runs {
                    let knobs: Vec<String> = r.knobs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    println!("  {}  seed {:<3} {}", r.id, r.seed, knobs.join(" "));
                }
                for m in &plan.measure {
                    println!("  measure {} at {:?} on {} examples of {}", m.probe, m.at, m.samples, m.split);
                }
            }
            Ok(0)
        }
        StudyCommand::Run(r) => {
            let stop = ctrl_c();
            let (_, done) = run_one(&r.study, r.quick, r.jobs.unwrap_or_else(default_jobs), &r.out, r.quiet, stop)?;
            Ok(if done { 0 } else { 130 })
        }
        StudyCommand::Submit(a) => crate::cmd_slurm::submit(a),
        StudyCommand::RunTask(a) => crate::cmd_slurm::run_task(a),
        StudyCommand::Status(a) => crate::cmd_slurm::status(a),
    }
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A study directory (with plan.json, verdict.json, runs/).
    dir: PathBuf,
}

pub fn report(a: ReportArgs) -> Result<i32> {
    if !a.dir.join("plan.json").exists() {
        bail!("{}: no plan.json (not a study directory)", a.dir.display());
    }
    // Recompute the verdict from the records, then rebuild the report.
    let plan = sgdlab_studies::read_plan(&a.dir)?;
    let spec_text = std::fs::read_to_string(a.dir.join("study.toml"))?;
    let spec = sgdlab_studies::StudySpec::from_toml(&spec_text, &a.dir.join("study.toml").display().to_string())?;
    crate::cmd_slurm::verdict_from_records(&a.dir, &spec, &plan)?;
    let p = sgdlab_report::build_study_report(&a.dir)?;
    println!("{}", p.display());
    Ok(0)
}
