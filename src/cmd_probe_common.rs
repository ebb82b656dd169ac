//! Arguments every `sgdlab probe` subcommand shares: the model (checkpoint + optional
//! architecture), the data, how many examples, batching, precision, seed, output format.

use crate::arch_args::resolve_arch;
use anyhow::{Context, Result, bail};
use sgdlab_data::Dataset;
use sgdlab_linalg::RngStream;
use sgdlab_nn::{Loss, Model, Params, load_checkpoint};
use sgdlab_probes::EvalSet;
use std::path::PathBuf;

/// Model, data and evaluation options shared by all probes.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelDataArgs {
    /// Checkpoint (safetensors) written by sgdlab, or by PyTorch with --arch.
    #[arg(long, value_name = "CKPT")]
    pub model: PathBuf,
    /// Architecture, for checkpoints without sgdlab metadata (e.g. mlp:784-100-10:relu).
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// The architecture as PyTorch prints it: a file holding `print(model)` of an nn.Sequential
    /// (with --input-shape), for its `state_dict` saved with safetensors.
    #[arg(long, value_name = "FILE")]
    pub arch_file: Option<PathBuf>,
    /// Shape of one input example for --arch-file: C,H,W or CxHxW (C,L for Conv1d, D for flat).
    #[arg(long, value_name = "SHAPE")]
    pub input_shape: Option<String>,
    /// Dataset spec (e.g. mnist1d; see `sgdlab data specs`).
    #[arg(long, value_name = "SPEC", default_value = "mnist1d")]
    pub data: String,
    /// Split to evaluate on (default: train, or `all` for single-split sets).
    #[arg(long, value_name = "NAME")]
    pub split: Option<String>,
    /// Number of examples (a seeded subset; 0 = the whole split).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub samples: usize,
    /// Examples per batch in each pass (0 = one batch); results are means over the whole set.
    #[arg(long, value_name = "B", default_value_t = 1000)]
    pub batch_size: usize,
    /// Loss the curvature refers to.
    #[arg(long, value_name = "LOSS", default_value = "cross_entropy")]
    pub loss: String,
    /// Precision of the computation.
    #[arg(long, value_name = "f32|f64", default_value = "f64")]
    pub dtype: String,
    /// Seed of every random choice (subset, probes, directions).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// What a probe works on.
pub struct Loaded {
    pub model: Model,
    pub params: Params<f64>,
    #[allow(dead_code)] // read by the simplicity probes
    pub data: Dataset,
    pub set: EvalSet<f64>,
    pub loss: Loss,
    pub stream: RngStream,
}

impl ModelDataArgs {
    /// Loads checkpoint and data, checks they fit, and draws the evaluation subset.
    pub fn load(&self) -> Result<Loaded> {
        let arch = resolve_arch(self.arch.as_deref(), self.arch_file.as_deref(), self.input_shape.as_deref())?;
        let ck = load_checkpoint::<f64>(&self.model, arch.as_ref())?;
        let data = sgdlab_data::load_dataset(&self.data)?;
        let split = match &self.split {
            Some(s) => data.split(s)?,
            None => data.train().or_else(|_| data.split("all"))?,
        };
        let loss: Loss = self.loss.parse().map_err(anyhow::Error::msg)?;
        if !matches!(self.dtype.as_str(), "f32" | "f64") {
            bail!("--dtype must be f32 or f64, got '{}'", self.dtype);
        }
        if split.dim() != ck.model.in_dim() {
            bail!(
                "model {} takes {} inputs but data {} has {} features",
                ck.model.describe(),
                ck.model.in_dim(),
                self.data,
                split.dim()
            );
        }
        let stream = RngStream::new(self.seed);
        let set = EvalSet::from_split(split, self.samples, &stream);
        Ok(Loaded { model: ck.model, params: ck.params, data, set, loss, stream })
    }
}

/// Prints `value` as one JSON object (with --json) or through `table` otherwise.
pub fn emit(json: bool, value: &serde_json::Value, table: impl FnOnce() -> String) -> Result<()> {
    use std::io::Write;
    let text =
        if json { format!("{}\n", serde_json::to_string(value).context("serialising the result")?) } else { table() };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the result"),
    }
}
