//! `sgdlab reproduce`: every built-in study, then an index page of verdicts.

use crate::cmd_study::{default_jobs, run_one};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Writes OUT/<study>[-quick]/ (plan.json, runs/, verdict.json, report.html) for every built-in study and OUT/index.html; run the same command again to resume after an interruption.\n\nStudies on the MNIST test set (data `mnist`) find it in $SGDLAB_DATA/mnist, data/mnist or ../shared/data/mnist; without it they are listed as not run, with the reason, and the others still run."
)]
pub struct ReproduceArgs {
    /// Small budgets: a smoke run of every study (minutes, not hours).
    #[arg(long)]
    quick: bool,
    /// Runs in parallel (default: the number of cores), each single-threaded.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Output directory: OUT/<study>[-quick]/ per study and OUT/index.html.
    #[arg(long, value_name = "OUT", default_value = "results")]
    out: PathBuf,
    /// No progress bars and no summaries (errors only).
    #[arg(long)]
    quiet: bool,
}

pub fn run(a: ReproduceArgs) -> Result<i32> {
    let signals = crate::cmd_signals::StopSignals::install()?;
    let jobs = a.jobs.unwrap_or_else(default_jobs);
    let mut dirs = Vec::new();
    let mut not_run = Vec::new();
    for b in sgdlab_studies::BUILTIN {
        let study = sgdlab_studies::load_study(b.name, a.quick, &[])?;
        if let Some(reason) = sgdlab_studies::missing_data(&study)? {
            eprintln!("{}: not run: {reason}", b.name);
            not_run.push(sgdlab_report::NotRun {
                name: b.name.to_string(),
                section: study.spec.section.clone(),
                reason,
            });
            continue;
        }
        let (dir, done) = run_one(&study, jobs, &a.out, true, a.quiet, signals.stop.clone())?;
        if !done {
            return Ok(signals.exit_status());
        }
        dirs.push(dir);
    }
    let index = sgdlab_report::build_index(&a.out, &dirs, &not_run)?;
    println!("{}", index.display());
    Ok(0)
}
