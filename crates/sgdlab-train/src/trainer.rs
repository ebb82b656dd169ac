//! The training loop: budgets, evaluation schedule, measurement hook, divergence detection,
//! atomic checkpoints, resume with identical results, and interruption.
//!
//! Randomness never lives in mutable state: epoch `e`'s batch order, step `t`'s label noise and
//! injected noise each come from a stream derived by name from the seed and `e` or `t`
//! (`batches/epoch-e`, `label-noise/t`, `noise/t`). Resuming therefore needs only the
//! parameters, the optimiser buffers and the step count, and a resumed run is bit-identical to an
//! uninterrupted one.

use crate::error::TrainError;
use crate::lock::DirLock;
use crate::noise::{InjectedNoise, NoiseData};
use crate::optim::{OptimizerState, adam_step, normalized_gd_lr, sgd_step};
use crate::record::{
    MetricsWriter, RunRecord, RunStatus, content_hash, read_record, write_record, write_record_after_error,
    write_text_atomic,
};
use crate::spec::{Dtype, NoiseSpec, OptimizerSpec, RunSpec};
use crate::verify::{RunState, inspect_run};
use ndarray::Array2;
use rand::RngExt;
use sgdlab_data::{Dataset, Split};
use sgdlab_linalg::{RngStream, Scalar, standard_normal};
use sgdlab_nn::{
    Batch, DATA_METADATA_KEY, Loss, Mode, Model, NamedTensor, Objective, Params, Reduction, SEED_METADATA_KEY,
    SPLIT_METADATA_KEY, Targets, load_checkpoint, load_tensors, save_checkpoint, save_tensors,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Examples per forward pass during evaluation (bounds memory).
const EVAL_CHUNK: usize = 2048;

/// Provenance a run records (the binary knows its git revision).
#[derive(Debug, Clone)]
pub struct RunContext {
    pub sgdlab_version: String,
    pub git_revision: String,
}

/// How to run: where, with what data, and how to stop.
pub struct RunOptions<'a> {
    pub out_dir: PathBuf,
    /// Set to request a stop (Ctrl-C): the loop checkpoints and records `interrupted`.
    pub stop: Option<&'a AtomicBool>,
    pub context: RunContext,
    /// A dataset already loaded from `spec.data` (studies share one); loaded here otherwise.
    pub dataset: Option<&'a Dataset>,
    /// Start over even if the directory holds a resumable run of the same spec.
    pub fresh: bool,
    /// The directory a relative `init.from` is resolved against (a study's directory for its
    /// runs); `None`: the current directory.
    pub base_dir: Option<PathBuf>,
}

/// A named value measured by a hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub probe: String,
    pub name: String,
    /// The element of a vector metric (one measurement per element), `None` for a scalar.
    pub index: Option<u32>,
    pub value: f64,
}

/// Adam's second moment at a measurement, for probes that precondition like Adam (the
/// `tail-index` probe with `precondition = "adam"`): `exp_avg_sq` is `v` (PyTorch's name), `steps`
/// the number `t` of Adam steps taken, and `beta2`, `eps` the optimiser's; Adam divides the first
/// moment by `sqrt(v / (1 - beta2^t)) + eps` ([`crate::optim::adam_step`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AdamSecondMoment {
    pub exp_avg_sq: Vec<f64>,
    pub steps: u64,
    pub beta2: f64,
    pub eps: f64,
}

/// Measurements the runner asks for (the trainer itself never calls probes).
pub trait MeasurementHook {
    /// Whether to measure after update `step` of `total` (step 0 = initialisation).
    fn due(&self, step: u64, total: u64) -> bool;
    /// Called before each [`MeasurementHook::measure`] with Adam's second moment at that step:
    /// `Some` for Adam and AdamW runs after their first step, `None` otherwise (other optimisers,
    /// or step 0 of a fresh run). The default ignores it.
    fn optimizer_state(&mut self, _adam: Option<AdamSecondMoment>) {}
    /// Measures after update `step` of `total`; parameters are given in f64 (probes run in f64
    /// by default).
    fn measure(
        &mut self,
        step: u64,
        total: u64,
        model: &Model,
        params: &Params<f64>,
        data: &Dataset,
    ) -> Result<Vec<Measurement>, String>;
}

/// A hook that never measures.
pub struct NoHook;

impl MeasurementHook for NoHook {
    fn due(&self, _: u64, _: u64) -> bool {
        false
    }
    fn measure(&mut self, _: u64, _: u64, _: &Model, _: &Params<f64>, _: &Dataset) -> Result<Vec<Measurement>, String> {
        Ok(Vec::new())
    }
}

/// What the loop reports after each step (for progress bars).
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub step: u64,
    pub total: u64,
    pub epoch: f64,
    pub batch_loss: f64,
    pub lr: f64,
    pub train_loss: Option<f64>,
    pub train_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub elapsed_s: f64,
}

/// Trains `spec` into `opts.out_dir`, resuming from the latest checkpoint of the same spec if
/// there is one. Returns the record (also written to `record.json`); a diverged or interrupted
/// run is an `Ok` record with that status.
///
/// The directory is locked ([`DirLock`]) for the whole call: a second process gets
/// [`TrainError::Busy`]. A directory whose record claims completion is checked against its files
/// ([`inspect_run`]): if they agree the record is returned, otherwise the run is redone from step
/// 0 (with a warning in the record). An error after the run started leaves the record `failed`
/// with the error's message.
pub fn train(
    spec: &RunSpec,
    opts: &RunOptions<'_>,
    hook: &mut dyn MeasurementHook,
    progress: &mut dyn FnMut(&Progress),
) -> Result<RunRecord, TrainError> {
    // Held until the run returns: a second process on this directory fails at once.
    let _lock = DirLock::acquire(&opts.out_dir)?;
    let loaded;
    let data = match opts.dataset {
        Some(d) => d,
        None => {
            loaded = sgdlab_data::load_dataset(&spec.data).map_err(|e| TrainError::Data(e.to_string()))?;
            &loaded
        }
    };
    match spec.dtype {
        Dtype::F32 => Run::<f32>::new(spec, opts, data)?.run(hook, progress),
        Dtype::F64 => Run::<f64>::new(spec, opts, data)?.run(hook, progress),
    }
}

struct TrainData<T> {
    x: Array2<T>,
    labels: Option<Vec<u32>>,
    values: Option<Array2<T>>,
    num_classes: Option<usize>,
}

impl<T: Scalar> TrainData<T> {
    fn from_split(s: &Split) -> Self {
        TrainData {
            x: s.features().mapv(|v| T::from_f64(v as f64)),
            labels: s.labels().map(<[u32]>::to_vec),
            values: s.targets().values().map(|v| v.mapv(|x| T::from_f64(x as f64))),
            num_classes: s.targets().num_classes(),
        }
    }
    fn len(&self) -> usize {
        self.x.nrows()
    }
}

struct Run<'a, T> {
    spec: &'a RunSpec,
    opts: &'a RunOptions<'a>,
    data: &'a Dataset,
    model: Model,
    train: TrainData<T>,
    eval_train: Vec<usize>,
    eval_test: Option<(TrainData<T>, Vec<usize>)>,
    obj: Objective,
    root: RngStream,
    plan: Option<sgdlab_data::BatchPlan>,
    per_epoch: u64,
    grads_per_step: u64,
    total: u64,
    theta: Params<T>,
    state: OptimizerState<T>,
    grad: Vec<T>,
    cached_epoch: Option<(u64, Vec<Vec<usize>>)>,
    spec_hash: String,
    /// The injected noise of noisy GD/SGD, resolved (files read, `match_sgd` computed).
    injected: Option<InjectedNoise<T>>,
    stopped_early: bool,
    /// The canonical dataset spec and the split trained on (checkpoint provenance).
    data_spec: String,
    train_split: String,
    warnings: Vec<String>,
}

fn eval_indices(n: usize, subset: usize, stream: RngStream) -> Vec<usize> {
    if subset == 0 || subset >= n {
        return (0..n).collect();
    }
    let mut rng = stream.rng();
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..subset {
        let j = rng.random_range(i..n);
        idx.swap(i, j);
    }
    let mut s = idx[..subset].to_vec();
    s.sort_unstable();
    s
}

/// Rows `idx` of `x`, in that order: the same as `x.select(Axis(0), idx)`, one copy per row
/// instead of ndarray's general concatenation (measured on job L's batches: about half the time).
fn gather_rows<T: Scalar>(x: &Array2<T>, idx: &[usize]) -> Array2<T> {
    let mut data = Vec::with_capacity(idx.len() * x.ncols());
    for &i in idx {
        let row = x.row(i);
        match row.as_slice() {
            Some(r) => data.extend_from_slice(r),
            None => data.extend(row.iter().copied()),
        }
    }
    Array2::from_shape_vec((idx.len(), x.ncols()), data).expect("idx.len() rows of x.ncols() entries")
}

/// Peak memory of a run: the data in `T` (train and test splits, the dataset itself already
/// counted as loaded), copies of the parameter vector (parameters, gradient, optimiser buffers,
/// the optimiser's own copies, a checkpoint being written, the f64 copy for a measurement hook),
/// and the activations of a minibatch or an evaluation chunk.
fn training_memory<T: Scalar>(spec: &RunSpec, data: &Dataset, train: &Split) -> sgdlab_linalg::memory::Estimate {
    let p = spec.model.checked_num_params().unwrap_or(usize::MAX);
    let copies = 2
        + 2
        + 2
        + match &spec.optimizer {
            OptimizerSpec::Sgd { .. }
            | OptimizerSpec::Gd { .. }
            | OptimizerSpec::NormalizedGd { .. }
            | OptimizerSpec::LabelNoiseSgd { .. }
            | OptimizerSpec::NoisySgd { .. }
            | OptimizerSpec::NoisyGd { .. } => 1,
            OptimizerSpec::Adam { .. } | OptimizerSpec::Adamw { .. } | OptimizerSpec::Sam { .. } => 2,
            OptimizerSpec::EntropySgd { .. } => 4,
        };
    let w = &spec.model.widths;
    let width_sum = w.iter().fold(0usize, |a, &x| a.saturating_add(x));
    let act_width =
        width_sum.saturating_add(spec.model.blocks.saturating_mul(4).saturating_mul(w.get(1).copied().unwrap_or(0)));
    let rows = spec.optimizer.batch_size().unwrap_or(train.len()).max(EVAL_CHUNK.min(train.len()));
    let test_rows = data.test().map_or(0, |t| t.len());
    let t = std::mem::size_of::<T>();
    sgdlab_linalg::memory::Estimate::new(format!(
        "training {} ({p} parameters, {}) on {} examples",
        spec.model,
        T::NAME,
        train.len()
    ))
    .array(&[train.len().saturating_add(test_rows), train.dim()], t)
    .array(&[p, copies], t)
    .array(&[rows, act_width, 6], t)
}

fn read_npy_f64(path: &str, what: &str) -> Result<ndarray::ArrayD<f64>, TrainError> {
    use ndarray_npy::ReadNpyExt;
    let f = std::fs::File::open(path).map_err(|e| TrainError::Spec(format!("{what} '{path}': {e}")))?;
    if let Ok(a) = ndarray::ArrayD::<f64>::read_npy(&f) {
        return Ok(a);
    }
    let f = std::fs::File::open(path).map_err(|e| TrainError::Spec(format!("{what} '{path}': {e}")))?;
    ndarray::ArrayD::<f32>::read_npy(f)
        .map(|a| a.mapv(f64::from))
        .map_err(|e| TrainError::Spec(format!("{what} '{path}': not an f32/f64 .npy array: {e}")))
}

/// The model and parameters of `init.from`: a checkpoint of the spec's architecture (checksum
/// and finiteness checked on load), a relative path resolved against `base_dir`.
fn start_parameters<T: Scalar>(
    spec: &RunSpec,
    from: &str,
    base_dir: Option<&Path>,
) -> Result<(Model, Params<T>), TrainError> {
    let path = match base_dir {
        Some(b) if Path::new(from).is_relative() => b.join(from),
        _ => PathBuf::from(from),
    };
    if !path.exists() {
        return Err(TrainError::Spec(format!("init.from: {} does not exist", path.display())));
    }
    let ck = load_checkpoint::<T>(&path, Some(&spec.model)).map_err(|e| TrainError::Spec(format!("init.from: {e}")))?;
    Ok((ck.model, ck.params))
}

/// The injected noise of a noisy optimiser: `.npy` files read, `match_sgd` computed at the
/// start parameters `theta` on the training split (in f64).
fn resolve_noise<T: Scalar>(
    noise: &NoiseSpec,
    model: &Model,
    theta: &Params<T>,
    train: &Split,
    loss: Loss,
    root: &RngStream,
) -> Result<InjectedNoise<T>, TrainError> {
    Ok(match noise {
        NoiseSpec::Isotropic { sigma } => InjectedNoise::Isotropic { sigma: *sigma },
        NoiseSpec::Diagonal { sigma, variances } => {
            let a = read_npy_f64(variances, "noise variances")?;
            if a.len() != model.num_params() || a.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(TrainError::Spec(format!(
                    "noise variances '{variances}': need {} finite non-negative values, got {} values",
                    model.num_params(),
                    a.len()
                )));
            }
            InjectedNoise::Diagonal { sigma: *sigma, sd: a.iter().map(|&v| T::from_f64(v.sqrt())).collect() }
        }
        NoiseSpec::Directions { sigma, directions } => {
            let a = read_npy_f64(directions, "noise directions")?;
            let a = a
                .into_dimensionality::<ndarray::Ix2>()
                .map_err(|_| TrainError::Spec(format!("noise directions '{directions}': need a 2-D array [k, P]")))?;
            if a.ncols() != model.num_params() {
                return Err(TrainError::Spec(format!(
                    "noise directions '{directions}': rows have {} entries, the model has {} parameters",
                    a.ncols(),
                    model.num_params()
                )));
            }
            InjectedNoise::Directions { sigma: *sigma, directions: a.mapv(T::from_f64) }
        }
        NoiseSpec::MatchSgd { .. } => {
            let x = train.features().mapv(f64::from);
            let values = train.targets().values().map(|v| v.mapv(f64::from));
            let data = NoiseData { x: x.view(), labels: train.labels(), values: values.as_ref().map(|v| v.view()) };
            let theta64: Vec<f64> = theta.as_slice().iter().map(|&v| Scalar::to_f64(v)).collect();
            crate::noise::matched_noise::<T>(noise, model, &theta64, &data, loss, &root.child("match-sgd"))
                .map_err(|m| TrainError::Spec(format!("optimizer.noise (match_sgd): {m}")))?
                .expect("a match_sgd spec")
        }
    })
}

impl<'a, T: Scalar> Run<'a, T> {
    fn new(spec: &'a RunSpec, opts: &'a RunOptions<'a>, data: &'a Dataset) -> Result<Self, TrainError> {
        // A set read from a single pair of files has one split, `all`: train on it.
        let train_split =
            data.train().or_else(|e| data.split("all").map_err(|_| e)).map_err(|e| TrainError::Data(e.to_string()))?;
        if let Some(b) = spec.optimizer.batch_size()
            && b > train_split.len()
        {
            return Err(TrainError::Spec(format!(
                "optimizer.batch_size = {b} is larger than the {} examples of the {} split of {}; \
                 give at most {} (optimizer gd trains full-batch)",
                train_split.len(),
                train_split.name(),
                spec.data,
                train_split.len()
            )));
        }
        training_memory::<T>(spec, data, train_split).check()?;
        let model = Model::new(&spec.model);
        let train = TrainData::<T>::from_split(train_split);
        if train.len() == 0 {
            return Err(TrainError::Data(format!("{}: the train split is empty", spec.data)));
        }
        if model.in_dim() != train.x.ncols() {
            return Err(TrainError::Data(format!(
                "model {} takes {} inputs but data {} has {} features",
                spec.model,
                model.in_dim(),
                spec.data,
                train.x.ncols()
            )));
        }
        // A shaped model reads rows as images: they must be the images the loader describes.
        if let Some(img) = data.image_shape()
            && model.in_shape().rank() > 1
            && model.in_shape().dims() != [img.channels, img.height, img.width]
            && model.in_shape().dims() != [img.channels, img.height * img.width]
        {
            return Err(TrainError::Data(format!(
                "model {} takes {} inputs per example but data {} holds {img} images",
                spec.model,
                model.in_shape(),
                spec.data
            )));
        }
        let k = model.out_dim();
        match (spec.loss, train.num_classes, &train.values) {
            (Loss::Logistic, Some(c), _) if c != 2 || k != 1 => {
                return Err(TrainError::Data(format!(
                    "logistic loss needs 2 classes and 1 output; data has {c} classes, model {k} outputs"
                )));
            }
            (Loss::CrossEntropy | Loss::Mse, Some(c), _) if c != k => {
                return Err(TrainError::Data(format!(
                    "data {} has {c} classes but model {} has {k} outputs",
                    spec.data, spec.model
                )));
            }
            (Loss::CrossEntropy | Loss::Logistic, None, _) => {
                return Err(TrainError::Data(format!(
                    "loss {} needs class targets; data {} has real-valued targets",
                    spec.loss, spec.data
                )));
            }
            (Loss::Mse, None, Some(v)) if v.ncols() != k => {
                return Err(TrainError::Data(format!(
                    "data {} has {} target columns but model {} has {k} outputs",
                    spec.data,
                    v.ncols(),
                    spec.model
                )));
            }
            (Loss::Sobolev { .. }, Some(c), _) => {
                return Err(TrainError::Data(format!(
                    "loss {} needs real-valued targets on a periodic grid; data {} has {c} classes",
                    spec.loss, spec.data
                )));
            }
            (Loss::Sobolev { .. }, None, Some(v)) if v.ncols() != 1 || k != 1 => {
                return Err(TrainError::Data(format!(
                    "loss {} needs 1 output and 1 target column; data {} has {} target columns, model {} has {k} outputs",
                    spec.loss,
                    spec.data,
                    v.ncols(),
                    spec.model
                )));
            }
            _ => {}
        }
        let root = RngStream::new(spec.seed);
        let n = train.len();
        // A loss that couples the examples (Sobolev: the DFT of the residual over the grid) is
        // only defined on the whole split in grid order. A full batch of a minibatch optimiser
        // would be a shuffled permutation of it: train on the split in order instead (the same
        // single step per epoch); smaller batches are refused.
        let batch_size = match spec.optimizer.batch_size() {
            Some(b) if spec.loss.couples_examples() && b == n => None,
            Some(b) if spec.loss.couples_examples() => {
                return Err(TrainError::Spec(format!(
                    "optimizer.batch_size = {b}: loss {} couples the examples (a DFT over the whole grid) and needs full batches; \
                     give optimizer.batch_size = {n} (the whole {} split) or optimizer gd",
                    spec.loss,
                    train_split.name()
                )));
            }
            b => b,
        };
        let (plan, per_epoch) = match batch_size {
            Some(b) => {
                let p = sgdlab_data::BatchPlan::new(n, b, false, root.child("batches"))
                    .map_err(|e| TrainError::Data(e.to_string()))?;
                let per = p.batches_per_epoch() as u64;
                (Some(p), per)
            }
            None => (None, 1),
        };
        let grads_per_step = match &spec.optimizer {
            OptimizerSpec::EntropySgd { inner_steps, .. } => (*inner_steps).max(1) as u64,
            _ => 1,
        };
        let total = match (spec.budget.steps, spec.budget.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => (e * per_epoch).div_ceil(grads_per_step),
            (None, None) => unreachable!("validated"),
        };
        // A coupling loss is evaluated on whole splits: a subset of a grid is not a grid.
        let mut warnings = Vec::new();
        let subset = |requested: usize, len: usize, key: &str, warnings: &mut Vec<String>| {
            if spec.loss.couples_examples() && requested != 0 && requested < len {
                warnings.push(format!(
                    "eval.{key} = {requested} ignored: loss {} is evaluated on the whole split ({len} examples, grid order)",
                    spec.loss
                ));
                0
            } else {
                requested
            }
        };
        let train_subset = subset(spec.eval.train_subset, n, "train_subset", &mut warnings);
        let eval_train = eval_indices(n, train_subset, root.child("eval").child("train-subset"));
        let eval_test = match data.test() {
            Ok(t) if !t.is_empty() => {
                let td = TrainData::<T>::from_split(t);
                let test_subset = subset(spec.eval.test_subset, td.len(), "test_subset", &mut warnings);
                let idx = eval_indices(td.len(), test_subset, root.child("eval").child("test-subset"));
                Some((td, idx))
            }
            _ => None,
        };
        spec.init.check(&model).map_err(TrainError::Spec)?;
        let (model, theta) = match &spec.init.from {
            Some(from) => start_parameters::<T>(spec, from, opts.base_dir.as_deref())?,
            None => {
                let theta = spec.init.init::<T>(&model, &root);
                (model, theta)
            }
        };
        let injected = match &spec.optimizer {
            OptimizerSpec::NoisySgd { noise, .. } | OptimizerSpec::NoisyGd { noise, .. } => {
                Some(resolve_noise::<T>(noise, &model, &theta, train_split, spec.loss, &root)?)
            }
            _ => None,
        };
        let grad = vec![T::zero(); model.num_params()];
        let spec_hash = content_hash(&spec.to_toml());
        let data_spec =
            sgdlab_data::DatasetSpec::parse(&spec.data).map_or_else(|_| spec.data.clone(), |d| d.to_string());
        Ok(Run {
            spec,
            opts,
            data,
            obj: Objective { loss: spec.loss, reduction: spec.reduction },
            model,
            train,
            eval_train,
            eval_test,
            root,
            plan,
            per_epoch,
            grads_per_step,
            total,
            theta,
            state: OptimizerState::default(),
            grad,
            cached_epoch: None,
            spec_hash,
            injected,
            stopped_early: false,
            data_spec,
            train_split: train_split.name().to_string(),
            warnings,
        })
    }

    /// Indices of global minibatch number `m` (all examples for full-batch methods).
    fn minibatch(&mut self, m: u64) -> Vec<usize> {
        let Some(plan) = &self.plan else { return (0..self.train.len()).collect() };
        let (e, j) = (m / self.per_epoch, (m % self.per_epoch) as usize);
        if self.cached_epoch.as_ref().is_none_or(|(ce, _)| *ce != e) {
            self.cached_epoch = Some((e, plan.epoch(e)));
        }
        self.cached_epoch.as_ref().expect("just cached").1[j].clone()
    }

    fn epoch_of(&self, step: u64) -> f64 {
        (step * self.grads_per_step) as f64 / self.per_epoch as f64
    }

    /// Gradient of the (regularised) minibatch objective at `theta` into `self.grad`; returns
    /// the data loss.
    fn gradient_at(&mut self, theta: &[T], idx: &[usize], step: u64) -> Result<f64, TrainError> {
        let x = gather_rows(&self.train.x, idx);
        let label_noise = match &self.spec.optimizer {
            OptimizerSpec::LabelNoiseSgd { sigma, .. } => Some(*sigma),
            _ => None,
        };
        let mut labels: Option<Vec<u32>> = self.train.labels.as_ref().map(|l| idx.iter().map(|&i| l[i]).collect());
        let mut values: Option<Array2<T>> = self.train.values.as_ref().map(|v| gather_rows(v, idx));
        if let Some(sigma) = label_noise {
            let mut rng = self.root.child("label-noise").child(&step.to_string()).rng();
            match (self.spec.loss, &mut labels, &mut values) {
                (Loss::Mse | Loss::Sobolev { .. }, labels, values) => {
                    // Real-valued targets (one-hot for classes) plus N(0, sigma^2).
                    let k = self.model.out_dim();
                    let mut v = match (labels.take(), values.take()) {
                        (_, Some(v)) => v,
                        (Some(l), None) => {
                            let mut v = Array2::zeros((idx.len(), k));
                            for (i, &c) in l.iter().enumerate() {
                                v[(i, c as usize)] = T::one();
                            }
                            v
                        }
                        (None, None) => unreachable!("targets exist"),
                    };
                    v.mapv_inplace(|y| y + T::from_f64(sigma * standard_normal::<f64, _>(&mut rng)));
                    *values = Some(v);
                }
                (_, Some(l), _) => {
                    let c = self.train.num_classes.unwrap_or(2) as u32;
                    for y in l.iter_mut() {
                        if rng.random::<f64>() < sigma {
                            *y = rng.random_range(0..c);
                        }
                    }
                }
                _ => {}
            }
        }
        let targets = match (&labels, &values) {
            (_, Some(v)) => Targets::Values(v.view()),
            (Some(l), None) => Targets::Classes(l),
            (None, None) => unreachable!("targets exist"),
        };
        let batch = Batch { x: x.view(), targets };
        // Dropout and batch norm train as in PyTorch's model.train(): masks from the stream
        // `dropout/<step>`, batch statistics (then folded into the running statistics).
        let mode = self
            .model
            .has_train_mode()
            .then(|| Mode::Train { dropout: self.root.child("dropout").child(&step.to_string()) });
        let (loss, batch_statistics) = match &mode {
            Some(m) => {
                let s = self.model.in_mode(m).gradient_into(theta, &batch, &self.obj, &mut self.grad)?;
                (s.loss, s.batch_statistics)
            }
            None => (self.model.gradient_into(theta, &batch, &self.obj, &mut self.grad)?, Vec::new()),
        };
        let mu = self.spec.regularizer.grad_norm;
        if mu > 0.0 {
            // d/dtheta mu ||g||^2 = 2 mu H g, exact by forward-over-reverse.
            let hg = match &mode {
                Some(m) => self.model.in_mode(m).hvp(theta, &batch, &self.obj, &self.grad)?,
                None => self.model.hvp(theta, &batch, &self.obj, &self.grad)?,
            };
            let c = T::from_f64(2.0 * mu);
            for (g, h) in self.grad.iter_mut().zip(&hg) {
                *g += c * *h;
            }
        }
        self.model.update_running_stats(&batch_statistics);
        let l2 = self.spec.regularizer.l2;
        if l2 > 0.0 {
            let c = T::from_f64(l2);
            for (g, &t) in self.grad.iter_mut().zip(theta) {
                *g += c * t;
            }
        }
        Ok(loss.to_f64())
    }

    fn add_injected_noise(&mut self, step: u64) {
        let mut rng = self.root.child("noise").child(&step.to_string()).rng();
        self.injected.as_ref().expect("resolved in new").add_to(&mut self.grad, &mut rng);
    }

    /// Performs update number `step` (0-based) at the scheduled rate `lr`; returns the minibatch
    /// loss before the update, whether every updated parameter is finite (checked by the
    /// optimiser's pass over them) and the step size taken (`lr`, except for normalised GD).
    fn update(&mut self, step: u64, lr: f64) -> Result<(f64, bool, f64), TrainError> {
        let opt = self.spec.optimizer.clone();
        let mut theta = std::mem::take(&mut self.theta);
        let mut lr_taken = lr;
        let result = (|| -> Result<(f64, bool), TrainError> {
            let m = step * self.grads_per_step;
            match &opt {
                OptimizerSpec::Sgd { momentum, nesterov, weight_decay, .. } => {
                    let idx = self.minibatch(m);
                    let loss = self.gradient_at(theta.as_slice(), &idx, step)?;
                    let finite = sgd_step(
                        theta.as_mut_slice(),
                        &self.grad,
                        &mut self.state,
                        lr,
                        *momentum,
                        *nesterov,
                        *weight_decay,
                    );
                    Ok((loss, finite))
                }
                OptimizerSpec::Gd { momentum, weight_decay, .. } => {
                    let idx = self.minibatch(m);
                    let loss = self.gradient_at(theta.as_slice(), &idx, step)?;
                    let finite = sgd_step(
                        theta.as_mut_slice(),
                        &self.grad,
                        &mut self.state,
                        lr,
                        *momentum,
                        false,
                        *weight_decay,
                    );
                    Ok((loss, finite))
                }
                OptimizerSpec::NormalizedGd { max_lr, switch_loss, .. } => {
                    let idx = self.minibatch(m);
                    let loss = self.gradient_at(theta.as_slice(), &idx, step)?;
                    lr_taken = normalized_gd_lr(&mut self.state, step, loss, lr, *switch_loss, *max_lr);
                    let finite = sgd_step(theta.as_mut_slice(), &self.grad, &mut self.state, lr_taken, 0.0, false, 0.0);
                    Ok((loss, finite))
                }
                OptimizerSpec::LabelNoiseSgd { momentum, .. } => {
                    let idx = self.minibatch(m);
                    let loss = self.gradient_at(theta.as_slice(), &idx, step)?;
                    let finite = sgd_step(theta.as_mut_slice(), &self.grad, &mut self.state, lr, *momentum, false, 0.0);
                    Ok((loss, finite))
                }
                OptimizerSpec::Adam { beta1, beta2, eps, weight_decay, .. }
                | OptimizerSpec::Adamw { beta1, beta2, eps, weight_decay, .. } => {
                    let idx = self.minibatch(m);
                    let loss = self.gradient_at(theta.as_slice(), &idx, step)?;
                    let decoupled = matches!(opt, OptimizerSpec::Adamw { .. });
                    let finite = adam_step(
                        theta.as_mut_slice(),
                        &self.grad,
                        &mut self.state,
                        lr,
                        *beta1,
                        *beta2,
                        *eps,
                        *weight_decay,
                        decoupled,
                    );
                    Ok((loss, finite))
                }
                OptimizerSpec::NoisySgd { .. } | OptimizerSpec::NoisyGd { .. } => {
                    let idx = self.minibatch(m);
                    let loss = self.gradient_at(theta.as_slice(), &idx, step)?;
                    self.add_injected_noise(step);
                    let finite = sgd_step(theta.as_mut_slice(), &self.grad, &mut self.state, lr, 0.0, false, 0.0);
                    Ok((loss, finite))
                }
                OptimizerSpec::Sam { rho, momentum, weight_decay, .. } => {
                    let idx = self.minibatch(m);
                    let loss = self.gradient_at(theta.as_slice(), &idx, step)?;
                    let norm = self.grad.iter().map(|&g| g.to_f64() * g.to_f64()).sum::<f64>().sqrt();
                    let scale = T::from_f64(rho / (norm + 1e-12));
                    let perturbed: Vec<T> =
                        theta.as_slice().iter().zip(&self.grad).map(|(&t, &g)| t + scale * g).collect();
                    self.gradient_at(&perturbed, &idx, step)?;
                    let finite = sgd_step(
                        theta.as_mut_slice(),
                        &self.grad,
                        &mut self.state,
                        lr,
                        *momentum,
                        false,
                        *weight_decay,
                    );
                    Ok((loss, finite))
                }
                OptimizerSpec::EntropySgd { inner_steps, inner_lr, gamma0, gamma1, alpha, noise, momentum, .. } => {
                    let gamma = gamma0 * (1.0 + gamma1).powf(step as f64);
                    let x = theta.as_slice().to_vec();
                    let mut xp = x.clone();
                    let mut mu = x.clone();
                    let mut rng = self.root.child("langevin").child(&step.to_string()).rng();
                    let mut first_loss = f64::NAN;
                    let noise_sd = noise * (2.0 * inner_lr).sqrt();
                    let (g_, a, ilr) = (T::from_f64(gamma), T::from_f64(*alpha), T::from_f64(*inner_lr));
                    // The Langevin noise of one inner step, drawn first (in coordinate order, so
                    // the draws are those of a fused loop) and then applied in a loop the
                    // compiler can vectorise.
                    let mut eps = vec![T::zero(); xp.len()];
                    for l in 0..*inner_steps {
                        let idx = self.minibatch(m + l as u64);
                        let loss = self.gradient_at(&xp, &idx, step)?;
                        if l == 0 {
                            first_loss = loss;
                        }
                        for e in eps.iter_mut() {
                            *e = T::from_f64(noise_sd * standard_normal::<f64, _>(&mut rng));
                        }
                        for ((((p, m_), &xi), &gi), &e) in
                            xp.iter_mut().zip(mu.iter_mut()).zip(&x).zip(&self.grad).zip(&eps)
                        {
                            let d = gi - g_ * (xi - *p);
                            *p = *p - ilr * d + e;
                            *m_ = (T::one() - a) * *m_ + a * *p;
                        }
                    }
                    // Outer step along x - mu with Nesterov momentum.
                    for (g, (&xi, &mi)) in self.grad.iter_mut().zip(x.iter().zip(&mu)) {
                        *g = xi - mi;
                    }
                    let finite = sgd_step(theta.as_mut_slice(), &self.grad, &mut self.state, lr, *momentum, true, 0.0);
                    Ok((first_loss, finite))
                }
            }
        })();
        self.theta = theta;
        result.map(|(loss, finite)| (loss, finite, lr_taken))
    }

    /// Mean loss (per-example mean, whatever the training reduction) and accuracy on a subset, in
    /// chunks; a loss that couples the examples (Sobolev) in one piece, over the whole split in
    /// grid order (`idx` is then `0..n`), its mean `L_s / N`.
    fn evaluate(&self, d: &TrainData<T>, idx: &[usize]) -> Result<(f64, f64), TrainError> {
        let k = self.model.out_dim();
        let (mut total, mut correct) = (0.0f64, 0.0f64);
        let chunk_len = if self.obj.loss.couples_examples() { idx.len().max(1) } else { EVAL_CHUNK };
        for chunk in idx.chunks(chunk_len) {
            let x = gather_rows(&d.x, chunk);
            let labels: Option<Vec<u32>> = d.labels.as_ref().map(|l| chunk.iter().map(|&i| l[i]).collect());
            let values: Option<Array2<T>> = d.values.as_ref().map(|v| gather_rows(v, chunk));
            let targets = match (&labels, &values) {
                (_, Some(v)) => Targets::Values(v.view()),
                (Some(l), None) => Targets::Classes(l),
                (None, None) => unreachable!("targets exist"),
            };
            let z = self.model.forward(self.theta.as_slice(), x.view())?;
            self.obj.loss.check(chunk.len(), k, &targets)?;
            total += self.obj.loss.value(z.view(), &targets, Reduction::Sum).to_f64();
            correct += self.obj.loss.accuracy(z.view(), &targets) * chunk.len() as f64;
        }
        let n = idx.len();
        let mean = total * self.obj.loss.scale::<f64>(n, k, Reduction::Mean);
        Ok((mean, correct / n as f64))
    }

    fn eval_due(&self, step: u64) -> bool {
        let e = &self.spec.eval;
        if step == 0 || step == self.total {
            return true;
        }
        if e.every > 0 && step.is_multiple_of(e.every) {
            return true;
        }
        if e.at.contains(&step) {
            return true;
        }
        if e.log_spaced > 0 {
            // Points round(total^(i / (n - 1))), i = 0..n.
            let n = e.log_spaced;
            return (0..n).any(|i| {
                let f = if n == 1 { 1.0 } else { i as f64 / (n - 1) as f64 };
                (self.total as f64).powf(f).round() as u64 == step
            });
        }
        false
    }

    /// Adam's second moment now (Adam and AdamW after at least one step), for the hook.
    fn adam_second_moment(&self) -> Option<AdamSecondMoment> {
        let (OptimizerSpec::Adam { beta2, eps, .. } | OptimizerSpec::Adamw { beta2, eps, .. }) = &self.spec.optimizer
        else {
            return None;
        };
        let (beta2, eps) = (*beta2, *eps);
        let v = self.state.exp_avg_sq.as_ref()?;
        (self.state.adam_steps > 0).then(|| AdamSecondMoment {
            exp_avg_sq: v.iter().map(|&x| Scalar::to_f64(x)).collect(),
            steps: self.state.adam_steps,
            beta2,
            eps,
        })
    }

    fn checkpoint_dir(&self) -> PathBuf {
        self.opts.out_dir.join("checkpoints")
    }

    /// Metadata of every checkpoint and of the final parameters: the step, the spec hash and
    /// the provenance keys (`sgdlab.data`, `sgdlab.seed`, `sgdlab.split`).
    fn checkpoint_metadata(&self, step: u64) -> Vec<(&'static str, String)> {
        vec![
            ("step", step.to_string()),
            ("spec_hash", self.spec_hash.clone()),
            (DATA_METADATA_KEY, self.data_spec.clone()),
            (SEED_METADATA_KEY, self.spec.seed.to_string()),
            (SPLIT_METADATA_KEY, self.train_split.clone()),
        ]
    }

    fn save_checkpoint(&self, step: u64, wall: f64) -> Result<(), TrainError> {
        let dir = self.checkpoint_dir();
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::io(&dir, e))?;
        let mut meta = self.checkpoint_metadata(step);
        meta.push(("wall_time_s", format!("{wall}")));
        meta.push(("adam_steps", self.state.adam_steps.to_string()));
        if let Some(s) = self.state.normalized_since {
            meta.push(("normalized_since", s.to_string()));
        }
        // Optimizer state first: a checkpoint counts only once its parameter file exists.
        let state_path = dir.join(format!("step-{step}.state.safetensors"));
        let buffers = self.state.buffers();
        let shapes: Vec<[usize; 1]> = buffers.iter().map(|(_, b)| [b.len()]).collect();
        let tensors: Vec<NamedTensor<'_, T>> =
            buffers.iter().zip(&shapes).map(|((n, b), s)| (*n, s.as_slice(), b.as_slice())).collect();
        save_tensors(&state_path, &tensors, &meta)?;
        let path = dir.join(format!("step-{step}.safetensors"));
        save_checkpoint(&path, &self.model, &self.theta, &meta)?;
        // Keep the most recent `keep`.
        let keep = self.spec.checkpoint.keep;
        if keep > 0 {
            let mut steps = list_checkpoints(&dir);
            steps.sort_unstable();
            for s in steps.iter().rev().skip(keep) {
                let _ = std::fs::remove_file(dir.join(format!("step-{s}.safetensors")));
                let _ = std::fs::remove_file(dir.join(format!("step-{s}.state.safetensors")));
            }
        }
        Ok(())
    }

    /// Parameters and optimiser state of the checkpoint at `step`; returns (step, wall time so
    /// far). Both files must pass their checksums and belong to this spec.
    fn load_checkpoint_at(&mut self, step: u64) -> Result<(u64, f64), TrainError> {
        let dir = self.checkpoint_dir();
        let path = dir.join(format!("step-{step}.safetensors"));
        let ck = load_checkpoint::<T>(&path, Some(&self.spec.model))?;
        if ck.metadata.get("spec_hash") != Some(&self.spec_hash) {
            return Err(TrainError::io(&path, "checkpoint of a different spec"));
        }
        let wall: f64 = ck.metadata.get("wall_time_s").and_then(|w| w.parse().ok()).unwrap_or(0.0);
        let state_path = dir.join(format!("step-{step}.state.safetensors"));
        let (tensors, meta) = load_tensors::<T>(&state_path)?;
        if meta.get("spec_hash") != Some(&self.spec_hash) {
            return Err(TrainError::io(&state_path, "optimiser state of a different spec"));
        }
        let mut st = OptimizerState::default();
        for (name, _, data) in tensors {
            if data.len() != self.model.num_params() {
                return Err(TrainError::io(&state_path, format!("buffer '{name}' has {} values", data.len())));
            }
            st.set_buffer(&name, data);
        }
        st.adam_steps = meta.get("adam_steps").and_then(|s| s.parse().ok()).unwrap_or(0);
        st.normalized_since = meta.get("normalized_since").and_then(|s| s.parse().ok());
        self.theta = ck.params;
        // The model carries the checkpoint's batch-norm running statistics.
        self.model = ck.model;
        self.state = st;
        self.cached_epoch = None;
        Ok((step, wall))
    }

    /// Restores the newest checkpoint that loads; a torn or corrupt one is renamed to
    /// `*.corrupt` (kept for inspection, out of the rotation) and the previous one is tried,
    /// with a warning. Returns (step, wall time so far), or `None` to start from step 0.
    fn restore(&mut self) -> Result<Option<(u64, f64)>, TrainError> {
        let dir = self.checkpoint_dir();
        let mut steps = list_checkpoints(&dir);
        steps.sort_unstable();
        while let Some(step) = steps.pop() {
            match self.load_checkpoint_at(step) {
                Ok(r) => return Ok(Some(r)),
                Err(e) => {
                    for name in [format!("step-{step}.safetensors"), format!("step-{step}.state.safetensors")] {
                        let _ = std::fs::rename(dir.join(&name), dir.join(format!("{name}.corrupt")));
                    }
                    let next =
                        steps.last().map_or_else(|| "step 0".to_string(), |s| format!("the checkpoint of step {s}"));
                    self.warnings.push(format!("{e}; resuming from {next} instead"));
                }
            }
        }
        Ok(None)
    }

    /// Decides how to start: returns the record of a finished run (nothing to do), or whether
    /// to start afresh. Writes `spec.toml`.
    fn prepare(&mut self, dir: &Path) -> Result<Start, TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let spec_text = self.spec.to_toml();
        let spec_path = dir.join("spec.toml");
        let mut fresh = self.opts.fresh;
        if !fresh {
            // Resume only a run of the same resolved spec.
            if let Ok(old) = std::fs::read_to_string(&spec_path)
                && old != spec_text
            {
                return Err(TrainError::io(
                    dir,
                    "holds a run of a different spec (choose another --out, or start fresh)",
                ));
            }
            match inspect_run(dir) {
                RunState::Finished(rec) => return Ok(Start::Finished(Box::new(rec))),
                RunState::Inconsistent { problem, .. } => {
                    self.warnings
                        .push(format!("{problem}: the previous record cannot be trusted; run redone from step 0"));
                    fresh = true;
                }
                RunState::Missing | RunState::Unfinished(_) => {}
            }
        }
        if fresh {
            let _ = std::fs::remove_dir_all(self.checkpoint_dir());
            let _ = std::fs::remove_file(dir.join("final.safetensors"));
        }
        write_text_atomic(&spec_path, &spec_text)?;
        Ok(Start::Run { fresh })
    }

    fn run(
        mut self,
        hook: &mut dyn MeasurementHook,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<RunRecord, TrainError> {
        let dir = self.opts.out_dir.clone();
        let fresh = match self.prepare(&dir)? {
            Start::Finished(rec) => return Ok(*rec),
            Start::Run { fresh } => fresh,
        };
        // A run left unfinished (interrupted, crashed, killed) by an earlier process of the same
        // spec is taken up again: one segment more.
        let segments = match read_record(&dir).ok().flatten() {
            Some(old) if !fresh && old.spec_hash == self.spec_hash => old.segments + 1,
            _ => 1,
        };
        let resumed = if fresh { None } else { self.restore()? };
        let (start, prior_wall) = resumed.unwrap_or((0, 0.0));
        let mut metrics = MetricsWriter::open(&dir, resumed.map(|(s, _)| s))?;
        let mut record = RunRecord {
            status: RunStatus::Running,
            diverged_at_step: None,
            message: None,
            seed: self.spec.seed,
            spec_hash: self.spec_hash.clone(),
            steps_completed: start,
            total_steps: self.total,
            dtype: T::NAME.to_string(),
            sgdlab_version: self.opts.context.sgdlab_version.clone(),
            git_revision: self.opts.context.git_revision.clone(),
            threads: sgdlab_linalg::threads(),
            wall_time_s: prior_wall,
            segments,
            final_metrics: BTreeMap::new(),
            metric_rows: None,
            warnings: self.warnings.clone(),
        };
        write_record(&dir, &record)?;
        let clock = Clock { t0: Instant::now(), prior_wall };
        let outcome = self
            .steps(start, &clock, &mut metrics, &mut record, hook, progress)
            .and_then(|last_eval| self.finish(&dir, &clock, &mut metrics, &mut record, last_eval));
        if let Err(e) = outcome {
            // Say so on disk: a record left "running" would claim a live process.
            record.status = RunStatus::Failed;
            record.message = Some(e.to_string());
            record.wall_time_s = clock.wall();
            write_record_after_error(&dir, &record);
            return Err(e);
        }
        Ok(record)
    }

    /// The training loop from `start`; returns the last evaluation (for `final_metrics`).
    fn steps(
        &mut self,
        start: u64,
        clock: &Clock,
        metrics: &mut MetricsWriter,
        record: &mut RunRecord,
        hook: &mut dyn MeasurementHook,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<LastEval, TrainError> {
        let mut prog = Progress { total: self.total, step: start, epoch: self.epoch_of(start), ..Default::default() };
        let mut last = LastEval::default();
        if start == 0 {
            self.measure(0, metrics, hook, &mut last, &mut prog)?;
        }
        let mut step = start;
        let lr0 = self.spec.optimizer.lr();
        // Hand each step to the compute threads only when its products are big enough to run in
        // parallel (the forward multiply-adds x batch rows; for an MLP about parameters x rows):
        // for a small model the hand-off costs more per step than it saves (job S at 2 threads,
        // measured: 0.09 s in-loop without it, 0.22 s with it). A convolution does far more
        // work than its parameter count says (LeNet-5: 62k parameters, 0.42M multiply-adds per
        // example), and its chunks of examples run on the compute threads.
        let rows = self.plan.as_ref().map_or(self.train.x.nrows(), |p| p.batch_size());
        let pooled = self.model.forward_macs().saturating_mul(rows) >= sgdlab_linalg::PARALLEL_MIN_FLOPS;
        let every_s = self.spec.checkpoint.every_seconds;
        let mut last_checkpoint = Instant::now();
        while step < self.total {
            if self.opts.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                metrics.flush()?;
                self.save_checkpoint(step, clock.wall())?;
                record.status = RunStatus::Interrupted;
                record.message = Some(format!("interrupted at step {step}; run again to resume"));
                break;
            }
            let lr = self.spec.schedule.lr_at(lr0, step, self.total);
            let (loss, params_finite, lr) = if pooled {
                sgdlab_linalg::on_compute_threads(|| self.update(step, lr))
            } else {
                self.update(step, lr)
            }?;
            step += 1;
            record.steps_completed = step;
            if !(loss.is_finite() && params_finite) {
                metrics.write(step, self.epoch_of(step), "batch", "loss", loss)?;
                record.status = RunStatus::Diverged;
                record.diverged_at_step = Some(step);
                let what = if loss.is_finite() { "parameter" } else { "loss" };
                let before = last.step.map_or_else(String::new, |s| {
                    format!("; the last evaluation before it (step {s}) is in metrics.jsonl")
                });
                record.message = Some(format!("non-finite {what} at step {step}{before}"));
                break;
            }
            let le = self.spec.eval.log_every;
            if le > 0 && step.is_multiple_of(le) {
                let ep = self.epoch_of(step);
                metrics.write(step, ep, "batch", "loss", loss)?;
                metrics.write(step, ep, "optimizer", "lr", lr)?;
            }
            prog.step = step;
            prog.epoch = self.epoch_of(step);
            prog.batch_loss = loss;
            prog.lr = lr;
            self.measure(step, metrics, hook, &mut last, &mut prog)?;
            prog.elapsed_s = clock.t0.elapsed().as_secs_f64();
            progress(&prog);
            let ce = self.spec.checkpoint.every;
            let by_steps = ce > 0 && step.is_multiple_of(ce);
            let by_time = every_s > 0 && last_checkpoint.elapsed().as_secs() >= every_s;
            if (by_steps || by_time) && step < self.total {
                metrics.flush()?;
                self.save_checkpoint(step, clock.wall())?;
                last_checkpoint = Instant::now();
            }
        }
        Ok(last)
    }

    /// Ends the run: metrics made durable, then the final parameters, then the record (so a
    /// record saying `completed` always has its files on disk).
    fn finish(
        &mut self,
        dir: &Path,
        clock: &Clock,
        metrics: &mut MetricsWriter,
        record: &mut RunRecord,
        last: LastEval,
    ) -> Result<(), TrainError> {
        metrics.flush()?;
        let step = record.steps_completed;
        record.total_steps = self.total;
        if self.stopped_early && record.status == RunStatus::Running {
            record.message = Some(format!("reached the training target at step {step}"));
        }
        if record.status == RunStatus::Running {
            record.status = RunStatus::Completed;
            save_checkpoint(&dir.join("final.safetensors"), &self.model, &self.theta, &self.checkpoint_metadata(step))?;
        }
        // A diverged run has no final metrics: its last evaluation is from before the divergence.
        record.final_metrics = if record.status == RunStatus::Diverged { BTreeMap::new() } else { last.values };
        record.metric_rows = Some(metrics.rows());
        record.warnings = self.warnings.clone();
        record.wall_time_s = clock.wall();
        write_record(dir, record)
    }

    fn measure(
        &mut self,
        step: u64,
        metrics: &mut MetricsWriter,
        hook: &mut dyn MeasurementHook,
        last: &mut LastEval,
        prog: &mut Progress,
    ) -> Result<(), TrainError> {
        let ep = self.epoch_of(step);
        if self.eval_due(step) {
            last.step = Some(step);
            let last = &mut last.values;
            let (l, a) = self.evaluate(&self.train, &self.eval_train)?;
            metrics.write(step, ep, "train", "loss", l)?;
            metrics.write(step, ep, "train", "accuracy", a)?;
            last.insert("train/loss".into(), l);
            last.insert("train/accuracy".into(), a);
            prog.train_loss = Some(l);
            prog.train_accuracy = Some(a);
            // Training targets end the run here (checked at evaluations only).
            let b = &self.spec.budget;
            let reached = step > 0
                && (b.until_train_loss.is_some() || b.until_train_accuracy.is_some())
                && b.until_train_loss.is_none_or(|t| l <= t)
                && b.until_train_accuracy.is_none_or(|t| a >= t);
            if reached && step < self.total {
                self.total = step;
                self.stopped_early = true;
            }
            if let Some((td, idx)) = &self.eval_test {
                let (l, a) = self.evaluate(td, idx)?;
                metrics.write(step, ep, "test", "loss", l)?;
                metrics.write(step, ep, "test", "accuracy", a)?;
                last.insert("test/loss".into(), l);
                last.insert("test/accuracy".into(), a);
                prog.test_accuracy = Some(a);
            }
        }
        if hook.due(step, self.total) {
            hook.optimizer_state(self.adam_second_moment());
            let p64: Params<f64> = self.theta.cast();
            let ms = hook
                .measure(step, self.total, &self.model, &p64, self.data)
                .map_err(|message| TrainError::Hook { step, message })?;
            for m in ms {
                metrics.write_element(step, ep, &m.probe, &m.name, m.index, m.value)?;
            }
        }
        Ok(())
    }
}

/// The latest evaluation: its step and values (`train_loss`, ...).
#[derive(Debug, Default)]
struct LastEval {
    step: Option<u64>,
    values: BTreeMap<String, f64>,
}

/// Wall time of a run over its resumed segments.
struct Clock {
    t0: Instant,
    prior_wall: f64,
}

impl Clock {
    fn wall(&self) -> f64 {
        self.prior_wall + self.t0.elapsed().as_secs_f64()
    }
}

/// How [`Run::prepare`] found the run directory.
enum Start {
    /// A finished run whose files agree with its record: return it.
    Finished(Box<RunRecord>),
    /// Train, from the latest checkpoint unless `fresh`.
    Run { fresh: bool },
}

fn list_checkpoints(dir: &Path) -> Vec<u64> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    rd.filter_map(|e| {
        let name = e.ok()?.file_name().into_string().ok()?;
        let s = name.strip_prefix("step-")?.strip_suffix(".safetensors")?;
        if s.ends_with(".state") {
            return None;
        }
        let step: u64 = s.parse().ok()?;
        dir.join(format!("step-{step}.state.safetensors")).exists().then_some(step)
    })
    .collect()
}
