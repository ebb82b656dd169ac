//! The sgdlab command line: argument parsing, progress and output formatting; no numerics.

mod arch_args;
mod cmd_data;
mod cmd_model;
mod cmd_probe;
mod cmd_probe_common;
mod cmd_reproduce;
mod cmd_signals;
mod cmd_slurm;
mod cmd_study;
mod cmd_train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The version line: crate version and the git revision it was built from.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("SGDLAB_GIT_REV"), ")");

/// sgdlab: train networks with SGD and measure which inductive biases it put into them.
///
/// Every claim of the survey "Inductive Biases of SGD Training" becomes a measurable, reproducible
/// study: exact curvature (Hessian-vector products, Lanczos, Hutchinson), simplicity measures
/// (rank, frequency, depth, geometric complexity) and verdicts with effect sizes.
#[derive(Parser, Debug)]
#[command(name = "sgdlab", version = VERSION, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Threads for large matrix products (0 = all cores). Small products always run on one
    /// thread; studies run one thread per run.
    #[arg(long, global = true, default_value_t = 0, value_name = "N")]
    threads: usize,

    /// Memory a command may plan to use, e.g. 8G, 512M, 16GB [default: MemAvailable in
    /// /proc/meminfo, or the cgroup's limit]. Sizes are checked before allocating: a dataset,
    /// model, dense matrix or grid that would need more fails with the estimate.
    #[arg(long, global = true, value_name = "SIZE", value_parser = sgdlab_linalg::memory::parse_size)]
    max_memory: Option<u64>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run every built-in study and write an HTML index of their verdicts (the main job).
    Reproduce(cmd_reproduce::ReproduceArgs),
    /// Studies: list the built-in ones, print a plan, run one (plan, runs, verdict, report).
    Study(cmd_study::StudyArgs),
    /// Rebuild a study's verdict and report.html from its records alone.
    Report(cmd_study::ReportArgs),
    /// Train one network from a TOML run spec (resumable; Ctrl-C checkpoints).
    Train(cmd_train::TrainArgs),
    /// Measure a trained model: curvature (Hessian spectrum, trace, sharpness, landscape, noise)
    /// and simplicity (rank, frequency, depth, geometric complexity, ...).
    Probe(Box<cmd_probe::ProbeArgs>),
    /// Inspect datasets: shapes, class counts, statistics, sample plots; the spec grammar.
    Data(cmd_data::DataArgs),
    /// Describe a model: parameter names and shapes of an architecture or a checkpoint.
    Model(cmd_model::ModelArgs),
}

fn main() -> ExitCode {
    // Die quietly when the reader of stdout goes away (`sgdlab ... | head`), like other CLI tools,
    // instead of panicking on a broken pipe.
    #[cfg(unix)]
    // SAFETY: resetting a signal to its default disposition at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    sgdlab_linalg::keep_freed_memory();
    let cli = Cli::parse();
    sgdlab_linalg::set_threads(cli.threads);
    sgdlab_linalg::memory::set_max_memory(cli.max_memory);
    let result = match cli.command {
        Command::Reproduce(a) => cmd_reproduce::run(a),
        Command::Study(a) => cmd_study::run(a),
        Command::Report(a) => cmd_study::report(a),
        Command::Train(a) => cmd_train::run(a),
        Command::Probe(a) => cmd_probe::run(*a).map(|()| 0),
        Command::Data(a) => cmd_data::run(a).map(|()| 0),
        Command::Model(a) => cmd_model::run(a).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            // One line, naming what went wrong (anyhow's chain joined with ": ").
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
