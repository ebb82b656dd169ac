//! Rank measures: spectra of weight matrices (PROTOCOLS 1.1, 1.2) and the effective rank of
//! embeddings (PROTOCOLS 1.3).

use super::{EmbeddingLayer, EmbeddingLayers, check_params, embeddings};
use crate::{EvalSet, ProbeError};
use ndarray::{Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{Scalar, singular_values};
use sgdlab_nn::{Layer, Model};

/// The epsilon thresholds of Galanti & Poggio's epsilon-rank reported by default (their code's
/// default 1e-3, and 1e-2 to show the threshold sensitivity; PROTOCOLS 1.2).
pub const DEFAULT_EPS_RANK_THRESHOLDS: [f64; 2] = [1e-3, 1e-2];

/// The effective rank of Roy & Vetterli (2007, "The effective rank: a measure of effective
/// dimensionality"), as used by Huh et al. (2021, arXiv:2103.10427):
/// `erank = exp(-sum_i p_i ln p_i)` with `p_i = sigma_i / sum_j sigma_j` (`0 ln 0 = 0`).
///
/// `values` are the (non-negative) singular values of the matrix; pass eigenvalues of a Gram
/// matrix to get the Gram convention. It lies in `[1, rank]` and equals `n` for `n` equal
/// values. NaN when all values are zero.
pub fn effective_rank(values: &[f64]) -> f64 {
    let s: f64 = values.iter().map(|v| v.max(0.0)).sum();
    if s <= 0.0 || !s.is_finite() {
        return f64::NAN;
    }
    let h: f64 = values
        .iter()
        .map(|&v| {
            let p = v.max(0.0) / s;
            if p > 0.0 { -p * p.ln() } else { 0.0 }
        })
        .sum();
    h.exp()
}

/// Stable rank `||W||_F^2 / ||W||_2^2 = sum sigma_i^2 / sigma_1^2`, in `[1, rank W]` (Timor,
/// Vardi & Shamir 2022, arXiv:2201.12760, compare `||W||_2 / ||W||_F = 1 / sqrt(srank)`). NaN for
/// a zero matrix. `singular_values` in any order.
pub fn stable_rank(singular_values: &[f64]) -> f64 {
    let max = singular_values.iter().fold(0.0f64, |m, v| m.max(*v));
    if max == 0.0 {
        return f64::NAN;
    }
    singular_values.iter().map(|v| v * v).sum::<f64>() / (max * max)
}

/// Epsilon-rank after Frobenius normalisation (Galanti & Poggio 2022, CBMM memo / arXiv:2206.05794,
/// as in their code): `#{ i : sigma_i(W / ||W||_F) > eps }`, with `||W||_F^2 = sum sigma_i^2`.
/// 0 for a zero matrix.
pub fn eps_rank(singular_values: &[f64], eps: f64) -> usize {
    let f = singular_values.iter().map(|v| v * v).sum::<f64>().sqrt();
    if f == 0.0 {
        return 0;
    }
    singular_values.iter().filter(|&&s| s / f > eps).count()
}

/// `rank_eps` at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpsRank {
    pub eps: f64,
    pub rank: usize,
}

/// Spectral summary of one matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixSpectrum {
    /// All singular values, descending (report them: thresholded ranks are convention-sensitive).
    pub singular_values: Vec<f64>,
    /// `||W||_F`.
    pub frobenius_norm: f64,
    /// `||W||_2 = sigma_1`.
    pub spectral_norm: f64,
    /// `r(W) = ||W||_2 / ||W||_F` in `(0, 1]`; 1 iff rank one (Timor et al. 2022).
    pub norm_ratio: f64,
    /// [`stable_rank`].
    pub stable_rank: f64,
    /// [`effective_rank`] of the singular values.
    pub effective_rank: f64,
    /// [`eps_rank`] at each requested threshold.
    pub eps_ranks: Vec<EpsRank>,
    /// `min(rows, cols)`, the largest possible rank.
    pub max_rank: usize,
}

/// The spectrum of `w` (computed in f64) and the ranks derived from it.
pub fn matrix_spectrum<T: Scalar>(w: ArrayView2<'_, T>, eps: &[f64]) -> Result<MatrixSpectrum, ProbeError> {
    let w64 = w.mapv(|v| v.to_f64());
    let sv = singular_values(w64.view()).map_err(|e| ProbeError::Invalid(e.0))?;
    let fro = sv.iter().map(|v| v * v).sum::<f64>().sqrt();
    let spec = sv.first().copied().unwrap_or(0.0);
    Ok(MatrixSpectrum {
        frobenius_norm: fro,
        spectral_norm: spec,
        norm_ratio: if fro > 0.0 { spec / fro } else { f64::NAN },
        stable_rank: stable_rank(&sv),
        effective_rank: effective_rank(&sv),
        eps_ranks: eps.iter().map(|&e| EpsRank { eps: e, rank: eps_rank(&sv, e) }).collect(),
        max_rank: w.nrows().min(w.ncols()),
        singular_values: sv,
    })
}

/// Options of [`weight_spectra`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightSpectraParams {
    /// Thresholds of the epsilon-rank.
    pub eps: Vec<f64>,
}

impl Default for WeightSpectraParams {
    fn default() -> Self {
        WeightSpectraParams { eps: DEFAULT_EPS_RANK_THRESHOLDS.to_vec() }
    }
}

/// The spectrum of one linear layer's weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightSpectrum {
    /// PyTorch name of the weight (`2.weight`, `1.1.weight`, ...).
    pub name: String,
    /// `[out, in]`.
    pub shape: [usize; 2],
    #[serde(flatten)]
    pub spectrum: MatrixSpectrum,
}

/// Spectra of every linear weight, with averages over layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightSpectraEstimate {
    /// In layout order (residual blocks included).
    pub layers: Vec<WeightSpectrum>,
    /// Mean of `||W_i||_2 / ||W_i||_F` over all linear layers (the quantity of Timor et al.'s
    /// theorem is this average at max-margin points).
    pub mean_norm_ratio: f64,
    /// Mean stable rank over all linear layers.
    pub mean_stable_rank: f64,
    /// Mean stable rank over the hidden linear layers (all but the first and the last; NaN with
    /// fewer than 3 linear layers).
    pub mean_hidden_stable_rank: f64,
}

/// Weight spectra of every linear layer (PROTOCOLS 1.1 and 1.2): singular values, `||W||_2`,
/// `||W||_F`, `||W||_2 / ||W||_F` and stable rank (Timor, Vardi & Shamir 2022,
/// arXiv:2201.12760), effective rank (Roy & Vetterli 2007), and the epsilon-rank of `W / ||W||_F`
/// at each threshold (Galanti & Poggio 2022, arXiv:2206.05794; default 1e-3 and 1e-2). Biases are
/// not part of the matrices. Data-independent.
pub fn weight_spectra<T: Scalar>(
    model: &Model,
    params: &[T],
    opts: &WeightSpectraParams,
) -> Result<WeightSpectraEstimate, ProbeError> {
    check_params(model, params)?;
    let mut found = Vec::new();
    model.for_each_layer(&mut |name, l, off| {
        if let Layer::Linear(lin) = l {
            found.push((name.to_string(), lin.out_dim, lin.in_dim, off));
        }
    });
    let mut layers = Vec::with_capacity(found.len());
    for (name, o, i, off) in found {
        let w = ArrayView2::from_shape((o, i), &params[off..off + o * i]).expect("a linear weight is [out, in]");
        layers.push(WeightSpectrum {
            name: format!("{name}.weight"),
            shape: [o, i],
            spectrum: matrix_spectrum(w, &opts.eps)?,
        });
    }
    let mean_of = |f: &dyn Fn(&WeightSpectrum) -> f64, ls: &[WeightSpectrum]| {
        if ls.is_empty() { f64::NAN } else { ls.iter().map(f).sum::<f64>() / ls.len() as f64 }
    };
    let hidden = if layers.len() >= 3 { &layers[1..layers.len() - 1] } else { &[][..] };
    Ok(WeightSpectraEstimate {
        mean_norm_ratio: mean_of(&|w| w.spectrum.norm_ratio, &layers),
        mean_stable_rank: mean_of(&|w| w.spectrum.stable_rank, &layers),
        mean_hidden_stable_rank: mean_of(&|w| w.spectrum.stable_rank, hidden),
        layers,
    })
}

/// Whether embeddings are centred before their spectrum is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Centring {
    /// Use `Phi` as it is.
    #[default]
    None,
    /// Subtract the mean embedding over the samples from every row (`Phi - 1 mu^T`).
    Mean,
}

impl std::str::FromStr for Centring {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Centring::None),
            "mean" => Ok(Centring::Mean),
            _ => Err(format!("unknown centring '{s}' (known: none, mean)")),
        }
    }
}

/// Options of [`representation_rank`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RepresentationRankParams {
    pub layers: EmbeddingLayers,
    pub centring: Centring,
}

/// Effective rank of one layer's embeddings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRank {
    #[serde(flatten)]
    pub layer: EmbeddingLayer,
    /// Embedding-matrix convention (primary): `erank` of the singular values of `Phi` (`n x d`).
    pub effective_rank: f64,
    /// Gram convention (secondary): `erank` of the eigenvalues of `G = Phi Phi^T`, which are
    /// `sigma_i(Phi)^2`; never larger than the embedding-matrix value.
    pub effective_rank_gram: f64,
    /// Stable rank of `Phi`.
    pub stable_rank: f64,
    /// Singular values of `Phi`, descending.
    pub singular_values: Vec<f64>,
}

/// Effective rank of the embeddings of every representation layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepresentationRankEstimate {
    /// Number of samples `n` (rows of `Phi`; the effective rank depends on it).
    pub samples: usize,
    pub centring: Centring,
    pub layers: Vec<LayerRank>,
}

/// Effective rank of embeddings (Huh, Mobahi, Zhang, Cheung, Agrawal & Isola 2021/TMLR 2023, "The
/// low-rank simplicity bias in deep networks", arXiv:2103.10427; PROTOCOLS 1.3). For the
/// embedding matrix `Phi` (`n` samples x `d` features, optionally centred) of each layer:
/// `erank(Phi) = exp(H(sigma / sum sigma))` with `sigma` the singular values of `Phi` (primary),
/// and the Gram convention `erank(G) = exp(H(sigma^2 / sum sigma^2))` (secondary), both reported
/// since papers differ by this square. Roy & Vetterli (2007) define the effective rank.
pub fn representation_rank<T: Scalar>(
    model: &Model,
    params: &[T],
    set: &EvalSet<T>,
    opts: &RepresentationRankParams,
) -> Result<RepresentationRankEstimate, ProbeError> {
    if set.is_empty() {
        return Err(ProbeError::Invalid("representation rank needs at least one example".into()));
    }
    let embs = embeddings(model, params, set.x.view(), opts.layers)?;
    let mut layers = Vec::with_capacity(embs.len());
    for (layer, e) in embs {
        let mut phi: Array2<f64> = e.mapv(|v| v.to_f64());
        if opts.centring == Centring::Mean {
            let mu = phi.mean_axis(Axis(0)).expect("non-empty");
            phi -= &mu;
        }
        let sv = singular_values(phi.view()).map_err(|e| ProbeError::Invalid(e.0))?;
        let sq: Vec<f64> = sv.iter().map(|v| v * v).collect();
        layers.push(LayerRank {
            layer,
            effective_rank: effective_rank(&sv),
            effective_rank_gram: effective_rank(&sq),
            stable_rank: stable_rank(&sv),
            singular_values: sv,
        });
    }
    Ok(RepresentationRankEstimate { samples: set.len(), centring: opts.centring, layers })
}
