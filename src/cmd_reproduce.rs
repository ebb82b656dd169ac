//! `sgdlab reproduce`: every built-in study, then an index page of verdicts.

use crate::cmd_study::{default_jobs, run_one};
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Writes OUT/<study>[-quick]/ (plan.json, runs/, verdict.json, report.html) for every built-in study and OUT/index.html; run the same command again to resume after an interruption."
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
    for b in sgdlab_studies::BUILTIN {
        let study = sgdlab_studies::load_study(b.name, a.quick, &[])?;
        let (dir, done) = run_one(&study, jobs, &a.out, true, a.quiet, signals.stop.clone())?;
        if !done {
            return Ok(signals.exit_status());
        }
        dirs.push(dir);
    }
    let index = sgdlab_report::build_index(&a.out, &dirs)?;
    println!("{}", index.display());
    Ok(0)
}
