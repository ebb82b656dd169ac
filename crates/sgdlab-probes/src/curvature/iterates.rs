//! Heavy tails of SGD iterates on least squares (Hodgkinson & Mahoney 2021; PROTOCOLS 8.2).
//!
//! Loss `L(theta) = (1/2n) sum_i (x_i^T theta - y_i)^2`, Hessian `Sigma = X^T X / n` (the data's
//! second-moment matrix, "the data covariance"). SGD with `B` examples drawn uniformly *with
//! replacement* per step is the random linear recursion
//! `e_{k+1} = (I - eta A_k) e_k + eta b_k`, `e = theta - theta*`, `A_k = (1/B) sum_b x x^T`,
//! `b_k = (1/B) sum_b x r` with `r_i = y_i - x_i^T theta*` the least-squares residuals
//! (Kesten-type: its stationary law has power-law tails whose index falls as eta grows or B
//! shrinks).
//!
//! # Step-size scale
//! * `gd`: `eta_max = 2 / lambda_max(Sigma)`, full-batch GD's stability limit.
//! * `mean-square`: the largest eta at which the second moment of the recursion stays bounded:
//!   `E[(I - eta A) P (I - eta A)]` must have spectral radius below 1 on matrices P. As a
//!   `d^2 x d^2` matrix that map is `I - eta S + eta^2 K` with `S = Sigma (+) Sigma` (Kronecker
//!   sum) and `K = E[A (x) A] = (1/B) (1/n) sum_i (x_i x_i^T) (x) (x_i x_i^T) + (1 - 1/B) Sigma (x)
//!   Sigma`; it is symmetric and positive (maps PSD to PSD), so its spectral radius is its largest
//!   eigenvalue, and radius < 1 iff `eta < 1 / lambda_max(S^{-1/2} K S^{-1/2})`. As `B -> inf`
//!   this is `2 / lambda_max(Sigma)`; for B = 1 and `x ~ N(0, I_d)` it is about `2 / (d + 2)`, far
//!   below GD's limit (SGD at `eta = 0.2 * 2 / lambda_max` with B = 1 in d = 20 diverges). At the
//!   mean-square limit the Kesten tail index is 2.

use crate::common::ProbeError;
use crate::curvature::{hill_estimator, mohammadi_estimator};
use ndarray::{Array2, ArrayView2, Axis};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use sgdlab_linalg::{RngStream, map_parts, matmul_into, symmetric_eigen};

/// Which stability limit `eta_max` a step-size fraction refers to (module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum StepScale {
    /// The mean-square stability limit of SGD with this batch size (depends on B).
    #[default]
    MeanSquare,
    /// Full-batch GD's limit `2 / lambda_max(Sigma)` (the same for every B).
    Gd,
}

/// Knobs of [`iterate_tails`].
#[derive(Debug, Clone, PartialEq)]
pub struct IterateTailParams {
    /// Independent SGD chains (each started at theta*).
    pub chains: usize,
    /// SGD steps per chain; the final iterates are the sample.
    pub steps: usize,
    /// Examples per step, drawn uniformly with replacement.
    pub batch_size: usize,
    /// `eta = eta_fraction * eta_max`.
    pub eta_fraction: f64,
    pub scale: StepScale,
    /// Order statistics used by Hill's estimator.
    pub hill_k: usize,
    /// Vectors summed per block of Mohammadi's estimator.
    pub mohammadi_block: usize,
}

/// Chains advanced together by one task (the unit of parallel work; results do not depend on
/// the thread count because every block has its own random stream).
const CHAINS_PER_BLOCK: usize = 64;

/// Fractions of the chains at which the Hill plot is drawn.
const HILL_PLOT_FRACTIONS: [f64; 10] = [0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3];

/// The tail index of the final SGD iterates, with the step sizes it was measured at.
#[derive(Debug, Clone, Serialize)]
pub struct IterateTailEstimate {
    /// Hill's estimate on `||theta - theta*||` with the `hill_k` largest norms.
    pub hill_alpha: f64,
    pub hill_k: usize,
    /// Hill plot: the `k` values and Hill's estimate at each.
    pub hill_plot_k: Vec<usize>,
    pub hill_plot_alpha: Vec<f64>,
    /// Mohammadi et al.'s estimator on the vectors `theta - theta*` (blocks of `mohammadi_block`);
    /// it assumes a symmetric alpha-stable law, so it saturates near 2 for finite-variance tails.
    pub mohammadi_alpha: f64,
    pub mohammadi_block: usize,
    /// The step size used and the scales.
    pub eta: f64,
    pub eta_max: f64,
    pub eta_max_gd: f64,
    pub eta_max_mean_square: f64,
    /// Extreme eigenvalues of `Sigma = X^T X / n`.
    pub lambda_max: f64,
    pub lambda_min: f64,
    /// Root mean squared least-squares residual.
    pub residual_rms: f64,
    /// Median and largest `||theta - theta*||` over chains.
    pub median_norm: f64,
    pub max_norm: f64,
    pub chains: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub examples: usize,
    pub dim: usize,
}

/// The mean-square stability limit of with-replacement SGD with batch `b` on least squares
/// (module doc), from the rotated inputs `xr = X U` (`U` the eigenvectors of `Sigma`) and
/// `Sigma`'s eigenvalues `lambda` (all positive).
pub fn mean_square_step_limit(xr: ArrayView2<'_, f64>, lambda: &[f64], b: f64) -> Result<f64, ProbeError> {
    let (n, d) = xr.dim();
    let mut z = Array2::<f64>::zeros((n, d * d));
    for (i, mut row) in z.rows_mut().into_iter().enumerate() {
        let x = xr.row(i);
        for a in 0..d {
            for c in 0..d {
                row[a * d + c] = x[a] * x[c];
            }
        }
    }
    let mut k = Array2::<f64>::zeros((d * d, d * d));
    matmul_into(k.view_mut(), false, z.t(), z.view(), 1.0 / (n as f64 * b));
    let s: Vec<f64> = (0..d * d).map(|p| lambda[p / d] + lambda[p % d]).collect();
    for p in 0..d * d {
        k[(p, p)] += (1.0 - 1.0 / b) * lambda[p / d] * lambda[p % d];
    }
    for ((p, q), v) in k.indexed_iter_mut() {
        *v /= (s[p] * s[q]).sqrt();
    }
    let e = symmetric_eigen(k.view()).map_err(|e| ProbeError::Invalid(e.to_string()))?;
    Ok(1.0 / e.values[d * d - 1])
}

/// Runs `params.chains` SGD chains from the least-squares solution on `(x, y)` and estimates
/// the tail index of their final iterates (module doc). Chain blocks use the streams
/// `chains-J` of `stream`.
pub fn iterate_tails(
    x: ArrayView2<'_, f64>,
    y: &[f64],
    params: &IterateTailParams,
    stream: &RngStream,
) -> Result<IterateTailEstimate, ProbeError> {
    let (n, d) = x.dim();
    let p = params;
    if n != y.len() || n == 0 || d == 0 {
        return Err(ProbeError::Invalid(format!("iterate-tails: {n} inputs of dimension {d}, {} targets", y.len())));
    }
    if p.chains < 2 || p.steps == 0 || p.batch_size == 0 {
        return Err(ProbeError::Invalid("iterate-tails: need chains >= 2, steps >= 1, batch_size >= 1".into()));
    }
    if p.hill_k == 0 || p.hill_k >= p.chains || p.mohammadi_block < 2 || p.mohammadi_block > p.chains {
        return Err(ProbeError::Invalid(format!(
            "iterate-tails: hill_k must be in 1..{} and mohammadi_block in 2..={} (chains = {})",
            p.chains, p.chains, p.chains
        )));
    }
    if !(p.eta_fraction.is_finite() && p.eta_fraction > 0.0) {
        return Err(ProbeError::Invalid(format!(
            "iterate-tails: eta_fraction must be positive, got {}",
            p.eta_fraction
        )));
    }
    // Sigma = X^T X / n, its eigenvectors, and theta* = Sigma^{-1} X^T y / n.
    let mut sigma = Array2::<f64>::zeros((d, d));
    matmul_into(sigma.view_mut(), false, x.t(), x, 1.0 / n as f64);
    let eig = symmetric_eigen(sigma.view()).map_err(|e| ProbeError::Invalid(e.to_string()))?;
    let lambda: Vec<f64> = eig.values.to_vec();
    let (lambda_min, lambda_max) = (lambda[0], lambda[d - 1]);
    if lambda_min.is_nan() || lambda_min <= 1e-12 * lambda_max {
        return Err(ProbeError::Invalid(format!(
            "iterate-tails: X^T X / n is singular (smallest eigenvalue {lambda_min:.3e}); need n >= d independent inputs"
        )));
    }
    let yv = ndarray::ArrayView1::from(y);
    let xty = x.t().dot(&yv) / n as f64;
    let u = &eig.vectors;
    let coef = u.t().dot(&xty) / ndarray::Array1::from(lambda.clone());
    let theta = u.dot(&coef);
    let resid: Vec<f64> = (0..n).map(|i| y[i] - x.row(i).dot(&theta)).collect();
    let residual_rms = (resid.iter().map(|r| r * r).sum::<f64>() / n as f64).sqrt();
    let eta_max_gd = 2.0 / lambda_max;
    let xr = x.dot(u);
    let eta_max_mean_square = mean_square_step_limit(xr.view(), &lambda, p.batch_size as f64)?;
    let eta_max = match p.scale {
        StepScale::MeanSquare => eta_max_mean_square,
        StepScale::Gd => eta_max_gd,
    };
    let eta = p.eta_fraction * eta_max;

    // Chains, one contiguous block of d values each, advanced block by block.
    let xs: Vec<f64> = x.iter().copied().collect();
    let blocks: Vec<usize> = (0..p.chains.div_ceil(CHAINS_PER_BLOCK)).collect();
    let run_block = |j: usize| -> Vec<f64> {
        let m = CHAINS_PER_BLOCK.min(p.chains - j * CHAINS_PER_BLOCK);
        let mut rng = stream.child(&format!("chains-{j}")).rng();
        let mut e = vec![0.0f64; m * d];
        let mut g = vec![0.0f64; d];
        let step = eta / p.batch_size as f64;
        for _ in 0..p.steps {
            for c in e.chunks_exact_mut(d) {
                g.iter_mut().for_each(|v| *v = 0.0);
                for _ in 0..p.batch_size {
                    let i = rng.random_range(0..n);
                    let xi = &xs[i * d..(i + 1) * d];
                    let r = xi.iter().zip(c.iter()).map(|(a, b)| a * b).sum::<f64>() - resid[i];
                    g.iter_mut().zip(xi).for_each(|(gv, a)| *gv += r * a);
                }
                c.iter_mut().zip(&g).for_each(|(cv, gv)| *cv -= step * gv);
            }
        }
        e
    };
    let parts = map_parts(blocks, true, &run_block);
    let e = Array2::from_shape_vec((p.chains, d), parts.concat()).expect("chains x d");
    let norms: Vec<f64> = e.axis_iter(Axis(0)).map(|r| r.dot(&r).sqrt()).collect();
    let diverged = norms.iter().filter(|v| !(v.is_finite() && **v < 1e100)).count();
    if diverged > 0 {
        return Err(ProbeError::Invalid(format!(
            "iterate-tails: {diverged} of {} chains diverged at eta = {eta:.4e} (mean-square limit {eta_max_mean_square:.4e}): lower eta_fraction",
            p.chains
        )));
    }
    let hill_alpha = hill_estimator(&norms, p.hill_k)?;
    let mut hill_plot_k: Vec<usize> =
        HILL_PLOT_FRACTIONS.iter().map(|f| ((f * p.chains as f64).round() as usize).clamp(2, p.chains - 1)).collect();
    hill_plot_k.dedup();
    let hill_plot_alpha = hill_plot_k.iter().map(|&k| hill_estimator(&norms, k)).collect::<Result<Vec<_>, _>>()?;
    let mohammadi_alpha = mohammadi_estimator(&e, p.mohammadi_block)?;
    let mut sorted = norms.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(IterateTailEstimate {
        hill_alpha,
        hill_k: p.hill_k,
        hill_plot_k,
        hill_plot_alpha,
        mohammadi_alpha,
        mohammadi_block: p.mohammadi_block,
        eta,
        eta_max,
        eta_max_gd,
        eta_max_mean_square,
        lambda_max,
        lambda_min,
        residual_rms,
        median_norm: sgdlab_linalg::stats::median(&norms),
        max_norm: sorted[p.chains - 1],
        chains: p.chains,
        steps: p.steps,
        batch_size: p.batch_size,
        examples: n,
        dim: d,
    })
}
