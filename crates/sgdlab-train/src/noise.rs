//! Injected gradient noise of noisy GD/SGD (`theta <- theta - lr (g + xi)`), and noise matched to
//! SGD's own at the start point (Zhu et al. 2019, PROTOCOLS 8.1).
//!
//! SGD with batch `B` steps by `-lr g_B = -lr g - lr (g_B - g)`: its step noise has covariance
//! `lr^2 Sigma_SGD(B)` with (examples drawn without replacement within an epoch, as the trainer
//! draws them)
//!
//! `Sigma_SGD(B) = (N - B) / (B (N - 1)) * (1/N) sum_i (g_i - g)(g_i - g)^T`,
//!
//! `g_i` the gradient of example `i`'s loss and `g` their mean over the `N` training examples.
//! Noisy GD adds `lr xi` to each step, so `xi` matched to SGD has `Tr Cov(xi) = Tr Sigma_SGD(B)`:
//!
//! - `iso`: `xi ~ N(0, (Tr Sigma_SGD / D) I)`;
//! - `diag`: `xi_j ~ N(0, Sigma_SGD,jj)` (the diagonal of SGD's covariance, hence the same trace);
//! - `hessian_top`: `xi = sqrt(Tr Sigma_SGD / k) sum_{j<k} z_j u_j`, `z ~ N(0, I_k)`, with
//!   `u_j` the top-`k` Hessian eigenvectors (orthonormal, by Lanczos on the full-batch Hessian of
//!   the mean training loss), so `Cov(xi) = (Tr Sigma_SGD / k) U^T U` has the same trace.
//!
//! The matched noise is computed once, at the run's start parameters, deterministically (the
//! Lanczos start vectors come from the stream `match-sgd/lanczos` of the seed); a resumed run
//! recomputes it from the same start parameters and gets the same noise.

use crate::spec::{MatchShape, NoiseSpec};
use ndarray::{Array2, ArrayView2};
use sgdlab_linalg::{RngStream, Scalar, standard_normal};
use sgdlab_nn::{Batch, Model, Objective, Reduction, Targets};
use sgdlab_operators::{LanczosParams, LinearOperator, lanczos_eigenpairs};

/// Noise added to the gradient before a step: `xi = sigma * z` (isotropic), `sigma * z_j * sd_j`
/// (diagonal) or `sum_j sigma z_j u_j` (directions), `z` standard normal from the step's stream.
#[derive(Debug, Clone)]
pub enum InjectedNoise<T> {
    /// `xi ~ N(0, sigma^2 I)`.
    Isotropic { sigma: f64 },
    /// `xi_j = sigma z_j sd_j`.
    Diagonal { sigma: f64, sd: Vec<T> },
    /// `xi = sigma sum_j z_j u_j`, `u_j` the rows of `directions`.
    Directions { sigma: f64, directions: Array2<T> },
}

impl<T: Scalar> InjectedNoise<T> {
    /// Adds one draw of the noise to `grad`, the normals drawn from `rng` in a fixed order
    /// (coordinates, or directions, in turn).
    pub fn add_to<R: rand::Rng + ?Sized>(&self, grad: &mut [T], rng: &mut R) {
        match self {
            InjectedNoise::Isotropic { sigma } => {
                for g in grad.iter_mut() {
                    *g += T::from_f64(sigma * standard_normal::<f64, _>(rng));
                }
            }
            InjectedNoise::Diagonal { sigma, sd } => {
                for (g, &s) in grad.iter_mut().zip(sd) {
                    *g += T::from_f64(sigma * standard_normal::<f64, _>(rng)) * s;
                }
            }
            InjectedNoise::Directions { sigma, directions } => {
                for u in directions.rows() {
                    let z = T::from_f64(sigma * standard_normal::<f64, _>(rng));
                    for (g, &ui) in grad.iter_mut().zip(u.iter()) {
                        *g += z * ui;
                    }
                }
            }
        }
    }

    /// The covariance of `xi` as a dense matrix (tests and small models only).
    pub fn covariance(&self, dim: usize) -> Array2<f64> {
        match self {
            InjectedNoise::Isotropic { sigma } => Array2::eye(dim) * (sigma * sigma),
            InjectedNoise::Diagonal { sigma, sd } => {
                Array2::from_diag(&ndarray::Array1::from_iter(sd.iter().map(|s| (sigma * Scalar::to_f64(*s)).powi(2))))
            }
            InjectedNoise::Directions { sigma, directions } => {
                let u = directions.mapv(|v| Scalar::to_f64(v));
                u.t().dot(&u) * (sigma * sigma)
            }
        }
    }

    /// `Tr Cov(xi)`.
    pub fn total_variance(&self, dim: usize) -> f64 {
        match self {
            InjectedNoise::Isotropic { sigma } => sigma * sigma * dim as f64,
            InjectedNoise::Diagonal { sigma, sd } => sd.iter().map(|s| (sigma * Scalar::to_f64(*s)).powi(2)).sum(),
            InjectedNoise::Directions { sigma, directions } => {
                directions.iter().map(|u| (sigma * Scalar::to_f64(*u)).powi(2)).sum()
            }
        }
    }
}

/// The training examples the matched noise is computed on (f64).
pub struct NoiseData<'a> {
    pub x: ArrayView2<'a, f64>,
    pub labels: Option<&'a [u32]>,
    pub values: Option<ArrayView2<'a, f64>>,
}

impl NoiseData<'_> {
    fn len(&self) -> usize {
        self.x.nrows()
    }
    fn batch(&self, r: std::ops::Range<usize>) -> Batch<'_, f64> {
        let x = self.x.slice(ndarray::s![r.clone(), ..]);
        let targets = match (&self.values, self.labels) {
            (Some(v), _) => Targets::Values(v.slice(ndarray::s![r, ..])),
            (None, Some(l)) => Targets::Classes(&l[r]),
            (None, None) => Targets::Classes(&[]),
        };
        Batch { x, targets }
    }
}

/// SGD's noise at `theta` for batch size `batch_size`: the diagonal of `Sigma_SGD(B)` (module
/// doc) and its trace.
#[derive(Debug, Clone)]
pub struct SgdNoiseDiagonal {
    pub diagonal: Vec<f64>,
    pub trace: f64,
    pub examples: usize,
}

/// Examples per chunk of per-example gradients (bounds memory: chunk x parameters f64).
const CHUNK: usize = 64;

/// The diagonal of `Sigma_SGD(B)` at `theta`, from per-example gradients of the data loss (no
/// regulariser), in chunks.
pub fn sgd_noise_diagonal(
    model: &Model,
    theta: &[f64],
    data: &NoiseData<'_>,
    loss: sgdlab_nn::Loss,
    batch_size: usize,
) -> Result<SgdNoiseDiagonal, String> {
    let n = data.len();
    if batch_size == 0 || batch_size > n {
        return Err(format!("batch_size = {batch_size} must be in 1..={n} (the training examples)"));
    }
    if n < 2 {
        return Err("needs at least 2 training examples".into());
    }
    loss.check_per_example("the SGD noise covariance (per-example gradients)").map_err(|e| e.to_string())?;
    // Sum reduction: row i is example i's own loss gradient g_i.
    let obj = Objective { loss, reduction: Reduction::Sum };
    let p = model.num_params();
    let mut mean = vec![0.0f64; p];
    let mut sq = vec![0.0f64; p];
    for start in (0..n).step_by(CHUNK) {
        let r = start..(start + CHUNK).min(n);
        let rows = model.per_example_gradients(theta, &data.batch(r), &obj).map_err(|e| e.to_string())?;
        for row in rows.rows() {
            for ((m, s), &g) in mean.iter_mut().zip(sq.iter_mut()).zip(row.iter()) {
                *m += g;
                *s += g * g;
            }
        }
    }
    let nf = n as f64;
    let b = batch_size as f64;
    let factor = (nf - b) / (b * (nf - 1.0));
    let diagonal: Vec<f64> = mean
        .iter()
        .zip(&sq)
        .map(|(&m, &s)| {
            let m = m / nf;
            (s / nf - m * m).max(0.0) * factor
        })
        .collect();
    let trace = diagonal.iter().sum();
    Ok(SgdNoiseDiagonal { diagonal, trace, examples: n })
}

/// The Hessian of the mean training loss at `theta` over the whole training set, as an operator.
struct FullHessian<'a, 'b> {
    model: &'a Model,
    theta: &'a [f64],
    data: &'a NoiseData<'b>,
    obj: Objective,
}

impl LinearOperator<f64> for FullHessian<'_, '_> {
    fn dim(&self) -> usize {
        self.model.num_params()
    }
    fn apply_block(&self, block: ArrayView2<'_, f64>) -> Array2<f64> {
        self.model
            .hvp_block(self.theta, &self.data.batch(0..self.data.len()), &self.obj, block)
            .expect("batch and directions checked by the caller")
            .hvps
    }
}

/// Lanczos steps for the top-k Hessian eigenvectors of `hessian_top` noise.
const LANCZOS_MAX_ITERS: usize = 80;
/// Their residual tolerance (relative to the largest Ritz value).
const LANCZOS_TOL: f64 = 1e-3;

/// Resolves the noise of a spec: the `.npy` files of `diagonal`/`directions` are read by the
/// caller; `match_sgd` is computed here from the start parameters `theta`.
pub fn matched_noise<T: Scalar>(
    spec: &NoiseSpec,
    model: &Model,
    theta: &[f64],
    data: &NoiseData<'_>,
    loss: sgdlab_nn::Loss,
    stream: &RngStream,
) -> Result<Option<InjectedNoise<T>>, String> {
    let NoiseSpec::MatchSgd { shape, batch_size, k } = spec else { return Ok(None) };
    let d = model.num_params();
    let sgd = sgd_noise_diagonal(model, theta, data, loss, *batch_size)?;
    Ok(Some(match shape {
        MatchShape::Iso => InjectedNoise::Isotropic { sigma: (sgd.trace / d as f64).sqrt() },
        MatchShape::Diag => {
            InjectedNoise::Diagonal { sigma: 1.0, sd: sgd.diagonal.iter().map(|&v| T::from_f64(v.sqrt())).collect() }
        }
        MatchShape::HessianTop => {
            if *k == 0 || *k > d {
                return Err(format!("optimizer.noise.k = {k} must be in 1..={d} (the parameters)"));
            }
            let op = FullHessian { model, theta, data, obj: Objective { loss, reduction: Reduction::Mean } };
            let params = LanczosParams { k: *k, tol: LANCZOS_TOL, max_iters: LANCZOS_MAX_ITERS, ..Default::default() };
            let est = lanczos_eigenpairs(&op, &params, &stream.child("lanczos")).map_err(|e| e.to_string())?;
            InjectedNoise::Directions {
                sigma: (sgd.trace / *k as f64).sqrt(),
                directions: est.eigenvectors.mapv(T::from_f64),
            }
        }
    }))
}
