//! Run specs in TOML: model, data, optimiser, schedule, regularisers, budget, seed, dtype,
//! evaluation and checkpoint schedules.
//!
//! Unknown keys and type mismatches are errors naming the key and the file (and line);
//! `--set key.path=value` overrides keep the type of the value they replace. The resolved spec
//! (every default written out) is what a run directory stores as `spec.toml`.
//!
//! ```toml
//! seed = 0
//! dtype = "f32"                       # f32 (default) or f64
//! model = "mlp:40-100-100-10:relu"    # or a [model] table
//! data = "mnist1d"                    # a dataset spec (sgdlab data info --help)
//! loss = "cross_entropy"              # cross_entropy | mse | logistic | sobolev:s=S (S any finite
//!                                     # real; 1 output, value targets on a periodic grid in order,
//!                                     # full batches only: gd, or optimizer.batch_size = n)
//! reduction = "mean"                  # mean | sum
//!
//! [init]
//! from = "RUN/final.safetensors"      # optional: start from these parameters (same architecture;
//!                                     # a relative path is resolved against the run's base
//!                                     # directory: the study directory in a study, else the
//!                                     # current directory); the keys below are then unused
//! scheme = "auto"                     # auto | he | lecun | xavier | orthogonal | torch
//! scale = 1.0
//! bias = "zero"                       # zero | torch
//! first_layer = "scheme"              # scheme | tile: a Linear(1, m) first layer whose units tile
//!                                     # the input interval (centres evenly spaced, |w| h ~ U(0.5, 2)
//!                                     # with h = (b - a) / m, Hat peaks / ReLU kinks at the centres;
//!                                     # sgdlab_nn::FirstLayerInit)
//! domain = [-1.0, 1.0]                # the interval [a, b] a tile first layer covers
//! tile_scale = 1.0                    # multiplies the tile weights, centres kept
//!
//! [optimizer]
//! name = "sgd"                        # sgd | gd | normalized_gd | adam | adamw | label_noise_sgd | noisy_sgd | noisy_gd | sam | entropy_sgd
//! lr = 0.1
//! batch_size = 32
//! momentum = 0.0
//! # normalized_gd (full batch): plain GD at lr until the training loss L(theta_t) falls below
//! # switch_loss (optional; without it, from the first step), then lr_t = min(lr / L(theta_t), max_lr)
//! # for the rest of the run; `optimizer/lr` logs the step size taken
//! # max_lr = 1000.0
//! # switch_loss = 1e-3
//! # noisy_gd / noisy_sgd: theta <- theta - lr (g + xi), with noise = one of
//! #   { kind = "isotropic", sigma = S } | { kind = "diagonal", sigma = S, variances = "d.npy" }
//! #   | { kind = "directions", sigma = S, directions = "u.npy" }
//! #   | { kind = "match_sgd", shape = "iso" | "diag" | "hessian_top", batch_size = 20, k = 5 }
//! #   (match_sgd: Tr Cov(xi) = Tr Sigma_SGD(batch_size) at the start parameters; crate::noise)
//!
//! [schedule]
//! kind = "constant"                   # constant | step | cosine | large_then_small
//! warmup_steps = 0                    # linear warm-up from 0 before any schedule
//!
//! [regularizer]
//! l2 = 0.0                            # adds (l2 / 2) ||theta||^2 to the loss
//! grad_norm = 0.0                     # adds mu ||grad L||^2 (gradient 2 mu H grad L, exact HVP)
//!
//! [budget]
//! epochs = 20                         # or steps = 5000 (steps = 0: initialisation only)
//! until_train_loss = 0.02             # optional: stop at the first evaluation reaching it
//! until_train_accuracy = 0.995        # optional (with both, both must hold)
//!
//! [eval]
//! every = 125                         # steps between evaluations (0 = off)
//! at = []                             # extra steps to evaluate at
//! log_spaced = 0                      # extra log-spaced evaluation points
//! train_subset = 1000                 # examples of the train split evaluated (0 = all)
//! test_subset = 0                     # examples of the test split evaluated (0 = all)
//! log_every = 10                      # minibatch loss and lr logged every N steps
//!
//! [checkpoint]
//! every = 0                           # steps between checkpoints (0 = only final)
//! every_seconds = 0                   # also checkpoint when this much wall time has passed (0 = off)
//! keep = 2                            # most recent checkpoints kept (0 = all)
//! ```
//!
//! Every float must be finite (TOML accepts `nan` and `inf`; a run spec does not), and each knob
//! within its range (learning rates positive, momenta and betas in [0, 1), noise levels and
//! weights non-negative, ...): the error names the key.

use crate::error::TrainError;
use serde::{Deserialize, Serialize};
use sgdlab_nn::{ArchSpec, InitSpec, Loss, Reduction};
use std::path::Path;

/// Element type of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    F32,
    F64,
}

fn default_loss() -> Loss {
    Loss::CrossEntropy
}
fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.999
}
fn default_adam_eps() -> f64 {
    1e-8
}
fn default_rho() -> f64 {
    0.05
}
fn default_gamma() -> f64 {
    0.1
}

/// Noise added to the gradient of noisy SGD/GD: `theta <- theta - lr (g + xi)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NoiseSpec {
    /// `xi ~ N(0, sigma^2 I)`.
    Isotropic { sigma: f64 },
    /// `xi_i ~ N(0, sigma^2 d_i)` with the variances `d` read from a `.npy` vector of length P
    /// (e.g. the diagonal of the SGD noise covariance).
    Diagonal { sigma: f64, variances: String },
    /// `xi = sigma * sum_j z_j u_j`, `z ~ N(0, I_k)`, with the directions `u_j` the rows of a
    /// `.npy` matrix `[k, P]` (e.g. top Hessian eigenvectors; Zhu et al. 2019, PROTOCOLS 8.1).
    Directions { sigma: f64, directions: String },
    /// Noise matched to SGD's with batch `batch_size` at the run's start parameters (Zhu et al.
    /// 2019, PROTOCOLS 8.1): the same total variance `Tr Sigma_SGD(B)`, so that the step noise
    /// `lr xi` has SGD's `lr^2 Tr Sigma_SGD(B)`; `shape` = `iso` (isotropic), `diag` (the diagonal
    /// of `Sigma_SGD`) or `hessian_top` (along the top-`k` Hessian eigenvectors, equal variance
    /// each). Computed once from the start parameters ([`crate::noise`]).
    MatchSgd {
        shape: MatchShape,
        batch_size: usize,
        #[serde(default = "default_match_k")]
        k: usize,
    },
}

fn default_match_k() -> usize {
    5
}

/// The covariance shape of [`NoiseSpec::MatchSgd`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchShape {
    /// `(Tr Sigma_SGD / D) I`.
    Iso,
    /// `diag(Sigma_SGD)`.
    Diag,
    /// `(Tr Sigma_SGD / k) U_k U_k^T`, `U_k` the top-`k` Hessian eigenvectors.
    HessianTop,
}

/// The optimiser and its knobs. Weight decay here is coupled (added to the gradient), except for
/// AdamW (decoupled, Loshchilov & Hutter 2019).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerSpec {
    /// Minibatch SGD with heavy-ball or Nesterov momentum (PyTorch semantics, no dampening).
    Sgd {
        lr: f64,
        batch_size: usize,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
        #[serde(default)]
        weight_decay: f64,
    },
    /// Full-batch gradient descent (the whole train split every step), optional momentum.
    Gd {
        lr: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    /// Full-batch GD with a step size normalised by the loss (PROTOCOLS 1.1: with an
    /// exponential-type loss, the direction of plain GD converges to the max-margin KKT point
    /// only at a 1/log t rate; lr / L speeds it up, Nacson et al. 2019). Plain GD at `lr` while
    /// the full-batch training loss `L(theta_t)` (the data loss, before the step) is at least
    /// `switch_loss`; from the first step whose loss is below it, and for the rest of the run,
    /// the step size is `min(lr / L(theta_t), max_lr)`. Without `switch_loss`, normalised from the
    /// first step. With a schedule, `lr` is the scheduled rate. The step where the switch happened
    /// is optimiser state (checkpointed).
    NormalizedGd {
        lr: f64,
        max_lr: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        switch_loss: Option<f64>,
    },
    /// Adam (Kingma & Ba 2015) with bias correction; coupled weight decay.
    Adam {
        lr: f64,
        batch_size: usize,
        #[serde(default = "default_beta1")]
        beta1: f64,
        #[serde(default = "default_beta2")]
        beta2: f64,
        #[serde(default = "default_adam_eps")]
        eps: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    /// AdamW: Adam with decoupled weight decay `theta <- theta (1 - lr wd)`.
    Adamw {
        lr: f64,
        batch_size: usize,
        #[serde(default = "default_beta1")]
        beta1: f64,
        #[serde(default = "default_beta2")]
        beta2: f64,
        #[serde(default = "default_adam_eps")]
        eps: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    /// SGD on freshly noised labels every step (Blanc et al. 2020; Damian et al. 2021): MSE targets
    /// get `N(0, sigma^2)` added; class labels are replaced by a uniform random class with
    /// probability `sigma`.
    LabelNoiseSgd {
        lr: f64,
        batch_size: usize,
        sigma: f64,
        #[serde(default)]
        momentum: f64,
    },
    /// Minibatch SGD plus injected gradient noise.
    NoisySgd { lr: f64, batch_size: usize, noise: NoiseSpec },
    /// Full-batch GD plus injected gradient noise (Langevin-like; Zhu et al. 2019).
    NoisyGd { lr: f64, noise: NoiseSpec },
    /// Sharpness-aware minimisation (Foret et al. 2021): the gradient at
    /// `theta + rho g / ||g||` on the same batch drives an SGD(momentum) step.
    Sam {
        lr: f64,
        batch_size: usize,
        #[serde(default = "default_rho")]
        rho: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        weight_decay: f64,
    },
    /// Entropy-SGD (Chaudhari et al. 2017; PROTOCOLS 7.4). Each outer step runs `inner_steps`
    /// SGLD steps on minibatches `x' <- x' - inner_lr [g(x') - gamma (x - x')] + sqrt(inner_lr)
    /// noise N(0, I)`, averages `mu <- (1 - alpha) mu + alpha x'`, then takes an outer step along
    /// `x - mu` with Nesterov momentum; `gamma_t = gamma0 (1 + gamma1)^t`. One "step" of the
    /// budget is one outer step (= `inner_steps` minibatch gradients).
    EntropySgd {
        lr: f64,
        batch_size: usize,
        #[serde(default = "default_inner_steps")]
        inner_steps: usize,
        #[serde(default = "default_inner_lr")]
        inner_lr: f64,
        #[serde(default = "default_gamma0")]
        gamma0: f64,
        #[serde(default = "default_gamma1")]
        gamma1: f64,
        #[serde(default = "default_alpha")]
        alpha: f64,
        #[serde(default = "default_langevin_noise")]
        noise: f64,
        #[serde(default = "default_entropy_momentum")]
        momentum: f64,
    },
}

fn default_inner_steps() -> usize {
    5
}
fn default_inner_lr() -> f64 {
    0.1
}
fn default_gamma0() -> f64 {
    0.03
}
fn default_gamma1() -> f64 {
    1e-3
}
fn default_alpha() -> f64 {
    0.25
}
fn default_langevin_noise() -> f64 {
    1e-4
}
fn default_entropy_momentum() -> f64 {
    0.9
}

impl OptimizerSpec {
    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd { lr, .. }
            | OptimizerSpec::Gd { lr, .. }
            | OptimizerSpec::NormalizedGd { lr, .. }
            | OptimizerSpec::Adam { lr, .. }
            | OptimizerSpec::Adamw { lr, .. }
            | OptimizerSpec::LabelNoiseSgd { lr, .. }
            | OptimizerSpec::NoisySgd { lr, .. }
            | OptimizerSpec::NoisyGd { lr, .. }
            | OptimizerSpec::Sam { lr, .. }
            | OptimizerSpec::EntropySgd { lr, .. } => *lr,
        }
    }

    /// Minibatch size; `None` for full-batch methods.
    pub fn batch_size(&self) -> Option<usize> {
        match self {
            OptimizerSpec::Gd { .. } | OptimizerSpec::NormalizedGd { .. } | OptimizerSpec::NoisyGd { .. } => None,
            OptimizerSpec::Sgd { batch_size, .. }
            | OptimizerSpec::Adam { batch_size, .. }
            | OptimizerSpec::Adamw { batch_size, .. }
            | OptimizerSpec::LabelNoiseSgd { batch_size, .. }
            | OptimizerSpec::NoisySgd { batch_size, .. }
            | OptimizerSpec::Sam { batch_size, .. }
            | OptimizerSpec::EntropySgd { batch_size, .. } => Some(*batch_size),
        }
    }

    /// The optimiser's name as written in specs.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerSpec::Sgd { .. } => "sgd",
            OptimizerSpec::Gd { .. } => "gd",
            OptimizerSpec::NormalizedGd { .. } => "normalized_gd",
            OptimizerSpec::Adam { .. } => "adam",
            OptimizerSpec::Adamw { .. } => "adamw",
            OptimizerSpec::LabelNoiseSgd { .. } => "label_noise_sgd",
            OptimizerSpec::NoisySgd { .. } => "noisy_sgd",
            OptimizerSpec::NoisyGd { .. } => "noisy_gd",
            OptimizerSpec::Sam { .. } => "sam",
            OptimizerSpec::EntropySgd { .. } => "entropy_sgd",
        }
    }
}

/// Learning-rate schedule, applied after an optional linear warm-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleSpec {
    Constant {
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Multiply by `gamma` every `step_size` steps, or at each of `milestones`.
    Step {
        #[serde(default)]
        step_size: u64,
        #[serde(default)]
        milestones: Vec<u64>,
        #[serde(default = "default_gamma")]
        gamma: f64,
        #[serde(default)]
        warmup_steps: u64,
    },
    /// Cosine from lr to `min_lr` over the budget (Loshchilov & Hutter 2017, no restarts).
    Cosine {
        #[serde(default)]
        min_lr: f64,
        #[serde(default)]
        warmup_steps: u64,
    },
    /// `lr` until `switch_step`, then `small_lr` (Andriushchenko et al. 2023, PROTOCOLS 9.2).
    LargeThenSmall {
        switch_step: u64,
        small_lr: f64,
        #[serde(default)]
        warmup_steps: u64,
    },
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        ScheduleSpec::Constant { warmup_steps: 0 }
    }
}

/// Explicit regularisers added to the training loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RegularizerSpec {
    /// `(l2 / 2) ||theta||^2`.
    #[serde(default)]
    pub l2: f64,
    /// `mu ||grad L||^2` on the minibatch (Barrett & Dherin 2021's explicit IGR with
    /// `mu = h / 4`; PROTOCOLS 4, 9.1, 9.3); its gradient `2 mu H grad L` uses the exact HVP.
    #[serde(default)]
    pub grad_norm: f64,
}

/// How long to train: exactly one of `steps` or `epochs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Stop early once the evaluated training loss is at most this (checked at evaluations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_train_loss: Option<f64>,
    /// Stop early once the evaluated training accuracy is at least this (with
    /// `until_train_loss`, both must hold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_train_accuracy: Option<f64>,
}

/// When and on what to evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    #[serde(default)]
    pub every: u64,
    #[serde(default)]
    pub at: Vec<u64>,
    #[serde(default)]
    pub log_spaced: u64,
    #[serde(default = "default_train_subset")]
    pub train_subset: usize,
    #[serde(default)]
    pub test_subset: usize,
    #[serde(default = "default_log_every")]
    pub log_every: u64,
}

fn default_train_subset() -> usize {
    1000
}
fn default_log_every() -> u64 {
    10
}

impl Default for EvalSpec {
    fn default() -> Self {
        EvalSpec { every: 0, at: Vec::new(), log_spaced: 0, train_subset: 1000, test_subset: 0, log_every: 10 }
    }
}

/// Checkpoint schedule. A checkpoint is written after step `t` when `every` divides `t`, or when
/// `every_seconds` of wall time have passed since the last one (for runs that must survive a kill
/// whatever their length: a study runner sets it). Resuming from any step is bit-identical, so
/// neither changes results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointSpec {
    #[serde(default)]
    pub every: u64,
    /// Wall-clock interval in seconds (0 = off; not written to `spec.toml` when 0, so specs
    /// without it keep their hashes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub every_seconds: u64,
    #[serde(default = "default_keep")]
    pub keep: usize,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn default_keep() -> usize {
    2
}

impl Default for CheckpointSpec {
    fn default() -> Self {
        CheckpointSpec { every: 0, every_seconds: 0, keep: 2 }
    }
}

/// A training run, fully described.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub dtype: Dtype,
    pub model: ArchSpec,
    #[serde(default)]
    pub init: InitSpec,
    pub data: String,
    #[serde(default = "default_loss")]
    pub loss: Loss,
    #[serde(default)]
    pub reduction: Reduction,
    pub optimizer: OptimizerSpec,
    #[serde(default)]
    pub schedule: ScheduleSpec,
    #[serde(default)]
    pub regularizer: RegularizerSpec,
    pub budget: BudgetSpec,
    #[serde(default)]
    pub eval: EvalSpec,
    #[serde(default)]
    pub checkpoint: CheckpointSpec,
}

/// The allowed values of a float knob (all finite).
#[derive(Debug, Clone, Copy)]
enum Range {
    Positive,
    NonNegative,
    /// `[0, 1]`.
    Probability,
    /// `[0, 1)`.
    Unit,
    /// `(0, 1]`.
    UnitOpen,
}

impl Range {
    fn contains(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Range::Positive => v > 0.0,
                Range::NonNegative => v >= 0.0,
                Range::Probability => (0.0..=1.0).contains(&v),
                Range::Unit => (0.0..1.0).contains(&v),
                Range::UnitOpen => v > 0.0 && v <= 1.0,
            }
    }

    fn describe(self) -> &'static str {
        match self {
            Range::Positive => "a finite positive number",
            Range::NonNegative => "a finite non-negative number",
            Range::Probability => "in [0, 1]",
            Range::Unit => "in [0, 1)",
            Range::UnitOpen => "in (0, 1]",
        }
    }
}

/// Turns a toml error into one line: `FILE:LINE: message`.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> TrainError {
    let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let msg = e.message().replace('\n', " ");
    TrainError::Spec(match line {
        Some(l) => format!("{file}:{l}: {msg}"),
        None => format!("{file}: {msg}"),
    })
}

fn parse_override(file: &str, ov: &str) -> Result<(Vec<String>, String), TrainError> {
    let (k, v) = ov.split_once('=').ok_or_else(|| {
        TrainError::Spec(format!("{file}: override '{ov}' is not KEY=VALUE (e.g. optimizer.lr=0.05)"))
    })?;
    let path: Vec<String> = k.trim().split('.').map(str::to_string).collect();
    if path.iter().any(String::is_empty) {
        return Err(TrainError::Spec(format!("{file}: override key '{k}' is malformed")));
    }
    Ok((path, v.trim().to_string()))
}

/// Parses `raw` as a value of the same TOML type as `old` (so `lr=1` stays a float, and a string
/// needs no quotes).
pub fn typed_value(key: &str, raw: &str, old: Option<&toml::Value>) -> Result<toml::Value, String> {
    use toml::Value;
    let literal = || -> Result<Value, String> {
        let doc: toml::Table =
            toml::from_str(&format!("v = {raw}")).map_err(|_| format!("'{raw}' is not a TOML value"))?;
        Ok(doc["v"].clone())
    };
    Ok(match old {
        Some(Value::String(_)) => Value::String(raw.trim_matches('"').to_string()),
        Some(Value::Integer(_)) => {
            Value::Integer(raw.parse().map_err(|_| format!("{key} expects an integer, got '{raw}'"))?)
        }
        Some(Value::Float(_)) => Value::Float(raw.parse().map_err(|_| format!("{key} expects a number, got '{raw}'"))?),
        Some(Value::Boolean(_)) => {
            Value::Boolean(raw.parse().map_err(|_| format!("{key} expects true or false, got '{raw}'"))?)
        }
        Some(Value::Array(_)) => {
            let v = literal()?;
            if !v.is_array() {
                return Err(format!("{key} expects an array like [1, 2], got '{raw}'"));
            }
            v
        }
        Some(Value::Table(_)) => return Err(format!("{key} is a table; set one of its keys (e.g. {key}.name=...)")),
        Some(Value::Datetime(_)) => return Err(format!("{key}: datetimes are not supported")),
        // A key absent from the resolved spec (an unset optional): take the literal, and let the
        // spec's types decide.
        None => literal().unwrap_or_else(|_| Value::String(raw.to_string())),
    })
}

impl RunSpec {
    /// Parses a spec from TOML text; `file` names the source in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Self, TrainError> {
        let spec: RunSpec = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        spec.validate(file)
    }

    /// Reads a spec file and applies `--set` overrides (`key.path=value`), keeping each value's
    /// type.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Spec(format!("{file}: {e}")))?;
        let spec = Self::from_toml(&text, &file)?;
        spec.with_overrides(overrides, &file)
    }

    /// Applies `key.path=value` overrides to this (resolved) spec.
    pub fn with_overrides(self, overrides: &[String], file: &str) -> Result<Self, TrainError> {
        if overrides.is_empty() {
            return Ok(self);
        }
        let mut value = toml::Value::try_from(&self).map_err(|e| TrainError::Spec(format!("{file}: {e}")))?;
        for ov in overrides {
            let (path, raw) = parse_override(file, ov)?;
            let key = path.join(".");
            let mut cur = &mut value;
            for (i, p) in path.iter().enumerate() {
                let table = match cur {
                    toml::Value::Table(t) => t,
                    _ => {
                        return Err(TrainError::Spec(format!(
                            "{file}: --set {key}: '{}' is not a table",
                            path[..i].join(".")
                        )));
                    }
                };
                if i + 1 == path.len() {
                    let v = typed_value(&key, &raw, table.get(p))
                        .map_err(|m| TrainError::Spec(format!("{file}: --set {m}")))?;
                    table.insert(p.clone(), v);
                    break;
                }
                // A string model can be overridden as a whole only.
                cur = table.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            }
        }
        let text = toml::to_string(&value).map_err(|e| TrainError::Spec(format!("{file}: {e}")))?;
        let spec: RunSpec = toml::from_str(&text).map_err(|e| {
            TrainError::Spec(format!(
                "{file} (after --set {}): {}",
                overrides.join(" "),
                e.message().replace('\n', " ")
            ))
        })?;
        spec.validate(file)
    }

    fn validate(self, file: &str) -> Result<Self, TrainError> {
        let err = |m: String| Err(TrainError::Spec(format!("{file}: {m}")));
        match (self.budget.steps, self.budget.epochs) {
            (Some(_), Some(_)) => return err("[budget] sets both steps and epochs; give one".into()),
            (None, None) => return err("[budget] needs steps or epochs".into()),
            (_, Some(0)) => {
                return err("[budget] epochs must be positive (steps = 0 measures the initialisation only)".into());
            }
            _ => {}
        }
        if self.optimizer.batch_size() == Some(0) {
            return err("optimizer.batch_size must be positive".into());
        }
        if let OptimizerSpec::NoisySgd { noise: NoiseSpec::MatchSgd { batch_size, k, shape }, .. }
        | OptimizerSpec::NoisyGd { noise: NoiseSpec::MatchSgd { batch_size, k, shape }, .. } = &self.optimizer
        {
            if *batch_size == 0 {
                return err("optimizer.noise.batch_size must be positive".into());
            }
            if *shape == MatchShape::HessianTop && *k == 0 {
                return err("optimizer.noise.k must be at least 1".into());
            }
        }
        if self.init.from.as_deref().is_some_and(str::is_empty) {
            return err("init.from is empty: give the path of a checkpoint (e.g. RUN/final.safetensors)".into());
        }
        if let OptimizerSpec::EntropySgd { inner_steps: 0, .. } = self.optimizer {
            return err("optimizer.inner_steps must be at least 1".into());
        }
        if let ScheduleSpec::Step { step_size: 0, milestones, .. } = &self.schedule
            && milestones.is_empty()
        {
            return err("a step schedule needs step_size or milestones".into());
        }
        for (key, value, range) in self.float_knobs() {
            if !range.contains(value) {
                return err(format!("{key} must be {}, got {value}", range.describe()));
            }
        }
        sgdlab_data::DatasetSpec::parse(&self.data).map_err(|e| TrainError::Spec(format!("{file}: data: {e}")))?;
        Ok(self)
    }

    /// Every float of the spec with its key and allowed range (checked by validation).
    fn float_knobs(&self) -> Vec<(String, f64, Range)> {
        use Range::{NonNegative, Positive, Probability, Unit, UnitOpen};
        let o = |k: &str| format!("optimizer.{k}");
        let mut v: Vec<(String, f64, Range)> = vec![(o("lr"), self.optimizer.lr(), Positive)];
        let noise = |v: &mut Vec<(String, f64, Range)>, n: &NoiseSpec| {
            let sigma = match n {
                NoiseSpec::Isotropic { sigma }
                | NoiseSpec::Diagonal { sigma, .. }
                | NoiseSpec::Directions { sigma, .. } => *sigma,
                NoiseSpec::MatchSgd { .. } => return,
            };
            v.push(("optimizer.noise.sigma".into(), sigma, NonNegative));
        };
        match &self.optimizer {
            OptimizerSpec::Sgd { momentum, weight_decay, .. }
            | OptimizerSpec::Gd { momentum, weight_decay, .. }
            | OptimizerSpec::Sam { momentum, weight_decay, .. } => {
                v.push((o("momentum"), *momentum, Probability));
                v.push((o("weight_decay"), *weight_decay, NonNegative));
                if let OptimizerSpec::Sam { rho, .. } = &self.optimizer {
                    v.push((o("rho"), *rho, NonNegative));
                }
            }
            OptimizerSpec::NormalizedGd { max_lr, switch_loss, .. } => {
                v.push((o("max_lr"), *max_lr, Positive));
                if let Some(s) = switch_loss {
                    v.push((o("switch_loss"), *s, Positive));
                }
            }
            OptimizerSpec::Adam { beta1, beta2, eps, weight_decay, .. }
            | OptimizerSpec::Adamw { beta1, beta2, eps, weight_decay, .. } => {
                v.push((o("beta1"), *beta1, Unit));
                v.push((o("beta2"), *beta2, Unit));
                v.push((o("eps"), *eps, Positive));
                v.push((o("weight_decay"), *weight_decay, NonNegative));
            }
            OptimizerSpec::LabelNoiseSgd { sigma, momentum, .. } => {
                // For class labels sigma is the probability of a random label.
                v.push((o("sigma"), *sigma, if self.loss == Loss::Mse { NonNegative } else { Probability }));
                v.push((o("momentum"), *momentum, Probability));
            }
            OptimizerSpec::NoisySgd { noise: n, .. } | OptimizerSpec::NoisyGd { noise: n, .. } => noise(&mut v, n),
            OptimizerSpec::EntropySgd { inner_lr, gamma0, gamma1, alpha, noise: langevin, momentum, .. } => {
                v.push((o("inner_lr"), *inner_lr, Positive));
                v.push((o("gamma0"), *gamma0, NonNegative));
                v.push((o("gamma1"), *gamma1, NonNegative));
                v.push((o("alpha"), *alpha, UnitOpen));
                v.push((o("noise"), *langevin, NonNegative));
                v.push((o("momentum"), *momentum, Probability));
            }
        }
        match &self.schedule {
            ScheduleSpec::Constant { .. } => {}
            ScheduleSpec::Step { gamma, .. } => v.push(("schedule.gamma".into(), *gamma, Positive)),
            ScheduleSpec::Cosine { min_lr, .. } => v.push(("schedule.min_lr".into(), *min_lr, NonNegative)),
            ScheduleSpec::LargeThenSmall { small_lr, .. } => {
                v.push(("schedule.small_lr".into(), *small_lr, Positive));
            }
        }
        v.push(("regularizer.l2".into(), self.regularizer.l2, NonNegative));
        v.push(("regularizer.grad_norm".into(), self.regularizer.grad_norm, NonNegative));
        v.push(("init.scale".into(), self.init.scale, NonNegative));
        if let Some(t) = self.budget.until_train_loss {
            v.push(("budget.until_train_loss".into(), t, NonNegative));
        }
        if let Some(t) = self.budget.until_train_accuracy {
            v.push(("budget.until_train_accuracy".into(), t, Probability));
        }
        v
    }

    /// The resolved spec as TOML (every default written out).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a RunSpec always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASIC: &str = r#"
seed = 3
model = "mlp:40-100-10:relu"
data = "mnist1d:n=500"
[optimizer]
name = "sgd"
lr = 0.1
batch_size = 32
[budget]
epochs = 2
"#;

    #[test]
    fn parses_and_round_trips_with_defaults() {
        let s = RunSpec::from_toml(BASIC, "basic.toml").unwrap();
        assert_eq!(s.seed, 3);
        assert_eq!(s.loss, Loss::CrossEntropy);
        assert_eq!(s.eval.train_subset, 1000);
        let back = RunSpec::from_toml(&s.to_toml(), "resolved.toml").unwrap();
        assert_eq!(back, s);
        assert!(s.to_toml().contains("momentum = 0.0"));
    }

    #[test]
    fn sobolev_loss_round_trips_through_the_resolved_spec() {
        for (text, s) in [("sobolev:s=1", 1.0), ("sobolev:s=-1", -1.0), ("sobolev:s=0.5", 0.5), ("sobolev:s=0", 0.0)] {
            let spec = RunSpec::from_toml(&format!("loss = \"{text}\"\n{BASIC}"), "s.toml").unwrap();
            assert_eq!(spec.loss, Loss::Sobolev { s });
            let resolved = spec.to_toml();
            assert!(resolved.contains(&format!("loss = \"{text}\"")), "{resolved}");
            assert_eq!(RunSpec::from_toml(&resolved, "resolved.toml").unwrap(), spec);
        }
        let e = RunSpec::from_toml(&format!("loss = \"sobolev:s=two\"\n{BASIC}"), "s.toml").unwrap_err().to_string();
        assert!(e.starts_with("s.toml:") && e.contains("sobolev:s=two") && e.contains("not a number"), "{e}");
        let e = RunSpec::from_toml(&format!("loss = \"hinge\"\n{BASIC}"), "s.toml").unwrap_err().to_string();
        assert!(e.contains("sobolev:s=S"), "{e}");
    }

    #[test]
    fn unknown_keys_and_type_errors_name_key_file_and_line() {
        let e =
            RunSpec::from_toml(&BASIC.replace("lr = 0.1", "lr = 0.1\nbeta1 = 0.9"), "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("x.toml:") && e.contains("unknown field `beta1`"), "{e}");
        assert!(!e.contains('\n'));
        let e = RunSpec::from_toml(&BASIC.replace("seed = 3", "seed = \"three\""), "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml:2:") && e.contains("invalid type"), "{e}");
        let e = RunSpec::from_toml(&BASIC.replace("seed = 3", "sead = 3"), "x.toml").unwrap_err().to_string();
        assert!(e.contains("unknown field `sead`"), "{e}");
        let e = RunSpec::from_toml(&BASIC.replace("\"sgd\"", "\"sgdd\""), "x.toml").unwrap_err().to_string();
        assert!(e.contains("unknown variant `sgdd`"), "{e}");
        let e = RunSpec::from_toml(&BASIC.replace("epochs = 2", "epochs = 2\nsteps = 5"), "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("both steps and epochs"), "{e}");
        let e = RunSpec::from_toml(&BASIC.replace("mnist1d:n=500", "mnist1d:m=500"), "x.toml").unwrap_err().to_string();
        assert!(e.contains("x.toml: data:"), "{e}");
    }

    #[test]
    fn overrides_keep_their_type() {
        let s = RunSpec::from_toml(BASIC, "b.toml").unwrap();
        let o = s
            .clone()
            .with_overrides(&["optimizer.lr=1".into(), "seed=9".into(), "optimizer.momentum=0.9".into()], "b.toml")
            .unwrap();
        assert_eq!(o.optimizer.lr(), 1.0);
        assert_eq!(o.seed, 9);
        let o = s.clone().with_overrides(&["budget.steps=7".into(), "budget.epochs=0".into()], "b.toml");
        assert!(o.is_err());
        let e = s.clone().with_overrides(&["seed=abc".into()], "b.toml").unwrap_err().to_string();
        assert!(e.contains("seed expects an integer, got 'abc'"), "{e}");
        let e = s.clone().with_overrides(&["optimizer.lrr=0.1".into()], "b.toml").unwrap_err().to_string();
        assert!(e.contains("unknown field `lrr`"), "{e}");
        let o = s.clone().with_overrides(&["data=mnist1d:n=1000".into(), "eval.at=[1, 5]".into()], "b.toml").unwrap();
        assert_eq!(o.data, "mnist1d:n=1000");
        assert_eq!(o.eval.at, vec![1, 5]);
        let o = s.with_overrides(&["model=mlp:40-10:tanh".into()], "b.toml").unwrap();
        assert_eq!(o.model.to_string(), "mlp:40-10:tanh");
    }

    #[test]
    fn non_finite_and_out_of_range_knobs_are_errors_naming_the_key() {
        let s = RunSpec::from_toml(BASIC, "b.toml").unwrap();
        for (set, key) in [
            ("optimizer.lr=nan", "optimizer.lr must be a finite positive number, got NaN"),
            ("optimizer.lr=inf", "optimizer.lr must be"),
            ("optimizer.momentum=nan", "optimizer.momentum must be in [0, 1]"),
            ("optimizer.momentum=1.5", "optimizer.momentum must be in [0, 1], got 1.5"),
            ("optimizer.weight_decay=-1", "optimizer.weight_decay"),
            ("init.scale=nan", "init.scale"),
            ("regularizer.l2=nan", "regularizer.l2"),
            ("regularizer.grad_norm=-inf", "regularizer.grad_norm"),
            ("budget.until_train_loss=nan", "budget.until_train_loss"),
            ("budget.until_train_accuracy=2", "budget.until_train_accuracy must be in [0, 1]"),
        ] {
            let e = s.clone().with_overrides(&[set.into()], "b.toml").unwrap_err().to_string();
            assert!(e.starts_with("b.toml: ") && e.contains(key), "{set}: {e}");
        }
        let toml_nan = BASIC.replace("lr = 0.1", "lr = nan");
        let e = RunSpec::from_toml(&toml_nan, "n.toml").unwrap_err().to_string();
        assert!(e.contains("optimizer.lr"), "{e}");
        let adam = BASIC.replace("name = \"sgd\"", "name = \"adam\"\nbeta2 = 1.0");
        let e = RunSpec::from_toml(&adam, "a.toml").unwrap_err().to_string();
        assert!(e.contains("optimizer.beta2 must be in [0, 1)"), "{e}");
        let noisy = BASIC.replace(
            "name = \"sgd\"\nlr = 0.1\nbatch_size = 32",
            "name = \"noisy_sgd\"\nlr = 0.1\nbatch_size = 32\nnoise = { kind = \"isotropic\", sigma = nan }",
        );
        let e = RunSpec::from_toml(&noisy, "s.toml").unwrap_err().to_string();
        assert!(e.contains("optimizer.noise.sigma"), "{e}");
        let ngd = BASIC.replace(
            "name = \"sgd\"\nlr = 0.1\nbatch_size = 32",
            "name = \"normalized_gd\"\nlr = 0.1\nmax_lr = 10.0\nswitch_loss = 1e-3",
        );
        let n = RunSpec::from_toml(&ngd, "n.toml").unwrap();
        assert_eq!(n.optimizer.batch_size(), None);
        assert_eq!(RunSpec::from_toml(&n.to_toml(), "r.toml").unwrap(), n);
        for (set, key) in [
            ("optimizer.max_lr=0", "optimizer.max_lr must be a finite positive number"),
            ("optimizer.switch_loss=-1", "optimizer.switch_loss must be a finite positive number"),
        ] {
            let e = n.clone().with_overrides(&[set.into()], "n.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{set}: {e}");
        }
        let e = RunSpec::from_toml(&ngd.replace("max_lr = 10.0\n", ""), "n.toml").unwrap_err().to_string();
        assert!(e.contains("missing field `max_lr`"), "{e}");
        let step = format!("{BASIC}[schedule]\nkind = \"step\"\nstep_size = 5\ngamma = nan\n");
        assert!(RunSpec::from_toml(&step, "g.toml").unwrap_err().to_string().contains("schedule.gamma"));
    }
}
