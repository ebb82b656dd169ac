//! `sgdlab study list|plan|run` and `sgdlab report`: studies from the command line.

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sgdlab_report::fmt_num;
use sgdlab_studies::overrides::{parse_seeds, seeds_override};
use sgdlab_studies::records::ClaimRecord;
use sgdlab_studies::{BUILTIN, LoadedStudy, RunnerOptions, StudyOutcome, VerdictRecord, load_study, run_study};
use sgdlab_train::RunContext;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

const STUDY_HELP: &str = "\
A study is a TOML file (or a built-in name, see `sgdlab study list`): a base run spec, sweeps
around it, measurements, and claims, each decided by a statistic with a bootstrap interval over
seeds. The language, with a worked example of every form: docs/studies.md.

Examples:
  sgdlab study list
  sgdlab study plan batch-sharpness --quick
  sgdlab study run batch-sharpness --quick --jobs 2
  sgdlab study run my-study.toml --seeds 0-9 --set base.optimizer.lr=0.05 --out results/";

#[derive(clap::Args, Debug)]
#[command(after_help = STUDY_HELP)]
pub struct StudyArgs {
    #[command(subcommand)]
    command: StudyCommand,
}

#[derive(clap::Subcommand, Debug)]
enum StudyCommand {
    /// The built-in studies, each with its survey section and title.
    List,
    /// Print the runs, measurements and claims of a study without running anything (every check
    /// a run would make is made here).
    Plan(PlanArgs),
    /// Run a study: plan -> runs (parallel, resumable) -> verdict -> report.
    Run(RunStudyArgs),
    /// Submit a study to Slurm: freeze its plan, write sbatch scripts, submit a job array over
    /// its runs and a dependent job that computes the verdict and builds the report.
    Submit(crate::cmd_slurm::SubmitArgs),
    /// What each task of a `submit`ted job array runs (inside Slurm only).
    RunTask(crate::cmd_slurm::RunTaskArgs),
    /// Runs planned, completed, diverged, failed and not finished, from the records alone.
    Status(crate::cmd_slurm::StatusArgs),
}

/// Which study, and how to change it.
#[derive(clap::Args, Debug)]
pub struct StudySelect {
    /// A built-in study (`sgdlab study list`) or a study TOML file.
    #[arg(value_name = "STUDY")]
    pub study: String,
    /// Quick mode: the study's own smaller but still decisive version (its [quick] overrides).
    #[arg(long)]
    pub quick: bool,
    /// Seeds to run instead of the study's: a range `0-9`, a list `0,3,7`, or both `0-4,10`.
    #[arg(long, value_name = "SEEDS")]
    pub seeds: Option<String>,
    /// Override a key of the study spec, keeping its type (repeatable), e.g.
    /// `--set base.optimizer.lr=0.05`, `--set measure.hessian.samples=500`,
    /// `--set claim.sharpness-ratio.decision.greater=3`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl StudySelect {
    /// Loads the study with its overrides.
    pub fn load(&self) -> Result<LoadedStudy> {
        let mut overrides = Vec::new();
        if let Some(s) = &self.seeds {
            overrides.push(seeds_override(&parse_seeds(s).map_err(anyhow::Error::msg)?));
        }
        overrides.extend(self.set.iter().cloned());
        Ok(load_study(&self.study, self.quick, &overrides)?)
    }
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    select: StudySelect,
    /// Print the plan as JSON (exactly what plan.json would hold).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RunStudyArgs {
    #[command(flatten)]
    select: StudySelect,
    /// Runs in parallel, each on one thread [default: the number of cores].
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Output directory; the study goes to OUT/NAME (OUT/NAME-quick in quick mode).
    #[arg(long, value_name = "OUT", default_value = "results")]
    out: PathBuf,
    /// Keep failed runs as they are instead of running them again.
    #[arg(long)]
    no_retry: bool,
    /// No progress bar and no summary (errors only).
    #[arg(long)]
    quiet: bool,
}

pub fn context() -> RunContext {
    RunContext { sgdlab_version: env!("CARGO_PKG_VERSION").into(), git_revision: env!("SGDLAB_GIT_REV").into() }
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// One claim's result on one line.
fn claim_line(c: &ClaimRecord) -> String {
    let effect = match &c.effect {
        Some(e) => {
            format!("effect {} [{}, {}] ({} seeds)", fmt_num(e.value), fmt_num(e.ci_low), fmt_num(e.ci_high), e.seeds)
        }
        None => format!("no effect: {}", c.reason.as_deref().unwrap_or("none could be formed")),
    };
    format!("  {:<16} {:<17} {effect}; expected {}", c.id, c.verdict.as_str(), c.decision.predicate())
}

/// The summary printed after a study.
fn print_summary(v: &VerdictRecord, report: &Path) {
    eprintln!(
        "{}: {} ({}; {} of {} runs completed{}) -> {}",
        v.study,
        v.verdict.as_str(),
        v.summary,
        v.runs.completed,
        v.runs.planned,
        if v.quick { "; quick mode" } else { "" },
        report.display()
    );
    for c in &v.claims {
        eprintln!("{}", claim_line(c));
    }
}

/// Runs one study into `out/<name>[-quick]` and builds its report; returns the study directory
/// and whether it finished.
pub fn run_one(
    study: &LoadedStudy,
    jobs: usize,
    out: &Path,
    retry_failed: bool,
    quiet: bool,
    stop: Arc<AtomicBool>,
) -> Result<(PathBuf, bool)> {
    let spec = &study.spec;
    let dir = out.join(format!("{}{}", spec.name, if study.quick { "-quick" } else { "" }));
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
    let opts = RunnerOptions { jobs, retry_failed, stop: Some(stop), context: context(), progress: Some(&progress) };
    match run_study(study, &dir, &opts)? {
        StudyOutcome::Finished { verdict, .. } => {
            let report = sgdlab_report::build_study_report(&dir)?;
            if !quiet {
                print_summary(&verdict, &report);
            }
            Ok((dir, true))
        }
        StudyOutcome::Interrupted { finished, planned } => {
            eprintln!(
                "{}: stopped with {finished} of {planned} runs finished; run the same command again to resume",
                spec.name
            );
            Ok((dir, false))
        }
    }
}

fn print_plan(study: &LoadedStudy, plan: &sgdlab_studies::PlanRecord) {
    let s = &study.spec;
    println!("{} (PROTOCOLS {}): {}", s.name, s.section, s.title);
    println!(
        "{} runs: {} sweep block{} x {} seed{}{}",
        plan.runs.len(),
        plan.sweeps.len(),
        if plan.sweeps.len() == 1 { "" } else { "s" },
        s.seeds.len(),
        if s.seeds.len() == 1 { "" } else { "s" },
        if plan.quick { " (quick mode)" } else { "" }
    );
    for o in &plan.overrides {
        println!("  override {o}");
    }
    for sw in s.sweep.iter() {
        let axes: Vec<String> =
            sw.axis.iter().map(|a| format!("{} in {}", a.name, toml::Value::Array(a.values.clone()))).collect();
        let from = sw.from.as_ref().map_or_else(String::new, |f| {
            let filter: String = f.filter.iter().map(|(k, v)| format!(", {k} = {v}")).collect();
            format!("; starts from the final parameters of sweep {}{filter} (same seed)", f.sweep)
        });
        let seeds = match sw.first_seeds {
            Some(_) => format!(", seeds {:?} only", sw.seeds(&s.seeds)),
            None => String::new(),
        };
        println!(
            "  sweep {} ({}{seeds}): {}{from}",
            sw.name,
            match sw.mode {
                sgdlab_studies::spec::SweepMode::Grid => "grid",
                sgdlab_studies::spec::SweepMode::Zip => "zipped",
            },
            if axes.is_empty() { "the base alone".into() } else { axes.join(", ") }
        );
    }
    println!("runs:");
    for r in &plan.runs {
        let axes: Vec<String> = r.axes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let from = r.from.as_ref().map_or_else(String::new, |f| format!("  (from {f})"));
        println!("  {}  seed {:<4} {}{from}", r.id, r.seed, axes.join(" "));
    }
    println!("measurements:");
    for m in &plan.measure {
        let when = match m.spec.at {
            sgdlab_studies::spec::At::Init => "at initialisation".to_string(),
            sgdlab_studies::spec::At::Final => "after the last step".to_string(),
            sgdlab_studies::spec::At::Every => match m.spec.early {
                Some(e) => format!("every {} steps up to step {}, then every {} steps", e.every, e.until, m.spec.every),
                None => format!("every {} steps", m.spec.every),
            },
            sgdlab_studies::spec::At::Log => format!("at {} log-spaced steps", m.spec.points),
        };
        println!(
            "  {} {}, on {} examples of {}: writes {}",
            m.spec.label(),
            when,
            if m.spec.samples == 0 { "all".to_string() } else { m.spec.samples.to_string() },
            m.spec.split,
            m.metrics.join(", ")
        );
    }
    println!("claims:");
    for c in &s.claim {
        println!("  {}: {}", c.id, c.statement);
        println!(
            "    value: {}; statistic: {}; decision: {}",
            c.value.describe(),
            sgdlab_studies::statistic::describe(&c.statistic),
            c.decision.predicate()
        );
    }
}

pub fn run(a: StudyArgs) -> Result<i32> {
    match a.command {
        StudyCommand::List => {
            let specs: Vec<LoadedStudy> =
                BUILTIN.iter().map(|b| load_study(b.name, false, &[])).collect::<Result<_, _>>()?;
            let w = specs.iter().map(|s| s.spec.name.len()).max().unwrap_or(5).max(5);
            println!("{:<w$}  {:<7}  {:<6}  title", "study", "section", "claims");
            for s in &specs {
                println!("{:<w$}  {:<7}  {:<6}  {}", s.spec.name, s.spec.section, s.spec.claim.len(), s.spec.title);
            }
            Ok(0)
        }
        StudyCommand::Plan(p) => {
            let study = p.select.load()?;
            let plan = sgdlab_studies::plan::plan(&study)?;
            if p.json {
                println!("{}", serde_json::to_string(&plan)?);
            } else {
                print_plan(&study, &plan);
            }
            Ok(0)
        }
        StudyCommand::Run(r) => {
            let study = r.select.load()?;
            let signals = crate::cmd_signals::StopSignals::install()?;
            let jobs = r.jobs.unwrap_or_else(default_jobs);
            let (_, done) = run_one(&study, jobs, &r.out, !r.no_retry, r.quiet, signals.stop.clone())?;
            Ok(if done { 0 } else { signals.exit_status() })
        }
        StudyCommand::Submit(a) => crate::cmd_slurm::submit(a),
        StudyCommand::RunTask(a) => crate::cmd_slurm::run_task(a),
        StudyCommand::Status(a) => crate::cmd_slurm::status(a),
    }
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A study directory (it holds study.toml, plan.json and runs/).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub fn report(a: ReportArgs) -> Result<i32> {
    if !a.dir.join("plan.json").exists() {
        bail!("{}: no plan.json (not a study directory)", a.dir.display());
    }
    // Recompute the verdict from the records, then rebuild the report.
    let plan = sgdlab_studies::read_plan(&a.dir)?;
    let spec_path = a.dir.join("study.toml");
    let spec_text = std::fs::read_to_string(&spec_path).map_err(|e| anyhow::anyhow!("{}: {e}", spec_path.display()))?;
    let spec = sgdlab_studies::StudySpec::from_toml(&spec_text, &spec_path.display().to_string())?;
    let verdict = sgdlab_studies::compute_verdict(&a.dir, &spec, &plan, &context())?;
    let p = sgdlab_report::build_study_report(&a.dir)?;
    print_summary(&verdict, &p);
    if !verdict.complete {
        eprintln!(
            "{}: the verdict is incomplete ({} of {} runs not finished; sgdlab study status {})",
            verdict.study,
            verdict.runs.planned - verdict.runs.completed - verdict.runs.diverged - verdict.runs.failed,
            verdict.runs.planned,
            a.dir.display()
        );
    }
    println!("{}", p.display());
    Ok(0)
}
