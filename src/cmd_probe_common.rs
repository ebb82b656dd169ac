//! Flags every `sgdlab probe` subcommand shares, added according to what the probe needs
//! (`sgdlab_probes::registry::Needs`): the checkpoint(s) and architecture, the data, how many
//! examples, batching, loss, precision, seed and output format; and loading what they name.

use crate::arch_args::resolve_arch;
use anyhow::{Context, Result, anyhow, bail};
use clap::{Arg, ArgAction, ArgMatches, Command, ValueEnum, value_parser};
use sgdlab_data::Dataset;
use sgdlab_nn::{Checkpoint, Loss, Model, load_checkpoint};
use sgdlab_probes::registry::{
    DEFAULT_BATCH_SIZE, DEFAULT_SAMPLES, DataProvenance, DataUse, EvalOptions, Needs, Precision, TrainedOn,
    resolve_data,
};
use std::path::{Path, PathBuf};

/// The name clap shows for a value of a `ValueEnum`.
fn value_name<E: ValueEnum>(v: E) -> &'static str {
    static_str(v.to_possible_value().expect("no skipped values").get_name().to_string())
}

/// A default value for clap (which takes `&'static str` defaults): built once per command, so
/// the few bytes leaked are bounded.
fn static_str(s: String) -> &'static str {
    s.leak()
}

/// Clap ids of the shared flags, apart from the ids of probe options (a probe may have an option
/// `steps` while `--steps` of a series is a shared flag of other probes).
mod ids {
    pub const MODEL: &str = "shared-model";
    pub const STEPS: &str = "shared-steps";
    pub const ARCH: &str = "shared-arch";
    pub const ARCH_FILE: &str = "shared-arch-file";
    pub const INPUT_SHAPE: &str = "shared-input-shape";
    pub const DATA: &str = "shared-data";
    pub const SPLIT: &str = "shared-split";
    pub const SAMPLES: &str = "shared-samples";
    pub const BATCH_SIZE: &str = "shared-batch-size";
    pub const LOSS: &str = "shared-loss";
    pub const DTYPE: &str = "shared-dtype";
    pub const SEED: &str = "shared-seed";
    pub const JSON: &str = "shared-json";
    pub const OUT: &str = "shared-out";
}

/// Adds the shared flags for a probe that needs `needs`; `series` lets `--model` repeat (with
/// `--steps`), `table` adds `--out FILE.csv`.
pub fn add_shared_args(cmd: Command, needs: &Needs, series: Option<&str>, table: Option<&str>) -> Command {
    let mut cmd = cmd.next_help_heading("Model and data");
    if needs.params {
        let model =
            Arg::new(ids::MODEL).long("model").value_name("CKPT").required(true).value_parser(value_parser!(PathBuf));
        cmd = cmd.arg(match series {
            Some(about) => model.action(ArgAction::Append).help(format!(
                "Checkpoint (safetensors) written by sgdlab, or by PyTorch with --arch; repeat it for a \
                 training run's checkpoints to get {about}"
            )),
            None => model.help("Checkpoint (safetensors) written by sgdlab, or by PyTorch with --arch"),
        });
        if series.is_some() {
            cmd = cmd.arg(
                Arg::new(ids::STEPS)
                    .long("steps")
                    .value_name("STEPS")
                    .value_delimiter(',')
                    .value_parser(value_parser!(u64))
                    .help("Training step of each checkpoint (comma-separated; default: from file names step-N.safetensors)"),
            );
        }
    }
    if needs.model {
        let arch = Arg::new(ids::ARCH).long("arch").value_name("ARCH");
        cmd = cmd.arg(if needs.params {
            arch.help("Architecture, for checkpoints without sgdlab metadata (e.g. mlp:784-100-10:relu)")
        } else {
            arch.required(true).help("Architecture of the networks (e.g. mlp:7-40-40-1:relu)")
        });
        if needs.params {
            cmd = cmd
                .arg(Arg::new(ids::ARCH_FILE).long("arch-file").value_name("FILE").value_parser(value_parser!(PathBuf)).help(
                    "The architecture as PyTorch prints it: a file holding `print(model)` of an nn.Sequential (with \
                     --input-shape), for its state_dict saved with safetensors",
                ))
                .arg(Arg::new(ids::INPUT_SHAPE).long("input-shape").value_name("SHAPE").help(
                    "Shape of one input example for --arch-file: C,H,W or CxHxW (C,L for Conv1d, D for flat)",
                ));
        }
    }
    if needs.data_needed() {
        let help = match (needs.params, needs.default_data) {
            (true, _) => "Dataset spec (see `sgdlab data specs`) [default: the data the checkpoint was trained on, \
                          from its sgdlab.data metadata]"
                .to_string(),
            (false, Some(d)) => format!("Dataset spec (see `sgdlab data specs`) [default: {d}]"),
            (false, None) => "Dataset spec (see `sgdlab data specs`)".to_string(),
        };
        cmd = cmd.arg(Arg::new(ids::DATA).long("data").value_name("SPEC").help(help));
    }
    if matches!(needs.data, DataUse::Eval) {
        cmd = cmd.arg(Arg::new(ids::SPLIT).long("split").value_name("NAME").help(
            "Split to evaluate [default: the checkpoint's training split when the data came from it, else train, \
             or all for single-split sets]",
        ));
    }
    if needs.subsets() {
        cmd = cmd
            .arg(
                Arg::new(ids::SAMPLES)
                    .long("samples")
                    .value_name("N")
                    .value_parser(value_parser!(usize))
                    .default_value(static_str(DEFAULT_SAMPLES.to_string()))
                    .help("Examples evaluated per split: a seeded subset of N (0 = the whole split)"),
            )
            .arg(
                Arg::new(ids::BATCH_SIZE)
                    .long("batch-size")
                    .value_name("B")
                    .value_parser(value_parser!(usize))
                    .default_value(static_str(DEFAULT_BATCH_SIZE.to_string()))
                    .help("Examples per batch in each pass (0 = one batch); results are means over all of them"),
            );
    }
    if needs.loss {
        cmd = cmd.arg(
            Arg::new(ids::LOSS)
                .long("loss")
                .value_name("LOSS")
                .value_parser(|v: &str| v.parse::<Loss>())
                .default_value(static_str(EvalOptions::default().loss.to_string()))
                .help(
                    "Loss the curvature and gradients refer to: cross_entropy (ce), mse, logistic (bce), \
                     or sobolev:s=S (1 output on a periodic grid: the whole split in order, one batch)",
                ),
        );
    }
    if needs.model {
        cmd = cmd.arg(
            Arg::new(ids::DTYPE)
                .long("dtype")
                .value_name("DTYPE")
                .value_parser(value_parser!(Precision))
                .default_value(value_name(Precision::default()))
                .help("Precision of the computation (parameters and data are converted)"),
        );
    }
    if needs.seeded() {
        cmd = cmd.arg(
            Arg::new(ids::SEED)
                .long("seed")
                .value_name("S")
                .value_parser(value_parser!(u64))
                .default_value("0")
                .help("Seed of every random choice (subsets, probe vectors, directions, draws)"),
        );
    }
    cmd = cmd.next_help_heading("Output").arg(
        Arg::new(ids::JSON).long("json").action(ArgAction::SetTrue).help("Print exactly one JSON object on stdout"),
    );
    if let Some(what) = table {
        cmd = cmd.arg(
            Arg::new(ids::OUT)
                .long("out")
                .value_name("FILE.csv")
                .value_parser(value_parser!(PathBuf))
                .help(format!("Write {what} as CSV")),
        );
    }
    cmd
}

/// The shared flags as parsed.
pub struct SharedArgs {
    pub models: Vec<PathBuf>,
    pub steps: Vec<u64>,
    pub arch: Option<String>,
    pub arch_file: Option<PathBuf>,
    pub input_shape: Option<String>,
    pub data: Option<String>,
    pub split: Option<String>,
    pub samples: usize,
    pub batch_size: usize,
    pub loss: Loss,
    pub dtype: Precision,
    pub seed: u64,
    pub json: bool,
    pub out: Option<PathBuf>,
}

impl SharedArgs {
    /// Reads the flags [`add_shared_args`] added (defaults for the others).
    pub fn from_matches(m: &ArgMatches) -> Self {
        let has = |id: &str| m.try_contains_id(id).unwrap_or(false);
        let many = |id: &str| -> Vec<PathBuf> {
            if has(id) {
                m.get_many::<PathBuf>(id).map(|v| v.cloned().collect()).unwrap_or_default()
            } else {
                Vec::new()
            }
        };
        let string = |id: &str| if has(id) { m.get_one::<String>(id).cloned() } else { None };
        let d = EvalOptions::default();
        SharedArgs {
            models: many(ids::MODEL),
            steps: if has(ids::STEPS) {
                m.get_many::<u64>(ids::STEPS).map(|v| v.copied().collect()).unwrap_or_default()
            } else {
                Vec::new()
            },
            arch: string(ids::ARCH),
            arch_file: if has(ids::ARCH_FILE) { m.get_one::<PathBuf>(ids::ARCH_FILE).cloned() } else { None },
            input_shape: string(ids::INPUT_SHAPE),
            data: string(ids::DATA),
            split: string(ids::SPLIT),
            samples: if has(ids::SAMPLES) { *m.get_one(ids::SAMPLES).expect("defaulted") } else { d.samples },
            batch_size: if has(ids::BATCH_SIZE) {
                *m.get_one(ids::BATCH_SIZE).expect("defaulted")
            } else {
                d.batch_size
            },
            loss: if has(ids::LOSS) { *m.get_one::<Loss>(ids::LOSS).expect("defaulted") } else { d.loss },
            dtype: if has(ids::DTYPE) { *m.get_one(ids::DTYPE).expect("defaulted") } else { Precision::default() },
            seed: if has(ids::SEED) { *m.get_one(ids::SEED).expect("defaulted") } else { d.seed },
            json: m.get_flag(ids::JSON),
            out: if has(ids::OUT) { m.get_one::<PathBuf>(ids::OUT).cloned() } else { None },
        }
    }
}

/// What a probe works on, loaded from the shared flags.
pub struct Loaded {
    /// The checkpoints, in the order given (empty for probes without parameters).
    pub checkpoints: Vec<(PathBuf, Checkpoint<f64>)>,
    /// The model of the checkpoints, or of `--arch` for probes without parameters.
    pub model: Option<Model>,
    pub data: Option<(Dataset, DataProvenance)>,
    /// What the first checkpoint says about its training run.
    pub trained_on: Option<TrainedOn>,
}

impl SharedArgs {
    /// Loads the checkpoint(s), the model and the data the probe needs; the data spec comes from
    /// `--data`, else from the checkpoint's metadata (an error when it has none).
    pub fn load(&self, needs: &Needs) -> Result<Loaded> {
        let arch = resolve_arch(self.arch.as_deref(), self.arch_file.as_deref(), self.input_shape.as_deref())?;
        let mut checkpoints = Vec::with_capacity(self.models.len());
        for path in &self.models {
            checkpoints.push((path.clone(), load_checkpoint::<f64>(path, arch.as_ref())?));
        }
        let model = match (checkpoints.first(), &arch) {
            (Some((_, ck)), _) => Some(ck.model.clone()),
            (None, Some(a)) if needs.model => Some(Model::new(a)),
            (None, _) => None,
        };
        if let Some((path, ck)) = checkpoints.iter().skip(1).find(|(_, ck)| Some(&ck.model) != model.as_ref()) {
            bail!(
                "{} is a {} but {} is a {}",
                path.display(),
                ck.model.describe(),
                self.models[0].display(),
                model.as_ref().map_or(String::new(), Model::describe)
            );
        }
        let trained_on = checkpoints.first().map(|(_, ck)| TrainedOn::from_metadata(&ck.metadata));
        let first = checkpoints.first().map(|(p, _)| p.as_path()).zip(trained_on.as_ref());
        let provenance = resolve_data(self.data.as_deref(), first, needs).map_err(|e| anyhow!(e))?;
        if let Some(p) = &provenance {
            check_same_training_data(&checkpoints, p)?;
        }
        let data = match provenance {
            Some(p) => {
                let d = sgdlab_data::load_dataset(&p.spec).with_context(|| format!("data {}", p.spec))?;
                Some((d, p))
            }
            None => None,
        };
        Ok(Loaded { checkpoints, model, data, trained_on })
    }

    /// The evaluation options: `--split`, else the checkpoint's training split when the data
    /// came from the checkpoint.
    pub fn eval_options(&self, data: Option<&DataProvenance>) -> EvalOptions {
        EvalOptions {
            split: self.split.clone().or_else(|| data.and_then(|d| d.trained_split.clone())),
            samples: self.samples,
            batch_size: self.batch_size,
            loss: self.loss,
            seed: self.seed,
        }
    }
}

/// Checkpoints of one series taken from their own metadata must agree on their training data.
fn check_same_training_data(checkpoints: &[(PathBuf, Checkpoint<f64>)], p: &DataProvenance) -> Result<()> {
    use sgdlab_probes::registry::DataSource;
    match p.source {
        DataSource::Checkpoint => {
            for (path, ck) in checkpoints.iter().skip(1) {
                let theirs = TrainedOn::from_metadata(&ck.metadata).data;
                if theirs.as_deref() != Some(p.spec.as_str()) {
                    bail!(
                        "{} was trained on {} but {} on {}: pass --data SPEC",
                        path.display(),
                        theirs.as_deref().unwrap_or("unrecorded data"),
                        checkpoints[0].0.display(),
                        p.spec
                    );
                }
            }
            Ok(())
        }
        DataSource::Given | DataSource::ProbeDefault => Ok(()),
    }
}

/// Steps of checkpoints: `steps` if given, else the `N` of file names `step-N.safetensors`.
pub fn checkpoint_steps(paths: &[PathBuf], steps: &[u64]) -> Result<Vec<u64>> {
    if !steps.is_empty() {
        if steps.len() != paths.len() {
            bail!("{} checkpoints but {} --steps", paths.len(), steps.len());
        }
        return Ok(steps.to_vec());
    }
    paths.iter().map(|p| step_of(p)).collect()
}

fn step_of(p: &Path) -> Result<u64> {
    p.file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.strip_prefix("step-"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("cannot read a step from {} (name it step-N.safetensors or pass --steps)", p.display()))
}

/// Writes `text` to stdout; a closed pipe (`| head`) is the reader's choice, not an error.
pub fn print(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the result"),
    }
}
