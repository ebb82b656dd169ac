//! `sgdlab train`: one training run from a TOML spec, with a progress bar.

use crate::arch_args::resolve_arch;
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sgdlab_train::{NoHook, Progress, RunContext, RunOptions, RunSpec, RunStatus, train};
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(after_help = "\
The run directory holds spec.toml (the resolved spec), metrics.jsonl (one JSON object per
measurement: step, epoch, probe, name, value; pandas.read_json(path, lines=True)), checkpoints/,
final.safetensors and record.json (seed, versions, git revision, wall time, status).
Running the same spec into the same directory resumes from the latest checkpoint (Ctrl-C, SIGTERM
and SIGUSR1 write one; so do checkpoint.every and checkpoint.every_seconds); a completed run whose
files agree with its record is not run again (one whose files disagree is redone). A run directory
is locked while a process trains in it: a second `sgdlab train` on it fails at once, naming the pid
of the first.

Exit status: 0 completed, 3 diverged (non-finite loss; the step is in record.json), 128 + the
signal number when stopped by a signal after writing a checkpoint (130 SIGINT/Ctrl-C, 143 SIGTERM,
138 SIGUSR1; run again to resume), 1 error (record.json then says failed, with the message).

Example: sgdlab train examples/mnist1d-sgd.toml --set optimizer.lr=0.05 --out runs/lr005")]
pub struct TrainArgs {
    /// Run spec (TOML); see examples/mnist1d-sgd.toml.
    spec: PathBuf,
    /// Run directory [default: runs/<spec file name>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Override a spec key, keeping its type: --set optimizer.lr=0.05 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Train the architecture PyTorch prints (`print(model)` of an nn.Sequential) instead of the
    /// spec's `model`, with --input-shape; the resolved spec records it as a seq string.
    #[arg(long, value_name = "FILE")]
    arch_file: Option<PathBuf>,
    /// Shape of one input example for --arch-file: C,H,W or CxHxW.
    #[arg(long, value_name = "SHAPE")]
    input_shape: Option<String>,
    /// Start over, discarding checkpoints in the run directory.
    #[arg(long)]
    fresh: bool,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
    /// Print the final record as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

fn fmt_opt(label: &str, v: Option<f64>) -> String {
    v.map(|v| format!(" {label} {v:.4}")).unwrap_or_default()
}

pub fn run(a: TrainArgs) -> Result<i32> {
    let mut spec = RunSpec::load(&a.spec, &a.overrides)?;
    if let Some(arch) = resolve_arch(None, a.arch_file.as_deref(), a.input_shape.as_deref())? {
        spec.model = arch;
    }
    let out = a.out.clone().unwrap_or_else(|| {
        let stem = a.spec.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into());
        PathBuf::from("runs").join(stem)
    });
    let signals = crate::cmd_signals::StopSignals::install()?;
    let opts = RunOptions {
        out_dir: out.clone(),
        stop: Some(&signals.stop),
        context: RunContext {
            sgdlab_version: env!("CARGO_PKG_VERSION").into(),
            git_revision: env!("SGDLAB_GIT_REV").into(),
        },
        dataset: None,
        fresh: a.fresh,
        base_dir: None,
    };
    let tty = std::io::stderr().is_terminal();
    let bar = if a.quiet || !tty {
        ProgressBar::hidden()
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10))
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} steps  {msg}  {per_sec} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    if !a.quiet {
        eprintln!("training {} on {} with {} -> {}", spec.model, spec.data, spec.optimizer.name(), out.display());
    }
    let plain = !a.quiet && !tty;
    let every = spec.eval.every;
    let mut last_line = 0u64;
    let mut on_progress = |p: &Progress| {
        if bar.length() != Some(p.total) {
            bar.set_length(p.total);
        }
        bar.set_position(p.step);
        let msg = format!(
            "epoch {:.2} loss {:.4}{}{}",
            p.epoch,
            p.batch_loss,
            fmt_opt("train acc", p.train_accuracy),
            fmt_opt("test acc", p.test_accuracy)
        );
        if plain
            && (p.step == p.total
                || (every > 0 && p.step.is_multiple_of(every))
                || p.step >= last_line + p.total.div_ceil(20))
        {
            last_line = p.step;
            eprintln!("step {}/{} {msg} ({:.1} s)", p.step, p.total, p.elapsed_s);
        } else {
            bar.set_message(msg);
        }
    };
    let record =
        train(&spec, &opts, &mut NoHook, &mut on_progress).with_context(|| format!("run {}", out.display()))?;
    bar.finish_and_clear();
    for w in &record.warnings {
        eprintln!("warning: {w}");
    }
    if a.json {
        println!("{}", serde_json::to_string(&record)?);
    } else if !a.quiet {
        let m = &record.final_metrics;
        let g = |k: &str| m.get(k).map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
        eprintln!(
            "{:?} after {} of {} steps in {:.2} s: train loss {} acc {}, test loss {} acc {}",
            record.status,
            record.steps_completed,
            record.total_steps,
            record.wall_time_s,
            g("train/loss"),
            g("train/accuracy"),
            g("test/loss"),
            g("test/accuracy")
        );
        if let Some(msg) = &record.message {
            eprintln!("{msg}");
        }
    }
    if record.status == RunStatus::Interrupted && !a.quiet {
        eprintln!("stopped by {}; run the same command again to resume", signals.name());
    }
    Ok(match record.status {
        RunStatus::Completed => 0,
        RunStatus::Diverged => 3,
        RunStatus::Interrupted => signals.exit_status(),
        RunStatus::Running | RunStatus::Failed => 1,
    })
}
