//! `sgdlab probe NAME` for the simplicity and representation measures (PROTOCOLS 1-6, 9.2,
//! 10.1). Numbers come from `sgdlab_probes::simplicity`; this file parses, dispatches and prints.

use crate::cmd_probe_common::{Loaded, ModelDataArgs, emit};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::json;
use sgdlab_data::{Dataset, DatasetSpec, SourceSpec, load_dataset};
use sgdlab_linalg::{RngStream, Scalar};
use sgdlab_nn::{ArchSpec, Checkpoint, Model, load_checkpoint};
use sgdlab_probes::EvalSet;
use sgdlab_probes::simplicity::{
    self as simp, Centring, EmbeddingLayers, FeatureSparsityParams, FunctionCondition, FunctionSamplerParams,
    KernelActivation, KernelKind, KernelSpec, LesionParams, LogisticRegressionParams, NccDepthParams,
    NeuralCollapseParams, PathLengthParams, PriorSpec, RepresentationRankParams, SaturationParams, WeightSpectraParams,
};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Simplicity and representation probes.
#[derive(clap::Subcommand, Debug)]
pub enum SimplicityProbe {
    /// Singular values, ||W||_2/||W||_F, stable rank, effective rank and epsilon-rank of every
    /// linear weight (Timor et al. 2022; Galanti & Poggio 2022; PROTOCOLS 1.1-1.2). No data needed.
    WeightSpectra(WeightSpectraArgs),
    /// Effective rank (Roy & Vetterli) of each layer's embeddings, embedding-matrix and Gram
    /// conventions (Huh et al. 2021; PROTOCOLS 1.3).
    RepresentationRank(RepresentationRankArgs),
    /// Per-frequency residual Delta_i = |DFT(f - lambda)(k_i)| / A_i of a 1-D network against its
    /// sum-of-sines target; with several checkpoints, the time to learn each frequency and its
    /// Spearman correlation with frequency (Rahaman et al. 2019; PROTOCOLS 2.1).
    SpectralBias(SpectralBiasArgs),
    /// CK / NTK eigenvalues of an infinite-width ReLU or erf MLP on the boolean cube {-1,1}^d
    /// (Yang & Salman 2019; PROTOCOLS 2.2). No model needed.
    KernelSpectrum(KernelSpectrumArgs),
    /// Functions of random networks drawn from a Gaussian prior on a point set, optionally
    /// conditioned on fitting the train split (rejection sampling of P_B(f|S); Mingard et al.
    /// 2021; PROTOCOLS 2.2b, 10.1). No checkpoint needed.
    PriorFunctions(PriorFunctionsArgs),
    /// Nearest-class-centre error of every layer on train and test, and the epsilon-effective depth
    /// (Galanti et al. 2022; PROTOCOLS 3.1).
    NccDepth(NccDepthArgs),
    /// Neural collapse NC1-NC4 of the penultimate features, both NC3 normalisations (Papyan, Han
    /// & Donoho 2020; PROTOCOLS 3.2).
    NeuralCollapse(NeuralCollapseArgs),
    /// Test-time lesions: accuracy with each residual block (or width-preserving layer of a plain
    /// net) deleted, and with k random blocks deleted (Veit et al. 2016; PROTOCOLS 3.3).
    Lesion(LesionArgs),
    /// Gradient magnitude carried by paths through exactly k residual branches (Veit et al. 2016;
    /// PROTOCOLS 3.3).
    PathLengths(PathLengthsArgs),
    /// Geometric complexity: mean squared Frobenius norm of the logits' input Jacobian, exact
    /// (Dherin et al. 2022; PROTOCOLS 4).
    GeometricComplexity(GeometricComplexityArgs),
    /// Accuracy and AUC on the test split and on every *-randomised test split (LMS/MS, dominoes)
    /// (Shah et al. 2020; PROTOCOLS 5).
    Randomisation(RandomisationArgs),
    /// Performance correlation mu_Y(F;L) = I(F;Y) - I(F;Y|L) of the network F with a
    /// logistic-regression baseline L, plug-in estimates in bits (Nakkiran et al. 2019; PROTOCOLS
    /// 6.1).
    PerformanceCorrelation(PerformanceCorrelationArgs),
    /// Parameter norms (total, per tensor, per layer); with several checkpoints, fits of sqrt(t),
    /// log(t), linear growth and a power law (Merrill et al. 2021; PROTOCOLS 6.3). No data needed.
    Norms(NormsArgs),
    /// Saturation: cosine between every layer's output at theta and at rho * theta (Merrill et
    /// al. 2021; PROTOCOLS 6.3).
    Saturation(SaturationArgs),
    /// Feature sparsity: fraction of active ReLU units, with and without de-duplication of highly
    /// correlated units (Andriushchenko et al. 2023; PROTOCOLS 9.2).
    Sparsity(SparsityArgs),
}

/// A checkpoint without data.
#[derive(clap::Args, Debug)]
pub struct CheckpointArgs {
    /// Checkpoint (safetensors) written by sgdlab, or by PyTorch with --arch.
    #[arg(long, value_name = "CKPT")]
    model: PathBuf,
    /// Architecture, for checkpoints without sgdlab metadata (e.g. mlp:784-100-10:relu).
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct WeightSpectraArgs {
    #[command(flatten)]
    ck: CheckpointArgs,
    /// Thresholds of the epsilon-rank #{sigma_i(W/||W||_F) > eps} (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1e-3,1e-2", value_name = "EPS")]
    eps: Vec<f64>,
}

#[derive(clap::Args, Debug)]
pub struct RepresentationRankArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Representation layers: `blocks` (input, each Linear[+LN]+activation group or residual
    /// block, logits) or `all` (every top-level layer).
    #[arg(long, default_value = "blocks", value_name = "blocks|all")]
    layers: EmbeddingLayers,
    /// Centre the embeddings (subtract the mean over samples) before the spectrum: none|mean.
    #[arg(long, default_value = "none", value_name = "none|mean")]
    centring: Centring,
}

#[derive(clap::Args, Debug)]
pub struct SpectralBiasArgs {
    /// Checkpoint(s) of a 1-input, 1-output network; repeat for a training run's checkpoints.
    #[arg(long = "model", value_name = "CKPT", required = true)]
    models: Vec<PathBuf>,
    /// Architecture, for checkpoints without sgdlab metadata.
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// The sines dataset spec the network was trained on (its target and grid), e.g.
    /// `sines:amplitudes=increasing,seed=3`.
    #[arg(long, default_value = "sines", value_name = "SPEC")]
    data: String,
    /// Training step of each checkpoint (comma-separated; default: read from file names
    /// `step-N.safetensors`).
    #[arg(long, value_delimiter = ',', value_name = "STEPS")]
    steps: Vec<u64>,
    /// A frequency counts as learned when Delta_i falls below this.
    #[arg(long, default_value_t = 0.1)]
    threshold: f64,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct KernelSpectrumArgs {
    /// Activation with a closed-form kernel: relu|erf.
    #[arg(long, default_value = "relu", value_name = "relu|erf")]
    activation: KernelActivation,
    /// Which kernel: ck (conjugate / NNGP kernel) or ntk.
    #[arg(long, default_value = "ck", value_name = "ck|ntk")]
    kernel: KernelKind,
    /// Weight variance sigma_w^2 (weights N(0, sigma_w^2 / fan_in)).
    #[arg(long, default_value_t = 2.0)]
    sigma_w2: f64,
    /// Bias variance sigma_b^2.
    #[arg(long, default_value_t = 1.0)]
    sigma_b2: f64,
    /// Numbers of hidden layers (comma-separated); 0 is the linear kernel.
    #[arg(long, value_delimiter = ',', default_value = "2", value_name = "L")]
    depth: Vec<usize>,
    /// Cube dimension d (1-128).
    #[arg(short = 'd', long = "dim", default_value_t = 7)]
    dim: usize,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct PriorFunctionsArgs {
    /// Architecture of the random networks (e.g. mlp:7-40-40-1:relu); 1 output (sign) or 2-10
    /// outputs (arg-max).
    #[arg(long, value_name = "ARCH")]
    arch: String,
    /// Weight variance: W ~ N(0, sigma_w^2 / fan_in).
    #[arg(long, default_value_t = 2.0)]
    sigma_w2: f64,
    /// Bias variance: b ~ N(0, sigma_b^2).
    #[arg(long, default_value_t = 0.0)]
    sigma_b2: f64,
    /// Points the functions are read on: a dataset spec (default: the 7-cube).
    #[arg(long, default_value = "boolean:d=7", value_name = "SPEC")]
    data: String,
    /// Condition on the train split's labels (accept a network only if it fits them) and read
    /// the functions on the test split.
    #[arg(long)]
    condition: bool,
    /// Networks drawn.
    #[arg(long, default_value_t = 10_000)]
    samples: usize,
    /// Functions listed, most frequent first (0 = all).
    #[arg(long, default_value_t = 20)]
    top: usize,
    /// Seed of the draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct NccDepthArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Split for the test NCC error (centres from --split); `none` to skip [default: test, if any].
    #[arg(long, value_name = "NAME")]
    test_split: Option<String>,
    /// Error level of the effective depth d_eps = min{l : err_l <= eps}.
    #[arg(long, default_value_t = 0.01)]
    eps: f64,
    /// Representation layers: blocks|all.
    #[arg(long, default_value = "blocks", value_name = "blocks|all")]
    layers: EmbeddingLayers,
}

#[derive(clap::Args, Debug)]
pub struct NeuralCollapseArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Split for the test NC4 (train means); `none` to skip [default: test, if any].
    #[arg(long, value_name = "NAME")]
    test_split: Option<String>,
    /// Relative cut-off of the pseudo-inverse of Sigma_B (eigenvalues below rtol * max are 0).
    #[arg(long, default_value_t = 1e-6)]
    pinv_rtol: f64,
}

#[derive(clap::Args, Debug)]
pub struct LesionArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Largest number of blocks deleted at random.
    #[arg(long, default_value_t = 8)]
    max_deleted: usize,
    /// Random draws per number of deleted blocks.
    #[arg(long, default_value_t = 20)]
    draws: usize,
}

#[derive(clap::Args, Debug)]
pub struct PathLengthsArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Random block subsets per path length.
    #[arg(long, default_value_t = 20)]
    draws: usize,
}

#[derive(clap::Args, Debug)]
pub struct GeometricComplexityArgs {
    #[command(flatten)]
    common: ModelDataArgs,
}

#[derive(clap::Args, Debug)]
pub struct RandomisationArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Splits to score (comma-separated) [default: test and every test-*-randomised split].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    splits: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct PerformanceCorrelationArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// Split the logistic-regression baseline is fitted on (all of it).
    #[arg(long, default_value = "train", value_name = "NAME")]
    baseline_split: String,
    /// Held-out split the informations are estimated on (--samples examples of it).
    #[arg(long, default_value = "test", value_name = "NAME")]
    eval_split: String,
    /// Ridge of the baseline on its weights.
    #[arg(long, default_value_t = 1e-4)]
    l2: f64,
}

#[derive(clap::Args, Debug)]
pub struct NormsArgs {
    /// Checkpoint(s); repeat for a training run's checkpoints to fit the growth law.
    #[arg(long = "model", value_name = "CKPT", required = true)]
    models: Vec<PathBuf>,
    /// Architecture, for checkpoints without sgdlab metadata.
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
    /// Training step of each checkpoint (comma-separated; default: from `step-N` file names).
    #[arg(long, value_delimiter = ',', value_name = "STEPS")]
    steps: Vec<u64>,
    /// Print exactly one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct SaturationArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// The factor rho every parameter is multiplied by.
    #[arg(long, default_value_t = 1000.0)]
    scale: f64,
    /// Representation layers: blocks|all.
    #[arg(long, default_value = "blocks", value_name = "blocks|all")]
    layers: EmbeddingLayers,
}

#[derive(clap::Args, Debug)]
pub struct SparsityArgs {
    #[command(flatten)]
    common: ModelDataArgs,
    /// |Pearson| above which a unit duplicates another.
    #[arg(long, default_value_t = 0.95)]
    correlation_threshold: f64,
}

/// Run one simplicity probe.
pub fn run(p: SimplicityProbe) -> Result<()> {
    match p {
        SimplicityProbe::WeightSpectra(a) => weight_spectra(&a),
        SimplicityProbe::RepresentationRank(a) => with_model(&a.common, |l, p| representation_rank(l, p, &a)),
        SimplicityProbe::SpectralBias(a) => spectral_bias(&a),
        SimplicityProbe::KernelSpectrum(a) => kernel_spectrum(&a),
        SimplicityProbe::PriorFunctions(a) => prior_functions(&a),
        SimplicityProbe::NccDepth(a) => with_model(&a.common, |l, p| ncc_depth(l, p, &a)),
        SimplicityProbe::NeuralCollapse(a) => with_model(&a.common, |l, p| neural_collapse(l, p, &a)),
        SimplicityProbe::Lesion(a) => with_model(&a.common, |l, p| lesion(l, p, &a)),
        SimplicityProbe::PathLengths(a) => with_model(&a.common, |l, p| path_lengths(l, p, &a)),
        SimplicityProbe::GeometricComplexity(a) => with_model(&a.common, |l, p| geometric(l, p, &a.common)),
        SimplicityProbe::Randomisation(a) => with_model(&a.common, |l, p| randomisation(l, p, &a)),
        SimplicityProbe::PerformanceCorrelation(a) => with_model(&a.common, |l, p| performance(l, p, &a)),
        SimplicityProbe::Norms(a) => norms(&a),
        SimplicityProbe::Saturation(a) => with_model(&a.common, |l, p| saturation(l, p, &a)),
        SimplicityProbe::Sparsity(a) => with_model(&a.common, |l, p| sparsity(l, p, &a)),
    }
}

#[derive(Clone, Copy)]
enum Precision {
    F32,
    F64,
}

/// Loads model and data, then runs `f` in the requested precision.
fn with_model(common: &ModelDataArgs, f: impl Fn(&Loaded, Precision) -> Result<()>) -> Result<()> {
    let loaded = common.load()?;
    f(&loaded, if common.dtype == "f32" { Precision::F32 } else { Precision::F64 })
}

macro_rules! typed {
    ($prec:expr, $f:ident ( $($arg:expr),* )) => {
        match $prec {
            Precision::F32 => $f::<f32>($($arg),*),
            Precision::F64 => $f::<f64>($($arg),*),
        }
    };
}

/// What every model probe reports about its inputs.
fn header(l: &Loaded, common: &ModelDataArgs, probe: &str) -> serde_json::Value {
    json!({
        "probe": probe,
        "model": common.model.display().to_string(),
        "arch": l.model.describe(),
        "num_params": l.model.num_params(),
        "data": common.data,
        "examples": l.set.len(),
        "dtype": common.dtype,
        "seed": common.seed,
    })
}

/// `header` with the fields of `result` added.
fn with_result(mut head: serde_json::Value, result: &impl Serialize) -> Result<serde_json::Value> {
    let v = serde_json::to_value(result).context("serialising the result")?;
    match (head.as_object_mut(), v) {
        (Some(h), serde_json::Value::Object(r)) => h.extend(r),
        (Some(h), other) => {
            h.insert("result".into(), other);
        }
        _ => {}
    }
    Ok(head)
}

/// Splits `name` of the loaded data, subsampled like the main evaluation set.
fn eval_split<T: Scalar>(l: &Loaded, common: &ModelDataArgs, name: &str) -> Result<EvalSet<T>> {
    let split = l.data.split(name)?;
    Ok(EvalSet::<T>::from_split(split, common.samples, &l.stream.child(name)))
}

/// The test split for probes with an optional held-out evaluation.
fn test_split_name(data: &Dataset, arg: &Option<String>) -> Option<String> {
    match arg.as_deref() {
        Some("none") => None,
        Some(s) => Some(s.to_string()),
        None => data.split("test").ok().map(|_| "test".to_string()),
    }
}

fn load_ck(path: &Path, arch: &Option<String>) -> Result<Checkpoint<f64>> {
    let arch = arch.as_deref().map(str::parse::<ArchSpec>).transpose()?;
    Ok(load_checkpoint::<f64>(path, arch.as_ref())?)
}

/// Steps of checkpoints: `--steps` if given, else the `N` of file names `step-N.safetensors`.
fn checkpoint_steps(paths: &[PathBuf], steps: &[u64]) -> Result<Vec<u64>> {
    if !steps.is_empty() {
        if steps.len() != paths.len() {
            bail!("{} checkpoints but {} --steps", paths.len(), steps.len());
        }
        return Ok(steps.to_vec());
    }
    paths
        .iter()
        .map(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.strip_prefix("step-"))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| {
                    anyhow!("cannot read a step from {} (name it step-N.safetensors or pass --steps)", p.display())
                })
        })
        .collect()
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.4}"))
}

fn weight_spectra(a: &WeightSpectraArgs) -> Result<()> {
    let ck = load_ck(&a.ck.model, &a.ck.arch)?;
    let est = simp::weight_spectra(&ck.model, ck.params.as_slice(), &WeightSpectraParams { eps: a.eps.clone() })?;
    let head =
        json!({"probe": "weight-spectra", "model": a.ck.model.display().to_string(), "arch": ck.model.describe()});
    emit(a.ck.json, &with_result(head, &est)?, || {
        let mut t =
            String::from("layer         shape        ||W||_2    ||W||_F    ratio   srank   erank   eps-ranks\n");
        for w in &est.layers {
            let s = &w.spectrum;
            let eps: Vec<String> = s.eps_ranks.iter().map(|e| format!("{}@{:e}", e.rank, e.eps)).collect();
            let _ = writeln!(
                t,
                "{:<13} {:<12} {:>9.4} {:>10.4} {:>7.4} {:>7.3} {:>7.3}   {} (of {})",
                w.name,
                format!("{}x{}", w.shape[0], w.shape[1]),
                s.spectral_norm,
                s.frobenius_norm,
                s.norm_ratio,
                s.stable_rank,
                s.effective_rank,
                eps.join(" "),
                s.max_rank
            );
        }
        let _ = writeln!(
            t,
            "mean ratio {:.4}, mean stable rank {:.3}, mean hidden stable rank {:.3}",
            est.mean_norm_ratio, est.mean_stable_rank, est.mean_hidden_stable_rank
        );
        t
    })
}

fn representation_rank(l: &Loaded, p: Precision, a: &RepresentationRankArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &RepresentationRankArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let opts = RepresentationRankParams { layers: a.layers, centring: a.centring };
        let est = simp::representation_rank(&l.model, &params, &set, &opts)?;
        emit(a.common.json, &with_result(header(l, &a.common, "representation-rank"), &est)?, || {
            let mut t = format!(
                "{} samples, centring {:?}\nlayer   depth kind        dim   erank   erank(Gram)  srank\n",
                est.samples, est.centring
            );
            for r in &est.layers {
                let _ = writeln!(
                    t,
                    "{:<7} {:>5} {:<10} {:>4} {:>8.3} {:>11.3} {:>7.3}",
                    r.layer.name,
                    r.layer.depth,
                    r.layer.kind,
                    r.layer.dim,
                    r.effective_rank,
                    r.effective_rank_gram,
                    r.stable_rank
                );
            }
            t
        })
    }
    typed!(p, go(l, a))
}

fn spectral_bias(a: &SpectralBiasArgs) -> Result<()> {
    let spec = DatasetSpec::parse(&a.data)?;
    let sines = match (&spec.source, spec.transforms.is_empty()) {
        (SourceSpec::Sines(s), true) => s.clone(),
        _ => {
            bail!("--data must be a sines spec without transforms (e.g. sines:amplitudes=increasing), not '{}'", a.data)
        }
    };
    let target = sines.target();
    let steps = if a.models.len() > 1 { Some(checkpoint_steps(&a.models, &a.steps)?) } else { None };
    let mut per = Vec::with_capacity(a.models.len());
    for path in &a.models {
        let ck = load_ck(path, &a.arch)?;
        per.push(simp::spectral_bias(&ck.model, ck.params.as_slice(), &target, sines.n)?);
    }
    let ttl = match &steps {
        Some(s) => {
            let res: Vec<Vec<f64>> = per.iter().map(|e| e.residual.clone()).collect();
            Some(simp::time_to_learn(&target.frequencies, s, &res, a.threshold)?)
        }
        None => None,
    };
    let checkpoints: Vec<serde_json::Value> = a
        .models
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "model": p.display().to_string(),
                "step": steps.as_ref().map(|s| s[i]),
                "residual": per[i].residual,
                "learned": per[i].learned,
                "relative_error": per[i].relative_error,
                "network_spectrum": per[i].network_spectrum,
            })
        })
        .collect();
    let v = json!({
        "probe": "spectral-bias",
        "data": a.data,
        "grid_points": sines.n,
        "frequencies": target.frequencies,
        "amplitudes": target.amplitudes,
        "checkpoints": checkpoints,
        "time_to_learn": ttl,
    });
    emit(a.json, &v, || {
        let mut t = String::from("k      ");
        for k in &target.frequencies {
            let _ = write!(t, "{k:>7}");
        }
        t.push('\n');
        for (i, e) in per.iter().enumerate() {
            let label = steps.as_ref().map_or_else(|| "Delta".to_string(), |s| format!("t={}", s[i]));
            let _ = write!(t, "{label:<7}");
            for r in &e.residual {
                let _ = write!(t, "{r:>7.3}");
            }
            t.push('\n');
        }
        if let Some(tl) = &ttl {
            let learned: Vec<String> = tl.steps.iter().map(|s| s.map_or("never".into(), |v| v.to_string())).collect();
            let _ = writeln!(t, "time to learn (Delta < {}): {}", tl.threshold, learned.join(" "));
            let _ =
                writeln!(t, "Spearman(k, t) = {:.4} ({} of {} learned)", tl.spearman, tl.learned, tl.frequencies.len());
        }
        t
    })
}

fn kernel_spectrum(a: &KernelSpectrumArgs) -> Result<()> {
    let mut out = Vec::new();
    for &depth in &a.depth {
        let spec = KernelSpec { activation: a.activation, sigma_w2: a.sigma_w2, sigma_b2: a.sigma_b2, depth };
        out.push(simp::boolean_cube_spectrum(&spec, a.kernel, a.dim)?);
    }
    let v = json!({"probe": "kernel-spectrum", "d": a.dim, "spectra": out});
    emit(a.json, &v, || {
        let mut t = format!(
            "{:?} {:?} sigma_w^2 = {}, sigma_b^2 = {}, d = {}: normalised eigenvalues mu_k / sum_k C(d,k) mu_k\n",
            a.kernel, a.activation, a.sigma_w2, a.sigma_b2, a.dim
        );
        let _ = write!(t, "L  ");
        for k in 0..=a.dim {
            let _ = write!(t, "{:>11}", format!("k={k}"));
        }
        t.push('\n');
        for s in &out {
            let _ = write!(t, "{:<3}", s.spec.depth);
            for m in &s.normalised {
                let _ = write!(t, "{m:>11.3e}");
            }
            t.push('\n');
        }
        t
    })
}

fn prior_functions(a: &PriorFunctionsArgs) -> Result<()> {
    let arch: ArchSpec = a.arch.parse()?;
    let model = Model::new(&arch);
    let data = load_dataset(&a.data)?;
    let prior = PriorSpec { sigma_w2: a.sigma_w2, sigma_b2: a.sigma_b2 };
    let opts = FunctionSamplerParams { samples: a.samples, top: a.top };
    let stream = RngStream::new(a.seed);
    let (est, train_rows) = if a.condition {
        let (tr, te) = (data.train()?, data.test().context("--condition needs a test split")?);
        let labels = tr.labels().ok_or_else(|| anyhow!("--condition needs class labels"))?.to_vec();
        let x = ndarray::concatenate(ndarray::Axis(0), &[tr.features().view(), te.features().view()])?.mapv(f64::from);
        let rows: Vec<usize> = (0..tr.len()).collect();
        let cond = FunctionCondition { train: &rows, labels: &labels };
        (simp::sample_prior_functions(&model, &prior, x.view(), Some(&cond), &opts, &stream)?, tr.len())
    } else {
        let split = data.train().or_else(|_| data.split("all"))?;
        let x = split.features().mapv(f64::from);
        (simp::sample_prior_functions(&model, &prior, x.view(), None, &opts, &stream)?, 0)
    };
    let head = json!({
        "probe": "prior-functions",
        "arch": arch.to_string(),
        "data": a.data,
        "prior": prior,
        "conditioned_on": train_rows,
        "seed": a.seed,
    });
    emit(a.json, &with_result(head, &est)?, || {
        let mut t = format!(
            "{} networks, {} accepted ({:.3e}), {} distinct functions on {} points\nentropy {:.3} bits, most frequent {:.4}, constant {:.4}\n",
            est.samples,
            est.accepted,
            est.acceptance_rate,
            est.distinct,
            est.points,
            est.entropy_bits,
            est.most_frequent_probability,
            est.constant_probability
        );
        for f in &est.top {
            let _ = writeln!(t, "{:>8.5} {:>8}  {}", f.probability, f.count, f.function);
        }
        t
    })
}

fn ncc_depth(l: &Loaded, p: Precision, a: &NccDepthArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &NccDepthArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let train = l.set.cast::<T>();
        let test = test_split_name(&l.data, &a.test_split).map(|n| eval_split::<T>(l, &a.common, &n)).transpose()?;
        let opts = NccDepthParams { layers: a.layers, eps: a.eps, batch_size: a.common.batch_size };
        let est = simp::ncc_depth(&l.model, &params, &train, test.as_ref(), &opts)?;
        emit(a.common.json, &with_result(header(l, &a.common, "ncc-depth"), &est)?, || {
            let mut t = String::from("depth layer   kind        dim   train err   test err\n");
            for r in &est.layers {
                let _ = writeln!(
                    t,
                    "{:>5} {:<7} {:<10} {:>4} {:>10.4} {:>10}",
                    r.layer.depth,
                    r.layer.name,
                    r.layer.kind,
                    r.layer.dim,
                    r.train_error,
                    fmt_opt(r.test_error)
                );
            }
            let d = est.effective_depth.map_or("none".to_string(), |d| d.to_string());
            let _ = writeln!(t, "effective depth (eps {}): {d} of {}", est.eps, est.max_depth);
            t
        })
    }
    typed!(p, go(l, a))
}

fn neural_collapse(l: &Loaded, p: Precision, a: &NeuralCollapseArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &NeuralCollapseArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let train = l.set.cast::<T>();
        let test = test_split_name(&l.data, &a.test_split).map(|n| eval_split::<T>(l, &a.common, &n)).transpose()?;
        let opts = NeuralCollapseParams { pinv_rtol: a.pinv_rtol, batch_size: a.common.batch_size };
        let e = simp::neural_collapse(&l.model, &params, &train, test.as_ref(), &opts)?;
        emit(a.common.json, &with_result(header(l, &a.common, "neural-collapse"), &e)?, || {
            format!(
                "NC1 Tr(Sw Sb+)/C            {:.6e}  (Sigma_B rank {})\n\
                 NC2 equinorm means/weights  {:.4} / {:.4}\n\
                 NC2 cos std means/weights   {:.4} / {:.4}\n\
                 NC2 |cos+1/(C-1)| m/w       {:.4} / {:.4}\n\
                 NC2 ETF deviation m/w       {:.4} / {:.4}\n\
                 NC3 Papyan / Zhu            {:.4} / {:.4}\n\
                 NC4 train / test            {:.4} / {}\n\
                 accuracy train / test       {:.4} / {}\n",
                e.nc1,
                e.sigma_b_rank,
                e.equinorm_means,
                e.equinorm_weights,
                e.equiangular_std_means,
                e.equiangular_std_weights,
                e.angle_deviation_means,
                e.angle_deviation_weights,
                e.etf_deviation_means,
                e.etf_deviation_weights,
                e.nc3_papyan,
                e.nc3_zhu,
                e.nc4_train,
                fmt_opt(e.nc4_test),
                e.train_accuracy,
                fmt_opt(e.test_accuracy)
            )
        })
    }
    typed!(p, go(l, a))
}

fn lesion(l: &Loaded, p: Precision, a: &LesionArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &LesionArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let opts = LesionParams { max_deleted: a.max_deleted, draws: a.draws };
        let e = simp::residual_lesions(&l.model, &params, &set, &opts, &l.stream)?;
        emit(a.common.json, &with_result(header(l, &a.common, "lesion"), &e)?, || {
            let mut t = format!(
                "baseline accuracy {:.4} ({} {} units)\nsingle lesions:\n",
                e.baseline_accuracy,
                e.units.len(),
                e.units[0].kind
            );
            for s in &e.single {
                let _ = writeln!(t, "  delete {:<6} accuracy {:.4}  drop {:+.4}", s.unit, s.accuracy, s.drop);
            }
            let _ = writeln!(t, "median drop {:.4}\nrandom lesions:", e.median_single_drop);
            for r in &e.random {
                let _ = writeln!(
                    t,
                    "  k = {:<2} accuracy {:.4} +- {:.4} (min {:.4}, {} draws)",
                    r.deleted, r.mean_accuracy, r.sd_accuracy, r.min_accuracy, r.draws
                );
            }
            t
        })
    }
    typed!(p, go(l, a))
}

fn path_lengths(l: &Loaded, p: Precision, a: &PathLengthsArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &PathLengthsArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let opts = PathLengthParams { draws: a.draws, loss: l.loss };
        let e = simp::path_length_gradients(&l.model, &params, &set, &opts, &l.stream)?;
        emit(a.common.json, &with_result(header(l, &a.common, "path-lengths"), &e)?, || {
            let mut t = String::from("k    paths      |grad| per path   total contribution\n");
            for q in &e.points {
                let _ = writeln!(
                    t,
                    "{:<4} {:>9.0} {:>14.4e} {:>18.4e}",
                    q.length, q.paths, q.mean_gradient_norm, q.total_contribution
                );
            }
            let _ = writeln!(
                t,
                "ln|grad| ~ {:.4} k + {:.4} (R^2 {:.4}); total contribution peaks at k = {} of {}",
                e.log_slope, e.log_intercept, e.log_r_squared, e.peak_length, e.blocks
            );
            t
        })
    }
    typed!(p, go(l, a))
}

fn geometric(l: &Loaded, p: Precision, common: &ModelDataArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, common: &ModelDataArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let e = simp::geometric_complexity(&l.model, &params, &set, common.batch_size)?;
        emit(common.json, &with_result(header(l, common, "geometric-complexity"), &e)?, || {
            format!(
                "geometric complexity {:.6e} +- {:.2e} (n = {}, min {:.4e}, max {:.4e})\n",
                e.value, e.standard_error, e.samples, e.min, e.max
            )
        })
    }
    typed!(p, go(l, common))
}

fn randomisation(l: &Loaded, p: Precision, a: &RandomisationArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &RandomisationArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let names: Vec<String> = if a.splits.is_empty() {
            l.data
                .split_names()
                .into_iter()
                .filter(|n| *n == "test" || (n.starts_with("test-") && n.ends_with("randomised")))
                .map(str::to_string)
                .collect()
        } else {
            a.splits.clone()
        };
        if names.is_empty() {
            bail!("{} has no test or test-*-randomised splits; pass --splits", a.common.data);
        }
        let sets: Vec<EvalSet<T>> = names.iter().map(|n| eval_split::<T>(l, &a.common, n)).collect::<Result<_>>()?;
        let refs: Vec<(&str, &EvalSet<T>)> = names.iter().map(String::as_str).zip(sets.iter()).collect();
        let e = simp::randomisation_scores(&l.model, &params, &refs, a.common.batch_size)?;
        emit(a.common.json, &with_result(header(l, &a.common, "randomisation"), &e)?, || {
            let mut t = String::from("split                     n   accuracy      AUC\n");
            for s in &e.splits {
                let _ = writeln!(t, "{:<22} {:>6} {:>10.4} {:>8}", s.split, s.samples, s.accuracy, fmt_opt(s.auc));
            }
            t
        })
    }
    typed!(p, go(l, a))
}

fn performance(l: &Loaded, p: Precision, a: &PerformanceCorrelationArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &PerformanceCorrelationArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let base = l.data.split(&a.baseline_split)?;
        let base_set = EvalSet::<T>::from_split(base, 0, &l.stream);
        let labels = base_set.labels.as_deref().ok_or_else(|| anyhow!("the baseline split has no class labels"))?;
        let lr = simp::fit_logistic_regression(
            base_set.x.view(),
            labels,
            &LogisticRegressionParams { l2: a.l2, ..Default::default() },
        )?;
        let eval = eval_split::<T>(l, &a.common, &a.eval_split)?;
        let pc = simp::performance_correlation_of_model(&l.model, &params, &eval, &lr, a.common.batch_size)?;
        let mut v = with_result(header(l, &a.common, "performance-correlation"), &pc)?;
        v["baseline"] = json!({
            "split": a.baseline_split,
            "l2": a.l2,
            "train_accuracy": lr.train_accuracy,
            "loss": lr.loss,
            "iterations": lr.iterations,
            "converged": lr.converged,
            "gradient_norm": lr.gradient_norm,
        });
        v["eval_split"] = json!(a.eval_split);
        emit(a.common.json, &v, || {
            format!(
                "baseline: logistic regression on {} (train accuracy {:.4}, converged {})\n\
                 on {} ({} examples): accuracy F {:.4}, L {:.4}, agreement {:.4}\n\
                 I(F;Y) {:.4} bits   I(L;Y) {:.4}   I(F;Y|L) {:.4}   I(L;Y|F) {:.4}\n\
                 mu_Y(F;L) = I(F;Y) - I(F;Y|L) = {:.4} bits\n",
                a.baseline_split,
                lr.train_accuracy,
                lr.converged,
                a.eval_split,
                pc.samples,
                pc.accuracy_f,
                pc.accuracy_l,
                pc.agreement,
                pc.mi_f_y,
                pc.mi_l_y,
                pc.cmi_f_y_given_l,
                pc.cmi_l_y_given_f,
                pc.performance_correlation
            )
        })
    }
    typed!(p, go(l, a))
}

fn norms(a: &NormsArgs) -> Result<()> {
    let mut per = Vec::with_capacity(a.models.len());
    for path in &a.models {
        let ck = load_ck(path, &a.arch)?;
        per.push(simp::parameter_norms(&ck.model, ck.params.as_slice())?);
    }
    let steps =
        if a.models.len() > 1 || !a.steps.is_empty() { Some(checkpoint_steps(&a.models, &a.steps)?) } else { None };
    let fits = match &steps {
        Some(s) if s.iter().filter(|&&v| v > 0).count() >= 3 => {
            let t: Vec<f64> = s.iter().map(|&v| v as f64).collect();
            let rho: Vec<f64> = per.iter().map(|e| e.total).collect();
            Some(simp::norm_growth_fits(&t, &rho)?)
        }
        _ => None,
    };
    let checkpoints: Vec<serde_json::Value> = a
        .models
        .iter()
        .zip(&per)
        .enumerate()
        .map(|(i, (p, e))| json!({"model": p.display().to_string(), "step": steps.as_ref().map(|s| s[i]), "norms": e}))
        .collect();
    let v = json!({"probe": "norms", "checkpoints": checkpoints, "growth": fits});
    emit(a.json, &v, || {
        let mut t = String::new();
        for (i, e) in per.iter().enumerate() {
            let step = steps.as_ref().map_or_else(String::new, |s| format!(" (step {})", s[i]));
            let _ = writeln!(t, "{}{step}: ||theta|| = {:.6}", a.models[i].display(), e.total);
            if per.len() == 1 {
                for n in &e.layers {
                    let _ = writeln!(t, "  layer {:<8} {:.6}", n.name, n.norm);
                }
            }
        }
        if let Some(f) = &fits {
            let _ = writeln!(
                t,
                "fits over {} checkpoints: R^2 sqrt {:.4}, log {:.4}, linear {:.4} (best {}); power law exponent {:.4} (R^2 {:.4})",
                f.points,
                f.sqrt.r_squared,
                f.log.r_squared,
                f.linear.r_squared,
                f.best,
                f.power.exponent,
                f.power.r_squared
            );
        }
        t
    })
}

fn saturation(l: &Loaded, p: Precision, a: &SaturationArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &SaturationArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let e = simp::saturation(&l.model, &params, &set, &SaturationParams { scale: a.scale, layers: a.layers })?;
        emit(a.common.json, &with_result(header(l, &a.common, "saturation"), &e)?, || {
            let mut t = format!("cosine between outputs at theta and {} theta:\n", e.scale);
            for s in &e.layers {
                let _ = writeln!(
                    t,
                    "  layer {:<6} {:<10} mean {:.6}  min {:.6}  undefined {}",
                    s.layer.name, s.layer.kind, s.mean_cosine, s.min_cosine, s.undefined
                );
            }
            t
        })
    }
    typed!(p, go(l, a))
}

fn sparsity(l: &Loaded, p: Precision, a: &SparsityArgs) -> Result<()> {
    fn go<T: Scalar>(l: &Loaded, a: &SparsityArgs) -> Result<()> {
        let params: Vec<T> = l.params.cast::<T>().into_vec();
        let set = l.set.cast::<T>();
        let opts =
            FeatureSparsityParams { correlation_threshold: a.correlation_threshold, batch_size: a.common.batch_size };
        let e = simp::feature_sparsity(&l.model, &params, &set, &opts)?;
        emit(a.common.json, &with_result(header(l, &a.common, "sparsity"), &e)?, || {
            let mut t =
                String::from("layer   units  active   dead  duplicates  kept  active (dedup)  active among kept\n");
            for s in &e.layers {
                let _ = writeln!(
                    t,
                    "{:<7} {:>5} {:>7.4} {:>6} {:>11} {:>5} {:>15.4} {:>18.4}",
                    s.name,
                    s.units,
                    s.active_fraction,
                    s.dead_units,
                    s.duplicate_units,
                    s.kept_units,
                    s.active_fraction_deduplicated,
                    s.active_fraction_among_kept
                );
            }
            t
        })
    }
    typed!(p, go(l, a))
}
