//! What a probe measures on ([`ProbeInput`], [`EvalOptions`]), where its data came from
//! ([`resolve_data`], [`DataProvenance`]), what it evaluated ([`Evaluated`], [`InputSummary`]),
//! and the grids probes hand to `--out FILE.csv` ([`Table`]).

use super::Needs;
use crate::common::{EvalSet, ProbeError};
use crate::curvature::CurvatureContext;
use serde::Serialize;
use sgdlab_data::{Dataset, Split};
use sgdlab_linalg::{RngStream, Scalar};
use sgdlab_nn::{DATA_METADATA_KEY, Loss, Model, Params, SEED_METADATA_KEY, SPLIT_METADATA_KEY};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// Examples a probe evaluates by default (a seeded subset of the split).
pub const DEFAULT_SAMPLES: usize = 1000;
/// Examples per batch of each pass by default.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// How the evaluation examples are drawn from the data, shared by every probe that needs data.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EvalOptions {
    /// The split evaluated (`None`: `train`, or `all` for single-split sets).
    pub split: Option<String>,
    /// Examples drawn from the split (a seeded subset; 0 = the whole split).
    pub samples: usize,
    /// Examples per batch of each pass (0 = one batch); results are means over the whole set.
    pub batch_size: usize,
    /// The loss curvature and gradients refer to.
    pub loss: Loss,
    /// Seed of every random choice (subset, probe vectors, directions).
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            split: None,
            samples: DEFAULT_SAMPLES,
            batch_size: DEFAULT_BATCH_SIZE,
            loss: Loss::CrossEntropy,
            seed: 0,
        }
    }
}

/// Everything a measurement works on. Fields a probe does not need ([`Needs`]) may be `None`;
/// [`super::Probe::measure`] checks that those it needs are present.
pub struct ProbeInput<'a> {
    pub model: Option<&'a Model>,
    pub params: Option<&'a Params<f64>>,
    pub data: Option<&'a Dataset>,
    /// The data spec `data` was loaded from (for provenance in the output, and for probes that
    /// read the spec itself: spectral-bias takes its target from a `sines` spec).
    pub data_spec: Option<&'a str>,
    pub eval: &'a EvalOptions,
    /// The probe's own random stream (derived by the caller from the seed and the probe's label,
    /// so that adding a probe never changes another's numbers).
    pub stream: RngStream,
    /// Adam's second moment at these parameters (a study run's optimiser state), for probes
    /// that precondition like Adam; `None` when the run has none (another optimiser, step 0, or
    /// a checkpoint probed from the command line).
    pub adam: Option<&'a AdamState>,
}

/// Adam's second-moment state at the measured parameters: `exp_avg_sq` = `v` (one value per
/// parameter, PyTorch's name), `steps` = the number `t` of Adam steps taken, and the optimiser's
/// `beta2` and `eps`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdamState {
    pub exp_avg_sq: Vec<f64>,
    pub steps: u64,
    pub beta2: f64,
    pub eps: f64,
}

impl AdamState {
    /// Adam's element-wise denominator `sqrt(v / (1 - beta2^t)) + eps`, as `torch.optim.Adam`
    /// divides the (bias-corrected) first moment by it; an error for a state without steps, or
    /// of another length than `dim`.
    pub fn denominator(&self, dim: usize) -> Result<Vec<f64>, ProbeError> {
        if self.steps == 0 {
            return Err(ProbeError::Invalid("Adam's state has no steps (v_hat is undefined at step 0)".into()));
        }
        if self.exp_avg_sq.len() != dim {
            return Err(ProbeError::Invalid(format!(
                "Adam's state has {} values for {dim} parameters",
                self.exp_avg_sq.len()
            )));
        }
        let bc2 = 1.0 - self.beta2.powi(self.steps.min(i32::MAX as u64) as i32);
        Ok(self.exp_avg_sq.iter().map(|v| (v / bc2).sqrt() + self.eps).collect())
    }
}

impl<'a> ProbeInput<'a> {
    /// The model, or an error naming the probe.
    pub fn model(&self) -> Result<&'a Model, ProbeError> {
        self.model.ok_or_else(|| ProbeError::Invalid("this probe needs a model".into()))
    }

    /// The parameters, or an error.
    pub fn params(&self) -> Result<&'a Params<f64>, ProbeError> {
        self.params.ok_or_else(|| ProbeError::Invalid("this probe needs a checkpoint (parameters)".into()))
    }

    /// The parameters as a flat vector in precision `T`.
    pub fn params_as<T: Scalar>(&self) -> Result<Vec<T>, ProbeError> {
        Ok(self.params()?.cast::<T>().into_vec())
    }

    /// The dataset, or an error.
    pub fn data(&self) -> Result<&'a Dataset, ProbeError> {
        self.data.ok_or_else(|| ProbeError::Invalid("this probe needs data".into()))
    }

    /// The data spec, or an error.
    pub fn data_spec(&self) -> Result<&'a str, ProbeError> {
        self.data_spec.ok_or_else(|| ProbeError::Invalid("this probe needs a data spec".into()))
    }

    /// The evaluated split: `eval.split`, or `train` (`all` for single-split sets).
    pub fn split(&self) -> Result<&'a Split, ProbeError> {
        let d = self.data()?;
        let r = match &self.eval.split {
            Some(s) => d.split(s),
            None => d.train().or_else(|_| d.split("all")),
        };
        r.map_err(|e| ProbeError::Invalid(e.to_string()))
    }

    /// The evaluation examples in precision `T` (the seeded subset of [`ProbeInput::split`]).
    pub fn eval_set<T: Scalar>(&self) -> Result<EvalSet<T>, ProbeError> {
        Ok(EvalSet::from_split(self.split()?, self.eval.samples, &self.stream))
    }

    /// What [`ProbeInput::eval_set`] evaluates.
    pub fn evaluated(&self) -> Result<Evaluated, ProbeError> {
        Ok(Evaluated::new(self.split()?, self.eval.samples))
    }

    /// The split `name` of the data, subsampled like the evaluation set (its own stream, the
    /// child `name`), with what it evaluates.
    pub fn named_set<T: Scalar>(&self, name: &str) -> Result<(EvalSet<T>, Evaluated), ProbeError> {
        let split = self.data()?.split(name).map_err(|e| ProbeError::Invalid(e.to_string()))?;
        let set = EvalSet::from_split(split, self.eval.samples, &self.stream.child(name));
        Ok((set, Evaluated::new(split, self.eval.samples)))
    }

    /// Model, parameters and evaluation set in precision `T`, with what the set evaluates.
    pub fn evaluation<T: Scalar>(&self) -> Result<Evaluation<'a, T>, ProbeError> {
        Ok(Evaluation {
            model: self.model()?,
            params: self.params_as()?,
            set: self.eval_set()?,
            evaluated: self.evaluated()?,
            batch_size: self.eval.batch_size,
            loss: self.eval.loss,
        })
    }

    /// Checks that what `needs` asks for is present and that model and data fit.
    pub fn check(&self, needs: &Needs) -> Result<(), ProbeError> {
        if needs.model {
            self.model()?;
        }
        if needs.params {
            crate::simplicity::check_params(self.model()?, self.params()?.as_slice())?;
        }
        if needs.data_needed() {
            let d = self.data()?;
            if let Some(m) = self.model
                && d.dim() != m.in_dim()
            {
                return Err(ProbeError::Invalid(format!(
                    "model {} takes {} inputs but data {} has {} features",
                    m.describe(),
                    m.in_dim(),
                    self.data_spec.unwrap_or(d.name()),
                    d.dim()
                )));
            }
        }
        Ok(())
    }
}

/// Model, parameters and the evaluation set of one measurement, in precision `T`.
pub struct Evaluation<'a, T> {
    pub model: &'a Model,
    pub params: Vec<T>,
    pub set: EvalSet<T>,
    pub evaluated: Evaluated,
    pub batch_size: usize,
    pub loss: Loss,
}

impl<T: Scalar> Evaluation<'_, T> {
    /// The curvature context of the mean loss over the set (batches of `batch_size`). A loss that
    /// couples the examples (Sobolev) needs the whole split, in order: a seeded subset is refused.
    pub fn context(&self) -> Result<CurvatureContext<'_, T>, ProbeError> {
        if self.loss.couples_examples() && self.evaluated.subset {
            return Err(ProbeError::Invalid(format!(
                "loss {} couples the examples (a DFT over the whole grid) and needs the whole {} split in order, not a seeded subset of {} of {} examples: give --samples 0",
                self.loss, self.evaluated.split, self.evaluated.examples, self.evaluated.of
            )));
        }
        CurvatureContext::new(self.model, &self.params, &self.set, self.batch_size, self.loss)
    }
}

/// The examples of one split a measurement evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Evaluated {
    pub split: String,
    /// Examples evaluated.
    pub examples: usize,
    /// Examples in the split.
    pub of: usize,
    /// Whether `examples` is a seeded subset of the split (`examples < of`).
    pub subset: bool,
}

impl Evaluated {
    /// `samples` examples of `split` (0 or more than it has: all of them), as
    /// [`EvalSet::from_split`] draws them.
    pub fn new(split: &Split, samples: usize) -> Self {
        Evaluated::counts(split.name(), samples, split.len())
    }

    /// `samples` of `of` examples of the split `name` (0 or more than `of`: all).
    pub fn counts(name: &str, samples: usize, of: usize) -> Self {
        let examples = if samples == 0 || samples >= of { of } else { samples };
        Evaluated { split: name.to_string(), examples, of, subset: examples < of }
    }

    /// The whole split.
    pub fn whole(split: &Split) -> Self {
        Evaluated::counts(split.name(), 0, split.len())
    }

    /// "train: 1000 of 4000 examples (a seeded subset)".
    pub fn describe(&self) -> String {
        let what = if self.subset { "a seeded subset" } else { "the whole split" };
        format!("{}: {} of {} examples ({what})", self.split, self.examples, self.of)
    }
}

/// A grid of numbers with named columns, written as CSV by `--out FILE.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    pub columns: Vec<&'static str>,
    /// Rows, each with one value per column.
    pub rows: Vec<Vec<f64>>,
}

impl Table {
    /// A table from equally long columns.
    pub fn from_columns(columns: &[(&'static str, &[f64])]) -> Table {
        let n = columns.first().map_or(0, |(_, c)| c.len());
        debug_assert!(columns.iter().all(|(_, c)| c.len() == n), "columns of one table have one length");
        Table {
            columns: columns.iter().map(|(name, _)| *name).collect(),
            rows: (0..n).map(|i| columns.iter().map(|(_, c)| c[i]).collect()).collect(),
        }
    }

    /// Header line and one line per row, comma-separated (values with Rust's shortest
    /// round-trip formatting).
    pub fn to_csv(&self) -> String {
        let mut s = self.columns.join(",");
        s.push('\n');
        for r in &self.rows {
            let cells: Vec<String> = r.iter().map(f64::to_string).collect();
            let _ = writeln!(s, "{}", cells.join(","));
        }
        s
    }
}

/// Where a probe's data spec came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// Given explicitly (`--data`).
    Given,
    /// The checkpoint's `sgdlab.data` metadata: the data it was trained on.
    Checkpoint,
    /// The probe's own default ([`Needs::default_data`]; only probes that read no checkpoint).
    ProbeDefault,
}

impl DataSource {
    /// In words, for the text header.
    pub fn describe(self) -> &'static str {
        match self {
            DataSource::Given => "given with --data",
            DataSource::Checkpoint => "the checkpoint's training data, from its sgdlab.data metadata",
            DataSource::ProbeDefault => "this probe's default",
        }
    }
}

/// The data spec a probe uses and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataProvenance {
    pub spec: String,
    pub source: DataSource,
    /// The split the checkpoint was trained on (its `sgdlab.split`), when the data came from
    /// the checkpoint: the default evaluation split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trained_split: Option<String>,
}

/// What a checkpoint says about its training run (its `sgdlab.data`, `sgdlab.split`,
/// `sgdlab.seed` metadata).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TrainedOn {
    pub data: Option<String>,
    pub split: Option<String>,
    pub seed: Option<String>,
}

impl TrainedOn {
    /// From a checkpoint's metadata.
    pub fn from_metadata(metadata: &BTreeMap<String, String>) -> Self {
        TrainedOn {
            data: metadata.get(DATA_METADATA_KEY).cloned(),
            split: metadata.get(SPLIT_METADATA_KEY).cloned(),
            seed: metadata.get(SEED_METADATA_KEY).cloned(),
        }
    }

    /// Whether the checkpoint says nothing.
    pub fn is_empty(&self) -> bool {
        self.data.is_none() && self.split.is_none() && self.seed.is_none()
    }
}

/// The data a probe with `needs` uses: `given` (`--data`) if any; else the data the checkpoint
/// at `path` was trained on (its `sgdlab.data`); else the probe's default if it reads no
/// checkpoint. `Ok(None)` when the probe needs no data. A probe that needs data and has none of
/// these is an error, never a silent default.
pub fn resolve_data(
    given: Option<&str>,
    checkpoint: Option<(&Path, &TrainedOn)>,
    needs: &Needs,
) -> Result<Option<DataProvenance>, String> {
    if !needs.data_needed() {
        return Ok(None);
    }
    if let Some(spec) = given {
        return Ok(Some(DataProvenance { spec: spec.to_string(), source: DataSource::Given, trained_split: None }));
    }
    match (checkpoint, needs.default_data) {
        (Some((_, t)), _) if t.data.is_some() => Ok(Some(DataProvenance {
            spec: t.data.clone().expect("checked"),
            source: DataSource::Checkpoint,
            trained_split: t.split.clone(),
        })),
        (Some((path, _)), _) => Err(format!(
            "{}: this checkpoint does not say what data it was trained on: pass --data SPEC",
            path.display()
        )),
        (None, Some(spec)) => {
            Ok(Some(DataProvenance { spec: spec.to_string(), source: DataSource::ProbeDefault, trained_split: None }))
        }
        (None, None) => Err("this probe needs data: pass --data SPEC".into()),
    }
}

/// What a measurement was run on, stated with every probe's output (the header of `sgdlab probe
/// NAME`, text and JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputSummary {
    /// The checkpoint(s) (several for a series over a run's checkpoints).
    pub model: Vec<String>,
    pub arch: Option<String>,
    pub num_params: Option<usize>,
    pub data: Option<DataProvenance>,
    /// What the (first) checkpoint says about its training run.
    pub trained_on: Option<TrainedOn>,
    /// The examples evaluated, split by split.
    pub evaluated: Vec<Evaluated>,
    /// Examples per batch (for probes that draw subsets).
    pub batch_size: Option<usize>,
    /// The loss (for probes whose numbers depend on it).
    pub loss: Option<String>,
    /// The precision (for probes of a model).
    pub dtype: Option<&'static str>,
    /// The seed (for probes whose numbers depend on it).
    pub seed: Option<u64>,
}

impl InputSummary {
    /// Aligned lines: model, data and where it came from, examples per split, loss and
    /// precision.
    pub fn text(&self, probe: &str) -> String {
        let mut t = format!("probe     {probe}\n");
        if let Some(arch) = &self.arch {
            let params = self.num_params.map_or(String::new(), |n| format!(", {n} parameters"));
            match self.model.as_slice() {
                [] => {
                    let _ = writeln!(t, "model     {arch}{params} (no checkpoint)");
                }
                [one] => {
                    let _ = writeln!(t, "model     {one} ({arch}{params})");
                }
                many => {
                    let _ = writeln!(t, "model     {} checkpoints of {arch}{params}", many.len());
                }
            }
        }
        if let Some(tr) = self.trained_on.as_ref().filter(|t| !t.is_empty()) {
            let f = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
            let _ = writeln!(t, "trained   on {}, split {}, seed {}", f(&tr.data), f(&tr.split), f(&tr.seed));
        }
        match &self.data {
            Some(d) => {
                let _ = writeln!(t, "data      {} ({})", d.spec, d.source.describe());
            }
            None => t.push_str("data      none\n"),
        }
        for (i, e) in self.evaluated.iter().enumerate() {
            let _ = writeln!(t, "{}{}", if i == 0 { "examples  " } else { "          " }, e.describe());
        }
        let mut run = Vec::new();
        if let Some(l) = &self.loss {
            run.push(format!("loss {l}"));
        }
        if let Some(b) = self.batch_size {
            run.push(if b == 0 { "one batch".to_string() } else { format!("batches of {b}") });
        }
        run.extend(self.dtype.map(str::to_string));
        run.extend(self.seed.map(|s| format!("seed {s}")));
        if !run.is_empty() {
            let _ = writeln!(t, "run       {}", run.join(", "));
        }
        t
    }
}
