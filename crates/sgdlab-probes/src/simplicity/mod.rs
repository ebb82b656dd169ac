//! Simplicity and representation probes (PROTOCOLS 1-6, 9.2, 10.1).
//!
//! Every measure is a pure function of (model, flat parameters, data, seed) that returns a
//! serialisable `…Estimate` with its diagnostics; probes compute in the precision `T` of the
//! parameters and data handed to them (f64 by default in the CLI) and report f64.
//!
//! | item | module | PROTOCOLS |
//! |---|---|---|
//! | weight spectra, effective / stable / epsilon rank | [`rank`] | 1.1, 1.2 |
//! | effective rank of embeddings | [`rank`] | 1.3 |
//! | DFT of the network function, per-frequency residual, time to learn | [`spectral`] | 2.1, 2.4 |
//! | CK / NTK spectra on the boolean cube, random-network functions | [`kernels`] | 2.2, 10.1 |
//! | NCC error per layer, effective depth, neural collapse NC1-NC4 | [`collapse`] | 3.1, 3.2 |
//! | residual lesions, gradient per path length | [`residual`] | 3.3 |
//! | geometric complexity | [`geometric`] | 4 |
//! | S / S^c randomised test sets | [`randomisation`] | 5 |
//! | performance correlation, norm growth, saturation | [`dynamics`] | 6.1, 6.3 |
//! | feature sparsity | [`sparsity`] | 9.2 |
//!
//! Representation layers ([`EmbeddingLayers`]) are chosen once here so that every
//! representation probe (rank, NCC depth, saturation) reads the same embeddings.

pub mod collapse;
pub mod dynamics;
pub mod geometric;
pub mod kernels;
pub mod randomisation;
pub mod rank;
pub mod residual;
pub mod sparsity;
pub mod spectral;

pub use collapse::DEFAULT_PINV_RTOL;
pub use collapse::{
    NccDepthEstimate, NccDepthParams, NccLayer, NeuralCollapseEstimate, NeuralCollapseParams, collapse_metrics,
    effective_depth, ncc_depth, neural_collapse,
};
pub use dynamics::{DEFAULT_SATURATION_SCALE, POWER_EXPONENT_RANGE};
pub use dynamics::{
    Fit, LayerSaturation, LogisticRegression, LogisticRegressionParams, NormGrowthEstimate, ParameterNormEstimate,
    PerformanceCorrelation, PowerFit, SaturationEstimate, SaturationParams, TensorNorm, fit_logistic_regression,
    fit_logistic_regression_cached, norm_growth_fits, parameter_norms, performance_correlation,
    performance_correlation_of_model, saturation,
};
pub use geometric::{GeometricComplexityEstimate, geometric_complexity};
pub use kernels::MAX_CUBE_DIM;
pub use kernels::{
    BooleanSpectrum, FunctionCondition, FunctionFrequency, FunctionSampleEstimate, FunctionSamplerParams,
    KernelActivation, KernelKind, KernelSpec, PriorSpec, boolean_cube_eigenvalues, boolean_cube_spectrum, function_of,
    krawtchouk, sample_prior_functions,
};
pub use randomisation::{RandomisationEstimate, SplitScore, randomisation_scores, score_split};
pub use rank::DEFAULT_EPS_RANK_THRESHOLDS;
pub use rank::{
    Centring, EpsRank, LayerRank, MatrixSpectrum, RepresentationRankEstimate, RepresentationRankParams,
    WeightSpectraEstimate, WeightSpectraParams, WeightSpectrum, effective_rank, eps_rank, matrix_spectrum,
    representation_rank, stable_rank, weight_spectra,
};
pub use residual::{
    LesionEstimate, LesionParams, LesionUnit, MultiLesion, PathLengthEstimate, PathLengthParams, PathLengthPoint,
    SingleLesion, forward_with_lesions, lesion_units, path_length_gradients, residual_lesions,
};
pub use sparsity::DEFAULT_CORRELATION_THRESHOLD;
pub use sparsity::{FeatureSparsityEstimate, FeatureSparsityParams, LayerSparsity, feature_sparsity};
pub use spectral::DEFAULT_LEARNED_THRESHOLD;
pub use spectral::{SpectralBiasEstimate, TimeToLearnEstimate, dft_amplitudes, spectral_bias, time_to_learn};

use crate::ProbeError;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::Scalar;
use sgdlab_nn::{Layer, Model};

/// Which layer outputs count as representations (embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddingLayers {
    /// The input (depth 0), then the output of every *block*, then the logits. A block ends
    /// where the next top-level layer is linear or residual: in an MLP the output of each
    /// `Linear [LayerNorm] Activation` group (post-activation embeddings, as Galanti et al. 2022
    /// and Huh et al. 2021 use), in a residual MLP the stem and every residual block.
    #[default]
    Blocks,
    /// The input and the output of every top-level layer (pre- and post-activation alike).
    All,
}

impl std::str::FromStr for EmbeddingLayers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "blocks" => Ok(EmbeddingLayers::Blocks),
            "all" => Ok(EmbeddingLayers::All),
            _ => Err(format!("unknown layer selection '{s}' (known: blocks, all)")),
        }
    }
}

/// One representation layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingLayer {
    /// PyTorch index of the top-level layer whose output this is (`"input"` for the input).
    pub name: String,
    /// Position in the selection: 0 for the input, then 1, 2, ... (the depth of NCC probes).
    pub depth: usize,
    /// `input`, or the layer's kind (`linear`, `activation`, `layernorm`, `residual`, `conv2d`, ...).
    pub kind: String,
    /// Width of the embedding.
    pub dim: usize,
    /// The top-level layer index (`None` for the input).
    pub index: Option<usize>,
}

/// The representation layers of `model` under the selection `which` (see [`EmbeddingLayers`]).
pub fn embedding_layers(model: &Model, which: EmbeddingLayers) -> Vec<EmbeddingLayer> {
    let layers = model.layers();
    let mut out =
        vec![EmbeddingLayer { name: "input".into(), depth: 0, kind: "input".into(), dim: model.in_dim(), index: None }];
    let mut d = model.in_dim();
    for (i, l) in layers.iter().enumerate() {
        d = l.out_dim(d);
        let keep = match which {
            EmbeddingLayers::All => true,
            EmbeddingLayers::Blocks => {
                i + 1 == layers.len() || matches!(layers[i + 1], Layer::Linear(_) | Layer::Residual(_))
            }
        };
        if keep {
            out.push(EmbeddingLayer {
                name: i.to_string(),
                depth: out.len(),
                kind: l.kind().into(),
                dim: d,
                index: Some(i),
            });
        }
    }
    out
}

/// The embeddings of `x` at the layers `which`, in the order of [`embedding_layers`].
pub fn embeddings<T: Scalar>(
    model: &Model,
    params: &[T],
    x: ArrayView2<'_, T>,
    which: EmbeddingLayers,
) -> Result<Vec<(EmbeddingLayer, Array2<T>)>, ProbeError> {
    let acts = model.activations(params, x)?;
    Ok(embedding_layers(model, which)
        .into_iter()
        .map(|l| {
            let e = match l.index {
                None => x.to_owned(),
                Some(i) => acts[i].clone(),
            };
            (l, e)
        })
        .collect())
}

/// The predicted class of each row of logits: `z > 0` for a single logit, else the arg-max
/// (first maximum on ties).
pub fn predicted_classes<T: Scalar>(logits: ArrayView2<'_, T>) -> Vec<u32> {
    logits
        .rows()
        .into_iter()
        .map(|r| {
            if r.len() == 1 {
                u32::from(r[0] > T::zero())
            } else {
                let mut best = 0;
                for (j, &v) in r.iter().enumerate() {
                    if v > r[best] {
                        best = j;
                    }
                }
                best as u32
            }
        })
        .collect()
}

/// Fraction of `pred` equal to `labels` (NaN when empty).
pub(crate) fn agreement(pred: &[u32], labels: &[u32]) -> f64 {
    if pred.is_empty() {
        return f64::NAN;
    }
    pred.iter().zip(labels).filter(|(a, b)| a == b).count() as f64 / pred.len() as f64
}

/// The labels of an evaluation set, or an error naming the probe that needs them.
pub(crate) fn labels_of<'a, T>(set: &'a crate::EvalSet<T>, probe: &str) -> Result<&'a [u32], ProbeError> {
    set.labels.as_deref().ok_or_else(|| ProbeError::Invalid(format!("{probe} needs class labels; the data has none")))
}

/// The logits of a whole set, computed in batches of `batch_size` (0 = one batch).
pub(crate) fn logits_of<T: Scalar>(
    model: &Model,
    params: &[T],
    x: ArrayView2<'_, T>,
    batch_size: usize,
) -> Result<Array2<T>, ProbeError> {
    let n = x.nrows();
    let b = if batch_size == 0 { n.max(1) } else { batch_size };
    let mut out = Array2::zeros((n, model.out_dim()));
    for s in (0..n).step_by(b) {
        let e = (s + b).min(n);
        let z = model.forward(params, x.slice(ndarray::s![s..e, ..]))?;
        out.slice_mut(ndarray::s![s..e, ..]).assign(&z);
    }
    Ok(out)
}

/// Converts a statistics error into a probe error.
pub(crate) fn stats_err(e: sgdlab_linalg::stats::StatsError) -> ProbeError {
    ProbeError::Invalid(e.0)
}

/// Checks that `params` has the model's parameter count.
pub(crate) fn check_params<T>(model: &Model, params: &[T]) -> Result<(), ProbeError> {
    if params.len() != model.num_params() {
        return Err(ProbeError::Invalid(format!(
            "parameter vector has {} entries, model {} has {}",
            params.len(),
            model.describe(),
            model.num_params()
        )));
    }
    Ok(())
}

/// Cosine similarity of two vectors; `None` when either is zero.
pub(crate) fn cosine(a: &[f64], b: &[f64]) -> Option<f64> {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 { None } else { Some((ab / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0)) }
}

/// `n choose k` as f64 (exact below 2^53).
pub(crate) fn binomial(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    let k = k.min(n - k);
    let mut c = 1.0f64;
    for i in 0..k {
        c = c * (n - i) as f64 / (i + 1) as f64;
    }
    c.round()
}
